/*
 * mirror_cluster.c — shmreg-sync --redis against a real Redis Cluster of
 * 3 masters and 3 replicas (cluster-node-timeout 3000 ms): two registries,
 * A (node 1) and B (node 2), each with its own daemon given several of the
 * cluster's nodes as seeds. A writer process changes A's calls without a
 * pause (300 calls: SDPs, variables, codec updates, hold/unhold, dialogs
 * unbound and bound again, calls deleted and new ones made) while the
 * master serving node 1's hash tag ({shmreg.1}: its records, id set,
 * change stream and lease) is SIGKILLed and its replica takes over.
 *
 * What must hold: every call of the writer succeeds (workers never wait
 * for Redis); after the writer stops, B holds exactly A's live calls, each
 * at A's version and byte for byte A's record (less the memberships and
 * timeout a copy never holds), and Redis's id set and hashes for node 1 say the same;
 * nobody adopted anybody (the lease outlasts the failover, even when the
 * kill comes just before a renewal), and both daemons are still running
 * and stop cleanly.
 * Whatever an asynchronous failover lost (writes the old master had
 * acknowledged but not yet passed to its replica) the owner pushes again.
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
#define NCALLS 300
/* The lease must outlast a failover. It is renewed every second (a
 * quarter of it at most), so as little as LEASE_MS - 1000 may be left at
 * the kill; the test kills at that worst moment. With cluster-node-timeout
 * 3000 (t/redisutil.c) the replica takes over some 4 to 8 s later. (With
 * a 3000 ms lease renewed every third of it, and a 1000 ms node timeout,
 * B adopted node 1's live calls in 2 of 3 runs: the reason the daemon's
 * default lease is 10 s and its renewals at most 1 s apart.) */
#define LEASE_MS 15000

static redis_cluster cl;
static char urls[6][64];
static rds *rc_;
static node A, B;

/* ------------------------------------------------------------ daemons */

/* n's daemon with the cluster nodes seeds[0..nseeds-1] as --redis seeds;
 * stdout and stderr to n->log; dies with the test. */
static void start_daemon(node *n, const int *seeds, int nseeds)
{
    const char *argv[32];
    int k = 0;
    argv[k++] = "shmreg-sync";
    argv[k++] = "-r";
    argv[k++] = n->path;
    for (int i = 0; i < nseeds; i++) {
        argv[k++] = "--redis";
        argv[k++] = urls[seeds[i]];
    }
    argv[k++] = "--interval";
    argv[k++] = "20";
    char lease[16];
    snprintf(lease, sizeof lease, "%d", LEASE_MS);
    argv[k++] = "--lease-ms";
    argv[k++] = lease;
    argv[k] = NULL;
    spawn_daemon(n, argv);
}

/* 1 while n's daemon has not exited. */
static int daemon_alive(node *n)
{
    int st;
    return n->pid > 0 && waitpid(n->pid, &st, WNOHANG) == 0;
}

/* The lines of n's log that have `only` in them (NULL: every line) as
 * diag lines, at most `max`. */
static void diag_log(const node *n, const char *only, int max)
{
    FILE *f = fopen(n->log, "r");
    if (!f) {
        diag("%s: no log", n->log);
        return;
    }
    char line[1400];
    int k = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (only && !strstr(line, only))
            continue;
        if (k++ < max)
            diag("node %u log: %s", n->id, line);
    }
    if (k > max)
        diag("node %u log: ... %d more lines in %s", n->id, k - max, n->log);
    fclose(f);
}

/* ------------------------------------------------------------ comparing */
static unsigned char bufa[SHMREG_SESSION_RECORD_MAX], bufb[SHMREG_SESSION_RECORD_MAX];

/* Why the records in bufa (A) and bufb (B) differ, for a diag line. */
static void explain(size_t la, size_t lb, char *why, size_t cap)
{
    static shmreg_session x, y;
    static shmreg_session_control cx, cy;
    static shmreg_dialog dx[SHMREG_MAX_DIALOGS_PER_SESSION], dy[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nx = 0, ny = 0;
    size_t off = 0;
    while (off < la && off < lb && bufa[off] == bufb[off])
        off++;
    int ra = shmreg_session_decode_control(bufa, la, &x, &cx, dx, &nx);
    int rb = shmreg_session_decode_control(bufb, lb, &y, &cy, dy, &ny);
    snprintf(why, cap,
             "records differ at the same version: %zu / %zu bytes, first at byte %zu (decode %d/%d; state %d/%d, "
             "dialogs %u/%u, variables %u/%u, local SDP %zu/%zu, remote SDP %zu/%zu bytes)",
             la, lb, off, ra, rb, x.state, y.state, nx, ny, cx.nvars, cy.nvars, x.sdp[0].len, y.sdp[0].len,
             x.sdp[1].len, y.sdp[1].len);
}

/* How b's copy of id differs from a's session: 0 the same (record, state,
 * version, owner 1, FOREIGN, not ADOPTED); else a reason in why. */
static int differs(shmreg *a, shmreg *b, const shmreg_id *id, char *why, size_t cap)
{
    size_t la, lb;
    shmreg_session sa, sb;
    if (record_of(a, id, bufa, sizeof bufa, &la, &sa) != 0)
        return snprintf(why, cap, "not live on A"), 1;
    if (record_of(b, id, bufb, sizeof bufb, &lb, &sb) != 0)
        return snprintf(why, cap, "missing on B (A's version %llu)", (unsigned long long)sa.version), 1;
    if (sa.version != sb.version)
        return snprintf(why, cap, "version A %llu, B %llu", (unsigned long long)sa.version,
                        (unsigned long long)sb.version), 1;
    if (la != lb || memcmp(bufa, bufb, la) != 0) {
        explain(la, lb, why, cap);
        return 1;
    }
    if (sa.state != sb.state)
        return snprintf(why, cap, "state A %d, B %d", sa.state, sb.state), 1;
    if (sb.owner_node != 1 || !(sb.flags & SHMREG_SESSION_FOREIGN) || (sb.flags & SHMREG_SESSION_ADOPTED))
        return snprintf(why, cap, "B's copy: owner %u, flags 0x%llx", (unsigned)sb.owner_node,
                        (unsigned long long)sb.flags), 1;
    return 0;
}
static shmreg_id ia[4096], ib[4096];

/* How many of A's sessions B lacks or holds differently, plus the copies
 * B holds that A no longer has; up to `show` of them as diag lines. */
static int mismatches(int show)
{
    int na = owned(A.h, 1, ia, 4096), nb = owned(B.h, 1, ib, 4096), bad = 0;
    char why[400], t[SHMREG_ID_TEXT_LEN + 1];
    for (int i = 0; i < na && i < 4096; i++)
        if (differs(A.h, B.h, &ia[i], why, sizeof why)) {
            if (bad++ < show) {
                shmreg_id_format(&ia[i], t);
                diag("session %s: %s", t, why);
            }
        }
    for (int i = 0; i < nb && i < 4096; i++)
        if (!test_id_in(ia, na, &ib[i])) {
            if (bad++ < show) {
                shmreg_id_format(&ib[i], t);
                diag("session %s: a copy on B, deleted on A", t);
            }
        }
    return bad;
}

/* A's sessions whose copy on B carries another updated_ns. */
static int updated_differs(void)
{
    int na = owned(A.h, 1, ia, 4096), n = 0;
    for (int i = 0; i < na && i < 4096; i++) {
        shmreg_session sa, sb;
        shmreg_read_begin(A.h);
        int r1 = shmreg_session_get(A.h, &ia[i], &sa);
        shmreg_read_end(A.h);
        shmreg_read_begin(B.h);
        int r2 = shmreg_session_get(B.h, &ia[i], &sb);
        shmreg_read_end(B.h);
        n += r1 == 0 && r2 == 0 && sa.updated_ns != sb.updated_ns;
    }
    return n;
}

static int cond_mirrored(void *arg)
{
    (void)arg;
    return mismatches(0) == 0;
}

/* ------------------------------------------------------------ Redis's view of node 1 */

static redisReply *rcmd(const char *key, int argc, const char **argv)
{
    size_t l[8];
    for (int i = 0; i < argc; i++)
        l[i] = strlen(argv[i]);
    return rds_command(rc_, key, strlen(key), argc, argv, l);
}

/* Redis's id set for node 1 is exactly A's live sessions and each hash
 * holds A's version. 0 yes; else how many differ (-1: Redis failed). */
static int redis_differs(int show)
{
    int na = owned(A.h, 1, ia, 4096), bad = 0;
    const char *sm[] = {"SMEMBERS", "{shmreg.1}:ids"};
    redisReply *r = rcmd(sm[1], 2, sm);
    if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
        if (show)
            diag("SMEMBERS {shmreg.1}:ids: %s", r ? r->str : rds_error(rc_));
        if (r)
            freeReplyObject(r);
        return -1;
    }
    if ((int)r->elements != na) {
        bad++;
        if (show)
            diag("Redis's id set holds %zu, A %d live", (size_t)r->elements, na);
    }
    for (size_t i = 0; i < r->elements; i++) {
        shmreg_id id;
        if (shmreg_id_parse(r->element[i]->str, r->element[i]->len, &id) != 0 || !test_id_in(ia, na, &id)) {
            if (bad++ < show)
                diag("Redis's id set holds %.*s, not live on A", (int)r->element[i]->len, r->element[i]->str);
        }
    }
    freeReplyObject(r);
    for (int i = 0; i < na; i++) {
        char t[SHMREG_ID_TEXT_LEN + 1], key[80];
        shmreg_id_format(&ia[i], t);
        snprintf(key, sizeof key, "{shmreg.1}:s:%s", t);
        const char *hg[] = {"HGET", key, "ver"};
        r = rcmd(key, 3, hg);
        shmreg_session s;
        shmreg_read_begin(A.h);
        uint64_t v = shmreg_session_get(A.h, &ia[i], &s) == 0 ? s.version : 0;
        shmreg_read_end(A.h);
        if (r == NULL || r->type != REDIS_REPLY_STRING || strtoull(r->str, NULL, 10) != v) {
            if (bad++ < show)
                diag("Redis's hash of %s: ver %s, A's version %llu", t,
                     r && r->type == REDIS_REPLY_STRING ? r->str : "(none)", (unsigned long long)v);
        }
        if (r)
            freeReplyObject(r);
    }
    return bad;
}

static int cond_redis(void *arg)
{
    (void)arg;
    return redis_differs(0) == 0;
}

/* ------------------------------------------------------------ the cluster */

/* Parse CLUSTER NODES as node `port` sees it: the master serving `slot`
 * (its port, its node ID, 1 if flagged fail or pfail) and its replica's
 * port. 0 found, -1 not (or redis-cli failed). */
typedef struct slot_owner {
    int port, failed, replica_port;
    char id[48];
} slot_owner;

static int owner_of_slot(int port, int slot, slot_owner *o)
{
    static char out[16384];
    memset(o, 0, sizeof *o);
    if (redis_cli(port, out, sizeof out, "CLUSTER NODES") != 0)
        return -1;
    int found = 0;
    for (int pass = 0; pass < 2; pass++) {
        char *save = NULL, copy[16384];
        snprintf(copy, sizeof copy, "%s", out);
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char *tok[64], *s2 = NULL;
            int nt = 0;
            for (char *w = strtok_r(line, " ", &s2); w && nt < 64; w = strtok_r(NULL, " ", &s2))
                tok[nt++] = w;
            if (nt < 8)
                continue;
            const char *colon = strrchr(tok[1], ':');
            int p = colon ? atoi(colon + 1) : 0; /* "127.0.0.1:PORT@BUS" */
            if (pass == 0) {
                if (!strstr(tok[2], "master"))
                    continue;
                for (int i = 8; i < nt; i++) {
                    if (tok[i][0] == '[')
                        continue; /* migrating / importing */
                    int lo = atoi(tok[i]), hi = lo;
                    const char *dash = strchr(tok[i], '-');
                    if (dash)
                        hi = atoi(dash + 1);
                    if (slot >= lo && slot <= hi) {
                        o->port = p;
                        o->failed = strstr(tok[2], "fail") != NULL;
                        snprintf(o->id, sizeof o->id, "%s", tok[0]);
                        found = 1;
                    }
                }
            } else if (found && strcmp(tok[3], o->id) == 0 && !strstr(tok[2], "fail")) {
                o->replica_port = p;
            }
        }
    }
    return found ? 0 : -1;
}

static int node_index(int port)
{
    for (int i = 0; i < cl.n; i++)
        if (cl.node[i].port == port)
            return i;
    return -1;
}

struct promo {
    int slot, killed, replica;
};

/* Every surviving node says cluster_state:ok and that the slot is served
 * by the replica, now a master not flagged failing. */
static int cond_promoted(void *arg)
{
    struct promo *pr = arg;
    char out[4096];
    for (int i = 0; i < cl.n; i++) {
        if (cl.node[i].pid <= 0)
            continue;
        if (redis_cli(cl.node[i].port, out, sizeof out, "CLUSTER INFO") != 0 || !strstr(out, "cluster_state:ok"))
            return 0;
        slot_owner o;
        if (owner_of_slot(cl.node[i].port, pr->slot, &o) != 0 || o.port != pr->replica || o.failed)
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ the writer */

typedef struct shared {
    int phase;              /* 0 making calls, 1 made (waits), 2 changing them, 3 stop */
    uint64_t calls, fails;  /* library calls made and failed */
    int first_rc;
    char first_what[64], first_err[256];
    uint64_t made, deleted;
} shared;

static shared *sh;
static char big_sdp[3000];

/* A call's result, counted; the first failure remembered. */
static int count(int rc, const char *what, shmreg *h)
{
    (void)h;
    __atomic_add_fetch(&sh->calls, 1, __ATOMIC_RELAXED);
    if (rc != 0 && __atomic_add_fetch(&sh->fails, 1, __ATOMIC_RELAXED) == 1) {
        sh->first_rc = rc;
        snprintf(sh->first_what, sizeof sh->first_what, "%s", what);
        snprintf(sh->first_err, sizeof sh->first_err, "%s", shmreg_errmsg());
    }
    return rc;
}

#define C(call, what) count((call), (what), h)

typedef struct wcall {
    shmreg_id id;
    int live, state, n, dlg2;
    char cid[64];
} wcall;

static void make_call(shmreg *h, wcall *w, int i)
{
    char from[64], to[64], app[32];
    snprintf(from, sizeof from, "sip:alice%d@a.example", i);
    snprintf(to, sizeof to, "sip:bob%d@b.example", i);
    snprintf(w->cid, sizeof w->cid, "cluster-%d-%d@a", i, (int)getpid());
    snprintf(app, sizeof app, "app\x01%d", i);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = test_ss(from);
    f.str[SHMREG_FIELD_TO_URI] = test_ss(to);
    f.str[SHMREG_FIELD_CALL_ID] = test_ss(w->cid);
    f.str[SHMREG_FIELD_CODEC] = S("PCMU");
    f.str[SHMREG_FIELD_APP_DATA] = test_ss(app);
    f.local_rtp_port = (uint16_t)(10000 + i % 50000);
    w->live = 0;
    if (C(shmreg_session_create(h, &f, &w->id), "create") != 0)
        return;
    w->live = 1;
    w->state = SHMREG_STATE_INITIATING;
    w->n = 0;
    w->dlg2 = 1;
    sh->made++;
    C(shmreg_session_set_sdp(h, &w->id, SHMREG_SDP_LOCAL, "v=0\r\ns=local\r\n", 15), "set_sdp");
    C(shmreg_session_set_sdp(h, &w->id, SHMREG_SDP_REMOTE, big_sdp, 500 + (size_t)(i * 7) % 2500), "set_sdp");
    C(shmreg_dialog_bind(h, test_ss(w->cid), S("lt1"), S("rt1"), &w->id), "dialog_bind");
    C(shmreg_dialog_bind(h, test_ss(w->cid), S("lt2"), S("rt2"), &w->id), "dialog_bind");
    C(shmreg_session_var_set(h, &w->id, S("account"), S("acme")), "var_set");
    C(shmreg_session_var_set(h, &w->id, S("leg"), S("a")), "var_set");
    C(shmreg_profile_join(h, &w->id, S("trunk"), S("t1"), 0, NULL), "profile_join");
    C(shmreg_session_set_timeout(h, &w->id, 600000000000ull, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE, 0),
      "set_timeout");
    if (C(shmreg_session_transition(h, &w->id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL),
          "transition") == 0)
        w->state = SHMREG_STATE_RINGING;
    if (C(shmreg_session_transition(h, &w->id, SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE, NULL), "transition") == 0)
        w->state = SHMREG_STATE_ACTIVE;
}

/* One change to call w (op chosen by r). */
static void change(shmreg *h, wcall *w, unsigned r, int *next_i)
{
    char v[64];
    w->n++;
    switch (r % 8) {
    case 0: {
        snprintf(v, sizeof v, "v=0\r\ns=change %d\r\n", w->n);
        C(shmreg_session_set_sdp(h, &w->id, SHMREG_SDP_LOCAL, v, strlen(v)), "set_sdp");
        break;
    }
    case 1:
        C(shmreg_session_set_sdp(h, &w->id, SHMREG_SDP_REMOTE, big_sdp, 100 + (size_t)(r >> 3) % 2900), "set_sdp");
        break;
    case 2:
        snprintf(v, sizeof v, "%d", w->n);
        C(shmreg_session_var_set(h, &w->id, S("n"), test_ss(v)), "var_set");
        break;
    case 3: {
        shmreg_fields f = {0};
        f.str[SHMREG_FIELD_CODEC] = (w->n & 1) ? S("opus") : S("G722");
        C(shmreg_session_update(h, &w->id, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)), "update");
        break;
    }
    case 4:
    case 5: {
        int to = w->state == SHMREG_STATE_ACTIVE ? SHMREG_STATE_ONHOLD : SHMREG_STATE_ACTIVE;
        if (C(shmreg_session_transition(h, &w->id, w->state, to, NULL), "transition") == 0)
            w->state = to;
        break;
    }
    case 6:
        if (w->dlg2)
            C(shmreg_dialog_unbind(h, test_ss(w->cid), S("lt2"), S("rt2")), "dialog_unbind");
        else
            C(shmreg_dialog_bind(h, test_ss(w->cid), S("lt2"), S("rt2"), &w->id), "dialog_bind");
        w->dlg2 = !w->dlg2;
        break;
    default:
        if ((r >> 3) % 4 == 0) { /* one change in 32: the call ends, a new one starts */
            if (C(shmreg_session_delete(h, &w->id), "delete") == 0)
                sh->deleted++;
            make_call(h, w, (*next_i)++);
        } else {
            snprintf(v, sizeof v, "x%u", r);
            C(shmreg_session_var_set(h, &w->id, S("leg"), test_ss(v)), "var_set");
        }
    }
}

static void writer(void *arg)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    shmreg *h;
    if (shmreg_open((const char *)arg, NULL, &h) != 0)
        _exit(2);
    static wcall w[NCALLS];
    int next_i = 0;
    for (int i = 0; i < NCALLS; i++)
        make_call(h, &w[i], next_i++);
    __atomic_store_n(&sh->phase, 1, __ATOMIC_RELEASE);
    while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) == 1)
        test_sleep_us(1000);
    uint32_t x = 2463534242u;
    while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) == 2) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        wcall *c = &w[x % NCALLS];
        if (c->live)
            change(h, c, x / NCALLS, &next_i);
        else
            make_call(h, c, next_i++);
        test_sleep_us(200);
    }
    shmreg_close(h);
}

/* ------------------------------------------------------------ the test */

static void diag_status(const char *who, shmreg *h)
{
    shmreg_mirror_status st;
    if (shmreg_mirror_get(h, &st) != 0) {
        diag("%s: shmreg_mirror_get: %s", who, shmreg_errmsg());
        return;
    }
    diag("%s: state %u, pushed %llu, imported %llu, deleted %llu, adopted %llu, stale %llu, errors %llu, "
         "backlog %llu, last_error \"%s\"",
         who, st.state, (unsigned long long)st.pushed, (unsigned long long)st.imported,
         (unsigned long long)st.deleted, (unsigned long long)st.adopted, (unsigned long long)st.stale,
         (unsigned long long)st.errors, (unsigned long long)st.backlog, st.last_error);
    for (unsigned i = 0; i < st.npeers && i < SHMREG_MIRROR_PEERS_MAX; i++)
        diag("%s:   peer %u: state %u, adopted_by %u, copies %llu", who, st.peer[i].node, st.peer[i].state,
             st.peer[i].adopted_by, (unsigned long long)st.peer[i].copies);
}

/* Sessions of h marked ADOPTED, and those owned by anyone but node 1. */
static void census(shmreg *h, int *adopted, int *other)
{
    uint64_t cur = 0;
    shmreg_session s;
    *adopted = *other = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s) == 0) {
        *adopted += (s.flags & SHMREG_SESSION_ADOPTED) != 0;
        *other += s.owner_node != 1;
    }
    shmreg_read_end(h);
}

static int cond_up(void *arg)
{
    (void)arg;
    shmreg_mirror_status a, b;
    return shmreg_mirror_get(A.h, &a) == 0 && shmreg_mirror_get(B.h, &b) == 0 && a.state == SHMREG_MIRROR_UP &&
           b.state == SHMREG_MIRROR_UP;
}

int main(void)
{
    double t_start = test_mono_s();
    test_bail_on_alarm(120);
    for (size_t i = 0; i < sizeof big_sdp; i++)
        big_sdp[i] = (char)('a' + i % 26);
    sh = test_shared(sizeof *sh);

    /* 1. the cluster */
    int base = redis_free_ports(0, 6);
    if (base < 0 || redis_cluster_start(&cl, base, 3, 1, test_dir("redis")) != 0)
        bail_out("cannot start a Redis Cluster of 3 masters and 3 replicas");
    ok(1, "a Redis Cluster of 3 masters + 3 replicas on ports %d..%d", base, base + 5);
    diag("cluster up in %.1f s", test_mono_s() - t_start);
    for (int i = 0; i < cl.n; i++)
        snprintf(urls[i], sizeof urls[i], "redis://127.0.0.1:%d", cl.node[i].port);
    char err[256];
    const char *seeds_all[] = {urls[0], urls[1], urls[2], urls[3], urls[4], urls[5]};
    rc_ = rds_open(seeds_all, 6, 1000, err, sizeof err);
    if (!rc_)
        bail_out("rds_open: %s", err);

    /* node 1's slot and the master that serves it */
    redisReply *r;
    char out[256];
    int slot = -1;
    if (redis_cli(cl.node[0].port, out, sizeof out, "CLUSTER KEYSLOT {shmreg.1}:log") == 0)
        slot = atoi(out);
    slot_owner o;
    int found = slot >= 0 && owner_of_slot(cl.node[0].port, slot, &o) == 0 && !o.failed && o.replica_port > 0;
    int victim = found ? node_index(o.port) : -1, heir = found ? node_index(o.replica_port) : -1;
    ok(found && victim >= 0 && heir >= 0, "{shmreg.1} is slot %d, served by the master on %d, replica on %d", slot,
       found ? o.port : -1, found ? o.replica_port : -1);
    if (victim < 0 || heir < 0)
        bail_out("cannot tell which master serves {shmreg.1}");

    /* 2. two registries, a daemon each, seeds: three nodes for A, two for B */
    mkreg(&A, "a", 1);
    mkreg(&B, "b", 2);
    start_daemon(&A, (const int[]){0, 1, 2}, 3);
    start_daemon(&B, (const int[]){3, 4}, 2);
    ok(wait_for(cond_up, NULL, 15), "both daemons report UP");

    /* 3. the writer: 300 calls first, mirrored, then changes without a pause */
    pid_t wpid = test_fork(writer, A.path);
    double end = test_mono_s() + 30;
    while (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) != 1 && test_mono_s() < end)
        test_sleep_us(10000);
    is(__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE), 1, "the writer made %d calls", NCALLS);
    ok(wait_for(cond_mirrored, NULL, 15), "before the failover B holds all %d of A's calls exactly", NCALLS);
    uint64_t calls0 = __atomic_load_n(&sh->calls, __ATOMIC_RELAXED);
    __atomic_store_n(&sh->phase, 2, __ATOMIC_RELEASE);
    test_sleep_us(1000000);

    /* the master of {shmreg.1} dies, at the worst moment for A's lease
     * (just before its renewal); its replica takes over */
    long long pttl = -1;
    double until = test_mono_s() + LEASE_MS / 1000.0 + 2;
    while (test_mono_s() < until) {
        const char *pa[] = {"PTTL", "{shmreg.1}:lease"};
        r = rcmd(pa[1], 2, pa);
        pttl = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        if (r)
            freeReplyObject(r);
        if (pttl > 0 && pttl <= LEASE_MS - 1000 + 50)
            break;
        test_sleep_us(1000);
    }
    diag("killing the master of {shmreg.1} with %lld ms left of A's lease of %d ms", pttl, LEASE_MS);
    uint64_t calls_kill = __atomic_load_n(&sh->calls, __ATOMIC_RELAXED);
    redis_kill(&cl.node[victim]);
    double t_kill = test_mono_s();
    struct promo pr = {slot, o.port, o.replica_port};
    int promoted = wait_for(cond_promoted, &pr, 30);
    double t_promoted = test_mono_s();
    uint64_t calls_promoted = __atomic_load_n(&sh->calls, __ATOMIC_RELAXED);
    ok(promoted, "after the SIGKILL of %d its replica %d serves slot %d, every survivor says cluster_state:ok",
       o.port, o.replica_port, slot);
    diag("failover: the replica took over %.2f s after the kill", t_promoted - t_kill);
    ok(calls_promoted > calls_kill, "the writer went on while the slot had no master (%llu calls)",
       (unsigned long long)(calls_promoted - calls_kill));
    test_sleep_us(1000000); /* changes after the failover too */
    __atomic_store_n(&sh->phase, 3, __ATOMIC_RELEASE);
    is(test_wait(wpid), 0, "the writer exits 0");

    /* 4. every write on A succeeded */
    diag("writer: %llu calls (%llu while changing), %llu calls made, %llu deleted",
         (unsigned long long)sh->calls, (unsigned long long)(sh->calls - calls0), (unsigned long long)sh->made,
         (unsigned long long)sh->deleted);
    is((long long)sh->fails, 0, "every one of the writer's %llu calls on A returned 0",
       (unsigned long long)sh->calls);
    if (sh->fails)
        diag("first failure: %s: %d (%s)", sh->first_what, sh->first_rc, sh->first_err);

    /* 5. B converges on A's truth */
    double t_stop = test_mono_s();
    int conv = wait_for(cond_mirrored, NULL, 20);
    double t_conv = test_mono_s();
    ok(conv, "B holds exactly A's live calls: same IDs, versions, records byte for byte");
    int na = owned(A.h, 1, ia, 4096), nb = owned(B.h, 1, ib, 4096);
    is(nb, na, "B holds %d copies of node 1's calls, A %d", nb, na);
    is(mismatches(10), 0, "no call differs");
    if (conv)
        diag("converged %.2f s after the kill, %.2f s after the writer stopped", t_conv - t_kill, t_conv - t_stop);
    is(updated_differs(), 0, "every copy carries its owner's updated_ns");
    ok(wait_for(cond_redis, NULL, 5), "Redis's id set for node 1 is A's live calls, each hash at A's version");
    if (redis_differs(0) != 0)
        redis_differs(10);

    /* nobody adopted anybody */
    int adA, adB, otA, otB;
    census(A.h, &adA, &otA);
    census(B.h, &adB, &otB);
    is(adA + adB, 0, "no session is ADOPTED on A or B");
    is(otA + otB, 0, "every session on A and B is owned by node 1");
    shmreg_mirror_status sa, sb;
    ok(shmreg_mirror_get(A.h, &sa) == 0 && shmreg_mirror_get(B.h, &sb) == 0 && sa.adopted == 0 && sb.adopted == 0,
       "neither daemon counts an adoption");
    const char *ga[] = {"EXISTS", "{shmreg.1}:adopted"};
    r = rcmd(ga[1], 2, ga);
    ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0, "no {shmreg.1}:adopted marker in Redis");
    if (r)
        freeReplyObject(r);
    const char *gb[] = {"EXISTS", "{shmreg.2}:adopted"};
    r = rcmd(gb[1], 2, gb);
    ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 0, "no {shmreg.2}:adopted marker in Redis");
    if (r)
        freeReplyObject(r);

    /* 6. counters */
    diag_status("A (node 1)", A.h);
    diag_status("B (node 2)", B.h);
    ok(daemon_alive(&A) && daemon_alive(&B), "both daemons still run");
    int failed_before = tap__s.failed;
    pid_t pa = A.pid, pb = B.pid;
    kill(pa, SIGTERM);
    kill(pb, SIGTERM);
    is(test_wait(pa), 0, "A's daemon stops with status 0");
    is(test_wait(pb), 0, "B's daemon stops with status 0");
    A.pid = B.pid = 0;
    if (tap__s.failed || failed_before) {
        diag_log(&A, NULL, 80);
        diag_log(&B, NULL, 80);
    } else { /* how each daemon came back */
        diag_log(&A, "resync (", 10);
        diag_log(&B, "resynced:", 10);
    }
    rds_close(rc_);
    redis_cluster_stop(&cl);
    shmreg_close(A.h);
    shmreg_close(B.h);
    diag("whole test: %.1f s", test_mono_s() - t_start);
    return done_testing();
}
