"""What a decided flow's packet costs in Inspector.process, this tree against another checkout.

    python3 -m bench.decided_path --compare TREE [--runs 6] [--packets 200000]

Offline, no root: the worker's Inspector (bench.cold_path's: default rules, offload off) on 8
UDP flows decided by their first packets, then `--packets` more of theirs back to back, timed
in CPU time (the load of a shared machine moves wall time, not this). Each run is a fresh
subprocess, this tree and TREE alternating (each its own build: compiled when built). Printed:
us per packet of each, and this tree's over TREE's ("A decided flow's packet, answered after
its lookup" in docs/performance.md).
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def datagram(i, n=18):
    body = struct.pack("!HHHH", 40000 + i % 8, 9000, 8 + n, 0) + bytes(n)
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0x4000, 64, 17, 0,
                       socket.inet_aton(f"10.201.1.{2 + i % 8}"), socket.inet_aton("10.201.2.2")) + body


def child(packets):
    """In the subprocess (cwd: the tree measured): us of CPU per decided packet's process()."""
    sys.path.insert(0, os.getcwd())
    from appliance import compiled
    from appliance.decode import decode_l3
    from bench.cold_path import inspector
    insp = inspector(os.path.abspath("rules/default.yaml"))
    raw = [datagram(i) for i in range(64)]
    for r in raw * 4:
        insp.process(decode_l3(r, 1000.0))
    if not all(f.final for f in insp.flows.flows.values()):
        raise RuntimeError("the flows are not decided")
    pkts = [decode_l3(raw[i % 64], 1000.0) for i in range(packets)]
    process = insp.process
    t = time.thread_time()
    for p in pkts:
        process(p)
    us = (time.thread_time() - t) / packets * 1e6
    return {"us": us, "fast_path": insp.counters.fast_path, "build": compiled.describe()}


def run(tree, packets):
    # this file run as a script in the other tree (which may not have it): its appliance, its build
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", str(packets)], cwd=tree,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": tree})
    if out.returncode != 0:
        raise RuntimeError(f"{tree}: {out.stderr.strip()[-400:]}")
    return json.loads(out.stdout)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.decided_path", description=__doc__.split("\n")[0])
    ap.add_argument("--compare", required=False, help="another checkout (the before)")
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--packets", type=int, default=200_000)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.child:
        print(json.dumps(child(o.child)))
        return 0
    from .common import Row, format_rows, header, log
    print(header("python3 -m bench.decided_path " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    trees = [ROOT] + ([os.path.abspath(o.compare)] if o.compare else [])
    ours = Row("decided UDP packet, Inspector.process (this tree)", "-", "us", "-")
    theirs = Row("decided UDP packet, Inspector.process (compare)", "-", "us", "-")
    ratio = Row("decided UDP packet, Inspector.process: this tree", "compare tree, same run", "us", "< 1.0")
    for i in range(o.runs):
        got = {}
        for tree in (trees if i % 2 == 0 else trees[::-1]):
            got[tree] = run(tree, o.packets)
        a = got[ROOT]
        ours.add(a["us"])
        msg = f"  run {i + 1}/{o.runs}: this tree {a['us']:.3f} us ({a['build'][:8]})"
        if o.compare:
            b = got[trees[1]]
            theirs.add(b["us"])
            ratio.add(a["us"], b["us"])
            msg += f", compare {b['us']:.3f} us ({b['build'][:8]})"
        log(msg)
    for r in (ours, theirs):
        r.status = "info"
    print(format_rows([ours, theirs, ratio] if o.compare else [ours]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
