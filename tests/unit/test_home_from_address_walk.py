"""HOME_NET answered from the address indexes' own trie walk (AddrIndex.lookup_home_raw,
Detector.header_addresses): a new flow's direction and its candidates from one walk an
address, where HOME_NET's own trie was walked as well. The answers equal the separate
lookups (AddrIndex.lookup_raw, AddrTrie.contains_raw) for every shipped rule set and hostile
ones (v4, v6, v4-mapped v6, /0, /32, /128, negated sets, a negated HOME_NET, HOME_NET
prefixes nested in rule prefixes and around them), over a hostile mix of addresses; and so
do the direction and candidates a packet gets; the pure module and the compiled twin alike."""
import json
from pathlib import Path

from twins import in_pure_python
from appliance.decode import decode_l3
from appliance.detect.engine import Detector
from appliance.detect.index import raw_address
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from tests.unit.test_raw_address_candidates import ADDRESSES, rule_files


# HOME_NET negated, and prefixes of it inside and around the rules' own
NEGATED_HOME = """\
vars:
  HOME_NET: "![10.1.0.0/16, 192.168.0.0/16, fd00::/8]"
rules:
  - {id: 1, action: alert, proto: ip, src: 10.0.0.0/8, dst: 10.1.2.0/24}
  - {id: 2, action: alert, proto: ip, src: "!$HOME_NET", dst: $HOME_NET}
  - {id: 3, action: drop, proto: tcp, src: 192.168.1.0/24, dst: "fd00:10::/32"}
  - {id: 4, action: alert, proto: ip, src: "10.1.2.3/32", dst: "0.0.0.0/0"}
"""


def sets(tmp):
    negated = Path(tmp) / "negated_home.yaml"
    negated.write_text(NEGATED_HOME)
    return rule_files(tmp) + [negated]


def answers(tmp):
    """Per rule set and address: [file, addr, (separate lookups), (one walk)]"""
    out = []
    for path in sets(tmp):
        det = Detector(load_rules(path))
        for ip in ADDRESSES + ["", "not-an-address", "1.2.3", "::g"]:
            raw = raw_address(ip)
            home = det.home.contains_raw(raw)
            apart = [str(det.src.lookup_raw(raw)), home, str(det.dst.lookup_raw(raw)), home]
            (sm, sh), (dm, dh) = det.src.lookup_home_raw(raw), det.dst.lookup_home_raw(raw)
            out.append([path.name, ip, apart, [str(sm), sh, str(dm), dh]])
    return out


def test_one_walk_answers_as_the_separate_lookups(tmp_path):
    got = answers(tmp_path)
    assert not [row for row in got if row[2] != row[3]]
    # not trivially empty: addresses at home and away, masks set, in the hostile sets
    hostile = [row for row in got if row[0] in ("hostile.yaml", "negated_home.yaml")]
    assert {row[2][1] for row in hostile} == {True, False}
    assert {row[2][0] for row in hostile} - {"0"}


def test_pure_and_compiled_walks_agree(tmp_path):
    here = answers(tmp_path)
    pure = in_pure_python("tests.unit.test_home_from_address_walk", "answers", tmp_path)
    assert pure == json.loads(json.dumps(here))


def test_a_new_flows_direction_and_candidates_from_the_walk(tmp_path):
    """Inspector._direction and Detector._header given header_addresses(pkt) answer as
    without it, from either end (from_responder), for packets with and without decode's bytes."""
    from scapy.all import IP, IPv6, TCP, raw
    pairs = [("10.1.2.3", "8.8.8.8"), ("8.8.8.8", "10.1.2.3"), ("10.1.2.3", "192.168.1.255"),
             ("172.16.0.1", "224.0.0.1"), ("fd00::1", "2001:db8::1"), ("2001:db8::1", "fd00:10:2::5"),
             ("::ffff:10.0.0.1", "::ffff:172.16.0.1")]
    seen = set()
    for path in sets(tmp_path):
        insp = Inspector(load_rules(path))
        det = insp.detector
        for src, dst in pairs:
            l3 = (IPv6 if ":" in src else IP)(src=src, dst=dst) / TCP(sport=40000, dport=80, flags="S")
            for hand_made in (False, True):
                pkt = decode_l3(raw(l3), ts=1.0)
                if hand_made:
                    pkt.src_raw = pkt.dst_raw = b""
                addrs = det.header_addresses(pkt)
                for from_responder in (False, True):
                    way = insp._direction(pkt, from_responder)
                    assert insp._direction(pkt, from_responder, addrs) == way, (path.name, src, dst)
                    seen.add(way)
                    assert det._header(pkt, way, False, addrs) == det._header(pkt, way), (path.name, src, dst)
    assert seen == {"inbound", "outbound", "any"}


def test_masks_and_home_are_the_rules_own_sets(tmp_path):
    """Against the rules themselves (AddrSet/PortSet.contains), not another trie: the walk's
    masks (the "any" rules in them), its HOME_NET answer, and the port masks (the "any"
    rules folded into the exact ports' masks)."""
    import ipaddress
    ports = [0, 1, 22, 53, 79, 80, 81, 443, 999, 1023, 1024, 4095, 4096, 8080, 25565, 65535]
    for path in sets(tmp_path):
        rs = load_rules(path)
        det = Detector(rs)
        rules = det.rules
        for ip in ADDRESSES:
            ipaddress.ip_address(ip)
            raw = raw_address(ip)
            for index, field in ((det.src, "src"), (det.dst, "dst")):
                want = sum(1 << i for i, r in enumerate(rules)
                           if getattr(r, field) is None or getattr(r, field).contains(ip))
                assert index.lookup_home_raw(raw) == (want, rs.home_net.contains(ip)), (path.name, ip, field)
        for port in ports:
            for index, field in ((det.sport, "src_port"), (det.dport, "dst_port")):
                want = sum(1 << i for i, r in enumerate(rules)
                           if getattr(r, field) is None or getattr(r, field).contains(port))
                assert index.lookup(port) == want, (path.name, port, field)
