"""Transport checksums, for replay: a segment the receiver would discard (bad checksum)
must not name a flow. Live, the kernel has already judged the checksum (conntrack marks
such packets INVALID and the appliance's chain drops them).

The one's complement sum of 16-bit words is the integer value of the bytes modulo 0xFFFF
(2**16 = 1 mod 0xFFFF), so Python's big-int arithmetic does the whole sum in C.
"""
from .packet import TCP, UDP


def transport_ok(pkt):
    """True/False for a complete TCP/UDP datagram's checksum; None when it cannot be told
    (a fragment, a truncated capture, no transport header, a UDP checksum of 0 over IPv4)."""
    p = pkt.proto
    if (p != TCP and p != UDP) or not pkt.l4_off or pkt.frag is not None:
        return None
    l3 = pkt.l3
    end = pkt.length
    if end > len(l3) or end <= pkt.l4_off:
        return None
    seg = l3[pkt.l4_off:end]
    if p == UDP and pkt.ip_version == 4 and seg[6:8] == b"\0\0":
        return None                                   # IPv4 UDP without a checksum
    n = len(seg)
    if pkt.ip_version == 4:
        pseudo = l3[12:20] + bytes((0, p)) + n.to_bytes(2, "big")
    else:
        pseudo = l3[8:40] + n.to_bytes(4, "big") + bytes((0, 0, 0, p))
    if n & 1:
        seg = seg + b"\0"
    total = int.from_bytes(pseudo, "big") % 0xFFFF + int.from_bytes(seg, "big") % 0xFFFF
    return total % 0xFFFF == 0
