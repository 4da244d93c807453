"""Generated hostile frames for the compiled-vs-pure comparison (test_compiled_equivalence):
`python3 hostile_frames.py SEED N` decodes N frames and tracks their flows, then prints
which build ran and one digest of every decoded field, flow state and eviction.

Real captures rarely reach what a typed C variable would get wrong: boundary lengths and
offsets (IHL 0-15, TCP data offset 0-15, IPv4 total length and IPv6 payload length at
0/0xffff and near the data's length), fragment offsets with every flag, IPv6 extension
header chains up to past MAX_IPV6_EXTHDRS with 0/255 lengths, VLAN stacks past
MAX_VLAN_LAYERS, ICMP errors quoting such packets, every link type, 32-bit sequence numbers
at the wrap, then cuts and byte flips on top."""
import hashlib
import random
import struct
import sys

from appliance import compiled
from appliance.decode import decode_frame, decode_l3
from appliance.flow import FlowTable
from appliance.packet import Packet

EDGES16 = [0, 1, 2, 7, 8, 19, 20, 39, 40, 60, 127, 128, 255, 256, 0x1FFF, 0x2000, 0x3FFF, 0x7FFF, 0x8000,
           0xE000, 0xFFF8, 0xFFF9, 0xFFFE, 0xFFFF]
EDGES32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF]
# transports, extension headers (hop-by-hop, routing, fragment, ESP, AH, none, dest opts), others
PROTOS = [6, 17, 1, 58, 0, 43, 44, 50, 51, 59, 60, 47, 255]


class Frames:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def raw(self, n):
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def u16(self):
        return self.r.choice(EDGES16) if self.r.random() < 0.5 else self.r.getrandbits(16)

    def u32(self):
        return self.r.choice(EDGES32) if self.r.random() < 0.5 else self.r.getrandbits(32)

    def proto(self):
        return self.r.choice(PROTOS) if self.r.random() < 0.9 else self.r.getrandbits(8)

    def transport(self, proto, depth):
        r = self.r
        if proto == 6:
            opts = bytes(r.choice([0, 1, 2, 3, 4, 8, 5, 255]) if r.random() < 0.6 else r.getrandbits(8)
                         for _ in range(r.randrange(44)))
            return struct.pack("!HHIIHHHH", self.u16(), self.u16(), self.u32(), self.u32(),
                               r.randrange(16) << 12 | r.getrandbits(9), self.u16(), 0, self.u16()) \
                + opts + self.raw(r.randrange(30))
        if proto == 17:
            return struct.pack("!HHHH", self.u16(), self.u16(), self.u16(), 0) + self.raw(r.randrange(30))
        if proto in (1, 58):
            inner = self.ip(depth + 1) if depth < 2 and r.random() < 0.6 else self.raw(r.randrange(50))
            return struct.pack("!BBHHH", r.choice([0, 3, 4, 5, 8, 11, 12, 2, 128, 129, 135, r.getrandbits(8)]),
                               r.getrandbits(8), 0, self.u16(), self.u16()) + inner
        return self.raw(r.randrange(40))

    def ipv4(self, depth):
        r = self.r
        ihl = r.choice([5, 5, 5, 6, 15, 4, 0, 1, r.randrange(16)])
        opts = bytes(r.choice([0, 1, 7, 68, 130, 148, 2, 255, 40]) if r.random() < 0.5 else r.getrandbits(8)
                     for _ in range(max(0, ihl * 4 - 20)))
        proto = self.proto()
        body = self.transport(proto, depth)
        n = 20 + len(opts) + len(body)
        total = r.choice([n, n, self.u16(), n - r.randrange(40), n + r.randrange(40)]) & 0xFFFF
        fo = r.choice([0, 0, 0x4000, 0x2000, 0x2001, 0x0001, 0x1FFF, self.u16()])
        version = 4 if r.random() < 0.95 else r.getrandbits(4)
        return struct.pack("!BBHHHBBH4s4s", version << 4 | ihl, 0, total, self.u16(), fo, r.getrandbits(8),
                           proto, 0, self.raw(4), self.raw(4)) + opts + body

    def ipv6(self, depth):
        r = self.r
        first = nh = self.proto()
        chain = []
        for _ in range(r.randrange(6) if r.random() < 0.7 else r.randrange(80)):
            nxt = self.proto()
            if nh in (0, 43, 60, 51):
                ln = r.choice([0, 0, 1, 4, 255, r.getrandbits(8)])
                size = ((ln + 2) * 4 if nh == 51 else (ln + 1) * 8) - 2
                chain.append(bytes([nxt, ln]) + self.raw(min(size, 60) if r.random() < 0.8 else r.randrange(10)))
            elif nh == 44:
                chain.append(struct.pack("!BBHI", nxt, 0, self.u16(), self.u32()))
            else:
                break
            nh = nxt
        payload = b"".join(chain) + (self.transport(nh, depth) if r.random() < 0.9 else self.raw(r.randrange(20)))
        n = len(payload)
        plen = r.choice([n, n, 0, self.u16(), max(0, n - r.randrange(30)), n + r.randrange(30)]) & 0xFFFF
        version = 6 if r.random() < 0.95 else r.getrandbits(4)
        return struct.pack("!IHBB16s16s", version << 28 | r.getrandbits(20), plen, first, r.getrandbits(8),
                           self.raw(16), self.raw(16)) + payload

    def ip(self, depth=0):
        return self.ipv4(depth) if self.r.random() < 0.5 else self.ipv6(depth)

    def frame(self):
        """(link type, frame bytes)"""
        r = self.r
        linktype = r.choice([1, 1, 1, 101, 113, 276, 0, 108, 228, 229, 12, 999])
        l3 = self.ip()
        if linktype == 1:
            etype = r.choice([0x0800, 0x86DD, 0x0806, 0x8847, 0x0100, 0x8100, self.u16()])
            tags = [r.choice([0x8100, 0x88A8, 0x9100]) for _ in range(r.choice([0, 0, 1, 2, 8, 9, 20]))]
            head = self.raw(12) + struct.pack("!H", tags[0] if tags else etype)
            for i in range(len(tags)):
                head += struct.pack("!HH", self.u16(), tags[i + 1] if i + 1 < len(tags) else etype)
            data = head + l3
        elif linktype == 113:
            data = self.raw(14) + struct.pack("!H", r.choice([0x800, 0x86DD, 0x8100])) + l3
        elif linktype == 276:
            data = struct.pack("!H", r.choice([0x800, 0x86DD, 0x8100])) + self.raw(18) + l3
        elif linktype in (0, 108):
            af = r.choice([2, 10, 24, 28, 30, 2 << 24, 10 << 24, 30 << 24, r.getrandbits(32)])
            data = struct.pack("!I", af) + l3
        else:
            data = l3
        damage = r.random()
        if damage < 0.15 and data:
            data = data[:r.randrange(len(data))]
        elif damage < 0.3 and data:
            b = bytearray(data)
            for _ in range(r.randrange(1, 4)):
                b[r.randrange(len(b))] = r.getrandbits(8)
            data = bytes(b)
        return linktype, data


def fields(p):
    if p is None:
        return "None"
    return "|".join(f"{f}={fields(p.quote) if f == 'quote' else repr(getattr(p, f))}" for f in Packet.__slots__)


def digest(seed, n, max_flows=200):
    frames = Frames(seed)
    table = FlowTable(max_flows=max_flows, verify_checksums=True)
    h = hashlib.sha256()
    for i in range(n):
        linktype, data = frames.frame()
        ts = i * 0.5
        try:
            if frames.r.random() < 0.8:
                p = decode_frame(data, linktype, ts)
            else:
                p = decode_l3(data[14:] if linktype == 1 else data, ts)
            line = fields(p)
            if p.ip_version and not p.unread and not p.encap:
                flow, to_server, ended = table.lookup(p)
                line += f" {flow.key} {flow.state} {flow.tcp_seen} {p.discard} {to_server} {ended and ended.key}"
                if i % 97 == 0:
                    line += repr([f.key for f in table.expire(ts)])
        except Exception as e:              # must not happen; if it does, both builds must agree
            line = f"{type(e).__name__}: {e}"
        h.update(line.encode())
    return h.hexdigest()


if __name__ == "__main__":
    d = digest(int(sys.argv[1]), int(sys.argv[2]))
    print(compiled.describe())
    print(d)
