"""Worker.on_packet without a bound queue: what the worker does with one queued packet.

The worker's verdicts go out on a real NETLINK_NETFILTER socket (QueueSocket), addressed to
a queue nobody binds: the kernel refuses each one with an error message that quotes it, so
the test reads back every verdict as it was sent (needs CAP_NET_ADMIN, else skipped)."""
import os
import socket
import struct

import pytest
from scapy.all import IP, UDP, raw

from appliance.config import Config
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.source import nfqueue
from appliance.source.nfqueue import COPY_RANGE, QueueSocket, Worker, _settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNBOUND = 65531                   # a queue number no test binds
VERDICTS = {0: "drop", 1: "accept", 4: "repeat"}


def netlink():
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nfqueue.NETLINK_NETFILTER)
        s.bind((0, 0))
    except OSError as e:
        pytest.skip(f"no netfilter netlink socket here: {e}")
    if os.geteuid() != 0:
        pytest.skip("verdict messages need CAP_NET_ADMIN")
    return s


def sent(sock):
    """The verdicts the kernel quoted back: [(kind, verdict, packet id, mark or None)]."""
    out = []
    sock.settimeout(0.5)
    while True:
        try:
            data = sock.recv(65536)
        except (socket.timeout, BlockingIOError):
            return out
        off = 0
        while off + 20 <= len(data):
            mlen, mtype = struct.unpack_from("=IH", data, off)
            assert mtype == nfqueue.NLMSG_ERROR
            qlen, qtype = struct.unpack_from("=IH", data, off + 20)      # the quoted request
            q = off + 20
            kind = {nfqueue.NFQNL_MSG_VERDICT: "one", nfqueue.NFQNL_MSG_VERDICT_BATCH: "batch"}[qtype & 0xFF]
            verdict, packet_id = struct.unpack_from("!II", data, q + 24)
            mark = struct.unpack_from("!I", data, q + 36)[0] if qlen >= 40 else None
            out.append((kind, VERDICTS[verdict], packet_id, mark))
            off += (mlen + 3) & ~3
        sock.settimeout(0.05)


def worker(sock=None, rules=None, **cfg):
    cfg = Config(outside="a", inside="b", eve=None, **{"offload": False, **cfg})
    rs = load_rules([rules or os.path.join(ROOT, "rules", "default.yaml")], home_net=["10.201.2.0/24"])
    w = Worker(cfg, UNBOUND, rs)
    w.inspector = Inspector(rs, _settings(cfg))
    w.queue = QueueSocket(sock or netlink(), lambda: False, queue_num=UNBOUND)
    return w


def test_a_plain_packet_is_accepted_once():
    w = worker()
    w.on_packet(raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=40000, dport=9000) / (b"x" * 18)), 7, 1, 2, 0)
    assert sent(w.queue.sock) == [("one", "accept", 7, None)]
    assert (w.counters.packets, w.counters.errors, w.counters.anomalies, w.counters.copy_truncated) == (1, 0, 0, 0)
    assert w.inspector.counters.verdicts["pass"] == 1


def test_a_packet_cut_by_the_copy_range_is_counted_as_such_not_as_an_anomaly():
    """The kernel copied only COPY_RANGE bytes of a longer datagram: the IPv4 truncation is
    ours (the copy range), not the wire's, so it is counted as copy_truncated and taken out of
    the packet's anomalies before the Inspector sees it."""
    w = worker()
    whole = raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=40000, dport=9000) / (b"x" * 8900))
    w.on_packet(whole[:COPY_RANGE], 7, 1, 2, 0)
    assert sent(w.queue.sock) == [("one", "accept", 7, None)]
    assert w.counters.copy_truncated == 1
    assert w.inspector.counters.verdicts["pass"] == 1
    # the Inspector saw the packet without the copy range's ipv4.trunc_pkt: what is left
    # (UDP's own length check) is the only anomaly counted
    assert w.counters.anomalies == 1


DROP_9997 = """\
default_action: pass
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 9997}
"""


def udp(port, sport=40000):
    return raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=sport, dport=port) / (b"x" * 18))


def test_in_a_burst_accepts_are_held_for_one_batch_and_a_drop_goes_out_alone(tmp_path):
    """A burst (the socket had the next message waiting): accepts are held and answered by
    one batch verdict up to the last held id; a drop between them goes out at once, alone,
    before the batch that covers the ids around it."""
    rules = tmp_path / "r.yaml"
    rules.write_text(DROP_9997)
    w = worker(rules=str(rules))
    w.queue.bursting = True               # as after a recv that found its message waiting
    for packet_id, port in ((1, 9998), (2, 9998), (3, 9997), (4, 9998)):
        w.on_packet(udp(port, 40000 + packet_id), packet_id, 1, 2, 0)
    assert w.queue.held == 3
    w.queue.flush()
    assert sent(w.queue.sock) == [("one", "drop", 3, None), ("batch", "accept", 4, None)]
    assert (w.queue.batches, w.queue.batched) == (1, 3)


def test_an_accept_while_accepts_are_held_joins_them(tmp_path):
    """A packet answered alone (not in a burst) while accepts are still held: sent alone, it
    would leave before the held packets of its own flow; it goes with them instead."""
    w = worker()
    w.queue.accept_later(1)
    w.on_packet(udp(9000), 2, 1, 2, 0)
    assert sent(w.queue.sock) == []
    w.queue.flush()
    assert sent(w.queue.sock) == [("batch", "accept", 2, None)]


def test_an_offload_sends_the_held_accepts_first_and_keeps_others_mark_bits(tmp_path):
    """An offloaded packet is repeated and leaves at once: the accepts held for earlier
    packets go first; its mark is ours under mark_mask, everyone else's bits kept."""
    rules = tmp_path / "r.yaml"
    rules.write_text(DROP_9997)           # no alert rules: a passed flow is decided at once
    w = worker(rules=str(rules), offload=True)
    w.queue.accept_later(1)
    others = 0x40000001 & ~w.mark_mask
    w.on_packet(udp(9000), 2, 1, 2, others | w.mark_mask)
    assert sent(w.queue.sock) == [("batch", "accept", 1, None), ("one", "repeat", 2, others | w.marks["pass"])]
    assert w.counters.offloaded == 1


def test_each_worker_answers_its_share_of_the_kernels_icmp_limits():
    """queue-balance spreads one victim's packets over every worker: each worker's reject
    answers keep 1/workers of the kernel's limits (review kern)."""
    from appliance.reject import kernel_limits
    limits = kernel_limits()
    for workers in (1, 4):
        lim = worker(workers=workers).rejector.limit
        assert lim.per_sec == limits["per_sec"] / workers
        assert lim.interval[4] == limits["v4_interval"] * workers
