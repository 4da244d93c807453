"""Heartbeats and probes between the two instances: one UDP datagram each, HMAC-SHA256 signed.

Layout (72 bytes, network order): magic "AHA1" | kind | state | ready | 0 | sender (8) |
seq (8) | time_ms (8) | nonce (8) | HMAC-SHA256 over all of the above (32).

- kind: heartbeat (every interval, to the peer's management address), probe (to the peer's
  check address, over another network) and probe reply (echoes the probe's nonce, so an
  old reply cannot answer a new probe).
- sender: 8 bytes of SHA-256 of the sender's listen address; our own packets reflected back
  at us are refused (the secret is shared, so the HMAC alone would accept them).
- seq starts at the wall clock in ns when the sender starts, +1 per packet: a restarted peer
  keeps increasing and is accepted, a replayed packet (seq <= the last accepted) is not. The
  last accepted seq is kept per sender and kind: heartbeats and probes take different networks
  and may overtake each other, which is not a replay.
- time_ms must be within `window` seconds of our clock: a recorded packet replayed to an
  instance that never saw the original (after our restart) is still refused.
Everything refused is counted by reason and dropped; nothing here raises on input.
"""
import hashlib
import hmac
import os
import struct
import time

MAGIC = b"AHA1"
HEARTBEAT, PROBE, PROBE_REPLY = 1, 2, 3
KINDS = (HEARTBEAT, PROBE, PROBE_REPLY)
STATES = ("primary", "standby", "fault")
_HEAD = struct.Struct(">4sBBBB8sQQQ")
SIZE = _HEAD.size + 32
REASONS = ("malformed", "forged", "replayed", "stale", "reflected")


def sender_id(listen: str) -> bytes:
    return hashlib.sha256(listen.encode()).digest()[:8]


class Packet:
    __slots__ = ("kind", "state", "ready", "sender", "seq", "time_ms", "nonce")

    def __init__(self, kind, state, ready, sender, seq, time_ms, nonce=0):
        self.kind, self.state, self.ready, self.sender = kind, state, ready, sender
        self.seq, self.time_ms, self.nonce = seq, time_ms, nonce


class Codec:
    """Signs what we send, checks what we receive; `counts` says how much was refused and why."""

    def __init__(self, secret: bytes, listen: str, window=5.0, wallclock=time.time):
        self.key, self.me, self.window, self.wallclock = secret, sender_id(listen), window, wallclock
        self.seq = time.time_ns()
        self.last_seq = {}                    # (sender, kind) -> highest accepted seq
        self.counts = dict.fromkeys(("accepted",) + REASONS, 0)

    def encode(self, kind, state, ready, nonce=0) -> bytes:
        self.seq += 1
        head = _HEAD.pack(MAGIC, kind, STATES.index(state), 1 if ready else 0, 0, self.me, self.seq,
                          int(self.wallclock() * 1000), nonce)
        return head + hmac.new(self.key, head, hashlib.sha256).digest()

    def decode(self, data: bytes):
        """The packet, or None (counted under its reason)."""
        if len(data) != SIZE or data[:4] != MAGIC:
            return self._refuse("malformed")
        head, mac = data[:_HEAD.size], data[_HEAD.size:]
        if not hmac.compare_digest(mac, hmac.new(self.key, head, hashlib.sha256).digest()):
            return self._refuse("forged")
        _, kind, state, ready, _, sender, seq, time_ms, nonce = _HEAD.unpack(head)
        if kind not in KINDS or state >= len(STATES) or ready > 1:
            return self._refuse("malformed")  # signed by someone with the key: a newer/broken peer
        if sender == self.me:
            return self._refuse("reflected")
        if abs(time_ms / 1000 - self.wallclock()) > self.window:
            return self._refuse("stale")
        if seq <= self.last_seq.get((sender, kind), 0):
            return self._refuse("replayed")
        self.last_seq[(sender, kind)] = seq
        self.counts["accepted"] += 1
        return Packet(kind, STATES[state], bool(ready), sender, seq, time_ms, nonce)

    def _refuse(self, reason):
        self.counts[reason] += 1
        return None


def new_nonce() -> int:
    return int.from_bytes(os.urandom(8), "big")
