"""How many events a flood may cost: anomaly events per kind and source, and flow events
of unconfirmed flows. What is not written is counted (stats event, `appliance` section).

Suricata leaves decode/stream anomaly events off by default because one crafted packet
per event makes EVE the cheapest thing to flood (a 44-byte SYN with a bad MSS option cost
251 bytes of EVE). Here they stay on, bounded:
- one event per anomaly kind per packet (17 IPv6 extension headers gave 15);
- one event per (kind, source address) per ANOMALY_WINDOW seconds;
- at most ANOMALY_PER_SECOND events per kind per second, whatever the sources (a spoofed
  flood has a new source per packet).
Unconfirmed flows (seen one way only, or TCP whose client never completed the handshake:
a spoofed SYN flood's, even when the server answers each SYN with SYN/ACKs; a scan's) that
end by timeout or eviction without an alert: at most UNCONFIRMED_FLOWS_PER_SECOND flow
events per second; the rest counted.
All times are packet time, so a replay writes the same events every run.
"""
from collections import OrderedDict

from ..flow import confirmed

ANOMALY_WINDOW = 60.0
ANOMALY_PER_SECOND = 10
ANOMALY_SOURCES = 4096              # (kind, source) pairs remembered, least recent forgotten first
UNCONFIRMED_FLOWS_PER_SECOND = 10


class EventLimits:
    def __init__(self):
        self.anomalies = {}         # kind -> anomalies seen (written or not)
        self.anomalies_suppressed = 0
        self.flows_unlogged = {}    # end reason -> unconfirmed flows counted, not written
        self._last = OrderedDict()  # (kind, source) -> time of its last event
        self._second = {}           # kind -> [second, events written in it]
        self._flow_second = [None, 0]

    def anomaly(self, kind, source, now):
        """Count one anomaly; True when its event is to be written."""
        self.anomalies[kind] = self.anomalies.get(kind, 0) + 1
        key = (kind, source)
        last = self._last.get(key)
        if last is not None and 0 <= now - last < ANOMALY_WINDOW:
            self.anomalies_suppressed += 1
            return False
        sec = int(now)
        slot = self._second.get(kind)
        if slot is None or slot[0] != sec:
            slot = self._second[kind] = [sec, 0]
        if slot[1] >= ANOMALY_PER_SECOND:
            self.anomalies_suppressed += 1
            return False
        slot[1] += 1
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > ANOMALY_SOURCES:
            self._last.popitem(last=False)
        return True

    def flow(self, flow, now):
        """True when the ended flow's event is to be written."""
        if flow.alerted or flow.reason not in ("timeout", "evicted") or confirmed(flow):
            return True
        sec = int(now)
        slot = self._flow_second
        if slot[0] != sec:
            slot[0], slot[1] = sec, 0
        if slot[1] < UNCONFIRMED_FLOWS_PER_SECOND:
            slot[1] += 1
            return True
        self.flows_unlogged[flow.reason] = self.flows_unlogged.get(flow.reason, 0) + 1
        return False
