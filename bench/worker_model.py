"""A model for N workers, from what one machine can measure (2 cores cannot run 8 workers).

    python3 -m bench.worker_model [--packets 20000] [--queues 2,4,8] [--capture PCAP]

Measured in one run:
- the queue-balance hash's spread on a flow mix: the real kernel hash. In a lab
  (bench.inline.Lab), `--queue-balance 0:N-1` to N accept-all consumers, and the mix's IP
  headers sent through it from the client namespace (a raw socket: each packet with its
  own addresses and protocol, ports kept). Counted per queue from the kernel's own
  counters: once with one packet per flow (how flows spread) and once with every packet
  (how work spreads). The hash takes the address pair and protocol, not the ports.
- one worker's cost per packet: the raw accept-all consumer's CPU per verdict (verdict
  I/O, live, UDP flood) plus Inspector.process CPU per packet over the same mix (offline,
  default rules): c = c_io + c_inspect, so one worker takes C1 = 1 / c packets a second.
The model: N workers on K >= N cores take T(N) = C1 / s_max(N) packets a second, where
s_max(N) is the busiest queue's share of the packets (1/N when the hash spreads evenly):
the busiest worker saturates first and the kernel holds or fails open the rest of its
queue while others idle. With K < N cores, T(N) <= K * C1. Not in the model: the kernel's
own forwarding cost on those cores, and flows offloaded to conntrack (they never reach a
queue); both are printed by `python3 -m bench` as their own rows.
"""
import argparse
import json
import os
import sys
import time

from .common import header, log
from .inline import Lab, ROOT

SENDER = r"""
import json, socket, struct, sys
# stdin: JSON list of [src, dst, proto]; each sent as a 28-byte IPv4 packet
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
hdrs = json.load(sys.stdin)
sent = 0
for src, dst, proto in hdrs:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 0, 0, 64, proto, 0, bytes.fromhex(src), bytes.fromhex(dst))
    body = struct.pack("!HHHH", 9000, 9000, 8, 0) if proto == 17 else bytes(8)
    try:
        s.sendto(ip + body, (socket.inet_ntoa(bytes.fromhex(dst)), 0)); sent += 1
    except OSError:
        pass
print(sent)
"""


def mix_headers(path):
    """(every packet's (src, dst, proto), one per flow) of an IPv4 Ethernet/raw pcap."""
    import dpkt
    packets, first = [], {}
    with open(path, "rb") as f:
        for _, buf in dpkt.pcap.Reader(f):
            ip = buf[14:] if buf[12:14] == b"\x08\x00" else buf
            if len(ip) < 24 or ip[0] >> 4 != 4:
                continue
            src, dst, proto = ip[12:16].hex(), ip[16:20].hex(), ip[9]
            ihl = (ip[0] & 15) * 4
            ports = ip[ihl:ihl + 4] if proto in (6, 17) else b""
            key = (src, dst, proto, ports) if src < dst else (dst, src, proto, ports[2:] + ports[:2])
            h = [src, dst, proto]
            packets.append(h)
            first.setdefault(key, h)
    return packets, list(first.values())


def queue_counts(lab):
    text = lab.run(lab.r, "cat", "/proc/net/netfilter/nfnetlink_queue").stdout
    return {int(v[0]): int(v[7]) for v in (line.split() for line in text.splitlines()) if len(v) >= 8}


def spread(lab, queues, headers):
    """Per-queue shares of `headers` sent through --queue-balance 0:queues-1."""
    procs = lab.start_raw(queues)
    try:
        before = queue_counts(lab)
        r = lab.run(lab.c, sys.executable, "-c", SENDER, input=json.dumps(headers), timeout=600)
        time.sleep(1.0)
        after = queue_counts(lab)
    finally:
        lab.stop_raw(procs)
    counts = [after.get(q, 0) - before.get(q, 0) for q in range(queues)]
    total = max(1, sum(counts))
    return [c / total for c in counts], int(r.stdout or 0), sum(counts)


def inspect_cost(path):
    """Inspector.process CPU seconds per packet over the capture (default rules, no EVE)."""
    from appliance.detect.loader import load_rules
    from appliance.inspector import Inspector, Settings
    from appliance.replay import replay
    insp = Inspector(load_rules(os.path.join(ROOT, "rules", "default.yaml")), Settings(max_flows=1_000_000))
    t = time.process_time()
    res = replay([path], insp)
    return (time.process_time() - t) / max(1, res.packets)


def io_cost(lab, seconds=4):
    """The raw consumer's CPU seconds per verdict under the UDP flood (verdict I/O alone)."""
    from .verdict_io import _udp_cpu
    procs = lab.start_raw(1)
    try:
        _, us = _udp_cpu(lab, seconds, [p.pid for p in procs])
    finally:
        lab.stop_raw(procs)
    return us / 1e6


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.worker_model", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=20_000, help="size of the generated mix (bench.gen_pcap)")
    ap.add_argument("--capture", default=None, help="a pcap of your own traffic instead of the generated mix")
    ap.add_argument("--queues", default="2,4,8")
    o = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    print(header("python3 -m bench.worker_model " + " ".join(argv if argv is not None else sys.argv[1:])), flush=True)
    if o.capture:
        path = o.capture
    else:
        from .gen_pcap import cached
        path = cached(o.packets)
    packets, flows = mix_headers(path)
    log(f"mix: {path}: {len(packets):,} IPv4 packets, {len(flows):,} flows, "
        f"{len({tuple(sorted(h[:2])) for h in packets}):,} address pairs")
    from collections import Counter
    pairs = Counter(tuple(sorted(h[:2])) + (h[2],) for h in packets)
    top_pair = pairs.most_common(1)[0][1] / len(packets)
    log(f"the largest address pair carries {top_pair:.4f} of the packets: s_max(N) >= that, whatever N")
    c_inspect = inspect_cost(path)
    lab = Lab()
    out = {"capture": path, "packets": len(packets), "flows": len(flows), "c_inspect_us": c_inspect * 1e6,
           "top_pair_share": top_pair}
    try:
        lab.up()
        lab.run(lab.r, "ip", "route", "add", "default", "via", "10.201.2.2")
        for k in ("all", "bench-out", "default"):
            lab.run(lab.r, "sysctl", "-qw", f"net.ipv4.conf.{k}.rp_filter=0")
        c_io = io_cost(lab)
        out["c_io_us"] = c_io * 1e6
        c1 = 1 / (c_io + c_inspect)
        print(f"\none worker: verdict I/O {c_io * 1e6:.2f} us (raw consumer, live) + Inspector {c_inspect * 1e6:.2f} us "
              f"(offline, this mix) = {(c_io + c_inspect) * 1e6:.2f} us per packet: C1 = {c1:,.0f} packets/s\n")
        print("| queues N | flows: busiest queue's share (even: 1/N) | packets: busiest share | s_max x N "
              "| predicted T(N) on >= N cores | T(N) / C1 |")
        print("|---|---|---|---|---|---|")
        for n in (int(x) for x in o.queues.split(",")):
            f_shares, _, f_total = spread(lab, n, flows)
            p_shares, sent, p_total = spread(lab, n, packets)
            s_max = max(p_shares)
            t = c1 / s_max
            out[f"N{n}"] = {"flow_shares": f_shares, "packet_shares": p_shares, "queued": p_total, "sent": sent}
            print(f"| {n} | {max(f_shares):.3f} | {s_max:.3f} | {s_max * n:.2f} | {t:,.0f} pkt/s | {t / c1:.2f} |",
                  flush=True)
    finally:
        lab.down()
    print("\n" + json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
