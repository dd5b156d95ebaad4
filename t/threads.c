/*
 * threads.c — several threads of one process, each with its own handle,
 * hammer one registry at once: sessions (create, get, transitions, SDP,
 * counters, dialogs, delete), walks, full checks, event subscriptions and
 * config views and writes. It proves what registry/shmreg.h "Conventions" promises about
 * threads: handles, subscriptions and views are per thread, everything
 * they share (segment, event ring, the process's LMDB environment) is safe
 * to use from all of them at once, and shmreg_errmsg() is per thread. Run
 * under ThreadSanitizer (make VARIANT=tsan) it is also a race detector.
 *
 * Threads never call tap.h (its counters are not thread-safe): each one
 * writes its first failure into its own slot, and main reports them.
 * Every figure is exact: which events each subscriber got, how many
 * sessions each walk sees, the final counts and config values.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define NTHREADS 4
#define ITER 1000          /* sessions each thread creates; odd ones are deleted */
#define CONFIG_EVERY 50    /* a config write + views every this many sessions */
#define WALK_EVERY 100     /* a session walk every this many sessions */

static char reg_path[512];
static pthread_barrier_t barrier;

struct worker {
    int k;
    pthread_t tid;
    shmreg_id ids[ITER];
    unsigned live;                 /* own sessions live now */
    uint64_t created_seen, deleted_seen, missed;
    unsigned walks, config_writes;
    int last_written;              /* last value written to app.t<k> */
    int failed;                    /* checks failed */
    char first[512];               /* the first failure */
};
static struct worker workers[NTHREADS];

__attribute__((format(printf, 3, 4)))
static int check(struct worker *w, int cond, const char *fmt, ...)
{
    if (cond)
        return 1;
    if (w->failed++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->first, sizeof w->first, fmt, ap);
        va_end(ap);
    }
    return 0;
}

static int str_is(shmreg_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static shmreg_str mkstr(const char *s) { return (shmreg_str){ s, strlen(s) }; }

/* Take whatever events are there (timeout_ns 0) or wait for more. */
static void drain(struct worker *w, shmreg_sub *sub, int64_t timeout_ns)
{
    shmreg_event ev[64];
    uint64_t missed = 0;
    int n = shmreg_poll(sub, ev, 64, timeout_ns, &missed);
    if (!check(w, n >= 0, "poll: %s", shmreg_strerror(n)))
        return;
    w->missed += missed;
    for (int i = 0; i < n; i++) {
        if (ev[i].type == SHMREG_EV_SESSION_CREATED)
            w->created_seen++;
        else if (ev[i].type == SHMREG_EV_SESSION_DELETED)
            w->deleted_seen++;
        else
            check(w, 0, "event of type %u not subscribed to", ev[i].type);
    }
}

/* Count this thread's own sessions in a walk of the whole table. Only
 * this thread deletes them, so each of its live ones is live throughout
 * the walk and must be seen exactly once, whatever the others do. */
static void walk(struct worker *w, shmreg *h)
{
    char prefix[16];
    int plen = snprintf(prefix, sizeof prefix, "t%d-", w->k);
    unsigned mine = 0;
    uint64_t cur = 0;
    shmreg_session s;
    int rc;
    shmreg_read_begin(h);
    while ((rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s)) == 0) {
        shmreg_str from = s.str[SHMREG_FIELD_FROM_URI];
        mine += from.len > (size_t)plen && memcmp(from.ptr, prefix, (size_t)plen) == 0;
    }
    shmreg_read_end(h);
    check(w, rc == SHMREG_ENOENT, "walk ends with %s", shmreg_strerror(rc));
    check(w, mine == w->live, "walk %u saw %u own sessions, %u live", w->walks, mine, w->live);
    w->walks++;
    /* The full check runs beside the other threads' writes: what they
     * have in flight belongs to a live handle and is no problem. */
    shmreg_check_report rep;
    rc = shmreg_check(h, 0, &rep, NULL, NULL, NULL);
    check(w, rc == 0 && rep.problems == 0, "check during the run: %s, %llu problems",
          shmreg_strerror(rc), (unsigned long long)rep.problems);
}

/* Write app.t<k> = i, then read it back through a fresh view (a write is
 * visible to the writer's next view) and check the other threads' keys
 * through a refreshed one: each holds -1 or a value its owner wrote. */
static void config_round(struct worker *w, shmreg *h, shmreg_config_view **kept, int i)
{
    char key[24], val[24];
    snprintf(key, sizeof key, "app.t%d", w->k);
    snprintf(val, sizeof val, "%d", i);
    int rc = shmreg_config_set(h, "shared", key, val);
    if (!check(w, rc == 0, "config_set %s: %s", key, shmreg_errmsg()))
        return;
    w->config_writes++;
    w->last_written = i;

    shmreg_config_view *v = NULL;
    rc = shmreg_config_open_view(h, "shared", &v);
    if (!check(w, rc == 0, "open_view: %s", shmreg_errmsg()))
        return;
    int64_t got = -2;
    check(w, shmreg_config_get_int(v, key, &got) == 0 && got == i,
          "view reads %s = %lld after writing %d", key, (long long)got, i);
    shmreg_config_release(v);

    rc = shmreg_config_refresh(h, "shared", kept, NULL);
    if (!check(w, rc == 0, "refresh: %s", shmreg_strerror(rc)))
        return;
    for (int j = 0; j < NTHREADS; j++) {
        snprintf(key, sizeof key, "app.t%d", j);
        got = -2;
        rc = shmreg_config_get_int(*kept, key, &got);
        check(w, rc == 0 && got >= -1 && got < ITER && (got == -1 || got % CONFIG_EVERY == 0),
              "kept view: %s = %lld (%s)", key, (long long)got, shmreg_strerror(rc));
    }
}

/* One session's life, checked step by step. */
static void one_session(struct worker *w, shmreg *h, int i)
{
    char from[64], call_id[32], sdp[96];
    snprintf(from, sizeof from, "t%d-%d@example.org", w->k, i);
    snprintf(call_id, sizeof call_id, "c-%d-%d", w->k, i);
    int sdplen = snprintf(sdp, sizeof sdp, "v=0\r\no=t%d %d 0 IN IP4 192.0.2.1\r\n", w->k, i);
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = mkstr(from);
    f.str[SHMREG_FIELD_CALL_ID] = mkstr(call_id);
    f.local_rtp_port = (uint16_t)(10000 + i);

    shmreg_id *id = &w->ids[i];
    int rc = shmreg_session_create(h, &f, id);
    if (!check(w, rc == 0, "create %d: %s", i, shmreg_errmsg()))
        return;
    w->live++;

    shmreg_session s;
    shmreg_read_begin(h);
    rc = shmreg_session_get(h, id, &s);
    check(w, rc == 0 && s.state == SHMREG_STATE_INITIATING && str_is(s.str[SHMREG_FIELD_FROM_URI], from) &&
             s.local_rtp_port == 10000 + i,
          "get %d after create: rc %d state %d", i, rc, rc ? -1 : s.state);
    shmreg_read_end(h);

    int old = -1;
    check(w, shmreg_session_transition(h, id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, &old) == 0,
          "%d: Initiating -> Ringing", i);
    rc = shmreg_session_transition(h, id, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE, &old);
    check(w, rc == SHMREG_ECONFLICT && old == SHMREG_STATE_RINGING,
          "%d: a stale expected state gives ECONFLICT (rc %d, old %d)", i, rc, old);
    check(w, shmreg_session_transition(h, id, SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE, NULL) == 0,
          "%d: Ringing -> Active", i);
    check(w, shmreg_session_set_sdp(h, id, SHMREG_SDP_LOCAL, sdp, (size_t)sdplen) == 0,
          "%d: set_sdp: %s", i, shmreg_errmsg());
    check(w, shmreg_session_counter_add(h, id, SHMREG_CTR_PACKETS_SENT, (uint64_t)i) == 0,
          "%d: counter_add", i);
    check(w, shmreg_dialog_bind(h, mkstr(call_id), mkstr("lt"), mkstr("rt"), id) == 0,
          "%d: dialog_bind: %s", i, shmreg_errmsg());
    shmreg_id found;
    memset(&found, 0, sizeof found);
    rc = shmreg_dialog_find(h, mkstr(call_id), mkstr("lt"), mkstr("rt"), &found);
    check(w, rc == 0 && memcmp(&found, id, sizeof found) == 0, "%d: dialog_find: %s", i,
          shmreg_strerror(rc));

    shmreg_read_begin(h);
    rc = shmreg_session_get(h, id, &s);
    check(w, rc == 0 && s.state == SHMREG_STATE_ACTIVE && str_is(s.sdp[SHMREG_SDP_LOCAL], sdp) &&
             s.counter[SHMREG_CTR_PACKETS_SENT] == (uint64_t)i && s.ndialogs == 1,
          "get %d after the updates: rc %d", i, rc);
    shmreg_read_end(h);

    if (i % 2) {
        check(w, shmreg_session_delete(h, id) == 0, "delete %d", i);
        w->live--;
        shmreg_read_begin(h);
        check(w, shmreg_session_get(h, id, &s) == SHMREG_ENOENT, "get %d after delete", i);
        shmreg_read_end(h);
        check(w, shmreg_dialog_find(h, mkstr(call_id), mkstr("lt"), mkstr("rt"), &found) ==
                     SHMREG_ENOENT,
              "%d: the dialog went with the session", i);
    }
}

/* The thread-local error detail: every thread fails a parse at its own
 * line, waits until all have failed theirs, and must still read its own. */
static void errmsg_is_per_thread(struct worker *w)
{
    char text[128] = "", want[32];
    for (int j = 0; j < w->k; j++)
        strcat(text, "# pad\n");
    strcat(text, "app.x = ?\n");
    shmreg_config_doc *d = NULL;
    int rc = shmreg_config_parse(text, strlen(text), &d);
    check(w, rc == SHMREG_EPARSE && d == NULL, "parse of bad text gives %s", shmreg_strerror(rc));
    pthread_barrier_wait(&barrier);
    snprintf(want, sizeof want, "line %d,", w->k + 1);
    check(w, strstr(shmreg_errmsg(), want) != NULL, "errmsg after the others failed: \"%s\"",
          shmreg_errmsg());
    pthread_barrier_wait(&barrier);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    shmreg *h = NULL;
    int rc = shmreg_open(reg_path, NULL, &h);
    shmreg_sub *sub = NULL;
    if (check(w, rc == 0, "open: %s", shmreg_errmsg()))
        rc = shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_SESSION_CREATED) |
                                     SHMREG_EV_MASK(SHMREG_EV_SESSION_DELETED),
                              NULL, &sub);
    check(w, rc == 0, "subscribe: %s", shmreg_strerror(rc));
    /* Everyone subscribed before anyone publishes: each must see all. */
    pthread_barrier_wait(&barrier);
    if (w->failed) {
        pthread_barrier_wait(&barrier);
        pthread_barrier_wait(&barrier);
        goto out;
    }
    errmsg_is_per_thread(w);

    shmreg_config_view *kept = NULL;
    for (int i = 0; i < ITER && w->failed == 0; i++) {
        one_session(w, h, i);
        drain(w, sub, 0);
        if (i % CONFIG_EVERY == 0)
            config_round(w, h, &kept, i);
        if (i % WALK_EVERY == WALK_EVERY - 1)
            walk(w, h);
    }
    shmreg_config_release(kept);
    /* Every thread's sessions, created and deleted, reach every subscriber. */
    double deadline = test_mono_s() + 60;
    while (w->failed == 0 &&
           (w->created_seen < NTHREADS * ITER || w->deleted_seen < NTHREADS * ITER / 2) &&
           test_mono_s() < deadline)
        drain(w, sub, 100000000);
    drain(w, sub, 0);
out:
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    return NULL;
}

int main(void)
{
    snprintf(reg_path, sizeof reg_path, "%s", test_dir("threads"));
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    o.max_sessions = 2 * NTHREADS * ITER;
    o.event_records = 131072; /* more than the run publishes: no subscriber can be lapped */
    shmreg *h = NULL;
    if (shmreg_open(reg_path, &o, &h) != 0)
        bail_out("cannot create %s: %s", reg_path, shmreg_errmsg());
    for (int k = 0; k < NTHREADS; k++) {
        char key[24];
        snprintf(key, sizeof key, "app.t%d", k);
        if (shmreg_config_set(h, "shared", key, "-1") != 0)
            bail_out("config_set %s: %s", key, shmreg_errmsg());
    }
    uint64_t gen0 = shmreg_config_gen(h);

    pthread_barrier_init(&barrier, NULL, NTHREADS);
    for (int k = 0; k < NTHREADS; k++) {
        workers[k].k = k;
        workers[k].last_written = -1;
        if (pthread_create(&workers[k].tid, NULL, worker_main, &workers[k]) != 0)
            bail_out("pthread_create failed");
    }
    for (int k = 0; k < NTHREADS; k++)
        pthread_join(workers[k].tid, NULL);
    pthread_barrier_destroy(&barrier);

    unsigned writes = 0;
    for (int k = 0; k < NTHREADS; k++) {
        struct worker *w = &workers[k];
        if (!is(w->failed, 0, "thread %d: no check failed", k))
            diag("thread %d: %d failures, the first: %s", k, w->failed, w->first);
        is(w->created_seen, NTHREADS * ITER, "thread %d saw every session_created", k);
        is(w->deleted_seen, NTHREADS * ITER / 2, "thread %d saw every session_deleted", k);
        is(w->missed, 0, "thread %d missed no event", k);
        is(w->live, ITER / 2, "thread %d left %d sessions live", k, ITER / 2);
        is(w->walks, ITER / WALK_EVERY, "thread %d walked the table %d times", k,
           ITER / WALK_EVERY);
        writes += w->config_writes;
    }
    is(writes, NTHREADS * (ITER / CONFIG_EVERY), "%u config writes", writes);
    is(shmreg_config_gen(h) - gen0, writes, "each bumped the generation once");

    shmreg_config_view *v = NULL;
    if (is(shmreg_config_open_view(h, "shared", &v), 0, "view of the final config")) {
        for (int k = 0; k < NTHREADS; k++) {
            char key[24];
            int64_t got = -2;
            snprintf(key, sizeof key, "app.t%d", k);
            shmreg_config_get_int(v, key, &got);
            is(got, workers[k].last_written, "%s holds its thread's last write", key);
        }
        shmreg_config_release(v);
    }

    uint64_t counts[SHMREG_STATE_COUNT];
    is(shmreg_session_counts(h, counts, SHMREG_STATE_COUNT), 0, "session_counts");
    is(counts[0], NTHREADS * ITER / 2, "%d sessions live", NTHREADS * ITER / 2);
    is(counts[SHMREG_STATE_ACTIVE], NTHREADS * ITER / 2, "all of them Active");
    shmreg_stats st;
    is(shmreg_stat(h, &st), 0, "stat");
    is(st.dialogs, NTHREADS * ITER / 2, "one dialog each");
    is(st.handles, 1, "the threads' handles are all closed");

    shmreg_read_begin(h);
    int bad = 0;
    for (int k = 0; k < NTHREADS; k++)
        for (int i = 0; i < ITER; i++) {
            shmreg_session s;
            int rc = shmreg_session_get(h, &workers[k].ids[i], &s);
            bad += i % 2 ? rc != SHMREG_ENOENT
                         : rc != 0 || s.counter[SHMREG_CTR_PACKETS_SENT] != (uint64_t)i;
        }
    shmreg_read_end(h);
    is(bad, 0, "each session is there or gone as its thread left it, with its own counter");

    shmreg_check_report rep;
    memset(&rep, 0, sizeof rep);
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "check finds no problem");
    is(rep.leaked_blocks, 0, "and no leaked block");
    is(rep.sessions, NTHREADS * ITER / 2, "check counts the same sessions");
    is(rep.dialogs, NTHREADS * ITER / 2, "and dialogs");

    shmreg_close(h);
    is(shmreg_destroy(reg_path, 0), 0, "destroy: no handle left attached");
    return done_testing();
}
