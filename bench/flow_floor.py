"""The read + decode + flow lookup floor: how far flow tracking alone pulls a replay below a
bare dpkt read of the same capture, measured in the same run (CPU time, best of --runs).

    python3 -m bench.flow_floor CAPTURE [--runs 3]

Prints decode / bare and decode+FlowTable.lookup / bare, the lookup's own cost per packet
while streaming, and FlowTable.lookup alone over up to 400k packets decoded beforehand. To
compare two trees, run it with PYTHONPATH set to each (docs/performance-passes.md, "Compact flow").
"""
import argparse
import time

import dpkt

import appliance.compiled as compiled
from appliance.flow import FlowTable
from appliance.source.pcap import PcapSource


def best(fn, runs):
    out = None
    for _ in range(runs):
        t = time.process_time()
        n = fn()
        dt = time.process_time() - t
        out = dt if out is None else min(out, dt)
    return n, out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.flow_floor")
    ap.add_argument("capture")
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)

    def bare():
        n = 0
        with open(o.capture, "rb") as f:
            for _ in dpkt.pcap.Reader(f):
                n += 1
        return n

    def decode():
        n = 0
        for _ in PcapSource([o.capture]):
            n += 1
        return n

    def lookup():
        lk, n = FlowTable(2_000_000).lookup, 0
        for pkt in PcapSource([o.capture]):
            lk(pkt)
            n += 1
        return n

    decoded = []
    for pkt in PcapSource([o.capture]):
        decoded.append(pkt)
        if len(decoded) == 400_000:
            break

    def lookup_only():
        lk = FlowTable(2_000_000).lookup
        for pkt in decoded:
            lk(pkt)
        return len(decoded)

    n, t_bare = best(bare, o.runs)
    _, t_dec = best(decode, o.runs)
    _, t_look = best(lookup, o.runs)
    m, t_only = best(lookup_only, o.runs)
    print(f"{compiled.describe()}: {n:,} packets; read+decode {t_bare / t_dec:.2f}x bare, "
          f"+FlowTable.lookup {t_bare / t_look:.2f}x bare ({1e6 * (t_look - t_dec) / n:.2f} us per lookup); "
          f"lookup alone on {m:,} decoded packets {1e6 * t_only / m:.2f} us")


if __name__ == "__main__":
    main()
