"""Issue 9, a further review of the names the rules read. Each test is a capture that made a
name blocklist (or allow-list) read another name than the server acted on, or let a flow with
a pending name rule go unjudged, before the fix it names. Server behaviour was checked live
against the server named in each test (in a network namespace)."""
from test_name_limits import (HTTP_ALLOW, HTTP_DROP, conn, decided, feed)

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
GOOD = b"GET / HTTP/1.1\r\nHost: good.example\r\n"
EVIL = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"


# --- HTTP -------------------------------------------------------------------------------

def test_connection_close_that_a_server_reads_as_keep_alive(rules_file):
    """Python's http.server (--protocol HTTP/1.1) closes only when the first Connection
    header is exactly "close": with any of these it served the next request too (checked
    live). The appliance let the flow go after the first request."""
    for header in (b"Connection: close, x\r\n", b"Connection: close \r\n",
                   b"Connection: x\r\nConnection: close\r\n", b"Connection: close\r\n x\r\n"):
        v, _ = feed(conn(GOOD + header + b"\r\n", EVIL, answer=ANSWER), rules_file(HTTP_DROP))
        assert decided(v) == ("drop", False), header
    # nginx keeps an HTTP/1.0 connection open when a Connection header contains "keep-alive"
    v, _ = feed(conn(GOOD.replace(b"1.1", b"1.0") + b"Connection: x-keep-alive\r\n\r\n", EVIL,
                     answer=ANSWER), rules_file(HTTP_DROP))
    assert decided(v) == ("drop", False)
    # the plain forms still end the reading (the flow is offloaded)
    for last in (GOOD + b"Connection: close\r\n\r\n", GOOD.replace(b"1.1", b"1.0") + b"\r\n"):
        v, _ = feed(conn(last, answer=ANSWER), rules_file(HTTP_DROP))
        assert decided(v) == ("pass", True), last


def test_request_line_split_on_pythons_whitespace(rules_file):
    """Python's http.server decodes the request line as Latin-1 and splits it with
    str.split(): \\x1c-\\x1f, \\x85 and \\xa0 separate words too (checked live: 200 OK).
    The appliance saw no request at all."""
    for req in (b"GET\xa0/\xa0HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                b"GET\x1c/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                b"\x1fGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
                b"GET /\x85HTTP/1.1\r\nHost: evil.example\r\n\r\n"):
        v, _ = feed(conn(req), rules_file(HTTP_DROP))
        assert decided(v) == ("drop", False), req
        v, _ = feed(conn(req.replace(b"evil", b"good")), rules_file(HTTP_ALLOW))
        assert decided(v)[0] == "pass", req
