"""Review s18b F2 (fixed: an urgent pointer on a segment past the next byte is ambiguous,
tcp.urgent_ambiguous, the exception policy): ClientStream.feed takes a segment's urgent pointer
(StreamStart.mark_urgent) whatever its sequence number. Linux runs tcp_urg only for a segment
tcp_validate_incoming accepted: one whose seq is past rcv_nxt + the receive window is
discarded (a dup ACK), its urgent pointer never read. A client that sends such a bare ACK
with URG makes the appliance take a byte of its later stream out of band (the 'i' of
evil.example: it reads evl.example) while the server reads it in line: evasion."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
URG = 0x20


def seg(to_server, flags, seq, ack, data=b"", urg=0):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 5 << 4, flags, 65535, 0, urg)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


@pytest.mark.parametrize("forged", [False, True], ids=["control", "forged-urg"])
def test_an_urgent_pointer_on_a_segment_past_the_window_is_not_taken(tmp_path, forged):
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False, stream_bytes=65536))
    t = [1.0]

    def go(raw):
        t[0] += 0.0001
        return insp.process(decode_l3(raw, t[0]))
    cseq, sseq = 1000, 5000
    go(seg(True, 0x02, cseq, 0))
    go(seg(False, 0x12, sseq, cseq + 1))           # the server's window: 65535, no scale
    cseq += 1
    sseq += 1
    go(seg(True, 0x10, cseq, sseq))
    body = 200000
    head = b"POST /up HTTP/1.1\r\nHost: good.example\r\nContent-Length: %d\r\n\r\n" % body
    second = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    target = cseq + len(head) + body + second.index(b"evil") + 1       # the 'i'
    go(seg(True, 0x18, cseq, sseq, head))
    cseq += len(head)
    # forged bare ACK with URG, ~200 KB past rcv_nxt: outside the 65535 window, Linux drops it
    assert target - cseq > 65535
    if forged:
        go(seg(True, 0x10 | URG, target, sseq, b"", urg=1))
    sent = 0
    while sent < body:
        n = min(body - sent, 60000)
        go(seg(True, 0x10, cseq, sseq, b"A" * n))
        cseq += n
        sent += n
        go(seg(False, 0x10, sseq, cseq))
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    go(seg(False, 0x18, sseq, cseq, resp))
    sseq += len(resp)
    v = go(seg(True, 0x18, cseq, sseq, second))
    assert v.action == "drop"
