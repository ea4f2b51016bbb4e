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
    cdef sp.SpeexResamplerState *st
    cdef readonly uint32_t in_rate, out_rate

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

    def __call__(self, const unsigned char[::1] pcm):
        """Convert PCM16 bytes; the filter state carries over to the next call."""
        cdef uint32_t n_in = pcm.shape[0] // 2
        cdef uint32_t n_out = <uint32_t>((<unsigned long long>n_in * self.out_rate) // self.in_rate + 16)
        cdef uint32_t done_in = 0, got_out = 0, il, ol
        out = PyBytes_FromStringAndSize(NULL, n_out * 2)
        cdef int16_t *o = <int16_t *>PyBytes_AS_STRING(out)
        cdef const int16_t *i = <const int16_t *>&pcm[0] if n_in else NULL
        with nogil:
            while done_in < n_in and got_out < n_out:
                il, ol = n_in - done_in, n_out - got_out
                sp.speex_resampler_process_int(self.st, 0, i + done_in, &il, o + got_out, &ol)
                done_in += il
                got_out += ol
                if il == 0 and ol == 0:
                    break
        return out[:got_out * 2]

    @property
    def delay_samples(self):
        """Output samples the filter holds back."""
        return sp.speex_resampler_get_output_latency(self.st)
