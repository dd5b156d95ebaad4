/*
 * shmreg-bench.c — measure shmreg against what users would pick instead
 * (Redis, plain LMDB, a copying registry) and against the limit (a private
 * hash table), side by side, in one run, on one machine, on the same data.
 *
 *   shmreg-bench                 quick profile (under a minute)
 *   shmreg-bench --full          everything: 1k..1M sessions, 1..8 processes
 *   shmreg-bench --json          one JSON document on stdout instead of tables
 *   shmreg-bench --plot F.svg    also draw the process-scaling chart (gnuplot)
 *   shmreg-bench --help          the other knobs
 *
 * How a number is made. For each (sessions, store) the parent creates the
 * store and loads it, then for each (workload, processes) forks that many
 * workers. Each worker opens its own handle after fork (LMDB and shmreg
 * both require it) and warms up (touching what it will use, as a worker
 * that has run for a while has), then runs R repetitions of the workload,
 * each for a fixed time, all workers starting each one together from a
 * futex barrier in shared memory. Throughput is operations over wall time,
 * summed over workers; the fastest repetition is reported, because this
 * machine is shared and a slower repetition measures the neighbours, not
 * the store (all repetitions are in the JSON). One operation in 16 is
 * timed on its own with rdtsc/rdtscp (the empty-timer cost is subtracted)
 * into a log-linear histogram: p50/p99 are of single operations, and the
 * other 15 run untimed so the timer costs the throughput figure about 1/16
 * of its own ~10 ns. Allocations are counted in each worker by the bench's
 * malloc counter (t/alloc_count.c) over exactly the timed loop. What a
 * workload changes (created sessions, transitions) is put back untimed, so
 * every measurement starts from the same registry.
 *
 * The workloads are written once against the bench_impl API
 * (shmreg-bench.h), so every store runs the very same loop, key choice and
 * data; the stores are in shmreg-bench-stores.c, -lmdb.c and -redis.c.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

/* ================================================================ workloads */

enum {
    WL_CREATE, WL_FIND_READ, WL_FIND_COPY, WL_TRANSITION, WL_SDP_REPLACE, WL_DIALOG_FIND,
    WL_COUNTER, WL_EVENT_PUBLISH, WL_EVENT_CONSUME, WL_LIFECYCLE, WL_REPLACE_PINNED, WL_COUNT
};

static const struct {
    const char *name, *what;
    int read;     /* a read workload: scaling target applies */
    int write;    /* changes per-session state: each worker owns a partition */
} WL[WL_COUNT] = {
    [WL_CREATE] = {"create", "create + dialog bind + both SDPs (4 calls)", 0, 0},
    [WL_FIND_READ] = {"find_read", "find by ID + read both SDPs in place", 1, 0},
    [WL_FIND_COPY] = {"find_copy", "find by ID + copy both SDPs out, read the copy", 1, 0},
    [WL_TRANSITION] = {"transition", "state compare-and-set Active <-> OnHold", 0, 1},
    [WL_SDP_REPLACE] = {"sdp_replace", "replace one SDP (same size, new bytes)", 0, 1},
    [WL_DIALOG_FIND] = {"dialog_find", "find session by Call-ID + tags", 1, 0},
    [WL_COUNTER] = {"counter", "RTP counter add", 0, 0},
    [WL_EVENT_PUBLISH] = {"event_publish", "publish a custom event (no subscriber)", 0, 0},
    [WL_EVENT_CONSUME] = {"event_consume", "procs = subscribers, each receives every event of 1 producer", 0, 0},
    [WL_LIFECYCLE] = {"lifecycle", "SIP-like call: create, bind, 3 transitions, 2 SDPs, 20 lookups, delete", 0, 0},
    [WL_REPLACE_PINNED] = {"replace_pinned", "sdp_replace while another process holds one read section "
                           "open through each repetition (a stuck reader)", 0, 1},
};

static const bench_impl *const IMPLS[IMPL_COUNT] = {
    [IMPL_SHMREG] = &impl_shmreg, [IMPL_COPY] = &impl_copy, [IMPL_LIMIT] = &impl_limit,
    [IMPL_LMDB] = &impl_lmdb, [IMPL_REDIS] = &impl_redis,
};

/* The store an impl runs on (copy shares shmreg's registry). */
static int backend_of(int impl) { return impl == IMPL_COPY ? IMPL_SHMREG : impl; }

static int supports(int wl, int impl)
{
    const bench_impl *im = IMPLS[impl];
    switch (wl) {
    case WL_FIND_READ:
    case WL_LIFECYCLE:
        return 1;
    case WL_EVENT_PUBLISH:
    case WL_EVENT_CONSUME:
        return im->publish != NULL;
    case WL_REPLACE_PINNED:
        return im->pin != NULL;
    default: /* copy differs from shmreg only in how it reads */
        return impl != IMPL_COPY;
    }
}

/* ================================================================ options, plan */

typedef struct plan {
    const char *name;
    double duration;              /* seconds per repetition */
    int reps;                     /* repetitions per measurement; the best is kept */
    uint64_t points[8];           /* session counts the workloads run at */
    int npoints;
    uint64_t mem_points[8];       /* session counts measured for memory only */
    int nmem;
    uint64_t create_cap;          /* sessions one create measurement may add */
    unsigned procs_override[16];
    int nprocs_override;
} plan;

static struct {
    int full, json, no_redis, reps;
    const char *plot;
    double duration;
    size_t sdp_bytes;
    unsigned sdp_spread;
    uint64_t seed;
    uint64_t sessions;
    unsigned wl_mask, impl_mask;
} opt = {.sdp_bytes = 1024, .sdp_spread = 25, .seed = 1, .wl_mask = ~0u, .impl_mask = ~0u};

static plan P;

/* The session count the headline figures and targets are taken at. */
static uint64_t main_point(void) { return P.points[P.npoints > 1 ? 1 : 0]; }

/* Processes to run a workload with at a given session count (0: not run
 * there). Quick: everything at 10k sessions, read workloads also at 1k
 * (their data in cache: what the registry itself costs) and with 1, 2 and
 * 4 processes. Full: everything everywhere, 1..8 processes at 10k. */
static int procs_for(uint64_t point, int wl, unsigned *out)
{
    static const unsigned one[] = {1}, q3[] = {1, 2, 4}, q2[] = {1, 2}, f4[] = {1, 2, 4, 8}, f2[] = {1, 4};
    int scaled = WL[wl].read || wl == WL_EVENT_CONSUME;
    const unsigned *l = one;
    int n = 1;
    if (P.nprocs_override) {
        memcpy(out, P.procs_override, sizeof(unsigned) * (size_t)P.nprocs_override);
        return P.nprocs_override;
    }
    if (!opt.full && P.npoints > 1 && point != main_point()) {
        if (!WL[wl].read)
            return 0;
    } else if (!opt.full) {
        if (WL[wl].read)
            l = q3, n = 3;
        else if (wl == WL_EVENT_CONSUME)
            l = q2, n = 2;
    } else if (point == main_point()) {
        l = f4, n = 4;
    } else if (scaled) {
        l = f2, n = 2;
    }
    memcpy(out, l, sizeof(unsigned) * (size_t)n);
    return n;
}

/* ================================================================ results */

typedef struct result {
    int wl, impl;
    unsigned procs;
    uint64_t sessions;
    double ops_per_s, allocs_per_op, faults_per_op;
    uint64_t ops, p50, p99, rss_kib;
    double published_per_s;       /* event_consume: the producer's rate */
    uint64_t missed;              /* event_consume: events subscribers missed */
    double rep_ops[8];            /* ops/s of every repetition (at most 8) */
    int nreps;
    int ok;
    char err[240];
} result;

typedef struct memres {
    int impl;
    uint64_t sessions, bytes, resident, payload;
    const char *what;
} memres;

static result *RES;
static size_t nres;
static memres MEM[64];
static size_t nmem;
static char skipped[8][160];
static int nskipped;
static char redis_sock[200];
static int have_redis;
static uint64_t max_worker_rss;
static char scratch[200];
static pid_t parent_pid;
static double harness_pick_ns, harness_key_ns;
/* Event bus end-to-end latency (measure_event_latency). */
static struct {
    uint64_t p50, p99;
    uint64_t received, missed;
    int ok;
} LAT;
static double others_cpus = -1, steal_cpus; /* other processes' CPU use during the run */
static char cmdline[512];
static bench_data DATA;

static void note_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void note_skip(const char *fmt, ...)
{
    if (nskipped >= 8)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(skipped[nskipped++], sizeof skipped[0], fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", skipped[nskipped - 1]);
}

static result *res_new(void)
{
    RES = realloc(RES, (nres + 1) * sizeof *RES);
    if (RES == NULL) {
        fprintf(stderr, "shmreg-bench: out of memory\n");
        exit(1);
    }
    memset(&RES[nres], 0, sizeof *RES);
    return &RES[nres++];
}

static const result *res_find(int wl, int impl, unsigned procs, uint64_t sessions)
{
    for (size_t i = 0; i < nres; i++)
        if (RES[i].ok && RES[i].wl == wl && RES[i].impl == impl && RES[i].procs == procs &&
            RES[i].sessions == sessions)
            return &RES[i];
    return NULL;
}

/* ================================================================ shared area */

#define MAX_PROCS 64
#define MAX_REPS 8

/* One worker's figures for one repetition. */
typedef struct wrep {
    uint64_t ops, elapsed_ns, allocs, missed, minflt;
    uint64_t hist[HIST_BUCKETS];
} wrep;

typedef struct wres {
    _Atomic uint64_t progress;    /* event_consume: events delivered so far */
    uint64_t rss_kib;
    int err;
    char errmsg[200];
    wrep rep[MAX_REPS];
} wres;

/* The barrier: before repetition k every worker adds 1 to `ready` and
 * sleeps until `go` > k; the parent raises `go` once ready = (k+1) * nw,
 * so all workers start each repetition together. */
typedef struct shared {
    _Atomic uint32_t ready, go;
    uint32_t nsubs;
    uint64_t ring_cap;            /* producer may run this far ahead */
    wres w[MAX_PROCS + 1];
} shared;

static shared *SH;

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static void wait_go(uint32_t rep)
{
    atomic_fetch_add(&SH->ready, 1);
    for (uint32_t g; (g = atomic_load(&SH->go)) <= rep;)
        futex_wait(&SH->go, g);
}

/* ================================================================ the worker */

#define OP_STOP 1   /* an op's "no more room": ends the loop early, not an error */

typedef struct wctx {
    const bench_impl *im;
    int impl;
    bench_h *h;
    const shmreg_id *ids;
    uint64_t n, mine;             /* sessions; how many are this worker's */
    unsigned w, nw;
    uint64_t rng, sink, seq;
    char *buf;
    uint8_t *state;               /* write partition: 0 Active, 1 OnHold */
    uint8_t *variant;             /* sdp_replace: next (which, variant) */
    shmreg_id *made;
    uint64_t nmade, made_cap, next_key;
    bench_rec rec;
} wctx;

static inline uint64_t rnd(wctx *c)
{
    c->rng ^= c->rng >> 12;
    c->rng ^= c->rng << 25;
    c->rng ^= c->rng >> 27;
    return c->rng * 0x2545f4914f6cdd1dull;
}

static inline uint64_t pick(wctx *c)
{
    return (uint64_t)(((unsigned __int128)rnd(c) * c->n) >> 64);
}

/* A session of this worker's partition (i = w + nw * j); *j its slot. */
static inline uint64_t pick_mine(wctx *c, uint64_t *j)
{
    *j = (uint64_t)(((unsigned __int128)rnd(c) * c->mine) >> 64);
    return c->w + c->nw * *j;
}

static int op_find_read(wctx *c) { return c->im->find_read(c->h, &c->ids[pick(c)], &c->sink); }

static int op_find_copy(wctx *c) { return c->im->find_copy(c->h, &c->ids[pick(c)], c->buf, &c->sink); }

static int op_counter(wctx *c)
{
    return c->im->counter(c->h, &c->ids[pick(c)], SHMREG_CTR_PACKETS_RECEIVED, 1);
}

static int op_dialog_find(wctx *c)
{
    shmreg_id out;
    data_keys(&DATA, pick(c), &c->rec);
    int rc = c->im->dialog_find(c->h, &c->rec, &out);
    c->sink += out.bytes[0];
    return rc;
}

static int op_transition(wctx *c)
{
    uint64_t j, i = pick_mine(c, &j);
    int from = c->state[j] ? SHMREG_STATE_ONHOLD : SHMREG_STATE_ACTIVE;
    int to = c->state[j] ? SHMREG_STATE_ACTIVE : SHMREG_STATE_ONHOLD;
    int rc = c->im->transition(c->h, &c->ids[i], from, to);
    if (rc == 0)
        c->state[j] ^= 1;
    return rc;
}

static int op_sdp_replace(wctx *c)
{
    uint64_t j, i = pick_mine(c, &j);
    unsigned v = c->variant[j]++;
    int which = (int)(v & 1);
    return c->im->set_sdp(c->h, &c->ids[i], which, data_sdp_variant(&DATA, i, which, (int)(v >> 1 & 1)),
                          data_sdp_len(&DATA, i, which));
}

static int op_publish(wctx *c)
{
    uint64_t data[2] = {++c->seq, c->w};
    return c->im->publish(c->h, &c->ids[pick(c)], data, sizeof data);
}

/* Sessions made by create and lifecycle get data indices far above the
 * loaded ones, distinct per worker, so their dialogs never collide. */
static uint64_t fresh_key(wctx *c)
{
    return c->n + ((uint64_t)c->w << 32) + c->next_key++;
}

static int make_session(wctx *c, const bench_rec *r, shmreg_id *id)
{
    int rc = c->im->create(c->h, r, id);
    if (rc == 0)
        rc = c->im->bind(c->h, r, id);
    if (rc == 0)
        rc = c->im->set_sdp(c->h, id, SHMREG_SDP_LOCAL, r->sdp[0], r->sdp_len[0]);
    if (rc == 0)
        rc = c->im->set_sdp(c->h, id, SHMREG_SDP_REMOTE, r->sdp[1], r->sdp_len[1]);
    return rc;
}

static int op_create(wctx *c)
{
    if (c->nmade == c->made_cap)
        return OP_STOP;
    data_rec(&DATA, fresh_key(c), &c->rec);
    int rc = make_session(c, &c->rec, &c->made[c->nmade]);
    if (rc == 0)
        c->nmade++;
    return rc;
}

static int op_lifecycle(wctx *c)
{
    shmreg_id id;
    const bench_impl *im = c->im;
    data_rec(&DATA, fresh_key(c), &c->rec);
    const bench_rec *r = &c->rec;
    int rc = im->create(c->h, r, &id);
    if (rc)
        return rc;
    if ((rc = im->bind(c->h, r, &id)) == 0 &&
        (rc = im->transition(c->h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING)) == 0 &&
        (rc = im->set_sdp(c->h, &id, SHMREG_SDP_REMOTE, r->sdp[1], r->sdp_len[1])) == 0 &&
        (rc = im->transition(c->h, &id, SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE)) == 0 &&
        (rc = im->set_sdp(c->h, &id, SHMREG_SDP_LOCAL, r->sdp[0], r->sdp_len[0])) == 0) {
        for (int k = 0; k < 20 && rc == 0; k++)
            rc = im->find_read(c->h, &id, &c->sink);
        if (rc == 0)
            rc = im->transition(c->h, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING);
    }
    int drc = im->del(c->h, &id);
    return rc ? rc : drc;
}

typedef int (*op_fn)(wctx *);

static op_fn op_of(int wl)
{
    switch (wl) {
    case WL_CREATE: return op_create;
    case WL_FIND_READ: return op_find_read;
    case WL_FIND_COPY: return op_find_copy;
    case WL_TRANSITION: return op_transition;
    case WL_SDP_REPLACE:
    case WL_REPLACE_PINNED: return op_sdp_replace;
    case WL_DIALOG_FIND: return op_dialog_find;
    case WL_COUNTER: return op_counter;
    case WL_EVENT_PUBLISH: return op_publish;
    case WL_LIFECYCLE: return op_lifecycle;
    default: return NULL;
    }
}

static inline uint64_t cyc_ns(uint64_t cycles)
{
    cycles = cycles > tsc_overhead ? cycles - tsc_overhead : 0;
    return (uint64_t)((double)cycles / tsc_per_ns + 0.5);
}

static uint64_t deadline_after(double seconds)
{
    return tsc_begin() + (uint64_t)(seconds * 1e9 * tsc_per_ns);
}

/* The measured loop: 15 ops untimed, 1 timed, check the deadline. */
static uint64_t minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (uint64_t)ru.ru_minflt;
}

static int timed_loop(wctx *c, op_fn op, wrep *out, uint64_t deadline)
{
    uint64_t ops = 0, flt = minor_faults();
    int rc = 0;
    alloc_count_start();
    uint64_t t0 = mono_ns();
    for (;;) {
        for (int i = 0; i < 15; i++) {
            if ((rc = op(c)) != 0)
                goto done;
            ops++;
        }
        uint64_t a = tsc_begin();
        rc = op(c);
        uint64_t b = tsc_end();
        if (rc)
            goto done;
        ops++;
        hist_add(out->hist, cyc_ns(b - a));
        if (b >= deadline)
            break;
    }
done:
    out->elapsed_ns = mono_ns() - t0;
    out->allocs = alloc_count_stop();
    out->minflt = minor_faults() - flt;
    out->ops = ops;
    return rc == OP_STOP ? 0 : rc;
}

/* Warm-up, untimed. A worker of a real server has long since touched the
 * registry; a freshly forked one has not: each page of a shared mapping
 * costs a minor fault on first touch, and each page of the private limit a
 * copy-on-write fault on first write. Reads therefore touch every session
 * once, writes every session of their partition once; then 30 ms of the
 * workload itself warms caches and TLB. */
static int warm_up(wctx *c, int wl, op_fn op)
{
    int rc = 0;
    uint64_t end = mono_ns() + 3000000000ull;
    if (WL[wl].read && c->impl != IMPL_REDIS)
        for (uint64_t i = 0; i < c->n && rc == 0 && ((i & 63) || mono_ns() < end); i++)
            rc = c->im->find_read(c->h, &c->ids[i], &c->sink);
    if (WL[wl].write || wl == WL_COUNTER)
        for (uint64_t j = 0; j < c->mine && rc == 0 && ((j & 63) || mono_ns() < end); j++) {
            uint64_t i = c->w + c->nw * j;
            if (wl == WL_TRANSITION) {
                rc = c->im->transition(c->h, &c->ids[i], SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD);
                c->state[j] = rc == 0;
            } else if (wl == WL_SDP_REPLACE || wl == WL_REPLACE_PINNED) {
                unsigned v = c->variant[j]++;
                rc = c->im->set_sdp(c->h, &c->ids[i], (int)(v & 1), data_sdp_variant(&DATA, i, (int)(v & 1), 0),
                                    data_sdp_len(&DATA, i, (int)(v & 1)));
            } else {
                rc = c->im->counter(c->h, &c->ids[i], SHMREG_CTR_PACKETS_LOST, 0);
            }
        }
    uint64_t max = wl == WL_CREATE ? 1000 : wl == WL_LIFECYCLE ? 2000 : 1000000;
    end = mono_ns() + 30000000ull;
    for (uint64_t k = 0; k < max && rc == 0; k++) {
        rc = op(c);
        if ((k & 15) == 15 && mono_ns() > end)
            break;
    }
    return rc == OP_STOP ? 0 : rc;
}

/* Put back what a write workload changed, untimed: created sessions after
 * every repetition (so each starts from the same registry, and the next
 * one's creates reuse the memory, as in a registry that has been running),
 * transitions at the end. */
static int restore(wctx *c, int wl, int final)
{
    int rc = 0;
    if (wl == WL_CREATE) {
        for (uint64_t k = 0; k < c->nmade && rc == 0; k++)
            rc = c->im->del(c->h, &c->made[k]);
        c->nmade = 0;
    }
    if (wl == WL_TRANSITION && final)
        for (uint64_t j = 0; j < c->mine && rc == 0; j++)
            if (c->state[j])
                rc = c->im->transition(c->h, &c->ids[c->w + c->nw * j], SHMREG_STATE_ONHOLD, SHMREG_STATE_ACTIVE);
    return rc;
}

typedef struct run {
    int wl, impl;
    unsigned procs;
    bench_store *store;
    const shmreg_id *ids;
    uint64_t n;
} run;

static void worker_fail(wres *out, int impl, const char *what, int rc)
{
    if (out->err)
        return;
    out->err = rc ? rc : -1;
    snprintf(out->errmsg, sizeof out->errmsg, "%s: %s", what, bench_strerror(impl, rc));
}

/* event_consume, one repetition. Subscribers (w < nsubs) poll until the
 * producer's END marker; the producer (w == nsubs, for stores that have
 * one) publishes for the duration but never more than ring_cap/2 ahead of
 * the slowest subscriber, so what is measured is delivery, not loss. */
static int consume_rep(wctx *c, void *sub, wrep *out, uint64_t *published)
{
    const bench_impl *im = c->im;
    int rc = 0;
    uint64_t ops = 0;
    alloc_count_start();
    uint64_t t0 = mono_ns(), deadline = deadline_after(P.duration);
    if (c->w == SH->nsubs) {
        for (;;) {
            if ((ops & 63) == 0) {
                for (;;) {
                    uint64_t lo = UINT64_MAX;
                    for (unsigned s = 0; s < SH->nsubs; s++) {
                        uint64_t p = atomic_load_explicit(&SH->w[s].progress, memory_order_relaxed);
                        lo = p < lo ? p : lo;
                    }
                    if (*published + ops - lo < SH->ring_cap / 2 || tsc_begin() >= deadline)
                        break;
                    sched_yield();
                }
            }
            uint64_t a = tsc_begin();
            if ((rc = op_publish(c)) != 0)
                break;
            uint64_t b = tsc_end();
            if ((ops & 15) == 0)
                hist_add(out->hist, cyc_ns(b - a));
            ops++;
            if (b >= deadline)
                break;
        }
        out->elapsed_ns = mono_ns() - t0;
        out->allocs = alloc_count_stop();
        out->ops = ops;
        *published += ops + 1;
        return rc ? rc : im->publish_end(c->h);
    }
    int end = 0, polls = 0;
    uint64_t give_up = deadline_after(P.duration + 5.0), missed = 0;
    while (!end) {
        uint64_t a = tsc_begin();
        rc = im->sub_poll(sub, &end, &missed, &c->sink);
        uint64_t b = tsc_end();
        if (rc < 0)
            break;
        if (rc > 0) {
            if ((polls++ & 15) == 0)
                hist_add(out->hist, cyc_ns(b - a) / (uint64_t)rc);
            ops += (uint64_t)rc;
            atomic_fetch_add_explicit(&SH->w[c->w].progress, (uint64_t)rc, memory_order_relaxed);
        }
        if (im->publish_end == NULL ? b >= deadline : b >= give_up)
            break;
    }
    out->elapsed_ns = mono_ns() - t0;
    out->allocs = alloc_count_stop();
    out->ops = ops;
    out->missed = missed;
    return rc < 0 ? rc : 0;
}

static void worker(const run *R, unsigned w)
{
    wres *out = &SH->w[w];
    const bench_impl *im = IMPLS[R->impl];
    unsigned parts = R->wl == WL_EVENT_CONSUME ? 1 : R->procs;
    wctx c = {.im = im, .impl = R->impl, .ids = R->ids, .n = R->n, .w = w, .nw = parts};
    c.rng = (0x9e3779b97f4a7c15ull * (w + 1)) ^ ((uint64_t)getpid() << 16);
    c.mine = w < parts ? (R->n - w + parts - 1) / parts : 0;
    void *sub = NULL;
    uint64_t published = 0;
    int rc = im->attach(R->store, &c.h);
    if (rc) {
        worker_fail(out, R->impl, "attach", rc);
        _exit(1);
    }
    c.buf = malloc(2 * SHMREG_MAX_SDP);
    c.state = calloc(c.mine + 1, 1);
    c.variant = calloc(c.mine + 1, 1);
    if (R->wl == WL_CREATE) {
        c.made_cap = P.create_cap / R->procs;
        c.made = malloc((c.made_cap + 1) * sizeof *c.made);
    }
    if (!c.buf || !c.state || !c.variant || (R->wl == WL_CREATE && !c.made)) {
        worker_fail(out, R->impl, "setup", bench_fail("out of memory"));
        _exit(1);
    }
    op_fn op = op_of(R->wl);
    if (R->wl == WL_EVENT_CONSUME) {
        if (w < SH->nsubs)
            rc = im->sub_open(c.h, &sub);
        if (rc == 0 && im->publish_end == NULL) /* private ring: fill it, it is re-read */
            for (int k = 0; k < 65536 && rc == 0; k++)
                rc = op_publish(&c);
    } else {
        rc = warm_up(&c, R->wl, op);
    }
    if (rc) {
        worker_fail(out, R->impl, "warm-up", rc);
        restore(&c, R->wl, 1);
        _exit(1);
    }
    for (int k = 0; k < P.reps && rc == 0; k++) {
        wait_go((uint32_t)k);
        if (R->wl == WL_EVENT_CONSUME)
            rc = consume_rep(&c, sub, &out->rep[k], &published);
        else
            rc = timed_loop(&c, op, &out->rep[k], deadline_after(P.duration));
        if (rc)
            worker_fail(out, R->impl, WL[R->wl].name, rc);
        int rrc = restore(&c, R->wl, k + 1 == P.reps || rc);
        if (rrc)
            worker_fail(out, R->impl, "restoring state", rrc);
        rc = rc ? rc : rrc;
    }
    if (sub)
        im->sub_close(sub);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    out->rss_kib = (uint64_t)ru.ru_maxrss;
    im->detach(c.h);
    _exit(out->err ? 1 : 0);
}

/* replace_pinned's stuck reader, one more process beside the writers.
 * Before each repetition it enters a read section holding session 0's
 * SDP, then joins the barrier, so the writers start with it pinned; it
 * stays inside until every writer has finished that repetition, then
 * leaves, so each repetition starts from a drained registry as
 * sdp_replace's do. Its own time is not counted. */
static void pinner(const run *R, unsigned w)
{
    wres *out = &SH->w[w];
    const bench_impl *im = IMPLS[R->impl];
    bench_h *h = NULL;
    uint64_t sink = 0;
    int rc = im->attach(R->store, &h);
    if (rc) {
        worker_fail(out, R->impl, "attach", rc);
        _exit(1);
    }
    for (int k = 0; k < P.reps; k++) {
        if ((rc = im->pin(h, &R->ids[0], &sink)) != 0) {
            worker_fail(out, R->impl, "pin", rc);
            break;
        }
        wait_go((uint32_t)k);
        for (unsigned x = 0; x < R->procs && atomic_load(&SH->go) <= MAX_REPS;) {
            if (__atomic_load_n(&SH->w[x].rep[k].elapsed_ns, __ATOMIC_ACQUIRE) || SH->w[x].err)
                x++;
            else
                usleep(200);
        }
        im->unpin(h);
    }
    im->detach(h);
    _exit(out->err || sink == 1 ? 1 : 0);
}

/* ================================================================ one measurement */

static pid_t kids[MAX_PROCS + 1];
static unsigned nkids;

static void kill_kids(void)
{
    for (unsigned i = 0; i < nkids; i++)
        if (kids[i] > 0)
            kill(kids[i], SIGKILL);
    for (unsigned i = 0; i < nkids; i++)
        if (kids[i] > 0)
            waitpid(kids[i], NULL, 0);
    nkids = 0;
}

/* Fill r with repetition k's aggregate. */
static void rep_result(const run *R, int k, int producer, result *r)
{
    uint64_t hist[HIST_BUCKETS] = {0}, ops = 0, allocs = 0, missed = 0, flt = 0;
    double rate = 0;
    for (unsigned w = 0; w < R->procs; w++) {
        const wrep *x = &SH->w[w].rep[k];
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
            hist[b] += x->hist[b];
        ops += x->ops;
        allocs += x->allocs;
        flt += x->minflt;
        missed += x->missed;
        if (x->elapsed_ns)
            rate += (double)x->ops * 1e9 / (double)x->elapsed_ns;
    }
    r->ops = ops;
    r->ops_per_s = rate;
    r->missed = missed;
    r->allocs_per_op = ops ? (double)allocs / (double)ops : 0;
    r->faults_per_op = ops ? (double)flt / (double)ops : 0;
    r->p50 = hist_pct(hist, 0.50);
    r->p99 = hist_pct(hist, 0.99);
    r->published_per_s = 0;
    if (producer) {
        const wrep *x = &SH->w[R->procs].rep[k];
        if (x->elapsed_ns)
            r->published_per_s = (double)x->ops * 1e9 / (double)x->elapsed_ns;
    }
}

/* Fork the workers, start each repetition together, keep the fastest
 * repetition (the machine is shared: other processes, other VMs) with its
 * latencies; every repetition's rate goes to the JSON. */
static void measure(const run *R, uint64_t ring_cap)
{
    result *r = res_new();
    r->wl = R->wl;
    r->impl = R->impl;
    r->procs = R->procs;
    r->sessions = R->n;
    int producer = R->wl == WL_EVENT_CONSUME && IMPLS[R->impl]->publish_end != NULL;
    int pinned = R->wl == WL_REPLACE_PINNED;
    unsigned nw = R->procs + (unsigned)producer + (unsigned)pinned;
    memset(SH, 0, sizeof *SH);
    SH->nsubs = R->procs;
    SH->ring_cap = ring_cap;
    fflush(NULL);
    nkids = 0;
    for (unsigned w = 0; w < nw; w++) {
        pid_t pid = fork();
        if (pid < 0) {
            snprintf(r->err, sizeof r->err, "fork: %s", strerror(errno));
            kill_kids();
            return;
        }
        if (pid == 0) {
            if (pinned && w == R->procs)
                pinner(R, w);
            worker(R, w);
        }
        kids[nkids++] = pid;
    }
    int status[MAX_PROCS + 1], done[MAX_PROCS + 1] = {0}, lost = 0;
    for (int k = 0; k < P.reps && !lost; k++) {
        /* a worker that dies must not leave the others waiting for ever */
        while (atomic_load(&SH->ready) < nw * (uint32_t)(k + 1) && !lost) {
            for (unsigned i = 0; i < nkids; i++)
                if (!done[i] && waitpid(kids[i], &status[i], WNOHANG) == kids[i])
                    done[i] = lost = 1;
            usleep(100);
        }
        atomic_store(&SH->go, (uint32_t)k + 1);
        futex_wake(&SH->go);
    }
    if (lost) { /* release everyone still waiting, then collect */
        atomic_store(&SH->go, (uint32_t)MAX_REPS + 1);
        futex_wake(&SH->go);
    }
    int failed = 0;
    for (unsigned i = 0; i < nkids; i++) {
        if (!done[i])
            waitpid(kids[i], &status[i], 0);
        if (!WIFEXITED(status[i]) || WEXITSTATUS(status[i]) != 0)
            failed = 1;
        if (WIFSIGNALED(status[i]) && r->err[0] == 0)
            snprintf(r->err, sizeof r->err, "worker killed by signal %d", WTERMSIG(status[i]));
    }
    nkids = 0;
    for (unsigned w = 0; w < nw; w++) {
        if (SH->w[w].err && r->err[0] == 0)
            snprintf(r->err, sizeof r->err, "%s %u: %s", w < R->procs ? "worker" : pinned ? "pinner" : "producer", w,
                     SH->w[w].errmsg);
        if (w < R->procs && SH->w[w].rss_kib > r->rss_kib)
            r->rss_kib = SH->w[w].rss_kib;
    }
    if (failed && r->err[0] == 0)
        snprintf(r->err, sizeof r->err, "a worker failed");
    if (max_worker_rss < r->rss_kib)
        max_worker_rss = r->rss_kib;
    if (r->err[0] == 0) {
        result cur = *r;
        for (int k = 0; k < P.reps; k++) {
            rep_result(R, k, producer, &cur);
            r->rep_ops[r->nreps++] = cur.ops_per_s;
            if (k == 0 || cur.ops_per_s > r->ops_per_s) {
                double reps[MAX_REPS];
                int n = r->nreps;
                memcpy(reps, r->rep_ops, sizeof reps);
                *r = cur;
                memcpy(r->rep_ops, reps, sizeof reps);
                r->nreps = n;
            }
        }
    }
    r->ok = r->err[0] == 0 && r->ops > 0;
    if (!r->ok && r->err[0] == 0)
        snprintf(r->err, sizeof r->err, "no operation completed");
}

/* ================================================================ stores: load, run */

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    static uint64_t t0;
    if (t0 == 0)
        t0 = mono_ns();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[%6.1fs] ", (double)(mono_ns() - t0) / 1e9);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static char *human(double v, char *buf, size_t n)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
    return buf;
}

/* Sessions [0, n) through the API, for stores without a bulk loader. */
static int load_via_api(int impl, bench_h *h, uint64_t n, shmreg_id *ids)
{
    const bench_impl *im = IMPLS[impl];
    bench_rec r;
    for (uint64_t i = 0; i < n; i++) {
        data_rec(&DATA, i, &r);
        int rc = im->create(h, &r, &ids[i]);
        if (rc == 0)
            rc = im->bind(h, &r, &ids[i]);
        if (rc == 0)
            rc = im->set_sdp(h, &ids[i], 0, r.sdp[0], r.sdp_len[0]);
        if (rc == 0)
            rc = im->set_sdp(h, &ids[i], 1, r.sdp[1], r.sdp_len[1]);
        if (rc == 0)
            rc = im->transition(h, &ids[i], SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE);
        if (rc)
            return rc;
    }
    return 0;
}

static int want_impl(int impl)
{
    if (!(opt.impl_mask & (1u << impl)))
        return 0;
    return impl != IMPL_REDIS || have_redis;
}

/* One store at one session count: create, load, measure memory, run every
 * workload the plan wants (unless mem_only), free. */
static void run_backend(int backend, uint64_t n, int mem_only)
{
    const bench_impl *im = IMPLS[backend];
    bench_env e = {.dir = scratch, .redis_sock = have_redis ? redis_sock : NULL, .data = &DATA,
                   .capacity = n + (mem_only ? 64 : P.create_cap + 4 * MAX_PROCS)};
    bench_store *st = NULL;
    int rc = im->open(&e, &st);
    if (rc) {
        progress("%s: cannot create the store: %s", im->name, bench_strerror(backend, rc));
        return;
    }
    shmreg_id *ids = malloc((n + 1) * sizeof *ids);
    bench_h *h = NULL;
    rc = ids ? im->attach(st, &h) : -1;
    if (rc == 0) {
        uint64_t t0 = mono_ns();
        rc = im->load ? im->load(h, &DATA, 0, n, ids) : load_via_api(backend, h, n, ids);
        if (rc == 0 && n >= 100000)
            progress("%s: loaded %llu sessions in %.1f s", im->name, (unsigned long long)n,
                     (double)(mono_ns() - t0) / 1e9);
    }
    bench_mem m = {0};
    if (rc == 0 && (rc = im->mem(h, n, &m)) == 0 && nmem < sizeof MEM / sizeof *MEM)
        MEM[nmem++] = (memres){backend, n, m.bytes, m.resident, data_payload(&DATA, n), m.what};
    /* event_consume paces its producer by the ring, so nobody is lapped */
    uint64_t ring_cap = m.event_ring ? m.event_ring : 1ull << 40;
    if (h)
        im->detach(h); /* workers open their own; LMDB forbids sharing one across fork */
    if (rc) {
        progress("%s: loading %llu sessions failed: %s", im->name, (unsigned long long)n,
                 bench_strerror(backend, rc));
    } else if (!mem_only) {
        for (int wl = 0; wl < WL_COUNT; wl++) {
            if (!(opt.wl_mask & (1u << wl)))
                continue;
            for (int impl = 0; impl < IMPL_COUNT; impl++) {
                if (backend_of(impl) != backend || !supports(wl, impl) || !want_impl(impl))
                    continue;
                unsigned procs[16];
                int np = procs_for(n, wl, procs);
                if (np == 0)
                    continue;
                for (int k = 0; k < np; k++) {
                    run R = {wl, impl, procs[k], st, ids, n};
                    measure(&R, ring_cap);
                    const result *r = &RES[nres - 1];
                    char b[32];
                    if (r->ok)
                        progress("%-13s %-6s procs=%u sessions=%llu: %s ops/s, p50 %llu ns, p99 %llu ns, "
                                 "%.2f allocs/op", WL[wl].name, IMPLS[impl]->name, procs[k],
                                 (unsigned long long)n, human(r->ops_per_s, b, sizeof b),
                                 (unsigned long long)r->p50, (unsigned long long)r->p99, r->allocs_per_op);
                    else
                        progress("%-13s %-6s procs=%u sessions=%llu: FAILED: %s", WL[wl].name,
                                 IMPLS[impl]->name, procs[k], (unsigned long long)n, r->err);
                }
            }
        }
    }
    im->close(st);
    free(ids);
}

/* What the harness itself costs per op (key choice; building a dialog
 * key), so it can be told apart from the stores' cost. */
static void measure_harness(void)
{
    wctx c = {.n = 10000, .rng = 88172645463325252ull};
    uint64_t k = 2000000, t0 = mono_ns();
    for (uint64_t i = 0; i < k; i++)
        c.sink += pick(&c);
    harness_pick_ns = (double)(mono_ns() - t0) / (double)k;
    t0 = mono_ns();
    for (uint64_t i = 0; i < k; i++) {
        data_keys(&DATA, pick(&c), &c.rec);
        c.sink += (uint64_t)c.rec.keybuf[3];
    }
    harness_key_ns = (double)(mono_ns() - t0) / (double)k;
    if (c.sink == 1)
        fputc(' ', stderr);
}

/* ================================================================ targets */

typedef struct target {
    char name[96];
    char goal[48];
    double measured;
    char unit[24];
    int met;          /* 1 met, 0 missed, -1 not measured */
    char why[200];
} target;

static target TG[32];
static int ntg;


static void tg_add(const char *name, const char *goal, double measured, const char *unit, int met)
{
    if (ntg >= 32)
        return;
    target *t = &TG[ntg++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->goal, sizeof t->goal, "%s", goal);
    snprintf(t->unit, sizeof t->unit, "%s", unit);
    t->measured = measured;
    t->met = met;
}

static void evaluate_targets(void)
{
    uint64_t n = main_point();
    for (int i = 0; i < P.npoints; i++) {
        uint64_t p = P.points[i];
        const result *s = res_find(WL_FIND_READ, IMPL_SHMREG, 1, p);
        const result *l = res_find(WL_FIND_READ, IMPL_LIMIT, 1, p);
        const result *d = res_find(WL_FIND_READ, IMPL_LMDB, 1, p);
        const result *r = res_find(WL_FIND_READ, IMPL_REDIS, 1, p);
        char name[96];
        if (s && l) {
            snprintf(name, sizeof name, "find_read, %llu sessions: time vs in-process limit", (unsigned long long)p);
            tg_add(name, "<= 2.0x", l->ops_per_s / s->ops_per_s, "x", l->ops_per_s / s->ops_per_s <= 2.0);
        }
        if (s && d) {
            snprintf(name, sizeof name, "find_read, %llu sessions: speed-up vs LMDB-only", (unsigned long long)p);
            tg_add(name, ">= 10x", s->ops_per_s / d->ops_per_s, "x", s->ops_per_s / d->ops_per_s >= 10);
        }
        if (s && r) {
            snprintf(name, sizeof name, "find_read, %llu sessions: speed-up vs Redis", (unsigned long long)p);
            tg_add(name, ">= 300x", s->ops_per_s / r->ops_per_s, "x", s->ops_per_s / r->ops_per_s >= 300);
        }
    }
    const result *c = res_find(WL_CREATE, IMPL_SHMREG, 1, n);
    if (c)
        tg_add("create from one process", ">= 500k/s", c->ops_per_s, "ops/s", c->ops_per_s >= 500000);
    const result *t = res_find(WL_TRANSITION, IMPL_SHMREG, 1, n);
    if (t)
        tg_add("transition from one process", ">= 5M/s", t->ops_per_s, "ops/s", t->ops_per_s >= 5e6);
    for (int wl = 0; wl < WL_COUNT; wl++) {
        const result *a = res_find(wl, IMPL_SHMREG, 1, n), *b = res_find(wl, IMPL_SHMREG, 4, n);
        if (!WL[wl].read || !a || !b)
            continue;
        char name[96];
        snprintf(name, sizeof name, "%s: 4 processes vs 1 (2 CPUs)", WL[wl].name);
        tg_add(name, ">= 1.6x", b->ops_per_s / a->ops_per_s, "x", b->ops_per_s / a->ops_per_s >= 1.6);
    }
    for (size_t i = 0; i < nmem; i++) {
        if (MEM[i].impl != IMPL_SHMREG || !MEM[i].payload)
            continue;
        char name[96];
        snprintf(name, sizeof name, "shm bytes/session vs payload at %llu sessions",
                 (unsigned long long)MEM[i].sessions);
        double x = (double)MEM[i].bytes / (double)MEM[i].payload;
        tg_add(name, "<= 1.3x", x, "x", x <= 1.3);
    }
    const result *sr = res_find(WL_SDP_REPLACE, IMPL_SHMREG, 1, n), *pr = res_find(WL_REPLACE_PINNED, IMPL_SHMREG, 1, n);
    if (sr && pr)
        tg_add("sdp_replace with a reader pinned in another process vs without", ">= 0.5x",
               pr->ops_per_s / sr->ops_per_s, "x", pr->ops_per_s >= 0.5 * sr->ops_per_s);
    const result *e = res_find(WL_EVENT_PUBLISH, IMPL_SHMREG, 1, n);
    if (e)
        tg_add("events published, one process", ">= 10M/s", e->ops_per_s, "ops/s", e->ops_per_s >= 1e7);
    double worst = 0;
    int any = 0;
    for (size_t i = 0; i < nres; i++)
        if (RES[i].ok && RES[i].impl == IMPL_SHMREG) {
            any = 1;
            worst = RES[i].allocs_per_op > worst ? RES[i].allocs_per_op : worst;
        }
    if (any)
        tg_add("heap allocations per op, every shmreg workload", "0", worst, "allocs/op", worst == 0);
    if (LAT.ok)
        tg_add("event latency p99, publish -> blocking subscriber", "<= 20 us", (double)LAT.p99 / 1000,
               "us", LAT.p99 <= 20000);
}

/* ================================================================ event latency */

/* End-to-end latency of the event bus: one producer publishes custom
 * events carrying their CLOCK_MONOTONIC publish time, paced 50 us apart so
 * the subscriber goes back to sleep between events (shmreg_poll blocking
 * on the ring's futex); the subscriber, another process, takes the
 * difference on arrival. This is the wake-up path the target is about,
 * not throughput. */
#define LAT_EVENTS 20000
#define LAT_GAP_NS 50000


static void latency_subscriber(const char *dir, int ready_fd, uint64_t *hist, uint64_t *counts)
{
    shmreg *h;
    shmreg_sub *sub;
    if (shmreg_open(dir, NULL, &h) || shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &sub))
        _exit(1);
    char c = 1;
    if (write(ready_fd, &c, 1) != 1)
        _exit(1);
    shmreg_event ev[16];
    uint64_t got = 0, missed = 0;
    while (got < LAT_EVENTS) {
        uint64_t m = 0;
        int n = shmreg_poll(sub, ev, 16, 2000000000ll, &m);
        uint64_t now = mono_ns();
        if (n <= 0)
            break; /* 2 s of silence: the producer is gone */
        missed += m;
        for (int i = 0; i < n; i++) {
            uint64_t t;
            memcpy(&t, ev[i].data, sizeof t);
            hist_add(hist, now > t ? now - t : 0);
        }
        got += (uint64_t)n;
    }
    counts[0] = got;
    counts[1] = missed;
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    _exit(0);
}

static void measure_event_latency(void)
{
    char dir[256];
    snprintf(dir, sizeof dir, "%s/latency", scratch);
    shmreg *h;
    if (shmreg_open(dir, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 16}, &h)) {
        note_skip("event latency: cannot create a registry: %s", shmreg_errmsg());
        return;
    }
    size_t bytes = HIST_BUCKETS * sizeof(uint64_t) + 2 * sizeof(uint64_t);
    uint64_t *shared = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int fds[2];
    if (shared == MAP_FAILED || pipe(fds)) {
        shmreg_close(h);
        return;
    }
    memset(shared, 0, bytes);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        shmreg_close(h); /* the child's copy; it opens its own */
        latency_subscriber(dir, fds[1], shared, shared + HIST_BUCKETS);
    }
    close(fds[1]);
    char c;
    int ready = pid > 0 && read(fds[0], &c, 1) == 1;
    close(fds[0]);
    for (int i = 0; ready && i < LAT_EVENTS; i++) {
        uint64_t next = mono_ns() + LAT_GAP_NS;
        while (mono_ns() < next)
            ;
        uint64_t t = mono_ns();
        shmreg_publish(h, NULL, &t, sizeof t);
    }
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    LAT.received = shared[HIST_BUCKETS];
    LAT.missed = shared[HIST_BUCKETS + 1];
    LAT.ok = ready && WIFEXITED(status) && WEXITSTATUS(status) == 0 && LAT.received > 0;
    if (LAT.ok) {
        LAT.p50 = hist_pct(shared, 0.50);
        LAT.p99 = hist_pct(shared, 0.99);
        progress("event latency, publish -> blocking subscriber in another process: p50 %llu ns, "
                 "p99 %llu ns (%llu events, %llu missed)", (unsigned long long)LAT.p50,
                 (unsigned long long)LAT.p99, (unsigned long long)LAT.received,
                 (unsigned long long)LAT.missed);
    } else {
        note_skip("event latency: the subscriber failed");
    }
    munmap(shared, bytes);
    shmreg_close(h);
    shmreg_destroy(dir, 1);
}

/* ================================================================ reports */

static const char METHOD[] =
    "Each row: the fastest of R repetitions of the workload, each run for a fixed time by N forked worker processes, each with its own "
    "handle, started together from a futex barrier; ops/s is the sum over workers of ops / wall time. "
    "1 op in 16 is timed alone with rdtsc/rdtscp (empty-timer cost subtracted) into a log-linear "
    "histogram (3% buckets): p50/p99 are single-op latencies; the other 15 run untimed. allocs/op = "
    "malloc-family calls in the worker during the timed loop (bench's own malloc interposer; Redis "
    "server-side and kernel memory not included). 'shmreg x' = shmreg ops/s / this row's ops/s for the "
    "same workload, procs and sessions (>1: shmreg is faster). Reading an SDP = one load per cache line, "
    "the same function for every store. limit = private hash table in each process (nothing shared: the "
    "ceiling); copy = shmreg with SDPs copied out; lmdb = one transaction per call; redis = one round "
    "trip per call over a unix socket to a local redis-server sharing the same CPUs.";

static double shmreg_x(const result *r)
{
    const result *s = res_find(r->wl, IMPL_SHMREG, r->procs, r->sessions);
    return s && r->ops_per_s > 0 ? s->ops_per_s / r->ops_per_s : 0;
}

/* A long paragraph, wrapped at 100 columns. */
static void print_wrapped(FILE *f, const char *lead, const char *text)
{
    size_t col = strlen(lead);
    fputs(lead, f);
    while (*text) {
        size_t w = strcspn(text, " ");
        if (col + w > 100) {
            fputs("\n  ", f);
            col = 2;
        }
        fprintf(f, "%.*s", (int)w, text);
        col += w;
        text += w;
        if (*text == ' ') {
            text++;
            if (col + 1 <= 100) {
                fputc(' ', f);
                col++;
            }
        }
    }
    fputc('\n', f);
}

static void print_tables(FILE *f)
{
    char b1[32], b2[32];
    fprintf(f, "$ %s\n", cmdline);
    fprintf(f, "shmreg-bench, %s profile: best of %d x %.2f s per measurement, SDPs %zu B +-%u%%, seed %llu\n",
            P.name, P.reps, P.duration, opt.sdp_bytes, opt.sdp_spread, (unsigned long long)opt.seed);
    fprintf(f, "machine: %ld CPUs, TSC %.3f GHz; during the run other processes used %.2f CPUs on average "
               "and the hypervisor stole %.2f%s\n",
            sysconf(_SC_NPROCESSORS_ONLN), tsc_per_ns, others_cpus, steal_cpus,
            others_cpus + steal_cpus > 0.2 ? " (so the figures are pessimistic and noisy)" : "");
    print_wrapped(f, "method: ", METHOD);
    fprintf(f, "harness cost per op (included in every store's figures): key choice %.1f ns; "
               "building a dialog key (dialog_find, sdp_replace) %.1f ns\n",
            harness_pick_ns, harness_key_ns);
    for (int i = 0; i < nskipped; i++)
        fprintf(f, "%s\n", skipped[i]);
    for (int wl = 0; wl < WL_COUNT; wl++) {
        int header = 0;
        for (size_t i = 0; i < nres; i++) {
            const result *r = &RES[i];
            if (r->wl != wl)
                continue;
            if (!header) {
                fprintf(f, "\n%s: %s\n", WL[wl].name, WL[wl].what);
                fprintf(f, "  %-7s %5s %8s %10s %9s %9s %9s %8s %9s%s\n", "impl", "procs", "sessions", "ops/s",
                        "p50 ns", "p99 ns", "allocs/op", "RSS MiB", "shmreg x",
                        wl == WL_EVENT_CONSUME ? "  published/s  missed" : "");
                header = 1;
            }
            if (!r->ok) {
                fprintf(f, "  %-7s %5u %8llu  FAILED: %s\n", IMPLS[r->impl]->name, r->procs,
                        (unsigned long long)r->sessions, r->err);
                continue;
            }
            double x = shmreg_x(r);
            char xs[16] = "-";
            if (x > 0)
                snprintf(xs, sizeof xs, x >= 100 ? "%.0fx" : x >= 0.1 ? "%.2fx" : "%.3fx", x);
            fprintf(f, "  %-7s %5u %8llu %10s %9llu %9llu %9.2f %8.1f %9s", IMPLS[r->impl]->name, r->procs,
                    (unsigned long long)r->sessions, human(r->ops_per_s, b1, sizeof b1),
                    (unsigned long long)r->p50, (unsigned long long)r->p99, r->allocs_per_op,
                    (double)r->rss_kib / 1024.0, xs);
            if (wl == WL_EVENT_CONSUME)
                fprintf(f, "  %11s %7llu", r->published_per_s ? human(r->published_per_s, b2, sizeof b2) : "-",
                        (unsigned long long)r->missed);
            fputc('\n', f);
        }
    }
    /* process scaling of each workload that ran at more than one count */
    fprintf(f, "\nprocess scaling (ops/s of N processes / ops/s of 1, same sessions; %ld CPUs):\n",
            sysconf(_SC_NPROCESSORS_ONLN));
    for (size_t i = 0; i < nres; i++) {
        const result *r = &RES[i];
        if (!r->ok || r->procs != 1)
            continue;
        int more = 0;
        for (size_t j = 0; j < nres; j++)
            more |= RES[j].ok && RES[j].wl == r->wl && RES[j].impl == r->impl && RES[j].sessions == r->sessions &&
                    RES[j].procs > 1;
        if (!more)
            continue;
        fprintf(f, "  %-13s %-6s %8llu:", WL[r->wl].name, IMPLS[r->impl]->name, (unsigned long long)r->sessions);
        for (size_t j = 0; j < nres; j++)
            if (RES[j].ok && RES[j].wl == r->wl && RES[j].impl == r->impl && RES[j].sessions == r->sessions)
                fprintf(f, "  %u: %s (%.2fx)", RES[j].procs, human(RES[j].ops_per_s, b1, sizeof b1),
                        RES[j].ops_per_s / r->ops_per_s);
        fputc('\n', f);
    }
    fprintf(f, "\nmemory per session (payload = string fields + both SDPs + dialog key):\n");
    fprintf(f, "  %-7s %8s %10s %10s %7s %12s  %s\n", "impl", "sessions", "payload B", "store B", "ratio",
            "resident B", "what 'store' counts");
    for (size_t i = 0; i < nmem; i++) {
        const memres *m = &MEM[i];
        double n = (double)m->sessions;
        char res[24] = "-";
        if (m->resident)
            snprintf(res, sizeof res, "%.0f", (double)m->resident / n);
        fprintf(f, "  %-7s %8llu %10.0f %10.0f %6.2fx %12s  %s\n", IMPLS[m->impl]->name,
                (unsigned long long)m->sessions, (double)m->payload / n, (double)m->bytes / n,
                (double)m->bytes / (double)m->payload, res, m->what);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(f, "\npeak RSS: bench parent %.1f MiB, largest worker %.1f MiB (shared segment pages it touched "
               "included)", (double)ru.ru_maxrss / 1024.0, (double)max_worker_rss / 1024.0);
    if (have_redis)
        fprintf(f, ", redis-server %.1f MiB", (double)redis_peak_rss_kib() / 1024.0);
    fprintf(f, "\n\ntargets (goals, not assertions; %llu sessions unless named):\n", (unsigned long long)main_point());
    for (int i = 0; i < ntg; i++) {
        const target *t = &TG[i];
        char v[32];
        if (strcmp(t->unit, "ops/s") == 0)
            human(t->measured, v, sizeof v);
        else
            snprintf(v, sizeof v, t->measured < 10 ? "%.3f%s" : "%.1f%s", t->measured,
                     strcmp(t->unit, "x") == 0 ? "x" : "");
        fprintf(f, "  %-58s goal %-9s measured %-10s %s\n", t->name, t->goal, v, t->met ? "met" : "MISSED");
    }
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.6g", v);
    else
        fputs("null", f);
}

static void print_json(FILE *f)
{
    fprintf(f, "{\n  \"tool\": \"shmreg-bench\",\n  \"command\": ");
    json_str(f, cmdline);
    fprintf(f, ",\n  \"profile\": ");
    json_str(f, P.name);
    fprintf(f, ",\n  \"machine\": {\"cpus\": %ld, \"tsc_ghz\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_num(f, tsc_per_ns);
    fprintf(f, ", \"other_processes_cpus\": ");
    json_num(f, others_cpus);
    fprintf(f, ", \"steal_cpus\": ");
    json_num(f, steal_cpus);
    fprintf(f, "},\n  \"params\": {\"duration_s\": ");
    json_num(f, P.duration);
    fprintf(f, ", \"reps\": %d", P.reps);
    fprintf(f, ", \"sdp_bytes\": %zu, \"sdp_spread_pct\": %u, \"seed\": %llu, \"create_cap\": %llu},\n",
            opt.sdp_bytes, opt.sdp_spread, (unsigned long long)opt.seed, (unsigned long long)P.create_cap);
    fprintf(f, "  \"method\": ");
    json_str(f, METHOD);
    fprintf(f, ",\n  \"harness_ns\": {\"key_choice\": ");
    json_num(f, harness_pick_ns);
    fprintf(f, ", \"dialog_key\": ");
    json_num(f, harness_key_ns);
    fprintf(f, "},\n  \"skipped\": [");
    for (int i = 0; i < nskipped; i++) {
        fprintf(f, i ? ", " : "");
        json_str(f, skipped[i]);
    }
    fprintf(f, "],\n  \"results\": [\n");
    for (size_t i = 0; i < nres; i++) {
        const result *r = &RES[i];
        fprintf(f, "    {\"workload\": ");
        json_str(f, WL[r->wl].name);
        fprintf(f, ", \"impl\": ");
        json_str(f, IMPLS[r->impl]->name);
        fprintf(f, ", \"procs\": %u, \"sessions\": %llu, \"ok\": %s", r->procs, (unsigned long long)r->sessions,
                r->ok ? "true" : "false");
        if (r->ok) {
            fprintf(f, ", \"ops_per_s\": ");
            json_num(f, r->ops_per_s);
            fprintf(f, ", \"ns_p50\": %llu, \"ns_p99\": %llu, \"allocs_per_op\": ", (unsigned long long)r->p50,
                    (unsigned long long)r->p99);
            json_num(f, r->allocs_per_op);
            fprintf(f, ", \"minor_faults_per_op\": ");
            json_num(f, r->faults_per_op);
            fprintf(f, ", \"ops\": %llu, \"peak_rss_kib\": %llu, \"reps_ops_per_s\": [", (unsigned long long)r->ops,
                    (unsigned long long)r->rss_kib);
            for (int k = 0; k < r->nreps; k++) {
                fprintf(f, k ? ", " : "");
                json_num(f, r->rep_ops[k]);
            }
            fprintf(f, "], \"shmreg_speedup\": ");
            double x = shmreg_x(r);
            if (x > 0)
                json_num(f, x);
            else
                fputs("null", f);
            if (r->wl == WL_EVENT_CONSUME) {
                fprintf(f, ", \"published_per_s\": ");
                json_num(f, r->published_per_s);
                fprintf(f, ", \"missed\": %llu", (unsigned long long)r->missed);
            }
        } else {
            fprintf(f, ", \"error\": ");
            json_str(f, r->err);
        }
        fprintf(f, "}%s\n", i + 1 < nres ? "," : "");
    }
    fprintf(f, "  ],\n  \"event_latency\": ");
    if (LAT.ok)
        fprintf(f, "{\"ns_p50\": %llu, \"ns_p99\": %llu, \"events\": %llu, \"missed\": %llu, \"gap_ns\": %d}",
                (unsigned long long)LAT.p50, (unsigned long long)LAT.p99, (unsigned long long)LAT.received,
                (unsigned long long)LAT.missed, LAT_GAP_NS);
    else
        fprintf(f, "null");
    fprintf(f, ",\n  \"memory\": [\n");
    for (size_t i = 0; i < nmem; i++) {
        const memres *m = &MEM[i];
        double n = (double)m->sessions;
        fprintf(f, "    {\"impl\": ");
        json_str(f, IMPLS[m->impl]->name);
        fprintf(f, ", \"sessions\": %llu, \"payload_bytes_per_session\": ", (unsigned long long)m->sessions);
        json_num(f, (double)m->payload / n);
        fprintf(f, ", \"bytes_per_session\": ");
        json_num(f, (double)m->bytes / n);
        fprintf(f, ", \"ratio\": ");
        json_num(f, (double)m->bytes / (double)m->payload);
        fprintf(f, ", \"resident_bytes_per_session\": ");
        if (m->resident)
            json_num(f, (double)m->resident / n);
        else
            fputs("null", f);
        fprintf(f, ", \"counts\": ");
        json_str(f, m->what);
        fprintf(f, "}%s\n", i + 1 < nmem ? "," : "");
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(f, "  ],\n  \"peak_rss_kib\": {\"bench\": %ld, \"worker_max\": %llu, \"redis_server\": ",
            ru.ru_maxrss, (unsigned long long)max_worker_rss);
    if (have_redis)
        fprintf(f, "%llu", (unsigned long long)redis_peak_rss_kib());
    else
        fputs("null", f);
    fprintf(f, "},\n  \"targets\": [\n");
    for (int i = 0; i < ntg; i++) {
        fprintf(f, "    {\"target\": ");
        json_str(f, TG[i].name);
        fprintf(f, ", \"goal\": ");
        json_str(f, TG[i].goal);
        fprintf(f, ", \"measured\": ");
        json_num(f, TG[i].measured);
        fprintf(f, ", \"unit\": ");
        json_str(f, TG[i].unit);
        fprintf(f, ", \"met\": %s}%s\n", TG[i].met ? "true" : "false", i + 1 < ntg ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

/* The process-scaling chart: one line per (workload, store) measured at
 * several process counts, at the main session count. */
static void plot(const char *file)
{
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "plot: skipped (gnuplot not installed)\n");
        return;
    }
    FILE *g = popen("gnuplot", "w");
    if (g == NULL) {
        fprintf(stderr, "plot: cannot run gnuplot\n");
        return;
    }
    uint64_t n = main_point();
    size_t len = strlen(file);
    if (len > 4 && strcmp(file + len - 4, ".png") == 0)
        fprintf(g, "set terminal pngcairo size 960,600 noenhanced font 'sans,10' background '#ffffff'\n");
    else
        fprintf(g, "set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'\n");
    fprintf(g, "set output '%s'\n", file);
    fprintf(g, "set title 'shmreg-bench: ops/s by worker processes (%llu sessions, %ld CPUs)'\n",
            (unsigned long long)n, sysconf(_SC_NPROCESSORS_ONLN));
    fprintf(g, "set xlabel 'worker processes'\nset ylabel 'operations per second, all processes'\n");
    fprintf(g, "set logscale y\nset format y '%%.0s%%c'\nset logscale x 2\nset grid\nset key outside right top\nset xtics (1,2,4,8,16)\n");
    /* colour says the store, dash and point say the workload */
    static const char *colour[IMPL_COUNT] = {[IMPL_SHMREG] = "#d62728", [IMPL_COPY] = "#ff7f0e",
                                             [IMPL_LIMIT] = "#2ca02c", [IMPL_LMDB] = "#1f77b4",
                                             [IMPL_REDIS] = "#7f7f7f"};
    int nseries = 0, nwl = 0;
    char titles[64][48];
    int style[64][2];
    for (int wl = 0; wl < WL_COUNT && nseries < 64; wl++) {
        int used = 0;
        for (int impl = 0; impl < IMPL_COUNT && nseries < 64; impl++) {
            int pts = 0;
            /* the private ring's copy loop is no scaling story: leave it out */
            if (impl == IMPL_LIMIT && wl == WL_EVENT_CONSUME)
                continue;
            for (size_t i = 0; i < nres; i++)
                pts += RES[i].ok && RES[i].wl == wl && RES[i].impl == impl && RES[i].sessions == n;
            if (pts < 2)
                continue;
            fprintf(g, "$d%d << EOD\n", nseries);
            for (size_t i = 0; i < nres; i++)
                if (RES[i].ok && RES[i].wl == wl && RES[i].impl == impl && RES[i].sessions == n)
                    fprintf(g, "%u %.1f\n", RES[i].procs, RES[i].ops_per_s);
            fprintf(g, "EOD\n");
            snprintf(titles[nseries], sizeof titles[0], "%s %s", WL[wl].name, IMPLS[impl]->name);
            style[nseries][0] = impl;
            style[nseries][1] = nwl;
            nseries++;
            used = 1;
        }
        nwl += used;
    }
    if (nseries == 0) {
        fprintf(g, "set label 'no workload ran at more than one process count' at graph 0.5,0.5 center\n"
                   "plot [1:8][1:10] NaN notitle\n");
    } else {
        fprintf(g, "plot ");
        for (int k = 0; k < nseries; k++)
            fprintf(g, "%s$d%d with linespoints lw 2 lc rgb '%s' dt %d pt %d title '%s'", k ? ", " : "", k,
                    colour[style[k][0]], style[k][1] % 5 + 1, style[k][1] % 7 + 4, titles[k]);
        fprintf(g, "\n");
    }
    int rc = pclose(g);
    if (rc == 0)
        fprintf(stderr, "plot: wrote %s\n", file);
    else
        fprintf(stderr, "plot: gnuplot failed (status %d)\n", rc);
}

/* ================================================================ setup, main */

static void cleanup(void)
{
    if (getpid() != parent_pid)
        return;
    kill_kids();
    redis_stop();
    rm_tree(scratch);
}

static void on_signal(int sig)
{
    cleanup();
    signal(sig, SIG_DFL);
    raise(sig);
}

static unsigned parse_names(const char *list, int is_wl)
{
    unsigned mask = 0;
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < (is_wl ? WL_COUNT : IMPL_COUNT); i++)
            if (strcmp(t, is_wl ? WL[i].name : IMPLS[i]->name) == 0)
                found = i;
        if (found < 0) {
            fprintf(stderr, "shmreg-bench: unknown %s '%s'\n", is_wl ? "workload" : "impl", t);
            exit(2);
        }
        mask |= 1u << found;
    }
    return mask;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shmreg-bench [options]\n"
            "  --full              everything: 1k/10k/100k/1M sessions, 1..8 processes (minutes)\n"
            "  --json              print one JSON document on stdout instead of the tables\n"
            "  --plot FILE.svg     draw the process-scaling chart with gnuplot (.png: a PNG)\n"
            "  --duration S        seconds per repetition (quick 0.1, full 0.4)\n"
            "  --reps N            repetitions per measurement, the fastest kept (default 3)\n"
            "  --sessions N        run the workloads at N sessions only\n"
            "  --procs LIST        process counts for every workload, e.g. 1,2,4\n"
            "  --workloads LIST    e.g. find_read,dialog_find (default: all)\n"
            "  --impls LIST        of shmreg,copy,limit,lmdb,redis (default: all)\n"
            "  --sdp-bytes N       mean SDP size (default 1024)\n"
            "  --sdp-spread PCT    SDP sizes uniform in N +- PCT%% (default 25; 0: all exactly N)\n"
            "  --seed N            data generator seed (default 1)\n"
            "  --no-redis          do not start redis-server\n"
            "Progress goes to stderr; tables or JSON to stdout.\n");
}

/* Largest session count that fits /dev/shm: the shmreg segment and the
 * LMDB file of one point are never alive at once, so the bigger counts. */
static uint64_t fit_shm(uint64_t n)
{
    struct statvfs v;
    if (statvfs(scratch, &v) != 0)
        return n;
    double avail = (double)v.f_bavail * (double)v.f_frsize * 0.8;
    double per = 4096.0 * (double)((DATA.sdp_max * 2 + 1400 + 4095) / 4096) + 1024;
    double need = per * (double)(n + P.create_cap);
    if (need <= avail)
        return n;
    uint64_t fit = (uint64_t)(avail / per);
    fit = fit > P.create_cap ? fit - P.create_cap : 1000;
    return fit;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"full", no_argument, 0, 'F'},       {"json", no_argument, 0, 'j'},
        {"plot", required_argument, 0, 'p'}, {"duration", required_argument, 0, 'd'},
        {"sessions", required_argument, 0, 'n'}, {"procs", required_argument, 0, 'P'},
        {"workloads", required_argument, 0, 'w'}, {"impls", required_argument, 0, 'i'},
        {"sdp-bytes", required_argument, 0, 's'}, {"sdp-spread", required_argument, 0, 'S'},
        {"seed", required_argument, 0, 'r'},  {"reps", required_argument, 0, 'k'},  {"no-redis", no_argument, 0, 'R'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
    };
    const char *procs_list = NULL;
    for (int i = 0, n = 0; i < argc && n < (int)sizeof cmdline - 1; i++)
        n += snprintf(cmdline + n, sizeof cmdline - (size_t)n, "%s%s", i ? " " : "", argv[i]);
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (ch) {
        case 'F': opt.full = 1; break;
        case 'j': opt.json = 1; break;
        case 'p': opt.plot = optarg; break;
        case 'd': opt.duration = atof(optarg); break;
        case 'n': opt.sessions = strtoull(optarg, NULL, 10); break;
        case 'P': procs_list = optarg; break;
        case 'w': /* replace_pinned is a ratio to sdp_replace: run both */
            opt.wl_mask = parse_names(optarg, 1);
            if (opt.wl_mask & (1u << WL_REPLACE_PINNED))
                opt.wl_mask |= 1u << WL_SDP_REPLACE;
            break;
        case 'i': opt.impl_mask = parse_names(optarg, 0); break;
        case 's': opt.sdp_bytes = strtoull(optarg, NULL, 10); break;
        case 'S': opt.sdp_spread = (unsigned)atoi(optarg); break;
        case 'r': opt.seed = strtoull(optarg, NULL, 10); break;
        case 'R': opt.no_redis = 1; break;
        case 'k': opt.reps = atoi(optarg); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || opt.sdp_bytes < 16 || opt.sdp_bytes > SHMREG_MAX_SDP * 3 / 4 ||
        opt.sdp_spread > 50) {
        usage(stderr);
        return 2;
    }
    if (opt.full) {
        P = (plan){.name = "full", .duration = 0.4, .reps = 3, .points = {1000, 10000, 100000, 1000000}, .npoints = 4,
                   .mem_points = {100}, .nmem = 1, .create_cap = 500000};
    } else {
        P = (plan){.name = "quick", .duration = 0.1, .reps = 3, .points = {1000, 10000}, .npoints = 2,
                   .mem_points = {100}, .nmem = 1, .create_cap = 200000};
    }
    if (opt.duration > 0)
        P.duration = opt.duration;
    if (opt.reps > 0)
        P.reps = opt.reps < 8 ? opt.reps : 8;
    if (opt.sessions) {
        P.points[0] = opt.sessions;
        P.npoints = 1;
        P.nmem = 0;
    }
    for (char *save = NULL, *t = procs_list ? strtok_r((char *)procs_list, ",", &save) : NULL;
         t && P.nprocs_override < 16; t = strtok_r(NULL, ",", &save)) {
        unsigned v = (unsigned)atoi(t);
        if (v < 1 || v > MAX_PROCS) {
            fprintf(stderr, "shmreg-bench: process counts are 1..%d\n", MAX_PROCS);
            return 2;
        }
        P.procs_override[P.nprocs_override++] = v;
    }

    parent_pid = getpid();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    atexit(cleanup);
    snprintf(scratch, sizeof scratch, "/dev/shm/shmreg-bench-XXXXXX");
    if (mkdtemp(scratch) == NULL) {
        snprintf(scratch, sizeof scratch, "/tmp/shmreg-bench-XXXXXX");
        if (mkdtemp(scratch) == NULL) {
            perror("shmreg-bench: mkdtemp");
            return 1;
        }
    }
    SH = mmap(NULL, sizeof *SH, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (SH == MAP_FAILED) {
        perror("shmreg-bench: mmap");
        return 1;
    }
    double busy0 = 0, steal0 = 0, own0 = own_cpu(), t0 = (double)mono_ns() / 1e9;
    int have_cpu = machine_cpu(&busy0, &steal0) == 0;
    data_init(&DATA, opt.seed, opt.sdp_bytes, opt.sdp_spread);
    clock_calibrate();
    measure_harness();

    for (int i = 0; i < P.npoints; i++) {
        uint64_t fit = fit_shm(P.points[i]);
        if (fit < P.points[i]) {
            note_skip("note: %llu sessions do not fit in %s; ran %llu instead", (unsigned long long)P.points[i],
                      scratch, (unsigned long long)fit);
            P.points[i] = fit;
        }
    }
    if (opt.no_redis || !(opt.impl_mask & (1u << IMPL_REDIS))) {
        if (opt.impl_mask & (1u << IMPL_REDIS))
            note_skip("redis: skipped (--no-redis)");
    } else {
        const char *why = NULL;
        have_redis = redis_start(redis_sock, sizeof redis_sock, &why) == 0;
        if (!have_redis)
            note_skip("redis: skipped (%s)", why);
    }
    progress("%s profile, best of %d x %.2f s per measurement, scratch %s", P.name, P.reps, P.duration, scratch);

    static const int order[] = {IMPL_SHMREG, IMPL_LIMIT, IMPL_LMDB, IMPL_REDIS};
    for (int i = 0; i < P.nmem; i++)
        for (int b = 0; b < 4; b++)
            if (want_impl(order[b]) || (order[b] == IMPL_SHMREG && want_impl(IMPL_COPY)))
                run_backend(order[b], P.mem_points[i], 1);
    for (int i = 0; i < P.npoints; i++)
        for (int b = 0; b < 4; b++)
            if (want_impl(order[b]) || (order[b] == IMPL_SHMREG && want_impl(IMPL_COPY)))
                run_backend(order[b], P.points[i], 0);

    if (want_impl(IMPL_SHMREG))
        measure_event_latency();

    double busy1, steal1;
    if (have_cpu && machine_cpu(&busy1, &steal1) == 0) {
        double wall = (double)mono_ns() / 1e9 - t0, mine = own_cpu() - own0 + redis_cpu_seconds();
        others_cpus = (busy1 - busy0 - mine) / wall;
        others_cpus = others_cpus < 0 ? 0 : others_cpus;
        steal_cpus = (steal1 - steal0) / wall;
    }
    evaluate_targets();
    if (opt.json)
        print_json(stdout);
    else
        print_tables(stdout);
    if (opt.plot)
        plot(opt.plot);
    fflush(stdout);
    progress("done");
    int failed = 0;
    for (size_t i = 0; i < nres; i++)
        failed |= !RES[i].ok;
    return failed ? 1 : 0;
}
