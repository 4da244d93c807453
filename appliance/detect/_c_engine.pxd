# Cython declarations for the compiled twin of detect/engine.py (see appliance/compiled.py).
# Detector becomes an extension type: its masks, indexes and tables (some 30 read per
# inspected packet in candidates, decide, alerts and more_to_inspect) are struct members
# instead of type-cache plus instance-dict lookups. Fields are Python objects, so a value
# reads back exactly as the pure module stored it (masks stay Python ints: 1,000 rules are
# 1,000 bits). The instance keeps a __dict__ for subclasses (explain.TracingDetector).
# _Swapped and _Reverse, a view made per lookup of the other direction, lose their dict too.
# The header indexes are typed (detect/_c_index.pxd): their lookups are C calls. The judging
# methods' flow is the compiled Flow: its fields (cached candidates, the app state) are struct
# members there (engine.py runs with nonecheck: a None flow raises AttributeError as in Python).
# The three dicts a new flow's header reads (proto, direction, the interned masks) are typed:
# their get/[] are C dict calls, not a method looked up and called.

from appliance.detect._c_index cimport AddrIndex, AddrTrie, ContentPrefilter, PortIndex, meets, and_masks   # the masks' C helpers: C calls
from appliance._c_flow cimport Flow as CFlow

cdef class Detector:
    cdef dict __dict__
    cdef public dict _masks
    cdef public object _masks_max
    cdef public object addr_only
    cdef public object alert
    cdef public object app_any
    cdef public object app_of
    cdef public object app_program
    cdef public object bidir
    cdef public object bit_of
    cdef public object block
    cdef public object body_fit
    cdef public object body_rules
    cdef public object body_txs
    cdef public object buffer_prefilter
    cdef public object content
    cdef public object decision
    cdef public object deep_alert
    cdef public object default_action
    cdef public dict direction
    cdef public PortIndex dport
    cdef public AddrIndex dst
    cdef public object exception_policy
    cdef public object field
    cdef public object filters
    cdef public object generation
    cdef public object header_alert
    cdef public AddrTrie home
    cdef public object keep
    cdef public object kind_of
    cdef public object limits
    cdef public dict mute_on
    cdef public object names
    cdef public object no_app
    cdef public object no_app_resp
    cdef public object no_content
    cdef public object no_hold
    cdef public object no_reads
    cdef public object only_tc
    cdef public object only_ts
    cdef public object payload_program
    cdef public object per_packet
    cdef public object perpkt
    cdef public object pkt_header
    cdef public object plain
    cdef public ContentPrefilter prefilter    # its scan a C call (alerts, _holds_on)
    cdef public object program
    cdef public dict proto
    cdef public object proto_any
    cdef public object proto_only
    cdef public object reads
    cdef public object response
    cdef public object rules
    cdef public object silent
    cdef public object sized
    cdef public PortIndex sport
    cdef public AddrIndex src
    cdef public object state
    cdef public object stateful
    cdef public object stream
    cdef public object stream_keep
    cdef public object stream_scan
    cdef public object both
    cdef public object thresholds
    cdef public object unnamed
    cdef public object view
    cdef public object writes

    # a new flow's header lookup, called from the compiled Inspector (candidates, in_home) and
    # from here: C calls, not method lookups (a Python subclass may still override them)
    cpdef in_home(self, ip, raw=*)
    cpdef header_addresses(self, pkt)
    cpdef candidates(self, pkt, flow, from_initiator, addrs=*)
    cpdef _header(self, pkt, direction, swapped=*, addrs=*)
    # the per-packet judging, called from the compiled Inspector's _process: C calls (no
    # closure inside them: Cython compiles none in a cpdef; engine.py writes loops instead)
    cpdef more_to_inspect(self, CFlow flow, to_server, within=*, alerts=*)
    cpdef decide(self, pkt, CFlow flow, to_server, cand, inspect, more, scan, flipped=*, discarded=*, answered=*)
    cpdef alerts(self, pkt, CFlow flow, to_server, cand, new_fields, scan, discarded=*, answered=*)
    # once a packet from _process: a C call, not a bound method made (~600 instructions)
    cpdef start_packet(self)

cdef class _Swapped:
    cdef public object proto
    cdef public object src
    cdef public object dst
    cdef public object sport
    cdef public object dport
    cdef public object src_raw
    cdef public object dst_raw

cdef class _Reverse:
    cdef public object proto
    cdef public object src
    cdef public object dst
    cdef public object sport
    cdef public object dport
    cdef public object src_raw
    cdef public object dst_raw
