"""Review s19d: a hostile client without forged packets against the receiver model's PAWS
(in the handshake: no slack, RSTs too) and the stream's 'bytes not read yet' rule. Each request is REQ (Host
evil.example, blocked by rule 1): a drop is the rule or the exception policy; a pass is an
evasion. The control case of each is the same exchange without the attack."""
import pytest

from test_hostile_client import GOOD, REQ, _insp, _verdicts_block, seg


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_the_first_data_segment_discarded_on_paws_is_ambiguous(tmp_path, attack):
    """F1: _discarded leaves the stream as it is when no byte has been read yet (its
    `st is None` branch is a `pass`): the first request, discarded here on a ts_recent
    moved by a TTL-limited bare ACK, is read by the server, never here; a copy of GOOD
    at the same place (TTL-limited too) is read here. (Also 592c822's own
    test_a_ttl_limited_segment_sets_ts_recent[attack] fails for this.)"""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    far = 5001 + (1 << 30)
    if attack:
        vs.append(go(seg(True, 0x10, 1001, 5001, ts=(far, 7), ttl=2)))          # dies after the appliance
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5002, 7))))              # the server reads it
    if attack:
        vs.append(go(seg(True, 0x18, 1001, 5001, GOOD, ts=(far, 7), ttl=2)))    # read here only
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_ttl_limited_data_decoy_then_the_request_discarded_on_paws(tmp_path, attack):
    """F2: the TTL-limited segment carries the decoy's bytes AND a far TSval: here GOOD is
    read and ts_recent moves; the real REQ at the same place (the client's clock) is a PAWS
    discard here with its bytes 'already read' (end <= rcv): neither ambiguous nor compared
    with the delivered bytes (a discard skips _compare_delivered). The server reads REQ."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    if attack:
        vs.append(go(seg(True, 0x18, 1001, 5001, GOOD, ts=(5001 + (1 << 30), 7), ttl=2)))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5002, 7))))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_an_old_ack_on_the_fast_path_sets_ts_recent_in_linux(tmp_path, attack):
    """F3: H1's rule (an old ACK gives no TSval) is Linux's slow path only. A pure ACK with
    the aligned timestamp option, seq == rcv_nxt == rcv_wup, the window the server predicts
    (the client's last one) and ack <= snd_nxt runs header prediction, which calls
    tcp_store_ts_recent BEFORE tcp_ack (tcp_rcv_established): Linux takes the far TSval,
    the model does not. GOOD's tail with the client's clock is then PAWS-dropped by Linux
    and read here (and consumed by the HTTP parser); REQ's tail at the same place with a
    TSval past the far one is read by the server, and here is a resend of consumed bytes,
    compared with nothing (see F4). No TTL trick, no forged packet."""
    go = _insp(tmp_path)
    vs = []
    far = 5002 + (1 << 30)
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    go(seg(False, 0x18, 5001, 1001, b"x" * 1000, ts=(8, 5001)))      # a banner
    go(seg(True, 0x10, 1001, 6001, ts=(5002, 8)))                   # snd_una 6001, same window
    vs.append(go(seg(True, 0x18, 1001, 6001, REQ[:1], ts=(5003, 8))))   # both read "G"
    go(seg(False, 0x10, 6001, 1002, ts=(9, 5003)))                  # rcv_wup = rcv_nxt = 1002
    if attack:
        vs.append(go(seg(True, 0x10, 1002, 5501, ts=(far, 9))))       # old ACK, same window: fast path
        vs.append(go(seg(True, 0x18, 1002, 6001, GOOD[1:], ts=(5004, 9))))   # Linux: PAWS drop; read here
    vs.append(go(seg(True, 0x18, 1002, 6001, REQ[1:], ts=(far + 1 if attack else 5004, 9))))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_ttl_limited_data_decoy_without_timestamps(tmp_path, attack):
    """Context for F2 (not from 592c822): the same insertion without PAWS: the request at
    the same place is a retransmission here, compared with the delivered bytes."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001))
    if attack:
        vs.append(go(seg(True, 0x18, 1001, 5001, GOOD, ttl=2)))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("isn2", [1000, 1000 + (1 << 30), 1000 + 5000], ids=["same-isn", "far-isn", "in-window-isn"])
def test_an_in_window_rst_linux_takes_in_the_handshake_then_a_new_connection(tmp_path, isn2):
    """Checked sound (question 2): a handshake RST inside the request's window but not
    exact: Linux (tcp_check_req -> embryonic_reset) drops the request, the model keeps
    the flow. The client's next SYN on the port (same ISN or another) opens a new request
    in Linux; here it is either the doubt on the SYN (another ISN) or on the second
    SYN/ACK (a new server ISN): the request is read, or the flow is ambiguous."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    vs.append(go(seg(True, 0x04, 1001 + 100, 0)))                 # Linux: in window, request reset
    go(seg(True, 0x02, isn2, 0))
    go(seg(False, 0x12, 90000, isn2 + 1))                          # a new request, a new server ISN
    go(seg(True, 0x10, isn2 + 1, 90001))
    vs.append(go(seg(True, 0x18, isn2 + 1, 90001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_an_exact_handshake_rst_with_an_old_tsval_then_a_syn(tmp_path, attack):
    """F5: the model exempts every RST from PAWS (right for an established socket:
    tcp_validate_incoming accepts a RST that failed PAWS). Linux's request sock does not:
    tcp_check_req sets ts_recent_stamp to about now (now - reqsk_timeout) and calls
    tcp_paws_reject(&tmp_opt, th->rst), which rejects a RST with an old TSval while its
    stamp is within TCP_PAWS_MSL (60 s): the request lives on. Here the RST is exact (the
    592c822 rule) and taken: the flow is CLOSED; a SYN with another ISN then opens a new
    flow here (Linux: out of the request's window, ACKed and dropped); the first
    connection completes and its request is served (H3 again, by PAWS instead of the window)."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    if attack:
        vs.append(go(seg(True, 0x04, 1001, 0, ts=(4000, 0))))            # Linux: paws_reject, dropped
        vs.append(go(seg(True, 0x02, 1000 + (1 << 30), 0, ts=(5001, 0))))   # Linux: ACK, dropped
    vs.append(go(seg(True, 0x10, 1001, 5001, ts=(5002, 7))))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5003, 7))))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_the_handshake_ack_one_tick_old_is_a_paws_drop_in_the_request_sock(tmp_path, attack):
    """F6: in the handshake Linux's PAWS window is 0, not 1: tcp_check_req calls
    tcp_paws_reject -> tcp_paws_check(rx_opt, 0), so a segment whose TSval is the SYN's
    minus 1 is rejected there (dropped with an ACK), while the model (2 <= ts_recent -
    tsval, tcp_paws_discard's TCP_PAWS_WINDOW of an established socket) takes it. The
    third ACK carrying GOOD one tick old: read here, dropped by Linux; then the same
    place with REQ and the right clock: Linux's connection opens and reads REQ; here a
    resend of bytes consumed (F4)."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    if attack:
        vs.append(go(seg(True, 0x18, 1001, 5001, GOOD, ts=(4999, 7))))   # Linux: paws_reject
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5001, 7))))
    blocked, info = _verdicts_block(vs)
    assert blocked, info
