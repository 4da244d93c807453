"""http.stat_code: the 3-digit status of a transaction's HTTP response, on crafted captures.

A rule on it is judged on the server's packet that completes the status line, on the
transaction(s) that packet answers: alert rules fire then (once per answering packet),
a drop/reject rule decides the flow there (the response is dropped: the request already
reached the server), a pass rule waits for the status. Request buffers in the same rule
must fit the same transaction. The server's side is read for these rules whether or not
the http protocol log is on. A response that never comes matches nothing; one the
appliance cannot read is read against the attacker (exception_policy).
"""
from replaykit import Capture, TcpConn
from test_suricata_match import both

from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

HTTP = "198.51.100.80"
ALERT_403 = ('alert http $EXTERNAL_NET any -> $HOME_NET any (msg:"forbidden"; flow:established,to_client; '
             'http.stat_code; content:"403"; sid:1;)')
ALERT_403_YAML = ("{id: 1, action: alert, msg: forbidden, proto: tcp, src: '!$HOME_NET', dst: $HOME_NET, "
                  "flow: [established, to_client], content: {value: '403', buffer: http.stat_code}}")


def req(uri=b"/", host=b"a.example", close=False):
    return (b"GET " + uri + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
            + (b"Connection: close\r\n" if close else b"") + b"\r\n")


def resp(code, body=b""):
    reason = {200: b"OK", 403: b"Forbidden", 404: b"Not Found", 500: b"Server Error"}[code]
    return b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\n\r\n" % (code, reason, len(body)) + body


def conversation(cap, port, exchanges, pipelined=False, fin=True):
    """One connection: (request, response or None) pairs; pipelined: the requests in one
    segment first ("ahead": each in its own segment), then each response in its own segment."""
    c = TcpConn(cap, "10.0.0.1", port, HTTP, 80)
    c.handshake()
    if pipelined == "ahead":
        for q, _ in exchanges:
            c.send(q)
        for _, r in exchanges:
            if r is not None:
                c.recv(r)
    elif pipelined:
        c.send(b"".join(q for q, _ in exchanges))
        for _, r in exchanges:
            if r is not None:
                c.recv(r)
    else:
        for q, r in exchanges:
            c.send(q)
            if r is not None:
                c.recv(r)
    if fin:
        c.close()
    return c


def alerted_ports(r, sid):
    """The client ports of a rule's alerts (fired on the server's packets: dest_port)."""
    return sorted(e["dest_port"] for e in r.alerts(sid))


def feed(cap, rules, **settings):
    """Each packet's verdict (live order), and the anomaly names found."""
    insp = Inspector(load_rules(rules), Settings(**settings))
    verdicts, found = [], []
    for ts, buf in cap.frames:
        verdicts.append(insp.process(decode_frame(buf, cap.linktype, ts)))
        found.extend(name for name, _ in insp._found)
    return verdicts, found


def test_alert_fires_once_per_matching_transaction(run, rules_file):
    cap = Capture()
    conversation(cap, 41000, [(req(b"/a"), resp(403)), (req(b"/b"), resp(200)), (req(b"/c"), resp(403))])
    conversation(cap, 41001, [(req(b"/d"), resp(200)), (req(b"/e"), resp(403)), (req(b"/f"), resp(404))],
                 pipelined=True)
    conversation(cap, 41002, [(req(b"/g"), resp(200))])
    conversation(cap, 41003, [(req(b"/h"), resp(403)), (req(b"/i"), resp(200))], pipelined="ahead")
    r = both(run, rules_file, cap, ALERT_403, ALERT_403_YAML)
    assert alerted_ports(r, 1) == [41000, 41000, 41001, 41003]
    # the alert carries the transaction it fired on (not the client's latest), on the server's packet
    assert [(e["http"]["url"], e["http"]["status"], e["direction"]) for e in r.alerts(1)] == \
        [("/a", 403, "to_client"), ("/c", 403, "to_client"), ("/e", 403, "to_client"), ("/h", 403, "to_client")]


def test_request_buffers_and_status_fit_one_transaction(run, rules_file):
    cap = Capture()
    conversation(cap, 41000, [(req(b"/admin"), resp(200)), (req(b"/index"), resp(403))])   # no
    conversation(cap, 41001, [(req(b"/index"), resp(403)), (req(b"/admin"), resp(200))],
                 pipelined=True)                                                         # no
    conversation(cap, 41002, [(req(b"/index"), resp(200)), (req(b"/admin"), resp(403))])   # yes
    r = both(run, rules_file, cap,
             'alert http any any -> any any (http.uri; content:"/admin"; startswith; http.stat_code; '
             'content:"403"; sid:2;)',
             "{id: 2, action: alert, proto: tcp, content: [{value: /admin, startswith: true, buffer: http.uri}, "
             "{value: '403', buffer: http.stat_code}]}")
    assert alerted_ports(r, 2) == [41002]
    assert [e["http"]["url"] for e in r.alerts(2)] == ["/admin"]


def test_pcre_flag_and_legacy_modifier(run, rules_file):
    cap = Capture()
    conversation(cap, 41000, [(req(), resp(500))])
    conversation(cap, 41001, [(req(), resp(404))])
    conversation(cap, 41002, [(req(), resp(200))])
    r = run(cap, rules_file('alert http any any -> any any (pcre:"/^5\\d\\d$/S"; sid:3;)\n'
                            'alert http any any -> any any (content:"40"; http_stat_code; depth:2; sid:4;)\n',
                            "a.rules"))
    assert alerted_ports(r, 3) == [41000]
    assert alerted_ports(r, 4) == [41001]


def test_drop_decides_the_flow_at_the_response(rules_file):
    cap = Capture()
    conversation(cap, 41000, [(req(b"/a"), resp(200)), (req(b"/secret"), resp(403)), (req(b"/c"), resp(200))])
    rules = rules_file('drop http any any -> any any (msg:"no 403"; http.stat_code; content:"403"; sid:5;)\n',
                       "a.rules")
    verdicts, _ = feed(cap, rules)
    # handshake 3, req, 200, req (it reaches the server), then the 403 is dropped, and all after it
    assert [v.action for v in verdicts] == ["pass"] * 6 + ["drop"] * 6
    assert [r.id for r in verdicts[6].alerts] == [5]           # drop rules log (action blocked)
    assert verdicts[6].offload
    rules = rules_file('reject http any any -> any any (http.stat_code; content:"403"; sid:5;)\n', "b.rules")
    verdicts, _ = feed(cap, rules)
    assert [v.action for v in verdicts] == ["pass"] * 6 + ["reject"] + ["drop"] * 5   # a RST to the server


def test_pending_status_rule_and_later_rules(rules_file):
    """A drop rule on the status waits for the response; a later drop rule that matches the
    request decides at once (the request never reaches the server); a pass rule on the
    status waits too, and the default decides only when no rule matched the status."""
    cap = Capture()
    conversation(cap, 41000, [(req(host=b"evil.example"), resp(200))])
    rules = rules_file("rules:\n"
                       "  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n"
                       "  - {id: 7, action: drop, proto: tcp, http_host: evil.example}\n")
    verdicts, _ = feed(cap, rules)
    assert [v.action for v in verdicts][3:5] == ["drop", "drop"]      # the request, then the 200
    assert [r.id for r in verdicts[3].alerts] == [7]

    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 8, action: pass, proto: tcp, content: {value: '200', buffer: http.stat_code}}\n")
    cap = Capture()
    conversation(cap, 41000, [(req(b"/ok"), resp(200)), (req(b"/gone"), resp(404))])
    verdicts, _ = feed(cap, allow)
    assert [v.action for v in verdicts] == ["pass"] * 6 + ["drop"] * 4   # pending, 200 passes; 404: default


def test_protocol_logs_off_still_reads_the_status(run, rules_file):
    cap = Capture()
    # (the last request is never answered, nor the connection closed: it waits to the end)
    conversation(cap, 41000, [(req(b"/a"), resp(200)), (req(b"/b"), resp(403)), (req(b"/c"), None)], fin=False)
    rules = rules_file(ALERT_403 + "\n", "a.rules")
    r = run(cap, rules, eve_types=("alert", "flow"))
    assert alerted_ports(r, 1) == [41000]
    assert r.alerts(1)[0]["http"]["status"] == 403
    assert not r.of("http")
    drop = rules_file('drop http any any -> any any (http.stat_code; content:"403"; sid:5;)\n', "b.rules")
    assert run(cap, drop, eve_types=("flow",)).flow_action(src_port=41000) == "drop"


def test_status_is_read_past_the_yaml_depth(rules_file):
    """A verdict rule on the status holds the flow inspected until each answer is read,
    past the 16-packet YAML inspection depth."""
    cap = Capture()
    conversation(cap, 41000, [(req(b"/%d" % i), resp(200)) for i in range(12)] + [(req(b"/x"), resp(403))])
    rules = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, "
                       "content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, _ = feed(cap, rules)
    assert verdicts[3 + 2 * 12 + 1].action == "drop"                  # the 403
    assert [v.action for v in verdicts[:3 + 2 * 12 + 1]] == ["pass"] * (3 + 2 * 12 + 1)


def test_response_never_comes(run, rules_file):
    """The server closes without answering: no status, so no rule on it matches (alert:
    nothing; drop: not matched; pass: not matched, the default decides)."""
    cap = Capture()
    conversation(cap, 41000, [(req(b"/a"), None)])
    r = run(cap, rules_file(ALERT_403 + "\n", "a.rules"))
    assert r.alerts(1) == []
    drop = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, found = feed(cap, drop)
    assert {v.action for v in verdicts} == {"pass"} and not any(f.startswith("exception.") for f in found)
    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 8, action: pass, proto: tcp, content: {value: '200', buffer: http.stat_code}}\n")
    verdicts, _ = feed(cap, allow)
    # pending (the client's FIN too) until the server's FIN shows no answer comes: then the default
    assert [v.action for v in verdicts] == ["pass"] * 5 + ["drop"] * 2


def test_response_the_appliance_cannot_read(rules_file):
    """The server answers with bytes the response reader does not follow: the status may
    be anything. exception_policy drop: a drop rule on it matches (exception.http_response),
    a pass rule does not; ignore: neither matches."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.handshake()
    c.send(req(b"/a"))
    c.recv(b"\x00\x01garbage that is no status line\r\n")
    drop = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, found = feed(cap, drop)
    assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"]
    assert "exception.http_response" in found
    verdicts, _ = feed(cap, drop, exception_policy="ignore")
    assert [v.action for v in verdicts] == ["pass"] * 5
    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 8, action: pass, proto: tcp, content: {value: '200', buffer: http.stat_code}}\n")
    verdicts, _ = feed(cap, allow)
    assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"]


def test_suricata_header_describes_the_response_packet(rules_file):
    """Suricata matches a stat_code rule's header against the server's packet (as a
    flow:to_client rule): `$EXTERNAL_NET $HTTP_PORTS -> $HOME_NET any` drops home's
    client's connection, and the same header the other way round does not."""
    cap = Capture()
    conversation(cap, 41000, [(req(), resp(403))])
    for header, dropped in (("$EXTERNAL_NET $HTTP_PORTS -> $HOME_NET any", True),
                            ("$HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS", False)):
        rules = rules_file(f'drop http {header} (http.stat_code; content:"403"; sid:5;)\n', "a.rules")
        verdicts, _ = feed(cap, rules)
        assert (verdicts[4].action == "drop") is dropped, header


def test_too_many_unanswered_requests(rules_file):
    """Past 64 requests waiting for their answer, the oldest one's status will not be read
    (applayer/server.py MAX_WAITING): the appliance cannot know it (exception.cap)."""
    from appliance.applayer.server import MAX_WAITING
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.handshake()
    c.send(b"".join(req(b"/%d" % i) for i in range(MAX_WAITING)))
    c.send(req(b"/last"))
    drop = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, found = feed(cap, drop)
    assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"]
    assert "exception.cap" in found
    verdicts, found = feed(cap, drop, exception_policy="ignore")
    assert [v.action for v in verdicts] == ["pass"] * 5


def test_last_request_keeps_the_flow_until_its_answer(rules_file):
    """The client's last request (Connection: close) names nothing more to come: the flow
    stays inspected for its answer all the same."""
    cap = Capture()
    conversation(cap, 41000, [(req(b"/a"), resp(200)), (req(b"/b", close=True), resp(403))])
    rules = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, "
                       "content: {value: '403', buffer: http.stat_code}}\n")
    for types in (("flow",), ("flow", "http")):          # (an http log keeps it for its own reasons)
        verdicts, _ = feed(cap, rules, eve_types=types)
        assert [v.action for v in verdicts][:7] == ["pass"] * 6 + ["drop"]


def test_one_status_read_and_one_not_in_a_packet(rules_file):
    """A pass rule needs every transaction a packet settles to fit: a status read (200) and
    one that cannot be (garbage after it) in one segment do not pass."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.handshake()
    c.send(req(b"/a") + req(b"/b"))
    c.recv(resp(200) + b"\x00\x01 no status line\r\n")
    allow = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 8, action: pass, proto: tcp, content: {value: '200', buffer: http.stat_code}}\n")
    verdicts, _ = feed(cap, allow)
    assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"]


def test_flow_picked_up_midstream(rules_file):
    """Its transactions cannot be known (exception.midstream): a drop rule on the status
    matches at once under exception_policy drop, not under ignore."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.send(req(b"/a"))
    c.recv(resp(200))
    drop = rules_file("rules:\n  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, found = feed(cap, drop)
    assert [v.action for v in verdicts] == ["drop", "drop"] and "exception.midstream" in found
    verdicts, _ = feed(cap, drop, exception_policy="ignore")
    assert [v.action for v in verdicts] == ["pass", "pass"]


def test_other_protocols_are_not_held(rules_file):
    """A rule on the HTTP status never waits on a flow that is not HTTP, even while its
    server's side is read for a log (TLS: the ServerHello): the default decides at once."""
    from replaykit import client_hello, tls_records
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 443)
    c.handshake()
    c.send(tls_records(client_hello("x.example")))
    rules = rules_file("default_action: drop\nrules:\n"
                       "  - {id: 6, action: drop, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n")
    verdicts, _ = feed(cap, rules)
    assert verdicts[3].action == "drop"


def test_corpus_every_status_read_alerts_once_logs_on_or_off(run, rules_file):
    """On the corpus's HTTP captures a rule on any status alerts once per transaction whose
    status the http log shows, and the same with the http log off."""
    import pytest
    from replaykit import CORPUS
    paths = sorted(p for p in CORPUS.rglob("*") if "http" in p.name.lower()
                   and p.name.endswith((".pcap", ".pcapng", ".pcap.gz"))) if CORPUS.is_dir() else []
    if not paths:
        pytest.skip("shared corpus absent")
    rules = rules_file('alert http any any -> any any (msg:"any status"; pcre:"/^[1-5]/S"; sid:9;)\n', "a.rules")
    on = run(paths, rules)
    off = run(paths, rules, eve_types=("alert", "flow"))
    answered = sorted((e["flow_id"], e["http"]["url"]) for e in on.of("http") if "status" in e["http"])
    assert len(answered) >= 5
    for r in (on, off):
        assert sorted((e["flow_id"], e["http"]["url"]) for e in r.alerts(9)) == answered
        assert r.insp.counters.internal_errors == 0


def test_ambiguous_body_framing_hides_the_next_status(rules_file):
    """Two pipelined requests; the first response has two different Content-Lengths: a lax
    client takes the first and reads a 403 right after it, the appliance (with a file_data
    rule loaded, bodies read as clients do) reads on to the close. The second status can
    no longer be known: a drop rule on it matches under exception_policy "drop", and at
    once (before the close, which the server may never send)."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.handshake()
    c.send(req(b"/a") + req(b"/b"))
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 80\r\n\r\nok" + resp(403))
    rules = rules_file('drop http any any -> any any (http.stat_code; content:"403"; sid:5;)\n'
                       'alert http any any -> any any (file_data; content:"never"; sid:6;)\n', "a.rules")
    verdicts, found = feed(cap, rules)
    assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"]
    assert "exception.http_response" in found
    verdicts, _ = feed(cap, rules, exception_policy="ignore")
    assert [v.action for v in verdicts] == ["pass"] * 5


def test_ambiguous_framing_without_body_rules(rules_file):
    """The same with only the status rule loaded: the reader frames the body as clients do
    whether or not bodies are inspected (before, it took the first Content-Length, or read
    an unparsable one to the close as "no answer")."""
    rules = rules_file('drop http any any -> any any (http.stat_code; content:"403"; sid:5;)\n', "a.rules")
    for framing in (b"Content-Length: 0x2", b"Content-Length: 80\r\nContent-Length: 2",
                    b"Transfer-Encoding: chunked, gzip"):
        cap = Capture()
        c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
        c.handshake()
        c.send(req(b"/a") + req(b"/b"))
        c.recv(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\nok" + resp(403))
        verdicts, found = feed(cap, rules)
        assert [v.action for v in verdicts] == ["pass"] * 4 + ["drop"], framing
        assert "exception.http_response" in found


def test_a_pending_rule_does_not_let_status_or_body_rules_match_early(rules_file):
    """An earlier rule pends (a packet condition later packets may meet): the later rules'
    packet conditions are remembered (engine._note_later) and a drop rule among them decides
    at once. A rule on the status or on file_data must not be taken as matched on its packet
    conditions alone: a clean request and its 200 were dropped."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, HTTP, 80)
    c.handshake()
    c.send(req(b"/a"))
    c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nclean")
    c.recv(b"clean")
    c.close()
    first = "rules:\n  - {id: 1, action: drop, proto: tcp, content: [{value: NEVER}]}\n"
    for second in ("{id: 2, action: drop, proto: tcp, flow: [established], content: [{value: EICAR, buffer: file_data}]}",
                   "{id: 2, action: drop, proto: tcp, flow: [established], content: {value: '403', buffer: http.stat_code}}",
                   "{id: 2, action: pass, proto: tcp, flow: [established], content: {value: '403', buffer: http.stat_code}}"):
        rules = rules_file(first + "  - " + second + "\n  - {id: 3, action: drop, proto: tcp}\n")
        verdicts, _ = feed(cap, rules)
        # rule 3 drops the flow once the first rule can no longer match (its depth) -- not a
        # verdict of rule 2 on a packet whose body/status does not fit it
        assert all(2 not in [r.id for r in v.alerts] for v in verdicts), second
        assert all(v.flow.verdict_rule is None or v.flow.verdict_rule.id != 2 for v in verdicts), second
