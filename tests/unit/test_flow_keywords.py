"""The YAML keys of Suricata's flow-state keywords and header semantics: values parsed onto
the Rule, FILE:LINE problems for wrong ones (docs/rules.md "Flow state")."""
import re
import textwrap

import pytest

from appliance.detect.flowstate import FlowState
from appliance.detect.loader import check, load_rules
from appliance.detect.rule import DetectionFilter, FlowBit, FlowInt


def rule(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - " + text + "\n")
    [r] = load_rules(p).rules
    return r


def test_values(tmp_path):
    r = rule(tmp_path, "{id: 1, action: alert, proto: tcp, flowbits: [{set: 'a&b'}, {isset: 'c|d'}], "
                       "flowint: [{name: n, op: '+', value: 1}, {name: n, op: '>', value: m}], noalert: true, "
                       "detection_filter: {track: by_src, count: 2, seconds: 10}, target: src_ip, bypass: true}")
    assert r.flowbits == (FlowBit("set", ("a", "b")), FlowBit("isset", ("c", "d"), True))
    assert r.flowint == (FlowInt("n", "+", 1), FlowInt("n", ">", "m"))
    assert (r.noalert, r.target, r.bypass) == (True, "src_ip", True)
    assert r.detection_filter == DetectionFilter("by_src", 2, 10)
    r = rule(tmp_path, "{id: 2, action: drop, proto: [tcp, udp], dst_port: 53, header: packet, bidirectional: true}")
    assert (r.proto, r.protos, r.header, r.bidirectional) == (("tcp", "udp"), ("tcp", "udp"), "packet", True)
    assert rule(tmp_path, "{id: 3, action: alert, proto: [icmp]}").proto == "icmp"


@pytest.mark.parametrize("text,message", [
    ("{id: 1, action: alert, flowbits: [{sett: x}]}",
     "unknown flowbits operation 'sett' (did you mean 'set'?)"),
    ("{id: 1, action: alert, flowbits: [{set: 'a|b'}]}", "flowbits set 'a|b': | (any of) applies to isset/isnotset"),
    ("{id: 1, action: alert, flowbits: [{isset: 'a|b&c'}]}",
     "flowbits isset 'a|b&c': use either | (any) or & (all), not both"),
    ("{id: 1, action: alert, flowbits: [{set: x, isset: y}]}",
     "a flowbits item is one mapping of set/unset/toggle/isset/isnotset: name, got a mapping"),
    ("{id: 1, action: alert, flowint: [{name: n, op: '*', value: 2}]}",
     "flowint op must be one of =, +, -, ==, !=, <, <=, >, >=, isset, notset, got '*'"),
    ("{id: 1, action: alert, flowint: [{name: n, op: '+'}]}",
     "flowint + needs a value: an integer 0-4294967295 or another flowint's name, got nothing"),
    ("{id: 1, action: alert, flowint: [{name: n, op: isset, value: 1}]}", "flowint isset takes no value"),
    ("{id: 1, action: drop, noalert: true}", "noalert applies to alert rules (a drop rule decides the flow)"),
    ("{id: 1, action: alert, every_packet: maybe}", "every_packet must be true or false, got 'maybe'"),
    ("{id: 1, action: alert, header: packet}",
     "header applies to pass/drop/reject rules (an alert rule matches each packet's header)"),
    ("{id: 1, action: alert, target: dst_ip}",
     "target must be one of src_ip, dest_ip, got 'dst_ip' (did you mean 'dest_ip'?)"),
    ("{id: 1, action: alert, detection_filter: {track: by_src, count: 0, seconds: 1}}",
     "detection_filter count must be a positive integer, got number 0"),
    ("{id: 1, action: alert, proto: [ip, tcp]}",
     "proto ip is every protocol: write it alone, not in a list"),
    ("{id: 1, action: alert, proto: [tcp, tcp]}", "proto repeats tcp"),
    ("{id: 1, action: alert, proto: [tcp, icmp], dst_port: 80}",
     "dst_port needs proto tcp or udp (proto is tcp/icmp)"),
])
def test_problems(tmp_path, text, message):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - " + text + "\n")
    assert check(p) == [f"{p}:2: {message}"]


def test_flow_state_is_bounded_by_the_rule_set(tmp_path):
    """A flow holds at most the bits the rules name: one int whatever the traffic says."""
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n" + "".join(f"  - {{id: {i}, action: alert, flowbits: [{{set: b{i % 5}}}]}}\n"
                                      for i in range(1, 50)))
    assert len(FlowState(load_rules(p).rules).bit_no) == 5
