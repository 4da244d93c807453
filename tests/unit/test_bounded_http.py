"""The bounded HTTP server behind the control API and the fleet health check: past its cap
the oldest connection whose request has not arrived is cut; a request being answered is
never cut (review s10: cutting it made the HA machine's /readyz fail outright)."""
import socket
import threading
import time

import pytest

from appliance.control.bounded import BoundedHandler, BoundedHTTPServer

RELEASE = threading.Event()


class SlowHandler(BoundedHandler):
    """Answers once the test releases it: a request held in the middle of its answer."""

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        RELEASE.wait(10)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@pytest.fixture
def server():
    RELEASE.clear()
    cls = type("TwoClients", (BoundedHTTPServer,), {"max_clients": 2})
    httpd = cls(("127.0.0.1", 0), SlowHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield httpd
    RELEASE.set()
    httpd.shutdown()
    httpd.server_close()


def request(addr):
    s = socket.create_connection(addr, timeout=10)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    return s


def answer(s):
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    return data


def closed_now(s, wait=1.0):
    """The server closed this connection (read end) within `wait` seconds."""
    s.settimeout(wait)
    try:
        return s.recv(10) == b""
    except (socket.timeout, ConnectionResetError):
        return False


def until(pred, what):
    for _ in range(100):
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_requests_being_answered_are_never_cut_the_newcomer_is(server):
    addr = server.server_address
    a, b = request(addr), request(addr)
    until(lambda: len(server.busy) == 2, "both requests arrived")
    late = socket.create_connection(addr, timeout=10)
    assert closed_now(late)                        # no room: every held one is being answered
    RELEASE.set()
    assert answer(a).startswith(b"HTTP/1.0 200") and answer(b).startswith(b"HTTP/1.0 200")


def test_the_oldest_idle_connection_makes_room(server):
    addr = server.server_address
    idle = socket.create_connection(addr, timeout=10)
    trickling = socket.create_connection(addr, timeout=10)
    trickling.sendall(b"GET / HTTP/1.0\r\n")      # headers never end: not arrived
    until(lambda: len(server.clients) == 2, "two held")
    RELEASE.set()
    s = request(addr)
    assert answer(s).startswith(b"HTTP/1.0 200")
    assert closed_now(idle)                        # the oldest not-yet-arrived one was cut
    assert not closed_now(trickling, wait=0.3)     # one cut was enough
