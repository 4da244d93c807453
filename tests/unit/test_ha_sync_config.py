"""`ha.sync`: the section, its problems at their FILE:LINE, and the conntrackd.conf made from it.
The daemon itself (and the mark reaching the peer) is tests/aws/test_ha_sync_netns.py."""
import pytest

from appliance.config import ConfigError, load_config
from appliance.ha.conntrackd import config_text, ignored_addresses, parse_stats

HEAD = "interfaces: {outside: eth0, inside: eth1, management: eth2}\n"
GOOD = """\
ha:
  listen: 10.0.2.11:7400
  peer: 10.0.2.12:7400
  check_listen: 10.0.1.11:7401
  check_peer: 10.0.1.12:7401
  secret: 0123456789abcdef0123
  route_tables: [rtb-0123456789abcdef0]
  eni: eni-0aaaaaaaaaaaaaaaa
  peer_eni: eni-0bbbbbbbbbbbbbbbb
  readyz: http://127.0.0.1:9900/readyz
  sync:
    interface: eth2
"""


def load(tmp_path, text):
    p = tmp_path / "appliance.yaml"
    p.write_text(HEAD + text)
    return load_config(p)


def problems(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text)
    return [p.split(":", 1)[1] for p in e.value.problems]


def test_defaults_follow_the_heartbeat_link(tmp_path):
    s = load(tmp_path, GOOD).ha.sync
    assert (s.address, s.peer, s.port, s.interface) == ("10.0.2.11", "10.0.2.12", 3780, "eth2")
    assert s.run_dir == "/run/appliance/conntrackd" and s.conntrackd == "conntrackd"
    assert load(tmp_path, GOOD.replace("  sync:\n    interface: eth2\n", "")).ha.sync is None
    assert load(tmp_path, GOOD + "    enabled: false\n").ha.sync is None
    s = load(tmp_path, GOOD + "    address: 10.9.0.1\n    peer: 10.9.0.2\n    port: 4000\n    run_dir: ctd\n").ha.sync
    assert (s.address, s.peer, s.port, s.run_dir) == ("10.9.0.1", "10.9.0.2", 4000, str(tmp_path / "ctd"))


@pytest.mark.parametrize("extra,expect", [
    ("    port: 0\n", "14: ha.sync.port must be a port number 1-65535, got number 0"),
    ("    peer: eth3\n", "14: ha.sync.peer must be an IP address, got 'eth3'"),
    ("    peer: fd00::2\n", "14: ha.sync.address and ha.sync.peer must both be IPv4 or both IPv6"),
    ("    peer: 10.0.2.11\n", "14: ha.sync.peer is ha.sync.address"),
    ("    enabled: yes please\n", "14: ha.sync.enabled must be true or false"),
    ("    run_dir: /run/my dir\n", "14: ha.sync.run_dir must be a path without spaces"),
    ("    intreface: eth2\n", "14: unknown key ha.sync.intreface (did you mean 'interface'?)"),
])
def test_problems_at_their_line(tmp_path, extra, expect):
    got = problems(tmp_path, GOOD + extra)
    assert any(p.startswith(expect) for p in got), got


def test_interface_required_and_checked(tmp_path):
    assert problems(tmp_path, GOOD.replace("    interface: eth2\n", "    port: 3781\n")) == [
        "12: ha.sync.interface is required (the management interface: conntrackd's UDP channel will not start "
        "without its name)"]
    assert problems(tmp_path, GOOD.replace("eth2\n", "'eth 2'\n")) == [
        "13: ha.sync.interface must be an interface name (1-15 characters of letters, digits, _ . @ -), "
        "got 'eth 2'"]
    assert problems(tmp_path, GOOD.replace("  sync:\n    interface: eth2\n", "  sync: on\n"))[0].startswith(
        "12: ha.sync must be a mapping of enabled, address, peer")


def test_conntrackd_conf_unicast_ftfw_without_our_own_traffic(tmp_path):
    ha = load(tmp_path, GOOD + "    run_dir: /run/x\n").ha
    text = config_text(ha)
    assert "Mode FTFW {" in text and "Multicast" not in text
    for line in ("PurgeTimeout 5", "IPv4_address 10.0.2.11", "IPv4_Destination_Address 10.0.2.12", "Port 3780", "Interface eth2",
                 "LockFile /run/x/conntrackd.lock", "Path /run/x/conntrackd.ctl"):
        assert f"\t{line}\n" in text, line
    # heartbeats, probes, the sync channel and loopback are the appliance's own, not the protected traffic
    assert ignored_addresses(ha) == ["10.0.1.11", "10.0.1.12", "10.0.2.11", "10.0.2.12", "127.0.0.1", "::1"]
    ignore = text.split("Address Ignore {")[1].split("}")[0]
    assert ignore.split() == ["IPv4_address", "10.0.1.11", "IPv4_address", "10.0.1.12", "IPv4_address",
                              "10.0.2.11", "IPv4_address", "10.0.2.12", "IPv4_address", "127.0.0.1",
                              "IPv6_address", "::1"]
    # offloaded flows are TCP, UDP and ICMP alike: all of them travel
    assert text.split("Protocol Accept {")[1].split("}")[0].split() == ["TCP", "UDP", "ICMP", "IPv6-ICMP"]
    # conntrackd's caches follow the kernel table (twice nf_conntrack_max: its manual)
    assert "\tHashLimit 131072\n" in text and "\tHashSize 32768\n" in text
    big = config_text(ha, table_max=4194304)
    assert "\tHashLimit 8388608\n" in big and "\tHashSize 1048576\n" in big
    v6 = load(tmp_path, GOOD + "    address: fd00::1\n    peer: fd00::2\n").ha
    assert "\tIPv6_address fd00::1\n" in config_text(v6) and "IPv6_Destination_Address fd00::2" in config_text(v6)


# `conntrackd -s` of conntrackd 1.4.7 (Debian 12), one entry synced
STATS = """\
cache internal:
current active connections:\t           1
connections created:\t\t           1\tfailed:\t           0
connections updated:\t\t           0\tfailed:\t           0
connections destroyed:\t\t           0\tfailed:\t           0

cache external:
current active connections:\t           3
connections created:\t\t           1\tfailed:\t           0

traffic processed:
                   0 Bytes                         0 Pckts

UDP traffic (active device=sync):
                  48 Bytes sent                  200 Bytes recv
                   3 Pckts sent                    4 Pckts recv
                   0 Error send                    0 Error recv

message tracking:
                   0 Malformed msgs                    2 Lost msgs
"""


def test_stats_parsed():
    assert parse_stats(STATS) == {
        "internal_entries": 1, "external_entries": 3, "sync_bytes_sent": 48, "sync_bytes_received": 200,
        "sync_packets_sent": 3, "sync_packets_received": 4, "sync_send_errors": 0, "sync_receive_errors": 0,
        "sync_malformed_messages": 0, "sync_lost_messages": 2}
    assert parse_stats("") == {} and parse_stats("garbage\n\x00 12 Bytes\n") == {}


def test_missing_binary_and_stale_lock_reported_not_raised(tmp_path):
    from dataclasses import replace
    from appliance.ha.conntrackd import Conntrackd
    ha = load(tmp_path, GOOD + f"    run_dir: {tmp_path / 'ctd'}\n    conntrackd: {tmp_path / 'no' / 'conntrackd'}\n").ha
    d = Conntrackd(ha)
    (tmp_path / "ctd").mkdir()
    (tmp_path / "ctd" / "conntrackd.lock").write_text("")      # left by a conntrackd that died
    ok, detail = d.start()
    assert not ok and detail.startswith(f"removed the stale lock {tmp_path / 'ctd' / 'conntrackd.lock'}; cannot start")
    assert not (tmp_path / "ctd" / "conntrackd.lock").exists()
    from appliance.ha.conntrackd import conntrack_max     # written before the start (the daemon reads it)
    assert (tmp_path / "ctd" / "conntrackd.conf").read_text() == config_text(ha, conntrack_max())
    assert d.run("-c") == (False, f"{tmp_path / 'no' / 'conntrackd'} not found: install the conntrackd package")
    assert d.counters() == {} and d.exited() is None
    from appliance.ha.conntrackd import _guard_jumps     # nothing to guard: the host's firewall untouched
    assert _guard_jumps(ha.sync) == []
    bad = Conntrackd(replace(ha, sync=replace(ha.sync, run_dir="/proc/no/such")))
    assert bad.start() == (False, "cannot write /proc/no/such/conntrackd.conf: No such file or directory")
