"""What a server->client packet costs on a server-first flow held for its client's first bytes.

    python3 -m bench.server_first [--runs 4] [--packets 100000]

Offline, no root, this tree (its build: compiled when built). A `tls_sni`/`http_host`
blocklist; 8 TCP flows to :21 after their handshake, then `--packets` server segments of 100
bytes back to back, in three ways, timed in CPU time per packet of Inspector.process:
- decided: the client spoke first and named nothing (a 100-byte binary first segment): the
  flows are final (the decided path);
- held: the server spoke first, the client stays silent: the flows are passed but not final
  (the client's first bytes may still name something: review s14b), on the held path;
- held, inspected: the same, the held mark cleared before each packet: the whole inspected
  path each such packet would take without it.
("Server-first flows held for the client's first bytes" in docs/performance.md.)
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ("rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example}\n"
         "  - {id: 2, action: drop, proto: tcp, http_host: evil.example}\n")
FLOWS = 8
C_ISN, S_ISN = 1000, 5000


def segment(i, to_server, flags, seq, ack, payload=b""):
    c, s = socket.inet_aton(f"10.201.1.{2 + i}"), socket.inet_aton("10.201.2.2")
    cport, sport = 40000 + i, 21
    src, dst, sp, dp = (c, s, cport, sport) if to_server else (s, c, sport, cport)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 1, 0x4000, 64, 6, 0, src, dst) + tcp


def child(mode, packets):
    sys.path.insert(0, os.getcwd())
    from appliance import compiled
    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(RULES)
    insp = Inspector(load_rules(f.name), Settings(verify_checksums=False, offload=True))
    os.unlink(f.name)
    SYN, ACK, PSH = 0x02, 0x10, 0x08
    c_next = [C_ISN + 1] * FLOWS
    s_next = [S_ISN + 1] * FLOWS
    setup = []
    for i in range(FLOWS):
        setup += [segment(i, True, SYN, C_ISN, 0), segment(i, False, SYN | ACK, S_ISN, C_ISN + 1),
                  segment(i, True, ACK, C_ISN + 1, S_ISN + 1)]
        if mode == "decided":
            setup.append(segment(i, True, PSH | ACK, C_ISN + 1, S_ISN + 1, bytes(range(100))))
            c_next[i] += 100
        else:
            setup.append(segment(i, False, PSH | ACK, S_ISN + 1, C_ISN + 1, b"220 ftp ready\r\n"))
            s_next[i] += 15
    for r in setup:
        insp.process(decode_l3(r, 1000.0))
    flows = list(insp.flows.flows.values())
    final = [f.final for f in flows]
    if final != [mode == "decided"] * FLOWS:
        raise RuntimeError(f"{mode}: final {final}")
    pkts = []
    for n in range(packets):
        i = n % FLOWS
        pkts.append(decode_l3(segment(i, False, PSH | ACK, s_next[i], c_next[i], bytes(100)), 1000.0))
        s_next[i] += 100
    process = insp.process
    if mode == "inspected":
        t = time.thread_time()
        for p in pkts:
            for f in flows:           # (cleared for all 8: the cost of the loop is measured apart)
                f.client_awaited = False
            process(p)
        us = (time.thread_time() - t) / packets * 1e6
        t = time.thread_time()
        for p in pkts[:packets // 4]:
            for f in flows:
                f.client_awaited = False
        us -= (time.thread_time() - t) / (packets // 4) * 1e6
    else:
        t = time.thread_time()
        for p in pkts:
            process(p)
        us = (time.thread_time() - t) / packets * 1e6
    v = [f.verdict for f in flows]
    if v != ["pass"] * FLOWS or insp.counters.internal_errors:
        raise RuntimeError(f"{mode}: verdicts {v}")
    return {"us": us, "build": compiled.describe()}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.server_first", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--packets", type=int, default=100_000)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.child:
        print(json.dumps(child(o.child[0], int(o.child[1]))))
        return 0
    got = {m: [] for m in ("decided", "held", "inspected")}
    build = None
    for _ in range(o.runs):
        for m in got:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", m, str(o.packets)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=600,
                                 env={**os.environ, "PYTHONPATH": ROOT})
            if out.returncode != 0:
                raise RuntimeError(out.stderr.strip()[-400:])
            r = json.loads(out.stdout)
            got[m].append(r["us"])
            build = r["build"]
    print(f"build: {build}")
    for m, us in got.items():
        us.sort()
        print(f"{m:10s} us/packet median {us[len(us) // 2]:.2f} ({us[0]:.2f}..{us[-1]:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
