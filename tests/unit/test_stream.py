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
