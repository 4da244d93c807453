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


def test_overlap_first_copy_wins_and_conflicts_counted():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 1, b"GET /good")
    assert s.add(ISN + 6, b"evil HTTP") is True
    assert s.data == b"GET /good HTTP"
    assert s.overlap_conflicts == 1


def test_overlap_conflict_between_held_pieces_first_copy_wins():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 5, b"AAAA")      # held out of order, arrives first
    s.add(ISN + 3, b"xxBBBBzz")  # covers the held piece with other bytes
    assert s.overlap_conflicts == 1
    s.add(ISN + 1, b"01")
    assert s.data == b"01xxAAAAzz"


def test_in_order_segment_does_not_overwrite_held_bytes():
    s = StreamStart()
    s.add(ISN, b"", syn=True)
    s.add(ISN + 4, b"WXYZ")
    assert s.add(ISN + 1, b"abcdefg") is True
    assert s.data == b"abcWXYZ"
    assert s.overlap_conflicts == 1


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
    assert not s.gaps


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


def _feed(st, pkt, to_server=True, verify=True):
    found = []
    return st.feed(pkt, to_server, 8192, verify, found), found


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


def test_client_stream_bad_checksum_is_a_decoy_once_checksums_are_real():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("PA", 101, 901, b"Host: ev"))[0] is True and st.checksums_real
    ok, found = _feed(st, _seg("PA", 109, 901, b"GOOD", chksum=0x1234))
    assert ok is False and found == ["tcp.invalid_checksum"]
    assert _feed(st, _seg("PA", 109, 901, b"il"))[0] is True
    assert st.data == b"Host: evil"


def test_client_stream_urgent_byte_leaves_the_stream():
    st = ClientStream()
    _feed(st, _seg("S", 100))
    assert _feed(st, _seg("PAU", 101, 901, b"Host: evXil", urgptr=9))[0] is True
    assert st.data == b"Host: evil"


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
    assert not s.gaps


def test_consumed_bytes_are_not_compared_again():
    s = StreamStart(limit=8)
    s.add(999, b"", syn=True)
    s.add(1000, b"abcd")
    s.consume(2)
    s.add(1000, b"XXcd")                                   # consumed part: nothing to compare
    assert s.overlap_conflicts == 0
    s.add(1000, b"abXd")
    assert s.overlap_conflicts == 1
