"""A DNS label holding a '.' (wire 03 'a' '.' 'b'): one label, not two. Its text is "a\\.b"
(RFC 1035 5.1, as dig prints it), so the name the rules read and the log shows is the one
the server acts on; HTTP hosts and TLS SNIs (not label sequences) keep their text."""
import struct

import pytest

from appliance.applayer import dns
from appliance.detect.index import NameIndex
from appliance.detect.keywords import parse_name


def wire(*labels):
    return b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"


def query(*labels):
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + wire(*labels) + b"\x00\x01\x00\x01"


def rrname(*labels):
    return dns.parse_message(query(*labels)).queries[0].rrname


def test_a_dot_inside_a_label_is_escaped_and_the_two_names_differ():
    assert rrname(b"a.b", b"example") == "a\\.b.example"
    assert rrname(b"a", b"b", b"example") == "a.b.example"
    assert rrname(b"abcdefgh.ijk", b"example") == "abcdefgh\\.ijk.example"   # past the 8-byte fast path
    assert rrname(b".", b"example") == "\\..example"                          # a label of one dot
    assert rrname(b"example.") == "example\\."


def test_a_backslash_stays_x5c_so_the_text_reads_one_way():
    # "\\." is only ever an escaped dot: a backslash of the label is \x5c
    assert rrname(b"a\\", b"b") == "a\\x5c.b"
    assert rrname(b"a\\.b") == "a\\x5c\\.b"
    assert rrname(b"a\\x2e") == "a\\x5cx2e"


def test_a_response_and_its_answers_read_names_the_same_way():
    target = wire(b"c.d", b"x")
    msg = (struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0) + wire(b"a.b", b"example") + b"\x00\x05\x00\x01"
           + b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 60, len(target)) + target)
    m = dns.parse_message(msg)
    assert m.queries[0].rrname == "a\\.b.example"
    assert m.answers[0].rrname == "a\\.b.example" and m.answers[0].rdata == "c\\.d.x"


def test_http_and_tls_escaping_is_unchanged():
    assert dns.escape_label(b"www.example.com") == "www.example.com"
    assert dns.escape_label(b"a.b") == "a.b"
    assert dns.escape_label(b"a\\b") == "a\\x5cb"


def pattern(text):
    p, err = parse_name(text)
    assert err is None
    return p


@pytest.mark.parametrize("name, rule, hit", [
    ("a\\.b.example", "*.b.example", False),     # labels "a.b", "example": not under b.example
    ("a.b.example", "*.b.example", True),
    ("a\\.b.example", "*.example", True),        # ... but under example
    ("a\\.b.example", "a.b.example", False),
    ("evil\\.example", "evil.example", False),   # one label: the top-level name "evil.example"
    ("evil\\.example", "*.example", False),
    ("x.evil\\.example", "*.example", False),
    ("evil.example", "evil.example", True),
    ("x.evil.example", "*.evil.example", True),
])
def test_rules_read_the_labels_as_they_are(name, rule, hit):
    p = pattern(rule)
    assert p.matches(name) is hit
    assert bool(NameIndex([(0, [p])]).lookup([name])) is hit
