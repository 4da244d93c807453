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
