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


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.ha_sync", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--rate", type=int, default=200_000, help="bytes/s per transfer")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each transfer")
    ap.add_argument("--rules", choices=("names", "ports"), default="names")
    o = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("SKIPPED: needs root (network namespaces, NFQUEUE)")
        return 0
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
