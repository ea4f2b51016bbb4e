from libc.stdint cimport int16_t, uint32_t

from .includes cimport speexdsp as sp


cdef class Resampler:
    cdef sp.SpeexResamplerState *st
    cdef readonly uint32_t in_rate, out_rate
    # C path: convert n_in samples into out (room for out_cap); returns samples written.
    cdef uint32_t process(self, const int16_t *inp, uint32_t n_in, int16_t *out,
                          uint32_t out_cap) noexcept nogil
    cpdef uint32_t out_len(self, uint32_t n_in)
