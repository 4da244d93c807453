"""The cost of `payload: stream` (Suricata's flow:only_stream; docs/rules.md "Stream
content"): the depth row's .rules set, once as is and once with two only_stream rules (an
alert to the server and a drop to the client, whose contents never occur, so every data
segment within the depth is reassembled and inspected), replayed over the same mixed
capture. Printed: the pkt/s ratio (with stream rules / without). Run alone:
`python3 -m bench.stream_payload [--packets N] [--runs N]`."""
import os
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


def main(argv=None):
    import argparse
    from statistics import median
    from . import gen_pcap
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    o = ap.parse_args(argv)
    row = stream_row(gen_pcap.cached(o.packets), o.runs)
    print(f"{row.measure}: ratio median {median(row.ratios):.2f} ({min(row.ratios):.2f}..{max(row.ratios):.2f})")


if __name__ == "__main__":
    main()
