/*
 * room_crash_roster.c — rosters after joiners and leavers are killed with
 * SIGKILL at random moments (t/room_crash.c does the same to processes
 * that create and delete whole rooms).
 *
 * Killed joiners never leave a half-added participant, a count that
 * disagrees with the roster, or a claim that blocks a later join; a joiner
 * killed while it holds its claim (deterministically, inside the
 * allocation wait of a full heap) leaves a session that joins again
 * without a repair; a leaver killed part-way leaves every session either
 * in its room or free to join another.
 *
 * Participants written by the crash victims are self-checking: the URI
 * names the session and a seed and ends in an FNV-1a checksum of itself,
 * the display name repeats the seed and carries its own checksum, and the
 * RTP port is derived from the seed. A roster entry with any other bytes
 * is a half-written participant.
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

#include "reg.h"
#include "shmreg.h"
#include "selfcheck.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

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
static int k_whole(const test_member *m)
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
    shmreg *h = test_reg_attach();
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)test_now_ns();
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
static void k_verify(shmreg *h, test_roster *ro, struct k_tally *t)
{
    int where[K_SESSIONS];
    for (int i = 0; i < K_SESSIONS; i++)
        where[i] = -1;
    for (int r = 0; r < K_ROOMS; r++) {
        test_roster_take(h, &ks->rooms[r], ro);
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
            while (i < K_SESSIONS && !test_id_eq(&ks->sess[i], &ro->m[e].session))
                i++;
            if (i == K_SESSIONS || where[i] != -1)
                t->dup++;
            else
                where[i] = r;
        }
    }
    for (int i = 0; i < K_SESSIONS; i++) {
        int rc = test_session_room_is(h, &ks->sess[i], where[i] >= 0 ? &ks->rooms[where[i]] : NULL);
        if (where[i] >= 0 ? rc != 0 : rc != SHMREG_ENOENT)
            t->misplaced++;
    }
}

static void test_killed_joiners(void)
{
    shmreg *h = test_reg_new("room-kill", 256, 32u << 20, 32);
    ks = test_shared(sizeof *ks);
    for (int r = 0; r < K_ROOMS; r++)
        ks->rooms[r] = test_room_new(h, "crash", K_MAX);
    for (int i = 0; i < K_SESSIONS; i++)
        ks->sess[i] = test_session_new(h);
    test_roster *ro = malloc(sizeof *ro);
    struct k_tally t;
    memset(&t, 0, sizeof t);
    unsigned seed = (unsigned)test_now_ns();
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
    shmreg_id fresh = test_room_new(h, "after", K_SESSIONS);
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
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ a joiner dies holding its claim */

/* Deterministic: the heap is full and the joiner has retired memory a
 * reader still pins, so its allocation waits (up to 10 ms) after it has
 * claimed the session and before the participant exists. It is killed in
 * that wait. The participant (2 x 1024 bytes of strings) and the session
 * records that fill the heap (one SDP of 2200 bytes each) are of one size
 * class, so that freeing records later makes room for a participant (heap
 * pages keep their class). One SDP per session: a second would build
 * records of a bigger class and free the one-SDP records, leaving room. */
#define C_SESSIONS 1000
#define C_SDP 2200

struct claim_shared {
    shmreg_id room, session, doomed;
    atomic_int go, joining, returned;
};

static struct claim_shared *cs;

static void claim_victim(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
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

/* The session's room word: non-zero once a joiner has claimed it (read
 * from the slot: the public API shows participants, not claims). The
 * caller is in a read section. */
static uint64_t room_word(shmreg *h, const shmreg_id *id)
{
    uint32_t si;
    uint64_t st;
    return reg_find(h, id->bytes, &si, &st) == 0 ? atomic_load(&reg_slot(h, si)->room) : 0;
}

static void test_dead_claim(void)
{
    shmreg *h = test_reg_new("room-claim", 1024, 2u << 20, 32);
    cs = test_shared(sizeof *cs);
    cs->room = test_room_new(h, "claim", 4);
    cs->session = test_session_new(h);
    static shmreg_id s[C_SESSIONS];
    for (int i = 0; i < C_SESSIONS; i++)
        s[i] = test_session_new(h);
    static char sdp[C_SDP];
    memset(sdp, 's', sizeof sdp);
    int filled = 0, rc = 0;
    for (int i = 0; i < C_SESSIONS && rc == 0; i++) {
        rc = shmreg_session_set_sdp(h, &s[i], SHMREG_SDP_LOCAL, sdp, sizeof sdp);
        filled += rc == 0;
    }
    is(rc, SHMREG_EFULL, "the heap is filled with SDPs until SHMREG_EFULL (%d of %d bytes)", filled, C_SDP);
    cs->doomed = s[0];

    int died_mid_join = 0;
    shmreg_read_begin(h);               /* pins what the victim retires */
    pid_t pid = test_fork(claim_victim, NULL);
    atomic_store(&cs->go, 1);
    /* Kill it as soon as its claim is visible: from then on it sits in
     * the allocation wait of the full heap (10 ms) before it can return.
     * Waiting a fixed time instead lost the race to a loaded scheduler. */
    double give_up = test_mono_s() + 5;
    while (room_word(h, &cs->session) == 0 && !atomic_load(&cs->returned) &&
           test_mono_s() < give_up)
        sched_yield();
    died_mid_join = atomic_load(&cs->joining) && room_word(h, &cs->session) != 0 &&
                    !atomic_load(&cs->returned);
    kill(pid, SIGKILL);
    is(test_wait(pid), 128 + SIGKILL, "a joiner was killed with SIGKILL");
    shmreg_read_end(h);
    ok(died_mid_join, "... inside shmreg_room_join, holding its claim (it had not returned)");
    test_roster *ro = malloc(sizeof *ro);
    test_roster_take(h, &cs->room, ro);
    ok(ro->n == 0 && ro->participants == 0, "the room has no participant: nothing half-added");
    is(test_session_room_is(h, &cs->session, NULL), SHMREG_ENOENT, "the session is in no room");

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
    test_roster_take(h, &cs->room, ro);
    ok(ro->n == 1 && ro->participants == 1 && ro->m[0].uri_len == sizeof uri &&
       memcmp(ro->m[0].uri, uri, sizeof uri) == 0 && ro->m[0].port == 2,
       "... the roster holds exactly the new participant");
    shmreg_check_report rep;
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &rep, NULL, NULL, NULL), 0, "check with repair: 0 problems");
    free(ro);
    munmap(cs, sizeof *cs);
    test_reg_destroy(h);
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
    shmreg *h = test_reg_attach();
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
    shmreg *h = test_reg_new("room-leave", 2048, 0, 128);
    ls = test_shared(sizeof *ls);
    for (int r = 0; r < L_ROOMS; r++)
        ls->room[r] = test_room_new(h, "leave", L_PER_ROOM);
    ls->elsewhere = test_room_new(h, "elsewhere", 4);
    for (int i = 0; i < L_SESSIONS; i++)
        ls->sess[i] = test_session_new(h);
    unsigned seed = (unsigned)test_now_ns();
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
                if (!test_id_eq(&in, &ls->room[i / L_PER_ROOM]))
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
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_killed_joiners);
    TEST_RUN(test_dead_claim);
    TEST_RUN(test_killed_leavers);
    alarm(0);
    return done_testing();
}
