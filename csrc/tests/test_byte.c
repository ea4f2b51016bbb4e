/* test_byte.c: the byte ring that carries TTS PCM down, one thread. */
#include "check.h"

#define CAP 64u

static void ramp(uint8_t *p, uint32_t n, uint8_t from)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = (uint8_t)(from + i);
}

static uint64_t underruns(const ss_ringv *v) { return atomic_load(&v->r->underruns); }

static void test_byte_round_trip(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[10], out[10];
    ramp(in, 10, 1);
    CHECK_EQ(ss_byte_write(&v, in, 10), 10);
    CHECK_EQ(ss_ring_used(&v), 10);
    CHECK_EQ(ss_byte_read(&v, out, 10), 10);
    CHECK_MEM(out, in, 10);
    CHECK_EQ(ss_ring_used(&v), 0);
    CHECK_EQ(underruns(&v), 0);
    ring_free(&v);
}

static void test_byte_wrap(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[48], out[48];
    ramp(in, 48, 0);
    CHECK_EQ(ss_byte_write(&v, in, 48), 48);
    CHECK_EQ(ss_byte_read(&v, out, 48), 48);
    ramp(in, 40, 100);
    CHECK_EQ(ss_byte_write(&v, in, 40), 40);                      /* 16 at the end, 24 at the start */
    CHECK_MEM(v.data + 48, in, 16);
    CHECK_MEM(v.data, in + 16, 24);
    CHECK_EQ(ss_byte_read(&v, out, 40), 40);
    CHECK_MEM(out, in, 40);
    CHECK_EQ(ss_ring_head(&v), 88);
    ring_free(&v);
}

static void test_byte_full_never_overwrites(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[100], out[CAP];
    ramp(in, 100, 0);
    CHECK_EQ(ss_byte_write(&v, in, 100), CAP);
    CHECK_EQ(ss_byte_write(&v, in, 2), 0);
    CHECK_EQ(ss_byte_read(&v, out, CAP), CAP);
    CHECK_MEM(out, in, CAP);
    CHECK_EQ(atomic_load(&v.r->dropped), 0);
    ring_free(&v);
}

/* A short read with some data is an underrun; an empty ring is just silence. */
static void test_byte_short_read_counts_underrun(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[6], out[10];
    ramp(in, 6, 7);
    CHECK_EQ(ss_byte_write(&v, in, 6), 6);
    CHECK_EQ(ss_byte_read(&v, out, 10), 6);
    CHECK_MEM(out, in, 6);
    CHECK_EQ(underruns(&v), 1);
    CHECK_EQ(ss_byte_read(&v, out, 10), 0);
    CHECK_EQ(underruns(&v), 1);
    ring_free(&v);
}

static void test_byte_clear_discards(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[20] = {0}, out[20];
    CHECK_EQ(ss_byte_clear(&v), 0);
    CHECK_EQ(ss_byte_write(&v, in, 20), 20);
    CHECK_EQ(ss_byte_read(&v, out, 4), 4);
    CHECK_EQ(ss_byte_clear(&v), 16);
    CHECK_EQ(ss_ring_used(&v), 0);
    CHECK_EQ(ss_byte_read(&v, out, 4), 0);
    CHECK_EQ(ss_byte_write(&v, in, 20), 20);                      /* and it goes on working */
    CHECK_EQ(ss_ring_used(&v), 20);
    ring_free(&v);
}

/* PCM16 only ever moves whole samples, on either side. */
static void test_byte_odd_lengths_round_down(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t in[8], out[8];
    ramp(in, 8, 1);
    CHECK_EQ(ss_byte_write(&v, in, 5), 4);
    CHECK_EQ(ss_byte_write(&v, in + 4, 1), 0);
    CHECK_EQ(ss_byte_write(&v, in + 4, 4), 4);
    CHECK_EQ(ss_ring_used(&v), 8);
    CHECK_EQ(ss_byte_read(&v, out, 3), 2);
    CHECK_EQ(ss_byte_read(&v, out + 2, 1), 0);
    CHECK_EQ(ss_byte_read(&v, out + 2, 6), 6);
    CHECK_MEM(out, in, 8);
    CHECK_EQ(underruns(&v), 0);                                   /* whole samples asked, whole samples got */
    ring_free(&v);
}

static void test_byte_corrupt_positions_play_nothing(void)
{
    ss_ringv v = ring_new(CAP, 0);
    uint8_t buf[8] = {0};
    atomic_store(&v.r->tail, CAP + 2);
    CHECK_EQ(ss_byte_read(&v, buf, 8), 0);
    CHECK_EQ(ss_byte_write(&v, buf, 8), 0);
    CHECK_EQ(ss_byte_clear(&v), CAP + 2);                         /* the producer's way out */
    CHECK_EQ(ss_byte_write(&v, buf, 8), 8);
    CHECK_EQ(ss_byte_read(&v, buf, 8), 8);
    ring_free(&v);
}

const check_case byte_cases[] = {
    CASE(test_byte_round_trip),
    CASE(test_byte_wrap),
    CASE(test_byte_full_never_overwrites),
    CASE(test_byte_short_read_counts_underrun),
    CASE(test_byte_clear_discards),
    CASE(test_byte_odd_lengths_round_down),
    CASE(test_byte_corrupt_positions_play_nothing),
    {0, 0},
};
