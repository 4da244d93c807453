"""Red-team review (names): HTTP requests a server routes by a name the rules did not see.
The name the rules see must be the one the server acts on; where the appliance cannot know
it, it says so (an anomaly) and reads it against the attacker. Each evasion test failed
before its fix (checked against nginx 1.22: it serves the vhost named here)."""
import pytest

from replaykit import Capture, TcpConn, inspect_frames

C, S = "10.0.0.1", "10.0.0.80"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
ALLOW = """
default_action: drop
rules:
  - {id: 1, action: pass, proto: tcp, http_host: good.example}
"""
ADMIN = """
rules:
  - {id: 1, action: drop, proto: tcp, content: [{value: "/admin", startswith: true, buffer: http.uri}]}
"""


@pytest.fixture
def feed(tmp_path):
    """feed(capture, rules text) -> each packet's verdict, and the anomaly names the flow got."""
    def go(cap, rules):
        path = tmp_path / "rules.yaml"
        path.write_text(rules)
        return _feed(cap, str(path))
    return go


_feed = inspect_frames


def client(*segments, answers=()):
    """A connection to port 80: the client's segments, then the server's answers."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c.handshake()
    n = None
    for seg in segments:
        n = c.send(seg)
    for a in answers:
        c.recv(a)
    return cap, n


def passed_early(verdicts):
    """A pass was offloaded (the kernel passes the rest unseen)."""
    return any(v.action == "pass" and v.offload for v in verdicts)


def request(target, host=b"good.example"):
    return b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


# --- 1. an absolute-form target with any RFC 3986 scheme --------------------------------

@pytest.mark.parametrize("scheme", [b"a+b", b"h2", b"x-y.z", b"HTTP"])
@pytest.mark.parametrize("rules", [BLOCK, ALLOW], ids=["blocklist", "allow-list"])
def test_an_absolute_form_target_with_any_scheme_names_the_host(scheme, rules, feed):
    """nginx and Go take any scheme ([A-Za-z][A-Za-z0-9+.-]*) and route the request by its
    authority: "a+b://evil.example/" with Host: good.example got the evil vhost, where the
    appliance read only letter-only schemes and saw good.example."""
    cap, n = client(request(scheme + b"://evil.example/"))
    v, _ = feed(cap, rules)
    assert v[n - 1].action == "drop"
    assert not passed_early(v)


@pytest.mark.parametrize("target", [b"a+b://good.example/", b"http://good.example/x", b"/x"])
def test_a_request_naming_the_allowed_host_passes(target, feed):
    cap, n = client(request(target))
    v, _ = feed(cap, ALLOW)
    assert v[n - 1].action == "pass"


@pytest.mark.parametrize("target", [b"ftp://good.example/admin", b"a+b://good.example/admin", b"http:/admin",
                                    b"HTTP://good.example/x/../admin"])
def test_http_uri_is_the_path_whatever_the_scheme(target, feed):
    """http.uri drops the scheme and authority of any scheme (nginx serves /admin for
    "ftp://good.example/admin"), and "http:/admin" is the path /admin (Go reads it so)."""
    cap, n = client(request(target))
    v, _ = feed(cap, ADMIN)
    assert v[n - 1].action == "drop"


@pytest.mark.parametrize("target", [b"ftp://good.example/public", b"http:/public", b"/public/admin"])
def test_other_paths_pass_the_uri_rule(target, feed):
    cap, n = client(request(target))
    v, _ = feed(cap, ADMIN)
    assert v[n - 1].action == "pass"


# --- 2. a request line that has not ended when detection would give up -------------------

REST = b" HTTP/1.1\r\nHost: evil.example\r\n\r\n"


@pytest.mark.parametrize("segments", [
    [b"QUERY /" + b"a" * 70, REST],                    # the line ends in a later segment
    [b"FOO /" + b"a" * 5000 + REST],                   # one segment, its line end past what detect() reads
], ids=["split-line", "line-past-detection"])
def test_a_request_line_still_open_is_read_to_its_end(segments, feed):
    """A method outside the known list needs its line end (the "HTTP/" word) to be told
    from an FTP or SMTP command; detection gave up on a flow after 64 bytes without one
    (or read only 4,096): the flow named nothing, passed and was offloaded, while nginx
    served the evil vhost for QUERY and FOO."""
    cap, n = client(*segments)
    v, _ = feed(cap, BLOCK)
    assert v[n - 1].action == "drop"
    assert v[n - 1].flow.verdict_rule.id == 1
    assert not passed_early(v)


def test_a_request_line_longer_than_the_window_is_unknown(feed):
    """Past the stream window (8 KiB) the line cannot be read: the name is unknown and read
    against the attacker (a blocklist drops, with an anomaly), never a silent pass."""
    cap, n = client(b"FOO /" + b"a" * 3000, b"a" * 3000, b"a" * 3000, REST)
    v, found = feed(cap, BLOCK)
    assert v[n - 1].action == "drop"
    assert "exception.cap" in found
    assert not passed_early(v)


def test_an_open_request_line_to_the_allowed_host_passes(feed):
    cap, n = client(b"QUERY /" + b"a" * 70, REST.replace(b"evil", b"good"))
    v, _ = feed(cap, ALLOW)
    assert v[n - 1].action == "pass"


def test_an_ended_line_that_is_no_request_still_names_nothing(feed):
    """A command of another protocol ("HELO x", 80 bytes, its line ended) is still no HTTP:
    the flow names nothing and a blocklist passes it."""
    cap, n = client(b"HELO " + b"x" * 80 + b"\r\n")
    v, _ = feed(cap, BLOCK)
    assert v[n - 1].action == "pass"
    assert v[n - 1].flow.app.proto == "failed"


# --- 3. an HTTP/0.9 request (no version, no header block) --------------------------------

FIRST = b"GET / HTTP/1.1\r\nHost: good.example\r\n\r\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nvhost=good\n"


def keep_alive(second, answer=b"vhost=EVIL\n"):
    """An allowed request and its response, then `second`, then the server's answer."""
    cap = Capture()
    c = TcpConn(cap, C, 40000, S, 80)
    c.handshake()
    c.send(FIRST)
    c.recv(ANSWER)
    n = c.send(second)
    c.recv(answer)
    return cap, n


@pytest.mark.parametrize("rules", [BLOCK, ALLOW], ids=["blocklist", "allow-list"])
def test_an_http09_request_on_a_keep_alive_connection_is_judged_at_its_line_end(rules, feed):
    """nginx answers "GET http://evil.example/\\r\\n" at once as HTTP/0.9, the second request
    of a keep-alive connection too; the reader waited for a header block that never came,
    and the server-first guard covers only a connection's first request: it passed."""
    cap, n = keep_alive(b"GET http://evil.example/\r\n")
    v, _ = feed(cap, rules)
    assert v[n - 1].action == "drop"
    assert not passed_early(v)


def test_an_http09_request_first_on_its_connection_is_judged_by_its_name(feed):
    cap, n = client(b"GET http://evil.example/\r\n", answers=[b"vhost=EVIL\n"])
    v, _ = feed(cap, BLOCK)
    assert v[n - 1].action == "drop"
    assert v[n - 1].flow.verdict_rule.id == 1


@pytest.mark.parametrize("rules", [BLOCK, ALLOW], ids=["blocklist", "allow-list"])
def test_an_http09_request_without_an_authority_is_unknown(rules, feed):
    """No authority: the server serves its default vhost, a name the appliance cannot know."""
    cap, n = keep_alive(b"GET /\r\n")
    v, found = feed(cap, rules)
    assert v[n - 1].action == "drop"
    assert "exception.http09" in found


def test_an_http09_request_to_the_allowed_host_passes(feed):
    cap, n = keep_alive(b"GET http://good.example/\r\n", answer=b"vhost=good\n")
    v, found = feed(cap, ALLOW)
    assert v[n - 1].action == "pass" and v[-1].action == "pass"
    assert not [f for f in found if f.startswith("exception.")]


@pytest.mark.parametrize("rules", [BLOCK, ALLOW], ids=["blocklist", "allow-list"])
def test_the_host_lines_python_reads_after_an_http09_line_count_too(rules, feed):
    """Python's http.server reads a header block after an HTTP/0.9 line: its Host lines are
    readings as well (the allow-list's pass needs every one)."""
    cap, n = keep_alive(b"GET http://good.example/\r\nHost: evil.example\r\n\r\n", answer=b"")
    v, _ = feed(cap, rules)
    assert v[n - 1].action == "drop"


BODIES = """
rules:
  - {id: 1, action: drop, proto: tcp, http_host: evil.example}
  - {id: 2, action: alert, proto: tcp, content: [{value: "zzz", buffer: file_data}]}
"""


def test_a_body_after_an_http09_lines_header_block_in_a_later_segment(feed):
    """Review s8: a 0.9 line judged at its end, then (next segment) a header block with a
    Content-Length and no Host: its body was started on a transaction not kept (IndexError,
    internal_error) when a rule reads bodies. `_feed` asserts no internal error."""
    verdicts, found = feed(client(b"GET http://good.example/\r\n", b"Content-Length: 5\r\n\r\nhello")[0], BODIES)
    assert "exception.internal_error" not in found


def other(port, first, answer):
    """A non-HTTP connection to `port`: the client's first segment, the server's answer."""
    cap = Capture()
    c = TcpConn(cap, C, 40001, S, port)
    c.handshake()
    c.send(first)
    c.recv(answer)
    return cap


@pytest.mark.parametrize("port, first", [
    # git://: pkt-line "git-upload-pack /repo\0host=...\0" (a NUL after the target)
    (9418, b"0060git-upload-pack /pub/scm/linux/kernel/git/torvalds/linux.git\0host=git.kernel.org\0\0version=2\0"),
    # a chat line: a token and a space, then words no request target starts with
    (9000, b"hello world, this is a chat message that is longer than sixty-four bytes and has no end"),
    # a raw stream of letters: no space, no line end (no method is 4 KiB long)
    (5001, b"x" * 4096),
], ids=["git", "chat", "raw-letters"])
def test_a_protocol_that_is_not_http_is_not_held_as_an_open_request_line(port, first, feed):
    """Review s8: any first segment of 64+ bytes starting with a token and a space went to
    the HTTP reader; the server's answer then made the names unknown (server_first) and a
    blocklist dropped git clones and chat. A request line's target starts with "/", "*" or
    a scheme/host and ":"."""
    verdicts, found = feed(other(port, first, b"0010version 2\n0000"), BLOCK)
    assert all(v.action == "pass" for v in verdicts), found
    assert "exception.server_first" not in found
