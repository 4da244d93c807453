"""A connection behind the kernel's SYN proxy (`overload.synproxy`) as the queue sees it,
from a netns lab on this kernel (docs/performance.md "SYN proxy"): the client's SYN and
its cookie ACK never cross FORWARD, the proxy's SYN to the server is locally generated;
the first packets queued are the server's SYN/ACK (server ISN) and its ACK, then the
client's segments, which acknowledge the cookie ISN (seqadj translates after FORWARD).
The worker must read the client's request as the server does, split across segments."""
from replaykit import Capture
from test_receiver_evasion import EVIL, HTTP_DROP, actions, seg
from test_review_evasion import feed

from appliance.flow import handshake_seen

A, B = 3511234817, 1134466249          # the client's ISN, the server's (from the lab)
COOKIE = 186261457                      # the ISN the proxy gave the client: its ACKs count from it
PROXIED = {"synproxy_ports": frozenset({80})}


def proxied(cap, cookie=COOKIE, banner=b""):
    seg(cap, False, "SA", B, A + 1)                      # the server's SYN/ACK to the proxy's SYN
    seg(cap, False, "A", B + 1, A + 1)                   # its ACK (to the proxy's ACK)
    if banner:
        seg(cap, False, "PA", B + 1, A + 1, banner)


def test_a_request_split_across_segments_is_read_behind_the_proxy(rules_file):
    """Was: the client's ACK (cookie numbers) read as acknowledging data the server never
    sent (tcp.ack_unsent): both segments discarded, evil.example never named, passed."""
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE + 1, EVIL[:20])
    seg(cap, True, "PA", A + 21, COOKIE + 1, EVIL[20:])
    v, insp = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert actions(v) == ["pass", "pass", "pass", "drop"]
    flow = v[-1].flow
    # the proxy checked the client's cookie: the handshake is complete, not a spoofed SYN's flow
    assert handshake_seen(flow) and flow.tcp.ack_offset == (COOKIE - B) & 0xFFFFFFFF


def test_after_the_offset_is_learnt_an_ack_of_unsent_data_is_still_discarded(rules_file):
    """The offset is applied, not the check dropped: an ACK past what the server sent is
    discarded by Linux and must not name the flow."""
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE + 1, b"GET / HTTP/1.1\r\n")
    seg(cap, True, "PA", A + 17, COOKIE + 1 + 5000, b"Host: evil.example\r\n\r\n")   # acks unsent data
    v, insp = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    # live conntrack (it knows the offset) drops an ACK of unsent data before the queue: one
    # that reaches the worker says the learnt offset is wrong, so the bytes are ambiguous
    assert actions(v)[-1] == "drop" and v[-1].flow.tcp.ack_offset == -1


def test_server_data_before_the_clients_first_ack_leaves_the_offset_unknown(run, rules_file):
    """A server that speaks first (a banner): the client's first ACK may cover any part of
    it, so the offset cannot be known. Said (an anomaly), and no client segment is discarded
    for its ACK: the server's receiver takes the request."""
    cap = Capture()
    proxied(cap, banner=b"220 hello\r\n")
    seg(cap, True, "PA", A + 1, COOKIE + 1 + 4, EVIL)
    seg(cap, True, "PA", A + 1 + len(EVIL), COOKIE + 1 + 11, b"QUIT\r\n")
    r = run(cap, rules_file(HTTP_DROP), **PROXIED)
    # the request after the banner is read (review s14b: a server byte first no longer makes
    # the flow nameless), its bytes ambiguous (the offset unknown): evil.example is dropped
    assert [e["anomaly"]["event"] for e in r.of("anomaly")] == [
        "tcp.synproxy_ack_unknown", "applayer.server_spoke_first", "exception.stream_ambiguous"]
    assert r.flow_action() == "drop"
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    t = v[-1].flow.tcp
    assert t.s_rcv == A + 1 + len(EVIL) + 6 and t.ack_offset == -1


def test_a_port_not_behind_the_proxy_keeps_the_servers_numbers(rules_file):
    """Without the proxy a first-seen SYN/ACK is a mid-handshake pickup: the client's ACKs
    are in the server's numbers, and one past what it sent is discarded as before."""
    cap = Capture()
    ahead = (B + 0x10000000) & 0xFFFFFFFF           # a cookie ahead of the server's ISN: unsent to it
    proxied(cap, ahead)
    seg(cap, True, "PA", A + 1, ahead + 1, EVIL)
    v, _ = feed(cap, rules_file(HTTP_DROP))
    assert actions(v)[-1] == "pass" and v[-1].flow.tcp.ack_offset == 0


def test_a_new_connection_on_the_same_ports_is_a_new_flow(rules_file):
    """Was: behind the proxy the worker never sees the client's SYN, the one packet that told
    it a 5-tuple started over (`_reused`): the second connection's
    packets went to the first one's flow, decided (pass, good.example) -- its request for
    evil.example passed on the old verdict. A SYN/ACK with another ISN is a new connection."""
    from test_receiver_evasion import GOOD
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE + 1, GOOD)
    seg(cap, False, "FA", B + 1, A + 1 + len(GOOD))
    seg(cap, True, "FA", A + 1 + len(GOOD), COOKIE + 2)
    seg(cap, False, "A", B + 2, A + 2 + len(GOOD))
    A2, B2, C2 = A + 100_000, B + 7_777_777, COOKIE + 55_555
    seg(cap, False, "SA", B2, A2 + 1)                   # the same ports, the proxy's next connection
    seg(cap, True, "PA", A2 + 1, C2 + 1, EVIL)
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert actions(v)[-1] == "drop" and v[-1].flow is not v[2].flow
    # a retransmitted SYN/ACK (the same ISN) stays on its connection
    cap = Capture()
    proxied(cap)
    seg(cap, False, "SA", B, A + 1)
    seg(cap, True, "PA", A + 1, COOKIE + 1, EVIL)
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert actions(v)[-1] == "drop" and v[-1].flow is v[0].flow
