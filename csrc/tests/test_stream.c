/* test_stream.c: the module's side of a slot (ss_stream) against the
 * daemon's (ss_daemon plus the rings seen from the other end). */
#include <stdlib.h>
#include "check.h"
#include "ss_daemon.h"
#include "ss_stream.h"

#define SPF 160     /* 20 ms at 8 kHz */

static ss_pool live_pool(const char *name, uint32_t slots)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p;
    int reattached;
    check_path(path, name);
    CHECK_EQ(ss_daemon_open(path, slots, 0600, &p, &reattached, err, sizeof err), SS_OK);
    return p;
}

static ss_call call_of(const char *uuid)
{
    return (ss_call){.uuid = uuid, .target = "127.0.0.1:50051", .channel_rate = 8000,
                     .tracks = SS_TRACKS_MASK_IN};
}

static void open_ok(ss_pool *p, const char *uuid, ss_stream *s)
{
    char err[256];
    ss_call c = call_of(uuid);
    CHECK_EQ(ss_stream_open(p, &c, s, err, sizeof err), SS_OK);
}

/* The daemon's view of a slot: the same rings, from the other end. */
static ss_slot_rings daemon_rings(ss_stream *s)
{
    ss_slot_rings r;
    ss_slot_rings_init(s->slot, s->slot->hdr.channel_rate, &r);
    return r;
}

static void test_stream_open_needs_a_daemon(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p;
    ss_stream s;
    ss_call c = call_of("a");
    check_path(path, "s1.pool");
    CHECK_EQ(ss_pool_create(path, 1, 0600, &p, err, sizeof err), SS_OK);
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_E_NODAEMON);
    CHECK_STR(err, "smartstream daemon not running");
    ss_daemon_heartbeat(&p, ss_now_ns() - SS_HEARTBEAT_STALE_NS - 1);
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_E_NODAEMON);
    ss_daemon_heartbeat(&p, ss_now_ns());
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_OK);
    ss_pool_detach(&p);
}

/* SS_OPEN_WITHOUT_DAEMON: a call opens while the daemon is stopped or lost
 * (the default refuses); its ring keeps the audio as for a live stream,
 * oldest dropped once full, and the daemon that comes back finds the slot
 * ACTIVE, not a resume, with every kept frame from sequence `dropped` on. */
static void test_stream_open_without_daemon(void)
{
    char err[256];
    ss_pool p = live_pool("s30.pool", 2);
    ss_stream s, l;
    ss_call c = call_of("w"), c2 = call_of("w2");
    int16_t pcm[SPF] = {0};
    _Alignas(8) uint8_t rec[SS_REC_HDR + 2 * SPF];
    ss_daemon_leave(&p);                                        /* a clean stop */
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_E_NODAEMON);
    CHECK_EQ(ss_stream_open_ex(&p, &c, 0, &s, err, sizeof err), SS_E_NODAEMON);
    CHECK_EQ(ss_stream_open_ex(&p, &c, 2, &s, err, sizeof err), SS_E_ARG);
    CHECK_STR(err, "unknown open option");
    CHECK_EQ(ss_stream_open_ex(&p, &c, SS_OPEN_WITHOUT_DAEMON, &s, err, sizeof err), SS_OK);
    /* Lost (running, heartbeat stale) is the same. */
    atomic_store(&p.hdr->daemon_state, SS_DAEMON_RUNNING);
    ss_daemon_heartbeat(&p, ss_now_ns() - SS_HEARTBEAT_STALE_NS - 1);
    CHECK_EQ(ss_stream_open(&p, &c2, &l, err, sizeof err), SS_E_NODAEMON);
    CHECK_EQ(ss_stream_open_ex(&p, &c2, SS_OPEN_WITHOUT_DAEMON, &l, err, sizeof err), SS_OK);

    for (int i = 0; i < 1000; i++) {
        pcm[0] = (int16_t)i;
        CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 0, pcm, SPF), SS_OK);
    }
    uint64_t dropped = atomic_load(&s.slot->up[SS_TRACK_IN].dropped);
    CHECK_EQ(dropped, 1000 - ss_up_bytes(8000) / (24 + 2 * SPF));

    ss_daemon_heartbeat(&p, ss_now_ns());                       /* the daemon is back */
    uint32_t gen;
    CHECK_EQ(ss_slot_state(s.slot, &gen), SS_SLOT_ACTIVE);
    CHECK_EQ(gen, s.gen);
    CHECK_EQ(ss_slot_attach(s.slot, gen), 0);                   /* a new stream, not a resume */
    ss_slot_rings d = daemon_rings(&s);
    uint64_t next = dropped;
    uint32_t n;
    uint64_t lost;
    while (ss_rec_drain(&d.up[SS_TRACK_IN], rec, sizeof rec, 1, &n, &lost) > 0) {
        ss_rec h;
        int16_t first;
        memcpy(&h, rec, sizeof h);
        memcpy(&first, rec + SS_REC_HDR, sizeof first);
        CHECK_EQ(h.seq, next);
        CHECK_EQ(first, (int16_t)h.seq);
        next++;
    }
    CHECK_EQ(next, 1000);
    ss_pool_detach(&p);
}

static void test_stream_open_rejects_bad_calls(void)
{
    static char long_uuid[SS_UUID_MAX + 1], long_target[SS_TARGET_MAX + 1],
        long_meta[SS_META_MAX + 1], long_codec[SS_CODEC_MAX + 1];
    memset(long_uuid, 'u', SS_UUID_MAX);
    memset(long_target, 't', SS_TARGET_MAX);
    memset(long_meta, 'm', SS_META_MAX);
    memset(long_codec, 'c', SS_CODEC_MAX);
    struct { ss_call c; const char *why; } bad[] = {
        {call_of(NULL), "uuid missing or too long"},
        {call_of(""), "uuid missing or too long"},
        {call_of(long_uuid), "uuid missing or too long"},
        {call_of("a"), "target missing or too long"},
        {call_of("a"), "target missing or too long"},
        {call_of("a"), "channel rate outside 8000..48000"},
        {call_of("a"), "channel rate outside 8000..48000"},
        {call_of("a"), "sample rate outside 8000..48000"},
        {call_of("a"), "tracks must be inbound, outbound or both"},
        {call_of("a"), "tracks must be inbound, outbound or both"},
        {call_of("a"), "metadata too long"},
        {call_of("a"), "codec or caller/callee number too long"},
    };
    bad[3].c.target = NULL;
    bad[4].c.target = long_target;
    bad[5].c.channel_rate = 7999;
    bad[6].c.channel_rate = 48001;
    bad[7].c.requested_rate = 4000;
    bad[8].c.tracks = 0;
    bad[9].c.tracks = 4;
    bad[10].c.metadata = long_meta;
    bad[11].c.codec = long_codec;
    ss_pool p = live_pool("s2.pool", 1);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char err[256] = "";
        ss_stream s;
        CHECK_EQ(ss_stream_open(&p, &bad[i].c, &s, err, sizeof err), SS_E_ARG);
        CHECK_STR(err, bad[i].why);
    }
    CHECK_EQ(atomic_load(&ss_pool_slot(&p, 0)->hdr.state), SS_SLOT_FREE);
    CHECK_EQ(atomic_load(&ss_pool_slot(&p, 0)->hdr.generation), 0);
    char err[256];
    ss_stream s;
    long_uuid[SS_UUID_MAX - 1] = '\0';      /* 63 characters and the NUL fit */
    ss_call edge = call_of(long_uuid);
    CHECK_EQ(ss_stream_open(&p, &edge, &s, err, sizeof err), SS_OK);
    CHECK_STR(s.slot->hdr.uuid, long_uuid);
    ss_daemon_leave(&p);                    /* arguments are checked first */
    CHECK_EQ(ss_stream_open(&p, &bad[0].c, &s, err, sizeof err), SS_E_ARG);
    ss_pool_detach(&p);
}

static void test_stream_open_publishes_the_call(void)
{
    ss_pool p = live_pool("s3.pool", 2);
    ss_call c = {
        .uuid = "u-1", .target = "ai:9", .codec = "PCMU", .caller = "100", .callee = "200",
        .metadata = "{\"k\":1}", .channel_rate = 16000, .requested_rate = 24000,
        .tracks = SS_TRACKS_MASK_IN | SS_TRACKS_MASK_OUT, .flags = SS_SLOT_F_TLS,
    };
    ss_stream s;
    char err[256];
    uint64_t before = ss_now_ns();
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_OK);
    ss_slot_hdr *h = &s.slot->hdr;
    CHECK_EQ(s.idx, 0);
    CHECK_EQ(s.gen, 1);
    uint32_t gen;
    CHECK_EQ(ss_slot_state(s.slot, &gen), SS_SLOT_ACTIVE);
    CHECK_EQ(gen, 1);
    CHECK_STR(h->uuid, "u-1");
    CHECK_STR(h->target, "ai:9");
    CHECK_STR(h->codec, "PCMU");
    CHECK_STR(h->caller, "100");
    CHECK_STR(h->callee, "200");
    CHECK_STR(h->metadata, "{\"k\":1}");
    CHECK_EQ(h->channel_rate, 16000);
    CHECK_EQ(h->requested_rate, 24000);
    CHECK_EQ(h->tracks, 3);
    CHECK_EQ(h->flags, SS_SLOT_F_TLS);
    CHECK(h->started_ns >= before && h->started_ns <= ss_now_ns());
    CHECK_EQ(ss_stream_link(&s), SS_LINK_NONE);
    ss_stream t;
    open_ok(&p, "u-2", &t);                 /* optional strings may be NULL: stored empty */
    CHECK_EQ(t.idx, 1);
    CHECK_STR(t.slot->hdr.codec, "");
    CHECK_STR(t.slot->hdr.metadata, "");
    ss_pool_detach(&p);
}

static void test_stream_pool_full(void)
{
    ss_pool p = live_pool("s4.pool", 2);
    ss_stream a, b, c;
    char err[256];
    ss_call call = call_of("c");
    open_ok(&p, "a", &a);
    open_ok(&p, "b", &b);
    CHECK_EQ(ss_stream_open(&p, &call, &c, err, sizeof err), SS_E_NOSLOT);
    CHECK_STR(err, "pool full: no free slot");
    CHECK_EQ(ss_stream_close(&a, SS_END_HANGUP), SS_OK);
    CHECK_EQ(ss_stream_open(&p, &call, &c, err, sizeof err), SS_E_NOSLOT); /* CLOSING is not free */
    CHECK_EQ(ss_slot_free(&p, a.idx, a.gen), SS_OK);
    CHECK_EQ(ss_stream_open(&p, &call, &c, err, sizeof err), SS_OK);
    CHECK_EQ(c.idx, 0);
    CHECK_EQ(c.gen, 2);
    ss_pool_detach(&p);
}

/* FREE -> ACTIVE (module) -> CLOSING (module) -> FREE (daemon), and a
 * handle from an earlier generation can no longer touch the slot. */
static void test_stream_life_cycle_and_stale_generations(void)
{
    ss_pool p = live_pool("s5.pool", 1);
    ss_stream old, cur;
    uint32_t gen;
    open_ok(&p, "first", &old);
    CHECK_EQ(ss_stream_close(&old, SS_END_STOP), SS_OK);
    CHECK_EQ(ss_slot_state(old.slot, &gen), SS_SLOT_CLOSING);
    CHECK_EQ(atomic_load(&old.slot->hdr.end_reason), SS_END_STOP);
    CHECK_EQ(ss_stream_close(&old, SS_END_UNLOAD), SS_E_STATE);
    CHECK_EQ(atomic_load(&old.slot->hdr.end_reason), SS_END_STOP); /* the first close's */
    CHECK_EQ(ss_slot_free(&p, old.idx, old.gen + 1), SS_E_STALE);
    CHECK_EQ(ss_slot_free(&p, old.idx, old.gen), SS_OK);
    CHECK_EQ(ss_slot_state(old.slot, &gen), SS_SLOT_FREE);
    CHECK_EQ(ss_slot_free(&p, old.idx, old.gen), SS_E_STATE);
    CHECK_EQ(ss_slot_free(&p, old.idx, old.gen), SS_E_STATE);

    open_ok(&p, "second", &cur);
    CHECK(cur.slot == old.slot);
    CHECK_EQ(cur.gen, old.gen + 1);
    CHECK_EQ(ss_stream_close(&old, SS_END_UNLOAD), SS_E_STALE);
    CHECK_EQ(atomic_load(&cur.slot->hdr.end_reason), SS_END_HANGUP); /* fresh for the new call */
    int16_t pcm[SPF] = {0};
    CHECK_EQ(ss_stream_write(&old, SS_TRACK_IN, 0, pcm, SPF), SS_E_STALE); /* not into cur's ring */
    CHECK_EQ(ss_ring_used(&cur.rings.up[SS_TRACK_IN]), 0);
    CHECK_EQ(ss_slot_free(&p, cur.idx, old.gen), SS_E_STALE);
    CHECK_EQ(ss_slot_state(cur.slot, &gen), SS_SLOT_ACTIVE);
    CHECK_EQ(gen, cur.gen);
    CHECK_EQ(ss_stream_close(&cur, SS_END_HANGUP), SS_OK);
    ss_pool_detach(&p);
}

/* A generation scribbled on while the call runs: writes stop (they would go
 * to "another call"), and the close still hands the slot back, counted as
 * corrupt, so the daemon frees it and the next call gets it. */
static void test_stream_scribbled_generation_is_released(void)
{
    ss_pool p = live_pool("s13.pool", 1);
    ss_stream a, b;
    uint32_t gen;
    int16_t pcm[SPF] = {0};
    open_ok(&p, "victim", &a);
    atomic_store(&a.slot->hdr.generation, a.gen + 77);
    CHECK_EQ(ss_stream_write(&a, SS_TRACK_IN, 0, pcm, SPF), SS_E_STALE);
    CHECK_EQ(ss_stream_close(&a, SS_END_HANGUP), SS_E_CORRUPT);
    CHECK_EQ(ss_slot_state(a.slot, &gen), SS_SLOT_CLOSING);
    CHECK_EQ(gen, a.gen);
    CHECK_EQ(ss_slot_free(&p, a.idx, a.gen), SS_OK);
    open_ok(&p, "next", &b);                                    /* the only slot: not stuck */
    CHECK_EQ(ss_stream_close(&a, SS_END_HANGUP), SS_E_STALE);   /* the old handle cannot touch it */
    CHECK_EQ(ss_stream_close(&b, SS_END_HANGUP), SS_OK);
    ss_pool_detach(&p);
}

/* Whatever the last call left in the rings is gone for the next one. */
static void test_stream_reopen_starts_clean(void)
{
    ss_pool p = live_pool("s6.pool", 1);
    ss_stream a, b;
    int16_t pcm[SPF] = {1};
    open_ok(&p, "a", &a);
    ss_slot_rings d = daemon_rings(&a);
    for (int i = 0; i < 5; i++)
        CHECK_EQ(ss_stream_write(&a, SS_TRACK_IN, 0, pcm, SPF), SS_OK);
    CHECK_EQ(ss_byte_write(&d.down, pcm, sizeof pcm), sizeof pcm);
    CHECK_EQ(ss_rec_write(&d.ctl_out, SS_CTL_MARK, 0, 0, "m", 1, 0), SS_OK);
    CHECK_EQ(ss_stream_post(&a, SS_CTL_PAYLOAD, "{}", 2), SS_OK);
    CHECK_EQ(ss_stream_close(&a, SS_END_HANGUP), SS_OK);
    CHECK_EQ(ss_slot_free(&p, a.idx, a.gen), SS_OK);

    open_ok(&p, "b", &b);
    CHECK_EQ(ss_ring_used(&b.rings.up[SS_TRACK_IN]), 0);
    CHECK_EQ(atomic_load(&b.slot->up[SS_TRACK_IN].seq), 0);
    CHECK_EQ(ss_ring_used(&b.rings.down), 0);
    CHECK_EQ(ss_ring_used(&b.rings.ctl_in), 0);
    CHECK_EQ(ss_ring_used(&b.rings.ctl_out), 0);
    char buf[SS_CTL_MSG_MAX + 1];
    uint16_t type;
    CHECK_EQ(ss_stream_take(&b, &type, buf, sizeof buf), 0);
    CHECK_EQ(ss_stream_read_tts(&b, pcm, SPF), 0);
    ss_pool_detach(&p);
}

static void test_stream_write_frames(void)
{
    ss_pool p = live_pool("s7.pool", 1);
    ss_stream s;
    int16_t pcm[SPF];
    open_ok(&p, "w", &s);
    ss_slot_rings d = daemon_rings(&s);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < SPF; k++)
            pcm[k] = (int16_t)(i * 1000 + k);
        CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 7 + i, pcm, SPF), SS_OK);
    }
    CHECK_EQ(ss_stream_write(&s, SS_TRACK_OUT, 9, pcm, SPF), SS_OK);
    CHECK_EQ(ss_stream_write(&s, SS_TRACKS, 0, pcm, SPF), SS_E_ARG);
    static int16_t big[SS_FRAME_BYTES_MAX / 2 + 1];
    uint32_t most = ss_frame_bytes_max(8000) / 2;               /* 120 ms at the call's rate */
    CHECK_EQ(most, 960);
    CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 0, big, most + 1), SS_E_TOOBIG);
    CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 0, big, SS_FRAME_BYTES_MAX / 2 + 1), SS_E_TOOBIG);
    CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 0, big, most), SS_OK);

    static _Alignas(8) uint8_t out[4 * (SS_FRAME_BYTES_MAX + SS_REC_HDR)];
    uint32_t n;
    uint64_t lost;
    CHECK_EQ(ss_rec_drain(&d.up[SS_TRACK_IN], out, sizeof out, 3, &n, &lost), 3 * (24 + 2 * SPF));
    for (uint32_t i = 0; i < 3; i++) {
        ss_rec h;
        const uint8_t *at = out + i * (24 + 2 * SPF);
        memcpy(&h, at, SS_REC_HDR);
        CHECK_EQ(h.type, SS_REC_AUDIO);
        CHECK_EQ(h.track, SS_TRACK_IN);
        CHECK_EQ(h.seq, i);
        CHECK_EQ(h.ts_ns, 7 + i);
        CHECK_EQ(h.len, 2 * SPF);
        for (int k = 0; k < SPF; k++)
            pcm[k] = (int16_t)(i * 1000 + k);
        CHECK_MEM(at + SS_REC_HDR, pcm, sizeof pcm);
    }
    CHECK_EQ(ss_rec_drain(&d.up[SS_TRACK_OUT], out, sizeof out, 8, &n, &lost), 24 + 2 * SPF);
    ss_rec h;
    memcpy(&h, out, SS_REC_HDR);
    CHECK_EQ(h.track, SS_TRACK_OUT);
    ss_pool_detach(&p);
}

/* CNG: a silence record takes its place in the timeline (the next seq) with
 * the frame's length of zeros, so the daemon treats it as audio. */
static void test_stream_write_silence(void)
{
    ss_pool p = live_pool("s7b.pool", 1);
    ss_stream s;
    int16_t pcm[SPF];
    for (int k = 0; k < SPF; k++)
        pcm[k] = (int16_t)(k + 1);
    open_ok(&p, "w", &s);
    ss_slot_rings d = daemon_rings(&s);
    CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 1, pcm, SPF), SS_OK);
    CHECK_EQ(ss_stream_write_silence(&s, SS_TRACK_IN, 2, SPF), SS_OK);
    CHECK_EQ(ss_stream_write_silence(&s, SS_TRACKS, 2, SPF), SS_E_ARG);
    CHECK_EQ(ss_stream_write_silence(&s, SS_TRACK_IN, 2, SS_FRAME_BYTES_MAX / 2 + 1), SS_E_TOOBIG);

    static _Alignas(8) uint8_t out[4 * (SS_FRAME_BYTES_MAX + SS_REC_HDR)];
    static const int16_t zeros[SPF];
    uint32_t n;
    uint64_t lost;
    CHECK_EQ(ss_rec_drain(&d.up[SS_TRACK_IN], out, sizeof out, 8, &n, &lost), 2 * (24 + 2 * SPF));
    ss_rec h;
    memcpy(&h, out + 24 + 2 * SPF, SS_REC_HDR);
    CHECK_EQ(h.type, SS_REC_SILENCE);
    CHECK_EQ(h.seq, 1);
    CHECK_EQ(h.ts_ns, 2);
    CHECK_EQ(h.len, 2 * SPF);
    CHECK_MEM(out + 24 + 2 * SPF + SS_REC_HDR, zeros, sizeof zeros);
    ss_pool_detach(&p);
}

/* The media-bug fallback's only sign of a CNG frame: the core's 0xFF fill. */
static void test_pcm_is_cng_fill(void)
{
    int16_t pcm[SPF];
    memset(pcm, 0xff, sizeof pcm);
    CHECK(ss_pcm_is_cng_fill(pcm, SPF));
    CHECK(!ss_pcm_is_cng_fill(pcm, 0));
    pcm[SPF - 1] = 0;   /* one real sample anywhere: audio */
    CHECK(!ss_pcm_is_cng_fill(pcm, SPF));
    memset(pcm, 0, sizeof pcm);   /* digital silence the phone sent is audio too */
    CHECK(!ss_pcm_is_cng_fill(pcm, SPF));
}

/* A daemon that does not read: the module never blocks or fails, the
 * oldest frames go, and the count says how many. */
static void test_stream_write_never_blocks(void)
{
    ss_pool p = live_pool("s8.pool", 1);
    ss_stream s;
    int16_t pcm[SPF] = {0};
    open_ok(&p, "nb", &s);
    for (int i = 0; i < 1000; i++)
        CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, 0, pcm, SPF), SS_OK);
    ss_slot_rings d = daemon_rings(&s);
    uint64_t dropped = atomic_load(&s.slot->up[SS_TRACK_IN].dropped);
    CHECK_EQ(dropped, 1000 - ss_up_bytes(8000) / (24 + 2 * SPF));     /* 344-byte records: 762 fit */
    ss_rec h;
    uint64_t first = UINT64_MAX, count = 0, last = 0;
    while (ss_rec_pop(&d.up[SS_TRACK_IN], &h) == 1) {
        first = first == UINT64_MAX ? h.seq : first;
        CHECK(count == 0 || h.seq == last + 1);
        last = h.seq;
        count++;
    }
    CHECK_EQ(count + dropped, 1000);
    CHECK_EQ(first, dropped);
    CHECK_EQ(last, 999);
    ss_pool_detach(&p);
}

static void test_stream_read_tts(void)
{
    ss_pool p = live_pool("s9.pool", 1);
    ss_stream s;
    int16_t tts[2 * SPF], out[SPF], zero[SPF] = {0}, sentinel[SPF];
    for (int k = 0; k < 2 * SPF; k++)
        tts[k] = (int16_t)(k + 1);
    memset(sentinel, 0x55, sizeof sentinel);
    open_ok(&p, "t", &s);
    ss_slot_rings d = daemon_rings(&s);

    memcpy(out, sentinel, sizeof out);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), 0);
    CHECK_MEM(out, sentinel, sizeof out);                       /* left alone: the frame goes out as is */

    CHECK_EQ(ss_byte_write(&d.down, tts, 100 * 2), 200);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), 100);
    CHECK_MEM(out, tts, 100 * 2);
    CHECK_MEM(out + 100, zero, (SPF - 100) * 2);                /* the rest is silence, not old audio */
    CHECK_EQ(atomic_load(&s.slot->down.underruns), 1);

    CHECK_EQ(ss_byte_write(&d.down, tts, sizeof tts), sizeof tts);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), SPF);
    CHECK_MEM(out, tts, sizeof out);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), SPF);
    CHECK_MEM(out, tts + SPF, sizeof out);
    CHECK_EQ(atomic_load(&s.slot->down.underruns), 1);
    ss_pool_detach(&p);
}

/* Paused: nothing is taken (no underrun either), and playback goes on from
 * the same sample; a reopened slot starts unpaused. */
static void test_stream_read_tts_paused(void)
{
    ss_pool p = live_pool("s20.pool", 1);
    ss_stream s;
    int16_t tts[2 * SPF], out[SPF], sentinel[SPF];
    for (int k = 0; k < 2 * SPF; k++)
        tts[k] = (int16_t)(k + 1);
    memset(sentinel, 0x55, sizeof sentinel);
    open_ok(&p, "p", &s);
    ss_slot_rings d = daemon_rings(&s);
    CHECK_EQ(ss_byte_write(&d.down, tts, sizeof tts), sizeof tts);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), SPF);
    CHECK_EQ(ss_stream_tts_queued(&s), SPF * 2);
    atomic_store(&s.slot->hdr.tts_paused, 1);
    CHECK_EQ(ss_stream_tts_queued(&s), 0);                      /* paused: nothing waits to play */
    memcpy(out, sentinel, sizeof out);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), 0);
    CHECK_MEM(out, sentinel, sizeof out);
    CHECK_EQ(ss_ring_used(&d.down), SPF * 2);
    CHECK_EQ(atomic_load(&s.slot->down.underruns), 0);
    atomic_store(&s.slot->hdr.tts_paused, 0);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), SPF);
    CHECK_MEM(out, tts + SPF, sizeof out);

    atomic_store(&s.slot->hdr.tts_paused, 1);
    CHECK_EQ(ss_stream_close(&s, SS_END_HANGUP), SS_OK);
    CHECK_EQ(ss_slot_free(&p, s.idx, s.gen), SS_OK);
    open_ok(&p, "q", &s);
    CHECK_EQ(atomic_load(&s.slot->hdr.tts_paused), 0);
    ss_pool_detach(&p);
}

/* What the module's TTS bug follows: bytes buffered count paused or not
 * (queued does not while paused); the pause is its own answer. */
static void test_stream_tts_buffered_and_paused(void)
{
    ss_pool p = live_pool("s21.pool", 1);
    ss_stream s;
    int16_t tts[SPF] = {1, 2, 3}, out[SPF];
    open_ok(&p, "pend", &s);
    ss_slot_rings d = daemon_rings(&s);
    CHECK_EQ(ss_stream_tts_buffered(&s), 0);
    CHECK_EQ(ss_stream_tts_paused(&s), 0);
    CHECK_EQ(ss_byte_write(&d.down, tts, 2), 2);                /* one sample is enough */
    CHECK_EQ(ss_stream_tts_buffered(&s), 1);
    CHECK_EQ(ss_stream_tts_queued(&s), 2);
    atomic_store(&s.slot->hdr.tts_paused, 1);
    CHECK_EQ(ss_stream_tts_queued(&s), 0);
    CHECK_EQ(ss_stream_tts_buffered(&s), 1);                    /* paused with TTS */
    CHECK_EQ(ss_stream_tts_paused(&s), 1);
    atomic_store(&s.slot->hdr.tts_paused, 0);
    CHECK_EQ(ss_stream_read_tts(&s, out, SPF), 1);
    CHECK_EQ(out[0], 1);
    CHECK_EQ(ss_stream_tts_buffered(&s), 0);                    /* played out */
    CHECK_EQ(ss_stream_tts_queued(&s), 0);
    atomic_store(&s.slot->hdr.tts_paused, 1);
    CHECK_EQ(ss_stream_tts_buffered(&s), 0);                    /* paused, empty */
    CHECK_EQ(ss_stream_tts_paused(&s), 1);
    atomic_store(&s.slot->hdr.tts_paused, 0);
    /* The daemon's Clear moves head, not us: the head seen is behind then,
     * and the answer is still right (and right again once more TTS comes). */
    CHECK_EQ(ss_byte_write(&d.down, tts, sizeof tts), sizeof tts);
    CHECK_EQ(ss_stream_tts_buffered(&s), 1);
    CHECK_EQ(ss_byte_clear(&d.down), sizeof tts);
    CHECK_EQ(ss_stream_tts_buffered(&s), 0);
    CHECK_EQ(ss_stream_tts_buffered(&s), 0);
    CHECK_EQ(ss_byte_write(&d.down, tts, 2), 2);
    CHECK_EQ(ss_stream_tts_buffered(&s), 1);
    ss_pool_detach(&p);
}

static void expect_take(ss_stream *s, uint16_t type, const char *data, size_t len)
{
    static char buf[SS_CTL_MSG_MAX + 1];
    uint16_t got_type = 0;
    CHECK_EQ(ss_stream_take(s, &got_type, buf, sizeof buf), len);
    CHECK_EQ(got_type, type);
    CHECK_MEM(buf, data, len);
    CHECK_EQ(buf[len], '\0');
}

static void test_stream_control_round_trip(void)
{
    ss_pool p = live_pool("s10.pool", 1);
    ss_stream s;
    open_ok(&p, "ctl", &s);
    ss_slot_rings d = daemon_rings(&s);
    const char *json = "{\"customer\":42}";
    const uint8_t dtmf[5] = {'5', 100, 0, 0, 0};
    CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, json, (uint32_t)strlen(json)), SS_OK);
    CHECK_EQ(ss_stream_post(&s, SS_CTL_DTMF, dtmf, sizeof dtmf), SS_OK);
    CHECK_EQ(ss_stream_post(&s, SS_CTL_HANGUP, "x", 1), SS_E_ARG);  /* ctl_in carries only these two */
    static _Alignas(8) uint8_t out[256];
    uint32_t n;
    uint64_t lost;
    long got = ss_rec_drain(&d.ctl_in, out, sizeof out, 8, &n, &lost);
    CHECK_EQ(got, ss_rec_size((uint32_t)strlen(json)) + ss_rec_size(5));
    CHECK_EQ(n, 2);
    ss_rec h;
    memcpy(&h, out, SS_REC_HDR);
    CHECK_EQ(h.type, SS_CTL_PAYLOAD);
    CHECK_EQ(h.len, strlen(json));
    CHECK_MEM(out + SS_REC_HDR, json, h.len);
    memcpy(&h, out + ss_rec_size(h.len), SS_REC_HDR);
    CHECK_EQ(h.type, SS_CTL_DTMF);
    CHECK_EQ(h.seq, 1);
    CHECK_MEM(out + ss_rec_size((uint32_t)strlen(json)) + SS_REC_HDR, dtmf, 5);

    static char big[SS_CTL_MSG_MAX];
    memset(big, 'x', sizeof big);
    CHECK_EQ(ss_rec_write(&d.ctl_out, SS_CTL_HANGUP, 0, 0, "NORMAL_CLEARING", 15, 0), SS_OK);
    CHECK_EQ(ss_rec_write(&d.ctl_out, SS_CTL_EVENT, 0, 0, "{\"name\":\"x\"}", 12, 0), SS_OK);
    CHECK_EQ(ss_rec_write(&d.ctl_out, SS_CTL_MARK, 0, 0, big, sizeof big, 0), SS_OK);
    expect_take(&s, SS_CTL_HANGUP, "NORMAL_CLEARING", 15);
    expect_take(&s, SS_CTL_EVENT, "{\"name\":\"x\"}", 12);
    expect_take(&s, SS_CTL_MARK, big, sizeof big);
    uint16_t type;
    char small[SS_CTL_MSG_MAX];
    CHECK_EQ(ss_stream_take(&s, &type, small, sizeof small), SS_E_ARG); /* cap must fit the largest */
    static char buf[SS_CTL_MSG_MAX + 1];
    CHECK_EQ(ss_rec_write(&d.ctl_out, SS_CTL_MARK, 0, 0, "", 0, 0), SS_OK);
    expect_take(&s, SS_CTL_MARK, "", 0);                        /* empty, but there */
    type = SS_CTL_ERROR;
    CHECK_EQ(ss_stream_take(&s, &type, buf, sizeof buf), 0);    /* none left: type says so too */
    CHECK_EQ(type, SS_REC_PAD);
    ss_pool_detach(&p);
}

/* A daemon that stops reading control messages: the module is told, not silently dropped. */
static void test_stream_control_ring_full(void)
{
    ss_pool p = live_pool("s11.pool", 1);
    ss_stream s;
    static char big[SS_CTL_MSG_MAX];
    open_ok(&p, "full", &s);
    ss_slot_rings d = daemon_rings(&s);
    for (int i = 0; i < 2; i++)                                 /* 2 x 8192 of 16384 */
        CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, big, sizeof big), SS_OK);
    CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, big, sizeof big), SS_E_FULL);
    CHECK_EQ(atomic_load(&s.slot->ctl_in.rejected), 1);
    CHECK_EQ(atomic_load(&s.slot->ctl_in.dropped), 0);
    ss_rec h;
    CHECK_EQ(ss_rec_pop(&d.ctl_in, &h), 1);
    CHECK_EQ(h.seq, 0);
    CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, big, sizeof big), SS_OK);
    while (ss_rec_pop(&d.ctl_in, &h) == 1)
        ;
    /* Emptied at any position, the ring takes the largest message (a pad to
     * its end is always shorter than the record). */
    for (uint32_t shift = 0; shift < SS_CTL_BYTES; shift += 8 * 127) {
        CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, big, shift % SS_CTL_MSG_MAX), SS_OK);
        CHECK_EQ(ss_rec_pop(&d.ctl_in, &h), 1);
        CHECK_EQ(ss_stream_post(&s, SS_CTL_PAYLOAD, big, sizeof big), SS_OK);
        while (ss_rec_pop(&d.ctl_in, &h) == 1)
            ;
    }
    ss_pool_detach(&p);
}

static void test_stream_link_and_resume(void)
{
    ss_pool p = live_pool("s12.pool", 1);
    ss_stream s;
    open_ok(&p, "l", &s);
    CHECK_EQ(ss_slot_attach(s.slot, s.gen), 0);                 /* first stream for this call */
    CHECK_EQ(ss_slot_attach(s.slot, s.gen), 1);                 /* a restarted daemon resumes */
    ss_slot_set_link(s.slot, s.gen, SS_LINK_STREAMING);
    CHECK_EQ(ss_stream_link(&s), SS_LINK_STREAMING);
    ss_slot_set_link(s.slot, s.gen + 1, SS_LINK_FAILED);        /* another call's news */
    CHECK_EQ(ss_stream_link(&s), SS_LINK_STREAMING);
    ss_pool_detach(&p);
}

const check_case stream_cases[] = {
    CASE(test_stream_open_needs_a_daemon),
    CASE(test_stream_open_without_daemon),
    CASE(test_stream_open_rejects_bad_calls),
    CASE(test_stream_open_publishes_the_call),
    CASE(test_stream_pool_full),
    CASE(test_stream_life_cycle_and_stale_generations),
    CASE(test_stream_scribbled_generation_is_released),
    CASE(test_stream_reopen_starts_clean),
    CASE(test_stream_write_frames),
    CASE(test_stream_write_silence),
    CASE(test_pcm_is_cng_fill),
    CASE(test_stream_write_never_blocks),
    CASE(test_stream_read_tts),
    CASE(test_stream_read_tts_paused),
    CASE(test_stream_tts_buffered_and_paused),
    CASE(test_stream_control_round_trip),
    CASE(test_stream_control_ring_full),
    CASE(test_stream_link_and_resume),
    {0, 0},
};
