"""Review (rvall): since 07ae13f the to_client candidates are the flow's reverse header, whatever
the packet's own header. An ICMP echo packet is to_client by its *type* (flow._account), so an
echo reply the initiator sends (10.0.0.1 -> 10.0.0.2) is now matched against the rules written
for 10.0.0.2 -> 10.0.0.1: the rule written for its real addresses is blind to it (an ICMP
tunnel from the initiator hides its payload in type-0 packets), and a rule for the other
direction fires on a packet that never came from there (the alert names the wrong sender)."""
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector

from tests.unit.test_icmp_echo_candidates import RULES, _echo


def _insp(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    assert not insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"ping", 1.0)).flow.final
    return insp


def test_the_initiators_echo_reply_is_seen_by_the_rule_for_its_own_addresses(tmp_path):
    insp = _insp(tmp_path)
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"hello", 1.1))
    assert [r.id for r in v.alerts] == [1]


def test_a_rule_for_the_other_direction_does_not_fire_on_the_initiators_echo_reply(tmp_path):
    insp = _insp(tmp_path)
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"evil", 1.1))
    assert [r.id for r in v.alerts] == []


def test_the_responders_reply_still_sees_its_rules(tmp_path):
    insp = _insp(tmp_path)
    insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"x", 1.1))
    v = insp.process(_echo("10.0.0.2", "10.0.0.1", 0, b"evil", 1.2))
    assert [r.id for r in v.alerts] == [2]
