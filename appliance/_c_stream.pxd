# Cython declarations for the compiled twin of stream.py (see appliance/compiled.py).
# Every inspected TCP segment runs ClientStream.feed and StreamStart.add (the server's side
# StreamStart.add too), and the app layer reads data/complete/consume: as plain classes each
# `self.x` was a slot descriptor lookup and each call between them a Python method call
# (~96 M of 679 M instructions in Inspector.process on the mixed 20k capture). Both become
# extension types: their fields struct members, the in-class calls C calls, the segment's
# Packet fields struct reads. Offsets, counts and the limit are C ints (64-bit: offsets grow
# with the bytes delivered, each segment's read as a signed 32-bit distance from rcv); `start` and `urg` are
# None until known, so they stay objects, as does `reported` (bits, read by tests as an int).
import cython
from appliance._c_packet cimport Packet as CPacket


cdef class StreamStart:
    cdef public Py_ssize_t limit
    cdef public object start
    cdef public Py_ssize_t base
    cdef public Py_ssize_t rcv
    cdef public object urg
    cdef public bint urg_done
    cdef public bint fin
    cdef public bytearray _buf
    cdef public Py_ssize_t _buf_seq
    cdef public object _cuts
    cdef public list _pending
    cdef public Py_ssize_t _held
    cdef public Py_ssize_t overlap_conflicts
    cdef public Py_ssize_t dropped
    cdef public bint lost
    cdef public bint cut
    cdef public Py_ssize_t acked
    cdef public Py_ssize_t judged
    cdef public bytearray _kept
    cdef public Py_ssize_t _kept_seq
    cdef public Py_ssize_t _kept_end
    cdef public object _kept_cuts
    cdef public bytearray _recent
    cdef public Py_ssize_t _recent_seq
    cdef public Py_ssize_t _recent_end
    cdef public object _recent_cuts
    cdef public bint _settled
    cdef public object _urg_cuts
    cdef public Py_ssize_t _seg_urg
    cdef public list _reads
    cdef public Py_ssize_t _read_held
    cdef public bint _again

    @cython.locals(rel=Py_ssize_t, buf=bytearray)
    cpdef bint add(self, seq, payload, bint syn=*, bint fin=*) except -1
    @cython.locals(seq=Py_ssize_t)
    cpdef consume(self, n, skips=*)
    @cython.locals(pos=Py_ssize_t)
    cdef _mark_read(self, Py_ssize_t n, skips)
    @cython.locals(seq0=Py_ssize_t, lo=Py_ssize_t, hi=Py_ssize_t, reads=list, last=list)
    cdef _add_read(self, Py_ssize_t i0, Py_ssize_t i1)
    cdef bint _covered(self, Py_ssize_t lo, Py_ssize_t hi) except -1
    @cython.locals(kept=bytearray, recent=bytearray, seq0=Py_ssize_t, end=Py_ssize_t, start=Py_ssize_t,
                   stop=Py_ssize_t, i0=Py_ssize_t, i1=Py_ssize_t)
    cdef _keep(self, Py_ssize_t n)
    @cython.locals(recent=bytearray, over=Py_ssize_t, seq=Py_ssize_t)
    cdef _keep_recent(self, Py_ssize_t i0, Py_ssize_t n, Py_ssize_t start, Py_ssize_t end)
    @cython.locals(a=Py_ssize_t, kept=bytearray, recent=bytearray)
    cpdef ack(self, ack)
    @cython.locals(kept=bytearray, recent=bytearray, judged=Py_ssize_t)
    cpdef settle(self)
    @cython.locals(rcv=Py_ssize_t, end=Py_ssize_t, room_end=Py_ssize_t, delivered=bint)
    cdef bint _queue(self, Py_ssize_t rel, payload, bint fin) except -1
    cpdef _fin(self)
    @cython.locals(rcv=Py_ssize_t, take=Py_ssize_t, i=Py_ssize_t)
    cdef bint _deliver(self, payload, Py_ssize_t skip, Py_ssize_t room_end) except -1


cdef class ClientStream:
    cdef public object isn_next
    cdef public object syn_data
    cdef public StreamStart bytes
    cdef public bint ambiguous
    cdef public object reported
    cdef public bint keeps

    @cython.locals(st=StreamStart, conflicts=Py_ssize_t, dropped=Py_ssize_t, grew=bint)
    cpdef feed(self, CPacket pkt, to_server, limit, found, again=*)
    cpdef consume(self, n, skips=*)
    @cython.locals(st=StreamStart, reach=Py_ssize_t)
    cpdef read(self)
    cdef _report(self, name, found)
    cdef _ambiguous(self, name, found)
    cdef StreamStart _begin(self, limit)
    cdef _settle(self, limit, accepted)


@cython.locals(end=Py_ssize_t)
cdef Py_ssize_t _seq_of(Py_ssize_t seq, object cuts, Py_ssize_t n) except? -1
@cython.locals(n=Py_ssize_t)
cdef Py_ssize_t _count(Py_ssize_t seq, object cuts, Py_ssize_t at) except? -1
