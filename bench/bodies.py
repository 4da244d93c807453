"""The cost of reading HTTP bodies (docs/performance.md "HTTP bodies"): the depth row's
.rules set, once as is and once with two file_data rules (an alert and a drop whose
contents never occur, so every body is read to its end or the inspect depth), replayed
over the same mixed capture (its HTTP flows carry Content-Length bodies of 0.5-6 KB).
Printed: the pkt/s ratio (with file_data / without) and the packets that took the fast
path in each (a flow with a file_data rule stays inspected while a body may come)."""
import os
import sys
import tempfile

from appliance.detect.loader import load_rules

from .common import Row
from .depth import SURICATA, YAML, _replay

BODY_RULES = """\
alert http any any -> any any (msg:"bench body"; flow:established,to_client; file_data; content:"never-in-a-body-1"; sid:101;)
drop http any any -> any any (msg:"bench body drop"; flow:established,to_client; file_data; content:"never-in-a-body-2"; nocase; sid:102;)
"""
YAML_BODY_RULES = """\
  - {id: 101, action: alert, msg: bench body, proto: tcp, flow: [established, to_client], content: [{value: never-in-a-body-1, buffer: file_data}]}
  - {id: 102, action: drop, msg: bench body drop, proto: tcp, flow: [established, to_client], content: [{value: never-in-a-body-2, nocase: true, buffer: file_data}]}
"""


def body_row(capture, runs, yaml=False):
    """yaml: the YAML form of both sets (its 16-packet / 8 KiB depth: without file_data rules
    HTTP flows are offloaded early, with them they stay inspected until their body ends)."""
    kind, base_text, body_text = (("in YAML", YAML, YAML + YAML_BODY_RULES) if yaml
                                  else ("as .rules", SURICATA, SURICATA + BODY_RULES))
    row = Row(f"replay pkt/s, mixed capture, 7 rules {kind} + 2 file_data rules", "the 7 rules alone",
              "pkt/s", ">= 0.50")
    ext = ".yaml" if yaml else ".rules"
    with tempfile.TemporaryDirectory(prefix="bench-bodies-") as d:
        for name, text in (("base" + ext, base_text), ("body" + ext, body_text)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        base, body = load_rules(os.path.join(d, "base" + ext)), load_rules(os.path.join(d, "body" + ext))
        for i in range(runs):
            n, t_b, _, _, fast_b, _ = _replay(capture, base, d, "b.json")
            _, t_f, _, _, fast_f, _ = _replay(capture, body, d, "f.json")
            row.add(n / t_f, n / t_b)
            msg = (f"  run {i + 1}/{runs}: with file_data {n / t_f:,.0f} pkt/s, without {n / t_b:,.0f} pkt/s; "
                   f"fast-path packets with {fast_f:,} / without {fast_b:,}")
            print(msg, file=sys.stderr)
            row.note = msg.split("; ", 1)[1]
    return row


def stalled_row(flows, total):
    """Memory held by `flows` stalled deflate responses (each ~150 bytes inflating to the
    100 KiB inspect depth, its Content-Length never reached), with all flows' bodies
    bounded by `total` (inspection.body_total_bytes) and without a bound (the baseline):
    bytes held per byte sent, traced by tracemalloc."""
    import tracemalloc
    import zlib
    from appliance.applayer import body
    dfl = zlib.compress(b"\0" * (100 * 1024), 9)
    row = Row(f"bytes held / bytes sent, {flows:,} stalled deflate responses, body_total_bytes "
              f"{total >> 20} MiB", "no bound on all flows", "B/B", "<= 1.00")
    held = {}
    for name, limits in (("bounded", body.Limits(total=total)), ("unbounded", body.Limits(total=1 << 62))):
        pool = body.Pool(limits)
        tracemalloc.start()
        bodies = []
        for _ in range(flows):
            bodies.append(body.Body(["deflate"], limits, body.FlowBudget(limits, pool)))
            bodies[-1].feed(dfl)
        held[name] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del bodies
    sent = flows * len(dfl)
    row.add(held["bounded"] / sent, held["unbounded"] / sent)
    row.note = (f"sent {sent:,} B; held bounded {held['bounded']:,} B ({held['bounded'] / sent:.0f}x), "
                f"unbounded {held['unbounded']:,} B ({held['unbounded'] / sent:.0f}x)")
    return row


def main(argv=None):
    import argparse
    from statistics import median
    from . import gen_pcap
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stalled", type=int, default=0, help="only the memory of N stalled deflate responses")
    o = ap.parse_args(argv)
    if o.stalled:
        row = stalled_row(o.stalled, 64 << 20)
        print(f"{row.measure}: {row.values[0]:.0f} vs baseline {row.bases[0]:.0f} "
              f"(ratio {row.ratios[0]:.2f}); {row.note}")
        return
    for yaml in (False, True):
        row = body_row(gen_pcap.cached(o.packets), o.runs, yaml)
        print(f"{row.measure}: ratio median {median(row.ratios):.2f} "
              f"({min(row.ratios):.2f}..{max(row.ratios):.2f}); {row.note}")


if __name__ == "__main__":
    main()
