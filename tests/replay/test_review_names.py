"""Issue 9, a further review of the names the rules read. Each test is a capture that made a
name blocklist (or allow-list) read another name than the server acted on, or let a flow with
a pending name rule go unjudged, or dropped an allowed flow, before the fix it names. Server
behaviour was checked live against the server named in each test (Python's http.server,
dnsmasq 2.90, openssl s_server 3.0, in a network namespace) unless the test says otherwise."""
import struct

from scapy.all import Raw, UDP

from replaykit import Capture, TcpConn, dns_query, ip_of, l2
from test_name_limits import (DNS_DROP, HTTP_ALLOW, HTTP_DROP, TLS_ALLOW, TLS_DROP, C, S, actions, conn, segments,
                              decided, feed)

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


# --- TLS --------------------------------------------------------------------------------

def _ext(kind, body):
    return struct.pack("!HH", kind, len(body)) + body


def _hello13(sni, share=True, early=False):
    """A TLS 1.3 ClientHello; without a key share the server answers a HelloRetryRequest."""
    name = sni.encode()
    exts = _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name)
    exts += _ext(43, b"\x02\x03\x04") + _ext(10, struct.pack("!HHH", 4, 0x1D, 0x17))
    exts += _ext(13, struct.pack("!HHH", 4, 0x0804, 0x0403))
    share = struct.pack("!HH", 0x1D, 32) + b"\x42" * 32 if share else b""
    exts += _ext(51, struct.pack("!H", len(share)) + share)
    exts += _ext(42, b"") if early else b""
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x20" + b"\x22" * 32 + b"\x00\x02\x13\x01\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + struct.pack("!I", len(body))[1:] + body


def _rec(kind, data):
    return bytes([kind]) + b"\x03\x03" + struct.pack("!H", len(data)) + data


HRR = _rec(22, b"\x02" + b"\x00" * 80)


def test_second_client_hello_after_early_data(rules_file):
    """A first hello offering early data, 0-RTT records, then (after the server's
    HelloRetryRequest) a second hello: `openssl s_server` 3.0 skips the early data and acts
    on the second hello's SNI (checked live: evil.example -> unrecognized_name, good.example
    -> ServerHello; up to 16,000 bytes of early data). The appliance ended its reading at the
    first encrypted record and offloaded the flow before the second hello."""
    # one 0-RTT record, or several (a server skips them all, up to its total: review "tls")
    for early in (_rec(23, b"\x17" * 100), _rec(23, b"\x17" * 16000), _rec(23, b"\x17" * 100) * 3,
                  _rec(23, b"\x17" * 6000) * 3):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 443)
        c.handshake()
        c.send(_rec(22, _hello13("good.example", share=False, early=True)) + early)
        c.recv(HRR)
        c.send(_rec(20, b"\x01") + _rec(22, _hello13("evil.example")))
        v, _ = feed(cap, rules_file(TLS_DROP))
        assert decided(v) == ("drop", False)
        v, _ = feed(cap, rules_file(TLS_ALLOW))
        assert decided(v) == ("drop", False)


def test_encrypted_records_end_the_reading_without_early_data(rules_file):
    """Without early data offered, an application-data record after the first hello is the
    handshake going on (OpenSSL answers it with an alert after a HelloRetryRequest): the
    flow is offloaded then, as before; with early data offered, once more than any server
    skips has gone by."""
    for early, data in ((False, b"\x17" * 100), (True, b"\x17" * 16000 * 5)):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 443)
        c.handshake()
        c.send(_rec(22, _hello13("good.example", early=early)))
        c.recv(_rec(22, b"\x02" + b"\x01" * 80))
        for i in range(0, len(data), 16000):
            c.send(_rec(23, data[i:i + 16000]))
            c.recv(b"", flags="A")
        v, _ = feed(cap, rules_file(TLS_ALLOW))
        assert decided(v) == ("pass", True), early


def test_reading_that_ends_inside_a_segment_longer_than_the_window(rules_file):
    """A GSO super-packet (the worker inspects them whole) or a capture made with TSO gives
    segments longer than the 8 KiB stream window. When the reading ended inside one (a TLS
    1.3 client's next flight starts with an encrypted record; an HTTP request asked to
    close), its rest was counted as bytes lost to the reading: exception.cap, and an allowed
    connection was dropped."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(_rec(22, _hello13("good.example")))
    c.recv(_rec(22, b"\x02" + b"\x01" * 80))
    c.send(_rec(23, b"\x17" * 16000))
    v, found = feed(cap, rules_file(TLS_ALLOW))
    assert decided(v) == ("pass", True) and not found
    last = GOOD + b"Connection: close\r\nContent-Length: 3\r\n\r\nabc"
    # (answered: with the http log on, the flow waits for the response it logs)
    v, found = feed(conn(last + b"x" * 16000, answer=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
                    rules_file(HTTP_ALLOW))
    assert decided(v) == ("pass", True) and not found


def test_dns_over_tcp_after_a_message_that_is_no_query(rules_file):
    """dnsmasq reads DNS-over-TCP messages one after the other and answers a query after a
    first message shorter than a header, a response, or one with an odd opcode or counts
    (checked live, 2.90). The appliance did not take such a flow for DNS and read no name."""
    q = dns_query(["evil.example"])
    query = struct.pack("!H", len(q)) + q
    for first in (b"\x00\x01\x00", b"\x00\x0b" + b"\xff" * 11,
                  b"\x00\x0c" + struct.pack("!6H", 1, 0x0100, 0, 300, 0, 0),
                  b"\x00\x0c" + struct.pack("!6H", 1, 0x3900, 0, 0, 0, 0)):
        v, _ = feed(conn(first + query, port=53), rules_file(DNS_DROP))
        assert decided(v) == ("drop", False), first
        v, _ = feed(conn(first, query, port=53), rules_file(DNS_DROP))
        assert decided(v) == ("drop", False), first


def test_second_client_hello_split_by_a_change_cipher_spec(rules_file):
    """RFC 8446 5: a change_cipher_spec record may come at any time after the first hello;
    `openssl s_server` 3.0 reads a second hello split by one (checked live: evil.example ->
    unrecognized_name). The appliance restarted the hello's parsing after the CCS, read
    garbage, and let the flow go on the first hello's name."""
    second = _hello13("evil.example")
    for between in (_rec(20, b"\x01"), _rec(20, b"\x01") * 3):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 443)
        c.handshake()
        c.send(_rec(22, _hello13("good.example", share=False)))
        c.recv(HRR)
        c.send(_rec(22, second[:60]) + between + _rec(22, second[60:]))
        v, _ = feed(cap, rules_file(TLS_DROP))
        assert decided(v) == ("drop", False)
        v, _ = feed(cap, rules_file(TLS_ALLOW))
        assert decided(v) == ("drop", False)


def test_bare_cr_inside_a_header_line_longer_than_the_window(rules_file):
    """Python's http.server splits header lines on a bare CR too: "X-Pad: <9 KB>\\rHost:
    evil.example" gave its handler Host evil.example (checked live, also after a Host:
    good.example line). The appliance skipped the long line as naming nothing."""
    pad = b"X-Pad: " + b"a" * 9000
    for req in (b"GET / HTTP/1.1\r\n" + pad + b"\rHost: evil.example\r\n\r\n",
                GOOD + pad + b"\rHost: evil.example\r\n\r\n",
                GOOD + pad + b"\rHost: evil.example\rX-B: " + b"b" * 9000 + b"\r\n\r\n"):
        for n in (1, 4, 9):
            v, found = feed(conn(*segments(req, n)), rules_file(HTTP_DROP))
            assert decided(v) == ("drop", False) and "exception.cap" in found, n
    # a long line without one is skipped as before, its CRLF split across segments or not
    req = GOOD + b"Cookie: " + b"c" * 9000 + b"\r\n\r\n"
    cut = req.index(b"\r\n\r\n") + 1
    for parts in ((req,), (req[:cut], req[cut:]), (req[:4000], req[4000:cut], req[cut:])):
        v, found = feed(conn(*parts), rules_file(HTTP_ALLOW))
        assert decided(v)[0] == "pass" and not found, len(parts)


def test_host_with_more_after_the_port(rules_file):
    """nginx ends a Host name at its first ':' whatever follows (ngx_http_validate_host):
    "evil.example:80:80" and "evil.example:x" select the evil.example server (read from its
    source; no nginx on the review machine to check live). The appliance read them as no
    name it knew."""
    for host in (b"evil.example:80:80", b"evil.example:x", b"EVIL.example.:8080:"):
        req = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % host
        v, _ = feed(conn(req), rules_file(HTTP_DROP))
        assert decided(v) == ("drop", False), host
        v, _ = feed(conn(req.replace(b"evil", b"good").replace(b"EVIL", b"good")), rules_file(HTTP_ALLOW))
        assert decided(v)[0] == "drop", host       # "good.example:80:80" is no plain name either
    v, _ = feed(conn(b"GET / HTTP/1.1\r\nHost: good.example:8080\r\n\r\n"), rules_file(HTTP_ALLOW))
    assert decided(v)[0] == "pass"


def test_second_client_hello_after_user_canceled_alerts(rules_file):
    """TLS 1.3 servers ignore a user_canceled alert (RFC 8446 6.1): after its HelloRetryRequest
    `openssl s_server` 3.0 read a second hello after up to four of them (warning or fatal
    level), or with one inside it, and acted on its SNI (checked live). The appliance ended
    its reading at the alert and offloaded the flow."""
    second = _hello13("evil.example")
    canceled = _rec(21, b"\x01\x5a")
    for flight in ([canceled * 4 + _rec(22, second)], [_rec(21, b"\x02\x5a") + _rec(22, second)],
                   [_rec(22, second[:60]) + canceled + _rec(22, second[60:])],
                   [canceled[:3], canceled[3:6], canceled[6:] + _rec(22, second)]):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 443)
        c.handshake()
        c.send(_rec(22, _hello13("good.example", share=False)))
        c.recv(HRR)
        for part in flight:
            c.send(part)
        v, _ = feed(cap, rules_file(TLS_DROP))
        assert decided(v) == ("drop", False), flight
        v, _ = feed(cap, rules_file(TLS_ALLOW))
        assert decided(v) == ("drop", False), flight
    # another alert (close_notify) ends the reading: the flow goes on its first hello's name
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(_rec(22, _hello13("good.example")))
    c.recv(_rec(22, b"\x02" + b"\x01" * 80))
    c.send(_rec(21, b"\x01\x00"))
    v, _ = feed(cap, rules_file(TLS_ALLOW))
    assert decided(v) == ("pass", True)


def test_requests_read_from_one_segment_longer_than_the_window(rules_file):
    """A segment longer than the 8 KiB window (a 9001-byte jumbo frame, a GSO packet, a TSO
    capture) is read in several passes; only the last pass's requests were judged, so
    "GET evil" followed by a request with a long header went through (found by a
    differential run against Python's http.server)."""
    evil = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    long = b"GET / HTTP/1.1\r\nCookie: " + b"c" * 9000 + b"\r\n\r\n"
    v, _ = feed(conn(evil + long), rules_file(HTTP_DROP))
    assert decided(v) == ("drop", False)
    v, _ = feed(conn(EVIL.replace(b"evil", b"good") + evil + GOOD + b"X-Pad: " + b"p" * 8500 + b"\r\n\r\n"),
                rules_file(HTTP_ALLOW))
    assert decided(v) == ("drop", False)
    # DNS over TCP: the queries of all passes count
    q = dns_query(["evil.example"])
    pad = dns_query(["x" * 60 + ".example"])
    msgs = struct.pack("!H", len(q)) + q + (struct.pack("!H", len(pad)) + pad) * 120
    v, _ = feed(conn(msgs, port=53), rules_file(DNS_DROP))
    assert decided(v) == ("drop", False)


def test_connection_close_after_a_line_pythons_header_parser_stops_at(rules_file):
    """Python's header parser ends the header block at a line that is no plain "name:
    value" (a bare CR makes an empty line of it): a Connection: close after it is body to
    Python, which kept the connection open and served the next request (found by a
    differential run; checked live)."""
    for odd in (b"Host: good.example\r\r\n", b"X-A b\r\nHost: good.example\r\n", b"X A: b\r\nHost: good.example\r\n"):
        req = b"GET / HTTP/1.1\r\n" + odd + b"Connection: close\r\n\r\n"
        v, _ = feed(conn(req, EVIL, answer=ANSWER), rules_file(HTTP_DROP))
        assert decided(v) == ("drop", False), odd


def test_pipelined_transactions_in_one_segment_longer_than_the_window(rules_file):
    """Normal pipelining in a segment longer than the window (a 9001-byte jumbo frame, as
    in an AWS VPC): a request line or DNS message cut by the window's end was taken for one
    longer than the window, a cap hit, and an allowed connection was dropped."""
    good = b"GET /x HTTP/1.1\r\nHost: good.example\r\n\r\n"
    v, found = feed(conn(good * 250), rules_file(HTTP_ALLOW))
    assert decided(v)[0] == "pass" and not found
    q = dns_query(["good.example"])
    pad = dns_query(["x" * 61 + ".example"])              # the window ends inside one's question
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, dns_query: ['good.example', '*.example']}\n")
    v, found = feed(conn((struct.pack("!H", len(q)) + q + struct.pack("!H", len(pad)) + pad) * 80, port=53), allow)
    assert decided(v)[0] == "pass" and not found
