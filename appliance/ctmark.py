"""Move an offloaded flow's verdict in conntrack: its connmark is the verdict the kernel
enforces for the rest of the flow (netfilter.py), so a flow whose verdict changes after its
offload (monitored drops enforced by a reload) changes there.

One ctnetlink IPCTNL_MSG_CT_NEW without NLM_F_CREATE per flow: an update of the entry whose
original tuple is given. CTA_MARK with CTA_MARK_MASK changes our mark bits only (the kernel
zeroes the masked bits, then XORs the value in), so other tools' bits stay.
"""
import errno
import ipaddress
import socket
import struct

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW = 1, 0
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG, CTA_MARK, CTA_MARK_MASK = 1, 8, 21
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
PORTED = (6, 17, 132, 136)          # TCP, UDP, SCTP, UDP-Lite: conntrack's tuple has ports


def _attr(kind, value):
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + b"\0" * (-n & 3)


def _nest(kind, *attrs):
    return _attr(kind | NLA_F_NESTED, b"".join(attrs))


def update_message(src, dst, proto, sport, dport, mark, mask, seq=0):
    """The ctnetlink update setting (mark & mask) on the entry whose original direction is
    src:sport -> dst:dport. src/dst: address text."""
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    v6 = a.version == 6
    ip = _nest(CTA_TUPLE_IP, _attr(CTA_IP_V6_SRC if v6 else CTA_IP_V4_SRC, a.packed),
               _attr(CTA_IP_V6_DST if v6 else CTA_IP_V4_DST, b.packed))
    ports = [_attr(CTA_PROTO_SRC_PORT, struct.pack("!H", sport)),
             _attr(CTA_PROTO_DST_PORT, struct.pack("!H", dport))] if proto in PORTED else []
    body = (struct.pack("!BBH", socket.AF_INET6 if v6 else socket.AF_INET, 0, 0)
            + _nest(CTA_TUPLE_ORIG, ip, _nest(CTA_TUPLE_PROTO, _attr(CTA_PROTO_NUM, bytes((proto,))), *ports))
            + _attr(CTA_MARK, struct.pack("!I", mark & mask)) + _attr(CTA_MARK_MASK, struct.pack("!I", mask)))
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW,
                       NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def set_marks(entries, mask, timeout=2.0):
    """entries: [(src, dst, proto, sport, dport, mark)], each an original direction. Tries each
    as given, then reversed (a flow picked up mid-stream may have its ends the other way).
    Returns (updated, missing): how many entries were changed, and the ones conntrack does not
    hold either way (ended meanwhile, or never tracked)."""
    if not entries:
        return 0, []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        answers = _send_all(sock, entries, mask)
        missing = [e for e, err in zip(entries, answers) if err == errno.ENOENT]
        again = _send_all(sock, [(d, s, p, dp, sp, m) for s, d, p, sp, dp, m in missing], mask)
        left = [e for e, err in zip(missing, again) if err]
    return len(entries) - len(left), left


def _send_all(sock, entries, mask, chunk=200):
    """Send one update per entry; their errno answers in order (0: updated). In chunks: the
    answers of one wait in the socket's receive buffer before the next is sent."""
    answers = []
    for at in range(0, len(entries), chunk):
        part = entries[at:at + chunk]
        for seq, (src, dst, proto, sport, dport, mark) in enumerate(part, 1):
            sock.sendto(update_message(src, dst, proto, sport, dport, mark, mask, seq), (0, 0))
        got = {}
        while len(got) < len(part):
            data = sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, kind, _, seq = struct.unpack_from("=IHHI", data, off)
                if length < 16:
                    break
                if kind == NLMSG_ERROR and off + 20 <= len(data):
                    got[seq] = -struct.unpack_from("=i", data, off + 16)[0]
                off += (length + 3) & ~3
        answers += [got.get(seq, errno.EIO) for seq in range(1, len(part) + 1)]
    return answers
