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
    int lock_fd;            /* the daemon's: held (flock) until detach; else -1 */
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

/* Bytes a pool of that many slots takes, all allocated at creation. */
uint64_t ss_pool_bytes(uint32_t slots);

/* Create a new pool file (fails if it exists) with the given mode, which may
 * not have bits for others. Its memory is allocated now (posix_fallocate):
 * SS_E_SYS, saying how much is needed, if the filesystem has too little. */
int ss_pool_create(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen);
/* Map an existing pool file after validating it: not a symlink, a regular
 * file owned by owner (or SS_OWNER_OF_DIR) with no bits for others
 * (SS_E_PERM), a known layout, every byte allocated (SS_E_CORRUPT). */
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
int ss_pool_allocate(int fd, const char *path, uint64_t bytes, char *err, size_t errlen);
int ss_pool_init_fd(int fd, const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                    char *err, size_t errlen);
int ss_pool_map_fd(int fd, const char *path, const struct stat *st, ss_pool *out,
                   char *err, size_t errlen);

static inline ss_slot *ss_pool_slot(const ss_pool *p, uint32_t idx)
{
    return (ss_slot *)(p->base + SS_POOL_HDR_BYTES + (size_t)idx * sizeof(ss_slot));
}
void ss_slot_rings_init(ss_slot *s, ss_slot_rings *out);

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
