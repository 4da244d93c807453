"""The window bound on client segments (tcp.seq_out_of_window, review s18b F2/F3): Linux
drops a segment starting past rcv_nxt + its receive window, which is never more than
65535 << the server's scale. Discarded here past twice that from the client's furthest
byte, and only where the handshake is certain."""
from appliance.flow import FlowTable
from appliance.packet import ACK, PSH, SYN

from test_flow import c2s, s2c

MASK = 0xFFFFFFFF


def _discard(t, p):
    t.lookup(p)
    return p.discard


def _open(t, syn_ws, synack_ws, proxied=False):
    t.lookup(c2s(SYN, seq=100, wscale=syn_ws))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101, wscale=synack_ws))
    t.lookup(c2s(ACK, seq=101, ack=501, window=100))


def test_past_twice_the_servers_largest_window_is_discarded():
    t = FlowTable()
    _open(t, 7, 2)                                          # the server's scale: 2
    edge = 101 + 2 * (65535 << 2)
    assert _discard(t, c2s(PSH | ACK, seq=edge + 1, ack=501, payload=b"x")) == "tcp.seq_out_of_window"
    assert _discard(t, c2s(PSH | ACK, seq=edge, ack=501, payload=b"x")) == ""
    # the bound follows the client's furthest byte (now edge + 1)
    assert _discard(t, c2s(PSH | ACK, seq=2 * edge - 99, ack=501, payload=b"x")) == "tcp.seq_out_of_window"
    assert _discard(t, c2s(PSH | ACK, seq=2 * edge - 100, ack=501, payload=b"x")) == ""


def test_without_the_option_in_the_synack_the_window_is_unscaled():
    """The SYN/ACK carries a scale only when the SYN it answers did: without it, 65535."""
    t = FlowTable()
    _open(t, 7, None)
    assert _discard(t, c2s(PSH | ACK, seq=101 + 2 * 65535 + 1, ack=501, payload=b"x")) == "tcp.seq_out_of_window"


def test_a_resend_far_behind_is_never_out_of_window():
    """With scale 14 twice the window is nearly half the sequence space: a segment behind
    the client's furthest byte (a hole's resend, 100 KB back) must not read as 'after' it."""
    t = FlowTable()
    _open(t, 14, 14)
    t.lookup(c2s(PSH | ACK, seq=101 + 200000, ack=501, payload=b"y" * 1000))    # ahead of a hole
    assert _discard(t, c2s(PSH | ACK, seq=101, ack=501, payload=b"x" * 1000)) == ""


def test_no_bound_where_the_handshake_is_not_certain():
    far = 101 + (1 << 30)
    t = FlowTable()                                          # SYN/ACK first: the SYN unseen
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    t.lookup(c2s(ACK, seq=101, ack=501))
    assert _discard(t, c2s(PSH | ACK, seq=far, ack=501, payload=b"x")) == ""
    t = FlowTable(proxied_ports=frozenset({80}))             # behind the SYN proxy
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    t.lookup(c2s(ACK, seq=101, ack=501))
    assert _discard(t, c2s(PSH | ACK, seq=far, ack=501, payload=b"x")) == ""
    t = FlowTable()                                          # two SYN/ACKs, the first completed
    t.lookup(c2s(SYN, seq=100))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    t.lookup(c2s(SYN, seq=9000))
    t.lookup(s2c(SYN | ACK, seq=7000, ack=9001))
    t.lookup(c2s(ACK, seq=101, ack=501))
    assert _discard(t, c2s(PSH | ACK, seq=far, ack=501, payload=b"x")) == ""


def test_the_bound_holds_after_the_last_synack_is_confirmed():
    t = FlowTable()
    t.lookup(c2s(SYN, seq=100))
    t.lookup(s2c(SYN | ACK, seq=500, ack=101))
    t.lookup(c2s(SYN, seq=9000))
    t.lookup(s2c(SYN | ACK, seq=7000, ack=9001))
    t.lookup(c2s(ACK, seq=9001, ack=7001))
    assert _discard(t, c2s(PSH | ACK, seq=9001 + (1 << 30), ack=7001, payload=b"x")) == "tcp.seq_out_of_window"
