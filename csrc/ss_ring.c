/* ss_ring.c: see ss_ring.h for the protocol. */
#include <string.h>
#include "ss_ring.h"

#define ACQ memory_order_acquire
#define REL memory_order_release
#define RLX memory_order_relaxed
#define ACQREL memory_order_acq_rel

/* A consumer retries a commit this often before leaving it to the next tick;
 * each retry means the producer dropped data under it, which needs a full ring. */
#define SS_COMMIT_TRIES 4

const char *ss_strerror(int err)
{
    switch (err) {
    case SS_OK: return "ok";
    case SS_E_FULL: return "ring full";
    case SS_E_TOOBIG: return "message too large";
    case SS_E_CORRUPT: return "ring corrupt";
    case SS_E_STALE: return "slot belongs to another call";
    case SS_E_ARG: return "bad argument";
    case SS_E_NOSLOT: return "pool full";
    case SS_E_NODAEMON: return "daemon not running";
    case SS_E_BUSY: return "ring busy";
    case SS_E_SYS: return "system error";
    case SS_E_STATE: return "slot in wrong state";
    case SS_E_PERM: return "pool not private";
    }
    return "unknown error";
}

/* Copy n bytes out of the ring at position pos, wrapping at the end. */
static void ring_copy_out(const ss_ringv *v, uint64_t pos, void *dst, uint64_t n)
{
    uint64_t off = pos & (v->cap - 1), first = v->cap - off;
    if (first >= n) {
        memcpy(dst, v->data + off, n);
    } else {
        memcpy(dst, v->data + off, first);
        memcpy((uint8_t *)dst + first, v->data, n - first);
    }
}

static void ring_copy_in(const ss_ringv *v, uint64_t pos, const void *src, uint64_t n)
{
    uint64_t off = pos & (v->cap - 1), first = v->cap - off;
    if (first >= n) {
        memcpy(v->data + off, src, n);
    } else {
        memcpy(v->data + off, src, first);
        memcpy(v->data, (const uint8_t *)src + first, n - first);
    }
}

/* Size of the record (or implicit skip) starting at pos, 0 if it is not
 * well formed. Records never wrap: where fewer than SS_REC_HDR bytes are left
 * before the end, both sides skip them without a header. */
static uint64_t rec_span(const ss_ringv *v, uint64_t pos, uint64_t limit, ss_rec *hdr)
{
    uint64_t rem = v->cap - (pos & (v->cap - 1));
    if (rem < SS_REC_HDR) {
        hdr->type = SS_REC_PAD;
        return rem <= limit - pos ? rem : 0;
    }
    if (limit - pos < SS_REC_HDR)
        return 0;
    memcpy(hdr, v->data + (pos & (v->cap - 1)), SS_REC_HDR);
    if (hdr->type == SS_REC_PAD)
        return (uint64_t)hdr->len + SS_REC_HDR == rem && rem <= limit - pos ? rem : 0;
    if (hdr->len > v->max_len)
        return 0;
    uint64_t size = ss_rec_size(hdr->len);
    return size <= rem && size <= limit - pos ? size : 0;
}

int ss_rec_write(const ss_ringv *v, uint16_t type, uint16_t track, uint64_t ts_ns,
                 const void *payload, uint32_t len, int drop_oldest)
{
    ss_ring *r = v->r;
    if (len > v->max_len || type == SS_REC_PAD) {
        atomic_fetch_add_explicit(&r->rejected, 1, RLX);
        return len > v->max_len ? SS_E_TOOBIG : SS_E_ARG;
    }
    uint64_t need = ss_rec_size(len);
    uint64_t t = atomic_load_explicit(&r->tail, RLX);
    uint64_t rem = v->cap - (t & (v->cap - 1));
    uint64_t pad = rem < need ? rem : 0;
    /* Each honest turn frees a record of at least SS_REC_HDR bytes (or sees
     * the consumer free some): this many turns make room unless the consumer
     * keeps moving head backwards. The media thread must not spin on that. */
    uint64_t turns = (pad + need) / SS_REC_HDR + SS_COMMIT_TRIES;

    for (;;) {
        if (!turns--) {
            atomic_fetch_add_explicit(&r->rejected, 1, RLX);
            return SS_E_BUSY;
        }
        uint64_t h = atomic_load_explicit(&r->head, ACQ);
        if (t - h > v->cap) {   /* head was moved past tail: not by us */
            atomic_fetch_add_explicit(&r->rejected, 1, RLX);
            return SS_E_CORRUPT;
        }
        if (t + pad + need - h <= v->cap)
            break;
        if (!drop_oldest) {
            atomic_fetch_add_explicit(&r->rejected, 1, RLX);
            return SS_E_FULL;
        }
        /* Drop the oldest record: we wrote it, so its header is ours to trust,
         * unless the memory was scribbled on; then drop everything. */
        ss_rec old;
        uint64_t span = rec_span(v, h, t, &old);
        int counted = span && old.type != SS_REC_PAD;
        if (!span)
            span = t - h;
        if (atomic_compare_exchange_weak_explicit(&r->head, &h, h + span, ACQREL, ACQ) && counted)
            atomic_fetch_add_explicit(&r->dropped, 1, RLX);
    }

    if (pad >= SS_REC_HDR) {
        ss_rec p = {.len = (uint32_t)(pad - SS_REC_HDR), .type = SS_REC_PAD};
        memcpy(v->data + (t & (v->cap - 1)), &p, SS_REC_HDR);
    }
    t += pad;
    ss_rec hdr = {
        .len = len, .type = type, .track = track,
        .seq = atomic_load_explicit(&r->seq, RLX), .ts_ns = ts_ns,
    };
    uint8_t *at = v->data + (t & (v->cap - 1));
    memcpy(at, &hdr, SS_REC_HDR);
    if (len)
        memcpy(at + SS_REC_HDR, payload, len);
    atomic_store_explicit(&r->seq, hdr.seq + 1, RLX);
    atomic_store_explicit(&r->tail, t + need, REL);
    return SS_OK;
}

long ss_rec_drain(const ss_ringv *v, uint8_t *out, size_t out_cap, uint32_t max_recs,
                  uint32_t *nrecs, uint64_t *lost)
{
    ss_ring *r = v->r;
    *nrecs = 0;
    *lost = 0;
    for (int tries = 0; tries < SS_COMMIT_TRIES; tries++) {
        uint64_t h = atomic_load_explicit(&r->head, ACQ);
        uint64_t t = atomic_load_explicit(&r->tail, ACQ);
        uint64_t pos = h;
        size_t used = 0;
        uint32_t n = 0;
        int bad = 0;

        if (t - h > v->cap) {
            bad = 1;
        } else {
            while (pos != t && n < max_recs) {
                ss_rec hdr;
                uint64_t span = rec_span(v, pos, t, &hdr);
                if (!span) {
                    bad = 1;
                    break;
                }
                if (hdr.type != SS_REC_PAD) {
                    if (used + span > out_cap)
                        break;
                    memcpy(out + used, v->data + (pos & (v->cap - 1)), span);
                    used += span;
                    n++;
                }
                pos += span;
            }
        }
        /* Seqlock check: our copies happened before we look at head again. */
        atomic_thread_fence(ACQ);
        if (bad) {
            if (atomic_load_explicit(&r->head, RLX) != h)
                continue; /* torn by a concurrent drop: retry */
            /* Really corrupt: skip everything the producer published. */
            if (atomic_compare_exchange_strong_explicit(&r->head, &h, t, ACQREL, ACQ)) {
                *lost = t - h > v->cap ? v->cap : t - h;   /* corrupt positions: at most a ring */
                return SS_E_CORRUPT;
            }
            continue;
        }
        if (pos == h)
            return 0;
        if (atomic_compare_exchange_strong_explicit(&r->head, &h, pos, ACQREL, ACQ)) {
            *nrecs = n;
            return (long)used;
        }
    }
    return SS_E_BUSY;
}

int ss_rec_next(const ss_ringv *v, uint64_t *pos, ss_rec *hdr, const uint8_t **payload)
{
    uint64_t t = atomic_load_explicit(&v->r->tail, ACQ);
    if (t - *pos > v->cap)
        return SS_E_CORRUPT;    /* also bounds the walk below to one ring */
    while (*pos != t) {
        uint64_t span = rec_span(v, *pos, t, hdr);
        if (!span)
            return SS_E_CORRUPT;
        uint64_t at = *pos & (v->cap - 1);
        *pos += span;
        if (hdr->type != SS_REC_PAD) {
            *payload = v->data + at + SS_REC_HDR;
            return 1;
        }
    }
    return 0;
}

int ss_rec_pop(const ss_ringv *v, ss_rec *hdr)
{
    uint64_t h = atomic_load_explicit(&v->r->head, ACQ), pos = h;
    const uint8_t *payload;
    int rc = ss_rec_next(v, &pos, hdr, &payload);
    if (rc == 1 && !atomic_compare_exchange_strong_explicit(&v->r->head, &h, pos, ACQREL, ACQ))
        return SS_E_BUSY;
    return rc;
}

uint32_t ss_byte_write(const ss_ringv *v, const void *src, uint32_t len)
{
    ss_ring *r = v->r;
    uint64_t t = atomic_load_explicit(&r->tail, RLX);
    uint64_t h = atomic_load_explicit(&r->head, ACQ);
    uint64_t room = t - h > v->cap ? 0 : v->cap - (t - h);
    uint32_t n = (uint32_t)(len < room ? len : room) & ~1u; /* whole samples only */
    if (n) {
        ring_copy_in(v, t, src, n);
        atomic_store_explicit(&r->tail, t + n, REL);
    }
    return n;
}

uint32_t ss_byte_read(const ss_ringv *v, void *dst, uint32_t len)
{
    ss_ring *r = v->r;
    len &= ~1u; /* whole samples: an odd request filled to its last whole sample is no underrun */
    for (int tries = 0; tries < SS_COMMIT_TRIES; tries++) {
        uint64_t h = atomic_load_explicit(&r->head, ACQ);
        uint64_t t = atomic_load_explicit(&r->tail, ACQ);
        uint64_t avail = t - h;
        if (avail > v->cap)
            return 0; /* corrupt positions: play nothing rather than garbage */
        uint32_t n = (uint32_t)(avail < len ? avail : len) & ~1u;
        if (!n)
            return 0;
        ring_copy_out(v, h, dst, n);
        atomic_thread_fence(ACQ);
        if (atomic_compare_exchange_strong_explicit(&r->head, &h, h + n, ACQREL, ACQ)) {
            if (n < len)
                atomic_fetch_add_explicit(&r->underruns, 1, RLX);
            return n;
        }
        /* The producer cleared the ring under us: what we copied is stale. */
    }
    return 0;
}

uint64_t ss_byte_clear(const ss_ringv *v)
{
    ss_ring *r = v->r;
    uint64_t t = atomic_load_explicit(&r->tail, RLX);
    uint64_t h = atomic_load_explicit(&r->head, ACQ);
    while (h != t && !atomic_compare_exchange_weak_explicit(&r->head, &h, t, ACQREL, ACQ))
        ;
    return t - h;
}

void ss_ring_reset(const ss_ringv *v)
{
    ss_ring *r = v->r;
    atomic_store_explicit(&r->head, atomic_load_explicit(&r->tail, RLX), REL);
    atomic_store_explicit(&r->seq, 0, RLX);
    atomic_store_explicit(&r->dropped, 0, RLX);
    atomic_store_explicit(&r->rejected, 0, RLX);
    atomic_store_explicit(&r->underruns, 0, RLX);
    atomic_store_explicit(&r->sent_seq, 0, RLX);
}
