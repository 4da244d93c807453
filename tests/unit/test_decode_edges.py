"""Decode edges that one-line mutations of decode.py showed untested (python3 -m bench.mutate)."""
import struct

from scapy.all import IP, IPv6, TCP, UDP, Dot1Q, Ether, raw

from appliance.decode import LINKTYPE_ETHERNET, decode_frame, decode_l3


def test_fixed_length_tcp_option_with_a_wrong_length():
    # MSS is always 4 bytes; an MSS of length 3 is malformed even though it fits the header.
    tcp = bytearray(raw(TCP(sport=1, dport=2, flags="S", options=[("NOP", None)] * 4)))
    tcp[20:24] = b"\x02\x03\x05\x01"
    p = decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2", proto=6) / bytes(tcp)))
    assert p.anomalies == ["tcp.opt_invalid_len"]
    ok = decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="S", options=[("MSS", 1460)])))
    assert ok.anomalies == []


def test_udp_length_shorter_than_the_datagram_cuts_the_payload():
    wire = bytearray(raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"abcdefghij"))
    struct.pack_into("!H", wire, 24, 8 + 3)          # UDP length says 3 bytes of payload
    p = decode_l3(bytes(wire))
    assert p.payload == b"abc" and "udp.len_invalid" in p.anomalies


def test_ipv6_zero_payload_length_is_a_jumbogram_only_with_hop_by_hop():
    # plen 0 without a hop-by-hop header: the packet is its 40-byte header (Linux trims to it).
    wire = bytearray(raw(IPv6(src="fd00::1", dst="fd00::2") / TCP(sport=1, dport=2) / b"data"))
    struct.pack_into("!H", wire, 4, 0)
    p = decode_l3(bytes(wire))
    assert p.length == 40 and p.payload == b"" and p.sport == 0


def test_vlan_id_without_priority_bits():
    frame = raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(prio=5, id=1, vlan=12)
                / IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2))
    assert decode_frame(frame, LINKTYPE_ETHERNET).vlan == (12,)
