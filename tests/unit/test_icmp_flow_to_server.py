"""Review (rvall): a slip in a review fix (07ae13f) made `flow: to_server` never hold on an ICMP/ICMPv6 flow
(engine.packet_match: `if not to_server or flow.proto == 1 or flow.proto == 58: return False`),
with no test or doc for it. An ICMP echo request from the initiator is to_server (flow._account,
Suricata's too): a drop rule written `flow: to_server` for it no longer matches, the default
action passes the packet (and, final, offloads the flow to the kernel)."""
from scapy.all import ICMP, IP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector

RULES = """\
rules:
  - {id: 1, action: drop, proto: icmp, flow: to_server, content: "evil"}
  - {id: 2, action: alert, proto: icmp, flow: to_server, content: "hello"}
"""


def _echo(src, dst, typ, data, ts):
    return decode_l3(raw(IP(src=src, dst=dst) / ICMP(type=typ, id=7, seq=1) / data), ts=ts)


def test_a_to_server_drop_rule_drops_the_echo_request_it_matches(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"evil", 1.0))
    assert v.action == "drop"


def test_a_to_server_alert_rule_fires_on_the_echo_request(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"hello", 1.0))
    assert [r.id for r in v.alerts] == [2]
