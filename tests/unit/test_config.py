import os

import pytest

from appliance.config import Aws, Config, ConfigError, Inspection, load_config, resolve_interfaces


def write(tmp_path, text, name="appliance.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    return e.value.problems


def test_full_config(tmp_path):
    cfg = load_config(write(tmp_path, """\
interfaces:
  outside: eth0
  inside: eth1
  management: eth2
rules: rules.d
eve: /var/log/x/eve.json
home_net: [10.0.0.0/8, "2001:db8::/32"]
workers: 4
queue_base: 10
failure_mode: closed
offload: false
inspection: {depth_packets: 8, depth_bytes: 4096, max_flows: 1000}
"""))
    assert cfg.outside == "eth0" and cfg.inside == "eth1" and cfg.management == "eth2"
    assert cfg.rules == str(tmp_path / "rules.d")          # relative to the config file
    assert cfg.eve == "/var/log/x/eve.json"
    assert cfg.home_net == ("10.0.0.0/8", "2001:db8::/32")
    assert cfg.workers == 4 and list(cfg.queues) == [10, 11, 12, 13]
    assert cfg.failure_mode == "closed" and not cfg.fail_open and cfg.offload is False
    assert cfg.inspection == Inspection(8, 4096, 1000)
    assert cfg.inspection.exception_policy == "drop"
    assert cfg.path == str(tmp_path / "appliance.yaml")


def test_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "interfaces: {outside: ens5, inside: ens6}\n"))
    assert cfg.workers == 2 and cfg.queue_base == 0 and cfg.fail_open and cfg.offload
    assert cfg.management is None and cfg.eve == "/var/log/appliance/eve.json"
    assert cfg.inspection == Inspection()
    assert load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\neve: null\n")).eve is None


def test_unknown_keys_with_suggestions_and_lines(tmp_path):
    p = problems(tmp_path, """\
interfaces:
  outside: eth0
  insde: eth1
wokers: 2
inspection:
  depth_packet: 3
""")
    path = str(tmp_path / "appliance.yaml")
    assert f"{path}:3: unknown key interfaces.'insde' (did you mean 'inside'?)" in p
    assert f"{path}:4: unknown key 'wokers' (did you mean 'workers'?)" in p
    assert f"{path}:6: unknown key inspection.'depth_packet' (did you mean 'depth_packets'?)" in p
    assert any(x.startswith(f"{path}:2: interfaces.inside is required") for x in p)


def test_bad_values_each_at_its_line(tmp_path):
    p = problems(tmp_path, """\
interfaces:
  outside: eth0
  inside: eth0
home_net: [10.0.0.0/8, nonsense]
workers: 0
failure_mode: opne
offload: yes please
inspection: {depth_packets: -1, exception_policy: pass}
""")
    text = "\n".join(p)
    path = str(tmp_path / "appliance.yaml")
    assert f"{path}:3: interfaces.inside is the same interface as interfaces.outside (eth0)" in p
    assert f"{path}:4: home_net: 'nonsense'" in text
    assert f"{path}:5: workers must be an integer from 1 to 64, got 0" in p
    assert f"{path}:6: failure_mode must be open or closed, got 'opne' (did you mean 'open'?)" in p
    assert f"{path}:7: offload must be true or false" in text
    assert f"{path}:8: inspection.depth_packets must be an integer" in text
    assert f"{path}:8: inspection.exception_policy: 'pass' is not one of drop, ignore" in p


def test_bad_interface_name_and_yaml_errors(tmp_path):
    p = problems(tmp_path, "interfaces: {outside: 'eth0; rm -rf /', inside: eth1}\n")
    assert "interfaces.outside: 'eth0; rm -rf /' is not an interface name" in p[0]
    p = problems(tmp_path, "interfaces: [\n")
    assert p[0].startswith(str(tmp_path / "appliance.yaml") + ":")
    p = problems(tmp_path, "- a\n- b\n")
    assert "expected a mapping" in p[0]
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "missing.yaml")
    assert "cannot read" in e.value.problems[0]


def test_resolve_auto_interfaces(tmp_path):
    cfg = load_config(write(tmp_path, "interfaces: {outside: auto, inside: auto}\n"))
    got = resolve_interfaces(cfg, discover=lambda cfg: {"outside": "ens5", "inside": "ens6"})
    assert (got.outside, got.inside) == ("ens5", "ens6")
    with pytest.raises(ConfigError) as e:
        resolve_interfaces(cfg, discover=lambda cfg: {"outside": "ens5"})
    assert "interfaces.inside: auto: discovery found no inside interface" in e.value.problems[0]

    def broken(cfg):
        raise RuntimeError("imds: no token")
    with pytest.raises(ConfigError) as e:
        resolve_interfaces(cfg, discover=broken)
    assert "discovery failed: imds: no token" in e.value.problems[0]
    # management: auto (the AMI's default) is optional: a 2-ENI instance has none; a named one must exist
    mgmt = load_config(write(tmp_path, "interfaces: {outside: auto, inside: auto, management: auto}\n"))
    got = resolve_interfaces(mgmt, discover=lambda cfg: {"outside": "ens5", "inside": "ens6"})
    assert (got.outside, got.inside, got.management) == ("ens5", "ens6", None)
    assert resolve_interfaces(mgmt, discover=lambda cfg: {"outside": "ens5", "inside": "ens6",
                                                          "management": "ens7"}).management == "ens7"
    named = load_config(write(tmp_path, "interfaces: {outside: auto, inside: auto, management: eni-0abc}\n"))
    with pytest.raises(ConfigError) as e:
        resolve_interfaces(named, discover=lambda cfg: {"outside": "ens5", "inside": "ens6"})
    assert "interfaces.management: auto: discovery found no management interface" in e.value.problems[0]
    plain = Config(outside="a", inside="b")
    assert resolve_interfaces(plain) is plain
    with pytest.raises(ConfigError) as e:
        resolve_interfaces(cfg)                 # auto, and no discovery handed in
    assert e.value.problems[0].endswith(":1: interfaces.outside: auto needs ENI discovery, "
                                        "which this command does not do")


def run_cli(*args):
    import subprocess, sys
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run([sys.executable, "-m", "appliance.run", *args], capture_output=True, text=True,
                          cwd=repo, env={**os.environ, "PYTHONPATH": repo})


def test_appliance_run_exits_2_with_file_line_problems(tmp_path):
    cfg = write(tmp_path, "interfaces: {outside: eth0, inside: eth1}\nworkrs: 2\n")
    r = run_cli("--config", str(cfg))
    assert r.returncode == 2
    assert f"{cfg}:2: unknown key 'workrs' (did you mean 'workers'?)" in r.stderr
    # a bad rule file is refused the same way, before anything is installed
    (tmp_path / "rules.yaml").write_text("rules:\n  - {id: 1, action: dorp}\n")
    cfg = write(tmp_path, "interfaces: {outside: eth0, inside: eth1}\nrules: rules.yaml\n")
    r = run_cli("--config", str(cfg), "--check")
    assert r.returncode == 2 and f"{tmp_path / 'rules.yaml'}:2:" in r.stderr
    (tmp_path / "rules.yaml").write_text("rules:\n  - {id: 1, action: drop, proto: tcp, dst_port: 23}\n")
    r = run_cli("--config", str(cfg), "--check")
    assert r.returncode == 0 and "1 rule(s)" in r.stdout


# One interface-name rule for `appliance run` (load_config) and the bootstrap's role
# assignment (aws/interfaces.py): what Linux and `ip link` take, nothing iptables reads as
# a pattern, and no "eth0:1" (an address label on eth0, not an interface).
@pytest.mark.parametrize("name,ok", [
    ("eth0", True), ("ens5", True), ("br-lan.10", True), ("veth_a@b", True), ("a" * 15, True),
    ("eth0:1", False), ("a" * 16, False), (".", False), ("..", False), ("eth 1", False),
    ("eth/1", False), ("eth+", False), ("!eth0", False), ("eth0\n", False), ("", False),
])
def test_interface_name_rule_is_the_same_for_run_and_bootstrap(tmp_path, name, ok):
    import json
    from appliance.aws.interfaces import selector_kind
    p = write(tmp_path, f"interfaces: {{outside: {json.dumps(name)}, inside: other0}}\n")   # JSON is YAML
    try:
        run_ok = load_config(p).outside == name
    except ConfigError as e:
        assert e.problems == [f"{p}:1: interfaces.outside: {name!r} is not an interface name "
                              "(1-15 characters of letters, digits, _ . @ -) or auto"]
        run_ok = False
    assert run_ok is ok
    assert (selector_kind(name) == "ifname") is ok


def test_aws_section(tmp_path):
    cfg = load_config(write(tmp_path, "interfaces: {outside: auto, inside: auto}\n"
                                      "aws: {source_dest_check: verify, status_file: /tmp/s.json, "
                                      "management_table: 42, interface_wait_seconds: 0.5}\n"))
    assert cfg.aws == Aws("verify", "/tmp/s.json", 42, 0.5)
    assert load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\naws: null\n")).aws == Aws()
    assert Aws() == Aws("disable", "/run/appliance/bootstrap.json", 100, 30)


def test_aws_problems_each_at_its_line_all_at_once(tmp_path):
    p = problems(tmp_path, """\
interfaces:
  outside: auto
  inside: null
aws:
  source_dest_check: disabled
  status_fil: /tmp/s.json
  management_table: 254
  interface_wait_seconds: -1
""")
    path = str(tmp_path / "appliance.yaml")
    assert p == [
        f"{path}:3: interfaces.inside cannot be null (an interface name or auto)",
        f"{path}:6: unknown key aws.'status_fil' (did you mean 'status_file'?)",
        f"{path}:5: aws.source_dest_check: 'disabled' is not one of disable, verify, ignore (did you mean 'disable'?)",
        f"{path}:7: aws.management_table must be an integer from 1 to 252, got 254",
        f"{path}:8: aws.interface_wait_seconds must be a number of seconds >= 0, got -1",
    ]
    assert problems(tmp_path, "interfaces: {outside: a, inside: b}\naws: [1]\n") == [
        f"{path}:2: aws must be a mapping of source_dest_check, status_file, management_table, interface_wait_seconds, "
        "config_source, ssm_path, ssm_dir"]


def test_aws_problem_reported_alike_by_load_config_run_check_and_bootstrap(tmp_path):
    import subprocess, sys
    cfg = write(tmp_path, "interfaces: {outside: auto, inside: auto}\n"
                          "aws:\n  source_dest_check: of\n  management_tabel: 7\n")
    expected = [f"{cfg}:3: aws.source_dest_check: 'of' is not one of disable, verify, ignore",
                f"{cfg}:4: unknown key aws.'management_tabel' (did you mean 'management_table'?)"]
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert sorted(e.value.problems) == expected
    r = run_cli("--config", str(cfg), "--check")
    assert r.returncode == 2 and sorted(r.stderr.splitlines()) == expected, r.stderr
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    r = subprocess.run([sys.executable, "-m", "appliance.aws.bootstrap", "--config", str(cfg), "--dry-run"],
                       capture_output=True, text=True, cwd=repo, env={**os.environ, "PYTHONPATH": repo})
    assert r.returncode == 2
    assert sorted(r.stderr.splitlines()) == [f"appliance bootstrap: {x}" for x in expected], r.stderr


def test_reading_the_config_needs_nothing_from_aws():
    """config.py is read by every command; AWS discovery is handed in (resolve_interfaces)."""
    import ast, pathlib
    import appliance.config
    tree = ast.parse(pathlib.Path(appliance.config.__file__).read_text())
    imported = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    imported += [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names]
    assert not [m for m in imported if m.startswith("appliance.aws")], imported


def test_mark_mask_default_avoids_known_users_and_is_checked(tmp_path):
    from appliance.config import DEFAULT_MARK_MASK, mark_mask_clashes
    base = "interfaces: {outside: eth0, inside: eth1}\n"
    assert load_config(write(tmp_path, base)).mark_mask == DEFAULT_MARK_MASK == 0x3000
    assert mark_mask_clashes(DEFAULT_MARK_MASK) == []
    assert mark_mask_clashes(0x300000) == ["Calico (0xffff0000)", "Cilium (0xffff0f00)", "Tailscale (0xff0000)"]
    assert load_config(write(tmp_path, base + "mark_mask: 0x60000000\n")).mark_mask == 0x60000000
    for bad in ("0x1000", "0x7000", "0", "0x100000000", "-3", "'0x3000'", "true"):
        p = problems(tmp_path, base + f"mark_mask: {bad}\n")
        assert len(p) == 1 and ":2: mark_mask must be a 32-bit mask with exactly two bits set" in p[0], p
def test_eve_rotation_settings(tmp_path):
    from appliance.config import EVE_KEEP, EVE_MAX_BYTES
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\neve: /var/log/x/eve.json\n"))
    assert (cfg.eve, cfg.eve_max_bytes, cfg.eve_keep) == ("/var/log/x/eve.json", EVE_MAX_BYTES, EVE_KEEP)
    assert EVE_MAX_BYTES and EVE_KEEP                       # bounded by default
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\n"
                                      "eve: {path: /var/log/x/eve.json, max_bytes: 64M, keep: 3}\n"))
    assert (cfg.eve, cfg.eve_max_bytes, cfg.eve_keep) == ("/var/log/x/eve.json", 64 << 20, 3)
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\neve: {path: null}\n"))
    assert cfg.eve is None


def test_eve_rotation_problems_are_file_line(tmp_path):
    found = problems(tmp_path, "interfaces: {outside: a, inside: b}\n"
                               "eve:\n  path: /x/eve.json\n  max_bytes: 12\n  keep: 0\n  max_byte: 1\n")
    p = str(tmp_path / "appliance.yaml")
    assert sorted(found) == sorted([
        f"{p}:6: unknown key eve.'max_byte' (did you mean 'max_bytes'?)",
        f"{p}:4: eve.max_bytes must be a size from 4096 bytes to 1 TiB (an integer, or like 100M / 1G), got 12",
        f"{p}:5: eve.keep must be an integer from 1 to 1000, got 0"])
    assert problems(tmp_path, "interfaces: {outside: a, inside: b}\neve: {max_bytes: 1G}\n") == [
        f"{p}:2: eve.path is required (the EVE JSON file, or null for none)"]


def test_eve_types(tmp_path):
    from appliance.output.eve import EVE_TYPES
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\neve: /x/eve.json\n"))
    assert cfg.eve_types == EVE_TYPES                       # default: every type
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\n"
                                      "eve: {path: /x/eve.json, types: [alert, dns, http]}\n"))
    assert cfg.eve_types == ("alert", "dns", "http")


def test_eve_types_problems_are_file_line(tmp_path):
    p = str(tmp_path / "appliance.yaml")
    found = problems(tmp_path, "interfaces: {outside: a, inside: b}\n"
                               "eve:\n  path: /x/eve.json\n  types:\n    - alert\n    - dnss\n")
    assert found == [f"{p}:6: eve.types: unknown event type 'dnss' (known: alert, anomaly, flow, stats, dns, tls, http)"]
    found = problems(tmp_path, "interfaces: {outside: a, inside: b}\neve: {path: /x/eve.json, types: dns}\n")
    assert found == [f"{p}:2: eve.types must be a list of event types (alert, anomaly, flow, stats, dns, tls, http), "
                     "got 'dns'"]


# -- control: the control-plane server's address ------------------------------------------

def test_control_absent_is_off_and_listen_is_parsed(tmp_path):
    assert load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\n")).control is None
    assert load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\ncontrol: null\n")).control is None
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\ncontrol: {listen: '[::1]:9911', top: 5}\n"))
    assert (cfg.control.host, cfg.control.port, cfg.control.top) == ("::1", 9911, 5)
    assert not cfg.control.allow_any_address
    cfg = load_config(write(tmp_path, "interfaces: {outside: a, inside: b}\ncontrol: {}\n"))
    assert (cfg.control.host, cfg.control.port) == ("127.0.0.1", 9900)


@pytest.mark.parametrize("listen", ["0.0.0.0:9900", "'[::]:9900'"])
def test_control_wildcard_refused_unless_allowed(tmp_path, listen):
    text = f"interfaces: {{outside: a, inside: b}}\ncontrol:\n  listen: {listen}\n"
    p = problems(tmp_path, text)
    assert len(p) == 1 and p[0].startswith(f"{tmp_path / 'appliance.yaml'}:3: control.listen: ")
    assert "listens on every interface" in p[0] and "allow_any_address" in p[0]
    cfg = load_config(write(tmp_path, text + "  allow_any_address: true\n"))
    assert cfg.control.allow_any_address and cfg.control.port == 9900


def test_control_bad_values_file_line(tmp_path):
    p = problems(tmp_path, """\
interfaces: {outside: a, inside: b}
control:
  listen: localhost:9900
  top: 0
  allow_any_address: yes please
  lisen: 1
""")
    f = tmp_path / "appliance.yaml"
    assert f"{f}:3: control.listen must be ADDRESS:PORT with an IP address" in "\n".join(p)
    assert f"{f}:4: control.top must be an integer from 1 to 1000, got 0" in p
    assert any(x.startswith(f"{f}:5: control.allow_any_address must be true or false") for x in p)
    assert any(x.startswith(f"{f}:6: unknown key control.'lisen'") for x in p)
    assert problems(tmp_path, "interfaces: {outside: a, inside: b}\ncontrol: 9900\n") == \
        [f"{f}:2: control must be a mapping of listen, allow_any_address, top, cloudwatch"]
    for bad in ("127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1", "1.2.3:80"):
        assert "control.listen must be" in problems(tmp_path, f"interfaces: {{outside: a, inside: b}}\n"
                                                              f"control: {{listen: '{bad}'}}\n")[0], bad


def test_control_is_restart_only(tmp_path):
    from appliance.config import reload_config
    p = write(tmp_path, "interfaces: {outside: a, inside: b}\ncontrol: {listen: 127.0.0.1:9900}\n")
    running = load_config(p)
    p.write_text("interfaces: {outside: a, inside: b}\ncontrol: {listen: 127.0.0.1:9901}\n")
    new, changed = reload_config(running, running)
    assert changed == ["control"] and new.control.port == 9900


def test_body_limits(tmp_path):
    from appliance.inspector import settings_from_config
    cfg = load_config(write(tmp_path, """\
interfaces: {outside: eth0, inside: eth1}
inspection:
  body_bytes: 65536
  body_ratio: 200
  body_flow_bytes: 4194304
  body_total_bytes: 8388608
"""))
    s = settings_from_config(cfg)
    assert (s.body_bytes, s.body_ratio, s.body_flow_bytes) == (65536, 200, 4194304)
    assert s.body_total_bytes == 8388608
    assert Inspection().body_bytes == 100 * 1024           # Suricata's response-body-limit
    p = problems(tmp_path, """\
interfaces: {outside: eth0, inside: eth1}
inspection:
  body_bytes: 0
  body_ratio: 1
  body_flow_bytes: lots
  body_total_bytes: 0
""")
    path = str(tmp_path / "appliance.yaml")
    assert f"{path}:3: inspection.body_bytes must be an integer from 1 to 67108864, got 0" in p
    assert f"{path}:4: inspection.body_ratio must be an integer from 2 to 1000000, got 1" in p
    assert f"{path}:5: inspection.body_flow_bytes must be an integer from 1 to 1073741824, got 'lots'" in p
    assert f"{path}:6: inspection.body_total_bytes must be an integer from 1 to 1099511627776, got 0" in p


GWLB_BASE = "interfaces: {outside: eth0, inside: eth1}\n"


def test_gwlb_offload_key(tmp_path):
    assert load_config(write(tmp_path, GWLB_BASE)).gwlb.offload is True
    assert load_config(write(tmp_path, GWLB_BASE + "gwlb:\n  offload: false\n")).gwlb.offload is False
    p = str(tmp_path / "appliance.yaml")
    assert problems(tmp_path, GWLB_BASE + "gwlb:\n  offload: maybe\n") == [
        f"{p}:3: gwlb.offload must be true or false, got 'maybe'"]
    assert problems(tmp_path, GWLB_BASE + "gwlb: [offload]\n")[0].startswith(f"{p}:2: gwlb must be a mapping")
    assert any(x.startswith(f"{p}:3:") and "offlaod" in x for x in problems(tmp_path, GWLB_BASE + "gwlb:\n  offlaod: true\n"))
