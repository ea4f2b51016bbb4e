# cython: language_level=3, boundscheck=False, wraparound=False
"""Streaming sample-rate conversion of PCM16 mono for live calls.

speexdsp's resampler (the one FreeSWITCH uses) turns every 20 ms frame into
exactly one 20 ms frame with ~3 ms of delay. Block resamplers such as soxr's
stream mode were measured here to hold output back for 100 ms and release it
in bursts, which a real-time uplink cannot have.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING
from libc.stdint cimport int16_t, uint32_t

from .includes cimport speexdsp as sp

DEF QUALITY = 4   # speex's VoIP setting: ~2 µs per 20 ms frame here


cdef class Resampler:
    def __cinit__(self, uint32_t in_rate, uint32_t out_rate, int quality=QUALITY):
        cdef int err = 0
        if not (1000 <= in_rate <= 192000 and 1000 <= out_rate <= 192000):
            raise ValueError(f"rates {in_rate} -> {out_rate} out of range")
        self.st = sp.speex_resampler_init(1, in_rate, out_rate, quality, &err)
        if self.st == NULL:
            raise ValueError(sp.speex_resampler_strerror(err).decode())
        sp.speex_resampler_skip_zeros(self.st)
        self.in_rate, self.out_rate = in_rate, out_rate

    def __dealloc__(self):
        if self.st != NULL:
            sp.speex_resampler_destroy(self.st)

    cdef uint32_t process(self, const int16_t *inp, uint32_t n_in, int16_t *out,
                          uint32_t out_cap) noexcept nogil:
        cdef uint32_t done_in = 0, got_out = 0, il, ol
        while done_in < n_in and got_out < out_cap:
            il, ol = n_in - done_in, out_cap - got_out
            sp.speex_resampler_process_int(self.st, 0, inp + done_in, &il, out + got_out, &ol)
            done_in += il
            got_out += ol
            if il == 0 and ol == 0:
                break
        return got_out

    def __call__(self, const unsigned char[::1] pcm):
        """Convert PCM16 bytes; the filter state carries over to the next call."""
        cdef uint32_t n_in = pcm.shape[0] // 2
        cdef uint32_t cap = self.out_len(n_in)
        out = PyBytes_FromStringAndSize(NULL, cap * 2)
        cdef uint32_t got = 0
        if n_in:
            got = self.process(<const int16_t *>&pcm[0], n_in, <int16_t *>PyBytes_AS_STRING(out), cap)
        return out[:got * 2]

    cpdef uint32_t out_len(self, uint32_t n_in):
        """Room enough for the output of n_in input samples."""
        return <uint32_t>((<unsigned long long>n_in * self.out_rate) // self.in_rate + 16)

    @property
    def delay_samples(self):
        """Output samples the filter holds back."""
        return sp.speex_resampler_get_output_latency(self.st)
