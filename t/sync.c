/*
 * sync.c — the library half of persistence (shmreg_sync.h), without the
 * daemon: records round-trip exactly and refuse damage by name; a
 * restored session has its ID and every field, the restored flag and its
 * event, and counts derived from it; rooms come back with their rosters;
 * shmreg_restore() applies its policy, refuses a populated registry, and
 * refuses bad, foreign and corrupt sync directories with nothing
 * restored; the daemon's status words are claimed by one process at a
 * time and show in shmreg_stat.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})

static unsigned char recbuf[SHMREG_SESSION_RECORD_MAX];

/* A copy of a path that outlives test_dir's ring of buffers. */
static const char *keep(const char *s)
{
    static char kept[16][512];
    static int n;
    snprintf(kept[n % 16], sizeof kept[0], "%s", s);
    return kept[n++ % 16];
}

/* A fresh registry: 256 sessions, 32 rooms. */
static shmreg *fresh(const char *name) { return test_reg_new(name, 256, 0, 32); }

/* A session with every field set, both SDPs, counters, two dialogs, Active. */
static shmreg_id full_session(shmreg *h, int k)
{
    shmreg_fields f = {0};
    char v[SHMREG_FIELD_STR_COUNT][64];
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        snprintf(v[i], sizeof v[i], "field-%d-of-%d", i, k);
        f.str[i] = (shmreg_str){v[i], strlen(v[i])};
    }
    f.local_rtp_port = (uint16_t)(4000 + k);
    f.remote_rtp_port = (uint16_t)(5000 + k);
    shmreg_id id;
    if (shmreg_session_create(h, &f, &id) != 0)
        bail_out("create: %s", shmreg_errmsg());
    char sdp[200];
    int n = snprintf(sdp, sizeof sdp, "v=0\r\no=- %d 1 IN IP4 10.0.0.1\r\n", k);
    shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, (size_t)n);
    n = snprintf(sdp, sizeof sdp, "v=0\r\no=remote %d 2 IN IP4 10.0.0.2\r\nm=audio 9 RTP/AVP 0\r\n", k);
    shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, sdp, (size_t)n);
    for (int c = 0; c < SHMREG_CTR_COUNT; c++)
        shmreg_session_counter_add(h, &id, c, (uint64_t)(k * 100 + c));
    char cid[32];
    snprintf(cid, sizeof cid, "call-%d", k);
    shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, S("ltag"), S("rtag"), &id);
    shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, S("ltag"), S("rtag2"), &id);
    shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE, NULL);
    return id;
}

/* Encode session `id` as it is in `h` (record bytes in buf, length out). */
static size_t encode(shmreg *h, const shmreg_id *id, unsigned char *buf)
{
    shmreg_session s;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    size_t len = 0;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &s) != 0)
        bail_out("get: %s", shmreg_errmsg());
    for (unsigned i = 0; i < s.ndialogs; i++)
        shmreg_session_dialog(h, id, i, &d[i]);
    shmreg_session_control c;
    if (shmreg_session_control_get(h, id, &c) != 0)
        bail_out("control: %s", shmreg_errmsg());
    if (shmreg_session_encode_control(&s, &c, d, s.ndialogs, buf, SHMREG_SESSION_RECORD_MAX, &len) != 0)
        bail_out("encode: %s", shmreg_errmsg());
    shmreg_read_end(h);
    return len;
}

static void records(void)
{
    shmreg *h = fresh("rec");
    shmreg_id id = full_session(h, 7);
    size_t len = encode(h, &id, recbuf);
    ok(len > 200, "a full session encodes (%zu bytes)", len);

    shmreg_session s;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd = 99;
    is(shmreg_session_decode(recbuf, len, &s, d, &nd), 0, "it decodes");
    is(nd, 2, "with its 2 dialogs");
    is(s.state, SHMREG_STATE_ACTIVE, "state Active");
    ok(test_str_is(s.str[SHMREG_FIELD_CALL_ID], "field-3-of-7", 12), "call-id field");
    is(s.counter[SHMREG_CTR_PACKETS_LOST], 704, "counter");
    is(s.local_rtp_port, 4007, "local port");
    ok(test_str_is(d[1].remote_tag, "rtag2", 5), "second dialog's remote tag");

    size_t small;
    is(shmreg_session_encode(&s, d, nd, recbuf + 0, 10, &small), SHMREG_EFULL, "a short buffer: EFULL");
    /* encode() wrote format 2; this is format 1, without the 28-byte
     * control part an empty one takes (deadline, grace, flags, 2 counts). */
    is((long long)small, (long long)len - 28, "... and the size it needs");
    len = encode(h, &id, recbuf);

    unsigned char bad[SHMREG_SESSION_RECORD_MAX];
    memcpy(bad, recbuf, len);
    bad[len / 2] ^= 1;
    is(shmreg_session_decode(bad, len, &s, d, &nd), SHMREG_ECORRUPT, "one flipped bit: ECORRUPT");
    ok(strstr(shmreg_errmsg(), "checksum") != NULL, "errmsg names the checksum: %s", shmreg_errmsg());
    is(shmreg_session_decode(recbuf, len - 9, &s, d, &nd), SHMREG_ECORRUPT, "truncated: ECORRUPT");
    is(shmreg_session_decode(recbuf, 5, &s, d, &nd), SHMREG_ECORRUPT, "5 bytes: ECORRUPT");
    memcpy(bad, recbuf, len);
    bad[0] = 'X';
    is(shmreg_session_decode(bad, len, &s, d, &nd), SHMREG_EVERSION, "another magic: EVERSION");
    shmreg_room rm;
    uint32_t np;
    is(shmreg_room_decode(recbuf, len, &rm, NULL, 0, &np), SHMREG_EVERSION,
       "a session record is not a room record");
    shmreg_session big = s;
    big.sdp[0].len = SHMREG_MAX_SDP + 1;
    is(shmreg_session_encode(&big, d, nd, recbuf, sizeof recbuf, &small), SHMREG_EINVAL,
       "an SDP over the limit: EINVAL");
    shmreg_close(h);
}

static void restore_one(void)
{
    shmreg *a = fresh("one-a"), *b = fresh("one-b");
    shmreg_id id = full_session(a, 3);
    unsigned char before[4096];
    size_t blen = encode(a, &id, before);

    shmreg_session s;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    is(shmreg_session_decode(before, blen, &s, d, &nd), 0, "decoded");
    shmreg_sub *sub;
    is(shmreg_subscribe(b, SHMREG_EV_ALL, NULL, &sub), 0, "subscribed to the new registry");
    is(shmreg_session_restore(b, &s, 0), 0, "restored into a fresh registry");
    for (unsigned i = 0; i < nd; i++)
        is(shmreg_dialog_bind(b, d[i].call_id, d[i].local_tag, d[i].remote_tag, &s.id), 0, "dialog %u bound", i);
    unsigned char after[4096];
    size_t alen = encode(b, &id, after);
    is_mem(after, alen, before, blen, "the restored session encodes to the very same bytes");

    shmreg_session v;
    shmreg_read_begin(b);
    is(shmreg_session_get(b, &id, &v), 0, "found by its old ID");
    is((long long)v.flags, SHMREG_SESSION_RESTORED, "flagged restored");
    shmreg_read_end(b);
    shmreg_id cr;
    cr = test_session_new(b);
    shmreg_read_begin(b);
    shmreg_session_get(b, &cr, &v);
    is((long long)v.flags, 0, "a created session is not flagged");
    shmreg_read_end(b);
    shmreg_session_delete(b, &cr);

    shmreg_event ev[8];
    int n = shmreg_poll(sub, ev, 8, 0, NULL);
    ok(n >= 1 && ev[0].type == SHMREG_EV_SESSION_RESTORED && test_id_eq(&ev[0].session, &id) &&
           ev[0].new_state == SHMREG_STATE_ACTIVE,
       "the first event is session_restored, with the ID and state Active");
    is_str(shmreg_event_name(SHMREG_EV_SESSION_RESTORED), "session_restored", "its name");
    shmreg_unsubscribe(sub);

    is(shmreg_session_restore(b, &s, 0), SHMREG_EEXIST, "restoring the same ID again: EEXIST");
    uint64_t counts[SHMREG_STATE_COUNT];
    shmreg_session_counts(b, counts, SHMREG_STATE_COUNT);
    is(counts[0], 1, "one session");
    is(counts[SHMREG_STATE_ACTIVE], 1, "counted Active, from the slot");
    shmreg_stats st = test_stats(b);
    is(st.dialogs, 2, "two dialogs");
    shmreg_id found;
    is(shmreg_dialog_find(b, S("call-3"), S("ltag"), S("rtag"), &found), 0, "in-dialog lookup matches");
    ok(test_id_eq(&found, &id), "... the old ID");
    is(shmreg_session_transition(b, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING, NULL), 0,
       "a restored call goes on: Active -> Terminating");

    shmreg_session bad = s;
    bad.state = 0;
    is(shmreg_session_restore(b, &bad, 0), SHMREG_EINVAL, "state 0: EINVAL");
    memset(&bad.id, 0, sizeof bad.id);
    bad.state = 1;
    is(shmreg_session_restore(b, &bad, 0), SHMREG_EINVAL, "zero ID: EINVAL");
    bad = s;
    bad.id.bytes[0] ^= 0xff;
    bad.str[0].len = SHMREG_MAX_STR + 1;
    is(shmreg_session_restore(b, &bad, 0), SHMREG_EINVAL, "over-long field: EINVAL");
    shmreg_check_report rep;
    is(shmreg_check(b, 0, &rep, NULL, NULL, NULL), 0, "check is clean");
    is(rep.leaked_blocks, 0, "nothing leaked");
    shmreg_close(a);
    shmreg_close(b);
}

static void rooms(void)
{
    shmreg *a = fresh("room-a"), *b = fresh("room-b");
    shmreg_id s1 = full_session(a, 1), s2 = full_session(a, 2);
    shmreg_id r = test_room_new(a, "conf", 8);
    shmreg_room_transition(a, &r, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL);
    shmreg_room_join(a, &r, &s1, S("sip:1@x"), S("One"), 7001);
    shmreg_room_join(a, &r, &s2, S("sip:2@x"), S("Two"), 7002);
    shmreg_participant_set_status(a, &r, &s2, 0, SHMREG_PART_MUTED, NULL);
    shmreg_participant_set_audio(a, &r, &s1, 1);

    shmreg_room rm;
    shmreg_participant p[8];
    uint32_t n = 0;
    uint64_t cur = 0;
    shmreg_read_begin(a);
    shmreg_room_get(a, &r, &rm);
    while (shmreg_participant_next(a, &r, &cur, &p[n]) == 0)
        n++;
    size_t len;
    is(shmreg_room_encode(&rm, p, n, recbuf, sizeof recbuf, &len), 0, "room encodes");
    shmreg_read_end(a);
    shmreg_participant q[8];
    uint32_t nq;
    is(shmreg_room_decode(recbuf, len, &rm, q, 8, &nq), 0, "room decodes");
    is(nq, 2, "two participants");
    is(shmreg_room_decode(recbuf, len, &rm, q, 1, &nq), SHMREG_EFULL, "room for one: EFULL");

    /* Only s1 is restored: s2's participant stays out. */
    unsigned char rec[4096];
    size_t sl = encode(a, &s1, rec);
    shmreg_session s;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    shmreg_session_decode(rec, sl, &s, d, &nd);
    shmreg_session_restore(b, &s, 0);
    shmreg_room_decode(recbuf, len, &rm, q, 8, &nq);
    uint32_t joined = 99;
    is(shmreg_room_restore(b, &rm, q, nq, &joined), 0, "room restored");
    is(joined, 1, "one participant joined (the other's session is not there)");
    is(shmreg_room_restore(b, &rm, q, nq, &joined), SHMREG_EEXIST, "again: EEXIST");
    test_roster ro;
    test_roster_take(b, &r, &ro);
    is(ro.state, SHMREG_ROOM_ACTIVE, "state Active");
    is(ro.participants, 1, "participants derived from the roster: 1");
    const test_member *m = test_roster_find(&ro, &s1);
    ok(m && m->audio == 1 && m->port == 7001 && m->status == SHMREG_PART_JOINING,
       "participant's audio, port and status as stored");
    shmreg_id in;
    is(shmreg_session_room(b, &s1, &in), 0, "the session knows its room");
    ok(test_id_eq(&in, &r), "... that room");
    is(shmreg_room_leave(b, &r, &s1), 0, "and can leave it");
    shmreg_check_report rep;
    is(shmreg_check(b, 0, &rep, NULL, NULL, NULL), 0, "check is clean");
    shmreg_close(a);
    shmreg_close(b);
}

/* A sync directory in the documented format, written by hand (the daemon
 * is t/sync_daemon.c's): every session of `h`, its rooms. */
static void write_dir(shmreg *h, const char *dir, uint64_t pos)
{
    mkdir(dir, 0700);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi meta, ss, rr;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 4) || mdb_env_open(env, dir, 0, 0600) ||
        mdb_txn_begin(env, NULL, 0, &t) || mdb_dbi_open(t, "meta", MDB_CREATE, &meta) ||
        mdb_dbi_open(t, "sessions", MDB_CREATE, &ss) || mdb_dbi_open(t, "rooms", MDB_CREATE, &rr))
        bail_out("lmdb setup");
    MDB_val k = {6, "format"}, v = {strlen(SHMREG_SYNC_FORMAT), SHMREG_SYNC_FORMAT};
    mdb_put(t, meta, &k, &v, 0);
    k = (MDB_val){8, "ring_pos"};
    v = (MDB_val){8, &pos};
    mdb_put(t, meta, &k, &v, 0);
    uint64_t cur = 0;
    shmreg_session s;
    for (;;) {
        shmreg_read_begin(h);
        int rc = shmreg_session_next(h, &cur, 0, &s);
        shmreg_read_end(h);
        if (rc)
            break;
        size_t len = encode(h, &s.id, recbuf);
        k = (MDB_val){16, s.id.bytes};
        v = (MDB_val){len, recbuf};
        mdb_put(t, ss, &k, &v, 0);
    }
    if (mdb_txn_commit(t))
        bail_out("commit");
    mdb_env_close(env);
}

static void restore_dir(void)
{
    shmreg *a = fresh("dir-a");
    shmreg_id act = full_session(a, 1), early = test_session_new(a), fin = full_session(a, 2),
              hold = full_session(a, 3);
    shmreg_session_transition(a, &fin, 0, SHMREG_STATE_TERMINATING, NULL);
    shmreg_session_transition(a, &fin, 0, SHMREG_STATE_TERMINATED, NULL);
    shmreg_session_transition(a, &hold, 0, SHMREG_STATE_ONHOLD, NULL);
    (void)act;
    (void)early;
    const char *dir = keep(test_dir("syncdir"));
    write_dir(a, dir, 1234);

    shmreg_sync_info info;
    is(shmreg_sync_dir_info(dir, &info), 0, "sync dir info");
    is(info.sessions, 4, "4 sessions stored");
    is(info.ring_pos, 1234, "ring position as stored");
    is(info.daemon_pid, 0, "no daemon holds it");

    shmreg *b = fresh("dir-b");
    shmreg_restore_report rep;
    is(shmreg_restore(b, dir, 0, &rep), 0, "restored with the default policy");
    is(rep.sessions, 2, "2 confirmed calls (Active, OnHold) came back");
    is(rep.skipped, 2, "the early and the finished one did not");
    is(rep.dialogs, 4, "their 4 dialogs");
    is(rep.ring_pos, 1234, "report's ring position");
    uint64_t counts[SHMREG_STATE_COUNT];
    shmreg_session_counts(b, counts, SHMREG_STATE_COUNT);
    ok(counts[0] == 2 && counts[SHMREG_STATE_ACTIVE] == 1 && counts[SHMREG_STATE_ONHOLD] == 1,
       "counts derived: 1 Active, 1 OnHold");
    is(shmreg_restore(b, dir, 0, &rep), SHMREG_EEXIST, "again on a populated registry: EEXIST");
    ok(strstr(shmreg_errmsg(), "already has 2 sessions") != NULL, "errmsg says so: %s", shmreg_errmsg());
    is(shmreg_restore(b, dir, SHMREG_RESTORE_FORCE | SHMREG_RESTORE_ALL, &rep), 0, "forced, all");
    is(rep.sessions, 2, "the other two came back");
    is(rep.existing, 2, "the first two were there");
    shmreg_session_counts(b, counts, SHMREG_STATE_COUNT);
    ok(counts[0] == 4 && counts[SHMREG_STATE_TERMINATED] == 1 && counts[SHMREG_STATE_INITIATING] == 1,
       "the finished call is back as Terminated, not live");
    shmreg_close(b);

    ok(shmreg_restore_wanted(SHMREG_STATE_TRANSFERRING, 0) && !shmreg_restore_wanted(SHMREG_STATE_RINGING, 0) &&
           !shmreg_restore_wanted(SHMREG_STATE_FAILED, 0) && shmreg_restore_wanted(SHMREG_STATE_FAILED, SHMREG_RESTORE_ALL) &&
           !shmreg_restore_wanted(0, SHMREG_RESTORE_ALL),
       "policy table");

    /* Bad directories: nothing restored. */
    b = fresh("dir-c");
    is(shmreg_restore(b, "/nonexistent/sync", 0, &rep), SHMREG_ENOENT, "no directory: ENOENT");
    const char *foreign = keep(test_dir("foreign"));
    mkdir(foreign, 0700);
    char path[512];
    snprintf(path, sizeof path, "%s/notes.txt", foreign);
    FILE *f = fopen(path, "w");
    fputs("mine\n", f);
    fclose(f);
    is(shmreg_restore(b, foreign, 0, &rep), SHMREG_EVERSION, "a directory of other files: EVERSION");
    ok(strstr(shmreg_errmsg(), "not a sync directory") != NULL, "errmsg: %s", shmreg_errmsg());
    /* Another application's LMDB. */
    const char *other = keep(test_dir("otherlmdb"));
    mkdir(other, 0700);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 2);
    mdb_env_open(env, other, 0, 0600);
    mdb_txn_begin(env, NULL, 0, &t);
    mdb_dbi_open(t, "users", MDB_CREATE, &dbi);
    mdb_txn_commit(t);
    mdb_env_close(env);
    is(shmreg_restore(b, other, 0, &rep), SHMREG_EVERSION, "another application's LMDB: EVERSION");
    /* A corrupt data.mdb. */
    const char *corrupt = keep(test_dir("corrupt"));
    mkdir(corrupt, 0700);
    snprintf(path, sizeof path, "%s/data.mdb", corrupt);
    f = fopen(path, "w");
    for (int i = 0; i < 20000; i++)
        fputc(i * 7, f);
    fclose(f);
    int rc = shmreg_restore(b, corrupt, 0, &rep);
    ok(rc == SHMREG_ECORRUPT, "garbage data.mdb: ECORRUPT (%s)", shmreg_errmsg());
    /* A damaged record in a sound LMDB: nothing at all restored. */
    const char *damaged = keep(test_dir("damaged"));
    write_dir(a, damaged, 1);
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 4);
    mdb_env_open(env, damaged, 0, 0600);
    mdb_txn_begin(env, NULL, 0, &t);
    mdb_dbi_open(t, "sessions", 0, &dbi);
    MDB_cursor *c;
    MDB_val k, v;
    mdb_cursor_open(t, dbi, &c);
    mdb_cursor_get(c, &k, &v, MDB_LAST);
    unsigned char copy[4096];
    memcpy(copy, v.mv_data, v.mv_size);
    copy[40] ^= 0x55;
    v.mv_data = copy;
    mdb_cursor_put(c, &k, &v, MDB_CURRENT);
    mdb_cursor_close(c);
    mdb_txn_commit(t);
    mdb_env_close(env);
    is(shmreg_restore(b, damaged, SHMREG_RESTORE_ALL, &rep), SHMREG_ECORRUPT, "one damaged record: ECORRUPT");
    shmreg_session_counts(b, counts, SHMREG_STATE_COUNT);
    is(counts[0], 0, "and nothing was restored");
    shmreg_close(b);

    /* A registry too small: refused before anything is written. */
    shmreg *tiny;
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 1};
    if (shmreg_open(test_dir("tiny"), &o, &tiny))
        bail_out("tiny: %s", shmreg_errmsg());
    is(shmreg_restore(tiny, dir, 0, &rep), SHMREG_EFULL, "2 sessions into a table of 1: EFULL");
    shmreg_session_counts(tiny, counts, SHMREG_STATE_COUNT);
    is(counts[0], 0, "nothing restored");
    shmreg_close(tiny);
    shmreg_close(a);
}

static void child_claims(void *arg)
{
    shmreg *h;
    if (shmreg_open(arg, NULL, &h))
        _exit(2);
    int rc = shmreg_sync_claim(h);
    shmreg_close(h);
    _exit(rc == SHMREG_EBUSY ? 0 : 1);
}

static void child_claims_and_dies(void *arg)
{
    shmreg *h;
    if (shmreg_open(arg, NULL, &h) || shmreg_sync_claim(h))
        _exit(2);
    kill(getpid(), SIGKILL);
}

static void status(void)
{
    const char *dir = keep(test_dir("status"));
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE};
    shmreg_open(dir, &o, &h);
    shmreg_stats st = test_stats(h);
    ok(st.sync_pid == 0 && st.sync_alive == 0 && st.sync_commit_ns == 0 && st.sync_durable_seq == 0,
       "a fresh registry has no daemon");
    is(shmreg_sync_report(h, 5, 6), SHMREG_EPERM, "report without the claim: EPERM");
    is(shmreg_sync_claim(h), 0, "claimed");
    test_session_new(h);
    test_session_new(h);
    is(shmreg_sync_report(h, 1, 777), 0, "reported");
    st = test_stats(h);
    is(st.sync_pid, getpid(), "stat shows our pid");
    is(st.sync_alive, 1, "alive");
    is(st.sync_durable_seq, 1, "durable position");
    is(st.sync_behind, st.events_published - 1, "behind = published - durable");
    is(st.sync_commit_ns, 777, "commit time");
    is(test_wait(test_fork(child_claims, (void *)dir)), 0, "another process's claim: EBUSY");
    is(shmreg_sync_release(h), 0, "released");
    is(test_wait(test_fork(child_claims_and_dies, (void *)dir)), 128 + SIGKILL, "a claimer killed");
    st = test_stats(h);
    is(st.sync_alive, 0, "its claim shows as dead");
    is(shmreg_sync_claim(h), 0, "and is taken over");
    shmreg_sync_release(h);
    st = test_stats(h);
    is(st.sync_pid, 0, "released: no pid");
    shmreg_close(h);
}

/* Call control travels with the session: memberships, variables and the
 * timeout are in the record (format 2), and restore puts them back; a
 * session whose deadline passed while it was stored comes back Failed. */
static void restore_control(void)
{
    shmreg *a = fresh("ctl-a");
    shmreg_id live = full_session(a, 4), late = full_session(a, 5), plain = full_session(a, 6);
    uint64_t hour = 3600ull * 1000000000ull, now = (uint64_t)time(NULL) * 1000000000ull;
    is(shmreg_profile_join(a, &live, S("trunk"), S("carrier-a"), 10, NULL), 0, "join trunk");
    is(shmreg_profile_join(a, &live, S("inbound"), S(""), 0, NULL), 0, "join inbound");
    is(shmreg_profile_join(a, &late, S("trunk"), S("carrier-a"), 10, NULL), 0, "late joins trunk");
    is(shmreg_session_var_set(a, &live, S("account"), S("acme-42")), 0, "var account");
    is(shmreg_session_var_set(a, &live, S("route"), S("")), 0, "var route, empty");
    is(shmreg_session_set_timeout(a, &live, now + hour, SHMREG_TIMEOUT_NOTIFY, 32000000000ull), 0,
       "live: a timeout an hour away, NOTIFY with 32 s grace");
    is(shmreg_session_set_timeout(a, &late, now - hour, SHMREG_TIMEOUT_FAIL, 0), 0,
       "late: a deadline an hour ago (no sweep ran)");

    /* The record itself. */
    size_t len = encode(a, &live, recbuf);
    shmreg_session s;
    shmreg_session_control c;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    is(shmreg_session_decode_control(recbuf, len, &s, &c, d, &nd), 0, "a format-2 record decodes");
    is(c.nprofiles, 2, "with 2 memberships");
    is(c.nvars, 2, "2 variables");
    ok(c.var_key[0].len == 7 && memcmp(c.var_key[0].ptr, "account", 7) == 0 &&
       c.var_value[0].len == 7 && memcmp(c.var_value[0].ptr, "acme-42", 7) == 0,
       "account=acme-42 first");
    is(c.deadline_ns, now + hour, "the deadline");
    is(c.timeout_flags, SHMREG_TIMEOUT_NOTIFY, "its action");
    is(c.grace_ns, 32000000000ull, "its grace");
    is(shmreg_session_decode(recbuf, len, &s, d, &nd), 0, "the plain decoder reads it too");
    size_t len1;
    is(shmreg_session_encode(&s, d, nd, recbuf, SHMREG_SESSION_RECORD_MAX, &len1), 0, "format 1");
    memset(&c, 0xff, sizeof c);
    is(shmreg_session_decode_control(recbuf, len1, &s, &c, d, &nd), 0, "format 1 decodes");
    ok(c.nprofiles == 0 && c.nvars == 0 && c.deadline_ns == 0, "with an empty control part");
    c.nprofiles = SHMREG_MAX_PROFILES_PER_SESSION + 1;
    is(shmreg_session_encode_control(&s, &c, d, nd, recbuf, SHMREG_SESSION_RECORD_MAX, &len1),
       SHMREG_EINVAL, "a control part over its limits: EINVAL");

    const char *dir = keep(test_dir("ctldir"));
    write_dir(a, dir, 77);
    shmreg *b = fresh("ctl-b");
    shmreg_restore_report rep;
    is(shmreg_restore(b, dir, 0, &rep), 0, "restored");
    is(rep.sessions, 2, "live and plain came back");
    is(rep.expired, 1, "late had expired");
    is(rep.skipped, 1, "and, Failed now, was not restored by the default policy");
    is(rep.profiles, 2, "2 memberships restored");
    uint64_t n = 9;
    is(shmreg_profile_count(b, S("trunk"), S("carrier-a"), &n), 0, "count trunk");
    is(n, 1, "trunk=carrier-a has the 1 live call");
    is(shmreg_profile_count(b, S("inbound"), S(""), &n), 0, "count inbound");
    is(n, 1, "inbound has 1");
    shmreg_read_begin(b);
    shmreg_str val;
    is(shmreg_session_var_get(b, &live, S("account"), &val), 0, "its variable");
    ok(val.len == 7 && memcmp(val.ptr, "acme-42", 7) == 0, "account=acme-42");
    is(shmreg_session_get(b, &live, &s), 0, "get live");
    is(s.deadline_ns, now + hour, "its deadline");
    is(s.timeout_flags, SHMREG_TIMEOUT_NOTIFY, "its action");
    is(s.nprofiles, 2, "2 profiles in the view");
    is(s.nvars, 2, "2 variables in the view");
    is(shmreg_session_get(b, &plain, &s), 0, "get plain");
    ok(s.nprofiles == 0 && s.nvars == 0 && s.deadline_ns == 0, "plain has no call control");
    shmreg_read_end(b);
    shmreg_close(b);

    shmreg *c2 = fresh("ctl-c");
    is(shmreg_restore(c2, dir, SHMREG_RESTORE_ALL, &rep), 0, "restored with ALL");
    is(rep.sessions, 3, "all 3");
    shmreg_read_begin(c2);
    is(shmreg_session_get(c2, &late, &s), 0, "late is there");
    is(s.state, SHMREG_STATE_FAILED, "Failed, as the sweep would have left it");
    is(s.deadline_ns, 0, "and no timeout armed");
    is(s.nprofiles, 0, "and, its call over, in no profile");
    shmreg_read_end(c2);
    shmreg_check_report cr;
    is(shmreg_check(c2, 0, &cr, NULL, NULL, NULL), 0, "check is clean");
    shmreg_close(c2);
    shmreg_close(a);
    (void)plain;
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(records);
    TEST_RUN(restore_one);
    TEST_RUN(rooms);
    TEST_RUN(restore_dir);
    TEST_RUN(restore_control);
    TEST_RUN(status);
    alarm(0);
    return done_testing();
}
