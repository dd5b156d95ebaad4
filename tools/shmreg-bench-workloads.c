/*
 * shmreg-bench-workloads.c — what a worker process of the bench runs: the
 * workload table, one function per operation, the timed loop, warm-up and
 * restore, event_consume's producer/subscriber loop, the worker and the
 * pinner. Written once against bench_impl (shmreg-bench.h), so every store
 * runs the very same loop, key choice and data. The parent side (forking,
 * the barrier, aggregating) is in shmreg-bench.c.
 */
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

/* ================================================================ workloads */

const wl_info WL[WL_COUNT] = {
    [WL_CREATE] = {"create", "create with both SDPs, bound to its dialog (one call where the store "
                   "has one: shmreg_session_create_bound, one LMDB transaction; Redis: 2)", 0, 0},
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
    [WL_ADMIT] = {"admit", "admission: profile join with a limit + leave, 16 values of one profile "
                  "shared by every process", 0, 0},
    [WL_PROFILE_COUNT] = {"profile_count", "member count of a (profile, value), 16 values of 64 members", 0, 0},
    [WL_SWEEP] = {"sweep", "ops = timeouts fired by the sweeper (shmreg_expire), in batches of "
                  "min(1024, sessions) armed past due (untimed); p50/p99 per session of a batch", 0, 0},
    [WL_SWEEP_SCAN] = {"sweep_scan", "as sweep, but what is due only found, by walking the table "
                       "(disarmed untimed): sweep's baseline", 0, 0},
    [WL_USER_FIND] = {"user_find", "every call of a caller (256 callers: sessions/256 calls each) "
                      "through the user index, read in place", 1, 0},
    [WL_USER_SCAN] = {"user_scan", "the same by walking the table comparing From: user_find's baseline", 0, 0},
    [WL_EVENT_BATCH] = {"event_batch", "publish custom events 16 to a call with one claim (ops = events: "
                        "each op queues one, the 16th publishes the 16; p50/p99 are that call's, "
                        "the one the harness times)", 0, 0},
};



/* Admission is measured at 1 and N processes; the baselines that grow
 * with the table, and the sweep, at every session count; a sweep is one
 * sweeper's (several would fire each other's timeouts). */
const wl_where WL_WHERE[WL_COUNT] = {
    [WL_ADMIT] = {.scaled = 1},
    [WL_SWEEP] = {.every = 1, .single = 1},
    [WL_SWEEP_SCAN] = {.every = 1, .single = 1},
    [WL_USER_SCAN] = {.every = 1},
};

const bench_impl *const IMPLS[IMPL_COUNT] = {
    [IMPL_SHMREG] = &impl_shmreg, [IMPL_COPY] = &impl_copy, [IMPL_LIMIT] = &impl_limit,
    [IMPL_LMDB] = &impl_lmdb, [IMPL_REDIS] = &impl_redis,
};

/* The store an impl runs on (copy shares shmreg's registry). */
int backend_of(int impl) { return impl == IMPL_COPY ? IMPL_SHMREG : impl; }

int supports(int wl, int impl)
{
    const bench_impl *im = IMPLS[impl];
    switch (wl) {
    case WL_FIND_READ:
    case WL_LIFECYCLE:
        return 1;
    case WL_EVENT_PUBLISH:
    case WL_EVENT_CONSUME:
        return im->publish != NULL;
    case WL_EVENT_BATCH:
        return im->publish_batch != NULL;
    case WL_REPLACE_PINNED:
        return im->pin != NULL;
    case WL_ADMIT:
        return im->cc && im->cc->join && im->cc->leave;
    case WL_PROFILE_COUNT:
        return im->cc && im->cc->count && im->cc->join && im->cc->leave;
    case WL_SWEEP:
        return im->cc && im->cc->arm && im->cc->sweep;
    case WL_SWEEP_SCAN:
        return im->cc && im->cc->arm && im->cc->due_scan;
    case WL_USER_FIND:
        return im->cc && im->cc->user_find;
    case WL_USER_SCAN:
        return im->cc && im->cc->user_scan;
    default: /* copy differs from shmreg only in how it reads */
        return impl != IMPL_COPY;
    }
}

/* ================================================================ the barrier, worker side */

static void futex_wait(_Atomic uint32_t *w, uint32_t v)
{
    syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void wait_go(uint32_t rep)
{
    atomic_fetch_add(&SH->ready, 1);
    for (uint32_t g; (g = atomic_load(&SH->go)) <= rep;)
        futex_wait(&SH->go, g);
}

/* ================================================================ the worker */

#define OP_STOP 1   /* an op's "no more room": ends the loop early, not an error */
#define BATCH_EVENTS 16

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
    shmreg_id *made;              /* create: sessions made; sweep_scan: IDs found due */
    uint64_t nmade, made_cap, next_key;
    bench_rec rec;
    uint64_t batch[BATCH_EVENTS][2];  /* event_batch: queued events */
    shmreg_id batch_id[BATCH_EVENTS];
    unsigned nbatch;
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

/* The same event as op_publish, queued; the 16th op publishes the 16. */
static int op_publish_batch(wctx *c)
{
    unsigned k = c->nbatch++;
    c->batch[k][0] = ++c->seq;
    c->batch[k][1] = c->w;
    c->batch_id[k] = c->ids[pick(c)];
    if (c->nbatch < BATCH_EVENTS)
        return 0;
    const void *data[BATCH_EVENTS];
    size_t len[BATCH_EVENTS];
    for (unsigned i = 0; i < BATCH_EVENTS; i++) {
        data[i] = c->batch[i];
        len[i] = sizeof c->batch[i];
    }
    c->nbatch = 0;
    return c->im->publish_batch(c->h, c->batch_id, data, len, BATCH_EVENTS);
}

/* Sessions made by create and lifecycle get data indices far above the
 * loaded ones, distinct per worker, so their dialogs never collide. */
static uint64_t fresh_key(wctx *c)
{
    return c->n + ((uint64_t)c->w << 32) + c->next_key++;
}

static int make_session(wctx *c, const bench_rec *r, shmreg_id *id)
{
    if (c->im->create_bound)
        return c->im->create_bound(c->h, r, id);
    int rc = c->im->create(c->h, r, 1, id);
    return rc ? rc : c->im->bind(c->h, r, id);
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
    int rc = im->create(c->h, r, 0, &id); /* the SDPs come later, as in a call */
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

/* Call control. Admission and counts use one profile with 16 values
 * (customers, trunks): every process works on the same 16 counters. */
#define CC_VALUES 16u
#define CC_LIMIT 1000u          /* never reached: admissions measured, not refusals */
#define CC_MEMBERS 1024u        /* profile_count: sessions in the profile per worker */
static const shmreg_str cc_profile = {"customer", 8};
static char cc_value_text[CC_VALUES][8];

static shmreg_str cc_value(unsigned k)
{
    if (cc_value_text[0][0] == 0)
        for (unsigned v = 0; v < CC_VALUES; v++)
            snprintf(cc_value_text[v], sizeof cc_value_text[v], "acme-%02u", v);
    return (shmreg_str){cc_value_text[k % CC_VALUES], 7};
}

static int op_admit(wctx *c)
{
    uint64_t j, i = pick_mine(c, &j);
    shmreg_str v = cc_value((unsigned)rnd(c));
    int rc = c->im->cc->join(c->h, &c->ids[i], cc_profile, v, CC_LIMIT);
    return rc ? rc : c->im->cc->leave(c->h, &c->ids[i], cc_profile, v);
}

static int op_profile_count(wctx *c)
{
    uint64_t n = 0;
    int rc = c->im->cc->count(c->h, cc_profile, cc_value((unsigned)rnd(c)), &n);
    c->sink += n;
    return rc;
}

static int op_user_find(wctx *c) { return c->im->cc->user_find(c->h, data_from(&DATA, pick(c)), &c->sink); }

static int op_user_scan(wctx *c) { return c->im->cc->user_scan(c->h, data_from(&DATA, pick(c)), &c->sink); }

/* profile_count's members: the first CC_MEMBERS sessions of this
 * worker's partition, spread over the values (join 1, leave 0). */
static int cc_members(wctx *c, int join)
{
    int rc = 0;
    for (uint64_t j = 0; j < c->mine && j < CC_MEMBERS && rc == 0; j++) {
        const shmreg_id *id = &c->ids[c->w + c->nw * j];
        rc = join ? c->im->cc->join(c->h, id, cc_profile, cc_value((unsigned)j), 0)
                  : c->im->cc->leave(c->h, id, cc_profile, cc_value((unsigned)j));
    }
    return rc;
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
    case WL_EVENT_BATCH: return op_publish_batch;
    case WL_LIFECYCLE: return op_lifecycle;
    case WL_ADMIT: return op_admit;
    case WL_PROFILE_COUNT: return op_profile_count;
    case WL_USER_FIND: return op_user_find;
    case WL_USER_SCAN: return op_user_scan;
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
    if (wl == WL_PROFILE_COUNT && rc == 0)
        rc = cc_members(c, 1);
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
    if (wl == WL_PROFILE_COUNT && final)
        rc = cc_members(c, 0);
    return rc;
}


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

/* sweep, sweep_scan: one round arms a batch of this worker's sessions
 * (the next ones of its partition, round robin) to be handed over 1 ms
 * ago, untimed; then, timed (*ns), fires everything due (sweep) or finds
 * it by walking the table (sweep_scan, which disarms what it found
 * afterwards, untimed): *fired. */
#define SWEEP_ROUND 1024u

static int sweep_round(wctx *c, int wl, uint64_t *fired, uint64_t *ns)
{
    const bench_cc *cc = c->im->cc;
    uint64_t b = c->mine < SWEEP_ROUND ? c->mine : SWEEP_ROUND;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t past = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - 1000000ull;
    int rc = 0;
    for (uint64_t k = 0; k < b && rc == 0; k++, c->next_key++)
        rc = cc->arm(c->h, &c->ids[c->w + c->nw * (c->next_key % c->mine)], past);
    if (rc)
        return rc;
    *fired = 0;
    uint64_t a = tsc_begin();
    rc = wl == WL_SWEEP ? cc->sweep(c->h, fired) : cc->due_scan(c->h, c->made, c->made_cap, fired);
    *ns = cyc_ns(tsc_end() - a);
    for (uint64_t k = 0; wl == WL_SWEEP_SCAN && k < *fired && rc == 0; k++)
        rc = cc->arm(c->h, &c->made[k], 0);
    return rc;
}

static int sweep_rep(wctx *c, int wl, wrep *out, uint64_t deadline)
{
    uint64_t ops = 0, spent = 0, flt = minor_faults();
    int rc = 0;
    alloc_count_start();
    while (rc == 0 && tsc_begin() < deadline) {
        uint64_t fired, ns;
        if ((rc = sweep_round(c, wl, &fired, &ns)) != 0)
            break;
        if (fired)
            hist_add(out->hist, ns / fired);
        ops += fired;
        spent += ns;
    }
    out->allocs = alloc_count_stop();
    out->minflt = minor_faults() - flt;
    out->elapsed_ns = spent; /* time spent sweeping: ops/s is sessions fired per second of it */
    out->ops = ops;
    return rc;
}

void worker(const run *R, unsigned w)
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
    if (R->wl == WL_CREATE || R->wl == WL_SWEEP_SCAN) { /* sweep_scan: what it found due */
        c.made_cap = R->wl == WL_CREATE ? P.create_cap / R->procs : R->n;
        c.made = malloc((c.made_cap + 1) * sizeof *c.made);
    }
    if (!c.buf || !c.state || !c.variant || (c.made_cap && !c.made)) {
        worker_fail(out, R->impl, "setup", bench_fail("out of memory"));
        _exit(1);
    }
    op_fn op = op_of(R->wl);
    int sweeping = R->wl == WL_SWEEP || R->wl == WL_SWEEP_SCAN;
    if (sweeping) {
        uint64_t fired, ns;
        for (int k = 0; k < 3 && rc == 0; k++) /* warm-up: untimed rounds */
            rc = c.mine ? sweep_round(&c, R->wl, &fired, &ns) : 0;
    } else if (R->wl == WL_EVENT_CONSUME) {
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
        else if (sweeping)
            rc = c.mine ? sweep_rep(&c, R->wl, &out->rep[k], deadline_after(P.duration)) : 0;
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
void pinner(const run *R, unsigned w)
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

/* What the harness itself costs per op (key choice; building a dialog
 * key), so it can be told apart from the stores' cost. */
void measure_harness(void)
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
