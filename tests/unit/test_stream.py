import pytest

from appliance.stream import StreamStart

ISN = 1000


def test_in_order_after_syn():
    s = StreamStart()
    assert s.add(ISN, b"", syn=True) is False
    assert s.add(ISN + 1, b"GET ") is True
    assert s.add(ISN + 5, b"/ HTTP/1.1\r\n") is True
    assert s.data == b"GET / HTTP/1.1\r\n"
    assert not s.gaps and not s.complete and s.overlap_conflicts == 0


def test_out_of_order_held_until_hole_fills():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    assert s.add(ISN + 6, b"fghi") is False
    assert s.add(ISN + 10, b"jkl") is False
    assert s.data == b"" and s.gaps
    assert s.add(ISN + 1, b"abc") is True
    assert s.data == b"abc" and s.gaps  # hole at bytes 3-4 still open
    assert s.add(ISN + 3, b"cde") is True
    assert s.data == b"abcdefghijkl"
    assert not s.gaps and s.overlap_conflicts == 0


def test_retransmission_is_not_a_conflict():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 1, b"hello ")
    assert s.add(ISN + 1, b"hello ") is False
    assert s.add(ISN + 4, b"lo world") is True
    assert s.data == b"hello world"
    assert s.overlap_conflicts == 0


def test_retransmission_with_other_bytes_is_a_conflict_delivered_bytes_stay():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 1, b"GET /good")
    assert s.add(ISN + 6, b"evil HTTP") is True      # its front is before rcv_nxt: dropped
    assert s.data == b"GET /good HTTP"
    assert s.overlap_conflicts == 1


def test_later_segment_covering_queued_ones_replaces_them():
    # Linux (tcp_data_queue_ofo merge_right): the new covering segment's bytes are delivered
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 5, b"AAAA")      # queued out of order, arrives first
    s.add(ISN + 3, b"xxBBBBzz")  # covers the queued segment with other bytes
    assert s.overlap_conflicts == 1
    assert len(s._pending) == 1 and s._held == 8     # the covered one is gone (memory)
    s.add(ISN + 1, b"01")
    assert s.data == b"01xxBBBBzz"


def test_in_order_segment_wins_over_queued_bytes():
    # Linux delivers an in-order segment at once; queued bytes it covers are skipped
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 4, b"WXYZ")
    assert s.add(ISN + 1, b"abcdefg") is True
    assert s.data == b"abcdefg"
    assert s.overlap_conflicts == 1


def test_queued_same_start_longer_replaces_shorter_is_dropped():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 3, b"AA")
    s.add(ISN + 3, b"BBBB")      # same start, ends later: replaces
    s.add(ISN + 3, b"CC")        # covered by the queued one: dropped
    s.add(ISN + 1, b"01")
    assert s.data == b"01BBBB" and s.overlap_conflicts == 2


@pytest.mark.parametrize("order", [0, 1])
def test_partial_overlap_earlier_start_wins_in_either_order(order):
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    segs = [(ISN + 5, b"EEEE"), (ISN + 7, b"LLLL")]
    for seq, data in (segs if order == 0 else segs[::-1]):
        s.add(seq, data)
    s.add(ISN + 1, b"0123")
    assert s.data == b"0123EEEELL" and s.overlap_conflicts == 1


def test_queued_segment_straddling_rcv_nxt_is_delivered_from_rcv_nxt():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 3, b"XYcd")      # queued; its front will already be delivered
    s.add(ISN + 1, b"abcd")
    assert s.data == b"abcdcd" and s.overlap_conflicts == 1
    s2 = StreamStart()
    s2.add(ISN, b"", syn=True)
    s2.add(ISN + 3, b"cdEF")
    s2.add(ISN + 1, b"abc")
    assert s2.data == b"abcdEF" and s2.overlap_conflicts == 0


def test_wraparound_near_2_32():
    isn = 2**32 - 3
    s = StreamStart()
    s.add(isn, b"", syn=True)                 # start = 2**32 - 2
    assert s.add(2**32 - 2, b"ab") is True
    assert s.add(0, b"cd") is True            # seq wrapped
    assert s.add(4, b"gh") is False           # out of order across the wrap
    assert s.add(2, b"ef") is True
    assert s.data == b"abcdefgh"


def test_syn_at_max_seq_wraps_start():
    s = StreamStart()
    s.add(2**32 - 1, b"", syn=True)
    assert s.start == 0
    assert s.add(0, b"x") is True


def test_midstream_first_seq_is_start_and_earlier_data_ignored():
    s = StreamStart()
    assert s.add(500000, b"middle") is True
    assert s.add(499990, b"0123456789") is False  # entirely before the start
    assert s.add(499998, b"..middle!") is True    # straddles the start: front trimmed
    assert s.data == b"middle!"
    assert s.overlap_conflicts == 0


def test_limit_reached_and_further_data_ignored():
    s = StreamStart(limit=10)
    s.add(ISN, b"", syn=True)
    assert s.add(ISN + 1, b"0123456") is True
    assert s.add(ISN + 8, b"789abc") is True
    assert s.complete and s.data == b"0123456789"
    assert s.add(ISN + 14, b"more") is False
    assert s.data == b"0123456789"


def test_out_of_order_beyond_limit_not_held():
    s = StreamStart(limit=8)
    s.add(ISN, b"", syn=True)
    assert s.add(ISN + 100, b"far away") is False
    assert not s._pending and s.lost and s.gaps


def test_pending_bound_sets_gaps():
    s = StreamStart(limit=100000)
    s.add(ISN, b"", syn=True)
    for i in range(200):  # every other byte: a tiny-segment flood of holes
        s.add(ISN + 3 + 2 * i, b"x")
    assert s.dropped > 0 and s.gaps
    assert len(s._pending) <= 64


def test_data_on_syn_starts_after_isn():
    s = StreamStart()
    assert s.add(ISN, b"fastopen", syn=True) is True
    assert s.data == b"fastopen"


# -- ClientStream: which client bytes the server will read ---------------------------

from scapy.all import IP, TCP as STCP, raw  # noqa: E402

from appliance.decode import decode_l3  # noqa: E402
from appliance.stream import ClientStream  # noqa: E402


def _seg(flags, seq, ack=0, data=b"", urgptr=0, chksum=None, to_server=True):
    src, dst, sp, dp = ("10.0.0.1", "10.0.0.2", 40000, 80) if to_server else ("10.0.0.2", "10.0.0.1", 80, 40000)
    tcp = STCP(sport=sp, dport=dp, flags=flags, seq=seq, ack=ack, urgptr=urgptr)
    if chksum is not None:
        tcp.chksum = chksum
    return decode_l3(raw(IP(src=src, dst=dst) / tcp / data), 1.0)


def _feed(st, pkt, to_server=True):
    found = []
    return st.feed(pkt, to_server, 8192, found), found


def test_client_stream_syn_data_counts_once_the_synack_takes_it():
    st = ClientStream()
    assert _feed(st, _seg("S", 100, data=b"GET /tfo"))[0] is False
    assert st.isn_next == 101 and st.data == b""
    assert _feed(st, _seg("SA", 900, ack=109, to_server=False), to_server=False)[0] is True
    assert st.data == b"GET /tfo"


def test_client_stream_syn_data_dropped_when_the_synack_acks_only_the_syn():
    st = ClientStream()
    _feed(st, _seg("S", 100, data=b"decoy"))
    assert _feed(st, _seg("SA", 900, ack=101, to_server=False), to_server=False)[0] is True   # settled
    assert st.data == b"" and st.isn == 100
    assert _feed(st, _seg("PA", 101, 901, b"real"))[0] is True
    assert st.data == b"real"


def test_client_stream_discarded_synack_settles_nothing():
    st = ClientStream()
    _feed(st, _seg("S", 100, data=b"GET /tfo"))
    forged = _seg("SA", 900, ack=109, to_server=False)
    forged.discard = "tcp.invalid_checksum"
    assert _feed(st, forged, to_server=False)[0] is False and st.data == b""
    assert _feed(st, _seg("SA", 900, ack=101, to_server=False), to_server=False)[0] is True
    assert st.data == b""


def test_client_stream_bad_checksum_judged_by_flow_tracking_stays_out():
    from appliance.flow import FlowTable
    table = FlowTable(verify_checksums=True)
    st = ClientStream()

    def both(pkt):
        table.lookup(pkt)
        return _feed(st, pkt, pkt.src == "10.0.0.1")
    both(_seg("S", 100))
    both(_seg("SA", 900, 101, to_server=False))
    assert both(_seg("PA", 101, 901, b"Host: ev"))[0] is True
    ok, found = both(_seg("PA", 109, 901, b"GOOD", chksum=0x1234))
    assert ok is False and found == ["tcp.invalid_checksum"]
    assert both(_seg("PA", 109, 901, b"il"))[0] is True
    assert st.data == b"Host: evil"


def test_client_stream_urgent_byte_leaves_the_stream():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("PAU", 101, 901, b"Host: evXil", urgptr=9))[0] is True
    assert st.data == b"Host: evil"


# -- urgent data as Linux's tcp_check_urg / tcp_urg / tcp_recvmsg take it -----------------

def test_urgent_pointer_past_the_segment_is_kept_until_its_byte_arrives():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("PAU", 101, 901, b"Host: ev", urgptr=9))[0] is True
    assert _feed(st, _seg("PA", 109, 901, b"Xil"))[0] is True
    assert st.data == b"Host: evil" and not st.ambiguous


def test_urgent_pointer_before_rcv_nxt_is_ignored():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PA", 101, 901, b"abcd"))
    _feed(st, _seg("PAU", 105, 901, b"efgh", urgptr=0xFFFF & -2))   # points far ahead: kept
    st2 = ClientStream()
    _feed(st2, _seg("S", 100))
    _feed(st2, _seg("PA", 101, 901, b"abcd"))
    # a retransmission whose pointer falls in bytes already received: the byte stays
    _feed(st2, _seg("PAU", 101, 901, b"abcdefgh", urgptr=2))
    assert st2.data == b"abcdefgh"


def test_urg_flag_with_pointer_zero_marks_the_segments_first_byte():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"Xabc", urgptr=0))
    assert st.data == b"abc"


def test_newer_urgent_mark_replaces_one_whose_byte_has_not_arrived():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"ab", urgptr=5))      # byte at 105, not here yet
    _feed(st, _seg("PAU", 103, 901, b"cd", urgptr=5))      # byte at 107 replaces it
    _feed(st, _seg("PA", 105, 901, b"efgh"))
    assert st.data == b"abcdefh" and not st.ambiguous


def test_second_urgent_mark_after_one_was_taken_out_is_ambiguous():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"abXcd", urgptr=3))
    assert st.data == b"abcd" and not st.ambiguous
    ok, found = _feed(st, _seg("PAU", 106, 901, b"efYgh", urgptr=3))
    assert st.ambiguous and found == ["tcp.urgent_ambiguous"]
    _, found = _feed(st, _seg("PAU", 111, 901, b"iZ", urgptr=2))
    assert found == []                                     # once per flow


def test_urgent_pointer_on_a_segment_past_the_next_byte_is_ambiguous():
    """Linux reads it only if that segment was inside its receive window, which is not known
    here (review s18b F2: a bare URG ACK far past it took a later byte out of band)."""
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PA", 101, 901, b"ab"))
    _, found = _feed(st, _seg("AU", 104, 901, b"", urgptr=5))           # one byte past 103
    assert st.ambiguous and found == ["tcp.urgent_ambiguous"]
    st2 = ClientStream()
    _feed(st2, _seg("S", 100))
    _feed(st2, _seg("PA", 101, 901, b"ab"))
    _, found = _feed(st2, _seg("AU", 103, 901, b"", urgptr=5))          # at the next byte: certain
    assert not st2.ambiguous and found == []


def test_stale_urgent_pointer_is_not_a_new_mark():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"abXcd", urgptr=3))
    # a retransmission pointing into bytes already received: ignored, nothing ambiguous
    _, found = _feed(st, _seg("PAU", 101, 901, b"abXcd", urgptr=5))
    assert found == [] and not st.ambiguous and st.data == b"abcd"


def test_urgent_byte_taken_out_does_not_make_retransmissions_conflict():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"abXcd", urgptr=3))
    _feed(st, _seg("PA", 101, 901, b"abXcdef"))
    assert st.data == b"abcdef" and not st.ambiguous
    _, found = _feed(st, _seg("PA", 101, 901, b"abXQd"))
    assert st.ambiguous and found == ["stream.overlap_conflict"]


# -- what the receiver discards -------------------------------------------------------------

def test_rst_payload_never_enters_the_stream():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("RA", 101, 901, b"GOOD"))[0] is False
    assert _feed(st, _seg("PA", 101, 901, b"EVIL"))[0] is True
    assert st.data == b"EVIL"


def test_segment_flow_tracking_discards_stays_out_and_is_reported_once():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    decoy = _seg("P", 101, 901, b"GOOD")
    decoy.discard = "tcp.no_ack"                 # Linux's own rule, no number of the server's
    assert _feed(st, decoy) == (False, ["tcp.no_ack"])
    assert _feed(st, decoy) == (False, [])
    assert _feed(st, _seg("PA", 101, 901, b"EVIL"))[0] is True
    assert st.data == b"EVIL" and not st.ambiguous


@pytest.mark.parametrize("why", ["tcp.paws_discard", "tcp.ack_too_old"])
def test_a_discard_on_the_servers_numbers_with_unread_bytes_is_ambiguous(why):
    """Those numbers can be forged by the client or moved by a segment that dies before the
    server (review s19c): a decoy with bytes not read yet leaves the reading ambiguous; one
    with bytes already read (a resend) changes nothing."""
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PA", 101, 901, b"GET "))
    resend = _seg("PA", 101, 901, b"GET ")
    resend.discard = why
    _feed(st, resend)
    assert not st.ambiguous
    decoy = _seg("PA", 105, 901, b"GOOD")
    decoy.discard = why
    assert _feed(st, decoy)[0] is False and st.ambiguous
    first = ClientStream()                       # nothing read yet at all
    _feed(first, _seg("S", 100))
    decoy = _seg("PA", 101, 901, b"GOOD")
    decoy.discard = why
    assert _feed(first, decoy) == (False, [why]) and first.ambiguous


def test_too_old_ack_at_rcv_nxt_is_ambiguous():
    # Linux's header-prediction fast path may queue it before looking at the ACK
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PA", 101, 901, b"GET "))
    decoy = _seg("PA", 105, (901 - 2**30) & 0xFFFFFFFF, b"GOOD")
    decoy.discard = "tcp.ack_too_old"
    _, found = _feed(st, decoy)
    assert st.ambiguous and "tcp.ack_ambiguous" in found and st.data == b"GET "


def test_conflicting_overlap_is_reported_once_and_stays_ambiguous():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PA", 105, 901, b"good"))
    ok, found = _feed(st, _seg("PA", 101, 901, b"GET evil"))
    assert ok and st.data == b"GET evil" and st.ambiguous and found == ["stream.overlap_conflict"]
    _, found = _feed(st, _seg("PA", 101, 901, b"GET fine"))
    assert found == [] and st.ambiguous


def test_out_of_order_overflow_is_ambiguous():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    found_all = []
    for i in range(80):
        found_all += _feed(st, _seg("PA", 103 + 2 * i, 901, b"x"))[1]
    assert st.ambiguous and found_all == ["stream.ofo_overflow"]


def test_client_stream_feed_never_raises():
    import random
    rnd = random.Random(1)
    flags = ["S", "SA", "A", "PA", "PAU", "U", "R", "RA", "F", "FA", "", "PU", "SU", "FPAUR"]
    for _ in range(300):
        st = ClientStream()
        isn = rnd.randrange(2**32)
        for _ in range(rnd.randrange(1, 15)):
            seq = rnd.choice([isn + 1 + rnd.randrange(-100, 200), rnd.randrange(2**32)])
            pkt = _seg(rnd.choice(flags), seq & 0xFFFFFFFF, rnd.randrange(2**32),
                       bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40))),
                       urgptr=rnd.randrange(65536), to_server=rnd.random() < 0.8)
            to_server = pkt.src == "10.0.0.1"
            ok, found = _feed(st, pkt, to_server)
            assert isinstance(ok, bool)
            assert len(st.data) <= 8192


# -- consume: the app layer lets parsed bytes go ------------------------------------------

def test_consume_moves_base_and_makes_room_past_the_limit():
    s = StreamStart(limit=8)
    s.add(ISN, b"", syn=True)
    assert s.add(ISN + 1, b"01234567") is True and s.complete
    assert s.add(ISN + 9, b"89") is False and s.cut            # no room: let go (unless it comes again)
    s2 = StreamStart(limit=8)
    s2.add(ISN, b"", syn=True)
    s2.add(ISN + 1, b"01234567")
    s2.consume(5)
    assert s2.data == b"567" and s2.base == 5 and not s2.complete
    assert s2.add(ISN + 9, b"89abcdef") is True
    assert s2.data == b"56789abc" and s2.complete and s2.cut   # "def" past the room
    assert s2.add(ISN + 1, b"01234") is False                  # consumed bytes: old, no conflict
    assert s2.overlap_conflicts == 0
    assert s2.add(ISN + 6, b"5Z7") is False and s2.overlap_conflicts == 1
    s2.consume(100)
    assert s2.data == b"" and s2.base == 13


def test_consume_after_an_urgent_byte_keeps_comparisons_aligned():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    _feed(st, _seg("PAU", 101, 901, b"abXcdef", urgptr=3))
    assert st.data == b"abcdef"
    st.consume(3)
    assert st.data == b"def" and st.base == 3
    _feed(st, _seg("PA", 104, 901, b"cdef"))                    # same bytes: no conflict
    assert not st.ambiguous
    _feed(st, _seg("PA", 105, 901, b"dQ"))
    assert st.ambiguous


def test_out_of_order_bytes_stay_within_the_room():
    s = StreamStart(limit=16)
    s.add(ISN, b"", syn=True)
    s.add(ISN + 5, b"x" * 40)
    assert s._held <= 16 and s.lost


# -- FIN: the application reads nothing past it ------------------------------------------

def test_nothing_after_an_in_order_fin_is_read():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 4, b"late")                       # queued, purged by the FIN (tcp_fin)
    assert s.add(ISN + 1, b"abc", fin=True) is True
    assert s.add(ISN + 4, b"more") is False and s.add(ISN + 1, b"abcdef") is False
    assert s.data == b"abc" and s.fin and not s._pending
    b = StreamStart()
    b.add(ISN, b"", syn=True)
    b.add(ISN + 1, b"abc")
    b.add(ISN + 4, b"", fin=True)                 # a bare FIN in order
    assert b.add(ISN + 4, b"def") is False and b.data == b"abc"


def test_fin_on_a_retransmission_ending_at_rcv_nxt_ends_the_reading():
    # Linux counts the FIN in end_seq: data all before rcv_nxt with a FIN at rcv_nxt is not a
    # pure retransmission (tcp_data_queue's "partial packet"), and tcp_fin runs
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 1, b"abc")
    assert s.add(ISN + 1, b"abc", fin=True) is False
    assert s.fin
    assert s.add(ISN + 4, b"Host: evil") is False and s.data == b"abc"


def test_fin_held_out_of_order_counts_when_delivered_unless_replaced():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 3, b"cd", fin=True)
    s.add(ISN + 5, b"XY")                         # past the queued FIN
    assert s.add(ISN + 1, b"ab") is True
    assert s.data == b"abcd" and s.fin
    r = StreamStart()
    r.add(ISN, b"", syn=True)
    r.add(ISN + 3, b"cd", fin=True)
    r.add(ISN + 3, b"cdef")                       # same start, longer: replaces it, FIN and all
    r.add(ISN + 1, b"ab")
    assert r.data == b"abcdef" and not r.fin


def test_client_stream_stops_at_the_clients_fin():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("FPA", 101, 901, b"GET / HTTP/1.1\r\n"))[0] is True      # in order, nothing queued
    assert _feed(st, _seg("PA", 117, 901, b"Host: evil.example\r\n\r\n"))[0] is False
    assert st.data == b"GET / HTTP/1.1\r\n"
# -- consume: the app layer walks a long stream through a window of `limit` bytes ------

def test_consume_moves_the_window_on():
    s = StreamStart(limit=8)
    s.add(999, b"", syn=True)
    assert s.add(1000, b"abcdefghij")
    assert s.data == b"abcdefgh" and s.complete          # the limit bounds the bytes held
    s.consume(5)
    assert s.base == 5 and s.data == b"fgh" and not s.complete
    assert s.add(1008, b"ijklmnop")                       # retransmission of i, j and beyond
    assert s.data == b"fghijklm" and s.base == 5


def test_consume_keeps_out_of_order_pieces_within_the_window():
    s = StreamStart(limit=8)
    s.add(999, b"", syn=True)
    s.add(1000, b"abcd")
    s.consume(4)
    assert not s.add(1006, b"gh")                          # beyond a hole, inside the window
    assert not s.add(1012, b"mn")                          # beyond base + limit: not held
    assert s.add(1004, b"ef")
    assert s.data == b"efgh" and s.base == 4
    assert s.lost                      # "mn" lay past the window: the Inspector reports the loss


def test_consumed_bytes_are_not_compared_again():
    s = StreamStart(limit=8)
    s.add(999, b"", syn=True)
    s.add(1000, b"abcd")
    s.consume(2)
    s.add(1000, b"XXcd")                                   # consumed part: nothing to compare
    assert s.overlap_conflicts == 0
    s.add(1000, b"abXd")
    assert s.overlap_conflicts == 1


# -- the out-of-order queue never holds a segment another one covers (its bounds count) ---

def test_queued_segment_covered_up_to_its_end_is_dropped():
    # tcp_data_queue_ofo: a segment that a queued one starting before it covers up to the
    # same end is dropped; were each kept, a few bytes of retransmissions fill the queue
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 11, b"x" * 100)
    for k in range(1, 80):
        s.add(ISN + 11 + k, b"x" * (100 - k))        # each ends where the queued one does
    assert len(s._pending) == 1 and s._held == 100
    s.add(ISN + 300, b"tail")                       # a distinct segment still has room
    assert s.dropped == 0


def test_queued_segments_ending_where_a_new_one_ends_are_removed():
    # merge_right: queued segments that end at (not only before) the new one's end go
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    for k in range(40):
        base = ISN + 11 + 20 * k
        s.add(base + 5, b"y" * 5)                   # queued first
        s.add(base, b"y" * 10)                      # covers it, same end: it is removed
    assert len(s._pending) == 40 and s._held == 400
    assert s.dropped == 0
