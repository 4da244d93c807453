"""IP fragment reassembly: fragments in, whole datagrams out (decoded afresh).

Overlap policy: first arrival wins (the BSD-style "first" policy): bytes already
held are never replaced, a later fragment only fills the gaps it covers, and any
overlap with differing or partial coverage puts "ipv4.frag_overlap" /
"ipv6.frag_overlap" on the reassembled packet. An exact duplicate (same offset,
same bytes) is a retransmission, not an overlap.

Memory is bounded by bytes held and datagrams held; the oldest datagram goes first.
"""

import struct
from collections import OrderedDict

from .decode import decode_l3, ipv6_fragment_header
from .packet import Packet

MAX_IP_LENGTH = 65535

_u16 = struct.Struct("!H")


class _Datagram:
    __slots__ = ("first_seen", "pieces", "end", "held", "header", "next_header",
                 "next_header_at", "overlap", "bad_length")

    def __init__(self, first_seen):
        self.first_seen = first_seen
        self.pieces = []        # disjoint (start, bytes), in arrival order
        self.end = -1           # payload length, known once the last fragment arrives
        self.held = 0           # payload bytes held
        self.header = None      # from the offset-0 fragment: IPv4 header / IPv6 unfragmentable part
        self.next_header = -1   # IPv6: the fragment header's next header, from the offset-0 fragment
        self.next_header_at = 6  # IPv6: index of the byte in `header` that names the fragment header
        self.overlap = False
        self.bad_length = False


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
        self.stats = {"fragments": 0, "reassembled": 0, "overlaps": 0, "timeouts": 0,
                      "evicted": 0, "too_large": 0}

    @property
    def held_datagrams(self) -> int:
        # A property, not __len__: an empty Defragmenter must stay truthy (`defrag or Defragmenter()`).
        return len(self._datagrams)

    def feed(self, pkt: Packet) -> Packet | None:
        """Return pkt if it is not a fragment, None while a datagram is incomplete, else the datagram."""
        if pkt.frag is None:
            return pkt
        self.stats["fragments"] += 1
        ident, offset, more = pkt.frag
        if pkt.ip_version == 4:
            piece = self._ipv4_piece(pkt.l3)
            key = (4, pkt.src, pkt.dst, pkt.proto, ident)
        else:
            piece = self._ipv6_piece(pkt.l3)
            key = (6, pkt.src, pkt.dst, ident)
        if piece is None:       # header does not hold together: nothing to reassemble with
            return pkt
        header, next_header, next_header_at, data = piece
        self.expire(pkt.ts)
        dgram = self._datagrams.get(key)
        if dgram is None:
            dgram = self._datagrams[key] = _Datagram(pkt.ts)
        if offset + len(data) > MAX_IP_LENGTH - (len(header) if pkt.ip_version == 4 else len(header) - 40):
            self._drop(key)
            self.stats["too_large"] += 1
            pkt.anomalies.append("ipv4.frag_pkt_too_large" if pkt.ip_version == 4 else "ipv6.frag_pkt_too_large")
            return pkt
        if offset == 0 and dgram.header is None:
            dgram.header, dgram.next_header, dgram.next_header_at = header, next_header, next_header_at
            self.held_bytes += len(header)
        if more and len(data) % 8:
            dgram.bad_length = True  # only the last fragment may end off an 8-byte boundary
        if not more:
            if dgram.end < 0:
                dgram.end = offset + len(data)
            elif dgram.end != offset + len(data):
                dgram.overlap = True  # a second, different "last" fragment
        self._insert(dgram, offset, data)
        out = self._complete(key, dgram, pkt)
        if out is None:
            self._bound()
        return out

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
        stop = start + len(data)
        if not data:
            return
        # Cut the new fragment down to the gaps it fills between pieces already held.
        gaps = [(start, stop)]
        for s, held in dgram.pieces:
            e = s + len(held)
            if e <= start or s >= stop:
                continue
            if s == start and held == data:
                return          # exact duplicate
            dgram.overlap = True
            nxt = []
            for gs, ge in gaps:
                if e <= gs or s >= ge:
                    nxt.append((gs, ge))
                    continue
                if gs < s:
                    nxt.append((gs, s))
                if e < ge:
                    nxt.append((e, ge))
            gaps = nxt
        for gs, ge in gaps:
            dgram.pieces.append((gs, data[gs - start:ge - start]))
            dgram.held += ge - gs
            self.held_bytes += ge - gs

    def _complete(self, key, dgram, pkt):
        end = dgram.end
        if end < 0 or dgram.header is None or dgram.held < end:
            return None
        pieces = sorted(dgram.pieces)
        pos = 0
        for s, held in pieces:
            if s > pos:
                return None     # a hole: bytes past the end filled the count, not the gap
            pos = max(pos, s + len(held))
            if pos >= end:
                break
        if pos < end:
            return None
        body = b"".join(held for _, held in pieces)[:end]
        self._drop(key)
        header = dgram.header
        if pkt.ip_version == 4:
            total = len(header) + end
            fixed = bytearray(header)
            fixed[2:4] = _u16.pack(total)
            fixed[6:8] = _u16.pack(_u16.unpack_from(header, 6)[0] & 0x4000)  # keep DF only
            fixed[10:12] = b"\0\0"
            fixed[10:12] = _u16.pack(_ipv4_checksum(bytes(fixed)))
            overlap = "ipv4.frag_overlap"
        else:
            fixed = bytearray(header)
            # The byte that named the fragment header now names what it carried.
            fixed[dgram.next_header_at] = dgram.next_header
            fixed[4:6] = _u16.pack(len(header) - 40 + end)
            overlap = "ipv6.frag_overlap"
        out = decode_l3(bytes(fixed) + body, pkt.ts)
        out.vlan = pkt.vlan
        out.pcap_cnt = pkt.pcap_cnt
        out.pcap_file = pkt.pcap_file
        out.in_iface = pkt.in_iface
        if dgram.overlap:
            out.anomalies.append(overlap)
            self.stats["overlaps"] += 1
        if dgram.bad_length and pkt.ip_version == 6:
            out.anomalies.append("ipv6.frag_invalid_length")
        self.stats["reassembled"] += 1
        return out

    def _drop(self, key):
        dgram = self._datagrams.pop(key)
        self.held_bytes -= dgram.held + (len(dgram.header) if dgram.header else 0)

    def _bound(self):
        while self._datagrams and (self.held_bytes > self.max_bytes
                                   or len(self._datagrams) > self.max_datagrams):
            self._drop(next(iter(self._datagrams)))
            self.stats["evicted"] += 1

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
