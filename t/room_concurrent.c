/*
 * room_concurrent.c — conference rooms under several processes at once,
 * all sharing the real mapping.
 *
 * Four workers joining and leaving the same rooms end with rosters that
 * are exactly the union of what each believes; a room of 16 is never more
 * than 16 however many race for it; one process's status flips are seen
 * by another inside a read section whose URI pointer never moves, and
 * joins and leaves go on while that section is open. Single-process
 * behaviour: t/room.c; crashes: t/room_crash_roster.c.
 */
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

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
    shmreg *h = test_reg_attach();
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
    shmreg *h = test_reg_attach();
    shmreg_id me = test_session_new(h);
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
    shmreg *h = test_reg_new("room-inplace", 64, 0, 32);
    fs = test_shared(sizeof *fs);
    fs->session = test_session_new(h);
    fs->room = test_room_new(h, "in place", 8);
    char uri[600], disp[300];
    for (size_t i = 0; i < sizeof uri; i++)
        uri[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof disp; i++)
        disp[i] = (char)('A' + i % 26);
    shmreg_room_join(h, &fs->room, &fs->session, (shmreg_str){ uri, sizeof uri },
                     (shmreg_str){ disp, sizeof disp }, 4242);
    shmreg_id other = test_session_new(h);
    shmreg_room_join(h, &fs->room, &other, S("sip:other@x"), S("Other"), 1);

    shmreg_read_begin(h);
    shmreg_participant p0, p;
    uint64_t cur = 0;
    int rc = shmreg_participant_next(h, &fs->room, &cur, &p0);
    is(rc, 0, "read the participant in place, and keep the read section open");
    ok(rc == 0 && test_id_eq(&p0.session, &fs->session) && test_str_is(p0.uri, uri, sizeof uri),
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
        if (shmreg_participant_next(h, &fs->room, &cur, &p) != 0 || !test_id_eq(&p.session, &fs->session)) {
            status_ok = 0;
            break;
        }
        same_ptr &= p.uri.ptr == p0.uri.ptr && p.display_name.ptr == p0.display_name.ptr;
        same_bytes &= test_str_is(p0.uri, uri, sizeof uri) && test_str_is(p.uri, uri, sizeof uri) &&
                      test_str_is(p.display_name, disp, sizeof disp);
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
    test_reg_destroy(h);
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
    shmreg *h = test_reg_attach();
    unsigned seed = (unsigned)getpid() * 2654435761u;
    struct w_belief *b = rep->b;
    for (int i = 0; i < W_SESSIONS; i++) {
        b[i].id = test_session_new(h);
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
            rc = shmreg_room_join(h, &ws->rooms[r], &x->id, test_ss(uri), test_ss(disp), (uint16_t)(k * 1000 + i));
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
            if (rc != SHMREG_EEXIST || rc2 != SHMREG_EEXIST || rc3 != 0 || !test_id_eq(&in, &ws->rooms[x->room]))
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
    shmreg *h = test_reg_new("room-workers", 1024, 0, 32);
    ws = test_shared(sizeof *ws);
    for (int r = 0; r < W_ROOMS; r++) {
        char name[16];
        snprintf(name, sizeof name, "conf%d", r);
        ws->rooms[r] = test_room_new(h, name, W_MAX);
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
    test_roster *ro = malloc(sizeof *ro);
    int exact = 1, counts = 1, fields = 1, where = 1, total = 0;
    for (int r = 0; r < W_ROOMS; r++) {
        test_roster_take(h, &ws->rooms[r], ro);
        counts &= ro->rc == 0 && ro->participants == ro->n && ro->n <= W_MAX;
        int believed = 0;
        for (int k = 0; k < W_PROCS; k++)
            for (int i = 0; i < W_SESSIONS; i++) {
                const struct w_belief *x = &ws->r[k].b[i];
                if (x->room != r)
                    continue;
                believed++;
                const test_member *m = test_roster_find(ro, &x->id);
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
            int rc = test_session_room_is(h, &x->id, x->room >= 0 ? &ws->rooms[x->room] : NULL);
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
    test_reg_destroy(h);
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
    shmreg *h = test_reg_attach();
    shmreg_id s[R_EACH];
    for (int i = 0; i < R_EACH; i++)
        s[i] = test_session_new(h);
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
    shmreg *h = test_reg_attach();
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
    shmreg *h = test_reg_new("room-race", 1024, 0, 32);
    rs = test_shared(sizeof *rs);
    rs->room = test_room_new(h, "sixteen", R_MAX);
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
    test_roster *ro = malloc(sizeof *ro);
    test_roster_take(h, &rs->room, ro);
    is(ro->n, R_MAX, "the final roster has 16 entries");
    is(ro->participants, R_MAX, "... and the room counts 16");
    int winners = 1;
    for (int k = 0; k < R_PROCS; k++)
        for (long i = 0; i < rs->r[k].ok; i++)
            winners &= test_roster_find(ro, &rs->r[k].won[i]) != NULL;
    ok(winners, "... they are exactly the 16 whose join returned 0");
    free(ro);
    munmap(rs, sizeof *rs);
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_in_place);
    TEST_RUN(test_workers);
    TEST_RUN(test_max_race);
    alarm(0);
    return done_testing();
}
