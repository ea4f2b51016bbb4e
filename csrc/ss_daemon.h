/*
 * ss_daemon.h: the daemon's side of the pool: open (or re-attach after a
 * restart), heartbeat, and the slot transitions it owns. Ring I/O goes
 * through ss_ring.h directly.
 */
#ifndef SS_DAEMON_H
#define SS_DAEMON_H

#include "ss_pool.h"

/* Open the pool at path: re-attach it if a previous daemon left a valid one
 * we own (*reattached = 1), else create it with slots and mode. Holds an
 * exclusive flock on it until ss_pool_detach: a second daemon gets SS_E_BUSY.
 * Refuses a symlink, a file owned by another user or with bits for others,
 * or of an unknown layout. Bumps daemon_epoch, marks the daemon RUNNING. */
int ss_daemon_open(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   int *reattached, char *err, size_t errlen);

/* How old a heartbeat may get before the module says "daemon lost". */
void ss_daemon_set_stale_ns(ss_pool *p, uint64_t ns);
void ss_daemon_heartbeat(ss_pool *p, uint64_t now_ns);
/* On a clean exit: STOPPED and no heartbeat, so the module says "daemon
 * stopped" at once. */
void ss_daemon_leave(ss_pool *p);

/* Slot state and generation, read together (generation re-checked). */
uint32_t ss_slot_state(const ss_slot *s, uint32_t *gen);
/* Note that a stream is open for gen. Returns 1 if one was open for it before
 * (a previous daemon's): the stream is a resume. */
int ss_slot_attach(ss_slot *s, uint32_t gen);
void ss_slot_set_link(ss_slot *s, uint32_t gen, uint32_t link);
/* CLOSING -> FREE once StreamEnd is out, its ring pages released.
 * SS_E_STALE / SS_E_STATE otherwise. */
int ss_slot_free(ss_pool *p, uint32_t idx, uint32_t gen);

#endif /* SS_DAEMON_H */
