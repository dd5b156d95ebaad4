/*
 * crash.c — writers killed with SIGKILL at random moments cost nothing but
 * themselves.
 *
 * Two survivor workers write and read without pause. Meanwhile 50 victims,
 * one after the other, attach and write in a loop (create, bind a dialog,
 * replace SDPs, transition, delete; inside and outside read sections) and
 * are killed with SIGKILL after a random 0-20 ms. Afterwards the survivors
 * must have met no error and seen no torn value, and must have kept going;
 * shmreg_check must find no structural problem; with SHMREG_CHECK_REPAIR it
 * clears the dead handles and reclaims what the victims leaked, after which
 * a second check finds nothing left to repair; and the heap returns to its
 * starting point once every session is deleted.
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

#define VICTIMS 50
#define SURVIVORS 2

struct surv {
    atomic_long ops, errors, torn, full, reads;
    char first_error[200], first_full[200];
};

struct shared {
    atomic_int stop;
    atomic_int victims_attached;
    struct surv s[SURVIVORS];
};

static char path[400];
static struct shared *sh;

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

/* ------------------------------------------------ self-checking values */


/* from "sip:w<k>-<n>@test", to "sip:to-w<k>-<n>@test", SDPs whole. */
static int whole(const shmreg_session *v)
{
    char from[96], to[96], want[96];
    int k, end = 0;
    unsigned n;
    if (v->state < SHMREG_STATE_INITIATING || v->state > SHMREG_STATE_FAILED)
        return 0;
    if (!copy(v->str[SHMREG_FIELD_FROM_URI], from, sizeof from) ||
        !copy(v->str[SHMREG_FIELD_TO_URI], to, sizeof to))
        return 0;
    if (sscanf(from, "sip:w%d-%u@test%n", &k, &n, &end) != 2 || end != (int)strlen(from))
        return 0;
    snprintf(want, sizeof want, "sip:to-w%d-%u@test", k, n);
    return strcmp(to, want) == 0 && sdp_whole(v->sdp[0]) && sdp_whole(v->sdp[1]);
}

/* ------------------------------------------------ one writer's loop */

struct own { shmreg_id id; int state; unsigned n; };

struct writer {
    int k;                  /* worker number (victims: 100 + i) */
    int max_own;
    struct surv *report;    /* NULL for victims */
};

static void bad(struct writer *w, const char *op, int rc)
{
    if (!w->report)
        return;
    if (rc == SHMREG_EFULL) {
        /* Legal while readers pin retired memory; counted, not an error. */
        if (atomic_fetch_add(&w->report->full, 1) == 0)
            snprintf(w->report->first_full, sizeof w->report->first_full, "%s: %s", op,
                     shmreg_errmsg());
        return;
    }
    if (atomic_fetch_add(&w->report->errors, 1) == 0)
        snprintf(w->report->first_error, sizeof w->report->first_error, "%s: %s (%s)",
                 op, shmreg_strerror(rc), shmreg_errmsg());
}

static int legal_next(int from, unsigned *seed)
{
    int opts[SHMREG_STATE_COUNT], n = 0;
    for (int to = 1; to < SHMREG_STATE_COUNT; to++)
        if (shmreg_state_allowed(from, to))
            opts[n++] = to;
    return n ? opts[rand_r(seed) % n] : 0;
}

static void write_loop(struct writer *w, shmreg *h, unsigned seed)
{
    struct own own[32];
    int nown = 0;
    unsigned next_n = 0;
    uint64_t cursor = 0;
    char from[96], to[96], call[48];
    char *sdp = malloc(SDP_HDR + 2000);
    shmreg_session v;
    int rc;

    while (!atomic_load(&sh->stop)) {
        int r = rand_r(&seed) % 100;
        int in_section = rand_r(&seed) % 3 == 0;
        if (w->report)
            atomic_fetch_add(&w->report->ops, 1);
        if (in_section)
            shmreg_read_begin(h);
        if (nown == 0 || (r < 20 && nown < w->max_own)) {
            struct own *o = &own[nown];
            o->n = next_n++;
            o->state = SHMREG_STATE_INITIATING;
            shmreg_fields f;
            memset(&f, 0, sizeof f);
            sprintf(from, "sip:w%d-%u@test", w->k, o->n);
            sprintf(to, "sip:to-w%d-%u@test", w->k, o->n);
            sprintf(call, "call-w%d-%u", w->k, o->n);
            f.str[SHMREG_FIELD_FROM_URI] = SS(from);
            f.str[SHMREG_FIELD_TO_URI] = SS(to);
            f.str[SHMREG_FIELD_CALL_ID] = SS(call);
            if ((rc = shmreg_session_create(h, &f, &o->id)) != 0)
                bad(w, "create", rc);
            else {
                nown++;
                if ((rc = shmreg_dialog_bind(h, SS(call), SS("l"), SS("r"), &o->id)) != 0)
                    bad(w, "dialog_bind", rc);
            }
        } else if (r < 45) {
            struct own *o = &own[rand_r(&seed) % nown];
            size_t len = make_sdp(sdp, &seed, (size_t)(rand_r(&seed) % 2000));
            if ((rc = shmreg_session_set_sdp(h, &o->id, rand_r(&seed) % 2, sdp, len)) != 0)
                bad(w, "set_sdp", rc);
        } else if (r < 65) {
            struct own *o = &own[rand_r(&seed) % nown];
            int to_state = legal_next(o->state, &seed), old = -1;
            if (to_state) {
                rc = shmreg_session_transition(h, &o->id, o->state, to_state, &old);
                if (rc != 0 || old != o->state)
                    bad(w, "transition", rc ? rc : SHMREG_ECONFLICT);
                else
                    o->state = to_state;
            }
        } else if (r < 85) {
            if (!in_section)
                shmreg_read_begin(h);
            for (int i = 0; i < 8; i++) {
                rc = shmreg_session_next(h, &cursor, SHMREG_STATE_ANY, &v);
                if (rc == SHMREG_ENOENT) {
                    cursor = 0;
                    break;
                }
                if (rc != 0) {
                    bad(w, "session_next", rc);
                    break;
                }
                if (w->report) {
                    atomic_fetch_add(&w->report->reads, 1);
                    if (!whole(&v))
                        atomic_fetch_add(&w->report->torn, 1);
                }
            }
            struct own *o = &own[rand_r(&seed) % nown];
            if ((rc = shmreg_session_get(h, &o->id, &v)) != 0)
                bad(w, "get own", rc);
            else if (w->report && (!whole(&v) || v.state != o->state))
                atomic_fetch_add(&w->report->torn, 1);
            if (!in_section)
                shmreg_read_end(h);
        } else {
            int i = rand_r(&seed) % nown;
            if ((rc = shmreg_session_delete(h, &own[i].id)) != 0)
                bad(w, "delete", rc);
            own[i] = own[--nown];
        }
        if (in_section)
            shmreg_read_end(h);
    }
    free(sdp);
}

static void survivor(void *arg)
{
    struct writer w = { .k = (int)(intptr_t)arg, .max_own = 32 };
    w.report = &sh->s[w.k];
    shmreg *h = NULL;
    int rc = shmreg_open(path, NULL, &h);
    if (rc != 0) {
        bad(&w, "open", rc);
        _exit(2);
    }
    write_loop(&w, h, (unsigned)getpid() * 2654435761u);
    shmreg_close(h);
}

static void victim(void *arg)
{
    struct writer w = { .k = 100 + (int)(intptr_t)arg, .max_own = 8 };
    shmreg *h = NULL;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    atomic_fetch_add(&sh->victims_attached, 1);
    write_loop(&w, h, (unsigned)getpid() * 2246822519u);
    _exit(0);   /* only if told to stop; normally killed first */
}

static void count_problem(void *arg, const char *what)
{
    long *n = arg;
    if (++*n <= 5)
        diag("check: %s", what);
}

static long ops_of(int k) { return atomic_load(&sh->s[k].ops); }

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    note("seed %u", seed);
    srand(seed);
    snprintf(path, sizeof path, "%s", test_dir("crash"));
    sh = test_shared(sizeof *sh);

    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 4096;
    o.heap_bytes = 256u << 20;
    shmreg *h = NULL;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    shmreg_stats st0, st;
    shmreg_stat(h, &st0);

    pid_t surv[SURVIVORS];
    for (int k = 0; k < SURVIVORS; k++)
        surv[k] = test_fork(survivor, (void *)(intptr_t)k);
    double t0 = test_mono_s();
    while ((ops_of(0) < 100 || ops_of(1) < 100) && test_mono_s() - t0 < 10)
        usleep(1000);
    long ops_before[SURVIVORS];
    for (int k = 0; k < SURVIVORS; k++)
        ops_before[k] = ops_of(k);

    int killed = 0;
    for (int i = 0; i < VICTIMS; i++) {
        pid_t pid = test_fork(victim, (void *)(intptr_t)i);
        usleep((useconds_t)(rand() % 20001));
        kill(pid, SIGKILL);
        killed += test_wait(pid) == 128 + SIGKILL;
    }
    is(killed, VICTIMS, "%d victims were killed with SIGKILL while writing", VICTIMS);
    diag("%d of them had finished attaching when killed", atomic_load(&sh->victims_attached));
    ok(atomic_load(&sh->victims_attached) > 0, "some victims were killed after attaching");

    long ops_at_last_kill[SURVIVORS];
    for (int k = 0; k < SURVIVORS; k++)
        ops_at_last_kill[k] = ops_of(k);

    /* A check while the survivors write finds no problem. */
    shmreg_check_report rep;
    long problems = 0;
    memset(&rep, 0xff, sizeof rep);
    is(shmreg_check(h, 0, &rep, count_problem, &problems, NULL), 0,
       "shmreg_check while the survivors write returns 0");
    is(rep.problems, 0, "and reports no problem");

    usleep(300000);
    atomic_store(&sh->stop, 1);
    int exits = 0;
    for (int k = 0; k < SURVIVORS; k++)
        exits |= test_wait(surv[k]);
    is(exits, 0, "the survivors exit cleanly");
    for (int k = 0; k < SURVIVORS; k++) {
        struct surv *s = &sh->s[k];
        diag("survivor %d: %ld ops (%ld before the kills, %ld at the last kill), %ld sessions read, "
             "%ld torn, %ld errors, %ld EFULL", k, atomic_load(&s->ops), ops_before[k],
             ops_at_last_kill[k], atomic_load(&s->reads), atomic_load(&s->torn),
             atomic_load(&s->errors), atomic_load(&s->full));
        if (!is(atomic_load(&s->errors), 0, "survivor %d met no error", k))
            diag("first error: %s", s->first_error);
        if (atomic_load(&s->full))
            diag("survivor %d first SHMREG_EFULL: %s", k, s->first_full);
        is(atomic_load(&s->torn), 0, "survivor %d never read a torn session or SDP", k);
        ok(ops_at_last_kill[k] > ops_before[k], "survivor %d kept writing during the kills", k);
        ok(atomic_load(&s->ops) > ops_at_last_kill[k], "survivor %d kept writing after the kills", k);
    }

    /* Dead handles as handle_next shows them. */
    uint64_t cur = 0;
    shmreg_handle_info hi;
    int dead = 0, live = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0) {
        if (hi.alive)
            live++;
        else if (hi.pid != 0)   /* pid 0: a closed or reaped slot still draining */
            dead++;
    }
    is(live, 1, "only our own handle is alive");
    ok(dead <= VICTIMS, "at most one dead handle per victim (%d)", dead);

    shmreg_check_report r1, r2, r3;
    memset(&r1, 0xff, sizeof r1);
    problems = 0;
    is(shmreg_check(h, 0, &r1, count_problem, &problems, NULL), 0, "shmreg_check (no repair) returns 0");
    is(r1.problems, 0, "it reports 0 problems");
    is(problems, 0, "and calls the problem callback 0 times");
    is(r1.stale_handles, dead, "it counts the %d dead handles as stale", dead);
    diag("before repair: %llu leaked blocks (%llu bytes), %llu stale handles, %llu sessions, "
         "%llu dialogs", (unsigned long long)r1.leaked_blocks, (unsigned long long)r1.leaked_bytes,
         (unsigned long long)r1.stale_handles, (unsigned long long)r1.sessions,
         (unsigned long long)r1.dialogs);

    memset(&r2, 0xff, sizeof r2);
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &r2, count_problem, &problems, NULL), 0,
       "shmreg_check with SHMREG_CHECK_REPAIR returns 0");
    is(r2.problems, 0, "it reports 0 problems");
    is(r2.reaped_handles, r1.stale_handles, "it reaps every dead victim's handle (%llu)",
       (unsigned long long)r1.stale_handles);
    diag("repair reclaimed %llu blocks", (unsigned long long)r2.reclaimed_blocks);

    memset(&r3, 0xff, sizeof r3);
    is(shmreg_check(h, 0, &r3, count_problem, &problems, NULL), 0, "a second check returns 0");
    is(r3.problems, 0, "with 0 problems");
    is(r3.leaked_blocks, 0, "0 leaked blocks");
    is(r3.leaked_bytes, 0, "0 leaked bytes");
    is(r3.stale_handles, 0, "and 0 stale handles");
    shmreg_stat(h, &st);
    is(st.handles, 1, "stat.handles is 1");
    cur = 0;
    int listed = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0) {
        listed++;
        if (!hi.self)
            diag("left after repair: slot %u pid %d alive %d in_read %d", hi.slot, (int)hi.pid,
                 hi.alive, hi.in_read);
    }
    is(listed, 1, "handle_next lists only our handle");

    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(r3.sessions, c[0], "the check counts as many sessions as session_counts (%llu)",
       (unsigned long long)c[0]);
    is(r3.dialogs, st.dialogs, "and as many dialogs as stat (%u)", st.dialogs);

    /* Every dialog in the index belongs to a live session that lists it. */
    long ndlg = 0, orphan_dialogs = 0;
    shmreg_dialog d;
    cur = 0;
    shmreg_read_begin(h);
    while (ndlg < 100000 && shmreg_dialog_next(h, &cur, &d) == 0) {
        shmreg_session sv;
        ndlg++;
        if (shmreg_session_get(h, &d.session, &sv) != 0 || sv.ndialogs != 1)
            orphan_dialogs++;
    }
    shmreg_read_end(h);
    is(ndlg, st.dialogs, "dialog_next walks as many dialogs as stat counts (%ld)", ndlg);
    is(orphan_dialogs, 0, "each belongs to a live session that counts it");

    /* Everything left is whole; delete it all. */
    shmreg_id *ids = malloc(sizeof *ids * 4096);
    long n = 0, torn = 0;
    shmreg_session v;
    cur = 0;
    shmreg_read_begin(h);
    while (n < 4096 && shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0) {
        ids[n++] = v.id;
        torn += !whole(&v);
    }
    shmreg_read_end(h);
    is(n, c[0], "a walk finds the %llu sessions", (unsigned long long)c[0]);
    is(torn, 0, "every one of them whole");
    int rc = 0;
    for (long i = 0; i < n; i++)
        rc |= shmreg_session_delete(h, &ids[i]);
    is(rc, 0, "delete them all");
    free(ids);
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], 0, "no session is left");
    shmreg_stat(h, &st);
    is(st.sessions, 0, "stat.sessions is 0");
    is(st.dialogs, 0, "and no dialog is left");
    cur = 0;
    shmreg_read_begin(h);
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOENT, "not even in the dialog index");
    shmreg_read_end(h);

    is(st.heap_used_bytes - st.heap_retired_bytes, st0.heap_used_bytes - st0.heap_retired_bytes,
       "heap bytes in use, less those retired, are back to the start (%llu used, %llu retired)",
       (unsigned long long)st.heap_used_bytes, (unsigned long long)st.heap_retired_bytes);

    /* With no reader left, reclamation catches up within a few cycles. */
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:w0-0@test");
    int cycles = 0;
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
    if (!is(st.heap_used_bytes, st0.heap_used_bytes,
            "after %d create/delete cycles the heap is back to where it started", cycles)) {
        diag("%llu bytes retired", (unsigned long long)st.heap_retired_bytes);
        cur = 0;
        while (shmreg_handle_next(h, &cur, &hi) == 0)
            diag("handle slot %u pid %d alive %d in_read %d self %d", hi.slot, (int)hi.pid,
                 hi.alive, hi.in_read, hi.self);
    }
    memset(&r3, 0xff, sizeof r3);
    is(shmreg_check(h, 0, &r3, count_problem, &problems, NULL), 0, "a final check returns 0");
    ok(r3.problems == 0 && r3.leaked_blocks == 0 && r3.sessions == 0 && r3.dialogs == 0,
       "an empty, clean registry");
    diag("final check: %llu heap blocks used, %llu free", (unsigned long long)r3.heap_blocks_used,
         (unsigned long long)r3.heap_blocks_free);

    shmreg_close(h);
    shmreg_destroy(path, 1);
    munmap(sh, sizeof *sh);
    return done_testing();
}
