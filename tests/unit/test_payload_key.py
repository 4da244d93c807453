"""The YAML `payload` key (packet | stream): what it refuses, as file:line problems."""
import pytest

from appliance.detect.loader import load_rules
from appliance.detect.rule import RuleError


@pytest.mark.parametrize("rule, problem", [
    ("{id: 1, action: alert, proto: tcp, content: a, payload: strem}",
     "payload must be one of packet, stream, both, got 'strem' (did you mean 'stream'?)"),
    ("{id: 1, action: alert, proto: tcp, payload: stream}",
     "payload: stream needs content or regex (it says what they read)"),
    ("{id: 1, action: alert, proto: udp, content: a, payload: stream}", "payload needs proto tcp (proto is udp)"),
    ("{id: 1, action: alert, proto: tcp, content: {value: a, offset: 2}, payload: stream}",
     "payload: stream: content with offset, depth, startswith, endswith or an absolute isdataat counts from "
     "a packet's start; the stream has none here (use distance/within)"),
    ("{id: 1, action: alert, proto: tcp, content: [a, {isdataat: 3}], payload: stream}",
     "payload: stream: content with offset, depth, startswith, endswith or an absolute isdataat counts from "
     "a packet's start; the stream has none here (use distance/within)"),
])
def test_problems(tmp_path, rule, problem):
    p = tmp_path / "r.yaml"
    p.write_text(f"rules:\n  - {rule}\n")
    with pytest.raises(RuleError) as e:
        load_rules(str(p))
    assert e.value.problems == [f"{p}:2: {problem}"]


def test_accepted(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("rules:\n  - {id: 1, action: drop, proto: tcp, content: [a, {value: b, distance: 0}], "
                 "regex: 'x+', payload: stream}\n  - {id: 2, action: alert, proto: tcp, content: a, payload: packet}\n")
    assert [r.payload for r in load_rules(str(p)).rules] == ["stream", "packet"]
