# cython: language_level=3, boundscheck=False, wraparound=False
"""The per-frame path. Every audio frame a tick drained goes, in one C loop,
into its call's resume window (Uplink) and then, by the call's route:

  FAST  straight into its HTTP/2 stream's send buffer, encoded in C
        (H2Connection.send_audio): no Python object per frame;
  PY    back to Python as GatewayMessages, for the grpcio reference transport;
  DOWN  nowhere else: the stream is down and the window keeps it.

A hole in a track's sequence numbers (the module's ring overran) goes out as
a Gap just before the frame after it, on whichever route.

Control messages from the module go back to Python: they are rare.

Between ticks, pump() is a sub-tick: it drains the uplink rings again, routes
what came the same way and flushes the connections it queued frames on, so a
frame leaves soon after its capture instead of at the next tick. What it
counted comes back from the next deliver().
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from ._h2 cimport H2Connection, H2_OK
from ._ring cimport Batch
from ._uplink cimport Uplink
from ._uplink import gap_message
from .includes cimport ss

from .v1 import smartstream_pb2 as pb

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
    # Counted since the last deliver() returned them (pump() adds to them).
    cdef uint64_t sent, nbytes
    cdef list py, controls, latency
    cdef list touched            # connections this pump() queued frames on
    cdef readonly uint64_t stale     # frames older than one already taken: dropped

    def __cinit__(self, uint32_t slots):
        self.slots = slots
        self.uplinks = [None] * slots
        self.conns = [None] * slots
        self.sids = <int32_t *>calloc(slots, sizeof(int32_t))
        self.mode = <uint8_t *>calloc(slots, 1)
        self.frames = <uint64_t *>calloc(slots, sizeof(uint64_t))
        if not (self.sids and self.mode and self.frames):
            raise MemoryError()
        self.py, self.controls, self.latency, self.touched = [], [], [], []

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

    def unroute(self, uint32_t slot):
        self.check(slot)
        self.uplinks[slot] = None
        self.conns[slot] = None
        self.mode[slot] = DOWN
        self.frames[slot] = 0

    def frames_sent(self, uint32_t slot):
        return self.frames[self.check(slot)]

    cdef inline double sample(self, uint64_t ts_ns, uint64_t now_ns):
        """Count a sent frame: its hook-to-send seconds when it is the one in
        LATENCY_EVERY, else -1. Exactly one in LATENCY_EVERY is timed; a frame
        captured after the tick read its clock took no time to send."""
        self.seen += 1
        if self.seen % LATENCY_EVERY:
            return -1
        return (now_ns - ts_ns) / 1e9 if now_ns > ts_ns else 0.0

    def sampled(self, uint64_t ts_ns, uint64_t now_ns):
        """A frame sent outside deliver() (a resumed stream's replay): as sample()."""
        cdef double seconds = self.sample(ts_ns, now_ns)
        return None if seconds < 0 else seconds

    def deliver(self, Batch batch, uint64_t now_ns):
        """Route one drained batch. Returns, for it and every pump() since the
        last deliver(): (frames sent, PCM bytes sent,
        [(slot, GatewayMessage)] for Python streams,
        [(slot, type, payload)] control messages, [hook-to-send seconds] samples)."""
        self.route_batch(batch, now_ns)
        del self.touched[:]   # the tick's transport.flush() writes every connection
        out = self.sent, self.nbytes, self.py, self.controls, self.latency
        self.sent = self.nbytes = 0
        self.py, self.controls, self.latency = [], [], []
        return out

    def pump(self, pool, Batch batch):
        """A sub-tick: pool.drain(batch, audio_only=True), route it, and flush
        each connection that got frames (one write each). Ring errors are left
        in batch.errors."""
        cdef timespec t
        cdef uint64_t now_ns
        cdef H2Connection conn
        clock_gettime(CLOCK_MONOTONIC, &t)   # the clock of capture_ns and time.monotonic_ns()
        now_ns = <uint64_t>t.tv_sec * 1000000000 + t.tv_nsec
        if not pool.drain(batch, True):
            return
        self.route_batch(batch, now_ns)
        for conn in self.touched:
            conn.flush()
        del self.touched[:]

    cdef int route_batch(self, Batch batch, uint64_t now_ns) except -1:
        cdef Py_ssize_t i
        cdef uint32_t slot, n
        cdef uint64_t gap
        cdef ss.ss_rec *h
        cdef const uint8_t *payload
        cdef const uint8_t *out
        cdef Uplink up
        cdef H2Connection conn, last = None
        cdef uint8_t m
        cdef bint synth
        cdef double seconds
        for i in range(batch.n):
            slot = batch.r_slot[i]
            h = <ss.ss_rec *>(batch.buf + batch.r_off[i])
            payload = <const uint8_t *>h + ss.SS_REC_HDR
            if slot >= self.slots or self.uplinks[slot] is None:
                continue
            synth = h.type == ss.SS_REC_SILENCE
            if h.type != ss.SS_REC_AUDIO and not synth:
                self.controls.append((slot, h.type, PyBytes_FromStringAndSize(<const char *>payload, h.len)))
                continue
            up = <Uplink>self.uplinks[slot]
            if up.push_c(h.track, h.seq, h.ts_ns, payload, h.len, synth, &out, &n, &gap):
                self.stale += 1
                continue
            m = self.mode[slot]
            if m == FAST:
                conn = <H2Connection>self.conns[slot]
                # A refused frame or gap (stream closing, buffer over its cap)
                # stays in the window; the stream's close is reported on its own.
                if gap and not conn.send_message(self.sids[slot], gap_message(
                        h.track, h.seq - gap, gap, pb.Gap.REASON_RING_OVERRUN).SerializeToString()):
                    continue
                if conn.send_audio(self.sids[slot], h.track + 1, h.seq, h.ts_ns, out, n, synth) != H2_OK:
                    continue
                # Streams of a connection are mostly neighbours in the batch.
                if conn is not last and conn not in self.touched:
                    self.touched.append(conn)
                last = conn
            elif m == PY:
                if gap:
                    self.py.append((slot, gap_message(h.track, h.seq - gap, gap, pb.Gap.REASON_RING_OVERRUN)))
                self.py.append((slot, pb.GatewayMessage(audio=pb.AudioFrame(
                    track=h.track + 1, sequence=h.seq, capture_ns=h.ts_ns, synthesized=synth,
                    pcm=PyBytes_FromStringAndSize(<const char *>out, n)))))
            else:
                continue
            up.sent_c(h.track, h.seq, gap)
            self.frames[slot] += 1
            self.sent += 1
            self.nbytes += n
            seconds = self.sample(h.ts_ns, now_ns)
            if seconds >= 0:
                self.latency.append(seconds)
        return 0
