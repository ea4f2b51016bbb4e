/* test_threads.c: a producer and a consumer on two threads, the consumer
 * slow on purpose so the producer drops (record ring) or clears (byte ring)
 * under it. The threads only count; the checks run on the runner's thread. */
#include <pthread.h>
#include "check.h"

#define RECORDS 100000u
#define REC_CAP 16384u
#define REC_MAX 480u
#define WORDS   400000u     /* uint32 counters through the byte ring */
#define BYTE_CAP 4096u

typedef struct shared {
    ss_ringv v;
    atomic_int done;        /* producer finished */
    uint64_t produced;      /* records, or bytes */
    uint64_t cleared;       /* byte ring: bytes discarded by ss_byte_clear */
    uint64_t received;
    uint64_t bad;           /* records or words that were not what was written */
} shared;

/* Slow, but awake: a sleeping consumer would rarely be caught mid-commit. */
static void dawdle(unsigned spins)
{
    for (volatile unsigned i = 0; i < spins; i++)
        ;
}

static void *rec_producer(void *arg)
{
    shared *sh = arg;
    for (uint64_t i = 0; i < RECORDS; i++)
        if (put_rec(&sh->v, (uint32_t)(i * 37 % (REC_MAX + 1)), 1) == SS_OK)
            sh->produced++;
    atomic_store(&sh->done, 1);
    return NULL;
}

static void *rec_consumer(void *arg)
{
    shared *sh = arg;
    static _Alignas(8) uint8_t out[4096];
    uint64_t last = 0;
    for (unsigned round = 0;; round++) {
        int done = atomic_load(&sh->done);
        uint32_t n;
        uint64_t lost;
        long got = ss_rec_drain(&sh->v, out, sizeof out, 2, &n, &lost);
        if (got < 0 && got != SS_E_BUSY)
            sh->bad++;
        if (got <= 0 && done)
            break;
        for (long at = 0; at < got;) {
            ss_rec h;
            memcpy(&h, out + at, SS_REC_HDR);
            sh->bad += !rec_ok(&h, out + at + SS_REC_HDR) || (sh->received && h.seq <= last);
            last = h.seq;
            sh->received++;
            at += (long)ss_rec_size(h.len);
        }
        dawdle(round % 64 ? 200 : 20000);
    }
    return NULL;
}

/* Every record the consumer gets is intact and newer than the last, and
 * received + dropped == written, exactly. */
static void test_threads_rec_drop_oldest(void)
{
    shared sh = {.v = ring_new(REC_CAP, REC_MAX)};
    pthread_t p, c;
    CHECK_EQ(pthread_create(&c, NULL, rec_consumer, &sh), 0);
    CHECK_EQ(pthread_create(&p, NULL, rec_producer, &sh), 0);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    uint64_t dropped = atomic_load(&sh.v.r->dropped);
    CHECK_EQ(sh.bad, 0);
    CHECK_EQ(sh.produced, RECORDS);
    CHECK_EQ(sh.received + dropped, RECORDS);
    CHECK(dropped > 0);             /* the consumer really was too slow */
    CHECK(sh.received > 0);
    CHECK_EQ(ss_ring_used(&sh.v), 0);
    ring_free(&sh.v);
}

/* Writes and barge-in clears race the reader. Sizes are multiples of 4, so
 * every position is and a read never splits a counter. */
static void *byte_producer(void *arg)
{
    shared *sh = arg;
    uint32_t chunk[64], next = 0, since_clear = 0;
    while (next < WORDS) {
        uint32_t n = 1 + next % 61 < WORDS - next ? 1 + next % 61 : WORDS - next;
        for (uint32_t i = 0; i < n; i++)
            chunk[i] = next + i;
        uint32_t put = ss_byte_write(&sh->v, chunk, n * 4) / 4; /* 0 while full: the reader paces us */
        next += put;
        since_clear += put;
        sh->produced += put * 4;
        if (since_clear >= 3000) {
            sh->cleared += ss_byte_clear(&sh->v);
            since_clear = 0;
        }
    }
    atomic_store(&sh->done, 1);
    return NULL;
}

static void *byte_consumer(void *arg)
{
    shared *sh = arg;
    uint32_t buf[48];
    int64_t last = -1;
    for (unsigned round = 0;; round++) {
        int done = atomic_load(&sh->done);
        uint32_t got = ss_byte_read(&sh->v, buf, sizeof buf) / 4;
        if (!got && done)
            break;
        for (uint32_t i = 0; i < got; i++) {
            /* within a read consecutive; across reads forward (a clear may skip) */
            sh->bad += i ? buf[i] != buf[i - 1] + 1 : (int64_t)buf[0] <= last;
        }
        if (got)
            last = buf[got - 1];
        sh->received += got * 4;
        dawdle(round % 64 ? 50 : 5000);
    }
    return NULL;
}

static void test_threads_byte_clear_races_read(void)
{
    shared sh = {.v = ring_new(BYTE_CAP, 0)};
    pthread_t p, c;
    CHECK_EQ(pthread_create(&c, NULL, byte_consumer, &sh), 0);
    CHECK_EQ(pthread_create(&p, NULL, byte_producer, &sh), 0);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    CHECK_EQ(sh.bad, 0);
    CHECK_EQ(sh.produced, WORDS * 4ull);
    CHECK_EQ(sh.received + sh.cleared, sh.produced);
    CHECK(sh.cleared > 0);
    CHECK(sh.received > 0);
    ring_free(&sh.v);
}

/* A consumer that keeps moving head back to "full" (a buggy or hostile
 * daemon) against the producer, FreeSWITCH's media thread: every write
 * returns, written or refused, and each refusal is counted. The payload reads
 * as empty records where head lands in it, so a write needs many small drops.
 * How often the rewinder wins depends on scheduling; the bound itself is
 * checked exactly in test_ring.c (test_rec_drop_bound_admits_the_worst_honest_ring). */
static void *rewinder(void *arg)
{
    shared *sh = arg;
    while (!atomic_load(&sh->done)) {
        uint64_t t = atomic_load(&sh->v.r->tail);
        atomic_store(&sh->v.r->head, t - sh->v.cap + SS_REC_HDR);
    }
    return NULL;
}

#define HOSTILE_CAP 65536u
#define HOSTILE_LEN 16000u  /* a write needs some 670 drops in a row */

static void test_threads_drop_loop_bounded_by_hostile_consumer(void)
{
    shared sh = {.v = ring_new(HOSTILE_CAP, HOSTILE_LEN)};
    static _Alignas(8) uint8_t payload[HOSTILE_LEN];
    const ss_rec empty = {.len = 0, .type = SS_REC_AUDIO};
    for (uint32_t at = 0; at + 8 <= HOSTILE_LEN; at += 8)
        memcpy(payload + at, &empty, 8);
    while (ss_ring_used(&sh.v) + ss_rec_size(HOSTILE_LEN) <= HOSTILE_CAP)
        CHECK_EQ(ss_rec_write(&sh.v, SS_REC_AUDIO, 0, 0, payload, HOSTILE_LEN, 0), SS_OK);
    pthread_t r;
    uint64_t ok = 0, refused = 0;
    CHECK_EQ(pthread_create(&r, NULL, rewinder, &sh), 0);
    for (uint32_t i = 0; i < 2000; i++) {
        int rc = ss_rec_write(&sh.v, SS_REC_AUDIO, 0, 0, payload, HOSTILE_LEN, 1);
        ok += rc == SS_OK;
        refused += rc == SS_E_BUSY || rc == SS_E_CORRUPT;   /* head rewound past a new tail */
    }
    atomic_store(&sh.done, 1);
    pthread_join(r, NULL);
    CHECK_EQ(ok + refused, 2000);               /* nothing else, and every call returned */
    CHECK_EQ(atomic_load(&sh.v.r->rejected), refused);
    ring_free(&sh.v);
}

const check_case thread_cases[] = {
    CASE(test_threads_drop_loop_bounded_by_hostile_consumer),
    CASE(test_threads_rec_drop_oldest),
    CASE(test_threads_byte_clear_races_read),
    {0, 0},
};
