"""Review findings: evasions and broken promises, each pinned by a test.

Each test either reproduced a bug found in review (an evasion, a traceback, a
wrong line number; all fixed) or pins behaviour that was checked and found correct.
"""
import json
import random

from scapy.all import ICMP, IP, UDP, Raw, raw, fragment, ICMPv6EchoRequest, IPv6, TCP as STCP

from replaykit import (Capture, TcpConn, client_hello, cli, dns_query, l2, ip_of, tls_records,
                      schema_errors, T0)
from appliance.decode import decode_frame, decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings


def udp(cap, src, dst, sport, dport, data=b"x", **kw):
    return cap.add(l2(ip_of(src, dst) / UDP(sport=sport, dport=dport) / Raw(data)), **kw)


def feed(cap, rules, **settings):
    """Per-packet Verdicts, feeding the Inspector frame by frame (no defrag)."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    out = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert insp.counters.internal_errors == 0
    return out, insp


def actions(verdicts):
    return [v.action for v in verdicts]


CONTENT_DROP = """
rules:
  - {id: 1, action: drop, content: "evil", log: true}
  - {id: 2, action: alert, content: "evil"}
"""


# --- 1. content drop rules skipped on the packet that reaches the inspection depth ----------

def test_content_drop_in_one_packet_larger_than_depth_bytes(rules_file):
    # EC2 MTU is 9001: one datagram carries more than the 8 KiB byte depth.
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 9999, b"evil" + b"A" * 9000)
    v, _ = feed(cap, rules_file(CONTENT_DROP))
    assert 2 in [r.id for r in v[0].alerts]
    assert v[0].action == "drop"           # today: pass (and offloaded), with the alert 2 "allowed"


def test_content_drop_on_the_last_packet_within_depth_packets(rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 9999, b"evil")
    v, _ = feed(cap, rules_file(CONTENT_DROP), depth_packets=1)
    assert 2 in [r.id for r in v[0].alerts]   # the packet *was* inspected: the alert fires
    assert v[0].action == "drop"


def test_content_drop_on_sixteenth_packet(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 7)
    c.handshake()                                       # 3 packets
    for _ in range(12):
        c.send(b"hello")                                # 4..15
    c.send(b"evil")                                     # 16th packet of the flow
    v, _ = feed(cap, rules_file(CONTENT_DROP))
    assert 2 in [r.id for r in v[15].alerts]
    assert v[15].action == "drop"


def test_content_drop_below_depth_is_applied(rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 9999, b"evil" + b"A" * 100)
    v, _ = feed(cap, rules_file(CONTENT_DROP))
    assert v[0].action == "drop"


# --- 2. HTTP pipelining: only the last request of a segment is checked ------------------------

def test_pipelined_http_requests_in_one_segment_all_checked(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
           b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, http_host: evil.example}\n"))
    assert v[-1].action == "drop"


def test_second_http_request_in_later_segment_is_checked(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    c.send(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, http_host: evil.example}\n"))
    assert actions(v)[-1] == "drop"


# --- 3. UDP: a first datagram that is not DNS switches DNS rules off for the flow ---------------

def test_udp_garbage_first_datagram_does_not_disable_dns_rules(rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, b"\x00garbage")
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["evil.example"]))
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, dns_query: evil.example}\n"))
    assert actions(v) == ["pass", "drop"]


def test_second_udp_dns_query_for_blocked_name_is_dropped(rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["good.example"]))
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["evil.example"]))
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, dns_query: evil.example}\n"))
    assert actions(v) == ["pass", "drop"]


# --- 4. allow-lists: a later transaction no pass rule allows keeps the flow passing ------------

def test_dns_allowlist_second_query_outside_list_gets_default_drop(rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["good.example"]))
    udp(cap, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["exfil.evil.example"]))
    v, _ = feed(cap, rules_file("default_action: drop\nrules:\n"
                                "  - {id: 1, action: pass, dns_query: good.example}\n"))
    assert actions(v) == ["pass", "drop"]


def test_http_allowlist_second_request_outside_list_gets_default_drop(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "203.0.113.80", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    c.send(b"GET / HTTP/1.1\r\nHost: other.example\r\n\r\n")
    v, _ = feed(cap, rules_file("default_action: drop\nrules:\n"
                                "  - {id: 1, action: pass, proto: tcp, http_host: good.example}\n"))
    assert actions(v)[-1] == "drop"


# --- 5. ICMP flows held back by app-layer rules they can never match ---------------------------

def test_icmp_flow_not_held_back_by_app_rule(rules_file):
    cap = Capture()
    for i in range(3):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=9, seq=i) / b"x"))
        cap.add(l2(IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=9, seq=i) / b"x"))
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: pass, dns_query: good.example}\n"
                                "  - {id: 2, action: drop, proto: icmp}\n"))
    assert v[0].action == "drop"


# --- 6. live direction of a flow first seen from its responder --------------------------------

def test_live_direction_of_flow_first_seen_as_synack(rules_file):
    rs = load_rules(rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, direction: inbound}\n"))
    insp = Inspector(rs, Settings(outside_ifaces=("eth0",)))
    # 198.51.100.7 (outside) connected to 10.0.0.80 (inside); we first see the server's SYN/ACK,
    # which arrives on the inside interface.
    p = decode_l3(raw(IP(src="10.0.0.80", dst="198.51.100.7") / STCP(sport=80, dport=4000, flags="SA")), T0)
    p.in_iface = "eth1"
    v = insp.process(p)
    assert v.flow.src == "198.51.100.7"       # the initiator is right...
    assert v.flow.direction == "inbound"       # ...its direction is not (today: outbound)
    assert v.action == "drop"


def test_live_direction_of_flow_first_seen_as_syn(rules_file):
    rs = load_rules(rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, direction: inbound}\n"))
    insp = Inspector(rs, Settings(outside_ifaces=("eth0",)))
    p = decode_l3(raw(IP(src="198.51.100.7", dst="10.0.0.80") / STCP(sport=4000, dport=80, flags="S")), T0)
    p.in_iface = "eth0"
    assert insp.process(p).action == "drop"


# --- 7. TCP port reuse on a flow that was never closed ------------------------------------------

def test_tcp_port_reuse_without_close_is_inspected(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 443)
    c.handshake()
    c.send(tls_records(client_hello("good.example")))
    c.recv(b"\x16\x03\x03\x00\x01\x02")
    # the old connection is abandoned without FIN/RST; the same source port is used again
    c2 = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 443, cseq=900_000, sseq=700_000)
    c2.handshake()
    c2.send(tls_records(client_hello("bad.example")))
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, tls_sni: bad.example}\n"))
    assert v[-1].action == "drop"


def test_tcp_port_reuse_after_close_is_inspected(rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 443)
    c.handshake()
    c.send(tls_records(client_hello("good.example")))
    c.close()
    c2 = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 443, cseq=900_000, sseq=700_000)
    c2.handshake()
    c2.send(tls_records(client_hello("bad.example")))
    v, _ = feed(cap, rules_file("rules:\n  - {id: 1, action: drop, tls_sni: bad.example}\n"))
    assert v[-1].action == "drop"


# --- 8. rules: a regex the re module refuses with something else than re.error -----------------

def test_regex_overflow_is_a_file_line_problem(rules_file, tmp_path):
    path = rules_file("# a comment\nrules:\n  - {id: 1, action: alert, regex: \"a{99999999999}\"}\n")
    chk = cli("rules", "check", path)
    assert chk.returncode == 1
    assert f"{path}:3:" in chk.stdout + chk.stderr
    assert "internal error" not in chk.stdout + chk.stderr
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.2", 1, 2)
    rep = cli("replay", cap.write(tmp_path / "x.pcap"), "--rules", path, "--eve", tmp_path / "e.json")
    assert "Traceback" not in rep.stderr
    assert rep.returncode == 2
    assert f"{path}:3:" in rep.stderr


# --- 9. config: every problem has a real line ---------------------------------------------------

def test_config_missing_interfaces_reported_with_a_real_line(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    cfg = tmp_path / "appliance.yaml"
    cfg.write_text("rules: rules.yaml\neve: null\n")
    r = cli("run", "--config", cfg, "--check")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{cfg}:0:" not in r.stderr


# --- pinned correct behaviour ----------------------------------------------------------------

def test_tls_sni_out_of_order_and_conflicting_retransmission(rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: drop, tls_sni: bad.example}\n")
    data = tls_records(client_hello("bad.example"), 20)
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4000, "10.0.0.80", 443)
    c.handshake()
    base, half = c.cseq, len(data) // 2
    c.cseq = base + half
    c.send(data[half:])                     # second half first
    c.cseq = base
    c.send(data[:half])
    v, _ = feed(cap, rules)
    assert actions(v)[-1] == "drop"
    # a retransmission of the first bytes with a different name: the first copy wins
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 4001, "10.0.0.80", 443)
    c.handshake()
    base = c.cseq
    c.send(data[:30])
    c.cseq = base
    c.send(tls_records(client_hello("goo.example"), 20)[:30])
    c.send(data[30:])
    v, _ = feed(cap, rules)
    assert actions(v)[-1] == "drop"


def test_mutated_frames_never_raise_and_eve_validates(run, rules_file, eve_validator):
    rules = rules_file("""
default_action: drop
rules:
  - {id: 1, action: alert, content: "evil"}
  - {id: 2, action: pass, dns_query: "*.example"}
  - {id: 3, action: drop, tls_sni: "bad.example"}
  - {id: 4, action: pass, http_host: "good.example"}
  - {id: 5, action: alert, proto: icmp, icmp_type: 8}
  - {id: 6, action: drop, proto: tcp, tcp_flags: "S", flow: [to_server, not_established], content: "x"}
  - {id: 7, action: alert, regex: "a+b", flow: established}
""")
    seed = Capture()
    c = TcpConn(seed, "10.0.0.1", 4000, "10.0.0.80", 443)
    c.handshake()
    c.send(tls_records(client_hello("bad.example"), 50))
    c.recv(b"hello")
    c.close()
    c = TcpConn(seed, "fd00::1", 4001, "fd00::2", 80)
    c.handshake()
    c.send(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    udp(seed, "10.0.0.1", "10.0.0.53", 4000, 53, dns_query(["a.example"]))
    seed.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=5) / b"evil"))
    seed.add(l2(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=5) / b"evil"))
    for f in fragment(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=53)
                      / Raw(dns_query(["x.example"]) + b"A" * 100), fragsize=24):
        seed.add(l2(f))
    frames = [b for _, b in seed.frames]
    rnd = random.Random(7)
    cap = Capture()
    for b in frames:
        cap.add(b)
    for _ in range(3000):
        f = bytearray(rnd.choice(frames))
        for _ in range(rnd.randint(1, 4)):
            f[rnd.randrange(len(f))] = rnd.randrange(256)
        if rnd.random() < 0.1:
            f = f[:rnd.randrange(1, len(f))]
        cap.add(bytes(f))
    r = run(cap, rules)
    assert r.insp.counters.internal_errors == 0
    assert schema_errors(eve_validator, r.events) == []
    r2 = run(cap, rules)
    def norm(events):
        return [json.dumps({k: v for k, v in e.items() if k != "pcap_filename"}, sort_keys=True) for e in events]
    assert norm(r.events) == norm(r2.events)
