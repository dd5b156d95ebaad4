/*
 * pinned_reader.c — a reader that stays in its read section must not slow
 * the writers down (issue 12), and the memory it pins must come back.
 *
 * A forked reader enters a section holding an SDP and says so through a
 * pipe; the parent then replaces that SDP 100,000 times. What is
 * asserted, exactly: the reader's bytes never change; the work
 * reclamation did, counted by the test library's counters (epoch.h,
 * SHMREG_TESTING), is O(1) per retire (limbo blocks looked at,
 * handle-table scans, liveness checks) and nothing was reaped; the heap
 * grows by exactly one block per replace, all of it retired; it returns
 * to its size before, to the byte, once the reader leaves, and again once
 * a reader is SIGKILLed inside its section (found dead and reaped by the
 * writer itself, with no shmreg_reap()). The one timing assertion, which
 * the issue asks for, is a ratio within this run: the last 10,000
 * replaces take at most four times as long as the first 10,000 (the
 * issue measured 36 times before the fix). Each window's time is its
 * quickest batch of 1,000 times ten: a batch the scheduler interrupted
 * (this runs beside other tests) says nothing about the library. Finally, with a 2 MiB heap and
 * a pinned reader, the allocation that finds the heap full returns
 * SHMREG_EFULL after waiting the documented 10 ms, checked both ways (at
 * least 9 ms; the best of three under 20 ms), so the test fails if the
 * wait is skipped as well as if it overshoots.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epoch.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define SDPLEN 1000u
#define REPLACES 100000u   /* about 1 s under AddressSanitizer too */
#define WINDOW 10000u

static char path[400], small[400];
static shmreg *h;
static shmreg_id sid;

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)('a' + (seed >> 16) % 26);
    }
}

static int replace(shmreg *w, const shmreg_id *id, unsigned seed)
{
    char buf[SDPLEN];
    fill(buf, sizeof buf, seed);
    return shmreg_session_set_sdp(w, id, SHMREG_SDP_REMOTE, buf, sizeof buf);
}

/* Empty read sections until nothing of ours waits in limbo: each exit
 * counts towards the next reclamation attempt. Returns how many it took,
 * or -1 if memory stayed retired. */
static int drain(shmreg *w)
{
    for (int i = 1; i <= 4096; i++) {
        shmreg_read_begin(w);
        shmreg_read_end(w);
        if (test_stats(w).heap_retired_bytes == 0)
            return i;
    }
    return -1;
}

struct chan { int to_child[2], to_parent[2]; const char *dir; const shmreg_id *id; };

/* The stuck reader: enter a section holding the SDP, say 'y', and wait.
 * On 'L' compare the bytes, leave, answer 'l' (intact) or 'X', and stay
 * attached until EOF. SIGKILL may end it at any point after 'y'. */
static void pinning_reader(void *arg)
{
    struct chan *c = arg;
    close(c->to_child[1]);
    close(c->to_parent[0]);
    shmreg *r = NULL;
    shmreg_session v;
    char ch = 'n', *copy = NULL;
    if (shmreg_open(c->dir, NULL, &r) != 0 || shmreg_read_begin(r) != 0 ||
        shmreg_session_get(r, c->id, &v) != 0 || (copy = malloc(SDPLEN)) == NULL ||
        v.sdp[SHMREG_SDP_REMOTE].len != SDPLEN)
        _exit(2);
    shmreg_str sdp = v.sdp[SHMREG_SDP_REMOTE];
    memcpy(copy, sdp.ptr, sdp.len);
    ch = 'y';
    if (write(c->to_parent[1], &ch, 1) != 1)
        _exit(3);
    if (read(c->to_child[0], &ch, 1) != 1 || ch != 'L')
        _exit(4);
    ch = memcmp(copy, sdp.ptr, sdp.len) == 0 ? 'l' : 'X';
    shmreg_read_end(r);
    free(copy);
    if (write(c->to_parent[1], &ch, 1) != 1)
        _exit(5);
    while (read(c->to_child[0], &ch, 1) > 0)
        ;
    shmreg_close(r);
}

static pid_t start_reader(struct chan *c, const char *dir, const shmreg_id *id)
{
    c->dir = dir;
    c->id = id;
    if (pipe(c->to_child) || pipe(c->to_parent))
        bail_out("pipe: %s", strerror(errno));
    pid_t pid = test_fork(pinning_reader, c);
    close(c->to_child[0]);
    close(c->to_parent[1]);
    char ch = 0;
    if (read(c->to_parent[0], &ch, 1) != 1 || ch != 'y')
        bail_out("the reader did not enter its section");
    return pid;
}

static void end_reader(struct chan *c)
{
    close(c->to_child[1]);
    close(c->to_parent[0]);
}

static void test_pinned(uint64_t base)
{
    struct chan c;
    pid_t pid = start_reader(&c, path, &sid);
    shm_reclaim_counters_for_test = (shm_reclaim_counters){0};

    int errs = 0;
    const unsigned batch = WINDOW / 10;
    double t0 = test_mono_s(), first = 1e9, last = 1e9;
    uint64_t used_at_first = 0;
    for (unsigned i = 1; i <= REPLACES; i++) {
        errs += replace(h, &sid, i) != 0;
        if (i % batch == 0) {
            double t = test_mono_s(), took = (t - t0) * (WINDOW / batch);
            if (i <= WINDOW && took < first)
                first = took;
            if (i > REPLACES - WINDOW && took < last)
                last = took;
            t0 = t;
        }
        if (i == WINDOW)
            used_at_first = test_stats(h).heap_used_bytes - base;
    }
    shm_reclaim_counters k = shm_reclaim_counters_for_test;
    shmreg_stats st = test_stats(h);
    is(errs, 0, "%u replaces of the SDP while another process holds it in a read section", REPLACES);

    /* Memory: one block more per replace, every one of them retired. */
    uint64_t blk = used_at_first / WINDOW;
    ok(blk >= SDPLEN && used_at_first == (uint64_t)WINDOW * blk,
       "after %u replaces the heap grew by exactly %u blocks of %llu bytes", WINDOW, WINDOW,
       (unsigned long long)blk);
    is(st.heap_used_bytes - base, (uint64_t)REPLACES * blk,
       "after %u, by exactly %u blocks: growth is linear, nothing was reused", REPLACES, REPLACES);
    is(st.heap_retired_bytes, st.heap_used_bytes - base, "and all of it is retired, waiting for the reader");

    /* Work: O(1) per retire whatever the length of the queue. */
    diag("reclamation work for %llu retires: %llu attempts, %llu scans, %llu blocks examined, "
         "%llu freed, %llu liveness checks, %llu reaps", (unsigned long long)k.retires,
         (unsigned long long)k.attempts, (unsigned long long)k.scans, (unsigned long long)k.examined,
         (unsigned long long)k.freed, (unsigned long long)k.alive_checks, (unsigned long long)k.reaps);
    is(k.retires, REPLACES, "each replace retired one block");
    is(k.freed, 0, "none could be freed");
    ok(k.examined <= 4 * k.retires, "limbo blocks examined: %llu, at most 4 per retire",
       (unsigned long long)k.examined);
    ok(k.examined <= k.attempts, "in fact one per attempt: the pinned head only (%llu <= %llu)",
       (unsigned long long)k.examined, (unsigned long long)k.attempts);
    ok(k.scans <= k.retires / 16, "handle-table scans: %llu, at most one per 16 retires",
       (unsigned long long)k.scans);
    ok(k.alive_checks <= REPLACES / 4096 + 1, "liveness checks of the pinning reader: %llu, at most one per "
       "4096 retires", (unsigned long long)k.alive_checks);
    is(k.reaps, 0, "no reap: nothing suggested a dead process");

    diag("first %u replaces %.1f ms, last %u %.1f ms (%.2fx)", WINDOW, first * 1e3, WINDOW, last * 1e3,
         last / first);
    ok(last <= 4 * first, "the last %u replaces are no slower than a quarter of the first %u's speed",
       WINDOW, WINDOW);

    char ch = 'L';
    ok(write(c.to_child[1], &ch, 1) == 1 && read(c.to_parent[0], &ch, 1) == 1 && ch == 'l',
       "the reader's bytes were intact all along, and it left its section");
    int n = drain(h);
    ok(n > 0 && n <= 1024, "a writer's read sections alone give the memory back (%d of them)", n);
    is(test_stats(h).heap_used_bytes, base, "the heap is back to its size before, to the byte");
    end_reader(&c);
    is(test_wait(pid), 0, "the reader closes and exits cleanly");
}

static void test_killed(uint64_t base)
{
    struct chan c;
    pid_t pid = start_reader(&c, path, &sid);
    int errs = 0;
    for (unsigned i = 0; i < 20000; i++)
        errs += replace(h, &sid, 1000000 + i) != 0;
    uint64_t pinned = test_stats(h).heap_retired_bytes;
    is(errs, 0, "20,000 replaces while a second reader holds its section");
    kill(pid, SIGKILL);
    is(test_wait(pid), 128 + SIGKILL, "that reader is killed with SIGKILL inside its section");
    end_reader(&c);

    /* No explicit reap: the writer finds the dead reader on its own once
     * its queue has grown by 4096 blocks (and 10 ms passed since it last
     * looked). */
    shm_reclaim_counters_for_test = (shm_reclaim_counters){0};
    unsigned more = 0;
    while (more < 60000 && test_stats(h).heap_retired_bytes >= pinned) {
        for (unsigned i = 0; i < 500; i++)
            errs += replace(h, &sid, 2000000 + more + i) != 0;
        more += 500;
    }
    shm_reclaim_counters k = shm_reclaim_counters_for_test;
    diag("the dead reader was reaped after %u more replaces (%llu liveness checks, %llu reaps)", more,
         (unsigned long long)k.alive_checks, (unsigned long long)k.reaps);
    ok(errs == 0 && test_stats(h).heap_retired_bytes < pinned,
       "the writer reaped the dead reader by itself and freed what it pinned");
    ok(k.reaps >= 1 && k.reaps <= k.alive_checks, "one reap per liveness check that found it dead at most "
       "(%llu reaps, %llu checks)", (unsigned long long)k.reaps, (unsigned long long)k.alive_checks);
    int n = drain(h);
    ok(n > 0, "the rest drains (%d read sections)", n);
    is(test_stats(h).heap_used_bytes, base, "the heap is back to its size before, to the byte");
    shmreg_handle_info hi;
    uint64_t cur = 0;
    int listed = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0)
        listed |= hi.pid == pid;
    ok(!listed, "the dead reader's handle is gone");
}

static void test_full(void)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 16;
    o.heap_bytes = 2u << 20; /* 8 pages */
    shmreg *w;
    shmreg_id id;
    if (shmreg_open(small, &o, &w) != 0 || shmreg_session_create(w, NULL, &id) != 0 || replace(w, &id, 1))
        bail_out("small registry: %s", shmreg_errmsg());
    struct chan c;
    pid_t pid = start_reader(&c, small, &id);

    int rc = 0;
    unsigned n = 0;
    while (n < 100000 && (rc = replace(w, &id, 10 + n)) == 0)
        n++;
    /* Three tries: each must wait, and the quickest must be near the
     * bound. One try alone could be descheduled past any margin on a
     * loaded machine; a wait that sums its sleeps (21..31 ms) never is. */
    double least = 1e9, most = 0;
    int fulls = 0;
    for (int i = 0; i < 3; i++) {
        double t = test_mono_s();
        fulls += replace(w, &id, 7) == SHMREG_EFULL;
        double el = (test_mono_s() - t) * 1e3;
        least = el < least ? el : least;
        most = el > most ? el : most;
    }
    is(fulls, 3, "with a reader pinned, a 2 MiB heap is full after %u replaces: SHMREG_EFULL, 3 times", n);
    diag("the failing replaces took %.2f..%.2f ms (bound 10 ms)", least, most);
    ok(least >= 9.0, "each waited for readers about the documented 10 ms first (%.2f ms at least)", least);
    ok(least < 20.0, "and not much longer: the bound is elapsed time, not a sum of sleeps (%.2f ms)", least);

    char ch = 'L';
    ok(write(c.to_child[1], &ch, 1) == 1 && read(c.to_parent[0], &ch, 1) == 1 && ch == 'l',
       "the reader's bytes were intact, and it left its section");
    is(replace(w, &id, 8), 0, "then the next replace finds the memory the reader gave back");
    end_reader(&c);
    is(test_wait(pid), 0, "the reader exits cleanly");
    shmreg_close(w);
    shmreg_destroy(small, 1);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof path, "%s", test_dir("pinned"));
    snprintf(small, sizeof small, "%s", test_dir("pinned-full"));
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 64;
    o.heap_bytes = 256u << 20;
    if (shmreg_open(path, &o, &h) != 0 || shmreg_session_create(h, NULL, &sid) != 0 || replace(h, &sid, 0))
        bail_out("cannot set up a registry: %s", shmreg_errmsg());
    if (drain(h) < 0)
        bail_out("limbo does not drain with no reader");
    uint64_t base = test_stats(h).heap_used_bytes;

    test_pinned(base);
    test_killed(base);
    test_full();

    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
