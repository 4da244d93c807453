"""Review s18c F1 end to end: a client whose first SYN's request the server dropped (no ACK
to its SYN/ACK for ~63 s) opens the connection again with another ISN on the same ports; the
flow (NEW, kept by the SYN/ACK retransmissions) keeps the first SYN/ACK's receiver. A window
bound tried then discarded every segment of the real connection as tcp.seq_out_of_window and
the blocked request passed unread (the bound was taken out). Now the second SYN/ACK makes the
handshake ambiguous (review s19), and SYN cookies answering two SYNs likewise."""
import pytest

from test_forged_synack import _insp, seg


def test_a_request_on_the_second_connection_attempt_is_read(tmp_path):
    go = _insp(tmp_path)
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


@pytest.mark.parametrize("answered", ["first", "last"])
def test_a_cookie_completed_behind_either_synack_takes_the_exception_policy(tmp_path, answered):
    """SYN cookies answer two SYNs; the client completes one of them. Which connection the
    server has is unknown (the client's ACK is no evidence: it may have forged the other
    SYN/ACK, review s19), so its ACKs are not read, the stream is ambiguous, and a drop rule
    on a name takes the exception policy (`tcp.handshake_ambiguous` says why). The request
    names another host: without the policy it would pass."""
    go = _insp(tmp_path)
    go(0.0, seg(True, 0x02, 1000, 0))
    go(0.01, seg(False, 0x12, 5000, 1001))
    go(0.02, seg(True, 0x02, 77777, 0))
    go(0.03, seg(False, 0x12, 123456, 77778))
    cseq, sseq = (1001, 5001) if answered == "first" else (77778, 123457)
    go(0.04, seg(True, 0x10, cseq, sseq))
    req = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
    v = go(0.05, seg(True, 0x18, cseq, sseq, req))
    assert v.action == "drop" and v.flow.tcp.ack_offset == -1
