# cython: nonecheck=True
# (compiled twin: a Flow or Packet argument that is None raises AttributeError, as here, instead of reading the None object as a C struct)
"""Flow tracking: bidirectional flows, TCP state, idle timeouts, bounded table.

A flow is keyed on the normalised 5-tuple (ICMP echo: addresses + echo id), so
both directions of a conversation find the same Flow. The initiator is the
first packet's sender, except that a first-seen SYN/ACK or echo reply names
its receiver. The key is packed into one `bytes` (flow_key): raw addresses, not
their text, so a flow holds no address string of its own (Flow.src/dst make it
when read); `Flow.tuple_key` is the same key as the tuple it used to be. The flow is
its own key in the table's dict (it hashes as its key and equals those bytes): the
compiled Flow holds an IPv4 key as two raw addresses in C fields, no object.

Every flow sits in exactly one queue, by (class, idle timeout), least recently active
first: a doubly linked list threaded through the flows themselves (two slots, 16 B a
flow, where an OrderedDict entry cost ~105 B); a packet moves its flow to the end, O(1).
Within a queue the flows share one timeout, so the front is the next to expire: expiry pops fronts, O(flows
expired). Eviction once `max_flows` is reached takes the front of the first class that has
flows, O(1), in this order (Linux conntrack's early_drop also spares ASSURED connections):
  final        verdict decided, nothing left to inspect (live: the kernel holds its verdict)
  unconfirmed  seen one way only, or TCP whose client has not completed the handshake: a
               spoofed SYN flood's flows (the server's SYN/ACK goes to an address that never
               ACKs), probes, unanswered datagrams
  pending      confirmed, verdict still open: the one to keep (the attacker's own
               connection must not be pushed out by a flood to let it through uninspected)
An ended flow leaves its queue at once: nothing outside `flows` and the queues refers to it.
"""
import hashlib
import struct
from socket import AF_INET, AF_INET6, inet_pton

from .checksum import transport_ok
from .decode import _v4name, _v6name
from .ingress import Ingress
from .packet import TCP, UDP, ICMP, ICMPV6, SYN, ACK, FIN, RST, URG

NEW, ESTABLISHED, CLOSING, CLOSED = "new", "established", "closing", "closed"

# The closed sets of Flow's small text fields: every value any code writes is here (the
# writers are listed in tests/unit/test_flow_closed_sets.py). The compiled Flow keeps each
# as a one-byte index into its tuple behind a property that returns the same string (four
# pointers became four bytes, docs/performance-passes.md "Flow fields as bytes"); the pure Flow
# keeps the strings. A value outside its set is refused on write (ValueError), never stored
# as another one. Each set's first member is a new Flow's value (the compiled one's zeroed bytes).
STATES = (NEW, ESTABLISHED, CLOSING, CLOSED)
VERDICTS = (None, "pass", "drop", "reject")          # detect.rule.DECISIONS, None: undecided
DIRECTIONS = ("any", "inbound", "outbound")          # Inspector._direction
REASONS = ("", "timeout", "evicted", "closed", "reused", "shutdown")   # why it ended ("": it has not)
try:
    import cython
    COMPILED = cython.compiled       # True in the compiled twin only
except ImportError:                  # Cython is not a run-time dependency
    COMPILED = False
# COMPILED for the per-packet tests (timeout, _key): a C flag in the twin (the .pxd), where
# COMPILED, a module attribute others read, costs a dict lookup each time
_IN_C = COMPILED


def _codes(names):
    return {name: code for code, name in enumerate(names)}


_STATE_CODES, _VERDICT_CODES = _codes(STATES), _codes(VERDICTS)
_DIRECTION_CODES, _REASON_CODES = _codes(DIRECTIONS), _codes(REASONS)


def _code(codes, field, value):
    """The byte that stands for `value` in the compiled Flow's `field`."""
    try:
        code = codes.get(value, -1)  # a str subclass equal to a member is that member
    except TypeError:                # unhashable: no member either
        code = -1
    if code < 0:
        raise ValueError(f"Flow.{field} is one of {tuple(codes)!r}, not {value!r}")
    return code

# Idle timeouts (seconds) by protocol and state; Suricata's defaults.
TIMEOUTS = {
    TCP: {NEW: 60, ESTABLISHED: 600, CLOSING: 60, CLOSED: 10},
    UDP: {NEW: 30, ESTABLISHED: 300},
    ICMP: {NEW: 30, ESTABLISHED: 300},
    ICMPV6: {NEW: 30, ESTABLISHED: 300},
}
DEFAULT_TIMEOUTS = {NEW: 30, ESTABLISHED: 300}
_ECHO = {ICMP: (8, 0), ICMPV6: (128, 129)}
# One shared int object per port: keys and flows then hold no port ints of their own.
_PORTS = list(range(65536))
# Eviction classes, in the order flows are given up (see above).
FINAL, UNCONFIRMED, PENDING = 0, 1, 2


def flow_key(pkt):
    """Direction-free key: the two (addr, port) ends sorted, plus the protocol; plus the
    GENEVE endpoint for a packet that came through one (Packet.tunnel). Packed: see _key."""
    return _key(pkt)[0]


# The packed key: a layout byte, the protocol, the two ends (raw address, port or echo id)
# in order, then the GENEVE endpoint when there is one. The layout byte names the address
# lengths of both ends and whether the endpoint follows, so no two layouts share a byte
# string: the key is injective (two conversations never share a Flow). 14 bytes for IPv4
# (a 47 B object, where the tuple of address strings cost 80 B + ~61 B for the initiator's
# address text), 38 for IPv6, 8 more with an endpoint.
_LAYOUTS = {}
for _tunnel in (False, True):
    for _la in (4, 16):
        for _lb in (4, 16):
            _kind = (_la == 16) | (_lb == 16) << 1 | _tunnel << 2
            _LAYOUTS[_la, _lb, _tunnel] = (_kind, struct.Struct(f"!BB{_la}sH{_lb}sH" + ("Q" if _tunnel else "")))
_V4V4, _V4V4_PACK = _LAYOUTS[4, 4, False]
_V4V4_PACK = _V4V4_PACK.pack
# Raw address by its text, for a packet without decode's raw addresses (Packet.src_raw:
# made in tests, by hand); bounded like decode's caches: cleared when full.
_RAW = {}
RAW_CACHE_SIZE = 65536
# Packet sides (Flow._side: the initiator's): which end of the key the packet's sender is
SAME_ENDS, FIRST_END, SECOND_END = 0, 1, 2


def _raw(text):
    raw = _RAW.get(text)
    if raw is None:
        if len(_RAW) >= RAW_CACHE_SIZE:
            _RAW.clear()
        raw = _RAW[text] = inet_pton(AF_INET6 if ":" in text else AF_INET, text)
    return raw


def _key(pkt):
    """(packed key, the sender's side of it: FIRST_END, SECOND_END or SAME_ENDS)."""
    if _IN_C:
        key = _v4_key(pkt)
        if key is not None:
            return key
    p = pkt.proto
    if p == TCP or p == UDP:
        sp, dp = pkt.sport, pkt.dport
    elif p in _ECHO and pkt.icmp_type in _ECHO[p]:
        sp = dp = pkt.icmp_id & 0xFFFF
    else:
        sp = dp = 0
    s, d = pkt.src_raw, pkt.dst_raw              # decode's (the text is made from them)
    if not s or not d:
        s, d = _raw(pkt.src), _raw(pkt.dst)      # a packet made otherwise: its text
    if s < d or (s == d and sp < dp):
        side = FIRST_END
    elif s == d and sp == dp:
        side = SAME_ENDS
    else:
        side = SECOND_END
        s, sp, d, dp = d, dp, s, sp
    t = pkt.tunnel
    if not t and len(s) == 4 and len(d) == 4:      # the hot case: one call
        return _V4V4_PACK(_V4V4, p, s, sp, d, dp), side
    kind, layout = _LAYOUTS[len(s), len(d), bool(t)]
    if t:
        return layout.pack(kind, p, s, sp, d, dp, t), side
    return layout.pack(kind, p, s, sp, d, dp), side


def _v4_key(pkt):
    """Compiled: _key of the hot case (a TCP or UDP packet decode made, IPv4 both ends, no
    GENEVE endpoint) packed in C: the ends compared and the 14 bytes written from the raw
    addresses' own buffers, no struct call (~1.4k instructions of a SYN's lookup). None for
    any other packet (the general code in _key, the reference, packs it)."""
    p = pkt.proto
    s, d = pkt.src_raw, pkt.dst_raw
    if ((p != TCP and p != UDP) or pkt.tunnel or type(s) is not bytes or type(d) is not bytes
            or len(s) != 4 or len(d) != 4):
        return None
    ps, pd = pkt.sport, pkt.dport
    if type(ps) is not int or type(pd) is not int or not (0 <= ps <= 0xFFFF and 0 <= pd <= 0xFFFF):
        return None                  # (a port made otherwise: struct's error, from _key)
    sp, dp = ps, pd                  # compiled: C ints
    a, b = s, d                      # compiled: pointers to the bytes' own buffers
    c = memcmp(a, b, 4)              # noqa: F821 (compiled only: _c_flow.pxd)
    if c < 0 or (c == 0 and sp < dp):
        side = FIRST_END
    elif c == 0 and sp == dp:
        side = SAME_ENDS
    else:
        side = SECOND_END
        a, sp, b, dp = b, dp, a, sp
    buf = cython.declare(cython.uchar[14])
    buf[0], buf[1] = _V4V4, p
    for i in range(4):
        buf[2 + i] = a[i]
        buf[8 + i] = b[i]
    buf[6], buf[7] = sp // 256, sp % 256
    buf[12], buf[13] = dp // 256, dp % 256
    return buf[:14], side


def _ends(key):
    """The packed key's (layout byte, address length of each end, its two ends)."""
    kind = key[0]
    la = 16 if kind & 1 else 4
    lb = 16 if kind & 2 else 4
    a = key[2:2 + la]
    pa = key[2 + la] << 8 | key[3 + la]
    o = 4 + la
    b = key[o:o + lb]
    pb = key[o + lb] << 8 | key[o + lb + 1]
    return kind, a, pa, b, pb


# The compiled Flow's key (see _c_flow.pxd): an IPv4 key without an endpoint is its two
# addresses in a C array (_addrs: four 16-bit words, so the array pickles as numbers, where
# Cython reads a char array as a NUL-ended string); _pack_v4 packs it back from them and from
# the protocol, ports and side, as _key packs a packet's. The pure Flow holds the key's bytes.
def _hold_key(flow, key):
    """Compiled: keep `key` (_key's, for the packet that made the flow) as the flow's
    addresses when its fields pack back to exactly these bytes; else (IPv6, a GENEVE
    endpoint, an echo id, a key made otherwise) as the bytes themselves."""
    flow._long_key = None
    if len(key) == 14 and key[0] == _V4V4:
        for i in range(2):
            flow._addrs[i] = key[2 + 2 * i] * 256 + key[3 + 2 * i]
            flow._addrs[2 + i] = key[8 + 2 * i] * 256 + key[9 + 2 * i]
        if _is_key(flow, key):
            return
    flow._long_key = key


def _pack_v4(flow, buf):
    """Compiled: the flow's IPv4 key into buf[0:14], _key's layout: the layout byte, the
    protocol, then each end's address and port. The ports are the flow's, in the key's order
    (a protocol without ports has 0 in both; an ICMP echo id, or any key its fields do not
    pack back to, _hold_key keeps as bytes)."""
    if flow._side == SECOND_END:
        pa, pb = flow.dport, flow.sport
    else:
        pa, pb = flow.sport, flow.dport
    buf[0], buf[1] = _V4V4, flow.proto
    for i in range(2):                              # big-endian, as struct's "H" and "4s"
        a, b = flow._addrs[i], flow._addrs[2 + i]
        buf[2 + 2 * i], buf[3 + 2 * i] = a // 256, a % 256
        buf[8 + 2 * i], buf[9 + 2 * i] = b // 256, b % 256
    buf[6], buf[7] = pa // 256, pa % 256
    buf[12], buf[13] = pb // 256, pb % 256


def _is_key(flow, key):
    """Is `key` (packed bytes) the flow's key? Compiled, byte by byte against what its
    fields pack (no bytes made: a hit in FlowTable.flows compares here every packet)."""
    if not COMPILED:
        return flow.key == key
    if flow._long_key is not None:
        return flow._long_key == key
    if len(key) != 14:
        return False
    buf = cython.declare(cython.uchar[14])
    _pack_v4(flow, buf)
    k = key                          # compiled: a pointer to the bytes' own buffer
    for i in range(14):
        if buf[i] != k[i]:
            return False
    return True


def _key_bytes(flow):
    """Flow.key of the compiled Flow (its fields: compiled only)."""
    if flow._long_key is not None:
        return flow._long_key
    buf = cython.declare(cython.uchar[14])
    _pack_v4(flow, buf)
    return buf[:14]                  # a C char array's slice: bytes


def _key_hash(flow):
    """hash(flow.key); compiled, hashed from a stack buffer, no bytes made."""
    if not COMPILED:
        return hash(flow.key)
    if flow._long_key is not None:
        return hash(flow._long_key)
    buf = cython.declare(cython.uchar[14])
    _pack_v4(flow, buf)
    return appliance_hash_bytes(buf, 14)  # noqa: F821 (compiled only: _c_flow.pxd)


def address_text(raw):
    """A raw address (4 or 16 bytes) as decode writes it."""
    return _v4name(raw) if len(raw) == 4 else _v6name(raw)


_name = address_text


# TIMEOUTS again, as a table [protocol][state's index in STATES] over every protocol byte:
# the timeout _file needs on every packet is then two tuple indexes in the compiled twin (its
# Flow holds both as bytes) instead of two dict lookups by the state's text. Derived, so
# TIMEOUTS stays the one definition -- at import: TIMEOUTS is never written after it (a write
# would change the pure twin and not the compiled one; review rvlookup found none).
_TIMEOUT_TABLE = tuple(tuple(TIMEOUTS.get(p, DEFAULT_TIMEOUTS).get(s, 30) for s in STATES) for p in range(256))


def timeout(flow):
    """The flow's idle timeout: TIMEOUTS[proto][state], 30 s for what it does not name."""
    if _IN_C:
        return _TIMEOUT_TABLE[flow.proto][flow._state_code]
    return TIMEOUTS.get(flow.proto, DEFAULT_TIMEOUTS).get(flow.state, 30)

class FlowRare:
    """The per-flow state most flows never set, in one object a flow makes on the first
    write that is not the default: 9 slots fewer in every Flow (72 B at 1M flows; a
    spoofed SYN's flow sets none of them)."""

    __slots__ = ("vars", "matched", "alerted_rules", "_id", "payloads", "monitored", "midstream", "unoriented",
                 "client_awaited")
    DEFAULTS = {
        "vars": None,            # detect.flowstate.FlowVars: flowbits/flowint/bypass
        "matched": None,         # Detector.decide: (generation, rules matched while an earlier one pended)
        "alerted_rules": None,   # set of (rule index, direction) header-only alerts already reported
        "_id": None,             # the EVE flow_id, once made (Flow.id)
        "payloads": None,        # detect.stream_payload: [to_server, to_client] reassembled bytes
        "monitored": False,      # its drop/reject was in monitor mode: packets pass (Inspector._monitored)
        "midstream": False,      # TCP picked up without its handshake: initiator unknown (set by the Inspector)
        "unoriented": False,     # the initiator is not sure: rules read both orientations (set by the Inspector)
        "client_awaited": False,  # passed server-first: only the client's first bytes may change it (Inspector)
    }

    def __init__(self):
        for name, value in self.DEFAULTS.items():
            setattr(self, name, value)


class RareField:
    """A FlowRare field read and written as the flow's own: its default while the flow has
    no FlowRare, which the first write of anything else makes. A descriptor class, not a
    property of two closures: compiled, a read is a C call (a property's getter is a Python
    call, ~400 instructions, and the Inspector reads these on every packet)."""

    __slots__ = ("name", "default")

    def __init__(self, name, default):
        self.name = name
        self.default = default

    def __get__(self, flow, owner):
        if flow is None:
            return self                  # read from the class
        return _rare_get(flow, self)

    def __set__(self, flow, value):
        _rare_set(flow, self, value)

    def __delete__(self, flow):
        # as the properties these were (compiled, Cython would answer NotImplementedError)
        raise AttributeError(f"cannot delete Flow.{self.name}")


def _rare_get(flow, field):
    # (compiled: flow typed, its rare a struct read)
    rare = flow.rare
    return field.default if rare is None else getattr(rare, field.name)


def _rare_set(flow, field, value):
    rare = flow.rare
    if rare is None:
        if value is field.default:
            return                       # reads back the same without an object
        rare = flow.rare = FlowRare()
    setattr(rare, field.name, value)


class Flow:
    __slots__ = (
        "key", "proto", "_side", "sport", "dport",     # _side: which end of the key the initiator is
        "start", "last", "state", "tcp_seen", "_isn",   # tcp_seen: bits of handshake/teardown progress
        "pkts_ts", "pkts_tc", "bytes_ts", "bytes_tc",
        "inspected_bytes",                              # payload that went through detection (depth budget)
        "inspected_tc",                                 # ... of it, to the client (.rules: a budget per direction)
        "verdict", "verdict_rule", "final", "offloaded", "alerted",
        "app", "stream", "tcp", "cand_ts", "cand_tc",
        "direction", "in_iface", "flags_ts", "flags_tc", "reason",
        "pcap_cnt", "pcap_file",
        "older", "younger",                             # its neighbours in its FlowTable queue (a Queue
                                                        # at the ends); None while in none
        "rare",                                         # FlowRare, made when one of its fields is first set
    )

    def __init__(self, key, pkt, reverse=False, side=-1):
        """`key` and `side`: _key(pkt) (the packet's side is looked up again when not given)."""
        _init_flow(self, key, pkt, reverse, side)

    # The flow is its own key in FlowTable.flows (flows[flow] = flow): it hashes as its packed
    # key and equals those bytes, so a packet's key finds it (flows.get(key)) and the compiled
    # Flow holds no key object (48 B a flow). Any other object it equals only when it is that
    # object: two flows of one conversation (a reused port's old and new) stay two.
    def __hash__(self):
        return _key_hash(self)

    def __eq__(self, other):
        if type(other) is bytes:
            return _is_key(self, other)
        if isinstance(other, Flow):
            return self is other
        return NotImplemented

    # The addresses live in the packed key only (raw); their text is made when read (events,
    # rules' address lists, the control plane: once per flow or event, not per packet).
    @property
    def src(self):
        """The initiator's address, as decode writes it."""
        _, a, _, b, _ = _ends(self.key)
        return _name(b if self._side == SECOND_END else a)

    @property
    def src_raw(self):
        """The initiator's address as the key holds it: to group many flows by address
        without making (and caching) text for each (control.report's talkers)."""
        _, a, _, b, _ = _ends(self.key)
        return b if self._side == SECOND_END else a

    @property
    def dst(self):
        """The responder's address."""
        _, a, _, b, _ = _ends(self.key)
        return _name(a if self._side == SECOND_END else b)

    @property
    def dst_raw(self):
        """The responder's address as the key holds it (rules' address indexes look it up)."""
        _, a, _, b, _ = _ends(self.key)
        return a if self._side == SECOND_END else b

    @property
    def tunnel(self):
        """The GENEVE endpoint (GWLBe ENI id) of the flow's key, 0 when it has none."""
        key = self.key
        return int.from_bytes(key[-8:], "big") if key[0] & 4 else 0

    @property
    def tuple_key(self):
        """The key as the tuple it was before keys were packed: (proto, addr, port, addr,
        port[, endpoint]), the two ends ordered by their text (ICMP echo: the id for both
        ports, other ICMP 0). The EVE flow_id is hashed from it, so ids did not change."""
        _, a, pa, b, pb = _ends(self.key)
        s, d = _name(a), _name(b)
        p = self.proto
        k = (p, s, pa, d, pb) if s < d or (s == d and pa <= pb) else (p, d, pb, s, pa)
        t = self.tunnel
        return k + (t,) if t else k

    @property
    def isn(self):
        """The client's ISN from its latest SYN, or None. Kept as a number with -1 for None:
        a 32-bit ISN, so the compiled Flow holds it in a C field (no int object per flow)."""
        isn = self._isn
        return None if isn < 0 else isn

    @isn.setter
    def isn(self, value):
        self._isn = -1 if value is None else value

    @property
    def id(self):
        """EVE flow_id: a stable 53-bit hash of the (tuple) key and start time (JSON-safe), made on first use.
        The start as a float: timestamps are (pcap, NFQUEUE, GWLB), and the compiled Flow holds a
        C double, which must hash the same as the pure one given an int."""
        if self._id is None:
            digest = hashlib.blake2b(repr((self.tuple_key, float(self.start))).encode(), digest_size=8).digest()
            self._id = int.from_bytes(digest, "big") & 0x1FFFFFFFFFFFFF
        return self._id

    @property
    def packets(self):
        return self.pkts_ts + self.pkts_tc

    if COMPILED:
        @property
        def key(self):
            """The packed key (flow_key): rebuilt from the C fields, or the bytes the flow
            holds for a key they do not pack (_hold_key)."""
            return _key_bytes(self)

        # The closed sets (STATES, ...) as bytes: the same strings read back (see above).
        @property
        def state(self):
            return STATES[self._state_code]

        @state.setter
        def state(self, value):
            self._state_code = _code(_STATE_CODES, "state", value)

        @property
        def verdict(self):
            return VERDICTS[self._verdict_code]

        @verdict.setter
        def verdict(self, value):
            self._verdict_code = _code(_VERDICT_CODES, "verdict", value)

        @property
        def direction(self):
            return DIRECTIONS[self._direction_code]

        @direction.setter
        def direction(self, value):
            self._direction_code = _code(_DIRECTION_CODES, "direction", value)

        @property
        def reason(self):
            return REASONS[self._reason_code]

        @reason.setter
        def reason(self, value):
            self._reason_code = _code(_REASON_CODES, "reason", value)

    # FlowRare's fields, read and written as the flow's own. In the class body: the compiled
    # Flow is an extension type, whose attributes cannot be added once the class exists.
    vars = RareField("vars", None)
    matched = RareField("matched", None)
    alerted_rules = RareField("alerted_rules", None)
    _id = RareField("_id", None)
    payloads = RareField("payloads", None)
    monitored = RareField("monitored", False)
    midstream = RareField("midstream", False)
    unoriented = RareField("unoriented", False)
    client_awaited = RareField("client_awaited", False)


# The Inspector's reads and writes of a new flow's coded fields and FlowRare flags, once per
# inspected packet: compiled, C calls on the struct (through the type, each is a generic
# getattr/setattr into a property or descriptor, ~150-350 instructions)
MIDSTREAM, UNORIENTED, MONITORED = Flow.midstream, Flow.unoriented, Flow.monitored


def verdict_of(flow):
    if _IN_C:
        return VERDICTS[flow._verdict_code]
    return flow.verdict


def set_verdict(flow, value):
    if _IN_C:
        flow._verdict_code = _code(_VERDICT_CODES, "verdict", value)
    else:
        flow.verdict = value


def set_direction(flow, value):
    if _IN_C:
        flow._direction_code = _code(_DIRECTION_CODES, "direction", value)
    else:
        flow.direction = value


def flag_of(flow, field):
    """A FlowRare flag (MIDSTREAM, ...), as flow.<its name> reads it."""
    return _rare_get(flow, field)


def set_flag(flow, field, value):
    _rare_set(flow, field, value)



# tcp_seen bits; the client's SYN options sit above them (window scale in bits 8-11)
_SYN, _SYNACK, _HS_DONE, _FIN_TS, _FIN_TC = 1, 2, 4, 8, 16
_SYN_TS, _SYN_WS = 32, 64
_HS_BITS = 31
_CSUM_TS = 4096                       # the client sent a valid checksum: its bad ones are decoys
# The server's SYN/ACK came first, from a port the kernel's SYN proxy guards (config
# `overload.synproxy`): the client's handshake was with the proxy (its cookie checked), and
# its ACKs count from the cookie, not from the server's ISN (TcpReceiver.ack_offset)
_PROXIED = 8192
# The client resent its SYN (same ISN) with other options: the server keeps the first one's
# if its request is alive, the later one's if that expired (~63 s): which is unknown
_SYN_MIXED = 16384
_SYN_OPTS = _SYN_TS | _SYN_WS | 15 << 8
# Two SYNs with other ISNs before any SYN/ACK: Linux keeps the first (the second is out of
# its request's window) or the second (the first's request was reset or expired): unknown
# until the SYN/ACK, and not told by it either (review s19c H4)
_ISN_MIXED = 32768
_KEEP = _HS_BITS | _CSUM_TS | _PROXIED | _ISN_MIXED
OFFSET_UNKNOWN = -1                   # TcpReceiver.ack_offset when it cannot be learnt


def _ingress_ok(flow, pkt, side):
    """Did the packet enter where its sender's packets enter? The client's on the flow's
    in_iface, the server's on its `out` (appliance/ingress.py). Unknown (replay, a pair without
    an output device): yes."""
    pair = flow.in_iface
    if type(pair) is not Ingress or not pair.out:
        return True
    if side == flow._side and pkt.sport == flow.sport:     # from the client (as from_initiator)
        return pkt.in_iface == pair
    return pkt.in_iface == pair.out


def _new_flow(key, pkt, reverse, side):
    """Flow(key, pkt, reverse, side) for FlowTable.lookup: compiled, the object made by the
    type's C allocator and its fields set in C (_init_flow), without the call through the type
    (argument parsing, __init__ as a Python method: ~2k instructions of a new flow)."""
    flow = Flow.__new__(Flow)
    _init_flow(flow, key, pkt, reverse, side)
    return flow


def _init_flow(flow, key, pkt, reverse, side):
    """Flow.__init__'s body, a function so the compiled twin sets the fields typed."""
    flow.proto = pkt.proto
    if side < 0:
        side = _key(pkt)[1]
    sp, dp = _PORTS[pkt.sport], _PORTS[pkt.dport]     # pure Python: shared port ints, none per flow
    if reverse:
        side = FIRST_END + SECOND_END - side if side else side
        sp, dp = dp, sp
    flow.sport, flow.dport = sp, dp
    flow._side = side
    if flow.proto in _ECHO and pkt.icmp_type in _ECHO[flow.proto]:
        flow.sport = flow.dport = 0
    if COMPILED:                 # no key object: packed back from the fields set above
        _hold_key(flow, key)
    else:
        flow.key = key
    flow.start = flow.last = pkt.ts
    if not COMPILED:             # compiled: zeroed bytes, each closed set's first member
        flow.state = NEW
    flow.tcp_seen = 0
    flow._isn = -1               # TCP: the client's ISN, from its latest SYN (Flow.isn; -1: None)
    flow.pkts_ts = flow.pkts_tc = flow.bytes_ts = flow.bytes_tc = 0
    flow.inspected_bytes = flow.inspected_tc = 0
    if not COMPILED:
        flow.verdict = None      # None (undecided) | "pass" | "drop" | "reject"
    flow.verdict_rule = None     # Rule that decided, or None for the default action
    flow.final = False           # verdict can no longer change and nothing is left to inspect
    flow.offloaded = False       # handed to the kernel (live) / would have been (replay); set by the Inspector
    flow.alerted = False
    flow.app = None              # applayer.state.AppState; None while the protocol is unknown
    flow.stream = None           # stream.ClientStream (TCP, from the client's first segment)
    flow.tcp = None              # TcpReceiver (TCP, from the first packet after the client's SYN)
    flow.cand_ts = flow.cand_tc = None   # detection's candidate rule masks per direction
    if not COMPILED:
        flow.direction = "any"
        flow.reason = ""
    via = pkt.in_iface
    # live: the interfaces of its client's packets (appliance/ingress.py), also when the
    # responder's packet made it (a SYN/ACK, an echo reply: the pair the other way)
    flow.in_iface = via.back if reverse and type(via) is Ingress else via
    flow.flags_ts = flow.flags_tc = 0
    flow.pcap_cnt = pkt.pcap_cnt # replay: number of the flow's latest packet in its file
    flow.pcap_file = pkt.pcap_file  # replay: the file that packet came from
    flow.older = flow.younger = None
    flow.rare = None


class Queue:
    """The flows of one (class, timeout), oldest first: the ring's sentinel. `younger` is
    the oldest flow, `older` the youngest; empty when both are the queue itself."""

    __slots__ = ("older", "younger")

    def __init__(self):
        self.older = self.younger = self

    def __bool__(self):
        return self.younger is not self

    def __len__(self):
        n, f = 0, self.younger
        while f is not self:
            n, f = n + 1, f.younger
        return n


def _unlink(flow):
    older, younger = flow.older, flow.younger
    older.younger = younger
    younger.older = older


class FlowTable:
    def __init__(self, max_flows=100_000, verify_checksums=False, proxied_ports=frozenset()):
        self.max_flows = max_flows
        self.proxied_ports = proxied_ports   # server ports behind the kernel's SYN proxy (see _PROXIED)
        # replay: a TCP segment with a bad checksum is one the receiver discards (live,
        # conntrack calls it INVALID and it never reaches a worker); it must not move state
        self.verify_checksums = verify_checksums
        self.flows = {}
        self.queues = ({}, {}, {})   # per class: idle timeout -> Queue of flows, oldest first
        self.total = self.evicted = 0
        self.evicted_by_class = [0, 0, 0]
        self.by_proto = {}

    def __len__(self):
        return len(self.flows)

    def file(self, flow):
        """Put the flow at the young end of the queue its class and timeout say; the
        Inspector calls it when a flow becomes final (a class change lookup cannot see)."""
        _file(self.queues, flow)

    def _unfile(self, flow):
        del self.flows[flow]
        _unlink(flow)
        flow.older = flow.younger = None

    def lookup(self, pkt):
        """Return (flow, to_server, ended): the packet's flow, its direction, and a
        flow that ended to make room for it (evicted, or closed and reused), or None.
        to_server None: the packet entered on the other end's side (_ingress_ok), the flow
        untouched."""
        key, side = _key(pkt)
        flows = self.flows
        flow = flows.get(key)
        if flow is not None and pkt.in_iface and not _ingress_ok(flow, pkt, side):
            return flow, None, None            # not this flow's packet (ingress.py): untouched
        evicted = None
        syn = None
        if flow is not None and pkt.proto == TCP and pkt.tcp_flags & SYN and _reused(flow, pkt, side):
            # Port reuse: a fresh SYN on a closed connection (both FINs acked, or a RST the
            # receiver accepted), or the server's SYN/ACK to a SYN the open connection
            # ignored (the server had forgotten it; conntrack re-syncs the same way), starts
            # a new flow and a new inspection. A SYN on an open connection alone does not:
            # the receiver answers it with a challenge ACK and carries on (RFC 5961 4.2).
            self._unfile(flow)
            if flow.state == CLOSED:
                flow.reason = "closed"
            else:
                flow.reason = "reused"
                syn = flow.tcp.syn_ignored
            evicted, flow = flow, None
        if flow is None:
            if len(flows) >= self.max_flows and evicted is None:
                evicted = self._evict()
            # A first-seen SYN/ACK or echo reply comes from the responder.
            if pkt.proto == TCP:
                reverse = (pkt.tcp_flags & (SYN | ACK)) == (SYN | ACK)
            else:
                reverse = pkt.proto in _ECHO and pkt.icmp_type == _ECHO[pkt.proto][1]
            flow = _new_flow(key, pkt, reverse, side)
            if syn is not None:                # the SYN this SYN/ACK answers came before it
                flow.isn, flow.tcp_seen = syn
            elif reverse and pkt.proto == TCP and pkt.sport in self.proxied_ports:
                flow.tcp_seen = _PROXIED
            flows[flow] = flow
            self.total += 1
            self.by_proto[pkt.proto] = self.by_proto.get(pkt.proto, 0) + 1
        to_server = _account(flow, pkt, self.verify_checksums, side)
        # the sender's end, whatever the packet's type says of its direction (an echo reply
        # may come from the initiator): the header the packet carries is that end's
        pkt.from_initiator = side == flow._side and pkt.sport == flow.sport
        _file(self.queues, flow)              # most recently active; class/timeout may have changed
        return flow, to_server, evicted

    def _evict(self):
        """Remove the longest idle flow of the first class that has any: final, then
        unconfirmed, then pending. O(1): a look at the front of each of the class's few
        queues (one per timeout value)."""
        for cls, queues in enumerate(self.queues):
            victim = None
            for queue in queues.values():
                if queue.younger is not queue:
                    oldest = queue.younger      # a Flow: the queue is not empty
                    if victim is None or oldest.last < victim.last:
                        victim = oldest
            if victim is not None:
                self._unfile(victim)
                victim.reason = "evicted"
                self.evicted += 1
                self.evicted_by_class[cls] += 1
                return victim
        return None

    def expire(self, now):
        """Remove and return flows idle past their state's timeout."""
        out = []
        for queues in self.queues:
            for t, queue in queues.items():
                while queue.younger is not queue:
                    flow = queue.younger
                    if flow.last + t > now:
                        break                  # the queue's oldest: the rest are younger
                    self._unfile(flow)
                    flow.reason = "timeout"
                    out.append(flow)
        out.sort(key=lambda f: (f.last, f.start))   # deterministic, oldest first
        return out

    def remove(self, flow, reason):
        if self.flows.get(flow) is flow:
            self._unfile(flow)
            flow.reason = reason

    def drain(self, reason="shutdown"):
        out = list(self.flows.values())
        self.flows.clear()
        for queues in self.queues:
            queues.clear()
        for f in out:
            f.older = f.younger = None
            f.reason = reason
        return out


def _file(queues, flow):
    """FlowTable.file; a function, so the compiled twin reads the flow's fields typed."""
    if flow.final:
        cls = FINAL
    elif confirmed(flow):
        cls = PENDING
    else:
        cls = UNCONFIRMED
    t = timeout(flow)
    by_timeout = queues[cls]
    queue = by_timeout.get(t)
    if queue is None:
        queue = by_timeout[t] = Queue()
    if flow.older is not None:               # in a queue (the links say so: no field of its own)
        if queue.older is flow:
            return                          # already the youngest of its queue
        _unlink(flow)
    youngest = queue.older
    flow.older, flow.younger = youngest, queue
    youngest.younger = queue.older = flow


def _account(flow, pkt, verify_checksums, side):
    """Count the packet on its flow and follow the flow's state; True when it goes to the
    server. `side`: the sender's end of the key (_key), the initiator's is flow._side: the
    same end is the same address and port (echo: id). Part of FlowTable.lookup; a function,
    so the compiled twin reads both typed."""
    proto = flow.proto
    # the port first: a C field (an echo flow's are 0), where `in _ECHO` is a dict lookup
    if flow.sport == 0 and proto in _ECHO and pkt.icmp_type in _ECHO[proto]:
        to_server = side == flow._side and pkt.icmp_type == _ECHO[proto][0]
    else:
        to_server = side == flow._side and pkt.sport == flow.sport
    if to_server:
        flow.pkts_ts += 1
        length = pkt.length          # read after the count, as `+= pkt.length` did (a bad one raises there)
        flow.bytes_ts += length
    else:
        flow.pkts_tc += 1
        length = pkt.length
        flow.bytes_tc += length
    ts = pkt.ts
    if ts > flow.last:
        flow.last = ts
    flow.pcap_cnt = pkt.pcap_cnt
    flow.pcap_file = pkt.pcap_file
    if flow.proto == TCP:
        # Only the client's checksums: a segment to the server is what its TCP may drop;
        # one from the server could be forged by the client just as well with a good one.
        if to_server and verify_checksums and _bad_checksum(flow, pkt):
            pkt.discard = "tcp.invalid_checksum"
        else:
            _tcp_state(flow, pkt, to_server)
    elif flow.state == NEW and flow.pkts_ts and flow.pkts_tc:
        # UDP/ICMP: seen both ways (the state read here only: the compiled Flow's is a
        # property, a Python call, which a TCP packet need not make)
        flow.state = ESTABLISHED
    return to_server


def _tcp_state(flow, pkt, to_server):
    """Follow the connection's state through the segments its receiver accepts. A segment
    the receiving stack would discard changes nothing; `pkt.discard` then says why, so the
    stream leaves it out too."""
    flags = pkt.tcp_flags
    if to_server:
        flow.flags_ts |= flags
    else:
        flow.flags_tc |= flags
    seen = flow.tcp_seen
    if to_server and flags & SYN and seen & _HS_DONE:
        # Linux answers any SYN on an established connection with a challenge ACK and drops
        # the segment (RFC 5961 4.2): no new ISN, no new flow, unless the server answers a
        # plain SYN with a SYN/ACK (see _reused).
        pkt.discard = "tcp.syn_on_established"
        if flow.tcp is not None and not flags & ACK:
            flow.tcp.syn_ignored = (pkt.seq, _SYN | _syn_options(pkt))
        return
    if to_server and flags & (SYN | ACK) == SYN:
        seq = pkt.seq
        opts = _syn_options(pkt)
        t = flow.tcp
        if t is not None and seq != flow._isn and not seen & _PROXIED and t.ack_offset != OFFSET_UNKNOWN:
            # Another ISN after the server answered: Linux drops it (out of its request's
            # window: the first connection goes on), resets the request (in the window), or
            # the request had expired (a new one): which, the server alone knows (review s19 F5)
            _doubt(t, pkt, "tcp.handshake_ambiguous")
        elif t is None and seen & _SYN and seq != flow._isn:
            seen |= _ISN_MIXED
        if seen & _SYN and seq == flow._isn and (seen & _SYN_MIXED or (seen ^ opts) & _SYN_OPTS):
            opts |= _SYN_MIXED                      # the same SYN again, its options changed
        flow._isn = -1 if seq is None else seq      # Flow.isn's setter, without its Python call
        seen = flow.tcp_seen = seen & _KEEP | opts
    elif flow.tcp is not None or (not to_server and flags & SYN and flags & ACK):
        why = _receiver_check(flow, pkt, to_server, flags)
        if why:
            pkt.discard = why
            return
    elif to_server and not flags & (ACK | RST | SYN):
        pkt.discard = "tcp.no_ack"         # Linux drops a non-SYN segment without ACK
        return
    if flags & RST:
        flow.state = CLOSED
        return
    if flags & SYN:
        if flags & ACK:
            if not to_server and seen & (_SYN | _PROXIED):
                seen |= _SYNACK
        elif to_server:
            seen |= _SYN
    elif flags & ACK and to_server and seen & _SYNACK and not seen & _HS_DONE:
        seen |= _HS_DONE
        if flow.state == NEW:
            flow.state = ESTABLISHED
    if flags & FIN:
        seen |= _FIN_TS if to_server else _FIN_TC
        if flow.state in (NEW, ESTABLISHED):
            flow.state = CLOSING
    if seen & _FIN_TS and seen & _FIN_TC and flags & ACK and not flags & FIN:
        flow.state = CLOSED
    flow.tcp_seen = seen


def _bad_checksum(flow, pkt):
    """Would the server drop this client segment for its checksum? Captures taken on the
    client carry unfinished (offloaded) checksums on all its segments, so a bad checksum
    only counts once the client has sent a good one: then it is a decoy."""
    ok = transport_ok(pkt)
    if ok:
        flow.tcp_seen |= _CSUM_TS
        return False
    return ok is False and bool(flow.tcp_seen & _CSUM_TS)


def _syn_options(pkt):
    """tcp_seen bits for what the receiver will know of the client's SYN options."""
    bits = 0
    if pkt.tsopt is not None:
        bits |= _SYN_TS
    if pkt.wscale is not None:
        bits |= _SYN_WS | min(pkt.wscale, 14) << 8     # Linux caps the shift at 14
    return bits


def _reused(flow, pkt, side):
    """Does this SYN or SYN/ACK start a new connection on the flow's addresses and ports?
    `side`: the sender's end of the key (_key)."""
    if not pkt.tcp_flags & ACK:
        return flow.state == CLOSED
    t = flow.tcp
    responder = side != flow._side or side == SAME_ENDS     # sent from the responder's address and port
    if flow.tcp_seen & _PROXIED and t is not None and responder:
        # behind the SYN proxy the client's SYN is never seen: the server's SYN/ACK with
        # another ISN is the kernel's next connection on these ports (a retransmission has the same)
        return ((pkt.seq + 1) & MASK) != t.s_acked0
    return (t is not None and t.syn_ignored is not None and responder
            and ((pkt.ack - 1) & MASK) == t.syn_ignored[0])


MASK, HALF = 0xFFFFFFFF, 0x80000000


class TcpReceiver:
    """What each end has sent and the server has accepted, from the SYN/ACK on: enough to
    tell which client segments Linux (the server) discards, and which RSTs either end
    accepts. Without the SYN/ACK (mid-stream pickup, a capture of one direction) nothing
    is known and nothing is discarded."""

    __slots__ = ("s_nxt", "s_una", "s_acked0", "s_rcv", "s_wup", "c_nxt", "max_window", "wscale", "ts_recent",
                 "syn_ignored", "ack_offset", "bytes_acked", "synack_ack", "synack_opts")

    def __init__(self, pkt, seen):
        seq = pkt.seq
        self.s_nxt = (seq + 1 + len(pkt.payload)) & MASK     # the server's snd_nxt
        self.s_una = self.s_acked0 = (seq + 1) & MASK        # its snd_una; bytes_acked counts from ISS+1
        # its bytes_acked, 64-bit as Linux's (review s18b F1: read as (snd_una - ISS - 1) mod
        # 2**32 it fell back to a few bytes past 4 GiB sent, and an older ACK the server
        # takes was read as too old: its data unseen here, then resent with other bytes)
        self.bytes_acked = 0
        self.s_rcv = self.c_nxt = pkt.ack                    # its rcv_nxt; the client's snd_nxt
        # its rcv_wup: rcv_nxt when it last sent (the ACK it sent last). Linux moves
        # ts_recent only for segments up to there; ACKs still in flight make ours lag, so
        # ours is never newer than the server's and PAWS here discards no more than it does
        self.s_wup = pkt.ack
        self.synack_ack = pkt.ack                            # the SYN/ACK it was built from
        self.synack_opts = _synack_opts(pkt)
        self.max_window = 0                                  # the largest window the client offered
        # The client's window scale applies when both SYN and SYN/ACK carried the option;
        # None when the SYN was not seen or resent with other options (its scale unknown:
        # no "too old" check then).
        if not seen & _SYN or seen & _SYN_MIXED:
            self.wscale = None
        elif seen & _SYN_WS and pkt.wscale is not None:
            self.wscale = (seen >> 8) & 15
        else:
            self.wscale = 0
        # PAWS runs when both SYN and SYN/ACK carried timestamps; the SYN/ACK echoes the
        # SYN's TSval, the receiver's first ts_recent (the one the server kept, when the
        # client resent its SYN with another).
        self.ts_recent = pkt.tsopt[1] if seen & _SYN_TS and pkt.tsopt is not None else None
        self.syn_ignored = None                              # (seq, tcp_seen bits) of a SYN it ignored
        # what to take off a client's ACK to read it in the server's numbers: 0, except behind
        # the SYN proxy (cookie ISN - server ISN: None until the client's first ACK tells,
        # OFFSET_UNKNOWN when it cannot)
        self.ack_offset = None if seen & _PROXIED else 0


def _receiver_check(flow, pkt, to_server, flags):
    """'' when the receiving end accepts the segment (and what it accepted is noted), else
    the reason it discards it. Follows tcp_validate_incoming and tcp_ack in Linux's
    net/ipv4/tcp_input.c for the server; for RSTs to the client, its next expected
    sequence number is taken to be the server's snd_nxt. Every TCP packet comes here, so
    the 32-bit sequence comparisons are written out: "a after b" is 0 < (a-b) mod 2**32 <
    2**31, "a not after b" is (a-b-1) mod 2**32 >= 2**31 - 1."""
    t = flow.tcp
    seq = pkt.seq
    n = len(pkt.payload)
    if flags & (SYN | FIN):
        n += (1 if flags & FIN else 0) + (1 if flags & SYN else 0)
    end = (seq + n) & MASK
    if not to_server:
        if t is None:                       # the SYN/ACK: the server's side becomes known
            t = flow.tcp = TcpReceiver(pkt, flow.tcp_seen)
            if flow.tcp_seen & _ISN_MIXED:
                _doubt(t, pkt, "tcp.handshake_ambiguous")
            return ""
        if flags & SYN and flags & ACK and not flow.tcp_seen & _PROXIED and t.ack_offset != OFFSET_UNKNOWN:
            opts = _synack_opts(pkt)
            if ((seq + 1) & MASK) != t.s_acked0 or pkt.ack != t.synack_ack or (opts ^ t.synack_opts) & 511:
                # Two SYN/ACKs that differ: the first request expired and a new SYN made
                # another, SYN cookies answer every SYN (any of them can complete), or the
                # client forged one (it can send from the server's address; review s19).
                # Which the server's connection follows is unknown and the client's ACKs
                # cannot tell (it chooses them): every check built on the handshake is off.
                _doubt(t, pkt, "tcp.handshake_ambiguous")
                return ""
            if opts != t.synack_opts:
                # only the timestamp echo: FreeBSD echoes a resent SYN's newer TSval, or it
                # is forged (PAWS on every real segment): PAWS off, the safe side
                t.ts_recent = None
        if flags & RST:
            # The client takes a RST only at exactly its rcv_nxt (RFC 5961 3.2).
            return "" if seq == t.s_nxt or not flow.tcp_seen & _HS_DONE else "tcp.rst_not_exact"
        if 0 < ((end - t.s_nxt) & MASK) < HALF:
            t.s_nxt = end
        if flags & ACK:
            ack = pkt.ack
            if ((ack - t.c_nxt - 1) & MASK) >= HALF - 1:       # not after c_nxt
                t.s_wup = ack
                if 0 < ((ack - t.s_rcv) & MASK) < HALF:
                    t.s_rcv = ack            # the server's own word for its rcv_nxt
        return ""
    if not flags & (ACK | RST | SYN):
        return "tcp.no_ack"
    # PAWS (tcp_paws_discard): a TSval older than ts_recent by more than 1; RSTs are exempt,
    # and ts_recent 0 turns it off (some stacks send 0 in the handshake)
    ts = pkt.tsopt
    if ts is not None and t.ts_recent:
        # In the handshake Linux's request checks PAWS with no slack and on RSTs too
        # (tcp_check_req: tcp_paws_reject(.., rst), window 0; review s19d F5/F6)
        if flow.tcp_seen & _HS_DONE:
            if not flags & RST and 2 <= ((t.ts_recent - ts[0]) & MASK) < HALF:
                return "tcp.paws_discard"
        elif 1 <= ((t.ts_recent - ts[0]) & MASK) < HALF:
            return "tcp.paws_discard"
    if flags & RST:
        # Only a RST at exactly rcv_nxt resets an established connection; an in-window one
        # draws a challenge ACK (RFC 5961 3.2). With client data beyond the server's acked
        # point its rcv_nxt is not known exactly: the connection is kept (the safe side).
        if flow.tcp_seen & _HS_DONE and (seq != t.s_rcv or t.c_nxt != t.s_rcv):
            return "tcp.rst_not_exact"
        if not flow.tcp_seen & _HS_DONE and (seq != t.s_rcv or flags & ACK and pkt.ack != t.s_acked0
                                            and not flow.tcp_seen & _PROXIED):
            # In the handshake Linux's request takes a RST inside its window only, and one
            # whose ACK is not its ISN+1 goes to the listener, which drops it: taken here only
            # exactly (review s19c H3: an out-of-window RST closed the flow, a new SYN opened
            # another, and the first connection's request went unread). One ignored here
            # that Linux took leaves the flow open: its next SYN then makes it ambiguous.
            return "tcp.rst_not_exact"
        return ""
    # tcp_sequence: Linux drops a segment ending before rcv_wup before it reads its ACK or
    # timestamp (review s18c F3: taken here, an old ACK moved snd_una past the server's and
    # a later ACK it takes read as too old). Its bytes were all read already, and the client
    # can forge the server ACK that moved s_wup: so not a discard, only no ACK nor TSval
    # taken from it, which can only make later checks discard less.
    old = not flags & SYN and ((end - t.s_wup) & MASK) >= HALF
    if old and flags & URG and t.ack_offset != OFFSET_UNKNOWN:
        # its urgent pointer: Linux drops the segment before tcp_urg, unless s_wup came
        # from a server ACK the client forged (review s19 F4): the urgent byte is unknown
        _doubt(t, pkt, "tcp.urgent_ambiguous")
    if flags & ACK:
        ack = pkt.ack
        offset = t.ack_offset
        if offset:
            if offset == OFFSET_UNKNOWN:
                ack = t.s_una             # the ACK cannot be read: nothing discarded for it
            else:
                ack = (ack - offset) & MASK
                if 0 < ((ack - t.s_nxt) & MASK) < HALF:
                    # Conntrack's upper bound is exact (it knows the offset): an ACK read as
                    # unsent never gets here with the true offset. The first ACK taught a wrong
                    # one (an old ACK, down to ~66,000 short, passes conntrack and the server
                    # discards its segment): what was read under it is not what the server read
                    t.ack_offset = OFFSET_UNKNOWN
                    ack = t.s_una
                    pkt.anomalies.append("tcp.synproxy_ack_unknown")   # the Inspector: ambiguous
        elif offset is None:
            # Behind the SYN proxy: the client's first ACK after the server's SYN/ACK. Before
            # any server data it acknowledges exactly the cookie ISN + 1: that gives the
            # offset. After some, it may acknowledge any part of it: say so, read no ACK
            # (conntrack, which knows the offset, still drops ACKs out of its window).
            if t.s_nxt == t.s_acked0:
                t.ack_offset = (ack - t.s_una) & MASK
                ack = t.s_una
            else:
                t.ack_offset = OFFSET_UNKNOWN
                ack = t.s_una
                pkt.anomalies.append("tcp.synproxy_ack_unknown")
        una = t.s_una
        if ack != una and not old:
            if 0 < ((ack - t.s_nxt) & MASK) < HALF:
                return "tcp.ack_unsent"       # acknowledges data the server never sent
            if ((ack - una) & MASK) >= HALF:    # before snd_una
                # (Its TSval is taken, as Linux's fast path stores it before it reads the
                # ACK; its slow path does not, and the client picks the path with its window
                # field: a segment discarded here for PAWS then has its bytes unread and
                # leaves the stream ambiguous, stream.py _ON_SERVER_NUMBERS; review s19c H1,
                # s19d F3.)
                # RFC 5961 5.2: older than snd_una - max_window, with max_window no more
                # than the bytes the client has acknowledged (Linux >= 6.2)
                acked = t.bytes_acked
                # Behind the SYN proxy the client's scale is unknown (its SYN never crosses
                # FORWARD), but before the client acknowledged any server byte the window is
                # 0 whatever the scale: every older ACK is discarded (conntrack passes them)
                if t.wscale is not None or (not acked and flow.tcp_seen & _PROXIED):
                    window = min(t.max_window, acked)
                    if ((ack - una + window) & MASK) >= HALF:
                        return "tcp.ack_too_old"
            else:
                t.bytes_acked += (ack - una) & MASK
                t.s_una = ack
        if t.wscale is not None and not flags & SYN:
            w = pkt.window << t.wscale
            if w > t.max_window:
                t.max_window = w
    if (ts is not None and t.ts_recent is not None and not old and ((seq - t.s_wup - 1) & MASK) >= HALF - 1
            and ((ts[0] - t.ts_recent) & MASK) < HALF):
        t.ts_recent = ts[0]                   # tcp_replace_ts_recent: up to rcv_wup
    rcv = t.s_rcv
    if ((seq - rcv - 1) & MASK) >= HALF - 1 and 0 < ((end - rcv) & MASK) < HALF:
        t.s_rcv = end                         # in order
    if 0 < ((end - t.c_nxt) & MASK) < HALF:
        t.c_nxt = end
    return ""


def _doubt(t, pkt, why):
    """The receiver model can no longer follow the server: no ACK read (the Inspector
    marks the client stream ambiguous: the exception policy; the scale then unused), no PAWS."""
    t.ack_offset = OFFSET_UNKNOWN
    t.ts_recent = None
    pkt.anomalies.append(why)


def _synack_opts(pkt):
    """A SYN/ACK's window scale and timestamp echo as one number, to tell another apart."""
    ws = pkt.wscale
    ts = pkt.tsopt
    return ((-1 if ts is None else ts[1]) + 1) << 9 | (-1 if ws is None else ws) + 1


def confirmed(flow):
    """Seen both ways, and for TCP a handshake the client completed: not a spoofed SYN's
    flow (its SYN/ACK goes to an address that never ACKs), a probe or an unanswered datagram."""
    return bool(flow.pkts_ts and flow.pkts_tc and (flow.proto != TCP or flow.tcp_seen & _HS_DONE))


def handshake_seen(flow):
    return bool(flow.tcp_seen & _HS_DONE)


from .compiled import use_compiled  # noqa: E402 -- last: the Cython build of this file, if built
use_compiled(globals())
