"""DNS compression pointers whose target lies past byte 255: the 14-bit offset's high six
bits come from the first byte (0xC0 | high), the low eight from the second."""
import struct

from appliance.applayer import dns


def label_name(text):
    return b"".join(bytes([len(p)]) + p.encode() for p in text.split(".")) + b"\x00"


def name_of_length(wire):
    """A name of exactly `wire` bytes on the wire (labels of at most 63)."""
    out = b""
    left = wire - 1                            # the root label
    while left:
        n = min(64, left) if left != 65 else 32    # never leave a lone length byte
        out += bytes([n - 1]) + b"p" * (n - 1)
        left -= n
    return out + b"\x00"


def test_pointer_with_high_offset_bits():
    names = ["a" * 60 + ".one.example", "b" * 60 + ".two.example", "c" * 60 + ".three.example",
             "d" * 60 + ".four.example", "target.example"]
    body = b""
    offsets = []
    for n in names:
        offsets.append(12 + len(body))
        body += label_name(n) + b"\x00\x01\x00\x01"
    target = offsets[-1]
    assert target > 0xFF                      # the pointer needs bits of its first byte
    pointer = struct.pack("!H", 0xC000 | target)
    body += b"\x03www" + pointer + b"\x00\x1c\x00\x01"
    msg = dns.parse_message(struct.pack("!6H", 7, 0x0100, len(names) + 1, 0, 0, 0) + body)
    assert msg is not None
    assert [q.rrname for q in msg.queries] == names + ["www.target.example"]
    assert msg.queries[-1].rrtype == "AAAA"


def test_pointer_with_high_bits_in_a_tcp_message():
    # Over TCP a message passes 4 KB: an offset with bit 12 set (0x1005 = 4101), reached
    # within the 32 questions the parser reads.
    filler = label_name("x" * 63 + "." + "y" * 63 + "." + "z" * 63 + "." + "w" * 61)   # 255 bytes
    body = b""
    n = 0
    while 12 + len(body) + len(filler) + 4 < 0x1005:
        body += filler + b"\x00\x01\x00\x01"
        n += 1
    body += name_of_length(0x1005 - 12 - len(body) - 4) + b"\x00\x01\x00\x01"   # target at 0x1005
    assert 12 + len(body) == 0x1005
    body += label_name("deep.example") + b"\x00\x01\x00\x01"
    body += b"\x02go" + struct.pack("!H", 0xC000 | 0x1005) + b"\x00\x01\x00\x01"
    msg_bytes = struct.pack("!6H", 9, 0x0100, n + 3, 0, 0, 0) + body
    msgs, used = dns.parse_tcp(struct.pack("!H", len(msg_bytes)) + msg_bytes)
    assert used == len(msg_bytes) + 2
    assert [q.rrname for q in msgs[0].queries][-2:] == ["deep.example", "go.deep.example"]
