"""Adversarial review of buffer inspection (issue 10, rev2): each test is a finding that
failed before its fix -- the rule's other conditions on a content program, the work one
payload can cost a rule (pcre, content backtracking), and the URI spellings a server maps
onto the path a rule names."""
from replaykit import Capture, TcpConn

HTTP = "198.51.100.80"


def tcp_capture(*payloads, dport=80):
    """One connection per payload (client -> server), answered."""
    cap = Capture()
    for i, p in enumerate(payloads):
        c = TcpConn(cap, "10.0.0.1", 42000 + i, HTTP, dport)
        c.handshake()
        c.send(p)
        c.recv(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return cap


def test_flowbits_isset_holds_for_a_rule_with_a_relative_content(run, rules_file):
    """A content program (distance/within, negation, pcre ...) is one of the rule's
    conditions, not all of them: flowbits isset (and detection_filter) still apply."""
    cap = tcp_capture(b"GET /a HTTP/1.1\r\n\r\n")
    rules = rules_file("rules:\n  - {id: 1, action: alert, proto: tcp, flowbits: [{isset: never}], "
                       "content: [{value: GET}, {value: /a, distance: 1}]}\n"
                       "  - {id: 2, action: alert, proto: tcp, flowbits: [{isset: never}], content: GET}\n")
    r = run(cap, rules)
    assert r.alerts(1) == [] and r.alerts(2) == []
