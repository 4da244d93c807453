"""Review rvsynproxy, finding 1: the offset is learnt from whatever ACK the client sends
first, but before any server data Linux accepts exactly one ACK value (snd_una = cookie+1:
an older one is discarded, RFC 5961 5.2 with bytes_acked 0; a newer one is unsent), while
conntrack passes any ACK down to ~66,000 below it (MAXACKWINDOW). A first segment whose ACK
is one short is discarded by the server yet teaches the worker a wrong offset; the real
request (ACK cookie+1) then reads as acknowledging unsent data and is left out."""
from replaykit import Capture
from test_receiver_evasion import EVIL, GOOD, HTTP_DROP, actions, seg
from test_review_evasion import feed
from test_synproxy_flow import A, COOKIE, PROXIED, proxied


def test_a_first_ack_one_short_does_not_teach_the_offset(rules_file):
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE, GOOD)           # ack cookie ISN, not +1: the server discards it
    seg(cap, True, "PA", A + 1, COOKIE + 1, EVIL)       # the request the server reads
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert actions(v)[-1] == "drop", actions(v)


def test_the_decoy_is_not_offloaded(rules_file):
    """Live the decoy's pass is offloaded: the kernel then forwards the real request unseen."""
    cap = Capture()
    proxied(cap)
    seg(cap, True, "PA", A + 1, COOKIE, GOOD)
    v, _ = feed(cap, rules_file(HTTP_DROP), **PROXIED)
    assert not v[-1].offload, v[-1]
