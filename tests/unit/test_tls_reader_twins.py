"""The TLS readers as extension types (tls.py: HelloReader, _HelloParser, ServerHelloReader;
the compiled twin keeps their state in C struct fields, their offsets and lengths in C ints
and their inner steps as C methods): every observable of the pure module and the compiled
twin is the same on random and mutated client and server streams. ClientHellos with server
names (two in one list, two extensions, escapes, cut past what is held), ALPN, versions,
groups, long cipher lists, extensions that overrun their block; records of any size, empty
ones, change-cipher-spec, alerts, early data, a second ClientHello; the stream split into
segments anywhere and fed as a stream that consumes; every byte value written anywhere."""
import json
import random
import struct

from twins import in_pure_python
from appliance.applayer import CAP, MORE, NOT, tls
from appliance.compiled import active


def _ext(etype, body):
    return struct.pack("!HH", etype, len(body)) + body


def _sni(rng):
    names = []
    for _ in range(rng.choice((1, 1, 1, 2, 0))):
        pick = rng.random()
        if pick < 0.6:
            name = b".".join(bytes(rng.choice(b"abcz09-") for _ in range(rng.randrange(1, 12)))
                             for _ in range(rng.randrange(1, 4)))
        elif pick < 0.8:
            name = bytes(rng.choice(b"a.\\\x00\x7f\x80\xff ") for _ in range(rng.randrange(0, 20)))
        else:
            name = b"x" * rng.choice((255, 300, 1100))
        names.append(struct.pack("!BH", rng.choice((0, 0, 0, 1)), len(name)) + name)
    body = b"".join(names)
    return _ext(0, struct.pack("!H", max(0, len(body) + rng.choice((0, 0, 0, 1, -1)))) + body)


def _hello_body(rng):
    ciphers = [rng.choice((0x1301, 0x1302, 0xC02F, 0x0A0A, 0x009C)) for _ in range(rng.choice((1, 3, 17, 600)))]
    exts = []
    for _ in range(rng.randrange(0, 9)):
        pick = rng.randrange(10)
        if pick < 3:
            exts.append(_sni(rng))
        elif pick == 3:
            protos = [bytes(rng.choice(b"h2http/1.\x00\xff") for _ in range(rng.randrange(0, 9))) for _ in range(3)]
            body = b"".join(bytes([len(p)]) + p for p in protos)
            exts.append(_ext(16, struct.pack("!H", len(body)) + body))
        elif pick == 4:
            vs = [rng.choice((0x0304, 0x0303, 0x7A7A, 0x7F17, 0x0301)) for _ in range(rng.randrange(0, 5))]
            exts.append(_ext(43, bytes([2 * len(vs)]) + b"".join(struct.pack("!H", v) for v in vs)))
        elif pick == 5:
            gs = [rng.choice((29, 23, 0x2A2A)) for _ in range(rng.randrange(0, 6))]
            exts.append(_ext(rng.choice((10, 13)), struct.pack("!H", 2 * len(gs)) + b"".join(struct.pack("!H", g) for g in gs)))
        elif pick == 6:
            exts.append(_ext(11, b"\x01\x00"))
        elif pick == 7:
            exts.append(_ext(42, b""))                               # early data
        else:
            exts.append(_ext(rng.choice((21, 0xFE99, 51, 0x1A1A)), bytes(rng.randrange(0, 300))))
    block = b"".join(exts)
    body = (struct.pack("!H", rng.choice((0x0303, 0x0301, 0x0300))) + bytes(rng.getrandbits(8) for _ in range(32))
            + bytes([rng.choice((0, 32))]) + b"\x11" * 32)
    body = body[:35] + (b"\x11" * body[34])
    body += struct.pack("!H", 2 * len(ciphers)) + b"".join(struct.pack("!H", c) for c in ciphers)
    body += b"\x01\x00"
    if rng.random() < 0.9:
        body += struct.pack("!H", max(0, len(block) + rng.choice((0, 0, 0, 2, -2)))) + block
    return body


def _handshake(rng, htype=1):
    body = _hello_body(rng)
    return bytes([htype]) + (len(body) + rng.choice((0, 0, 0, 0, 3, -3))).to_bytes(3, "big") + body


def _records(rng, hs):
    out, off = b"", 0
    while off < len(hs):
        if rng.random() < 0.15:
            out += rng.choice((b"\x16\x03\x01\x00\x00", b"\x14\x03\x03\x00\x00", b"\x14\x03\x03\x00\x01\x01",
                               b"\x15\x03\x03\x00\x02\x01\x5a", b"\x17\x03\x03\x00\x05hello"))
        size = rng.choice((len(hs), 1, 2, 5, 40, 300, 16384))
        frag = hs[off:off + size]
        out += struct.pack("!BBBH", 22, 3, rng.choice((1, 3, 5)), len(frag)) + frag
        off += len(frag)
    return out


def _client_stream(rng):
    data = b"\x16\x03\x01\x00\x00" * rng.choice((0, 0, 1, 32, 33)) + _records(rng, _handshake(rng))
    tail = rng.random()
    if tail < 0.3:                                               # a second ClientHello (after a retry)
        data += _records(rng, _handshake(rng))
    elif tail < 0.4:
        data += b"\x17\x03\x03\x00\x10" + bytes(16)
    elif tail < 0.5:
        data += _records(rng, _handshake(rng, htype=rng.choice((2, 11, 16))))
    return data


def _server_stream(rng):
    sh = struct.pack("!H", rng.choice((0x0303, 0x0301))) + (tls.HRR_RANDOM if rng.random() < 0.2 else bytes(32))
    sh += b"\x00" + struct.pack("!HB", 0x1301, 0)
    exts = b""
    if rng.random() < 0.6:
        exts += _ext(43, struct.pack("!H", rng.choice((0x0304, 0x0303))))
    if rng.random() < 0.4:
        exts += _ext(16, b"\x00\x03\x02h2")
    sh += struct.pack("!H", len(exts)) + exts
    hs = b"\x02" + len(sh).to_bytes(3, "big") + sh
    if rng.random() < 0.4:
        hs += b"\x0b" + (20).to_bytes(3, "big") + bytes(20)     # a Certificate that does not read
    data = _records(rng, hs)
    if rng.random() < 0.3:
        data = b"\x14\x03\x03\x00\x01\x01" + data
    return data


def _mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        pick = rng.random()
        if pick < 0.5 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif pick < 0.75:
            del b[rng.randrange(len(b) + 1):]
        else:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 5)))
    return bytes(b)


def _view(got):
    if got is MORE or got is NOT or got is CAP:
        return repr(got)
    if isinstance(got, tls.ClientHello):
        return ["hello", got.sni, got.version, got.alpn, got.early_data, got.legacy_version, got.ciphers,
                got.extensions, got.groups, got.point_formats, got.ja3_cut, got.sig_algs,
                None if got.alpn_first is None else got.alpn_first.hex(), got.offered_max]
    if isinstance(got, tls.ServerHello):
        return ["server", got.legacy_version, got.version, got.cipher, got.extensions, got.alpn, got.retry]
    if isinstance(got, tls.CertificateNames):
        return ["cert", got.subject, got.issuer]
    return repr(got)


def _feed_client(rng, data):
    """As the stream feeds it: segments of random size, what is not consumed held."""
    r, held, out, off = tls.HelloReader(), b"", [], 0
    while off < len(data):
        step = rng.choice((1, 3, 7, 100, 1500, len(data)))
        held += data[off:off + step]
        off += step
        used, got = r.feed(held)
        held = held[used:]
        out.append([used, _view(got), r.second, r.left, r.empty, r.started, r.early, r.skipping,
                    None if r.parser is None else [r.parser.step, r.parser.want, len(r.parser.buf), r.parser.skip,
                                                   r.parser.left, r.parser.name_cut, r.parser.ext_left,
                                                   r.parser.etype, r.parser.ext_rest, r.parser.cipher_rest,
                                                   r.parser.legacy, list(r.parser.offered or ())]])
        if got is not MORE and (not r.second or not isinstance(got, tls.ClientHello)):
            break
    return out


def _feed_server(rng, data):
    r, held, out, off = tls.ServerHelloReader(), b"", [], 0
    while off < len(data):
        step = rng.choice((1, 5, 64, len(data)))
        held += data[off:off + step]
        off += step
        used, items, status = r.feed(held, off >= len(data))
        held = held[used:]
        out.append([used, [_view(i) for i in items], status, r.left, r.skipping, r.want_cert, len(r.hs)])
        if status == "done":
            break
    return out


def observe(seed, count):
    """Every observable of `count` client and server streams made from `seed` (JSON)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        client = _client_stream(rng)
        for data in (client, _mutate(rng, client)):
            out.append(_feed_client(rng, data))
            out.append(_view(tls.parse_client_hello(data)))
            out.append([tls.looks_like(data[:cut]) for cut in range(0, min(len(data), 40), 3)])
        server = _server_stream(rng)
        for data in (server, _mutate(rng, server)):
            out.append(_feed_server(rng, data))
    return out


def test_the_compiled_twin_is_the_one_under_test():
    assert isinstance(tls.HelloReader(), tls.HelloReader)
    if "appliance.applayer.tls" in active:
        assert tls.HelloReader.__module__ == tls.ServerHelloReader.__module__ == "appliance.applayer._c_tls"


def test_readers_as_extension_types_read_as_the_reference():
    for seed in (1, 2):
        assert json.loads(json.dumps(observe(seed, 400))) == in_pure_python("test_tls_reader_twins", "observe", seed, 400)
