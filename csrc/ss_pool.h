/*
 * ss_pool.h: the pool file. The daemon creates it (or re-attaches the one it
 * left behind after a restart); the module attaches to it. Every header
 * field is checked before any slot is touched: the file may be stale, short
 * or written by something else.
 */
#ifndef SS_POOL_H
#define SS_POOL_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "ss_ring.h"

#define SS_SLOTS_MAX 65536u

/* ss_pool_attach_as: trust the owner of the pool's directory (the service
 * user, for /run/smartstream created by systemd's RuntimeDirectory=). */
#define SS_OWNER_OF_DIR ((uid_t)-1)

typedef struct ss_pool {
    ss_pool_hdr *hdr;
    uint8_t *base;
    size_t bytes;
    uint32_t slot_count;
    int fd;                 /* the file, kept for allocating slot pages; the daemon's
                               also holds the flock until detach */
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

/* The pool file's size for that many slots. Only the headers are allocated
 * with the pool (ss_pool_fixed_bytes); a call's ring pages when it claims
 * its slot (ss_call_bytes), released again when the daemon frees it. */
uint64_t ss_pool_bytes(uint32_t slots);
uint64_t ss_pool_fixed_bytes(uint32_t slots);
/* Ring pages one call of that rate and tracks (SS_TRACKS_MASK_*) uses. */
uint64_t ss_call_bytes(uint32_t rate, uint32_t tracks);

/* Create a new pool file with the given mode, which may not have bits for
 * others; path appears only once the pool is complete (SS_E_SYS with errno
 * EEXIST if it exists). Its headers are allocated now (posix_fallocate):
 * SS_E_SYS, saying how much is needed, if the filesystem has too little. */
int ss_pool_create(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen);
/* The same, holding the one-daemon lock (flock) from before path appears. */
int ss_pool_create_locked(const char *path, uint32_t slots, mode_t mode, int lock,
                          ss_pool *out, char *err, size_t errlen);
/* Map an existing pool file after validating it: not a symlink, a regular
 * file owned by owner (or SS_OWNER_OF_DIR) with no bits for others
 * (SS_E_PERM), a known layout (SS_E_CORRUPT); headers not yet allocated
 * are allocated now (SS_E_SYS if the filesystem is full). */
int ss_pool_attach_as(const char *path, uid_t owner, ss_pool *out, char *err, size_t errlen);
/* ss_pool_attach_as(path, SS_OWNER_OF_DIR, ...). */
int ss_pool_attach(const char *path, ss_pool *out, char *err, size_t errlen);
void ss_pool_detach(ss_pool *p);

/* The steps of the above, for the daemon's locked open. open_fd: open(2)
 * flags to add (O_CREAT | O_EXCL or 0); returns the fd or an ss_err, errno kept. */
int ss_pool_check_mode(mode_t mode, char *err, size_t errlen);
int ss_pool_open_fd(const char *path, int flags, mode_t mode, char *err, size_t errlen);
int ss_pool_check_private(int fd, const char *path, uid_t owner, struct stat *st,
                          char *err, size_t errlen);
int ss_pool_allocate(int fd, const char *path, uint32_t slots, char *err, size_t errlen);
int ss_pool_map_fd(int fd, const char *path, const struct stat *st, ss_pool *out,
                   char *err, size_t errlen);

static inline ss_slot *ss_pool_slot(const ss_pool *p, uint32_t idx)
{
    return (ss_slot *)(p->base + SS_POOL_HDR_BYTES + (size_t)idx * sizeof(ss_slot));
}
/* Views of a slot's rings sized for rate (any value gives views inside the
 * slot: the daemon passes the rate it validated, the module its own). */
void ss_slot_rings_init(ss_slot *s, uint32_t rate, ss_slot_rings *out);
/* Allocate the pages a call of rate and tracks uses in slot idx, before its
 * first write: on a full filesystem the claim fails (SS_E_SYS), where a
 * write to a missing page would SIGBUS FreeSWITCH's media thread. */
int ss_slot_alloc(ss_pool *p, uint32_t idx, uint32_t rate, uint32_t tracks, char *err,
                  size_t errlen);
/* Give slot idx's ring pages back to the filesystem (the daemon, while the
 * slot is CLOSING: no one writes it). Its headers stay. */
void ss_slot_release(ss_pool *p, uint32_t idx);

/* What the module says about the daemon: stopped is known at once (the
 * daemon said so), lost once the heartbeat is older than ss_pool_stale_ns. */
enum ss_daemon_health {
    SS_HEALTH_ALIVE = 0,
    SS_HEALTH_STOPPED = 1,
    SS_HEALTH_LOST = 2,
};
int ss_pool_daemon_health(const ss_pool *p, uint64_t now_ns);
const char *ss_health_name(int health);   /* "alive", "stopped", "lost" */
/* The daemon's heartbeat_stale_ns, clamped to SS_HEARTBEAT_STALE_MIN_NS..MAX. */
uint64_t ss_pool_stale_ns(const ss_pool *p);
/* Is a daemon stamping the heartbeat? (health == SS_HEALTH_ALIVE) */
int ss_pool_daemon_alive(const ss_pool *p, uint64_t now_ns);

#endif /* SS_POOL_H */
