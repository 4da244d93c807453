"""stream.py's compiled twin (_c_stream.pxd: StreamStart and ClientStream as extension types,
offsets and counters C ints, the in-class calls C calls) reads every segment as the pure
module does: random segment sequences (in order, overlapping, out of order past the room,
retransmissions with other bytes, urgent marks, FINs, SYNs, around the 32-bit wrap) through
StreamStart, and random conversations (SYN data, the SYN/ACK, RSTs, bad checksums, URG)
through ClientStream, every field and answer after every step, pure == compiled."""
import random
import struct

import pytest

from twins import in_pure_python
from appliance import stream  # noqa: F401 -- imported first: `active` names it once it is
from appliance.compiled import active

WRAP = 0xFFFFFFFF


def _start_fields(s):
    return [s.limit, s.start, s.base, s.rcv, s.urg, s.urg_done, s.fin, s.data.hex(), s._buf_seq,
            list(s._cuts) if s._cuts is not None else None, [[o, d.hex(), f] for o, d, f in s._pending],
            s._held, s.overlap_conflicts, s.dropped, s.lost, s.cut, s.delivered, s.complete, s.gaps]


def stream_start_steps(seed, n):
    """Every answer and field of StreamStart over `n` random segment sequences."""
    from appliance.stream import StreamStart
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        limit = rng.choice((4, 8, 16, 64, 8192))
        s = StreamStart(limit)
        isn = rng.choice((0, 1000, WRAP - 3, WRAP, rng.getrandbits(32)))
        text = bytes(rng.choice(b"abcdefgh") for _ in range(80))
        steps = []
        if rng.random() < 0.8:
            steps.append(s.add(isn, b"", True))
        for _ in range(rng.randrange(1, 25)):
            op = rng.random()
            if op < 0.65:
                off = rng.randrange(-4, 60)
                ln = rng.randrange(0, 20)
                data = bytearray(text[max(off, 0):max(off, 0) + ln])
                if rng.random() < 0.15 and data:
                    data[rng.randrange(len(data))] = ord("X")     # another copy of the bytes
                payload = bytes(data) if rng.random() < 0.7 else bytearray(data)
                steps.append(s.add((isn + 1 + off) & WRAP, payload, rng.random() < 0.05,
                                   fin=rng.random() < 0.1))
            elif op < 0.85:
                steps.append(s.consume(rng.randrange(-2, 30)))
            else:
                steps.append(s.mark_urgent((isn + 1 + rng.randrange(0, 50)) & WRAP, rng.randrange(0, 12)))
            steps.append(_start_fields(s))
        out.append(steps)
    return out


def _segment(flags, seq, ack=0, data=b"", urg=0, bad_sum=False, to_server=True):
    from appliance.decode import decode_l3
    src, dst, sp, dp = (b"\n\0\0\1", b"\n\0\0\2", 40000, 80) if to_server else (b"\n\0\0\2", b"\n\0\0\1", 80, 40000)
    tcp = struct.pack("!HHIIBBHHH", sp, dp, seq & WRAP, ack & WRAP, 5 << 4, flags, 65535, 0, urg)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(data))
    blob = pseudo + tcp + data + (b"\0" if len(data) % 2 else b"")
    total = sum(struct.unpack("!%dH" % (len(blob) // 2), blob))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    csum = (~total & 0xFFFF) ^ (1 if bad_sum else 0)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 1, 0, 64, 6, 0, src, dst)
    return decode_l3(ip + tcp + data, 1.0)


def client_stream_steps(seed, n):
    """Every answer, anomaly and property of ClientStream over `n` random conversations."""
    from appliance.packet import ACK, FIN, PSH, RST, SYN, URG
    from appliance.stream import ClientStream
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        isn, sisn = rng.getrandbits(32), rng.getrandbits(32)
        text = bytes(rng.choice(b"GET /host:") for _ in range(60))
        st = ClientStream.open(_segment(PSH | ACK, isn + 1, data=b"x"), True, isn if rng.random() < 0.7 else None)
        steps = []
        for _ in range(rng.randrange(1, 14)):
            op = rng.random()
            if op < 0.15:
                pkt, to_server = _segment(SYN, isn, data=text[:rng.randrange(0, 6)]), True
            elif op < 0.25:
                pkt, to_server = _segment(SYN | ACK, sisn, ack=isn + 1 + rng.randrange(0, 6), to_server=False), False
            else:
                off = rng.randrange(0, 40)
                flags = rng.choice((PSH | ACK, ACK, ACK | FIN, ACK | RST, ACK | URG, PSH | ACK | URG))
                data = text[off:off + rng.randrange(0, 16)]
                pkt = _segment(flags, isn + 1 + off, sisn + 1, data, urg=rng.randrange(0, 8),
                               bad_sum=rng.random() < 0.1)
                to_server = True
            if rng.random() < 0.1:
                pkt.discard = rng.choice(("tcp.ack_too_old", "tcp.no_ack", "other"))
            found = []
            steps.append([st.feed(pkt, to_server, rng.choice((8, 32, 8192)), found), found, st.ambiguous,
                          st.reported, st.data.hex(), st.complete, st.lost, st.base, st.isn, st.isn_next,
                          None if st.syn_data is None else st.syn_data.hex()])
            if rng.random() < 0.3:
                st.consume(rng.randrange(0, 10))
        out.append(steps)
    return out


def test_stream_start_reads_every_sequence_as_the_pure_module():
    if "appliance.stream" not in active:
        pytest.skip("stream.py is not compiled here")
    assert stream_start_steps(7, 300) == in_pure_python("test_stream_twins", "stream_start_steps", 7, 300)


def test_client_stream_reads_every_conversation_as_the_pure_module():
    if "appliance.stream" not in active:
        pytest.skip("stream.py is not compiled here")
    assert client_stream_steps(11, 200) == in_pure_python("test_stream_twins", "client_stream_steps", 11, 200)


def test_both_classes_are_extension_types_when_compiled():
    from appliance import stream
    if "appliance.stream" not in active:
        pytest.skip("stream.py is not compiled here")
    for cls in (stream.StreamStart, stream.ClientStream):
        assert cls.__module__ == "appliance._c_stream" and not hasattr(cls(), "__dict__")
