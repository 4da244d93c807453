"""control.cloudwatch keys, checked as FILE:LINE (the publisher itself: tests/netns/test_cloudwatch.py)."""
import pytest

from appliance.config import ConfigError, load_config


@pytest.mark.parametrize("text,msg", [
    ("control: {cloudwatch: {interval: 0}}", "2: control.cloudwatch.interval must be an integer from 1 to 3600"),
    ("control: {cloudwatch: {namespace: AWS/NATGateway}}", "2: control.cloudwatch.namespace must be"),
    ("control: {cloudwatch: {name: x}}", "2: unknown key control.cloudwatch.'name'"),
    ("control: {cloudwatch: yes please}", "2: control.cloudwatch must be true or a mapping"),
])
def test_cloudwatch_config_problems_are_file_line(tmp_path, text, msg):
    p = tmp_path / "a.yaml"
    p.write_text("interfaces: {outside: a, inside: b}\n" + text + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert any(x.startswith(f"{p}:{msg}") for x in e.value.problems), e.value.problems


def test_cloudwatch_config_on_and_off(tmp_path):
    p = tmp_path / "a.yaml"
    p.write_text("interfaces: {outside: a, inside: b}\ncontrol: {cloudwatch: true}\n")
    assert load_config(p).control.cloudwatch.interval == 60
    p.write_text("interfaces: {outside: a, inside: b}\ncontrol: {}\n")
    assert load_config(p).control.cloudwatch is None
