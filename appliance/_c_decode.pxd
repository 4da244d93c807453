# Cython declarations for the compiled twin of decode.py (see appliance/compiled.py):
# the packet under construction is typed, so its fields are struct members. The
# functions stay callable from Python (cpdef) with the pure module's signatures.
import cython
from appliance._c_packet cimport Packet as CPacket

@cython.locals(p=CPacket)
cpdef decode_l3(data, ts=*)
@cython.locals(r=cython.p_uchar, n=cython.int, i=cython.int, v=cython.int)
cpdef str _dotted_quad(raw)
cpdef _v4name(raw, dict _cache=*)     # a dict: get and set in C, no method call
@cython.locals(p=CPacket, r=cython.p_uchar)
cpdef decode_frame(data, linktype, ts=*)
cpdef _ip(CPacket p, data, bad_version)
# (vihl, fo and the TCP offset word stay Python ints: the shared code shifts them)
@cython.locals(r=cython.p_uchar, total=cython.int, ident=cython.int, ttl=cython.int, proto=cython.int)
cpdef _ipv4(CPacket p, data)
cpdef _ipv4_options(CPacket p, data, hlen)
cpdef _ipv6(CPacket p, data)
cpdef _transport(CPacket p, proto, data, off, n, version)
@cython.locals(r=cython.p_uchar, o=cython.Py_ssize_t, sport=cython.int, dport=cython.int, window=cython.int,
               seq=cython.uint, ack=cython.uint, i=cython.int)
cpdef _tcp_segment(CPacket p, data, off, end)
cpdef _tcp_options(CPacket p, data, i, end)
cpdef _udp_datagram(CPacket p, data, off, end)
cpdef _ethertype(CPacket p, data, etype, off)
