"""Review (rvnfq), older than the worker's own queue read: the worker asks for a 0xFFFF-byte
copy range and records WHOLE_RANGE (65535) as what it gets, but the kernel clamps it to
NFQNL_MAX_COPY_RANGE = 0xFFFF - NLA_HDRLEN = 65531 (/proc/net/netfilter/nfnetlink_queue says
so). A 65532..65535-byte GRO/GSO packet then arrives cut to 65531 bytes, and _count_anomalies
(len(raw) >= copy_range) blames the wire: an ipv4.trunc_pkt anomaly instead of copy_truncated."""
import os
import sys

from scapy.all import IP, UDP, raw

from appliance.source import nfqueue as nq

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_nfqueue_packet import sent, worker  # noqa: E402

KERNEL_MAX = 0xFFFF - 4            # net/netfilter/nfnetlink_queue.c: NFQNL_MAX_COPY_RANGE


def test_a_packet_cut_at_the_kernels_copy_range_is_copy_truncated_not_a_wire_anomaly():
    w = worker()
    w.copy_range = nq.WHOLE_RANGE           # as Worker.run records it once the kernel accepted the range
    whole = raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=40000, dport=9000) / (b"x" * (65535 - 28)))
    w.on_packet(whole[:KERNEL_MAX], 7, 1, 2, 0)
    assert sent(w.queue.sock) == [("one", "accept", 7, None)]
    assert w.counters.copy_truncated == 1 and w.counters.anomalies == 1   # not a wire anomaly
