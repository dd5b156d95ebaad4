/*
 * sipd_prefork.c — the prefork template (examples/prefork) keeps its
 * promises: the master creates the registry and forks workers that attach
 * on their own; a worker killed with SIGKILL is replaced and the calls it
 * left are removed; SIGTERM stops everything, leaving no handle attached,
 * no session and a registry that checks clean.
 *
 * The program runs in its own process group, which a watchdog and an exit
 * handler kill, so a failing run leaves nothing behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static pid_t master;

static void kill_group(void)
{
    if (master > 0)
        kill(-master, SIGKILL);
}

static void on_alarm(int sig)
{
    (void)sig;
    kill_group();
    static const char msg[] = "Bail out!  watchdog: the test took too long\n";
    ssize_t w = write(1, msg, sizeof msg - 1);
    (void)w;
    _exit(255);
}

/* Live handles other than ours and the master's. */
static int workers(shmreg *h, pid_t *out)
{
    uint64_t cur = 0;
    shmreg_handle_info hi;
    int n = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0)
        if (hi.alive && !hi.self && hi.pid != master && n < 16)
            out[n++] = hi.pid;
    return n;
}

static int owned_by(shmreg *h, pid_t pid)
{
    shmreg_session s;
    uint64_t cur = 0;
    int n = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s) == 0)
        n += s.owner_pid == pid;
    shmreg_read_end(h);
    return n;
}

int main(void)
{
    char bin[4200];
    snprintf(bin, sizeof bin, "%s/examples/prefork", test_build_dir());
    if (access(bin, X_OK) != 0)
        bail_out("%s not built", bin);
    signal(SIGALRM, on_alarm);
    alarm(60);
    atexit(kill_group);

    const char *path = test_dir("prefork");
    char log[400];
    snprintf(log, sizeof log, "%s.log", path);
    fflush(NULL);
    master = fork();
    if (master == 0) {
        setpgid(0, 0);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(bin, bin, "-r", path, "-w", "3", (char *)NULL);
        _exit(127);
    }
    setpgid(master, master);

    shmreg *h = NULL;
    pid_t w[16], w2[16];
    int nw = 0;
    for (int i = 0; i < 200 && nw != 3; i++) {
        if (!h && access(path, F_OK) == 0 && shmreg_open(path, NULL, &h) != 0)
            h = NULL;
        nw = h ? workers(h, w) : 0;
        test_sleep_us(50 * 1000u);
    }
    if (!is(nw, 3, "the master created the registry; 3 workers attached their own handles"))
        bail_out("prefork did not start");
    test_sleep_us(500 * 1000u);
    int had = owned_by(h, w[0]);
    ok(had > 0, "worker %d has calls up (%d)", (int)w[0], had);

    kill(w[0], SIGKILL);
    int replaced = 0, left = -1;
    for (int i = 0; i < 100 && !(replaced && left == 0); i++) {
        test_sleep_us(100 * 1000u);
        int n2 = workers(h, w2), fresh = 0, gone = 1;
        for (int k = 0; k < n2; k++) {
            gone &= w2[k] != w[0];
            fresh += w2[k] != w[1] && w2[k] != w[2];
        }
        replaced = n2 == 3 && gone && fresh == 1;
        left = owned_by(h, w[0]);
    }
    ok(replaced, "a worker killed with SIGKILL is replaced by a new one");
    is(left, 0, "the calls it left behind are removed by the master");

    kill(master, SIGTERM);
    int st = test_wait(master);
    master = 0;
    is(st, 0, "SIGTERM: the master stops its workers and exits 0");
    shmreg_stats s;
    shmreg_stat(h, &s);
    is(s.handles, 1, "no handle is left attached but ours");
    is(s.sessions, 0, "every worker removed its calls on the way out");
    shmreg_check_report rep;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "the registry checks clean");
    is(rep.problems, 0, "no problems");
    shmreg_close(h);
    shmreg_destroy(path, 0);
    unlink(log);
    return done_testing();
}
