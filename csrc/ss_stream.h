/*
 * ss_stream.h: the FreeSWITCH side of one call's slot, as mod_ai_stream and
 * the media simulator use it. Plain C: no FreeSWITCH types.
 *
 * Thread rules: ss_stream_write(IN) from the read hook, ss_stream_write(OUT)
 * and ss_stream_read_tts from the write-replace bug, ss_stream_post from
 * anywhere but serialized by the caller (one producer), ss_stream_take from
 * one control thread. None of them blocks, allocates or makes a system call.
 */
#ifndef SS_STREAM_H
#define SS_STREAM_H

#include "ss_pool.h"

/* What the module knows about the call when it starts streaming. */
typedef struct ss_call {
    const char *uuid;
    const char *target;         /* host:port */
    const char *codec;
    const char *caller;
    const char *callee;
    const char *metadata;       /* JSON object text or NULL */
    uint32_t channel_rate;      /* Hz of the frames that will be written */
    uint32_t requested_rate;    /* 0: same as channel_rate */
    uint32_t tracks;            /* SS_TRACKS_MASK_* */
    uint32_t flags;             /* SS_SLOT_F_* */
} ss_call;

typedef struct ss_stream {
    ss_slot *slot;
    uint32_t idx;
    uint32_t gen;
    int closed;                 /* ss_stream_close has handed the slot back */
    ss_slot_rings rings;
    /* Control thread: heads last seen (ss_ring_empty_seen) of the rings it polls. */
    uint64_t ctl_out_seen, down_seen;
} ss_stream;

/* Claim a free slot for the call and publish it to the daemon. Fails with
 * SS_E_NODAEMON (no live heartbeat), SS_E_NOSLOT or SS_E_ARG (reason in err). */
int ss_stream_open(ss_pool *p, const ss_call *c, ss_stream *out, char *err, size_t errlen);

/* ss_stream_open with options. SS_OPEN_WITHOUT_DAEMON: open even with no
 * live heartbeat (the daemon stopped or lost). The rings keep the call's
 * audio as for a live stream, dropping the oldest once full; the next daemon
 * re-attaches the pool and opens the stream as a new one, from sequence 0. */
#define SS_OPEN_WITHOUT_DAEMON 1u
int ss_stream_open_ex(ss_pool *p, const ss_call *c, unsigned opts, ss_stream *out, char *err,
                      size_t errlen);

/* One decoded frame of PCM16 mono. Never blocks: a full ring drops its oldest
 * frame. SS_E_STALE if the slot no longer belongs to this call. */
int ss_stream_write(ss_stream *s, unsigned track, uint64_t ts_ns, const int16_t *pcm,
                    uint32_t samples);

/* The same for a frame the phone sent nothing for (CNG, silence suppression,
 * a lost packet): samples of silence, flagged synthesized to the AI server. */
int ss_stream_write_silence(ss_stream *s, unsigned track, uint64_t ts_ns, uint32_t samples);

/* Whether a decoded frame is FreeSWITCH's CNG placeholder: with no PLC the core
 * fills a frame the phone never sent with 0xFF bytes (every sample -1) before
 * media bugs see it. No G.711 code decodes to -1, so the media-bug fallback,
 * which gets no SFF_CNG flag, tells silence suppression by this. */
int ss_pcm_is_cng_fill(const int16_t *pcm, uint32_t samples);

/* Exactly one frame's worth of TTS. Returns samples copied (0: nothing queued
 * or playback paused, leave the frame alone; fewer than asked: the rest of out
 * is zeroed). */
uint32_t ss_stream_read_tts(ss_stream *s, int16_t *out, uint32_t samples);

/* Bytes of TTS queued for ss_stream_read_tts (0 while playback is paused).
 * For the control thread: tells TTS that nothing plays. */
uint64_t ss_stream_tts_queued(const ss_stream *s);

/* Whether TTS waits in the down ring, paused or not. For the control thread
 * only, every tick: with none, one load of a line nobody writes while no TTS
 * flows. The module attaches its write-replace bug when this becomes true. */
int ss_stream_tts_buffered(ss_stream *s);

/* Whether the AI server has paused playback (the module keeps its bug then). */
int ss_stream_tts_paused(const ss_stream *s);

/* Control message to the daemon (SS_CTL_PAYLOAD, SS_CTL_DTMF). SS_E_FULL if
 * the daemon is not keeping up: the caller reports it, nothing is lost silently. */
int ss_stream_post(ss_stream *s, uint16_t type, const void *data, uint32_t len);

/* Next control message from the daemon: returns its length (buf gets it,
 * NUL-terminated; cap must exceed SS_CTL_MSG_MAX) with *type set, or an
 * ss_err. With no message it returns 0 and sets *type to 0 (SS_REC_PAD): an
 * empty message still has a nonzero type. */
long ss_stream_take(ss_stream *s, uint16_t *type, char *buf, size_t cap);

/* The call is over: hand the slot back to the daemon, which sends StreamEnd
 * with the reason (enum ss_end_reason) and frees it. SS_E_STALE if it is no
 * longer ours (closed before, then reused). SS_E_CORRUPT if its generation
 * had been overwritten while it was ours: it is handed back all the same
 * (the caller logs and counts it), never left stuck. */
int ss_stream_close(ss_stream *s, uint32_t reason);

/* What the daemon reports about this stream: enum ss_link_state. */
uint32_t ss_stream_link(const ss_stream *s);

#endif /* SS_STREAM_H */
