"""Issue 9, a further review of the names the rules read. Each test is a capture that made a
name blocklist (or allow-list) read another name than the server acted on, or let a flow with
a pending name rule go unjudged, before the fix it names. Server behaviour was checked live
against the server named in each test (in a network namespace)."""
import struct

from scapy.all import Raw, UDP

from replaykit import Capture, dns_query, ip_of, l2
from test_name_limits import (DNS_DROP, HTTP_ALLOW, HTTP_DROP, C, S, actions, conn, decided, feed)

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


# --- DNS --------------------------------------------------------------------------------

def _labels(name):
    return b"".join(bytes([len(part)]) + part for part in name.split(b".")) + b"\0"


def _chained(hops, name=b"evil.example", questions=1):
    """A query whose every question is a pointer into a chain of `hops` pointers in all,
    the last one pointing at `name`'s labels."""
    hdr = struct.pack("!HHHHHH", 0x1234, 0x0100, questions, 0, 0, 0)
    base = 12 + 6 * questions
    qs = struct.pack("!H", 0xC000 | base) + b"\0\1\0\1"
    chain = b"".join(struct.pack("!H", 0xC000 | (base + 2 * (i + 1))) for i in range(hops - 1))
    return hdr + qs * questions + chain + _labels(name)


def _udp_dns(*payloads):
    cap = Capture()
    for i, p in enumerate(payloads):
        cap.add(l2(ip_of(C, S) / UDP(sport=40000 + i, dport=53) / Raw(p)))
    return cap


def test_dns_name_behind_many_compression_pointers(rules_file):
    """dnsmasq 2.90 follows up to 255 pointer jumps in a name (checked live: 255 answered
    from its config, 256 REFUSED); the appliance gave up after 16 and read no name."""
    v, found = feed(_udp_dns(_chained(17), _chained(255)), rules_file(DNS_DROP))
    assert actions(v) == ["drop", "drop"] and not found
    # 256 jumps: malformed for dnsmasq too, no name (the default decides)
    v, _ = feed(_udp_dns(_chained(256)), rules_file(DNS_DROP))
    assert actions(v) == ["pass"]
    # the work per message is bounded: 32 questions of 255 jumps each are past it -> cap
    v, found = feed(_udp_dns(_chained(255, questions=32)), rules_file(DNS_DROP))
    assert actions(v) == ["drop"] and "exception.cap" in found


def test_dns_name_longer_than_255_bytes(rules_file):
    """dnsmasq answers a name of 258 and 462 wire bytes from its `--address=/evil.example/`
    (checked live); RFC 1035's 255 made the appliance read no name."""
    rules = rules_file("rules:\n  - {id: 1, action: drop, dns_query: '*.evil.example'}\n")
    for n in (4, 7):
        name = b".".join([b"a" * 60] * n) + b".evil.example"
        v, _ = feed(_udp_dns(dns_query([name.decode()])), rules)
        assert actions(v) == ["drop"], n
