"""Run cases through the replay pipeline and compare: exit 0 when every case passes, 1 with
expected vs got for each one that does not (and FILE:LINE for a test file that is wrong)."""
import argparse
from collections import Counter
import json
import os
import sys
import tempfile

from ..detect.loader import load_rules
from ..detect.rule import RuleError
from ..inspector import Inspector, Settings
from ..output.eve import EveWriter
from ..replay import replay
from . import cases as cs
from .packets import write_pcap


def run_case(case, tmp):
    """The case's EVE events, or raises RuleError (its rule files' problems)."""
    rs = load_rules(case.rules, home_net=case.home_net)
    pcap = case.pcap
    if pcap is None:
        pcap = os.path.join(tmp, "packets.pcap")
        write_pcap(pcap, case.frames)
    eve_path = os.path.join(tmp, "eve.json")
    eve = EveWriter(eve_path)
    insp = Inspector(rs, Settings(mode=case.mode), eve)
    res = replay([pcap], insp)
    eve.close()
    if res.errors:
        raise RuleError([f"{case.path}:1: the capture: {e}" for e in res.errors])
    with open(eve_path) as f:
        return [json.loads(line) for line in f]


def compare(case, events):
    """Differences, as lines for a human: empty when the case passes."""
    out = []
    got = Counter(e["alert"]["signature_id"] for e in events if e["event_type"] == "alert")
    sids = sorted(set(case.alerts) | set(got))
    wrong = [s for s in sids if case.alerts.get(s, 0) != got.get(s, 0)]
    if wrong:
        out.append("  alerts (sid: expected -> got):")
        for s in wrong:
            extra = "  (not expected)" if s not in case.alerts else ""
            out.append(f"    {s}: {case.alerts.get(s, 0)} -> {got.get(s, 0)}{extra}")
    flows = [e for e in events if e["event_type"] == "flow"]
    for fx in case.flows:
        picked = [f for f in flows if all(f.get(k) == v for k, v in fx.match.items())]
        what = " ".join(f"{k}={v}" for k, v in fx.match.items())
        if not picked:
            out.append(f"  {fx.where}: flow {what}: expected {fx.action}, got no such flow")
            continue
        actions = sorted({f["flow"]["action"] for f in picked})
        if actions != [fx.action]:
            out.append(f"  {fx.where}: flow {what}: expected {fx.action}, got {', '.join(actions)}")
    return out


def main_rules_test(args):
    ap = argparse.ArgumentParser(prog="appliance rules test",
                                 description="rule unit tests: each *.test.yaml (or DIR/test.yaml) is "
                                             "replayed; exit 1 with expected vs got when one fails")
    ap.add_argument("paths", nargs="+", metavar="DIR|FILE")
    ap.add_argument("-q", "--quiet", action="store_true", help="print failures only")
    o = ap.parse_args(args)
    files = cs.find(o.paths)
    if not files:
        print(f"{o.paths[0]}:1: no test files (*.test.yaml, test.yaml)", file=sys.stderr)
        return 1
    failed = 0
    for path in files:
        case, problems = cs.read(path)
        if problems:
            failed += 1
            print(f"ERROR {path}")
            for p in problems:
                print(f"  {p}")
            continue
        try:
            with tempfile.TemporaryDirectory(prefix="appliance-rules-test-") as tmp:
                diff = compare(case, run_case(case, tmp))
        except RuleError as e:
            failed += 1
            print(f"ERROR {path}: the rules do not load")
            for p in e.problems:
                print(f"  {p}")
            continue
        if diff:
            failed += 1
            print(f"FAIL  {path}")
            print("\n".join(diff))
        elif not o.quiet:
            print(f"ok    {path}")
    print(f"{len(files) - failed} passed, {failed} failed", file=sys.stderr)
    return 1 if failed else 0
