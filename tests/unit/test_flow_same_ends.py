"""Review (rvmem), a test gap: a SAME_ENDS key (src:port == dst:port) first seen as a SYN/ACK or an echo
reply. The old predicate (pkt.src == flow.src and ports equal) made every such packet go to
the server; Flow.__init__'s `if side else side` and _key's strict `sp < dp` keep that, and no
branch test fails when either is flipped (test_flow_key's LAND test starts with a SYN)."""
from appliance.flow import FlowTable
from appliance.packet import ACK, ICMP, SYN, TCP, Packet


def pkt(src, sport, dst, dport, proto=TCP, flags=0, icmp=None):
    p = Packet(1.0)
    p.ip_version, p.src, p.dst, p.proto, p.length = 4, src, dst, proto, 60
    if proto == TCP:
        p.sport, p.dport, p.tcp_flags = sport, dport, flags
    else:
        p.icmp_type, p.icmp_id = icmp
    return p


def test_land_synack_first_goes_to_the_server_like_every_packet_of_it():
    t = FlowTable()
    f, to_server, _ = t.lookup(pkt("10.0.0.5", 139, "10.0.0.5", 139, TCP, SYN | ACK))
    assert to_server and (f.src, f.sport, f.dst, f.dport) == ("10.0.0.5", 139, "10.0.0.5", 139)
    g, to_server, _ = t.lookup(pkt("10.0.0.5", 139, "10.0.0.5", 139, TCP, ACK))
    assert g is f and to_server and (f.pkts_ts, f.pkts_tc) == (2, 0)


def test_echo_reply_to_oneself_first_then_request():
    t = FlowTable()
    f, to_server, _ = t.lookup(pkt("10.0.0.5", 0, "10.0.0.5", 0, ICMP, icmp=(0, 7)))
    assert not to_server
    g, to_server, _ = t.lookup(pkt("10.0.0.5", 0, "10.0.0.5", 0, ICMP, icmp=(8, 7)))
    assert g is f and to_server and (f.pkts_ts, f.pkts_tc) == (1, 1)
