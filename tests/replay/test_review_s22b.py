"""Review s22b (of e891cde..3d0de79): read runs, urgent copies, stream-rule judging. F1/F2
(a chunked upload's benign resend read as a conflict: the read runs now hold their bytes and
compare) pass; F3 (file_data body decoys) and N1 (a to_server file_data rule past ~8 KB of a
segmented body) are open: strict xfails."""
import pytest

from test_unconfirmed_bytes import HTTP_BLOCK, _send, handshake, inspector, seg

BODY_BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, content: [{value: EVILSIGNATURE, buffer: file_data}]}\n"
# the same with flow: [to_server] misses a signature past ~8 KB of a segmented body (N1)
BODY_BLOCK_TO_SERVER = ("rules:\n  - {id: 1, action: drop, proto: tcp, flow: [established, to_server], "
                        "content: [{value: EVILSIGNATURE, buffer: file_data}]}\n")


def _bad(out):
    return [o for o in out if o[1] != "pass" or o[2]]


def _chunked_upload(go, loss, chunk=1000, total=60000):
    """A benign chunked upload (curl -T, a generator body in requests), the server's ACK
    behind a segment lost past the appliance, then the client sends all again from it."""
    handshake(go, seg)
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b""
    blob = bytes(range(256)) * 300
    for i in range(0, total, chunk):
        body += b"%x\r\n" % chunk + blob[i:i + chunk] + b"\r\n"
    data = head + body
    seq = 1001
    for i in range(0, len(data), 1400):
        v = go(seg(True, 0x18, seq + i, 5001, data[i:i + 1400]))
        assert v.action == "pass"
    go(seg(False, 0x10, 5001, seq + loss))
    out = []
    for i in range(loss, len(data), 1400):
        v = go(seg(True, 0x18, seq + i, 5001, data[i:i + 1400]))
        out.append((i, v.action, bool(v.flow.stream and v.flow.stream.ambiguous)))
    return out


def test_F1_benign_chunked_upload_resend_after_a_loss_is_no_conflict(tmp_path):
    """FINDING F1 (FP): each chunk-size line is a read run; the resend of a size line more than
    stream_bytes behind the newest consumed bytes (in neither region) is a conflict, the
    exception policy drops the benign upload."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    out = _chunked_upload(go, 1400)
    assert not _bad(out), _bad(out)[:3]


def test_F1_control_content_length_upload_passes(tmp_path):
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    data = b"POST /up HTTP/1.1\r\nHost: good.example\r\nContent-Length: 60000\r\n\r\n" + bytes(range(256)) * 235
    data = data[:60064]
    for i in range(0, len(data), 1400):
        go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400]))
    go(seg(False, 0x10, 5001, 1001 + 1400))
    out = []
    for i in range(1400, len(data), 1400):
        v = go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400]))
        out.append((i, v.action, bool(v.flow.stream and v.flow.stream.ambiguous)))
    assert not _bad(out)


def _chunked_hole(go, chunks, chunk=4000):
    """A chunked upload of `chunks` chunks in flight; the server's ACK (SACK) stops at a hole
    in the 3rd chunk's data, past the oldest kept bytes; the client resends only the hole."""
    handshake(go, seg)
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    one = b"%x\r\n" % chunk
    data = head + b"".join(one + bytes([i]) * chunk + b"\r\n" for i in range(chunks))
    for i in range(0, len(data), 1400):
        go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400]))
    c3 = len(head) + 2 * (len(one) + chunk + 2) + len(one)      # the 3rd chunk's data
    lo, hi = c3 + 1000, c3 + 2400
    go(seg(False, 0x10, 5001, 1001 + lo))
    v = go(seg(True, 0x18, 1001 + lo, 5001, data[lo:hi]))
    st = v.flow.stream
    return v, list(st.bytes._reads or ()) if st is not None and st.bytes is not None else []


def test_F2_chunked_upload_past_max_reads_merges_chunk_data_into_a_read_run(tmp_path):
    """FINDING F2 (FP): past MAX_READS runs the two oldest merge; the chunk data between two
    size lines becomes "read", and a benign resend of it alone (no size line in it: SACK
    resends a hole) is a conflict."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    v, reads = _chunked_hole(go, 30)
    assert v.action == "pass" and not (v.flow.stream and v.flow.stream.ambiguous), reads[:2]


def test_F2_control_few_chunks_no_merge(tmp_path):
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    v, reads = _chunked_hole(go, 10)
    assert v.action == "pass" and not (v.flow.stream and v.flow.stream.ambiguous), reads[:2]


def _f3(go, decoy):
    """req1: a benign POST whose 9 KB body fills the oldest region; req2: a POST whose body
    has the signature at offset 100 (within any inspect depth), the decoy there dying past the
    appliance, pushed out of the most recent bytes by 9 KB more body, then the real bytes."""
    handshake(go, seg)
    req1 = b"POST /a HTTP/1.1\r\nHost: good.example\r\nContent-Length: 9000\r\n\r\n" + b"\0" * 9000
    n = 12000
    head2 = b"POST /b HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % n
    s = 1001
    vs = [_send(go, s, req1 + head2 + b"\0" * 100)]
    at = s + len(req1) + len(head2) + 100
    real = b"EVILSIGNATURE"
    if decoy:
        vs.append(go(seg(True, 0x18, at, 5001, b"x" * 13, ttl=2)))     # dies past the appliance
    else:
        vs.append(go(seg(True, 0x18, at, 5001, real)))
    vs.append(_send(go, at + 13, b"\0" * 9000))                      # reaches the server
    if decoy:
        vs.append(go(seg(True, 0x18, at, 5001, real)))                 # the server reads this one
    rest = n - 100 - 13 - 9000
    vs.append(_send(go, at + 13 + 9000, b"\0" * rest))
    vs.append(go(seg(False, 0x10, 5001, at + 13 + 9000 + rest)))
    return vs


@pytest.mark.xfail(strict=True, reason="open (review s22b F3): request-body bytes a file_data rule reads are not judged")
def test_F3_file_data_request_body_decoy_pushed_out_of_recent(tmp_path):
    """FINDING F3 (evasion): a to_server file_data drop rule reads request bodies, but body
    bytes are `skips` (not read runs), no verdict (judged) rests on them, and past the oldest
    stream_bytes only the most recent are kept: the decoy body bytes, pushed out of the recent
    bytes, then the signature at their place, are compared with nothing. The flow passes."""
    go = inspector(tmp_path, BODY_BLOCK, stream_bytes=8192)
    vs = _f3(go, True)
    assert any(x.action == "drop" for x in vs) or any(x.flow.stream.ambiguous for x in vs), \
        [(x.action, x.flow.final) for x in vs]


def test_F3_control_without_decoy_drops(tmp_path):
    go = inspector(tmp_path, BODY_BLOCK, stream_bytes=8192)
    vs = _f3(go, False)
    assert any(x.action == "drop" for x in vs)


@pytest.mark.parametrize("pos", [5000, pytest.param(10000, marks=pytest.mark.xfail(strict=True, reason="open (review s22b N1): not root-caused"))])
def test_N1_request_body_signature_past_8k_in_a_multi_segment_upload(tmp_path, pos):
    """NOTICED (outside this session's diff, not analysed): a YAML drop rule on file_data with
    `flow: [to_server]` misses a signature past ~8.2 KB of a request body sent in 1400-byte
    segments (without `flow:` it drops, as does the .rules `drop http ... (flow:established,
    to_server; file_data; ...)`; one 12 KB segment drops too). 5000: drops; 10000: passes."""
    go = inspector(tmp_path, BODY_BLOCK_TO_SERVER, stream_bytes=8192)
    handshake(go, seg)
    n = 12000
    body = b"\0" * pos + b"EVILSIGNATURE" + b"\0" * (n - pos - 13)
    data = b"POST /up HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % n + body
    acts = [go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400])).action for i in range(0, len(data), 1400)]
    assert "drop" in acts


@pytest.mark.parametrize("queued_first", [True, False])
def test_S1_queued_tail_with_a_window_filling_segment(tmp_path, queued_first):
    """SOUND: P queued out of order, then S that fills the window and covers P's front, P's
    tail a second request: the re-feed (again=True) path still drops (no tail lost)."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    pad = b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"p" * 80) for i in range(95))
    req1 = b"GET / HTTP/1.1\r\nHost: good.example\r\n" + pad + b"\r\n"
    req2 = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    data = req1 + req2
    s_end = len(req1) - 20
    p_lo = 5000
    vs = []
    if queued_first:
        vs.append(go(seg(True, 0x18, 1001 + p_lo, 5001, data[p_lo:])))     # P: queued
        vs.append(go(seg(True, 0x18, 1001, 5001, data[:s_end])))           # S: fills the window
    else:
        vs.append(go(seg(True, 0x18, 1001, 5001, data[:s_end])))
        vs.append(go(seg(True, 0x18, 1001 + p_lo, 5001, data[p_lo:])))
    vs.append(go(seg(False, 0x10, 5001, 1001 + len(data))))                # the server has it all
    vs.append(go(seg(True, 0x10, 1001 + len(data), 5001)))
    st = vs[-1].flow.stream
    assert any(v.action == "drop" for v in vs), [(v.action, v.flow.final, st and st.bytes and st.bytes.rcv, len(data)) for v in vs]


def test_S1_control_in_order(tmp_path):
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    pad = b"".join(b"X-Pad-%04d: %s\r\n" % (i, b"p" * 80) for i in range(95))
    data = b"GET / HTTP/1.1\r\nHost: good.example\r\n" + pad + b"\r\n" + b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    vs = [_send(go, 1001, data)]
    assert vs[-1].action == "drop"


def test_F1b_sack_hole_over_a_chunk_size_line(tmp_path):
    """F1 with SACK (only the hole resent) and no merge (11 runs): the hole past the oldest
    kept bytes covers the 3rd/4th chunks' boundary (its CRLF and size line: a read run in
    neither region): the identical benign resend is a conflict, the upload dropped."""
    go = inspector(tmp_path, HTTP_BLOCK, stream_bytes=8192)
    handshake(go, seg)
    chunk = 4000
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nTransfer-Encoding: chunked\r\n\r\n"
    one = b"%x\r\n" % chunk
    data = head + b"".join(one + bytes([i]) * chunk + b"\r\n" for i in range(10))
    for i in range(0, len(data), 1400):
        go(seg(True, 0x18, 1001 + i, 5001, data[i:i + 1400]))
    b4 = len(head) + 3 * (len(one) + chunk + 2)            # the 4th chunk's size line
    lo, hi = b4 - 700, b4 + 700
    go(seg(False, 0x10, 5001, 1001 + lo))
    v = go(seg(True, 0x18, 1001 + lo, 5001, data[lo:hi]))
    assert v.action == "pass" and not (v.flow.stream and v.flow.stream.ambiguous)
