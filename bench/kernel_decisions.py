"""Kernel pre-decision rows: new TCP connections/s through the appliance against plain kernel
forwarding measured in the same run (`python3 -m bench.kernel_decisions [--quick] [--runs N]`,
also part of `python3 -m bench`).

    header   the connections' verdict follows from a header-only rule (pass tcp dst_port 8080):
             with inspection.kernel_decisions the kernel passes them before any queue
    name     the verdict needs the HTTP Host (pass ... http_host: bench, default drop): each
             connection is queued until its request is read, then offloaded
    before   the header case with kernel_decisions off: every SYN is queued once (offload)

Eve types without protocol logs (a passed flow would otherwise stay queued to be logged: the
policy then leaves it to the queue, docs/performance.md). Uses bench.inline's namespaces.
"""
import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

from .common import Row, format_rows, log
from .inline import Lab, TCP_PORT, _why_skip

HEADER_RULES = f"""default_action: drop
rules:
  - {{id: 1, msg: web, action: pass, proto: tcp, dst_port: {TCP_PORT}}}
"""
NAME_RULES = f"""default_action: drop
rules:
  - {{id: 1, msg: web, action: pass, proto: tcp, dst_port: {TCP_PORT}, http_host: bench}}
"""


def start(lab, workdir, rules, kernel, timeout=40):
    tag = f"{'k' if kernel else 'q'}{abs(hash(rules)) % 1000}"
    rpath = os.path.join(workdir, f"rules-{tag}.yaml")
    with open(rpath, "w") as f:
        f.write(rules)
    cfg = os.path.join(workdir, f"appliance-{tag}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""interfaces: {{outside: bench-out, inside: bench-in}}
rules: {rpath}
eve: {{path: {os.path.join(workdir, 'eve.json')}, types: [alert, anomaly, flow, stats]}}
home_net: [10.201.2.0/24]
workers: 1
failure_mode: closed
inspection: {{kernel_decisions: {'true' if kernel else 'false'}}}
""")
    p = lab.spawn(lab.r, [sys.executable, "-m", "appliance.run", "--config", cfg], wait_for=None)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.poll() is not None:
            _, err = lab.stop(p)
            raise RuntimeError(f"appliance.run exited {p.returncode}: {err.strip()[-400:]}")
        ready = "NFQUEUE" in lab.run(lab.r, "iptables-save", check=False).stdout
        if ready and (not kernel or lab.run(lab.r, "nft", "list", "table", "inet", "appliance_decide",
                                            check=False).returncode == 0):
            time.sleep(2.0)                   # the workers finish starting before the load begins
            return p
        time.sleep(0.3)
    lab.stop(p)
    raise RuntimeError(f"appliance.run: not ready after {timeout}s")


def stop(lab, p):
    lab.stop_appliance(p)
    lab.run(lab.r, "nft", "delete", "table", "inet", "appliance_decide", check=False)


def queued(lab):
    lines = lab.run(lab.r, "cat", "/proc/net/netfilter/nfnetlink_queue", check=False).stdout.splitlines()
    return sum(int(line.split()[7]) for line in lines if len(line.split()) > 7)


def rows(quick=False, runs=None):
    runs = runs or 3
    T = 2 if quick else 5
    R = {
        "before": Row("new TCP connections/s, header-only pass rule, kernel decisions off", "kernel forwarding",
                      "conn/s", ">= 0.50"),
        "header": Row("new TCP connections/s, header-only pass rule, kernel decisions on", "kernel forwarding",
                      "conn/s", ">= 0.90"),
        "name": Row("new TCP connections/s, flows that need a name (http_host), kernel decisions on",
                    "kernel forwarding", "conn/s", ">= 0.60"),
    }
    why = _why_skip() or (None if shutil.which("nft") else "nft not installed")
    if why:
        for r in R.values():
            r.status, r.note = "SKIPPED", why
        return list(R.values())
    lab = Lab()
    prev = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    work = tempfile.mkdtemp(prefix="bench-kd-")
    try:
        log("kernel decisions: building namespaces " + ", ".join((lab.c, lab.r, lab.s)))
        lab.up()
        for run in range(runs):
            got = {}
            for key, rules, kernel in (("before", HEADER_RULES, False), ("header", HEADER_RULES, True),
                                       ("name", NAME_RULES, True)):
                # the baseline right before each: the load of a shared machine drifts in minutes
                got[key + "_kernel"] = k = lab.conns(T)
                p = start(lab, work, rules, kernel)
                try:
                    q0 = queued(lab)
                    got[key] = lab.conns(T)
                    got[key + "_queued"] = queued(lab) - q0
                finally:
                    stop(lab, p)
                R[key].add(got[key], k)
            log(f"kernel decisions run {run + 1}/{runs}: " + ", ".join(
                f"{key} {got[key]:,.0f} conn/s vs kernel {got[key + '_kernel']:,.0f} ({got[key + '_queued']:,} queued)"
                for key in ("before", "header", "name")))
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, prev)
    return list(R.values())


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.kernel_decisions")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    o = ap.parse_args(argv)
    print(format_rows(rows(o.quick, o.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
