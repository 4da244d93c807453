"""What `replay --report` and `--explain` cost: `python3 -m bench.report [--packets N] [--runs N]`.

On the mixed capture (bench.gen_pcap) with 1,000 rules, each run times back to back:

    eve       the replay writing its EVE file (the baseline)
    report    the same, every event also into the report's Summary, then the HTML rendered
    explain   the same as eve with the tracing Inspector/Detector and a filter (one flow_id that
              matches no flow: every packet pays the filter check, nothing is recorded)

Rows: report and explain throughput / eve throughput (CPU time of this process, the three in
alternating order per run), and the report's size (bounded).
"""
import argparse
import os
import tempfile
import time

from appliance.detect.loader import load_rules
from appliance.explain import FlowFilter, TracingInspector
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter
from appliance.replay import replay
from appliance.report.collect import ReportSink
from appliance.report.html import render

from . import gen_pcap
from .common import Row, format_rows, header, log
from .rulegen import write_rules


def timed(paths, ruleset, eve_path, mode):
    eve = EveWriter(eve_path)
    sink = ReportSink(eve) if mode == "report" else eve
    settings = Settings(max_flows=1_000_000)
    if mode == "explain":
        insp = TracingInspector(ruleset, settings, sink, FlowFilter("1"))
    else:
        insp = Inspector(ruleset, settings, sink)
    t = time.process_time()              # CPU time: the machine is shared, wall time swings
    res = replay(paths, insp)
    insp.stats_event()
    eve.close()
    size = len(render(sink.summary, eve_path, paths, "bench")) if mode == "report" else 0
    return res.packets, time.process_time() - t, size


def rows(packets=200_000, runs=3):
    mixed = gen_pcap.cached(packets)
    report = Row("replay pkt/s with --report", "replay pkt/s with --eve", "pkt/s", ">= 0.80")
    explain = Row("replay pkt/s with --explain (no flow matches)", "replay pkt/s with --eve", "pkt/s", ">= 0.90")
    size = Row(f"report size, {packets // 1000}k-packet capture", "-", "bytes", "<= 300000")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as d:
        rs = load_rules(write_rules(d, 1000))
        eve = os.path.join(d, "eve.json")
        for i in range(runs):
            log(f"report: run {i + 1}/{runs}")
            got = {}
            order = ("eve", "report", "explain") if i % 2 == 0 else ("explain", "report", "eve")
            for mode in order:                # alternating: neither side always runs warm
                got[mode] = timed([mixed], rs, eve, mode)
            n, base, _ = got["eve"]
            _, rep, nbytes = got["report"]
            _, exp, _ = got["explain"]
            report.add(n / rep, n / base)
            explain.add(n / exp, n / base)
            size.add(nbytes)
    return [report, explain, size]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.report", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    print(header(f"python3 -m bench.report --packets {o.packets} --runs {o.runs}"), flush=True)
    print(format_rows(rows(o.packets, o.runs)))


if __name__ == "__main__":
    main()
