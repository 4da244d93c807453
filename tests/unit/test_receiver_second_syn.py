"""Review s18c: client segments Linux (the server) accepts after a second SYN or a SYN
retransmitted without its options. A window bound on client data (`tcp.seq_out_of_window`,
c_nxt + 65535 << scale) was tried this session and taken out: the receiver model is built from
the first SYN/ACK, so after a new SYN (the server's request expired, or SYN cookies) or a
retransmitted SYN without its scale option the bound discarded the real connection's segments
(the first tests, which fail with it). The others were older cases of the same root, fixed
since: a second, different SYN/ACK rebuilds the receiver from it and the client's first ACK
confirms which one it answers (else `tcp.handshake_ambiguous`, nothing read from its ACKs);
a SYN resent with other options leaves the client's scale and timestamps unknown; a
segment ending before rcv_wup gives no ACK (Linux's tcp_sequence)."""
import pytest

from appliance.flow import FlowTable
from appliance.packet import ACK, PSH, SYN

from test_flow import c2s, s2c

MASK = 0xFFFFFFFF


def _discard(t, p):
    t.lookup(p)
    return p.discard


def test_a_new_syn_after_the_servers_request_expired_is_read():
    """F1: the client stays silent after the SYN/ACK; Linux retransmits it
    (tcp_synack_retries 5: 1, 3, 7, 15, 31 s) and drops the request sock at ~63 s, silently.
    The client's next SYN (another ISN) starts a new connection on the server; here the flow
    (NEW, idle 60 s, kept alive by the retransmissions) is the same one and its TcpReceiver,
    made from the first SYN/ACK, keeps c_nxt = old ISN + 1. Every client segment of the new
    connection is then 'past any window': none read, handshake never seen as done."""
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, ts=0.0, seq=100, wscale=7))
    for when in (0.01, 1, 3, 7, 15, 31):
        t.lookup(s2c(SYN | ACK, ts=when, seq=500, ack=101, wscale=7))
    isn = (100 + (1 << 30)) & MASK                    # any ISN more than 65535<<7 ahead
    t.lookup(c2s(SYN, ts=64.0, seq=isn, wscale=7))
    assert f is t.flows.get(f)                         # still the same flow
    t.lookup(s2c(SYN | ACK, ts=64.01, seq=90000, ack=isn + 1, wscale=7))
    assert _discard(t, c2s(ACK, ts=64.02, seq=isn + 1, ack=90001, window=1000)) == ""
    assert _discard(t, c2s(PSH | ACK, ts=64.03, seq=isn + 1, ack=90001, payload=b"GET / HTTP/1.1\r\n")) == ""


def test_syncookie_synacks_for_two_syns():
    """F1 (same root): under SYN cookies the server keeps no request; a second SYN with
    another ISN gets its own SYN/ACK and the ACK to it makes the connection. The first
    SYN/ACK fixed c_nxt."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    isn = (100 + (1 << 20)) & MASK
    t.lookup(c2s(SYN, seq=isn))
    t.lookup(s2c(SYN | ACK, seq=7000, ack=isn + 1))
    assert _discard(t, c2s(ACK, seq=isn + 1, ack=7001)) == ""
    assert _discard(t, c2s(PSH | ACK, seq=isn + 1, ack=7001, payload=b"x")) == ""


def test_a_new_syn_after_the_servers_request_expired_server_isn_lower():
    """F1b (pre-existing, same root): as F1 with the new SYN's ISN near
    the old one (no seq bound hit) but the server's new ISN below the old: the client's ACK
    is read against the first SYN/ACK's snd_una and discarded as too old."""
    t = FlowTable()
    t.lookup(c2s(SYN, ts=0.0, seq=100, wscale=7))
    for when in (0.01, 1, 3, 7, 15, 31):
        t.lookup(s2c(SYN | ACK, ts=when, seq=500, ack=101, wscale=7))
    t.lookup(c2s(SYN, ts=64.0, seq=200, wscale=7))
    t.lookup(s2c(SYN | ACK, ts=64.01, seq=300, ack=201, wscale=7))
    assert _discard(t, c2s(ACK, ts=64.02, seq=201, ack=301, window=1000)) == ""
    assert _discard(t, c2s(PSH | ACK, ts=64.03, seq=201, ack=301, payload=b"GET /")) == ""


def test_a_retransmitted_syn_without_the_scale_option_hides_a_segment():
    """F2 end to end: the server's window grew (its ACK says 2000 << 7 = 256,000 bytes);
    Linux takes a segment 100,000 past rcv_nxt out of order; here it is discarded."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(c2s(SYN, seq=100))                       # retransmitted, option left out
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    t.lookup(c2s(ACK, seq=101, ack=501, window=1000))
    t.lookup(c2s(PSH | ACK, seq=101, ack=501, payload=b"a" * 1000))
    t.lookup(s2c(ACK, seq=501, ack=1101, window=2000))
    assert _discard(t, c2s(PSH | ACK, seq=1101 + 100000, ack=501, payload=b"hidden")) == ""


def test_an_old_segments_ack_is_not_taken():
    """F3 (pre-existing; the brief's question 2): Linux's tcp_sequence drops a segment that
    ends before rcv_wup (SKB_DROP_REASON_TCP_OLD_SEQUENCE) before tcp_ack reads its ACK. Here
    its ACK moves s_una (and bytes_acked): ahead of the server's snd_una, a later ACK the
    server takes reads as too old, and that segment's data goes unread."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=0))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=0))
    t.lookup(c2s(ACK, seq=101, ack=501, window=1000))             # max_window 1000 (the client's own)
    t.lookup(c2s(PSH | ACK, seq=101, ack=501, window=1000, payload=b"a" * 1000))
    t.lookup(s2c(PSH | ACK, seq=501, ack=1101, payload=b"r" * 3000))   # rcv_wup = 1101
    # ends at 111, before rcv_wup: Linux drops it, its ACK unread (snd_una stays 501)
    t.lookup(c2s(ACK, seq=101, ack=3501, window=1000, payload=b"a" * 10))
    # ack 1501: after Linux's snd_una 501, not after snd_nxt 3501: taken with its data
    assert _discard(t, c2s(PSH | ACK, seq=1101, ack=1501, window=1000, payload=b"hidden")) == ""


def test_a_retransmitted_syn_without_the_scale_option_too_old():
    """F2's sibling (pre-existing): the client's own scale is read as 0 (the last SYN had
    no option) while Linux uses 7 (the first SYN's, which its request sock kept). The
    client's max_window is read 128 times too small: an ACK Linux takes is 'too old'."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(c2s(SYN, seq=100))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    t.lookup(c2s(ACK, seq=101, ack=501, window=1000))           # Linux: 128,000
    t.lookup(s2c(PSH | ACK, seq=501, ack=101, payload=b"r" * 3000))
    t.lookup(c2s(ACK, seq=101, ack=3501, window=1000))          # Linux: snd_una 3501, bytes_acked 3000
    # 1501 >= 3501 - min(128000, 3000): Linux takes it
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=1501, window=1000, payload=b"hidden")) == ""


def _two_synacks(t):
    """SYN cookies: two SYNs (other ISNs), each answered with its own SYN/ACK; the first's
    connection can still complete. Returns the flow."""
    f, _, _ = t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    t.lookup(c2s(SYN, seq=9000, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=7000, ack=9001, wscale=7))
    return f


@pytest.mark.parametrize("answer", ["last", "first"])
def test_two_synacks_turn_the_handshake_checks_off(answer):
    """Whichever SYN/ACK the client answers, the server may hold the other connection (SYN
    cookies), or the client forged one (review s19): its ACKs are not evidence. Said on the
    second SYN/ACK; no ACK read (OFFSET_UNKNOWN), no PAWS from then on."""
    from appliance.flow import OFFSET_UNKNOWN
    t = FlowTable()
    f = _two_synacks(t)
    assert f.tcp.ack_offset == OFFSET_UNKNOWN and f.tcp.ts_recent is None
    cseq, sseq = (9001, 7001) if answer == "last" else (101, 501)
    assert _discard(t, c2s(ACK, seq=cseq, ack=sseq, window=10)) == ""
    t.lookup(s2c(PSH | ACK, seq=sseq, ack=cseq, payload=b"r" * 3000))
    t.lookup(c2s(ACK, seq=cseq, ack=sseq + 3000, window=10))
    # older than snd_una - min(max_window, acked) by either SYN/ACK's numbers: read anyway
    assert _discard(t, c2s(PSH | ACK, seq=cseq, ack=sseq + 1, window=10, payload=b"x")) == ""
    assert _discard(t, c2s(PSH | ACK, seq=cseq, ack=(sseq + 200000) & MASK, window=10, payload=b"y")) == ""


def test_the_second_synack_says_so_once():
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    said = []
    for synack in (s2c(SYN | ACK, seq=600, ack=101, wscale=7), s2c(SYN | ACK, seq=700, ack=101, wscale=7)):
        t.lookup(synack)
        said.append(synack.anomalies)
    assert said == [["tcp.handshake_ambiguous"], []]


@pytest.mark.parametrize("other", [dict(seq=501), dict(ack=102), dict(wscale=6), dict(wscale=None)])
def test_a_synack_differing_in_any_number_or_its_scale_is_a_second_one(other):
    """A forged copy of the server's SYN/ACK with one field changed (no scale option: the
    client's scale read as 0, an ACK the server takes too old here) is a second one."""
    from appliance.flow import OFFSET_UNKNOWN
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, seq=100, wscale=7, tsopt=(5000, 0)))
    real = dict(seq=500, ack=101, wscale=7, tsopt=(7, 5000))
    t.lookup(s2c(SYN | ACK, **real))
    t.lookup(s2c(SYN | ACK, **{**real, **other}))
    assert f.tcp.ack_offset == OFFSET_UNKNOWN


@pytest.mark.parametrize("echo", [(7, 5001), (8, 5000 + (1 << 30)), None])
def test_a_synack_differing_only_in_its_echo_turns_paws_off(echo):
    """FreeBSD echoes a resent SYN's newer TSval; a forged echo far ahead would make every
    real segment a PAWS discard here. Either way: no PAWS, the rest of the checks kept."""
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, seq=100, wscale=7, tsopt=(5000, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7, tsopt=(7, 5000)))
    p = s2c(SYN | ACK, seq=500, ack=101, wscale=7, tsopt=echo)
    t.lookup(p)
    assert f.tcp.ack_offset == 0 and f.tcp.wscale == 7 and f.tcp.ts_recent is None and p.anomalies == []
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(4000, 7))) == ""


def test_the_same_synack_again_keeps_paws():
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(5000, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 5000)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(9, 5000)))     # resent: its own TSval moved
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(4000, 7))) == "tcp.paws_discard"


def test_a_resent_synack_is_not_a_second_one():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    t.lookup(c2s(SYN, seq=100, wscale=7))                # and the SYN resent as it was
    t.lookup(c2s(ACK, seq=101, ack=501, window=10))
    assert f.tcp.ack_offset == 0 and f.tcp.wscale == 7


def test_an_old_segments_window_still_counts():
    """A server ACK the client forged moves s_wup past a segment the server still takes
    (its rcv_wup lags: delayed ACK): that segment's window must not be lost here, or a
    later ACK the server takes would read as too old."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=0))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=0))
    t.lookup(c2s(ACK, seq=101, ack=501, window=10))
    t.lookup(s2c(PSH | ACK, seq=501, ack=101, payload=b"r" * 3000))     # rcv_wup 101
    t.lookup(c2s(ACK, seq=101, ack=3501, window=10))                     # snd_una 3501, 3000 acked
    t.lookup(c2s(PSH | ACK, seq=101, ack=3501, window=10, payload=b"a" * 100))
    t.lookup(s2c(ACK, seq=3501, ack=201))                                # forged: s_wup 201
    p = c2s(PSH | ACK, seq=101, ack=3501, window=5000, payload=b"a" * 50)  # ends at 151
    t.lookup(p)
    assert p.discard == ""
    # the server took that window: 1000 >= 3501 - min(5000, 3000), an old ACK it accepts
    assert _discard(t, c2s(PSH | ACK, seq=201, ack=1000, window=5000, payload=b"x")) == ""


def test_an_old_segments_timestamp_is_not_taken():
    """Linux drops the old segment before tcp_replace_ts_recent: its TSval never becomes
    ts_recent, and a later segment with an older TSval (but newer than ts_recent) is read."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(100, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 100)))
    t.lookup(c2s(ACK, seq=101, ack=501, tsopt=(100, 7)))
    t.lookup(c2s(PSH | ACK, seq=101, ack=501, tsopt=(100, 7), payload=b"a" * 100))
    t.lookup(s2c(ACK, seq=501, ack=201, tsopt=(8, 100)))                 # rcv_wup 201
    t.lookup(c2s(PSH | ACK, seq=101, ack=501, tsopt=(1000, 8), payload=b"a" * 50))   # old: dropped
    assert _discard(t, c2s(PSH | ACK, seq=201, ack=501, tsopt=(500, 8), payload=b"b")) == ""


def test_a_resent_syn_with_other_timestamps_takes_the_synacks_echo():
    """The SYN/ACK echoes the TSval of the SYN the server kept: PAWS from there."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(5000, 0), wscale=7))
    t.lookup(c2s(SYN, seq=100, tsopt=(6000, 0), wscale=2))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 5000), wscale=7))
    t.lookup(c2s(ACK, seq=101, ack=501, tsopt=(6000, 7)))
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=501, tsopt=(4000, 7), payload=b"a")) == "tcp.paws_discard"


# review s19's: a forged second SYN/ACK the client itself answers
def test_a_forged_synack_without_scale_confirmed_by_an_out_of_window_ack():
    """No RST needed: the forged SYN/ACK keeps the server's ISN, acks another client
    number Y (before the real one) and carries no window scale; the client's ACK at seq Y
    "confirms" it here (offset 0). Linux: ack_seq is its snt_isn + 1, seq Y is out of the
    request's window: an ACK back and the segment dropped (tcp_check_req), nothing reset.
    The receiver now reads the client's scale as 0 where Linux uses 7, and an older ACK
    the server takes (within window << 7) is discarded here as too old."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=7))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=7))
    y = (101 - 200000) & MASK
    t.lookup(s2c(SYN | ACK, seq=500, ack=y))                       # forged, no wscale
    t.lookup(c2s(ACK, seq=y, ack=501, window=1000))                 # Linux: out of window, dropped
    t.lookup(c2s(ACK, seq=101, ack=501, window=1000))               # Linux: the handshake completes
    t.lookup(s2c(PSH | ACK, seq=501, ack=101, payload=b"r" * 3000))
    t.lookup(c2s(ACK, seq=101, ack=3501, window=1000))              # Linux: snd_una 3501, 3000 acked
    # 1501 >= 3501 - min(1000 << 7, 3000): Linux takes it
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=1501, window=1000, payload=b"hidden")) == ""


def test_a_forged_synack_echo_sets_ts_recent():
    """The rebuilt receiver's ts_recent is the forged SYN/ACK's TSecr: every client segment
    is then a PAWS discard here; Linux's ts_recent is the SYN's TSval."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(5000, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 5000)))
    t.lookup(s2c(SYN | ACK, seq=9999, ack=101, tsopt=(7, 5000 + (1 << 30))))   # forged
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(5001, 7))) == ""


def test_a_forged_first_synack_echo_is_dropped_with_the_doubt():
    """The forged SYN/ACK arrives first (its echo far ahead: PAWS would discard every real
    segment), the server's own second: the doubt turns PAWS off."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(5000, 0)))
    t.lookup(s2c(SYN | ACK, seq=9999, ack=101, tsopt=(7, 5000 + (1 << 30))))   # forged
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 5000)))
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(5001, 7))) == ""
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=501, tsopt=(5002, 7), payload=b"GET /")) == ""


# review s19c: a hostile client without forged packets

def test_an_old_acks_newer_tsval_is_taken_as_linuxs_fast_path_does():
    """H1 / s19d F3: Linux's slow path takes no TSval from an ACK older than snd_una
    (tcp_ack's old_ack), its fast path stores it first; the client picks the path. Taken
    here: the later segment is a PAWS discard, which stream.py turns into an ambiguous
    reading while its bytes are unread (test_stream.py, test_hostile_client.py)."""
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, wscale=0, tsopt=(100, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=0, tsopt=(7, 100)))
    t.lookup(c2s(ACK, seq=101, ack=501, window=5000, tsopt=(100, 7)))
    t.lookup(s2c(PSH | ACK, seq=501, ack=101, payload=b"r" * 3000, tsopt=(8, 100)))
    t.lookup(c2s(ACK, seq=101, ack=3501, window=5000, tsopt=(101, 8)))     # snd_una 3501
    t.lookup(c2s(ACK, seq=101, ack=2000, window=5000, tsopt=(1 << 30, 8)))   # old ACK, far TSval
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=3501, window=5000, tsopt=(102, 8), payload=b"G")) == "tcp.paws_discard"


@pytest.mark.parametrize("ack, taken", [(None, True), (501, True), (777, False)])
def test_a_rst_in_the_handshake_is_taken_exactly(ack, taken):
    """H3: Linux's request takes a RST only in its window, and a RST whose ACK is not its
    ISN+1 goes to the listener, which drops it: taken here at exactly rcv_nxt only."""
    from appliance.packet import RST
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    flags = RST | ACK if ack is not None else RST
    assert _discard(t, c2s(flags, seq=101 + 70000, ack=ack or 0)) == "tcp.rst_not_exact"
    assert _discard(t, c2s(flags, seq=101, ack=ack or 0)) == ("" if taken else "tcp.rst_not_exact")


def test_a_rst_in_the_handshake_behind_the_syn_proxy_reads_no_ack():
    """Behind the proxy the client's ACK is in the cookie's numbers: only its seq is read."""
    from appliance.packet import RST
    t = FlowTable(proxied_ports=frozenset({80}))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    assert _discard(t, c2s(RST | ACK, seq=101, ack=123456)) == ""


def test_two_syns_before_the_synack_are_ambiguous():
    """H4: Linux keeps the first SYN's request (the second is out of its window) or the
    second (the first reset or expired); the SYN/ACK does not say which."""
    from appliance.flow import OFFSET_UNKNOWN
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, seq=100))
    t.lookup(c2s(SYN, seq=100 + (1 << 30)))
    t.lookup(c2s(SYN, seq=100 + (1 << 30)))            # (a third, as the second: still)
    p = s2c(SYN | ACK, seq=500, ack=101)
    t.lookup(p)
    assert f.tcp.ack_offset == OFFSET_UNKNOWN and p.anomalies == ["tcp.handshake_ambiguous"]
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, seq=100))
    t.lookup(c2s(SYN, seq=100))                          # resent: the same ISN
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    assert f.tcp.ack_offset == 0


@pytest.mark.parametrize("rst", [False, True])
def test_paws_in_the_handshake_has_no_slack_and_covers_rsts(rst):
    """s19d F5/F6: Linux's request checks PAWS with window 0 and on RSTs too
    (tcp_check_req's tcp_paws_reject): a third ACK or RST one tick older than the SYN is
    dropped there; after the handshake a RST is exempt and one tick is let through."""
    from appliance.packet import RST
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100, tsopt=(5000, 0)))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, tsopt=(7, 5000)))
    flags = RST if rst else ACK
    assert _discard(t, c2s(flags, seq=101, ack=501 if not rst else 0, tsopt=(4999, 7))) == "tcp.paws_discard"
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(5000, 7))) == ""       # the handshake done
    assert _discard(t, c2s(ACK, seq=101, ack=501, tsopt=(4999, 7))) == ""       # slack 1 now
    assert _discard(t, c2s(RST, seq=101, tsopt=(1, 7))) == ""                    # RSTs exempt
