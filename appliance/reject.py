"""Answers for rejected packets: a TCP RST to the sender, or ICMP/ICMPv6 administratively
prohibited quoting the offending packet. Built with struct (no scapy on the datapath) and
sent from the original destination's address through a raw socket bound to the ingress
interface, so the answer leaves on the side the packet came from.

The offending packet itself is dropped by the caller; locally sent packets traverse OUTPUT,
not FORWARD, so they are never queued back to us.

ICMP answers are rate-limited the way the kernel limits its own (and so its REJECT target,
which answers for offloaded reject flows): a token bucket per destination (burst 6, one per
`net.ipv4.icmp_ratelimit` / `net.ipv6.icmp.ratelimit`, XRLIM_BURST_FACTOR in
net/ipv4/inetpeer.c) and one global bucket (`net.ipv4.icmp_msgs_per_sec`, burst
`icmp_msgs_burst`), read from the appliance's own sysctls, so one setting governs both. Without
it a spoofed source gets one answer per packet: a reflector. (For IPv6 the kernel shortens
the interval for destinations behind a route shorter than /128, icmpv6_xrlim_allow; we keep
the full interval per address: stricter, never looser.) TCP RSTs are not limited, as the
kernel limits neither its REJECT tcp-reset nor the RST for a closed port: a RST is never larger
than the segment it answers, and a client that gets none retries its SYN for a minute.
"""
import socket
import struct
import time

from appliance.packet import TCP, ACK, SYN, FIN, RST

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ICMP_UNREACH, ICMP_ADMIN_PROHIBITED = 3, 13
ICMP6_UNREACH, ICMP6_ADMIN_PROHIBITED = 1, 1
V4_QUOTE = 576 - 20 - 8           # RFC 1812: the error datagram fits in 576 bytes
V6_QUOTE = 1280 - 40 - 8          # RFC 4443: the error fits in the minimum IPv6 MTU


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _pseudo(version, src, dst, proto, length):
    if version == 4:
        return socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst) + \
            struct.pack("!BBH", 0, proto, length)
    return socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + \
        struct.pack("!I3xB", length, proto)


def _ip_header(version, src, dst, proto, payload_len):
    if version == 4:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 0, 0x4000, 64, proto, 0,
                          socket.inet_pton(socket.AF_INET, src), socket.inet_pton(socket.AF_INET, dst))
        return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return struct.pack("!IHBB16s16s", 6 << 28, payload_len, proto, 64,
                       socket.inet_pton(socket.AF_INET6, src), socket.inet_pton(socket.AF_INET6, dst))


def tcp_reset(pkt) -> bytes:
    """A RST from the packet's destination back to its sender (RFC 793 reset generation):
    seq = the packet's ack when it has one, else 0 with ACK set to cover what it sent."""
    seg_len = len(pkt.payload) + (1 if pkt.tcp_flags & SYN else 0) + (1 if pkt.tcp_flags & FIN else 0)
    if pkt.tcp_flags & ACK:
        seq, ack, flags = pkt.ack, 0, RST
    else:
        seq, ack, flags = 0, (pkt.seq + seg_len) & 0xFFFFFFFF, RST | ACK
    tcp = struct.pack("!HHIIBBHHH", pkt.dport, pkt.sport, seq, ack, 5 << 4, flags, 0, 0, 0)
    csum = checksum(_pseudo(pkt.ip_version, pkt.dst, pkt.src, TCP, len(tcp)) + tcp)
    tcp = tcp[:16] + struct.pack("!H", csum) + tcp[18:]
    return _ip_header(pkt.ip_version, pkt.dst, pkt.src, TCP, len(tcp)) + tcp


def unreachable(pkt) -> bytes:
    """ICMP type 3 code 13 / ICMPv6 type 1 code 1 from the packet's destination, quoting it."""
    if pkt.ip_version == 4:
        quote = pkt.l3[:V4_QUOTE]
        icmp = struct.pack("!BBHI", ICMP_UNREACH, ICMP_ADMIN_PROHIBITED, 0, 0) + quote
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        return _ip_header(4, pkt.dst, pkt.src, 1, len(icmp)) + icmp
    quote = pkt.l3[:V6_QUOTE]
    icmp = struct.pack("!BBHI", ICMP6_UNREACH, ICMP6_ADMIN_PROHIBITED, 0, 0) + quote
    csum = checksum(_pseudo(6, pkt.dst, pkt.src, 58, len(icmp)) + icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    return _ip_header(6, pkt.dst, pkt.src, 58, len(icmp)) + icmp


ICMP_FRAG_NEEDED = 4
ICMP6_PACKET_TOO_BIG = 2
IPV4_DF = 0x40                    # in the flags byte (offset 6) of the IPv4 header
IPV6_MIN_MTU = 1280
IPV4_MIN_MTU = 68                 # RFC 791: every IPv4 link carries 68 bytes


def too_big(pkt, mtu) -> bytes | None:
    """ICMP fragmentation needed (IPv4 with DF) or ICMPv6 Packet Too Big, from the packet's
    destination, telling the sender `mtu`; None when the sender may be fragmented for (IPv4
    without DF), or the packet is an ICMP error or a non-first fragment (never answered)."""
    if pkt.ip_version not in (4, 6) or not pkt.src or not pkt.dst or (pkt.frag and pkt.frag[1] != 0):
        return None
    if pkt.proto == 1 and pkt.icmp_type not in (0, 8, 13, 14, 15, 16, 17, 18) or pkt.proto == 58 and pkt.icmp_type < 128:
        return None                   # an ICMP error is never answered with one
    if pkt.ip_version == 4:
        if not pkt.l3[6] & IPV4_DF:
            return None
        icmp = struct.pack("!BBHHH", ICMP_UNREACH, ICMP_FRAG_NEEDED, 0, 0, min(max(mtu, IPV4_MIN_MTU), 0xFFFF)) + pkt.l3[:V4_QUOTE]
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        return _ip_header(4, pkt.dst, pkt.src, 1, len(icmp)) + icmp
    icmp = struct.pack("!BBHI", ICMP6_PACKET_TOO_BIG, 0, 0, max(mtu, IPV6_MIN_MTU)) + pkt.l3[:V6_QUOTE]
    csum = checksum(_pseudo(6, pkt.dst, pkt.src, 58, len(icmp)) + icmp)
    icmp = icmp[:2] + struct.pack("!H", csum) + icmp[4:]
    return _ip_header(6, pkt.dst, pkt.src, 58, len(icmp)) + icmp


def answer(pkt) -> bytes | None:
    """What to send back for a rejected packet; None when nothing may be sent (RSTs and
    ICMP errors are never answered, RFC 1122 / RFC 4443, nor are non-IP packets)."""
    if pkt.ip_version not in (4, 6) or not pkt.src or not pkt.dst:
        return None
    if pkt.proto == TCP:
        return None if pkt.tcp_flags & RST else tcp_reset(pkt)
    if pkt.proto == 1 and pkt.icmp_type not in (0, 8, 13, 14, 15, 16, 17, 18):
        return None                   # only ICMP queries get an error back
    if pkt.proto == 58 and not 128 <= pkt.icmp_type <= 255:
        return None                   # ICMPv6 errors are types 0..127
    if pkt.frag and pkt.frag[1] != 0:
        return None                   # a non-first fragment: the first one gets the answer
    return unreachable(pkt)


BURST_FACTOR = 6                  # the kernel's XRLIM_BURST_FACTOR: answers a destination may burst
MAX_DESTINATIONS = 4096           # per-destination buckets kept (least recently answered go first)


def _sysctl(path, default):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return default


def kernel_limits() -> dict:
    """The kernel's ICMP rate limits in this network namespace (the kernel's defaults when unreadable)."""
    return {"v4_interval": _sysctl("/proc/sys/net/ipv4/icmp_ratelimit", 1000) / 1000,
            "v6_interval": _sysctl("/proc/sys/net/ipv6/icmp/ratelimit", 1000) / 1000,
            "per_sec": _sysctl("/proc/sys/net/ipv4/icmp_msgs_per_sec", 1000),
            "burst": _sysctl("/proc/sys/net/ipv4/icmp_msgs_burst", 50)}


class IcmpLimit:
    """May one more ICMP error go to `dst` now? Global and per-destination token buckets, as
    the kernel's icmp_global_allow + inet_peer_xrlim_allow (an interval of 0: no per-destination
    limit). The destination table is bounded: least recently answered destinations are forgotten
    first (forgetting one only restores its burst; the global bucket still caps the total).
    `share`: the workers answering side by side (each has its own limit; queue-balance spreads a
    spoofed victim's packets over all of them), so that together they keep the kernel's limits."""

    def __init__(self, v4_interval=1.0, v6_interval=1.0, per_sec=1000, burst=50, clock=time.monotonic,
                 max_destinations=MAX_DESTINATIONS, share=1):
        # per destination: the kernel's burst of tokens, each answer costing `share` intervals
        self.interval = {4: v4_interval * share, 6: v6_interval * share}
        # (at least one answer's worth: past 6 workers a share of the burst is below one)
        self.capacity = {4: max(BURST_FACTOR, share) * v4_interval, 6: max(BURST_FACTOR, share) * v6_interval}
        self.per_sec, self.burst = per_sec / share, max(1.0, burst / share)
        self.clock = clock
        self.max_destinations = max_destinations
        self.credit, self.credit_ts = float(burst), clock()
        self.dests = {}                               # address -> (tokens in seconds, last time)
        self.suppressed = 0

    def allow(self, version, dst) -> bool:
        now = self.clock()
        self.credit = min(float(self.burst), self.credit + (now - self.credit_ts) * self.per_sec)
        self.credit_ts = now
        ok = self.credit >= 1 and self._destination(version, dst, now)
        if ok:
            self.credit -= 1
        else:
            self.suppressed += 1
        return ok

    def _destination(self, version, dst, now) -> bool:
        interval = self.interval[version]
        if interval <= 0:
            return True
        d = self.dests
        capacity = self.capacity[version]
        tokens, last = d.pop(dst, (capacity, now))    # a new destination starts full
        tokens = min(capacity, tokens + now - last)
        ok = tokens >= interval
        if ok:
            tokens -= interval
        if len(d) >= self.max_destinations:
            del d[next(iter(d))]                      # the least recently answered
        d[dst] = (tokens, now)                        # re-inserted: dict order is recency
        return ok


class Rejector:
    """Raw sockets per (family, interface), opened on first use and kept open; ICMP answers
    within the kernel's rate limits (`limit`)."""

    def __init__(self, limit=None, workers=1):
        self._socks = {}
        self.limit = limit if limit is not None else IcmpLimit(**kernel_limits(), share=workers)

    def _sock(self, version, iface):
        key = (version, iface)
        s = self._socks.get(key)
        if s is None:
            if version == 4:
                s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
                s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            else:
                s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)  # implies header included
            if iface:
                s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, iface.encode())
            self._socks[key] = s
        return s

    def send(self, pkt) -> bool:
        """Send the answer for `pkt` out of its ingress interface; False when none is due or
        the ICMP rate limit holds it back (counted in `limit.suppressed`)."""
        data = answer(pkt)
        if data is None:
            return False
        if pkt.proto != TCP and not self.limit.allow(pkt.ip_version, pkt.src):
            return False
        self._sock(pkt.ip_version, pkt.in_iface).sendto(data, (pkt.src, 0))
        return True

    def close(self):
        for s in self._socks.values():
            s.close()
        self._socks.clear()
