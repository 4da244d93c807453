"""Worker.on_packet without a kernel: what the worker does with one queued packet.

The queued packet is netfilterqueue's (a C object only a bound queue makes): it is stood in
by a plain object with the members the worker uses; every path of ours runs as it is."""
import os

from scapy.all import IP, UDP, raw

from appliance.config import Config
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector
from appliance.source.nfqueue import COPY_RANGE, Worker, _settings

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class QueuedPacket:
    """netfilterqueue.Packet's members that Worker uses; records the verdict given."""

    def __init__(self, payload, indev=1, packet_id=7):
        self.payload, self.indev, self.id, self.mark = payload, indev, packet_id, 0
        self.verdicts = []

    def get_payload(self):
        return self.payload

    def accept(self):
        self.verdicts.append("accept")

    def drop(self):
        self.verdicts.append("drop")

    def repeat(self):
        self.verdicts.append("repeat")

    def set_mark(self, mark):
        self.mark = mark


def worker():
    cfg = Config(outside="a", inside="b", eve=None, offload=False)
    rs = load_rules([os.path.join(ROOT, "rules", "default.yaml")], home_net=["10.201.2.0/24"])
    w = Worker(cfg, 0, rs)
    w.inspector = Inspector(rs, _settings(cfg))
    return w


def test_a_plain_packet_is_accepted_once():
    w = worker()
    pkt = QueuedPacket(raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=40000, dport=9000) / (b"x" * 18)))
    w.on_packet(pkt)
    assert pkt.verdicts == ["accept"]
    assert (w.counters.packets, w.counters.errors, w.counters.anomalies, w.counters.copy_truncated) == (1, 0, 0, 0)
    assert w.inspector.counters.verdicts["pass"] == 1


def test_a_packet_cut_by_the_copy_range_is_counted_as_such_not_as_an_anomaly():
    """The kernel copied only COPY_RANGE bytes of a longer datagram: the IPv4 truncation is
    ours (the copy range), not the wire's, so it is counted as copy_truncated and taken out of
    the packet's anomalies before the Inspector sees it."""
    w = worker()
    whole = raw(IP(src="10.201.1.2", dst="10.201.2.2") / UDP(sport=40000, dport=9000) / (b"x" * 8900))
    pkt = QueuedPacket(whole[:COPY_RANGE])
    w.on_packet(pkt)
    assert pkt.verdicts == ["accept"]
    assert w.counters.copy_truncated == 1
    assert w.inspector.counters.verdicts["pass"] == 1
    # the Inspector saw the packet without the copy range's ipv4.trunc_pkt: what is left
    # (UDP's own length check) is the only anomaly counted
    assert w.counters.anomalies == 1
