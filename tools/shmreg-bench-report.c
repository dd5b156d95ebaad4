/*
 * shmreg-bench-report.c — what the bench prints once everything is
 * measured: the goals with their measured values, the tables, the JSON
 * document and the process-scaling chart (gnuplot). Only reads what the
 * runner gathered (shmreg-bench.h), so a report can change without
 * touching how a number is made.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "shmreg-bench.h"

char *human(double v, char *buf, size_t n)
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

/* ================================================================ baselines */

/* Call control against its baselines in the same run: a workload of one
 * store against another workload or another store, at the same
 * processes and sessions. */
typedef struct baseline {
    int wl, impl;         /* the measured row */
    int base_wl, base_impl;
    const char *what;     /* of the ratio */
} baseline;

static const baseline BASE[] = {
    {WL_ADMIT, IMPL_SHMREG, WL_ADMIT, IMPL_LIMIT, "admission vs a private counter (limit)"},
    {WL_PROFILE_COUNT, IMPL_SHMREG, WL_PROFILE_COUNT, IMPL_LIMIT, "profile count vs a private counter (limit)"},
    {WL_SWEEP, IMPL_SHMREG, WL_SWEEP_SCAN, IMPL_SHMREG, "sweep vs finding what is due by a table walk"},
    {WL_USER_FIND, IMPL_SHMREG, WL_USER_SCAN, IMPL_SHMREG, "lookup by user vs a table walk"},
    {WL_EVENT_BATCH, IMPL_SHMREG, WL_EVENT_PUBLISH, IMPL_SHMREG, "events 16 to a call vs one to a call"},
};
#define NBASE (sizeof BASE / sizeof BASE[0])

/* Calls every (row, its baseline) pair the run has. */
static void each_baseline(void (*fn)(const baseline *b, const result *r, const result *base, void *arg),
                          void *arg)
{
    for (size_t k = 0; k < NBASE; k++)
        for (size_t i = 0; i < nres; i++) {
            const result *r = &RES[i], *x;
            if (r->ok && r->wl == BASE[k].wl && r->impl == BASE[k].impl &&
                (x = res_find(BASE[k].base_wl, BASE[k].base_impl, r->procs, r->sessions)) && x->ops_per_s > 0)
                fn(&BASE[k], r, x, arg);
        }
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

static target TG[64];
static int ntg;

static void tg_add(const char *name, const char *goal, double measured, const char *unit, int met)
{
    if (ntg >= 64)
        return;
    target *t = &TG[ntg++];
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->goal, sizeof t->goal, "%s", goal);
    snprintf(t->unit, sizeof t->unit, "%s", unit);
    t->measured = measured;
    t->met = met;
}

void evaluate_targets(void)
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
            snprintf(name, sizeof name, "find_read, %llu sessions: speed vs in-process limit", (unsigned long long)p);
            tg_add(name, ">= 0.8x", s->ops_per_s / l->ops_per_s, "x", s->ops_per_s >= 0.8 * l->ops_per_s);
        }
        if (s && d) {
            snprintf(name, sizeof name, "find_read, %llu sessions: speed-up vs LMDB-only", (unsigned long long)p);
            tg_add(name, ">= 2x", s->ops_per_s / d->ops_per_s, "x", s->ops_per_s / d->ops_per_s >= 2);
            snprintf(name, sizeof name, "find_read, %llu sessions: the same, first goal", (unsigned long long)p);
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
    /* Single-process cost against the limit, and scaling where the run
     * had 16 processes (a 16-core machine: .dev/scale.sh). */
    static const struct { int wl; double vs_limit; double x16; } CORE[] = {
        {WL_CREATE, 0.8, 8}, {WL_SDP_REPLACE, 0.5, 10}, {WL_TRANSITION, 0, 10},
        {WL_EVENT_PUBLISH, 0, 10}, {WL_LIFECYCLE, 0, 8},
    };
    for (size_t i = 0; i < sizeof CORE / sizeof CORE[0]; i++) {
        const result *a = res_find(CORE[i].wl, IMPL_SHMREG, 1, n), *l = res_find(CORE[i].wl, IMPL_LIMIT, 1, n),
                     *a16 = res_find(CORE[i].wl, IMPL_SHMREG, 16, n);
        char name[96], goal[16];
        if (a && l && CORE[i].vs_limit) {
            snprintf(name, sizeof name, "%s, one process: speed vs in-process limit", WL[CORE[i].wl].name);
            snprintf(goal, sizeof goal, ">= %.1fx", CORE[i].vs_limit);
            tg_add(name, goal, a->ops_per_s / l->ops_per_s, "x", a->ops_per_s >= CORE[i].vs_limit * l->ops_per_s);
        }
        if (a && a16) {
            snprintf(name, sizeof name, "%s: 16 processes vs 1", WL[CORE[i].wl].name);
            snprintf(goal, sizeof goal, ">= %.0fx", CORE[i].x16);
            tg_add(name, goal, a16->ops_per_s / a->ops_per_s, "x", a16->ops_per_s >= CORE[i].x16 * a->ops_per_s);
        }
    }
    const result *f16 = res_find(WL_FIND_READ, IMPL_SHMREG, 16, n), *l16 = res_find(WL_FIND_READ, IMPL_LIMIT, 16, n);
    if (f16 && l16)
        tg_add("find_read, 16 processes: speed vs in-process limit", ">= 0.8x", f16->ops_per_s / l16->ops_per_s,
               "x", f16->ops_per_s >= 0.8 * l16->ops_per_s);
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
    const result *ad = res_find(WL_ADMIT, IMPL_SHMREG, 1, n), *ad4 = res_find(WL_ADMIT, IMPL_SHMREG, 4, n);
    if (ad)
        tg_add("admission (join with a limit + leave), one process", ">= 1M/s", ad->ops_per_s, "ops/s",
               ad->ops_per_s >= 1e6);
    if (ad && ad4)
        tg_add("admission: 4 processes on 16 shared counters vs 1", ">= 1.0x", ad4->ops_per_s / ad->ops_per_s,
               "x", ad4->ops_per_s >= ad->ops_per_s);
    const result *pc = res_find(WL_PROFILE_COUNT, IMPL_SHMREG, 1, n);
    if (pc)
        tg_add("profile count read, one process", ">= 10M/s", pc->ops_per_s, "ops/s", pc->ops_per_s >= 1e7);
    const result *sw = res_find(WL_SWEEP, IMPL_SHMREG, 1, n), *sw1 = res_find(WL_SWEEP, IMPL_SHMREG, 1, P.points[0]);
    if (sw)
        tg_add("sweep: time per timeout fired", "<= 1 us", 1e6 / sw->ops_per_s, "us", sw->ops_per_s >= 1e6);
    if (sw && sw1 && sw1 != sw) {
        char name[96];
        snprintf(name, sizeof name, "sweep per timeout, %llu vs %llu sessions (~1000 due)", (unsigned long long)n,
                 (unsigned long long)P.points[0]);
        tg_add(name, "<= 1.5x", sw1->ops_per_s / sw->ops_per_s, "x", sw1->ops_per_s <= 1.5 * sw->ops_per_s);
    }
    const result *uf = res_find(WL_USER_FIND, IMPL_SHMREG, 1, n), *us = res_find(WL_USER_SCAN, IMPL_SHMREG, 1, n);
    if (uf && us)
        tg_add("lookup by user vs a table walk", ">= 20x", uf->ops_per_s / us->ops_per_s, "x",
               uf->ops_per_s >= 20 * us->ops_per_s);
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

static double ns_per_op(const result *r) { return 1e9 * r->procs / r->ops_per_s; }

static void count_row(const baseline *b, const result *r, const result *x, void *any)
{
    (void)b, (void)r, (void)x;
    *(int *)any = 1;
}

static void print_baseline(const baseline *b, const result *r, const result *x, void *f)
{
    fprintf(f, "  %-46s %5u %8llu %10.0f %10.0f %8.2fx\n", b->what, r->procs, (unsigned long long)r->sessions,
            ns_per_op(r), ns_per_op(x), r->ops_per_s / x->ops_per_s);
}

static void json_baseline(const baseline *b, const result *r, const result *x, void *f)
{
    static int n;
    fprintf(f, "%s\n    {\"what\": \"%s\", \"workload\": \"%s\", \"impl\": \"%s\", \"base_workload\": \"%s\", "
            "\"base_impl\": \"%s\", \"procs\": %u, \"sessions\": %llu, \"ns_per_op\": %.1f, "
            "\"base_ns_per_op\": %.1f, \"speedup\": %.4g}", n++ ? "," : "", b->what, WL[b->wl].name,
            IMPLS[b->impl]->name, WL[b->base_wl].name, IMPLS[b->base_impl]->name, r->procs,
            (unsigned long long)r->sessions, ns_per_op(r), ns_per_op(x), r->ops_per_s / x->ops_per_s);
}

void print_tables(FILE *f)
{
    char b1[32], b2[32];
    fprintf(f, "$ %s\n", cmdline);
    fprintf(f, "shmreg-bench, %s profile: best of %d x %.2f s per measurement%s, SDPs %zu B +-%u%%, seed %llu\n",
            P.name, P.reps * P.rounds, P.duration, P.rounds > 1 ? " (in rounds over every store)" : "",
            opt.sdp_bytes, opt.sdp_spread, (unsigned long long)opt.seed);
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
    int any = 0;
    each_baseline(count_row, &any);
    if (any) {
        fprintf(f, "\ncall control against its baselines (same run; ns per op = 1 / ops/s per process):\n");
        fprintf(f, "  %-46s %5s %8s %10s %10s %9s\n", "what", "procs", "sessions", "ns/op", "base ns/op",
                "speed-up");
        each_baseline(print_baseline, f);
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

void print_json(FILE *f)
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
    fprintf(f, ", \"reps\": %d, \"rounds\": %d", P.reps, P.rounds);
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
    fprintf(f, "  ],\n  \"baselines\": [");
    each_baseline(json_baseline, f);
    fprintf(f, "\n  ],\n  \"event_latency\": ");
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
void plot(const char *file)
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

/* ---------------------------------------------------------------- compare */

/* An earlier run's rows, by name: a row of this run is matched on
 * workload, store, processes and sessions. */
typedef struct old_row {
    char wl[32], impl[16];
    unsigned procs;
    uint64_t sessions;
    double ops_per_s;
} old_row;

static old_row *OLD;
static size_t nold;

/* The value after `"key": ` on a line of the bench's own JSON. */
static const char *json_field(const char *line, const char *key)
{
    char pat[48];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? p + strlen(pat) : NULL;
}

static int json_name(const char *line, const char *key, char *out, size_t n)
{
    const char *p = json_field(line, key);
    if (p == NULL || *p != '"')
        return -1;
    size_t i = 0;
    for (p++; *p && *p != '"' && i + 1 < n; p++)
        out[i++] = *p;
    out[i] = 0;
    return *p == '"' ? 0 : -1;
}

int compare_load(const char *path)
{
    FILE *in = fopen(path, "r");
    if (in == NULL) {
        fprintf(stderr, "shmreg-bench: --compare %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[4096];
    size_t cap = 0;
    int tool = 0;
    while (fgets(line, sizeof line, in)) {
        tool |= strstr(line, "\"tool\": \"shmreg-bench\"") != NULL;
        const char *ok = json_field(line, "ok"), *procs = json_field(line, "procs"),
                   *sessions = json_field(line, "sessions"), *ops = json_field(line, "ops_per_s");
        old_row r;
        if (!ok || strncmp(ok, "true", 4) != 0 || !procs || !sessions || !ops ||
            json_name(line, "workload", r.wl, sizeof r.wl) || json_name(line, "impl", r.impl, sizeof r.impl))
            continue;
        r.procs = (unsigned)strtoul(procs, NULL, 10);
        r.sessions = strtoull(sessions, NULL, 10);
        r.ops_per_s = strtod(ops, NULL);
        if (nold == cap) {
            cap = cap ? 2 * cap : 64;
            old_row *g = realloc(OLD, cap * sizeof *OLD);
            if (g == NULL)
                break;
            OLD = g;
        }
        OLD[nold++] = r;
    }
    fclose(in);
    if (!tool || nold == 0) {
        fprintf(stderr, "shmreg-bench: --compare %s: not the --json output of shmreg-bench "
                        "(or no successful row in it)\n", path);
        return -1;
    }
    return 0;
}

static const old_row *old_find(const char *wl, const char *impl, unsigned procs, uint64_t sessions)
{
    for (size_t i = 0; i < nold; i++)
        if (OLD[i].procs == procs && OLD[i].sessions == sessions && strcmp(OLD[i].wl, wl) == 0 &&
            strcmp(OLD[i].impl, impl) == 0)
            return &OLD[i];
    return NULL;
}

void print_compare(FILE *f)
{
    char a[16], b[16];
    fprintf(f, "\ncompared with the earlier run (%s): new / old ops/s; for shmreg, its ratio to\n"
               "limit in that run and in this one (the same machine, quiet, makes these fair)\n",
            opt.compare);
    fprintf(f, "  %-13s %-7s %5s %8s %10s %10s %7s %14s\n", "workload", "impl", "procs", "sessions",
            "old ops/s", "new ops/s", "new/old", "vs limit");
    int shown = 0;
    for (size_t i = 0; i < nres; i++) {
        const result *r = &RES[i];
        const old_row *o = r->ok ? old_find(WL[r->wl].name, IMPLS[r->impl]->name, r->procs, r->sessions) : NULL;
        if (o == NULL || o->ops_per_s <= 0)
            continue;
        shown++;
        fprintf(f, "  %-13s %-7s %5u %8llu %10s %10s %6.2fx", WL[r->wl].name, IMPLS[r->impl]->name, r->procs,
                (unsigned long long)r->sessions, human(o->ops_per_s, a, sizeof a),
                human(r->ops_per_s, b, sizeof b), r->ops_per_s / o->ops_per_s);
        const result *lim = r->impl == IMPL_SHMREG ? res_find(r->wl, IMPL_LIMIT, r->procs, r->sessions) : NULL;
        const old_row *olim = lim ? old_find(WL[r->wl].name, "limit", r->procs, r->sessions) : NULL;
        if (lim && lim->ok && lim->ops_per_s > 0 && olim && olim->ops_per_s > 0)
            fprintf(f, "  %5.2f -> %4.2f", o->ops_per_s / olim->ops_per_s, r->ops_per_s / lim->ops_per_s);
        fputc('\n', f);
    }
    if (shown == 0)
        fprintf(f, "  (no row of this run is in the earlier one: other workloads, sizes or process counts)\n");
}
