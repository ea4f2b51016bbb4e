/* test_pool.c: pool files (create, attach, validate) and the daemon's open. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "ss_daemon.h"

#define SLOT_BYTES ((unsigned long long)sizeof(ss_slot))

static uint64_t pool_bytes(uint32_t slots) { return SS_POOL_HDR_BYTES + slots * SLOT_BYTES; }

static void make_pool(char *path, const char *name, uint32_t slots)
{
    ss_pool p;
    char err[256];
    check_path(path, name);
    CHECK_EQ(ss_pool_create(path, slots, 0600, &p, err, sizeof err), SS_OK);
    ss_pool_detach(&p);
}

/* Overwrite bytes of a pool file's header, as something else might. */
static void poke(const char *path, size_t off, const void *val, size_t len)
{
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK_EQ(pwrite(fd, val, len, (off_t)off), len);
    close(fd);
}

static void expect_attach_error(const char *path, int rc, const char *msg)
{
    ss_pool p;
    char err[256] = "";
    CHECK_EQ(ss_pool_attach(path, &p, err, sizeof err), rc);
    CHECK_STR(err, msg);
}

static void test_pool_create_and_attach(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p, q;
    struct stat st;
    check_path(path, "a.pool");
    mode_t old = umask(077);          /* the group bits must survive a strict umask */
    int rc = ss_pool_create(path, 3, 0660, &p, err, sizeof err);
    umask(old);
    CHECK_EQ(rc, SS_OK);
    CHECK_EQ(p.slot_count, 3);
    CHECK_EQ(p.bytes, pool_bytes(3));
    CHECK_EQ(p.hdr->magic, SS_POOL_MAGIC);
    CHECK_EQ(p.hdr->version, SS_LAYOUT_VERSION);
    CHECK_EQ(p.hdr->header_bytes, SS_POOL_HDR_BYTES);
    CHECK_EQ(p.hdr->slot_bytes, SLOT_BYTES);
    CHECK_EQ(p.hdr->pool_bytes, pool_bytes(3));
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_size, pool_bytes(3));
    CHECK_EQ(st.st_mode & 0777, 0660);
    CHECK_EQ(ss_pool_daemon_alive(&p, ss_now_ns()), 0);      /* no heartbeat yet */
    for (uint32_t i = 0; i < 3; i++)
        CHECK_EQ(atomic_load(&ss_pool_slot(&p, i)->hdr.state), SS_SLOT_FREE);

    CHECK_EQ(ss_pool_attach(path, &q, err, sizeof err), SS_OK);
    CHECK_EQ(q.slot_count, 3);
    CHECK_EQ(q.bytes, pool_bytes(3));
    ss_pool_slot(&p, 2)->hdr.channel_rate = 8000;             /* one file, two mappings */
    CHECK_EQ(ss_pool_slot(&q, 2)->hdr.channel_rate, 8000);

    ss_pool r;
    char want[256];
    snprintf(want, sizeof want, "create %s: File exists", path);
    CHECK_EQ(ss_pool_create(path, 3, 0660, &r, err, sizeof err), SS_E_SYS);
    CHECK_STR(err, want);
    ss_pool_detach(&p);
    ss_pool_detach(&q);
    CHECK(p.base == NULL && q.base == NULL);
}

static void test_pool_create_rejects_slot_counts(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p;
    check_path(path, "c.pool");
    CHECK_EQ(ss_pool_create(path, 0, 0600, &p, err, sizeof err), SS_E_ARG);
    CHECK_STR(err, "slot count 0 out of range 1..65536");
    CHECK_EQ(ss_pool_create(path, SS_SLOTS_MAX + 1, 0600, &p, err, sizeof err), SS_E_ARG);
    CHECK_STR(err, "slot count 65537 out of range 1..65536");
    CHECK(access(path, F_OK) != 0);
}

static void expect_invalid(const ss_pool_hdr *h, size_t len, const char *want)
{
    char err[256] = "";
    CHECK_EQ(ss_pool_validate(h, len, err, sizeof err), SS_E_CORRUPT);
    CHECK_STR(err, want);
}

/* Every header field is checked, and the message says which. */
static void test_pool_validate_names_the_field(void)
{
    const ss_pool_hdr good = {
        .magic = SS_POOL_MAGIC, .version = SS_LAYOUT_VERSION, .header_bytes = SS_POOL_HDR_BYTES,
        .slot_count = 2, .slot_bytes = sizeof(ss_slot), .pool_bytes = pool_bytes(2),
    };
    size_t len = pool_bytes(2);
    char err[256], want[256];
    ss_pool_hdr h = good;
    CHECK_EQ(ss_pool_validate(&good, len, err, sizeof err), SS_OK);

    snprintf(want, sizeof want, "pool truncated: 16 bytes, header needs %zu", sizeof h);
    expect_invalid(&h, 16, want);
    h.magic = 0x1234;
    expect_invalid(&h, len, "not a smartstream pool: bad magic 0x1234");
    h = good;
    h.version = SS_LAYOUT_VERSION + 1;
    snprintf(want, sizeof want, "pool layout version %u, this build knows %u",
             SS_LAYOUT_VERSION + 1, SS_LAYOUT_VERSION);
    expect_invalid(&h, len, want);
    h = good;
    h.header_bytes = 8192;
    expect_invalid(&h, len, "pool header_bytes 8192, expected 4096");
    h = good;
    h.slot_bytes += 64;
    snprintf(want, sizeof want, "pool slot_bytes %llu, expected %llu", SLOT_BYTES + 64, SLOT_BYTES);
    expect_invalid(&h, len, want);
    h = good;
    h.slot_count = 0;
    expect_invalid(&h, len, "pool slot_count 0 out of range 1..65536");
    h = good;
    h.pool_bytes += 1;
    snprintf(want, sizeof want, "pool_bytes %zu does not match 2 slots", len + 1);
    expect_invalid(&h, len, want);
    snprintf(want, sizeof want, "pool truncated: file is %zu bytes, header says %zu", len - 1, len);
    expect_invalid(&good, len - 1, want);
}

static void test_pool_attach_rejects_bad_files(void)
{
    char path[CHECK_PATH_MAX], want[512];
    make_pool(path, "d.pool", 2);

    uint64_t magic = 0x1234;
    poke(path, offsetof(ss_pool_hdr, magic), &magic, sizeof magic);
    expect_attach_error(path, SS_E_CORRUPT, "not a smartstream pool: bad magic 0x1234");
    magic = SS_POOL_MAGIC;
    poke(path, offsetof(ss_pool_hdr, magic), &magic, sizeof magic);

    uint32_t version = SS_LAYOUT_VERSION + 1;
    poke(path, offsetof(ss_pool_hdr, version), &version, sizeof version);
    snprintf(want, sizeof want, "pool layout version %u, this build knows %u", version,
             SS_LAYOUT_VERSION);
    expect_attach_error(path, SS_E_CORRUPT, want);
    version = SS_LAYOUT_VERSION;
    poke(path, offsetof(ss_pool_hdr, version), &version, sizeof version);

    uint64_t slot_bytes = sizeof(ss_slot) - 64;
    poke(path, offsetof(ss_pool_hdr, slot_bytes), &slot_bytes, sizeof slot_bytes);
    snprintf(want, sizeof want, "pool slot_bytes %llu, expected %llu", SLOT_BYTES - 64, SLOT_BYTES);
    expect_attach_error(path, SS_E_CORRUPT, want);
    slot_bytes = sizeof(ss_slot);
    poke(path, offsetof(ss_pool_hdr, slot_bytes), &slot_bytes, sizeof slot_bytes);

    ss_pool p;
    char err[256];
    CHECK_EQ(ss_pool_attach(path, &p, err, sizeof err), SS_OK); /* all put back */
    ss_pool_detach(&p);

    CHECK_EQ(truncate(path, (off_t)pool_bytes(2) - 4096), 0);
    snprintf(want, sizeof want, "pool truncated: file is %llu bytes, header says %llu",
             (unsigned long long)pool_bytes(2) - 4096, (unsigned long long)pool_bytes(2));
    expect_attach_error(path, SS_E_CORRUPT, want);

    CHECK_EQ(truncate(path, 10), 0);
    snprintf(want, sizeof want, "pool truncated: %s is 10 bytes", path);
    expect_attach_error(path, SS_E_CORRUPT, want);

    check_path(path, "missing.pool");
    snprintf(want, sizeof want, "open %s: No such file or directory", path);
    expect_attach_error(path, SS_E_NODAEMON, want);
}

static void test_pool_heartbeat_goes_stale(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p;
    check_path(path, "e.pool");
    CHECK_EQ(ss_pool_create(path, 1, 0600, &p, err, sizeof err), SS_OK);
    uint64_t hb = 50ull * 1000000000ull;
    ss_daemon_heartbeat(&p, hb);
    CHECK_EQ(ss_pool_daemon_alive(&p, hb), 1);
    CHECK_EQ(ss_pool_daemon_alive(&p, hb + SS_HEARTBEAT_STALE_NS - 1), 1);
    CHECK_EQ(ss_pool_daemon_alive(&p, hb + SS_HEARTBEAT_STALE_NS), 0);
    CHECK_EQ(ss_pool_daemon_alive(&p, hb - 1), 1);              /* another clock's skew: alive */
    ss_daemon_heartbeat(&p, 0);
    CHECK_EQ(ss_pool_daemon_alive(&p, hb), 0);
    ss_pool_detach(&p);
}

/* A restarted daemon finds its pool, calls and all. (Refusing a file that
 * another uid owns cannot be tested as root: root owns what it creates.) */
static void test_daemon_open_reattaches(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool p;
    int reattached = -1;
    check_path(path, "f.pool");
    CHECK_EQ(ss_daemon_open(path, 4, 0600, &p, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(reattached, 0);
    CHECK_EQ(p.slot_count, 4);
    CHECK_EQ(atomic_load(&p.hdr->daemon_epoch), 1);
    CHECK_EQ(atomic_load(&p.hdr->daemon_pid), getpid());
    CHECK_EQ(ss_pool_daemon_alive(&p, ss_now_ns()), 1);
    ss_slot *s = ss_pool_slot(&p, 1);
    atomic_store(&s->hdr.state, SS_SLOT_ACTIVE);
    atomic_store(&s->hdr.generation, 5);
    ss_daemon_leave(&p);
    CHECK_EQ(ss_pool_daemon_alive(&p, ss_now_ns()), 0);
    CHECK_EQ(atomic_load(&p.hdr->daemon_pid), 0);
    ss_pool_detach(&p);

    CHECK_EQ(ss_daemon_open(path, 8, 0600, &p, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(reattached, 1);
    CHECK_EQ(p.slot_count, 4);                                  /* the file's, not the argument */
    CHECK_EQ(atomic_load(&p.hdr->daemon_epoch), 2);
    CHECK_EQ(ss_pool_daemon_alive(&p, ss_now_ns()), 1);
    uint32_t gen;
    CHECK_EQ(ss_slot_state(ss_pool_slot(&p, 1), &gen), SS_SLOT_ACTIVE);
    CHECK_EQ(gen, 5);
    ss_pool_detach(&p);
}

/* Something that is not a pool is left alone, not replaced. */
static void test_daemon_open_refuses_a_foreign_file(void)
{
    char path[CHECK_PATH_MAX], err[256];
    uint8_t junk[4096];
    ss_pool p;
    int reattached = -1;
    check_path(path, "g.pool");
    memset(junk, 0xab, sizeof junk);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    CHECK_EQ(write(fd, junk, sizeof junk), sizeof junk);
    close(fd);
    CHECK_EQ(ss_daemon_open(path, 2, 0600, &p, &reattached, err, sizeof err), SS_E_CORRUPT);
    CHECK_EQ(reattached, 0);
    CHECK_STR(err, "not a smartstream pool: bad magic 0xabababababababab");
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_size, sizeof junk);
}

/* A pool appears at its path only when complete: an attach racing its
 * creation finds a whole pool or none, never a header of zeros (a module
 * starting a call while the daemon starts used to read "bad magic 0"). */
static void test_create_is_never_seen_half_made(void)
{
    char path[CHECK_PATH_MAX], err[256];
    int done[2];
    check_path(path, "race.pool");
    CHECK_EQ(pipe(done), 0);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {               /* attach as fast as it can until the pipe closes */
        long whole = 0, half = 0;
        char byte;
        close(done[1]);
        fcntl(done[0], F_SETFL, O_NONBLOCK);
        while (read(done[0], &byte, 1) < 0) {
            ss_pool p;
            int rc = ss_pool_attach(path, &p, err, sizeof err);
            if (rc == SS_OK) {
                whole++;
                ss_pool_detach(&p);
            } else if (rc != SS_E_NODAEMON) {
                half++;
            }
        }
        _exit(half ? 1 : whole ? 0 : 2);
    }
    close(done[0]);
    for (int i = 0; i < 400; i++) {
        ss_pool p;
        CHECK_EQ(ss_pool_create(path, 64, 0600, &p, err, sizeof err), SS_OK);
        usleep(100);                /* long enough to be found whole */
        ss_pool_detach(&p);
        CHECK_EQ(unlink(path), 0);
    }
    close(done[1]);
    int status;
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);   /* 1: saw a half-made pool; 2: never saw one at all */
    char tmp[CHECK_PATH_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s.new-%ld", path, (long)getpid());
    CHECK(access(tmp, F_OK) < 0);      /* no temporary name left behind */
}

/* The temporary name must fit too: a path that leaves no room is refused
 * before anything is created. */
static void test_create_refuses_a_path_too_long(void)
{
    char path[4096], err[256];
    ss_pool p;
    memset(path, 'a', sizeof path - 1);
    path[0] = '/';
    path[sizeof path - 1] = '\0';
    CHECK_EQ(ss_pool_create(path, 1, 0600, &p, err, sizeof err), SS_E_ARG);
    CHECK_EQ(strncmp(err, "pool path too long: /aaa", 24), 0);
}

const check_case pool_cases[] = {
    CASE(test_pool_create_and_attach),
    CASE(test_pool_create_rejects_slot_counts),
    CASE(test_pool_validate_names_the_field),
    CASE(test_pool_attach_rejects_bad_files),
    CASE(test_pool_heartbeat_goes_stale),
    CASE(test_daemon_open_reattaches),
    CASE(test_daemon_open_refuses_a_foreign_file),
    CASE(test_create_is_never_seen_half_made),
    CASE(test_create_refuses_a_path_too_long),
    {0, 0},
};
