"""The pcap log's cost (docs/performance.md "Pcap log"): `python3 -m bench.pcap_log [--packets N] [--runs N] [--parts] [--compare TREE]`.

The mixed capture replayed through the Inspector with one rule that alerts on every HTTP
flow's request (its Host header, the flow's 4th packet: the ring holds the handshake), three
ways per run, in rotating order: pcap_log off, `mode: alerts`, `mode: all`. EVE off in all
three (the log's cost alone). Rows: replay time alerts / off and all / off, and the cost
per alerted flow, (alerts - off) / alerted flows, in microseconds.

`--parts`: where `alerts` mode's CPU goes, five arms per run in one process: off, the log
called but doing nothing, everything but the writes, every undecided flow held (as before
Detector.may_log), and the log itself.
`--compare TREE`: this tree against another checkout (the before), each run a fresh
subprocess per tree (its own build), the trees alternating, each doing off and `alerts`
(rotating); rows per tree and this tree's cost per alerted flow over TREE's.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):              # run as a script (--child, in a tree to measure)
    sys.path.insert(0, os.getcwd())
    __package__ = "bench"

from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.pcap_log import PcapLog, PcapLogConfig
from appliance.replay import replay

from .common import Row, median

RULES = """
default_action: pass
rules:
  - {id: 1, action: alert, msg: bench http host, proto: tcp, http_host: "*.example.net"}
"""


class _Silent(PcapLog):
    """--parts: the Inspector calls the log, which does nothing."""
    def packet(self, pkt, verdict, detector=None):
        pass


class _Unwritten(PcapLog):
    """--parts: everything but the writes (rings held, flushed into nothing)."""
    def _write(self, ts, data, flow, iface):
        pass


class _HoldAll(PcapLog):
    """--parts: every undecided flow held, as before Detector.may_log."""
    def packet(self, pkt, verdict, detector=None):
        PcapLog.packet(self, pkt, verdict, None)


PARTS = {"off": None, "called, does nothing": _Silent, "no writes": _Unwritten,
         "alerts, every undecided flow held": _HoldAll, "alerts": PcapLog}


def _replay(capture, ruleset, d, mode, cls=PcapLog):
    log = None
    if mode != "off":
        log = cls(PcapLogConfig(dir=os.path.join(d, "alerts" if mode != "all" else mode),
                                mode="all" if mode == "all" else "alerts", max_bytes=1 << 30, keep=1), "bench")
    insp = Inspector(ruleset, Settings(max_flows=1_000_000), None, log)
    t = time.process_time()
    res = replay([capture], insp)
    if log is not None:
        log.close()
    dt = time.process_time() - t
    if res.errors:
        raise RuntimeError("; ".join(res.errors))
    alerted = insp.counters.alerts                   # one request, one alert per HTTP flow
    written = log.writer.packets if log is not None else 0
    size = os.path.getsize(log.writer.path) if log is not None and os.path.exists(log.writer.path) else 0
    return res.packets, dt, alerted, written, size


def pcap_log_rows(capture, runs):
    alerts_row = Row("replay time, mixed capture, pcap_log mode alerts (every HTTP flow alerts)",
                     "pcap_log off", "s", "<= 1.25")
    all_row = Row("replay time, mixed capture, pcap_log mode all", "pcap_log off", "s", "<= 1.50")
    per_flow = Row("pcap_log cost per alerted flow (mode alerts - off) / alerted flows", "-", "us", "<= 100")
    with tempfile.TemporaryDirectory(prefix="bench-pcaplog-") as d:
        with open(os.path.join(d, "r.yaml"), "w") as f:
            f.write(RULES)
        rs = load_rules(os.path.join(d, "r.yaml"))
        order = ["off", "alerts", "all"]
        for i in range(runs):
            got = {}
            for mode in order[i % 3:] + order[:i % 3]:        # rotating: no arm always runs first
                got[mode] = _replay(capture, rs, d, mode)
            n, t_off, alerted, _, _ = got["off"]
            _, t_al, _, w_al, s_al = got["alerts"]
            _, t_all, _, w_all, s_all = got["all"]
            alerts_row.add(t_al, t_off)
            all_row.add(t_all, t_off)
            per_flow.add((t_al - t_off) / alerted * 1e6)
            msg = (f"  run {i + 1}/{runs}: {n:,} packets, {alerted:,} alerted flows; off {t_off:.2f} s, alerts "
                   f"{t_al:.2f} s ({w_al:,} packets, {s_al / 1e6:.1f} MB), all {t_all:.2f} s ({w_all:,} packets, "
                   f"{s_all / 1e6:.1f} MB)")
            print(msg, file=sys.stderr, flush=True)
            alerts_row.note = f"{w_al:,} packets of {alerted:,} flows logged"
    return [alerts_row, all_row, per_flow]


def parts_rows(capture, runs):
    """Where mode alerts' CPU goes, each arm in rotating order per run, in this process."""
    rows = {k: Row(f"replay CPU, {k}", "pcap_log off", "s", "-") for k in PARTS if k != "off"}
    with tempfile.TemporaryDirectory(prefix="bench-pcaplog-") as d:
        with open(os.path.join(d, "r.yaml"), "w") as f:
            f.write(RULES)
        rs = load_rules(os.path.join(d, "r.yaml"))
        arms = list(PARTS)
        for i in range(runs):
            got = {k: _replay(capture, rs, d, k, PARTS[k]) for k in arms[i % len(arms):] + arms[:i % len(arms)]}
            alerted = got["off"][2]
            for k, row in rows.items():
                row.add(got[k][1], got["off"][1])
            print(f"  run {i + 1}/{runs}: " + ", ".join(
                f"{k} {got[k][1]:.2f} s ({(got[k][1] - got['off'][1]) / alerted * 1e6:.0f} us a flow)"
                for k in arms), file=sys.stderr, flush=True)
    for r in rows.values():
        r.status = "info"
    return list(rows.values())


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child(packets, first):
    """In the subprocess (cwd: the tree measured): one run of off and alerts, `first` first."""
    from appliance import compiled
    from appliance.detect.loader import load_rules as load
    from bench import gen_pcap
    capture = gen_pcap.cached(packets)
    out = {"build": compiled.describe()}
    with tempfile.TemporaryDirectory(prefix="bench-pcaplog-") as d:
        with open(os.path.join(d, "r.yaml"), "w") as f:
            f.write(RULES)
        rs = load(os.path.join(d, "r.yaml"))
        for mode in (("off", "alerts") if first == "off" else ("alerts", "off")):
            out[mode] = _replay(capture, rs, d, mode)
    return out


def _in_tree(tree, packets, first):
    # this file run as a script in the other tree (which may not have it): its appliance, its
    # build; one capture cache for both
    cache = os.environ.get("BENCH_CACHE") or os.path.join(ROOT, "bench", ".cache")
    got = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(packets), first], cwd=tree,
                         capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONPATH": tree, "BENCH_CACHE": cache})
    if got.returncode != 0:
        raise RuntimeError(f"{tree}: {got.stderr.strip()[-400:]}")
    out = json.loads(got.stdout.strip().splitlines()[-1])
    if "pure" in out["build"]:
        raise RuntimeError(f"{tree}: not wholly compiled ({out['build']}); build it: python3 setup.py build_ext --inplace")
    return out


def compare_rows(other, packets, runs):
    trees = {"this tree": ROOT, "compare": os.path.abspath(other)}
    ratio = {n: Row(f"replay CPU, mode alerts, {n}", "pcap_log off, same tree", "s", "-") for n in trees}
    per_flow = {n: Row(f"CPU per alerted flow, {n}", "-", "us", "-") for n in trees}
    over = Row("CPU per alerted flow: this tree", "compare tree, same run", "us", "<= 1.00")
    for i in range(runs):
        got = {}
        for n in (list(trees) if i % 2 == 0 else list(trees)[::-1]):
            got[n] = r = _in_tree(trees[n], packets, "off" if i % 4 < 2 else "alerts")
            (_, t_off, alerted, _, _), (_, t_al, _, w_al, s_al) = r["off"], r["alerts"]
            ratio[n].add(t_al, t_off)
            per_flow[n].add((t_al - t_off) / alerted * 1e6)
            ratio[n].note = f"{w_al:,} packets of {alerted:,} flows logged, {s_al / 1e6:.1f} MB"
        cost = {n: (got[n]["alerts"][1] - got[n]["off"][1]) / got[n]["off"][2] * 1e6 for n in trees}
        over.add(cost["this tree"], cost["compare"])
        print(f"  run {i + 1}/{runs}: " + "; ".join(
            f"{n}: off {got[n]['off'][1]:.2f} s, alerts {got[n]['alerts'][1]:.2f} s, {cost[n]:.0f} us a flow"
            for n in trees), file=sys.stderr, flush=True)
    for r in (*ratio.values(), *per_flow.values()):
        r.status = "info"
    return [*ratio.values(), *per_flow.values(), over]


def main(argv=None):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compare", help="another checkout (the before)")
    ap.add_argument("--parts", action="store_true", help="where mode alerts' CPU goes (this tree)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.child:
        print(json.dumps(child(int(o.child[0]), o.child[1])))
        return
    from . import gen_pcap
    from .common import format_rows, header
    print(header("python3 -m bench.pcap_log " + " ".join(argv if argv is not None else sys.argv[1:])))
    if o.parts:
        print(format_rows(parts_rows(gen_pcap.cached(o.packets), o.runs)))
        return
    if o.compare:
        gen_pcap.cached(o.packets)                    # made once, here, for both trees
        rows = compare_rows(o.compare, o.packets, o.runs)
        print(format_rows(rows))
        print("per alerted flow: " + "; ".join(f"{r.measure}: median {median(r.ratios):.1f} us"
                                               for r in rows[2:4]))
        return
    rows = pcap_log_rows(gen_pcap.cached(o.packets), o.runs)
    print(format_rows(rows))
    print("per alerted flow: " + ", ".join(f"{median([r]):.1f}" for r in rows[2].ratios) + " us; "
          f"median {median(rows[2].ratios):.1f} us")


if __name__ == "__main__":
    if "--child" in sys.argv:
        sys.path.insert(0, os.getcwd())       # the tree measured (bench's own modules from it)
    main()
