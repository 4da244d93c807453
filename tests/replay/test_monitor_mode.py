"""Monitor mode (`mode: monitor`, a rule file's `mode: monitor`, the config's rules_mode,
`replay --mode monitor`): drop/reject verdicts pass, the alerts say what enforce mode would
have done, and everything else -- which rules see the flow, which alerts fire -- is the same
as enforcing. Each test replays one capture in both modes and compares."""
import json

from scapy.all import IP, UDP, Raw

from replaykit import (Capture, TcpConn, cli, client_hello, dns_query, l2, schema_errors, tls_records)

LAB = "rules/lab/lab.yaml"
CLIENT, SERVER = "10.10.2.10", "192.0.2.80"


def lab_capture(tmp_path):
    """The lab's blocked traffic and one allowed flow, with packets after each decision."""
    cap = Capture()
    # telnet to HOME_NET: reject 1000004 at the SYN (the client retries)
    t = TcpConn(cap, "192.0.2.7", 40023, CLIENT, 23)
    t.handshake()
    t.send(b"login\r\n")
    # HTTP to a blocked host by curl: drop 1000001 on the request (curl alert 1000010 on it
    # too); the server's "uid=0(root)" after the decision is not inspected in either mode
    h = TcpConn(cap, CLIENT, 40080, SERVER, 80)
    h.handshake()
    h.send(b"GET / HTTP/1.1\r\nHost: blocked.example.net\r\nUser-Agent: curl/8.0\r\n\r\n")
    h.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nuid=0(root)")
    h.close()
    # TLS to a blocked name: drop 1000002
    s = TcpConn(cap, CLIENT, 40443, SERVER, 443)
    s.handshake()
    s.send(tls_records(client_hello("www.blocked.example.net")))
    s.recv(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")
    # DNS query for a blocked name: drop 1000003, and the retry
    for _ in range(2):
        cap.add(l2(IP(src=CLIENT, dst="192.0.2.53") / UDP(sport=40053, dport=53) / Raw(dns_query(["x.bad.example"]))))
    # an allowed HTTP request by curl: alert 1000010 only
    a = TcpConn(cap, CLIENT, 40081, SERVER, 80)
    a.handshake()
    a.send(b"GET / HTTP/1.1\r\nHost: ok.example.net\r\nUser-Agent: curl/8.0\r\n\r\n")
    a.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nuid=0(root)")
    a.close()
    return cap.write(tmp_path / "lab.pcap")


def replay_eve(tmp_path, name, *args):
    eve = tmp_path / f"{name}.json"
    r = cli("replay", *args, "--eve", eve)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in eve.read_text().splitlines()], r.stderr


def alerts(events):
    return [e for e in events if e["event_type"] == "alert"]


def comparable(ev):
    """An alert without what monitor mode changes (action, the marker)."""
    a = {k: v for k, v in ev["alert"].items() if k != "action"}
    a["metadata"] = {k: v for k, v in a["metadata"].items() if k != "monitor"}
    return (ev.get("pcap_cnt"), ev.get("flow_id"), json.dumps(a, sort_keys=True))


def test_same_alerts_in_both_modes_verdicts_pass_marker_present(tmp_path, eve_validator):
    pcap = lab_capture(tmp_path)
    enforce, err_e = replay_eve(tmp_path, "enforce", pcap, "--rules", LAB)
    monitor, err_m = replay_eve(tmp_path, "monitor", pcap, "--rules", LAB, "--mode", "monitor")
    ae, am = alerts(enforce), alerts(monitor)
    assert sorted(e["alert"]["signature_id"] for e in ae) == [1000001, 1000002, 1000003, 1000004,
                                                             1000010, 1000010, 1000011]
    assert [comparable(e) for e in ae] == [comparable(e) for e in am]
    for e, m in zip(ae, am):
        blocked = e["alert"]["action"] == "blocked"
        assert m["alert"]["action"] == "allowed"
        rule_action = e["alert"]["metadata"]["rule_action"][0]
        # the packet enforce mode blocked: its alerts (the curl alert on a dropped request too)
        # name what would have happened; an allowed packet's alerts have no marker
        want = ([f"would_{'reject' if rule_action == 'reject' else 'drop'}"] if blocked else None)
        assert m["alert"]["metadata"].get("monitor") == want, m
        assert "monitor" not in e["alert"]["metadata"]
    # nothing is dropped in monitor mode; what was is counted as would-be
    assert "verdicts: pass=" in err_m and " drop=0  reject=0" in err_m, err_m
    assert "would_drop=" in err_m and "would_reject=" in err_m
    assert " drop=0  reject=0" not in err_e
    stats = [e for e in monitor if e["event_type"] == "stats"][-1]["stats"]
    assert stats["ips"]["blocked"] == stats["ips"]["rejected"] == 0
    es = [e for e in enforce if e["event_type"] == "stats"][-1]["stats"]
    assert stats["appliance"]["monitor"]["would_drop"] + stats["appliance"]["monitor"]["would_reject"] \
        == es["ips"]["blocked"] + es["ips"]["rejected"] > 0
    assert es["appliance"]["monitor"] == {"would_drop": 0, "would_reject": 0}
    # flows: enforce dropped them, monitor passed them; both decided at the same packet
    fe = {e["flow_id"]: e["flow"] for e in enforce if e["event_type"] == "flow"}
    fm = {e["flow_id"]: e["flow"] for e in monitor if e["event_type"] == "flow"}
    assert fe.keys() == fm.keys()
    assert {f["action"] for f in fm.values()} == {"pass"}
    assert {f["action"] for f in fe.values()} == {"pass", "drop", "reject"}
    assert schema_errors(eve_validator, monitor) == []


def test_rule_file_mode_monitors_only_that_file(tmp_path):
    """A YAML file's `mode: monitor` covers its own rules (and the default action it sets);
    another file's drop still drops."""
    d = tmp_path / "rules"
    d.mkdir()
    (d / "10-new.yaml").write_text("mode: monitor\ndefault_action: drop\nrules:\n"
                                   "  - {id: 1, msg: new telnet rule, action: drop, proto: tcp, dst_port: 23}\n")
    (d / "20-old.yaml").write_text("rules:\n"
                                   "  - {id: 2, msg: old ssh rule, action: drop, proto: tcp, dst_port: 22}\n"
                                   "  - {id: 3, msg: web, action: pass, proto: tcp, dst_port: 80}\n")
    cap = Capture()
    for port in (23, 22, 80, 8080):
        TcpConn(cap, CLIENT, 41000 + port, SERVER, port).handshake()
    ev, _ = replay_eve(tmp_path, "files", cap.write(tmp_path / "f.pcap"), "--rules", d)
    flows = {e["dest_port"]: e["flow"]["action"] for e in ev if e["event_type"] == "flow"}
    assert flows == {23: "pass", 22: "drop", 80: "pass", 8080: "pass"}
    marks = {e["alert"]["signature_id"]: (e["alert"]["action"], e["alert"]["metadata"].get("monitor"))
             for e in alerts(ev)}
    assert marks == {1: ("allowed", ["would_drop"]), 2: ("blocked", None)}


def test_config_rules_mode_glob_monitors_a_rules_file(tmp_path):
    """.rules files have no key of their own: the config's rules_mode names them by glob."""
    d = tmp_path / "rules"
    d.mkdir()
    (d / "et-new.rules").write_text('drop tcp any any -> any 23 (msg:"new"; sid:11;)\n')
    (d / "local.rules").write_text('drop tcp any any -> any 22 (msg:"old"; sid:12;)\n')
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text(f"interfaces: {{outside: eth0, inside: eth1}}\nrules: {d}\n"
                   "rules_mode:\n  \"et-*.rules\": monitor\n")
    cap = Capture()
    for port in (23, 22):
        TcpConn(cap, CLIENT, 42000 + port, SERVER, port).handshake()
    pcap = cap.write(tmp_path / "g.pcap")
    ev, _ = replay_eve(tmp_path, "glob", pcap, "--config", cfg)
    flows = {e["dest_port"]: e["flow"]["action"] for e in ev if e["event_type"] == "flow"}
    assert flows == {23: "pass", 22: "drop"}
    # the config's global mode covers every file
    cfg.write_text(cfg.read_text() + "mode: monitor\n")
    ev, _ = replay_eve(tmp_path, "global", pcap, "--config", cfg)
    assert {e["flow"]["action"] for e in ev if e["event_type"] == "flow"} == {"pass"}
    assert {e["alert"]["metadata"]["monitor"][0] for e in alerts(ev)} == {"would_drop"}


def test_bad_modes_are_file_line_problems(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("rules: []\nmode: monitr\n")
    out = cli("rules", "check", r)
    assert out.returncode == 1 and f"{r}:2: mode must be enforce or monitor" in out.stdout, out
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text("interfaces: {outside: eth0, inside: eth1}\nmode: monitr\nrules_mode: {'*.rules': maybe}\n")
    out = cli("replay", "x.pcap", "--config", cfg)
    assert out.returncode == 2
    assert f"{cfg}:2: mode must be enforce or monitor, got 'monitr' (did you mean 'monitor'?)" in out.stderr
    assert f"{cfg}:3: rules_mode: *.rules: mode must be enforce or monitor" in out.stderr, out.stderr


def test_a_rules_mode_glob_that_matches_nothing_is_refused(tmp_path):
    """A typo in the glob would leave the rules it means enforcing: FILE:LINE, not silence."""
    d = tmp_path / "rules"
    d.mkdir()
    (d / "et-new.rules").write_text('drop tcp any any -> any 23 (msg:"new"; sid:11;)\n')
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text(f"interfaces: {{outside: eth0, inside: eth1}}\nrules: {d}\nrules_mode:\n"
                   "  \"et-*.rules\": monitor\n  \"et_new.rules\": monitor\n")
    out = cli("replay", "x.pcap", "--config", cfg)
    assert out.returncode == 2
    assert out.stderr.strip() == f"{cfg}:5: rules_mode: 'et_new.rules' matches no rule file", out.stderr


def test_icmp_errors_and_unread_packets_follow_the_monitored_verdict(tmp_path):
    """The verdict paths beside the flow's own: an ICMP error quoting a monitored-dropped flow
    (conntrack's RELATED) and a packet whose transport cannot be read pass in monitor mode,
    as they are dropped enforcing."""
    from scapy.all import ICMP, IPv6, IPv6ExtHdrDestOpt, TCP
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {id: 7, msg: block host, action: drop, dst: 192.0.2.99}\n"
                     "  - {id: 8, msg: block v6 host, action: drop, dst: '2001:db8::99'}\n")
    cap = Capture()
    udp = IP(src=CLIENT, dst="192.0.2.99") / UDP(sport=5000, dport=7000) / Raw(b"x")
    cap.add(l2(udp))
    cap.add(l2(IP(src="192.0.2.99", dst=CLIENT) / ICMP(type=3, code=3) / bytes(udp)[:28]))
    # a transport header cut short behind an extension header: unread
    cut = bytes(IPv6(src="2001:db8::1", dst="2001:db8::99") / IPv6ExtHdrDestOpt(nh=6) / TCP(dport=80))[:40 + 8 + 6]
    cut = cut[:4] + (14).to_bytes(2, "big") + cut[6:]
    cap.add(l2(IPv6(cut)))
    pcap = cap.write(tmp_path / "i.pcap")
    _, err_e = replay_eve(tmp_path, "e", pcap, "--rules", rules)
    _, err_m = replay_eve(tmp_path, "m", pcap, "--rules", rules, "--mode", "monitor")
    assert "verdicts: pass=0  drop=3  reject=0" in err_e, err_e
    assert "verdicts: pass=3  drop=0  reject=0" in err_m and "would_drop=3" in err_m, err_m
