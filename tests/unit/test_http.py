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
    assert parse_requests(b"get / HTTP/1.1\r\n\r\n") == ([], False)
    assert parse_requests(b"SSH-2.0-OpenSSH_9.6\r\n") == ([], False)
    assert parse_requests(b"") == ([], False)
    assert parse_requests(b"USER anonymous\r\n\r\n") == ([], False)
    # An unknown method is fine when the request line names HTTP.
    assert parse_requests(b"BREW /pot HTTP/1.1\r\n\r\n")[0][0].method == "BREW"


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
