"""IPv6 Authentication Header: its length field counts 4-byte units minus 2 (RFC 4302),
where every other extension header counts 8-byte units minus 1 (RFC 8200). Both the
decoder's chain walk and defrag's search for the fragment header must use AH's rule."""
from scapy.all import IPv6, IPv6ExtHdrFragment, TCP, UDP, fragment6, raw
from scapy.layers.ipsec import AH

from appliance.decode import decode_l3, ipv6_fragment_header
from appliance.defrag import Defragmenter
from appliance.packet import TCP as TCP_NUM


# scapy fills neither AH's next header nor its length: both are written here.
def test_transport_after_ah_is_found():
    # 12-byte ICV: AH is 24 bytes, length field 4 ((4 + 2) * 4); (4 + 1) * 8 would be 40.
    wire = raw(IPv6(src="fd00::1", dst="fd00::2") / AH(nh=6, payloadlen=4, spi=7, seq=1, icv=b"\x11" * 12)
               / TCP(sport=1234, dport=80, flags="PA") / b"hello")
    assert wire[41] == 4
    p = decode_l3(wire)
    assert (p.proto, p.sport, p.dport, p.payload, p.anomalies) == (TCP_NUM, 1234, 80, b"hello", [])
    assert p.l4_off == 64


def test_fragment_header_after_ah_is_found_and_reassembled():
    base = IPv6(src="fd00::1", dst="fd00::2") / AH(nh=44, payloadlen=4, spi=7, seq=1, icv=b"\x22" * 12)
    assert ipv6_fragment_header(raw(base / IPv6ExtHdrFragment(id=5, m=1) / (b"x" * 8))) == (64, 40)
    dgram = base / IPv6ExtHdrFragment(id=5) / UDP(sport=53, dport=5353) / (b"q" * 2000)
    frags = [raw(f) for f in fragment6(dgram, 1280)]
    assert len(frags) == 2
    d = Defragmenter()
    outs = [d.feed(decode_l3(w, ts=1.0)) for w in frags]
    whole = outs[-1]
    assert outs[0] is None and whole is not None
    assert (whole.sport, whole.dport, whole.payload, whole.anomalies) == (53, 5353, b"q" * 2000, [])
