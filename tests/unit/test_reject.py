"""reject.py builds the RST / ICMP unreachable answers with struct; scapy checks them."""
from scapy.all import IP, IPv6, TCP, UDP, ICMP, ICMPv6DestUnreach, raw

from appliance.decode import decode_l3
from appliance.reject import answer, tcp_reset, unreachable


def _pkt(scapy_pkt):
    return decode_l3(raw(scapy_pkt))


def test_tcp_reset_for_a_syn_acks_what_it_sent():
    syn = _pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=23, flags="S", seq=1000))
    rst = IP(tcp_reset(syn))
    assert (rst.src, rst.dst, rst[TCP].sport, rst[TCP].dport) == ("10.0.0.2", "10.0.0.1", 23, 40000)
    assert rst[TCP].flags == "RA" and rst[TCP].seq == 0 and rst[TCP].ack == 1001   # SYN counts one
    # checksums as scapy computes them
    again = IP(raw(rst.__class__(raw(rst))))
    del again.chksum, again[TCP].chksum
    assert IP(raw(again)).chksum == rst.chksum and IP(raw(again))[TCP].chksum == rst[TCP].chksum


def test_tcp_reset_for_data_takes_the_ack_as_seq():
    data = _pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=40000, dport=80, flags="PA", seq=5, ack=777) / b"hello")
    rst = IP(tcp_reset(data))
    assert rst[TCP].flags.R and rst[TCP].seq == 777


def test_tcp_reset_ipv6():
    syn = _pkt(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2, flags="S", seq=9))
    rst = IPv6(tcp_reset(syn))
    assert (rst.src, rst.dst, rst[TCP].ack) == ("fd00::2", "fd00::1", 10)
    chk = rst[TCP].chksum
    del rst[TCP].chksum
    assert IPv6(raw(rst))[TCP].chksum == chk


def test_unreachable_quotes_the_original_v4_and_v6():
    orig = IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5000, dport=9) / (b"x" * 20)
    icmp = IP(unreachable(_pkt(orig)))
    assert (icmp.src, icmp.dst, icmp[ICMP].type, icmp[ICMP].code) == ("10.0.0.2", "10.0.0.1", 3, 13)
    assert raw(icmp[ICMP].payload).startswith(raw(orig)[:28])
    orig6 = IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=5000, dport=9) / b"y"
    icmp6 = IPv6(unreachable(_pkt(orig6)))
    assert icmp6[ICMPv6DestUnreach].type == 1 and icmp6[ICMPv6DestUnreach].code == 1
    chk = icmp6[ICMPv6DestUnreach].cksum
    del icmp6[ICMPv6DestUnreach].cksum
    assert IPv6(raw(icmp6))[ICMPv6DestUnreach].cksum == chk


def test_errors_and_resets_are_never_answered():
    assert answer(_pkt(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="R"))) is None
    assert answer(_pkt(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=1) / IP() / UDP())) is None
    assert answer(decode_l3(b"\x00" * 10)) is None
