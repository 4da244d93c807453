"""A reload from monitor to enforce: flows monitor mode passed (their drop/reject only
alerted) take that verdict from their next packet, when the same rule (or the default
action) still gives it and is enforced now. Anything else keeps the flow as it was."""
import pytest

from replaykit import Capture, TcpConn
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "10.0.0.80"
DROP = "rules:\n  - {id: 7, action: drop, proto: tcp, dst_port: 8083}\n"
REJECT = DROP.replace("drop", "reject")


def packets(n=4):
    cap = Capture()
    c = TcpConn(cap, C, 40001, S, 8083)
    c.handshake()
    for _ in range(n):
        c.send(b"x")
    return [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]


def run(rules_file, before, after, mode_after="enforce"):
    """Monitor mode over the handshake and one segment, then the reload, then the rest.
    Returns (flows the reload enforced, the actions after it)."""
    pkts = packets()
    insp = Inspector(load_rules(rules_file(before)), Settings(mode="monitor", offload=True))
    first = [insp.process(p) for p in pkts[:4]]
    assert [v.action for v in first] == ["pass"] * 4
    assert insp.counters.would_block["drop"] + insp.counters.would_block["reject"] > 0
    # decided (final), passed, and kept by the worker: never offloaded (an enforcing reload
    # would not reach an offloaded one)
    assert first[-1].flow.final and not any(v.offload for v in first) and not first[-1].flow.offloaded
    enforced = insp.reload(load_rules(rules_file(after)), Settings(mode=mode_after))
    return enforced, [insp.process(p).action for p in pkts[4:]]


def test_the_same_rule_enforced_drops_the_flow(rules_file):
    enforced, after = run(rules_file, DROP, DROP)
    assert len(enforced) == 1 and enforced[0].verdict == "drop" and after == ["drop"] * 3


def test_a_reject_rule_enforced_answers_the_next_packet_then_drops(rules_file):
    # monitor mode sent no RST: the first packet after the enforcing reload gets the reject
    # (its answer), the rest are dropped as after any reject
    enforced, after = run(rules_file, REJECT, REJECT)
    assert [f.verdict for f in enforced] == ["reject"] and after == ["reject", "drop", "drop"]


def monitored_reject(rules_file, offload=False):
    """An Inspector that passed the reject flow in monitor mode (its first 4 packets), then
    was reloaded to enforce; returns it, what the reload enforced and the packets left."""
    pkts = packets()
    insp = Inspector(load_rules(rules_file(REJECT)), Settings(mode="monitor", offload=offload))
    assert not any(insp.process(p).offload for p in pkts[:4])        # monitor mode offloads none of it
    enforced = insp.reload(load_rules(rules_file(REJECT)), Settings(mode="enforce", offload=offload))
    return insp, enforced, pkts[4:]


def test_the_answered_packet_hands_the_flow_to_the_kernel_as_a_reject(rules_file):
    # offload on: the answer's verdict offloads the flow with the reject mark, as any reject
    # verdict does (live, the kernel then answers what the connection sends next) (review s7:
    # the replay tests read only the action)
    insp, _, rest = monitored_reject(rules_file, offload=True)
    got = [insp.process(p) for p in rest]
    assert [(v.action, v.offload) for v in got] == [("reject", True), ("drop", True), ("drop", True)]


def test_a_due_reject_outlives_a_second_reload(rules_file):
    # enforced by the first reload, answered on the flow's next packet even when another
    # reload came between (the second one no longer lists the flow: it is enforced already)
    insp, enforced, rest = monitored_reject(rules_file)
    assert len(enforced) == 1
    assert insp.reload(load_rules(rules_file(REJECT)), Settings(mode="enforce")) == []
    assert [insp.process(p).action for p in rest] == ["reject", "drop", "drop"]


def test_a_due_reject_is_forgotten_when_its_flow_ends(rules_file):
    # the reject waits for the flow's next packet, or its end: a flow that sends nothing more
    # is not held (a later connection on the same ports is a new flow: its own verdict)
    insp, enforced, rest = monitored_reject(rules_file)
    assert len(enforced) == 1 and len(insp._reject_due) == 1
    insp.tick(rest[0].ts + 7200)                 # idle past every timeout: the flow ends
    assert not insp.flows.flows and insp._reject_due == {}


def test_the_default_action_enforced_drops_the_flow(rules_file):
    rules = "default_action: drop\nrules:\n  - {id: 1, action: pass, proto: udp}\n"
    enforced, after = run(rules_file, rules, rules)
    assert len(enforced) == 1 and enforced[0].verdict_rule is None and after == ["drop"] * 3


@pytest.mark.parametrize("after_rules", [
    "rules:\n  - {id: 8, action: drop, proto: tcp, dst_port: 8083}\n",        # another rule: not its decision
    "rules:\n  - {id: 7, action: alert, proto: tcp, dst_port: 8083}\n",       # the rule no longer drops
    "rules:\n  - {id: 7, action: reject, proto: tcp, dst_port: 8083}\n",      # nor this way
    "rules:\n  - {id: 7, action: drop, proto: tcp, dst_port: 9999}\n",       # it matches another flow now
    "mode: monitor\n" + DROP,                                                  # its file still monitored
])
def test_a_flow_whose_rule_is_not_enforced_as_it_was_keeps_passing(rules_file, after_rules):
    enforced, after = run(rules_file, DROP, after_rules)
    assert enforced == [] and after == ["pass"] * 3


def test_a_rule_reloaded_with_only_its_message_changed_still_decides(rules_file):
    enforced, after = run(rules_file, DROP, DROP.replace("proto: tcp", "msg: renamed, severity: 1, proto: tcp"))
    assert len(enforced) == 1 and after == ["drop"] * 3


def test_enforcing_the_same_flow_is_offloaded_as_a_drop(rules_file):
    """The contrast to run(): enforce mode hands the decided flow to the kernel at once."""
    insp = Inspector(load_rules(rules_file(DROP)), Settings(mode="enforce", offload=True))
    assert [(v.action, v.offload) for v in map(insp.process, packets()[:2])] == [("drop", True)] * 2


def test_a_pass_rule_added_ahead_keeps_the_flow_passing(rules_file):
    """An exception made in monitor mode, then enforce: the flow the exception covers is
    not cut (a new connection like it is passed too)."""
    ahead = "rules:\n  - {id: 6, action: pass, proto: tcp, dst_port: 8083}\n" + DROP.split("rules:\n")[1]
    enforced, after = run(rules_file, DROP, ahead)
    assert enforced == [] and after == ["pass"] * 3
    default = "default_action: drop\nrules:\n  - {id: 1, action: pass, proto: udp}\n"
    enforced, after = run(rules_file, default, default + "  - {id: 2, action: pass, proto: tcp, dst_port: 8083}\n")
    assert enforced == [] and after == ["pass"] * 3


def test_a_rule_moved_to_another_line_or_revision_still_decides(rules_file):
    moved = "# a comment\n\nrules:\n  - {id: 7, rev: 3, action: drop, proto: tcp, dst_port: 8083}\n"
    enforced, after = run(rules_file, DROP, moved)
    assert len(enforced) == 1 and after == ["drop"] * 3


def test_staying_in_monitor_mode_enforces_nothing(rules_file):
    enforced, after = run(rules_file, DROP, DROP, mode_after="monitor")
    assert enforced == [] and after == ["pass"] * 3
