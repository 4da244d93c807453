"""Review s19c: a hostile client (some cases forging the server's packets, some not: an old
ACK carrying a newer TSval, a TTL-limited segment, an out-of-window RST in the handshake, two
SYNs before the SYN/ACK) against the receiver model. Each request here is REQ (Host
evil.example, blocked by rule 1): a drop is the rule or the exception policy; a pass is an
evasion. The control case of each is the same exchange without the attack."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

import test_forged_synack as forged_synack

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
REQ = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
GOOD = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"      # same length

# replay knows no interfaces (live: the kernel drops such a packet, routed back out where it
# came in, and appliance/ingress.py refuses it to its flow)
FORGED_OPEN = pytest.mark.xfail(strict=True, reason="replay: a client's forged server packet is taken as the server's (review s19c)")
ATTACKS = [False, pytest.param("replay", marks=FORGED_OPEN), "live"]


def seg(to_server, flags, seq, ack, data=b"", win=65535, ts=None, urg=0, ttl=64):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    opts = b"" if ts is None else struct.pack("!BBBBII", 1, 1, 8, 10, ts[0] & MASK, ts[1] & MASK)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, (5 + len(opts) // 4) << 4, flags, win, 0, urg) + opts
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, ttl, 6, 0, src, dst)
    return ip + tcp + data


def _insp(tmp_path, live=False):
    """go(raw, forged=False): as test_forged_synack._insp's, one millisecond apart."""
    go_at = forged_synack._insp(tmp_path, live)
    t = [0.0]

    def go(raw, forged=False):
        t[0] += 0.001
        return go_at(t[0], raw, forged)
    return go


def _verdicts_block(vs):
    v = vs[-1]
    st = v.flow.stream
    return any(x.action == "drop" for x in vs), (
        [x.action for x in vs], v.flow.tcp and v.flow.tcp.ts_recent, v.flow.tcp and v.flow.tcp.ack_offset,
        st.data if st is not None else None, st.ambiguous if st is not None else None)


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_an_old_ack_with_a_newer_tsval_sets_ts_recent(tmp_path, attack):
    """No forged packet. Linux's slow path (tcp_ack: before(ack, prior_snd_una) -> old_ack,
    returned before tcp_replace_ts_recent) keeps ts_recent for a segment whose ACK is older
    than snd_una (within the window: not too old); the model takes its TSval anyway. The
    client's next segment with its real clock is then a PAWS discard here, taken by the
    server. (The old-ACK segment is sent with another window field, so header prediction,
    which stores ts_recent before tcp_ack, does not run.)"""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    go(seg(False, 0x18, 5001, 1001, b"x" * 1000, ts=(8, 5001)))      # server data (a banner)
    go(seg(True, 0x10, 1001, 6001, ts=(5002, 8)))                   # acked: bytes_acked 1000
    if attack:
        vs.append(go(seg(True, 0x10, 1001, 5501, win=65000, ts=(5002 + (1 << 30), 8))))   # old ACK
    vs.append(go(seg(True, 0x18, 1001, 6001, REQ, ts=(5003, 8))))   # Linux: taken
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_forged_server_ack_ahead_of_rcv_wup_sets_ts_recent(tmp_path, attack):
    """The model's s_wup follows any server ACK not after c_nxt ('ACKs still in flight make
    ours lag'); a forged one makes it lead. c_nxt itself is moved by a far segment Linux
    drops (no window check). A segment past the server's rcv_wup (out of order: queued,
    tcp_replace_ts_recent skips it) then gives its TSval here."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    vs.append(go(seg(True, 0x18, 1002, 5001, REQ[1:3], ts=(5001, 7))))   # Linux: ofo queued (dup ACK 1001)
    if attack:
        vs.append(go(seg(False, 0x10, 5001, 1003, ts=(7, 5001))))    # forged: s_wup = 1003 (not after c_nxt)
    # the same bytes again: seq 1002 after Linux's rcv_wup 1001 (no TSval taken); here seq <= s_wup <= end
    vs.append(go(seg(True, 0x18, 1002, 5001, REQ[1:3], ts=(5002 + (1 << 30), 7))))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5002, 7))))   # Linux: taken
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_forged_server_seq_lets_an_unsent_ack_move_s_una(tmp_path, attack):
    """Any server packet moves s_nxt forward (up to 2**31): the client forges one 50,000
    ahead, then ACKs it (Linux: ACK of unsent data, dropped; here s_una and bytes_acked
    move). With a small advertised window its real ACKs are then 'too old' here. The
    request's tail, out of order (not at rcv_nxt: no tcp.ack_ambiguous), is discarded
    here and queued by Linux; a big window (in another segment Linux drops) makes the
    real ACK acceptable again; the first byte fills the gap (Linux delivers the request)
    and a benign copy of the tail is read here (a duplicate to Linux)."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, win=1000))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001, win=1000))
    if attack:
        vs.append(go(seg(False, 0x10, 5001 + 50_000, 1001)))         # forged: s_nxt + 50,000
        vs.append(go(seg(True, 0x10, 1001, 5001 + 50_000, win=1000)))     # Linux: ack unsent, dropped
    vs.append(go(seg(True, 0x18, 1002, 5001, REQ[1:], win=1000)))     # here too old; Linux: ofo queued
    if attack:
        vs.append(go(seg(True, 0x10, 1001, 5001 + 50_000, win=65535)))    # Linux: dropped; max_window up
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ[:1])))               # both: Linux delivers REQ
    vs.append(go(seg(True, 0x18, 1002, 5001, GOOD[1:])))              # Linux: duplicate
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_forged_server_ack_behind_s_wup_lets_an_old_segment_move_s_una(tmp_path, attack):
    """bed7c09's old-sequence rule (no ACK from a segment ending before s_wup) undone by a
    forged server ACK behind the real one: s_wup takes any ACK not after c_nxt. The old
    segment (Linux: tcp_sequence drops it, ACK unread) then moves s_una here; with a small
    client window the real ACK after is too old here: the request's tail (out of order) is
    discarded here, queued by Linux; the first byte (acking the server's data, taken by
    both) fills the gap; a benign copy of the tail is read here."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, win=100))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001, win=100))
    a = b"xxxx"                                                      # something the server read
    go(seg(True, 0x18, 1001, 5001, a, win=100))
    go(seg(False, 0x18, 5001, 1005, b"y" * 1000))                    # the server: ack (rcv_wup 1005), data
    if attack:
        vs.append(go(seg(False, 0x10, 6001, 1001)))                  # forged: s_wup back to 1001
    vs.append(go(seg(True, 0x10, 1001, 6001, a[:1], win=100)))       # Linux: old, dropped, ACK unread
    r = 1005
    vs.append(go(seg(True, 0x18, r + 1, 5001, REQ[1:], win=100)))    # Linux: ofo (ack = snd_una)
    vs.append(go(seg(True, 0x18, r, 6001, REQ[:1], win=100)))        # both; Linux delivers REQ
    vs.append(go(seg(True, 0x18, r + 1, 6001, GOOD[1:], win=100)))   # Linux: duplicate
    blocked, info = _verdicts_block(vs)
    assert blocked, info


def test_a_synack_resent_with_another_tsecr_is_not_a_doubt(tmp_path):
    """Benign (medium, false positive): the client resends its SYN (same ISN, a newer TSval,
    as Linux does); a FreeBSD server (syncache_add updates sc_tsreflect on a duplicate SYN)
    or a Linux one sending SYN cookies (no request sock: each SYN/ACK echoes its SYN) answers
    with the same seq and ack but the new TSval echoed. Only PAWS depends on the echo; here
    the whole flow goes to the exception policy (tcp.handshake_ambiguous)."""
    path = tmp_path / "r.yaml"
    path.write_text("rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
                    "  - {id: 2, action: pass, proto: tcp, http_host: good.example}\n")
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False))
    t = [1.0]

    def go(raw):
        t[0] += 0.5
        return insp.process(decode_l3(raw, t[0]))
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))                   # lost on the way to the client
    go(seg(True, 0x02, 1000, 0, ts=(6000, 0)))                       # the SYN resent after 1 s
    v = go(seg(False, 0x12, 5000, 1001, ts=(1007, 6000)))
    go(seg(True, 0x10, 1001, 5001, ts=(6001, 1007)))
    v = go(seg(True, 0x18, 1001, 5001, GOOD, ts=(6002, 1007)))
    rules = [r.id for r in v.alerts]
    assert v.flow.tcp.ack_offset == 0 and v.action == "pass", (v.action, v.flow.tcp.ack_offset, v.flow.verdict, rules)


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_client_rst_made_exact_by_a_forged_server_ack(tmp_path, attack):
    """s_rcv follows any server ACK not after c_nxt, and c_nxt any client segment (no window
    check): a far empty segment (Linux: out of window, dropped) and a forged server ACK of
    its end make a client RST there 'exact' here: the flow is closed here; Linux drops that
    RST (out of window). The request after it on the same connection."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001))
    if attack:
        far = 1001 + 10_000_000
        go(seg(True, 0x10, far, 5001))                           # Linux: out of window, dropped
        go(seg(False, 0x10, 5001, far))                          # forged: s_rcv = far
        vs.append(go(seg(True, 0x04, far, 0)))                   # Linux: out of window, dropped
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_two_syns_before_the_synack(tmp_path, attack):
    """Not from 91c88ac: the doubt needs a SYN/ACK seen first. Two SYNs with other ISNs
    back to back; Linux's request sock is for the first (the second, out of its window, is
    answered with an ACK and dropped); its SYN/ACK answers the first."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0))
    if attack:
        go(seg(True, 0x02, 1000 + (1 << 30), 0))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", ATTACKS, ids=["control", "attack-replay", "attack-live"])
def test_a_forged_synack_answering_an_ignored_syn(tmp_path, attack):
    """_reused: a SYN on the established connection (Linux: challenge ACK, dropped) noted in
    syn_ignored, then a SYN/ACK from the server's side acking it starts a new flow here.
    The client forges that SYN/ACK; Linux's connection goes on: the request after it."""
    go = _insp(tmp_path, attack == "live")
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001))
    a = b"GET /x HTTP/1.1\r\nHost: good.example\r\n\r\n"
    go(seg(True, 0x18, 1001, 5001, a))
    go(seg(False, 0x10, 5001, 1001 + len(a)))
    if attack:
        vs.append(go(seg(True, 0x02, 777777, 0)))                  # Linux: challenge ACK, dropped
        vs.append(go(seg(False, 0x12, 9000, 777778), forged=True))   # forged
        vs.append(go(seg(True, 0x10, 777778, 9001)))               # Linux: out of window (dup ACK)
    vs.append(go(seg(True, 0x18, 1001 + len(a), 5001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", ATTACKS, ids=["control", "attack-replay", "attack-live"])
def test_an_urgent_pointer_on_a_segment_acking_unsent_data(tmp_path, attack):
    """The F4 fix covers old segments only. A forged server segment moves s_nxt; a client
    segment acking past Linux's snd_nxt is dropped there (tcp_ack, before tcp_urg) but taken
    here, its urgent pointer too: the 'i' of evil.example leaves the stream here."""
    go = _insp(tmp_path, attack == "live")
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    go(seg(True, 0x10, 1001, 5001))
    target = 1001 + REQ.index(b"il.ex")
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ[:1])))               # the stream starts
    if attack:
        vs.append(go(seg(False, 0x10, 5001 + 50_000, 1002), forged=True))   # forged: s_nxt + 50,000
    vs.append(go(seg(True, 0x30, 1002, 5001 + 50_000, urg=target - 1002 + 1)))   # Linux: ack unsent, dropped
    vs.append(go(seg(True, 0x18, 1002, 5001, REQ[1:])))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_client_rst_out_of_window_in_the_handshake_then_a_syn(tmp_path, attack):
    """No forged packet. Before _HS_DONE any client RST is taken here (flow CLOSED); Linux's
    request sock takes one only in its window (tcp_check_req: out of window, dropped). A
    SYN with another ISN then opens a new flow here (_reused: CLOSED); Linux: out of the
    request's window, ACKed and dropped. The first connection completes and is served."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0))
    go(seg(False, 0x12, 5000, 1001))
    if attack:
        vs.append(go(seg(True, 0x04, 1001 + (1 << 30), 0)))       # Linux: out of window, dropped
        vs.append(go(seg(True, 0x02, 1000 + (1 << 30), 0)))       # Linux: ACK, dropped
    vs.append(go(seg(True, 0x10, 1001, 5001)))
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ)))
    blocked, info = _verdicts_block(vs)
    assert blocked, info


@pytest.mark.parametrize("attack", [False, True], ids=["control", "attack"])
def test_a_ttl_limited_segment_sets_ts_recent(tmp_path, attack):
    """Insertion (Ptacek-Newsham): a segment whose TTL runs out between the appliance and
    the server (TTL 2 here: 1 hop left after the appliance, the server 2+ hops away) is
    taken here, never by the server. Its TSval becomes ts_recent here; the real request
    with the client's clock is then a PAWS discard here. The TTL is decoded (pkt.ttl)
    but nothing in flow/stream compares it with the handshake's."""
    go = _insp(tmp_path)
    vs = []
    go(seg(True, 0x02, 1000, 0, ts=(5000, 0)))
    go(seg(False, 0x12, 5000, 1001, ts=(7, 5000)))
    go(seg(True, 0x10, 1001, 5001, ts=(5001, 7)))
    if attack:
        vs.append(go(seg(True, 0x10, 1001, 5001, ts=(5001 + (1 << 30), 7), ttl=2)))   # dies after the appliance
    vs.append(go(seg(True, 0x18, 1001, 5001, REQ, ts=(5002, 7))))
    blocked, info = _verdicts_block(vs)
    assert blocked, info
