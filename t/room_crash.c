/*
 * room_crash.c — a process killed with SIGKILL while it creates, fills and
 * deletes rooms leaves nothing that a repair cannot finish: after
 * shmreg_check with SHMREG_CHECK_REPAIR no room is half deleted (every
 * room the table holds is listed), a second check finds no leak, the heap
 * returns to its size before the victims, and every session can join a
 * room again.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})
#define SESSIONS 16
#define KILLS 40

static const char *dir;
static shmreg_id sess[SESSIONS];

/* Create a room, join every session, delete the room; forever. */
static void victim(void *arg)
{
    (void)arg;
    shmreg *h;
    if (shmreg_open(dir, NULL, &h) != 0)
        _exit(2);
    for (;;) {
        shmreg_id r;
        if (shmreg_room_create(h, S("doomed"), SESSIONS, &r) != 0)
            continue;
        shmreg_room_transition(h, &r, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL);
        for (int i = 0; i < SESSIONS; i++)
            shmreg_room_join(h, &r, &sess[i], S("sip:v@x"), S("V"), (uint16_t)i);
        shmreg_room_delete(h, &r);
    }
}

static uint32_t rooms_listed(shmreg *h)
{
    uint64_t cur = 0;
    uint32_t n = 0;
    shmreg_room r;
    shmreg_read_begin(h);
    while (shmreg_room_next(h, &cur, &r) == 0)
        n++;
    shmreg_read_end(h);
    return n;
}

int main(void)
{
    dir = test_dir("room_crash");
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 64, .max_rooms = 64};
    if (shmreg_open(dir, &o, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    for (int i = 0; i < SESSIONS; i++)
        shmreg_session_create(h, NULL, &sess[i]);
    shmreg_stats st0;
    shmreg_stat(h, &st0);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    diag("seed %u", seed);
    for (int k = 0; k < KILLS; k++) {
        pid_t pid = test_fork(victim, NULL);
        struct timespec ts = {0, (long)(rand_r(&seed) % 3000) * 1000};
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        test_wait(pid);
    }
    ok(1, "%d room writers were killed with SIGKILL at random moments", KILLS);

    shmreg_check_report r1, r2;
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &r1, NULL, NULL, NULL), 0, "a repairing check returns 0");
    is(r1.problems, 0, "and finds no structural problem");
    diag("repair: %llu leaked, %llu reclaimed, %llu handles reaped", (unsigned long long)r1.leaked_blocks,
         (unsigned long long)r1.reclaimed_blocks, (unsigned long long)r1.reaped_handles);
    is(shmreg_check(h, 0, &r2, NULL, NULL, NULL), 0, "a second check returns 0");
    is(r2.leaked_blocks, 0, "with no leaked block left");
    is(r2.stale_handles, 0, "and no stale handle");

    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.rooms, rooms_listed(h), "every room the table holds is listed: none is half deleted");

    /* Delete what the victims left alive; the heap comes back. */
    uint64_t cur = 0;
    shmreg_room rm;
    shmreg_id left[64];
    int n = 0;
    shmreg_read_begin(h);
    while (n < 64 && shmreg_room_next(h, &cur, &rm) == 0)
        left[n++] = rm.id;
    shmreg_read_end(h);
    int rc = 0;
    for (int i = 0; i < n; i++)
        rc |= shmreg_room_delete(h, &left[i]);
    is(rc, 0, "the %d rooms left alive delete", n);
    shmreg_stat(h, &st);
    is(st.rooms, 0, "no room is left");

    int joined = 0;
    shmreg_id fresh;
    shmreg_room_create(h, S("after"), SESSIONS, &fresh);
    for (int i = 0; i < SESSIONS; i++)
        joined += shmreg_room_join(h, &fresh, &sess[i], S("sip:a@x"), S("A"), 1) == 0;
    is(joined, SESSIONS, "every session joins a new room: no claim of a dead process blocks it");
    shmreg_room_delete(h, &fresh);

    for (int i = 0; i < 1000; i++) { /* let our limbo lists drain */
        shmreg_id t;
        shmreg_room_create(h, S("t"), 1, &t);
        shmreg_room_delete(h, &t);
    }
    shmreg_stat(h, &st);
    is(st.heap_used_bytes - st.heap_retired_bytes, st0.heap_used_bytes - st0.heap_retired_bytes,
       "heap bytes in use (less retired) are back where they were before the victims");

    shmreg_close(h);
    shmreg_destroy(dir, 1);
    return done_testing();
}
