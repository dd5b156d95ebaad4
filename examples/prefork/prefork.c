/*
 * prefork.c — the smallest prefork worker pool on a shmreg registry: the
 * template to copy.
 *
 *     prefork -r REGISTRY [-w WORKERS]
 *
 * The master creates the registry, forks the workers and then only looks
 * after them: a worker that dies is replaced, SIGTERM or SIGINT stops them
 * all. The rules it follows are the ones every shmreg server must:
 *   1. open handles AFTER fork: a handle belongs to the process that opened
 *      it (an inherited one answers SHMREG_EFORK), so each worker opens
 *      its own, and closes the master's copy, which only frees memory;
 *   2. after a worker dies, shmreg_reap() clears its handle slot, and what
 *      it owned (here: its sessions) is cleaned up by someone else;
 *   3. on the way out every process closes its handle.
 * The work itself is a stand-in: each worker creates a call every 100 ms,
 * answers it, ends the one it made a second ago, and now and then reports
 * what all the workers have in the registry (read in place, no lock).
 * Replace work() with your server's loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"

#define MAX_WORKERS 64

static volatile sig_atomic_t stop;
static void on_stop(int sig) { (void)sig; stop = 1; }

/* ------------------------------------------------------------ a worker */

static void work(shmreg *h, int n)
{
    shmreg_id mine[10];              /* the calls this worker has up */
    unsigned made = 0;
    char name[32];
    snprintf(name, sizeof name, "sip:worker%d@example", n);
    while (!stop) {
        shmreg_fields f = { 0 };
        f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){ name, strlen(name) };
        shmreg_id *slot = &mine[made % 10];
        if (made >= 10)                                  /* end the oldest */
            shmreg_session_delete(h, slot);
        if (shmreg_session_create(h, &f, slot) == 0) {
            shmreg_session_transition(h, slot, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE, NULL);
            made++;
        }
        if (made % 50 == 0) {
            uint64_t counts[SHMREG_STATE_COUNT];
            if (shmreg_session_counts(h, counts, SHMREG_STATE_COUNT) == 0)
                fprintf(stderr, "prefork: worker %d (pid %d): %llu calls up in all workers\n",
                        n, (int)getpid(), (unsigned long long)counts[0]);
        }
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);                            /* a signal cuts it short */
    }
    for (unsigned i = 0; i < made && i < 10; i++)        /* leave nothing behind */
        shmreg_session_delete(h, &mine[i]);
}

__attribute__((noreturn))
static void worker(const char *path, int n, shmreg *inherited)
{
    shmreg_close(inherited);         /* not ours: frees the copy, touches nothing shared */
    shmreg *h;
    int rc = shmreg_open(path, NULL, &h);
    if (rc != 0) {
        fprintf(stderr, "prefork: worker %d: %s (%s)\n", n, shmreg_strerror(rc), shmreg_errmsg());
        exit(1);
    }
    /* The master's signals arrive blocked; a SIGTERM sent meanwhile waits
     * for us. No SA_RESTART: it cuts the worker's sleep short. */
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    work(h, n);
    shmreg_close(h);
    exit(0);
}

/* ------------------------------------------------------------ the master */

/* A dead worker's calls: nobody will end them, so the master does. */
static void clean_up_after(shmreg *h, pid_t dead)
{
    shmreg_session s;
    shmreg_id ids[256];
    unsigned n = 0;
    uint64_t cursor = 0;
    shmreg_reap(h);                  /* its handle slot, and its retired memory */
    shmreg_read_begin(h);
    while (n < 256 && shmreg_session_next(h, &cursor, SHMREG_STATE_ANY, &s) == 0)
        if (s.owner_pid == dead)
            ids[n++] = s.id;
    shmreg_read_end(h);
    for (unsigned i = 0; i < n; i++)
        shmreg_session_delete(h, &ids[i]);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int nworkers = 4, opt, bad = 0;
    while ((opt = getopt(argc, argv, "r:w:")) != -1) {
        if (opt == 'r')
            path = optarg;
        else if (opt == 'w')
            nworkers = atoi(optarg);
        else
            bad = 1;
    }
    if (bad || !path || optind != argc || nworkers < 1 || nworkers > MAX_WORKERS) {
        fprintf(stderr, "usage: prefork -r REGISTRY [-w WORKERS]\n");
        return 2;
    }

    shmreg_options o = { .flags = SHMREG_CREATE };
    shmreg *h;
    int rc = shmreg_open(path, &o, &h);
    if (rc != 0) {
        fprintf(stderr, "prefork: %s: %s (%s)\n", path, shmreg_strerror(rc), shmreg_errmsg());
        return 1;
    }

    /* The master takes its signals synchronously: they stay blocked and
     * sigtimedwait() picks them up, so none can slip in between "anything
     * to do?" and "wait". The workers inherit the mask and unblock after
     * installing their own handlers. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, NULL);

    pid_t pids[MAX_WORKERS] = { 0 };
    time_t started[MAX_WORKERS] = { 0 };
    for (;;) {
        for (int i = 0; i < nworkers; i++) {
            if (pids[i])
                continue;
            if (started[i] == time(NULL))    /* dies at once? at most one restart a second */
                continue;
            pid_t pid = fork();
            if (pid == 0)
                worker(path, i, h);
            if (pid > 0) {
                pids[i] = pid;
                started[i] = time(NULL);
                fprintf(stderr, "prefork: worker %d is pid %d\n", i, (int)pid);
            }
        }
        struct timespec second = { 1, 0 };   /* also retries a throttled restart */
        int sig = sigtimedwait(&block, NULL, &second);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        int status;
        pid_t dead;
        while ((dead = waitpid(-1, &status, WNOHANG)) > 0)
            for (int i = 0; i < nworkers; i++)
                if (pids[i] == dead) {
                    fprintf(stderr, "prefork: worker %d (pid %d) died; replacing it\n", i,
                            (int)dead);
                    pids[i] = 0;
                    clean_up_after(h, dead);
                }
    }

    /* Stop: SIGTERM to every worker, wait for each. */
    for (int i = 0; i < nworkers; i++)
        if (pids[i])
            kill(pids[i], SIGTERM);
    int clean = 1;
    for (int i = 0; i < nworkers; i++) {
        int status;
        if (!pids[i] || waitpid(pids[i], &status, 0) != pids[i])
            continue;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            clean = 0;
            clean_up_after(h, pids[i]);
        }
    }
    shmreg_close(h);
    fprintf(stderr, "prefork: stopped\n");
    return clean ? 0 : 1;
}
