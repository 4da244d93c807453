"""The EVE contract (keys, 1-based pcap_cnt, stats last, Suricata schema) and the
`appliance replay` command line (formats, several files, errors, summary, determinism)."""
import json

from scapy.all import ICMP, IP, UDP, Raw

from replaykit import (Capture, TcpConn, cli, client_hello, dns_query, l2, schema_errors,
                      tls_records)

MIXED_RULES = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: "sni", tls_sni: "*.example.com", severity: 1, classtype: "policy-violation",
     metadata: {team: [net]}}
  - {id: 2, action: drop, msg: "dns", dns_query: evil.example, log: true}
  - {id: 3, action: reject, msg: "host", http_host: blocked.test, log: true}
  - {id: 4, action: alert, msg: "ping", proto: icmp, icmp_type: 8}
  - {id: 5, action: pass, msg: "dns ok", proto: udp, dst_port: 53, log: true}
"""


def mixed_capture():
    cap = Capture()
    t = TcpConn(cap, "10.0.0.1", 40000, "93.184.216.34", 443)
    t.handshake()
    t.send(tls_records(client_hello("www.example.com")))
    t.recv(b"\x16\x03\x03\x00\x01\x02")
    t.close()
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5000, dport=53) / Raw(dns_query(["evil.example"]))))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5001, dport=53) / Raw(dns_query(["ok.test"]))))
    h = TcpConn(cap, "10.0.0.1", 40001, "10.0.0.80", 80)
    h.handshake()
    h.send(b"GET /a HTTP/1.1\r\nHost: blocked.test\r\nUser-Agent: curl/8\r\n\r\n")
    cap.add(l2(IP(src="10.0.0.1", dst="8.8.8.8") / ICMP(type=8, id=3)))
    cap.add(l2(IP(src="8.8.8.8", dst="10.0.0.1") / ICMP(type=0, id=3)))
    good = bytes(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2)))
    cap.add(good[:20])                                           # truncated: anomaly
    return cap


def test_eve_contract(run, rules_file, eve_validator):
    cap = mixed_capture()
    r = run(cap, rules_file(MIXED_RULES))
    ev = r.events
    assert ev[-1]["event_type"] == "stats" and sum(e["event_type"] == "stats" for e in ev) == 1
    assert {e["event_type"] for e in ev} == {"alert", "anomaly", "flow", "stats", "dns", "tls", "http"}
    assert schema_errors(eve_validator, ev) == []
    n = len(cap.frames)
    for e in ev:
        assert isinstance(e["timestamp"], str) and e["timestamp"].endswith("+0000")
        if e["event_type"] == "stats":
            continue
        assert e["pcap_filename"].endswith(".pcap")
        assert 1 <= e["pcap_cnt"] <= n
        if e["event_type"] == "anomaly" and "src_ip" not in e:
            continue                                             # no IP layer, no flow
        for k in ("flow_id", "src_ip", "src_port", "dest_ip", "dest_port", "proto"):
            assert k in e, (k, e)
    alerts = {e["alert"]["signature_id"]: e for e in r.alerts()}
    assert set(alerts) == {1, 2, 3, 4, 5}
    for sid, e in alerts.items():
        a = e["alert"]
        assert a["signature_id"] == sid and a["severity"] in (1, 2, 3, 4) and isinstance(a["signature"], str)
        assert a["action"] == ("blocked" if sid in (2, 3) else "allowed")
    assert alerts[1]["tls"]["sni"] == "www.example.com" and alerts[1]["app_proto"] == "tls"
    assert alerts[1]["alert"]["category"] == "Potential Corporate Privacy Violation" and alerts[1]["alert"]["metadata"]["team"] == ["net"]
    assert alerts[2]["dns"]["queries"] == [{"rrname": "evil.example", "rrtype": "A"}]
    assert alerts[3]["http"]["hostname"] == "blocked.test" and alerts[3]["http"]["url"] == "/a"
    assert alerts[4]["icmp_type"] == 8
    # pcap_cnt is the frame number: the ClientHello is frame 4
    assert alerts[1]["pcap_cnt"] == 4
    flows = {(f["proto"], f["src_port"]): f for f in r.of("flow")}
    assert flows[("UDP", 5000)]["flow"]["action"] == "drop"
    assert flows[("TCP", 40001)]["flow"]["action"] == "reject"
    assert flows[("TCP", 40000)]["flow"]["action"] == "pass"
    # alert flow_ids point at flow records
    assert {e["flow_id"] for e in r.alerts()} <= {f["flow_id"] for f in r.of("flow")}
    st = ev[-1]["stats"]
    assert st["decoder"]["pkts"] == n and st["decoder"]["invalid"] == 1


def _write(tmp_path, cap, name, fmt="pcap"):
    return cap.write(tmp_path / name, fmt)


def test_cli_formats_and_several_files(tmp_path, rules_file):
    rules = rules_file(MIXED_RULES)
    cap = mixed_capture()
    paths = [_write(tmp_path, cap, "a.pcap"), _write(tmp_path, cap, "b.pcapng", "pcapng"),
             _write(tmp_path, cap, "c.pcap.gz", "gz")]
    outs = []
    for p in paths:
        eve = tmp_path / (p.rsplit("/", 1)[1] + ".json")
        cp = cli("replay", p, "--rules", rules, "--eve", eve)
        assert cp.returncode == 0, cp.stderr
        ev = [json.loads(x) for x in eve.read_text().splitlines()]
        outs.append([{k: v for k, v in e.items() if k != "pcap_filename"} for e in ev])
    assert outs[0] == outs[1] == outs[2]                   # same capture, same events
    eve = tmp_path / "all.json"
    cp = cli("replay", *paths, "--rules", rules, "--eve", eve)
    assert cp.returncode == 0, cp.stderr
    ev = [json.loads(x) for x in eve.read_text().splitlines()]
    names = {e.get("pcap_filename") for e in ev if e["event_type"] == "alert"}
    assert names == {"a.pcap", "b.pcapng", "c.pcap.gz"}
    n = len(cap.frames)
    assert ev[-1]["stats"]["decoder"]["pkts"] == 3 * n
    assert f"packets: {3 * n}" in cp.stderr


def test_cli_summary(tmp_path, rules_file):
    cap = mixed_capture()
    cp = cli("replay", _write(tmp_path, cap, "a.pcap"), "--rules", rules_file(MIXED_RULES))
    assert cp.returncode == 0, cp.stderr
    err = cp.stderr
    assert f"packets: {len(cap.frames)}" in err and "flows: " in err
    assert "verdicts: pass=" in err and "drop=" in err and "reject=1" in err
    assert "top rules:" in err and "[1] sni" in err


def test_cli_home_net_drives_direction(tmp_path, rules_file):
    cap = Capture()
    cap.add(l2(IP(src="203.0.113.1", dst="192.0.2.10") / UDP(sport=1, dport=2)))
    rules = rules_file("rules:\n  - {id: 1, action: alert, direction: inbound}\n")
    eve = tmp_path / "e.json"
    p = _write(tmp_path, cap, "a.pcap")
    assert cli("replay", p, "--rules", rules, "--eve", eve).returncode == 0
    assert '"signature_id"' not in eve.read_text()          # 192.0.2.10 is not a default home net
    assert cli("replay", p, "--rules", rules, "--eve", eve, "--home-net", "192.0.2.0/24").returncode == 0
    assert '"signature_id":1' in eve.read_text()


def _record_offsets(data):
    offsets, off = [], 24
    while off < len(data):
        offsets.append(off)
        off += 16 + int.from_bytes(data[off + 8:off + 12], "little")
    return offsets


def test_cli_unreadable_and_corrupt_files(tmp_path, rules_file):
    rules = rules_file(MIXED_RULES)
    cap = mixed_capture()
    good = _write(tmp_path, cap, "good.pcap")
    data = open(good, "rb").read()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:_record_offsets(data)[9] + 8])   # inside the 10th record header
    missing = tmp_path / "missing.pcap"
    notpcap = tmp_path / "junk.pcap"
    notpcap.write_bytes(b"hello, not a capture at all")
    eve = tmp_path / "e.json"
    cp = cli("replay", missing, cut, notpcap, good, "--rules", rules, "--eve", eve)
    assert cp.returncode == 2
    assert "missing.pcap" in cp.stderr and "cannot open" in cp.stderr
    assert "cut.pcap" in cp.stderr and "corrupt after packet 9" in cp.stderr
    assert "junk.pcap" in cp.stderr and "not a pcap" in cp.stderr
    ev = [json.loads(x) for x in eve.read_text().splitlines()]
    cut_cnts = {e["pcap_cnt"] for e in ev if e.get("pcap_filename") == "cut.pcap" and "pcap_cnt" in e}
    assert cut_cnts and max(cut_cnts) <= 9 and 4 in cut_cnts  # the ClientHello alert from the good part
    assert ev[-1]["stats"]["decoder"]["pkts"] == 9 + len(cap.frames)
    assert f"packets: {9 + len(cap.frames)}" in cp.stderr


def test_cli_record_cut_short_is_corrupt(tmp_path, rules_file):
    """A capture whose last record holds fewer bytes than its caplen says was cut short:
    exit 2 naming the file, the 9 whole packets inspected, the partial one not."""
    cap = mixed_capture()
    data = open(_write(tmp_path, cap, "good.pcap"), "rb").read()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:_record_offsets(data)[9] + 16 + 4])   # 10th record: header + 4 of its bytes
    eve = tmp_path / "e.json"
    cp = cli("replay", cut, "--rules", rules_file(MIXED_RULES), "--eve", eve)
    assert cp.returncode == 2, cp.stderr
    assert "cut.pcap" in cp.stderr
    ev = [json.loads(x) for x in eve.read_text().splitlines()]
    assert ev[-1]["stats"]["decoder"]["pkts"] == 9


def test_cli_bad_rules_exit_2(tmp_path, rules_file):
    cap = mixed_capture()
    cp = cli("replay", _write(tmp_path, cap, "a.pcap"), "--rules", rules_file("rules:\n  - {id: 1, action: dorp}\n"))
    assert cp.returncode == 2
    assert ":2:" in cp.stderr


def test_cli_deterministic(tmp_path, rules_file):
    rules = rules_file(MIXED_RULES)
    cap = mixed_capture()
    p = _write(tmp_path, cap, "a.pcap")
    eve = tmp_path / "e.json"
    assert cli("replay", p, "--rules", rules, "--eve", eve).returncode == 0
    first = eve.read_bytes()
    assert cli("replay", p, "--rules", rules, "--eve", eve).returncode == 0   # same path: overwritten
    assert eve.read_bytes() == first and first


def test_cli_eve_to_non_regular_targets(tmp_path, rules_file):
    """/dev/null, /dev/stdout and a FIFO are written as they are (only a regular file is
    emptied first); none of them ends in a traceback."""
    import os
    import threading
    p = _write(tmp_path, mixed_capture(), "a.pcap")
    rules = rules_file(MIXED_RULES)
    cp = cli("replay", p, "--rules", rules, "--eve", "/dev/null")
    assert cp.returncode == 0 and "Traceback" not in cp.stderr, cp.stderr
    cp = cli("replay", p, "--rules", rules, "--eve", "/dev/stdout", "--quiet")
    assert cp.returncode == 0, cp.stderr
    assert [json.loads(x)["event_type"] for x in cp.stdout.splitlines()][-1] == "stats"
    fifo = tmp_path / "eve.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    cp = cli("replay", p, "--rules", rules, "--eve", fifo, "--quiet")
    reader.join(30)
    assert cp.returncode == 0, cp.stderr
    assert got and got[0].count('"event_type":"stats"') == 1


def test_flow_bypass_names_the_packets_source(rules_file):
    """The flow event's bypass comes from the packets: a flow seen on an interface was
    handed to the kernel (live), one read from a capture only would have been."""
    from appliance.decode import decode_frame
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.output.eve import EveList

    def offloaded_flow(in_iface, pcap_file):
        eve = EveList()
        insp = Inspector(load_rules(rules_file("rules:\n  - {id: 1, action: pass, proto: udp}\n")),
                         Settings(outside_ifaces=("eth0",)), eve)
        pkt = decode_frame(bytes(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2))), 1, 1.0)
        pkt.in_iface, pkt.pcap_file = in_iface, pcap_file
        assert insp.process(pkt).offload
        insp.close()
        [flow] = [e for e in eve.events if e["event_type"] == "flow"]
        return flow["flow"]["bypass"], flow.get("pcap_filename")

    assert offloaded_flow("eth0", "") == ("kernel", None)
    assert offloaded_flow("", "a.pcap") == ("offload", "a.pcap")
