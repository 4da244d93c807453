"""An allowed packet too big to go back to the GWLB whole: what the sender hears (reject.too_big)
and what the GENEVE source does with it, over real sockets on loopback."""
import struct
import time

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6
from scapy.packet import raw

from appliance import geneve
from appliance.decode import decode_l3
from appliance.reject import too_big
from tests.unit import test_gwlb_source
from tests.unit.test_gwlb_source import exchange

PAYLOAD = b"x" * 300
bench = test_gwlb_source.bench           # the GENEVE source on loopback (fixture)


def test_ipv4_with_df_hears_fragmentation_needed_with_the_mtu():
    p = decode_l3(raw(IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") / UDP(sport=5, dport=53) / PAYLOAD))
    icmp = IP(too_big(p, 1332))
    assert (icmp.src, icmp.dst, icmp[ICMP].type, icmp[ICMP].code, icmp[ICMP].nexthopmtu) == \
        ("10.2.0.2", "10.1.0.2", 3, 4, 1332)
    assert IP(raw(icmp)).chksum == icmp.chksum and ICMP(raw(icmp[ICMP])).chksum == icmp[ICMP].chksum


def test_a_tiny_interface_mtu_says_the_ipv4_minimum_and_never_crashes():
    # an interface MTU below the GENEVE overhead leaves a negative inner MTU: say 68 (RFC 791)
    p = decode_l3(raw(IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") / UDP() / PAYLOAD))
    assert IP(too_big(p, -40))[ICMP].nexthopmtu == 68


def test_ipv4_without_df_and_icmp_errors_get_nothing():
    assert too_big(decode_l3(raw(IP(src="10.1.0.2", dst="10.2.0.2") / UDP() / PAYLOAD)), 1332) is None
    err = IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") / ICMP(type=3, code=1) / raw(IP() / UDP())
    assert too_big(decode_l3(raw(err)), 1332) is None


def test_ipv6_hears_packet_too_big_never_below_1280():
    p = decode_l3(raw(IPv6(src="fd01::2", dst="fd02::2") / UDP(sport=5, dport=53) / PAYLOAD))
    ptb = IPv6(too_big(p, 1332))
    assert ptb.src == "fd02::2" and ptb[ICMPv6PacketTooBig].mtu == 1332
    assert IPv6(too_big(p, 900))[ICMPv6PacketTooBig].mtu == 1280


def test_source_returns_what_fits_and_answers_what_does_not(bench):
    gwlb, addr, src, insp = bench
    small = geneve.encapsulate(1, 2, 3, raw(IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") /
                                            TCP(sport=1, dport=80, flags="S")))
    big_inner = raw(IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") / TCP(sport=2, dport=80, flags="S") / PAYLOAD)
    big = geneve.encapsulate(1, 2, 3, big_inner)
    src.mtu = len(big) + 28 - 1                      # one byte short of going back whole
    assert exchange(gwlb, addr, small, src) == small
    back = exchange(gwlb, addr, big, src)
    assert back is not None and back[:40] == big[:40]   # the GENEVE header as received
    icmp = IP(back[40:])
    assert icmp[ICMP].type == 3 and icmp[ICMP].code == 4 and icmp[ICMP].nexthopmtu == src.mtu - 28 - 40
    assert raw(icmp[ICMP].payload)[:len(big_inner)] == big_inner[:raw(icmp[ICMP].payload).__len__()]
    no_df = geneve.encapsulate(1, 2, 3, raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=3, dport=80, flags="S")
                                            / PAYLOAD))
    assert exchange(gwlb, addr, no_df, src) is None
    c = src.counters
    deadline = time.monotonic() + 5                # counted once sendto returned: the answer may come first
    while c.too_big_sent != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (c.too_big, c.too_big_sent, c.returned) == (2, 1, 1)
    assert struct.unpack("!H", back[2:4])[0] == geneve.ETH_IPV4


def test_gwlbs_largest_packet_goes_back_whole_at_ec2s_jumbo_mtu(bench):
    """8500 bytes inside (GWLB's MTU) + 68 = 8568 on a 9001-byte data interface: returned as
    received, nothing counted as too big. (The netns simulator cannot carry it: netfilterqueue
    copies ~4 KB of a queued packet.)"""
    gwlb, addr, src, insp = bench
    inner = raw(IP(src="10.1.0.2", dst="10.2.0.2", flags="DF") / TCP(sport=9, dport=80, flags="S")
                / (b"j" * (8500 - 40)))
    d = geneve.encapsulate(1, 2, 3, inner)
    assert len(inner) == 8500 and len(d) + 28 == 8568
    src.mtu = 9001
    assert exchange(gwlb, addr, d, src) == d
    assert src.counters.too_big == 0
