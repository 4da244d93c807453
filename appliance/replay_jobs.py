"""`appliance replay --jobs N`: many captures over N processes, the output of a sequential run.

With --jobs, each file is replayed on its own (its own Inspector, its own flow table and
stats event), as `for f in FILES: appliance replay f` would, and the EVE output is those
runs' output concatenated in the order the files were given: byte-identical whatever N is,
because every file's events come out of one process in packet order and are written to
the output only after the files before it. Flows do not cross files: a capture rotated in
the middle of a connection (tcpdump -G) gives that connection a mid-stream start in the next
file; without --jobs the files are one stream, as before.

Workers are forked after the rules are loaded, so N processes share the compiled rule set
instead of each loading it; each writes its file's events to a temporary file that the
parent appends to the output once the files before it are done.
"""
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import Counter
from types import SimpleNamespace

from .inspector import Inspector
from .output.eve import EveWriter

_JOB = {}                       # set in the parent before the fork: the rule set and settings


def _replay_one(task):
    """In a worker: replay one file into its own EVE file; returns its counters."""
    from .replay import replay
    index, path, eve_path = task
    eve = EveWriter(eve_path) if eve_path else None
    insp = Inspector(_JOB["ruleset"], _JOB["settings"], eve)
    res = replay([path], insp)
    insp.stats_event()
    if eve:
        eve.close()
    c = insp.counters
    return index, {"packets": res.packets, "errors": list(res.errors), "flows": insp.flows.total,
                   "alerts": c.alerts, "alerts_suppressed": c.alerts_suppressed, "invalid": c.invalid,
                   "verdicts": dict(c.verdicts), "would_block": dict(c.would_block), "encap": dict(c.encap),
                   "rule_hits": dict(c.rule_hits)}


def replay_files(paths, jobs, ruleset, settings, eve_target):
    """Replay each of `paths` on its own over `jobs` processes; the EVE events go to
    `eve_target` (a path, "-" or None) in file order. Returns (result, inspector-like
    summary) for the replay summary: counters summed over the files."""
    _JOB.update(ruleset=ruleset, settings=settings)
    tmp = tempfile.mkdtemp(prefix="appliance-replay-") if eve_target else None
    tasks = [(i, p, os.path.join(tmp, f"{i}.json") if tmp else None) for i, p in enumerate(paths)]
    out = EveWriter(eve_target) if eve_target else None
    done, next_out, results = {}, 0, [None] * len(paths)
    try:
        # fork: the children inherit the loaded rule set (a spawn would load it again in each)
        with multiprocessing.get_context("fork").Pool(min(jobs, len(paths))) as pool:
            for index, counts in pool.imap_unordered(_replay_one, tasks):
                results[index] = counts
                done[index] = True
                while next_out < len(paths) and done.get(next_out):   # files in order, as they finish
                    if out is not None:
                        _append(out, tasks[next_out][2])
                    next_out += 1
    finally:
        if out is not None:
            out.close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return _merged(results)


def _append(out, path):
    """The file's events, as written, onto the output (whole lines: one write per chunk)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            cut = chunk.rfind(b"\n") + 1
            rest = chunk[cut:]
            if rest:                          # finish the line before writing
                rest += f.readline()
            os.write(out._fd, chunk[:cut] + rest)   # EveWriter's descriptor (a file or stdout)


def _merged(results):
    verdicts, would, encap, hits = Counter(), Counter(), Counter(), Counter()
    for r in results:
        verdicts.update(r["verdicts"])
        would.update(r["would_block"])
        encap.update(r["encap"])
        hits.update(r["rule_hits"])
    res = SimpleNamespace(packets=sum(r["packets"] for r in results),
                          errors=[e for r in results for e in r["errors"]],
                          verdicts=Counter({k: n for k, n in verdicts.items() if n}), rule_hits=hits)
    counters = SimpleNamespace(alerts=sum(r["alerts"] for r in results),
                               alerts_suppressed=sum(r["alerts_suppressed"] for r in results),
                               invalid=sum(r["invalid"] for r in results), verdicts=verdicts,
                               would_block={k: would.get(k, 0) for k in ("drop", "reject")} | dict(would),
                               encap=dict(encap), rule_hits=hits)
    insp = SimpleNamespace(counters=counters, flows=SimpleNamespace(total=sum(r["flows"] for r in results)))
    return res, insp


def check_jobs(o, error):
    """--jobs with what it cannot combine: one report, trace or pcap log needs one run."""
    if o.jobs is None:
        return
    if o.jobs < 1:
        error("--jobs must be at least 1")
    for flag, value in (("--report", o.report), ("--explain", o.explain), ("--pcap-log", o.pcap_log)):
        if value is not None:
            error(f"--jobs cannot be combined with {flag} (it describes one run; replay without --jobs)")
    if sys.platform != "linux":
        error("--jobs needs fork (Linux)")
