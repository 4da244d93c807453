"""file_data: HTTP response bodies (chunked, Content-Length, until close; gzip/deflate)
inspected by `.rules` file_data and the YAML `buffer: file_data` alike, on crafted
captures; the http-evader family does not hide a body; a drop rule on file_data drops the
packet whose bytes match (the client never gets the rest) and the flow."""
import gzip
import zlib

import pytest

from replaykit import CORPUS, Capture, TcpConn
from test_suricata_replay import same_events

HTTP = "198.51.100.80"
EVIL = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR"
PAD = b"<html>" + b"lorem ipsum " * 40


def capture(*responses, request=b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n", close=True):
    """One connection per entry; an entry is the response's segments (bytes or a list)."""
    cap = Capture()
    conns = []
    for i, resp in enumerate(responses):
        c = TcpConn(cap, "10.0.0.1", 42000 + i, HTTP, 80)
        c.handshake()
        c.send(request)
        for seg in resp if isinstance(resp, list) else [resp]:
            c.recv(seg)
        if close:
            c.close()
        conns.append(c)
    return cap


def head(*lines):
    return b"HTTP/1.1 200 OK\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


def chunked(body, sizes=None, fmt=b"%x"):
    out, i = b"", 0
    for n in sizes or [len(body)]:
        out += (fmt % n) + b"\r\n" + body[i:i + n] + b"\r\n"
        i += n
    return out + b"0\r\n\r\n"


RULE = 'alert http any any -> any any (msg:"eicar"; flow:established,to_client; file_data; content:"EICAR"; sid:1;)'
YAML = "{id: 1, action: alert, msg: eicar, proto: tcp, flow: [established, to_client], " \
       "content: [{value: EICAR, buffer: file_data}]}"


def both(run, rules_file, cap, line=RULE, yaml=YAML, **kw):
    suri = run(cap, rules_file(line + "\n", "a.rules"), **kw)
    y = run(cap, rules_file("rules:\n  - " + yaml + "\n"), **kw)
    same_events(suri, y)
    return suri


def ports(r, sid=1):
    return sorted(e["dest_port"] for e in r.alerts(sid))


def test_framings_and_codings(run, rules_file):
    body = PAD + EVIL
    gz, dfl = gzip.compress(body), zlib.compress(body)
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = raw.compress(body) + raw.flush()
    cap = capture(
        head(b"Content-Length: %d" % len(body)) + body,                            # 42000 length
        head(b"Transfer-Encoding: chunked") + chunked(body, [100, 7, len(body) - 107]),  # 42001 split
        head() + body,                                                              # 42002 until close
        head(b"Content-Encoding: gzip", b"Content-Length: %d" % len(gz)) + gz,      # 42003 gzip
        head(b"Content-Encoding: deflate", b"Transfer-Encoding: chunked") + chunked(dfl, [3, len(dfl) - 3]),
        head(b"Content-Encoding: deflate", b"Content-Length: %d" % len(raw)) + raw,  # 42005 raw deflate
        head(b"Content-Encoding: gzip", b"Content-Length: 30") + gzip.compress(PAD)[:30],  # 42006 cut short
        [head(b"Content-Length: %d" % len(body)) + body[:300], body[300:]],         # 42007 two segments
    )
    r = both(run, rules_file, cap)
    assert ports(r) == [42000, 42001, 42002, 42003, 42004, 42005, 42007]
    assert all(e["src_ip"] == HTTP for e in r.alerts(1))     # on the server's packet
    names = [e["anomaly"]["event"] for e in r.of("anomaly")]
    assert names == ["http.body_decode"]                     # 42006: gzip of the pad, cut short


def test_evasions_do_not_hide_a_body(run, rules_file):
    body = PAD + EVIL
    gz = gzip.compress(body)
    cap = capture(
        head(b"Transfer-Encoding: chunked") + chunked(body, [200, len(body) - 200], b"0000000000000000000%X"),
        head(b"Transfer-Encoding: chunked") + chunked(body, [200, len(body) - 200], b"%x ; ext=\"a;b\" "),
        head(b"Transfer-Encoding:  CHUNKED ") + chunked(body, [200, len(body) - 200]),
        # Content-Length and Transfer-Encoding: TE wins (RFC 9112 6.3; curl and browsers agree)
        head(b"Content-Length: 10", b"Transfer-Encoding: chunked") + chunked(body, [50, len(body) - 50]),
        # conflicting lengths: clients differ, so everything up to the close is inspected
        head(b"Content-Length: 10", b"Content-Length: %d" % len(body)) + body,
        head(b"Transfer-Encoding: xchunked") + body,                     # not chunked: until close
        head(b"Content-Encoding: gzip, gzip", b"Content-Length: %d" % len(gzip.compress(gz)))
        + gzip.compress(gz),                                             # double encoding
        head(b"Content-Encoding: gzip") + body,                          # gzip declared, plain sent
        head(b"Transfer-Encoding: chunked", b"Content-Encoding: gzip") + chunked(gz, [1] * 20 + [len(gz) - 20]),
        head(b"Transfer-Encoding: chunked, gzip") + gz,                  # chunked not last: ambiguous
    )
    r = both(run, rules_file, cap)
    assert ports(r) == list(range(42000, 42010))


def test_alert_once_per_transaction_keep_alive(run, rules_file):
    # keep-alive: two requests, two bodies each with the pattern twice: one alert per response
    body = EVIL + PAD + EVIL
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 43000, HTTP, 80)
    c.handshake()
    for _ in range(2):
        c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
        resp = head(b"Content-Length: %d" % len(body)) + body
        c.recv(resp[:200])
        c.recv(resp[200:])
    c.close()
    r = both(run, rules_file, cap)
    assert len(r.alerts(1)) == 2
    assert [e["http"]["url"] for e in r.alerts(1)] == ["/f", "/f"]


def test_drop_rule_drops_the_matching_packet(run, rules_file):
    body = PAD + EVIL + PAD
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 44000, HTTP, 80)
    c.handshake()
    c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
    resp = head(b"Content-Length: %d" % len(body)) + body
    first = c.recv(resp[:200])
    hit = c.recv(resp[200:600])
    rest = c.recv(resp[600:])
    r = both(run, rules_file, cap,
             'drop http any any -> any any (msg:"eicar"; flow:established,to_client; file_data; '
             'content:"EICAR"; sid:2;)',
             "{id: 2, action: drop, msg: eicar, proto: tcp, flow: [established, to_client], "
             "content: [{value: EICAR, buffer: file_data}]}")
    assert [(e["pcap_cnt"], e["alert"]["action"]) for e in r.alerts(2)] == [(hit, "blocked")]
    assert first < hit < rest
    assert r.flow_action(src_port=44000) == "drop"


def test_pass_flow_stays_inspected_while_a_body_may_come(run, rules_file):
    # default pass, a drop rule on file_data: the flow is not offloaded at the request
    # (the body is still to come), and a clean body lets the flow be decided pass
    clean = head(b"Content-Length: %d" % len(PAD)) + PAD
    cap = capture(clean)
    r = run(cap, rules_file('drop http any any -> any any (file_data; content:"EICAR"; sid:3;)\n', "a.rules"))
    assert r.alerts(3) == []
    assert r.flow_action(src_port=42000) == "pass"


def test_bomb_is_bounded_and_policy_applies(run, rules_file):
    # 50 MiB of zeros in ~50 KiB of deflate: decoded only to the inspect depth
    bomb = zlib.compress(b"\0" * (50 << 20), 9)
    cap = capture(head(b"Content-Encoding: deflate", b"Content-Length: %d" % len(bomb))
                  + bomb[:1400], close=False)
    r = run(cap, rules_file('drop http any any -> any any (file_data; content:"EICAR"; sid:4;)\n', "a.rules"),
            body_ratio=50)
    names = [e["anomaly"]["event"] for e in r.of("anomaly")]
    assert "http.body_ratio" in names
    assert r.alerts(4)                 # the client gets bytes no rule saw: exception policy "drop"
    r = run(cap, rules_file('drop http any any -> any any (file_data; content:"EICAR"; sid:4;)\n', "a.rules"),
            body_ratio=50, exception_policy="ignore")
    assert not r.alerts(4)


@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus absent")
def test_corpus_http_body(run, rules_file):
    pcaps = sorted(p for p in CORPUS.rglob("*.pcap") if "http" in p.name.lower())[:20]
    if not pcaps:
        pytest.skip("no HTTP capture in the corpus")
    r = run(pcaps, rules_file('alert http any any -> any any (flow:to_client; file_data; content:"<html"; '
                              'nocase; sid:5;)\n', "a.rules"))
    assert r.alerts(5), "no HTML body seen in the corpus HTTP captures"


def _offload_capture():
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 45000, HTTP, 80)
    c.handshake()
    c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n")
    resp = head(b"Content-Length: %d" % len(PAD)) + PAD
    for i in range(0, len(resp), 100):
        c.recv(resp[i:i + 100])
    for _ in range(3):
        c.send(b"", flags="A")
    c.close()
    return cap, -(-len(resp) // 100)


@pytest.mark.parametrize("rule,inspected", [
    (None, 0),                                                       # decided at once (default pass)
    ('drop http any any -> any any (file_data; content:"EICAR"; sid:6;)', "body"),
    ('alert http any any -> any any (flow:to_client; file_data; content:"EICAR"; sid:6;)', "body"),
])
def test_body_rule_keeps_the_flow_until_its_body_ends(run, rules_file, rule, inspected):
    # no protocol log: only the file_data rule keeps the flow inspected; Connection: close,
    # so once the body is read nothing more can come and the flow is decided (offloadable)
    cap, body_pkts = _offload_capture()
    text = (rule + "\n") if rule else 'alert tcp any any -> any any (content:"nothing-here"; sid:9;)\n'
    r = run(cap, rules_file(text, "a.rules"), eve_types=("alert", "anomaly", "flow"), depth_packets=2)
    total = len(cap.frames)
    fast = r.insp.counters.fast_path
    if inspected == 0:
        assert fast == total - 2
    else:
        # the handshake, the request, every body packet inspected; the ACKs and FINs after it offloaded
        assert fast == total - 4 - body_pkts


def test_drop_on_a_later_response_of_a_passed_flow(run, rules_file):
    # keep-alive: the first body is clean (the flow is passed by the default), the second
    # one matches: the flow is decided again on the packet that brings it
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 46000, HTTP, 80)
    c.handshake()
    hits = []
    for body in (PAD, PAD + EVIL):
        c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
        resp = head(b"Content-Length: %d" % len(body)) + body
        c.recv(resp[:300])
        hits.append(c.recv(resp[300:]))
    c.close()
    r = both(run, rules_file, cap,
             'drop http any any -> any any (msg:"eicar"; flow:established,to_client; file_data; '
             'content:"EICAR"; sid:7;)',
             "{id: 7, action: drop, msg: eicar, proto: tcp, flow: [established, to_client], "
             "content: [{value: EICAR, buffer: file_data}]}", eve_types=("alert", "flow"))
    assert [e["pcap_cnt"] for e in r.alerts(7)] == [hits[1]]
    assert r.flow_action(src_port=46000) == "drop"


def test_body_past_the_server_reading_depth_is_unknown(run, rules_file):
    # an inspect depth above the server side's 1 MiB reading depth: the body goes on past
    # what is read, so the client gets bytes no rule saw (http.body_gap, exception policy)
    size = (1 << 20) + 20000
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 47000, HTTP, 80)
    c.handshake()
    c.send(b"GET /f HTTP/1.1\r\nHost: a.example\r\n\r\n")
    resp = head(b"Content-Length: %d" % size) + b"x" * size
    for i in range(0, len(resp), 8000):
        c.recv(resp[i:i + 8000])
    rules = rules_file('drop http any any -> any any (file_data; content:"EICAR"; sid:8;)\n', "a.rules")
    r = run(cap, rules, body_bytes=2 << 20, eve_types=("alert", "anomaly", "flow"))
    assert [e["anomaly"]["event"] for e in r.of("anomaly")] == ["http.body_gap"]
    assert r.alerts(8)
    r = run(cap, rules, eve_types=("alert", "anomaly", "flow"))     # default depth: 100 KiB inspected
    assert r.of("anomaly") == [] and not r.alerts(8)


def test_request_bodies(run, rules_file):
    # an upload: the request's body on the client's packets (Content-Length, chunked, and
    # after a Connection: close request), read as sent; to_client rules do not read it
    body = PAD + EVIL
    cap = Capture()
    for i, (hdrs, data) in enumerate([
            (b"Content-Length: %d\r\n" % len(body), body),
            (b"Transfer-Encoding: chunked\r\n", chunked(body, [100, len(body) - 100])),
            (b"Content-Length: %d\r\nConnection: close\r\n" % len(body), body)]):
        c = TcpConn(cap, "10.0.0.1", 48000 + i, HTTP, 80)
        c.handshake()
        c.send(b"POST /up HTTP/1.1\r\nHost: a.example\r\n" + hdrs + b"\r\n")
        c.send(data[:150])
        c.send(data[150:])
        c.recv(head(b"Content-Length: 2") + b"ok")
        c.close()
    r = both(run, rules_file, cap,
             'alert http any any -> any any (msg:"up"; flow:established,to_server; file_data; content:"EICAR"; '
             'sid:9;)',
             "{id: 9, action: alert, msg: up, proto: tcp, flow: [established, to_server], "
             "content: [{value: EICAR, buffer: file_data}]}")
    assert sorted(e["src_port"] for e in r.alerts(9)) == [48000, 48001, 48002]
    assert [e["http"]["url"] for e in r.alerts(9)] == ["/up"] * 3
    r = both(run, rules_file, cap)          # the to_client rule: the responses are clean
    assert r.alerts(1) == []


def test_gzip_wrapper_tricks_do_not_hide_a_body(run, rules_file):
    # http-evader's gzip family: a bad CRC (browsers do not check it; zlib's error discarded
    # the decoded bytes of its call), a second member (Firefox decodes it), trailing garbage
    body = PAD + EVIL
    gz = gzip.compress(body)
    bad = gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:])
    two = gzip.compress(PAD) + gzip.compress(EVIL)
    junk = gz + b"garbage"
    cap = capture(*(head(b"Content-Encoding: gzip", b"Content-Length: %d" % len(g)) + g for g in (bad, two, junk)))
    r = both(run, rules_file, cap)
    assert ports(r) == [42000, 42001, 42002]
    names = [e["anomaly"]["event"] for e in r.of("anomaly")]
    assert "http.body_decode" in names and "http.body_gzip_members" in names


def test_bodies_of_all_flows_are_bounded_together(run, rules_file):
    # stalled responses (Content-Length larger than what comes): each holds its decoded
    # bytes; past inspection.body_total_bytes a body is unknown: a drop rule on file_data
    # matches under exception_policy "drop" (anomaly http.body_memory)
    dfl = zlib.compress(b"\0" * (100 * 1024), 9)
    resp = head(b"Content-Encoding: deflate", b"Content-Length: 99999") + dfl
    cap = capture(resp, resp, resp, close=False)
    rules = rules_file('drop http any any -> any any (file_data; content:"EICAR"; sid:4;)\n', "a.rules")
    r = run(cap, rules, body_total_bytes=350 * 1024)
    assert ports(r, 4) == [42002]
    assert "http.body_memory" in [e["anomaly"]["event"] for e in r.of("anomaly")]
