from libc.stdint cimport uint8_t, uint32_t, uint64_t

from ._resample cimport Resampler
from .includes cimport ss


cdef class Uplink:
    cdef ss.ss_ringv win
    cdef void *mem
    cdef uint8_t *conv
    cdef uint32_t conv_cap
    cdef uint64_t bound, held
    cdef Resampler rs_in, rs_out
    cdef uint64_t next_seq[2]
    cdef readonly uint64_t dropped
    cdef public bint live
    # C path: take one frame from the ring; *out/*out_len get it at the delivered rate.
    cdef int push_c(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t *pcm,
                    uint32_t n, const uint8_t **out, uint32_t *out_len) except -1
