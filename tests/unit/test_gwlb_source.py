"""The GENEVE source over real UDP sockets on loopback, through a real Inspector: what goes
back to the GWLB (byte for byte), what does not, and the flow key's endpoint."""
import socket
import threading
import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import raw

from appliance import geneve, source
from appliance.detect.loader import load_rules
from appliance.flow import flow_key
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders, listen
from appliance.decode import decode_l3

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 2222}
  - {id: 2, action: reject, proto: tcp, dst_port: 3333}
"""


def syn(dport, sport=40000):
    return raw(IP(src="10.1.0.2", dst="10.2.0.2") / TCP(sport=sport, dport=dport, flags="S", seq=7))


@pytest.fixture
def bench(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    insp = Inspector(load_rules([str(rules)]), Settings(), None)
    gwlb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gwlb.bind(("127.0.0.1", 0))
    gwlb.settimeout(0.5)
    sock = listen("127.0.0.1", 0)
    src = GwlbSource(sock, Senders(["127.0.0.1/32"]), reply_port=gwlb.getsockname()[1],
                     idle=lambda: None, wait=0.05)
    t = threading.Thread(target=source.run, args=(src, insp))
    t.start()
    yield gwlb, sock.getsockname(), src, insp
    src.stop()
    t.join(5)
    sock.close()
    gwlb.close()


def exchange(gwlb, addr, data, src=None):
    """Send one datagram; what comes back (None: nothing). With `src`, waits (busy machine:
    up to 10 s) until the source has judged it, answer or not."""
    before = judged(src) if src is not None else 0
    gwlb.sendto(data, addr)
    deadline = time.monotonic() + 10
    while True:
        try:
            return gwlb.recv(65535)
        except socket.timeout:
            if src is not None and judged(src) > before:
                try:                               # judged: its answer (counted first) may be in flight
                    return gwlb.recv(65535)
                except socket.timeout:
                    return None
            if src is None or time.monotonic() > deadline:
                return None


def judged(src):
    c = src.counters
    return c.returned + c.dropped + sum(c.malformed.values())


def test_allowed_returns_exactly_what_was_sent_dropped_nothing(bench):
    gwlb, addr, src, insp = bench
    d = geneve.encapsulate(1, 2, 3, syn(80), extra_options=b"\x01\x05\x01\x01abcd")
    assert exchange(gwlb, addr, d, src) == d
    assert exchange(gwlb, addr, geneve.encapsulate(1, 2, 4, syn(2222)), src) is None
    assert src.counters.returned == 1 and src.counters.dropped == 1


def test_reject_answer_goes_back_in_the_same_tunnel(bench):
    gwlb, addr, src, _ = bench
    d = geneve.encapsulate(9, 8, 7, syn(3333))
    back = exchange(gwlb, addr, d, src)
    t = geneve.parse(back)
    assert back[:t.header_len] == d[:t.header_len]          # header and options as received
    rst = decode_l3(back[t.header_len:])
    assert (rst.src, rst.dst, rst.sport, rst.dport) == ("10.2.0.2", "10.1.0.2", 3333, 40000)
    assert rst.tcp_flags & 0x04
    deadline = time.monotonic() + 5                # counted once sendto returned: the answer may come first
    while src.counters.reject_sent != 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert src.counters.reject_sent == 1


def test_malformed_and_unknown_sender_are_counted_drops(bench):
    gwlb, addr, src, _ = bench
    good = geneve.encapsulate(1, 2, 3, syn(80))
    assert exchange(gwlb, addr, b"\x40" + good[1:], src) is None          # version 1
    assert exchange(gwlb, addr, good[:20], src) is None                   # options cut
    assert src.counters.malformed == {"geneve.bad_version": 1, "geneve.options_too_long": 1}
    src.senders = Senders(["192.0.2.0/24"])
    assert exchange(gwlb, addr, good, src) is None
    assert src.counters.malformed["geneve.unknown_sender"] == 1


def test_same_inner_tuple_through_two_endpoints_is_two_flows(bench):
    gwlb, addr, src, insp = bench
    for eni in (1, 2):
        d = geneve.encapsulate(eni, 5, 6, syn(80))
        assert exchange(gwlb, addr, d, src) == d
    assert len(insp.flows.flows) == 2
    p = decode_l3(syn(80))
    assert flow_key(p) not in insp.flows.flows                  # the endpoint is part of the key
    assert {f.tuple_key[:5] for f in insp.flows.flows.values()} == {(6, p.src, p.sport, p.dst, p.dport)}
    assert sorted(f.tunnel for f in insp.flows.flows.values()) == [1, 2]
    p.tunnel = 1
    assert flow_key(p) in insp.flows.flows


def test_icmp_error_relates_to_the_flow_of_its_own_endpoint():
    """The quoted packet of an ICMP error is keyed on the same endpoint as the error, so it
    finds the flow it belongs to (and not a namesake from another VPC)."""
    from scapy.layers.inet import ICMP
    sock = listen("127.0.0.1", 0)
    gwlb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        src = GwlbSource(sock, Senders(["127.0.0.1"]), wait=0.05)
        packets = iter(src)
        err = raw(IP(src="10.2.0.2", dst="10.1.0.2") / ICMP(type=3, code=4) / syn(80)[:28])
        gwlb.sendto(geneve.encapsulate(7, 2, 3, err), sock.getsockname())
        p = next(packets)
        assert p.tunnel == 7 and p.quote is not None
        q = decode_l3(syn(80))
        q.tunnel = 7
        assert flow_key(p.quote) == flow_key(q)
    finally:
        src.stop()
        sock.close()
        gwlb.close()
