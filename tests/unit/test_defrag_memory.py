"""The defragmenter's byte bound counts what holding costs, not the payload alone.

Tiny non-adjacent fragments (8 bytes, every other slot: the datagram never completes) are
each a run of their own: a bytearray, two list slots and an offset int, ~10x their
payload. Counted by payload only, the 16 MB bound held 237 MB (review); now each
datagram, run and carried item is charged its measured size (defrag.DATAGRAM_BYTES,
RUN_BYTES, CARRIED_BYTES), so held_bytes stays within 25 % of what tracemalloc sees.
"""
import struct
import tracemalloc

from appliance.decode import decode_l3
from appliance.defrag import Defragmenter

BOUND = 1 << 20
CLOSE = 1.25                     # held_bytes within this factor of the memory traced


def v4(ident, off8, size):
    payload = b"A" * size
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x2000 | off8, 64, 17, 0,
                    b"\x0b\0\0\x02", b"\x0a\0\0\x01")
    return h + payload


def v6(ident, off8, size):
    payload = b"A" * size
    frag = struct.pack("!BBHI", 17, 0, (off8 << 3) | 1, ident)
    h = struct.pack("!IHBB16s16s", 6 << 28, len(frag) + len(payload), 44, 64,
                    b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x02", b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x01")
    return h + frag + payload


def held_vs_traced(wires, carry=0):
    """Feed the fragments (decoded beforehand); (held_bytes, bytes tracemalloc traced)."""
    pkts = [decode_l3(w, 1.0) for w in wires]
    d = Defragmenter(max_bytes=BOUND)
    tracemalloc.start()
    try:
        for p in pkts:
            d.feed(p)
            if carry and d.placed is not None:
                d.carry(d.placed, b"G" * carry)     # as the GWLB source keeps each fragment's datagram
        traced = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert d.held_bytes <= BOUND
    return d.held_bytes, traced


def tiny(make, datagrams=12, size=8, hole=8):
    """Fragments from offset 8 on (the first never comes), `hole` bytes between them."""
    step = (size + hole) // 8
    return [make(ident, off8, size) for ident in range(datagrams) for off8 in range(1, 8180, step)]


def close(held, traced):
    return traced / CLOSE <= held <= traced * CLOSE


def test_tiny_ipv4_fragments():
    held, traced = held_vs_traced(tiny(v4))
    assert close(held, traced), (held, traced)


def test_tiny_ipv6_fragments():
    held, traced = held_vs_traced(tiny(v6))
    assert close(held, traced), (held, traced)


def test_tiny_fragments_with_their_carried_datagrams():
    # end to end (one run grows): the carried items are most of what is held; a GWLB
    # source carries each fragment's GENEVE datagram (40 bytes more than the fragment)
    held, traced = held_vs_traced(tiny(v4, hole=0), carry=40 + 28)
    assert close(held, traced), (held, traced)


def test_full_size_fragments():
    held, traced = held_vs_traced(tiny(v4, datagrams=40, size=1480))
    assert close(held, traced), (held, traced)


def test_datagrams_of_one_fragment():
    # each datagram's own objects (key, queue entry, lists) are most of what is held
    held, traced = held_vs_traced([v4(ident, 1, 8) for ident in range(3000)])
    assert close(held, traced), (held, traced)
