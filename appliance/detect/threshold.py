"""Event thresholds: limit | threshold | both, tracked by src, dst, flow or rule.

Thresholds only gate the *events* a rule emits; they never change a verdict.
State is kept per (rule, tracked value) and uses the packet clock, so replay
behaves as live. The table is bounded; the oldest trackers go first.
"""
from collections import OrderedDict


class Thresholds:
    def __init__(self, max_trackers=65536):
        self.max_trackers = max_trackers
        self.trackers = OrderedDict()   # (rule id, tracked) -> [window_start, count]
        self.suppressed = 0

    def allow(self, rule, pkt, flow, now):
        t = rule.threshold
        if t is None:
            return True
        tracked = {"by_src": pkt.src, "by_dst": pkt.dst,
                   "by_flow": flow.id if flow is not None else 0, "by_rule": None}[t.track]
        key = (rule.id, tracked)
        entry = self.trackers.get(key)
        if entry is None or now - entry[0] >= t.seconds:
            entry = [now, 0]
            self.trackers[key] = entry
            if len(self.trackers) > self.max_trackers:
                self.trackers.popitem(last=False)
        entry[1] += 1
        n = entry[1]
        if t.type == "limit":
            ok = n <= t.count
        elif t.type == "threshold":
            ok = n % t.count == 0
        else:  # both: once per window, when the count is reached
            ok = n == t.count
        if not ok:
            self.suppressed += 1
        return ok


class DetectionFilters:
    """Suricata's detection_filter: a rule matches only once it has matched more than
    `count` times within `seconds` of the first counted match (then the window restarts),
    per tracked value. Unlike a threshold it gates the match itself: a filtered rule
    neither alerts nor changes flowbits/flowint, and a filtered pass/drop/reject rule
    does not decide. Bounded
    like Thresholds; the packet clock, so replay behaves as live."""

    def __init__(self, max_trackers=65536):
        self.max_trackers = max_trackers
        self.trackers = OrderedDict()   # (rule id, tracked) -> [window_start, count]

    def exceeded(self, rule, pkt, flow, now):
        t = rule.detection_filter
        tracked = {"by_src": pkt.src, "by_dst": pkt.dst,
                   "by_flow": flow.id if flow is not None else 0, "by_rule": None}[t.track]
        key = (rule.id, tracked)
        entry = self.trackers.get(key)
        if entry is None or now - entry[0] >= t.seconds:
            entry = [now, 0]
            self.trackers[key] = entry
            if len(self.trackers) > self.max_trackers:
                self.trackers.popitem(last=False)
        entry[1] += 1
        return entry[1] > t.count
