/*
 * mirror.c — shmreg-sync --redis against a real redis-server and real
 * daemons: registries of three nodes (A = 1, B = 2, C = 3), each with its
 * own daemon, mirror each other; the copies are compared byte for byte
 * with their owner's sessions (the whole encoded record, less the
 * memberships and timeout a copy does not hold), through changes,
 * deletes, a Redis outage and restart (data lost), the SIGKILL of a
 * node's daemon (takeover after its lease), an operator's adoption, 100
 * simultaneous adoptions of fake dead nodes by two hosts (exactly one
 * wins each), bad records in Redis (each skipped and named in the log),
 * and a node ID clash (exit status 3).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mirror_util.h"
#include "redisutil.h"
#include "shmreg-redis.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})
#define NSESS 50

static redis_srv srv;
static char url[64], rdir[512];
static rds *rc_;
static node A, B, C;

/* Start n's daemon with up to two extra arguments; stderr to n->log. */
static pid_t start_daemon(node *n, const char *a1, const char *a2, const char *a3)
{
    const char *argv[] = {"shmreg-sync", "-r", n->path, "--redis", url, "--interval", "20",
                          "--lease-ms", "1500", a1, a2, a3, NULL};
    spawn_daemon(n, argv);
    return n->pid;
}

static void stop_daemon(node *n, int sig)
{
    if (n->pid > 0) {
        kill(n->pid, sig);
        test_wait(n->pid);
        n->pid = 0;
    }
}

/* ------------------------------------------------------------ comparing */
static unsigned char bufa[SHMREG_SESSION_RECORD_MAX], bufb[SHMREG_SESSION_RECORD_MAX];

/* 1 when b's copy of id equals a's session exactly (record, state,
 * version, owner `owner`, flags has `flag`). */
static int same(shmreg *a, shmreg *b, const shmreg_id *id, uint32_t owner, uint64_t flag)
{
    size_t la, lb;
    shmreg_session sa, sb;
    if (record_of(a, id, bufa, sizeof bufa, &la, &sa) != 0 || record_of(b, id, bufb, sizeof bufb, &lb, &sb) != 0)
        return 0;
    return la == lb && memcmp(bufa, bufb, la) == 0 && sa.state == sb.state && sa.version == sb.version &&
           sb.owner_node == owner && (sb.flags & flag) == flag;
}
/* Every session a owns is on b as a copy equal to it, and b holds no
 * other copy of a's. */
static int mirrored(node *a, node *b)
{
    static shmreg_id ia[4096], ib[4096];
    int na = owned(a->h, a->id, ia, 4096), nb = owned(b->h, a->id, ib, 4096);
    if (na != nb)
        return 0;
    for (int i = 0; i < na; i++)
        if (!same(a->h, b->h, &ia[i], a->id, SHMREG_SESSION_FOREIGN))
            return 0;
    return 1;
}

static void explain(node *a, node *b)
{
    static shmreg_id ia[4096], ib[4096];
    int na = owned(a->h, a->id, ia, 4096), nb = owned(b->h, a->id, ib, 4096);
    diag("node %u owns %d, node %u holds %d copies", a->id, na, b->id, nb);
    for (int i = 0, shown = 0; i < na && shown < 3; i++) {
        size_t la = 0, lb = 0;
        shmreg_session sa, sb;
        memset(&sa, 0, sizeof sa);
        memset(&sb, 0, sizeof sb);
        int ra = record_of(a->h, &ia[i], bufa, sizeof bufa, &la, &sa);
        int rb = record_of(b->h, &ia[i], bufb, sizeof bufb, &lb, &sb);
        if (ra == 0 && rb == 0 && la == lb && !memcmp(bufa, bufb, la) && sa.version == sb.version &&
            sa.state == sb.state)
            continue;
        size_t k = 0;
        while (k < la && k < lb && bufa[k] == bufb[k])
            k++;
        diag("  differs: rc %d/%d len %zu/%zu first diff at %zu, ver %llu/%llu, state %d/%d, flags %llx",
             ra, rb, la, lb, k, (unsigned long long)sa.version, (unsigned long long)sb.version, sa.state,
             sb.state, (unsigned long long)sb.flags);
        shown++;
    }
}

static int cond_ab(void *arg)
{
    (void)arg;
    return mirrored(&A, &B);
}

/* ------------------------------------------------------------ sessions */

static char big_sdp[5000];

static shmreg_id make_call(shmreg *h, int i)
{
    char from[64], to[64], cid[64], app[32];
    snprintf(from, sizeof from, "sip:alice%d@a.example", i);
    snprintf(to, sizeof to, "sip:bob%d@b.example", i);
    snprintf(cid, sizeof cid, "mirror-%d-%d@a", i, (int)getpid());
    snprintf(app, sizeof app, "app\x01%d", i);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = test_ss(from);
    f.str[SHMREG_FIELD_TO_URI] = test_ss(to);
    f.str[SHMREG_FIELD_CALL_ID] = test_ss(cid);
    f.str[SHMREG_FIELD_CODEC] = S("PCMU");
    f.str[SHMREG_FIELD_APP_DATA] = test_ss(app);
    f.local_rtp_port = (uint16_t)(10000 + i);
    shmreg_id id;
    int ok = shmreg_session_create(h, &f, &id) == 0;
    ok = ok && shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0\r\ns=local\r\n", 15) == 0;
    ok = ok && shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, big_sdp, sizeof big_sdp) == 0;
    ok = ok && shmreg_dialog_bind(h, test_ss(cid), S("lt1"), S("rt1"), &id) == 0;
    ok = ok && shmreg_dialog_bind(h, test_ss(cid), S("lt2"), S("rt2"), &id) == 0;
    ok = ok && shmreg_session_var_set(h, &id, S("account"), S("acme")) == 0;
    ok = ok && shmreg_session_var_set(h, &id, S("leg"), S("a")) == 0;
    ok = ok && shmreg_profile_join(h, &id, S("trunk"), S("t1"), 0, NULL) == 0;
    ok = ok && shmreg_session_set_timeout(h, &id, 600000000000ull, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE, 0) == 0;
    ok = ok && shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL) == 0;
    ok = ok && shmreg_session_transition(h, &id, SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE, NULL) == 0;
    f.str[SHMREG_FIELD_CODEC] = S("opus");
    ok = ok && shmreg_session_update(h, &id, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)) == 0;
    if (!ok)
        bail_out("making call %d: %s", i, shmreg_errmsg());
    return id;
}

static uint64_t version_of(shmreg *h, const shmreg_id *id)
{
    shmreg_session s;
    shmreg_read_begin(h);
    uint64_t v = shmreg_session_get(h, id, &s) == 0 ? s.version : 0;
    shmreg_read_end(h);
    return v;
}

static shmreg_id ids[NSESS];

static void test_mirroring(void)
{
    for (int i = 0; i < NSESS; i++)
        ids[i] = make_call(A.h, i);
    if (!ok(wait_for(cond_ab, NULL, 10), "B holds all %d of A's sessions as exact copies", NSESS))
        explain(&A, &B);
    int exact = 0, found = 0;
    for (int i = 0; i < NSESS; i++) {
        exact += same(A.h, B.h, &ids[i], 1, SHMREG_SESSION_FOREIGN);
        char cid[64];
        snprintf(cid, sizeof cid, "mirror-%d-%d@a", i, (int)getpid());
        shmreg_id got;
        found += shmreg_dialog_find(B.h, test_ss(cid), S("lt2"), S("rt2"), &got) == 0 && test_id_eq(&got, &ids[i]);
    }
    is(exact, NSESS, "byte for byte, state, version, owner 1, FOREIGN");
    is(found, NSESS, "dialog lookup on B finds each copy");

    for (int i = 0; i < 10; i++)
        is(shmreg_session_delete(A.h, &ids[i]), 0, "delete %d on A", i);
    for (int i = 10; i < 20; i++) {
        shmreg_session_var_set(A.h, &ids[i], S("leg"), S("b"));
        shmreg_session_set_sdp(A.h, &ids[i], SHMREG_SDP_LOCAL, "v=0\r\ns=changed\r\n", 17);
        shmreg_session_transition(A.h, &ids[i], SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL);
    }
    ok(wait_for(cond_ab, NULL, 10), "after 10 deletes and 10 changes B matches A exactly");
    shmreg_id tmp[4096];
    is(owned(B.h, 1, tmp, 4096), NSESS - 10, "B holds %d copies", NSESS - 10);

    /* a copy cannot be changed */
    shmreg_id *x = &ids[30];
    uint64_t v0 = version_of(B.h, x);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_CODEC] = S("G722");
    is(shmreg_session_update(B.h, x, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)), SHMREG_EFOREIGN, "update: EFOREIGN");
    is(shmreg_session_set_sdp(B.h, x, SHMREG_SDP_LOCAL, "x", 1), SHMREG_EFOREIGN, "set_sdp: EFOREIGN");
    is(shmreg_session_transition(B.h, x, 0, SHMREG_STATE_TERMINATING, NULL), SHMREG_EFOREIGN,
       "transition: EFOREIGN");
    is(shmreg_session_delete(B.h, x), SHMREG_EFOREIGN, "delete: EFOREIGN");
    is(shmreg_dialog_bind(B.h, S("other-cid"), S("a"), S("b"), x), SHMREG_EFOREIGN, "dialog_bind: EFOREIGN");
    is(shmreg_session_var_set(B.h, x, S("k"), S("v")), SHMREG_EFOREIGN, "var_set: EFOREIGN");
    is(shmreg_profile_join(B.h, x, S("trunk"), S("t2"), 0, NULL), SHMREG_EFOREIGN, "profile_join: EFOREIGN");
    is(shmreg_session_set_timeout(B.h, x, 1000000000ull, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE, 0),
       SHMREG_EFOREIGN, "set_timeout: EFOREIGN");
    is((long long)version_of(B.h, x), (long long)v0, "the copy's version is unchanged");
    ok(same(A.h, B.h, x, 1, SHMREG_SESSION_FOREIGN), "and it still equals A's");

    /* lag: A's change to B seeing its version */
    enum { LAGN = 200 };
    static double lag[LAGN];
    int seen = 0;
    for (int i = 0; i < LAGN; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        shmreg_session_var_set(A.h, &ids[40], S("n"), test_ss(v));
        uint64_t want = version_of(A.h, &ids[40]);
        double t0 = test_mono_s();
        while (version_of(B.h, &ids[40]) < want && test_mono_s() - t0 < 5)
            test_sleep_us(200);
        lag[i] = test_mono_s() - t0;
        seen += version_of(B.h, &ids[40]) >= want;
    }
    is(seen, LAGN, "B saw each of %d single changes", LAGN);
    for (int i = 1; i < LAGN; i++) /* insertion sort */
        for (int j = i; j > 0 && lag[j] < lag[j - 1]; j--) {
            double t = lag[j];
            lag[j] = lag[j - 1];
            lag[j - 1] = t;
        }
    diag("lag A change -> B copy (--interval 20): p50 %.1f ms, p99 %.1f ms, max %.1f ms", lag[LAGN / 2] * 1e3,
         lag[LAGN * 99 / 100] * 1e3, lag[LAGN - 1] * 1e3);
}

/* ------------------------------------------------------------ outage */

static int cond_down(void *arg)
{
    shmreg_mirror_status *st = arg;
    return shmreg_mirror_get(A.h, st) == 0 && st->state == SHMREG_MIRROR_DOWN && st->last_error[0] &&
           st->backlog > 0;
}

static void test_outage(void)
{
    redis_stop(&srv);
    int fails = 0;
    shmreg_id more[20];
    for (int i = 0; i < 20; i++) {
        more[i] = make_call(A.h, 1000 + i);
        fails += shmreg_session_var_set(A.h, &ids[20 + i % 10], S("outage"), S("yes")) != 0;
    }
    is(fails, 0, "A's workers change calls while Redis is down");
    static shmreg_mirror_status st;
    ok(wait_for(cond_down, &st, 10), "A reports DOWN with an error and a backlog");
    diag("while down: state %u, backlog %llu, last_error \"%s\"", st.state, (unsigned long long)st.backlog,
         st.last_error);
    for (int i = 0; i < 5; i++) /* more while down */
        shmreg_session_var_set(A.h, &more[i], S("late"), S("1"));
    if (redis_start(&srv, srv.port, rdir, NULL) != 0)
        bail_out("restarting redis-server");
    ok(wait_for(cond_ab, NULL, 10), "within 10 s of Redis's return (its data lost) B equals A again");
    ok(shmreg_mirror_get(A.h, &st) == 0 && wait_for(cond_ab, NULL, 1), "mirror state after: %u", st.state);
    /* Redis came back empty: every lease was lost at once. Nobody may
     * take that for death: after more than a lease, A still owns its calls
     * everywhere and every daemon runs. */
    test_sleep_us(2500000);
    int a_own = owned(A.h, 1, NULL, 0);
    ok(a_own > 0 && owned(B.h, 1, NULL, 0) == a_own && owned(C.h, 1, NULL, 0) == a_own,
       "2.5 s later (lease 1.5 s) A's %d calls are still A's on A, B and C: no adoption", a_own);
    ok(kill(A.pid, 0) == 0 && kill(B.pid, 0) == 0 && kill(C.pid, 0) == 0, "and every daemon still runs");
}

/* ------------------------------------------------------------ takeover */

struct takeover {
    shmreg_id id[4096];
    int n;
};

static int cond_adopted(void *arg)
{
    struct takeover *t = arg;
    for (int i = 0; i < t->n; i++) {
        shmreg_session s, c;
        shmreg_read_begin(B.h);
        int ok1 = shmreg_session_get(B.h, &t->id[i], &s) == 0;
        shmreg_read_end(B.h);
        shmreg_read_begin(C.h);
        int ok2 = shmreg_session_get(C.h, &t->id[i], &c) == 0;
        shmreg_read_end(C.h);
        if (!ok1 || !ok2 || s.owner_node != 2 || !(s.flags & SHMREG_SESSION_ADOPTED) || c.owner_node != 2)
            return 0;
    }
    return 1;
}

static void test_takeover(void)
{
    static struct takeover t;
    t.n = owned(A.h, 1, t.id, 4096);
    ok(wait_for(cond_ab, NULL, 5), "before the kill B mirrors A (%d sessions)", t.n);
    shmreg_sub *sub;
    if (shmreg_subscribe(B.h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("subscribe");
    stop_daemon(&A, SIGKILL);
    double t0 = test_mono_s();
    ok(wait_for(cond_adopted, &t, 10), "B adopted every session of A; C's copies are owned by 2");
    diag("takeover %.2f s after the SIGKILL (lease 1500 ms)", test_mono_s() - t0);
    static shmreg_event ev[4096];
    int n = test_drain_events(sub, ev, 4096), adopted = 0;
    for (int i = 0; i < n; i++)
        adopted += ev[i].type == SHMREG_EV_SESSION_ADOPTED && test_id_in(t.id, t.n, &ev[i].session);
    is(adopted, t.n, "one SHMREG_EV_SESSION_ADOPTED per session");
    shmreg_unsubscribe(sub);
    int prof = 0, tmo = 0, own = 0;
    for (int i = 0; i < t.n; i++) {
        shmreg_session s;
        shmreg_read_begin(B.h);
        if (shmreg_session_get(B.h, &t.id[i], &s) == 0) {
            prof += s.nprofiles == 1;
            tmo += s.deadline_ns != 0;
            own += !(s.flags & SHMREG_SESSION_FOREIGN);
        }
        shmreg_read_end(B.h);
    }
    is(prof, t.n, "memberships restored");
    is(tmo, t.n, "timeouts restored");
    is(own, t.n, "no longer FOREIGN on B");
    int trans = 0;
    for (int i = 0; i < t.n; i++)
        trans += shmreg_session_transition(B.h, &t.id[i], 0, SHMREG_STATE_TERMINATING, NULL) == 0;
    is(trans, t.n, "B transitions them (no EFOREIGN)");
    uint64_t cnt = 0;
    shmreg_profile_count(B.h, S("trunk"), S("t1"), &cnt);
    is((long long)cnt, t.n, "B counts them in their profile");
}

/* ------------------------------------------------------------ operator */

static node D;

static int cond_d_on_c(void *arg)
{
    (void)arg;
    return mirrored(&D, &C);
}

static int cond_c_owns(void *arg)
{
    struct takeover *t = arg;
    int n = 0;
    for (int i = 0; i < t->n; i++) {
        shmreg_session s;
        shmreg_read_begin(C.h);
        n += shmreg_session_get(C.h, &t->id[i], &s) == 0 && s.owner_node == 3 &&
             (s.flags & SHMREG_SESSION_ADOPTED);
        shmreg_read_end(C.h);
    }
    return n == t->n;
}

static void test_operator(void)
{
    mkreg(&D, "d", 4);
    start_daemon(&D, NULL, NULL, NULL);
    static struct takeover t;
    for (int i = 0; i < 5; i++)
        t.id[t.n++] = make_call(D.h, 2000 + i);
    ok(wait_for(cond_d_on_c, NULL, 10), "C mirrors D");
    stop_daemon(&D, SIGKILL);
    /* C has --no-adopt; its lease has not run out yet: only the request */
    is(shmreg_node_adopt_request(C.h, 4), 0, "operator asks C to adopt node 4");
    double t0 = test_mono_s();
    ok(wait_for(cond_c_owns, &t, 5), "C adopted node 4's calls");
    diag("operator adoption in %.0f ms", (test_mono_s() - t0) * 1e3);
    const char *av[] = {"GET", "{shmreg.4}:adopted"};
    size_t al[] = {3, strlen(av[1])};
    redisReply *r = rds_command(rc_, av[1], al[1], 2, av, al);
    ok(r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "3") == 0, "{shmreg.4}:adopted names node 3");
    if (r)
        freeReplyObject(r);
}

/* ------------------------------------------------------------ fake nodes in Redis */

static void rcmd(const char *key, int argc, const char **argv, const size_t *len)
{
    size_t l[16];
    if (len == NULL) {
        for (int i = 0; i < argc; i++)
            l[i] = strlen(argv[i]);
        len = l;
    }
    redisReply *r = rds_command(rc_, key, strlen(key), argc, argv, len);
    if (r == NULL || r->type == REDIS_REPLY_ERROR)
        bail_out("redis %s: %s", argv[0], r ? r->str : rds_error(rc_));
    freeReplyObject(r);
}

/* Write a session record of node `nd` into its hash and id set (and, with
 * stream, a put entry), fields as given (ver as text). */
static void fake_put(uint32_t nd, const char *idt, const char *ver, const void *rec, size_t len, int stream)
{
    char key[96], ids_[48], log_[48], owner[16];
    snprintf(key, sizeof key, "{shmreg.%u}:s:%s", nd, idt);
    snprintf(ids_, sizeof ids_, "{shmreg.%u}:ids", nd);
    snprintf(log_, sizeof log_, "{shmreg.%u}:log", nd);
    snprintf(owner, sizeof owner, "%u", nd);
    if (stream) {
        const char *av[] = {"XADD", log_, "*", "op", "put", "id", idt, "ver", ver, "t", "1", "rec", rec};
        size_t al[13];
        for (int i = 0; i < 12; i++)
            al[i] = strlen(av[i]);
        al[12] = len;
        rcmd(log_, 13, av, al);
        return;
    }
    const char *hv[] = {"HSET", key, "ver", ver, "owner", owner, "t", "1", "rec", rec};
    size_t hl[10];
    for (int i = 0; i < 9; i++)
        hl[i] = strlen(hv[i]);
    hl[9] = len;
    rcmd(key, 10, hv, hl);
    const char *sv[] = {"SADD", ids_, idt};
    rcmd(ids_, 3, sv, NULL);
}

static void join_nodes(uint32_t nd)
{
    char v[16];
    snprintf(v, sizeof v, "%u", nd);
    const char *av[] = {"SADD", "shmreg:nodes", v};
    rcmd("shmreg:nodes", 3, av, NULL);
}

/* A session record made on a scratch registry (no node ID). */
static shmreg *scratch;
static size_t fake_record(int i, unsigned char *buf, size_t cap, char *idt)
{
    shmreg_id id = make_call(scratch, 5000 + i);
    size_t len;
    if (record_of(scratch, &id, buf, cap, &len, NULL) != 0)
        bail_out("encoding: %s", shmreg_errmsg());
    shmreg_id_format(&id, idt);
    shmreg_session_delete(scratch, &id);
    return len;
}

struct round {
    uint32_t node;
    shmreg_id id[3];
};

static int owner_on(shmreg *h, const shmreg_id *id)
{
    shmreg_session s;
    shmreg_read_begin(h);
    int o = shmreg_session_get(h, id, &s) == 0 ? (int)s.owner_node : -1;
    shmreg_read_end(h);
    return o;
}

static int cond_round(void *arg)
{
    struct round *r = arg;
    int ob = owner_on(B.h, &r->id[0]);
    if (ob != 2 && ob != 3)
        return 0;
    for (int k = 0; k < 3; k++)
        if (owner_on(B.h, &r->id[k]) != ob || owner_on(C.h, &r->id[k]) != ob)
            return 0;
    return 1;
}

static void test_split_brain(void)
{
    /* B and C adopt only when asked */
    stop_daemon(&B, SIGTERM);
    start_daemon(&B, "--no-adopt", NULL, NULL);
    enum { ROUNDS = 100 };
    static unsigned char rec[SHMREG_SESSION_RECORD_MAX];
    int good = 0, marker_ok = 0, wins_b = 0;
    double t0 = test_mono_s();
    for (int k = 0; k < ROUNDS; k++) {
        struct round r = {.node = 100 + (uint32_t)k};
        for (int j = 0; j < 3; j++) {
            char idt[SHMREG_ID_TEXT_LEN + 1];
            size_t len = fake_record(k * 3 + j, rec, sizeof rec, idt);
            shmreg_id_parse(idt, SHMREG_ID_TEXT_LEN, &r.id[j]);
            fake_put(r.node, idt, "5", rec, len, 0);
        }
        join_nodes(r.node);
        shmreg_node_adopt_request(B.h, r.node);
        shmreg_node_adopt_request(C.h, r.node);
        if (!wait_for(cond_round, &r, 5)) {
            diag("round %d: not settled (B owner %d, C owner %d)", k, owner_on(B.h, &r.id[0]),
                 owner_on(C.h, &r.id[0]));
            continue;
        }
        int w = owner_on(B.h, &r.id[0]);
        shmreg_session sb, sc;
        shmreg_read_begin(B.h);
        shmreg_session_get(B.h, &r.id[0], &sb);
        shmreg_read_end(B.h);
        shmreg_read_begin(C.h);
        shmreg_session_get(C.h, &r.id[0], &sc);
        shmreg_read_end(C.h);
        /* the winner owns them (ADOPTED), the other holds copies */
        shmreg_session *win = w == 2 ? &sb : &sc, *lose = w == 2 ? &sc : &sb;
        good += (win->flags & SHMREG_SESSION_ADOPTED) && !(win->flags & SHMREG_SESSION_FOREIGN) &&
                (lose->flags & SHMREG_SESSION_FOREIGN);
        wins_b += w == 2;
        char key[48], want[8];
        snprintf(key, sizeof key, "{shmreg.%u}:adopted", r.node);
        snprintf(want, sizeof want, "%d", w);
        const char *av[] = {"GET", key};
        size_t al[] = {3, strlen(key)};
        redisReply *rr = rds_command(rc_, key, al[1], 2, av, al);
        marker_ok += rr && rr->type == REDIS_REPLY_STRING && strcmp(rr->str, want) == 0;
        if (rr)
            freeReplyObject(rr);
    }
    is(good, ROUNDS, "%d rounds: exactly one of B and C owns the dead node's calls, the other copies", ROUNDS);
    is(marker_ok, ROUNDS, "{D}:adopted names the winner every time");
    diag("split brain: B won %d, C won %d, %.1f s", wins_b, ROUNDS - wins_b, test_mono_s() - t0);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_input(void)
{
    static unsigned char rec[SHMREG_SESSION_RECORD_MAX + 64];
    const uint32_t nd = 900;
    char idt[8][SHMREG_ID_TEXT_LEN + 1];
    size_t len[8];
    static unsigned char recs[8][SHMREG_SESSION_RECORD_MAX];
    for (int i = 0; i < 8; i++)
        len[i] = fake_record(900 + i, recs[i], sizeof recs[i], idt[i]);
    /* hashes (read at first contact) */
    memcpy(rec, recs[0], len[0]);
    rec[len[0] / 2] ^= 0x40; /* corrupt */
    fake_put(nd, idt[0], "1", rec, len[0], 0);
    fake_put(nd, idt[1], "1", recs[1], len[1] / 2, 0); /* truncated */
    fake_put(nd, idt[2], "12x", recs[2], len[2], 0);   /* non-numeric ver */
    memset(rec, 'z', SHMREG_SESSION_RECORD_MAX + 10);  /* oversized */
    fake_put(nd, idt[3], "1", rec, SHMREG_SESSION_RECORD_MAX + 10, 0);
    memcpy(rec, recs[4], len[4]);
    rec[3] = '9'; /* "SRS9": a format this library does not know */
    fake_put(nd, idt[4], "1", rec, len[4], 0);
    fake_put(nd, idt[5], "1", recs[5], len[5], 0); /* a good one after them */
    join_nodes(nd);
    shmreg_id good5, good7;
    shmreg_id_parse(idt[5], SHMREG_ID_TEXT_LEN, &good5);
    shmreg_id_parse(idt[7], SHMREG_ID_TEXT_LEN, &good7);
    double end = test_mono_s() + 10;
    while (owner_on(B.h, &good5) != (int)nd && test_mono_s() < end)
        test_sleep_us(10000);
    is(owner_on(B.h, &good5), (int)nd, "B imported the good record after the bad ones");
    /* the stream: bad entries, then a good one */
    memcpy(rec, recs[6], len[6]);
    rec[len[6] - 1] ^= 1;
    fake_put(nd, idt[6], "2", rec, len[6], 1);
    fake_put(nd, idt[6], "99999999999999999999999", recs[6], len[6], 1); /* over range */
    fake_put(nd, idt[7], "1", recs[7], len[7], 1);
    end = test_mono_s() + 10;
    while (owner_on(B.h, &good7) != (int)nd && test_mono_s() < end)
        test_sleep_us(10000);
    is(owner_on(B.h, &good7), (int)nd, "and the good stream entry after the bad ones");
    for (int i = 0; i < 7; i++) {
        if (i == 5)
            continue;
        shmreg_id x;
        shmreg_id_parse(idt[i], SHMREG_ID_TEXT_LEN, &x);
        is(owner_on(B.h, &x), -1, "bad record %d: not in B's registry", i);
        ok(log_has(&B, idt[i]), "bad record %d: the log names %s", i, idt[i]);
    }
    ok(kill(B.pid, 0) == 0, "B's daemon is alive");
    static shmreg_mirror_status st;
    test_sleep_us(300000); /* a report or two */
    int grc = shmreg_mirror_get(B.h, &st);
    ok(grc == 0 && st.errors >= 7, "B counts them as errors (rc %d, %llu)", grc, (unsigned long long)st.errors);
}

static void test_refusals(void)
{
    node E;
    mkreg(&E, "e", 2); /* B's node ID */
    unlink(E.log);
    pid_t p = start_daemon(&E, NULL, NULL, NULL);
    is(test_wait(p), 3, "a second daemon for node 2: exit status 3");
    ok(log_has(&E, "node ID 2 is in use"), "its message names the node");
    node F;
    snprintf(F.path, sizeof F.path, "%s", test_dir("nonode"));
    snprintf(F.log, sizeof F.log, "%s.log", F.path);
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 64};
    if (shmreg_open(F.path, &o, &F.h) != 0)
        bail_out("creating");
    p = start_daemon(&F, NULL, NULL, NULL);
    is(test_wait(p), 2, "--redis for a registry without a node ID: exit status 2");
    ok(log_has(&F, "node ID"), "saying why");
    shmreg_close(F.h);
    shmreg_close(E.h);
}

/* ------------------------------------------------------------ fencing */

static node G;

static int cond_gb(void *arg)
{
    (void)arg;
    return mirrored(&G, &B);
}

static int cond_b_owns_g(void *arg)
{
    int *n = arg;
    return owned(B.h, 2, NULL, 0) >= *n && owned(G.h, G.id, NULL, 0) == 0;
}

/* A node adopted while it lives (a pause or partition longer than its
 * lease; here an operator's request on B, which needs no lapse): its
 * daemon finds the marker at its next renewal, hands every session it
 * owns to the adopter as a copy, so its workers can no longer change
 * them, and exits 3 rather than fight. */
static void test_fencing(void)
{
    mkreg(&G, "g", 6);
    start_daemon(&G, "--no-adopt", NULL, NULL);
    shmreg_id mine[5];
    for (int i = 0; i < 5; i++)
        mine[i] = make_call(G.h, 950 + i);
    ok(wait_for(cond_gb, NULL, 15), "G's 5 calls are on B");
    int before = owned(B.h, 2, NULL, 0), want = before + 5;
    is(shmreg_node_adopt_request(B.h, 6), 0, "an operator on B adopts node 6, whose daemon is alive");
    ok(wait_for(cond_b_owns_g, &want, 15), "B owns G's 5 calls, and G owns none of them any more");
    int st = test_wait(G.pid);
    G.pid = 0;
    is(st, 3, "G's daemon exits 3");
    ok(log_has(&G, "5 sessions handed to node 2 as foreign copies"), "saying it handed 5 sessions to node 2");
    unsigned fenced = 0;
    for (int i = 0; i < 5; i++)
        fenced += shmreg_session_transition(G.h, &mine[i], SHMREG_STATE_ANY, SHMREG_STATE_TERMINATING, NULL) ==
                  SHMREG_EFOREIGN;
    is(fenced, 5, "G's workers get SHMREG_EFOREIGN on each");
    unsigned copies = 0;
    for (int i = 0; i < 5; i++) {
        shmreg_session v;
        shmreg_read_begin(G.h);
        copies += shmreg_session_get(G.h, &mine[i], &v) == 0 && v.owner_node == 2 &&
                  (v.flags & SHMREG_SESSION_FOREIGN);
        shmreg_read_end(G.h);
    }
    is(copies, 5, "G holds them as copies owned by node 2");
}

/* ------------------------------------------------------------ LMDB beside Redis */

static node L;

static int cond_l_mirrored(void *arg)
{
    (void)arg;
    return mirrored(&L, &B) && mirrored(&B, &L);
}

/* One daemon writing both sinks: Redis mirrors, and the sync directory
 * keeps this node's own sessions only, never the copies it holds, so a
 * restore after a reboot cannot make other hosts' calls its own. */
static void test_lmdb_beside(void)
{
    char sdir[512];
    snprintf(sdir, sizeof sdir, "%s", test_dir("l-sync"));
    mkreg(&L, "l", 5);
    start_daemon(&L, "--lmdb", sdir, "--no-adopt"); /* others adopt; it only keeps */
    shmreg_id mine[4];
    for (int i = 0; i < 4; i++)
        mine[i] = make_call(L.h, 900 + i);
    ok(wait_for(cond_l_mirrored, NULL, 15), "L's 4 calls are on B, and L holds a copy of each of B's");
    shmreg_stats st;
    shmreg_stat(L.h, &st);
    uint64_t upto = st.events_published;
    double end = test_mono_s() + 15;
    while (test_mono_s() < end && (shmreg_stat(L.h, &st) != 0 || st.sync_durable_seq < upto))
        test_sleep_us(10000);
    ok(st.sync_durable_seq >= upto, "L's sync directory covers every event so far");
    stop_daemon(&L, SIGTERM);
    shmreg_sync_info info;
    is(shmreg_sync_dir_info(sdir, &info), 0, "the sync directory reads");
    is(info.sessions, 4, "it holds L's 4 own sessions, none of the %u copies", st.foreign_sessions);
    node R;
    mkreg(&R, "l-restored", 5);
    shmreg_restore_report rep;
    is(shmreg_restore(R.h, sdir, SHMREG_RESTORE_ALL, &rep), 0, "restore it into a new registry of node 5");
    is(rep.sessions, 4, "4 sessions restored");
    is(owned(R.h, 5, NULL, 0), 4, "all 4 owned by node 5");
    int same_ids = 1;
    for (int i = 0; i < 4; i++)
        same_ids &= version_of(R.h, &mine[i]) != 0;
    ok(same_ids, "with their IDs");
    shmreg_close(R.h);
}

int main(void)
{
    test_watchdog_install();
    for (size_t i = 0; i < sizeof big_sdp; i++)
        big_sdp[i] = (char)('a' + i % 26);
    snprintf(rdir, sizeof rdir, "%s", test_dir("redis"));
    int port = redis_free_port(0);
    if (port < 0 || redis_start(&srv, port, rdir, NULL) != 0)
        bail_out("cannot start redis-server");
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    char err[256];
    const char *u[] = {url};
    rc_ = rds_open(u, 1, 1000, err, sizeof err);
    if (!rc_)
        bail_out("rds_open: %s", err);
    shmreg_options so = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
    if (shmreg_open(test_dir("scratch"), &so, &scratch) != 0)
        bail_out("scratch registry");

    mkreg(&A, "a", 1);
    mkreg(&B, "b", 2);
    mkreg(&C, "c", 3);
    start_daemon(&A, NULL, NULL, NULL);
    start_daemon(&B, NULL, NULL, NULL);
    start_daemon(&C, "--no-adopt", NULL, NULL);
    double t0 = test_mono_s();
    test_mirroring();
    diag("mirroring: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_outage();
    diag("outage: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_takeover();
    diag("takeover: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_operator();
    diag("operator: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_split_brain();
    diag("split brain: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_bad_input();
    test_refusals();
    diag("bad input, refusals: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_fencing();
    diag("fencing: %.1f s", test_mono_s() - t0);
    t0 = test_mono_s();
    test_lmdb_beside();
    diag("LMDB beside Redis: %.1f s", test_mono_s() - t0);

    stop_daemon(&B, SIGTERM);
    stop_daemon(&C, SIGTERM);
    rds_close(rc_);
    redis_stop(&srv);
    shmreg_close(A.h);
    shmreg_close(B.h);
    shmreg_close(C.h);
    shmreg_close(D.h);
    shmreg_close(L.h);
    shmreg_close(G.h);
    shmreg_close(scratch);
    return done_testing();
}
