# Cython declarations for the compiled twin of inspector.py (see appliance/compiled.py).
# Inspector and Verdict become extension types: every `self.x` of the per-packet path (some
# 60 a packet) is a struct member instead of a type-cache plus instance-dict lookup, and a
# Verdict (one a packet) is built without a dict. Fields are Python objects, so a value
# reads back exactly as the pure module stored it. The instance keeps a __dict__: a subclass
# (explain.TracingInspector sets its own detector_class) and callers may still add attributes.
# _process, the per-packet sequencing, is a cpdef method whose flow, detector and counters
# are typed: their fields are struct members there too (inspector.py runs with nonecheck, so
# a None where a Flow is typed raises AttributeError as in pure Python).
import cython
from appliance._c_packet cimport Packet as CPacket
from appliance._c_flow cimport Flow as CFlow, FlowTable as CFlowTable, verdict_of, set_verdict, set_direction, flag_of, set_flag
from appliance._c_stream cimport ClientStream as CClientStream
from appliance.applayer._c_state cimport AppState as CAppState
from appliance.detect._c_engine cimport Detector as CDetector
from appliance.output._c_events cimport Counters as CCounters

cdef bint _bypassed(CFlow flow)

cdef class Verdict:
    cdef public object action
    cdef public object offload
    cdef public object flow
    cdef public object alerts
    cdef public object would

cdef class Inspector:
    cdef dict __dict__
    cdef public object settings
    cdef public object eve
    cdef public object pcap_log
    cdef public object defrag
    cdef public CFlowTable flows       # typed: lookup and file are C calls from _process
    cdef public object generation
    cdef public object detector
    cdef public object ruleset
    cdef public object depth
    cdef public object counters
    cdef public object limits
    cdef public object first_ts
    cdef public object now
    cdef public object _last_tick
    cdef public object _found
    cdef public object _ended
    cdef public object _flow
    cdef public object _txs
    cdef public object _untracked
    cdef public object _answered
    cdef public object _bodies
    cdef public object _body_pool
    cdef public object _pool_total
    cdef public object types
    cdef public object protologs
    cdef public object kernel_policy
    cdef public object _kernel
    cdef public object on_flow_end
    cdef public object _decided
    cdef public object _reject_due

    @cython.locals(flow=CFlow, det=CDetector, c=CCounters)
    cpdef _process(self, CPacket pkt)
    cpdef Verdict _unwritten(self, CPacket pkt, Verdict v)
    @cython.locals(det=CDetector)
    cpdef _direction(self, CPacket pkt, from_responder=*, addrs=*)
    # the client's stream (feed, ambiguous) and the flow's app state (proto, server, done) in C
    @cython.locals(st=CClientStream, app=CAppState)
    cpdef _applayer(self, CPacket pkt, CFlow flow, to_server, cand)
    # on every decision (a new flow's first packet): a C call, not a bound method made
    cpdef _monitored(self, rule)
