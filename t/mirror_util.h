/*
 * mirror_util.h — what the tests of many hosts share (t/mirror.c,
 * t/mirror_cluster.c): a "host" (a registry with its node ID, its
 * shmreg-sync and that daemon's log), the daemon started with its output
 * in the log and killed with the test, a session's record as a copy of it
 * must equal (memberships and timeout left out: copies hold none), the
 * sessions a node owns, and bounded waits.
 *
 * Header-only (static inline) because every C file in t/ is built as a
 * test program of its own (as ctl_run.h).
 */
#ifndef SHMREG_MIRROR_UTIL_H
#define SHMREG_MIRROR_UTIL_H

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

typedef struct node {
    uint32_t id;
    char path[512], log[600];
    shmreg *h;
    pid_t pid;
} node;

static inline const char *sync_bin(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/tools/shmreg-sync", test_build_dir());
    if (access(p, X_OK) != 0)
        bail_out("no shmreg-sync at %s", p);
    return p;
}

/* A new registry for node `id` at test_dir(name), opened in n->h. */
static inline void mkreg(node *n, const char *name, uint32_t id)
{
    n->id = id;
    snprintf(n->path, sizeof n->path, "%s", test_dir(name));
    snprintf(n->log, sizeof n->log, "%s.log", n->path);
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 4096, .node_id = id};
    if (shmreg_open(n->path, &o, &n->h) != 0)
        bail_out("creating %s: %s", n->path, shmreg_errmsg());
}

/* shmreg-sync with argv (argv[0] its name, NULL-terminated) for n:
 * stdout and stderr appended to n->log; it dies with the test. */
static inline void spawn_daemon(node *n, const char *const *argv)
{
    const char *bin = sync_bin();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(n->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    n->pid = pid;
}

/* 1 when n's log has `needle`. */
static inline int log_has(const node *n, const char *needle)
{
    FILE *f = fopen(n->log, "r");
    if (!f)
        return 0;
    static char buf[1 << 20];
    size_t k = fread(buf, 1, sizeof buf - 1, f);
    buf[k] = 0;
    fclose(f);
    return strstr(buf, needle) != NULL;
}

/* The record of `id` in h, less what a copy never holds (memberships,
 * timeout); *out its view. 0 found, else the error. */
static inline int record_of(shmreg *h, const shmreg_id *id, unsigned char *buf, size_t cap, size_t *len,
                            shmreg_session *out)
{
    shmreg_read_begin(h);
    shmreg_session s;
    int rc = shmreg_session_get(h, id, &s);
    if (rc == 0) {
        shmreg_dialog dl[SHMREG_MAX_DIALOGS_PER_SESSION];
        unsigned nd = 0;
        for (unsigned i = 0; i < s.ndialogs && i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
            if (shmreg_session_dialog(h, id, i, &dl[nd]) == 0)
                nd++;
        shmreg_session_control c;
        rc = shmreg_session_control_get(h, id, &c);
        if (rc == 0) {
            c.nprofiles = 0;
            c.deadline_ns = 0;
            c.timeout_flags = 0;
            c.grace_ns = 0;
            s.deadline_ns = 0;
            s.timeout_flags = 0;
            s.nprofiles = 0;
            rc = shmreg_session_encode_control(&s, &c, dl, nd, buf, cap, len);
        }
        if (out)
            *out = s;
    }
    shmreg_read_end(h);
    return rc;
}

/* How many live sessions of h `owner` owns; the first cap into ids[]. */
static inline int owned(shmreg *h, uint32_t owner, shmreg_id *ids, int cap)
{
    int n = 0;
    uint64_t cur = 0;
    shmreg_session s;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s) == 0)
        if (s.owner_node == owner) {
            if (n < cap)
                ids[n] = s.id;
            n++;
        }
    shmreg_read_end(h);
    return n;
}

/* cond(arg) true within `seconds` (polled every 10 ms): 1, else 0. */
static inline int wait_for(int (*cond)(void *), void *arg, double seconds)
{
    double end = test_mono_s() + seconds;
    while (test_mono_s() < end) {
        if (cond(arg))
            return 1;
        test_sleep_us(10000);
    }
    return cond(arg);
}

#endif
