"""A label's text is its escape table's text, byte for byte, in whichever build runs: the
compiled twin decodes a label that needs no escape in one C pass (dns._as_is_text) and
leaves the rest to the tables. Every byte value alone, labels of random bytes and of the
bytes the tables treat apart ('\\', '.', DEL, control, past ASCII), each at the edges
of the old 8-byte fast path; names read out of a message as well, where the compiled
twin reads a label in place without slicing it out."""
import random
import struct

from appliance.applayer import dns


def _escaped(label):
    return "".join(dns._ESCAPE[b] for b in label)


def _dns_escaped(label):
    return "".join(dns._DNS_ESCAPE[b] for b in label)


def _labels():
    rng = random.Random(15)
    out = [b"", *(bytes([b]) for b in range(256))]
    out += [bytes([b]) * n for b in (0x2E, 0x5C, 0x7F, 0x1F, 0x20, 0x7E, 0x80, 0xFF) for n in (2, 7, 8, 9, 63)]
    out += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 70))) for _ in range(2000)]
    odd = b"ab.\\ \x7f\x1f\x80~-_"
    out += [bytes(rng.choice(odd) for _ in range(rng.randrange(1, 20))) for _ in range(2000)]
    # plain ones with one odd byte at the start, the middle or the end
    for b in (0x2E, 0x5C, 0x7F, 0x00, 0x9F):
        for n in (1, 7, 8, 12):
            plain = b"x" * n
            out += [bytes([b]) + plain, plain[:n // 2] + bytes([b]) + plain[n // 2:], plain + bytes([b])]
    return out


def test_label_text_is_the_tables_text():
    for label in _labels():
        assert dns.escape_label(label) == _escaped(label), label
        assert dns.dns_label(label) == _dns_escaped(label), label
        assert dns.escape_label(bytearray(label)) == _escaped(label), label    # not bytes: the tables


def test_names_read_in_place_are_the_tables_text():
    labels = [l for l in _labels() if 0 < len(l) < 64]
    rng = random.Random(16)
    for _ in range(1500):
        name = rng.sample(labels, rng.randrange(1, 5))
        msg = (struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
               + b"".join(bytes([len(l)]) + l for l in name) + b"\0" + b"\0\1\0\1")
        got = dns.parse_message(msg)
        assert got.queries[0].rrname == ".".join(_dns_escaped(l) for l in name)
        assert dns.read_name(msg, 12) == (".".join(_dns_escaped(l) for l in name), len(msg) - 4)
