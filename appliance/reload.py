"""SIGHUP without a gap: the supervisor reads and checks the config and the rule files
once (in a low-priority child, `Check`); every worker gets exactly that checked rule set
over a pipe, builds its detector beside the running one and swaps it in between two packets.

Why not let each worker re-read the files: parsing YAML inside the packet loop stalls the
worker for seconds (10,001 rules: 2.4 s here, 4 s under load), its queue overflows meanwhile
(open mode passes the overflow uninspected, closed mode drops it), and a file changed after
the supervisor's check would reach the workers unchecked (time of check, time of use).

Wire format, on one pipe per worker (pickle, between the supervisor and its own forked
children): a header (config, rule set without its rules, number of chunks), then the rules
in chunks of CHUNK. The worker reads and unpickles in a thread; small chunks keep any one
unpickle short, so the packet loop gets the GIL back within milliseconds.
"""
from collections import deque
from dataclasses import replace
import logging
import os
import pickle
import threading
import time

log = logging.getLogger("appliance.reload")

CHUNK = 200                    # rules per pickle: ~1.5 ms to unpickle each
CHECK_NICE = 10                # the check's CPU priority: below the workers'
CHECK_TIMEOUT = 300.0          # seconds: a rules path that never answers (a FIFO, a dead NFS) is refused


class Check:
    """SIGHUP's read-and-check of the config and rule files, in a forked child at a lower CPU
    priority: the supervisor's loop (worker restarts, the kernel-rule watch) keeps running
    through a parse of seconds, and the parse takes CPU from the workers only where they
    leave it idle. `poll()` is None while it runs, then ("ok", cfg, ruleset, changed) or
    ("refused", problems); a check that outlasts `timeout` is ended and refused, so a hung
    file system cannot block every later SIGHUP."""

    def __init__(self, ctx, check, timeout=CHECK_TIMEOUT):
        r, w = os.pipe()
        self.proc = ctx.Process(target=_check_main, args=(check, w), name="appliance-check")
        self.proc.start()
        os.close(w)
        os.set_blocking(r, False)
        self.fd, self.data = r, bytearray()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def poll(self):
        while True:
            try:
                chunk = os.read(self.fd, 1 << 20)
            except BlockingIOError:
                if time.monotonic() < self.deadline:
                    return None
                self.cancel()
                return ("refused", [f"the config and rule files could not be read within {self.timeout:g}s "
                                    "(a FIFO, a hung file system?)"])
            if not chunk:
                break
            self.data += chunk
        os.close(self.fd)
        self.proc.join()
        try:
            return pickle.loads(self.data)
        except Exception:                    # the child died before it said anything whole
            return ("refused", [f"the rule check failed (exit {self.proc.exitcode})"])

    def cancel(self):
        self.proc.kill()
        self.proc.join()
        os.close(self.fd)


def _check_main(check, fd):
    try:
        os.nice(CHECK_NICE)
    except OSError:
        pass
    try:
        result = ("ok", *check())
    except Exception as e:                   # ConfigError / RuleError carry FILE:LINE problems
        result = ("refused", getattr(e, "problems", None) or [str(e)])
    with os.fdopen(fd, "wb") as f:
        f.write(pickle.dumps(result, pickle.HIGHEST_PROTOCOL))


def encode(cfg, ruleset) -> bytes:
    """One update, as the bytes the supervisor writes to every worker's pipe."""
    rules = list(ruleset.rules)
    chunks = [rules[i:i + CHUNK] for i in range(0, len(rules), CHUNK)]
    head = pickle.dumps((cfg, replace(ruleset, rules=[]), len(chunks)), pickle.HIGHEST_PROTOCOL)
    return head + b"".join(pickle.dumps(c, pickle.HIGHEST_PROTOCOL) for c in chunks)


class Outbox:
    """Supervisor side of one worker's pipe: updates wait here and are written without
    ever blocking the supervisor (a stuck or dead worker must not stop the watch or the
    restarts). `flush()` writes what the pipe takes now."""

    def __init__(self, fd):
        os.set_blocking(fd, False)
        self.fd = fd
        self.pending = deque()
        self.started = False                 # pending[0] is partly written: it must be finished

    def put(self, data: bytes):
        # each update is a whole rule set: a newer one makes the unsent older ones obsolete, so
        # a worker that does not read (stopped, hung) holds at most two here, however many SIGHUPs
        while len(self.pending) > self.started:
            self.pending.pop()
        self.pending.append(memoryview(data))

    def flush(self) -> None:
        while self.pending:
            head = self.pending[0]
            try:
                n = os.write(self.fd, head)
            except BlockingIOError:
                return
            except OSError:                  # the worker is gone; its restart gets the rules by fork
                self.pending.clear()
                self.started = False
                return
            if n == len(head):
                self.pending.popleft()
                self.started = False
            else:
                self.pending[0] = head[n:]
                self.started = True

    def close(self):
        self.pending.clear()
        try:
            os.close(self.fd)
        except OSError:
            pass


class Inbox:
    """Worker side: a thread reads updates and prepares each one (`prepare(cfg, ruleset)`,
    e.g. building the detector) beside the running rules; the packet loop sees `pending()`
    and takes the newest prepared update with `take()`."""

    def __init__(self, fd, prepare, name="reload"):
        self.file = os.fdopen(fd, "rb")
        self.prepare = prepare
        self.lock = threading.Lock()
        self.ready = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self):
        load = pickle.load
        while True:
            try:
                cfg, head, n = load(self.file)
                rules = []
                for _ in range(n):
                    rules.extend(load(self.file))
            except (EOFError, OSError, ValueError):
                return                       # the supervisor is gone (or closed us): nothing more comes
            try:
                prepared = self.prepare(cfg, replace(head, rules=rules))
            except Exception:                # a bug: the running rules stay, and say so
                log.exception("preparing the new rules failed; the running rules stay")
                continue
            with self.lock:
                self.ready = prepared

    def pending(self) -> bool:
        return self.ready is not None

    def take(self):
        with self.lock:
            ready, self.ready = self.ready, None
        return ready


class Reloading:
    """SIGHUP and signals as both supervisors do them (inline `appliance.run`, fleet
    `appliance.fleet`): uses their ctx, cfg, raw_cfg, ruleset, check, recheck, outboxes, workers."""

    def _signal_workers(self, signum):
        for p in self.workers.values():
            if p.is_alive():
                try:
                    os.kill(p.pid, signum)
                except ProcessLookupError:
                    pass

    def start_check(self):
        """SIGHUP: read and check the config file and the rules it names (Check)."""
        from appliance.run import _reload
        if self.check is not None:
            self.recheck = True
            return
        running, raw = self.cfg, self.raw_cfg
        self.check = Check(self.ctx, lambda: _reload(running, raw))

    def send_checked(self, result):
        """The check's result: refused -> logged, the running config and rules stay (None);
        ok -> exactly that checked rule set goes to every worker (the keys that need a
        restart are returned)."""
        if result[0] != "ok":
            log.error("reload refused, the running config and rules stay:\n%s", "\n".join(result[1]))
            return None
        cfg, ruleset, changed = result[1:]
        if changed:
            log.warning("reload: %s changed in %s; that needs a restart, the running value%s stay%s",
                        ", ".join(changed), cfg.path, "s" if len(changed) > 1 else "",
                        "" if len(changed) > 1 else "s")
        self.cfg, self.ruleset = cfg, ruleset    # restarted workers start with these
        data = encode(cfg, ruleset)       # exactly what was checked: no worker reads a file
        for o in self.outboxes.values():
            o.put(data)
            o.flush()
        log.info("reload: %d rule(s) from %s checked; sending them to the workers", len(ruleset.rules), cfg.rules)
        return changed
