"""A `.rules` rule acts on a capture exactly as its YAML equivalent does (one engine), and
the CLI reports .rules problems and skips as documented."""
from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, cli, client_hello, dns_query, l2, tls_records


def same_events(r1, r2):
    """Every event but stats equal, but for where the rule was written (alert.metadata.rule_source),
    the rule's revision (alert.rev: a `.rules` rule has its own) and the capture's file name (each
    run writes its own)."""
    def strip(evs):
        out = []
        for e in evs:
            if e["event_type"] != "stats":
                e = {k: v for k, v in e.items() if k != "pcap_filename"}
                if "alert" in e:
                    e = {**e, "alert": {**e["alert"], "rev": None,
                                        "metadata": {k: v for k, v in e["alert"]["metadata"].items()
                                                     if k != "rule_source"}}}
                out.append(e)
        return out
    assert strip(r1.events) == strip(r2.events)


def tls_capture():
    cap = Capture()
    for port, sni in ((40001, "harvest-creds.example"), (40002, "good.example")):
        c = TcpConn(cap, "10.0.0.1", port, "203.0.113.5", 443)
        c.handshake()
        c.send(tls_records(client_hello(sni)))
        c.send(b"\x17\x03\x03\x00\x05hello")
    return cap


def test_tls_sni_drop_acts_as_the_yaml_rule(run, rules_file):
    cap = tls_capture()
    suri = run(cap, rules_file('drop tls $HOME_NET any -> $EXTERNAL_NET 443 (msg:"harvester"; '
                               'flow:established,to_server; tls.sni; content:"harvest-creds.example"; nocase; '
                               'startswith; endswith; classtype:credential-theft; sid:77; rev:2;)\n', "a.rules"))
    yaml = run(cap, rules_file("rules:\n  - {id: 77, action: drop, log: true, msg: harvester, proto: tcp, "
                               "src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 443, flow: [established, to_server], "
                               "tls_sni: harvest-creds.example, classtype: credential-theft, severity: 1}\n"))
    assert suri.flow_action(src_port=40001) == "drop"
    assert suri.flow_action(src_port=40002) != "drop"
    [alert] = suri.alerts(77)
    assert alert["alert"]["rev"] == 2 and alert["alert"]["gid"] == 1      # the rule's own revision
    assert yaml.alerts(77)[0]["alert"]["rev"] == 1                          # YAML: Suricata's default
    same_events(suri, yaml)


def test_payload_content_alert_acts_as_the_yaml_rule(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40003, "198.51.100.7", 6667)
    c.handshake()
    c.send(b"nick someone\r\n")
    c.send(b"PRIVMSG #x :NICK inside\r\n")              # NICK past depth 5: no alert
    suri = run(cap, rules_file('alert tcp $HOME_NET any -> $EXTERNAL_NET [6667:6669,7000] (msg:"IRC NICK"; '
                               'flow:established,to_server; content:"NICK|20|"; nocase; depth:5; sid:78;)\n',
                               "a.rules"))
    yaml = run(cap, rules_file("rules:\n  - {id: 78, action: alert, msg: IRC NICK, proto: tcp, src: $HOME_NET, "
                               "dst: $EXTERNAL_NET, dst_port: [6667-6669, 7000], flow: [established, to_server], "
                               "content: {hex: '4e49434b20', nocase: true, depth: 5}}\n"))
    assert len(suri.alerts(78)) == 1
    same_events(suri, yaml)


def test_dns_dotprefix_drop_acts_as_the_yaml_rule(run, rules_file):
    cap = Capture()
    for port, name in ((5301, "tunnelco.example"), (5302, "a.b.tunnelco.example"), (5303, "xtunnelco.example")):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=port, dport=53) / Raw(dns_query([name]))))
    suri = run(cap, rules_file('drop dns any any -> any any (msg:"tunnel"; dns.query; dotprefix; '
                               'content:".tunnelco.example"; nocase; endswith; sid:79;)\n', "a.rules"))
    yaml = run(cap, rules_file("rules:\n  - {id: 79, action: drop, log: true, msg: tunnel, "
                               "dns_query: [tunnelco.example, '*.tunnelco.example']}\n"))
    assert [suri.flow_action(src_port=p) for p in (5301, 5302)] == ["drop", "drop"]
    assert suri.flow_action(src_port=5303) != "drop"
    same_events(suri, yaml)


def test_to_client_drop_acts_as_the_swapped_yaml_rule(run, rules_file):
    cap = Capture()
    for port, body in ((40010, b"MZ\x90\x00 This program cannot be run in DOS mode"), (40011, b"<html>ok</html>")):
        c = TcpConn(cap, "10.0.0.1", port, "198.51.100.9", 80)
        c.handshake()
        c.send(b"GET /f HTTP/1.1\r\nHost: x.example\r\n\r\n")
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + body)
    suri = run(cap, rules_file('drop tcp $EXTERNAL_NET $HTTP_PORTS -> $HOME_NET any (msg:"exe"; '
                               'flow:established,from_server; content:"MZ"; sid:80;)\n', "a.rules"))
    yaml = run(cap, rules_file("rules:\n  - {id: 80, action: drop, log: true, msg: exe, proto: tcp, src: $HOME_NET, "
                               "dst: $EXTERNAL_NET, dst_port: 80, flow: [established, to_client], content: MZ}\n"))
    assert [suri.flow_action(src_port=p) for p in (40010, 40011)] == ["drop", "pass"]
    same_events(suri, yaml)


def test_yaml_and_rules_files_first_match_in_lexical_order(run, rules_file, tmp_path):
    cap = tls_capture()
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "b.rules").write_text("drop tcp any any -> any 443 (flow:to_server; sid:2;)\n")
    (d / "a.yaml").write_text("rules:\n  - {id: 1, action: pass, proto: tcp, dst_port: 443}\n")
    assert run(cap, str(d)).flow_action(src_port=40001) == "pass"      # a.yaml comes first
    (d / "a.yaml").rename(d / "c.yaml")
    assert run(cap, str(d)).flow_action(src_port=40001) == "drop"      # now b.rules does


def test_pass_before_drop_within_a_rules_file(run, rules_file):
    cap = tls_capture()
    r = run(cap, rules_file("drop tcp any any -> any 443 (flow:to_server; sid:2;)\n"
                            "pass tcp any any -> any 443 (flow:to_server; sid:1;)\n",
                            "a.rules"))
    assert r.flow_action(src_port=40001) == "pass"                       # Suricata's action order


def test_cli_rules_check_and_skip_unsupported(tmp_path):
    p = tmp_path / "x.rules"
    p.write_text('alert tcp any any -> any any (byte_test:1,>,5,0; sid:1;)\n'
                 'drop tcp any any -> any 23 (flow:to_server; sid:2;)\n')
    r = cli("rules", "check", p)
    assert (r.returncode, r.stdout) == (1, f"{p}:1: unsupported keyword 'byte_test'\n")
    r = cli("rules", "check", "--skip-unsupported", p)
    assert r.returncode == 0
    assert r.stdout == (f"{p}:1: skipped sid 1: unsupported keyword 'byte_test'\n"
                        "1 rules loaded, 1 skipped; unsupported keywords: byte_test (1)\n")


def test_cli_replay_skip_unsupported(tmp_path):
    p = tmp_path / "x.rules"
    p.write_text('alert tcp any any -> any any (byte_test:1,>,5,0; sid:1;)\n'
                 'alert udp any any -> any 53 (sid:2;)\n')
    cap = Capture()
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5300, dport=53) / Raw(dns_query(["a.example"]))))
    pcap = cap.write(tmp_path / "c.pcap", "pcap")
    r = cli("replay", "--rules", p, "--quiet", pcap)
    assert (r.returncode, r.stderr) == (2, f"{p}:1: unsupported keyword 'byte_test'\n")
    eve = tmp_path / "eve.json"
    r = cli("replay", "--rules", p, "--skip-unsupported", "--quiet", "--eve", eve, pcap)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == "1 rules loaded, 1 skipped; unsupported keywords: byte_test (1)"
    assert '"signature_id":2,' in eve.read_text()
