"""HTTP Host values servers read their own way, against what nginx 1.22, Apache 2.4 and
Go 1.19 serve for them (the table in docs/rules.md, HTTP names: each server in a network
namespace with vhosts good.example, evil.example and a default, raw requests over a socket).

A drop rule on evil.example must fire wherever a server serves the evil vhost; the log keeps
the name as sent (escaped)."""
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


# Bytes after the name ("evil.example\\"): no server serves evil.example's vhost for them
# with exact names (nginx its default: a '\\' is no path separator to it on Unix, so it stays
# in the name; Apache and Go 400), but nginx's wildcard and regex names match them
# (server_name evil.*; served "evil.example\\", checked live): the name they start with is a
# reading too, read against the attacker. The log keeps the name as sent.
TRAILING_BYTES = {
    b"evil.example\\": "evil.example\\x5c",
    b"evil.example\\:80": "evil.example\\x5c",
    b"evil.example;": "evil.example;",
    b"evil.example x": "evil.example x",
    b"evil.example\x00": "evil.example\\x00",
    b"evil.example]": "evil.example]",            # nginx (server_name evil.*) serves these too (review s11)
    b"evil.example[x": "evil.example[x",
    b"evil.example]:80": "evil.example]",
}


@pytest.mark.parametrize("raw", list(TRAILING_BYTES),
                         ids=["backslash", "backslash-port", "semicolon", "space", "nul", "bracket", "open-bracket",
                              "bracket-port"])
@pytest.mark.parametrize("rules", [NAME, WHOLE], ids=["name", "whole"])
def test_a_host_with_bytes_after_its_name_reads_as_that_name_too(raw, rules, judge):
    v = judge(request(raw), rules)
    assert v.action == "drop" and v.flow.verdict_rule.id == 1
    assert judge(request(raw), "rules: []\n").flow.app.tx.host == TRAILING_BYTES[raw]


@pytest.mark.parametrize("raw", [b"good.example\\", b"good.example;"], ids=["backslash", "semicolon"])
def test_an_allowed_name_with_bytes_after_it_does_not_pass(raw, judge):
    """A pass needs every reading: the name as sent is not the allowed one."""
    allow = "default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, http_host: good.example}\n"
    assert judge(request(b"good.example"), allow).action == "pass"
    assert judge(request(raw), allow).action == "drop"


# No server serves evil.example's vhost for these, and they start with no name of it.
NEVER_EVIL = {b"evil%2eexample": "evil%2eexample", b"good@evil.example": "good@evil.example"}


@pytest.mark.parametrize("raw", list(NEVER_EVIL), ids=["percent", "userinfo"])
def test_a_host_no_server_serves_as_evil_keeps_its_bytes(raw, judge):
    v = judge(request(raw), NAME)
    assert v.action == "pass"
    assert v.flow.app.tx.host == NEVER_EVIL[raw]


def test_the_ordinary_host_shortcut_gives_what_the_regex_gives():
    """_name_start answers ordinary Host values without its regex: for every byte after a
    name, the shortcut's answer is the regex path's (review s11: '[' and ']' were taken
    for ordinary, and 'evil.example]' lost its reading)."""
    from appliance.applayer import http
    for b in range(256):
        raw = b"evil.example" + bytes([b])
        m = http._NAME_START.match(raw)
        rest = raw[m.end():].rstrip(b" \t")
        by_regex = None if not rest or rest[:1] == b":" or rest[0] >= 0x80 else http.normalize_host(m.group(1))
        assert http._name_start(raw) == by_regex, raw


def test_a_raw_utf8_name_is_no_ascii_prefix(judge):
    """nginx takes bytes past ASCII in a Host: 'bücher.example' is that name, not 'b' (an
    allow-list of *.example must not drop it for a reading 'b')."""
    allow = ('default_action: drop\nrules:\n  - {id: 1, action: pass, proto: tcp, content: '
             '[{value: ".example", endswith: true, buffer: http.host}]}\n')
    assert judge(request("bücher.example".encode()), allow).action == "pass"
    assert judge(request("evil.exampleü".encode()), NAME).action == "pass"     # another name
