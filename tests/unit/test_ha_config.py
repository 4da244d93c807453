"""The `ha:` section: a full valid section, defaults, and each problem at its FILE:LINE."""
import pytest

from appliance.config import ConfigError, load_config
from appliance.ha.settings import Ha, read_secret

HEAD = "interfaces: {outside: eth0, inside: eth1, management: eth2}\n"
GOOD = """\
ha:
  listen: 10.0.2.11:7400
  peer: 10.0.2.12:7400
  check_listen: 10.0.1.11:7401
  check_peer: 10.0.1.12:7401
  secret: 0123456789abcdef0123
  route_tables: [rtb-0123456789abcdef0, rtb-11111111]
  eni: eni-0aaaaaaaaaaaaaaaa
  peer_eni: eni-0bbbbbbbbbbbbbbbb
  readyz: http://127.0.0.1:9900/readyz
"""


def load(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(HEAD + text)
    return load_config(p)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return [p.split(":", 1)[1] for p in e.value.problems]      # "LINE: message"


def test_full_section_and_defaults(tmp_path):
    ha = load(tmp_path, GOOD).ha
    assert ha.listen == "10.0.2.11:7400" and ha.check_peer == "10.0.1.12:7401"
    assert ha.route_tables == ("rtb-0123456789abcdef0", "rtb-11111111")
    assert (ha.interval, ha.dead_after, ha.hold_down, ha.preempt, ha.method) == (0.2, 1.0, 10.0, False, "routes")
    assert read_secret(ha) == b"0123456789abcdef0123"
    assert load(tmp_path, "").ha is None


def test_readyz_defaults_to_the_control_server(tmp_path):
    text = GOOD.replace("  readyz: http://127.0.0.1:9900/readyz\n", "") + "control: {listen: '[::1]:9911'}\n"
    assert load(tmp_path, text).ha.readyz == "http://[::1]:9911/readyz"
    assert problems(tmp_path, GOOD.replace("  readyz: http://127.0.0.1:9900/readyz\n", "")) == [
        "2: ha.readyz is required without a control: section (the health this instance reports is its "
        "datapath's /readyz)"]


@pytest.mark.parametrize("old,new,expect", [
    ("  listen: 10.0.2.11:7400\n", "  listen: eth2\n", "3: ha.listen must be ADDRESS:PORT with an IP address, got 'eth2'"),
    ("  check_peer: 10.0.1.12:7401", "  check_peer: 10.0.2.12:7400",
     "6: ha.check_peer must differ from ha.peer: the check is only independent over another network"),
    ("  secret: 0123456789abcdef0123", "  secret: short", "7: ha.secret must be a string of at least 16 bytes"),
    ("  secret: 0123456789abcdef0123", "  secret: x0123456789abcdef\n  secret_file: /etc/k",
     "2: ha needs exactly one of secret and secret_file"),
    ("  route_tables: [rtb-0123456789abcdef0, rtb-11111111]", "  route_tables: [rtb-0123456789abcdef0, vpc-1]",
     "8: ha.route_tables: 'vpc-1' is not a route table id (rtb-...)"),
    ("  route_tables: [rtb-0123456789abcdef0, rtb-11111111]", "  route_tables: []",
     "8: ha.route_tables must be a list of route table ids (rtb-...)"),
    ("  peer_eni: eni-0bbbbbbbbbbbbbbbb", "  peer_eni: eni-0aaaaaaaaaaaaaaaa", "10: ha.peer_eni is the same ENI"),
    ("  eni: eni-0aaaaaaaaaaaaaaaa", "  eni: i-0123", "9: ha.eni must be an ENI id (eni-...) or auto, got 'i-0123'"),
    ("  readyz: http://127.0.0.1:9900/readyz", "  readyz: ftp://x", "11: ha.readyz must be an http:// URL"),
    ("ha:\n", "ha:\n  interval: 0.5\n", "3: ha.dead_after (1s) must be at least 3 x ha.interval (0.5s)"),
    ("ha:\n", "ha:\n  dead_after: 0\n", "3: ha.dead_after must be a number of seconds from 0.1 to 60.0, got number 0"),
    ("ha:\n", "ha:\n  hold_down: yes\n", "3: ha.hold_down must be a number of seconds from 0.0 to 3600.0, got boolean"),
    ("ha:\n", "ha:\n  preempt: sometimes\n", "3: ha.preempt must be true or false, got 'sometimes'"),
    ("ha:\n", "ha:\n  method: vrrp\n", "3: ha.method must be one of routes, eip, eni, got 'vrrp'"),
    ("ha:\n", "ha:\n  dead_afer: 2\n", "3: unknown key ha.dead_afer (did you mean 'dead_after'?)"),
    # one template for both nodes: the sender id is the listen address (review "fleet": split brain)
    ("  listen: 10.0.2.11:7400", "  listen: 0.0.0.0:7400", "3: ha.listen must be a node's own address, not 0.0.0.0"),
    ("  check_listen: 10.0.1.11:7401", "  check_listen: '[::]:7401'", "5: ha.check_listen must be a node's own address"),
    ("  peer: 10.0.2.12:7400", "  peer: 10.0.2.11:7400", "4: ha.peer is ha.listen"),
    ("  check_peer: 10.0.1.12:7401", "  check_peer: 10.0.1.11:7401", "6: ha.check_peer is ha.check_listen"),
])
def test_problems_at_their_line(tmp_path, old, new, expect):
    assert old in GOOD
    got = problems(tmp_path, GOOD.replace(old, new))
    assert any(p.startswith(expect) for p in got), got


def test_required_keys_reported_each(tmp_path):
    got = problems(tmp_path, "ha: {secret: 0123456789abcdef0123, readyz: 'http://127.0.0.1:1/readyz'}\n")
    for k in ("listen", "peer", "check_listen", "check_peer", "route_tables", "eni", "peer_eni"):
        assert any(p.startswith(f"2: ha.{k} is required") for p in got), k
    assert problems(tmp_path, "ha: [1]\n") == [f"2: ha must be a mapping of {', '.join(f for f in Ha.__dataclass_fields__)}"]


def test_secret_file(tmp_path):
    key = tmp_path / "ha.key"
    ha = load(tmp_path, GOOD.replace("  secret: 0123456789abcdef0123", "  secret_file: ha.key")).ha
    assert ha.secret_file == str(key)                           # relative to the config file
    with pytest.raises(ValueError, match="ha.key: cannot read the HA secret"):
        read_secret(ha)
    key.write_text("short\n")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        read_secret(ha)
    key.write_text("a" * 64 + "\n")
    assert read_secret(ha) == b"a" * 64


def test_appliance_ha_refuses_a_bad_or_missing_section(tmp_path, capsys):
    from appliance.cli import main
    p = tmp_path / "appliance.yaml"
    p.write_text(HEAD)
    assert main(["ha", "--config", str(p)]) == 1
    assert f"{p}:1: no ha: section" in capsys.readouterr().err
    p.write_text(HEAD + GOOD.replace("  secret: 0123456789abcdef0123", "  secret: short"))
    assert main(["ha", "status", "--config", str(p)]) == 1
    assert f"{p}:7: ha.secret must be a string of at least 16 bytes" in capsys.readouterr().err
    p.write_text(HEAD + GOOD.replace("readyz", "status_file: " + str(tmp_path / "none.json") + "\n  readyz", 1))
    assert main(["ha", "status", "--config", str(p)]) == 1
    err = capsys.readouterr().err
    assert "none.json" in err and "is `appliance ha` running?" in err


EIP = GOOD.replace("  route_tables: [rtb-0123456789abcdef0, rtb-11111111]\n",
                   "  method: eip\n  eip: eipalloc-0123456789abcdef0\n")
ENI = GOOD.replace("  route_tables: [rtb-0123456789abcdef0, rtb-11111111]\n  eni: eni-0aaaaaaaaaaaaaaaa\n"
                   "  peer_eni: eni-0bbbbbbbbbbbbbbbb\n",
                   "  method: eni\n  floating_eni: eni-0cccccccccccccccc\n  floating_device_index: 2\n")


def test_eip_and_eni_methods(tmp_path):
    ha = load(tmp_path, EIP).ha
    assert (ha.method, ha.eip, ha.eni, ha.route_tables) == ("eip", "eipalloc-0123456789abcdef0",
                                                            "eni-0aaaaaaaaaaaaaaaa", ())
    ha = load(tmp_path, ENI).ha
    assert (ha.method, ha.floating_eni, ha.floating_device_index, ha.eni) == ("eni", "eni-0cccccccccccccccc", 2, "")
    auto = load(tmp_path, GOOD.replace("eni: eni-0aaaaaaaaaaaaaaaa", "eni: auto")
                .replace("peer_eni: eni-0bbbbbbbbbbbbbbbb", "peer_eni: auto")).ha
    assert (auto.eni, auto.peer_eni) == ("auto", "auto")


@pytest.mark.parametrize("text,expect", [
    (EIP.replace("  eip: eipalloc-0123456789abcdef0\n", ""), "2: ha.eip is required with ha.method eip"),
    (EIP.replace("eipalloc-0123456789abcdef0", "52.1.2.3"), "9: ha.eip must be an Elastic IP allocation id"),
    (EIP + "  route_tables: [rtb-11111111]\n", "13: ha.route_tables is not used by ha.method eip"),
    (EIP.replace("peer_eni: eni-0bbbbbbbbbbbbbbbb", "peer_eni: auto"), "11: ha.peer_eni: auto finds the peer's"),
    (ENI.replace("  floating_eni: eni-0cccccccccccccccc\n", ""), "2: ha.floating_eni is required with ha.method eni"),
    (ENI.replace("floating_eni: eni-0cccccccccccccccc", "floating_eni: auto"), "9: ha.floating_eni must be an ENI id"),
    (ENI.replace("floating_device_index: 2", "floating_device_index: 0"), "10: ha.floating_device_index must be"),
    (ENI + "  eni: eni-0aaaaaaaaaaaaaaaa\n", "12: ha.eni is not used by ha.method eni"),
    (GOOD + "  floating_device_index: 2\n", "12: ha.floating_device_index is not used by ha.method routes"),
])
def test_method_problems_at_their_line(tmp_path, text, expect):
    got = problems(tmp_path, text)
    assert any(p.startswith(expect) for p in got), got


def test_edge_route_pair(tmp_path):
    ha = load(tmp_path, GOOD + "  outside_eni: auto\n  peer_outside_eni: eni-0dddddddddddddddd\n").ha
    assert (ha.outside_eni, ha.peer_outside_eni) == ("auto", "eni-0dddddddddddddddd")
    assert any(p.startswith("12: ha.outside_eni and ha.peer_outside_eni go together")
               for p in problems(tmp_path, GOOD + "  outside_eni: eni-0dddddddddddddddd\n"))
    assert any(p.startswith("13: ha.peer_outside_eni is not used by ha.method eip")
               for p in problems(tmp_path, EIP + "  peer_outside_eni: eni-0dddddddddddddddd\n"))
