/*
 * coverage_api.c — every refusal of the session, dialog, room, event and
 * registry calls: each bad argument, missing object and forbidden
 * transition gets its documented error code, and none of them changes
 * anything (the registry's figures are the same before and after the
 * whole run of refusals, and a check finds it clean).
 *
 * Why one sweep: the other tests exercise what works; these are the lines
 * `make coverage` showed no test reaching, and an error path that never
 * ran is one whose code nobody has checked.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ring.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})

static shmreg *h;
static shmreg_id sess, other, room;
static char big[SHMREG_MAX_SDP + 2];

static void t_names(void)
{
    for (int e = 0; e >= -16; e--)
        ok(shmreg_strerror(e) && *shmreg_strerror(e), "shmreg_strerror(%d) names it", e);
    ok(shmreg_strerror(-99) != NULL, "an unknown code still gets a string");
    static const int ring_codes[] = {0, SHM_RING_EINVAL, SHM_RING_ECORRUPT, SHM_RING_EVERSION, SHM_RING_ESYS,
                                     SHM_RING_EBUSY, SHM_RING_ETIMEDOUT, SHM_RING_EINTR};
    int named = 0;
    for (unsigned i = 0; i < sizeof ring_codes / sizeof ring_codes[0]; i++)
        named += strcmp(shm_ring_strerror(ring_codes[i]), "unknown error") != 0;
    is(named, 8, "the event ring names each of its 8 codes");
    is_str(shm_ring_strerror(-99), "unknown error", "and not others");
    ok(shmreg_room_state_name(-1) == NULL && shmreg_room_state_name(SHMREG_ROOM_STATE_COUNT) == NULL,
       "room state names out of range: NULL");
    ok(shmreg_part_status_name(-1) == NULL && shmreg_part_status_name(SHMREG_PART_STATUS_COUNT) == NULL,
       "participant status names out of range: NULL");
    is_str(shmreg_room_state_name(SHMREG_ROOM_LOCKED), "Locked", "room state 3 is Locked");
    is_str(shmreg_part_status_name(SHMREG_PART_LEFT), "Left", "status 6 is Left");
    /* The room table, row by row. */
    int allowed = 0;
    for (int f = 0; f < SHMREG_ROOM_STATE_COUNT; f++)
        for (int t = 0; t < SHMREG_ROOM_STATE_COUNT; t++)
            allowed += shmreg_room_state_allowed(f, t);
    is(allowed, 6, "the room state table allows exactly 6 transitions");
    ok(shmreg_room_state_allowed(SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED) &&
       shmreg_room_state_allowed(SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE) &&
       !shmreg_room_state_allowed(SHMREG_ROOM_TERMINATED, SHMREG_ROOM_ACTIVE),
       "Active <-> Locked, nothing out of Terminated");
    ok(!shmreg_part_status_allowed(SHMREG_PART_LEFT, SHMREG_PART_ACTIVE) &&
       !shmreg_part_status_allowed(SHMREG_PART_ACTIVE, SHMREG_PART_ACTIVE) &&
       shmreg_part_status_allowed(SHMREG_PART_JOINING, SHMREG_PART_LEFT),
       "participant: nothing out of Left, no self-transition, Joining -> Left");
    uint32_t type;
    is(shmreg_event_parse("no_such_event", &type), SHMREG_EINVAL, "an unknown event name: EINVAL");
    ok(shmreg_event_name(0) == NULL && shmreg_event_name(SHMREG_EV_TYPE_COUNT) == NULL,
       "event names out of range: NULL");
    int st;
    is(shmreg_state_parse("Nonsense", &st), SHMREG_EINVAL, "an unknown state name: EINVAL");
    shmreg_id id;
    is(shmreg_id_parse("not-an-id", 9, &id), SHMREG_EINVAL, "a malformed ID: EINVAL");
}

static void t_open(void)
{
    shmreg *x = (shmreg *)1;
    is(shmreg_open(NULL, NULL, &x), SHMREG_EINVAL, "open NULL path: EINVAL");
    ok(x == NULL, "and *out is set to NULL");
    is(shmreg_open("", NULL, &x), SHMREG_EINVAL, "open empty path: EINVAL");
    is(shmreg_open("/tmp", NULL, NULL), SHMREG_EINVAL, "open NULL out: EINVAL");
    char *longp = malloc(PATH_MAX + 1);
    memset(longp, 'a', PATH_MAX);
    longp[PATH_MAX] = 0;
    is(shmreg_open(longp, NULL, &x), SHMREG_EINVAL, "open a path over PATH_MAX - 64: EINVAL");
    free(longp);
    const char *p = test_dir("coverage-open");
    is(shmreg_open(p, &(shmreg_options){.flags = 0x100}, &x), SHMREG_EINVAL, "unknown flags: EINVAL");
    is(shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .max_handles = SHMREG_MAX_HANDLES + 1}, &x),
       SHMREG_EINVAL, "max_handles over the ceiling: EINVAL");
    is(shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .event_records = 100}, &x), SHMREG_EINVAL,
       "event_records not a power of two: EINVAL");
    is(shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 1u << 27}, &x),
       SHMREG_EINVAL, "a capacity out of range: EINVAL");
    is(shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .group = "no-such-group-xyz"}, &x),
       SHMREG_EPERM, "an unknown group: EPERM");
    test_rm_rf(p);
    /* A registry directory whose segment is not a file of ours. */
    char seg[512];
    p = test_dir("coverage-seg");
    snprintf(seg, sizeof seg, "%s/segment", p);
    ok(mkdir(p, 0700) == 0 && mkdir(seg, 0700) == 0, "a registry directory whose segment is a directory");
    is(shmreg_open(p, NULL, &x), SHMREG_ESYS, "open: ESYS (cannot open it read-write)");
    rmdir(seg);
    int fd = open(seg, O_WRONLY | O_CREAT, 0600);
    close(fd);
    is(shmreg_open(p, NULL, &x), SHMREG_EVERSION, "an empty segment file: EVERSION");
    is(shmreg_destroy(p, 0), SHMREG_EVERSION, "destroy refuses a directory that is not a registry");
    test_rm_rf(p);
    is(shmreg_destroy(NULL, 0), SHMREG_EINVAL, "destroy NULL: EINVAL");
    is(shmreg_close(NULL), 0, "close NULL: 0");
    ok(shmreg_path(NULL) == NULL, "path of NULL: NULL");
    is(shmreg_config_gen(NULL), 0, "config_gen of NULL: 0");
    is(shmreg_stat(NULL, NULL), SHMREG_EINVAL, "stat NULL handle: EINVAL");
    is(shmreg_stat(h, NULL), SHMREG_EINVAL, "stat NULL out: EINVAL");
    uint64_t cur = 0;
    is(shmreg_handle_next(h, NULL, NULL), SHMREG_EINVAL, "handle_next NULL: EINVAL");
    shmreg_handle_info hi;
    cur = UINT64_MAX;
    is(shmreg_handle_next(h, &cur, &hi), SHMREG_ENOENT, "handle_next past the end: ENOENT");
    is(shmreg_check(h, 0x80, NULL, NULL, NULL, NULL), SHMREG_EINVAL, "check with unknown flags: EINVAL");
    is(shmreg_read_end(h), SHMREG_EINVAL, "read_end without a section: EINVAL");
}

static void t_sessions(void)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    shmreg_id id;
    is(shmreg_session_create(h, NULL, NULL), SHMREG_EINVAL, "create NULL id_out: EINVAL");
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){big, SHMREG_MAX_STR + 1};
    is(shmreg_session_create(h, &f, &id), SHMREG_EINVAL, "create with a string over the limit: EINVAL");
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){NULL, 3};
    is(shmreg_session_create(h, &f, &id), SHMREG_EINVAL, "create with a length and no bytes: EINVAL");
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:a@b");
    is(shmreg_session_update(h, &sess, &f, 1u << 30), SHMREG_EINVAL, "update with unknown mask bits: EINVAL");
    is(shmreg_session_update(h, &sess, &f, 0), SHMREG_EINVAL, "update with an empty mask: EINVAL");
    is(shmreg_session_update(h, NULL, &f, 1), SHMREG_EINVAL, "update NULL id: EINVAL");
    memset(&id, 0x5a, sizeof id);
    is(shmreg_session_update(h, &id, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI)), SHMREG_ENOENT,
       "update an unknown session: ENOENT");
    is(shmreg_session_set_sdp(h, &sess, 7, "v=0", 3), SHMREG_EINVAL, "set_sdp of side 7: EINVAL");
    is(shmreg_session_set_sdp(h, NULL, SHMREG_SDP_LOCAL, "v=0", 3), SHMREG_EINVAL, "set_sdp NULL id: EINVAL");
    is(shmreg_session_set_sdp(h, &sess, SHMREG_SDP_LOCAL, big, SHMREG_MAX_SDP + 1), SHMREG_EINVAL,
       "set_sdp over the limit: EINVAL");
    is(shmreg_session_set_sdp(h, &sess, SHMREG_SDP_LOCAL, NULL, 4), SHMREG_EINVAL,
       "set_sdp NULL body with a length: EINVAL");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0", 3), SHMREG_ENOENT,
       "set_sdp of an unknown session: ENOENT");
    is(shmreg_session_transition(h, NULL, 0, 2, NULL), SHMREG_EINVAL, "transition NULL id: EINVAL");
    is(shmreg_session_transition(h, &sess, -1, 2, NULL), SHMREG_EINVAL, "transition from state -1: EINVAL");
    is(shmreg_session_transition(h, &sess, 0, SHMREG_STATE_COUNT, NULL), SHMREG_EINVAL,
       "transition to state 10: EINVAL");
    int old = -1;
    is(shmreg_session_transition(h, &sess, SHMREG_STATE_FAILED, SHMREG_STATE_RINGING, &old),
       SHMREG_ECONFLICT, "transition expecting the wrong state: ECONFLICT");
    is(old, SHMREG_STATE_INITIATING, "and *old says Initiating");
    is(shmreg_session_transition(h, &sess, SHMREG_STATE_INITIATING, SHMREG_STATE_INITIATING, NULL),
       SHMREG_ESTATE, "Initiating -> Initiating: ESTATE");
    is(shmreg_session_transition(h, &id, 0, 2, NULL), SHMREG_ENOENT, "transition an unknown session: ENOENT");
    is(shmreg_session_counter_add(h, &sess, SHMREG_CTR_COUNT, 1), SHMREG_EINVAL, "an unknown counter: EINVAL");
    is(shmreg_session_counter_add(h, NULL, 0, 1), SHMREG_EINVAL, "counter_add NULL id: EINVAL");
    is(shmreg_session_delete(h, NULL), SHMREG_EINVAL, "delete NULL id: EINVAL");
    is(shmreg_session_delete(h, &id), SHMREG_ENOENT, "delete an unknown session: ENOENT");
    shmreg_session v;
    is(shmreg_session_get(h, &sess, &v), SHMREG_ENOREAD, "get outside a read section: ENOREAD");
    uint64_t cur = 0;
    is(shmreg_session_next(h, &cur, 0, &v), SHMREG_ENOREAD, "next outside a read section: ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_session_get(h, NULL, &v), SHMREG_EINVAL, "get NULL id: EINVAL");
    is(shmreg_session_next(h, &cur, SHMREG_STATE_COUNT, &v), SHMREG_EINVAL, "next with filter 10: EINVAL");
    is(shmreg_session_next(h, NULL, 0, &v), SHMREG_EINVAL, "next NULL cursor: EINVAL");
    shmreg_read_end(h);
    is(shmreg_session_counts(h, NULL, SHMREG_STATE_COUNT), SHMREG_EINVAL, "counts NULL: EINVAL");
}

static void t_dialogs(void)
{
    shmreg_id got;
    is(shmreg_dialog_bind(h, S(""), S("a"), S("b"), &sess), SHMREG_EINVAL, "bind an empty Call-ID: EINVAL");
    is(shmreg_dialog_bind(h, (shmreg_str){big, SHMREG_MAX_STR + 1}, S("a"), S("b"), &sess), SHMREG_EINVAL,
       "bind a Call-ID over the limit: EINVAL");
    is(shmreg_dialog_bind(h, S("c"), (shmreg_str){NULL, 2}, S("b"), &sess), SHMREG_EINVAL,
       "bind a tag with a length and no bytes: EINVAL");
    is(shmreg_dialog_bind(h, S("c"), S("a"), S("b"), NULL), SHMREG_EINVAL, "bind to a NULL session: EINVAL");
    shmreg_id nobody;
    memset(&nobody, 0x77, sizeof nobody);
    is(shmreg_dialog_bind(h, S("c"), S("a"), S("b"), &nobody), SHMREG_ENOENT, "bind to an unknown session: ENOENT");
    is(shmreg_dialog_bind(h, S("c"), S("a"), S("b"), &sess), 0, "bind c/a/b");
    is(shmreg_dialog_bind(h, S("c"), S("a"), S("b"), &other), SHMREG_EEXIST, "bind it again: EEXIST");
    int rc = 0;
    for (unsigned i = 1; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
        char cid[16];
        snprintf(cid, sizeof cid, "fork-%u", i);
        rc |= shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, S("a"), S("b"), &sess);
    }
    is(rc, 0, "bind %u dialogs to one session", SHMREG_MAX_DIALOGS_PER_SESSION);
    shmreg_stats st0 = test_stats(h);
    is(shmreg_dialog_bind(h, S("one-more"), S("a"), S("b"), &sess), SHMREG_EFULL, "one more: EFULL");
    is(test_stats(h).heap_used_bytes, st0.heap_used_bytes, "and its record was given back at once");
    is(shmreg_dialog_find(h, S("c"), S("a"), S("b"), NULL), SHMREG_EINVAL, "find NULL out: EINVAL");
    is(shmreg_dialog_find(h, S("c"), S("a"), S("zz"), &got), SHMREG_ENOENT, "find another remote tag: ENOENT");
    is(shmreg_dialog_find(h, S("c"), S("a"), (shmreg_str){NULL, 0}, &got), 0, "find with any remote tag");
    is(shmreg_dialog_unbind(h, S("c"), S("a"), S("zz")), SHMREG_ENOENT, "unbind an unknown key: ENOENT");
    is(shmreg_dialog_unbind(h, S("fork-1"), S("a"), S("b")), 0, "unbind fork-1");
    is(shmreg_dialog_bind(h, S("early"), S("a"), (shmreg_str){NULL, 0}, &sess), 0,
       "bind an early dialog: remote tag NULL means empty");
    is(shmreg_dialog_find(h, S("early"), S("a"), S(""), &got), 0, "found with an empty remote tag");
    is(shmreg_dialog_unbind(h, S("early"), S("a"), (shmreg_str){NULL, 0}), 0, "and unbound with NULL");
    is(shmreg_dialog_bind(h, S("fork-1"), S("a"), S("b"), &sess), 0, "fork-1 bound again");
    is(shmreg_dialog_unbind(h, S(""), S("a"), S("b")), SHMREG_EINVAL, "unbind an empty Call-ID: EINVAL");
    shmreg_dialog d;
    uint64_t cur = 0;
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOREAD, "dialog_next outside a section: ENOREAD");
    is(shmreg_session_dialog(h, &sess, 0, &d), SHMREG_ENOREAD, "session_dialog outside a section: ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_dialog_next(h, NULL, &d), SHMREG_EINVAL, "dialog_next NULL cursor: EINVAL");
    is(shmreg_session_dialog(h, NULL, 0, &d), SHMREG_EINVAL, "session_dialog NULL id: EINVAL");
    is(shmreg_session_dialog(h, &sess, SHMREG_MAX_DIALOGS_PER_SESSION, &d), SHMREG_ENOENT,
       "session_dialog past the last: ENOENT");
    is(shmreg_session_dialog(h, &nobody, 0, &d), SHMREG_ENOENT, "session_dialog of an unknown session: ENOENT");
    int n = 0;
    cur = 0;
    while (shmreg_dialog_next(h, &cur, &d) == 0)
        n++;
    is(n, (int)SHMREG_MAX_DIALOGS_PER_SESSION, "dialog_next lists the %u", SHMREG_MAX_DIALOGS_PER_SESSION);
    shmreg_read_end(h);
}

static void t_rooms(void)
{
    shmreg_id r2, in;
    is(shmreg_room_create(h, S("x"), 0, &r2), SHMREG_EINVAL, "a room of 0 seats: EINVAL");
    is(shmreg_room_create(h, S("x"), SHMREG_MAX_ROOM_PARTICIPANTS + 1, &r2), SHMREG_EINVAL,
       "a room over the seat limit: EINVAL");
    is(shmreg_room_create(h, (shmreg_str){NULL, 1}, 2, &r2), SHMREG_EINVAL, "a name with no bytes: EINVAL");
    is(shmreg_room_create(h, S("x"), 2, NULL), SHMREG_EINVAL, "NULL room_out: EINVAL");
    shmreg_id nobody;
    memset(&nobody, 0x66, sizeof nobody);
    int old = -1;
    is(shmreg_room_transition(h, NULL, 0, 2, NULL), SHMREG_EINVAL, "room transition NULL: EINVAL");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_STATE_COUNT, NULL), SHMREG_EINVAL,
       "room transition to an unknown state: EINVAL");
    is(shmreg_room_transition(h, &nobody, 0, SHMREG_ROOM_ACTIVE, NULL), SHMREG_ENOENT, "an unknown room: ENOENT");
    is(shmreg_room_transition(h, &room, SHMREG_ROOM_LOCKED, SHMREG_ROOM_ACTIVE, &old), SHMREG_ECONFLICT,
       "expecting Locked of a Creating room: ECONFLICT");
    is(old, SHMREG_ROOM_CREATING, "and *old says Creating");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_TERMINATED, NULL), SHMREG_ESTATE,
       "Creating -> Terminated: ESTATE");
    is(shmreg_room_join(h, NULL, &sess, S("u"), S("d"), 1), SHMREG_EINVAL, "join NULL room: EINVAL");
    is(shmreg_room_join(h, &room, &sess, (shmreg_str){big, SHMREG_MAX_STR + 1}, S("d"), 1), SHMREG_EINVAL,
       "join with a URI over the limit: EINVAL");
    is(shmreg_room_join(h, &nobody, &sess, S("u"), S("d"), 1), SHMREG_ENOENT, "join an unknown room: ENOENT");
    is(shmreg_room_join(h, &room, &nobody, S("u"), S("d"), 1), SHMREG_ENOENT, "join an unknown session: ENOENT");
    is(shmreg_room_join(h, &room, &sess, S("u"), S("d"), 1), 0, "join the one seat");
    is(shmreg_room_join(h, &room, &sess, S("u"), S("d"), 1), SHMREG_EEXIST, "join again: EEXIST");
    shmreg_stats st0 = test_stats(h);
    is(shmreg_room_join(h, &room, &other, S("u"), S("d"), 1), SHMREG_EFULL, "join a full room: EFULL");
    is(test_stats(h).heap_used_bytes, st0.heap_used_bytes, "and the participant was given back at once");
    is(shmreg_session_room(h, &other, &in), SHMREG_ENOENT, "which leaves the other session in no room");
    is(shmreg_session_room(h, NULL, &in), SHMREG_EINVAL, "session_room NULL: EINVAL");
    is(shmreg_room_leave(h, NULL, &sess), SHMREG_EINVAL, "leave NULL: EINVAL");
    is(shmreg_room_leave(h, &room, &other), SHMREG_ENOENT, "leave a room one is not in: ENOENT");
    is(shmreg_participant_set_status(h, &room, &sess, 0, SHMREG_PART_STATUS_COUNT, NULL), SHMREG_EINVAL,
       "an unknown status: EINVAL");
    is(shmreg_participant_set_status(h, &room, &sess, SHMREG_PART_ACTIVE, SHMREG_PART_LEFT, &old),
       SHMREG_ECONFLICT, "expecting Active of a Joining participant: ECONFLICT");
    is(shmreg_participant_set_status(h, &room, &sess, 0, SHMREG_PART_JOINING, NULL), SHMREG_ESTATE,
       "Joining -> Joining: ESTATE");
    is(shmreg_participant_set_status(h, &room, &other, 0, SHMREG_PART_ACTIVE, NULL), SHMREG_ENOENT,
       "the status of a non-participant: ENOENT");
    is(shmreg_participant_set_audio(h, NULL, &sess, 1), SHMREG_EINVAL, "set_audio NULL: EINVAL");
    is(shmreg_participant_set_audio(h, &room, &sess, 1), 0, "set_audio on");
    shmreg_participant p;
    shmreg_room rv;
    uint64_t cur = 0;
    is(shmreg_participant_next(h, &room, &cur, &p), SHMREG_ENOREAD, "participant_next outside a section: ENOREAD");
    is(shmreg_room_get(h, &room, &rv), SHMREG_ENOREAD, "room_get outside a section: ENOREAD");
    is(shmreg_room_next(h, &cur, &rv), SHMREG_ENOREAD, "room_next outside a section: ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_participant_next(h, NULL, &cur, &p), SHMREG_EINVAL, "participant_next NULL: EINVAL");
    is(shmreg_participant_next(h, &nobody, &cur, &p), SHMREG_ENOENT, "participants of an unknown room: ENOENT");
    ok(shmreg_participant_next(h, &room, &cur, &p) == 0 && p.audio_active == 1 && p.status == SHMREG_PART_JOINING,
       "the participant: audio on, Joining");
    is(shmreg_participant_next(h, &room, &cur, &p), SHMREG_ENOENT, "and no other");
    is(shmreg_room_get(h, NULL, &rv), SHMREG_EINVAL, "room_get NULL: EINVAL");
    is(shmreg_room_next(h, NULL, &rv), SHMREG_EINVAL, "room_next NULL: EINVAL");
    shmreg_read_end(h);

    /* Locked: no joins. Terminating: everybody has Left. */
    shmreg_room_leave(h, &room, &sess);
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_ACTIVE, NULL), 0, "Creating -> Active");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_LOCKED, NULL), 0, "Active -> Locked");
    is(shmreg_room_join(h, &room, &other, S("u"), S("d"), 1), SHMREG_ESTATE, "join a locked room: ESTATE");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_ACTIVE, NULL), 0, "Locked -> Active");
    is(shmreg_room_join(h, &room, &other, S("u"), S("d"), 1), 0, "join");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_TERMINATING, NULL), 0, "Active -> Terminating");
    is(shmreg_participant_set_status(h, &room, &other, 0, SHMREG_PART_ACTIVE, NULL), SHMREG_ESTATE,
       "a participant of a terminating room is Left for good: ESTATE");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_TERMINATED, NULL), 0, "Terminating -> Terminated");
    is(shmreg_room_delete(h, NULL), SHMREG_EINVAL, "delete NULL: EINVAL");
    is(shmreg_room_delete(h, &room), 0, "delete the room");
    is(shmreg_room_delete(h, &room), SHMREG_ENOENT, "delete it again: ENOENT");
    is(shmreg_room_transition(h, &room, 0, SHMREG_ROOM_ACTIVE, NULL), SHMREG_ENOENT, "transition it: ENOENT");
}

static void t_events(void)
{
    shmreg_sub *sub;
    is(shmreg_subscribe(h, SHMREG_EV_ALL, NULL, NULL), SHMREG_EINVAL, "subscribe NULL out: EINVAL");
    is(shmreg_subscribe(h, SHMREG_EV_ALL, &sess, &sub), 0, "subscribe to one session's events");
    shmreg_event ev[2];
    is(shmreg_poll(NULL, ev, 2, 0, NULL), SHMREG_EINVAL, "poll NULL sub: EINVAL");
    is(shmreg_poll(sub, ev, 0, 0, NULL), SHMREG_EINVAL, "poll max 0: EINVAL");
    is(shmreg_publish(h, NULL, big, SHMREG_EVENT_DATA_MAX + 1), SHMREG_EINVAL, "publish over the limit: EINVAL");
    is(shmreg_publish(h, NULL, NULL, 2), SHMREG_EINVAL, "publish NULL data with a length: EINVAL");
    is(shmreg_publish(h, &other, "o", 1), 0, "publish for another session");
    is(shmreg_publish(h, &sess, "s", 1), 0, "publish for ours");
    uint64_t missed = 9;
    is(shmreg_poll(sub, ev, 2, 0, &missed), 1, "poll delivers only ours");
    shmreg_sub_stats ss;
    is(shmreg_sub_stats_get(NULL, &ss), SHMREG_EINVAL, "sub_stats NULL: EINVAL");
    ok(shmreg_sub_stats_get(sub, &ss) == 0 && ss.delivered == 1 && ss.filtered == 1 && missed == 0,
       "1 delivered, 1 filtered, none missed");
    is(shmreg_poll(sub, ev, 2, 1000000, NULL), 0, "a 1 ms wait with nothing new returns 0");
    shmreg_unsubscribe(sub);
    shmreg_unsubscribe(NULL);
}

int main(void)
{
    const char *p = test_dir("coverage-api");
    if (shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 16, .max_rooms = 32}, &h) ||
        shmreg_session_create(h, NULL, &sess) || shmreg_session_create(h, NULL, &other) ||
        shmreg_room_create(h, S("one"), 1, &room))
        bail_out("setup: %s", shmreg_errmsg());
    memset(big, 'x', sizeof big);
    shmreg_stats st0 = test_stats(h);
    t_names();
    t_open();
    t_sessions();
    shmreg_stats st1 = test_stats(h);
    ok(st1.sessions == st0.sessions && st1.heap_used_bytes == st0.heap_used_bytes &&
       st1.dialogs == 0 && st1.rooms == 1, "none of the refusals changed anything");
    t_dialogs();
    t_rooms();
    t_events();
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "the registry checks clean");
    ok(r.problems == 0 && r.leaked_blocks == 0, "no problem, no leak");
    shmreg_close(h);
    shmreg_destroy(p, 1);
    return done_testing();
}
