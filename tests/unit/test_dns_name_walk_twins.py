"""DNS names walked in C (dns.py: _name_end, _name_text; the compiled twin checks a name's
pointers, lengths and bounds with C ints over the bytes' buffer before it writes the text,
and plausible and _answers' pass over the questions take the walk alone): every observable
of the pure module and the compiled twin is the same on random and mutated datagrams and
TCP streams. Pointer loops, pointers forward, out of range and at the message's last byte,
the 255-jump bound per name and per message (questions past MAX_QUESTIONS too), names at
MAX_NAME_WIRE's edge, extended label types, truncation at every length, every byte value
written anywhere; the questions, answers (A, AAAA, CNAME/NS/PTR targets), flags, CAP,
read_name at every offset, plausible, sane_header and the TCP reader's frames."""
import json
import random
import struct

from twins import in_pure_python
from appliance.applayer import CAP, dns
from appliance.compiled import active


def _name(rng, labels=None):
    """A name's wire bytes: labels of any bytes, maybe ending in a pointer."""
    out = b""
    for _ in range(rng.randrange(0, 5) if labels is None else labels):
        n = rng.choice((1, 2, 3, 7, 8, 63)) if rng.random() < 0.5 else rng.randrange(1, 64)
        pick = rng.random()
        if pick < 0.5:
            label = bytes(rng.choice(b"abcxyz019-_") for _ in range(n))
        elif pick < 0.7:
            label = bytes(rng.choice(b"a.\\\x00\x7f\x80\xff ") for _ in range(n))
        else:
            label = bytes(rng.getrandbits(8) for _ in range(n))
        out += bytes([len(label)]) + label
    end = rng.random()
    if end < 0.15:
        return out + b"\xc0\x0c"                                           # to the first name
    if end < 0.25:
        return out + bytes([0xC0 | rng.randrange(0, 2), rng.randrange(0, 256)])   # pointer anywhere near
    if end < 0.3:
        return out + bytes([rng.choice((0x40, 0x80)) | rng.randrange(0, 64)])  # extended/reserved type
    return out + b"\0"


def _message(rng):
    qd = rng.choice((0, 1, 1, 1, 2, 3, 32, 33, 40))
    an = rng.choice((0, 0, 1, 2, 5, 33))
    flags = rng.choice((0x0100, 0x8180, 0x8183, 0x8000, 0x2800, 0x7800)) | rng.randrange(0, 16)
    msg = struct.pack("!HHHHHH", rng.randrange(65536), flags, qd, an, rng.choice((0, 0, 1, 300)), 0)
    for _ in range(min(qd, rng.choice((qd, qd, qd, 1, 40)))):
        msg += _name(rng) + struct.pack("!HH", rng.choice((1, 28, 5, 0, 255, 65)), rng.choice((1, 3, 254, 0x8001, 7)))
    for _ in range(an):
        rtype = rng.choice((1, 28, 5, 2, 12, 16, 99))
        if rtype == 1:
            rd = bytes(rng.getrandbits(8) for _ in range(rng.choice((4, 4, 3))))
        elif rtype == 28:
            rd = bytes(rng.getrandbits(8) for _ in range(rng.choice((16, 16, 4))))
        elif rtype in (2, 5, 12):
            rd = _name(rng)
        else:
            rd = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 20)))
        msg += _name(rng, rng.randrange(0, 3)) + struct.pack("!HHIH", rtype, 1, rng.getrandbits(32), len(rd)) + rd
    return msg


def _loops(rng):
    """Pointer chains: loops, one long chain past 255 jumps, chains shared by many questions."""
    out = []
    hdr = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    out.append(hdr + b"\xc0\x0c" + b"\0\1\0\1")                       # points at itself
    out.append(hdr + b"\x01a\xc0\x0c" + b"\0\1\0\1")                  # a label, then back to it
    out.append(hdr + b"\xc0\x0e\xc0\x0c" + b"\0\1\0\1")               # two pointers to each other
    for hops in (253, 254, 255, 256, 300):
        # a chain of `hops` pointers, each to the next, ending at a label
        base = 12
        body = b"".join(struct.pack("!H", 0xC000 | (base + 2 * (i + 1))) for i in range(hops)) + b"\x01z\0"
        for qd in (1, 2, 33):
            msg = struct.pack("!HHHHHH", 1, rng.choice((0x0100, 0x8180)), qd, 1, 0, 0) + body + b"\0\1\0\1"
            # more questions pointing into the chain: the per-message budget
            msg += b"".join(struct.pack("!H", 0xC000 | rng.randrange(12, 12 + 2 * hops)) + b"\0\1\0\1"
                            for _ in range(qd - 1))
            out.append(msg + b"\xc0\x0c\0\1\0\1\0\0\0\1\0\4\1\2\3\4")
    for size in (1020, 1024, 1025, 1026, 1027, 1100):                   # the name's wire bound
        labels, left = [], size - 1
        while left > 0:
            n = min(63, left - 1) if left > 1 else 1
            labels.append(b"x" * max(n, 1))
            left -= max(n, 1) + 1
        name = b"".join(bytes([len(l)]) + l for l in labels) + b"\0"
        out.append(struct.pack("!HHHHHH", 2, 0x0100, 1, 0, 0, 0) + name + b"\0\1\0\1")
    # 33 questions: the first 32 take 7 jumps each (224 of the message's 255), the 33rd more
    # than the 31 left; only _answers walks it (_questions stops at MAX_QUESTIONS)
    for last in (40, 31, 30):
        c, d = 12 + 33 * 6, 12 + 33 * 6 + 15
        chain_c = b"".join(struct.pack("!H", 0xC000 | (c + 2 * (i + 1))) for i in range(6)) + b"\x01q\0"
        chain_d = b"".join(struct.pack("!H", 0xC000 | (d + 2 * (i + 1))) for i in range(last)) + b"\x01r\0"
        qs = b"".join(struct.pack("!H", 0xC000 | c) + b"\0\1\0\1" for _ in range(32))
        qs += struct.pack("!H", 0xC000 | d) + b"\0\1\0\1"
        rr = b"\x01a\0\0\1\0\1\0\0\0\1\0\4\1\2\3\4"
        for qd in (32, 33, 34):
            out.append(struct.pack("!HHHHHH", 3, 0x8180, qd, 1, 0, 0) + qs + chain_c + chain_d + rr)
    return out


def _mutate(rng, msg):
    b = bytearray(msg)
    for _ in range(rng.randrange(1, 4)):
        pick = rng.random()
        if pick < 0.4 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)            # every byte value, anywhere
        elif pick < 0.6 and len(b) > 12:
            i = rng.randrange(12, len(b))
            b[i] = 0xC0 | rng.randrange(0, 4)                         # a pointer where a length was
        elif pick < 0.8:
            del b[rng.randrange(len(b) + 1):]                         # truncated
        else:
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 4)))
    return bytes(b)


def _message_view(m):
    if m is None or m is CAP:
        return repr(m)
    return [m.id, m.response, m.opcode, m.rcode, m.flags, [[q.rrname, q.rrtype] for q in m.queries],
            [[a.rrname, a.rrtype, a.ttl, a.rdata] for a in m.answers]]


def _observe(msg):
    got = [_message_view(dns.parse_message(msg)), dns.plausible(msg), dns.sane_header(msg)]
    got.append([dns.read_name(msg, off) for off in range(0, min(len(msg), 40))])
    got.append([_message_view(dns.parse_message(msg[:cut])) for cut in range(0, len(msg) + 1, 11)])
    return got


def observe(seed, count):
    """Every observable of `count` datagrams made from `seed` (JSON: compared across builds)."""
    rng = random.Random(seed)
    msgs = _loops(rng)
    for _ in range(count):
        m = _message(rng)
        msgs.append(m)
        msgs.append(_mutate(rng, m))
    out = [_observe(m) for m in msgs]
    # DNS over TCP: the frames of a stream, split anywhere, as the server reads them
    for i in range(0, len(msgs) - 2, 3):
        stream = b"".join(struct.pack("!H", len(m) & 0xFFFF) + m for m in msgs[i:i + 3])
        reader, got, off = dns.TcpReader(), [], 0
        for cut in sorted(rng.sample(range(len(stream) + 1), min(3, len(stream) + 1))) + [len(stream)]:
            used, items, status = reader.feed(stream[off:cut], cut == len(stream))
            got.append([used, [_message_view(x) for x in items], repr(status)])
            off += used
        out.append(got)
    return out


def test_the_compiled_twin_is_the_one_under_test():
    # (under APPLIANCE_PURE_PYTHON=1, as CI runs it too, both sides are the reference)
    assert dns.COMPILED == ("appliance.applayer.dns" in active)


def test_names_walked_in_c_read_as_the_reference():
    # the build under test, and the reference in a pure-Python process, on the same inputs
    for seed in (1, 2):
        assert json.loads(json.dumps(observe(seed, 400))) == in_pure_python("test_dns_name_walk_twins", "observe", seed, 400)
