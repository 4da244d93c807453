"""`appliance run` in fleet mode (a `gwlb:` section): the supervisor of the GENEVE workers.

start    the health endpoint first (503 "starting"), then the N worker sockets on the GENEVE
         port (SO_REUSEPORT, steered by the inner addresses: fleet.steering), one worker
         per socket; a socket that cannot be bound or a worker that does not start: exit 2
run      a dead worker is restarted (its socket stays here, so its datagrams wait in the
         socket's buffer and the steering keeps its order); health is 503 until it is back
SIGHUP   the config and rules are read and checked once, here (appliance.reload, as inline);
         valid -> every worker swaps them in between two datagrams; the `gwlb:` section and
         the other restart-only keys are logged and kept; invalid -> logged, the running rules stay
SIGUSR1  every worker writes its counters (stderr) and a stats event (EVE)
SIGTERM  health fails at once (503 "draining"), the workers keep serving every datagram that
         comes for `gwlb.drain` seconds (GWLB's deregistration delay: existing flows keep
         coming, new ones go to other targets), then stop; a second SIGTERM/SIGINT stops now

No kernel state is installed: GENEVE reaches the workers' sockets through the kernel's UDP
stack, and nothing of the inline datapath (NFQUEUE, connmark chains) is used.
"""
import logging
import multiprocessing
import os
import select
import signal
import time

from appliance.fleet import steering
from appliance.fleet.health import Health
from appliance.fleet.worker import worker_main
from appliance.reload import Outbox, Reloading
from appliance import gwlb_offload
from appliance.source.gwlb import data_interface, listen

log = logging.getLogger("appliance.fleet")

RESTART_BACKOFF = 1.0          # seconds between restarts of one worker
BIND_TIMEOUT = 30.0            # seconds a worker has to build its Inspector and report
RELOAD_GRACE = 30.0            # seconds a worker may take to swap a reload in before health fails
SILENT = 3.0                   # seconds without a word from a worker (it says "alive" every second): hung


class FleetSupervisor(Reloading):
    def __init__(self, cfg, ruleset, raw_cfg=None):
        self.cfg, self.raw_cfg, self.ruleset = cfg, raw_cfg or cfg, ruleset
        self.ctx = multiprocessing.get_context("fork")
        self.socks = []
        self.workers = {}          # index -> Process
        self.status = {}           # index -> the status pipe's read end
        self.loaded = {}           # index -> rules the worker reported (None: not bound yet)
        self.heard = {}            # index -> monotonic time of the worker's last message
        self.outboxes = {}         # index -> Outbox: checked reloads for the worker
        self.last_start = {}
        self.pending = []          # signals, acted on in the loop
        self.check = None
        self.recheck = False
        self.reload_sent = 0.0     # monotonic time the last reload went out
        self.drain_end = None      # monotonic time the drain ends (SIGTERM seen)
        self.restarts = 0
        self.health = None
        self.fast_path = False     # the kernel fast path's table is installed (gwlb.offload)

    def _signal(self, signum, _frame):
        self.pending.append(signum)

    # -- workers -------------------------------------------------------------------

    def start_worker(self, i):
        ours, theirs = self.ctx.Pipe(duplex=False)
        old = self.outboxes.pop(i, None)
        if old:
            old.close()
        old = self.status.pop(i, None)
        if old:
            old.close()
        control, feed = os.pipe()
        inherited = ([feed, ours.fileno(), self.health.httpd.fileno()] + [o.fd for o in self.outboxes.values()]
                     + [c.fileno() for c in self.status.values()]
                     + [s.fileno() for j, s in enumerate(self.socks) if j != i])
        p = self.ctx.Process(target=worker_main, name=f"appliance-gwlb{i}",
                             args=(self.cfg, i, self.ruleset, self.socks[i], control, theirs, inherited, self.fast_path))
        p.start()
        theirs.close()
        os.close(control)
        self.outboxes[i] = Outbox(feed)
        self.status[i] = ours
        self.loaded[i] = None
        self.heard[i] = time.monotonic()
        self.workers[i] = p
        self.last_start[i] = time.monotonic()
        log.info("gwlb worker %d: pid %d started", i, p.pid)

    def _read_status(self, i):
        conn = self.status.get(i)
        try:
            while conn is not None and conn.poll(0):
                kind, rules = conn.recv()
                self.loaded[i] = rules
                self.heard[i] = time.monotonic()
        except (EOFError, OSError):            # the worker is gone: the restart makes a new pipe
            self.loaded[i] = None

    def readiness(self):
        """(ready, problems): what the health endpoint answers."""
        problems = []
        if self.drain_end is not None:
            problems.append(f"draining: stopping in {max(0.0, self.drain_end - time.monotonic()):.0f}s (SIGTERM)")
        want = len(self.ruleset.rules)
        settling = time.monotonic() - self.reload_sent < RELOAD_GRACE
        for i in range(self.cfg.gwlb.workers):
            p = self.workers.get(i)
            if p is None or not p.is_alive():
                problems.append(f"worker {i}: not running")
            elif self.loaded.get(i) is None:
                problems.append(f"worker {i}: not bound yet")
            elif time.monotonic() - self.heard[i] > SILENT:
                problems.append(f"worker {i}: pid {p.pid} not answering for {time.monotonic() - self.heard[i]:.0f}s")
            elif self.loaded[i] != want and not settling:
                problems.append(f"worker {i}: runs {self.loaded[i]} rules, the loaded set has {want}")
        for i, s in enumerate(self.socks):
            if s.fileno() < 0:
                problems.append(f"socket {i}: closed")
        return not problems, problems

    # -- the loop ------------------------------------------------------------------

    def run(self) -> int:
        g = self.cfg.gwlb
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, self._signal)
        try:
            self.health = Health(g.health_host, g.health_port)
        except OSError as e:
            log.error("%s: gwlb.health: cannot listen on %s port %d: %s", self._where("health"), g.health_host,
                      g.health_port, e)
            return 2
        self.health.start()                     # answers 503 "starting" until the workers are up
        try:
            self.socks = steering.sockets(g.listen, g.port, g.workers, listen)
        except OSError as e:
            log.error("%s: gwlb.listen: cannot bind %d GENEVE socket(s) on %s port %d: %s", self._where("listen"),
                      g.workers, g.listen, g.port, e)
            self.health.stop()
            return 2
        self._check_mtu()
        self.fast_path = self._install_fast_path()
        for i in range(g.workers):
            self.start_worker(i)
        deadline = time.monotonic() + BIND_TIMEOUT
        while any(v is None for v in self.loaded.values()):
            for i, p in self.workers.items():
                self._read_status(i)
                if self.loaded[i] is None and not p.is_alive():
                    log.error("gwlb worker %d died while starting (exit %s); stopping", i, p.exitcode)
                    return self._stop_now(2)
            if time.monotonic() > deadline:
                log.error("gwlb workers did not start within %.0fs; stopping", BIND_TIMEOUT)
                return self._stop_now(2)
            time.sleep(0.05)
        self.health.set(*self.readiness())
        log.info("running (fleet mode): %d GENEVE worker(s) on %s:%d for %s, health on %s:%d, drain %gs, rules=%s",
                 g.workers, g.listen, g.port, ", ".join(g.senders), g.health_host, g.health_port, g.drain,
                 self.cfg.rules)
        while True:
            while self.pending:
                s = self.pending.pop(0)
                if s in (signal.SIGTERM, signal.SIGINT):
                    if self.drain_end is not None or g.drain == 0:
                        return self._stop_now(0)
                    self.drain_end = time.monotonic() + g.drain
                    self.health.set(*self.readiness())      # fail health before anything else
                    log.warning("SIGTERM: health fails from now; serving for %gs (gwlb.drain), then stopping",
                                g.drain)
                elif s == signal.SIGHUP:
                    self.start_check()
                elif s == signal.SIGUSR1:
                    self._signal_workers(signal.SIGUSR1)
            if self.drain_end is not None and time.monotonic() >= self.drain_end:
                log.info("drain over")
                return self._stop_now(0)
            for i, p in list(self.workers.items()):
                self._read_status(i)
                if not p.is_alive() and time.monotonic() - self.last_start[i] >= RESTART_BACKOFF:
                    p.join(0)
                    self.restarts += 1
                    log.error("gwlb worker %d: pid %d died (exit %s); restarting", i, p.pid, p.exitcode)
                    self._restart(i)
            self.health.set(*self.readiness())
            self._wait(0.2)
            if self.check is not None:
                result = self.check.poll()
                if result is not None:
                    self.check = None
                    self.reload(result)
                    if self.recheck:
                        self.recheck = False
                        self.start_check()

    def _restart(self, i):
        """A dead worker's flows may still be in the kernel's sets, and the worker that takes
        its place never learns them: their FIN or RST would delete nothing, and the next
        connection on their ports would have its data passed by the kernel, uninspected.
        So the table is installed again (empty, in one transaction) and the live workers
        put what they had in it back (SIGUSR2: FlowSets.resync)."""
        if self.fast_path:
            self.fast_path = self._install_fast_path()
            if not self.fast_path:
                gwlb_offload.remove()            # no sets at all rather than the dead worker's
            for j, p in self.workers.items():    # bound: their handler is in place (SIGUSR2 kills by default)
                if self.loaded.get(j) is not None and p.is_alive():
                    try:
                        os.kill(p.pid, signal.SIGUSR2)
                    except ProcessLookupError:
                        pass
        self.start_worker(i)

    def _install_fast_path(self) -> bool:
        """The kernel fast path's table (appliance.gwlb_offload), owned here for every worker
        (each adds and removes its own flows). It matches the data address GENEVE arrives at,
        so `listen: 0.0.0.0` takes the IPv4 address of the interface the route to the GWLB
        leaves by; without one (or on another port than 6081) the workers answer everything."""
        g = self.cfg.gwlb
        if not g.offload:
            return False
        import ipaddress
        from appliance.fleet.worker import first_address
        senders = [s for s in g.senders if ipaddress.ip_network(s).version == 4]   # GWLB sends IPv4 GENEVE
        address = g.listen
        if ipaddress.ip_address(address).is_unspecified and senders:
            found = data_interface(address, first_address(senders[0]))
            address = gwlb_offload.ipv4_of(found[0]) if found else None
        where = gwlb_offload.device_of(address) if address and ":" not in address else None
        if where is None or not senders or g.port != 6081:
            log.warning("gwlb: no kernel fast path (listen %s port %d, IPv4 senders %s): every datagram is "
                        "answered by a worker", g.listen, g.port, senders or "none")
            return False
        try:
            gwlb_offload.install(where[0], where[1], address, senders, g.reply_port)
        except gwlb_offload.OffloadError as e:
            log.warning("gwlb: no kernel fast path: %s", e)
            return False
        return True

    def _where(self, key):
        """FILE:LINE of a gwlb key, for a problem found at start."""
        from appliance.run import _line_of
        return f"{self.cfg.path}:{_line_of(self.cfg.path, ('gwlb', key))}"

    def _check_mtu(self):
        """GWLB sends inner packets up to 8500 bytes, 68 more with GENEVE: a data interface
        with a smaller MTU gets them in fragments and cannot return them whole (each is
        dropped, counted and answered: source.gwlb)."""
        from appliance.fleet.worker import first_address
        from appliance.source.gwlb import GWLB_MTU, OUTER, data_interface
        g = self.cfg.gwlb
        found = data_interface(g.listen, first_address(g.senders[0]))
        want = GWLB_MTU + OUTER + 40             # 40: GENEVE's header with AWS's three options
        if found is None:
            log.warning("gwlb: cannot tell the data interface (listen %s): its MTU is not checked", g.listen)
        elif found[1] < want:
            log.warning("gwlb: data interface %s has MTU %d; GWLB sends datagrams up to %d bytes (%d + 68): inner "
                        "packets above %d bytes cannot go back whole and are dropped (set MTU 9001, EC2's jumbo)",
                        found[0], found[1], want, GWLB_MTU, found[1] - want + GWLB_MTU)
        else:
            log.info("gwlb: data interface %s, MTU %d", *found)

    def _wait(self, timeout):
        waiting = [o for o in self.outboxes.values() if o.pending]
        readable = [c.fileno() for c in self.status.values()]
        if self.check is not None:
            readable.append(self.check.fd)
        try:
            select.select(readable, [o.fd for o in waiting], [], timeout)
        except (OSError, ValueError):
            pass
        for o in waiting:
            o.flush()

    # -- SIGHUP: as inline ---------------------------------------------------------

    def reload(self, result):
        if self.send_checked(result) is not None:
            self.reload_sent = time.monotonic()

    # -- the end -------------------------------------------------------------------

    def _stop_now(self, code) -> int:
        if self.health is not None:
            self.health.set(False, ["stopping"])
        if self.check is not None:
            self.check.cancel()
            self.check = None
        self._signal_workers(signal.SIGINT)       # workers ignore SIGTERM (fleet.worker)
        for p in self.workers.values():
            p.join(10)
            if p.is_alive():
                log.error("gwlb worker %d did not stop; killing it", p.pid)
                p.kill()
                p.join()
        for s in self.socks:
            s.close()
        if self.fast_path:
            gwlb_offload.remove()                 # no kernel state left behind
        if self.health is not None:
            self.health.stop()
        log.info("stopped")
        return code
