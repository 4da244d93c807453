"""The compiled HTTP readers read every stream as the pure module does (the reference).

The compiled twin reads a plain header line in one C pass (http._request_header,
_response_header) and a response's common framing without body.framing (_one_length); the
rest goes to the reference code. Random and mutated requests and responses (case variants
of the names, blanks around them and ':', CR, LF, NUL, TAB, bytes past 0x7f, folded lines,
duplicate and framing headers, long lines), fed in pieces as a stream delivers them (every
byte alone, random cuts, a small window that fills), go to the reader the package runs
(compiled when built) and to the pure source's own: every observable equal (what each
feed consumed, the requests and answers, the status, the reader's state, any exception)."""
import random
import sys
import types
from pathlib import Path

import pytest

from appliance import compiled
from appliance.applayer import body, http

SOURCE = Path(http.__file__).with_name("http.py")


def _reference():
    """The pure module from its source, without the line that swaps in the compiled twin."""
    text = SOURCE.read_text()
    cut = text.rindex("\nfrom ..compiled import use_compiled")
    mod = types.ModuleType("appliance.applayer._http_reference")
    mod.__file__ = str(SOURCE)
    sys.modules[mod.__name__] = mod          # dataclasses look the module up
    try:
        exec(compile(text[:cut], str(SOURCE), "exec"), mod.__dict__)
    finally:
        del sys.modules[mod.__name__]
    assert not mod.COMPILED
    return mod


REF = _reference()

pytestmark = pytest.mark.skipif("appliance.applayer.http" not in compiled.active,
                                reason="the compiled http twin is not built")

NAMES = [b"Host", b"HOST", b"hOsT", b" Host", b"Host ", b"Host\t", b"\tHost", b"Ho st", b"Hostx",
         b"User-Agent", b"USER-AGENT", b"user-agent ", b"User-Agen", b"Connection", b"CONNECTION",
         b"Content-Length", b"content-length ", b"Transfer-Encoding", b"TRANSFER-encoding",
         b"Content-Encoding", b"Content-Type", b"content-TYPE", b"Location", b"LOCATION ",
         b"X-Foo", b"Accept", b"", b"X\x80y", b"X\x00", b"K\x7f", b"[", b"Host\xc5\xbf"]
VALUES = [b"a.example", b"A.Example:80", b" evil.example ", b"\tb.example\t", b"[::1]:8080", b"x:y:z",
          b"close", b"keep-alive", b"chunked", b"gzip, chunked", b"5", b"0", b" 12 ", b"1,1", b"text/html; q=1",
          b"text/plain", b"/redirect", b"curl/8.0", b"Mozilla/5.0 (X11)", b"", b" ", b"\x00", b"\x80\xff",
          b"a\rb", b"a\\b", b"evil.example;x", b"a" * 70, b"999999999999999999", b"1234567890123456789"]
ODD = b"\r\n\x00\t :\x80\xff\x0b\x1f\xa0A"


def _header_line(rng):
    name = rng.choice(NAMES)
    sep = rng.choice([b":", b":", b":", b" :", b"", b"::"])
    line = name + sep + rng.choice([b"", b" ", b"\t", b"  "]) + rng.choice(VALUES)
    if rng.random() < 0.1:
        line = rng.choice([b" ", b"\t"]) + line          # obs-fold
    return line


def _eol(rng):
    return rng.choice([b"\r\n", b"\r\n", b"\n", b"\r\r\n"])


def _mutate(rng, data):
    data = bytearray(data)
    for _ in range(rng.randrange(0, 4)):
        i = rng.randrange(len(data) + 1)
        op = rng.randrange(3)
        if op == 0:
            data[i:i] = bytes([rng.choice(ODD)])
        elif op == 1 and i < len(data):
            data[i] = rng.choice(ODD)
        elif i < len(data):
            del data[i]
    return bytes(data)


def _request(rng):
    out = []
    for _ in range(rng.randrange(1, 3)):
        method = rng.choice([b"GET", b"POST", b"HEAD", b"get", b"PRI", b"FOO", b"CONNECT"])
        target = rng.choice([b"/", b"/a?b=1", b"http://c.example:81/x", b"d.example:443", b"*", b"/x y"])
        version = rng.choice([b" HTTP/1.1", b" HTTP/1.0", b"", b" HTTP/2.0"])
        head = method + rng.choice([b" ", b"  ", b"\t"]) + target + version + _eol(rng)
        lines = [_header_line(rng) for _ in range(rng.randrange(0, 7))]
        block = head + b"".join(line + _eol(rng) for line in lines) + _eol(rng)
        if rng.random() < 0.3:
            block += b"hello" * rng.randrange(3)
        out.append(block)
    data = b"".join(out)
    return _mutate(rng, data) if rng.random() < 0.5 else data


def _response(rng):
    out = []
    for _ in range(rng.randrange(1, 3)):
        status = rng.choice([b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 100 Continue",
                             b"HTTP/1.1 204", b"HTTP/1.1 301 Moved", b"HTTP/1.1 101 Switching", b"HTTP/9 x"])
        lines = [_header_line(rng) for _ in range(rng.randrange(0, 7))]
        block = status + _eol(rng) + b"".join(line + _eol(rng) for line in lines) + _eol(rng)
        if rng.random() < 0.5:
            block += rng.choice([b"hello", b"5\r\nhello\r\n0\r\n\r\n", b"0\r\n\r\n", b"x" * 40])
        out.append(block)
    data = b"".join(out)
    return _mutate(rng, data) if rng.random() < 0.5 else data


def _cuts(rng, n):
    yield [n]                                       # all at once
    yield [1] * n                                   # every byte alone
    sizes = []
    while sum(sizes) < n:
        sizes.append(rng.randrange(1, 20))
    yield sizes


TX_FIELDS = ("method", "uri", "protocol", "host", "user_agent", "hosts", "user_agents", "status",
             "response_protocol", "content_type", "redirect", "length")
REQ_FIELDS = ("method", "uri", "protocol", "hosts", "agent", "agents", "framing", "last", "bytes", "odd",
              "conn", "plain", "early")


def _tx(t):
    return tuple(getattr(t, f) for f in TX_FIELDS) + (getattr(t, "request_body", None) is None,)


def _request_state(r):
    req = None if r.req is None else tuple(getattr(r.req, f) for f in REQ_FIELDS)
    return (r.phase, r.left, r.skip_line, r.count, r.closing, r.after_body, r.nested, r.alt is None,
            None if r.alt_buf is None else bytes(r.alt_buf), req, len(r.grown))


def _response_state(r):
    return (r.phase, r.left, r.framing, r.ctype, r.location, r.skip_line, r.block, r.heads, r.blind,
            list(r.found), len(r.grown), None if r.req is None else _tx(r.req))


def _bodies(mod, on):
    if not on:
        return None
    limits = body.Limits()
    return limits, body.FlowBudget(limits)


def _stream(data, sizes, window, step):
    """Feed `data` in pieces through a window as the stream holds it; the trace of each feed."""
    trace, buf, pos = [], bytearray(), 0
    for size in sizes:
        take = data[pos:pos + min(size, window - len(buf))]
        pos += len(take)
        buf += take
        for _ in range(3):                   # a full window fed again after a consume
            try:
                used, items, status = step(bytes(buf), len(buf) >= window)
            except Exception as e:               # noqa: BLE001 -- an exception is an observable too
                trace.append(("raised", type(e).__name__, str(e)))
                return trace
            del buf[:used]
            trace.append((used, [_tx(t) for t in items], status))
            if status is not None:
                return trace
            if not used or len(buf) < window:
                break
    return trace


def _read_requests(mod, data, sizes, window, bodies):
    reader = mod.RequestReader(_bodies(mod, bodies))
    trace = _stream(data, sizes, window, lambda buf, full: reader.feed(buf, full))
    return trace, _request_state(reader)


def _read_responses(mod, data, sizes, window, bodies, methods):
    reader = mod.ResponseReader(_bodies(mod, bodies))
    waiting = [mod.HttpRequest(m, "/", "HTTP/1.1", None, None) for m in methods]

    def step(buf, full):
        used, done, status = reader.feed(buf, full, waiting)
        return used, done, status
    trace = _stream(data, sizes, window, step)
    return trace, _response_state(reader), len(waiting)


def _cases(make, seed, count):
    rng = random.Random(seed)
    for _ in range(count):
        data = make(rng)
        window = rng.choice([len(data) + 1, 64, 200, 4096])
        bodies = rng.random() < 0.3
        for sizes in _cuts(rng, len(data)):
            yield rng, data, sizes, window, bodies


def test_request_reader_reads_as_the_reference():
    assert http.RequestReader is not REF.RequestReader
    for rng, data, sizes, window, bodies in _cases(_request, 1501, 1500):
        got = _read_requests(http, data, sizes, window, bodies)
        want = _read_requests(REF, data, sizes, window, bodies)
        assert got == want, (data, sizes, window, bodies)


def test_response_reader_reads_as_the_reference():
    for rng, data, sizes, window, bodies in _cases(_response, 1502, 1500):
        methods = [rng.choice(["GET", "HEAD"]) for _ in range(3)]
        got = _read_responses(http, data, sizes, window, bodies, methods)
        want = _read_responses(REF, data, sizes, window, bodies, methods)
        assert got == want, (data, sizes, window, bodies)


def test_plain_header_lines_alone():
    """Every name and value pairing, each line alone in a block: the C pass's cases one by one."""
    for name in NAMES:
        for sep in (b":", b" :", b"", b"::"):
            for value in VALUES:
                line = name + sep + value
                req = b"GET / HTTP/1.1\r\n" + line + b"\r\nHost: z.example\r\n\r\n"
                assert _read_requests(http, req, [len(req)], len(req) + 1, False) == \
                    _read_requests(REF, req, [len(req)], len(req) + 1, False), line
                resp = b"HTTP/1.1 200 OK\r\n" + line + b"\r\nContent-Length: 2\r\n\r\nok"
                assert _read_responses(http, resp, [len(resp)], len(resp) + 1, False, ["GET"]) == \
                    _read_responses(REF, resp, [len(resp)], len(resp) + 1, False, ["GET"]), line
