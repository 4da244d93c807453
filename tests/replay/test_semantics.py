"""Decision semantics through replay: first match, alerts never decide, pending app-layer
rules, inspection depth, reject, a pass flow turning into drop, and the SNI allow-list."""

from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, l2, tls_records, REPO
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings


def udp(cap, src, dst, sport, dport, data=b"x", **kw):
    return cap.add(l2(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(data)), **kw)


def verdicts(cap, rules, **settings):
    """Per-packet verdict actions, feeding the Inspector frame by frame."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = []
    for ts, buf in cap.frames:
        out.append(insp.process(decode_frame(buf, cap.linktype, ts)).action)
    return out, insp


def test_first_match_across_files_in_lexical_order(run, tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    # b.yaml is written first but a.yaml is read first.
    (d / "b.yaml").write_text("rules:\n  - {id: 2, action: pass, proto: udp, dst_port: 53, log: true}\n")
    (d / "a.yaml").write_text("rules:\n  - {id: 1, action: drop, proto: udp, dst_port: 53, log: true}\n"
                              "  - {id: 3, action: pass, proto: udp, log: true}\n")
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.2", 1000, 53)
    udp(cap, "10.0.0.1", "10.0.0.2", 1001, 54)
    r = run(cap, str(d))
    assert r.flow_action(dest_port=53) == "drop"
    assert r.flow_action(dest_port=54) == "pass"
    assert sorted(r.sids()) == [1, 3]


def test_alert_rules_never_decide(run, rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.2", 1000, 53, b"evil")
    udp(cap, "10.0.0.1", "10.0.0.2", 1001, 80, b"evil")
    r = run(cap, rules_file("""
default_action: drop
rules:
  - {id: 1, action: alert, content: evil}
  - {id: 2, action: pass, proto: udp, dst_port: 53}
"""))
    assert r.flow_action(dest_port=53) == "pass"
    assert r.flow_action(dest_port=80) == "drop"            # the alert did not pass it
    alerts = {e["dest_port"]: e["alert"]["action"] for e in r.alerts(1)}
    assert alerts == {53: "allowed", 80: "blocked"}


SNI_RULES = """
default_action: drop
rules:
  - {id: 10, action: pass, proto: tcp, dst_port: 443, tls_sni: ["*.example.com"]}
  - {id: 11, action: drop, proto: tcp, log: true, msg: "not allowed"}
"""


def _tls_flow(cap, sport, sni):
    c = TcpConn(cap, "10.0.0.1", sport, "93.184.216.34", 443)
    c.handshake()
    c.send(tls_records(client_hello(sni)))
    c.recv(b"\x16\x03\x03\x00\x04" + b"\x02\x00\x00\x00")
    c.send(b"\x17\x03\x03\x00\x03abc")
    return c


def test_default_drop_with_sni_allowlist(run, rules_file):
    rules = rules_file(SNI_RULES)
    good, bad = Capture(), Capture()
    _tls_flow(good, 2000, "www.example.com")
    _tls_flow(bad, 2001, "www.example.org")
    v_good, _ = verdicts(good, rules)
    v_bad, _ = verdicts(bad, rules)
    assert v_good == ["pass"] * 6
    # handshake passes while the tls_sni rule waits; the ClientHello and everything after drop
    assert v_bad == ["pass", "pass", "pass", "drop", "drop", "drop"]
    both = Capture()
    _tls_flow(both, 2000, "www.example.com")
    _tls_flow(both, 2001, "www.example.org")
    r = run(both, rules)
    assert r.flow_action(src_port=2000) == "pass"
    assert r.flow_action(src_port=2001) == "drop"
    [a] = r.alerts()
    assert (a["alert"]["signature_id"], a["alert"]["action"], a["tls"]["sni"]) == (11, "blocked", "www.example.org")


def test_shipped_sni_allowlist_example(run):
    cap = Capture()
    _tls_flow(cap, 2000, "s3.amazonaws.com")
    _tls_flow(cap, 2001, "evil.test")
    r = run(cap, str(REPO / "rules" / "examples" / "sni-allowlist.yaml"), home_net=["10.0.0.0/8"])
    assert r.flow_action(src_port=2000) == "pass"
    assert r.flow_action(src_port=2001) == "drop"
    assert r.sids() == [2099]


def test_pending_app_rule_holds_back_later_rule(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 3000, "93.184.216.34", 443)
    c.handshake()
    hello = tls_records(client_hello("www.example.com"))
    c.send(hello[:20])
    c.send(hello[20:])
    rules = rules_file("""
rules:
  - {id: 1, action: pass, proto: tcp, tls_sni: www.example.com}
  - {id: 2, action: drop, proto: tcp, dst_port: 443}
""")
    v, insp = verdicts(cap, rules)
    assert v == ["pass"] * 5                           # rule 2 never got to decide
    [flow] = insp.flows.flows.values()
    assert flow.verdict == "pass" and flow.verdict_rule.id == 1


def test_depth_bound_decides_by_next_rule(rules_file, run):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 3100, "93.184.216.34", 443)
    c.handshake()
    for _ in range(6):
        c.send(b"", flags="A")                         # the name never shows
    rules = rules_file("""
rules:
  - {id: 1, action: pass, proto: tcp, tls_sni: www.example.com}
  - {id: 2, action: drop, proto: tcp, dst_port: 443}
""")
    # The depth no longer bounds names (a ClientHello may come in any number of segments):
    # bare ACKs keep the name pending whatever the depth; the first server byte says no
    # ClientHello is coming (a TLS server waits for it), and the next rule decides.
    v, _ = verdicts(cap, rules, depth_packets=5)
    assert v == ["pass"] * 9
    c.recv(b"SSH-2.0-x\r\n")
    c.send(b"", flags="A")
    v, _ = verdicts(cap, rules, depth_packets=5)
    assert v == ["pass"] * 9 + ["drop"] * 2
    r = run(cap, rules, depth_packets=5)
    assert r.flow_action(src_port=3100) == "drop"


def test_depth_bound_falls_to_default(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 3200, "10.0.0.2", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\n")                      # headers never finish: no Host yet
    for _ in range(3):
        c.send(b"X-Pad: 1\r\n")
    rules = rules_file("""
default_action: drop
rules:
  - {id: 1, action: pass, http_host: example.com}
""")
    # past the depth the header block is still read (the Host may come last) ...
    v, _ = verdicts(cap, rules, depth_packets=6)
    assert v == ["pass"] * 7
    # ... until the server answers a request it has not had (a 408/400): no name will come
    # for it, the pass rule cannot match (exception.server_first), the default decides
    c.recv(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    v, _ = verdicts(cap, rules, depth_packets=6)
    assert v == ["pass"] * 7 + ["drop"]


def test_default_reject_rejects_the_deciding_packet(rules_file):
    """default_action reject answers the packet that decides the flow (RST / unreachable),
    then drops the rest, as a reject rule does."""
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.2", 1000, 9)
    udp(cap, "10.0.0.1", "10.0.0.2", 1000, 9)
    c = TcpConn(cap, "10.0.0.1", 3201, "10.0.0.2", 80)
    c._seg(True, "S")
    c._seg(True, "S")
    v, _ = verdicts(cap, rules_file("default_action: reject\n"))
    assert v == ["reject", "drop", "reject", "drop"]


def test_reject_in_flow_record_and_alert(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 3300, "10.0.0.2", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: x.ngrok.io\r\n\r\n")
    r = run(cap, rules_file("""
rules:
  - {id: 4003, action: reject, proto: tcp, http_host: "*.ngrok.io", log: true}
"""))
    assert r.flow_action(src_port=3300) == "reject"
    [a] = r.alerts()
    assert a["alert"]["action"] == "blocked" and a["http"]["hostname"] == "x.ngrok.io"
    assert r.res.verdicts == {"pass": 3, "reject": 1}


def test_pass_flow_switches_to_drop_on_later_dns_query(run, rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 5353, 53, dns_query(["ok.test"], qid=1))
    udp(cap, "10.0.0.53", "10.0.0.1", 53, 5353, b"\x00\x01\x81\x80" + b"\x00" * 8)
    udp(cap, "10.0.0.1", "10.0.0.53", 5353, 53, dns_query(["evil.example"], qid=2))
    udp(cap, "10.0.0.1", "10.0.0.53", 5353, 53, dns_query(["ok.test"], qid=3))
    rules = rules_file("""
rules:
  - {id: 1, action: drop, dns_query: evil.example, log: true}
  - {id: 2, action: pass, proto: udp, dst_port: 53}
""")
    v, _ = verdicts(cap, rules)
    assert v == ["pass", "pass", "drop", "drop"]
    r = run(cap, rules)
    assert r.flow_action(src_port=5353) == "drop"
    [a] = r.alerts()
    assert a["dns"]["queries"][0]["rrname"] == "evil.example" and a["pcap_cnt"] == 3


def test_server_speaks_first_resolves_pending_app_rules(rules_file):
    """A telnet-like server sends its banner before the client says anything: no
    client-first protocol (DNS/TLS/HTTP) is possible, so a pending name rule stops
    holding back the reject rule after it."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 3300, "10.0.0.2", 23)
    c.handshake()
    c.recv(b"login: ")
    c.send(b"root\r\n")
    v, insp = verdicts(cap, rules_file("""
rules:
  - {id: 1, action: drop, dns_query: bad.example}
  - {id: 2, action: reject, proto: tcp, dst_port: 23}
"""))
    assert v[:3] == ["pass"] * 3                 # handshake: the DNS rule is pending
    assert v[3] == "reject"                      # the banner proves it is not DNS
    assert v[4:] == ["drop"] * (len(v) - 4)
