"""The client's TCP stream as the server will read it: its first bytes, in order.

ClientStream (one per TCP flow) decides which client bytes the server takes: data in
a SYN only once the SYN/ACK acknowledges it (TCP Fast Open), no segment whose checksum
the receiver would reject, urgent bytes taken out of band. StreamStart below it puts
what is left in sequence order.

The app-layer parsers need the first few KB of a stream in order, no more.
StreamStart keeps exactly that: contiguous bytes from the start, plus a bounded
set of out-of-order pieces waiting for a hole to fill. The first copy of any
byte wins (what the receiver most likely kept); a later copy with different
bytes is counted in `overlap_conflicts`, a classic IDS-evasion signal.

Sequence numbers are 32-bit and wrap: every position is kept relative to the
start, computed modulo 2**32 and read as signed so "before the start" is
negative.
"""

from .checksum import transport_ok
from .packet import SYN, ACK, URG

MASK = 0xFFFFFFFF
HALF = 0x80000000
MAX_PENDING = 64       # out-of-order pieces held at once; tiny-segment floods stop here
MAX_OOB = 16           # urgent-byte positions remembered per stream


class ClientStream:
    """The bytes a server will read from its client, fed every TCP segment of the flow.

    feed() answers whether the readable bytes changed; `found` collects the names of
    anomalies seen on the way (a checksum decoy)."""

    __slots__ = ("isn_next", "syn_data", "bytes", "oob", "checksums_real")

    def __init__(self, isn=None):
        self.isn_next = None if isn is None else (isn + 1) & MASK   # the client's ISN + 1, from its SYN
        self.syn_data = None         # data carried in the SYN: tentative until the SYN/ACK says
        self.bytes = None            # StreamStart, once the first byte's position is settled
        self.oob = None              # stream positions of urgent bytes the receiver took out
        self.checksums_real = False  # the client sent a valid checksum: a bad one is a decoy

    @classmethod
    def open(cls, pkt, to_server, verify, isn):
        """The stream for a flow that has none, or None while there is nothing to keep: a
        segment without data leaves only its ISN (the flow table keeps that), unless its valid
        checksum shows the client's checksums are real. So a SYN flood costs no stream objects."""
        if not to_server:
            return None
        if pkt.payload:
            return cls(isn)
        if verify and transport_ok(pkt) is True:
            st = cls(isn)
            st.checksums_real = True          # feed() need not sum it again
            return st
        return None

    @property
    def data(self) -> bytes:
        return self.bytes.data if self.bytes is not None else b""

    @property
    def complete(self) -> bool:
        return self.bytes is not None and self.bytes.complete

    @property
    def isn(self):
        """The ISN the stream is anchored at (what a later SYN is compared with), or None."""
        start = self.bytes.start if self.bytes is not None else self.isn_next
        return None if start is None else (start - 1) & MASK

    def feed(self, pkt, to_server, limit, verify, found) -> bool:
        """True when the readable bytes changed: new contiguous bytes, or the SYN's data settled."""
        flags = pkt.tcp_flags
        if not to_server:
            if self.syn_data is None or flags & (SYN | ACK) != SYN | ACK:
                return False
            # The SYN/ACK says whether the server took the data in the SYN (TCP Fast Open
            # with a cookie) or only the SYN (the default): name the flow by the bytes the
            # server will read, not by the ones it dropped.
            self._settle(limit, ((pkt.ack - self.isn_next) & MASK) >= len(self.syn_data))
            return True
        # once the client is known to send real checksums, only segments with data need one
        if (verify and (pkt.payload or not self.checksums_real)
                and not self._checksum_ok(pkt, found) and pkt.payload):
            return False                         # the receiver discards it: it names nothing
        if self.bytes is None:
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
        seq, payload = pkt.seq, b"" if flags & SYN else pkt.payload   # a SYN's data: see above
        if pkt.urg_ptr and payload or self.oob:
            seq, payload = self._out_of_band(seq, payload, pkt.urg_ptr if flags & URG else 0)
        return self.bytes.add(seq, payload, bool(flags & SYN))

    def _checksum_ok(self, pkt, found):
        """Would the server accept this client segment? Captures taken on the client carry
        unfinished (offloaded) checksums on every segment, so a bad checksum only counts
        once the client has sent a good one: then a bad segment is a decoy the server drops."""
        ok = transport_ok(pkt)
        if ok:
            self.checksums_real = True
            return True
        if ok is None or not self.checksums_real:
            return True
        found.append("tcp.invalid_checksum")
        return False

    def _begin(self, limit):
        """The byte buffer, anchored at ISN+1 when the SYN was seen."""
        st = self.bytes = StreamStart(limit)
        if self.isn_next is not None:
            st.add((self.isn_next - 1) & MASK, b"", True)
        return st

    def _settle(self, limit, accepted):
        """Turn the SYN's tentative data into stream bytes (the server took it) or drop it."""
        st = self._begin(limit)
        if accepted:
            st.add(self.isn_next, self.syn_data)
        self.syn_data = None

    def _out_of_band(self, seq, payload, urg_ptr):
        """The segment as the receiver's stream has it: a Linux/BSD receiver (no SO_OOBINLINE)
        takes the byte before the urgent pointer out of the stream, so "Host: evXil" reads
        "Host: evil". Bytes taken out earlier shift the sequence numbers that follow."""
        pos = (seq + urg_ptr - 1) & MASK
        # A pointer past this segment names a byte still to come (Linux: TCP_URG_NOTYET);
        # it leaves the stream when it arrives.
        if urg_ptr > 0 and pos not in (self.oob or ()) and len(self.oob or ()) < MAX_OOB:
            self.oob = (self.oob or ()) + (pos,)       # once, whatever the retransmissions
        oob = self.oob or ()
        inside = sorted(((pos - seq) & MASK) for pos in oob if ((pos - seq) & MASK) < len(payload))
        before = sum(1 for pos in oob if pos != seq and ((seq - pos) & MASK) < HALF)
        if inside:
            data = bytearray(payload)
            for i in reversed(inside):
                del data[i]
            payload = bytes(data)
        return (seq - before) & MASK, payload


class StreamStart:
    """The first `limit` bytes of one direction of a TCP connection, in sequence order."""

    __slots__ = ("limit", "start", "_buf", "_pending", "overlap_conflicts", "dropped")

    def __init__(self, limit: int = 8192):
        self.limit = limit
        self.start = None          # absolute seq of the first stream byte; None until known
        self._buf = bytearray()
        self._pending = []         # sorted, non-overlapping [offset, bytes], all beyond _buf
        self.overlap_conflicts = 0
        self.dropped = 0           # out-of-order pieces not held because of MAX_PENDING

    @property
    def data(self) -> bytes:
        return bytes(self._buf)

    @property
    def complete(self) -> bool:
        return len(self._buf) >= self.limit

    @property
    def gaps(self) -> bool:
        """True when bytes beyond a hole are waiting, or were dropped for lack of room."""
        return bool(self._pending) or self.dropped > 0

    def add(self, seq: int, payload: bytes, syn: bool = False) -> bool:
        """Take one segment. True when new contiguous bytes became available."""
        if syn:
            seq = (seq + 1) & MASK               # SYN occupies one sequence number
            if self.start is None or (not self._buf and not self._pending):
                self.start = seq
        elif self.start is None:
            self.start = seq & MASK              # midstream pickup
        if not payload:
            return False
        have = len(self._buf)
        if have >= self.limit:
            return False
        rel = ((seq - self.start + HALF) & MASK) - HALF
        # Fast path: the next in-order segment with nothing held out of order.
        if rel == have and not self._pending:
            self._buf += payload[:self.limit - have]
            return True
        end = rel + len(payload)
        if end <= have or rel >= self.limit:
            if rel < have and end > 0:
                self._compare_buf(rel, payload)
            return False                          # old data, before the start, or past the limit
        if rel < have:
            self._compare_buf(rel, payload)       # retransmitted/overlapping front part
            cut = have - rel
            payload = payload[cut:]
            rel = have
        if end > self.limit:
            payload = payload[:self.limit - rel]
        self._hold(rel, bytes(payload))
        return self._drain(have)

    def _compare_buf(self, rel, payload):
        lo = max(rel, 0)
        hi = min(rel + len(payload), len(self._buf))
        if lo < hi and self._buf[lo:hi] != payload[lo - rel:hi - rel]:
            self.overlap_conflicts += 1

    def _hold(self, rel, payload):
        """Insert the parts of payload no held piece covers; compare the covered parts."""
        pieces = []
        conflict = False
        pos = rel
        end = rel + len(payload)
        for off, held in self._pending:
            held_end = off + len(held)
            if held_end <= pos:
                continue
            if off >= end:
                break
            if off > pos:
                pieces.append((pos, payload[pos - rel:off - rel]))
            lo, hi = max(off, pos), min(held_end, end)
            if held[lo - off:hi - off] != payload[lo - rel:hi - rel]:
                conflict = True
            pos = hi
        if pos < end:
            pieces.append((pos, payload[pos - rel:]))
        if conflict:
            self.overlap_conflicts += 1
        for piece in pieces:
            if len(self._pending) >= MAX_PENDING and piece[0] != len(self._buf):
                self.dropped += 1
                continue
            self._pending.append(list(piece))
        self._pending.sort(key=lambda p: p[0])

    def _drain(self, had):
        buf = self._buf
        pending = self._pending
        while pending and pending[0][0] == len(buf):
            buf += pending.pop(0)[1]
        return len(buf) > had
