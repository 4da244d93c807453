"""Suricata's payload and sticky-buffer keywords on crafted captures: each `.rules` rule
gives the alerts and verdicts its YAML form gives (one engine), programs on several HTTP
buffers hold within one request, and names the appliance cannot know are read against
the attacker (a drop rule on http.uri matches, a pass rule does not)."""
import pytest
from scapy.all import GRE, IP, UDP, Raw

from replaykit import CORPUS, Capture, TcpConn, client_hello, dns_query, l2, tls_records
from test_suricata_replay import same_events

HTTP = "198.51.100.80"


def http_capture(*requests):
    """One connection per entry; an entry is one request's bytes, or several (pipelined in one segment)."""
    cap = Capture()
    for i, req in enumerate(requests):
        c = TcpConn(cap, "10.0.0.1", 41000 + i, HTTP, 80)
        c.handshake()
        c.send(b"".join(req) if isinstance(req, tuple) else req)
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return cap


def req(method=b"GET", uri=b"/", host=b"a.example", agent=None):
    ua = b"User-Agent: " + agent + b"\r\n" if agent is not None else b""
    return method + b" " + uri + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + ua + b"\r\n"


def both(run, rules_file, cap, line, yaml):
    suri = run(cap, rules_file(line + "\n", "a.rules"))
    y = run(cap, rules_file("rules:\n  - " + yaml + "\n"))
    same_events(suri, y)
    return suri


def alerted_ports(r, sid):
    return sorted(e["src_port"] for e in r.alerts(sid))


def test_http_uri_relative_contents_and_method(run, rules_file):
    cap = http_capture(
        req(uri=b"/wp-content/x.php?a=1&cmd=id"),                      # 41000: fits
        req(method=b"POST", uri=b"/wp-content/x.php?cmd=id"),           # method differs
        req(uri=b"/blog/wp-content/x.php?cmd=id"),                      # not at the start
        req(uri=b"/wp-content/x.php?" + b"a" * 50 + b"cmd=id"),        # cmd= past within 40
        req(uri=b"/wp-c%6fntent/x.php?cmd=id"),                         # %6f = o: normalised uri
    )
    r = both(run, rules_file, cap,
             'alert http any any -> any any (msg:"shell"; flow:established,to_server; http.method; '
             'content:"GET"; bsize:3; http.uri; content:"/wp-content/"; startswith; content:".php?"; '
             'distance:0; content:"cmd="; distance:0; within:40; sid:1;)',
             "{id: 1, action: alert, msg: shell, proto: tcp, flow: [established, to_server], "
             "content: [{value: GET, buffer: http.method}, {value: /wp-content/, startswith: true, buffer: http.uri}, "
             "{value: '.php?', distance: 0, buffer: http.uri}, {value: cmd=, distance: 0, within: 40, buffer: http.uri}], "
             "bsize: {http.method: 3}}")
    assert alerted_ports(r, 1) == [41000, 41004]


def test_buffers_hold_within_one_request(run, rules_file):
    # pipelined: the user agent of one request and the uri of the other do not make a match
    cap = http_capture((req(uri=b"/admin", agent=b"Mozilla/5.0"), req(uri=b"/index", agent=b"curl/8.0")),
                       (req(uri=b"/index", agent=b"Mozilla/5.0"), req(uri=b"/admin", agent=b"curl/8.0")),
                       (req(uri=b"/admin", agent=b"curl/8.0"), req(uri=b"/index", agent=b"Mozilla/5.0")))
    r = both(run, rules_file, cap,
             'alert http any any -> any any (http.uri; content:"/admin"; http.user_agent; content:"curl/"; '
             'startswith; sid:2;)',
             "{id: 2, action: alert, proto: tcp, content: [{value: /admin, buffer: http.uri}, "
             "{value: curl/, startswith: true, buffer: http.user_agent}]}")
    assert alerted_ports(r, 2) == [41001, 41002]
    assert [e["http"]["url"] for e in r.alerts(2)] == ["/admin", "/admin"]   # the request that fit


def test_name_key_and_program_hold_within_one_request(run, rules_file):
    # the whole-name key (the fast path) and the uri program must fit the same request
    cap = http_capture((req(uri=b"/index", host=b"a.example"), req(uri=b"/x", host=b"b.example")),
                       (req(uri=b"/index", host=b"b.example"), req(uri=b"/x", host=b"a.example")))
    r = both(run, rules_file, cap,
             'alert http any any -> any any (http.host; content:"a.example"; startswith; endswith; http.uri; '
             'content:"/x"; sid:12;)',
             "{id: 12, action: alert, proto: tcp, http_host: a.example, content: {value: /x, buffer: http.uri}}")
    assert alerted_ports(r, 12) == [41001]


def test_pipelined_requests_against_pass_and_drop_on_http_uri(run, rules_file):
    """A drop rule matches when any request fits; a pass rule only when every one does."""
    cap = http_capture((req(uri=b"/ok/1"), req(uri=b"/evil")),          # 41000
                       (req(uri=b"/ok/1"), req(uri=b"/ok/2")))          # 41001
    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 1, action: pass, proto: tcp, content: {value: /ok/, startswith: true, "
                       "buffer: http.uri}}\n")
    r = run(cap, allow)
    assert [r.flow_action(src_port=p) for p in (41000, 41001)] == ["drop", "pass"]
    block = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: {value: /evil, buffer: http.uri}}\n")
    r = run(cap, block)
    assert [r.flow_action(src_port=p) for p in (41000, 41001)] == ["drop", "pass"]


def test_ambiguous_stream_against_pass_and_drop_on_http_uri(run, rules_file, tmp_path):
    """A stream that reads two ways: under exception_policy drop the uri is unknown, which
    matches the drop rule and not the pass rule; under ignore, Linux's reading decides."""
    from test_receiver_evasion import A, B, handshake, seg
    good = b"GET /ok/index HTTP/1.1\r\nHost: a.example\r\n\r\n"
    evil = b"GET /evil/idx HTTP/1.1\r\nHost: a.example\r\n\r\n"
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1 + 4, B + 1, evil[4:14])       # queued out of order first
    seg(cap, True, "PA", A + 1, B + 1, good)                  # the in-order copy covers it
    drop = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, content: {value: /evil, buffer: http.uri}}\n")
    allow = rules_file("default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, "
                       "content: {value: /ok/, startswith: true, buffer: http.uri}}\n")
    assert run(cap, drop).of("flow")[0]["flow"]["action"] == "drop"
    assert run(cap, allow).of("flow")[0]["flow"]["action"] == "drop"
    assert run(cap, drop, exception_policy="ignore").of("flow")[0]["flow"]["action"] == "pass"
    assert run(cap, allow, exception_policy="ignore").of("flow")[0]["flow"]["action"] == "pass"


def test_http_host_substring_and_pcre_on_uri_drop(run, rules_file):
    cap = http_capture(req(uri=b"/files/setup.EXE", host=b"eu-cdn-dl.example"),     # drop
                       req(uri=b"/files/setup.exe.txt", host=b"eu-cdn-dl.example"),  # $ anchors
                       req(uri=b"/files/setup.exe", host=b"cdn.example"))            # host differs
    r = both(run, rules_file, cap,
             'drop http $HOME_NET any -> $EXTERNAL_NET any (msg:"dl"; flow:established,to_server; http.host; '
             'content:"-cdn-dl."; fast_pattern; http.uri; pcre:"/\\.(exe|dll)$/i"; sid:3;)',
             "{id: 3, action: drop, log: true, msg: dl, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, "
             "flow: [established, to_server], content: [{value: -cdn-dl., fast_pattern: true, buffer: http.host}, "
             "{pcre: '/\\.(exe|dll)$/i', buffer: http.uri}]}")
    assert [r.flow_action(src_port=p) for p in (41000, 41001, 41002)] == ["drop", "pass", "pass"]


def test_urilen_and_legacy_modifiers(run, rules_file):
    cap = http_capture(req(uri=b"/a/../x?q"), req(uri=b"/abcdefghijkl"), req(method=b"PUT", uri=b"/x"))
    r = both(run, rules_file, cap,
             'alert tcp any any -> any 80 (content:"GET"; http_method; uricontent:"x"; urilen:<8; sid:4;)',
             "{id: 4, action: alert, proto: tcp, dst_port: 80, content: [{value: GET, buffer: http.method}, "
             "{value: x, buffer: http.uri}], urilen: '<8'}")
    assert alerted_ports(r, 4) == [41000]                      # normalised "/x?q" is 4 long
    r = run(cap, rules_file('alert tcp any any -> any 80 (uricontent:"x"; urilen:<8,raw; sid:4;)\n', "b.rules"))
    assert alerted_ports(r, 4) == [41002]                      # raw "/a/../x?q" is 9


def test_dns_query_substring_case_and_negation(run, rules_file):
    cap = Capture()
    names = ["Xmr-Pool.example", "xmr-pool.example", "a.xmr-pool.test-zone", "pool.example"]
    for i, name in enumerate(names):
        cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.53") / UDP(sport=5300 + i, dport=53) / Raw(dns_query([name]))))
    r = both(run, rules_file, cap,
             'alert dns any any -> any any (dns.query; content:"xmr-pool"; content:!".test-zone"; endswith; sid:5;)',
             "{id: 5, action: alert, content: [{value: xmr-pool, buffer: dns.query}, "
             "{value: .test-zone, not: true, endswith: true, buffer: dns.query}]}")
    # as sent (Suricata's) and case-folded (the resolver's): "Xmr-Pool" is xmr-pool to a resolver
    assert alerted_ports(r, 5) == [5300, 5301]


def test_tls_sni_relative_contents(run, rules_file):
    cap = Capture()
    for i, sni in enumerate(("secure-login.bank.example", "login.example", "secure-login.example.org")):
        c = TcpConn(cap, "10.0.0.1", 40100 + i, "203.0.113.5", 443)
        c.handshake()
        c.send(tls_records(client_hello(sni)))
    r = both(run, rules_file, cap,
             'alert tls any any -> any any (tls.sni; content:"secure-login"; content:".example"; distance:0; '
             'endswith; sid:6;)',
             "{id: 6, action: alert, proto: tcp, content: [{value: secure-login, buffer: tls.sni}, "
             "{value: .example, distance: 0, endswith: true, buffer: tls.sni}]}")
    assert alerted_ports(r, 6) == [40100]


def test_dsize_ttl_ip_proto(run, rules_file):
    cap = Capture()
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2", ttl=2) / UDP(sport=7000, dport=9) / Raw(b"x" * 10)))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2", ttl=64) / UDP(sport=7001, dport=9) / Raw(b"x" * 10)))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2", ttl=2) / UDP(sport=7002, dport=9) / Raw(b"x" * 30)))
    cap.add(l2(IP(src="10.0.0.1", dst="10.0.0.2", ttl=1) / GRE() / Raw(b"y" * 10)))
    r = both(run, rules_file, cap,
             "alert ip any any -> any any (dsize:5<>20; ttl:<3; ip_proto:!gre; sid:7;)",
             "{id: 7, action: alert, dsize: 5<>20, ttl: '<3', ip_proto: '!gre'}")
    assert [e.get("src_port") for e in r.alerts(7)] == [7000]
    r = run(cap, rules_file("rules:\n  - {id: 8, action: alert, ip_proto: gre}\n"))
    assert len(r.alerts(8)) == 1                                # only the GRE packet


def test_payload_program_drop(run, rules_file):
    cap = Capture()
    for i, data in enumerate((b"\xde\xad\xbe\xef" + b"12345678", b"\xde\xad\xbe\xef" + b"HTTP/1.1 200",
                              b"\xde\xad\xbe\xef" + b"123")):
        c = TcpConn(cap, "10.0.0.1", 40200 + i, "203.0.113.9", 4444)
        c.handshake()
        c.send(data)
    r = both(run, rules_file, cap,
             'drop tcp $HOME_NET any -> $EXTERNAL_NET 4444 (flow:established,to_server; dsize:<120; '
             'content:"|de ad be ef|"; depth:4; content:!"HTTP/1."; isdataat:8,relative; sid:9;)',
             "{id: 9, action: drop, log: true, proto: tcp, src: $HOME_NET, dst: $EXTERNAL_NET, dst_port: 4444, "
             "flow: [established, to_server], dsize: '<120', content: [{hex: deadbeef, depth: 4}, "
             "{value: HTTP/1., not: true}, {isdataat: 8, relative: true}]}")
    assert [r.flow_action(src_port=p) for p in (40200, 40201, 40202)] == ["drop", "pass", "pass"]


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent")
def test_corpus_http_uri_and_user_agent(run, rules_file):
    pcap = CORPUS / "zeek/testing/btest/Traces/http/get.pcap"
    r = both(run, rules_file, pcap,
             'alert http any any -> any any (http.method; content:"GET"; http.uri; content:"/"; startswith; '
             'http.host; content:"bro"; sid:10;)',
             "{id: 10, action: alert, proto: tcp, content: [{value: GET, buffer: http.method}, "
             "{value: /, startswith: true, buffer: http.uri}, {value: bro, buffer: http.host}]}")
    assert len(r.alerts(10)) >= 1
    r = run(pcap, rules_file('alert http any any -> any any (http.host; content:"nomatch"; sid:11;)\n', "n.rules"))
    assert r.alerts(11) == []


@pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus absent")
def test_corpus_drop_on_uri_and_user_agent(run, rules_file):
    """http.pcap.gz: GET /download.html (port 3372), and a flow picked up mid-stream (3371),
    whose request cannot be known: the drop rule matches it too, unless exception_policy
    is ignore."""
    pcap = CORPUS / "local/http.pcap.gz"
    line = ('drop http any any -> any any (msg:"dl"; http.uri; '
            'content:"/download"; startswith; content:".html"; distance:0; endswith; http.user_agent; '
            'content:"Gecko/"; pcre:"/rv:1\\.[0-9]/V"; sid:13;)')
    r = both(run, rules_file, pcap, line,
             "{id: 13, action: drop, log: true, msg: dl, proto: tcp, "
             "content: [{value: /download, startswith: true, buffer: http.uri}, {value: .html, distance: 0, "
             "endswith: true, buffer: http.uri}, {value: Gecko/, buffer: http.user_agent}, "
             "{pcre: '/rv:1\\.[0-9]/V'}]}")
    assert [a["http"]["url"] for a in r.alerts(13) if "http" in a] == ["/download.html"]
    assert [r.flow_action(src_port=p) for p in (3372, 3371)] == ["drop", "drop"]
    r = run(pcap, rules_file(line + "\n", "b.rules"), exception_policy="ignore")
    assert [r.flow_action(src_port=p) for p in (3372, 3371)] == ["drop", "pass"]
