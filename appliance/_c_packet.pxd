# Cython declarations for the compiled twin of packet.py (see appliance/compiled.py).
# Packet becomes an extension type with the same fields, each a Python object as in
# __slots__ (no C ints: a value reads back exactly as the pure module stored it), so
# compiled code reads and writes them as struct members instead of through descriptors.
# Keep in step with Packet.__slots__ (tests/unit/test_compiled.py checks).

cdef class Packet:
    cdef public object ts
    cdef public object ip_version
    cdef public object src
    cdef public object dst
    cdef public object proto
    cdef public object sport
    cdef public object dport
    cdef public object tcp_flags
    cdef public object seq
    cdef public object ack
    cdef public object urg_ptr
    cdef public object window
    cdef public object wscale
    cdef public object tsopt
    cdef public object discard
    cdef public object icmp_type
    cdef public object icmp_code
    cdef public object icmp_id
    cdef public object payload
    cdef public object ttl
    cdef public object length
    cdef public object l3
    cdef public object l4_off
    cdef public object vlan
    cdef public object frag
    cdef public object quote
    cdef public object unread
    cdef public object anomalies
    cdef public object encap
    cdef public object in_iface
    cdef public object pcap_cnt
    cdef public object pcap_file
    cdef public object tunnel
    cdef public object src_raw
    cdef public object dst_raw
    cdef public object from_initiator
