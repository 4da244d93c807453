"""A new flow's fast path in the compiled twin (issue 15, the SYN-flood row): decode's address
text written in C (decode._dotted_quad) and the Flow made by the type's allocator with its
fields set in C (flow._new_flow). Random and mutated frames (truncations, VLAN, IPv6,
fragments, bad checksums, random bytes) give the same packets, keys, flows and directions in
the compiled twin as in the pure module, through a small table that evicts."""
import ast
import functools
import json
import random
import struct
from pathlib import Path
from socket import inet_ntoa

import pytest
from twins import in_pure_python
from appliance import decode
from appliance.decode import LINKTYPE_ETHERNET, decode_frame
from appliance.flow import FlowTable, _key, _new_flow, flow_key, Flow
from appliance.ingress import ingress


def _csum(data):
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(rng, proto, l4, src, dst, frag=0):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), rng.getrandbits(16), frag, 64, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4


def _l4(rng, proto, src, dst, good_sum):
    """A TCP segment (SYN, SYN/ACK, ACK, FIN, RST, options), a UDP datagram or an ICMP echo."""
    sp, dp = rng.choice((80, 443, 53, 1024, 0)), rng.getrandbits(16)
    if rng.random() < 0.5:
        sp, dp = dp, sp
    body = bytes(rng.getrandbits(8) for _ in range(rng.choice((0, 0, 1, 7, 40))))
    if proto == 6:
        flags = rng.choice((0x02, 0x02, 0x12, 0x10, 0x11, 0x04, 0x18, 0x00, 0x3F))
        opts = rng.choice((b"", b"\x02\x04\x05\xb4\x01\x03\x03\x07", b"\x08\x0a" + bytes(8) + b"\x01\x01"))
        seg = struct.pack("!HHIIBBHHH", sp, dp, rng.getrandbits(32), rng.getrandbits(32),
                          (5 + len(opts) // 4) << 4, flags, 65535, 0, 0) + opts + body
    elif proto == 17:
        seg = struct.pack("!HHHH", sp, dp, 8 + len(body), 0) + body
    else:
        seg = struct.pack("!BBHHH", rng.choice((8, 0, 3)), 0, 0, rng.getrandbits(16), 1) + body
    if proto in (6, 17) and len(src) == 4:
        pseudo = src + dst + struct.pack("!BBH", 0, proto, len(seg))
        off = 16 if proto == 6 else 6
        s = _csum(pseudo + seg) if good_sum else rng.getrandbits(16)
        seg = seg[:off] + struct.pack("!H", s) + seg[off + 2:]
    return seg


def frames(seed, n):
    rng = random.Random(seed)
    hosts = [bytes([10, 0, 0, i]) for i in range(1, 6)] + [bytes([192, 168, 9, 9]), bytes([0, 0, 0, 0]),
                                                         bytes([255, 255, 255, 255]), bytes([100, 10, 1, 99])]
    out = []
    for _ in range(n):
        proto = rng.choice((6, 6, 6, 17, 1))
        src = rng.choice(hosts) if rng.random() < 0.7 else bytes(rng.getrandbits(8) for _ in range(4))
        dst = rng.choice(hosts)
        l4 = _l4(rng, proto, src, dst, rng.random() < 0.8)
        kind = rng.random()
        if kind < 0.1:                             # IPv6
            ip = struct.pack("!IHBB16s16s", 6 << 28, len(l4), 58 if proto == 1 else proto, 64,
                             b"\x20\x01" + bytes(13) + src[-1:], b"\xfe\x80" + bytes(13) + dst[-1:]) + l4
            etype = 0x86DD
        else:
            frag = rng.choice((0, 0, 0, 0x4000, 0x2000, 0x0001, 0x2005))   # DF, MF, offsets
            ip, etype = _ipv4(rng, proto, l4, src, dst, frag), 0x0800
        eth = b"\x02" * 6 + b"\x04" * 6
        if rng.random() < 0.15:                    # VLAN, sometimes two
            eth += struct.pack("!HH", 0x8100, rng.getrandbits(12))
            if rng.random() < 0.3:
                eth += struct.pack("!HH", 0x8100, 7)
        frame = bytearray(eth + struct.pack("!H", etype) + ip)
        m = rng.random()
        if m < 0.15:                               # cut anywhere
            frame = frame[:rng.randrange(len(frame) + 1)]
        elif m < 0.3:                              # a few bytes changed anywhere
            for _ in range(rng.randint(1, 4)):
                if frame:
                    frame[rng.randrange(len(frame))] = rng.getrandbits(8)
        out.append(bytes(frame))
    return out


@functools.cache
def _flow_slots():
    """Every name in Flow's __slots__, read from the pure source (the compiled type has none):
    a field the test does not list is still compared (review s14a: a wrong inspected_tc from
    _init_flow passed a hand-picked list)."""
    tree = ast.parse((Path(decode.__file__).parent / "flow.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == "Flow":
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and stmt.targets[0].id == "__slots__":
                    return tuple(ast.literal_eval(stmt.value))
    raise AssertionError("Flow.__slots__ not found")


def _value(v):
    """A field as JSON: plain values as they are, a flow neighbour by its key, an object by
    its type's name (made or not is what differs between a wrong and a right _init_flow)."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Flow):
        return ["flow", v.key.hex()]
    return type(v).__name__


def flow_fields(flow):
    return [[name, _value(getattr(flow, name, "<unset>"))] for name in _flow_slots()] + \
        [[name, _value(getattr(flow, name))] for name in ("isn", "src", "dst", "id", "state", "verdict", "direction",
                                                          "reason")]


PACKET_FIELDS = ("ts", "ip_version", "src", "dst", "proto", "sport", "dport", "tcp_flags", "seq", "ack", "urg_ptr",
                 "window", "wscale", "tsopt", "icmp_type", "icmp_code", "icmp_id", "payload", "ttl", "length", "l3",
                 "l4_off", "vlan", "frag", "unread", "anomalies", "encap", "src_raw", "dst_raw", "tunnel")


def packet_fields(p):
    """What decode wrote, every field (the compiled twin reads the IPv4 and TCP headers and the
    ethertype in C: review synpath), as JSON-able values with their types."""
    out = []
    for name in PACKET_FIELDS:
        v = getattr(p, name)
        out.append([name, type(v).__name__, v.hex() if isinstance(v, bytes) else repr(v)])
    return out


def trace(seed, n, max_flows):
    """What decode and FlowTable.lookup make of the frames, as JSON-able values."""
    table = FlowTable(max_flows, verify_checksums=True)
    out = []
    for i, frame in enumerate(frames(seed, n)):
        p = decode_frame(frame, LINKTYPE_ETHERNET, 1000.0 + i / 8)
        p.pcap_cnt, p.pcap_file = i + 1, "x.pcap"
        p.in_iface = ("eth0", "eth1", None, ingress("eth0", "eth1"), ingress("eth1", "eth0"))[i % 5]
        row = [p.src, p.dst, p.proto, p.sport, p.dport, sorted(p.anomalies), p.tcp_flags, p.frag is not None,
               packet_fields(p)]
        if not p.ip_version or not p.src or p.unread or p.quote is not None:   # as Inspector._process
            out.append(row)
            continue
        flow, to_server, ended = table.lookup(p)
        row += [flow_key(p).hex(), flow.key.hex(), to_server, p.from_initiator, p.discard,
                flow.sport, flow.dport, flow.proto, flow.src, flow.dst, flow.state, flow.tcp_seen, flow.isn,
                flow.pkts_ts, flow.pkts_tc, flow.bytes_ts, flow.bytes_tc, flow.start, flow.last,
                flow.pcap_cnt, flow.pcap_file, flow.id, flow.offloaded, flow.final, flow.alerted, flow.verdict,
                flow.direction, flow.reason, flow.in_iface,
                None if ended is None else [ended.key.hex(), ended.reason], flow_fields(flow)]
        out.append(row)
    out.append([len(table), table.total, table.evicted, table.evicted_by_class, sorted(table.by_proto.items())])
    return out


def test_decode_and_new_flows_agree_with_the_pure_module():
    for seed, n, max_flows in ((1, 1500, 40), (2, 1500, 1_000), (3, 600, 3)):
        here = json.loads(json.dumps(trace(seed, n, max_flows)))     # as the pure process gives it
        assert len(here) == n + 1
        assert here == in_pure_python("test_new_flow_twins", "trace", seed, n, max_flows), seed


def test_decode_reads_bytes_as_it_reads_a_bytearray():
    """The compiled twin's C reads are for bytes only: any other buffer takes struct's path,
    and both give the same packet (in pure Python, trivially)."""
    differ = set()
    for i, frame in enumerate(frames(7, 1500)):
        a = decode_frame(frame, LINKTYPE_ETHERNET, 3.0 + i)
        b = decode_frame(bytearray(frame), LINKTYPE_ETHERNET, 3.0 + i)
        for x, y in zip(packet_fields(a), packet_fields(b)):
            if x[0] in ("payload", "l3", "src_raw", "dst_raw"):   # a bytearray's slices are bytearrays
                if bytes.fromhex(x[2]) != bytes(getattr(b, x[0])):
                    differ.add(x[0])
            elif x != y:
                differ.add(x[0])
    assert not differ


def keys_made_by_hand():
    """flow_key of packets made otherwise than by decode (by hand, as tests and the ICMP
    quotes make them): the compiled _v4_key takes only decode's IPv4 TCP/UDP case."""
    from appliance.packet import Packet
    out = []
    for proto in (6, 17, 1, 58, 132):
        for sport, dport in ((80, 1024), (1024, 80), (7, 7), (0, 65535), (65535, 0), (70000, 1), (1, -1), (None, 1),
                             (True, 1)):
            for s, d in ((b"\x0a\0\0\x01", b"\x0a\0\0\x02"), (b"\x0a\0\0\x02", b"\x0a\0\0\x01"),
                         (b"\x0a\0\0\x01", b"\x0a\0\0\x01"), (b"", b""), (bytearray(b"\x01\x02\x03\x04"), b"\x01\x02\x03\x05"),
                         (b"\x20\x01" + bytes(14), b"\x0a\0\0\x01"), (b"\xff\0\0\0", b"\x00\xff\xff\xff")):
                for tunnel in (0, 7):
                    p = Packet(1.0)
                    p.proto, p.sport, p.dport, p.tunnel = proto, sport, dport, tunnel
                    p.icmp_type, p.icmp_id = 8, 77
                    p.src_raw, p.dst_raw = s, d
                    p.src, p.dst = "10.9.9.1", "10.9.9.2"
                    try:
                        key, side = _key(p)
                        out.append([key.hex(), side])
                    except Exception as e:
                        out.append(type(e).__name__)
    return out


def test_keys_made_by_hand_agree_with_the_pure_module():
    here = json.loads(json.dumps(keys_made_by_hand()))
    assert "error" in here and here == in_pure_python("test_new_flow_twins", "keys_made_by_hand")


def test_dotted_quad_is_inet_ntoa():
    rng = random.Random(4)
    edges = (0, 1, 9, 10, 11, 99, 100, 101, 199, 200, 249, 250, 255)
    raws = [bytes((a, b, c, d)) for a in edges for b in (0, 255) for c in edges for d in (9, 100)]
    raws += [bytes(rng.getrandbits(8) for _ in range(4)) for _ in range(5000)]
    for raw in raws:
        assert decode._dotted_quad(raw) == inet_ntoa(raw), raw
        assert decode._v4name(raw) == inet_ntoa(raw), raw
    for bad in (b"", b"\x01\x02\x03", b"\x01\x02\x03\x04\x05"):       # inet_ntoa's own error
        try:
            inet_ntoa(bad)
        except OSError as e:
            want = type(e)
        try:
            decode._dotted_quad(bad)
            raise AssertionError(bad)
        except OSError as e:
            assert type(e) is want


def new_flows(seed, n):
    """Every field of the flows _new_flow and Flow(...) make of the frames, as JSON."""
    out = []
    for i, frame in enumerate(frames(seed, n)):
        p = decode_frame(frame, LINKTYPE_ETHERNET, 5.0 + i)
        if not p.ip_version or not p.src or p.unread or p.quote is not None:
            continue
        p.in_iface = ("eth0", None, ingress("eth1", "eth0"))[i % 3]     # reverse: the pair turned around
        for reverse in (False, True):
            out.append([flow_fields(_new_flow(flow_key(p), p, reverse, -1)), flow_fields(Flow(flow_key(p), p, reverse))])
    return out


def test_new_flows_agree_with_the_pure_module():
    here = json.loads(json.dumps(new_flows(6, 300)))
    assert here and here == in_pure_python("test_new_flow_twins", "new_flows", 6, 300)


def test_new_flow_is_the_flow_the_type_makes():
    """_new_flow (the table's) and Flow(...) (everyone else's) give the same fields."""
    for i, frame in enumerate(frames(5, 400)):
        p = decode_frame(frame, LINKTYPE_ETHERNET, 5.0 + i)
        if not p.ip_version or not p.src or p.unread or p.quote is not None:
            continue
        for reverse in (False, True):
            a, b = _new_flow(flow_key(p), p, reverse, -1), Flow(flow_key(p), p, reverse)
            assert type(a) is type(b) is Flow
            for name in ("key", "sport", "dport", "proto", "state", "tcp_seen", "isn", "start", "last",
                         "pkts_ts", "bytes_tc", "offloaded", "final", "alerted", "verdict", "direction",
                         "reason", "in_iface", "pcap_cnt", "pcap_file", "older", "younger", "rare", "app",
                         "stream", "tcp", "cand_ts", "cand_tc", "verdict_rule", "src", "dst"):
                assert getattr(a, name) == getattr(b, name), name
            assert a == b.key and hash(a) == hash(b)


def pcap_records(directory, chunk=None):
    """What the pcap reader yields (and the error it ends with) for classic pcap files in each
    byte order and timestamp resolution, whole and cut at several points; `chunk`: the reader's
    read size (pcap._CHUNK, in the compiled twin too) instead of its own, so records straddle reads."""
    import sys
    from appliance.source import pcap
    from appliance.source.pcap import PcapError, packets
    mods = [m for m in (pcap, sys.modules.get("appliance.source._c_pcap")) if m is not None]
    saved = [m._CHUNK for m in mods]
    if chunk:
        for m in mods:
            m._CHUNK = chunk
    try:
        return _pcap_records(directory, PcapError, packets)
    finally:
        for m, v in zip(mods, saved):
            m._CHUNK = v


def _pcap_records(directory, PcapError, packets):
    out = []
    recs = frames(8, 60)
    for order, magic in (("<", 0xA1B2C3D4), (">", 0xA1B2C3D4), ("<", 0xA1B23C4D), (">", 0xA1B23C4D)):
        data = struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1)
        for i, r in enumerate(recs):
            data += struct.pack(order + "IIII", 1_700_000_000 + i, 999_999 - i, len(r), len(r) + 3) + r
        data += struct.pack(order + "IIII", 5, 6, 1 << 19, 0)        # an implausible length ends it
        for cut in (len(data), len(data) - 16, len(data) - 20, len(data) - 17, 30, 24, 10):
            path = Path(directory) / f"r{len(out)}.pcap"
            path.write_bytes(data[:cut])
            got = []
            try:
                for ts, buf, linktype, n in packets(str(path)):
                    got.append([repr(ts), buf.hex(), linktype, n])
            except PcapError as e:
                got.append(str(e).replace(str(path), "F"))
            out.append(got)
    return out


@pytest.mark.parametrize("chunk", [None, 16, 50, 300])
def test_pcap_records_agree_with_the_pure_module(tmp_path, chunk):
    here = json.loads(json.dumps(pcap_records(tmp_path, chunk)))
    recs = frames(8, 60)
    for whole in here[::7]:          # each file whole: every record as written, then the bad length
        assert [r[1:] for r in whole[:-1]] == [[r.hex(), 1, i + 1] for i, r in enumerate(recs)]
        assert "record length 524288 is implausible" in whole[-1]
    assert [float(r[0]) for r in here[0][:3]] == [1_700_000_000 + i + (999_999 - i) / 1e6 for i in range(3)]
    assert [float(r[0]) for r in here[14][:3]] == [1_700_000_000 + i + (999_999 - i) / 1e9 for i in range(3)]
    assert here == in_pure_python("test_new_flow_twins", "pcap_records", tmp_path, chunk)
