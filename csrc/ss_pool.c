/* ss_pool.c: creating, validating and mapping the pool file.
 *
 * Why a path and not a sealed memfd: a restarted daemon must find the live
 * calls' pool again, and a path does that with nothing holding it in between;
 * a memfd would need the module to keep it and hand it back over a socket.
 * The path is kept private instead: a directory only the service user writes
 * (/run/smartstream, 0750), O_NOFOLLOW, owner and mode checked on the open fd.
 * No page is touched before it is allocated: the headers with the pool, a
 * call's ring pages when it claims its slot. Remaining risk: the owner (or
 * root) can still truncate the file, or punch its pages, under a live
 * mapping, which no seal prevents here; see freeswitch_patch/README.md. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include "ss_pool.h"

uint64_t ss_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static uint64_t slot_offset(uint32_t idx)
{
    return SS_POOL_HDR_BYTES + (uint64_t)idx * sizeof(ss_slot);
}

uint64_t ss_pool_bytes(uint32_t slots)
{
    return slot_offset(slots);    /* where a slot after the last would start */
}

uint64_t ss_pool_fixed_bytes(uint32_t slots)
{
    return SS_POOL_HDR_BYTES + (uint64_t)slots * SS_SLOT_DATA_OFFSET;
}

uint64_t ss_call_bytes(uint32_t rate, uint32_t tracks)
{
    uint64_t up = ss_up_bytes(rate);
    return up * (uint64_t)__builtin_popcount(tracks & (SS_TRACKS_MASK_IN | SS_TRACKS_MASK_OUT)) +
           ss_down_bytes(rate) + 2u * SS_CTL_BYTES;
}

_Static_assert(offsetof(ss_slot, ctl_out_data) == offsetof(ss_slot, ctl_in_data) + SS_CTL_BYTES,
               "ss_slot_alloc allocates both control rings in one range");

int ss_pool_validate(const void *mem, size_t len, char *err, size_t errlen)
{
    const ss_pool_hdr *h = mem;
    if (len < sizeof(ss_pool_hdr))
        return fail(err, errlen, SS_E_CORRUPT, "pool truncated: %zu bytes, header needs %zu",
                    len, sizeof(ss_pool_hdr));
    if (h->magic != SS_POOL_MAGIC)
        return fail(err, errlen, SS_E_CORRUPT, "not a smartstream pool: bad magic %#llx",
                    (unsigned long long)h->magic);
    if (h->version != SS_LAYOUT_VERSION)
        return fail(err, errlen, SS_E_CORRUPT, "pool layout version %u, this build knows %u",
                    h->version, SS_LAYOUT_VERSION);
    if (h->header_bytes != SS_POOL_HDR_BYTES)
        return fail(err, errlen, SS_E_CORRUPT, "pool header_bytes %u, expected %u",
                    h->header_bytes, SS_POOL_HDR_BYTES);
    if (h->slot_bytes != sizeof(ss_slot))
        return fail(err, errlen, SS_E_CORRUPT, "pool slot_bytes %llu, expected %zu",
                    (unsigned long long)h->slot_bytes, sizeof(ss_slot));
    if (h->slot_count == 0 || h->slot_count > SS_SLOTS_MAX)
        return fail(err, errlen, SS_E_CORRUPT, "pool slot_count %u out of range 1..%u",
                    h->slot_count, SS_SLOTS_MAX);
    if (h->pool_bytes != ss_pool_bytes(h->slot_count))
        return fail(err, errlen, SS_E_CORRUPT, "pool_bytes %llu does not match %u slots",
                    (unsigned long long)h->pool_bytes, h->slot_count);
    if (len < h->pool_bytes)
        return fail(err, errlen, SS_E_CORRUPT, "pool truncated: file is %zu bytes, header says %llu",
                    len, (unsigned long long)h->pool_bytes);
    return SS_OK;
}

int ss_pool_check_mode(mode_t mode, char *err, size_t errlen)
{
    if (mode & ~(mode_t)0770)
        return fail(err, errlen, SS_E_ARG,
                    "pool mode %04o: only owner and group bits are allowed (e.g. 0660)",
                    (unsigned)mode);
    return SS_OK;
}

int ss_pool_open_fd(const char *path, int flags, mode_t mode, char *err, size_t errlen)
{
    /* O_NOFOLLOW: a symlink planted at the path must not lead us elsewhere.
     * O_NONBLOCK: a FIFO planted there must not hang us (checked after). */
    int fd = open(path, flags | O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, mode);
    if (fd >= 0)
        return fd;
    int e = errno;
    if (e == ELOOP)
        fail(err, errlen, SS_E_PERM, "refusing pool %s: it is a symbolic link", path);
    else
        fail(err, errlen, 0, "%s %s: %s", flags & O_CREAT ? "create" : "open", path, strerror(e));
    errno = e;      /* the daemon tells "exists" from the rest */
    return e == ELOOP ? SS_E_PERM : e == ENOENT ? SS_E_NODAEMON : SS_E_SYS;
}

/* The owner of the directory holding path. */
static int dir_owner(const char *path, uid_t *owner, char *err, size_t errlen)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir)
        return fail(err, errlen, SS_E_ARG, "pool path too long: %s", path);
    memcpy(dir, n ? path : ".", n ? n : 1);
    dir[n ? n : 1] = '\0';
    struct stat st;
    if (stat(dir, &st) < 0)
        return fail(err, errlen, SS_E_SYS, "stat %s: %s", dir, strerror(errno));
    *owner = st.st_uid;
    return SS_OK;
}

int ss_pool_check_private(int fd, const char *path, uid_t owner, struct stat *st,
                          char *err, size_t errlen)
{
    if (fstat(fd, st) < 0)
        return fail(err, errlen, SS_E_SYS, "stat %s: %s", path, strerror(errno));
    if (!S_ISREG(st->st_mode))
        return fail(err, errlen, SS_E_PERM, "refusing pool %s: not a regular file", path);
    if (st->st_uid != owner)
        return fail(err, errlen, SS_E_PERM, "refusing pool %s: owned by uid %u, expected uid %u",
                    path, (unsigned)st->st_uid, (unsigned)owner);
    if (st->st_mode & 0007)
        return fail(err, errlen, SS_E_PERM,
                    "refusing pool %s: mode %04o lets other users in (no bits for others)", path,
                    (unsigned)(st->st_mode & 07777));
    return SS_OK;
}

/* Allocate the headers of a pool file of that many slots (a no-op where they
 * are): a read or write of an unallocated page of a full tmpfs is a SIGBUS,
 * an error here is a line in a log. Ring pages come with each call
 * (ss_slot_alloc). Both sides do it before touching the pool. */
int ss_pool_allocate(int fd, const char *path, uint32_t slots, char *err, size_t errlen)
{
    struct statvfs vfs;
    if (fstatvfs(fd, &vfs) < 0)
        return fail(err, errlen, SS_E_SYS, "stat %s: %s", path, strerror(errno));
    uint64_t need = ss_pool_fixed_bytes(slots), avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    int e = 0;
    for (uint32_t i = 0; !e && i <= slots; i++)   /* the pool header, then each slot's */
        e = i == 0 ? posix_fallocate(fd, 0, SS_POOL_HDR_BYTES)
                   : posix_fallocate(fd, (off_t)slot_offset(i - 1), (off_t)SS_SLOT_DATA_OFFSET);
    if (e == ENOSPC)
        return fail(err, errlen, SS_E_SYS,
                    "pool %s needs %llu bytes of headers (%llu per slot, and %llu per 8 kHz "
                    "call), its filesystem has %llu free: make it bigger (Docker: shm_size) or "
                    "use fewer slots", path, (unsigned long long)need,
                    (unsigned long long)SS_SLOT_DATA_OFFSET,
                    (unsigned long long)ss_call_bytes(8000, SS_TRACKS_MASK_IN),
                    (unsigned long long)avail);
    if (e)
        return fail(err, errlen, SS_E_SYS, "pool %s: allocate: %s", path, strerror(e));
    return SS_OK;
}

static int init_fd(int fd, const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen)
{
    if (slots == 0 || slots > SS_SLOTS_MAX)
        return fail(err, errlen, SS_E_ARG, "slot count %u out of range 1..%u", slots, SS_SLOTS_MAX);
    uint64_t bytes = ss_pool_bytes(slots);
    /* fchmod: the umask must not strip the group bits FreeSWITCH needs. */
    if (fchmod(fd, mode) < 0)
        return fail(err, errlen, SS_E_SYS, "chmod %s: %s", path, strerror(errno));
    if (ftruncate(fd, (off_t)bytes) < 0)
        return fail(err, errlen, SS_E_SYS, "size %s: %s", path, strerror(errno));
    int rc = ss_pool_allocate(fd, path, slots, err, errlen);
    if (rc)
        return rc;
    /* Freshly allocated memory reads as zeros: every slot FREE, every ring empty. */
    ss_pool_hdr *h = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED)
        return fail(err, errlen, SS_E_SYS, "mmap %s: %s", path, strerror(errno));
    h->version = SS_LAYOUT_VERSION;
    h->header_bytes = SS_POOL_HDR_BYTES;
    h->slot_count = slots;
    h->slot_bytes = sizeof(ss_slot);
    h->pool_bytes = bytes;
    atomic_store_explicit(&h->heartbeat_stale_ns, SS_HEARTBEAT_STALE_NS, memory_order_relaxed);
    /* Magic last: a reader that sees it sees a complete header. */
    atomic_thread_fence(memory_order_release);
    h->magic = SS_POOL_MAGIC;
    out->base = (uint8_t *)h;
    out->hdr = h;
    out->bytes = bytes;
    out->slot_count = slots;
    out->fd = fd;
    return SS_OK;
}

/* The pool is built under a temporary name and linked at path when its
 * header is complete: whoever opens path finds a whole pool or none (a
 * module attaching while the daemon starts would otherwise read magic 0).
 * lock: the daemon's lock is taken before the pool has a name, so no other
 * daemon can hold it first. */
int ss_pool_create_locked(const char *path, uint32_t slots, mode_t mode, int lock,
                          ss_pool *out, char *err, size_t errlen)
{
    if (slots == 0 || slots > SS_SLOTS_MAX)
        return fail(err, errlen, SS_E_ARG, "slot count %u out of range 1..%u", slots, SS_SLOTS_MAX);
    int rc = ss_pool_check_mode(mode, err, errlen);
    if (rc)
        return rc;
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.new-%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return fail(err, errlen, SS_E_ARG, "pool path too long: %s", path);
    unlink(tmp);    /* left by a start of ours that died here */
    int fd = ss_pool_open_fd(tmp, O_CREAT | O_EXCL, mode, err, errlen);
    if (fd < 0)
        return fd;
    int e = 0;
    if (lock && flock(fd, LOCK_EX | LOCK_NB) < 0)
        rc = fail(err, errlen, SS_E_SYS, "lock %s: %s", tmp, strerror(errno));
    if (rc == SS_OK)
        rc = init_fd(fd, path, slots, mode, out, err, errlen);
    if (rc == SS_OK && link(tmp, path) < 0) {
        e = errno;
        rc = fail(err, errlen, SS_E_SYS, "create %s: %s", path, strerror(e));
        ss_pool_detach(out);        /* and its fd */
        fd = -1;
    }
    unlink(tmp);
    if (rc && fd >= 0)
        close(fd);
    errno = e;      /* EEXIST: another pool got the name first */
    return rc;
}

int ss_pool_create(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen)
{
    return ss_pool_create_locked(path, slots, mode, 0, out, err, errlen);
}

/* Validate the header through the fd, then map the size it gives. The
 * slot count comes from the validated copy: the mapping could be rewritten
 * since, and must not be trusted for bounds. On success fd is the pool's. */
int ss_pool_map_fd(int fd, const char *path, const struct stat *st, ss_pool *out,
                   char *err, size_t errlen)
{
    size_t len = (size_t)st->st_size;
    ss_pool_hdr hdr;
    if (len < sizeof(hdr) || pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
        return fail(err, errlen, SS_E_CORRUPT, "pool truncated: %s is %zu bytes", path, len);
    int rc = ss_pool_validate(&hdr, len, err, errlen);
    if (rc)
        return rc;
    rc = ss_pool_allocate(fd, path, hdr.slot_count, err, errlen);
    if (rc)
        return rc;
    void *m = mmap(NULL, hdr.pool_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return fail(err, errlen, SS_E_SYS, "mmap %s: %s", path, strerror(errno));
    out->base = m;
    out->hdr = m;
    out->bytes = hdr.pool_bytes;
    out->slot_count = hdr.slot_count;
    out->fd = fd;
    return SS_OK;
}

int ss_pool_attach_as(const char *path, uid_t owner, ss_pool *out, char *err, size_t errlen)
{
    int rc = owner == SS_OWNER_OF_DIR ? dir_owner(path, &owner, err, errlen) : SS_OK;
    if (rc)
        return rc;
    int fd = ss_pool_open_fd(path, 0, 0, err, errlen);
    if (fd < 0)
        return fd;
    struct stat st;
    rc = ss_pool_check_private(fd, path, owner, &st, err, errlen);
    if (rc == SS_OK)
        rc = ss_pool_map_fd(fd, path, &st, out, err, errlen);
    if (rc)
        close(fd);
    return rc;
}

int ss_pool_attach(const char *path, ss_pool *out, char *err, size_t errlen)
{
    return ss_pool_attach_as(path, SS_OWNER_OF_DIR, out, err, errlen);
}

void ss_pool_detach(ss_pool *p)
{
    if (p->base) {
        munmap(p->base, p->bytes);
        close(p->fd);               /* and with it the daemon's lock */
    }
    memset(p, 0, sizeof(*p));
}

static void ringv(ss_ringv *v, ss_ring *r, uint8_t *data, uint64_t cap, uint32_t max_len)
{
    v->r = r;
    v->data = data;
    v->cap = cap;
    v->max_len = max_len;
}

void ss_slot_rings_init(ss_slot *s, uint32_t rate, ss_slot_rings *out)
{
    for (int t = 0; t < SS_TRACKS; t++)
        ringv(&out->up[t], &s->up[t], s->up_data[t], ss_up_bytes(rate), ss_frame_bytes_max(rate));
    ringv(&out->down, &s->down, s->down_data, ss_down_bytes(rate), 0);
    ringv(&out->ctl_in, &s->ctl_in, s->ctl_in_data, SS_CTL_BYTES, SS_CTL_MSG_MAX);
    ringv(&out->ctl_out, &s->ctl_out, s->ctl_out_data, SS_CTL_BYTES, SS_CTL_MSG_MAX);
}

int ss_slot_alloc(ss_pool *p, uint32_t idx, uint32_t rate, uint32_t tracks, char *err,
                  size_t errlen)
{
    ss_slot *s = ss_pool_slot(p, idx);
    uint64_t base = slot_offset(idx);
    struct { const uint8_t *at; uint64_t len; } part[] = {
        {s->up_data[SS_TRACK_IN], tracks & SS_TRACKS_MASK_IN ? ss_up_bytes(rate) : 0},
        {s->up_data[SS_TRACK_OUT], tracks & SS_TRACKS_MASK_OUT ? ss_up_bytes(rate) : 0},
        {s->down_data, ss_down_bytes(rate)},
        {s->ctl_in_data, 2u * SS_CTL_BYTES},   /* ctl_in and ctl_out, side by side */
    };
    for (size_t i = 0; i < sizeof part / sizeof part[0]; i++) {
        off_t off = (off_t)(base + (uint64_t)(part[i].at - (const uint8_t *)s));
        int e = part[i].len ? posix_fallocate(p->fd, off, (off_t)part[i].len) : 0;
        if (e)
            return fail(err, errlen, SS_E_SYS, "pool memory full: %llu bytes for a call: %s "
                        "(make its filesystem bigger, Docker: shm_size)",
                        (unsigned long long)ss_call_bytes(rate, tracks), strerror(e));
    }
    return SS_OK;
}

void ss_slot_release(ss_pool *p, uint32_t idx)
{
    /* Best effort: pages a filesystem cannot punch stay allocated, as before. */
    (void)fallocate(p->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    (off_t)(slot_offset(idx) + SS_SLOT_DATA_OFFSET),
                    (off_t)(sizeof(ss_slot) - SS_SLOT_DATA_OFFSET));
}

uint64_t ss_pool_stale_ns(const ss_pool *p)
{
    uint64_t ns = atomic_load_explicit(&p->hdr->heartbeat_stale_ns, memory_order_relaxed);
    if (!ns)
        return SS_HEARTBEAT_STALE_NS;
    return ns < SS_HEARTBEAT_STALE_MIN_NS ? SS_HEARTBEAT_STALE_MIN_NS
         : ns > SS_HEARTBEAT_STALE_MAX_NS ? SS_HEARTBEAT_STALE_MAX_NS : ns;
}

int ss_pool_daemon_health(const ss_pool *p, uint64_t now_ns)
{
    if (atomic_load_explicit(&p->hdr->daemon_state, memory_order_acquire) == SS_DAEMON_STOPPED)
        return SS_HEALTH_STOPPED;
    uint64_t hb = atomic_load_explicit(&p->hdr->heartbeat_ns, memory_order_acquire);
    if (!hb)
        return SS_HEALTH_STOPPED;   /* none yet, or one that left cleanly */
    /* A heartbeat ahead of our clock is another clock's skew: alive. */
    return now_ns < hb || now_ns - hb < ss_pool_stale_ns(p) ? SS_HEALTH_ALIVE : SS_HEALTH_LOST;
}

const char *ss_health_name(int health)
{
    return health == SS_HEALTH_ALIVE ? "alive" : health == SS_HEALTH_STOPPED ? "stopped" : "lost";
}

int ss_pool_daemon_alive(const ss_pool *p, uint64_t now_ns)
{
    return ss_pool_daemon_health(p, now_ns) == SS_HEALTH_ALIVE;
}
