/*
 * timeout.c — timeouts and the sweeper (issue 17).
 *
 * A session carries one deadline with an action (FAIL or NOTIFY, NOTIFY
 * with a grace that re-arms it as FAIL); shmreg_expire(now) fires exactly
 * the due sessions, each once, and publishes one timeout event for each.
 * Per-state policies arm deadlines on create and transitions. Sweeps
 * pass an explicit now against deadlines an hour or more ahead of the
 * clock (but one, which shows that now 0 is the clock, against deadlines
 * 2 s behind it and an hour ahead), so no figure depends on timing.
 *
 * The crash points of timers, each hit for certain: a sweeper stopped
 * after acting but before marking the timer fired is taken over by the
 * next sweep without a second fire; an arm stopped before its session
 * names the new timer leaves the old one in force and nothing that fires.
 *
 * Several processes: 4 sweepers over 10,000 due sessions fire each
 * exactly once between them, with exactly 10,000 events; sweepers killed
 * with SIGKILL mid-sweep 60 times (600 sessions due at each) lose nothing
 * and fire nothing twice;
 * 100,000 due sessions are swept, every one.
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
#include "reg.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define SEC 1000000000ull
#define MS 1000000ull

static shmreg *timeout_reg(const char *name, uint32_t max_sessions, uint32_t event_records)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = max_sessions;
    o.max_handles = 256;
    o.event_records = event_records;
    return test_reg_new_opts(name, o);
}

struct tview {
    int rc, state;
    uint64_t deadline, created, updated;
    uint32_t flags;
};

static struct tview tv(shmreg *h, const shmreg_id *id)
{
    struct tview t;
    memset(&t, 0, sizeof t);
    shmreg_session v;
    shmreg_read_begin(h);
    t.rc = shmreg_session_get(h, id, &v);
    if (t.rc == 0) {
        t.state = v.state;
        t.deadline = v.deadline_ns;
        t.flags = v.timeout_flags;
        t.created = v.created_ns;
        t.updated = v.updated_ns;
    }
    shmreg_read_end(h);
    return t;
}

static int armed_as(shmreg *h, const shmreg_id *id, uint64_t deadline, uint32_t flags)
{
    struct tview t = tv(h, id);
    if (t.rc || t.deadline != deadline || t.flags != flags) {
        diag("view: rc %d deadline %llu flags 0x%x (want %llu 0x%x)", t.rc, (unsigned long long)t.deadline,
             t.flags, (unsigned long long)deadline, flags);
        return 0;
    }
    return 1;
}

static int state_of(shmreg *h, const shmreg_id *id)
{
    struct tview t = tv(h, id);
    return t.rc ? t.rc : t.state;
}

static int arm(shmreg *h, const shmreg_id *id, uint64_t when, unsigned flags, uint64_t grace)
{
    int rc = shmreg_session_set_timeout(h, id, when, flags, grace);
    if (rc != 0)
        diag("set_timeout: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return rc;
}

static int go(shmreg *h, const shmreg_id *id, int to)
{
    return shmreg_session_transition(h, id, SHMREG_STATE_ANY, to, NULL);
}

static int fired_is(const shmreg_expired *e, const shmreg_id *id, uint64_t deadline, uint32_t action,
                    int old_state, int new_state)
{
    int good = test_id_eq(&e->id, id) && e->deadline_ns == deadline && e->action == action &&
               e->old_state == old_state && e->new_state == new_state;
    if (!good)
        diag("fired: deadline %llu (want %llu) action %u (want %u) old %d (want %d) new %d (want %d) id %s",
             (unsigned long long)e->deadline_ns, (unsigned long long)deadline, e->action, action, e->old_state,
             old_state, e->new_state, new_state, test_id_eq(&e->id, id) ? "same" : "differs");
    return good;
}

static const shmreg_id zero_id;

/* Everything the subscription has up to the ring's end as of now, in
 * order. A record claimed by a producer that was killed before committing
 * it holds the subscriber until its skip wait (SHMREG_EVENT_SKIP_NS)
 * passes, so poll with a timeout until the subscription's position has
 * reached what was published (a watchdog, not a timing assertion). */
static int drain(shmreg *h, shmreg_sub *sub, shmreg_event *ev, int cap, uint64_t *missed)
{
    int n = 0;
    uint64_t end = test_stats(h).events_published;
    double give_up = test_mono_s() + 20;
    if (missed)
        *missed = 0;
    for (;;) {
        shmreg_event e[64];
        uint64_t m = 0;
        int got = shmreg_poll(sub, e, 64, 0, &m);
        if (got == 0) {
            shmreg_sub_stats st;
            if (shmreg_sub_stats_get(sub, &st) != 0 || st.next_seq >= end || test_mono_s() > give_up)
                return n;
            got = shmreg_poll(sub, e, 64, 2 * 1000000ll, &m);
        }
        if (missed)
            *missed += m;
        if (got < 0)
            return got;
        for (int i = 0; i < got; i++)
            if (n < cap)
                ev[n++] = e[i];
    }
}

static int timeout_event_is(const shmreg_event *e, const shmreg_id *id, uint32_t action, int old_state,
                            int new_state)
{
    int good = e->type == SHMREG_EV_TIMEOUT && test_id_eq(&e->session, id) && test_id_eq(&e->room, &zero_id) &&
               e->which == action && e->old_state == old_state && e->new_state == new_state && e->len == 0 &&
               e->config_gen == 0;
    if (!good)
        diag("event: type %u which %u old %d new %d len %u session %s", e->type, e->which, e->old_state,
             e->new_state, e->len, test_id_eq(&e->session, id) ? "same" : "differs");
    return good;
}

static int cmp_id(const void *a, const void *b) { return memcmp(a, b, sizeof(shmreg_id)); }

/* Sort a[0..n); the number of adjacent duplicates. */
static long sort_dups(shmreg_id *a, long n)
{
    qsort(a, (size_t)n, sizeof *a, cmp_id);
    long d = 0;
    for (long i = 1; i < n; i++)
        d += memcmp(&a[i - 1], &a[i], sizeof *a) == 0;
    return d;
}

/* 1 when every element of sorted a[0..n) is in sorted b[0..m). */
static int subset(const shmreg_id *a, long n, const shmreg_id *b, long m)
{
    for (long i = 0; i < n; i++)
        if (!bsearch(&a[i], b, (size_t)m, sizeof *b, cmp_id))
            return 0;
    return 1;
}

static uint64_t count_in(shmreg *h, int state)
{
    uint64_t c[SHMREG_STATE_COUNT];
    memset(c, 0, sizeof c);
    if (shmreg_session_counts(h, c, SHMREG_STATE_COUNT) != 0)
        return ~0ull;
    return c[state];
}

/* ------------------------------------------------------------ arming */

static void test_set_timeout(void)
{
    shmreg *h = timeout_reg("timeout-set", 64, 1024);
    shmreg_id s = test_session_new(h);
    uint64_t T = test_now_ns() + 3600 * SEC;

    ok(armed_as(h, &s, 0, 0), "a new session has no deadline (0) and no action");
    is(arm(h, &s, T, SHMREG_TIMEOUT_FAIL, 0), 0, "arm FAIL at an absolute time");
    ok(armed_as(h, &s, T, SHMREG_TIMEOUT_FAIL), "... the view shows that deadline_ns and timeout_flags FAIL");
    is(arm(h, &s, T + 5, SHMREG_TIMEOUT_NOTIFY, 2 * SEC), 0, "arm again: NOTIFY 5 ns later, with a grace");
    ok(armed_as(h, &s, T + 5, SHMREG_TIMEOUT_NOTIFY), "... it replaced the first: deadline T+5, NOTIFY");
    uint64_t before = test_now_ns();
    is(arm(h, &s, 5 * SEC, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE, 0), 0, "arm FAIL 5 s from now (RELATIVE)");
    uint64_t after = test_now_ns();
    struct tview t = tv(h, &s);
    ok(t.deadline >= before + 5 * SEC && t.deadline <= after + 5 * SEC,
       "... deadline_ns is the clock at the call plus 5 s");
    is(t.flags, SHMREG_TIMEOUT_FAIL, "... timeout_flags FAIL (RELATIVE is not kept)");
    is(arm(h, &s, 0, SHMREG_TIMEOUT_FAIL, 0), 0, "when 0 disarms");
    ok(armed_as(h, &s, 0, 0), "... deadline_ns 0, timeout_flags 0");
    is(arm(h, &s, 0, SHMREG_TIMEOUT_FAIL, 0), 0, "disarming a session without a deadline is fine too");

    shmreg_id unknown;
    memset(&unknown, 0x3c, sizeof unknown);
    is(shmreg_session_set_timeout(h, NULL, T, SHMREG_TIMEOUT_FAIL, 0), SHMREG_EINVAL, "NULL id: SHMREG_EINVAL");
    is(shmreg_session_set_timeout(h, &s, T, 0, 0), SHMREG_EINVAL, "no action: SHMREG_EINVAL");
    is(shmreg_session_set_timeout(h, &s, T, SHMREG_TIMEOUT_RELATIVE, 0), SHMREG_EINVAL,
       "RELATIVE alone (no action): SHMREG_EINVAL");
    is(shmreg_session_set_timeout(h, &s, T, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_NOTIFY, 0), SHMREG_EINVAL,
       "both actions: SHMREG_EINVAL");
    is(shmreg_session_set_timeout(h, &s, T, SHMREG_TIMEOUT_FAIL | 0x100u, 0), SHMREG_EINVAL,
       "an unknown flag bit: SHMREG_EINVAL");
    is(shmreg_session_set_timeout(h, &s, T, SHMREG_TIMEOUT_FAIL | 0x80000000u, 0), SHMREG_EINVAL,
       "the top flag bit: SHMREG_EINVAL");
    ok(armed_as(h, &s, 0, 0), "... none of them armed anything");
    is(shmreg_session_set_timeout(h, &unknown, T, SHMREG_TIMEOUT_FAIL, 0), SHMREG_ENOENT,
       "an unknown session: SHMREG_ENOENT");

    shmreg_id f = test_session_new(h);
    is(arm(h, &f, T, SHMREG_TIMEOUT_FAIL, 0), 0, "arm a session ...");
    is(go(h, &f, SHMREG_STATE_CANCELLED), 0, "... that then reaches a final state (Cancelled)");
    ok(armed_as(h, &f, 0, 0), "... reaching it disarmed the timeout");
    is(shmreg_session_set_timeout(h, &f, T, SHMREG_TIMEOUT_FAIL, 0), SHMREG_ESTATE,
       "arming a session in a final state: SHMREG_ESTATE");
    is(shmreg_session_set_timeout(h, &f, 3 * SEC, SHMREG_TIMEOUT_NOTIFY | SHMREG_TIMEOUT_RELATIVE, 0), SHMREG_ESTATE,
       "... relative and NOTIFY too: SHMREG_ESTATE");
    is(shmreg_session_set_timeout(h, &f, 0, SHMREG_TIMEOUT_FAIL, 0), 0, "disarming it is fine");
    ok(armed_as(h, &f, 0, 0), "... and it has no deadline");
    shmreg_id a = test_session_new(h);
    go(h, &a, SHMREG_STATE_ACTIVE);
    is(arm(h, &a, T, SHMREG_TIMEOUT_NOTIFY, 0), 0, "arm a session in Active");
    ok(armed_as(h, &a, T, SHMREG_TIMEOUT_NOTIFY), "... armed");
    shmreg_session_delete(h, &a);
    is(shmreg_session_set_timeout(h, &a, T, SHMREG_TIMEOUT_FAIL, 0), SHMREG_ENOENT, "arm a deleted session: SHMREG_ENOENT");

    is(shmreg_expire(h, T, NULL, 4), SHMREG_EINVAL, "expire into NULL with max 4: SHMREG_EINVAL");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ sweeping */

static void test_expire(void)
{
    shmreg *h = timeout_reg("timeout-expire", 128, 4096);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_TIMEOUT), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    shmreg_event ev[64];
    shmreg_expired out[16];
    uint64_t T = test_now_ns() + 3600 * SEC;
    shmreg_id a = test_session_new(h), b = test_session_new(h), c = test_session_new(h),
              d = test_session_new(h), act = test_session_new(h);
    go(h, &act, SHMREG_STATE_ACTIVE);
    arm(h, &a, T + 1 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &c, T + 1500 * MS, SHMREG_TIMEOUT_NOTIFY, 0);
    arm(h, &b, T + 2 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &act, T + 2500 * MS, SHMREG_TIMEOUT_FAIL, 0);

    is(shmreg_expire(h, T, out, 16), 0, "nothing due at T: 0");
    is(shmreg_expire(h, T + 1 * SEC - 1, out, 16), 0, "nothing due 1 ns before the first deadline: 0");
    is(shmreg_expire(h, T + 1 * SEC, out, 16), 1, "at the first deadline: 1 fired");
    ok(fired_is(&out[0], &a, T + 1 * SEC, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED),
       "... that session, its deadline, FAIL, Initiating -> Failed");
    is(state_of(h, &a), SHMREG_STATE_FAILED, "... it is Failed now");
    ok(armed_as(h, &a, 0, 0), "... with no deadline left");
    is(shmreg_expire(h, T + 1 * SEC, out, 16), 0, "the same sweep again fires nothing: 0");
    int n = drain(h, sub, ev, 64, NULL);
    is(n, 1, "one timeout event");
    ok(n == 1 && timeout_event_is(&ev[0], &a, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED),
       "... for that session: which FAIL, Initiating -> Failed");

    is(shmreg_expire(h, T + 1500 * MS, out, 16), 1, "at the NOTIFY deadline: 1 fired");
    ok(fired_is(&out[0], &c, T + 1500 * MS, SHMREG_TIMEOUT_NOTIFY, SHMREG_STATE_INITIATING, SHMREG_STATE_INITIATING),
       "... NOTIFY, the state unchanged (Initiating -> Initiating)");
    is(state_of(h, &c), SHMREG_STATE_INITIATING, "... it is still Initiating: the caller ends it");
    ok(armed_as(h, &c, 0, 0), "... without grace it is not re-armed");
    n = drain(h, sub, ev, 64, NULL);
    ok(n == 1 && timeout_event_is(&ev[0], &c, SHMREG_TIMEOUT_NOTIFY, SHMREG_STATE_INITIATING, SHMREG_STATE_INITIATING),
       "one timeout event: which NOTIFY, Initiating -> Initiating");

    is(shmreg_expire(h, T + 2500 * MS, out, 16), 2, "at 2.5 s: the two FAIL deadlines at 2 s and 2.5 s");
    int got_b = 0, got_act = 0;
    for (int i = 0; i < 2; i++) {
        got_b += test_id_eq(&out[i].id, &b) &&
                 fired_is(&out[i], &b, T + 2 * SEC, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED);
        got_act += test_id_eq(&out[i].id, &act) &&
                   fired_is(&out[i], &act, T + 2500 * MS, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_ACTIVE, SHMREG_STATE_FAILED);
    }
    ok(got_b == 1 && got_act == 1, "... each once, the Active one Active -> Failed");
    n = drain(h, sub, ev, 64, NULL);
    is(n, 2, "two timeout events");
    is(shmreg_expire(h, T + 100 * SEC, out, 16), 0, "a later sweep fires nothing");
    is(state_of(h, &d), SHMREG_STATE_INITIATING, "the session never armed is untouched");

    /* NOTIFY with a grace: re-armed as FAIL at the hand-off (now) + grace. */
    shmreg_id e = test_session_new(h);
    arm(h, &e, T + 200 * SEC, SHMREG_TIMEOUT_NOTIFY, 5 * SEC);
    is(shmreg_expire(h, T + 201 * SEC, out, 16), 1, "NOTIFY with a 5 s grace, swept 1 s after its deadline: fired");
    ok(fired_is(&out[0], &e, T + 200 * SEC, SHMREG_TIMEOUT_NOTIFY, SHMREG_STATE_INITIATING, SHMREG_STATE_INITIATING),
       "... as NOTIFY");
    ok(armed_as(h, &e, T + 206 * SEC, SHMREG_TIMEOUT_FAIL), "... and re-armed as FAIL at now + 5 s");
    is(shmreg_expire(h, T + 206 * SEC - 1, out, 16), 0, "1 ns before that: nothing");
    is(shmreg_expire(h, T + 206 * SEC, out, 16), 1, "at it: fired");
    ok(fired_is(&out[0], &e, T + 206 * SEC, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED),
       "... as FAIL, Initiating -> Failed");
    n = drain(h, sub, ev, 64, NULL);
    ok(n == 2 && timeout_event_is(&ev[0], &e, SHMREG_TIMEOUT_NOTIFY, 1, 1) &&
           timeout_event_is(&ev[1], &e, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED),
       "two timeout events: the NOTIFY, then the FAIL");

    /* A NOTIFY handler that ends the call in time: the grace never fires. */
    shmreg_id g = test_session_new(h);
    go(h, &g, SHMREG_STATE_ACTIVE);
    arm(h, &g, T + 300 * SEC, SHMREG_TIMEOUT_NOTIFY, 5 * SEC);
    is(shmreg_expire(h, T + 300 * SEC, out, 16), 1, "a NOTIFY with grace on an Active session fires");
    is(go(h, &g, SHMREG_STATE_TERMINATING), 0, "the handler moves it to Terminating (the grace still armed)");
    ok(armed_as(h, &g, T + 305 * SEC, SHMREG_TIMEOUT_FAIL), "... Terminating has no policy: the grace deadline stays");
    is(go(h, &g, SHMREG_STATE_TERMINATED), 0, "... and then to Terminated");
    ok(armed_as(h, &g, 0, 0), "... which disarmed it");
    is(shmreg_expire(h, T + 400 * SEC, out, 16), 0, "the grace never fires");
    is(state_of(h, &g), SHMREG_STATE_TERMINATED, "it stays Terminated");
    drain(h, sub, ev, 64, NULL);

    /* max */
    shmreg_id ten[10];
    for (int i = 0; i < 10; i++) {
        ten[i] = test_session_new(h);
        arm(h, &ten[i], T + 500 * SEC + (uint64_t)i * MS, SHMREG_TIMEOUT_FAIL, 0);
    }
    is(shmreg_expire(h, T + 600 * SEC, NULL, 0), 0, "max 0 (out NULL): 0, nothing fired");
    is(shmreg_expire(h, T + 600 * SEC, out, 0), 0, "max 0: 0");
    shmreg_id got[16];
    int ngot = 0, n1 = shmreg_expire(h, T + 600 * SEC, out, 4);
    for (int i = 0; i < n1 && ngot < 16; i++)
        got[ngot++] = out[i].id;
    int n2 = shmreg_expire(h, T + 600 * SEC, out, 4);
    for (int i = 0; i < n2 && ngot < 16; i++)
        got[ngot++] = out[i].id;
    int n3 = shmreg_expire(h, T + 600 * SEC, out, 4);
    for (int i = 0; i < n3 && ngot < 16; i++)
        got[ngot++] = out[i].id;
    int n4 = shmreg_expire(h, T + 600 * SEC, out, 4);
    ok(n1 == 4 && n2 == 4 && n3 == 2 && n4 == 0, "10 due, max 4: sweeps return 4, 4, 2, 0 (%d %d %d %d)", n1, n2, n3, n4);
    qsort(ten, 10, sizeof ten[0], cmp_id);
    ok(ngot == 10 && sort_dups(got, ngot) == 0 && subset(got, ngot, ten, 10), "... the 10 sessions, each once");
    n = drain(h, sub, ev, 64, NULL);
    is(n, 10, "10 timeout events");

    /* Deleted, re-armed, disarmed, final: never fired at the old deadline. */
    shmreg_id del = test_session_new(h), mv = test_session_new(h), early = test_session_new(h),
              off = test_session_new(h), fin = test_session_new(h);
    arm(h, &del, T + 700 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &mv, T + 700 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &early, T + 900 * SEC, SHMREG_TIMEOUT_NOTIFY, 0);
    arm(h, &off, T + 700 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &fin, T + 700 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    shmreg_session_delete(h, &del);
    arm(h, &mv, T + 800 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &early, T + 750 * SEC, SHMREG_TIMEOUT_NOTIFY, 0);
    arm(h, &off, 0, SHMREG_TIMEOUT_FAIL, 0);
    go(h, &fin, SHMREG_STATE_CANCELLED);
    is(shmreg_expire(h, T + 700 * SEC, out, 16), 0,
       "at 700 s nothing fires: one was deleted, one moved to 800 s, one to 750 s, one disarmed, one cancelled");
    is(shmreg_expire(h, T + 750 * SEC, out, 16), 1, "at 750 s: the one moved earlier");
    ok(fired_is(&out[0], &early, T + 750 * SEC, SHMREG_TIMEOUT_NOTIFY, 1, 1), "... with its new deadline");
    is(shmreg_expire(h, T + 800 * SEC, out, 16), 1, "at 800 s: the one moved later");
    ok(fired_is(&out[0], &mv, T + 800 * SEC, SHMREG_TIMEOUT_FAIL, 1, SHMREG_STATE_FAILED), "... with its new deadline");
    is(shmreg_expire(h, T + 2000 * SEC, out, 16), 0, "nothing else ever fires");
    is(state_of(h, &fin), SHMREG_STATE_CANCELLED, "the cancelled one stays Cancelled");
    is(state_of(h, &off), SHMREG_STATE_INITIATING, "the disarmed one stays Initiating");
    n = drain(h, sub, ev, 64, NULL);
    ok(n == 2 && timeout_event_is(&ev[0], &early, SHMREG_TIMEOUT_NOTIFY, 1, 1) &&
           timeout_event_is(&ev[1], &mv, SHMREG_TIMEOUT_FAIL, 1, SHMREG_STATE_FAILED),
       "exactly 2 timeout events: none for the deleted, disarmed or cancelled");

    /* A deadline already past (behind the sweeps) fires at the next sweep. */
    shmreg_id past = test_session_new(h), ancient = test_session_new(h);
    arm(h, &past, T + 1900 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &ancient, T - 3000 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    n = shmreg_expire(h, T + 2000 * SEC, out, 16);
    is(n, 2, "deadlines behind the last sweep (100 s and an hour behind it) fire at the next sweep");
    ok(n == 2 && (test_id_eq(&out[0].id, &past) || test_id_eq(&out[1].id, &past)) &&
           (test_id_eq(&out[0].id, &ancient) || test_id_eq(&out[1].id, &ancient)),
       "... both of them");
    drain(h, sub, ev, 64, NULL);
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);

    /* now_ns 0: the clock. */
    h = timeout_reg("timeout-clock", 64, 1024);
    uint64_t now = test_now_ns();
    shmreg_id due = test_session_new(h), later = test_session_new(h);
    arm(h, &due, now - 2 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    arm(h, &later, now + 3600 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    n = shmreg_expire(h, 0, out, 16);
    is(n, 1, "now 0 sweeps at the clock: the deadline 2 s ago fires, the one in an hour does not");
    ok(n == 1 && test_id_eq(&out[0].id, &due), "... the right one");
    is(state_of(h, &later), SHMREG_STATE_INITIATING, "the other is untouched");

    /* A cursor no sweeper's clock set: scribbled to the top of the range
     * (the sweep once counted up to it, wrapping, for ever: this test's
     * watchdog turns that into a failure), or a lap and more ahead of now. The
     * sweep puts it back a lap before now and fires what is due. */
    static const uint64_t scribbled[] = {UINT64_MAX, 1ull << 40};
    for (unsigned i = 0; i < 2; i++) {
        shmreg_id d = test_session_new(h);
        now = test_now_ns();
        arm(h, &d, now - 2 * SEC, SHMREG_TIMEOUT_FAIL, 0);
        atomic_store(&h->shared->swept_tick, scribbled[i]);
        n = shmreg_expire(h, 0, out, 16);
        is(n, 1, "a cursor scribbled to %#llx: the sweep returns and fires the deadline due",
           (unsigned long long)scribbled[i]);
        ok(n == 1 && test_id_eq(&out[0].id, &d), "... the right one");
        uint64_t c = atomic_load(&h->shared->swept_tick), lap = (now >> 26) - 65535;
        ok(c >= lap && c <= (test_now_ns() >> 26), "the cursor is back within a lap before now (%llu)",
           (unsigned long long)c);
    }
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ per-state policies */

struct pol_shared {
    shmreg_id id;
    uint64_t after, grace;
    unsigned flags;
    int rc;
};
static struct pol_shared *ps;

static void policy_child(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    ps->rc = shmreg_timeout_policy_get(h, SHMREG_STATE_ACTIVE, &ps->after, &ps->flags, &ps->grace);
    ps->id = test_session_new(h);
    if (shmreg_timeout_policy_set(h, SHMREG_STATE_ONHOLD, 99 * SEC, SHMREG_TIMEOUT_NOTIFY, 3 * SEC) != 0)
        ps->rc = -100;
    shmreg_close(h);
}

static void test_policies(void)
{
    shmreg *h = timeout_reg("timeout-policy", 64, 1024);
    uint64_t after = 1, grace = 1;
    unsigned flags = 1;
    shmreg_id s0 = test_session_new(h);
    for (int st = SHMREG_STATE_INITIATING; st <= SHMREG_STATE_TRANSFERRING + 1; st++) {
        after = 1;
        int rc = shmreg_timeout_policy_get(h, st, &after, NULL, NULL);
        if (rc != 0 || after != 0)
            diag("state %d: rc %d after %llu", st, rc, (unsigned long long)after);
    }
    is(shmreg_timeout_policy_get(h, SHMREG_STATE_INITIATING, &after, &flags, &grace), 0, "get the Initiating policy");
    is(after, 0, "... none yet: after_ns 0");

    is(shmreg_timeout_policy_set(h, SHMREG_STATE_INITIATING, 30 * SEC, SHMREG_TIMEOUT_FAIL, 0), 0,
       "set Initiating: 30 s, FAIL");
    ok(shmreg_timeout_policy_get(h, SHMREG_STATE_INITIATING, &after, &flags, &grace) == 0 && after == 30 * SEC &&
           flags == SHMREG_TIMEOUT_FAIL && grace == 0,
       "... read back: 30 s, FAIL, grace 0");
    ok(armed_as(h, &s0, 0, 0), "a session created before it keeps no deadline");
    shmreg_id s1 = test_session_new(h);
    struct tview t = tv(h, &s1);
    ok(t.rc == 0 && t.deadline == t.created + 30 * SEC && t.flags == SHMREG_TIMEOUT_FAIL,
       "a session created now gets deadline created_ns + 30 s, FAIL");

    is(shmreg_timeout_policy_set(h, SHMREG_STATE_RINGING, 60 * SEC, SHMREG_TIMEOUT_NOTIFY, 2 * SEC), 0,
       "set Ringing: 60 s, NOTIFY, grace 2 s");
    ok(shmreg_timeout_policy_get(h, SHMREG_STATE_RINGING, &after, &flags, &grace) == 0 && after == 60 * SEC &&
           flags == SHMREG_TIMEOUT_NOTIFY && grace == 2 * SEC,
       "... read back exactly");
    uint64_t before = test_now_ns();
    go(h, &s1, SHMREG_STATE_RINGING);
    uint64_t aft = test_now_ns();
    t = tv(h, &s1);
    ok(t.deadline >= before + 60 * SEC && t.deadline <= aft + 60 * SEC && t.flags == SHMREG_TIMEOUT_NOTIFY,
       "entering Ringing replaced it: the transition's time + 60 s, NOTIFY");
    uint64_t ringing_deadline = t.deadline;
    go(h, &s1, SHMREG_STATE_ACTIVE);
    ok(armed_as(h, &s1, ringing_deadline, SHMREG_TIMEOUT_NOTIFY), "entering Active (no policy) keeps it");
    go(h, &s1, SHMREG_STATE_ONHOLD);
    ok(armed_as(h, &s1, ringing_deadline, SHMREG_TIMEOUT_NOTIFY), "so does OnHold (no policy)");
    go(h, &s1, SHMREG_STATE_FAILED);
    ok(armed_as(h, &s1, 0, 0), "reaching Failed by a transition disarms it");

    is(shmreg_timeout_policy_set(h, SHMREG_STATE_ACTIVE, 7200 * SEC, SHMREG_TIMEOUT_FAIL, 0), 0,
       "set Active: 2 h, FAIL");
    shmreg_id s2 = test_session_new(h);
    before = test_now_ns();
    go(h, &s2, SHMREG_STATE_ACTIVE);
    aft = test_now_ns();
    t = tv(h, &s2);
    ok(t.deadline >= before + 7200 * SEC && t.deadline <= aft + 7200 * SEC && t.flags == SHMREG_TIMEOUT_FAIL,
       "Initiating -> Active: the Active policy replaced the Initiating one");
    uint64_t active_deadline = t.deadline;
    go(h, &s2, SHMREG_STATE_TERMINATING);
    ok(armed_as(h, &s2, active_deadline, SHMREG_TIMEOUT_FAIL), "Terminating (no policy) keeps it");
    go(h, &s2, SHMREG_STATE_TERMINATED);
    ok(armed_as(h, &s2, 0, 0), "Terminated disarms it");
    shmreg_id s3 = test_session_new(h);
    go(h, &s3, SHMREG_STATE_RINGING);
    go(h, &s3, SHMREG_STATE_CANCELLED);
    ok(armed_as(h, &s3, 0, 0), "Ringing -> Cancelled disarms it");

    /* An explicit timeout, then transitions. */
    uint64_t T = test_now_ns() + 9000 * SEC;
    shmreg_id s5 = test_session_new(h);
    arm(h, &s5, T, SHMREG_TIMEOUT_NOTIFY, 0);
    before = test_now_ns();
    go(h, &s5, SHMREG_STATE_ACTIVE);
    aft = test_now_ns();
    t = tv(h, &s5);
    ok(t.deadline >= before + 7200 * SEC && t.deadline <= aft + 7200 * SEC && t.flags == SHMREG_TIMEOUT_FAIL,
       "an explicit timeout is replaced on entering a state with a policy");
    arm(h, &s5, T, SHMREG_TIMEOUT_NOTIFY, 0);
    go(h, &s5, SHMREG_STATE_TRANSFERRING);
    ok(armed_as(h, &s5, T, SHMREG_TIMEOUT_NOTIFY), "and kept on entering one without");

    /* Removing a policy. */
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_RINGING, 0, SHMREG_TIMEOUT_FAIL, 0), 0, "after_ns 0 removes the Ringing policy");
    after = 1;
    ok(shmreg_timeout_policy_get(h, SHMREG_STATE_RINGING, &after, NULL, NULL) == 0 && after == 0, "... read back: after_ns 0");
    shmreg_id s4 = test_session_new(h);
    t = tv(h, &s4);
    go(h, &s4, SHMREG_STATE_RINGING);
    ok(armed_as(h, &s4, t.created + 30 * SEC, SHMREG_TIMEOUT_FAIL),
       "a session entering Ringing now keeps its Initiating deadline");

    /* Errors. */
    int bad = 0;
    static const int finals[] = { SHMREG_STATE_TERMINATED, SHMREG_STATE_CANCELLED, SHMREG_STATE_FAILED };
    for (int i = 0; i < 3; i++)
        bad |= shmreg_timeout_policy_set(h, finals[i], 10 * SEC, SHMREG_TIMEOUT_FAIL, 0) != SHMREG_EINVAL;
    ok(!bad, "a policy for Terminated, Cancelled or Failed: SHMREG_EINVAL");
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_ANY, 10 * SEC, SHMREG_TIMEOUT_FAIL, 0), SHMREG_EINVAL,
       "for state 0 (Any): SHMREG_EINVAL");
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_COUNT, 10 * SEC, SHMREG_TIMEOUT_FAIL, 0), SHMREG_EINVAL,
       "for state %d: SHMREG_EINVAL", SHMREG_STATE_COUNT);
    is(shmreg_timeout_policy_set(h, -1, 10 * SEC, SHMREG_TIMEOUT_FAIL, 0), SHMREG_EINVAL, "for state -1: SHMREG_EINVAL");
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_ACTIVE, 10 * SEC, 0, 0), SHMREG_EINVAL, "no action: SHMREG_EINVAL");
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_ACTIVE, 10 * SEC, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_NOTIFY, 0),
       SHMREG_EINVAL, "both actions: SHMREG_EINVAL");
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_ACTIVE, 10 * SEC, SHMREG_TIMEOUT_FAIL | 0x100u, 0), SHMREG_EINVAL,
       "an unknown flag bit: SHMREG_EINVAL");
    ok(shmreg_timeout_policy_get(h, SHMREG_STATE_ACTIVE, &after, &flags, &grace) == 0 && after == 7200 * SEC &&
           flags == SHMREG_TIMEOUT_FAIL,
       "... the Active policy is still 2 h, FAIL");
    is(shmreg_timeout_policy_get(h, SHMREG_STATE_ANY, &after, NULL, NULL), SHMREG_EINVAL, "get for state 0: SHMREG_EINVAL");
    is(shmreg_timeout_policy_get(h, SHMREG_STATE_COUNT, &after, NULL, NULL), SHMREG_EINVAL,
       "get for state %d: SHMREG_EINVAL", SHMREG_STATE_COUNT);
    is(shmreg_timeout_policy_get(h, SHMREG_STATE_ACTIVE, NULL, NULL, NULL), 0, "get with every pointer NULL: 0");

    /* Registry-wide. */
    ps = test_shared(sizeof *ps);
    is(test_wait(test_fork(policy_child, NULL)), 0, "another process opens the registry");
    ok(ps->rc == 0 && ps->after == 7200 * SEC && ps->flags == SHMREG_TIMEOUT_FAIL && ps->grace == 0,
       "... reads the Active policy set here: 2 h, FAIL");
    t = tv(h, &ps->id);
    ok(t.rc == 0 && t.deadline == t.created + 30 * SEC && t.flags == SHMREG_TIMEOUT_FAIL,
       "... its session got the Initiating policy's deadline");
    ok(shmreg_timeout_policy_get(h, SHMREG_STATE_ONHOLD, &after, &flags, &grace) == 0 && after == 99 * SEC &&
           flags == SHMREG_TIMEOUT_NOTIFY && grace == 3 * SEC,
       "... and the OnHold policy it set is read here");
    munmap(ps, sizeof *ps);

    /* A policy deadline fires, NOTIFY then its grace as FAIL. */
    is(shmreg_timeout_policy_set(h, SHMREG_STATE_RINGING, 1 * SEC, SHMREG_TIMEOUT_NOTIFY, 1 * SEC), 0,
       "set Ringing: 1 s, NOTIFY, grace 1 s");
    shmreg_id s7 = test_session_new(h);
    go(h, &s7, SHMREG_STATE_RINGING);
    t = tv(h, &s7);
    uint64_t D = t.deadline;
    shmreg_expired out[8];
    is(shmreg_expire(h, D - 1, out, 8), 0, "swept 1 ns before its deadline: nothing");
    int n = shmreg_expire(h, D, out, 8);
    ok(n == 1 && fired_is(&out[0], &s7, D, SHMREG_TIMEOUT_NOTIFY, SHMREG_STATE_RINGING, SHMREG_STATE_RINGING),
       "at it: fired as NOTIFY, Ringing -> Ringing");
    ok(armed_as(h, &s7, D + 1 * SEC, SHMREG_TIMEOUT_FAIL), "... re-armed as FAIL 1 s later");
    n = shmreg_expire(h, D + 1 * SEC, out, 8);
    ok(n == 1 && fired_is(&out[0], &s7, D + 1 * SEC, SHMREG_TIMEOUT_FAIL, SHMREG_STATE_RINGING, SHMREG_STATE_FAILED),
       "then as FAIL, Ringing -> Failed");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ crash points */

struct cp_shared {
    shmreg_id id;
    uint64_t when, now;
    unsigned flags;
    const char *point;
    int arm;              /* 1: set_timeout(id, when, flags); 0: expire(now) */
};
static struct cp_shared *cps;

static void cp_child(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    shmreg_expired out[4];
    shm_crash_arm(cps->point);
    if (cps->arm)
        shmreg_session_set_timeout(h, &cps->id, cps->when, cps->flags, 0);
    else
        shmreg_expire(h, cps->now, out, 4);
    _exit(0); /* the point was not reached */
}

static int cp_run(const char *point, int arm)
{
    cps->point = point;
    cps->arm = arm;
    return test_wait(test_fork(cp_child, NULL));
}

static void test_timer_crash_points(void)
{
    shmreg *h = timeout_reg("timeout-cp", 64, 1024);
    cps = test_shared(sizeof *cps);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_TIMEOUT), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    shmreg_event ev[8];
    shmreg_expired out[8];
    uint64_t T = test_now_ns() + 3600 * SEC;

    /* FAIL acted (Failed), never marked fired. */
    cps->id = test_session_new(h);
    arm(h, &cps->id, T + 1 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    cps->now = T + 1 * SEC;
    is(cp_run("timer_fire_acted", 0), SHM_CRASH_EXIT, "a sweeper stops at timer_fire_acted after a FAIL");
    is(state_of(h, &cps->id), SHMREG_STATE_FAILED, "the session is Failed");
    is(shmreg_expire(h, T + 1 * SEC, out, 8), 0, "the next sweep takes the claim over and fires nothing");
    ok(armed_as(h, &cps->id, 0, 0), "the session has no deadline left");
    is(shmreg_expire(h, T + 100 * SEC, out, 8), 0, "nor does any later sweep");
    is(drain(h, sub, ev, 8, NULL), 0, "no timeout event (the stopped sweeper's was lost with it)");

    /* NOTIFY without grace acted, never marked fired: handed out once, now. */
    shmreg_id n1 = test_session_new(h);
    cps->id = n1;
    arm(h, &n1, T + 200 * SEC, SHMREG_TIMEOUT_NOTIFY, 0);
    cps->now = T + 200 * SEC;
    is(cp_run("timer_fire_acted", 0), SHM_CRASH_EXIT, "a sweeper stops at timer_fire_acted after a NOTIFY");
    int n = shmreg_expire(h, T + 200 * SEC, out, 8);
    ok(n == 1 && fired_is(&out[0], &n1, T + 200 * SEC, SHMREG_TIMEOUT_NOTIFY, 1, 1),
       "the next sweep hands it out: once, as NOTIFY");
    is(shmreg_expire(h, T + 300 * SEC, out, 8), 0, "and never again");
    n = drain(h, sub, ev, 8, NULL);
    ok(n == 1 && timeout_event_is(&ev[0], &n1, SHMREG_TIMEOUT_NOTIFY, 1, 1), "one timeout event for it");

    /* NOTIFY with grace acted (re-armed), never marked fired. */
    shmreg_id g = test_session_new(h);
    cps->id = g;
    arm(h, &g, T + 400 * SEC, SHMREG_TIMEOUT_NOTIFY, 5 * SEC);
    cps->now = T + 400 * SEC;
    is(cp_run("timer_fire_acted", 0), SHM_CRASH_EXIT, "a sweeper stops at timer_fire_acted after a NOTIFY with grace");
    int notify = 0, fail = 0, other = 0;
    for (uint64_t at = 400; at <= 410; at++) {
        n = shmreg_expire(h, T + at * SEC, out, 8);
        for (int i = 0; i < n; i++) {
            if (!test_id_eq(&out[i].id, &g))
                other++;
            else if (out[i].action == SHMREG_TIMEOUT_NOTIFY)
                notify++;
            else if (out[i].action == SHMREG_TIMEOUT_FAIL && out[i].new_state == SHMREG_STATE_FAILED &&
                     out[i].deadline_ns == T + 405 * SEC)
                fail++;
            else
                other++;
        }
    }
    ok(notify <= 1 && fail == 1 && other == 0,
       "sweeps up to the grace's end: at most one NOTIFY (%d), then exactly one FAIL at the grace deadline (%d)",
       notify, fail);
    is(state_of(h, &g), SHMREG_STATE_FAILED, "the session ended Failed");
    drain(h, sub, ev, 8, NULL);

    /* An arm stopped with the new timer in the wheel, not yet the session's. */
    shmreg_id a = test_session_new(h);
    cps->id = a;
    cps->when = T + 500 * SEC;
    cps->flags = SHMREG_TIMEOUT_FAIL;
    is(cp_run("timer_arm_bucketed", 1), SHM_CRASH_EXIT, "an arm stops at timer_arm_bucketed (no timeout before)");
    ok(armed_as(h, &a, 0, 0), "the session has no deadline");
    is(shmreg_expire(h, T + 600 * SEC, out, 8), 0, "a sweep past the orphan timer's deadline fires nothing");
    is(state_of(h, &a), SHMREG_STATE_INITIATING, "the session is untouched");
    shmreg_id b = test_session_new(h);
    arm(h, &b, T + 800 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    cps->id = b;
    cps->when = T + 700 * SEC;
    is(cp_run("timer_arm_bucketed", 1), SHM_CRASH_EXIT, "an arm replacing a deadline stops at timer_arm_bucketed");
    ok(armed_as(h, &b, T + 800 * SEC, SHMREG_TIMEOUT_FAIL), "the old deadline is still in force");
    is(shmreg_expire(h, T + 750 * SEC, out, 8), 0, "nothing fires at the new one");
    n = shmreg_expire(h, T + 800 * SEC, out, 8);
    ok(n == 1 && fired_is(&out[0], &b, T + 800 * SEC, SHMREG_TIMEOUT_FAIL, 1, SHMREG_STATE_FAILED),
       "the old one fires, once");
    is(arm(h, &a, T + 900 * SEC, SHMREG_TIMEOUT_FAIL, 0), 0, "the first session can be armed again");
    n = shmreg_expire(h, T + 900 * SEC, out, 8);
    ok(n == 1 && test_id_eq(&out[0].id, &a), "and fires at its deadline");

    shmreg_check_report r1, r2;
    int c1 = shmreg_check(h, SHMREG_CHECK_REPAIR, &r1, NULL, NULL, NULL);
    ok(c1 == 0 || c1 == SHMREG_ECORRUPT, "a repairing check runs (%llu problems, %llu reclaimed)",
       (unsigned long long)r1.problems, (unsigned long long)r1.reclaimed_blocks);
    is(shmreg_check(h, 0, &r2, NULL, NULL, NULL), 0, "a second check returns 0");
    ok(r2.problems == 0 && r2.leaked_blocks == 0 && r2.stale_handles == 0, "... no problem, no leak, no stale handle");
    shmreg_unsubscribe(sub);
    munmap(cps, sizeof *cps);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 4 sweepers */

#define R_SWEEPERS 4
#define R_DUE 10000
#define R_LATER 100

struct race_shared {
    atomic_int ready, go;
    atomic_long next;
    atomic_long fired[R_SWEEPERS], bad, errors;
    uint64_t now;
    shmreg_id ids[R_DUE + 1024];
};

static struct race_shared *rs;

static void sweeper(void *arg)
{
    int k = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    shmreg_expired out[64];
    atomic_fetch_add(&rs->ready, 1);
    while (!atomic_load(&rs->go))
        sched_yield();
    for (;;) {
        int n = shmreg_expire(h, rs->now, out, 64);
        if (n < 0) {
            if (atomic_fetch_add(&rs->errors, 1) == 0)
                diag("expire: %s (%s)", shmreg_strerror(n), shmreg_errmsg());
            break;
        }
        for (int i = 0; i < n; i++) {
            long at = atomic_fetch_add(&rs->next, 1);
            if (at < R_DUE + 1024)
                rs->ids[at] = out[i].id;
            if (out[i].action != SHMREG_TIMEOUT_FAIL || out[i].new_state != SHMREG_STATE_FAILED ||
                out[i].old_state != SHMREG_STATE_INITIATING || out[i].deadline_ns > rs->now)
                atomic_fetch_add(&rs->bad, 1);
        }
        atomic_fetch_add(&rs->fired[k], n);
        if (n < 64)
            break;
    }
    shmreg_close(h);
}

static void test_sweep_race(void)
{
    shmreg *h = timeout_reg("timeout-race", 16384, 65536);
    rs = test_shared(sizeof *rs);
    static shmreg_id due[R_DUE];
    uint64_t T = test_now_ns() + 3600 * SEC;
    int rc = 0;
    for (int i = 0; i < R_DUE; i++) {
        due[i] = test_session_new(h);
        rc |= arm(h, &due[i], T + (uint64_t)i * MS, SHMREG_TIMEOUT_FAIL, 0);
    }
    for (int i = 0; i < R_LATER; i++) {
        shmreg_id l = test_session_new(h);
        rc |= arm(h, &l, T + 100 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    }
    is(rc, 0, "%d sessions armed over 10 s, %d more 100 s later", R_DUE, R_LATER);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_TIMEOUT), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    rs->now = T + 20 * SEC;
    pid_t pid[R_SWEEPERS];
    for (int k = 0; k < R_SWEEPERS; k++)
        pid[k] = test_fork(sweeper, (void *)(intptr_t)k);
    double give_up = test_mono_s() + 20;
    while (atomic_load(&rs->ready) < R_SWEEPERS && test_mono_s() < give_up)
        sched_yield();
    atomic_store(&rs->go, 1);
    int st = 0;
    for (int k = 0; k < R_SWEEPERS; k++)
        st |= test_wait(pid[k]);
    is(st, 0, "%d processes swept at once", R_SWEEPERS);
    is(atomic_load(&rs->errors), 0, "... no sweep failed");
    long total = atomic_load(&rs->next);
    is(total, R_DUE, "between them they fired exactly %d", R_DUE);
    note("fired per sweeper: %ld %ld %ld %ld", atomic_load(&rs->fired[0]), atomic_load(&rs->fired[1]),
         atomic_load(&rs->fired[2]), atomic_load(&rs->fired[3]));
    is(atomic_load(&rs->bad), 0, "each as FAIL, Initiating -> Failed, at a deadline not after now");
    qsort(due, R_DUE, sizeof due[0], cmp_id);
    long n = total < R_DUE + 1024 ? total : R_DUE + 1024;
    ok(sort_dups(rs->ids, n) == 0 && n == R_DUE && subset(rs->ids, n, due, R_DUE),
       "each due session exactly once");
    is(count_in(h, SHMREG_STATE_FAILED), R_DUE, "%d sessions are Failed", R_DUE);
    is(count_in(h, SHMREG_STATE_INITIATING), R_LATER, "the %d not due are still Initiating", R_LATER);
    shmreg_expired out[8];
    is(shmreg_expire(h, rs->now, out, 8), 0, "another sweep at the same time fires nothing");

    static shmreg_event ev[R_DUE + 100];
    static shmreg_id evid[R_DUE + 100];
    uint64_t missed = 0;
    int m = drain(h, sub, ev, R_DUE + 100, &missed);
    is(m, R_DUE, "exactly %d timeout events", R_DUE);
    is(missed, 0, "... none missed");
    int fields = 1;
    for (int i = 0; i < m && i < R_DUE + 100; i++) {
        evid[i] = ev[i].session;
        fields &= ev[i].type == SHMREG_EV_TIMEOUT && ev[i].which == SHMREG_TIMEOUT_FAIL &&
                  ev[i].old_state == SHMREG_STATE_INITIATING && ev[i].new_state == SHMREG_STATE_FAILED;
    }
    ok(fields, "... each which FAIL, Initiating -> Failed");
    ok(m == R_DUE && sort_dups(evid, m) == 0 && subset(evid, m, due, R_DUE), "... one for each due session");
    shmreg_unsubscribe(sub);
    munmap(rs, sizeof *rs);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ sweepers killed */

#define K_KILLS 60
#define K_STAGE 600
#define K_LATER 50
#define K_LOG (K_KILLS * K_STAGE + 1024)

struct kill_shared {
    uint64_t now;
    atomic_int ready;
    atomic_long calls, next;
    shmreg_id ids[K_LOG];
    atomic_char written[K_LOG];  /* ids[i] is whole (a sweeper killed between
                                  * taking slot i and filling it leaves 0) */
};

static struct kill_shared *kshm;

/* Sweep in batches of 1..5, forever (after the due ones: sweeps of 0). */
static void kill_sweeper(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    unsigned seed = (unsigned)getpid() * 2654435761u;
    shmreg_expired out[5];
    atomic_store(&kshm->ready, 1);
    for (;;) {
        int n = shmreg_expire(h, kshm->now, out, 1 + rand_r(&seed) % 5);
        for (int i = 0; i < n; i++) {
            long at = atomic_fetch_add(&kshm->next, 1);
            if (at < K_LOG) {
                kshm->ids[at] = out[i].id;
                atomic_store(&kshm->written[at], 1);
            }
        }
        atomic_fetch_add(&kshm->calls, 1);
    }
}

static unsigned seed_g;

static void test_sweeper_kills(void)
{
    shmreg *h = timeout_reg("timeout-kill", 65536, 131072);
    kshm = test_shared(sizeof *kshm);
    static shmreg_id due[K_KILLS * K_STAGE];
    const int ndue = K_KILLS * K_STAGE;
    uint64_t T = test_now_ns() + 3600 * SEC;
    int rc = 0;
    for (int k = 0; k < K_KILLS; k++)
        for (int j = 0; j < K_STAGE; j++) {
            shmreg_id *s = &due[k * K_STAGE + j];
            *s = test_session_new(h);
            rc |= arm(h, s, T + (uint64_t)k * SEC + (uint64_t)(j + 1) * (SEC / (K_STAGE + 1)),
                      SHMREG_TIMEOUT_FAIL, 0);
        }
    shmreg_id later[K_LATER];
    for (int i = 0; i < K_LATER; i++) {
        later[i] = test_session_new(h);
        rc |= arm(h, &later[i], T + 10000 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    }
    is(rc, 0, "%d sessions armed, %d due in each of %d seconds, %d more much later", ndue + K_LATER, K_STAGE,
       K_KILLS, K_LATER);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_TIMEOUT), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());

    long calls = 0;
    for (int k = 0; k < K_KILLS; k++) {
        kshm->now = T + (uint64_t)(k + 1) * SEC - 1;
        atomic_store(&kshm->ready, 0);
        atomic_store(&kshm->calls, 0);
        pid_t pid = test_fork(kill_sweeper, NULL);
        double give_up = test_mono_s() + 10;
        while (!atomic_load(&kshm->ready) && test_mono_s() < give_up)
            sched_yield();
        test_sleep_us(rand_r(&seed_g) % 800);
        kill(pid, SIGKILL);
        if (test_wait(pid) != 128 + SIGKILL)
            bail_out("sweeper %d did not die of SIGKILL", k);
        calls += atomic_load(&kshm->calls);
    }
    long by_victims = atomic_load(&kshm->next);
    ok(1, "%d sweepers were killed mid-sweep (they made %ld sweep calls and reported %ld fired)", K_KILLS, calls,
       by_victims);

    /* The final sweep, after the last stage. */
    uint64_t final_now = T + (uint64_t)(K_KILLS + 1) * SEC;
    shmreg_expired out[256];
    long by_final = 0;
    int n, ok_fields = 1;
    while ((n = shmreg_expire(h, final_now, out, 256)) > 0) {
        for (int i = 0; i < n; i++) {
            long at = atomic_fetch_add(&kshm->next, 1);
            if (at < K_LOG) {
                kshm->ids[at] = out[i].id;
                atomic_store(&kshm->written[at], 1);
            }
            ok_fields &= out[i].action == SHMREG_TIMEOUT_FAIL && out[i].new_state == SHMREG_STATE_FAILED &&
                         out[i].old_state == SHMREG_STATE_INITIATING;
        }
        by_final += n;
        if (n < 256)
            break;
    }
    ok(n >= 0, "a final sweep runs (%ld fired by it)", by_final);
    ok(ok_fields, "... each FAIL, Initiating -> Failed");
    is(shmreg_expire(h, final_now, out, 256), 0, "a second final sweep fires nothing");
    is(count_in(h, SHMREG_STATE_FAILED), ndue, "every due session is Failed: %d", ndue);
    is(count_in(h, SHMREG_STATE_INITIATING), K_LATER, "the %d not due are still Initiating", K_LATER);
    int stale = 0, lost = 0;
    shmreg_read_begin(h);
    for (int i = 0; i < ndue; i++) {
        shmreg_session v;
        if (shmreg_session_get(h, &due[i], &v) != 0)
            lost++;
        else if (v.state != SHMREG_STATE_FAILED || v.deadline_ns != 0)
            stale++;
    }
    shmreg_read_end(h);
    ok(stale == 0 && lost == 0, "no due session is left non-final or armed (%d), none vanished (%d)", stale, lost);

    qsort(due, (size_t)ndue, sizeof due[0], cmp_id);
    long taken = atomic_load(&kshm->next), logged = 0;
    if (taken > K_LOG)
        taken = K_LOG;
    for (long i = 0; i < taken; i++)
        if (atomic_load(&kshm->written[i]))
            kshm->ids[logged++] = kshm->ids[i];
    ok(sort_dups(kshm->ids, logged) == 0, "no session was reported fired by two sweeps (%ld reported)", logged);
    ok(subset(kshm->ids, logged, due, ndue), "... and every one reported was due");

    static shmreg_event ev[K_KILLS * K_STAGE + 100];
    static shmreg_id evid[K_KILLS * K_STAGE + 100];
    uint64_t missed = 0;
    int m = drain(h, sub, ev, K_KILLS * K_STAGE + 100, &missed);
    for (int i = 0; i < m; i++)
        evid[i] = ev[i].session;
    note("%d timeout events, %llu missed (records of killed publishers)", m, (unsigned long long)missed);
    ok(m <= ndue && m >= by_final, "at most one event per due session, and at least the final sweep's %ld", by_final);
    ok(sort_dups(evid, m) == 0, "no session has two timeout events: nothing fired twice");
    ok(subset(evid, m, due, ndue), "... every event names a due session");
    ok(subset(kshm->ids, logged, evid, m), "every fire a sweep reported has its event");

    n = shmreg_expire(h, T + 20000 * SEC, out, 256);
    is(n, K_LATER, "a sweep past the last deadline fires the %d left, once", K_LATER);
    is(count_in(h, SHMREG_STATE_FAILED), ndue + K_LATER, "all %d are Failed", ndue + K_LATER);
    shmreg_check_report r1, r2;
    int c1 = shmreg_check(h, SHMREG_CHECK_REPAIR, &r1, NULL, NULL, NULL);
    ok(c1 == 0 || c1 == SHMREG_ECORRUPT, "a repairing check runs (%llu problems, %llu handles reaped)",
       (unsigned long long)r1.problems, (unsigned long long)r1.reaped_handles);
    is(shmreg_check(h, 0, &r2, NULL, NULL, NULL), 0, "a second check returns 0");
    ok(r2.problems == 0 && r2.leaked_blocks == 0 && r2.stale_handles == 0, "... no problem, no leak, no stale handle");
    shmreg_unsubscribe(sub);
    munmap(kshm, sizeof *kshm);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 100k */

#define B_DUE 100000
#define B_LATER 1000

static void test_sweep_100k(void)
{
    shmreg *h = timeout_reg("timeout-100k", 131072, 1024);
    static shmreg_id due[B_DUE], got[B_DUE + 1];
    uint64_t T = test_now_ns() + 3600 * SEC;
    int rc = 0;
    for (int i = 0; i < B_DUE; i++) {
        due[i] = test_session_new(h);
        rc |= shmreg_session_set_timeout(h, &due[i], T + (uint64_t)(i % 50000) * 200000ull, SHMREG_TIMEOUT_FAIL, 0);
    }
    for (int i = 0; i < B_LATER; i++) {
        shmreg_id l = test_session_new(h);
        rc |= shmreg_session_set_timeout(h, &l, T + 60 * SEC, SHMREG_TIMEOUT_FAIL, 0);
    }
    is(rc, 0, "%d sessions armed over 10 s, %d more a minute later", B_DUE, B_LATER);
    static shmreg_expired out[4096];
    long total = 0;
    int n, calls = 0, fields = 1;
    while ((n = shmreg_expire(h, T + 30 * SEC, out, 4096)) > 0) {
        for (int i = 0; i < n; i++) {
            if (total + i < B_DUE + 1)
                got[total + i] = out[i].id;
            fields &= out[i].action == SHMREG_TIMEOUT_FAIL && out[i].new_state == SHMREG_STATE_FAILED;
        }
        total += n;
        calls++;
        if (n < 4096)
            break;
    }
    ok(n >= 0, "sweeping in batches of 4096 (%d calls)", calls);
    is(total, B_DUE, "fired exactly %d", B_DUE);
    ok(fields, "... each FAIL -> Failed");
    qsort(due, B_DUE, sizeof due[0], cmp_id);
    long m = total < B_DUE + 1 ? total : B_DUE + 1;
    ok(sort_dups(got, m) == 0 && subset(got, m, due, B_DUE), "... each due session once");
    is(count_in(h, SHMREG_STATE_FAILED), B_DUE, "%d Failed", B_DUE);
    is(count_in(h, SHMREG_STATE_INITIATING), B_LATER, "%d still Initiating", B_LATER);
    is(shmreg_expire(h, T + 30 * SEC, out, 4096), 0, "sweeping again fires nothing");
    is(shmreg_expire(h, T + 61 * SEC, out, 4096), B_LATER, "a minute later the other %d fire", B_LATER);
    test_reg_destroy(h);
}

int main(void)
{
    const char *env = getenv("SHMREG_TEST_SEED");
    seed_g = env ? (unsigned)strtoul(env, NULL, 0) : (unsigned)time(NULL) ^ (unsigned)getpid();
    diag("seed %u (SHMREG_TEST_SEED to repeat)", seed_g);
    test_watchdog_install();
    TEST_RUN(test_set_timeout);
    TEST_RUN(test_expire);
    TEST_RUN(test_policies);
    TEST_RUN(test_timer_crash_points);
    TEST_RUN(test_sweep_race);
    TEST_RUN(test_sweeper_kills);
    TEST_RUN(test_sweep_100k);
    alarm(0);
    return done_testing();
}
