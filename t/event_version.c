/*
 * t/event_version.c — every session event carries the session's version
 * after the change it reports.
 *
 * Why: a follower of the event ring (shmreg-sync, a mirror, an
 * application's own cache) may see one session's events more than once
 * (a reaper announces a killed process's change again) or, once events
 * come through more than one path, out of order. The version the change
 * moved the session to is what lets it order them and drop one it has
 * seen. This test walks one session through every kind of change and
 * checks each event's version against the session's own, exactly; then
 * four processes change their own sessions at once (an SDP at a time, and
 * every fifth change an update of a field and both SDPs) and a follower
 * checks that each session's versions arrive strictly rising and end at
 * the session's last, and that an update's three events arrive together,
 * nothing of another process's between them (one claim on the ring).
 */
#include <stdio.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define WORKERS 4
#define PER_WORKER 8
#define CHANGES 50
#define UPDATE_EVERY 5 /* every 5th change an update: a field and both SDPs, 3 events */
#define UPDATES (CHANGES / UPDATE_EVERY)

/* The next event, which must be of `type` for session `id`; its version. */
static uint64_t next_event(shmreg_sub *sub, uint32_t type, const shmreg_id *id, const char *what)
{
    shmreg_event ev;
    uint64_t missed = 0;
    int n = shmreg_poll(sub, &ev, 1, 0, &missed);
    ok(n == 1 && ev.type == type && (id == NULL || test_id_eq(&ev.session, id)),
       "%s: a %s event for the session", what, shmreg_event_name(type));
    return n == 1 ? ev.version : UINT64_MAX;
}

static void one_session(void)
{
    shmreg *h = test_reg_small("event-version", 0);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    test_fieldbuf b;
    test_fields_fill(&b, "v", 4000);
    shmreg_id id;
    is(shmreg_session_create(h, &b.f, &id), 0, "create");
    is(next_event(sub, SHMREG_EV_SESSION_CREATED, &id, "create"), 1, "session_created carries version 1");

    is(shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE, NULL), 0,
       "transition");
    is(next_event(sub, SHMREG_EV_STATE_CHANGED, &id, "transition"), 2, "state_changed: 2");

    /* One update of a field and both SDPs: one change, three events. */
    shmreg_str sdp[2] = {test_ss("v=0 local"), test_ss("v=0 remote")};
    test_fields_fill(&b, "w", 4002);
    b.f.sdp = sdp;
    is(shmreg_session_update(h, &id, &b.f, SHMREG_MASK(SHMREG_FIELD_APP_DATA) | SHMREG_MASK_SDP_BOTH), 0,
       "update: a field and both SDPs");
    is(next_event(sub, SHMREG_EV_SESSION_UPDATED, &id, "update"), 3, "session_updated: 3");
    is(next_event(sub, SHMREG_EV_SDP_UPDATED, &id, "update"), 3, "sdp_updated (local): 3, the same change");
    is(next_event(sub, SHMREG_EV_SDP_UPDATED, &id, "update"), 3, "sdp_updated (remote): 3");
    is(test_session_version(h, &id), 3, "the session is at 3");

    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0 again", 9), 0, "set_sdp");
    is(next_event(sub, SHMREG_EV_SDP_UPDATED, &id, "set_sdp"), 4, "sdp_updated: 4");

    is(shmreg_dialog_bind(h, test_ss("cid@v"), test_ss("lt"), test_ss("rt"), &id), 0, "bind");
    is(next_event(sub, SHMREG_EV_DIALOG_BOUND, &id, "bind"), 5, "dialog_bound: 5");
    is(shmreg_dialog_unbind(h, test_ss("cid@v"), test_ss("lt"), test_ss("rt")), 0, "unbind");
    is(next_event(sub, SHMREG_EV_DIALOG_UNBOUND, &id, "unbind"), 6, "dialog_unbound: 6");

    /* Events whose payload fills the record carry none, though the change
     * moved the session on. */
    is(shmreg_profile_join(h, &id, test_ss("trunk"), test_ss("a"), 0, NULL), 0, "profile join");
    is(next_event(sub, SHMREG_EV_PROFILE_JOINED, &id, "join"), 0, "profile_joined: no version (0)");
    is(test_session_version(h, &id), 7, "the join moved the session to 7");
    is(shmreg_publish(h, &id, "x", 1), 0, "a custom event for the session");
    is(next_event(sub, SHMREG_EV_CUSTOM, &id, "custom"), 0, "custom: 0");

    uint64_t now = test_now_ns();
    is(shmreg_session_set_timeout(h, &id, now - 1000000000ull, SHMREG_TIMEOUT_FAIL, 0), 0, "a deadline passed");
    shmreg_expired out[2];
    is(shmreg_expire(h, 0, out, 2), 1, "the sweep fires it");
    uint64_t v = test_session_version(h, &id);
    is(next_event(sub, SHMREG_EV_TIMEOUT, &id, "timeout"), v, "timeout: the session's version after it (%llu)",
       (unsigned long long)v);
    is(next_event(sub, SHMREG_EV_PROFILE_LEFT, &id, "timeout"), 0,
       "then profile_left: the Failed call left its pair (no version)");

    is(shmreg_session_delete(h, &id), 0, "delete");
    is(next_event(sub, SHMREG_EV_SESSION_DELETED, &id, "delete"), v + 1, "session_deleted: one more (%llu)",
       (unsigned long long)(v + 1));
    shmreg_event ev;
    is(shmreg_poll(sub, &ev, 1, 0, NULL), 0, "and nothing else");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* Forked: make PER_WORKER sessions, then change them in turn. */
static void worker(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    shmreg_id id[PER_WORKER];
    for (int i = 0; i < PER_WORKER; i++)
        if (shmreg_session_create(h, NULL, &id[i]) != 0)
            _exit(2);
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    shmreg_str sdp[2] = {{"v=0 l", 5}, {"v=0 r", 5}};
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){"x", 1};
    f.sdp = sdp;
    for (int k = 0; k < CHANGES; k++)
        for (int i = 0; i < PER_WORKER; i++)
            if (k % UPDATE_EVERY == 0 ? shmreg_session_update(h, &id[i], &f,
                                                              SHMREG_MASK(SHMREG_FIELD_APP_DATA) | SHMREG_MASK_SDP_BOTH)
                                      : shmreg_session_set_sdp(h, &id[i], k & 1, "v=0", 3))
                _exit(3);
    shmreg_close(h);
    _exit(0);
}

static void many_processes(void)
{
    shmreg_options o = {.max_sessions = 256, .max_handles = 16, .event_records = 4096};
    shmreg *h = test_reg_new_opts("event-version-many", o);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    pid_t pid[WORKERS];
    for (int w = 0; w < WORKERS; w++)
        pid[w] = test_fork(worker, NULL);
    int bad = 0;
    for (int w = 0; w < WORKERS; w++)
        bad += test_wait(pid[w]) != 0;
    is(bad, 0, "%d processes made %d sessions each and changed each %d times", WORKERS, PER_WORKER, CHANGES);

    /* Every event of the run, in ring order. */
    enum { N = WORKERS * PER_WORKER, EVENTS = N * (1 + CHANGES + 2 * UPDATES) };
    static shmreg_event all[EVENTS];
    int events = 0;
    uint64_t missed = 0;
    shmreg_event got[64];
    for (int n; (n = shmreg_poll(sub, got, 64, 0, &missed)) > 0; events += n)
        for (int i = 0; i < n && events + i < EVENTS; i++)
            all[events + i] = got[i];
    is(missed, 0, "the follower missed nothing");
    is(events, EVENTS, "it saw %d events (an update publishes 3)", EVENTS);

    shmreg_id seen[N];
    uint64_t last[N];
    int nseen = 0, rising = 1, together = 1, updates = 0;
    for (int i = 0; i < events && i < EVENTS; i++) {
        int j = 0;
        while (j < nseen && !test_id_eq(&seen[j], &all[i].session))
            j++;
        if (j == nseen && nseen < N) {
            seen[nseen] = all[i].session;
            last[nseen++] = 0;
        }
        if (j == N)
            continue;
        rising &= all[i].version > last[j];
        last[j] = all[i].version;
        if (all[i].type != SHMREG_EV_SESSION_UPDATED)
            continue;
        /* One change, one claim: its two sdp_updated follow at once, with
         * its version, whatever the other processes published meanwhile. */
        updates++;
        for (int k = 1; k <= 2; k++)
            together &= i + k < events && i + k < EVENTS && all[i + k].type == SHMREG_EV_SDP_UPDATED && all[i + k].which == (uint32_t)k - 1 &&
                        test_id_eq(&all[i + k].session, &all[i].session) && all[i + k].version == all[i].version;
        i += 2;
    }
    is(nseen, N, "for %d sessions", N);
    is(updates, N * UPDATES, "%d updates", N * UPDATES);
    ok(together, "each update's session_updated is followed at once by its sdp_updated (local, remote), "
       "same session, same version");
    ok(rising, "each session's versions arrive strictly rising, change after change");
    int at_end = 0;
    for (int j = 0; j < nseen; j++)
        at_end += last[j] == 1 + CHANGES && test_session_version(h, &seen[j]) == 1 + CHANGES;
    is(at_end, N, "each ends at %d, the session's own version", 1 + CHANGES);
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    one_session();
    many_processes();
    return done_testing();
}
