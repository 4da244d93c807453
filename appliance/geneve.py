"""GENEVE (RFC 8926) as an AWS Gateway Load Balancer sends it: the outer header and the
AWS options in front of the inner IP packet.

    0                   1                   2                   3
    |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
    |        Virtual Network Identifier (VNI)       |    Reserved   |
    |                    Variable-Length Options                    |

Each option: class (16 bits), type (8 bits, high bit = critical), 3 reserved bits and a
5-bit length in 4-byte words, then the data. GWLB always sends class 0x0108 (AWS) with
type 1 (the GWLB endpoint's ENI id, 8 bytes), type 2 (the attachment id, 8 bytes) and
type 3 (the flow cookie, 4 bytes); the appliance must return them unchanged.

`parse` never raises: a datagram is either a `Tunnel` or the name of what is wrong with
it (a counted drop reason, "geneve.*"). Strict on purpose: a datagram that is not what
GWLB sends is not trusted to carry a packet we would forward.
"""
import struct

PORT = 6081
VERSION = 0
AWS_CLASS = 0x0108
ENI, ATTACHMENT, COOKIE = 1, 2, 3
AWS_LENGTHS = {ENI: 8, ATTACHMENT: 8, COOKIE: 4}     # option data bytes by type
CRITICAL = 0x80
ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
INNER_VERSION = {ETH_IPV4: 4, ETH_IPV6: 6}

_head = struct.Struct("!BBH3sx").unpack_from           # ver|optlen, O|C|rsvd, protocol, vni
_opt = struct.Struct("!HBB").unpack_from               # class, C|type, rsvd|length
_u64 = struct.Struct("!Q").unpack_from
_u32 = struct.Struct("!I").unpack_from

# Drop reasons, for counters and docs (every one is a drop: nothing malformed is forwarded)
REASONS = (
    "geneve.header_too_small",      # fewer than 8 bytes
    "geneve.bad_version",           # Ver != 0
    "geneve.oam",                   # O bit: a control message, never data to forward
    "geneve.options_too_long",      # Opt Len runs past the datagram
    "geneve.bad_option_length",     # an option's header or data runs past the options
    "geneve.unknown_critical_option",  # RFC 8926 3.5: a critical option we do not understand
    "geneve.aws_option_length",     # an AWS option with the wrong data length
    "geneve.duplicate_aws_option",  # the same AWS option twice: which one would we return?
    "geneve.missing_aws_option",    # no ENI id, attachment id or flow cookie
    "geneve.bad_protocol",          # inner protocol neither IPv4 nor IPv6
    "geneve.no_inner_packet",       # nothing after the options
    "geneve.inner_version_mismatch",  # Protocol Type says IPv4, the packet is IPv6 (or back)
    "geneve.unknown_sender",        # not from a configured GWLB address (appliance.source.gwlb)
)


class Tunnel:
    """One datagram's GENEVE layer: `header` is every byte before the inner packet (what
    goes back to the GWLB unchanged), `inner` where the inner packet starts."""
    __slots__ = ("header_len", "protocol", "vni", "eni", "attachment", "cookie")

    def __init__(self, header_len, protocol, vni, eni, attachment, cookie):
        self.header_len = header_len
        self.protocol = protocol
        self.vni = vni
        self.eni = eni
        self.attachment = attachment
        self.cookie = cookie

    def __repr__(self):
        return (f"Tunnel(eni={self.eni:#018x} attachment={self.attachment:#018x} "
                f"cookie={self.cookie:#010x} header={self.header_len}B)")


def parse(data) -> "Tunnel | str":
    """The GENEVE layer of one UDP payload, or the drop reason (a name from REASONS)."""
    n = len(data)
    if n < 8:
        return "geneve.header_too_small"
    b0, b1, protocol, vni = _head(data, 0)
    if b0 >> 6 != VERSION:
        return "geneve.bad_version"
    if b1 & 0x80:
        return "geneve.oam"
    end = 8 + (b0 & 0x3F) * 4
    if end > n:
        return "geneve.options_too_long"
    eni = attachment = cookie = None
    off = 8
    while off < end:                   # Opt Len and option lengths count 4-byte words: a header always fits
        cls, typ, ln = _opt(data, off)
        size = (ln & 0x1F) * 4
        body = off + 4
        off = body + size
        if off > end:
            return "geneve.bad_option_length"
        if cls == AWS_CLASS and (typ & 0x7F) in AWS_LENGTHS:
            t = typ & 0x7F
            if size != AWS_LENGTHS[t]:
                return "geneve.aws_option_length"
            if t == ENI:
                if eni is not None:
                    return "geneve.duplicate_aws_option"
                eni = _u64(data, body)[0]
            elif t == ATTACHMENT:
                if attachment is not None:
                    return "geneve.duplicate_aws_option"
                attachment = _u64(data, body)[0]
            else:
                if cookie is not None:
                    return "geneve.duplicate_aws_option"
                cookie = _u32(data, body)[0]
        elif typ & CRITICAL:
            return "geneve.unknown_critical_option"
        # a non-critical option we do not know: kept (returned as received), not read
    if eni is None or attachment is None or cookie is None:
        return "geneve.missing_aws_option"
    version = INNER_VERSION.get(protocol)
    if version is None:
        return "geneve.bad_protocol"
    if end >= n:
        return "geneve.no_inner_packet"
    if data[end] >> 4 != version:
        return "geneve.inner_version_mismatch"
    return Tunnel(end, protocol, int.from_bytes(vni, "big"), eni, attachment, cookie)


def encapsulate(eni, attachment, cookie, inner, vni=0, extra_options=b"") -> bytes:
    """A GENEVE datagram as GWLB builds it (the protocol type from the inner packet's
    version): for the simulator in tests and for benchmarks."""
    opts = (struct.pack("!HBBQ", AWS_CLASS, ENI, 2, eni) + struct.pack("!HBBQ", AWS_CLASS, ATTACHMENT, 2, attachment)
            + struct.pack("!HBBI", AWS_CLASS, COOKIE, 1, cookie) + extra_options)
    protocol = ETH_IPV6 if inner and inner[0] >> 4 == 6 else ETH_IPV4
    return struct.pack("!BBH", len(opts) // 4, 0, protocol) + vni.to_bytes(3, "big") + b"\0" + opts + inner
