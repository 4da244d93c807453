"""Content keyword edges, through a loaded rule file and the real Inspector: `nocase` with
capitals in the rule's own value, and `depth` counted from a non-zero `offset`."""
from scapy.all import IP, UDP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector

RULES = """\
rules:
  - {id: 1, action: alert, proto: udp, content: {value: "EvIl.Example", nocase: true}}
  - {id: 2, action: alert, proto: udp, content: {value: "abc", offset: 4, depth: 3}}
"""


def alerts_for(tmp_path, payloads):
    """{payload: set of rule ids} with one UDP flow per payload."""
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    out = {}
    for i, payload in enumerate(payloads):
        wire = raw(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=20000 + i, dport=9999) / payload)
        out[payload] = {r.id for r in insp.process(decode_l3(wire, ts=1.0 + i)).alerts}
    return out


def test_nocase_rule_value_with_capitals_matches_any_case(tmp_path):
    # Both sides are folded: a rule written with capitals still matches lower/upper/mixed case.
    got = alerts_for(tmp_path, [b"q evil.example q", b"EVIL.EXAMPLE", b"eViL.eXaMpLe!", b"evil.exampl"])
    assert got == {b"q evil.example q": {1}, b"EVIL.EXAMPLE": {1}, b"eViL.eXaMpLe!": {1},
                   b"evil.exampl": set()}


def test_depth_counts_from_offset(tmp_path):
    # offset 4, depth 3: "abc" must lie within payload[4:7] -- not payload[0:3], not past 7.
    got = alerts_for(tmp_path, [b"xxxxabc", b"xxxxabcyy", b"xxxxxabc", b"xxxabcx", b"abcxxxx"])
    assert got == {b"xxxxabc": {2}, b"xxxxabcyy": {2}, b"xxxxxabc": set(), b"xxxabcx": set(),
                   b"abcxxxx": set()}
