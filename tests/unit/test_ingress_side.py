"""appliance/ingress.py: live, a packet of a known flow must enter where its sender's packets
enter (the client's side, or the server's: the interface the client's packets leave by).
One that does not is refused to its flow and dropped (flow.wrong_side); replay and a hook
without an output device know no interfaces and check nothing."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.ingress import ingress
from appliance.inspector import Inspector, Settings

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
OUT, IN = "eth0", "eth1"          # the client's side, the server's


def seg(to_server, flags, seq, ack, data=b""):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


class Run:
    def __init__(self, tmp_path, mode="enforce"):
        path = tmp_path / "r.yaml"
        path.write_text("rules:\n  - {id: 1, action: pass, proto: tcp, http_host: good.example}\n"
                        "  - {id: 2, action: drop, proto: tcp, http_host: evil.example}\n")
        self.events = []
        self.insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False, mode=mode), self)
        self.t = 1.0

    def go(self, raw, via=None):
        """`via`: (ingress, output device) or None (replay)."""
        self.t += 0.001
        p = decode_l3(raw, self.t)
        if via is not None:
            p.in_iface = ingress(*via)
        return self.insp.process(p)

    def write(self, event):           # the Inspector's EVE sink
        self.events.append(event)

    def anomalies(self):
        return [e for e in self.events if e["event_type"] == "anomaly"]


REQ = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
CLIENT, SERVER = (OUT, IN), (IN, OUT)           # each end's packets: in on its side, out on the other's


def handshake(r, client=CLIENT, server=SERVER):
    r.go(seg(True, 0x02, 1000, 0), client)
    r.go(seg(False, 0x12, 5000, 1001), server)
    return r.go(seg(True, 0x10, 1001, 5001), client)


def test_a_connection_through_both_sides_is_untouched(tmp_path):
    r = Run(tmp_path)
    v = handshake(r)
    flow = v.flow
    assert flow.in_iface == OUT and flow.in_iface.out == IN
    v = r.go(seg(True, 0x18, 1001, 5001, REQ), CLIENT)
    assert v.action == "pass" and v.flow is flow
    assert r.go(seg(False, 0x18, 5001, 1001 + len(REQ), b"HTTP/1.1 200 OK\r\n\r\n"), SERVER).flow is flow
    assert not r.anomalies()


@pytest.mark.parametrize("forged_by", ["client", "server"])
def test_a_packet_from_the_other_ends_side_is_dropped_and_never_reaches_the_flow(tmp_path, forged_by):
    """The client sends a RST in the server's name (it enters on the client's side and is
    routed back out there); or the server's side sends one in the client's name."""
    r = Run(tmp_path)
    flow = handshake(r).flow
    before = (flow.state, flow.pkts_ts, flow.pkts_tc, flow.tcp_seen, flow.last)
    if forged_by == "client":
        v = r.go(seg(False, 0x04, 5001, 0), (OUT, OUT))
    else:
        v = r.go(seg(True, 0x04, 1001, 0), (IN, IN))
    assert v.action == "drop" and v.flow is None
    assert (flow.state, flow.pkts_ts, flow.pkts_tc, flow.tcp_seen, flow.last) == before
    [a] = r.anomalies()
    assert a["anomaly"]["event"] == "flow.wrong_side" and a["in_iface"] == (OUT if forged_by == "client" else IN)
    # the connection goes on, read: its request decides it
    assert r.go(seg(True, 0x18, 1001, 5001, REQ), CLIENT).flow is flow


def test_the_same_packet_from_its_own_side_is_the_flows(tmp_path):
    """The control: a RST in the server's name that enters on the server's side closes it."""
    r = Run(tmp_path)
    flow = handshake(r).flow
    v = r.go(seg(False, 0x04, 5001, 0), SERVER)
    assert v.flow is flow and v.action == "pass" and flow.state == "closed"
    assert not r.anomalies()


def test_a_flow_routed_back_out_where_it_came_in_is_one_side(tmp_path):
    """Both ends behind one interface (the kernel routes the client's packets back out of
    it): every packet of the flow enters there."""
    r = Run(tmp_path)
    v = handshake(r, (IN, IN), (IN, IN))
    v = r.go(seg(True, 0x18, 1001, 5001, REQ), (IN, IN))
    assert v.action == "pass" and v.flow.pkts_ts == 3 and not r.anomalies()


def test_a_flow_first_seen_from_its_responder_keeps_its_clients_pair(tmp_path):
    """A SYN/ACK first (its SYN missed, or the kernel's SYN proxy answered it): the flow's pair
    is the client's, the other way from the packet that made it."""
    r = Run(tmp_path)
    v = r.go(seg(False, 0x12, 5000, 1001), SERVER)
    flow = v.flow
    assert flow.in_iface == OUT and flow.in_iface.out == IN
    assert r.go(seg(True, 0x10, 1001, 5001), CLIENT).flow is flow
    assert r.go(seg(False, 0x10, 5001, 1001), (OUT, OUT)).flow is None       # the server's, from the client's side
    assert r.go(seg(True, 0x18, 1001, 5001, REQ), CLIENT).flow is flow


def test_without_an_output_device_or_interfaces_nothing_is_checked(tmp_path):
    """A hook before routing (no output device) or replay: no side is known."""
    r = Run(tmp_path)
    handshake(r, (OUT, ""), (IN, ""))
    assert r.go(seg(False, 0x10, 5001, 1001), (OUT, "")).flow is not None
    r2 = Run(tmp_path / "..")
    handshake(r2, None, None)
    assert r2.go(seg(False, 0x10, 5001, 1001), None).flow is not None
    assert not r.anomalies()


def test_monitor_mode_passes_it_and_says_it_would_drop(tmp_path):
    r = Run(tmp_path, mode="monitor")
    flow = handshake(r).flow
    before = (flow.state, flow.pkts_tc)
    v = r.go(seg(False, 0x04, 5001, 0), (OUT, OUT))
    assert (v.action, v.would, v.flow) == ("pass", "drop", None)
    assert (flow.state, flow.pkts_tc) == before
    assert r.insp.counters.would_block["drop"] == 1


def test_an_ingress_pair_is_one_object_and_turns_around():
    a = ingress("eth0", "eth1")
    assert a is ingress("eth0", "eth1") and a == "eth0" and a.out == "eth1"
    assert a.back is ingress("eth1", "eth0") and a.back.back is a
    unknown = ingress("eth0", "")
    assert unknown.back is unknown
