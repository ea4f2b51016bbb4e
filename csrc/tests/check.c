/* check.c: the test runner (see check.h) and the fixtures the suites share. */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "check.h"

static jmp_buf abort_case;
static const char *current;
static char scratch[48];

void check_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL %s\n     %s:%d: ", current, file, line);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
    longjmp(abort_case, 1);
}

ss_ringv ring_new(uint64_t cap, uint32_t max_len)
{
    ss_ringv v = {.r = aligned_alloc(SS_CACHELINE, sizeof(ss_ring)), .data = malloc(cap),
                  .cap = cap, .max_len = max_len};
    if (!v.r || !v.data)
        abort();
    memset(v.r, 0, sizeof *v.r);
    memset(v.data, 0, cap);
    return v;
}

void ring_free(ss_ringv *v)
{
    free(v->r);
    free(v->data);
}

void rec_fill(uint8_t *p, uint32_t len, uint64_t seq)
{
    for (uint32_t j = 0; j < len; j++)
        p[j] = (uint8_t)(seq * 31 + j * 7 + 1);
}

int rec_ok(const ss_rec *h, const uint8_t *payload)
{
    uint8_t want[SS_CTL_MSG_MAX];
    if (h->type != SS_REC_AUDIO || h->ts_ns != h->seq * 1000 || h->len > sizeof want)
        return 0;
    rec_fill(want, h->len, h->seq);
    return !memcmp(payload, want, h->len);
}

int put_rec(const ss_ringv *v, uint32_t len, int drop_oldest)
{
    uint8_t buf[SS_CTL_MSG_MAX];
    uint64_t seq = atomic_load(&v->r->seq);
    if (len > sizeof buf)
        abort();
    rec_fill(buf, len, seq);
    return ss_rec_write(v, SS_REC_AUDIO, 0, seq * 1000, buf, len, drop_oldest);
}

uint32_t take_all(const ss_ringv *v, uint64_t *seqs, uint32_t max)
{
    static _Alignas(8) uint8_t out[1 << 16];
    uint32_t total = 0, n;
    uint64_t lost;
    long got;
    while ((got = ss_rec_drain(v, out, sizeof out, UINT32_MAX, &n, &lost)) > 0) {
        for (long at = 0; at < got;) {
            ss_rec h;
            memcpy(&h, out + at, SS_REC_HDR);
            CHECK(rec_ok(&h, out + at + SS_REC_HDR));
            if (total < max)
                seqs[total] = h.seq;
            total++;
            at += (long)ss_rec_size(h.len);
        }
    }
    CHECK_EQ(got, 0);
    CHECK_EQ(ss_ring_used(v), 0);
    return total;
}

void check_path(char *out, const char *name)
{
    snprintf(out, CHECK_PATH_MAX, "%s/%s", scratch, name);
}

static void make_scratch(void)
{
    snprintf(scratch, sizeof scratch, "/dev/shm/ss-check-XXXXXX");
    if (!mkdtemp(scratch)) {
        snprintf(scratch, sizeof scratch, "/tmp/ss-check-XXXXXX");
        if (!mkdtemp(scratch)) {
            perror("mkdtemp");
            exit(2);
        }
    }
}

/* Cases leave files behind when they fail: the scratch dir is flat, so this is all it takes. */
static void remove_scratch(void)
{
    DIR *d = opendir(scratch);
    struct dirent *e;
    char path[CHECK_PATH_MAX];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        check_path(path, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(scratch);
}

int main(void)
{
    static const check_case *const suites[] = {
        ring_cases, byte_cases, thread_cases, pool_cases, stream_cases, wav_cases, private_cases,
        action_cases,
    };
    static int passed, failed; /* static: they survive the longjmp unchanged */
    setvbuf(stdout, NULL, _IOLBF, 0);
    make_scratch();
    for (size_t s = 0; s < sizeof suites / sizeof *suites; s++) {
        for (const check_case *c = suites[s]; c->name; c++) {
            current = c->name;
            if (setjmp(abort_case)) {
                failed++;
                continue;
            }
            c->fn();
            printf("ok   %s\n", c->name);
            passed++;
        }
    }
    remove_scratch();
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
