"""The flow table's per-packet accounting in the compiled twin (issue 15, docs/performance.md
"Thirteenth session"): _account, _tcp_state and _receiver_check read the packet's numbers into
C locals and do the 32-bit sequence arithmetic on C long longs. Hostile TCP conversations
(ISNs and timestamps at 0, 2**31 and 2**32-1 so every comparison wraps, segments before,
at, after and half a sequence space away from what each end expects, ACKs of unsent data,
SYN/RST/FIN mixes, window scales, PAWS, a SYN-proxied port, bad checksums) and hand-made
packets with numbers past 32 bits give the same directions, discards, anomalies, states,
tcp_seen bits and receiver numbers in the twin as in the pure module."""
import json
import random
import struct

from twins import in_pure_python
from test_new_flow_twins import _csum, _ipv4
from appliance.decode import LINKTYPE_ETHERNET, decode_frame
from appliance.flow import FlowTable
from appliance.packet import Packet

M = 2 ** 32
EDGES = (0, 1, 2, M - 1, M - 2, M - 3, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 1)
RECEIVER = ("s_nxt", "s_una", "s_acked0", "s_rcv", "s_wup", "c_nxt", "max_window", "wscale", "ts_recent",
            "syn_ignored", "ack_offset", "bytes_acked", "synack_ack", "synack_opts")
# mostly what a connection carries (ACKs, data, handshakes), then every mix once
FLAGS = (0x10,) * 8 + (0x18,) * 6 + (0x02, 0x12) * 3 + (0x11, 0x04, 0x14, 0x01, 0x00, 0x06, 0x03, 0x13, 0x16, 0x3F, 0x19)


def _near(rng, x):
    """A number a hostile or a confused peer would send where `x` is expected."""
    r = rng.random()
    if r < 0.45:
        return x % M
    if r < 0.75:
        return (x + rng.choice((-2, -1, 1, 2, 3, 100, -100, 70000, -70000))) % M
    if r < 0.85:
        return (x + rng.choice((2 ** 31, 2 ** 31 - 1, 2 ** 31 + 1))) % M
    if r < 0.95:
        return rng.choice(EDGES)
    return rng.getrandbits(32)


def _segment(rng, src, dst, sp, dp, flags, seq, ack, payload, good_sum, opts):
    seg = struct.pack("!HHIIBBHHH", sp, dp, seq, ack, (5 + len(opts) // 4) << 4, flags,
                      rng.choice((0, 1, 512, 65535)), 0, 0) + opts + payload
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
    s = _csum(pseudo + seg) if good_sum else (_csum(pseudo + seg) + 1) & 0xFFFF
    seg = seg[:16] + struct.pack("!H", s) + seg[18:]
    eth = b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00"
    return eth + _ipv4(rng, 6, seg, src, dst)


def _options(rng, tsval):
    opts = b""
    if rng.random() < 0.5:
        opts += b"\x01\x03\x03" + bytes([rng.choice((0, 7, 14, 15))])      # window scale (15: capped)
    if rng.random() < 0.5:
        opts += b"\x01\x01\x08\x0a" + struct.pack("!II", tsval % M, rng.choice(EDGES))
    return opts + b"\x00" * (-len(opts) % 4)


def conversation_frames(seed, n, convs):
    """Frames of a few TCP conversations between two hosts, each end tracking what it sent
    and got, and sending numbers near (or far from) them."""
    rng = random.Random(seed)
    a, b = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
    ends = []
    for i in range(convs):                  # over 16 (the table's size): evictions, flows picked up late
        c_isn, s_isn = rng.choice(EDGES), rng.choice(EDGES)
        ends.append({"ports": (40000 + i, rng.choice((80, 443))), "nxt": [c_isn, s_isn],
                      "ts": [rng.choice(EDGES), rng.choice(EDGES)]})
    for _ in range(n):
        conv = rng.choice(ends)
        end = rng.random() < 0.45                        # 1: the server (port 80/443) sends
        sp, dp = conv["ports"][::-1] if end else conv["ports"]
        src, dst = (b, a) if end else (a, b)
        flags = rng.choice(FLAGS)
        if rng.random() < 0.03:
            conv["nxt"][end] = rng.choice(EDGES)          # a new ISN: port reuse, a forged segment
        seq = _near(rng, conv["nxt"][end])
        ack = _near(rng, conv["nxt"][1 - end])
        payload = bytes(rng.choice((0, 0, 1, 3, 40)))
        conv["ts"][end] += rng.choice((0, 1, 5, -3, 2 ** 31, 1000))
        opts = _options(rng, conv["ts"][end]) if rng.random() < 0.7 else b""
        conv["nxt"][end] = (seq + len(payload) + (flags & 1) + (flags >> 1 & 1)) % M
        yield _segment(rng, src, dst, sp, dp, flags, seq, ack, payload, rng.random() < 0.9, opts)


def _row(table, p):
    flow, to_server, ended = table.lookup(p)
    t = flow.tcp
    rcv = None if t is None else [getattr(t, name) for name in RECEIVER]
    return [bool(to_server), p.from_initiator, p.discard, list(p.anomalies), flow.state, flow.tcp_seen, flow.isn,
            flow.pkts_ts, flow.pkts_tc, flow.bytes_ts, flow.bytes_tc, flow.flags_ts, flow.flags_tc, flow.last,
            flow.pcap_cnt, rcv, None if ended is None else ended.reason, table.total, len(table)]


def accounting_trace(seed, n, verify, proxied, convs):
    table = FlowTable(16, verify_checksums=verify, proxied_ports=frozenset({443} if proxied else ()))
    out = []
    for i, frame in enumerate(conversation_frames(seed, n, convs)):
        # an epoch's stamps (no float32 holds them: flow.last is a double) that go back too
        p = decode_frame(frame, LINKTYPE_ETHERNET, 1764683000.0 + (i % 97) * 0.001)
        p.pcap_cnt = i + 1
        out.append(_row(table, p))
    return out


def hand_made_trace(seed, n):
    """Packets made by hand (no raw addresses: the key reads their text) with sequence numbers,
    ACKs and timestamps past 32 bits and negative: the pure module's ints, the twin's long longs."""
    rng = random.Random(seed)
    table = FlowTable(8)
    big = (0, M - 1, M, M + 1, 2 * M - 1, 2 ** 40, -1, -(2 ** 31), 2 ** 62)
    out = []
    for i in range(n):
        p = Packet(1764683000.0 + (i % 50) * 0.001)
        p.ip_version, p.proto = 4, 6
        server = rng.random() < 0.5
        p.src, p.dst = ("10.9.0.2", "10.9.0.1") if server else ("10.9.0.1", "10.9.0.2")
        p.sport, p.dport = (80, 5555 + i % 2) if server else (5555 + i % 2, 80)
        p.tcp_flags = rng.choice(FLAGS)
        p.seq, p.ack = rng.choice(big) + rng.choice((0, 1, -1)), rng.choice(big) + rng.choice((0, 1, -1))
        p.payload = bytes(rng.choice((0, 2)))
        p.length = rng.choice((40, 65535, 2 ** 33))          # the byte counters are 64-bit
        p.window = rng.choice((0, 1000))
        p.wscale = rng.choice((None, 0, 3, 20))
        p.tsopt = rng.choice((None, (rng.choice(big), 0)))
        try:
            out.append(_row(table, p))
        except (OverflowError, TypeError, ValueError) as e:     # the same failure, whatever it is
            out.append(["error", type(e).__name__])
    return out


def test_accounting_agrees_with_the_pure_module():
    discards, anomalies = set(), set()
    for seed, n, verify, proxied, convs in ((1, 2000, False, False, 6), (2, 2000, True, False, 6),
                                            (3, 2000, False, True, 6), (4, 2000, True, True, 30),
                                            (5, 2000, False, True, 30)):
        here = json.loads(json.dumps(accounting_trace(seed, n, verify, proxied, convs)))
        assert here == in_pure_python("test_flow_accounting_twins", "accounting_trace", seed, n, verify, proxied,
                                      convs), seed
        discards |= {row[2] for row in here}
        anomalies |= {a for row in here for a in row[3]}
    # the traces cover what they are for: every discard _tcp_state and _receiver_check make
    assert discards == {"", "tcp.no_ack", "tcp.ack_unsent", "tcp.ack_too_old", "tcp.rst_not_exact",
                        "tcp.syn_on_established", "tcp.paws_discard", "tcp.invalid_checksum"}, discards
    assert anomalies == {"tcp.synproxy_ack_unknown", "tcp.handshake_ambiguous"}


def test_hand_made_numbers_agree_with_the_pure_module():
    here = json.loads(json.dumps(hand_made_trace(7, 1500)))
    assert here == in_pure_python("test_flow_accounting_twins", "hand_made_trace", 7, 1500)
