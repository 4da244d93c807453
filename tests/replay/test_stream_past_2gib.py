"""Review s18 F1 (both modes, older than the review): a client stream past 2 GiB. StreamStart
keeps its offsets unbounded; it read each segment's as a signed 32-bit distance from the
stream's start, so once 2**31 bytes were delivered every new segment read as a resend of
delivered bytes: the next request on a keep-alive connection was never read (no anomaly, no
`lost`) and a blocked Host passed. Offsets are now read from the next byte expected (as
Linux's before()/after()), and so are the bare FIN, the urgent pointer and the receiver's
ACK (stream.gap). Built without scapy (raw segments): ~33k segments."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"


def seg(to_server, flags, seq, ack, data=b""):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


@pytest.mark.parametrize("body", [1 << 20, (1 << 31) - 65536, (1 << 31) + 4096], ids=["1MiB", "just-under-2GiB", "past-2GiB"])
def test_a_request_after_a_long_body_is_still_read(tmp_path, body):
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False, stream_bytes=65536))
    t = [1.0]

    def go(raw):
        t[0] += 0.0001
        return insp.process(decode_l3(raw, t[0]))
    cseq, sseq = 1000, 5000
    go(seg(True, 0x02, cseq, 0))
    go(seg(False, 0x12, sseq, cseq + 1))
    cseq += 1
    sseq += 1
    go(seg(True, 0x10, cseq, sseq))
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % body
    go(seg(True, 0x18, cseq, sseq, head))
    cseq += len(head)
    chunk = b"A" * 65000
    left = body
    k = 0
    while left:
        n = min(left, len(chunk))
        v = go(seg(True, 0x10, cseq, sseq, chunk[:n]))
        cseq += n
        left -= n
        k += 1
        if k % 256 == 0:                 # the server acknowledges what it read, as a real one does
            go(seg(False, 0x10, sseq, cseq))
        if v.offload or v.action != "pass":
            pytest.skip(f"the flow was no longer inspected: {v.action} offload={v.offload}")
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    go(seg(False, 0x18, sseq, cseq, resp))
    sseq += len(resp)
    second = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    v = go(seg(True, 0x18, cseq, sseq, second))
    assert v.action == "drop"


def _far_stream(delivered):
    """A StreamStart anchored at ISN+1 = 1000 that has delivered `delivered` bytes (set
    directly: 4 GiB of segments would take minutes)."""
    from appliance.stream import StreamStart
    st = StreamStart(65536)
    st.add(999, b"", True)
    st.rcv = st.base = st._buf_seq = delivered
    return st


@pytest.mark.parametrize("delivered", [(1 << 31) + 4096, (1 << 32) + 100, (1 << 33) + 7])
def test_offsets_are_read_from_the_next_byte_past_2_and_4_gib(delivered):
    st = _far_stream(delivered)
    nxt = (1000 + delivered) & MASK
    assert st.add(nxt, b"next") and st.rcv == delivered + 4 and bytes(st._buf) == b"next"
    assert not st.add(nxt, b"next")                          # now a resend
    assert not st.fin
    st.add((nxt + 4) & MASK, b"", fin=True)                  # a bare FIN in order
    assert st.fin
    st = _far_stream(delivered)
    st.mark_urgent(nxt, 1)                                   # the urgent byte is the next one
    assert st.urg == delivered


def test_a_receiver_ack_past_the_bytes_seen_is_a_gap_past_2_gib():
    from appliance.detect.stream_payload import StreamPayload
    sp = StreamPayload(999, 10)
    sp.stream.bytes = _far_stream((1 << 31) + 4096)
    found = []
    sp.acked((1000 + (1 << 31) + 4096) & MASK, found)       # all it read was seen here
    assert not sp.gap and found == []
    sp.acked((1000 + (1 << 31) + 4096 + 10) & MASK, found)  # 10 bytes the appliance never saw
    assert sp.gap and found == ["stream.gap"]
