/* test_private.c: a pool no one else can reach or break: owner, mode and
 * symlink checks on attach, memory allocated before it is touched (a full
 * tmpfs is an error, never a SIGBUS), one daemon per pool, and how the module tells a
 * clean stop from a lost daemon. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "check.h"
#include "ss_daemon.h"
#include "ss_stream.h"

#define OTHER_UID 4242u

/* Handing files to another user takes root; elsewhere those cases say so and pass. */
static int as_root(const char *name)
{
    if (geteuid() == 0)
        return 1;
    printf("skip %s: needs root\n", name);
    return 0;
}

static void make_pool(char *path, const char *name, uint32_t slots, mode_t mode)
{
    ss_pool p;
    char err[256];
    check_path(path, name);
    CHECK_EQ(ss_pool_create(path, slots, mode, &p, err, sizeof err), SS_OK);
    ss_pool_detach(&p);
}

static void expect_attach(const char *path, uid_t owner, int rc, const char *msg)
{
    ss_pool p;
    char err[256] = "";
    CHECK_EQ(ss_pool_attach_as(path, owner, &p, err, sizeof err), rc);
    if (rc == SS_OK)
        ss_pool_detach(&p);
    else
        CHECK_STR(err, msg);
}

static void expect_daemon_open(const char *path, int rc, const char *msg)
{
    ss_pool p;
    int reattached;
    char err[256] = "";
    CHECK_EQ(ss_daemon_open(path, 1, 0660, &p, &reattached, err, sizeof err), rc);
    CHECK_STR(err, msg);
}

static void test_attach_refuses_another_owner(void)
{
    char path[CHECK_PATH_MAX], want[512];
    if (!as_root(__func__))
        return;
    make_pool(path, "owner.pool", 1, 0660);
    expect_attach(path, SS_OWNER_OF_DIR, SS_OK, "");
    snprintf(want, sizeof want, "refusing pool %s: owned by uid %u, expected uid %u", path,
             (unsigned)getuid(), OTHER_UID);
    expect_attach(path, OTHER_UID, SS_E_PERM, want);

    /* Someone else's file where the pool should be: neither side uses it. */
    CHECK_EQ(chown(path, OTHER_UID, (gid_t)-1), 0);
    snprintf(want, sizeof want, "refusing pool %s: owned by uid %u, expected uid %u", path,
             OTHER_UID, (unsigned)getuid());
    expect_attach(path, SS_OWNER_OF_DIR, SS_E_PERM, want);
    expect_daemon_open(path, SS_E_PERM, want);
}

static void test_attach_refuses_bits_for_others(void)
{
    char path[CHECK_PATH_MAX], want[512], err[256];
    ss_pool p;
    int reattached;
    make_pool(path, "mode.pool", 1, 0600);
    CHECK_EQ(chmod(path, 0664), 0);
    snprintf(want, sizeof want,
             "refusing pool %s: mode 0664 lets other users in (no bits for others)", path);
    expect_attach(path, SS_OWNER_OF_DIR, SS_E_PERM, want);
    expect_daemon_open(path, SS_E_PERM, want);
    CHECK_EQ(chmod(path, 0660), 0);
    expect_attach(path, SS_OWNER_OF_DIR, SS_OK, "");

    check_path(path, "no-such-dir/x.pool");
    snprintf(want, sizeof want, "create %s: no such directory: make it 0750, owned by this user, "
             "group FreeSWITCH's (systemd: RuntimeDirectory=)", path);
    expect_daemon_open(path, SS_E_SYS, want);

    check_path(path, "mode2.pool");
    CHECK_EQ(ss_pool_create(path, 1, 0666, &p, err, sizeof err), SS_E_ARG);
    CHECK_STR(err, "pool mode 0666: only owner and group bits are allowed (e.g. 0660)");
    CHECK_EQ(ss_daemon_open(path, 1, 0604, &p, &reattached, err, sizeof err), SS_E_ARG);
    CHECK_STR(err, "pool mode 0604: only owner and group bits are allowed (e.g. 0660)");
    CHECK(access(path, F_OK) != 0);
}

static void test_attach_refuses_a_symlink(void)
{
    char path[CHECK_PATH_MAX], link[CHECK_PATH_MAX], want[512];
    struct stat before, after;
    make_pool(path, "real.pool", 1, 0660);
    check_path(link, "link.pool");
    CHECK_EQ(symlink(path, link), 0);
    snprintf(want, sizeof want, "refusing pool %s: it is a symbolic link", link);
    expect_attach(link, SS_OWNER_OF_DIR, SS_E_PERM, want);
    CHECK_EQ(stat(path, &before), 0);
    expect_daemon_open(link, SS_E_PERM, want);
    CHECK_EQ(stat(path, &after), 0);
    CHECK_EQ(after.st_mtime, before.st_mtime);                  /* the target left alone */

    check_path(link, "fifo.pool");                             /* would block a plain open */
    CHECK_EQ(mkfifo(link, 0600), 0);
    snprintf(want, sizeof want, "refusing pool %s: not a regular file", link);
    expect_attach(link, SS_OWNER_OF_DIR, SS_E_PERM, want);
}

/* A pool only sized (all holes but its first page) gets its headers
 * allocated by whoever attaches it; ring pages only come with calls. */
static void test_sparse_pool_headers_allocated_on_attach(void)
{
    char path[CHECK_PATH_MAX];
    make_pool(path, "sparse.pool", 2, 0660);
    ss_pool_hdr hdr;
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0);
    CHECK_EQ(pread(fd, &hdr, sizeof hdr, 0), sizeof hdr);
    CHECK_EQ(ftruncate(fd, 0), 0);
    CHECK_EQ(ftruncate(fd, (off_t)ss_pool_bytes(2)), 0);
    CHECK_EQ(pwrite(fd, &hdr, sizeof hdr, 0), sizeof hdr);
    struct stat st;
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK((uint64_t)st.st_blocks * 512 < ss_pool_fixed_bytes(2));
    expect_attach(path, SS_OWNER_OF_DIR, SS_OK, "");
    CHECK_EQ(fstat(fd, &st), 0);
    CHECK_EQ((uint64_t)st.st_blocks * 512, ss_pool_fixed_bytes(2));
    close(fd);
}

/* A 1 MiB tmpfs: headers for 100 slots, rings for a few 8 kHz calls. */
static int mount_small_tmpfs(char *dir)
{
    strcpy(dir, "/tmp/ss-tmpfs-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    if (mount("tmpfs", dir, "tmpfs", 0, "size=1m,mode=0700") == 0)
        return 1;
    printf("skip test_full_tmpfs: cannot mount a tmpfs here (%s): needs root\n", strerror(errno));
    rmdir(dir);
    return 0;
}

/* Fill what is left of the filesystem, as other files would. */
static void fill_up(const char *dir)
{
    char path[256];
    static uint8_t block[4096];
    snprintf(path, sizeof path, "%s/filler", dir);
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    while (write(fd, block, sizeof block) == (ssize_t)sizeof block)
        ;
    CHECK_EQ(errno, ENOSPC);
    close(fd);
}

static blkcnt_t blocks(const char *path)
{
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    return st.st_blocks;
}

/* A full filesystem is an error at creation or at a call's claim, never a
 * SIGBUS: every page a call touches is allocated before its first write,
 * and a freed slot gives its pages back. */
static void test_full_tmpfs(void)
{
    char dir[64], path[128], err[256], want[512];
    ss_pool p;
    int reattached;
    if (!mount_small_tmpfs(dir))
        return;
    snprintf(path, sizeof path, "%s/many.pool", dir);
    CHECK_EQ(ss_pool_create(path, 200, 0660, &p, err, sizeof err), SS_E_SYS);
    int n = snprintf(want, sizeof want, "pool %s needs %llu bytes of headers (%llu per slot, and "
                     "%llu per 8 kHz call), its filesystem has ", path,
                     (unsigned long long)ss_pool_fixed_bytes(200),
                     (unsigned long long)SS_SLOT_DATA_OFFSET,
                     (unsigned long long)ss_call_bytes(8000, SS_TRACKS_MASK_IN));
    CHECK(strncmp(err, want, (size_t)n) == 0);
    CHECK(strstr(err, "make it bigger (Docker: shm_size) or use fewer slots") != NULL);
    CHECK(access(path, F_OK) != 0);                             /* nothing half-made left */
    CHECK_EQ(ss_daemon_open(path, 200, 0660, &p, &reattached, err, sizeof err), SS_E_SYS);
    CHECK(strncmp(err, want, (size_t)n) == 0);
    CHECK(access(path, F_OK) != 0);

    snprintf(path, sizeof path, "%s/four.pool", dir);
    CHECK_EQ(ss_daemon_open(path, 4, 0660, &p, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(blocks(path) * 512, (blkcnt_t)ss_pool_fixed_bytes(4));
    ss_call c = {.uuid = "u", .target = "t:1", .channel_rate = 8000, .tracks = SS_TRACKS_MASK_IN};
    ss_stream s, t;
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_OK);
    CHECK_EQ(blocks(path) * 512, (blkcnt_t)(ss_pool_fixed_bytes(4) + ss_call_bytes(8000, c.tracks)));
    fill_up(dir);
    /* Every ring the call uses is written on a full filesystem: no SIGBUS. */
    int16_t frame[160] = {0};
    for (int i = 0; i < 4000; i++)                              /* the up ring wraps several times */
        CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, (uint64_t)i, frame, 160), SS_OK);
    ss_slot_rings d;
    ss_slot_rings_init(s.slot, 8000, &d);
    static uint8_t tts[SS_DOWN_BYTES];
    CHECK_EQ(ss_byte_write(&d.down, tts, sizeof tts), ss_down_bytes(8000));
    static char msg[SS_CTL_MSG_MAX];
    while (ss_stream_post(&s, SS_CTL_PAYLOAD, msg, sizeof msg) == SS_OK)
        ;
    while (ss_rec_write(&d.ctl_out, SS_CTL_EVENT, 0, 0, msg, sizeof msg, 0) == SS_OK)
        ;
    /* No room for a second call: refused, its slot free again. */
    CHECK_EQ(ss_stream_open(&p, &c, &t, err, sizeof err), SS_E_SYS);
    CHECK(strncmp(err, "pool memory full: ", 18) == 0);
    uint32_t gen;
    CHECK_EQ(ss_slot_state(ss_pool_slot(&p, 1), &gen), SS_SLOT_FREE);
    /* The first call ends; freeing its slot gives the pages to the next. */
    CHECK_EQ(ss_stream_close(&s, SS_END_HANGUP), SS_OK);
    CHECK_EQ(ss_slot_free(&p, s.idx, s.gen), SS_OK);
    CHECK_EQ(ss_stream_open(&p, &c, &t, err, sizeof err), SS_OK);
    for (int i = 0; i < 4000; i++)
        CHECK_EQ(ss_stream_write(&t, SS_TRACK_IN, (uint64_t)i, frame, 160), SS_OK);
    ss_pool_detach(&p);
    CHECK_EQ(umount2(dir, MNT_DETACH), 0);
    CHECK_EQ(rmdir(dir), 0);
}

/* Another local user can neither open the pool (0660, not in its group) nor
 * truncate it, nor put a file of its own in the pool's directory: a live
 * writer goes on untouched. Run as that user in a forked child; the
 * directory lets it through (0711) so that the file's mode is what stops it. */
static void test_other_user_cannot_truncate_or_replace(void)
{
    char dir[64] = "/dev/shm/ss-other-XXXXXX", path[128], decoy[128], err[256];
    ss_pool p;
    int reattached;
    if (!as_root(__func__))
        return;
    CHECK(mkdtemp(dir) != NULL);
    CHECK_EQ(chmod(dir, 0711), 0);
    snprintf(path, sizeof path, "%s/truncate.pool", dir);
    snprintf(decoy, sizeof decoy, "%s/decoy.pool", dir);
    CHECK_EQ(ss_daemon_open(path, 1, 0660, &p, &reattached, err, sizeof err), SS_OK);
    ss_call c = {.uuid = "u", .target = "t:1", .channel_rate = 8000, .tracks = SS_TRACKS_MASK_IN};
    ss_stream s;
    int16_t frame[160] = {0};
    CHECK_EQ(ss_stream_open(&p, &c, &s, err, sizeof err), SS_OK);
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        if (setgid(OTHER_UID) || setuid(OTHER_UID))
            _exit(10);
        int bad = truncate(path, 4096) == 0 || errno != EACCES;
        bad |= (open(path, O_RDONLY) >= 0) << 1;
        bad |= (open(decoy, O_CREAT | O_WRONLY, 0600) >= 0) << 2;
        _exit(bad);
    }
    int status;
    CHECK_EQ(waitpid(child, &status, 0), child);
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
    struct stat st;
    CHECK_EQ(stat(path, &st), 0);
    CHECK_EQ(st.st_size, ss_pool_bytes(1));
    for (int i = 0; i < 100; i++)
        CHECK_EQ(ss_stream_write(&s, SS_TRACK_IN, (uint64_t)i, frame, 160), SS_OK);
    ss_pool_detach(&p);
    CHECK_EQ(unlink(path), 0);
    CHECK_EQ(rmdir(dir), 0);
}

static void test_second_daemon_refused(void)
{
    char path[CHECK_PATH_MAX], err[256], want[512];
    ss_pool a, b;
    int reattached;
    check_path(path, "lock.pool");
    CHECK_EQ(ss_daemon_open(path, 2, 0660, &a, &reattached, err, sizeof err), SS_OK);
    uint32_t epoch = atomic_load(&a.hdr->daemon_epoch);
    snprintf(want, sizeof want, "pool %s is in use by another smartstream daemon (pid %d)", path,
             (int)getpid());
    expect_daemon_open(path, SS_E_BUSY, want);
    CHECK_EQ(atomic_load(&a.hdr->daemon_epoch), epoch);         /* the live one untouched */
    CHECK_EQ(atomic_load(&a.hdr->daemon_pid), getpid());
    ss_daemon_leave(&a);
    ss_pool_detach(&a);                                         /* the lock goes with it */
    CHECK_EQ(ss_daemon_open(path, 2, 0660, &b, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(reattached, 1);
    CHECK_EQ(atomic_load(&b.hdr->daemon_epoch), epoch + 1);
    ss_pool_detach(&b);
}

static void test_stopped_at_once_lost_when_stale(void)
{
    char path[CHECK_PATH_MAX], err[256];
    ss_pool d, m;
    int reattached;
    check_path(path, "health.pool");
    CHECK_EQ(ss_daemon_open(path, 1, 0660, &d, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(ss_pool_attach(path, &m, err, sizeof err), SS_OK);
    uint64_t hb = 100ull * 1000000000ull;
    ss_daemon_heartbeat(&d, hb);
    CHECK_EQ(ss_pool_stale_ns(&m), SS_HEARTBEAT_STALE_NS);
    CHECK_EQ(ss_pool_daemon_health(&m, hb + SS_HEARTBEAT_STALE_NS - 1), SS_HEALTH_ALIVE);
    CHECK_EQ(ss_pool_daemon_health(&m, hb + SS_HEARTBEAT_STALE_NS), SS_HEALTH_LOST);

    ss_daemon_set_stale_ns(&d, 50000000ull);                    /* configurable */
    CHECK_EQ(ss_pool_daemon_health(&m, hb + 50000000ull), SS_HEALTH_LOST);
    CHECK_EQ(ss_pool_daemon_health(&m, hb + 50000000ull - 1), SS_HEALTH_ALIVE);
    ss_daemon_set_stale_ns(&d, 1);                              /* clamped: loss stays visible */
    CHECK_EQ(ss_pool_stale_ns(&m), SS_HEARTBEAT_STALE_MIN_NS);
    ss_daemon_set_stale_ns(&d, UINT64_MAX);
    CHECK_EQ(ss_pool_stale_ns(&m), SS_HEARTBEAT_STALE_MAX_NS);

    ss_daemon_heartbeat(&d, hb);
    ss_daemon_leave(&d);                                        /* clean stop: known at once */
    CHECK_EQ(ss_pool_daemon_health(&m, hb), SS_HEALTH_STOPPED);
    CHECK_STR(ss_health_name(ss_pool_daemon_health(&m, hb)), "stopped");
    ss_pool_detach(&d);
    CHECK_EQ(ss_daemon_open(path, 1, 0660, &d, &reattached, err, sizeof err), SS_OK);
    CHECK_EQ(ss_pool_daemon_health(&m, ss_now_ns()), SS_HEALTH_ALIVE);
    ss_pool_detach(&d);
    ss_pool_detach(&m);
}

const check_case private_cases[] = {
    CASE(test_attach_refuses_another_owner),
    CASE(test_attach_refuses_bits_for_others),
    CASE(test_attach_refuses_a_symlink),
    CASE(test_sparse_pool_headers_allocated_on_attach),
    CASE(test_full_tmpfs),
    CASE(test_other_user_cannot_truncate_or_replace),
    CASE(test_second_daemon_refused),
    CASE(test_stopped_at_once_lost_when_stale),
    {0, 0},
};
