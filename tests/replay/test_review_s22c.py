"""Review s22c (of 9132f77): read runs that hold their bytes. S1: a fuzz of the runs' bytes
and budget. Open (strict xfails): C1, a benign resend over merged runs (more than MAX_READS
runs of read bytes in flight: a chunked upload of many small chunks), and C2 (older, review
s21 B): a benign resend of judged bytes past the kept regions (a header block over 16 KiB)."""
import pytest

from test_unconfirmed_bytes import HTTP_BLOCK, _stream, handshake, inspector, seg, ISN


def _small_chunks(go, chunks, chunk):
    """A benign chunked upload of `chunks` small chunks all in flight (a log shipper, a
    generator body); the server's ACK (SACK) stops at a hole in the middle; only the hole
    is resent, byte for byte the same."""
    handshake(go, seg)
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    one = b"%x\r\n" % chunk
    data = head + b"".join(one + bytes([65 + i % 26]) * chunk + b"\r\n" for i in range(chunks))
    for i in range(0, len(data), 1400):
        assert go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400])).action == "pass"
    return data


@pytest.mark.parametrize("chunks", [40, pytest.param(100, marks=pytest.mark.xfail(strict=True, reason="open (review s22c C1): merged runs hold no bytes"))])
def test_C1_many_small_chunks_merged_run_makes_benign_hole_resend_a_conflict(tmp_path, chunks):
    """FINDING C1 (FP): past MAX_READS runs the two oldest merge into one run WITHOUT bytes
    spanning the chunk data between them; merged again and again it grows over the oldest
    chunks' data. A SACK hole resend there (past the oldest kept stream_bytes, before the most
    recent) is then a conflict: the benign upload gets the exception policy (dropped).
    40 chunks (no merge): passes; 100 chunks of 300 bytes (~31 KB in flight): dropped."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    data = _small_chunks(go, chunks, 300)
    lo = 9000                                               # past the oldest kept 8 KB
    hi = lo + 1400
    go(seg(False, 0x10, 5001, 1001 + 1400))                 # the server has the first segment only
    v = go(seg(True, 0x18, 1001 + lo, 5001, data[lo:hi]))  # the hole, the same bytes
    st = v.flow.stream
    reads = st.bytes._reads if st and st.bytes else None
    assert v.action == "pass" and not (st and st.ambiguous), \
        [(r[0], r[1], None if r[2] is None else len(r[2])) for r in (reads or [])][:3]


@pytest.mark.parametrize("seed", range(40))
def test_S1_fuzz_runs_hold_the_bytes_at_their_places(seed):
    """SOUND (fuzz): in-order segments, some with an urgent byte, random consumes with random
    skips, random ACKs: every run's held bytes are the sender's bytes at [lo, hi) (no urgent
    byte in it), _read_held equals the bytes held, never negative, at most `limit`."""
    import random
    rnd = random.Random(seed)
    limit = rnd.choice([64, 256, 8192])
    st = _stream(limit)
    sent = bytes(rnd.randrange(256) for _ in range(6000))
    seq = 0
    for _ in range(400):
        op = rnd.random()
        if op < 0.5 and seq < len(sent) and len(st._buf) < limit:
            n = rnd.randint(1, 40)
            pay = sent[seq:seq + n]
            if rnd.random() < 0.1:
                st.mark_urgent(ISN + 1 + seq, rnd.randint(1, len(pay)))
            st.add(ISN + 1 + seq, pay)
            st._seg_urg = -1
            seq = st.rcv
        elif op < 0.85 and st._buf:
            n = rnd.randint(1, len(st._buf))
            skips, pos = [], 0
            while pos < n and rnd.random() < 0.6:
                off = rnd.randint(pos, n - 1)
                ln = rnd.randint(1, n - off)
                skips.append((off, ln))
                pos = off + ln
            st.consume(n, skips)
        else:
            st.ack(ISN + 1 + rnd.randint(0, st.rcv))
        if st._cuts is None:
            break
        held = 0
        prev = None
        for lo, hi, data in st._reads or ():
            assert lo < hi and (prev is None or prev <= lo) and lo >= st.acked
            prev = hi
            if data is not None:
                held += len(data)
                assert len(data) == hi - lo
                assert bytes(data) == sent[lo:hi], (lo, hi)
                assert not [c for c in st._urg_cuts if lo <= c < hi]
        assert st._read_held == held and 0 <= held <= limit


@pytest.mark.parametrize("size", [14000, pytest.param(22000, marks=pytest.mark.xfail(strict=True, reason="open, older (review s22c C2 / s21 B): judged bytes held in no region"))])
def test_C2_large_header_block_benign_resend_past_the_held_reads(tmp_path, size):
    """FINDING C2 (FP): the read budget (`limit` bytes) is spent on the oldest read bytes,
    which the oldest kept region already holds and compares: a request whose header block is
    read past 2 x stream_bytes (large cookies/tokens, 16-32 KB, under nginx's 4 x 8 KB) leaves
    [8 KB, size - 8 KB) in a run WITHOUT bytes and in neither region; an identical resend there
    after a loss is a conflict, dropped. 14000: the recent bytes cover the hole, passes."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    hdrs = b"".join(b"X-Token-%03d: %s\r\n" % (i, b"t" * 480) for i in range(size // 496))
    data = b"GET / HTTP/1.1\r\nHost: good.example\r\n" + hdrs + b"\r\n"
    for i in range(0, len(data), 1400):
        assert go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400])).action == "pass"
    go(seg(False, 0x10, 5001, 1001 + 1400))
    lo = 9000
    v = go(seg(True, 0x18, 1001 + lo, 5001, data[lo:lo + 1400]))
    assert v.action == "pass" and not (v.flow.stream and v.flow.stream.ambiguous), len(data)
