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
 * This file is the runner: options, the plan, forking the workers of one
 * measurement and gathering their figures, the event-latency probe and
 * main. What a worker runs is in shmreg-bench-workloads.c; the tables,
 * JSON, targets and plot in shmreg-bench-report.c.
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

/* ================================================================ options, plan */



bench_opts opt = {.sdp_bytes = 1024, .sdp_spread = 25, .seed = 1, .wl_mask = ~0u, .impl_mask = ~0u};
plan P;

/* The session count the headline figures and targets are taken at. */
uint64_t main_point(void) { return P.points[P.npoints > 1 ? 1 : 0]; }

/* Processes to run a workload with at a given session count (0: not run
 * there). Quick: everything at 10k sessions, read workloads also at 1k
 * (their data in cache: what the registry itself costs) and with 1, 2 and
 * 4 processes. Full: everything everywhere, 1..8 processes at 10k. The
 * call-control workloads say where they differ (WL_WHERE: admission also
 * scales, the baselines that grow with the table run at every count, a
 * sweep is one sweeper's). */
int procs_for(uint64_t point, int wl, unsigned *out)
{
    static const unsigned one[] = {1}, q3[] = {1, 2, 4}, q2[] = {1, 2}, f4[] = {1, 2, 4, 8}, f2[] = {1, 4};
    int scaled = WL[wl].read || wl == WL_EVENT_CONSUME || WL_WHERE[wl].scaled;
    const unsigned *l = one;
    int n = 1;
    if (P.nprocs_override) {
        memcpy(out, P.procs_override, sizeof(unsigned) * (size_t)P.nprocs_override);
        return P.nprocs_override;
    }
    if (!opt.full && P.npoints > 1 && point != main_point()) {
        if (!WL[wl].read && !WL_WHERE[wl].every)
            return 0;
    } else if (WL_WHERE[wl].single) {
        /* one process */
    } else if (!opt.full) {
        if (WL[wl].read || WL_WHERE[wl].scaled)
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

/* Gathered here, read by the reports (shmreg-bench.h). */
result *RES;
size_t nres;
memres MEM[64];
size_t nmem;
char skipped[8][160];
int nskipped;
static char redis_sock[200];
int have_redis;
uint64_t max_worker_rss;
static char scratch[200];
static pid_t parent_pid;
double harness_pick_ns, harness_key_ns;
lat_result LAT;
double others_cpus = -1, steal_cpus; /* other processes' CPU use during the run */
char cmdline[512];
bench_data DATA;

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

/* *into becomes *faster (its rate, latencies, counts), keeping into's
 * own list of every repetition's rate. */
static void res_take(result *into, const result *faster)
{
    double reps[MAX_REPS];
    int n = into->nreps;
    memcpy(reps, into->rep_ops, sizeof reps);
    *into = *faster;
    memcpy(into->rep_ops, reps, sizeof reps);
    into->nreps = n;
}

/* Rounds after the first measure every row again: fold the newest result
 * (the last) into the row it repeats, keeping the faster of the two with
 * every repetition's rate, and drop it. On a shared machine a noisy spell
 * then costs each store one round, not the one store it happened to hit,
 * so the ratios between stores hold better. */
static void res_fold_last(void)
{
    result *r = &RES[nres - 1];
    for (size_t i = 0; i + 1 < nres; i++) {
        result *e = &RES[i];
        if (e->wl != r->wl || e->impl != r->impl || e->procs != r->procs || e->sessions != r->sessions)
            continue;
        for (int k = 0; k < r->nreps && e->nreps < MAX_REPS; k++)
            e->rep_ops[e->nreps++] = r->rep_ops[k];
        if (r->ok && (!e->ok || r->ops_per_s > e->ops_per_s))
            res_take(e, r);
        nres--;
        return;
    }
}

const result *res_find(int wl, int impl, unsigned procs, uint64_t sessions)
{
    for (size_t i = 0; i < nres; i++)
        if (RES[i].ok && RES[i].wl == wl && RES[i].impl == impl && RES[i].procs == procs &&
            RES[i].sessions == sessions)
            return &RES[i];
    return NULL;
}

/* ================================================================ shared area */

/* The workers' reports and the barrier (shmreg-bench.h); the workers wait
 * in shmreg-bench-workloads.c, the parent wakes them here. */
shared *SH;

static void futex_wake(_Atomic uint32_t *w)
{
    syscall(SYS_futex, w, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
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
            if (k == 0 || cur.ops_per_s > r->ops_per_s)
                res_take(r, &cur);
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


/* Sessions [0, n) through the API, for stores without a bulk loader. */
static int load_via_api(int impl, bench_h *h, uint64_t n, shmreg_id *ids)
{
    const bench_impl *im = IMPLS[impl];
    bench_rec r;
    for (uint64_t i = 0; i < n; i++) {
        data_rec(&DATA, i, &r);
        int rc = im->create(h, &r, 1, &ids[i]);
        if (rc == 0)
            rc = im->bind(h, &r, &ids[i]);
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
static void run_backend(int backend, uint64_t n, int mem_only, int round)
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
    if (rc == 0 && (rc = im->mem(h, n, &m)) == 0 && round == 0 && nmem < sizeof MEM / sizeof *MEM)
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
                    if (round > 0)
                        res_fold_last();
                }
            }
        }
    }
    im->close(st);
    free(ids);
}

/* ================================================================ event latency */

/* End-to-end latency of the event bus: one producer publishes custom
 * events carrying their CLOCK_MONOTONIC publish time, paced 50 us apart so
 * the subscriber goes back to sleep between events (shmreg_poll blocking
 * on the ring's futex); the subscriber, another process, takes the
 * difference on arrival. This is the wake-up path the target is about,
 * not throughput. */
/* LAT_EVENTS, LAT_GAP_NS: shmreg-bench.h (the report names them too). */


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
            "  --rounds N          measure every store N times over, store after store, and keep\n"
            "                      each row's fastest (default 1): a noisy spell on a shared\n"
            "                      machine then hits every store, not one, and the ratios hold\n"
            "  --sessions N        run the workloads at N sessions only\n"
            "  --procs LIST        process counts for every workload, e.g. 1,2,4\n"
            "  --workloads LIST    e.g. find_read,dialog_find (default: all); call control:\n"
            "                      admit (profile join with a limit + leave), profile_count,\n"
            "                      sweep and its baseline sweep_scan (timeouts fired, per\n"
            "                      session), user_find and its baseline user_scan (a\n"
            "                      caller's calls by the user index / by a table walk)\n"
            "  --impls LIST        of shmreg,copy,limit,lmdb,redis (default: all)\n"
            "  --sdp-bytes N       mean SDP size (default 1024)\n"
            "  --sdp-spread PCT    SDP sizes uniform in N +- PCT%% (default 25; 0: all exactly N)\n"
            "  --seed N            data generator seed (default 1)\n"
            "  --no-redis          do not start redis-server\n"
            "  --compare OLD.json  after the tables, each row's ops/s against the same row of\n"
            "                      an earlier run (its --json output), and shmreg's ratio to\n"
            "                      the limit then and now: what a change gained or lost\n"
            "                      (printed after the tables; not with --json)\n"
            "  --sync              only shmreg-sync: keep-up rate at 10k and 100k sessions,\n"
            "                      worker cost daemon on vs off, restore time (about a minute)\n"
            "  --sync-interval MS  the daemon's --interval for --sync (default 100)\n"
            "  --mirror            only shmreg-sync --redis between two local registries:\n"
            "                      replication lag, takeover time, worker cost (under a minute)\n"
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
        {"rounds", required_argument, 0, 'O'},
        {"compare", required_argument, 0, 'C'},
        {"sync", no_argument, 0, 'Y'},       {"sync-interval", required_argument, 0, 'I'},
        {"mirror", no_argument, 0, 'M'},
        {"help", no_argument, 0, 'h'},       {0, 0, 0, 0},
    };
    const char *procs_list = NULL;
    int sync_only = 0, mirror_only = 0;
    unsigned sync_interval = 0;
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
        case 'Y': sync_only = 1; break;
        case 'M': mirror_only = 1; break;
        case 'I': sync_interval = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'k': opt.reps = atoi(optarg); break;
        case 'O': opt.rounds = atoi(optarg); break;
        case 'C': opt.compare = optarg; break;
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
    P.rounds = opt.rounds > 0 ? (opt.rounds < MAX_REPS ? opt.rounds : MAX_REPS) : 1;
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
    if (sync_only)
        return bench_sync(scratch, opt.json, sync_interval);
    if (mirror_only)
        return bench_mirror(scratch, opt.json);
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
                run_backend(order[b], P.mem_points[i], 1, 0);
    for (int round = 0; round < P.rounds; round++) {
        if (P.rounds > 1)
            progress("round %d of %d", round + 1, P.rounds);
        for (int i = 0; i < P.npoints; i++)
            for (int b = 0; b < 4; b++)
                if (want_impl(order[b]) || (order[b] == IMPL_SHMREG && want_impl(IMPL_COPY)))
                    run_backend(order[b], P.points[i], 0, round);
    }

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
    if (opt.compare && compare_load(opt.compare) != 0)
        opt.compare = NULL; /* said why on stderr; the run's own figures still print */
    if (opt.json)
        print_json(stdout);
    else
        print_tables(stdout);
    if (opt.compare && !opt.json)
        print_compare(stdout);
    if (opt.plot)
        plot(opt.plot);
    fflush(stdout);
    progress("done");
    int failed = 0;
    for (size_t i = 0; i < nres; i++)
        failed |= !RES[i].ok;
    return failed ? 1 : 0;
}

