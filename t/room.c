/*
 * room.c — conference rooms and their rosters, read in place.
 *
 * A room has a random 128-bit ID, a name, a state that moves along a fixed
 * table (Creating -> Active <-> Locked -> Terminating -> Terminated), a
 * maximum number of participants, its creation time and the configuration
 * generation it was created under. Its roster lists participants: a
 * session, its URI and display name and RTP port (written once at join),
 * and a status and an audio flag that change in place. A session is in at
 * most one room at a time; a refused join changes nothing.
 *
 * The second half is about several processes at once: four workers joining
 * and leaving the same rooms end with rosters that are exactly the union of
 * what each believes; a room of 16 is never more than 16 however many race
 * for it; one process's status flips are seen by another inside a read
 * section whose URI pointer never moves; and joiners killed with SIGKILL at
 * random moments never leave a half-added participant, a count that
 * disagrees with the roster, or a claim that blocks a later join.
 *
 * Participants written by the crash victims are self-checking: the URI
 * names the session and a seed and ends in an FNV-1a checksum of itself,
 * the display name repeats the seed and carries its own checksum, and the
 * RTP port is derived from the seed. A roster entry with any other bytes
 * is a half-written participant.
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

#include "shmreg.h"
#include "selfcheck.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

static char g_path[400];    /* the registry of the current section */

/* ------------------------------------------------------------ helpers */

static uint64_t now_ns(void)   /* CLOCK_REALTIME, as the registry's times */
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}


/* Create a fresh registry (path kept in g_path). */
static shmreg *open_new(const char *name, uint32_t max_sessions, uint64_t heap, uint32_t max_rooms)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    o.max_sessions = max_sessions;
    o.heap_bytes = heap;
    o.max_rooms = max_rooms;
    o.max_handles = 256;
    snprintf(g_path, sizeof g_path, "%s", test_dir(name));
    shmreg *h = NULL;
    int rc = shmreg_open(g_path, &o, &h);
    if (rc != 0)
        bail_out("cannot create %s: %s (%s)", g_path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

/* A forked process attaches with its own handle. */
static shmreg *attach(void)
{
    shmreg *h = NULL;
    int rc = shmreg_open(g_path, NULL, &h);
    if (rc != 0)
        bail_out("attach %s: %s (%s)", g_path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

static void close_destroy(shmreg *h)
{
    shmreg_close(h);
    shmreg_destroy(g_path, 1);
}

static shmreg_id new_session(shmreg *h)
{
    shmreg_id id;
    int rc = shmreg_session_create(h, NULL, &id);
    if (rc != 0)
        bail_out("session_create: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

static shmreg_id new_room(shmreg *h, const char *name, uint32_t max)
{
    shmreg_id id;
    int rc = shmreg_room_create(h, SS(name), max, &id);
    if (rc != 0)
        bail_out("room_create %s: %s (%s)", name, shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

static int id_eq(const shmreg_id *a, const shmreg_id *b)
{
    return memcmp(a->bytes, b->bytes, 16) == 0;
}

static int str_is(shmreg_str s, const void *p, size_t len)
{
    return s.len == len && (len == 0 || (s.ptr && memcmp(s.ptr, p, len) == 0));
}

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

#define SNAP_MAX 160

struct member {
    shmreg_id session;
    char uri[SHMREG_MAX_STR], disp[SHMREG_MAX_STR];
    size_t uri_len, disp_len;
    int status, audio;
    uint16_t port;
    uint64_t joined_ns;
};

struct roster {
    int rc;                       /* of room_get / participant_next */
    int state;
    uint32_t max, participants;   /* as room_get reports them */
    uint32_t n;                   /* entries listed */
    struct member m[SNAP_MAX];
};

/* A deep copy of a room and its roster, taken in one read section. */
static void roster_take(shmreg *h, const shmreg_id *room, struct roster *r)
{
    memset(r, 0, offsetof(struct roster, m));
    shmreg_room v;
    shmreg_read_begin(h);
    r->rc = shmreg_room_get(h, room, &v);
    if (r->rc == 0) {
        r->state = v.state;
        r->max = v.max_participants;
        r->participants = v.participants;
        uint64_t cur = 0;
        shmreg_participant p;
        int rc;
        while ((rc = shmreg_participant_next(h, room, &cur, &p)) == 0) {
            if (r->n == SNAP_MAX)
                bail_out("roster longer than %d", SNAP_MAX);
            struct member *m = &r->m[r->n++];
            m->session = p.session;
            m->uri_len = p.uri.len < sizeof m->uri ? p.uri.len : sizeof m->uri;
            m->disp_len = p.display_name.len < sizeof m->disp ? p.display_name.len : sizeof m->disp;
            if (m->uri_len)
                memcpy(m->uri, p.uri.ptr, m->uri_len);
            if (m->disp_len)
                memcpy(m->disp, p.display_name.ptr, m->disp_len);
            m->status = p.status;
            m->audio = p.audio_active;
            m->port = p.rtp_port;
            m->joined_ns = p.joined_ns;
        }
        if (rc != SHMREG_ENOENT)
            r->rc = rc;
    }
    shmreg_read_end(h);
}

static int member_same(const struct member *a, const struct member *b)
{
    return id_eq(&a->session, &b->session) && a->uri_len == b->uri_len &&
           memcmp(a->uri, b->uri, a->uri_len) == 0 && a->disp_len == b->disp_len &&
           memcmp(a->disp, b->disp, a->disp_len) == 0 && a->status == b->status &&
           a->audio == b->audio && a->port == b->port && a->joined_ns == b->joined_ns;
}

static int roster_same(const struct roster *a, const struct roster *b)
{
    if (a->rc != b->rc || a->state != b->state || a->max != b->max ||
        a->participants != b->participants || a->n != b->n)
        return 0;
    for (uint32_t i = 0; i < a->n; i++)
        if (!member_same(&a->m[i], &b->m[i]))
            return 0;
    return 1;
}

static const struct member *roster_find(const struct roster *r, const shmreg_id *sid)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (id_eq(&r->m[i].session, sid))
            return &r->m[i];
    return NULL;
}

/* The room a session is in, or the error. */
static int session_room_is(shmreg *h, const shmreg_id *sid, const shmreg_id *want)
{
    shmreg_id got;
    memset(&got, 0, sizeof got);
    int rc = shmreg_session_room(h, sid, &got);
    if (rc != 0)
        return rc;
    return want && id_eq(&got, want) ? 0 : 1;
}

/* ------------------------------------------------------------ events */

/* Drain a subscription (non-blocking) into ev[]; returns the count. */
static int drain(shmreg_sub *sub, shmreg_event *ev, int cap)
{
    int n = 0;
    for (;;) {
        shmreg_event e[16];
        int got = shmreg_poll(sub, e, 16, 0, NULL);
        if (got <= 0)
            return got < 0 ? got : n;
        for (int i = 0; i < got; i++)
            if (n < cap)
                ev[n++] = e[i];
    }
}

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
    int m = drain(sub, got, 64);
    is(m, n, "%s: exactly %d events arrive", what, n);
    uint64_t t1 = now_ns();
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
        EV_DIFF(id_eq(&e->room, room), " room differs");
        EV_DIFF(id_eq(&e->session, sess), " session differs");
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
    shmreg_id r = new_room(h, "path", 4);
    for (int i = 0; path[state][i]; i++)
        if (shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, path[state][i], NULL) != 0)
            bail_out("cannot bring a room to %s: %s", shmreg_room_state_name(state), shmreg_errmsg());
    return r;
}

static void test_transitions(void)
{
    shmreg *h = open_new("room-trans", 64, 0, 64);
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
    shmreg_id r = new_room(h, "any", 4);
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
    close_destroy(h);
}

/* ------------------------------------------------------------ creating rooms */

static void test_create(void)
{
    shmreg *h = open_new("room-create", 64, 0, 32);
    shmreg_sub *sub = NULL;
    is(shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_ROOM_CREATED), NULL, &sub), 0,
       "subscribed to room_created");

    uint64_t g0 = shmreg_config_gen(h);
    uint64_t t0 = now_ns();
    shmreg_id a;
    is(shmreg_room_create(h, S("Daily standup"), 8, &a), 0, "create a room of 8 named 'Daily standup'");
    uint64_t t1 = now_ns();
    shmreg_room v;
    is(shmreg_room_get(h, &a, &v), SHMREG_ENOREAD, "reading a room outside a read section: SHMREG_ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_room_get(h, &a, &v), 0, "read it in place");
    ok(id_eq(&v.id, &a), "its ID is the one create returned");
    is(v.state, SHMREG_ROOM_CREATING, "it starts in Creating");
    ok(str_is(v.name, "Daily standup", 13), "its name, byte for byte");
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
        shmreg_id b = new_room(h, "after", 2);
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
        ids[i] = new_room(h, name, 2);
        nonzero &= !id_eq(&ids[i], &zero_id);
        for (int j = 0; j < i; j++)
            distinct &= !id_eq(&ids[i], &ids[j]);
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
    is(drain(sub, evs, 64), created, "room_created was published once per room created (%d)", created);

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
    is(drain(sub, evs, 64), 0, "... and none published room_created");

    /* The limits themselves are accepted. */
    shmreg_id y;
    ok(shmreg_room_create(h, (shmreg_str){ big, SHMREG_MAX_STR }, SHMREG_MAX_ROOM_PARTICIPANTS, &y) == 0,
       "a name of exactly %u bytes and %u participants are accepted", SHMREG_MAX_STR,
       SHMREG_MAX_ROOM_PARTICIPANTS);
    shmreg_read_begin(h);
    ok(shmreg_room_get(h, &y, &v) == 0 && str_is(v.name, big, SHMREG_MAX_STR) &&
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
    close_destroy(h);
}

/* ------------------------------------------------------------ joining and leaving */

static void test_join_leave(void)
{
    shmreg *h = open_new("room-join", 64, 0, 32);
    shmreg_id s[8];
    for (int i = 0; i < 8; i++)
        s[i] = new_session(h);
    shmreg_id r = new_room(h, "main", 4), r2 = new_room(h, "other", 4);
    struct roster *a = malloc(sizeof *a), *b = malloc(sizeof *b), *c = malloc(sizeof *c);

    /* A room in Creating accepts joins. */
    uint64_t t0 = now_ns();
    is(shmreg_room_join(h, &r, &s[0], S("sip:alice@example.com"), S("Alice"), 40000), 0,
       "join Alice to a room in Creating");
    uint64_t t1 = now_ns();
    roster_take(h, &r, a);
    is(a->n, 1, "the roster lists one participant");
    is(a->participants, 1, "the room counts one");
    const struct member *m = a->n ? &a->m[0] : NULL;
    ok(m && id_eq(&m->session, &s[0]), "... it is Alice's session");
    ok(m && m->uri_len == 21 && memcmp(m->uri, "sip:alice@example.com", 21) == 0, "... her URI, exactly");
    ok(m && m->disp_len == 5 && memcmp(m->disp, "Alice", 5) == 0, "... her display name, exactly");
    is(m ? m->status : -1, SHMREG_PART_JOINING, "... status Joining");
    is(m ? m->audio : -1, 0, "... audio inactive");
    is(m ? m->port : 0, 40000, "... RTP port 40000");
    ok(m && m->joined_ns >= t0 && m->joined_ns <= t1, "... joined time is the moment of join");
    is(session_room_is(h, &s[0], &r), 0, "session_room names the room");

    /* One room at a time. */
    roster_take(h, &r2, b);
    is(shmreg_room_join(h, &r, &s[0], S("sip:again@x"), S("Again"), 1), SHMREG_EEXIST,
       "joining the same room again: SHMREG_EEXIST");
    is(shmreg_room_join(h, &r2, &s[0], S("sip:again@x"), S("Again"), 1), SHMREG_EEXIST,
       "joining a second room: SHMREG_EEXIST");
    roster_take(h, &r, c);
    ok(roster_same(a, c), "... the first roster is unchanged");
    struct roster *d = malloc(sizeof *d);
    roster_take(h, &r2, d);
    ok(roster_same(b, d) && d->n == 0, "... the second room is still empty");
    is(session_room_is(h, &s[0], &r), 0, "... and the session is still in the first");

    /* Missing room or session. */
    shmreg_id ghost;
    memset(&ghost, 0x77, sizeof ghost);
    is(shmreg_room_join(h, &r, &ghost, S("sip:ghost@x"), S("Ghost"), 1), SHMREG_ENOENT,
       "joining a session that does not exist: SHMREG_ENOENT");
    is(shmreg_room_join(h, &ghost, &s[1], S("sip:bob@x"), S("Bob"), 1), SHMREG_ENOENT,
       "joining a room that does not exist: SHMREG_ENOENT");
    is(session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "... Bob is in no room");
    roster_take(h, &r, c);
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
    roster_take(h, &r, c);
    ok(roster_same(a, c), "... none of those changed the roster");
    is(session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "... and Bob is still in no room");
    is(shmreg_room_join(h, &r, &s[1], (shmreg_str){ big, SHMREG_MAX_STR },
                        (shmreg_str){ big, SHMREG_MAX_STR }, 5060), 0,
       "a URI and a display name of exactly %u bytes are accepted", SHMREG_MAX_STR);
    roster_take(h, &r, c);
    m = roster_find(c, &s[1]);
    ok(m && m->uri_len == SHMREG_MAX_STR && memcmp(m->uri, big, SHMREG_MAX_STR) == 0 &&
       m->disp_len == SHMREG_MAX_STR && memcmp(m->disp, big, SHMREG_MAX_STR) == 0 && m->port == 5060,
       "... and read back byte for byte");
    is(shmreg_room_join(h, &r, &s[2], (shmreg_str){ NULL, 0 }, (shmreg_str){ NULL, 0 }, 0), 0,
       "empty URI and display name are accepted");

    /* Full. */
    is(shmreg_room_join(h, &r, &s[3], S("sip:carol@x"), S("Carol"), 3), 0, "a fourth participant fills the room");
    roster_take(h, &r, a);
    is(a->participants, 4, "the room counts 4 of 4");
    is(shmreg_room_join(h, &r, &s[4], S("sip:dave@x"), S("Dave"), 4), SHMREG_EFULL,
       "a fifth: SHMREG_EFULL");
    roster_take(h, &r, c);
    ok(roster_same(a, c), "... the roster is unchanged");
    is(session_room_is(h, &s[4], NULL), SHMREG_ENOENT, "... Dave is in no room");
    is(shmreg_room_join(h, &r2, &s[4], S("sip:dave@x"), S("Dave"), 4), 0,
       "... and may join another room: the refused join left no claim");

    /* Locked, Terminating, Terminated refuse joins. */
    shmreg_room_transition(h, &r2, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL);
    shmreg_room_transition(h, &r2, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, NULL);
    roster_take(h, &r2, a);
    is(shmreg_room_join(h, &r2, &s[5], S("sip:erin@x"), S("Erin"), 5), SHMREG_ESTATE,
       "joining a Locked room: SHMREG_ESTATE");
    roster_take(h, &r2, c);
    ok(roster_same(a, c), "... the roster is unchanged");
    is(session_room_is(h, &s[5], NULL), SHMREG_ENOENT, "... Erin is in no room");
    shmreg_room_transition(h, &r2, SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE, NULL);
    is(shmreg_room_join(h, &r2, &s[5], S("sip:erin@x"), S("Erin"), 5), 0, "unlocked (Active): Erin joins");
    shmreg_id r3 = room_in_state(h, SHMREG_ROOM_TERMINATING), r4 = room_in_state(h, SHMREG_ROOM_TERMINATED);
    is(shmreg_room_join(h, &r3, &s[6], S("sip:f@x"), S("F"), 6), SHMREG_ESTATE,
       "joining a Terminating room: SHMREG_ESTATE");
    is(shmreg_room_join(h, &r4, &s[6], S("sip:f@x"), S("F"), 6), SHMREG_ESTATE,
       "joining a Terminated room: SHMREG_ESTATE");
    roster_take(h, &r3, a);
    roster_take(h, &r4, c);
    ok(a->n == 0 && a->participants == 0 && c->n == 0 && c->participants == 0,
       "... both rosters are still empty");
    is(session_room_is(h, &s[6], NULL), SHMREG_ENOENT, "... and the session is in no room");

    /* Leaving. */
    roster_take(h, &r, a);
    is(shmreg_room_leave(h, &r, &s[0]), 0, "Alice leaves");
    roster_take(h, &r, c);
    ok(c->n == 3 && c->participants == 3 && roster_find(c, &s[0]) == NULL,
       "the roster and the count drop to 3, without Alice");
    int others_same = 1;
    for (uint32_t i = 0; i < a->n; i++)
        if (!id_eq(&a->m[i].session, &s[0])) {
            const struct member *x = roster_find(c, &a->m[i].session);
            others_same &= x && member_same(x, &a->m[i]);
        }
    ok(others_same, "the other participants are untouched");
    is(session_room_is(h, &s[0], NULL), SHMREG_ENOENT, "session_room: Alice is in no room");
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
    close_destroy(h);
}

/* ------------------------------------------------------------ status and audio */

static void test_status(void)
{
    shmreg *h = open_new("room-status", 64, 0, 32);
    shmreg_id s = new_session(h), t = new_session(h), out = new_session(h);
    shmreg_id r = new_room(h, "status", 4);
    shmreg_room_join(h, &r, &s, S("sip:s@x"), S("S"), 1000);
    shmreg_room_join(h, &r, &t, S("sip:t@x"), S("T"), 1001);
    struct roster *a = malloc(sizeof *a), *b = malloc(sizeof *b);

    int old = -1;
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_JOINING, SHMREG_PART_ACTIVE, &old), 0,
       "Joining -> Active");
    is(old, SHMREG_PART_JOINING, "... *old is Joining");
    roster_take(h, &r, a);
    const struct member *m = roster_find(a, &s);
    is(m ? m->status : -1, SHMREG_PART_ACTIVE, "the roster shows Active");
    is(roster_find(a, &t) ? roster_find(a, &t)->status : -1, SHMREG_PART_JOINING,
       "the other participant is still Joining");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_JOINING, SHMREG_PART_MUTED, &old),
       SHMREG_ECONFLICT, "expecting Joining when it is Active: SHMREG_ECONFLICT");
    is(old, SHMREG_PART_ACTIVE, "... *old is Active");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ACTIVE, SHMREG_PART_ACTIVE, &old),
       SHMREG_ESTATE, "Active -> Active: SHMREG_ESTATE (not a move)");
    roster_take(h, &r, b);
    ok(roster_same(a, b), "... neither changed the roster");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_MUTED, &old), 0,
       "expecting Any: -> Muted");
    is(old, SHMREG_PART_ACTIVE, "... *old is Active");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_ONHOLD, NULL), 0,
       "-> OnHold with old NULL");
    is(shmreg_participant_set_status(h, &r, &s, SHMREG_PART_ANY, SHMREG_PART_JOINING, &old), 0,
       "-> Joining again (statuses move freely)");

    is(shmreg_participant_set_audio(h, &r, &s, 1), 0, "audio on");
    roster_take(h, &r, b);
    m = roster_find(b, &s);
    ok(m && m->audio == 1 && m->status == SHMREG_PART_JOINING, "the roster shows audio 1, status Joining");
    is(shmreg_participant_set_audio(h, &r, &s, 7), 0, "audio with any non-zero value");
    roster_take(h, &r, b);
    is(roster_find(b, &s) ? roster_find(b, &s)->audio : -1, 1, "... reads as 1");
    is(shmreg_participant_set_audio(h, &r, &s, 0), 0, "audio off");
    roster_take(h, &r, b);
    is(roster_find(b, &s) ? roster_find(b, &s)->audio : -1, 0, "... reads as 0");
    /* The written-once parts did not move. */
    m = roster_find(b, &s);
    const struct member *m0 = roster_find(a, &s);
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
    roster_take(h, &r, b);
    ok(roster_find(b, &s) && roster_find(b, &s)->status == SHMREG_PART_LEFT && b->n == 2,
       "a participant that is Left stays on the roster until it leaves");
    free(a);
    free(b);
    close_destroy(h);
}

/* ------------------------------------------------------------ deletion, termination */

static void test_delete_terminate(void)
{
    shmreg *h = open_new("room-del", 64, 0, 32);
    shmreg_id s[6];
    for (int i = 0; i < 6; i++)
        s[i] = new_session(h);
    shmreg_id r = new_room(h, "del", 8);
    shmreg_room_transition(h, &r, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL);
    for (int i = 0; i < 3; i++) {
        char uri[32];
        snprintf(uri, sizeof uri, "sip:p%d@x", i);
        shmreg_room_join(h, &r, &s[i], SS(uri), S("P"), (uint16_t)(2000 + i));
    }
    struct roster *a = malloc(sizeof *a);

    /* Deleting a session takes it out of its room. */
    is(shmreg_session_delete(h, &s[1]), 0, "delete a session that is in a room");
    roster_take(h, &r, a);
    ok(a->n == 2 && a->participants == 2 && roster_find(a, &s[1]) == NULL,
       "the roster and the count drop to 2, without it");
    is(session_room_is(h, &s[1], NULL), SHMREG_ENOENT, "session_room: SHMREG_ENOENT");
    is(shmreg_room_leave(h, &r, &s[1]), SHMREG_ENOENT, "leaving for it: SHMREG_ENOENT");
    is(shmreg_room_join(h, &r, &s[3], S("sip:p3@x"), S("P"), 2003), 0, "its place is free for another");

    /* Terminating moves everybody to Left. */
    shmreg_participant_set_status(h, &r, &s[0], SHMREG_PART_ANY, SHMREG_PART_ACTIVE, NULL);
    shmreg_participant_set_status(h, &r, &s[2], SHMREG_PART_ANY, SHMREG_PART_MUTED, NULL);
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_TERMINATING, NULL), 0,
       "the room goes to Terminating");
    roster_take(h, &r, a);
    int all_left = a->n == 3;
    for (uint32_t i = 0; i < a->n; i++)
        all_left &= a->m[i].status == SHMREG_PART_LEFT;
    ok(all_left, "all 3 participants (Active, Muted, Joining) are now Left");
    is(a->participants, 3, "they are still listed and counted (3)");
    is(shmreg_participant_set_status(h, &r, &s[0], SHMREG_PART_ANY, SHMREG_PART_ACTIVE, NULL), SHMREG_ESTATE,
       "a Left participant cannot come back: SHMREG_ESTATE");
    is(shmreg_room_transition(h, &r, SHMREG_ROOM_TERMINATING, SHMREG_ROOM_TERMINATED, NULL), 0,
       "the room goes to Terminated");
    roster_take(h, &r, a);
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
            none &= session_room_is(h, &s[i], NULL) == SHMREG_ENOENT;
    ok(none, "its former participants are in no room");
    shmreg_id r2 = new_room(h, "next", 8);
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
    close_destroy(h);
}

/* ------------------------------------------------------------ events */

static void test_events(void)
{
    shmreg *h = open_new("room-ev", 64, 0, 32);
    shmreg_id s1 = new_session(h), s2 = new_session(h), s3 = new_session(h);
    const uint32_t part_mask = SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_JOINED) |
                               SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_STATUS) |
                               SHMREG_EV_MASK(SHMREG_EV_PARTICIPANT_LEFT);
    shmreg_sub *all, *rooms, *parts, *one;
    shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &all);
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_ROOM_CREATED) | SHMREG_EV_MASK(SHMREG_EV_ROOM_STATE),
                     NULL, &rooms);
    shmreg_subscribe(h, part_mask, NULL, &parts);
    shmreg_subscribe(h, part_mask, &s1, &one);

    uint64_t t0 = now_ns();
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
            if (id_eq(e->session, &s1))
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
    shmreg_id r2 = new_room(h, "ev2", 2);
    shmreg_room_join(h, &r2, &s3, S("sip:three@x"), S("Three"), 3);
    shmreg_sub *sub;
    shmreg_subscribe(h, part_mask | SHMREG_EV_MASK(SHMREG_EV_SESSION_DELETED), &s3, &sub);
    t0 = now_ns();
    shmreg_session_delete(h, &s3);
    shmreg_event got[8];
    int n = drain(sub, got, 8);
    is(n, 2, "deleting a session in a room: two events for it");
    ok(n >= 1 && got[0].type == SHMREG_EV_PARTICIPANT_LEFT && id_eq(&got[0].room, &r2) &&
       id_eq(&got[0].session, &s3), "... participant_left (room, session)");
    ok(n >= 2 && got[1].type == SHMREG_EV_SESSION_DELETED && id_eq(&got[1].session, &s3) &&
       got[1].old_state == SHMREG_STATE_INITIATING, "... then session_deleted (old state Initiating)");
    shmreg_unsubscribe(sub);
    close_destroy(h);
}

/* ------------------------------------------------------------ in place, across processes */

#define FLIP_ROUNDS 40
#define FLIPS_PER_ROUND 50

struct flip_shared {
    shmreg_id room, session;
    atomic_int round;          /* flipper: the round it has finished */
    atomic_int ack;            /* reader: the round it has checked */
    atomic_int want_status[FLIP_ROUNDS + 1], want_audio[FLIP_ROUNDS + 1];
    atomic_int errors;
    atomic_int moves_done;     /* join/leave cycles done while the reader held its section */
};

static struct flip_shared *fs;

static void flipper(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    static const int cycle[] = { SHMREG_PART_ACTIVE, SHMREG_PART_ONHOLD, SHMREG_PART_MUTED,
                                 SHMREG_PART_LEAVING, SHMREG_PART_JOINING };
    int k = 0, audio = 0;
    for (int round = 1; round <= FLIP_ROUNDS; round++) {
        for (int i = 0; i < FLIPS_PER_ROUND; i++) {
            int cur = k ? cycle[(k - 1) % 5] : SHMREG_PART_JOINING, to = cycle[k % 5], old = -1;
            if (shmreg_participant_set_status(h, &fs->room, &fs->session, cur, to, &old) != 0 || old != cur)
                atomic_fetch_add(&fs->errors, 1);
            audio = !audio;
            if (shmreg_participant_set_audio(h, &fs->room, &fs->session, audio) != 0)
                atomic_fetch_add(&fs->errors, 1);
            k++;
        }
        atomic_store(&fs->want_status[round], cycle[(k - 1) % 5]);
        atomic_store(&fs->want_audio[round], audio);
        atomic_store(&fs->round, round);
        double give_up = test_mono_s() + 10;
        while (atomic_load(&fs->ack) < round && test_mono_s() < give_up)
            sched_yield();
    }
    shmreg_close(h);
}

/* Joins and leaves a room while the parent holds a read section open in
 * the middle of listing that room. */
static void mover(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    shmreg_id me = new_session(h);
    for (int i = 0; i < 200; i++) {
        if (shmreg_room_join(h, &fs->room, &me, S("sip:mover@x"), S("Mover"), 9) != 0 ||
            shmreg_room_leave(h, &fs->room, &me) != 0)
            atomic_fetch_add(&fs->errors, 1);
        atomic_fetch_add(&fs->moves_done, 1);
    }
    shmreg_session_delete(h, &me);
    shmreg_close(h);
}

static void test_in_place(void)
{
    shmreg *h = open_new("room-inplace", 64, 0, 32);
    fs = test_shared(sizeof *fs);
    fs->session = new_session(h);
    fs->room = new_room(h, "in place", 8);
    char uri[600], disp[300];
    for (size_t i = 0; i < sizeof uri; i++)
        uri[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof disp; i++)
        disp[i] = (char)('A' + i % 26);
    shmreg_room_join(h, &fs->room, &fs->session, (shmreg_str){ uri, sizeof uri },
                     (shmreg_str){ disp, sizeof disp }, 4242);
    shmreg_id other = new_session(h);
    shmreg_room_join(h, &fs->room, &other, S("sip:other@x"), S("Other"), 1);

    shmreg_read_begin(h);
    shmreg_participant p0, p;
    uint64_t cur = 0;
    int rc = shmreg_participant_next(h, &fs->room, &cur, &p0);
    is(rc, 0, "read the participant in place, and keep the read section open");
    ok(rc == 0 && id_eq(&p0.session, &fs->session) && str_is(p0.uri, uri, sizeof uri),
       "its URI (600 bytes) is the one written at join");

    pid_t pid = test_fork(flipper, NULL);
    int seen = 0, same_ptr = 1, same_bytes = 1, status_ok = 1, audio_ok = 1;
    double give_up = test_mono_s() + 15;
    for (int round = 1; round <= FLIP_ROUNDS && test_mono_s() < give_up; round++) {
        while (atomic_load(&fs->round) < round && test_mono_s() < give_up)
            sched_yield();
        if (atomic_load(&fs->round) < round)
            break;
        cur = 0;
        if (shmreg_participant_next(h, &fs->room, &cur, &p) != 0 || !id_eq(&p.session, &fs->session)) {
            status_ok = 0;
            break;
        }
        same_ptr &= p.uri.ptr == p0.uri.ptr && p.display_name.ptr == p0.display_name.ptr;
        same_bytes &= str_is(p0.uri, uri, sizeof uri) && str_is(p.uri, uri, sizeof uri) &&
                      str_is(p.display_name, disp, sizeof disp);
        status_ok &= p.status == atomic_load(&fs->want_status[round]);
        audio_ok &= p.audio_active == atomic_load(&fs->want_audio[round]);
        seen++;
        atomic_store(&fs->ack, round);
    }
    is(test_wait(pid), 0, "another process flipped the status %d times", FLIP_ROUNDS * FLIPS_PER_ROUND);
    is(atomic_load(&fs->errors), 0, "... every flip succeeded with the expected *old");
    is(seen, FLIP_ROUNDS, "the reader looked after each of the %d rounds", FLIP_ROUNDS);
    ok(status_ok, "... and saw the status the other process had just set, every time");
    ok(audio_ok, "... and its audio flag, every time");
    ok(same_ptr, "... at the same URI and display-name addresses");
    ok(same_bytes, "... with the same bytes");
    ok(p.rtp_port == 4242 && p.joined_ns == p0.joined_ns, "port and joined time did not change");

    /* A listing held open (cursor after the first entry) does not stop
     * joins and leaves in another process. */
    cur = 0;
    shmreg_participant_next(h, &fs->room, &cur, &p);
    double t0 = test_mono_s();
    pid = test_fork(mover, NULL);
    is(test_wait(pid), 0, "another process joins and leaves 200 times while this one is mid-listing");
    is(atomic_load(&fs->moves_done), 200, "... all 200 cycles done");
    is(atomic_load(&fs->errors), 0, "... without an error");
    ok(test_mono_s() - t0 < 10, "... without waiting for the reader (%.3f s)", test_mono_s() - t0);
    int rest = 0;
    while ((rc = shmreg_participant_next(h, &fs->room, &cur, &p)) == 0)
        rest++;
    ok(rc == SHMREG_ENOENT && rest == 1, "the listing then goes on to its end");
    shmreg_read_end(h);
    munmap(fs, sizeof *fs);
    close_destroy(h);
}

/* ------------------------------------------------------------ four workers */

#define W_PROCS 4
#define W_SESSIONS 32
#define W_ROOMS 4
#define W_MAX 40

struct w_belief {
    shmreg_id id;
    int room;           /* index in rooms[], -1: none */
    int status, audio;
};

struct w_report {
    long joins, leaves, full, flips, listed, bad_entries, errors, eexist_checks;
    char first_error[200];
    struct w_belief b[W_SESSIONS];
    int done;
};

struct w_shared {
    atomic_int go;
    shmreg_id rooms[W_ROOMS];
    struct w_report r[W_PROCS];
};

static struct w_shared *ws;

static void w_error(struct w_report *r, const char *what, int rc)
{
    if (r->errors++ == 0)
        snprintf(r->first_error, sizeof r->first_error, "%s: %s (%s)", what, shmreg_strerror(rc),
                 shmreg_errmsg());
}

/* A worker's participants: URI "sip:w<k>-s<i>@conf", name "W<k>S<i>", port k*1000+i. */
static int w_entry_whole(const shmreg_participant *p)
{
    char uri[64], disp[64], want[64];
    int k, i, end = 0;
    if (p->uri.len >= sizeof uri || p->display_name.len >= sizeof disp)
        return 0;
    memcpy(uri, p->uri.ptr, p->uri.len);
    uri[p->uri.len] = 0;
    memcpy(disp, p->display_name.ptr, p->display_name.len);
    disp[p->display_name.len] = 0;
    if (sscanf(uri, "sip:w%d-s%d@conf%n", &k, &i, &end) != 2 || end != (int)strlen(uri))
        return 0;
    snprintf(want, sizeof want, "W%dS%d", k, i);
    return strcmp(disp, want) == 0 && p->rtp_port == k * 1000 + i &&
           p->status >= SHMREG_PART_JOINING && p->status <= SHMREG_PART_LEAVING;
}

static void worker(void *arg)
{
    int k = (int)(intptr_t)arg;
    struct w_report *rep = &ws->r[k];
    shmreg *h = attach();
    unsigned seed = (unsigned)getpid() * 2654435761u;
    struct w_belief *b = rep->b;
    for (int i = 0; i < W_SESSIONS; i++) {
        b[i].id = new_session(h);
        b[i].room = -1;
    }
    while (!atomic_load(&ws->go))
        sched_yield();
    double end = test_mono_s() + 2.0;
    char uri[64], disp[64];
    while (test_mono_s() < end) {
        int i = (int)(rand_r(&seed) % W_SESSIONS), rc;
        struct w_belief *x = &b[i];
        unsigned what = rand_r(&seed) % 16;
        if (x->room < 0) {
            int r = (int)(rand_r(&seed) % W_ROOMS);
            snprintf(uri, sizeof uri, "sip:w%d-s%d@conf", k, i);
            snprintf(disp, sizeof disp, "W%dS%d", k, i);
            rc = shmreg_room_join(h, &ws->rooms[r], &x->id, SS(uri), SS(disp), (uint16_t)(k * 1000 + i));
            if (rc == 0) {
                x->room = r;
                x->status = SHMREG_PART_JOINING;
                x->audio = 0;
                rep->joins++;
            } else if (rc == SHMREG_EFULL) {
                rep->full++;
            } else {
                w_error(rep, "join", rc);
            }
        } else if (what < 7) {
            rc = shmreg_room_leave(h, &ws->rooms[x->room], &x->id);
            if (rc == 0) {
                x->room = -1;
                rep->leaves++;
            } else {
                w_error(rep, "leave", rc);
            }
        } else if (what < 11) {
            int to = SHMREG_PART_JOINING + (int)(rand_r(&seed) % 5), old = -1;
            if (to == x->status)
                to = to == SHMREG_PART_LEAVING ? SHMREG_PART_JOINING : to + 1;
            rc = shmreg_participant_set_status(h, &ws->rooms[x->room], &x->id, x->status, to, &old);
            if (rc == 0 && old == x->status) {
                x->status = to;
                rep->flips++;
            } else {
                w_error(rep, "set_status", rc ? rc : SHMREG_ECONFLICT);
            }
        } else if (what < 13) {
            int a = !x->audio;
            rc = shmreg_participant_set_audio(h, &ws->rooms[x->room], &x->id, a);
            if (rc == 0)
                x->audio = a;
            else
                w_error(rep, "set_audio", rc);
        } else if (what < 14) {
            /* One room at a time, whatever the room. */
            int other = (x->room + 1 + (int)(rand_r(&seed) % (W_ROOMS - 1))) % W_ROOMS;
            rc = shmreg_room_join(h, &ws->rooms[other], &x->id, S("sip:dup@x"), S("Dup"), 1);
            int rc2 = shmreg_room_join(h, &ws->rooms[x->room], &x->id, S("sip:dup@x"), S("Dup"), 1);
            shmreg_id in;
            int rc3 = shmreg_session_room(h, &x->id, &in);
            if (rc != SHMREG_EEXIST || rc2 != SHMREG_EEXIST || rc3 != 0 || !id_eq(&in, &ws->rooms[x->room]))
                w_error(rep, "second join / session_room", rc != SHMREG_EEXIST ? rc : rc2 != SHMREG_EEXIST ? rc2 : rc3 ? rc3 : SHMREG_ECONFLICT);
            rep->eexist_checks++;
        } else {
            /* List a room in place; every entry must be whole. */
            int r = (int)(rand_r(&seed) % W_ROOMS);
            shmreg_participant p;
            uint64_t cur = 0;
            int n = 0;
            shmreg_read_begin(h);
            while ((rc = shmreg_participant_next(h, &ws->rooms[r], &cur, &p)) == 0) {
                n++;
                if (!w_entry_whole(&p))
                    rep->bad_entries++;
            }
            shmreg_read_end(h);
            if (rc != SHMREG_ENOENT || n > W_MAX)
                w_error(rep, "listing", rc == SHMREG_ENOENT ? SHMREG_EFULL : rc);
            rep->listed += n;
        }
    }
    rep->done = 1;
    shmreg_close(h);   /* sessions stay: they belong to the registry */
}

static void test_workers(void)
{
    shmreg *h = open_new("room-workers", 1024, 0, 32);
    ws = test_shared(sizeof *ws);
    for (int r = 0; r < W_ROOMS; r++) {
        char name[16];
        snprintf(name, sizeof name, "conf%d", r);
        ws->rooms[r] = new_room(h, name, W_MAX);
    }
    pid_t pid[W_PROCS];
    for (int k = 0; k < W_PROCS; k++)
        pid[k] = test_fork(worker, (void *)(intptr_t)k);
    test_sleep_us(100000); /* let them create their sessions */
    atomic_store(&ws->go, 1);
    int bad = 0;
    for (int k = 0; k < W_PROCS; k++)
        bad += test_wait(pid[k]) != 0;
    is(bad, 0, "4 workers joined, left, flipped and listed for 2 s and exited cleanly");
    long joins = 0, leaves = 0, full = 0, flips = 0, listed = 0, torn = 0, errors = 0, dup = 0;
    for (int k = 0; k < W_PROCS; k++) {
        struct w_report *r = &ws->r[k];
        joins += r->joins, leaves += r->leaves, full += r->full, flips += r->flips;
        listed += r->listed, torn += r->bad_entries, errors += r->errors, dup += r->eexist_checks;
        if (r->errors)
            diag("worker %d: %ld errors, first: %s", k, r->errors, r->first_error);
        ok(r->done, "worker %d finished its run", k);
    }
    diag("workers: %ld joins, %ld leaves, %ld EFULL, %ld status flips, %ld second-join checks, %ld entries listed",
         joins, leaves, full, flips, dup, listed);
    is(errors, 0, "no operation failed other than joins of a full room");
    is(torn, 0, "no listing ever saw an incomplete entry");
    ok(joins > 1000 && leaves > 1000 && flips > 500 && dup > 100 && listed > 1000,
       "the workers really raced (thousands of joins and leaves)");

    /* Every room's roster is exactly the union of the workers' beliefs. */
    struct roster *ro = malloc(sizeof *ro);
    int exact = 1, counts = 1, fields = 1, where = 1, total = 0;
    for (int r = 0; r < W_ROOMS; r++) {
        roster_take(h, &ws->rooms[r], ro);
        counts &= ro->rc == 0 && ro->participants == ro->n && ro->n <= W_MAX;
        int believed = 0;
        for (int k = 0; k < W_PROCS; k++)
            for (int i = 0; i < W_SESSIONS; i++) {
                const struct w_belief *x = &ws->r[k].b[i];
                if (x->room != r)
                    continue;
                believed++;
                const struct member *m = roster_find(ro, &x->id);
                char uri[64];
                int ulen = snprintf(uri, sizeof uri, "sip:w%d-s%d@conf", k, i);
                if (!m) {
                    exact = 0;
                    continue;
                }
                fields &= m->status == x->status && m->audio == x->audio &&
                          m->uri_len == (size_t)ulen && memcmp(m->uri, uri, (size_t)ulen) == 0 &&
                          m->port == k * 1000 + i;
            }
        exact &= believed == (int)ro->n;
        total += (int)ro->n;
    }
    for (int k = 0; k < W_PROCS; k++)
        for (int i = 0; i < W_SESSIONS; i++) {
            const struct w_belief *x = &ws->r[k].b[i];
            int rc = session_room_is(h, &x->id, x->room >= 0 ? &ws->rooms[x->room] : NULL);
            where &= x->room >= 0 ? rc == 0 : rc == SHMREG_ENOENT;
        }
    ok(exact, "each room's roster is exactly the sessions the workers believe are in it (%d in all)", total);
    ok(counts, "each room's participant count equals its roster length");
    ok(fields, "each entry has the status, audio flag, URI and port its worker last set");
    ok(where, "session_room agrees for all %d sessions", W_PROCS * W_SESSIONS);
    shmreg_check_report rep;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "the registry checks clean afterwards");
    free(ro);
    munmap(ws, sizeof *ws);
    close_destroy(h);
}

/* ------------------------------------------------------------ never over the maximum */

#define R_PROCS 4
#define R_EACH 50
#define R_MAX 16

struct race_shared {
    shmreg_id room;
    atomic_int go, joiners_done, ready;
    struct {
        long ok, full, other;
        shmreg_id won[R_EACH];
    } r[R_PROCS];
    long reader_lists, reader_max_seen, reader_max_count, reader_errors;
};

static struct race_shared *rs;

static void racer(void *arg)
{
    int k = (int)(intptr_t)arg;
    shmreg *h = attach();
    shmreg_id s[R_EACH];
    for (int i = 0; i < R_EACH; i++)
        s[i] = new_session(h);
    atomic_fetch_add(&rs->ready, 1);
    while (!atomic_load(&rs->go))
        ;
    for (int i = 0; i < R_EACH; i++) {
        int rc = shmreg_room_join(h, &rs->room, &s[i], S("sip:racer@x"), S("Racer"), (uint16_t)i);
        if (rc == 0)
            rs->r[k].won[rs->r[k].ok++] = s[i];
        else if (rc == SHMREG_EFULL)
            rs->r[k].full++;
        else
            rs->r[k].other++;
    }
    atomic_fetch_add(&rs->joiners_done, 1);
    shmreg_close(h);
}

static void race_reader(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    atomic_fetch_add(&rs->ready, 1);
    while (!atomic_load(&rs->go))
        ;
    do {
        shmreg_room v;
        shmreg_participant p;
        uint64_t cur = 0;
        long n = 0;
        int rc;
        shmreg_read_begin(h);
        if (shmreg_room_get(h, &rs->room, &v) != 0)
            rs->reader_errors++;
        else if (v.participants > rs->reader_max_count)
            rs->reader_max_count = v.participants;
        while ((rc = shmreg_participant_next(h, &rs->room, &cur, &p)) == 0)
            n++;
        shmreg_read_end(h);
        if (rc != SHMREG_ENOENT)
            rs->reader_errors++;
        if (n > rs->reader_max_seen)
            rs->reader_max_seen = n;
        rs->reader_lists++;
    } while (atomic_load(&rs->joiners_done) < R_PROCS);
    shmreg_close(h);
}

static void test_max_race(void)
{
    shmreg *h = open_new("room-race", 1024, 0, 32);
    rs = test_shared(sizeof *rs);
    rs->room = new_room(h, "sixteen", R_MAX);
    shmreg_room_transition(h, &rs->room, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL);
    pid_t rd = test_fork(race_reader, NULL), pid[R_PROCS];
    for (int k = 0; k < R_PROCS; k++)
        pid[k] = test_fork(racer, (void *)(intptr_t)k);
    while (atomic_load(&rs->ready) < R_PROCS + 1)
        sched_yield();
    atomic_store(&rs->go, 1);
    int bad = 0;
    for (int k = 0; k < R_PROCS; k++)
        bad += test_wait(pid[k]) != 0;
    bad += test_wait(rd) != 0;
    is(bad, 0, "4 processes x 50 sessions raced to join a room of 16, a fifth listed it meanwhile");
    long won = 0, full = 0, other = 0;
    for (int k = 0; k < R_PROCS; k++)
        won += rs->r[k].ok, full += rs->r[k].full, other += rs->r[k].other;
    is(won, R_MAX, "exactly 16 joins succeeded");
    is(full, R_PROCS * R_EACH - R_MAX, "the other 184 got SHMREG_EFULL");
    is(other, 0, "nothing else was returned");
    ok(rs->reader_lists > 0, "the reader listed the roster %ld times while they raced", rs->reader_lists);
    ok(rs->reader_max_seen <= R_MAX, "... never more than 16 entries (at most %ld)", rs->reader_max_seen);
    ok(rs->reader_max_count <= R_MAX, "... and never a count over 16 (at most %ld)", rs->reader_max_count);
    is(rs->reader_errors, 0, "... without an error");
    struct roster *ro = malloc(sizeof *ro);
    roster_take(h, &rs->room, ro);
    is(ro->n, R_MAX, "the final roster has 16 entries");
    is(ro->participants, R_MAX, "... and the room counts 16");
    int winners = 1;
    for (int k = 0; k < R_PROCS; k++)
        for (long i = 0; i < rs->r[k].ok; i++)
            winners &= roster_find(ro, &rs->r[k].won[i]) != NULL;
    ok(winners, "... they are exactly the 16 whose join returned 0");
    free(ro);
    munmap(rs, sizeof *rs);
    close_destroy(h);
}

/* ------------------------------------------------------------ joiners killed */

#define K_KILLS 40
#define K_SESSIONS 24
#define K_ROOMS 3
#define K_MAX 8

struct kill_shared {
    shmreg_id rooms[K_ROOMS];
    shmreg_id sess[K_SESSIONS];
    atomic_int ready;
    atomic_long joins, leaves, flips, unexpected;
    char first[200];
};

static struct kill_shared *ks;

/* The URI names the session and a seed and ends in its own checksum:
 *   sip:<uuid>-<seed>@conf.test;pad=<filler>;ck=<fnv of all before ";ck=">
 * the display name:  Guest <seed> <filler> #<fnv of all before " #">
 * the port: the seed's low 16 bits. */
static size_t k_uri(char *buf, const shmreg_id *sid, unsigned seed)
{
    char t[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(sid, t);
    int n = snprintf(buf, 600, "sip:%s-%08x@conf.test;pad=", t, seed);
    unsigned pad = seed % 300;
    for (unsigned i = 0; i < pad; i++)
        buf[n++] = (char)('a' + (seed + i * 7) % 26);
    uint32_t ck = fnv1a(buf, (size_t)n);
    n += snprintf(buf + n, 20, ";ck=%08x", ck);
    return (size_t)n;
}

static size_t k_disp(char *buf, unsigned seed)
{
    int n = snprintf(buf, 600, "Guest %08x ", seed);
    unsigned pad = (seed >> 9) % 200;
    for (unsigned i = 0; i < pad; i++)
        buf[n++] = (char)('A' + (seed + i * 3) % 26);
    uint32_t ck = fnv1a(buf, (size_t)n);
    n += snprintf(buf + n, 20, " #%08x", ck);
    return (size_t)n;
}

/* 1 when a roster entry has exactly the bytes some joiner wrote. */
static int k_whole(const struct member *m)
{
    char t[SHMREG_ID_TEXT_LEN + 1], want[700];
    unsigned seed;
    shmreg_id_format(&m->session, t);
    if (m->uri_len < 4 + SHMREG_ID_TEXT_LEN + 9 || memcmp(m->uri, "sip:", 4) != 0 ||
        memcmp(m->uri + 4, t, SHMREG_ID_TEXT_LEN) != 0 ||
        sscanf(m->uri + 4 + SHMREG_ID_TEXT_LEN, "-%8x", &seed) != 1)
        return 0;
    size_t n = k_uri(want, &m->session, seed);
    if (n != m->uri_len || memcmp(want, m->uri, n) != 0)
        return 0;
    n = k_disp(want, seed);
    return n == m->disp_len && memcmp(want, m->disp, n) == 0 && m->port == (uint16_t)seed &&
           m->status >= SHMREG_PART_JOINING && m->status <= SHMREG_PART_LEFT;
}

static void k_unexpected(const char *what, int rc)
{
    if (atomic_fetch_add(&ks->unexpected, 1) == 0)
        snprintf(ks->first, sizeof ks->first, "%s: %s (%s)", what, shmreg_strerror(rc), shmreg_errmsg());
}

static void victim(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)now_ns();
    char uri[700], disp[700];
    atomic_store(&ks->ready, 1);
    for (;;) {
        int i = (int)(rand_r(&seed) % K_SESSIONS);
        shmreg_id in;
        int rc = shmreg_session_room(h, &ks->sess[i], &in);
        if (rc == SHMREG_ENOENT) {
            unsigned s = (unsigned)rand_r(&seed) * 2654435761u;
            int r = (int)(rand_r(&seed) % K_ROOMS);
            size_t ul = k_uri(uri, &ks->sess[i], s), dl = k_disp(disp, s);
            rc = shmreg_room_join(h, &ks->rooms[r], &ks->sess[i], (shmreg_str){ uri, ul },
                                  (shmreg_str){ disp, dl }, (uint16_t)s);
            if (rc == 0)
                atomic_fetch_add(&ks->joins, 1);
            else if (rc != SHMREG_EFULL)
                k_unexpected("join of a session in no room", rc);   /* EEXIST: a stale claim blocked it */
        } else if (rc == 0) {
            unsigned what = rand_r(&seed) % 4;
            if (what < 2) {
                rc = shmreg_room_leave(h, &in, &ks->sess[i]);
                if (rc == 0)
                    atomic_fetch_add(&ks->leaves, 1);
                else
                    k_unexpected("leave", rc);
            } else if (what == 2) {
                rc = shmreg_participant_set_status(h, &in, &ks->sess[i], SHMREG_PART_ANY,
                                                   SHMREG_PART_ACTIVE + (int)(rand_r(&seed) % 3), NULL);
                if (rc == 0)
                    atomic_fetch_add(&ks->flips, 1);
                else if (rc != SHMREG_ESTATE)
                    k_unexpected("set_status", rc);
            } else {
                rc = shmreg_participant_set_audio(h, &in, &ks->sess[i], (int)(rand_r(&seed) & 1));
                if (rc != 0)
                    k_unexpected("set_audio", rc);
            }
        } else {
            k_unexpected("session_room", rc);
        }
    }
}

struct k_tally { long torn, miscount, dup, misplaced, listed; char first[200]; };

/* With nobody writing: every roster entry whole, every count equal to its
 * roster, every session on at most one roster and named by session_room. */
static void k_verify(shmreg *h, struct roster *ro, struct k_tally *t)
{
    int where[K_SESSIONS];
    for (int i = 0; i < K_SESSIONS; i++)
        where[i] = -1;
    for (int r = 0; r < K_ROOMS; r++) {
        roster_take(h, &ks->rooms[r], ro);
        if (ro->rc != 0 || ro->participants != ro->n) {
            if (t->miscount++ == 0)
                snprintf(t->first, sizeof t->first, "room %d: rc %d, count %u, roster %u", r, ro->rc,
                         ro->participants, ro->n);
        }
        for (uint32_t e = 0; e < ro->n; e++) {
            t->listed++;
            if (!k_whole(&ro->m[e])) {
                if (t->torn++ == 0)
                    snprintf(t->first, sizeof t->first, "room %d entry %u: uri '%.*s'", r, e,
                             (int)(ro->m[e].uri_len < 80 ? ro->m[e].uri_len : 80), ro->m[e].uri);
                continue;
            }
            int i = 0;
            while (i < K_SESSIONS && !id_eq(&ks->sess[i], &ro->m[e].session))
                i++;
            if (i == K_SESSIONS || where[i] != -1)
                t->dup++;
            else
                where[i] = r;
        }
    }
    for (int i = 0; i < K_SESSIONS; i++) {
        int rc = session_room_is(h, &ks->sess[i], where[i] >= 0 ? &ks->rooms[where[i]] : NULL);
        if (where[i] >= 0 ? rc != 0 : rc != SHMREG_ENOENT)
            t->misplaced++;
    }
}

static void test_killed_joiners(void)
{
    shmreg *h = open_new("room-kill", 256, 32u << 20, 32);
    ks = test_shared(sizeof *ks);
    for (int r = 0; r < K_ROOMS; r++)
        ks->rooms[r] = new_room(h, "crash", K_MAX);
    for (int i = 0; i < K_SESSIONS; i++)
        ks->sess[i] = new_session(h);
    struct roster *ro = malloc(sizeof *ro);
    struct k_tally t;
    memset(&t, 0, sizeof t);
    unsigned seed = (unsigned)now_ns();
    int killed = 0;
    for (int v = 0; v < K_KILLS; v++) {
        atomic_store(&ks->ready, 0);
        pid_t pid = test_fork(victim, NULL);
        double give_up = test_mono_s() + 5;
        while (!atomic_load(&ks->ready) && test_mono_s() < give_up)
            sched_yield();
        test_sleep_us(rand_r(&seed) % 3000);
        kill(pid, SIGKILL);
        killed += test_wait(pid) == 128 + SIGKILL;
        k_verify(h, ro, &t);
    }
    is(killed, K_KILLS, "%d joiners were killed with SIGKILL at random moments", K_KILLS);
    diag("victims: %ld joins, %ld leaves, %ld status flips; %ld roster entries inspected",
         atomic_load(&ks->joins), atomic_load(&ks->leaves), atomic_load(&ks->flips), t.listed);
    ok(atomic_load(&ks->joins) > 100 && atomic_load(&ks->leaves) > 100, "they joined and left hundreds of times");
    if (atomic_load(&ks->unexpected))
        diag("first unexpected result in a victim: %s", ks->first);
    is(atomic_load(&ks->unexpected), 0,
       "no victim met an unexpected error (a session in no room always joined or found the room full)");
    if (t.torn + t.miscount + t.dup + t.misplaced)
        diag("first problem: %s", t.first);
    is(t.torn, 0, "after every kill, every roster entry was whole: URI and display name as written");
    is(t.miscount, 0, "... and every room's count equalled its roster");
    is(t.dup, 0, "... and no session was listed twice");
    is(t.misplaced, 0, "... and session_room agreed with the rosters");

    shmreg_check_report rep;
    int rc = shmreg_check(h, 0, &rep, NULL, NULL, NULL);
    is(rc, 0, "check (no repair) finds no structural problem");
    is(rep.problems, 0, "... 0 problems");
    diag("before repair: %llu leaked blocks, %llu stale handles", (unsigned long long)rep.leaked_blocks,
         (unsigned long long)rep.stale_handles);
    rc = shmreg_check(h, SHMREG_CHECK_REPAIR, &rep, NULL, NULL, NULL);
    is(rc, 0, "check with SHMREG_CHECK_REPAIR succeeds");
    is(rep.problems, 0, "... 0 problems");
    rc = shmreg_check(h, 0, &rep, NULL, NULL, NULL);
    ok(rc == 0 && rep.problems == 0 && rep.leaked_blocks == 0 && rep.stale_handles == 0,
       "a second check is clean: 0 problems, 0 leaked blocks, 0 stale handles");

    /* Every victim session can join again. */
    shmreg_id fresh = new_room(h, "after", K_SESSIONS);
    int rejoined = 0;
    for (int i = 0; i < K_SESSIONS; i++) {
        shmreg_id in;
        if (shmreg_session_room(h, &ks->sess[i], &in) == 0 && shmreg_room_leave(h, &in, &ks->sess[i]) != 0)
            continue;
        rc = shmreg_room_join(h, &fresh, &ks->sess[i], S("sip:back@x"), S("Back"), 1);
        if (rc == 0)
            rejoined++;
        else
            diag("session %d: join after the crashes: %s (%s)", i, shmreg_strerror(rc), shmreg_errmsg());
    }
    is(rejoined, K_SESSIONS, "all %d sessions the victims used join a room again", K_SESSIONS);
    free(ro);
    munmap(ks, sizeof *ks);
    close_destroy(h);
}

/* ------------------------------------------------------------ a joiner dies holding its claim */

/* Deterministic: the heap is full and the joiner has retired memory a
 * reader still pins, so its allocation waits (up to 10 ms) after it has
 * claimed the session and before the participant exists. It is killed in
 * that wait. The participant (2 x 1024 bytes of strings) and the SDPs that
 * fill the heap (2200 bytes) are of one size class, so that freeing SDPs
 * later makes room for a participant (heap pages keep their class). */
#define C_SESSIONS 500
#define C_SDP 2200

struct claim_shared {
    shmreg_id room, session, doomed;
    atomic_int go, joining, returned;
};

static struct claim_shared *cs;

static void claim_victim(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    while (!atomic_load(&cs->go))
        sched_yield();
    shmreg_session_delete(h, &cs->doomed);     /* our limbo now holds its SDPs */
    atomic_store(&cs->joining, 1);
    char uri[SHMREG_MAX_STR];
    memset(uri, 'v', sizeof uri);
    shmreg_room_join(h, &cs->room, &cs->session, (shmreg_str){ uri, sizeof uri },
                     (shmreg_str){ uri, sizeof uri }, 1);
    atomic_store(&cs->returned, 1);
    for (;;)
        pause();
}

static void test_dead_claim(void)
{
    shmreg *h = open_new("room-claim", 1024, 2u << 20, 32);
    cs = test_shared(sizeof *cs);
    cs->room = new_room(h, "claim", 4);
    cs->session = new_session(h);
    static shmreg_id s[C_SESSIONS];
    for (int i = 0; i < C_SESSIONS; i++)
        s[i] = new_session(h);
    static char sdp[C_SDP];
    memset(sdp, 's', sizeof sdp);
    int filled = 0, rc = 0;
    for (int i = 0; i < 2 * C_SESSIONS && rc == 0; i++) {
        rc = shmreg_session_set_sdp(h, &s[i / 2], i % 2, sdp, sizeof sdp);
        filled += rc == 0;
    }
    is(rc, SHMREG_EFULL, "the heap is filled with SDPs until SHMREG_EFULL (%d of %d bytes)", filled, C_SDP);
    cs->doomed = s[0];

    int died_mid_join = 0;
    shmreg_read_begin(h);               /* pins what the victim retires */
    pid_t pid = test_fork(claim_victim, NULL);
    atomic_store(&cs->go, 1);
    double give_up = test_mono_s() + 5;
    while (!atomic_load(&cs->joining) && test_mono_s() < give_up)
        sched_yield();
    test_sleep_us(3000);
    died_mid_join = atomic_load(&cs->joining) && !atomic_load(&cs->returned);
    kill(pid, SIGKILL);
    is(test_wait(pid), 128 + SIGKILL, "a joiner was killed with SIGKILL");
    shmreg_read_end(h);
    ok(died_mid_join, "... inside shmreg_room_join (it had not returned 3 ms after calling it)");
    struct roster *ro = malloc(sizeof *ro);
    roster_take(h, &cs->room, ro);
    ok(ro->n == 0 && ro->participants == 0, "the room has no participant: nothing half-added");
    is(session_room_is(h, &cs->session, NULL), SHMREG_ENOENT, "the session is in no room");

    /* No reap, no check: the next join finds the claim stale by itself
     * (its joiner is dead). Free some heap first so that the join does
     * not depend on what the allocator recovers from the dead process. */
    char uri[SHMREG_MAX_STR];
    memset(uri, 'n', sizeof uri);
    shmreg_str big = { uri, sizeof uri };
    for (int i = 1; i < 64; i++)
        shmreg_session_delete(h, &s[i]);
    rc = shmreg_room_join(h, &cs->room, &cs->session, big, big, 2);
    is(rc, 0, "the session whose joiner died mid-join (holding its claim) joins again");
    if (rc)
        diag("join: %s", shmreg_errmsg());
    roster_take(h, &cs->room, ro);
    ok(ro->n == 1 && ro->participants == 1 && ro->m[0].uri_len == sizeof uri &&
       memcmp(ro->m[0].uri, uri, sizeof uri) == 0 && ro->m[0].port == 2,
       "... the roster holds exactly the new participant");
    shmreg_check_report rep;
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &rep, NULL, NULL, NULL), 0, "check with repair: 0 problems");
    free(ro);
    munmap(cs, sizeof *cs);
    close_destroy(h);
}

/* ------------------------------------------------------------ a leaver dies */

/* Another process takes sessions out of their rooms (shmreg_room_leave)
 * and is killed at random moments. Every session it did not get to is
 * still in its room; every session it took out must be free to join
 * again. Small rooms keep each leave short, so that kills land in all of
 * its steps. */
#define L_ROUNDS 100
#define L_ROOMS 64
#define L_PER_ROOM 16
#define L_SESSIONS (L_ROOMS * L_PER_ROOM)

struct leave_shared {
    shmreg_id room[L_ROOMS], elsewhere;
    shmreg_id sess[L_SESSIONS];
    atomic_int ready;
    atomic_int left;
    _Atomic double took;      /* seconds the leaver needed for all its leaves */
};

static struct leave_shared *ls;

static void leaver(void *arg)
{
    (void)arg;
    shmreg *h = attach();
    atomic_store(&ls->ready, 1);
    double t0 = test_mono_s();
    for (int i = 0; i < L_SESSIONS; i++) {
        if (shmreg_room_leave(h, &ls->room[i / L_PER_ROOM], &ls->sess[i]) == 0)
            atomic_fetch_add(&ls->left, 1);
    }
    atomic_store(&ls->took, test_mono_s() - t0);
    for (;;)
        pause();
}

static void test_killed_leavers(void)
{
    shmreg *h = open_new("room-leave", 2048, 0, 128);
    ls = test_shared(sizeof *ls);
    for (int r = 0; r < L_ROOMS; r++)
        ls->room[r] = new_room(h, "leave", L_PER_ROOM);
    ls->elsewhere = new_room(h, "elsewhere", 4);
    for (int i = 0; i < L_SESSIONS; i++)
        ls->sess[i] = new_session(h);
    unsigned seed = (unsigned)now_ns();
    long stuck = 0, inconsistent = 0, mid = 0, killed = 0;
    double run = 0;
    static char is_stuck[L_SESSIONS];
    char first[200] = "";
    for (int round = 0; round < L_ROUNDS; round++) {
        for (int i = 0; i < L_SESSIONS; i++)
            shmreg_room_join(h, &ls->room[i / L_PER_ROOM], &ls->sess[i], S("sip:l@x"), S("L"), 1);
        atomic_store(&ls->ready, 0);
        atomic_store(&ls->left, 0);
        pid_t pid = test_fork(leaver, NULL);
        while (!atomic_load(&ls->ready))
            sched_yield();
        /* Round 0 times a whole run; later rounds kill at a random
         * point of one (busy-waiting: a sleep is too coarse). */
        if (round == 0) {
            while (atomic_load(&ls->took) == 0)
                sched_yield();
            run = atomic_load(&ls->took);
        } else {
            double until = test_mono_s() + run * (rand_r(&seed) % 1000) / 1000.0;
            while (test_mono_s() < until)
                ;
        }
        kill(pid, SIGKILL);
        killed += test_wait(pid) == 128 + SIGKILL;
        int left = atomic_load(&ls->left);
        mid += left > 0 && left < L_SESSIONS;
        for (int i = 0; i < L_SESSIONS; i++) {
            shmreg_id in;
            int rc = shmreg_session_room(h, &ls->sess[i], &in);
            if (rc == 0) {
                if (!id_eq(&in, &ls->room[i / L_PER_ROOM]))
                    inconsistent++;
                continue;
            }
            rc = shmreg_room_join(h, &ls->elsewhere, &ls->sess[i], S("sip:l2@x"), S("L2"), 2);
            if (rc != 0) {
                if (!is_stuck[i] && stuck++ == 0)
                    snprintf(first, sizeof first, "round %d, session %d (the leaver had left %d): %s (%s)",
                             round, i, left, shmreg_strerror(rc), shmreg_errmsg());
                is_stuck[i] = 1;
            } else {
                shmreg_room_leave(h, &ls->elsewhere, &ls->sess[i]);
            }
        }
    }
    is(killed, L_ROUNDS, "%d leavers were killed with SIGKILL while taking %d sessions out of %d rooms",
       L_ROUNDS, L_SESSIONS, L_ROOMS);
    diag("%ld of them were killed part-way through their leaves (a whole run takes %.0f us)", mid, run * 1e6);
    is(inconsistent, 0, "a session still in a room is in the room it joined");
    if (stuck)
        diag("first session that could not join: %s", first);
    /* LIBRARY BUG (reported to the lead): registry/room.c roster_remove()
     * clears the roster entry, then the session's room word. A leaver
     * killed between the two leaves the word holding the *joiner's* tag;
     * the joiner (this process) is alive, so stale_claim() never treats it
     * as stale and every later join of that session is SHMREG_EEXIST,
     * although session_room says it is in no room. check --repair does not
     * clear it either. */
    is(stuck, 0, "every session in no room can join another room (none stays claimed by a dead leaver)");
    shmreg_check_report rep;
    shmreg_check(h, SHMREG_CHECK_REPAIR, &rep, NULL, NULL, NULL);
    long after = 0;
    for (int i = 0; i < L_SESSIONS; i++) {
        shmreg_id in;
        if (shmreg_session_room(h, &ls->sess[i], &in) == 0)
            continue;
        if (shmreg_room_join(h, &ls->elsewhere, &ls->sess[i], S("sip:l2@x"), S("L2"), 2) != 0)
            after++;
        else
            shmreg_room_leave(h, &ls->elsewhere, &ls->sess[i]);
    }
    is(after, 0, "... and after check with repair, none does");
    munmap(ls, sizeof *ls);
    close_destroy(h);
}

/* A watchdog, not a speed assertion: a deadlock in the library fails
 * the test (naming the section it hung in) instead of hanging the suite. */
static const char *volatile g_section = "start";

static void watchdog(int sig)
{
    (void)sig;
    char buf[300];
    int n = snprintf(buf, sizeof buf, "not ok %d - watchdog: no progress for 30 s in %s (a deadlock?)\n",
                     tap__s.run + 1, g_section);
    if (write(STDOUT_FILENO, buf, (size_t)n) < 0 || write(STDERR_FILENO, buf, (size_t)n) < 0)
        _exit(1);
    _exit(1);
}

#define RUN(fn) (g_section = #fn, alarm(30), fn())

int main(void)
{
    signal(SIGALRM, watchdog);
    RUN(test_tables);
    RUN(test_transitions);
    RUN(test_create);
    RUN(test_join_leave);
    RUN(test_status);
    RUN(test_delete_terminate);
    RUN(test_events);
    RUN(test_in_place);
    RUN(test_workers);
    RUN(test_max_race);
    RUN(test_killed_joiners);
    RUN(test_dead_claim);
    RUN(test_killed_leavers);
    alarm(0);
    return done_testing();
}
