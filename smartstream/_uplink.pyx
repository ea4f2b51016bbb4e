# cython: language_level=3, boundscheck=False, wraparound=False
"""Caller audio of one call on its way to the AI server: the delivery rules of
the proto's "Delivery of caller audio" live here.

Converts the sample rate where the call asked for another one, and keeps the
last bound_ms of frames in a window (the same C record ring as the pool,
private to this process). The module's ring numbers frames per track; a hole
in those numbers is frames the ring lost, kept in the window as a gap record
so every stream that carries the frames after it announces it first.

A resumed stream replays the window: all of it for a server that never acks
(at least once), from the first unacknowledged frame for one that does
(exactly once). A frame pushed out of the window before it was delivered
(handed to a live stream, for a server that never acks; acknowledged, for
one that does) is lost: counted in `dropped` and announced as a Gap on the
next stream, unless a later Ack shows it arrived.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int16_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from ._resample cimport Resampler
from ._ring cimport up_ring
from .includes cimport ss

from .v1 import smartstream_pb2 as pb

cdef extern from "<stdlib.h>" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)

# A window frame is its PCM, its record header's seq the frame's (set before
# each write: the ring is private, its own numbering unused), so the frame
# goes in with one copy straight from the batch.
DEF GAP_BYTES = 24   # a window gap is [first seq][count][Gap.Reason]

cdef enum:
    W_AUDIO = 1
    W_GAP = 2
    W_SILENCE = 3   # a frame as W_AUDIO, synthesized (the phone sent nothing)

cdef uint64_t RING_OVERRUN = pb.Gap.REASON_RING_OVERRUN
cdef uint64_t RESUME_WINDOW = pb.Gap.REASON_RESUME_WINDOW


def gap_message(uint32_t track, uint64_t first, uint64_t count, uint64_t reason):
    """GatewayMessage{gap} for a window track (0 inbound, 1 outbound)."""
    return pb.GatewayMessage(gap=pb.Gap(track=track + 1, first_sequence=first, count=count,
                                        reason=reason))


cdef uint64_t pow2_at_least(uint64_t n):
    cdef uint64_t p = 4096
    while p < n:
        p <<= 1
    return p


cdef class Uplink:
    def __cinit__(self, uint32_t channel_rate, uint32_t out_rate, tracks, uint32_t bound_ms):
        cdef uint64_t frame_max = <uint64_t>ss.ss_frame_bytes_max(channel_rate) * out_rate // channel_rate + 64
        self.bound = <uint64_t>bound_ms * out_rate * 2 // 1000 * len(tracks)
        # Room for the bound, a frame and a gap record per 10 ms frame, one frame
        # over before trimming, and a ring-end pad. make_room() keeps it exact.
        cdef uint64_t headers = <uint64_t>(bound_ms // 10 + 2) * len(tracks) * (
            2 * ss.SS_REC_HDR + GAP_BYTES)
        cdef uint64_t cap = pow2_at_least(self.bound + headers + 2 * frame_max)
        if posix_memalign(&self.mem, 64, sizeof(ss.ss_ring) + cap):
            raise MemoryError()
        memset(self.mem, 0, sizeof(ss.ss_ring))
        self.win.r = <ss.ss_ring *>self.mem
        self.win.data = <uint8_t *>self.mem + sizeof(ss.ss_ring)
        self.win.cap = cap
        self.win.max_len = <uint32_t>frame_max
        self.conv_cap = <uint32_t>frame_max
        self.conv = <uint8_t *>malloc(self.conv_cap)
        if not self.conv:
            raise MemoryError()
        self.lost = []
        if out_rate != channel_rate:   # one filter state per track
            self.rs_in = Resampler(channel_rate, out_rate)
            self.rs_out = Resampler(channel_rate, out_rate)

    def __dealloc__(self):
        free(self.mem)
        free(self.conv)

    def bind(self, pool, uint32_t slot, bint resumed):
        """Follow the call's rings in the pool and keep sent_seq up to date
        there: a resumed call starts where the previous daemon stopped
        sending, a new one at 0 (whatever an earlier call left)."""
        cdef uint32_t t
        for t in range(2):
            self.shm[t] = up_ring(pool, slot, t)
            if not resumed:
                self.shm[t].sent_seq = 0
            self.next_seq[t] = self.sent[t] = self.shm[t].sent_seq

    # -- the window ----------------------------------------------------------

    cdef uint64_t delivered(self, uint32_t track):
        """Sequences below this the server has, as far as we know: for an acking
        server only what it acknowledged, even on a stream that looks up (a host
        gone silent looks up until keepalive says otherwise)."""
        return self.acked[track] if self.acking else self.sent[track]

    cdef void note_lost(self, uint32_t track, uint64_t first, uint64_t count, uint64_t reason):
        cdef list last
        for last in reversed(self.lost):
            if last[0] == track:
                if last[3] == reason and last[1] + last[2] == first:
                    last[2] += count
                    return
                break
        self.lost.append([track, first, count, reason])

    cdef void forget_lost(self, uint32_t track):
        """An Ack covers frames the window let go unacknowledged: they arrived."""
        cdef list kept = [], e
        cdef uint64_t covered
        for e in self.lost:
            if e[0] == track and e[1] < self.acked[track]:
                covered = min(self.acked[track], e[1] + e[2]) - e[1]
                if e[3] == RESUME_WINDOW:
                    self.dropped -= covered
                e[1], e[2] = e[1] + covered, e[2] - covered
            if e[2]:
                kept.append(e)
        self.lost = kept

    cdef int evict(self) except -1:
        """Drop the oldest record; one not delivered is lost."""
        cdef uint64_t pos = ss.ss_ring_head(&self.win)
        cdef uint64_t g[3]
        cdef ss.ss_rec h
        cdef const uint8_t *p
        if ss.ss_rec_next(&self.win, &pos, &h, &p) != 1:
            return 0
        if h.type != W_GAP:
            self.held -= h.len
            if h.seq >= self.delivered(h.track):
                self.note_lost(h.track, h.seq, 1, RESUME_WINDOW)
                self.dropped += 1
        else:
            memcpy(g, p, GAP_BYTES)
            if g[0] + g[1] > self.delivered(h.track):
                self.note_lost(h.track, g[0], g[1], g[2])
        ss.ss_rec_pop(&self.win, &h)
        return 0

    cdef int write(self, uint16_t type, uint16_t track, uint64_t ts, const uint8_t *rec,
                   uint32_t n) except -1:
        cdef int rc
        # Evict ourselves rather than let the ring drop records uncounted.
        while (self.win.cap - ss.ss_ring_used(&self.win) < 2 * ss.ss_rec_size(n)
               and ss.ss_ring_used(&self.win)):
            self.evict()
        rc = ss.ss_rec_write(&self.win, type, track, ts, rec, n, 0)
        if rc != ss.SS_OK:
            raise RuntimeError(f"resume window: {ss.ss_strerror(rc).decode()}")
        return 0

    cdef int push_c(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t *pcm,
                    uint32_t n, bint synthesized, const uint8_t **out, uint32_t *out_len,
                    uint64_t *gap) except -1:
        cdef Resampler rs = self.rs_out if track else self.rs_in
        cdef const uint8_t *rec = pcm
        cdef uint64_t g[3]
        if seq < self.next_seq[track]:
            return 1
        gap[0] = seq - self.next_seq[track]
        if gap[0]:
            g[0], g[1], g[2] = self.next_seq[track], gap[0], RING_OVERRUN
            self.write(W_GAP, <uint16_t>track, ts, <const uint8_t *>g, GAP_BYTES)
        self.next_seq[track] = seq + 1
        if rs is None:
            if n > self.win.max_len:
                n = self.win.max_len
        else:   # converted into conv: the frame as delivered
            n = 2 * rs.process(<const int16_t *>pcm, n // 2, <int16_t *>self.conv,
                               self.conv_cap // 2)
            rec = self.conv
        self.win.r.seq = seq
        self.write(W_SILENCE if synthesized else W_AUDIO, <uint16_t>track, ts, rec, n)
        self.held += n
        while self.held > self.bound:
            self.evict()
        out[0], out_len[0] = rec, n
        return 0

    cdef void sent_c(self, uint32_t track, uint64_t seq, uint64_t gap) noexcept:
        if seq >= self.sent[track]:
            self.sent[track] = seq + 1
            if self.shm[track] != NULL:
                self.shm[track].sent_seq = seq + 1
        self.stream_sent += 1
        self.stream_lost += gap

    def push(self, uint32_t track, uint64_t seq, uint64_t ts, const uint8_t[::1] pcm,
             bint sent=False, bint synthesized=False):
        """Take a frame from the ring: (its PCM at the delivered rate, frames
        lost just before it), or None for a sequence already taken. sent: it
        went to a live stream (what the Router says after sending)."""
        cdef const uint8_t *out
        cdef uint32_t n
        cdef uint64_t gap
        if track > 1:
            raise ValueError(f"track {track}")
        if self.push_c(track, seq, ts, &pcm[0] if pcm.shape[0] else NULL, pcm.shape[0],
                       synthesized, &out, &n, &gap):
            return None
        if sent:
            self.sent_c(track, seq, gap)
        return PyBytes_FromStringAndSize(<const char *>out, n), gap

    # -- the server's side -----------------------------------------------------

    def ack(self, uint32_t track, uint64_t seq):
        """The server has every frame of track up to seq: trim the window.
        False (and nothing changes) for a sequence never sent: fatal."""
        cdef uint64_t pos, end
        cdef ss.ss_rec h
        cdef const uint8_t *p
        if track > 1 or seq >= self.sent[track]:
            return False
        self.acking = True
        if seq + 1 > self.acked[track]:
            self.acked[track] = seq + 1
            self.forget_lost(track)
        while True:
            pos = ss.ss_ring_head(&self.win)
            if ss.ss_rec_next(&self.win, &pos, &h, &p) != 1:
                break
            end = (<const uint64_t *>p)[0] + (<const uint64_t *>p)[1] if h.type == W_GAP else h.seq + 1
            if end > self.acked[h.track]:
                break
            if h.type != W_GAP:
                self.held -= h.len
            ss.ss_rec_pop(&self.win, &h)
        return True

    def resume(self):
        """What a new stream carries first, in order, and counts it as sent:
        ([("gap", track, first, count, reason) | ("audio" or "silence", track, seq, ts_ns, pcm)],
        [first sequence of each track on the stream]). Starts the stream's totals."""
        cdef uint64_t pos = ss.ss_ring_head(&self.win)
        cdef uint64_t g[3]
        cdef uint64_t start[2]
        cdef ss.ss_rec h
        cdef const uint8_t *p
        cdef uint32_t t
        self.stream_sent = self.stream_lost = self.stream_replayed = 0
        first = [None, None]
        items = []
        for t, a, n, reason in self.lost:
            items.append(("gap", t, a, n, reason))
        self.lost = []
        for t in range(2):
            start[t] = self.acked[t] if self.acking else 0
        while ss.ss_rec_next(&self.win, &pos, &h, &p) == 1:
            if h.type != W_GAP:
                if h.seq >= start[h.track]:
                    items.append(("silence" if h.type == W_SILENCE else "audio", h.track, h.seq,
                                  h.ts_ns, PyBytes_FromStringAndSize(<const char *>p, h.len)))
            else:
                memcpy(g, p, GAP_BYTES)
                if g[0] + g[1] > start[h.track]:
                    items.append(("gap", h.track, g[0], g[1], g[2]))
        for kind, t, a, n, _ in items:
            if first[t] is None:
                first[t] = a
            if kind == "gap":
                self.stream_lost += n
                if a + n > self.sent[t]:
                    self.sent[t] = a + n
            else:
                if a < self.sent[t]:
                    self.stream_replayed += 1
                self.sent_c(t, a, 0)
        for t in range(2):
            if self.shm[t] != NULL:
                self.shm[t].sent_seq = self.sent[t]
        return items, [self.next_seq[t] if first[t] is None else first[t] for t in range(2)]

    def held_frames(self):
        """Frames in the window (for logs)."""
        cdef uint64_t pos = ss.ss_ring_head(&self.win)
        cdef ss.ss_rec h
        cdef const uint8_t *p
        cdef uint64_t n = 0
        while ss.ss_rec_next(&self.win, &pos, &h, &p) == 1:
            n += h.type != W_GAP
        return n
