"""Every rule key, through a real replay: crafted captures in, EVE alerts/flows out."""
from scapy.all import ICMP, ICMPv6EchoRequest, IP, IPv6, UDP, Raw

from replaykit import Capture, TcpConn, client_hello, dns_query, l2, tls_records


def udp(cap, src, dst, sport, dport, data=b"x", **kw):
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    return cap.add(l2(ip / UDP(sport=sport, dport=dport) / Raw(data)), **kw)


def alerted_pairs(result):
    """{(src_ip, dest_port): set of sids}."""
    out = {}
    for e in result.alerts():
        out.setdefault((e["src_ip"], e["dest_port"]), set()).add(e["alert"]["signature_id"])
    return out


def test_proto(run, rules_file):
    cap = Capture()
    TcpConn(cap, "10.0.0.1", 1001, "10.0.0.2", 80).send(b"t", flags="S")
    udp(cap, "10.0.0.1", "10.0.0.2", 1002, 53)
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.3") / ICMP(type=8, id=7)))
    cap.add(l2(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=9)))
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, proto: tcp}
  - {id: 2, action: alert, proto: udp}
  - {id: 3, action: alert, proto: icmp}
  - {id: 4, action: alert, proto: icmpv6}
  - {id: 5, action: alert, proto: ip}
"""))
    by_proto = {}
    for e in r.alerts():
        by_proto.setdefault(e["proto"], set()).add(e["alert"]["signature_id"])
    assert by_proto == {"TCP": {1, 5}, "UDP": {2, 5}, "ICMP": {3, 5}, "IPv6-ICMP": {4, 5}}


def test_addresses_cidr_list_var_negation(run, rules_file):
    cap = Capture()
    srcs = ["10.1.2.3", "10.2.0.1", "192.168.1.1", "172.16.0.9", "8.8.8.8", "2001:db8::1", "2001:db9::1"]
    for i, s in enumerate(srcs):
        udp(cap, s, "2001:db8::ff" if ":" in s else "10.9.9.9", 2000 + i, 9999)
    r = run(cap, rules_file("""
vars:
  INNER: [10.1.0.0/16, "2001:db8::/32"]
  BOTH: [$INNER, 192.168.0.0/16]
rules:
  - {id: 1, action: alert, src: 10.0.0.0/8}
  - {id: 2, action: alert, src: 10.1.2.3}
  - {id: 3, action: alert, src: [192.168.0.0/16, 172.16.0.0/12]}
  - {id: 4, action: alert, src: "!10.0.0.0/8"}
  - {id: 5, action: alert, src: [10.0.0.0/8, "!10.1.0.0/16"]}
  - {id: 6, action: alert, src: ["!10.0.0.0/8", "!192.168.0.0/16"]}
  - {id: 7, action: alert, src: "$INNER"}
  - {id: 8, action: alert, src: "!$BOTH"}
  - {id: 9, action: alert, src: "![10.0.0.0/8, 192.168.0.0/16]"}
  - {id: 10, action: alert, dst: "2001:db8::/32"}
  - {id: 11, action: alert, src: $EXTERNAL_NET, dst: $HOME_NET}
""", ), home_net=["10.0.0.0/8", "2001:db8::/32"])
    got = {e["src_ip"]: set() for e in r.alerts()}
    for e in r.alerts():
        got[e["src_ip"]].add(e["alert"]["signature_id"])
    assert got == {
        "10.1.2.3": {1, 2, 7},
        "10.2.0.1": {1, 5, 8},
        "192.168.1.1": {3, 4, 11},
        "172.16.0.9": {3, 4, 6, 8, 9, 11},
        "8.8.8.8": {4, 6, 8, 9, 11},
        "2001:db8::1": {4, 6, 7, 9, 10},
        "2001:db9::1": {4, 6, 8, 9, 10, 11},
    }


def test_ports_single_range_list_negation(run, rules_file):
    cap = Capture()
    for i, dport in enumerate([22, 80, 8050, 8100, 443, 65535]):
        udp(cap, "10.0.0.1", "10.0.0.2", 3000 + i, dport)
    r = run(cap, rules_file("""
vars:
  WEB: [80, "8000-8099"]
rules:
  - {id: 1, action: alert, proto: udp, dst_port: 22}
  - {id: 2, action: alert, proto: udp, dst_port: "8000-8099"}
  - {id: 3, action: alert, proto: udp, dst_port: [22, 443]}
  - {id: 4, action: alert, proto: udp, dst_port: "!22"}
  - {id: 5, action: alert, proto: udp, dst_port: $WEB}
  - {id: 6, action: alert, proto: udp, dst_port: ["1024-65535", "!8000-8099"]}
  - {id: 7, action: alert, proto: udp, src_port: "3000-3001"}
  - {id: 8, action: alert, proto: udp, dst_port: "!$WEB"}
"""))
    got = {}
    for e in r.alerts():
        got.setdefault(e["dest_port"], set()).add(e["alert"]["signature_id"])
    assert got == {22: {1, 3, 7, 8}, 80: {4, 5, 7}, 8050: {2, 4, 5}, 8100: {4, 6, 8},
                   443: {3, 4, 8}, 65535: {4, 6, 8}}


def test_direction_inbound_outbound(run, rules_file):
    cap = Capture()
    udp(cap, "203.0.113.5", "10.20.0.1", 4000, 53)     # inbound
    udp(cap, "10.20.0.1", "203.0.113.5", 4001, 53)     # outbound
    udp(cap, "10.20.0.1", "10.20.0.2", 4002, 53)       # internal
    udp(cap, "192.168.0.1", "10.20.0.2", 4003, 53)     # 192.168/16 is outside this home net
    rules = rules_file("""
rules:
  - {id: 1, action: alert, direction: inbound}
  - {id: 2, action: alert, direction: outbound}
  - {id: 3, action: alert, direction: any}
""")
    r = run(cap, rules, home_net=["10.20.0.0/16"])
    got = {e["src_port"]: set() for e in r.alerts()}
    for e in r.alerts():
        got[e["src_port"]].add(e["alert"]["signature_id"])
    assert got == {4000: {1, 3}, 4001: {2, 3}, 4002: {3}, 4003: {1, 3}}
    # The responder's reply belongs to the same inbound flow: direction is the flow's, not the packet's.
    cap2 = Capture()
    udp(cap2, "203.0.113.5", "10.20.0.1", 4000, 53)
    udp(cap2, "10.20.0.1", "203.0.113.5", 53, 4000)
    r2 = run(cap2, rules, home_net=["10.20.0.0/16"])
    assert sorted(r2.sids()) == [1, 1, 3, 3]


def test_direction_follows_home_net_as_the_loader_resolves_it(run, rules_file):
    """HOME_NET with a $VARIABLE, a list and a negation: direction uses the loader's one
    resolution (the Inspector once re-read the raw list and skipped "$" and "!" items)."""
    cap = Capture()
    udp(cap, "203.0.113.5", "192.0.2.5", 4000, 53)     # into $CORP: inbound
    udp(cap, "203.0.113.5", "10.1.2.3", 4001, 53)      # into 10/8: inbound
    udp(cap, "203.0.113.5", "10.9.0.1", 4002, 53)      # 10.9/16 is carved out: outside to outside
    r = run(cap, rules_file("""
vars:
  CORP: [192.0.2.0/24]
  HOME_NET: ["$CORP", "[10.0.0.0/8, !10.9.0.0/16]"]
rules:
  - {id: 1, action: alert, direction: inbound}
"""))
    assert sorted(e["src_port"] for e in r.alerts()) == [4000, 4001]


def test_flow_established_vs_no_handshake(run, rules_file):
    cap = Capture()
    a = TcpConn(cap, "10.0.0.1", 5000, "10.0.0.2", 80)
    a.handshake()
    a.send(b"MATCH? full")
    a.recv(b"MATCH? reply")
    b = TcpConn(cap, "10.0.0.1", 5001, "10.0.0.2", 80)
    b.send(b"MATCH? midstream")                      # no 3WHS at all
    b.recv(b"MATCH? midstream reply")
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, proto: tcp, flow: established, content: "MATCH?"}
  - {id: 2, action: alert, proto: tcp, flow: not_established, content: "MATCH?"}
  - {id: 3, action: alert, proto: tcp, flow: to_server, content: "MATCH?"}
  - {id: 4, action: alert, proto: tcp, flow: to_client, content: "MATCH?"}
  - {id: 5, action: alert, proto: tcp, flow: [established, to_client], content: "MATCH?"}
"""))
    got = {}
    for e in r.alerts():
        conn = 5000 if 5000 in (e["src_port"], e["dest_port"]) else 5001
        got.setdefault((conn, e["direction"]), set()).add(e["alert"]["signature_id"])
    assert got == {(5000, "to_server"): {1, 3}, (5000, "to_client"): {1, 4, 5},
                   (5001, "to_server"): {2, 3}, (5001, "to_client"): {2, 4}}


def test_tcp_flags(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 6000, "10.0.0.2", 80)
    syn = c._seg(True, "S")
    synack = c._seg(False, "SA")
    ecn_syn = TcpConn(cap, "10.0.0.1", 6001, "10.0.0.2", 80)._seg(True, "SEC")
    null = TcpConn(cap, "10.0.0.1", 6002, "10.0.0.2", 80)._seg(True, "")
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, proto: tcp, tcp_flags: "S"}
  - {id: 2, action: alert, proto: tcp, tcp_flags: "S+"}
  - {id: 3, action: alert, proto: tcp, tcp_flags: "SA"}
  - {id: 4, action: alert, proto: tcp, tcp_flags: "S,CE"}
  - {id: 5, action: alert, proto: tcp, tcp_flags: "0"}
"""))
    got = {}
    for e in r.alerts():
        got.setdefault(e["pcap_cnt"], set()).add(e["alert"]["signature_id"])
    assert got == {syn: {1, 2, 4}, synack: {2, 3}, ecn_syn: {2, 4}, null: {5}}


def test_icmp_type_code(run, rules_file):
    cap = Capture()
    echo = cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=0, id=1)))
    unreach = cap.add(l2(IP(src="10.0.0.3", dst="10.0.0.1") / ICMP(type=3, code=3)))
    host_unreach = cap.add(l2(IP(src="10.0.0.4", dst="10.0.0.1") / ICMP(type=3, code=1)))
    v6 = cap.add(l2(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=3)))
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, proto: icmp, icmp_type: 8}
  - {id: 2, action: alert, proto: icmp, icmp_type: 3}
  - {id: 3, action: alert, proto: icmp, icmp_type: 3, icmp_code: 3}
  - {id: 4, action: alert, proto: icmp, icmp_code: 1}
  - {id: 5, action: alert, proto: icmpv6, icmp_type: 128}
"""))
    got = {}
    for e in r.alerts():
        got.setdefault(e["pcap_cnt"], set()).add(e["alert"]["signature_id"])
        assert "icmp_type" in e and "icmp_code" in e
    assert got == {echo: {1}, unreach: {2, 3}, host_unreach: {2, 4}, v6: {5}}


def test_content_forms(run, rules_file):
    cap = Capture()
    payloads = [b"GET /etc/passwd HTTP/1.1\r\n", b"xxGET /etc/shadow", b"get /ETC/PASSWD",
                b"\xde\xad\xbe\xef tail", b"HTTP/1.1 200 OK", b"  HTTP/1.1 200"]
    cnt = {}
    for i, p in enumerate(payloads):
        cnt[udp(cap, "10.0.0.1", "10.0.0.2", 7000 + i, 7777, p)] = p
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, content: "/etc/passwd"}
  - {id: 2, action: alert, content: {hex: "|de ad| be ef"}}
  - {id: 3, action: alert, content: {value: "/etc/passwd", nocase: true}}
  - {id: 4, action: alert, content: {value: "GET ", offset: 0, depth: 4}}
  - {id: 5, action: alert, content: {value: "GET ", offset: 2}}
  - {id: 6, action: alert, content: ["GET ", "passwd"]}
  - {id: 7, action: alert, content: {value: "HTTP/1.", offset: 0, depth: 7}}
  - {id: 8, action: alert, regex: "(?i)^get /etc/(passwd|shadow)"}
  - {id: 9, action: alert, regex: "\\\\x00|\\\\xde\\\\xad"}
"""))
    got = {}
    for e in r.alerts():
        got.setdefault(cnt[e["pcap_cnt"]], set()).add(e["alert"]["signature_id"])
    assert got == {
        payloads[0]: {1, 3, 4, 6, 8},
        payloads[1]: {5},
        payloads[2]: {3, 8},
        payloads[3]: {2, 9},
        payloads[4]: {7},
    }


def test_dns_query_udp_and_tcp_every_query(run, rules_file):
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.53", 8001, 53, dns_query(["Evil.Example."]))
    udp(cap, "10.0.0.1", "10.0.0.53", 8002, 53, dns_query(["evil.example.org"]))
    udp(cap, "10.0.0.1", "10.0.0.53", 8003, 53, dns_query(["ok.test", "A.B.Evil.Example"]))
    udp(cap, "10.0.0.1", "10.0.0.53", 8004, 53, dns_query(["example"]))
    t = TcpConn(cap, "10.0.0.1", 8005, "10.0.0.53", 53)
    t.handshake()
    msg = dns_query(["x.evil.example"])
    t.send(len(msg).to_bytes(2, "big") + msg[:5])          # the query split over two segments
    t.send(msg[5:])
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, dns_query: evil.example}
  - {id: 2, action: alert, dns_query: "*.evil.example"}
  - {id: 3, action: alert, dns_query: ["nothing.test", "ok.test"]}
  - {id: 4, action: alert, proto: tcp, dns_query: "*.example"}
"""))
    got = {}
    for e in r.alerts():
        got.setdefault(e["src_port"], set()).add(e["alert"]["signature_id"])
        assert e["app_proto"] == "dns" and e["dns"]["queries"]
    assert got == {8001: {1}, 8003: {2, 3}, 8005: {2, 4}}


def test_tls_sni_split_over_segments_and_records(run, rules_file):
    cap = Capture()
    hello = tls_records(client_hello("www.Example.COM"), record_size=30)   # 30-byte records
    a = TcpConn(cap, "10.0.0.1", 9001, "93.184.216.34", 443)
    a.handshake()
    for i in range(0, len(hello), 17):                     # 17-byte segments
        a.send(hello[i:i + 17])
    b = TcpConn(cap, "10.0.0.1", 9002, "93.184.216.34", 443)
    b.handshake()
    b.send(tls_records(client_hello("example.com.evil.net")))
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, tls_sni: "*.example.com"}
  - {id: 2, action: alert, tls_sni: "example.com"}
  - {id: 3, action: alert, proto: tcp, tls_sni: ["*.evil.net"]}
"""))
    got = {e["src_port"]: (e["alert"]["signature_id"], e["tls"]["sni"]) for e in r.alerts()}
    assert got == {9001: (1, "www.Example.COM"), 9002: (3, "example.com.evil.net")}
    assert len(r.alerts()) == 2                             # once per ClientHello


def test_http_host_with_port(run, rules_file):
    cap = Capture()
    a = TcpConn(cap, "10.0.0.1", 9101, "10.0.0.80", 8080)
    a.handshake()
    a.send(b"GET /x HTTP/1.1\r\nHost: Paste.EE:8080\r\nUser-Agent: t\r\n\r\n")
    b = TcpConn(cap, "10.0.0.1", 9102, "10.0.0.80", 80)
    b.handshake()
    b.send(b"GET / HTTP/1.1\r\nHost: a.pastebin.com\r\n\r\n")
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: alert, http_host: paste.ee}
  - {id: 2, action: alert, http_host: "*.pastebin.com"}
  - {id: 3, action: alert, http_host: pastebin.com}
"""))
    got = {e["src_port"]: e["alert"]["signature_id"] for e in r.alerts()}
    assert got == {9101: 1, 9102: 2}
    for e in r.alerts():
        assert e["app_proto"] == "http" and e["http"]["http_method"] == "GET"


def test_log_true_on_pass_and_drop(run, rules_file):
    """drop/reject rules alert (action blocked) unless log: false; pass rules only with log: true."""
    cap = Capture()
    udp(cap, "10.0.0.1", "10.0.0.2", 1, 53)
    udp(cap, "10.0.0.1", "10.0.0.2", 2, 23)
    udp(cap, "10.0.0.1", "10.0.0.2", 3, 24)
    udp(cap, "10.0.0.1", "10.0.0.2", 4, 25)
    udp(cap, "10.0.0.1", "10.0.0.2", 5, 26)
    udp(cap, "10.0.0.1", "10.0.0.2", 6, 27)
    r = run(cap, rules_file("""
rules:
  - {id: 1, action: pass, proto: udp, dst_port: 53, log: true}
  - {id: 2, action: drop, proto: udp, dst_port: 23, log: true}
  - {id: 3, action: drop, proto: udp, dst_port: 24}
  - {id: 4, action: pass, proto: udp, dst_port: 25}
  - {id: 5, action: drop, proto: udp, dst_port: 26, log: false}
  - {id: 6, action: reject, proto: udp, dst_port: 27}
"""))
    got = {e["alert"]["signature_id"]: e["alert"]["action"] for e in r.alerts()}
    assert got == {1: "allowed", 2: "blocked", 3: "blocked", 6: "blocked"}
    assert r.flow_action(dest_port=24) == "drop" and r.flow_action(dest_port=25) == "pass"
    assert r.flow_action(dest_port=26) == "drop"
    assert r.res.verdicts == {"pass": 2, "drop": 3, "reject": 1}
