# Cython declarations for the compiled twin of detect/index.py (see appliance/compiled.py).
# The three indexes read on every new flow's header lookup (Detector._header, in_home)
# become extension types with cpdef lookups, so the compiled Detector, whose .pxd types
# its fields with them, calls them as C functions instead of through a method lookup and
# a Python call each (five a SYN). Fields stay Python objects: the masks are Python ints.
# NameIndex stays a Python class; ContentPrefilter (one scan a payload) is typed below.

cdef extern from *:
    # Masks (non-negative Python ints, bit i = rules[i]) read in C through CPython's own digits:
    # meets answers a & b != 0 and and5 makes a & b & c & d & e as one int, where each Python `&`
    # makes a 1,000-bit int. -1 / None: not non-negative exact ints (the caller takes Python's
    # `&`); and5 only where the int layout is 3.11's (3.12 moved the size into lv_tag, and
    # setting it is internal there): None on later versions.
    """
    static inline Py_ssize_t appliance_mask_digits(PyObject *o, const digit **d) {
        if (!PyLong_CheckExact(o)) return -1;
    #if PY_VERSION_HEX >= 0x030C0000
        uintptr_t tag = ((PyLongObject *)o)->long_value.lv_tag;
        if ((tag & 3) == 2) return -1;                       /* negative */
        *d = ((PyLongObject *)o)->long_value.ob_digit;
        return (Py_ssize_t)(tag >> 3);
    #else
        Py_ssize_t n = Py_SIZE(o);
        if (n < 0) return -1;
        *d = ((PyLongObject *)o)->ob_digit;
        return n;
    #endif
    }

    static inline int appliance_mask_meets(PyObject *a, PyObject *b) {
        const digit *da = NULL, *db = NULL;
        Py_ssize_t na = appliance_mask_digits(a, &da), nb = appliance_mask_digits(b, &db), i;
        if (na < 0 || nb < 0) return -1;
        if (nb < na) na = nb;
        for (i = 0; i < na; i++)
            if (da[i] & db[i]) return 1;
        return 0;
    }

    static inline PyObject *appliance_mask_and5(PyObject *a, PyObject *b, PyObject *c, PyObject *d, PyObject *e) {
    #if PY_VERSION_HEX >= 0x030C0000
        Py_RETURN_NONE;
    #else
        PyObject *o[5] = {a, b, c, d, e};
        const digit *x[5];
        Py_ssize_t m = PY_SSIZE_T_MAX, n, i, k;
        PyLongObject *z;
        for (k = 0; k < 5; k++) {
            n = appliance_mask_digits(o[k], &x[k]);
            if (n < 0) Py_RETURN_NONE;
            if (n < m) m = n;
        }
        #define APPLIANCE_AND5(i) (x[0][i] & x[1][i] & x[2][i] & x[3][i] & x[4][i])
        while (m > 0 && !APPLIANCE_AND5(m - 1))
            m--;                                              /* normalized: the top digit set */
        if (m <= 1)                                           /* 0 and one digit: as PyLong_FromLong (small ints cached) */
            return PyLong_FromLong(m ? (long)APPLIANCE_AND5(0) : 0L);
        z = _PyLong_New(m);
        if (z == NULL) return NULL;
        for (i = 0; i < m; i++)
            z->ob_digit[i] = APPLIANCE_AND5(i);
        return (PyObject *)z;
        #undef APPLIANCE_AND5
    #endif
    }
    """
    int appliance_mask_meets(object a, object b)
    object appliance_mask_and5(object a, object b, object c, object d, object e)

cpdef bint meets(a, b)
cpdef and_masks(a, b, c, d, e)

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

cdef class ContentPrefilter:
    # a packet's scan (Detector.alerts, decide) is a C call; the bound Hyperscan scan and its
    # tables are struct members, not instance-dict reads
    cdef public list owner
    cdef public dict need
    cdef public list patterns
    cdef public list flags
    cdef public bint single
    cdef public object db
    cdef public object scratch
    cdef public object db_scan
    cpdef scan(self, payload)
