/*
 * profile_crash.c — processes killed with SIGKILL while they join, leave
 * and delete sessions in profiles (issue 17) leave no count a repair
 * cannot make exact.
 *
 * Churn: a victim joins and leaves a few limited (profile, value) pairs
 * and deletes and re-creates sessions, and is killed at a random moment;
 * 150 times (SHMREG_TEST_SEED repeats a run's choices, not its timing). After every kill: a repairing shmreg_check, then for every
 * pair its count equals the members member_next lists, equals the live
 * sessions whose session_profile names the pair (the same sessions), is
 * within its limit, and profile_next lists exactly the pairs in use; a
 * fresh session is admitted at a limit exactly when the pair is below it;
 * a second check is clean (no problem, no leak).
 *
 * The crash points of profiles, each hit for certain: a joiner stopped
 * after listing itself but before counting (holding the pair's lock)
 * counts once the next process takes the lock; a leaver stopped after
 * unlisting (holding the lock, its session's word not cleared) is no
 * member any more, and the repair frees the word.
 *
 * The last place: a pair at its limit less one, a victim taking and
 * giving back the last place, killed 60 times with no check in between:
 * a join by another session at the limit is refused exactly when the
 * victim is a member, and succeeds once the victim's session is deleted,
 * so no count left by a dead process holds a place.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "crashpoint.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

#define POOL 24
#define NPAIRS 4
#define KILLS 150
#define GATE_KILLS 60
#define MAXS 512

static const struct {
    const char *p, *v;
    uint32_t limit;
} pr[NPAIRS] = {
    { "trunk", "carrier-a", 6 },
    { "trunk", "carrier-b", 4 },
    { "customer", "acme", 0 },
    { "inbound", "", 10 },
};

struct shared {
    shmreg_id pool[POOL];
    shmreg_id victim;
    atomic_long ops;
};

static struct shared *sh;

static shmreg_str P(int i) { return test_ss(pr[i].p); }
static shmreg_str V(int i) { return test_ss(pr[i].v); }

/* Join, leave, delete and re-create pool sessions, forever. */
static void churn_victim(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    unsigned seed = (unsigned)getpid() * 2654435761u;
    for (;;) {
        int s = (int)(rand_r(&seed) % POOL), p = (int)(rand_r(&seed) % NPAIRS);
        unsigned op = rand_r(&seed) % 100;
        shmreg_id id = sh->pool[s];
        if (op < 48)
            shmreg_profile_join(h, &id, P(p), V(p), pr[p].limit, NULL);
        else if (op < 94)
            shmreg_profile_leave(h, &id, P(p), V(p));
        else {
            shmreg_session_delete(h, &id);
            shmreg_id fresh;
            if (shmreg_session_create(h, NULL, &fresh) == 0) {
                sh->pool[s] = fresh;
                for (int k = 0; k < NPAIRS; k++)
                    if (rand_r(&seed) % 2)
                        shmreg_profile_join(h, &fresh, P(k), V(k), pr[k].limit, NULL);
            }
        }
        atomic_fetch_add(&sh->ops, 1);
    }
}

/* Take the last place of (gate, g) and give it back, forever. */
static void gate_victim(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    shmreg_id v = sh->victim;
    for (;;) {
        shmreg_profile_join(h, &v, S("gate"), S("g"), 4, NULL);
        atomic_fetch_add(&sh->ops, 1);
        shmreg_profile_leave(h, &v, S("gate"), S("g"));
        atomic_fetch_add(&sh->ops, 1);
    }
}

/* Fork `fn`, let it get going, kill it after a random 50..2000 us. */
static void run_and_kill(void (*fn)(void *), unsigned *seed)
{
    atomic_store(&sh->ops, 0);
    pid_t pid = test_fork(fn, NULL);
    double give_up = test_mono_s() + 10;
    while (atomic_load(&sh->ops) == 0 && test_mono_s() < give_up)
        sched_yield();
    test_sleep_us(50 + rand_r(seed) % 1950);
    kill(pid, SIGKILL);
    int st = test_wait(pid);
    if (st != 128 + SIGKILL)
        bail_out("victim ended with status %d, not SIGKILL (ops %ld)", st, atomic_load(&sh->ops));
}

static int pair_index(shmreg_str p, shmreg_str v)
{
    for (int i = 0; i < NPAIRS; i++)
        if (test_str_is(p, pr[i].p, strlen(pr[i].p)) && test_str_is(v, pr[i].v, strlen(pr[i].v)))
            return i;
    return -1;
}

/* Everything said in the header comment about the counts, after a repair.
 * Returns 1 when it all holds; says what did not with diag. */
static int counts_exact(shmreg *h, const char *when)
{
    static shmreg_id mem[NPAIRS][MAXS], via[NPAIRS][MAXS];
    int nmem[NPAIRS] = { 0 }, nvia[NPAIRS] = { 0 }, good = 1;
    uint64_t cnt[NPAIRS];

    for (int p = 0; p < NPAIRS; p++) {
        int rc = shmreg_profile_count(h, P(p), V(p), &cnt[p]);
        if (rc != 0) {
            diag("%s: count (%s, %s): %s", when, pr[p].p, pr[p].v, shmreg_strerror(rc));
            return 0;
        }
    }
    shmreg_read_begin(h);
    for (int p = 0; p < NPAIRS; p++) {
        uint64_t cur = 0;
        shmreg_id id;
        int rc;
        while ((rc = shmreg_profile_member_next(h, P(p), V(p), &cur, &id)) == 0 && nmem[p] < MAXS) {
            if (test_id_in(mem[p], nmem[p], &id)) {
                diag("%s: (%s, %s) lists a member twice", when, pr[p].p, pr[p].v);
                good = 0;
            }
            mem[p][nmem[p]++] = id;
        }
        if (rc != SHMREG_ENOENT) {
            diag("%s: member_next (%s, %s): %s", when, pr[p].p, pr[p].v, shmreg_strerror(rc));
            good = 0;
        }
    }
    uint64_t cur = 0;
    shmreg_session v;
    int rc;
    while ((rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v)) == 0) {
        shmreg_profile_entry e;
        unsigned i;
        for (i = 0; i < v.nprofiles; i++) {
            if ((rc = shmreg_session_profile(h, &v.id, i, &e)) != 0) {
                diag("%s: session_profile %u of %u: %s", when, i, v.nprofiles, shmreg_strerror(rc));
                good = 0;
                break;
            }
            int p = pair_index(e.profile, e.value);
            if (p < 0) {
                diag("%s: a session lists a pair nobody joined", when);
                good = 0;
            } else if (test_id_in(via[p], nvia[p], &v.id)) {
                diag("%s: a session lists (%s, %s) twice", when, pr[p].p, pr[p].v);
                good = 0;
            } else if (nvia[p] < MAXS)
                via[p][nvia[p]++] = v.id;
        }
        if (i == v.nprofiles && shmreg_session_profile(h, &v.id, i, &e) != SHMREG_ENOENT) {
            diag("%s: a session has a membership past its nprofiles %u", when, v.nprofiles);
            good = 0;
        }
    }
    if (rc != SHMREG_ENOENT) {
        diag("%s: session_next: %s", when, shmreg_strerror(rc));
        good = 0;
    }
    /* profile_next lists the pairs in use, with the same counts. */
    int listed[NPAIRS] = { 0 };
    shmreg_profile_entry e;
    cur = 0;
    while ((rc = shmreg_profile_next(h, (shmreg_str){ NULL, 0 }, &cur, &e)) == 0) {
        int p = pair_index(e.profile, e.value);
        if (p < 0 || listed[p]++ || e.count != cnt[p]) {
            diag("%s: profile_next lists %.*s=%.*s count %llu", when, (int)e.profile.len, e.profile.ptr,
                 (int)e.value.len, e.value.ptr, (unsigned long long)e.count);
            good = 0;
        }
    }
    shmreg_read_end(h);
    for (int p = 0; p < NPAIRS; p++) {
        int same = nmem[p] == nvia[p];
        for (int i = 0; same && i < nmem[p]; i++)
            same = test_id_in(via[p], nvia[p], &mem[p][i]);
        if (cnt[p] != (uint64_t)nmem[p] || !same || (pr[p].limit && cnt[p] > pr[p].limit) ||
            listed[p] != (cnt[p] > 0)) {
            diag("%s: (%s, %s): count %llu, member_next %d, sessions naming it %d (same: %d), listed %d",
                 when, pr[p].p, pr[p].v, (unsigned long long)cnt[p], nmem[p], nvia[p], same, listed[p]);
            good = 0;
        }
    }
    /* Admission at each limit: exactly when below it. */
    for (int p = 0; p < NPAIRS && good; p++) {
        if (!pr[p].limit)
            continue;
        shmreg_id probe = test_session_new(h);
        uint64_t c = 0;
        int jr = shmreg_profile_join(h, &probe, P(p), V(p), pr[p].limit, &c);
        int want = cnt[p] < pr[p].limit ? 0 : SHMREG_ELIMIT;
        uint64_t wantc = cnt[p] < pr[p].limit ? cnt[p] + 1 : cnt[p];
        if (jr != want || c != wantc) {
            diag("%s: (%s, %s) at count %llu, limit %u: join gave %s, *count %llu", when, pr[p].p, pr[p].v,
                 (unsigned long long)cnt[p], pr[p].limit, shmreg_strerror(jr), (unsigned long long)c);
            good = 0;
        }
        shmreg_session_delete(h, &probe);
        uint64_t after = 0;
        shmreg_profile_count(h, P(p), V(p), &after);
        if (after != cnt[p]) {
            diag("%s: (%s, %s) counts %llu after the probe was deleted, not %llu", when, pr[p].p, pr[p].v,
                 (unsigned long long)after, (unsigned long long)cnt[p]);
            good = 0;
        }
    }
    return good;
}

/* Every pair listed by profile_next counts exactly its member_next list. */
static int counts_exact_cp(shmreg *h)
{
    int good = 1, rc;
    uint64_t cur = 0;
    shmreg_profile_entry e;
    shmreg_read_begin(h);
    while ((rc = shmreg_profile_next(h, (shmreg_str){ NULL, 0 }, &cur, &e)) == 0) {
        uint64_t mc = 0, n = 0;
        shmreg_id id;
        while (shmreg_profile_member_next(h, e.profile, e.value, &mc, &id) == 0)
            n++;
        if (n != e.count) {
            diag("%.*s=%.*s: count %llu, %llu listed", (int)e.profile.len, e.profile.ptr, (int)e.value.len,
                 e.value.ptr, (unsigned long long)e.count, (unsigned long long)n);
            good = 0;
        }
    }
    shmreg_read_end(h);
    return good && rc == SHMREG_ENOENT;
}

static int check_clean(shmreg *h, const char *when)
{
    shmreg_check_report r;
    memset(&r, 0xff, sizeof r);
    int rc = shmreg_check(h, 0, &r, NULL, NULL, NULL);
    if (rc != 0 || r.problems || r.leaked_blocks || r.stale_handles) {
        diag("%s: check: %s, %llu problems, %llu leaked, %llu stale handles", when, shmreg_strerror(rc),
             (unsigned long long)r.problems, (unsigned long long)r.leaked_blocks,
             (unsigned long long)r.stale_handles);
        return 0;
    }
    return 1;
}

static void test_churn_kills(unsigned *seed)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = MAXS;
    o.max_handles = 256;
    o.event_records = 1024;
    o.heap_bytes = 16u << 20;
    shmreg *h = test_reg_new_opts("profile-crash", o);
    for (int i = 0; i < POOL; i++)
        sh->pool[i] = test_session_new(h);

    int repaired_ok = 0, exact = 0, clean = 0, first_problems = 0;
    long ops = 0;
    for (int k = 0; k < KILLS; k++) {
        run_and_kill(churn_victim, seed);
        ops += atomic_load(&sh->ops);
        char when[64];
        snprintf(when, sizeof when, "after kill %d", k + 1);
        shmreg_check_report r;
        int rc = shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
        if (rc == 0 || rc == SHMREG_ECORRUPT)
            repaired_ok++;
        else
            diag("%s: repairing check: %s", when, shmreg_strerror(rc));
        if (r.problems) {
            first_problems++;
            diag("%s: the repairing check found %llu problems (repaired)", when, (unsigned long long)r.problems);
        }
        exact += counts_exact(h, when);
        clean += check_clean(h, when);
    }
    note("%ld operations done by the victims in all", ops);
    is(repaired_ok, KILLS, "%d victims joining, leaving and deleting were killed; each time a repairing check ran", KILLS);
    note("repairing checks that found problems to repair: %d", first_problems);
    is(exact, KILLS, "after every repair each count = members listed = live sessions naming the pair, "
                     "within its limit, listed by profile_next, and admission at the limit exact");
    is(clean, KILLS, "after every repair a second check is clean: no problem, no leak, no stale handle");

    /* Everything is deleted: every count goes to 0. */
    int rc = 0, n = 0;
    shmreg_id all[MAXS];
    uint64_t cur = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    while (n < MAXS && shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        all[n++] = v.id;
    shmreg_read_end(h);
    for (int i = 0; i < n; i++)
        rc |= shmreg_session_delete(h, &all[i]);
    is(rc, 0, "the %d sessions left delete", n);
    int zero = 1;
    for (int p = 0; p < NPAIRS; p++) {
        uint64_t c = 1;
        zero &= shmreg_profile_count(h, P(p), V(p), &c) == 0 && c == 0;
    }
    ok(zero, "every count is then 0");
    ok(counts_exact(h, "at the end") && check_clean(h, "at the end"), "and everything still agrees");
    test_reg_destroy(h);
}

static void test_gate_kills(unsigned *seed)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 64;
    o.max_handles = 256;
    o.event_records = 1024;
    o.heap_bytes = 16u << 20;
    shmreg *h = test_reg_new_opts("profile-gate", o);
    const uint32_t L = 4;
    shmreg_id fixed[3];
    for (int i = 0; i < 3; i++) {
        fixed[i] = test_session_new(h);
        shmreg_profile_join(h, &fixed[i], S("gate"), S("g"), L, NULL);
    }
    int refused_right = 0, admitted_right = 0, after_delete = 0, back_to_3 = 0, was_in = 0;
    for (int k = 0; k < GATE_KILLS; k++) {
        sh->victim = test_session_new(h);
        run_and_kill(gate_victim, seed);
        /* Is the victim a member? The list says. */
        int in = 0, n = 0;
        uint64_t cur = 0;
        shmreg_id id;
        shmreg_read_begin(h);
        while (shmreg_profile_member_next(h, S("gate"), S("g"), &cur, &id) == 0) {
            n++;
            in |= test_id_eq(&id, &sh->victim);
        }
        shmreg_read_end(h);
        was_in += in;
        shmreg_id p = test_session_new(h);
        uint64_t c = 0;
        int rc = shmreg_profile_join(h, &p, S("gate"), S("g"), L, &c);
        if (in) {
            if (rc == SHMREG_ELIMIT && c == L && n == (int)L)
                refused_right++;
            else
                diag("kill %d: victim listed (%d members), join at limit %u gave %s, *count %llu", k + 1, n, L,
                     shmreg_strerror(rc), (unsigned long long)c);
        } else {
            if (rc == 0 && c == L && n == (int)L - 1)
                admitted_right++;
            else
                diag("kill %d: victim not listed (%d members), join at limit %u gave %s, *count %llu", k + 1, n,
                     L, shmreg_strerror(rc), (unsigned long long)c);
        }
        shmreg_session_delete(h, &sh->victim);
        if (rc != 0) {
            c = 0;
            rc = shmreg_profile_join(h, &p, S("gate"), S("g"), L, &c);
            if (rc == 0 && c == L)
                after_delete++;
            else
                diag("kill %d: after the victim's delete, join at limit gave %s, *count %llu", k + 1,
                     shmreg_strerror(rc), (unsigned long long)c);
        }
        shmreg_session_delete(h, &p);
        c = 0;
        shmreg_profile_count(h, S("gate"), S("g"), &c);
        back_to_3 += c == 3;
    }
    note("the victim was a member at %d of %d kills", was_in, GATE_KILLS);
    is(refused_right + admitted_right, GATE_KILLS,
       "%d victims taking the last place were killed; a join at the limit right after was refused exactly "
       "when the victim was listed, admitted exactly when not, *count %u", GATE_KILLS, L);
    is(after_delete, refused_right, "every refused join succeeded once the victim's session was deleted");
    is(back_to_3, GATE_KILLS, "after each round the pair counts its 3 fixed members");
    shmreg_id ids[8];
    int n = 0;
    uint64_t cur = 0;
    shmreg_read_begin(h);
    while (n < 8 && shmreg_profile_member_next(h, S("gate"), S("g"), &cur, &ids[n]) == 0)
        n++;
    shmreg_read_end(h);
    ok(n == 3 && test_id_in(ids, n, &fixed[0]) && test_id_in(ids, n, &fixed[1]) && test_id_in(ids, n, &fixed[2]),
       "member_next lists exactly the 3 fixed members");
    shmreg_check_report r;
    int rc = shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    ok(rc == 0 || rc == SHMREG_ECORRUPT, "a repairing check runs (%llu problems, %llu handles reaped)",
       (unsigned long long)r.problems, (unsigned long long)r.reaped_handles);
    ok(check_clean(h, "gate, end"), "then a check is clean");
    uint64_t c = 0;
    shmreg_profile_count(h, S("gate"), S("g"), &c);
    is(c, 3, "and the count is still 3");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ crash points */

struct cp_arg {
    const char *point;
    int leave;              /* 1: leave (trunk, cp), else join it with limit 3 */
};

static void cp_child(void *arg)
{
    struct cp_arg *a = arg;
    shmreg *h = test_reg_attach();
    shm_crash_arm(a->point);
    if (a->leave)
        shmreg_profile_leave(h, &sh->victim, S("trunk"), S("cp"));
    else
        shmreg_profile_join(h, &sh->victim, S("trunk"), S("cp"), 3, NULL);
    _exit(0); /* the point was not reached */
}

static int listed(shmreg *h, const char *p, const char *v, const shmreg_id *id, int *n)
{
    uint64_t cur = 0;
    shmreg_id m;
    int in = 0;
    *n = 0;
    shmreg_read_begin(h);
    while (shmreg_profile_member_next(h, test_ss(p), test_ss(v), &cur, &m) == 0) {
        (*n)++;
        in |= test_id_eq(&m, id);
    }
    shmreg_read_end(h);
    return in;
}

static uint32_t nprofiles(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    uint32_t n = 0xffffffffu;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &v) == 0)
        n = v.nprofiles;
    shmreg_read_end(h);
    return n;
}

static void test_crash_points(void)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 64;
    o.max_handles = 64;
    o.event_records = 1024;
    o.heap_bytes = 16u << 20;
    shmreg *h = test_reg_new_opts("profile-cp", o);
    shmreg_id a = test_session_new(h), b = test_session_new(h), c = test_session_new(h);
    shmreg_profile_join(h, &a, S("trunk"), S("cp"), 3, NULL);
    shmreg_profile_join(h, &b, S("trunk"), S("cp"), 3, NULL);
    sh->victim = test_session_new(h);

    /* Joined and listed, not counted, the lock held by the dead. */
    struct cp_arg j = { "profile_join_listed", 0 };
    is(test_wait(test_fork(cp_child, &j)), SHM_CRASH_EXIT, "a joiner stops at profile_join_listed (third of limit 3)");
    int n;
    ok(listed(h, "trunk", "cp", &sh->victim, &n) && n == 3, "its session is listed: 3 members");
    is(nprofiles(h, &sh->victim), 1, "its view: nprofiles 1");
    uint64_t cnt = 0;
    is(shmreg_profile_join(h, &c, S("trunk"), S("cp"), 3, &cnt), SHMREG_ELIMIT,
       "a 4th at limit 3: SHMREG_ELIMIT (the next taker of the lock recounted)");
    is(cnt, 3, "... *count 3");
    cnt = 0;
    shmreg_profile_count(h, S("trunk"), S("cp"), &cnt);
    is(cnt, 3, "the count is 3");
    is(shmreg_profile_join(h, &sh->victim, S("trunk"), S("cp"), 0, NULL), SHMREG_EEXIST,
       "the stopped joiner's session joining again: SHMREG_EEXIST");

    /* Unlisted, its word not cleared, the lock held by the dead. */
    struct cp_arg l = { "profile_leave_unlisted", 1 };
    is(test_wait(test_fork(cp_child, &l)), SHM_CRASH_EXIT, "a leaver stops at profile_leave_unlisted");
    ok(!listed(h, "trunk", "cp", &sh->victim, &n) && n == 2, "its session is not listed: 2 members");
    is(nprofiles(h, &sh->victim), 0, "its view: nprofiles 0 (a word naming no list is no membership)");
    {
        shmreg_profile_entry e;
        shmreg_read_begin(h);
        is(shmreg_session_profile(h, &sh->victim, 0, &e), SHMREG_ENOENT, "session_profile 0 of it: SHMREG_ENOENT");
        shmreg_read_end(h);
    }
    cnt = 0;
    is(shmreg_profile_join(h, &c, S("trunk"), S("cp"), 3, &cnt), 0, "a join at limit 3 now succeeds");
    is(cnt, 3, "... *count 3");
    is(shmreg_profile_leave(h, &sh->victim, S("trunk"), S("cp")), SHMREG_ENOENT,
       "the stopped leaver's session leaving again: SHMREG_ENOENT");
    shmreg_profile_leave(h, &c, S("trunk"), S("cp"));

    /* A word left behind by such a leaver takes a membership place until
     * the repair: fill the other five, then repair, then a sixth fits. */
    char name[16];
    int rc = 0;
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof name, "p%d", i);
        rc |= shmreg_profile_join(h, &sh->victim, test_ss(name), S(""), 0, NULL);
    }
    is(rc, 0, "the leaver's session joins 5 other pairs");
    shmreg_check_report r;
    int c1 = shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    ok(c1 == 0 || c1 == SHMREG_ECORRUPT, "a repairing check runs (%llu problems, %llu reclaimed)",
       (unsigned long long)r.problems, (unsigned long long)r.reclaimed_blocks);
    is(shmreg_profile_join(h, &sh->victim, S("sixth"), S(""), 0, NULL), 0,
       "after it the session joins a 6th pair: the dead leaver's word was freed");
    is(nprofiles(h, &sh->victim), SHMREG_MAX_PROFILES_PER_SESSION, "nprofiles %u", SHMREG_MAX_PROFILES_PER_SESSION);
    ok(check_clean(h, "crash points"), "a second check is clean");
    ok(counts_exact_cp(h), "every count equals its members");
    test_reg_destroy(h);
}

static unsigned seed_g;
static void churn_section(void) { test_churn_kills(&seed_g); }
static void gate_section(void) { test_gate_kills(&seed_g); }

int main(void)
{
    const char *env = getenv("SHMREG_TEST_SEED");
    seed_g = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL) ^ (unsigned)getpid();
    diag("seed %u (SHMREG_TEST_SEED to repeat)", seed_g);
    sh = test_shared(sizeof *sh);
    test_watchdog_install();
    TEST_RUN(test_crash_points);
    TEST_RUN(churn_section);
    TEST_RUN(gate_section);
    alarm(0);
    munmap(sh, sizeof *sh);
    return done_testing();
}
