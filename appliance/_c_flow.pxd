# Cython declarations for the compiled twin of flow.py (see appliance/compiled.py): the
# packet is typed, so its fields are struct members; values stay Python objects, and
# the functions stay callable from Python (cpdef) with the pure module's signatures.
import cython
from appliance._c_packet cimport Packet as CPacket

# Flow becomes an extension type: numbers and flags are C fields (no int or float object per
# flow), the rest Python objects as in __slots__. A C field keeps each value's meaning:
# counters are 64-bit (a flow passes 4 GiB), the ISN sits in Flow._isn with -1 for None
# (Flow.isn says None), the times are doubles (every source stamps floats; Flow.id hashes
# float(start)), final and alerted are only ever bools; tcp_seen stays under 2**14 (a short); the
# protocol is a byte, the ports and the TCP flags fit shorts; _side is which end of
# the packed key the initiator is (the addresses live in the key only: Flow.src/dst are
# properties). offloaded stays an object (True, or kernel_policy's name). state, verdict,
# direction and reason are one byte each, an index into their closed sets (flow.STATES, ...)
# behind properties that return the strings. Declared by size, not in __slots__' order, so
# no padding (224 B, 240 with the GC header: a pymalloc size class, was 272); keep the same
# names as Flow.__slots__, the coded four as _<name>_code (tests/unit/test_compiled.py checks).
cdef class Flow:
    cdef public object key
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
    cdef public bint final
    cdef public bint alerted
    cdef public unsigned short tcp_seen
    cdef public unsigned short sport
    cdef public unsigned short dport
    cdef public unsigned short flags_ts
    cdef public unsigned short flags_tc
    cdef public unsigned char proto
    cdef public unsigned char _side
    cdef unsigned char _state_code
    cdef unsigned char _verdict_code
    cdef unsigned char _direction_code
    cdef unsigned char _reason_code

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

cpdef flow_key(CPacket pkt)
cpdef int _code(dict codes, str field, value) except -1
cpdef tuple _key(CPacket pkt)
cpdef bytes _raw(str text)
cpdef timeout(Flow flow)
cpdef _unlink(Flow flow)
@cython.locals(queue=Queue, by_timeout=dict, cls=int)
cpdef _file(tuple queues, Flow flow)
cpdef bint _account(Flow flow, CPacket pkt, verify_checksums, int side)
cpdef bint confirmed(Flow flow)
cpdef _tcp_state(Flow flow, CPacket pkt, to_server)
cpdef _bad_checksum(Flow flow, CPacket pkt)
cpdef _syn_options(CPacket pkt)
@cython.locals(t=TcpReceiver)
cpdef _reused(Flow flow, CPacket pkt, int side)
@cython.locals(t=TcpReceiver)
cpdef _receiver_check(Flow flow, CPacket pkt, to_server, flags)
