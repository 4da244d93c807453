"""Supervisor side of the control channel: the latest snapshot of every worker, the rule
set's version, reloads and restarts, and the flow-table requests the CLI makes.

The supervisor's loop reads the workers' sockets (`drain`); the HTTP server's threads read
the board under its lock and wait on it for replies.
"""
import hashlib
import itertools
import pickle
import threading
import time

SNAPSHOT_STALE = 3.0           # seconds without a snapshot: the worker is not answering
REPLY_TIMEOUT = 10.0           # seconds to wait for the workers' flow tables (at their tick; a large table is walked beside the packet loop, a million flows in seconds)


def ruleset_version(ruleset) -> dict:
    """What identifies the running rule set: a hash of its files' bytes (names included), so
    two appliances running the same files report the same version."""
    h = hashlib.sha256()
    for src in sorted(str(s) for s in getattr(ruleset, "sources", ()) or ()):
        h.update(src.encode() + b"\0")
        try:
            with open(src, "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(b"<unreadable>")
    return {"hash": h.hexdigest()[:16], "rules": len(ruleset.rules), "loaded": time.time(),
            "default_action": getattr(ruleset, "default_action", "pass"),
            "files": len(getattr(ruleset, "sources", ()) or ())}


class Board:
    def __init__(self, cfg, ruleset):
        self.cfg = cfg
        self.lock = threading.Condition()
        self.socks = {}              # queue -> supervisor end of the worker's channel
        self.latest = {}             # queue -> newest snapshot
        self.previous = {}           # queue -> the one before (rates)
        self.pids = {}               # queue -> worker pid
        self.bound = {}              # queue -> the worker reported "bound"
        self.replies = {}            # request id -> {queue: flow table}
        self.ids = itertools.count(1)
        self.started = time.time()
        self.heartbeat = time.monotonic()   # the supervisor loop's last turn (liveness)
        self.rules = ruleset_version(ruleset)
        self.reloads = {"ok": 0, "refused": 0}
        self.last_reload = None
        self.restarts = 0
        self.installed = {}          # our chains as installed (readiness compares the kernel with it)
        # fail-open passes = packets our NFQUEUE rule sent minus those a queue took or dropped,
        # both counted from the same moment: the rule's counters start at 0 at each install
        self.queue_base = {}         # queue -> (id_sequence, queue_dropped) at install
        self.queue_seen = {}         # queue -> the last (id_sequence, queue_dropped) read
        self.queue_offset = {}       # queue -> what earlier instances counted (a restarted worker starts at 0)

    # -- the supervisor's side --------------------------------------------------

    def attach(self, queue, sock, pid):
        with self.lock:
            old = self.socks.pop(queue, None)
            if old is not None:
                old.close()
            sock.setblocking(False)
            self.socks[queue] = sock
            self.pids[queue] = pid
            self.bound[queue] = False
            self.latest.pop(queue, None)
            self.previous.pop(queue, None)

    def fds(self):
        return [s.fileno() for s in self.socks.values()]

    def drain(self):
        """Read whatever the workers sent (never blocks)."""
        self.heartbeat = time.monotonic()
        for queue, sock in list(self.socks.items()):
            while True:
                try:
                    data = sock.recv(1 << 20)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    break
                try:
                    msg = pickle.loads(data)
                except Exception:
                    continue
                with self.lock:
                    if msg[0] == "snapshot":
                        self.previous[queue] = self.latest.get(queue)
                        self.latest[queue] = msg[1]
                    elif msg[0] == "flows" and msg[1] in self.replies:
                        self.replies[msg[1]][msg[2]] = msg[3]
                        self.lock.notify_all()

    def chains_installed(self, installed, queues):
        """After every install (start, the watch's repair): the kernel's rule counters restart."""
        with self.lock:
            self.installed = installed
            self.queue_base = {q: (v["queued"], v["dropped"]) for q, v in queues.items()}
            self.queue_seen = dict(self.queue_base)
            self.queue_offset = {}

    def queued_since_install(self, queues) -> int:
        """Packets the queues took (or dropped when full) since the last install, across
        worker restarts (a new queue instance counts from 0). Around a restart, up to one
        scrape's worth of packets may be missed (and so read as fail-open passes)."""
        total = 0
        with self.lock:
            for q in self.cfg.bound_queues:
                v = queues.get(q)
                cur = (v["queued"], v["dropped"]) if v else (0, 0)
                seen = self.queue_seen.get(q, (0, 0))
                if cur[0] < seen[0] or cur[1] < seen[1]:      # a new instance: keep what the old one counted
                    off = self.queue_offset.get(q, (0, 0))
                    self.queue_offset[q] = (off[0] + seen[0], off[1] + seen[1])
                self.queue_seen[q] = cur
                off, base = self.queue_offset.get(q, (0, 0)), self.queue_base.get(q, (0, 0))
                total += cur[0] + cur[1] + off[0] + off[1] - base[0] - base[1]
        return total

    def reloaded(self, ok, ruleset=None, message=""):
        with self.lock:
            self.reloads["ok" if ok else "refused"] += 1
            if ok:
                self.rules = ruleset_version(ruleset)
            self.last_reload = {"time": time.time(), "result": "ok" if ok else "refused", "message": message}

    # -- the HTTP threads' side ---------------------------------------------------

    def snapshots(self):
        with self.lock:
            return dict(self.latest), dict(self.previous)

    def fresh(self, queue, now=None) -> bool:
        snap = self.latest.get(queue)
        return snap is not None and (now or time.time()) - snap["time"] < SNAPSHOT_STALE

    def flow_tables(self, top, timeout=REPLY_TIMEOUT) -> dict:
        """Ask every worker for its top flows and talkers; {queue: table} of those that
        answered within `timeout` (a worker answers at its next tick, within a second)."""
        rid = next(self.ids)
        with self.lock:
            self.replies[rid] = {}
            socks = dict(self.socks)
        msg = pickle.dumps(("flows", rid, int(top)))
        for sock in socks.values():
            try:
                sock.send(msg)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.replies[rid]) < len(socks):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            return self.replies.pop(rid)
