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
    does not decide. The packet clock, so replay behaves as live.

    Bounded, but never by forgetting a count whose window is still open: a flood of new
    sources evicting the oldest count would restart an attacker's own (its next SYN counts
    from 1 again, and a rate-limiting drop rule never fires). Windows are kept oldest first
    per `seconds` value, so the front of each queue is the first to end; a full table frees
    an ended window, and when none has ended the new value cannot be counted: `exceeded`
    returns None (the detector reads it against the attacker) and `untracked` counts it."""

    def __init__(self, max_trackers=65536):
        self.max_trackers = max_trackers
        self.size = 0
        self.queues = {}                # seconds -> OrderedDict((rule id, tracked) -> [start, count])
        self.untracked = 0

    def exceeded(self, rule, pkt, flow, now):
        """True/False: the rule's count for this packet's value is above/within its count;
        None: the value cannot be counted (the table is full of open windows)."""
        t = rule.detection_filter
        tracked = {"by_src": pkt.src, "by_dst": pkt.dst,
                   "by_flow": flow.id if flow is not None else 0, "by_rule": None}[t.track]
        key = (rule.id, tracked)
        queue = self.queues.get(t.seconds)
        if queue is None:
            queue = self.queues[t.seconds] = OrderedDict()
        entry = queue.get(key)
        if entry is None or now - entry[0] >= t.seconds:
            if entry is None:
                if self.size >= self.max_trackers and not self._free(now):
                    self.untracked += 1
                    return None
                self.size += 1
            entry = queue[key] = [now, 0]
            queue.move_to_end(key)      # a restarted window is the youngest
        entry[1] += 1
        return entry[1] > t.count

    def _free(self, now):
        """Drop ended windows at the front of the queues; was one dropped?"""
        freed = False
        for seconds, queue in self.queues.items():
            while queue:
                key, entry = next(iter(queue.items()))
                if now - entry[0] < seconds:
                    break
                del queue[key]
                self.size -= 1
                freed = True
        return freed
