/*
 * open_hostile.c — opening a registry someone else could have tampered
 * with (issue 12, smaller things): modes that let others in, a symlink
 * planted in a parent directory, creation options that are refused (and
 * must leave nothing behind), and a handle closed twice.
 *
 * Runs as any user; the planted-symlink case needs root (to give the link
 * to another uid) and is skipped otherwise.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static const shmreg_options create = {.flags = SHMREG_CREATE, .max_sessions = 64};

static int open_close(const char *dir, const shmreg_options *o)
{
    shmreg *h;
    int rc = shmreg_open(dir, o, &h);
    if (rc == 0)
        shmreg_close(h);
    return rc;
}

static void test_modes(void)
{
    const char *d = test_dir("modes");
    char dir[512], seg[600];
    snprintf(dir, sizeof dir, "%s", d);
    snprintf(seg, sizeof seg, "%s/segment", dir);
    is(open_close(dir, &create), 0, "a fresh registry");
    chmod(dir, 0777);
    is(open_close(dir, NULL), SHMREG_EPERM, "directory 0777: SHMREG_EPERM");
    ok(strstr(shmreg_errmsg(), "0777") != NULL, "the message gives the mode (%s)", shmreg_errmsg());
    chmod(dir, 0705);
    is(open_close(dir, NULL), SHMREG_EPERM, "directory 0705 (others may read): SHMREG_EPERM");
    chmod(dir, 0770);
    is(open_close(dir, NULL), 0, "directory 0770 (group bits): accepted");
    chmod(seg, 0666);
    is(open_close(dir, NULL), SHMREG_EPERM, "segment 0666: SHMREG_EPERM");
    ok(strstr(shmreg_errmsg(), "segment") != NULL, "the message names the segment (%s)", shmreg_errmsg());
    chmod(seg, 0660);
    is(open_close(dir, NULL), 0, "segment 0660: accepted");
    is(shmreg_destroy(dir, 0), 0, "destroyed");
}

static void test_bad_options(void)
{
    static const struct { shmreg_options o; const char *what; } bad[] = {
        {{.flags = SHMREG_CREATE, .event_records = 100}, "event_records 100"},
        {{.flags = SHMREG_CREATE, .max_sessions = 1u << 27}, "max_sessions 2^27"},
        {{.flags = SHMREG_CREATE, .heap_bytes = 1ull << 41}, "heap_bytes 2^41"},
        {{.flags = SHMREG_CREATE, .max_rooms = 1u << 21}, "max_rooms 2^21"},
        {{.flags = SHMREG_CREATE, .max_rooms = (1u << 18) + 1}, "max_rooms 2^18 + 1"},
        {{.flags = SHMREG_CREATE, .max_handles = 5000}, "max_handles 5000"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *dir = test_dir("badopt");
        is(open_close(dir, &bad[i].o), SHMREG_EINVAL, "%s: SHMREG_EINVAL", bad[i].what);
        struct stat st;
        is(stat(dir, &st) == -1 ? errno : 0, ENOENT, "%s: no directory left behind", bad[i].what);
    }
    /* The largest room table: every index still fits a session's room
     * word (room.c), and a room made there works. */
    shmreg_options o = {.flags = SHMREG_CREATE, .max_rooms = 1u << 18};
    const char *dir = test_dir("maxrooms");
    shmreg *h = NULL;
    is(shmreg_open(dir, &o, &h), 0, "max_rooms 2^18: accepted");
    shmreg_stats st;
    ok(h && shmreg_stat(h, &st) == 0 && st.max_rooms == 1u << 18, "stat: capacity 262144");
    shmreg_id room, sess;
    ok(h && shmreg_room_create(h, (shmreg_str){"r", 1}, 2, &room) == 0 &&
           shmreg_session_create(h, NULL, &sess) == 0 &&
           shmreg_room_join(h, &room, &sess, (shmreg_str){"u", 1}, (shmreg_str){"", 0}, 1) == 0,
       "a room in it is joined");
    shmreg_id back;
    ok(h && shmreg_session_room(h, &sess, &back) == 0 && test_id_eq(&back, &room),
       "and the session's room word names it");
    shmreg_close(h);
    is(shmreg_destroy(dir, 0), 0, "destroyed");
}

static void test_symlinks(void)
{
    char base[512], real[600], link[600], reg[700];
    snprintf(base, sizeof base, "%s", test_dir("links"));
    mkdir(base, 0700);
    snprintf(real, sizeof real, "%s/real", base);
    snprintf(link, sizeof link, "%s/link", base);
    snprintf(reg, sizeof reg, "%s/reg", link);
    mkdir(real, 0700);
    if (symlink(real, link) != 0)
        bail_out("symlink: %s", strerror(errno));
    is(open_close(reg, &create), 0, "a symlink we own in a parent is followed");
    if (geteuid() != 0) {
        skip(2, "giving a symlink to another uid needs root");
    } else {
        if (lchown(link, 12345, 12345) != 0)
            bail_out("lchown: %s", strerror(errno));
        is(open_close(reg, NULL), SHMREG_EPERM, "a symlink owned by another uid in a parent: SHMREG_EPERM");
        ok(strstr(shmreg_errmsg(), "'link'") != NULL, "the message names the component (%s)",
           shmreg_errmsg());
    }
    char last[700];
    snprintf(last, sizeof last, "%s/last", base);
    symlink(real, last);
    is(open_close(last, NULL), SHMREG_EPERM, "the registry directory itself a symlink: SHMREG_EPERM");
    test_rm_rf(base);
}

static void test_double_close(void)
{
    shmreg *h;
    is(shmreg_open(test_dir("close"), &create, &h), 0, "open");
    is(shmreg_close(h), 0, "first close: 0");
    is(shmreg_close(h), SHMREG_EINVAL, "second close: SHMREG_EINVAL, no double free");
    ok(strstr(shmreg_errmsg(), "not open") != NULL, "and says so (%s)", shmreg_errmsg());
}

int main(void)
{
    umask(022);
    test_modes();
    test_bad_options();
    test_symlinks();
    test_double_close();
    return done_testing();
}
