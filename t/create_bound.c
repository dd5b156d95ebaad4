/*
 * create_bound.c — shmreg_session_create_bound: a new call created already
 * bound to its dialog, in one step.
 *
 * Why it matters: a retransmitted INVITE that reaches another worker must
 * not make a second call. With create then bind, two workers can both
 * create and one bind loses, leaving an orphan session (or worse, a
 * window in which the dialog finds nothing). create_bound tests the key
 * and publishes the session with it under the key's stripe lock, so this
 * test holds the library to the contract in shmreg.h, with exact values:
 *  - a create with fields and both SDPs reads back whole (version 1,
 *    Initiating, one dialog), the key finds it, session_dialog shows the
 *    key, and exactly one event is published: session_created (no
 *    dialog_bound);
 *  - the same key again, or a key bound by shmreg_dialog_bind, is
 *    SHMREG_EEXIST with *id_out the bound session's ID; nothing is
 *    created (session count, heap use and the event ring unchanged);
 *    an early-dialog key (empty remote tag) is a key of its own;
 *  - every refusal (NULL id_out, empty or NULL or over-long Call-ID, a
 *    tag with a length but no bytes, an over-long field or SDP) is
 *    SHMREG_EINVAL and leaves *id_out, the table and the ring untouched;
 *  - a deleted session frees its key for a new create_bound;
 *  - across processes: 8 forked workers race create_bound on the same
 *    200 keys, and for each key exactly one wins and every loser is told
 *    the winner's ID; the registry then holds exactly 200 sessions and
 *    200 dialogs;
 *  - a full session table is SHMREG_EFULL and leaves the key unbound;
 *  - a heap with room for the session's record but not for the dialog
 *    record is SHMREG_EFULL at the dialog, after the session was built,
 *    and still leaves *id_out, the counts and the key as they were (a
 *    first version wrote *id_out there);
 *  - shmreg_check finds no problem after each of these.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })
static const shmreg_str NOSTR = { NULL, 0 };


static int check_clean(shmreg *h)
{
    shmreg_check_report r;
    memset(&r, 0xff, sizeof r);
    int rc = shmreg_check(h, 0, &r, NULL, NULL, NULL);
    if (rc != 0 || r.problems != 0)
        diag("check: %s, %llu problems", shmreg_strerror(rc), (unsigned long long)r.problems);
    return rc == 0 && r.problems == 0;
}

/* 1 when `got` is exactly the `want` bytes; else a diagnostic naming it. */
static int same_str(const char *what, shmreg_str got, shmreg_str want)
{
    if (got.len == want.len && (want.len == 0 || (got.ptr && memcmp(got.ptr, want.ptr, want.len) == 0)))
        return 1;
    diag("%s: %zu bytes '%.*s', want %zu bytes '%.*s'", what, got.len,
         (int)(got.len < 40 ? got.len : 40), got.ptr ? got.ptr : "", want.len,
         (int)(want.len < 40 ? want.len : 40), want.ptr ? want.ptr : "");
    return 0;
}

/* The session a key finds (rc of dialog_find; *out untouched on error). */
static int find(shmreg *h, shmreg_str cid, shmreg_str lt, shmreg_str rt, shmreg_id *out)
{
    return shmreg_dialog_find(h, cid, lt, rt, out);
}

/* 1 when `key` finds exactly session `want`. */
static int finds(shmreg *h, shmreg_str cid, shmreg_str lt, shmreg_str rt, const shmreg_id *want)
{
    shmreg_id got;
    memset(&got, 0, sizeof got);
    int rc = find(h, cid, lt, rt, &got);
    if (rc != 0) {
        diag("dialog_find: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
        return 0;
    }
    if (!test_id_eq(&got, want)) {
        diag("dialog_find found another session");
        return 0;
    }
    return 1;
}


static const char SDP_L[] = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                            "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
static const char SDP_R[] = "v=0\r\no=bob 7 7 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\n"
                            "t=0 0\r\nm=audio 5004 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n";

/* ------------------------------------------------------------ 1-2: create, same key again */

static void test_create(void)
{
    shmreg *h = test_reg_small("cb-create", 0);
    test_fieldbuf fb;
    test_fields_fill(&fb, "one", 4000);
    shmreg_str sdp[2] = { S(SDP_L), S(SDP_R) };
    fb.f.sdp = sdp;
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);

    shmreg_id id;
    memset(&id, 0, sizeof id);
    is(shmreg_session_create_bound(h, &fb.f, S("call-1@host"), S("lt-1"), S("rt-1"), &id), 0,
       "create_bound with every field and both SDPs");

    shmreg_session v;
    shmreg_dialog d;
    int good = 1, rc, drc;
    shmreg_read_begin(h);
    rc = shmreg_session_get(h, &id, &v);
    if (rc == 0) {
        char what[32];
        for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
            snprintf(what, sizeof what, "field %u", i);
            good &= same_str(what, v.str[i], fb.f.str[i]);
        }
        good &= v.local_rtp_port == 4000 && v.remote_rtp_port == 4001;
        good &= same_str("local SDP", v.sdp[SHMREG_SDP_LOCAL], S(SDP_L));
        good &= same_str("remote SDP", v.sdp[SHMREG_SDP_REMOTE], S(SDP_R));
        good &= test_id_eq(&v.id, &id);
    }
    drc = shmreg_session_dialog(h, &id, 0, &d);
    int dgood = drc == 0 && same_str("call_id", d.call_id, S("call-1@host")) &&
                same_str("local_tag", d.local_tag, S("lt-1")) &&
                same_str("remote_tag", d.remote_tag, S("rt-1")) && test_id_eq(&d.session, &id);
    int d1rc = shmreg_session_dialog(h, &id, 1, &d);
    shmreg_read_end(h);
    is(rc, 0, "session_get finds it");
    ok(rc == 0 && good, "every field, both ports and both SDPs read back byte for byte");
    is(rc == 0 ? (long long)v.version : -1, 1, "version 1");
    is(rc == 0 ? v.state : -1, SHMREG_STATE_INITIATING, "state Initiating");
    is(rc == 0 ? (long long)v.ndialogs : -1, 1, "ndialogs 1");
    ok(dgood, "session_dialog(0) shows the key (call-1@host, lt-1, rt-1) and the session");
    is(d1rc, SHMREG_ENOENT, "and there is no second dialog");
    ok(finds(h, S("call-1@host"), S("lt-1"), S("rt-1"), &id), "dialog_find of the key returns its ID");
    ok(finds(h, S("call-1@host"), S("lt-1"), NOSTR, &id), "and so does the early-dialog lookup (remote tag NULL)");

    shmreg_event ev[8];
    int n = test_drain_events(sub, ev, 8);
    is(n, 1, "exactly one event");
    is(n >= 1 ? ev[0].type : 0, SHMREG_EV_SESSION_CREATED, "session_created (no dialog_bound)");
    ok(n >= 1 && test_id_eq(&ev[0].session, &id) && ev[0].new_state == SHMREG_STATE_INITIATING,
       "about the new session, new_state Initiating");
    shmreg_stats st = test_stats(h);
    is(st.sessions, 1, "one session");
    is(st.dialogs, 1, "one dialog");

    /* 2: the same key again, with and without fields. */
    for (int withf = 0; withf < 2; withf++) {
        test_fieldbuf fb2;
        test_fields_fill(&fb2, "two", 6000);
        shmreg_stats before = test_stats(h);
        shmreg_id again;
        memset(&again, 0xab, sizeof again);
        is(shmreg_session_create_bound(h, withf ? &fb2.f : NULL, S("call-1@host"), S("lt-1"),
                                       S("rt-1"), &again),
           SHMREG_EEXIST, "the same key again (%s): SHMREG_EEXIST", withf ? "with fields" : "f NULL");
        ok(memcmp(again.bytes, id.bytes, SHMREG_ID_BYTES) == 0, "*id_out is the first session's ID");
        shmreg_stats after = test_stats(h);
        is(after.sessions, before.sessions, "session count unchanged");
        is(after.dialogs, before.dialogs, "dialog count unchanged");
        if (after.heap_used_bytes != before.heap_used_bytes)
            diag("heap used %llu -> %llu (retired %llu -> %llu)",
                 (unsigned long long)before.heap_used_bytes, (unsigned long long)after.heap_used_bytes,
                 (unsigned long long)before.heap_retired_bytes,
                 (unsigned long long)after.heap_retired_bytes);
        is(after.heap_used_bytes, before.heap_used_bytes, "heap_used_bytes unchanged");
        is(test_drain_events(sub, ev, 8), 0, "no event");
    }
    is(test_session_version(h, &id), 1, "the first session is untouched: still version 1");
    shmreg_read_begin(h);
    rc = shmreg_session_get(h, &id, &v);
    ok(rc == 0 && same_str("codec", v.str[SHMREG_FIELD_CODEC], fb.f.str[SHMREG_FIELD_CODEC]) &&
           v.local_rtp_port == 4000 && v.ndialogs == 1,
       "and keeps its own fields and its one dialog");
    shmreg_read_end(h);
    shmreg_unsubscribe(sub);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 3: keys bound by dialog_bind; early dialogs */

static void test_bound_by_bind(void)
{
    shmreg *h = test_reg_small("cb-bind", 0);
    shmreg_id b;
    is(shmreg_session_create(h, NULL, &b), 0, "session B made with shmreg_session_create");
    is(shmreg_dialog_bind(h, S("call-b"), S("lt-b"), S("rt-b"), &b), 0, "its dialog bound with dialog_bind");
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_stats before = test_stats(h);
    shmreg_id got;
    memset(&got, 0xab, sizeof got);
    is(shmreg_session_create_bound(h, NULL, S("call-b"), S("lt-b"), S("rt-b"), &got), SHMREG_EEXIST,
       "create_bound of that key: SHMREG_EEXIST");
    ok(memcmp(got.bytes, b.bytes, SHMREG_ID_BYTES) == 0, "*id_out is B's ID");
    shmreg_stats after = test_stats(h);
    ok(after.sessions == before.sessions && after.dialogs == before.dialogs,
       "nothing created (%u sessions, %u dialogs)", after.sessions, after.dialogs);
    shmreg_event ev[8];
    is(test_drain_events(sub, ev, 8), 0, "no event");
    /* The other order: a key create_bound bound is refused by dialog_bind. */
    shmreg_id c;
    is(shmreg_session_create_bound(h, NULL, S("call-c"), S("lt-c"), S("rt-c"), &c), 0,
       "create_bound of another key");
    is(shmreg_dialog_bind(h, S("call-c"), S("lt-c"), S("rt-c"), &b), SHMREG_EEXIST,
       "dialog_bind of that key to B: SHMREG_EEXIST");
    ok(finds(h, S("call-c"), S("lt-c"), S("rt-c"), &c), "the key still finds its own session");

    /* Early dialog: an empty remote tag is a key of its own. */
    shmreg_id e, f, g;
    memset(&g, 0xab, sizeof g);
    is(shmreg_session_create_bound(h, NULL, S("call-e"), S("lt-e"), S(""), &e), 0,
       "create_bound with an empty remote tag (early dialog)");
    is(shmreg_session_create_bound(h, NULL, S("call-e"), S("lt-e"), S("rt-e"), &f), 0,
       "create_bound of the same Call-ID and local tag with a remote tag: another key");
    ok(!test_id_eq(&e, &f), "two different sessions");
    ok(finds(h, S("call-e"), S("lt-e"), S(""), &e), "the empty-tag key finds the early one");
    ok(finds(h, S("call-e"), S("lt-e"), S("rt-e"), &f), "the tagged key finds the other");
    is(shmreg_session_create_bound(h, NULL, S("call-e"), S("lt-e"), NOSTR, &g), SHMREG_EEXIST,
       "a remote tag {NULL, 0} is the empty tag when creating: SHMREG_EEXIST");
    ok(test_id_eq(&g, &e), "with the early session's ID");
    is(test_drain_events(sub, ev, 8), 3, "three events for the three sessions created");
    after = test_stats(h);
    is(after.sessions, 4, "4 sessions");
    is(after.dialogs, 4, "4 dialogs");
    shmreg_unsubscribe(sub);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 4: refusals */

static void test_refused(void)
{
    shmreg *h = test_reg_small("cb-refused", 0);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_stats before = test_stats(h);
    char *big = malloc(SHMREG_MAX_SDP + 2);
    if (big == NULL)
        bail_out("out of memory");
    memset(big, 'x', SHMREG_MAX_SDP + 2);
    shmreg_str longstr = { big, SHMREG_MAX_STR + 1 };
    static const unsigned char AB[SHMREG_ID_BYTES] = {
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab,
        0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab};
    shmreg_id id;

    is(shmreg_session_create_bound(h, NULL, S("call-r"), S("lt"), S("rt"), NULL), SHMREG_EINVAL,
       "NULL id_out: SHMREG_EINVAL");
    is(find(h, S("call-r"), S("lt"), S("rt"), &id), SHMREG_ENOENT, "and the key is not bound");

    struct {
        const char *what;
        shmreg_str cid, lt, rt;
    } keys[] = {
        { "empty Call-ID", { "", 0 }, S("lt"), S("rt") },
        { "NULL Call-ID", { NULL, 0 }, S("lt"), S("rt") },
        { "Call-ID {NULL, 6}", { NULL, 6 }, S("lt"), S("rt") },
        { "Call-ID of SHMREG_MAX_STR+1 bytes", longstr, S("lt"), S("rt") },
        { "local tag of SHMREG_MAX_STR+1 bytes", S("call-r"), longstr, S("rt") },
        { "remote tag of SHMREG_MAX_STR+1 bytes", S("call-r"), S("lt"), longstr },
        { "local tag {NULL, 3}", S("call-r"), { NULL, 3 }, S("rt") },
        { "remote tag {NULL, 3}", S("call-r"), S("lt"), { NULL, 3 } },
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        memset(&id, 0xab, sizeof id);
        is(shmreg_session_create_bound(h, NULL, keys[i].cid, keys[i].lt, keys[i].rt, &id), SHMREG_EINVAL,
           "%s: SHMREG_EINVAL", keys[i].what);
        ok(memcmp(id.bytes, AB, SHMREG_ID_BYTES) == 0, "*id_out unchanged");
    }

    test_fieldbuf fb;
    test_fields_fill(&fb, "r", 7000);
    fb.f.str[SHMREG_FIELD_CODEC] = longstr;
    memset(&id, 0xab, sizeof id);
    is(shmreg_session_create_bound(h, &fb.f, S("call-r"), S("lt"), S("rt"), &id), SHMREG_EINVAL,
       "a field of SHMREG_MAX_STR+1 bytes: SHMREG_EINVAL");
    ok(memcmp(id.bytes, AB, SHMREG_ID_BYTES) == 0, "*id_out unchanged");

    test_fields_fill(&fb, "r", 7000);
    fb.f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ big, SHMREG_MAX_APPDATA + 1 };
    memset(&id, 0xab, sizeof id);
    is(shmreg_session_create_bound(h, &fb.f, S("call-r"), S("lt"), S("rt"), &id), SHMREG_EINVAL,
       "app data of SHMREG_MAX_APPDATA+1 bytes: SHMREG_EINVAL");
    ok(memcmp(id.bytes, AB, SHMREG_ID_BYTES) == 0, "*id_out unchanged");

    test_fields_fill(&fb, "r", 7000);
    shmreg_str sdp[2] = { S(SDP_L), { big, SHMREG_MAX_SDP + 1 } };
    fb.f.sdp = sdp;
    memset(&id, 0xab, sizeof id);
    is(shmreg_session_create_bound(h, &fb.f, S("call-r"), S("lt"), S("rt"), &id), SHMREG_EINVAL,
       "a remote SDP of SHMREG_MAX_SDP+1 bytes via f->sdp: SHMREG_EINVAL");
    ok(memcmp(id.bytes, AB, SHMREG_ID_BYTES) == 0, "*id_out unchanged");

    sdp[1] = (shmreg_str){ NULL, 10 };
    memset(&id, 0xab, sizeof id);
    is(shmreg_session_create_bound(h, &fb.f, S("call-r"), S("lt"), S("rt"), &id), SHMREG_EINVAL,
       "an SDP {NULL, 10} via f->sdp: SHMREG_EINVAL");
    ok(memcmp(id.bytes, AB, SHMREG_ID_BYTES) == 0, "*id_out unchanged");

    shmreg_stats after = test_stats(h);
    is(after.sessions, 0, "no session created");
    is(after.dialogs, 0, "no dialog bound");
    is(after.heap_used_bytes, before.heap_used_bytes, "heap use unchanged");
    is(find(h, S("call-r"), S("lt"), S("rt"), &id), SHMREG_ENOENT, "the key call-r/lt/rt is not bound");
    shmreg_event ev[8];
    is(test_drain_events(sub, ev, 8), 0, "no event");

    /* The largest key parts allowed are accepted. */
    shmreg_str max = { big, SHMREG_MAX_STR };
    shmreg_id m;
    is(shmreg_session_create_bound(h, NULL, max, max, max, &m), 0,
       "key parts of exactly SHMREG_MAX_STR bytes are accepted");
    ok(finds(h, max, max, max, &m), "and found");
    free(big);
    shmreg_unsubscribe(sub);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 5: delete frees the key */

static void test_delete_frees(void)
{
    shmreg *h = test_reg_small("cb-delete", 0);
    shmreg_id a, b, c;
    is(shmreg_session_create_bound(h, NULL, S("call-d"), S("lt"), S("rt"), &a), 0, "create_bound");
    is(shmreg_session_delete(h, &a), 0, "delete the session");
    is(find(h, S("call-d"), S("lt"), S("rt"), &c), SHMREG_ENOENT, "its key finds nothing");
    is(test_stats(h).dialogs, 0, "no dialog left");
    memset(&b, 0, sizeof b);
    is(shmreg_session_create_bound(h, NULL, S("call-d"), S("lt"), S("rt"), &b), 0,
       "create_bound of the key again succeeds");
    ok(!test_id_eq(&a, &b), "with a new ID");
    ok(finds(h, S("call-d"), S("lt"), S("rt"), &b), "dialog_find returns the new one");
    shmreg_stats st = test_stats(h);
    ok(st.sessions == 1 && st.dialogs == 1, "1 session, 1 dialog (%u, %u)", st.sessions, st.dialogs);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 6: the race */

#define RACERS 8
#define KEYS 200

typedef struct race {
    atomic_int ready;
    int rc[RACERS][KEYS];
    shmreg_id id[RACERS][KEYS];
} race;

static race *R;

static void key_of(int k, char *cid, char *lt, char *rt, size_t cap)
{
    snprintf(cid, cap, "race-%03d@host.example", k);
    snprintf(lt, cap, "lt-%d", k * 7);
    snprintf(rt, cap, "rt-%d", k * 13);
}

static void racer(void *arg)
{
    int me = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    atomic_fetch_add(&R->ready, 1);
    while (atomic_load(&R->ready) < RACERS)
        sched_yield();
    for (int j = 0; j < KEYS; j++) {
        int k = (j + me * (KEYS / RACERS)) % KEYS;
        if (me & 1)
            k = KEYS - 1 - k; /* half of them walk backwards */
        char cid[64], lt[32], rt[32];
        key_of(k, cid, lt, rt, sizeof lt);
        test_fieldbuf fb;
        test_fields_fill(&fb, cid, (uint16_t)(10000 + k));
        memset(&R->id[me][k], 0, sizeof R->id[me][k]);
        R->rc[me][k] = shmreg_session_create_bound(h, &fb.f, test_ss(cid), test_ss(lt), test_ss(rt),
                                                   &R->id[me][k]);
    }
    shmreg_close(h);
}

static void test_race(void)
{
    shmreg *h = test_reg_new("cb-race", 1024, 0, 0);
    R = test_shared(sizeof *R);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    pid_t pid[RACERS];
    for (int i = 0; i < RACERS; i++)
        pid[i] = test_fork(racer, (void *)(intptr_t)i);
    int exits = 0;
    for (int i = 0; i < RACERS; i++)
        exits += test_wait(pid[i]) == 0;
    is(exits, RACERS, "%d racers exited cleanly", RACERS);

    int winners = 0, one_winner = 0, losers_right = 0, other_rc = 0, found_right = 0, views = 0;
    for (int k = 0; k < KEYS; k++) {
        int w = -1, nw = 0;
        for (int i = 0; i < RACERS; i++) {
            if (R->rc[i][k] == 0) {
                nw++;
                w = i;
            } else if (R->rc[i][k] != SHMREG_EEXIST) {
                other_rc++;
                diag("key %d racer %d: %s", k, i, shmreg_strerror(R->rc[i][k]));
            }
        }
        winners += nw;
        if (nw != 1) {
            diag("key %d: %d winners", k, nw);
            continue;
        }
        one_winner++;
        const shmreg_id *wid = &R->id[w][k];
        int right = 1;
        for (int i = 0; i < RACERS; i++)
            if (R->rc[i][k] == SHMREG_EEXIST && !test_id_eq(&R->id[i][k], wid)) {
                right = 0;
                diag("key %d: racer %d was told another ID than the winner's", k, i);
            }
        losers_right += right;
        char cid[64], lt[32], rt[32];
        key_of(k, cid, lt, rt, sizeof lt);
        found_right += finds(h, test_ss(cid), test_ss(lt), test_ss(rt), wid);
        shmreg_session v;
        shmreg_read_begin(h);
        char want[64];
        int wn = snprintf(want, sizeof want, "call-id-%s", cid);
        if (shmreg_session_get(h, wid, &v) == 0 && v.ndialogs == 1 && v.version == 1 &&
            v.local_rtp_port == 10000 + k &&
            same_str("Call-ID field", v.str[SHMREG_FIELD_CALL_ID], (shmreg_str){ want, (size_t)wn }))
            views++;
        shmreg_read_end(h);
    }
    char spread[128];
    size_t sl = 0;
    for (int i = 0; i < RACERS; i++) {
        int w = 0;
        for (int k = 0; k < KEYS; k++)
            w += R->rc[i][k] == 0;
        sl += (size_t)snprintf(spread + sl, sizeof spread - sl, " %d", w);
    }
    note("keys won by each racer:%s", spread);
    is(other_rc, 0, "no return code other than 0 and SHMREG_EEXIST");
    is(winners, KEYS, "%d winners in all", KEYS);
    is(one_winner, KEYS, "exactly one winner for each key");
    is(losers_right, KEYS, "every SHMREG_EEXIST reply names that key's winner");
    is(found_right, KEYS, "every key finds its winner");
    is(views, KEYS, "every winner reads back: version 1, one dialog, its own port and Call-ID field");
    shmreg_stats st = test_stats(h);
    is(st.sessions, KEYS, "the registry holds exactly %d sessions", KEYS);
    is(st.dialogs, KEYS, "and exactly %d dialogs", KEYS);

    static shmreg_event ev[KEYS + 16];
    int n = test_drain_events(sub, ev, KEYS + 16);
    int created = 0, others = 0;
    for (int i = 0; i < n && i < KEYS + 16; i++) {
        if (ev[i].type == SHMREG_EV_SESSION_CREATED)
            created++;
        else
            others++;
    }
    is(created, KEYS, "%d session_created events", KEYS);
    is(others, 0, "and no other event (no dialog_bound, no delete of a loser)");
    shmreg_unsubscribe(sub);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 7: full table */

static void test_full(void)
{
    shmreg *h = test_reg_small("cb-full", 0);
    uint32_t max = test_stats(h).max_sessions;
    shmreg_id ids[256];
    if (max > 256)
        bail_out("max_sessions %u", max);
    int made = 0;
    for (uint32_t i = 0; i < max; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "fill-%u", i);
        made += shmreg_session_create_bound(h, NULL, test_ss(cid), S("lt"), S("rt"), &ids[i]) == 0;
    }
    is(made, (int)max, "the table filled with %u sessions by create_bound", max);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_stats before = test_stats(h);
    shmreg_id id;
    memset(&id, 0xab, sizeof id);
    shmreg_id ab = id;
    is(shmreg_session_create_bound(h, NULL, S("call-full"), S("lt"), S("rt"), &id), SHMREG_EFULL,
       "one more: SHMREG_EFULL");
    ok(test_id_eq(&id, &ab), "*id_out unchanged");
    is(find(h, S("call-full"), S("lt"), S("rt"), &id), SHMREG_ENOENT, "the key is not bound");
    shmreg_stats after = test_stats(h);
    ok(after.sessions == before.sessions && after.dialogs == before.dialogs &&
           after.heap_used_bytes == before.heap_used_bytes,
       "sessions, dialogs and heap use unchanged");
    shmreg_event ev[8];
    is(test_drain_events(sub, ev, 8), 0, "no event");
    is(shmreg_session_delete(h, &ids[5]), 0, "delete one session");
    memset(&id, 0, sizeof id);
    is(shmreg_session_create_bound(h, NULL, S("call-full"), S("lt"), S("rt"), &id), 0,
       "now create_bound of the key succeeds");
    ok(finds(h, S("call-full"), S("lt"), S("rt"), &id), "and the key finds it");
    is(find(h, S("fill-5"), S("lt"), S("rt"), &ab), SHMREG_ENOENT, "the deleted session's key is gone");
    after = test_stats(h);
    ok(after.sessions == max && after.dialogs == max, "%u sessions, %u dialogs", after.sessions,
       after.dialogs);
    shmreg_unsubscribe(sub);
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

/* A heap with no room for the dialog record: the refusal comes after the
 * session was built, and still leaves *id_out, the counts and the check
 * as they were. */
static void test_heap_full(void)
{
    shmreg *h = test_reg_small("cbound-heap", 8u * 256u * 1024u);
    static char big[SHMREG_MAX_SDP], key[SHMREG_MAX_STR];
    memset(big, 's', sizeof big);
    memset(key, 'k', sizeof key);
    shmreg_str sdp[2] = {{big, sizeof big}, {big, sizeof big}}, K = {key, sizeof key};
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.sdp = sdp;
    shmreg_id id;
    /* A small session first: its page of small blocks keeps room for a
     * small record once the big ones have taken every other page, while
     * no page is left for a 3 KiB dialog record. */
    is(shmreg_session_create(h, NULL, &id), 0, "a small session");
    int n = 0;
    while (shmreg_session_create(h, &f, &id) == 0)
        n++;
    ok(n > 0, "heap filled by %d sessions with two 64 KiB SDPs", n);
    shmreg_stats before = test_stats(h);
    memset(&id, 0xab, sizeof id);
    is(shmreg_session_create_bound(h, NULL, K, K, K, &id), SHMREG_EFULL,
       "no room for the dialog record (3 parts of %u bytes): SHMREG_EFULL", SHMREG_MAX_STR);
    ok(strstr(shmreg_errmsg(), "dialog record") != NULL,
       "refused at the dialog record, after the session was built (%s)", shmreg_errmsg());
    int same = 1;
    for (int i = 0; i < SHMREG_ID_BYTES; i++)
        same &= id.bytes[i] == 0xab;
    ok(same, "*id_out is unchanged");
    shmreg_stats after = test_stats(h);
    ok(after.sessions == before.sessions && after.dialogs == before.dialogs &&
       after.heap_used_bytes == before.heap_used_bytes,
       "sessions %u, dialogs %u, heap used %llu: as before", after.sessions, after.dialogs,
       (unsigned long long)after.heap_used_bytes);
    shmreg_id got;
    is(shmreg_dialog_find(h, K, K, K, &got), SHMREG_ENOENT, "the key is not bound");
    ok(check_clean(h), "check: 0 problems");
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_create);
    TEST_RUN(test_bound_by_bind);
    TEST_RUN(test_refused);
    TEST_RUN(test_delete_frees);
    TEST_RUN(test_race);
    TEST_RUN(test_full);
    TEST_RUN(test_heap_full);
    alarm(0);
    return done_testing();
}
