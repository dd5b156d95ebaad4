/*
 * shmreg-bench.h — what the files of tools/shmreg-bench share.
 *
 * The bench answers "why not Redis, why not plain LMDB, what does it
 * cost?" by running the same workloads, on the same generated data, against
 * several stores in one run. To keep that comparison honest every store
 * implements one small registry API (bench_impl below) and the workloads
 * are written once, on top of it: a store cannot win by running a different
 * loop. The stores:
 *
 *   shmreg  the library, reading SDPs in place (shmreg-bench-stores.c)
 *   copy    the same registry, but every read copies the SDPs out first:
 *           what copying registries (Kamailio htable, OpenSIPS cachedb) do
 *   limit   a private open-addressing hash table in this process: the
 *           ceiling no shared registry can beat (shmreg-bench-stores.c)
 *   lmdb    an LMDB-only registry, one transaction per operation
 *           (shmreg-bench-lmdb.c)
 *   redis   hiredis over a unix socket to a redis-server the bench starts
 *           (shmreg-bench-redis.c)
 *
 * Call control (profiles with limits, timeouts and the sweep, lookup by
 * user) has workloads of its own, each against a baseline measured in the
 * same run: the limit store's private counter for admission and profile
 * counts, a scan of the table for the sweep and for lookup by user
 * (shmreg-bench-control.c).
 *
 * Everything else (data, clock, histogram) is in shmreg-bench-util.c; the
 * malloc counter is the tests' t/alloc_count.c. The runner (options, plan,
 * forking and gathering, main) is shmreg-bench.c, what a worker runs
 * shmreg-bench-workloads.c, the tables, JSON, targets and plot
 * shmreg-bench-report.c.
 */
#ifndef SHMREG_BENCH_H
#define SHMREG_BENCH_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "shmreg.h"

/* ---------------------------------------------------------------- data */

/* One session's content, identical for every store. The strings point into
 * the generator's pools and into keybuf (Call-ID and tags are unique per
 * session index, so dialogs never collide). */
typedef struct bench_rec {
    shmreg_fields f;
    const char *sdp[2];
    size_t sdp_len[2];
    char keybuf[96];
} bench_rec;

/* Generated once from the seed; read-only afterwards (inherited by forked
 * workers). */
typedef struct bench_data {
    uint64_t seed;
    size_t sdp_bytes;        /* mean SDP length */
    size_t sdp_max;          /* longest SDP any session has */
} bench_data;

/* Build the pools. SDP lengths are uniform in sdp_bytes +- spread_pct%. */
void data_init(bench_data *d, uint64_t seed, size_t sdp_bytes, unsigned spread_pct);
void data_rec(const bench_data *d, uint64_t i, bench_rec *r);
/* Only the dialog key of session i (Call-ID, local tag, remote tag). */
void data_keys(const bench_data *d, uint64_t i, bench_rec *r);
/* Only the From URI of session i (one of 256 callers: lookup by user). */
shmreg_str data_from(const bench_data *d, uint64_t i);
size_t data_sdp_len(const bench_data *d, uint64_t i, int which);
/* Payload of sessions [0, n): string fields + both SDPs + the dialog key
 * (which the dialog index stores a second time). */
uint64_t data_payload(const bench_data *d, uint64_t n);
/* An SDP body of the same length as session i's, but different bytes:
 * what sdp_replace writes (variant 0 or 1 alternately). */
const char *data_sdp_variant(const bench_data *d, uint64_t i, int which, int variant);
/* Deterministic 128-bit ID for stores that let the caller choose IDs
 * (shmreg draws its own from libsodium; the key distribution is the same:
 * uniformly random). */
void data_id(const bench_data *d, uint64_t i, shmreg_id *id);

/* Read a string "in place" the same way for every store: one load per
 * cache line plus the last byte. Cheap, but it faults in every line, so
 * a store whose bytes are far away pays for it. */
static inline uint64_t bench_touch(const void *p, size_t len)
{
    const unsigned char *s = p;
    uint64_t acc = len;
    for (size_t i = 0; i < len; i += 64)
        acc += s[i];
    if (len)
        acc += s[len - 1];
    return acc;
}

/* ---------------------------------------------------------------- clock */

static inline uint64_t tsc_begin(void)
{
    uint32_t lo, hi;
    __asm__ __volatile__("lfence\n\trdtsc" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static inline uint64_t tsc_end(void)
{
    uint32_t lo, hi, aux;
    __asm__ __volatile__("rdtscp\n\tlfence" : "=a"(lo), "=d"(hi), "=c"(aux)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

void clock_calibrate(void);
extern double tsc_per_ns;         /* calibrated against CLOCK_MONOTONIC */
extern uint64_t tsc_overhead;     /* cycles of an empty tsc_begin/tsc_end pair */
uint64_t mono_ns(void);
/* A new ID for stores that let the caller choose (as random as shmreg's
 * to a hash table, from a process-private counter: no system call). */
void bench_new_id(shmreg_id *id);

/* ---------------------------------------------------------------- histogram */

/* Log-linear: exact below 64 ns, then 32 buckets per power of two (about
 * 3% resolution) up to 2^40 ns. */
#define HIST_SUB 32u
#define HIST_BUCKETS (64u + 35u * HIST_SUB)
void hist_add(uint64_t *h, uint64_t ns);
uint64_t hist_pct(const uint64_t *h, double p);    /* p in [0,1] */

/* ---------------------------------------------------------------- malloc counter */

/* Heap allocations made by this process between alloc_count_start() and
 * alloc_count_stop(): the tests' counter (t/alloc_count.c), which the
 * Makefile links into the bench too, so there is one malloc interposer. */
#include "../t/alloc_count.h"

/* ---------------------------------------------------------------- stores */

enum { IMPL_SHMREG, IMPL_COPY, IMPL_LIMIT, IMPL_LMDB, IMPL_REDIS, IMPL_COUNT };

/* Where the stores keep their files and how big they must be. */
typedef struct bench_env {
    const char *dir;          /* scratch directory on /dev/shm */
    const char *redis_sock;   /* unix socket of the bench's redis-server */
    const bench_data *data;
    uint64_t capacity;        /* sessions alive at once, at most */
} bench_env;

/* Memory a store used for `sessions` sessions (0 where not measured). */
typedef struct bench_mem {
    uint64_t bytes;           /* the store's own accounting, see mem_what */
    uint64_t resident;        /* bytes actually backed by RAM, if known */
    uint64_t event_ring;      /* records in the store's event ring (0: unbounded) */
    const char *what;
} bench_mem;

typedef struct bench_store bench_store;   /* one store, created by the parent */
typedef struct bench_h bench_h;           /* one process's handle on it */

/* Call control, for the stores that have it (shmreg-bench-control.c);
 * each pointer may be NULL. Return 0 or a negative code, as below. */
typedef struct bench_cc {
    /* profiles: join (profile, value) if it then has at most `limit`
     * members; leave; the member count */
    int (*join)(bench_h *h, const shmreg_id *id, shmreg_str profile, shmreg_str value, uint32_t limit);
    int (*leave)(bench_h *h, const shmreg_id *id, shmreg_str profile, shmreg_str value);
    int (*count)(bench_h *h, shmreg_str profile, shmreg_str value, uint64_t *count);
    /* timeouts: arm `id` to be handed over (notify) at `when` (realtime
     * ns; 0 disarms); fire every due one by the store's sweeper, *fired:
     * how many; or find them by a walk of the table, their IDs into
     * due[0..cap), *n: how many */
    int (*arm)(bench_h *h, const shmreg_id *id, uint64_t when);
    int (*sweep)(bench_h *h, uint64_t *fired);
    int (*due_scan)(bench_h *h, shmreg_id *due, uint64_t cap, uint64_t *n);
    /* every call from the caller of `from` (a From URI), read in place:
     * through the user index, or by a walk of the table comparing From */
    int (*user_find)(bench_h *h, shmreg_str from, uint64_t *sink);
    int (*user_scan)(bench_h *h, shmreg_str from, uint64_t *sink);
} bench_cc;

extern const bench_cc cc_shmreg, cc_limit;
/* The limit store's fast unkeyed hash of n bytes, chained through h. */
uint64_t bench_hash(const void *p, size_t n, uint64_t h);
/* The library handle of a shmreg store's bench_h (shmreg-bench-stores.c). */
shmreg *bench_shmreg(bench_h *h);

/* The registry API every store implements. Return 0 or a negative code
 * (for shmreg the SHMREG_E* value; others use -1 and set bench_err).
 * Pointer-returning reads consume what they read through bench_touch()
 * and add the result to *sink, so nothing can be optimised away. */
typedef struct bench_impl {
    const char *name, *what;
    /* parent: make an empty store / free it (and its files) */
    int (*open)(const bench_env *e, bench_store **out);
    void (*close)(bench_store *s);
    /* any process: its own handle (workers call this after fork) */
    int (*attach)(bench_store *s, bench_h **out);
    void (*detach)(bench_h *h);
    /* parent: add sessions [from, to) with their dialogs and SDPs, state
     * Active; the IDs go to ids[i]. NULL: the bench uses the ops below. */
    int (*load)(bench_h *h, const bench_data *d, uint64_t from, uint64_t to, shmreg_id *ids);
    int (*mem)(bench_h *h, uint64_t sessions, bench_mem *out);

    /* with_sdp: the session is born with r's two SDPs, in the same call
     * (what a server does with the offer it holds); 0: none yet */
    int (*create)(bench_h *h, const bench_rec *r, int with_sdp, shmreg_id *id);
    int (*bind)(bench_h *h, const bench_rec *r, const shmreg_id *id);
    /* create (with r's SDPs) and bind in one call, as one step of the store
     * (NULL: create, then bind) */
    int (*create_bound)(bench_h *h, const bench_rec *r, shmreg_id *id);
    int (*set_sdp)(bench_h *h, const shmreg_id *id, int which, const char *sdp, size_t len);
    int (*transition)(bench_h *h, const shmreg_id *id, int expected, int to);
    int (*counter)(bench_h *h, const shmreg_id *id, int ctr, uint64_t delta);
    int (*find_read)(bench_h *h, const shmreg_id *id, uint64_t *sink);
    int (*find_copy)(bench_h *h, const shmreg_id *id, char *buf, uint64_t *sink);
    int (*dialog_find)(bench_h *h, const bench_rec *r, shmreg_id *out);
    int (*del)(bench_h *h, const shmreg_id *id);
    /* events; NULL where the store has none */
    int (*publish)(bench_h *h, const shmreg_id *id, const void *data, size_t len);
    /* n events with one call (NULL: the store has no such call) */
    int (*publish_batch)(bench_h *h, const shmreg_id *ids, const void *const *data, const size_t *len,
                         size_t n);
    int (*sub_open)(bench_h *h, void **sub);
    /* Deliver what is there (block up to 1 ms when nothing is): returns
     * events delivered, *end set when the producer's END marker came. */
    int (*sub_poll)(void *sub, int *end, uint64_t *missed, uint64_t *sink);
    void (*sub_close)(void *sub);
    int (*publish_end)(bench_h *h);
    /* A stuck reader (replace_pinned): enter a read section and read
     * session `id` in place, holding its pointers until unpin. NULL where
     * the store has no read sections. */
    int (*pin)(bench_h *h, const shmreg_id *id, uint64_t *sink);
    void (*unpin)(bench_h *h);
    const bench_cc *cc;   /* call control; NULL where the store has none */
} bench_impl;

extern const bench_impl impl_shmreg, impl_copy, impl_limit, impl_lmdb, impl_redis;

/* Detail of the last failure of a non-shmreg store (process-local). */
extern char bench_err[256];
int bench_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *bench_strerror(int impl, int rc);

/* Redis server life cycle (shmreg-bench-redis.c): start one on a socket in
 * a fresh /tmp directory; returns 0, or -1 with *why saying why not. */
int redis_start(char *sock, size_t socklen, const char **why);
void redis_stop(void);
uint64_t redis_peak_rss_kib(void);

/* CPU seconds since boot the machine spent busy and stolen (/proc/stat),
 * and what this process and its reaped children used: their difference
 * over a run is what other processes took from it. */
int machine_cpu(double *busy, double *steal);
double own_cpu(void);
double redis_cpu_seconds(void);
/* CPU seconds process `pid` has used (user + system), from /proc; 0 when
 * it cannot be read. */
double proc_cpu_seconds(pid_t pid);
/* The shmreg-sync binary next to this bench into out[0..cap): 0, or 1
 * with the reason on stderr. */
int bench_sync_bin(char *out, size_t cap);

/* Remove a directory tree (scratch dirs). */
void rm_tree(const char *path);


/* ================================================================ the program
 * What shmreg-bench.c (options, plan, runner, main), -workloads.c (what a
 * worker process runs) and -report.c (tables, JSON, targets, plot) share:
 * the workload and result tables, the plan, and the shared area through
 * which forked workers report to the parent. */

enum {
    WL_CREATE, WL_FIND_READ, WL_FIND_COPY, WL_TRANSITION, WL_SDP_REPLACE, WL_DIALOG_FIND,
    WL_COUNTER, WL_EVENT_PUBLISH, WL_EVENT_CONSUME, WL_LIFECYCLE, WL_REPLACE_PINNED,
    WL_ADMIT, WL_PROFILE_COUNT, WL_SWEEP, WL_SWEEP_SCAN, WL_USER_FIND, WL_USER_SCAN, WL_EVENT_BATCH,
    WL_COUNT
};

typedef struct wl_info {
    const char *name, *what;
    int read;     /* a read workload: scaling target applies */
    int write;    /* changes per-session state: each worker owns a partition */
} wl_info;
extern const wl_info WL[WL_COUNT];
/* Where a workload runs that differs from what read/write say (procs_for;
 * all zero for most): */
typedef struct wl_where {
    int scaled;   /* quick profile: also 2 and 4 processes, as reads */
    int every;    /* quick profile: at every session count, as reads */
    int single;   /* one process only (unless --procs): one sweeper's cost */
} wl_where;
extern const wl_where WL_WHERE[WL_COUNT];
extern const bench_impl *const IMPLS[IMPL_COUNT];
/* The store an impl runs on (copy shares shmreg's registry). */
int backend_of(int impl);
/* 1 when the workload runs on that impl. */
int supports(int wl, int impl);

typedef struct plan {
    const char *name;
    double duration;              /* seconds per repetition */
    int reps;                     /* repetitions per measurement; the best is kept */
    int rounds;                   /* passes over every store; each row keeps its best */
    uint64_t points[8];           /* session counts the workloads run at */
    int npoints;
    uint64_t mem_points[8];       /* session counts measured for memory only */
    int nmem;
    uint64_t create_cap;          /* sessions one create measurement may add */
    unsigned procs_override[16];
    int nprocs_override;
} plan;

extern plan P;

typedef struct bench_opts {
    int full, json, no_redis, reps, rounds;
    const char *plot;
    const char *compare;          /* --compare: an earlier run's --json output */
    double duration;
    size_t sdp_bytes;
    unsigned sdp_spread;
    uint64_t seed;
    uint64_t sessions;
    unsigned wl_mask, impl_mask;
} bench_opts;
extern bench_opts opt;

/* The session count the headline figures and targets are taken at. */
uint64_t main_point(void);

/* `shmreg-bench --sync` (shmreg-bench-sync.c): shmreg-sync's keep-up rate,
 * its cost to a worker, restore time, the daemon run with --interval
 * interval_ms (0: 100). Scratch registries go in `scratch`; prints a
 * table (or JSON); 0 or 1. */
int bench_sync(const char *scratch, int json, unsigned interval_ms);
/* `shmreg-bench --mirror` (shmreg-bench-mirror.c): shmreg-sync --redis
 * between two registries (nodes 1 and 2) through a redis-server it
 * starts: replication lag at offered rates, takeover time after a
 * daemon's SIGKILL, the daemon's cost to a worker. Scratch registries go
 * in `scratch`; prints a table (or JSON); 0 or 1. */
int bench_mirror(const char *scratch, int json);
/* Processes to run a workload with at a given session count (0: not run). */
int procs_for(uint64_t point, int wl, unsigned *out);

#define MAX_REPS 8 /* repetitions a measurement keeps (and rounds at most) */

typedef struct result {
    int wl, impl;
    unsigned procs;
    uint64_t sessions;
    double ops_per_s, allocs_per_op, faults_per_op;
    uint64_t ops, p50, p99, rss_kib;
    double published_per_s;       /* event_consume: the producer's rate */
    uint64_t missed;              /* event_consume: events subscribers missed */
    double rep_ops[MAX_REPS];     /* ops/s of every repetition (at most MAX_REPS) */
    int nreps;
    int ok;
    char err[240];
} result;

typedef struct memres {
    int impl;
    uint64_t sessions, bytes, resident, payload;
    const char *what;
} memres;

/* Event bus end-to-end latency (measure_event_latency). */
#define LAT_EVENTS 20000     /* events published */
#define LAT_GAP_NS 50000     /* apart, so the subscriber sleeps between them */
typedef struct lat_result {
    uint64_t p50, p99;
    uint64_t received, missed;
    int ok;
} lat_result;

/* What the runner gathered, for the reports. */
extern result *RES;
extern size_t nres;
extern memres MEM[64];
extern size_t nmem;
extern char skipped[8][160];
extern int nskipped;
extern int have_redis;
extern uint64_t max_worker_rss;
extern double harness_pick_ns, harness_key_ns;
extern lat_result LAT;
extern double others_cpus, steal_cpus;
extern char cmdline[512];
extern bench_data DATA;
const result *res_find(int wl, int impl, unsigned procs, uint64_t sessions);

#define MAX_PROCS 64

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

extern shared *SH;

typedef struct run {
    int wl, impl;
    unsigned procs;
    bench_store *store;
    const shmreg_id *ids;
    uint64_t n;
} run;

/* A worker process (never returns): workload R->wl on R->impl, its share
 * w of the sessions, P.reps repetitions, each after the barrier; its
 * figures go to SH->w[w]. pinner: replace_pinned's stuck reader. */
__attribute__((noreturn)) void worker(const run *R, unsigned w);
__attribute__((noreturn)) void pinner(const run *R, unsigned w);
/* The harness's own cost per op, into harness_pick_ns / harness_key_ns. */
void measure_harness(void);

/* Reports (shmreg-bench-report.c). */
char *human(double v, char *buf, size_t n);
void evaluate_targets(void);
void print_tables(FILE *f);
void print_json(FILE *f);
void plot(const char *file);
/* --compare: read an earlier run's results (the bench's own --json, one
 * result per line) and print, for every row both runs have, the old and
 * new ops/s and their ratio, and shmreg's ratio to the limit in each run.
 * compare_load: 0, or -1 with the reason on stderr. */
int compare_load(const char *path);
void print_compare(FILE *f);

#endif
