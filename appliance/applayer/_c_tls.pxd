# Cython declarations for the compiled twin of applayer/tls.py (see appliance/compiled.py).
# A TLS flow's first payloads run HelloReader.feed and _HelloParser.take/_field, a step per
# field of the ClientHello (the server's, ServerHelloReader.feed): each of them made ~15
# Python method calls and ~50 slot lookups a hello. Their state becomes extension types
# (slots are struct members), their offsets, lengths and counts C ints, and the steps they
# take inside a reading C methods. Keep the fields in step with the classes' __slots__:
# `left` of _HelloParser is None until the message's length is read, and `etype` None
# before the first extension, so both stay objects; `parser` is None between hellos.
import cython

cdef class _HelloParser:
    cdef public str step
    cdef public Py_ssize_t want
    cdef public bytearray buf
    cdef public Py_ssize_t skip
    cdef public object left
    cdef public Py_ssize_t ext_left
    cdef public object etype
    cdef public Py_ssize_t ext_rest
    cdef public object hello
    cdef public list offered
    cdef public object legacy
    cdef public bint name_cut
    cdef public Py_ssize_t cipher_rest

    @cython.locals(off=Py_ssize_t, n=Py_ssize_t, t=Py_ssize_t, want=Py_ssize_t)
    cpdef take(self, data)
    cdef _expect(self, str step, Py_ssize_t want)
    cdef _skip(self, Py_ssize_t n, str step)
    @cython.locals(step=str, elen=Py_ssize_t, kept=Py_ssize_t, n=Py_ssize_t, vend=Py_ssize_t, i=Py_ssize_t)
    cdef _field(self, f)
    @cython.locals(step=str)
    cdef _next(self)
    cdef _ext_next(self)
    cdef _done(self)

cdef class HelloReader:
    cdef public _HelloParser parser
    cdef public Py_ssize_t left
    cdef public Py_ssize_t empty
    cdef public bint started
    cdef public bint second
    cdef public Py_ssize_t early
    cdef public bint skipping

    @cython.locals(off=Py_ssize_t, n=Py_ssize_t, take=Py_ssize_t, ctype=int, major=int, rlen=Py_ssize_t)
    cpdef feed(self, data)
    cdef bint _before_hello(self)
    cdef bint _skipped(self, int ctype)
    cdef _result(self, got)
    cdef _other(self, int ctype)

cdef class ServerHelloReader:
    cdef public bytearray hs
    cdef public Py_ssize_t left
    cdef public bint skipping
    cdef public bint want_cert

    @cython.locals(off=Py_ssize_t, n=Py_ssize_t, take=Py_ssize_t, want=int, bound=Py_ssize_t, mlen=Py_ssize_t,
                   ctype=int, major=int, rlen=Py_ssize_t)
    cpdef feed(self, data, full=*)
