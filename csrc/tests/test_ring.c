/* test_ring.c: the record ring (audio up, control both ways), one thread. */
#include <stdlib.h>
#include "check.h"

#define CAP 1024u
#define MAX 480u    /* a record plus the PAD before it must fit the ring, as ss_layout.h asserts */

/* Records of len 100 take 128 bytes: eight fill CAP exactly. */
#define LEN128 100u

static void check_seqs(const uint64_t *seqs, uint32_t n, uint64_t first)
{
    for (uint32_t i = 0; i < n; i++)
        CHECK_EQ(seqs[i], first + i);
}

/* Exactly `dropped` records went; the n newest survive, in order from first. */
static void expect_survivors(const ss_ringv *v, uint64_t dropped, uint32_t n, uint64_t first)
{
    uint64_t seqs[16];
    CHECK_EQ(atomic_load(&v->r->dropped), dropped);
    CHECK_EQ(take_all(v, seqs, 16), n);
    check_seqs(seqs, n, first);
}

static void expect_only(const ss_ringv *v, uint64_t seq)
{
    uint64_t seqs[1];
    CHECK_EQ(take_all(v, seqs, 1), 1);
    CHECK_EQ(seqs[0], seq);
}

static void fill_128(const ss_ringv *v, int n)
{
    for (int i = 0; i < n; i++)
        CHECK_EQ(put_rec(v, LEN128, 0), SS_OK);
}

static void test_rec_round_trip(void)
{
    static const uint32_t lens[] = {0, 1, 7, 8, 100, 256};
    ss_ringv v = ring_new(CAP, MAX);
    uint8_t payload[256], out[CAP];
    uint64_t want_bytes = 0;
    for (uint32_t i = 0; i < 6; i++) {
        rec_fill(payload, lens[i], i);
        CHECK_EQ(ss_rec_write(&v, SS_REC_AUDIO, (uint16_t)(i & 1), i * 1000, payload, lens[i], 0),
                 SS_OK);
        want_bytes += ss_rec_size(lens[i]);
    }
    CHECK_EQ(want_bytes, 6 * 24 + 0 + 8 + 8 + 8 + 104 + 256);
    CHECK_EQ(ss_ring_used(&v), want_bytes);
    uint32_t n;
    uint64_t lost;
    CHECK_EQ(ss_rec_drain(&v, out, sizeof out, 100, &n, &lost), want_bytes);
    CHECK_EQ(n, 6);
    CHECK_EQ(lost, 0);
    uint64_t at = 0;
    for (uint32_t i = 0; i < 6; i++) {
        ss_rec h;
        memcpy(&h, out + at, SS_REC_HDR);
        CHECK_EQ(h.len, lens[i]);
        CHECK_EQ(h.type, SS_REC_AUDIO);
        CHECK_EQ(h.track, i & 1);
        CHECK_EQ(h.seq, i);
        CHECK(rec_ok(&h, out + at + SS_REC_HDR));
        at += ss_rec_size(h.len);
    }
    CHECK_EQ(ss_ring_used(&v), 0);
    CHECK_EQ(ss_rec_drain(&v, out, sizeof out, 100, &n, &lost), 0);
    CHECK_EQ(n, 0);
    ring_free(&v);
}

static void test_rec_drain_limits(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    _Alignas(8) uint8_t out[CAP];
    uint32_t n;
    uint64_t lost;
    fill_128(&v, 4);
    CHECK_EQ(ss_rec_drain(&v, out, sizeof out, 2, &n, &lost), 256); /* max_recs */
    CHECK_EQ(n, 2);
    CHECK_EQ(ss_ring_head(&v), 256);
    CHECK_EQ(ss_rec_drain(&v, out, 127, 10, &n, &lost), 0);          /* nothing fits */
    CHECK_EQ(n, 0);
    CHECK_EQ(ss_ring_head(&v), 256);
    CHECK_EQ(ss_rec_drain(&v, out, 200, 10, &n, &lost), 128);        /* one of two fits */
    CHECK_EQ(n, 1);
    ss_rec h;
    memcpy(&h, out, SS_REC_HDR);
    CHECK_EQ(h.seq, 2);
    expect_only(&v, 3);
    ring_free(&v);
}

/* A record that does not fit before the end gets a PAD record in front. */
static void test_rec_wrap_with_pad(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    uint64_t seqs[8];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(put_rec(&v, 200, 0), SS_OK);                     /* 4 x 224 = 896 */
    CHECK_EQ(take_all(&v, seqs, 8), 4);
    CHECK_EQ(put_rec(&v, 200, 0), SS_OK);                         /* 128 left: PAD */
    ss_rec pad;
    memcpy(&pad, v.data + 896, SS_REC_HDR);
    CHECK_EQ(pad.type, SS_REC_PAD);
    CHECK_EQ(pad.len, 128 - 24);
    CHECK_EQ(atomic_load(&v.r->tail), 896 + 128 + 224);
    CHECK_EQ(ss_ring_used(&v), 128 + 224);
    expect_only(&v, 4);
    CHECK_EQ(ss_ring_head(&v), 1248);
    ring_free(&v);
}

/* Fewer than 24 bytes before the end: skipped with no header at all; and a
 * record that ends exactly at the end needs no skip. */
static void test_rec_wrap_with_implicit_skip(void)
{
    ss_ringv v = ring_new(CAP, 968);        /* the last record fills the ring from offset 32 */
    uint64_t seqs[8];
    CHECK_EQ(put_rec(&v, 480, 0), SS_OK);
    CHECK_EQ(put_rec(&v, 480, 0), SS_OK);                         /* 2 x 504: 16 left */
    CHECK_EQ(take_all(&v, seqs, 8), 2);
    memset(v.data + 1008, 0xff, 16);                              /* no header may be read there */
    CHECK_EQ(put_rec(&v, 8, 0), SS_OK);
    CHECK_EQ(atomic_load(&v.r->tail), 1008 + 16 + 32);
    uint8_t ff[16];
    memset(ff, 0xff, sizeof ff);
    CHECK_MEM(v.data + 1008, ff, 16);
    expect_only(&v, 2);
    CHECK_EQ(put_rec(&v, 968, 0), SS_OK);                         /* 992: exactly to the end */
    CHECK_EQ(atomic_load(&v.r->tail), 2048);
    CHECK_EQ(put_rec(&v, 0, 0), SS_OK);
    CHECK_EQ(atomic_load(&v.r->tail), 2048 + 24);
    CHECK_EQ(take_all(&v, seqs, 8), 2);
    check_seqs(seqs, 2, 3);
    ring_free(&v);
}

static void test_rec_drop_oldest_counts_exactly(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    fill_128(&v, 8);
    CHECK_EQ(ss_ring_used(&v), CAP);
    CHECK_EQ(atomic_load(&v.r->dropped), 0);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(put_rec(&v, LEN128, 1), SS_OK);
    CHECK_EQ(atomic_load(&v.r->rejected), 0);
    expect_survivors(&v, 3, 8, 3);
    ring_free(&v);
}

static void test_rec_big_record_drops_several(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    fill_128(&v, 8);
    CHECK_EQ(put_rec(&v, 232, 1), SS_OK);                         /* 256 bytes: two go */
    expect_survivors(&v, 2, 7, 2);
    ring_free(&v);
}

/* The drop loop is bounded (a hostile consumer must not keep the media
 * thread in it), yet the worst honest ring, all empty records, still makes
 * room for the biggest record: 21 drops of 24 bytes after a 16-byte skip. */
static void test_rec_drop_bound_admits_the_worst_honest_ring(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    for (int i = 0; i < 42; i++)
        CHECK_EQ(put_rec(&v, 0, 0), SS_OK);
    CHECK_EQ(put_rec(&v, MAX, 1), SS_OK);
    CHECK_EQ(atomic_load(&v.r->rejected), 0);
    CHECK_EQ(atomic_load(&v.r->dropped), 21);
    uint64_t seqs[22];
    CHECK_EQ(take_all(&v, seqs, 22), 22);
    check_seqs(seqs, 22, 21);
    ring_free(&v);
}

/* Dropping walks over PAD records without counting them as records. */
static void test_rec_drop_across_pad(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    for (int i = 0; i < 9; i++)
        CHECK_EQ(put_rec(&v, 200, 1), SS_OK);
    expect_survivors(&v, 5, 4, 5);
    ring_free(&v);
}

static void test_rec_full_without_drop(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    fill_128(&v, 8);
    CHECK_EQ(put_rec(&v, LEN128, 0), SS_E_FULL);
    CHECK_EQ(put_rec(&v, 0, 0), SS_E_FULL);
    CHECK_EQ(atomic_load(&v.r->rejected), 2);
    CHECK_EQ(atomic_load(&v.r->seq), 8);                          /* refused writes take no seq */
    CHECK_EQ(atomic_load(&v.r->tail), CAP);
    expect_survivors(&v, 0, 8, 0);
    CHECK_EQ(put_rec(&v, LEN128, 0), SS_OK);
    expect_only(&v, 8);
    ring_free(&v);
}

static void test_rec_too_big_or_pad_type(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    uint8_t buf[MAX + 1] = {0};
    fill_128(&v, 8);                       /* full: a refused record must not drop anything */
    CHECK_EQ(ss_rec_write(&v, SS_REC_AUDIO, 0, 0, buf, MAX + 1, 1), SS_E_TOOBIG);
    CHECK_EQ(ss_rec_write(&v, SS_REC_PAD, 0, 0, buf, 8, 1), SS_E_ARG);
    CHECK_EQ(atomic_load(&v.r->rejected), 2);
    CHECK_EQ(atomic_load(&v.r->dropped), 0);
    CHECK_EQ(ss_ring_used(&v), CAP);
    CHECK_EQ(ss_rec_write(&v, SS_REC_AUDIO, 0, 0, buf, MAX, 1), SS_OK);
    ring_free(&v);
}

/* Each way a header can lie: the consumer throws away everything published,
 * says how much, and the ring works again. */
static void test_rec_corrupt_header(void)
{
    enum { BIG_LEN, BAD_PAD, PAST_TAIL, KINDS };
    for (int kind = 0; kind < KINDS; kind++) {
        ss_ringv v = ring_new(CAP, MAX);
        uint8_t out[CAP];
        uint64_t lost;
        uint32_t n;
        fill_128(&v, 3);
        ss_rec h;
        memcpy(&h, v.data + 128, SS_REC_HDR);                     /* the second record */
        if (kind == BIG_LEN)
            h.len = 0x7ffffff0u;
        else if (kind == BAD_PAD)
            h.type = SS_REC_PAD;                                  /* len does not reach the end */
        else
            h.len = 200;                                          /* 224 bytes, 256 published */
        memcpy(v.data + 128, &h, SS_REC_HDR);
        CHECK_EQ(ss_rec_drain(&v, out, sizeof out, 10, &n, &lost), SS_E_CORRUPT);
        CHECK_EQ(lost, 384);
        CHECK_EQ(n, 0);
        CHECK_EQ(ss_ring_used(&v), 0);
        CHECK_EQ(put_rec(&v, LEN128, 0), SS_OK);
        expect_only(&v, 3);
        ring_free(&v);
    }
}

static void test_rec_corrupt_positions(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    uint8_t out[CAP];
    uint64_t lost;
    uint32_t n;
    atomic_store(&v.r->tail, CAP + 64);                           /* tail - head > cap */
    CHECK_EQ(put_rec(&v, LEN128, 1), SS_E_CORRUPT);               /* the producer will not guess */
    CHECK_EQ(atomic_load(&v.r->rejected), 1);
    CHECK_EQ(ss_rec_drain(&v, out, sizeof out, 10, &n, &lost), SS_E_CORRUPT);
    CHECK_EQ(lost, CAP);                                          /* a ring can lose no more */
    CHECK_EQ(ss_ring_head(&v), CAP + 64);
    CHECK_EQ(put_rec(&v, LEN128, 1), SS_OK);
    expect_only(&v, 0);
    ring_free(&v);
}

/* A full ring whose oldest header is garbage: the producer cannot tell how
 * many records that region held, so it discards it all, uncounted. */
static void test_rec_drop_over_scribbled_oldest(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    fill_128(&v, 8);
    memset(v.data, 0xee, SS_REC_HDR);
    CHECK_EQ(put_rec(&v, LEN128, 1), SS_OK);
    CHECK_EQ(atomic_load(&v.r->dropped), 0);
    expect_only(&v, 8);
    ring_free(&v);
}

/* Positions are free-running: crossing 2^64 changes nothing. */
static void test_rec_positions_cross_2_64(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    uint64_t start = UINT64_MAX - 511, seqs[8], seq = 0;
    atomic_store(&v.r->head, start);
    atomic_store(&v.r->tail, start);
    for (int round = 0; round < 40; round++) {
        for (int i = 0; i < 3; i++)
            CHECK_EQ(put_rec(&v, 8 * (uint32_t)(round % 12), 1), SS_OK); /* 3 always fit */
        CHECK_EQ(take_all(&v, seqs, 8), 3);
        check_seqs(seqs, 3, seq);
        seq += 3;
    }
    CHECK(ss_ring_head(&v) < start);                              /* it did wrap */
    CHECK_EQ(atomic_load(&v.r->dropped), 0);
    ring_free(&v);
}

/* Random lengths, random drain sizes, drop-oldest: whatever survives comes
 * out intact and in order, and nothing goes missing uncounted. */
static void test_rec_random_traffic(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    static _Alignas(8) uint8_t out[CAP];
    uint64_t rng = 0x9e3779b97f4a7c15ull, written = 0, received = 0, last = 0;
    for (int op = 0; op < 20000; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(rng >> 33);
        if (r % 3) {
            CHECK_EQ(put_rec(&v, r % (MAX + 1), 1), SS_OK);
            written++;
            continue;
        }
        uint32_t n;
        uint64_t lost;
        long got = ss_rec_drain(&v, out, r % sizeof out, 1 + r % 5, &n, &lost);
        CHECK(got >= 0);
        for (long at = 0; at < got;) {
            ss_rec h;
            memcpy(&h, out + at, SS_REC_HDR);
            CHECK(rec_ok(&h, out + at + SS_REC_HDR));
            CHECK(received == 0 || h.seq > last);
            last = h.seq;
            received++;
            at += (long)ss_rec_size(h.len);
        }
    }
    uint64_t seqs[1];
    received += take_all(&v, seqs, 0);
    CHECK(atomic_load(&v.r->dropped) > 0);
    CHECK_EQ(received + atomic_load(&v.r->dropped), written);
    ring_free(&v);
}

/* ss_rec_next walks without consuming (the daemon's resume window); ss_rec_pop consumes. */
static void test_rec_next_and_pop(void)
{
    ss_ringv v = ring_new(CAP, MAX);
    uint64_t seqs[4];
    for (int i = 0; i < 4; i++)
        CHECK_EQ(put_rec(&v, 200, 0), SS_OK);
    CHECK_EQ(take_all(&v, seqs, 4), 4);
    for (int i = 0; i < 3; i++)
        CHECK_EQ(put_rec(&v, 200, 0), SS_OK);                     /* the first behind a PAD */
    uint64_t pos = ss_ring_head(&v);
    ss_rec h;
    const uint8_t *payload;
    for (uint64_t want = 4; want < 7; want++) {
        CHECK_EQ(ss_rec_next(&v, &pos, &h, &payload), 1);
        CHECK_EQ(h.seq, want);
        CHECK(rec_ok(&h, payload));
    }
    CHECK_EQ(ss_rec_next(&v, &pos, &h, &payload), 0);
    CHECK_EQ(pos, atomic_load(&v.r->tail));
    CHECK_EQ(ss_ring_head(&v), 896);                              /* nothing consumed */
    CHECK_EQ(ss_rec_pop(&v, &h), 1);
    CHECK_EQ(h.seq, 4);
    CHECK_EQ(ss_ring_head(&v), 1248);
    memset(v.data + 224, 0xee, SS_REC_HDR);                       /* scribble seq 5 */
    pos = ss_ring_head(&v);
    CHECK_EQ(ss_rec_next(&v, &pos, &h, &payload), SS_E_CORRUPT);
    CHECK_EQ(ss_rec_pop(&v, &h), SS_E_CORRUPT);
    ring_free(&v);
}

const check_case ring_cases[] = {
    CASE(test_rec_round_trip),
    CASE(test_rec_drain_limits),
    CASE(test_rec_wrap_with_pad),
    CASE(test_rec_wrap_with_implicit_skip),
    CASE(test_rec_drop_oldest_counts_exactly),
    CASE(test_rec_big_record_drops_several),
    CASE(test_rec_drop_bound_admits_the_worst_honest_ring),
    CASE(test_rec_drop_across_pad),
    CASE(test_rec_full_without_drop),
    CASE(test_rec_too_big_or_pad_type),
    CASE(test_rec_corrupt_header),
    CASE(test_rec_corrupt_positions),
    CASE(test_rec_drop_over_scribbled_oldest),
    CASE(test_rec_positions_cross_2_64),
    CASE(test_rec_random_traffic),
    CASE(test_rec_next_and_pop),
    {0, 0},
};
