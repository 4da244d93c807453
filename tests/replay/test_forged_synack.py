"""Review s19: a client forges "server" packets (the appliance does not check which side a
packet entered) to make the receiver model discard or mis-read its real request. Each drop
below is the block rule or, where the model cannot follow the server any more, the exception
policy (tcp.handshake_ambiguous / tcp.urgent_ambiguous)."""
import struct

import pytest

from appliance.decode import decode_l3
from appliance.ingress import ingress
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
REQ = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"


def seg(to_server, flags, seq, ack, data=b"", urg=0):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 5 << 4, flags, 65535, 0, urg)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


def _insp(tmp_path, live=False):
    """go(when, raw, forged=False): the packet inspected. live: with the interfaces it
    crossed as NFQUEUE tells them (the client's side eth0, the server's eth1); `forged`: it
    bears the other end's address (sent from the other side). Live, the kernel drops such a
    packet before the queue (routed back out where it came in: netfilter.py); these cases are
    the worker's own check behind that (appliance/ingress.py)."""
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False))

    def go(when, raw, forged=False):
        p = decode_l3(raw, 1.0 + when)
        if live:
            sent_from = "eth0" if (p.src == "10.0.0.1") != forged else "eth1"
            p.in_iface = ingress(sent_from, "eth0" if p.dst == "10.0.0.1" else "eth1")
        return insp.process(p)
    return go


def test_a_forged_synack_confirmed_by_an_ack_the_server_resets(tmp_path):
    """The client forges a second SYN/ACK (server ISN X) after the real one (5000): the
    receiver is rebuilt from it. Its ACK of X+1 confirms it here (offset 0, handshake done);
    Linux answers that ACK with a RST (ack != snt_isn+1: tcp_check_req returns the listener,
    which resets it) and keeps its request sock. The client then completes the real
    handshake (ack 5001) and sends its request: read here against X+1, its ACK is too old,
    discarded, the request never read."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))             # the server's SYN/ACK
    x = 6000
    go(0.02, seg(False, 0x12, x, 1001))                # forged by the client
    go(0.03, seg(True, 0x10, 1001, x + 1))             # confirms it here; Linux: RST
    go(0.04, seg(False, 0x04, x + 1, 0))               # Linux's RST (seq = the segment's ack)
    go(0.05, seg(True, 0x10, 1001, 5001))              # Linux: the real handshake completes
    v = go(0.06, seg(True, 0x18, 1001, 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset, getattr(v, "reason", None))


def test_a_forged_synack_confirmed_no_rst_seen(tmp_path):
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    x = 6000
    go(0.02, seg(False, 0x12, x, 1001))
    go(0.03, seg(True, 0x10, 1001, x + 1))
    go(0.05, seg(True, 0x10, 1001, 5001))
    v = go(0.06, seg(True, 0x18, 1001, 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset)


def test_a_forged_synack_before_the_real_one(tmp_path):
    """Pre-existing race: the forged SYN/ACK reaches the appliance before the server's."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    x = 6000
    go(0.001, seg(False, 0x12, x, 1001))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.05, seg(True, 0x10, 1001, 5001))
    v = go(0.06, seg(True, 0x18, 1001, 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset)


def test_a_forged_synack_confirmed_before_the_real_synack(tmp_path):
    """As the race above, the client's ACK to the forged SYN/ACK sent before the server's
    SYN/ACK arrives: the handshake is done here, so the real SYN/ACK rebuilds nothing."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    x = 6000
    go(0.001, seg(False, 0x12, x, 1001))
    go(0.002, seg(True, 0x10, 1001, x + 1))            # Linux: RST (its request sock stays)
    go(0.01, seg(False, 0x12, 5000, 1001))             # the server's SYN/ACK (sent on the SYN)
    go(0.011, seg(False, 0x04, x + 1, 0))              # the RST
    go(0.05, seg(True, 0x10, 1001, 5001))
    v = go(0.06, seg(True, 0x18, 1001, 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset)


def test_a_second_syn_out_of_the_requests_window(tmp_path):
    """Pre-existing (not from bed7c09). Linux keeps a request sock for ISN 1000; a SYN with
    another ISN out of its window is answered with an ACK and dropped (tcp_check_req: not a
    retransmitted SYN, not in window: send_ack, return NULL). The server still completes the
    first SYN's connection."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x02, 1000 + (1 << 30), 0))     # dropped by Linux
    go(0.03, seg(False, 0x10, 5001, 1001))             # its ACK (tcp_v4_reqsk_send_ack)
    go(0.05, seg(True, 0x10, 1001, 5001))
    v = go(0.06, seg(True, 0x18, 1001, 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset)


def test_tfo_data_settled_by_a_forged_synack(tmp_path):
    """Pre-existing (the stream, not the receiver): the SYN carries the request (TCP Fast
    Open, a cookie the client got earlier). The client's forged SYN/ACK acknowledging only
    the SYN arrives first: the stream drops the SYN's data; the server's own SYN/ACK (acking
    the data: it took it) changes nothing in the stream, though it rebuilds the receiver."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0, REQ))
    go(0.001, seg(False, 0x12, 6000, 1001))            # forged: "the data was not taken"
    go(0.01, seg(False, 0x12, 5000, 1001 + len(REQ)))  # the server's: it took the request
    v = go(0.05, seg(True, 0x10, 1001 + len(REQ), 5001))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset)


def test_an_old_segments_urgent_pointer(tmp_path):
    """(3): a segment ending before s_wup is not discarded here, so its urgent pointer marks
    a byte ahead. Linux drops that segment in tcp_sequence (before tcp_urg): no urgent byte,
    the server reads "evil.example"; here the marked byte leaves the stream ("evl.example")."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x10, 1001, 5001))
    a = b"GET / HTTP/1.1\r\n"
    go(0.03, seg(True, 0x18, 1001, 5001, a))
    go(0.04, seg(False, 0x10, 5001, 1001 + len(a)))     # the server's ACK: rcv_wup 1017
    b = b"Host: evil.example\r\n\r\n"
    target = 1001 + len(a) + b.index(b"i")
    go(0.05, seg(True, 0x38, 1001, 5001, b"G", urg=target - 1001 + 1))   # old: Linux drops it
    v = go(0.06, seg(True, 0x18, 1001 + len(a), 5001, b))
    assert v.action == "drop", (v.action, v.flow.stream.data, v.flow.stream.ambiguous)


def segts(to_server, flags, seq, ack, tsval, tsecr, data=b""):
    """seg() with a timestamps option (NOP NOP TS)."""
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    opts = struct.pack("!BBBBII", 1, 1, 8, 10, tsval & MASK, tsecr & MASK)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 8 << 4, flags, 65535, 0, 0) + opts
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


def test_a_forged_synack_sets_ts_recent(tmp_path):
    """(2) with timestamps: the client forges a second SYN/ACK whose TSecr is far ahead of its
    own clock; the rebuilt receiver takes it as ts_recent, and every client segment after is a
    PAWS discard here (checked before the ACK that would confirm or not). Linux's ts_recent is
    the SYN's TSval: it takes them. No RST, no ACK dance."""
    go = _insp(tmp_path)
    go(0.0, segts(True, 0x02, 1000, 0, 5000, 0))
    go(0.01, segts(False, 0x12, 5000, 1001, 7, 5000))
    go(0.02, segts(False, 0x12, 6000, 1001, 7, 5000 + (1 << 30)))    # forged
    go(0.03, segts(True, 0x10, 1001, 5001, 5001, 7))
    v = go(0.04, segts(True, 0x18, 1001, 5001, 5002, 7, REQ))
    assert v.action == "drop", (v.action, v.flow.tcp.ack_offset, v.flow.tcp.ts_recent)


@pytest.mark.parametrize("live", [
    pytest.param(False, marks=pytest.mark.xfail(strict=True, reason="replay knows no interfaces: a client-forged server RST closes the flow here and a SYN opens a new one (review s19 F6)")),
    True], ids=["replay", "live"])
def test_a_forged_server_rst_then_a_syn_hides_the_rest_of_the_connection(tmp_path, live):
    """Pre-existing (not from bed7c09; the brief's RST / _reused questions). The client forges
    the server's RST at its snd_nxt (it knows it: its own connection): the flow is CLOSED
    here, the server's socket untouched. Its next SYN on the same ports starts a new flow
    here (_reused: CLOSED); Linux answers a SYN on an established socket with a challenge
    ACK and drops it (RFC 5961 4.2). The client's next request on the old connection is
    read here against the new ISN: not read, passed; the server serves it. Live, the forged
    RST entered on the client's side: dropped by the kernel (tests/netns/test_ingress_side_live.py)
    and, were it queued, refused to the flow (flow.wrong_side)."""
    go = _insp(tmp_path, live)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x10, 1001, 5001))
    a = b"GET /x HTTP/1.1\r\nHost: good.example\r\n\r\n"
    go(0.03, seg(True, 0x18, 1001, 5001, a))
    go(0.04, seg(False, 0x10, 5001, 1001 + len(a)))
    forged = go(0.05, seg(False, 0x04, 5001, 0), forged=True)    # forged by the client
    if live:
        assert forged.action == "drop" and forged.flow is None
    go(0.06, seg(True, 0x02, 777777, 0))               # Linux: challenge ACK, dropped
    go(0.07, seg(False, 0x10, 5001, 1001 + len(a)))    # the challenge ACK
    v = go(0.08, seg(True, 0x18, 1001 + len(a), 5001, REQ))
    assert v.action == "drop", (v.action, v.flow.isn)
