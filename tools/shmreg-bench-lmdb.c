/*
 * shmreg-bench-lmdb.c — the LMDB-only registry: what a straightforward
 * LMDB design gives for the same registry API.
 *
 * One environment on /dev/shm (MDB_NOSYNC | MDB_NOMETASYNC: nothing is
 * flushed, as for a tmpfs registry), two databases: "sess" maps the 16-byte
 * session ID to the serialized record (a fixed header with state, ports,
 * counters and times, then the strings, then both SDPs), "dlg" maps
 * Call-ID NUL local-tag NUL remote-tag to the session ID. Every API call is
 * one transaction, as a registry built on LMDB would do it:
 *
 *   reads   renew a per-handle read transaction, mdb_get, read the record
 *           in place in LMDB's map, reset (the well-known idiom that saves
 *           the malloc of mdb_txn_begin on every read);
 *   writes  begin a write transaction, get, build the new record in a
 *           scratch buffer, put, commit. LMDB cannot change a value in
 *           place, so a counter bump rewrites the whole ~2.5 KiB record.
 *
 * Records over half a page go to overflow pages, so each session costs at
 * least one 4 KiB page: the memory report shows it. LMDB has no
 * notifications, so the event workloads are not run against it.
 */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

typedef struct lm_rec {
    uint32_t state;
    uint16_t port[2];
    uint64_t ctr[SHMREG_CTR_COUNT];
    uint64_t created_ns, updated_ns;
    uint16_t len[SHMREG_FIELD_STR_COUNT];
    uint16_t pad;
    uint32_t sdp_len[2];
} lm_rec;          /* followed by the strings, then SDP 0, then SDP 1 */

/* Where the variable part of a record built in `r` starts. */
static char *rec_data(lm_rec *r)
{
    return (char *)(r + 1);
}

typedef struct lm_store {
    char path[600];
    size_t mapsize;
} lm_store;

typedef struct lm_h {
    lm_store *s;
    MDB_env *env;
    MDB_dbi sess, dlg;
    MDB_txn *rtxn;            /* reset between reads, renewed for each */
    char *scratch;
    size_t scratch_size;
} lm_h;

#define LM_CHECK(call)                                                                 \
    do {                                                                               \
        int rc_ = (call);                                                              \
        if (rc_)                                                                       \
            return bench_fail("lmdb: %s: %s", #call, mdb_strerror(rc_));               \
    } while (0)

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int lm_env(lm_store *s, MDB_env **out)
{
    MDB_env *env;
    LM_CHECK(mdb_env_create(&env));
    int rc = mdb_env_set_mapsize(env, s->mapsize);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, 2);
    if (rc == 0)
        rc = mdb_env_open(env, s->path, MDB_NOSYNC | MDB_NOMETASYNC, 0600);
    if (rc) {
        mdb_env_close(env);
        return bench_fail("lmdb: opening %s: %s", s->path, mdb_strerror(rc));
    }
    *out = env;
    return 0;
}

static int lm_open(const bench_env *e, bench_store **out)
{
    lm_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return bench_fail("out of memory");
    snprintf(s->path, sizeof s->path, "%s/lmdb", e->dir);
    if (mkdir(s->path, 0700) != 0 && errno != EEXIST) {
        /* The message reads s->path and errno: both before the free. */
        int rc = bench_fail("mkdir %s: %s", s->path, strerror(errno));
        free(s);
        return rc;
    }
    /* Sparse on tmpfs: the file grows only as pages are used. Room for
     * every record twice (copy-on-write keeps old pages until commit) and
     * for the create workloads' churn. */
    size_t rec = sizeof(lm_rec) + 1024 + 2 * e->data->sdp_max;
    size_t pages = (rec + 4095) / 4096 + 1;
    s->mapsize = (size_t)e->capacity * pages * 4096 * 2 + (1ull << 30);
    MDB_env *env;
    int rc = lm_env(s, &env);
    if (rc) {
        free(s);
        return rc;
    }
    MDB_txn *t;
    MDB_dbi d;
    rc = mdb_txn_begin(env, NULL, 0, &t);
    if (rc == 0 && (rc = mdb_dbi_open(t, "sess", MDB_CREATE, &d)) == 0 &&
        (rc = mdb_dbi_open(t, "dlg", MDB_CREATE, &d)) == 0)
        rc = mdb_txn_commit(t);
    else if (rc == 0)
        mdb_txn_abort(t);
    mdb_env_close(env);
    if (rc) {
        free(s);
        return bench_fail("lmdb: creating databases: %s", mdb_strerror(rc));
    }
    *out = (bench_store *)s;
    return 0;
}

static void lm_close(bench_store *bs)
{
    lm_store *s = (lm_store *)bs;
    if (s) {
        rm_tree(s->path);
        free(s);
    }
}

/* Each process opens its own environment (LMDB forbids using one across
 * fork). */
static int lm_attach(bench_store *bs, bench_h **out)
{
    lm_h *x = calloc(1, sizeof *x);
    if (x == NULL)
        return bench_fail("out of memory");
    x->s = (lm_store *)bs;
    x->scratch_size = sizeof(lm_rec) + SHMREG_FIELD_STR_COUNT * SHMREG_MAX_STR + 2 * SHMREG_MAX_SDP;
    x->scratch = malloc(x->scratch_size);
    int rc = x->scratch ? lm_env(x->s, &x->env) : bench_fail("out of memory");
    if (rc) {
        free(x->scratch);
        free(x);
        return rc;
    }
    MDB_txn *t;
    rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &t);
    if (rc == 0 && (rc = mdb_dbi_open(t, "sess", 0, &x->sess)) == 0 &&
        (rc = mdb_dbi_open(t, "dlg", 0, &x->dlg)) == 0)
        rc = mdb_txn_commit(t);
    else if (rc == 0)
        mdb_txn_abort(t);
    if (rc == 0 && (rc = mdb_txn_begin(x->env, NULL, MDB_RDONLY, &x->rtxn)) == 0)
        mdb_txn_reset(x->rtxn);
    if (rc) {
        mdb_env_close(x->env);
        free(x->scratch);
        free(x);
        return bench_fail("lmdb: attach: %s", mdb_strerror(rc));
    }
    *out = (bench_h *)x;
    return 0;
}

static void lm_detach(bench_h *bh)
{
    lm_h *x = (lm_h *)bh;
    if (x == NULL)
        return;
    mdb_txn_abort(x->rtxn);
    mdb_env_close(x->env);
    free(x->scratch);
    free(x);
}

static int lm_mem(bench_h *bh, uint64_t sessions, bench_mem *m)
{
    lm_h *x = (lm_h *)bh;
    (void)sessions;
    MDB_stat a, b;
    MDB_txn *t;
    LM_CHECK(mdb_txn_renew(x->rtxn));
    t = x->rtxn;
    int rc = mdb_stat(t, x->sess, &a);
    if (rc == 0)
        rc = mdb_stat(t, x->dlg, &b);
    mdb_txn_reset(t);
    if (rc)
        return bench_fail("lmdb: stat: %s", mdb_strerror(rc));
    m->bytes = (uint64_t)(a.ms_branch_pages + a.ms_leaf_pages + a.ms_overflow_pages +
                          b.ms_branch_pages + b.ms_leaf_pages + b.ms_overflow_pages) * a.ms_psize;
    char f[700];
    struct stat sb;
    snprintf(f, sizeof f, "%s/data.mdb", x->s->path);
    m->resident = stat(f, &sb) == 0 ? (uint64_t)sb.st_blocks * 512u : 0;
    m->what = "pages of both B-trees (overflow pages included); resident: data.mdb";
    return 0;
}

static size_t rec_size(const bench_rec *r)
{
    size_t n = sizeof(lm_rec) + r->sdp_len[0] + r->sdp_len[1];
    for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++)
        n += r->f.str[f].len;
    return n;
}

/* Serialize r at dst (LMDB's reserved space: no alignment promised). */
static void rec_fill(void *dst, const bench_rec *r, int with_sdp, int state)
{
    lm_rec h;
    memset(&h, 0, sizeof h);
    h.state = (uint32_t)state;
    h.port[0] = r->f.local_rtp_port;
    h.port[1] = r->f.remote_rtp_port;
    h.created_ns = h.updated_ns = real_ns();
    char *q = (char *)dst + sizeof h;
    for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++) {
        h.len[f] = (uint16_t)r->f.str[f].len;
        if (r->f.str[f].len) /* an empty field may have a NULL ptr */
            memcpy(q, r->f.str[f].ptr, r->f.str[f].len);
        q += r->f.str[f].len;
    }
    for (int w = 0; w < 2 && with_sdp; w++) {
        h.sdp_len[w] = (uint32_t)r->sdp_len[w];
        memcpy(q, r->sdp[w], r->sdp_len[w]);
        q += r->sdp_len[w];
    }
    memcpy(dst, &h, sizeof h);
}

static size_t rec_strs(const lm_rec *x)
{
    size_t n = 0;
    for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++)
        n += x->len[f];
    return n;
}

/* LMDB keeps values only 2-byte aligned: copy the small header out, read
 * strings and SDPs where they lie. Returns where they start, or NULL if
 * the value does not add up. */
static const char *rec_view(const MDB_val *v, lm_rec *h)
{
    if (v->mv_size < sizeof *h)
        return NULL;
    memcpy(h, v->mv_data, sizeof *h);
    if (sizeof *h + rec_strs(h) + h->sdp_len[0] + h->sdp_len[1] > v->mv_size)
        return NULL;
    return (const char *)v->mv_data + sizeof *h;
}

static size_t dlg_key(char *buf, shmreg_str c, shmreg_str l, shmreg_str r)
{
    memcpy(buf, c.ptr, c.len);
    buf[c.len] = 0;
    memcpy(buf + c.len + 1, l.ptr, l.len);
    buf[c.len + 1 + l.len] = 0;
    memcpy(buf + c.len + 2 + l.len, r.ptr, r.len);
    return c.len + l.len + r.len + 2;
}

static int put_new(lm_h *x, MDB_txn *t, const bench_rec *r, const shmreg_id *id, int with_sdp, int state)
{
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v = {rec_size(r) - (with_sdp ? 0 : r->sdp_len[0] + r->sdp_len[1]), NULL};
    int rc = mdb_put(t, x->sess, &k, &v, MDB_NOOVERWRITE | MDB_RESERVE);
    if (rc)
        return rc;
    rec_fill(v.mv_data, r, with_sdp, state);
    return 0;
}

static int lm_create(bench_h *bh, const bench_rec *r, int with_sdp, shmreg_id *id)
{
    lm_h *x = (lm_h *)bh;
    bench_new_id(id);
    MDB_txn *t;
    LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
    int rc = put_new(x, t, r, id, with_sdp, SHMREG_STATE_INITIATING);
    if (rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: create: %s", mdb_strerror(rc));
    }
    LM_CHECK(mdb_txn_commit(t));
    return 0;
}

/* Create with SDPs and bind: one transaction. */
static int lm_create_bound(bench_h *bh, const bench_rec *r, shmreg_id *id)
{
    lm_h *x = (lm_h *)bh;
    bench_new_id(id);
    char kb[3 * SHMREG_MAX_STR + 2];
    MDB_val dk = {dlg_key(kb, r->f.str[SHMREG_FIELD_CALL_ID], r->f.str[SHMREG_FIELD_LOCAL_TAG],
                          r->f.str[SHMREG_FIELD_REMOTE_TAG]), kb};
    MDB_val dv = {SHMREG_ID_BYTES, (void *)id->bytes};
    MDB_txn *t;
    LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
    int rc = mdb_put(t, x->dlg, &dk, &dv, MDB_NOOVERWRITE);
    if (rc == 0)
        rc = put_new(x, t, r, id, 1, SHMREG_STATE_INITIATING);
    if (rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: create bound: %s", mdb_strerror(rc));
    }
    LM_CHECK(mdb_txn_commit(t));
    return 0;
}

static int lm_bind(bench_h *bh, const bench_rec *r, const shmreg_id *id)
{
    lm_h *x = (lm_h *)bh;
    char kb[3 * SHMREG_MAX_STR + 2];
    MDB_val sk = {SHMREG_ID_BYTES, (void *)id->bytes}, sv;
    MDB_val dk = {dlg_key(kb, r->f.str[SHMREG_FIELD_CALL_ID], r->f.str[SHMREG_FIELD_LOCAL_TAG],
                          r->f.str[SHMREG_FIELD_REMOTE_TAG]), kb};
    MDB_val dv = {SHMREG_ID_BYTES, (void *)id->bytes};
    MDB_txn *t;
    LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
    int rc = mdb_get(t, x->sess, &sk, &sv);
    if (rc == 0)
        rc = mdb_put(t, x->dlg, &dk, &dv, MDB_NOOVERWRITE);
    if (rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: bind: %s", mdb_strerror(rc));
    }
    LM_CHECK(mdb_txn_commit(t));
    return 0;
}

/* The read-modify-write every write call is: get the record, let `edit`
 * build the new one in scratch (aligned) from the old header and bytes,
 * put it back, commit. */
typedef int (*lm_edit)(lm_h *x, const lm_rec *old, const char *data, size_t oldsize, lm_rec *out,
                       size_t *outsize, const void *arg);

static int lm_rmw(lm_h *x, const shmreg_id *id, lm_edit edit, const void *arg)
{
    MDB_txn *t;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v;
    LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
    int rc = mdb_get(t, x->sess, &k, &v);
    if (rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: get: %s", mdb_strerror(rc));
    }
    lm_rec old;
    const char *data = rec_view(&v, &old);
    size_t n = 0;
    int erc = data ? edit(x, &old, data, v.mv_size, (lm_rec *)x->scratch, &n, arg) : bench_fail("lmdb: bad record");
    if (erc) {
        mdb_txn_abort(t);
        return erc;
    }
    v.mv_size = n;
    v.mv_data = x->scratch;
    rc = mdb_put(t, x->sess, &k, &v, 0);
    if (rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: put: %s", mdb_strerror(rc));
    }
    LM_CHECK(mdb_txn_commit(t));
    return 0;
}

/* Old record, unchanged, into out. */
static void copy_rec(const lm_rec *old, const char *data, size_t oldsize, lm_rec *out)
{
    *out = *old;
    memcpy(rec_data(out), data, oldsize - sizeof *old);
}

typedef struct { int which; const char *sdp; size_t len; } sdp_arg;

static int edit_sdp(lm_h *x, const lm_rec *old, const char *data, size_t oldsize, lm_rec *out, size_t *outsize,
                    const void *arg)
{
    const sdp_arg *a = arg;
    size_t strs = rec_strs(old);
    (void)oldsize;
    if (sizeof *old + strs + a->len + old->sdp_len[!a->which] > x->scratch_size)
        return bench_fail("lmdb: SDP too long");
    *out = *old;
    memcpy(rec_data(out), data, strs);
    const char *s0 = data + strs, *s1 = s0 + old->sdp_len[0];
    const char *first = a->which == 0 ? a->sdp : s0, *second = a->which == 1 ? a->sdp : s1;
    size_t l0 = a->which == 0 ? a->len : old->sdp_len[0], l1 = a->which == 1 ? a->len : old->sdp_len[1];
    memcpy(rec_data(out) + strs, first, l0);
    memcpy(rec_data(out) + strs + l0, second, l1);
    out->sdp_len[0] = (uint32_t)l0;
    out->sdp_len[1] = (uint32_t)l1;
    out->updated_ns = real_ns();
    *outsize = sizeof *old + strs + l0 + l1;
    return 0;
}

static int lm_set_sdp(bench_h *bh, const shmreg_id *id, int which, const char *sdp, size_t len)
{
    sdp_arg a = {which, sdp, len};
    return lm_rmw((lm_h *)bh, id, edit_sdp, &a);
}

typedef struct { int expected, to; } tr_arg;

static int edit_state(lm_h *x, const lm_rec *old, const char *data, size_t oldsize, lm_rec *out,
                      size_t *outsize, const void *arg)
{
    const tr_arg *a = arg;
    (void)x;
    if (a->expected && (int)old->state != a->expected)
        return bench_fail("lmdb: state conflict");
    if (!shmreg_state_allowed((int)old->state, a->to))
        return bench_fail("lmdb: transition not allowed");
    copy_rec(old, data, oldsize, out);
    out->state = (uint32_t)a->to;
    out->updated_ns = real_ns();
    *outsize = oldsize;
    return 0;
}

static int lm_transition(bench_h *bh, const shmreg_id *id, int expected, int to)
{
    tr_arg a = {expected, to};
    return lm_rmw((lm_h *)bh, id, edit_state, &a);
}

typedef struct { int ctr; uint64_t delta; } ctr_arg;

static int edit_ctr(lm_h *x, const lm_rec *old, const char *data, size_t oldsize, lm_rec *out, size_t *outsize,
                    const void *arg)
{
    const ctr_arg *a = arg;
    (void)x;
    copy_rec(old, data, oldsize, out);
    out->ctr[a->ctr] += a->delta;
    *outsize = oldsize;
    return 0;
}

static int lm_counter(bench_h *bh, const shmreg_id *id, int ctr, uint64_t delta)
{
    ctr_arg a = {ctr, delta};
    return lm_rmw((lm_h *)bh, id, edit_ctr, &a);
}

static int lm_find_read(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    lm_h *x = (lm_h *)bh;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v;
    LM_CHECK(mdb_txn_renew(x->rtxn));
    lm_rec h;
    int rc = mdb_get(x->rtxn, x->sess, &k, &v);
    const char *d = rc == 0 ? rec_view(&v, &h) : NULL;
    if (d) {
        const char *s0 = d + rec_strs(&h);
        *sink += h.state + bench_touch(s0, h.sdp_len[0]) + bench_touch(s0 + h.sdp_len[0], h.sdp_len[1]);
    }
    mdb_txn_reset(x->rtxn);
    return d ? 0 : bench_fail("lmdb: find: %s", rc ? mdb_strerror(rc) : "bad record");
}

static int lm_find_copy(bench_h *bh, const shmreg_id *id, char *buf, uint64_t *sink)
{
    lm_h *x = (lm_h *)bh;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v;
    LM_CHECK(mdb_txn_renew(x->rtxn));
    lm_rec h;
    int rc = mdb_get(x->rtxn, x->sess, &k, &v);
    const char *d = rc == 0 ? rec_view(&v, &h) : NULL;
    size_t l0 = 0, l1 = 0;
    uint32_t state = 0;
    if (d) {
        state = h.state;
        l0 = h.sdp_len[0];
        l1 = h.sdp_len[1];
        memcpy(buf, d + rec_strs(&h), l0 + l1);
    }
    mdb_txn_reset(x->rtxn);
    if (d == NULL)
        return bench_fail("lmdb: find: %s", rc ? mdb_strerror(rc) : "bad record");
    *sink += state + bench_touch(buf, l0) + bench_touch(buf + l0, l1);
    return 0;
}

static int lm_dialog_find(bench_h *bh, const bench_rec *r, shmreg_id *out)
{
    lm_h *x = (lm_h *)bh;
    char kb[3 * SHMREG_MAX_STR + 2];
    MDB_val k = {dlg_key(kb, r->f.str[SHMREG_FIELD_CALL_ID], r->f.str[SHMREG_FIELD_LOCAL_TAG],
                         r->f.str[SHMREG_FIELD_REMOTE_TAG]), kb}, v;
    LM_CHECK(mdb_txn_renew(x->rtxn));
    int rc = mdb_get(x->rtxn, x->dlg, &k, &v);
    if (rc == 0 && v.mv_size == SHMREG_ID_BYTES)
        memcpy(out->bytes, v.mv_data, SHMREG_ID_BYTES);
    mdb_txn_reset(x->rtxn);
    return rc ? bench_fail("lmdb: dialog: %s", mdb_strerror(rc)) : 0;
}

static int lm_del(bench_h *bh, const shmreg_id *id)
{
    lm_h *x = (lm_h *)bh;
    MDB_txn *t;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v;
    LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
    lm_rec h;
    int rc = mdb_get(t, x->sess, &k, &v);
    const char *d = rc == 0 ? rec_view(&v, &h) : NULL;
    if (d) {
        char kb[3 * SHMREG_MAX_STR + 2];
        const char *c = d;
        for (unsigned f = 0; f < SHMREG_FIELD_CALL_ID; f++)
            c += h.len[f];
        shmreg_str cid = {c, h.len[SHMREG_FIELD_CALL_ID]};
        shmreg_str lt = {c + cid.len, h.len[SHMREG_FIELD_LOCAL_TAG]};
        shmreg_str rt = {lt.ptr + lt.len, h.len[SHMREG_FIELD_REMOTE_TAG]};
        MDB_val dk = {dlg_key(kb, cid, lt, rt), kb};
        rc = mdb_del(t, x->dlg, &dk, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
        if (rc == 0)
            rc = mdb_del(t, x->sess, &k, NULL);
    }
    if (d == NULL || rc) {
        mdb_txn_abort(t);
        return bench_fail("lmdb: delete: %s", rc ? mdb_strerror(rc) : "bad record");
    }
    LM_CHECK(mdb_txn_commit(t));
    return 0;
}

/* Bulk load: many sessions per transaction (one per session would take
 * minutes at 1M); what is measured later is one transaction per call. */
static int lm_load(bench_h *bh, const bench_data *d, uint64_t from, uint64_t to, shmreg_id *ids)
{
    lm_h *x = (lm_h *)bh;
    bench_rec r;
    char kb[3 * SHMREG_MAX_STR + 2];
    for (uint64_t i = from; i < to;) {
        MDB_txn *t;
        LM_CHECK(mdb_txn_begin(x->env, NULL, 0, &t));
        int rc = 0;
        for (uint64_t end = i + 2000 < to ? i + 2000 : to; i < end && rc == 0; i++) {
            data_rec(d, i, &r);
            data_id(d, i, &ids[i]);
            rc = put_new(x, t, &r, &ids[i], 1, SHMREG_STATE_ACTIVE);
            MDB_val dk = {dlg_key(kb, r.f.str[SHMREG_FIELD_CALL_ID], r.f.str[SHMREG_FIELD_LOCAL_TAG],
                                  r.f.str[SHMREG_FIELD_REMOTE_TAG]), kb};
            MDB_val dv = {SHMREG_ID_BYTES, ids[i].bytes};
            if (rc == 0)
                rc = mdb_put(t, x->dlg, &dk, &dv, MDB_NOOVERWRITE);
        }
        if (rc) {
            mdb_txn_abort(t);
            return bench_fail("lmdb: load: %s", mdb_strerror(rc));
        }
        LM_CHECK(mdb_txn_commit(t));
    }
    return 0;
}

const bench_impl impl_lmdb = {
    .name = "lmdb",
    .what = "LMDB-only registry on /dev/shm, one transaction per call",
    .open = lm_open, .close = lm_close, .attach = lm_attach, .detach = lm_detach,
    .load = lm_load, .mem = lm_mem, .create = lm_create, .create_bound = lm_create_bound, .bind = lm_bind,
    .set_sdp = lm_set_sdp, .transition = lm_transition, .counter = lm_counter,
    .find_read = lm_find_read, .find_copy = lm_find_copy, .dialog_find = lm_dialog_find,
    .del = lm_del,
};
