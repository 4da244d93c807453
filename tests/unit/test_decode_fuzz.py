"""decode/defrag never raise: random bytes and mutations of valid packets."""

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, fragment
from scapy.layers.inet6 import (ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop, fragment6)
from scapy.layers.l2 import CookedLinux, Dot1AD, Dot1Q, Ether
from scapy.packet import raw

from appliance.decode import SUPPORTED_LINKTYPES, decode_frame, decode_l3
from appliance.defrag import Defragmenter
from appliance.packet import Packet

FUZZ = settings(max_examples=150, deadline=None)
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

L3_SEEDS = [
    raw(IP(src="10.0.0.1", dst="10.0.0.2", options=[b"\x01" * 4]) / TCP(options=[("MSS", 1460), ("SAckOK", b""),
                                                                                ("Timestamp", (1, 2))]) / b"hi"),
    raw(IP() / UDP() / b"dns"),
    raw(IP() / ICMP(id=3) / b"ping"),
    raw(IPv6() / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(m=1, id=5) / UDP() / (b"u" * 32)),
    raw(IPv6() / ICMPv6EchoRequest(id=4, data=b"x")),
    raw(IPv6() / TCP(flags="S")),
]
FRAME_SEEDS = [
    (1, raw(Ether(**MAC) / Dot1AD(vlan=2) / Dot1Q(vlan=3) / L3_SEEDS[0])),
    (1, raw(Ether(**MAC, type=0x86DD) / L3_SEEDS[3])),
    (113, raw(CookedLinux(lladdrtype=1, lladdrlen=6) / IP() / UDP())),
    (276, struct.pack("!HHIHBB8s", 0x86DD, 0, 1, 1, 0, 6, b"") + L3_SEEDS[4]),
    (0, struct.pack("<I", 2) + L3_SEEDS[1]),
    (108, struct.pack(">I", 30) + L3_SEEDS[5]),
]


@st.composite
def mutated(draw, seeds):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] ^= 1 << draw(st.integers(0, 7))
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_into_decode_l3(data):
    assert isinstance(decode_l3(data), Packet)


@FUZZ
@given(st.binary(max_size=200), st.sampled_from(sorted(SUPPORTED_LINKTYPES) + [2, 147, 65535]))
def test_random_bytes_into_every_linktype(data, linktype):
    assert isinstance(decode_frame(data, linktype), Packet)


@FUZZ
@given(mutated(L3_SEEDS))
def test_mutated_ip_packets(data):
    pkt = decode_l3(data)
    assert isinstance(pkt, Packet)
    assert all(isinstance(a, str) and "." in a for a in pkt.anomalies)
    for linktype in (101, 12, 228, 229):
        assert isinstance(decode_frame(data, linktype), Packet)


@FUZZ
@given(st.sampled_from(FRAME_SEEDS), st.data())
def test_mutated_frames(seed, data):
    linktype, frame = seed
    assert isinstance(decode_frame(data.draw(mutated([frame])), linktype), Packet)


FRAGMENTS = ([raw(f) for f in fragment(IP(dst="10.0.0.2", id=9) / UDP() / (b"f" * 600), fragsize=200)]
             + [raw(f) for f in fragment6(IPv6() / IPv6ExtHdrFragment(id=9) / UDP() / (b"g" * 3000), 1280)])


@settings(max_examples=80, deadline=None)
@given(st.lists(mutated(FRAGMENTS), min_size=1, max_size=12),
       st.integers(100, 5000), st.integers(1, 4))
def test_mutated_fragments_into_defragmenter(wires, max_bytes, max_datagrams):
    d = Defragmenter(max_bytes=max_bytes, max_datagrams=max_datagrams, timeout=2.0)
    for i, wire in enumerate(wires):
        out = d.feed(decode_l3(wire, ts=float(i)))
        assert out is None or isinstance(out, Packet)
        assert 0 <= d.held_bytes <= max_bytes and d.held_datagrams <= max_datagrams
    d.expire(1e9)
    assert d.held_datagrams == 0 and d.held_bytes == 0
