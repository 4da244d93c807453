"""Replay reproduces a live situation (`--config` takes run's settings) and survives what a
capture file can claim (absurd timestamps, any LINKTYPE_NULL value) without a traceback."""
import json
import struct

from scapy.all import IP, TCP, UDP

from replaykit import Capture, cli, l2
from appliance.decode import LINKTYPE_NULL, decode_frame
from appliance.output.eve import timestamp
from appliance.output.events import MAX_ENCAP_KINDS, Counters


def _events(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_replay_config_takes_inspection_settings_and_home_net(tmp_path, rules_file):
    """max_flows from the config's inspection section (3 flows in a 2-flow table: one is
    evicted) and home_net from the config (192.0.2.0/24 is no default home net)."""
    rules = rules_file("default_action: pass\nrules:\n  - {id: 1, action: alert, direction: inbound}\n")
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text(f"interfaces: {{outside: auto, inside: auto}}\nrules: {rules}\n"
                   "home_net: [192.0.2.0/24]\ninspection: {max_flows: 2, depth_packets: 4}\n")
    cap = Capture()
    for port in (1, 2, 3):
        cap.add(l2(IP(src="203.0.113.1", dst="192.0.2.10") / UDP(sport=port, dport=53)))
    pcap = cap.write(tmp_path / "a.pcap")
    eve = tmp_path / "eve.json"
    cp = cli("replay", pcap, "--config", cfg, "--eve", eve)
    assert cp.returncode == 0, cp.stderr
    evs = _events(eve)
    assert sorted(e["flow"]["reason"] for e in evs if e["event_type"] == "flow") == ["evicted", "shutdown", "shutdown"]
    assert sum(e["event_type"] == "alert" for e in evs) == 3          # inbound: the config's home_net
    # a flag still overrides the file
    cp = cli("replay", pcap, "--config", cfg, "--eve", eve, "--max-flows", "10")
    assert cp.returncode == 0, cp.stderr
    assert [e["flow"]["reason"] for e in _events(eve) if e["event_type"] == "flow"] == ["shutdown"] * 3


def test_replay_config_problems_are_file_line(tmp_path):
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text("interfaces: {outside: auto, inside: auto}\ninspection: {max_flows: 0}\n")
    cap = Capture()
    cap.add(l2(IP(src="203.0.113.1", dst="192.0.2.10") / UDP(sport=1, dport=53)))
    cp = cli("replay", cap.write(tmp_path / "a.pcap"), "--config", cfg)
    assert cp.returncode == 2 and "Traceback" not in cp.stderr
    assert cp.stderr.startswith(f"{cfg}:2: inspection.max_flows must be an integer"), cp.stderr


def _pcapng_block(btype, body):
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def test_pcapng_with_second_resolution_and_largest_timestamp(tmp_path, rules_file):
    """if_tsresol=0 (whole seconds) and a 2^64-1 timestamp: about 1.8e19 s, past what
    time.gmtime takes. The events show the latest time a four-digit year can, no traceback."""
    shb = _pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    tsresol = struct.pack("<HHB3x", 9, 1, 0) + struct.pack("<HH", 0, 0)
    idb = _pcapng_block(1, struct.pack("<HHI", 101, 0, 65535) + tsresol)        # LINKTYPE_RAW
    pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1234, dport=80, flags="S"))
    epb = _pcapng_block(6, struct.pack("<IIIII", 0, 0xFFFFFFFF, 0xFFFFFFFF, len(pkt), len(pkt)) + pkt)
    path = tmp_path / "big.pcapng"
    path.write_bytes(shb + idb + epb)
    eve = tmp_path / "eve.json"
    cp = cli("replay", path, "--rules", rules_file("rules: []\n"), "--eve", eve)
    assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr
    assert [e["timestamp"] for e in _events(eve)] == ["9999-12-31T23:59:59.000000+0000"] * 2   # flow, stats


def test_event_timestamps_are_total():
    assert timestamp(1e17) == "9999-12-31T23:59:59.000000+0000"
    assert timestamp(float("inf")) == "9999-12-31T23:59:59.000000+0000"
    assert timestamp(float("nan")) == timestamp(-5.0) == "1970-01-01T00:00:00.000000+0000"
    assert timestamp(1258832829.534255) == "2009-11-21T19:47:09.534255+0000"


def test_event_timestamps_follow_the_second_they_name():
    """timestamp() keeps the text of the last second it formatted: a call in another second,
    back and forth, or carried into the next by rounding, never shows a stale one."""
    assert timestamp(1258832829.5) == "2009-11-21T19:47:09.500000+0000"
    assert timestamp(1258832830.25) == "2009-11-21T19:47:10.250000+0000"
    assert timestamp(1258832829.75) == "2009-11-21T19:47:09.750000+0000"
    assert timestamp(1258832829.9999996) == "2009-11-21T19:47:10.000000+0000"   # rounds up a second
    assert timestamp(1258832829.1) == "2009-11-21T19:47:09.100000+0000"
    assert timestamp(float("nan")) == "1970-01-01T00:00:00.000000+0000"
    assert timestamp(1258832829.0) == "2009-11-21T19:47:09.000000+0000"


def test_encap_counter_is_bounded_on_odd_linktype_null_values():
    """Every LINKTYPE_NULL address family is its own "af-N" kind: 60,000 of them must not
    make 60,000 counter keys; the total stays exact."""
    c = Counters()
    for af in range(100, 60_100):
        c.count_packet(decode_frame(struct.pack("<I", af) + b"\0" * 20, LINKTYPE_NULL, 1.0))
    assert len(c.encap) <= MAX_ENCAP_KINDS + 1
    assert sum(c.encap.values()) == 60_000 and c.encap["af-other"] == 60_000 - MAX_ENCAP_KINDS
