/*
 * open.c — creating, attaching to, refusing and destroying registries.
 *
 * A registry is a directory (0700, or 0770 with a group) holding a sparse
 * segment file `segment` (0600/0660). Attaching checks who owns it and what
 * is in it; handle slots are limited; destroy refuses while another live
 * process is attached.
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <grp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static char *path_copy(const char *name)
{
    static char bufs[32][400];
    static int n;
    char *p = bufs[n++ % 32];
    snprintf(p, sizeof bufs[0], "%s", test_dir(name));
    return p;
}

static const char *seg_of(const char *dir)
{
    static char bufs[8][440];
    static int n;
    char *p = bufs[n++ % 8];
    snprintf(p, sizeof bufs[0], "%s/segment", dir);
    return p;
}

static int mode_of(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    return (int)(st.st_mode & 07777);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Count entries of `dir` whose mode is not `fmode` (regular files) or
 * `dmode` (directories); *nfiles gets the number of regular files. */
static int wrong_modes(const char *dir, int fmode, int dmode, int *nfiles)
{
    DIR *d = opendir(dir);
    int wrong = 0;
    *nfiles = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char p[600];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (lstat(p, &st) != 0)
            continue;
        int m = (int)(st.st_mode & 07777);
        if (S_ISREG(st.st_mode)) {
            (*nfiles)++;
            if (m != fmode) {
                wrong++;
                diag("%s has mode %04o, want %04o", p, m, fmode);
            }
        } else if (S_ISDIR(st.st_mode)) {
            if (m != dmode) {
                wrong++;
                diag("%s has mode %04o, want %04o", p, m, dmode);
            }
        } else {
            wrong++;
            diag("%s is neither a file nor a directory", p);
        }
    }
    closedir(d);
    return wrong;
}

static int write_file(const char *path, const void *buf, size_t len, int mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    if (fd < 0)
        return -1;
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w <= 0) { close(fd); return -1; }
        p += w;
        len -= (size_t)w;
    }
    fchmod(fd, (mode_t)mode);
    return close(fd);
}

static shmreg_options create_opts(uint32_t max_sessions)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = max_sessions;
    return o;
}

static void test_create(void)
{
    const char *P = path_copy("create");
    shmreg_options o = create_opts(100000);
    shmreg *h = NULL, *h2 = NULL, *h3 = NULL;
    uint64_t t0 = test_now_ns();

    is(shmreg_open(P, &o, &h), 0, "open with SHMREG_CREATE creates a registry");
    if (!h)
        bail_out("cannot create a registry at %s: %s", P, shmreg_errmsg());
    is_str(shmreg_path(h), P, "shmreg_path returns the directory it was opened on");

    struct stat st;
    ok(lstat(P, &st) == 0 && S_ISDIR(st.st_mode), "the registry is a directory");
    is(mode_of(P), 0700, "the registry directory is mode 0700");
    is(st.st_uid, geteuid(), "the directory belongs to the creating user");
    ok(lstat(seg_of(P), &st) == 0 && S_ISREG(st.st_mode),
       "the segment file PATH/segment is a regular file");
    is(mode_of(seg_of(P)), 0600, "the segment file is mode 0600");
    int nfiles = 0;
    is(wrong_modes(P, 0600, 0700, &nfiles), 0,
       "every file in the registry directory is 0600 (and subdirectories 0700)");
    ok(nfiles >= 1, "the directory holds at least the segment (%d files)", nfiles);

    uint64_t size = (uint64_t)st.st_size, used = (uint64_t)st.st_blocks * 512u;
    diag("segment for 100000 sessions: %llu bytes apparent, %llu bytes allocated",
         (unsigned long long)size, (unsigned long long)used);
    ok(size >= 100000ull * 8192u, "the segment is sized for its capacity");
    ok(used * 16 < size, "the segment is sparse: under 1/16 of it is allocated");

    shmreg_stats s;
    memset(&s, 0xff, sizeof s);
    is(shmreg_stat(h, &s), 0, "stat works on a fresh registry");
    is(s.segment_bytes, size, "stat.segment_bytes is the file size");
    is(s.max_sessions, 100000, "stat.max_sessions is the asked capacity");
    is(s.max_handles, 256, "stat.max_handles defaults to 256");
    is(s.heap_bytes, 100000ull * 8192u, "stat.heap_bytes defaults to 8 KiB per session");
    is(s.sessions, 0, "a fresh registry has no sessions");
    is(s.dialogs, 0, "a fresh registry has no dialogs");
    is(s.handles, 1, "a fresh registry has one handle attached");
    is(s.oldest_read_ns, 0, "no read section is open");
    is(s.config_gen, shmreg_config_gen(h), "stat.config_gen equals shmreg_config_gen");
    ok(s.created_ns + 1000000000ull >= t0 && s.created_ns <= test_now_ns() + 1000000000ull,
       "stat.created_ns is the creation time");

    is(shmreg_open(P, NULL, &h2), 0, "a second handle attaches without options");
    shmreg_stat(h, &s);
    is(s.handles, 2, "stat.handles counts both handles");

    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){ "sip:alice@example.org", 21 };
    shmreg_id id;
    is(shmreg_session_create(h, &f, &id), 0, "the first handle creates a session");
    shmreg_session v;
    is(shmreg_read_begin(h2), 0, "the second handle opens a read section");
    is(shmreg_session_get(h2, &id, &v), 0, "the second handle sees the session");
    is_mem(v.str[SHMREG_FIELD_FROM_URI].ptr, v.str[SHMREG_FIELD_FROM_URI].len,
           "sip:alice@example.org", 21, "with its from URI");
    shmreg_read_end(h2);

    shmreg_options small = create_opts(5);
    is(shmreg_open(P, &small, &h3), 0, "open with SHMREG_CREATE attaches to an existing registry");
    if (h3) {
        shmreg_stat(h3, &s);
        is(s.max_sessions, 100000, "creation options are ignored when attaching");
        shmreg_close(h3);
    }

    shmreg *hx = NULL;
    shmreg_options excl = create_opts(0);
    excl.flags |= SHMREG_EXCL;
    is(shmreg_open(P, &excl, &hx), SHMREG_EEXIST,
       "SHMREG_CREATE|SHMREG_EXCL on an existing registry gives SHMREG_EEXIST");

    is(shmreg_close(h2), 0, "closing the second handle returns 0");
    shmreg_stat(h, &s);
    is(s.handles, 1, "after closing it one handle is left");
    is(s.sessions, 1, "the session is still there");
    is(shmreg_close(h), 0, "closing the first handle returns 0");
    is(shmreg_close(NULL), 0, "closing NULL is a no-op returning 0");

    is(shmreg_open(P, NULL, &h), 0, "the registry can be reopened after every handle closed");
    if (h) {
        uint64_t c[SHMREG_STATE_COUNT];
        shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
        is(c[0], 1, "the session outlived the handles");
        shmreg_close(h);
    }
    is(shmreg_destroy(P, 0), 0, "destroy removes an unused registry");
    ok(!exists(P), "the directory is gone");
}

static void test_missing_and_invalid(void)
{
    const char *Q = path_copy("missing");
    shmreg *h = NULL;
    shmreg_options none;
    memset(&none, 0, sizeof none);

    is(shmreg_open(Q, NULL, &h), SHMREG_ENOENT,
       "opening a missing registry without options gives SHMREG_ENOENT");
    is(shmreg_open(Q, &none, &h), SHMREG_ENOENT,
       "opening a missing registry without SHMREG_CREATE gives SHMREG_ENOENT");
    ok(*shmreg_errmsg() != '\0', "and errmsg says something (%s)", shmreg_errmsg());
    ok(!exists(Q), "a failed open creates nothing");
    is(shmreg_destroy(Q, 0), SHMREG_ENOENT, "destroying a missing registry gives SHMREG_ENOENT");
    is(shmreg_destroy(Q, 1), SHMREG_ENOENT, "also with force");

    shmreg_options o = create_opts(16);
    is(shmreg_open(NULL, &o, &h), SHMREG_EINVAL, "a NULL path is SHMREG_EINVAL");
    is(shmreg_open(Q, &o, NULL), SHMREG_EINVAL, "a NULL out pointer is SHMREG_EINVAL");
    ok(!exists(Q), "and creates nothing");

    char *longp = malloc(8200);
    memset(longp, 'a', 8199);
    longp[0] = '/';
    longp[8199] = '\0';
    is(shmreg_open(longp, &o, &h), SHMREG_EINVAL, "an 8 KiB path is SHMREG_EINVAL");
    free(longp);

    o.max_handles = SHMREG_MAX_HANDLES + 1;
    is(shmreg_open(Q, &o, &h), SHMREG_EINVAL,
       "max_handles above SHMREG_MAX_HANDLES is SHMREG_EINVAL");
    ok(!exists(Q), "and creates nothing");

    o.max_handles = SHMREG_MAX_HANDLES;
    o.max_sessions = 4;
    is(shmreg_open(Q, &o, &h), 0, "max_handles of exactly SHMREG_MAX_HANDLES is accepted");
    if (h) {
        shmreg_stats s;
        shmreg_stat(h, &s);
        is(s.max_handles, SHMREG_MAX_HANDLES, "and stat shows it");
        shmreg_close(h);
    }
    shmreg_destroy(Q, 1);
}

static void test_symlinks(void)
{
    const char *P = path_copy("real");
    const char *L = path_copy("link");
    const char *D = path_copy("seglink");
    shmreg_options o = create_opts(16);
    shmreg *h = NULL;

    is(shmreg_open(P, &o, &h), 0, "create a registry to link to");
    shmreg_close(h);
    ok(symlink(P, L) == 0, "make a symlink to it");
    h = NULL;
    is(shmreg_open(L, NULL, &h), SHMREG_EPERM,
       "a path that is a symlink to a registry is refused with SHMREG_EPERM");
    is(shmreg_open(L, &o, &h), SHMREG_EPERM, "also with SHMREG_CREATE");
    is(shmreg_destroy(L, 1), SHMREG_EPERM, "destroy refuses a symlink too");
    ok(exists(seg_of(P)), "and the registry it points to is intact");

    ok(mkdir(D, 0700) == 0 && symlink(seg_of(P), seg_of(D)) == 0,
       "make a directory whose segment is a symlink to a real segment");
    is(shmreg_open(D, NULL, &h), SHMREG_EPERM,
       "a registry whose segment file is a symlink is refused with SHMREG_EPERM");

    unlink(seg_of(D));
    rmdir(D);
    unlink(L);
    shmreg_destroy(P, 1);
}

static void test_owner(void)
{
    if (geteuid() != 0) {
        skip(6, "not root: cannot chown a registry to another user");
        return;
    }
    const char *P = path_copy("owner");
    shmreg_options o = create_opts(16);
    shmreg *h = NULL;
    is(shmreg_open(P, &o, &h), 0, "create a registry to give away");
    shmreg_close(h);
    h = NULL;

    ok(chown(P, 65534, 65534) == 0, "chown the registry directory to uid 65534");
    is(shmreg_open(P, NULL, &h), SHMREG_EPERM,
       "a registry directory owned by another user is refused with SHMREG_EPERM");
    ok(*shmreg_errmsg() != '\0', "errmsg explains (%s)", shmreg_errmsg());
    if (chown(P, 0, 0) != 0)
        bail_out("chown back: %s", strerror(errno));

    if (chown(seg_of(P), 65534, 65534) != 0)
        bail_out("chown segment: %s", strerror(errno));
    is(shmreg_open(P, NULL, &h), SHMREG_EPERM,
       "a segment file owned by another user is refused with SHMREG_EPERM");
    if (chown(seg_of(P), 0, 0) != 0)
        bail_out("chown back: %s", strerror(errno));
    is(shmreg_open(P, NULL, &h), 0, "given back to us, the registry opens again");
    shmreg_close(h);
    shmreg_destroy(P, 1);
}

/* A directory that looks like a registry but whose segment is `kind`. */
static void refuse_foreign(const char *kind, const void *bytes, size_t len)
{
    const char *N = path_copy("foreign");
    shmreg *h = NULL;
    if (mkdir(N, 0700) != 0 || write_file(seg_of(N), bytes, len, 0600) != 0)
        bail_out("cannot make %s: %s", N, strerror(errno));
    is(shmreg_open(N, NULL, &h), SHMREG_EVERSION,
       "a segment of %s is refused with SHMREG_EVERSION", kind);
    const char *why = shmreg_errmsg();
    ok(why && *why, "errmsg says what differs for %s", kind);
    diag("errmsg for %s: %s", kind, why ? why : "(null)");

    shmreg_options o = create_opts(16);
    is(shmreg_open(N, &o, &h), SHMREG_EVERSION,
       "SHMREG_CREATE does not overwrite a segment of %s", kind);

    /* The file must be untouched. */
    int fd = open(seg_of(N), O_RDONLY);
    char *back = malloc(len + 1);
    ssize_t r = fd >= 0 ? read(fd, back, len + 1) : -1;
    if (fd >= 0)
        close(fd);
    ok(r == (ssize_t)len && memcmp(back, bytes, len) == 0,
       "the segment of %s is left byte for byte as it was", kind);
    free(back);

    is(shmreg_destroy(N, 1), SHMREG_EVERSION,
       "destroy refuses a directory whose segment is %s", kind);
    ok(exists(seg_of(N)), "and removes nothing");
    test_rm_rf(N);
}

static void test_foreign_segments(void)
{
    size_t len = 1u << 20;
    unsigned char *buf = malloc(len);
    srand(4242);
    for (size_t i = 0; i < len; i++)
        buf[i] = (unsigned char)rand();
    refuse_foreign("random bytes", buf, len);
    memset(buf, 0, len);
    refuse_foreign("zeros", buf, len);
    free(buf);

    /* A real segment whose magic was overwritten. */
    const char *P = path_copy("magic");
    shmreg_options o = create_opts(16);
    shmreg *h = NULL;
    is(shmreg_open(P, &o, &h), 0, "create a registry to spoil");
    shmreg_close(h);
    h = NULL;
    int fd = open(seg_of(P), O_WRONLY);
    ok(fd >= 0 && pwrite(fd, "NOTSHMRG", 8, 0) == 8, "overwrite its first 8 bytes");
    if (fd >= 0)
        close(fd);
    is(shmreg_open(P, NULL, &h), SHMREG_EVERSION,
       "a segment with a wrong magic is refused with SHMREG_EVERSION");
    ok(*shmreg_errmsg() != '\0', "errmsg says what differs (%s)", shmreg_errmsg());
    test_rm_rf(P);
}

static void test_group(void)
{
    struct group *gr = getgrgid(getgid());
    if (!gr) {
        skip(9, "the current gid %d has no name", (int)getgid());
        return;
    }
    char gname[256];
    snprintf(gname, sizeof gname, "%s", gr->gr_name);
    const char *G = path_copy("group");
    shmreg_options o = create_opts(16);
    o.group = gname;
    shmreg *h = NULL, *h2 = NULL;

    is(shmreg_open(G, &o, &h), 0, "create a registry with group \"%s\"", gname);
    is(mode_of(G), 0770, "with a group the directory is mode 0770");
    is(mode_of(seg_of(G)), 0660, "with a group the segment is mode 0660");
    struct stat st;
    ok(lstat(seg_of(G), &st) == 0 && st.st_gid == getgid(), "the segment has that group");
    int nfiles;
    is(wrong_modes(G, 0660, 0770, &nfiles), 0, "every file in it is 0660");
    is(shmreg_open(G, NULL, &h2), 0, "a group registry attaches");
    shmreg_close(h2);
    shmreg_close(h);
    shmreg_destroy(G, 1);

    const char *U = path_copy("nogroup");
    o.group = "shmreg-no-such-group";
    is(shmreg_open(U, &o, &h), SHMREG_EPERM, "an unknown group is SHMREG_EPERM");
    ok(!exists(U), "and creates nothing");
    o.group = NULL;
    is(shmreg_open(U, &o, &h), 0, "without a group the same path is created");
    shmreg_close(h);
    shmreg_destroy(U, 1);
}

static void open_and_exit(void *arg)
{
    shmreg *h = NULL;
    if (shmreg_open((const char *)arg, NULL, &h) != 0)
        _exit(2);
    _exit(0);   /* never closes */
}

static void test_max_handles(void)
{
    const char *M = path_copy("handles");
    shmreg_options o = create_opts(16);
    o.max_handles = 4;
    shmreg *h[5] = { 0 };

    is(shmreg_open(M, &o, &h[0]), 0, "create a registry with max_handles 4");
    int rc = 0;
    for (int i = 1; i < 4; i++)
        rc |= shmreg_open(M, NULL, &h[i]);
    is(rc, 0, "three more handles attach");
    shmreg_stats s;
    shmreg_stat(h[0], &s);
    is(s.max_handles, 4, "stat.max_handles is 4");
    is(s.handles, 4, "stat.handles is 4");
    is(shmreg_open(M, NULL, &h[4]), SHMREG_EFULL, "the fifth handle gives SHMREG_EFULL");
    ok(*shmreg_errmsg() != '\0', "errmsg explains (%s)", shmreg_errmsg());
    shmreg_close(h[3]);
    h[3] = NULL;
    is(shmreg_open(M, NULL, &h[4]), 0, "after one handle closes, another can attach");
    shmreg_close(h[4]);

    /* A slot held by a dead process is not "held by a live process". */
    pid_t pid = test_fork(open_and_exit, (void *)M);
    is(test_wait(pid), 0, "a child attaches and exits without closing");
    is(shmreg_open(M, NULL, &h[3]), 0,
       "with every slot taken but one by a dead process, open still succeeds");
    for (int i = 0; i < 4; i++)
        shmreg_close(h[i]);
    shmreg_destroy(M, 1);
}

struct holder {
    const char *path;
    int ready[2], release[2];
};

static void hold_handle(void *arg)
{
    struct holder *w = arg;
    shmreg *h = NULL;
    close(w->ready[0]);
    close(w->release[1]);
    char c = shmreg_open(w->path, NULL, &h) == 0 ? 'y' : 'n';
    if (write(w->ready[1], &c, 1) != 1)
        _exit(3);
    ssize_t r = read(w->release[0], &c, 1);   /* EOF: parent says go */
    (void)r;
    _exit(shmreg_close(h) == 0 ? 0 : 4);
}

static void test_destroy(void)
{
    const char *D = path_copy("destroy");
    shmreg_options o = create_opts(16);
    shmreg *h = NULL;
    is(shmreg_open(D, &o, &h), 0, "create a registry to destroy");
    shmreg_close(h);
    h = NULL;

    struct holder w = { .path = D };
    if (pipe(w.ready) || pipe(w.release))
        bail_out("pipe: %s", strerror(errno));
    pid_t pid = test_fork(hold_handle, &w);
    close(w.ready[1]);
    close(w.release[0]);
    char c = 0;
    ok(read(w.ready[0], &c, 1) == 1 && c == 'y', "another process attaches and stays");

    is(shmreg_destroy(D, 0), SHMREG_EBUSY,
       "destroy refuses with SHMREG_EBUSY while another live process is attached");
    ok(exists(seg_of(D)), "and leaves the registry in place");
    is(shmreg_open(D, NULL, &h), 0, "which still opens");
    shmreg_close(h);
    is(shmreg_destroy(D, 1), 0, "destroy with force succeeds anyway");
    ok(!exists(D), "and removes the directory");

    close(w.release[1]);
    is(test_wait(pid), 0, "the attached process can still close its handle and exit");
    close(w.ready[0]);

    const char *E = path_copy("destroydead");
    is(shmreg_open(E, &o, &h), 0, "create another registry");
    shmreg_close(h);
    pid = test_fork(open_and_exit, (void *)E);
    is(test_wait(pid), 0, "a child attaches to it and dies without closing");
    is(shmreg_destroy(E, 0), 0, "destroy without force ignores the dead process's handle");
    ok(!exists(E), "and removes the directory");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    test_create();
    test_missing_and_invalid();
    test_symlinks();
    test_owner();
    test_foreign_segments();
    test_group();
    test_max_handles();
    test_destroy();
    return done_testing();
}
