/*
 * check.h: a tiny test framework. A failed CHECK prints file:line and the
 * values, then longjmps back to the runner, which goes on with the next
 * case. Checks must run on the runner's thread: threads hand results back.
 */
#ifndef CHECK_H
#define CHECK_H

#include <stdint.h>
#include <string.h>
#include "ss_ring.h"

typedef struct check_case {
    const char *name;
    void (*fn)(void);
} check_case;
#define CASE(fn) {#fn, fn}

/* Each test file defines one NULL-terminated suite. */
extern const check_case ring_cases[], byte_cases[], thread_cases[], pool_cases[],
    stream_cases[], wav_cases[], private_cases[], action_cases[];

_Noreturn void check_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond))                                                                  \
            check_fail(__FILE__, __LINE__, "%s", #cond);                              \
    } while (0)
/* Integers of any width and sign; both sides are compared as 64-bit patterns. */
#define CHECK_EQ(a, b)                                                                \
    do {                                                                              \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                              \
        if (a_ != b_)                                                                 \
            check_fail(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b,          \
                       (long long)a_, (long long)b_);                                 \
    } while (0)
#define CHECK_STR(a, b)                                                               \
    do {                                                                              \
        const char *a_ = (a), *b_ = (b);                                              \
        if (strcmp(a_, b_))                                                           \
            check_fail(__FILE__, __LINE__, "%s: \"%s\" != \"%s\"", #a, a_, b_);       \
    } while (0)
#define CHECK_MEM(a, b, n)                                                            \
    do {                                                                              \
        if (memcmp((a), (b), (n)))                                                    \
            check_fail(__FILE__, __LINE__, "%s and %s differ", #a, #b);               \
    } while (0)

/* A ring of cap bytes (a power of two) on the heap, so ASan guards its ends. */
ss_ringv ring_new(uint64_t cap, uint32_t max_len);
void ring_free(ss_ringv *v);

/* Test records: the payload and timestamp follow from the seq, so any byte
 * that is lost, torn or out of place shows. */
void rec_fill(uint8_t *p, uint32_t len, uint64_t seq);
int rec_ok(const ss_rec *h, const uint8_t *payload);
/* Append an audio record of len bytes made by rec_fill for the seq it gets. */
int put_rec(const ss_ringv *v, uint32_t len, int drop_oldest);
/* Drain the ring to empty, checking every record (rec_ok); their seqs go to
 * seqs[] (up to max) and the count is returned. */
uint32_t take_all(const ss_ringv *v, uint64_t *seqs, uint32_t max);

/* out gets a path in this run's scratch directory (under /dev/shm), which
 * is removed at exit. */
#define CHECK_PATH_MAX 128
void check_path(char *out, const char *name);

#endif /* CHECK_H */
