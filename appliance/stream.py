"""First-bytes reassembly of one direction of a TCP connection.

The app-layer parsers need the first few KB of a stream in order, no more.
StreamStart keeps exactly that: contiguous bytes from the start, plus a bounded
set of out-of-order pieces waiting for a hole to fill. The first copy of any
byte wins (what the receiver most likely kept); a later copy with different
bytes is counted in `overlap_conflicts`, a classic IDS-evasion signal.

Sequence numbers are 32-bit and wrap: every position is kept relative to the
start, computed modulo 2**32 and read as signed so "before the start" is
negative.
"""

MASK = 0xFFFFFFFF
HALF = 0x80000000
MAX_PENDING = 64       # out-of-order pieces held at once; tiny-segment floods stop here


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
