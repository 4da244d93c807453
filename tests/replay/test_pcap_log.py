"""`appliance replay --pcap-log DIR` (and the config's pcap_log): the packets of flows that
alerted or were dropped, each with the EVE flow_id in its pcapng comment, so an alert leads
to its packets; the packets before the alert from the flow's ring (bounded); flows without
an alert or drop absent in `alerts` mode, every packet in `all`; rotation bounded."""
import json
import os
import shutil
import subprocess

import pytest
from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, cli, dns_query, l2

RULES = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: "bad host", http_host: blocked.test}
  - {id: 2, action: drop, msg: "evil name", dns_query: evil.example}
"""


def tshark(path, *fields):
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed (dev/setup.sh)")
    args = [a for f in fields for a in ("-e", f)]
    r = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|", *args],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("|") for line in r.stdout.splitlines()]


def capture():
    """An alerted HTTP flow (8 packets, the alert on the 4th), a quiet HTTP flow, a dropped
    DNS query and a passed one."""
    cap = Capture()
    h = TcpConn(cap, "10.0.0.1", 40001, "10.0.0.80", 80)
    h.handshake()
    h.send(b"GET /a HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
    h.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    h.close()
    q = TcpConn(cap, "10.0.0.1", 40002, "10.0.0.80", 80)
    q.handshake()
    q.send(b"GET /b HTTP/1.1\r\nHost: ok.test\r\n\r\n")
    q.close()
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5000, dport=53) / Raw(dns_query(["evil.example"]))))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5001, dport=53) / Raw(dns_query(["ok.test"]))))
    return cap


def replay(tmp_path, cap, *flags, rules=RULES):
    (tmp_path / "rules.yaml").write_text(rules)
    pcap = cap.write(tmp_path / "in.pcap")
    r = cli("replay", pcap, "--rules", tmp_path / "rules.yaml", "--eve", tmp_path / "eve.json", *flags)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in (tmp_path / "eve.json").read_text().splitlines()]


def test_alerted_and_dropped_flows_in_the_log_with_the_eve_flow_id(tmp_path):
    events = replay(tmp_path, capture(), "--pcap-log", tmp_path / "pl")
    alerts = {e["alert"]["signature_id"]: e for e in events if e["event_type"] == "alert"}
    assert set(alerts) == {1, 2}
    rows = tshark(tmp_path / "pl" / "replay.pcapng", "frame.comment", "ip.src", "tcp.srcport", "tcp.dstport",
                  "udp.srcport")
    by_flow = {}
    for comment, *rest in rows:
        by_flow.setdefault(comment, []).append(rest)
    # an EVE alert leads to its packets: `frame.comment == "flow_id=N"`
    http = by_flow.pop(f"flow_id={alerts[1]['flow_id']}")
    assert len(http) == 8                     # the whole connection: its ring (before the alert) and after
    assert {r[2] for r in http if r[0] == "10.0.0.1"} == {"80"}
    dns = by_flow.pop(f"flow_id={alerts[2]['flow_id']}")
    assert dns == [["10.0.0.1", "", "", "5000"]]
    assert by_flow == {}                      # the quiet HTTP flow and the passed DNS query are not there
    stats = events[-1]["stats"]["appliance"]["pcap_log"]
    assert stats == {"written": 9, "lost": 0, "rotations": 0, "rings_dropped": 0}


def test_the_ring_keeps_only_the_last_packets_before_the_alert(tmp_path):
    (tmp_path / "appliance.yaml").write_text(
        "interfaces: {outside: eth0, inside: eth1}\nrules: rules.yaml\n"
        "pcap_log: {dir: pl, ring_packets: 2}\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    events = replay(tmp_path, capture(), "--config", tmp_path / "appliance.yaml")
    alert = next(e for e in events if e["event_type"] == "alert" and e["alert"]["signature_id"] == 1)
    rows = tshark(tmp_path / "pl" / "replay.pcapng", "frame.comment", "tcp.flags")
    http = [r[1] for r in rows if r[0] == f"flow_id={alert['flow_id']}"]
    # SYN, SYN/ACK, ACK, the request (alert): the ring held the last two before the request
    assert len(http) == 2 + 1 + 4
    assert [int(f, 16) for f in http[:3]] == [0x12, 0x10, 0x18]     # SYN/ACK, ACK, the request; no SYN


def test_mode_all_logs_every_packet(tmp_path):
    cap = capture()
    replay(tmp_path, cap, "--pcap-log", tmp_path / "pl", "--pcap-log-mode", "all")
    rows = tshark(tmp_path / "pl" / "replay.pcapng", "frame.comment")
    assert len(rows) == len(cap.frames)
    assert len({r[0] for r in rows}) == 4     # four flows, each with its own flow_id


def test_rotation_bound_respected(tmp_path):
    cap = Capture()
    for i in range(40):                       # 40 alerted flows of 1400-byte packets: ~400 KB of log
        h = TcpConn(cap, "10.0.0.1", 41000 + i, "10.0.0.80", 80)
        h.handshake()
        h.send(b"GET /a HTTP/1.1\r\nHost: blocked.test\r\n\r\n")
        for _ in range(6):
            h.recv(b"x" * 1400)
        h.close()
    (tmp_path / "appliance.yaml").write_text(
        "interfaces: {outside: eth0, inside: eth1}\nrules: rules.yaml\n"
        "pcap_log: {dir: pl, max_bytes: 64K, keep: 2}\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    events = replay(tmp_path, cap, "--config", tmp_path / "appliance.yaml")
    names = sorted(os.listdir(tmp_path / "pl"))
    assert names == ["replay.1.pcapng", "replay.2.pcapng", "replay.pcapng"]
    for n in names:
        assert os.path.getsize(tmp_path / "pl" / n) <= (64 << 10) + 1600
        assert tshark(tmp_path / "pl" / n, "frame.comment")          # each one a whole pcapng
    assert events[-1]["stats"]["appliance"]["pcap_log"]["rotations"] > 2


def test_rings_are_bounded_and_let_go_when_flows_end(tmp_path):
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector
    from appliance.output.pcap_log import PcapLog, PcapLogConfig, _cost
    from appliance.source.pcap import PcapSource

    cap = Capture()
    conns = [TcpConn(cap, "10.0.0.1", 42000 + i, "10.0.0.80", 80) for i in range(30)]
    for c in conns:                            # 30 flows open at once, none alerts
        c.handshake()
    for c in conns:
        c.send(b"GET /b HTTP/1.1\r\nHost: ok.test\r\n\r\n")
    (tmp_path / "rules.yaml").write_text(RULES)
    log = PcapLog(PcapLogConfig(dir=str(tmp_path / "pl"), ring_packets=3, ring_bytes=2000), "t")
    insp = Inspector(load_rules(str(tmp_path / "rules.yaml")), None, None, log)
    held_max = 0
    for pkt in PcapSource([cap.write(tmp_path / "in.pcap")]):
        insp.process(pkt)
        held_max = max(held_max, log.held)
        assert all(len(r) <= 3 for r in log.rings.values())
        assert log.held == sum(_cost(r) for r in log.rings.values())
    assert 1500 < held_max <= 2000 and log.rings_dropped > 0
    insp.close()                               # every flow ends: nothing is held for them any more
    assert log.rings == {} and log.held == 0
    assert log.writer.packets == 0 and not (tmp_path / "pl" / "t.pcapng").exists()


def test_a_flow_dropped_by_the_default_action_is_logged_without_an_alert(tmp_path):
    allowlist = """
default_action: drop
rules:
  - {id: 10, action: pass, msg: "dns to the resolver", proto: udp, dst: 10.0.0.53, dst_port: 53}
"""
    cap = capture()
    events = replay(tmp_path, cap, "--pcap-log", tmp_path / "pl", rules=allowlist)
    assert not [e for e in events if e["event_type"] == "alert"]
    flows = {e["flow_id"]: e for e in events if e["event_type"] == "flow"}
    dropped = {fid for fid, e in flows.items() if e["flow"]["action"] == "drop"}
    rows = tshark(tmp_path / "pl" / "replay.pcapng", "frame.comment")
    assert {r[0] for r in rows} == {f"flow_id={fid}" for fid in dropped}
    assert len(dropped) == 2 and len(rows) == len(cap.frames) - 2      # both TCP flows; not the two DNS queries


def test_a_flow_passed_for_good_lets_its_ring_go_before_it_ends(tmp_path):
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.output.pcap_log import PcapLog, PcapLogConfig
    from appliance.source.pcap import PcapSource

    cap = Capture()
    conns = [TcpConn(cap, "10.0.0.1", 43000 + i, "10.0.0.80", 80) for i in range(5)]
    for c in conns:
        c.handshake()
        c.send(b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n")
        c.recv(b"", "A")                # what the flow is passed on reached the server: final
    (tmp_path / "rules.yaml").write_text("default_action: pass\nrules:\n"
                                         "  - {id: 1, action: alert, msg: evil, proto: tcp, content: EVIL}\n")
    log = PcapLog(PcapLogConfig(dir=str(tmp_path / "pl")), "t")
    # the handshake is held (undecided); at the inspection depth (4 packets), with no protocol
    # log keeping it inspected, the flow is passed for good
    insp = Inspector(load_rules(str(tmp_path / "rules.yaml")), Settings(depth_packets=4, eve_types=("alert", "flow")),
                     None, log)
    for pkt in PcapSource([cap.write(tmp_path / "in.pcap")]):
        insp.process(pkt)
    assert len(insp.flows) == 5 and all(f.final for f in insp.flows.flows.values())
    assert log.rings == {} and log.held == 0
