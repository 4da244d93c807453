"""What a connection that needs a name costs the appliance, live and per packet kind offline.

    python3 -m bench.name_cost [--runs 3] [--seconds 5] [--compare TREE] [--offline-only]

Live (root, bench.inline's namespaces): the "flows that need a name" row of
bench.kernel_decisions (an `http_host` pass rule, default drop, kernel decisions on, 4 client
threads: connect, request, read, close), with the CPU the appliance's processes spent during
the load (the run-time sums of /proc/PID/schedstat of every process of its session: the
supervisor and the worker) divided by the connections carried. `--compare TREE`: the same
for another checkout (e.g. `git archive BASE | tar -x -C /tmp/base`, its twins built), in
the same runs, alternating: the before of a before/after (offline too).

Offline: a capture of named connections shaped like the live ones (Linux's SYN options,
the same request) replayed through an Inspector set up as a worker sets it up (offload on,
EVE to /dev/null with the live types), timing Inspector.process per packet kind: SYN,
SYN/ACK, handshake ACK, the request (its verdict offloads the flow: nothing after it is
queued live), and the flow's end (the tick that writes its flow record).
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from .common import Row, format_rows, header, log
from .inline import ROOT, Lab, TCP_PORT, _why_skip
from .kernel_decisions import NAME_RULES, queued, stop

LIVE_EVE_TYPES = "[alert, anomaly, flow, stats]"


# -- live -----------------------------------------------------------------------

def session_cpu_ns(sid):
    """CPU time (ns, on-CPU run time from schedstat) of every process whose session is sid."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:           # after ')': state ppid pgrp session ...
                continue
            with open(f"/proc/{pid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return total


def write_config(directory, suffix, rules_text, eve, extra=""):
    """The name row's rules and appliance config in `directory`: (rules path, config path)."""
    rpath = os.path.join(directory, f"rules{suffix}.yaml")
    with open(rpath, "w") as f:
        f.write(rules_text)
    cfg = os.path.join(directory, f"appliance{suffix}.yaml")
    with open(cfg, "w") as f:
        f.write(f"""interfaces: {{outside: bench-out, inside: bench-in}}
rules: {rpath}
eve: {{path: {eve}, types: {LIVE_EVE_TYPES}}}
home_net: [10.201.2.0/24]
workers: 1
{extra}inspection: {{kernel_decisions: true}}
""")
    return rpath, cfg


def start_tree(lab, work, tree, timeout=40):
    """appliance.run from `tree` with the name row's config, ready to carry connections."""
    _, cfg = write_config(work, "-name", NAME_RULES, os.path.join(work, "eve.json"), "failure_mode: closed\n")
    p = subprocess.Popen(lab.ns(lab.r, sys.executable, "-m", "appliance.run", "--config", cfg), cwd=tree,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lab.procs.append(p)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.poll() is not None:
            _, err = lab.stop(p)
            raise RuntimeError(f"appliance.run ({tree}) exited {p.returncode}: {err.strip()[-400:]}")
        if "NFQUEUE" in lab.run(lab.r, "iptables-save", check=False).stdout and \
                lab.run(lab.r, "nft", "list", "table", "inet", "appliance_decide", check=False).returncode == 0:
            time.sleep(2.0)
            return p
        time.sleep(0.3)
    lab.stop(p)
    raise RuntimeError(f"appliance.run ({tree}): not ready after {timeout}s")


def live(runs, seconds, trees):
    conn = {name: Row(f"new TCP connections/s, flows that need a name ({name})", "kernel forwarding",
                      "conn/s", ">= 0.60") for name, _ in trees}
    # absolute (the ~220 us measured before this work), and this tree's over the compared one's
    cpu = {name: Row(f"appliance CPU per named connection ({name})", "-", "us", "<= 220") for name, _ in trees}
    cpu_vs = Row("appliance CPU per named connection, this tree", "the compared tree's, same run", "us", "<= 1.00")
    why = _why_skip()
    if why:
        for r in list(conn.values()) + list(cpu.values()):
            r.status, r.note = "SKIPPED", why
        return list(conn.values()) + list(cpu.values())
    lab = Lab()
    got = {}
    work = tempfile.mkdtemp(prefix="bench-nc-")
    try:
        lab.up()
        for run in range(runs):
            order = trees if run % 2 == 0 else list(reversed(trees))
            for name, tree in order:
                base = lab.conns(seconds)
                p = start_tree(lab, work, tree)
                try:
                    q0, c0 = queued(lab), session_cpu_ns(p.pid)
                    t0 = time.perf_counter()
                    r = lab.conns(seconds)
                    wall = time.perf_counter() - t0
                    c1, q1 = session_cpu_ns(p.pid), queued(lab)
                finally:
                    stop(lab, p)
                n = lab.last_conns                   # connections carried (the rate is over nsload's own seconds)
                conn[name].add(r, base)
                us = (c1 - c0) / 1e3 / n if n else float("nan")
                cpu[name].add(us)
                got[name] = us
                log(f"name cost run {run + 1}/{runs} {name}: {r:,.0f} conn/s vs kernel {base:,.0f}, "
                    f"{us:.0f} us CPU/conn, {(q1 - q0) / n if n else 0:.2f} queued/conn, "
                    f"appliance busy {(c1 - c0) / 1e9 / wall:.2f} cores")
            if len(trees) > 1:
                cpu_vs.add(got[trees[0][0]], got[trees[1][0]])
    finally:
        lab.down()
    return list(conn.values()) + list(cpu.values()) + ([cpu_vs] if len(trees) > 1 else [])


# -- offline ----------------------------------------------------------------------

ETH = struct.Struct("!6s6sH")
IP4 = struct.Struct("!BBHHHBBH4s4s")
TCP = struct.Struct("!HHIIBBHHH")
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
REQUEST = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"          # bench.nsload's conns
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _ip_sum(h):
    s = sum(struct.unpack("!10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _tcp_sum(src, dst, seg):
    data = src + dst + struct.pack("!BBH", 0, 6, len(seg)) + seg + (b"\0" if len(seg) % 2 else b"")
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def frame(src, dst, sport, dport, seq, ack, flags, opts, data, tsval, tsecr):
    """One Ethernet/IPv4/TCP frame as Linux sends it: timestamps on every segment, the SYN's
    MSS, SACK-permitted and window scale."""
    if opts == "syn":
        o = struct.pack("!BBH", 2, 4, 1460) + bytes((4, 2, 8, 10)) + struct.pack("!II", tsval, tsecr) + bytes((1, 3, 3, 7))
    else:
        o = bytes((1, 1, 8, 10)) + struct.pack("!II", tsval, tsecr)
    off = (20 + len(o)) // 4
    seg = TCP.pack(sport, dport, seq, ack, off << 4, flags, 64240, 0, 0) + o + data
    seg = seg[:16] + struct.pack("!H", _tcp_sum(src, dst, seg)) + seg[18:]
    ip = IP4.pack(0x45, 0, 20 + len(seg), 0, 0x4000, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _ip_sum(ip)) + ip[12:]
    return ip + seg


def connections(n):
    """[(kind, L3 bytes)] for n named connections, as the worker sees them queued (and, after
    the offload, the rest of each connection: the kernel's, not queued live)."""
    out = []
    server = bytes((10, 201, 2, 2))
    for i in range(n):
        client = bytes((10, 201, 1, 2 + i % 8))
        cp, cs, ss, ts = 32768 + i % 28000, 1000 + i * 7919, 5000 + i * 104729, 100000 + i
        c2s = (client, server, cp, TCP_PORT)
        s2c = (server, client, TCP_PORT, cp)
        out.append(("syn", frame(*c2s, cs, 0, SYN, "syn", b"", ts, 0)))
        out.append(("syn/ack", frame(*s2c, ss, cs + 1, SYN | ACK, "syn", b"", ts + 5, ts)))
        out.append(("ack", frame(*c2s, cs + 1, ss + 1, ACK, "ts", b"", ts + 1, ts + 5)))
        out.append(("request", frame(*c2s, cs + 1, ss + 1, PSH | ACK, "ts", REQUEST, ts + 1, ts + 5)))
    return out


def offline(n, runs, ruleset_text=NAME_RULES):
    """Per packet kind: median over runs of the mean us in Inspector.process, and the tick that
    ends the flows (their flow records)."""
    from appliance.detect.loader import load_rules
    from appliance.decode import decode_l3
    from appliance.inspector import Inspector
    from appliance.config import load_config
    from appliance.output.eve import EveWriter
    from appliance.source.nfqueue import _settings

    with tempfile.TemporaryDirectory(prefix="bench-nc-") as d:
        rpath, cpath = write_config(d, "", ruleset_text, "/dev/null")
        cfg = load_config(cpath)
        ruleset = load_rules(rpath)
        packets = connections(n)
        kinds = {}
        for _ in range(runs):
            eve = EveWriter(cfg.eve)
            insp = Inspector(ruleset, _settings(cfg), eve)
            spent = {}
            now = 1_700_000_000.0
            clock = time.perf_counter
            offloaded = 0
            for kind, raw in packets:
                now += 0.0001
                t = clock()
                p = decode_l3(raw, now)
                p.in_iface = "bench-out" if kind != "syn/ack" else "bench-in"
                t1 = clock()
                v = insp.process(p)
                t2 = clock()
                offloaded += bool(v.offload)
                s = spent.setdefault(kind, [0.0, 0.0])
                s[0] += t1 - t
                s[1] += t2 - t1
            t = clock()
            insp.tick(now + 3600)                    # every flow times out: its flow record
            spent["end (tick, flow record)"] = [0.0, clock() - t]
            eve.close()
            for kind, (dec, proc) in spent.items():
                kinds.setdefault(kind, ([], []))
                kinds[kind][0].append(dec / n * 1e6)
                kinds[kind][1].append(proc / n * 1e6)
            if offloaded != n:
                log(f"offline: {offloaded} of {n} requests offloaded (expected all)")
    return kinds


# run in a fresh interpreter whose cwd and sys.path start at TREE: that tree's appliance (and
# its twins) is timed, with this file's capture and timing loop
_IN_TREE = """
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("bench.name_cost", sys.argv[2])
mod = importlib.util.module_from_spec(spec)
sys.modules["bench.name_cost"] = mod
spec.loader.exec_module(mod)
import appliance.compiled as c
kinds = mod.offline(int(sys.argv[3]), 1)
print(json.dumps([c.describe(), kinds]))
"""


def offline_in(tree, n):
    """One offline run of `tree`'s appliance: ({kind: ([decode us], [process us])}, its build)."""
    cp = subprocess.run([sys.executable, "-c", _IN_TREE, tree, os.path.abspath(__file__), str(n)], cwd=tree,
                        env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True, timeout=600)
    if cp.returncode != 0:
        raise RuntimeError(f"offline run in {tree}: {cp.stderr.strip()[-600:]}")
    built, kinds = json.loads(cp.stdout.strip().splitlines()[-1])
    return kinds, built


def offline_compare(n, runs, trees):
    """Per tree: {kind: ([decode us], [process us])}, the trees run alternately, one fresh
    interpreter each run (the same machine load on both, run by run)."""
    got = {name: {} for name, _ in trees}
    for run in range(runs):
        for name, tree in (trees if run % 2 == 0 else list(reversed(trees))):
            kinds, built = offline_in(tree, n)
            if run == 0:
                log(f"offline {name}: {built}")
            for kind, (dec, proc) in kinds.items():
                d, p = got[name].setdefault(kind, ([], []))
                d += dec
                p += proc
    return got


def print_offline(kinds):
    print(f"{'packet kind':<26} {'decode us':>10} {'process us (median, min..max)':>32}")
    tot = 0.0
    for kind, (dec, proc) in kinds.items():
        m = statistics.median(proc)
        tot += m + statistics.median(dec)
        print(f"{kind:<26} {statistics.median(dec):>10.2f} {m:>12.2f} ({min(proc):.2f}..{max(proc):.2f})")
    print(f"{'per connection':<26} {tot:>10.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.name_cost", description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--conns", type=int, default=5000, help="connections in the offline capture")
    ap.add_argument("--compare", default=None, metavar="TREE")
    ap.add_argument("--offline-only", action="store_true")
    o = ap.parse_args(argv)
    print(header("python3 -m bench.name_cost " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    trees = [("this tree", ROOT)] + ([("compare", os.path.abspath(o.compare))] if o.compare else [])
    for name, kinds in offline_compare(o.conns, o.runs, trees).items():
        print(f"offline, {name} ({o.conns} connections, {o.runs} runs):")
        print_offline(kinds)
    if o.offline_only:
        return 0
    print(format_rows(live(o.runs, o.seconds, trees)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
