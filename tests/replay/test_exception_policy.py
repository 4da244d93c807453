"""When the appliance cannot know a name: read it against the attacker.

A protocol limit hit while a name is pending, a flow picked up mid-stream, an internal
error on an undecided flow: the names become UNKNOWN and, under `exception_policy: drop`
(the default), every drop/reject rule on them matches and no pass rule does; under
`ignore` no rule needing them matches. Several names in one transaction (pipelined
requests, queries of one DNS message) match a drop rule if any does and a pass rule
only if all do. Each case says so with an `exception.<reason>` anomaly.
"""
import struct

import pytest

from replaykit import Capture, TcpConn, dns_query, l2, ip_of
from scapy.all import UDP, Raw

from appliance.applayer import tls
from appliance.applayer.state import UNKNOWN
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.packet import Packet

C, S = "10.0.0.1", "10.0.0.80"
TLS_DROP = "rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n"
HTTP_DROP = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
HTTP_ALLOW = """
default_action: drop
rules:
  - {id: 1, action: pass, proto: tcp, http_host: good.example}
"""


def feed(cap, rules, **settings):
    insp = Inspector(load_rules(rules), Settings(**settings))
    verdicts = []
    found = []
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        verdicts.append(v)
        found.extend(name for name, _ in insp._found)
    return verdicts, found, insp


def actions(verdicts):
    return [v.action for v in verdicts]


def conn(*payloads, port=80, handshake=True):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, port)
    if handshake:
        c.handshake()
    for p in payloads:
        c.send(p)
    return cap


# --- a limit hit while a name is pending ----------------------------------------------
# (These were "pending at the depth" cases: the depth no longer bounds names, so a
# ClientHello in 17 segments is read -- tests/replay/test_name_limits.py -- and the
# exception comes from the protocol's own limit instead.)

def oversized_hello():
    """A ClientHello announcing more than any server reads (OpenSSL's limit + 1)."""
    body = tls.MAX_HELLO + 1
    return struct.pack("!BHH", 22, 0x0301, 100) + b"\x01" + body.to_bytes(3, "big") + b"\x03\x03" + b"\x00" * 94


def test_client_hello_over_the_limit_is_dropped(rules_file):
    v, found, _ = feed(conn(oversized_hello(), port=443), rules_file(TLS_DROP))
    assert actions(v)[-1] == "drop"
    assert "exception.cap" in found
    assert not any(x.offload for x in v if x.action == "pass")


def test_cap_with_ignore_policy_passes(rules_file):
    v, found, _ = feed(conn(oversized_hello(), port=443), rules_file(TLS_DROP), exception_policy="ignore")
    assert "drop" not in actions(v)
    assert "exception.cap" in found                # said either way


def test_cap_without_a_name_rule_says_nothing(rules_file):
    rules = rules_file("rules:\n  - {id: 1, action: drop, proto: tcp, dst_port: 22}\n")
    v, found, _ = feed(conn(oversized_hello(), port=443), rules)
    assert "drop" not in actions(v)
    assert not [f for f in found if f.startswith("exception.")]


# --- picked up mid-stream --------------------------------------------------------------

def test_midstream_flow_with_a_pending_name_rule_is_dropped(rules_file):
    cap = conn(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n", handshake=False)
    v, found, insp = feed(cap, rules_file(HTTP_DROP))
    assert actions(v) == ["drop"]                  # the host read here may not be the one acted on
    assert found == ["exception.midstream"]
    flow = v[0].flow
    assert flow.app.names["http"] is UNKNOWN and flow.app.unknown == "midstream"


def test_midstream_flow_allow_list_does_not_pass(rules_file):
    cap = conn(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n", handshake=False)
    v, _, _ = feed(cap, rules_file(HTTP_ALLOW))
    assert actions(v) == ["drop"]


def test_midstream_with_ignore_policy_falls_to_the_default(rules_file):
    cap = conn(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n", handshake=False)
    v, found, _ = feed(cap, rules_file(HTTP_DROP), exception_policy="ignore")
    assert actions(v) == ["pass"]
    assert found == ["exception.midstream"]


def test_synack_first_is_not_midstream(rules_file):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c._seg(False, "SA")
    c._seg(True, "A")
    c.send(b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    v, found, _ = feed(cap, rules_file(HTTP_DROP))
    assert "drop" not in actions(v) and not found


# --- several names in one transaction ----------------------------------------------------

def test_pipelined_requests_pass_rule_must_cover_every_host(rules_file):
    rules = rules_file("""
rules:
  - {id: 1, action: pass, proto: tcp, http_host: good.example}
  - {id: 2, action: drop, proto: tcp, http_host: evil.example}
""")
    two = (b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
           b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    v, _, _ = feed(conn(two), rules)
    assert "drop" in actions(v)                    # was: rule 1 matched "any" host and passed


def test_pipelined_requests_all_allowed_pass(rules_file):
    two = (b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
           b"GET /x HTTP/1.1\r\nHost: GOOD.example\r\n\r\n")
    v, _, _ = feed(conn(two), rules_file(HTTP_ALLOW))
    assert set(actions(v)) == {"pass"}


def test_dns_message_with_two_questions_allow_list(rules_file):
    rules = rules_file("""
default_action: drop
rules:
  - {id: 1, action: pass, dns_query: good.example}
""")
    cap = Capture()
    cap.add(l2(ip_of(C, S) / UDP(sport=5353, dport=53) / Raw(dns_query(["good.example", "evil.example"]))))
    v, _, _ = feed(cap, rules)
    assert actions(v) == ["drop"]
    cap = Capture()
    cap.add(l2(ip_of(C, S) / UDP(sport=5353, dport=53) / Raw(dns_query(["good.example", "GOOD.example."]))))
    v, _, _ = feed(cap, rules)
    assert actions(v) == ["pass"]


# --- an internal error on an undecided flow ------------------------------------------------

def _broken_copy(pkt):
    """The same packet with a payload of the wrong type: a stand-in for a parser bug."""
    bad = Packet()
    for name in Packet.__slots__:
        setattr(bad, name, getattr(pkt, name))
    bad.payload = 12345
    return bad


@pytest.mark.parametrize("policy, expected", [("drop", "drop"), ("ignore", "pass")])
def test_internal_error_on_a_pending_flow_takes_the_exception_policy(rules_file, policy, expected):
    cap = conn(b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    insp = Inspector(load_rules(rules_file(HTTP_DROP)), Settings(exception_policy=policy))
    frames = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    for pkt in frames[:3]:
        insp.process(pkt)
    v = insp.process(_broken_copy(frames[3]))
    assert insp.counters.internal_errors == 1
    assert v.action == expected and not v.offload
    names = [n for n, _ in insp._found]
    assert names[0].startswith("engine.") and "exception.internal_error" in names
    assert v.flow.app.names["http"] is UNKNOWN
    # the real segment afterwards: a drop rule reads the unknown name as any name
    after = insp.process(frames[3])
    assert after.action == expected


# --- a stream that reads two ways ---------------------------------------------------------

def test_conflicting_overlap_makes_the_names_unknown(rules_file):
    """Linux reads the in-order copy (good.example) over a queued decoy (evil.example); a
    server with another reassembly policy reads the decoy. Under the default policy the
    block rule matches the unknown name; under `ignore`, Linux's reading decides."""
    from test_receiver_evasion import A, B, handshake, seg
    from test_review_evasion import HTTP_DROP as DROP
    good, evil = (b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n",
                  b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1 + 16, B + 1, evil[16:30])      # queued out of order first
    seg(cap, True, "PA", A + 1, B + 1, good)                   # then the in-order copy covers it
    v, found, _ = feed(cap, rules_file(DROP))
    assert actions(v)[-1] == "drop"
    assert "stream.overlap_conflict" in found and "exception.stream_ambiguous" in found
    assert v[-1].flow.app.unknown == "stream_ambiguous"
    v, found, _ = feed(cap, rules_file(DROP), exception_policy="ignore")
    assert actions(v)[-1] == "pass" and "exception.stream_ambiguous" in found


def test_bytes_past_the_stream_window_make_the_names_unknown(rules_file):
    """An out-of-order segment beyond the bytes the appliance holds (stream_bytes) is let go;
    the server keeps it and, once the hole fills, reads it (a later request's Host)."""
    from test_receiver_evasion import A, B, handshake, seg
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n")
    seg(cap, True, "PA", A + 1 + 20000, B + 1, b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n")
    v, found, _ = feed(cap, rules_file(HTTP_DROP))
    assert actions(v)[-1] == "drop" and "exception.cap" in found
    v, found, _ = feed(cap, rules_file(HTTP_DROP), exception_policy="ignore")
    assert actions(v)[-1] == "pass" and "exception.cap" in found
