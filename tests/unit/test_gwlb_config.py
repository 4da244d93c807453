"""The `gwlb:` section of appliance.yaml: fleet mode's settings, problems as FILE:LINE."""
import pytest

from appliance.config import ConfigError, load_config, reload_config
from appliance.fleet.settings import Gwlb


def load(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(text)
    return load_config(p)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return e.value.problems


def test_fleet_config_needs_no_interfaces_and_has_the_documented_defaults(tmp_path):
    cfg = load(tmp_path, "gwlb:\n  senders: [10.0.1.0/24, 10.0.2.0/24]\n  health: 0.0.0.0:8080\n")
    g = cfg.gwlb
    assert g == Gwlb(senders=("10.0.1.0/24", "10.0.2.0/24"), health_host="0.0.0.0", health_port=8080)
    assert (g.listen, g.port, g.reply_port, g.workers, g.drain) == ("0.0.0.0", 6081, 6081, 2, 300)
    assert cfg.outside is None and cfg.inside is None


def test_every_key(tmp_path):
    g = load(tmp_path, """\
interfaces: {management: eth1}
gwlb:
  listen: 10.0.3.7:6082
  senders: 10.0.1.5
  reply_port: null
  workers: 4
  health: 10.0.3.7:80
  drain: 12.5
""").gwlb
    assert (g.listen, g.port, g.senders, g.reply_port, g.workers, g.health_port, g.drain) == \
        ("10.0.3.7", 6082, ("10.0.1.5/32",), None, 4, 80, 12.5)


def test_bad_values_are_reported_at_their_lines(tmp_path):
    p = problems(tmp_path, """\
gwlb:
  listen: eth0
  senders: [10.0.1.0/24, nonsense]
  reply_port: 70000
  workers: 0
  health: 8080
  drain: -1
  ofload: true
""")
    f = str(tmp_path / "appliance.yaml")
    for line, text in ((2, "gwlb.listen must be"), (3, "'nonsense' is not"), (4, "gwlb.reply_port"),
                       (5, "gwlb.workers"), (6, "gwlb.health must be"), (7, "gwlb.drain"), (8, "unknown key gwlb.ofload")):
        assert any(x.startswith(f"{f}:{line}: ") and text in x for x in p), (line, p)


def test_required_keys_and_the_inline_keys_that_mean_nothing_here(tmp_path):
    p = problems(tmp_path, """\
interfaces: {outside: eth0, inside: eth1}
workers: 2
control: {listen: 127.0.0.1:9900}
gwlb: {listen: 10.0.0.1}
overload: {new_flows_per_source: 100}
""")
    f = str(tmp_path / "appliance.yaml")
    assert any(x.startswith(f"{f}:1: interfaces.outside: not used with gwlb") for x in p), p
    assert any(x.startswith(f"{f}:2: workers: not used with gwlb: the GENEVE workers are gwlb.workers") for x in p)
    assert any(x.startswith(f"{f}:3: control: not used with gwlb") for x in p)
    assert any(x.startswith(f"{f}:4: gwlb.senders is required") for x in p)
    assert any(x.startswith(f"{f}:4: gwlb.health is required") for x in p)
    assert any(x.startswith(f"{f}:5: overload: not used with gwlb") for x in p), p


def test_inline_config_still_needs_its_interfaces(tmp_path):
    assert any("interfaces must be a mapping" in x for x in problems(tmp_path, "workers: 2\n"))


def test_a_changed_gwlb_section_needs_a_restart(tmp_path):
    cfg = load(tmp_path, "gwlb: {senders: 10.0.1.0/24, health: 0.0.0.0:8080}\n")
    (tmp_path / "appliance.yaml").write_text("gwlb: {senders: 10.0.9.0/24, health: 0.0.0.0:8080}\n")
    new, changed = reload_config(cfg, cfg)
    assert changed == ["gwlb"] and new.gwlb == cfg.gwlb


def test_offload_key(tmp_path):
    base = "gwlb:\n  senders: 10.0.1.0/24\n  health: 0.0.0.0:8080\n"
    assert load(tmp_path, base).gwlb.offload is True           # decided flows stay in the kernel by default
    assert load(tmp_path, base + "  offload: false\n").gwlb.offload is False
    f = str(tmp_path / "appliance.yaml")
    assert problems(tmp_path, base + "  offload: maybe\n") == [f"{f}:4: gwlb.offload must be true or false, got 'maybe'"]
    assert any(x.startswith(f"{f}:4:") and "offlaod" in x for x in problems(tmp_path, base + "  offlaod: true\n"))
