# Cython declarations for the compiled twin of source/pcap.py (see appliance/compiled.py): a
# plain file's records are cut out of each chunk read in C (_records); the rest stays generic.
import cython

@cython.locals(r=cython.p_uchar, h=cython.p_uchar, size=cython.Py_ssize_t, limit=cython.uint, sec=cython.uint,
               frac=cython.uint, caplen=cython.uint)
cpdef tuple _records(bytes data, Py_ssize_t pos, bint little, double div, linktype, long long n)
@cython.locals(w=cython.uint, i=cython.int)
cdef unsigned int _word(unsigned char *h, bint little) noexcept
