"""Header candidates by the address bytes (index.Prefixes, AddrIndex.lookup_raw,
AddrTrie.contains_raw) give exactly what the text lookups through pytricia gave: for every
shipped rule set and a hostile one (v4, v6, v4-mapped v6, /0, /32, /128, negated sets,
network and broadcast edges), over a hostile mix of addresses; the pure module and the
compiled twin alike."""
import ipaddress
import json
from pathlib import Path
from socket import AF_INET, AF_INET6, inet_pton

from twins import in_pure_python
from appliance.decode import decode_l3
from appliance.detect.engine import Detector
from appliance.detect.index import raw_address
from appliance.detect.loader import load_rules

ROOT = Path(__file__).resolve().parents[2]

HOSTILE = """\
vars:
  HOME_NET: [10.0.0.0/8, 192.168.1.255/32, "fd00::/8", "::ffff:172.16.0.0/108"]
rules:
  - {id: 1, action: alert, proto: ip, src: 0.0.0.0/0, dst: $HOME_NET}
  - {id: 2, action: alert, proto: ip, src: "!$HOME_NET", dst: 192.168.1.0/24}
  - {id: 3, action: drop, proto: tcp, src: 192.168.1.255/32, dst: "::/0"}
  - {id: 4, action: alert, proto: ip, src: "::ffff:10.0.0.0/104", dst: "2001:db8::1/128"}
  - {id: 5, action: pass, proto: ip, src: [10.1.0.0/16, 10.1.2.0/24, 10.1.2.3/32], dst: "![10.0.0.0/8, fd00::/8]"}
  - {id: 6, action: alert, proto: ip, src: "!::/0", dst: "!0.0.0.0/0"}
  - {id: 7, action: alert, proto: ip, src: [255.255.255.255/32, 0.0.0.0/32], dst: "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}
"""

ADDRESSES = [
    "0.0.0.0", "255.255.255.255", "10.0.0.0", "10.255.255.255", "11.0.0.0", "9.255.255.255",
    "10.1.2.3", "10.1.2.4", "10.1.2.255", "10.1.3.0", "192.168.1.0", "192.168.1.255", "192.168.2.0",
    "172.16.0.1", "172.31.255.255", "172.32.0.0", "127.0.0.1", "224.0.0.1", "8.8.8.8",
    "::", "::1", "fd00::", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "fe00::", "fc00::1",
    "2001:db8::1", "2001:db8::2", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "::ffff:10.0.0.1", "::ffff:10.1.2.3", "::ffff:172.16.0.1", "::ffff:172.16.15.255", "::ffff:172.17.0.0",
    "::ffff:0.0.0.0", "::10.0.0.1", "64:ff9b::10.0.0.1", "fd00:10:2::5", "10.10.2.7", "fd00:10:2::",
]


def rule_files(tmp):
    files = sorted(p for p in (ROOT / "rules").rglob("*.yaml") if ".test." not in p.name)
    hostile = Path(tmp) / "hostile.yaml"
    hostile.write_text(HOSTILE)
    return files + [hostile]


def answers(tmp):
    """Every rule set's text lookups and raw lookups, per address: [(file, addr, text, raw)]"""
    out = []
    for path in rule_files(tmp):
        det = Detector(load_rules(path))
        for ip in ADDRESSES + ["", "not-an-address", "1.2.3", "::g"]:
            raw = raw_address(ip)
            by_text = [str(det.src.lookup(ip)), str(det.dst.lookup(ip)), det.home.contains(ip)]
            by_raw = [str(det.src.lookup_raw(raw)), str(det.dst.lookup_raw(raw)), det.in_home(ip, raw)]
            out.append([path.name, ip, by_text, by_raw])
    return out


def test_raw_lookups_answer_as_the_text_lookups(tmp_path):
    got = answers(tmp_path)
    assert len({f for f, *_ in got}) >= 5
    wrong = [(f, ip, t, r) for f, ip, t, r in got if t != r]
    assert not wrong
    # the hostile set's lookups are not all trivially empty
    assert {t[0] for f, ip, t, r in got if f == "hostile.yaml"} != {"0"}


def test_pure_and_compiled_raw_lookups_agree(tmp_path):
    here = answers(tmp_path)
    pure = in_pure_python("tests.unit.test_raw_address_candidates", "answers", tmp_path)
    assert pure == json.loads(json.dumps(here))


def test_raw_address_is_the_header_bytes():
    assert raw_address("10.0.0.1") == inet_pton(AF_INET, "10.0.0.1")
    assert raw_address("::ffff:10.0.0.1") == inet_pton(AF_INET6, "::ffff:10.0.0.1")
    assert raw_address("10.0.0") == b"" and raw_address("") == b""
    assert raw_address(str(ipaddress.ip_address("2001:db8::1"))) == ipaddress.ip_address("2001:db8::1").packed


def test_a_packet_without_raw_addresses_gets_the_same_candidates(tmp_path):
    """A packet made by hand (no decode): its text is turned into the bytes."""
    from scapy.all import IP, TCP, raw
    from appliance.detect.engine import _Swapped
    det = Detector(load_rules(rule_files(tmp_path)[-1]))
    for src, dst in (("10.1.2.3", "192.168.1.7"), ("192.168.1.255", "10.0.0.1")):
        pkt = decode_l3(raw(IP(src=src, dst=dst) / TCP(sport=1234, dport=80, flags="S")), ts=1.0)
        with_raw = det._header(pkt, "any")
        pkt.src_raw = pkt.dst_raw = b""
        assert det._header(pkt, "any") == with_raw and with_raw
        assert det._header(_Swapped(pkt), "any") == det._header(_Swapped(decode_l3(
            raw(IP(src=src, dst=dst) / TCP(sport=1234, dport=80, flags="S")), ts=1.0)), "any")
