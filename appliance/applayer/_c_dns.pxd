# Cython declarations for the compiled twin of applayer/dns.py (see appliance/compiled.py).
# Every DNS datagram's names, and an HTTP request's method, target, Host and User-Agent, are
# turned into text label by label (dns_label, escape_label): the compiled twin checks a
# label's bytes in a C loop over the bytes object's own buffer and, when none needs an
# escape, decodes it at once (_as_is_text); the tables' "".join stays for the rest.
import cython

@cython.locals(b=cython.p_uchar, c=cython.uchar, i=Py_ssize_t)
cdef object _as_is_text(bytes data, Py_ssize_t start, Py_ssize_t end, bint dot)

# A name's walk (pointers, lengths, bounds) with C ints over the bytes' buffer (_name_end),
# its text written after it (_name_text); a ctuple return makes no tuple.
@cython.locals(b=cython.p_uchar, n=Py_ssize_t, wire=Py_ssize_t, end=Py_ssize_t, jumps=Py_ssize_t,
               length=cython.uchar, kind=cython.uchar)
cdef (Py_ssize_t, Py_ssize_t) _name_end(bytes data, Py_ssize_t off, Py_ssize_t budget)

@cython.locals(b=cython.p_uchar, length=cython.uchar, labels=list)
cdef str _name_text(bytes data, Py_ssize_t off)

# A datagram's header, questions and answers (parse_message, plausible, sane_header): C calls
# between them, not Python ones, the header's fields read from the bytes' buffer (_header)
# and the loops' offsets and budgets C ints.
@cython.locals(b=cython.p_uchar)
cpdef _header(data)
cpdef _rrtype(rtype)
cpdef _read_name(buf, off, budget)
@cython.locals(i=Py_ssize_t, off=Py_ssize_t, budget=Py_ssize_t, jumps=Py_ssize_t)
cpdef _questions(data, qdcount)
@cython.locals(i=Py_ssize_t, off=Py_ssize_t, budget=Py_ssize_t, jumps=Py_ssize_t, end=Py_ssize_t,
               rdlen=Py_ssize_t)
cpdef _answers(data, qdcount, ancount)
cpdef parse_message(data)
cpdef sane_header(data)
@cython.locals(end=Py_ssize_t)
cpdef plausible(data)
