# Cython declarations for the compiled twin of applayer/http.py (see appliance/compiled.py).
# The first payload of an HTTP flow each way is read here: the request's header block line by
# line (RequestReader, _Request) and the response head (ResponseReader). They become extension
# types (their slots struct members, not descriptor lookups; their helpers C calls), and a
# plain header line is read in one C pass over the bytes' buffer (_request_header,
# _response_header: the name's bounds, its case-folded compare, the value's blanks), with
# the reference code reading anything else (a CR, obs-fold, no ':', a framing or Connection
# header). Fields are Python objects, as in __slots__; keep the same names.
import cython

cdef class _Request:
    cdef public object method, uri, protocol, hosts, agent, agents, framing, last, bytes, odd, conn, plain, early

cdef class RequestReader:
    cdef public object phase, req, left, skip_line, count, closing, alt, alt_buf, after_body, nested
    cdef public object bodies, body_tx, grown, skips
    cpdef _line(self, line, size, done)
    cpdef _header(self, req, line)
    cpdef _finish(self, req)
    cpdef _body(self, req)

cdef class ResponseReader:
    cdef public object phase, left, req, framing, ctype, location, skip_line, block
    cdef public object bodies, heads, grown, found, last_body, blind
    cpdef _line(self, line, size, waiting, done)
    cpdef _body(self, done)
    cpdef _end(self)

@cython.locals(b=cython.p_uchar, c=cython.uchar, i=Py_ssize_t, n=Py_ssize_t, colon=Py_ssize_t,
               s=Py_ssize_t, e=Py_ssize_t, vs=Py_ssize_t, ve=Py_ssize_t, plain=bint)
cdef bint _request_header(_Request req, bytes line) except -1

@cython.locals(b=cython.p_uchar, c=cython.uchar, i=Py_ssize_t, n=Py_ssize_t, colon=Py_ssize_t,
               s=Py_ssize_t, e=Py_ssize_t, vs=Py_ssize_t, ve=Py_ssize_t)
cdef bint _response_header(ResponseReader reader, bytes line) except -1

# The SP/TAB trim both header readers make of a name and a value (once four copies).
cdef (Py_ssize_t, Py_ssize_t) _blanks_off(const unsigned char *b, Py_ssize_t s, Py_ssize_t e)

# A finished request's host readings (RequestReader._finish): C calls, not Python ones.
cpdef normalize_host(raw)
cpdef _before_colon(raw)
cpdef _name_start(raw)
cpdef _authority(uri)

@cython.locals(n=Py_ssize_t, i=Py_ssize_t, c=cython.uchar)
cdef bint _name_is(const unsigned char *b, Py_ssize_t start, Py_ssize_t end, bytes low)

@cython.locals(v=bytes, b=cython.p_uchar, i=Py_ssize_t, n=Py_ssize_t)
cdef object _one_length(list heads)
