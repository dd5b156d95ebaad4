/*
 * shmregctl_admin.c — the commands about the registry as a whole:
 * create, destroy, stat, metrics, check, handles.
 *
 * stat and metrics show the same figures, gathered once by collect():
 * shmreg_stat() (a moment's snapshot, no lock), shmreg_session_counts()
 * (a walk of the table, no lock) and the call-control figures
 * (ctl_control_collect: a walk of the profile index and one of the
 * table, in read sections). "Handles" there means the workers: the
 * tool's own handle is not counted. Metrics label profile values, which
 * the application chooses (a customer, a caller): only the largest
 * --profile-top values of each profile get a series of their own, so a
 * registry of a million callers cannot flood the monitoring system.
 *
 * check runs shmreg_check(), which does the segment, then opens every
 * config (the header offers no LMDB check, so opening a view of each and
 * reading every entry is how a damaged record shows: the library
 * bounds-checks all of it). A registry whose header is damaged cannot be
 * attached at all; for check that is a problem found (exit 1) and named,
 * not a failure to open (3).
 */
#include <inttypes.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmregctl.h"

/* ------------------------------------------------------------ create / destroy */

int cmd_create(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {CTL_CREATE_OPTIONS, {0}};
    shmreg_options opt = {.flags = SHMREG_CREATE | SHMREG_EXCL};
    int ch;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1)
        if (ctl_create_option(c, ch, &opt) == CTL_USAGE)
            return CTL_USAGE;
    int rc = ctl_operands(c, argc, argv, 0, 0);
    if (rc)
        return rc;
    if (!c->path || !*c->path)
        return ctl_usage(c, "no registry given: use -r PATH or set SHMREG_PATH");
    rc = shmreg_open(c->path, &opt, &c->h);
    if (rc) {
        c->h = NULL;
        ctl_fail(c, rc, "cannot create registry");
        return rc == SHMREG_EEXIST ? CTL_PROBLEM : rc == SHMREG_EINVAL ? CTL_USAGE : CTL_NOOPEN;
    }
    shmreg_stats st;
    if ((rc = shmreg_stat(c->h, &st)))
        return ctl_fail(c, rc, "stat");
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_cstr(o, "created", c->path);
    out_u64(o, "max_sessions", st.max_sessions);
    out_bytes(o, "heap_bytes", st.heap_bytes);
    out_u64(o, "max_handles", st.max_handles);
    out_bytes(o, "segment_bytes", st.segment_bytes);
    out_cstr(o, "group", opt.group);
    if (st.node_id)
        out_u64(o, "node_id", st.node_id);
    out_obj_end(o);
    out_doc_end(o);
    return CTL_OK;
}

int cmd_destroy(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"force", no_argument, NULL, 'f'}, {0}};
    int force = 0, ch;
    while ((ch = ctl_getopt(c, argc, argv, "f", lo)) != -1)
        force = 1;
    int rc = ctl_operands(c, argc, argv, 0, 0);
    if (rc)
        return rc;
    if (!c->path || !*c->path)
        return ctl_usage(c, "no registry given: use -r PATH or set SHMREG_PATH");
    rc = shmreg_destroy(c->path, force);
    if (rc == SHMREG_EBUSY) {
        ctl_fail(c, rc, "not destroyed");
        fprintf(stderr, "shmregctl: use --force to remove it while they run\n");
        return CTL_PROBLEM;
    }
    if (rc) {
        ctl_fail(c, rc, "cannot destroy registry");
        return rc == SHMREG_ESYS ? CTL_PROBLEM : CTL_NOOPEN;
    }
    out_obj_begin(&c->o, NULL);
    out_cstr(&c->o, "destroyed", c->path);
    out_obj_end(&c->o);
    out_doc_end(&c->o);
    return CTL_OK;
}

/* ------------------------------------------------------------ stat / metrics */

typedef struct figures {
    shmreg_stats st;
    uint64_t by_state[SHMREG_STATE_COUNT];
    uint32_t handles;           /* workers: live handles but ours */
    ctl_control cc;             /* profiles, timeouts; ctl_control_free() */
} figures;

/* top: the values per profile the metrics name (0: none). */
static int collect(ctl *c, figures *f, unsigned top)
{
    int rc = shmreg_stat(c->h, &f->st);
    if (rc)
        return ctl_fail(c, rc, "cannot read statistics");
    if ((rc = shmreg_session_counts(c->h, f->by_state, SHMREG_STATE_COUNT)))
        return ctl_fail(c, rc, "cannot count sessions");
    f->handles = f->st.handles ? f->st.handles - 1 : 0;
    return ctl_control_collect(c, &f->cc, NULL, top, 1);
}

static double pct(uint64_t part, uint64_t whole)
{
    return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

static void warn_full(ctl *c, const char *what, uint64_t used, uint64_t cap)
{
    if (cap && used * 10 > cap * 9)
        ctl_err(c, 0, "warning: %s at %.1f %% of capacity (%" PRIu64 " of %" PRIu64 ")", what,
                pct(used, cap), used, cap);
}

static int list_config_gen(void *arg, shmreg_str name, uint64_t gen)
{
    out *o = arg;
    out_obj_begin(o, NULL);
    out_str(o, "name", name.ptr, name.len);
    out_u64(o, "gen", gen);
    out_obj_end(o);
    return 0;
}

/* stat's report (also metrics --json), on an open registry. */
static int stat_report(ctl *c)
{
    int rc;
    figures f;
    if ((rc = collect(c, &f, 0)))
        return rc;
    const shmreg_stats *st = &f.st;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_cstr(o, "path", c->path);
    out_time(o, "created_ns", st->created_ns);
    out_bytes(o, "segment_bytes", st->segment_bytes);

    out_obj_begin(o, "sessions");
    out_u64(o, "count", st->sessions);
    out_u64(o, "max", st->max_sessions);
    out_dbl(o, "use_pct", pct(st->sessions, st->max_sessions));
    out_obj_begin(o, "by_state");
    for (int s = 1; s < SHMREG_STATE_COUNT; s++)
        out_u64(o, shmreg_state_name(s), f.by_state[s]);
    out_obj_end(o);
    out_obj_end(o);

    out_obj_begin(o, "heap");
    out_bytes(o, "bytes", st->heap_bytes);
    out_bytes(o, "used_bytes", st->heap_used_bytes);
    out_bytes(o, "retired_bytes", st->heap_retired_bytes);
    out_dbl(o, "use_pct", pct(st->heap_used_bytes, st->heap_bytes));
    out_obj_end(o);

    out_obj_begin(o, "index");
    out_u64(o, "buckets", st->index_buckets);
    out_dbl(o, "load", st->index_buckets ? (double)st->sessions / st->index_buckets : 0);
    out_u64(o, "dialogs", st->dialogs);
    out_dbl(o, "dialog_load", st->index_buckets ? (double)st->dialogs / st->index_buckets : 0);
    out_obj_end(o);

    out_obj_begin(o, "rooms");
    out_u64(o, "count", st->rooms);
    out_u64(o, "max", st->max_rooms);
    out_obj_end(o);

    uint64_t values = 0, members = 0;
    for (size_t i = 0; i < f.cc.n; i++)
        values += f.cc.p[i].values, members += f.cc.p[i].members;
    out_obj_begin(o, "control");
    out_u64(o, "profiles", f.cc.n);
    out_u64(o, "profile_values", values);
    out_u64(o, "profile_members", members);
    out_u64(o, "timeouts_armed", f.cc.timeouts_armed);
    out_obj_end(o);
    ctl_control_free(&f.cc);

    out_obj_begin(o, "handles");
    out_u64(o, "count", f.handles);
    out_u64(o, "max", st->max_handles);
    if (st->oldest_read_ns)
        out_dur(o, "oldest_read_ns", st->oldest_read_ns);
    else
        out_null(o, "oldest_read_ns");
    out_obj_end(o);

    out_obj_begin(o, "events");
    out_u64(o, "published", st->events_published);
    out_u64(o, "ring_records", st->event_ring_records);
    out_u64(o, "dropped", st->events_dropped);
    out_u64(o, "stolen", st->events_stolen);
    out_obj_end(o);

    ctl_sync_fields(o, st);
    ctl_node_fields(c, st);

    out_obj_begin(o, "config");
    out_u64(o, "gen", st->config_gen);
    out_arr_begin(o, "configs");
    int cfg_rc = ctl_configs_exist(c) ? shmreg_config_list(c->h, list_config_gen, o) : 0;
    out_arr_end(o);
    out_obj_end(o);
    out_obj_end(o);
    out_doc_end(o);

    warn_full(c, "sessions", st->sessions, st->max_sessions);
    warn_full(c, "heap", st->heap_used_bytes, st->heap_bytes);
    warn_full(c, "handles", st->handles, st->max_handles);
    warn_full(c, "rooms", st->rooms, st->max_rooms);
    if (cfg_rc)
        return ctl_fail(c, cfg_rc, "cannot list configs");
    return CTL_OK;
}

int cmd_stat(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 0, 0)))
        return rc;
    return stat_report(c);
}

/* The HELP and TYPE lines of a family whose samples follow. */
static void family(out *o, const char *name, const char *type, const char *help)
{
    char line[512];
    int n = snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    out_raw(o, line, (size_t)n);
}

/* A sample labelled by a profile (and a value): label values are the
 * application's bytes, escaped as the text format wants. */
static void profile_sample(out *o, const char *name, const ctl_profile *p, const ctl_pvalue *v,
                           uint64_t n)
{
    char num[32];
    out_raw(o, name, strlen(name));
    out_raw(o, "{profile=\"", 10);
    out_prom_label(o, p->name, p->len);
    if (v) {
        out_raw(o, "\",value=\"", 9);
        out_prom_label(o, v->value, v->len);
    }
    out_raw(o, num, (size_t)snprintf(num, sizeof num, "\"} %" PRIu64 "\n", n));
}

/* The call-control families. */
static void control_metrics(out *o, const ctl_control *cc)
{
    family(o, "shmreg_profile_members", "gauge",
           "Members of a profile value (per profile, only its largest values: --profile-top).");
    for (size_t i = 0; i < cc->n; i++)
        for (unsigned k = 0; k < cc->p[i].ntop; k++)
            profile_sample(o, "shmreg_profile_members", &cc->p[i], &cc->p[i].top[k], cc->p[i].top[k].count);
    family(o, "shmreg_profile_members_sum", "gauge", "Members of a profile, all its values.");
    for (size_t i = 0; i < cc->n; i++)
        profile_sample(o, "shmreg_profile_members_sum", &cc->p[i], NULL, cc->p[i].members);
    family(o, "shmreg_profile_values", "gauge", "Values of a profile that have members.");
    for (size_t i = 0; i < cc->n; i++)
        profile_sample(o, "shmreg_profile_values", &cc->p[i], NULL, cc->p[i].values);
}

/* One Prometheus metric: HELP, TYPE, sample. */
static void metric(out *o, const char *name, const char *type, const char *help, double v,
                   int integral)
{
    char line[512];
    family(o, name, type, help);
    int n = snprintf(line, sizeof line, integral ? "%s %.0f\n" : "%s %.9g\n", name, v);
    out_raw(o, line, (size_t)n);
}

/* Many hosts: only for a registry with a node ID (shmregctl_node.c). */
static void node_metrics(ctl *c, const shmreg_stats *st)
{
    if (st->node_id == 0)
        return;
    out *o = &c->o;
    shmreg_mirror_status m;
    ctl_mirror_get(c, &m);
    metric(o, "shmreg_node_id", "gauge", "This registry's node ID.", st->node_id, 1);
    metric(o, "shmreg_foreign_sessions", "gauge", "Copies of sessions other nodes own.",
           st->foreign_sessions, 1);
    metric(o, "shmreg_mirror_up", "gauge", "1 when the mirror daemon reaches Redis.",
           m.state == SHMREG_MIRROR_UP, 1);
    metric(o, "shmreg_mirror_behind_events", "gauge", "Events published and not yet in Redis.",
           (double)(m.state ? ctl_mirror_behind(st, &m) : st->events_published), 1);
    metric(o, "shmreg_mirror_backlog", "gauge", "Sessions waiting to be pushed to Redis.",
           (double)m.backlog, 1);
    metric(o, "shmreg_mirror_errors_total", "counter", "Mirror failures since its daemon started.",
           (double)m.errors, 1);
    family(o, "shmreg_mirror_peer_lag_seconds", "gauge",
           "Per other node: its last change, from the owner's change to the import here.");
    for (uint32_t i = 0; i < m.npeers; i++) {
        char line[160];
        int n = snprintf(line, sizeof line,
                         "shmreg_mirror_peer_lag_seconds{node=\"%" PRIu32 "\",state=\"%s\"} %.9g\n",
                         m.peer[i].node, ctl_peer_state(m.peer[i].state), (double)m.peer[i].lag_ns / 1e9);
        out_raw(o, line, (size_t)n);
    }
}

#define PROFILE_TOP 10u      /* values per profile with a series of their own */
#define PROFILE_TOP_MAX 1000u

int cmd_metrics(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"profile-top", required_argument, NULL, 't'}, {0}};
    uint64_t top = PROFILE_TOP;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1)
        if (ctl_parse_u64(optarg, PROFILE_TOP_MAX, &top))
            return ctl_usage(c, "--profile-top wants a number 0..%u, not '%s'", PROFILE_TOP_MAX, optarg);
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    if (c->json) /* the same figures, for machines that prefer JSON */
        return stat_report(c);
    figures f;
    if ((rc = collect(c, &f, (unsigned)top)))
        return rc;
    const shmreg_stats *st = &f.st;
    out *o = &c->o;
    metric(o, "shmreg_sessions", "gauge", "Live sessions.", st->sessions, 1);
    metric(o, "shmreg_sessions_max", "gauge", "Session table capacity.", st->max_sessions, 1);
    family(o, "shmreg_sessions_by_state", "gauge", "Live sessions by call state.");
    for (int s = 1; s < SHMREG_STATE_COUNT; s++) {
        char line[128];
        int n = snprintf(line, sizeof line, "shmreg_sessions_by_state{state=\"%s\"} %" PRIu64 "\n",
                         shmreg_state_name(s), f.by_state[s]);
        out_raw(o, line, (size_t)n);
    }
    metric(o, "shmreg_dialogs", "gauge", "Bound dialogs.", st->dialogs, 1);
    metric(o, "shmreg_rooms", "gauge", "Conference rooms.", st->rooms, 1);
    metric(o, "shmreg_rooms_max", "gauge", "Room table capacity.", st->max_rooms, 1);
    metric(o, "shmreg_segment_bytes", "gauge", "Size of the segment file.", (double)st->segment_bytes, 1);
    metric(o, "shmreg_heap_bytes", "gauge", "Heap capacity for strings, SDPs and dialogs.",
           (double)st->heap_bytes, 1);
    metric(o, "shmreg_heap_used_bytes", "gauge", "Heap bytes in use or awaiting reuse.",
           (double)st->heap_used_bytes, 1);
    metric(o, "shmreg_heap_retired_bytes", "gauge", "Heap bytes retired, waiting for readers to leave.",
           (double)st->heap_retired_bytes, 1);
    metric(o, "shmreg_index_buckets", "gauge", "Buckets of the session index.", st->index_buckets, 1);
    metric(o, "shmreg_index_load", "gauge", "Sessions per index bucket.",
           st->index_buckets ? (double)st->sessions / st->index_buckets : 0, 0);
    metric(o, "shmreg_handles", "gauge", "Attached live processes (not counting shmregctl).",
           f.handles, 1);
    metric(o, "shmreg_handles_max", "gauge", "Handle capacity.", st->max_handles, 1);
    metric(o, "shmreg_oldest_read_section_seconds", "gauge",
           "Age of the oldest open read section (0: none).", (double)st->oldest_read_ns / 1e9, 0);
    metric(o, "shmreg_events_published_total", "counter", "Events published (ring position).",
           (double)st->events_published, 1);
    metric(o, "shmreg_event_ring_records", "gauge", "Event ring capacity.", st->event_ring_records, 1);
    metric(o, "shmreg_events_dropped_total", "counter",
           "Publishes abandoned: slot held by a stalled producer.", (double)st->events_dropped, 1);
    metric(o, "shmreg_events_stolen_total", "counter",
           "Ring slots taken back from dead producers (skipped by subscribers).",
           (double)st->events_stolen, 1);
    metric(o, "shmreg_sync_daemon_up", "gauge", "1 when a live shmreg-sync follows the registry.",
           st->sync_alive, 1);
    metric(o, "shmreg_sync_durable_seq", "gauge", "Ring position shmreg-sync has made durable.",
           (double)st->sync_durable_seq, 1);
    metric(o, "shmreg_sync_behind_events", "gauge", "Events published and not yet durable.",
           (double)(st->sync_commit_ns ? st->sync_behind : st->events_published), 1);
    metric(o, "shmreg_sync_last_commit_timestamp_seconds", "gauge",
           "When shmreg-sync last made changes durable (0: never).",
           (double)(st->sync_commit_ns / 1000000000u), 1);
    node_metrics(c, st);
    metric(o, "shmreg_config_generation", "gauge", "Registry config generation.",
           (double)st->config_gen, 1);
    metric(o, "shmreg_created_timestamp_seconds", "gauge", "When the registry was created.",
           (double)(st->created_ns / 1000000000u), 1);
    metric(o, "shmreg_timeouts_armed", "gauge", "Sessions with a timeout armed.",
           (double)f.cc.timeouts_armed, 1);
    control_metrics(o, &f.cc);
    ctl_control_free(&f.cc);
    return CTL_OK;
}

/* ------------------------------------------------------------ check */

#define MAX_PROBLEMS_SHOWN 1000

typedef struct checker {
    ctl *c;
    uint64_t problems;     /* all found, segment and configs */
    uint64_t shown;
    uint64_t configs;      /* configs checked */
    int tty;
    int last_pct;
} checker;

static void problem(void *arg, const char *what)
{
    checker *k = arg;
    k->problems++;
    /* Bounded: a wrecked segment may name a problem per slot. */
    if (k->shown < MAX_PROBLEMS_SHOWN) {
        k->shown++;
        out_cstr(&k->c->o, NULL, what);
    }
}

static void progress(void *arg, uint64_t done, uint64_t total)
{
    checker *k = arg;
    if (!k->tty || total == 0)
        return;
    int p = (int)(done * 100 / total);
    if (p == k->last_pct)
        return;
    k->last_pct = p;
    char bar[41];
    memset(bar, '#', (size_t)(p * 40 / 100));
    memset(bar + p * 40 / 100, '.', (size_t)(40 - p * 40 / 100));
    bar[40] = 0;
    fprintf(stderr, "\rchecking [%s] %3d%% %" PRIu64 "/%" PRIu64 " slots", bar, p, done, total);
    fflush(stderr);
}

static void problemf(checker *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problemf(checker *k, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    problem(k, buf);
}

/* Read every entry of a config (and every item of its lists): the library
 * bounds-checks each, so a damaged record shows as an error here. */
static int check_one_config(checker *k, const char *name)
{
    shmreg_config_view *v;
    int rc = shmreg_config_open_view(k->c->h, name, &v);
    if (rc) {
        problemf(k, "config %s: cannot open: %s (%s)", name, shmreg_strerror(rc), shmreg_errmsg());
        return 0;
    }
    uint32_t cur = 0;
    shmreg_str key, a, b;
    shmreg_config_value val;
    while ((rc = shmreg_config_next(v, &cur, &key, &val)) == 0) {
        for (uint32_t i = 0; rc == 0 && val.type == SHMREG_CONFIG_LIST && i < val.count; i++)
            rc = shmreg_config_item(&val, i, &a);
        for (uint32_t i = 0; rc == 0 && val.type == SHMREG_CONFIG_PAIRS && i < val.count; i++)
            rc = shmreg_config_pair(&val, i, &a, &b);
        if (rc)
            break;
    }
    if (rc != SHMREG_ENOENT)
        problemf(k, "config %s: bad entry: %s (%s)", name, shmreg_strerror(rc), shmreg_errmsg());
    shmreg_config_media m;
    if ((rc = shmreg_config_media_get(v, &m)))
        problemf(k, "config %s: media fields: %s (%s)", name, shmreg_strerror(rc), shmreg_errmsg());
    shmreg_config_release(v);
    k->configs++;
    return 0;
}

static int check_config_cb(void *arg, shmreg_str name, uint64_t gen)
{
    (void)gen;
    char buf[SHMREG_CONFIG_MAX_NAME + 1];
    if (name.len > SHMREG_CONFIG_MAX_NAME) {
        problemf(arg, "config name of %zu bytes in the environment", name.len);
        return 0;
    }
    memcpy(buf, name.ptr, name.len);
    buf[name.len] = 0;
    return check_one_config(arg, buf);
}

int cmd_check(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"repair", no_argument, NULL, 'R'}, {0}};
    unsigned flags = 0;
    int rc;
    while (ctl_getopt(c, argc, argv, "", lo) != -1)
        flags = SHMREG_CHECK_REPAIR;
    if ((rc = ctl_operands(c, argc, argv, 0, 0)))
        return rc;
    if (!c->path || !*c->path)
        return ctl_usage(c, "no registry given: use -r PATH or set SHMREG_PATH");

    checker k = {.c = c, .tty = isatty(2), .last_pct = -1};
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_cstr(o, "path", c->path);
    out_arr_begin(o, "problems");
    rc = shmreg_open(c->path, NULL, &c->h);
    if (rc == SHMREG_ECORRUPT || rc == SHMREG_EVERSION) {
        c->h = NULL;
        problemf(&k, "segment cannot be attached: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
        out_arr_end(o);
        out_u64(o, "problem_count", k.problems);
        out_obj_end(o);
        out_doc_end(o);
        return CTL_PROBLEM;
    }
    if (rc) {
        c->h = NULL;
        out_free(o); /* nothing of the report is printed */
        out_init(o, c->json);
        ctl_fail(c, rc, "cannot open registry");
        return CTL_NOOPEN;
    }

    shmreg_check_report r;
    ctl_exit_on_signal = 1;
    if (ctl_stop)
        _exit(CTL_INTR); /* a signal that came before the flag was set */
    rc = shmreg_check(c->h, flags, &r, problem, &k, progress);
    ctl_exit_on_signal = 0;
    if (k.tty && k.last_pct >= 0)
        fprintf(stderr, "\r%70s\r", "");
    if (rc && rc != SHMREG_ECORRUPT)
        problemf(&k, "check failed: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    if (rc == SHMREG_ECORRUPT && k.problems == 0) /* never say "corrupt" with no name */
        problemf(&k, "segment: %s", shmreg_errmsg());
    if (ctl_configs_exist(c) && (rc = shmreg_config_list(c->h, check_config_cb, &k)))
        problemf(&k, "configs: cannot list: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    out_arr_end(o);
    out_u64(o, "problem_count", k.problems);
    if (k.problems > k.shown)
        out_u64(o, "problems_not_shown", k.problems - k.shown);
    out_u64(o, "sessions", r.sessions);
    out_u64(o, "dialogs", r.dialogs);
    out_u64(o, "heap_blocks_used", r.heap_blocks_used);
    out_u64(o, "heap_blocks_free", r.heap_blocks_free);
    out_u64(o, "leaked_blocks", r.leaked_blocks);
    out_bytes(o, "leaked_bytes", r.leaked_bytes);
    out_u64(o, "stale_handles", r.stale_handles);
    out_bool(o, "repair", flags != 0);
    out_u64(o, "reclaimed_blocks", r.reclaimed_blocks);
    out_u64(o, "reaped_handles", r.reaped_handles);
    out_u64(o, "configs_checked", k.configs);
    out_obj_end(o);
    out_doc_end(o);
    return k.problems ? CTL_PROBLEM : CTL_OK;
}

/* ------------------------------------------------------------ handles */

static const out_col handle_cols[] = {
    {"slot", "SLOT", 5, 0, 1},
    {"pid", "PID", 8, 0, 1},
    {"alive", "ALIVE", 5, 0, 0},
    {"read_age_ns", "READ-OPEN", 9, 0, 0},
    {"attached_ns", "ATTACHED", 24, 0, 0},
    {"self", "SELF", 0, 0, 0},
};

int cmd_handles(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"reap", no_argument, NULL, 'R'}, {0}};
    int reap = 0, rc;
    while (ctl_getopt(c, argc, argv, "", lo) != -1)
        reap = 1;
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    if (reap) {
        int n = shmreg_reap(c->h);
        if (n < 0)
            return ctl_fail(c, n, "cannot reap");
        out_u64(o, "reaped", (uint64_t)n);
    }
    out_table(o, "handles", handle_cols, 6, 0);
    uint64_t cur = 0;
    shmreg_handle_info hi;
    while ((rc = shmreg_handle_next(c->h, &cur, &hi)) == 0) {
        out_row_begin(o);
        out_u64(o, "slot", hi.slot);
        out_i64(o, "pid", hi.pid);
        out_bool(o, "alive", hi.alive);
        out_bool(o, "in_read", hi.in_read);
        if (hi.in_read)
            out_dur(o, "read_age_ns", hi.read_age_ns);
        else
            out_null(o, "read_age_ns");
        out_time(o, "attached_ns", hi.attached_ns);
        out_bool(o, "self", hi.self);
        out_row_end(o);
    }
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    if (rc != SHMREG_ENOENT)
        return ctl_fail(c, rc, "cannot list handles");
    return CTL_OK;
}
