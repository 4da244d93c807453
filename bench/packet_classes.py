"""Where the mixed capture's time goes, by packet class: the generated capture (bench/gen_pcap.py)
replayed through one Inspector with 1,000 generated rules, each `Inspector.process` call timed
and summed by its flow's kind (HTTP, TLS, DNS, bulk TCP, UDP, by the server port) and the
packet's place in its flow (handshake, first payload each way, later payload, ACK-only, FIN;
`decided_*`: its flow was final before it, the decided path).

    python3 -m bench.packet_classes [--packets N]

CPU time per call (perf_counter_ns around it), so the load on the machine moves the
figures: read the shares, and measure a class's instructions with callgrind
(docs/performance-passes.md, "the mixed replay row").
"""
import argparse
import collections
import sys
import tempfile
import time

from appliance.detect.loader import load_rules
from appliance.flow import flow_key
from appliance.inspector import Inspector, Settings
from appliance.source.pcap import PcapSource

from . import gen_pcap
from .rulegen import write_rules

BULK_PORTS = {22, 873, 5001, 9000}
FIN, SYN, RST, ACK = 1, 2, 4, 16


def kind(pkt):
    ports = (pkt.sport, pkt.dport)
    if pkt.proto == 17:
        return "dns" if 53 in ports else "udp"
    if 80 in ports:
        return "http"
    if 443 in ports:
        return "tls"
    return "bulk" if BULK_PORTS.intersection(ports) else "other"


def place(pkt, seen, decided):
    """The packet's place in its flow; `seen`: what this flow has shown so far (updated)."""
    if pkt.proto != 6:
        return "decided_dgram" if decided else "dgram"
    flags = pkt.tcp_flags
    if flags & SYN:
        where = "synack" if flags & ACK else "syn"
    elif flags & (FIN | RST):
        where = "fin"
    elif pkt.payload:
        side = (pkt.src, pkt.sport)
        where = "later_pay" if side in seen else "first_pay"
        seen.add(side)
    else:
        where = "ack_only" if "hs" in seen else "hsack"
        seen.add("hs")
    if decided:
        where = {"first_pay": "decided_pay", "later_pay": "decided_pay", "hsack": "decided_ack",
                 "ack_only": "decided_ack", "fin": "decided_fin"}.get(where, where)
    return where


def classes(path, ruleset):
    insp = Inspector(ruleset, Settings(max_flows=1_000_000))
    process, table = insp.process, insp.flows.flows
    flows = {}
    count, spent = collections.Counter(), collections.Counter()
    clock = time.perf_counter_ns
    for pkt in PcapSource([path]):
        flow = table.get(flow_key(pkt))
        ends = sorted(((pkt.src, pkt.sport), (pkt.dst, pkt.dport)))
        c = kind(pkt) + "_" + place(pkt, flows.setdefault(tuple(ends), set()), flow is not None and flow.final)
        t = clock()
        process(pkt)
        spent[c] += clock() - t
        count[c] += 1
    return count, spent


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m bench.packet_classes", description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=20000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        ruleset = load_rules(write_rules(d, 1000))
        count, spent = classes(gen_pcap.cached(args.packets), ruleset)
    total = sum(spent.values())
    print(f"{'class':20s} {'packets':>8s} {'us/packet':>10s} {'share':>7s}")
    for c in sorted(count, key=lambda c: -spent[c]):
        print(f"{c:20s} {count[c]:8d} {spent[c] / count[c] / 1000:10.2f} {100 * spent[c] / total:6.1f}%")
    print(f"{'all':20s} {sum(count.values()):8d} {total / sum(count.values()) / 1000:10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
