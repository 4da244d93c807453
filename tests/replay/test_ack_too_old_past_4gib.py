"""Review s18b F1 (fixed: TcpReceiver.bytes_acked, 64-bit): flow.py _receiver_check reads Linux's bytes_acked (a u64)
as (s_una - s_acked0) mod 2**32. Once the server has sent 4 GiB the count wraps to a few
bytes, so RFC 5961's window min(max_window, bytes_acked) shrinks to them here but not on the
server: a client data segment whose ACK is a little older than snd_una is read here as
discarded ("tcp.ack_too_old") while Linux queues its data. The client then resends the same
sequence numbers with other bytes and a fresh ACK: the appliance reads those, the server
already has the first ones."""
import struct

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


import pytest


@pytest.mark.parametrize("gib", [2, 4], ids=["2GiB-control", "4GiB-wrap"])
def test_an_old_ack_after_the_server_sent_4_gib_is_not_read_as_too_old(tmp_path, gib):
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
    # the server sends 4 GiB + 100 bytes (a long download); stood for by a few segments far
    # apart, each acknowledged (the tracking reads only their ends)
    sent = 0
    for step in [(1 << 30)] * gib + [100]:
        sent += step
        go(seg(False, 0x10, sseq + sent - 1, cseq, b"x"))
        v = go(seg(True, 0x10, cseq, sseq + sent))
    una = sseq + sent
    req = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    # ACK 1000 bytes behind snd_una: Linux (bytes_acked ~4 GiB, max_window 65535) takes the data
    pkt = decode_l3(seg(True, 0x18, cseq, una - 1000, req), 9.0)
    v = insp.process(pkt)
    assert pkt.discard in (None, "", False), pkt.discard
    assert v.action == "drop", (v.action, v.offload)
