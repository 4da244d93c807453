"""Replay speed of several source trees (commits) on the same capture and rules, in one run.

    python3 -m bench.since_round1 --tree old=/path/to/old-worktree --tree main=/path/to/main[,pure] ...
        [--pcap FILE ...] [--packets 200000] [--runs 5] [--rules 1000]

Each tree is a checkout of this project (a `git worktree add --detach PATH COMMIT`); ",pure"
runs it with APPLIANCE_PURE_PYTHON=1. Every replay runs in a fresh subprocess whose cwd is the
tree, so it imports that tree's appliance package; it times the bare dpkt read loop and the
replay back to back in CPU time (on a shared machine the wall clock mostly measures the other
tenants). The trees alternate run by run, the rules file and the capture are the same bytes for
all of them (written once by this tree's bench.rulegen / bench.gen_pcap), so the ratio between
two trees is the change of the code, not of the workload. The child uses only the API the
project has had since round 1 (load_rules, Inspector(ruleset, Settings(max_flows)), replay).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from . import gen_pcap
from .rulegen import write_rules

PURE_ENV = "APPLIANCE_PURE_PYTHON"

CHILD = r"""
import json, sys, time
import dpkt
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.replay import replay
pcap, rules = sys.argv[1], sys.argv[2]
ruleset = load_rules(rules)
t = time.process_time()
n0 = 0
with open(pcap, "rb") as f:
    for _rec in dpkt.pcap.Reader(f):
        n0 += 1
bare = time.process_time() - t
insp = Inspector(ruleset, Settings(max_flows=1_000_000))
t = time.process_time()
res = replay([pcap], insp)
dt = time.process_time() - t
if res.errors:
    raise SystemExit("; ".join(res.errors))
print(json.dumps({"bare": n0 / bare, "replay": res.packets / dt, "seconds": dt, "packets": res.packets}))
"""


def run_child(tree, pure, pcap, rules):
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", CHILD, pcap, rules], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout)


def parse_tree(spec):
    label, _, rest = spec.partition("=")
    path, _, flag = rest.partition(",")
    return label, os.path.abspath(path), flag == "pure"


def measure(trees, pcap, rules, runs, log=print):
    """{label: [replay pkt/s per run]}, {label: [bare pkt/s per run]}; trees alternate, the
    starting tree rotating each run so no tree always runs first."""
    speed = {t[0]: [] for t in trees}
    bare = {t[0]: [] for t in trees}
    for i in range(runs):
        order = trees[i % len(trees):] + trees[:i % len(trees)]
        for label, path, pure in order:
            r = run_child(path, pure, pcap, rules)
            speed[label].append(r["replay"])
            bare[label].append(r["bare"])
        log(f"  run {i + 1}/{runs}: " + ", ".join(f"{t[0]} {speed[t[0]][-1]:,.0f}" for t in trees) + " pkt/s")
    return speed, bare


def report(trees, speed, bare):
    ref = trees[0][0]
    lines = ["| tree | replay pkt/s (median) | / bare dpkt loop | / " + ref + " (median of per-run ratios) | spread |",
             "|---|---|---|---|---|"]
    for label, _path, _pure in trees:
        ratios = [s / r for s, r in zip(speed[label], speed[ref])]
        lines.append(f"| {label} | {statistics.median(speed[label]) / 1000:.1f}k | "
                     f"{statistics.median(s / b for s, b in zip(speed[label], bare[label])):.3f} | "
                     f"{statistics.median(ratios):.2f} | {min(ratios):.2f}..{max(ratios):.2f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.since_round1", description=__doc__.split("\n")[0])
    ap.add_argument("--tree", action="append", required=True, help="LABEL=PATH[,pure]; the first is the reference")
    ap.add_argument("--pcap", action="append", help="captures (default: the generated mixed capture)")
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--rules-file", help="use this rules file instead (e.g. an older bench.rulegen's output)")
    o = ap.parse_args(argv)
    trees = [parse_tree(s) for s in o.tree]
    pcaps = [os.path.abspath(p) for p in o.pcap or [gen_pcap.cached(o.packets)]]
    print(f"load: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as d:
        rules = os.path.abspath(o.rules_file) if o.rules_file else write_rules(d, o.rules)
        for pcap in pcaps:
            print(f"\n{pcap}, {o.rules} rules, {o.runs} runs, CPU time", flush=True)
            speed, bare = measure(trees, pcap, rules, o.runs, log=lambda s: print(s, flush=True))
            print(report(trees, speed, bare))
    print(f"\nload: {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
