"""Transaction objects as the compiled twins make them (twelfth session) against the pure
modules' (the reference, run from their source without the line that swaps the twin in).

dns.py: parse_message's header read from the bytes' buffer (_header), its questions and
answers C calls with C-int offsets and budgets, a type's name or number (_rrtype), an A
record's text, every DnsMessage field passed to its constructor. http.py: the one SP/TAB trim
of both header readers (_blanks_off) and the host readings as C calls (normalize_host,
_before_colon, _name_start, _authority). Every field (repr: a bool is no int) of each
DnsMessage, DnsQuery, DnsAnswer and HttpRequest, and its EVE object (events.tx_object), is
the reference's on hostile input: headers of every length to 13 bytes, unknown types and
rcodes, A/AAAA records of odd lengths, TTLs with the top bit set, names with escapes, the
mutated and looping datagrams of test_dns_name_walk_twins, bytearray and memoryview input;
Host values with escapes, blanks, IPv6, ports that are none, absolute-form targets."""
import random
import struct
import sys
import types
from pathlib import Path

import pytest

from appliance import compiled
from appliance.applayer import dns, http
from appliance.output.events import tx_object
from test_dns_name_walk_twins import _loops, _message, _mutate


def _reference(mod, name):
    """The pure module from its source, without the line that swaps in the compiled twin;
    http's reference reads names with dns's reference (escape_label)."""
    source = Path(mod.__file__).with_name(name + ".py")
    text = source.read_text()
    text = text[:text.rindex("\nfrom ..compiled import use_compiled")]
    ref = types.ModuleType(f"appliance.applayer._{name}_tx_reference")
    ref.__file__ = str(source)
    sys.modules[ref.__name__] = ref          # dataclasses look the module up
    try:
        exec(compile(text, str(source), "exec"), ref.__dict__)
    finally:
        del sys.modules[ref.__name__]
    assert not ref.COMPILED
    return ref


DNS_REF = _reference(dns, "dns")
HTTP_REF = _reference(http, "http")
HTTP_REF.escape_label = DNS_REF.escape_label

needs_twin = pytest.mark.skipif(
    "appliance.applayer.dns" not in compiled.active or "appliance.applayer.http" not in compiled.active,
    reason="the compiled dns/http twins are not built")


def _fields(obj, names):
    return [repr(getattr(obj, n)) for n in names]


def dns_view(m):
    if m is None or m is dns.CAP or m is DNS_REF.CAP:
        return repr(m if m is None else "CAP")
    return (_fields(m, ("id", "response", "opcode", "rcode", "flags"))
            + [_fields(q, ("rrname", "rrtype")) for q in m.queries]
            + [_fields(a, ("rrname", "rrtype", "ttl", "rdata")) for a in m.answers]
            + [tx_object("dns", m)])


def _rr(name, rtype, ttl, rd):
    return name + struct.pack("!HHIH", rtype, 1, ttl, len(rd)) + rd


def _hostile_datagrams(rng):
    out = [bytes(rng.getrandbits(8) for _ in range(n)) for n in range(14)]       # headers cut anywhere
    out += [b"\xff" * n for n in range(14)]
    qname = b"\x03a.b\x04c\\\x00d\x01\xff\x00"                   # a dot, a backslash, NUL, 0xff in labels
    for rcode in range(16):                                       # named rcodes and numbers
        flags = 0x8000 | (rng.randrange(8) << 11) | rcode | rng.choice((0, 0x0780))
        for qtype, rtype, rd in ((1, 1, b"\x01\x02\x03"), (1, 1, b"\xff\x00\x80\x7f"), (1, 1, b"\1\2\3\4\5"),
                                 (28, 28, bytes(range(15))), (28, 28, bytes(range(16))), (28, 28, bytes(17)),
                                 (0, 65535, b""), (65280, 1000, b"x"), (5, 5, b"\xc0\x0c"), (12, 12, b"\x01\\\x00")):
            ttl = rng.choice((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF))
            msg = struct.pack("!HHHHHH", rng.randrange(65536), flags, 1, 2, 0, 0) + qname + struct.pack("!HH", qtype, 1)
            msg += _rr(b"\xc0\x0c", rtype, ttl, rd) + _rr(b"\x01\x2e\x00", rtype, ttl, rd)
            out += [msg, msg[:-1], msg[:-len(rd) - 1] if rd else msg[:-3]]
    return out


def dns_observe(mod, seed, count):
    rng = random.Random(seed)
    msgs = _hostile_datagrams(rng) + _loops(rng)
    for _ in range(count):
        m = _message(rng)
        msgs += [m, _mutate(rng, m)]
    got = []
    for m in msgs:
        for data in (m, bytearray(m), memoryview(m)):     # the twin's bytes path, and the others
            got.append([dns_view(mod.parse_message(data)), mod.plausible(data), mod.sane_header(data)])
    return got


@needs_twin
def test_dns_transactions_are_the_references():
    assert dns.parse_message is not DNS_REF.parse_message
    for seed in (1, 2, 3):
        assert dns_observe(dns, seed, 300) == dns_observe(DNS_REF, seed, 300)


HOSTS = [b"a.example", b"A.Example:80", b" evil.example\t", b"\tevil.example:8080 ", b"[::1]:8080", b"[::1",
         b"::1", b"evil.example:80:80", b"evil.example:x", b"evil.example:", b"evil.example\\", b"evil.example;x",
         b"ev\x00il.example", b"b\xc3\xbccher.example", b"evil.example\x7f", b"a\\x41.example", b"", b" ", b":80",
         b"evil.example x", b"evil..example", b"EVIL.EXAMPLE.", b"a" * 300]
TARGETS = [b"/", b"http://c.example:81/x", b"a+b://evil.example/", b"http://u@d.example:8x/?q", b"HTTP://[::2]:1/",
           b"http://e.example\\/", b"//f.example/", b"g.example:443"]
AGENTS = [b"curl/8.0", b"Mozilla/5.0 (X11; \\x)", b"\x80\xff", b" \tcurl "]


def http_observe(mod, seed, count):
    rng = random.Random(seed)
    got = []
    for _ in range(count):
        method = rng.choice((b"GET", b"POST", b"CONNECT", b"G\\T"))
        block = method + b" " + rng.choice(TARGETS) + b" HTTP/1.1\r\n"
        for _ in range(rng.randrange(0, 4)):
            name = rng.choice((b"Host", b"host ", b"\tHOST", b"User-Agent", b"user-agent\t", b"X-A"))
            block += name + rng.choice((b":", b": ", b":\t")) + rng.choice(HOSTS + AGENTS) + b"\r\n"
        used, txs, status = mod.RequestReader().feed(block + b"\r\n", False)
        got.append([used, repr(status)] + [
            _fields(t, ("method", "uri", "protocol", "host", "user_agent", "hosts", "user_agents")) + [tx_object("http", t)]
            for t in txs])
    for raw in HOSTS:
        got.append([repr(mod.normalize_host(raw)), repr(mod._before_colon(raw)), repr(mod._name_start(raw))])
    for uri in TARGETS:
        got.append(repr(mod._authority(uri)))
    return got


@needs_twin
def test_http_transactions_are_the_references():
    assert http.RequestReader is not HTTP_REF.RequestReader
    for seed in (1, 2):
        assert http_observe(http, seed, 400) == http_observe(HTTP_REF, seed, 400)


def test_an_a_record_and_unknown_types_read_as_before():
    # (both builds: the A record's text and the types' numbers, as the generator wrote them)
    msg = struct.pack("!HHHHHH", 7, 0x818B, 1, 2, 0, 0) + b"\x01a\x00" + struct.pack("!HH", 65280, 1)
    msg += _rr(b"\xc0\x0c", 1, 0xFFFFFFFF, b"\xff\x00\x80\x07") + _rr(b"\xc0\x0c", 1000, 5, b"")
    m = dns.parse_message(msg)
    assert (m.id, m.response, m.opcode, m.rcode, m.flags) == (7, True, 0, "11", 0x818B)
    assert [(q.rrname, q.rrtype) for q in m.queries] == [("a", "65280")]
    assert [(a.rrname, a.rrtype, a.ttl, a.rdata) for a in m.answers] == [("a", "A", 0xFFFFFFFF, "255.0.128.7"),
                                                                        ("a", "1000", 5, None)]
    assert dns.parse_message(msg[:11]) is None and not dns.sane_header(msg[:11])


def test_user_agent_readings_none_one_and_several():
    # (both builds: _finish skips dict.fromkeys for none or one; two lines add their joined
    # reading, Apache's, and a duplicate line is one reading)
    def agents(*lines):
        block = b"GET / HTTP/1.1\r\nHost: a.example\r\n" + b"".join(b"User-Agent: " + v + b"\r\n" for v in lines)
        _, txs, _ = http.RequestReader().feed(block + b"\r\n", False)
        return txs[0].user_agent, txs[0].user_agents
    assert agents() == (None, [])
    assert agents(b"c\\x") == ("c\\x5cx", ["c\\x5cx"])
    assert agents(b"a", b"b") == ("a", ["a", "b", "a, b"])
    assert agents(b"a", b"a") == ("a", ["a", "a, a"])
