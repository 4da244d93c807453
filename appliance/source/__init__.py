"""Where packets come from, and the one loop that drives the Inspector for all of them.

A source yields decoded `Packet`s carrying their own metadata (timestamp; ingress
interface live; capture file and packet number offline) and takes each packet's
verdict back: `verdict(pkt, v)` enforces it (NFQUEUE) or has nothing to do (a pcap).
Adding a source (AF_PACKET, GENEVE from a load balancer) is one new file here.

NFQUEUE is the one push source: netfilterqueue owns the receive loop and calls back
per packet (handing control back per packet would cost an exception each), so its
callback runs the same two lines as `run` below.
"""


def run(source, inspector):
    """Every packet of `source` through `inspector`, its verdict back to the source; at
    the end the clock runs to the last packet and every flow ends (flow events)."""
    process, verdict = inspector.process, source.verdict
    for pkt in source:
        verdict(pkt, process(pkt))
    inspector.tick(inspector.now)
    inspector.close()
