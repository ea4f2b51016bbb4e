from libc.stdint cimport uint8_t, uint32_t

from .includes cimport ss


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


# The shared header of a slot's up ring (pool: a Pool), for the daemon's own
# fields in it (sent_seq). IndexError for a slot out of range.
cdef ss.ss_ring *up_ring(object pool, uint32_t idx, uint32_t track) except NULL
