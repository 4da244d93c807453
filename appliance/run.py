"""`appliance run`: the supervisor of the inline datapath.

start    load config + rules (any problem: FILE:LINE lines on stderr, exit 2), check the
         kernel, install our netfilter chains, fork one worker per NFQUEUE queue
run      restart a worker that died (logged), with a short back-off
SIGHUP   read the config file and the rules it names, once, here; valid -> that checked
         rule set and the reloadable keys (rules, eve, home_net, offload, inspection, mode) go to
         every worker over its pipe (appliance.reload), which builds them beside the running
         ones and swaps them in between two packets (decided flows keep their verdict; the EVE
         file is reopened); restart-only keys (interfaces, workers, queue_base, failure_mode,
         mark_mask) are logged and kept; invalid -> the problems are logged and the running config and
         rules stay
SIGUSR1  every worker writes a `stats` event
SIGTERM  workers drain their queue and exit; per failure_mode:
           open   -> nothing is queued any more: new and undecided flows forward uninspected;
                     the offloaded verdicts stay (a dropped flow stays dropped, across a
                     restart too) as long as our chains exist; `--remove` deletes them
           closed -> our chains stay whole: new flows are dropped (no worker, no bypass)
                     until `appliance run` starts again; `--remove` deletes them on purpose
kernel decisions (inspection.kernel_decisions, with offload): the rule set's header-decided
         part is compiled to an nftables table judging new flows before the queue
         (netfilter_decisions.py): installed at start, recompiled on SIGHUP, watched, deleted
         on stop and by --remove
watch    every 5 s, our jump (first in FORWARD) and chains are checked rule by rule; anything
         another tool changed (flushed, edited, deleted, a rule inserted above ours) is put
         back and logged
kill -9  workers die with the supervisor (PDEATHSIG); the chains stay: open mode bypasses
         the empty queues, closed mode drops; offloaded flows keep their kernel verdict
"""
import argparse
import logging
import multiprocessing
import os
import select
import signal
import sys
import time

from appliance import netfilter, netfilter_decisions
from appliance.aws.bootstrap import discover_roles
from appliance.config import ConfigError, load_config, mark_mask_clashes, reload_config, resolve_interfaces
from appliance.reload import Outbox, Reloading

log = logging.getLogger("appliance.run")

RESTART_BACKOFF = 1.0            # seconds between restarts of one queue's worker
BIND_TIMEOUT = 10.0              # seconds a new worker has to bind its queue
WATCH_INTERVAL = 5.0             # seconds between checks that our kernel rules are as installed
WATCH_SHARE = 0.05               # ... stretched so the checks take at most this share of the time


def watch_interval(took: float) -> float:
    """Seconds until the next check after one that took `took`: listing a big table (kernel
    decisions of 10,000 rules: ~2.4 s) every 5 s would keep the supervisor busy half the time."""
    return max(WATCH_INTERVAL, took / WATCH_SHARE)


def _line_of(path, keys):
    """Line of a nested key in the config file, for messages found after parsing."""
    from appliance import yamlsource
    try:
        node = yamlsource.load(path)
        for k in keys[:-1]:
            node = node[k]
        return node.line_of(keys[-1])
    except (yamlsource.YamlError, KeyError, TypeError, AttributeError):
        return 1


CAPABILITIES = {"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13}


def _missing_capabilities():
    """The capabilities the datapath needs and does not have (effective set of this process)."""
    try:
        with open("/proc/self/status") as f:
            eff = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        eff = ~0 if os.geteuid() == 0 else 0
    return [name for name, bit in CAPABILITIES.items() if not eff >> bit & 1]


def _load_rules(cfg):
    from appliance.detect.loader import load_rules, skip_report
    rs = load_rules([cfg.rules], home_net=list(cfg.home_net) if cfg.home_net is not None else None,
                    skip_unsupported=cfg.rules_skip_unsupported, modes=cfg.rules_mode)
    for line in skip_report(rs):
        log.warning("%s", line)
    return rs


def _reload(cfg, raw_cfg):
    """SIGHUP: the config file's reloadable keys and the rules they name -> (cfg, ruleset,
    restart-only keys that changed). Raises ConfigError/RuleError with FILE:LINE problems."""
    new, changed = reload_config(cfg, raw_cfg)
    return new, _load_rules(new), changed


class Supervisor(Reloading):
    def __init__(self, cfg, ruleset, raw_cfg=None):
        self.cfg = cfg
        self.raw_cfg = raw_cfg or cfg                      # as read, before `auto` was resolved
        self.ruleset = ruleset
        self.ctx = multiprocessing.get_context("fork")     # workers inherit the loaded rules
        self.workers = {}                                  # queue -> Process
        self.outboxes = {}                                 # queue -> Outbox: checked updates for its worker
        self.last_start = {}
        self.pending = []                                  # signals to act on in the loop
        self.restarts = 0
        self.installed = {}                                # our chains as the kernel listed them (drift)
        self.decisions = None                              # our kernel decisions table as listed, or None
        self.check = None                                  # the SIGHUP check running, if any
        self.recheck = False                               # a SIGHUP came during it: check again after
        self.board = None                                  # control plane: the workers' snapshots (control.board)
        self.control = None                                # control plane: the HTTP server (control.server)
        self.cloudwatch = None                             # control plane: the CloudWatch publisher
        if cfg.control is not None:
            from appliance.control.board import Board
            self.board = Board(cfg, ruleset)

    def _signal(self, signum, _frame):
        self.pending.append(signum)

    def start_worker(self, queue):
        """Fork the queue's worker; returns the pipe end on which it reports "bound" or why not."""
        from appliance.source.nfqueue import worker_main
        ours, theirs = self.ctx.Pipe(duplex=False)
        old = self.outboxes.pop(queue, None)
        if old:
            old.close()                                    # what was in flight for the dead worker
        control, feed = os.pipe()
        inherited = [feed] + [o.fd for o in self.outboxes.values()]
        report = mine = None
        if self.board is not None:
            from appliance.control.report import channel
            mine, report = channel()
            inherited += [mine.fileno(), *self.board.fds()]
            if self.control is not None:                   # the listening socket stays the supervisor's
                inherited.append(self.control.httpd.fileno())
        # the worker is forked with the running (checked) config and rules; later ones come by pipe
        p = self.ctx.Process(target=worker_main, name=f"appliance-q{queue}",
                             args=(self.cfg, queue, self.ruleset, control, theirs, inherited, report))
        p.start()
        theirs.close()
        os.close(control)
        if report is not None:
            report.close()
            self.board.attach(queue, mine, p.pid)
        self.outboxes[queue] = Outbox(feed)
        self.workers[queue] = p
        self.last_start[queue] = time.monotonic()
        log.info("queue %d: worker %d started", queue, p.pid)
        return ours

    def _bound(self, queue, pipe, timeout=BIND_TIMEOUT):
        """Wait for the worker's bind report; None when bound, else the reason."""
        try:
            if pipe.poll(timeout):
                status = pipe.recv()
                if status == "bound" and self.board is not None:
                    self.board.bound[queue] = True
                return None if status == "bound" else status
            return f"queue {queue}: the worker did not bind within {timeout:.0f}s"
        except (EOFError, OSError):
            return f"queue {queue}: the worker died before binding (exit {self.workers[queue].exitcode})"
        finally:
            pipe.close()

    def run(self) -> int:
        cfg = self.cfg
        for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(s, self._signal)
        if self.board is not None:
            # first, so /readyz says "not ready" (503) while the workers start, rather than nothing
            from appliance.control.server import Control
            try:
                self.control = Control(self, self.board)
            except OSError as e:
                log.error("control server: cannot listen on %s port %d: %s", cfg.control.host, cfg.control.port, e)
                return 2
            self.control.start()
            if cfg.control.cloudwatch is not None:        # the same registry /metrics is written from
                from appliance.control.cloudwatch import Publisher
                self.cloudwatch = Publisher(cfg.control.cloudwatch, self.control.registry)
                self.cloudwatch.start()
        # Workers bind before the rules point at their queues: no packet waits on an empty
        # queue, and a queue another program holds never receives our traffic.
        pipes = {q: self.start_worker(q) for q in cfg.queues}
        failed = [why for q, pipe in pipes.items() if (why := self._bound(q, pipe))]
        if failed:
            for why in failed:
                log.error("%s", why)
            log.error("not installing the appliance's rules; stopping")
            self._signal_workers(signal.SIGTERM)
            for p in self.workers.values():
                p.join(5)
            return 2
        self.installed = netfilter.install(cfg.outside, cfg.inside, cfg.queues, cfg.fail_open, cfg.mark_mask,
                                           overload=cfg.overload)
        self._installed()
        try:
            self.install_decisions()
        except netfilter.NetfilterError as e:
            log.error("kernel decisions: %s; every flow goes to the queue", e)
        next_watch = time.monotonic() + WATCH_INTERVAL
        log.info("running: %d worker(s) on queue(s) %s, failure_mode=%s, offload=%s, rules=%s",
                 cfg.workers, f"{cfg.bound_queues[0]}-{cfg.bound_queues[-1]}" + (
                     " (new flows on the second half)" if len(cfg.bound_queues) > cfg.workers else ""),
                 cfg.failure_mode, cfg.offload, cfg.rules)
        while True:
            while self.pending:
                s = self.pending.pop(0)
                if s in (signal.SIGTERM, signal.SIGINT):
                    return self.stop()
                if s == signal.SIGHUP:
                    self.start_check()
                elif s == signal.SIGUSR1:
                    self._signal_workers(signal.SIGUSR1)
            for q, p in list(self.workers.items()):
                if not p.is_alive() and time.monotonic() - self.last_start[q] >= RESTART_BACKOFF:
                    p.join(0)
                    self.restarts += 1
                    if self.board is not None:
                        self.board.restarts = self.restarts
                    log.error("queue %d: worker %d died (exit %s); restarting", q, p.pid, p.exitcode)
                    why = self._bound(q, self.start_worker(q))
                    if why:
                        # someone took the queue while it was free: our traffic goes to them now
                        log.critical("%s; the appliance cannot inspect this queue and stops", why)
                        return self.stop()
            if time.monotonic() >= next_watch:
                began = time.monotonic()
                self.watch()
                next_watch = time.monotonic() + watch_interval(time.monotonic() - began)
            self._wait(0.2)
            if self.check is not None:
                result = self.check.poll()
                if result is not None:
                    self.check = None
                    self.reload(result)
                    if self.recheck:                       # the files may have changed since it began
                        self.recheck = False
                        self.start_check()

    def _wait(self, timeout):
        """Wait up to `timeout` for the check's answer while writing pending updates to the
        workers' pipes."""
        waiting = [o for o in self.outboxes.values() if o.pending]
        readable = [self.check.fd] if self.check is not None else []
        if self.board is not None:
            readable += self.board.fds()
        try:
            select.select(readable, [o.fd for o in waiting], [], timeout)
        except (OSError, ValueError):
            pass
        for o in waiting:
            o.flush()
        if self.board is not None:
            self.board.drain()

    def install_decisions(self):
        """Compile the running rule set's kernel policy and install its table (a stale one
        from an earlier run with the key on goes when it is off now)."""
        cfg = self.cfg
        if not (cfg.inspection.kernel_decisions and cfg.offload):
            if cfg.inspection.kernel_decisions:
                log.warning("inspection.kernel_decisions needs offload: true (a kernel decision is an offload); off")
            self.decisions = None
            netfilter_decisions.remove()
            return
        from appliance.detect.kernel_policy import policy_for
        policy = policy_for(cfg, self.ruleset)          # (with the config's pcap log)
        self.decisions = netfilter_decisions.install(policy, cfg.outside, cfg.inside, cfg.mark_mask)

    def _installed(self):
        """Our chains were (re)installed: the control plane's readiness and counters follow."""
        if self.board is not None:
            self.board.chains_installed(self.installed, netfilter.queue_counters())

    def watch(self):
        """Put our kernel rules back if someone flushed, edited or outranked them: an
        `iptables -F` or a rule inserted above ours must not switch inspection off."""
        cfg = self.cfg
        try:
            problems = netfilter.drift(self.installed)
            if problems:
                log.warning("our netfilter rules were changed (%s); re-installing them", "; ".join(problems))
                self.installed = netfilter.install(cfg.outside, cfg.inside, cfg.queues, cfg.fail_open,
                                                   cfg.mark_mask, overload=cfg.overload)
                self._installed()
        except netfilter.NetfilterError as e:
            log.error("checking our netfilter rules failed: %s", e)
        try:
            if self.decisions is not None:
                problems = netfilter_decisions.drift(self.decisions)
                if problems:
                    log.warning("our kernel decisions were changed (%s); re-installing them", "; ".join(problems))
                    self.install_decisions()
        except netfilter.NetfilterError as e:
            log.error("checking our kernel decisions failed: %s", e)

    def reload(self, result):
        """The check's result (Reloading.send_checked), then the new rules' kernel policy."""
        changed = self.send_checked(result)
        if changed is None:
            if self.board is not None:
                self.board.reloaded(False, message="\n".join(result[1]))
            return
        cfg, ruleset = self.cfg, self.ruleset
        try:
            self.install_decisions()                       # the new rules' kernel policy
        except netfilter.NetfilterError as e:
            # the old table judged with the old rules: never leave it in place
            log.error("kernel decisions: %s; removing them, every flow goes to the queue", e)
            self.decisions = None
            try:
                netfilter_decisions.remove()
            except netfilter.NetfilterError as e2:
                log.critical("kernel decisions of the old rules could not be removed: %s", e2)
        if self.board is not None:
            self.board.cfg = cfg
            self.board.reloaded(True, ruleset, f"{len(ruleset.rules)} rule(s) from {cfg.rules}"
                                + (f"; needs a restart: {', '.join(changed)}" if changed else ""))

    def stop(self) -> int:
        cfg = self.cfg
        if self.control is not None:                       # readiness ends first: health checks fail at once
            self.control.stop()
            self.control = None
        if self.cloudwatch is not None:                    # its last figures (the registry outlives the server)
            self.cloudwatch.stop()
            self.cloudwatch = None
        if self.check is not None:
            self.check.cancel()
            self.check = None
        try:                                               # no judging without the appliance
            if self.decisions is not None:                 # (its flows are in no worker's stats)
                log.info("kernel decisions, packets per rule: %s", netfilter_decisions.counters())
            netfilter_decisions.remove()
            self.decisions = None
        except netfilter.NetfilterError as e:
            log.error("kernel decisions: %s", e)
        if cfg.fail_open:
            # open: forward uninspected from now on -- but a flow a worker dropped stays dropped:
            # removing the chains would deliver its retransmissions (and a restart would find it open)
            # (the SYN proxy stays: it needs no worker, and the handshakes it holds finish)
            netfilter.install(cfg.outside, cfg.inside, cfg.queues, cfg.fail_open, cfg.mark_mask, inspecting=False,
                              overload=cfg.overload)
        self._signal_workers(signal.SIGTERM)
        for p in self.workers.values():
            p.join(10)
            if p.is_alive():
                log.error("worker %d did not stop; killing it", p.pid)
                p.kill()
                p.join()
        if cfg.fail_open:
            log.warning("failure_mode open: traffic forwards uninspected; offloaded flows keep their verdict "
                        "while the appliance chains exist (`appliance run --remove` deletes them)")
        else:
            log.warning("failure_mode closed: the appliance chains stay installed, new flows are dropped "
                        "until `appliance run` starts again (`appliance run --remove` deletes them)")
        log.info("stopped")
        return 0


def main_run(args: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="appliance run", description="the inline NFQUEUE datapath (root)")
    ap.add_argument("--config", help="appliance.yaml (required except with --remove)")
    ap.add_argument("--remove", action="store_true",
                    help="delete the appliance's netfilter chains and exit (e.g. after a closed-mode stop)")
    ap.add_argument("--check", action="store_true", help="validate config and rules, then exit")
    a = ap.parse_args(args)
    # Until the supervisor's handlers are in place (a large rule set takes a while to load),
    # a reload or stats request must not kill the process (the default action for both).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s appliance[%(process)d] %(levelname)s %(message)s")
    if a.remove:                                 # needs nothing from the config, which may be broken
        try:
            netfilter.remove()
            netfilter_decisions.remove()
        except netfilter.NetfilterError as e:
            print(f"appliance run --remove: {e}", file=sys.stderr)
            return 1
        return 0
    if not a.config:
        ap.error("--config is required")
    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    if cfg.aws.config_source == "ssm":
        # The local file only says where the config lives; the copy `appliance ssm-fetch` (and
        # the bootstrap) checked and installed is the one to run and to re-read on SIGHUP.
        fetched = os.path.join(cfg.aws.ssm_dir, "appliance.yaml")
        if not os.path.exists(fetched):
            print(f"{cfg.path}:{_line_of(cfg.path, ('aws', 'config_source'))}: aws.config_source: ssm, but "
                  f"{fetched} does not exist: run `appliance ssm-fetch --config {a.config}` (the bootstrap "
                  "does it at boot)", file=sys.stderr)
            return 2
        try:
            cfg = load_config(fetched)
        except ConfigError as e:
            print("\n".join(e.problems), file=sys.stderr)
            return 2
    try:
        ruleset = _load_rules(cfg)
    except Exception as e:
        problems = getattr(e, "problems", None) or [f"{cfg.rules}:1: {e}"]
        print("\n".join(problems), file=sys.stderr)
        return 2
    clashes = mark_mask_clashes(cfg.mark_mask)
    if clashes:
        log.warning("mark_mask 0x%x shares bits with %s: if that runs here, its marks read as offload "
                    "verdicts; pick bits no tool on this host uses", cfg.mark_mask, ", ".join(clashes))
    if a.check:
        print(f"{a.config}: ok; {len(ruleset.rules)} rule(s) from {cfg.rules}")
        return 0
    if cfg.gwlb is not None:                 # fleet mode: GENEVE workers, no NFQUEUE (docs/gwlb.md)
        from appliance.fleet.supervisor import FleetSupervisor
        return FleetSupervisor(cfg, ruleset).run()
    raw_cfg = cfg
    try:
        cfg = resolve_interfaces(cfg, discover=discover_roles)
    except ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return 2
    missing = _missing_capabilities()
    if missing:
        # root, or any user the unit gives the two capabilities (ami/appliance.service)
        print(f"appliance run: needs {' and '.join(missing)} (NFQUEUE, netfilter, raw sockets): run it as "
              "root or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW", file=sys.stderr)
        return 1
    if cfg.control is not None:
        try:
            from appliance.control.server import check_bind
        except ImportError as e:          # prometheus_client: the `live` extra (dev/setup.sh)
            print(f"{cfg.path}:{_line_of(cfg.path, ('control',))}: control: the control server needs {e.name} "
                  "(pip install prometheus_client)", file=sys.stderr)
            return 2
        why = check_bind(cfg)
        if why:
            print(f"{cfg.path}:{_line_of(cfg.path, ('control', 'listen'))}: {why}", file=sys.stderr)
            return 2
    for role in ("outside", "inside"):
        name = getattr(cfg, role)
        if not os.path.exists(f"/sys/class/net/{name}"):
            line = _line_of(cfg.path, ("interfaces", role))
            print(f"{cfg.path}:{line}: interfaces.{role}: interface {name!r} does not exist on this host",
                  file=sys.stderr)
            return 2
    netfilter.capabilities()
    # Another rule on this host that sets or matches bits of mark_mask would forge or miss our
    # offload verdicts: refuse to start rather than pass packets on someone else's mark.
    from appliance import marks
    clash, notes = marks.collisions(cfg.mark_mask)
    for note in notes:
        log.warning("mark_mask check: %s", note)
    if clash:
        line = _line_of(cfg.path, ("mark_mask",)) or 1
        print("\n".join(f"{cfg.path}:{line}: {c}" for c in clash), file=sys.stderr)
        return 2
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            if f.read().strip() != "1":
                log.warning("net.ipv4.ip_forward is 0: nothing will be forwarded through the appliance")
    except OSError:
        pass
    sup = Supervisor(cfg, ruleset, raw_cfg)
    try:
        return sup.run()
    except netfilter.NetfilterError as e:
        log.error("%s", e)
        sup._signal_workers(signal.SIGTERM)
        return 1


if __name__ == "__main__":
    sys.exit(main_run(sys.argv[1:]))
