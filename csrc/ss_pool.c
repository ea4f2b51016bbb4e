/* ss_pool.c: creating, validating and mapping the pool file. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
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

static uint64_t pool_bytes_for(uint32_t slots)
{
    return SS_POOL_HDR_BYTES + (uint64_t)slots * sizeof(ss_slot);
}

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
    if (h->pool_bytes != pool_bytes_for(h->slot_count))
        return fail(err, errlen, SS_E_CORRUPT, "pool_bytes %llu does not match %u slots",
                    (unsigned long long)h->pool_bytes, h->slot_count);
    if (len < h->pool_bytes)
        return fail(err, errlen, SS_E_CORRUPT, "pool truncated: file is %zu bytes, header says %llu",
                    len, (unsigned long long)h->pool_bytes);
    return SS_OK;
}

/* slots comes from the header copy that was validated: the mapping could
 * have been rewritten since, and must not be trusted for bounds. */
static int map_fd(int fd, size_t bytes, uint32_t slots, ss_pool *out, char *err, size_t errlen)
{
    void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return fail(err, errlen, SS_E_SYS, "mmap: %s", strerror(errno));
    out->base = m;
    out->hdr = m;
    out->bytes = bytes;
    out->slot_count = slots;
    return SS_OK;
}

int ss_pool_create(const char *path, uint32_t slots, mode_t mode, ss_pool *out,
                   char *err, size_t errlen)
{
    if (slots == 0 || slots > SS_SLOTS_MAX)
        return fail(err, errlen, SS_E_ARG, "slot count %u out of range 1..%u", slots, SS_SLOTS_MAX);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return fail(err, errlen, SS_E_SYS, "create %s: %s", path, strerror(errno));
    uint64_t bytes = pool_bytes_for(slots);
    /* fchmod: the umask must not strip the group bits FreeSWITCH needs. */
    if (fchmod(fd, mode) < 0 || ftruncate(fd, (off_t)bytes) < 0) {
        int e = errno;
        close(fd);
        unlink(path);
        return fail(err, errlen, SS_E_SYS, "size %s: %s", path, strerror(e));
    }
    /* A fresh file reads as zeros: every slot FREE, every ring empty. */
    ss_pool_hdr *h = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (h == MAP_FAILED) {
        int e = errno;
        close(fd);
        unlink(path);
        return fail(err, errlen, SS_E_SYS, "mmap %s: %s", path, strerror(e));
    }
    h->version = SS_LAYOUT_VERSION;
    h->header_bytes = SS_POOL_HDR_BYTES;
    h->slot_count = slots;
    h->slot_bytes = sizeof(ss_slot);
    h->pool_bytes = bytes;
    /* Magic last: a reader that sees it sees a complete header. */
    atomic_thread_fence(memory_order_release);
    h->magic = SS_POOL_MAGIC;
    close(fd);
    out->base = (uint8_t *)h;
    out->hdr = h;
    out->bytes = bytes;
    out->slot_count = slots;
    return SS_OK;
}

int ss_pool_attach(const char *path, ss_pool *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return fail(err, errlen, errno == ENOENT ? SS_E_NODAEMON : SS_E_SYS, "open %s: %s",
                    path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, SS_E_SYS, "stat %s: %s", path, strerror(e));
    }
    size_t len = (size_t)st.st_size;
    ss_pool_hdr hdr;
    if (len < sizeof(hdr) || pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
        close(fd);
        return fail(err, errlen, SS_E_CORRUPT, "pool truncated: %s is %zu bytes", path, len);
    }
    /* Only the header is read; len is the file's size, so a short file fails here. */
    int rc = ss_pool_validate(&hdr, len, err, errlen);
    if (rc == SS_OK)
        rc = map_fd(fd, hdr.pool_bytes, hdr.slot_count, out, err, errlen);
    close(fd);
    return rc;
}

void ss_pool_detach(ss_pool *p)
{
    if (p->base)
        munmap(p->base, p->bytes);
    memset(p, 0, sizeof(*p));
}

static void ringv(ss_ringv *v, ss_ring *r, uint8_t *data, uint64_t cap, uint32_t max_len)
{
    v->r = r;
    v->data = data;
    v->cap = cap;
    v->max_len = max_len;
}

void ss_slot_rings_init(ss_slot *s, ss_slot_rings *out)
{
    for (int t = 0; t < SS_TRACKS; t++)
        ringv(&out->up[t], &s->up[t], s->up_data[t], SS_UP_BYTES, SS_FRAME_BYTES_MAX);
    ringv(&out->down, &s->down, s->down_data, SS_DOWN_BYTES, 0);
    ringv(&out->ctl_in, &s->ctl_in, s->ctl_in_data, SS_CTL_BYTES, SS_CTL_MSG_MAX);
    ringv(&out->ctl_out, &s->ctl_out, s->ctl_out_data, SS_CTL_BYTES, SS_CTL_MSG_MAX);
}

int ss_pool_daemon_alive(const ss_pool *p, uint64_t now_ns)
{
    uint64_t hb = atomic_load_explicit(&p->hdr->heartbeat_ns, memory_order_acquire);
    return hb && now_ns >= hb ? now_ns - hb < SS_HEARTBEAT_STALE_NS : hb != 0;
}
