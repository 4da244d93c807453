"""Verdict I/O: what a packet through Python costs on the live path, against the raw consumer.

    python3 -m bench.verdict_io [--runs 3] [--seconds 4] [--pings 300] [--compare TREE]

One lab (bench.inline.Lab), per run in alternating order: the raw accept-all consumer
(bench.rawqueue) and the appliance (1 worker, offload off, default rules) under the
small-packet UDP flood (8 sources); ping round trips through the kernel alone and through
the appliance; then ping through the appliance as deployed (this tree, offload on: an echo
flow decided by its first packets is passed by the kernel's connmark after them, so the median
is what a long ping sees in production, not the queue's round trip). `--compare TREE`: also the appliance of another checkout of this project
(e.g. `git archive BASE | tar -x -C /tmp/base`), measured in the same runs: the before of a
before/after. Printed: verdicts/s over the raw consumer's, ping added latency medians.
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

from .common import Row, format_rows, header, log, median
from .inline import Lab, ROOT


def _appliance(lab, work, tree):
    """bench.inline's appliance (1 worker, offload off), run from `tree`."""
    if tree == ROOT:
        return lab.start_appliance(work, offload=False, workers=1)
    cfg = os.path.join(work, "compare.yaml")
    p = lab.start_appliance(work, offload=False, workers=1)       # writes the config ...
    lab.stop_appliance(p)
    os.replace(os.path.join(work, "appliance-0-1.yaml"), cfg)
    argv = lab.ns(lab.r, sys.executable, "-m", "appliance.run", "--config", cfg)
    import subprocess
    p = subprocess.Popen(argv, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    lab.procs.append(p)
    deadline = time.time() + 40
    while "NFQUEUE" not in lab.run(lab.r, "iptables-save", check=False).stdout:
        if time.time() > deadline or p.poll() is not None:
            raise RuntimeError(f"{tree}: appliance did not start")
        time.sleep(0.3)
    time.sleep(1.0)
    return p


def _cpu(pids):
    """User + system CPU seconds of these processes so far."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                v = f.read().rsplit(")", 1)[1].split()
            total += (int(v[11]) + int(v[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def _workers(p):
    """The appliance's worker pids (children of appliance.run), or the process itself."""
    try:
        with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except OSError:
        kids = []
    return kids or [p.pid]


def _udp_cpu(lab, seconds, pids):
    """(verdicts/s, CPU us per verdict of `pids`) under the UDP flood."""
    before_rx, before_cpu = lab.rx_packets(), _cpu(pids)
    rate = lab.udp_verdicts(seconds)
    got = lab.rx_packets() - before_rx
    return rate, (_cpu(pids) - before_cpu) * 1e6 / max(got, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.verdict_io", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--compare", default=None, metavar="TREE")
    o = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(header("python3 -m bench.verdict_io " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    trees = [("this tree", ROOT)] + ([("compare", os.path.abspath(o.compare))] if o.compare else [])
    udp = {name: Row(f"UDP verdicts/s, 1 worker, offload off ({name})", "raw accept-all consumer", "pkt/s", ">= 0.80")
           for name, _ in trees}
    ping = {name: Row(f"ping added latency, median ({name})", "kernel path", "us", "<= 80") for name, _ in trees}
    raw_ping = Row("ping added latency, median (raw accept-all consumer)", "kernel path", "us", "<= 80")
    offloaded_ping = Row("ping added latency, median (this tree, offload on: as deployed)", "kernel path", "us", "<= 80")
    cpu = {name: Row(f"worker CPU per verdict, UDP flood ({name})", "raw consumer's CPU per verdict", "us",
                     "<= 1.25") for name, _ in trees}
    lab = Lab()
    work = tempfile.mkdtemp(prefix="bench-vio-")
    try:
        lab.up()
        for run in range(o.runs):
            order = trees if run % 2 == 0 else trees[::-1]
            k_ping = lab.ping_rtts(o.pings)
            procs = lab.start_raw(1)
            try:
                raw, raw_cpu = _udp_cpu(lab, o.seconds, [p.pid for p in procs])
                r_ping = lab.ping_rtts(o.pings)
            finally:
                lab.stop_raw(procs)
            raw_ping.add(median(r_ping), median(k_ping), ratio=median(r_ping) - median(k_ping))
            for name, tree in order:
                p = _appliance(lab, work, tree)
                try:
                    a, a_cpu = _udp_cpu(lab, o.seconds, _workers(p))
                    a_ping = lab.ping_rtts(o.pings)
                finally:
                    lab.stop_appliance(p)
                udp[name].add(a, raw)
                cpu[name].add(a_cpu, raw_cpu)
                ping[name].add(median(a_ping), median(k_ping), ratio=median(a_ping) - median(k_ping))
                log(f"run {run + 1}: {name}: {a:,.0f} verdicts/s vs raw {raw:,.0f} ({a_cpu:.2f} vs {raw_cpu:.2f} "
                    f"us CPU per verdict); ping median "
                    f"{median(a_ping):.0f} us vs kernel {median(k_ping):.0f} us")
            p = lab.start_appliance(work, offload=True, workers=1)
            try:
                o_ping = lab.ping_rtts(o.pings)
            finally:
                lab.stop_appliance(p)
            offloaded_ping.add(median(o_ping), median(k_ping), ratio=median(o_ping) - median(k_ping))
            log(f"run {run + 1}: offload on: ping median {median(o_ping):.0f} us vs kernel {median(k_ping):.0f} us")
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(format_rows([raw_ping] + [r for name, _ in trees for r in (udp[name], cpu[name], ping[name])]
                      + [offloaded_ping]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
