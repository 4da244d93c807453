"""Flow table: keys for both directions, who the initiator is, the TCP state machine,
idle timeouts per state through expire(), max_flows eviction, ICMP echo keyed by id."""
import pytest

from appliance.flow import (CLOSED, CLOSING, ESTABLISHED, NEW, TIMEOUTS, FlowTable, flow_key,
                            handshake_seen)
from appliance.packet import ACK, FIN, ICMP, ICMPV6, PSH, RST, SYN, TCP, UDP, Packet


def pkt(src, sport, dst, dport, proto=TCP, flags=0, ts=0.0, icmp=None, seq=0, ack=0, payload=b"", tsopt=None,
        wscale=None, window=0):
    p = Packet(ts)
    p.seq, p.ack, p.payload, p.tsopt, p.wscale, p.window = seq, ack, payload, tsopt, wscale, window
    p.ip_version = 6 if ":" in src else 4
    p.src, p.dst, p.proto = src, dst, proto
    if proto in (TCP, UDP):
        p.sport, p.dport = sport, dport
        p.tcp_flags = flags if proto == TCP else 0
    else:
        p.icmp_type, p.icmp_code, p.icmp_id = icmp[0], 0, icmp[1]
    p.length = 60
    return p


C, S = ("10.0.0.1", 40000), ("10.0.0.2", 80)


# Default sequence numbers: the client's ISN is 100, the server's 500, one request byte-free
# conversation; tests of the receiver model pass their own.
def c2s(flags, ts=0.0, proto=TCP, seq=None, ack=501, **kw):
    seq = (100 if flags & SYN else 101) if seq is None else seq
    return pkt(*C, *S, proto=proto, flags=flags, ts=ts, seq=seq, ack=ack, **kw)


def s2c(flags, ts=0.0, proto=TCP, seq=None, ack=101, **kw):
    seq = (500 if flags & SYN else 501) if seq is None else seq
    return pkt(*S, *C, proto=proto, flags=flags, ts=ts, seq=seq, ack=ack, **kw)


def test_key_same_both_directions():
    assert flow_key(c2s(SYN)) == flow_key(s2c(SYN | ACK))
    assert flow_key(c2s(0, proto=UDP)) == flow_key(s2c(0, proto=UDP))
    assert flow_key(c2s(0, proto=UDP)) != flow_key(c2s(0))                 # proto is part of it
    assert flow_key(c2s(0)) != flow_key(pkt("10.0.0.1", 40001, *S))        # so are ports
    v6a = pkt("2001:db8::1", 5, "2001:db8::2", 6, proto=UDP)
    v6b = pkt("2001:db8::2", 6, "2001:db8::1", 5, proto=UDP)
    assert flow_key(v6a) == flow_key(v6b)


def test_initiator_is_first_sender_and_directions():
    t = FlowTable()
    f, ts, _ = t.lookup(c2s(SYN))
    assert ts and (f.src, f.sport, f.dst, f.dport) == (*C, *S)
    g, ts2, _ = t.lookup(s2c(SYN | ACK))
    assert g is f and not ts2
    assert (f.pkts_ts, f.pkts_tc) == (1, 1)
    # UDP: whoever speaks first initiates, even from port 53
    u, ts3, _ = t.lookup(pkt("10.0.0.53", 53, "10.0.0.1", 5000, proto=UDP))
    assert ts3 and (u.src, u.sport) == ("10.0.0.53", 53)


def test_first_seen_synack_names_its_receiver_initiator():
    t = FlowTable()
    f, to_server, _ = t.lookup(s2c(SYN | ACK))
    assert not to_server
    assert (f.src, f.sport, f.dst, f.dport) == (*C, *S)
    _, to_server, _ = t.lookup(c2s(ACK))
    assert to_server
    # a mid-stream ACK/PSH first: its sender is taken as the initiator
    g, to_server, _ = t.lookup(pkt("10.0.0.9", 80, "10.0.0.8", 5555, flags=PSH | ACK))
    assert to_server and (g.src, g.sport) == ("10.0.0.9", 80)


def test_tcp_state_machine_full_life():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN))
    assert f.state == NEW and not handshake_seen(f)
    t.lookup(s2c(SYN | ACK))
    assert f.state == NEW
    t.lookup(c2s(ACK))
    assert f.state == ESTABLISHED and handshake_seen(f)
    t.lookup(c2s(PSH | ACK))
    t.lookup(s2c(PSH | ACK))
    assert f.state == ESTABLISHED
    t.lookup(c2s(FIN | ACK))
    assert f.state == CLOSING
    t.lookup(s2c(FIN | ACK))
    assert f.state == CLOSING
    t.lookup(c2s(ACK))
    assert f.state == CLOSED
    assert f.flags_ts == SYN | ACK | PSH | FIN and f.flags_tc == SYN | ACK | PSH | FIN


def test_tcp_states_without_handshake_and_rst():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(PSH | ACK))             # midstream: never established
    t.lookup(s2c(ACK))
    t.lookup(c2s(PSH | ACK))
    assert f.state == NEW and not handshake_seen(f)
    t.lookup(s2c(RST))
    assert f.state == CLOSED
    g, _, _ = t.lookup(pkt("10.0.0.1", 1, "10.0.0.2", 2, flags=SYN))
    t.lookup(pkt("10.0.0.2", 2, "10.0.0.1", 1, flags=RST | ACK))
    assert g.state == CLOSED
    # an ACK from the client without a SYN/ACK seen does not complete a handshake
    h, _, _ = t.lookup(pkt("10.0.0.1", 3, "10.0.0.2", 4, flags=SYN))
    t.lookup(pkt("10.0.0.1", 3, "10.0.0.2", 4, flags=ACK))
    assert h.state == NEW and not handshake_seen(h)


def test_udp_and_icmp_established_when_seen_both_ways():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(0, proto=UDP))
    t.lookup(c2s(0, proto=UDP))
    assert f.state == NEW
    t.lookup(s2c(0, proto=UDP))
    assert f.state == ESTABLISHED


def test_tcp_port_reuse_after_close_starts_a_new_flow():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN))
    t.lookup(s2c(RST | ACK))
    assert f.state == CLOSED
    g, to_server, ended = t.lookup(c2s(SYN, ts=1.0))
    assert g is not f and ended is f and f.reason == "closed" and to_server
    assert g.state == NEW and len(t) == 1


def _idle(t, f, now):
    return [x for x in t.expire(now) if x is f]


@pytest.mark.parametrize("proto,state,setup", [
    (TCP, NEW, [("c", SYN)]),
    (TCP, ESTABLISHED, [("c", SYN), ("s", SYN | ACK), ("c", ACK)]),
    (TCP, CLOSING, [("c", SYN), ("s", SYN | ACK), ("c", ACK), ("c", FIN | ACK)]),
    (TCP, CLOSED, [("c", SYN), ("s", RST)]),
    (UDP, NEW, [("c", 0)]),
    (UDP, ESTABLISHED, [("c", 0), ("s", 0)]),
])
def test_timeout_per_state(proto, state, setup):
    t = FlowTable()
    f = None
    for who, flags in setup:
        f, _, _ = t.lookup((c2s if who == "c" else s2c)(flags, ts=100.0, proto=proto))
    assert f.state == state
    limit = TIMEOUTS[proto][state]
    assert _idle(t, f, 100.0 + limit - 0.5) == []
    assert len(t) == 1
    assert _idle(t, f, 100.0 + limit) == [f]
    assert f.reason == "timeout" and len(t) == 0


def test_icmp_timeouts_and_expire_keeps_active_flows():
    t = FlowTable()
    old, _, _ = t.lookup(pkt("10.0.0.1", 0, "10.0.0.2", 0, proto=ICMP, ts=0.0, icmp=(8, 1)))
    busy, _, _ = t.lookup(pkt("10.0.0.1", 0, "10.0.0.3", 0, proto=ICMP, ts=0.0, icmp=(8, 2)))
    t.lookup(pkt("10.0.0.1", 0, "10.0.0.3", 0, proto=ICMP, ts=25.0, icmp=(8, 2)))
    assert t.expire(29.0) == []
    assert t.expire(TIMEOUTS[ICMP][NEW]) == [old]
    assert list(t.flows.values()) == [busy]
    assert t.expire(25.0 + TIMEOUTS[ICMP][NEW]) == [busy]


def test_expire_looks_past_long_lived_flows():
    """An established TCP flow (600 s) older than a new UDP flow (30 s) must not hide it."""
    t = FlowTable()
    tcp, _, _ = t.lookup(c2s(SYN, ts=0.0))
    t.lookup(s2c(SYN | ACK, ts=0.0))
    t.lookup(c2s(ACK, ts=0.0))
    udp, _, _ = t.lookup(pkt("10.0.0.5", 1, "10.0.0.6", 2, proto=UDP, ts=1.0))
    assert t.expire(31.0) == [udp]
    assert list(t.flows.values()) == [tcp]


def test_max_flows_evicts_least_recently_active():
    t = FlowTable(max_flows=3)
    a, _, _ = t.lookup(pkt("10.0.0.1", 1, "10.0.0.2", 9, proto=UDP, ts=1))
    b, _, _ = t.lookup(pkt("10.0.0.1", 2, "10.0.0.2", 9, proto=UDP, ts=2))
    c, _, _ = t.lookup(pkt("10.0.0.1", 3, "10.0.0.2", 9, proto=UDP, ts=3))
    t.lookup(pkt("10.0.0.2", 9, "10.0.0.1", 1, proto=UDP, ts=4))     # a is active again
    d, _, ended = t.lookup(pkt("10.0.0.1", 4, "10.0.0.2", 9, proto=UDP, ts=5))
    assert ended is b and b.reason == "evicted" and t.evicted == 1
    assert len(t) == 3 and set(t.flows.values()) == {a, c, d}
    _, _, ended = t.lookup(pkt("10.0.0.1", 3, "10.0.0.2", 9, proto=UDP, ts=6))   # existing: no eviction
    assert ended is None and t.total == 4


def test_icmp_echo_keyed_by_id():
    t = FlowTable()
    req1, ts1, _ = t.lookup(pkt("10.0.0.1", 0, "8.8.8.8", 0, proto=ICMP, icmp=(8, 100)))
    rep1, ts2, _ = t.lookup(pkt("8.8.8.8", 0, "10.0.0.1", 0, proto=ICMP, icmp=(0, 100)))
    req2, _, _ = t.lookup(pkt("10.0.0.1", 0, "8.8.8.8", 0, proto=ICMP, icmp=(8, 101)))
    assert rep1 is req1 and req2 is not req1
    assert ts1 and not ts2
    assert (req1.src, req1.dst, req1.sport, req1.dport) == ("10.0.0.1", "8.8.8.8", 0, 0)
    assert req1.state == ESTABLISHED
    # ICMPv6 echo (128/129) the same way
    v6, _, _ = t.lookup(pkt("2001:db8::1", 0, "2001:db8::2", 0, proto=ICMPV6, icmp=(128, 7)))
    v6r, ts, _ = t.lookup(pkt("2001:db8::2", 0, "2001:db8::1", 0, proto=ICMPV6, icmp=(129, 7)))
    assert v6r is v6 and not ts


def test_first_seen_echo_reply_names_its_receiver_initiator():
    """Like a first-seen SYN/ACK: the echo reply comes from the responder. Either way the two
    directions must differ, so the flow gets established and to_server/to_client mean something."""
    t = FlowTable()
    f, ts_rep, _ = t.lookup(pkt("8.8.8.8", 0, "10.0.0.1", 0, proto=ICMP, icmp=(0, 5)))
    g, ts_req, _ = t.lookup(pkt("10.0.0.1", 0, "8.8.8.8", 0, proto=ICMP, icmp=(8, 5)))
    assert g is f
    assert ts_req != ts_rep                        # currently both False: both counted to_client
    assert (f.pkts_ts, f.pkts_tc) == (1, 1) and f.state == ESTABLISHED
    assert ts_req and f.src == "10.0.0.1"


def test_flow_ids_are_json_safe_and_distinct():
    t = FlowTable()
    ids = {t.lookup(pkt("10.0.0.1", p, "10.0.0.2", 80, proto=UDP))[0].id for p in range(1, 500)}
    assert len(ids) == 499 and all(0 < i < 2 ** 53 for i in ids)


def _udp(i, ts, reply=False):
    a, b = ("10.1.%d.%d" % (i >> 8, i & 255), 1000), ("10.0.0.2", 53)
    return pkt(*b, *a, proto=UDP, ts=ts) if reply else pkt(*a, *b, proto=UDP, ts=ts)


def test_eviction_takes_final_then_unconfirmed_then_pending_flows():
    """A flood of one-way flows must not push out a flow whose verdict is still pending
    (seen both ways): final flows go first, then unconfirmed ones, each oldest first."""
    t = FlowTable(max_flows=4)
    pending, _, _ = t.lookup(_udp(0, 1))
    t.lookup(_udp(0, 1.5, reply=True))
    oneway, _, _ = t.lookup(_udp(1, 2))
    final, _, _ = t.lookup(_udp(2, 3))
    final.final = True
    t.file(final)
    oneway2, _, _ = t.lookup(_udp(3, 4))
    ended = [t.lookup(_udp(10 + i, 5 + i))[2] for i in range(3)]
    assert ended == [final, oneway, oneway2]
    assert t.evicted_by_class == [1, 2, 0] and pending.key in t.flows
    # only pending flows left to take: the oldest of them goes
    t2 = FlowTable(max_flows=2)
    for i in range(3):
        t2.lookup(_udp(i, i))
        t2.lookup(_udp(i, i + 0.5, reply=True))
    assert [f.reason for f in t2.flows.values()] == ["", ""] and t2.evicted_by_class == [0, 0, 1]


def test_evicted_and_expired_flows_are_not_kept_by_the_table():
    """Memory is bounded by max_flows: an ended flow is referenced by nothing the table
    owns (timer-wheel buckets used to keep every evicted flow until its timeout)."""
    import gc
    t = FlowTable(max_flows=100)
    ended = []
    for i in range(1000):
        e = t.lookup(_udp(i, 1 + i * 0.001))[2]
        if e is not None:
            ended.append(e)
    ended += t.expire(1000.0)
    assert len(ended) == 1000 and len(t) == 0
    owned = (list, dict, tuple)
    sample = ended[:50] + ended[-50:]
    for f in sample:
        assert not [r for r in gc.get_referrers(f) if isinstance(r, owned) and r is not ended
                    and r is not sample], f.key
    assert sum(len(q) for queues in t.queues for q in queues.values()) == 0


def test_state_change_to_a_shorter_timeout_expires_on_the_shorter_one():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, ts=0.0))
    t.lookup(s2c(SYN | ACK, ts=0.0))
    t.lookup(c2s(ACK, ts=0.0))                 # established: 600 s
    t.lookup(c2s(RST, ts=1.0))                 # closed: 10 s
    assert t.expire(10.5) == [] and t.expire(11.0) == [f] and f.reason == "timeout"


def test_tcp_is_confirmed_by_the_clients_handshake_not_the_servers_answer():
    """A spoofed SYN is answered (SYN/ACK) but never ACKed: it stays among the first to go,
    behind nothing but final flows; a completed handshake is what protects a flow."""
    t = FlowTable(max_flows=2)
    spoofed, _, _ = t.lookup(pkt("198.18.0.1", 1000, *S, flags=SYN, ts=1.0))
    t.lookup(pkt(*S, "198.18.0.1", 1000, flags=SYN | ACK, ts=1.0))
    real, _, _ = t.lookup(c2s(SYN, ts=0.5))
    t.lookup(s2c(SYN | ACK, ts=0.5))
    t.lookup(c2s(ACK, ts=0.5))                                   # older, but confirmed
    _, _, ended = t.lookup(pkt("198.18.0.2", 1000, *S, flags=SYN, ts=2.0))
    assert ended is spoofed and real.key in t.flows and t.evicted_by_class == [0, 1, 0]
# -- the receiver model: which segments Linux (the server) discards, which RSTs count -------

def _established(ts=None, ws=None):
    """Client ISN 100, server ISN 500, handshake done; ts=(client TSval, server TSval)."""
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN, tsopt=ts and (ts[0], 0), wscale=ws))
    t.lookup(s2c(SYN | ACK, tsopt=ts and (ts[1], ts[0]), wscale=ws))
    t.lookup(c2s(ACK, tsopt=ts and (ts[0], ts[1]), window=1000))
    assert f.state == ESTABLISHED
    return t, f


def _discard(t, p):
    t.lookup(p)
    return p.discard


def test_no_ack_flag_is_discarded():
    t, f = _established()
    assert _discard(t, c2s(PSH, payload=b"x")) == "tcp.no_ack"
    assert _discard(t, c2s(PSH | ACK, payload=b"x")) == ""


def test_ack_of_unsent_data_or_too_old_is_discarded():
    t, f = _established()
    assert _discard(t, c2s(PSH | ACK, ack=502, payload=b"x")) == "tcp.ack_unsent"
    assert _discard(t, c2s(PSH | ACK, ack=(501 - 2**30) & 0xFFFFFFFF, payload=b"x")) == "tcp.ack_too_old"
    assert _discard(t, c2s(PSH | ACK, ack=500, payload=b"x")) == "tcp.ack_too_old"   # nothing acked yet
    # the server sends 3000 bytes, the client acknowledges them: an ACK up to that far back is fine
    t.lookup(s2c(PSH | ACK, seq=501, payload=b"y" * 3000))
    assert _discard(t, c2s(ACK, seq=101, ack=3501, window=65535)) == ""
    assert _discard(t, c2s(PSH | ACK, ack=1501, payload=b"x")) == ""
    assert _discard(t, c2s(PSH | ACK, ack=400, payload=b"x")) == "tcp.ack_too_old"


def test_too_old_needs_the_clients_window_scale_known():
    t = FlowTable()
    f, _, _ = t.lookup(s2c(SYN | ACK))              # the SYN was not seen: its scale unknown
    assert _discard(t, c2s(PSH | ACK, ack=1, payload=b"x")) == ""
    assert _discard(t, c2s(PSH | ACK, ack=9999, payload=b"x")) == "tcp.ack_unsent"


def test_no_receiver_model_without_the_synack():
    t = FlowTable()
    f, _, _ = t.lookup(c2s(SYN))
    assert _discard(t, c2s(PSH | ACK, ack=123456, payload=b"x")) == ""
    assert f.tcp is None
    g, _, _ = t.lookup(pkt("10.0.0.9", 1, "10.0.0.8", 2, flags=PSH | ACK, seq=7, ack=9, payload=b"mid"))
    assert _discard(t, pkt("10.0.0.9", 1, "10.0.0.8", 2, flags=RST, seq=999)) == "" and g.state == CLOSED


def test_paws_discards_an_older_tsval_when_both_syns_had_timestamps():
    t, f = _established(ts=(1000, 50))
    assert _discard(t, c2s(PSH | ACK, payload=b"x", tsopt=(998, 50))) == "tcp.paws_discard"
    assert _discard(t, c2s(PSH | ACK, payload=b"x", tsopt=(1000, 50))) == ""      # equal: fine
    assert _discard(t, c2s(PSH | ACK, seq=102, payload=b"y", tsopt=(3000, 50))) == ""
    # past the server's last ACK (its rcv_wup): ts_recent stays (tcp_replace_ts_recent)
    assert f.tcp.ts_recent == 1000
    t.lookup(s2c(ACK, ack=103))
    assert _discard(t, c2s(PSH | ACK, seq=103, payload=b"z", tsopt=(5000, 50))) == ""
    assert f.tcp.ts_recent == 5000                                               # at rcv_wup: kept
    assert _discard(t, c2s(PSH | ACK, seq=104, payload=b"w", tsopt=(4999, 50))) == ""   # window 1
    assert _discard(t, c2s(PSH | ACK, seq=105, payload=b"v", tsopt=(4998, 50))) == "tcp.paws_discard"
    assert _discard(t, c2s(PSH | ACK, seq=105, payload=b"v", tsopt=((5000 + 2**31 + 1) & 0xFFFFFFFF, 50))) \
        == "tcp.paws_discard"                                                    # signed compare
    assert _discard(t, c2s(RST, seq=105, tsopt=(1, 50))) == "" and f.state == CLOSED   # RST exempt


def test_paws_off_without_timestamps_on_the_synack():
    t = FlowTable()
    t.lookup(c2s(SYN, tsopt=(1000, 0)))
    t.lookup(s2c(SYN | ACK))
    assert _discard(t, c2s(PSH | ACK, payload=b"x", tsopt=(1, 0))) == ""


def test_syn_on_an_open_connection_changes_nothing():
    t, f = _established()
    p = c2s(SYN, seq=777)
    g, _, ended = t.lookup(p)
    assert g is f and ended is None and p.discard == "tcp.syn_on_established"
    assert f.isn == 100 and f.state == ESTABLISHED and len(t) == 1


def test_synack_from_the_client_never_starts_a_new_flow():
    """Only the server's SYN/ACK answers the SYN its open connection ignored: the client
    sending one itself (same numbers) must not split its conversation into a new flow
    (with the packed key the sender's side decides; issue 15)."""
    t, f = _established()
    t.lookup(c2s(SYN, seq=777))
    g, to_server, ended = t.lookup(c2s(SYN | ACK, seq=9000, ack=778))
    assert g is f and ended is None and to_server and len(t) == 1


def test_synack_answering_the_ignored_syn_starts_a_new_flow():
    t, f = _established()
    t.lookup(c2s(SYN, seq=777, wscale=7))
    g, to_server, ended = t.lookup(s2c(SYN | ACK, seq=9000, ack=778, wscale=7))
    assert ended is f and f.reason == "reused" and g is not f and not to_server
    assert g.isn == 777 and (g.src, g.sport) == C and g.tcp.wscale == 7
    # a SYN/ACK that answers no ignored SYN is a retransmission, nothing more
    t2, f2 = _established()
    assert t2.lookup(s2c(SYN | ACK, ack=101))[0] is f2


def test_only_an_exact_rst_closes():
    t, f = _established()
    t.lookup(c2s(PSH | ACK, payload=b"abcd"))                  # the server's rcv_nxt: 105
    assert _discard(t, c2s(RST, seq=106)) == "tcp.rst_not_exact" and f.state == ESTABLISHED
    assert _discard(t, c2s(RST, seq=101)) == "tcp.rst_not_exact" and f.state == ESTABLISHED
    assert _discard(t, s2c(RST, seq=600)) == "tcp.rst_not_exact" and f.state == ESTABLISHED
    assert _discard(t, c2s(RST, seq=105)) == "" and f.state == CLOSED


def test_rst_with_client_data_beyond_the_servers_ack_keeps_the_connection():
    # out-of-order data: the server's rcv_nxt is not known exactly, the flow stays open
    t, f = _established()
    t.lookup(c2s(PSH | ACK, seq=110, payload=b"later"))
    assert _discard(t, c2s(RST, seq=101)) == "tcp.rst_not_exact" and f.state == ESTABLISHED
    assert _discard(t, c2s(RST, seq=115)) == "tcp.rst_not_exact"   # the hole is still open
    t.lookup(c2s(PSH | ACK, seq=101, payload=b"123456789"))
    t.lookup(s2c(ACK, ack=9999))                               # beyond what the client sent: ignored
    assert f.tcp.s_rcv == 110
    t.lookup(s2c(ACK, ack=115))                                # the server's own rcv_nxt
    assert _discard(t, c2s(RST, seq=115)) == "" and f.state == CLOSED


def test_server_rst_at_its_send_position_closes():
    t, f = _established()
    t.lookup(s2c(PSH | ACK, payload=b"hello"))
    assert _discard(t, s2c(RST, seq=501)) == "tcp.rst_not_exact"
    assert _discard(t, s2c(RST | ACK, seq=506)) == "" and f.state == CLOSED


def test_discarded_fin_does_not_count():
    t, f = _established()
    t.lookup(c2s(FIN | ACK, ack=9999))
    assert f.state == ESTABLISHED


def test_state_tracking_needs_no_stream_object():
    # final flows may have had their stream released (flow.stream None): nothing changes
    t, f = _established()
    f.final, f.stream = True, None
    t.lookup(c2s(PSH | ACK, payload=b"abcd"))
    assert _discard(t, c2s(RST, seq=105)) == "" and f.state == CLOSED


def test_bad_checksum_segments_move_no_state_once_that_side_sent_a_good_one():
    from scapy.all import IP, TCP as STCP, raw
    from appliance.decode import decode_l3

    def seg(flags, seq, ack, to_server=True, chksum=None, opts=()):
        src, dst, sp, dp = ("10.0.0.1", "10.0.0.2", 40000, 80) if to_server else ("10.0.0.2", "10.0.0.1", 80, 40000)
        tcp = STCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, options=list(opts))
        if chksum is not None:
            tcp.chksum = chksum
        return decode_l3(raw(IP(src=src, dst=dst) / tcp), 1.0)
    ts = lambda v, e: [("Timestamp", (v, e))]  # noqa: E731
    t = FlowTable(verify_checksums=True)
    f, _, _ = t.lookup(seg("S", 100, 0, opts=ts(10, 0)))
    t.lookup(seg("SA", 500, 101, to_server=False, opts=ts(7, 10)))
    t.lookup(seg("A", 101, 501, opts=ts(11, 7)))
    # a decoy that would push ts_recent far ahead (then PAWS would drop the real segments)
    p = seg("A", 101, 501, chksum=0x1234, opts=ts(2**30, 7))
    t.lookup(p)
    assert p.discard == "tcp.invalid_checksum" and f.tcp.ts_recent == 11
    p = seg("R", 101, 0, chksum=0x1234)                       # an exact RST, but a bad checksum
    t.lookup(p)
    assert p.discard == "tcp.invalid_checksum" and f.state == ESTABLISHED
    # the server's checksums are not judged: its receiver is the client, and a client
    # forging server segments could give them a good checksum as well
    p = seg("A", 501, 101, to_server=False, chksum=0x1234)
    t.lookup(p)
    assert p.discard == ""
    # the client's good SYN is enough to make its next bad segment a decoy
    t1 = FlowTable(verify_checksums=True)
    t1.lookup(seg("S", 100, 0))
    t1.lookup(seg("SA", 500, 101, to_server=False))
    p = seg("A", 101, 501, chksum=0x1234)
    t1.lookup(p)
    assert p.discard == "tcp.invalid_checksum"
    # a capture taken on the client: all its checksums unfinished, none is a decoy
    t3 = FlowTable(verify_checksums=True)
    f3, _, _ = t3.lookup(seg("S", 100, 0, chksum=0x1234))
    t3.lookup(seg("SA", 500, 101, to_server=False))
    p = seg("A", 101, 501, chksum=0x1234)
    t3.lookup(p)
    assert p.discard == "" and f3.state == ESTABLISHED
    # checks off (or a side whose checksums were never good): the segment counts
    t2 = FlowTable(verify_checksums=False)
    f2, _, _ = t2.lookup(seg("S", 100, 0))
    t2.lookup(seg("SA", 500, 101, to_server=False))
    t2.lookup(seg("A", 101, 501))
    t2.lookup(seg("R", 101, 0, chksum=0x1234))
    assert f2.state == CLOSED
