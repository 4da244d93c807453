"""`overload.synproxy` (the kernel's SYN proxy in front of inside ports): the config keys, and
the rule the owned ruleset gets. What crosses FORWARD for a proxied connection, and the
worker following it, are tests/unit/test_synproxy_flow.py and tests/netns/test_synproxy.py."""
import pytest

from appliance import netfilter
from appliance.config import ConfigError, Overload, Synproxy, load_config
from appliance.control.kernel import rule_role

BASE = "interfaces: {outside: eth0, inside: eth1}\n"


def _load(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(BASE + text)
    return load_config(p)


def test_synproxy_is_off_by_default_and_needs_no_per_source_limit(tmp_path):
    assert _load(tmp_path, "overload: {new_flows_per_source: 20}\n").overload.synproxy is None
    ov = _load(tmp_path, "overload:\n  synproxy: {ports: [443, 80, 80]}\n").overload
    assert ov == Overload(None, None, Synproxy((80, 443), 1460, 7))
    ov = _load(tmp_path, "overload:\n  new_flows_per_source: 5\n  synproxy: {ports: [22], mss: 1440, wscale: 10}\n")
    assert ov.overload == Overload(5, 5, Synproxy((22,), 1440, 10))


@pytest.mark.parametrize("text, line, words", [
    ("overload:\n  synproxy: true\n", 3, "overload.synproxy must be a mapping with ports"),
    ("overload:\n  synproxy: {mss: 1460}\n", 3, "overload.synproxy must be a mapping with ports"),
    ("overload:\n  synproxy:\n    ports: [0]\n", 4, "overload.synproxy.ports must be a list of 1 to 15"),
    ("overload:\n  synproxy:\n    ports: 80\n", 4, "overload.synproxy.ports must be a list"),
    ("overload:\n  synproxy:\n    ports: [" + ", ".join(map(str, range(1, 17))) + "]\n", 4, "1 to 15"),
    ("overload:\n  synproxy:\n    ports: [80]\n    wscale: 15\n", 5, "overload.synproxy.wscale must be an integer"),
    ("overload:\n  synproxy:\n    ports: [80]\n    mss: 100\n", 5, "overload.synproxy.mss must be an integer"),
    ("overload:\n  synproxy:\n    ports: [80]\n    sack: no\n", 5, "unknown key overload.synproxy.'sack'"),
    ("overload:\n  new_flows_burst: 3\n  synproxy: {ports: [80]}\n", 3, "new_flows_burst needs new_flows_per_source"),
])
def test_bad_synproxy_settings_are_file_line_problems(tmp_path, text, line, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    got = e.value.problems
    assert any(p.startswith(f"{tmp_path / 'appliance.yaml'}:{line}: ") and words in p for p in got), got


def test_the_proxy_comes_before_the_invalid_drop_and_stays_in_an_open_mode_stop():
    ov = Overload(None, None, Synproxy((80, 443), 1460, 7))
    for inspecting in (True, False):
        rules = netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000, inspecting, ov).splitlines()
        proxy = [i for i, r in enumerate(rules) if "SYNPROXY" in r]
        assert len(proxy) == 1, rules
        r = rules[proxy[0]]
        # from outside only, the cookie ACK is INVALID to conntrack (NEW with tcp_loose)
        assert "-i eth0 -p tcp -m multiport --dports 80,443 -m conntrack --ctstate NEW,INVALID,UNTRACKED" in r
        assert r.endswith("-j SYNPROXY --sack-perm --timestamp --wscale 7 --mss 1460")
        assert "--ctstate INVALID -j DROP" in rules[proxy[0] + 1]
        assert "hashlimit" not in "".join(rules)        # no per-source limit configured
    assert rule_role(netfilter.INSPECT_CHAIN, r.split(" ", 2)[2]) == "synproxied"
    # before conntrack, the same SYNs untracked (netfilter.synproxy_raw_rules)
    assert netfilter.synproxy_raw_rules(ov.synproxy, "eth0") == [
        "-A APPLIANCE-SYNPROXY -i eth0 -p tcp -m multiport --dports 80,443 --syn -m addrtype ! --dst-type LOCAL -j CT --notrack"]
    assert "SYNPROXY" not in netfilter.chains_text(4, "eth0", "eth1", range(0, 1), True, 0x3000,
                                                   overload=Overload(10, 10))


def test_the_workers_know_which_server_ports_are_behind_the_proxy(tmp_path):
    """The Inspector reads those ports' client ACKs from the cookie (flow.TcpReceiver.ack_offset)."""
    from appliance.inspector import Inspector, settings_from_config
    from appliance.detect.loader import load_rules
    cfg = _load(tmp_path, "overload:\n  synproxy: {ports: [443, 80]}\n")
    s = settings_from_config(cfg)
    assert s.synproxy_ports == {80, 443}
    (tmp_path / "r.yaml").write_text("rules: []\n")
    assert Inspector(load_rules(str(tmp_path / "r.yaml")), s).flows.proxied_ports == {80, 443}
    assert settings_from_config(_load(tmp_path, "")).synproxy_ports == frozenset()
