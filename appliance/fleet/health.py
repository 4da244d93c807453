"""The target group's health check endpoint (HTTP, `gwlb.health` ADDR:PORT).

GWLB health-checks every target (HTTP: any path, 200-399 healthy; default every 10 s,
unhealthy after 2 failures, healthy after 5 successes) and stops sending new flows to an
unhealthy one. So the answer must be about the datapath, not the process: 200 only when
every GENEVE worker runs and has its socket, the rules are loaded in every worker and the
sockets are open (fleet.supervisor computes it each turn of its loop); 503 with the reasons
otherwise, and from the moment SIGTERM arrives (the drain). An answer the supervisor has not
refreshed for STALE seconds is a 503 too: a stuck supervisor restarts no worker.
"""
import json
import socket
import threading
import time

from appliance.control.bounded import BoundedHandler, BoundedHTTPServer

STALE = 5.0                    # seconds: the supervisor's loop turns every 0.2 s
# Whoever reaches the port (the security group decides who) must not hold the supervisor's
# threads and descriptors, nor starve the GWLB's checks (appliance.control.bounded).
MAX_CLIENTS = 16


class Health:
    def __init__(self, host, port):
        self.state = (False, ["starting"], time.monotonic())    # (ready, problems, when computed)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        cls = type("HealthServer", (BoundedHTTPServer,), {"address_family": family, "max_clients": MAX_CLIENTS})
        self.httpd = cls((host, port), _handler(self))
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)

    def start(self):
        self.thread.start()

    def set(self, ready, problems):
        self.state = (ready, problems, time.monotonic())

    def answer(self):
        ready, problems, when = self.state
        age = time.monotonic() - when
        if age > STALE:
            ready, problems = False, [f"the supervisor has not checked the workers for {age:.0f}s"]
        return (200 if ready else 503), {"ready": ready, "problems": problems}

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(health):
    class Handler(BoundedHandler):
        server_version = "appliance-health"

        def log_message(self, fmt, *args):     # every 10 s from every GWLB node: no log line each
            pass

        def do_GET(self):                      # any path: the target group's health check path is configurable
            code, body = health.answer()
            data = (json.dumps(body) + "\n").encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

    return Handler
