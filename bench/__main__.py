"""The benchmark suite: `python3 -m bench [--quick] [--offline-only | --inline-only] [--runs N]`.

Prints the machine, then one row per measure: value and baseline (medians, with units),
the ratio's median and spread (min..max) over N runs, the target and PASS/MISS.
Inline rows need root and network namespaces; they print SKIPPED with the reason otherwise.
"""
import argparse
import sys
import time

from .common import format_rows, header, log, markdown_rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (100k packets, 100k flows, short loads)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--offline-only", action="store_true")
    g.add_argument("--inline-only", action="store_true")
    ap.add_argument("--runs", type=int, default=None, help="repetitions per row (default 3)")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    o = ap.parse_args(argv)
    command = "python3 -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(header(command.strip()), flush=True)
    t0 = time.perf_counter()
    rows = []
    if not o.inline_only:
        from . import offline
        rows += offline.rows(quick=o.quick, runs=o.runs)
        from . import hotpath
        rows += hotpath.rows(quick=o.quick, runs=o.runs)
    if not o.offline_only:
        from . import inline
        rows += inline.rows(quick=o.quick, runs=o.runs)
        from . import lab_flood
        rows += lab_flood.rows(quick=o.quick, runs=o.runs)      # the overload rows (issue 15)
        from . import kernel_decisions       # new connections with the kernel's pre-decision
        rows += kernel_decisions.rows(quick=o.quick, runs=o.runs)
    print()
    print(format_rows(rows))
    if o.markdown:
        print()
        print(markdown_rows(rows))
    print(f"\ntotal time {time.perf_counter() - t0:.0f}s")
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
