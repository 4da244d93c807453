"""Issue 9: the rules must read what the server reads. Each capture below made a name
blocklist read good.example (or nothing) while a Linux server read evil.example, because the
appliance kept bytes or state that Linux's TCP discards, or reassembled overlaps another way.
Each test runs the capture through the Inspector and asserts the block holds."""
import random

import pytest
from scapy.all import IP, IPv6, Raw, TCP as STCP

from replaykit import Capture, l2
from test_review_evasion import HTTP_DROP, actions, feed

C, S = "10.0.0.1", "10.0.0.80"
A, B = 1000, 5000                       # client and server ISNs
EVIL = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
GOOD = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
HOST = EVIL.index(b"Host")               # 16: the name starts at 22
M = 0xFFFFFFFF


def seg(cap, to_server, flags, seq, ack=0, data=b"", urgptr=0, opts=(), v6=False, dt=0.001, sport=40100):
    src, dst, sp, dp = (C, S, sport, 80) if to_server else (S, C, 80, sport)
    if v6:
        src, dst = ("2001:db8::1", "2001:db8::80") if to_server else ("2001:db8::80", "2001:db8::1")
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    p = ip / STCP(sport=sp, dport=dp, flags=flags, seq=seq & M, ack=ack & M, urgptr=urgptr,
                  window=502, options=list(opts))
    cap.add(l2(p / Raw(data) if data else p), dt=dt)


def handshake(cap, ts=None, v6=False, sport=40100):
    """SYN, SYN/ACK, ACK; ts=(client TSval, server TSval) adds timestamps to all three."""
    o = lambda val, ecr: [("Timestamp", (val, ecr))] if ts else []  # noqa: E731
    seg(cap, True, "S", A, opts=o(ts and ts[0], 0) + [("WScale", 7)], v6=v6, sport=sport)
    seg(cap, False, "SA", B, A + 1, opts=o(ts and ts[1], ts and ts[0]) + [("WScale", 7)], v6=v6, sport=sport)
    seg(cap, True, "A", A + 1, B + 1, opts=o(ts and ts[0] + 1, ts and ts[1]), v6=v6, sport=sport)


def drop_holds(cap, rules_file, **kw):
    v, insp = feed(cap, rules_file(HTTP_DROP), **kw)
    return actions(v)[-1] == "drop", v, insp


HTTP_ALERT = "rules:\n  - {id: 2, action: alert, proto: tcp, http_host: evil.example}\n"


def read(cap, rules_file):
    """The flow as the appliance read it: what the host names are, whether the stream reads
    two ways. Under HTTP_DROP a flow ends final and releases its stream, and an ambiguous
    one has unknown names; an alert rule keeps it inspected and named as Linux reads it."""
    v, _ = feed(cap, rules_file(HTTP_ALERT))
    assert v[-1].flow.stream is not None
    return v[-1].flow


def anomalies(run, cap, rules_file):
    r = run(cap, rules_file(HTTP_DROP))
    return [e["anomaly"]["event"] for e in r.of("anomaly")]


# --- finding 1: urgent pointer past the segment's end ---------------------------------------

def test_urgent_pointer_past_segment_end_is_no_escape(rules_file):
    """Was: TypeError in _out_of_band, the segment passed and never reached the stream."""
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PAU", A + 1, B + 1, EVIL, urgptr=len(EVIL) + 40)
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and actions(v) == ["pass", "pass", "pass", "drop"]


def test_urgent_byte_announced_before_it_arrives_is_taken_out(rules_file):
    """The urgent pointer of the first segment points into the second: Linux records the mark
    and takes the byte out when it arrives ("Host: evXil" reads "Host: evil")."""
    head, tail = b"GET / HTTP/1.1\r\nHost: ev", b"Xil.example\r\n\r\n"
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PAU", A + 1, B + 1, head, urgptr=len(head) + 1)
    seg(cap, True, "PA", A + 1 + len(head), B + 1, tail)
    ok, v, insp = drop_holds(cap, rules_file)
    assert ok
    assert read(cap, rules_file).app.names["http"] == ["evil.example"]


def test_feed_never_raises_on_random_flags_urgent_pointers_and_sequence_numbers(rules_file):
    rnd = random.Random(9)
    for _ in range(40):
        cap = Capture()
        handshake(cap)
        for _ in range(12):
            flags = rnd.choice(["PA", "PAU", "AU", "U", "PU", "RA", "R", "FA", "S", "SA", "A", "FPAU", "SU", ""])
            seq = rnd.choice([A + 1 + rnd.randrange(-70000, 70000), rnd.randrange(2**32), A + 1])
            ack = rnd.choice([B + 1, rnd.randrange(2**32)])
            data = rnd.choice([b"", EVIL[:rnd.randrange(1, len(EVIL))], bytes(rnd.randrange(256) for _ in range(30))])
            seg(cap, rnd.random() < 0.85, flags, seq, ack, data, urgptr=rnd.randrange(65536))
        feed(cap, rules_file(HTTP_DROP))            # asserts no internal error


# --- finding 2/3: Linux's reassembly, conflicts reported ---------------------------------

def _overlap_case(cap, case):
    n = HOST
    if case == "in_order_over_queued":       # queued decoy, then an in-order segment covering it
        seg(cap, True, "PA", A + 1 + n, B + 1, GOOD[n:])
        seg(cap, True, "PA", A + 1, B + 1, EVIL)
    elif case == "same_start_longer":         # queued decoy replaced by a longer one at its start
        seg(cap, True, "PA", A + 1 + n, B + 1, GOOD[n:30])
        seg(cap, True, "PA", A + 1 + n, B + 1, EVIL[n:])
        seg(cap, True, "PA", A + 1, B + 1, EVIL[:n])
    elif case == "covers_later_queued":       # queued decoy removed by an earlier-starting cover
        seg(cap, True, "PA", A + 1 + 20, B + 1, GOOD[20:30])
        seg(cap, True, "PA", A + 1 + n, B + 1, EVIL[n:])
        seg(cap, True, "PA", A + 1, B + 1, EVIL[:n])


@pytest.mark.parametrize("case", ["in_order_over_queued", "same_start_longer", "covers_later_queued"])
def test_overlaps_read_as_linux_reads_them(rules_file, run, case):
    cap = Capture()
    handshake(cap)
    _overlap_case(cap, case)
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and read(cap, rules_file).app.names["http"] == ["evil.example"]
    assert read(cap, rules_file).stream.ambiguous
    r = run(cap, rules_file(HTTP_DROP))
    conflicts = [e["anomaly"] for e in r.of("anomaly") if e["anomaly"]["event"] == "stream.overlap_conflict"]
    assert conflicts == [{"type": "stream", "event": "stream.overlap_conflict", "layer": "stream"}]


# --- finding 4: RST data and segments without ACK -----------------------------------------

def test_rst_payload_never_enters_the_stream(rules_file):
    cap = Capture()
    handshake(cap)
    seg(cap, True, "RA", A + 2, B + 1, GOOD[1:])    # in window, not exact: challenge ACK, no data
    seg(cap, True, "PA", A + 1, B + 1, EVIL)
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and v[-1].flow.state == "established"


def test_data_without_ack_flag_never_enters_the_stream(rules_file):
    cap = Capture()
    handshake(cap)
    seg(cap, True, "P", A + 1, B + 1, GOOD)
    seg(cap, True, "PA", A + 1, B + 1, EVIL)
    assert drop_holds(cap, rules_file)[0]


# --- finding 5: ACK validity -----------------------------------------------------------------

@pytest.mark.parametrize("bad_ack", [B + 1 - 2**30, B + 1 + 5000], ids=["too_old", "unsent"])
@pytest.mark.parametrize("v6", [False, True])
def test_decoy_with_an_ack_linux_rejects_is_ignored(rules_file, run, bad_ack, v6):
    cap = Capture()
    handshake(cap, v6=v6)
    seg(cap, True, "PA", A + 1, bad_ack, GOOD, v6=v6)
    seg(cap, True, "PA", A + 1, B + 1, EVIL, v6=v6)     # the real one, as a retransmission would
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and read(cap, rules_file).app.names["http"] == ["evil.example"]
    names = anomalies(run, cap, rules_file)
    assert ("tcp.ack_too_old" if bad_ack < B else "tcp.ack_unsent") in names


def test_server_data_moves_what_counts_as_too_old(rules_file):
    """After the client acknowledged 3000 server bytes an ACK 1000 back is still fine (within
    bytes acked), one 4000 back is not."""
    cap = Capture()
    handshake(cap)
    first = b"GET /a HTTP/1.1\r\nHost: first.example\r\n\r\n"
    n = len(first)
    seg(cap, True, "PA", A + 1, B + 1, first)         # the client speaks first (as HTTP does)
    seg(cap, False, "PA", B + 1, A + 1 + n, b"x" * 3000)
    seg(cap, True, "A", A + 1 + n, B + 3001)
    seg(cap, True, "PA", A + 1 + n, B + 3001 - 4000, GOOD)
    seg(cap, True, "PA", A + 1 + n, B + 3001 - 1000, EVIL)
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and read(cap, rules_file).app.names["http"] == ["evil.example"]


def test_mid_stream_pickup_discards_nothing(rules_file):
    """Without the handshake the server's send position is unknown: no ACK is judged."""
    cap = Capture()
    seg(cap, True, "PA", A + 1, 12345, EVIL)
    assert drop_holds(cap, rules_file)[0]


# --- finding 6: PAWS ----------------------------------------------------------------------

def test_stale_timestamp_decoy_is_ignored(rules_file, run):
    cap = Capture()
    handshake(cap, ts=(100000, 700))
    ts = lambda val: [("Timestamp", (val, 700))]  # noqa: E731
    seg(cap, True, "PA", A + 1, B + 1, GOOD, opts=ts(100000 - 50))      # older than ts_recent
    seg(cap, True, "PA", A + 1, B + 1, EVIL, opts=ts(100002))
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and read(cap, rules_file).app.names["http"] == ["evil.example"]
    assert "tcp.paws_discard" in anomalies(run, cap, rules_file)


def test_paws_needs_timestamps_on_both_syn_and_synack(rules_file):
    cap = Capture()
    handshake(cap)                                                        # no timestamps
    seg(cap, True, "PA", A + 1, B + 1, EVIL, opts=[("Timestamp", (5, 0))])
    assert drop_holds(cap, rules_file)[0]


# --- finding 7: a SYN on an open connection --------------------------------------------------

def test_syn_with_new_isn_after_handshake_neither_ends_nor_reanchors(rules_file):
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, EVIL[:HOST])
    seg(cap, True, "S", 777777)                         # challenge ACK; the server carries on
    seg(cap, False, "A", B + 1, A + 1 + HOST)
    seg(cap, True, "PA", A + 1 + HOST, B + 1, EVIL[HOST:])
    ok, v, insp = drop_holds(cap, rules_file)
    assert ok and insp.counters.flows_ended.get("reused", 0) == 0
    assert read(cap, rules_file).app.names["http"] == ["evil.example"]


@pytest.mark.parametrize("flags", ["SA", "SPA", "SFA"])
def test_syn_flagged_segment_after_handshake_does_not_reanchor_the_stream(rules_file, flags):
    """Found in review of this change: a SYN/ACK from the client before its first byte
    re-anchored the stream (nothing delivered yet); Linux drops any SYN on an open
    connection, so the request at ISN+1 is what the server reads."""
    cap = Capture()
    handshake(cap)
    seg(cap, True, flags, 600000, B + 1, GOOD if "P" in flags else b"")
    seg(cap, True, "PA", A + 1, B + 1, EVIL)
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and read(cap, rules_file).app.names["http"] == ["evil.example"]


def test_synack_to_the_ignored_syn_is_a_new_connection(rules_file):
    """The server had forgotten the connection and answers the new SYN: a new flow, named
    by its own request (conntrack re-syncs on the same SYN/ACK)."""
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, GOOD)
    seg(cap, True, "S", 777777)
    seg(cap, False, "SA", 90000, 777778)
    seg(cap, True, "A", 777778, 90001)
    seg(cap, True, "PA", 777778, 90001, EVIL)
    ok, v, insp = drop_holds(cap, rules_file)
    assert ok and insp.counters.flows_ended.get("reused", 0) == 1


# --- finding 8: RSTs that Linux answers with a challenge ACK --------------------------------

def test_inexact_rst_keeps_the_connection_open(rules_file):
    """Was: CLOSED (10 s), expired, and the rest of the request came as a nameless flow."""
    head, tail = EVIL[:HOST + 2], EVIL[HOST + 2:]
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, head)
    seg(cap, True, "R", A + 1 + len(head) + 100)       # in window, not rcv_nxt
    seg(cap, True, "PA", A + 1 + len(head), B + 1, tail, dt=11.0)
    ok, v, insp = drop_holds(cap, rules_file)
    assert ok and insp.counters.flows_ended.get("timeout", 0) == 0


def test_exact_rst_closes_and_a_new_syn_starts_a_new_flow(rules_file):
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, GOOD)
    seg(cap, False, "A", B + 1, A + 1 + len(GOOD))
    seg(cap, True, "R", A + 1 + len(GOOD))
    seg(cap, True, "S", 424242)
    ok, v, insp = drop_holds(cap, rules_file)
    assert v[-1].flow.state == "new" and insp.counters.flows_ended.get("closed", 0) == 1


def test_server_rst_counts_only_at_the_clients_next_byte(rules_file):
    cap = Capture()
    handshake(cap)
    seg(cap, True, "PA", A + 1, B + 1, EVIL[:HOST])
    seg(cap, False, "PA", B + 1, A + 1 + HOST, b"hello")
    seg(cap, False, "R", B + 1)                        # not the client's rcv_nxt (B + 6)
    seg(cap, True, "PA", A + 1 + HOST, B + 6, EVIL[HOST:])
    ok, v, _ = drop_holds(cap, rules_file)
    assert ok and v[-1].flow.state == "established"
    seg(cap, False, "R", B + 6)
    v, _ = feed(cap, rules_file(HTTP_DROP))
    assert v[-1].flow.state == "closed"
