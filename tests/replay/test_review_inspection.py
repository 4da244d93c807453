"""Adversarial review of buffer inspection (issue 10, rev2): each test is a finding that
failed before its fix -- the rule's other conditions on a content program, the work one
payload can cost a rule (pcre, content backtracking), and the URI spellings a server maps
onto the path a rule names."""
from replaykit import Capture, TcpConn
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

HTTP = "198.51.100.80"


def tcp_capture(*payloads, dport=80, then=0):
    """One connection per payload (client -> server), answered; `then` more small
    segments each way (past the inspection depth, pending rules resolve)."""
    cap = Capture()
    for i, p in enumerate(payloads):
        c = TcpConn(cap, "10.0.0.1", 42000 + i, HTTP, dport)
        c.handshake()
        c.send(p)
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        for _ in range(then):
            c.send(b"x")
            c.recv(b"y")
    return cap


def test_flowbits_isset_holds_for_a_rule_with_a_relative_content(run, rules_file):
    """A content program (distance/within, negation, pcre ...) is one of the rule's
    conditions, not all of them: flowbits isset (and detection_filter) still apply."""
    cap = tcp_capture(b"GET /a HTTP/1.1\r\n\r\n")
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: tcp, flowbits: [{isset: never}], "
                       "content: [{value: GET}, {value: /a, distance: 1}]}\n"
                       "  - {id: 2, action: alert, proto: tcp, flowbits: [{isset: never}], content: GET}\n")
    r = run(cap, rules)
    assert r.alerts(1) == [] and r.alerts(2) == []


def engine_anomalies(r):
    return [a["anomaly"]["event"] for a in r.of("anomaly") if a["anomaly"]["layer"] == "engine"]


def test_a_backtracking_pcre_cannot_stall_the_worker_nor_pass_the_attacker(run, rules_file):
    """An ET-shaped pcre runs on RE2: the hostile payload costs a linear scan (before: 56 s
    for 1.4 KB on Python's re). A pcre RE2 cannot run (a backreference) is time-bounded;
    at the bound the drop rule matches, the pass rule does not, with an anomaly."""
    chain = b"POST /q HTTP/1.1\r\n\r\n" + b"select from where " * 80 + b"union"
    backref = b"POST /q HTTP/1.1\r\n\r\n" + b"a" * 60 + b"?"
    r = run(tcp_capture(chain), rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: "
                                           "[{value: POST}, {pcre: '/.*?select.*?from.*?where.*?union/si'}]}\n"))
    assert r.flow_action(src_port=42000) == "drop" and engine_anomalies(r) == []
    drop = rules_file("rules:\n  - {id: 2, action: drop, proto: tcp, content: [{value: POST}, {pcre: '/^(a|a)*\\1$/m'}]}\n")
    r = run(tcp_capture(backref), drop)
    assert r.flow_action(src_port=42000) == "drop"
    assert engine_anomalies(r) == ["detect.inspection_limit"]
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, "
                       "content: [{value: POST}, {pcre: '/^(a|a)*\\1$/m', not: true}]}\n")
    r = run(tcp_capture(backref, then=10), allow)
    assert r.flow_action(src_port=42000) == "drop"
    assert engine_anomalies(r) == ["detect.inspection_limit"]


def test_repeating_a_rules_first_content_does_not_hide_the_attack(run, rules_file):
    """Suricata's recursion limit says "no match": "ab" x 1500 before "abc" hid it from
    the drop rule. At the limit the answer is unknown, read against the attacker."""
    cap = tcp_capture(b"ab" * 1500 + b"abc", b"ab" * 20 + b"abc", b"ab" * 1500)
    drop = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: [{value: a}, "
                      "{value: b, distance: 0, within: 1}, {value: c, distance: 0, within: 1}]}\n")
    r = run(cap, drop)
    assert [r.flow_action(src_port=p) for p in (42000, 42001)] == ["drop", "drop"]
    assert "detect.inspection_limit" in engine_anomalies(r)


def get(target):
    return b"GET " + target + b" HTTP/1.1\r\nHost: a.example\r\n\r\n"


# request targets a server maps onto /admin (nginx/Apache/http.server: "//", "#";
# Tomcat/Jetty: ";"; IIS: "\", %u, overlong UTF-8)
ADMIN = [b"//admin", b"/x/..//admin", b"/admin#.jpg", b"/public/..;/admin", b"\\admin", b"/%u0061dmin",
         b"/x/%c0%ae%c0%ae/admin", b"/a/..//admin"]


def test_a_drop_rule_on_http_uri_sees_the_spellings_servers_map_onto_its_path(run, rules_file):
    cap = tcp_capture(*(get(t) for t in ADMIN), get(b"/index.html"))
    drop = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: {value: /admin, startswith: true, "
                      "buffer: http.uri}}\n")
    r = run(cap, drop)
    assert [r.flow_action(src_port=42000 + i) for i in range(len(ADMIN) + 1)] == ["drop"] * len(ADMIN) + ["pass"]


def test_a_pass_rule_on_http_uri_holds_only_when_every_reading_fits(run, rules_file):
    """An allow-list of /public/*.jpg: a spelling a server maps elsewhere is not allowed."""
    targets = [b"/public/a.jpg", b"/public/..;/admin.jpg", b"/public/admin;.jpg", b"/public/x#/../../admin.jpg",
               b"/public/..\\admin.jpg", b"/public/admin%00.jpg"]
    cap = tcp_capture(*(get(t) for t in targets), then=10)
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, content: ["
                       "{value: /public/, startswith: true, buffer: http.uri}, "
                       "{value: .jpg, endswith: true, buffer: http.uri}]}\n")
    r = run(cap, allow)
    assert [r.flow_action(src_port=42000 + i) for i in range(len(targets))] == ["pass"] + ["drop"] * 5


def test_a_rule_that_matched_while_an_earlier_one_pended_decides_when_that_one_does_not(run, rules_file):
    """Rules decide in order, and a pending earlier rule holds later ones back; a later
    drop rule that matched meanwhile was judged again only on the packet that resolved the
    earlier one, and forgotten: any earlier content rule hid it."""
    cap = tcp_capture(b"POST /evil HTTP/1.1\r\n\r\n", b"POST /evil HTTP/1.1\r\n\r\n", then=10)
    rules = rules_file("rules:\n  - {id: 1, action: pass, proto: tcp, content: NEVER}\n"
                       "  - {id: 2, action: drop, proto: tcp, content: /evil}\n"
                       "  - {id: 3, action: pass, proto: tcp, content: [{value: POST}, {value: /evil, distance: 0}]}\n")
    r = run(cap, rules)
    assert r.flow_action(src_port=42000) == "drop"      # once rule 1's depth is reached
    # an earlier pass rule that does match still wins (the order holds)
    first = rules_file("rules:\n  - {id: 3, action: pass, proto: tcp, content: NEVER}\n"
                       "  - {id: 4, action: pass, proto: tcp, content: POST}\n"
                       "  - {id: 2, action: drop, proto: tcp, content: /evil}\n")
    assert run(cap, first).flow_action(src_port=42001) == "pass"


def test_a_later_drop_rule_blocks_at_once_when_only_drop_rules_pend_before_it(rules_file):
    """Whichever of them decides, the flow is dropped: the packet that matched is dropped,
    not let through while the earlier drop rule waits for its depth."""
    cap = tcp_capture(b"POST /evil HTTP/1.1\r\n\r\n", then=2)
    rules = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: NEVER}\n"
                       "  - {id: 2, action: drop, proto: tcp, content: /evil}\n")
    insp = Inspector(load_rules(rules), Settings())
    verdicts = [insp.process(decode_frame(buf, cap.linktype, ts)).action for ts, buf in cap.frames]
    assert verdicts[:4] == ["pass", "pass", "pass", "drop"]          # handshake, then the request
    allow_first = rules_file("rules:\n  - {id: 1, action: pass, proto: tcp, content: NEVER}\n"
                             "  - {id: 2, action: drop, proto: tcp, content: /evil}\n", "b.yaml")
    insp = Inspector(load_rules(allow_first), Settings())
    verdicts = [insp.process(decode_frame(buf, cap.linktype, ts)).action for ts, buf in cap.frames]
    assert verdicts[3] == "pass"                 # an earlier pass rule may still match: it waits


def test_every_user_agent_reading_is_judged(run, rules_file):
    """A second User-Agent line, or an obs-folded one: nginx's $http_user_agent is the
    first, Apache hands the application all of them joined with ", ", a lax server a
    folded line's continuation. The rule saw only the first line."""
    def ua(*lines):
        return b"GET / HTTP/1.1\r\nHost: a.example\r\n" + b"".join(lines) + b"\r\n"
    cap = tcp_capture(ua(b"User-Agent: Mozilla/5.0\r\n", b"User-Agent: sqlmap/1.7\r\n"),
                      ua(b"User-Agent: Mozilla/5.0\r\n", b" sqlmap/1.7\r\n"),
                      ua(b"User-Agent: Mozilla/5.0\r\n"), then=10)
    drop = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: {value: sqlmap, buffer: http.user_agent}}\n")
    r = run(cap, drop)
    assert [r.flow_action(src_port=42000 + i) for i in range(3)] == ["drop", "drop", "pass"]
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, "
                       "content: {value: Mozilla/5.0, startswith: true, endswith: true, buffer: http.user_agent}}\n")
    r = run(cap, allow)
    assert [r.flow_action(src_port=42000 + i) for i in range(3)] == ["drop", "drop", "pass"]


def test_a_lowercase_method_is_read_both_ways(run, rules_file):
    """"post" is no POST to nginx (400), but Go's net/http hands it to a handler that may
    not check the method: a drop rule on POST holds for it, a pass rule on GET does not."""
    def req(method):
        return method + b" /upload HTTP/1.1\r\nHost: a.example\r\n\r\n"
    cap = tcp_capture(req(b"post"), req(b"POST"), req(b"get"), req(b"GET"), then=10)
    drop = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: {value: POST, startswith: true, "
                      "endswith: true, buffer: http.method}}\n")
    r = run(cap, drop)
    assert [r.flow_action(src_port=42000 + i) for i in range(4)] == ["drop", "drop", "pass", "pass"]
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, "
                       "content: {value: GET, startswith: true, endswith: true, buffer: http.method}}\n")
    r = run(cap, allow)
    assert [r.flow_action(src_port=42000 + i) for i in range(4)] == ["drop", "drop", "drop", "pass"]


def test_dns_and_tls_names_are_also_read_as_servers_match_them(run, rules_file):
    """Resolvers and TLS servers match names case-insensitively, and without a trailing
    root dot: a drop rule on "evil.example" held not for "EVIL.example." (0x20 encoding);
    a pass rule on "good.example" needs both readings to fit."""
    from scapy.all import IP, UDP, Raw
    from replaykit import client_hello, dns_query, l2, tls_records
    cap = Capture()
    for i, name in enumerate(["EVIL.example", "evil.example", "good.example"]):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5300 + i, dport=53) / Raw(dns_query([name]))))
    for i, sni in enumerate(["eViL.example.", "evil.example", "GOOD.example", "good.example"]):
        c = TcpConn(cap, "10.0.0.1", 40100 + i, "203.0.113.5", 443)
        c.handshake()
        c.send(tls_records(client_hello(sni)))
        for _ in range(10):
            c.send(b"x")
            c.recv(b"y")
    drop = rules_file("rules:\n  - {id: 1, action: drop, content: {value: evil.example, endswith: true, buffer: dns.query}}\n"
                      "  - {id: 2, action: drop, proto: tcp, content: {value: evil.example, endswith: true, buffer: tls.sni}}\n")
    r = run(cap, drop)
    assert [r.flow_action(src_port=5300 + i) for i in range(3)] == ["drop", "drop", "pass"]
    assert [r.flow_action(src_port=40100 + i) for i in range(4)] == ["drop", "drop", "pass", "pass"]
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, "
                       "content: {value: good.example, startswith: true, endswith: true, buffer: tls.sni}}\n")
    r = run(cap, allow)
    assert [r.flow_action(src_port=40100 + i) for i in range(4)] == ["drop", "drop", "drop", "pass"]


def test_other_directions_header_alert_keeps_the_flow_until_it_fires(run, rules_file):
    """A header-only alert rule on the server's direction: the flow is decided (default
    pass) on its SYN, but stays inspected until the server's first packet fired the rule
    (engine.more_to_inspect); offloaded at the SYN, the alert would never come."""
    from replaykit import Capture, TcpConn
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 40000, "198.51.100.80", 80)
    c.handshake()
    c.close()
    r = run(cap, rules_file('alert tcp any 80 -> any any (msg:"from the server"; sid:9;)\n', "a.rules"),
            eve_types=("alert", "flow"))      # (no protocol log keeps the flow)
    assert [e["src_port"] for e in r.alerts(9)] == [80]
