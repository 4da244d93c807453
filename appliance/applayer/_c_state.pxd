# Cython declarations for the compiled twin of applayer/state.py (see appliance/compiled.py).
# AppState, read on every inspected packet of a flow that has one (its proto, names, server,
# reader), becomes an extension type: its slots are struct members, not descriptor lookups.
# Fields are Python objects, as in __slots__; keep the same names.

cdef class AppState:
    cdef public object proto
    cdef public object names
    cdef public object tx
    cdef public object tx_count
    cdef public object unknown
    cdef public object reader
    cdef public object done
    cdef public object server
    cdef public object answered
