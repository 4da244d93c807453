"""A keep-alive HTTP connection's answered requests are not held for its life.

The server's side (applayer/server.py) notes each request whose status it read, or can no
longer read, for the rules on http.stat_code; Inspector._settle takes them on the packet
that settled them. Taken whatever the rules and logs: with no status rule loaded they were
never taken, and a keep-alive connection held every answered request (up to ~38,000 in
the server's 1 MiB, ~20 MB) while the http log or a file_data rule kept its server side read.
"""
from replaykit import Capture, TcpConn

from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

N = 150                   # exchanges: more than the 64 that may wait unanswered (server.MAX_WAITING)
REQ = b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"
RESP = b"HTTP/1.1 204 No Content\r\n\r\n"
BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

NAME_RULE = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
STATUS_RULE = "rules:\n  - {id: 2, action: alert, proto: tcp, content: {value: '403', buffer: http.stat_code}}\n"
BODY_RULE = "rules:\n  - {id: 3, action: alert, proto: tcp, content: [{value: EICAR, buffer: file_data}]}\n"


def keep_alive(ahead=False):
    """One connection, never closed: N requests each answered, then (ahead) N more sent
    before any answer (past MAX_WAITING the oldest are given up: `unread`), then answered."""
    cap = Capture()
    c = TcpConn(cap, "10.0.0.1", 41000, "198.51.100.80", 80)
    c.handshake()
    for i in range(N):
        c.send(REQ)
        c.recv(RESP if i % 2 else BODY)
    if ahead:
        for _ in range(N):
            c.send(REQ)
        for _ in range(N):
            c.recv(RESP)
    return cap


def most_held(cap, rules_text, tmp_path, **settings):
    """The most transactions the server side held for the status rules, after any packet."""
    path = tmp_path / "r.yaml"
    path.write_text(rules_text)
    insp = Inspector(load_rules([str(path)]), Settings(**settings))
    most, servers = 0, 0
    for ts, buf in cap.frames:
        v = insp.process(decode_frame(buf, cap.linktype, ts))
        server = v.flow.app.server if v.flow is not None and v.flow.app is not None else None
        if server is not None:
            servers += 1
            most = max(most, len(server.statused) + len(server.unread))
    assert servers > N            # the server's side was read on (nearly) every packet
    return most


def test_http_log_without_status_rules(tmp_path):
    # the default EVE types (http log on), no rule on the status: the reported case
    assert most_held(keep_alive(), NAME_RULE, tmp_path) == 0
    assert most_held(keep_alive(ahead=True), NAME_RULE, tmp_path) == 0


def test_file_data_rule_without_http_log(tmp_path):
    # bodies read for a file_data rule, the http log off
    assert most_held(keep_alive(ahead=True), BODY_RULE, tmp_path, eve_types=("alert", "flow")) == 0


def test_status_rule(tmp_path):
    assert most_held(keep_alive(ahead=True), STATUS_RULE, tmp_path) == 0
