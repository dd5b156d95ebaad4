/*
 * redis_client.c — the Redis client of shmreg-sync (tools/shmreg-redis.c)
 * against real servers: a plain redis-server (TCP and a unix socket), one
 * that is down when the client opens and comes up later, one killed under
 * it, one that hangs (SIGSTOP: every wait is bounded); a master found
 * through Redis Sentinel; and a Redis Cluster of 3 masters and 3 replicas:
 * slots as CLUSTER KEYSLOT says, 200 keys through one seed, a transaction
 * on one hash tag, slots migrated by hand (MOVED after, for a command and
 * a transaction; ASK during, for commands, a pipeline split between the
 * two nodes and a transaction), and a master SIGKILLed: its replica takes
 * over and the same client finds it, the values written with WAIT still
 * there. Every reply is compared whole, as text: "+OK", ":2", "$val",
 * "-ERR ...", "(nil)", or "NULL: <rds_error>" when the call failed.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "redisutil.h"
#include "shmreg-redis.h"
#include "tap.h"
#include "testutil.h"

/* ------------------------------------------------------------ helpers */

/* A reply as text, freed: "+OK", ":2", "$val", "-ERR ...", "(nil)",
 * "*N" or "NULL: why". Valid until 8 more calls. */
static const char *show(rds *c, redisReply *r)
{
    static char ring[8][512];
    static unsigned next;
    char *o = ring[next++ % 8];
    if (!r) {
        snprintf(o, sizeof ring[0], "NULL: %s", rds_error(c));
        return o;
    }
    switch (r->type) {
    case REDIS_REPLY_STATUS: snprintf(o, sizeof ring[0], "+%s", r->str); break;
    case REDIS_REPLY_ERROR: snprintf(o, sizeof ring[0], "-%s", r->str); break;
    case REDIS_REPLY_STRING: snprintf(o, sizeof ring[0], "$%.*s", (int)r->len, r->str); break;
    case REDIS_REPLY_INTEGER: snprintf(o, sizeof ring[0], ":%lld", r->integer); break;
    case REDIS_REPLY_NIL: snprintf(o, sizeof ring[0], "(nil)"); break;
    case REDIS_REPLY_ARRAY: snprintf(o, sizeof ring[0], "*%zu", r->elements); break;
    default: snprintf(o, sizeof ring[0], "?%d", r->type);
    }
    freeReplyObject(r);
    return o;
}

/* One command of NUL-terminated words (NULL ends them), routed by key. */
static redisReply *cmd(rds *c, const char *key, ...)
{
    const char *argv[16];
    size_t len[16];
    int n = 0;
    va_list ap;
    va_start(ap, key);
    for (const char *a; n < 16 && (a = va_arg(ap, const char *));) {
        argv[n] = a;
        len[n++] = strlen(a);
    }
    va_end(ap);
    return rds_command(c, key, key ? strlen(key) : 0, n, argv, len);
}
#define CMD(c, key, ...) show(c, cmd(c, key, __VA_ARGS__, (const char *)NULL))

static rds *open1(const char *url)
{
    char err[256];
    const char *urls[] = {url};
    rds *c = rds_open(urls, 1, 1000, err, sizeof err);
    if (!c)
        bail_out("rds_open %s: %s", url, err);
    return c;
}

/* Up to 3 commands of up to 4 words, pipelined; replies as text in res. */
static int pipe3(rds *c, const char *key, int atomic, int n, const char *w[][4], const char *res[])
{
    int argc[3] = {0, 0, 0};
    const char *const *argv[3] = {NULL, NULL, NULL};
    size_t lens[3][4] = {{0}};
    const size_t *argvlen[3] = {NULL, NULL, NULL};
    redisReply *out[3] = {NULL, NULL, NULL};
    for (int i = 0; i < n; i++) {
        argc[i] = 0;
        while (argc[i] < 4 && w[i][argc[i]]) {
            lens[i][argc[i]] = strlen(w[i][argc[i]]);
            argc[i]++;
        }
        argv[i] = w[i];
        argvlen[i] = lens[i];
    }
    int rc = rds_pipeline(c, key, strlen(key), n, argc, argv, argvlen, atomic, out);
    for (int i = 0; i < n; i++)
        res[i] = out[i] ? show(c, out[i]) : "NULL";
    return rc;
}

static char scratch[512];

/* ------------------------------------------------------------ plain */

static void plain(void)
{
    redis_srv s;
    char dir[600], sock[700], url[800];
    snprintf(dir, sizeof dir, "%s/plain", scratch);
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    int port = redis_free_port(0);
    const char *extra[] = {"--unixsocket", sock, "--unixsocketperm", "700", NULL};
    if (port < 0 || redis_start(&s, port, dir, extra) != 0)
        bail_out("cannot start redis-server");
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rds *c = open1(url);

    is_str(CMD(c, "k", "SET", "k", "v1"), "+OK", "plain: SET");
    is_str(CMD(c, "k", "GET", "k"), "$v1", "plain: GET gives the value");
    is_str(CMD(c, "k", "DEL", "k"), ":1", "plain: DEL deletes one key");
    is_str(CMD(c, "k", "GET", "k"), "(nil)", "plain: GET after DEL is nil");
    is(rds_is_cluster(c), 0, "plain: not a cluster");
    is_str(CMD(c, NULL, "PING"), "+PONG", "plain: a command without a key");

    /* binary-safe: every byte value, in the key and the value */
    char bin[256];
    for (int i = 0; i < 256; i++)
        bin[i] = (char)i;
    const char *av[] = {"SET", bin, bin};
    size_t al[] = {3, 256, 256};
    is_str(show(c, rds_command(c, bin, 256, 3, av, al)), "+OK", "plain: SET of bytes 0..255");
    const char *gv[] = {"GET", bin};
    size_t gl[] = {3, 256};
    redisReply *r = rds_command(c, bin, 256, 2, gv, gl);
    ok(r && r->type == REDIS_REPLY_STRING, "plain: GET of the binary key");
    if (r) {
        is_mem(r->str, r->len, bin, 256, "plain: the 256 bytes come back as they were");
        freeReplyObject(r);
    }

    is_str(CMD(c, "n", "SET", "n", "abc"), "+OK", "plain: SET n abc");
    is_str(CMD(c, "n", "INCR", "n"), "-ERR value is not an integer or out of range",
           "plain: an error reply is passed through");
    is_str(rds_error(c), "", "plain: an error reply is no failure of the client");

    const char *res[3];
    const char *p1[][4] = {{"SET", "p", "1", NULL}, {"INCR", "p", NULL}, {"GET", "p", NULL}};
    is(pipe3(c, "p", 0, 3, p1, res), 0, "plain: pipeline");
    is_str(res[0], "+OK", "plain: pipeline reply 0");
    is_str(res[1], ":2", "plain: pipeline reply 1");
    is_str(res[2], "$2", "plain: pipeline reply 2");
    const char *p2[][4] = {{"INCR", "{t}a", NULL}, {"INCRBY", "{t}a", "10", NULL}, {"GET", "{t}a", NULL}};
    is(pipe3(c, "{t}", 1, 3, p2, res), 0, "plain: MULTI/EXEC pipeline");
    is_str(res[0], ":1", "plain: EXEC element 0");
    is_str(res[1], ":11", "plain: EXEC element 1");
    is_str(res[2], "$11", "plain: EXEC element 2");
    const char *p3[][4] = {{"INCR", "{t}a", NULL}, {"GET", NULL}, {"INCR", "{t}a", NULL}};
    is(pipe3(c, "{t}", 1, 3, p3, res), -1, "plain: a transaction with a refused command fails");
    ok(!strcmp(res[0], "NULL") && !strcmp(res[1], "NULL") && !strcmp(res[2], "NULL"),
       "plain: ... out[] all NULL");
    ok(strstr(rds_error(c), "EXECABORT") && strstr(rds_error(c), "wrong number of arguments"),
       "plain: ... and rds_error says EXECABORT and why: %s", rds_error(c));
    is_str(CMD(c, "{t}a", "GET", "{t}a"), "$11", "plain: ... nothing of it ran");
    is((long long)rds_redirects(c), 0, "plain: no redirects");
    is((long long)rds_reconnects(c), 1, "plain: one connection");
    rds_close(c);

    snprintf(url, sizeof url, "unix:%s", sock);
    c = open1(url);
    is_str(CMD(c, "k", "SET", "k", "over unix"), "+OK", "unix socket: SET");
    is_str(CMD(c, "k", "GET", "k"), "$over unix", "unix socket: GET");
    rds_close(c);

    /* a server that hangs (SIGSTOP): every wait is bounded */
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    const char *urls[] = {url};
    char err[256];
    c = rds_open(urls, 1, 100, err, sizeof err);
    is_str(CMD(c, "k", "SET", "k", "v2"), "+OK", "hung: SET before the server hangs");
    kill(s.pid, SIGSTOP);
    double t0 = test_mono_s();
    const char *got = CMD(c, "k", "GET", "k");
    double took = test_mono_s() - t0;
    ok(strncmp(got, "NULL: ", 6) == 0 && strstr(got, "Resource temporarily unavailable"),
       "hung: a command on a stopped server fails (timeout): %s", got);
    ok(took >= 0.5 && took < 2, "hung: ... after the 5 tries of 100 ms and the pauses (%.2f s)", took);
    kill(s.pid, SIGCONT);
    is_str(CMD(c, "k", "GET", "k"), "$v2", "hung: the server resumes: the next command succeeds");
    rds_close(c);

    const char *bad[] = {"redis://127.0.0.1"};
    ok(!rds_open(bad, 1, 1000, err, sizeof err) && strstr(err, "malformed"),
       "a URL without a port is refused: %s", err);
    const char *bad2[] = {"http://x:1"};
    ok(!rds_open(bad2, 1, 1000, err, sizeof err) && strstr(err, "malformed"),
       "an unknown scheme is refused");
    redis_stop(&s);
}

/* ------------------------------------------------------------ down, up */

static void down_at_open(void)
{
    redis_srv s;
    char dir[600], url[800];
    snprintf(dir, sizeof dir, "%s/down", scratch);
    int port = redis_free_port(0);
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    rds *c = open1(url);
    ok(c != NULL, "down: rds_open succeeds with the server down");
    double t0 = test_mono_s();
    const char *got = CMD(c, "k", "SET", "k", "v");
    ok(strncmp(got, "NULL: ", 6) == 0 && strstr(got, "Connection refused"),
       "down: a command fails with a reason: %s", got);
    ok(test_mono_s() - t0 < 3, "down: ... in bounded time (%.2f s)", test_mono_s() - t0);
    is((long long)rds_reconnects(c), 0, "down: no connection yet");

    if (redis_start(&s, port, dir, NULL) != 0)
        bail_out("cannot start redis-server on %d", port);
    is_str(CMD(c, "k", "SET", "k", "v"), "+OK", "down: the server is up: the next command succeeds");
    is((long long)rds_reconnects(c), 1, "down: ... on a connection made then");
    is_str(rds_error(c), "", "down: ... and rds_error is empty");

    redis_kill(&s);
    if (redis_start(&s, port, dir, NULL) != 0)
        bail_out("cannot restart redis-server on %d", port);
    is_str(CMD(c, "k", "GET", "k"), "(nil)", "down: after a SIGKILL and a restart the client reconnects");
    is((long long)rds_reconnects(c), 2, "down: ... a second connection");
    rds_close(c);
    redis_stop(&s);
}

/* ------------------------------------------------------------ cluster */

typedef struct cnode {
    char id[64], master_id[64];
    int port, master, fail, nr, lo[16], hi[16];
} cnode;

/* CLUSTER NODES as node `port` sees it. */
static int cluster_nodes(int port, cnode *nodes, int cap)
{
    static char out[16384];
    if (redis_cli(port, out, sizeof out, "CLUSTER NODES") != 0)
        return -1;
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line && n < cap;
         line = strtok_r(NULL, "\n", &save)) {
        cnode *x = &nodes[n];
        memset(x, 0, sizeof *x);
        char addr[128], flags[128], *s2 = NULL;
        int off = 0;
        if (sscanf(line, "%63s %127s %127s %63s %*s %*s %*s %*s%n", x->id, addr, flags, x->master_id,
                   &off) < 4)
            continue;
        char *colon = strchr(addr, ':');
        x->port = colon ? atoi(colon + 1) : 0;
        x->master = strstr(flags, "master") != NULL;
        x->fail = strstr(flags, "fail") != NULL && !strstr(flags, "fail?");
        for (char *w = strtok_r(line + off, " ", &s2); w && x->nr < 16; w = strtok_r(NULL, " ", &s2)) {
            if (w[0] == '[')
                continue; /* a slot being migrated */
            int lo, hi;
            if (sscanf(w, "%d-%d", &lo, &hi) == 2 || (sscanf(w, "%d", &lo) == 1 && (hi = lo, 1))) {
                x->lo[x->nr] = lo;
                x->hi[x->nr++] = hi;
            }
        }
        n++;
    }
    return n;
}

static const cnode *owner(const cnode *nodes, int n, unsigned slot)
{
    for (int i = 0; i < n; i++)
        if (nodes[i].master && !nodes[i].fail)
            for (int k = 0; k < nodes[i].nr; k++)
                if ((int)slot >= nodes[i].lo[k] && (int)slot <= nodes[i].hi[k])
                    return &nodes[i];
    return NULL;
}

/* A live master that serves slots, other than `src` (not one a failover
 * left behind, still listed as a master). */
static const cnode *other_master(const cnode *nodes, int n, const cnode *src)
{
    for (int i = 0; i < n; i++)
        if (nodes[i].master && !nodes[i].fail && nodes[i].nr > 0 && &nodes[i] != src)
            return &nodes[i];
    return NULL;
}

static redis_cluster cl;
static rds *cc;

static void cluster_slots(void)
{
    const char *keys[] = {"foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}",
                          "foo{{bar}}zap", "foo{bar}{zap}", "{}", "a{b", "b}{a", "123456789", "key:42"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char out[64];
        int rc = redis_cli(cl.node[0].port, out, sizeof out, "CLUSTER KEYSLOT %s", keys[i]);
        is(rc == 0 ? atoi(out) : -1, (long long)rds_slot(keys[i], strlen(keys[i])),
           "slot of '%s' is CLUSTER KEYSLOT's", keys[i]);
    }
    is(rds_slot("123456789", 9), 0x31c3 % 16384, "slot: CRC16-XMODEM check value");
    is(rds_slot("{user1000}.following", 20), rds_slot("user1000", 8), "slot: the tag alone counts");
    is(rds_slot("foo{{bar}}zap", 13), rds_slot("{bar", 4), "slot: the tag of foo{{bar}}zap is {bar");
    is(rds_slot("foo{bar}{zap}", 13), rds_slot("bar", 3), "slot: the first tag only");
    ok(rds_slot("foo{}{bar}", 10) != rds_slot("bar", 3), "slot: an empty tag: the whole key");
    is(rds_slot("", 0), 0, "slot: the empty key");
}

static void cluster_keys(void)
{
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", cl.node[0].port);
    cc = open1(url); /* one seed only */
    is_str(CMD(cc, "hello", "SET", "hello", "world"), "+OK", "cluster: SET through one seed");
    is(rds_is_cluster(cc), 1, "cluster: detected");
    is_str(CMD(cc, "hello", "DEL", "hello"), ":1", "cluster: DEL");
    is_str(CMD(cc, NULL, "PING"), "+PONG", "cluster: a command without a key");

    int set = 0, got = 0;
    for (int i = 0; i < 200; i++) {
        char k[32], v[32];
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "value-%d", i * 7);
        set += strcmp(CMD(cc, k, "SET", k, v), "+OK") == 0;
    }
    for (int i = 0; i < 200; i++) {
        char k[32], v[40];
        snprintf(k, sizeof k, "key:%d", i);
        snprintf(v, sizeof v, "$value-%d", i * 7);
        got += strcmp(CMD(cc, k, "GET", k), v) == 0;
    }
    is(set, 200, "cluster: 200 keys SET");
    is(got, 200, "cluster: 200 keys read back");
    /* each key where its slot is: the masters hold 200 keys in all, each some */
    cnode nodes[16];
    int n = cluster_nodes(cl.node[0].port, nodes, 16), total = 0, masters_with_keys = 0;
    for (int i = 0; i < n; i++)
        if (nodes[i].master && !nodes[i].fail && nodes[i].nr > 0) {
            char out[64];
            redis_cli(nodes[i].port, out, sizeof out, "DBSIZE");
            total += atoi(out);
            masters_with_keys += atoi(out) > 0;
        }
    if (!is(total, 200, "cluster: the masters hold exactly the 200 keys")) {
        static char all[16384];
        redis_cli(cl.node[0].port, all, sizeof all, "CLUSTER NODES");
        diag("CLUSTER NODES:\n%s", all);
        for (int i = 0; i < n; i++) {
            char out[64];
            redis_cli(nodes[i].port, out, sizeof out, "DBSIZE");
            diag("port %d master %d fail %d slots %d: DBSIZE %s", nodes[i].port, nodes[i].master,
                 nodes[i].fail, nodes[i].nr, out);
        }
    }
    is(masters_with_keys, 3, "cluster: ... spread over all 3 masters");

    const char *res[3];
    const char *p[][4] = {{"SET", "{pl}a", "x", NULL}, {"APPEND", "{pl}a", "y", NULL}, {"INCR", "{pl}a", NULL}};
    is(pipe3(cc, "{pl}", 1, 3, p, res), 0, "cluster: MULTI/EXEC on one hash tag");
    is_str(res[0], "+OK", "cluster: EXEC element 0");
    is_str(res[1], ":2", "cluster: EXEC element 1");
    is_str(res[2], "-ERR value is not an integer or out of range", "cluster: EXEC element 2, an error");
    const char *q[][4] = {{"GET", "{pl}a", NULL}, {"SET", "{pl}b", "z", NULL}, {"MGET", "{pl}a", "{pl}b", NULL}};
    is(pipe3(cc, "{pl}", 0, 3, q, res), 0, "cluster: pipeline on one hash tag");
    is_str(res[0], "$xy", "cluster: pipeline reply 0");
    is_str(res[1], "+OK", "cluster: pipeline reply 1");
    is_str(res[2], "*2", "cluster: pipeline reply 2 (a multi-key command)");
    is((long long)rds_redirects(cc), 0, "cluster: no redirect so far");
}

/* Move slot `slot` from src to dst: IMPORTING/MIGRATING, and `keys`
 * (NULL-terminated) migrated. */
static void migrate_begin(const cnode *src, const cnode *dst, unsigned slot, const char *const *keys)
{
    char out[256];
    redis_cli(dst->port, out, sizeof out, "CLUSTER SETSLOT %u IMPORTING %s", slot, src->id);
    if (strcmp(out, "OK") != 0)
        bail_out("SETSLOT IMPORTING: %s", out);
    redis_cli(src->port, out, sizeof out, "CLUSTER SETSLOT %u MIGRATING %s", slot, dst->id);
    if (strcmp(out, "OK") != 0)
        bail_out("SETSLOT MIGRATING: %s", out);
    for (int i = 0; keys && keys[i]; i++) {
        redis_cli(src->port, out, sizeof out, "MIGRATE 127.0.0.1 %d %s 0 5000", dst->port, keys[i]);
        if (strcmp(out, "OK") != 0)
            bail_out("MIGRATE %s: %s", keys[i], out);
    }
}

static void migrate_end(const cnode *nodes, int n, const cnode *dst, unsigned slot)
{
    char out[256];
    /* the new owner first (it bumps its epoch), then every other master */
    redis_cli(dst->port, out, sizeof out, "CLUSTER SETSLOT %u NODE %s", slot, dst->id);
    for (int i = 0; i < n; i++)
        if (nodes[i].master && nodes[i].port != dst->port)
            redis_cli(nodes[i].port, out, sizeof out, "CLUSTER SETSLOT %u NODE %s", slot, dst->id);
}

static void cluster_moved(void)
{
    cnode nodes[16];
    int n = cluster_nodes(cl.node[0].port, nodes, 16);
    unsigned slot = rds_slot("{mv}", 4);
    const cnode *src = owner(nodes, n, slot), *dst = other_master(nodes, n, src);
    if (!src || !dst)
        bail_out("no owner of slot %u", slot);
    is_str(CMD(cc, "{mv}x", "SET", "{mv}x", "moving"), "+OK", "MOVED: SET before the move");
    const char *keys[] = {"{mv}x", NULL};
    migrate_begin(src, dst, slot, keys);
    migrate_end(nodes, n, dst, slot);
    uint64_t r0 = rds_redirects(cc);
    is_str(CMD(cc, "{mv}x", "GET", "{mv}x"), "$moving", "MOVED: the value is read after the move");
    is((long long)(rds_redirects(cc) - r0), 1, "MOVED: ... after one redirect");
    is_str(CMD(cc, "{mv}x", "GET", "{mv}x"), "$moving", "MOVED: read again");
    is((long long)(rds_redirects(cc) - r0), 1, "MOVED: ... with no more redirect (the map is fixed)");
    char out[64];
    redis_cli(dst->port, out, sizeof out, "EXISTS {mv}x");
    is_str(out, "1", "MOVED: the key is on the new owner");

    /* a transaction sent to the old owner: refused whole (EXECABORT),
     * sent again whole to the new one, run once */
    slot = rds_slot("{mv2}", 5);
    src = owner(nodes, n, slot);
    dst = other_master(nodes, n, src);
    is_str(CMD(cc, "{mv2}a", "SET", "{mv2}a", "5"), "+OK", "MOVED: SET {mv2}a 5");
    const char *keys2[] = {"{mv2}a", NULL};
    migrate_begin(src, dst, slot, keys2);
    migrate_end(nodes, n, dst, slot);
    r0 = rds_redirects(cc);
    const char *res[3];
    const char *p[][4] = {{"INCR", "{mv2}a", NULL}, {"INCR", "{mv2}a", NULL}, {"GET", "{mv2}a", NULL}};
    is(pipe3(cc, "{mv2}", 1, 3, p, res), 0, "MOVED: a transaction after the move");
    is_str(res[0], ":6", "MOVED: EXEC element 0");
    is_str(res[1], ":7", "MOVED: EXEC element 1");
    is_str(res[2], "$7", "MOVED: EXEC element 2 (run once)");
    is((long long)(rds_redirects(cc) - r0), 1, "MOVED: ... after one redirect");
}

static void cluster_ask(void)
{
    cnode nodes[16];
    int n = cluster_nodes(cl.node[0].port, nodes, 16);
    unsigned slot = rds_slot("{ask}", 5);
    const cnode *src = owner(nodes, n, slot), *dst = other_master(nodes, n, src);
    if (!src || !dst)
        bail_out("no owner of slot %u", slot);
    is_str(CMD(cc, "{ask}a", "SET", "{ask}a", "A"), "+OK", "ASK: SET a before the migration");
    is_str(CMD(cc, "{ask}b", "SET", "{ask}b", "B"), "+OK", "ASK: SET b before the migration");
    const char *keys[] = {"{ask}a", NULL};
    migrate_begin(src, dst, slot, keys);

    uint64_t r0 = rds_redirects(cc);
    is_str(CMD(cc, "{ask}a", "GET", "{ask}a"), "$A", "ASK: a, already moved, is read");
    is((long long)(rds_redirects(cc) - r0), 1, "ASK: ... after one ASK");
    is_str(CMD(cc, "{ask}b", "GET", "{ask}b"), "$B", "ASK: b, not moved yet, is read");
    is((long long)(rds_redirects(cc) - r0), 1, "ASK: ... from the old owner, no redirect");
    is_str(CMD(cc, "{ask}c", "SET", "{ask}c", "C"), "+OK", "ASK: a new key during the migration");
    is((long long)(rds_redirects(cc) - r0), 2, "ASK: ... goes to the importing node (ASK)");
    char out[64];
    const char *res[3];
    const char *p[][4] = {{"GET", "{ask}a", NULL}, {"GET", "{ask}b", NULL}, {"GET", "{ask}c", NULL}};
    is(pipe3(cc, "{ask}", 0, 3, p, res), 0, "ASK: a pipeline over both nodes");
    is_str(res[0], "$A", "ASK: pipeline reply 0 (from the importing node)");
    is_str(res[1], "$B", "ASK: pipeline reply 1 (from the old owner)");
    is_str(res[2], "$C", "ASK: pipeline reply 2 (from the importing node)");
    is((long long)(rds_redirects(cc) - r0), 3, "ASK: ... one more ASK for the pipeline");

    /* a transaction on a key only the importing node has: ASKING, then
     * MULTI ... EXEC there */
    const char *t[][4] = {{"GET", "{ask}c", NULL}, {"APPEND", "{ask}c", "2", NULL}};
    is(pipe3(cc, "{ask}", 1, 2, t, res), 0, "ASK: a transaction during the migration");
    is_str(res[0], "$C", "ASK: EXEC element 0");
    is_str(res[1], ":2", "ASK: EXEC element 1");
    is((long long)(rds_redirects(cc) - r0), 4, "ASK: ... after one ASK");
    r0++;

    const char *rest[] = {"{ask}b", NULL};
    for (int i = 0; rest[i]; i++) {
        redis_cli(src->port, out, sizeof out, "MIGRATE 127.0.0.1 %d %s 0 5000", dst->port, rest[i]);
        if (strcmp(out, "OK") != 0)
            bail_out("MIGRATE %s: %s", rest[i], out);
    }
    migrate_end(nodes, n, dst, slot);
    is_str(CMD(cc, "{ask}a", "MGET", "{ask}a", "{ask}b", "{ask}c"), "*3", "ASK: after the migration, MGET");
    is_str(CMD(cc, "{ask}b", "GET", "{ask}b"), "$B", "ASK: b after the migration");
    is((long long)(rds_redirects(cc) - r0), 4, "ASK: ... one MOVED when it ended");
}

static void cluster_failover(void)
{
    cnode nodes[16];
    int n = cluster_nodes(cl.node[0].port, nodes, 16);
    /* a master with a replica (redis-cli gives each one; replica
     * migration could move one), and 20 keys of its slots */
    int best = -1, nrep = 0;
    for (int i = 0; i < n; i++) {
        int r = 0;
        for (int k = 0; k < n; k++)
            r += strcmp(nodes[k].master_id, nodes[i].id) == 0;
        if (nodes[i].master && nodes[i].nr > 0 && r > nrep)
            best = i, nrep = r;
    }
    if (best < 0)
        bail_out("no master with a replica");
    cnode v = nodes[best];
    char keys[20][32];
    int nk = 0;
    for (int i = 0; nk < 20 && i < 100000; i++) {
        snprintf(keys[nk], sizeof keys[0], "fo:%d", i);
        const cnode *o = owner(nodes, n, rds_slot(keys[nk], strlen(keys[nk])));
        if (o && o->port == v.port)
            nk++;
    }
    int set = 0;
    for (int i = 0; i < nk; i++) {
        char val[48];
        snprintf(val, sizeof val, "before-kill-%d", i);
        set += strcmp(CMD(cc, keys[i], "SET", keys[i], val), "+OK") == 0;
    }
    is(set, 20, "failover: 20 keys SET on the master to kill");
    char want[16];
    snprintf(want, sizeof want, ":%d", nrep);
    is_str(CMD(cc, keys[nk - 1], "WAIT", "1", "1000"), want,
           "failover: WAIT 1 1000: its replicas (%d) have them", nrep);

    redis_srv *vs = NULL;
    for (int i = 0; i < cl.n; i++)
        if (cl.node[i].port == v.port)
            vs = &cl.node[i];
    double t0 = test_mono_s();
    redis_kill(vs);
    /* every survivor sees the victim failed, its replica a master, state ok */
    int promoted = 0;
    while (!promoted && test_mono_s() - t0 < 30) {
        test_sleep_us(100000);
        promoted = 1;
        for (int i = 0; i < cl.n && promoted; i++) {
            if (cl.node[i].pid == 0)
                continue;
            cnode now[16];
            int m = cluster_nodes(cl.node[i].port, now, 16), seen_fail = 0;
            for (int k = 0; k < m; k++)
                if (strcmp(now[k].id, v.id) == 0 && now[k].fail)
                    seen_fail = 1;
            const cnode *o = m > 0 ? owner(now, m, rds_slot(keys[0], strlen(keys[0]))) : NULL;
            int seen_new = o && strcmp(o->id, v.id) != 0;
            char info[4096];
            promoted = seen_fail && seen_new && redis_cli(cl.node[i].port, info, sizeof info, "CLUSTER INFO") == 0 &&
                       strstr(info, "cluster_state:ok");
        }
    }
    double took = test_mono_s() - t0;
    ok(promoted, "failover: a replica took over (in %.1f s)", took);

    int got = 0;
    for (int i = 0; i < nk; i++) {
        char val[48];
        snprintf(val, sizeof val, "$before-kill-%d", i);
        got += strcmp(CMD(cc, keys[i], "GET", keys[i]), val) == 0;
    }
    is(got, 20, "failover: the 20 values are read through the same client");
    is_str(CMD(cc, keys[0], "SET", keys[0], "after"), "+OK", "failover: a write to the new master");
    is_str(CMD(cc, keys[0], "GET", keys[0]), "$after", "failover: ... read back");
    is_str(rds_error(cc), "", "failover: no error left");
    rds_close(cc);
}

/* ------------------------------------------------------------ sentinel */

/* Start a replica of 127.0.0.1:mport and wait until its link is up. */
static void start_replica(redis_srv *r, int port, const char *dir, int mport)
{
    char mp[16], out[4096];
    snprintf(mp, sizeof mp, "%d", mport);
    const char *extra[] = {"--replicaof", "127.0.0.1", mp, NULL};
    if (port < 0 || redis_start(r, port, dir, extra) != 0)
        bail_out("cannot start a replica on %d", port);
    for (double until = test_mono_s() + 10;; test_sleep_us(20000)) {
        if (redis_cli(port, out, sizeof out, "INFO replication") == 0 &&
            strstr(out, "master_link_status:up"))
            return;
        if (test_mono_s() > until)
            bail_out("the replica on %d never linked to %d", port, mport);
    }
}

/* Two plain seeds, a master and its replica: writes go to the master,
 * and follow it when the two swap roles (READONLY, then ROLE). */
static void plain_seeds(void)
{
    redis_srv m, r;
    char dir[600], u1[64], u2[64], out[256];
    snprintf(dir, sizeof dir, "%s/seeds", scratch);
    int mport = redis_free_port(0);
    if (mport < 0 || redis_start(&m, mport, dir, NULL) != 0)
        bail_out("cannot start the master");
    int rport = redis_free_port(mport + 1);
    start_replica(&r, rport, dir, mport);
    snprintf(u1, sizeof u1, "redis://127.0.0.1:%d", rport); /* the replica first */
    snprintf(u2, sizeof u2, "redis://127.0.0.1:%d", mport);
    const char *urls[] = {u1, u2};
    char err[256];
    rds *c = rds_open(urls, 2, 1000, err, sizeof err);
    is_str(CMD(c, "k", "SET", "k", "one"), "+OK", "seeds: a write goes to the master, not the first seed");
    redis_cli(mport, out, sizeof out, "GET k");
    is_str(out, "one", "seeds: ... the master has it");
    is_str(CMD(c, "k", "WAIT", "1", "1000"), ":1", "seeds: WAIT: the replica has it");

    /* swap: the replica becomes the master, the master its replica */
    redis_cli(rport, out, sizeof out, "REPLICAOF NO ONE");
    redis_cli(mport, out, sizeof out, "REPLICAOF 127.0.0.1 %d", rport);
    is_str(CMD(c, "k", "SET", "k", "two"), "+OK", "seeds: after a swap, writes follow the new master");
    redis_cli(rport, out, sizeof out, "GET k");
    is_str(out, "two", "seeds: ... it has the new value");
    rds_close(c);
    redis_stop(&r);
    redis_stop(&m);
}

/* A master and a replica watched by one sentinel: the client finds the
 * master through it, and the new one after the master is SIGKILLed. */
static void sentinel(void)
{
    redis_srv m, r, s;
    char dir[600], conf[700], url[128], out[256];
    snprintf(dir, sizeof dir, "%s/sentinel", scratch);
    int mport = redis_free_port(0);
    if (mport < 0 || redis_start(&m, mport, dir, NULL) != 0)
        bail_out("cannot start the master");
    int rport = redis_free_port(mport + 1);
    start_replica(&r, rport, dir, mport);
    int sport = redis_free_port(rport + 1);
    snprintf(conf, sizeof conf, "%s/sentinel.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        bail_out("cannot write %s", conf);
    fprintf(f, "sentinel monitor m 127.0.0.1 %d 1\n"
               "sentinel down-after-milliseconds m 1000\n"
               "sentinel failover-timeout m 10000\n", mport);
    fclose(f);
    const char *extra[] = {"--sentinel", NULL};
    if (sport < 0 || redis_start_conf(&s, conf, sport, dir, extra) != 0)
        bail_out("cannot start the sentinel");

    snprintf(url, sizeof url, "sentinel://127.0.0.1:%d/m", sport);
    rds *c = open1(url);
    is_str(CMD(c, "sk", "SET", "sk", "via sentinel"), "+OK", "sentinel: SET on the master it names");
    is_str(CMD(c, "sk", "GET", "sk"), "$via sentinel", "sentinel: GET");
    is(rds_is_cluster(c), 0, "sentinel: not a cluster");
    redis_cli(mport, out, sizeof out, "GET sk");
    is_str(out, "via sentinel", "sentinel: the value is on the master");
    is_str(CMD(c, "sk", "WAIT", "1", "1000"), ":1", "sentinel: WAIT: the replica has it");

    /* the sentinel must know the replica before it can promote it */
    for (double until = test_mono_s() + 15;; test_sleep_us(50000)) {
        char rp[16];
        snprintf(rp, sizeof rp, "%d", rport);
        if (redis_cli(sport, out, sizeof out, "SENTINEL replicas m") == 0 && strstr(out, rp))
            break;
        if (test_mono_s() > until)
            bail_out("the sentinel never saw the replica: %s", out);
    }
    double t0 = test_mono_s();
    redis_kill(&m);
    char want[16];
    snprintf(want, sizeof want, "%d", rport);
    int switched = 0;
    while (!switched && test_mono_s() - t0 < 15) {
        test_sleep_us(100000);
        switched = redis_cli(sport, out, sizeof out, "SENTINEL get-master-addr-by-name m") == 0 &&
                   strstr(out, want) != NULL;
    }
    ok(switched, "sentinel: failover to the replica in %.1f s", test_mono_s() - t0);
    is_str(CMD(c, "sk", "GET", "sk"), "$via sentinel", "sentinel: the same client reads from the new master");
    is_str(CMD(c, "sk", "SET", "sk", "after"), "+OK", "sentinel: ... and writes to it");
    redis_cli(rport, out, sizeof out, "GET sk");
    is_str(out, "after", "sentinel: ... which is the old replica");
    rds_close(c);

    snprintf(url, sizeof url, "sentinel://127.0.0.1:%d/nosuch", sport);
    c = open1(url);
    const char *got = CMD(c, "sk", "GET", "sk");
    ok(strstr(got, "NULL: ") == got && strstr(got, "no master named nosuch"),
       "sentinel: an unknown master name fails: %s", got);
    rds_close(c);
    redis_stop(&s);
    redis_stop(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as shmreg-sync: a dead server is an error, not our end */
    alarm(120);               /* default action: the test dies, its servers with it */
    snprintf(scratch, sizeof scratch, "%s", test_dir("redis"));
    double t0 = test_mono_s();

    plain();
    down_at_open();
    plain_seeds();
    sentinel();

    char dir[600];
    snprintf(dir, sizeof dir, "%s/cluster", scratch);
    /* another suite may take a port between the probe and the bind: try
     * again further on */
    int base = redis_free_ports(0, 6), tries = 0;
    while (base >= 0 && redis_cluster_start(&cl, base, 3, 1, dir) != 0 && ++tries < 3)
        base = redis_free_ports(base + 6, 6);
    if (base < 0 || tries == 3)
        bail_out("cannot start a Redis Cluster");
    note("cluster up on %d..%d after %.1f s", base, base + 5, test_mono_s() - t0);
    cluster_slots();
    cluster_keys();
    cluster_moved();
    cluster_ask();
    cluster_failover();
    redis_cluster_stop(&cl);
    note("%.1f s in all", test_mono_s() - t0);
    test_rm_rf(scratch);
    done_testing();
    return exit_status();
}
