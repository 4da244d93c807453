from pathlib import Path

import dpkt
import pytest

from appliance.applayer import detect, http
from appliance.applayer.http import HttpRequest, parse_requests
from appliance.packet import TCP
from appliance.stream import StreamStart

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def test_get_with_host_and_agent():
    reqs, more = parse_requests(b"GET /index.html?q=1 HTTP/1.1\r\nHost: WWW.Example.COM\r\n"
                                b"user-AGENT:  curl/8.0 \r\nAccept: */*\r\n\r\n")
    assert reqs == [HttpRequest("GET", "/index.html?q=1", "HTTP/1.1", "www.example.com", "curl/8.0")]
    assert more is False


def test_get_without_host():
    reqs, more = parse_requests(b"GET / HTTP/1.0\r\n\r\n")
    assert reqs == [HttpRequest("GET", "/", "HTTP/1.0", None, None)] and not more


def test_bare_lf_line_endings():
    reqs, _ = parse_requests(b"GET /x HTTP/1.1\nHost: a.example\n\n")
    assert reqs[0].host == "a.example" and reqs[0].uri == "/x"


def test_absolute_uri_authority_names_the_host():
    reqs, _ = parse_requests(b"GET http://user:pw@A.Example:8080/p?x HTTP/1.1\r\n\r\n")
    assert reqs[0].host == "a.example" and reqs[0].uri == "http://user:pw@A.Example:8080/p?x"
    # The absolute URI wins over a Host header: servers must ignore Host then (RFC 9112 3.2.2).
    reqs, _ = parse_requests(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert reqs[0].host == "a.example"


def test_connect_authority():
    reqs, _ = parse_requests(b"CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n")
    assert reqs[0].method == "CONNECT" and reqs[0].host == "tunnel.example"


def test_host_port_and_ipv6():
    for raw, want in ((b"a.example:8080", "a.example"), (b"  A.example  ", "a.example"),
                      (b"[::1]:80", "::1"), (b"[2001:DB8::5]", "2001:db8::5"),
                      (b"2001:db8::5", "2001:db8::5"), (b"a.example:", "a.example"),
                      (b"", None)):
        reqs, _ = parse_requests(b"GET / HTTP/1.1\r\nHost: " + raw + b"\r\n\r\n")
        assert reqs[0].host == want, raw


def test_post_body_skipped_then_pipelined_requests():
    data = (b"POST /form HTTP/1.1\r\nHost: a.example\r\nContent-Length: 11\r\n\r\n"
            b"GET /fake H"                       # body that looks like a request
            b"GET /two HTTP/1.1\r\nHost: b.example\r\n\r\n"
            b"HEAD /three HTTP/1.1\r\nHost: c.example\r\n\r\n")
    reqs, more = parse_requests(data)
    assert [(r.method, r.uri, r.host) for r in reqs] == [
        ("POST", "/form", "a.example"), ("GET", "/two", "b.example"), ("HEAD", "/three", "c.example")]
    assert more is False


def test_chunked_body_is_walked_to_the_next_request():
    # was: the walk stopped at a chunked body, so the next request of the connection went unread
    data = (b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nGET /\r\n0\r\nTrailer: y\r\n\r\nGET /after HTTP/1.1\r\n\r\n")
    reqs, more = parse_requests(data)
    assert [r.uri for r in reqs] == ["/up", "/after"] and more is False


def test_conflicting_content_length_stops_the_walk():
    data = (b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\n"
            b"abcGET /smuggled HTTP/1.1\r\n\r\n")
    reqs, _ = parse_requests(data)
    assert [r.uri for r in reqs] == ["/"]


def test_split_header_more():
    full = b"GET /a HTTP/1.1\r\nHost: a.example\r\n\r\n"
    for i in range(1, len(full)):
        reqs, more = parse_requests(full[:i])
        assert reqs == [] and more is True, full[:i]
    reqs, more = parse_requests(full + b"GET /b HTTP/1.1\r\nHo")
    assert [r.uri for r in reqs] == ["/a"] and more is True


def test_body_incomplete_means_no_more_headers_pending():
    reqs, more = parse_requests(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc")
    assert len(reqs) == 1 and more is False


def test_not_http():
    assert parse_requests(b"\x16\x03\x01\x02\x00\x01") == ([], False)
    assert parse_requests(b"get /\r\n\r\n") == ([], False)      # unknown method, no HTTP/x.y
    assert parse_requests(b"SSH-2.0-OpenSSH_9.6\r\n") == ([], False)
    assert parse_requests(b"") == ([], False)
    assert parse_requests(b"USER anonymous\r\n\r\n") == ([], False)
    # An unknown method is fine when the request line names HTTP.
    assert parse_requests(b"BREW /pot HTTP/1.1\r\n\r\n")[0][0].method == "BREW"
    # ... any token, as Go's net/http reads it (nginx answers 400)
    assert parse_requests(b"get / HTTP/1.1\r\n\r\n")[0][0].method == "get"


def test_header_block_still_open_is_pending():
    # was: a block past 16 KiB was taken as complete; the reader now waits for its end
    # (up to MAX_HEADER_BLOCK, see the reader tests below)
    data = b"GET /big HTTP/1.1\r\nHost: a.example\r\nX-Pad: " + b"A" * 20000
    assert parse_requests(data) == ([], True)
    reqs, more = parse_requests(data + b"\r\n\r\n")
    assert [(r.uri, r.host) for r in reqs] == [("/big", "a.example")] and more is False


def test_control_bytes_escaped():
    reqs, _ = parse_requests(b"GET /a\x1bb HTTP/1.1\r\nHost: x\x00y\r\nUser-Agent: z\x7f\r\n\r\n")
    assert reqs[0].uri == "/a\\x1bb" and reqs[0].host == "x\\x00y" and reqs[0].user_agent == "z\\x7f"


def test_detect_http_by_content():
    assert detect(b"GET / HTTP/1.1\r\n", TCP, 40000, 4444) == "http"
    assert detect(b"PROPFIND /x", TCP, 40000, 4444) == "http"
    assert detect(b"BREW /pot HTTP/1.1\r\n", TCP, 40000, 4444) == "http"
    # FTP/SMTP commands are uppercase tokens + SP too, but not HTTP.
    assert detect(b"USER anonymous\r\n", TCP, 40000, 21) is None
    assert detect(b"EHLO mail.example\r\n", TCP, 40000, 25) is None
    assert detect(b"HTTP/1.1 200 OK\r\n", TCP, 80, 40000) is None


def client_stream(path, server_port=80):
    if not path.exists():
        pytest.skip(f"corpus file absent: {path}")
    stream = StreamStart()
    with open(path, "rb") as f:
        for _, frame in dpkt.pcap.Reader(f):
            seg = getattr(dpkt.ethernet.Ethernet(frame).data, "data", None)
            if isinstance(seg, dpkt.tcp.TCP) and seg.dport == server_port:
                stream.add(seg.seq, bytes(seg.data), syn=bool(seg.flags & dpkt.tcp.TH_SYN))
    return stream.data


@pytest.mark.parametrize("rel,want", [
    ("suricata-verify/tests/flowbit-oring/input.pcap",
     HttpRequest("GET", "/", "HTTP/1.1", "www.testmyids.com", "curl/7.43.0")),
    ("zeek/testing/btest/Traces/http/get.pcap",
     HttpRequest("GET", "/download/CHANGES.bro-aux.txt", "HTTP/1.1", "bro.org",
                 "Wget/1.14 (darwin12.2.0)")),
    ("suricata-verify/tests/detect-content-ends-with-negated-01/input.pcap",
     HttpRequest("GET", "/test.exe", "HTTP/1.1", "www.google.com.example.com", None)),
])
def test_corpus_requests(rel, want):
    data = client_stream(CORPUS / rel)
    assert detect(data, TCP, 40000, 80) == "http"
    assert parse_requests(data) == ([want], False)
    assert http.looks_like(data)


# -- RequestReader: the connection's requests as a server frames them ------------------

from appliance.applayer import CAP  # noqa: E402
from appliance.applayer.http import MAX_HEADER_BLOCK, RequestReader  # noqa: E402


def read(*chunks, full=False):
    """Feed chunks as a stream would (unconsumed bytes stay in front of the next chunk)."""
    r = RequestReader()
    held, reqs, status = b"", [], None
    for chunk in chunks:
        held += chunk
        used, got, status = r.feed(held, full)
        held = held[used:]
        reqs += got
        if status is not None:
            break
    return reqs, status, r


def test_reader_hosts_hold_every_reading():
    reqs, _, _ = read(b"GET http://a.example/ HTTP/1.1\r\nHost: b.example\r\nHost: c.example:80\r\n\r\n")
    assert reqs[0].host == "a.example" and reqs[0].hosts == ["a.example", "b.example", "c.example"]
    reqs, _, _ = read(b"GET / HTTP/1.1\r\nHost: a.example\r\n\tb.example\r\n\r\n")
    assert reqs[0].hosts == ["a.example", "a.example b.example", "b.example"]
    reqs, _, _ = read(b"GET / HTTP/1.1\r\nX: y\r\n Host: b.example\r\n\r\n")
    assert reqs[0].hosts == ["b.example"]


@pytest.mark.parametrize("headers", [
    b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
    b"Content-Length: 3\r\nContent-Length: 4\r\n",
    b"Content-Length: +3\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding : chunked\r\n",
    b"X: y\r\n Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding:\r\n chunked\r\n",
    b"Content-Length: 3\r\n 0\r\n",               # folded: "3 0" to a joining server, 3 to a lax one
    b"Transfer-Encoding: chunked\r\n , identity\r\n",
])
def test_reader_framing_read_two_ways(headers):
    reqs, status, _ = read(b"POST / HTTP/1.1\r\nHost: a.example\r\n" + headers + b"\r\nabc")
    assert [r.host for r in reqs] == ["a.example"] and status == "http_framing"


def test_reader_same_content_length_twice_is_one_length():
    reqs, status, _ = read(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"
                           b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert [r.host for r in reqs] == [None, "b.example"] and status is None


def test_reader_transfer_encoding_in_http_1_0_is_framing():
    _, status, _ = read(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert status == "http_framing"


@pytest.mark.parametrize("body", [b"0x5\r\nhello\r\n", b" 5\r\nhello\r\n", b"5\r\nhelloX\r\n",
                                  b"1234567890abcdef0\r\n"])
def test_reader_bad_chunk_syntax_is_framing(body):
    _, status, _ = read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert status == "http_framing"


def test_reader_chunked_body_across_chunks_of_the_stream():
    data = (b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n10 ; x=y\r\n"
            + b"z" * 16 + b"\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: b.example\r\n\r\n")
    reqs, status, _ = read(*[data[i:i + 7] for i in range(0, len(data), 7)])
    assert [r.host for r in reqs] == [None, "b.example"] and status is None


def test_reader_long_line_skipped_only_when_it_names_nothing():
    # the line fills the window by itself (bytes before it were consumed: they make room)
    _, status, r = read(b"GET / HTTP/1.1\r\n", b"X-Long: " + b"a" * 100, full=True)
    assert status is None and r.skip_line
    for name in (b"Host", b"Content-Length", b"Transfer-Encoding"):
        _, status, _ = read(b"GET / HTTP/1.1\r\n", name + b": " + b" " * 100, full=True)
        assert status is CAP, name
    _, status, _ = read(b"GET /" + b"a" * 100, full=True)       # a request line: cap as well
    assert status is CAP
    # behind bytes read already, a line is no longer than the window: wait for room
    _, status, r = read(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * 100, full=True)
    assert status is None and not r.skip_line


def test_reader_header_block_over_the_limit_is_a_cap_hit():
    line = b"X-Pad: " + b"a" * 1000 + b"\r\n"
    n = MAX_HEADER_BLOCK // len(line) + 1
    reqs, status, _ = read(b"GET / HTTP/1.1\r\n", *[line] * n, b"Host: a.example\r\n\r\n")
    assert reqs == [] and status is CAP
    reqs, status, _ = read(b"GET / HTTP/1.1\r\n", *[line] * (n - 2), b"Host: a.example\r\n\r\n")
    assert [r.host for r in reqs] == ["a.example"] and status is None


def test_reader_connection_close_and_http_1_0_end_the_connection():
    for req, closing in ((b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", True),
                         (b"GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", False),
                         (b"GET / HTTP/1.0\r\n\r\n", True),
                         (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
                         (b"GET / HTTP/1.1\r\n\r\n", False)):
        _, _, r = read(req)
        assert r.closing is closing, req


def test_reader_not_a_request_is_done_but_after_a_cut_body_request_is_framing():
    _, status, _ = read(b"GET / HTTP/1.1\r\n\r\nhello there\r\n")
    assert status == "done"
    inner = b"GET / HTTP/1.1\r\nX: "
    _, status, _ = read(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner + b"y\r\n\r\n")
    assert status == "http_framing"


def test_reader_body_as_requests_reads_only_content_length_bodies():
    inner = b"GET / HTTP/1.1\r\nHost: b.example\r\n\r\n"
    reqs, _, _ = read(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(inner) + inner)
    assert [r.host for r in reqs] == [None, "b.example"]
    chunked = b"%x\r\n" % len(inner) + inner + b"\r\n0\r\n\r\n"
    reqs, _, _ = read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked)
    assert [r.host for r in reqs] == [None]             # a chunk-size line is no request line


def test_reader_bare_cr_readings():
    reqs, _, _ = read(b"GET / HTTP/1.1\r\nHost: a.example\rHost: b.example\r\n\r\n")
    assert {"a.example", "b.example"} <= set(reqs[0].hosts)


def test_detect_http_after_empty_lines_on_a_dns_port():
    # blanks before a request are consumed by the app layer except on DNS ports (a DNS
    # length prefix may be such a byte): there the guess itself skips the empty lines
    req = b"\r\n\r\nGET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
    assert http.looks_like(req)
    assert detect(req, TCP, 40000, 53) == "http"
