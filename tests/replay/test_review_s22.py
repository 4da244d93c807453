"""Review s22 (of e891cde): the kept bytes' second region (the oldest and the most recent
`stream_bytes` not acknowledged). R1: bytes read between the two regions before a verdict
rests on them; R2: an urgent byte's place in a copy; R3: bytes past a reload's gap; a fuzz of
the regions against the true bytes."""
import random

import pytest

from test_unconfirmed_bytes import HTTP_BLOCK, TLS_BLOCK, _send, _stream, handshake, inspector, seg, tls_seg
from test_unconfirmed_bytes import ISN  # noqa
from replaykit import tls_records

URG_P = 0.05
PAD = b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"p" * 80) for i in range(110))   # ~10.6 KB of header lines


def _drops(vs):
    return any(x.action == "drop" for x in vs)


@pytest.mark.parametrize("body", [0, 9000])
def test_host_line_pushed_out_of_recent_by_later_header_lines(tmp_path, body):
    """F5 variant: the decoy's Host line, then > stream_bytes of header lines before the blank
    line. The Host line falls between the oldest and the most recent kept bytes, not judged:
    the real Host line at its place is compared with nothing."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    s = 1001
    if body:
        req1 = b"POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % body + b"a" * body
        lead = req1 + b"GET / HTTP/1.1\r\n"                 # reaches the server, ACK not yet
    else:
        lead = b"GET / HTTP/1.1\r\n" + PAD                  # fills the oldest region with header lines
    _send(go, s, lead)
    s += len(lead)
    decoy = b"Host: good.example\r\n"
    real = b"Host: evil.example\r\n"
    vs = [go(seg(True, 0x18, s, 5001, decoy, ttl=2))]       # dies past the appliance
    vs.append(_send(go, s + len(decoy), PAD))                # reaches the server (queued there)
    vs.append(go(seg(True, 0x18, s, 5001, real)))            # the server reads this one
    vs.append(go(seg(True, 0x18, s + len(real) + len(PAD), 5001, b"\r\n")))
    vs.append(go(seg(False, 0x10, 5001, s + len(real) + len(PAD) + 2)))
    assert _drops(vs), [(x.action, x.offload, x.flow.final) for x in vs]


@pytest.mark.parametrize("body", [0, 9000])
def test_control_the_same_without_decoy_drops(tmp_path, body):
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    s = 1001
    if body:
        req1 = b"POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % body + b"a" * body
        lead = req1 + b"GET / HTTP/1.1\r\n"
    else:
        lead = b"GET / HTTP/1.1\r\n" + PAD
    _send(go, s, lead)
    s += len(lead)
    real = b"Host: evil.example\r\n"
    vs = [go(seg(True, 0x18, s, 5001, real))]
    vs.append(_send(go, s + len(real), PAD))
    vs.append(go(seg(True, 0x18, s + len(real) + len(PAD), 5001, b"\r\n")))
    assert _drops(vs), [(x.action, x.offload, x.flow.final) for x in vs]


def test_unit_an_unjudged_line_between_the_regions_is_not_compared():
    """The mechanism of the test above on StreamStart: the oldest region full, a line consumed,
    then > limit bytes consumed after it; a resend at the line's place says otherwise: no conflict."""
    st = _stream(limit=8)
    st.add(ISN + 1, b"abcdefgh")
    st.consume(8)                                            # the oldest: full
    st.add(ISN + 9, b"HOSTgood")
    st.consume(8)                                            # the decoy line: in _recent
    st.add(ISN + 17, b"padpadpa")
    st.consume(8)                                            # pushes it out of _recent
    st.add(ISN + 9, b"HOSTevil")                             # the real line at its place
    assert st.overlap_conflicts == 1, "a resend over consumed, unacknowledged bytes went uncompared"


def _check_region(st, buf, seq, end, cuts, truth, urgent):
    if not buf:
        return
    want = bytes([truth[i] for i in range(seq, end) if i not in urgent])
    assert bytes(buf) == want, ("region bytes out of place", seq, end, cuts)
    assert set(cuts) == {u for u in urgent if seq <= u < end}, ("cuts", seq, end, cuts, urgent)
    assert len(buf) <= st.limit


@pytest.mark.parametrize("reads", [False, True], ids=["unread", "read"])
@pytest.mark.parametrize("seed", range(150))
def test_fuzz_same_bytes_never_conflict_and_regions_hold_the_right_bytes(seed, reads):
    """Random segments (in order, out of order, resent: always the same bytes), an urgent
    byte now and then, random consume/ack/judged/settle: the kept regions hold the bytes at
    their places, and a resend is a conflict exactly when it covers judged, unacknowledged,
    consumed bytes kept in neither region (review s21 B), or bytes the app layer read
    (`reads`: every consume reads; else none does) in neither region (review s22 R1)."""
    rnd = random.Random(seed)
    limit = rnd.choice([8, 16, 32])
    st = _stream(limit=limit)
    truth = bytes(rnd.randrange(256) for _ in range(2000))
    urgent = set()
    read = set()                                            # offsets consumed as read, not acknowledged
    for step in range(300):
        op = rnd.random()
        if op < 0.5:
            if rnd.random() < 0.6:
                rel = max(0, st.rcv - rnd.randrange(0, 3 * limit))
            else:
                rel = st.rcv + rnd.randrange(0, limit)
            n = rnd.randrange(1, limit + 3)
            if rel + n > len(truth):
                continue
            if rnd.random() < URG_P and not urgent and rel == st.rcv:
                if st.mark_urgent(ISN + 1 + rel, rnd.randrange(1, n + 1)):
                    return                                  # ambiguous: out of scope
            # the oracle, from the state before
            kept = set(range(st._kept_seq, st._kept_end)) if st._kept else set()
            rec = set(range(st._recent_seq, st._recent_end)) if st._recent else set()
            need = set(range(max(rel, st.acked), min(rel + n, st.judged, st._buf_seq)))
            need |= {o for o in range(max(rel, st.acked), min(rel + n, st._buf_seq)) if o in read}
            expect = bool(need - kept - rec)
            u = st.urg
            before = st.overlap_conflicts
            st.add(ISN + 1 + rel, truth[rel:rel + n])
            if u is not None and st.urg is None:
                urgent.add(u)
            got = st.overlap_conflicts != before
            if rel >= st._buf_seq or rel + n > st.rcv or True:
                # (bytes at rcv and past it are delivered or queued: no conflict from same bytes)
                pass
            assert got == expect, (seed, step, rel, n, st.acked, st.judged, st._buf_seq,
                                   (st._kept_seq, st._kept_end, len(st._kept or b"")),
                                   (st._recent_seq, st._recent_end, len(st._recent or b"")))
        elif op < 0.75:
            b0 = st._buf_seq
            st.consume(rnd.randrange(0, len(st._buf) + 1), () if reads else True)
            if reads and not st._settled:
                read |= set(range(max(b0, st.acked), st._buf_seq))
        elif op < 0.9:
            st.ack(ISN + 1 + rnd.randrange(st.acked, st.rcv + 1))
            read = {o for o in read if o >= st.acked}
        elif op < 0.97:
            if not st._settled:
                st.judged = st.rcv
        else:
            if rnd.random() < 0.5:
                st.settle()
                read.clear()
            else:
                st._settled = False                          # unsettle (a reload)
        _check_region(st, st._kept, st._kept_seq, st._kept_end, st._kept_cuts, truth, urgent)
        _check_region(st, st._recent, st._recent_seq, st._recent_end, st._recent_cuts, truth, urgent)


def test_unit_after_a_reload_bytes_past_a_trimmed_kept_region_are_not_kept():
    """settle() trims _kept to `judged`; bytes consumed while settled are not kept; unsettle()
    (a reload: "judged and kept again from here") -- but _keep returns while _kept is non-empty
    and not contiguous, and _recent is never started: the next request's lines are not kept."""
    st = _stream(limit=64)
    st.add(ISN + 1, b"GET1")
    st.consume(4)
    st.judged = st.rcv                                       # a verdict on GET1
    st.settle()                                              # held only by the ACK
    st.add(ISN + 5, b"body")
    st.consume(4)                                            # read while settled: not kept
    st._settled = False                                      # a reload (ClientStream.unsettle)
    st.add(ISN + 9, b"HOSTgood")                             # the decoy's lines (die past here)
    st.consume(8)
    st.add(ISN + 9, b"HOSTevil")                             # the real ones at their place
    assert st.overlap_conflicts == 1, (bytes(st._kept), st._kept_end, st._recent)



import struct as _struct


def _big_hello(sni, before, after):
    """A ClientHello with `before` bytes of padding extension, the SNI, `after` bytes more."""
    name = sni.encode()
    pad = lambda n: _struct.pack("!HH", 21, n) + bytes(n)
    sni_ext = _struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    exts = (pad(before) if before else b"") + sni_ext + (pad(after) if after else b"")
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + _struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + _struct.pack("!H", len(exts)) + exts)
    return tls_records(b"\x01" + _struct.pack("!I", len(body))[1:] + body, 16384)


@pytest.mark.parametrize("control", [True, False], ids=["control", "attack"])
def test_tls_sni_between_the_regions(tmp_path, control):
    """The same class on TLS: a large hello (padding extensions: a post-quantum key share is
    ~1.2 KB, any client may pad), the SNI past the oldest `stream_bytes` and more than
    `stream_bytes` before its end."""
    go = inspector(tmp_path, TLS_BLOCK, stream_bytes=8192)
    handshake(go)
    good, evil = _big_hello("good.example", 9000, 9000), _big_hello("evil.example", 9000, 9000)
    at = good.index(b"good.example")
    vs = []
    if control:
        vs.append(_send_tls(go, 1001, evil))
    else:
        vs.append(_send_tls(go, 1001, good[:at + 20], ttl=2))     # up to past the SNI: dies
        vs.append(_send_tls(go, 1001 + at + 20, good[at + 20:-10]))   # most of the rest: queued there
        vs.append(_send_tls(go, 1001, evil[:at + 20]))            # the real front
        vs.append(_send_tls(go, 1001 + len(good) - 10, good[-10:]))   # the hello completes
    vs.append(go(tls_seg(False, 0x10, 5001, 1001 + len(good))))
    assert _drops(vs), [(x.action, x.offload) for x in vs]


def _send_tls(go, seq, data, ttl=64, mss=1400):
    v = None
    for i in range(0, len(data), mss):
        v = go(tls_seg(True, 0x18, seq + i, 5001, data[i:i + mss], ttl=ttl))
    return v


def _f5(go, lead, decoy, real, tail=b"\r\n", decoy_mss=1400, ack_at=None, urg=None):
    """lead reaches the server (no ACK yet, or one at ack_at); decoy dies past the appliance;
    real at its place; then tail. Returns the verdicts."""
    _send(go, 1001, lead)
    s = 1001 + len(lead)
    vs = []
    if ack_at is not None:
        vs.append(go(seg(False, 0x10, 5001, 1001 + ack_at)))
    for i in range(0, len(decoy), decoy_mss):
        if urg is not None and i <= urg < i + decoy_mss:
            raw = seg(True, 0x38, s + i, 5001, decoy[i:i + decoy_mss], ttl=2)   # URG|ACK|PSH
            raw = bytearray(raw)
            _struct.pack_into("!H", raw, 20 + 18, urg - i + 1)                  # the pointer: past the byte
            vs.append(go(bytes(raw)))
        else:
            vs.append(go(seg(True, 0x18, s + i, 5001, decoy[i:i + decoy_mss], ttl=2)))
    vs.append(go(seg(True, 0x18, s, 5001, real)))
    vs.append(go(seg(True, 0x18, s + len(real), 5001, tail)))
    vs.append(go(seg(False, 0x10, 5001, s + len(real) + len(tail))))
    return vs


REQ1 = b"POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n"
DECOY = b"GET / HTTP/1.1\r\nHost: good.example\r\n"
REAL = b"GET / HTTP/1.1\r\nHost: evil.example\r\n"


@pytest.mark.parametrize("case", ["split", "straddle", "straddle-host", "promoted", "promoted-in-recent",
                                  "blanks", "pipelined", "urgent"])
def test_f5_variants_caught(tmp_path, case):
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    kw = {}
    decoy, real = DECOY, REAL
    if case == "split":
        lead = REQ1 % 9000 + b"a" * 9000
        kw["decoy_mss"] = 5
    elif case in ("straddle", "straddle-host"):
        # the oldest region ends inside the decoy (its request line, or its Host line)
        cut = 5 if case == "straddle" else DECOY.index(b"good") + 2
        n = 8192 - cut - len(REQ1 % 9000)
        n = 8192 - cut - len(REQ1 % n)
        lead = REQ1 % n + b"a" * n
        assert len(lead) == 8192 - cut
    elif case == "promoted":
        lead = REQ1 % 20000 + b"a" * 20000
        kw["ack_at"] = 9000                                   # the oldest go; the recent ones promoted
    elif case == "promoted-in-recent":
        lead = REQ1 % 20000 + b"a" * 20000
        kw["ack_at"] = 15000                                  # inside the recent ones
    elif case == "blanks":
        lead = b"\r\n" * 4500
    elif case == "pipelined":
        lead = REQ1 % 9000 + b"a" * 9000 + b"GET /2 HTTP/1.1\r\nHost: good.example\r\n\r\n"
    elif case == "urgent":
        lead = REQ1 % 9000 + b"a" * 9000
        i = DECOY.index(b"good")
        decoy = DECOY[:i] + b"X" + DECOY[i:]                  # X out of band: reads good.example
        real = REAL[:i] + b"X" + REAL[i:]                     # (no URG: the server reads X too)
        kw["urg"] = i
    vs = _f5(go, lead, decoy, real, **kw)
    assert _drops(vs), [(x.action, x.offload) for x in vs]


@pytest.mark.parametrize("resend_urg", [True, False], ids=["resend-with-URG", "resend-without-URG"])
def test_a_decoy_urgent_mark_that_dies_then_the_same_bytes_without_it(tmp_path, resend_urg):
    """The decoy carries URG on the 'e' of evil.example: read here as "vil.example" (pass).
    It dies past the appliance; the same bytes again without URG: the server reads the byte
    in band, evil.example. _differs skips the urgent byte's place, so the copy "agrees".
    (Linux retransmits with URG while snd_up is ahead: a benign resend carries the mark.)"""
    go = inspector(tmp_path, HTTP_BLOCK)
    handshake(go, seg)
    req = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    urg = req.index(b"evil") + 1                              # the pointer: past the byte
    v = go(seg(True, 0x38, 1001, 5001, req, urg=urg, ttl=2))
    assert v.action == "pass"                                 # read "Host: vil.example"
    if resend_urg:
        v = go(seg(True, 0x38, 1001, 5001, req, urg=urg))
        assert v.action == "pass"                             # the server reads the same
    else:
        v = go(seg(True, 0x18, 1001, 5001, req))
        assert v.action == "drop", "the server read evil.example in band"


def test_a_decoy_without_urg_then_the_same_bytes_with_urg(tmp_path):
    """The reverse: the decoy (no URG) reads "Host: eXvil.example" here (pass); it dies; the
    same bytes with URG on the X: mark_urgent finds the byte already received here (it stays
    in the stream) while the server, whose rcv_nxt is before it (tcp_check_urg: `before(ptr,
    rcv_nxt)` false), takes it out of band and reads evil.example."""
    go = inspector(tmp_path, HTTP_BLOCK)
    handshake(go, seg)
    req = b"GET / HTTP/1.1\r\nHost: eXvil.example\r\n\r\n"
    v = go(seg(True, 0x18, 1001, 5001, req, ttl=2))
    assert v.action == "pass"
    v = go(seg(True, 0x38, 1001, 5001, req, urg=req.index(b"X") + 1))
    assert v.action == "drop", "the server read evil.example (X out of band)"


@pytest.mark.parametrize("control", [True, False], ids=["control", "attack"])
def test_a_chunk_size_line_between_the_regions(tmp_path, control):
    """Body bytes are never judged: a chunk-size line read here (a decoy that dies) frames
    16 KiB more body; past the oldest region and pushed out of the most recent one by that
    body, the real bytes at its place end the body and start a request naming evil.example
    (the server reads it; the appliance reads body)."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    head = b"POST /a HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    lead = head + b"2400\r\n" + b"a" * 0x2400 + b"\r\n"     # fills the oldest region
    real = b"0\r\n\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    decoy = b"4000\r\n" + b"b" * 0x4000 + b"\r\n0\r\n\r\n"
    _send(go, 1001, lead)
    s = 1001 + len(lead)
    vs = []
    if control:
        vs.append(_send(go, s, real))
    else:
        vs.append(go(seg(True, 0x18, s, 5001, decoy[:len(real)], ttl=2)))   # dies past here
        vs.append(_send(go, s + len(real), decoy[len(real):]))            # the server queues it
        vs.append(go(seg(True, 0x18, s, 5001, real)))                      # the server reads this
    vs.append(go(seg(False, 0x10, 5001, s + len(decoy))))
    assert _drops(vs), [(x.action, x.offload) for x in vs]
