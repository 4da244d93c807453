"""decode: every field cross-checked against scapy's reading of the same bytes."""

import struct

import dpkt
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
from scapy.layers.l2 import ARP, CookedLinux, Dot1AD, Dot1Q, Ether, Loopback
from scapy.packet import raw

from appliance import decode
from appliance.decode import (LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL,
                              LINKTYPE_LINUX_SLL2, LINKTYPE_LOOP, LINKTYPE_NULL, LINKTYPE_RAW,
                              LINKTYPE_RAW_BSD, SUPPORTED_LINKTYPES, decode_frame, decode_l3)
from appliance.packet import Packet

def expected_fields(wire: bytes) -> dict:
    """What a decoder must report for an IP packet, read by scapy from the same bytes."""
    ip = IP(wire) if wire[0] >> 4 == 4 else IPv6(wire)
    want = {"src": ip.src, "dst": ip.dst, "l3": wire}
    if ip.version == 4:
        want.update(ip_version=4, ttl=ip.ttl, length=ip.len, proto=ip.proto)
        l4 = ip.payload
    else:
        want.update(ip_version=6, ttl=ip.hlim, length=40 + ip.plen)
        l4 = ip.payload
        while l4.__class__.__name__.startswith("IPv6ExtHdr"):
            l4 = l4.payload
        want["proto"] = {TCP: 6, UDP: 17}.get(type(l4), 58)
    if isinstance(l4, TCP):
        want.update(sport=l4.sport, dport=l4.dport, seq=l4.seq, ack=l4.ack,
                    tcp_flags=int(l4.flags) & 0xFF, payload=bytes(l4.payload))
    elif isinstance(l4, UDP):
        want.update(sport=l4.sport, dport=l4.dport, payload=bytes(l4.payload))
    elif isinstance(l4, ICMP):
        want.update(icmp_type=l4.type, icmp_code=l4.code, payload=bytes(l4.payload))
        if l4.type in (0, 8):
            want["icmp_id"] = l4.id
    else:
        want.update(icmp_type=l4.type, icmp_code=l4.code)
        if l4.type in (128, 129):
            want.update(icmp_id=l4.id, payload=bytes(l4.data))
    return want


def assert_fields(pkt: Packet, want: dict):
    got = {k: getattr(pkt, k) for k in want}
    assert got == want
    assert pkt.anomalies == []
    assert pkt.frag is None
    assert pkt.encap == ""


MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
TCP_OPTS = [("MSS", 1460), ("NOP", None), ("WScale", 7), ("SAckOK", b""),
            ("Timestamp", (123, 456)), ("NOP", None), ("NOP", None), ("SAck", (1000, 2000))]

IP_PACKETS = {
    "ipv4-tcp": IP(src="10.0.0.1", dst="10.0.0.2", ttl=33) / TCP(sport=40000, dport=80, flags="PA",
                                                                   seq=7, ack=9) / b"GET / HTTP/1.1\r\n",
    "ipv4-tcp-options": IP(src="192.0.2.1", dst="198.51.100.7") / TCP(sport=1, dport=443, flags="S",
                                                                        options=TCP_OPTS),
    "ipv4-options-udp": IP(src="10.1.1.1", dst="10.2.2.2", options=[b"\x94\x04\x00\x00", b"\x01" * 4])
    / UDP(sport=5353, dport=53) / b"\x12\x34query",
    "ipv4-icmp-echo": IP(src="10.0.0.9", dst="8.8.8.8") / ICMP(type=8, id=0x4242, seq=3) / b"ping",
    "ipv4-icmp-reply": IP(src="8.8.8.8", dst="10.0.0.9") / ICMP(type=0, id=7, seq=3) / b"pong",
    "ipv4-icmp-unreach": IP(src="10.0.0.9", dst="8.8.8.8") / ICMP(type=3, code=3)
    / raw(IP(src="8.8.8.8", dst="10.0.0.9") / UDP(sport=53, dport=5000)),
    "ipv6-tcp": IPv6(src="2001:db8::1", dst="2001:db8::2", hlim=9) / TCP(sport=5, dport=22, flags="SA",
                                                                        options=TCP_OPTS[:3]) / b"ssh",
    "ipv6-udp": IPv6(src="2001:db8::1", dst="ff02::fb") / UDP(sport=5353, dport=5353) / b"mdns",
    "ipv6-exthdr-chain": IPv6(src="fe80::1", dst="2001:db8::53") / IPv6ExtHdrHopByHop()
    / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(type=2, addresses=["2001:db8::9"])
    / IPv6ExtHdrDestOpt() / UDP(sport=1000, dport=53) / b"q",
    "ipv6-icmp-echo": IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6EchoRequest(id=99, data=b"abc"),
    "ipv6-icmp-reply": IPv6(src="2001:db8::2", dst="2001:db8::1") / ICMPv6EchoReply(id=99, data=b"abc"),
}


@pytest.mark.parametrize("name", sorted(IP_PACKETS))
def test_decode_l3_matches_scapy(name):
    wire = raw(IP_PACKETS[name])
    pkt = decode_l3(wire, ts=12.5)
    assert pkt.ts == 12.5
    assert_fields(pkt, expected_fields(wire))


@pytest.mark.parametrize("name", ["ipv4-tcp", "ipv4-tcp-options", "ipv4-options-udp", "ipv4-icmp-echo"])
def test_decode_l3_matches_dpkt(name):
    wire = raw(IP_PACKETS[name])
    ip = dpkt.ip.IP(wire)
    pkt = decode_l3(wire)
    assert (pkt.ttl, pkt.length, pkt.proto) == (ip.ttl, ip.len, ip.p)
    assert pkt.payload == (ip.data.data if not isinstance(ip.data, dpkt.icmp.ICMP) else ip.data.data.data)


def test_tcp_flags_and_ports_for_every_flag_bit():
    for bit in range(8):
        wire = raw(IP() / TCP(flags=1 << bit, sport=bit + 1, dport=1000 + bit))
        pkt = decode_l3(wire)
        assert (pkt.tcp_flags, pkt.sport, pkt.dport) == (1 << bit, bit + 1, 1000 + bit)


def test_ethernet_padding_is_not_payload():
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="A"))
    pkt = decode_frame(raw(Ether(**MAC, type=0x0800) / wire) + b"\0" * 6, LINKTYPE_ETHERNET)
    assert pkt.payload == b"" and pkt.l3 == wire and pkt.anomalies == []


# ---- link layers -----------------------------------------------------------------

INNER = IP(src="10.9.8.7", dst="10.0.0.1") / UDP(sport=1234, dport=53) / b"dnsq"
INNER6 = IPv6(src="2001:db8::7", dst="2001:db8::1") / TCP(sport=4, dport=80, flags="S")


def sll2(proto: int, body: bytes) -> bytes:
    # protocol, reserved, ifindex, ARPHRD_ETHER, packet type, address length, address
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, b"\x02" * 6) + body


FRAMES = {
    "ethernet": (LINKTYPE_ETHERNET, raw(Ether(**MAC) / INNER), INNER, ()),
    "ethernet-v6": (LINKTYPE_ETHERNET, raw(Ether(**MAC) / INNER6), INNER6, ()),
    "vlan": (LINKTYPE_ETHERNET, raw(Ether(**MAC) / Dot1Q(vlan=100) / INNER), INNER, (100,)),
    "qinq": (LINKTYPE_ETHERNET, raw(Ether(**MAC) / Dot1AD(vlan=20) / Dot1Q(vlan=300) / INNER6), INNER6, (20, 300)),
    "triple-vlan": (LINKTYPE_ETHERNET, raw(Ether(**MAC) / Dot1Q(vlan=200) / Dot1Q(vlan=300) / Dot1Q(vlan=400)
                                           / INNER), INNER, (200, 300, 400)),
    "sll": (LINKTYPE_LINUX_SLL, raw(CookedLinux(pkttype=0, lladdrtype=1, lladdrlen=6) / INNER), INNER, ()),
    "sll-v6": (LINKTYPE_LINUX_SLL, raw(CookedLinux(pkttype=4, lladdrtype=1, lladdrlen=6) / INNER6), INNER6, ()),
    "sll2": (LINKTYPE_LINUX_SLL2, sll2(0x0800, raw(INNER)), INNER, ()),
    "sll2-v6": (LINKTYPE_LINUX_SLL2, sll2(0x86DD, raw(INNER6)), INNER6, ()),
    "null-le": (LINKTYPE_NULL, struct.pack("<I", 2) + raw(INNER), INNER, ()),
    "null-be": (LINKTYPE_NULL, struct.pack(">I", 2) + raw(INNER), INNER, ()),
    "null-v6-linux": (LINKTYPE_NULL, struct.pack("<I", 10) + raw(INNER6), INNER6, ()),
    "null-v6-bsd": (LINKTYPE_NULL, struct.pack("<I", 24) + raw(INNER6), INNER6, ()),
    "null-v6-freebsd": (LINKTYPE_NULL, struct.pack(">I", 28) + raw(INNER6), INNER6, ()),
    "loop-v6-darwin": (LINKTYPE_LOOP, struct.pack(">I", 30) + raw(INNER6), INNER6, ()),
    "loop-scapy": (LINKTYPE_LOOP, raw(Loopback(type=2) / INNER), INNER, ()),
    "raw": (LINKTYPE_RAW, raw(INNER), INNER, ()),
    "raw-v6": (LINKTYPE_RAW, raw(INNER6), INNER6, ()),
    "raw-bsd": (LINKTYPE_RAW_BSD, raw(INNER6), INNER6, ()),
    "ipv4": (LINKTYPE_IPV4, raw(INNER), INNER, ()),
    "ipv6": (LINKTYPE_IPV6, raw(INNER6), INNER6, ()),
}


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_decode_frame_link_layers(name):
    linktype, frame, inner, vlan = FRAMES[name]
    assert linktype in SUPPORTED_LINKTYPES
    pkt = decode_frame(frame, linktype, ts=3.0)
    assert pkt.vlan == vlan
    assert_fields(pkt, expected_fields(raw(inner)))


def test_sll2_header_agrees_with_scapy():
    CookedLinuxV2 = pytest.importorskip("scapy.layers.l2").CookedLinuxV2
    frame = raw(CookedLinuxV2(proto=0x86DD, ifindex=2, pkttype=4, lladdrlen=6) / INNER6)
    assert frame[:20] == FRAMES["sll2-v6"][1][:2] + frame[2:20]  # same protocol field placement
    assert_fields(decode_frame(frame, LINKTYPE_LINUX_SLL2), expected_fields(raw(INNER6)))


def test_sll_header_agrees_with_dpkt():
    frame = FRAMES["sll"][1]
    assert dpkt.sll.SLL(frame).ethtype == 0x0800
    assert decode_frame(frame, LINKTYPE_LINUX_SLL).src == "10.9.8.7"


def test_vlan_ids_agree_with_scapy():
    for name in ("vlan", "qinq", "triple-vlan"):
        frame = FRAMES[name][1]
        layer, ids = Ether(frame).payload, []
        while isinstance(layer, (Dot1Q, Dot1AD)):
            ids.append(layer.vlan)
            layer = layer.payload
        assert decode_frame(frame, LINKTYPE_ETHERNET).vlan == tuple(ids)


@pytest.mark.parametrize("frame, encap", [
    (raw(Ether(**MAC) / ARP()), "arp"),
    (raw(Ether(**MAC, type=0x88CC) / (b"\0" * 30)), "ethertype-0x88cc"),
    (raw(Ether(**MAC, type=0x8847) / (b"\x00\x01\x01\x40" + raw(INNER))), "mpls"),
    (raw(Ether(**MAC, type=0x8848) / (b"\x00\x01\x01\x40" + raw(INNER))), "mpls"),
    (raw(Ether(**MAC, type=0x8863) / b"\x11\x09\x00\x00\x00\x00"), "pppoe"),
    (raw(Ether(**MAC, type=0x8864) / (b"\x11\x00\x00\x01\x00\x02\x00\x21" + raw(INNER))), "pppoe"),
    (raw(Ether(**MAC) / Dot1Q(vlan=5) / ARP()), "arp"),
    (raw(Ether(**MAC, type=0x0026) / (b"\x42\x42\x03" + b"\0" * 35)), "llc"),
])
def test_non_ip_and_unsupported_encapsulation(frame, encap):
    pkt = decode_frame(frame, LINKTYPE_ETHERNET)
    assert (pkt.ip_version, pkt.encap, pkt.src, pkt.proto, pkt.anomalies) == (0, encap, "", -1, [])


def test_unknown_linktype_and_address_family():
    assert decode_frame(b"\x01\x02\x03", 147).encap == "linktype-147"
    assert decode_frame(struct.pack("<I", 7) + raw(INNER), LINKTYPE_NULL).encap == "af-7"


# ---- fragments --------------------------------------------------------------------

def test_ipv4_first_fragment_with_whole_transport_header_keeps_ports():
    whole = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=4321) / UDP(sport=9, dport=53) / (b"x" * 400))
    wire = raw(fragment(IP(whole), fragsize=96)[0])
    pkt = decode_l3(wire)
    assert pkt.frag == (4321, 0, True)
    assert (pkt.sport, pkt.dport, pkt.proto) == (9, 53, 17)
    assert pkt.anomalies == []      # the UDP length counts the whole datagram, not this piece


def test_ipv4_later_fragment_is_not_parsed_as_transport():
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=4321, frag=185, proto=6) / (b"\x01\x02" * 20))
    pkt = decode_l3(wire)
    assert pkt.frag == (4321, 1480, False)
    assert (pkt.sport, pkt.dport, pkt.tcp_flags, pkt.payload, pkt.proto) == (0, 0, 0, b"", 6)


def test_ipv4_first_fragment_with_cut_tcp_header_has_no_ports():
    whole = raw(IP(id=5, flags="MF") / TCP(sport=1, dport=2, options=TCP_OPTS))
    pkt = decode_l3(raw(IP(id=5, flags="MF", proto=6) / whole[20:36]))
    assert pkt.frag == (5, 0, True) and (pkt.sport, pkt.dport) == (0, 0) and pkt.anomalies == []


def test_ipv6_fragment_header_sets_frag_from_header():
    wire = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
               / IPv6ExtHdrFragment(id=0xDEADBEEF, m=1, offset=0) / UDP(sport=7, dport=8) / (b"y" * 64))
    pkt = decode_l3(wire)
    assert pkt.frag == (0xDEADBEEF, 0, True)
    assert (pkt.proto, pkt.sport, pkt.dport) == (17, 7, 8)
    later = raw(IPv6(src="2001:db8::1", dst="2001:db8::2")
                / IPv6ExtHdrFragment(id=0xDEADBEEF, m=0, offset=10, nh=17) / (b"z" * 16))
    pkt = decode_l3(later)
    assert pkt.frag == (0xDEADBEEF, 80, False)
    assert (pkt.proto, pkt.sport, pkt.payload) == (17, 0, b"")


def test_ipv6_atomic_fragment_is_a_whole_datagram():
    wire = raw(IPv6() / IPv6ExtHdrFragment(id=1, m=0, offset=0) / UDP(sport=3, dport=4) / b"a")
    pkt = decode_l3(wire)
    assert pkt.frag is None and pkt.sport == 3 and "ipv6.exthdr_useless_fh" in pkt.anomalies


def test_ipv6_esp_and_no_next_header_end_the_chain():
    esp = decode_l3(raw(IPv6(nh=50) / (b"\0\0\0\x01" * 8)))
    assert (esp.proto, esp.sport, esp.anomalies) == (50, 0, [])
    none = decode_l3(raw(IPv6() / IPv6ExtHdrDestOpt(nh=59)))
    assert (none.proto, none.anomalies) == (59, [])
    trailing = decode_l3(raw(IPv6(nh=59) / b"junk"))
    assert trailing.anomalies == ["ipv6.data_after_none_header"]


def _dstopts_chain(n):
    chain = IPv6()
    for _ in range(n):
        chain = chain / IPv6ExtHdrDestOpt()
    return chain


def test_ipv6_exthdr_chain_is_followed_like_linux_up_to_a_generous_bound():
    from appliance.decode import MAX_IPV6_EXTHDRS
    # Linux follows any chain within the packet: 40 headers still reach the transport
    # (the old bound of 16 made this a port-less protocol-60 packet), reported once
    pkt = decode_l3(raw(_dstopts_chain(40) / UDP(sport=5, dport=53)))
    assert (pkt.proto, pkt.sport, pkt.dport, pkt.unread) == (17, 5, 53, False)
    assert pkt.anomalies == ["ipv6.exthdr_dupl_dh"]
    # past the bound: the transport is not read, and the packet says so
    pkt = decode_l3(raw(_dstopts_chain(MAX_IPV6_EXTHDRS + 1) / UDP()))
    assert "decoder.ipv6.too_many_exthdrs" in pkt.anomalies and pkt.sport == 0 and pkt.unread
    assert pkt.anomalies.count("ipv6.exthdr_dupl_dh") == 1


def test_cut_transport_headers_are_unread():
    assert decode_l3(raw(IPv6() / IPv6ExtHdrDestOpt())[:-4]).unread    # chain cut
    assert decode_l3(raw(IP() / TCP())[:30]).unread                     # TCP header cut
    assert decode_l3(raw(IP() / UDP())[:24]).unread
    assert not decode_l3(raw(IP() / TCP())).unread


def test_ipv6_duplicate_headers_and_rh0():
    pkt = decode_l3(raw(IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(type=0)
                        / IPv6ExtHdrRouting() / UDP()))
    assert {"ipv6.exthdr_dupl_hh", "ipv6.exthdr_dupl_rh", "ipv6.rh_type_0"} <= set(pkt.anomalies)
    assert pkt.proto == 17


# ---- malformed input --------------------------------------------------------------

V4_TCP = raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, options=TCP_OPTS) / b"data")


def set_byte(b: bytes, i: int, v: int) -> bytes:
    return b[:i] + bytes([v]) + b[i + 1:]


def set_u16(b: bytes, i: int, v: int) -> bytes:
    return b[:i] + struct.pack("!H", v) + b[i + 2:]


@pytest.mark.parametrize("wire, anomaly", [
    (b"", "ipraw.pkt_too_small"),
    (b"\x45", "ipv4.pkt_too_small"),
    (b"\x60" + b"\0" * 20, "ipv6.pkt_too_small"),
    (set_byte(V4_TCP, 0, 0x75), "ipraw.invalid_ip_version"),
    (set_byte(V4_TCP, 0, 0x44), "ipv4.hlen_too_small"),
    (set_byte(V4_TCP, 0, 0x4F)[:40], "ipv4.trunc_pkt"),     # IHL 60 > what was captured
    (set_byte(V4_TCP, 0, 0x4F), "tcp.pkt_too_small"),       # IHL 60 swallows the TCP header
    (set_u16(V4_TCP, 2, 16), "ipv4.iplen_smaller_than_hlen"),
    (set_u16(V4_TCP, 2, 1500), "ipv4.trunc_pkt"),
    (V4_TCP[:60], "ipv4.trunc_pkt"),
    (set_byte(V4_TCP, 32, 0xF0 | (V4_TCP[32] & 15)), "tcp.hlen_too_small"),  # data offset 60 > segment
    (set_byte(V4_TCP, 32, 0x40 | (V4_TCP[32] & 15)), "tcp.hlen_too_small"),  # data offset 16 < 20
    (set_byte(V4_TCP, 41, 40), "tcp.opt_invalid_len"),        # MSS option claims 40 bytes
    (set_byte(V4_TCP, 41, 0), "tcp.opt_invalid_len"),
    (raw(IP(proto=6) / (b"\0" * 10)), "tcp.pkt_too_small"),
    (raw(IP(proto=17) / (b"\0" * 5)), "udp.hlen_too_small"),
    (set_u16(raw(IP() / UDP() / b"abcd"), 24, 4), "udp.hlen_invalid"),
    (set_u16(raw(IP() / UDP() / b"abcd"), 24, 40), "udp.pkt_too_small"),
    (set_u16(raw(IP() / UDP() / b"abcd"), 24, 10), "udp.len_invalid"),
    (raw(IP(proto=1) / b"\x08\x00\x00"), "icmpv4.pkt_too_small"),
    (raw(IPv6(nh=58) / b"\x80\x00"), "icmpv6.pkt_too_small"),
    (raw(IPv6(plen=500) / UDP()), "ipv6.trunc_pkt"),
    (raw(IPv6() / IPv6ExtHdrHopByHop())[:42], "ipv6.trunc_pkt"),
    (raw(IPv6(nh=0, plen=4)) + b"\x11\x05\0\0", "ipv6.trunc_exthdr"),
    (raw(IP(options=[b"\x44\x20\x05\x00"]) / UDP()), "ipv4.opt_invalid_len"),
    (raw(IP(proto=58) / ICMPv6EchoRequest()), "ipv4.icmpv6"),
    (raw(IPv6(nh=1) / ICMP()), "ipv6.icmpv4"),
    (set_byte(raw(IPv6() / UDP()), 0, 0x40), "ipv4.hlen_too_small"),
])
def test_malformed_packets_give_named_anomaly(wire, anomaly):
    pkt = decode_l3(wire)
    assert isinstance(pkt, Packet)
    assert anomaly in pkt.anomalies


def test_truncated_tcp_keeps_ports_and_what_payload_is_there():
    pkt = decode_l3(set_u16(raw(IP() / TCP(sport=11, dport=22) / b"0123456789"), 2, 1000))
    assert pkt.anomalies == ["ipv4.trunc_pkt"]
    assert (pkt.sport, pkt.dport, pkt.payload, pkt.length) == (11, 22, b"0123456789", 1000)


def test_snap_truncated_frame_decodes_what_is_there():
    frame = raw(Ether(**MAC) / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=25, dport=5000, options=TCP_OPTS)
                / (b"x" * 500))
    pkt = decode_frame(frame[:68], LINKTYPE_ETHERNET)
    assert (pkt.src, pkt.sport, pkt.dport) == ("10.0.0.1", 25, 5000)
    assert "ipv4.trunc_pkt" in pkt.anomalies and pkt.length == len(frame) - 14


@pytest.mark.parametrize("linktype, frame, anomaly", [
    (LINKTYPE_ETHERNET, b"\0" * 13, "ethernet.pkt_too_small"),
    (LINKTYPE_ETHERNET, raw(Ether(**MAC, type=0x8100)) + b"\0\x05", "vlan.header_too_small"),
    (LINKTYPE_ETHERNET, raw(Ether(**MAC, type=0x8100)) + b"\x00\x02\x81\x00" * 12 + raw(INNER),
     "vlan.too_many_layers"),
    (LINKTYPE_LINUX_SLL, b"\0" * 15, "sll.pkt_too_small"),
    (LINKTYPE_LINUX_SLL2, b"\0" * 19, "sll2.pkt_too_small"),
    (LINKTYPE_NULL, b"\2\0", "ltnull.pkt_too_small"),
    (LINKTYPE_IPV4, raw(INNER6), "ipv4.wrong_ip_version"),
    (LINKTYPE_IPV6, raw(INNER) + bytes(20), "ipv6.wrong_ip_version"),
    (LINKTYPE_RAW, b"\x70" + b"\0" * 30, "ipraw.invalid_ip_version"),
])
def test_malformed_frames_give_named_anomaly(linktype, frame, anomaly):
    pkt = decode_frame(frame, linktype)
    assert anomaly in pkt.anomalies


def test_decoded_addresses_agree_with_scapy_for_odd_ipv6_forms():
    for addr in ("::", "::ffff:10.0.0.1", "fe80::1:2:3:4", "2001:db8:0:0:1::"):
        wire = raw(IPv6(src=addr, dst="::1") / UDP())
        assert decode_l3(wire).src == IPv6(wire).src


def test_module_exports_linktype_constants():
    assert decode.LINKTYPE_ETHERNET == 1 and decode.LINKTYPE_LINUX_SLL2 == 276
    assert {0, 1, 12, 101, 108, 113, 228, 229, 276} == set(SUPPORTED_LINKTYPES)
