/*
 * room.c — conference rooms and their rosters, read in place, in one
 * process.
 *
 * A room has a random 128-bit ID, a name, a state that moves along a fixed
 * table (Creating -> Active <-> Locked -> Terminating -> Terminated), a
 * maximum number of participants, its creation time and the configuration
 * generation it was created under. Its roster lists participants: a
 * session, its URI and display name and RTP port (written once at join),
 * and a status and an audio flag that change in place. A session is in at
 * most one room at a time; a refused join changes nothing.
 *
 * Several processes at once: t/room_concurrent.c; processes killed with
 * SIGKILL: t/room_crash_roster.c and t/room_crash.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

/* ------------------------------------------------------------ helpers */

/* The room's state, or the error of room_get. */
static int room_state(shmreg *h, const shmreg_id *room)
{
    shmreg_room v;
    shmreg_read_begin(h);
    int rc = shmreg_room_get(h, room, &v);
    shmreg_read_end(h);
    return rc ? rc : v.state;
}

/* Rooms listed by shmreg_room_next. */
static int count_rooms(shmreg *h)
{
    shmreg_room v;
    uint64_t cur = 0;
    int n = 0;
    shmreg_read_begin(h);
    while (shmreg_room_next(h, &cur, &v) == 0)
        n++;
    shmreg_read_end(h);
    return n;
}

/* ------------------------------------------------------------ roster snapshots */

static int member_same(const test_member *a, const test_member *b)
{
    return test_id_eq(&a->session, &b->session) && a->uri_len == b->uri_len &&
           memcmp(a->uri, b->uri, a->uri_len) == 0 && a->disp_len == b->disp_len &&
           memcmp(a->disp, b->disp, a->disp_len) == 0 && a->status == b->status &&
           a->audio == b->audio && a->port == b->port && a->joined_ns == b->joined_ns;
}

static int roster_same(const test_roster *a, const test_roster *b)
{
    if (a->rc != b->rc || a->state != b->state || a->max != b->max ||
        a->participants != b->participants || a->n != b->n)
        return 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (!member_same(&a->m[i], &b->m[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------ events */

/* Drain a subscription (non-blocking) into ev[]; returns the count. */
struct want_ev {
    uint32_t type;
    const shmreg_id *room, *session;
    int old_state, new_state;
};

static const shmreg_id zero_id;

/* Every field of each event as the header documents it: the type's own
 * fields exact, every other field zero, published by this process now. */
static void events_are(shmreg_sub *sub, const struct want_ev *want, int n, uint64_t t0,
                       const char *what)
{
    shmreg_event got[64];
    int m = test_drain_events(sub, got, 64);
    is(m, n, "%s: exactly %d events arrive", what, n);
    uint64_t t1 = test_now_ns();
    for (int i = 0; i < n && i < m; i++) {
        const shmreg_event *e = &got[i];
        const struct want_ev *w = &want[i];
        const shmreg_id *room = w->room ? w->room : &zero_id;
        const shmreg_id *sess = w->session ? w->session : &zero_id;
        char why[400] = "";
        size_t o = 0;
#define EV_DIFF(cond, ...) \
        if (!(cond)) o += (size_t)snprintf(why + o, o < sizeof why ? sizeof why - o : 0, __VA_ARGS__)
        EV_DIFF(e->type == w->type, " type %u (want %u)", e->type, w->type);
        EV_DIFF(test_id_eq(&e->room, room), " room differs");
        EV_DIFF(test_id_eq(&e->session, sess), " session differs");
        EV_DIFF(e->old_state == w->old_state, " old_state %d (want %d)", e->old_state, w->old_state);
        EV_DIFF(e->new_state == w->new_state, " new_state %d (want %d)", e->new_state, w->new_state);
        EV_DIFF(e->which == 0 && e->config_gen == 0 && e->len == 0, " which/config_gen/len not zero");
        EV_DIFF(e->pid == (int32_t)getpid(), " pid %d (want %d)", (int)e->pid, (int)getpid());
        EV_DIFF(e->time_ns >= t0 && e->time_ns <= t1, " time_ns outside the script");
        EV_DIFF(i == 0 || e->seq > got[i - 1].seq, " seq not increasing");
#undef EV_DIFF
        ok(why[0] == 0, "%s: event %d is %s with exactly the documented fields", what, i + 1,
           shmreg_event_name(w->type));
        if (why[0])
            diag("   event %d:%s", i + 1, why);
    }
}

/* ------------------------------------------------------------ the tables */

static const char *room_tos(int from)
{
    static char buf[128];
    buf[0] = 0;
    for (int to = -1; to <= SHMREG_ROOM_STATE_COUNT; to++)
        if (shmreg_room_state_allowed(from, to)) {
            const char *n = shmreg_room_state_name(to);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? " " : "",
                     n ? n : "?");
        }
    return buf;
}

static const char *part_tos(int from)
{
    static char buf[128];
    buf[0] = 0;
    for (int to = -1; to <= SHMREG_PART_STATUS_COUNT; to++)
        if (shmreg_part_status_allowed(from, to)) {
            const char *n = shmreg_part_status_name(to);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", buf[0] ? " " : "",
                     n ? n : "?");
        }
    return buf;
}

static void test_tables(void)
{
    is_str(shmreg_room_state_name(SHMREG_ROOM_ANY), "Any", "room state 0 is named Any");
    is_str(shmreg_room_state_name(SHMREG_ROOM_CREATING), "Creating", "room state names: Creating");
    is_str(shmreg_room_state_name(SHMREG_ROOM_ACTIVE), "Active", "room state names: Active");
    is_str(shmreg_room_state_name(SHMREG_ROOM_LOCKED), "Locked", "room state names: Locked");
    is_str(shmreg_room_state_name(SHMREG_ROOM_TERMINATING), "Terminating", "room state names: Terminating");
    is_str(shmreg_room_state_name(SHMREG_ROOM_TERMINATED), "Terminated", "room state names: Terminated");
    ok(shmreg_room_state_name(6) == NULL && shmreg_room_state_name(-1) == NULL,
       "an unknown room state has no name");
    is_str(shmreg_part_status_name(SHMREG_PART_JOINING), "Joining", "status names: Joining");
    is_str(shmreg_part_status_name(SHMREG_PART_ACTIVE), "Active", "status names: Active");
    is_str(shmreg_part_status_name(SHMREG_PART_ONHOLD), "OnHold", "status names: OnHold");
    is_str(shmreg_part_status_name(SHMREG_PART_MUTED), "Muted", "status names: Muted");
    is_str(shmreg_part_status_name(SHMREG_PART_LEAVING), "Leaving", "status names: Leaving");
    is_str(shmreg_part_status_name(SHMREG_PART_LEFT), "Left", "status names: Left");
    ok(shmreg_part_status_name(7) == NULL && shmreg_part_status_name(-1) == NULL,
       "an unknown status has no name");

    /* Every (from, to) pair, -1..COUNT on both sides, against the table. */
    is_str(room_tos(-1), "", "room table: nothing leaves state -1");
    is_str(room_tos(SHMREG_ROOM_ANY), "", "room table: nothing leaves Any (it is not a state)");
    is_str(room_tos(SHMREG_ROOM_CREATING), "Active", "room table: Creating -> Active only");
    is_str(room_tos(SHMREG_ROOM_ACTIVE), "Locked Terminating", "room table: Active -> Locked, Terminating");
    is_str(room_tos(SHMREG_ROOM_LOCKED), "Active Terminating", "room table: Locked -> Active, Terminating");
    is_str(room_tos(SHMREG_ROOM_TERMINATING), "Terminated", "room table: Terminating -> Terminated only");
    is_str(room_tos(SHMREG_ROOM_TERMINATED), "", "room table: Terminated is final");
    is_str(room_tos(SHMREG_ROOM_STATE_COUNT), "", "room table: nothing leaves an unknown state");

    /* "move freely among Joining .. Leaving and to Left; Left is final":
     * any other status, never the same one, never back from Left. */
    is_str(part_tos(SHMREG_PART_ANY), "", "status table: nothing leaves Any");
    is_str(part_tos(SHMREG_PART_JOINING), "Active OnHold Muted Leaving Left", "status table: from Joining");
    is_str(part_tos(SHMREG_PART_ACTIVE), "Joining OnHold Muted Leaving Left", "status table: from Active");
    is_str(part_tos(SHMREG_PART_ONHOLD), "Joining Active Muted Leaving Left", "status table: from OnHold");
    is_str(part_tos(SHMREG_PART_MUTED), "Joining Active OnHold Leaving Left", "status table: from Muted");
    is_str(part_tos(SHMREG_PART_LEAVING), "Joining Active OnHold Muted Left", "status table: from Leaving");
    is_str(part_tos(SHMREG_PART_LEFT), "", "status table: Left is final");
    is_str(part_tos(SHMREG_PART_STATUS_COUNT), "", "status table: nothing leaves an unknown status");
}

/* Bring a fresh room to `state` along legal transitions. */
static shmreg_id room_in_state(shmreg *h, int state)
{
    static const int path[][4] = {
        [SHMREG_ROOM_CREATING] = { 0 },
        [SHMREG_ROOM_ACTIVE] = { SHMREG_ROOM_ACTIVE, 0 },
        [SHMREG_ROOM_LOCKED] = { SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, 0 },
        [SHMREG_ROOM_TERMINATING] = { SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING, 0 },
        [SHMREG_ROOM_TERMINATED] = { SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING,
                                     SHMREG_ROOM_TERMINATED, 0 },
    };
    shmreg_id r = test_room_new(h, "path", 4);
    for (int i = 0; path[state][i]; i++)
        if (shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, path[state][i], NULL) != 0)
            bail_out("cannot bring a room to %s: %s", shmreg_room_state_name(state), shmreg_errmsg());
    return r;
}

static void test_transitions(void)
{
    shmreg *h = test_reg_new("room-trans", 64, 0, 64);
    const char *const nm[] = { "Any", "Creating", "Active", "Locked", "Terminating", "Terminated" };

    for (int from = SHMREG_ROOM_CREATING; from <= SHMREG_ROOM_TERMINATED; from++)
        for (int to = SHMREG_ROOM_CREATING; to <= SHMREG_ROOM_TERMINATED; to++) {
            shmreg_id r = room_in_state(h, from);
            int old = -1, rc = shmreg_room_transition(h, &r, from, to, &old);
            int allowed = shmreg_room_state_allowed(from, to);
            is(rc, allowed ? 0 : SHMREG_ESTATE, "transition %s -> %s: %s", nm[from], nm[to],
               allowed ? "done" : "SHMREG_ESTATE");
            ok(old == from && room_state(h, &r) == (allowed ? to : from),
               "transition %s -> %s: *old is %s, the room is now %s", nm[from], nm[to], nm[from],
               nm[allowed ? to : from]);
            shmreg_room_delete(h, &r);
        }

    /* Compare-and-set: an expected state that is not the current one. */
    for (int from = SHMREG_ROOM_CREATING; from <= SHMREG_ROOM_TERMINATED; from++) {
        shmreg_id r = room_in_state(h, from);
        int expect = from == SHMREG_ROOM_ACTIVE ? SHMREG_ROOM_LOCKED : SHMREG_ROOM_ACTIVE;
        int to = from == SHMREG_ROOM_CREATING ? SHMREG_ROOM_ACTIVE : SHMREG_ROOM_TERMINATING;
        int old = -1;
        is(shmreg_room_transition(h, &r, expect, to, &old), SHMREG_ECONFLICT,
           "expecting %s of a %s room: SHMREG_ECONFLICT", nm[expect], nm[from]);
        ok(old == from && room_state(h, &r) == from, "... *old is %s and nothing changed", nm[from]);
        shmreg_room_delete(h, &r);
    }

    /* SHMREG_ROOM_ANY as expected: whatever the state, the table decides. */
    shmreg_id r = test_room_new(h, "any", 4);
    int old = -1;
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, &old), 0,
       "expecting Any: Creating -> Active");
    is(old, SHMREG_ROOM_CREATING, "... *old is Creating");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_CREATING, &old), SHMREG_ESTATE,
       "expecting Any: Active -> Creating is still refused");
    is(old, SHMREG_ROOM_ACTIVE, "... *old is Active");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_LOCKED, NULL), 0,
       "old may be NULL");

    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, 0, NULL), SHMREG_EINVAL,
       "to Any (0): SHMREG_EINVAL");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_STATE_COUNT, NULL), SHMREG_EINVAL,
       "to an unknown state: SHMREG_EINVAL");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_STATE_COUNT, SHMREG_ROOM_ACTIVE, NULL), SHMREG_EINVAL,
       "expecting an unknown state: SHMREG_EINVAL");
    is(shmreg_room_transition(h, &r, -1, SHMREG_ROOM_ACTIVE, NULL), SHMREG_EINVAL,
       "expecting state -1: SHMREG_EINVAL");
    is(shmreg_room_transition(h, NULL, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL), SHMREG_EINVAL,
       "NULL room: SHMREG_EINVAL");
    is(room_state(h, &r), SHMREG_ROOM_LOCKED, "none of those changed the room");
    shmreg_id nope;
    memset(&nope, 0x5a, sizeof nope);
    is(shmreg_room_transition(h, &nope, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, &old), SHMREG_ENOENT,
       "a room that does not exist: SHMREG_ENOENT");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ creating rooms */

static void test_create(void)
{
    shmreg *h = test_reg_new("room-create", 64, 0, 32);
    shmreg_sub *sub = NULL;
    is(shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_ROOM_CREATED), NULL, &sub), 0,
       "subscribed to room_created");

    uint64_t g0 = shmreg_config_gen(h);
    uint64_t t0 = test_now_ns();
    shmreg_id a;
    is(shmreg_room_create(h, S("Daily standup"), 8, &a), 0, "create a room of 8 named 'Daily standup'");
    uint64_t t1 = test_now_ns();
    shmreg_room v;
    is(shmreg_room_get(h, &a, &v), SHMREG_ENOREAD, "reading a room outside a read section: SHMREG_ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_room_get(h, &a, &v), 0, "read it in place");
    ok(test_id_eq(&v.id, &a), "its ID is the one create returned");
    is(v.state, SHMREG_ROOM_CREATING, "it starts in Creating");
    ok(test_str_is(v.name, "Daily standup", 13), "its name, byte for byte");
    is(v.max_participants, 8, "max participants 8");
    is(v.participants, 0, "no participants yet");
    ok(v.created_ns >= t0 && v.created_ns <= t1, "created time is the moment of create (realtime ns)");
    is(v.config_gen, g0, "config generation at create: %llu", (unsigned long long)g0);
    shmreg_read_end(h);

    /* The generation is the one current at create, kept afterwards. */
    int crc = shmreg_config_set(h, "media", "media.ptime", "30");
    int created = 1;
    if (crc != 0) {
        skip(3, "configs not usable here: %s (%s)", shmreg_strerror(crc), shmreg_errmsg());
    } else {
        uint64_t g1 = shmreg_config_gen(h);
        ok(g1 > g0, "a config write bumps the generation (%llu -> %llu)", (unsigned long long)g0,
           (unsigned long long)g1);
        shmreg_id b = test_room_new(h, "after", 2);
        shmreg_read_begin(h);
        shmreg_room_get(h, &b, &v);
        is(v.config_gen, g1, "a room created after it records generation %llu", (unsigned long long)g1);
        shmreg_room_get(h, &a, &v);
        is(v.config_gen, g0, "the earlier room still records %llu", (unsigned long long)g0);
        shmreg_read_end(h);
        shmreg_room_delete(h, &b);
        created++;
    }

    /* IDs are random and distinct. */
    shmreg_id ids[31];
    ids[0] = a;
    int distinct = 1, nonzero = 1;
    for (int i = 1; i < 31; i++) {
        char name[32];
        snprintf(name, sizeof name, "room %d", i);
        ids[i] = test_room_new(h, name, 2);
        nonzero &= !test_id_eq(&ids[i], &zero_id);
        for (int j = 0; j < i; j++)
            distinct &= !test_id_eq(&ids[i], &ids[j]);
    }
    created += 30;
    ok(distinct && nonzero, "31 rooms have 31 distinct, non-zero 128-bit IDs");
    is(count_rooms(h), 31, "room_next lists the 31 rooms");
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.rooms, 31, "stat: 31 rooms in use");
    is(st.max_rooms, 32, "stat: capacity 32 (options.max_rooms = 32)");
    shmreg_id last;
    is(shmreg_room_create(h, S("32nd"), 2, &last), 0, "the 32nd room fits");
    shmreg_id extra;
    is(shmreg_room_create(h, S("33rd"), 2, &extra), SHMREG_EFULL, "the 33rd: SHMREG_EFULL");
    is(shmreg_room_delete(h, &last), 0, "delete one");
    is(shmreg_room_create(h, S("33rd"), 2, &extra), 0, "now it fits");
    shmreg_room_delete(h, &extra);
    created += 2;

    /* Drain what we have so far, then check that refusals publish nothing. */
    shmreg_event evs[64];
    is(test_drain_events(sub, evs, 64), created, "room_created was published once per room created (%d)", created);

    shmreg_stat(h, &st);
    int before = count_rooms(h);
    char big[SHMREG_MAX_STR + 1];
    memset(big, 'n', sizeof big);
    shmreg_id x;
    is(shmreg_room_create(h, (shmreg_str){ big, SHMREG_MAX_STR + 1 }, 4, &x), SHMREG_EINVAL,
       "a name of %u bytes: SHMREG_EINVAL", SHMREG_MAX_STR + 1);
    is(shmreg_room_create(h, S("zero"), 0, &x), SHMREG_EINVAL, "max_participants 0: SHMREG_EINVAL");
    is(shmreg_room_create(h, S("huge"), SHMREG_MAX_ROOM_PARTICIPANTS + 1, &x), SHMREG_EINVAL,
       "max_participants %u: SHMREG_EINVAL", SHMREG_MAX_ROOM_PARTICIPANTS + 1);
    is(shmreg_room_create(h, S("no out"), 4, NULL), SHMREG_EINVAL, "NULL room_out: SHMREG_EINVAL");
    is(shmreg_room_create(h, (shmreg_str){ NULL, 3 }, 4, &x), SHMREG_EINVAL,
       "a NULL name with a length: SHMREG_EINVAL");
    is(count_rooms(h), before, "none of those created a room");
    shmreg_stats st2;
    shmreg_stat(h, &st2);
    is(st2.rooms, st.rooms, "... stat agrees");
    is(test_drain_events(sub, evs, 64), 0, "... and none published room_created");

    /* The limits themselves are accepted. */
    shmreg_id y;
    ok(shmreg_room_create(h, (shmreg_str){ big, SHMREG_MAX_STR }, SHMREG_MAX_ROOM_PARTICIPANTS, &y) == 0,
       "a name of exactly %u bytes and %u participants are accepted", SHMREG_MAX_STR,
       SHMREG_MAX_ROOM_PARTICIPANTS);
    shmreg_read_begin(h);
    ok(shmreg_room_get(h, &y, &v) == 0 && test_str_is(v.name, big, SHMREG_MAX_STR) &&
       v.max_participants == SHMREG_MAX_ROOM_PARTICIPANTS && v.participants == 0,
       "... and read back exactly");
    shmreg_read_end(h);
    shmreg_room_delete(h, &y);
    shmreg_id empty;
    is(shmreg_room_create(h, (shmreg_str){ NULL, 0 }, 1, &empty), 0, "an empty name and a room of 1");
    shmreg_read_begin(h);
    ok(shmreg_room_get(h, &empty, &v) == 0 && v.name.len == 0 && v.max_participants == 1,
       "... read back: name of 0 bytes, max 1");
    shmreg_id nope;
    memset(&nope, 0xa5, sizeof nope);
    is(shmreg_room_get(h, &nope, &v), SHMREG_ENOENT, "an unknown room ID: SHMREG_ENOENT");
    is(shmreg_room_get(h, NULL, &v), SHMREG_EINVAL, "NULL room: SHMREG_EINVAL");
    shmreg_read_end(h);

    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ joining and leaving */

static void test_join_leave(void)
{
    shmreg *h = test_reg_new("room-join", 64, 0, 32);
    shmreg_id s[8];
    for (int i = 0; i < 8; i++)
        s[i] = test_session_new(h);
    shmreg_id r = test_room_new(h, "main", 4), r2 = test_room_new(h, "other", 4);
    test_roster *a = malloc(sizeof *a), *b = malloc(sizeof *b), *c = malloc(sizeof *c);

    /* A room in Creating accepts joins. */
    uint64_t t0 = test_now_ns();
    is(shmreg_room_join(h, &r, &s[0], S("sip:alice@example.com"), S("Alice"), 40000), 0,
       "join Alice to a room in Creating");
    uint64_t t1 = test_now_ns();
    test_roster_take(h, &r, a);
    is(a->n, 1, "the roster lists one participant");
    is(a->participants, 1, "the room counts one");
    const test_member *m = a->n ? &a->m[0] : NULL;
    ok(m && test_id_eq(&m->session, &s[0]), "... it is Alice's session");
    ok(m && m->uri_len == 21 && memcmp(m->uri, "sip:alice@example.com", 21) == 0, "... her URI, exactly");
    ok(m && m->disp_len == 5 && memcmp(m->disp, "Alice", 5) == 0, "... her display name, exactly");
    is(m ? m->status : -1, SHMREG_PART_JOINING, "... status Joining");
    is(m ? m->audio : -1, 0, "... audio inactive");
    is(m ? m->port : 0, 40000, "... RTP port 40000");
    ok(m && m->joined_ns >= t0 && m->joined_ns <= t1, "... joined time is the moment of join");
    is(test_session_room_is(h, &s[0], &r), 0, "session_room names the room");

    /* One room at a time. */
    test_roster_take(h, &r2, b);
    is(shmreg_room_join(h, &r, &s[0], S("sip:again@x"), S("Again"), 1), SHMREG_EEXIST,
       "joining the same room again: SHMREG_EEXIST");
    is(shmreg_room_join(h, &r2, &s[0], S("sip:again@x"), S("Again"), 1), SHMREG_EEXIST,
       "joining a second room: SHMREG_EEXIST");
    test_roster_take(h, &r, c);
    ok(roster_same(a, c), "... the first roster is unchanged");
    test_roster *d = malloc(sizeof *d);
    test_roster_take(h, &r2, d);
    ok(roster_same(b, d) && d->n == 0, "... the second room is still empty");
    is(test_session_room_is(h, &s[0], &r), 0, "... and the session is still in the first");

    /* Missing room or session. */
    shmreg_id ghost;
    memset(&ghost, 0x77, sizeof ghost);
    is(shmreg_room_join(h, &r, &ghost, S("sip:ghost@x"), S("Ghost"), 1), SHMREG_ENOENT,
       "joining a session that does not exist: SHMREG_ENOENT");
    is(shmreg_room_join(h, &ghost, &s[1], S("sip:bob@x"), S("Bob"), 1), SHMREG_ENOENT,
       "joining a room that does not exist: SHMREG_ENOENT");
    is(test_session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "... Bob is in no room");
    test_roster_take(h, &r, c);
    ok(roster_same(a, c), "... the roster is unchanged");

    /* Over-long strings. */
    char big[SHMREG_MAX_STR + 1];
    memset(big, 'u', sizeof big);
    is(shmreg_room_join(h, &r, &s[1], (shmreg_str){ big, SHMREG_MAX_STR + 1 }, S("Bob"), 1), SHMREG_EINVAL,
       "a URI of %u bytes: SHMREG_EINVAL", SHMREG_MAX_STR + 1);
    is(shmreg_room_join(h, &r, &s[1], S("sip:bob@x"), (shmreg_str){ big, SHMREG_MAX_STR + 1 }, 1),
       SHMREG_EINVAL, "a display name of %u bytes: SHMREG_EINVAL", SHMREG_MAX_STR + 1);
    is(shmreg_room_join(h, &r, &s[1], (shmreg_str){ NULL, 4 }, S("Bob"), 1), SHMREG_EINVAL,
       "a NULL URI with a length: SHMREG_EINVAL");
    is(shmreg_room_join(h, NULL, &s[1], S("sip:bob@x"), S("Bob"), 1), SHMREG_EINVAL, "NULL room: SHMREG_EINVAL");
    is(shmreg_room_join(h, &r, NULL, S("sip:bob@x"), S("Bob"), 1), SHMREG_EINVAL, "NULL session: SHMREG_EINVAL");
    test_roster_take(h, &r, c);
    ok(roster_same(a, c), "... none of those changed the roster");
    is(test_session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "... and Bob is still in no room");
    is(shmreg_room_join(h, &r, &s[1], (shmreg_str){ big, SHMREG_MAX_STR },
                        (shmreg_str){ big, SHMREG_MAX_STR }, 5060), 0,
       "a URI and a display name of exactly %u bytes are accepted", SHMREG_MAX_STR);
    test_roster_take(h, &r, c);
    m = test_roster_find(c, &s[1]);
    ok(m && m->uri_len == SHMREG_MAX_STR && memcmp(m->uri, big, SHMREG_MAX_STR) == 0 &&
       m->disp_len == SHMREG_MAX_STR && memcmp(m->disp, big, SHMREG_MAX_STR) == 0 && m->port == 5060,
       "... and read back byte for byte");
    is(shmreg_room_join(h, &r, &s[2], (shmreg_str){ NULL, 0 }, (shmreg_str){ NULL, 0 }, 0), 0,
       "empty URI and display name are accepted");

    /* Full. */
    is(shmreg_room_join(h, &r, &s[3], S("sip:carol@x"), S("Carol"), 3), 0, "a fourth participant fills the room");
    test_roster_take(h, &r, a);
    is(a->participants, 4, "the room counts 4 of 4");
    is(shmreg_room_join(h, &r, &s[4], S("sip:dave@x"), S("Dave"), 4), SHMREG_EFULL,
       "a fifth: SHMREG_EFULL");
    test_roster_take(h, &r, c);
    ok(roster_same(a, c), "... the roster is unchanged");
    is(test_session_room_is(h, &s[4], NULL), SHMREG_ENOENT, "... Dave is in no room");
    is(shmreg_room_join(h, &r2, &s[4], S("sip:dave@x"), S("Dave"), 4), 0,
       "... and may join another room: the refused join left no claim");

    /* Locked, Terminating, Terminated refuse joins. */
    shmreg_room_transition(h, &r2, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL);
    shmreg_room_transition(h, &r2, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, NULL);
    test_roster_take(h, &r2, a);
    is(shmreg_room_join(h, &r2, &s[5], S("sip:erin@x"), S("Erin"), 5), SHMREG_ESTATE,
       "joining a Locked room: SHMREG_ESTATE");
    test_roster_take(h, &r2, c);
    ok(roster_same(a, c), "... the roster is unchanged");
    is(test_session_room_is(h, &s[5], NULL), SHMREG_ENOENT, "... Erin is in no room");
    shmreg_room_transition(h, &r2, SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE, NULL);
    is(shmreg_room_join(h, &r2, &s[5], S("sip:erin@x"), S("Erin"), 5), 0, "unlocked (Active): Erin joins");
    shmreg_id r3 = room_in_state(h, SHMREG_ROOM_TERMINATING), r4 = room_in_state(h, SHMREG_ROOM_TERMINATED);
    is(shmreg_room_join(h, &r3, &s[6], S("sip:f@x"), S("F"), 6), SHMREG_ESTATE,
       "joining a Terminating room: SHMREG_ESTATE");
    is(shmreg_room_join(h, &r4, &s[6], S("sip:f@x"), S("F"), 6), SHMREG_ESTATE,
       "joining a Terminated room: SHMREG_ESTATE");
    test_roster_take(h, &r3, a);
    test_roster_take(h, &r4, c);
    ok(a->n == 0 && a->participants == 0 && c->n == 0 && c->participants == 0,
       "... both rosters are still empty");
    is(test_session_room_is(h, &s[6], NULL), SHMREG_ENOENT, "... and the session is in no room");

    /* Leaving. */
    test_roster_take(h, &r, a);
    is(shmreg_room_leave(h, &r, &s[0]), 0, "Alice leaves");
    test_roster_take(h, &r, c);
    ok(c->n == 3 && c->participants == 3 && test_roster_find(c, &s[0]) == NULL,
       "the roster and the count drop to 3, without Alice");
    int others_same = 1;
    for (uint32_t i = 0; i < a->n; i++)
        if (!test_id_eq(&a->m[i].session, &s[0])) {
            const test_member *x = test_roster_find(c, &a->m[i].session);
            others_same &= x && member_same(x, &a->m[i]);
        }
    ok(others_same, "the other participants are untouched");
    is(test_session_room_is(h, &s[0], NULL), SHMREG_ENOENT, "session_room: Alice is in no room");
    is(shmreg_room_leave(h, &r, &s[0]), SHMREG_ENOENT, "leaving again: SHMREG_ENOENT");
    is(shmreg_room_leave(h, &r2, &s[1]), SHMREG_ENOENT, "leaving a room one is not in: SHMREG_ENOENT");
    is(shmreg_room_leave(h, &ghost, &s[1]), SHMREG_ENOENT, "leaving a room that does not exist: SHMREG_ENOENT");
    is(shmreg_room_leave(h, &r, NULL), SHMREG_EINVAL, "NULL session: SHMREG_EINVAL");
    is(shmreg_room_join(h, &r2, &s[0], S("sip:alice@example.com"), S("Alice"), 40000), 0,
       "after leaving, Alice may join another room");
    is(shmreg_room_join(h, &r, &s[7], S("sip:gus@x"), S("Gus"), 7), 0, "her place is free for another");

    /* Listing: errors. */
    shmreg_participant p;
    uint64_t cur = 0;
    is(shmreg_participant_next(h, &r, &cur, &p), SHMREG_ENOREAD,
       "listing outside a read section: SHMREG_ENOREAD");
    shmreg_read_begin(h);
    cur = 0;
    is(shmreg_participant_next(h, &ghost, &cur, &p), SHMREG_ENOENT, "listing a room that does not exist: SHMREG_ENOENT");
    is(shmreg_participant_next(h, &r, NULL, &p), SHMREG_EINVAL, "NULL cursor: SHMREG_EINVAL");
    int n = 0;
    cur = 0;
    while (shmreg_participant_next(h, &r, &cur, &p) == 0)
        n++;
    is(n, 4, "a listing from cursor 0 sees the 4 participants");
    is(shmreg_participant_next(h, &r, &cur, &p), SHMREG_ENOENT, "... then SHMREG_ENOENT, and again");
    shmreg_read_end(h);
    is(shmreg_session_room(h, &ghost, &ghost), SHMREG_ENOENT, "session_room of an unknown session: SHMREG_ENOENT");
    is(shmreg_session_room(h, &s[1], NULL), SHMREG_EINVAL, "session_room with NULL room_out: SHMREG_EINVAL");

    free(a);
    free(b);
    free(c);
    free(d);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ status and audio */

static void test_status(void)
{
    shmreg *h = test_reg_new("room-status", 64, 0, 32);
    shmreg_id s = test_session_new(h), t = test_session_new(h), out = test_session_new(h);
    shmreg_id r = test_room_new(h, "status", 4);
    shmreg_room_join(h, &r, &s, S("sip:s@x"), S("S"), 1000);
    shmreg_room_join(h, &r, &t, S("sip:t@x"), S("T"), 1001);
    test_roster *a = malloc(sizeof *a), *b = malloc(sizeof *b);

    int old = -1;
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_JOINING, SHMREG_PART_ACTIVE, &old), 0,
       "Joining -> Active");
    is(old, SHMREG_PART_JOINING, "... *old is Joining");
    test_roster_take(h, &r, a);
    const test_member *m = test_roster_find(a, &s);
    is(m ? m->status : -1, SHMREG_PART_ACTIVE, "the roster shows Active");
    is(test_roster_find(a, &t) ? test_roster_find(a, &t)->status : -1, SHMREG_PART_JOINING,
       "the other participant is still Joining");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_JOINING, SHMREG_PART_MUTED, &old),
       SHMREG_ECONFLICT, "expecting Joining when it is Active: SHMREG_ECONFLICT");
    is(old, SHMREG_PART_ACTIVE, "... *old is Active");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ACTIVE, SHMREG_PART_ACTIVE, &old),
       SHMREG_ESTATE, "Active -> Active: SHMREG_ESTATE (not a move)");
    test_roster_take(h, &r, b);
    ok(roster_same(a, b), "... neither changed the roster");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_MUTED, &old), 0,
       "expecting Any: -> Muted");
    is(old, SHMREG_PART_ACTIVE, "... *old is Active");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_ONHOLD, NULL), 0,
       "-> OnHold with old NULL");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_JOINING, &old), 0,
       "-> Joining again (statuses move freely)");

    is(shmreg_participant_set_audio(h, &r, &s, 1), 0, "audio on");
    test_roster_take(h, &r, b);
    m = test_roster_find(b, &s);
    ok(m && m->audio == 1 && m->status == SHMREG_PART_JOINING, "the roster shows audio 1, status Joining");
    is(shmreg_participant_set_audio(h, &r, &s, 7), 0, "audio with any non-zero value");
    test_roster_take(h, &r, b);
    is(test_roster_find(b, &s) ? test_roster_find(b, &s)->audio : -1, 1, "... reads as 1");
    is(shmreg_participant_set_audio(h, &r, &s, 0), 0, "audio off");
    test_roster_take(h, &r, b);
    is(test_roster_find(b, &s) ? test_roster_find(b, &s)->audio : -1, 0, "... reads as 0");
    /* The written-once parts did not move. */
    m = test_roster_find(b, &s);
    const test_member *m0 = test_roster_find(a, &s);
    ok(m && m0 && m->uri_len == m0->uri_len && memcmp(m->uri, m0->uri, m->uri_len) == 0 &&
       m->disp_len == m0->disp_len && memcmp(m->disp, m0->disp, m->disp_len) == 0 &&
       m->port == m0->port && m->joined_ns == m0->joined_ns,
       "URI, display name, port and joined time are as written at join");

    is(shmreg_participant_set_status(h, &r, &out, SHMREG_PART_ANY, SHMREG_PART_ACTIVE, &old), SHMREG_ENOENT,
       "a session not in the room: SHMREG_ENOENT");
    is(shmreg_participant_set_audio(h, &r, &out, 1), SHMREG_ENOENT, "... audio too: SHMREG_ENOENT");
    shmreg_id ghost;
    memset(&ghost, 0x33, sizeof ghost);
    is(shmreg_participant_set_status(h, &ghost, &s, SHMREG_PART_ANY, SHMREG_PART_ACTIVE, &old), SHMREG_ENOENT,
       "a room that does not exist: SHMREG_ENOENT");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, 0, &old), SHMREG_EINVAL,
       "to Any (0): SHMREG_EINVAL");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_STATUS_COUNT, &old),
       SHMREG_EINVAL, "to an unknown status: SHMREG_EINVAL");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_STATUS_COUNT, SHMREG_PART_ACTIVE, &old),
       SHMREG_EINVAL, "expecting an unknown status: SHMREG_EINVAL");

    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_LEFT, &old), 0, "-> Left");
    for (int to = SHMREG_PART_JOINING; to <= SHMREG_PART_LEFT; to++) {
        old = -1;
        int rc = shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, to, &old);
        ok(rc == SHMREG_ESTATE && old == SHMREG_PART_LEFT, "Left -> %s: SHMREG_ESTATE, *old Left",
           shmreg_part_status_name(to));
    }
    test_roster_take(h, &r, b);
    ok(test_roster_find(b, &s) && test_roster_find(b, &s)->status == SHMREG_PART_LEFT && b->n == 2,
       "a participant that is Left stays on the roster until it leaves");
    free(a);
    free(b);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ deletion, termination */

static void test_delete_terminate(void)
{
    shmreg *h = test_reg_new("room-del", 64, 0, 32);
    shmreg_id s[6];
    for (int i = 0; i < 6; i++)
        s[i] = test_session_new(h);
    shmreg_id r = test_room_new(h, "del", 8);
    shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL);
    for (int i = 0; i < 3; i++) {
        char uri[32];
        snprintf(uri, sizeof uri, "sip:p%d@x", i);
        shmreg_room_join(h, &r, &s[i], test_ss(uri), S("P"), (uint16_t)(2000 + i));
    }
    test_roster *a = malloc(sizeof *a);

    /* Deleting a session takes it out of its room. */
    is(shmreg_session_delete(h, &s[1]), 0, "delete a session that is in a room");
    test_roster_take(h, &r, a);
    ok(a->n == 2 && a->participants == 2 && test_roster_find(a, &s[1]) == NULL,
       "the roster and the count drop to 2, without it");
    is(test_session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "session_room: SHMREG_ENOENT");
    is(shmreg_room_leave(h, &r, &s[1]), SHMREG_ENOENT, "leaving for it: SHMREG_ENOENT");
    is(shmreg_room_join(h, &r, &s[3], S("sip:p3@x"), S("P"), 2003), 0, "its place is free for another");

    /* Terminating moves everybody to Left. */
    shmreg_participant_set_status(h, &r, &s[0], SHMREG_PART_ANY, SHMREG_PART_ACTIVE, NULL);
    shmreg_participant_set_status(h, &r, &s[2], SHMREG_PART_ANY, SHMREG_PART_MUTED, NULL);
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING, NULL), 0,
       "the room goes to Terminating");
    test_roster_take(h, &r, a);
    int all_left = a->n == 3;
    for (uint32_t i = 0; i < a->n; i++)
        all_left &= a->m[i].status == SHMREG_PART_LEFT;
    ok(all_left, "all 3 participants (Active, Muted, Joining) are now Left");
    is(a->participants, 3, "they are still listed and counted (3)");
    is(shmreg_participant_set_status(h, &r, &s[0], SHMREG_PART_ANY, SHMREG_PART_ACTIVE, NULL), SHMREG_ESTATE,
       "a Left participant cannot come back: SHMREG_ESTATE");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_TERMINATING, SHMREG_ROOM_TERMINATED, NULL), 0,
       "the room goes to Terminated");
    test_roster_take(h, &r, a);
    is(a->state, SHMREG_ROOM_TERMINATED, "it reads as Terminated");

    /* Deleting a room removes every participant, then the room. */
    shmreg_stats st;
    shmreg_stat(h, &st);
    uint32_t rooms = st.rooms;
    is(shmreg_room_delete(h, &r), 0, "delete the room");
    is(room_state(h, &r), SHMREG_ENOENT, "room_get: SHMREG_ENOENT");
    is(count_rooms(h), (int)rooms - 1, "room_next no longer lists it");
    shmreg_stat(h, &st);
    is(st.rooms, rooms - 1, "stat counts one room fewer");
    int none = 1;
    for (int i = 0; i < 4; i++)
        if (i != 1)
            none &= test_session_room_is(h, &s[i], NULL) == SHMREG_ENOENT;
    ok(none, "its former participants are in no room");
    shmreg_id r2 = test_room_new(h, "next", 8);
    int joined = 1;
    for (int i = 0; i < 4; i++)
        if (i != 1)
            joined &= shmreg_room_join(h, &r2, &s[i], S("sip:again@x"), S("A"), 1) == 0;
    ok(joined, "... and may join another room");
    is(shmreg_room_delete(h, &r), SHMREG_ENOENT, "deleting it again: SHMREG_ENOENT");
    is(shmreg_room_join(h, &r, &s[4], S("sip:x@x"), S("X"), 1), SHMREG_ENOENT,
       "joining the deleted room: SHMREG_ENOENT");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL), SHMREG_ENOENT,
       "a transition of the deleted room: SHMREG_ENOENT");
    is(shmreg_room_delete(h, NULL), SHMREG_EINVAL, "deleting NULL: SHMREG_EINVAL");

    shmreg_check_report rep;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "the registry checks clean");
    is(rep.problems, 0, "... 0 problems");
    free(a);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ events */

static void test_events(void)
{
    shmreg *h = test_reg_new("room-ev", 64, 0, 32);
    shmreg_id s1 = test_session_new(h), s2 = test_session_new(h), s3 = test_session_new(h);
    const uint32_t part_mask = SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_JOINED) |
                               SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_STATUS) |
                               SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_LEFT);
    shmreg_sub *all, *rooms, *parts, *one;
    shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &all);
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_ROOM_CREATED) | SHMREG_EV_MASK(SHMREG_EV_ROOM_STATE),
                     NULL, &rooms);
    shmreg_subscribe(h, part_mask, NULL, &parts);
    shmreg_subscribe(h, part_mask, &s1, &one);

    uint64_t t0 = test_now_ns();
    shmreg_id r, x;
    char big[SHMREG_MAX_STR + 1];
    memset(big, 'x', sizeof big);
    shmreg_room_create(h, (shmreg_str){ big, sizeof big }, 4, &x);          /* refused */
    shmreg_room_create(h, S("events"), 4, &r);                               /* 1 */
    shmreg_room_transition(h, &r, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL); /* 2 */
    shmreg_room_join(h, &r, &s1, S("sip:one@x"), S("One"), 1);               /* 3 */
    shmreg_room_join(h, &r, &s2, S("sip:two@x"), S("Two"), 2);               /* 4 */
    shmreg_participant_set_status(h, &r, &s1, SHMREG_PART_JOINING, SHMREG_PART_ACTIVE, NULL); /* 5 */
    shmreg_participant_set_status(h, &r, &s1, SHMREG_PART_JOINING, SHMREG_PART_MUTED, NULL); /* refused */
    shmreg_participant_set_audio(h, &r, &s1, 1);                             /* no event type */
    shmreg_room_leave(h, &r, &s2);                                           /* 6 */
    shmreg_room_transition(h, &r, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, NULL);  /* 7 */
    shmreg_room_join(h, &r, &s3, S("sip:three@x"), S("Three"), 3);           /* refused */
    shmreg_room_transition(h, &r, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING, NULL); /* refused */
    shmreg_room_transition(h, &r, SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE, NULL);  /* 8 */
    shmreg_room_transition(h, &r, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING, NULL); /* 9, 10 */
    shmreg_room_transition(h, &r, SHMREG_ROOM_TERMINATING, SHMREG_ROOM_TERMINATED, NULL); /* 11 */
    shmreg_room_delete(h, &r);                                               /* 12 */

    const struct want_ev script[] = {
        { SHMREG_EV_ROOM_CREATED, &r, NULL, 0, SHMREG_ROOM_CREATING },
        { SHMREG_EV_ROOM_STATE, &r, NULL, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE },
        { SHMREG_EV_PARTICIPANT_JOINED, &r, &s1, 0, SHMREG_PART_JOINING },
        { SHMREG_EV_PARTICIPANT_JOINED, &r, &s2, 0, SHMREG_PART_JOINING },
        { SHMREG_EV_PARTICIPANT_STATUS, &r, &s1, SHMREG_PART_JOINING, SHMREG_PART_ACTIVE },
        { SHMREG_EV_PARTICIPANT_LEFT, &r, &s2, 0, SHMREG_PART_LEFT },
        { SHMREG_EV_ROOM_STATE, &r, NULL, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED },
        { SHMREG_EV_ROOM_STATE, &r, NULL, SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE },
        { SHMREG_EV_ROOM_STATE, &r, NULL, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING },
        { SHMREG_EV_PARTICIPANT_STATUS, &r, &s1, SHMREG_PART_ACTIVE, SHMREG_PART_LEFT },
        { SHMREG_EV_ROOM_STATE, &r, NULL, SHMREG_ROOM_TERMINATING, SHMREG_ROOM_TERMINATED },
        { SHMREG_EV_PARTICIPANT_LEFT, &r, &s1, 0, SHMREG_PART_LEFT },
    };
    struct want_ev w_rooms[12], w_parts[12], w_one[12];
    int nr = 0, np = 0, n1 = 0;
    for (int i = 0; i < 12; i++) {
        const struct want_ev *e = &script[i];
        if (e->type == SHMREG_EV_ROOM_CREATED || e->type == SHMREG_EV_ROOM_STATE)
            w_rooms[nr++] = *e;
        else {
            w_parts[np++] = *e;
            if (test_id_eq(e->session, &s1))
                w_one[n1++] = *e;
        }
    }
    /* Created, joined and left carry the state they leave the thing in
     * (Creating, Joining, Left) as new_state, as shmreg.h documents. */
    events_are(all, script, 12, t0, "all room events");
    events_are(rooms, w_rooms, nr, t0, "mask room_created|room_state");
    events_are(parts, w_parts, np, t0, "mask participant_*");
    events_are(one, w_one, n1, t0, "mask participant_* and one session");
    shmreg_unsubscribe(all);
    shmreg_unsubscribe(rooms);
    shmreg_unsubscribe(parts);
    shmreg_unsubscribe(one);

    /* Deleting a session in a room publishes participant_left then
     * session_deleted. */
    shmreg_id r2 = test_room_new(h, "ev2", 2);
    shmreg_room_join(h, &r2, &s3, S("sip:three@x"), S("Three"), 3);
    shmreg_sub *sub;
    shmreg_subscribe(h, part_mask | SHMREG_EV_MASK(SHMREG_EV_SESSION_DELETED), &s3, &sub);
    t0 = test_now_ns();
    shmreg_session_delete(h, &s3);
    shmreg_event got[8];
    int n = test_drain_events(sub, got, 8);
    is(n, 2, "deleting a session in a room: two events for it");
    ok(n >= 1 && got[0].type == SHMREG_EV_PARTICIPANT_LEFT && test_id_eq(&got[0].room, &r2) &&
       test_id_eq(&got[0].session, &s3), "... participant_left (room, session)");
    ok(n >= 2 && got[1].type == SHMREG_EV_SESSION_DELETED && test_id_eq(&got[1].session, &s3) &&
       got[1].old_state == SHMREG_STATE_INITIATING, "... then session_deleted (old state Initiating)");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_tables);
    TEST_RUN(test_transitions);
    TEST_RUN(test_create);
    TEST_RUN(test_join_leave);
    TEST_RUN(test_status);
    TEST_RUN(test_delete_terminate);
    TEST_RUN(test_events);
    alarm(0);
    return done_testing();
}
