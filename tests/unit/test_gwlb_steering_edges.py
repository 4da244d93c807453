"""Steering's edges (review of issue 14): inner fragments, ICMPv6 errors behind extension
headers. The fragments of one IPv4 datagram must
reach one worker, or neither worker can reassemble it and it is never returned. A non-first
fragment of an ICMP datagram has no ICMP header: its first payload byte is data (a ping's
padding), and read as an ICMP error type it sent the fragment after a "quoted" packet made
of payload bytes, to another worker. Real sockets, the kernel running the program."""
import select
import socket

import pytest
from scapy.layers.inet import ICMP, IP, fragment
from scapy.packet import raw

from appliance import geneve
from appliance.fleet import steering
from appliance.source.gwlb import listen

WORKERS = 4


@pytest.fixture
def group():
    socks = steering.sockets("127.0.0.1", 0, WORKERS, listen)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield socks, sender
    sender.close()
    for s in socks:
        s.close()


def landed(socks, sender, data):
    sender.sendto(data, socks[0].getsockname())
    ready, _, _ = select.select(socks, [], [], 5)
    assert len(ready) == 1
    assert ready[0].recv(65535) == data
    return socks.index(ready[0])


def test_every_fragment_of_a_big_ping_reaches_the_worker_of_its_first(group):
    socks, sender = group
    spread = set()
    for i in range(1, 9):
        # payload bytes chosen so the second fragment starts with 3 (unreachable), then
        # "quoted" addresses that differ per ping
        pad = bytes(16) + bytes([3, 0, 0, 0]) + bytes(8) + bytes([10, 9, i, 1, 10, 8, 0, i * 7]) + bytes(64)
        ping = IP(src="10.1.0.2", dst="10.2.0.2", id=i) / ICMP(type=8) / pad
        frags = [geneve.encapsulate(1, 2, 3, raw(f)) for f in fragment(ping, fragsize=24)]
        where = [landed(socks, sender, d) for d in frags]
        assert where == [where[0]] * len(where), f"ping {i}: fragments on workers {where}"
        assert where == [steering.worker_of(d, WORKERS) for d in frags]
        spread.add(where[0])
    assert len(spread) == 1                     # one host pair, one worker


def test_an_unfragmented_icmp_error_still_follows_the_packet_it_quotes(group):
    socks, sender = group
    for i in range(1, 9):
        quoted = raw(IP(src=f"10.1.{i}.2", dst="10.2.0.2") / ICMP(type=8))[:28]
        err = geneve.encapsulate(1, 2, 3, raw(IP(src="192.0.2.1", dst=f"10.1.{i}.2") / ICMP(type=3, code=4) / quoted))
        flow = geneve.encapsulate(1, 2, 3, raw(IP(src=f"10.1.{i}.2", dst="10.2.0.2") / ICMP(type=8)))
        assert landed(socks, sender, err) == landed(socks, sender, flow)


def test_an_icmpv6_error_behind_extension_headers_follows_the_packet_it_quotes(group):
    """The Inspector reads past extension headers (decode) and relates the error to the flow
    it quotes; the program must find that flow's worker too, or the error is judged, as about
    nothing we track, by a worker that does not know the flow (a dropped flow's errors pass)."""
    from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt,
                                    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting)
    from scapy.packet import Raw
    from appliance.decode import decode_l3
    socks, sender = group
    chains = [IPv6ExtHdrDestOpt(), IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt(),
              IPv6ExtHdrHopByHop(nh=51) / Raw(bytes([58, 4, 0, 0, 0, 0, 0, 1]) + bytes(16))]   # AH, 24 bytes
    for i in range(1, 9):
        a, b = f"2001:db8:1::{i:x}", "2001:db8:2::2"
        quoted = raw(IPv6(src=a, dst=b) / ICMPv6EchoRequest())
        flow = landed(socks, sender, geneve.encapsulate(1, 2, 3, quoted))
        for chain in chains:
            inner = raw(IPv6(src="2001:db8:ff::1", dst=a) / chain / ICMPv6DestUnreach() / quoted)
            if Raw in chain:                # scapy does not fill in the header before raw bytes
                inner = inner[:6] + bytes([0]) + inner[7:]
            assert decode_l3(inner).quote is not None        # the Inspector relates it to the flow
            d = geneve.encapsulate(1, 2, 3, inner)
            assert landed(socks, sender, d) == flow == steering.worker_of(d, WORKERS), chain.summary()
