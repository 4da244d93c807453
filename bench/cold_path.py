"""What one packet costs when it finds the worker's code cold: the ping row's missing microseconds.

    python3 -m bench.cold_path [--packets 200] [--rules rules/default.yaml]

Offline, no root: the worker's per-packet work (decode_l3, then Inspector.process) on an ICMP
echo of a ping flow already decided (the fast path), timed after an idle gap of 0 (hot: packets
back to back, the baseline), 1, 3 and 10 ms. A ping (`ping -i 0.01`) sends one request every 10 ms:
its request is the first packet after such a gap, its reply comes ~50 us later and finds the
code warm. Each gap is waited two ways: asleep (a blocked worker) and spinning on the clock
(busy polling), to tell a cost of waking from a cost of the caches other work refilled meanwhile.
Printed: median us per packet per stage and the ratio over the hot median of the same run.
"""
import argparse
import os
import socket
import struct
import sys
import tempfile
import time

from .common import Row, format_rows, header, median

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT, SERVER = "10.201.1.2", "10.201.2.2"
GAPS_MS = (1, 3, 10)


def echo(src, dst, icmp_type, seq):
    """An IPv4 ICMP echo (request 8, reply 0) with ping's 56-byte payload."""
    body = struct.pack("!BBHHH", icmp_type, 0, 0, 0x1234, seq & 0xFFFF) + bytes(56)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), seq & 0xFFFF, 0x4000, 64, 1, 0,
                       socket.inet_aton(src), socket.inet_aton(dst)) + body


def inspector(rules):
    """The worker's Inspector (appliance.source.nfqueue settings) over `rules`, offload off."""
    from appliance.config import load_config
    from appliance.inspector import Inspector
    from appliance.run import _load_rules
    from appliance.source.nfqueue import _settings
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(f"interfaces: {{outside: bench-out, inside: bench-in}}\nrules: {rules}\n"
                "home_net: [10.201.2.0/24]\nworkers: 1\noffload: false\n")
    try:
        cfg = load_config(f.name)
    finally:
        os.unlink(f.name)
    return Inspector(_load_rules(cfg), _settings(cfg), None, None)


def measure(insp, packets, gap, spin):
    """(decode us, process us) medians of echo requests, each after `gap` seconds idle."""
    from appliance.decode import decode_l3
    dec, proc = [], []
    for i in range(packets):
        if gap and spin:
            until = time.perf_counter() + gap
            while time.perf_counter() < until:
                pass
        elif gap:
            time.sleep(gap)
        raw = echo(CLIENT, SERVER, 8, i)
        t0 = time.perf_counter()
        p = decode_l3(raw, time.time())
        p.in_iface = "bench-out"
        t1 = time.perf_counter()
        insp.process(p)
        t2 = time.perf_counter()
        dec.append((t1 - t0) * 1e6)
        proc.append((t2 - t1) * 1e6)
        reply = decode_l3(echo(SERVER, CLIENT, 0, i), time.time())   # the flow as a ping has it
        reply.in_iface = "bench-in"
        insp.process(reply)
    return median(dec), median(proc)


def _row(measure, value, hot):
    r = Row(measure, "back to back (hot)", "us", "-")
    r.add(value, hot)
    r.status = "info"                # a measurement to read, not a target
    return r


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.cold_path", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=200)
    ap.add_argument("--rules", default=os.path.join(ROOT, "rules", "default.yaml"))
    o = ap.parse_args(argv)
    print(header("python3 -m bench.cold_path " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    insp = inspector(o.rules)
    measure(insp, 50, 0, False)                                     # the flow decided, the code loaded
    hot = measure(insp, o.packets * 10, 0, False)
    rows = []
    for gap in GAPS_MS:
        for spin in (False, True):
            d, p = measure(insp, o.packets, gap / 1000, spin)
            how = "spinning" if spin else "asleep"
            rows.append(_row(f"decode_l3 after {gap} ms {how}", d, hot[0]))
            rows.append(_row(f"Inspector.process after {gap} ms {how}", p, hot[1]))
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
