# Cython declarations for the compiled twin of detect/index.py (see appliance/compiled.py).
# The three indexes read on every new flow's header lookup (Detector._header, in_home)
# become extension types with cpdef lookups, so the compiled Detector, whose .pxd types
# its fields with them, calls them as C functions instead of through a method lookup and
# a Python call each (five a SYN). Fields stay Python objects: the masks are Python ints.
# NameIndex and ContentPrefilter stay Python classes.

cdef class AddrTrie:
    cdef public object v4
    cdef public object v6
    cdef public object negated
    cpdef contains(self, ip)
    cpdef contains_raw(self, raw)

cdef class AddrIndex:
    cdef public object any
    cdef public object v4
    cdef public object v6
    cdef public object negated
    cdef public object home_negated
    cpdef lookup_raw(self, raw)
    cpdef lookup_home_raw(self, raw)
    cpdef lookup(self, ip)

cdef class PortIndex:
    cdef public object any
    cdef public dict exact             # typed: a port's mask is a C dict lookup, not a method call
    cdef public list ranges
    cdef public list negated
    cpdef lookup(self, port)
