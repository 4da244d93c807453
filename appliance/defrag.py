"""IP fragment reassembly: fragments in, whole datagrams out (decoded afresh).

Replay must deliver what a Linux host behind the appliance would have received, so this
follows the kernel's queue (net/ipv4/inet_fragment.c `inet_frag_queue_insert`, used by
IPv4 since 4.19 and by IPv6, where RFC 5722 asks for it):
- a fragment that lies wholly inside bytes already held (a run: fragments that arrived
  in order, end to end) is a duplicate: ignored, the first copy stays (if its bytes
  differ, "ipv4.frag_overlap"/"ipv6.frag_overlap" is reported on the datagram);
- any other overlap, or a "last" fragment that contradicts the known end, discards the
  whole datagram: the overlap anomaly goes on the fragment that caused it and nothing is
  reassembled (no flow, no name, no verdict from bytes no host received);
- IPv4 fragments with more-fragments set are cut to a multiple of 8 bytes (as the kernel
  does); IPv6 ones that are not are dropped (RFC 8200: a parameter problem) with
  "ipv6.frag_invalid_length".

Runs are kept sorted by offset (bisect) and the datagram completes when the bytes held
equal its length (no overlap is ever held), so a datagram of n fragments costs
O(n log n) comparisons; in-order arrival, the common case, appends.

Memory is bounded by bytes held and datagrams held, after every fragment and every carry;
the oldest datagram goes first (the one a carry just grew, last). Bytes
held count what holding costs, not the payload alone (the kernel's truesize): a datagram, a
run and a carried item each add their objects' measured size (tests/unit/test_defrag_memory.py),
so 8-byte fragments cannot hold 14x the bound.
"""

import bisect
import struct
from collections import OrderedDict

from .decode import decode_l3, ipv6_fragment_header
from .packet import Packet

MAX_IP_LENGTH = 65535

_u16 = struct.Struct("!H")

# Bytes charged for objects besides the payload (tracemalloc, CPython 3.11):
DATAGRAM_BYTES = 560    # a _Datagram, its lists, its key and queue entry (with its slack), its header object
RUN_BYTES = 80          # a run: its bytearray, its slot in `starts` and `runs`, its offset int
CARRIED_BYTES = 48      # a carried item: its bytes object and list slot


class _Datagram:
    __slots__ = ("first_seen", "starts", "runs", "end", "last_in", "held", "header", "next_header",
                 "next_header_at", "conflict", "carried", "carried_bytes")

    def __init__(self, first_seen):
        self.first_seen = first_seen
        self.starts = []        # offset of each run, sorted (bisect)
        self.runs = []          # the runs' bytes (bytearray: a run grows at its end), same order
        self.end = 0            # payload length so far; final once the last fragment came (last_in)
        self.last_in = False
        self.held = 0           # payload bytes held
        self.header = None      # from the offset-0 fragment: IPv4 header / IPv6 unfragmentable part
        self.next_header = -1   # IPv6: the fragment header's next header, from the offset-0 fragment
        self.next_header_at = 6  # IPv6: index of the byte in `header` that names the fragment header
        self.conflict = False   # a duplicate whose bytes differ from the copy held
        self.carried = []       # what a source keeps with each fragment placed (GWLB: the datagram to return)
        self.carried_bytes = 0   # their bytes, with CARRIED_BYTES each


# what _insert found
_ADDED, _DUPLICATE, _OVERLAP = 0, 1, 2


def _ipv4_checksum(header):
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


class Defragmenter:
    def __init__(self, max_bytes: int = 16 << 20, timeout: float = 30.0, max_datagrams: int = 4096):
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.max_datagrams = max_datagrams
        self.held_bytes = 0
        self._datagrams = OrderedDict()  # key -> _Datagram, oldest first
        # the datagram the last fragment fed was placed in (held, or completed by it); None for
        # a duplicate, a discarded datagram or a packet that is not reassembled: a source that
        # must return fragments (GWLB) carries only these, and only until the verdict is known
        self.placed = None
        self.stats = {"fragments": 0, "reassembled": 0, "overlaps": 0, "timeouts": 0,
                      "evicted": 0, "too_large": 0}

    @property
    def held_datagrams(self) -> int:
        # A property, not __len__: an empty Defragmenter must stay truthy (`defrag or Defragmenter()`).
        return len(self._datagrams)

    def feed(self, pkt: Packet) -> Packet | None:
        """Return pkt if it is not a fragment (or too broken to place), the datagram once
        whole, else None: held, or discarded (then pkt.anomalies says why)."""
        self.placed = None
        if pkt.frag is None:
            return pkt
        self.stats["fragments"] += 1
        ident, offset, more = pkt.frag
        # the tunnel (GWLB endpoint) too, as in the flow key: behind two endpoints the same
        # addresses are two hosts, and one's fragment never completes the other's datagram
        if pkt.ip_version == 4:
            piece = self._ipv4_piece(pkt.l3)
            key = (4, pkt.src, pkt.dst, pkt.proto, ident, pkt.tunnel)
        else:
            piece = self._ipv6_piece(pkt.l3)
            key = (6, pkt.src, pkt.dst, ident, pkt.tunnel)
        if piece is None:       # header does not hold together: nothing to reassemble with
            return pkt
        header, next_header, next_header_at, data = piece
        self.expire(pkt.ts)
        v = pkt.ip_version
        if offset + len(data) > MAX_IP_LENGTH - (len(header) if v == 4 else len(header) - 40):
            if key in self._datagrams:
                self._drop(key)
            self.stats["too_large"] += 1
            pkt.anomalies.append(f"ipv{v}.frag_pkt_too_large")
            return pkt
        if more and len(data) % 8:
            if v == 6:          # RFC 8200: parameter problem; Linux drops the fragment, keeps the queue
                pkt.anomalies.append("ipv6.frag_invalid_length")
                return None
            data = data[:len(data) & ~7]   # Linux (ip_frag_queue) cuts it to the 8-byte unit
        dgram = self._datagrams.get(key)
        if dgram is None:
            dgram = self._datagrams[key] = _Datagram(pkt.ts)
            self.held_bytes += DATAGRAM_BYTES
        end = offset + len(data)
        # The kernel's checks, in its order (ip_frag_queue / ip6_frag_queue): a last fragment
        # must not end before bytes held or move the known end; no fragment may reach past it.
        if not more:
            if end < dgram.end or (dgram.last_in and end != dgram.end):
                return self._discard(key, pkt, "frag_overlap")
            dgram.last_in, dgram.end = True, end
        elif end > dgram.end:
            if dgram.last_in:
                return self._discard(key, pkt, "frag_overlap")
            dgram.end = end
        if end == offset:
            return self._discard(key, pkt, "frag_invalid_length")
        found = self._insert(dgram, offset, data)
        if found == _OVERLAP:
            return self._discard(key, pkt, "frag_overlap")
        if found == _ADDED:
            self.placed = dgram
        if found == _ADDED and offset == 0:
            dgram.header, dgram.next_header, dgram.next_header_at = header, next_header, next_header_at
            self.held_bytes += len(header)
        if dgram.last_in and dgram.header is not None and dgram.held == dgram.end:
            return self._complete(key, dgram, pkt)
        self._bound()
        return None

    def carry(self, dgram, data) -> bool:
        """Keep `data` with a held datagram (counted in the bytes bound, dropped with it).
        The bound holds after it too: the oldest other datagrams go first, and `dgram` only
        when it alone is past the bound (what it carries is returned whole or not at all, so
        it cannot be kept without this). Returns whether `dgram` is still held."""
        cost = len(data) + CARRIED_BYTES
        dgram.carried.append(data)
        dgram.carried_bytes += cost
        self.held_bytes += cost
        return self._bound(keep=dgram)

    def _discard(self, key, pkt, anomaly):
        """The kernel's inet_frag_kill: the datagram and this fragment are gone; a later
        fragment with the same id starts a new one."""
        self._drop(key)
        self.stats["overlaps"] += 1
        pkt.anomalies.append(f"ipv{pkt.ip_version}.{anomaly}")
        return None

    def _ipv4_piece(self, l3):
        if len(l3) < 20:
            return None
        hlen = (l3[0] & 15) << 2
        total = _u16.unpack_from(l3, 2)[0]
        if hlen < 20 or total < hlen or len(l3) < hlen:
            return None
        return l3[:hlen], -1, -1, l3[hlen:total]

    def _ipv6_piece(self, l3):
        where = ipv6_fragment_header(l3)
        if where is None:
            return None
        fh, at = where
        end = 40 + _u16.unpack_from(l3, 4)[0]
        if end < fh + 8:
            return None
        return l3[:fh], l3[fh], at, l3[fh + 8:end]

    def _insert(self, dgram, start, data):
        """Place [start, start+len) among the runs, as inet_frag_queue_insert does."""
        stop = start + len(data)
        starts, runs = dgram.starts, dgram.runs
        i = bisect.bisect_right(starts, start) - 1          # the run at or before start
        if i >= 0:
            run_start = starts[i]
            run_stop = run_start + len(runs[i])
            if start < run_stop:
                if stop > run_stop:
                    return _OVERLAP
                if memoryview(runs[i])[start - run_start:stop - run_start] != data:
                    dgram.conflict = True
                return _DUPLICATE
        if i + 1 < len(starts) and starts[i + 1] < stop:
            return _OVERLAP
        if i >= 0 and i == len(runs) - 1 and start == run_stop:
            runs[i] += data                    # in order, end to end: the tail run grows
        else:
            starts.insert(i + 1, start)
            runs.insert(i + 1, bytearray(data))
            self.held_bytes += RUN_BYTES
        dgram.held += len(data)
        self.held_bytes += len(data)
        return _ADDED

    def _complete(self, key, dgram, pkt):
        end = dgram.end
        body = b"".join(dgram.runs)
        self._drop(key)
        header = dgram.header
        if pkt.ip_version == 4:
            total = len(header) + end
            fixed = bytearray(header)
            fixed[2:4] = _u16.pack(total)
            fixed[6:8] = _u16.pack(_u16.unpack_from(header, 6)[0] & 0x4000)  # keep DF only
            fixed[10:12] = b"\0\0"
            fixed[10:12] = _u16.pack(_ipv4_checksum(bytes(fixed)))
        else:
            fixed = bytearray(header)
            # The byte that named the fragment header now names what it carried.
            fixed[dgram.next_header_at] = dgram.next_header
            fixed[4:6] = _u16.pack(len(header) - 40 + end)
        out = decode_l3(bytes(fixed) + body, pkt.ts)
        out.vlan = pkt.vlan
        out.pcap_cnt = pkt.pcap_cnt
        out.pcap_file = pkt.pcap_file
        out.in_iface = pkt.in_iface
        out.tunnel = pkt.tunnel
        if out.quote is not None:     # an ICMP error relates to a flow of the same endpoint (gwlb.py)
            out.quote.tunnel = pkt.tunnel
        if dgram.conflict:      # delivered as the kernel delivers it (first copy), but say so
            out.anomalies.append(f"ipv{pkt.ip_version}.frag_overlap")
            self.stats["overlaps"] += 1
        self.stats["reassembled"] += 1
        return out

    def _drop(self, key):
        dgram = self._datagrams.pop(key)
        self.held_bytes -= (DATAGRAM_BYTES + RUN_BYTES * len(dgram.runs) + dgram.held
                            + (len(dgram.header) if dgram.header else 0) + dgram.carried_bytes)

    def _bound(self, keep=None) -> bool:
        """Evict the oldest datagrams while a bound is passed; `keep` (just carried with) only
        when it is all that is left. Returns whether `keep` is still held."""
        datagrams = self._datagrams
        kept = True
        while datagrams and (self.held_bytes > self.max_bytes or len(datagrams) > self.max_datagrams):
            held = iter(datagrams.items())
            key, oldest = next(held)
            if oldest is keep and len(datagrams) > 1:
                key, oldest = next(held)
            if oldest is self.placed:
                self.placed = None             # a source must not carry with a datagram no longer held
            kept = kept and oldest is not keep
            self._drop(key)
            self.stats["evicted"] += 1
        return kept

    def expire(self, now: float) -> int:
        """Drop datagrams first seen more than `timeout` before `now`; return how many."""
        dropped = 0
        limit = now - self.timeout
        while self._datagrams:
            key, dgram = next(iter(self._datagrams.items()))
            if dgram.first_seen >= limit:
                break
            self._drop(key)
            dropped += 1
        self.stats["timeouts"] += dropped
        return dropped
