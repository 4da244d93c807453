"""appliance/source/nfqueue.py reads the queue's netlink messages itself (queued_packets): hand-made NFQNL_MSG_PACKET messages, well-formed and damaged, give the
packet netfilterqueue would have given, or are counted as unreadable, and never raise. The
compiled twin gives exactly what the pure module gives on every one of them."""
import json
import os
import struct
import subprocess
import sys

import pytest

from appliance.compiled import MODULES, PURE_ENV
from appliance.source import nfqueue as nq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def attr(atype, value):
    return struct.pack("=HH", 4 + len(value), atype) + value + b"\0" * (-len(value) % 4)


def message(*attrs, mtype=nq.PACKET_MSG, length=None):
    body = struct.pack("!BBH", 2, 0, 0) + b"".join(attrs)
    n = 16 + len(body) if length is None else length
    return struct.pack("=IHHII", n, mtype, 0, 0, 0) + body


def packet_hdr(packet_id):
    return attr(nq.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 2))


IP = bytes.fromhex("4500001c0001000040110000c0000201c0000202") + b"\x9c\x40\x23\x28\x00\x08\x00\x00"


def whole():
    """A packet message as the kernel sends it: header, mark, timestamp, in/out devices, payload."""
    return message(packet_hdr(7), attr(nq.NFQA_MARK, struct.pack("!I", 0x500)),
                   attr(4, bytes(16)), attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", 3)),
                   attr(nq.NFQA_IFINDEX_OUTDEV, struct.pack("!I", 4)), attr(nq.NFQA_PAYLOAD, IP))


def cases():
    """name -> datagram: the well-formed, then every way of damaging one."""
    w = whole()
    return {
        "whole": w,
        "ids and values past 2**31": message(packet_hdr(0xFFFFFFF0), attr(nq.NFQA_MARK, b"\xff" * 4),
                                             attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", 0x80000001)),
                                             attr(nq.NFQA_IFINDEX_OUTDEV, struct.pack("!I", 0xFFFFFFFE)),
                                             attr(nq.NFQA_PAYLOAD, IP)),
        "two in one datagram": w + message(packet_hdr(8), attr(nq.NFQA_PAYLOAD, b"\x45")),
        "no payload": message(packet_hdr(9), attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", 3))),
        "empty payload": message(packet_hdr(10), attr(nq.NFQA_PAYLOAD, b"")),
        "no packet header": message(attr(nq.NFQA_PAYLOAD, IP)),
        "short packet header": message(attr(nq.NFQA_PACKET_HDR, b"\0\0\0\x07"), attr(nq.NFQA_PAYLOAD, IP)),
        "short mark": message(packet_hdr(11), attr(nq.NFQA_MARK, b"\x01"), attr(nq.NFQA_PAYLOAD, IP)),
        "short output device": message(packet_hdr(19), attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", 3)),
                                       attr(nq.NFQA_IFINDEX_OUTDEV, b"\x00\x04"), attr(nq.NFQA_PAYLOAD, IP)),
        "payload attribute past the message": message(packet_hdr(7), attr(nq.NFQA_IFINDEX_INDEV, struct.pack("!I", 3)),
                                                      struct.pack("=HH", 200, nq.NFQA_PAYLOAD) + IP),
        "attribute length below its header": message(packet_hdr(12), struct.pack("=HH", 2, 3),
                                                     attr(nq.NFQA_PAYLOAD, IP)),
        "attribute cut by the datagram": w[:40],
        "message length past the datagram": message(packet_hdr(13), attr(nq.NFQA_PAYLOAD, IP), length=4000),
        "message length below its header": message(packet_hdr(14), length=8),
        "message length zero, then more": message(packet_hdr(15), length=0) + w,
        "header only": w[:16],
        "shorter than a header": w[:9],
        "empty": b"",
        "a kernel error (a refused verdict)": struct.pack("=IHHIIi", 36, nq.NLMSG_ERROR, 0, 0, 0, -2) + bytes(16),
        "another message type": message(packet_hdr(16), mtype=(nq.NFNL_SUBSYS_QUEUE << 8) | nq.NFQNL_MSG_CONFIG),
        "nested flag on the payload type": message(packet_hdr(17), attr(nq.NFQA_PAYLOAD | 0x8000, IP)),
        "odd attribute padding": message(packet_hdr(18), attr(9, b"\x01\x02\x03"), attr(nq.NFQA_PAYLOAD, IP)),
    }


def read_all():
    """{case: [packets handed on, (unreadable, errors)]} with the build this process runs."""
    out = {}
    for name, data in cases().items():
        got = []
        counts = nq.queued_packets(memoryview(bytearray(data)), len(data),
                                   lambda payload, pid, indev, outdev, mark: got.append([payload.hex(), pid, indev, outdev, mark]))
        out[name] = [got, list(counts)]
    return out


def test_a_whole_message_gives_payload_id_devices_and_mark():
    data = bytearray(whole())
    got = []
    assert nq.queued_packets(memoryview(data), len(data), lambda *a: got.append(a)) == (0, 0)
    assert got == [(IP, 7, 3, 4, 0x500)]


def test_what_each_message_gives():
    r = read_all()
    assert r["whole"] == [[[IP.hex(), 7, 3, 4, 0x500]], [0, 0]]
    assert r["ids and values past 2**31"] == [[[IP.hex(), 0xFFFFFFF0, 0x80000001, 0xFFFFFFFE, 0xFFFFFFFF]], [0, 0]]
    assert r["two in one datagram"] == [[[IP.hex(), 7, 3, 4, 0x500], ["45", 8, 0, 0, 0]], [0, 0]]
    # a packet header is all a verdict needs: the rest missing or damaged, the packet still
    # goes on (b"" decodes to an anomaly, a verdict by policy), never left without a verdict
    assert r["no payload"] == [[["", 9, 3, 0, 0]], [0, 0]]
    assert r["empty payload"] == [[["", 10, 0, 0, 0]], [0, 0]]
    assert r["short mark"] == [[[IP.hex(), 11, 0, 0, 0]], [0, 0]]
    assert r["short output device"] == [[[IP.hex(), 19, 3, 0, 0]], [0, 0]]
    assert r["payload attribute past the message"] == [[["", 7, 3, 0, 0]], [0, 0]]
    assert r["attribute length below its header"] == [[["", 12, 0, 0, 0]], [0, 0]]
    assert r["nested flag on the payload type"] == [[[IP.hex(), 17, 0, 0, 0]], [0, 0]]
    assert r["odd attribute padding"] == [[[IP.hex(), 18, 0, 0, 0]], [0, 0]]
    # no id: nothing to answer; counted
    assert r["no packet header"] == [[], [1, 0]]
    assert r["short packet header"] == [[], [1, 0]]
    assert r["another message type"] == [[], [1, 0]]
    # framing broken: the datagram ends there
    for name in ("attribute cut by the datagram", "message length past the datagram",
                 "message length below its header", "message length zero, then more"):
        assert r[name] == [[], [1, 0]], name
    assert r["header only"] == [[], [1, 0]]          # a packet message without an id
    assert r["shorter than a header"] == [[], [0, 0]]
    assert r["empty"] == [[], [0, 0]]
    assert r["a kernel error (a refused verdict)"] == [[], [0, 1]]


def test_random_damage_never_raises():
    import random
    rnd = random.Random(15)
    base = whole() + message(packet_hdr(8), attr(nq.NFQA_PAYLOAD, IP))
    for _ in range(3000):
        data = bytearray(base[:rnd.randrange(len(base) + 1)])
        for _ in range(rnd.randrange(4)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        nq.queued_packets(memoryview(data), len(data), lambda *a: None)


PROBE = ("import json, sys; sys.path.insert(0, 'tests/unit'); import test_nfqueue_messages as t;"
         "from appliance import compiled; print(json.dumps([compiled.describe(), t.read_all()]))")


@pytest.mark.skipif("appliance.source.nfqueue" not in MODULES, reason="nfqueue is not compiled")
def test_compiled_reads_every_message_as_the_pure_module_does():
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    runs = [subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env={**env, **extra}, capture_output=True,
                           text=True, timeout=120) for extra in ({}, {PURE_ENV: "1"})]
    for r in runs:
        assert r.returncode == 0, r.stderr
    (compiled, c), (pure, p) = (json.loads(r.stdout) for r in runs)
    if "nfqueue" not in compiled.split(";")[0]:
        pytest.skip(f"nfqueue's twin is not built here ({compiled})")
    assert pure.startswith("pure Python")
    assert c == p
