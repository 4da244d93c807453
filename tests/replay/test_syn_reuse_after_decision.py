"""A new connection on a decided flow's ports gets its own inspection (review s9). Live,
every bare SYN on an offloaded entry goes to a worker (netfilter.py); these are the
worker's side, where the old verdict must not carry over to the new connection:
- a SYN from the old responder (the other way round: live, conntrack calls one on an open
  entry INVALID, so it is a new entry);
- a SYN on a flow picked up mid-stream (no handshake seen: no challenge ACK to tell the
  old connection from a new one)."""
from pathlib import Path

from scapy.all import IP, TCP, Raw

from replaykit import Capture, TcpConn, client_hello, l2, tls_next_flight, tls_records
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "93.184.216.34"
ALLOW = str(Path(__file__).resolve().parents[2] / "rules" / "examples" / "sni-allowlist.yaml")


def run(cap, rules):
    insp = Inspector(load_rules(rules), Settings())
    return [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]


def test_a_connection_the_old_responder_opens_is_judged_not_the_old_pass():
    cap = Capture()
    old = TcpConn(cap, C, 40000, S, 443, cseq=1000)
    old.handshake()
    old.send(tls_records(client_hello("example.com")))
    n_final = tls_next_flight(old)
    # the old connection closed in the kernel (offloaded, unseen); S opens S:443 -> C:40000
    cap.add(l2(IP(src=S, dst=C) / TCP(sport=443, dport=40000, flags="S", seq=555555)))
    cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="SA", seq=9000, ack=555556)))
    cap.add(l2(IP(src=S, dst=C) / TCP(sport=443, dport=40000, flags="A", seq=555556, ack=9001)))
    n = cap.add(l2(IP(src=S, dst=C) / TCP(sport=443, dport=40000, flags="PA", seq=555556, ack=9001)
                   / Raw(b"inbound payload")))
    out = run(cap, ALLOW)
    old_flow = out[n_final - 1].flow
    assert out[n_final - 1].action == "pass" and old_flow.final
    new = out[n_final:n]
    assert all(v.flow is not old_flow for v in new)
    assert not any(v.action == "pass" and v.offload for v in new)   # nothing handed to the kernel
    assert new[-1].action == "drop"                                  # the allow-list's default


def test_a_new_connection_on_a_flow_picked_up_mid_stream_is_judged(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text("rules:\n  - {id: 1, action: drop, proto: tcp, content: EVILPAYLOAD}\n")
    cap = Capture()
    for i in range(40):                   # picked up mid-stream, passed past its depth
        cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="PA", seq=1000 + 1000 * i, ack=5000)
                   / Raw(b"x" * 1000)))
        cap.add(l2(IP(src=S, dst=C) / TCP(sport=443, dport=40000, flags="PA", seq=5000 + 1000 * i,
                                          ack=2000 + 1000 * i) / Raw(b"y" * 1000)))
    n_old = len(cap.frames)
    cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="S", seq=555555)))
    cap.add(l2(IP(src=S, dst=C) / TCP(sport=443, dport=40000, flags="SA", seq=9000, ack=555556)))
    cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="A", seq=555556, ack=9001)))
    n = cap.add(l2(IP(src=C, dst=S) / TCP(sport=40000, dport=443, flags="PA", seq=555556, ack=9001)
                   / Raw(b"EVILPAYLOAD")))
    out = run(cap, str(rules))
    old_flow = out[n_old - 1].flow
    assert old_flow.final and old_flow.verdict == "pass"
    assert out[n - 1].flow is not old_flow and out[n - 1].action == "drop"
