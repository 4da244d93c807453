# Cython declarations for the compiled twin of applayer/dns.py (see appliance/compiled.py).
# Every DNS datagram's names, and an HTTP request's method, target, Host and User-Agent, are
# turned into text label by label (dns_label, escape_label): the compiled twin checks a
# label's bytes in a C loop over the bytes object's own buffer and, when none needs an
# escape, decodes it at once (_as_is_text); the tables' "".join stays for the rest.
import cython

@cython.locals(b=cython.p_uchar, c=cython.uchar, i=Py_ssize_t)
cdef object _as_is_text(bytes data, Py_ssize_t start, Py_ssize_t end, bint dot)
