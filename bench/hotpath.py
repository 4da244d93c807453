"""Rows: the compiled hot path (appliance/compiled.py) against its pure-Python reference.

    python3 -m bench.hotpath [--quick] [--runs N] [--packets N] [--flows N]

The build is chosen when appliance is imported, so each replay runs in a fresh
subprocess (APPLIANCE_PURE_PYTHON=1 for the reference); each subprocess times the bare
dpkt read loop and the replay back to back in CPU time, and the two builds alternate. Memory per flow: bench.memory, both builds.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from . import gen_pcap
from .common import Row, format_rows, log
from .offline import SYNFLOOD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PURE_ENV = "APPLIANCE_PURE_PYTHON"


def child(pcap, rules):
    """In the subprocess: (bare read pkt/s, replay pkt/s, which build ran), in CPU time:
    on a shared machine the wall clock mostly measures the other tenants, and the builds
    run in different processes at different moments."""
    import dpkt
    from appliance import compiled
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.replay import replay
    ruleset = load_rules(rules)
    t = time.process_time()
    n0 = 0
    with open(pcap, "rb") as f:
        for _rec in dpkt.pcap.Reader(f):
            n0 += 1
    t0 = time.process_time() - t
    insp = Inspector(ruleset, Settings(max_flows=1_000_000))
    t = time.process_time()
    res = replay([pcap], insp)
    t1 = time.process_time() - t
    if res.errors:
        raise RuntimeError("; ".join(res.errors))
    return {"bare": n0 / t0, "replay": res.packets / t1, "packets": res.packets, "build": compiled.describe()}


def run_child(pcap, rules, pure):
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    if pure:
        env[PURE_ENV] = "1"
    out = subprocess.run([sys.executable, "-m", "bench.hotpath", "--child", pcap, rules], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip()[-500:])
    return json.loads(out.stdout)


def replay_rows(label, pcap, rules, runs):
    pure = Row(f"replay pkt/s, {label}, 1,000 rules, pure Python", "bare dpkt.pcap.Reader loop, same file",
               "pkt/s", ">= 0.50" if "mixed" in label else ">= 0.40")
    comp = Row(f"replay pkt/s, {label}, 1,000 rules, compiled hot path", "bare dpkt.pcap.Reader loop, same file",
               "pkt/s", pure.target)
    speed = Row(f"replay pkt/s, {label}: compiled hot path", "pure Python, same run", "pkt/s", ">= 1.0")
    for i in range(runs):
        p = run_child(pcap, rules, True)
        c = run_child(pcap, rules, False)
        if not c["build"].startswith("compiled"):
            raise RuntimeError(f"the compiled run ran {c['build']}: build it (python3 setup.py build_ext --inplace)")
        pure.add(p["replay"], p["bare"])
        comp.add(c["replay"], c["bare"])
        speed.add(c["replay"], p["replay"])
        log(f"  run {i + 1}/{runs}: pure {p['replay']:,.0f} pkt/s (bare {p['bare']:,.0f}), "
            f"compiled {c['replay']:,.0f} pkt/s (bare {c['bare']:,.0f}), {c['packets']:,} packets")
    return [pure, comp, speed]


def memory_rows(flows):
    rows = []
    for pure in (True, False):
        name = "pure Python" if pure else "compiled hot path"
        row = Row(f"memory per tracked flow at {flows:,} flows (Inspector.process, default rules), {name}",
                  "- (RSS delta in a fresh process)", "B/flow", "<= 300")
        env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
        if pure:
            env[PURE_ENV] = "1"
        out = subprocess.run([sys.executable, "-m", "bench.memory", "--flows", str(flows), "--json"], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=1800)
        if out.returncode != 0:
            row.status, row.note = "ERROR", out.stderr.strip()[-300:]
        else:
            r = json.loads(out.stdout)
            row.add(r["per_flow"])
            log(f"  {name}: {r['flows']:,} flows, {r['per_flow']:.0f} B/flow")
        rows.append(row)
    return rows


def rows(quick=False, runs=None, packets=None, flows=None):
    runs = runs or 3
    packets = packets or (100_000 if quick else 1_000_000)
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as d:
        from .rulegen import write_rules
        rules = write_rules(d, 1000)
        mixed = gen_pcap.cached(packets)
        log(f"hot path: mixed capture ({packets:,} packets), pure Python vs compiled")
        out += replay_rows(f"mixed capture ({packets // 1000}k pkts)", mixed, rules, runs)
        if os.path.exists(SYNFLOOD):
            log("hot path: corpus SYN flood, pure Python vs compiled")
            out += replay_rows("corpus SYN flood (every packet a new flow)", SYNFLOOD, rules, runs)
        else:
            out.append(Row("replay pkt/s, corpus SYN flood", "bare dpkt.pcap.Reader loop", "pkt/s", ">= 0.40",
                           status="SKIPPED", note=f"{SYNFLOOD} absent"))
    out += memory_rows(flows or (100_000 if quick else 1_000_000))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.hotpath")
    ap.add_argument("--child", nargs=2, metavar=("PCAP", "RULES"), help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--packets", type=int, help="size of the mixed capture (default 1M, --quick 100k)")
    ap.add_argument("--flows", type=int, help="flows for the memory rows (default 1M, --quick 100k)")
    o = ap.parse_args(argv)
    if o.child:
        print(json.dumps(child(*o.child)))
        return 0
    t = time.perf_counter()
    print(format_rows(rows(o.quick, o.runs, o.packets, o.flows)))
    print(f"\ntotal time {time.perf_counter() - t:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
