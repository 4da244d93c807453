"""Worker side of the control channel: one SOCK_SEQPACKET socket pair per worker.

Nothing is added per packet: the worker already keeps its counters; once a second, in its
tick, it sends one snapshot of them (a few hundred bytes, one non-blocking send: when the
supervisor is not reading, the snapshot is skipped, never waited for) and takes the
requests that came in since the last tick (`flows`: the flow table's top flows and talkers,
which only a CLI call asks for, so the table is walked only then). A table larger than
WALK_INLINE flows is walked by a thread beside the packet loop: a million flows take ~2 s of
Python, which on the loop would stall the queue past its 4,096 packets (fail-open passing
them uninspected); beside it, the loop gets the GIL back every switch interval (5 ms), the
list snapshot of the table apart (~20 ms at 300k flows, on the loop).
"""
import collections
import errno
import heapq
import itertools
import logging
import os
import pickle
import socket
import threading
import time

from ..flow import address_text

log = logging.getLogger("appliance")

TOP_DEFAULT = 20
FLOWS_MAX = 1000               # flows one reply may carry (the CLI's --top is capped to it)
WALK_INLINE = 5000             # flows walked on the packet loop (~10 ms here); more: by a thread
WALKS_MAX = 4                  # requests waiting for the walker (each holds a snapshot of the table)


def channel():
    """(supervisor end, worker end): message boundaries kept, both ways."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


class Reporter:
    def __init__(self, sock, queue, top=TOP_DEFAULT):
        sock.setblocking(False)
        self.sock = sock
        self.queue = queue
        self.top = top
        self.skipped = 0             # snapshots the supervisor did not take in time
        self.walks = collections.deque()   # FlowWalks for the walker thread, oldest first
        self.walker = None

    def tick(self, inspector, counters):
        """Once a second from the worker's loop: answer requests (a large table's by the
        walker thread), then send the snapshot of its Inspector and its own counters."""
        while True:
            try:
                msg = pickle.loads(self.sock.recv(4096))
            except (BlockingIOError, InterruptedError):
                break
            except (OSError, EOFError, pickle.UnpicklingError, ValueError):
                break
            if isinstance(msg, tuple) and len(msg) == 3 and msg[0] == "flows":
                flows = inspector.flows.flows
                if len(flows) <= WALK_INLINE:
                    self._answer(FlowWalk(msg[1], msg[2], flows.values()))
                elif len(self.walks) < WALKS_MAX:    # else unanswered: the supervisor's wait ends
                    self.walks.append(FlowWalk(msg[1], msg[2], flows.values()))
        if self.walks and (self.walker is None or not self.walker.is_alive()):
            self.walker = threading.Thread(target=self._walk_all, name=f"flows-q{self.queue}", daemon=True)
            self.walker.start()
        self._send(("snapshot", snapshot(self.queue, inspector, counters, self.top)))

    def _walk_all(self):
        while self.walks:
            try:
                self._answer(self.walks[0])
            except Exception:
                log.exception("queue %d: control flow walk failed", self.queue)
            self.walks.popleft()

    def _answer(self, walk):
        """Walk to the end and send the answer (fewer rows when it does not fit one message)."""
        while not walk.step():
            pass
        top = walk.top
        while not self._send(("flows", walk.rid, self.queue, walk.table(top))) and top > 1:
            top //= 4

    def _send(self, msg) -> bool:
        """True when sent; False when the message was too big for one datagram (EMSGSIZE)."""
        data = pickle.dumps(msg, pickle.HIGHEST_PROTOCOL)
        try:
            self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            self.skipped += 1
        except OSError as e:         # EMSGSIZE, or the supervisor is gone
            if e.errno == errno.EMSGSIZE:
                return False
            self.skipped += 1
        return True

    def close(self):
        self.sock.close()


def snapshot(queue, ins, wc, top=TOP_DEFAULT) -> dict:
    """A worker's counters as they are (its Inspector `ins`, its own counters `wc`): what
    /metrics and /status are made of."""
    c, ft, lim, eve = ins.counters, ins.flows, ins.limits, ins.eve
    return {
        "queue": queue, "pid": os.getpid(), "time": time.time(),
        "packets": wc.packets, "bytes": c.bytes, "offloaded": wc.offloaded, "errors": wc.errors,
        "internal_errors": c.internal_errors, "reject_sent": wc.reject_sent, "copy_truncated": wc.copy_truncated,
        "verdicts": dict(c.verdicts), "alerts": c.alerts,
        "would_block": dict(c.would_block), "mode": ins.settings.mode,
        # (sid, msg, alerts): the top `top` only, so a rule set of 30,000 sids stays 20 labels
        "rules_top": [(sid, msg, n) for (sid, msg), n in c.rule_hits.most_common(top)],
        "anomalies": dict(sorted(lim.anomalies.items(), key=lambda kv: -kv[1])[:100]),
        "flows_active": len(ft), "flows_total": ft.total, "flows_evicted": ft.evicted,
        "flows_ended": dict(c.flows_ended),
        "eve_written": getattr(eve, "count", 0), "eve_lost": getattr(eve, "lost", 0),
        "rules": len(ins.ruleset.rules),
    }


def _verdict(f):
    """The flow's verdict; monitor mode passed it: would_drop / would_reject."""
    if f.monitored and f.verdict not in (None, "pass"):
        return "would_" + f.verdict
    return f.verdict or "undecided"


def flow_row(f, now) -> dict:
    app = f.app.proto if f.app is not None and f.app.known else None
    return {"flow_id": f.id, "proto": f.proto, "src": f.src, "sport": f.sport, "dst": f.dst, "dport": f.dport,
            "state": f.state, "verdict": _verdict(f), "final": f.final, "offloaded": f.offloaded,
            "alerted": f.alerted, "app_proto": app, "pkts": f.pkts_ts + f.pkts_tc,
            "bytes": f.bytes_ts + f.bytes_tc, "age": max(0.0, round(now - f.start, 1)),
            "idle": max(0.0, round(now - f.last, 1))}


def _bytes(f):
    return f.bytes_ts + f.bytes_tc


class FlowWalk:
    """One `flows` request: the `top` flows by bytes and the `top` sources by bytes, over a
    snapshot of the table (the table changes while it is walked: a flow that ends meanwhile
    is still reported, as it was)."""

    def __init__(self, rid, top, flows):
        self.rid, self.top = rid, max(1, min(int(top), FLOWS_MAX))
        self.flows = list(flows)
        self.at = 0
        self.biggest = []
        # per source (raw address: text only for the rows reported), in dicts of ints: no
        # container per source, so walking a large table sets off no garbage collection,
        # which would hold the GIL from the packet loop for tens of ms (review rvall)
        self.talker_bytes, self.talker_pkts, self.talker_flows = {}, {}, {}

    def step(self, n=WALK_INLINE) -> bool:
        """Walk the next `n` flows; True when the walk is done."""
        chunk = self.flows[self.at:self.at + n]
        self.at += len(chunk)
        self.biggest = heapq.nlargest(self.top, itertools.chain(self.biggest, chunk), key=_bytes)
        tb, tp, tn = self.talker_bytes, self.talker_pkts, self.talker_flows
        for f in chunk:
            raw = f.src_raw
            tb[raw] = tb.get(raw, 0) + f.bytes_ts + f.bytes_tc
            tp[raw] = tp.get(raw, 0) + f.pkts_ts + f.pkts_tc
            tn[raw] = tn.get(raw, 0) + 1
        return self.at >= len(self.flows)

    def table(self, top) -> dict:
        now = time.time()
        best = heapq.nlargest(top, self.talker_bytes.items(), key=lambda kv: kv[1])
        return {"active": len(self.flows), "flows": [flow_row(f, now) for f in self.biggest[:top]],
                "talkers": [{"src": address_text(raw), "bytes": b, "pkts": self.talker_pkts[raw],
                             "flows": self.talker_flows[raw]} for raw, b in best]}


def flow_table(inspector, top) -> dict:
    """The `top` flows by bytes seen and the `top` sources by bytes, from this worker's table
    (in one go: FlowWalk's steps, to the end)."""
    walk = FlowWalk(None, top, inspector.flows.flows.values())
    while not walk.step():
        pass
    return walk.table(walk.top)
