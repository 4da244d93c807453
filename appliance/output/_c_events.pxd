# Cython declarations for the compiled twin of output/events.py (see appliance/compiled.py).
# Counters becomes an extension type: its per-packet updates (count_packet, count_verdict,
# the Inspector's fast-path and alert counts) are struct members instead of instance-dict
# lookups. Fields are Python objects (a count past 2**63 stays exact, as in pure Python)
# except pkts and bytes, C counts: count_packet adds to them for every packet, and 2**63
# bytes is some 20 years at 100 Gbit/s. The instance keeps a __dict__ so callers may still
# add a counter.
# count_packet, once per packet (a decided flow's too), takes the typed Packet: its fields are
# struct reads, and the Inspector's typed counters call it without a Python call (it was ~20 %
# of a decided packet's Inspector.process, six generic attribute reads: docs/performance.md).
import cython
from appliance._c_packet cimport Packet as CPacket

cdef class Counters:
    cdef dict __dict__
    cdef public long long pkts        # C counts: 2**63 packets or bytes is decades at line rate
    cdef public long long bytes
    cdef public object invalid
    cdef public list ip4
    cdef public list ip6
    cdef public dict other_kinds
    cdef public object vlan
    cdef public object encap
    cdef public object verdicts
    cdef public object would_block
    cdef public object alerts
    cdef public object alerts_suppressed
    cdef public object rule_hits
    cdef public object fast_path
    cdef public object internal_errors
    cdef public object kernel_decided
    cdef public object kernel_mismatch
    cdef public object flows_ended
    cdef public object app_flows

    @cython.locals(kinds=dict, version=cython.long, proto=cython.long)
    cpdef count_packet(self, CPacket pkt)
    cpdef count_verdict(self, action)   # every inspected packet's: a C call from the Inspector
