/*
 * ss_pool.h: the pool file. The daemon creates it (or re-attaches the one it
 * left behind after a restart); the module attaches to it. Every header
 * field is checked before any slot is touched: the file may be stale, short
 * or written by something else.
 */
#ifndef SS_POOL_H
#define SS_POOL_H

#include <stddef.h>
#include <sys/types.h>
#include "ss_ring.h"

#define SS_SLOTS_MAX 65536u

typedef struct ss_pool {
    ss_pool_hdr *hdr;
    uint8_t *base;
    size_t bytes;
    uint32_t slot_count;
} ss_pool;

/* The six rings of one slot, as process-local views. */
typedef struct ss_slot_rings {
    ss_ringv up[SS_TRACKS];
    ss_ringv down;
    ss_ringv ctl_in;
    ss_ringv ctl_out;
} ss_slot_rings;

uint64_t ss_now_ns(void);   /* CLOCK_MONOTONIC: vDSO, no system call */

/* Check the pool header at mem for a file of len bytes (mem must hold at least
 * the header, or len bytes if fewer). Writes the reason to err on failure. */
int ss_pool_validate(const void *mem, size_t len, char *err, size_t errlen);

/* Create a new pool file (fails if it exists) with the given mode. */
int ss_pool_create(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen);
/* Map an existing pool file after validating it. */
int ss_pool_attach(const char *path, ss_pool *out, char *err, size_t errlen);
void ss_pool_detach(ss_pool *p);

static inline ss_slot *ss_pool_slot(const ss_pool *p, uint32_t idx)
{
    return (ss_slot *)(p->base + SS_POOL_HDR_BYTES + (size_t)idx * sizeof(ss_slot));
}
void ss_slot_rings_init(ss_slot *s, ss_slot_rings *out);

/* Is a daemon stamping the heartbeat? */
int ss_pool_daemon_alive(const ss_pool *p, uint64_t now_ns);

#endif /* SS_POOL_H */
