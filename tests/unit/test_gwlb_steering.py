"""Worker sockets on one port (SO_REUSEPORT) steered by the inner addresses: real sockets on
loopback, the kernel running the classic BPF program."""
import select
import socket

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.packet import raw

from appliance import geneve
from appliance.fleet import steering
from appliance.source.gwlb import listen


def datagram(inner, cookie=1):
    return geneve.encapsulate(0x0E11, 0xA77, cookie, raw(inner))


def landed(socks, data, sender):
    sender.sendto(data, socks[0].getsockname())
    ready, _, _ = select.select(socks, [], [], 2)
    assert len(ready) == 1, "one datagram, one socket"
    got = ready[0].recv(65535)
    assert got == data
    return socks.index(ready[0])


@pytest.fixture
def group():
    socks = steering.sockets("127.0.0.1", 0, 4, listen)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))                # one outer source for everything, as one GWLB node
    yield socks
    sender.close()
    for s in socks:
        s.close()


def pairs():
    for i in range(1, 40):
        yield f"10.1.{i}.2", f"10.2.0.{i * 3 % 250 + 1}"


def test_both_directions_of_a_flow_reach_one_worker_and_flows_spread(group):
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    seen = set()
    for a, b in pairs():
        fwd = landed(group, datagram(IP(src=a, dst=b) / UDP(sport=1000, dport=53)), sender)
        back = landed(group, datagram(IP(src=b, dst=a) / UDP(sport=53, dport=1000), cookie=9), sender)
        assert fwd == back == steering.worker_of(datagram(IP(src=a, dst=b) / UDP()), 4)
        seen.add(fwd)
    assert seen == {0, 1, 2, 3}       # the kernel's own hash would put one outer tuple on one socket


def test_ipv6_inner_is_steered_by_its_addresses(group):
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    seen = set()
    for i in range(1, 30):
        a, b = f"fd01::{i:x}", f"fd02::{i * 7:x}"
        fwd = landed(group, datagram(IPv6(src=a, dst=b) / UDP(sport=1, dport=2)), sender)
        back = landed(group, datagram(IPv6(src=b, dst=a) / UDP(sport=2, dport=1)), sender)
        assert fwd == back == steering.worker_of(datagram(IPv6(src=a, dst=b) / UDP()), 4)
        seen.add(fwd)
    assert len(seen) > 1


def test_a_runt_goes_to_worker_0_and_nothing_is_lost(group):
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    assert landed(group, b"\x00\x00", sender) == 0
    assert steering.worker_of(b"\x00\x00", 4) == 0


def test_a_port_someone_else_holds_with_reuseport_is_refused():
    """A second instance's reuseport sockets would join the group silently and take flows."""
    other = listen("127.0.0.1", 0, reuse_port=True)
    try:
        with pytest.raises(OSError):
            steering.sockets("127.0.0.1", other.getsockname()[1], 2, listen)
    finally:
        other.close()


def test_an_icmp_error_from_a_router_goes_to_the_worker_of_the_flow_it_quotes(group):
    """PMTUD's fragmentation needed / time exceeded come from a router on the path, not from
    either end: steered by the quoted packet, they reach the worker that knows the flow."""
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6PacketTooBig, ICMPv6TimeExceeded
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    moved = 0
    for i, (a, b) in enumerate(pairs()):
        router = f"10.7.{i}.1"
        flow = landed(group, datagram(IP(src=a, dst=b) / UDP(sport=1000, dport=53)), sender)
        for err in (IP(src=router, dst=a) / ICMP(type=3, code=4, nexthopmtu=1300) / IP(src=a, dst=b) / UDP(),
                    IP(src=router, dst=a) / ICMP(type=11) / IP(src=a, dst=b, ttl=1) / UDP()):
            assert landed(group, datagram(err), sender) == flow == steering.worker_of(datagram(err), 4)
        echo = IP(src=router, dst=a) / ICMP(type=8)                     # not an error: its own addresses
        assert landed(group, datagram(echo), sender) == steering.worker_of(datagram(echo), 4)
        moved += steering.worker_of(datagram(echo), 4) != flow
    assert moved                                    # the router's own addresses would go elsewhere
    for i in range(1, 20):
        a, b, router = f"fd01::{i:x}", f"fd02::{i * 5:x}", f"fd07::{i:x}"
        flow = landed(group, datagram(IPv6(src=a, dst=b) / UDP(sport=1, dport=2)), sender)
        for err in (IPv6(src=router, dst=a) / ICMPv6PacketTooBig(mtu=1280) / IPv6(src=a, dst=b) / UDP(),
                    IPv6(src=router, dst=a) / ICMPv6TimeExceeded() / IPv6(src=a, dst=b, hlim=1) / UDP()):
            assert landed(group, datagram(err), sender) == flow == steering.worker_of(datagram(err), 4)
        ping = IPv6(src=a, dst=b) / ICMPv6EchoRequest()
        assert landed(group, datagram(ping), sender) == flow                # a query: the pair's own hash
