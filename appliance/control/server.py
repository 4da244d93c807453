"""The control-plane HTTP server: a thread of `appliance run`'s supervisor (docs/operations.md).

    /metrics  Prometheus text format (metrics.py)
    /healthz  liveness: the supervisor's loop turns (200) or is stuck (503)
    /readyz   readiness, the signal an HA pair or a GWLB target group uses: every worker
              bound and answering, the rules loaded in every worker, our kernel chains
              present and as installed, the EVE file writable, the data links up; 503 names
              what failed
    /status   JSON for `appliance status`
    /flows    JSON for `appliance flows` (?top=N): asks the workers for their tables

Why a thread of the supervisor: it already holds what the answers are made of (the workers'
channels, the installed chains, the rule set's version) and runs in its own process, so a
scrape costs the workers nothing but their once-a-second snapshot; a separate process would
need all of it copied over another channel. It binds only the address `control.listen`
names: loopback, or an address of the management interface (check_bind, at start).
"""
import ipaddress
import json
import logging
import os
import socket
import subprocess
import threading
import time
from urllib.parse import parse_qs, urlparse

from appliance import netfilter

from . import kernel, metrics
from .bounded import BoundedHandler, BoundedHTTPServer

log = logging.getLogger("appliance.control")

HEARTBEAT_STALE = 10.0         # seconds: the supervisor's loop turns every 0.2 s
MAX_CLIENTS = 32               # connections served at once (a scrape, the HA check, an operator): the oldest cut
CONTROL_NICE = 10              # the server's threads (and the iptables they run) yield to the workers


def interface_addresses(name) -> set:
    """Addresses of one interface in this namespace (`ip -j addr`)."""
    if not name:
        return set()
    try:
        r = subprocess.run(["ip", "-j", "addr", "show", "dev", name], capture_output=True, text=True, timeout=10)
        return {a["local"] for link in json.loads(r.stdout or "[]") for a in link.get("addr_info", [])}
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return set()


def check_bind(cfg) -> str | None:
    """Why the control server must not listen where the config says, or None. A data
    interface's address is never allowed (unless control.allow_any_address); anything other
    than loopback must be an address of interfaces.management."""
    ctl = cfg.control
    host = ipaddress.ip_address(ctl.host)
    if ctl.allow_any_address or host.is_loopback:
        return None
    if host.is_unspecified:
        return f"control.listen: {ctl.host} listens on every interface (set control.allow_any_address: true on purpose)"
    for role in ("outside", "inside"):
        if ctl.host in interface_addresses(getattr(cfg, role)):
            return (f"control.listen: {ctl.host} is an address of the {role} (data) interface "
                    f"{getattr(cfg, role)}: /metrics and /status would answer the traffic being inspected; "
                    "use 127.0.0.1 or the management interface's address")
    if ctl.host not in interface_addresses(cfg.management):
        where = f"interfaces.management ({cfg.management})" if cfg.management else "no interfaces.management is set"
        return (f"control.listen: {ctl.host} is not loopback nor an address of the management interface "
                f"({where}); set control.allow_any_address: true to listen there anyway")
    return None


class Control:
    """The server and the answers; `supervisor` gives the running config, workers and chains."""

    def __init__(self, supervisor, board):
        self.sup = supervisor
        self.board = board
        self.registry = metrics.registry(board)
        ctl = supervisor.cfg.control
        family = socket.AF_INET6 if ":" in ctl.host else socket.AF_INET
        server_cls = type("ControlHTTPServer", (BoundedHTTPServer,), {"address_family": family,
                                                                      "max_clients": MAX_CLIENTS})
        self.httpd = server_cls((ctl.host, ctl.port), _handler(self))
        self.thread = threading.Thread(target=self._serve, name="control", daemon=True)

    def start(self):
        self.thread.start()
        log.info("control server on %s port %d (/metrics /healthz /readyz /status /flows)",
                 self.sup.cfg.control.host, self.sup.cfg.control.port)

    def _serve(self):
        # Linux: a thread has its own nice value, and the request threads (and the iptables
        # processes they start) inherit it from this one: the supervisor's loop keeps its own
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CONTROL_NICE)
        except OSError:
            pass
        self.httpd.serve_forever()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- answers ------------------------------------------------------------------

    def healthz(self):
        age = time.monotonic() - self.board.heartbeat
        ok = age < HEARTBEAT_STALE
        return (200 if ok else 503), {"status": "ok" if ok else "stuck", "supervisor_loop_age": round(age, 2)}

    def readyz(self):
        checks = {"workers": self._workers_ready(), "rules": self._rules_ready(),
                  "kernel": self._kernel_ready(), "eve": self._eve_ready(), "links": self._links_ready()}
        ok = all(c["ok"] for c in checks.values())
        failed = [name for name, c in checks.items() if not c["ok"]]
        return (200 if ok else 503), {"ready": ok, "failed": failed, "checks": checks}

    def _workers_ready(self):
        problems = []
        for q in self.sup.cfg.queues:
            p = self.sup.workers.get(q)
            if p is None or not p.is_alive():
                problems.append(f"queue {q}: no worker")
            elif not self.board.bound.get(q):
                problems.append(f"queue {q}: worker not bound")
            elif not self.board.fresh(q):
                problems.append(f"queue {q}: worker {p.pid} not answering (no snapshot within 3 s)")
        return {"ok": not problems, "problems": problems}

    def _rules_ready(self):
        want = self.board.rules["rules"]
        snaps, _ = self.board.snapshots()
        problems = [f"queue {q}: runs {s['rules']} rules, the loaded set has {want}"
                    for q, s in sorted(snaps.items()) if s["rules"] != want]
        problems += [f"queue {q}: has not reported its rules" for q in self.sup.cfg.queues if q not in snaps]
        return {"ok": not problems, "problems": problems, "rules": want, "hash": self.board.rules["hash"]}

    def _kernel_ready(self):
        installed = self.board.installed
        if not installed:
            return {"ok": False, "problems": ["our chains are not installed"]}
        try:
            problems = netfilter.drift(installed, kernel.filter_tables())
        except netfilter.NetfilterError as e:
            problems = [str(e)]
        return {"ok": not problems, "problems": problems}

    def _links_ready(self):
        # A datapath whose data interface is down forwards nothing, however well its workers
        # answer: an HA peer or a load balancer must move the traffic (docs/ha.md).
        problems = []
        for role in ("outside", "inside"):
            name = getattr(self.sup.cfg, role, None)
            if name:
                state = kernel.link_state(name)
                if state != "up":
                    problems.append(f"{role} interface {name}: {state}")
        return {"ok": not problems, "problems": problems}

    def _eve_ready(self):
        path = self.sup.cfg.eve
        if path is None:
            return {"ok": True, "problems": [], "path": None}
        problems = []
        folder = os.path.dirname(path) or "."
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            problems.append(f"{folder}: not a writable directory")
        elif os.path.exists(path) and not os.access(path, os.W_OK):
            problems.append(f"{path}: not writable")
        else:
            st = os.statvfs(folder)
            if st.f_bavail * st.f_frsize < 1 << 20:
                problems.append(f"{folder}: less than 1 MiB free")
        snaps, prev = self.board.snapshots()
        for q, s in sorted(snaps.items()):
            p = prev.get(q)
            if p is not None and s["eve_lost"] > p["eve_lost"]:
                problems.append(f"queue {q}: {s['eve_lost'] - p['eve_lost']} EVE events lost in the last second")
        return {"ok": not problems, "problems": problems, "path": path}

    def status(self, top=None):
        cfg, board = self.sup.cfg, self.board
        top = top or cfg.control.top
        snaps, prev = board.snapshots()
        queues = kernel.queues()
        workers, rules = [], {}
        for q in cfg.queues:
            s, p, kq = snaps.get(q), prev.get(q), queues.get(q, {})
            proc = self.sup.workers.get(q)
            row = {"queue": q, "pid": proc.pid if proc else None, "alive": bool(proc and proc.is_alive()),
                   "answering": board.fresh(q), "kernel_dropped": kq.get("dropped", 0),
                   "kernel_user_dropped": kq.get("user_dropped", 0), "waiting": kq.get("waiting", 0)}
            if s is not None:
                row.update({k: s[k] for k in ("packets", "bytes", "offloaded", "errors", "internal_errors",
                                              "alerts", "verdicts", "flows_active", "flows_evicted", "rules")})
                dt = s["time"] - p["time"] if p else 0
                row["packets_per_second"] = round((s["packets"] - p["packets"]) / dt, 1) if dt > 0 else 0.0
                row["bytes_per_second"] = round((s["bytes"] - p["bytes"]) / dt, 1) if dt > 0 else 0.0
                for sid, msg, n in s["rules_top"]:
                    r = rules.setdefault(sid, {"sid": sid, "msg": msg, "alerts": 0})
                    r["alerts"] += n
            workers.append(row)
        tables = board.flow_tables(top)
        talkers = {}
        for t in tables.values():
            for row in t["talkers"]:
                have = talkers.setdefault(row["src"], {"src": row["src"], "bytes": 0, "pkts": 0, "flows": 0})
                for k in ("bytes", "pkts", "flows"):
                    have[k] += row[k]
        return 200, {
            "mode": {"mode": cfg.mode, "rules_mode": {g: m for g, m, _ in cfg.rules_mode},
                     "workers_mode": {str(q): s.get("mode") for q, s in sorted(snaps.items())},
                     "failure_mode": cfg.failure_mode, "offload": cfg.offload, "workers": cfg.workers,
                     "queues": list(cfg.queues), "outside": cfg.outside, "inside": cfg.inside},
            "uptime": round(time.time() - board.started, 1),
            "rules": {**board.rules, "path": cfg.rules},
            "last_reload": board.last_reload, "reloads": dict(board.reloads), "worker_restarts": board.restarts,
            "workers": workers,
            "drops": {"verdict_drop": sum(w.get("verdicts", {}).get("drop", 0) for w in workers),
                      "verdict_reject": sum(w.get("verdicts", {}).get("reject", 0) for w in workers),
                      "kernel_queue_dropped": sum(w["kernel_dropped"] for w in workers),
                      "kernel_user_dropped": sum(w["kernel_user_dropped"] for w in workers)},
            "top_rules": sorted(rules.values(), key=lambda r: -r["alerts"])[:top],
            "top_talkers": sorted(talkers.values(), key=lambda r: -r["bytes"])[:top],
            "flows_active": sum(t["active"] for t in tables.values()),
        }

    def flows(self, top):
        tables = self.board.flow_tables(top)
        flows = [dict(row, queue=q) for q, t in tables.items() for row in t["flows"]]
        flows.sort(key=lambda r: -r["bytes"])
        return 200, {"active": sum(t["active"] for t in tables.values()), "answered": sorted(tables),
                     "queues": list(self.sup.cfg.queues), "flows": flows[:top]}


def _handler(control):
    class Handler(BoundedHandler):
        server_version = "appliance-control"

        def log_message(self, fmt, *args):        # scrapes every second: not worth a log line each
            pass

        def do_GET(self):
            url = urlparse(self.path)
            query = parse_qs(url.query)
            try:
                if url.path == "/metrics":
                    body = metrics.generate_latest(control.registry)
                    return self._send(200, body, metrics.CONTENT_TYPE_LATEST)
                if url.path == "/healthz":
                    return self._json(*control.healthz())
                if url.path == "/readyz":
                    return self._json(*control.readyz())
                if url.path in ("/status", "/flows"):
                    top = _top(query)
                    if top is None:
                        return self._json(400, {"error": "top must be an integer from 1 to 1000"})
                    return self._json(*(control.status(top) if url.path == "/status" else control.flows(top)))
                return self._json(404, {"error": f"no {url.path}; try /metrics /healthz /readyz /status /flows"})
            except Exception as e:               # a bug answers 500, the server goes on
                log.exception("control: %s failed", url.path)
                return self._json(500, {"error": f"{type(e).__name__}: {e}"})

        def _json(self, code, obj):
            self._send(code, (json.dumps(obj, indent=1) + "\n").encode(), "application/json")

        def _send(self, code, body, ctype):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _top(query):
    raw = query.get("top", [None])[0]
    if raw is None:
        return 20
    try:
        n = int(raw)
    except ValueError:
        return None
    return n if 1 <= n <= 1000 else None
