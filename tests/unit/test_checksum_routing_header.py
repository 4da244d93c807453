"""IPv6 with a routing header that still has segments left: the host the flow is keyed on
(the header's destination) does not read the segment -- it forwards it or discards it (RFC
5095, unknown types, Linux's seg6_enabled=0; checked on this kernel in review rvlead: all
six routed datagrams discarded whatever address their checksum covered). So it counts as a
segment the receiver discards, whichever destination its checksum was summed over."""
import pytest
from scapy.all import (IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting,
                       IPv6ExtHdrSegmentRouting, Raw, TCP, UDP, raw)

from appliance.checksum import transport_ok
from appliance.decode import decode_l3

BASE = IPv6(src="2001:db8::1", dst="2001:db8::2")
ROUTED = [
    IPv6ExtHdrRouting(type=2, addresses=["2001:db8::99"], segleft=1),
    IPv6ExtHdrRouting(addresses=["2001:db8::98", "2001:db8::99"], segleft=2),
    IPv6ExtHdrRouting(addresses=["2001:db8::98", "2001:db8::99"], segleft=1),
    IPv6ExtHdrSegmentRouting(addresses=["2001:db8::99", "2001:db8::98"], segleft=1),
    IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(type=2, addresses=["2001:db8::99"], segleft=1),
]


def ok(pkt):
    return transport_ok(decode_l3(raw(pkt), 0.0))


@pytest.mark.parametrize("l4", [TCP(dport=80) / Raw(b"GET / HTTP/1.1\r\n\r\n"), UDP(dport=53) / Raw(b"x" * 13)])
@pytest.mark.parametrize("rh", ROUTED, ids=range(len(ROUTED)))
def test_a_segment_routed_on_is_not_read_by_its_header_destination(rh, l4):
    """scapy sums these over the final destination (RFC 8200 8.1): valid for the final host,
    never read by the flow's."""
    assert ok(BASE / rh / l4) is False


@pytest.mark.parametrize("rh", ROUTED, ids=range(len(ROUTED)))
def test_summed_over_the_header_destination_it_is_not_read_either(rh):
    done = raw(BASE / TCP(dport=80) / Raw(b"decoy"))           # checksum over the header's dst
    routed = raw(BASE / rh / TCP(dport=80) / Raw(b"decoy"))
    forged = routed[:-25] + done[-25:]                          # the same TCP bytes, that checksum
    assert ok(IPv6(forged)) is False


def test_no_segments_left_is_read_and_summed_over_the_header_destination():
    rh = IPv6ExtHdrRouting(addresses=["2001:db8::99"], segleft=0)
    assert ok(BASE / IPv6ExtHdrDestOpt() / rh / TCP(dport=80) / Raw(b"x")) is True
    wire = bytearray(raw(BASE / rh / TCP(dport=80) / Raw(b"x")))
    wire[-1] ^= 1
    assert transport_ok(decode_l3(bytes(wire), 0.0)) is False


def test_other_extension_headers_do_not_route():
    assert ok(BASE / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(m=0, offset=0)
              / TCP(dport=80) / Raw(b"x")) is True
