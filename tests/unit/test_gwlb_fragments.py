"""Fragments inside the tunnel (review of issue 14): the receiver behind the GWLB
reassembles what the appliance returns, so a fragment may go back only once the datagram it
belongs to has been judged whole, and only when that verdict is pass. Real UDP sockets on
loopback, a real Inspector; the 'GWLB' socket collects what comes back up to a marker
datagram (the source judges in order: what it returns before the marker is all it returns)."""
import socket
import threading

import pytest
from scapy.layers.inet import IP, TCP, fragment
from scapy.packet import raw

from appliance import geneve, source
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.source.gwlb import GwlbSource, Senders, listen

RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 2222}
"""
MARKER = geneve.encapsulate(9, 9, 9, raw(IP(src="10.9.0.1", dst="10.9.0.2") / TCP(dport=80, flags="S")))


@pytest.fixture
def bench(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(RULES)
    insp = Inspector(load_rules([str(rules)]), Settings(), None)
    gwlb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    gwlb.bind(("127.0.0.1", 0))
    gwlb.settimeout(10)
    sock = listen("127.0.0.1", 0)
    src = GwlbSource(sock, Senders(["127.0.0.1/32"]), reply_port=gwlb.getsockname()[1],
                     idle=lambda: None, wait=0.05, defrag=insp.defrag)
    t = threading.Thread(target=source.run, args=(src, insp))
    t.start()
    yield gwlb, sock.getsockname(), src
    src.stop()
    t.join(5)
    sock.close()
    gwlb.close()


def returned(gwlb, addr, datagrams):
    """Send `datagrams` then the marker; every datagram that came back before the marker."""
    for d in datagrams:
        gwlb.sendto(d, addr)
    gwlb.sendto(MARKER, addr)
    back = []
    while True:
        d = gwlb.recv(65535)
        if d == MARKER:
            return back
        back.append(d)


def fragments(dport, ident):
    pkt = IP(src="10.1.0.2", dst="10.2.0.2", id=ident) / TCP(sport=40000, dport=dport, flags="S") / (b"x" * 40)
    frags = [raw(f) for f in fragment(pkt, fragsize=24)]
    assert len(frags) == 3
    return [geneve.encapsulate(1, 2, 3, f) for f in frags]


def test_a_dropped_datagram_cannot_be_completed_by_sending_its_last_fragment_again(bench):
    gwlb, addr, src = bench
    f = fragments(2222, 77)
    # The completing fragment carries the drop; sent again, it starts a new datagram in the
    # appliance's reassembly while the receiver still holds the first ones.
    back = returned(gwlb, addr, [f[0], f[1], f[2], f[2]])
    assert back == [], "fragments of a dropped datagram went back to the GWLB"


def test_an_allowed_datagram_goes_back_fragment_for_fragment_once_whole(bench):
    gwlb, addr, src = bench
    f = fragments(80, 78)
    assert returned(gwlb, addr, [f[1], f[0]]) == []            # not whole yet: nothing leaves
    assert returned(gwlb, addr, [f[2]]) == [f[1], f[0], f[2]]  # as received, in the order received


def test_overlapping_fragments_discard_the_datagram_and_nothing_goes_back(bench):
    gwlb, addr, src = bench
    f = fragments(80, 79)
    inner = IP(src="10.1.0.2", dst="10.2.0.2", id=79, frag=2, flags="MF", proto=6) / (b"y" * 16)
    overlap = geneve.encapsulate(1, 2, 3, raw(inner))          # bytes 16..32: crosses fragment 0's end
    assert returned(gwlb, addr, [f[0], overlap, f[1], f[2]]) == []


def test_fragments_through_two_endpoints_never_make_one_datagram(bench):
    """Two VPCs behind their endpoints may use the same addresses: a fragment that came
    through another endpoint belongs to another host's datagram (as the flow key says)."""
    gwlb, addr, src = bench
    mine = fragments(80, 80)
    other = fragments(80, 80)[2].replace(geneve.encapsulate(1, 2, 3, b"")[:32],
                                         geneve.encapsulate(5, 2, 3, b"")[:32])
    assert other != mine[2]
    assert returned(gwlb, addr, [mine[0], mine[1], other]) == []
    assert returned(gwlb, addr, [mine[2]]) == [mine[0], mine[1], mine[2]]
