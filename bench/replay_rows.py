"""Issue 15's replay rows in minutes, this tree against another checkout.

    python3 -m bench.replay_rows [--compare TREE] [--runs 5] [--packets 200000]

The two `python3 -m bench --offline-only` rows this measures, with bench.offline's own code:
replay of the generated mixed capture (`--packets` of it) with 1,000 generated rules, and of
the corpus SYN flood (every packet a new flow), each over a bare dpkt.pcap.Reader loop of the
same file timed just before it; and the floor (read + decode + one FlowTable.lookup a packet)
of each. Times are CPU times of the process (bare loop and replay alike; the replay's include
building its Inspector and 1,000-rule detector, ~6 % of the SYN flood's, both trees alike). Each run is a fresh subprocess per tree (its own build: compiled when built), this
tree and TREE alternating, so both see the same load. Printed: each tree's ratios (median,
min..max), and this tree's replay pkt/s over TREE's.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MEASURES = ("mixed", "mixed floor", "synflood", "synflood floor")


def child(packets):
    """In the subprocess (cwd: the tree measured): {measure: [pkt/s, bare pkt/s]}."""
    sys.path.insert(0, os.getcwd())
    from appliance import compiled
    from appliance.detect.loader import load_rules
    from bench import gen_pcap, offline
    from bench.rulegen import write_rules
    mixed = gen_pcap.cached(packets)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as d:
        rules = load_rules(write_rules(d, 1000))
    def cpu(fn, *args):
        """(packets, CPU seconds) of bench.offline's pass: the load others put on a shared
        machine moves its wall time (by 2x here), not this"""
        t = time.process_time()
        n, _ = fn(*args)
        return n, time.process_time() - t

    out = {}
    for name, paths in (("mixed", [mixed]), ("synflood", [offline.SYNFLOOD])):
        n0, t0 = cpu(offline.bare_read, paths)
        n1, t1 = cpu(offline.timed_replay, paths, rules)
        out[name] = [n1 / t1, n0 / t0]
        n0, t0 = cpu(offline.bare_read, paths)
        n1, t1 = cpu(offline.floor_pass, paths)
        out[name + " floor"] = [n1 / t1, n0 / t0]
    out["build"] = compiled.describe()
    return out


def run(tree, packets):
    # this file run as a script in the other tree (which may not have it): its appliance, its
    # build; one capture cache for both (the same file, generated once), one corpus
    cache = os.environ.get("BENCH_CACHE") or os.path.join(ROOT, "bench", ".cache")
    synflood = os.environ.get("BENCH_SYNFLOOD") or os.path.normpath(
        os.path.join(ROOT, "..", "shared", "corpus", "stopddos-packet-captures", "pkt.TCP.synflood.spoofed.pcap"))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(packets)], cwd=tree,
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": tree, "BENCH_CACHE": cache, "BENCH_SYNFLOOD": synflood})
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr.strip()[-400:]}")
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if "pure" in got["build"]:
        # a tree with some modules unbuilt (or picking up another checkout's build) measures a
        # mix, not the tree: the comparison would be a false one (review rvlookup)
        raise RuntimeError(f"{tree}: not wholly compiled ({got['build']}); build it: python3 setup.py build_ext --inplace")
    return got


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.replay_rows", description=__doc__.split("\n")[0])
    ap.add_argument("--compare", help="another checkout (the before)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--packets", type=int, default=200_000, help="size of the generated mixed capture")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.child:
        print(json.dumps(child(o.child)))
        return 0
    from .common import Row, format_rows, header, log
    print(header("python3 -m bench.replay_rows " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    trees = [ROOT] + ([os.path.abspath(o.compare)] if o.compare else [])
    names = {ROOT: "this tree"}
    if o.compare:
        names[trees[1]] = "compare"
    rows = {(t, m): Row(f"{m}, {names[t]}", "bare dpkt.pcap.Reader loop, same file", "pkt/s", "-")
            for t in trees for m in MEASURES}
    over = {m: Row(f"{m} pkt/s: this tree", "compare tree, same run", "pkt/s", ">= 1.00")
            for m in ("mixed", "synflood")}
    for i in range(o.runs):
        got = {}
        for tree in (trees if i % 2 == 0 else trees[::-1]):
            got[tree] = run(tree, o.packets)
            for m in MEASURES:
                rows[tree, m].add(*got[tree][m])
        msg = f"  run {i + 1}/{o.runs}: " + "; ".join(
            f"{names[t]} " + ", ".join(f"{m} {got[t][m][0] / got[t][m][1]:.3f}"
                                                             for m in MEASURES) for t in trees)
        if i == 0:
            for t in trees:
                log(f"  {names[t]}: {got[t]['build']}")
        log(msg)
        if o.compare:
            for m, row in over.items():
                row.add(got[ROOT][m][0], got[trees[1]][m][0])
    for r in rows.values():
        r.status = "info"
    print(format_rows(list(rows.values()) + (list(over.values()) if o.compare else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
