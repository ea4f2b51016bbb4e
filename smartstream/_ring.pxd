from libc.stdint cimport uint8_t, uint32_t


cdef class Batch:
    cdef uint8_t *buf
    cdef size_t cap, used
    cdef uint32_t *r_slot       # record i came from slot r_slot[i]
    cdef uint32_t *r_off        # ... and starts at buf + r_off[i] (ss_rec header, then payload)
    cdef Py_ssize_t n, ncap
    cdef readonly list errors

    cdef void reset(self)
    cdef int reserve(self, size_t nbytes) except -1
    cdef int index(self, uint32_t slot, size_t off) except -1
