"""The IPv6 pseudo-header with a routing header (RFC 8200 8.1): while segments are left, the
transport checksum covers the final destination, which is what the last receiver checks.
scapy's in6_chksum applies the same rule independently: its checksums are the reference."""
import pytest
from scapy.all import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       IPv6ExtHdrSegmentRouting, Raw, TCP, UDP, raw)

from appliance.checksum import transport_ok
from appliance.decode import decode_l3

BASE = IPv6(src="2001:db8::1", dst="2001:db8::2")
ROUTED = [
    IPv6ExtHdrRouting(type=2, addresses=["2001:db8::99"], segleft=1),                 # home address
    IPv6ExtHdrRouting(addresses=["2001:db8::98", "2001:db8::99"], segleft=2),         # type 0: the last
    IPv6ExtHdrRouting(addresses=["2001:db8::98", "2001:db8::99"], segleft=1),
    IPv6ExtHdrSegmentRouting(addresses=["2001:db8::99", "2001:db8::98"], segleft=1),  # Segment List[0]
    IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(type=2, addresses=["2001:db8::99"], segleft=1),
]


def ok(pkt):
    return transport_ok(decode_l3(raw(pkt), 0.0))


@pytest.mark.parametrize("l4", [TCP(dport=80) / Raw(b"GET / HTTP/1.1\r\n\r\n"), UDP(dport=53) / Raw(b"x" * 13)])
@pytest.mark.parametrize("rh", ROUTED, ids=range(len(ROUTED)))
def test_a_routed_segment_is_summed_over_its_final_destination(rh, l4):
    assert ok(BASE / rh / l4) is True


@pytest.mark.parametrize("rh", ROUTED, ids=range(len(ROUTED)))
def test_summed_over_the_header_destination_it_is_bad(rh):
    """An insertion: a segment whose checksum holds for the next hop's address only. The
    final receiver drops it, so it must not name the flow."""
    done = raw(BASE / TCP(dport=80) / Raw(b"decoy"))           # checksum over the header's dst
    routed = raw(BASE / rh / TCP(dport=80) / Raw(b"decoy"))
    forged = routed[:-25] + done[-25:]                          # the same TCP bytes, that checksum
    assert forged[:6] == routed[:6] and ok(IPv6(forged)) is False


def test_no_segments_left_sums_the_header_destination():
    assert ok(BASE / IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0) / TCP(dport=80)) is True


def test_a_final_address_it_cannot_read_is_not_judged():
    """Routing type 3 (RPL, compressed addresses): the final address is not read here."""
    pkt = bytearray(raw(BASE / IPv6ExtHdrRouting(type=2, addresses=["2001:db8::99"], segleft=1) / TCP(dport=80)))
    pkt[42] = 3
    assert transport_ok(decode_l3(bytes(pkt), 0.0)) is None
