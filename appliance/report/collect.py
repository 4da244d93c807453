"""What a replay report shows, aggregated from EVE events as the run writes them.

Independent of the hot path: the report sees events (the EVE file's own lines, as dicts),
never packets, and only when --report is given. Everything it keeps is bounded, so a
capture of a million flows gives a report of the same size as one of a thousand:
- verdicts over time: at most MAX_BUCKETS time buckets (the width doubles as needed);
- top talkers / rules: BoundedCounter keeps at most 2*KEEP keys (TOP shown);
- alerts listed: the first MAX_ALERTS (all are counted), anomaly samples: MAX_SAMPLES.
"""
from datetime import datetime

MAX_BUCKETS = 120
TOP = 20
KEEP = 1000
MAX_ALERTS = 200
MAX_SAMPLES = 50
ACTIONS = ("pass", "drop", "reject")


class BoundedCounter:
    """Counts per key in at most 2*keep keys: past that, the smallest are dropped down to
    `keep` (heavy hitters survive; `approximate` says counts below the top may be low)."""

    def __init__(self, keep=KEEP):
        self.keep = keep
        self.counts = {}
        self.approximate = False

    def add(self, key, n=1):
        c = self.counts
        c[key] = c.get(key, 0) + n
        if len(c) > 2 * self.keep:
            kept = sorted(c.items(), key=lambda kv: kv[1], reverse=True)[:self.keep]
            self.counts = dict(kept)
            self.approximate = True

    def top(self, n=TOP):
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:n]


class TimeBuckets:
    """Per time bucket, a list of counters; buckets are absolute (floor(ts / width)) so
    merging two into one when there are too many is exact."""

    def __init__(self, slots, max_buckets=MAX_BUCKETS, width=1 / 1024):
        self.slots = slots
        self.max = max_buckets
        self.width = width
        self.buckets = {}

    def add(self, ts, slot, n=1):
        i = int(ts // self.width)
        b = self.buckets.get(i)
        if b is None:
            b = self.buckets[i] = [0] * self.slots
            while len(self.buckets) > 1 and max(self.buckets) - min(self.buckets) >= self.max:
                self._coarser()
                b = None
        if b is None:
            b = self.buckets[int(ts // self.width)]
        b[slot] += n

    def _coarser(self):
        self.width *= 2
        merged = {}
        for i, counts in self.buckets.items():
            m = merged.setdefault(i // 2, [0] * self.slots)
            for k, v in enumerate(counts):
                m[k] += v
        self.buckets = merged

    def series(self):
        """[(start_ts, counts)] from the first bucket to the last, empty ones included."""
        if not self.buckets:
            return []
        lo, hi = min(self.buckets), max(self.buckets)
        return [(i * self.width, self.buckets.get(i, [0] * self.slots)) for i in range(lo, hi + 1)]



_minutes = {}


def parse_ts(text):
    """EVE timestamp (2009-11-24T21:27:09.534255+0000, always UTC) -> epoch seconds, None if
    it is not one. The minute is parsed once (cached, bounded), seconds by slicing: the
    report reads every event, this is its main cost."""
    try:
        base = _minutes.get(text[:16])
        if base is None:
            if len(_minutes) > 4096:
                _minutes.clear()
            base = _minutes[text[:16]] = datetime.fromisoformat(text[:16] + "+00:00").timestamp()
        if text[26:] != "+0000" or text[16] != ":" or text[19] != ".":
            return datetime.fromisoformat(text).timestamp()
        return base + int(text[17:19]) + int(text[20:26]) / 1e6
    except (TypeError, ValueError, IndexError):
        return None


def alert_name(ev):
    """The name an alert's transaction carried: TLS SNI, HTTP host, DNS query."""
    tls = ev.get("tls")
    if isinstance(tls, dict) and tls.get("sni"):
        return "sni", tls["sni"]
    http = ev.get("http")
    if isinstance(http, dict) and http.get("hostname"):
        return "host", http["hostname"]
    dns = ev.get("dns")
    if isinstance(dns, dict):
        qs = dns.get("queries") or []
        if qs and isinstance(qs[0], dict) and qs[0].get("rrname"):
            return "query", qs[0]["rrname"]
    return None, None


class Summary:
    def __init__(self):
        self.events = 0
        self.types = BoundedCounter(64)
        self.stats = None                       # the last stats event's "stats"
        self.flows = dict.fromkeys(ACTIONS, 0)
        self.flows_by_app = BoundedCounter(64)
        self.verdicts_time = TimeBuckets(len(ACTIONS) + 1)   # flows started, by action; + alerts
        self.talkers = BoundedCounter()         # src_ip -> bytes (flow events)
        self.talker_flows = BoundedCounter()
        self.servers = BoundedCounter()         # dest_ip:port -> flows
        self.rules = BoundedCounter()           # (sid, signature) -> alerts
        self.rule_action = {}                   # sid -> last alert action (bounded by rules' keys)
        self.deciders = BoundedCounter()        # verdict rule id -> flows it decided
        self.alerts = []                        # first MAX_ALERTS rows
        self.alerts_total = 0
        self.anomalies = BoundedCounter(256)    # event name -> events
        self.anomaly_samples = []
        self.first_ts = self.last_ts = None

    def add(self, ev):
        self.events += 1
        et = ev.get("event_type")
        self.types.add(et)
        if et == "stats":
            self.stats = ev.get("stats")
            return
        ts = parse_ts(ev.get("timestamp"))
        if ts is not None:
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        if et == "flow":
            self._flow(ev, ts)
        elif et == "alert":
            self._alert(ev, ts)
        elif et == "anomaly":
            a = ev.get("anomaly") or {}
            self.anomalies.add(a.get("event", "?"))
            if len(self.anomaly_samples) < MAX_SAMPLES:
                self.anomaly_samples.append(_row(ev, event=a.get("event", "?"), layer=a.get("layer", "")))

    def _flow(self, ev, ts):
        fl = ev.get("flow") or {}
        action = fl.get("action", "pass")
        if action not in self.flows:
            action = "pass"
        self.flows[action] += 1
        self.flows_by_app.add(ev.get("app_proto", "-"))
        start = parse_ts(fl.get("start")) or ts
        if start is not None:
            self.verdicts_time.add(start, ACTIONS.index(action))
        nbytes = (fl.get("bytes_toserver") or 0) + (fl.get("bytes_toclient") or 0)
        self.talkers.add(ev.get("src_ip", "?"), nbytes)
        self.talker_flows.add(ev.get("src_ip", "?"))
        self.servers.add(f"{ev.get('dest_ip', '?')}:{ev.get('dest_port', '')}/{ev.get('proto', '')}")
        for fb in (ev.get("metadata") or {}).get("flowbits") or ():
            if isinstance(fb, str) and fb.startswith("verdict_rule:"):
                self.deciders.add((fb.split(":", 1)[1], action))

    def _alert(self, ev, ts):
        a = ev.get("alert") or {}
        sid = a.get("signature_id")
        self.alerts_total += 1
        self.rules.add((sid, a.get("signature", "")))
        if len(self.rule_action) < 4 * KEEP:
            self.rule_action[sid] = a.get("action", "")
        if ts is not None:
            self.verdicts_time.add(ts, len(ACTIONS))
        if len(self.alerts) < MAX_ALERTS:
            kind, name = alert_name(ev)
            self.alerts.append(_row(ev, sid=sid, signature=a.get("signature", ""), action=a.get("action", ""),
                                    name_kind=kind, name=name))


def _row(ev, **extra):
    row = {k: ev.get(k) for k in ("timestamp", "flow_id", "src_ip", "src_port", "dest_ip", "dest_port",
                                  "proto", "pcap_cnt", "pcap_filename")}
    row.update(extra)
    return row


class ReportSink:
    """Stands where the EveWriter stands (Inspector's `eve`): each event goes to the
    summary, then to the real writer (None: no EVE file)."""

    def __init__(self, eve):
        self.eve = eve
        self.summary = Summary()

    def write(self, event):
        try:
            self.summary.add(event)
        except Exception:            # a report bug must not cost the EVE file an event
            self.summary.errors = getattr(self.summary, "errors", 0) + 1
        if self.eve is not None:
            self.eve.write(event)

    # the stats event reports the EVE file's own counts
    count = property(lambda self: getattr(self.eve, "count", 0))
    lost = property(lambda self: getattr(self.eve, "lost", 0))
    rotations = property(lambda self: getattr(self.eve, "rotations", 0))

    def close(self):
        if self.eve is not None:
            self.eve.close()
