# Declarations of the C library in csrc/ for Cython. The layout itself lives
# only in csrc/ss_layout.h: fields are named here, never sized or placed.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t


cdef extern from "ss_layout.h" nogil:
    uint32_t SS_LAYOUT_VERSION
    uint32_t SS_UP_BYTES
    uint32_t SS_DOWN_BYTES
    uint32_t SS_CTL_BYTES
    uint32_t SS_FRAME_BYTES_MAX
    uint32_t SS_CTL_MSG_MAX
    uint32_t SS_REC_HDR
    uint64_t SS_HEARTBEAT_STALE_NS
    uint64_t SS_HEARTBEAT_STALE_MIN_NS
    uint64_t SS_HEARTBEAT_STALE_MAX_NS
    int SS_UUID_MAX, SS_TARGET_MAX, SS_NUMBER_MAX, SS_CODEC_MAX, SS_META_MAX
    uint32_t SS_SLOT_F_TLS
    uint32_t ss_up_bytes(uint32_t rate)
    uint32_t ss_down_bytes(uint32_t rate)
    uint32_t ss_frame_bytes_max(uint32_t rate)

    enum:
        SS_SLOT_FREE, SS_SLOT_CLAIMED, SS_SLOT_ACTIVE, SS_SLOT_CLOSING
        SS_LINK_NONE, SS_LINK_CONNECTING, SS_LINK_STREAMING, SS_LINK_RETRYING, SS_LINK_FAILED
        SS_TRACK_IN, SS_TRACK_OUT, SS_TRACKS
        SS_REC_PAD, SS_REC_AUDIO, SS_REC_SILENCE
        SS_CTL_PAYLOAD, SS_CTL_DTMF
        SS_CTL_HANGUP, SS_CTL_TRANSFER, SS_CTL_EVENT, SS_CTL_MARK, SS_CTL_ERROR, SS_CTL_SEND_DTMF
        SS_END_HANGUP, SS_END_STOP, SS_END_UNLOAD

    ctypedef struct ss_rec:
        uint32_t len
        uint16_t type
        uint16_t track
        uint64_t seq
        uint64_t ts_ns

    ctypedef struct ss_ring:
        uint64_t head
        uint64_t tail
        uint64_t underruns
        uint64_t sent_seq
        uint64_t seq
        uint64_t dropped
        uint64_t rejected

    ctypedef struct ss_slot_hdr:
        uint32_t end_reason
        uint32_t channel_rate
        uint32_t requested_rate
        uint32_t tracks
        uint32_t flags
        uint64_t started_ns
        char uuid[1]
        char target[1]
        char codec[1]
        char caller[1]
        char callee[1]
        char metadata[1]
        uint64_t frames_sent
        uint64_t frames_received
        uint32_t tts_paused

    ctypedef struct ss_slot:
        ss_slot_hdr hdr
        ss_ring up[2]
        ss_ring down
        ss_ring ctl_in
        ss_ring ctl_out

    ctypedef struct ss_pool_hdr:
        uint64_t heartbeat_ns
        uint32_t slot_count
        uint32_t daemon_pid
        uint32_t daemon_epoch


cdef extern from "ss_ring.h" nogil:
    enum:
        SS_OK, SS_E_FULL, SS_E_TOOBIG, SS_E_CORRUPT, SS_E_STALE, SS_E_ARG
        SS_E_NOSLOT, SS_E_NODAEMON, SS_E_BUSY, SS_E_SYS, SS_E_STATE, SS_E_PERM

    ctypedef struct ss_ringv:
        ss_ring *r
        uint8_t *data
        uint64_t cap
        uint32_t max_len

    const char *ss_strerror(int err)
    uint64_t ss_rec_size(uint32_t len)
    int ss_rec_write(const ss_ringv *v, uint16_t type, uint16_t track, uint64_t ts_ns,
                     const void *payload, uint32_t len, int drop_oldest)
    long ss_rec_drain(const ss_ringv *v, uint8_t *out, size_t out_cap, uint32_t max_recs,
                      uint32_t *nrecs, uint64_t *lost)
    int ss_rec_next(const ss_ringv *v, uint64_t *pos, ss_rec *hdr, const uint8_t **payload)
    int ss_rec_pop(const ss_ringv *v, ss_rec *hdr)
    uint32_t ss_byte_write(const ss_ringv *v, const void *src, uint32_t len)
    uint32_t ss_byte_read(const ss_ringv *v, void *dst, uint32_t len)
    uint64_t ss_byte_clear(const ss_ringv *v)
    uint64_t ss_ring_used(const ss_ringv *v)
    uint64_t ss_ring_head(const ss_ringv *v)


cdef extern from "ss_pool.h" nogil:
    ctypedef struct ss_pool:
        ss_pool_hdr *hdr
        uint8_t *base
        size_t bytes
        uint32_t slot_count

    ctypedef struct ss_slot_rings:
        ss_ringv up[2]
        ss_ringv down
        ss_ringv ctl_in
        ss_ringv ctl_out

    uint64_t ss_now_ns()
    int ss_pool_validate(const void *mem, size_t len, char *err, size_t errlen)
    enum:
        SS_HEALTH_ALIVE, SS_HEALTH_STOPPED, SS_HEALTH_LOST
    int ss_pool_attach(const char *path, ss_pool *out, char *err, size_t errlen)
    int ss_pool_attach_as(const char *path, unsigned int owner, ss_pool *out, char *err,
                          size_t errlen)
    uint64_t ss_pool_bytes(uint32_t slots)
    uint64_t ss_pool_fixed_bytes(uint32_t slots)
    uint64_t ss_call_bytes(uint32_t rate, uint32_t tracks)
    int ss_pool_daemon_health(const ss_pool *p, uint64_t now_ns)
    const char *ss_health_name(int health)
    uint64_t ss_pool_stale_ns(const ss_pool *p)
    void ss_pool_detach(ss_pool *p)
    ss_slot *ss_pool_slot(const ss_pool *p, uint32_t idx)
    void ss_slot_rings_init(ss_slot *s, uint32_t rate, ss_slot_rings *out)
    int ss_pool_daemon_alive(const ss_pool *p, uint64_t now_ns)


cdef extern from "ss_daemon.h" nogil:
    int ss_daemon_open(const char *path, uint32_t slots, unsigned int mode, ss_pool *out,
                       int *reattached, char *err, size_t errlen)
    void ss_daemon_set_stale_ns(ss_pool *p, uint64_t ns)
    void ss_daemon_heartbeat(ss_pool *p, uint64_t now_ns)
    void ss_daemon_leave(ss_pool *p)
    uint32_t ss_slot_state(const ss_slot *s, uint32_t *gen)
    int ss_slot_attach(ss_slot *s, uint32_t gen)
    void ss_slot_set_link(ss_slot *s, uint32_t gen, uint32_t link)
    int ss_slot_free(ss_pool *p, uint32_t idx, uint32_t gen)


cdef extern from "ss_stream.h" nogil:
    ctypedef struct ss_call:
        const char *uuid
        const char *target
        const char *codec
        const char *caller
        const char *callee
        const char *metadata
        uint32_t channel_rate
        uint32_t requested_rate
        uint32_t tracks
        uint32_t flags

    ctypedef struct ss_stream:
        ss_slot *slot
        uint32_t idx
        uint32_t gen
        ss_slot_rings rings

    int ss_stream_open(ss_pool *p, const ss_call *c, ss_stream *out, char *err, size_t errlen)
    int ss_stream_write(ss_stream *s, unsigned track, uint64_t ts_ns, const int16_t *pcm,
                        uint32_t samples)
    uint32_t ss_stream_read_tts(ss_stream *s, int16_t *out, uint32_t samples)
    int ss_stream_post(ss_stream *s, uint16_t type, const void *data, uint32_t len)
    long ss_stream_take(ss_stream *s, uint16_t *type, char *buf, size_t cap)
    int ss_stream_close(ss_stream *s, uint32_t reason)
    uint32_t ss_stream_link(const ss_stream *s)
