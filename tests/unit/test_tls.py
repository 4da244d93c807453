import struct
from pathlib import Path

import dpkt
import pytest
from scapy.layers.tls.all import (TLS, ProtocolName, ServerName, TLS_Ext_ALPN,
                                  TLS_Ext_ServerName, TLS_Ext_SupportedVersion_CH,
                                  TLSClientHello)

from appliance.applayer import CAP, MORE, NOT, detect, tls
from appliance.packet import TCP
from appliance.stream import StreamStart

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def hello_handshake(sni=b"www.example.com", alpn=(), versions=None, version=0x0303):
    """The bytes of one ClientHello handshake message (type + 3-byte length + body)."""
    ext = []
    if sni is not None:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni)]))
    if alpn:
        ext.append(TLS_Ext_ALPN(protocols=[ProtocolName(protocol=p) for p in alpn]))
    if versions:
        ext.append(TLS_Ext_SupportedVersion_CH(versions=list(versions)))
    return bytes(TLSClientHello(version=version, ciphers=[0x1301, 0xC02F], ext=ext or None))


def records(handshake, sizes=None, record_version=0x0301):
    """Wrap handshake bytes in handshake records, split at the given fragment sizes."""
    sizes = sizes or [len(handshake)]
    out, off = b"", 0
    for size in sizes + [len(handshake)]:
        frag = handshake[off:off + size]
        if not frag:
            break
        out += struct.pack("!BHH", 22, record_version, len(frag)) + frag
        off += len(frag)
    return out


def test_scapy_record_with_sni_alpn():
    ch = TLSClientHello(ciphers=[0x1301], ext=[
        TLS_Ext_ServerName(servernames=[ServerName(servername=b"www.example.com")]),
        TLS_Ext_ALPN(protocols=[ProtocolName(protocol=b"h2"), ProtocolName(protocol=b"http/1.1")])])
    hello = tls.parse_client_hello(bytes(TLS(msg=[ch])))
    assert hello == tls.ClientHello("www.example.com", "TLS 1.2", ["h2", "http/1.1"])


def test_no_sni_and_old_versions():
    assert tls.parse_client_hello(records(hello_handshake(sni=None))) == tls.ClientHello(None, "TLS 1.2", [])
    h = tls.parse_client_hello(records(hello_handshake(version=0x0301)))
    assert h.version == "TLS 1.0" and h.sni == "www.example.com"
    assert tls.parse_client_hello(records(hello_handshake(version=0x0300))).version == "SSLv3"


def test_tls13_supported_versions_ignores_grease():
    h = tls.parse_client_hello(records(hello_handshake(versions=[0x7A7A, 0x0304, 0x0303])))
    assert h.version == "TLS 1.3"
    h = tls.parse_client_hello(records(hello_handshake(versions=[0xFAFA, 0x0303])))
    assert h.version == "TLS 1.2"


def test_hello_without_extensions_block():
    body = struct.pack("!H", 0x0303) + b"\x11" * 32 + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    assert tls.parse_client_hello(records(hs)) == tls.ClientHello(None, "TLS 1.2", [])


def test_sni_escaped():
    h = tls.parse_client_hello(records(hello_handshake(sni=b"evil\n\"host\x00")))
    assert h.sni == 'evil\\x0a"host\\x00'


def test_split_across_two_records():
    hs = hello_handshake(alpn=[b"h2"], versions=[0x0304])
    data = records(hs, sizes=[3])  # even the handshake header is split
    assert data.count(b"\x16\x03\x01") >= 2
    assert tls.parse_client_hello(data) == tls.ClientHello("www.example.com", "TLS 1.3", ["h2"])
    data = records(hs, sizes=[40, 1, 30])
    assert tls.parse_client_hello(data).sni == "www.example.com"


def test_truncated_at_every_offset_is_more():
    data = records(hello_handshake(alpn=[b"h2"]), sizes=[50])
    for i in range(len(data)):
        assert tls.parse_client_hello(data[:i]) is MORE, i
    assert isinstance(tls.parse_client_hello(data), tls.ClientHello)


def test_not_tls():
    assert tls.parse_client_hello(b"GET / HTTP/1.1\r\n\r\n") is NOT
    assert tls.parse_client_hello(b"\x17\x03\x03\x00\x10" + b"x" * 16) is NOT   # app data
    assert tls.parse_client_hello(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00") is NOT  # ServerHello
    # A handshake record followed by something else before the hello completes.
    hs = hello_handshake()
    # ... another record type (an alert) inside the hello: the server may skip it or abort
    assert tls.parse_client_hello(records(hs[:20]) + b"\x15\x03\x03\x00\x02\x02\x28") is CAP
    # Inner lengths that overrun the handshake body.
    bad = bytearray(hello_handshake())
    bad[4 + 34] = 0xFF  # session_id length
    assert tls.parse_client_hello(records(bytes(bad))) is NOT


def test_hello_over_openssls_limit_is_a_cap_hit():
    body_len = tls.MAX_HELLO + 100
    data = struct.pack("!BHH", 22, 0x0301, 100) + b"\x01" + body_len.to_bytes(3, "big") + b"\x00" * 96
    assert tls.parse_client_hello(data) is CAP


def test_detect_tls_by_content_on_any_port():
    data = records(hello_handshake())
    assert detect(data, TCP, 50000, 8081) == "tls"
    assert detect(data[:6], TCP, 50000, 8081) == "tls"
    assert detect(data[:3], TCP, 50000, 443) is None


def tcp_stream_to(path, server_port):
    """Client->server bytes of the first TCP connection to server_port, reassembled."""
    if not path.exists():
        pytest.skip(f"corpus file absent: {path}")
    stream = StreamStart(limit=16384)
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        raw = reader.datalink() == 101   # LINKTYPE_RAW: frames start at the IP header
        for _, frame in reader:
            ip = dpkt.ip.IP(frame) if raw else dpkt.ethernet.Ethernet(frame).data
            seg = getattr(ip, "data", None)
            if isinstance(seg, dpkt.tcp.TCP) and seg.dport == server_port:
                stream.add(seg.seq, bytes(seg.data), syn=bool(seg.flags & dpkt.tcp.TH_SYN))
    return stream


@pytest.mark.parametrize("rel,sni,version", [
    ("suricata-verify/tests/tls/tls-client-hello-frag-01/dump_mtu300.pcap", "www.google.com", "TLS 1.2"),
    ("suricata-verify/tests/bug-2646-01/input.pcap", "raw.githubusercontent.com", "TLS 1.2"),
    ("zeek/testing/btest/Traces/tls/chrome-1250-tls-x25519-kyber.pcap", "lh3.google.com", "TLS 1.3"),
    ("suricata-verify/tests/bug-5758/input.pcap", "ftp.nluug.nl", "TLS 1.3"),
])
def test_corpus_client_hello(rel, sni, version):
    stream = tcp_stream_to(CORPUS / rel, 443)
    data = stream.data
    assert not stream.gaps and stream.overlap_conflicts == 0
    if "mtu300" in rel:  # the hello record spans several 300-byte-MTU segments
        assert int.from_bytes(data[3:5], "big") > 300
    hello = tls.parse_client_hello(data)
    assert isinstance(hello, tls.ClientHello)
    assert hello.sni == sni and hello.version == version
    assert detect(data, TCP, 40000, 443) == "tls"


def test_corpus_hello_larger_than_one_segment():
    path = CORPUS / "zeek/testing/btest/Traces/tls/chrome-1250-tls-x25519-kyber.pcap"
    data = tcp_stream_to(path, 443).data
    hello_len = int.from_bytes(data[3:5], "big")
    assert hello_len > 1460
    assert "h2" in tls.parse_client_hello(data).alpn
    # Every prefix shorter than the first record is still MORE.
    for cut in range(0, 5 + hello_len, 97):
        assert tls.parse_client_hello(data[:cut]) is MORE


# -- HelloReader: the ClientHello as a server's record layer reads it ---------------------

def feed_in(data, step):
    """Feed a HelloReader `step` bytes at a time, as a stream that consumes would."""
    r = tls.HelloReader()
    held = b""
    for i in range(0, len(data), step):
        held += data[i:i + step]
        used, got = r.feed(held)
        held = held[used:]
        if got is not MORE:
            return got, r
    return MORE, r


def test_reader_zero_length_records_up_to_openssls_limit():
    hs = hello_handshake(sni=b"a.example")
    for n, want in ((1, "a.example"), (32, "a.example"), (33, CAP)):
        got, _ = feed_in(b"\x16\x03\x01\x00\x00" * n + records(hs), 7)
        assert (got.sni if got is not CAP else CAP) == want, n
    # empty records between fragments: the count is of records in a row
    data = b"".join(records(hs[i:i + 1]) + b"\x16\x03\x01\x00\x00" * 20 for i in range(len(hs)))
    got, _ = feed_in(data, 1000)
    assert got.sni == "a.example"


def test_reader_holds_one_field_at_a_time():
    hs = hello_handshake(sni=b"a.example")
    r = tls.HelloReader()
    used, got = r.feed(records(hs[:30], sizes=[1] * 30))
    assert got is MORE and used == 30 * 6 and len(r.parser.buf) == 26     # the 35-byte fixed part
    # a 60 KB extension we do not read is skipped, not held
    pad = struct.pack("!HH", 0xFE99, 60000) + b"\x00" * 60000
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(pad) + 20) + pad
    r = tls.HelloReader()
    data = records(b"\x01" + (len(body) + 20).to_bytes(3, "big") + body, sizes=[16000] * 4)
    used, got = r.feed(data[:32000])                      # halfway through the extension
    assert got is MORE and len(r.parser.buf) == 0 and r.parser.skip > 20000
    used, got = r.feed(data[used:])
    assert got is MORE and len(r.parser.buf) == 0 and r.parser.skip == 0


def test_reader_extension_overrunning_its_block_is_not():
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
    ext = struct.pack("!HH", 0xFE99, 16) + b"\x00" * 16
    good = body + struct.pack("!H", len(ext)) + ext
    bad = body + struct.pack("!H", 10) + ext                  # block of 10, extension of 20
    for b, want in ((good, tls.ClientHello), (bad, type(NOT))):
        got = tls.parse_client_hello(records(b"\x01" + len(b).to_bytes(3, "big") + b))
        assert isinstance(got, want)


def test_reader_other_record_types():
    hs = hello_handshake()
    assert tls.HelloReader().feed(b"\x15\x03\x01\x00\x02\x01\x70" + records(hs))[1] is NOT   # first: not a hello
    for ctype in (20, 21, 23):
        data = records(hs[:10]) + bytes([ctype, 3, 1, 0, 1, 1]) + records(hs[10:])
        assert tls.HelloReader().feed(data)[1] is CAP, ctype
        data = b"\x16\x03\x01\x00\x00" + bytes([ctype, 3, 1, 0, 1, 1]) + records(hs)
        assert tls.HelloReader().feed(data)[1] is CAP, ctype
    assert tls.HelloReader().feed(records(hs[:10]) + b"\x42\x03\x01\x00\x01\x01")[1] is NOT


def test_reader_large_hello_in_large_records():
    pad = struct.pack("!HH", 0xFE99, 60000) + b"\x00" * 60000
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00")
    sni = struct.pack("!HHHBH", 0, 14, 12, 0, 9) + b"a.example"
    exts = pad + sni
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    got, _ = feed_in(records(hs, sizes=[16384] * 4), 1400)
    assert got.sni == "a.example"


def test_detect_tls_after_empty_records():
    hs = records(hello_handshake())
    assert detect(b"\x16\x03\x01\x00\x00" + hs, TCP, 50000, 8081) == "tls"
    assert detect(b"\x16\x03\x01\x00\x00", TCP, 50000, 8081) == "tls"
    assert detect(b"\x16\x03\x01\x00\x00\x17\x03\x03\x00\x01\x00", TCP, 50000, 8081) is None


def test_reader_reads_a_record_header_that_ends_the_bytes():
    # OpenSSL gives up at the 33rd empty record in a row, not at the 34th's first byte: a
    # header that is all the bytes so far is read (and consumed) at once
    r = tls.HelloReader()
    assert r.feed(b"\x16\x03\x01\x00\x00" * 33) == (33 * 5, CAP)
    r = tls.HelloReader()
    assert r.feed(b"\x16\x03\x01\x00\x40") == (5, MORE) and r.left == 0x40
