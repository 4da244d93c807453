# Cython declarations for the compiled twin of flow.py (see appliance/compiled.py): the
# packet is typed, so its fields are struct members; values stay Python objects, and
# the functions stay callable from Python (cpdef) with the pure module's signatures.
import cython
from appliance._c_packet cimport Packet as CPacket

cpdef flow_key(CPacket pkt)
cpdef _tcp_state(flow, CPacket pkt, to_server)
cpdef _bad_checksum(flow, CPacket pkt)
cpdef _syn_options(CPacket pkt)
cpdef _reused(flow, CPacket pkt)
cpdef _receiver_check(flow, CPacket pkt, to_server, flags)
