"""Review (rvdec): a packet whose rule decided `drop` must be dropped even when writing its
events then fails (the error path): a final flow's verdict stands, the exception policy is for
flows whose verdict is still pending. On the branch, the error path answers a final flow with
settings.anomaly_action ("pass"): the very packet that matched the drop rule reaches the server."""
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

from tests.unit.test_decided_path import CLIENT, RULES, SERVER, FailsOnce, tcp


def run(tmp_path, action="drop", **settings):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + '  - {id: 3, action: %s, proto: tcp, dst_port: 8080, content: "evil"}\n' % action)
    insp = Inspector(load_rules(path), Settings(eve_types=("alert", "flow"), verify_checksums=False, **settings),
                     FailsOnce())
    insp.process(decode_l3(tcp("S", 100, 0, dport=8080), 1.0))
    insp.process(decode_l3(tcp("SA", 500, 101, SERVER, CLIENT, 8080, 40000), 1.1))
    insp.process(decode_l3(tcp("A", 101, 501, dport=8080), 1.2))
    v = insp.process(decode_l3(tcp("PA", 101, 501, dport=8080, payload=b"GET evil"), 1.3))
    assert insp.counters.internal_errors == 1 and v.flow.final and v.flow.verdict == action
    return insp, v


def test_the_packet_a_drop_rule_matched_is_dropped_though_its_alert_write_failed(tmp_path):
    insp, v = run(tmp_path)
    assert v.action == "drop" and not v.offload
    assert insp.counters.verdicts["pass"] == 3 and insp.counters.verdicts["drop"] == 1


def test_monitor_mode_says_what_it_would_have_done_on_the_failing_packet(tmp_path):
    insp, v = run(tmp_path, mode="monitor")
    assert v.action == "pass" and v.would == "drop"
    assert insp.counters.would_block == {"drop": 1, "reject": 0}     # counted once


def test_monitor_mode_says_a_reject_would_have_been_a_reject(tmp_path):
    insp, v = run(tmp_path, action="reject", mode="monitor")
    assert v.action == "pass" and v.would == "reject"
    assert insp.counters.would_block == {"drop": 0, "reject": 1}


def test_a_packet_the_error_path_answers_is_counted_once_with_its_final_answer(tmp_path):
    # an alert rule on a passed flow still inspected: its alert write fails, the exception
    # policy (drop) answers the packet; the stats count that packet once, as dropped
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + '  - {id: 4, action: alert, proto: tcp, dst_port: 80, content: "evil"}\n')
    rules = load_rules(path)
    insp = Inspector(rules, Settings(eve_types=("alert",), verify_checksums=False, exception_policy="drop"),
                     FailsOnce())
    insp.process(decode_l3(tcp("S", 100, 0, dport=80), 1.0))
    insp.process(decode_l3(tcp("SA", 500, 101, SERVER, CLIENT, 80, 40000), 1.1))
    insp.process(decode_l3(tcp("A", 101, 501, dport=80), 1.2))
    v = insp.process(decode_l3(tcp("PA", 101, 501, dport=80, payload=b"GET evil"), 1.3))
    assert insp.counters.internal_errors == 1 and v.action == "drop"
    assert insp.counters.pkts == 4
    assert insp.counters.verdicts["pass"] == 3 and insp.counters.verdicts["drop"] == 1
