"""An HTTP server whoever reaches its port cannot hold: the management API and the fleet's
health check answer the HA machine and the load balancer, which must not be starved.

A request has CLIENT_TIMEOUT seconds to arrive (the handler's `timeout`), and at most
`max_clients` connections are served at once, the oldest cut off to make room (a check or a
scrape takes milliseconds; an idle or trickling connection is the one cut).
"""
from http.server import ThreadingHTTPServer
import socket
import threading

CLIENT_TIMEOUT = 5.0


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64            # socketserver's 5: a burst of connections waited for SYN retries
    max_clients = 16

    def server_activate(self):
        self.clients = []              # open connections, oldest first
        self.clients_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request, client_address):
        with self.clients_lock:
            while len(self.clients) >= self.max_clients:
                try:                    # its thread's read ends: the thread finishes and closes it
                    self.clients.pop(0).shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.clients.append(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self.clients_lock:
            if request in self.clients:
                self.clients.remove(request)
        super().shutdown_request(request)
