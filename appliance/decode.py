"""Raw bytes -> Packet: the first stage of the hot path.

Hand-written `struct` parsing, one pass, no allocation beyond the Packet, the
address strings and the payload slice. Malformed input never raises: what is
wrong goes into `Packet.anomalies` under Suricata's event names (decoder.* where
Suricata has none) and whatever could be decoded is kept.

Entry points: `decode_l3` for a bare IPv4/IPv6 packet (what NFQUEUE delivers)
and `decode_frame` for a pcap frame of one of `SUPPORTED_LINKTYPES`.
"""

import struct
from socket import AF_INET6, inet_ntoa, inet_ntop

from .packet import ICMP, ICMPV6, TCP, UDP, Packet

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False

# pcap link types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_BSD = 12      # DLT_RAW as some BSDs number it
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset({
    LINKTYPE_NULL, LINKTYPE_ETHERNET, LINKTYPE_RAW_BSD, LINKTYPE_RAW, LINKTYPE_LOOP,
    LINKTYPE_LINUX_SLL, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_LINUX_SLL2,
})

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
VLAN_ETHERTYPES = frozenset({0x8100, 0x88A8, 0x9100})  # 802.1Q, 802.1ad, pre-standard QinQ
# Recognised but not decoded: counted by the caller through `encap`, no anomaly.
UNSUPPORTED_ETHERTYPES = {ETH_ARP: "arp", 0x8847: "mpls", 0x8848: "mpls",
                          0x8863: "pppoe", 0x8864: "pppoe"}
MAX_VLAN_LAYERS = 8        # deeper stacks are hostile, not real networks
# Linux (ipv6_skip_exthdr, what conntrack keys on) follows any number of extension headers
# within the packet; real traffic carries a handful. Past this many the transport is not
# read (Packet.unread): bounded work per packet, and the Inspector never offloads it.
MAX_IPV6_EXTHDRS = 64

AF_INET_BSD = 2
AF_INET6_BSD = frozenset({10, 24, 28, 30})  # Linux, Net/Open/FreeBSD, FreeBSD, Darwin

# IPv6 extension headers walked to reach the transport.
HOPOPTS, ROUTING, FRAGMENT, ESP, AH, NONEXT, DSTOPTS = 0, 43, 44, 50, 51, 59, 60

_ip4 = struct.Struct("!BxHHHBB2x4s4s").unpack_from    # vihl, totlen, ident, flags|off, ttl, proto, src, dst
_ip6 = struct.Struct("!I H B B 16s 16s").unpack_from  # ver|tc|flow, plen, nh, hlim, src, dst
_tcp = struct.Struct("!HHIIHH").unpack_from           # sport, dport, seq, ack, offset|flags, window
_ports = struct.Struct("!HHH").unpack_from            # sport, dport, udp length
_vlan = struct.Struct("!HH").unpack_from             # tci, inner ethertype
_icmp = struct.Struct("!BBxxH").unpack_from           # type, code, echo id
_u16 = struct.Struct("!H").unpack_from
_u32 = struct.Struct("!I").unpack_from
_frag6 = struct.Struct("!BxHI").unpack_from           # nh, offset|M, ident

# TCP options with a fixed length (kind -> length) that a validator can check.
_TCP_OPT_LEN = {2: 4, 3: 3, 4: 2, 8: 10}
ICMP_ECHO = frozenset({0, 8})
ICMPV6_ECHO = frozenset({128, 129})


# Address text by raw bytes: inet_ntoa/inet_ntop cost more than a dict hit and
# flows repeat addresses. Cleared when large so a spoofed-source flood cannot grow them.
_V4_NAMES = {}
_V6_NAMES = {}
ADDRESS_CACHE_SIZE = 65536


def _v4name(raw, _cache=_V4_NAMES):
    name = _cache.get(raw)
    if name is None:
        if len(_cache) >= ADDRESS_CACHE_SIZE:
            _cache.clear()
        name = _cache[raw] = _dotted_quad(raw)
    return name


def _dotted_quad(raw):
    """inet_ntoa(raw). Compiled, written in C from the 4 bytes: a spoofed flood's every source
    is a cache miss, and inet_ntoa through Python cost ~2.4k instructions of a SYN's decode."""
    if not COMPILED or type(raw) is not bytes or len(raw) != 4:
        return inet_ntoa(raw)        # the reference (and its error for anything but 4 bytes)
    r = raw                          # compiled: a pointer to the bytes' own buffer
    text = cython.declare(cython.char[16])
    n = 0
    for i in range(4):
        v = r[i]
        if v >= 100:
            text[n] = 48 + v // 100
            n += 1
        if v >= 10:
            text[n] = 48 + v // 10 % 10
            n += 1
        text[n] = 48 + v % 10
        n += 1
        text[n] = 46                 # '.'
        n += 1
    return text[:n - 1].decode("ascii")


def _v6name(raw, _cache=_V6_NAMES):
    name = _cache.get(raw)
    if name is None:
        if len(_cache) >= ADDRESS_CACHE_SIZE:
            _cache.clear()
        name = _cache[raw] = inet_ntop(AF_INET6, raw)
    return name


def decode_l3(data: bytes, ts: float = 0.0) -> Packet:
    """Decode a raw IPv4/IPv6 packet; the version comes from the first nibble."""
    p = Packet(ts)
    _ip(p, data, "ipraw.invalid_ip_version")
    return p


def _ip(p, data, bad_version):
    if not data:
        p.anomalies.append("ipraw.pkt_too_small")
        return
    v = data[0] >> 4
    if v == 4:
        _ipv4(p, data)
    elif v == 6:
        _ipv6(p, data)
    else:
        p.anomalies.append(bad_version)


def _ipv4(p, data):
    n = len(data)
    if n < 20:
        p.anomalies.append("ipv4.pkt_too_small")
        return
    if COMPILED and type(data) is bytes:
        # compiled: the header's fields read from the bytes' own buffer in C (_ip4's struct
        # call, its tuple and eight objects cost ~1k instructions of every IPv4 packet)
        r = data
        vihl, ttl, proto = r[0], r[8], r[9]
        total, ident, fo = r[2] * 256 + r[3], r[4] * 256 + r[5], r[6] * 256 + r[7]   # (no C shifts: test_compiled_no_c_shifts)
        src, dst = r[12:16], r[16:20]
    else:
        vihl, total, ident, fo, ttl, proto, src, dst = _ip4(data)
    if vihl >> 4 != 4:
        p.anomalies.append("ipv4.wrong_ip_version")
        return
    p.ip_version = 4
    p.src = _v4name(src)
    p.dst = _v4name(dst)
    p.src_raw, p.dst_raw = src, dst      # the flow key's (flow._key): no text-to-bytes lookup per packet
    p.ttl = ttl
    p.proto = proto
    hlen = (vihl & 15) << 2
    if hlen < 20:
        p.anomalies.append("ipv4.hlen_too_small")
        p.length, p.l3, p.unread = n, data, True
        return
    if total < hlen:
        p.anomalies.append("ipv4.iplen_smaller_than_hlen")
        p.length, p.l3, p.unread = n, data, True
        return
    p.length = total
    if total < n:           # link-layer padding (short Ethernet frames) is not the packet
        data = data[:total]
        n = total
    elif total > n:         # snaplen or a lying length: decode what is there
        p.anomalies.append("ipv4.trunc_pkt")
        if hlen > n:
            p.l3, p.unread = data, True
            return
    p.l3 = data
    if hlen > 20:
        _ipv4_options(p, data, hlen)
    if fo & 0x3FFF:         # MF or a fragment offset: a piece of a datagram
        off = (fo & 0x1FFF) << 3
        p.frag = (ident, off, bool(fo & 0x2000))
        if off or not _transport_complete(proto, data, hlen, n):
            return          # transport header is not (all) here; defrag will rebuild it
    _transport(p, proto, data, hlen, n, 4)


def _ipv4_options(p, data, hlen):
    # Options are skipped; the walk only checks that their lengths fit (bounded by hlen <= 60).
    i = 20
    while i < hlen:
        kind = data[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hlen or data[i + 1] < 2 or i + data[i + 1] > hlen:
            p.anomalies.append("ipv4.opt_invalid_len")
            return
        i += data[i + 1]


def _transport_complete(proto, data, off, end):
    have = end - off
    if proto == TCP:
        return have >= 20 and have >= (data[off + 12] >> 4) << 2
    if proto == UDP or proto == ICMP or proto == ICMPV6:
        return have >= 8
    return True


def _ipv6(p, data):
    n = len(data)
    if n < 40:
        p.anomalies.append("ipv6.pkt_too_small")
        return
    vtf, plen, nh, hlim, src, dst = _ip6(data)
    if vtf >> 28 != 6:
        p.anomalies.append("ipv6.wrong_ip_version")
        return
    p.ip_version = 6
    p.src = _v6name(src)
    p.dst = _v6name(dst)
    p.src_raw, p.dst_raw = src, dst
    p.ttl = hlim
    total = 40 + plen
    if plen == 0 and nh == HOPOPTS and n > 40:
        total = n           # jumbogram: the length lives in a hop-by-hop option
    p.length = total
    if total < n:
        data = data[:total]
        n = total
    elif total > n:
        p.anomalies.append("ipv6.trunc_pkt")
    p.l3 = data
    off = 40
    if nh != TCP and nh != UDP and nh != ICMPV6:
        nh, off = _ipv6_exthdrs(p, data, nh, n)
        if off < 0:
            p.unread = True
            return
    p.proto = nh
    if p.frag is not None and (p.frag[1] or not _transport_complete(nh, data, off, n)):
        return
    _transport(p, nh, data, off, n, 6)


# Per IP version: its ICMP, the echo types, the too-small event, and the other
# version's ICMP, which is an anomaly when carried here.
_ICMP_OF = {
    4: (ICMP, ICMP_ECHO, "icmpv4.pkt_too_small", ICMPV6, "ipv4.icmpv6"),
    6: (ICMPV6, ICMPV6_ECHO, "icmpv6.pkt_too_small", ICMP, "ipv6.icmpv4"),
}


def _transport(p, proto, data, off, n, version):
    p.l4_off = off
    if proto == TCP:
        _tcp_segment(p, data, off, n)
    elif proto == UDP:
        _udp_datagram(p, data, off, n)
    else:
        icmp, echo, too_small, foreign, foreign_event = _ICMP_OF[version]
        if proto == icmp:
            _icmp_message(p, data, off, n, echo, too_small, version)
        else:
            if proto == foreign:
                p.anomalies.append(foreign_event)
            p.payload = data[off:]


def _ipv6_exthdrs(p, data, nh, n):
    """Walk the extension-header chain; return (transport protocol, its offset), offset -1 to stop."""
    off = 40
    seen = 0                # bit per header kind, for the duplicate events
    dupl = 0                # bit per duplicate event already reported: once per packet
    dstopts = 0
    for _ in range(MAX_IPV6_EXTHDRS):
        if nh == HOPOPTS or nh == ROUTING or nh == DSTOPTS or nh == AH:
            if off + 2 > n:
                p.anomalies.append("ipv6.trunc_exthdr")
                p.proto = nh
                return nh, -1
            hlen = (data[off + 1] + 2) << 2 if nh == AH else (data[off + 1] + 1) << 3
            if off + hlen > n:
                p.anomalies.append("ipv6.trunc_exthdr")
                p.proto = nh
                return nh, -1
            if nh == HOPOPTS:
                if seen & 1 and not dupl & 1:
                    dupl |= 1
                    p.anomalies.append("ipv6.exthdr_dupl_hh")
                seen |= 1
            elif nh == ROUTING:
                if seen & 2 and not dupl & 2:
                    dupl |= 2
                    p.anomalies.append("ipv6.exthdr_dupl_rh")
                seen |= 2
                if hlen >= 4 and data[off + 2] == 0 and not dupl & 32:
                    dupl |= 32
                    p.anomalies.append("ipv6.rh_type_0")
            elif nh == DSTOPTS:
                dstopts += 1
                if dstopts == 3:  # one before the routing header and one after are legal
                    p.anomalies.append("ipv6.exthdr_dupl_dh")
            else:
                if seen & 4 and not dupl & 4:
                    dupl |= 4
                    p.anomalies.append("ipv6.exthdr_dupl_ah")
                seen |= 4
            nh = data[off]
            off += hlen
        elif nh == FRAGMENT:
            if off + 8 > n:
                p.anomalies.append("ipv6.trunc_exthdr")
                p.proto = nh
                return nh, -1
            nxt, fo, ident = _frag6(data, off)
            if seen & 8 and not dupl & 8:
                dupl |= 8
                p.anomalies.append("ipv6.exthdr_dupl_fh")
            seen |= 8
            off += 8
            nh = nxt
            if fo == 0:
                # Atomic fragment (RFC 6946): a whole datagram, processed as one.
                if not dupl & 16:
                    dupl |= 16
                    p.anomalies.append("ipv6.exthdr_useless_fh")
            elif p.frag is None:
                p.frag = (ident, fo & 0xFFF8, bool(fo & 1))
                if fo & 0xFFF8:
                    return nh, off  # the rest of the chain is in the first fragment
        elif nh == NONEXT:
            if off < n:
                p.anomalies.append("ipv6.data_after_none_header")
            return nh, off
        else:               # transport, ESP or something opaque ends the chain
            return nh, off
    p.anomalies.append("decoder.ipv6.too_many_exthdrs")
    p.proto = nh
    return nh, -1


def ipv6_fragment_header(l3: bytes):
    """(offset of the fragment header, index of the next-header byte naming it), or None.

    Defrag uses this to cut the fragment header out of a reassembled datagram. Atomic
    fragment headers (offset 0, M=0: RFC 6946) are stepped over, as Linux does.
    """
    n = len(l3)
    if n < 40:
        return None
    nh, at, off = l3[6], 6, 40
    for _ in range(MAX_IPV6_EXTHDRS):
        if nh == FRAGMENT:
            if off + 8 > n:
                return None
            if _u16(l3, off + 2)[0] & 0xFFF9:
                return off, at
            # an atomic fragment (offset 0, no more): Linux steps over it and reassembles
            # by the next fragment header, if any
            at, nh = off, l3[off]
            off += 8
            continue
        if nh != HOPOPTS and nh != ROUTING and nh != DSTOPTS and nh != AH:
            return None
        if off + 2 > n:
            return None
        at = off
        hlen = (l3[off + 1] + 2) << 2 if nh == AH else (l3[off + 1] + 1) << 3
        nh = l3[off]
        off += hlen
    return None


def _tcp_segment(p, data, off, end):
    have = end - off
    if have < 20:
        p.anomalies.append("tcp.pkt_too_small")
        p.unread = True
        return
    if COMPILED and type(data) is bytes:
        # compiled: the header read from the bytes' own buffer in C (as in _ipv4)
        r = data
        o = off
        sport, dport, window = r[o] * 256 + r[o + 1], r[o + 2] * 256 + r[o + 3], r[o + 14] * 256 + r[o + 15]
        seq, ack, of = r[o + 4], r[o + 8], r[o + 12] * 256 + r[o + 13]
        for i in range(1, 4):
            seq = seq * 256 + r[o + 4 + i]
            ack = ack * 256 + r[o + 8 + i]
    else:
        sport, dport, seq, ack, of, window = _tcp(data, off)
    p.sport, p.dport, p.seq, p.ack, p.window = sport, dport, seq, ack, window
    p.tcp_flags = of & 0xFF
    if of & 0x20:           # URG: the receiver takes the urgent byte out of the stream
        p.urg_ptr = (data[off + 18] << 8) | data[off + 19]
    hlen = (of >> 12) << 2
    if hlen < 20 or hlen > have:
        p.anomalies.append("tcp.hlen_too_small")
        return
    if hlen > 20:
        _tcp_options(p, data, off + 20, off + hlen)
    p.payload = data[off + hlen:end]


def _tcp_options(p, data, i, end):
    """Check the option list; keep what the receiver's TCP acts on: window scale (kind 3)
    and timestamps (kind 8, for PAWS)."""
    while i < end:
        kind = data[i]
        if kind == 0:
            return
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            p.anomalies.append("tcp.opt_invalid_len")
            return
        olen = data[i + 1]
        if olen < 2 or i + olen > end or _TCP_OPT_LEN.get(kind, olen) != olen:
            p.anomalies.append("tcp.opt_invalid_len")
            return
        if kind == 8:
            p.tsopt = (_u32(data, i + 2)[0], _u32(data, i + 6)[0])
        elif kind == 3:
            p.wscale = data[i + 2]
        i += olen


def _udp_datagram(p, data, off, end):
    have = end - off
    if have < 8:
        p.anomalies.append("udp.hlen_too_small")
        p.unread = True
        return
    p.sport, p.dport, ulen = _ports(data, off)
    if p.frag is not None:  # the length field covers the whole datagram, not this piece
        p.payload = data[off + 8:end]
        return
    if ulen < 8:
        p.anomalies.append("udp.hlen_invalid")
        p.payload = data[off + 8:end]
        return
    if ulen > have:
        p.anomalies.append("udp.pkt_too_small")
    elif ulen < have:
        p.anomalies.append("udp.len_invalid")
        end = off + ulen
    p.payload = data[off + 8:end]


def _icmp_message(p, data, off, end, echo_types, too_small, version):
    have = end - off
    if have < 8:
        p.anomalies.append(too_small)
        p.unread = True     # no echo id: not the ICMP flow conntrack sees
        if have >= 2:
            p.icmp_type, p.icmp_code = data[off], data[off + 1]
        return
    t, p.icmp_code, ident = _icmp(data, off)
    p.icmp_type = t
    if t in echo_types:
        p.icmp_id = ident
    p.payload = data[off + 8:end]
    if (t in ICMP_ERRORS) if version == 4 else t < 128:
        p.quote = _quoted(p, data, off + 8, end, version)


# ICMP errors conntrack relates to the connection they quote: nf_conntrack_proto_icmp's
# icmp_is_err() (unreachable, source quench, redirect, time exceeded, parameter problem);
# for ICMPv6 every type below 128 (nf_conntrack_proto_icmpv6).
ICMP_ERRORS = frozenset({3, 4, 5, 11, 12})
_QUOTE_BAD = {4: ("icmpv4.ipv4_unknown_ver", "icmpv4.ipv4_trunc_pkt"),
              6: ("icmpv6.ipv6_unknown_version", "icmpv6.ipv6_trunc_pkt")}


def _quoted(p, data, off, end, version):
    """The packet an ICMP error quotes, down to its ports (or echo id), as a Packet; None
    with an anomaly when it cannot be read that far (conntrack then relates the error to
    nothing either). Only the first bytes of the quoted transport are there (RFC 792: 8)."""
    bad_version, trunc = _QUOTE_BAD[version]
    q = Packet(p.ts)
    have = end - off
    if have < 1 or data[off] >> 4 != version:
        p.anomalies.append(bad_version if have >= 1 else trunc)
        return None
    if version == 4:
        if have < 20 or (data[off] & 15) < 5:
            p.anomalies.append(trunc)
            return None
        _, _, _, fo, _, proto, src, dst = _ip4(data, off)
        q.src, q.dst = _v4name(src), _v4name(dst)
        q.src_raw, q.dst_raw = src, dst
        l4 = off + ((data[off] & 15) << 2)
        if fo & 0x1FFF:     # a later fragment: no transport header; conntrack keys it by addresses
            l4 = -1
    else:
        if have < 40:
            p.anomalies.append(trunc)
            return None
        _, _, proto, _, src, dst = _ip6(data, off)
        q.src, q.dst = _v6name(src), _v6name(dst)
        q.src_raw, q.dst_raw = src, dst
        proto, l4 = _quoted_exthdrs(data, off, end, proto)
        if proto < 0:
            p.anomalies.append(trunc)
            return None
    q.ip_version, q.proto = version, proto
    if l4 >= 0 and proto in (TCP, UDP, ICMP, ICMPV6):
        if l4 + 8 > end:
            p.anomalies.append(trunc)
            return None
        if proto == TCP or proto == UDP:
            q.sport, q.dport = _u16(data, l4)[0], _u16(data, l4 + 2)[0]
        else:
            q.icmp_type, q.icmp_code, ident = _icmp(data, l4)
            if q.icmp_type in (ICMP_ECHO if proto == ICMP else ICMPV6_ECHO):
                q.icmp_id = ident
    return q


def _quoted_exthdrs(data, off, end, nh):
    """(transport protocol, its offset) behind a quoted IPv6 header's extension headers;
    offset -1 for a later fragment, protocol -1 when the chain is cut or too long."""
    at = off + 40
    for _ in range(MAX_IPV6_EXTHDRS):
        if nh == HOPOPTS or nh == ROUTING or nh == DSTOPTS or nh == AH:
            if at + 2 > end:
                return -1, -1
            nh, at = data[at], at + ((data[at + 1] + 2) << 2 if nh == AH else (data[at + 1] + 1) << 3)
        elif nh == FRAGMENT:
            if at + 8 > end:
                return -1, -1
            nxt, fo, _ = _frag6(data, at)
            if fo & 0xFFF8:
                return nxt, -1
            nh, at = nxt, at + 8
        else:
            return nh, at
    return -1, -1


def decode_frame(data: bytes, linktype: int, ts: float = 0.0) -> Packet:
    """Decode a pcap frame of the given link type down to the transport."""
    p = Packet(ts)
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            p.anomalies.append("ethernet.pkt_too_small")
            return p
        if COMPILED and type(data) is bytes:
            r = data                 # compiled: the ethertype read in C
            _ethertype(p, data, r[12] * 256 + r[13], 14)
        else:
            _ethertype(p, data, _u16(data, 12)[0], 14)
    elif linktype == LINKTYPE_RAW or linktype == LINKTYPE_RAW_BSD:
        _ip(p, data, "ipraw.invalid_ip_version")
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            p.anomalies.append("sll.pkt_too_small")
            return p
        _ethertype(p, data, _u16(data, 14)[0], 16)
    elif linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            p.anomalies.append("sll2.pkt_too_small")
            return p
        _ethertype(p, data, _u16(data, 0)[0], 20)
    elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
        if len(data) < 4:
            p.anomalies.append("ltnull.pkt_too_small")
            return p
        # The address family is in the capturing host's byte order (LOOP: network order,
        # though writers disagree); AF values are small, so the zero end tells which.
        af = _u32(data, 0)[0]
        if af > 0xFFFF:
            af = int.from_bytes(data[:4], "little")
        if af == AF_INET_BSD:
            _ipv4(p, data[4:])
        elif af in AF_INET6_BSD:
            _ipv6(p, data[4:])
        else:
            p.encap = f"af-{af}"
    elif linktype == LINKTYPE_IPV4:
        _ipv4(p, data)
    elif linktype == LINKTYPE_IPV6:
        _ipv6(p, data)
    else:
        p.encap = f"linktype-{linktype}"
    return p


def _ethertype(p, data, etype, off):
    vlan = None
    while etype != ETH_IPV4 and etype in VLAN_ETHERTYPES:    # (IPv4 first: no set lookup)
        if len(data) < off + 4:
            p.anomalies.append("vlan.header_too_small")
            if vlan:
                p.vlan = tuple(vlan)
            return
        tci, etype = _vlan(data, off)
        if vlan is None:
            vlan = [tci & 0xFFF]
        elif len(vlan) >= MAX_VLAN_LAYERS:
            p.anomalies.append("vlan.too_many_layers")
            p.vlan = tuple(vlan)
            return
        else:
            vlan.append(tci & 0xFFF)
        off += 4
    if vlan:
        p.vlan = tuple(vlan)
    if etype == ETH_IPV4:
        _ipv4(p, data[off:])
    elif etype == ETH_IPV6:
        _ipv6(p, data[off:])
    elif etype < 0x0600:
        p.encap = "llc"     # 802.3 length field: LLC/SNAP frames (STP, CDP...)
    else:
        p.encap = UNSUPPORTED_ETHERTYPES.get(etype) or f"ethertype-{etype:#06x}"


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
