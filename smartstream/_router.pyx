# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-frame path. Every audio frame a tick drained goes, in one C loop,
into its call's resume window (Uplink) and then, by the call's route:

  FAST  straight into its HTTP/2 stream's send buffer, encoded in C
        (H2Connection.send_audio): no Python object per frame;
  PY    back to Python, for the grpcio reference transport;
  DOWN  nowhere else: the stream is down and the window keeps it.

Control messages from the module go back to Python: they are rare.
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from ._h2 cimport H2Connection, H2_OK
from ._ring cimport Batch
from ._uplink cimport Uplink
from .includes cimport ss

cdef enum:
    DOWN = 0
    PY = 1
    FAST = 2
    LATENCY_EVERY = 16      # one hook-to-send sample in this many frames


SAMPLE_EVERY = LATENCY_EVERY   # hook_to_send observes one frame in this many


cdef class Router:
    cdef list uplinks, conns     # by slot; None when the slot has no call
    cdef int32_t *sids
    cdef uint8_t *mode
    cdef uint64_t *frames        # frames handed to a stream, by slot
    cdef uint32_t slots
    cdef uint64_t seen

    def __cinit__(self, uint32_t slots):
        self.slots = slots
        self.uplinks = [None] * slots
        self.conns = [None] * slots
        self.sids = <int32_t *>calloc(slots, sizeof(int32_t))
        self.mode = <uint8_t *>calloc(slots, 1)
        self.frames = <uint64_t *>calloc(slots, sizeof(uint64_t))
        if not (self.sids and self.mode and self.frames):
            raise MemoryError()

    def __dealloc__(self):
        free(self.sids)
        free(self.mode)
        free(self.frames)

    cdef uint32_t check(self, uint32_t slot) except? 0:
        if slot >= self.slots:
            raise IndexError(f"slot {slot} out of range")
        return slot

    def route(self, uint32_t slot, Uplink up, H2Connection conn=None, int32_t sid=0,
              bint python=False):
        """Where the slot's frames go from now on: conn/sid (FAST), Python
        (python=True), or only the window (neither: the stream is down)."""
        self.check(slot)
        self.uplinks[slot] = up
        self.conns[slot] = conn
        self.sids[slot] = sid
        self.mode[slot] = FAST if conn is not None else PY if python else DOWN
        up.live = self.mode[slot] != DOWN

    def unroute(self, uint32_t slot):
        self.check(slot)
        self.uplinks[slot] = None
        self.conns[slot] = None
        self.mode[slot] = DOWN
        self.frames[slot] = 0

    def frames_sent(self, uint32_t slot):
        return self.frames[self.check(slot)]

    def deliver(self, Batch batch, uint64_t now_ns):
        """Route one drained batch. Returns (frames sent, PCM bytes sent,
        [(slot, track, seq, ts_ns, pcm)] for Python streams,
        [(slot, type, payload)] control messages, [hook-to-send seconds] samples)."""
        cdef Py_ssize_t i
        cdef uint32_t slot, n
        cdef uint64_t sent = 0, nbytes = 0
        cdef ss.ss_rec *h
        cdef const uint8_t *payload
        cdef const uint8_t *out
        cdef Uplink up
        cdef H2Connection conn
        cdef uint8_t m
        py, controls, latency = [], [], []
        for i in range(batch.n):
            slot = batch.r_slot[i]
            h = <ss.ss_rec *>(batch.buf + batch.r_off[i])
            payload = <const uint8_t *>h + ss.SS_REC_HDR
            if slot >= self.slots or self.uplinks[slot] is None:
                continue
            if h.type != ss.SS_REC_AUDIO:
                controls.append((slot, h.type, PyBytes_FromStringAndSize(<const char *>payload, h.len)))
                continue
            up = <Uplink>self.uplinks[slot]
            up.push_c(h.track, h.seq, h.ts_ns, payload, h.len, &out, &n)
            m = self.mode[slot]
            if m == FAST:
                conn = <H2Connection>self.conns[slot]
                # A refused frame (stream closing, buffer over its cap) stays in
                # the window; the stream's close is reported on its own.
                if conn.send_audio(self.sids[slot], h.track + 1, h.seq, h.ts_ns, out, n) != H2_OK:
                    continue
            elif m == PY:
                py.append((slot, h.track, h.seq, h.ts_ns, PyBytes_FromStringAndSize(<const char *>out, n)))
            else:
                continue
            self.frames[slot] += 1
            sent += 1
            nbytes += n
            self.seen += 1
            if self.seen % LATENCY_EVERY == 0 and now_ns > h.ts_ns:
                latency.append((now_ns - h.ts_ns) / 1e9)
        return sent, nbytes, py, controls, latency
