"""Detection's per-packet path in C (docs/performance-passes.md, "Thirteenth session: detection"):
ContentPrefilter.scan (the binding called by position, found ids through a list, one bit a
pattern when every rule has one) and Detector.alerts (header alerts' mask only on the packet
that fires them, the app and content masks in one `&`) answer as the pure module does.
The scan against a naive oracle (nocase, NUL bytes, rules needing several patterns, bytes,
bytearray and memoryview payloads, none and every pattern found); the Inspector's verdicts
and alerts on random rule sets of every kind the bench's rules do not use (header-only,
every_packet, noalert, flowbits, dsize, pcre, nocase, offset/depth, fast_pattern, negated
content, http.host, tls.sni, dns.query, http.stat_code, file_data, payload: stream, both
(a .rules TCP content rule's) and packet,
flow keywords, to_client), over flows whose contents straddle segment edges, the pure
module and the compiled twin alike."""
import json
import random
from pathlib import Path

from twins import in_pure_python
from appliance.detect.index import ContentPrefilter
from appliance.detect.rule import Content

ALPHA = b"aAbB\x00\xffz"


def _oracle(entries, payload):
    """The rules all of whose literals occur in payload (nocase: either case)."""
    data = bytes(payload)
    m = 0
    for i, contents in entries:
        if all((c.value.lower() in data.lower()) if c.nocase else (c.value in data) for c in contents):
            m |= 1 << i
    return m


def prefilter_cases(seed):
    """[[case, payload index, mask]] of ContentPrefilter.scan on random literals and payloads."""
    rng = random.Random(seed)
    out = []
    for case in range(60):
        several = case % 3 == 0                # rules needing more than one pattern: the counts path
        entries = []
        for i in range(rng.choice((1, 3, 40, 70))):
            n = rng.randint(1, 3) if several else 1
            entries.append((i, tuple(Content(bytes(rng.choice(ALPHA) for _ in range(rng.randint(1, 3))),
                                             nocase=rng.random() < 0.4) for _ in range(n))))
        pf = ContentPrefilter(entries)
        payloads = [b"", b"\x00", bytes(range(256)), b"".join(c.value for _, cs in entries for c in cs)]
        payloads += [bytes(rng.choice(ALPHA) for _ in range(rng.randint(1, 40))) for _ in range(12)]
        for k, p in enumerate(payloads):
            got = pf.scan(p)
            # the same answer whatever holds the bytes
            assert got == pf.scan(bytearray(p)) == pf.scan(memoryview(p)) == _oracle(entries, p), (entries, p)
            out.append([case, k, got])
    return out


def test_prefilter_scan_is_the_oracles_and_the_pure_modules():
    here = prefilter_cases(3)
    assert any(row[2] == 0 for row in here) and any(row[2] > (1 << 30) for row in here)
    assert in_pure_python("tests.unit.test_detect_alerts_twins", "prefilter_cases", 3) == here


# rule lines: %(sid)s, %(c)s (a content drawn per rule), %(d)s (another)
POOL = [
    'alert tcp any any -> any any (msg:"hdr"; sid:%(sid)s;)',
    'alert ip any any -> any any (msg:"ip hdr"; sid:%(sid)s;)',
    'alert tcp any any -> any 80 (content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; nocase; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; content:"%(d)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; fast_pattern; content:"%(d)s"; distance:0; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; offset:1; depth:12; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:!"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (pcre:"/%(c)s.?%(d)s/i"; sid:%(sid)s;)',
    'alert tcp any any -> any any (dsize:>10; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flags:S; sid:%(sid)s;)',
    'alert tcp any any <> any any (content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:established,to_server; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:to_client; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; flowbits:set,fb%(b)s; flowbits:noalert; sid:%(sid)s;)',
    'alert tcp any any -> any any (flowbits:isset,fb%(b)s; content:"%(d)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (content:"%(c)s"; threshold:type limit, track by_src, count 1, seconds 60; sid:%(sid)s;)',
    'alert http any any -> any any (http.host; content:"%(h)s"; sid:%(sid)s;)',
    'alert http any any -> any any (http.uri; content:"%(c)s"; nocase; sid:%(sid)s;)',
    'alert http any any -> any any (http.stat_code; content:"200"; sid:%(sid)s;)',
    'alert http any any -> any any (file_data; content:"%(c)s"; sid:%(sid)s;)',
    'alert tls any any -> any any (tls.sni; content:"%(h)s"; sid:%(sid)s;)',
    'alert dns any any -> any any (dns.query; content:"%(h)s"; sid:%(sid)s;)',
    'alert udp any any -> any 53 (content:"%(c)s"; nocase; sid:%(sid)s;)',
    'drop tcp any any -> any 8080 (content:"%(c)s"; sid:%(sid)s;)',
    'pass tcp any any -> any 443 (sid:%(sid)s;)',
]
STREAM_POOL = [
    'alert tcp any any -> any any (flow:only_stream; content:"%(c)s"; sid:%(sid)s;)',
    'alert tcp any any -> any any (flow:no_stream; content:"%(c)s"; nocase; sid:%(sid)s;)',
]
WORDS = ["EVIL", "evil", "GET", "Host", "ab", "x.example", "HTTP/1.1", "zz", "|00 ff|", "200", "BODY"]
HOSTS = ["x.example", "example", "evil", "sni.test"]


def rule_text(rng, n):
    """(the rules' lines, the POOL template of each sid)"""
    lines, kind = [], {}
    for sid in range(1, n + 1):
        line = rng.choice(POOL)
        kind[sid] = POOL.index(line)
        vals = {"sid": sid, "c": rng.choice(WORDS), "d": rng.choice(WORDS), "b": rng.randint(0, 2),
                "h": rng.choice(HOSTS)}
        if "pcre" in line:
            vals = {**vals, "c": rng.choice(("EVIL", "ab", "GET")), "d": rng.choice(("zz", "x", "T"))}
        lines.append(line % vals)
    return lines, kind


def _flows(rng):
    """TCP and UDP exchanges as (src, dst, sport, dport, l4 kind, payloads)."""
    words = [b"EVIL", b"evil", b"GET", b"Host", b"ab", b"x.example", b"HTTP/1.1", b"zz", b"\x00\xff", b"BODY", b""]
    out = []
    for k in range(10):
        # contents cut anywhere: a literal split across two segments is in neither
        body = b" ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
        cut = rng.randint(0, len(body))
        dport = rng.choice((80, 8080, 443, 1500))
        req = b"GET /" + body[:6] + b" HTTP/1.1\r\nHost: " + rng.choice([b"x.example", b"evil.example", b"a"]) + b"\r\n\r\n"
        resp = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        if dport == 80 and rng.random() < 0.7:
            out.append(("tcp", dport, [("c", req[:cut % len(req)]), ("c", req[cut % len(req):]), ("s", resp)]))
        else:
            # ("x": a segment without ACK, which the server discards: it alerts
            # without changing flow state)
            out.append(("tcp", dport, [("c", body[:cut]), ("x", body), ("c", body[cut:]), ("s", body[::-1]),
                                       ("c", body)]))
    out.append(("dns", 53, []))
    out.append(("tls", 443, []))
    return out


def replay(tmp, seed):
    """[[packet, action, alert ids]] of random rule sets of every kind over random flows."""
    from scapy.all import DNS, DNSQR, IP, TCP, UDP, raw
    from scapy.layers.tls.all import TLS, TLSClientHello, ServerName, TLS_Ext_ServerName

    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector
    rng = random.Random(seed)
    out = []
    for n in (12, 70):
        lines, kind = rule_text(rng, n)
        if rng.random() < 0.5:
            lines += [line % {"sid": n + 1 + j, "c": rng.choice(WORDS)} for j, line in enumerate(STREAM_POOL)]
            kind.update({n + 1 + j: len(POOL) + j for j in range(len(STREAM_POOL))})
        path = Path(tmp) / f"alerts-{seed}-{n}.rules"
        path.write_text("\n".join(lines) + "\n")
        insp = Inspector(load_rules(path))
        t = [1.0]

        def send(src, dst, l4):
            t[0] += 0.01
            r = insp.process(decode_l3(raw(IP(src=src, dst=dst) / l4), ts=t[0]))
            # each alert as "sid/template"
            out.append([len(out), str(r.action), sorted(f"{a.id}/{kind[int(a.id)]}" for a in r.alerts)])

        for f, (app, dport, segs) in enumerate(_flows(rng)):
            cli, srv, sport = "10.0.0.%d" % (f + 2), "93.184.216.%d" % (f + 2), 40000 + f
            if app == "dns":
                send(cli, srv, UDP(sport=sport, dport=53) / DNS(rd=1, qd=DNSQR(qname=rng.choice(HOSTS))))
                continue
            cseq, sseq = 1000, 5000
            send(cli, srv, TCP(sport=sport, dport=dport, flags="S", seq=cseq))
            send(srv, cli, TCP(sport=dport, dport=sport, flags="SA", seq=sseq, ack=cseq + 1))
            cseq += 1
            sseq += 1
            send(cli, srv, TCP(sport=sport, dport=dport, flags="A", seq=cseq, ack=sseq))
            if app == "tls":
                # scapy draws the hello's random from os.urandom: fixed here, or a
                # rule's literal turns up in it in one process and not the other
                hello = raw(TLS(msg=[TLSClientHello(gmt_unix_time=0, random_bytes=b"\x11" * 28, ext=[
                    TLS_Ext_ServerName(servernames=[ServerName(servername=rng.choice(HOSTS).encode())])])]))
                segs = [("c", hello)]
            for side, pl in segs:
                if side == "x":
                    send(cli, srv, TCP(sport=sport, dport=dport, flags="P", seq=cseq) / pl)
                elif side == "c":
                    send(cli, srv, TCP(sport=sport, dport=dport, flags="PA", seq=cseq, ack=sseq) / pl)
                    cseq += len(pl)
                else:
                    send(srv, cli, TCP(sport=dport, dport=sport, flags="PA", seq=sseq, ack=cseq) / pl)
                    sseq += len(pl)
            send(cli, srv, TCP(sport=sport, dport=dport, flags="FA", seq=cseq, ack=sseq))
    return out


def test_random_rule_sets_of_every_kind_alert_alike_pure_and_compiled(tmp_path):
    here = replay(tmp_path, 11) + replay(tmp_path, 12) + replay(tmp_path, 13)
    fired = [a for row in here for a in row[2]]
    # not trivially alike: many alerts, several on one packet, more than one verdict
    assert len(fired) > 200 and max(len(row[2]) for row in here) > 3 and len({row[1] for row in here}) > 1
    assert len({a.split("/")[1] for a in fired}) >= len(POOL) + len(STREAM_POOL) - 4, sorted(set(fired))
    pure = [row for s in (11, 12, 13) for row in in_pure_python("tests.unit.test_detect_alerts_twins", "replay", tmp_path, s)]
    assert pure == json.loads(json.dumps(here))


PENDING_RULES = """default_action: drop
rules:
  - id: 1
    action: drop
    proto: tcp
    dst_port: 8080
    content: "EVIL"
  - id: 2
    action: pass
    proto: tcp
    dst_port: 8080
"""


def _conversation(tmp, name, rules, server_port, segments, answer):
    """answer(verdict) for each of `segments` ((from client?, flags, seq, ack, payload)) of one
    connection through an Inspector loaded with `rules` (written to tmp/name)"""
    from scapy.all import IP, TCP, raw

    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector
    path = Path(tmp) / name
    path.write_text(rules)
    insp = Inspector(load_rules(path))
    cli, srv = ("10.0.0.5", 40000), ("93.184.216.34", server_port)
    out = []
    for k, (from_client, flags, seq, ack, pl) in enumerate(segments):
        a, b = (cli, srv) if from_client else (srv, cli)
        wire = raw(IP(src=a[0], dst=b[0]) / TCP(sport=a[1], dport=b[1], flags=flags, seq=seq, ack=ack) / pl)
        out.append(answer(insp.process(decode_l3(wire, ts=1.0 + k / 100))))
    return out


def pending_case(tmp):
    """[action per packet] of a flow whose first rule (drop on a content) is open until its
    content comes: while later packets are inspected (a shared depth: decide's `later` -1) it
    holds the pass rule after it back, so the content's packet is dropped."""
    return _conversation(tmp, "pending.yaml", PENDING_RULES, 8080, [
        (True, "S", 1000, 0, b""), (False, "SA", 5000, 1001, b""), (True, "A", 1001, 5001, b""),
        (True, "PA", 1001, 5001, b"hello "), (True, "PA", 1007, 5001, b"EVIL")], lambda v: str(v.action))


def test_an_open_drop_rule_holds_the_pass_rule_back_pure_and_compiled(tmp_path):
    here = pending_case(tmp_path)
    assert here[:4] == ["pass"] * 4 and here[4] == "drop", here
    assert in_pure_python("tests.unit.test_detect_alerts_twins", "pending_case", tmp_path) == here


FLOWBITS_RULES = """
alert tcp any any -> any any (flow:no_stream; content:"SET"; flowbits:set,x; flowbits:noalert; sid:1;)
alert tcp any any -> any any (flowbits:isset,x; content:"USE"; sid:2;)
"""


def discarded_case(tmp):
    """[alert ids per packet]: a segment the server discards (no ACK) sets no flowbit; the
    same bytes acknowledged do (the setter reads packets: a discarded segment is not in the
    stream a stream rule reads)."""
    return _conversation(tmp, "flowbits.rules", FLOWBITS_RULES, 80, [
        (True, "S", 1000, 0, b""), (False, "SA", 5000, 1001, b""), (True, "A", 1001, 5001, b""),
        (True, "P", 1001, 0, b"SET"), (True, "PA", 1001, 5001, b"USE"),
        (True, "PA", 1004, 5001, b"SET"), (True, "PA", 1007, 5001, b"USE")], lambda v: sorted(r.id for r in v.alerts))


def test_a_discarded_segment_sets_no_flowbit_pure_and_compiled(tmp_path):
    here = discarded_case(tmp_path)
    assert here == [[], [], [], [], [], [], [2]], here
    assert in_pure_python("tests.unit.test_detect_alerts_twins", "discarded_case", tmp_path) == here
