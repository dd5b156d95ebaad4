/*
 * shmreg-redis — the Redis client of shmreg-sync: one synchronous call,
 * rds_command() or rds_pipeline(), whatever stands behind the URLs: one
 * plain Redis (TCP or a unix socket), a master found through Redis
 * Sentinel, or a Redis Cluster.
 *
 * How it works, and why. hiredis (0.14, what Debian ships) speaks the
 * protocol and nothing more: one connection, no cluster, no sentinel.
 * This file adds the routing a daemon needs and no more. The daemon is
 * synchronous (one thread writes a batch, then waits for it), so the
 * client is too: blocking hiredis contexts, each connect and each
 * command bounded by timeout_ms (redisConnectWithTimeout +
 * redisSetTimeout), so nothing ever waits forever.
 *
 * Nodes: a table of at most RDS_MAX_NODES host:port (or unix path)
 * entries, each with its hiredis context, connected lazily on first use
 * and dropped on any I/O error (a half-read pipeline leaves a context
 * that cannot be trusted). The first connection asks CLUSTER SLOTS: an
 * error "cluster support disabled" means plain Redis, an array is the
 * cluster's slot map (16384 one-byte node indices, the master of each
 * slot). A key is routed by its slot (CRC16 mod 16384 of the key, or of
 * its {hash tag}); a command without a key goes to any node.
 *
 * The cluster moves under us, and the replies say so: MOVED (the slot
 * has a new owner: fix that slot, then re-read the whole map from the new
 * owner, since a failover or a resharding rarely moves one slot alone),
 * ASK (one key is already on the importing node: ASKING, then the
 * command there, the map unchanged), TRYAGAIN / CLUSTERDOWN / LOADING /
 * READONLY (wait a little and try again; READONLY also means a sentinel
 * failover made our master a replica, so the topology is learnt again).
 * A connection that fails marks the topology stale: the next try learns
 * it again, from the nodes we knew and then the seeds (for sentinel:
 * SENTINEL get-master-addr-by-name on each sentinel in turn). Tries are
 * bounded (RDS_TRIES failures with short sleeps, RDS_REDIRECTS
 * redirects), so a call always ends: with the reply, or NULL and a
 * reason in rds_error().
 *
 * Pipelines: commands on one slot (one hash tag) are written together
 * and their replies read together, one round trip; atomic ones inside
 * MULTI/EXEC. A redirect of a transaction means none of it ran (Redis
 * aborts the EXEC), so it is sent again whole; without MULTI only the
 * redirected commands are sent again, since the others already ran.
 *
 * What it does not do: reading from replicas, pub/sub, TLS, AUTH, the
 * RESP3 protocol. One rds serves one thread; no global state, so several
 * may live in one process. No allocation per command beyond hiredis's own.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shmreg-redis.h"

#define RDS_SLOTS     16384
#define RDS_MAX_NODES 64
#define RDS_MAX_SEEDS 16
#define RDS_NO_NODE   0xff
#define RDS_TRIES     5   /* failures (connect, I/O, TRYAGAIN...) before giving up */
#define RDS_REDIRECTS 16  /* MOVED/ASK followed in one call at most */
#define RDS_HOST      128 /* a host name, an address or a unix socket path */

typedef struct rds_node {
    char host[RDS_HOST];
    int port;            /* -1: host is a unix socket path */
    redisContext *ctx;   /* NULL: not connected */
} rds_node;

typedef struct rds_seed {
    char host[RDS_HOST];
    int port;
} rds_seed;

struct rds {
    struct timeval tv;
    unsigned timeout_ms;
    int sentinel;              /* the seeds are sentinels */
    char master_name[128];
    unsigned nseeds;
    rds_seed seed[RDS_MAX_SEEDS];
    int cluster;               /* -1 not known yet, 0 plain (or sentinel), 1 cluster */
    int topo_ok;               /* the map (or the master) is believed current */
    int master;                /* plain / sentinel: the node index */
    unsigned nnodes;
    rds_node node[RDS_MAX_NODES];
    uint64_t redirects, reconnects;
    char err[256];
    unsigned char slot_node[RDS_SLOTS]; /* cluster: the master of each slot */
};

/* ------------------------------------------------------------ slots */

static const uint16_t crc16tab[256] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7, 0x8108, 0x9129, 0xa14a,
    0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef, 0x1231, 0x0210, 0x3273, 0x2252, 0x52b5, 0x4294,
    0x72f7, 0x62d6, 0x9339, 0x8318, 0xb37b, 0xa35a, 0xd3bd, 0xc39c, 0xf3ff, 0xe3de, 0x2462,
    0x3443, 0x0420, 0x1401, 0x64e6, 0x74c7, 0x44a4, 0x5485, 0xa56a, 0xb54b, 0x8528, 0x9509,
    0xe5ee, 0xf5cf, 0xc5ac, 0xd58d, 0x3653, 0x2672, 0x1611, 0x0630, 0x76d7, 0x66f6, 0x5695,
    0x46b4, 0xb75b, 0xa77a, 0x9719, 0x8738, 0xf7df, 0xe7fe, 0xd79d, 0xc7bc, 0x48c4, 0x58e5,
    0x6886, 0x78a7, 0x0840, 0x1861, 0x2802, 0x3823, 0xc9cc, 0xd9ed, 0xe98e, 0xf9af, 0x8948,
    0x9969, 0xa90a, 0xb92b, 0x5af5, 0x4ad4, 0x7ab7, 0x6a96, 0x1a71, 0x0a50, 0x3a33, 0x2a12,
    0xdbfd, 0xcbdc, 0xfbbf, 0xeb9e, 0x9b79, 0x8b58, 0xbb3b, 0xab1a, 0x6ca6, 0x7c87, 0x4ce4,
    0x5cc5, 0x2c22, 0x3c03, 0x0c60, 0x1c41, 0xedae, 0xfd8f, 0xcdec, 0xddcd, 0xad2a, 0xbd0b,
    0x8d68, 0x9d49, 0x7e97, 0x6eb6, 0x5ed5, 0x4ef4, 0x3e13, 0x2e32, 0x1e51, 0x0e70, 0xff9f,
    0xefbe, 0xdfdd, 0xcffc, 0xbf1b, 0xaf3a, 0x9f59, 0x8f78, 0x9188, 0x81a9, 0xb1ca, 0xa1eb,
    0xd10c, 0xc12d, 0xf14e, 0xe16f, 0x1080, 0x00a1, 0x30c2, 0x20e3, 0x5004, 0x4025, 0x7046,
    0x6067, 0x83b9, 0x9398, 0xa3fb, 0xb3da, 0xc33d, 0xd31c, 0xe37f, 0xf35e, 0x02b1, 0x1290,
    0x22f3, 0x32d2, 0x4235, 0x5214, 0x6277, 0x7256, 0xb5ea, 0xa5cb, 0x95a8, 0x8589, 0xf56e,
    0xe54f, 0xd52c, 0xc50d, 0x34e2, 0x24c3, 0x14a0, 0x0481, 0x7466, 0x6447, 0x5424, 0x4405,
    0xa7db, 0xb7fa, 0x8799, 0x97b8, 0xe75f, 0xf77e, 0xc71d, 0xd73c, 0x26d3, 0x36f2, 0x0691,
    0x16b0, 0x6657, 0x7676, 0x4615, 0x5634, 0xd94c, 0xc96d, 0xf90e, 0xe92f, 0x99c8, 0x89e9,
    0xb98a, 0xa9ab, 0x5844, 0x4865, 0x7806, 0x6827, 0x18c0, 0x08e1, 0x3882, 0x28a3, 0xcb7d,
    0xdb5c, 0xeb3f, 0xfb1e, 0x8bf9, 0x9bd8, 0xabbb, 0xbb9a, 0x4a75, 0x5a54, 0x6a37, 0x7a16,
    0x0af1, 0x1ad0, 0x2ab3, 0x3a92, 0xfd2e, 0xed0f, 0xdd6c, 0xcd4d, 0xbdaa, 0xad8b, 0x9de8,
    0x8dc9, 0x7c26, 0x6c07, 0x5c64, 0x4c45, 0x3ca2, 0x2c83, 0x1ce0, 0x0cc1, 0xef1f, 0xff3e,
    0xcf5d, 0xdf7c, 0xaf9b, 0xbfba, 0x8fd9, 0x9ff8, 0x6e17, 0x7e36, 0x4e55, 0x5e74, 0x2e93,
    0x3eb2, 0x0ed1, 0x1ef0,
};

static uint16_t crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++)
        crc = (uint16_t)((crc << 8) ^ crc16tab[((crc >> 8) ^ (unsigned char)buf[i]) & 0xff]);
    return crc;
}

unsigned rds_slot(const char *key, size_t len)
{
    /* The tag is between the first '{' and the first '}' after it, if
     * that is not empty; otherwise the whole key. */
    const char *open = len ? memchr(key, '{', len) : NULL;
    if (open) {
        size_t s = (size_t)(open - key) + 1;
        const char *close = memchr(key + s, '}', len - s);
        if (close && close > key + s)
            return crc16(key + s, (size_t)(close - (key + s))) & (RDS_SLOTS - 1);
    }
    return crc16(key, len) & (RDS_SLOTS - 1);
}

/* ------------------------------------------------------------ small things */

__attribute__((format(printf, 2, 3)))
static void seterr(rds *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* The pause after failure number `fail` (1...): 25, 50, 100, 200 ms, at
 * most timeout_ms, so all of a call stays within a few timeouts. */
static void backoff(const rds *c, int fail)
{
    unsigned ms = 25u << (fail > 4 ? 3 : fail - 1);
    sleep_ms(ms < c->timeout_ms ? ms : c->timeout_ms);
}

static const char *node_name(const rds_node *n, char *buf, size_t len)
{
    if (n->port < 0)
        snprintf(buf, len, "unix:%s", n->host);
    else
        snprintf(buf, len, "%s:%d", n->host, n->port);
    return buf;
}

static int is_err(const redisReply *r, const char *prefix)
{
    size_t n = strlen(prefix);
    return r && r->type == REDIS_REPLY_ERROR && r->len >= n && memcmp(r->str, prefix, n) == 0 &&
           (r->len == n || r->str[n] == ' ');
}

/* ------------------------------------------------------------ nodes */

static void node_drop(rds *c, int i)
{
    if (c->node[i].ctx) {
        redisFree(c->node[i].ctx);
        c->node[i].ctx = NULL;
    }
}

/* The index of host:port, added if new. When the table is full, a node
 * that serves no slot (and is not the master) gives its place up.
 * -1: no place (every node serves a slot). */
static int node_add(rds *c, const char *host, size_t hostlen, int port)
{
    if (hostlen >= RDS_HOST)
        return -1;
    for (unsigned i = 0; i < c->nnodes; i++)
        if (c->node[i].port == port && strlen(c->node[i].host) == hostlen &&
            memcmp(c->node[i].host, host, hostlen) == 0)
            return (int)i;
    int at = -1;
    if (c->nnodes < RDS_MAX_NODES) {
        at = (int)c->nnodes++;
    } else {
        unsigned char used[RDS_MAX_NODES] = {0};
        for (unsigned s = 0; s < RDS_SLOTS; s++)
            if (c->slot_node[s] != RDS_NO_NODE)
                used[c->slot_node[s]] = 1;
        if (c->master >= 0)
            used[c->master] = 1;
        for (int i = 0; i < RDS_MAX_NODES && at < 0; i++)
            if (!used[i])
                at = i;
        if (at < 0)
            return -1;
        node_drop(c, at);
    }
    memcpy(c->node[at].host, host, hostlen);
    c->node[at].host[hostlen] = 0;
    c->node[at].port = port;
    c->node[at].ctx = NULL;
    return at;
}

static redisContext *connect_to(rds *c, const char *host, int port)
{
    redisContext *x = port < 0 ? redisConnectUnixWithTimeout(host, c->tv)
                               : redisConnectWithTimeout(host, port, c->tv);
    if (!x) {
        seterr(c, "connect %s:%d: out of memory", host, port);
        return NULL;
    }
    if (x->err || redisSetTimeout(x, c->tv) != REDIS_OK) {
        if (port < 0)
            seterr(c, "connect unix:%s: %s", host, x->err ? x->errstr : "cannot set the timeout");
        else
            seterr(c, "connect %s:%d: %s", host, port, x->err ? x->errstr : "cannot set the timeout");
        redisFree(x);
        return NULL;
    }
    return x;
}

/* Node i's context, connected now if it is not. */
static redisContext *node_ctx(rds *c, int i)
{
    rds_node *n = &c->node[i];
    if (!n->ctx) {
        n->ctx = connect_to(c, n->host, n->port);
        if (n->ctx)
            c->reconnects++;
    }
    return n->ctx;
}

/* ------------------------------------------------------------ topology */

/* Fill the slot map from a CLUSTER SLOTS reply got from node q. 0 when
 * at least one slot has a master. */
static int parse_slots(rds *c, const redisReply *r, int q)
{
    unsigned char map[RDS_SLOTS];
    memset(map, RDS_NO_NODE, sizeof map);
    int any = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER || e->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        const redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        if (lo < 0 || hi >= RDS_SLOTS || lo > hi)
            continue;
        const char *host = m->element[0]->str;
        size_t hlen = m->element[0]->len;
        if (hlen == 1 && host[0] == '?')
            continue; /* endpoint unknown to that node */
        if (hlen == 0) { /* "the host you asked" */
            host = c->node[q].host;
            hlen = strlen(host);
        }
        int ni = node_add(c, host, hlen, (int)m->element[1]->integer);
        if (ni < 0)
            continue;
        memset(map + lo, ni, (size_t)(hi - lo + 1));
        any = 1;
    }
    if (!any)
        return -1;
    memcpy(c->slot_node, map, sizeof map);
    return 0;
}

/* Ask node i for the slot map. 1: it is a cluster and the map is read,
 * 0: plain Redis, -1: no answer worth having (the reason in err). */
static int ask_slots(rds *c, int i)
{
    char nm[RDS_HOST + 16];
    redisContext *x = node_ctx(c, i);
    if (!x)
        return -1;
    redisReply *r = redisCommand(x, "CLUSTER SLOTS");
    if (!r) {
        seterr(c, "%s: CLUSTER SLOTS: %s", node_name(&c->node[i], nm, sizeof nm), x->errstr);
        node_drop(c, i);
        return -1;
    }
    int rc = -1;
    if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled")) {
        rc = 0;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        if (parse_slots(c, r, i) == 0)
            rc = 1;
        else
            seterr(c, "%s: CLUSTER SLOTS: no slot is served", node_name(&c->node[i], nm, sizeof nm));
    } else {
        seterr(c, "%s: CLUSTER SLOTS: %.*s", node_name(&c->node[i], nm, sizeof nm),
               r->type == REDIS_REPLY_ERROR ? (int)r->len : 14,
               r->type == REDIS_REPLY_ERROR ? r->str : "unknown reply");
    }
    freeReplyObject(r);
    return rc;
}

/* Sentinel: ask each sentinel in turn where the master is. */
static int learn_sentinel(rds *c)
{
    for (unsigned s = 0; s < c->nseeds; s++) {
        redisContext *x = connect_to(c, c->seed[s].host, c->seed[s].port);
        if (!x)
            continue;
        redisReply *r = redisCommand(x, "SENTINEL get-master-addr-by-name %s", c->master_name);
        int ni = -1;
        if (!r)
            seterr(c, "sentinel %s:%d: %s", c->seed[s].host, c->seed[s].port, x->errstr);
        else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STRING && r->element[1]->type == REDIS_REPLY_STRING)
            ni = node_add(c, r->element[0]->str, r->element[0]->len, atoi(r->element[1]->str));
        else
            seterr(c, "sentinel %s:%d: no master named %s", c->seed[s].host, c->seed[s].port,
                   c->master_name);
        if (r)
            freeReplyObject(r);
        redisFree(x);
        if (ni >= 0) {
            if (c->master != ni && c->master >= 0)
                node_drop(c, c->master);
            c->master = ni;
            c->cluster = 0;
            c->topo_ok = 1;
            return 0;
        }
    }
    return -1;
}

/* Learn where to send commands: node `first` (if >= 0), then the nodes
 * we know, then the seeds. 0 ok; -1 with the last reason in err. */
static int learn(rds *c, int first)
{
    if (c->sentinel)
        return learn_sentinel(c);
    int tried[RDS_MAX_NODES] = {0};
    int order[RDS_MAX_NODES + RDS_MAX_SEEDS + 1], n = 0;
    if (first >= 0)
        order[n++] = first;
    if (c->cluster == 1) {
        /* the masters of the map we have first: a node that left it
         * (failed over, removed) may be gone, and cost a timeout */
        unsigned char serves[RDS_MAX_NODES] = {0};
        for (unsigned s = 0; s < RDS_SLOTS; s++)
            if (c->slot_node[s] != RDS_NO_NODE)
                serves[c->slot_node[s]] = 1;
        for (int pass = 1; pass >= 0; pass--)
            for (unsigned i = 0; i < c->nnodes; i++)
                if (serves[i] == pass)
                    order[n++] = (int)i;
    }
    for (unsigned s = 0; s < c->nseeds; s++) {
        int ni = node_add(c, c->seed[s].host, strlen(c->seed[s].host), c->seed[s].port);
        if (ni >= 0)
            order[n++] = ni;
    }
    for (int k = 0; k < n; k++) {
        int i = order[k];
        if (tried[i])
            continue;
        tried[i] = 1;
        int rc = ask_slots(c, i);
        if (rc == 1) {
            c->cluster = 1;
            c->topo_ok = 1;
            return 0;
        }
        if (rc == 0 && c->cluster != 1) { /* a node of a cluster never says this */
            c->cluster = 0;
            c->master = i;
            c->topo_ok = 1;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------ commands */

/* Where a redirect points: kind 'M' (MOVED) or 'A' (ASK), the slot, and
 * the node index (added if new). 0, or -1 if `r` is no redirect. */
static int redirect(rds *c, const redisReply *r, int from, int *kind, int *slot, int *node)
{
    if (is_err(r, "MOVED"))
        *kind = 'M';
    else if (is_err(r, "ASK"))
        *kind = 'A';
    else
        return -1;
    /* "MOVED 3999 127.0.0.1:6381"; the host may be empty (the same one) */
    const char *p = strchr(r->str, ' ');
    char *end;
    if (!p)
        return -1;
    long s = strtol(p + 1, &end, 10);
    if (end == p + 1 || *end != ' ' || s < 0 || s >= RDS_SLOTS)
        return -1;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    int port = atoi(colon + 1);
    const char *host = addr;
    size_t hlen = (size_t)(colon - addr);
    if (hlen == 0) {
        host = c->node[from].host;
        hlen = strlen(host);
    }
    int ni = node_add(c, host, hlen, port);
    if (ni < 0)
        return -1;
    *slot = (int)s;
    *node = ni;
    return 0;
}

/* Errors after which the same command may well succeed a moment later. */
static int retryable(const redisReply *r)
{
    return is_err(r, "TRYAGAIN") || is_err(r, "CLUSTERDOWN") || is_err(r, "LOADING") ||
           is_err(r, "READONLY") || is_err(r, "MASTERDOWN");
}

enum { SENT_OK, SENT_IO, SENT_REDIRECT, SENT_RETRY, SENT_FAIL };

typedef struct batch {
    int ncmd;
    const int *argc;
    const char *const *const *argv;
    const size_t *const *argvlen;
    int atomic;
    redisReply **out;
    /* what the replies asked for */
    int kind, slot, node;
    redisReply *why; /* the redirect or retryable reply, for the message */
} batch;

static void note_why(batch *b, redisReply *r)
{
    if (b->why)
        freeReplyObject(b->why);
    b->why = r;
}

/* Send the commands of b still to do (out[i] == NULL) on node ni, with
 * ASKING before them if asking, and read their replies. */
static int send_batch(rds *c, int ni, int asking, batch *b)
{
    char nm[RDS_HOST + 16];
    redisContext *x = c->node[ni].ctx;
    static const char *const asking_argv[] = {"ASKING"}, *const multi_argv[] = {"MULTI"},
                             *const exec_argv[] = {"EXEC"};
    static const size_t asking_len[] = {6}, multi_len[] = {5}, exec_len[] = {4};
    int ok = REDIS_OK;

    if (b->atomic) {
        if (asking)
            ok |= redisAppendCommandArgv(x, 1, (const char **)asking_argv, asking_len);
        ok |= redisAppendCommandArgv(x, 1, (const char **)multi_argv, multi_len);
    }
    for (int i = 0; i < b->ncmd; i++) {
        if (b->out[i])
            continue;
        if (asking && !b->atomic)
            ok |= redisAppendCommandArgv(x, 1, (const char **)asking_argv, asking_len);
        ok |= redisAppendCommandArgv(x, b->argc[i], (const char **)b->argv[i], b->argvlen[i]);
    }
    if (b->atomic)
        ok |= redisAppendCommandArgv(x, 1, (const char **)exec_argv, exec_len);
    if (ok != REDIS_OK) {
        seterr(c, "out of memory");
        node_drop(c, ni);
        return SENT_FAIL;
    }

    /* Read every reply, even after a redirect: the context stays usable. */
    int status = SENT_OK;
    redisReply *r = NULL, *abort_reason = NULL; /* the first command refused while queued */
#define READ_ONE()                                                                           \
    do {                                                                                     \
        void *v_ = NULL;                                                                     \
        if (redisGetReply(x, &v_) != REDIS_OK || !v_) {                                      \
            seterr(c, "%s: %s", node_name(&c->node[ni], nm, sizeof nm),                      \
                   x->err ? x->errstr : "no reply");                                         \
            goto io;                                                                         \
        }                                                                                    \
        r = v_;                                                                              \
    } while (0)

    if (b->atomic) {
        if (asking) {
            READ_ONE();
            freeReplyObject(r);
        }
        READ_ONE(); /* MULTI: +OK */
        freeReplyObject(r);
        for (int i = 0; i < b->ncmd; i++) {
            READ_ONE(); /* +QUEUED, or why it was refused */
            if (r->type != REDIS_REPLY_ERROR) {
                freeReplyObject(r);
            } else if (status == SENT_OK && redirect(c, r, ni, &b->kind, &b->slot, &b->node) == 0) {
                status = SENT_REDIRECT;
                note_why(b, r);
            } else if (status == SENT_OK && retryable(r)) {
                status = SENT_RETRY;
                note_why(b, r);
            } else if (!abort_reason) {
                abort_reason = r;
            } else {
                freeReplyObject(r);
            }
        }
        READ_ONE(); /* EXEC */
        if (status == SENT_OK && r->type == REDIS_REPLY_ERROR) {
            if (redirect(c, r, ni, &b->kind, &b->slot, &b->node) == 0) {
                status = SENT_REDIRECT;
                note_why(b, r);
                r = NULL;
            } else if (retryable(r)) {
                status = SENT_RETRY;
                note_why(b, r);
                r = NULL;
            }
        }
        if (status == SENT_OK) {
            if (r->type == REDIS_REPLY_ARRAY && r->elements == (size_t)b->ncmd) {
                for (int i = 0; i < b->ncmd; i++) {
                    b->out[i] = r->element[i];
                    r->element[i] = NULL;
                }
                r->elements = 0;
            } else {
                seterr(c, "%s: EXEC: %.*s%s%.*s", node_name(&c->node[ni], nm, sizeof nm),
                       r->type == REDIS_REPLY_ERROR ? (int)r->len : 16,
                       r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply",
                       abort_reason ? ": " : "", abort_reason ? (int)abort_reason->len : 0,
                       abort_reason ? abort_reason->str : "");
                status = SENT_FAIL;
            }
        }
        if (r)
            freeReplyObject(r);
        if (abort_reason)
            freeReplyObject(abort_reason);
        return status;
    }

    for (int i = 0; i < b->ncmd; i++) {
        if (b->out[i])
            continue;
        if (asking) {
            READ_ONE();
            freeReplyObject(r);
        }
        READ_ONE();
        int k, s, n;
        if (r->type == REDIS_REPLY_ERROR && redirect(c, r, ni, &k, &s, &n) == 0) {
            if (status != SENT_REDIRECT) {
                b->kind = k, b->slot = s, b->node = n;
                note_why(b, r);
            } else {
                freeReplyObject(r);
            }
            status = SENT_REDIRECT;
        } else if (retryable(r)) {
            if (status == SENT_OK) {
                status = SENT_RETRY;
                note_why(b, r);
            } else {
                freeReplyObject(r);
            }
        } else {
            b->out[i] = r; /* a result, error replies included */
            continue;
        }
        /* Redirected or to retry: out[i] stays NULL, still to do; the
         * replies after it are read all the same. */
    }
    return status;
io:
    if (abort_reason)
        freeReplyObject(abort_reason);
    node_drop(c, ni);
    return SENT_IO;
#undef READ_ONE
}

static void clear_out(batch *b)
{
    for (int i = 0; i < b->ncmd; i++)
        if (b->out[i]) {
            freeReplyObject(b->out[i]);
            b->out[i] = NULL;
        }
}

static int run(rds *c, const char *key, size_t keylen, batch *b)
{
    int slot = key ? (int)rds_slot(key, keylen) : -1;
    int fails = 0, redirects = 0, ask = -1;
    char nm[RDS_HOST + 16];
    for (int i = 0; i < b->ncmd; i++)
        b->out[i] = NULL;
    b->why = NULL;
    c->err[0] = 0;
    for (;;) {
        if (fails > 0) {
            if (fails >= RDS_TRIES)
                break;
            backoff(c, fails);
        }
        if (!c->topo_ok && learn(c, -1) != 0) {
            fails++;
            continue;
        }
        int ni = ask;
        if (ni < 0 && c->cluster == 1) {
            unsigned s = slot >= 0 ? (unsigned)slot : 0;
            for (unsigned k = 0; k < RDS_SLOTS && c->slot_node[s] == RDS_NO_NODE; k++)
                s = slot >= 0 ? s : (s + 1) % RDS_SLOTS;
            ni = c->slot_node[s] == RDS_NO_NODE ? -1 : c->slot_node[s];
            if (ni < 0)
                seterr(c, "no node serves slot %d", slot >= 0 ? slot : 0);
        } else if (ni < 0) {
            ni = c->master;
        }
        if (ni < 0 || !node_ctx(c, ni)) {
            c->topo_ok = 0;
            fails++;
            continue;
        }
        int st = send_batch(c, ni, ask >= 0, b);
        ask = -1;
        switch (st) {
        case SENT_OK:
            if (b->why)
                freeReplyObject(b->why);
            c->err[0] = 0;
            return 0;
        case SENT_FAIL:
            goto fail;
        case SENT_IO:
            c->topo_ok = 0;
            fails++;
            continue;
        case SENT_RETRY:
            seterr(c, "%s: %.*s", node_name(&c->node[ni], nm, sizeof nm), (int)b->why->len, b->why->str);
            if (is_err(b->why, "READONLY") || is_err(b->why, "CLUSTERDOWN"))
                c->topo_ok = 0; /* our master is a replica now / the map moves */
            fails++;
            continue;
        case SENT_REDIRECT:
            seterr(c, "%s: %.*s", node_name(&c->node[ni], nm, sizeof nm), (int)b->why->len, b->why->str);
            if (++redirects > RDS_REDIRECTS) {
                seterr(c, "more than %d redirects, the last: %.*s", RDS_REDIRECTS, (int)b->why->len,
                       b->why->str);
                goto fail;
            }
            c->redirects++;
            if (b->kind == 'A') {
                ask = b->node;
            } else {
                c->slot_node[b->slot] = (unsigned char)b->node;
                c->cluster = 1;
                (void)learn(c, b->node); /* the new owner knows; the one fixed slot if not */
                c->topo_ok = 1;
            }
            continue;
        }
    }
fail:
    if (b->why)
        freeReplyObject(b->why);
    b->why = NULL;
    clear_out(b);
    if (!c->err[0])
        seterr(c, "failed");
    return -1;
}

redisReply *rds_command(rds *c, const char *key, size_t keylen, int argc, const char **argv,
                        const size_t *argvlen)
{
    redisReply *out = NULL;
    const char *const *av = argv;
    const size_t *al = argvlen;
    batch b = {.ncmd = 1, .argc = &argc, .argv = &av, .argvlen = &al, .atomic = 0, .out = &out};
    return run(c, key, keylen, &b) == 0 ? out : NULL;
}

int rds_pipeline(rds *c, const char *key, size_t keylen, int ncmd, const int *argc,
                 const char *const *const *argv, const size_t *const *argvlen, int atomic,
                 redisReply **out)
{
    if (ncmd <= 0) {
        seterr(c, "empty pipeline");
        return -1;
    }
    batch b = {.ncmd = ncmd, .argc = argc, .argv = argv, .argvlen = argvlen, .atomic = atomic != 0,
               .out = out};
    return run(c, key, keylen, &b);
}

/* ------------------------------------------------------------ open, close */

/* "HOST:PORT" of len bytes into a seed; the port is needed. */
static int parse_hostport(const char *s, size_t len, rds_seed *seed)
{
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (s[i] == ':')
            colon = s + i;
    if (!colon || colon == s || (size_t)(colon - s) >= RDS_HOST)
        return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (end != s + len || end == colon + 1 || errno || port <= 0 || port > 65535)
        return -1;
    memcpy(seed->host, s, (size_t)(colon - s));
    seed->host[colon - s] = 0;
    seed->port = (int)port;
    return 0;
}

rds *rds_open(const char *const *urls, unsigned n, unsigned timeout_ms, char *err, size_t errlen)
{
    char dummy[1];
    if (!err || !errlen)
        err = dummy, errlen = sizeof dummy;
    if (n == 0 || n > RDS_MAX_SEEDS) {
        snprintf(err, errlen, "%u URLs: 1 to %d are allowed", n, RDS_MAX_SEEDS);
        return NULL;
    }
    rds *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->timeout_ms = timeout_ms ? timeout_ms : 1000;
    c->tv.tv_sec = (time_t)(c->timeout_ms / 1000);
    c->tv.tv_usec = (suseconds_t)(c->timeout_ms % 1000) * 1000;
    c->cluster = -1;
    c->master = -1;
    memset(c->slot_node, RDS_NO_NODE, sizeof c->slot_node);
    int sentinels = 0;
    for (unsigned i = 0; i < n; i++) {
        const char *u = urls[i];
        rds_seed *s = &c->seed[c->nseeds];
        if (u && strncmp(u, "redis://", 8) == 0) {
            const char *h = u + 8;
            size_t len = strlen(h);
            if (len && h[len - 1] == '/')
                len--;
            if (parse_hostport(h, len, s) != 0)
                goto bad;
        } else if (u && strncmp(u, "unix:", 5) == 0) {
            const char *p = u + 5;
            if (strncmp(p, "//", 2) == 0 && p[2] == '/')
                p += 2; /* unix:///path */
            if (p[0] != '/' || strlen(p) >= RDS_HOST)
                goto bad;
            snprintf(s->host, sizeof s->host, "%s", p);
            s->port = -1;
        } else if (u && strncmp(u, "sentinel://", 11) == 0) {
            const char *h = u + 11, *slash = strchr(h, '/');
            if (!slash || !slash[1] || strlen(slash + 1) >= sizeof c->master_name ||
                parse_hostport(h, (size_t)(slash - h), s) != 0)
                goto bad;
            if (c->master_name[0] && strcmp(c->master_name, slash + 1) != 0) {
                snprintf(err, errlen, "%s: another master name than %s", u, c->master_name);
                free(c);
                return NULL;
            }
            snprintf(c->master_name, sizeof c->master_name, "%s", slash + 1);
            sentinels++;
        } else {
            goto bad;
        }
        c->nseeds++;
        continue;
    bad:
        snprintf(err, errlen, "malformed Redis URL '%s' (redis://HOST:PORT, unix:/PATH or "
                 "sentinel://HOST:PORT/MASTER)", u ? u : "(null)");
        free(c);
        return NULL;
    }
    if (sentinels && (unsigned)sentinels != n) {
        snprintf(err, errlen, "sentinel:// URLs cannot be mixed with others");
        free(c);
        return NULL;
    }
    c->sentinel = sentinels > 0;
    /* Connect now if we can; a server that is down is tried again by the
     * next command. */
    if (learn(c, -1) != 0)
        c->topo_ok = 0;
    err[0] = 0;
    return c;
}

void rds_close(rds *c)
{
    if (!c)
        return;
    for (unsigned i = 0; i < c->nnodes; i++)
        node_drop(c, (int)i);
    free(c);
}

const char *rds_error(const rds *c) { return c->err; }
int rds_is_cluster(const rds *c) { return c->cluster == 1; }
uint64_t rds_redirects(const rds *c) { return c->redirects; }
uint64_t rds_reconnects(const rds *c) { return c->reconnects; }
