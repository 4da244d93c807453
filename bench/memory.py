"""Memory per tracked flow: RSS delta of a fresh subprocess that inserts N distinct flows.

    python3 -m bench.memory --flows 1000000 [--mode inspector|table]

Each flow is one decoded TCP SYN (distinct source address/port) fed through
Inspector.process (default rules) or FlowTable.lookup alone; packets are dropped after
use, so what stays is the flow table. Also prints a sys.getsizeof breakdown of one Flow.
"""
import argparse
import gc
import json
import os
import struct
import subprocess
import sys

from .common import Row, log

RULES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rules", "default.yaml")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _syn(i):
    src = struct.pack("!BBBB", 10, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, b"\xc6\x33\x64\x07")
    tcp = struct.pack("!HHIIBBHHH", 1024 + (i >> 24), 443, i, 0, 0x50, 0x02, 65535, 0, 0)
    return ip + tcp


def breakdown(flow, table):
    """Bytes one flow holds that no other flow shares (approximate: singletons excluded)."""
    shared = (None, True, False)
    parts = {"Flow object (__slots__)": sys.getsizeof(flow)}
    key = flow.key
    if key is flow.key:             # held: the pure Flow's key slot, a compiled one's rare long key
        parts["key (packed bytes: raw addresses, ports)"] = sys.getsizeof(key)
    else:                           # the compiled IPv4 Flow packs it from its C fields when read
        parts["key (none: packed from the Flow's C fields when read)"] = 0
    # the address text is made when read (Flow.src/dst), never held by the flow
    seen = {id(key), id(flow.older), id(flow.younger)}
    other = 0
    names = []
    for slot in type(flow).__slots__:
        if slot in ("src", "dst"):
            continue                    # properties: a new string each read
        v = getattr(flow, slot, None)
        if v is not getattr(flow, slot, None):
            continue                    # a C field of the compiled Flow: each read makes a new object
        if v in shared or id(v) in seen or (isinstance(v, int) and -5 <= v <= 256) or isinstance(v, str) and len(v) < 2:
            continue
        if isinstance(v, str) and v in ("new", "established", "closing", "closed", "any", "inbound", "outbound", "pass"):
            continue
        seen.add(id(v))
        sz = sys.getsizeof(v)
        if isinstance(v, (list, dict, tuple)):
            sz += sum(sys.getsizeof(x) for x in (v.values() if isinstance(v, dict) else v)
                      if not (x is None or isinstance(x, bool) or (isinstance(x, int) and -5 <= x <= 256)))
        other += sz
        names.append(f"{slot}={sz}")
    parts["other slot values (" + ", ".join(names) + ")"] = other
    n = len(table.flows)
    parts[f"flow table dict entry (getsizeof/len at {n:,})"] = sys.getsizeof(table.flows) // max(n, 1)
    # eviction/expiry queues: two link slots in the Flow itself (counted above), no entry elsewhere
    return parts


def measure(n, mode):
    from appliance.decode import decode_l3
    from appliance.flow import FlowTable
    if mode == "inspector":
        from appliance.detect.loader import load_rules
        from appliance.inspector import Inspector, Settings
        insp = Inspector(load_rules(RULES), Settings(max_flows=n + 10))
        table = insp.flows
        feed = insp.process
    else:
        table = FlowTable(n + 10)
        feed = table.lookup
    decode_l3(_syn(n + 1), 1.0)               # warm caches/imports before the baseline
    gc.collect()
    before = rss()
    ts = 1.0
    for i in range(n):
        feed(decode_l3(_syn(i), ts))
        ts += 1e-6
    gc.collect()
    after = rss()
    flow = next(reversed(table.flows.values()))
    return {"mode": mode, "flows": len(table), "rss_before": before, "rss_after": after,
            "per_flow": (after - before) / len(table), "breakdown": breakdown(flow, table)}


def run_subprocess(n, mode):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "bench.memory", "--flows", str(n), "--mode", mode, "--json"],
                         cwd=root, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout)


def rows(n, runs=1):
    out = []
    for mode, label in (("inspector", "Inspector.process, default rules"), ("table", "FlowTable.lookup only")):
        row = Row(f"memory per tracked flow at {n:,} flows ({label})", "- (RSS delta in a fresh process)",
                  "B/flow", "<= 300")
        for _ in range(runs):
            try:
                r = run_subprocess(n, mode)
            except Exception as e:                      # noqa: BLE001 — a report row, not a crash
                row.status, row.note = "ERROR", str(e)
                break
            row.add(r["per_flow"])
            log(f"  {mode}: {r['flows']:,} flows, RSS {r['rss_before'] / 1e6:.0f} -> {r['rss_after'] / 1e6:.0f} MB,"
                f" {r['per_flow']:.0f} B/flow")
            if mode == "inspector":
                log("  one Flow, sys.getsizeof breakdown (bytes):")
                for k, v in r["breakdown"].items():
                    log(f"    {v:6d}  {k}")
                row.breakdown = r["breakdown"]
        out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.memory")
    ap.add_argument("--flows", type=int, default=1_000_000)
    ap.add_argument("--mode", choices=("inspector", "table"), default="inspector")
    ap.add_argument("--json", action="store_true")
    o = ap.parse_args(argv)
    r = measure(o.flows, o.mode)
    if o.json:
        print(json.dumps(r))
    else:
        print(f"{r['flows']:,} flows: {r['per_flow']:.0f} bytes/flow (RSS {r['rss_before'] / 1e6:.0f} -> "
              f"{r['rss_after'] / 1e6:.0f} MB)")
        for k, v in r["breakdown"].items():
            print(f"  {v:6d}  {k}")


if __name__ == "__main__":
    main()
