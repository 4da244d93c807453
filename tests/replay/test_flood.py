"""Floods: a full flow table gives up flows that cost nothing to forget before the one
an attacker needs forgotten; decided flows hold no stream buffers."""
import struct

from scapy.all import IP, TCP as STCP

from replaykit import tls_next_flight, Capture, TcpConn, client_hello, l2, tls_records
from appliance.decode import decode_frame, decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

TLS_DROP = "rules:\n  - {id: 1, action: drop, proto: tcp, tls_sni: evil.example, log: true}\n"


def _syn(i, ts):
    """A spoofed SYN from 198.18.x.y: a flow seen one way only."""
    src = bytes((198, 18, (i >> 8) & 255, i & 255))
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, bytes((10, 0, 0, 80)))
    return decode_l3(ip + struct.pack("!HHIIBBHHH", 1024 + i % 60000, 443, i, 0, 0x50, 0x02, 65535, 0, 0), ts)


def test_syn_flood_does_not_evict_the_pending_connection(rules_file):
    """An attacker opens a TLS connection (its SNI not sent yet), then fills the table with
    spoofed SYNs: evicting the oldest flow would forget the pending one, and its
    ClientHello would arrive on a mid-stream flow. The flood's unconfirmed flows go instead."""
    insp = Inspector(load_rules(rules_file(TLS_DROP)), Settings(max_flows=50))
    cap = Capture()
    conn = TcpConn(cap, "10.0.0.1", 40000, "10.0.0.80", 443)
    conn.handshake()                         # a real connection; its ClientHello held back
    done = TcpConn(cap, "10.0.0.2", 40000, "10.0.0.80", 443)
    done.handshake()
    done.send(tls_records(client_hello("good.example")))
    tls_next_flight(done)                    # decided: pass, nothing left to inspect
    for ts, buf in cap.frames:
        insp.process(decode_frame(buf, cap.linktype, ts))
    [decided] = [f for f in insp.flows.flows.values() if f.final]
    [pending] = [f for f in insp.flows.flows.values() if not f.final]
    t = cap.t
    for i in range(500):                     # ten times the table, over 50 s
        t += 0.1
        insp.process(_syn(i, t))
    cap.frames.clear()
    conn.send(tls_records(client_hello("evil.example")), ts=t + 0.002)
    verdicts = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
    assert [v.action for v in verdicts] == ["drop"]
    assert verdicts[-1].alerts and verdicts[-1].alerts[0].id == 1
    assert verdicts[-1].flow is pending and pending.reason == ""   # the same flow, never forgotten
    # the decided flow went first, then the flood's own oldest flows
    assert decided.reason == "evicted"
    assert insp.flows.evicted == 500 - 48 and insp.flows.evicted_by_class == [1, 500 - 49, 0]
    assert len(insp.flows) == 50


def test_final_flows_release_their_stream_and_transactions(run, rules_file):
    """A decided flow is never inspected again: it keeps no client stream (up to
    stream_bytes each) and no parsed transaction; its events are unchanged."""
    cap = Capture()
    conn = TcpConn(cap, "10.0.0.1", 40000, "10.0.0.80", 443)
    conn.handshake()
    conn.send(tls_records(client_hello("evil.example")))
    conn.send(b"x" * 100)
    insp = Inspector(load_rules(rules_file(TLS_DROP)), Settings())
    for ts, buf in cap.frames:
        insp.process(decode_frame(buf, cap.linktype, ts))
    [flow] = insp.flows.flows.values()
    assert flow.final and flow.verdict == "drop"
    assert flow.stream is None and flow.app.tx is None
    r = run(cap, rules_file(TLS_DROP))
    [alert] = r.alerts(1)
    assert alert["tls"]["sni"] == "evil.example"           # written before the release
    [fl] = r.of("flow")
    assert fl["app_proto"] == "tls" and fl["flow"]["action"] == "drop"


def test_port_reuse_after_release_starts_a_new_inspection(rules_file):
    """A released (decided) flow needs no stream to see a new connection on its ports: a
    bare SYN after its handshake, with the old ISN or a new one, is passed unoffloaded and
    the server's SYN/ACK to it starts a new flow (live, netfilter.py queues every bare SYN;
    an open connection would answer it with a challenge ACK instead)."""
    rules = "rules:\n  - {id: 1, action: pass, proto: tcp, tls_sni: good.example}\n"
    for isn in (1000, 777777):
        insp = Inspector(load_rules(rules_file(rules)), Settings())
        cap = Capture()
        conn = TcpConn(cap, "10.0.0.1", 40000, "10.0.0.80", 443, cseq=1000)
        conn.handshake()
        conn.send(tls_records(client_hello("good.example")))
        tls_next_flight(conn)
        for ts, buf in cap.frames:
            insp.process(decode_frame(buf, cap.linktype, ts))
        [flow] = insp.flows.flows.values()
        assert flow.final and flow.stream is None and insp.flows.total == 1
        v = insp.process(decode_frame(bytes(l2(IP(src="10.0.0.1", dst="10.0.0.80")
                                                / STCP(sport=40000, dport=443, flags="S", seq=isn))), 1, cap.t + 1))
        assert v.action == "pass" and not v.offload and insp.flows.total == 1
        insp.process(decode_frame(bytes(l2(IP(src="10.0.0.80", dst="10.0.0.1")
                                            / STCP(sport=443, dport=40000, flags="SA", seq=90000, ack=isn + 1))),
                                  1, cap.t + 1.001))
        assert insp.flows.total == 2 and flow.reason == "reused"
