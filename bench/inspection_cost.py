"""What one packet an attacker writes can cost one rule's buffer inspection
(appliance/detect/inspect_buffer.py, bounded_regex.py): each row times one rule's program
on a hostile buffer against the same program on a benign buffer of the same length,
measured in the same run. Targets: a regex RE2 runs costs what a benign buffer costs; a
backtracking one at most its time bound (REGEX_TIME); a content program at most its
RECURSION_LIMIT steps where the benign buffer takes about one (the per-packet bounds,
PACKET_STEPS and REGEX_TIME, cap the sum over rules).

    python3 -m bench.inspection_cost [--runs N]
"""
import argparse
import statistics
import sys
import time

from appliance.detect.bounded_regex import REGEX_TIME
from appliance.detect.inspect_buffer import PACKET_STEPS, Program
from appliance.detect.keywords import parse_pcre
from appliance.detect.rule import Content

from .common import Row, format_rows, header


def _pcre(text):
    step, _, msg = parse_pcre(text)
    if msg:
        raise SystemExit(msg)
    return step


def _time(prog, buf, block):
    """Seconds per matches() call (repeated until 0.2 s have passed)."""
    n, t0 = 0, time.perf_counter()
    while True:
        prog.matches(buf, block) if _takes_block(prog) else prog.matches(buf)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= 0.2:
            return dt / n


def _takes_block(prog):
    return prog.matches.__code__.co_argcount > 2


CASES = [
    # (measure, program, hostile buffer, benign buffer of the same length, target)
    ("pcre ET chain /.*?select.*?from.*?where.*?union/si, 720 B",
     lambda: Program([_pcre("/.*?select.*?from.*?where.*?union/si")]),
     b"select from where " * 40, (b"GET /index.html?q=1 HTTP/1.1\r\n" * 40)[:720], "<= 20"),
    ("pcre nested quantifier /User-Agent\\x3a[^\\r\\n]*(a+)+b/s, 34 B",
     lambda: Program([_pcre("/User-Agent\\x3a[^\\r\\n]*(a+)+b/s")]),
     b"User-Agent: " + b"a" * 22, b"User-Agent: " + b"c" * 22, "<= 20"),
    ("pcre with a backreference (bounded engine) /^(a|a)*\\1$/, 25 B",
     lambda: Program([_pcre("/^(a|a)*\\1$/")]),
     b"a" * 24 + b"!", b"b" * 25, "<= 100000"),
    ("content a; b distance 0; c distance 0 (backtracking), 64 KB",
     lambda: Program([Content(b"a"), Content(b"b", distance=0), Content(b"c", distance=0)]),
     b"ab" * 1500 + b"x" * 61000, b"x" * 64000, "<= 3000"),   # RECURSION_LIMIT steps vs ~1
]


def _packet(progs, buf):
    """Seconds for all programs on one packet's buffer, sharing the packet's steps as the
    Detector does (limits: [bounds reached, steps left, regex seconds left])."""
    n, t0 = 0, time.perf_counter()
    while True:
        limits = [0, PACKET_STEPS, REGEX_TIME]
        for prog in progs:
            prog.matches(buf, True, limits)
        n += 1
        dt = time.perf_counter() - t0
        if dt >= 0.2:
            return dt / n


def packet_row(runs, rules=100):
    """`rules` content programs of the backtracking shape on one 64 KB packet."""
    progs = [Program([Content(b"a"), Content(b"b", distance=0), Content(b"c%d" % i, distance=0)])
             for i in range(rules)]
    hostile, benign = b"ab" * 1500 + b"x" * 61000, b"x" * 64000
    row = Row(f"{rules} such content rules on one 64 KB packet (PACKET_STEPS shared)",
              "the same rules, benign packet", "s", "<= 30000")
    for _ in range(runs):
        row.add(_packet(progs, hostile), _packet(progs, benign))
    return row


def regex_packet_row(runs, rules=20):
    """`rules` pcre programs that backtrack (the bounded engine) on one 1,400 B packet
    against one such program: the packet's regex time (REGEX_TIME) is shared, so 20
    rules cost what one does (before: 20 times; review of the per-rule bound)."""
    progs = [Program([Content(b"xx"), _pcre("/(x+x+)+y%d$/" % i)]) for i in range(rules)]
    buf = b"x" * 1400
    row = Row(f"{rules} backtracking pcre rules on one 1,400 B packet (REGEX_TIME shared)",
              "one such rule on the packet", "s", "<= 1.5")
    for _ in range(runs):
        row.add(_packet(progs, buf), _packet(progs[:1], buf))
    return row


def rows(runs=3):
    out = []
    for measure, make, hostile, benign, target in CASES:
        assert len(hostile) == len(benign), measure
        prog = make()
        row = Row(measure, "the same rule, benign buffer", "s", target)
        for _ in range(runs):
            base = _time(prog, benign, True)
            row.add(_time(prog, hostile, True), base)
        out.append(row)
    if _takes_block(out and make()):
        out.append(packet_row(runs))
        out.append(regex_packet_row(runs))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    print(header("python3 -m bench.inspection_cost " + " ".join(argv if argv is not None else sys.argv[1:])))
    rs = rows(o.runs)
    print(format_rows(rs))
    print("hostile seconds per buffer (median): " +
          ", ".join(f"{statistics.median(r.values):.4f}" for r in rs))


if __name__ == "__main__":
    main()
