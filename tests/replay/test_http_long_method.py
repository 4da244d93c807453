"""A method token whose space comes in a later segment (left review item 1).

nginx 1.22 serves the vhost a Host names for an uppercase method of up to ~8 KiB, Go's
net/http for any token method up to its 1 MiB + 4 KiB header limit (dev/http_host_servers.py's
servers, checked with methods of 64 bytes to 1 MiB). A first segment of 64+ token bytes and
no space was read as not-HTTP, so "X"*100 then " /x HTTP/1.1 Host: evil.example" passed a
Host blocklist and was offloaded. Now the flow stays pending while its bytes are a method
still arriving; a raw stream of letters (the HA lab's transfers) is let go at its first
byte no method holds, or past what Go reads."""
import pytest

from replaykit import Capture, TcpConn, inspect_frames
from appliance.applayer.http import LONGEST_METHOD

C, S = "10.0.0.1", "10.0.0.80"
BLOCK = "rules:\n  - {id: 1, action: drop, proto: tcp, http_host: evil.example}\n"
REST = b" /x HTTP/1.1\r\nHost: evil.example\r\n\r\n"
GET = b"GET" + REST


@pytest.fixture
def feed(tmp_path):
    """feed(client segments, (server bytes,) ...) -> each packet's verdict and the anomaly
    names, under BLOCK."""
    path = tmp_path / "rules.yaml"
    path.write_text(BLOCK)

    def go(*segments, port=80):
        cap = Capture()
        c = TcpConn(cap, C, 40000, S, port)
        c.handshake()
        for seg in segments:
            if isinstance(seg, tuple):
                c.recv(seg[0])
            else:
                c.send(seg)
        return inspect_frames(cap, str(path))
    return go


def offloaded_pass(verdicts):
    return any(v.action == "pass" and v.offload for v in verdicts)


@pytest.mark.parametrize("method", [b"X" * 64, b"X" * 100, b"QUERY" * 200, b"x" * 4000],
                         ids=["64", "100", "1000", "lower-4000"])
def test_a_method_split_before_its_space_is_read(method, feed):
    """nginx serves evil.example for an uppercase method of 64-8000 bytes, Go for any."""
    v, _ = feed(method, REST)
    assert v[-1].action == "drop" and v[-1].flow.verdict_rule.id == 1
    assert not offloaded_pass(v)


@pytest.mark.parametrize("segments", [[3000] * 3, [4096, 4096, 1000], [4096] * 40],
                         ids=["window-cut", "window-filled", "160k"])
def test_a_method_longer_than_the_window_is_a_cap_hit(segments, feed):
    """Go serves a 9,000-byte (or 160 KiB) method: its request line is longer than the
    stream window, so its Host cannot be read: unknown, read against the attacker (a
    blocklist drops)."""
    v, found = feed(*[b"X" * n for n in segments], REST)
    assert v[-1].action == "drop" and "exception.cap" in found
    assert not offloaded_pass(v)


def test_a_raw_stream_of_letters_is_let_go_at_a_byte_no_method_holds(feed):
    """Letters past the window, then a newline (a line no server reads as a request): passed
    for good, never dropped, no names unknown."""
    v, found = feed(*[b"x" * 4096] * 3, b"x\n", *[b"x" * 4096] * 2, (b"",))   # (the server's ACK: final)
    assert all(x.action == "pass" for x in v), found
    assert "exception.cap" not in found
    assert v[-1].offload


def test_a_raw_stream_of_letters_is_let_go_past_what_go_reads(feed):
    """The HA lab's transfers (b"x" * 4096 for seconds, no space, no line end): pending
    while they could be a method, passed for good past Go's limit, never dropped."""
    n = LONGEST_METHOD // 4096 + 2
    v, found = feed(*[b"x" * 4096] * n, (b"",))   # (the server's ACK: final)
    assert all(x.action == "pass" for x in v), found
    assert "exception.cap" not in found
    assert v[-1].offload
    assert not any(x.offload for x in v[:LONGEST_METHOD // 4096])   # pending until then


@pytest.mark.parametrize("stream", [b"x" * 4096, b"0123456789abcdef" * 256], ids=["letters", "hex"])
def test_a_raw_stream_past_the_window_its_server_answers_is_not_dropped(stream, feed):
    """A token run past the window is a method only until its server speaks: no HTTP server
    answers before its request (review s12: dropped as server_first, names unknown)."""
    v, found = feed(stream, stream, stream, (b"ok\n",), stream)
    assert all(x.action == "pass" for x in v), found
    assert "exception.server_first" not in found


@pytest.mark.parametrize("port", [53, 5353])
@pytest.mark.parametrize("segments", [(b"FOOBAR /x", REST[3:]), (b"X" * 30, REST), (b"\r\n" * 3, GET),
                                      (b"\n" * 6, GET), (b" " * 6, GET), (b"\t" * 6, GET),
                                      (b"  \rGE", GET[2:]), (b"  \r " + GET,)],
                         ids=["line-split", "method-split", "crlf", "lf", "spaces", "tabs", "blanks-cr-split",
                              "blanks-cr-whole"])
def test_a_request_split_on_a_dns_port_is_ambiguous(segments, port, feed):
    """A TCP DNS server skips a first frame of any bytes, an HTTP server on the port reads the
    request line on: the bytes read two ways, so names are unknown (review s12: claimed as DNS,
    the Host went unread and the request passed)."""
    v, found = feed(*segments, port=port)
    assert v[-1].action == "drop" and "exception.stream_ambiguous" in found
    assert not offloaded_pass(v)


def test_the_compiled_twins_write_the_same_eve(tmp_path):
    """http and state compiled against the pure reference on these streams (the method split,
    the cap hit past the window, raw letters let go at a newline and past Go's limit)."""
    import importlib.util
    from appliance.compiled import twin_name
    from test_compiled_equivalence import assert_identical, replay_both
    if importlib.util.find_spec(twin_name("appliance.applayer.http")) is None:
        pytest.skip("compiled hot path not built")
    cap = Capture()
    for port, segments in enumerate([[b"X" * 100, REST], [b"X" * 3000] * 3 + [REST],
                                     [b"x" * 4096] * 3 + [b"x\n"], [b"x" * 4096] * (LONGEST_METHOD // 4096 + 2)]):
        c = TcpConn(cap, C, 41000 + port, S, 80)
        c.handshake()
        for seg in segments:
            c.send(seg)
    pcap = cap.write(tmp_path / "methods.pcap")
    rules = tmp_path / "rules.yaml"
    rules.write_text(BLOCK)
    pure, compiled = replay_both(tmp_path, [pcap], "--rules", rules)
    assert_identical(pure, compiled)
    assert b"exception.cap" in pure[1]          # the window-long method, read against the attacker
