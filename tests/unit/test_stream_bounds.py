"""The out-of-order bound never refuses the piece that fills the hole: with MAX_PENDING pieces
held, the segment at the next expected byte still goes in and lets the held bytes drain
(found by python3 -m bench.mutate: dropping that exception left every test green)."""
from scapy.all import IP, TCP, raw

from appliance.decode import decode_l3
from appliance.stream import MAX_PENDING, ClientStream


def seg(flags, seq, data=b""):
    return decode_l3(raw(IP(src="10.0.0.1", dst="10.0.0.2")
                         / TCP(sport=40000, dport=80, flags=flags, seq=seq, ack=1) / data), 1.0)


def test_hole_filler_is_taken_when_the_out_of_order_bound_is_reached():
    st = ClientStream()
    found = []
    st.feed(seg("S", 99), True, 8192, found)
    # one byte at every odd offset: MAX_PENDING pieces, each behind a one-byte hole
    for i in range(MAX_PENDING):
        st.feed(seg("PA", 100 + 2 * i + 1, b"b"), True, 8192, found)
    assert st.data == b""
    assert st.feed(seg("PA", 100, b"a"), True, 8192, found) is True
    assert st.data[:2] == b"ab"
