"""Review 2: crafted packets must not get a flow passed or offloaded before its verdict is
final, nor a worker's resources run out. Each test reproduced a finding through the
Inspector (the code path live workers run) and fails without its fix."""
import struct
import sys
from pathlib import Path

import pytest

from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, l2, tls_records
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.stream import StreamStart

REPO = Path(__file__).resolve().parents[2]
DNS_BLOCKLIST = str(REPO / "rules" / "examples" / "dns-blocklist.yaml")
SNI_ALLOWLIST = str(REPO / "rules" / "examples" / "sni-allowlist.yaml")
HTTP_HOST = str(REPO / "rules" / "examples" / "http-host.yaml")
C, S = "10.0.0.1", "93.184.216.34"


def run(cap, rules, **settings):
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert insp.counters.internal_errors == 0
    return out, insp


def datagram(src, sport, dst, dport, payload):
    return l2(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(payload))


# --- UDP: the first datagram's sender is not always the client ---------------------------

def test_one_datagram_from_the_servers_port_does_not_offload_a_dst_port_drop_rules_flow(rules_file):
    """An outside host (or a spoofed source) sends one datagram from S:53 to the client's
    port before the client's first query: the flow's initiator was taken to be S, so
    `dst_port: 53` fitted neither the flow nor its offload check, the flow was passed and
    offloaded on that datagram, and the client's queries to S:53 went through the kernel."""
    rules = rules_file("rules:\n  - {id: 1, action: drop, proto: udp, dst_port: 53}\n")
    cap = Capture()
    cap.add(datagram(S, 53, C, 40000, b"x"))
    cap.add(datagram(C, 40000, S, 53, dns_query(["example.com"])))
    out, _ = run(cap, rules)
    assert [v.action for v in out] == ["drop", "drop"]
    assert not any(v.action == "pass" and v.offload for v in out)


def test_a_query_after_a_server_first_datagram_meets_the_dns_blocklists_port_rule():
    """The example blocklist's rule 3002 (reject udp dst_port 53, *.doubleclick.net): the
    query was read (DNS names count from either side) but matched against the flow's
    orientation S:53 -> C, where `dst_port: 53` does not fit: the query passed."""
    cap = Capture()
    cap.add(datagram(S, 53, C, 40000, b"x"))
    n = cap.add(datagram(C, 40000, S, 53, dns_query(["ads.doubleclick.net"])))
    out, _ = run(cap, DNS_BLOCKLIST)
    assert out[n - 1].action == "reject"
    assert out[n - 1].flow.verdict_rule.id == 3002


def test_client_first_udp_flows_keep_their_orientation(rules_file):
    """What the ports justify is unchanged: a client's query from a high port passes by a
    `dst_port` pass rule, and a block rule that fits only the reverse orientation (the
    server's port as a destination) does not touch it."""
    rules = rules_file("""
default_action: drop
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 40000}
  - {id: 2, action: pass, proto: udp, dst_port: 53}
  - {id: 3, action: pass, proto: udp, dst_port: 51820}
""")
    cap = Capture()
    cap.add(datagram(C, 40000, S, 53, dns_query(["example.com"])))
    cap.add(datagram(S, 53, C, 40000, b"answer"))
    cap.add(datagram(C, 41000, S, 51820, b"wg"))
    cap.add(datagram(S, 51820, C, 41000, b"wg"))
    out, _ = run(cap, rules)
    assert [v.action for v in out] == ["pass"] * 4


# --- TLS: the reading after the first ClientHello --------------------------------------

def test_empty_records_after_the_first_hello_do_not_end_the_reading_in_the_clients_favour():
    """After an allowed ClientHello the reader looks for a second one (after a
    HelloRetryRequest the server acts on its SNI). 33 zero-length handshake records ended
    that reading as "no second hello": the flow was final, passed and offloaded, and a
    second ClientHello for a name the allow-list does not list went through the kernel
    to any server stack that takes more empty records than OpenSSL. Before the first hello
    the same records make the name unknown (cap); after it now too."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    n_first = c.send(tls_records(client_hello("example.com")))
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")      # the server's (retry) hello
    n_empty = c.send(b"\x16\x03\x03\x00\x00" * 33)
    n_second = c.send(tls_records(client_hello("evil.example")))
    out, _ = run(cap, SNI_ALLOWLIST)
    assert out[n_first - 1].action == "pass"
    assert not any(v.action == "pass" and v.offload for v in out[n_first:])
    assert out[n_empty - 1].action == "drop" and out[n_second - 1].action == "drop"


def hello_with(sni, extension):
    """A ClientHello whose extensions add `extension` (type, length and body) after the SNI."""
    body = bytearray(client_hello(sni)[4:])
    ext_at = 2 + 32 + 1 + 2 + 2 + 2                   # version, random, session, suites, compression
    ext_len = struct.unpack_from("!H", body, ext_at)[0]
    struct.pack_into("!H", body, ext_at, ext_len + len(extension))
    body += extension
    return b"\x01" + struct.pack("!I", len(body))[1:] + bytes(body)


def hello_offering_early_data(sni):
    return hello_with(sni, b"\x00\x2a\x00\x00")     # early_data (42), empty


@pytest.mark.parametrize("between", [
    b"\x15\x03\x03\x00\x02\x01\x5a",                   # alert user_canceled: OpenSSL ignores it in TLS 1.3
    b"\x17\x03\x03\x00\x20" + b"\x55" * 32,             # 0-RTT data: skipped by a server that retries
], ids=["user-canceled-alert", "early-data"])
def test_records_a_server_skips_do_not_end_the_wait_for_a_second_hello(between):
    """Between the first ClientHello and the second (after a HelloRetryRequest) a server
    skips an alert it ignores and, when the first hello offered early data, the 0-RTT
    records (RFC 8446 4.2.10). Either record ended the reader's wait for a second hello:
    the flow was final, passed and offloaded, and the second ClientHello -- the one the
    server acts on -- went through the kernel unread."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    n_first = c.send(tls_records(hello_offering_early_data("example.com")))
    c.send(between)
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")      # the server's HelloRetryRequest
    n_second = c.send(tls_records(client_hello("evil.example")))
    out, _ = run(cap, SNI_ALLOWLIST)
    assert out[n_first - 1].action == "pass"
    assert not any(v.offload and v.action == "pass" for v in out[n_first - 1:])
    assert out[n_second - 1].action == "drop"


def test_an_alert_inside_the_second_hello_does_not_lose_it():
    """OpenSSL reads a TLS 1.3 user_canceled alert between two records of a fragmented
    handshake message and goes on with the message. The reader started the hello over
    after a skipped record: its second half read as garbage, the reading ended, and the
    second ClientHello's name went unread."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(tls_records(client_hello("example.com")))
    c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    second = tls_records(client_hello("evil.example"), 40)
    c.send(second[:45] + b"\x15\x03\x03\x00\x02\x01\x5a")
    n = c.send(second[45:])
    out, _ = run(cap, SNI_ALLOWLIST)
    assert not any(v.offload and v.action == "pass" for v in out)
    assert out[n - 1].action == "drop"


def test_records_skipped_while_waiting_for_a_second_hello_are_bounded():
    """Change-cipher-spec records after the first hello were skipped without end: a
    connection streaming them (6 bytes each) kept the reader walking records in Python for
    its life. OpenSSL counts a TLS 1.3 CCS as an empty record (32 in a row at most): past
    that the name is unknown (cap) and the reader stops."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(tls_records(client_hello("example.com")))
    n = c.send(b"\x14\x03\x03\x00\x01\x01" * 3000)
    insp = Inspector(load_rules(SNI_ALLOWLIST), Settings())
    pkts = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    for p in pkts[:n - 1]:
        insp.process(p)
    out = []
    assert python_lines(lambda: out.append(insp.process(pkts[n - 1])), "tls.py") < 3000   # was 51,000
    assert out[0].flow.app.unknown == "cap" and out[0].action == "drop"


def test_early_data_past_what_servers_skip_ends_the_wait():
    """A 0-RTT connection the server accepted sends application data on: the reading ends
    past the early data servers skip, and the allowed flow is offloaded then."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    c.send(tls_records(hello_offering_early_data("example.com")))
    record = b"\x17\x03\x03\x10\x00" + b"\x55" * 4096
    for _ in range(5):
        n = c.send(record)
    n = c.recv(b"", "A")                   # the server acknowledged the hello: final
    out, _ = run(cap, SNI_ALLOWLIST)
    assert out[n - 1].action == "pass" and out[n - 1].offload


# --- what one connection may make a worker hold -------------------------------------------

@pytest.mark.parametrize("line", [b"Content-Length: 1", b"Host: deb.debian.org"], ids=["framing", "host"])
def test_a_header_block_of_repeated_lines_is_not_held_line_by_line(line):
    """Every Host reading and framing line of a request was kept until its header block
    ended (up to 1 MiB, Go's limit): a block of "Content-Length: 1" lines held 6 MB per
    connection, a few hundred connections a worker's memory. Past MAX_READINGS the host
    cannot be known (cap): the reader lets go of the request, and a block-list blocks."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\n")
    for _ in range(40):                            # one more segment of lines each time
        n = c.send((line + b"\r\n") * 50)
    out, insp = run(cap, HTTP_HOST)
    flow = out[n - 1].flow
    assert flow.app.reader is None and flow.app.unknown == "cap"
    assert out[n - 1].action == "drop"             # unknown: rule 4002 may be it


def test_a_trickled_extension_is_not_held_whole():
    """The hello parser held each extension it reads (SNI, ALPN, supported_versions) whole
    before parsing it: up to 64 KiB per connection while a hello trickles in, eight times
    the stream window every flow may hold. It holds MAX_KEPT_EXTENSION now and skips the
    rest; the server name still comes out."""
    alpn = b"\x08http/1.1" * 6000
    hello = hello_with("example.com", struct.pack("!HHH", 16, len(alpn) + 2, len(alpn)) + alpn)
    records = tls_records(hello, 16000)
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    held = []
    for i in range(0, 40600, 1400):                   # the hello's first 40 KB, in segments
        c.send(records[i:i + 1400])
    insp = Inspector(load_rules(SNI_ALLOWLIST), Settings())
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        reader = v.flow.app.reader if v.flow.app is not None else None
        if reader is not None and reader.parser is not None:
            held.append(len(reader.parser.buf))
    assert max(held) < Settings().stream_bytes          # was 38,000 bytes and growing
    for i in range(40600, len(records), 1400):
        c.send(records[i:i + 1400])
    out, _ = run(cap, SNI_ALLOWLIST)
    assert out[-1].flow.app.names["tls"] == ["example.com"] and out[-1].action == "pass"


@pytest.mark.parametrize("second", [False, True], ids=["first-hello", "second-hello"])
def test_a_server_name_longer_than_what_is_held_is_unknown(rules_file, second):
    """A host_name past MAX_KEPT_EXTENSION cannot be read: unknown (a block-list blocks),
    in the second hello too, never "no name"."""
    rules = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: '*.evil.example'}\n")
    name = "a" * 1500 + ".evil.example"
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 443)
    c.handshake()
    if second:
        c.send(tls_records(client_hello("example.com")))
        c.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    n = c.send(tls_records(client_hello(name)))
    out, _ = run(cap, rules)
    assert out[n - 1].action == "drop"
    assert out[n - 1].flow.app.unknown == "cap"


# --- HTTP: a method is any token -----------------------------------------------------------

@pytest.mark.parametrize("method", [b"get", b"G.T", b"X" * 40])
@pytest.mark.parametrize("first", [True, False], ids=["first-request", "after-an-allowed-one"])
def test_a_request_with_a_token_method_is_read(method, first):
    """Go's net/http takes any token as a method ("get", "G.T", 40 letters) and a Go front
    (Caddy, Traefik) routes the request by its Host. The reader took only capitals and
    '_'/'-' up to 32: such a request line ended the reading ("not HTTP"), and every later
    request on the connection -- "GET /x" to a blocked host included -- went unread."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c.handshake()
    if not first:
        c.send(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    n = c.send(method + b" / HTTP/1.1\r\nHost: pastebin.com\r\n\r\n")
    out, _ = run(cap, HTTP_HOST)
    assert out[n - 1].action == "drop"
    assert out[n - 1].flow.verdict_rule.id == 4002


def python_calls(fn):
    """Python function calls fn() makes: a measure of work that does not depend on the
    machine's speed (no timing)."""
    n = [0]

    def count(_frame, event, _arg):
        if event == "call":
            n[0] += 1
    sys.setprofile(count)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return n[0]


def test_a_body_of_newlines_is_not_read_line_by_line():
    """A request body is also read as requests (a server that ignores it reads them), and
    blank lines before a request are skipped: one Python call per newline, a body of them
    cost 70x a body of text per byte (0.7 s per MiB: one connection at ~11 Mbit/s kept a
    worker busy). A run of blank lines is skipped in one step now."""
    def feed(body):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 80)
        c.handshake()
        c.send(b"POST / HTTP/1.1\r\nHost: example.org\r\nContent-Length: 1000000\r\n\r\n")
        for i in range(0, len(body), 1400):
            c.send(body[i:i + 1400])
        insp = Inspector(load_rules(HTTP_HOST), Settings())
        pkts = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
        return python_calls(lambda: [insp.process(p) for p in pkts])
    text, newlines = feed(b"x" * 140_000), feed(b"\r\n" * 70_000)
    assert newlines < 2 * text, (newlines, text)


def python_lines(fn, module):
    """Python lines fn() runs in `module` (a file name): work, not time."""
    n = [0]

    def trace(frame, event, _arg):
        if frame.f_code.co_filename.endswith(module):
            if event == "line":
                n[0] += 1
            return trace
        return None
    sys.settrace(trace)
    try:
        fn()
    finally:
        sys.settrace(None)
    return n[0]


def urgent_stream(data):
    """A stream whose first byte was urgent (taken out), then `data` delivered."""
    st = StreamStart(8192)
    st.add(999, b"", True)
    st.mark_urgent(1000, 1)
    st.add(1000, data)
    return st


def test_a_retransmission_after_an_urgent_byte_is_compared_piecewise():
    """Once an urgent byte was taken out of the stream, every retransmission of delivered
    bytes was compared with them byte by byte in Python: 500x the cost of one without
    (0.43 ms per 8 KB segment), a cheap way to keep a worker busy. The pieces between the
    urgent bytes are compared as slices now, with the same result."""
    data = bytes(range(256)) * 31
    st = urgent_stream(data)
    lines = python_lines(lambda: st.add(1000, data), "stream.py")
    assert lines < 200, lines                            # was ~4 per byte: 32,000
    assert st.overlap_conflicts == 0
    for at in (0, 1, 4000, len(data) - 1):               # the urgent byte itself, and bytes after it
        st = urgent_stream(data)
        other = bytearray(data)
        other[at] ^= 0xFF
        st.add(1000, bytes(other))
        assert st.overlap_conflicts == (0 if at == 0 else 1), at


@pytest.mark.parametrize("connection", [
    b"Connection: close, x-trace",                  # Python's http.server: not exactly "close"
    b"Connection: x-trace\r\nConnection: close",     # Go: the first line has no "close" token
], ids=["close-in-a-list", "close-on-a-second-line"])
def test_a_connection_header_some_server_keeps_open_does_not_end_the_reading(connection):
    """After a request with "close" in its Connection header the reader stopped (the server
    closes): the flow was final and offloaded, and a second request on the connection went
    unread. Python's http.server (HTTP/1.1 mode) closes only on a first line of exactly
    "close", Go only on a "close" token of the first line: both read the next request."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: example.org\r\n" + connection + b"\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    n = c.send(b"GET / HTTP/1.1\r\nHost: pastebin.com\r\n\r\n")
    out, _ = run(cap, HTTP_HOST)
    assert out[n - 1].action == "drop"
