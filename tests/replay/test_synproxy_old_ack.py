"""Review rvsynproxy, finding 2: behind the proxy the worker never sees the client's SYN, so
a proxied flow's TcpReceiver has wscale None and skips the RFC 5961 5.2 "too old" check --
but the flow counts as a complete handshake. Linux's max_window there is min(max_window,
bytes_acked): 0 before the server sent data, whatever the scale. A segment whose ACK is older
than snd_una passes conntrack (MAXACKWINDOW >= 66,000) and is discarded by the server; the
worker reads it, then takes the real bytes at the same place as a retransmission."""
from replaykit import Capture
from test_receiver_evasion import HTTP_DROP, actions, seg
from test_review_evasion import feed
from test_synproxy_flow import A, COOKIE, PROXIED, proxied

HEAD = b"GET / HTTP/1.1\r\n"


def test_a_too_old_ack_behind_the_proxy_is_discarded(rules_file):
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE + 1, HEAD)                           # the offset, exact
    at = A + 1 + len(HEAD)
    seg(cap, True, "PA", at, COOKIE + 1 - 1000, b"Host: good.example\r\n\r\n")  # server: too old, discarded
    seg(cap, True, "PA", at, COOKIE + 1, b"Host: evil.example\r\n\r\n")         # what the server reads
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert actions(v)[-1] == "drop", actions(v)
