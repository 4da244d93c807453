"""defrag: reassembled bytes equal the datagram before scapy fragmented it."""

import random

from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, fragment6
from scapy.packet import raw

from appliance.decode import decode_l3
from appliance.defrag import Defragmenter


def ipv4_datagram(ident=4242, size=3000, src="10.0.0.1"):
    body = bytes(random.Random(ident).getrandbits(8) for _ in range(size))
    return raw(IP(src=src, dst="10.0.0.2", id=ident) / UDP(sport=5353, dport=53) / body)


def ipv4_fragments(wire, size=800):
    return [raw(f) for f in fragment(IP(wire), fragsize=size)]


def feed_all(defrag, wires, ts=1.0):
    outs = [defrag.feed(decode_l3(w, ts=ts)) for w in wires]
    done = [o for o in outs if o is not None]
    return outs, done


def test_empty_defragmenter_is_truthy():
    assert Defragmenter()  # callers write `defrag or Defragmenter()`


def test_non_fragment_passes_through_unchanged():
    pkt = decode_l3(raw(IP() / TCP()))
    assert Defragmenter().feed(pkt) is pkt


def test_ipv4_in_order():
    wire = ipv4_datagram()
    frags = ipv4_fragments(wire)
    assert len(frags) == 4
    d = Defragmenter()
    outs, done = feed_all(d, frags)
    assert outs[:-1] == [None, None, None]
    out = done[0]
    assert out.l3 == wire and out.frag is None and out.anomalies == []
    assert (out.sport, out.dport, len(out.payload)) == (5353, 53, 3000)
    assert d.stats["fragments"] == 4 and d.stats["reassembled"] == 1 and d.held_datagrams == 0 and d.held_bytes == 0


def test_ipv4_out_of_order_copies_context_from_completing_fragment():
    wire = ipv4_datagram()
    frags = ipv4_fragments(wire)
    order = [2, 0, 3, 1]
    d = Defragmenter()
    for n, i in enumerate(order):
        pkt = decode_l3(frags[i], ts=10.0 + n)
        pkt.vlan, pkt.pcap_cnt = (7,), 100 + n
        out = d.feed(pkt)
    assert out.l3 == wire
    assert (out.ts, out.vlan, out.pcap_cnt) == (13.0, (7,), 103)


def test_ipv4_header_rebuilt_with_valid_checksum_and_df_kept():
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=9, flags="DF", ttl=3)
               / UDP(sport=1, dport=2) / (b"q" * 2000))
    frags = [raw(f) for f in fragment(IP(wire), fragsize=600)]
    out = feed_all(Defragmenter(), frags[::-1])[1][0]
    rebuilt = IP(out.l3)
    assert out.l3 == wire    # scapy computed this checksum; ours must match it
    assert rebuilt.flags == "DF" and rebuilt.frag == 0 and rebuilt.len == len(wire)


def test_ipv4_duplicate_fragment_is_not_an_overlap():
    wire = ipv4_datagram()
    frags = ipv4_fragments(wire)
    d = Defragmenter()
    out = feed_all(d, [frags[0], frags[1], frags[1], frags[0], frags[2], frags[3]])[1][0]
    assert out.l3 == wire and out.anomalies == [] and d.stats["overlaps"] == 0


def test_ipv4_fragment_inside_held_bytes_is_a_duplicate_first_copy_stays():
    """Linux (inet_frag_queue_insert) ignores a fragment that lies wholly inside a run it
    holds, whatever its bytes: the host gets the first copy, and so does replay. Differing
    bytes are reported."""
    wire = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=77, proto=17) / (b"A" * 8 + b"B" * 16 + b"C" * 16))
    first = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=77, proto=17, flags="MF") / (b"A" * 8 + b"B" * 16))
    evil = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=77, proto=17, flags="MF", frag=1) / (b"X" * 16))
    last = raw(IP(src="10.0.0.1", dst="10.0.0.2", id=77, proto=17, frag=3) / (b"C" * 16))
    d = Defragmenter()
    out = feed_all(d, [first, evil, last])[1][0]
    assert out.l3[20:] == wire[20:]          # the "X" bytes ignored, as the kernel ignores them
    assert out.anomalies.count("ipv4.frag_overlap") == 1
    assert d.stats["overlaps"] == 1


# Was test_ipv4_overlap_only_fills_gaps, which expected first-copy-wins gap filling
# ("a" + "w" + "c" + "w" + "z"): a datagram no Linux host receives. Since 4.19 the kernel
# discards the whole datagram on such an overlap, and replay must do what the kernel does.
def test_ipv4_partial_overlap_discards_the_datagram():
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=78, proto=17)
    a = raw(IP(**base, flags="MF") / (b"a" * 8))                 # [0, 8)
    c = raw(IP(**base, flags="MF", frag=2) / (b"c" * 8))         # [16, 24)
    wide = decode_l3(raw(IP(**base, flags="MF", frag=0) / (b"w" * 32)))   # [0, 32) overlaps both
    last = raw(IP(**base, frag=4) / (b"z" * 8))                  # [32, 40)
    d = Defragmenter()
    assert feed_all(d, [a, c])[1] == []
    assert d.feed(wide) is None and wide.anomalies == ["ipv4.frag_overlap"]
    assert d.held_datagrams == 0 and d.held_bytes == 0
    # what follows starts a new datagram: the last fragment alone does not complete anything
    assert feed_all(d, [last])[1] == [] and d.held_datagrams == 1


def test_ipv4_overlap_at_the_tail_discards_the_datagram():
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=79, proto=17)
    a = raw(IP(**base, flags="MF") / (b"a" * 16))                # [0, 16)
    b = decode_l3(raw(IP(**base, frag=1) / (b"b" * 16)))         # [8, 24): reaches past the tail
    d = Defragmenter()
    assert d.feed(decode_l3(a)) is None
    assert d.feed(b) is None and b.anomalies == ["ipv4.frag_overlap"] and d.held_datagrams == 0


def test_adjacent_runs_are_not_one_run():
    """[8,16) then [0,8) make two runs in the kernel; a fragment over both is an overlap,
    not a duplicate."""
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=80, proto=17)
    d = Defragmenter()
    assert d.feed(decode_l3(raw(IP(**base, flags="MF", frag=1) / (b"b" * 8)))) is None
    assert d.feed(decode_l3(raw(IP(**base, flags="MF", frag=0) / (b"a" * 8)))) is None
    span = decode_l3(raw(IP(**base, flags="MF", frag=0) / (b"a" * 8 + b"b" * 8)))
    assert d.feed(span) is None and span.anomalies == ["ipv4.frag_overlap"] and d.held_datagrams == 0


def test_a_second_last_fragment_with_another_end_discards_the_datagram():
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=81, proto=17)
    d = Defragmenter()
    assert d.feed(decode_l3(raw(IP(**base, frag=2) / (b"z" * 8)))) is None       # ends at 24
    other = decode_l3(raw(IP(**base, frag=4) / (b"y" * 8)))                     # ends at 40
    assert d.feed(other) is None and other.anomalies == ["ipv4.frag_overlap"] and d.held_datagrams == 0


def test_ipv4_more_fragments_cut_to_eight_byte_units():
    """ip_frag_queue cuts a more-fragments payload to a multiple of 8: the 3 extra bytes
    are not part of the datagram; the next fragment starts at 8."""
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=82, proto=17)
    d = Defragmenter()
    assert d.feed(decode_l3(raw(IP(**base, flags="MF") / (b"a" * 11)))) is None
    out = d.feed(decode_l3(raw(IP(**base, frag=1) / (b"b" * 8))))
    assert out is not None and out.l3[20:] == b"a" * 8 + b"b" * 8


def test_many_fragments_reassemble_in_any_order():
    """8,189 fragments of 8 bytes (the most an IPv4 datagram has): whole, in order and
    reversed (this took 1.5 s when every fragment was compared with every piece held;
    the cost is measured by `python3 -m bench.flood`, not here)."""
    body = bytes(random.Random(5).getrandbits(8) for _ in range(8189 * 8))
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=83, proto=17)
    frags = [raw(IP(**base, flags="MF" if i < 8188 else 0, frag=i) / body[i * 8:i * 8 + 8]) for i in range(8189)]
    for order in (frags, frags[::-1]):
        done = feed_all(Defragmenter(), order)[1]
        assert len(done) == 1 and done[0].l3[20:] == body


def test_ipv4_datagrams_keyed_apart():
    one, two = ipv4_datagram(ident=1), ipv4_datagram(ident=1, src="10.0.0.99")
    f1, f2 = ipv4_fragments(one), ipv4_fragments(two)
    mixed = [x for pair in zip(f1, f2) for x in pair]
    d = Defragmenter()
    done = feed_all(d, mixed)[1]
    assert sorted(p.l3 for p in done) == sorted([one, two])


def test_ipv4_first_fragment_with_split_tcp_header():
    wire = raw(IP(src="1.1.1.1", dst="2.2.2.2", id=3) / TCP(sport=1234, dport=8080, flags="S",
                                                          options=[("MSS", 1460), ("NOP", None)] * 3))
    frags = [raw(f) for f in fragment(IP(wire), fragsize=16)]
    assert len(frags) >= 2 and decode_l3(frags[0]).sport == 0
    out = feed_all(Defragmenter(), frags)[1][0]
    assert out.l3 == wire and (out.sport, out.dport, out.tcp_flags) == (1234, 8080, 0x02)


def test_reassembly_over_65535_is_dropped_with_anomaly():
    base = dict(src="10.0.0.1", dst="10.0.0.2", id=5, proto=17)
    d = Defragmenter()
    assert d.feed(decode_l3(raw(IP(**base, flags="MF") / (b"x" * 1000)))) is None
    too_far = decode_l3(raw(IP(**base, frag=8100) / (b"y" * 1000)))   # ends at 65800
    out = d.feed(too_far)
    assert out is too_far and "ipv4.frag_pkt_too_large" in out.anomalies
    assert d.held_datagrams == 0 and d.stats["too_large"] == 1 and d.held_bytes == 0


def ipv6_fragments(wire, mtu=1280):
    return [raw(f) for f in fragment6(IPv6(wire), mtu)]


def test_ipv6_fragments_reassemble_to_original_without_fragment_header():
    plain = IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=53, dport=3333) / (b"T" * 3000)
    with_fh = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(id=0xABCD) / plain.payload
    frags = ipv6_fragments(raw(with_fh))
    assert len(frags) == 3
    d = Defragmenter()
    outs, done = feed_all(d, [frags[2], frags[0], frags[1]])
    assert outs[:2] == [None, None]
    out = done[0]
    assert out.l3 == raw(plain) and out.frag is None and out.anomalies == []
    assert (out.proto, out.sport, out.dport, out.length) == (17, 53, 3333, len(raw(plain)))


def test_ipv6_fragment_after_extension_headers_fixes_the_chain():
    inner = UDP(sport=1, dport=2) / (b"E" * 2500)
    plain = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / inner
    with_fh = (IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
               / IPv6ExtHdrFragment(id=7) / inner)
    out = feed_all(Defragmenter(), ipv6_fragments(raw(with_fh))[::-1])[1][0]
    assert out.l3 == raw(plain)
    assert IPv6(out.l3)[UDP].dport == 2 and out.dport == 2


# Was test_ipv6_overlap_is_flagged, which expected a reassembled datagram: RFC 5722 (and
# Linux) discard the whole datagram on an overlap, so replay now produces none.
def test_ipv6_overlap_discards_the_datagram():
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    a = raw(base / IPv6ExtHdrFragment(id=1, m=1, offset=0, nh=17) / (b"a" * 16))
    b = decode_l3(raw(base / IPv6ExtHdrFragment(id=1, m=1, offset=1, nh=17) / (b"b" * 16)))
    c = raw(base / IPv6ExtHdrFragment(id=1, m=0, offset=3, nh=17) / (b"c" * 8))
    d = Defragmenter()
    assert d.feed(decode_l3(a)) is None
    assert d.feed(b) is None and "ipv6.frag_overlap" in b.anomalies and d.held_datagrams == 0
    assert feed_all(d, [c])[1] == []


def test_ipv6_more_fragments_off_the_eight_byte_unit_is_dropped():
    base = IPv6(src="2001:db8::1", dst="2001:db8::2")
    odd = decode_l3(raw(base / IPv6ExtHdrFragment(id=2, m=1, offset=0, nh=17) / (b"a" * 12)))
    d = Defragmenter()
    assert d.feed(odd) is None and odd.anomalies == ["ipv6.frag_invalid_length"] and d.held_datagrams == 0


def test_timeout_expiry_drops_and_counts():
    frags = ipv4_fragments(ipv4_datagram())
    d = Defragmenter(timeout=30.0)
    d.feed(decode_l3(frags[0], ts=100.0))
    assert d.expire(120.0) == 0 and d.held_datagrams == 1
    assert d.expire(131.0) == 1 and d.held_datagrams == 0 and d.held_bytes == 0
    assert d.stats["timeouts"] == 1
    # the rest of the datagram arriving late cannot complete it
    assert feed_all(d, frags[1:], ts=132.0)[1] == []


def test_old_datagrams_expire_as_later_fragments_arrive():
    d = Defragmenter(timeout=5.0)
    d.feed(decode_l3(ipv4_fragments(ipv4_datagram(ident=1))[0], ts=0.0))
    d.feed(decode_l3(ipv4_fragments(ipv4_datagram(ident=2))[0], ts=10.0))
    assert d.held_datagrams == 1 and d.stats["timeouts"] == 1


def test_datagram_count_bound_evicts_oldest():
    d = Defragmenter(max_datagrams=3)
    datagrams = [ipv4_datagram(ident=i, size=400) for i in range(5)]
    for i, wire in enumerate(datagrams):
        d.feed(decode_l3(ipv4_fragments(wire, size=200)[0], ts=float(i)))
    assert d.held_datagrams == 3 and d.stats["evicted"] == 2
    # the oldest two are gone, the newest can still complete
    assert feed_all(d, ipv4_fragments(datagrams[0], size=200)[1:])[1] == []
    assert feed_all(d, ipv4_fragments(datagrams[4], size=200)[1:])[1][0].l3 == datagrams[4]


def test_byte_bound_evicts_oldest():
    d = Defragmenter(max_bytes=5000)
    for i in range(4):
        d.feed(decode_l3(ipv4_fragments(ipv4_datagram(ident=i, size=4000), size=2000)[0], ts=float(i)))
    assert d.held_bytes <= 5000 and d.stats["evicted"] >= 2 and d.held_datagrams <= 2


def test_fragment_with_hole_never_completes():
    frags = ipv4_fragments(ipv4_datagram())
    d = Defragmenter()
    assert feed_all(d, [frags[0], frags[1], frags[3]])[1] == []
    assert d.held_datagrams == 1
