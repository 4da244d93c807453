# cython: nonecheck=True
# (compiled twin: a Packet argument that is None raises AttributeError, as here, instead of reading the None object as a C struct)
"""Transport checksums, for replay: a segment the receiver would discard (bad checksum)
must not name a flow. Live, the kernel has already judged the checksum (conntrack marks
such packets INVALID and the appliance's chain drops them).

The one's complement sum of 16-bit words is the integer value of the bytes modulo 0xFFFF
(2**16 = 1 mod 0xFFFF), so Python's big-int arithmetic does the whole sum in C; the compiled
twin adds the words in a C loop instead (_word_sum), the same residue without a bytes slice
and a big int per segment.
"""
from .packet import TCP, UDP

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False


def transport_ok(pkt):
    """True/False for a complete TCP/UDP datagram's checksum; None when it cannot be told
    (a fragment, a truncated capture, no transport header, a UDP checksum of 0 over IPv4).
    False too for an IPv6 datagram its header's destination routes on (_routed_on)."""
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
    total = _word_sum(l3, off, end)
    # the pseudo-header's words, summed the same way: the addresses' value, then the protocol
    # and the length (IPv4: words 0|proto and n; IPv6: n as 32 bits and 0|0|0|proto, whose
    # words also add up to n + proto, as 2**16 = 1 mod 0xFFFF)
    if pkt.ip_version == 4:
        total += _word_sum(l3, 12, 20)
    elif _routed_on(l3, off):
        return False
    else:
        total += _word_sum(l3, 8, 40)
    total += p + n
    return total % 0xFFFF == 0


def _word_sum(data, off, end):
    """A number congruent modulo 0xFFFF to the sum of data[off:end]'s 16-bit big-endian words
    (an odd last byte padded with a zero): pure, the bytes' integer value (2**16 = 1 mod
    0xFFFF); compiled, the words added in C over the bytes' own buffer (a 1,500-byte segment's
    750 words cannot overflow 64 bits)."""
    if not COMPILED or type(data) is not bytes:
        total = int.from_bytes(data[off:end], "big")
        return (total << 8 if (end - off) & 1 else total) % 0xFFFF
    b = data                         # compiled: a pointer to the bytes' own buffer
    s = 0
    i = off
    while i + 1 < end:
        s += (b[i] << 8) | b[i + 1]
        i += 2
    if i < end:
        s += b[i] << 8
    return s


# IPv6 extension headers before the transport header (a fragment header has no length byte)
_HOPOPTS, _ROUTING, _FRAGMENT, _AH, _DSTOPTS = 0, 43, 44, 51, 60


def _routed_on(l3, l4_off):
    """Does a routing header with segments left precede the transport header? Then the
    header's destination (the host the flow is keyed on) does not read the segment: it
    forwards it (a segment routing or type 0 header, when it routes them at all) or discards
    it (RFC 5095, an unknown type, Linux's default seg6_enabled=0); the transport checksum
    over the final destination (RFC 8200 8.1) is the final host's matter. For the flow's
    receiver such a segment is one it never reads: counted with the bad checksums (review
    rvlead: summing over the final address made it an insertion).

    Decode walked this chain already, but keeps no answer: a Packet field for it would be a
    store on every packet's construction and a _c_packet.pxd change (every twin rebuilt)
    for a question asked only here, of IPv6 segments with extension headers. The walk is
    free without them (l4_off == 40: no turn of the loop), and it stops at decode's own
    l4_off over the same header kinds, so the two walks cannot disagree on the chain."""
    nh, off = l3[6], 40
    while off < l4_off:
        if nh == _FRAGMENT:
            nh, off = l3[off], off + 8
            continue
        if nh not in (_HOPOPTS, _ROUTING, _DSTOPTS, _AH) or off + 8 > l4_off:
            return False
        if nh == _ROUTING and l3[off + 3]:
            return True
        hlen = (l3[off + 1] + 2) << 2 if nh == _AH else (l3[off + 1] + 1) << 3
        nh, off = l3[off], off + hlen
    return False


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
