"""Detection edges that one-line mutations of detect/ showed untested (python3 -m bench.mutate):
a regex found anywhere in the payload, `flow: established` on a flow that never shook hands but
is closing, a packet rule that fails on the last inspected packet handing over to the next
rule, header-only alerts once per direction, and the alert's transaction picked by the rule's
names (case-insensitive, `*.suffix` only below a dot)."""
import struct

from scapy.all import IP, UDP, Raw

from replaykit import Capture, TcpConn, dns_query, l2


def test_regex_is_searched_not_anchored(run, rules_file):
    cap = Capture()
    first = cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7001, dport=7777) / Raw(b"xx evil-42 yy")))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7002, dport=7777) / Raw(b"nothing here")))
    r = run(cap, rules_file('rules:\n  - {id: 1, action: alert, regex: "evil-[0-9]+"}\n'))
    assert [e["pcap_cnt"] for e in r.alerts(1)] == [first]


def test_established_needs_the_handshake_even_when_closing(run, rules_file):
    # Mid-stream: no handshake seen; a FIN moves the flow to "closing", which is not established.
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40001, "10.0.0.2", 8000)
    c.send(b"MATCH one")
    c.send(b"MATCH two", flags="FPA")
    shaken = TcpConn(cap, "10.0.0.1", 40002, "10.0.0.2", 8000)
    shaken.handshake()
    fin = shaken.send(b"MATCH three", flags="FPA")
    r = run(cap, rules_file("rules:\n  - {id: 1, action: alert, flow: established, content: MATCH}\n"))
    assert [e["pcap_cnt"] for e in r.alerts(1)] == [fin]


def test_packet_rule_unmatched_at_the_depth_hands_over_to_the_next_rule(run, rules_file):
    # depth 1: the first packet is the last look; the content rule fails, the port rule decides.
    cap = Capture()
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=7001, dport=9999) / Raw(b"hello")))
    r = run(cap, rules_file("rules:\n  - {id: 1, action: pass, content: hello-not}\n"
                            "  - {id: 2, action: drop, proto: udp, dst_port: 9999}\n"
                            "default_action: pass\n"), depth_packets=1)
    assert r.flow_action(src_port=7001) == "drop"


def test_header_alert_fires_once_per_direction(run, rules_file):
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40003, "10.0.0.2", 8000)
    c.handshake()
    c.send(b"a")
    c.send(b"b")
    c.recv(b"c")
    c.recv(b"d")
    # rule 3 (content) keeps the flow under inspection, so every packet reaches the alert walk
    r = run(cap, rules_file("rules:\n  - {id: 1, action: alert, proto: tcp, dst_port: 8000}\n"
                            "  - {id: 2, action: alert, proto: tcp, src_port: 8000}\n"
                            "  - {id: 3, action: alert, proto: tcp, content: never-sent}\n"))
    assert sorted(r.sids()) == [1, 2]
    assert r.insp.counters.fast_path == 0


def test_alert_names_the_transaction_its_pattern_matches(run, rules_file):
    # Two DNS-over-TCP messages in one segment are two transactions: the alert's dns object is
    # the one the pattern matched -- found case-insensitively, and "*.evil.example" is not
    # "xevil.example".
    cap = Capture()
    for i, (first, second) in enumerate((("WWW.EVIL.EXAMPLE", "other.example"),
                                         ("xevil.example", "a.evil.example"))):
        c = TcpConn(cap, "10.0.0.1", 40010 + i, "10.0.0.2", 53)
        c.handshake()
        m1, m2 = dns_query([first], qid=1), dns_query([second], qid=2)
        c.send(struct.pack("!H", len(m1)) + m1 + struct.pack("!H", len(m2)) + m2)
    r = run(cap, rules_file('rules:\n  - {id: 1, action: alert, dns_query: "*.evil.example"}\n'))
    named = sorted(q["rrname"] for e in r.alerts(1) for q in e["dns"]["queries"])
    assert named == ["WWW.EVIL.EXAMPLE", "a.evil.example"]
