/*
 * shmreg-sync — writes a registry behind into a sync directory (LMDB on
 * disk) so a new registry can be restored from it after a reboot.
 *
 *   shmreg-sync -r REGISTRY --lmdb DIR [--interval MS] [--fsync none|interval|each]
 *               [--map-size SIZE] [--counters S] [--rescan S] [--nice N] [--once]
 *
 * How it works, and why. The daemon is a guest of the workers: it reads
 * what they wrote, in place and in short read sections, and never makes
 * them wait. It follows the event ring; an event only marks its session
 * or room dirty. Once per interval every dirty one is read as it is now
 * and written (or deleted, if it is gone) in one sink transaction that
 * also stores the ring position it covers: many changes to one session
 * cost one write, so the cost follows the number of sessions changed,
 * not the number of changes. At start (after a crash too) and whenever
 * the ring says events were missed (a lap), it subscribes anew and scans
 * the whole registry through cursors (a full resync, in one transaction
 * that also drops records of sessions that are gone); events from the
 * subscription point on are then applied on top, so nothing can be lost
 * between the scan and the ring. RTP counters move without events; a
 * sweep every --counters seconds finds the sessions whose counters moved
 * (see "counter memo").
 *
 * Two threads, two handles: the poller drains the ring into a set of
 * dirty IDs (so the ring is read even while a big batch is written), the
 * main thread swaps that set out once per interval and writes it.
 *
 * The source (ring + registry) and the sink (tools/shmreg-sync-lmdb.c,
 * behind tools/shmreg-sync.h) meet only through IDs, encoded records and
 * ring positions, so another sink can be put behind the same source.
 *
 * Exit status: 0 stopped by SIGTERM/SIGINT (after a last commit), 1 a
 * failure after start (sync directory full, I/O error), 2 usage, 3 the
 * registry or the sync directory could not be opened or is taken.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-sync.h"

static _Atomic int stop, rescan_now; /* lock-free: safe in a handler, seen by both threads */
static void on_signal(int sig)
{
    if (sig == SIGHUP)
        rescan_now = 1;
    else
        stop = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logmsg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "shmreg-sync[%d]: ", (int)getpid());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------ ID sets */

/* Open-addressed set of (kind, ID), insertion-ordered for iteration:
 * the dirty set between commits, and the "seen" set of a scan. */
typedef struct idset {
    shmreg_id *id;
    unsigned char *kind;
    uint32_t *tab;       /* index + 1 into id[]; 0 empty */
    size_t n, cap, tabcap;
} idset;

/* IDs are opaque here: a session ID's first bytes name its slot (few
 * distinct values), so all 16 bytes are mixed, the high half of the
 * product taken. */
static uint64_t idhash(const shmreg_id *id, int kind)
{
    uint64_t a, b;
    memcpy(&a, id->bytes, 8);
    memcpy(&b, id->bytes + 8, 8);
    uint64_t x = (a ^ b * 0xbf58476d1ce4e5b9ull ^ (uint64_t)kind) * 0x9e3779b97f4a7c15ull;
    return x ^ x >> 32;
}

static int idset_grow(idset *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 1024, ntab = ncap * 2;
    shmreg_id *id = realloc(s->id, ncap * sizeof *id);
    if (id == NULL)
        return -1;
    s->id = id;
    unsigned char *k = realloc(s->kind, ncap);
    if (k == NULL)
        return -1;
    s->kind = k;
    uint32_t *tab = calloc(ntab, sizeof *tab);
    if (tab == NULL)
        return -1;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = idhash(&s->id[i], s->kind[i]) & (ntab - 1);
        while (tab[j])
            j = (j + 1) & (ntab - 1);
        tab[j] = (uint32_t)i + 1;
    }
    free(s->tab);
    s->tab = tab;
    s->cap = ncap;
    s->tabcap = ntab;
    return 0;
}

/* Index + 1 of (kind, id) in s->id[], or 0 when absent. */
static size_t idset_find(const idset *s, const shmreg_id *id, int kind)
{
    if (s->tabcap == 0)
        return 0;
    for (size_t j = idhash(id, kind) & (s->tabcap - 1);; j = (j + 1) & (s->tabcap - 1)) {
        uint32_t e = s->tab[j];
        if (e == 0)
            return 0;
        if (s->kind[e - 1] == kind && memcmp(s->id[e - 1].bytes, id->bytes, SHMREG_ID_BYTES) == 0)
            return e;
    }
}

static int idset_has(const idset *s, const shmreg_id *id, int kind)
{
    return idset_find(s, id, kind) != 0;
}

static int idset_add(idset *s, const shmreg_id *id, int kind)
{
    if (idset_has(s, id, kind))
        return 0;
    if (s->n == s->cap && idset_grow(s) != 0)
        return -1;
    size_t j = idhash(id, kind) & (s->tabcap - 1);
    while (s->tab[j])
        j = (j + 1) & (s->tabcap - 1);
    s->id[s->n] = *id;
    s->kind[s->n] = (unsigned char)kind;
    s->tab[j] = (uint32_t)++s->n;
    return 0;
}

static void idset_clear(idset *s)
{
    if (s->tab)
        memset(s->tab, 0, s->tabcap * sizeof *s->tab);
    s->n = 0;
}

static void idset_free(idset *s)
{
    free(s->id);
    free(s->kind);
    free(s->tab);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ counter memo */

/* RTP counters change in place, without events (an event per packet
 * would flood the ring), so no event tells the daemon a counter moved.
 * The memo keeps, per live session, a digest of the counters as the
 * daemon last saw them; a sweep every --counters seconds compares and
 * marks the sessions whose counters moved, so the copy's counters are
 * never older than that. Rebuilt whole by each sweep and each resync,
 * so it holds exactly the sessions that were live then. */
typedef struct memo {
    idset ids;
    uint64_t *sum;       /* parallel to ids.id[] */
    size_t sumcap;
} memo;

static uint64_t ctr_digest(const shmreg_session *v)
{
    uint64_t x = 1469598103934665603ull;
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        x = (x ^ v->counter[i]) * 0x100000001b3ull;
    return x;
}

/* Add a session not yet in `m` (each sweep sees a session once). */
static int memo_add(memo *m, const shmreg_session *v)
{
    if (idset_add(&m->ids, &v->id, SINK_SESSION) != 0)
        return -1;
    if (m->ids.cap > m->sumcap) {
        uint64_t *g = realloc(m->sum, m->ids.cap * sizeof *g);
        if (g == NULL)
            return -1;
        m->sum = g;
        m->sumcap = m->ids.cap;
    }
    m->sum[m->ids.n - 1] = ctr_digest(v);
    return 0;
}

/* 1 when `v`'s counters differ from what `m` remembers (or it is new). */
static int memo_moved(const memo *m, const shmreg_session *v)
{
    size_t e = idset_find(&m->ids, &v->id, SINK_SESSION);
    return e == 0 || m->sum[e - 1] != ctr_digest(v);
}

static void memo_free(memo *m)
{
    idset_free(&m->ids);
    free(m->sum);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ the daemon */

typedef struct syncd {
    shmreg *h;                    /* the flusher's handle: reads, status */
    shmreg *hp;                   /* the poller's handle: the subscription */
    shmreg_sub *sub;              /* the poller's */
    sync_sink *sink;
    int fsync_mode;
    /* Shared by the two threads under `mu`: the poller marks into
     * `marking` and publishes how far it has read; the flusher swaps
     * `marking` with `dirty` and writes `dirty`. */
    pthread_mutex_t mu;
    idset marking;
    uint64_t polled_pos;          /* every event < this is in marking, dirty or written */
    int scan_needed;              /* the poller was lapped: resync at scan_pos */
    uint64_t scan_pos;
    int poll_failed;
    char poll_err[256];
    idset dirty, seen;
    memo counters;                /* counter digests as last seen (sweep, resync) */
    unsigned char *buf;           /* one encoded record */
    size_t bufcap;
    shmreg_participant *parts;    /* one room's roster */
    uint64_t committed_pos;       /* last position committed */
    uint64_t durable_pos;         /* last position made durable (fsync) */
    int unsynced;                 /* a commit not yet durable and reported */
    uint64_t last_commit_ns, last_sync_mono;
    uint64_t resyncs, writes, deletes, commits;
} syncd;

static int fatal_sink(syncd *d, int rc)
{
    logmsg("%s", d->sink->err);
    return rc;
}

/* Encode what `id` is now into d->buf: 1 found (*len set), 0 gone, < 0
 * a registry error. In a read section. */
static int encode_now(syncd *d, int kind, const shmreg_id *id, size_t *len)
{
    int rc;
    if (kind == SINK_SESSION) {
        shmreg_session s;
        shmreg_dialog dl[SHMREG_MAX_DIALOGS_PER_SESSION];
        if ((rc = shmreg_session_get(d->h, id, &s)) != 0)
            return rc == SHMREG_ENOENT ? 0 : rc;
        unsigned nd = 0;
        for (unsigned i = 0; i < s.ndialogs && i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
            if (shmreg_session_dialog(d->h, id, i, &dl[nd]) == 0)
                nd++;
        shmreg_session_control c;
        if ((rc = shmreg_session_control_get(d->h, id, &c)) != 0)
            return rc == SHMREG_ENOENT ? 0 : rc;
        rc = shmreg_session_encode_control(&s, &c, dl, nd, d->buf, d->bufcap, len);
        return rc ? rc : 1;
    }
    shmreg_room r;
    if ((rc = shmreg_room_get(d->h, id, &r)) != 0)
        return rc == SHMREG_ENOENT ? 0 : rc;
    uint32_t n = 0;
    uint64_t cur = 0;
    while (n < r.max_participants && shmreg_participant_next(d->h, id, &cur, &d->parts[n]) == 0)
        n++;
    rc = shmreg_room_encode(&r, d->parts, n, d->buf, d->bufcap, len);
    if (rc == SHMREG_EFULL) { /* a big roster: grow and encode again */
        unsigned char *nb = realloc(d->buf, *len);
        if (nb == NULL)
            return SHMREG_ENOMEM;
        d->buf = nb;
        d->bufcap = *len;
        rc = shmreg_room_encode(&r, d->parts, n, d->buf, d->bufcap, len);
    }
    return rc ? rc : 1;
}

/* Write `id` as it is now into the open batch. 0, or a sink/registry error. */
static int write_one(syncd *d, int kind, const shmreg_id *id)
{
    size_t len;
    int rc = encode_now(d, kind, id, &len);
    if (rc < 0) {
        snprintf(d->sink->err, sizeof d->sink->err, "reading the registry: %s", shmreg_errmsg());
        return SINK_ERR;
    }
    if (rc == 0) {
        d->deletes++;
        return d->sink->del(d->sink, kind, id);
    }
    d->writes++;
    return d->sink->put(d->sink, kind, id, d->buf, len);
}

static uint64_t sub_pos(shmreg_sub *sub)
{
    shmreg_sub_stats st;
    shmreg_sub_stats_get(sub, &st);
    return st.next_seq;
}

/* Make commits durable as the fsync mode says, and report the durable
 * position to the registry. Called after each commit and each interval. */
static int maybe_sync(syncd *d)
{
    if (!d->unsynced)
        return 0;
    uint64_t pos = d->committed_pos, m = mono_ns();
    if (d->fsync_mode == SINK_SYNC_INTERVAL && m - d->last_sync_mono < 1000000000ull)
        return 0; /* made durable by a later sync */
    if (d->fsync_mode == SINK_SYNC_INTERVAL) {
        int rc = d->sink->sync(d->sink);
        if (rc)
            return rc;
        d->last_sync_mono = m;
    }
    d->durable_pos = pos;
    d->unsynced = 0;
    shmreg_sync_report(d->h, d->durable_pos, d->last_commit_ns);
    return 0;
}

static int committed(syncd *d, uint64_t pos)
{
    d->committed_pos = pos;
    d->commits++;
    d->unsynced = 1;
    return maybe_sync(d);
}

/* End a transaction begun on the sink: abandon it if `rc` says the batch
 * failed, else commit it with ring position `pos`, made durable in the
 * same transaction as the data. */
static int finish(syncd *d, int rc, uint64_t pos)
{
    if (rc) {
        d->sink->abort(d->sink);
        return rc;
    }
    d->last_commit_ns = now_ns();
    return d->sink->commit(d->sink, pos, d->last_commit_ns);
}

static int seen_keep_session(void *arg, const shmreg_id *id)
{
    return idset_has(arg, id, SINK_SESSION);
}
static int seen_keep_room(void *arg, const shmreg_id *id)
{
    return idset_has(arg, id, SINK_ROOM);
}

#define SCAN_CHUNK 64u /* records per read section: short sections pin little retired memory */
#define POLL_NAP_NS 5000000L /* the poller's nap when the ring is drained */

/* Call fn for every live session, reading in short sections of
 * SCAN_CHUNK sessions (a long section would pin retired memory). Stops
 * at fn's first non-zero return and returns it; a registry error is
 * SINK_ERR with the sink's message saying what `what` was doing. */
static int each_session(syncd *d, const char *what,
                        int (*fn)(syncd *d, const shmreg_session *s, void *arg), void *arg)
{
    uint64_t cur = 0;
    int rc = 0;
    for (int done = 0; !done && rc == 0;) {
        shmreg_read_begin(d->h);
        for (unsigned k = 0; k < SCAN_CHUNK && rc == 0; k++) {
            shmreg_session s;
            int r = shmreg_session_next(d->h, &cur, SHMREG_STATE_ANY, &s);
            if (r == SHMREG_ENOENT) {
                done = 1;
                break;
            }
            if (r) {
                snprintf(d->sink->err, sizeof d->sink->err, "%s: %s", what, shmreg_errmsg());
                rc = SINK_ERR;
            } else {
                rc = fn(d, &s, arg);
            }
        }
        shmreg_read_end(d->h);
    }
    return rc;
}

static int oom(syncd *d)
{
    snprintf(d->sink->err, sizeof d->sink->err, "out of memory");
    return SINK_ERR;
}

/* resync's step for one session: seen, remembered, written. */
struct resync_arg {
    memo *fresh;
    uint64_t n;
};

static int resync_one(syncd *d, const shmreg_session *s, void *arg)
{
    struct resync_arg *a = arg;
    if (idset_add(&d->seen, &s->id, SINK_SESSION) != 0 || memo_add(a->fresh, s) != 0)
        return oom(d);
    int rc = write_one(d, SINK_SESSION, &s->id);
    a->n += rc == 0;
    return rc;
}

/* Full resync: scan everything into one batch committed with `pos`,
 * a ring position taken before the scan began (so every event before it
 * is reflected in what the scan reads, or re-marks what it changes). */
static int resync(syncd *d, uint64_t pos, const char *why)
{
    int rc;
    uint64_t t0 = mono_ns();
    idset_clear(&d->dirty);
    idset_clear(&d->seen);
    memo fresh = {0};
    if ((rc = d->sink->begin(d->sink)) != 0)
        return rc;
    struct resync_arg ra = {&fresh, 0};
    rc = each_session(d, "scanning sessions", resync_one, &ra);
    uint64_t n = ra.n;
    uint64_t cur = 0;
    for (int done = 0; !done && rc == 0;) {
        shmreg_read_begin(d->h);
        for (unsigned k = 0; k < SCAN_CHUNK; k++) {
            shmreg_room r;
            if (shmreg_room_next(d->h, &cur, &r) != 0) {
                done = 1;
                break;
            }
            if (idset_add(&d->seen, &r.id, SINK_ROOM) != 0 || (rc = write_one(d, SINK_ROOM, &r.id)) != 0) {
                rc = rc ? rc : SINK_ERR;
                break;
            }
        }
        shmreg_read_end(d->h);
    }
    uint64_t gone_s = 0, gone_r = 0;
    if (rc == 0)
        rc = d->sink->prune(d->sink, SINK_SESSION, seen_keep_session, &d->seen, &gone_s);
    if (rc == 0)
        rc = d->sink->prune(d->sink, SINK_ROOM, seen_keep_room, &d->seen, &gone_r);
    if ((rc = finish(d, rc, pos)) != 0) {
        memo_free(&fresh);
        return rc;
    }
    memo_free(&d->counters);
    d->counters = fresh;
    d->resyncs++;
    d->last_sync_mono = 0; /* a resync is made durable at once */
    logmsg("resync (%s): %llu sessions written, %llu stale records removed, ring position %llu, %.1f ms",
           why, (unsigned long long)n, (unsigned long long)(gone_s + gone_r), (unsigned long long)pos,
           (double)(mono_ns() - t0) / 1e6);
    return committed(d, pos);
}

/* The counter sweep (see "counter memo"): every live session whose
 * counters moved since the last sweep or resync joins the dirty set, for
 * the flush that follows. Reads in short sections, like a resync; writes
 * nothing itself. */
static int sweep_one(syncd *d, const shmreg_session *s, void *arg)
{
    if (memo_moved(&d->counters, s) && idset_add(&d->dirty, &s->id, SINK_SESSION) != 0)
        return oom(d);
    return memo_add(arg, s) != 0 ? oom(d) : 0;
}

static int sweep_counters(syncd *d)
{
    memo fresh = {0};
    int rc = each_session(d, "sweeping counters", sweep_one, &fresh);
    if (rc) {
        memo_free(&fresh);
        return rc;
    }
    memo_free(&d->counters);
    d->counters = fresh;
    return 0;
}

/* Write every dirty session and room as it is now, with position `pos`. */
static int flush(syncd *d, uint64_t pos)
{
    if (d->dirty.n == 0 && pos == d->committed_pos)
        return 0;
    int rc = d->sink->begin(d->sink);
    if (rc)
        return rc;
    for (size_t i = 0; i < d->dirty.n && rc == 0;) {
        shmreg_read_begin(d->h);
        for (unsigned k = 0; k < SCAN_CHUNK && i < d->dirty.n && rc == 0; k++, i++)
            rc = write_one(d, d->dirty.kind[i], &d->dirty.id[i]);
        shmreg_read_end(d->h);
    }
    if ((rc = finish(d, rc, pos)) != 0)
        return rc;
    idset_clear(&d->dirty);
    return committed(d, pos);
}

static int mark(idset *set, const shmreg_event *e)
{
    switch (e->type) {
    case SHMREG_EV_SESSION_CREATED: case SHMREG_EV_STATE_CHANGED: case SHMREG_EV_SDP_UPDATED:
    case SHMREG_EV_SESSION_UPDATED: case SHMREG_EV_SESSION_DELETED: case SHMREG_EV_DIALOG_BOUND:
    case SHMREG_EV_DIALOG_UNBOUND: case SHMREG_EV_SESSION_RESTORED: case SHMREG_EV_TIMEOUT:
    case SHMREG_EV_PROFILE_JOINED: case SHMREG_EV_PROFILE_LEFT: case SHMREG_EV_VAR_CHANGED:
        return idset_add(set, &e->session, SINK_SESSION);
    case SHMREG_EV_ROOM_CREATED: case SHMREG_EV_ROOM_STATE: case SHMREG_EV_PARTICIPANT_JOINED:
    case SHMREG_EV_PARTICIPANT_STATUS: case SHMREG_EV_PARTICIPANT_LEFT: case SHMREG_EV_ROOM_RESTORED:
        return idset_add(set, &e->room, SINK_ROOM);
    default:
        return 0; /* configs live in LMDB already; custom events carry no state */
    }
}

/* The poller thread: drains the ring into the marking set, so that the
 * ring is read while the flusher writes (a flush that took longer than a
 * ring's worth of events would otherwise lap the daemon). On a lap it
 * subscribes anew at once and asks the flusher for a resync from there. */
static void *poller(void *arg)
{
    syncd *d = arg;
    shmreg_event ev[256];
    while (!stop) {
        uint64_t missed = 0;
        /* Never block in the ring's futex: a sleeping subscriber makes
         * producers pay a wake-up system call. Poll, and nap when the ring
         * is drained: at a million events a second a 5 ms nap leaves
         * 5,000 waiting, far from a 65,536-record ring's lap. */
        int n = shmreg_poll(d->sub, ev, 256, 0, &missed);
        pthread_mutex_lock(&d->mu);
        if (n < 0) {
            snprintf(d->poll_err, sizeof d->poll_err, "polling events: %s", shmreg_errmsg());
            d->poll_failed = 1;
        } else if (missed) {
            shmreg_unsubscribe(d->sub);
            d->sub = NULL;
            if (shmreg_subscribe(d->hp, SHMREG_EV_ALL, NULL, &d->sub) != 0) {
                snprintf(d->poll_err, sizeof d->poll_err, "subscribing: %s", shmreg_errmsg());
                d->poll_failed = 1;
            } else {
                idset_clear(&d->marking);
                d->scan_needed = 1;
                d->scan_pos = d->polled_pos = sub_pos(d->sub);
            }
        } else {
            for (int i = 0; i < n && !d->poll_failed; i++)
                if (mark(&d->marking, &ev[i]) != 0) {
                    snprintf(d->poll_err, sizeof d->poll_err, "out of memory");
                    d->poll_failed = 1;
                }
            d->polled_pos = sub_pos(d->sub);
        }
        int failed = d->poll_failed;
        pthread_mutex_unlock(&d->mu);
        if (failed)
            break;
        if (n < 256 && !missed) {
            struct timespec ts = {0, POLL_NAP_NS};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

/* Take what the poller has marked: swaps it into d->dirty. Returns the
 * position it covers; *scan says a resync is due (from that position). */
static uint64_t take(syncd *d, int *scan, int *failed)
{
    pthread_mutex_lock(&d->mu);
    idset t = d->dirty;
    d->dirty = d->marking;
    d->marking = t;
    idset_clear(&d->marking);
    uint64_t pos = d->polled_pos;
    *scan = d->scan_needed;
    if (*scan)
        pos = d->scan_pos;
    d->scan_needed = 0;
    *failed = d->poll_failed;
    if (*failed)
        snprintf(d->sink->err, sizeof d->sink->err, "%s", d->poll_err);
    pthread_mutex_unlock(&d->mu);
    return pos;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shmreg-sync -r REGISTRY --lmdb DIR [--interval MS] [--fsync none|interval|each]\n"
            "                   [--map-size SIZE] [--counters SECONDS] [--rescan SECONDS]\n"
            "                   [--nice N] [--once]\n"
            "\n"
            "Writes the registry behind into the LMDB sync directory DIR: every session (all\n"
            "fields, both SDPs, counters, state, times) with its dialogs, every room with its\n"
            "roster. Restore a new registry from DIR with `shmregctl restore --from DIR`.\n"
            "\n"
            "  -r, --registry PATH  the registry (or $SHMREG_PATH)\n"
            "  --lmdb DIR           the sync directory (created if missing; one syncd each)\n"
            "  --interval MS        coalescing interval: changes are written once per MS\n"
            "                       milliseconds (default 100)\n"
            "  --fsync MODE         each: fsync every commit; interval: at most once a\n"
            "                       second (default); none: never (survives a crash of\n"
            "                       the syncd, not of the host)\n"
            "  --map-size SIZE      LMDB map size, e.g. 512M, 4G (default 4G)\n"
            "  --counters SECONDS   RTP counters change without events: every SECONDS\n"
            "                       (default 10; 0: never) compare every session's\n"
            "                       counters with what was last seen and write those\n"
            "                       that moved, so the copy's are never older than that\n"
            "  --rescan SECONDS     also resync every SECONDS (0, the default: never)\n"
            "  --nice N             scheduling niceness of the writing thread (default 10:\n"
            "                       workers first where CPUs are scarce)\n"
            "  --once               resync once, then exit\n"
            "\n"
            "SIGHUP: resync now. SIGTERM, SIGINT: write what is pending, then exit.\n"
            "\n"
            "Exit status: 0 stopped by SIGTERM/SIGINT, 1 failed while running (the sync\n"
            "directory full, the registry removed), 2 usage, 3 cannot open the registry or\n"
            "the sync directory.\n"
            "See shmreg-sync(1).\n");
}

static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -1;
    uint64_t m = 1;
    if (*end == 'K' || *end == 'k')
        m = 1024, end++;
    else if (*end == 'M' || *end == 'm')
        m = 1024 * 1024, end++;
    else if (*end == 'G' || *end == 'g')
        m = 1024ull * 1024 * 1024, end++;
    if (*end || v == 0 || v > UINT64_MAX / m)
        return -1;
    *out = v * m;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"registry", required_argument, NULL, 'r'}, {"lmdb", required_argument, NULL, 'l'},
        {"interval", required_argument, NULL, 'i'}, {"fsync", required_argument, NULL, 'f'},
        {"map-size", required_argument, NULL, 'm'}, {"once", no_argument, NULL, 'o'},
        {"rescan", required_argument, NULL, 'R'}, {"nice", required_argument, NULL, 'n'},
        {"counters", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},           {0},
    };
    const char *reg = getenv("SHMREG_PATH"), *dir = NULL;
    uint64_t interval_ms = 100, map = 4ull << 30, rescan_s = 0, counters_s = 10;
    long nice_v = 10;
    int fsync_mode = SINK_SYNC_INTERVAL, once = 0, ch;
    while ((ch = getopt_long(argc, argv, "r:h", lo, NULL)) != -1) {
        char *end;
        switch (ch) {
        case 'r': reg = optarg; break;
        case 'l': dir = optarg; break;
        case 'i':
            errno = 0;
            interval_ms = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || interval_ms == 0 || interval_ms > 3600000) {
                fprintf(stderr, "shmreg-sync: --interval wants 1..3600000 ms, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'f':
            if (strcmp(optarg, "none") == 0)
                fsync_mode = SINK_SYNC_NONE;
            else if (strcmp(optarg, "interval") == 0)
                fsync_mode = SINK_SYNC_INTERVAL;
            else if (strcmp(optarg, "each") == 0)
                fsync_mode = SINK_SYNC_EACH;
            else {
                fprintf(stderr, "shmreg-sync: --fsync wants none, interval or each, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'm':
            if (parse_size(optarg, &map) || map < 65536) {
                fprintf(stderr, "shmreg-sync: --map-size wants a size of at least 64K, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'o': once = 1; break;
        case 'n':
            errno = 0;
            nice_v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || nice_v < -20 || nice_v > 19) {
                fprintf(stderr, "shmreg-sync: --nice wants -20..19, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'c':
            errno = 0;
            counters_s = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || counters_s > 86400) {
                fprintf(stderr, "shmreg-sync: --counters wants seconds 0..86400 (0: never), not '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'R':
            errno = 0;
            rescan_s = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || rescan_s > 86400 * 365) {
                fprintf(stderr, "shmreg-sync: --rescan wants seconds (0: never), not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !reg || !*reg || !dir || !*dir) {
        fprintf(stderr, "shmreg-sync: %s\n", optind != argc ? "unexpected operand"
                                                           : "need -r REGISTRY and --lmdb DIR");
        usage(stderr);
        return 2;
    }
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: poll returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    syncd d = {.fsync_mode = fsync_mode};
    int rc = shmreg_open(reg, NULL, &d.h);
    if (rc) {
        fprintf(stderr, "shmreg-sync: cannot open registry %s: %s\n", reg, shmreg_errmsg());
        return 3;
    }
    char err[1024];
    d.sink = sync_lmdb_open(dir, map, fsync_mode, err, sizeof err);
    if (d.sink == NULL) {
        fprintf(stderr, "shmreg-sync: %s\n", err);
        shmreg_close(d.h);
        return 3;
    }
    if ((rc = shmreg_sync_claim(d.h)) != 0) {
        fprintf(stderr, "shmreg-sync: %s\n", shmreg_errmsg());
        d.sink->close(d.sink);
        shmreg_close(d.h);
        return 3;
    }
    d.bufcap = SHMREG_SESSION_RECORD_MAX;
    d.buf = malloc(d.bufcap);
    d.parts = malloc(SHMREG_MAX_ROOM_PARTICIPANTS * sizeof *d.parts);
    if (d.buf == NULL || d.parts == NULL) {
        fprintf(stderr, "shmreg-sync: out of memory\n");
        return 3;
    }
    uint64_t spos, sns;
    d.sink->stored(d.sink, &spos, &sns);
    logmsg("following %s into %s (stored ring position %llu; interval %llu ms, fsync %s)", reg, dir,
           (unsigned long long)spos, (unsigned long long)interval_ms,
           fsync_mode == SINK_SYNC_EACH ? "each" : fsync_mode == SINK_SYNC_NONE ? "none" : "interval");
    int status = 0;
    /* The poller's subscription starts before the first scan: every
     * event after its position is marked, everything before is scanned. */
    if (shmreg_open(reg, NULL, &d.hp) != 0 || shmreg_subscribe(d.hp, SHMREG_EV_ALL, NULL, &d.sub) != 0) {
        fprintf(stderr, "shmreg-sync: subscribing: %s\n", shmreg_errmsg());
        return 3;
    }
    pthread_mutex_init(&d.mu, NULL);
    d.polled_pos = sub_pos(d.sub);
    uint64_t start_pos = d.polled_pos;
    pthread_t pt;
    int have_poller = 0;
    rc = 0;
    if (!once) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old); /* signals go to this thread */
        have_poller = pthread_create(&pt, NULL, poller, &d) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!have_poller) {
            snprintf(d.sink->err, sizeof d.sink->err, "cannot start the poller thread");
            rc = SINK_ERR;
        }
    }
    /* Workers first: where CPUs are scarce the writing thread yields to
     * them and catches up later (coalescing absorbs the delay). Set after
     * the poller thread is made: on Linux niceness is per thread, and the
     * poller, which is cheap, keeps the default so it drains the ring
     * before a lap even on a busy machine. */
    if (setpriority(PRIO_PROCESS, 0, (int)nice_v) != 0 && nice_v >= 0)
        fprintf(stderr, "shmreg-sync: setpriority(%ld): %s (going on)\n", nice_v, strerror(errno));
    if (rc == 0)
        rc = resync(&d, start_pos, "start");
    uint64_t last_scan = mono_ns(), last_counters = last_scan;
    /* The registry's segment file, to notice it removed or replaced (a
     * new registry at the path): following a mapping nobody else sees
     * would keep the directory's lock from the daemon of the new one. */
    char segpath[4200];
    struct stat seg0;
    snprintf(segpath, sizeof segpath, "%s/segment", shmreg_path(d.h));
    int have_seg = stat(segpath, &seg0) == 0;
    while (rc == 0 && !stop && !once) {
        struct timespec ts = {(time_t)(interval_ms / 1000), (long)(interval_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL); /* a signal cuts it short */
        int scan, failed;
        uint64_t pos = take(&d, &scan, &failed);
        if (failed) {
            rc = SINK_ERR;
            break;
        }
        int periodic = rescan_s && mono_ns() - last_scan >= rescan_s * 1000000000ull;
        if (scan || rescan_now || periodic) {
            const char *why = scan ? "lapped: events were missed" : rescan_now ? "SIGHUP" : "--rescan";
            rescan_now = 0;
            rc = resync(&d, pos, why);
            last_scan = last_counters = mono_ns();
        } else {
            if (counters_s && mono_ns() - last_counters >= counters_s * 1000000000ull) {
                rc = sweep_counters(&d);
                last_counters = mono_ns();
            }
            if (rc == 0)
                rc = flush(&d, pos);
        }
        if (rc == 0)
            rc = maybe_sync(&d);
        struct stat seg1;
        if (rc == 0 && have_seg &&
            (stat(segpath, &seg1) != 0 || seg1.st_ino != seg0.st_ino || seg1.st_dev != seg0.st_dev)) {
            snprintf(d.sink->err, sizeof d.sink->err,
                     "registry %s was removed or replaced: stopping (the directory keeps its last state; "
                     "start shmreg-sync again for the new registry)", reg);
            rc = SINK_ERR;
        }
    }
    stop = 1;
    if (have_poller)
        pthread_join(pt, NULL);
    if (rc == 0 && !once) { /* stopped: write what is pending */
        int scan, failed;
        uint64_t pos = take(&d, &scan, &failed);
        rc = failed ? SINK_ERR : scan ? resync(&d, pos, "lapped: events were missed") : flush(&d, pos);
    }
    if (rc == 0 && d.unsynced && (rc = d.sink->sync(d.sink)) == 0) {
        d.durable_pos = d.committed_pos;
        shmreg_sync_report(d.h, d.durable_pos, d.last_commit_ns);
    }
    if (rc) {
        fatal_sink(&d, rc);
        status = 1;
    } else
        logmsg("stopped: %llu commits, %llu writes, %llu deletes, %llu resyncs, ring position %llu",
               (unsigned long long)d.commits, (unsigned long long)d.writes, (unsigned long long)d.deletes,
               (unsigned long long)d.resyncs, (unsigned long long)d.durable_pos);
    shmreg_sync_release(d.h);
    shmreg_unsubscribe(d.sub);
    d.sink->close(d.sink);
    shmreg_close(d.hp);
    shmreg_close(d.h);
    idset_free(&d.marking);
    idset_free(&d.dirty);
    idset_free(&d.seen);
    memo_free(&d.counters);
    free(d.buf);
    free(d.parts);
    return status;
}
