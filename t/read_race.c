/*
 * read_race.c — views read while what they show is deleted and made again.
 *
 * A getter finds a session (or room) by checking its state word live, then
 * builds the view. If it loads the word a second time for the view, a
 * delete landing in between hands out state 128 (REG_DELETED), for which
 * shmreg_state_name() is NULL. This test provokes exactly that: forked
 * churners delete and re-create a few sessions and rooms without pause,
 * so that every ID a reader looks up is about to die, while forked readers
 * call every getter and iterator on them in a loop (session get/next,
 * session_dialog, dialog_next, room get/next, participant_next). Most
 * gets aim at the ID a churner deletes next (it says which in shared
 * memory): the race lives at the moment of a delete. On the registry
 * before the fix this found 10 to 57 views of state 128 per run (6 runs).
 *
 * Every view is checked: its state or status is a real one (in range, with
 * a name), every string lies inside the segment's heap with a length its
 * kind allows, and the strings are one version written by a churner
 * (from/to/SDP, room name, participant URI/display name, dialog key all
 * derive from one number). Bounded twice: RUN_S seconds and a round cap.
 * Readers count every check in shared memory; the parent asserts no bad
 * view and that checks were made at all, and notes the exact counts.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "reg.h"
#include "tap.h"
#include "testutil.h"

#define NS 4            /* churned sessions */
#define NR 2            /* churned rooms */
#define NREADERS 2
#define RUN_S 2.5
#define MAX_ROUNDS 2000000u
#define ROOM_MAX 4u

enum { C_SGET, C_SNEXT, C_SDLG, C_DNEXT, C_RGET, C_RNEXT, C_PART, C_ENOENT, C_BAD_STATE,
       C_BAD_STR, C_BAD_RC, C_ROUNDS, C_COUNT };
static const char *const cname[C_COUNT] = {
    "session_get views", "session_next views", "session_dialog views", "dialog_next views",
    "room_get views", "room_next views", "participant views", "ENOENT answers",
    "bad states", "bad strings", "unexpected codes", "reader rounds"};

struct shared {
    _Atomic uint64_t sid[NS][2], rid[NR][2];
    _Atomic unsigned next_s, next_r;   /* the index a churner deletes next */
    _Atomic int stop;
    _Atomic uint64_t churned_sessions, churned_rooms;
    _Atomic uint64_t c[C_COUNT];
};

static struct shared *sh;
static const char *path;
static const shmreg_options opts = {.flags = SHMREG_CREATE, .max_sessions = 256,
                                    .max_rooms = 32, .event_records = 1024};

static shmreg_str SS(const char *s) { return (shmreg_str){s, strlen(s)}; }

static void put_id(_Atomic uint64_t w[2], const shmreg_id *id)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    atomic_store(&w[0], a);
    atomic_store(&w[1], b);
}

/* A torn read gives an ID nobody has: the getter answers ENOENT. */
static shmreg_id get_id(_Atomic uint64_t w[2])
{
    shmreg_id id;
    uint64_t a = atomic_load(&w[0]), b = atomic_load(&w[1]);
    memcpy(id.bytes, &a, 8);
    memcpy(id.bytes + 8, &b, 8);
    return id;
}

static int over(double t0)
{
    return atomic_load(&sh->stop) || test_mono_s() - t0 > RUN_S;
}

/* ------------------------------------------------------------ churners */

/* Session n: from "sip:X", to "sip:to-X", local SDP "sdp-X", dialog
 * ("call-X", "lt", "rt"), with X = "s<n>@x". */
static int make_session(shmreg *h, unsigned n, shmreg_id *id)
{
    char x[32], from[48], to[48], sdp[48], cid[48];
    snprintf(x, sizeof x, "s%u@x", n);
    snprintf(from, sizeof from, "sip:%s", x);
    snprintf(to, sizeof to, "sip:to-%s", x);
    snprintf(sdp, sizeof sdp, "sdp-%s", x);
    snprintf(cid, sizeof cid, "call-%s", x);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = SS(from);
    f.str[SHMREG_FIELD_TO_URI] = SS(to);
    int rc = shmreg_session_create(h, &f, id);
    if (rc == 0)
        rc = shmreg_session_set_sdp(h, id, SHMREG_SDP_LOCAL, sdp, strlen(sdp));
    if (rc == 0)
        rc = shmreg_dialog_bind(h, SS(cid), SS("lt"), SS("rt"), id);
    return rc;
}

static void churn_sessions(void *arg)
{
    (void)arg;
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    double t0 = test_mono_s();
    static const int walk[] = {SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD,
                               SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING};
    unsigned n = 0;
    for (; n < MAX_ROUNDS && !over(t0); n++) {
        unsigned i = n % NS;
        atomic_store(&sh->next_s, i);
        shmreg_id old = get_id(sh->sid[i]), id;
        int rc = shmreg_session_delete(h, &old);
        if (rc != 0 && rc != SHMREG_ENOENT)
            _exit(3);
        while ((rc = make_session(h, n, &id)) == SHMREG_EFULL)
            test_sleep_us(100); /* retired slots wait for readers */
        if (rc != 0)
            _exit(4);
        /* Some states in between, so views meet more than one. */
        for (unsigned k = 0; k < n % 6 && k < sizeof walk / sizeof walk[0]; k++)
            if (shmreg_session_transition(h, &id, SHMREG_STATE_ANY, walk[k], NULL) != 0)
                _exit(5);
        put_id(sh->sid[i], &id);
    }
    atomic_store(&sh->churned_sessions, n);
    shmreg_close(h);
}

/* Room n: name "room-<n>", one participant: a session of its own
 * ("sip:p<n>@x"), URI "sip:P<n>", display name "P<n>". */
static void churn_rooms(void *arg)
{
    (void)arg;
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    double t0 = test_mono_s();
    shmreg_id member[NR];
    int have[NR] = {0};
    unsigned n = 0;
    for (; n < MAX_ROUNDS && !over(t0); n++) {
        unsigned i = n % NR;
        atomic_store(&sh->next_r, i);
        shmreg_id old = get_id(sh->rid[i]), id, s;
        int rc = shmreg_room_delete(h, &old);
        if (rc != 0 && rc != SHMREG_ENOENT)
            _exit(3);
        if (have[i] && shmreg_session_delete(h, &member[i]) != 0)
            _exit(4);
        have[i] = 0;
        char name[32], uri[48], disp[32];
        snprintf(name, sizeof name, "room-%u", n);
        snprintf(disp, sizeof disp, "P%u", n);
        snprintf(uri, sizeof uri, "sip:%s", disp);
        while ((rc = shmreg_room_create(h, SS(name), ROOM_MAX, &id)) == SHMREG_EFULL)
            test_sleep_us(100);
        if (rc != 0)
            _exit(5);
        if (n % 2 && shmreg_room_transition(h, &id, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL))
            _exit(6);
        shmreg_fields f = {0};
        f.str[SHMREG_FIELD_FROM_URI] = SS(uri);
        f.str[SHMREG_FIELD_TO_URI] = SS(uri);
        while ((rc = shmreg_session_create(h, &f, &s)) == SHMREG_EFULL)
            test_sleep_us(100);
        if (rc != 0 || shmreg_room_join(h, &id, &s, SS(uri), SS(disp), 4000) != 0)
            _exit(7);
        member[i] = s;
        have[i] = 1;
        put_id(sh->rid[i], &id);
    }
    atomic_store(&sh->churned_rooms, n);
    shmreg_close(h);
}

/* ------------------------------------------------------------ checks */

static const unsigned char *heap_lo, *heap_hi;

/* Inside the heap (where every block lies) with a length its kind
 * allows; an empty string may point anywhere. */
static int in_heap(shmreg_str s, size_t max)
{
    if (s.len > max || (s.len && s.ptr == NULL))
        return 0;
    const unsigned char *p = (const unsigned char *)s.ptr;
    return s.len == 0 || (p >= heap_lo && p < heap_hi && (size_t)(heap_hi - p) >= s.len);
}

/* `s` is `prefix` followed by `rest`. */
static int is_cat(shmreg_str s, const char *prefix, shmreg_str rest)
{
    size_t pl = strlen(prefix);
    return s.len == pl + rest.len && memcmp(s.ptr, prefix, pl) == 0 &&
           (rest.len == 0 || memcmp(s.ptr + pl, rest.ptr, rest.len) == 0);
}

static void bad(int kind, const char *what, long v)
{
    static int shown;
    atomic_fetch_add(&sh->c[kind], 1);
    if (shown++ < 5)
        diag("reader %d: %s (%ld)", (int)getpid(), what, v);
}

static void check_session(const shmreg_session *v)
{
    if (v->state < SHMREG_STATE_INITIATING || v->state >= SHMREG_STATE_COUNT ||
        shmreg_state_name(v->state) == NULL)
        bad(C_BAD_STATE, "session view with a state that is none", v->state);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        if (!in_heap(v->str[i], i == SHMREG_FIELD_APP_DATA ? SHMREG_MAX_APPDATA : SHMREG_MAX_STR))
            bad(C_BAD_STR, "session string outside the heap or too long", (long)i);
    for (unsigned i = 0; i < 2; i++)
        if (!in_heap(v->sdp[i], SHMREG_MAX_SDP))
            bad(C_BAD_STR, "SDP outside the heap or too long", (long)i);
    shmreg_str from = v->str[SHMREG_FIELD_FROM_URI];
    if (from.len < 5 || memcmp(from.ptr, "sip:", 4) != 0) {
        bad(C_BAD_STR, "from is not sip:...", (long)from.len);
        return;
    }
    shmreg_str x = {from.ptr + 4, from.len - 4};
    /* Room members carry to == from; churned sessions to = "sip:to-X". */
    if (!is_cat(v->str[SHMREG_FIELD_TO_URI], "sip:to-", x) &&
        !is_cat(v->str[SHMREG_FIELD_TO_URI], "sip:", x))
        bad(C_BAD_STR, "to is of another version than from", (long)v->str[SHMREG_FIELD_TO_URI].len);
    if (v->sdp[SHMREG_SDP_LOCAL].len && !is_cat(v->sdp[SHMREG_SDP_LOCAL], "sdp-", x))
        bad(C_BAD_STR, "local SDP of another session", (long)v->sdp[SHMREG_SDP_LOCAL].len);
    if (v->ndialogs > SHMREG_MAX_DIALOGS_PER_SESSION)
        bad(C_BAD_STR, "ndialogs over the limit", (long)v->ndialogs);
}

static void check_dialog(const shmreg_dialog *d)
{
    if (!in_heap(d->call_id, SHMREG_MAX_STR) || !in_heap(d->local_tag, SHMREG_MAX_STR) ||
        !in_heap(d->remote_tag, SHMREG_MAX_STR) || d->call_id.len < 6 ||
        memcmp(d->call_id.ptr, "call-s", 6) != 0 || !is_cat(d->local_tag, "lt", SS("")) ||
        !is_cat(d->remote_tag, "rt", SS("")))
        bad(C_BAD_STR, "dialog key outside the heap or not a churner's", (long)d->call_id.len);
}

static void check_room(const shmreg_room *r)
{
    if (r->state < SHMREG_ROOM_CREATING || r->state >= SHMREG_ROOM_STATE_COUNT ||
        shmreg_room_state_name(r->state) == NULL)
        bad(C_BAD_STATE, "room view with a state that is none", r->state);
    if (!in_heap(r->name, SHMREG_MAX_STR) || r->name.len < 6 || memcmp(r->name.ptr, "room-", 5) != 0)
        bad(C_BAD_STR, "room name outside the heap or not a churner's", (long)r->name.len);
    if (r->max_participants != ROOM_MAX || r->participants > r->max_participants)
        bad(C_BAD_STR, "room capacity or count out of range", (long)r->participants);
}

static void check_part(const shmreg_participant *p)
{
    if (p->status < SHMREG_PART_JOINING || p->status >= SHMREG_PART_STATUS_COUNT ||
        shmreg_part_status_name(p->status) == NULL)
        bad(C_BAD_STATE, "participant with a status that is none", p->status);
    if (!in_heap(p->uri, SHMREG_MAX_STR) || !in_heap(p->display_name, SHMREG_MAX_STR) ||
        !is_cat(p->uri, "sip:", p->display_name) || (p->audio_active != 0 && p->audio_active != 1))
        bad(C_BAD_STR, "participant strings outside the heap or of two versions", (long)p->uri.len);
}

/* An answer other than a view: ENOENT is the only one allowed. */
static void answer(int rc)
{
    if (rc == SHMREG_ENOENT)
        atomic_fetch_add(&sh->c[C_ENOENT], 1);
    else if (rc != 0)
        bad(C_BAD_RC, "unexpected return code", rc);
}

static void reader(void *arg)
{
    (void)arg;
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    heap_lo = h->c.seg.base + h->c.seg.off_heap;
    heap_hi = h->c.seg.base + h->c.seg.size;
    uint64_t c[C_COUNT] = {0}; /* local tallies: the shared adds come at the end */
    double t0 = test_mono_s();
    for (unsigned round = 0; round < MAX_ROUNDS && !over(t0); round++) {
        c[C_ROUNDS]++;
        shmreg_read_begin(h);
        /* Most gets aim at the IDs about to be deleted: the race is at the
         * moment of the delete, so that is where the getters must be. */
        for (unsigned k = 0; k < 16; k++) {
            shmreg_id id = get_id(sh->sid[atomic_load(&sh->next_s)]);
            shmreg_id rid = get_id(sh->rid[atomic_load(&sh->next_r)]);
            shmreg_session v;
            shmreg_room r;
            int rc = shmreg_session_get(h, &id, &v);
            if (rc == 0) {
                c[C_SGET]++;
                check_session(&v);
            }
            answer(rc);
            if ((rc = shmreg_room_get(h, &rid, &r)) == 0) {
                c[C_RGET]++;
                check_room(&r);
            }
            answer(rc);
        }
        for (unsigned i = 0; i < NS; i++) {
            shmreg_id id = get_id(sh->sid[i]);
            shmreg_session v;
            shmreg_dialog d;
            int rc = shmreg_session_get(h, &id, &v);
            if (rc == 0) {
                c[C_SGET]++;
                check_session(&v);
                if (memcmp(&v.id, &id, sizeof id) != 0)
                    bad(C_BAD_STR, "session_get gave another session", 0);
            }
            answer(rc);
            if ((rc = shmreg_session_dialog(h, &id, 0, &d)) == 0) {
                c[C_SDLG]++;
                check_dialog(&d);
            }
            answer(rc);
        }
        for (unsigned i = 0; i < NR; i++) {
            shmreg_id id = get_id(sh->rid[i]);
            shmreg_room r;
            shmreg_participant p;
            int rc = shmreg_room_get(h, &id, &r);
            if (rc == 0) {
                c[C_RGET]++;
                check_room(&r);
            }
            answer(rc);
            uint64_t cur = 0;
            while ((rc = shmreg_participant_next(h, &id, &cur, &p)) == 0) {
                c[C_PART]++;
                check_part(&p);
            }
            answer(rc);
        }
        if (round % 32 == 0) { /* the walks cost more: now and then */
            uint64_t cur = 0;
            shmreg_session v;
            shmreg_dialog d;
            shmreg_room r;
            int rc;
            while ((rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v)) == 0) {
                c[C_SNEXT]++;
                check_session(&v);
            }
            answer(rc);
            for (cur = 0; (rc = shmreg_dialog_next(h, &cur, &d)) == 0;) {
                c[C_DNEXT]++;
                check_dialog(&d);
            }
            answer(rc);
            for (cur = 0; (rc = shmreg_room_next(h, &cur, &r)) == 0;) {
                c[C_RNEXT]++;
                check_room(&r);
            }
            answer(rc);
        }
        shmreg_read_end(h);
    }
    for (int k = 0; k < C_COUNT; k++)
        atomic_fetch_add(&sh->c[k], c[k]);
    shmreg_close(h);
}

int main(void)
{
    sh = test_shared(sizeof *sh);
    path = test_dir("read_race");
    shmreg *h;
    if (shmreg_open(path, &opts, &h) != 0)
        bail_out("cannot create the registry: %s", shmreg_errmsg());

    pid_t pid[2 + NREADERS];
    pid[0] = test_fork(churn_sessions, NULL);
    pid[1] = test_fork(churn_rooms, NULL);
    for (int i = 0; i < NREADERS; i++)
        pid[2 + i] = test_fork(reader, NULL);
    int st[2 + NREADERS];
    for (int i = 0; i < 2 + NREADERS; i++) {
        st[i] = test_wait(pid[i]);
        if (st[i] != 0)
            atomic_store(&sh->stop, 1); /* one died: the others stop too */
    }
    is(st[0], 0, "the session churner ran to its end");
    is(st[1], 0, "the room churner ran to its end");
    for (int i = 0; i < NREADERS; i++)
        is(st[2 + i], 0, "reader %d ran to its end", i);

    uint64_t c[C_COUNT];
    for (int k = 0; k < C_COUNT; k++) {
        c[k] = atomic_load(&sh->c[k]);
        note("%s: %llu", cname[k], (unsigned long long)c[k]);
    }
    note("churned: %llu sessions, %llu rooms", (unsigned long long)atomic_load(&sh->churned_sessions),
         (unsigned long long)atomic_load(&sh->churned_rooms));
    is(c[C_BAD_STATE], 0, "every view's state or status is a real one");
    is(c[C_BAD_STR], 0, "every string lies in the heap, within its limit, of one version");
    is(c[C_BAD_RC], 0, "every failed lookup was ENOENT");
    ok(c[C_SGET] > 0 && c[C_SNEXT] > 0 && c[C_SDLG] > 0 && c[C_DNEXT] > 0 && c[C_RGET] > 0 &&
       c[C_RNEXT] > 0 && c[C_PART] > 0 && c[C_ENOENT] > 0,
       "every getter and iterator returned views, and lookups met deleted IDs");
    ok(atomic_load(&sh->churned_sessions) > NS && atomic_load(&sh->churned_rooms) > NR,
       "the churners replaced every session and room at least once");

    shmreg_check_report rep;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "the registry checks clean afterwards");
    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
