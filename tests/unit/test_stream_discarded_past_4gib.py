"""Review s18b F4: def3385 also changed ClientStream._discarded (a too-old ACK
right at rcv_nxt is ambiguous) to read from rcv, but no test fails when that line is put
back: past 4 GiB delivered the old `(seq - start) & MASK == rcv` can never hold."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.stream import ClientStream, StreamStart

MASK = 0xFFFFFFFF


def seg(seq, data):
    tcp = struct.pack("!HHIIBBHHH", 40000, 80, seq & MASK, 1, 5 << 4, 0x18, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0,
                     b"\n\0\0\1", b"\n\0\0\x50")
    return ip + tcp + data


@pytest.mark.parametrize("delivered", [100, (1 << 31) + 4096, (1 << 32) + 100])
def test_a_too_old_ack_at_rcv_nxt_is_ambiguous_at_any_length(delivered):
    cs = ClientStream(999)
    st = cs.bytes = StreamStart(65536)
    st.add(999, b"", True)
    st.rcv = st.base = st._buf_seq = delivered
    pkt = decode_l3(seg(1000 + delivered, b"data"), 1.0)
    pkt.discard = "tcp.ack_too_old"
    found = []
    assert not cs.feed(pkt, True, 65536, found)
    assert cs.ambiguous and "tcp.ack_ambiguous" in found
