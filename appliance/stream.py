# cython: nonecheck=True
"""The client's TCP stream as the server will read it: its bytes, in the order Linux delivers them.

ClientStream (one per TCP flow) decides which client segments the server's TCP takes:
none that flow tracking found the receiver discards (`pkt.discard`: a bad checksum, a bad
or stale ACK, PAWS, a SYN on an open connection, no ACK flag), no RST payload, data in a
SYN only once the SYN/ACK acknowledges it (TCP Fast Open). StreamStart below it reassembles what is left the way Linux's receive queue does
(Suricata's `stream.reassembly` target policy "linux"), following tcp_data_queue,
tcp_data_queue_ofo and tcp_ofo_queue in net/ipv4/tcp_input.c:

- in order (seq <= rcv_nxt < end, a FIN counting as one more): delivered at once; bytes
  before rcv_nxt are dropped;
- out of order: kept in a queue ordered by sequence number, where a new segment that a
  queued one (starting at or before it) fully covers is dropped, one starting at the same
  seq and ending later replaces it, and one covering later queued segments removes them;
  partial overlaps keep both;
- when the hole fills, queued segments are delivered from rcv_nxt on (their front already
  delivered is skipped), so the earlier-starting segment's bytes win an overlap;
- once a FIN is delivered in order the queue is purged and nothing later is read
  (tcp_fin; data after it draws a reset). A FIN held out of order counts when delivered.

Bytes once delivered never change. A later copy with other bytes than the delivered or
queued ones is an `overlap_conflicts`: other receivers resolve it otherwise, so ClientStream
reports `stream.overlap_conflict` and marks the stream `ambiguous` (for detection: a name
read from it is not the only possible reading).

Urgent data (no SO_OOBINLINE, tcp_stdurg 0): the byte at seq + urg_ptr - 1 is taken out of
the stream when it arrives (tcp_check_urg / tcp_urg / tcp_recvmsg). There is one pending
urgent mark; a pointer before rcv_nxt or not after the pending one is ignored, a newer one
replaces it (the older byte then stays in the stream). Once an urgent byte was taken out,
whether a newer mark finds the application past it depends on when the application read:
that is `tcp.urgent_ambiguous`.

Sequence numbers are 32-bit and wrap: every position is kept relative to the start,
computed modulo 2**32 and read as signed so "before the start" is negative.
"""
from bisect import bisect_right

from .packet import SYN, ACK, RST, URG, FIN

MASK = 0xFFFFFFFF
HALF = 0x80000000
MAX_PENDING = 64       # out-of-order segments held at once; tiny-segment floods stop here
MAX_READS = 64         # runs of read bytes followed a stream (past it the two oldest merge)
MAX_CUTS = 16          # urgent bytes taken out of the held bytes that retransmissions are compared with

# once-per-flow anomaly bits
# Discards that rest on numbers the client can move here and not on the server: ts_recent
# and snd_una, from client segments the server may not have taken (one that dies before it,
# a low TTL) or read against a server ACK the client forged (it can send from the server's
# address). One with bytes not read yet leaves the reading ambiguous rather than silently
# short of them (review s19c H2/H5-H7): a decoy then costs its own flow the exception
# policy, never a request the server reads and this did not. (An ACK of unsent data is
# not among them: forged server data only moves snd_nxt up, so fewer such discards.)
_ON_SERVER_NUMBERS = frozenset(("tcp.paws_discard", "tcp.ack_too_old"))
_REPORTED = {"stream.overlap_conflict": 1, "tcp.urgent_ambiguous": 2, "stream.ofo_overflow": 4,
             "tcp.ack_ambiguous": 8, "tcp.ack_too_old": 16, "tcp.ack_unsent": 32,
             "tcp.paws_discard": 64, "tcp.no_ack": 128, "tcp.syn_on_established": 256,
             "tcp.invalid_checksum": 512}


class ClientStream:
    """The bytes a server will read from its client, fed every TCP segment of the flow.

    feed() answers whether the readable bytes changed; `found` collects the names of
    anomalies seen on the way (once per flow each). `ambiguous` stays set once the bytes
    the server reads could be other than `data` (a conflicting overlap, an urgent mark
    whose effect depends on when the server's application read)."""

    __slots__ = ("isn_next", "syn_data", "bytes", "ambiguous", "reported", "keeps")

    def __init__(self, isn=None, keeps=False):
        self.isn_next = None if isn is None else (isn + 1) & MASK   # the client's ISN + 1, from its SYN
        self.syn_data = None         # data carried in the SYN: tentative until the SYN/ACK says
        self.bytes = None            # StreamStart, once the first byte's position is settled
        self.ambiguous = False
        self.reported = 0            # _REPORTED bits of anomalies already reported
        self.keeps = keeps           # the flow's own stream: read bytes kept until the server acknowledges them

    @classmethod
    def open(cls, pkt, to_server, isn):
        """The stream for a flow that has none, or None while there is nothing to keep: a
        segment without data leaves only its ISN (the flow table keeps that), so a SYN flood
        costs no stream objects."""
        if to_server and pkt.payload:
            return cls(isn, True)
        return None

    @property
    def data(self) -> bytes:
        return self.bytes.data if self.bytes is not None else b""

    @property
    def complete(self) -> bool:
        return self.bytes is not None and self.bytes.complete

    @property
    def lost(self) -> bool:
        """Client bytes the server reads that this stream will never hold: out-of-order data
        past the room, or the rest of the last segment that did not fit."""
        st = self.bytes
        return st is not None and (st.lost or st.cut)

    @property
    def base(self) -> int:
        """Stream offset of data[0]: the bytes consume() has let go."""
        return self.bytes.base if self.bytes is not None else 0

    def consume(self, n, skips=()):
        """The app layer is done with the first n bytes of `data`: drop them, making room
        for more (the byte limit bounds the bytes held, not the bytes read). `skips`: the
        (offset, length) runs of them it passed over unread (a body), or True for all."""
        if self.bytes is not None:
            self.bytes.consume(n, skips)

    def judged(self):
        """A verdict was reached on the bytes read so far: the flow is final only once the
        server has acknowledged them (unconfirmed)."""
        st = self.bytes
        if st is not None and not st._settled:
            st.judged = st.rcv               # (settled: names read now are for the logs only)

    def read(self):
        """Stream content rules read the bytes so far (review s21 C): judged as far as the
        kept bytes reach from the server's ACK without a gap. Past that a benign resend after
        a loss past the appliance could not be told from a decoy's replacement (review s21b
        F2: a bulk upload's), so bytes there are not judged for them."""
        st = self.bytes
        if st is not None and not st._settled:
            reach = st._kept_end if st._recent else st.rcv
            if reach > st.judged:
                st.judged = reach

    def settle(self):
        """Only the server's ACK holds the flow now: the bytes past the judged ones can no
        longer matter (kept ones go, none more kept), so a flow whose server never
        acknowledges holds no more than what it was judged on (review s21 D)."""
        st = self.bytes
        if st is not None:
            st.settle()

    def unsettle(self):
        """Something may judge the flow's bytes again (a reload's rules): judged and kept
        again from here (settled again by its next packet if not); the bytes between are a
        gap (a resend there over judged bytes is a conflict)."""
        st = self.bytes
        if st is not None:
            st._settled = False

    @property
    def unconfirmed(self) -> bool:
        """Bytes a verdict was reached on that the server has not acknowledged: they may have
        died on the way (a low TTL, a packet too big past the appliance), and a resend at
        their place, which the server reads, must still be compared with them."""
        st = self.bytes
        return st is not None and st.acked < st.judged

    @property
    def isn(self):
        """The ISN the stream is anchored at, or None."""
        start = self.bytes.start if self.bytes is not None else self.isn_next
        return None if start is None else (start - 1) & MASK

    def feed(self, pkt, to_server, limit, found, again=False) -> bool:
        """True when the readable bytes changed: new contiguous bytes, or the SYN's data settled.
        `again`: the same segment fed once more, its rest past a window the app layer has
        since consumed (its front is its own bytes, not a copy to compare)."""
        flags = pkt.tcp_flags
        if not to_server:
            st = self.bytes
            if st is not None and self.keeps and flags & ACK and not pkt.discard:
                st.ack(pkt.ack)
            if self.syn_data is None or flags & (SYN | ACK) != SYN | ACK or pkt.discard:
                return False
            # The SYN/ACK says whether the server took the data in the SYN (TCP Fast Open
            # with a cookie) or only the SYN (the default): name the flow by the bytes the
            # server will read, not by the ones it dropped.
            self._settle(limit, ((pkt.ack - self.isn_next) & MASK) >= len(self.syn_data))
            return True
        if pkt.discard:                          # flow tracking: the server's TCP drops it
            if pkt.payload:
                self._discarded(pkt, found)
            return False
        if flags & RST:
            return False                         # Linux never delivers a RST's payload
        st = self.bytes
        if st is None:
            if flags & SYN and not flags & ACK:
                self.isn_next = (pkt.seq + 1) & MASK
                self.syn_data = bytes(pkt.payload) if pkt.payload else None
                return False
            if not pkt.payload:
                return False
            if self.syn_data is not None:        # no SYN/ACK seen: the client's next byte tells
                self._settle(limit, pkt.seq != self.isn_next)
            else:
                self._begin(limit)
            st = self.bytes
        if flags & SYN:                          # a SYN's data: see above
            return st.add(pkt.seq, b"", True)
        if flags & URG and st.mark_urgent(pkt.seq, pkt.urg_ptr):
            self._ambiguous("tcp.urgent_ambiguous", found)
        conflicts, dropped = st.overlap_conflicts, st.dropped
        st._again = again
        try:
            grew = st.add(pkt.seq, pkt.payload, False, bool(flags & FIN))   # (positional: a C call compiled)
        finally:
            st._seg_urg = -1
            st._again = False
        if st.overlap_conflicts != conflicts:
            self._ambiguous("stream.overlap_conflict", found)
        if st.dropped != dropped:                # Linux would have kept what we could not hold
            self._ambiguous("stream.ofo_overflow", found)
        return grew

    def _report(self, name, found):
        bit = _REPORTED[name]
        if not self.reported & bit:
            self.reported |= bit
            found.append(name)

    def _ambiguous(self, name, found):
        self.ambiguous = True
        self._report(name, found)

    def _discarded(self, pkt, found):
        """A client segment with data that the server's TCP discards. One with a too-old ACK
        right at rcv_nxt is discarded by Linux's slow path but may be taken by its header-
        prediction fast path (which queues the data before it looks at the ACK): which one
        ran depends on the socket's memory accounting, so the server's reading is unknown;
        so is any discard on the server's numbers with bytes not read yet (_ON_SERVER_NUMBERS)."""
        why = pkt.discard
        st = self.bytes
        if why in _ON_SERVER_NUMBERS:
            if st is None or st.start is None:
                self.ambiguous = True
            else:
                if why == "tcp.ack_too_old" and ((pkt.seq - st.start - st.rcv) & MASK) == 0:
                    self._ambiguous("tcp.ack_ambiguous", found)
                if ((pkt.seq + len(pkt.payload) - st.start - st.rcv - 1) & MASK) < HALF - 1:
                    self.ambiguous = True        # bytes not read yet
                elif st.differs(pkt.seq, pkt.payload):
                    # other bytes at the place of bytes read here: if the bytes read died
                    # before the server (a low TTL), it takes this copy (review s19d F2)
                    self._ambiguous("stream.overlap_conflict", found)
        if why in _REPORTED:
            self._report(why, found)

    def _begin(self, limit):
        """The byte buffer, anchored at ISN+1 when the SYN was seen."""
        st = self.bytes = StreamStart(limit, self.keeps)
        if self.isn_next is not None:
            st.add((self.isn_next - 1) & MASK, b"", True)
        return st

    def _settle(self, limit, accepted):
        """Turn the SYN's tentative data into stream bytes (the server took it) or drop it."""
        st = self._begin(limit)
        if accepted:
            st.add(self.isn_next, self.syn_data)
        self.syn_data = None


class StreamStart:
    """One direction of a TCP connection as Linux's receive queue delivers it: at most
    `limit` delivered bytes held (data[0] is stream offset `base`; consume() lets bytes
    go), plus a bounded queue of out-of-order segments within that room."""

    __slots__ = ("limit", "start", "base", "rcv", "urg", "urg_done", "fin", "_buf", "_buf_seq", "_cuts",
                 "_pending", "_held", "overlap_conflicts", "dropped", "lost", "cut",
                 "acked", "judged", "_kept", "_kept_seq", "_kept_end", "_kept_cuts",
                 "_recent", "_recent_seq", "_recent_end", "_recent_cuts", "_settled",
                 "_urg_cuts", "_seg_urg", "_reads", "_read_held", "_again")

    def __init__(self, limit: int = 8192, keeps: bool = False):
        self.limit = limit
        self.start = None          # absolute seq of the first stream byte; None until known
        self.base = 0              # stream offset (bytes the application reads) of data[0]
        self.rcv = 0               # rcv_nxt, in sequence offsets from start
        self.urg = None            # the pending urgent mark (sequence offset) not yet delivered
        self.urg_done = False      # an urgent byte was taken out of delivered bytes
        self.fin = False           # the client's FIN was delivered: the application reads no further
        self._buf = bytearray()    # delivered bytes not consumed
        self._buf_seq = 0          # sequence offset of _buf[0]
        self._cuts = ()            # sequence offsets of urgent bytes taken out of _buf (None: too many)
        self._pending = []         # out-of-order queue: [offset, bytes, fin], by offset; ends increase
        self._held = 0             # bytes in _pending
        self.overlap_conflicts = 0
        self.dropped = 0           # out-of-order segments not held for lack of room
        self.lost = False          # out-of-order bytes past the room were let go: never read
        self.cut = False           # the last add() delivered a segment only up to the room: the
                                   # rest is read only if it comes again once bytes are consumed
        self.acked = 0             # sequence offset the server acknowledged (ack())
        self.judged = 0            # rcv when a verdict was last reached (ClientStream.judged)
        # consumed bytes the server has not acknowledged (None: not kept, a stream rule's
        # view): sequence offsets [_kept_seq, _kept_end) less the urgent bytes at _kept_cuts,
        # the oldest `limit` bytes; past them, once those are full, the most recent `limit`
        # (_recent: made when first needed); a resend is compared with them (_keep)
        self._kept = bytearray() if keeps else None
        self._kept_seq = 0
        self._kept_end = 0
        self._kept_cuts = ()
        self._recent = None
        self._recent_seq = 0
        self._recent_end = 0
        self._recent_cuts = ()
        self._settled = False      # settle(): nothing kept past `judged`
        # urgent bytes taken out and not acknowledged (sequence offsets): a copy at their place
        # must take each out again (review s22 R2); the segment being added's urgent byte
        self._urg_cuts = ()
        self._seg_urg = -1
        # runs of consumed bytes the app layer read (not passed over, as a body), not
        # acknowledged: [lo, hi, bytes] (sequence offsets, ascending), the bytes held while
        # `limit` of them are (_read_held), else None; a copy over them says the same or is a
        # conflict, even before a verdict rests on them (review s22 R1: a decoy's Host line, SNI
        # or chunk size pushed out of the regions; s22b F1: a chunked upload's benign resend)
        self._reads = None
        self._read_held = 0
        self._again = False        # the segment being added is one fed before (ClientStream.feed)

    @property
    def data(self) -> bytes:
        return bytes(self._buf)

    @property
    def delivered(self) -> int:
        """Stream bytes delivered so far (held or consumed)."""
        return self.base + len(self._buf)

    @property
    def complete(self) -> bool:
        """The readable bytes held reached the limit: nothing more arrives until some are consumed."""
        return len(self._buf) >= self.limit

    @property
    def gaps(self) -> bool:
        """True when bytes beyond a hole are waiting, or were dropped for lack of room."""
        return bool(self._pending) or self.dropped > 0 or self.lost

    def add(self, seq: int, payload: bytes, syn: bool = False, fin: bool = False) -> bool:
        """Take one segment. True when new bytes were delivered."""
        self.cut = False
        if syn:
            seq = (seq + 1) & MASK               # SYN occupies one sequence number
            if self.start is None or (not self.rcv and not self._pending):
                self.start = seq
        elif self.start is None:
            self.start = seq & MASK              # midstream pickup
        if not payload:
            if fin and ((seq - self.start - self.rcv) & MASK) == 0:
                self._fin()                      # a bare FIN in order
            return False
        # The offset from the next byte expected, as Linux's before()/after(): a signed 32-bit
        # distance from rcv, not from the start (past 2 GiB delivered, a distance from the start
        # read every new segment as a resend: a keep-alive's next request unseen; review s18 F1)
        rel = self.rcv + ((seq - self.start - self.rcv + HALF) & MASK) - HALF
        buf = self._buf
        # Fast path: the next in-order segment, nothing queued, no urgent mark, no FIN, room for it.
        if (rel == self.rcv and not (fin or self._pending or self.fin) and self.urg is None
                and len(buf) + len(payload) <= self.limit):
            buf += payload
            self.rcv = rel + len(payload)
            return True
        return self._queue(rel, payload, fin)

    def consume(self, n: int, skips=()):
        """Let the first n delivered bytes go (the app layer is done with them); those the
        server has not acknowledged are kept for comparison (see ack()), and those it read
        (all but `skips`: ClientStream.consume) are marked."""
        n = max(0, min(n, len(self._buf)))
        if not n:
            return
        if self._kept is not None:
            self._keep(n)
            if skips is not True and not self._settled and self._cuts is not None:
                self._mark_read(n, skips)
        del self._buf[:n]
        self.base += n
        cuts = self._cuts
        if cuts is None:
            return
        seq = self._buf_seq + n
        for c in cuts:                           # urgent bytes taken out count in sequence space
            if c < seq:
                seq += 1
        self._buf_seq = seq
        self._cuts = tuple([c for c in cuts if c >= seq])   # (a list: no closure in the compiled twin)

    def _keep(self, n):
        """Keep _buf[:n] from the server's ACK on: the oldest bytes in `_kept` (up to `limit`:
        what the first verdicts rested on) and, once that is full, the most recent `limit`
        bytes in `_recent` (the lines of a request still being read behind a large
        unacknowledged body: review s21b F5), each contiguous with at most MAX_CUTS urgent
        bytes. Between the two nothing is kept: a resend there is not compared (a
        retransmission after a loss past the appliance is no conflict; review s20b F1)."""
        cuts = self._cuts
        if cuts is None or self._settled:
            return                               # byte positions no longer followed; or not needed
        seq0 = self._buf_seq
        end = _seq_of(seq0, cuts, n)             # just past the consumed bytes, as consume() finds it
        kept = self._kept
        recent = self._recent
        if recent or (kept and self._kept_end != seq0):
            # past the oldest: the most recent, started again here when bytes between were not
            # kept (a reload's gap: settled, then judged again)
            if recent and self._recent_end != seq0:
                del recent[:]
            self._keep_recent(0, n, seq0, end)
            return
        if kept:
            start = seq0
            i0 = 0
        else:
            start = seq0 if seq0 > self.acked else self.acked
            if start >= end:
                return
            i0 = start - seq0
            for c in cuts:
                if c < start:
                    i0 -= 1
            self._kept_seq = start
            self._kept_cuts = ()
        i1 = min(n, i0 + self.limit - len(kept))
        stop = end
        if i1 < n:                               # up to the limit: the end is byte i1's place
            stop = _seq_of(seq0, cuts, i1)
        if i1 > i0:
            kept_cuts = self._kept_cuts + tuple([c for c in cuts if start <= c < stop])
            if len(kept_cuts) > MAX_CUTS:
                return
            kept += self._buf[i0:i1]
            self._kept_cuts = kept_cuts
            self._kept_end = stop
        if i1 < n:
            self._keep_recent(i1, n, stop, end)

    def _mark_read(self, n, skips):
        """Mark _buf[:n] read, less the `skips` runs (ascending offsets into it)."""
        pos = 0
        for off, length in skips:
            if off > pos:
                self._add_read(pos, off)
            if off + length > pos:
                pos = off + length
        if pos < n:
            self._add_read(pos, n)

    def _add_read(self, i0, i1):
        """_buf[i0:i1] read: a run, its bytes held while the budget lasts (and no urgent byte
        was taken out of it); at most MAX_READS runs (past it the two oldest merge, their
        bytes let go: a copy over them kept in neither region is then a conflict)."""
        seq0 = self._buf_seq
        cuts = self._cuts
        lo = _seq_of(seq0, cuts, i0)
        hi = _seq_of(seq0, cuts, i1)
        if hi <= self.acked:
            return
        if lo < self.acked:
            lo = self.acked
        data = None
        if not [c for c in cuts if lo <= c < hi] and self._read_held + (hi - lo) <= self.limit:
            data = bytearray(self._buf[i1 - (hi - lo):i1])   # (no urgent byte in it: one byte a place)
            self._read_held += hi - lo
        reads = self._reads
        if not reads:
            self._reads = [[lo, hi, data]]
            return
        last = reads[-1]
        if last[1] == lo and (last[2] is None) == (data is None):
            if data is not None:
                last[2] += data
            last[1] = hi
            return
        reads.append([lo, hi, data])
        if len(reads) > MAX_READS:
            first, second = reads[0], reads[1]
            for run in (first, second):
                if run[2] is not None:
                    self._read_held -= len(run[2])
            reads[0:2] = [[first[0], second[1], None]]

    def _covered(self, lo, hi):
        """Whether sequence offsets [lo, hi) are kept (in the oldest or the most recent bytes)."""
        if self._kept and self._kept_seq <= lo < self._kept_end:
            lo = self._kept_end
        if lo >= hi:
            return True
        return bool(self._recent) and self._recent_seq <= lo and hi <= self._recent_end

    def _keep_recent(self, i0, n, start, end):
        """_buf[i0:n] (sequence offsets [start, end)) to the end of `_recent`, which keeps
        its last `limit` bytes."""
        recent = self._recent
        if recent is None:
            recent = self._recent = bytearray()
        if not recent:                           # (start > acked: past kept bytes not acknowledged)
            self._recent_seq = start
            self._recent_cuts = ()
        cuts = self._recent_cuts + tuple([c for c in self._cuts if start <= c < end])
        recent += self._buf[i0:n]
        over = len(recent) - self.limit
        if over > 0:
            del recent[:over]
            seq = _seq_of(self._recent_seq, cuts, over)
            cuts = tuple([c for c in cuts if c >= seq])
            self._recent_seq = seq
        if len(cuts) > MAX_CUTS:
            del recent[:]
            cuts = ()
        self._recent_cuts = cuts
        self._recent_end = end

    def ack(self, ack: int):
        """The server's cumulative ACK (absolute): the bytes before it reached the server;
        kept bytes before it go. An ACK past the bytes delivered here counts up to them."""
        if self.start is None:
            return
        a = self.rcv + ((ack - self.start - self.rcv + HALF) & MASK) - HALF
        if a > self.rcv:
            a = self.rcv + 1 if self.fin else self.rcv   # (past a FIN delivered: the FIN too)
        if a <= self.acked:
            return
        self.acked = a
        if self._urg_cuts:
            self._urg_cuts = tuple([c for c in self._urg_cuts if c >= a])
        reads = self._reads
        if reads:
            while reads and reads[0][1] <= a:
                run = reads.pop(0)
                if run[2] is not None:
                    self._read_held -= len(run[2])
            if reads and reads[0][0] < a:
                run = reads[0]
                if run[2] is not None:
                    del run[2][:a - run[0]]
                    self._read_held -= a - run[0]
                run[0] = a
        kept = self._kept
        if kept and a > self._kept_seq:
            if a >= self._kept_end:
                del kept[:]
                self._kept_cuts = ()
            else:
                del kept[:_count(self._kept_seq, self._kept_cuts, a)]
                self._kept_seq = a
                self._kept_cuts = tuple([c for c in self._kept_cuts if c >= a])
        recent = self._recent
        if recent and a > self._recent_seq:
            if a >= self._recent_end:
                del recent[:]
                self._recent_cuts = ()
            else:
                del recent[:_count(self._recent_seq, self._recent_cuts, a)]
                self._recent_seq = a
                self._recent_cuts = tuple([c for c in self._recent_cuts if c >= a])
        if kept is not None and not kept and recent:
            # the oldest bytes not acknowledged are the recent ones now: they are kept as the
            # oldest (so the next request's lines are not pushed out by what follows them)
            self._kept, self._recent = recent, kept
            self._kept_seq, self._kept_end, self._kept_cuts = self._recent_seq, self._recent_end, self._recent_cuts
            self._recent_cuts = ()

    def settle(self):
        """See ClientStream.settle."""
        self._settled = True
        self._reads = None                       # (what matters now is judged: B below)
        self._read_held = 0
        kept = self._kept
        judged = self.judged
        if kept and self._kept_end > judged:
            if judged <= self._kept_seq:
                del kept[:]
                self._kept_cuts = ()
            else:
                del kept[_count(self._kept_seq, self._kept_cuts, judged):]
                self._kept_end = judged
                self._kept_cuts = tuple([c for c in self._kept_cuts if c < judged])
        recent = self._recent
        if recent and self._recent_end > judged:
            if judged <= self._recent_seq:
                del recent[:]
                self._recent_cuts = ()
            else:
                del recent[_count(self._recent_seq, self._recent_cuts, judged):]
                self._recent_end = judged
                self._recent_cuts = tuple([c for c in self._recent_cuts if c < judged])

    def differs(self, seq: int, payload) -> bool:
        """A copy (seq, payload) of bytes delivered: True when it says otherwise."""
        if self.start is None:
            return False
        rel = self.rcv + ((seq - self.start - self.rcv + HALF) & MASK) - HALF
        before = self.overlap_conflicts
        self._compare_delivered(rel, payload)
        return self.overlap_conflicts != before

    def mark_urgent(self, seq: int, urg_ptr: int) -> bool:
        """A segment's urgent pointer (URG set), before its data is added (tcp_check_urg).
        True when its effect depends on when the server's application read (ambiguous)."""
        if self.start is None:
            return False
        if ((seq - self.start - self.rcv - 1) & MASK) < HALF - 1:
            # the segment starts past the next byte: Linux reads its pointer only if it was
            # inside the receive window, unknown here (review s18b F2: one far past it moved
            # a byte of the later stream out of band)
            return True
        off = self.rcv + ((seq + (urg_ptr - 1 if urg_ptr else 0) - self.start - self.rcv + HALF) & MASK) - HALF
        self._seg_urg = off
        if off < self.rcv:
            # already received here: the byte stays in this stream. Unless the server has not
            # acknowledged it and it was not taken out here: the first copy may have died past
            # the appliance, and the server takes this one's byte out (review s22 R2)
            return self._kept is not None and off >= self.acked and off not in self._urg_cuts
        if self.urg is not None:
            if off > self.urg:
                self.urg = off                   # the older byte has not arrived: it stays in
            return False
        self.urg = off
        return self.urg_done

    # -- the slow path -------------------------------------------------------------

    def _queue(self, rel, payload, fin):
        rcv = self.rcv
        end = rel + len(payload)
        # a retransmission of delivered bytes, or past the FIN; a FIN at rcv_nxt counts in
        # Linux's end_seq, so such a segment is not a retransmission: its FIN is taken
        if end < rcv or (end == rcv and not fin) or self.fin:
            self._compare_delivered(rel, payload)
            if self.fin and end > rcv and self._kept is not None and self.acked <= rcv:
                # data past a FIN the server has not acknowledged: no sender puts any there,
                # unless its FIN died past the appliance (the server reads on; review s21 A)
                self.overlap_conflicts += 1
            return False
        room_end = rcv + self.limit - len(self._buf)
        if rel <= rcv:                           # in order: delivered now, its front dropped
            if rel < rcv:
                self._compare_delivered(rel, payload)
            self._compare_pending(rel, payload)
            delivered = self._deliver(payload, rcv - rel, room_end)
            if fin and self.rcv == end:
                self._fin()
                return delivered
            return self._ofo_deliver() or delivered
        if rel >= room_end:
            self.lost = True                     # past the bytes we hold
            return False
        if end > room_end:
            payload = payload[:room_end - rel]
            end = room_end
            self.lost = True
            fin = False
        self._compare_pending(rel, payload)
        self._ofo_insert(rel, end, bytes(payload), fin)
        return False

    def _fin(self):
        """tcp_fin: the FIN is in order; the out-of-order queue is purged, and the
        application reads nothing past it (later data draws a reset)."""
        self.fin = True
        if self._kept is not None and any([off + len(d) > self.rcv for off, d, _ in self._pending]):
            # bytes queued past the FIN: no sender puts any there, unless its FIN dies past
            # the appliance and the server reads them (review s21b F1). (Queued bytes before
            # it, covered by the segment that brought the FIN -- a resend collapsed with the
            # FIN after a loss -- were compared on its way in: review s21c F1.)
            self.overlap_conflicts += 1
        self._pending = []
        self._held = 0

    def _deliver(self, payload, skip, room_end):
        """Append payload[skip:] (which starts at rcv) up to the room; an urgent byte in it leaves."""
        rcv = self.rcv
        take = min(len(payload) - skip, room_end - rcv)
        if take < len(payload) - skip:
            self.cut = True
        if take <= 0:
            return False
        urg = self.urg
        if urg is not None and rcv <= urg < rcv + take:
            i = skip + urg - rcv
            self._buf += payload[skip:i]
            self._buf += payload[i + 1:skip + take]
            self.urg = None
            self.urg_done = True
            if self._kept is not None and len(self._urg_cuts) < MAX_CUTS:   # (the flow's own stream: acks followed)
                self._urg_cuts = self._urg_cuts + (urg,)
            cuts = self._cuts
            # past MAX_CUTS the byte positions of retransmissions are no longer followed
            self._cuts = None if cuts is None or len(cuts) >= MAX_CUTS else cuts + (urg,)
        else:
            self._buf += payload[skip:skip + take]
        self.rcv = rcv + take
        return True

    def _ofo_deliver(self):
        """tcp_ofo_queue: queued segments that now start at or before rcv_nxt, in order."""
        pending = self._pending
        grew = False
        while pending and pending[0][0] <= self.rcv:
            off, data, fin = pending.pop(0)
            self._held -= len(data)              # one all before rcv_nxt delivers nothing
            room_end = self.rcv + self.limit - len(self._buf)
            grew = self._deliver(data, self.rcv - off, room_end) or grew
            if fin and self.rcv == off + len(data):
                self._fin()
                break
        return grew

    def _ofo_insert(self, rel, end, payload, fin):
        """tcp_data_queue_ofo on a list kept by offset: no queued segment contains another,
        so the last one starting at or before rel is the one that decides."""
        pending = self._pending
        i = bisect_right(pending, rel, key=lambda p: p[0]) - 1
        if i >= 0:
            off, held, _ = pending[i]
            if off + len(held) >= end:
                return                           # all present: dropped (a FIN with it)
            if off == rel:                       # same start, ends later: replaces it
                self._held += len(payload) - len(held)
                pending[i] = [rel, payload, fin]
                self._merge_right(i, end)
                return
        if len(pending) >= MAX_PENDING or self._held + len(payload) > 2 * self.limit:
            self.dropped += 1
            return
        pending.insert(i + 1, [rel, payload, fin])
        self._held += len(payload)
        self._merge_right(i + 1, end)

    def _merge_right(self, i, end):
        """Remove the queued segments after i that the new one covers."""
        pending = self._pending
        j = i + 1
        while j < len(pending) and pending[j][0] + len(pending[j][1]) <= end:
            self._held -= len(pending.pop(j)[1])

    # -- conflicting copies ----------------------------------------------------------

    def _compare_delivered(self, rel, payload):
        """A copy of bytes already delivered (kept or held): count it when it says otherwise."""
        if self._again:
            return                               # (compared when it first came)
        end = rel + len(payload)
        for c in self._urg_cuts:
            if rel <= c < end and c != self._seg_urg:
                # an urgent byte taken out here that this copy leaves in: the server reads it
                # in the stream if the first copy died past the appliance (review s22 R2)
                self.overlap_conflicts += 1
                return
        kept = self._kept
        if kept is not None:
            # bytes a verdict rests on, consumed and not acknowledged: compared where kept; past
            # the limit (or a gap) they were not, and a copy there cannot be told from a decoy's
            # replacement (review s21 B)
            recent = self._recent
            lo = max(rel, self.acked)
            hi = min(end, self.judged, self._buf_seq)
            if lo < hi and not self._covered(lo, hi):
                self.overlap_conflicts += 1
                return
            if self._reads:
                # bytes the app layer read, no verdict on them yet, kept in neither region:
                # the lines of a request or hello still being read, pushed out by more than
                # `limit` bytes after them, or a chunk's size line (review s22 R1)
                for run in self._reads:
                    lo = max(rel, run[0], self.acked)
                    hi = min(end, run[1], self._buf_seq)
                    if lo >= hi:
                        continue
                    held = run[2]
                    if held is not None:
                        if held[lo - run[0]:hi - run[0]] != payload[lo - rel:hi - rel]:
                            self.overlap_conflicts += 1
                            return
                    elif not self._covered(lo, hi):
                        self.overlap_conflicts += 1
                        return
            lo = max(rel, self._kept_seq)
            hi = min(end, self._kept_end)
            if kept and lo < hi and _differs(kept, self._kept_seq, self._kept_cuts, lo, hi, rel, payload):
                self.overlap_conflicts += 1
                return
            lo = max(rel, self._recent_seq)
            hi = min(end, self._recent_end)
            if recent and lo < hi and _differs(recent, self._recent_seq, self._recent_cuts, lo, hi, rel, payload):
                self.overlap_conflicts += 1
                return
        cuts = self._cuts
        lo = max(rel, self._buf_seq)
        hi = min(end, self.rcv)
        if lo < hi and cuts is not None and _differs(self._buf, self._buf_seq, cuts, lo, hi, rel, payload):
            self.overlap_conflicts += 1

    def _compare_pending(self, rel, payload):
        """A copy of queued bytes: count it when it says otherwise."""
        end = rel + len(payload)
        for off, held, _ in self._pending:
            if off >= end:
                break
            held_end = off + len(held)
            if held_end <= rel:
                continue
            lo, hi = max(off, rel), min(held_end, end)
            if held[lo - off:hi - off] != payload[lo - rel:hi - rel]:
                self.overlap_conflicts += 1
                return


def _seq_of(seq, cuts, n):
    """The sequence offset of byte n of bytes that start at `seq` less the urgent bytes at
    `cuts` (ascending): what consume() counts."""
    end = seq + n
    for c in cuts:
        if c < end:
            end += 1
    return end


def _count(seq, cuts, at):
    """How many of the bytes from `seq` (less the urgent ones at `cuts`, none before `seq`)
    lie before sequence offset `at`."""
    n = at - seq
    for c in cuts:
        if c < at:
            n -= 1
    return n


def _differs(buf, buf_seq, cuts, lo, hi, rel, payload):
    """Whether payload (at sequence offset rel) says otherwise than buf (buf[0] at buf_seq) over
    sequence offsets [lo, hi); `cuts`: the offsets of urgent bytes taken out of buf, compared
    piece by piece between them (slices, not byte by byte: a retransmission after one urgent
    byte cost a Python step per byte, 500x)."""
    if not cuts:
        b = lo - buf_seq
        return buf[b:b + hi - lo] != payload[lo - rel:hi - rel]
    b = lo - buf_seq - sum([1 for c in cuts if c < lo])
    s = lo
    for c in sorted([c for c in cuts if lo <= c < hi]) + [hi]:
        n = c - s
        if n > 0:
            if buf[b:b + n] != payload[s - rel:c - rel]:
                return True
            b += n
        s = c + 1                                # the urgent byte is not in buf
    return False


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
