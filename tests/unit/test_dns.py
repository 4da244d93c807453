import struct
from pathlib import Path

import dpkt
import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR

from appliance.applayer import CAP, detect, dns
from appliance.packet import TCP, UDP

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus"


def udp_payloads(path):
    """(sport, dport, payload) of every UDP packet in an Ethernet pcap; a truncated file ends the walk."""
    if not path.exists():
        pytest.skip(f"corpus file absent: {path}")
    out = []
    with open(path, "rb") as f:
        reader = dpkt.pcap.Reader(f)
        try:
            for _, frame in reader:
                ip = dpkt.ethernet.Ethernet(frame).data
                if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.udp.UDP):
                    out.append((ip.data.sport, ip.data.dport, bytes(ip.data.data)))
        except dpkt.NeedData:
            pass  # truncated trailing record in the capture file itself
    return out


def header(qdcount, ident=0x1234, flags=0x0100):
    return struct.pack("!HHHHHH", ident, flags, qdcount, 0, 0, 0)


def test_single_a_query():
    msg = dns.parse_message(bytes(DNS(id=7, rd=1, qd=DNSQR(qname="www.example.com", qtype="A"))))
    assert msg == dns.DnsMessage(7, False, 0, "NOERROR", [dns.DnsQuery("www.example.com", "A")])


def test_aaaa_and_txt_and_unknown_type():
    for qtype, text in (("AAAA", "AAAA"), ("TXT", "TXT"), (65, "HTTPS"), (65280, "65280")):
        msg = dns.parse_message(bytes(DNS(qd=DNSQR(qname="a.example", qtype=qtype))))
        assert msg.queries == [dns.DnsQuery("a.example", text)]


def test_response_rcode():
    pkt = DNS(id=9, qr=1, rcode=3, qd=DNSQR(qname="nope.example"),
              an=DNSRR(rrname="nope.example", rdata="192.0.2.1"))
    msg = dns.parse_message(bytes(pkt))
    assert msg.response is True and msg.rcode == "NXDOMAIN" and msg.id == 9
    assert msg.queries[0].rrname == "nope.example"


def test_dpkt_built_query_with_several_questions():
    d = dpkt.dns.DNS(id=3, op=dpkt.dns.DNS_RD)
    d.qd = [dpkt.dns.DNS.Q(name="one.example", type=dpkt.dns.DNS_A),
            dpkt.dns.DNS.Q(name="two.example", type=dpkt.dns.DNS_MX),
            dpkt.dns.DNS.Q(name="three.example", type=dpkt.dns.DNS_PTR)]
    msg = dns.parse_message(bytes(d))
    assert [(q.rrname, q.rrtype) for q in msg.queries] == [
        ("one.example", "A"), ("two.example", "MX"), ("three.example", "PTR")]


def test_compression_pointer_in_second_question():
    body = b"\x07example\x03com\x00" + b"\x00\x01\x00\x01"
    body += b"\x03www\xc0\x0c" + b"\x00\x1c\x00\x01"     # www + pointer to offset 12
    msg = dns.parse_message(header(2) + body)
    assert [q.rrname for q in msg.queries] == ["example.com", "www.example.com"]
    assert msg.queries[1].rrtype == "AAAA"


def test_pointer_loop_rejected():
    # Second question: a pointer to itself, then two pointers pointing at each other.
    self_loop = header(1) + b"\xc0\x0c" + b"\x00\x01\x00\x01"
    assert dns.parse_message(self_loop) is None
    body = b"\x01a\x00\x00\x01\x00\x01"                   # q1 at 12..18
    body += b"\xc0\x15\xc0\x13" + b"\x00\x01\x00\x01"     # q2 at 19: ptr->21, 21: ptr->19
    assert dns.parse_message(header(2) + body) is None       # a loop: ends at MAX_POINTERS jumps


def test_forward_pointer_followed_as_dnsmasq_does():
    body = b"\xc0\x12" + b"\x00\x01\x00\x01" + b"\x01a\x07example\x00"
    assert [q.rrname for q in dns.parse_message(header(1) + body).queries] == ["a.example"]


def test_pointer_beyond_end_rejected():
    assert dns.parse_message(header(1) + b"\x03abc\xc3\xff" + b"\x00\x01\x00\x01") is None


def test_label_over_63_rejected():
    # 0x40 sets the reserved "extended label" bits: not a 64-byte label.
    assert dns.parse_message(header(1) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01") is None


def test_name_past_dnsmasqs_length_rejected():
    # dnsmasq reads names past RFC 1035's 255 bytes (up to 1025 characters): so do we
    name = (b"\x3f" + b"a" * 63) * 4 + b"\x00"   # 257 bytes on the wire
    assert dns.parse_message(header(1) + name + b"\x00\x01\x00\x01").queries[0].rrname.count("a") == 252
    name = (b"\x3f" + b"a" * 63) * 16 + b"\x03abc\x00"   # 1029 bytes on the wire
    assert dns.parse_message(header(1) + name + b"\x00\x01\x00\x01") is None


def test_odd_bytes_escaped():
    name = b"\x05a\x00b\nc\x04\\.\xff\x7f\x00"
    msg = dns.parse_message(header(1) + name + b"\x00\x10\x00\x01")
    rrname = msg.queries[0].rrname
    assert rrname == "a\\x00b\\x0ac.\\x5c\\.\\xff\\x7f"     # the second label's '.' is its own, written \.
    assert all(0x20 <= ord(c) < 0x7F for c in rrname)


def test_truncated_question_and_short_header():
    full = bytes(DNS(qd=DNSQR(qname="cut.example")))
    assert dns.parse_message(full[:11]) is None
    for i in range(12, len(full)):
        assert dns.parse_message(full[:i]) is None
    assert dns.parse_message(full) is not None


def test_questions_bounded():
    q = b"\x01a\x00\x00\x01\x00\x01"
    msg = dns.parse_message(header(1000) + q * 40)
    assert len(msg.queries) == dns.MAX_QUESTIONS


def test_parse_tcp_two_messages_and_a_split_one():
    m1 = bytes(DNS(id=1, qd=DNSQR(qname="first.example")))
    m2 = bytes(DNS(id=2, qd=DNSQR(qname="second.example", qtype="SRV")))
    m3 = bytes(DNS(id=3, qd=DNSQR(qname="third.example")))
    framed = [struct.pack("!H", len(m)) + m for m in (m1, m2, m3)]
    buf = framed[0] + framed[1] + framed[2][:9]
    msgs, used = dns.parse_tcp(buf)
    assert [m.id for m in msgs] == [1, 2]
    assert msgs[1].queries == [dns.DnsQuery("second.example", "SRV")]
    assert used == len(framed[0]) + len(framed[1])
    msgs, used = dns.parse_tcp(buf[used:] + framed[2][9:])
    assert [m.queries[0].rrname for m in msgs] == ["third.example"] and used == len(framed[2])
    assert dns.parse_tcp(b"\x00") == ([], 0)


def test_parse_tcp_skips_garbage_frame():
    m = bytes(DNS(id=5, qd=DNSQR(qname="ok.example")))
    buf = b"\x00\x03abc" + struct.pack("!H", len(m)) + m
    msgs, used = dns.parse_tcp(buf)
    assert [x.id for x in msgs] == [5] and used == len(buf)


def test_detect_dns_by_content_not_port():
    q = bytes(DNS(qd=DNSQR(qname="x.example")))
    assert detect(q, UDP, 40000, 40001) == "dns"
    assert detect(struct.pack("!H", len(q)) + q, TCP, 40000, 40001) == "dns"
    assert detect(b"\x00" * 40, UDP, 1234, 53) is None
    assert detect(b"hello world, not dns at all", UDP, 1234, 53) is None


def test_corpus_dns_detect_query_02():
    pkts = udp_payloads(CORPUS / "suricata-verify/tests/dns/dns-query/dns-detect-query-02/input.pcap")
    queries = [(q.rrname, q.rrtype) for _, dport, p in pkts if dport == 53
               for q in dns.parse_message(p).queries]
    assert queries == [("google.com", "A"), ("google.net", "TXT")]


def test_corpus_sofacy_name():
    pkts = udp_payloads(CORPUS / "suricata-verify/tests/bug-2158/public-ex1_section8_Sofacy.pcap")
    names = set()
    for sport, dport, p in pkts:
        if 53 in (sport, dport):
            assert detect(p, UDP, sport, dport) == "dns"
            names.update(q.rrname for q in dns.parse_message(p).queries)
        else:  # the capture also holds DHCP: not DNS by content
            assert detect(p, UDP, sport, dport) is None
    assert any("drivres-update" in n for n in names)


@pytest.mark.parametrize("rel", [
    "zeek/testing/btest/Traces/dns/dns-corrupt.pcap",
    "dpkt/examples/data/truncated_dns.pcap",
    "dpkt/examples/data/truncated_dns_2.pcap",
])
def test_corpus_corrupt_and_truncated_never_raise(rel):
    pkts = udp_payloads(CORPUS / rel)
    assert pkts
    for sport, dport, p in pkts:
        msg = dns.parse_message(p)
        assert msg is None or isinstance(msg, dns.DnsMessage)
        for i in range(len(p)):
            dns.parse_message(p[:i])
            dns.parse_tcp(p[:i])
    # The truncation is in the answers; the question survives.
    if "truncated_dns_2" in rel:
        assert dns.parse_message(pkts[0][2]).queries[0].rrname == "mycelium-wallet.s3.amazonaws.com"


def test_tcp_reader_long_message_judged_by_its_questions_then_skipped():
    big = bytes(DNS(id=1, qd=DNSQR(qname="first.example"))) + b"\x00" * 20000
    m2 = bytes(DNS(id=2, qd=DNSQR(qname="second.example")))
    data = struct.pack("!H", len(big)) + big + struct.pack("!H", len(m2)) + m2
    r = dns.TcpReader()
    used, msgs, status = r.feed(data[:8192], False)           # the window can still grow: wait
    assert (used, msgs, status) == (0, [], None)
    used, msgs, status = r.feed(data[:8192], True)            # it cannot: read what is there
    assert [m.id for m in msgs] == [1] and status is None and used == 8192
    rest = data[8192:]
    used, msgs, status = r.feed(rest, False)
    assert [m.id for m in msgs] == [2] and used == len(rest)


def test_tcp_reader_questions_past_the_window_are_a_cap_hit():
    long_name = ".".join(["a" * 60] * 4)
    msg = bytes(DNS(id=1, qd=DNSQR(qname=long_name)))
    data = struct.pack("!H", len(msg)) + msg
    used, msgs, status = dns.TcpReader().feed(data[:40], True)
    assert msgs == [] and status is CAP and used == 0


def test_escape_label_fast_path_is_the_byte_table():
    """escape_label's one-pass path (a label of bytes kept as they are) gives what the
    byte table gives: every byte alone, and labels mixing kept and escaped bytes (the
    backslash, DEL, controls, high bytes), as bytes and as a bytearray."""
    from appliance.applayer.dns import _ESCAPE, escape_label
    labels = [bytes([b]) for b in range(256)]
    labels += [b"example-" + bytes([b]) for b in range(256)]     # long enough for the one pass
    labels += [b"", b"example", b"GET", b"/a?b=c d", b"a\\x41", b"a\x7fb", b"\x1fz", b"caf\xc3\xa9", b"~ !", b"[::1]"]
    labels += [x * 3 for x in labels[-10:]]
    for label in labels:
        want = "".join(_ESCAPE[b] for b in label)
        assert escape_label(label) == want, label
        assert escape_label(bytearray(label)) == want, label
