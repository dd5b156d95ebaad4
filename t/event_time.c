/*
 * event_time.c — an event carries the time of its own change, never the
 * time of an earlier change that failed.
 *
 * A change reads the clock once and stamps both the session (updated_ns)
 * and its event with that value. The value used to wait in the handle for
 * the event; a change that stamped and then failed left it there, and the
 * next event of that handle, whatever it was, carried the stale time. The
 * failing change that stamps is a field swap that finds its session
 * deleted meanwhile: the test hook reg_test_after_swap (test library only)
 * deletes the session through a second handle at that very moment. Each
 * aborted change below is followed by a clock read and then by an event
 * of another kind; that event's time must not be earlier than the clock
 * read. The refusals that never stamp (ESTATE, ECONFLICT, EINVAL) are
 * checked the same way, so no abort path can lend its time.
 *
 * A variable set aborted the same way also proves that the new block,
 * published for an instant, is retired for readers that may have seen it
 * rather than freed at once (it used to be freed after the swap had
 * already retired it).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "reg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){(lit), sizeof(lit) - 1})

static shmreg *h, *h2;
static int hook_deletes;

/* Runs inside the swap, after the stamp: delete the session through the
 * other handle, so the swap's "deleted meanwhile" check fires. */
static uint64_t swapped_vars; /* the variables block the hook saw swapped in */

static void delete_now(shmreg *hh, const unsigned char id[SHMREG_ID_BYTES])
{
    uint32_t si;
    uint64_t st;
    if (reg_find(hh, id, &si, &st) == 0)
        swapped_vars = atomic_load(&reg_slot(hh, si)->vars);
    shmreg_id sid;
    memcpy(sid.bytes, id, SHMREG_ID_BYTES);
    reg_test_after_swap = NULL; /* once */
    hook_deletes += shmreg_session_delete(h2, &sid) == 0;
}

static uint64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Drain `sub`; return the time of the last event of `type` (0: none). */
static uint64_t last_time(shmreg_sub *sub, uint32_t type)
{
    shmreg_event ev[64];
    uint64_t t = 0;
    int n;
    while ((n = shmreg_poll(sub, ev, 64, 0, NULL)) > 0)
        for (int i = 0; i < n; i++)
            if (ev[i].type == type)
                t = ev[i].time_ns;
    return t;
}

/* After an aborted change: a clock read, then a custom event and a room
 * creation on the same handle. Both must be stamped after the read. */
static void next_events_are_fresh(shmreg_sub *sub, const char *after)
{
    last_time(sub, 0); /* drop what the abort's neighbours published */
    test_sleep_us(2000); /* a stale time would be >= 2 ms old */
    uint64_t t0 = realtime_ns();
    shmreg_id rid;
    int rc = shmreg_publish(h, NULL, "x", 1);
    uint64_t t_custom = last_time(sub, SHMREG_EV_CUSTOM);
    rc |= shmreg_room_create(h, S("r"), 1, &rid);
    uint64_t t_room = last_time(sub, SHMREG_EV_ROOM_CREATED);
    rc |= shmreg_room_delete(h, &rid);
    ok(rc == 0 && t_custom >= t0 && t_room >= t0,
       "after %s: the next events are stamped after the clock read (custom %+lld ns, room %+lld ns)",
       after, (long long)(t_custom - t0), (long long)(t_room - t0));
}

int main(void)
{
    const char *path = test_dir("event_time");
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 64};
    if (shmreg_open(path, &o, &h) != 0 || shmreg_open(path, NULL, &h2) != 0)
        bail_out("cannot open the registry: %s", shmreg_errmsg());
    shmreg_sub *sub;
    if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("cannot subscribe: %s", shmreg_errmsg());

    /* A swap that stamps, then finds its session deleted. */
    shmreg_id a;
    is(shmreg_session_create(h, NULL, &a), 0, "a session");
    reg_test_after_swap = delete_now;
    is(shmreg_session_set_sdp(h, &a, SHMREG_SDP_LOCAL, "v=0\r\n", 5), SHMREG_ENOENT,
       "set_sdp stamped, then found the session deleted: ENOENT");
    is(hook_deletes, 1, "the hook deleted it through the other handle");
    ok(strstr(shmreg_errmsg(), "deleted meanwhile") != NULL, "errmsg: %s", shmreg_errmsg());
    next_events_are_fresh(sub, "set_sdp aborted after its stamp");

    shmreg_id b;
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_CODEC] = S("opus");
    is(shmreg_session_create(h, NULL, &b), 0, "another session");
    reg_test_after_swap = delete_now;
    is(shmreg_session_update(h, &b, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)), SHMREG_ENOENT,
       "update stamped, then found the session deleted: ENOENT");
    is(hook_deletes, 2, "the hook deleted that one too");
    next_events_are_fresh(sub, "update aborted after its stamp");

    /* A variable set that swaps, then finds its session deleted: the
     * swap has already let go of the new block (retired, for readers
     * that may have seen it); the setter must not free it as well. */
    shmreg_id d;
    is(shmreg_session_create(h, NULL, &d), 0, "a session for a variable");
    reg_test_after_swap = delete_now;
    is(shmreg_session_var_set(h, &d, S("k"), S("v")), SHMREG_ENOENT,
       "var_set swapped, then found the session deleted: ENOENT");
    is(hook_deletes, 3, "the hook deleted it");
    shm_blk *vb = swapped_vars ? shm_blk_at(&h->c.seg, swapped_vars) : NULL;
    ok(vb != NULL && SHM_KIND(atomic_load(&vb->state)) == SHM_BLK_RETIRED,
       "the new variables block is retired, waiting for readers that may have seen it, not freed "
       "at once (state kind %d)", vb ? (int)SHM_KIND(atomic_load(&vb->state)) : -1);
    next_events_are_fresh(sub, "var_set aborted after its swap");
    shmreg_check_report r;
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "then the check is clean");
    ok(r.problems == 0 && r.leaked_blocks == 0, "no problem, no leak (%llu, %llu)",
       (unsigned long long)r.problems, (unsigned long long)r.leaked_blocks);

    /* Refusals that come before any stamp. */
    shmreg_id c;
    is(shmreg_session_create(h, NULL, &c), 0, "a third session");
    is(shmreg_session_transition(h, &c, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATED, NULL),
       SHMREG_ESTATE, "transition refused: ESTATE");
    next_events_are_fresh(sub, "ESTATE");
    is(shmreg_session_transition(h, &c, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL),
       SHMREG_ECONFLICT, "transition refused: ECONFLICT");
    next_events_are_fresh(sub, "ECONFLICT");
    is(shmreg_session_set_sdp(h, &c, SHMREG_SDP_LOCAL, "v=0", SHMREG_MAX_SDP + 1), SHMREG_EINVAL,
       "set_sdp refused: EINVAL");
    next_events_are_fresh(sub, "EINVAL");

    /* And a change that succeeds stamps slot and event alike. */
    is(shmreg_session_transition(h, &c, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL), 0,
       "a transition");
    uint64_t t_ev = last_time(sub, SHMREG_EV_STATE_CHANGED);
    shmreg_session v;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, &c, &v);
    shmreg_read_end(h);
    ok(rc == 0 && t_ev != 0 && v.updated_ns == t_ev, "its event's time is the session's updated_ns");

    shmreg_unsubscribe(sub);
    shmreg_close(h2);
    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
