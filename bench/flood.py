"""Floods: what a full flow table, a fragment flood and decided flows cost.

    python3 -m bench.flood [--quick] [--runs N]

Rows (each a ratio against a baseline measured in the same run):
- SYN flood eviction rate: Inspector.process pkt/s over spoofed SYNs once the table is full
  (every packet evicts a flow) vs while the same table fills (no eviction).
- RSS at the bound: a fresh process feeds 10x max_flows spoofed SYNs; RSS growth after 10x
  vs after 5x (flat: bounded; the decoder's address-name cache, cleared at 65,536 names,
  makes it swing by up to ~12 MB). Bytes per flow at the bound = growth after 10x / max_flows; it
  includes the decoder's address-name cache (at most 65,536 names, whatever max_flows is).
- decided flows: RSS per TLS flow after handshake + ClientHello (verdict final, stream released).
- EVE volume: bytes of EVE per spoofed 44-byte SYN with a bad MSS option vs the packet's own.
- IPv4 reassembly: time per fragment for a datagram of 8,189 fragments vs 128 of 64.
"""
import argparse
import gc
import json
import os
import struct
import subprocess
import sys
import time

from .common import Row, format_rows, header, log
from .memory import RULES, _syn, rss


def _inspector(max_flows, eve=None):
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    return Inspector(load_rules(RULES), Settings(max_flows=max_flows), eve)


def eviction_rate(n):
    """(pkt/s while n flows fill the table, pkt/s for the next n, each evicting one), for a
    50k SYN/s flood (packet time), EVE written to /dev/null."""
    from appliance.decode import decode_l3
    from appliance.output.eve import EveWriter
    insp = _inspector(n, EveWriter(os.devnull))        # events are built and written, as live
    frames = [_syn(i) for i in range(2 * n)]
    process = insp.process
    rates = []
    ts = 1.0
    for half in (frames[:n], frames[n:]):
        t = time.perf_counter()
        for raw in half:
            process(decode_l3(raw, ts))
            ts += 2e-5                       # 50k SYN/s of packet time: the flood spans seconds
        rates.append(n / (time.perf_counter() - t))
    assert insp.flows.evicted == n, insp.flows.evicted
    return rates


def memory_at_bound(n):
    """RSS growth after n, 5n and 10n spoofed SYNs through an n-flow table."""
    from appliance.decode import decode_l3
    insp = _inspector(n)
    process = insp.process
    process(decode_l3(_syn(10 * n + 1), 0.5))
    gc.collect()
    base = rss()
    ts = 1.0
    marks = {}
    for i in range(10 * n):
        process(decode_l3(_syn(i), ts))
        ts += 1e-5
        if i + 1 in (n, 5 * n, 10 * n):
            gc.collect()
            marks[(i + 1) // n] = rss() - base
    return {"marks": marks, "flows": len(insp.flows), "evicted": insp.flows.evicted}


def decided_tls(n, held=False):
    """RSS per flow for n TLS connections decided by their ClientHello: the server's ACK and
    the client's next records make the pass final (stream released). `held`: the server never
    acknowledges (a blackhole, an attacker's own), the client sends 8 KiB of records after its
    hello: passed, held for the ACK, keeping only the bytes it was judged on (stream.py settle)."""
    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    with open(TLS_RULES_PATH, "w") as f:
        f.write("default_action: pass\nrules:\n  - {id: 1, action: drop, tls_sni: evil.example}\n")
    insp = Inspector(load_rules(TLS_RULES_PATH), Settings(max_flows=n + 10))
    process = insp.process
    hello = _client_hello(b"www.example.com")
    after = 1001 + len(hello)
    if held:
        record = b"\x17\x03\x03\x04\x00" + bytes(1024)
        tail = [(0, after + i * len(record), 5001, 0x18, record) for i in range(8)]   # (from server, seq, ack, flags, data)
    else:
        tail = [(1, 5001, after, 0x10, b""), (0, after, 5001, 0x18, b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x10" + bytes(16))]
    gc.collect()
    base = rss()
    ts = 1.0
    for i in range(n):
        c = bytes((10, (i >> 16) & 255, (i >> 8) & 255, i & 255))
        s = b"\xc6\x33\x64\x07"
        for src, dst, sp, dp, seq, ack, flags, data in (
                (c, s, 40000, 443, 1000, 0, 0x02, b""), (s, c, 443, 40000, 5000, 1001, 0x12, b""),
                (c, s, 40000, 443, 1001, 5001, 0x10, b""), (c, s, 40000, 443, 1001, 5001, 0x18, hello),
                *[(s, c, 443, 40000) + t[1:] if t[0] else (c, s, 40000, 443) + t[1:] for t in tail]):
            process(decode_l3(_segment(src, dst, sp, dp, seq, ack, flags, data), ts))
            ts += 1e-5
    return _held(insp, n, base)


def held_http(n, body=30000):
    """RSS per flow for n HTTP uploads a Host rule watches (so not final: the next request may
    name another host) whose server acknowledges nothing: each keeps its oldest and most recent
    `stream_bytes` consumed (stream.py _keep), the worst a flow can be made to hold that way."""
    from appliance.decode import decode_l3
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    with open(TLS_RULES_PATH, "w") as f:
        f.write("default_action: pass\nrules:\n  - {id: 1, action: drop, http_host: evil.example}\n")
    insp = Inspector(load_rules(TLS_RULES_PATH), Settings(max_flows=n + 10))
    process = insp.process
    data = b"POST /up HTTP/1.1\r\nHost: www.example.com\r\nContent-Length: %d\r\n\r\n" % body + bytes(body)
    segs = [(1001 + i, data[i:i + 1400]) for i in range(0, len(data), 1400)]
    gc.collect()
    base = rss()
    ts = 1.0
    s = b"\xc6\x33\x64\x07"
    for i in range(n):
        c = bytes((10, (i >> 16) & 255, (i >> 8) & 255, i & 255))
        for src, dst, sp, dp, seq, ack, flags, payload in (
                (c, s, 40000, 80, 1000, 0, 0x02, b""), (s, c, 80, 40000, 5000, 1001, 0x12, b""),
                (c, s, 40000, 80, 1001, 5001, 0x10, b""),
                *[(c, s, 40000, 80, q, 5001, 0x18, d) for q, d in segs]):
            process(decode_l3(_segment(src, dst, sp, dp, seq, ack, flags, payload), ts))
            ts += 1e-5
    return _held(insp, n, base)


def _segment(src, dst, sp, dp, seq, ack, flags, data):
    """An IPv4 TCP segment (no options, checksums left 0: the children's Inspector does not verify)."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, src, dst)
    return ip + struct.pack("!HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 65535, 0, 0) + data


def _held(insp, n, base):
    """RSS per flow over `base`, flows final, bytes kept a flow (both regions)."""
    gc.collect()
    os.unlink(TLS_RULES_PATH)
    final = sum(f.final for f in insp.flows.flows.values())
    kept = sum(len(f.stream.bytes._kept or b"") + len(f.stream.bytes._recent or b"") for f in insp.flows.flows.values()
               if f.stream is not None and f.stream.bytes is not None)
    return {"per_flow": (rss() - base) / n, "final": final, "flows": len(insp.flows), "kept": kept / n}


TLS_RULES_PATH = os.path.join("/tmp", f"bench-flood-tls-{os.getpid()}.yaml")


def _client_hello(name):
    ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00" + struct.pack("!H", len(ext)) + ext
    msg = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(msg)) + msg


def defrag_cost(n, datagrams=1):
    """Seconds per fragment to reassemble datagrams of n 8-byte fragments, in order and reversed."""
    from appliance.decode import decode_l3
    from appliance.defrag import Defragmenter
    out = []
    frags = [decode_l3(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, ident, (0x2000 if i < n - 1 else 0) | i, 64, 17, 0,
                                   b"\x0a\0\0\1", b"\x0a\0\0\2") + bytes(8), 1.0)
             for ident in range(datagrams) for i in range(n)]
    for reverse in (False, True):
        order = [p for k in range(datagrams) for p in (frags[k * n:(k + 1) * n][::-1] if reverse else frags[k * n:(k + 1) * n])]
        d = Defragmenter()
        t = time.perf_counter()
        done = 0
        for p in order:
            if d.feed(p) is not None:
                done += 1
        out.append((time.perf_counter() - t) / (n * datagrams))
        assert done == datagrams
    return out


def _bad_mss_syn(i):
    """44 bytes: a spoofed SYN whose MSS option claims 5 bytes (tcp.opt_invalid_len)."""
    src = bytes((198, 18, (i >> 8) & 255, i & 255))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 44, 0, 0x4000, 64, 6, 0, src, b"\x0a\0\0\x50")
    return ip + struct.pack("!HHIIBBHHH", 1024 + (i >> 16), 443, i, 0, 0x60, 0x02, 65535, 0, 0) + b"\x02\x05\xb4\x00"


def eve_volume(n, max_flows):
    """EVE bytes written for n bad-MSS SYNs at 100k pkt/s (packet time) through a
    max_flows table, and the flood's own bytes."""
    import tempfile
    from appliance.decode import decode_l3
    from appliance.output.eve import EveWriter
    with tempfile.TemporaryDirectory(prefix="bench-flood-eve-") as d:
        path = os.path.join(d, "eve.json")
        eve = EveWriter(path)
        insp = _inspector(max_flows, eve)
        ts = 1.0
        wire = 0
        for i in range(n):
            raw = _bad_mss_syn(i)
            wire += len(raw)
            insp.process(decode_l3(raw, ts))
            ts += 1e-5
        insp.tick(ts + 120)                  # the rest time out
        eve.close()
        return {"eve": os.path.getsize(path), "wire": wire, "events": eve.count}


def _sub(what, n):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-m", "bench.flood", "--child", what, str(n)], cwd=root,
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout)


def rows(quick=False, runs=None):
    runs = runs or 3
    n = 20_000 if quick else 100_000
    out = []
    log(f"flood: SYN flood through a {n:,}-flow table, filling then full")
    row = Row(f"SYN flood pkt/s once the {n:,}-flow table is full (every packet evicts), default rules",
              "the same table filling, same run", "pkt/s", ">= 0.80")
    for i in range(runs):
        before, after = _sub("evict", n)
        row.add(after, before)
        log(f"  run {i + 1}/{runs}: filling {before:,.0f} pkt/s, full {after:,.0f} pkt/s")
    out.append(row)

    log(f"flood: RSS at the bound, 10 x {n:,} SYNs (subprocess)")
    bound = Row(f"RSS growth after 10 x {n:,} SYNs through a {n:,}-flow table", "growth after 5 x", "MB", "<= 1.15")
    per = Row(f"RSS per flow at the bound ({n:,} flows after 10 x {n:,} SYNs, Inspector.process, default rules)",
              "- (RSS growth / max_flows)", "B/flow", "<= 800")
    for i in range(runs):
        r = _sub("bound", n)
        marks = {int(k): v for k, v in r["marks"].items()}
        bound.add(marks[10] / 1e6, marks[5] / 1e6)
        per.add(marks[10] / n)
        log(f"  run {i + 1}/{runs}: +{marks[1] / 1e6:.1f} MB filled, +{marks[5] / 1e6:.1f} MB at 5x, "
            f"+{marks[10] / 1e6:.1f} MB at 10x ({r['evicted']:,} evicted), {marks[10] / n:.0f} B/flow")
    out += [bound, per]

    log(f"flood: EVE volume of {n:,} bad-MSS SYNs (100k pkt/s), {n // 10:,}-flow table")
    row = Row(f"EVE bytes per flood packet ({n:,} spoofed 44-byte SYNs with a bad MSS option, 100k pkt/s)",
              "the flood's own bytes", "B/pkt", "<= 1.00")
    for i in range(runs):
        r = eve_volume(n, n // 10)
        row.add(r["eve"] / n, r["wire"] / n)
        log(f"  run {i + 1}/{runs}: {r['eve']:,} B of EVE in {r['events']:,} events for {r['wire']:,} B of flood")
    out.append(row)

    m = n // 2
    log(f"flood: {m:,} decided TLS flows (subprocess)")
    for what, label in (("tls", "handshake + ClientHello + the server's ACK, verdict final"),
                        ("tls_held", "handshake + ClientHello + 8 KiB of records, never acknowledged: held")):
        row = Row(f"RSS per decided TLS flow ({m:,} flows: {label})", "- (RSS delta / flows)", "B/flow", "<= 2000")
        for i in range(runs):
            r = _sub(what, m)
            row.add(r["per_flow"])
            log(f"  run {i + 1}/{runs}: {r['per_flow']:.0f} B/flow ({r['final']:,} of {r['flows']:,} final, "
                f"{r['kept']:.0f} B kept a flow)")
        out.append(row)

    m = n // 20
    log(f"flood: {m:,} HTTP uploads never acknowledged (subprocess)")
    row = Row(f"RSS per held HTTP flow ({m:,} flows: a 30 KB upload under a Host rule, never acknowledged)",
              "- (RSS delta / flows)", "B/flow", "<= 32768")
    for i in range(runs):
        r = _sub("http_held", m)
        row.add(r["per_flow"])
        log(f"  run {i + 1}/{runs}: {r['per_flow']:.0f} B/flow ({r['final']:,} of {r['flows']:,} final, "
            f"{r['kept']:.0f} B kept a flow)")
    out.append(row)

    log("flood: IPv4 reassembly, 8,189 fragments vs 64")
    row = Row("IPv4 reassembly time per fragment, 8,189-fragment datagram (in order / reversed)",
              "64-fragment datagram", "us", "<= 2.0")
    for i in range(runs):
        small = defrag_cost(64, 128)
        big = defrag_cost(8189)
        for s, b in zip(small, big):
            row.add(b * 1e6, s * 1e6)
        log(f"  run {i + 1}/{runs}: {big[0] * 1e6:.2f} / {big[1] * 1e6:.2f} us vs {small[0] * 1e6:.2f} / "
            f"{small[1] * 1e6:.2f} us per fragment")
    out.append(row)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.flood", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--runs", type=int, default=None)
    ap.add_argument("--child", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    o = ap.parse_args(argv)
    if o.child:
        what, n = o.child[0], int(o.child[1])
        result = {"evict": eviction_rate, "bound": memory_at_bound, "tls": decided_tls,
                  "tls_held": lambda n: decided_tls(n, held=True), "http_held": held_http}[what](n)
        print(json.dumps(result))
        return 0
    print(header("python3 -m bench.flood " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    print()
    print(format_rows(rows(o.quick, o.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
