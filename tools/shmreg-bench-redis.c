/*
 * shmreg-bench-redis.c — the Redis registry: what servers use today to
 * share sessions across workers, driven through hiredis over a unix socket
 * to a redis-server the bench starts for itself.
 *
 * A session is a hash "s:<16 raw ID bytes>" with one field per value
 * (st, from, to, dn, cid, lt, rt, codec, fr, app, lp, rp, sdp0, sdp1, cr,
 * up, and c0..c4 for the counters); a dialog is a string key
 * "d:<Call-ID>\0<local tag>\0<remote tag>" holding the session ID. Every
 * API call is one command and one round trip, as a worker would issue it
 * (no pipelining on the measured paths: a worker needs each answer before
 * it goes on). The two calls that must be atomic on the server run as Lua
 * scripts loaded once: the compare-and-set transition and the delete that
 * also removes the dialog key. Events are PUBLISH/SUBSCRIBE on one
 * channel, each message the size of a shmreg ring record (64 bytes).
 *
 * The server runs with no persistence (--save '' --appendonly no) on a
 * socket in a fresh /tmp directory, and shares the machine's cores with
 * the workers, as it would in production.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "shmreg-bench.h"

/* ------------------------------------------------------------ the server */

static pid_t server_pid;
static char server_dir[128];

static int on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[1024];
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, p, prog);
        if (access(buf, X_OK) == 0)
            return 1;
        p += n + (e != NULL);
    }
    return 0;
}

int redis_start(char *sock, size_t socklen, const char **why)
{
    if (!on_path("redis-server")) {
        *why = "redis-server not installed";
        return -1;
    }
    snprintf(server_dir, sizeof server_dir, "/tmp/shmreg-bench-XXXXXX");
    if (mkdtemp(server_dir) == NULL) {
        *why = "cannot make a temporary directory in /tmp";
        return -1;
    }
    snprintf(sock, socklen, "%s/redis.sock", server_dir);
    char log[200];
    snprintf(log, sizeof log, "%s/redis.log", server_dir);
    pid_t pid = fork();
    if (pid < 0) {
        *why = "fork failed";
        rm_tree(server_dir);
        return -1;
    }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", sock,
               "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", server_dir,
               "--daemonize", "no", (char *)NULL);
        _exit(127);
    }
    server_pid = pid;
    /* Ready when it answers PING; give up after 5 s. */
    for (int i = 0; i < 500; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            server_pid = 0;
            rm_tree(server_dir);
            *why = "redis-server exited at start";
            return -1;
        }
        redisContext *c = redisConnectUnix(sock);
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
            freeReplyObject(r);
            redisFree(c);
            if (ok)
                return 0;
        } else if (c) {
            redisFree(c);
        }
        usleep(10000);
    }
    redis_stop();
    *why = "redis-server did not answer PING within 5 s";
    return -1;
}

uint64_t redis_peak_rss_kib(void)
{
    char path[64], line[256];
    uint64_t kib = 0;
    if (server_pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/status", (int)server_pid);
    FILE *f = fopen(path, "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lu", (unsigned long *)&kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

double redis_cpu_seconds(void)
{
    return server_pid > 0 ? proc_cpu_seconds(server_pid) : 0;
}

void redis_stop(void)
{
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        int st;
        for (int i = 0; i < 300 && waitpid(server_pid, &st, WNOHANG) == 0; i++)
            usleep(10000);
        if (kill(server_pid, 0) == 0) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, &st, 0);
        }
        server_pid = 0;
    }
    if (server_dir[0]) {
        rm_tree(server_dir);
        server_dir[0] = 0;
    }
}

/* ------------------------------------------------------------ the store */

static const char CAS_LUA[] =
    "local s = redis.call('HGET', KEYS[1], 'st') "
    "if not s then return -1 end "
    "if ARGV[1] ~= '0' and s ~= ARGV[1] then return 0 end "
    "redis.call('HSET', KEYS[1], 'st', ARGV[2], 'up', ARGV[3]) "
    "return 1";

static const char DEL_LUA[] =
    "local f = redis.call('HMGET', KEYS[1], 'cid', 'lt', 'rt') "
    "if not f[1] then return 0 end "
    "redis.call('DEL', 'd:' .. f[1] .. '\\0' .. f[2] .. '\\0' .. f[3], KEYS[1]) "
    "return 1";

typedef struct rd_store {
    char sock[200];
    char sha_cas[48], sha_del[48];
    uint64_t mem_base;
} rd_store;

typedef struct rd_h {
    rd_store *s;
    redisContext *c;
} rd_h;

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static redisContext *rd_connect(const char *sock)
{
    redisContext *c = redisConnectUnix(sock);
    if (c == NULL || c->err) {
        bench_fail("redis: connect %s: %s", sock, c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    return c;
}

/* Run a command whose reply must not be an error; returns the reply. */
static redisReply *rd_cmd(redisContext *c, redisReply *r)
{
    if (r == NULL) {
        bench_fail("redis: %s", c->errstr[0] ? c->errstr : "no reply");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        bench_fail("redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static uint64_t used_memory(redisContext *c)
{
    redisReply *r = rd_cmd(c, redisCommand(c, "INFO memory"));
    uint64_t v = 0;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    if (p)
        v = strtoull(p + 12, NULL, 10);
    freeReplyObject(r);
    return v;
}

static int load_script(redisContext *c, const char *lua, char *sha, size_t shalen)
{
    redisReply *r = rd_cmd(c, redisCommand(c, "SCRIPT LOAD %s", lua));
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    snprintf(sha, shalen, "%s", r->str);
    freeReplyObject(r);
    return 0;
}

static int rd_open(const bench_env *e, bench_store **out)
{
    if (e->redis_sock == NULL)
        return bench_fail("redis: no server");
    rd_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return bench_fail("out of memory");
    snprintf(s->sock, sizeof s->sock, "%s", e->redis_sock);
    redisContext *c = rd_connect(s->sock);
    int rc = c ? 0 : -1;
    redisReply *r = c ? rd_cmd(c, redisCommand(c, "FLUSHALL")) : NULL;
    if (r == NULL)
        rc = -1;
    freeReplyObject(r);
    if (rc == 0 && (load_script(c, CAS_LUA, s->sha_cas, sizeof s->sha_cas) ||
                    load_script(c, DEL_LUA, s->sha_del, sizeof s->sha_del)))
        rc = -1;
    if (rc == 0)
        s->mem_base = used_memory(c);
    if (c)
        redisFree(c);
    if (rc) {
        free(s);
        return rc;
    }
    *out = (bench_store *)s;
    return 0;
}

static void rd_close(bench_store *bs)
{
    rd_store *s = (rd_store *)bs;
    if (s == NULL)
        return;
    redisContext *c = rd_connect(s->sock);
    if (c) {
        freeReplyObject(redisCommand(c, "FLUSHALL"));
        redisFree(c);
    }
    free(s);
}

static int rd_attach(bench_store *bs, bench_h **out)
{
    rd_h *x = calloc(1, sizeof *x);
    if (x == NULL)
        return bench_fail("out of memory");
    x->s = (rd_store *)bs;
    if ((x->c = rd_connect(x->s->sock)) == NULL) {
        free(x);
        return -1;
    }
    *out = (bench_h *)x;
    return 0;
}

static void rd_detach(bench_h *bh)
{
    rd_h *x = (rd_h *)bh;
    if (x) {
        redisFree(x->c);
        free(x);
    }
}

static int rd_mem(bench_h *bh, uint64_t sessions, bench_mem *m)
{
    rd_h *x = (rd_h *)bh;
    (void)sessions;
    uint64_t now = used_memory(x->c);
    m->bytes = now > x->s->mem_base ? now - x->s->mem_base : 0;
    m->resident = 0;
    m->what = "INFO used_memory growth (the server's allocator, jemalloc)";
    return 0;
}

/* 0 for an integer reply >= min, else -1 with the reason. */
static int rd_int(redisContext *c, redisReply *r, long long min, const char *what)
{
    if ((r = rd_cmd(c, r)) == NULL)
        return -1;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer >= min;
    long long v = r->integer;
    freeReplyObject(r);
    return ok ? 0 : bench_fail("redis: %s: %lld", what, v);
}

#define SKEY "s:%b"

static int rd_create(bench_h *bh, const bench_rec *r, int with_sdp, shmreg_id *id)
{
    rd_h *x = (rd_h *)bh;
    bench_new_id(id);
    const shmreg_str *f = r->f.str;
    uint64_t now = real_ns();
    /* Without SDPs, empty ones: the same one command either way. */
    size_t l0 = with_sdp ? r->sdp_len[0] : 0, l1 = with_sdp ? r->sdp_len[1] : 0;
    return rd_int(x->c, redisCommand(x->c,
                      "HSET " SKEY " st 1 from %b to %b dn %b cid %b lt %b rt %b codec %b fr %b app %b "
                      "lp %u rp %u cr %llu up %llu sdp0 %b sdp1 %b",
                      id->bytes, (size_t)SHMREG_ID_BYTES, f[0].ptr, f[0].len, f[1].ptr, f[1].len, f[2].ptr, f[2].len,
                      f[3].ptr, f[3].len, f[4].ptr, f[4].len, f[5].ptr, f[5].len, f[6].ptr, f[6].len,
                      f[7].ptr ? f[7].ptr : "", f[7].len, f[8].ptr, f[8].len,
                      (unsigned)r->f.local_rtp_port, (unsigned)r->f.remote_rtp_port,
                      (unsigned long long)now, (unsigned long long)now,
                      l0 ? r->sdp[0] : "", l0, l1 ? r->sdp[1] : "", l1),
                  1, "create");
}

static size_t dlg_key(char *buf, const bench_rec *r)
{
    shmreg_str c = r->f.str[SHMREG_FIELD_CALL_ID], l = r->f.str[SHMREG_FIELD_LOCAL_TAG],
               t = r->f.str[SHMREG_FIELD_REMOTE_TAG];
    memcpy(buf, "d:", 2);
    memcpy(buf + 2, c.ptr, c.len);
    buf[2 + c.len] = 0;
    memcpy(buf + 3 + c.len, l.ptr, l.len);
    buf[3 + c.len + l.len] = 0;
    memcpy(buf + 4 + c.len + l.len, t.ptr, t.len);
    return 4 + c.len + l.len + t.len;
}

static int rd_bind(bench_h *bh, const bench_rec *r, const shmreg_id *id)
{
    rd_h *x = (rd_h *)bh;
    char kb[3 * SHMREG_MAX_STR + 8];
    size_t kl = dlg_key(kb, r);
    redisReply *rep = rd_cmd(x->c, redisCommand(x->c, "SET %b %b NX", kb, kl, id->bytes, (size_t)SHMREG_ID_BYTES));
    if (rep == NULL)
        return -1;
    int ok = rep->type == REDIS_REPLY_STATUS;
    freeReplyObject(rep);
    return ok ? 0 : bench_fail("redis: dialog already bound");
}

static int rd_set_sdp(bench_h *bh, const shmreg_id *id, int which, const char *sdp, size_t len)
{
    rd_h *x = (rd_h *)bh;
    return rd_int(x->c, redisCommand(x->c, "HSET " SKEY " sdp%d %b up %llu", id->bytes, (size_t)SHMREG_ID_BYTES, which,
                                     sdp, len, (unsigned long long)real_ns()),
                  0, "set_sdp");
}

static int rd_transition(bench_h *bh, const shmreg_id *id, int expected, int to)
{
    rd_h *x = (rd_h *)bh;
    if (expected && !shmreg_state_allowed(expected, to))
        return bench_fail("redis: transition not allowed");
    return rd_int(x->c, redisCommand(x->c, "EVALSHA %s 1 " SKEY " %d %d %llu", x->s->sha_cas, id->bytes,
                                     (size_t)SHMREG_ID_BYTES, expected, to, (unsigned long long)real_ns()),
                  1, "transition");
}

static int rd_counter(bench_h *bh, const shmreg_id *id, int ctr, uint64_t delta)
{
    rd_h *x = (rd_h *)bh;
    return rd_int(x->c, redisCommand(x->c, "HINCRBY " SKEY " c%d %llu", id->bytes, (size_t)SHMREG_ID_BYTES, ctr,
                                     (unsigned long long)delta),
                  0, "counter");
}

static redisReply *rd_get3(rd_h *x, const shmreg_id *id)
{
    redisReply *r = rd_cmd(x->c, redisCommand(x->c, "HMGET " SKEY " st sdp0 sdp1", id->bytes, (size_t)SHMREG_ID_BYTES));
    if (r && (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
              r->element[1]->type != REDIS_REPLY_STRING || r->element[2]->type != REDIS_REPLY_STRING)) {
        freeReplyObject(r);
        bench_fail("redis: no such session");
        return NULL;
    }
    return r;
}

static int rd_find_read(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    redisReply *r = rd_get3((rd_h *)bh, id);
    if (r == NULL)
        return -1;
    *sink += (uint64_t)(r->element[0]->str[0] - '0') + bench_touch(r->element[1]->str, r->element[1]->len) +
             bench_touch(r->element[2]->str, r->element[2]->len);
    freeReplyObject(r);
    return 0;
}

static int rd_find_copy(bench_h *bh, const shmreg_id *id, char *buf, uint64_t *sink)
{
    redisReply *r = rd_get3((rd_h *)bh, id);
    if (r == NULL)
        return -1;
    size_t l0 = r->element[1]->len, l1 = r->element[2]->len;
    uint64_t st = (uint64_t)(r->element[0]->str[0] - '0');
    memcpy(buf, r->element[1]->str, l0);
    memcpy(buf + l0, r->element[2]->str, l1);
    freeReplyObject(r);
    *sink += st + bench_touch(buf, l0) + bench_touch(buf + l0, l1);
    return 0;
}

static int rd_dialog_find(bench_h *bh, const bench_rec *r, shmreg_id *out)
{
    rd_h *x = (rd_h *)bh;
    char kb[3 * SHMREG_MAX_STR + 8];
    size_t kl = dlg_key(kb, r);
    redisReply *rep = rd_cmd(x->c, redisCommand(x->c, "GET %b", kb, kl));
    if (rep == NULL)
        return -1;
    int ok = rep->type == REDIS_REPLY_STRING && rep->len == SHMREG_ID_BYTES;
    if (ok)
        memcpy(out->bytes, rep->str, SHMREG_ID_BYTES);
    freeReplyObject(rep);
    return ok ? 0 : bench_fail("redis: no such dialog");
}

static int rd_del(bench_h *bh, const shmreg_id *id)
{
    rd_h *x = (rd_h *)bh;
    return rd_int(x->c, redisCommand(x->c, "EVALSHA %s 1 " SKEY, x->s->sha_del, id->bytes, (size_t)SHMREG_ID_BYTES), 1,
                  "delete");
}

/* Bulk load, pipelined 256 sessions at a time (one round trip per call
 * would take minutes at 1M sessions; measured calls are not pipelined). */
static int rd_load(bench_h *bh, const bench_data *d, uint64_t from, uint64_t to, shmreg_id *ids)
{
    rd_h *x = (rd_h *)bh;
    bench_rec r;
    char kb[3 * SHMREG_MAX_STR + 8];
    for (uint64_t i = from; i < to;) {
        uint64_t end = i + 256 < to ? i + 256 : to, n = 0;
        for (; i < end; i++, n++) {
            data_rec(d, i, &r);
            data_id(d, i, &ids[i]);
            const shmreg_str *f = r.f.str;
            uint64_t now = real_ns();
            redisAppendCommand(x->c,
                               "HSET " SKEY " st 3 from %b to %b dn %b cid %b lt %b rt %b codec %b fr %b "
                               "app %b lp %u rp %u cr %llu up %llu sdp0 %b sdp1 %b",
                               ids[i].bytes, (size_t)SHMREG_ID_BYTES, f[0].ptr, f[0].len, f[1].ptr, f[1].len, f[2].ptr,
                               f[2].len, f[3].ptr, f[3].len, f[4].ptr, f[4].len, f[5].ptr, f[5].len,
                               f[6].ptr, f[6].len, f[7].ptr ? f[7].ptr : "", f[7].len, f[8].ptr, f[8].len,
                               (unsigned)r.f.local_rtp_port, (unsigned)r.f.remote_rtp_port,
                               (unsigned long long)now, (unsigned long long)now, r.sdp[0], r.sdp_len[0],
                               r.sdp[1], r.sdp_len[1]);
            redisAppendCommand(x->c, "SET %b %b NX", kb, dlg_key(kb, &r), ids[i].bytes, (size_t)SHMREG_ID_BYTES);
        }
        for (uint64_t k = 0; k < 2 * n; k++) {
            void *rep;
            if (redisGetReply(x->c, &rep) != REDIS_OK)
                return bench_fail("redis: load: %s", x->c->errstr);
            redisReply *rr = rep;
            int bad = rr->type == REDIS_REPLY_ERROR || rr->type == REDIS_REPLY_NIL;
            freeReplyObject(rep);
            if (bad)
                return bench_fail("redis: load: command failed");
        }
    }
    return 0;
}

/* ------------------------------------------------------------ events */

static int rd_publish(bench_h *bh, const shmreg_id *id, const void *data, size_t len)
{
    rd_h *x = (rd_h *)bh;
    unsigned char msg[64] = {0};
    uint64_t now = real_ns();
    memcpy(msg, &now, 8);
    if (id)
        memcpy(msg + 16, id->bytes, SHMREG_ID_BYTES);
    memcpy(msg + 32, data, len < 32 ? len : 32);
    return rd_int(x->c, redisCommand(x->c, "PUBLISH ev %b", msg, sizeof msg), 0, "publish");
}

static int rd_publish_end(bench_h *bh)
{
    rd_h *x = (rd_h *)bh;
    return rd_int(x->c, redisCommand(x->c, "PUBLISH ev END"), 0, "publish");
}

typedef struct rd_sub {
    redisContext *c;
} rd_sub;

static int rd_sub_open(bench_h *bh, void **out)
{
    rd_h *x = (rd_h *)bh;
    rd_sub *s = calloc(1, sizeof *s);
    if (s == NULL || (s->c = rd_connect(x->s->sock)) == NULL) {
        free(s);
        return -1;
    }
    redisReply *r = rd_cmd(s->c, redisCommand(s->c, "SUBSCRIBE ev"));
    if (r == NULL) {
        redisFree(s->c);
        free(s);
        return -1;
    }
    freeReplyObject(r);
    *out = s;
    return 0;
}

static int rd_sub_poll(void *p, int *end, uint64_t *missed, uint64_t *sink)
{
    rd_sub *s = p;
    int n = 0;
    (void)missed;
    for (;;) {
        void *rep = NULL;
        if (redisGetReplyFromReader(s->c, &rep) != REDIS_OK)
            return bench_fail("redis: subscriber: %s", s->c->errstr);
        if (rep) {
            redisReply *r = rep;
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING) {
                if (r->element[2]->len == 3)
                    *end = 1;
                *sink += (unsigned char)r->element[2]->str[0];
                n++;
            }
            freeReplyObject(rep);
            if (n == 64 || *end)
                return n;
            continue;
        }
        if (n)
            return n;
        struct pollfd pfd = {.fd = s->c->fd, .events = POLLIN};
        if (poll(&pfd, 1, 1) <= 0)
            return 0;
        if (redisBufferRead(s->c) != REDIS_OK)
            return bench_fail("redis: subscriber: %s", s->c->errstr);
    }
}

static void rd_sub_close(void *p)
{
    rd_sub *s = p;
    if (s) {
        redisFree(s->c);
        free(s);
    }
}

const bench_impl impl_redis = {
    .name = "redis",
    .what = "Redis via hiredis over a unix socket (one round trip per call)",
    .open = rd_open, .close = rd_close, .attach = rd_attach, .detach = rd_detach,
    .load = rd_load, .mem = rd_mem, .create = rd_create, .bind = rd_bind,
    .set_sdp = rd_set_sdp, .transition = rd_transition, .counter = rd_counter,
    .find_read = rd_find_read, .find_copy = rd_find_copy, .dialog_find = rd_dialog_find,
    .del = rd_del, .publish = rd_publish, .sub_open = rd_sub_open, .sub_poll = rd_sub_poll,
    .sub_close = rd_sub_close, .publish_end = rd_publish_end,
};
