"""Hostile input: random bytes and mutated valid messages never raise and keep their types."""

import struct

from hypothesis import given, settings, strategies as st
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.tls.all import (TLS, ProtocolName, ServerName, TLS_Ext_ALPN,
                                  TLS_Ext_ServerName, TLS_Ext_SupportedVersion_CH,
                                  TLSClientHello)

from appliance.applayer import CAP, MORE, NOT, detect, dns, http, tls
from appliance.packet import TCP, UDP
from appliance.stream import StreamStart

FUZZ = settings(max_examples=150, deadline=None)

DNS_SEED = bytes(DNS(id=1, qd=[DNSQR(qname="a.example", qtype="A"), DNSQR(qname="b.example")]))
DNS_SEED_PTR = DNS_SEED[:12] + b"\x07example\x00\x00\x01\x00\x01\x01x\xc0\x0c\x00\x01\x00\x01"
TLS_SEED = bytes(TLS(msg=[TLSClientHello(gmt_unix_time=0, random_bytes=b"\x11" * 28, ciphers=[0x1301], ext=[
    TLS_Ext_ServerName(servernames=[ServerName(servername=b"www.example.com")]),
    TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2")]),
    TLS_Ext_SupportedVersion_CH(versions=[0x0304, 0x0303])])]))
HTTP_SEED = (b"POST http://a.example/x HTTP/1.1\r\nHost: [::1]:80\r\nUser-Agent: t\r\n"
             b"Content-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n\r\n")
SERVER_HELLO_SEED = (b"\x16\x03\x03\x00\x34\x02\x00\x00\x30\x03\x03" + b"\x22" * 32 + b"\x00\x13\x01\x00"
                     + b"\x00\x08\x00\x2b\x00\x02\x03\x04\x00\x10")
HTTP_RESPONSE_SEED = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: a/b\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                      b"HTTP/1.0 404 x\r\nContent-Length: 2\r\n\r\nno")
SEEDS = [DNS_SEED, DNS_SEED_PTR, TLS_SEED, HTTP_SEED, SERVER_HELLO_SEED, HTTP_RESPONSE_SEED]


@st.composite
def mutated(draw):
    """A valid message with a few bytes overwritten, inserted or removed, then maybe cut."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        pos = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(("set", "insert", "delete")))
        byte = draw(st.sampled_from([0x00, 0xFF, 0xC0, 0x3F, 0x40, 0x0A, 0x20, draw(st.integers(0, 255))]))
        if op == "set":
            data[pos] = byte
        elif op == "insert":
            data.insert(pos, byte)
        else:
            del data[pos]
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) if draw(st.booleans()) else bytes(data)


hostile = st.one_of(st.binary(max_size=600), mutated())


def check_all(data):
    msg = dns.parse_message(data)
    assert msg is None or isinstance(msg, dns.DnsMessage)
    if msg is not None:
        assert isinstance(msg.id, int) and isinstance(msg.response, bool)
        assert isinstance(msg.rcode, str) and len(msg.queries) <= dns.MAX_QUESTIONS
        for q in msg.queries:
            assert isinstance(q, dns.DnsQuery) and isinstance(q.rrname, str) and isinstance(q.rrtype, str)
            assert all(0x20 <= ord(c) < 0x7F for c in q.rrname)

    msgs, used = dns.parse_tcp(data)
    assert isinstance(msgs, list) and all(isinstance(m, dns.DnsMessage) for m in msgs)
    assert 0 <= used <= len(data)

    hello = tls.parse_client_hello(data)
    assert hello is MORE or hello is NOT or hello is CAP or isinstance(hello, tls.ClientHello)
    if isinstance(hello, tls.ClientHello):
        assert hello.sni is None or isinstance(hello.sni, str)
        assert isinstance(hello.version, str) and all(isinstance(a, str) for a in hello.alpn)

    if isinstance(hello, tls.ClientHello):
        assert len(hello.ja4()) == 36
    names = tls.certificate_names(data)
    assert names is None or all(v is None or isinstance(v, str) for v in (names.subject, names.issuer))
    used, hellos, status = tls.ServerHelloReader().feed(data)
    assert 0 <= used <= len(data) and status in (None, "done")
    assert all(isinstance(h, tls.CertificateNames) or isinstance(h.ja3s_string(), str) for h in hellos)

    waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None) for _ in range(3)]
    for full in (False, True):
        used, answered, status = http.ResponseReader().feed(data, full, list(waiting))
        assert 0 <= used <= len(data) and status in (None, "done")
        assert all(isinstance(r.status, int) and r.length >= 0 for r in answered)

    reqs, more = http.parse_requests(data)
    assert isinstance(more, bool)
    for r in reqs:
        assert isinstance(r, http.HttpRequest)
        assert all(isinstance(v, str) for v in (r.method, r.uri, r.protocol))
        assert r.host is None or isinstance(r.host, str)

    for proto in (TCP, UDP, 1):
        assert detect(data, proto, 1024, 443) in (None, "dns", "tls", "http")


@FUZZ
@given(hostile)
def test_parsers_never_raise(data):
    check_all(data)


def test_seeds_parse():
    # The mutation seeds are valid, so the fuzzing starts from real messages.
    assert [q.rrname for q in dns.parse_message(DNS_SEED_PTR).queries] == ["example", "x.example"]
    assert tls.parse_client_hello(TLS_SEED).sni == "www.example.com"
    assert [r.method for r in http.parse_requests(HTTP_SEED)[0]] == ["POST", "GET"]
    framed = struct.pack("!H", len(DNS_SEED)) + DNS_SEED
    assert detect(framed, TCP, 1024, 53) == "dns"
    assert tls.ServerHelloReader().feed(SERVER_HELLO_SEED)[1][0].version == "TLS 1.3"
    waiting = [http.HttpRequest("GET", "/", "HTTP/1.1", "h", None) for _ in range(2)]
    answered = http.ResponseReader().feed(HTTP_RESPONSE_SEED, False, waiting)[1]
    assert [(r.status, r.length, r.content_type) for r in answered] == [(200, 3 + 3 + 2 + 3, "a/b"), (404, 2, None)]


segments = st.lists(
    st.tuples(st.integers(0, 2**32 - 1) | st.integers(-3000, 3000),  # absolute or near the ISN
              st.binary(max_size=300), st.booleans()),
    max_size=25)


@FUZZ
@given(st.integers(0, 2**32 - 1), segments, st.integers(1, 4096))
def test_stream_never_raises_and_stays_bounded(isn, segs, limit):
    s = StreamStart(limit=limit)
    s.add(isn, b"", syn=True)
    before = b""
    for seq, payload, syn in segs:
        if -3000 <= seq <= 3000:
            seq = (isn + 1 + seq) & 0xFFFFFFFF
        grew = s.add(seq, payload, syn=syn and not payload)
        data = s.data
        assert isinstance(grew, bool) and grew == (len(data) > len(before))
        assert data.startswith(before)         # bytes once delivered never change
        assert len(data) <= limit and s.complete == (len(data) >= limit)
        assert isinstance(s.gaps, bool) and s.overlap_conflicts >= 0
        before = data


@FUZZ
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2**32 - 1), st.randoms(use_true_random=False))
def test_stream_any_segment_order_rebuilds_the_bytes(payload, isn, rnd):
    # Cut into segments, deliver shuffled with duplicates: the result is the original.
    cuts = sorted(rnd.sample(range(1, len(payload)), min(len(payload) - 1, 12))) if len(payload) > 1 else []
    bounds = [0] + cuts + [len(payload)]
    segs = [(bounds[i], payload[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    segs += rnd.sample(segs, min(3, len(segs)))
    rnd.shuffle(segs)
    s = StreamStart(limit=4096)
    s.add(isn, b"", syn=True)
    for off, seg in segs:
        s.add((isn + 1 + off) & 0xFFFFFFFF, seg)
    assert s.data == payload and not s.gaps and s.overlap_conflicts == 0
