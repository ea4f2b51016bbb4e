/* ss_daemon.c: see ss_daemon.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ss_daemon.h"

int ss_daemon_open(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   int *reattached, char *err, size_t errlen)
{
    struct stat st;
    int rc;
    *reattached = 0;
    if (stat(path, &st) == 0) {
        if (st.st_uid != geteuid()) {
            snprintf(err, errlen, "refusing pool %s: owned by uid %u, not us (uid %u)", path,
                     (unsigned)st.st_uid, (unsigned)geteuid());
            return SS_E_ARG;
        }
        rc = ss_pool_attach(path, out, err, errlen);
        *reattached = rc == SS_OK;
    } else if (errno == ENOENT) {
        rc = ss_pool_create(path, slots, mode, out, err, errlen);
    } else {
        snprintf(err, errlen, "stat %s: %s", path, strerror(errno));
        rc = SS_E_SYS;
    }
    if (rc == SS_OK) {
        atomic_store_explicit(&out->hdr->daemon_pid, (uint32_t)getpid(), memory_order_relaxed);
        atomic_fetch_add_explicit(&out->hdr->daemon_epoch, 1, memory_order_relaxed);
        ss_daemon_heartbeat(out, ss_now_ns());
    }
    return rc;
}

void ss_daemon_heartbeat(ss_pool *p, uint64_t now_ns)
{
    atomic_store_explicit(&p->hdr->heartbeat_ns, now_ns, memory_order_release);
}

void ss_daemon_leave(ss_pool *p)
{
    atomic_store_explicit(&p->hdr->heartbeat_ns, 0, memory_order_release);
    atomic_store_explicit(&p->hdr->daemon_pid, 0, memory_order_relaxed);
}

uint32_t ss_slot_state(const ss_slot *s, uint32_t *gen)
{
    ss_slot_hdr *h = (ss_slot_hdr *)&s->hdr;
    for (;;) {
        uint32_t g = atomic_load_explicit(&h->generation, memory_order_acquire);
        uint32_t st = atomic_load_explicit(&h->state, memory_order_acquire);
        if (atomic_load_explicit(&h->generation, memory_order_acquire) == g) {
            *gen = g;
            return st;
        }
    }
}

int ss_slot_attach(ss_slot *s, uint32_t gen)
{
    return atomic_exchange_explicit(&s->hdr.attached_gen, gen, memory_order_acq_rel) == gen;
}

void ss_slot_set_link(ss_slot *s, uint32_t gen, uint32_t link)
{
    if (atomic_load_explicit(&s->hdr.generation, memory_order_acquire) == gen)
        atomic_store_explicit(&s->hdr.link, link, memory_order_release);
}

int ss_slot_free(ss_slot *s, uint32_t gen)
{
    if (atomic_load_explicit(&s->hdr.generation, memory_order_acquire) != gen)
        return SS_E_STALE;
    uint32_t st = SS_SLOT_CLOSING;
    if (!atomic_compare_exchange_strong_explicit(&s->hdr.state, &st, SS_SLOT_FREE,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return SS_E_STATE;
    return SS_OK;
}
