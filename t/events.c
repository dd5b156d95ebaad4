/*
 * events.c — the registry's event bus, seen from a subscriber.
 *
 * Every committed change is published by the registry itself: session
 * created, state changed (old, new), SDP updated (which side), session
 * updated (mask of the fields), session deleted (old state), dialog bound
 * and unbound, config changed (the new generation); applications add
 * custom events of up to SHMREG_EVENT_DATA_MAX bytes. An event carries IDs
 * and small fields only: an SDP is never in it, the subscriber reads it in
 * place. Subscribers filter by type mask and by session and see exactly
 * the matching events, in order, polled in batches, without blocking or
 * blocking with a timeout (woken by another process's publish). A
 * subscriber lapped on a small ring is told exactly how much it missed;
 * on a big ring, 3 subscribers receive all 80,000 events of 4 producer
 * processes exactly once and in each producer's order. Publishing and
 * polling allocate nothing, and a subscription used after fork() says
 * SHMREG_EFORK.
 *
 * (The ring itself — slots, laps, dead producers — is tested in t/ring.c.)
 */
#include <errno.h>
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

#include "alloc_count.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

/* A fresh registry of 256 sessions and `event_records` ring records. */
static shmreg *open_new(const char *name, uint32_t event_records)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 256;
    o.event_records = event_records;
    return test_reg_new_opts(name, o);
}


static uint64_t published(shmreg *h)
{
    shmreg_stats st;
    if (shmreg_stat(h, &st) != 0)
        bail_out("stat: %s", shmreg_errmsg());
    return st.events_published;
}

static const shmreg_id zero_id;

/* Everything a subscription has now (non-blocking), in order. */
static int drain(shmreg_sub *sub, shmreg_event *ev, int cap, uint64_t *missed)
{
    int n = 0;
    if (missed)
        *missed = 0;
    for (;;) {
        shmreg_event e[16];
        uint64_t m = 0;
        int got = shmreg_poll(sub, e, 16, 0, &m);
        if (missed)
            *missed += m;
        if (got <= 0)
            return got < 0 ? got : n;
        for (int i = 0; i < got; i++)
            if (n < cap)
                ev[n++] = e[i];
    }
}

/* An expected event: the type's fields; everything else must be zero. */
struct want {
    uint32_t type;
    const shmreg_id *session;
    int old_state, new_state;
    uint32_t which;
    uint64_t config_gen;
    uint32_t len;
    const void *data;
};

/* One ok() per event: every field of the event exactly as documented,
 * published by `pid` between t0 and now, sequence numbers increasing. */
static void events_are(const shmreg_event *got, int m, const struct want *want, int n, uint64_t t0,
                       pid_t pid, const char *what)
{
    is(m, n, "%s: exactly %d events", what, n);
    uint64_t t1 = test_now_ns();
    for (int i = 0; i < n && i < m; i++) {
        const shmreg_event *e = &got[i];
        const struct want *w = &want[i];
        const shmreg_id *sess = w->session ? w->session : &zero_id;
        unsigned char data[SHMREG_EVENT_DATA_MAX] = { 0 };
        if (w->len)
            memcpy(data, w->data, w->len);
        char why[400] = "";
        size_t o = 0;
#define EV_DIFF(cond, ...) \
        if (!(cond)) o += (size_t)snprintf(why + o, o < sizeof why ? sizeof why - o : 0, __VA_ARGS__)
        EV_DIFF(e->type == w->type, " type %u (want %u)", e->type, w->type);
        EV_DIFF(test_id_eq(&e->session, sess), " session differs");
        EV_DIFF(test_id_eq(&e->room, &zero_id), " room not zero");
        EV_DIFF(e->old_state == w->old_state, " old_state %d (want %d)", e->old_state, w->old_state);
        EV_DIFF(e->new_state == w->new_state, " new_state %d (want %d)", e->new_state, w->new_state);
        EV_DIFF(e->which == w->which, " which 0x%x (want 0x%x)", e->which, w->which);
        EV_DIFF(e->config_gen == w->config_gen, " config_gen %llu (want %llu)",
                (unsigned long long)e->config_gen, (unsigned long long)w->config_gen);
        EV_DIFF(e->len == w->len, " len %u (want %u)", e->len, w->len);
        EV_DIFF(memcmp(e->data, data, sizeof data) == 0, " data differs");
        EV_DIFF(e->pid == (int32_t)pid, " pid %d (want %d)", (int)e->pid, (int)pid);
        EV_DIFF(e->time_ns >= t0 && e->time_ns <= t1, " time_ns outside the script");
        EV_DIFF(i == 0 || e->seq == got[i - 1].seq + 1, " seq %llu does not follow %llu",
                (unsigned long long)e->seq, (unsigned long long)got[i - 1].seq);
#undef EV_DIFF
        ok(why[0] == 0, "%s: event %d is %s with exactly its fields", what, i + 1,
           shmreg_event_name(w->type));
        if (why[0])
            diag("   event %d:%s", i + 1, why);
    }
}

/* ------------------------------------------------------------ names, arguments */

static void test_names_and_arguments(void)
{
    static const char *const nm[] = {
        NULL, "session_created", "state_changed", "sdp_updated", "session_updated",
        "session_deleted", "dialog_bound", "dialog_unbound", "config_changed", "custom",
        "room_created", "room_state", "participant_joined", "participant_status", "participant_left",
        "session_restored", "room_restored", "timeout", "profile_joined", "profile_left",
        "var_changed", "session_imported", "session_adopted",
    };
    _Static_assert(sizeof nm / sizeof nm[0] == SHMREG_EV_TYPE_COUNT, "a name for every type");
    int names_ok = 1, parse_ok = 1;
    for (uint32_t t = 1; t < SHMREG_EV_TYPE_COUNT; t++) {
        const char *n = shmreg_event_name(t);
        uint32_t back = 0;
        names_ok &= n && strcmp(n, nm[t]) == 0;
        parse_ok &= n && shmreg_event_parse(n, &back) == 0 && back == t;
    }
    ok(names_ok, "every event type has its documented name");
    ok(parse_ok, "every name parses back to its type");
    ok(shmreg_event_name(0) == NULL && shmreg_event_name(SHMREG_EV_TYPE_COUNT) == NULL,
       "types 0 and %d have no name", SHMREG_EV_TYPE_COUNT);
    uint32_t t = 77;
    is(shmreg_event_parse("session_exploded", &t), SHMREG_EINVAL, "an unknown name: SHMREG_EINVAL");
    is(t, 77, "... type unchanged");

    shmreg *h = open_new("ev-args", 0);
    shmreg_sub *sub = NULL;
    is(shmreg_subscribe(h, 0, NULL, &sub), SHMREG_EINVAL, "subscribe with an empty mask: SHMREG_EINVAL");
    is(shmreg_subscribe(h, SHMREG_EV_ALL, NULL, NULL), SHMREG_EINVAL, "subscribe with NULL out: SHMREG_EINVAL");
    is(shmreg_subscribe(NULL, SHMREG_EV_ALL, NULL, &sub), SHMREG_EINVAL, "subscribe with a NULL handle: SHMREG_EINVAL");
    sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_event e;
    is(shmreg_poll(NULL, &e, 1, 0, NULL), SHMREG_EINVAL, "poll a NULL subscription: SHMREG_EINVAL");
    is(shmreg_poll(sub, NULL, 1, 0, NULL), SHMREG_EINVAL, "poll into NULL: SHMREG_EINVAL");
    is(shmreg_poll(sub, &e, 0, 0, NULL), SHMREG_EINVAL, "poll with max 0: SHMREG_EINVAL");
    shmreg_sub_stats st;
    is(shmreg_sub_stats_get(NULL, &st), SHMREG_EINVAL, "stats of a NULL subscription: SHMREG_EINVAL");
    is(shmreg_sub_stats_get(sub, NULL), SHMREG_EINVAL, "stats into NULL: SHMREG_EINVAL");
    shmreg_unsubscribe(sub);
    shmreg_unsubscribe(NULL);
    ok(1, "unsubscribe(NULL) is a no-op");

    /* A subscription starts at the current end of the ring. */
    shmreg_publish(h, NULL, "before", 6);
    shmreg_id s = test_session_new(h);
    sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    uint64_t missed = 99;
    double t0 = test_mono_s();
    is(shmreg_poll(sub, &e, 1, 0, &missed), 0, "a new subscription sees nothing published before it");
    is(missed, 0, "... and missed nothing");
    ok(test_mono_s() - t0 < 1.0, "timeout 0 returns at once");
    shmreg_sub_stats_get(sub, &st);
    ok(st.delivered == 0 && st.filtered == 0 && st.missed == 0 && st.skipped == 0 &&
       st.next_seq == published(h), "its stats: nothing delivered, filtered or missed; next_seq is the tail (%llu)",
       (unsigned long long)st.next_seq);
    shmreg_publish(h, &s, "after", 5);
    is(shmreg_poll(sub, &e, 1, 0, &missed), 1, "it sees what is published next");
    ok(e.type == SHMREG_EV_CUSTOM && e.len == 5 && memcmp(e.data, "after", 5) == 0, "... the custom event 'after'");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ what the registry publishes */

static void test_registry_events(void)
{
    shmreg *h = open_new("ev-reg", 0);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    uint64_t p0 = published(h), t0 = test_now_ns();
    shmreg_id s;
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:alice@example.com");
    shmreg_session_create(h, &f, &s);                                                   /* 1 */
    shmreg_session_transition(h, &s, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL); /* 2 */
    shmreg_session_transition(h, &s, SHMREG_STATE_ANY, SHMREG_STATE_ONHOLD, NULL);       /* refused */
    shmreg_session_transition(h, &s, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL);    /* refused */
    shmreg_session_set_sdp(h, &s, SHMREG_SDP_LOCAL, "v=0\r\n", 5);                       /* 3 */
    shmreg_session_set_sdp(h, &s, SHMREG_SDP_REMOTE, "v=0\r\n", 5);                      /* 4 */
    shmreg_session_set_sdp(h, &s, 2, "v=0\r\n", 5);                                      /* refused */
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S("Alice");
    f.local_rtp_port = 4000;
    uint32_t mask = SHMREG_MASK(SHMREG_FIELD_DISPLAY_NAME) | SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT);
    shmreg_session_update(h, &s, &f, mask);                                              /* 5 */
    static char big[SHMREG_MAX_STR + 1];
    f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){ big, sizeof big };
    shmreg_session_update(h, &s, &f, SHMREG_MASK(SHMREG_FIELD_CALL_ID));                 /* refused */
    shmreg_dialog_bind(h, S("call-1"), S("ltag"), S("rtag"), &s);                        /* 6 */
    shmreg_dialog_bind(h, S("call-1"), S("ltag"), S("rtag"), &s);                        /* refused */
    shmreg_dialog_unbind(h, S("call-1"), S("ltag"), S("rtag"));                          /* 7 */
    shmreg_dialog_unbind(h, S("call-1"), S("ltag"), S("rtag"));                          /* refused */
    shmreg_publish(h, &s, "hello", 5);                                                   /* 8 */
    shmreg_publish(h, NULL, NULL, 0);                                                    /* 9 */
    shmreg_publish(h, NULL, "0123456789abcdef", SHMREG_EVENT_DATA_MAX);                  /* 10 */
    shmreg_session_delete(h, &s);                                                        /* 11 */
    shmreg_session_delete(h, &s);                                                        /* refused */

    const struct want script[] = {
        { SHMREG_EV_SESSION_CREATED, &s, 0, SHMREG_STATE_INITIATING, 0, 0, 0, NULL },
        { SHMREG_EV_STATE_CHANGED, &s, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, 0, 0, 0, NULL },
        { SHMREG_EV_SDP_UPDATED, &s, 0, 0, SHMREG_SDP_LOCAL, 0, 0, NULL },
        { SHMREG_EV_SDP_UPDATED, &s, 0, 0, SHMREG_SDP_REMOTE, 0, 0, NULL },
        { SHMREG_EV_SESSION_UPDATED, &s, 0, 0, mask, 0, 0, NULL },
        { SHMREG_EV_DIALOG_BOUND, &s, 0, 0, 0, 0, 0, NULL },
        { SHMREG_EV_DIALOG_UNBOUND, &s, 0, 0, 0, 0, 0, NULL },
        { SHMREG_EV_CUSTOM, &s, 0, 0, 0, 0, 5, "hello" },
        { SHMREG_EV_CUSTOM, NULL, 0, 0, 0, 0, 0, NULL },
        { SHMREG_EV_CUSTOM, NULL, 0, 0, 0, 0, SHMREG_EVENT_DATA_MAX, "0123456789abcdef" },
        { SHMREG_EV_SESSION_DELETED, &s, SHMREG_STATE_RINGING, 0, 0, 0, 0, NULL },
    };
    shmreg_event got[32];
    int m = drain(sub, got, 32, NULL);
    events_are(got, m, script, 11, t0, getpid(), "a session's life");
    is(published(h) - p0, 11, "stat.events_published grew by exactly the 11 events published");

    /* Refused custom events publish nothing. */
    uint64_t p1 = published(h);
    is(shmreg_publish(h, NULL, "0123456789abcdefX", SHMREG_EVENT_DATA_MAX + 1), SHMREG_EINVAL,
       "a custom event of %u bytes: SHMREG_EINVAL", SHMREG_EVENT_DATA_MAX + 1);
    is(shmreg_publish(h, NULL, NULL, 3), SHMREG_EINVAL, "NULL data with a length: SHMREG_EINVAL");
    is(shmreg_publish(NULL, NULL, "x", 1), SHMREG_EINVAL, "a NULL handle: SHMREG_EINVAL");
    is(published(h), p1, "... nothing was published");
    is(drain(sub, got, 32, NULL), 0, "... nothing arrives");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

static void test_config_event(void)
{
    shmreg *h = open_new("ev-config", 0);
    shmreg_id s = test_session_new(h);
    shmreg_sub *all = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_sub *one = test_subscribe(h, SHMREG_EV_ALL, &s);
    uint64_t p0 = published(h), t0 = test_now_ns();
    int rc = shmreg_config_set(h, "media", "media.ptime", "30");
    if (rc != 0) {
        skip(4, "configs not usable here: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    } else {
        uint64_t g1 = shmreg_config_gen(h);
        static const char text[] = "[media]\nptime = 40\n";
        rc = shmreg_config_load_text(h, "media", text, sizeof text - 1);
        uint64_t g2 = shmreg_config_gen(h);
        ok(rc == 0 && g2 > g1, "two config writes (set, load_text): generations %llu, %llu",
           (unsigned long long)g1, (unsigned long long)g2);
        const struct want w[] = {
            { SHMREG_EV_CONFIG_CHANGED, NULL, 0, 0, 0, g1, 0, NULL },
            { SHMREG_EV_CONFIG_CHANGED, NULL, 0, 0, 0, g2, 0, NULL },
        };
        shmreg_event got[8];
        int m = drain(all, got, 8, NULL);
        events_are(got, m, w, 2, t0, getpid(), "config writes");
        is(published(h) - p0, 2, "stat.events_published grew by 2");
        is(drain(one, got, 8, NULL), 0, "a subscription to one session gets no config_changed (it has no session)");
    }
    shmreg_unsubscribe(all);
    shmreg_unsubscribe(one);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ SDPs stay in the registry */

static void test_sdp_not_copied(void)
{
    shmreg *h = open_new("ev-sdp", 0);
    shmreg_id s = test_session_new(h);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_SDP_UPDATED), &s);
    static char sdp[4000];
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof sdp; i++)
        sdp[i] = (char)('!' + rand_r(&seed) % 90);
    shmreg_session_set_sdp(h, &s, SHMREG_SDP_REMOTE, sdp, sizeof sdp);
    shmreg_event e;
    is(shmreg_poll(sub, &e, 1, 0, NULL), 1, "setting a 4000-byte SDP publishes one sdp_updated");
    ok(e.type == SHMREG_EV_SDP_UPDATED && test_id_eq(&e.session, &s) && e.which == SHMREG_SDP_REMOTE,
       "... for the session, side remote");
    /* No 8-byte run of the SDP is anywhere in the event. */
    int found = 0;
    const unsigned char *ev = (const unsigned char *)&e;
    for (size_t i = 0; i + 8 <= sizeof sdp && !found; i++)
        found = memmem(ev, sizeof e, sdp + i, 8) != NULL;
    ok(!found && e.len == 0, "the event (%zu bytes) holds none of the SDP's bytes", sizeof e);
    shmreg_session v;
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &e.session, &v) == 0 && v.sdp[SHMREG_SDP_REMOTE].len == sizeof sdp &&
       memcmp(v.sdp[SHMREG_SDP_REMOTE].ptr, sdp, sizeof sdp) == 0,
       "the subscriber reads the SDP in place through the event's session ID");
    shmreg_read_end(h);
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ filters */

static int count_type(const shmreg_event *e, int n, uint32_t type)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += e[i].type == type;
    return c;
}

static void test_filters(void)
{
    shmreg *h = open_new("ev-filter", 0);
    shmreg_id a = test_session_new(h), b = test_session_new(h);
    shmreg_sub *all = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_sub *states = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED), NULL);
    shmreg_sub *only_a = test_subscribe(h, SHMREG_EV_ALL, &a);
    shmreg_sub *sdp_a = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_SDP_UPDATED), &a);
    shmreg_sub *custom = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL);
    shmreg_sub *a_or_b_life = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_SESSION_CREATED) |
                                               SHMREG_EV_MASK(SHMREG_EV_SESSION_DELETED), NULL);
    shmreg_sub *rooms = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_ROOM_CREATED), NULL);

    shmreg_id c;
    shmreg_session_transition(h, &a, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);  /* state, a */
    shmreg_session_transition(h, &b, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);  /* state */
    shmreg_session_set_sdp(h, &a, SHMREG_SDP_LOCAL, "a", 1);                          /* sdp, a */
    shmreg_session_set_sdp(h, &b, SHMREG_SDP_LOCAL, "b", 1);
    shmreg_session_set_sdp(h, &b, SHMREG_SDP_REMOTE, "b", 1);
    shmreg_publish(h, &a, "for a", 5);                                                /* custom, a */
    shmreg_publish(h, &b, "for b", 5);                                                /* custom */
    shmreg_publish(h, NULL, "for all", 7);                                            /* custom */
    shmreg_session_create(h, NULL, &c);                                               /* life */
    shmreg_dialog_bind(h, S("c1"), S("l1"), S("r1"), &a);                             /* a */
    shmreg_session_transition(h, &a, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);   /* state, a */
    shmreg_session_delete(h, &b);                                                     /* life */
    shmreg_session_delete(h, &c);                                                     /* life */

    shmreg_event e[64];
    int n;
    n = drain(all, e, 64, NULL);
    is(n, 13, "no filter: all 13 events");
    n = drain(states, e, 64, NULL);
    ok(n == 3 && count_type(e, n, SHMREG_EV_STATE_CHANGED) == 3 && test_id_eq(&e[0].session, &a) &&
       test_id_eq(&e[1].session, &b) && test_id_eq(&e[2].session, &a) && e[2].new_state == SHMREG_STATE_ACTIVE,
       "mask state_changed: exactly the 3 transitions (a, b, a), in order");
    n = drain(only_a, e, 64, NULL);
    int all_a = 1;
    for (int i = 0; i < n; i++)
        all_a &= test_id_eq(&e[i].session, &a);
    ok(n == 5 && all_a && e[0].type == SHMREG_EV_STATE_CHANGED && e[1].type == SHMREG_EV_SDP_UPDATED &&
       e[2].type == SHMREG_EV_CUSTOM && e[3].type == SHMREG_EV_DIALOG_BOUND &&
       e[4].type == SHMREG_EV_STATE_CHANGED,
       "session a, any type: exactly its 5 events (state, sdp, custom, dialog, state)");
    n = drain(sdp_a, e, 64, NULL);
    ok(n == 1 && e[0].type == SHMREG_EV_SDP_UPDATED && test_id_eq(&e[0].session, &a) && e[0].which == SHMREG_SDP_LOCAL,
       "sdp_updated of session a: exactly 1");
    n = drain(custom, e, 64, NULL);
    ok(n == 3 && e[0].len == 5 && memcmp(e[0].data, "for a", 5) == 0 && e[1].len == 5 &&
       memcmp(e[1].data, "for b", 5) == 0 && e[2].len == 7 && memcmp(e[2].data, "for all", 7) == 0,
       "mask custom: exactly the 3 custom events, in order");
    n = drain(a_or_b_life, e, 64, NULL);
    ok(n == 3 && e[0].type == SHMREG_EV_SESSION_CREATED && test_id_eq(&e[0].session, &c) &&
       e[1].type == SHMREG_EV_SESSION_DELETED && test_id_eq(&e[1].session, &b) &&
       e[2].type == SHMREG_EV_SESSION_DELETED && test_id_eq(&e[2].session, &c),
       "mask created|deleted: exactly create c, delete b, delete c");
    n = drain(rooms, e, 64, NULL);
    is(n, 0, "mask room_created: nothing");

    shmreg_sub_stats st;
    shmreg_sub_stats_get(states, &st);
    ok(st.delivered == 3 && st.filtered == 10 && st.missed == 0,
       "stats of the state_changed subscription: 3 delivered, 10 filtered out, 0 missed");
    is(st.next_seq, published(h), "... next_seq is the end of the ring");
    shmreg_sub_stats_get(only_a, &st);
    ok(st.delivered == 5 && st.filtered == 8 && st.missed == 0,
       "stats of the session-a subscription: 5 delivered, 8 filtered out");
    shmreg_unsubscribe(all);
    shmreg_unsubscribe(states);
    shmreg_unsubscribe(only_a);
    shmreg_unsubscribe(sdp_a);
    shmreg_unsubscribe(custom);
    shmreg_unsubscribe(a_or_b_life);
    shmreg_unsubscribe(rooms);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ polling */

struct blk_shared {
    shmreg_id session;
    atomic_int ready;
    _Atomic double publishing_at;  /* monotonic time just before the publish */
    atomic_int pid;
};

static struct blk_shared *bs;

static void late_publisher(void *arg)
{
    int mode = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    atomic_store(&bs->ready, 1);
    test_sleep_us(100000);
    if (mode == 1) {
        /* Non-matching events first, then the matching one. */
        for (int i = 0; i < 5; i++)
            shmreg_publish(h, NULL, "noise", 5);
        shmreg_session_transition(h, &bs->session, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    } else if (mode == 2) {
        /* Only non-matching events, every 5 ms for 300 ms. */
        for (int i = 0; i < 60; i++) {
            shmreg_publish(h, NULL, "noise", 5);
            test_sleep_us(5000);
        }
    } else {
        atomic_store(&bs->publishing_at, test_mono_s());
        shmreg_publish(h, NULL, "late", 4);
    }
    shmreg_close(h);
}

static void test_polling(void)
{
    shmreg *h = open_new("ev-poll", 0);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL);

    /* Batches. */
    for (uint32_t i = 0; i < 10; i++)
        shmreg_publish(h, NULL, &i, sizeof i);
    shmreg_event e[8];
    int n1 = shmreg_poll(sub, e, 4, 0, NULL);
    uint32_t v[10], k = 0;
    for (int i = 0; i < n1 && i < 4; i++)
        memcpy(&v[k++], e[i].data, 4);
    int n2 = shmreg_poll(sub, e, 4, 0, NULL);
    for (int i = 0; i < n2 && i < 4; i++)
        memcpy(&v[k++], e[i].data, 4);
    int n3 = shmreg_poll(sub, e, 4, 0, NULL);
    for (int i = 0; i < n3 && i < 4 && k < 10; i++)
        memcpy(&v[k++], e[i].data, 4);
    ok(n1 == 4 && n2 == 4 && n3 == 2, "10 events polled with max 4: batches of 4, 4, 2");
    int inorder = k == 10;
    for (uint32_t i = 0; i < k; i++)
        inorder &= v[i] == i;
    ok(inorder, "... the 10 in publishing order");
    double t0 = test_mono_s();
    is(shmreg_poll(sub, e, 4, 0, NULL), 0, "then, with timeout 0: 0 at once");
    ok(test_mono_s() - t0 < 0.5, "... without waiting");

    /* Blocking: nothing comes. */
    t0 = test_mono_s();
    is(shmreg_poll(sub, e, 4, 50 * 1000000ll, NULL), 0, "a 50 ms timeout with nothing published returns 0");
    ok(test_mono_s() - t0 >= 0.050, "... after at least 50 ms (%.1f ms)", (test_mono_s() - t0) * 1e3);

    /* Blocking: another process publishes after 100 ms. */
    bs = test_shared(sizeof *bs);
    pid_t pid = test_fork(late_publisher, (void *)0);
    while (!atomic_load(&bs->ready))
        sched_yield();
    t0 = test_mono_s();
    uint64_t missed = 99;
    int n = shmreg_poll(sub, e, 4, 5000 * 1000000ll, &missed);
    double woke = test_mono_s();
    is(n, 1, "a poll blocked for up to 5 s returns the event another process publishes 100 ms later");
    ok(n == 1 && e[0].len == 4 && memcmp(e[0].data, "late", 4) == 0 && e[0].pid == pid,
       "... it is that process's 'late' event");
    is(missed, 0, "... nothing missed");
    is(test_wait(pid), 0, "the publisher exited cleanly");
    ok(woke >= atomic_load(&bs->publishing_at) && woke - t0 < 4.0,
       "... the poll returned after the publish, long before its timeout (%.1f ms)", (woke - t0) * 1e3);

    /* Blocking without a timeout. */
    atomic_store(&bs->ready, 0);
    pid = test_fork(late_publisher, (void *)0);
    while (!atomic_load(&bs->ready))
        sched_yield();
    n = shmreg_poll(sub, e, 4, -1, NULL);
    is(n, 1, "a poll with a negative timeout blocks until the event arrives");
    is(test_wait(pid), 0, "... publisher done");

    /* Blocking with a filter: non-matching events do not wake it up early. */
    shmreg_sub *states = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED), NULL);
    bs->session = test_session_new(h);
    atomic_store(&bs->ready, 0);
    pid = test_fork(late_publisher, (void *)1);
    while (!atomic_load(&bs->ready))
        sched_yield();
    n = shmreg_poll(states, e, 4, 5000 * 1000000ll, NULL);
    ok(n == 1 && e[0].type == SHMREG_EV_STATE_CHANGED && test_id_eq(&e[0].session, &bs->session),
       "a filtered blocking poll passes over 5 custom events and returns the state change");
    is(test_wait(pid), 0, "... publisher done");

    atomic_store(&bs->ready, 0);
    pid = test_fork(late_publisher, (void *)2);
    while (!atomic_load(&bs->ready))
        sched_yield();
    t0 = test_mono_s();
    n = shmreg_poll(states, e, 4, 150 * 1000000ll, NULL);
    double took = test_mono_s() - t0;
    is(n, 0, "with only non-matching events arriving, a 150 ms poll returns 0");
    ok(took >= 0.150, "... after at least 150 ms (%.1f ms)", took * 1e3);
    is(test_wait(pid), 0, "... publisher done");
    shmreg_sub_stats st;
    shmreg_sub_stats_get(states, &st);
    ok(st.delivered == 1 && st.filtered >= 5, "its stats: 1 delivered, the custom events filtered (%llu)",
       (unsigned long long)st.filtered);

    shmreg_unsubscribe(states);
    shmreg_unsubscribe(sub);
    munmap(bs, sizeof *bs);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ lapping */

static void test_lapping(void)
{
    shmreg *h = open_new("ev-lap", 64);
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.event_ring_records, 64, "options.event_records = 64: a ring of 64 records");
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    uint64_t p0 = published(h);
    for (uint32_t i = 0; i < 1000; i++)
        shmreg_publish(h, NULL, &i, sizeof i);
    is(published(h) - p0, 1000, "1000 events published while the subscriber did not read");

    uint64_t received = 0, missed = 0, polls = 0;
    uint32_t first = 0, last = 0;
    int inorder = 1;
    for (;;) {
        shmreg_event e[50];
        uint64_t m = 0;
        int n = shmreg_poll(sub, e, 50, 0, &m);
        missed += m;
        if (n <= 0)
            break;
        polls++;
        for (int i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, e[i].data, 4);
            if (received == 0)
                first = v;
            else
                inorder &= v == last + 1;
            last = v;
            received++;
        }
    }
    is(received + missed, 1000, "received (%llu) + missed (%llu) == 1000 exactly",
       (unsigned long long)received, (unsigned long long)missed);
    is(received, 64, "the last ring's worth (64) was still there to receive");
    ok(first == 936 && last == 999 && inorder, "... events 936..999, in order");
    shmreg_sub_stats ss;
    shmreg_sub_stats_get(sub, &ss);
    is(ss.missed, 936, "shmreg_sub_stats_get: missed 936");
    is(ss.delivered, 64, "... delivered 64");
    is(ss.skipped, 0, "... skipped 0 (no producer died)");
    is(ss.next_seq, p0 + 1000, "... next_seq at the end of the ring");

    /* Keeping up afterwards: nothing more is missed. */
    uint64_t m = 99;
    shmreg_event e;
    shmreg_publish(h, NULL, "x", 1);
    ok(shmreg_poll(sub, &e, 1, 0, &m) == 1 && m == 0, "once caught up, the next event arrives with 0 missed");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ producers and subscribers */

#define P_PRODUCERS 4
#define P_EVENTS 20000u
#define P_SUBS 3

struct p_report {
    uint64_t received, missed, skipped, order_errors, foreign, per[P_PRODUCERS];
    int finished;
};

struct p_shared {
    atomic_int ready, go;
    atomic_long ebusy, perr;
    struct p_report sub[P_SUBS];
};

static struct p_shared *ps;

static void producer(void *arg)
{
    uint32_t id = (uint32_t)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    atomic_fetch_add(&ps->ready, 1);
    while (!atomic_load(&ps->go))
        sched_yield();
    for (uint32_t i = 0; i < P_EVENTS; i++) {
        uint32_t d[4] = { 0x45564e54u, id, i, id ^ i ^ 0x5a5a5a5au };
        int rc;
        while ((rc = shmreg_publish(h, NULL, d, sizeof d)) == SHMREG_EBUSY)
            atomic_fetch_add(&ps->ebusy, 1);
        if (rc != 0)
            atomic_fetch_add(&ps->perr, 1);
    }
    shmreg_close(h);
}

static void p_subscriber(void *arg)
{
    int k = (int)(intptr_t)arg;
    struct p_report *r = &ps->sub[k];
    shmreg *h = test_reg_attach();
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL);
    int64_t last[P_PRODUCERS];
    for (int i = 0; i < P_PRODUCERS; i++)
        last[i] = -1;
    atomic_fetch_add(&ps->ready, 1);
    static shmreg_event e[256];
    double deadline = test_mono_s() + 15;
    /* Only custom events are published here, so every sequence number is
     * either received or missed: stop when all 80000 are accounted for. */
    while (r->received + r->missed + r->foreign < (uint64_t)P_PRODUCERS * P_EVENTS && test_mono_s() < deadline) {
        uint64_t m = 0;
        int n = shmreg_poll(sub, e, 256, 50 * 1000000ll, &m);
        r->missed += m;
        for (int i = 0; i < n; i++) {
            uint32_t d[4];
            memcpy(d, e[i].data, sizeof d);
            if (e[i].len != sizeof d || d[0] != 0x45564e54u || d[1] >= P_PRODUCERS ||
                d[3] != (d[1] ^ d[2] ^ 0x5a5a5a5au)) {
                r->foreign++;
                continue;
            }
            if ((int64_t)d[2] != last[d[1]] + 1)
                r->order_errors++;
            last[d[1]] = d[2];
            r->per[d[1]]++;
            r->received++;
        }
    }
    shmreg_sub_stats st;
    shmreg_sub_stats_get(sub, &st);
    r->skipped = st.skipped;
    r->finished = 1;
    shmreg_unsubscribe(sub);
    shmreg_close(h);
}

static void test_many_producers(void)
{
    shmreg *h = open_new("ev-mp", 1u << 17);
    ps = test_shared(sizeof *ps);
    uint64_t p0 = published(h);
    pid_t sp[P_SUBS], pp[P_PRODUCERS];
    for (int k = 0; k < P_SUBS; k++)
        sp[k] = test_fork(p_subscriber, (void *)(intptr_t)k);
    for (int k = 0; k < P_PRODUCERS; k++)
        pp[k] = test_fork(producer, (void *)(intptr_t)k);
    while (atomic_load(&ps->ready) < P_SUBS + P_PRODUCERS)
        sched_yield();
    double t0 = test_mono_s();
    atomic_store(&ps->go, 1);
    int bad = 0;
    for (int k = 0; k < P_PRODUCERS; k++)
        bad += test_wait(pp[k]) != 0;
    for (int k = 0; k < P_SUBS; k++)
        bad += test_wait(sp[k]) != 0;
    diag("4 x 20000 events to 3 subscribers in %.0f ms; %ld EBUSY retries", (test_mono_s() - t0) * 1e3,
         atomic_load(&ps->ebusy));
    is(bad, 0, "4 producer and 3 subscriber processes exited cleanly");
    is(atomic_load(&ps->perr), 0, "no publish failed");
    is(published(h) - p0, (uint64_t)P_PRODUCERS * P_EVENTS + (uint64_t)atomic_load(&ps->ebusy),
       "stat.events_published grew by exactly 80000 (+ the %ld abandoned by EBUSY)", atomic_load(&ps->ebusy));
    for (int k = 0; k < P_SUBS; k++) {
        struct p_report *r = &ps->sub[k];
        int each = 1;
        for (int i = 0; i < P_PRODUCERS; i++)
            each &= r->per[i] == P_EVENTS;
        ok(r->finished, "subscriber %d finished", k);
        if (r->missed)
            diag("subscriber %d: received %llu, missed %llu (of which skipped %llu), order errors %llu", k,
                 (unsigned long long)r->received, (unsigned long long)r->missed,
                 (unsigned long long)r->skipped, (unsigned long long)r->order_errors);
        /* Exactly once even when a producer is descheduled between
         * claiming its sequence number and marking its slot: with 7
         * processes on 2 CPUs that happens, and the subscribers must
         * wait for a live producer rather than skip its record. */
        is(r->received, (uint64_t)P_PRODUCERS * P_EVENTS, "subscriber %d received all 80000", k);
        ok(each, "subscriber %d: exactly 20000 from each producer", k);
        is(r->order_errors, 0, "subscriber %d: each producer's events in order, none twice", k);
        is(r->missed, 0, "subscriber %d: missed none", k);
        is(r->foreign, 0, "subscriber %d: nothing it did not expect", k);
    }
    munmap(ps, sizeof *ps);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ no allocation */

static void test_no_alloc(void)
{
    shmreg *h = open_new("ev-noalloc", 0);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL);
    shmreg_id s = test_session_new(h);
    shmreg_event e;
    shmreg_publish(h, &s, "warm", 4);
    shmreg_poll(sub, &e, 1, 0, NULL);
    note("warm-up done");   /* stdio's buffer is allocated before counting */

    uint64_t p0 = published(h);
    int fails = 0;
    alloc_count_start();
    for (uint32_t i = 0; i < 1000; i++)
        fails += shmreg_publish(h, &s, &i, sizeof i) != 0;
    uint64_t pub_allocs = alloc_count_stop();
    is(pub_allocs, 0, "1000 shmreg_publish calls allocate nothing");
    is(fails, 0, "... all succeeded");
    is(published(h) - p0, 1000, "stat.events_published grew by exactly 1000");

    int got = 0;
    alloc_count_start();
    for (int i = 0; i < 1000; i++)
        got += shmreg_poll(sub, &e, 1, 0, NULL);
    uint64_t poll_allocs = alloc_count_stop();
    is(poll_allocs, 0, "1000 shmreg_poll calls allocate nothing");
    is(got, 1000, "... and delivered the 1000 events, one per call");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ after fork */

struct fork_shared { int poll_rc, publish_rc, stats_rc; };

static struct fork_shared *fk;
static shmreg *fork_h;
static shmreg_sub *fork_sub;

static void forked_child(void *arg)
{
    (void)arg;
    shmreg_event e;
    fk->poll_rc = shmreg_poll(fork_sub, &e, 1, 0, NULL);
    fk->publish_rc = shmreg_publish(fork_h, NULL, "child", 5);
    shmreg_sub_stats st;
    fk->stats_rc = shmreg_sub_stats_get(fork_sub, &st);
}

static void test_after_fork(void)
{
    fork_h = open_new("ev-fork", 0);
    fork_sub = test_subscribe(fork_h, SHMREG_EV_ALL, NULL);
    fk = test_shared(sizeof *fk);
    shmreg_publish(fork_h, NULL, "parent", 6);
    uint64_t p0 = published(fork_h);
    pid_t pid = test_fork(forked_child, NULL);
    is(test_wait(pid), 0, "a child used the parent's handle and subscription");
    is(fk->poll_rc, SHMREG_EFORK, "shmreg_poll on a subscription made before fork: SHMREG_EFORK in the child");
    is(fk->publish_rc, SHMREG_EFORK, "shmreg_publish on the parent's handle: SHMREG_EFORK in the child");
    is(published(fork_h), p0, "the child published nothing");
    shmreg_event e;
    ok(shmreg_poll(fork_sub, &e, 1, 0, NULL) == 1 && e.len == 6 && memcmp(e.data, "parent", 6) == 0,
       "in the parent the subscription still works and was not advanced by the child");
    shmreg_unsubscribe(fork_sub);
    munmap(fk, sizeof *fk);
    test_reg_destroy(fork_h);
}

int main(void)
{
    test_watchdog_install();   /* TEST_RUN: a deadlock fails the test, naming its section */
    TEST_RUN(test_names_and_arguments);
    TEST_RUN(test_registry_events);
    TEST_RUN(test_config_event);
    TEST_RUN(test_sdp_not_copied);
    TEST_RUN(test_filters);
    TEST_RUN(test_polling);
    TEST_RUN(test_lapping);
    TEST_RUN(test_many_producers);
    TEST_RUN(test_no_alloc);
    TEST_RUN(test_after_fork);
    alarm(0);
    return done_testing();
}
