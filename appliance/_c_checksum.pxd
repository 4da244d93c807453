# Cython declarations for the compiled twin of checksum.py (see appliance/compiled.py): a
# replay checks every client TCP segment's checksum (FlowTable.lookup, verify_checksums), so
# the packet is typed (its fields struct members) and the offsets are C integers (in range
# of the frame: bytes offsets); the words are added in C (_word_sum), the few sums after it
# are C integers too.
import cython
from appliance._c_packet cimport Packet as CPacket

@cython.locals(off=Py_ssize_t, end=Py_ssize_t, n=Py_ssize_t, total=cython.ulonglong)
cpdef transport_ok(CPacket pkt)
@cython.locals(b=cython.p_uchar, s=cython.ulonglong, i=Py_ssize_t)
cdef unsigned long long _word_sum(object data, Py_ssize_t off, Py_ssize_t end) except? 0xFFFFFFFFFFFFFFFF
