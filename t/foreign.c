/*
 * foreign.c — many hosts in one process: two registries with their own
 * node IDs (A = 1, B = 2) stand for two hosts, and what shmreg-sync would
 * carry between them through Redis is carried here by hand: A's session
 * encoded (shmreg_session_encode_control), decoded, imported into B.
 *
 * Checked exactly: node IDs at create and in stat; the version an owner
 * moves on with every kind of change; a copy's fields, SDPs, state,
 * counters, dialogs and variables, byte for byte; that a copy refuses
 * every changing call with SHMREG_EFOREIGN and keeps its version; that an
 * older version changes nothing (SHMREG_ECONFLICT) while an equal or newer
 * one replaces state (any jump), dialogs and variables exactly; imports of
 * one's own sessions, deletes by the wrong node; adoption with memberships
 * and timeout, its flag and event; a copy passing to its adopter; the
 * adoption request word; the mirror status seqlock; and a clean check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mirror_util.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){(lit), sizeof(lit) - 1})

static shmreg *open_node(const char *name, uint32_t node)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    o.max_sessions = 64;
    o.max_handles = 16;
    o.event_records = 1024;
    o.heap_bytes = 16u << 20;
    o.node_id = node;
    shmreg *h = NULL;
    int rc = shmreg_open(test_dir(name), &o, &h);
    if (rc)
        bail_out("open %s: %s", name, shmreg_errmsg());
    return h;
}


/* A's session `id` as the mirror carries it: encoded with its dialogs and
 * control part into buf; *ver its version. */
static size_t carry(shmreg *a, const shmreg_id *id, unsigned char *buf, size_t cap, uint64_t *ver)
{
    shmreg_session v;
    shmreg_session_control c;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    size_t len = 0;
    shmreg_read_begin(a);
    if (shmreg_session_get(a, id, &v) != 0 || shmreg_session_control_get(a, id, &c) != 0)
        bail_out("carry: %s", shmreg_errmsg());
    unsigned nd = 0;
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        if (shmreg_session_dialog(a, id, i, &d[nd]) == 0)
            nd++;
    *ver = v.version;
    if (shmreg_session_encode_control(&v, &c, d, nd, buf, cap, &len) != 0)
        bail_out("encode: %s", shmreg_errmsg());
    shmreg_read_end(a);
    return len;
}

static int import_rec(shmreg *b, uint32_t node, uint64_t ver, const unsigned char *buf, size_t len)
{
    shmreg_session s;
    shmreg_session_control c;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    int rc = shmreg_session_decode_control(buf, len, &s, &c, d, &nd);
    return rc ? rc : shmreg_session_import(b, node, ver, &s, &c, d, nd);
}

/* The session's record as a copy of it must equal (mirror_util.h): 0 on
 * failure, else its length. */
static size_t masked(shmreg *h, const shmreg_id *id, unsigned char *buf, size_t cap)
{
    size_t len = 0;
    return record_of(h, id, buf, cap, &len, NULL) ? 0 : len;
}

static unsigned char rec_a[SHMREG_SESSION_RECORD_MAX], rec_b[SHMREG_SESSION_RECORD_MAX];

static void test_nodes(void)
{
    shmreg *h = NULL;
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    o.node_id = SHMREG_NODE_MAX + 1;
    const char *over = test_dir("over");
    is(shmreg_open(over, &o, &h), SHMREG_EINVAL, "node_id over SHMREG_NODE_MAX: EINVAL");
    ok(access(over, F_OK) != 0, "checked before anything is made: no directory");
    shmreg *solo = open_node("solo", 0), *a = open_node("a1", 1);
    shmreg_stats st;
    is(shmreg_stat(solo, &st), 0, "stat of a single host");
    is(st.node_id, 0, "node_id 0");
    is(shmreg_stat(a, &st), 0, "stat of node 1");
    is(st.node_id, 1, "node_id 1");
    is(st.foreign_sessions, 0, "no foreign sessions");
    shmreg_id id = test_session_new(solo);
    shmreg_session s;
    memset(&s, 0, sizeof s);
    s.id = id;
    s.state = SHMREG_STATE_ACTIVE;
    is(shmreg_session_import(solo, 1, 1, &s, NULL, NULL, 0), SHMREG_EINVAL,
       "import into a registry with no node ID: EINVAL");
    is(shmreg_session_import(a, 1, 1, &s, NULL, NULL, 0), SHMREG_EINVAL, "import from our own node: EINVAL");
    is(shmreg_session_import(a, 0, 1, &s, NULL, NULL, 0), SHMREG_EINVAL, "import from node 0: EINVAL");
    is(shmreg_session_import(a, SHMREG_NODE_MAX + 1, 1, &s, NULL, NULL, 0), SHMREG_EINVAL,
       "import from a node over the maximum: EINVAL");
    is(shmreg_session_adopt(solo, &id, NULL), SHMREG_EINVAL, "adopt on a single host: EINVAL");
    is(shmreg_node_adopt_request(a, 1), SHMREG_EINVAL, "adoption request for ourselves: EINVAL");
    shmreg_close(solo);
    shmreg_close(a);
}

static void test_versions(void)
{
    shmreg *a = open_node("v1", 1);
    shmreg_id id = test_session_new(a);
    uint64_t v = test_session_version(a, &id);
    is(v, 1, "a new session has version 1");
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:alice@example.com");
    struct { const char *what; int rc; } step[8];
    unsigned n = 0;
    step[n++] = (typeof(step[0])){"update", shmreg_session_update(a, &id, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI))};
    step[n++] = (typeof(step[0])){"set_sdp", shmreg_session_set_sdp(a, &id, SHMREG_SDP_LOCAL, "v=0\r\n", 5)};
    step[n++] = (typeof(step[0])){"transition", shmreg_session_transition(a, &id, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL)};
    step[n++] = (typeof(step[0])){"dialog_bind", shmreg_dialog_bind(a, S("c1"), S("l1"), S("r1"), &id)};
    step[n++] = (typeof(step[0])){"dialog_unbind", shmreg_dialog_unbind(a, S("c1"), S("l1"), S("r1"))};
    step[n++] = (typeof(step[0])){"var_set", shmreg_session_var_set(a, &id, S("k"), S("v"))};
    step[n++] = (typeof(step[0])){"profile_join", shmreg_profile_join(a, &id, S("p"), S("x"), 0, NULL)};
    step[n++] = (typeof(step[0])){"set_timeout", shmreg_session_set_timeout(a, &id, 60000000000ull, SHMREG_TIMEOUT_RELATIVE | SHMREG_TIMEOUT_FAIL, 0)};
    for (unsigned i = 0; i < n; i++) {
        uint64_t now = test_session_version(a, &id);
        is(step[i].rc, 0, "%s succeeds", step[i].what);
        (void)now;
    }
    is(test_session_version(a, &id), 1 + n, "each of the %u changes moved the version on by one: %u", n, 1 + n);
    is(shmreg_session_counter_add(a, &id, 0, 5), 0, "counter_add");
    is(test_session_version(a, &id), 1 + n, "counters move without a version (as without an event)");
    shmreg_close(a);
}

static void test_copies(void)
{
    shmreg *a = open_node("ca", 1), *b = open_node("cb", 2);
    shmreg_sub *sub = NULL;
    is(shmreg_subscribe(b, SHMREG_EV_ALL, NULL, &sub), 0, "subscribe on B");
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_CALL_ID] = S("call-1@a");
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:alice@example.com");
    f.str[SHMREG_FIELD_TO_URI] = S("sip:bob@example.com");
    f.local_rtp_port = 40000;
    shmreg_id id;
    is(shmreg_session_create(a, &f, &id), 0, "create on A");
    char big[6000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('a' + i % 26);
    is(shmreg_session_set_sdp(a, &id, SHMREG_SDP_REMOTE, big, sizeof big), 0, "a 6000-byte SDP");
    is(shmreg_session_transition(a, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE, NULL), 0, "Active");
    is(shmreg_dialog_bind(a, S("call-1@a"), S("lt"), S("rt"), &id), 0, "dialog 1");
    is(shmreg_dialog_bind(a, S("call-1@a"), S("lt"), S("rt2"), &id), 0, "dialog 2 (a fork)");
    is(shmreg_session_var_set(a, &id, S("acct"), S("gold")), 0, "variable");
    is(shmreg_profile_join(a, &id, S("trunk"), S("t1"), 0, NULL), 0, "membership");
    is(shmreg_session_set_timeout(a, &id, 3600000000000ull, SHMREG_TIMEOUT_RELATIVE | SHMREG_TIMEOUT_FAIL, 0),
       0, "timeout");
    is(shmreg_session_counter_add(a, &id, 1, 777), 0, "counter");

    uint64_t ver;
    size_t la = carry(a, &id, rec_a, sizeof rec_a, &ver);
    is(ver, 8, "A's version after 7 changes: 8");
    is(import_rec(b, 1, ver, rec_a, la), 0, "import into B");
    shmreg_event ev[8];
    int ne = test_drain_events(sub, ev, 8);
    ok(ne >= 1 && ev[ne - 1].type == SHMREG_EV_SESSION_IMPORTED && test_id_eq(&ev[ne - 1].session, &id) &&
           ev[ne - 1].new_state == SHMREG_STATE_ACTIVE,
       "the last event on B is one session_imported, Active (%d events)", ne);
    shmreg_session v;
    shmreg_read_begin(b);
    is(shmreg_session_get(b, &id, &v), 0, "B finds the copy");
    is(v.owner_node, 1, "owner_node 1");
    is(v.version, 8, "version 8");
    is(v.flags, SHMREG_SESSION_FOREIGN, "flags: FOREIGN only");
    is(v.state, SHMREG_STATE_ACTIVE, "state Active");
    is(v.ndialogs, 2, "2 dialogs");
    is(v.counter[1], 777, "counter 777");
    ok(test_str_is(v.sdp[SHMREG_SDP_REMOTE], big, sizeof big), "the 6000-byte SDP, byte for byte");
    shmreg_session_control c;
    is(shmreg_session_control_get(b, &id, &c), 0, "control");
    is(c.nprofiles, 0, "a copy holds no membership");
    is(c.deadline_ns, 0, "and no timeout");
    is(c.nvars, 1, "but the variable");
    shmreg_read_end(b);
    size_t lb = masked(b, &id, rec_b, sizeof rec_b), lm = masked(a, &id, rec_a, sizeof rec_a);
    is_mem(rec_b, lb, rec_a, lm, "B's copy equals A's session byte for byte (memberships, timeout masked)");
    shmreg_id found;
    is(shmreg_dialog_find(b, S("call-1@a"), S("lt"), S("rt2"), &found), 0, "B finds the session by dialog");
    ok(test_id_eq(&found, &id), "the right one");
    uint64_t cursor = 0;
    shmreg_read_begin(b);
    is(shmreg_session_by_user(b, S("bob@example.com"), SHMREG_USER_TO, &cursor, &v), 0,
       "and by user");
    shmreg_read_end(b);
    shmreg_stats st;
    shmreg_stat(b, &st);
    is(st.foreign_sessions, 1, "stat: 1 foreign session");

    /* Every changing call refuses the copy and changes nothing. */
    int rcs[11];
    unsigned k = 0;
    rcs[k++] = shmreg_session_update(b, &id, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI));
    rcs[k++] = shmreg_session_set_sdp(b, &id, SHMREG_SDP_LOCAL, "x", 1);
    rcs[k++] = shmreg_session_transition(b, &id, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATING, NULL);
    rcs[k++] = shmreg_session_counter_add(b, &id, 0, 1);
    rcs[k++] = shmreg_session_delete(b, &id);
    rcs[k++] = shmreg_dialog_bind(b, S("other"), S("x"), S("y"), &id);
    rcs[k++] = shmreg_dialog_unbind(b, S("call-1@a"), S("lt"), S("rt"));
    rcs[k++] = shmreg_session_var_set(b, &id, S("k"), S("v"));
    rcs[k++] = shmreg_session_var_unset(b, &id, S("acct"));
    rcs[k++] = shmreg_profile_join(b, &id, S("trunk"), S("t1"), 0, NULL);
    rcs[k++] = shmreg_session_set_timeout(b, &id, 1000000000ull, SHMREG_TIMEOUT_RELATIVE | SHMREG_TIMEOUT_FAIL, 0);
    unsigned refused = 0;
    for (unsigned i = 0; i < k; i++)
        refused += rcs[i] == SHMREG_EFOREIGN;
    is(refused, k, "all %u changing calls on the copy: SHMREG_EFOREIGN", k);
    is(test_session_version(b, &id), 8, "the copy's version is still 8");
    lb = masked(b, &id, rec_b, sizeof rec_b);
    is_mem(rec_b, lb, rec_a, lm, "and its bytes are unchanged");
    {
        shmreg_id room = test_room_new(b, "conf", 4);
        is(shmreg_room_join(b, &room, &id, S("sip:a@x"), S(""), 0), SHMREG_EFOREIGN,
           "joining a copy to a room: SHMREG_EFOREIGN");
    }

    /* Ordering. */
    is(import_rec(b, 1, 7, rec_a, carry(a, &id, rec_a, sizeof rec_a, &ver)), SHMREG_ECONFLICT,
       "an older version (7 < 8): SHMREG_ECONFLICT");
    is(test_session_version(b, &id), 8, "nothing changed");
    is(shmreg_session_transition(a, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL), 0, "A: OnHold");
    is(shmreg_session_transition(a, &id, SHMREG_STATE_ONHOLD, SHMREG_STATE_TERMINATING, NULL), 0,
       "A: Terminating");
    is(shmreg_dialog_unbind(a, S("call-1@a"), S("lt"), S("rt")), 0, "A: a dialog unbound");
    is(shmreg_dialog_bind(a, S("call-1@a"), S("lt"), S("rt3"), &id), 0, "A: another bound");
    is(shmreg_session_var_unset(a, &id, S("acct")), 0, "A: variable unset");
    is(shmreg_session_var_set(a, &id, S("leg"), S("b")), 0, "A: another set");
    la = carry(a, &id, rec_a, sizeof rec_a, &ver);
    is(ver, 14, "A's version 14");
    is(import_rec(b, 1, ver, rec_a, la), 0, "import of version 14: Active -> Terminating in one jump");
    shmreg_read_begin(b);
    shmreg_session_get(b, &id, &v);
    is(v.state, SHMREG_STATE_TERMINATING, "the copy is Terminating");
    is(v.version, 14, "version 14");
    shmreg_read_end(b);
    lb = masked(b, &id, rec_b, sizeof rec_b);
    lm = masked(a, &id, rec_a, sizeof rec_a);
    is_mem(rec_b, lb, rec_a, lm, "dialogs and variables exactly A's again");
    is(shmreg_dialog_find(b, S("call-1@a"), S("lt"), S("rt"), &found), SHMREG_ENOENT,
       "the unbound dialog is gone from B");
    la = carry(a, &id, rec_a, sizeof rec_a, &ver);
    is(import_rec(b, 1, ver, rec_a, la), 0, "the same version again: applied (idempotent)");
    lb = masked(b, &id, rec_b, sizeof rec_b);
    lm = masked(a, &id, rec_a, sizeof rec_a);
    is_mem(rec_b, lb, rec_a, lm, "still equal");

    /* One's own, and deletes. */
    shmreg_id mine = test_session_new(b);
    size_t lo = carry(b, &mine, rec_b, sizeof rec_b, &ver);
    is(import_rec(b, 1, 100, rec_b, lo), SHMREG_EEXIST, "importing B's own session into B: EEXIST");
    is(test_session_version(b, &mine), 1, "it is unchanged");
    is(shmreg_session_import_delete(b, 3, &id), SHMREG_ECONFLICT, "delete by node 3 of node 1's copy: ECONFLICT");
    is(shmreg_session_import_delete(b, 1, &mine), SHMREG_ECONFLICT, "delete by node 1 of B's own: ECONFLICT");
    is(shmreg_session_import_delete(b, 1, &id), 0, "delete by its owner");
    is(test_session_version(b, &id), 0, "the copy is gone");
    is(shmreg_session_import_delete(b, 1, &id), SHMREG_ENOENT, "again: ENOENT");
    shmreg_check_report rep;
    is(shmreg_check(b, 0, &rep, NULL, NULL, NULL), 0, "check of B");
    is(rep.problems, 0, "no problems");
    shmreg_unsubscribe(sub);
    shmreg_close(a);
    shmreg_close(b);
}

static void test_adoption(void)
{
    shmreg *a = open_node("aa", 1), *b = open_node("ab", 2);
    shmreg_id id = test_session_new(a);
    is(shmreg_session_transition(a, &id, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL), 0, "Active on A");
    is(shmreg_profile_join(a, &id, S("trunk"), S("t1"), 0, NULL), 0, "member of trunk/t1");
    is(shmreg_dialog_bind(a, S("cx"), S("l"), S("r"), &id), 0, "a dialog");
    uint64_t deadline = test_now_ns() + 3600000000000ull;
    is(shmreg_session_set_timeout(a, &id, deadline, SHMREG_TIMEOUT_FAIL, 0), 0, "a timeout");
    uint64_t ver;
    size_t la = carry(a, &id, rec_a, sizeof rec_a, &ver);
    is(import_rec(b, 1, ver, rec_a, la), 0, "B holds a copy");
    uint64_t count = 9;
    is(shmreg_profile_count(b, S("trunk"), S("t1"), &count), 0, "profile count on B");
    is(count, 0, "0: copies are in no profile");

    shmreg_sub *sub = NULL;
    shmreg_subscribe(b, SHMREG_EV_MASK(SHMREG_EV_SESSION_ADOPTED), NULL, &sub);
    shmreg_session s;
    shmreg_session_control c;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    is(shmreg_session_decode_control(rec_a, la, &s, &c, d, &nd), 0, "the control part from the record");
    is(shmreg_session_adopt(b, &id, &c), 0, "B adopts the session");
    shmreg_event ev[4];
    int ne = test_drain_events(sub, ev, 4);
    ok(ne == 1 && ev[0].type == SHMREG_EV_SESSION_ADOPTED && test_id_eq(&ev[0].session, &id) &&
           ev[0].new_state == SHMREG_STATE_ACTIVE,
       "one session_adopted event, Active");
    shmreg_session v;
    shmreg_session_control vc;
    shmreg_read_begin(b);
    shmreg_session_get(b, &id, &v);
    shmreg_session_control_get(b, &id, &vc);
    is(v.owner_node, 2, "owned by 2 now");
    is(v.flags, SHMREG_SESSION_ADOPTED, "flags: ADOPTED, not FOREIGN");
    ok(v.version > ver, "its version moved on (%llu > %llu)", (unsigned long long)v.version,
       (unsigned long long)ver);
    is(vc.nprofiles, 1, "its membership is back");
    is(vc.deadline_ns, deadline, "its timeout is armed for the same deadline");
    shmreg_read_end(b);
    is(shmreg_profile_count(b, S("trunk"), S("t1"), &count), 0, "profile count");
    is(count, 1, "1");
    is(shmreg_session_transition(b, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING, NULL), 0,
       "B changes it now (a BYE)");
    is(shmreg_session_adopt(b, &id, NULL), SHMREG_EEXIST, "adopting it again: EEXIST");
    is(import_rec(b, 1, ver + 100, rec_a, la), SHMREG_EEXIST,
       "a late record from the dead owner: EEXIST, nothing changed");
    shmreg_read_begin(b);
    shmreg_session_get(b, &id, &v);
    is(v.state, SHMREG_STATE_TERMINATING, "still Terminating");
    shmreg_read_end(b);

    /* A third host C held a copy from 1; B's adopted version reaches it. */
    shmreg *c3 = open_node("ac", 3);
    is(import_rec(c3, 1, ver, rec_a, la), 0, "C holds node 1's copy");
    size_t lb = carry(b, &id, rec_b, sizeof rec_b, &ver);
    is(import_rec(c3, 2, ver, rec_b, lb), 0, "C imports B's version");
    shmreg_read_begin(c3);
    shmreg_session_get(c3, &id, &v);
    shmreg_read_end(c3);
    is(v.owner_node, 2, "C's copy passed to node 2");
    is(v.state, SHMREG_STATE_TERMINATING, "with B's state");
    is(shmreg_session_import_delete(c3, 1, &id), SHMREG_ECONFLICT,
       "a delete from the dead node 1 no longer touches it");

    /* The operator's request word and the status. */
    uint32_t node = 9;
    is(shmreg_node_adopt_take(b, &node), SHMREG_EPERM, "take without the sync claim: EPERM");
    is(shmreg_node_adopt_request(b, 7), 0, "request adoption of node 7");
    is(shmreg_sync_claim(b), 0, "claim");
    is(shmreg_node_adopt_take(b, &node), 0, "take");
    is(node, 7, "node 7");
    is(shmreg_node_adopt_take(b, &node), 0, "take again");
    is(node, 0, "nothing pending");
    shmreg_mirror_status ms, got;
    is(shmreg_mirror_get(b, &got), 0, "status before any report");
    is(got.state, SHMREG_MIRROR_OFF, "OFF");
    memset(&ms, 0, sizeof ms);
    ms.state = SHMREG_MIRROR_UP;
    ms.npeers = 2;
    ms.pushed_seq = 12345;
    snprintf(ms.last_error, sizeof ms.last_error, "redis: connection refused");
    ms.peer[1].node = 3;
    ms.peer[1].lag_ns = 777;
    is(shmreg_mirror_report(b, &ms), 0, "report");
    is(shmreg_mirror_get(b, &got), 0, "get");
    is_mem(&got, sizeof got, &ms, sizeof ms, "the status read back is the one reported");
    shmreg_sync_release(b);
    is(shmreg_mirror_report(b, &ms), SHMREG_EPERM, "report without the claim: EPERM");
    shmreg_check_report rep;
    is(shmreg_check(b, 0, &rep, NULL, NULL, NULL), 0, "check of B");
    is(rep.problems, 0, "no problems");
    shmreg_unsubscribe(sub);
    shmreg_close(a);
    shmreg_close(b);
    shmreg_close(c3);
}

/* The node that was adopted while it lived hands its sessions over. */
static void test_cede(void)
{
    shmreg *a = open_node("ce", 1);
    shmreg_id id[3];
    for (int i = 0; i < 3; i++) {
        id[i] = test_session_new(a);
        is(shmreg_session_transition(a, &id[i], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL), 0, "Active");
    }
    is(shmreg_profile_join(a, &id[0], S("trunk"), S("t1"), 0, NULL), 0, "a membership");
    is(shmreg_session_set_timeout(a, &id[1], 3600000000000ull, SHMREG_TIMEOUT_RELATIVE | SHMREG_TIMEOUT_FAIL, 0),
       0, "a timeout");
    shmreg_session s;
    memset(&s, 0, sizeof s);
    s.id.bytes[0] = 0x77;
    s.id.bytes[15] = 7;
    s.state = SHMREG_STATE_RINGING;
    is(shmreg_session_import(a, 3, 5, &s, NULL, NULL, 0), 0, "and a copy of node 3's");
    uint64_t v0 = test_session_version(a, &id[0]), n = 99;
    is(shmreg_node_cede(a, 1, &n), SHMREG_EINVAL, "ceding to ourselves: EINVAL");
    is(shmreg_node_cede(a, 2, &n), 0, "node 2 adopted us: cede");
    is(n, 3, "our 3 sessions handed over (not node 3's copy)");
    shmreg_session v;
    unsigned to2 = 0;
    for (int i = 0; i < 3; i++) {
        shmreg_read_begin(a);
        shmreg_session_get(a, &id[i], &v);
        shmreg_read_end(a);
        to2 += v.owner_node == 2 && (v.flags & SHMREG_SESSION_FOREIGN) && v.nprofiles == 0 && v.deadline_ns == 0;
    }
    is(to2, 3, "each a foreign copy owned by 2, without membership or timeout");
    is(test_session_version(a, &id[0]), v0, "versions stay");
    uint64_t count = 9;
    shmreg_profile_count(a, S("trunk"), S("t1"), &count);
    is(count, 0, "the profile counts none of them");
    is(shmreg_session_transition(a, &id[2], SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING, NULL), SHMREG_EFOREIGN,
       "a worker's BYE on one: SHMREG_EFOREIGN");
    shmreg_read_begin(a);
    shmreg_session_get(a, &s.id, &v);
    shmreg_read_end(a);
    is(v.owner_node, 3, "node 3's copy is still node 3's");
    is(shmreg_node_cede(a, 2, &n), 0, "ceding again");
    is(n, 0, "hands over nothing");
    shmreg_close(a);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_nodes);
    TEST_RUN(test_versions);
    TEST_RUN(test_copies);
    TEST_RUN(test_adoption);
    TEST_RUN(test_cede);
    alarm(0);
    return done_testing();
}
