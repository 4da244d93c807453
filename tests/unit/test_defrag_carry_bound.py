"""The defragmenter's byte bound holds after a carry too, not only at the next fragment.

The GWLB source keeps each held fragment's outer datagram with its IP datagram (carry);
carry() added those bytes and nothing evicted until the next fragment came, so a burst of
large carried items (or the last one before a quiet spell) left held_bytes past max_bytes.
"""
import struct

from appliance.decode import decode_l3
from appliance.defrag import CARRIED_BYTES, Defragmenter


def fragment(ident, off8=0, more=True, size=64):
    payload = b"A" * size
    return decode_l3(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + size, ident, (0x2000 if more else 0) | off8,
                                 64, 17, 0, b"\x0b\0\0\x02", b"\x0a\0\0\x01") + payload, 1.0)


def first_fragment(ident):
    """Offset 0, more-fragments set: its datagram stays held."""
    return fragment(ident)


def last_fragment(ident):
    """The rest of first_fragment's datagram: it completes."""
    return fragment(ident, off8=8, more=False, size=8)


def cost_of_one():
    """held_bytes for one held datagram of a first fragment."""
    d = Defragmenter()
    d.feed(first_fragment(1))
    return d.held_bytes


def held(d, **fragments):
    """Feed one first fragment a name; name -> the datagram it was placed in."""
    out = {}
    for name, ident in fragments.items():
        assert d.feed(first_fragment(ident)) is None
        out[name] = d.placed
    return out


def test_a_carry_past_the_bound_evicts_the_oldest_other_datagram():
    d = Defragmenter(max_bytes=4 * cost_of_one())
    g = held(d, old=1, new=2)
    room = d.max_bytes - d.held_bytes
    assert d.carry(g["new"], b"G" * (room - CARRIED_BYTES + 1)) is True
    assert d.held_bytes <= d.max_bytes
    assert d.held_datagrams == 1 and d.stats["evicted"] == 1
    # the one carried with stays (its fragments are returned with its verdict), the older went
    assert d.feed(last_fragment(2)) is not None and d.placed is g["new"]


def test_the_datagram_carried_with_goes_last_even_when_it_is_the_oldest():
    d = Defragmenter(max_bytes=4 * cost_of_one())
    g = held(d, old=1, new=2)
    assert d.carry(g["old"], b"G" * (d.max_bytes - d.held_bytes)) is True
    assert d.held_bytes <= d.max_bytes and d.held_datagrams == 1
    # the one left is the one carried with: its last fragment completes it, carried items and all
    assert d.feed(last_fragment(1)) is not None
    assert d.placed is g["old"] and len(d.placed.carried) == 1
    assert d.held_bytes == 0


def test_a_datagram_alone_past_the_bound_is_dropped_not_kept_over_it():
    d = Defragmenter(max_bytes=4096)
    g = held(d, only=1)
    assert d.carry(g["only"], b"G" * 8192) is False
    assert d.held_bytes == 0 and d.held_datagrams == 0
    assert d.placed is None                  # nothing to carry with any more


def test_a_fragment_whose_datagram_the_bound_evicted_places_nothing():
    """feed()'s own bound may evict the datagram just placed; `placed` pointed at it, and a
    carry then charged bytes no datagram held: held_bytes stayed up for good."""
    d = Defragmenter(max_bytes=256)          # less than one datagram costs
    assert d.feed(first_fragment(1)) is None
    assert d.held_datagrams == 0 and d.placed is None
    assert d.held_bytes == 0
