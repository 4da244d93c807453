"""A decided flow's packet is answered straight after its lookup (Inspector._process, the
decided path; process() returns its Verdict without the event and release steps): what it
must still do, in the build that runs. Each packet the full path would have written an
event for, logged or released still gets that; its counters are the full path's."""
import json
import socket
import struct

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.flow import CLOSED
from appliance.inspector import Inspector, Settings
from appliance.output.eve import EveWriter
from appliance.output.pcap_log import PcapLog, PcapLogConfig

RULES = """\
rules:
  - {id: 1, action: drop, proto: udp, dst_port: 9999}
  - {id: 2, action: pass, proto: tcp, dst_port: 80}
"""
CLIENT, SERVER = "10.0.0.1", "10.0.0.2"


def udp(payload=b"x" * 18, sport=40000, dport=9999, ulen=None):
    """An IPv4 UDP datagram; `ulen` below the real length: a udp.len_invalid anomaly."""
    body = struct.pack("!HHHH", sport, dport, ulen or 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(body), 1, 0x4000, 64, 17, 0,
                       socket.inet_aton(CLIENT), socket.inet_aton(SERVER)) + body


def tcp(flags, seq, ack, src=CLIENT, dst=SERVER, sport=40000, dport=80, payload=b""):
    """An IPv4 TCP segment, checksum filled in."""
    from scapy.all import IP, TCP, raw
    return raw(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack) / payload)


def inspector(tmp_path, **settings):
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    eve_path = tmp_path / "eve.json"
    settings.setdefault("eve_types", ("alert", "anomaly", "flow"))
    insp = Inspector(load_rules(path), Settings(**settings), EveWriter(str(eve_path)))
    return insp, eve_path


def events(eve_path):
    return [json.loads(line) for line in eve_path.read_text().splitlines()]


def test_a_decided_flows_packet_keeps_every_counter(tmp_path):
    insp, _ = inspector(tmp_path)
    first = insp.process(decode_l3(udp(), 1.0))
    flow = first.flow
    assert first.action == "drop" and flow.final
    for i in range(5):
        v = insp.process(decode_l3(udp(), 1.1 + i / 10))
        assert v.action == "drop" and v.flow is flow and v.offload and v.alerts == () and v.would is None
    c = insp.counters
    assert c.pkts == 6 and c.bytes == 6 * 46 and c.kinds == {(4, 17): 6}
    assert c.verdicts["drop"] == 6 and c.fast_path == 5
    assert flow.pkts_ts == 6 and flow.bytes_ts == 6 * 46 and flow.last == 1.5
    assert insp.now == 1.5 and insp.first_ts == 1.0
    stats = insp.stats_event()["stats"]
    assert stats["flow_bypassed"]["local_pkts"] == 5 and stats["ips"]["blocked"] == 6


def test_monitor_mode_counts_what_a_decided_packet_would_have_blocked(tmp_path):
    insp, _ = inspector(tmp_path, mode="monitor")
    insp.process(decode_l3(udp(), 1.0))
    v = insp.process(decode_l3(udp(), 1.1))
    assert v.action == "pass" and v.would == "drop"
    assert insp.counters.would_block["drop"] == 2 and insp.counters.fast_path == 1


def test_an_anomaly_on_a_decided_flows_packet_is_still_written(tmp_path):
    # the decided path has no event step: a packet with a decode anomaly goes through
    # process()'s (Inspector._process sets _decided only for a packet without one)
    insp, eve_path = inspector(tmp_path)
    flow = insp.process(decode_l3(udp(), 1.0)).flow
    assert flow.final
    v = insp.process(decode_l3(udp(ulen=10), 1.1))
    assert v.action == "drop" and v.flow is flow and insp.counters.fast_path == 1
    assert insp.counters.invalid == 1
    anomalies = [e for e in events(eve_path) if e["event_type"] == "anomaly"]
    assert [a["anomaly"]["event"] for a in anomalies] == ["udp.len_invalid"]


def test_the_pcap_log_still_gets_a_dropped_flows_later_packets(tmp_path):
    # pcap_log: every packet of a dropped flow is written, the decided ones too
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    log = PcapLog(PcapLogConfig(str(tmp_path)), "q0")
    insp = Inspector(load_rules(path), Settings(eve_types=("flow",)), None, log)
    for i in range(4):
        insp.process(decode_l3(udp(), 1.0 + i / 10))
    assert insp.counters.fast_path == 3
    log.tick()                             # (the writer's waiting blocks written)
    assert log.counters()["written"] == 4
    log.close()


def test_a_decided_tcp_flow_still_ends_on_its_fin_and_its_ports_are_reused(tmp_path):
    # a passed connection, final from its SYN: its teardown is followed on the decided path
    # (the lookup's), so a new SYN on the same ports is a new flow and the old one ends closed
    insp, eve_path = inspector(tmp_path, eve_types=("flow",), verify_checksums=False)
    insp.process(decode_l3(tcp("S", 100, 0), 1.0))
    flow = insp.flows.flows[next(iter(insp.flows.flows))]
    assert flow.final
    for ts, raw_ in ((1.1, tcp("SA", 500, 101, SERVER, CLIENT, 80, 40000)), (1.2, tcp("A", 101, 501)),
                     (1.3, tcp("FA", 101, 501)), (1.4, tcp("FA", 501, 102, SERVER, CLIENT, 80, 40000)),
                     (1.5, tcp("A", 102, 502))):
        v = insp.process(decode_l3(raw_, ts))
        assert v.flow is flow and v.action == "pass"
    assert flow.state == CLOSED and insp.counters.fast_path == 5
    v = insp.process(decode_l3(tcp("S", 9000, 0), 2.0))
    assert v.flow is not flow
    ended = [e for e in events(eve_path) if e["event_type"] == "flow"]
    assert [e["flow"]["reason"] for e in ended] == ["closed"] and ended[0]["flow_id"] == flow.id


class FailsOnce:
    """An EVE sink whose first alert write fails (a bug on the way out): process() must not raise."""

    def __init__(self):
        self.events, self.failed = [], False

    def write(self, event):
        if event["event_type"] == "alert" and not self.failed:
            self.failed = True
            raise RuntimeError("sink failed")
        self.events.append(event)


def test_a_flow_decided_on_a_failing_packet_is_released_all_the_same(tmp_path):
    # The decided path does not release (process() did when the flow became final). A flow
    # decided on a packet that then failed (here: writing its alert) is released by the
    # error path, or it would keep its client stream until it ends.
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + '  - {id: 3, action: drop, proto: tcp, dst_port: 8080, content: "evil"}\n')
    insp = Inspector(load_rules(path), Settings(eve_types=("alert", "flow"), verify_checksums=False), FailsOnce())
    insp.process(decode_l3(tcp("S", 100, 0, dport=8080), 1.0))
    insp.process(decode_l3(tcp("SA", 500, 101, SERVER, CLIENT, 8080, 40000), 1.1))
    insp.process(decode_l3(tcp("A", 101, 501, dport=8080), 1.2))
    v = insp.process(decode_l3(tcp("PA", 101, 501, dport=8080, payload=b"GET evil"), 1.3))
    flow = v.flow
    assert insp.counters.internal_errors == 1 and flow is not None and flow.final and flow.verdict == "drop"
    assert flow.stream is None
    v = insp.process(decode_l3(tcp("PA", 109, 501, dport=8080, payload=b"more"), 1.4))
    assert v.flow is flow and v.action == "drop" and insp.counters.fast_path == 1 and flow.stream is None
