"""`overload:` (per-source new-flow limits before the queue): the config keys and the rule
the owned ruleset gets. The live behaviour (a flood, a client) is tests/netns/test_overload.py."""
import pytest

from appliance import netfilter
from appliance.config import ConfigError, Overload, load_config, reload_config

BASE = "interfaces: {outside: eth0, inside: eth1}\n"


def _load(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(BASE + text)
    return load_config(p)


def _problems(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    return e.value.problems


def test_overload_is_off_unless_configured_and_burst_defaults_to_the_rate(tmp_path):
    assert _load(tmp_path, "").overload is None
    assert _load(tmp_path, "overload: {new_flows_per_source: 200}\n").overload == Overload(200, 200)
    assert _load(tmp_path, "overload:\n  new_flows_per_source: 50\n  new_flows_burst: 400\n").overload == Overload(50, 400)


@pytest.mark.parametrize("text, line, words", [
    ("overload: {new_flows_per_source: 0}\n", 2, "overload.new_flows_per_source must be an integer from 1"),
    ("overload:\n  new_flows_per_source: 10\n  new_flows_burst: -1\n", 4, "overload.new_flows_burst must be"),
    ("overload:\n  new_flows_per_source: 10\n  burst: 3\n", 4, "unknown key overload.'burst'"),
    ("overload: {new_flows_burst: 3}\n", 2, "overload must be a mapping with new_flows_per_source"),
    ("overload: 100\n", 2, "overload must be a mapping"),
])
def test_bad_overload_settings_are_file_line_problems(tmp_path, text, line, words):
    got = _problems(tmp_path, text)
    assert any(p.startswith(f"{tmp_path / 'appliance.yaml'}:{line}: ") and words in p for p in got), got


def test_overload_needs_a_restart_the_kernel_ruleset_is_built_from_it(tmp_path):
    running = _load(tmp_path, "overload: {new_flows_per_source: 100}\n")
    (tmp_path / "appliance.yaml").write_text(BASE + "overload: {new_flows_per_source: 5}\n")
    cfg, changed = reload_config(running, running)
    assert changed == ["overload"] and cfg.overload == Overload(100, 100)


def test_the_source_limit_drops_new_flows_before_the_queue_after_the_mark_rules():
    for family, prefixes in ((4, (32, 32)), (6, (64, 128))):      # (outside, inside)
        rules = netfilter.chains_text(family, "eth0", "eth1", range(0, 2), True, 0x3000,
                                      overload=Overload(100, 300)).splitlines()
        limit = [i for i, r in enumerate(rules) if "-m hashlimit" in r]
        assert limit == list(range(limit[0], limit[0] + 4)), rules
        for (new, syn), side, name, prefix in ((rules[limit[0]:limit[0] + 2], "-i eth0 ", "out", prefixes[0]),
                                               (rules[limit[2]:limit[2] + 2], "-i eth1 ", "in", prefixes[1])):
            # what conntrack calls NEW, and a bare SYN on a 5-tuple it already knows: one bucket
            assert f"{side}-m conntrack --ctstate NEW -m hashlimit" in new
            assert f"{side}-p tcp --syn -m conntrack ! --ctstate NEW -m hashlimit" in syn
            assert new.split("-m hashlimit")[1] == syn.split("-m hashlimit")[1]
            assert "--hashlimit-above 100/sec" in new and "--hashlimit-burst 300" in new
            assert f"--hashlimit-srcmask {prefix}" in new and new.endswith("-j DROP")
            # each side its own table: what arrives outside is never charged to an inside host
            assert f"--hashlimit-name appliance-new{family}-{name} " in new
            assert "--hashlimit-htable-expire 3000" in new          # an idle source refills 300 at 100/s in 3 s
        assert "NFQUEUE" in rules[limit[3] + 1]                     # right before the queue ...
        assert "-m mark ! --mark 0x0/0x3000 -j DROP" in rules[limit[0] - 1]   # ... after the repeated packets
    plain = netfilter.chains_text(4, "eth0", "eth1", range(0, 2), True, 0x3000)
    stopped = netfilter.chains_text(4, "eth0", "eth1", range(0, 2), True, 0x3000, inspecting=False,
                                    overload=Overload(100, 300))
    assert "hashlimit" not in plain and "hashlimit" not in stopped


def test_the_limit_rules_are_counted_as_their_own_role_in_the_metrics():
    from appliance.control.kernel import rule_role
    for family in (4, 6):
        for rule in netfilter.source_limit_rules(family, Overload(10, 10), "eth0", "eth1"):
            assert rule_role(netfilter.INSPECT_CHAIN, rule.split(" ", 2)[2]) == "source_limited"
