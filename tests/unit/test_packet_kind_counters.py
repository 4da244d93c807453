"""Counters.count_packet counts an IP packet by its protocol number in a list per IP version
and the rest in a dict: `kinds`, by() and the stats event's decoder counts are what the one
(ip_version, proto) dict gave, for a hostile mix of frames (every IPv4 and IPv6 protocol
number, non-IP ethertypes, VLAN tags, truncated headers, ICMP errors); pure and compiled
alike."""
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from scapy.all import ARP, ICMP, IP, TCP, UDP, Dot1Q, Ether, ICMPv6EchoRequest, IPv6, Raw, raw

from appliance.compiled import PURE_ENV
from appliance.decode import decode_frame
from appliance.output.events import Counters

ROOT = Path(__file__).resolve().parents[2]
LINKTYPE_ETHERNET = 1


def E(**kw):
    """An Ethernet header with its addresses given (scapy would ARP for a missing one)."""
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", **kw)


def frames():
    out = []
    for p in range(256):
        out.append(raw(E() / IP(src="10.0.0.1", dst="10.0.0.2", proto=p) / Raw(b"\0" * 40)))
        out.append(raw(E() / IPv6(src="fd00::1", dst="fd00::2", nh=p) / Raw(b"\0" * 40)))
    out += [raw(E() / IP() / TCP()), raw(E() / Dot1Q(vlan=7) / IP() / UDP()),
            raw(E() / IP() / ICMP(type=3) / IP() / UDP()), raw(E() / IPv6() / ICMPv6EchoRequest()),
            raw(E() / ARP()), raw(E(type=0x88cc) / Raw(b"x" * 30)), raw(E() / IP())[:30],
            raw(E() / IPv6())[:40], raw(E() / IP(ihl=15) / TCP())[:40], raw(E(type=0x8847) / Raw(b"\0" * 8))]
    return out


def counted():
    """(kinds as sorted [version, proto, n], by() totals, the rest), from one Counters."""
    c = Counters()
    packets = [decode_frame(f, LINKTYPE_ETHERNET, 1.0) for f in frames()]
    for p in packets:
        c.count_packet(p)
    want = Counter((p.ip_version, p.proto) for p in packets)
    assert c.kinds == dict(want)
    totals = [c.by(4), c.by(6), c.by(proto=6), c.by(proto=17), c.by(proto=1), c.by(proto=58), c.by(), c.by(0)]
    return {"kinds": sorted([v, p, n] for (v, p), n in c.kinds.items()), "by": totals,
            "rest": [c.pkts, c.bytes, c.invalid, c.vlan, sorted(c.encap.items())]}


def test_kinds_are_the_packets_ip_version_and_protocol():
    got = counted()
    assert got["by"][6] == len(frames())
    assert {v for v, _, _ in got["kinds"]} == {0, 4, 6}
    assert got["by"][0] >= 256 and got["by"][1] >= 256


def test_pure_and_compiled_counts_agree():
    here = counted()
    code = ("import json, sys; sys.path.insert(0, '.'); "
            "from tests.unit.test_packet_kind_counters import counted; print(json.dumps(counted()))")
    pure = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, PURE_ENV: "1"}, check=True)
    assert json.loads(pure.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(here))
