"""Detector.candidates() against a brute-force reference: random rules (nested CIDRs,
negations, ports, ranges, protos, directions) and random packets; the bitmask index must
give exactly the rules whose header fields match by AddrSet.contains / PortSet.contains."""
import ipaddress
import random
from types import SimpleNamespace

import pytest

from appliance.detect.engine import Detector
from appliance.detect.rule import AddrSet, PortSet, Rule, RuleSet, PROTOS

BASES = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "192.168.0.0/16", "172.16.0.0/12",
                                           "2001:db8::/32", "fd00::/8")]
PROTO_NAMES = list(PROTOS)                     # ip tcp udp icmp icmpv6


def rand_net(rng):
    base = rng.choice(BASES)
    bits = base.max_prefixlen
    plen = rng.randint(base.prefixlen, min(bits, base.prefixlen + rng.choice((0, 4, 8, 16, 24))))
    addr = int(base.network_address) + rng.getrandbits(bits - base.prefixlen)
    return ipaddress.ip_network((addr, plen), strict=False)


def rand_addrset(rng, nets_pool):
    r = rng.random()
    if r < 0.3:
        return None
    n = rng.randint(1, 3)
    nets = []
    for _ in range(n):
        if nets_pool and rng.random() < 0.5:      # nested prefixes: a sub- or super-net of one in use
            parent = rng.choice(nets_pool)
            if rng.random() < 0.5 and parent.prefixlen < parent.max_prefixlen:
                new = min(parent.max_prefixlen, parent.prefixlen + rng.randint(1, 8))
                nets.append(rng.choice(list(parent.subnets(new_prefix=new))[:64]))
            else:
                nets.append(parent.supernet(prefixlen_diff=min(parent.prefixlen, rng.randint(0, 6))))
        else:
            nets.append(rand_net(rng))
    nets_pool.extend(nets)
    return AddrSet(tuple(nets), negated=rng.random() < 0.3)


def rand_portset(rng):
    if rng.random() < 0.4:
        return None
    ranges = []
    for _ in range(rng.randint(1, 3)):
        lo = rng.choice((rng.randint(0, 1024), rng.randint(0, 65535)))
        width = rng.choice((0, 0, 1, 10, 100, 5000, 40000))
        ranges.append((lo, min(65535, lo + width)))
    return PortSet(tuple(ranges), negated=rng.random() < 0.3)


def rand_rule(rng, i, pool):
    return Rule(id=i + 1, msg="", action=rng.choice(("pass", "drop", "reject", "alert")),
                proto=rng.choice(PROTO_NAMES), src=rand_addrset(rng, pool), dst=rand_addrset(rng, pool),
                src_port=rand_portset(rng), dst_port=rand_portset(rng),
                direction=rng.choice(("any", "inbound", "outbound")), order=i)


def rand_ip(rng, pool):
    """An address inside, at the edge of, or just outside a network rules use."""
    if pool and rng.random() < 0.8:
        net = rng.choice(pool)
        pick = rng.choice(("first", "last", "inside", "before", "after"))
        first, last = int(net.network_address), int(net.broadcast_address)
        top = 2 ** net.max_prefixlen - 1
        v = {"first": first, "last": last, "inside": rng.randint(first, last),
             "before": max(0, first - 1), "after": min(top, last + 1)}[pick]
        return str(ipaddress.ip_address(v) if net.version == 4 else ipaddress.IPv6Address(v))
    return str(rand_net(rng).network_address + rng.randint(0, 3))


def rand_port(rng, rules):
    ranges = [r for rule in rules for ps in (rule.src_port, rule.dst_port) if ps for r in ps.ranges]
    if ranges and rng.random() < 0.7:
        lo, hi = rng.choice(ranges)
        return max(0, min(65535, rng.choice((lo, hi, lo - 1, hi + 1, rng.randint(lo, hi)))))
    return rng.randint(0, 65535)


def reference(rules, pkt, direction):
    m = 0
    for i, r in enumerate(rules):
        if PROTOS[r.proto] is not None and PROTOS[r.proto] != pkt.proto:
            continue
        if r.direction != "any" and r.direction != direction:
            continue
        if r.src is not None and not r.src.contains(pkt.src):
            continue
        if r.dst is not None and not r.dst.contains(pkt.dst):
            continue
        if r.src_port is not None and not r.src_port.contains(pkt.sport):
            continue
        if r.dst_port is not None and not r.dst_port.contains(pkt.dport):
            continue
        m |= 1 << i
    return m


def names(mask):
    return [i for i in range(mask.bit_length()) if mask >> i & 1]


@pytest.mark.parametrize("seed", range(12))
def test_candidates_equal_brute_force(seed):
    rng = random.Random(seed)
    pool = []
    rules = [rand_rule(rng, i, pool) for i in range(rng.randint(1, 120))]
    det = Detector(RuleSet(rules=rules, vars={}))
    nonempty = 0
    for _ in range(300):
        src, dst = rand_ip(rng, pool), rand_ip(rng, pool)
        if (":" in src) != (":" in dst):
            dst = rand_ip(rng, [n for n in pool if (n.version == 6) == (":" in src)]) if pool else src
        pkt = SimpleNamespace(proto=rng.choice((6, 17, 1, 58)), src=src, dst=dst,
                              sport=rand_port(rng, rules), dport=rand_port(rng, rules))
        direction = rng.choice(("any", "inbound", "outbound"))
        # (the flow's ends: the to_client slot is the flow's reverse, whichever packet fills it)
        flow = SimpleNamespace(cand_ts=None, cand_tc=None, direction=direction, proto=pkt.proto, src=pkt.src,
                               dst=pkt.dst, sport=pkt.sport, dport=pkt.dport)
        got = det.candidates(pkt, flow, True)
        want = reference(rules, pkt, direction)
        assert got == want, (pkt, direction, names(got ^ want))
        nonempty += bool(want)
        # the cached answer for this direction is the same; the other slot is computed on its own
        assert det.candidates(pkt, flow, True) == want
        rev = SimpleNamespace(proto=pkt.proto, src=pkt.dst, dst=pkt.src, sport=pkt.dport, dport=pkt.sport)
        assert det.candidates(rev, flow, False) == reference(rules, rev, direction)
    assert nonempty >= 30                  # the generator really produces matching packets


def test_nested_and_negated_by_hand():
    rules = [
        Rule(id=1, msg="", action="alert", src=AddrSet((ipaddress.ip_network("10.0.0.0/8"),))),
        Rule(id=2, msg="", action="alert", src=AddrSet((ipaddress.ip_network("10.1.0.0/16"),))),
        Rule(id=3, msg="", action="alert", src=AddrSet((ipaddress.ip_network("10.1.2.0/24"),), negated=True)),
        Rule(id=4, msg="", action="alert", dst_port=PortSet(((80, 80), (8000, 65535)), negated=True)),
        Rule(id=5, msg="", action="alert", src=AddrSet((ipaddress.ip_network("2001:db8::/32"),))),
    ]
    det = Detector(RuleSet(rules=rules, vars={}))

    def cand(src, dport):
        pkt = SimpleNamespace(proto=6, src=src, dst="10.9.9.9" if ":" not in src else "2001:db8::9",
                              sport=1, dport=dport)
        return sorted(r.id for i, r in enumerate(rules) if det.candidates(pkt, SimpleNamespace(cand_ts=None, cand_tc=None, direction="any", proto=6), True) >> i & 1)
    assert cand("10.1.2.3", 80) == [1, 2]
    assert cand("10.1.3.3", 81) == [1, 2, 3, 4]
    assert cand("10.2.0.1", 8000) == [1, 3]
    assert cand("11.0.0.1", 7999) == [3, 4]
    assert cand("2001:db8::1", 80) == [3, 5]
