"""A validated rule: what the loader produces and the index compiles.

Every field is already parsed and checked; matching code never re-validates.
`None` for an address/port/name field means "any".
"""
from dataclasses import dataclass, field
import ipaddress
import re

ACTIONS = ("pass", "drop", "reject", "alert")
DECISIONS = ("pass", "drop", "reject")          # actions that decide a flow's verdict
PROTOS = {"ip": None, "tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}
DIRECTIONS = ("any", "inbound", "outbound")
FLOW_KEYWORDS = ("established", "not_established", "to_server", "to_client")
FLOWBIT_OPS = ("set", "unset", "toggle", "isset", "isnotset")     # the last two are conditions
FLOWINT_OPS = ("=", "+", "-", "==", "!=", "<", "<=", ">", ">=", "isset", "notset")
FLOWINT_CHANGES = ("=", "+", "-")                                   # the rest are conditions
TARGETS = ("src_ip", "dest_ip")
HEADERS = ("connection", "packet")
# HOME_NET when neither the rule files nor the caller define it: private address space.
DEFAULT_HOME_NET = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
TCP_FLAG_LETTERS = "FSRPAUEC"                   # bit order: FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128


@dataclass(frozen=True)
class AddrSet:
    """A set of networks, possibly negated ("!10.0.0.0/8" or "![a, b]")."""
    networks: tuple        # tuple of ipaddress.IPv4Network / IPv6Network
    negated: bool = False

    def contains(self, ip: str) -> bool:
        addr = ipaddress.ip_address(ip)
        hit = any(addr in n for n in self.networks if n.version == addr.version)
        return hit != self.negated


@dataclass(frozen=True)
class PortSet:
    """Inclusive port ranges, possibly negated."""
    ranges: tuple          # tuple of (lo, hi)
    negated: bool = False

    def contains(self, port: int) -> bool:
        hit = any(lo <= port <= hi for lo, hi in self.ranges)
        return hit != self.negated


@dataclass(frozen=True)
class TcpFlags:
    """Suricata-style flags: `exact` -> (flags & mask) == required; else required bits present."""
    required: int          # bits that must be set
    exact: bool            # "S" = exactly these among FSRPAUEC; "S+" = at least these
    mask: int = 0xFF       # bits considered (Suricata's ",CE" ignore-list clears bits here)

    def matches(self, flags: int) -> bool:
        if self.exact:
            return (flags & self.mask) == self.required
        return (flags & self.required) == self.required


@dataclass(frozen=True)
class Content:
    value: bytes           # literal bytes (from a string or hex)
    nocase: bool = False
    offset: int = 0        # match must start at or after this payload offset
    depth: int | None = None  # match must end within offset+depth bytes
    # Suricata's inspection of a buffer (inspect_buffer.py says how they combine):
    negated: bool = False  # the bytes must NOT occur where the other options say
    distance: int | None = None  # relative: start this far after the previous match's end
    within: int | None = None    # relative: end within this many bytes of the previous match's end (+distance)
    startswith: bool = False     # at the buffer's start
    endswith: bool = False       # ending at the buffer's end
    fast_pattern: bool = False   # the prefilter literal: changes speed, never what matches

    @property
    def relative(self) -> bool:
        return self.distance is not None or self.within is not None


@dataclass(frozen=True)
class Pcre:
    """Suricata's pcre on a buffer: `regex` compiled on bytes from "/re/flags"."""
    regex: re.Pattern
    relative: bool = False       # R: searched from the previous match's end
    negated: bool = False
    source: str = ""             # as written, "/re/flags"


@dataclass(frozen=True)
class IsDataAt:
    """Suricata's isdataat: the buffer has a byte at offset n (relative: n bytes past the previous match)."""
    n: int
    relative: bool = False
    negated: bool = False


@dataclass(frozen=True)
class Range:
    """Suricata's integer comparison (dsize, ttl, bsize, urilen, ip_proto): op is one of
    = != < <= > >= <> (lo < v < hi, exclusive as Suricata's) and !<> (outside it)."""
    op: str
    lo: int
    hi: int = 0
    text: str = ""               # as written, for messages and convert

    def matches(self, v: int) -> bool:
        op = self.op
        if op == "=":
            return v == self.lo
        if op == "<":
            return v < self.lo
        if op == ">":
            return v > self.lo
        if op == "<>":
            return self.lo < v < self.hi
        if op == "!=":
            return v != self.lo
        if op == "<=":
            return v <= self.lo
        if op == ">=":
            return v >= self.lo
        return not self.lo < v < self.hi    # "!<>"


@dataclass(frozen=True)
class NamePattern:
    """A DNS/TLS/HTTP name: exact (case-insensitive) or "*.suffix" (any subdomain, not the suffix itself)."""
    name: str              # lower-case, no trailing dot; for wildcards the suffix without "*."
    wildcard: bool = False

    def matches(self, candidate: str) -> bool:
        c = candidate.lower().rstrip(".")
        if self.wildcard:
            # at a label boundary, not at a DNS label's own dot: a\.b.example is the labels
            # "a.b", "example", not a name under b.example (a pattern holds no backslash)
            n = len(self.name)
            return c.endswith("." + self.name) and c[-n - 2:-n - 1] != "\\"
        return c == self.name


@dataclass(frozen=True)
class Threshold:
    type: str              # limit | threshold | both
    track: str             # by_src | by_dst | by_flow | by_rule
    count: int
    seconds: int


@dataclass(frozen=True)
class FlowBit:
    """flowbits: one operation on named per-flow bits. With several names, `any` says
    whether one of them suffices (Suricata's "a|b", isset/isnotset) or all must (a&b)."""
    op: str                # one of FLOWBIT_OPS
    names: tuple           # tuple[str]
    any: bool = False


@dataclass(frozen=True)
class FlowInt:
    """flowint: a per-flow integer changed (=, +, -) or compared; `value` is an int or the
    name of another flowint."""
    name: str
    op: str                # one of FLOWINT_OPS
    value: int | str | None = None


@dataclass(frozen=True)
class DetectionFilter:
    """Suricata's detection_filter: the rule matches only once it has matched more than
    `count` times within `seconds` (per tracked value)."""
    track: str             # by_src | by_dst | by_flow | by_rule
    count: int
    seconds: int


@dataclass(frozen=True)
class Rule:
    id: int
    msg: str
    action: str                          # one of ACTIONS
    proto: str | tuple = "ip"            # key of PROTOS, or a tuple of them (any may match)
    src: AddrSet | None = None
    src_port: PortSet | None = None
    dst: AddrSet | None = None
    dst_port: PortSet | None = None
    direction: str = "any"               # who initiated the flow, relative to HOME_NET / interfaces
    flow: frozenset = frozenset()        # subset of FLOW_KEYWORDS
    tcp_flags: TcpFlags | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    content: tuple = ()                  # the payload's program: Content/Pcre/IsDataAt in order; all must hold
    buffers: tuple = ()                  # ((sticky buffer, program), ...): programs on app-layer buffers
    bsize: tuple = ()                    # ((sticky buffer, Range), ...): the buffer's length
    urilen: tuple | None = None          # ("http.uri" or "http.uri.raw", Range)
    dsize: Range | None = None           # the packet's payload length
    ttl: Range | None = None             # IPv4 TTL / IPv6 hop limit
    ip_proto: Range | None = None        # the IP protocol number
    regex: re.Pattern | None = None      # compiled on bytes
    payload: str = "packet"              # what content/regex read: each packet's payload, or "stream":
                                         # its direction's reassembled bytes (detect/stream_payload.py),
                                         # or "both": the stream on TCP, the packet elsewhere
    dns_query: tuple | None = None       # tuple[NamePattern]; any may match
    tls_sni: tuple | None = None
    http_host: tuple | None = None
    app_proto: str | None = None         # dns | tls | http: the app layer named the flow's protocol
    threshold: Threshold | None = None
    flowbits: tuple = ()                 # tuple[FlowBit]: conditions, then changes on a match
    flowint: tuple = ()                  # tuple[FlowInt]: likewise
    noalert: bool = False                # alert rules: match (and change flow state) silently
    detection_filter: DetectionFilter | None = None
    target: str | None = None            # src_ip | dest_ip: EVE alert.source/target
    bypass: bool = False                 # a match makes a passed flow final (offloaded) at once
    header: str = "connection"           # pass/drop/reject: what src/dst/ports describe (HEADERS)
    bidirectional: bool = False          # the header also matches with the sides swapped (<>)
    hold: bool = True                    # pass/drop/reject: an unmet packet condition holds later
                                         # rules back (first match); False: Suricata's per-packet
    every_packet: bool = False           # a header-only alert rule alerts on every packet it fits
    log: bool | None = None              # pass/drop/reject: also emit an alert event; None: as `logs` says
    severity: int = 3                    # 1 (high) .. 4; Suricata's alert.severity
    classtype: str = ""                  # -> alert.category
    metadata: dict = field(default_factory=dict, hash=False, compare=False)  # -> alert.metadata
    rev: int = 0                         # .rules only (Suricata's rev, gid, reference): kept, not matched
    gid: int = 1
    references: tuple = field(default=(), compare=False)
    monitor: bool = False                # its file is in monitor mode: a drop/reject passes, the alert says would_*
    file: str = ""                       # where it was written, for messages
    line: int = 0
    order: int = 0                       # global position: file order, files in lexical order (.rules: loader.in_action_order)

    @property
    def decides(self) -> bool:
        return self.action in DECISIONS

    @property
    def protos(self) -> tuple:
        """The proto names the rule is for (several: any of them)."""
        return self.proto if isinstance(self.proto, tuple) else (self.proto,)

    @property
    def logs(self) -> bool:
        """Does the rule emit an alert event when it decides? drop/reject do unless `log:
        false` (Suricata and AWS Network Firewall log blocked traffic), pass only with
        `log: true`."""
        return self.log if self.log is not None else self.action in ("drop", "reject")


def default_home_net() -> AddrSet:
    return AddrSet(tuple(ipaddress.ip_network(n) for n in DEFAULT_HOME_NET))


@dataclass
class RuleSet:
    rules: list                          # list[Rule] in evaluation order
    vars: dict                           # name -> list of raw strings (for display)
    default_action: str = "pass"         # pass | drop | reject
    sources: tuple = ()                  # files it was read from
    # HOME_NET resolved by the loader ($VARs, "!", lists): `home_net.contains(ip)` says inside.
    home_net: AddrSet = field(default_factory=default_home_net)
    skipped: list = field(default_factory=list)          # .rules lines left out (--skip-unsupported)
    skipped_keywords: dict = field(default_factory=dict)  # unsupported keyword -> rules skipped for it
    notes: list = field(default_factory=list)            # .rules lines loaded but read differently from Suricata
    suricata: bool = False               # .rules were read: inspection depth defaults follow Suricata's
    default_monitor: bool = False        # default_action was set in a monitored file (monitor mode)


class RuleError(Exception):
    """Raised by the loader with every problem found; `.problems` holds "FILE:LINE: message" lines."""
    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
