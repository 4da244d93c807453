"""`appliance replay`: pcaps through the same Inspector the live datapath uses.

decode_frame -> defrag -> Inspector.process, with pcap timestamps as the clock.
"""
import argparse
import os
import sys
import time
from collections import Counter

from .decode import decode_frame
from .defrag import Defragmenter
from .detect.loader import load_rules
from .detect.rule import RuleError
from .inspector import Inspector, Settings
from .output.eve import EveWriter
from .source.pcap import packets, PcapError


class ReplayResult:
    def __init__(self):
        self.packets = 0
        self.verdicts = Counter()
        self.rule_hits = Counter()
        self.errors = []


def replay(paths, inspector, defrag=None, progress=None):
    """Feed every packet of every file through the inspector. Returns a ReplayResult;
    unreadable/corrupt files are recorded in .errors after their good packets."""
    res = ReplayResult()
    defrag = defrag or Defragmenter()
    last_tick = None
    for path in paths:
        inspector.settings.source_name = os.path.basename(path)
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        try:
            for ts, buf, linktype, cnt in packets(path):
                pkt = decode_frame(buf, linktype, ts)
                pkt.pcap_cnt = cnt
                res.packets += 1
                if last_tick is None or ts - last_tick >= 1.0 or ts < last_tick:
                    inspector.tick(ts)
                    defrag.expire(ts)
                    last_tick = ts
                    if progress:
                        progress(path, cnt, size)
                if pkt.frag is not None:
                    whole = defrag.feed(pkt)
                    if whole is None:      # held until its datagram completes; the frame still counts
                        inspector.counters.count_packet(pkt)
                        continue
                    pkt = whole
                v = inspector.process(pkt)
                res.verdicts[v.action] += 1
                for r in v.alerts:
                    res.rule_hits[(r.id, r.msg)] += 1
        except PcapError as e:
            res.errors.append(str(e))
    inspector.tick(inspector.now)
    inspector.close()
    return res


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
    ap.add_argument("--rules", required=True, help="rule file or directory")
    ap.add_argument("--eve", default=None, help="EVE JSON output file ('-' = stdout); default: none")
    ap.add_argument("--home-net", default=None, help="comma-separated CIDRs (overrides HOME_NET)")
    ap.add_argument("--depth-packets", type=int, default=16)
    ap.add_argument("--depth-bytes", type=int, default=8192)
    ap.add_argument("--max-flows", type=int, default=100_000)
    ap.add_argument("--quiet", action="store_true", help="no summary on stderr")
    ap.add_argument("--no-checksums", action="store_true",
                    help="do not check TCP checksums (by default, once a client has sent a valid "
                         "checksum, a later segment with a bad one is kept out of the app-layer stream)")
    o = ap.parse_args(args)
    home = [s.strip() for s in o.home_net.split(",") if s.strip()] if o.home_net else None
    try:
        ruleset = load_rules(o.rules, home_net=home)
    except RuleError as e:
        for p in e.problems:
            print(p, file=sys.stderr)
        return 2
    except Exception as e:                 # a loader bug must still not print a traceback
        print(f"{o.rules}:1: internal error loading rules: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    eve = None
    if o.eve:
        if o.eve != "-" and os.path.exists(o.eve):
            os.truncate(o.eve, 0)          # one replay = one EVE file (byte-identical reruns)
        eve = EveWriter(o.eve)
    settings = Settings(home_net=home, depth_packets=o.depth_packets, depth_bytes=o.depth_bytes,
                        max_flows=o.max_flows, verify_checksums=not o.no_checksums)
    insp = Inspector(ruleset, settings, eve)
    res = replay(o.pcaps, insp, progress=_progress_bar())
    insp.stats_event()
    if eve:
        eve.close()
    if not o.quiet:
        _summary(res, insp)
    for err in res.errors:
        print(f"error: {err}", file=sys.stderr)
    return 2 if res.errors else 0


def _summary(res, insp):
    c = insp.counters
    w = sys.stderr.write
    if sys.stderr.isatty():
        w("\r")
    w(f"packets: {res.packets}  flows: {insp.flows.total}  alerts: {c.alerts}"
      f" (suppressed {c.alerts_suppressed})  anomalies/invalid packets: {c.invalid}\n")
    w("verdicts: " + "  ".join(f"{k}={res.verdicts.get(k, 0)}" for k in ("pass", "drop", "reject")) + "\n")
    if c.encap:
        w("not inspected (non-IP / unsupported encapsulation): "
          + ", ".join(f"{k}={v}" for k, v in sorted(c.encap.items())) + "\n")
    if res.rule_hits:
        w("top rules:\n")
        for (rid, msg), n in res.rule_hits.most_common(10):
            w(f"  {n:8d}  [{rid}] {msg}\n")
