/*
 * shmreg-bench-stores.c — three of the bench's stores: shmreg itself, its
 * copy-out variant, and the private in-process limit.
 *
 * shmreg is used exactly as the header tells users to: a read section
 * around each lookup, strings read where they lie. "copy" runs the same
 * lookups but copies both SDPs into a private buffer inside the read
 * section and reads the copy: the least a copying registry must do (it
 * would also take a lock), so shmreg/copy is what zero-copy buys.
 *
 * The limit is what a single process with no sharing at all could do:
 * fixed-size records in private memory (strings and both SDPs inline,
 * allocated once at setup, so create and delete allocate nothing), found
 * through open-addressing tables with linear probing, keyed like shmreg by
 * the random ID's own bits and, for dialogs, by a fast unkeyed hash. It
 * keeps the same fields and timestamps but publishes no events and needs
 * no atomics. Forked workers each get their own copy-on-write copy, so with
 * several processes it scales as if nothing were shared: the ideal curve.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ================================================================ shmreg */

typedef struct sr_store {
    char path[600];
} sr_store;

typedef struct sr_h {
    shmreg *h;
    sr_store *s;
    char *copybuf;        /* copy variant: where SDPs are copied to */
    shmreg_session v;
} sr_h;

static int sr_open(const bench_env *e, bench_store **out)
{
    sr_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SHMREG_ENOMEM;
    snprintf(s->path, sizeof s->path, "%s/shmreg", e->dir);
    /* Heap: the blocks of one session (info ~256 B, two SDPs, a dialog
     * record) rounded up generously, plus the pages each of the 4 shards
     * of each size class may hold partly carved. Sparse: costs nothing
     * until used. */
    uint64_t per = 1024 + 2 * (e->data->sdp_max + 512);
    shmreg_options o = {
        .flags = SHMREG_CREATE | SHMREG_EXCL,
        .max_sessions = (uint32_t)e->capacity,
        .heap_bytes = e->capacity * per + (256ull << 20),
    };
    shmreg *h;
    int rc = shmreg_open(s->path, &o, &h);
    if (rc) {
        free(s);
        return rc;
    }
    shmreg_close(h);
    *out = (bench_store *)s;
    return 0;
}

static void sr_close(bench_store *bs)
{
    sr_store *s = (sr_store *)bs;
    if (s) {
        shmreg_destroy(s->path, 1);
        free(s);
    }
}

static int sr_attach(bench_store *bs, bench_h **out)
{
    sr_store *s = (sr_store *)bs;
    sr_h *x = calloc(1, sizeof *x);
    if (x == NULL)
        return SHMREG_ENOMEM;
    x->s = s;
    x->copybuf = malloc(2 * SHMREG_MAX_SDP);
    int rc = x->copybuf ? shmreg_open(s->path, NULL, &x->h) : SHMREG_ENOMEM;
    if (rc) {
        free(x->copybuf);
        free(x);
        return rc;
    }
    *out = (bench_h *)x;
    return 0;
}

static void sr_detach(bench_h *bh)
{
    sr_h *x = (sr_h *)bh;
    if (x) {
        shmreg_close(x->h);
        free(x->copybuf);
        free(x);
    }
}

shmreg *bench_shmreg(bench_h *bh) { return ((sr_h *)bh)->h; }

static int sr_mem(bench_h *bh, uint64_t sessions, bench_mem *m)
{
    sr_h *x = (sr_h *)bh;
    shmreg_stats st;
    int rc = shmreg_stat(x->h, &st);
    if (rc)
        return rc;
    m->bytes = st.heap_used_bytes + st.session_slot_bytes * sessions;
    m->event_ring = st.event_ring_records;
    char seg[700];
    struct stat sb;
    snprintf(seg, sizeof seg, "%s/segment", x->s->path);
    m->resident = stat(seg, &sb) == 0 ? (uint64_t)sb.st_blocks * 512u : 0;
    m->what = "heap_used_bytes + session_slot_bytes (320) per session; resident: the whole segment file "
              "(index, handle table, 4 MiB event ring included)";
    return 0;
}

/* r's fields with its two SDPs (in sdp[], which must outlive the call). */
static shmreg_fields sr_fields_sdp(const bench_rec *r, shmreg_str sdp[2])
{
    shmreg_fields f = r->f;
    sdp[0] = (shmreg_str){r->sdp[0], r->sdp_len[0]};
    sdp[1] = (shmreg_str){r->sdp[1], r->sdp_len[1]};
    f.sdp = sdp;
    return f;
}

static int sr_create(bench_h *bh, const bench_rec *r, int with_sdp, shmreg_id *id)
{
    if (!with_sdp)
        return shmreg_session_create(((sr_h *)bh)->h, &r->f, id);
    shmreg_str sdp[2];
    shmreg_fields f = sr_fields_sdp(r, sdp);
    return shmreg_session_create(((sr_h *)bh)->h, &f, id);
}

static int sr_create_bound(bench_h *bh, const bench_rec *r, shmreg_id *id)
{
    shmreg_str sdp[2];
    shmreg_fields f = sr_fields_sdp(r, sdp);
    return shmreg_session_create_bound(((sr_h *)bh)->h, &f, r->f.str[SHMREG_FIELD_CALL_ID],
                                       r->f.str[SHMREG_FIELD_LOCAL_TAG], r->f.str[SHMREG_FIELD_REMOTE_TAG], id);
}

static int sr_bind(bench_h *bh, const bench_rec *r, const shmreg_id *id)
{
    return shmreg_dialog_bind(((sr_h *)bh)->h, r->f.str[SHMREG_FIELD_CALL_ID],
                              r->f.str[SHMREG_FIELD_LOCAL_TAG], r->f.str[SHMREG_FIELD_REMOTE_TAG], id);
}

static int sr_set_sdp(bench_h *bh, const shmreg_id *id, int which, const char *sdp, size_t len)
{
    return shmreg_session_set_sdp(((sr_h *)bh)->h, id, which, sdp, len);
}

static int sr_transition(bench_h *bh, const shmreg_id *id, int expected, int to)
{
    return shmreg_session_transition(((sr_h *)bh)->h, id, expected, to, NULL);
}

static int sr_counter(bench_h *bh, const shmreg_id *id, int ctr, uint64_t delta)
{
    return shmreg_session_counter_add(((sr_h *)bh)->h, id, ctr, delta);
}

static int sr_find_read(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    sr_h *x = (sr_h *)bh;
    shmreg_read_begin(x->h);
    int rc = shmreg_session_get(x->h, id, &x->v);
    if (rc == 0)
        *sink += (uint64_t)x->v.state + bench_touch(x->v.sdp[0].ptr, x->v.sdp[0].len) +
                 bench_touch(x->v.sdp[1].ptr, x->v.sdp[1].len);
    shmreg_read_end(x->h);
    return rc;
}

static int sr_find_copy(bench_h *bh, const shmreg_id *id, char *buf, uint64_t *sink)
{
    sr_h *x = (sr_h *)bh;
    shmreg_read_begin(x->h);
    int rc = shmreg_session_get(x->h, id, &x->v);
    size_t l0 = 0, l1 = 0;
    int state = 0;
    if (rc == 0) {
        state = x->v.state;
        l0 = x->v.sdp[0].len;
        l1 = x->v.sdp[1].len;
        memcpy(buf, x->v.sdp[0].ptr, l0);
        memcpy(buf + l0, x->v.sdp[1].ptr, l1);
    }
    shmreg_read_end(x->h);
    if (rc == 0)
        *sink += (uint64_t)state + bench_touch(buf, l0) + bench_touch(buf + l0, l1);
    return rc;
}

static int copy_find_read(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    return sr_find_copy(bh, id, ((sr_h *)bh)->copybuf, sink);
}

static int sr_pin(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    sr_h *x = (sr_h *)bh;
    shmreg_read_begin(x->h);
    int rc = shmreg_session_get(x->h, id, &x->v);
    if (rc == 0)
        *sink += bench_touch(x->v.sdp[0].ptr, x->v.sdp[0].len);
    else
        shmreg_read_end(x->h);
    return rc;
}

static void sr_unpin(bench_h *bh)
{
    shmreg_read_end(((sr_h *)bh)->h);
}

static int sr_dialog_find(bench_h *bh, const bench_rec *r, shmreg_id *out)
{
    return shmreg_dialog_find(((sr_h *)bh)->h, r->f.str[SHMREG_FIELD_CALL_ID],
                              r->f.str[SHMREG_FIELD_LOCAL_TAG], r->f.str[SHMREG_FIELD_REMOTE_TAG], out);
}

static int sr_del(bench_h *bh, const shmreg_id *id)
{
    return shmreg_session_delete(((sr_h *)bh)->h, id);
}

static int sr_publish(bench_h *bh, const shmreg_id *id, const void *data, size_t len)
{
    return shmreg_publish(((sr_h *)bh)->h, id, data, len);
}

static int sr_publish_batch(bench_h *bh, const shmreg_id *ids, const void *const *data, const size_t *len,
                            size_t n)
{
    return shmreg_publish_batch(((sr_h *)bh)->h, ids, data, len, n);
}

static int sr_publish_end(bench_h *bh)
{
    return shmreg_publish(((sr_h *)bh)->h, NULL, "END", 3);
}

typedef struct sr_sub {
    shmreg_sub *sub;
    shmreg_event ev[64];
} sr_sub;

static int sr_sub_open(bench_h *bh, void **out)
{
    sr_sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return SHMREG_ENOMEM;
    int rc = shmreg_subscribe(((sr_h *)bh)->h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &s->sub);
    if (rc) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static int sr_sub_poll(void *p, int *end, uint64_t *missed, uint64_t *sink)
{
    sr_sub *s = p;
    uint64_t m = 0;
    int n = shmreg_poll(s->sub, s->ev, 64, 1000000, &m);
    if (n < 0)
        return n;
    *missed += m;
    for (int i = 0; i < n; i++) {
        if (s->ev[i].len == 3)
            *end = 1;
        *sink += s->ev[i].seq + s->ev[i].data[0];
    }
    return n;
}

static void sr_sub_close(void *p)
{
    sr_sub *s = p;
    if (s) {
        shmreg_unsubscribe(s->sub);
        free(s);
    }
}

const bench_impl impl_shmreg = {
    .name = "shmreg",
    .what = "libshmreg: shared segment, lock-free reads in place",
    .open = sr_open, .close = sr_close, .attach = sr_attach, .detach = sr_detach,
    .mem = sr_mem, .create = sr_create, .create_bound = sr_create_bound, .bind = sr_bind, .set_sdp = sr_set_sdp,
    .transition = sr_transition, .counter = sr_counter, .find_read = sr_find_read,
    .find_copy = sr_find_copy, .dialog_find = sr_dialog_find, .del = sr_del,
    .publish = sr_publish, .sub_open = sr_sub_open, .sub_poll = sr_sub_poll,
    .sub_close = sr_sub_close, .publish_end = sr_publish_end, .pin = sr_pin, .unpin = sr_unpin,
    .publish_batch = sr_publish_batch, .cc = &cc_shmreg,
};

/* Reads copy out; everything else is shmreg's. */
const bench_impl impl_copy = {
    .name = "copy",
    .what = "libshmreg, but each read copies both SDPs out (what copying registries do)",
    .open = sr_open, .close = sr_close, .attach = sr_attach, .detach = sr_detach,
    .mem = sr_mem, .create = sr_create, .create_bound = sr_create_bound, .bind = sr_bind, .set_sdp = sr_set_sdp,
    .transition = sr_transition, .counter = sr_counter, .find_read = copy_find_read,
    .find_copy = sr_find_copy, .dialog_find = sr_dialog_find, .del = sr_del,
};

/* ================================================================ limit */

#define LIM_STRCAP 448u

typedef struct lim_rec {
    unsigned char id[SHMREG_ID_BYTES];
    uint32_t state;
    uint16_t port[2];
    uint64_t ctr[SHMREG_CTR_COUNT];
    uint64_t created_ns, updated_ns;
    uint16_t len[SHMREG_FIELD_STR_COUNT];
    uint32_t sdp_len[2];
    char *sdp[2];              /* inline, after the strings */
    char str[LIM_STRCAP];
} lim_rec;

typedef struct lim_store {
    size_t recsize, sdp_cap;
    uint64_t cap;              /* records */
    unsigned char *recs;       /* cap * recsize, lazily backed */
    uint32_t *free_idx;        /* stack of free record indices */
    uint64_t nfree;
    uint32_t *by_id, *by_dlg;  /* record index + 1; 0 = empty */
    uint64_t mask;
    /* events: a private ring of 64-byte records */
    unsigned char (*ring)[64];
    uint64_t ring_mask, ring_seq;
} lim_store;

static lim_rec *lim_at(lim_store *s, uint32_t i)
{
    return (lim_rec *)(s->recs + (size_t)i * s->recsize);
}

uint64_t bench_hash(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    for (; n >= 8; n -= 8, b += 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0x9e3779b97f4a7c15ull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, b, n);
    h = (h ^ w ^ n) * 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 31);
}

static uint64_t lim_dlg_hash(shmreg_str c, shmreg_str l, shmreg_str r)
{
    return bench_hash(r.ptr, r.len, bench_hash(l.ptr, l.len, bench_hash(c.ptr, c.len, 7)));
}

static uint64_t lim_id_hash(const unsigned char id[SHMREG_ID_BYTES])
{
    uint64_t x;
    memcpy(&x, id, 8);
    return x;
}

static shmreg_str lim_str(const lim_rec *r, unsigned f)
{
    size_t pos = 0;
    for (unsigned i = 0; i < f; i++)
        pos += r->len[i];
    return (shmreg_str){r->str + pos, r->len[f]};
}

static int str_eq(shmreg_str a, shmreg_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static int lim_open(const bench_env *e, bench_store **out)
{
    lim_store *s = calloc(1, sizeof *s);
    if (s == NULL)
        return bench_fail("out of memory");
    s->sdp_cap = e->data->sdp_max;
    s->recsize = (sizeof(lim_rec) + 2 * s->sdp_cap + 63) & ~(size_t)63;
    s->cap = e->capacity;
    uint64_t slots = 1024;
    while (slots < 2 * s->cap)
        slots <<= 1;
    s->mask = slots - 1;
    s->recs = mmap(NULL, s->cap * s->recsize, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    s->free_idx = malloc(s->cap * sizeof *s->free_idx);
    s->by_id = calloc(slots, sizeof *s->by_id);
    s->by_dlg = calloc(slots, sizeof *s->by_dlg);
    s->ring_mask = 65535;
    s->ring = calloc(s->ring_mask + 1, 64);
    if (s->recs == MAP_FAILED || !s->free_idx || !s->by_id || !s->by_dlg || !s->ring) {
        if (s->recs != MAP_FAILED)
            munmap(s->recs, s->cap * s->recsize);
        free(s->free_idx);
        free(s->by_id);
        free(s->by_dlg);
        free(s->ring);
        free(s);
        return bench_fail("limit: out of memory for %llu records", (unsigned long long)e->capacity);
    }
    for (uint64_t i = 0; i < s->cap; i++)
        s->free_idx[i] = (uint32_t)(s->cap - 1 - i);
    s->nfree = s->cap;
    *out = (bench_store *)s;
    return 0;
}

static void lim_close(bench_store *bs)
{
    lim_store *s = (lim_store *)bs;
    if (s == NULL)
        return;
    munmap(s->recs, s->cap * s->recsize);
    free(s->free_idx);
    free(s->by_id);
    free(s->by_dlg);
    free(s->ring);
    free(s);
}

/* The store is private memory: a "handle" is the store itself (a forked
 * worker's is its own copy-on-write copy). */
static int lim_attach(bench_store *bs, bench_h **out)
{
    *out = (bench_h *)bs;
    return 0;
}

static void lim_detach(bench_h *h) { (void)h; }

static int lim_mem(bench_h *bh, uint64_t sessions, bench_mem *m)
{
    lim_store *s = (lim_store *)bh;
    /* The tables are sized for the bench's capacity; count what a table
     * sized for these sessions (load factor 1/2) would need. */
    m->bytes = sessions * (s->recsize + 2 * 2 * sizeof(uint32_t));
    m->resident = 0;
    m->what = "fixed-size records (SDP capacity inline) + both tables at load 1/2";
    return 0;
}

/* Slot of id in by_id, or of the empty slot where it would go. */
static uint64_t lim_probe(lim_store *s, const unsigned char id[SHMREG_ID_BYTES], int *found)
{
    for (uint64_t p = lim_id_hash(id) & s->mask;; p = (p + 1) & s->mask) {
        uint32_t v = s->by_id[p];
        if (v == 0) {
            *found = 0;
            return p;
        }
        if (memcmp(lim_at(s, v - 1)->id, id, SHMREG_ID_BYTES) == 0) {
            *found = 1;
            return p;
        }
    }
}

static lim_rec *lim_find(lim_store *s, const shmreg_id *id)
{
    int found;
    uint64_t p = lim_probe(s, id->bytes, &found);
    return found ? lim_at(s, s->by_id[p] - 1) : NULL;
}

static uint64_t lim_dlg_probe(lim_store *s, shmreg_str c, shmreg_str l, shmreg_str r, int *found)
{
    for (uint64_t p = lim_dlg_hash(c, l, r) & s->mask;; p = (p + 1) & s->mask) {
        uint32_t v = s->by_dlg[p];
        if (v == 0) {
            *found = 0;
            return p;
        }
        const lim_rec *x = lim_at(s, v - 1);
        if (str_eq(lim_str(x, SHMREG_FIELD_CALL_ID), c) && str_eq(lim_str(x, SHMREG_FIELD_LOCAL_TAG), l) &&
            str_eq(lim_str(x, SHMREG_FIELD_REMOTE_TAG), r)) {
            *found = 1;
            return p;
        }
    }
}

/* Linear probing deletion by backward shift: no tombstones, so lookups
 * never slow down with churn. `home` gives an entry's ideal slot. */
static void lim_unslot(lim_store *s, uint32_t *tab, uint64_t hole, uint64_t (*home)(lim_store *, uint32_t))
{
    for (uint64_t p = (hole + 1) & s->mask;; p = (p + 1) & s->mask) {
        uint32_t v = tab[p];
        if (v == 0)
            break;
        uint64_t h = home(s, v);
        /* move v into the hole unless its home lies cyclically in (hole, p] */
        if (((p - h) & s->mask) >= ((p - hole) & s->mask)) {
            tab[hole] = v;
            hole = p;
        }
    }
    tab[hole] = 0;
}

static uint64_t lim_home_id(lim_store *s, uint32_t v)
{
    return lim_id_hash(lim_at(s, v - 1)->id) & s->mask;
}

static uint64_t lim_home_dlg(lim_store *s, uint32_t v)
{
    const lim_rec *x = lim_at(s, v - 1);
    return lim_dlg_hash(lim_str(x, SHMREG_FIELD_CALL_ID), lim_str(x, SHMREG_FIELD_LOCAL_TAG),
                        lim_str(x, SHMREG_FIELD_REMOTE_TAG)) & s->mask;
}

/* Insert a record for r under `id` (not yet bound), with r's SDPs or none. */
static int lim_insert(lim_store *s, const bench_rec *r, int with_sdp, const shmreg_id *id)
{
    if (s->nfree == 0)
        return bench_fail("limit: table full");
    size_t total = 0;
    for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++)
        total += r->f.str[f].len;
    if (total > LIM_STRCAP || (with_sdp && (r->sdp_len[0] > s->sdp_cap || r->sdp_len[1] > s->sdp_cap)))
        return bench_fail("limit: strings or an SDP too long");
    int found;
    uint64_t p = lim_probe(s, id->bytes, &found);
    if (found)
        return bench_fail("limit: duplicate id");
    uint32_t i = s->free_idx[--s->nfree];
    lim_rec *x = lim_at(s, i);
    memcpy(x->id, id->bytes, SHMREG_ID_BYTES);
    x->state = SHMREG_STATE_INITIATING;
    x->port[0] = r->f.local_rtp_port;
    x->port[1] = r->f.remote_rtp_port;
    memset(x->ctr, 0, sizeof x->ctr);
    x->created_ns = x->updated_ns = real_ns();
    char *q = x->str;
    for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++) {
        x->len[f] = (uint16_t)r->f.str[f].len;
        if (r->f.str[f].len) /* an empty field may have a NULL ptr */
            memcpy(q, r->f.str[f].ptr, r->f.str[f].len);
        q += r->f.str[f].len;
    }
    x->sdp[0] = (char *)(x + 1);
    x->sdp[1] = x->sdp[0] + s->sdp_cap;
    for (unsigned w = 0; w < 2; w++) {
        x->sdp_len[w] = with_sdp ? (uint32_t)r->sdp_len[w] : 0;
        if (x->sdp_len[w])
            memcpy(x->sdp[w], r->sdp[w], x->sdp_len[w]);
    }
    s->by_id[p] = i + 1;
    return 0;
}

static int lim_create(bench_h *bh, const bench_rec *r, int with_sdp, shmreg_id *id)
{
    /* IDs as random as shmreg's, from a private counter (no syscall). */
    static uint64_t ctr;
    uint64_t a = (++ctr + (uint64_t)getpid() * 0x632be59bd9b4e019ull) * 0x9e3779b97f4a7c15ull;
    a ^= a >> 29;
    a *= 0xbf58476d1ce4e5b9ull;
    memcpy(id->bytes, &a, 8);
    memcpy(id->bytes + 8, &ctr, 8);
    return lim_insert((lim_store *)bh, r, with_sdp, id);
}

static int lim_bind(bench_h *bh, const bench_rec *r, const shmreg_id *id)
{
    lim_store *s = (lim_store *)bh;
    int found;
    uint64_t p = lim_probe(s, id->bytes, &found);
    if (!found)
        return bench_fail("limit: no such session");
    uint32_t v = s->by_id[p];
    uint64_t q = lim_dlg_probe(s, r->f.str[SHMREG_FIELD_CALL_ID], r->f.str[SHMREG_FIELD_LOCAL_TAG],
                               r->f.str[SHMREG_FIELD_REMOTE_TAG], &found);
    if (found)
        return bench_fail("limit: dialog exists");
    s->by_dlg[q] = v;
    return 0;
}

static int lim_set_sdp(bench_h *bh, const shmreg_id *id, int which, const char *sdp, size_t len)
{
    lim_store *s = (lim_store *)bh;
    lim_rec *x = lim_find(s, id);
    if (x == NULL || len > s->sdp_cap)
        return bench_fail("limit: no such session or SDP too long");
    memcpy(x->sdp[which], sdp, len);
    x->sdp_len[which] = (uint32_t)len;
    x->updated_ns = real_ns();
    return 0;
}

static int lim_transition(bench_h *bh, const shmreg_id *id, int expected, int to)
{
    lim_rec *x = lim_find((lim_store *)bh, id);
    if (x == NULL)
        return bench_fail("limit: no such session");
    if (expected && (int)x->state != expected)
        return bench_fail("limit: state conflict");
    if (!shmreg_state_allowed((int)x->state, to))
        return bench_fail("limit: transition not allowed");
    x->state = (uint32_t)to;
    x->updated_ns = real_ns();
    return 0;
}

static int lim_counter(bench_h *bh, const shmreg_id *id, int ctr, uint64_t delta)
{
    lim_rec *x = lim_find((lim_store *)bh, id);
    if (x == NULL)
        return bench_fail("limit: no such session");
    x->ctr[ctr] += delta;
    return 0;
}

static int lim_find_read(bench_h *bh, const shmreg_id *id, uint64_t *sink)
{
    lim_rec *x = lim_find((lim_store *)bh, id);
    if (x == NULL)
        return bench_fail("limit: no such session");
    *sink += x->state + bench_touch(x->sdp[0], x->sdp_len[0]) + bench_touch(x->sdp[1], x->sdp_len[1]);
    return 0;
}

static int lim_find_copy(bench_h *bh, const shmreg_id *id, char *buf, uint64_t *sink)
{
    lim_rec *x = lim_find((lim_store *)bh, id);
    if (x == NULL)
        return bench_fail("limit: no such session");
    size_t l0 = x->sdp_len[0], l1 = x->sdp_len[1];
    memcpy(buf, x->sdp[0], l0);
    memcpy(buf + l0, x->sdp[1], l1);
    *sink += x->state + bench_touch(buf, l0) + bench_touch(buf + l0, l1);
    return 0;
}

static int lim_dialog_find(bench_h *bh, const bench_rec *r, shmreg_id *out)
{
    lim_store *s = (lim_store *)bh;
    int found;
    uint64_t p = lim_dlg_probe(s, r->f.str[SHMREG_FIELD_CALL_ID], r->f.str[SHMREG_FIELD_LOCAL_TAG],
                               r->f.str[SHMREG_FIELD_REMOTE_TAG], &found);
    if (!found)
        return bench_fail("limit: no such dialog");
    memcpy(out->bytes, lim_at(s, s->by_dlg[p] - 1)->id, SHMREG_ID_BYTES);
    return 0;
}

static int lim_del(bench_h *bh, const shmreg_id *id)
{
    lim_store *s = (lim_store *)bh;
    int found;
    uint64_t p = lim_probe(s, id->bytes, &found);
    if (!found)
        return bench_fail("limit: no such session");
    uint32_t v = s->by_id[p];
    lim_rec *x = lim_at(s, v - 1);
    uint64_t q = lim_dlg_probe(s, lim_str(x, SHMREG_FIELD_CALL_ID), lim_str(x, SHMREG_FIELD_LOCAL_TAG),
                               lim_str(x, SHMREG_FIELD_REMOTE_TAG), &found);
    if (found)
        lim_unslot(s, s->by_dlg, q, lim_home_dlg);
    lim_unslot(s, s->by_id, p, lim_home_id);
    s->free_idx[s->nfree++] = v - 1;
    return 0;
}

static int lim_load(bench_h *bh, const bench_data *d, uint64_t from, uint64_t to, shmreg_id *ids)
{
    lim_store *s = (lim_store *)bh;
    bench_rec r;
    for (uint64_t i = from; i < to; i++) {
        data_rec(d, i, &r);
        data_id(d, i, &ids[i]);
        int rc = lim_insert(s, &r, 1, &ids[i]);
        if (rc == 0)
            rc = lim_bind(bh, &r, &ids[i]);
        if (rc == 0)
            rc = lim_transition(bh, &ids[i], SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE);
        if (rc)
            return rc;
    }
    return 0;
}

/* Events: a private ring, the limit of any publish/consume. */
static int lim_publish(bench_h *bh, const shmreg_id *id, const void *data, size_t len)
{
    lim_store *s = (lim_store *)bh;
    unsigned char *slot = s->ring[s->ring_seq & s->ring_mask];
    uint64_t now = real_ns(), seq = s->ring_seq++;
    memcpy(slot, &seq, 8);
    memcpy(slot + 8, &now, 8);
    memcpy(slot + 16, id ? id->bytes : (const unsigned char *)"\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", SHMREG_ID_BYTES);
    memcpy(slot + 32, data, len < 32 ? len : 32);
    return 0;
}

typedef struct lim_sub {
    lim_store *s;
    uint64_t next;
    unsigned char out[64][64];
} lim_sub;

static int lim_sub_open(bench_h *bh, void **out)
{
    lim_sub *u = calloc(1, sizeof *u);
    if (u == NULL)
        return bench_fail("out of memory");
    u->s = (lim_store *)bh;
    *out = u;
    return 0;
}

/* Copy 64 records out of the private ring (prefilled at subscribe time by
 * the driver's publishes; it wraps around, there is no producer). */
static int lim_sub_poll(void *p, int *end, uint64_t *missed, uint64_t *sink)
{
    lim_sub *u = p;
    (void)end;
    (void)missed;
    for (unsigned i = 0; i < 64; i++) {
        memcpy(u->out[i], u->s->ring[u->next++ & u->s->ring_mask], 64);
        *sink += u->out[i][0];
    }
    return 64;
}

static void lim_sub_close(void *p) { free(p); }

const bench_impl impl_limit = {
    .name = "limit",
    .what = "private open-addressing hash table in this process (no sharing): the ceiling",
    .open = lim_open, .close = lim_close, .attach = lim_attach, .detach = lim_detach,
    .load = lim_load, .mem = lim_mem, .create = lim_create, .bind = lim_bind,
    .set_sdp = lim_set_sdp, .transition = lim_transition, .counter = lim_counter,
    .find_read = lim_find_read, .find_copy = lim_find_copy, .dialog_find = lim_dialog_find,
    .del = lim_del, .publish = lim_publish, .sub_open = lim_sub_open,
    .sub_poll = lim_sub_poll, .sub_close = lim_sub_close, .cc = &cc_limit,
};
