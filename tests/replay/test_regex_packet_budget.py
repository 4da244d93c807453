"""One packet's regex searches share one time bound (REGEX_TIME, Detector.limits[2]), as
its programs share PACKET_STEPS: 20 rules whose pcre backtracks cost one search's bound,
not 20 (review: 20 such .rules held one 1,400-byte datagram ~2 s). Past the bound every
further regex answer on the packet is unknown, read against the attacker. Counted here:
the bounded engine's searches that ran (sys.setprofile sees each call into it), and the
verdicts -- never the time."""
import sys

import regex

from replaykit import UDP, Capture, TcpConn, ip_of, l2

PATTERN = type(regex.compile(b"a"))
SPIN = "(x+x+)+y{}$"               # `$` keeps it off RE2; on "x" * 1400 it reaches any bound


def bounded_searches(fn):
    """fn() and the number of searches the bounded regex engine ran meanwhile."""
    n = [0]

    def count(frame, event, arg):
        if event == "c_call" and getattr(arg, "__name__", "") == "search" and \
                type(getattr(arg, "__self__", None)) is PATTERN:
            n[0] += 1
    sys.setprofile(count)
    try:
        out = fn()
    finally:
        sys.setprofile(None)
    return out, n[0]


def datagrams(n):
    """n 1,400-byte UDP datagrams of "x", each its own flow."""
    cap = Capture()
    for i in range(n):
        cap.add(l2(ip_of("10.0.0.2", "10.0.0.1") / UDP(sport=40000 + i, dport=9999) / (b"x" * 1400)))
    return cap


def engine_anomalies(r):
    return [a["anomaly"]["event"] for a in r.of("anomaly") if a["anomaly"]["layer"] == "engine"]


def test_twenty_backtracking_rules_cost_one_search_per_packet(run, rules_file):
    rules = rules_file("".join(f'alert udp any any -> any any (msg:"bt {i}"; content:"xx"; '
                               f'pcre:"/{SPIN.format(i)}/"; sid:{1000 + i};)\n' for i in range(20)), "bt.rules")
    r, searches = bounded_searches(lambda: run(datagrams(3), rules))
    assert searches == 3               # one per packet (each packet gets its own bound); before: 60
    assert len(r.alerts()) == 60       # unknown: each alert rule holds, on every packet
    assert set(engine_anomalies(r)) == {"detect.inspection_limit"}


def test_past_the_packets_regex_time_a_pass_rule_does_not_hold(run, rules_file):
    """The second pass rule's regex would match at once; it runs after the first spent the
    packet's regex time, so its answer is unknown too: not passed (pcre and `regex` key).
    depth_packets=1: the packet is the flow's last inspected one, no rule stays pending."""
    for second in ("content: [{value: xx}, {pcre: '/x$/'}]", "regex: 'x$'"):
        rules = rules_file("default_action: drop\nrules:\n"
                           f"  - {{id: 1, action: pass, proto: udp, content: [{{value: xx}}, {{pcre: '/{SPIN.format('')}/'}}]}}\n"
                           f"  - {{id: 2, action: pass, proto: udp, {second}}}\n")
        r, searches = bounded_searches(lambda: run(datagrams(1), rules, depth_packets=1))
        assert searches == 1, second
        assert r.flow_action(src_port=40000) == "drop", second
        assert engine_anomalies(r) == ["detect.inspection_limit"], second
    alone = rules_file("default_action: drop\nrules:\n  - {id: 2, action: pass, proto: udp, regex: 'x$'}\n")
    assert run(datagrams(1), alone, depth_packets=1).flow_action(src_port=40000) == "pass"    # within the bound: the answer


def test_file_data_programs_share_the_packets_regex_time(run, rules_file):
    """Rules on an HTTP body are judged on the packet that brings it: the same bound."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 42000, "198.51.100.80", 80)
    c.handshake()
    c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 1400\r\n\r\n" + b"x" * 1400)
    c.close()
    rules = rules_file("".join(f'alert http any any -> any any (msg:"bt {i}"; flow:established,to_client; '
                               f'file_data; content:"xx"; pcre:"/{SPIN.format(i)}/"; sid:{1000 + i};)\n'
                               for i in range(20)), "body.rules")
    r, searches = bounded_searches(lambda: run(cap, rules))
    assert searches == 1               # before: 20, and no anomaly
    assert len(r.alerts()) == 20
    assert engine_anomalies(r) == ["detect.inspection_limit"]
