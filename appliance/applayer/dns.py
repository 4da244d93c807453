"""DNS messages (RFC 1035): header and question section.

Only what a firewall decides on: id, QR, opcode, rcode and the questions.
Names are decoded with a loop (never recursion); compression pointers are
followed in any direction as lax resolvers do (dnsmasq), as many as dnsmasq
follows (so loops end), names as long as dnsmasq reads; names are escaped so a
hostile label can never inject into a log line.
"""

import ipaddress
import struct
from dataclasses import dataclass, field

from appliance.applayer import CAP

try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only (_as_is_text)
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False

MAX_QUESTIONS = 32     # qdcount is attacker-chosen; real queries carry one
MAX_ANSWERS = 32       # answer records read for the dns event (responses); the rest are not logged
# dnsmasq 2.90 (checked live) answers names past RFC 1035's 255 bytes, up to its MAXDNAME
# (1025) of text, and follows up to 255 pointer jumps per name: a name it reads must read
# here too, or it names nothing to the rules.
MAX_NAME_WIRE = 1026   # wire bytes of a 1024-character name
MAX_POINTERS = 255     # jumps per name (more: malformed, as dnsmasq says), and per message:
                       # past that many in one message its names cannot be known (CAP), which
                       # bounds the work a datagram of 32 chained questions costs

RRTYPES = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG", 9: "MR",
    10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO", 15: "MX", 16: "TXT",
    17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN", 21: "RT", 22: "NSAP", 23: "NSAPPTR",
    24: "SIG", 25: "KEY", 26: "PX", 27: "GPOS", 28: "AAAA", 29: "LOC", 30: "NXT",
    33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6", 39: "DNAME",
    41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP", 45: "IPSECKEY", 46: "RRSIG", 47: "NSEC",
    48: "DNSKEY", 49: "DHCID", 50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 55: "HIP",
    59: "CDS", 60: "CDNSKEY", 64: "SVCB", 65: "HTTPS", 99: "SPF", 249: "TKEY", 250: "TSIG",
    251: "IXFR", 252: "AXFR", 253: "MAILB", 254: "MAILA", 255: "ANY", 256: "URI", 257: "CAA",
}

RCODES = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
    6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH", 10: "NOTZONE",
}

# Byte -> text: printable ASCII as is, everything else (and the escape char
# itself, so the encoding stays unambiguous) as \xNN.
_ESCAPE = [chr(b) if 0x20 <= b < 0x7F and b != 0x5C else "\\x%02x" % b for b in range(256)]


@dataclass
class DnsQuery:
    rrname: str
    rrtype: str


@dataclass
class DnsMessage:
    id: int
    response: bool
    opcode: int
    rcode: str
    queries: list = field(default_factory=list)
    # for the log only (left out of ==): a response's answers (DnsAnswer, up to MAX_ANSWERS)
    answers: list = field(default_factory=list, compare=False)
    flags: int = field(default=0, compare=False)


@dataclass
class DnsAnswer:
    rrname: str
    rrtype: str
    ttl: int
    rdata: str | None              # A/AAAA address, CNAME/PTR/NS name; None for other types


# An A record's octets as text (the compiled twin formats a literal "%d" 5x slower).
_OCTET = [str(b) for b in range(256)]

# The bytes _ESCAPE keeps as they are: a label of only these is its own ASCII text.
_AS_IS = bytes(b for b in range(256) if _ESCAPE[b] == chr(b))


def _as_is_text(data, start, end, dot):
    """Compiled twin only: data[start:end] (a bytes object) as its own ASCII text when
    every byte of it is one the escape tables keep as it is (printable ASCII, not '\\', and
    not '.' when `dot`: a DNS label's), else None (the tables' own code writes it). One C
    pass over the bytes' buffer, with no slice made: the text is what "".join of the table
    entries gives for such bytes, and a label of a DNS name costs no list and no join."""
    b = data                         # compiled: a pointer to the bytes' own buffer
    i = start
    while i < end:
        c = b[i]
        if c < 0x20 or c >= 0x7F or c == 0x5C or (dot and c == 0x2E):
            return None
        i += 1
    return data[start:end].decode("ascii")


def escape_label(label: bytes) -> str:
    if COMPILED and type(label) is bytes:
        text = _as_is_text(label, 0, len(label), False)
        if text is not None:
            return text
    elif len(label) >= 8 and type(label) is bytes and not label.translate(None, _AS_IS):
        # a URI, a User-Agent, a long label: one C pass. Not a short label: translate's fixed
        # cost is more than the table walk below 5 bytes, and a hostile DNS name is 1-byte
        # labels (review rvnames: 512 of them went 3.7 -> 5.0 ms a datagram ungated)
        return label.decode("ascii")
    return "".join([_ESCAPE[b] for b in label])


# A DNS name's label: as above, and a '.' inside it as "\." (RFC 1035 5.1, as dig and BIND
# print it). The one label "a.b" and the two labels "a", "b" are different names to a server;
# read as one text they were the same name to the rules and in the log. ('\' itself is
# \x5c, so in a name's text a '\' before a '.' always means the dot is inside a label.)
# HTTP hosts and TLS SNIs are not label sequences: they keep escape_label.
_DNS_ESCAPE = [("\\." if b == 0x2E else text) for b, text in enumerate(_ESCAPE)]
_DNS_AS_IS = bytes(b for b in range(256) if _DNS_ESCAPE[b] == chr(b))


def dns_label(label: bytes) -> str:
    # escape_label's code with the DNS tables (not a wrapper: a hostile name is 512 1-byte
    # labels, and a second call per label would be its cost)
    if COMPILED and type(label) is bytes:
        text = _as_is_text(label, 0, len(label), True)
        if text is not None:
            return text
    elif len(label) >= 8 and type(label) is bytes and not label.translate(None, _DNS_AS_IS):
        return label.decode("ascii")
    return "".join([_DNS_ESCAPE[b] for b in label])


def _name_end(data, off, budget):
    """Compiled twin only: _read_name's walk over a bytes object's buffer, with C ints and no
    text: (offset just past the name, jumps), or (-1, 0) where _read_name gives None and
    (-2, 0) where it gives CAP. plausible and _answers' pass over the questions need the end
    and the jumps only, and _read_name checks the name with it before it writes the text."""
    b = data                         # compiled: a pointer to the bytes' own buffer
    n = len(data)
    wire = 0
    end = -1
    jumps = 0
    while True:
        if off < 0 or off >= n:          # (never below 0 from a pointer: a guard for the C read)
            return -1, 0
        length = b[off]
        kind = length & 0xC0
        if kind == 0xC0:
            if off + 1 >= n or jumps >= MAX_POINTERS:
                return -1, 0
            if jumps >= budget:
                return -2, 0
            if end < 0:
                end = off + 2
            off = ((length & 0x3F) << 8) | b[off + 1]
            jumps += 1
            continue
        if kind:
            return -1, 0
        if length == 0:
            return (off + 1 if end < 0 else end), jumps
        wire += length + 1
        if wire > MAX_NAME_WIRE or off + 1 + length > n:
            return -1, 0
        off += 1 + length


def _name_text(data, off):
    """Compiled twin only: the text of the name at `off`, which _name_end has read whole
    (every label in the buffer, every pointer in it, the walk ends): its labels in order,
    each by _as_is_text or the DNS table."""
    b = data
    labels = []
    while True:
        length = b[off]
        if length & 0xC0:
            off = ((length & 0x3F) << 8) | b[off + 1]
            continue
        if length == 0:
            return ".".join(labels)
        text = _as_is_text(data, off + 1, off + 1 + length, True)
        if text is None:
            text = "".join([_DNS_ESCAPE[c] for c in data[off + 1:off + 1 + length]])
        labels.append(text)
        off += 1 + length


def read_name(buf: bytes, off: int):
    """Decode the name at `off`. Returns (name, offset just past it) or None if malformed."""
    got = _read_name(buf, off, MAX_POINTERS)
    return got[:2] if got else None


def _read_name(buf, off, budget):
    """(name, end, jumps) or None if malformed; CAP when `budget` jumps (fewer than the
    name's own bound) run out first."""
    if COMPILED and type(buf) is bytes and type(off) is int and 0 <= off < len(buf):
        # the walk in C first; the text only of a name that reads (a negative or huge offset,
        # which no datapath caller passes, takes the reference: review s14a)
        end, jumps = _name_end(buf, off, budget)
        if end < 0:
            return None if end == -1 else CAP
        return _name_text(buf, off), end, jumps
    labels = []
    wire = 0
    end = None          # where the name ends in the message (before the first pointer)
    jumps = 0
    n = len(buf)
    while True:
        if off >= n:
            return None
        length = buf[off]
        kind = length & 0xC0
        if kind == 0xC0:
            # Any direction: dnsmasq follows a pointer forward too (checked live, 2.90: a
            # question pointing past itself is answered). Loops end at MAX_POINTERS jumps.
            if off + 1 >= n or jumps >= MAX_POINTERS:
                return None
            if jumps >= budget:
                return CAP
            target = ((length & 0x3F) << 8) | buf[off + 1]
            if end is None:
                end = off + 2
            off = target
            jumps += 1
            continue
        if kind:                    # 0x40/0x80: extended/reserved label types
            return None
        if length == 0:
            if end is None:
                end = off + 1
            return ".".join(labels), end, jumps
        wire += length + 1
        if wire > MAX_NAME_WIRE or off + 1 + length > n:
            return None
        if COMPILED and type(buf) is bytes:
            # the label in place; one that needs an escape by the table (checked once: a
            # hostile name is 512 labels of one '.')
            text = _as_is_text(buf, off + 1, off + 1 + length, True)
            if text is None:
                text = "".join([_DNS_ESCAPE[b] for b in buf[off + 1:off + 1 + length]])
            labels.append(text)
        else:
            labels.append(dns_label(buf[off + 1:off + 1 + length]))
        off += 1 + length


def _header(data):
    if len(data) < 12:
        return None
    if COMPILED and type(data) is bytes:
        # the six 16-bit fields from the bytes' own buffer, with no struct call
        # (* 256 of a byte: a C int that cannot wrap, and no C shift: test_compiled_no_c_shifts)
        b = data
        return (b[0] * 256 + b[1], b[2] * 256 + b[3], b[4] * 256 + b[5],
                b[6] * 256 + b[7], b[8] * 256 + b[9], b[10] * 256 + b[11])
    return struct.unpack_from("!HHHHHH", data)


def _rrtype(rtype):
    """A record type's name, or its number as text (made only for a type without a name)."""
    name = RRTYPES.get(rtype)
    return str(rtype) if name is None else name


def _questions(data, qdcount):
    """The question section, or None if any declared question (up to the bound) is malformed,
    CAP if its names take more pointer jumps in all than MAX_POINTERS."""
    queries = []
    off = 12
    budget = MAX_POINTERS
    for i in range(min(qdcount, MAX_QUESTIONS)):
        got = _read_name(data, off, budget)
        if got is CAP:
            return CAP
        if got is None or got[1] + 4 > len(data):
            return None
        name, off, jumps = got
        budget -= jumps
        qtype = (data[off] << 8) | data[off + 1]
        off += 4                     # qtype, qclass
        queries.append(DnsQuery(name, _rrtype(qtype)))
    return queries


def _answers(data, qdcount, ancount):
    """The answer section of a response, for the log only (no rule reads it): up to
    MAX_ANSWERS records, within the pointer budget; what is malformed or past the bound
    ends the list (the records read so far stay)."""
    off = 12
    budget = MAX_POINTERS
    for i in range(qdcount):                  # past the questions again (their end offsets)
        if COMPILED and type(data) is bytes:
            end, jumps = _name_end(data, off, budget)     # no text: the walk in C
            if end < 0:
                return []                     # None or CAP (falsy): as the reference's `not got`
            off, budget = end + 4, budget - jumps
            continue
        got = _read_name(data, off, budget)
        if not got:
            return []
        off, budget = got[1] + 4, budget - got[2]
    out = []
    for i in range(min(ancount, MAX_ANSWERS)):
        got = _read_name(data, off, budget)
        if not got or got[1] + 10 > len(data):
            break
        name, off, jumps = got
        budget -= jumps
        rtype, _cls, ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        if off + rdlen > len(data):
            break
        rd = data[off:off + rdlen]
        rdata = None
        if rtype == 1 and rdlen == 4:
            rdata = ".".join([_OCTET[rd[0]], _OCTET[rd[1]], _OCTET[rd[2]], _OCTET[rd[3]]])
        elif rtype == 28 and rdlen == 16:
            rdata = str(ipaddress.IPv6Address(bytes(rd)))
        elif rtype in (2, 5, 12):             # NS, CNAME, PTR: a name (may point back into the message)
            got = _read_name(data, off, budget)
            if got:
                rdata, budget = got[0], budget - got[2]
        out.append(DnsAnswer(name, _rrtype(rtype), ttl, rdata))
        off += rdlen
    return out


def parse_message(data: bytes) -> DnsMessage | None:
    """One DNS message (UDP payload). None when the header or question section is malformed,
    CAP when its names cannot be read within the work bound (MAX_POINTERS)."""
    try:
        hdr = _header(data)
        if hdr is None:
            return None
        ident, flags, qdcount = hdr[0], hdr[1], hdr[2]
        queries = _questions(data, qdcount)
        if queries is None or queries is CAP:
            return queries
        rcode = flags & 0xF
        response = bool(flags & 0x8000)
        # every field passed: the dataclass's __init__ then makes no default lists
        return DnsMessage(ident, response, (flags >> 11) & 0xF, RCODES.get(rcode) or str(rcode), queries,
                          _answers(data, qdcount, hdr[3]) if response and hdr[3] else [], flags)
    except Exception:  # defensive: the datapath never sees a parser exception
        return None


def parse_tcp(data: bytes) -> tuple[list, int]:
    """DNS over TCP: length-prefixed messages. Returns (messages, bytes consumed).

    A partial message at the end stays unconsumed. Complete frames that are not
    valid DNS are consumed and skipped."""
    used, messages, _ = TcpReader().feed(data, False)
    return messages, used


class TcpReader:
    """DNS over TCP (RFC 7766): every length-prefixed message of the connection, as the
    server reads them. Consumes what it read; a message longer than the stream's window
    is judged by its question section (compression points backwards, so the questions
    never need the bytes after them) and the rest is skipped.

    feed(data, full) -> (consumed, messages, status): status None while more may come,
    CAP when a question section does not fit the window."""

    __slots__ = ("left",)

    def __init__(self):
        self.left = 0              # bytes of a long message still to skip

    def feed(self, data, full):
        off, n = 0, len(data)
        out = []
        while off < n:
            if self.left:
                take = min(self.left, n - off)
                off += take
                self.left -= take
                continue
            if n - off < 2:
                break
            length = (data[off] << 8) | data[off + 1]
            if off + 2 + length <= n:
                msg = parse_message(bytes(data[off + 2:off + 2 + length]))
                if msg is CAP:
                    return off, out, CAP
                if msg is not None:
                    out.append(msg)
                off += 2 + length
                continue
            if not full or off:
                break                           # the rest is on its way, or fits once we consume
            msg = parse_message(bytes(data[off + 2:n]))
            if not msg:                         # None, or CAP
                return off, out, CAP            # its questions run past what we can hold
            out.append(msg)
            self.left = length - (n - off - 2)
            off = n
        return off, out, None


def sane_header(data: bytes) -> bool:
    """A DNS header whose counts and opcode are possible (questions not required)."""
    hdr = _header(data)
    if hdr is None:
        return False
    _, flags, qd, an, ns, ar = hdr
    return qd <= MAX_QUESTIONS and an <= 256 and ns <= 256 and ar <= 256 and (flags >> 11) & 0xF <= 6


def plausible(data: bytes) -> bool:
    """Does this look like a DNS message? Sane counts, a question, a first name that parses."""
    try:
        hdr = _header(data)
        if hdr is None:
            return False
        _, flags, qd, an, ns, ar = hdr
        if not 1 <= qd <= MAX_QUESTIONS or an > 256 or ns > 256 or ar > 256:
            return False
        if (flags >> 11) & 0xF > 6:        # opcodes 0-6 are assigned
            return False
        if not flags & 0x8000 and (flags >> 11) & 0xF == 0 and (an or ns):
            return False                   # a standard query carries no answers
        if COMPILED and type(data) is bytes:
            end = _name_end(data, 12, MAX_POINTERS)[0]       # the end only: no text made
            if end < 0 or end + 4 > len(data):
                return False
        else:
            got = read_name(data, 12)
            if got is None or got[1] + 4 > len(data):
                return False
            end = got[1]
        qtype, qclass = struct.unpack_from("!HH", data, end)
        # qtype 0 is reserved; classes IN, CH, HS, NONE, ANY (mDNS sets the top bit).
        return qtype != 0 and (qclass & 0x7FFF) in (1, 3, 4, 254, 255)
    except Exception:
        return False


from ..compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
