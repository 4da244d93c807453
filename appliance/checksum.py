# cython: nonecheck=True
# (compiled twin: a Packet argument that is None raises AttributeError, as here, instead of reading the None object as a C struct)
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
    off = pkt.l4_off
    if end > len(l3) or end <= off:
        return None
    if p == UDP and pkt.ip_version == 4 and l3[off + 6:off + 8] == b"\0\0":
        return None                                   # IPv4 UDP without a checksum
    n = end - off
    total = int.from_bytes(l3[off:end], "big")
    if n & 1:
        total <<= 8                                   # padded with a zero byte
    # the pseudo-header's words, summed the same way: the addresses' value, then the protocol
    # and the length (IPv4: words 0|proto and n; IPv6: n as 32 bits and 0|0|0|proto, whose
    # words also add up to n + proto, as 2**16 = 1 mod 0xFFFF)
    total += int.from_bytes(l3[12:20] if pkt.ip_version == 4 else l3[8:40], "big") + p + n
    return total % 0xFFFF == 0


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
