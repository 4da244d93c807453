"""What the GC policy (appliance/gcpolicy.py) moves: the collector's share of a replay, and RSS
while flows are created and evicted. Run it with PYTHONPATH at a base tree and at this one.

    python3 -m bench.gc_policy [CAPTURE] [--churn 1000000]
"""
import argparse
import gc
import time

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.replay import replay

from .memory import RULES, _syn, rss


class GcClock:
    """Time and count of the collector's runs per generation (gc.callbacks)."""
    def __init__(self):
        self.seconds, self.runs, self._t = 0.0, [0, 0, 0], 0.0
        gc.callbacks.append(self._cb)

    def _cb(self, phase, info):
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._t
            self.runs[info["generation"]] += 1


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.gc_policy")
    ap.add_argument("capture", nargs="?")
    ap.add_argument("--churn", type=int, default=1_000_000, help="SYN flows through a 20k-flow table")
    o = ap.parse_args(argv)
    rules = load_rules(RULES)
    if o.capture:
        insp = Inspector(rules, Settings(max_flows=1_000_000))
        clock, t = GcClock(), time.perf_counter()
        res = replay([o.capture], insp)
        dt = time.perf_counter() - t
        print(f"replay: {res.packets} packets {dt:.2f}s, collector {100 * clock.seconds / dt:.1f}% "
              f"(g0/g1/g2 {clock.runs}), threshold {gc.get_threshold()}, frozen {gc.get_freeze_count()}")
    insp = Inspector(rules, Settings(max_flows=20_000))
    clock, t, ts, samples = GcClock(), time.perf_counter(), 1.0, []
    step = max(1, o.churn // 5)
    for i in range(o.churn):
        insp.process(decode_l3(_syn(i), ts))
        ts += 1e-5
        if i % step == step - 1:
            samples.append(rss() // 2**20)
    dt = time.perf_counter() - t
    print(f"churn: {o.churn} SYN flows, RSS MB every {step}: {samples}, {o.churn / dt:,.0f} pkt/s, "
          f"collector {100 * clock.seconds / dt:.1f}% (g0/g1/g2 {clock.runs})")


if __name__ == "__main__":
    main()
