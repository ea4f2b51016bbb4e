/* ss_stream.c: the FreeSWITCH side of a slot. See ss_stream.h. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "ss_stream.h"

static int bad(char *err, size_t errlen, int code, const char *what)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", what);
    return code;
}

/* Does s (NULL counts as empty) fit a fixed field of cap bytes with its NUL? */
static int fits(const char *s, size_t cap)
{
    return !s || strlen(s) < cap;
}

static void put_str(char *dst, const char *s)
{
    strcpy(dst, s ? s : "");
}

static int check_call(const ss_call *c, char *err, size_t errlen)
{
    if (!c->uuid || !*c->uuid || strlen(c->uuid) >= SS_UUID_MAX)
        return bad(err, errlen, SS_E_ARG, "uuid missing or too long");
    if (!c->target || !*c->target || strlen(c->target) >= SS_TARGET_MAX)
        return bad(err, errlen, SS_E_ARG, "target missing or too long");
    if (c->channel_rate < 8000 || c->channel_rate > 48000)
        return bad(err, errlen, SS_E_ARG, "channel rate outside 8000..48000");
    if (c->requested_rate && (c->requested_rate < 8000 || c->requested_rate > 48000))
        return bad(err, errlen, SS_E_ARG, "sample rate outside 8000..48000");
    if (!c->tracks || (c->tracks & ~(SS_TRACKS_MASK_IN | SS_TRACKS_MASK_OUT)))
        return bad(err, errlen, SS_E_ARG, "tracks must be inbound, outbound or both");
    if (!fits(c->metadata, SS_META_MAX))
        return bad(err, errlen, SS_E_ARG, "metadata too long");
    if (!fits(c->codec, SS_CODEC_MAX) || !fits(c->caller, SS_NUMBER_MAX) ||
        !fits(c->callee, SS_NUMBER_MAX))
        return bad(err, errlen, SS_E_ARG, "codec or caller/callee number too long");
    return SS_OK;
}

int ss_stream_open(ss_pool *p, const ss_call *c, ss_stream *out, char *err, size_t errlen)
{
    return ss_stream_open_ex(p, c, 0, out, err, errlen);
}

int ss_stream_open_ex(ss_pool *p, const ss_call *c, unsigned opts, ss_stream *out, char *err,
                      size_t errlen)
{
    int rc = check_call(c, err, errlen);
    if (rc)
        return rc;
    if (opts & ~SS_OPEN_WITHOUT_DAEMON)
        return bad(err, errlen, SS_E_ARG, "unknown open option");
    if (!(opts & SS_OPEN_WITHOUT_DAEMON) && !ss_pool_daemon_alive(p, ss_now_ns()))
        return bad(err, errlen, SS_E_NODAEMON, "smartstream daemon not running");

    for (uint32_t i = 0; i < p->slot_count; i++) {
        ss_slot *s = ss_pool_slot(p, i);
        uint32_t st = SS_SLOT_FREE;
        if (!atomic_compare_exchange_strong_explicit(&s->hdr.state, &st, SS_SLOT_CLAIMED,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        ss_slot_hdr *h = &s->hdr;
        put_str(h->uuid, c->uuid);
        put_str(h->target, c->target);
        put_str(h->codec, c->codec);
        put_str(h->caller, c->caller);
        put_str(h->callee, c->callee);
        put_str(h->metadata, c->metadata);
        h->channel_rate = c->channel_rate;
        h->requested_rate = c->requested_rate;
        h->tracks = c->tracks;
        h->flags = c->flags;
        h->started_ns = ss_now_ns();
        atomic_store_explicit(&h->end_reason, SS_END_HANGUP, memory_order_relaxed);
        atomic_store_explicit(&h->link, SS_LINK_NONE, memory_order_relaxed);
        atomic_store_explicit(&h->frames_sent, 0, memory_order_relaxed);
        atomic_store_explicit(&h->frames_received, 0, memory_order_relaxed);
        atomic_store_explicit(&h->tts_paused, 0, memory_order_relaxed);

        rc = ss_slot_alloc(p, i, c->channel_rate, c->tracks, err, errlen);
        if (rc) {
            atomic_store_explicit(&h->state, SS_SLOT_FREE, memory_order_release);
            return rc;
        }
        out->slot = s;
        out->idx = i;
        out->closed = 0;
        out->ctl_out_seen = out->down_seen = 0;
        ss_slot_rings_init(s, c->channel_rate, &out->rings);
        for (int t = 0; t < SS_TRACKS; t++)
            ss_ring_reset(&out->rings.up[t]);
        ss_ring_reset(&out->rings.down);
        ss_ring_reset(&out->rings.ctl_in);
        ss_ring_reset(&out->rings.ctl_out);
        out->gen = atomic_load_explicit(&h->generation, memory_order_relaxed) + 1;
        atomic_store_explicit(&h->generation, out->gen, memory_order_relaxed);
        /* Publish: everything above is visible to a daemon that sees ACTIVE. */
        atomic_store_explicit(&h->state, SS_SLOT_ACTIVE, memory_order_release);
        return SS_OK;
    }
    return bad(err, errlen, SS_E_NOSLOT, "pool full: no free slot");
}

static int write_up(ss_stream *s, uint16_t type, unsigned track, uint64_t ts_ns,
                    const int16_t *pcm, uint32_t samples)
{
    if (track >= SS_TRACKS)
        return SS_E_ARG;
    /* A safety net: one relaxed load of a line this thread reads anyway. */
    if (atomic_load_explicit(&s->slot->hdr.generation, memory_order_relaxed) != s->gen)
        return SS_E_STALE;
    return ss_rec_write(&s->rings.up[track], type, (uint16_t)track, ts_ns, pcm, samples * 2u, 1);
}

int ss_stream_write(ss_stream *s, unsigned track, uint64_t ts_ns, const int16_t *pcm,
                    uint32_t samples)
{
    return write_up(s, SS_REC_AUDIO, track, ts_ns, pcm, samples);
}

int ss_stream_write_silence(ss_stream *s, unsigned track, uint64_t ts_ns, uint32_t samples)
{
    static const int16_t zeros[SS_FRAME_BYTES_MAX / 2];
    if (samples > SS_FRAME_BYTES_MAX / 2)
        return SS_E_TOOBIG;
    return write_up(s, SS_REC_SILENCE, track, ts_ns, zeros, samples);
}

int ss_pcm_is_cng_fill(const int16_t *pcm, uint32_t samples)
{
    for (uint32_t i = 0; i < samples; i++)
        if (pcm[i] != -1)
            return 0;   /* real audio leaves at the first sample, almost always */
    return samples != 0;
}

uint32_t ss_stream_read_tts(ss_stream *s, int16_t *out, uint32_t samples)
{
    if (atomic_load_explicit(&s->slot->hdr.tts_paused, memory_order_relaxed))
        return 0;   /* paused: no underrun, the ring keeps its place */
    uint32_t got = ss_byte_read(&s->rings.down, out, samples * 2u) / 2u;
    if (got && got < samples)
        memset(out + got, 0, (size_t)(samples - got) * 2u);
    return got;
}

/* The ring first: tts_paused shares its cache line with counters the daemon
 * writes every tick, so reading it costs a miss, and an empty ring needs no
 * answer from it. */
uint64_t ss_stream_tts_queued(const ss_stream *s)
{
    uint64_t used = ss_ring_used(&s->rings.down);
    return used && !ss_stream_tts_paused(s) ? used : 0;
}

int ss_stream_tts_buffered(ss_stream *s)
{
    return !ss_ring_empty_seen(&s->rings.down, &s->down_seen);
}

int ss_stream_tts_paused(const ss_stream *s)
{
    return atomic_load_explicit(&s->slot->hdr.tts_paused, memory_order_relaxed) != 0;
}

int ss_stream_post(ss_stream *s, uint16_t type, const void *data, uint32_t len)
{
    if (type != SS_CTL_PAYLOAD && type != SS_CTL_DTMF)
        return SS_E_ARG;   /* the daemon would refuse anything else as corrupt */
    return ss_rec_write(&s->rings.ctl_in, type, 0, ss_now_ns(), data, len, 0);
}

/* The copy out of a waiting message; its 8 KB buffer is only set up when one waits. */
static __attribute__((noinline)) long take_one(ss_stream *s, uint16_t *type, char *buf)
{
    _Alignas(8) uint8_t rec[SS_REC_HDR + SS_CTL_MSG_MAX];
    uint32_t n;
    uint64_t lost;
    long got = ss_rec_drain(&s->rings.ctl_out, rec, sizeof rec, 1, &n, &lost);
    if (got <= 0)
        return got;
    ss_rec h;
    memcpy(&h, rec, SS_REC_HDR);
    memcpy(buf, rec + SS_REC_HDR, h.len);
    buf[h.len] = '\0';
    *type = h.type;
    return (long)h.len;
}

long ss_stream_take(ss_stream *s, uint16_t *type, char *buf, size_t cap)
{
    *type = SS_REC_PAD;
    if (cap <= SS_CTL_MSG_MAX)
        return SS_E_ARG;
    /* The control thread asks every stream every 20 ms and almost always
     * finds nothing: one load, no drain. An empty ring is never corrupt. */
    if (ss_ring_empty_seen(&s->rings.ctl_out, &s->ctl_out_seen))
        return 0;
    return take_one(s, type, buf);
}

int ss_stream_close(ss_stream *s, uint32_t reason)
{
    ss_slot_hdr *h = &s->slot->hdr;
    uint32_t g = atomic_load_explicit(&h->generation, memory_order_acquire);
    int rc = SS_OK;
    if (g != s->gen && s->closed)
        return SS_E_STALE;      /* closed before, and another call has it now */
    /* Only this side moves an ACTIVE slot, so the reason cannot reach another
     * call or overwrite a first close; the CAS publishes it with CLOSING. */
    if (atomic_load_explicit(&h->state, memory_order_relaxed) != SS_SLOT_ACTIVE)
        return SS_E_STATE;
    if (g != s->gen) {
        /* Nothing moves our slot to another generation before we close it:
         * the header was scribbled on. Take it back and close it, so the
         * daemon ends and frees it instead of it staying ACTIVE for good. */
        if (!atomic_compare_exchange_strong_explicit(&h->generation, &g, s->gen,
                                                     memory_order_acq_rel, memory_order_relaxed))
            return SS_E_STALE;
        rc = SS_E_CORRUPT;
    }
    atomic_store_explicit(&h->end_reason, reason, memory_order_relaxed);
    uint32_t st = SS_SLOT_ACTIVE;
    if (!atomic_compare_exchange_strong_explicit(&h->state, &st, SS_SLOT_CLOSING,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return SS_E_STATE;
    s->closed = 1;
    return rc;
}

uint32_t ss_stream_link(const ss_stream *s)
{
    return atomic_load_explicit(&s->slot->hdr.link, memory_order_acquire);
}
