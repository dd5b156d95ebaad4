/*
 * shmreg-sync — writes a registry behind into a sync directory (LMDB on
 * disk) so a new registry can be restored from it after a reboot, and/or
 * mirrors registries of several hosts through Redis
 * (tools/shmreg-sync-redis.c says how).
 *
 *   shmreg-sync -r REGISTRY [--lmdb DIR] [--redis URL]... [--interval MS]
 *               [--fsync none|interval|each] [--map-size SIZE] [--counters S]
 *               [--rescan S] [--nice N] [--once] [--lease-ms N] [--no-adopt]
 *               [--stream-max N]
 *
 * Sinks. One registry read feeds every sink in a batch: LMDB (the node's
 * own sessions: a foreign copy is treated as deleted there) and Redis
 * (pushes own sessions). LMDB failing ends the daemon; Redis failing only
 * takes it out of the batches until it answers, then it is resynced
 * whole, since what it missed is unknown.
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
 * (see "counter memo"). A worker killed after its change became visible
 * but before it was announced leaves a note that whoever reaps its handle
 * announces for it (shmreg_reap); the daemon reaps once a second itself,
 * so such a change is stored even where no master reaps.
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

void sync_log(const char *fmt, ...)
{
    va_list ap;
    char line[1200];
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* One write per line: the mirror's threads log too, and lines must
     * not mix (operators and tests look for their starts). */
    fprintf(stderr, "shmreg-sync[%d]: %s\n", (int)getpid(), line);
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

#define MAX_SINKS 2

typedef struct syncd {
    shmreg *h;                    /* the flusher's handle: reads, status */
    shmreg *hp;                   /* the poller's handle: the subscription */
    shmreg_sub *sub;              /* the poller's */
    /* Where batches go: LMDB (if --lmdb) first, then Redis (if --redis).
     * One registry read feeds every sink. A sink without probe() (LMDB)
     * failing ends the daemon; one with it (Redis) is only taken out of
     * the batches ("down") until it answers again, then resynced whole. */
    sync_sink *sink[MAX_SINKS];
    unsigned nsink;
    unsigned live;                /* bit i: sink[i] is in the open batch */
    unsigned down;                /* bit i: sink[i] failed, waiting for probe() */
    sync_sink *lmdb;              /* the durable one (fsync, sync report), or NULL */
    mirror *mirror;               /* --redis: the mirror's threads and status */
    uint32_t node;                /* this registry's node ID (0: single host) */
    /* Sessions changed while Redis was down, for the status (the resync
     * on its return writes them all anyway). Bounded by the registry's
     * size: past it, everything is due and only the bound is reported. */
    idset backlog;
    size_t backlog_cap;
    int backlog_over;
    uint64_t last_probe_mono;
    char err[1024];               /* what the last fatal failure was */
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
    sync_log("%s", d->err);
    return rc;
}

/* ------------------------------------------------------------ batches over every sink */

static void push_state(syncd *d, const char *err)
{
    if (d->mirror)
        mirror_push_state(d->mirror, !d->down, d->backlog_over ? d->backlog_cap : d->backlog.n, err);
}

/* Sink i failed with rc. A sink that can be down drops out of the batch
 * (0: the daemon goes on); any other makes rc the daemon's failure. */
static int sink_failed(syncd *d, unsigned i, int rc)
{
    sync_sink *s = d->sink[i];
    if (s->probe == NULL) {
        snprintf(d->err, sizeof d->err, "%s", s->err);
        return rc;
    }
    s->abort(s);
    d->live &= ~(1u << i);
    if (!(d->down & 1u << i))
        sync_log("%s: %s (going on without it, retrying every %d ms)", s->name, s->err, 500);
    d->down |= 1u << i;
    push_state(d, s->err);
    return 0;
}

static int batch_begin(syncd *d, unsigned mask)
{
    d->live = 0;
    for (unsigned i = 0; i < d->nsink; i++) {
        if (!(mask & 1u << i))
            continue;
        int rc = d->sink[i]->begin(d->sink[i]);
        if (rc == 0)
            d->live |= 1u << i;
        else if ((rc = sink_failed(d, i, rc)) != 0)
            return rc;
    }
    return 0;
}

static int batch_put(syncd *d, int kind, const shmreg_id *id, const void *rec, size_t len,
                     const sync_meta *meta)
{
    for (unsigned i = 0; i < d->nsink; i++) {
        int rc;
        if ((d->live & 1u << i) && (rc = d->sink[i]->put(d->sink[i], kind, id, rec, len, meta)) != 0 &&
            (rc = sink_failed(d, i, rc)) != 0)
            return rc;
    }
    return 0;
}

static int batch_del(syncd *d, int kind, const shmreg_id *id)
{
    for (unsigned i = 0; i < d->nsink; i++) {
        int rc;
        if ((d->live & 1u << i) && (rc = d->sink[i]->del(d->sink[i], kind, id)) != 0 &&
            (rc = sink_failed(d, i, rc)) != 0)
            return rc;
    }
    return 0;
}

static int batch_prune(syncd *d, int kind, int (*keep)(void *, const shmreg_id *), void *arg,
                       uint64_t *removed)
{
    for (unsigned i = 0; i < d->nsink; i++) {
        int rc;
        uint64_t n = 0;
        if ((d->live & 1u << i) && (rc = d->sink[i]->prune(d->sink[i], kind, keep, arg, &n)) != 0 &&
            (rc = sink_failed(d, i, rc)) != 0)
            return rc;
        *removed += n;
    }
    return 0;
}

static void batch_abort(syncd *d)
{
    for (unsigned i = 0; i < d->nsink; i++)
        if (d->live & 1u << i)
            d->sink[i]->abort(d->sink[i]);
    d->live = 0;
}

static int batch_commit(syncd *d, uint64_t pos, uint64_t now)
{
    for (unsigned i = 0; i < d->nsink; i++) {
        int rc;
        if ((d->live & 1u << i) && (rc = d->sink[i]->commit(d->sink[i], pos, now)) != 0 &&
            (rc = sink_failed(d, i, rc)) != 0) {
            batch_abort(d);
            return rc;
        }
    }
    return 0;
}

/* Encode what `id` is now into d->buf: 1 found (*len set, *meta for a
 * session), 0 gone, < 0 a registry error. In a read section. A foreign
 * copy (another node's session) is "gone" for the sinks: a node stores
 * and pushes only its own calls. */
static int encode_now(syncd *d, int kind, const shmreg_id *id, size_t *len, sync_meta *meta)
{
    int rc;
    if (kind == SINK_SESSION) {
        shmreg_session s;
        shmreg_dialog dl[SHMREG_MAX_DIALOGS_PER_SESSION];
        if ((rc = shmreg_session_get(d->h, id, &s)) != 0)
            return rc == SHMREG_ENOENT ? 0 : rc;
        if (d->node && s.owner_node != d->node)
            return 0;
        *meta = (sync_meta){s.owner_node, s.version, now_ns()};
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
    sync_meta meta;
    int rc = encode_now(d, kind, id, &len, &meta);
    if (rc < 0) {
        snprintf(d->err, sizeof d->err, "reading the registry: %s", shmreg_errmsg());
        return SINK_ERR;
    }
    if (rc == 0) {
        d->deletes++;
        return batch_del(d, kind, id);
    }
    d->writes++;
    return batch_put(d, kind, id, d->buf, len, kind == SINK_SESSION ? &meta : NULL);
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
    if (!d->unsynced || d->lmdb == NULL)
        return 0;
    uint64_t pos = d->committed_pos, m = mono_ns();
    if (d->fsync_mode == SINK_SYNC_INTERVAL && m - d->last_sync_mono < 1000000000ull)
        return 0; /* made durable by a later sync */
    if (d->fsync_mode == SINK_SYNC_INTERVAL) {
        int rc = d->lmdb->sync(d->lmdb);
        if (rc) {
            snprintf(d->err, sizeof d->err, "%s", d->lmdb->err);
            return rc;
        }
        d->last_sync_mono = m;
    }
    d->durable_pos = pos;
    d->unsynced = 0;
    shmreg_sync_report(d->h, d->durable_pos, d->last_commit_ns);
    return 0;
}

/* A batch over `mask` was committed at `pos`: the durable sink, if it
 * was in it, is made durable as the fsync mode says. */
static int committed(syncd *d, unsigned mask, uint64_t pos)
{
    d->committed_pos = pos;
    d->commits++;
    if (d->lmdb == NULL || !(mask & 1u))
        return 0;
    d->unsynced = 1;
    return maybe_sync(d);
}

/* End a batch begun on the sinks: abandon it if `rc` says it failed,
 * else commit it with ring position `pos`, stored in the same
 * transaction as the data. */
static int finish(syncd *d, int rc, uint64_t pos)
{
    if (rc) {
        batch_abort(d);
        return rc;
    }
    d->last_commit_ns = now_ns();
    return batch_commit(d, pos, d->last_commit_ns);
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
                snprintf(d->err, sizeof d->err, "%s: %s", what, shmreg_errmsg());
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
    snprintf(d->err, sizeof d->err, "out of memory");
    return SINK_ERR;
}

/* resync's step for one session: seen, remembered, written. */
struct resync_arg {
    memo *fresh;
    uint64_t n;
};

static int is_foreign(const syncd *d, const shmreg_session *s)
{
    return d->node && s->owner_node != d->node;
}

static int resync_one(syncd *d, const shmreg_session *s, void *arg)
{
    struct resync_arg *a = arg;
    if (is_foreign(d, s))
        return 0; /* not seen: prune drops a stored copy of it */
    if (idset_add(&d->seen, &s->id, SINK_SESSION) != 0 || (a->fresh && memo_add(a->fresh, s) != 0))
        return oom(d);
    int rc = write_one(d, SINK_SESSION, &s->id);
    a->n += rc == 0;
    return rc;
}

/* Full resync of the sinks in `mask`: scan everything into one batch
 * committed with `pos`, a ring position taken before the scan began (so
 * every event before it is reflected in what the scan reads, or re-marks
 * what it changes). Only one of every sink rebuilds the counter memo
 * (the others still owe the sinks not in `mask` what moved). */
static int resync(syncd *d, unsigned mask, uint64_t pos, const char *why)
{
    int rc;
    uint64_t t0 = mono_ns();
    unsigned all = (1u << d->nsink) - 1;
    if (mask == all)
        idset_clear(&d->dirty);
    idset_clear(&d->seen);
    memo fresh = {0};
    if ((rc = batch_begin(d, mask)) != 0)
        return rc;
    if (d->live == 0)
        return 0; /* every sink of the mask is down */
    struct resync_arg ra = {mask == all ? &fresh : NULL, 0};
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
        rc = batch_prune(d, SINK_SESSION, seen_keep_session, &d->seen, &gone_s);
    if (rc == 0)
        rc = batch_prune(d, SINK_ROOM, seen_keep_room, &d->seen, &gone_r);
    if ((rc = finish(d, rc, pos)) != 0) {
        memo_free(&fresh);
        return rc;
    }
    unsigned done = d->live;
    d->live = 0;
    if (mask == all && done == all) {
        memo_free(&d->counters);
        d->counters = fresh;
    } else
        memo_free(&fresh);
    if (done == 0)
        return 0; /* the only sink went down midway: retried later */
    d->resyncs++;
    d->last_sync_mono = 0; /* a resync is made durable at once */
    char names[64] = "";
    for (unsigned i = 0; i < d->nsink; i++)
        if (done & 1u << i)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", *names ? "+" : "",
                     d->sink[i]->name);
    sync_log("resync (%s): %llu sessions written, %llu stale records removed, ring position %llu, "
           "%.1f ms (%s)", why, (unsigned long long)n, (unsigned long long)(gone_s + gone_r),
           (unsigned long long)pos, (double)(mono_ns() - t0) / 1e6, names);
    return committed(d, done, pos);
}

/* The counter sweep (see "counter memo"): every live session whose
 * counters moved since the last sweep or resync joins the dirty set, for
 * the flush that follows. Reads in short sections, like a resync; writes
 * nothing itself. */
static int sweep_one(syncd *d, const shmreg_session *s, void *arg)
{
    if (is_foreign(d, s))
        return 0; /* its counters are its owner's to push */
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

/* Remember what a down sink misses, for the status (bounded). */
static void note_backlog(syncd *d)
{
    if (!d->down || d->mirror == NULL)
        return;
    for (size_t i = 0; i < d->dirty.n && !d->backlog_over; i++) {
        if (d->dirty.kind[i] != SINK_SESSION)
            continue;
        if (d->backlog.n >= d->backlog_cap || idset_add(&d->backlog, &d->dirty.id[i], SINK_SESSION) != 0)
            d->backlog_over = 1;
    }
}

/* Write every dirty session and room as it is now, with position `pos`,
 * to every sink that is up. */
static int flush(syncd *d, uint64_t pos)
{
    note_backlog(d);
    if (d->dirty.n == 0 && pos == d->committed_pos)
        return 0;
    unsigned mask = ((1u << d->nsink) - 1) & ~d->down;
    int rc = batch_begin(d, mask);
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
    unsigned done = d->live;
    d->live = 0;
    note_backlog(d); /* a sink that went down in this batch missed it */
    idset_clear(&d->dirty);
    return committed(d, done, pos);
}

/* Every ~500 ms while a sink is down: if it answers again, resync it
 * whole (what it missed is unknown: the backlog is only a count, and a
 * Redis that restarted lost everything). */
static int retry_down(syncd *d, uint64_t pos)
{
    if (!d->down || mono_ns() - d->last_probe_mono < 500000000ull)
        return 0;
    d->last_probe_mono = mono_ns();
    for (unsigned i = 0; i < d->nsink; i++) {
        if (!(d->down & 1u << i) || d->sink[i]->probe(d->sink[i]) != 0)
            continue;
        d->down &= ~(1u << i);
        int rc = resync(d, 1u << i, pos, "back after an outage");
        if (rc)
            return rc;
        if (!(d->down & 1u << i)) {
            sync_log("%s is back: resynced", d->sink[i]->name);
            idset_clear(&d->backlog);
            d->backlog_over = 0;
            push_state(d, "");
        }
    }
    return 0;
}

static int mark(idset *set, const shmreg_event *e)
{
    switch (e->type) {
    case SHMREG_EV_SESSION_CREATED: case SHMREG_EV_STATE_CHANGED: case SHMREG_EV_SDP_UPDATED:
    case SHMREG_EV_SESSION_UPDATED: case SHMREG_EV_SESSION_DELETED: case SHMREG_EV_DIALOG_BOUND:
    case SHMREG_EV_DIALOG_UNBOUND: case SHMREG_EV_SESSION_RESTORED: case SHMREG_EV_TIMEOUT:
    case SHMREG_EV_PROFILE_JOINED: case SHMREG_EV_PROFILE_LEFT: case SHMREG_EV_VAR_CHANGED:
    case SHMREG_EV_SESSION_ADOPTED: /* now ours: stored and pushed under our node */
        return idset_add(set, &e->session, SINK_SESSION);
    case SHMREG_EV_SESSION_IMPORTED:
        return 0; /* a foreign copy: its owner stores and pushes it */
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
        snprintf(d->err, sizeof d->err, "%s", d->poll_err);
    pthread_mutex_unlock(&d->mu);
    return pos;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: shmreg-sync -r REGISTRY [--lmdb DIR] [--redis URL]... [--interval MS]\n"
            "                   [--fsync none|interval|each] [--map-size SIZE] [--counters SECONDS]\n"
            "                   [--rescan SECONDS] [--nice N] [--once]\n"
            "                   [--lease-ms N] [--no-adopt] [--stream-max N]\n"
            "\n"
            "Writes the registry behind into the LMDB sync directory DIR: every session (all\n"
            "fields, both SDPs, counters, state, times) with its dialogs, every room with its\n"
            "roster. Restore a new registry from DIR with `shmregctl restore --from DIR`.\n"
            "With --redis, mirrors registries of several hosts (each created with its own\n"
            "node ID) through Redis: pushes this node's own sessions, imports the others'\n"
            "as read-only copies, and adopts the calls of a node whose lease ran out.\n"
            "At least one of --lmdb and --redis.\n"
            "\n"
            "  -r, --registry PATH  the registry (or $SHMREG_PATH)\n"
            "  --lmdb DIR           the sync directory (created if missing; one syncd each);\n"
            "                       it keeps only this node's own sessions\n"
            "  --redis URL          a Redis seed: redis://HOST:PORT, unix:/PATH or\n"
            "                       sentinel://HOST:PORT/MASTER (repeat for several seeds\n"
            "                       of one cluster or several sentinels)\n"
            "  --lease-ms N         the node's lease in Redis (default 10000), renewed every\n"
            "                       N/4 ms (at most 1 s): when it runs out, another node\n"
            "                       adopts the calls. It must outlast any time Redis may be\n"
            "                       unreachable (a Redis Cluster failover: about twice its\n"
            "                       cluster-node-timeout)\n"
            "  --no-adopt           never adopt a dead node's calls on its own (still does\n"
            "                       when asked: shmreg_node_adopt_request)\n"
            "  --stream-max N       approximate length of the node's change stream\n"
            "                       (default 100000)\n"
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
            "directory full, the registry removed), 2 usage (also --redis for a registry\n"
            "without a node ID), 3 cannot open the registry or the sync directory, the\n"
            "node ID is in use by another daemon, or this node's calls were adopted.\n"
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
        {"counters", required_argument, NULL, 'c'}, {"redis", required_argument, NULL, 'D'},
        {"lease-ms", required_argument, NULL, 'L'}, {"no-adopt", no_argument, NULL, 'A'},
        {"stream-max", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},           {0},
    };
    const char *reg = getenv("SHMREG_PATH"), *dir = NULL;
    const char *urls[16];
    unsigned nurls = 0;
    mirror_opts mo = {.lease_ms = 10000, .stream_max = 100000, .timeout_ms = 1000};
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
        case 'D':
            if (nurls == sizeof urls / sizeof *urls) {
                fprintf(stderr, "shmreg-sync: at most %zu --redis seeds\n", sizeof urls / sizeof *urls);
                return 2;
            }
            urls[nurls++] = optarg;
            break;
        case 'L':
            errno = 0;
            mo.lease_ms = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || mo.lease_ms < 300 || mo.lease_ms > 3600000) {
                fprintf(stderr, "shmreg-sync: --lease-ms wants 300..3600000, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'A': mo.no_adopt = 1; break;
        case 'S':
            errno = 0;
            mo.stream_max = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || mo.stream_max < 100 || mo.stream_max > 1000000000) {
                fprintf(stderr, "shmreg-sync: --stream-max wants 100..1000000000, not '%s'\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !reg || !*reg || ((!dir || !*dir) && nurls == 0)) {
        fprintf(stderr, "shmreg-sync: %s\n", optind != argc ? "unexpected operand"
                                                           : "need -r REGISTRY and --lmdb DIR and/or --redis URL");
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
    shmreg_stats hst;
    if (shmreg_stat(d.h, &hst) != 0) {
        fprintf(stderr, "shmreg-sync: reading registry %s: %s\n", reg, shmreg_errmsg());
        shmreg_close(d.h);
        return 3;
    }
    d.node = hst.node_id;
    d.backlog_cap = hst.max_sessions;
    if (nurls && d.node == 0) {
        fprintf(stderr, "shmreg-sync: --redis needs a registry with a node ID (created with "
                        "shmreg_options.node_id); %s has none\n", reg);
        shmreg_close(d.h);
        return 2;
    }
    char err[1024];
    if (dir && *dir) {
        d.lmdb = sync_lmdb_open(dir, map, fsync_mode, err, sizeof err);
        if (d.lmdb == NULL) {
            fprintf(stderr, "shmreg-sync: %s\n", err);
            shmreg_close(d.h);
            return 3;
        }
        d.sink[d.nsink++] = d.lmdb;
    }
    if ((rc = shmreg_sync_claim(d.h)) != 0) {
        fprintf(stderr, "shmreg-sync: %s\n", shmreg_errmsg());
        if (d.lmdb)
            d.lmdb->close(d.lmdb);
        shmreg_close(d.h);
        return 3;
    }
    if (nurls) {
        mo.urls = urls;
        mo.nurls = nurls;
        mo.registry = reg;
        mo.node = d.node;
        if ((rc = mirror_start(&mo, d.h, &d.mirror, err, sizeof err)) != 0) {
            fprintf(stderr, "shmreg-sync: %s\n", err);
            shmreg_sync_release(d.h);
            if (d.lmdb)
                d.lmdb->close(d.lmdb);
            shmreg_close(d.h);
            return rc;
        }
        d.sink[d.nsink++] = mirror_sink(d.mirror);
    }
    d.bufcap = SHMREG_SESSION_RECORD_MAX;
    d.buf = malloc(d.bufcap);
    d.parts = malloc(SHMREG_MAX_ROOM_PARTICIPANTS * sizeof *d.parts);
    if (d.buf == NULL || d.parts == NULL) {
        fprintf(stderr, "shmreg-sync: out of memory\n");
        return 3;
    }
    uint64_t spos = 0, sns;
    if (d.lmdb)
        d.lmdb->stored(d.lmdb, &spos, &sns);
    sync_log("following %s into %s%s%s (node %u, stored ring position %llu; interval %llu ms, fsync %s)",
           reg, dir ? dir : "", dir && nurls ? " and " : "", nurls ? "Redis" : "", (unsigned)d.node,
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
            snprintf(d.err, sizeof d.err, "cannot start the poller thread");
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
        rc = resync(&d, (1u << d.nsink) - 1, start_pos, "start");
    d.last_probe_mono = mono_ns();
    uint64_t last_scan = mono_ns(), last_counters = last_scan, last_reap = last_scan;
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
            rc = resync(&d, ((1u << d.nsink) - 1) & ~d.down, pos, why);
            last_scan = last_counters = mono_ns();
        } else {
            if (counters_s && mono_ns() - last_counters >= counters_s * 1000000000ull) {
                rc = sweep_counters(&d);
                last_counters = mono_ns();
            }
            if (mono_ns() - last_reap >= 1000000000ull) {
                shmreg_reap(d.h); /* a dead worker's unannounced change: announced now */
                last_reap = mono_ns();
            }
            if (rc == 0)
                rc = flush(&d, pos);
        }
        if (rc == 0)
            rc = retry_down(&d, pos);
        if (rc == 0)
            rc = maybe_sync(&d);
        push_state(&d, NULL);
        if (rc == 0 && d.mirror && (status = mirror_fatal(d.mirror, d.h, d.err, sizeof d.err)) != 0) {
            sync_log("%s", d.err);
            break;
        }
        struct stat seg1;
        if (rc == 0 && have_seg &&
            (stat(segpath, &seg1) != 0 || seg1.st_ino != seg0.st_ino || seg1.st_dev != seg0.st_dev)) {
            snprintf(d.err, sizeof d.err,
                     "registry %s was removed or replaced: stopping (the directory keeps its last state; "
                     "start shmreg-sync again for the new registry)", reg);
            rc = SINK_ERR;
        }
    }
    stop = 1;
    if (have_poller)
        pthread_join(pt, NULL);
    if (rc == 0 && !once && status == 0) { /* stopped: write what is pending */
        int scan, failed;
        uint64_t pos = take(&d, &scan, &failed);
        rc = failed ? SINK_ERR
             : scan ? resync(&d, ((1u << d.nsink) - 1) & ~d.down, pos, "lapped: events were missed")
                    : flush(&d, pos);
    }
    if (rc == 0 && d.lmdb && d.unsynced) {
        if ((rc = d.lmdb->sync(d.lmdb)) == 0) {
            d.durable_pos = d.committed_pos;
            shmreg_sync_report(d.h, d.durable_pos, d.last_commit_ns);
        } else
            snprintf(d.err, sizeof d.err, "%s", d.lmdb->err);
    }
    if (rc) {
        fatal_sink(&d, rc);
        status = 1;
    } else if (status == 0)
        sync_log("stopped: %llu commits, %llu writes, %llu deletes, %llu resyncs, ring position %llu",
               (unsigned long long)d.commits, (unsigned long long)d.writes, (unsigned long long)d.deletes,
               (unsigned long long)d.resyncs, (unsigned long long)d.durable_pos);
    if (d.mirror)
        mirror_stop(d.mirror); /* closes its sink */
    shmreg_sync_release(d.h);
    shmreg_unsubscribe(d.sub);
    if (d.lmdb)
        d.lmdb->close(d.lmdb);
    shmreg_close(d.hp);
    shmreg_close(d.h);
    idset_free(&d.marking);
    idset_free(&d.dirty);
    idset_free(&d.seen);
    idset_free(&d.backlog);
    memo_free(&d.counters);
    free(d.buf);
    free(d.parts);
    return status;
}
