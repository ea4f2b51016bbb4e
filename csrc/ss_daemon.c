/* ss_daemon.c: see ss_daemon.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ss_daemon.h"

#define SS_STATE_TRIES 64

/* One daemon per pool, for its whole life: the lock goes with the fd. */
static int lock_pool(int fd, const char *path, char *err, size_t errlen)
{
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return SS_OK;
    int e = errno;
    uint32_t pid = 0;
    if (pread(fd, &pid, sizeof pid, offsetof(ss_pool_hdr, daemon_pid)) != (ssize_t)sizeof pid)
        pid = 0;
    if (e != EWOULDBLOCK) {
        snprintf(err, errlen, "lock %s: %s", path, strerror(e));
        return SS_E_SYS;
    }
    snprintf(err, errlen, "pool %s is in use by another smartstream daemon (pid %u)", path,
             (unsigned)pid);
    return SS_E_BUSY;
}

/* The pool at path, under the lock; it must be valid (anything else is left
 * as it is). SS_E_NODAEMON: there is none. */
static int reattach(const char *path, ss_pool *out, int *reattached, char *err, size_t errlen)
{
    int fd = ss_pool_open_fd(path, 0, 0, err, errlen);
    if (fd < 0)
        return fd;
    struct stat st;
    int rc = lock_pool(fd, path, err, errlen);
    if (rc == SS_OK)
        rc = ss_pool_check_private(fd, path, geteuid(), &st, err, errlen);
    if (rc == SS_OK)
        rc = ss_pool_map_fd(fd, path, &st, out, err, errlen);
    if (rc)
        close(fd);
    *reattached = rc == SS_OK;
    return rc;
}

int ss_daemon_open(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   int *reattached, char *err, size_t errlen)
{
    *reattached = 0;
    int rc = ss_pool_check_mode(mode, err, errlen);
    if (rc == SS_OK)
        rc = reattach(path, out, reattached, err, errlen);
    if (rc == SS_E_NODAEMON) {      /* none yet: make it */
        rc = ss_pool_create_locked(path, slots, mode, 1, out, err, errlen);
        if (rc == SS_E_SYS && errno == EEXIST)      /* another daemon made it meanwhile */
            rc = reattach(path, out, reattached, err, errlen);
        else if (rc == SS_E_NODAEMON)
            snprintf(err, errlen, "create %s: no such directory: make it 0750, owned by this "
                     "user, group FreeSWITCH's (systemd: RuntimeDirectory=)", path);
    }
    if (rc)
        return rc == SS_E_NODAEMON ? SS_E_SYS : rc;
    ss_pool_hdr *h = out->hdr;
    atomic_store_explicit(&h->daemon_pid, (uint32_t)getpid(), memory_order_relaxed);
    atomic_fetch_add_explicit(&h->daemon_epoch, 1, memory_order_relaxed);
    ss_daemon_heartbeat(out, ss_now_ns());
    atomic_store_explicit(&h->daemon_state, SS_DAEMON_RUNNING, memory_order_release);
    return SS_OK;
}

void ss_daemon_set_stale_ns(ss_pool *p, uint64_t ns)
{
    atomic_store_explicit(&p->hdr->heartbeat_stale_ns, ns, memory_order_relaxed);
}

void ss_daemon_heartbeat(ss_pool *p, uint64_t now_ns)
{
    atomic_store_explicit(&p->hdr->heartbeat_ns, now_ns, memory_order_release);
}

void ss_daemon_leave(ss_pool *p)
{
    atomic_store_explicit(&p->hdr->daemon_state, SS_DAEMON_STOPPED, memory_order_release);
    atomic_store_explicit(&p->hdr->heartbeat_ns, 0, memory_order_release);
    atomic_store_explicit(&p->hdr->daemon_pid, 0, memory_order_relaxed);
}

uint32_t ss_slot_state(const ss_slot *s, uint32_t *gen)
{
    ss_slot_hdr *h = (ss_slot_hdr *)&s->hdr;
    uint32_t g, st;
    /* Bounded: a generation that never holds still is not a call to wait for;
     * the caller's own generation check then rejects the pair. */
    for (int tries = 0; tries < SS_STATE_TRIES; tries++) {
        g = atomic_load_explicit(&h->generation, memory_order_acquire);
        st = atomic_load_explicit(&h->state, memory_order_acquire);
        if (atomic_load_explicit(&h->generation, memory_order_acquire) == g)
            break;
    }
    *gen = g;
    return st;
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

int ss_slot_free(ss_pool *p, uint32_t idx, uint32_t gen)
{
    ss_slot *s = ss_pool_slot(p, idx);
    if (atomic_load_explicit(&s->hdr.generation, memory_order_acquire) != gen)
        return SS_E_STALE;
    /* Through CLAIMED, which no claim can take and no reader takes for a
     * live call: the pages go while no one may write or trust them. */
    uint32_t st = SS_SLOT_CLOSING;
    if (!atomic_compare_exchange_strong_explicit(&s->hdr.state, &st, SS_SLOT_CLAIMED,
                                                 memory_order_acq_rel, memory_order_relaxed))
        return SS_E_STATE;
    ss_slot_release(p, idx);
    atomic_store_explicit(&s->hdr.state, SS_SLOT_FREE, memory_order_release);
    return SS_OK;
}
