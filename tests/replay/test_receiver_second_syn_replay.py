"""Review s18c F1 end to end: a client whose first SYN's request the server dropped (no ACK
to its SYN/ACK for ~63 s) opens the connection again with another ISN on the same ports; the
flow (NEW, kept by the SYN/ACK retransmissions) keeps the first SYN/ACK's receiver. With the
window bound tried this session every segment of the real connection was discarded as
tcp.seq_out_of_window and the blocked request passed unread (the bound was taken out)."""
from appliance.decode import decode_l3
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

import struct

MASK = 0xFFFFFFFF
C, S = b"\n\0\0\1", b"\n\0\0\x50"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"


def seg(to_server, flags, seq, ack, data=b""):
    src, dst, sp, dp = (C, S, 40000, 80) if to_server else (S, C, 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & MASK, ack & MASK, 5 << 4, flags, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return ip + tcp + data


def test_a_request_on_the_second_connection_attempt_is_read(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False))

    def go(when, raw):
        return insp.process(decode_l3(raw, 1.0 + when))
    go(0.0, seg(True, 0x02, 1000, 0))
    for when in (0.01, 1, 3, 7, 15, 31):            # Linux's SYN/ACK retransmissions, then it gives up
        go(when, seg(False, 0x12, 5000, 1001))
    isn = 1000 + (1 << 20)
    go(64.0, seg(True, 0x02, isn, 0))
    go(64.01, seg(False, 0x12, 90000, isn + 1))
    go(64.02, seg(True, 0x10, isn + 1, 90001))
    req = b"GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n"
    v = go(64.03, seg(True, 0x18, isn + 1, 90001, req))
    assert v.action == "drop"


def test_a_cookie_completed_behind_another_synack_takes_the_exception_policy(tmp_path):
    """SYN cookies answer two SYNs; the client completes the first while the receiver was
    rebuilt from the second: which connection the server has is unknown, so its ACKs are
    not read, the stream is ambiguous, and a drop rule on a name takes the exception policy
    (`tcp.handshake_ambiguous` says why). The client's request names another host: without
    the policy it would pass."""
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False))

    def go(when, raw):
        return insp.process(decode_l3(raw, 1.0 + when))
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x02, 77777, 0))
    go(0.03, seg(False, 0x12, 123456, 77778))
    go(0.04, seg(True, 0x10, 1001, 5001))
    req = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
    v = go(0.05, seg(True, 0x18, 1001, 5001, req))
    assert v.action == "drop" and v.flow.tcp.ack_offset == -1


def test_a_cookie_completed_behind_the_last_synack_takes_the_exception_policy_too(tmp_path):
    """The client's ACK answering the last SYN/ACK is no evidence either (it may have
    forged that one and the server holds the first: review s19)."""
    path = tmp_path / "r.yaml"
    path.write_text(BLOCK)
    insp = Inspector(load_rules(str(path)), Settings(verify_checksums=False))

    def go(when, raw):
        return insp.process(decode_l3(raw, 1.0 + when))
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x02, 77777, 0))
    go(0.03, seg(False, 0x12, 123456, 77778))
    go(0.04, seg(True, 0x10, 77778, 123457))
    req = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
    v = go(0.05, seg(True, 0x18, 77778, 123457, req))
    assert v.action == "drop" and v.flow.tcp.ack_offset == -1
