# Cython declarations for the compiled twin of applayer/server.py (see appliance/compiled.py).
# Every server->client segment of a flow with transactions waiting (an HTTP, TLS or DNS-over-
# TCP client's) runs ServerSide.feed: its reassembly (stream.StreamStart, typed in
# _c_stream.pxd) is then called in C and its fields read as struct members, and so are the
# side's own. `read` counts bytes (bounded by SERVER_DEPTH); the rest stay objects, as the
# pure class's slots hold them.
import cython
from appliance._c_packet cimport Packet as CPacket
from appliance._c_stream cimport StreamStart as CStreamStart


cdef class ServerSide:
    cdef public object proto
    cdef public CStreamStart bytes
    cdef public object reader
    cdef public list waiting
    cdef public bint done
    cdef public Py_ssize_t read
    cdef public object answering
    cdef public list statused
    cdef public list unread
    cdef public object why

    @cython.locals(st=CStreamStart, grew=bint, fin=bint)
    cpdef feed(self, CPacket pkt)
    cpdef _read(self, data, full)
