/*
 * config_crash.c — processes killed at any moment cost nothing:
 *  - a writer killed with SIGKILL in the middle of replacing a config
 *    leaves the previous version whole and readable, and the next writer
 *    succeeds (LMDB's robust writer lock is recovered);
 *  - a writer that died between its commit and the mirror store leaves the
 *    generation mirror behind: opening the environment, a view or a write
 *    catches it up;
 *  - readers killed while holding views leave LMDB reader slots behind,
 *    which are cleared when the reader table fills up.
 */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "internal.h"   /* shmreg__config_gen_word: to fake a lost mirror store */
#include "tap.h"
#include "testutil.h"

#define ROUNDS 25
#define KEYS 150        /* ~600 KiB per version: a commit takes a while */
#define VALUE 4000

static char reg[512];

/* Version `serial`: KEYS strings that all start with the serial. */
static shmreg_config_doc *version(uint64_t serial)
{
    static char val[VALUE];
    char key[32];
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    int n = snprintf(val, sizeof val, "%020llu", (unsigned long long)serial);
    memset(val + n, 'a' + (int)(serial % 26), sizeof val - (size_t)n);
    for (int i = 0; i < KEYS; i++) {
        snprintf(key, sizeof key, "bulk.k%03d", i);
        if (shmreg_config_doc_set_str(d, key, (shmreg_str){ val, sizeof val }))
            bail_out("version: %s", shmreg_errmsg());
    }
    if (shmreg_config_doc_set_int(d, "app.serial", (int64_t)serial))
        bail_out("version: %s", shmreg_errmsg());
    return d;
}

/* The serial of a whole version, or -1 if the view mixes anything. */
static int64_t whole_version(const shmreg_config_view *v)
{
    int64_t serial;
    char head[21], key[32];
    if (shmreg_config_get_int(v, "app.serial", &serial))
        return -1;
    snprintf(head, sizeof head, "%020llu", (unsigned long long)serial);
    for (int i = 0; i < KEYS; i++) {
        shmreg_str s;
        snprintf(key, sizeof key, "bulk.k%03d", i);
        if (shmreg_config_get_str(v, key, &s) || s.len != VALUE || memcmp(s.ptr, head, 20) ||
            s.ptr[VALUE - 1] != 'a' + (int)(serial % 26))
            return -1;
    }
    return serial;
}

static void writer(void *arg)
{
    uint64_t serial = (uint64_t)(uintptr_t)arg;
    shmreg *h;
    if (shmreg_open(reg, NULL, &h))
        _exit(10);
    shmreg_config_doc *a = version(serial), *b = version(serial + 1);
    for (uint64_t i = 0;; i++)   /* until killed */
        if (shmreg_config_put(h, "big", i % 2 ? b : a))
            _exit(11);
}

static void test_killed_writer(shmreg *h)
{
    shmreg_config_doc *d = version(0);
    is(shmreg_config_put(h, "big", d), 0, "version 0 stored");
    shmreg_config_doc_free(d);
    srand((unsigned)getpid());
    int whole = 0, writes_ok = 0, caught_up = 0, moved = 0;
    int64_t last = 0;
    uint64_t serial = 1;
    for (int r = 0; r < ROUNDS; r++, serial += 2) {
        uint64_t g0 = shmreg_config_gen(h);
        pid_t pid = test_fork(writer, (void *)(uintptr_t)serial);
        /* once it is writing (it spends nearly all its time inside a
         * write), kill it at a random moment */
        struct timespec tick = { 0, 100000 };
        for (int i = 0; i < 50000 && shmreg_config_gen(h) == g0; i++)
            nanosleep(&tick, NULL);
        moved += shmreg_config_gen(h) > g0;
        struct timespec ts = { 0, (rand() % 3000) * 1000L };
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        test_wait(pid);

        shmreg_config_view *v;
        int64_t got = -1;
        if (shmreg_config_open_view(h, "big", &v) == 0) {
            got = whole_version(v);
            shmreg_config_info info;
            shmreg_config_view_info(v, &info);
            caught_up += shmreg_config_gen(h) >= info.snapshot_gen;
            shmreg_config_release(v);
        }
        /* one whole version, and one of this writer's (it committed) */
        whole += got >= last && got >= (int64_t)serial && got <= (int64_t)serial + 1;
        if (got < last || got < (int64_t)serial || got > (int64_t)serial + 1)
            diag("round %d: got version %lld, wanted %llu or %llu (%s)", r, (long long)got,
                 (unsigned long long)serial, (unsigned long long)serial + 1, shmreg_errmsg());
        last = got;

        /* the next writer gets the lock and commits */
        d = version(1000000 + (uint64_t)r);
        int rc = shmreg_config_put(h, "after", d);
        shmreg_config_doc_free(d);
        writes_ok += rc == 0;
        if (rc)
            diag("round %d: write after the kill: %s", r, shmreg_errmsg());
    }
    is(whole, ROUNDS, "after each of %d kills the config is one whole version", ROUNDS);
    is(writes_ok, ROUNDS, "and the next writer succeeds");
    is(caught_up, ROUNDS, "the mirror is never behind a snapshot after a view opens");
    is(moved, ROUNDS, "every killed writer had committed before it was killed");
}

/* ---------------------------------------------------------------- lost mirror store */

static void newcomer(void *arg)
{
    (void)arg;
    shmreg *h;
    shmreg_config_view *v;
    if (shmreg_open(reg, NULL, &h))
        _exit(10);
    /* its first config call opens the environment and catches up */
    if (shmreg_config_open_view(h, "nosuch", &v) != SHMREG_ENOENT)
        _exit(11);
    shmreg_close(h);
}

static void test_lost_mirror(shmreg *h)
{
    _Atomic uint64_t *w = shmreg__config_gen_word(h);
    uint64_t g = shmreg_config_gen(h);
    ok(g > 0, "generation %llu", (unsigned long long)g);

    atomic_store(w, 1);   /* as if the last writers died before their store */
    int changed = -1;
    ok(shmreg_config_changed(h, 1, &changed) == 0 && changed == 0,
       "a behind mirror reports no change");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "big", &v), 0, "open a view");
    is(shmreg_config_gen(h), g, "the view's newer snapshot caught the mirror up");
    shmreg_config_release(v);

    atomic_store(w, 1);
    is(test_wait(test_fork(newcomer, NULL)), 0, "a new process opens the environment");
    is(shmreg_config_gen(h), g, "its open caught the mirror up");

    atomic_store(w, 1);
    is(shmreg_config_set(h, "small", "a", "1"), 0, "a write");
    is(shmreg_config_gen(h), g + 1, "the write stored its generation, the max");

    atomic_store(w, g + 100);   /* a mirror never goes back */
    is(shmreg_config_set(h, "small", "a", "2"), 0, "a write with the mirror ahead");
    is(shmreg_config_gen(h), g + 100, "the mirror keeps its larger value");
}

/* ---------------------------------------------------------------- dead readers */

static int ready[2];

static void view_holder(void *arg)
{
    (void)arg;
    shmreg *h;
    shmreg_config_view *v[SHMREG_CONFIG_MAX_VIEWS];
    if (shmreg_open(reg, NULL, &h))
        _exit(10);
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        if (shmreg_config_open_view(h, "small", &v[i]))
            _exit(11);
    char c = 1;
    if (write(ready[1], &c, 1) != 1)
        _exit(12);
    pause();   /* killed holding every view */
}

static void test_dead_readers(void)
{
    /* 4 handles: LMDB gets 4 * 8 + 8 = 40 reader slots */
    char reg4[512];
    snprintf(reg4, sizeof reg4, "%s", test_dir("config-readers"));
    shmreg *h[4];
    shmreg_config_view *v[SHMREG_CONFIG_MAX_VIEWS];
    if (shmreg_open(reg4, &(shmreg_options){ .flags = SHMREG_CREATE, .max_handles = 4 }, &h[0]))
        bail_out("open: %s", shmreg_errmsg());
    memcpy(reg, reg4, sizeof reg);
    is(shmreg_config_set(h[0], "small", "a", "1"), 0, "a config");
    int good = 1;
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)   /* 8 slots for h[0] */
        good &= shmreg_config_open_view(h[0], "small", &v[i]) == 0;
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        shmreg_config_release(v[i]);
    ok(good, "the first handle uses all its view slots");

    if (pipe(ready))
        bail_out("pipe: %s", strerror(errno));
    pid_t pids[3];
    char c;
    for (int i = 0; i < 3; i++)
        pids[i] = test_fork(view_holder, NULL);
    for (int i = 0; i < 3; i++)
        if (read(ready[0], &c, 1) != 1)
            bail_out("a view holder failed");
    for (int i = 0; i < 3; i++) {
        kill(pids[i], SIGKILL);
        test_wait(pids[i]);
    }
    ok(1, "3 processes killed holding 8 views each: 24 dead reader slots");
    is(shmreg_reap(h[0]), 3, "their registry handles are reaped");

    /* 3 more handles in this process: 24 more slots needed, 8 + 24 + 24 >
     * 40, so the dead ones must be cleared on the way */
    good = 1;
    for (int k = 1; k < 4; k++) {
        if (shmreg_open(reg4, NULL, &h[k])) {
            good = 0;
            diag("open %d: %s", k, shmreg_errmsg());
            continue;
        }
        for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++) {
            int rc = shmreg_config_open_view(h[k], "small", &v[i]);
            if (rc) {
                good = 0;
                diag("handle %d view %u: %s", k, i, shmreg_errmsg());
            }
        }
        /* keep them open: the slots stay taken */
    }
    ok(good, "32 live views in all: the dead readers' slots were reused");
    for (int k = 3; k >= 0; k--)
        shmreg_close(h[k]);
}

int main(void)
{
    snprintf(reg, sizeof reg, "%s", test_dir("config-crash"));
    shmreg *h;
    if (shmreg_open(reg, &(shmreg_options){ .flags = SHMREG_CREATE }, &h))
        bail_out("open: %s", shmreg_errmsg());
    test_killed_writer(h);
    test_lost_mirror(h);
    shmreg_close(h);
    test_dead_readers();
    return done_testing();
}
