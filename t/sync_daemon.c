/*
 * sync_daemon.c — the real shmreg-sync binary against real processes and
 * real files: forked writers change sessions (checksummed SDPs, states,
 * fields, counters, dialogs, deletes) while the daemon follows; the
 * daemon is SIGKILLed at random moments (KILLS times) and restarted, and
 * each time the copy it left restores, every record sound. Then the
 * writers stop, the daemon reports everything durable, and the registry
 * is "rebooted": every process SIGKILLed, the segment deleted, a new
 * registry restored from the sync directory, and every session compared
 * byte for byte (its whole encoded record) with what the old registry
 * held; shmregctl check is clean. The same after a lap (a 64-record ring
 * overrun while the daemon is stopped forces a resync). And the refusals:
 * a foreign, another application's or a corrupt directory, one in use,
 * a registry already followed, an unwritable directory, a full map
 * (MDB_MAP_FULL) - each a clear message and exit status, the workers
 * unaffected, the directory left as it was. And exactness at a kill that
 * does not wait for quiet (durable_at_kill, below), and a worker killed
 * between making a change visible and announcing it (killed_mid_change).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crashpoint.h"
#include "ctl_run.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})
#define WRITERS 3
#define PER_WRITER 40
#define KILLS 22

static char reg[512], sdir[512], logpath[600];
static volatile int *stop_flag;

static const char *sync_bin(void)
{
    static char p[1024];
    snprintf(p, sizeof p, "%s/tools/shmreg-sync", test_build_dir());
    if (access(p, X_OK) != 0)
        bail_out("no shmreg-sync at %s (run make first)", p);
    return p;
}

/* Start the daemon with extra arguments; its stderr goes to logpath. */
static pid_t daemon_start(const char *r, const char *d, const char *a1, const char *a2)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies (watchdog) takes its daemon along */
        int fd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execl(sync_bin(), "shmreg-sync", "-r", r, "--lmdb", d, "--interval", "20", a1, a2, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* Run the daemon to its end (a refusal); its exit status, stderr in *err. */
static int daemon_run(const char *r, const char *d, const char *a1, const char *a2, char *err, size_t cap)
{
    unlink(logpath);
    pid_t pid = daemon_start(r, d, a1, a2);
    int st = test_wait(pid);
    err[0] = 0;
    FILE *f = fopen(logpath, "r");
    if (f) {
        size_t n = fread(err, 1, cap - 1, f);
        err[n] = 0;
        fclose(f);
    }
    return st;
}

static uint64_t fnv(const void *p, size_t n)
{
    uint64_t x = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        x = (x ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return x;
}

/* An SDP whose last line is the checksum of the lines before it. */
static size_t make_sdp(char *buf, const shmreg_id *id, uint64_t ver)
{
    char t[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(id, t);
    int n = snprintf(buf, 400, "v=0\r\no=- %s %llu IN IP4 10.1.2.3\r\nm=audio %u RTP/AVP 0 8\r\n", t,
                     (unsigned long long)ver, (unsigned)(ver % 60000));
    n += snprintf(buf + n, 64, "a=sum:%016llx\r\n", (unsigned long long)fnv(buf, (size_t)n));
    return (size_t)n;
}

static int sdp_sound(shmreg_str s)
{
    if (s.len == 0)
        return 1;
    const char *a = s.len > 24 ? s.ptr + s.len - 24 : NULL;
    if (a == NULL || memcmp(a, "a=sum:", 6) != 0)
        return 0;
    char want[32];
    snprintf(want, sizeof want, "%016llx", (unsigned long long)fnv(s.ptr, s.len - 24));
    return memcmp(a + 6, want, 16) == 0;
}

static shmreg_id new_call(shmreg *h, unsigned w, uint64_t n)
{
    shmreg_fields f = {0};
    char from[64], cid[64];
    snprintf(from, sizeof from, "sip:w%u-%llu@example.com", w, (unsigned long long)n);
    snprintf(cid, sizeof cid, "cid-%u-%llu", w, (unsigned long long)n);
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){from, strlen(from)};
    f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){cid, strlen(cid)};
    shmreg_id id;
    if (shmreg_session_create(h, &f, &id) != 0)
        memset(&id, 0, sizeof id);
    else {
        shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, S("ft"), S("tt"), &id);
        shmreg_session_transition(h, &id, 0, SHMREG_STATE_ACTIVE, NULL);
    }
    return id;
}

typedef struct wargs {
    unsigned w;
    unsigned ops; /* 0: until stop_flag */
    int counters;
} wargs;

static void writer(void *arg)
{
    wargs *a = arg;
    shmreg *h;
    if (shmreg_open(reg, NULL, &h) != 0)
        _exit(2);
    shmreg_id ids[PER_WRITER];
    uint64_t ver = 0;
    for (unsigned i = 0; i < PER_WRITER; i++)
        ids[i] = new_call(h, a->w, ver++);
    unsigned seed = a->w * 7919u + 1;
    char sdp[512];
    for (unsigned op = 0; a->ops ? op < a->ops : !*stop_flag; op++) {
        unsigned i = rand_r(&seed) % PER_WRITER, k = rand_r(&seed) % 10;
        shmreg_id *id = &ids[i];
        if (k < 4) {
            size_t n = make_sdp(sdp, id, ver++);
            shmreg_session_set_sdp(h, id, (int)(k & 1), sdp, n);
        } else if (k < 6) {
            shmreg_session_transition(h, id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL);
            shmreg_session_transition(h, id, SHMREG_STATE_ONHOLD, k == 4 ? SHMREG_STATE_ACTIVE
                                                                          : SHMREG_STATE_TRANSFERRING, NULL);
        } else if (k < 8) {
            shmreg_fields f = {0};
            char v[32];
            snprintf(v, sizeof v, "name-%llu", (unsigned long long)ver++);
            f.str[SHMREG_FIELD_DISPLAY_NAME] = (shmreg_str){v, strlen(v)};
            f.remote_rtp_port = (uint16_t)ver;
            shmreg_session_update(h, id, &f, SHMREG_MASK(SHMREG_FIELD_DISPLAY_NAME) |
                                                 SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT));
        } else if (k == 8 && a->counters) {
            shmreg_session_counter_add(h, id, SHMREG_CTR_PACKETS_SENT, 1 + op % 7);
        } else {
            shmreg_session_delete(h, id);
            *id = new_call(h, a->w, ver++);
        }
    }
    shmreg_close(h);
    _exit(0);
}

/* Every session of h, encoded, in a table for comparison. */
typedef struct snap {
    size_t n;
    shmreg_id id[WRITERS * PER_WRITER + 16];
    unsigned char *rec[WRITERS * PER_WRITER + 16];
    size_t len[WRITERS * PER_WRITER + 16];
} snap;

static void snap_take(shmreg *h, snap *s)
{
    static unsigned char buf[SHMREG_SESSION_RECORD_MAX];
    uint64_t cur = 0;
    s->n = 0;
    for (;;) {
        shmreg_session v;
        shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
        shmreg_read_begin(h);
        int rc = shmreg_session_next(h, &cur, 0, &v);
        if (rc) {
            shmreg_read_end(h);
            break;
        }
        for (unsigned i = 0; i < v.ndialogs; i++)
            shmreg_session_dialog(h, &v.id, i, &d[i]);
        size_t len;
        shmreg_session_encode(&v, d, v.ndialogs, buf, sizeof buf, &len);
        shmreg_read_end(h);
        if (s->n == sizeof s->id / sizeof s->id[0])
            bail_out("too many sessions");
        s->id[s->n] = v.id;
        s->rec[s->n] = malloc(len);
        memcpy(s->rec[s->n], buf, len);
        s->len[s->n++] = len;
    }
}

static void snap_free(snap *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->rec[i]);
    s->n = 0;
}

/* How many of `a`'s records `b` holds byte for byte. */
static size_t snap_same(const snap *a, const snap *b)
{
    size_t same = 0;
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            if (memcmp(a->id[i].bytes, b->id[j].bytes, 16) == 0) {
                same += a->len[i] == b->len[j] && memcmp(a->rec[i], b->rec[j], a->len[i]) == 0;
                break;
            }
    return same;
}

/* Wait (watchdog-bounded) until the daemon reports every event durable,
 * with a commit after `after_ns`. */
static void wait_durable(shmreg *h, uint64_t after_ns)
{
    for (;;) {
        shmreg_stats st = test_stats(h);
        if (st.sync_alive && st.sync_behind == 0 && st.sync_commit_ns > after_ns)
            return;
        test_sleep_us(5000);
    }
}

/* Restore `dir` into a new scratch registry, open until scratch_drop: the
 * restore's result in *rc, the sessions restored in *n. */
static char scratch_path[512];

static shmreg *scratch_restore(const char *dir, int *rc, uint64_t *n)
{
    shmreg *h;
    /* Room for more than the registry holds: a directory the daemon was
     * killed behind may still list sessions deleted since, beside the
     * ones created since. */
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 4096};
    snprintf(scratch_path, sizeof scratch_path, "%s", test_dir("scratch"));
    if (shmreg_open(scratch_path, &o, &h) != 0)
        bail_out("scratch: %s", shmreg_errmsg());
    shmreg_restore_report rep;
    *rc = shmreg_restore(h, dir, SHMREG_RESTORE_ALL, &rep);
    if (*rc)
        diag("restore of %s: %s (%s)", dir, shmreg_strerror(*rc), shmreg_errmsg());
    *n = rep.sessions;
    return h;
}

static void scratch_drop(shmreg *h)
{
    shmreg_close(h);
    shmreg_destroy(scratch_path, 1);
}

/* Restore `dir` into a scratch registry: the restore's result, and 1 in
 * *sound when every restored SDP passes its checksum. */
static int restore_scratch(const char *dir, int *sound, uint64_t *n)
{
    int rc;
    shmreg *h = scratch_restore(dir, &rc, n);
    *sound = 1;
    uint64_t cur = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, 0, &v) == 0)
        *sound &= sdp_sound(v.sdp[0]) && sdp_sound(v.sdp[1]) && (v.flags & SHMREG_SESSION_RESTORED);
    shmreg_read_end(h);
    scratch_drop(h);
    return rc;
}

/* The reboot: the old registry's snapshot, then every process gone, the
 * segment deleted, a new registry restored from sdir, compared. */
static void reboot_and_compare(shmreg **hp, pid_t daemon, const char *what)
{
    snap before, after;
    snap_take(*hp, &before);
    kill(daemon, SIGKILL);
    is(test_wait(daemon), 128 + SIGKILL, "%s: daemon SIGKILLed", what);
    shmreg_close(*hp);
    is(shmreg_destroy(reg, 1), 0, "%s: segment deleted (the reboot)", what);
    ctl_res r;
    is(ctl(&r, "-r", reg, "restore", "--from", sdir, "--all", "--sessions", "1024", NULL), 0,
       "%s: shmregctl restore runs", what);
    ctl_res_free(&r);
    if (shmreg_open(reg, NULL, hp) != 0)
        bail_out("reopen: %s", shmreg_errmsg());
    snap_take(*hp, &after);
    is(after.n, before.n, "%s: %zu sessions, as many as before", what, before.n);
    is(snap_same(&before, &after), before.n, "%s: every one byte for byte as before (all fields, SDPs, "
       "counters, state, times, dialogs)", what);
    is(ctl(&r, "-r", reg, "check", NULL), 0, "%s: shmregctl check is clean", what);
    ctl_res_free(&r);
    snap_free(&before);
    snap_free(&after);
}

static void kill_and_restart(void)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create: %s", shmreg_errmsg());
    pid_t d = daemon_start(reg, sdir, "--fsync", "each");
    *stop_flag = 0;
    wargs wa[WRITERS];
    pid_t w[WRITERS];
    for (unsigned i = 0; i < WRITERS; i++) {
        wa[i] = (wargs){i, 0, 1};
        w[i] = test_fork(writer, &wa[i]);
    }
    unsigned seed = 42, restored_ok = 0, sound_all = 1, killed = 0;
    uint64_t started = 0;
    for (int k = 0; k < KILLS; k++) {
        test_sleep_us(20000 + rand_r(&seed) % 60000);
        kill(d, SIGKILL);
        killed += test_wait(d) == 128 + SIGKILL;
        int sound;
        uint64_t n;
        restored_ok += restore_scratch(sdir, &sound, &n) == 0;
        sound_all &= sound;
        started = test_now_ns();
        d = daemon_start(reg, sdir, "--fsync", "each");
    }
    is(killed, KILLS, "the daemon was SIGKILLed %d times under load", KILLS);
    is(restored_ok, KILLS, "each time its directory restored");
    is(sound_all, 1, "with every SDP sound (no torn record)");
    *stop_flag = 1;
    int wok = 0;
    for (unsigned i = 0; i < WRITERS; i++)
        wok += test_wait(w[i]) == 0;
    is(wok, WRITERS, "writers finished");
    /* Counters move without events: a resync (SIGHUP) takes them in,
     * once the last daemon is up (its signal handler set). */
    wait_durable(h, started);
    uint64_t t = test_now_ns();
    kill(d, SIGHUP);
    wait_durable(h, t);
    shmreg_stats st = test_stats(h);
    is(st.sync_behind, 0, "durable: 0 events behind");
    is(st.sync_pid, d, "the restarted daemon holds the claim");
    reboot_and_compare(&h, d, "after 22 kills");
    shmreg_close(h);
    shmreg_destroy(reg, 1);
}

/* Counter 0 of session `id` as restoring `dir` brings it back. */
static uint64_t restored_counter(const char *dir, const shmreg_id *id)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
    const char *p = test_dir("scratch-ctr");
    if (shmreg_open(p, &o, &h) != 0)
        bail_out("scratch: %s", shmreg_errmsg());
    shmreg_restore_report rep;
    uint64_t v = UINT64_MAX;
    shmreg_session s;
    if (shmreg_restore(h, dir, SHMREG_RESTORE_ALL, &rep) == 0) {
        shmreg_read_begin(h);
        if (shmreg_session_get(h, id, &s) == 0)
            v = s.counter[0];
        shmreg_read_end(h);
    }
    shmreg_close(h);
    shmreg_destroy(p, 1);
    return v;
}

/* RTP counters move without events. Without the sweep (--counters 0) the
 * copy keeps the old values however long one waits; with --counters 1
 * the sweep finds the sessions whose counters moved, a commit follows
 * with no event at all, and the reboot brings every counter back. */
static void counter_sweep(void)
{
    enum { N = 20, MOVED = 10 };
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create: %s", shmreg_errmsg());
    shmreg_id id[N];
    for (int i = 0; i < N; i++)
        if (shmreg_session_create(h, NULL, &id[i]) != 0 ||
            shmreg_session_transition(h, &id[i], 0, SHMREG_STATE_ACTIVE, NULL) != 0)
            bail_out("session: %s", shmreg_errmsg());

    uint64_t t0 = test_now_ns();
    pid_t d = daemon_start(reg, sdir, "--counters", "0");
    wait_durable(h, t0);
    uint64_t t1 = test_now_ns();
    for (int i = 0; i < MOVED; i++)
        shmreg_session_counter_add(h, &id[i], 0, 1000 + (uint64_t)i);
    test_sleep_us(1500000);
    shmreg_stats st = test_stats(h);
    ok(st.sync_commit_ns < t1, "--counters 0: no commit in 1.5 s after counters moved (no event)");
    is(restored_counter(sdir, &id[3]), 0, "and the copy still has the old counter");
    kill(d, SIGKILL);
    test_wait(d);

    /* The restart resyncs (taking these counters in); then new moves. */
    t0 = test_now_ns();
    d = daemon_start(reg, sdir, "--counters", "1");
    wait_durable(h, t0);
    is(restored_counter(sdir, &id[3]), 1003, "a restarted daemon's resync took them in");
    t1 = test_now_ns();
    for (int i = 0; i < MOVED; i++)
        shmreg_session_counter_add(h, &id[i], 0, 7);
    wait_durable(h, t1); /* no event since t1: only the sweep can commit */
    st = test_stats(h);
    is(st.sync_durable_seq, st.events_published, "--counters 1: a commit came with no new event");
    is(restored_counter(sdir, &id[3]), 1010, "it holds the moved counter");
    is(restored_counter(sdir, &id[MOVED]), 0, "and a session whose counters did not move, as it was");
    reboot_and_compare(&h, d, "counters moved without events");
    shmreg_close(h);
    shmreg_destroy(reg, 1);
}

static void lapped(void)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024, .event_records = 64};
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create: %s", shmreg_errmsg());
    test_rm_rf(sdir);
    unlink(logpath);
    pid_t d = daemon_start(reg, sdir, "--fsync", "none");
    wait_durable(h, 0);
    kill(d, SIGSTOP);
    wargs wa = {7, 2000, 0};
    is(test_wait(test_fork(writer, &wa)), 0, "2000 changes while the daemon is stopped");
    shmreg_stats st = test_stats(h);
    ok(st.events_published - st.sync_durable_seq > 64, "more events than the 64-record ring holds (%llu)",
       (unsigned long long)(st.events_published - st.sync_durable_seq));
    uint64_t t = test_now_ns();
    kill(d, SIGCONT);
    wait_durable(h, t);
    char log[8192] = "";
    FILE *f = fopen(logpath, "r");
    if (f) {
        log[fread(log, 1, sizeof log - 1, f)] = 0;
        fclose(f);
    }
    ok(strstr(log, "resync (lapped") != NULL, "the daemon saw the lap and resynced");
    reboot_and_compare(&h, d, "after a lap");
    shmreg_close(h);
    shmreg_destroy(reg, 1);
}


/* ------------------------------------------------------------ durable at a kill
 *
 * Exactness at a random SIGKILL, without waiting for quiet: around each
 * change a writer publishes two custom events naming the session and the
 * version of its SDP (a delete: version DELETED): "intent" before it,
 * "done" after it. A monitor process subscribed before the writers
 * started reads every event (the run publishes fewer events than the
 * ring holds, so it cannot be lapped). When the daemon and the writers
 * are SIGKILLed at once, the sync directory's ring position D says: every
 * event with seq < D is on disk. So a session whose last "done" before D
 * is version v_d must come back with a version v, v_d <= v <= the last
 * version it was meant to get, unless a delete of it was under way; one
 * whose delete was done before D must not come back; and whatever comes
 * back has a sound SDP. (Intent markers cover the change a writer was
 * killed in the middle of.) */

#define DELETED UINT64_MAX
#define MARKS (1u << 15)

typedef struct mark {
    uint64_t seq, ver;
    int done;
    shmreg_id sid;
} mark;

typedef struct markbook {
    _Atomic uint32_t n;
    _Atomic int ready, done;
    mark m[MARKS];
} markbook;

static markbook *book;

static void monitor(void *arg)
{
    (void)arg;
    shmreg *h;
    shmreg_sub *sub;
    if (shmreg_open(reg, NULL, &h) || shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &sub))
        _exit(2);
    atomic_store(&book->ready, 1);
    shmreg_event ev[64];
    for (;;) {
        uint64_t missed = 0;
        int n = shmreg_poll(sub, ev, 64, 20000000, &missed);
        for (int i = 0; i < n; i++) {
            uint32_t k = atomic_load(&book->n);
            if (k == MARKS)
                _exit(4);
            uint64_t d[2];
            memcpy(d, ev[i].data, 16);
            book->m[k] = (mark){ev[i].seq, d[0], (int)d[1], ev[i].session};
            atomic_store(&book->n, k + 1);
        }
        /* Lapped, or the record of a writer killed mid-publish skipped:
         * only the latter can happen here (the ring holds the whole run),
         * and such a record is no marker. */
        (void)missed;
        if (n == 0 && atomic_load(&book->done))
            break;
    }
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    _exit(0);
}

static void marker(shmreg *h, const shmreg_id *id, uint64_t ver, uint64_t done)
{
    uint64_t d[2] = {ver, done};
    shmreg_publish(h, id, d, 16);
}

static void marked_writer(void *arg)
{
    unsigned w = (unsigned)(uintptr_t)arg;
    shmreg *h;
    if (shmreg_open(reg, NULL, &h) != 0)
        _exit(2);
    shmreg_id ids[8];
    uint64_t ver = (uint64_t)w << 40;
    char sdp[512];
    for (unsigned i = 0; i < 8; i++)
        ids[i] = new_call(h, w, ver);
    unsigned seed = w + 99;
    for (unsigned op = 0; op < 1500; op++) {
        unsigned i = rand_r(&seed) % 8;
        if (rand_r(&seed) % 8 == 0) {
            marker(h, &ids[i], DELETED, 0);
            shmreg_session_delete(h, &ids[i]);
            marker(h, &ids[i], DELETED, 1);
            ids[i] = new_call(h, w, ver);
        }
        size_t n = make_sdp(sdp, &ids[i], ++ver);
        marker(h, &ids[i], ver, 0);
        if (shmreg_session_set_sdp(h, &ids[i], 0, sdp, n) == 0)
            marker(h, &ids[i], ver, 1);
        if (op % 16 == 0)
            test_sleep_us(1000); /* spread the run (>= 94 ms) over the kill window */
    }
    shmreg_close(h);
    _exit(0);
}

/* The version in a checksummed SDP ("o=- UUID VER ..."); 0 for none. */
static uint64_t sdp_version(shmreg_str s)
{
    unsigned long long v = 0;
    char buf[200];
    size_t n = s.len < sizeof buf - 1 ? s.len : sizeof buf - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    const char *o = strstr(buf, "o=- ");
    if (o == NULL || strlen(o) < 4 + SHMREG_ID_TEXT_LEN ||
        sscanf(o + 4 + SHMREG_ID_TEXT_LEN, " %llu", &v) != 1)
        return 0;
    return v;
}

static void durable_at_kill(void)
{
    book = test_shared(sizeof *book);
    unsigned seed = 7, rounds = 6, exact = 0, checked_total = 0, midrun = 0;
    for (unsigned round = 0; round < rounds; round++) {
        shmreg *h;
        shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024, .event_records = 1u << 16};
        if (shmreg_open(reg, &o, &h) != 0)
            bail_out("create: %s", shmreg_errmsg());
        test_rm_rf(sdir);
        memset(book, 0, sizeof *book);
        pid_t mon = test_fork(monitor, NULL);
        while (!atomic_load(&book->ready))
            test_sleep_us(1000);
        pid_t d = daemon_start(reg, sdir, "--fsync", round % 2 ? "each" : "none");
        wait_durable(h, 0);
        pid_t w[3];
        for (unsigned i = 0; i < 3; i++)
            w[i] = test_fork(marked_writer, (void *)(uintptr_t)(i + 1));
        test_sleep_us(30000 + rand_r(&seed) % 120000);
        kill(d, SIGKILL);
        for (unsigned i = 0; i < 3; i++)
            kill(w[i], SIGKILL);
        test_wait(d);
        for (unsigned i = 0; i < 3; i++)
            test_wait(w[i]);
        atomic_store(&book->done, 1);
        int mst = test_wait(mon);
        uint64_t published = test_stats(h).events_published;
        shmreg_close(h);
        shmreg_destroy(reg, 1); /* the reboot */

        shmreg_sync_info info;
        shmreg_sync_dir_info(sdir, &info);
        uint64_t D = info.ring_pos;
        shmreg *r;
        shmreg_options ro = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
        if (shmreg_open(reg, &ro, &r) != 0)
            bail_out("recreate: %s", shmreg_errmsg());
        shmreg_restore_report rep;
        int rrc = shmreg_restore(r, sdir, SHMREG_RESTORE_ALL, &rep);
        /* Judge every session the markers name. */
        uint32_t nm = atomic_load(&book->n);
        unsigned bad = 0, checked = 0;
        for (uint32_t i = 0; i < nm; i++) {
            const shmreg_id *sid = &book->m[i].sid;
            int first = 1;
            for (uint32_t j = 0; j < i; j++)
                if (test_id_eq(&book->m[j].sid, sid)) {
                    first = 0;
                    break;
                }
            if (!first)
                continue;
            uint64_t vd = 0, vmax = 0;
            int has_d = 0, deleted_d = 0, delete_meant = 0;
            for (uint32_t j = i; j < nm; j++) {
                const mark *mk = &book->m[j];
                if (!test_id_eq(&mk->sid, sid))
                    continue;
                if (mk->ver == DELETED) {
                    delete_meant = 1;
                    deleted_d |= mk->done && mk->seq < D;
                    continue;
                }
                if (mk->ver > vmax)
                    vmax = mk->ver;
                if (mk->done && mk->seq < D) {
                    has_d = 1;
                    vd = mk->ver > vd ? mk->ver : vd;
                }
            }
            shmreg_session v;
            shmreg_read_begin(r);
            int found = shmreg_session_get(r, sid, &v) == 0;
            uint64_t ver = found ? sdp_version(v.sdp[0]) : 0;
            int sound = !found || sdp_sound(v.sdp[0]);
            shmreg_read_end(r);
            int okk;
            if (deleted_d)
                okk = !found;
            else if (found)
                okk = sound && (!has_d || ver >= vd) && (ver == 0 || ver <= vmax);
            else
                okk = !has_d || delete_meant;
            if (!okk)
                diag("round %u: v_d %llu max %llu deleted %d/%d: restored %d version %llu", round,
                     (unsigned long long)vd, (unsigned long long)vmax, deleted_d, delete_meant, found,
                     (unsigned long long)ver);
            bad += !okk;
            checked++;
        }
        exact += mst == 0 && rrc == 0 && bad == 0 && D > 0;
        midrun += D < published; /* killed before it had caught up */
        if (mst || rrc || !D)
            diag("round %u: monitor %d, restore %d, D %llu", round, mst, rrc, (unsigned long long)D);
        checked_total += checked;
        shmreg_close(r);
        shmreg_destroy(reg, 1);
    }
    is(exact, rounds, "%u SIGKILLs mid-run: every change before the durable position is there, "
       "nothing deleted before it came back (%u sessions judged)", rounds, checked_total);
    note("%u of the %u kills landed before the daemon had caught up", midrun, rounds);
}

static void refusals(void)
{
    char err[4096];
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 4096};
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create: %s", shmreg_errmsg());
    test_session_new(h);

    char foreign[600], path[700];
    snprintf(foreign, sizeof foreign, "%s-foreign", sdir);
    mkdir(foreign, 0700);
    snprintf(path, sizeof path, "%s/thesis.tex", foreign);
    FILE *f = fopen(path, "w");
    fputs("precious\n", f);
    fclose(f);
    is(daemon_run(reg, foreign, NULL, NULL, err, sizeof err), 3, "a directory of other files: exit 3");
    ok(strstr(err, "not a sync directory") != NULL, "... 'not a sync directory': %.200s", err);
    struct stat stt;
    snprintf(path, sizeof path, "%s/data.mdb", foreign);
    ok(stat(path, &stt) != 0, "... and nothing written into it");

    snprintf(foreign, sizeof foreign, "%s-otherlmdb", sdir);
    mkdir(foreign, 0700);
    MDB_env *env;
    MDB_txn *t;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 2);
    mdb_env_open(env, foreign, 0, 0600);
    mdb_txn_begin(env, NULL, 0, &t);
    mdb_dbi_open(t, "users", MDB_CREATE, &dbi);
    mdb_txn_commit(t);
    mdb_env_close(env);
    is(daemon_run(reg, foreign, NULL, NULL, err, sizeof err), 3, "another application's LMDB: exit 3");
    ok(strstr(err, "not a sync directory of format") != NULL, "... named: %.200s", err);

    snprintf(foreign, sizeof foreign, "%s-corrupt", sdir);
    mkdir(foreign, 0700);
    snprintf(path, sizeof path, "%s/data.mdb", foreign);
    f = fopen(path, "w");
    for (int i = 0; i < 50000; i++)
        fputc(i * 13, f);
    fclose(f);
    is(daemon_run(reg, foreign, NULL, NULL, err, sizeof err), 3, "a corrupt data.mdb: exit 3");
    ok(strstr(err, "cannot open sync directory") != NULL, "... named: %.200s", err);

    /* One daemon per directory, one per registry. */
    test_rm_rf(sdir);
    pid_t d = daemon_start(reg, sdir, NULL, NULL);
    wait_durable(h, 0);
    char other[600];
    snprintf(other, sizeof other, "%s", test_dir("reg2"));
    shmreg *h2;
    shmreg_options o2 = {.flags = SHMREG_CREATE};
    shmreg_open(other, &o2, &h2);
    is(daemon_run(other, sdir, NULL, NULL, err, sizeof err), 3, "a second daemon on the directory: exit 3");
    char want[128];
    snprintf(want, sizeof want, "in use by shmreg-sync pid %d", (int)d);
    ok(strstr(err, want) != NULL, "... '%s': %.200s", want, err);
    snprintf(path, sizeof path, "%s-2", sdir);
    is(daemon_run(reg, path, NULL, NULL, err, sizeof err), 3, "a second daemon on the registry: exit 3");
    ok(strstr(err, "already followed by shmreg-sync pid") != NULL, "... named: %.200s", err);
    ctl_res r;
    is(ctl(&r, "-r", reg, "--json", "sync", "status", "--lmdb", sdir, NULL), 0, "sync status: exit 0");
    char pids[32];
    snprintf(pids, sizeof pids, "%d", (int)d);
    is_str(jd(&r, "d['sync']['daemon_pid']"), pids, "... the daemon's pid");
    is_str(jd(&r, "d['directory']['sessions']"), "1", "... 1 session stored");
    ctl_res_free(&r);
    kill(d, SIGTERM);
    is(test_wait(d), 0, "SIGTERM: the daemon stops, exit 0");
    is(ctl(&r, "-r", reg, "sync", "status", NULL), 1, "sync status without a daemon: exit 1");
    ctl_res_free(&r);
    /* A warm restart: the registry survived, --if-created leaves it alone. */
    is(ctl(&r, "-r", reg, "restore", "--from", sdir, "--if-created", NULL), 0,
       "restore --if-created on a registry that survived: exit 0");
    ok(strstr(r.out, "warm restart") != NULL, "... saying it restored nothing");
    ctl_res_free(&r);
    is(ctl(&r, "-r", reg, "restore", "--from", sdir, "--all", NULL), 1,
       "restore without it on a registry with sessions: exit 1");
    ok(strstr(r.err, "restore refused") != NULL, "... refused: %.200s", r.err);
    ctl_res_free(&r);
    is(test_stats(h).sessions, 1, "the registry kept its one session");
    is(test_stats(h).sync_pid, 0, "its claim was released");
    shmreg_close(h2);
    shmreg_destroy(other, 1);

    /* The registry removed under a running daemon: it says so and stops. */
    {
        char other2[600];
        snprintf(other2, sizeof other2, "%s", test_dir("gone"));
        shmreg *g;
        shmreg_options og = {.flags = SHMREG_CREATE};
        if (shmreg_open(other2, &og, &g) != 0)
            bail_out("gone: %s", shmreg_errmsg());
        snprintf(path, sizeof path, "%s-gone", sdir);
        unlink(logpath);
        pid_t dg = daemon_start(other2, path, NULL, NULL);
        wait_durable(g, 0);
        shmreg_close(g);
        is(shmreg_destroy(other2, 1), 0, "a followed registry destroyed");
        is(test_wait(dg), 1, "its daemon stops, exit 1");
        f = fopen(logpath, "r");
        err[0] = 0;
        if (f) {
            err[fread(err, 1, sizeof err - 1, f)] = 0;
            fclose(f);
        }
        ok(strstr(err, "was removed or replaced") != NULL, "... saying the registry was removed or replaced");
    }

    /* Unwritable: a read-only file system (root ignores modes). */
    char ro[600];
    snprintf(ro, sizeof ro, "%s", test_dir("ro"));
    mkdir(ro, 0700);
    int mounted = geteuid() == 0 && mount("tmpfs", ro, "tmpfs", MS_RDONLY, "size=1m") == 0;
    if (!mounted)
        chmod(ro, 0500);
    if (!mounted && geteuid() == 0) {
        skip(2, "root and no read-only mount: cannot make an unwritable directory");
    } else {
        snprintf(path, sizeof path, "%s/sync", ro);
        is(daemon_run(reg, path, NULL, NULL, err, sizeof err), 3, "an unwritable place: exit 3");
        ok(strstr(err, "cannot create sync directory") != NULL, "... named: %.200s", err);
    }
    if (mounted)
        umount(ro);

    /* MDB_MAP_FULL: a 256 KiB map fills under 800 sessions with 2 KiB SDPs. */
    test_rm_rf(sdir);
    pid_t dd = daemon_start(reg, sdir, "--map-size", "256K");
    wait_durable(h, 0);
    char big[2048];
    memset(big, 'x', sizeof big);
    int created = 0;
    for (int i = 0; i < 800; i++) {
        shmreg_id id = test_session_new(h);
        created += shmreg_session_set_sdp(h, &id, 0, big, sizeof big) == 0;
    }
    is(created, 800, "workers go on: 800 sessions with SDPs written");
    int st = test_wait(dd);
    is(st, 1, "the daemon stops with exit 1 on a full map");
    f = fopen(logpath, "r");
    err[0] = 0;
    if (f) {
        err[fread(err, 1, sizeof err - 1, f)] = 0;
        fclose(f);
    }
    ok(strstr(err, "MDB_MAP_FULL") != NULL && strstr(err, "raise --map-size") != NULL,
       "... saying MDB_MAP_FULL, raise --map-size");
    shmreg_id more = test_session_new(h);
    is(shmreg_session_delete(h, &more), 0, "the registry works on after the daemon stopped");
    shmreg_sync_info info;
    is(shmreg_sync_dir_info(sdir, &info), 0, "the full directory is still a sound sync directory");
    int sound;
    uint64_t n;
    is(restore_scratch(sdir, &sound, &n), 0, "it restores");
    is(n, info.sessions, "exactly the %llu sessions of its last commit", (unsigned long long)info.sessions);
    is(test_stats(h).sync_alive, 0, "stat: no live daemon");
    shmreg_close(h);
    shmreg_destroy(reg, 1);
}

/* A worker killed after its change became visible, before its version
 * and event (stopped at a crash point, which is a SIGKILL there): the
 * daemon follows events, so only the announcement the master's reap makes
 * for the dead (registry/reg.h, reg_dead_note) gets the change stored.
 * Without it the directory keeps the old SDP, and the reboot brings the
 * call back as it was before. */
static shmreg_id mid_id;
static const char MID_BEFORE[] = "v=0\r\ns=before\r\n", MID_ALONE[] = "v=0\r\ns=no master\r\n",
                  MID_AFTER[] = "v=0\r\ns=after the kill\r\n";

static void mid_change_worker(void *arg)
{
    const char *sdp = arg;
    shmreg *c;
    if (shmreg_open(reg, NULL, &c) != 0)
        _exit(2);
    shm_crash_arm("session_swap_swapped");
    shmreg_session_set_sdp(c, &mid_id, SHMREG_SDP_REMOTE, sdp, strlen(sdp));
    _exit(0); /* the point was not reached */
}

static int remote_sdp_is(shmreg *h, const char *want)
{
    shmreg_session v;
    shmreg_read_begin(h);
    int same = shmreg_session_get(h, &mid_id, &v) == 0 && v.sdp[1].len == strlen(want) &&
               memcmp(v.sdp[1].ptr, want, v.sdp[1].len) == 0;
    shmreg_read_end(h);
    return same;
}

static void killed_mid_change(void)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 1024};
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create: %s", shmreg_errmsg());
    test_rm_rf(sdir);
    pid_t d = daemon_start(reg, sdir, "--fsync", "none");
    wait_durable(h, 0);
    shmreg_str sdp[2] = {S("v=0\r\ns=local\r\n"), S(MID_BEFORE)};
    shmreg_fields f = {.str[SHMREG_FIELD_FROM_URI] = S("sip:mid@example.com"), .sdp = sdp};
    uint64_t t = test_now_ns();
    is(shmreg_session_create(h, &f, &mid_id), 0, "killed mid-change: a call is created");
    wait_durable(h, t);

    /* No master reaps: the daemon does, within a second or so. */
    uint64_t published = test_stats(h).events_published;
    is(test_wait(test_fork(mid_change_worker, (void *)MID_ALONE)), SHM_CRASH_EXIT,
       "killed mid-change, no master: the worker stopped after its swap");
    t = test_now_ns();
    double until = test_mono_s() + 10;
    while (test_stats(h).events_published == published && test_mono_s() < until)
        test_sleep_us(10000);
    is(test_stats(h).events_published, published + 1,
       "killed mid-change, no master: the daemon's own reap announced the change");
    wait_durable(h, t);
    int rrc;
    uint64_t n;
    shmreg *s = scratch_restore(sdir, &rrc, &n);
    is(rrc, 0, "killed mid-change, no master: the directory restores");
    ok(n == 1 && remote_sdp_is(s, MID_ALONE), "killed mid-change, no master: its call with the new SDP");
    scratch_drop(s);

    /* The master reaps at once (sipd, prefork): the same, without waiting. */
    published = test_stats(h).events_published;
    is(test_wait(test_fork(mid_change_worker, (void *)MID_AFTER)), SHM_CRASH_EXIT,
       "killed mid-change: a worker stopped right after swapping in a new remote SDP");
    ok(remote_sdp_is(h, MID_AFTER), "killed mid-change: the registry holds the new SDP");
    is(test_stats(h).events_published, published, "killed mid-change: and no event announced it");
    t = test_now_ns();
    is(shmreg_reap(h), 1, "killed mid-change: the master reaps the worker");
    is(test_stats(h).events_published, published + 1, "killed mid-change: which announces the change");
    wait_durable(h, t);
    reboot_and_compare(&h, d, "killed mid-change");
    ok(remote_sdp_is(h, MID_AFTER), "killed mid-change: the restored call has the new SDP");
    shmreg_close(h);
    shmreg_destroy(reg, 1);
}

int main(void)
{
    snprintf(reg, sizeof reg, "%s", test_dir("reg"));
    snprintf(sdir, sizeof sdir, "%s", test_dir("sync"));
    snprintf(logpath, sizeof logpath, "%s.log", sdir);
    stop_flag = test_shared(sizeof *stop_flag);
    test_watchdog_install();
    TEST_RUN(kill_and_restart);
    TEST_RUN(counter_sweep);
    TEST_RUN(lapped);
    TEST_RUN(durable_at_kill);
    TEST_RUN(killed_mid_change);
    TEST_RUN(refusals);
    alarm(0);
    return done_testing();
}
