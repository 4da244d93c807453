"""The packed flow key (issue 15, memory per flow): one `bytes` of raw addresses and ports
instead of a tuple of address strings. Security-relevant: two conversations must never
share a Flow, one conversation must never split, and the direction of every packet must
be what it was. The reference here is the tuple key as it was before (`old_key`)."""
import hashlib
import itertools

from appliance.decode import decode_l3
from appliance.flow import Flow, FlowTable, flow_key
from appliance.packet import ACK, ICMP, ICMPV6, SYN, TCP, UDP, Packet

_ECHO = {ICMP: (8, 0), ICMPV6: (128, 129)}


def old_key(p):
    """flow.flow_key before keys were packed (the reference)."""
    if p.proto in (TCP, UDP):
        s, d, sp, dp = p.src, p.dst, p.sport, p.dport
        k = (p.proto, s, sp, d, dp) if s < d or (s == d and sp <= dp) else (p.proto, d, dp, s, sp)
    else:
        i = p.icmp_id & 0xFFFF if p.proto in _ECHO and p.icmp_type in _ECHO[p.proto] else 0
        a, b = (p.src, i), (p.dst, i)
        k = (p.proto,) + (a + b if a <= b else b + a)
    return k + (p.tunnel,) if p.tunnel else k


def pkt(src, sport, dst, dport, proto=TCP, flags=0, icmp=None, tunnel=0, ts=1.0):
    p = Packet(ts)
    p.ip_version = 6 if ":" in src else 4
    p.src, p.dst, p.proto, p.tunnel, p.length = src, dst, proto, tunnel, 60
    if proto in (TCP, UDP):
        p.sport, p.dport, p.tcp_flags = sport, dport, flags if proto == TCP else 0
    elif icmp is not None:
        p.icmp_type, p.icmp_code, p.icmp_id = icmp[0], 0, icmp[1]
    return p


ADDRS = ["10.0.0.1", "10.0.0.2", "10.0.0.10", "9.255.255.255", "::", "::10.0.0.1", "::ffff:10.0.0.1",
         "2001:db8::1", "2001:db8::10"]
PORTS = [0, 1, 80, 256, 443, 65535]
TUNNELS = [0, 1, 0x0A00000100000000, 2**64 - 1]


def packets():
    """Every combination of ends, protocol and endpoint that could be confused: the same
    address in both families' text (10.0.0.1, ::10.0.0.1, ::ffff:10.0.0.1: decode's text), ports that are
    each other's bytes, one address with two ports, both ends equal, echo and other ICMP."""
    for (a, b), (pa, pb) in itertools.product(itertools.product(ADDRS, repeat=2), itertools.product(PORTS[:4], repeat=2)):
        if (":" in a) != (":" in b):
            continue
        for proto in (TCP, UDP):
            yield pkt(a, pa, b, pb, proto)
        icmp = ICMPV6 if ":" in a else ICMP
        yield pkt(a, 0, b, 0, icmp, icmp=(_ECHO[icmp][0], pa))
        yield pkt(a, 0, b, 0, icmp, icmp=(3, 0))
    for t in TUNNELS:
        yield pkt("10.0.0.1", 443, "10.0.0.2", 65535, TCP, tunnel=t)
        yield pkt("2001:db8::1", 443, "2001:db8::10", 65535, UDP, tunnel=t)


def test_packed_key_is_one_flow_per_conversation():
    """Same packed key exactly when the tuple key was the same: injective (no two
    conversations share a Flow) and direction-free (no conversation splits)."""
    by_old, by_new = {}, {}
    for p in packets():
        k, o = flow_key(p), old_key(p)
        assert by_old.setdefault(o, k) == k, (o, by_old[o], k)       # one conversation, one key
        assert by_new.setdefault(k, o) == o, (k, by_new[k], o)       # one key, one conversation
        r = pkt(p.dst, p.dport, p.src, p.sport, p.proto, tunnel=p.tunnel,
                icmp=None if p.proto in (TCP, UDP) else (p.icmp_type, p.icmp_id))
        assert flow_key(r) == k                                       # both directions
    assert len(by_new) == len(by_old) > 700


def test_flow_reads_back_its_ends_and_its_old_tuple_key():
    """src/dst are made from the key's raw addresses (decode's text), on the side the
    initiator is; tuple_key is the old key, so the EVE flow_id did not change."""
    for p in packets():
        for reverse in (False, True):
            f = Flow(flow_key(p), p, reverse)
            ends = ((p.src, p.sport), (p.dst, p.dport))
            if reverse:
                ends = ends[::-1]
            assert (f.src, f.dst) == (ends[0][0], ends[1][0])
            assert f.tuple_key == old_key(p) and f.tunnel == p.tunnel
            want = hashlib.blake2b(repr((old_key(p), 1.0)).encode(), digest_size=8).digest()
            assert f.id == int.from_bytes(want, "big") & 0x1FFFFFFFFFFFFF


def test_one_address_two_ports_is_one_flow_counted_each_way():
    """Loopback-style conversations: both ends on one address, told apart by port only."""
    t = FlowTable()
    f, ts, _ = t.lookup(pkt("10.0.0.1", 5000, "10.0.0.1", 80, TCP, SYN))
    g, tc, _ = t.lookup(pkt("10.0.0.1", 80, "10.0.0.1", 5000, TCP, SYN | ACK))
    assert f is g and ts and not tc and (f.pkts_ts, f.pkts_tc) == (1, 1) and len(t) == 1
    f2, ts2, _ = t.lookup(pkt("10.0.0.1", 80, "10.0.0.1", 5000, UDP))
    g2, tc2, _ = t.lookup(pkt("10.0.0.1", 5000, "10.0.0.1", 80, UDP))
    assert f2 is g2 and f2 is not f and ts2 and not tc2 and (f2.sport, f2.dport) == (80, 5000)


def test_both_ends_equal_counts_every_packet_to_the_server():
    """src:port == dst:port (a LAND packet; an echo to oneself): the old predicate
    (pkt.src == flow.src and ports equal) held for every packet; it still does."""
    t = FlowTable()
    for _ in range(3):
        f, to_server, _ = t.lookup(pkt("10.0.0.5", 139, "10.0.0.5", 139, TCP, SYN))
    assert to_server and (f.pkts_ts, f.pkts_tc) == (3, 0)
    t.lookup(pkt("::1", 0, "::1", 0, ICMPV6, icmp=(128, 7)))
    f, to_server, _ = t.lookup(pkt("::1", 0, "::1", 0, ICMPV6, icmp=(129, 7)))
    assert not to_server and (f.pkts_ts, f.pkts_tc) == (1, 1) and f.src == f.dst == "::1"


def test_first_seen_reply_names_its_receiver_the_initiator():
    t = FlowTable()
    f, to_server, _ = t.lookup(pkt("10.0.0.10", 443, "10.0.0.9", 40000, TCP, SYN | ACK))
    assert not to_server and (f.src, f.sport, f.dst, f.dport) == ("10.0.0.9", 40000, "10.0.0.10", 443)
    g, to_server, _ = t.lookup(pkt("10.0.0.9", 40000, "10.0.0.10", 443, TCP, ACK))
    assert g is f and to_server
    e, to_server, _ = t.lookup(pkt("10.0.0.2", 0, "10.0.0.1", 0, ICMP, icmp=(0, 9)))      # echo reply first
    assert not to_server and (e.src, e.dst, e.sport, e.dport) == ("10.0.0.1", "10.0.0.2", 0, 0)
    # the responder's own echo request with the same id: the same flow, to the client
    r, to_server, _ = t.lookup(pkt("10.0.0.2", 0, "10.0.0.1", 0, ICMP, icmp=(8, 9)))
    assert r is e and not to_server and (e.pkts_ts, e.pkts_tc) == (0, 2)
    r, to_server, _ = t.lookup(pkt("10.0.0.1", 0, "10.0.0.2", 0, ICMP, icmp=(8, 9)))
    assert r is e and to_server


def test_address_text_is_decodes():
    """A flow from decoded packets reads the same text decode gave the packet (IPv6
    compressed, IPv4-mapped kept as such), and holds no string of its own."""
    v6 = bytes.fromhex("6000000000140640" + "00000000000000000000ffff0a000001" + "20010db8000000000000000000000010")
    tcp = bytes.fromhex("1f90005000000001000000005002ffff00000000")
    p = decode_l3(v6 + tcp, 2.0)
    f, _, _ = FlowTable().lookup(p)
    assert (f.src, f.dst) == (p.src, p.dst) == ("::ffff:10.0.0.1", "2001:db8::10")
    assert f.key == flow_key(p) and type(f.key) is bytes and len(f.key) == 38
    # the key from decode's raw addresses is the key from their text (a packet made otherwise)
    same = pkt(p.src, p.sport, p.dst, p.dport, TCP, p.tcp_flags)
    assert same.src_raw == b"" and p.src_raw and flow_key(same) == f.key
    back = pkt(p.dst, p.dport, p.src, p.sport, TCP, ACK)
    g, to_server, _ = FlowTable().lookup(back)
    assert flow_key(back) == f.key and (g.src, g.dst) == (p.dst, p.src)


def test_mixed_address_lengths_do_not_collide():
    """Without the layout byte, a 4-byte then a 16-byte end and a 16-byte then a 4-byte end
    pack the same 24 bytes for these two (decode never mixes families in one packet, but a
    key that depends on it would be one bug away from merging two conversations)."""
    one = pkt("10.0.0.1", 0, "2001:db8::ffff:ffff", 443)
    two = pkt("a00:1:0:2001:db8::", 0, "255.255.255.255", 443)
    assert old_key(one) != old_key(two)
    assert flow_key(one)[2:] == b"\x0a\x00\x00\x01\x00\x00" + one_v6() + b"\x01\xbb"
    assert flow_key(one) != flow_key(two)


def one_v6():
    from socket import AF_INET6, inet_pton
    return inet_pton(AF_INET6, "2001:db8::ffff:ffff")


def test_gwlb_offload_takes_only_flows_through_an_endpoint():
    """FlowSets read the endpoint from the key (Flow.tunnel; it was the tuple's 6th item):
    a flow without one is never put in the GWLB fast path's sets."""
    from appliance.gwlb_offload import FlowSets
    sets = FlowSets()
    p = pkt("10.1.0.2", 40000, "10.2.0.2", 80, TCP, SYN)
    assert not sets.add(Flow(flow_key(p), p), "pass") and not sets.pending
    p.tunnel = 0x0A00000100000007
    f = Flow(flow_key(p), p)
    assert f.tunnel == p.tunnel and sets.add(f, "pass")
    assert sets.pending[f][1][0] == "0x0a00000100000007 . 0x0a010002 . 0x0a020002 . 0x9c400050"
