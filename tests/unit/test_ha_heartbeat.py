"""Heartbeat authentication: what is accepted, and every way a packet is refused (counted)."""
import hmac
import hashlib
import os
import random

from appliance.ha import heartbeat as hb

KEY = b"0123456789abcdef0123456789abcdef"


class Wall:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def pair(wall=None):
    wall = wall or Wall()
    return (hb.Codec(KEY, "10.0.2.11:7400", wallclock=wall), hb.Codec(KEY, "10.0.2.12:7400", wallclock=wall), wall)


def test_round_trip():
    a, b, _ = pair()
    p = b.decode(a.encode(hb.HEARTBEAT, "primary", True))
    assert (p.kind, p.state, p.ready) == (hb.HEARTBEAT, "primary", True)
    p = b.decode(a.encode(hb.PROBE, "fault", False, nonce=42))
    assert (p.kind, p.state, p.ready, p.nonce) == (hb.PROBE, "fault", False, 42)
    assert b.counts["accepted"] == 2 and sum(b.counts.values()) == 2


def test_replayed_packet_refused():
    a, b, _ = pair()
    pkt = a.encode(hb.HEARTBEAT, "primary", True)
    assert b.decode(pkt) is not None
    assert b.decode(pkt) is None and b.counts["replayed"] == 1
    older = a.encode(hb.HEARTBEAT, "primary", True)
    newer = a.encode(hb.HEARTBEAT, "primary", True)
    assert b.decode(newer) is not None
    assert b.decode(older) is None and b.counts["replayed"] == 2     # out of order is a replay too


def test_paths_overtaking_each_other_are_no_replay():
    """A heartbeat (management network) and the probe sent right after it (inside network)
    arrive in the other order: both are accepted; a replay on either path is still refused."""
    a, b, _ = pair()
    beat = a.encode(hb.HEARTBEAT, "primary", True)
    probe = a.encode(hb.PROBE, "primary", True, nonce=7)
    assert b.decode(probe) is not None
    assert b.decode(beat) is not None
    assert b.decode(beat) is None and b.decode(probe) is None and b.counts["replayed"] == 2


def test_restarted_sender_is_accepted():
    """seq starts at the wall clock in ns, so a restarted peer's first packet is newer."""
    a, b, wall = pair()
    assert b.decode(a.encode(hb.HEARTBEAT, "primary", True))
    a2 = hb.Codec(KEY, "10.0.2.11:7400", wallclock=wall)
    assert b.decode(a2.encode(hb.HEARTBEAT, "standby", True)) is not None


def test_stale_packet_refused_even_by_a_fresh_receiver():
    a, b, wall = pair()
    pkt = a.encode(hb.HEARTBEAT, "primary", True)
    wall.t += 10                                  # replayed 10 s later to a receiver that never saw it
    assert b.decode(pkt) is None and b.counts["stale"] == 1
    ahead = hb.Codec(KEY, "10.0.2.13:7400", wallclock=Wall(wall.t + 10))
    assert b.decode(ahead.encode(hb.HEARTBEAT, "primary", True)) is None and b.counts["stale"] == 2  # the future
    near = hb.Codec(KEY, "10.0.2.14:7400", wallclock=Wall(wall.t + 4))
    assert b.decode(near.encode(hb.HEARTBEAT, "primary", True)) is not None   # within the window


def test_forged_packet_refused():
    a, _, wall = pair()
    b = hb.Codec(b"another secret of enough bytes!!", "10.0.2.12:7400", wallclock=wall)
    assert b.decode(a.encode(hb.HEARTBEAT, "primary", True)) is None and b.counts["forged"] == 1
    a, b, _ = pair()
    pkt = bytearray(a.encode(hb.HEARTBEAT, "primary", True))
    pkt[6] ^= 1                                   # flip "ready"
    assert b.decode(bytes(pkt)) is None and b.counts["forged"] == 1


def test_reflected_own_packet_refused():
    a, _, _ = pair()
    assert a.decode(a.encode(hb.HEARTBEAT, "primary", True)) is None and a.counts["reflected"] == 1


def test_signed_but_invalid_fields_are_malformed():
    a, b, wall = pair()
    head = hb._HEAD.pack(hb.MAGIC, 9, 7, 3, 0, hb.sender_id("x"), 2**62, int(wall() * 1000), 0)
    pkt = head + hmac.new(KEY, head, hashlib.sha256).digest()
    assert b.decode(pkt) is None and b.counts["malformed"] == 1


def test_garbage_never_raises():
    _, b, _ = pair()
    rnd = random.Random(13)
    for n in list(range(0, 80)) + [hb.SIZE] * 200:
        data = bytes(rnd.getrandbits(8) for _ in range(n))
        if rnd.random() < 0.5 and n >= 4:
            data = hb.MAGIC + data[4:]
        assert b.decode(data) is None
    assert b.decode(os.urandom(70000)) is None
    assert b.counts["accepted"] == 0
    assert b.counts["malformed"] + b.counts["forged"] == 281
