"""What judging every transaction costs: long HTTP keep-alive flows with name verdict rules.

    python3 -m bench.names [--runs N]

A flow an `http_host` pass/drop/reject rule applies to stays in Python while a later request
may come (docs/rules.md, "Multi-transaction flows"); before issue 9 it was offloaded at the
inspection depth. The capture: 100 downloads, one request each and 200 response segments,
with and without `Connection: close` (after which the server reads no more requests). Each
row replays it with the shipped rules/examples/http-host.yaml against the same capture with
no rules (baseline, same run, alternating), in CPU seconds; the note gives the share of
packets that took the decided-flow fast path (live: the kernel's, via connmark).
"""
import argparse
import os
import tempfile
import time

from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings
from appliance.replay import replay

from .common import Row, format_rows, header, log
from .gen_pcap import ACK, ETH, FIN, IP4, MAC_C, MAC_S, PSH, REC, SYN, TCPH, pcap_header

RULES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rules", "examples",
                     "http-host.yaml")


def downloads(path, close, flows=100, segments=200):
    """Write the capture: per flow a handshake, one GET, `segments` x 1400 bytes back, FIN."""
    out = [pcap_header()]
    ts = 1_700_000_000.0
    for i in range(flows):
        c, s = bytes((10, 0, i >> 8, i & 255 or 1)), bytes((198, 51, 100, 7))
        cp, cseq, sseq = 20000 + i, 1000, 5000
        req = b"GET /f HTTP/1.1\r\nHost: files%d.example\r\n%s\r\n" % (i, b"Connection: close\r\n" if close else b"")
        steps = [(True, SYN, b""), (False, SYN | ACK, b""), (True, ACK, b""), (True, PSH | ACK, req)]
        steps += [(False, ACK, b"d" * 1400) for _ in range(segments)] + [(True, FIN | ACK, b""), (False, FIN | ACK, b"")]
        for to_server, flags, data in steps:
            src, dst, sp, dp, eth = (c, s, cp, 80, ETH.pack(MAC_S, MAC_C, 0x0800)) if to_server else \
                (s, c, 80, cp, ETH.pack(MAC_C, MAC_S, 0x0800))
            seq, ack = (cseq, sseq) if to_server else (sseq, cseq)
            l4 = TCPH.pack(sp, dp, seq, ack, 0x50, flags, 65535, 0, 0)
            n = len(data) + (1 if flags & (SYN | FIN) else 0)
            if to_server:
                cseq += n
            else:
                sseq += n
            ip = IP4.pack(0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, src, dst)
            ts += 0.0001
            out.append(REC.pack(int(ts), int((ts % 1) * 1e6), 54 + len(data), 54 + len(data)) + eth + ip + l4 + data)
    with open(path, "wb") as f:
        f.write(b"".join(out))


def timed(path, ruleset):
    insp = Inspector(ruleset, Settings())
    t = time.process_time()
    res = replay([path], insp)
    return time.process_time() - t, insp.counters.fast_path / res.packets


def rows(runs=5):
    out = []
    names = load_rules(RULES)
    with tempfile.TemporaryDirectory(prefix="bench-names-") as d:
        empty = os.path.join(d, "none.yaml")
        with open(empty, "w") as f:
            f.write("rules: []\n")
        none = load_rules(empty)
        for close in (False, True):
            path = os.path.join(d, f"dl-{close}.pcap")
            downloads(path, close)
            label = "Connection: close" if close else "keep-alive"
            row = Row(f"replay CPU, 100 HTTP downloads ({label}), http-host.yaml", "no rules, same capture",
                      "s", "<= 2.00")
            shares = []
            for i in range(runs):
                t0, _ = timed(path, none)
                t1, share = timed(path, names)
                row.add(t1, t0)
                shares.append(share)
                log(f"  {label} run {i + 1}/{runs}: {t1:.3f}s vs {t0:.3f}s, fast path {share:.0%}")
            row.note = f"fast path {shares[-1]:.0%} of packets"
            out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.names", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    o = ap.parse_args(argv)
    print(header("python3 -m bench.names"), flush=True)
    print(format_rows(rows(o.runs)))


if __name__ == "__main__":
    main()
