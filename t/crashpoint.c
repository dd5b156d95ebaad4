/*
 * crashpoint.c — a process stopped at every named crash point (see the
 * table in shm/crashpoint.h) leaves nothing a recovery path cannot finish.
 *
 * Random SIGKILLs (t/crash.c, t/room_crash.c) land where a process spends
 * its time; the windows between "unlinked" and "retired", or inside a
 * free-list step, are a few instructions wide and almost never hit. Here
 * each one is hit for certain: a forked child opens the registry, arms one
 * point, runs the operation and _exit()s exactly there. The child must exit
 * with SHM_CRASH_EXIT, so a point that is no longer reached fails its test
 * instead of passing by default. The parent then proves recovery, with
 * exact figures: the operation's effect is all or nothing as documented, a
 * plain shmreg_check reports exactly the blocks and bytes the crash leaked
 * and the dead handle, a repairing check reaps it and reclaims exactly
 * those blocks, a second check finds nothing, and the registry stays
 * whole: every session slot can be taken again, and once everything is
 * deleted and the handle closed, the heap holds 0 bytes.
 *
 * Each case gets a fresh, small registry so that every figure is its own.
 * Leaked bytes are block sizes: SHM_SLOT_BYTES for a session slot, heap blocks by
 * size class (an info block with no strings is 64 bytes, with a 21-byte
 * from URI 80, a dialog record 96, a one-seat room 96, a three-seat room
 * 112, a participant 96).
 */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crashpoint.h"
#include "shmreg.h"
#include "seg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})
#define MAX_SESSIONS 64
#define SDP_LEN 100

static char path[400];
static shmreg *h;          /* the parent's handle */
static shmreg_id sess[3];  /* sessions the parent made for a case */
static shmreg_id room;
static const char *point;  /* the point being tested, for messages */

/* ------------------------------------------------------------ registry */

static void fresh(uint32_t max_handles)
{
    snprintf(path, sizeof path, "%s", test_dir("crashpoint"));
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = MAX_SESSIONS,
                        .max_handles = max_handles, .max_rooms = 32, .event_records = 64,
                        .heap_bytes = 8u << 20};
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("create %s: %s", path, shmreg_errmsg());
}

/* The record blocks (fields and SDPs, 48 bytes of header, 32 of block
 * header, rounded up to a heap class) that the expected leaks below count:
 * an empty session's, op_create_fields' (one URI), and make_sessions'
 * (an SDP of SDP_LEN bytes, with or without op_update0's URI). */
#define REC_EMPTY 80u
#define REC_FIELDS 112u
#define REC_MADE 192u

static void make_sessions(int n, int with_dialog)
{
    char sdp[SDP_LEN];
    memset(sdp, 'v', sizeof sdp);
    for (int i = 0; i < n; i++) {
        char cid[24];
        snprintf(cid, sizeof cid, "call-%d", i);
        if (shmreg_session_create(h, NULL, &sess[i]) != 0 ||
            shmreg_session_set_sdp(h, &sess[i], SHMREG_SDP_LOCAL, sdp, sizeof sdp) != 0 ||
            (with_dialog && shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, S("lt"), S("rt"),
                                               &sess[i]) != 0))
            bail_out("%s: setup: %s", point, shmreg_errmsg());
    }
}

static void make_room(int joined)
{
    if (shmreg_room_create(h, S("r"), 3, &room) != 0)
        bail_out("%s: room: %s", point, shmreg_errmsg());
    for (int i = 0; i < joined; i++)
        if (shmreg_room_join(h, &room, &sess[i], S("sip:p@x"), S("P"), 4000) != 0)
            bail_out("%s: join: %s", point, shmreg_errmsg());
}

static uint32_t stat_of(size_t field_off)
{
    shmreg_stats st;
    memset(&st, 0, sizeof st);
    shmreg_stat(h, &st);
    return *(uint32_t *)((char *)&st + field_off);
}
#define STAT(f) stat_of(offsetof(shmreg_stats, f))

static int key_found(const char *cid)
{
    shmreg_id got;
    return shmreg_dialog_find(h, (shmreg_str){cid, strlen(cid)}, S("lt"), S("rt"), &got) == 0;
}

static int dialog_found(int i)
{
    char cid[24];
    snprintf(cid, sizeof cid, "call-%d", i);
    return key_found(cid);
}

static int session_found(int i)
{
    shmreg_session v;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, &sess[i], &v);
    shmreg_read_end(h);
    return rc == 0;
}

static unsigned ndialogs(int i)
{
    shmreg_session v;
    shmreg_read_begin(h);
    unsigned n = shmreg_session_get(h, &sess[i], &v) == 0 ? v.ndialogs : 99;
    shmreg_read_end(h);
    return n;
}

static uint32_t participants(void)
{
    shmreg_room r;
    shmreg_read_begin(h);
    uint32_t n = shmreg_room_get(h, &room, &r) == 0 ? r.participants : 99;
    shmreg_read_end(h);
    return n;
}

/* ------------------------------------------------------------ the crash */

typedef void (*op_fn)(shmreg *c);
static op_fn child_op;
static int arm_before_open;

static void child(void *arg)
{
    (void)arg;
    shmreg *c = NULL;
    if (arm_before_open)
        shm_crash_arm(point);
    if (shmreg_open(path, NULL, &c) != 0)
        _exit(2);
    shm_crash_arm(point);
    child_op(c);
    _exit(0); /* the point was not reached */
}

/* Run `op` in a child with `name` armed; it must stop exactly there. */
static void crash_at(const char *name, op_fn op)
{
    point = name;
    child_op = op;
    pid_t pid = test_fork(child, NULL);
    is(test_wait(pid), SHM_CRASH_EXIT, "%s: the child stopped at the crash point", name);
    arm_before_open = 0;
}

/* A child that must stop at `name` while it runs `op`, after `first`
 * crashed at its own point: for crashes inside a recovery path. */
static void crash_twice(const char *first, op_fn op1, const char *name, op_fn op2)
{
    crash_at(first, op1);
    crash_at(name, op2);
}

/* ------------------------------------------------------------ recovery */

typedef struct expect {
    uint64_t leaked, bytes;  /* what a plain check reports */
    uint64_t reaped;         /* dead handles a repairing check clears */
    uint64_t reclaimed;      /* blocks it gives back */
} expect;

static void problem_diag(void *arg, const char *what)
{
    (void)arg;
    diag("%s: problem: %s", point, what);
}

static void recover(expect e)
{
    shmreg_check_report r0, r1, r2;
    is(shmreg_check(h, 0, &r0, problem_diag, NULL, NULL), 0, "%s: a plain check returns 0", point);
    is(r0.problems, 0, "%s: no structural problem", point);
    is(r0.leaked_blocks, e.leaked, "%s: it reports %llu leaked block(s)", point,
       (unsigned long long)e.leaked);
    is(r0.leaked_bytes, e.bytes, "%s: of %llu bytes", point, (unsigned long long)e.bytes);
    is(r0.stale_handles, e.reaped, "%s: and %llu dead handle(s)", point, (unsigned long long)e.reaped);
    is(r0.reclaimed_blocks + r0.reaped_handles, 0, "%s: and changes nothing", point);

    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &r1, problem_diag, NULL, NULL), 0,
       "%s: a repairing check returns 0", point);
    is(r1.reaped_handles, e.reaped, "%s: it reaps %llu handle(s)", point, (unsigned long long)e.reaped);
    is(r1.reclaimed_blocks, e.reclaimed, "%s: and reclaims %llu block(s)", point,
       (unsigned long long)e.reclaimed);

    is(shmreg_check(h, 0, &r2, problem_diag, NULL, NULL), 0, "%s: a second check returns 0", point);
    ok(r2.problems == 0 && r2.leaked_blocks == 0 && r2.leaked_bytes == 0 && r2.stale_handles == 0,
       "%s: and finds nothing: %llu problems, %llu leaked, %llu stale", point,
       (unsigned long long)r2.problems, (unsigned long long)r2.leaked_blocks,
       (unsigned long long)r2.stale_handles);
}

/* The registry is whole: every slot can be taken, a dialog bound and a
 * room joined; after deleting everything and closing, the heap is empty. */
static void still_usable(void)
{
    static shmreg_id all[MAX_SESSIONS];
    int made = 0, rc = 0;
    uint64_t cur = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, 0, &v) == 0)
        rc |= shmreg_session_delete(h, &v.id);
    shmreg_room rm;
    cur = 0;
    while (shmreg_room_next(h, &cur, &rm) == 0)
        rc |= shmreg_room_delete(h, &rm.id);
    shmreg_read_end(h);
    while (made < MAX_SESSIONS && shmreg_session_create(h, NULL, &all[made]) == 0)
        made++;
    shmreg_id extra, r;
    is(made, MAX_SESSIONS, "%s: all %d session slots can be taken afterwards", point, MAX_SESSIONS);
    is(shmreg_session_create(h, NULL, &extra), SHMREG_EFULL, "%s: and not one more", point);
    rc |= shmreg_dialog_bind(h, S("after"), S("a"), S("b"), &all[0]);
    rc |= shmreg_room_create(h, S("after"), 1, &r);
    rc |= shmreg_room_join(h, &r, &all[1], S("sip:a@x"), S("A"), 1);
    rc |= shmreg_room_delete(h, &r);
    for (int i = 0; i < made; i++)
        rc |= shmreg_session_delete(h, &all[i]);
    is(rc, 0, "%s: deleting what was left, binding, joining and deleting again all work", point);
    shmreg_close(h);
    if (shmreg_open(path, NULL, &h) != 0)
        bail_out("reopen: %s", shmreg_errmsg());
    shmreg_stats st;
    shmreg_stat(h, &st);
    ok(st.heap_used_bytes == 0 && st.heap_retired_bytes == 0 && st.sessions == 0 && st.rooms == 0,
       "%s: then the heap holds 0 bytes (%llu, %llu retired), 0 sessions, 0 rooms", point,
       (unsigned long long)st.heap_used_bytes, (unsigned long long)st.heap_retired_bytes);
    shmreg_close(h);
    shmreg_destroy(path, 1);
    h = NULL;
}

/* ------------------------------------------------------------ operations */

static void op_create(shmreg *c)
{
    shmreg_id id;
    shmreg_session_create(c, NULL, &id);
}

static void op_create_bound(shmreg *c)
{
    shmreg_id id;
    shmreg_session_create_bound(c, NULL, S("call-b"), S("lt"), S("rt"), &id);
}

static void op_create_fields(shmreg *c)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:crash@example.org");
    shmreg_id id;
    shmreg_session_create(c, &f, &id);
}

static void op_delete0(shmreg *c) { shmreg_session_delete(c, &sess[0]); }
static void op_publish_batch5(shmreg *c)
{
    const void *data[5] = {"b0", "b1", "b2", "b3", "b4"};
    const size_t len[5] = {2, 2, 2, 2, 2};
    shmreg_publish_batch(c, NULL, data, len, 5);
}
static void op_reap(shmreg *c) { shmreg_reap(c); }
static void op_close(shmreg *c) { shmreg_close(c); }
static void op_repair(shmreg *c) { shmreg_check(c, SHMREG_CHECK_REPAIR, NULL, NULL, NULL, NULL); }

/* Delete a session of our own, then give its blocks back to the free lists
 * (a repairing check reclaims at its end): what follows pops them. */
static void op_recycle_then_create(shmreg *c)
{
    shmreg_id id;
    shm_crash_arm(NULL);
    shmreg_session_create(c, NULL, &id);
    shmreg_session_delete(c, &id);
    shmreg_check(c, SHMREG_CHECK_REPAIR, NULL, NULL, NULL, NULL);
    shm_crash_arm(point);
    shmreg_session_create(c, NULL, &id);
}

/* Delete sess[0] (its slot, info and SDP go to our limbo), then close:
 * closing frees them, one free-list push each. */
static void op_delete_then_close(shmreg *c)
{
    shm_crash_arm(NULL);
    shmreg_session_delete(c, &sess[0]);
    shm_crash_arm(point);
    shmreg_close(c);
}

static void op_update0(shmreg *c)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:new@example.org");
    shmreg_session_update(c, &sess[0], &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI));
}

static void op_bind0(shmreg *c) { shmreg_dialog_bind(c, S("call-new"), S("lt"), S("rt"), &sess[0]); }
static void op_unbind0(shmreg *c) { shmreg_dialog_unbind(c, S("call-0"), S("lt"), S("rt")); }

static void op_room_create(shmreg *c)
{
    shmreg_id r;
    shmreg_room_create(c, S("r"), 1, &r);
}

static void op_room_delete(shmreg *c) { shmreg_room_delete(c, &room); }
static void op_leave0(shmreg *c) { shmreg_room_leave(c, &room, &sess[0]); }
static void op_join2(shmreg *c) { shmreg_room_join(c, &room, &sess[2], S("sip:j@x"), S("J"), 5); }

/* ------------------------------------------------------------ allocator */

static void t_alloc(void)
{
    /* Free-list push, both halves: list_recover finishes it (FREEING ->
     * FREE, linked once) when the next process takes the list's lock. */
    static const char *const push[] = {"alloc_push_freeing", "alloc_push_linked"};
    for (int i = 0; i < 2; i++) {
        fresh(8);
        make_sessions(2, 0);
        crash_at(push[i], op_delete_then_close);
        ok(!session_found(0) && session_found(1), "%s: the delete before the close stands", point);
        /* The dead handle's limbo still holds what it did not free: a
         * plain check marks it; the reap frees it. Nothing leaks. */
        recover((expect){0, 0, 1, 0});
        still_usable();
    }

    /* Pop, stamped but still at the head: undone. */
    fresh(8);
    crash_at("alloc_pop_stamped", op_recycle_then_create);
    is(STAT(sessions), 0, "%s: no session was created", point);
    recover((expect){0, 0, 1, 0});
    still_usable();

    /* Pop, unlinked: the slot is the dead process's; the check reclaims it. */
    fresh(8);
    crash_at("alloc_pop_unlinked", op_recycle_then_create);
    is(STAT(sessions), 0, "%s: no session was created", point);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    still_usable();

    /* A page given a class but never counted: taken again by the next. */
    fresh(8);
    crash_at("alloc_page_assigned", op_create_fields);
    is(STAT(sessions), 0, "%s: no session was created", point);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    still_usable();

    /* A page counted but never made current: shm_pages_repair carves all
     * of it onto its free list. */
    fresh(8);
    crash_at("alloc_page_counted", op_create_fields);
    shmreg_check_report a, b;
    shmreg_check(h, 0, &a, NULL, NULL, NULL);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    shmreg_check(h, 0, &b, NULL, NULL, NULL);
    is(b.heap_blocks_free - a.heap_blocks_free, 256u * 1024u / REC_FIELDS,
       "%s: the lost page's 2340 blocks of %u bytes are carved onto its free list", point, REC_FIELDS);
    still_usable();

    /* A block stamped but not counted as carved: invisible, carved again. */
    fresh(8);
    crash_at("alloc_carve_stamped", op_create_fields);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    still_usable();

    fresh(8);
    crash_at("alloc_slot_stamped", op_create);
    recover((expect){0, 0, 1, 0});
    still_usable();

    /* Dying inside shm_pages_repair itself: one block carved off the page
     * and not yet listed is the dead repairer's, and the next repair both
     * finishes the page and reclaims that block. */
    fresh(8);
    crash_twice("alloc_page_counted", op_create_fields, "alloc_pages_repair_carved", op_repair);
    recover((expect){2, SHM_SLOT_BYTES + REC_FIELDS, 1, 2});
    still_usable();
}

/* ------------------------------------------------------------ epochs */

static void t_epoch(void)
{
    /* Retired but not yet on a limbo list: the sweep takes it (RETIRED,
     * dead tag); the half-deleted session is finished. */
    fresh(8);
    make_sessions(1, 0);
    crash_at("epoch_retire_marked", op_delete0);
    ok(!session_found(0), "%s: the session is gone (deletion had begun)", point);
    recover((expect){2, SHM_SLOT_BYTES + REC_MADE, 1, 2});
    still_usable();

    /* On the limbo list, counters not yet bumped. */
    fresh(8);
    make_sessions(1, 0);
    crash_at("epoch_retire_listed", op_delete0);
    ok(!session_found(0), "%s: the session is gone", point);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    still_usable();

    /* Unlinked from limbo, not yet freed: RETIRED with a dead tag. The
     * queue frees oldest first, so the stranded block is the first the
     * delete retired, the session's record. */
    fresh(8);
    make_sessions(1, 0);
    crash_at("epoch_reclaim_unlinked", op_delete_then_close);
    recover((expect){1, REC_MADE, 1, 1});
    still_usable();

    fresh(8);
    arm_before_open = 1;
    crash_at("epoch_claim_claiming", op_close);
    recover((expect){0, 0, 1, 0});
    still_usable();

    fresh(8);
    make_sessions(1, 0);
    crash_at("epoch_release_reclaimed", op_delete_then_close);
    recover((expect){0, 0, 1, 0});
    still_usable();

    /* A reaper dies after marking a dead handle ORPHAN, before bumping its
     * incarnation: the dead one's tags stay dead, the next reap finishes. */
    fresh(8);
    crash_twice("session_create_slot", op_create, "epoch_reap_orphaned", op_reap);
    recover((expect){1, SHM_SLOT_BYTES, 1, 1});
    still_usable();

    /* A reaper dies after retiring a dead handle's intent block, before
     * clearing the intent: the block is retired once, not twice. */
    fresh(8);
    make_sessions(1, 0);
    crash_twice("session_swap_swapped", op_update0, "epoch_intent_resolved", op_reap);
    recover((expect){0, 0, 1, 0});
    still_usable();
}

/* Orphan limbo adoption: a closed handle whose retired blocks a reader
 * still pins is ORPHAN; with no free slot, the next opener adopts it. */
static void deleter(void *arg)
{
    (void)arg;
    shmreg *c;
    if (shmreg_open(path, NULL, &c) != 0 || shmreg_session_delete(c, &sess[0]) != 0)
        _exit(2);
    shmreg_close(c); /* the reader pins what it retired: ORPHAN */
}

static void opener(void *arg)
{
    (void)arg;
    shmreg *c;
    if (shmreg_open(path, NULL, &c) != 0)
        _exit(2);
    shmreg_close(c);
}

static int orphans(void)
{
    uint64_t cur = 0;
    shmreg_handle_info hi;
    int n = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0)
        n += hi.pid == 0;
    return n;
}

static void t_adopt(void)
{
    fresh(3);
    make_sessions(1, 0);
    test_pin p;
    test_pin_start(&p, path);
    ok(p.pid > 0, "adopt: a reader holds a read section");
    is(test_wait(test_fork(deleter, NULL)), 0, "adopt: a writer deletes a session and closes");
    is(orphans(), 1, "adopt: its handle is an orphan holding the retired blocks");

    arm_before_open = 1;
    crash_at("epoch_adopt_retagged", op_close);
    is(orphans(), 0, "%s: the crashed opener had taken the orphan slot", point);
    shmreg_check_report r;
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &r, problem_diag, NULL, NULL), 0,
       "%s: a repairing check returns 0", point);
    ok(r.reaped_handles == 1 && r.leaked_blocks == 0 && r.reclaimed_blocks == 0,
       "%s: reaps the dead opener (%llu), leaks nothing (%llu)", point,
       (unsigned long long)r.reaped_handles, (unsigned long long)r.leaked_blocks);
    is(orphans(), 1, "%s: the slot is an orphan again: the reader still pins its blocks", point);
    is(test_wait(test_fork(opener, NULL)), 0, "adopt: a new opener adopts the orphan and closes");
    is(orphans(), 1, "adopt: which leaves it an orphan again");
    is(test_pin_release(&p), 0, "adopt: the reader leaves and closes");
    recover((expect){0, 0, 0, 0});
    is(orphans(), 0, "adopt: the orphan's blocks were freed and its slot released");
    still_usable();
}

/* ------------------------------------------------------------ sessions */

static void t_session(void)
{
    /* Create: nothing is published until the final state store; the
     * dead creator's slot (and blocks) are reclaimed. */
    static const struct { const char *p; expect e; } create[] = {
        {"session_create_slot", {1, SHM_SLOT_BYTES, 1, 1}},
        {"session_create_info", {2, SHM_SLOT_BYTES + REC_EMPTY, 1, 2}},
        {"session_create_linked", {2, SHM_SLOT_BYTES + REC_EMPTY, 1, 1}},
    };
    for (int i = 0; i < 3; i++) {
        fresh(8);
        crash_at(create[i].p, op_create);
        is(STAT(sessions), 0, "%s: no session exists", point);
        recover(create[i].e);
        still_usable();
    }

    /* Update: the swap is the commit; the unlinked old block is retired by
     * whoever reaps the dead writer (its intent), not leaked. */
    fresh(8);
    make_sessions(1, 0);
    crash_at("session_swap_swapped", op_update0);
    shmreg_session v;
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &sess[0], &v) == 0 && v.str[SHMREG_FIELD_FROM_URI].len == 19,
       "%s: the update is complete", point);
    shmreg_read_end(h);
    recover((expect){1, REC_MADE, 1, 0});
    still_usable();

    /* Delete, at each step: the session is gone from the moment its state
     * says deleted; the repair finishes the rest (dialog, blocks, index,
     * slot), which every step leaves in a state it can finish. */
    static const char *const del[] = {"session_delete_marked", "session_delete_dialogs",
                                      "session_delete_blocks", "session_delete_unlinked"};
    for (int i = 0; i < 4; i++) {
        fresh(8);
        make_sessions(2, 1);
        crash_at(del[i], op_delete0);
        ok(!session_found(0) && session_found(1) && dialog_found(1),
           "%s: the session is gone, the other session and its dialog are intact", point);
        is(STAT(sessions), 1, "%s: one session is counted", point);
        recover((expect){1, SHM_SLOT_BYTES, 1, 1});
        ok(!dialog_found(0) && dialog_found(1), "%s: after the repair its dialog is gone too", point);
        is(STAT(dialogs), 1, "%s: one dialog is left", point);
        still_usable();
    }
}

/* ------------------------------------------------------------ dialogs */

static void t_dialog(void)
{
    fresh(8);
    make_sessions(1, 1);
    crash_at("dialog_bind_allocated", op_bind0);
    is(ndialogs(0), 1, "%s: the bind did not happen", point);
    recover((expect){1, 96, 1, 1});
    still_usable();

    /* Named by the session, never linked into the index: the check
     * finds the leftover and its repair undoes the bind. */
    fresh(8);
    make_sessions(1, 1);
    crash_at("dialog_bind_referenced", op_bind0);
    ok(!key_found("call-new") && dialog_found(0), "%s: the new key is not findable, the old one is", point);
    is(ndialogs(0), 2, "%s: until the repair, the session names the half-bound record", point);
    recover((expect){1, 96, 1, 1});
    is(ndialogs(0), 1, "%s: after it, only the old dialog", point);
    is(shmreg_dialog_bind(h, S("call-new"), S("lt"), S("rt"), &sess[0]), 0, "%s: the new key binds", point);
    still_usable();

    /* Unlinked from the index, still named by the session: the repair
     * completes the unbind. */
    fresh(8);
    make_sessions(1, 1);
    crash_at("dialog_unbind_unlinked", op_unbind0);
    ok(!dialog_found(0), "%s: the dialog is no longer findable", point);
    is(ndialogs(0), 1, "%s: until the repair, the session still names it", point);
    recover((expect){1, 96, 1, 1});
    is(ndialogs(0), 0, "%s: after it, the unbind is complete", point);
    is(shmreg_dialog_bind(h, S("call-0"), S("lt"), S("rt"), &sess[0]), 0,
       "%s: the key can be bound again (the stripe lock was recovered)", point);
    still_usable();

    /* Unlinked and unreferenced, not retired: the intent says whose. */
    fresh(8);
    make_sessions(1, 1);
    crash_at("dialog_unbind_claimed", op_unbind0);
    ok(!dialog_found(0) && ndialogs(0) == 0, "%s: the unbind is complete", point);
    recover((expect){1, 96, 1, 0});
    still_usable();

    /* A create bound to its dialog, dead with the key's record made and
     * named by the unpublished slot: nothing was seen; the repair gives
     * back the slot, the record and the dialog record, and the key is
     * free (its stripe lock recovered). */
    fresh(8);
    crash_at("session_create_dialog", op_create_bound);
    is(STAT(sessions), 0, "%s: no session exists", point);
    ok(!key_found("call-b"), "%s: the key is not bound", point);
    recover((expect){3, SHM_SLOT_BYTES + REC_EMPTY + 96, 1, 1}); /* as session_create_linked: the slot repair frees the rest */
    shmreg_id nb;
    is(shmreg_session_create_bound(h, NULL, S("call-b"), S("lt"), S("rt"), &nb), 0, "%s: the key binds again", point);
    still_usable();

    /* Dead after the publication, before the link: a live session naming
     * a record no chain holds (as dialog_bind_referenced); the reap
     * announces the session, the repair undoes the half bind. */
    fresh(8);
    crash_at("session_create_published", op_create_bound);
    is(STAT(sessions), 1, "%s: the session is live", point);
    ok(!key_found("call-b"), "%s: its key is not findable yet", point);
    recover((expect){1, 96, 1, 1});
    is(STAT(dialogs), 0, "%s: after the repair it has no dialog", point);
    is(shmreg_dialog_bind(h, S("call-b"), S("lt"), S("rt"), &nb), SHMREG_ENOENT,
       "%s: (a bind needs a session: the key itself is free)", point);
    still_usable();
}

/* ------------------------------------------------------------ rooms */

static void t_room(void)
{
    fresh(8);
    crash_at("room_create_allocated", op_room_create);
    is(STAT(rooms), 0, "%s: no room exists", point);
    recover((expect){1, 96, 1, 1});
    still_usable();

    /* Delete, before and after clearing the roster: finished by the
     * repair (the room's state word names the dead deleter). */
    static const char *const del[] = {"room_delete_marked", "room_delete_roster_cleared"};
    for (int i = 0; i < 2; i++) {
        fresh(8);
        make_sessions(2, 0);
        make_room(2);
        crash_at(del[i], op_room_delete);
        shmreg_room r;
        shmreg_read_begin(h);
        is(shmreg_room_get(h, &room, &r), SHMREG_ENOENT, "%s: the room is gone", point);
        shmreg_read_end(h);
        recover((expect){1, 112, 1, 1});
        shmreg_id in;
        is(shmreg_session_room(h, &sess[0], &in), SHMREG_ENOENT, "%s: its sessions are in no room", point);
        is(STAT(rooms), 0, "%s: no room is counted", point);
        still_usable();
    }

    /* Leave: before the roster entry is cleared nothing happened; after,
     * the leave is complete and the participant is retired through the
     * dead leaver's intent. Either way the session can join again. */
    fresh(8);
    make_sessions(2, 0);
    make_room(2);
    crash_at("room_remove_claimed", op_leave0);
    is(participants(), 2, "%s: the leave did not happen", point);
    recover((expect){0, 0, 1, 0});
    is(shmreg_room_leave(h, &room, &sess[0]), 0, "%s: the session can leave", point);
    is(shmreg_room_join(h, &room, &sess[0], S("sip:p@x"), S("P"), 1), 0, "%s: and join again", point);
    still_usable();

    fresh(8);
    make_sessions(2, 0);
    make_room(2);
    crash_at("room_remove_cleared", op_leave0);
    shmreg_id in;
    ok(participants() == 1 && shmreg_session_room(h, &sess[0], &in) == SHMREG_ENOENT,
       "%s: the leave is complete", point);
    recover((expect){1, 96, 1, 0});
    is(shmreg_room_join(h, &room, &sess[0], S("sip:p@x"), S("P"), 1), 0,
       "%s: the session joins again (the dead leaver's claim is stale)", point);
    still_usable();

    /* Join: claimed and allocated leave no participant; published is the
     * commit. */
    static const struct { const char *p; uint32_t parts; expect e; } join[] = {
        {"room_join_claimed", 2, {0, 0, 1, 0}},
        {"room_join_allocated", 2, {1, 96, 1, 1}},
        {"room_join_published", 3, {0, 0, 1, 0}},
    };
    for (int i = 0; i < 3; i++) {
        fresh(8);
        make_sessions(3, 0);
        make_room(2);
        crash_at(join[i].p, op_join2);
        is(participants(), join[i].parts, "%s: %u participants", point, join[i].parts);
        recover(join[i].e);
        int rc = shmreg_room_join(h, &room, &sess[2], S("sip:p@x"), S("P"), 1);
        is(rc, join[i].parts == 3 ? SHMREG_EEXIST : 0, "%s: joining again: %s", point,
           join[i].parts == 3 ? "already in" : "joins");
        still_usable();
    }
}

/* ------------------------------------------------------------ events */

static void t_ring(void)
{
    /* A producer dies between claiming a sequence number and committing:
     * the session change stands; a subscriber skips the hole and gets
     * the next event; the slot is stolen back when the ring laps. */
    static const char *const pts[] = {"ring_publish_claimed", "ring_publish_marked",
                                      "ring_commit_filled"};
    for (int i = 0; i < 3; i++) {
        fresh(8);
        shmreg_sub *sub;
        if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
            bail_out("subscribe: %s", shmreg_errmsg());
        crash_at(pts[i], op_create);
        is(STAT(sessions), 1, "%s: the session was created", point);
        make_sessions(1, 0);
        shmreg_event ev[4];
        uint64_t missed = 0;
        int n = shmreg_poll(sub, ev, 4, 1000000000, &missed);
        ok(n >= 1 && ev[0].type == SHMREG_EV_SESSION_CREATED && missed == 1,
           "%s: the subscriber skips the dead record and gets the next (%d, %llu missed)", point, n,
           (unsigned long long)missed);
        shmreg_sub_stats ss;
        shmreg_sub_stats_get(sub, &ss);
        is(ss.skipped, 1, "%s: counted as skipped", point);
        for (int k = 0; k < 70; k++)
            shmreg_publish(h, NULL, "x", 1);
        shmreg_stats st;
        shmreg_stat(h, &st);
        is(st.events_stolen, i == 0 ? 0 : 1, "%s: %s", point,
           i == 0 ? "the slot was never marked: nothing to steal" : "the dead mark is stolen back");
        shmreg_unsubscribe(sub);
        recover((expect){0, 0, 1, 0});
        still_usable();
    }

    /* A batch publisher dies with its 5 numbers claimed, unmarked or
     * marked: a subscriber skips all 5 and gets the next event. */
    static const char *const bpts[] = {"ring_batch_claimed", "ring_batch_marked"};
    for (int i = 0; i < 2; i++) {
        fresh(8);
        shmreg_sub *sub;
        if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
            bail_out("subscribe: %s", shmreg_errmsg());
        crash_at(bpts[i], op_publish_batch5);
        shmreg_publish(h, NULL, "after", 5);
        shmreg_event ev[8];
        uint64_t missed = 0;
        int n = shmreg_poll(sub, ev, 8, 1000000000, &missed);
        ok(n == 1 && ev[0].len == 5 && memcmp(ev[0].data, "after", 5) == 0 && missed == 5,
           "%s: the subscriber skips the 5 dead records and gets the next (%d, %llu missed)", point, n,
           (unsigned long long)missed);
        shmreg_sub_stats ss;
        shmreg_sub_stats_get(sub, &ss);
        is(ss.skipped, 5, "%s: all 5 counted as skipped", point);
        shmreg_unsubscribe(sub);
        recover((expect){0, 0, 1, 0});
        still_usable();
    }
}

/* ------------------------------------------------------------ call control */

#define HOUR_NS (3600ull * 1000000000ull)
static uint64_t clock_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void op_join_trunk(shmreg *c) { shmreg_profile_join(c, &sess[0], S("trunk"), S("a"), 5, NULL); }
static void op_leave_trunk(shmreg *c) { shmreg_profile_leave(c, &sess[0], S("trunk"), S("a")); }
static void op_fail0(shmreg *c) { shmreg_session_transition(c, &sess[0], 0, SHMREG_STATE_FAILED, NULL); }
static void op_arm(shmreg *c)
{
    shmreg_session_set_timeout(c, &sess[0], clock_ns() + HOUR_NS, SHMREG_TIMEOUT_FAIL, 0);
}
static void op_expire(shmreg *c)
{
    shmreg_expired out[4];
    shmreg_expire(c, 0, out, 4);
}

static uint64_t trunk_count(void)
{
    uint64_t n = 99;
    shmreg_profile_count(h, S("trunk"), S("a"), &n);
    return n;
}

static void t_control(void)
{
    /* A join killed with its membership listed but not yet counted: the
     * list is the truth, and the next taker of the lock recounts. */
    fresh(8);
    make_sessions(2, 0);
    crash_at("profile_join_listed", op_join_trunk);
    recover((expect){0, 0, 1, 0});
    is(trunk_count(), 1, "%s: the pair counts its one member", point);
    is(shmreg_profile_join(h, &sess[1], S("trunk"), S("a"), 2, NULL), 0,
       "%s: a second join under a limit of 2 gets in", point);
    is(shmreg_profile_join(h, &sess[0], S("trunk"), S("a"), 2, NULL), SHMREG_EEXIST,
       "%s: the first session is a member: EEXIST", point);
    is(trunk_count(), 2, "%s: 2 members", point);
    still_usable();

    /* A leave killed after taking the member off the list: it is out
     * (the pair, empty, left the index), its word is cleared by delete. */
    fresh(8);
    make_sessions(1, 0);
    is(shmreg_profile_join(h, &sess[0], S("trunk"), S("a"), 5, NULL), 0, "leave: joined");
    crash_at("profile_leave_unlisted", op_leave_trunk);
    recover((expect){0, 0, 1, 0});
    is(trunk_count(), 0, "%s: the pair is empty", point);
    is(shmreg_profile_leave(h, &sess[0], S("trunk"), S("a")), SHMREG_ENOENT,
       "%s: a second leave finds no membership", point);
    still_usable();

    /* A move to a final state killed before its call left its pairs:
     * the pair still lists it, but the next join refused at the limit
     * recounts, drops the call that is over and announces it, and gets
     * in; the delete after that has nothing left to announce. */
    fresh(8);
    make_sessions(3, 0);
    is(shmreg_profile_join(h, &sess[0], S("trunk"), S("a"), 2, NULL) |
       shmreg_profile_join(h, &sess[1], S("trunk"), S("a"), 2, NULL), 0, "final: two members, limit 2");
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_PROFILE_LEFT) | SHMREG_EV_MASK(SHMREG_EV_PROFILE_JOINED),
                         NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    crash_at("session_transition_final", op_fail0);
    recover((expect){0, 0, 1, 0});
    is(trunk_count(), 2, "%s: the pair still lists the call that is over: 2", point);
    uint64_t cnt = 0;
    is(shmreg_profile_join(h, &sess[2], S("trunk"), S("a"), 2, &cnt), 0,
       "%s: a third join under the limit of 2 gets in (the recount dropped it)", point);
    is(cnt, 2, "%s: ... *count 2", point);
    shmreg_event ev[8];
    int n = test_drain_events(sub, ev, 8);
    ok(n == 2 && ev[0].type == SHMREG_EV_PROFILE_LEFT && test_id_eq(&ev[0].session, &sess[0]) &&
       ev[0].which == 1 && ev[1].type == SHMREG_EV_PROFILE_JOINED && test_id_eq(&ev[1].session, &sess[2]) &&
       ev[1].which == 2, "%s: profile_left (the dropped call, count 1), then profile_joined (2): %d events",
       point, n);
    is(shmreg_session_delete(h, &sess[0]), 0, "%s: the call that is over is deleted", point);
    is(test_drain_events(sub, ev, 8), 0, "%s: its delete announces no second profile_left", point);
    is(trunk_count(), 2, "%s: 2 members", point);
    shmreg_unsubscribe(sub);
    still_usable();

    /* An arm killed with its timer in the wheel but not yet the
     * session's: the session has no timeout; the sweep drops the stray. */
    fresh(8);
    make_sessions(1, 0);
    crash_at("timer_arm_bucketed", op_arm);
    recover((expect){0, 0, 1, 0});
    shmreg_session v;
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &sess[0], &v) == 0 && v.deadline_ns == 0, "%s: no timeout armed", point);
    shmreg_read_end(h);
    shmreg_expired out[4];
    is(shmreg_expire(h, clock_ns() + 2 * HOUR_NS, out, 4), 0, "%s: a sweep past it fires nothing", point);
    still_usable();

    /* A sweep killed after the action, before "fired": the next sweep
     * takes the dead claim over, finds the session final, and fires
     * nothing twice. */
    fresh(8);
    make_sessions(1, 0);
    is(shmreg_session_set_timeout(h, &sess[0], 1, SHMREG_TIMEOUT_FAIL, 0), 0, "fire: a deadline long past");
    crash_at("timer_fire_acted", op_expire);
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &sess[0], &v) == 0 && v.state == SHMREG_STATE_FAILED,
       "%s: the session is Failed", point);
    shmreg_read_end(h);
    recover((expect){0, 0, 1, 0});
    is(shmreg_expire(h, 0, out, 4), 0, "%s: the next sweep fires nothing again", point);
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &sess[0], &v) == 0 && v.deadline_ns == 0, "%s: and no timeout is left", point);
    shmreg_read_end(h);
    still_usable();
}

/* ------------------------------------------------------------ announcing
 *
 * A change a process was killed in after it became visible, before its
 * version and event: the reaper announces it (registry/reg.h,
 * reg_dead_note), or a follower of events (shmreg-sync) would never
 * store or mirror it. */

/* The events waiting for `sub`, into ev[0..max); their count. */
static int drain_events(shmreg_sub *sub, shmreg_event *ev, int max)
{
    int n = 0, got;
    while (n < max && (got = shmreg_poll(sub, ev + n, (unsigned)(max - n), 0, NULL)) > 0)
        n += got;
    return n;
}


/* One event, of `type`, for `id` (NULL: any), published by this process. */
static void one_event(shmreg_sub *sub, uint32_t type, const shmreg_id *id, uint32_t which, uint64_t version)
{
    shmreg_event ev[8];
    int n = drain_events(sub, ev, 8);
    is(n, 1, "%s: the reap publishes exactly one event", point);
    if (n < 1)
        return;
    is(ev[0].type, type, "%s: of type %u", point, type);
    ok(id == NULL || memcmp(ev[0].session.bytes, id->bytes, SHMREG_ID_BYTES) == 0,
       "%s: for the session the dead process changed", point);
    is(ev[0].which, which, "%s: which %u", point, which);
    is(ev[0].pid, (int32_t)getpid(), "%s: published by the reaper", point);
    is(ev[0].version, version, "%s: carrying the version it moved the session to (%llu)", point,
       (unsigned long long)version);
}

static void op_update_done(shmreg *c)
{
    op_update0(c);
    _exit(SHM_CRASH_EXIT); /* killed after the change returned: nothing to announce */
}

static void t_announce(void)
{
    shmreg_sub *sub;
    shmreg_event ev[8];

    /* Update: swapped, neither version nor event. */
    fresh(8);
    make_sessions(1, 0);
    uint64_t v0 = test_session_version(h, &sess[0]);
    if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    crash_at("session_swap_swapped", op_update0);
    is(drain_events(sub, ev, 8), 0, "%s: the dead writer announced nothing", point);
    is(test_session_version(h, &sess[0]), v0, "%s: nor moved the version (%llu)", point, (unsigned long long)v0);
    is(shmreg_reap(h), 1, "%s: its handle is reaped", point);
    one_event(sub, SHMREG_EV_SESSION_UPDATED, &sess[0], SHMREG_MASK_ALL, v0 + 1);
    is(test_session_version(h, &sess[0]), v0 + 1, "%s: and the version moved on once", point);
    is(shmreg_reap(h), 0, "%s: a second reap has nothing to do", point);
    is(drain_events(sub, ev, 8), 0, "%s: and announces nothing", point);

    /* The reaper killed after announcing, before clearing the note: the
     * next reaper announces it again. Nothing lost; one event too many. */
    crash_at("session_swap_swapped", op_update0);
    uint64_t v1 = test_session_version(h, &sess[0]);
    crash_at("epoch_reap_noted", op_reap);
    is(drain_events(sub, ev, 8), 1, "%s: the dead reaper had announced the change", point);
    is(ev[0].version, v1 + 1, "%s: with version %llu", point, (unsigned long long)(v1 + 1));
    is(test_session_version(h, &sess[0]), v1 + 1, "%s: and moved the version", point);
    ok(shmreg_reap(h) >= 1, "%s: the next reap clears both handles", point);
    one_event(sub, SHMREG_EV_SESSION_UPDATED, &sess[0], SHMREG_MASK_ALL, v1 + 2);
    is(test_session_version(h, &sess[0]), v1 + 2, "%s: the version moved on again (never back)", point);

    /* A change that returned before the kill left no note. */
    point = "killed after an update returned";
    child_op = op_update_done;
    is(test_wait(test_fork(child, NULL)), SHM_CRASH_EXIT, "%s: the child made its change", point);
    is(drain_events(sub, ev, 8), 1, "%s: which it announced itself", point);
    uint64_t v2 = test_session_version(h, &sess[0]);
    is(shmreg_reap(h), 1, "%s: its handle is reaped", point);
    is(drain_events(sub, ev, 8), 0, "%s: with nothing announced again", point);
    is(test_session_version(h, &sess[0]), v2, "%s: nor the version moved", point);
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    test_rm_rf(path);

    /* Create: live, not announced. */
    fresh(8);
    if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    crash_at("session_create_published", op_create);
    is(drain_events(sub, ev, 8), 0, "%s: the dead creator announced nothing", point);
    is(STAT(sessions), 1, "%s: its session is live", point);
    shmreg_session v;
    uint64_t cur = 0;
    shmreg_read_begin(h);
    int found = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v);
    shmreg_read_end(h);
    is(found, 0, "%s: and found by a walk", point);
    is(v.version, 1, "%s: version 1", point);
    is(shmreg_reap(h), 1, "%s: its handle is reaped", point);
    one_event(sub, SHMREG_EV_SESSION_UPDATED, &v.id, SHMREG_MASK_ALL, 2);
    is(test_session_version(h, &v.id), 2, "%s: version 2", point);
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    test_rm_rf(path);

    /* Delete: marked deleted, not announced. */
    fresh(8);
    make_sessions(2, 0);
    if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    uint64_t vd = test_session_version(h, &sess[0]);
    crash_at("session_delete_marked", op_delete0);
    is(drain_events(sub, ev, 8), 0, "%s: the dead deleter announced nothing", point);
    is(shmreg_reap(h), 1, "%s: its handle is reaped", point);
    one_event(sub, SHMREG_EV_SESSION_DELETED, &sess[0], 0, vd + 1);
    shmreg_unsubscribe(sub);
    recover((expect){1, SHM_SLOT_BYTES, 0, 1});
    still_usable();
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    t_alloc();
    t_epoch();
    t_adopt();
    t_session();
    t_dialog();
    t_room();
    t_ring();
    t_control();
    t_announce();
    return done_testing();
}
