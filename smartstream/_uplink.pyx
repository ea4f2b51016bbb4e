# cython: language_level=3, boundscheck=False, wraparound=False
"""Caller audio of one call on its way to the AI server.

Converts the sample rate where the call asked for another one, and keeps the
last bound_ms of frames in a window (the same C record ring as the pool,
private to this process): when a stream breaks, the resumed stream replays
the window (at least once: the AI server skips sequences it already has), so
no frame inside the bound is lost. Frames pushed out of the window while the
stream is down may never have reached the AI server: they count as dropped.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._resample cimport Resampler
from .includes cimport ss

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

DEF SEQ_BYTES = 8   # a window record is [frame seq][PCM]: the ring's own seq is not the frame's


cdef uint64_t pow2_at_least(uint64_t n):
    cdef uint64_t p = 4096
    while p < n:
        p <<= 1
    return p


cdef class Uplink:
    def __cinit__(self, uint32_t channel_rate, uint32_t out_rate, tracks, uint32_t bound_ms):
        cdef uint64_t frame_max = <uint64_t>ss.SS_FRAME_BYTES_MAX * out_rate // channel_rate + 64
        self.bound = <uint64_t>bound_ms * out_rate * 2 // 1000 * len(tracks)
        # Room for the bound, a record header (+ seq) per 10 ms frame, one frame
        # over before trimming, and a ring-end pad.
        cdef uint64_t headers = <uint64_t>(bound_ms // 10 + 2) * len(tracks) * (ss.SS_REC_HDR + SEQ_BYTES)
        cdef uint64_t cap = pow2_at_least(self.bound + headers + 2 * frame_max)
        if posix_memalign(&self.mem, 64, sizeof(ss.ss_ring) + cap):
            raise MemoryError()
        memset(self.mem, 0, sizeof(ss.ss_ring))
        self.win.r = <ss.ss_ring *>self.mem
        self.win.data = <uint8_t *>self.mem + sizeof(ss.ss_ring)
        self.win.cap = cap
        self.win.max_len = <uint32_t>(frame_max + SEQ_BYTES)
        self.conv_cap = <uint32_t>(frame_max + SEQ_BYTES)
        self.conv = <uint8_t *>malloc(self.conv_cap)
        if not self.conv:
            raise MemoryError()
        if out_rate != channel_rate:   # one filter state per track
            self.rs_in = Resampler(channel_rate, out_rate)
            self.rs_out = Resampler(channel_rate, out_rate)

    def __dealloc__(self):
        free(self.mem)
        free(self.conv)

    cdef int push_c(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t *pcm,
                    uint32_t n, const uint8_t **out, uint32_t *out_len) except -1:
        cdef Resampler rs = self.rs_out if track else self.rs_in
        cdef uint8_t *rec = self.conv
        cdef ss.ss_rec old
        cdef int rc
        memcpy(rec, &seq, SEQ_BYTES)
        if rs is None:
            if n > self.conv_cap - SEQ_BYTES:
                n = self.conv_cap - SEQ_BYTES
            memcpy(rec + SEQ_BYTES, pcm, n)
        else:
            n = 2 * rs.process(<const int16_t *>pcm, n // 2, <int16_t *>(rec + SEQ_BYTES),
                               (self.conv_cap - SEQ_BYTES) // 2)
        self.next_seq[track] = seq + 1
        rc = ss.ss_rec_write(&self.win, ss.SS_REC_AUDIO, <uint16_t>track, ts, rec, n + SEQ_BYTES, 1)
        if rc != ss.SS_OK:
            raise RuntimeError(f"resume window: {ss.ss_strerror(rc).decode()}")
        self.held += n
        while self.held > self.bound and ss.ss_rec_pop(&self.win, &old) == 1:
            self.held -= old.len - SEQ_BYTES
            if not self.live:
                self.dropped += 1
        out[0], out_len[0] = rec + SEQ_BYTES, n
        return 0

    def push(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t[::1] pcm):
        """Take a frame from the ring; returns its PCM at the delivered rate."""
        cdef const uint8_t *out
        cdef uint32_t n
        if track > 1:
            raise ValueError(f"track {track}")
        self.push_c(track, seq, ts, &pcm[0] if pcm.shape[0] else NULL, pcm.shape[0], &out, &n)
        return PyBytes_FromStringAndSize(<const char *>out, n)

    def replay(self):
        """Every frame in the window, oldest first: (track, seq, ts_ns, pcm)."""
        cdef uint64_t pos = ss.ss_ring_head(&self.win), seq
        cdef ss.ss_rec h
        cdef const uint8_t *p
        frames = []
        while ss.ss_rec_next(&self.win, &pos, &h, &p) == 1:
            memcpy(&seq, p, SEQ_BYTES)
            frames.append((h.track, seq, h.ts_ns,
                           PyBytes_FromStringAndSize(<const char *>p + SEQ_BYTES, h.len - SEQ_BYTES)))
        return frames

    def first_seq(self, uint32_t track):
        """Sequence a resumed stream starts from on this track."""
        for t, seq, _, _ in self.replay():
            if t == track:
                return seq
        return self.next_seq[track]
