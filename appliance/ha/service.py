"""`appliance ha`: the loop that keeps the pair's routes on a healthy instance, and `ha status`.

Every `interval`: read our /readyz, send a heartbeat to the peer's management address and a
probe to its check address (another network), then let the machine decide. The route tables
are read at start, every ROUTE_POLL seconds and again right before any takeover. Each new
kind of decision (and every takeover) is one EVE-compatible line on stdout (`event_type: ha`);
the state is in `ha.status_file` for `appliance ha status`.

With `ha.sync`, the service also owns conntrackd (conntrackd.py: started with the service,
restarted when it exits, its cache committed before a takeover and resynced on every state
change); each of those actions is an `ha` event of its own (`event: sync`) with its outcome.
"""
import json
import os
import queue
import select
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request

from appliance.ha import heartbeat as hb
from appliance.ha.machine import Decision, Machine, PEER, SELF
from appliance.ha.routes import Ec2Error
from appliance.output.eve import timestamp

ROUTE_POLL = 2.0        # seconds between route table reads while nothing happens (EC2 Describe* is throttled)
NONCES = 16             # outstanding probe nonces kept (older replies are refused)
ACTION_WAIT = 15.0      # seconds a stop waits for conntrackd actions already queued


def readyz(url, timeout):
    """(ready, problems) from the appliance's /readyz; an unreachable one is not ready."""
    return readyz_answer(url, timeout)[:2]


def readyz_answer(url, timeout):
    """(ready, problems, late): `late` when no answer came within `timeout` (the control
    server is a niced thread: on a loaded machine it answers late, which is no verdict on
    the datapath; a 503 or a refused connection is one)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200, [], False
    except urllib.error.HTTPError as e:
        try:
            failed = json.loads(e.read() or b"{}").get("failed") or []
        except (ValueError, AttributeError):
            failed = []
        return False, [f"{url}: HTTP {e.code}" + (f" (failed: {', '.join(map(str, failed))})" if failed else "")], False
    except (urllib.error.URLError, OSError, ValueError) as e:
        late = isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)
        return False, [f"{url}: {getattr(e, 'reason', e)}"], late


class RouteRead(threading.Thread):
    """One periodic DescribeRouteTables in a thread of its own. The EC2 client retries a slow
    or throttled call for up to 3 x 15 s; in the loop that sends our heartbeats and answers the
    peer's probes, that silence would make a healthy primary look dead on both paths and the
    standby take over (tests/netns/test_ha_lab.py, a 3 s slow API)."""

    def __init__(self, routes, generation):
        super().__init__(daemon=True, name="route-read")
        self.routes, self.generation = routes, generation
        self.owner, self.note = None, ""
        self.start()

    def run(self):
        try:
            self.owner, self.note = self.routes.owner()
        except Ec2Error as e:
            self.owner, self.note = None, str(e)
        except Exception as e:             # a bug or an unexpected botocore error: unknown, say why
            self.owner, self.note = None, f"{type(e).__name__}: {e}"


def _udp(addr):
    host, port = addr
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.setblocking(False)
    return s


class Service:
    def __init__(self, ha, secret, routes, out=sys.stdout, clock=time.monotonic, wallclock=time.time, sync=None):
        self.ha, self.routes, self.out, self.clock, self.wallclock = ha, routes, out, clock, wallclock
        self.sync = sync                    # conntrackd.Conntrackd, or None without ha.sync
        a = ha.addresses()
        self.peer, self.check_peer = a["peer"], a["check_peer"]
        self.hb_sock, self.check_sock = _udp(a["listen"]), _udp(a["check_listen"])
        # The replay window: a heartbeat older than dead_after says nothing about the peer now.
        self.codec = hb.Codec(secret, ha.listen, window=max(2.0, ha.dead_after), wallclock=wallclock)
        self.machine = Machine(ha.dead_after, ha.hold_down, ha.preempt, clock=clock)
        self.nonces = []
        self.last_code = None
        self.last_decision = None
        self.state_since = wallclock()
        self.last_state = None
        self.route_read = float("-inf")
        self.reading = None                 # the periodic read in flight (RouteRead)
        self.readyz_answered = float("-inf")  # last /readyz answer in time (200 or not)
        self.readyz_late = 0                # answers late but within dead_after, taken as the last one
        self.route_generation = 0           # bumped by every synchronous read: older periodic results are stale
        self.retry_at = float("-inf")       # after a failed takeover: not before (EC2 throttles; IAM won't change in 0.2 s)
        self.route_note = ""
        self.peer_wall = {"heartbeat": None, "check": None}
        self.peer_heartbeat_epoch = None    # wall clock of the last accepted heartbeat (for its age in /metrics)
        self.transitions = 0                # state changes since start (the first state is not one)
        self.sync_actions = {}              # "commit" -> {"ok": n, "failed": n}
        self.sync_counters = {}             # conntrackd -s figures, read every ROUTE_POLL
        self.sync_read = float("-inf")
        self.committed = False              # the external cache went into the kernel before this takeover
        # conntrackd actions after a transition, and its counters, run on a thread of their own:
        # a few subprocesses in a row on a loaded host take longer than a heartbeat interval, and
        # a silent node looks dead to its peer. The commit before a takeover stays in the loop
        # (it must precede the route change).
        self.sync_jobs = queue.Queue()
        self.sync_restarting = False
        self.out_lock = threading.Lock()
        self.stopping = False

    # -- events and status ----------------------------------------------------------------
    def event(self, kind, **fields):
        rec = {"timestamp": timestamp(self.wallclock()), "event_type": "ha",
               "ha": {"event": kind, "state": self.machine.state(), **fields}}
        with self.out_lock:
            self.out.write(json.dumps(rec) + "\n")
            self.out.flush()

    def write_status(self):
        st = {"state": self.machine.state(), "since": timestamp(self.state_since),
              "route_owner": {SELF: "self", PEER: "peer", None: "unknown"}[self.machine.owner],
              "routes": self.route_note, "eni": self.ha.eni, "peer_eni": self.ha.peer_eni,
              "peer": {"state": self.machine.peer_state, "ready": self.machine.peer_ready,
                       "last_heartbeat": self.peer_wall["heartbeat"], "last_check_reply": self.peer_wall["check"]},
              "ready": self.machine.ready, "ready_problems": self.machine.ready_problems,
              "last_decision": self.last_decision, "takeovers": self.machine.takeovers,
              "packets": dict(self.codec.counts), "readyz_late": self.readyz_late, "written": timestamp(self.wallclock()),
              "transitions": self.transitions, "peer_heartbeat_epoch": self.peer_heartbeat_epoch}
        if self.sync:
            with self.out_lock:             # the actions thread updates these
                actions = {k: dict(v) for k, v in self.sync_actions.items()}
            st["sync"] = {"running": self.sync.exited() is None and self.sync.proc is not None,
                          "restarts": self.sync.restarts, "actions": actions, "counters": self.sync_counters}
        tmp = self.ha.status_file + ".tmp"
        try:
            os.makedirs(os.path.dirname(self.ha.status_file) or ".", exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(st, f, indent=1)
            os.replace(tmp, self.ha.status_file)
        except OSError as e:
            print(f"appliance ha: cannot write {self.ha.status_file}: {e}", file=sys.stderr)

    # -- the loop ---------------------------------------------------------------------------
    def read_routes(self):
        self.route_read = self.clock()
        self.route_generation += 1
        try:
            owner, self.route_note = self.routes.owner()
        except Ec2Error as e:
            owner, self.route_note = None, str(e)
        self.machine.route_owner(owner)
        return owner

    def poll_routes(self):
        """The periodic read of the tables, every ROUTE_POLL, in a RouteRead thread: waited for
        dead_after/3 at most (with /readyz's bound: interval + 2/3 dead_after <= dead_after),
        else applied on a later tick. A result from before a synchronous read (a takeover's) is
        dropped: it may show the routes as they were before we took them."""
        if self.reading is None and self.clock() - self.route_read >= ROUTE_POLL:
            self.route_read = self.clock()
            self.reading = RouteRead(self.routes, self.route_generation)
        if self.reading is None:
            return
        self.reading.join(min(1.0, self.ha.dead_after / 3))
        if self.reading.is_alive():
            return
        r, self.reading = self.reading, None
        if r.generation == self.route_generation:
            self.route_note = r.note
            self.machine.route_owner(r.owner)

    def tick(self):
        # Bounded so that a slow /readyz cannot stall our heartbeats and probe replies (this loop
        # sends both) past dead_after: with poll_routes' wait, interval + 2/3 dead_after <= dead_after.
        ready, problems, late = readyz_answer(self.ha.readyz, timeout=min(1.0, self.ha.dead_after / 3))
        now = self.clock()
        if not late:
            self.readyz_answered = now
        elif self.machine.ready and now - self.readyz_answered < self.ha.dead_after:
            # Late, not failing: keep the last answer (ready) for up to dead_after, the silence
            # we allow the peer too. One late answer made us fault and the standby take over
            # from a healthy primary (tests/netns/test_ha_lab.py, the supervisor paused).
            self.readyz_late += 1
            ready, problems = True, []
        self.machine.own_health(ready, problems)
        self.poll_routes()
        self.send()
        d = self.machine.decide()
        if d.takeover and self.clock() < self.retry_at:
            d = Decision(d.state, False, "takeover_retry", f"{d.reason}; the last takeover failed, retrying in "
                         f"{self.retry_at - self.clock():.1f}s")
        if d.takeover:
            self.read_routes()              # the tables are the truth: perhaps nothing is left to do
            d = self.machine.decide()
        if d.takeover and self.sync:
            # the entries (and their offload marks) must be in the kernel before the first
            # packet the moved routes bring us (conntrackd.py)
            self.committed = self.sync_action("-c", reason=d.code)
        if d.takeover:
            try:
                changed = self.routes.take()
            except Ec2Error as e:
                self.event("takeover_failed", reason=d.reason, error=str(e))
                self.last_decision = {"code": "takeover_failed", "reason": f"{d.reason}; {e}",
                                      "at": timestamp(self.wallclock())}
                self.route_read = float("-inf")
                self.retry_at = self.clock() + ROUTE_POLL
                self.write_status()
                return
            self.machine.took_over()
            self.event("takeover", reason=d.reason, code=d.code, routes=[f"{t} {dst}" for t, dst in changed],
                       eni=self.ha.eni)
            self.last_decision = {"code": d.code, "reason": d.reason, "takeover": True,
                                  "at": timestamp(self.wallclock())}
            self.send()                     # tell the peer at once
            d = self.machine.decide()
        if d.code != self.last_code:
            self.event("decision", code=d.code, reason=d.reason)
            self.last_code = d.code
            if not (self.last_decision or {}).get("takeover") or d.code != "primary":
                self.last_decision = {"code": d.code, "reason": d.reason, "at": timestamp(self.wallclock())}
        if self.machine.state() != self.last_state:
            self.transitions += self.last_state is not None
            before = self.last_state
            self.state_since, self.last_state = self.wallclock(), self.machine.state()
            self.sync_transition(before, self.last_state)
        if self.sync:
            self.sync_watch()
        self.write_status()

    # -- conntrackd ---------------------------------------------------------------------------
    def sync_action(self, option, **fields):
        """Run one conntrackd action; an `ha` event with its outcome; True when it worked."""
        from appliance.ha.conntrackd import ACTIONS
        name = ACTIONS[option]
        ok, detail = self.sync.run(option)
        with self.out_lock:
            n = self.sync_actions.setdefault(name, {"ok": 0, "failed": 0})
            n["ok" if ok else "failed"] += 1
        self.event("sync", action=name, command=f"conntrackd {option}", ok=ok, detail=detail, **fields)
        return ok

    def sync_transition(self, before, state):
        """What conntrackd's primary-backup.sh does on each transition (conntrackd.py), but
        for fault -> primary: the routes never left us (a fault node does not give them up),
        so our kernel table is the truth and the peer's copy (our external cache) is older."""
        if not self.sync:
            return
        if state == "primary" and before != "fault":
            steps = ["-f", "-R", "-B"] if self.committed else ["-c", "-f", "-R", "-B"]
        elif state == "standby":
            # after holding the traffic: our entries are the peer's now; let ours expire (-t)
            steps = ["-t", "-n"] if before in ("primary", "fault") else ["-n"]
        else:
            steps = []                      # fault: we may still hold the routes; keep the kernel's entries
        self.committed = False
        for option in steps:
            self.sync_jobs.put((option, {"transition": state}))

    def sync_thread(self):
        while True:
            job = self.sync_jobs.get()
            if job is None:
                return
            if job == "counters":
                self.sync_counters = self.sync.counters()
                self.sync_guard()
            elif job == "restart":
                code, tail = self.sync.exited(), self.sync.log_tail()
                self.sync.restarts += 1
                ok, detail = self.sync.start()
                self.event("sync", action="restart", ok=ok, detail=f"conntrackd had exited {code} ({tail}); {detail}")
                self.sync_restarting = False
            else:
                self.sync_action(job[0], **job[1])

    def sync_guard(self):
        """conntrackd's guard (conntrackd.py) back in place when something removed or moved it,
        with an event: without it, any host on the management link can feed our cache."""
        from appliance.ha.conntrackd import guard_intact, install_guard
        if self.sync.exited() is None and not guard_intact(self.ha.sync):
            ok, detail = install_guard(self.ha.sync)
            with self.out_lock:             # appliance_ha_sync_actions_total{action="guard"}
                n = self.sync_actions.setdefault("guard", {"ok": 0, "failed": 0})
                n["ok" if ok else "failed"] += 1
            self.event("sync", action="guard", ok=ok, detail=f"the sync channel's guard was gone or moved; {detail}")

    def sync_watch(self):
        if self.sync.exited() is not None and self.sync.may_restart() and not self.sync_restarting:
            self.sync_restarting = True     # a start waits up to 5 s for the daemon: not in this loop
            self.sync_jobs.put("restart")
        if self.clock() - self.sync_read >= ROUTE_POLL:
            self.sync_read = self.clock()
            self.sync_jobs.put("counters")

    def send(self):
        state, ready = self.machine.state(), self.machine.ready
        nonce = hb.new_nonce()
        self.nonces = (self.nonces + [nonce])[-NONCES:]
        for sock, addr, pkt in ((self.hb_sock, self.peer, self.codec.encode(hb.HEARTBEAT, state, ready)),
                                (self.check_sock, self.check_peer, self.codec.encode(hb.PROBE, state, ready, nonce))):
            try:
                sock.sendto(pkt, addr)
            except OSError:
                pass                        # a down link: the peer's silence is what the machine judges

    def receive(self, sock):
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return                      # e.g. ICMP port unreachable reported on the socket
            p = self.codec.decode(data)
            if p is None:
                continue
            if p.kind == hb.HEARTBEAT and sock is self.hb_sock:
                self.machine.heartbeat(p.state, p.ready)
                self.peer_heartbeat_epoch = self.wallclock()
                self.peer_wall["heartbeat"] = timestamp(self.peer_heartbeat_epoch)
            elif p.kind == hb.PROBE and sock is self.check_sock:
                try:
                    sock.sendto(self.codec.encode(hb.PROBE_REPLY, self.machine.state(), self.machine.ready,
                                                  p.nonce), addr)
                except OSError:
                    pass
            elif p.kind == hb.PROBE_REPLY and sock is self.check_sock and p.nonce in self.nonces:
                self.nonces.remove(p.nonce)
                self.machine.check_reply(p.state, p.ready)
                self.peer_wall["check"] = timestamp(self.wallclock())

    def run(self):
        self.event("start", listen=self.ha.listen, peer=self.ha.peer, check_peer=self.ha.check_peer,
                   route_tables=list(self.ha.route_tables), eni=self.ha.eni)
        if self.sync:
            ok, detail = self.sync.start()
            self.event("sync", action="start", ok=ok, detail=detail)
            worker = threading.Thread(target=self.sync_thread, name="conntrackd-actions", daemon=True)
            worker.start()
        next_tick = self.clock()
        while not self.stopping:
            now = self.clock()
            if now >= next_tick:
                self.tick()
                next_tick = max(next_tick + self.ha.interval, self.clock())
            wait = max(0.0, next_tick - self.clock())
            try:
                ready, _, _ = select.select([self.hb_sock, self.check_sock], [], [], wait)
            except InterruptedError:
                continue
            for s in ready:
                self.receive(s)
        if self.sync:
            self.sync_jobs.put(None)
            worker.join(ACTION_WAIT)
            self.sync.stop()
        self.event("stop")


USAGE = """usage: appliance ha [--config FILE]           the HA service (docs/ha.md)
       appliance ha status [--config FILE] [--json]   who is primary, since when, last heartbeat and decision"""


def _config(args):
    cfg = _load(args)
    return None if cfg is None else cfg.ha


def _load(args):
    from appliance.config import ConfigError, load_config
    path = "/etc/appliance/appliance.yaml"
    if "--config" in args:
        i = args.index("--config")
        if i + 1 >= len(args):
            raise SystemExit(USAGE)
        path = args[i + 1]
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print("\n".join(e.problems), file=sys.stderr)
        return None
    if cfg.ha is None:
        print(f"{path}:1: no ha: section (docs/ha.md)", file=sys.stderr)
        return None
    return cfg


def _region():
    r = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if r:
        return r
    from appliance.aws.imds import Imds
    return Imds().region()


def main_ha(args):
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    if args[:1] == ["status"]:
        return main_status(args[1:])
    cfg = _load(args)
    if cfg is None:
        return 1
    ha = cfg.ha
    from appliance.aws import ec2
    from appliance.aws.imds import Imds, ImdsError
    from appliance.ha import methods
    from appliance.ha.settings import read_secret
    try:
        secret = read_secret(ha)
        routes, ha, notes = methods.build(ha, ec2.client(_region()), cfg.aws.status_file, Imds())
        sync = None
        if ha.sync:
            from appliance.ha.conntrackd import Conntrackd
            sync = Conntrackd(ha)
        svc = Service(ha, secret, routes, sync=sync)
    except (ValueError, ImdsError, Ec2Error, OSError) as e:
        print(f"appliance ha: {e}", file=sys.stderr)
        return 1

    def stop(*_):
        svc.stopping = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if notes:
        svc.event("resolved", method=ha.method, notes=notes)
    svc.run()
    return 0


def main_status(args):
    ha = _config(args)
    if ha is None:
        return 1
    try:
        with open(ha.status_file) as f:
            st = json.load(f)
    except (OSError, ValueError) as e:
        print(f"appliance ha status: {ha.status_file}: {e} (is `appliance ha` running?)", file=sys.stderr)
        return 1
    if "--json" in args:
        print(json.dumps(st, indent=1))
        return 0
    peer = st.get("peer") or {}
    d = st.get("last_decision") or {}
    print(f"state        {st.get('state')} since {st.get('since')} (status written {st.get('written')})")
    print(f"routes       owner {st.get('route_owner')}: {st.get('routes')}")
    print(f"peer         {peer.get('state')} ready={peer.get('ready')} last heartbeat {peer.get('last_heartbeat')}"
          f", last check reply {peer.get('last_check_reply')}")
    print(f"decision     {d.get('code')} at {d.get('at')}: {d.get('reason')}")
    print(f"takeovers    {st.get('takeovers')}   packets {st.get('packets')}")
    if "sync" in st:
        sy = st["sync"]
        print(f"sync         conntrackd {'running' if sy.get('running') else 'NOT running'} "
              f"(restarts {sy.get('restarts')}), {sy.get('counters')}, actions {sy.get('actions')}")
    return 0
