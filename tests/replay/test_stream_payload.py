"""payload: stream / flow:only_stream: content read on the reassembled stream of the
packet's direction (detect/stream_payload.py), with crafted TCP conversations: a
signature split over two segments (the classic evasion), out of order, a conflicting
overlap, a retransmission; .rules and YAML give the same events."""
from replaykit import Capture, TcpConn, alerted, feed, handshaken, write

from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "10.0.0.80"
SIG = b"EVILSIGNATURE"


def anomalies(events):
    return {e["anomaly"].get("event") or e["anomaly"].get("type") for e in events if e["event_type"] == "anomaly"}


YAML = """rules:
  - {id: 1, action: alert, proto: tcp, flow: [to_server], content: EVILSIGNATURE, payload: stream}
  - {id: 2, action: alert, proto: tcp, flow: [to_server], content: EVILSIGNATURE}
  - {id: 3, action: alert, proto: tcp, flow: [to_client], content: EVILSIGNATURE, payload: stream}
"""
RULES = """alert tcp any any -> any any (msg:"s"; flow:to_server,only_stream; content:"EVILSIGNATURE"; sid:1;)
alert tcp any any -> any any (msg:"p"; flow:to_server,no_stream; content:"EVILSIGNATURE"; sid:2;)
alert tcp any any -> any any (msg:"c"; flow:to_client,only_stream; content:"EVILSIGNATURE"; sid:3;)
"""


def conn():
    return handshaken(C, S, 9000)


def test_split_signature_found_once_on_the_completing_segment(tmp_path):
    cap, c = conn()
    c.send(b"hello EVILSIG")
    done = c.send(b"NATURE bye")
    c.send(b"more bytes")
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [done]
    assert alerted(out, 2) == []              # per packet: the split hides it


def test_rules_and_yaml_give_the_same_alerts(tmp_path):
    cap, c = conn()
    c.send(b"xxEVILSIGN")
    c.send(b"ATUREyy EVILSIGNATURE")          # completes one, holds a second whole
    c.recv(b"EVIL")
    c.recv(b"SIGNATURE")
    c.send(b"EVILSIGNATUR")
    c.send(b"E")
    y, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    r, _ = feed(cap, write(tmp_path, "r.rules", RULES))
    assert y == r
    assert alerted(y, 1) == [5, 9]            # once per packet that completes an occurrence
    assert alerted(y, 2) == [5]
    assert alerted(y, 3) == [7]               # the server's direction, its own stream


def test_out_of_order_segments_match_when_the_hole_fills(tmp_path):
    cap, c = conn()
    first = c.cseq
    c.cseq = first + 7
    c.send(b"NATURE")                         # the second half first: held, nothing readable
    c.cseq = first
    fill = c.send(b"EVILSIG")
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [fill]


def test_retransmission_does_not_alert_again(tmp_path):
    cap, c = conn()
    c.send(b"EVILSIG")
    start = c.cseq
    done = c.send(b"NATURE")
    c.cseq = start
    c.send(b"NATURE")                         # the same bytes again
    c.cseq = start - 7
    c.send(b"EVILSIGNATURE")                  # and the whole of it
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [done]


DROP = """rules:
  - {id: 1, action: drop, proto: tcp, content: EVILSIGNATURE, payload: stream}
"""


def test_drop_on_the_packet_that_completes_the_match(tmp_path):
    cap, c = conn()
    a = c.send(b"EVILSIG")
    b = c.send(b"NATURE")
    out, events = feed(cap, write(tmp_path, "r.yaml", DROP))
    assert out[a - 1][1] == "pass" and out[b - 1][1] == "drop"
    assert [e["alert"]["signature_id"] for e in events if e["event_type"] == "alert"] == [1]


def test_conflicting_overlap_takes_the_exception_policy(tmp_path):
    cap, c = conn()
    first = c.cseq
    c.cseq = first + 4
    c.send(b"SIGNATURE")                      # queued out of order
    c.cseq = first + 4
    conflict = c.send(b"XXXXATURE")           # the same bytes, said otherwise: receivers differ
    c.cseq = first
    fill = c.send(b"EVIL")
    rules = write(tmp_path, "r.yaml", DROP)
    out, events = feed(cap, rules)
    assert out[conflict - 1][1] == "drop"
    assert "exception.stream_ambiguous" in anomalies(events)
    # "ignore": read as Linux reads it (the bytes queued first win): matched when the hole fills
    out, _ = feed(cap, rules, exception_policy="ignore")
    assert [n for n, action, _ in out if action == "drop"] == [fill]


PASS_ONLY = """default_action: drop
rules:
  - {id: 1, action: pass, proto: tcp, content: SIGNATURE, payload: stream}
"""


def test_a_pass_rule_does_not_match_an_ambiguous_stream(tmp_path):
    cap, c = conn()
    first = c.cseq
    c.cseq = first + 4
    c.send(b"SIGNATURE")
    c.cseq = first + 4
    c.send(b"XXXXATURE")
    c.cseq = first
    fill = c.send(b"EVIL")
    for _ in range(20):                       # past the inspection depth: the default decides
        c.send(b"more")
    rules = write(tmp_path, "r.yaml", PASS_ONLY)
    out, events = feed(cap, rules)
    # the server may read XXXXATURE: the pass rule never matches, the default drops
    assert out[-1][1] == "drop" and flow_actions(events) == ["drop"]
    out, events = feed(cap, rules, exception_policy="ignore")
    assert [a for _, a, _ in out[fill - 1:]] == ["pass"] * 21 and flow_actions(events) == ["pass"]


def flow_actions(events):
    return [e["flow"]["action"] for e in events if e["event_type"] == "flow"]


def test_segments_larger_than_the_window_are_read_whole(tmp_path):
    cap, c = conn()
    c.send(b"a" * 150 + b"EVILSIG")
    done = c.send(b"NATURE" + b"b" * 150 + SIG + b"c" * 100)   # two occurrences end here: one alert
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML), stream_bytes=64)
    assert alerted(out, 1) == [done]


def test_held_bytes_stay_bounded_by_the_overlap(tmp_path):
    cap, c = conn()
    for _ in range(40):
        c.send(b"x" * 1000)
    insp = Inspector(load_rules(write(tmp_path, "r.yaml", YAML)), Settings(depth_packets=100, depth_bytes=1 << 20))
    for ts, buf in cap.frames:
        insp.process(decode_frame(buf, cap.linktype, ts))
    (flow,) = insp.flows.flows.values()
    held = flow.payloads[0].stream.bytes
    assert held.delivered == 40_000 and len(held.data) == len(SIG) - 1


def test_midstream_pickup_reads_from_the_first_byte_seen(tmp_path):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 9000)     # no handshake: picked up mid-stream
    c.send(b"EVILSIG")
    done = c.send(b"NATURE")
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [done]


def test_stream_rules_loaded_mid_flow_start_at_the_next_segment(tmp_path):
    cap, c = conn()
    c.send(b"before the reload ")
    c.send(b"EVILSIG")
    c.send(b"NATURE")
    insp = Inspector(load_rules(write(tmp_path, "none.yaml", "rules: []\n")), Settings())
    frames = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    for pkt in frames[:4]:
        insp.process(pkt)
    insp.reload(load_rules(write(tmp_path, "r.yaml", YAML)))
    got = [sorted(r.id for r in insp.process(pkt).alerts) for pkt in frames[4:]]
    assert got == [[], [1]]


def test_a_reload_with_longer_contents_widens_the_overlap(tmp_path):
    cap, c = conn()
    c.send(b"warm up")                        # the stream exists, kept for a 3-byte content
    c.send(b"EVILSIG")
    c.send(b"NATURE")
    insp = Inspector(load_rules(write(tmp_path, "short.yaml", "rules:\n  - {id: 7, action: alert, proto: tcp, "
                                                               "content: zzz, payload: stream}\n")), Settings())
    frames = [decode_frame(buf, cap.linktype, ts) for ts, buf in cap.frames]
    for pkt in frames[:4]:
        insp.process(pkt)
    insp.reload(load_rules(write(tmp_path, "r.yaml", YAML)))
    got = [sorted(r.id for r in insp.process(pkt).alerts) for pkt in frames[4:]]
    assert got == [[], [1]]


def test_an_urgent_byte_is_read_as_the_server_reads_it(tmp_path):
    from replaykit import l2, ip_of
    from scapy.all import TCP, Raw
    cap, c = conn()
    c.send(b"EVIL")
    # "SIGX" with the urgent pointer on X: Linux takes X out of the stream (no SO_OOBINLINE)
    cap.add(l2(ip_of(C, S) / TCP(sport=40000, dport=9000, flags="PAU", seq=c.cseq, ack=c.sseq, urgptr=4)
               / Raw(b"SIGX")))
    c.cseq += 4
    done = c.send(b"NATURE")
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [done]


def test_bytes_the_server_acknowledged_but_never_seen_are_a_gap(tmp_path):
    cap, c = conn()
    c.send(b"hello ")
    c.cseq += 7                               # "EVILSIG": the capture lost it, the server read it
    ack = c.recv(b"ok")                       # ... and acknowledges it
    nxt = c.send(b"NATURE")
    out, events = feed(cap, write(tmp_path, "r.yaml", DROP))
    # judged on the client's next packet (the server's own stream has no gap)
    assert out[ack - 1][1] == "pass" and out[nxt - 1][1] == "drop"
    assert {"stream.gap", "exception.stream_ambiguous"} <= anomalies(events)
    out, _ = feed(cap, write(tmp_path, "r.yaml", DROP), exception_policy="ignore")
    assert all(a == "pass" for _, a, _ in out)


def test_acknowledgements_of_bytes_seen_are_no_gap(tmp_path):
    cap, c = conn()
    c.send(b"hello ")
    c.recv(b"ok")
    c.send(b"EVILSIG")
    c.recv(b"ok")
    c.close()
    out, events = feed(cap, write(tmp_path, "r.yaml", DROP))
    assert all(a == "pass" for _, a, _ in out) and not anomalies(events) & {"stream.gap"}


def test_data_in_a_syn_the_server_took_is_read(tmp_path):
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 9000)
    c._seg(True, "S", SIG)                    # TCP Fast Open: the SYN carries the signature
    c._seg(False, "SA")                       # its ACK covers the data: the server took it
    ack = c._seg(True, "A")
    out, _ = feed(cap, write(tmp_path, "r.yaml", YAML))
    assert alerted(out, 1) == [ack]           # read on the client's next packet (its SYN passed unread)
