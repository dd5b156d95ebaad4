/*
 * shmreg-sync-redis.c — shmreg-sync's mirror: registries of several hosts
 * (each created with its own node ID) share their calls through Redis,
 * and a surviving host takes over the calls of a dead one.
 *
 * Three parts, three threads, three Redis connections (an rds serves one
 * thread):
 *
 *   The push sink (the daemon's main thread, behind tools/shmreg-sync.h):
 *   the same dirty set and resync-by-scan as the LMDB sink, so what is
 *   written follows the number of sessions changed, not of changes. It
 *   writes only this node's own sessions: per session a hash, a member
 *   of the node's id set and an entry of its change stream, ≤ 256
 *   sessions per MULTI/EXEC. Every key of node N carries the hash tag
 *   {shmreg.N}, so a batch lives in one cluster slot and can be one
 *   transaction. A session gone, or no longer ours, is removed by a small
 *   script that writes a "del" entry only if the id was in the set (a
 *   foreign copy deleted here was never ours to announce).
 *
 *   The importer (its own thread and registry handle): follows every
 *   other node's stream with non-blocking XREAD from the last ID seen and
 *   imports each entry (shmreg_session_import; the owner's version orders
 *   copies, so an old entry replayed is refused as stale and counted).
 *   When it cannot trust the stream (first contact, entries trimmed past
 *   what it read, Redis back from an outage or restarted) it resyncs the
 *   node from its hashes: stream position noted first, then the id set
 *   and every hash, then local copies not in the set deleted, then the
 *   stream again from the noted position; whatever changed meanwhile is
 *   in the stream after it. The importer also adopts dead nodes (below):
 *   import and adoption change the same copies, so they are one thread.
 *
 *   The lease keeper (its own thread): a node is alive while its lease
 *   key exists; ours is renewed every ttl/4 (at most 1 s apart, so a
 *   Redis outage at the worst moment still finds most of it left) by a
 *   script that extends it
 *   only while it holds our random token, so a second daemon for the same
 *   node ID (a configuration error) is found and refused rather than
 *   both writing. It also reads every peer's lease and adoption marker
 *   and hands them to the importer. It does no imports, so a big import
 *   never lets our lease lapse.
 *
 * Takeover. A peer whose lease is gone is adopted by whoever first sets
 * its {P}:adopted marker (SET NX inside a script that first checks the
 * lease is still gone): exactly one winner however many try at once, and
 * an operator's request (shmreg_node_adopt_request) forces the same step
 * without the lease check. The winner imports every hash of the dead node
 * (the freshest truth), adopts each session (shmreg_session_adopt makes
 * it ours with a higher version, and its events make the push sink write
 * it under OUR tag), then deletes the dead node's hashes and set, but
 * writes no "del" entries: the other survivors must keep the calls, and
 * they get them from our stream, where the owner is us and the version
 * higher, which the library lets replace their copies. Losers do nothing.
 * A stopped daemon leaves its lease to expire: a node counts as alive
 * only while its daemon runs (so a clean stop of the daemon alone while
 * its workers run is a takeover after ttl, as with any lease).
 *
 * Redis down: workers never notice (the daemon only reads the registry).
 * The push side keeps the dirty set, reports DOWN, is probed every 500 ms
 * and resyncs whole on return; the importer resyncs every peer.
 *
 * Key schema (N: decimal node ID):
 *   shmreg:nodes          set of node IDs that ever joined
 *   {shmreg.N}:lease      our random token, PX ttl
 *   {shmreg.N}:s:<uuid>   hash: ver, owner, rec (shmreg_session_encode_control), t
 *   {shmreg.N}:ids        set of live own session uuids
 *   {shmreg.N}:log        stream: op put|del, id, ver, t, rec (put only)
 *   {shmreg.N}:adopted    the node that adopted N
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-redis.h"
#include "shmreg-sync.h"

#define PUSH_BATCH 256u     /* sessions per MULTI/EXEC */
#define XREAD_COUNT 512     /* stream entries per read */
#define HGET_CHUNK 128u     /* hashes per pipeline in a resync or an adoption */
#define MAX_PEERS 256u      /* nodes followed at most */
#define RETRY_NS 500000000ull

static uint64_t rnow_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rmono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ scripts */

/* Renew our lease: 1 renewed, 2 taken again (it had lapsed), -1 another
 * daemon holds it, -2 the node was adopted meanwhile (asked first: an
 * operator may adopt a node whose lease still runs). */
static const char RENEW_LUA[] =
    "if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end\n"
    "local v = redis.call('GET', KEYS[1])\n"
    "if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end\n"
    "if v then return -1 end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2\n";

/* Take node P: 1 won (or had won: a winner that died midway finishes),
 * 0 lost or the lease is alive (force 0). */
static const char ADOPT_LUA[] =
    "if ARGV[2] == '0' and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end\n"
    "if redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end\n"
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX') then return 1 end\n"
    "return 0\n";

/* Remove an own session: only if it is in the id set (else it was never
 * pushed, or is gone already), with a del entry. */
static const char DEL_LUA[] =
    "if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then\n"
    "  redis.call('DEL', KEYS[1])\n"
    "  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'op', 'del', 'id', ARGV[1],"
    " 'ver', '0', 't', ARGV[2])\n"
    "  return 1 end\n"
    "return 0\n";

/* ------------------------------------------------------------ the mirror */

typedef struct peer_info {       /* what the lease keeper learnt of a peer */
    uint32_t node;
    int alive;                   /* its lease exists */
    uint32_t adopted_by;         /* its {P}:adopted, 0 none */
} peer_info;

typedef struct peer {            /* the importer's own state of a peer */
    uint32_t node, adopted_by;
    int alive, synced, state;
    uint64_t last_ms, last_seq;  /* the last stream ID read */
    uint64_t copies, lag_ns, applied_ns, checked_mono;
} peer;

typedef struct rsink rsink;

struct mirror {
    mirror_opts o;
    char urlbuf[16][512];
    const char *url[16];
    shmreg *h;                   /* the daemon's (main thread) */
    shmreg *hi;                  /* the importer's */
    rds *cp, *ci, *cl;           /* push, import, lease connections */
    rsink *sink;
    /* The lease's value: "<this registry's identity>/<random>". A lease
     * whose identity is ours was left by this registry's previous daemon
     * (the sync claim allows one at a time): taken over at once, so a
     * restart is not a clash. Any other value is another daemon. */
    char token[160];
    size_t idlen;
    pthread_t imp_t, lease_t;
    int have_imp, have_lease;
    _Atomic int stop;
    _Atomic int fatal;
    _Atomic uint32_t adopted_by; /* set with fatal: the node that adopted ours */
    pthread_mutex_t mu;          /* guards what follows */
    char fatal_msg[512];
    peer_info info[MAX_PEERS];
    unsigned ninfo;
    int push_up, import_up, lease_up;
    /* Whether every live node has had a whole lease to renew since Redis
     * was last seen to lose or miss leases (our start, a reconnect, our
     * own lease found lapsed): only then is a missing lease a dead node.
     * A Redis restarted empty loses every lease at once; without this
     * the first daemon back would adopt every other live node. */
    int settled;
    char push_err[192], import_err[192], lease_err[192];
    uint64_t backlog, pushed_seq, push_ns, pushed;
    /* the importer's totals (its thread only) */
    uint64_t imported, deleted, adopted, stale, errors;
    peer peers[MAX_PEERS];
    unsigned npeers;
};

static void set_err(mirror *m, char *slot, int *up, const char *msg)
{
    pthread_mutex_lock(&m->mu);
    *up = msg == NULL;
    if (msg)
        snprintf(slot, 192, "%s", msg);
    pthread_mutex_unlock(&m->mu);
}

static void set_fatal(mirror *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_fatal(mirror *m, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&m->mu);
    va_start(ap, fmt);
    vsnprintf(m->fatal_msg, sizeof m->fatal_msg, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&m->mu);
    atomic_store(&m->fatal, 3);
}

int mirror_fatal(mirror *m, shmreg *h, char *err, size_t errlen)
{
    int f = atomic_load(&m->fatal);
    if (f) {
        pthread_mutex_lock(&m->mu);
        snprintf(err, errlen, "%s", m->fatal_msg);
        pthread_mutex_unlock(&m->mu);
        uint32_t to = atomic_load(&m->adopted_by);
        uint64_t n = 0;
        if (to && shmreg_node_cede(h, to, &n) == 0)
            sync_log("%llu sessions handed to node %u as foreign copies: this node's workers can no longer "
                     "change them", (unsigned long long)n, (unsigned)to);
    }
    return f;
}

void mirror_push_state(mirror *m, int up, uint64_t backlog, const char *err)
{
    pthread_mutex_lock(&m->mu);
    m->push_up = up;
    m->backlog = backlog;
    if (err)
        snprintf(m->push_err, sizeof m->push_err, "%s", err);
    pthread_mutex_unlock(&m->mu);
}

static int key_of(char *buf, size_t cap, uint32_t node, const char *suffix)
{
    return snprintf(buf, cap, "{shmreg.%u}:%s", (unsigned)node, suffix);
}

/* One command with printf-free arguments: argv of n strings (NUL-terminated
 * unless lens given), routed by key. */
static redisReply *cmd(rds *c, const char *key, int n, const char **argv, const size_t *lens)
{
    size_t l[16];
    if (lens == NULL) {
        for (int i = 0; i < n; i++)
            l[i] = strlen(argv[i]);
        lens = l;
    }
    return rds_command(c, key, key ? strlen(key) : 0, n, argv, lens);
}

/* Add `node` to shmreg:nodes, the set every daemon reads its peers from. */
static void join_nodes(rds *c, uint32_t node)
{
    char me[16];
    snprintf(me, sizeof me, "%u", (unsigned)node);
    const char *na[] = {"SADD", "shmreg:nodes", me};
    redisReply *r = cmd(c, "shmreg:nodes", 3, na, NULL);
    if (r)
        freeReplyObject(r);
}

static int is_err(const redisReply *r)
{
    return r == NULL || r->type == REDIS_REPLY_ERROR;
}

static const char *why(rds *c, const redisReply *r)
{
    return r == NULL ? rds_error(c) : r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply";
}

/* ------------------------------------------------------------ the push sink */

typedef struct rarg {
    size_t off, len;
} rarg;

struct rsink {
    sync_sink s;
    mirror *m;
    char kids[48], klog[48], tagfmt[40];
    char *arena;                 /* the batch's argument bytes */
    size_t alen, acap;
    rarg *args;
    size_t nargs, cargs;
    int *argc;
    size_t ncmd, ccmd;
    unsigned nsess;              /* sessions in the unsent part */
    uint64_t batch_pushed;
    /* scratch for sending */
    const char **pv;
    size_t *pl;
    const char **cv[PUSH_BATCH * 3 + 4];
    const size_t *cl[PUSH_BATCH * 3 + 4];
    redisReply *out[PUSH_BATCH * 3 + 4];
};

static int r_oom(rsink *r)
{
    snprintf(r->s.err, sizeof r->s.err, "Redis batch: out of memory");
    return SINK_ERR;
}

/* Room for `need` elements of `elem` bytes in the array whose pointer is
 * at `pp` (capacity *cap, doubled from `first`): 0, or -1 with it
 * unchanged. The pointer is read and written with memcpy, whatever its
 * type. */
static int grow(void *pp, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *old, *a;
    memcpy(&old, pp, sizeof old);
    if ((a = realloc(old, n * elem)) == NULL)
        return -1;
    memcpy(pp, &a, sizeof a);
    *cap = n;
    return 0;
}

static int add_arg(rsink *r, const void *p, size_t len)
{
    if (grow(&r->arena, &r->acap, r->alen + len, 1, 65536) != 0 ||
        grow(&r->args, &r->cargs, r->nargs + 1, sizeof *r->args, 1024) != 0)
        return -1;
    memcpy(r->arena + r->alen, p, len);
    r->args[r->nargs++] = (rarg){r->alen, len};
    r->alen += len;
    return 0;
}

static int add_str(rsink *r, const char *s)
{
    return add_arg(r, s, strlen(s));
}

static int add_u64(rsink *r, uint64_t x)
{
    char b[24];
    return add_arg(r, b, (size_t)snprintf(b, sizeof b, "%llu", (unsigned long long)x));
}

static int end_cmd(rsink *r, size_t first)
{
    if (grow(&r->argc, &r->ccmd, r->ncmd + 1, sizeof *r->argc, 1024) != 0)
        return -1;
    r->argc[r->ncmd++] = (int)(r->nargs - first);
    return 0;
}

static void reset_batch(rsink *r)
{
    r->alen = r->nargs = r->ncmd = 0;
    r->nsess = 0;
}

/* Send what is queued as one MULTI/EXEC. */
static int send_batch(rsink *r)
{
    if (r->ncmd == 0)
        return 0;
    size_t nc = r->ncmd;
    const char **pv = realloc(r->pv, r->nargs * sizeof *pv);
    if (pv == NULL)
        return r_oom(r);
    r->pv = pv;
    size_t *pl = realloc(r->pl, r->nargs * sizeof *pl);
    if (pl == NULL)
        return r_oom(r);
    r->pl = pl;
    for (size_t i = 0; i < r->nargs; i++) {
        pv[i] = r->arena + r->args[i].off;
        pl[i] = r->args[i].len;
    }
    size_t a = 0;
    for (size_t i = 0; i < nc; i++) {
        r->cv[i] = pv + a;
        r->cl[i] = pl + a;
        a += (size_t)r->argc[i];
    }
    int rc = rds_pipeline(r->m->cp, r->kids, strlen(r->kids), (int)nc, r->argc,
                          (const char *const *const *)r->cv, (const size_t *const *)r->cl, 1, r->out);
    reset_batch(r);
    if (rc != 0) {
        snprintf(r->s.err, sizeof r->s.err, "Redis: %s", rds_error(r->m->cp));
        return SINK_ERR;
    }
    int bad = -1;
    for (size_t i = 0; i < nc; i++) {
        if (bad < 0 && is_err(r->out[i])) {
            bad = (int)i;
            snprintf(r->s.err, sizeof r->s.err, "Redis refused a push: %s",
                     r->out[i] ? r->out[i]->str : "no reply");
        }
        if (r->out[i])
            freeReplyObject(r->out[i]);
    }
    return bad < 0 ? 0 : SINK_ERR;
}

static int r_begin(sync_sink *s)
{
    rsink *r = (rsink *)s;
    reset_batch(r);
    r->batch_pushed = 0;
    return 0;
}

static int maybe_send(rsink *r)
{
    /* the command scratch holds PUSH_BATCH * 3: a prune's deletes count one each */
    return r->nsess >= PUSH_BATCH || r->ncmd + 3 > PUSH_BATCH * 3 ? send_batch(r) : 0;
}

static int r_put(sync_sink *s, int kind, const shmreg_id *id, const void *rec, size_t len,
                 const sync_meta *meta)
{
    rsink *r = (rsink *)s;
    if (kind != SINK_SESSION || meta == NULL)
        return 0; /* rooms are not mirrored */
    char t[SHMREG_ID_TEXT_LEN + 1], key[96];
    shmreg_id_format(id, t);
    snprintf(key, sizeof key, "%s%s", r->tagfmt, t);
    size_t f = r->nargs;
    int e = add_str(r, "HSET") || add_str(r, key) || add_str(r, "ver") || add_u64(r, meta->version) ||
            add_str(r, "owner") || add_u64(r, meta->owner) || add_str(r, "rec") ||
            add_arg(r, rec, len) || add_str(r, "t") || add_u64(r, meta->t_ns) || end_cmd(r, f);
    f = r->nargs;
    e = e || add_str(r, "SADD") || add_str(r, r->kids) || add_str(r, t) || end_cmd(r, f);
    f = r->nargs;
    e = e || add_str(r, "XADD") || add_str(r, r->klog) || add_str(r, "MAXLEN") || add_str(r, "~") ||
        add_u64(r, r->m->o.stream_max) || add_str(r, "*") || add_str(r, "op") || add_str(r, "put") ||
        add_str(r, "id") || add_str(r, t) || add_str(r, "ver") || add_u64(r, meta->version) ||
        add_str(r, "t") || add_u64(r, meta->t_ns) || add_str(r, "rec") || add_arg(r, rec, len) ||
        end_cmd(r, f);
    if (e)
        return r_oom(r);
    r->nsess++;
    r->batch_pushed++;
    return maybe_send(r);
}

static int queue_del(rsink *r, const char *t)
{
    char key[96];
    snprintf(key, sizeof key, "%s%s", r->tagfmt, t);
    size_t f = r->nargs;
    if (add_str(r, "EVAL") || add_str(r, DEL_LUA) || add_str(r, "3") || add_str(r, key) ||
        add_str(r, r->kids) || add_str(r, r->klog) || add_str(r, t) || add_u64(r, rnow_ns()) ||
        add_u64(r, r->m->o.stream_max) || end_cmd(r, f))
        return r_oom(r);
    r->nsess++;
    return maybe_send(r);
}

static int r_del(sync_sink *s, int kind, const shmreg_id *id)
{
    rsink *r = (rsink *)s;
    if (kind != SINK_SESSION)
        return 0;
    char t[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(id, t);
    return queue_del(r, t);
}

static int r_prune(sync_sink *s, int kind, int (*keep)(void *arg, const shmreg_id *id), void *arg,
                   uint64_t *removed)
{
    rsink *r = (rsink *)s;
    *removed = 0;
    if (kind != SINK_SESSION)
        return 0;
    /* A full resync (start, Redis back empty, a lap) says who we are too,
     * before the records it writes can reach a peer: a node whose daemon
     * dies right after would otherwise be unknown, never adopted, until
     * its lease keeper's next renewal, which may never come. */
    join_nodes(r->m->cp, r->m->o.node);
    const char *av[] = {"SMEMBERS", r->kids};
    redisReply *rep = cmd(r->m->cp, r->kids, 2, av, NULL);
    if (is_err(rep) || rep->type != REDIS_REPLY_ARRAY) {
        snprintf(r->s.err, sizeof r->s.err, "Redis: SMEMBERS %s: %s", r->kids, why(r->m->cp, rep));
        if (rep)
            freeReplyObject(rep);
        return SINK_ERR;
    }
    int rc = 0;
    for (size_t i = 0; i < rep->elements && rc == 0; i++) {
        redisReply *e = rep->element[i];
        shmreg_id id;
        if (e->type != REDIS_REPLY_STRING)
            continue;
        if (shmreg_id_parse(e->str, e->len, &id) != 0) { /* not ours to read: drop it */
            size_t f = r->nargs;
            if (add_str(r, "SREM") || add_str(r, r->kids) || add_arg(r, e->str, e->len) || end_cmd(r, f))
                rc = r_oom(r);
            else
                rc = maybe_send(r);
            continue;
        }
        if (keep(arg, &id))
            continue;
        char t[SHMREG_ID_TEXT_LEN + 1];
        shmreg_id_format(&id, t);
        rc = queue_del(r, t);
        (*removed)++;
    }
    freeReplyObject(rep);
    return rc;
}

static int r_commit(sync_sink *s, uint64_t pos, uint64_t now)
{
    rsink *r = (rsink *)s;
    int rc = send_batch(r);
    if (rc)
        return rc;
    pthread_mutex_lock(&r->m->mu);
    r->m->pushed_seq = pos;
    r->m->push_ns = now;
    r->m->pushed += r->batch_pushed;
    pthread_mutex_unlock(&r->m->mu);
    return 0;
}

static void r_abort(sync_sink *s)
{
    reset_batch((rsink *)s);
}

static int r_sync(sync_sink *s)
{
    (void)s;
    return 0;
}

static int r_stored(sync_sink *s, uint64_t *pos, uint64_t *ns)
{
    (void)s;
    *pos = *ns = 0;
    return 0;
}

static void r_close(sync_sink *s)
{
    (void)s; /* freed by mirror_stop */
}

static int r_probe(sync_sink *s)
{
    rsink *r = (rsink *)s;
    const char *av[] = {"PING"};
    redisReply *rep = cmd(r->m->cp, r->kids, 1, av, NULL);
    int ok = !is_err(rep);
    if (!ok)
        snprintf(r->s.err, sizeof r->s.err, "Redis: %s", why(r->m->cp, rep));
    if (rep)
        freeReplyObject(rep);
    return ok ? 0 : SINK_ERR;
}

sync_sink *mirror_sink(mirror *m)
{
    return &m->sink->s;
}

/* ------------------------------------------------------------ records from Redis */

typedef struct rec_in {
    shmreg_id id;
    char idtext[SHMREG_ID_TEXT_LEN + 1];
    int del;
    uint64_t ver, t;
    uint32_t owner;
    const char *rec;
    size_t reclen;
} rec_in;

static int parse_u64(const char *s, size_t len, uint64_t *out)
{
    if (len == 0 || len > 20)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        unsigned dgt = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - dgt) / 10)
            return -1;
        x = x * 10 + dgt;
    }
    *out = x;
    return 0;
}

/* Read the field/value pairs of a hash or a stream entry into *in. 0, or
 * -1 with why in msg. Nothing decoded yet. */
static int read_fields(const redisReply *a, uint32_t node, int stream, rec_in *in, char *msg, size_t cap)
{
    memset(in, 0, sizeof *in);
    in->owner = node;
    int have_id = !stream, have_ver = 0, have_op = !stream;
    if (a == NULL || a->type != REDIS_REPLY_ARRAY || a->elements % 2) {
        snprintf(msg, cap, "not a list of fields");
        return -1;
    }
    for (size_t i = 0; i + 1 < a->elements; i += 2) {
        const redisReply *k = a->element[i], *v = a->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) {
            snprintf(msg, cap, "a field that is not a string");
            return -1;
        }
        const char *f = k->str;
        if (strcmp(f, "rec") == 0) {
            if (v->len > SHMREG_SESSION_RECORD_MAX) {
                snprintf(msg, cap, "rec of %zu bytes is over %u", (size_t)v->len,
                         (unsigned)SHMREG_SESSION_RECORD_MAX);
                return -1;
            }
            in->rec = v->str;
            in->reclen = v->len;
        } else if (strcmp(f, "ver") == 0) {
            if (parse_u64(v->str, v->len, &in->ver) != 0) {
                snprintf(msg, cap, "ver is not a number");
                return -1;
            }
            have_ver = 1;
        } else if (strcmp(f, "t") == 0) {
            if (parse_u64(v->str, v->len, &in->t) != 0) {
                snprintf(msg, cap, "t is not a number");
                return -1;
            }
        } else if (strcmp(f, "owner") == 0) {
            uint64_t o;
            if (parse_u64(v->str, v->len, &o) != 0 || o == 0 || o > SHMREG_NODE_MAX) {
                snprintf(msg, cap, "owner is not a node ID");
                return -1;
            }
            if (o != node) {
                snprintf(msg, cap, "owner %llu under node %u's key", (unsigned long long)o, (unsigned)node);
                return -1;
            }
        } else if (strcmp(f, "id") == 0) {
            if (v->len != SHMREG_ID_TEXT_LEN || shmreg_id_parse(v->str, v->len, &in->id) != 0) {
                snprintf(msg, cap, "id is not a session ID");
                return -1;
            }
            memcpy(in->idtext, v->str, SHMREG_ID_TEXT_LEN);
            have_id = 1;
        } else if (strcmp(f, "op") == 0) {
            if (strcmp(v->str, "put") != 0 && strcmp(v->str, "del") != 0) {
                snprintf(msg, cap, "unknown op");
                return -1;
            }
            in->del = v->str[0] == 'd';
            have_op = 1;
        } else if (v->len > 4096) {
            snprintf(msg, cap, "field %.32s of %zu bytes", f, (size_t)v->len);
            return -1;
        }
    }
    if (!have_id || !have_op || (!in->del && (!have_ver || in->rec == NULL))) {
        snprintf(msg, cap, "a field is missing");
        return -1;
    }
    return 0;
}

static void count_error(mirror *m, uint32_t node, const char *id, const char *msg)
{
    m->errors++;
    sync_log("node %u session %s: skipped: %s", (unsigned)node, id && *id ? id : "?", msg);
}

/* Import one put: decode, check, import. The importer's thread only. */
static void import_put(mirror *m, peer *p, const rec_in *in)
{
    shmreg_session s;
    shmreg_session_control c;
    shmreg_dialog dl[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd = 0;
    int rc = shmreg_session_decode_control(in->rec, in->reclen, &s, &c, dl, &nd);
    if (rc != 0) {
        count_error(m, p->node, in->idtext, rc == SHMREG_EVERSION ? "record of an unknown format"
                                                                  : "record does not decode");
        return;
    }
    if (memcmp(s.id.bytes, in->id.bytes, SHMREG_ID_BYTES) != 0) {
        count_error(m, p->node, in->idtext, "record of another session");
        return;
    }
    rc = shmreg_session_import(m->hi, p->node, in->ver, &s, &c, dl, nd);
    if (rc == 0) {
        m->imported++;
        uint64_t now = rnow_ns();
        p->applied_ns = now;
        p->lag_ns = in->t && now > in->t ? now - in->t : 0;
    } else if (rc == SHMREG_ECONFLICT) {
        m->stale++;
    } else if (rc != SHMREG_EEXIST) { /* EEXIST: ours now (adopted): nothing to do */
        char msg[256];
        snprintf(msg, sizeof msg, "import: %s", shmreg_errmsg());
        count_error(m, p->node, in->idtext, msg);
    }
}

static void import_del(mirror *m, peer *p, const rec_in *in)
{
    int rc = shmreg_session_import_delete(m->hi, p->node, &in->id);
    if (rc == 0)
        m->deleted++;
    else if (rc != SHMREG_ECONFLICT && rc != SHMREG_ENOENT) {
        char msg[256];
        snprintf(msg, sizeof msg, "delete: %s", shmreg_errmsg());
        count_error(m, p->node, in->idtext, msg);
    }
}

/* ------------------------------------------------------------ local copies */

static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, SHMREG_ID_BYTES);
}

/* The IDs of the live sessions here owned by `node` (sorted), or, with
 * node 0, nothing collected but per-peer copy counts updated. */
static int local_owned(mirror *m, uint32_t node, shmreg_id **out, size_t *n)
{
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    uint64_t cur = 0;
    for (int done = 0; !done;) {
        shmreg_read_begin(m->hi);
        for (unsigned k = 0; k < 64; k++) {
            shmreg_session s;
            int r = shmreg_session_next(m->hi, &cur, SHMREG_STATE_ANY, &s);
            if (r) {
                done = 1;
                break;
            }
            if (node == 0) {
                for (unsigned i = 0; i < m->npeers; i++)
                    if (m->peers[i].node == s.owner_node)
                        m->peers[i].copies++;
                continue;
            }
            if (s.owner_node != node)
                continue;
            if (*n == cap) {
                cap = cap ? cap * 2 : 256;
                shmreg_id *g = realloc(*out, cap * sizeof *g);
                if (g == NULL) {
                    shmreg_read_end(m->hi);
                    return -1;
                }
                *out = g;
            }
            (*out)[(*n)++] = s.id;
        }
        shmreg_read_end(m->hi);
    }
    if (*n)
        qsort(*out, *n, sizeof **out, id_cmp);
    return 0;
}

static void count_copies(mirror *m)
{
    for (unsigned i = 0; i < m->npeers; i++)
        m->peers[i].copies = 0;
    shmreg_id *none;
    size_t n;
    local_owned(m, 0, &none, &n);
}

/* ------------------------------------------------------------ the importer */

static void import_failed(mirror *m, const char *what, rds *c, const redisReply *r)
{
    char msg[192];
    snprintf(msg, sizeof msg, "%s: %s", what, why(c, r));
    int was;
    pthread_mutex_lock(&m->mu);
    was = m->import_up;
    m->import_up = 0;
    snprintf(m->import_err, sizeof m->import_err, "%s", msg);
    pthread_mutex_unlock(&m->mu);
    if (was)
        sync_log("import: %s (resyncing every node when Redis answers)", msg);
    for (unsigned i = 0; i < m->npeers; i++)
        m->peers[i].synced = 0;
}

static int parse_sid(const char *s, uint64_t *ms, uint64_t *seq)
{
    const char *dash = strchr(s, '-');
    if (dash == NULL)
        return parse_u64(s, strlen(s), ms) == 0 ? (*seq = 0, 0) : -1;
    return parse_u64(s, (size_t)(dash - s), ms) || parse_u64(dash + 1, strlen(dash + 1), seq) ? -1 : 0;
}

static int sid_after(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq)
{
    return ams > bms || (ams == bms && aseq > bseq);
}

static const redisReply *map_get(const redisReply *r, const char *name)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && strcmp(r->element[i]->str, name) == 0)
            return r->element[i + 1];
    return NULL;
}

/* Import every hash of `ids` (P's id set) in pipelined chunks; with
 * `adopt`, make each ours too. Fills `in_set` with the IDs seen (sorted).
 * 0, or -1 when Redis failed. */
static int import_hashes(mirror *m, peer *p, const redisReply *ids, int adopt, shmreg_id **in_set,
                         size_t *nin)
{
    char keys[HGET_CHUNK][96];
    const char *av[HGET_CHUNK][2];
    size_t al[HGET_CHUNK][2];
    const char *const *cv[HGET_CHUNK];
    const size_t *cl[HGET_CHUNK];
    int argc[HGET_CHUNK];
    redisReply *out[HGET_CHUNK];
    char tag[48];
    key_of(tag, sizeof tag, p->node, "ids");
    *in_set = calloc(ids->elements + 1, sizeof **in_set);
    *nin = 0;
    if (*in_set == NULL)
        return -1;
    for (size_t i = 0; i < ids->elements;) {
        size_t n = 0, idx[HGET_CHUNK];
        for (; i < ids->elements && n < HGET_CHUNK; i++) {
            const redisReply *e = ids->element[i];
            shmreg_id id;
            if (e->type != REDIS_REPLY_STRING || e->len != SHMREG_ID_TEXT_LEN ||
                shmreg_id_parse(e->str, e->len, &id) != 0) {
                count_error(m, p->node, NULL, "a member of its id set is not a session ID");
                continue;
            }
            (*in_set)[(*nin)++] = id;
            snprintf(keys[n], sizeof keys[n], "{shmreg.%u}:s:%.36s", (unsigned)p->node, e->str);
            av[n][0] = "HGETALL";
            av[n][1] = keys[n];
            al[n][0] = 7;
            al[n][1] = strlen(keys[n]);
            cv[n] = av[n];
            cl[n] = al[n];
            argc[n] = 2;
            idx[n++] = i;
        }
        if (n == 0)
            continue;
        if (rds_pipeline(m->ci, tag, strlen(tag), (int)n, argc, cv, cl, 0, out) != 0) {
            import_failed(m, "reading hashes", m->ci, NULL);
            return -1;
        }
        for (size_t k = 0; k < n; k++) {
            redisReply *r = out[k];
            const redisReply *e = ids->element[idx[k]];
            char idt[SHMREG_ID_TEXT_LEN + 1];
            memcpy(idt, e->str, SHMREG_ID_TEXT_LEN);
            idt[SHMREG_ID_TEXT_LEN] = 0;
            if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
                freeReplyObject(r); /* deleted since SMEMBERS: its del entry follows */
                continue;
            }
            rec_in in;
            char msg[160];
            if (is_err(r) || read_fields(r, p->node, 0, &in, msg, sizeof msg) != 0) {
                count_error(m, p->node, idt, is_err(r) ? why(m->ci, r) : msg);
            } else {
                shmreg_id_parse(idt, SHMREG_ID_TEXT_LEN, &in.id);
                memcpy(in.idtext, idt, sizeof idt);
                import_put(m, p, &in);
                if (adopt) {
                    shmreg_session s;
                    shmreg_session_control c;
                    shmreg_dialog dl[SHMREG_MAX_DIALOGS_PER_SESSION];
                    unsigned nd;
                    if (shmreg_session_decode_control(in.rec, in.reclen, &s, &c, dl, &nd) == 0) {
                        int rc = shmreg_session_adopt(m->hi, &in.id, &c);
                        if (rc == 0 || rc == SHMREG_EFULL)
                            m->adopted++;
                        if (rc != 0 && rc != SHMREG_EEXIST)
                            sync_log("node %u session %s: adopting: %s", (unsigned)p->node, idt, shmreg_errmsg());
                    }
                }
            }
            if (r)
                freeReplyObject(r);
        }
    }
    if (*nin)
        qsort(*in_set, *nin, sizeof **in_set, id_cmp);
    return 0;
}

/* Delete the local copies owned by P that are not in `set`. */
static void drop_missing(mirror *m, peer *p, const shmreg_id *set, size_t n)
{
    shmreg_id *mine;
    size_t nm;
    if (local_owned(m, p->node, &mine, &nm) != 0)
        return;
    for (size_t i = 0; i < nm; i++)
        if (n == 0 || !bsearch(&mine[i], set, n, sizeof *set, id_cmp)) {
            rec_in in = {.id = mine[i]};
            shmreg_id_format(&mine[i], in.idtext);
            import_del(m, p, &in);
        }
    free(mine);
}

/* Resync peer P from its hashes (see the essay). 0, or -1 (Redis). */
static int resync_peer(mirror *m, peer *p)
{
    char klog[48], kids[48];
    key_of(klog, sizeof klog, p->node, "log");
    key_of(kids, sizeof kids, p->node, "ids");
    uint64_t t0 = rmono_ns(), ms = 0, seq = 0;
    const char *xa[] = {"XINFO", "STREAM", klog};
    redisReply *r = cmd(m->ci, klog, 3, xa, NULL);
    if (r == NULL) {
        import_failed(m, "XINFO STREAM", m->ci, r);
        return -1;
    }
    const redisReply *last = map_get(r, "last-generated-id");
    if (last && last->type == REDIS_REPLY_STRING)
        parse_sid(last->str, &ms, &seq);
    freeReplyObject(r); /* an error reply: no stream yet, follow from 0-0 */
    const char *sa[] = {"SMEMBERS", kids};
    r = cmd(m->ci, kids, 2, sa, NULL);
    if (is_err(r) || r->type != REDIS_REPLY_ARRAY) {
        import_failed(m, "SMEMBERS", m->ci, r);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    shmreg_id *set;
    size_t n;
    uint64_t imp0 = m->imported;
    int rc = import_hashes(m, p, r, 0, &set, &n);
    freeReplyObject(r);
    if (rc == 0) {
        drop_missing(m, p, set, n);
        p->last_ms = ms;
        p->last_seq = seq;
        p->synced = 1;
        p->checked_mono = rmono_ns();
        sync_log("node %u: resynced: %zu sessions, %llu imported, %.1f ms", (unsigned)p->node, n,
             (unsigned long long)(m->imported - imp0), (double)(rmono_ns() - t0) / 1e6);
    }
    free(set);
    return rc;
}

/* Follow P's stream: one non-blocking XREAD. Entries read, or -1. */
static int follow_peer(mirror *m, peer *p)
{
    char klog[48], from[48], count[16];
    key_of(klog, sizeof klog, p->node, "log");
    snprintf(from, sizeof from, "%llu-%llu", (unsigned long long)p->last_ms, (unsigned long long)p->last_seq);
    snprintf(count, sizeof count, "%d", XREAD_COUNT);
    const char *av[] = {"XREAD", "COUNT", count, "STREAMS", klog, from};
    redisReply *r = cmd(m->ci, klog, 6, av, NULL);
    if (is_err(r)) {
        import_failed(m, "XREAD", m->ci, r);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int n = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
        r->element[0]->elements == 2) {
        const redisReply *ents = r->element[0]->element[1];
        for (size_t i = 0; ents->type == REDIS_REPLY_ARRAY && i < ents->elements; i++) {
            const redisReply *e = ents->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING)
                continue;
            uint64_t ms, seq;
            if (parse_sid(e->element[0]->str, &ms, &seq) == 0) {
                p->last_ms = ms;
                p->last_seq = seq;
            }
            n++;
            rec_in in;
            char msg[160];
            if (read_fields(e->element[1], p->node, 1, &in, msg, sizeof msg) != 0) {
                /* name the id if it can be read at all */
                const redisReply *idr = map_get(e->element[1], "id");
                char idt[40] = "";
                if (idr && idr->type == REDIS_REPLY_STRING)
                    snprintf(idt, sizeof idt, "%.36s", idr->str);
                count_error(m, p->node, idt, msg);
                continue;
            }
            if (in.del)
                import_del(m, p, &in);
            else
                import_put(m, p, &in);
        }
    }
    freeReplyObject(r);
    return n;
}

/* Entries we did not read were trimmed, or the stream is gone (Redis
 * lost it): 1 resync, 0 fine, -1 Redis failed. */
static int trimmed(mirror *m, peer *p)
{
    char klog[48];
    key_of(klog, sizeof klog, p->node, "log");
    const char *av[] = {"XINFO", "STREAM", klog};
    redisReply *r = cmd(m->ci, klog, 3, av, NULL);
    if (r == NULL) {
        import_failed(m, "XINFO STREAM", m->ci, r);
        return -1;
    }
    int gap = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        gap = p->last_ms || p->last_seq; /* we read a stream that is gone */
    } else {
        /* max-deleted-entry-id (Redis 7): the newest entry trimmed or deleted */
        uint64_t ms, seq;
        const redisReply *mx = map_get(r, "max-deleted-entry-id");
        if (mx && mx->type == REDIS_REPLY_STRING && parse_sid(mx->str, &ms, &seq) == 0 &&
            sid_after(ms, seq, p->last_ms, p->last_seq))
            gap = 1;
    }
    freeReplyObject(r);
    return gap;
}

/* Take node P (force: an operator's request) and, if we win, make its
 * calls ours. */
static void adopt_node(mirror *m, peer *p, int force)
{
    char klease[48], kadopt[48], kids[48], me[16];
    key_of(klease, sizeof klease, p->node, "lease");
    key_of(kadopt, sizeof kadopt, p->node, "adopted");
    key_of(kids, sizeof kids, p->node, "ids");
    snprintf(me, sizeof me, "%u", (unsigned)m->o.node);
    const char *av[] = {"EVAL", ADOPT_LUA, "2", klease, kadopt, me, force ? "1" : "0"};
    redisReply *r = cmd(m->ci, klease, 7, av, NULL);
    if (is_err(r) || r->type != REDIS_REPLY_INTEGER) {
        import_failed(m, "adoption script", m->ci, r);
        if (r)
            freeReplyObject(r);
        return;
    }
    int won = r->integer == 1;
    freeReplyObject(r);
    if (!won) {
        const char *ga[] = {"GET", kadopt};
        r = cmd(m->ci, kadopt, 2, ga, NULL);
        uint64_t by = 0;
        if (r && r->type == REDIS_REPLY_STRING && parse_u64(r->str, r->len, &by) == 0 && by)
            p->adopted_by = (uint32_t)by; /* lost: the winner's stream brings the calls */
        if (r)
            freeReplyObject(r);
        if (force && by)
            sync_log("node %u: adoption asked, but node %llu had adopted it", (unsigned)p->node,
                 (unsigned long long)by);
        return;
    }
    sync_log("node %u: adopting its calls (%s)", (unsigned)p->node, force ? "operator's request" : "lease expired");
    const char *sa[] = {"SMEMBERS", kids};
    r = cmd(m->ci, kids, 2, sa, NULL);
    if (is_err(r) || r->type != REDIS_REPLY_ARRAY) {
        import_failed(m, "SMEMBERS", m->ci, r);
        if (r)
            freeReplyObject(r);
        return; /* the marker is ours: the script lets us finish next time */
    }
    uint64_t a0 = m->adopted;
    shmreg_id *set;
    size_t n;
    if (import_hashes(m, p, r, 1, &set, &n) != 0) {
        freeReplyObject(r);
        free(set);
        return;
    }
    drop_missing(m, p, set, n);
    free(set);
    /* Its records go; no del entries: the other survivors keep the calls
     * and get them from our stream. */
    char keys[HGET_CHUNK][96];
    const char *dv[HGET_CHUNK][2];
    size_t dl[HGET_CHUNK][2];
    const char *const *cv[HGET_CHUNK];
    const size_t *cl[HGET_CHUNK];
    int argc[HGET_CHUNK];
    redisReply *out[HGET_CHUNK];
    for (size_t i = 0; i <= r->elements;) {
        size_t k = 0;
        for (; i < r->elements && k < HGET_CHUNK; i++) {
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING || e->len > 40)
                continue;
            snprintf(keys[k], sizeof keys[k], "{shmreg.%u}:s:%s", (unsigned)p->node, e->str);
            dv[k][0] = "DEL";
            dv[k][1] = keys[k];
            k++;
        }
        if (i == r->elements && k < HGET_CHUNK) {
            snprintf(keys[k], sizeof keys[k], "%s", kids);
            dv[k][0] = "DEL";
            dv[k][1] = keys[k];
            k++;
            i++;
        }
        for (size_t j = 0; j < k; j++) {
            dl[j][0] = 3;
            dl[j][1] = strlen(keys[j]);
            cv[j] = dv[j];
            cl[j] = dl[j];
            argc[j] = 2;
        }
        if (k && rds_pipeline(m->ci, kids, strlen(kids), (int)k, argc, cv, cl, 0, out) == 0)
            for (size_t j = 0; j < k; j++)
                if (out[j])
                    freeReplyObject(out[j]);
    }
    freeReplyObject(r);
    p->adopted_by = m->o.node;
    sync_log("node %u: adopted %llu calls", (unsigned)p->node, (unsigned long long)(m->adopted - a0));
}

static peer *peer_of(mirror *m, uint32_t node)
{
    for (unsigned i = 0; i < m->npeers; i++)
        if (m->peers[i].node == node)
            return &m->peers[i];
    if (m->npeers == MAX_PEERS)
        return NULL;
    peer *p = &m->peers[m->npeers++];
    memset(p, 0, sizeof *p);
    p->node = node;
    p->alive = 1;
    p->state = SHMREG_PEER_SYNCING;
    return p;
}

static void report(mirror *m)
{
    shmreg_mirror_status st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&m->mu);
    int up = m->push_up && m->import_up && m->lease_up;
    st.state = up ? SHMREG_MIRROR_UP : SHMREG_MIRROR_DOWN;
    st.pushed_seq = m->pushed_seq;
    st.push_ns = m->push_ns;
    st.backlog = m->backlog;
    st.pushed = m->pushed;
    const char *e = !m->push_up ? m->push_err : !m->import_up ? m->import_err : !m->lease_up ? m->lease_err : "";
    snprintf(st.last_error, sizeof st.last_error, "%s", e);
    pthread_mutex_unlock(&m->mu);
    st.imported = m->imported;
    st.deleted = m->deleted;
    st.adopted = m->adopted;
    st.stale = m->stale;
    st.errors = m->errors;
    st.reported_ns = rnow_ns();
    for (unsigned i = 0; i < m->npeers && st.npeers < SHMREG_MIRROR_PEERS_MAX; i++) {
        const peer *p = &m->peers[i];
        shmreg_mirror_peer *q = &st.peer[st.npeers++];
        q->node = p->node;
        q->state = p->adopted_by ? SHMREG_PEER_ADOPTED
                   : !p->alive   ? SHMREG_PEER_DEAD
                   : p->synced   ? SHMREG_PEER_UP
                                 : SHMREG_PEER_SYNCING;
        q->adopted_by = p->adopted_by;
        q->copies = p->copies;
        q->lag_ns = p->lag_ns;
        q->applied_ns = p->applied_ns;
    }
    shmreg_mirror_report(m->hi, &st);
}

static void *importer(void *arg)
{
    mirror *m = arg;
    uint64_t reconnects = rds_reconnects(m->ci), last_report = 0, last_count = 0, last_try = 0;
    while (!atomic_load(&m->stop)) {
        uint64_t now = rmono_ns();
        /* what the lease keeper learnt */
        pthread_mutex_lock(&m->mu);
        for (unsigned i = 0; i < m->ninfo; i++) {
            peer *p = peer_of(m, m->info[i].node);
            if (p == NULL)
                continue;
            p->alive = m->info[i].alive;
            /* a marker we set ourselves may not be in the keeper's last look yet */
            int ours_pending = m->info[i].adopted_by == 0 && p->adopted_by == m->o.node && !p->alive;
            if (m->info[i].adopted_by != p->adopted_by && !ours_pending) {
                p->adopted_by = m->info[i].adopted_by;
                p->synced = 0; /* adopted: not followed; back (restarted empty): from scratch */
            }
        }
        int up = m->import_up, settled = m->settled;
        pthread_mutex_unlock(&m->mu);
        if (!up && now - last_try < RETRY_NS) {
            nap_ms(20);
            if (now - last_report >= 200000000ull) {
                report(m);
                last_report = now;
            }
            continue;
        }
        last_try = now;
        if (!up)
            set_err(m, m->import_err, &m->import_up, NULL); /* try again; a failure says so */
        if (rds_reconnects(m->ci) != reconnects) { /* Redis may have restarted: trust nothing */
            reconnects = rds_reconnects(m->ci);
            for (unsigned i = 0; i < m->npeers; i++)
                m->peers[i].synced = 0;
        }
        uint32_t asked = 0;
        if (shmreg_node_adopt_take(m->hi, &asked) == 0 && asked) {
            peer *p = peer_of(m, asked);
            if (p)
                adopt_node(m, p, 1);
        }
        int busy = 0;
        for (unsigned i = 0; i < m->npeers && !atomic_load(&m->stop); i++) {
            peer *p = &m->peers[i];
            if (p->adopted_by)
                continue;
            if (!p->alive && settled && !m->o.no_adopt) {
                adopt_node(m, p, 0);
                if (p->adopted_by)
                    continue;
            }
            if (!p->synced) {
                if (resync_peer(m, p) != 0)
                    break;
                continue;
            }
            if (now - p->checked_mono >= 1000000000ull) {
                p->checked_mono = now;
                int g = trimmed(m, p);
                if (g < 0)
                    break;
                if (g) {
                    sync_log("node %u: its stream was trimmed past what was read: resyncing", (unsigned)p->node);
                    p->synced = 0;
                    if (resync_peer(m, p) != 0)
                        break;
                    continue;
                }
            }
            int n = follow_peer(m, p);
            if (n < 0)
                break;
            busy |= n == XREAD_COUNT;
        }
        if (now - last_count >= 1000000000ull) {
            count_copies(m);
            last_count = now;
        }
        if (now - last_report >= 200000000ull) {
            report(m);
            last_report = now;
        }
        if (!busy)
            nap_ms(5);
    }
    report(m);
    return NULL;
}

/* ------------------------------------------------------------ the lease keeper */

static void *lease_keeper(void *arg)
{
    mirror *m = arg;
    char klease[48], kadopt[48], ttl[24];
    key_of(klease, sizeof klease, m->o.node, "lease");
    key_of(kadopt, sizeof kadopt, m->o.node, "adopted");
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)m->o.lease_ms);
    uint64_t every = m->o.lease_ms * 1000000ull / 4, next = 0;
    if (every > 1000000000ull)
        every = 1000000000ull;
    uint64_t since = rmono_ns(), reconnects = rds_reconnects(m->cl);
    while (!atomic_load(&m->stop)) {
        uint64_t now = rmono_ns();
        if (now < next) {
            nap_ms(10);
            continue;
        }
        next = now + every;
        const char *av[] = {"EVAL", RENEW_LUA, "2", klease, kadopt, m->token, ttl};
        redisReply *r = cmd(m->cl, klease, 7, av, NULL);
        if (is_err(r) || r->type != REDIS_REPLY_INTEGER) {
            char msg[192];
            snprintf(msg, sizeof msg, "renewing the lease: %s", why(m->cl, r));
            set_err(m, m->lease_err, &m->lease_up, msg);
            if (r)
                freeReplyObject(r);
            next = now + (every < RETRY_NS ? every : RETRY_NS);
            since = now; /* unsure what Redis keeps: settle again */
            continue;
        }
        long long v = r->integer;
        if (v == 2 || rds_reconnects(m->cl) != reconnects) { /* lost our lease, or another Redis */
            since = now;
            reconnects = rds_reconnects(m->cl);
        }
        freeReplyObject(r);
        if (v == -1) {
            set_fatal(m, "node ID %u is in use (lease held by another daemon)", (unsigned)m->o.node);
            break;
        }
        if (v == -2) {
            const char *ga[] = {"GET", kadopt};
            redisReply *a = cmd(m->cl, kadopt, 2, ga, NULL);
            uint64_t by = 0;
            if (a && a->type == REDIS_REPLY_STRING && parse_u64(a->str, a->len, &by) == 0 && by &&
                by <= SHMREG_NODE_MAX && by != m->o.node)
                atomic_store(&m->adopted_by, (uint32_t)by);
            if (a)
                freeReplyObject(a);
            set_fatal(m, "node %u was adopted by node %llu (its lease had lapsed, or an operator asked): its "
                         "calls now belong to that node; recreate this registry (empty) before starting again",
                      (unsigned)m->o.node, (unsigned long long)by);
            break;
        }
        if (v == 2)
            sync_log("lease of node %u had lapsed (Redis lost it, or it was not renewed in time): taken again",
                 (unsigned)m->o.node);
        join_nodes(m->cl, m->o.node); /* each time: a Redis that restarted lost the set */
        /* the peers */
        const char *sa[] = {"SMEMBERS", "shmreg:nodes"};
        r = cmd(m->cl, "shmreg:nodes", 2, sa, NULL);
        if (is_err(r) || r->type != REDIS_REPLY_ARRAY) {
            char msg[192];
            snprintf(msg, sizeof msg, "reading shmreg:nodes: %s", why(m->cl, r));
            set_err(m, m->lease_err, &m->lease_up, msg);
            if (r)
                freeReplyObject(r);
            continue;
        }
        peer_info info[MAX_PEERS];
        unsigned n = 0;
        int failed = 0;
        for (size_t i = 0; i < r->elements && n < MAX_PEERS && !failed; i++) {
            uint64_t node;
            const redisReply *e = r->element[i];
            if (e->type != REDIS_REPLY_STRING || parse_u64(e->str, e->len, &node) != 0 || node == 0 ||
                node > SHMREG_NODE_MAX || node == m->o.node)
                continue;
            char kl[48], ka[48];
            key_of(kl, sizeof kl, (uint32_t)node, "lease");
            key_of(ka, sizeof ka, (uint32_t)node, "adopted");
            const char *c1[] = {"EXISTS", kl}, *c2[] = {"GET", ka};
            size_t l1[] = {6, strlen(kl)}, l2[] = {3, strlen(ka)};
            const char *const *cv[] = {c1, c2};
            const size_t *cl[] = {l1, l2};
            int argc[] = {2, 2};
            redisReply *out[2];
            if (rds_pipeline(m->cl, kl, strlen(kl), 2, argc, cv, cl, 0, out) != 0) {
                char msg[192];
                snprintf(msg, sizeof msg, "reading leases: %s", rds_error(m->cl));
                set_err(m, m->lease_err, &m->lease_up, msg);
                failed = 1;
                break;
            }
            uint64_t by = 0;
            if (out[1] && out[1]->type == REDIS_REPLY_STRING)
                parse_u64(out[1]->str, out[1]->len, &by);
            info[n++] = (peer_info){(uint32_t)node,
                                    out[0] && out[0]->type == REDIS_REPLY_INTEGER && out[0]->integer == 1,
                                    (uint32_t)by};
            for (int k = 0; k < 2; k++)
                if (out[k])
                    freeReplyObject(out[k]);
        }
        freeReplyObject(r);
        if (failed)
            continue;
        pthread_mutex_lock(&m->mu);
        memcpy(m->info, info, n * sizeof *info);
        m->ninfo = n;
        m->lease_up = 1;
        m->settled = now - since >= m->o.lease_ms * 1000000ull;
        pthread_mutex_unlock(&m->mu);
    }
    return NULL;
}

/* ------------------------------------------------------------ start, stop */

static int own_live(shmreg *h, uint32_t node, uint64_t *n)
{
    uint64_t cur = 0;
    *n = 0;
    for (int done = 0; !done;) {
        shmreg_read_begin(h);
        for (unsigned k = 0; k < 64; k++) {
            shmreg_session s;
            int r = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s);
            if (r == SHMREG_ENOENT) {
                done = 1;
                break;
            }
            if (r) {
                shmreg_read_end(h);
                return -1;
            }
            *n += s.owner_node == node;
        }
        shmreg_read_end(h);
    }
    return 0;
}

static void free_mirror(mirror *m)
{
    if (m->hi)
        shmreg_close(m->hi);
    if (m->cp)
        rds_close(m->cp);
    if (m->ci)
        rds_close(m->ci);
    if (m->cl)
        rds_close(m->cl);
    if (m->sink) {
        free(m->sink->arena);
        free(m->sink->args);
        free(m->sink->argc);
        free(m->sink->pv);
        free(m->sink->pl);
        free(m->sink);
    }
    pthread_mutex_destroy(&m->mu);
    free(m);
}

int mirror_start(const mirror_opts *o, shmreg *h, mirror **out, char *err, size_t errlen)
{
    mirror *m = calloc(1, sizeof *m);
    if (m == NULL) {
        snprintf(err, errlen, "out of memory");
        return 3;
    }
    pthread_mutex_init(&m->mu, NULL);
    m->o = *o;
    m->h = h;
    m->push_up = m->import_up = m->lease_up = 1;
    for (unsigned i = 0; i < o->nurls && i < 16; i++) {
        snprintf(m->urlbuf[i], sizeof m->urlbuf[i], "%s", o->urls[i]);
        m->url[i] = m->urlbuf[i];
    }
    m->o.urls = m->url;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errlen, "no random bytes for the lease token: %s", strerror(errno));
        free_mirror(m);
        return 3;
    }
    shmreg_stats hs;
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    if (shmreg_stat(h, &hs) != 0)
        memset(&hs, 0, sizeof hs);
    int tl = snprintf(m->token, sizeof m->token, "%.63s:%llu:%u/", host,
                      (unsigned long long)hs.created_ns, (unsigned)o->node);
    m->idlen = (size_t)tl;
    for (unsigned i = 0; i < sizeof rnd; i++)
        snprintf(m->token + tl + 2 * i, 3, "%02x", rnd[i]);
    char e[256];
    if (!(m->cp = rds_open(m->url, o->nurls, o->timeout_ms, e, sizeof e)) ||
        !(m->ci = rds_open(m->url, o->nurls, o->timeout_ms, e, sizeof e)) ||
        !(m->cl = rds_open(m->url, o->nurls, o->timeout_ms, e, sizeof e))) {
        snprintf(err, errlen, "--redis: %s", e);
        free_mirror(m);
        return 2;
    }
    if (shmreg_open(o->registry, NULL, &m->hi) != 0) {
        snprintf(err, errlen, "cannot open registry %s: %s", o->registry, shmreg_errmsg());
        free_mirror(m);
        return 3;
    }
    rsink *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        free_mirror(m);
        return 3;
    }
    m->sink = r;
    r->m = m;
    key_of(r->kids, sizeof r->kids, o->node, "ids");
    key_of(r->klog, sizeof r->klog, o->node, "log");
    key_of(r->tagfmt, sizeof r->tagfmt, o->node, "s:");
    r->s.name = "redis";
    r->s.begin = r_begin;
    r->s.put = r_put;
    r->s.del = r_del;
    r->s.prune = r_prune;
    r->s.commit = r_commit;
    r->s.abort = r_abort;
    r->s.sync = r_sync;
    r->s.stored = r_stored;
    r->s.close = r_close;
    r->s.probe = r_probe;

    /* A previous incarnation adopted by another node; then the lease. */
    char kadopt[48], klease[48], me[16], ttl[24];
    key_of(kadopt, sizeof kadopt, o->node, "adopted");
    key_of(klease, sizeof klease, o->node, "lease");
    snprintf(me, sizeof me, "%u", (unsigned)o->node);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)o->lease_ms);
    const char *ga[] = {"GET", kadopt};
    redisReply *rep = cmd(m->cl, kadopt, 2, ga, NULL);
    if (rep == NULL) {
        sync_log("Redis does not answer (%s): going on; the lease is taken when it does", rds_error(m->cl));
    } else {
        if (rep->type == REDIS_REPLY_STRING) {
            uint64_t own;
            if (own_live(h, o->node, &own) != 0) {
                snprintf(err, errlen, "reading the registry: %s", shmreg_errmsg());
                freeReplyObject(rep);
                free_mirror(m);
                return 3;
            }
            if (own) {
                uint64_t by = 0, n = 0;
                if (parse_u64(rep->str, rep->len, &by) == 0 && by && by <= SHMREG_NODE_MAX &&
                    by != o->node && shmreg_node_cede(h, (uint32_t)by, &n) == 0)
                    sync_log("%llu sessions handed to node %llu as foreign copies: this node's workers can "
                             "no longer change them", (unsigned long long)n, (unsigned long long)by);
                snprintf(err, errlen, "node %u was adopted by node %.16s: its calls now belong to that "
                         "node; this registry still held %llu of them: recreate it (empty) before "
                         "starting shmreg-sync again", (unsigned)o->node, rep->str, (unsigned long long)own);
                freeReplyObject(rep);
                free_mirror(m);
                return 3;
            }
            const char *da[] = {"DEL", kadopt};
            redisReply *d = cmd(m->cl, kadopt, 2, da, NULL);
            if (d)
                freeReplyObject(d);
            sync_log("node %u had been adopted by node %.16s; this registry holds none of its calls: "
                 "joining again", (unsigned)o->node, rep->str);
        }
        freeReplyObject(rep);
        const char *sa[] = {"SET", klease, m->token, "NX", "PX", ttl};
        rep = cmd(m->cl, klease, 6, sa, NULL);
        int clash = 0;
        if (rep && rep->type == REDIS_REPLY_NIL) {
            freeReplyObject(rep);
            const char *gl[] = {"GET", klease};
            rep = cmd(m->cl, klease, 2, gl, NULL);
            int mine = rep && rep->type == REDIS_REPLY_STRING && rep->len > m->idlen &&
                       memcmp(rep->str, m->token, m->idlen) == 0;
            if (rep)
                freeReplyObject(rep);
            rep = NULL;
            if (mine) { /* our previous daemon's: ours now */
                const char *ta[] = {"SET", klease, m->token, "PX", ttl};
                rep = cmd(m->cl, klease, 5, ta, NULL);
                sync_log("lease of node %u left by this registry's previous daemon: taken over", (unsigned)o->node);
            } else
                clash = 1;
        }
        if (clash) {
            snprintf(err, errlen, "node ID %u is in use (lease held by another daemon)", (unsigned)o->node);
            free_mirror(m);
            return 3;
        }
        if (is_err(rep))
            sync_log("taking the lease: %s (going on; retried)", why(m->cl, rep));
        if (rep)
            freeReplyObject(rep);
        const char *na[] = {"SADD", "shmreg:nodes", me};
        rep = cmd(m->cl, "shmreg:nodes", 3, na, NULL);
        if (rep)
            freeReplyObject(rep);
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to the main thread */
    m->have_lease = pthread_create(&m->lease_t, NULL, lease_keeper, m) == 0;
    m->have_imp = pthread_create(&m->imp_t, NULL, importer, m) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!m->have_lease || !m->have_imp) {
        snprintf(err, errlen, "cannot start the mirror's threads");
        mirror_stop(m);
        return 3;
    }
    sync_log("mirroring node %u through %s (lease %llu ms%s)", (unsigned)o->node, m->url[0],
         (unsigned long long)o->lease_ms, o->no_adopt ? ", no automatic adoption" : "");
    *out = m;
    return 0;
}

void mirror_stop(mirror *m)
{
    atomic_store(&m->stop, 1);
    if (m->have_imp)
        pthread_join(m->imp_t, NULL);
    if (m->have_lease)
        pthread_join(m->lease_t, NULL);
    free_mirror(m);
}
