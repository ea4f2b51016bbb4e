from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from ._resample cimport Resampler
from .includes cimport ss


cdef class Uplink:
    cdef ss.ss_ringv win
    cdef void *mem
    cdef uint8_t *conv
    cdef uint32_t conv_cap
    cdef uint64_t bound, held
    cdef Resampler rs_in, rs_out
    cdef uint64_t next_seq[2]    # next sequence expected from the module's ring
    cdef uint64_t sent[2]        # every sequence below went to a live stream (or was announced lost)
    cdef uint64_t acked[2]       # every sequence below the server acknowledged
    cdef ss.ss_ring *shm[2]      # the module's rings: sent is kept there for a restarted daemon
    cdef list lost               # [track, first, count, reason]: evicted undelivered, to announce
    cdef readonly bint acking    # the server has sent an Ack on this call
    cdef readonly uint64_t dropped   # frames evicted before delivery (resume_overflow)
    # This stream's StreamEnd totals.
    cdef readonly uint64_t stream_sent, stream_lost, stream_replayed
    cdef uint64_t delivered(self, uint32_t track)
    cdef void note_lost(self, uint32_t track, uint64_t first, uint64_t count, uint64_t reason)
    cdef void forget_lost(self, uint32_t track)
    cdef int evict(self) except -1
    cdef int write(self, uint16_t type, uint16_t track, uint64_t ts, const uint8_t *rec,
                   uint32_t n) except -1
    # C path: take one frame from the ring (synthesized: a silence record);
    # *out/*out_len get it at the delivered rate, *gap the frames the ring lost
    # just before it (a Gap to announce first).
    # Returns 1, taking nothing, for a sequence older than one already taken.
    cdef int push_c(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t *pcm,
                    uint32_t n, bint synthesized, const uint8_t **out, uint32_t *out_len,
                    uint64_t *gap) except -1
    # The frame went to a live stream; a gap of `gap` frames went just before it.
    cdef void sent_c(self, uint32_t track, uint64_t seq, uint64_t gap) noexcept
