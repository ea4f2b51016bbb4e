/*
 * ss_ring.h: the SPSC ring operations, shared by the module (producer of
 * audio, consumer of TTS) and the daemon (the reverse). Plain C11, no
 * FreeSWITCH, no allocation, no locks, no syscalls.
 *
 * Ordering (as in liburing's SQ/CQ): the producer fills the data, then
 * publishes tail with a release store; the consumer loads tail with acquire
 * before reading data, and gives space back by a release CAS on head.
 * Because the producer may also move head (to drop the oldest data), a
 * consumer copies first and commits with CAS: a failed CAS means the bytes
 * it copied may have been overwritten, so it throws them away and retries,
 * like a seqlock reader.
 */
#ifndef SS_RING_H
#define SS_RING_H

#include <stddef.h>
#include "ss_layout.h"

enum ss_err {
    SS_OK = 0,
    SS_E_FULL = -1,        /* no room and dropping not allowed */
    SS_E_TOOBIG = -2,      /* record larger than the ring allows */
    SS_E_CORRUPT = -3,     /* ring positions or a record header make no sense */
    SS_E_STALE = -4,       /* slot now belongs to another call */
    SS_E_ARG = -5,         /* bad argument */
    SS_E_NOSLOT = -6,      /* pool full */
    SS_E_NODAEMON = -7,    /* daemon heartbeat stale */
    SS_E_BUSY = -8,        /* lost the race with the other side too often; try next tick */
    SS_E_SYS = -9,         /* a system call failed (errno kept) */
    SS_E_STATE = -10,      /* slot is not in the state the call needs */
    SS_E_PERM = -11,       /* pool not private: a symlink, another owner, bits for others */
};
const char *ss_strerror(int err);

/* A process-local view of one ring: the shared header plus data pointer and
 * capacity taken from the layout constants, never from shared memory. */
typedef struct ss_ringv {
    ss_ring *r;
    uint8_t *data;
    uint64_t cap;          /* power of two */
    uint32_t max_len;      /* largest record payload accepted */
} ss_ringv;

/* Bytes a record of payload len takes in a record ring. */
static inline uint64_t ss_rec_size(uint32_t len) { return SS_REC_HDR + (((uint64_t)len + 7u) & ~7ull); }

/* Record rings (audio up, control both ways) ------------------------------ */

/* Append one record. drop_oldest: make room by discarding the oldest records
 * (counted in dropped) instead of failing with SS_E_FULL (counted in rejected). */
int ss_rec_write(const ss_ringv *v, uint16_t type, uint16_t track, uint64_t ts_ns,
                 const void *payload, uint32_t len, int drop_oldest);

/* Copy up to max_recs whole records (header + payload, 8-aligned, PAD records
 * left out) into out, validated, and consume them. Returns bytes copied, or
 * a negative ss_err. *nrecs gets the count. On SS_E_CORRUPT the ring has been
 * reset to empty and *lost gets the bytes thrown away. */
long ss_rec_drain(const ss_ringv *v, uint8_t *out, size_t out_cap, uint32_t max_recs,
                  uint32_t *nrecs, uint64_t *lost);

/* For a ring private to one process (the daemon's resume window), where no
 * other side moves head while we look: walk the records from *pos (start at
 * ss_ring_head) without consuming them. Returns 1 with *hdr and *payload
 * set and *pos advanced, 0 at the tail, or SS_E_CORRUPT. */
int ss_rec_next(const ss_ringv *v, uint64_t *pos, ss_rec *hdr, const uint8_t **payload);
/* Consume the oldest record. Returns 1, 0 if empty, or SS_E_CORRUPT; *hdr gets its header. */
int ss_rec_pop(const ss_ringv *v, ss_rec *hdr);

/* Byte rings (TTS PCM down) ---------------------------------------------- */

/* Append up to len bytes; never overwrites unread data. Returns bytes written. */
uint32_t ss_byte_write(const ss_ringv *v, const void *src, uint32_t len);
/* Read up to len bytes (an even count). A short read with some data counts
 * an underrun. Returns bytes read. */
uint32_t ss_byte_read(const ss_ringv *v, void *dst, uint32_t len);
/* Producer side: discard everything unread (barge-in). Returns bytes discarded. */
uint64_t ss_byte_clear(const ss_ringv *v);

/* Both --------------------------------------------------------------------- */
static inline uint64_t ss_ring_used(const ss_ringv *v)
{
    return atomic_load_explicit(&v->r->tail, memory_order_acquire) -
           atomic_load_explicit(&v->r->head, memory_order_acquire);
}
/* Whether the ring is empty, for a poller that asks often and rarely finds
 * anything: *head_seen is a head it saw before (heads only move forward), so
 * tail == *head_seen means empty with one load, of the producer's line only.
 * Otherwise it reads head too and remembers it. 0 for *head_seen at first. */
static inline int ss_ring_empty_seen(const ss_ringv *v, uint64_t *head_seen)
{
    uint64_t t = atomic_load_explicit(&v->r->tail, memory_order_acquire);
    if (t == *head_seen)
        return 1;
    *head_seen = atomic_load_explicit(&v->r->head, memory_order_acquire);
    return t == *head_seen;
}
/* Consumer position: what the consumer has consumed so far, in bytes. */
static inline uint64_t ss_ring_head(const ss_ringv *v)
{
    return atomic_load_explicit(&v->r->head, memory_order_acquire);
}
/* Producer side: forget everything, for a new owner of the slot. */
void ss_ring_reset(const ss_ringv *v);

#endif /* SS_RING_H */
