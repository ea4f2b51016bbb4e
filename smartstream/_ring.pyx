# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The daemon's view of the shared-memory pool (csrc/ss_layout.h).

One Pool per daemon. Each tick the daemon calls Pool.drain(batch) once: it
copies every new audio frame and control message of every watched slot into
one Batch, in C, validating every length and position it reads from shared
memory (the other side is another process and may be buggy). TTS and control
messages go the other way through write_tts() and post_control().
"""
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t
from libc.stdlib cimport malloc, realloc, free, calloc

cdef extern from "<string.h>" nogil:
    size_t strnlen(const char *s, size_t maxlen)

from .includes cimport ss

LAYOUT_VERSION = ss.SS_LAYOUT_VERSION
FRAME_BYTES_MAX = ss.SS_FRAME_BYTES_MAX
CTL_MSG_MAX = ss.SS_CTL_MSG_MAX
HEARTBEAT_STALE_NS = ss.SS_HEARTBEAT_STALE_NS
HEARTBEAT_STALE_MIN_NS = ss.SS_HEARTBEAT_STALE_MIN_NS
HEARTBEAT_STALE_MAX_NS = ss.SS_HEARTBEAT_STALE_MAX_NS


def pool_bytes(uint32_t slots):
    """The size of a pool file of that many slots; pool_fixed_bytes of it are
    allocated with it, call_bytes more for each call while it lasts."""
    return ss.ss_pool_bytes(slots)


def pool_fixed_bytes(uint32_t slots):
    return ss.ss_pool_fixed_bytes(slots)


def call_bytes(uint32_t rate, uint32_t tracks):
    """Pool memory one call of that channel rate and tracks (TRACKS_* bits) takes."""
    return ss.ss_call_bytes(rate, tracks)


def up_bytes(uint32_t rate):
    """Capacity of a call's up rings at that channel rate (ss_layout.h)."""
    return ss.ss_up_bytes(rate)


def down_bytes(uint32_t rate):
    return ss.ss_down_bytes(rate)


def frame_bytes_max(uint32_t rate):
    """The largest audio record at that channel rate: 120 ms."""
    return ss.ss_frame_bytes_max(rate)

SLOT_FREE, SLOT_CLAIMED, SLOT_ACTIVE, SLOT_CLOSING = (
    ss.SS_SLOT_FREE, ss.SS_SLOT_CLAIMED, ss.SS_SLOT_ACTIVE, ss.SS_SLOT_CLOSING)
LINK_NONE, LINK_CONNECTING, LINK_STREAMING, LINK_RETRYING, LINK_FAILED = (
    ss.SS_LINK_NONE, ss.SS_LINK_CONNECTING, ss.SS_LINK_STREAMING, ss.SS_LINK_RETRYING,
    ss.SS_LINK_FAILED)
TRACK_IN, TRACK_OUT = ss.SS_TRACK_IN, ss.SS_TRACK_OUT
TRACKS_IN, TRACKS_OUT = 1 << ss.SS_TRACK_IN, 1 << ss.SS_TRACK_OUT
SLOT_F_TLS = ss.SS_SLOT_F_TLS
REC_AUDIO = ss.SS_REC_AUDIO
REC_SILENCE = ss.SS_REC_SILENCE
CTL_PAYLOAD, CTL_DTMF = ss.SS_CTL_PAYLOAD, ss.SS_CTL_DTMF
CTL_HANGUP, CTL_TRANSFER, CTL_EVENT, CTL_MARK, CTL_ERROR, CTL_SEND_DTMF = (
    ss.SS_CTL_HANGUP, ss.SS_CTL_TRANSFER, ss.SS_CTL_EVENT, ss.SS_CTL_MARK, ss.SS_CTL_ERROR,
    ss.SS_CTL_SEND_DTMF)
END_HANGUP, END_STOP, END_UNLOAD = ss.SS_END_HANGUP, ss.SS_END_STOP, ss.SS_END_UNLOAD
E_CORRUPT, E_STALE, E_BUSY = ss.SS_E_CORRUPT, ss.SS_E_STALE, ss.SS_E_BUSY

# Per slot and tick, at most this much is drained; a backlog (after a restart)
# is caught up over the next ticks instead of stalling this one.
DEF SLOT_BUDGET = 128 * 1024
DEF ERRLEN = 256


class RingError(Exception):
    """Something in shared memory or a ring operation is wrong."""


class PoolError(RingError):
    """The pool file cannot be used: missing, corrupt, foreign, wrong version."""


class SlotError(RingError):
    """A slot's header holds values out of range, or the slot changed hands."""


class RingFull(RingError):
    """The ring has no room; nothing was written."""


class MessageTooLarge(RingError):
    """The message exceeds what the ring accepts."""


cdef raise_rc(int rc, str what):
    msg = f"{what}: {ss.ss_strerror(rc).decode()}"
    if rc == ss.SS_E_FULL:
        raise RingFull(msg)
    if rc == ss.SS_E_TOOBIG:
        raise MessageTooLarge(msg)
    if rc == ss.SS_E_STALE or rc == ss.SS_E_STATE:
        raise SlotError(msg)
    raise RingError(msg)


cdef class Batch:
    """What one drain() found: records copied out of shared memory, and the
    per-slot problems met on the way (errors: list of (slot, code, bytes lost))."""

    def __cinit__(self, size_t capacity=1 << 20):
        self.cap = max(capacity, <size_t>(2 * SLOT_BUDGET))
        self.buf = <uint8_t *>malloc(self.cap)
        self.ncap = 1024
        self.r_slot = <uint32_t *>malloc(self.ncap * sizeof(uint32_t))
        self.r_off = <uint32_t *>malloc(self.ncap * sizeof(uint32_t))
        if not self.buf or not self.r_slot or not self.r_off:
            raise MemoryError()
        self.errors = []

    def __dealloc__(self):
        free(self.buf)
        free(self.r_slot)
        free(self.r_off)

    def __len__(self):
        return self.n

    cdef void reset(self):
        self.n = 0
        self.used = 0
        if self.errors:
            self.errors = []

    cdef int reserve(self, size_t nbytes) except -1:
        cdef size_t cap = self.cap
        while self.used + nbytes > cap:
            cap *= 2
        if cap != self.cap:
            p = <uint8_t *>realloc(self.buf, cap)
            if not p:
                raise MemoryError()
            self.buf, self.cap = p, cap
        return 0

    cdef int index(self, uint32_t slot, size_t off) except -1:
        if self.n == self.ncap:
            self.ncap *= 2
            s = <uint32_t *>realloc(self.r_slot, self.ncap * sizeof(uint32_t))
            if not s:
                raise MemoryError()
            self.r_slot = s
            o = <uint32_t *>realloc(self.r_off, self.ncap * sizeof(uint32_t))
            if not o:
                raise MemoryError()
            self.r_off = o
        self.r_slot[self.n] = slot
        self.r_off[self.n] = <uint32_t>off
        self.n += 1
        return 0

    def records(self):
        """(slot, type, track, seq, ts_ns, payload bytes) in ring order per slot."""
        cdef Py_ssize_t i
        cdef ss.ss_rec *h
        out = []
        for i in range(self.n):
            h = <ss.ss_rec *>(self.buf + self.r_off[i])
            out.append((self.r_slot[i], h.type, h.track, h.seq, h.ts_ns,
                        PyBytes_FromStringAndSize(<char *>(<uint8_t *>h + ss.SS_REC_HDR), h.len)))
        return out


cdef str field(const char *p, size_t cap, str name, uint32_t idx):
    """A NUL-terminated string field of a slot header, checked."""
    cdef size_t n = strnlen(p, cap)
    if n == cap:
        raise SlotError(f"slot {idx}: {name} is not NUL-terminated")
    try:
        return p[:n].decode("utf-8")
    except UnicodeDecodeError:
        raise SlotError(f"slot {idx}: {name} is not valid UTF-8") from None


cdef int check_rate(uint32_t idx, str name, uint32_t rate) except -1:
    """A rate the module wrote into a call header: SlotError unless 8000..48000."""
    if not 8000 <= rate <= 48000:
        raise SlotError(f"slot {idx}: {name} {rate} outside 8000..48000")
    return 0


cdef inline bint live(ss.ss_slot *s, uint32_t gen) noexcept:
    """Does the slot still hold call gen, its rings still its own?"""
    cdef uint32_t g
    cdef uint32_t st = ss.ss_slot_state(s, &g)
    return g == gen and (st == ss.SS_SLOT_ACTIVE or st == ss.SS_SLOT_CLOSING)


cdef class Pool:
    """The pool file, mapped. Pool.open() for the daemon, Pool.attach() for tools."""
    cdef ss.ss_pool pool
    cdef ss.ss_slot_rings *rings
    cdef uint32_t *seen_state
    cdef uint32_t *seen_gen
    cdef uint32_t *watch_gen     # 0: not watched
    cdef uint32_t *watch_list
    cdef uint8_t *held           # 1: audio left in the ring (hold())
    cdef uint32_t n_watch
    cdef readonly str path
    cdef readonly bint reattached
    cdef bint daemon

    def __dealloc__(self):
        self._unmap()

    cdef _unmap(self):
        if self.pool.base:
            ss.ss_pool_detach(&self.pool)
        free(self.rings)
        free(self.seen_state)
        free(self.seen_gen)
        free(self.watch_gen)
        free(self.watch_list)
        free(self.held)
        self.rings = self.seen_state = self.seen_gen = NULL
        self.watch_gen = self.watch_list = NULL
        self.held = NULL

    cdef _setup(self, str path):
        cdef uint32_t i, n = self.pool.slot_count
        cdef ss.ss_slot *s
        self.path = path
        self.rings = <ss.ss_slot_rings *>calloc(n, sizeof(ss.ss_slot_rings))
        self.seen_state = <uint32_t *>calloc(n, sizeof(uint32_t))
        self.seen_gen = <uint32_t *>calloc(n, sizeof(uint32_t))
        self.watch_gen = <uint32_t *>calloc(n, sizeof(uint32_t))
        self.watch_list = <uint32_t *>calloc(n, sizeof(uint32_t))
        self.held = <uint8_t *>calloc(n, 1)
        if not (self.rings and self.seen_state and self.seen_gen and self.watch_gen and self.watch_list
                and self.held):
            raise MemoryError()
        for i in range(n):   # sized again by watch(), from the rate the call says
            s = ss.ss_pool_slot(&self.pool, i)
            ss.ss_slot_rings_init(s, s.hdr.channel_rate, &self.rings[i])

    @staticmethod
    def open(str path, uint32_t slots, unsigned int mode=0o660, uint64_t stale_ms=0):
        """The daemon's pool: re-attach the one a previous daemon left, or create it.
        Held locked until close(): a second daemon on it gets PoolError. stale_ms:
        how old a heartbeat may get before the module says "daemon lost" (0: default)."""
        cdef Pool p = Pool.__new__(Pool)
        cdef char err[ERRLEN]
        cdef int reattached = 0
        rc = ss.ss_daemon_open(path.encode(), slots, mode, &p.pool, &reattached, err, ERRLEN)
        if rc != ss.SS_OK:
            raise PoolError(err.decode(errors="replace"))
        p.reattached = reattached
        p.daemon = True
        if stale_ms:
            ss.ss_daemon_set_stale_ns(&p.pool, stale_ms * 1000000)
        p._setup(path)
        return p

    @staticmethod
    def attach(str path, owner=None):
        """Map an existing pool after validating it as the module does: no symlink,
        owned by owner (a uid; None: the directory's owner), no bits for others."""
        cdef Pool p = Pool.__new__(Pool)
        cdef char err[ERRLEN]
        cdef unsigned int uid = 0xffffffffu if owner is None else owner
        rc = ss.ss_pool_attach_as(path.encode(), uid, &p.pool, err, ERRLEN)
        if rc != ss.SS_OK:
            raise PoolError(err.decode(errors="replace"))
        p._setup(path)
        return p

    def leave(self):
        """The daemon is stopping cleanly: the module says "daemon stopped" from now
        on, instead of "lost" once the heartbeat has aged (close() does it too)."""
        if self.pool.base and self.daemon:
            ss.ss_daemon_leave(&self.pool)

    def close(self):
        """Unmap, after leave(); the lock on the pool goes with it."""
        self.leave()
        self._unmap()

    cdef ss.ss_slot *slot(self, uint32_t idx) except NULL:
        if not self.pool.base:
            raise PoolError("pool is closed")
        if idx >= self.pool.slot_count:
            raise IndexError(f"slot {idx} out of range 0..{self.pool.slot_count - 1}")
        return ss.ss_pool_slot(&self.pool, idx)

    cdef int check_gen(self, uint32_t idx, uint32_t gen) except -1:
        cdef uint32_t g
        ss.ss_slot_state(self.slot(idx), &g)
        if g != gen:
            raise SlotError(f"slot {idx}: generation {g}, caller holds {gen}: slot changed hands")
        return 0

    @property
    def slot_count(self):
        return self.pool.slot_count

    @property
    def daemon_epoch(self):
        return self.pool.hdr.daemon_epoch

    @property
    def heartbeat_ns(self):
        """CLOCK_MONOTONIC of the daemon's last tick (0: none yet)."""
        return self.pool.hdr.heartbeat_ns

    def heartbeat(self):
        ss.ss_daemon_heartbeat(&self.pool, ss.ss_now_ns())

    def daemon_alive(self):
        return bool(ss.ss_pool_daemon_alive(&self.pool, ss.ss_now_ns()))

    def daemon_health(self):
        """What the module reports: "alive", "stopped" (a clean exit, known at
        once) or "lost" (no heartbeat for stale_ns)."""
        return ss.ss_health_name(ss.ss_pool_daemon_health(&self.pool, ss.ss_now_ns())).decode()

    @property
    def stale_ns(self):
        return ss.ss_pool_stale_ns(&self.pool)

    def scan(self):
        """Slots whose state or generation changed since the last scan:
        a list of (slot, generation, state)."""
        cdef uint32_t i, st, g
        changed = []
        for i in range(self.pool.slot_count):
            st = ss.ss_slot_state(ss.ss_pool_slot(&self.pool, i), &g)
            if st != self.seen_state[i] or g != self.seen_gen[i]:
                self.seen_state[i] = st
                self.seen_gen[i] = g
                changed.append((i, g, st))
        return changed

    def slot_info(self, uint32_t idx):
        """The call header of a slot, every field checked."""
        cdef ss.ss_slot *s = self.slot(idx)
        cdef uint32_t g
        st = ss.ss_slot_state(s, &g)
        h = &s.hdr
        info = dict(
            slot=idx, generation=g, state=st,
            uuid=field(h.uuid, ss.SS_UUID_MAX, "uuid", idx),
            target=field(h.target, ss.SS_TARGET_MAX, "target", idx),
            codec=field(h.codec, ss.SS_CODEC_MAX, "codec", idx),
            caller=field(h.caller, ss.SS_NUMBER_MAX, "caller", idx),
            callee=field(h.callee, ss.SS_NUMBER_MAX, "callee", idx),
            metadata=field(h.metadata, ss.SS_META_MAX, "metadata", idx),
            channel_rate=h.channel_rate, requested_rate=h.requested_rate,
            tracks=h.tracks, flags=h.flags, started_ns=h.started_ns)
        check_rate(idx, "channel_rate", h.channel_rate)
        if h.requested_rate:
            check_rate(idx, "requested_rate", h.requested_rate)
        if h.tracks == 0 or h.tracks > (TRACKS_IN | TRACKS_OUT):
            raise SlotError(f"slot {idx}: tracks {h.tracks} is not inbound/outbound/both")
        if not info["uuid"]:
            raise SlotError(f"slot {idx}: empty uuid")
        return info

    def end_reason(self, uint32_t idx):
        """Why the module closed the slot (END_*); meaningful once scan() saw
        it CLOSING, whose acquire load makes the module's store visible.
        Any other value is returned as is: the caller reports it."""
        return self.slot(idx).hdr.end_reason

    def watch(self, uint32_t idx, uint32_t gen):
        """Include the slot's rings in drain() while it holds generation gen.
        Returns True if a stream was open for this call before (a resume)."""
        cdef ss.ss_slot *s = self.slot(idx)
        cdef uint32_t rate = s.hdr.channel_rate
        if gen == 0:
            raise SlotError("generation 0 is never a call")
        check_rate(idx, "channel_rate", rate)
        ss.ss_slot_rings_init(s, rate, &self.rings[idx])   # as the module sized them
        if self.watch_gen[idx] == 0:
            self.watch_list[self.n_watch] = idx
            self.n_watch += 1
        self.watch_gen[idx] = gen
        return bool(ss.ss_slot_attach(s, gen))

    def hold(self, uint32_t idx, bint on):
        """Leave the slot's audio in its ring (drain() skips it) while on: until a
        call's first stream is up, the ring, not the smaller resume window,
        keeps what it says from the start."""
        self.slot(idx)
        self.held[idx] = on

    def unwatch(self, uint32_t idx):
        cdef uint32_t i
        self.slot(idx)
        if self.watch_gen[idx] == 0:
            return
        self.watch_gen[idx] = 0
        self.held[idx] = 0
        for i in range(self.n_watch):
            if self.watch_list[i] == idx:
                self.n_watch -= 1
                self.watch_list[i] = self.watch_list[self.n_watch]
                break

    def drain(self, Batch batch, bint audio_only=False):
        """Copy out every new frame and control message of every watched slot.
        Returns the record count; problems are in batch.errors.
        audio_only (a sub-tick between ticks): the uplink rings only, and a
        slot already known to have changed hands is skipped unreported (the
        tick's drain reports it once, not once per sub-tick)."""
        cdef uint32_t w, idx, gen, t, nrec, k
        cdef ss.ss_slot *s
        cdef size_t mark_used
        cdef Py_ssize_t mark_n, mark_errors
        batch.reset()
        for w in range(self.n_watch):
            idx = self.watch_list[w]
            gen = self.watch_gen[idx]
            s = ss.ss_pool_slot(&self.pool, idx)
            if not live(s, gen):
                if not audio_only:
                    batch.errors.append((idx, ss.SS_E_STALE, 0))
                continue
            mark_used, mark_n, mark_errors = batch.used, batch.n, len(batch.errors)
            for t in range(ss.SS_TRACKS):
                if s.hdr.tracks & (1u << t) and not self.held[idx]:
                    self._drain_ring(batch, idx, &self.rings[idx].up[t], ss.SS_REC_AUDIO, t)
            if not audio_only:
                self._drain_ring(batch, idx, &self.rings[idx].ctl_in, 0, 0)
            # Seqlock on the call: a slot freed or re-claimed while we copied
            # is not this call, whatever the copy holds.
            if not live(s, gen):
                batch.used, batch.n = mark_used, mark_n
                del batch.errors[mark_errors:]
                batch.errors.append((idx, ss.SS_E_STALE, 0))
        return batch.n

    cdef int _drain_ring(self, Batch batch, uint32_t idx, ss.ss_ringv *v, uint16_t audio,
                         uint32_t track) except -1:
        """Drain one ring into the batch. audio: records must be audio frames of
        this track with whole samples; otherwise control messages from the module."""
        cdef uint32_t nrec, k
        cdef uint64_t lost
        cdef long got
        cdef size_t off
        cdef ss.ss_rec *h
        batch.reserve(SLOT_BUDGET)
        got = ss.ss_rec_drain(v, batch.buf + batch.used, SLOT_BUDGET, 0xffffffffu, &nrec, &lost)
        if got < 0:
            batch.errors.append((idx, <int>got, lost))
            return 0
        off = batch.used
        for k in range(nrec):
            h = <ss.ss_rec *>(batch.buf + off)
            if audio:
                ok = ((h.type == ss.SS_REC_AUDIO or h.type == ss.SS_REC_SILENCE)
                      and h.track == track and h.len % 2 == 0)
            else:
                ok = h.type == ss.SS_CTL_PAYLOAD or h.type == ss.SS_CTL_DTMF
            if ok:
                batch.index(idx, off)
            else:
                batch.errors.append((idx, ss.SS_E_CORRUPT, h.len))
            off += ss.ss_rec_size(h.len)
        batch.used = off
        return 0

    def write_tts(self, uint32_t idx, uint32_t gen, const uint8_t[::1] pcm):
        """Queue PCM16 for playout; returns the bytes that fit (never overwrites)."""
        self.check_gen(idx, gen)
        if pcm.shape[0] == 0:
            return 0
        return ss.ss_byte_write(&self.rings[idx].down, &pcm[0], <uint32_t>pcm.shape[0])

    def clear_tts(self, uint32_t idx, uint32_t gen):
        """Barge-in: drop every queued TTS byte. Returns the bytes dropped."""
        self.check_gen(idx, gen)
        return ss.ss_byte_clear(&self.rings[idx].down)

    def tts_position(self, uint32_t idx):
        """(played, queued): bytes the module has taken so far (a free-running
        position, for marks) and bytes still waiting in the ring."""
        self.slot(idx)
        v = &self.rings[idx].down
        return ss.ss_ring_head(v), ss.ss_ring_used(v)

    def set_tts_paused(self, uint32_t idx, uint32_t gen, bint paused):
        """Pause (or resume) the module's TTS reads for this call."""
        self.check_gen(idx, gen)
        self.slot(idx).hdr.tts_paused = paused

    def tts_paused(self, uint32_t idx):
        """Whether playback is paused (survives a daemon restart)."""
        return bool(self.slot(idx).hdr.tts_paused)

    def post_control(self, uint32_t idx, uint32_t gen, uint16_t type, bytes data):
        """Send a control message to the module (hangup, transfer, event, mark, error,
        send_dtmf)."""
        self.check_gen(idx, gen)
        if type < ss.SS_CTL_HANGUP or type > ss.SS_CTL_SEND_DTMF:
            raise ValueError(f"control type {type} is not one the daemon sends")
        rc = ss.ss_rec_write(&self.rings[idx].ctl_out, type, 0, ss.ss_now_ns(), <const char *>data,
                             <uint32_t>len(data), 0)
        if rc != ss.SS_OK:
            raise_rc(rc, f"slot {idx} control")

    def set_link(self, uint32_t idx, uint32_t gen, uint32_t link):
        ss.ss_slot_set_link(self.slot(idx), gen, link)

    def add_sent(self, uint32_t idx, uint64_t frames_sent, uint64_t frames_received):
        s = self.slot(idx)
        s.hdr.frames_sent += frames_sent
        s.hdr.frames_received += frames_received

    def free_slot(self, uint32_t idx, uint32_t gen):
        """CLOSING -> FREE after StreamEnd; SlotError if the slot is not ours or not closing."""
        self.slot(idx)
        rc = ss.ss_slot_free(&self.pool, idx, gen)
        if rc != ss.SS_OK:
            raise_rc(rc, f"free slot {idx}")
        self.unwatch(idx)

    def counters(self, uint32_t idx):
        """Drop and underrun counters of a slot's rings, as the producers counted them."""
        s = self.slot(idx)
        return dict(
            up_in_dropped=s.up[0].dropped, up_out_dropped=s.up[1].dropped,
            up_rejected=s.up[0].rejected + s.up[1].rejected,
            ctl_in_rejected=s.ctl_in.rejected, ctl_out_rejected=s.ctl_out.rejected,
            down_underruns=s.down.underruns,
            frames_sent=s.hdr.frames_sent, frames_received=s.hdr.frames_received)


cdef ss.ss_ring *up_ring(object pool, uint32_t idx, uint32_t track) except NULL:
    if track >= ss.SS_TRACKS:
        raise ValueError(f"track {track}")
    (<Pool?>pool).slot(idx)
    return (<Pool>pool).rings[idx].up[track].r


cdef class ModuleStream:
    """The FreeSWITCH module's side of one slot (csrc/ss_stream.c), for tests
    and tools that stand in for FreeSWITCH. The module itself is C."""
    cdef ss.ss_stream st
    cdef Pool pool   # keeps the mapping alive
    cdef bint open_

    def __init__(self, Pool pool, str uuid, str target, uint32_t channel_rate=16000, *,
                 uint32_t requested_rate=0, uint32_t tracks=1, str codec="L16", str caller="",
                 str callee="", str metadata="", uint32_t flags=0):
        cdef ss.ss_call c
        cdef char err[ERRLEN]
        b = [s.encode() for s in (uuid, target, codec, caller, callee, metadata)]
        c.uuid, c.target, c.codec, c.caller, c.callee, c.metadata = b[0], b[1], b[2], b[3], b[4], b[5]
        c.channel_rate, c.requested_rate, c.tracks, c.flags = channel_rate, requested_rate, tracks, flags
        rc = ss.ss_stream_open(&pool.pool, &c, &self.st, err, ERRLEN)
        if rc != ss.SS_OK:
            raise RingError(err.decode(errors="replace"))
        self.pool = pool
        self.open_ = True

    @property
    def slot(self):
        return self.st.idx

    @property
    def generation(self):
        return self.st.gen

    @property
    def link(self):
        return ss.ss_stream_link(&self.st)

    def write(self, unsigned track, const uint8_t[::1] pcm, uint64_t ts_ns=0):
        if pcm.shape[0] % 2:
            raise ValueError("PCM16 needs an even byte count")
        rc = ss.ss_stream_write(&self.st, track, ts_ns or ss.ss_now_ns(),
                                <const int16_t *>&pcm[0] if pcm.shape[0] else NULL,
                                <uint32_t>(pcm.shape[0] // 2))
        if rc != ss.SS_OK:
            raise_rc(rc, "write frame")

    def read_tts(self, uint32_t samples):
        """One frame of TTS: (samples actually queued, frame bytes zero-padded)."""
        out = bytearray(samples * 2)
        cdef uint8_t[::1] v = out
        got = ss.ss_stream_read_tts(&self.st, <int16_t *>&v[0], samples) if samples else 0
        return got, bytes(out)

    def post(self, uint16_t type, bytes data):
        rc = ss.ss_stream_post(&self.st, type, <const char *>data, <uint32_t>len(data))
        if rc != ss.SS_OK:
            raise_rc(rc, "post control")

    def take(self):
        """Next control message from the daemon as (type, bytes), or None."""
        buf = bytearray(ss.SS_CTL_MSG_MAX + 1)
        cdef char[::1] v = buf
        cdef uint16_t type = 0
        n = ss.ss_stream_take(&self.st, &type, &v[0], len(buf))
        if n < 0:
            raise_rc(n, "take control")
        return (type, bytes(buf[:n])) if type else None

    def close(self, uint32_t reason=END_HANGUP):
        if self.open_:
            self.open_ = False
            rc = ss.ss_stream_close(&self.st, reason)
            if rc != ss.SS_OK:
                raise_rc(rc, "close")
