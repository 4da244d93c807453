"""`appliance replay`: pcaps through the same Inspector the live datapath uses.

source/pcap.py decodes each frame (stamped with its file and number) -> the one loop
(source.run) -> Inspector.process, with pcap timestamps as the clock.
"""
import argparse
import os
import stat
import sys
import time
from collections import Counter

from .detect.loader import load_rules, skip_report
from .detect.rule import RuleError
from .inspector import Inspector, Settings, settings_from_config
from .output.eve import EVE_TYPES, EveWriter
from .source import run
from .source.pcap import PcapSource


class ReplayResult:
    """What a replay read (frames; files it could not read to the end) and, from the
    Inspector's own counters, what it decided."""

    def __init__(self, source, inspector):
        c = inspector.counters
        self.packets = source.frames
        self.errors = source.errors
        self.verdicts = Counter({k: n for k, n in c.verdicts.items() if n})
        self.rule_hits = c.rule_hits


def replay(paths, inspector, progress=None):
    """Feed every packet of every file through the inspector. Returns a ReplayResult;
    unreadable/corrupt files are recorded in .errors after their good packets."""
    source = PcapSource(paths, progress)
    run(source, inspector)
    return ReplayResult(source, inspector)


def _progress_bar():
    if not sys.stderr.isatty():
        return None
    state = {"t": 0.0}

    def show(path, cnt, size):
        now = time.monotonic()
        if now - state["t"] < 0.2:
            return
        state["t"] = now
        sys.stderr.write(f"\r{os.path.basename(path)}: {cnt} packets ")
        sys.stderr.flush()
    return show


def main_replay(args):
    ap = argparse.ArgumentParser(prog="appliance replay", description="Replay pcap/pcapng files through the inspection pipeline.")
    ap.add_argument("pcaps", nargs="+", metavar="PCAP")
    ap.add_argument("--config", default=None, metavar="FILE",
                    help="appliance.yaml: its inspection settings, offload, failure mode, home_net and "
                         "rules, exactly as `appliance run` takes them (the flags below override)")
    ap.add_argument("--rules", default=None, help="rule file or directory (default: the config's rules)")
    ap.add_argument("--eve", default=None, help="EVE JSON output file ('-' = stdout); default: none")
    ap.add_argument("--eve-types", default=None, metavar="TYPES",
                    help="comma-separated EVE event types to write (as the config's eve.types; "
                         "default all: " + ",".join(EVE_TYPES) + ")")
    ap.add_argument("--home-net", default=None, help="comma-separated CIDRs (overrides HOME_NET)")
    ap.add_argument("--depth-packets", type=int, default=None, help="default 16")
    ap.add_argument("--depth-bytes", type=int, default=None, help="default 8192")
    ap.add_argument("--max-flows", type=int, default=None, help="default 100000")
    ap.add_argument("--exception-policy", choices=("drop", "ignore"), default=None,
                    help="a name the appliance cannot know (ambiguous stream, mid-stream pickup, "
                         "cap hit): drop = block rules match it, allow rules do not (default); "
                         "ignore = no rule needing it matches")
    ap.add_argument("--skip-unsupported", action="store_true", default=None,
                    help=".rules lines with unsupported keywords are skipped (listed on stderr) instead of "
                         "failing the load (default: the config's rules_skip_unsupported, else false)")
    ap.add_argument("--mode", choices=("enforce", "monitor"), default=None,
                    help="monitor: drop/reject verdicts pass, their alerts say would_drop/would_reject "
                         "(default: the config's mode, else enforce)")
    ap.add_argument("--report", default=None, metavar="HTML",
                    help="write a self-contained HTML report of this run (verdicts over time, top talkers "
                         "and rules, alerts with their names and flow_id, anomalies; bounded size)")
    ap.add_argument("--explain", default=None, metavar="FLOW",
                    help="why this flow was passed or dropped: a flow_id or a filter "
                         "[SRC][:PORT][-DST[:PORT]][/PROTO]; the trace goes to stdout (and into --report)")
    ap.add_argument("--pcap-log", default=None, metavar="DIR",
                    help="write the packets of flows that alerted or were dropped to DIR/replay.pcapng "
                         "(pcapng, the EVE flow_id in each packet's comment; as the config's pcap_log)")
    ap.add_argument("--pcap-log-mode", choices=("alerts", "all"), default=None,
                    help="alerts (default): flows that alerted or were dropped; all: every packet")
    ap.add_argument("--jobs", type=int, default=None, metavar="N",
                    help="replay each file on its own, N files at a time in N processes; the EVE output "
                         "is the files' runs concatenated in the order given, identical whatever N "
                         "(flows do not cross files; without --jobs the files are one stream)")
    ap.add_argument("--kernel-decisions", action="store_true", default=None,
                    help="mark the flows the kernel would decide from headers alone (inspection.kernel_decisions)")
    ap.add_argument("--quiet", action="store_true", help="no summary on stderr")
    ap.add_argument("--no-checksums", action="store_true",
                    help="do not check TCP checksums (by default, once an end has sent a valid "
                         "checksum, a later segment of its with a bad one is ignored, as the receiver does)")
    o = ap.parse_args(args)
    from .replay_jobs import check_jobs
    check_jobs(o, ap.error)
    flow_filter = None
    if o.explain is not None:
        from .explain import FilterError, FlowFilter
        try:
            flow_filter = FlowFilter(o.explain)
        except FilterError as e:
            ap.error(str(e))
    cfg = None
    if o.config:
        from .config import ConfigError, load_config
        try:
            cfg = load_config(o.config)
        except ConfigError as e:
            for p in e.problems:
                print(p, file=sys.stderr)
            return 2
    rules = o.rules or (cfg.rules if cfg else None)
    if rules is None:
        ap.error("--rules is required without --config")
    home = [s.strip() for s in o.home_net.split(",") if s.strip()] if o.home_net else None
    if home is None and cfg is not None and cfg.home_net is not None:
        home = list(cfg.home_net)
    try:
        skip = o.skip_unsupported or bool(cfg and cfg.rules_skip_unsupported)
        ruleset = load_rules(rules, home_net=home, skip_unsupported=skip, modes=cfg.rules_mode if cfg else ())
    except RuleError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    except Exception as e:                 # a loader bug must still not print a traceback
        print(f"{rules}:1: internal error loading rules: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    for line in skip_report(ruleset):
        print(line, file=sys.stderr)
    if o.eve and o.eve != "-" and _is_regular_file(o.eve):
        os.truncate(o.eve, 0)              # one replay = one EVE file (byte-identical reruns)
    flags = {k: v for k, v in (("depth_packets", o.depth_packets), ("depth_bytes", o.depth_bytes),
                               ("max_flows", o.max_flows), ("exception_policy", o.exception_policy))
             if v is not None}
    flags["verify_checksums"] = not o.no_checksums
    if o.mode is not None:
        flags["mode"] = o.mode
    if o.kernel_decisions:
        flags["kernel_decisions"] = True
    if o.eve_types is not None:
        types = [t.strip() for t in o.eve_types.split(",") if t.strip()]
        bad = [t for t in types if t not in EVE_TYPES]
        if bad:
            ap.error(f"--eve-types: unknown event type(s) {', '.join(bad)} (known: {', '.join(EVE_TYPES)})")
        flags["eve_types"] = tuple(dict.fromkeys(types))
    # a capture has no interfaces: direction comes from HOME_NET, as the rules say
    settings = settings_from_config(cfg, **flags) if cfg else Settings(**flags)
    if o.jobs is not None:
        from .replay_jobs import replay_files
        res, insp = replay_files(o.pcaps, o.jobs, ruleset, settings, o.eve)
        if not o.quiet:
            _summary(res, insp)
        for err in res.errors:
            print(f"error: {err}", file=sys.stderr)
        return 2 if res.errors else 0
    eve = EveWriter(o.eve) if o.eve else None
    sink = eve
    if o.report:
        from .report.collect import ReportSink
        sink = ReportSink(eve)             # sees every event the run writes, the EVE file's own
    if flow_filter is not None:
        from .explain import TracingInspector
        insp = TracingInspector(ruleset, settings, sink, flow_filter, _pcap_log(o, cfg))
    else:
        insp = Inspector(ruleset, settings, sink, _pcap_log(o, cfg))
    res = replay(o.pcaps, insp, progress=_progress_bar())
    if insp.pcap_log is not None:
        insp.pcap_log.tick()               # its waiting packets in the file before the stats count them
    insp.stats_event()
    if eve:
        eve.close()
    if insp.pcap_log is not None:
        insp.pcap_log.close()
    trace = None
    if flow_filter is not None:
        from .explain import explain_text
        trace = explain_text(insp, flow_filter)
        if o.eve == "-":
            sys.stderr.write(trace)        # stdout carries the EVE events
        else:
            sys.stdout.write(trace)
    if o.report:
        from .report.html import write_report
        try:
            write_report(o.report, sink.summary, eve_path=o.eve if o.eve not in (None, "-") else None,
                         pcaps=o.pcaps, rules=rules, trace=trace)
        except OSError as e:
            print(f"error: --report {o.report}: {e.strerror or e}", file=sys.stderr)
            return 2
    if not o.quiet:
        _summary(res, insp)
    for err in res.errors:
        print(f"error: {err}", file=sys.stderr)
    return 2 if res.errors else 0


def _pcap_log(o, cfg):
    """The config's pcap_log, the flags over it; None when neither asks for one."""
    from dataclasses import replace
    from .output.pcap_log import PcapLog, PcapLogConfig
    pl = cfg.pcap_log if cfg is not None else None
    if o.pcap_log is not None:
        pl = replace(pl, dir=o.pcap_log) if pl is not None else PcapLogConfig(dir=o.pcap_log)
    if pl is None:
        return None
    if o.pcap_log_mode is not None:
        pl = replace(pl, mode=o.pcap_log_mode)
    return PcapLog(pl, "replay")


def _is_regular_file(path):
    """Only a regular file is emptied first: /dev/null, a FIFO or /dev/stdout are written as they are."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _summary(res, insp):
    c = insp.counters
    w = sys.stderr.write
    if sys.stderr.isatty():
        w("\r")
    w(f"packets: {res.packets}  flows: {insp.flows.total}  alerts: {c.alerts}"
      f" (suppressed {c.alerts_suppressed})  anomalies/invalid packets: {c.invalid}\n")
    w("verdicts: " + "  ".join(f"{k}={c.verdicts.get(k, 0)}" for k in ("pass", "drop", "reject")) + "\n")
    if any(c.would_block.values()):
        w("monitor mode, passed: " + "  ".join(f"would_{k}={n}" for k, n in c.would_block.items()) + "\n")
    if c.encap:
        w("not inspected (non-IP / unsupported encapsulation): "
          + ", ".join(f"{k}={v}" for k, v in sorted(c.encap.items())) + "\n")
    if c.rule_hits:
        w("top rules:\n")
        for (rid, msg), n in c.rule_hits.most_common(10):
            w(f"  {n:8d}  [{rid}] {msg}\n")
