/*
 * concurrency.c — four worker processes share one registry for two seconds.
 *
 * Each worker creates sessions, binds a dialog to each, walks them along
 * legal state paths, replaces their SDPs and fields, reads everyone's
 * sessions (by walking and by ID), and deletes its own. Every SDP carries
 * its own length and FNV-1a checksum in a header line, and the string
 * fields of one version name each other, so a reader can tell a torn value
 * from a whole one. Workers report through a shared anonymous mapping; the
 * parent then checks the exact totals, the registry's own consistency
 * check, and that the heap returns to where it started.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "selfcheck.h"
#include "tap.h"
#include "testutil.h"

#define WORKERS 4
#define SECONDS 2.0
#define OWN_MAX 48

struct report {
    long created, deleted, transitions, sdps, updates, reads, gets, torn, errors, ops;
    long full;   /* SHMREG_EFULL: legal while readers pin retired memory */
    int done;
};

struct shared {
    atomic_int go;
    struct report r[WORKERS];
};

static char path[400];
static struct shared *sh;

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

/* ------------------------------------------------ self-checking values */


/* Fields of session n of worker k at version ver:
 *   from "sip:w<k>-<n>@test", to "sip:to-w<k>-<n>-v<ver>@test",
 *   display "v<ver>", call-id "call-w<k>-<n>". */
static int fields_whole(const shmreg_session *v, int *k_out, unsigned *n_out, unsigned *ver_out)
{
    char from[96], to[96], disp[32], want[96];
    int k, end = 0;
    unsigned n, ver;
    if (v->state < SHMREG_STATE_INITIATING || v->state > SHMREG_STATE_FAILED)
        return 0;
    if (!copy(v->str[SHMREG_FIELD_FROM_URI], from, sizeof from) ||
        !copy(v->str[SHMREG_FIELD_TO_URI], to, sizeof to) ||
        !copy(v->str[SHMREG_FIELD_DISPLAY_NAME], disp, sizeof disp))
        return 0;
    if (sscanf(from, "sip:w%d-%u@test%n", &k, &n, &end) != 2 || end != (int)strlen(from))
        return 0;
    end = 0;
    if (sscanf(disp, "v%u%n", &ver, &end) != 1 || end != (int)strlen(disp))
        return 0;
    snprintf(want, sizeof want, "sip:to-w%d-%u-v%u@test", k, n, ver);
    if (strcmp(to, want) != 0)
        return 0;
    snprintf(want, sizeof want, "call-w%d-%u", k, n);
    if (!copy(v->str[SHMREG_FIELD_CALL_ID], disp, sizeof disp) || strcmp(disp, want) != 0)
        return 0;
    if (!sdp_whole(v->sdp[0]) || !sdp_whole(v->sdp[1]))
        return 0;
    *k_out = k;
    *n_out = n;
    *ver_out = ver;
    return 1;
}

/* ------------------------------------------------------------ worker */

struct own { shmreg_id id; int state; unsigned n, ver; };

static int legal_next(int from, unsigned *seed)
{
    int opts[SHMREG_STATE_COUNT], n = 0;
    for (int to = 1; to < SHMREG_STATE_COUNT; to++)
        if (shmreg_state_allowed(from, to))
            opts[n++] = to;
    return n ? opts[rand_r(seed) % n] : 0;
}

static struct report *R;
static int self_k;

#define FAIL(...) do { R->errors++; if (R->errors <= 5) diag(__VA_ARGS__); } while (0)
/* A write may find the table or heap full while other readers pin retired
 * memory: counted, not an error. Anything else is. */
#define WRITE_FAILED(rc, ...) \
    do { if ((rc) == SHMREG_EFULL) R->full++; else FAIL(__VA_ARGS__); } while (0)

static void worker(void *arg)
{
    self_k = (int)(intptr_t)arg;
    R = &sh->r[self_k];
    unsigned seed = 0x9e3779b9u * (unsigned)(self_k + 1) ^ (unsigned)getpid();
    shmreg *h = NULL;
    if (shmreg_open(path, NULL, &h) != 0) {
        FAIL("open: %s", shmreg_errmsg());
        _exit(2);
    }
    while (!atomic_load(&sh->go))
        usleep(100);

    struct own own[OWN_MAX];
    int nown = 0;
    unsigned next_n = 0;
    uint64_t cursor = 0;
    shmreg_id others[16];
    int nothers = 0;
    char *sdp = malloc(SDP_HDR + 4000);
    char from[96], to[96], disp[32], call[48];
    double end = test_mono_s() + SECONDS;

    while (test_mono_s() < end) {
        int r = rand_r(&seed) % 100, rc;
        R->ops++;
        if (nown == 0 || (r < 15 && nown < OWN_MAX)) {               /* create */
            struct own *o = &own[nown];
            o->n = next_n++;
            o->ver = 0;
            o->state = SHMREG_STATE_INITIATING;
            shmreg_fields f;
            memset(&f, 0, sizeof f);
            sprintf(from, "sip:w%d-%u@test", self_k, o->n);
            sprintf(to, "sip:to-w%d-%u-v0@test", self_k, o->n);
            sprintf(call, "call-w%d-%u", self_k, o->n);
            f.str[SHMREG_FIELD_FROM_URI] = SS(from);
            f.str[SHMREG_FIELD_TO_URI] = SS(to);
            f.str[SHMREG_FIELD_DISPLAY_NAME] = SS("v0");
            f.str[SHMREG_FIELD_CALL_ID] = SS(call);
            if ((rc = shmreg_session_create(h, &f, &o->id)) != 0) {
                WRITE_FAILED(rc, "create: %s", shmreg_strerror(rc));
                continue;
            }
            if ((rc = shmreg_dialog_bind(h, SS(call), SS("l"), SS("r"), &o->id)) != 0) {
                WRITE_FAILED(rc, "bind: %s", shmreg_strerror(rc));
                /* Keep "one dialog per session": undo the create. */
                if ((rc = shmreg_session_delete(h, &o->id)) != 0)
                    FAIL("delete after failed bind: %s", shmreg_strerror(rc));
                continue;
            }
            R->created++;
            nown++;
        } else if (r < 40) {                                          /* transition */
            struct own *o = &own[rand_r(&seed) % nown];
            int to_state = legal_next(o->state, &seed), old = -1;
            if (!to_state)
                continue;
            rc = shmreg_session_transition(h, &o->id, o->state, to_state, &old);
            if (rc != 0 || old != o->state)
                FAIL("transition %d -> %d: %s (old %d)", o->state, to_state, shmreg_strerror(rc), old);
            else {
                o->state = to_state;
                R->transitions++;
            }
        } else if (r < 58) {                                          /* SDP */
            struct own *o = &own[rand_r(&seed) % nown];
            size_t len = make_sdp(sdp, &seed, (size_t)(rand_r(&seed) % 4000));
            if ((rc = shmreg_session_set_sdp(h, &o->id, rand_r(&seed) % 2, sdp, len)) != 0)
                WRITE_FAILED(rc, "set_sdp: %s", shmreg_strerror(rc));
            else
                R->sdps++;
        } else if (r < 66) {                                          /* update */
            struct own *o = &own[rand_r(&seed) % nown];
            shmreg_fields f;
            memset(&f, 0, sizeof f);
            sprintf(to, "sip:to-w%d-%u-v%u@test", self_k, o->n, o->ver + 1);
            sprintf(disp, "v%u", o->ver + 1);
            f.str[SHMREG_FIELD_TO_URI] = SS(to);
            f.str[SHMREG_FIELD_DISPLAY_NAME] = SS(disp);
            f.local_rtp_port = (uint16_t)(o->ver + 1);
            rc = shmreg_session_update(h, &o->id, &f, SHMREG_MASK(SHMREG_FIELD_TO_URI) |
                                       SHMREG_MASK(SHMREG_FIELD_DISPLAY_NAME) |
                                       SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT));
            if (rc != 0)
                WRITE_FAILED(rc, "update: %s", shmreg_strerror(rc));
            else {
                o->ver++;
                R->updates++;
            }
            shmreg_session_counter_add(h, &o->id, SHMREG_CTR_PACKETS_SENT, 1);
        } else if (r < 90) {                                          /* read */
            shmreg_session v;
            int k;
            unsigned n, ver;
            shmreg_read_begin(h);
            for (int i = 0; i < 16; i++) {
                rc = shmreg_session_next(h, &cursor, SHMREG_STATE_ANY, &v);
                if (rc == SHMREG_ENOENT) {
                    cursor = 0;
                    break;
                }
                if (rc != 0) {
                    FAIL("session_next: %s", shmreg_strerror(rc));
                    break;
                }
                R->reads++;
                if (!fields_whole(&v, &k, &n, &ver))
                    R->torn++;
                else if (k != self_k && nothers < 16)
                    others[nothers++] = v.id;
                else if (k != self_k)
                    others[rand_r(&seed) % 16] = v.id;
            }
            /* One of ours: must be there, exactly as we left it. */
            struct own *o = &own[rand_r(&seed) % nown];
            rc = shmreg_session_get(h, &o->id, &v);
            R->gets++;
            if (rc != 0)
                FAIL("get own: %s", shmreg_strerror(rc));
            else if (!fields_whole(&v, &k, &n, &ver))
                R->torn++;
            else if (k != self_k || n != o->n || ver != o->ver || v.state != o->state ||
                     v.local_rtp_port != (uint16_t)o->ver || v.owner_pid != getpid())
                FAIL("own session %u reads back wrong (state %d want %d, ver %u want %u)",
                     o->n, v.state, o->state, ver, o->ver);
            /* One of someone else's: there or deleted, never torn. */
            if (nothers) {
                rc = shmreg_session_get(h, &others[rand_r(&seed) % nothers], &v);
                R->gets++;
                if (rc == 0 && !fields_whole(&v, &k, &n, &ver))
                    R->torn++;
                else if (rc != 0 && rc != SHMREG_ENOENT)
                    FAIL("get other: %s", shmreg_strerror(rc));
            }
            shmreg_read_end(h);
        } else {                                                      /* delete */
            int i = rand_r(&seed) % nown;
            shmreg_id got;
            sprintf(call, "call-w%d-%u", self_k, own[i].n);
            rc = shmreg_dialog_find(h, SS(call), SS("l"), SS("r"), &got);
            if (rc != 0 || memcmp(&got, &own[i].id, sizeof got) != 0)
                FAIL("dialog_find before delete: %s", shmreg_strerror(rc));
            if ((rc = shmreg_session_delete(h, &own[i].id)) != 0) {
                FAIL("delete: %s", shmreg_strerror(rc));
                continue;
            }
            R->deleted++;
            rc = shmreg_dialog_find(h, SS(call), SS("l"), SS("r"), &got);
            if (rc != SHMREG_ENOENT)
                FAIL("dialog_find after delete: %s", shmreg_strerror(rc));
            own[i] = own[--nown];
        }
    }
    free(sdp);
    R->done = 1;
    shmreg_close(h);
}

static void count_problem(void *arg, const char *what)
{
    long *n = arg;
    if (++*n <= 5)
        diag("check: %s", what);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof path, "%s", test_dir("concurrency"));
    sh = test_shared(sizeof *sh);

    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 4096;
    shmreg *h = NULL;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    shmreg_stats st0, st;
    shmreg_stat(h, &st0);
    note("heap at start: used %llu, retired %llu",
         (unsigned long long)st0.heap_used_bytes, (unsigned long long)st0.heap_retired_bytes);

    pid_t pids[WORKERS];
    for (int k = 0; k < WORKERS; k++)
        pids[k] = test_fork(worker, (void *)(intptr_t)k);
    atomic_store(&sh->go, 1);

    /* While they work, the registry's own check finds nothing wrong. */
    long checks = 0, check_fail = 0, problems = 0;
    double t0 = test_mono_s();
    while (test_mono_s() - t0 < SECONDS) {
        shmreg_check_report rep;
        memset(&rep, 0, sizeof rep);
        int rc = shmreg_check(h, 0, &rep, count_problem, &problems, NULL);
        checks++;
        if (rc != 0 || rep.problems != 0)
            check_fail++;
        usleep(50000);
    }
    int exits = 0;
    for (int k = 0; k < WORKERS; k++)
        exits |= test_wait(pids[k]);
    is(exits, 0, "all %d workers exit cleanly", WORKERS);
    is(check_fail, 0, "%ld consistency checks run during the load found no problem", checks);
    is(problems, 0, "and reported none");

    struct report tot;
    memset(&tot, 0, sizeof tot);
    int all_done = 1, all_busy = 1;
    for (int k = 0; k < WORKERS; k++) {
        struct report *r = &sh->r[k];
        diag("worker %d: %ld ops: %ld created, %ld deleted, %ld transitions, %ld SDPs, "
             "%ld updates, %ld read by walking, %ld gets, %ld torn, %ld errors, %ld EFULL",
             k, r->ops, r->created, r->deleted, r->transitions, r->sdps, r->updates,
             r->reads, r->gets, r->torn, r->errors, r->full);
        tot.created += r->created;
        tot.deleted += r->deleted;
        tot.torn += r->torn;
        tot.errors += r->errors;
        all_done &= r->done;
        all_busy &= r->created > 10 && r->deleted > 0 && r->transitions > 0 &&
                    r->sdps > 0 && r->updates > 0 && r->reads > 0;
    }
    ok(all_done, "every worker ran to the end");
    ok(all_busy, "every worker created, deleted, transitioned, replaced, updated and read");
    is(tot.errors, 0, "no worker met an unexpected result");
    is(tot.torn, 0, "no read ever saw a torn session or SDP");

    long live = tot.created - tot.deleted;
    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], live, "session_counts: live sessions == created - deleted (%ld)", live);
    uint64_t bystate = 0;
    for (int s = 1; s < SHMREG_STATE_COUNT; s++)
        bystate += c[s];
    is(bystate, c[0], "the per-state counts add up to the total");
    shmreg_stat(h, &st);
    is(st.sessions, live, "stat.sessions agrees");
    is(st.dialogs, live, "one dialog per live session (stat.dialogs)");

    shmreg_id *ids = malloc(sizeof *ids * 4096);
    long n = 0, torn = 0, dialog_ok = 0;
    uint64_t cur = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    while (n < 4096 && shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0) {
        int k;
        unsigned sn, ver;
        ids[n++] = v.id;
        if (!fields_whole(&v, &k, &sn, &ver))
            torn++;
        shmreg_dialog d;
        shmreg_id got;
        if (v.ndialogs == 1 && shmreg_session_dialog(h, &v.id, 0, &d) == 0 &&
            shmreg_dialog_find(h, d.call_id, d.local_tag, d.remote_tag, &got) == 0 &&
            !memcmp(&got, &v.id, sizeof got))
            dialog_ok++;
    }
    shmreg_read_end(h);
    is(n, live, "a walk finds the same number of live sessions");
    is(torn, 0, "all of them whole");
    is(dialog_ok, live, "each with its one dialog, which finds it");

    is(shmreg_reap(h), 0, "every worker closed its handle: nothing to reap");
    shmreg_stat(h, &st);
    is(st.handles, 1, "only our handle is attached");

    shmreg_check_report rep;
    memset(&rep, 0xff, sizeof rep);
    problems = 0;
    is(shmreg_check(h, 0, &rep, count_problem, &problems, NULL), 0, "shmreg_check returns 0");
    is(rep.problems, 0, "and reports 0 problems");
    is(rep.leaked_blocks, 0, "no leaked blocks (no one crashed)");
    is(rep.stale_handles, 0, "no stale handles");
    is(rep.sessions, live, "it counts the live sessions");
    is(rep.dialogs, live, "and the dialogs");

    int rc = 0;
    for (long i = 0; i < n; i++)
        rc |= shmreg_session_delete(h, &ids[i]);
    is(rc, 0, "delete every session");
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], 0, "no session is left");
    shmreg_stat(h, &st);
    is(st.dialogs, 0, "no dialog is left");
    is(st.heap_used_bytes - st.heap_retired_bytes, st0.heap_used_bytes - st0.heap_retired_bytes,
       "heap bytes in use, less those retired, are back to the start (%llu used, %llu retired)",
       (unsigned long long)st.heap_used_bytes, (unsigned long long)st.heap_retired_bytes);

    /* With no reader anywhere, a few create/delete cycles let reclamation
     * catch up. */
    int cycles = 0;
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:cycle@test");
    while (cycles < 1000) {
        shmreg_stat(h, &st);
        if (st.heap_used_bytes == st0.heap_used_bytes)
            break;
        shmreg_id id;
        shmreg_session_create(h, &f, &id);
        shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0", 3);
        shmreg_session_delete(h, &id);
        cycles++;
    }
    is(st.heap_used_bytes, st0.heap_used_bytes,
       "after %d create/delete cycles heap_used_bytes is what it was at the start", cycles);
    free(ids);

    shmreg_close(h);
    shmreg_destroy(path, 1);
    munmap(sh, sizeof *sh);
    return done_testing();
}
