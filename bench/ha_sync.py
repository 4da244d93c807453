"""Offloaded connections across an HA takeover, conntrackd sync on vs off, in one run.

    python3 -m bench.ha_sync [--runs 3] [--conns 4] [--rate 200000] [--seconds 10]

Each run builds tests/aws/hasync_lab.py's lab (two appliances with `appliance run` + `appliance
ha`, moto as EC2, namespaces hsy-*), starts --conns TCP transfers of --rate bytes/s each through
the primary, waits until every one is offloaded (PASS connmark), kills the primary's datapath,
lets the standby take the route and points the client's and server's routes at it. Printed per
mode: connections kept (still moving a second after the switch, everything written delivered),
bytes written that never arrived, the longest pause of a kept transfer around the switch, and
the time from the failure to the route change. The rule set has name rules (an SNI and a Host
blocklist): without sync, a connection picked up midstream cannot have its names known, and
exception_policy (drop by default) decides. `--rules ports` loads a port-only rule set instead:
then the midstream pickup is judged by its ports. Needs root; everything is removed at the end.

    python3 -m bench.ha_sync --commit 10000,50000

The commit's cost instead (it runs before ReplaceRoute, so it adds to every takeover): two
namespaces with `appliance ha`'s conntrackd config (appliance/ha/conntrackd.py) over a veth
pair; N offloaded-looking entries (PASS mark) loaded into the first's kernel (`conntrack -R`),
the time until all are in the second's external cache, then `conntrackd -c` timed there;
the baseline is the commit of an empty cache, measured in the same run.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "aws"))

PORT_RULES = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: tcp, dst_port: 2222}
"""


def one(sync, rules, conns, rate, seconds):
    from hasync_lab import SyncLab, takeover_run
    with tempfile.TemporaryDirectory(prefix="hsy-bench-") as tmp:
        lab = SyncLab(Path(tmp), sync=sync, rules=rules)
        try:
            lab.up()
            return takeover_run(lab, conns=conns, rate=rate, seconds=seconds)
        finally:
            lab.close()


def commit_cost(n, tmp):
    """(seconds until n entries reached the peer's external cache, seconds of `conntrackd -c`)."""
    import dataclasses
    from appliance.ha.conntrackd import Conntrackd
    from appliance.ha.settings import Ha, Sync
    tag = f"{os.getpid() % 100000}"
    ns = [f"hsy-cb1-{tag}", f"hsy-cb2-{tag}"]
    made, daemons = [], []

    def sh(*a):
        subprocess.run(a, check=True, capture_output=True)
    try:
        for x in ns:
            sh("ip", "netns", "add", x)
            made.append(x)
            sh("ip", "-n", x, "link", "set", "lo", "up")
        sh("ip", "-n", ns[0], "link", "add", "mgmt", "type", "veth", "peer", "name", "mgmt", "netns", ns[1])
        for i, x in enumerate(ns, 1):
            sh("ip", "-n", x, "addr", "add", f"10.30.0.{i}/24", "dev", "mgmt")
            sh("ip", "-n", x, "link", "set", "mgmt", "up")
            run_dir = Path(tmp) / f"{n}-{i}"
            run_dir.mkdir()
            wrapper = run_dir / "conntrackd-in-ns"      # conntrackd and its control commands in the namespace
            wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {x} conntrackd \"$@\"\n")
            wrapper.chmod(0o755)
            ha = Ha(listen=f"10.30.0.{i}:7400", peer=f"10.30.0.{3 - i}:7400", check_listen=f"10.31.0.{i}:7401",
                    check_peer=f"10.31.0.{3 - i}:7401",
                    sync=Sync(address=f"10.30.0.{i}", peer=f"10.30.0.{3 - i}", interface="mgmt",
                              run_dir=str(run_dir), conntrackd=str(wrapper)))
            d = Conntrackd(dataclasses.replace(ha))
            daemons.append(d)
            ok, detail = d.start()
            if not ok:
                raise RuntimeError(detail)
        entries = "".join(f"-I -p tcp -s 10.{64 + i // 62500}.{i // 250 % 250}.{i % 250 + 1} -d 10.2.0.2 "
                          f"--sport {1024 + i % 60000} --dport 5001 --state ESTABLISHED --timeout 3600 "
                          f"--mark 4096 --status ASSURED\n" for i in range(n))
        t0 = time.perf_counter()
        subprocess.run(["ip", "netns", "exec", ns[0], "conntrack", "-R", "-"], input=entries, text=True,
                       check=True, capture_output=True)
        deadline = t0 + 300
        while daemons[1].counters().get("external_entries", 0) < n and time.perf_counter() < deadline:
            time.sleep(0.1)
        synced = time.perf_counter() - t0
        got = daemons[1].counters().get("external_entries", 0)
        t1 = time.perf_counter()
        ok, detail = daemons[1].run("-c")
        commit = time.perf_counter() - t1
        if not ok:
            raise RuntimeError(detail)
        return synced, commit, got
    finally:
        for d in daemons:
            d.stop()
        for x in made:
            subprocess.run(["ip", "netns", "del", x], capture_output=True)


def main_commit(sizes):
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"load: {load}")
    with tempfile.TemporaryDirectory(prefix="hsy-bench-") as tmp:
        _, base, _ = commit_cost(0, tmp)
        print(f"baseline: conntrackd -c of an empty cache {base * 1000:.0f} ms")
        print(f"{'entries':>8} {'at the peer':>12} {'in its cache after':>19} {'commit':>9} {'commit - baseline':>18} "
              f"{'per 10k entries':>16}")
        for n in sizes:
            synced, commit, got = commit_cost(n, tmp)
            print(f"{n:>8} {got:>12} {synced:>17.2f} s {commit:>7.2f} s {commit - base:>16.2f} s "
                  f"{(commit - base) / n * 10000:>14.3f} s", flush=True)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.ha_sync", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rate", type=int, default=200_000, help="bytes/s per transfer")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each transfer")
    ap.add_argument("--rules", choices=("names", "ports"), default="names")
    ap.add_argument("--commit", metavar="N,N", help="measure the commit's cost for these entry counts instead")
    o = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("SKIPPED: needs root (network namespaces, NFQUEUE)")
        return 0
    sys.path.insert(0, str(ROOT))
    if o.commit:
        return main_commit([int(x) for x in o.commit.split(",")])
    from hasync_lab import RULES
    rules = RULES if o.rules == "names" else PORT_RULES
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"python3 -m bench.ha_sync {' '.join(argv if argv is not None else sys.argv[1:])}".strip())
    print(f"load: {load}")
    print(f"{o.conns} transfers x {o.rate} B/s x {o.seconds:g}s, rules: {o.rules}; sync on and off alternate, "
          f"{o.runs} runs each")
    res = {True: [], False: []}
    t0 = time.perf_counter()
    for i in range(o.runs):
        for sync in (True, False):
            r = one(sync, rules, o.conns, o.rate, o.seconds)
            res[sync].append(r)
            pause = "-" if r["longest_pause"] is None else f"{r['longest_pause'] * 1000:.0f} ms"
            print(f"  run {i + 1} sync {'on ' if sync else 'off'}: kept {r['kept']}/{o.conns}, "
                  f"bytes never delivered {r['bytes_stalled']}, longest pause {pause}, "
                  f"failure -> route {r['fail_to_route_s'] * 1000:.0f} ms", flush=True)
    print()
    print(f"{'sync':5} {'kept':>9} {'bytes never delivered (median)':>31} {'longest pause (median)':>23}")
    for sync in (True, False):
        rs = res[sync]
        kept = sum(r["kept"] for r in rs)
        pauses = [r["longest_pause"] for r in rs if r["longest_pause"] is not None]
        print(f"{'on' if sync else 'off':5} {kept:>4}/{o.conns * len(rs):<4} "
              f"{statistics.median(r['bytes_stalled'] for r in rs):>31.0f} "
              f"{(f'{statistics.median(pauses) * 1000:.0f} ms' if pauses else '-'):>23}")
    on = sum(r["kept"] for r in res[True])
    off = sum(r["kept"] for r in res[False])
    print(f"\nconnections kept, sync on vs off: {on} vs {off} of {o.conns * o.runs} each "
          f"({'off kept none' if off == 0 else f'ratio {on / off:.2f}'}); total time {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
