"""HTTP Host values servers read their own way, against what nginx 1.22, Apache 2.4 and
Go 1.19 serve for them (the table in docs/rules.md, HTTP names: each server in a network
namespace with vhosts good.example, evil.example and a default, raw requests over a socket).

A drop rule on evil.example must fire wherever a server serves the evil vhost; a value no
server serves it for keeps the name as sent (escaped), for the log and for rules to name."""
import pytest

from replaykit import Capture, TcpConn
from appliance.decode import decode_frame
from appliance.detect.loader import load_rules
from appliance.inspector import Inspector, Settings

C, S = "10.0.0.1", "10.0.0.80"
NAME = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
# what a Suricata rule "http.host; content:"evil.example"; endswith;" becomes: a content
# program on the http.host buffer (a whole-name content becomes the name key instead)
ENDS = ('rules:\n  - {id: 1, action: drop, proto: tcp, content: '
        '[{value: "evil.example", endswith: true, buffer: http.host}]}\n')
WHOLE = ('rules:\n  - {id: 1, action: drop, proto: tcp, content: '
         '[{value: "evil.example", startswith: true, endswith: true, buffer: http.host}]}\n')
ALLOW = ('default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, content: '
         '[{value: "good.example", startswith: true, endswith: true, buffer: http.host}]}\n')


@pytest.fixture
def judge(tmp_path):
    """judge(request bytes, rules text) -> the request's verdict and its flow."""
    def go(data, rules):
        path = tmp_path / "rules.yaml"
        path.write_text(rules)
        insp = Inspector(load_rules(str(path)), Settings())
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, 80)
        c.handshake()
        n = c.send(data)
        verdicts = [insp.process(decode_frame(buf, cap.linktype, ts)) for ts, buf in cap.frames]
        assert insp.counters.internal_errors == 0
        return verdicts[n - 1]
    return go


def request(host, target=b"/x"):
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


# nginx and Apache serve evil.example's vhost for each of these (Go its default)
TRAILING_DOT = [request(b"evil.example."), request(b"evil.example.:80"), request(b"EVIL.example."),
                request(b"good.example", b"http://evil.example./x")]


@pytest.mark.parametrize("data", TRAILING_DOT, ids=["dot", "dot-port", "upper-dot", "absolute-dot"])
@pytest.mark.parametrize("rules", [NAME, ENDS, WHOLE], ids=["name", "endswith", "whole"])
def test_a_trailing_dot_is_the_vhost_without_it(data, rules, judge):
    """nginx (ngx_http_validate_host) and Apache drop a Host's trailing dot before picking
    the vhost; the http.host buffer kept it, so a content rule on it ("evil.example",
    endswith) passed what they served as evil.example."""
    v = judge(data, rules)
    assert v.action == "drop" and v.flow.verdict_rule.id == 1


def test_an_allowed_name_with_a_trailing_dot_still_needs_every_reading(judge):
    """A pass rule on http.host needs every reading: "good.example." reads as sent too,
    which the exact content does not fit (read against the attacker: Go serves its default
    vhost for it)."""
    assert judge(request(b"good.example"), ALLOW).action == "pass"
    assert judge(request(b"good.example."), ALLOW).action == "drop"


# Values no server serves evil.example's vhost for: nginx its default (a '\' is no path
# separator on Unix, so ngx_http_validate_host keeps it), Apache and Go 400.
NEVER_EVIL = {
    b"evil.example\\": "evil.example\\x5c",
    b"evil.example\\:80": "evil.example\\x5c",
    b"evil%2eexample": "evil%2eexample",
    b"good@evil.example": "good@evil.example",
    b"evil.example\x00": "evil.example\\x00",
}


@pytest.mark.parametrize("raw", list(NEVER_EVIL), ids=["backslash", "backslash-port", "percent", "userinfo", "nul"])
def test_a_host_no_server_serves_as_evil_keeps_its_bytes(raw, judge):
    v = judge(request(raw), NAME)
    assert v.action == "pass"
    assert v.flow.app.tx.host == NEVER_EVIL[raw]
