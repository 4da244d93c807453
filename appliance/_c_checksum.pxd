# Cython declarations for the compiled twin of checksum.py (see appliance/compiled.py): a
# replay checks every client TCP segment's checksum (FlowTable.lookup, verify_checksums), so
# the packet is typed (its fields struct members) and the offsets are C integers (in range
# of the frame: bytes offsets); the sum itself stays a Python int, as in the source.
import cython
from appliance._c_packet cimport Packet as CPacket

@cython.locals(off=Py_ssize_t, end=Py_ssize_t, n=Py_ssize_t)
cpdef transport_ok(CPacket pkt)
