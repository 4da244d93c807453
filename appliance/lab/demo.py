"""`appliance lab demo`: run the appliance between the lab's client and server, send real traffic, report.

Each probe is one real client (curl, dig, nc, ping) run in the client namespace; its outcome is read
from the client's own result (exit code, output, error text), never from timing:
  allowed   the client got its answer
  blocked   no answer: the client timed out
  rejected  the client was refused or reset at once
Alerts are read from the appliance's EVE file and attributed to the probe that caused them.
"""
from dataclasses import dataclass, field
from datetime import datetime
import json
from pathlib import Path
import signal
import subprocess
import sys
import time

from . import down, is_up, shielded, up
from .services import REPO_ROOT, TELNET_BANNER, TESTMYIDS_BODY, python_env, spawn
from .topology import HOME_NET, SERVER_V4, SERVER_V6, Lab, LabError, ns_exec, run

DEFAULT_RULES = REPO_ROOT / "rules" / "lab"
CLIENT_TIMEOUT = 4          # seconds a client waits before we call the probe "blocked"
CONTROL = "127.0.0.1:9900"  # the appliance's control server, in the appliance namespace


# ------------------------------------------------------------------ probes

@dataclass
class Probe:
    name: str
    expect: str                      # allowed | blocked | rejected
    cmd: list                        # run in the client namespace
    want: str                        # text in stdout that proves the answer came from the server
    kind: str                        # curl | dig | nc | ping: how to read the client's result
    proto: str                       # tcp | udp | icmp: for attributing alerts
    port: int | None = None
    sids: tuple = ()                 # alerts this probe must raise
    stdin: bytes = b""
    observed: str = ""
    detail: str = ""
    alerts: list = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0

    @property
    def missing_sids(self) -> list:
        seen = {a.get("alert", {}).get("signature_id") for a in self.alerts}
        return [sid for sid in self.sids if sid not in seen]

    @property
    def ok(self) -> bool:
        return self.observed == self.expect and not self.missing_sids


def _curl(url, host=None, port=None, tls=False, ip=SERVER_V4):
    cmd = ["curl", "-sS", "-m", str(CLIENT_TIMEOUT), "-o", "-"]
    if tls:
        cmd.append("-k")                        # the lab certificate is self-signed
    if host:
        cmd += ["--resolve", f"{host}:{port}:{ip}"]
    return cmd + [url]


def probes() -> list:
    """The demo's traffic, one probe per rule in rules/lab plus the traffic that must pass."""
    dig = ["dig", f"@{SERVER_V4}", f"+time={CLIENT_TIMEOUT}", "+tries=1", "+short"]
    return [
        Probe("HTTP  Host www.example.com", "allowed", _curl("http://www.example.com/", "www.example.com", 80),
              "host=www.example.com", "curl", "tcp", 80, sids=(1000010,)),
        Probe("HTTP  Host blocked.example.net", "blocked",
              _curl("http://blocked.example.net/", "blocked.example.net", 80), "host=", "curl", "tcp", 80,
              sids=(1000001,)),
        Probe("HTTP  /testmyids (response content)", "allowed",
              _curl("http://www.example.com/testmyids", "www.example.com", 80),
              TESTMYIDS_BODY.decode().strip(), "curl", "tcp", 80, sids=(1000011,)),
        Probe("HTTP  over IPv6", "allowed", ["curl", "-sS", "-m", str(CLIENT_TIMEOUT), "-g", f"http://[{SERVER_V6}]/"],
              "host=", "curl", "tcp", 80),
        Probe("TLS   SNI www.example.com", "allowed",
              _curl("https://www.example.com/", "www.example.com", 443, tls=True),
              "host=www.example.com", "curl", "tcp", 443),
        Probe("TLS   SNI www.blocked.example.net", "blocked",
              _curl("https://www.blocked.example.net/", "www.blocked.example.net", 443, tls=True),
              "host=", "curl", "tcp", 443, sids=(1000002,)),
        Probe("DNS   A www.example.com", "allowed", dig + ["www.example.com", "A"], SERVER_V4, "dig", "udp", 53),
        Probe("DNS   A bad.example", "blocked", dig + ["bad.example", "A"], SERVER_V4, "dig", "udp", 53,
              sids=(1000003,)),
        Probe("TCP   echo port 7", "allowed", ["nc", "-v", "-N", "-w", str(CLIENT_TIMEOUT), SERVER_V4, "7"],
              "lab-echo", "nc", "tcp", 7, stdin=b"lab-echo\n"),
        Probe("TCP   telnet port 23", "rejected", ["nc", "-v", "-w", str(CLIENT_TIMEOUT), SERVER_V4, "23"],
              TELNET_BANNER.decode().strip(), "nc", "tcp", 23, sids=(1000004,)),
        Probe("ICMP  ping", "allowed", ["ping", "-c", "1", "-W", str(CLIENT_TIMEOUT), SERVER_V4], "", "ping", "icmp"),
        Probe("ICMP  ping IPv6", "allowed", ["ping", "-6", "-c", "1", "-W", str(CLIENT_TIMEOUT), SERVER_V6], "",
              "ping", "icmp"),
    ]


def outcome(p: Probe, rc: int, out: str, err: str) -> str:
    """allowed | blocked | rejected | error: ..., from what the client itself reported."""
    text = (out + " " + err).lower()
    if p.kind == "ping":
        return "allowed" if rc == 0 else "blocked" if rc == 1 else f"error: ping exit {rc}"
    if rc == 0 and p.want in out:
        return "allowed"
    if "refused" in text or "reset" in text:
        return "rejected"
    if p.kind == "curl" and rc == 28 or p.kind == "dig" and rc == 9 or p.kind == "nc" and "timed out" in text:
        return "blocked"
    if p.kind == "nc" and rc == 0 and "succeeded" in text:
        return "blocked"             # connected, but the data never came back
    return f"error: {p.kind} exit {rc}"


def send(lab: Lab, p: Probe) -> None:
    p.start = time.time()
    proc = subprocess.run(ns_exec(lab.client, *p.cmd), input=p.stdin, capture_output=True,
                          timeout=CLIENT_TIMEOUT + 10)
    p.end = time.time()
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    p.observed = outcome(p, proc.returncode, out, err)
    said = (err.strip() or out.strip()).splitlines()
    p.detail = said[-1] if said else f"exit {proc.returncode}, no output"


# ------------------------------------------------------------------ the appliance

def write_config(lab: Lab, rules: Path) -> tuple:
    config, eve = lab.workdir / "appliance.yaml", lab.workdir / "eve.json"
    eve.unlink(missing_ok=True)
    config.write_text(
        "# written by `appliance lab demo`\n"
        "interfaces: {outside: eth0, inside: eth1, management: null}\n"
        f"rules: {json.dumps(str(rules))}\n"            # JSON strings are YAML strings: any path is safe
        f"eve: {json.dumps(str(eve))}\n"
        f"home_net: [{', '.join(HOME_NET)}]\n"
        "workers: 1\n"
        "failure_mode: open\n"
        "offload: true\n"
        f"control: {{listen: {CONTROL}}}\n")        # /metrics, /readyz, `appliance status` (loopback of the fw namespace)
    return config, eve


def start_appliance(lab: Lab, config: Path, timeout: float = 30) -> subprocess.Popen:
    """`appliance run` in the appliance namespace; returns once its queue rule is installed and bound."""
    log = lab.workdir / "appliance.log"
    log.unlink(missing_ok=True)
    proc = spawn(lab.fw, [sys.executable, "-m", "appliance.run", "--config", str(config)], log)
    lab.write_state(appliance_pid=proc.pid)      # not a service: `up` does not wait for it to live
    deadline = time.monotonic() + timeout
    while not queue_ready(lab):
        if proc.poll() is not None:
            raise LabError(f"appliance run exited with {proc.returncode} before its queue was ready:\n"
                           + _tail(log))
        if time.monotonic() > deadline:
            raise LabError(f"appliance run: no NFQUEUE rule bound in {lab.fw} after {timeout}s:\n" + _tail(log))
        time.sleep(0.2)
    return proc


def queue_ready(lab: Lab) -> bool:
    """A queue rule is in the appliance namespace's IPv4 and IPv6 rulesets and a process is bound to a queue."""
    for save in ("iptables-save", "ip6tables-save"):
        if "NFQUEUE" not in run(ns_exec(lab.fw, save), check=False).stdout:
            return False
    queues = run(ns_exec(lab.fw, "cat", "/proc/net/netfilter/nfnetlink_queue"), check=False).stdout
    return bool(queues.strip())


def control_status(lab: Lab) -> str:
    """`appliance status` as an operator runs it, against the demo's appliance (after its
    workers' next once-a-second report, so the probes are counted)."""
    time.sleep(1.2)
    proc = subprocess.run(ns_exec(lab.fw, sys.executable, "-m", "appliance", "status", "--control", CONTROL),
                          capture_output=True, text=True, timeout=30, cwd=REPO_ROOT, env=python_env())
    return "\n`appliance status` in the appliance namespace:\n" + proc.stdout + proc.stderr


def stop_appliance(lab: Lab, proc: subprocess.Popen, grace: float = 15) -> str:
    """SIGTERM and wait; returns how it ended: 'exit 0', 'exit N' or 'killed'."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return "killed"
    return f"exit {proc.returncode}"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join("    " + line for line in path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return f"    ({path} not written)"


# ------------------------------------------------------------------ EVE

def read_events(eve: Path) -> list:
    events = []
    try:
        for line in eve.read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event_type": "unparsable", "line": line})
    except FileNotFoundError:
        pass
    return events


def _when(event: dict) -> float | None:
    ts = event.get("timestamp", "")
    for parse in (lambda s: datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f%z"), datetime.fromisoformat):
        try:
            return parse(ts).timestamp()
        except (TypeError, ValueError):
            pass
    return None


def attribute(alerts: list, sent: list) -> list:
    """Give each alert to the probe that caused it: same protocol and port, and sent when it fired
    (else the last such probe sent before it). Returns the alerts no probe claims."""
    unclaimed = []
    for a in alerts:
        proto = str(a.get("proto", "")).lower()
        ports = {a.get("src_port"), a.get("dest_port")}
        fits = [p for p in sent if proto.startswith(p.proto) or (p.proto == "icmp" and "icmp" in proto)]
        fits = [p for p in fits if p.port is None or p.port in ports]
        t = _when(a)
        chosen = None
        if t is not None:
            chosen = next((p for p in fits if p.start <= t <= p.end), None)
            if chosen is None:
                before = [p for p in fits if p.start <= t]
                chosen = before[-1] if before else None
        elif fits:
            chosen = next((p for p in fits if set(p.sids) & {a.get("alert", {}).get("signature_id")}), fits[0])
        (chosen.alerts if chosen else unclaimed).append(a)
    return unclaimed


# ------------------------------------------------------------------ report

def _alert_text(a: dict) -> str:
    al = a.get("alert", {})
    name = (a.get("tls", {}).get("sni") or a.get("http", {}).get("hostname")
            or next((q.get("rrname") for q in a.get("dns", {}).get("queries", [])), None))
    seen = f" [{a.get('app_proto')} {name}]" if name else ""
    return f"{al.get('signature_id')} {al.get('signature', '')} ({al.get('action', '?')}){seen}"


def report(sent: list, unclaimed: list, shutdown: str, events: list, eve: Path, out=sys.stdout) -> bool:
    w = max(len(p.name) for p in sent) + 2
    print(f"\n{'PROBE':<{w}}{'EXPECTED':<10}{'OBSERVED':<10}{'RESULT':<10}ALERTS (sid msg (action))", file=out)
    for p in sent:
        alerts = "; ".join(_alert_text(a) for a in p.alerts) or "-"
        result = "ok" if p.ok else "MISMATCH"
        print(f"{p.name:<{w}}{p.expect:<10}{p.observed:<10}{result:<10}{alerts}", file=out)
        if p.observed != p.expect and p.detail:
            print(f"{'':<{w}}  client said: {p.detail}", file=out)
        if p.missing_sids:
            print(f"{'':<{w}}  missing alert(s): {', '.join(map(str, p.missing_sids))}", file=out)
    clean = shutdown == "exit 0"
    print(f"{'appliance stop (SIGTERM)':<{w}}{'exit 0':<10}{shutdown:<10}{'ok' if clean else 'MISMATCH'}", file=out)
    for a in unclaimed:
        print(f"  alert not tied to a probe: {_alert_text(a)} {a.get('src_ip')} -> {a.get('dest_ip')}", file=out)
    counts = {}
    for e in events:
        counts[e.get("event_type", "?")] = counts.get(e.get("event_type", "?"), 0) + 1
    good = sum(p.ok for p in sent)
    print(f"\n{good}/{len(sent)} probes as expected; EVE {eve}: "
          + (", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no events"), file=out)
    return good == len(sent) and clean


def run_demo(lab: Lab, rules: str | None = None, keep: bool = False) -> int:
    rules_path = Path(rules).resolve() if rules else DEFAULT_RULES
    if not rules_path.exists():
        raise LabError(f"{rules_path}: no such rule file or directory")
    brought_up = up(lab) if not is_up(lab) else False
    appliance = None
    shutdown = "not started"
    try:
        config, eve = write_config(lab, rules_path)
        print(f"lab {lab.name}: starting the appliance in {lab.fw} with {rules_path}")
        appliance = start_appliance(lab, config)
        sent = []
        for p in probes():
            send(lab, p)
            sent.append(p)
            print(f"  {p.name:<40} {p.observed}", flush=True)
        print(control_status(lab), end="", flush=True)
        with shielded():
            shutdown = stop_appliance(lab, appliance)
        events = read_events(eve)
        unclaimed = attribute([e for e in events if e.get("event_type") == "alert"], sent)
        ok = report(sent, unclaimed, shutdown, events, eve)
        if not ok:
            print(f"last lines of the appliance log ({lab.workdir / 'appliance.log'}):\n"
                  + _tail(lab.workdir / "appliance.log"))
        return 0 if ok else 1
    finally:
        with shielded():
            if appliance is not None and appliance.poll() is None:
                stop_appliance(lab, appliance)
            if brought_up and not keep:
                down(lab)
            elif keep:
                print(f"lab {lab.name} kept up: `appliance lab down --name {lab.name}` removes it")
