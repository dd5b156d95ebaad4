/*
 * errmsg.c — every failing call leaves its own detail in shmreg_errmsg().
 *
 * The header promises that every negative return sets the detail, a
 * lookup's ENOENT and an iteration's end included. A stale message is
 * worse than none (it names an unrelated failure), so each case below
 * first provokes an unrelated failure (the poison: an unknown state name),
 * then makes one failing call and asserts its code and that the message
 * now holds that call's own words. The set covers every family of the
 * API: open/destroy, read sections, sessions, dialogs, rooms and
 * participants, iteration ends, inspection, events, configs (views,
 * writes, documents, text), IDs and names, and a handle used after fork.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reg.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){(lit), sizeof(lit) - 1})
#define POISON "unknown call state 'poison'"

static void poison(void)
{
    int st;
    shmreg_state_parse("poison", &st);
}

/* Poison, run `call`, and check its code and that the message has `want`
 * (and so is not the poison's). */
#define FAILS(call, code, want)                                                       \
    do {                                                                              \
        poison();                                                                     \
        int rc_ = (call);                                                             \
        const char *m_ = shmreg_errmsg();                                             \
        ok(rc_ == (code) && strstr(m_, (want)) != NULL && strstr(m_, POISON) == NULL, \
           "%s: %s, errmsg \"%s\"", #call, shmreg_strerror(code), (want));            \
        if (rc_ != (code) || !strstr(m_, (want)))                                     \
            diag("got %d, errmsg \"%s\"", rc_, m_);                                   \
    } while (0)

static shmreg *h;
static shmreg_id sid, rid;

static void in_child(void *arg)
{
    (void)arg;
    shmreg_session v;
    FAILS(shmreg_session_get(h, &sid, &v), SHMREG_EFORK, "opened by another process");
    FAILS(shmreg_close(h), SHMREG_EFORK, "only its memory was freed");
}

static int stop_cb(void *arg, const char *buf, size_t len)
{
    (void)arg, (void)buf, (void)len;
    return 7;
}

static int list_stop(void *arg, shmreg_str name, uint64_t gen)
{
    (void)arg, (void)name, (void)gen;
    return -3;
}

int main(void)
{
    const char *path = test_dir("errmsg");
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 8, .max_rooms = 32};
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    poison();
    is_str(shmreg_errmsg(), POISON, "the poison sets its own message");

    /* ---- open, destroy */
    shmreg *x;
    const char *none = test_dir("none");
    FAILS(shmreg_open(none, NULL, &x), SHMREG_ENOENT, "no registry at");
    FAILS(shmreg_open(NULL, NULL, &x), SHMREG_EINVAL, "NULL or empty path");
    FAILS(shmreg_open(path, &(shmreg_options){.flags = SHMREG_CREATE | SHMREG_EXCL}, &x),
          SHMREG_EEXIST, "already exists");
    char link[512];
    snprintf(link, sizeof link, "%s-link", path);
    if (symlink(path, link) != 0)
        bail_out("symlink");
    FAILS(shmreg_open(link, NULL, &x), SHMREG_EPERM, "symlink");
    unlink(link);
    const char *junk = test_dir("junk");
    char seg[512];
    snprintf(seg, sizeof seg, "%s/segment", junk);
    int fd = -1;
    if (mkdir(junk, 0700) != 0 || (fd = open(seg, O_CREAT | O_WRONLY, 0600)) < 0 ||
        write(fd, "not a registry", 14) != 14)
        bail_out("cannot write %s", seg);
    close(fd);
    FAILS(shmreg_open(junk, NULL, &x), SHMREG_EVERSION, "not a shmreg segment");
    FAILS(shmreg_destroy(none, 0), SHMREG_ENOENT, "no registry at");

    /* ---- read sections */
    FAILS(shmreg_read_end(h), SHMREG_EINVAL, "read_end without read_begin");
    shmreg_session v;
    FAILS(shmreg_session_get(h, &sid, &v), SHMREG_ENOREAD, "open a read section first");
    FAILS(shmreg_read_begin(NULL), SHMREG_EINVAL, "NULL handle");

    /* ---- sessions */
    shmreg_id ghost;
    char ghost_text[SHMREG_ID_TEXT_LEN + 1], want[128];
    shmreg_id_parse("0badc0de-0000-4000-8000-000000000001", SHMREG_ID_TEXT_LEN, &ghost);
    shmreg_id_format(&ghost, ghost_text);
    snprintf(want, sizeof want, "no such session %s", ghost_text);
    is(shmreg_session_create(h, NULL, &sid), 0, "a session to fail on");
    shmreg_read_begin(h);
    FAILS(shmreg_session_get(h, &ghost, &v), SHMREG_ENOENT, want);
    FAILS(shmreg_session_get(h, NULL, &v), SHMREG_EINVAL, "NULL id/out");
    uint64_t cur = 0;
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        ;
    FAILS(shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v), SHMREG_ENOENT, "no more sessions");
    FAILS(shmreg_session_next(h, &cur, 99, &v), SHMREG_EINVAL, "unknown state filter");
    shmreg_read_end(h);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_CODEC] = S("opus");
    FAILS(shmreg_session_update(h, &ghost, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)), SHMREG_ENOENT, want);
    FAILS(shmreg_session_update(h, &sid, &f, 1u << 30), SHMREG_EINVAL, "unknown bits");
    FAILS(shmreg_session_set_sdp(h, &sid, 5, "v=0", 3), SHMREG_EINVAL, "unknown SDP side 5");
    FAILS(shmreg_session_set_sdp(h, &sid, SHMREG_SDP_LOCAL, "v=0", SHMREG_MAX_SDP + 1),
          SHMREG_EINVAL, "limit 65536");
    FAILS(shmreg_session_set_sdp(h, &ghost, SHMREG_SDP_LOCAL, "v=0", 3), SHMREG_ENOENT, want);
    FAILS(shmreg_session_transition(h, &sid, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATED, NULL),
          SHMREG_ESTATE, "Initiating -> Terminated is not allowed");
    FAILS(shmreg_session_transition(h, &sid, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL),
          SHMREG_ECONFLICT, "state is Initiating, not Active");
    FAILS(shmreg_session_transition(h, &ghost, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL),
          SHMREG_ENOENT, want);
    FAILS(shmreg_session_counter_add(h, &sid, 42, 1), SHMREG_EINVAL, "unknown counter 42");
    FAILS(shmreg_session_counter_add(h, &ghost, 0, 1), SHMREG_ENOENT, want);
    FAILS(shmreg_session_delete(h, &ghost), SHMREG_ENOENT, want);
    FAILS(shmreg_session_counts(h, NULL, SHMREG_STATE_COUNT), SHMREG_EINVAL, "NULL counts");
    shmreg_id more[8];
    int made = 0, rc;
    while (made < 8 && (rc = shmreg_session_create(h, NULL, &more[made])) == 0)
        made++;
    FAILS(shmreg_session_create(h, NULL, &more[0]), SHMREG_EFULL, "session table full (8 sessions)");
    for (int i = 0; i < made; i++)
        shmreg_session_delete(h, &more[i]);

    /* ---- dialogs */
    shmreg_id got;
    is(shmreg_dialog_bind(h, S("c1"), S("l1"), S("r1"), &sid), 0, "a dialog to fail on");
    FAILS(shmreg_dialog_bind(h, S("c1"), S("l1"), S("r1"), &sid), SHMREG_EEXIST, "dialog already bound");
    FAILS(shmreg_dialog_bind(h, S(""), S("l1"), S("r1"), &sid), SHMREG_EINVAL, "empty Call-ID");
    FAILS(shmreg_dialog_bind(h, S("c2"), S("l1"), S("r1"), &ghost), SHMREG_ENOENT, want);
    FAILS(shmreg_dialog_find(h, S("c9"), S("l1"), S("r1"), &got), SHMREG_ENOENT, "no such dialog");
    FAILS(shmreg_dialog_unbind(h, S("c9"), S("l1"), S("r1")), SHMREG_ENOENT, "no such dialog");
    shmreg_dialog d;
    shmreg_read_begin(h);
    char want_idx[128];
    shmreg_id_format(&sid, ghost_text);
    snprintf(want_idx, sizeof want_idx, "no such dialog index in session %s", ghost_text);
    FAILS(shmreg_session_dialog(h, &sid, 1, &d), SHMREG_ENOENT, want_idx);
    FAILS(shmreg_session_dialog(h, &ghost, 0, &d), SHMREG_ENOENT, want);
    for (cur = 0; shmreg_dialog_next(h, &cur, &d) == 0;)
        ;
    FAILS(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOENT, "no more dialogs");
    shmreg_read_end(h);

    /* ---- rooms, participants */
    FAILS(shmreg_room_create(h, S("r"), 0, &rid), SHMREG_EINVAL, "bad room");
    is(shmreg_room_create(h, S("r"), 2, &rid), 0, "a room to fail on");
    FAILS(shmreg_room_transition(h, &rid, SHMREG_ROOM_ANY, SHMREG_ROOM_LOCKED, NULL), SHMREG_ESTATE,
          "room Creating -> Locked is not allowed");
    FAILS(shmreg_room_transition(h, &rid, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, NULL),
          SHMREG_ECONFLICT, "room is Creating, not Active");
    FAILS(shmreg_room_transition(h, &ghost, SHMREG_ROOM_ANY, SHMREG_ROOM_ACTIVE, NULL), SHMREG_ENOENT,
          "no such room");
    FAILS(shmreg_room_leave(h, &rid, &sid), SHMREG_ENOENT, "not in this room: session");
    FAILS(shmreg_session_room(h, &sid, &got), SHMREG_ENOENT, "session is in no room");
    is(shmreg_room_join(h, &rid, &sid, S("sip:a"), S("A"), 4000), 0, "a participant to fail on");
    FAILS(shmreg_room_join(h, &rid, &sid, S("sip:a"), S("A"), 4000), SHMREG_EEXIST,
          "already in a room");
    FAILS(shmreg_participant_set_status(h, &rid, &sid, SHMREG_PART_ACTIVE, SHMREG_PART_MUTED, NULL),
          SHMREG_ECONFLICT, "participant is Joining");
    FAILS(shmreg_participant_set_audio(h, &rid, &ghost, 1), SHMREG_ENOENT, "not in this room");
    shmreg_room r;
    shmreg_participant p;
    shmreg_read_begin(h);
    FAILS(shmreg_room_get(h, &ghost, &r), SHMREG_ENOENT, "no such room 0badc0de-");
    for (cur = 0; shmreg_room_next(h, &cur, &r) == 0;)
        ;
    FAILS(shmreg_room_next(h, &cur, &r), SHMREG_ENOENT, "no more rooms");
    for (cur = 0; shmreg_participant_next(h, &rid, &cur, &p) == 0;)
        ;
    FAILS(shmreg_participant_next(h, &rid, &cur, &p), SHMREG_ENOENT, "no more participants");
    shmreg_read_end(h);
    is(shmreg_room_transition(h, &rid, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL), 0, "room active");
    is(shmreg_room_transition(h, &rid, SHMREG_ROOM_ACTIVE, SHMREG_ROOM_LOCKED, NULL), 0, "room locked");
    shmreg_id other;
    is(shmreg_session_create(h, NULL, &other), 0, "a second session");
    FAILS(shmreg_room_join(h, &rid, &other, S("sip:b"), S("B"), 4002), SHMREG_ESTATE,
          "room is Locked: no joins");
    FAILS(shmreg_room_delete(h, &ghost), SHMREG_ENOENT, "no such room");

    /* ---- inspection */
    shmreg_handle_info hi;
    for (cur = 0; shmreg_handle_next(h, &cur, &hi) == 0;)
        ;
    FAILS(shmreg_handle_next(h, &cur, &hi), SHMREG_ENOENT, "no more handles");
    FAILS(shmreg_stat(h, NULL), SHMREG_EINVAL, "NULL stats");
    FAILS(shmreg_check(h, 0x80, NULL, NULL, NULL, NULL), SHMREG_EINVAL, "unknown check flags 0x80");

    /* ---- events */
    shmreg_sub *sub;
    shmreg_event ev;
    uint32_t type;
    FAILS(shmreg_subscribe(h, 0, NULL, &sub), SHMREG_EINVAL, "NULL out or empty type mask");
    FAILS(shmreg_poll(NULL, &ev, 1, 0, NULL), SHMREG_EINVAL, "NULL subscription/out or max 0");
    FAILS(shmreg_publish(h, NULL, "x", SHMREG_EVENT_DATA_MAX + 1), SHMREG_EINVAL, "custom event data");
    FAILS(shmreg_event_parse("nope", &type), SHMREG_EINVAL, "unknown event type 'nope'");

    /* ---- IDs and names */
    int st;
    FAILS(shmreg_id_parse("xyz", 3, &got), SHMREG_EINVAL, "36 characters");
    FAILS(shmreg_state_parse("zzz", &st), SHMREG_EINVAL, "unknown call state 'zzz'");

    /* ---- configs */
    shmreg_config_view *cv = NULL;
    shmreg_config_value val;
    int changed;
    FAILS(shmreg_config_open_view(h, "nosuch", &cv), SHMREG_ENOENT, "no config nosuch");
    FAILS(shmreg_config_refresh(h, "nosuch", &cv, NULL), SHMREG_ENOENT, "no config nosuch");
    FAILS(shmreg_config_refresh(h, "nosuch", NULL, NULL), SHMREG_EINVAL, "v is NULL");
    FAILS(shmreg_config_changed(h, 0, NULL), SHMREG_EINVAL, "changed is NULL");
    is(shmreg_config_set(h, "media", "app.x", "1"), 0, "a config to fail on");
    FAILS(shmreg_config_set(h, "media", "app.x", "1 2"), SHMREG_EPARSE, "column 3");
    FAILS(shmreg_config_set(h, "media", "media.ptime", "\"x\""), SHMREG_EINVAL, "media.ptime");
    FAILS(shmreg_config_unset(h, "media", "app.none"), SHMREG_ENOENT, "no key app.none");
    FAILS(shmreg_config_delete(h, "gone"), SHMREG_ENOENT, "no such config");
    is(shmreg_config_open_view(h, "media", &cv), 0, "a view to fail on");
    FAILS(shmreg_config_get(cv, "app.none", &val), SHMREG_ENOENT, "no key app.none");
    FAILS(shmreg_config_get_str(cv, "app.x", &(shmreg_str){0}), SHMREG_EINVAL, "app.x is a");
    FAILS(shmreg_config_codec(cv, 3, &(shmreg_str){0}), SHMREG_ENOENT, "no codec 3");
    uint32_t ccur = 0;
    shmreg_str key;
    while (shmreg_config_next(cv, &ccur, &key, &val) == 0)
        ;
    FAILS(shmreg_config_next(cv, &ccur, &key, &val), SHMREG_ENOENT, "end of config");
    /* a callback's own value comes back as is, and the message says so */
    FAILS(shmreg_config_view_dump(cv, stop_cb, NULL), 7, "callback stopped the dump (it returned 7)");
    FAILS(shmreg_config_list(h, list_stop, NULL), -3, "callback stopped the walk (it returned -3)");
    shmreg_config_release(cv);
    ok(shmreg_config_changed(h, 0, &changed) == 0 && changed == 1, "changed answers in *changed");
    shmreg_config_doc *doc;
    FAILS(shmreg_config_parse("a = ", 4, &doc), SHMREG_EPARSE, "line 1");
    is(shmreg_config_doc_new(&doc), 0, "a document to fail on");
    FAILS(shmreg_config_doc_get(doc, "app.none", &val), SHMREG_ENOENT, "no key app.none");
    FAILS(shmreg_config_doc_set_int(doc, "media.ptime", 5000), SHMREG_EINVAL, "media.ptime");
    shmreg_config_doc_free(doc);

    /* ---- a handle used after fork */
    is(test_wait(test_fork(in_child, NULL)), 0, "in a forked child: EFORK with its message");

    shmreg_close(h);
    shmreg_destroy(path, 1);
    test_rm_rf(junk);
    /* ---- the engine's codes, each mapped by name (registry/handle.c) */
    FAILS(reg_engine_fail(SHM_EINVAL, "the thing"), SHMREG_EINVAL, "the thing: invalid argument");
    FAILS(reg_engine_fail(SHM_ENOENT, "the thing"), SHMREG_ENOENT, "the thing: not found");
    FAILS(reg_engine_fail(SHM_EFULL, "the thing"), SHMREG_EFULL, "the thing is full");
    FAILS(reg_engine_fail(SHM_EVERSION, "the thing"), SHMREG_EVERSION, "the thing: another layout");
    FAILS(reg_engine_fail(SHM_EBUSY, "the lock"), SHMREG_EBUSY, "the lock held for over 2 s");
    FAILS(reg_engine_fail(SHM_ECORRUPT, "the lock"), SHMREG_ECORRUPT, "the lock is corrupt");
    FAILS(reg_engine_fail(-99, "the thing"), SHMREG_ECORRUPT, "the thing: engine error -99");
    is(reg_engine_fail(0, "the thing"), 0, "engine success stays 0");
    return done_testing();
}
