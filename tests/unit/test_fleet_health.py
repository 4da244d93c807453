"""The health endpoint against a hostile client (review of issue 14): whoever reaches the
health port must not be able to hold the supervisor's resources (one thread and one
descriptor per connection, for ever) nor keep the GWLB's own checks from their answer."""
import socket
import threading
import time

import pytest

from appliance.control.bounded import CLIENT_TIMEOUT
from appliance.fleet import health as health_mod
from appliance.fleet.health import Health


@pytest.fixture
def health():
    h = Health("127.0.0.1", 0)
    h.start()
    done = threading.Event()

    def supervisor():                  # refreshes the answer as the supervisor's loop does
        while not done.wait(0.2):
            h.set(True, [])
    h.set(True, [])
    t = threading.Thread(target=supervisor)
    t.start()
    yield h
    done.set()
    t.join()
    h.stop()


def get(addr):
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data


def test_idle_connections_neither_pile_up_threads_nor_starve_the_check(health):
    addr = health.httpd.server_address
    before = threading.active_count()
    idle = [socket.create_connection(addr, timeout=10) for _ in range(3 * health_mod.MAX_CLIENTS)]
    try:
        time.sleep(0.5)
        held = threading.active_count() - before
        assert held <= health_mod.MAX_CLIENTS, f"{held} threads held by idle clients"
        assert get(addr).startswith(b"HTTP/1.0 200")        # the GWLB's check still answered
    finally:
        for s in idle:
            s.close()


def test_a_client_that_never_finishes_its_request_is_cut_off(health):
    s = socket.create_connection(health.httpd.server_address, timeout=3 * CLIENT_TIMEOUT)
    s.sendall(b"GET / HTTP/1.1\r\n")                       # ... and nothing more
    t = time.monotonic()
    assert s.recv(4096) == b""                             # closed by the server
    assert time.monotonic() - t < 3 * CLIENT_TIMEOUT
    s.close()
