"""A DNS label holding a '.', replayed from a pcap through the Inspector: the rules read the
labels as they are (one label "a.b" is not the labels "a", "b"), the dns log writes the
label's dot as "\\.", and the name is an anomaly (dns.dot_in_label): a client or resolver
that flattens names to text may read other labels, which the appliance cannot know."""
import struct

import pytest
from scapy.all import UDP, Raw

from replaykit import Capture, TcpConn, l2, ip_of

C, S = "10.0.0.5", "192.0.2.53"


def wire_query(*labels, qid=0x1234):
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return q + b"".join(bytes([len(x)]) + x for x in labels) + b"\x00\x00\x01\x00\x01"


def udp_query(cap, payload, sport=40001):
    cap.add(l2(ip_of(C, S) / UDP(sport=sport, dport=53) / Raw(payload)))


def test_a_wildcard_rule_sees_labels_not_text(run, rules_file):
    rules = rules_file("rules:\n  - {id: 7, action: drop, proto: udp, dns_query: '*.b.example'}\n")
    cap = Capture()
    udp_query(cap, wire_query(b"a.b", b"example"), 40001)       # labels "a.b", "example"
    udp_query(cap, wire_query(b"a", b"b", b"example"), 40002)   # under b.example
    r = run(cap, rules)
    assert [e["src_port"] for e in r.alerts(7)] == [40002]
    names = [e["dns"]["queries"][0]["rrname"] if "queries" in e["dns"] else e["dns"]["rrname"]
             for e in r.of("dns")]
    assert names == ["a\\.b.example", "a.b.example"]
    dotted = [e for e in r.of("anomaly") if e["anomaly"]["event"] == "dns.dot_in_label"]
    assert [(e["src_port"], e["anomaly"]["type"]) for e in dotted] == [(40001, "applayer")]


def test_an_allow_rule_is_not_matched_by_one_crafted_label(run, rules_file):
    """Was: the single label "good.example" read as the name good.example and passed."""
    rules = rules_file("default_action: drop\n"
                       "rules:\n  - {id: 1, action: pass, proto: udp, dns_query: good.example}\n")
    cap = Capture()
    udp_query(cap, wire_query(b"good.example"), 40001)
    udp_query(cap, wire_query(b"good", b"example"), 40002)
    r = run(cap, rules)
    assert r.res.verdicts == {"drop": 1, "pass": 1}     # (was: pass 2)


def test_a_block_rule_is_not_matched_by_another_name(run, rules_file):
    rules = rules_file("rules:\n  - {id: 3, action: drop, proto: udp, dns_query: evil.example}\n")
    cap = Capture()
    udp_query(cap, wire_query(b"evil.example"), 40001)          # the top-level name "evil.example"
    udp_query(cap, wire_query(b"evil", b"example"), 40002)
    r = run(cap, rules)
    assert [e["src_port"] for e in r.alerts(3)] == [40002]


def test_dns_over_tcp_reads_the_same_way(run, rules_file):
    rules = rules_file("rules:\n  - {id: 7, action: drop, proto: tcp, dns_query: '*.b.example'}\n")
    cap = Capture()
    msg = wire_query(b"a.b", b"example")
    conn = TcpConn(cap, C, 40003, S, 53)
    conn.handshake()
    conn.send(struct.pack("!H", len(msg)) + msg)
    r = run(cap, rules)
    assert r.alerts(7) == []
    assert [e["anomaly"]["event"] for e in r.of("anomaly")] == ["dns.dot_in_label"]


def test_the_compiled_reader_writes_the_same_eve(tmp_path, rules_file):
    """The compiled twins (dns, state, index) against the pure reference on these names."""
    import importlib.util
    from appliance.compiled import twin_name
    from test_compiled_equivalence import assert_identical, replay_both
    if importlib.util.find_spec(twin_name("appliance.applayer.dns")) is None:
        pytest.skip("compiled hot path not built")
    cap = Capture()
    udp_query(cap, wire_query(b"a.b", b"example"), 40001)
    udp_query(cap, wire_query(b"a", b"b", b"example"), 40002)
    udp_query(cap, wire_query(b"good.example"), 40003)
    udp_query(cap, wire_query(b"x\\y.", b"example"), 40004)
    udp_query(cap, wire_query(b"c", b"example"), 40006)
    udp_response(cap, wire_response([b"c", b"example"], [b"evil.example"]), 40006)   # a dotted CNAME
    conn = TcpConn(cap, C, 40005, S, 53)
    conn.handshake()
    q = wire_query(b"a", b"b", b"example")
    conn.send(struct.pack("!H", len(q)) + q)
    resp = wire_response([b"a.b", b"example"], None)
    conn.recv(struct.pack("!H", len(resp)) + resp)
    pcap = cap.write(tmp_path / "dots.pcap")
    rules = rules_file("rules:\n  - {id: 7, action: drop, proto: udp, dns_query: '*.b.example'}\n"
                       "  - {id: 8, action: alert, proto: udp, dns_query: '*.example'}\n")
    pure, compiled = replay_both(tmp_path, [pcap], "--rules", rules)
    assert_identical(pure, compiled)
    eve = pure[1].decode()
    assert "a\\\\.b.example" in eve and "x\\\\x5cy\\\\..example" in eve and "dns.dot_in_label" in eve
    assert eve.count('"dns.dot_in_label"') >= 2 and "evil\\\\.example" in eve


# --- responses: the dns log writes their names too (left review item 3) ---------------------

def wire_response(q_labels, cname_labels, owner=None, qid=0x1234):
    """A response to q_labels with one CNAME answer (owner: the labels given, else a pointer
    to the question), or none (NXDOMAIN) when cname_labels is None."""
    name = lambda labels: b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    question = name(q_labels) + b"\x00\x01\x00\x01"
    if cname_labels is None:
        return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question
    target = name(cname_labels)
    return (struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question
            + (name(owner) if owner else b"\xc0\x0c") + struct.pack("!HHIH", 5, 1, 60, len(target)) + target)


def udp_response(cap, payload, dport=40001):
    cap.add(l2(ip_of(S, C) / UDP(sport=53, dport=dport) / Raw(payload)))


def dotted_events(r):
    return [(e["src_port"], e["dest_port"]) for e in r.of("anomaly") if e["anomaly"]["event"] == "dns.dot_in_label"]


@pytest.mark.parametrize("q, target, owner", [
    ([b"a.b", b"example"], None, None),                    # the question section's name (NXDOMAIN)
    ([b"a", b"b", b"example"], [b"c", b"example"], [b"a.b", b"example"]),   # an answer's owner
    ([b"a", b"b", b"example"], [b"evil.example"], None),    # the CNAME target: one label "evil.example"
], ids=["question", "owner", "cname-target"])
def test_a_response_name_with_a_dot_inside_a_label_is_an_anomaly(q, target, owner, run, rules_file):
    """The dns log writes a response's names (question, answers, CNAME/PTR/NS targets) with
    "\\." as the query's: the same anomaly, on the response (was: queries only). The query
    here is plain labels, so the anomaly comes from the response alone."""
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: udp, dns_query: nothing.invalid}\n")
    cap = Capture()
    udp_query(cap, wire_query(b"a", b"b", b"example"), 40001)
    udp_response(cap, wire_response(q, target, owner), 40001)
    r = run(cap, rules)
    assert dotted_events(r) == [(53, 40001)]
    answers = [a["rdata"] for e in r.of("dns") for a in e["dns"].get("answers", ())]
    assert answers == ([b".".join(x.replace(b".", b"\\.") for x in target).decode()] if target else [])


@pytest.mark.parametrize("target", [[b"c", b"example"], [b"x\\", b"example"], [b"x\\y", b"example"]],
                         ids=["plain", "backslash-last", "backslash-inside"])
def test_a_response_without_a_dot_inside_a_label_is_no_anomaly(target, run, rules_file):
    """A label's backslash is written \\x5c: "x\\x5c.example" holds no "\\." (review: the
    names of a response are searched as one text)."""
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: udp, dns_query: nothing.invalid}\n")
    cap = Capture()
    udp_query(cap, wire_query(b"a", b"b", b"example"), 40001)
    udp_response(cap, wire_response([b"a", b"b", b"example"], target), 40001)
    assert dotted_events(run(cap, rules)) == []


def test_a_dns_over_tcp_response_with_a_dot_inside_a_label_is_an_anomaly(run, rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: tcp, dns_query: nothing.invalid}\n")
    cap = Capture()
    conn = TcpConn(cap, C, 40003, S, 53)
    conn.handshake()
    q = wire_query(b"a", b"b", b"example")
    conn.send(struct.pack("!H", len(q)) + q)
    resp = wire_response([b"a", b"b", b"example"], [b"evil.example"])
    conn.recv(struct.pack("!H", len(resp)) + resp)
    r = run(cap, rules)
    assert dotted_events(r) == [(53, 40003)]


def test_a_response_the_log_does_not_take_is_no_anomaly(run, rules_file):
    """A datagram that parses as a DNS response but is no plausible DNS (class 77, from the NTP
    port) is not written by the dns log, so its names are not reported either (review s12)."""
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: udp, dns_query: nothing.invalid}\n")
    def response(qclass):
        return (struct.pack("!HHHHHH", 7, 0x8180, 1, 0, 0, 0) + b"\x03a.b\x07example\x00"
                + struct.pack("!HH", 1, qclass))
    cap = Capture()
    cap.add(l2(ip_of(S, C) / UDP(sport=123, dport=40005) / Raw(response(77))))
    cap.add(l2(ip_of(S, C) / UDP(sport=123, dport=40006) / Raw(response(1))))
    assert dotted_events(run(cap, rules)) == [(123, 40006)]
