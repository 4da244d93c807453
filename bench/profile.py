"""Profile a replay of the mixed capture (or any pcap) through the real pipeline.

    python3 -m bench.profile [--packets N] [--rules N] [--pcap PATH] [--top 25] [--out FILE.prof]

Uses pyinstrument when installed (--pyinstrument), else cProfile; prints the top functions
by self time and by cumulative time, as file:line(function).
"""
import argparse
import cProfile
import io
import os
import pstats
import tempfile

from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.replay import replay

from . import gen_pcap
from .rulegen import write_rules


def _short(path):
    i = path.find("/appliance/")
    return path[i + 1:] if i >= 0 else os.path.basename(path)


def top(stats, key, n):
    """[(self s, cumulative s, calls, 'file:line(func)')] sorted by key ('tottime'|'cumtime')."""
    rows = []
    for (fn, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():
        rows.append((tt, ct, nc, f"{_short(fn)}:{line}({func})"))
    rows.sort(key=lambda r: r[0] if key == "tottime" else r[1], reverse=True)
    return rows[:n]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.profile", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=200_000, help="size of the generated mixed capture")
    ap.add_argument("--rules", type=int, default=1000, help="number of generated rules")
    ap.add_argument("--pcap", action="append", help="profile these files instead (repeatable)")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="write the raw cProfile stats here (for snakeviz etc.)")
    ap.add_argument("--pyinstrument", action="store_true", help="use pyinstrument (must be installed)")
    o = ap.parse_args(argv)
    paths = o.pcap or [gen_pcap.cached(o.packets)]
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as d:
        ruleset = load_rules(write_rules(d, o.rules))
    insp = Inspector(ruleset, Settings(max_flows=1_000_000))
    if o.pyinstrument:
        from pyinstrument import Profiler
        p = Profiler()
        p.start()
        res = replay(paths, insp)
        p.stop()
        print(p.output_text(unicode=False, color=False))
        return 0
    prof = cProfile.Profile()
    prof.enable()
    res = replay(paths, insp)
    prof.disable()
    if o.out:
        prof.dump_stats(o.out)
    st = pstats.Stats(prof, stream=io.StringIO())
    total = st.total_tt
    print(f"profiled replay of {res.packets:,} packets, {o.rules} rules: {total:.2f}s under cProfile "
          f"({res.packets / total:,.0f} pkt/s profiled; cProfile slows calls down, read the shares)")
    for key, title in (("tottime", "self time"), ("cumtime", "cumulative time")):
        print(f"\ntop {o.top} by {title}:")
        print(f"{'self s':>8} {'self %':>6} {'cum s':>8} {'cum %':>6} {'calls':>10} {'us/pkt':>7}  function")
        for tt, ct, nc, name in top(st, key, o.top):
            print(f"{tt:8.2f} {100 * tt / total:6.1f} {ct:8.2f} {100 * ct / total:6.1f} {nc:10d} "
                  f"{1e6 * (tt if key == 'tottime' else ct) / max(res.packets, 1):7.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
