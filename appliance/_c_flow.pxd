# Cython declarations for the compiled twin of flow.py (see appliance/compiled.py): the
# packet is typed, so its fields are struct members; values stay Python objects, and
# the functions stay callable from Python (cpdef) with the pure module's signatures.
import cython
from appliance._c_packet cimport Packet as CPacket

# Flow becomes an extension type: numbers and flags are C fields (no int or float object per
# flow), the rest Python objects as in __slots__. A C field keeps each value's meaning:
# counters are 64-bit (a flow passes 4 GiB), the ISN sits in Flow._isn with -1 for None
# (Flow.isn says None), the times are doubles (every source stamps floats; Flow.id hashes
# float(start)), final and alerted are `flag`s (a bool in one byte: they read back True/False
# as a bint did, in a quarter of its 4 bytes); tcp_seen stays under 2**16 (an unsigned short); the
# protocol is a byte, the ports shorts, the TCP flags a byte (decode keeps their low 8 bits);
# _side is which end of the packed key the initiator is. offloaded stays an object (True, or
# kernel_policy's name). state, verdict, direction and reason are one byte each, an index into
# their closed sets (flow.STATES, ...) behind properties that return the strings.
#
# The key (flow_key) is not an object of its own: an IPv4 key without a GENEVE endpoint is
# its two addresses (_addrs: four 16-bit words, the key's order), packed back from them,
# the protocol, the ports and _side when read (Flow.key) or compared (Flow.__eq__: the flow
# is its own key in FlowTable.flows). Any other key (IPv6, an endpoint, an ICMP echo id:
# rare) stays its bytes in _long_key. The fields a key is packed from are readonly: the
# flow's hash must not change while a dict holds it (_addrs is not visible to Python at all).
#
# Declared by size, not in __slots__' order, so no padding: 224 B, 240 with the GC header (a
# pymalloc size class). Keep the names of Flow.__slots__ (the pure Flow's `key` slot is
# _long_key here), the coded four as _<name>_code (tests/unit/test_compiled.py).
cdef extern from *:
    ctypedef bint flag "unsigned char"

cdef extern from *:
    # what hash(bytes) is made of: the flow hashes its key's bytes without making them. Declared
    # here, not taken from Python.h: 3.13 moved _Py_HashBytes to an internal header, and an
    # implicitly declared call returns an int, not the 64-bit hash (no flow would be found);
    # 3.14 names it Py_HashBuffer. setup.py makes an implicit declaration an error.
    """
    #if PY_VERSION_HEX >= 0x030E0000
    #define appliance_hash_bytes(p, n) Py_HashBuffer((p), (n))
    #else
    PyAPI_FUNC(Py_hash_t) _Py_HashBytes(const void *, Py_ssize_t);
    #define appliance_hash_bytes(p, n) _Py_HashBytes((p), (n))
    #endif
    """
    Py_hash_t appliance_hash_bytes(const void *src, Py_ssize_t len)

cdef class Flow:
    cdef readonly object _long_key
    cdef public object verdict_rule
    cdef public object offloaded
    cdef public object app
    cdef public object stream
    cdef public object tcp
    cdef public object cand_ts
    cdef public object cand_tc
    cdef public object in_iface
    cdef public object pcap_file
    cdef public object older
    cdef public object younger
    cdef public object rare
    cdef public double start
    cdef public double last
    cdef public long long _isn
    cdef public long long pkts_ts
    cdef public long long pkts_tc
    cdef public long long bytes_ts
    cdef public long long bytes_tc
    cdef public long long inspected_bytes
    cdef public long long inspected_tc
    cdef public long long pcap_cnt
    cdef public unsigned short tcp_seen
    cdef unsigned short _addrs[4]
    cdef readonly unsigned short sport
    cdef readonly unsigned short dport
    cdef public unsigned char flags_ts
    cdef public unsigned char flags_tc
    cdef readonly unsigned char proto
    cdef readonly unsigned char _side
    cdef public flag final
    cdef public flag alerted
    cdef unsigned char _state_code
    cdef unsigned char _verdict_code
    cdef unsigned char _direction_code
    cdef unsigned char _reason_code

# FlowRare's fields on the Flow (flow.RareField): a descriptor type, so a read is a C call
cdef class RareField:
    cdef readonly str name
    cdef readonly object default

cpdef _rare_get(Flow flow, RareField field)
cpdef _rare_set(Flow flow, RareField field, value)
# the Inspector's per-packet reads and writes of them (flow.py, after Flow): C calls
cpdef verdict_of(Flow flow)
cpdef set_verdict(Flow flow, value)
cpdef set_direction(Flow flow, value)
cpdef flag_of(Flow flow, RareField field)
cpdef set_flag(Flow flow, RareField field, value)

# A queue's sentinel: its two links are a Flow or the Queue itself.
cdef class Queue:
    cdef public object older
    cdef public object younger

# The receiver's sequence-space view (TcpReceiver): its numbers are always ints (32-bit
# sequence numbers, a window under 2**30) and become C fields; wscale and ts_recent may be
# None and syn_ignored is a tuple, so they stay objects. Keep in step with its __slots__.
cdef class TcpReceiver:
    cdef public object wscale
    cdef public object ts_recent
    cdef public object syn_ignored
    cdef public object ack_offset
    cdef public long long s_nxt
    cdef public long long s_una
    cdef public long long s_acked0
    cdef public long long s_rcv
    cdef public long long s_wup
    cdef public long long c_nxt
    cdef public long long max_window
    cdef public long long bytes_acked
    cdef public long long synack_ack
    cdef public long long synack_opts

# the packet sides and the IPv4 key's layout byte: C ints the key's code compares with
# (flow.py's module attributes in pure Python only)
cdef int SAME_ENDS, FIRST_END, SECOND_END, _V4V4
# the TCP flags (packet.py's) and the tcp_seen bits: C ints, so a segment's state tests
# (_tcp_state, _account, lookup) are C arithmetic, not Python ints' `&` on module globals
cdef int SYN, ACK, FIN, RST, URG
# the protocols a packet's flow is tested for (_account, lookup), and the 32-bit sequence
# space's mask and half: C ints, so _receiver_check's modular arithmetic is C on long longs
# (decode's numbers are 0..2**32-1: no sum or difference of them nears 2**63)
cdef int TCP, UDP, ICMP, ICMPV6
cdef long long MASK, HALF
# flow.COMPILED for the per-packet tests (flow._IN_C), and the eviction classes _file files by
cdef bint _IN_C
cdef int FINAL, UNCONFIRMED, PENDING
cdef tuple _TIMEOUT_TABLE
cdef int _SYN, _SYNACK, _HS_DONE, _FIN_TS, _FIN_TC, _SYN_TS, _SYN_WS, _HS_BITS, _CSUM_TS, _PROXIED, _KEEP, _SYN_MIXED, _SYN_OPTS, _ISN_MIXED

# The table: every packet reads its fields (flows, queues, the counters) as struct members,
# and the Inspector (its `flows` typed) calls lookup and file in C. Keep in step with
# FlowTable.__init__; the counters are ints, the rest Python objects as the pure one's.
cdef class FlowTable:
    cdef public object max_flows
    cdef public object proxied_ports
    cdef public object verify_checksums
    cdef public dict flows
    cdef public tuple queues
    cdef public long long total
    cdef public long long evicted
    cdef public list evicted_by_class
    cdef public dict by_proto
    cpdef file(self, Flow flow)
    cpdef _unfile(self, Flow flow)
    @cython.locals(queue=Queue, oldest=Flow, victim=Flow, queues=dict)
    cpdef _evict(self)
    @cython.locals(flow=Flow, evicted=Flow, side=int)
    cpdef tuple lookup(self, CPacket pkt)

cpdef Flow _new_flow(key, CPacket pkt, bint reverse, int side)
@cython.locals(pair=object)
cpdef bint _ingress_ok(Flow flow, CPacket pkt, int side) except -1
cpdef _init_flow(Flow flow, key, CPacket pkt, bint reverse, int side)
cpdef flow_key(CPacket pkt)
cpdef int _code(dict codes, str field, value) except -1
cpdef tuple _key(CPacket pkt)
cdef extern from "string.h":
    int memcmp(const void *, const void *, size_t)
@cython.locals(sp=cython.int, dp=cython.int, a=cython.p_uchar, b=cython.p_uchar, c=cython.int, side=cython.int,
               i=cython.int)
cdef tuple _v4_key(CPacket pkt)
cpdef bytes _raw(str text)
@cython.locals(i=cython.int)
cpdef _hold_key(Flow flow, bytes key)
@cython.locals(pa=cython.ushort, pb=cython.ushort, a=cython.ushort, b=cython.ushort, i=cython.int)
cdef void _pack_v4(Flow flow, unsigned char *buf) noexcept
@cython.locals(i=cython.int, k=cython.p_uchar)
cpdef bint _is_key(Flow flow, bytes key) except -1
cpdef bytes _key_bytes(Flow flow)
cdef Py_hash_t _key_hash(Flow flow) except? -1
cpdef timeout(Flow flow)
cpdef _unlink(Flow flow)
@cython.locals(queue=Queue, by_timeout=dict, cls=int)
cpdef _file(tuple queues, Flow flow)
# the packet's numbers read once into C locals (its fields are Python objects)
@cython.locals(proto=cython.int, to_server=cython.bint, length=cython.longlong, ts=cython.double)
cpdef bint _account(Flow flow, CPacket pkt, verify_checksums, int side)
cpdef bint confirmed(Flow flow)
@cython.locals(flags=cython.int, seen=cython.int, seq=object, t=TcpReceiver)
cpdef _tcp_state(Flow flow, CPacket pkt, bint to_server)
cpdef _bad_checksum(Flow flow, CPacket pkt)
@cython.locals(bits=cython.int)
cpdef int _syn_options(CPacket pkt) except? -1
@cython.locals(t=TcpReceiver)
cpdef _reused(Flow flow, CPacket pkt, int side)
# the sequence numbers as long longs: `(a - b) & MASK` is then C, with Python's result for
# any a, b under 2**62 (two's complement `&` is the modulus); a number past 64 bits raises
@cython.locals(t=TcpReceiver, seq=cython.longlong, n=cython.longlong, end=cython.longlong, ack=cython.longlong, old=cython.bint, opts=cython.longlong,
               una=cython.longlong, rcv=cython.longlong, acked=cython.longlong, window=cython.longlong)
cpdef _receiver_check(Flow flow, CPacket pkt, bint to_server, int flags)
