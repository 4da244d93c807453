"""Review s18: hostile inputs through the compiled StreamStart/ClientStream/ServerSide, compared
with the pure module (long floods past MAX_PENDING, MAX_CUTS urgent marks, offsets anywhere in
the 32-bit space and at start +- 2**31, huge/negative consume, SYN data, bare FINs, RSTs)."""
import random

import pytest

from twins import in_pure_python
from test_stream_twins import _segment, _start_fields
from appliance import stream  # noqa: F401
from appliance.applayer import server  # noqa: F401
from appliance.compiled import active

WRAP = 0xFFFFFFFF


def _safe(fn, *a, **k):
    try:
        return fn(*a, **k)
    except Exception as e:               # an exception is an answer too: both modes must raise it
        return f"{type(e).__name__}"


def hostile_start_steps(seed, n):
    from appliance.stream import StreamStart
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        limit = rng.choice((0, 1, 2, 4, 64, 8192, 8192))
        s = StreamStart(limit)
        isn = rng.choice((0, WRAP, 0x7FFFFFFF, 0x80000000, rng.getrandbits(32)))
        text = bytes(rng.choice(b"ab") for _ in range(300))
        steps = []
        if rng.random() < 0.7:
            steps.append(_safe(s.add, isn, b"", True))
        if rng.random() < 0.4:           # a flood of 1-byte segments behind a hole: past MAX_PENDING
            offs = list(range(1, rng.choice((70, 140, 300)), 2))
            rng.shuffle(offs)
            for off in offs:
                steps.append(_safe(s.add, (isn + 1 + off) & WRAP, text[off % 300:off % 300 + 1]))
            steps.append(_start_fields(s))
        for _ in range(rng.randrange(50, 400)):
            op = rng.random()
            if op < 0.55:                # 1-byte out-of-order flood, wide offsets
                off = rng.randrange(-3, 260) if rng.random() < 0.85 else rng.choice((0x7FFFFFFF, 0x80000000,
                                  -0x80000000, 0x7FFFFFFE, rng.getrandbits(32), -1))
                ln = rng.choice((1, 1, 1, 2, 5, 30, 0))
                data = text[max(off, 0) % 300:max(off, 0) % 300 + ln] if 0 <= off < 300 else b"Z" * ln
                steps.append(_safe(s.add, (isn + 1 + off) & WRAP, data, rng.random() < 0.03,
                                   rng.random() < 0.05))
            elif op < 0.7:
                steps.append(_safe(s.consume, rng.choice((0, 1, 3, -5, 10**6, 2**63, 2**70, -2**70))))
            else:
                steps.append(_safe(s.mark_urgent, (isn + 1 + rng.randrange(0, 250)) & WRAP,
                                   rng.choice((0, 1, 2, 65535))))
            steps.append(_start_fields(s))
        out.append(steps)
    return out


def hostile_server_steps(seed, n):
    from appliance.packet import ACK, FIN, PSH, RST
    from appliance.applayer.server import ServerSide
    from appliance.applayer import http

    class F:                             # a flow as ServerSide reads it
        tcp = None
    rng = random.Random(seed)
    out = []
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    for _ in range(n):
        proto = rng.choice(("http", "dns", "tls"))
        side = ServerSide(proto, F(), rng.choice((8, 64, 8192)), None)
        sisn = rng.choice((WRAP, 0x7FFFFFFF, rng.getrandbits(32)))
        steps = []
        pos = 0
        body = (resp * 400 if proto == "http" else bytes(rng.getrandbits(8) for _ in range(20000)))
        for _ in range(rng.randrange(5, 120)):
            if rng.random() < 0.2:
                req = http.HttpRequest("GET", "/", "HTTP/1.1", "h", None)
                steps.append(_safe(lambda: len(side.wait([req]))))
                steps.append([getattr(t, 'status', None) for t in side.waiting])
                continue
            r = rng.random()
            off = (pos if r < 0.6 else rng.randrange(0, pos + 100) if r < 0.9
                   else rng.choice((0x7FFFFFFF, 0x80000000, rng.getrandbits(32))))
            flags = rng.choice((PSH | ACK, PSH | ACK, PSH | ACK, ACK, ACK | FIN, ACK | RST))
            data = body[off:off + rng.randrange(0, 300)] if off < len(body) else b"Z" * rng.randrange(0, 30)
            if off == pos:
                pos += len(data)
            pkt = _segment(flags, sisn + 1 + off, 1, data, to_server=False)
            r = _safe(side.feed, pkt)
            steps.append([r if isinstance(r, str) else len(r), side.done, side.read, len(side.waiting),
                          None if side.bytes is None else _start_fields(side.bytes)])
        out.append(steps)
    return out


def test_stream_start_hostile_twins():
    if "appliance.stream" not in active:
        pytest.skip("stream.py is not compiled here")
    assert hostile_start_steps(3, 300) == in_pure_python("test_stream_server_twins_hostile", "hostile_start_steps", 3, 300)


def test_server_side_hostile_twins():
    if "appliance.applayer.server" not in active:
        pytest.skip("server.py is not compiled here")
    assert hostile_server_steps(5, 200) == in_pure_python("test_stream_server_twins_hostile", "hostile_server_steps", 5, 200)
