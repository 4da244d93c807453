# Cython declarations for the compiled twin of source/nfqueue.py (see appliance/compiled.py):
# the netlink message is read through a typed view of the receive buffer, so each header
# field is a C read (bounds-checked: a damaged message raises nothing the pure module does
# not, tests/unit/test_nfqueue_messages.py); the ids, mark and device are u32s, as the
# kernel's big-endian fields are.
import cython

@cython.locals(b="const unsigned char[:]", off=Py_ssize_t, end=Py_ssize_t, at=Py_ssize_t, v=Py_ssize_t,
               mlen=cython.uint, mtype=cython.int, alen=Py_ssize_t, atype=cython.int, x=cython.uint,
               packet_id=cython.uint, mark=cython.uint, indev=cython.uint, outdev=cython.uint, has_id=cython.bint, little=cython.bint,
               hdr_len=Py_ssize_t, packet_msg=cython.int, error_msg=cython.int, a_hdr=cython.int, a_mark=cython.int,
               a_indev=cython.int, a_outdev=cython.int, a_payload=cython.int, unreadable=Py_ssize_t, errors=Py_ssize_t)
cpdef queued_packets(view, Py_ssize_t n, on_packet)
