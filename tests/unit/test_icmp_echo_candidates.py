"""Review (rvhot3) finding: the reverse direction's candidates are now looked up from the first
to_client packet's own header. For an ICMP echo flow a packet is to_client by its type
(flow._account), so an echo *reply* from the initiator (same id) is "to_client" with the
initiator's header: it fills flow.cand_tc with the forward orientation, and the
responder's real replies are then never checked against the rules written for them."""
from scapy.all import ICMP, IP, raw

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector

RULES = """\
rules:
  - {id: 1, action: alert, proto: icmp, src: 10.0.0.1, dst: 10.0.0.2, content: "hello"}
  - {id: 2, action: alert, proto: icmp, src: 10.0.0.2, dst: 10.0.0.1, content: "evil"}
  - {id: 3, action: pass, proto: icmp}
"""


def _echo(src, dst, typ, data, ts):
    return decode_l3(raw(IP(src=src, dst=dst) / ICMP(type=typ, id=7, seq=1) / data), ts=ts)


def test_initiators_echo_reply_does_not_blind_the_responders_rules(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"ping", 1.0))        # request: to_server
    assert v.flow is not None and not v.flow.final
    # the initiator sends an echo reply on the same id: to_client by its type
    insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"x", 1.1))
    # the responder's reply, which rule 2 is written for
    v = insp.process(_echo("10.0.0.2", "10.0.0.1", 0, b"evil", 1.2))
    assert [r.id for r in v.alerts] == [2]


def test_to_client_candidates_are_the_flows_reverse_whatever_packet_fills_them(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    flow = insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"ping", 1.0)).flow
    insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"x", 1.1))
    assert flow.cand_tc & 2 and not flow.cand_tc & 1                         # rule 2 (bit 1), not rule 1


PENDING = """\
rules:
  - {id: 4, action: drop, proto: icmp, src: 10.0.0.1, dst: 10.0.0.2, content: "zzz"}
  - {id: 1, action: alert, proto: icmp, src: 10.0.0.1, dst: 10.0.0.2, content: "hello"}
  - {id: 2, action: alert, proto: icmp, src: 10.0.0.2, dst: 10.0.0.1, content: "evil"}
  - {id: 3, action: pass, proto: icmp}
"""


def test_the_same_while_the_verdict_is_pending(tmp_path):
    # (main had this one too: a pending verdict never asked more_to_inspect on packet 1)
    path = tmp_path / "rules.yaml"
    path.write_text(PENDING)
    insp = Inspector(load_rules(path))
    assert insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"ping", 1.0)).flow.verdict is None
    insp.process(_echo("10.0.0.1", "10.0.0.2", 0, b"x", 1.1))
    v = insp.process(_echo("10.0.0.2", "10.0.0.1", 0, b"evil", 1.2))
    assert [r.id for r in v.alerts] == [2]


def test_a_responders_echo_request_after_a_reload_does_not_blind_the_initiators_rules(tmp_path):
    # a reload clears the candidate caches; a request the responder sends is to_client (only
    # the initiator's end is to_server, flow._account): the to_server cache stays the flow's
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    insp = Inspector(load_rules(path))
    insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"ping", 1.0))
    insp.reload(load_rules(path))
    insp.process(_echo("10.0.0.2", "10.0.0.1", 8, b"x", 1.1))
    v = insp.process(_echo("10.0.0.1", "10.0.0.2", 8, b"hello", 1.2))
    assert [r.id for r in v.alerts] == [1]
