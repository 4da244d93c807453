"""The pcap log's cost (docs/performance.md "Pcap log"): `python3 -m bench.pcap_log [--packets N] [--runs N]`.

The mixed capture replayed through the Inspector with one rule that alerts on every HTTP
flow's request (its Host header, the flow's 4th packet: the ring holds the handshake), three
ways per run, in rotating order: pcap_log off, `mode: alerts`, `mode: all`. EVE off in all
three (the log's cost alone). Rows: replay time alerts / off and all / off, and the cost
per alerted flow, (alerts - off) / alerted flows, in microseconds.
"""
import os
import sys
import tempfile
import time

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


def _replay(capture, ruleset, d, mode):
    log = None
    if mode != "off":
        log = PcapLog(PcapLogConfig(dir=os.path.join(d, mode), mode=mode, max_bytes=1 << 30, keep=1), "bench")
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
    size = os.path.getsize(log.writer.path) if log is not None else 0
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


def main(argv=None):
    import argparse
    from . import gen_pcap
    from .common import format_rows, header
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    print(header("python3 -m bench.pcap_log " + " ".join(argv if argv is not None else sys.argv[1:])))
    rows = pcap_log_rows(gen_pcap.cached(o.packets), o.runs)
    print(format_rows(rows))
    print("per alerted flow: " + ", ".join(f"{median([r]):.1f}" for r in rows[2].ratios) + " us; "
          f"median {median(rows[2].ratios):.1f} us")


if __name__ == "__main__":
    main()
