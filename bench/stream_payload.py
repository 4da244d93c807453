"""The cost of `payload: stream` (Suricata's flow:only_stream; docs/rules.md "Stream
content"): the depth row's .rules set, once as is and once with two only_stream rules (an
alert to the server and a drop to the client, whose contents never occur, so every data
segment within the depth is reassembled and inspected), replayed over the same mixed
capture. Printed: the pkt/s ratio (with stream rules / without). Run alone:
`python3 -m bench.stream_payload [--packets N] [--runs N]`."""
import os
import re
import sys
import tempfile

from appliance.detect.loader import load_rules

from .common import Row
from .depth import SURICATA, _replay

STREAM_RULES = """\
alert tcp any any -> any any (msg:"bench stream"; flow:established,to_server,only_stream; content:"never-in-a-stream-1"; sid:201;)
drop tcp any any -> any any (msg:"bench stream drop"; flow:established,to_client,only_stream; content:"never-in-a-stream-2"; sid:202;)
"""


def stream_row(capture, runs):
    row = Row("replay pkt/s, mixed capture, 7 rules as .rules + 2 only_stream rules", "the 7 rules alone",
              "pkt/s", ">= 0.50")
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as d:
        for name, text in (("base.rules", SURICATA), ("stream.rules", SURICATA + STREAM_RULES)):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        base, stream = load_rules(os.path.join(d, "base.rules")), load_rules(os.path.join(d, "stream.rules"))
        for i in range(runs):
            n, t_b, _, _, _, _ = _replay(capture, base, d, "b.json")
            _, t_s, _, _, _, _ = _replay(capture, stream, d, "s.json")
            row.add(n / t_s, n / t_b)
            msg = f"  run {i + 1}/{runs}: with only_stream {n / t_s:,.0f} pkt/s, without {n / t_b:,.0f} pkt/s"
            print(msg, file=sys.stderr)
    return row


def per_packet(text):
    """The rule set with every payload-content rule read per packet (flow:no_stream): what
    the converter made of them before they read the stream as well (payload: both)."""
    out = []
    for line in text.splitlines():
        if "content:" in line and "tls.sni" not in line:
            line = re.sub(r"flow:([^;]*);", r"flow:\1,no_stream;", line)
        out.append(line)
    return "\n".join(out) + "\n"


def both_row(capture, runs):
    """The depth row's .rules as converted (its four TCP content rules `payload: both`: the
    stream of every TCP flow they may look at) / the same rules per packet (flow:no_stream)."""
    row = Row("replay pkt/s, mixed capture, 7 rules as .rules, content on stream and packets",
              "the same rules per packet (flow:no_stream)", "pkt/s", ">= 0.50")
    with tempfile.TemporaryDirectory(prefix="bench-both-") as d:
        for name, text in (("both.rules", SURICATA), ("packet.rules", per_packet(SURICATA))):
            with open(os.path.join(d, name), "w") as f:
                f.write(text)
        both, packet = load_rules(os.path.join(d, "both.rules")), load_rules(os.path.join(d, "packet.rules"))
        assert sum(r.payload == "both" for r in both.rules) == 4 and all(r.payload == "packet" for r in packet.rules)
        for i in range(runs):
            n, t_p, _, _, _, a_p = _replay(capture, packet, d, "p.json")
            _, t_b, _, _, _, a_b = _replay(capture, both, d, "b.json")
            row.add(n / t_b, n / t_p)
            print(f"  run {i + 1}/{runs}: both {n / t_b:,.0f} pkt/s ({a_b} alerts), per packet "
                  f"{n / t_p:,.0f} pkt/s ({a_p} alerts)", file=sys.stderr)
    return row


def main(argv=None):
    import argparse
    from statistics import median
    from . import gen_pcap
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--both", action="store_true", help="the payload: both row (converted content rules)")
    o = ap.parse_args(argv)
    row = (both_row if o.both else stream_row)(gen_pcap.cached(o.packets), o.runs)
    print(f"{row.measure}: ratio median {median(row.ratios):.2f} ({min(row.ratios):.2f}..{max(row.ratios):.2f})")


if __name__ == "__main__":
    main()
