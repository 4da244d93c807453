"""Shared pieces of the benchmark suite: the machine header, statistics and the row table.

Every row is a ratio against a baseline measured in the same run, repeated N times;
the table shows the median and the spread (min..max) of the ratio, and the median of
the absolute numbers behind it.
"""
import os
import platform
import statistics
import sys
from dataclasses import dataclass, field

CACHE = os.environ.get("BENCH_CACHE") or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")


def machine():
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def header(command):
    m = machine()
    return (f"machine: nproc={m['nproc']}  cpu={m['cpu']}  kernel={m['kernel']}  python={m['python']}\n"
            f"command: {command}")


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return (min(xs), max(xs)) if xs else (float("nan"), float("nan"))


def percentile(xs, p):
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = (len(s) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Row:
    measure: str
    baseline: str
    unit: str                 # unit of the absolute numbers
    target: str               # e.g. ">= 0.50" or "<= 1.25" or "<= 500"
    values: list = field(default_factory=list)      # measured value per run
    bases: list = field(default_factory=list)       # baseline per run (empty: absolute row)
    ratios: list = field(default_factory=list)      # value/base per run (or the absolute value)
    status: str = ""          # "" (computed), "SKIPPED", "ERROR"
    note: str = ""

    def add(self, value, base=None, ratio=None):
        self.values.append(value)
        if base is not None:
            self.bases.append(base)
            self.ratios.append(ratio if ratio is not None else (value / base if base else float("nan")))
        else:
            self.ratios.append(ratio if ratio is not None else value)

    def verdict(self):
        if self.status:
            return self.status
        if not self.ratios:
            return "MISS"
        op, num = self.target.split()
        m = median(self.ratios)
        ok = m >= float(num) if op == ">=" else m <= float(num)
        return "PASS" if ok else "MISS"


def _fmt(x):
    if x != x:
        return "nan"
    a = abs(x)
    if a >= 1e9:
        return f"{x / 1e9:.2f}G"
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.1f}k"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def format_rows(rows):
    head = ("measure", "baseline", "value", "baseline value", "ratio (median)", "spread", "N", "target", "result")
    lines = []
    for r in rows:
        if r.status in ("SKIPPED", "ERROR") and not r.values:
            lines.append((r.measure, r.baseline, "-", "-", "-", "-", "0", r.target, f"{r.status}: {r.note}"))
            continue
        val = f"{_fmt(median(r.values))} {r.unit}"
        base = f"{_fmt(median(r.bases))} {r.unit}" if r.bases else "-"
        lo, hi = spread(r.ratios)
        res = r.verdict() + (f" ({r.note})" if r.note else "")
        lines.append((r.measure, r.baseline, val, base, _fmt(median(r.ratios)), f"{_fmt(lo)}..{_fmt(hi)}",
                      str(len(r.ratios)), r.target, res))
    widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h) for i, h in enumerate(head)]
    out = [" | ".join(h.ljust(w) for h, w in zip(head, widths)),
           "-+-".join("-" * w for w in widths)]
    for l in lines:
        out.append(" | ".join(c.ljust(w) for c, w in zip(l, widths)))
    return "\n".join(out)


def markdown_rows(rows):
    out = ["| measure | baseline | value | baseline value | ratio (median) | spread | N | target | result |",
           "|---|---|---|---|---|---|---|---|---|"]
    for line in format_rows(rows).splitlines()[2:]:
        out.append("| " + " | ".join(c.strip() for c in line.split(" | ")) + " |")
    return "\n".join(out)


def log(msg):
    print(msg, file=sys.stderr, flush=True)
