/*
 * shmreg-bench-control.c — call control in the bench's stores: profiles
 * with limits, timeouts and their sweep, lookup by user (bench_cc in
 * shmreg-bench.h), for shmreg and, where it has a meaning, the limit.
 *
 * shmreg does what a worker of a SIP server does: shmreg_profile_join
 * with a limit and shmreg_profile_leave (admission), shmreg_profile_count,
 * shmreg_expire, shmreg_session_by_user. Its baselines, in the same run:
 *
 *   - admission and counts: the limit, a private (profile, value) ->
 *     count table in each process, no membership kept, nothing shared:
 *     what no shared registry can beat;
 *   - the sweep: due_scan, which only finds what is due by walking the
 *     whole table (shmreg_session_next): what an application without a
 *     timer wheel must do before it can fire anything. It claims nothing
 *     and publishes nothing (the workload disarms what it found,
 *     untimed), so the ratio is if anything in the scan's favour;
 *   - lookup by user: user_scan, a walk of the whole table comparing the
 *     From URI byte for byte (cheaper than the index's normalised key).
 *
 * No operation allocates: buffers are fixed, per process.
 */
#include <string.h>
#include <time.h>

#include "shmreg-bench.h"

#define SWEEP_BATCH 256u      /* shmreg_expire's out[] */
#define SCAN_SECTION 4096u    /* sessions looked at per read section */

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ================================================================ shmreg */

static int sr_join(bench_h *bh, const shmreg_id *id, shmreg_str p, shmreg_str v, uint32_t limit)
{
    return shmreg_profile_join(bench_shmreg(bh), id, p, v, limit, NULL);
}

static int sr_leave(bench_h *bh, const shmreg_id *id, shmreg_str p, shmreg_str v)
{
    return shmreg_profile_leave(bench_shmreg(bh), id, p, v);
}

static int sr_count(bench_h *bh, shmreg_str p, shmreg_str v, uint64_t *count)
{
    return shmreg_profile_count(bench_shmreg(bh), p, v, count);
}

static int sr_arm(bench_h *bh, const shmreg_id *id, uint64_t when)
{
    return shmreg_session_set_timeout(bench_shmreg(bh), id, when,
                                      when ? SHMREG_TIMEOUT_NOTIFY : SHMREG_TIMEOUT_FAIL, 0);
}

static int sr_sweep(bench_h *bh, uint64_t *fired)
{
    static shmreg_expired out[SWEEP_BATCH];
    int n;
    do {
        if ((n = shmreg_expire(bench_shmreg(bh), 0, out, SWEEP_BATCH)) < 0)
            return n;
        *fired += (uint64_t)n;
    } while (n == (int)SWEEP_BATCH);
    return 0;
}

/* The baselines' walk: every session of the table, in read sections of
 * SCAN_SECTION sessions, handed to `each` in place. */
static inline int walk_table(shmreg *h, void (*each)(void *arg, const shmreg_session *s), void *arg)
{
    shmreg_session s;
    uint64_t cur = 0;
    int rc = 0;
    while (rc == 0) {
        shmreg_read_begin(h);
        for (unsigned i = 0; i < SCAN_SECTION; i++) {
            if ((rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s)) != 0)
                break;
            each(arg, &s);
        }
        shmreg_read_end(h);
    }
    return rc == SHMREG_ENOENT ? 0 : rc;
}

typedef struct due_walk {
    uint64_t now, cap, n;
    shmreg_id *due;
} due_walk;

static void due_each(void *arg, const shmreg_session *s)
{
    due_walk *d = arg;
    if (s->deadline_ns && s->deadline_ns <= d->now && d->n < d->cap)
        d->due[d->n++] = s->id;
}

static int sr_due_scan(bench_h *bh, shmreg_id *due, uint64_t cap, uint64_t *n)
{
    due_walk d = {.now = wall_ns(), .cap = cap, .due = due};
    int rc = walk_table(bench_shmreg(bh), due_each, &d);
    *n = d.n;
    return rc;
}

static int sr_user_find(bench_h *bh, shmreg_str from, uint64_t *sink)
{
    shmreg *h = bench_shmreg(bh);
    shmreg_session s;
    uint64_t cur = 0, n = 0;
    int rc;
    shmreg_read_begin(h);
    while ((rc = shmreg_session_by_user(h, from, SHMREG_USER_FROM, &cur, &s)) == 0) {
        *sink += (uint64_t)s.state + s.str[SHMREG_FIELD_FROM_URI].len;
        n++;
    }
    shmreg_read_end(h);
    return rc != SHMREG_ENOENT ? rc : n ? 0 : SHMREG_ENOENT; /* the caller always has a call */
}

typedef struct user_walk {
    shmreg_str from;
    uint64_t n, sink;
} user_walk;

static void user_each(void *arg, const shmreg_session *s)
{
    user_walk *u = arg;
    shmreg_str f = s->str[SHMREG_FIELD_FROM_URI];
    if (f.len == u->from.len && memcmp(f.ptr, u->from.ptr, f.len) == 0) {
        u->sink += (uint64_t)s->state + f.len;
        u->n++;
    }
}

static int sr_user_scan(bench_h *bh, shmreg_str from, uint64_t *sink)
{
    user_walk u = {.from = from};
    int rc = walk_table(bench_shmreg(bh), user_each, &u);
    *sink += u.sink;
    return rc ? rc : u.n ? 0 : SHMREG_ENOENT;
}

const bench_cc cc_shmreg = {
    .join = sr_join, .leave = sr_leave, .count = sr_count, .arm = sr_arm, .sweep = sr_sweep,
    .due_scan = sr_due_scan, .user_find = sr_user_find, .user_scan = sr_user_scan,
};

/* ================================================================ limit */

/* (profile, value) -> count, open addressing in private memory (each
 * forked worker has its own copy): the ceiling of admission. */
#define LIM_PAIRS 1024u

typedef struct lim_pair {
    uint64_t count;
    uint16_t plen, vlen;          /* plen 0: empty slot */
    char key[SHMREG_MAX_PROFILE_NAME + SHMREG_MAX_PROFILE_VALUE];
} lim_pair;

static lim_pair pairs[LIM_PAIRS];

static lim_pair *lim_pair_of(shmreg_str p, shmreg_str v, int add)
{
    if (p.len == 0 || p.len > SHMREG_MAX_PROFILE_NAME || v.len > SHMREG_MAX_PROFILE_VALUE)
        return NULL;
    uint64_t i = bench_hash(v.ptr, v.len, bench_hash(p.ptr, p.len, 11));
    for (unsigned probe = 0; probe < LIM_PAIRS; probe++, i++) {
        lim_pair *x = &pairs[i % LIM_PAIRS];
        if (x->plen == 0) {
            if (!add)
                return NULL;
            x->plen = (uint16_t)p.len;
            x->vlen = (uint16_t)v.len;
            memcpy(x->key, p.ptr, p.len);
            if (v.len)
                memcpy(x->key + p.len, v.ptr, v.len);
            return x;
        }
        if (x->plen == p.len && x->vlen == v.len && memcmp(x->key, p.ptr, p.len) == 0 &&
            (v.len == 0 || memcmp(x->key + p.len, v.ptr, v.len) == 0))
            return x;
    }
    return NULL;
}

static int lim_join(bench_h *bh, const shmreg_id *id, shmreg_str p, shmreg_str v, uint32_t limit)
{
    (void)bh;
    (void)id;
    lim_pair *x = lim_pair_of(p, v, 1);
    if (x == NULL)
        return bench_fail("limit: no room for the pair");
    if (limit && x->count >= limit)
        return bench_fail("limit: at the limit");
    x->count++;
    return 0;
}

static int lim_leave(bench_h *bh, const shmreg_id *id, shmreg_str p, shmreg_str v)
{
    (void)bh;
    (void)id;
    lim_pair *x = lim_pair_of(p, v, 0);
    if (x == NULL || x->count == 0)
        return bench_fail("limit: not a member");
    x->count--;
    return 0;
}

static int lim_count(bench_h *bh, shmreg_str p, shmreg_str v, uint64_t *count)
{
    (void)bh;
    lim_pair *x = lim_pair_of(p, v, 0);
    *count = x ? x->count : 0;
    return 0;
}

const bench_cc cc_limit = {.join = lim_join, .leave = lim_leave, .count = lim_count};
