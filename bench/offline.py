"""Offline rows: pcap replay through the real pipeline against a bare dpkt read loop.

Each run times the baseline and the measured replay back to back (alternating), so
both see the same load from whatever else shares the machine.
"""
import os
import tempfile
import time

import dpkt

from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EVE_TYPES, EveWriter
from appliance.replay import replay

from . import bodies, depth, gen_pcap, memory
from .common import Row, log
from .rulegen import write_rules

SYNFLOOD = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "corpus",
                        "stopddos-packet-captures", "pkt.TCP.synflood.spoofed.pcap")
SYNFLOOD = os.path.normpath(os.environ.get("BENCH_SYNFLOOD", SYNFLOOD))


def bare_read(paths):
    """The baseline: read every record with dpkt.pcap.Reader and do nothing with it."""
    n = 0
    t = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            for _ts, _buf in dpkt.pcap.Reader(f):
                n += 1
    return n, time.perf_counter() - t


def timed_replay(paths, ruleset, max_flows=1_000_000, eve_types=None, eve_path=None):
    """(packets, seconds) of one replay; `eve_path`: EVE written there (the events' cost counts)."""
    settings = Settings(max_flows=max_flows) if eve_types is None else Settings(max_flows=max_flows,
                                                                               eve_types=eve_types)
    eve = EveWriter(eve_path) if eve_path else None
    insp = Inspector(ruleset, settings, eve)
    t = time.perf_counter()
    res = replay(paths, insp)
    if eve:
        insp.close()                      # the flow events too, as a replay with --eve writes them
        eve.close()
    dt = time.perf_counter() - t
    if res.errors:
        raise RuntimeError("; ".join(res.errors))
    return res.packets, dt


def floor_pass(paths, max_flows=1_000_000):
    """(packets, seconds) of the least any design with a Python-level flow per packet must
    do: our pcap reader, decode and one FlowTable.lookup per packet, nothing after it. Its
    ratio to the bare read is the ceiling of the replay rows (docs/performance.md)."""
    from appliance.flow import FlowTable
    from appliance.source.pcap import PcapSource
    table = FlowTable(max_flows)
    lookup = table.lookup
    n = 0
    t = time.perf_counter()
    for pkt in PcapSource(paths):
        lookup(pkt)
        n += 1
    return n, time.perf_counter() - t


def floor_row(label, paths, runs, target, max_flows=1_000_000):
    """`target`: the replay row's own; a floor that misses it says the target is out of reach
    of this design, whatever the rest of the pipeline costs."""
    row = Row(f"replay floor: read + decode + flow lookup, {label}", "bare dpkt.pcap.Reader loop, same file",
              "pkt/s", target)
    for i in range(runs):
        n0, t0 = bare_read(paths)
        n1, t1 = floor_pass(paths, max_flows)
        row.add(n1 / t1, n0 / t0)
        log(f"  run {i + 1}/{runs}: floor {n1 / t1:,.0f} pkt/s, bare read {n0 / t0:,.0f} pkt/s")
    return row


def _pps_row(measure, paths, ruleset, runs, target=">= 0.50"):
    row = Row(measure, "bare dpkt.pcap.Reader loop, same file", "pkt/s", target)
    for i in range(runs):
        n0, t0 = bare_read(paths)
        n1, t1 = timed_replay(paths, ruleset)
        row.add(n1 / t1, n0 / t0)
        log(f"  run {i + 1}/{runs}: replay {n1 / t1:,.0f} pkt/s, bare read {n0 / t0:,.0f} pkt/s ({n1} packets)")
    return row


def protocol_logs_row(capture, ruleset, runs, tmp):
    """The cost of protocol logs: replay with EVE written, every event type on, against
    the same with dns/tls/http off (flows then leave inspection once the rules are done)."""
    off = tuple(t for t in EVE_TYPES if t not in ("dns", "tls", "http"))
    row = Row("replay time, mixed capture, 1,000 rules, EVE with dns/tls/http logs", "same, EVE without them",
              "s", "<= 1.50")
    for i in range(runs):
        _, t_off = timed_replay([capture], ruleset, eve_types=off, eve_path=os.path.join(tmp, "eve-off.json"))
        _, t_on = timed_replay([capture], ruleset, eve_types=EVE_TYPES, eve_path=os.path.join(tmp, "eve-on.json"))
        lines = sum(1 for _ in open(os.path.join(tmp, "eve-on.json"))) - sum(1 for _ in open(os.path.join(tmp, "eve-off.json")))
        row.add(t_on, t_off)
        log(f"  run {i + 1}/{runs}: protocol logs on {t_on:.2f}s, off {t_off:.2f}s ({lines:,} more EVE lines)")
        for name in ("eve-on.json", "eve-off.json"):
            os.unlink(os.path.join(tmp, name))
    return row


def rows(quick=False, runs=None):
    packets = 100_000 if quick else 1_000_000
    flows = 100_000 if quick else 1_000_000
    runs = runs or 3
    out = []
    mixed = gen_pcap.cached(packets)
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as d:
        r10 = load_rules(write_rules(d, 10))
        r1k = load_rules(write_rules(d, 1000))
        t = time.perf_counter()
        r10k = load_rules(write_rules(d, 10_000))
        log(f"loaded 10,000 rules in {time.perf_counter() - t:.1f}s")

        log(f"offline: mixed capture, 1,000 rules ({packets:,} packets)")
        out.append(_pps_row(f"replay pkt/s, mixed capture ({packets // 1000}k pkts), 1,000 rules", [mixed], r1k, runs))
        log("offline: the floor (read + decode + flow lookup, nothing after), mixed capture")
        out.append(floor_row(f"mixed capture ({packets // 1000}k pkts)", [mixed], runs, ">= 0.50"))

        log("offline: corpus SYN flood, 1,000 rules")
        if os.path.exists(SYNFLOOD):
            # One pass only: a second pass would find every spoofed flow already in the table
            # and measure the fast path instead of flow creation.
            n, _ = bare_read([SYNFLOOD])
            row = _pps_row(f"replay pkt/s, corpus SYN flood ({n / 1000:.1f}k pkts, every packet a new flow), 1,000 rules",
                           [SYNFLOOD], r1k, runs, target=">= 0.40")     # issue 15's target for a flood
            out.append(row)
            log("offline: the floor, corpus SYN flood")
            out.append(floor_row("corpus SYN flood", [SYNFLOOD], runs, ">= 0.40"))
        else:
            out.append(Row("replay pkt/s, corpus SYN flood, 1,000 rules", "bare dpkt.pcap.Reader loop", "pkt/s",
                           ">= 0.50", status="SKIPPED", note=f"{SYNFLOOD} absent"))

        log("offline: 10,000 rules vs 10 rules")
        row = Row("replay time, mixed capture, 10,000 rules", "10 rules, same capture", "s", "<= 1.25")
        for i in range(runs):
            _, t10 = timed_replay([mixed], r10)
            _, t10k = timed_replay([mixed], r10k)
            row.add(t10k, t10)
            log(f"  run {i + 1}/{runs}: 10,000 rules {t10k:.2f}s, 10 rules {t10:.2f}s")
        out.append(row)

        out.append(protocol_logs_row(mixed, r1k, runs, d))

        log("offline: a .rules set vs the same rules in YAML (inspection depth)")
        out.append(depth.depth_row(mixed, runs))

        log("offline: HTTP bodies read for file_data rules vs not")
        out.append(bodies.body_row(mixed, runs))
        out.append(bodies.body_row(mixed, runs, yaml=True))
        log("offline: only_stream rules (stream reassembly for content) vs none")
        from . import stream_payload
        out.append(stream_payload.stream_row(mixed, runs))
        log("offline: the pcap log (mode alerts, mode all) vs off")
        from . import pcap_log
        out.extend(pcap_log.pcap_log_rows(mixed, runs))

    log(f"offline: memory per flow at {flows:,} flows (subprocess)")
    out.extend(memory.rows(flows, runs=1 if not quick else 1))
    return out
