"""The pcap log: the packets behind EVE events, as pcapng, each with its flow_id in a comment.

mode `alerts`: the packets of flows that alerted or were dropped (rejected too), and packets
  without a flow whose verdict was drop or that alerted. A flow's packets before the one that
  alerted are held in a ring of its last `ring_packets` packets (default 16), so the file
  shows what led to the alert; all rings together hold at most `ring_bytes` (default 4 MiB
  per worker: the least recently active flow's ring goes first), and a ring goes when its
  flow ends or is decided without an alert (a passed, final flow is never inspected again),
  or when no rule of the loaded set can still write it (Detector.may_log: e.g. a TLS flow
  under rules whose only alert needs an HTTP Host; asked again after a reload).
  The bytes counted are what the rings cost, not the packets' bytes alone: each packet and
  each ring is charged its objects' measured size (a flow's lone 40-byte SYN counts 390 B).
mode `all`: every packet the Inspector sees.

Live, a flow offloaded to the kernel (decided for good) is not seen any more: an alerted
flow's packets after its verdict are in the file only while it stays inspected; a dropped
flow's later packets are dropped by the kernel unseen. Packets are the L3 bytes, so a
replayed capture's link layer and VLAN tags are not in the log; an IP fragment is logged
as the datagram the Inspector reassembled.
"""
from collections import OrderedDict
from dataclasses import dataclass

from .pcapng import PcapngWriter

MODES = ("alerts", "all")
# Bytes charged besides the packet's (tracemalloc, CPython 3.11; tests/replay/test_pcap_log_memory.py):
ENTRY_BYTES = 100     # a held packet: its tuple, its bytes object, its time, its slot in the ring
MUTE_MAX = 1 << 16     # flows remembered as not to be held (a 2.6 MB dict when full; cleared then)
RING_BYTES = 250      # a ring: its list and its entry in `rings` (an OrderedDict: with its slack)


@dataclass(frozen=True)
class PcapLogConfig:
    dir: str
    mode: str = "alerts"
    max_bytes: int = 100 << 20        # a file is rotated past this size ...
    keep: int = 5                     # ... keeping this many old ones (NAME.1 .. NAME.<keep>)
    snaplen: int = 65535              # bytes of each packet written
    ring_packets: int = 16            # mode alerts: packets held per undecided flow
    ring_bytes: int = 4 << 20         # mode alerts: bytes held by all rings together


def _cost(ring):
    """What a ring is counted for in PcapLog.held."""
    return RING_BYTES + sum(len(d) for _, d, _ in ring) + ENTRY_BYTES * len(ring)


class PcapLog:
    def __init__(self, cfg, name):
        self.cfg = cfg
        self.all = cfg.mode == "all"
        self.snaplen, self.ring_packets, self.ring_bytes = cfg.snaplen, cfg.ring_packets, cfg.ring_bytes
        self.writer = PcapngWriter(cfg.dir, name, cfg.max_bytes, cfg.keep, cfg.snaplen)
        self.rings = OrderedDict()    # flow (by identity) -> [(ts, bytes, iface), ...], least recently active first
        self.held = 0                 # what all rings cost: packet bytes, ENTRY_BYTES each, RING_BYTES a ring
        self.rings_dropped = 0        # rings let go for room (their flow's earlier packets not in the file)
        # flows no rule can write any more (Detector.may_log False), by the rule set's
        # generation: a reload asks again from its first packet on
        self.mute = {}

    def packet(self, pkt, verdict, detector=None):
        """After the Inspector's verdict on `pkt`: write it, hold it, or let it go.
        `detector`: the Inspector's, asked whether a flow not yet decided for good can still
        be written (Detector.may_log); None: every such flow is held."""
        data = pkt.l3
        if not data:
            return                                    # no IP packet (ARP, unsupported encapsulation)
        flow = verdict.flow
        if self.all:
            self._write(pkt.ts, data, flow, pkt.in_iface)
        elif flow is None:
            if verdict.alerts or verdict.action != "pass":
                self._write(pkt.ts, data, None, pkt.in_iface)
        elif flow.alerted or flow.verdict in ("drop", "reject"):
            ring = self.rings.pop(flow, None)
            if ring is not None:
                self.held -= _cost(ring)
                for ts, d, iface in ring:
                    self._write(ts, d, flow, iface)
            self._write(pkt.ts, data, flow, pkt.in_iface)
        elif flow.final:                              # passed for good: it will not alert
            if self.rings:                            # (its ring goes on its first final packet:
                ring = self.rings.pop(flow, None)     # the Inspector skips the log for the rest)
                if ring is not None:
                    self.held -= _cost(ring)
        else:                                         # held, if the flow may still be written
            if detector is not None:
                mute = self.mute
                if mute.get(flow) == detector.generation:
                    return                            # no rule of this set can write it
                if not detector.may_log(flow):
                    self.forget(flow)                 # its ring could never be written
                    if len(mute) >= MUTE_MAX:
                        mute.clear()                  # (a cache: asked again)
                    mute[flow] = detector.generation
                    return
            if len(data) > self.snaplen:
                data = data[:self.snaplen]
            rings = self.rings
            ring = rings.get(flow)
            if ring is None:
                ring = rings[flow] = []
                self.held += RING_BYTES
            else:
                rings.move_to_end(flow)
                if len(ring) >= self.ring_packets:
                    self.held -= len(ring.pop(0)[1]) + ENTRY_BYTES
            ring.append((pkt.ts, data, pkt.in_iface))
            self.held += len(data) + ENTRY_BYTES
            if self.held > self.ring_bytes:
                self._make_room()

    def _make_room(self):
        """All rings past ring_bytes: the least recently active flows' rings go."""
        while self.held > self.ring_bytes and self.rings:
            _, old = self.rings.popitem(last=False)
            self.held -= _cost(old)
            self.rings_dropped += 1

    def forget(self, flow):
        """The flow ended (or was passed for good): its held packets go."""
        if self.mute:
            self.mute.pop(flow, None)
        if self.rings:
            ring = self.rings.pop(flow, None)
            if ring is not None:
                self.held -= _cost(ring)

    def _write(self, ts, data, flow, iface):
        self.writer.write(ts, data, f"flow_id={flow.id}" if flow is not None else "", iface)

    def tick(self):
        """The worker's clock (about once a second): packets waiting in the writer go to the file."""
        self.writer.tick()

    def counters(self):
        w = self.writer
        return {"written": w.packets, "lost": w.lost, "rotations": w.rotations,
                "rings_dropped": self.rings_dropped}

    def close(self):
        self.rings.clear()
        self.held = 0
        self.writer.close()
