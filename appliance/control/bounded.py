"""An HTTP server whoever reaches its port cannot hold: the management API and the fleet's
health check answer the HA machine and the load balancer, which must not be starved.

A connection that sends nothing for CLIENT_TIMEOUT seconds is closed (the handler's
`timeout`, per read), and at most `max_clients` connections are held at once: past that,
the oldest one whose request has not fully arrived is cut to make room (an idle or
trickling client; a check or a scrape takes milliseconds). A request that has arrived is
never cut: when every held connection is answering one, the newcomer is closed instead.
Handlers derive from BoundedHandler, which says when a request has arrived.
"""
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socket
import sys
import threading

CLIENT_TIMEOUT = 5.0


class BoundedHandler(BaseHTTPRequestHandler):
    timeout = CLIENT_TIMEOUT

    def parse_request(self):
        ok = super().parse_request()          # the request line and every header: arrived
        if ok:
            self.server.answering(self.request)
        return ok


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64            # socketserver's 5: a burst of connections waited for SYN retries
    max_clients = 16

    def server_activate(self):
        self.clients = []              # open connections, oldest first
        self.busy = set()              # those whose request has arrived
        self.clients_lock = threading.Lock()
        super().server_activate()

    def answering(self, request):
        with self.clients_lock:
            self.busy.add(request)

    def verify_request(self, request, client_address):
        with self.clients_lock:
            while len(self.clients) >= self.max_clients:
                idle = next((c for c in self.clients if c not in self.busy), None)
                if idle is None:
                    return False        # every one is being answered: the newcomer waits its turn
                self.clients.remove(idle)
                try:                    # its thread's read ends: the thread finishes and closes it
                    idle.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.clients.append(request)
        return True

    def shutdown_request(self, request):
        with self.clients_lock:
            if request in self.clients:
                self.clients.remove(request)
            self.busy.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)
        # a client cut off or gone: nothing to report each time
