/*
 * sipd.c — a prefork SIP server (a UAS over UDP) on a shared shmreg
 * registry: the master process.
 *
 *     sipd -r REGISTRY [-l ADDR:PORT] [-w WORKERS] [-R RING_MS] [-L LINGER_MS]
 *          [-T MAX_CALL_S] [-C CALLS_PER_CALLER] [-e LINES_PER_S] [-1 T1_MS]
 *          [-2 T2_MS] [-H]
 *
 * The master creates the registry if needed, makes sure the shared
 * configs exist (the "media" config the answers are built from, and the
 * "sipd" config holding the key of the To-tags), then forks the workers
 * (worker.c), which open their own handles and sockets. After that it
 * handles no SIP at all. It is the one process that
 *   - subscribes to call-state events and logs them (a few lines a second,
 *     then one summary line a second, so logging never dominates);
 *   - respawns a worker that dies, after clearing its handle slot with
 *     shmreg_reap() (a crash-looping worker is restarted at most once a
 *     second);
 *   - sweeps the registry: finished calls are deleted after a linger time
 *     (their dialogs must outlive the last retransmission of the final
 *     request), calls stuck half-set-up by a dead worker are failed, calls
 *     a dead worker answered but nobody ACKed within 64*T1 are failed and
 *     sent a BYE (the worker's own timers would have done it), and the
 *     registry's due timeouts are fired (shmreg_expire): a call past its
 *     maximum duration is ended with a BYE, and one still not over 64*T1
 *     later is failed by the registry itself.
 * Call limits come from the "sipd" config when it has them (the command
 * line's -T and -C otherwise): max_call_s, and max_calls_per_caller, the
 * live calls one From user may have; a worker admits a new call by
 * joining profile "caller" = its From user@host with that limit (one
 * atomic step across workers) and answers 486 Busy Here beyond it.
 *   - on SIGTERM or SIGINT stops the workers (SIGTERM, then SIGKILL after
 *     5 s), removes finished calls, prints the counters and closes its
 *     handle. Calls still live stay in the registry: a restarted sipd
 *     carries on with them.
 * The master's main loop sleeps in shmreg_poll(): an event, a signal or
 * a 100 ms timeout wakes it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dialog.h"
#include "shmreg.h"
#include "sipd.h"

const char *const sipd_counter_names[C_COUNT] = {
    "datagrams", "requests", "responses_in", "new_calls", "invite_retransmits",
    "in_dialog", "foreign_in_dialog", "replied_400", "dropped", "no_dialog",
    "adopted", "registry_errors", "retransmits", "no_timer", "ack_timeouts", "byes_sent",
    "cancels_481", "caller_limit",
};

#define EARLY_ORPHAN_MS 2000u     /* early call of a dead worker: failed after */
#define TERMINATING_MS 32000u     /* BYE half done by a dead worker: finished after */

static volatile sig_atomic_t stop, child_exited;
static void on_stop(int sig) { (void)sig; stop = 1; }
static void on_child(int sig) { (void)sig; child_exited = 1; }

void sipd_log(const char *fmt, ...)
{
    char buf[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    int n = snprintf(buf, sizeof buf, "%02d:%02d:%02d.%03ld sipd[%d]: ", tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2)
        n = (int)sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t wr = write(2, buf, (size_t)n);   /* one write: lines never interleave */
    (void)wr;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: sipd -r REGISTRY [-l ADDR:PORT] [-w WORKERS] [-R RING_MS]\n"
            "            [-L LINGER_MS] [-T MAX_CALL_S] [-C CALLS_PER_CALLER]\n"
            "            [-e LINES_PER_S] [-1 T1_MS] [-2 T2_MS] [-H] [-N NODE]\n"
            "  -r  registry directory (created if it does not exist)\n"
            "  -l  listen address, default 127.0.0.1:5060 ([::1]:5060 for IPv6)\n"
            "  -w  worker processes, default 4\n"
            "  -R  ring time: ms between 180 Ringing and 200 OK, default 0\n"
            "  -L  ms a finished call stays for retransmissions, default 4000\n"
            "  -T  end answered calls with a BYE after this many seconds, default\n"
            "      3600 (0: never); the \"sipd\" config's max_call_s overrides it\n"
            "  -C  live calls one From user may have, default 0 (any); beyond it:\n"
            "      486; the \"sipd\" config's max_calls_per_caller overrides it\n"
            "  -e  call-state log lines per second before summarising, default 10\n"
            "  -1  SIP timer T1 in ms (RFC 3261 17.1.1.1), default 500: final\n"
            "      responses are resent after T1, 2*T1, ... for at most 64*T1\n"
            "  -2  SIP timer T2 in ms, the longest interval between them, default 4000\n"
            "  -H  keep the kernel's per-client hash instead of spreading each\n"
            "      datagram over the workers at random\n"
            "  -N  node ID (1..65535) given to a registry this creates, for hosts that\n"
            "      mirror each other with shmreg-sync --redis (default: none)\n");
    exit(2);
}

static unsigned num_arg(const char *s, unsigned max)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || v > max) {
        fprintf(stderr, "sipd: bad number '%s' (0..%u)\n", s, max);
        exit(2);
    }
    return (unsigned)v;
}

/* "1.2.3.4:5060" or "[::1]:5060". */
static int parse_listen(const char *arg, sipd_conf *c)
{
    char host[64];
    const char *colon, *h0 = arg;
    size_t hl;
    if (arg[0] == '[') {
        const char *rb = strchr(arg, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h0 = arg + 1;
        hl = (size_t)(rb - h0);
        colon = rb + 1;
    } else {
        colon = strrchr(arg, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - arg);
    }
    if (hl == 0 || hl >= sizeof host)
        return -1;
    memcpy(host, h0, hl);
    host[hl] = 0;
    char *end;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port > 65535)
        return -1;
    memset(&c->addr, 0, sizeof c->addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&c->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&c->addr;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        c->addrlen = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        c->addrlen = sizeof *a6;
    } else {
        return -1;
    }
    snprintf(c->host, sizeof c->host, "%s", host);
    c->port = (unsigned)port;
    return 0;
}

/* With SO_REUSEPORT a second sipd on the same port would silently join the
 * first one's group and steal half its traffic. So the master first binds
 * the address without it: that fails if anyone holds the port. Port 0
 * takes a free one. */
static int probe_port(sipd_conf *c)
{
    int fd = socket(c->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&c->addr, c->addrlen) != 0) {
        fprintf(stderr, "sipd: cannot bind %s:%u: %s\n", c->host, c->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof got;
    getsockname(fd, (struct sockaddr *)&got, &gl);
    uint16_t port = got.ss_family == AF_INET ? ((struct sockaddr_in *)&got)->sin_port
                                            : ((struct sockaddr_in6 *)&got)->sin6_port;
    if (c->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&c->addr)->sin_port = port;
    else
        ((struct sockaddr_in6 *)&c->addr)->sin6_port = port;
    c->port = ntohs(port);
    close(fd);
    return 0;
}

/* ------------------------------------------------------------ configs */

/* The media config answers are built from; written with the defaults
 * when the registry has none, so that shmregctl shows what is in use. */
static int ensure_media_config(shmreg *h)
{
    shmreg_config_view *v = NULL;
    int rc = shmreg_config_open_view(h, "media", &v);
    if (rc == 0) {
        shmreg_config_media m;
        shmreg_config_media_get(v, &m);
        char list[256] = "";
        size_t n = 0;
        for (uint32_t i = 0; i < m.ncodecs && n < sizeof list - 70; i++) {
            shmreg_str c;
            if (shmreg_config_codec(v, i, &c) == 0)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%.*s", i ? "," : "",
                                      (int)(c.len > 64 ? 64 : c.len), c.ptr);
        }
        sipd_log("media config: codecs %s", n ? list : "(default)");
        shmreg_config_release(v);
        return 0;
    }
    if (rc != SHMREG_ENOENT)
        return rc;
    static const shmreg_str codecs[] = {
        { "PCMU", 4 }, { "PCMA", 4 }, { "telephone-event", 15 },
    };
    shmreg_config_doc *doc = NULL;
    if ((rc = shmreg_config_doc_new(&doc)) == 0 &&
        (rc = shmreg_config_doc_set_list(doc, "media.codecs", codecs, 3)) == 0 &&
        (rc = shmreg_config_doc_set_int(doc, "media.ptime", 20)) == 0 &&
        (rc = shmreg_config_put(h, "media", doc)) == 0)
        sipd_log("media config: none found, wrote the default (PCMU,PCMA,telephone-event)");
    shmreg_config_doc_free(doc);
    return rc;
}

/* The key of the derived To-tags (worker.c). Kept in the registry so that
 * a restarted sipd derives the same tags for calls that were ringing
 * across the restart. It is as private as the registry (0700). */
static int tag_key(shmreg *h, unsigned char key[SIPD_TAG_KEY_BYTES])
{
    shmreg_config_view *v = NULL;
    shmreg_str s;
    int rc = shmreg_config_open_view(h, "sipd", &v);
    if (rc == 0 && shmreg_config_get_str(v, "tag_key", &s) == 0 &&
        s.len == 2 * SIPD_TAG_KEY_BYTES &&
        sodium_hex2bin(key, SIPD_TAG_KEY_BYTES, s.ptr, s.len, NULL, NULL, NULL) == 0) {
        shmreg_config_release(v);
        return 0;
    }
    shmreg_config_release(v);
    if (rc != 0 && rc != SHMREG_ENOENT)
        return rc;
    char hex[2 * SIPD_TAG_KEY_BYTES + 3];
    randombytes_buf(key, SIPD_TAG_KEY_BYTES);
    hex[0] = '"';
    sodium_bin2hex(hex + 1, sizeof hex - 2, key, SIPD_TAG_KEY_BYTES);
    strcat(hex, "\"");
    return shmreg_config_set(h, "sipd", "tag_key", hex);
}

/* The call limits, from the "sipd" config when it has them (else the
 * command line's): max_calls_per_caller, the live calls one From user
 * may have (profile "caller", value its user@host: a join with that
 * limit is the admission, atomic across workers), and max_call_s, after
 * which an answered call is ended with a BYE (a NOTIFY timeout the
 * master's sweep fires). Read once, before the workers fork. */
static int call_limits(shmreg *h, sipd_conf *c)
{
    shmreg_config_view *v = NULL;
    int rc = shmreg_config_open_view(h, "sipd", &v);
    if (rc == SHMREG_ENOENT)
        return 0;
    if (rc)
        return rc;
    int64_t x;
    if (shmreg_config_get_int(v, "max_calls_per_caller", &x) == 0 && x >= 0 && x <= 1000000)
        c->max_per_caller = (unsigned)x;
    if (shmreg_config_get_int(v, "max_call_s", &x) == 0 && x >= 0 && x <= 86400 * 7)
        c->max_call_s = (unsigned)x;
    shmreg_config_release(v);
    return 0;
}

/* ------------------------------------------------------------ workers */

typedef struct worker_info {
    pid_t pid;
    uint64_t started_ms, respawn_at_ms;
} worker_info;

static sipd_conf conf;
static sipd_slot *slots;
static worker_info workers[SIPD_MAX_WORKERS];
static shmreg *h;
static shmreg_sub *sub;
static int bye_fd = -1;          /* the master's socket for the BYEs of dead workers' calls */
static unsigned respawns, fast_failures;

static int spawn(unsigned i)
{
    /* Signals stay blocked across fork until the child has its own
     * handlers: a SIGTERM in between must not be lost. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t pid = fork();
    if (pid != 0)
        sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        sipd_log("fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* The master's handle and subscription are not the child's: drop
         * them (this only frees the child's copies) and start afresh. */
        shmreg_unsubscribe(sub);
        shmreg_close(h);
        sipd_worker(&conf, &slots[i], i);
    }
    workers[i].pid = pid;
    workers[i].started_ms = mono_ms();
    workers[i].respawn_at_ms = 0;
    atomic_store(&slots[i].pid, (int32_t)pid);
    return 0;
}

static int worker_pid_alive(pid_t pid)
{
    for (unsigned i = 0; i < conf.workers; i++)
        if (workers[i].pid == pid)
            return 1;
    return 0;
}

static void describe_status(int status, char *out, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(out, cap, "killed by signal %d", WTERMSIG(status));
    else
        snprintf(out, cap, "exited with %d", WEXITSTATUS(status));
}

/* Collect dead workers; schedule their replacements. Returns how many died
 * with a non-zero status. */
static unsigned reap_workers(int respawn)
{
    unsigned bad = 0, died = 0;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (unsigned i = 0; i < conf.workers; i++) {
            if (workers[i].pid != pid)
                continue;
            char how[64];
            describe_status(status, how, sizeof how);
            int clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
            bad += !clean;
            died++;
            uint64_t now = mono_ms(), up = now - workers[i].started_ms;
            workers[i].pid = 0;
            atomic_store(&slots[i].pid, 0);
            if (!respawn) {
                if (!clean)
                    sipd_log("worker %u (pid %d) %s while stopping", i, (int)pid, how);
                break;
            }
            /* a worker that dies at once is restarted at most once a second */
            fast_failures = up < 1000 ? fast_failures + 1 : 0;
            workers[i].respawn_at_ms = up < 1000 ? workers[i].started_ms + 1000 : now;
            sipd_log("worker %u (pid %d) %s after %" PRIu64 " ms; respawning", i, (int)pid,
                     how, up);
        }
    }
    if (died) {
        /* The dead handle slots: cleared, their retired memory adopted. */
        int n = shmreg_reap(h);
        if (n > 0)
            sipd_log("reaped %d dead handle%s", n, n == 1 ? "" : "s");
    }
    return bad;
}

static void respawn_due(void)
{
    uint64_t now = mono_ms();
    for (unsigned i = 0; i < conf.workers; i++)
        if (workers[i].pid == 0 && workers[i].respawn_at_ms <= now && spawn(i) == 0) {
            respawns++;
            sipd_log("worker %u respawned as pid %d", i, (int)workers[i].pid);
        }
}

/* ------------------------------------------------------------ the sweep */

/* End the call of `sid` from state `from` (SHMREG_STATE_ANY: whatever
 * live state it is in) to `to` with `reason`, and send the BYE that says
 * so to the peer, once: its retransmissions (Timer E) are a worker's job,
 * and the call is over either way. */
static void end_call(const shmreg_id *sid, int from, int to, const char *reason, unsigned seq)
{
    char bye[4096];
    struct sockaddr_storage dst;
    socklen_t dstlen = 0;
    int moved;
    size_t n = dialog_end(h, sid, from, to, reason, conf.host, conf.port, mono_ms() << 20 ^ seq,
                          bye, sizeof bye, &dst, &dstlen, &moved);
    if (n && bye_fd >= 0)
        sendto(bye_fd, bye, n, MSG_DONTWAIT, (struct sockaddr *)&dst, dstlen);
}

/* An answered call whose initial INVITE was never ACKed (dialog.h). */
static int unacked(const shmreg_session *s)
{
    call_rec r;
    return call_rec_read(s->str[SHMREG_FIELD_APP_DATA], &r) == 0 && r.final_status == 0 &&
           r.acked_cseq < r.invite_cseq;
}

/* One pass over the sessions (at most BATCH of each kind of work).
 * `all_final`: at shutdown, finished calls go at once. Returns the number
 * of sessions still live afterwards; *deleted (may be NULL) how many went. */
static uint64_t sweep(int all_final, unsigned *deleted)
{
    enum { BATCH = 256 };
    shmreg_id del[BATCH], fail[BATCH], finish[BATCH], noack[BATCH];
    int noack_state[BATCH];
    const char *why[BATCH];
    unsigned nd = 0, nf = 0, nt = 0, na = 0;
    uint64_t now = real_ns(), live = 0, cursor = 0;
    shmreg_session s;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cursor, SHMREG_STATE_ANY, &s) == 0) {
        uint64_t age_ms = now > s.updated_ns ? (now - s.updated_ns) / 1000000u : 0;
        live++;
        if (shmreg_state_is_final(s.state)) {
            if ((all_final || age_ms >= conf.linger_ms) && nd < BATCH)
                del[nd++] = s.id;
        } else if ((s.state == SHMREG_STATE_INITIATING || s.state == SHMREG_STATE_RINGING) &&
                   !worker_pid_alive(s.owner_pid) && age_ms >= EARLY_ORPHAN_MS && nf < BATCH) {
            why[nf] = "worker died before answering";
            fail[nf++] = s.id;
        } else if ((s.state == SHMREG_STATE_ACTIVE || s.state == SHMREG_STATE_ONHOLD) &&
                   !worker_pid_alive(s.owner_pid) && age_ms >= 64u * conf.t1_ms &&
                   unacked(&s) && na < BATCH) {
            noack_state[na] = s.state;
            noack[na++] = s.id;
        } else if (s.state == SHMREG_STATE_TERMINATING && age_ms >= TERMINATING_MS && nt < BATCH) {
            finish[nt++] = s.id;
        }
    }
    shmreg_read_end(h);
    unsigned gone = 0;
    for (unsigned i = 0; i < nd; i++)
        if (shmreg_session_delete(h, &del[i]) == 0)
            gone++;
    if (deleted)
        *deleted = gone;
    live -= gone;
    for (unsigned i = 0; i < nf; i++) {
        shmreg_fields f;
        memset(&f, 0, sizeof f);
        f.str[SHMREG_FIELD_FAILURE_REASON] = (shmreg_str){ why[i], strlen(why[i]) };
        shmreg_session_update(h, &fail[i], &f, SHMREG_MASK(SHMREG_FIELD_FAILURE_REASON));
        shmreg_session_transition(h, &fail[i], SHMREG_STATE_ANY, SHMREG_STATE_FAILED, NULL);
    }
    for (unsigned i = 0; i < nt; i++)
        shmreg_session_transition(h, &finish[i], SHMREG_STATE_TERMINATING,
                                  SHMREG_STATE_TERMINATED, NULL);
    for (unsigned i = 0; i < na; i++)
        end_call(&noack[i], noack_state[i], SHMREG_STATE_FAILED,
                 "no ACK for the 2xx within 64*T1 (its worker died)", i);
    /* Calls past their maximum duration: the registry's timer wheel says
     * which (each fires in one process only, whoever sweeps), and costs
     * what is due, not a walk of the table. The BYE goes once; if the call
     * is still not final after the grace (64*T1) the registry fails it. */
    shmreg_expired due[BATCH];
    int k = shmreg_expire(h, 0, due, BATCH);
    for (int i = 0; i < k; i++)
        if (due[i].action == SHMREG_TIMEOUT_NOTIFY)
            end_call(&due[i].id, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATING,
                     "maximum call duration", (unsigned)i);
    return live;
}

/* ------------------------------------------------------------ the event log */

static unsigned log_budget;
static uint64_t quiet[SHMREG_STATE_COUNT][SHMREG_STATE_COUNT], quiet_total, missed_total;

static void log_events(const shmreg_event *ev, int n, uint64_t missed)
{
    missed_total += missed;
    for (int i = 0; i < n; i++) {
        const shmreg_event *e = &ev[i];
        if (e->type != SHMREG_EV_STATE_CHANGED)
            continue;
        if (log_budget) {
            char id[SHMREG_ID_TEXT_LEN + 1];
            shmreg_id_format(&e->session, id);
            sipd_log("call %s %s -> %s", id, shmreg_state_name(e->old_state),
                     shmreg_state_name(e->new_state));
            log_budget--;
        } else if (e->old_state > 0 && e->old_state < SHMREG_STATE_COUNT && e->new_state > 0 &&
                   e->new_state < SHMREG_STATE_COUNT) {
            quiet[e->old_state][e->new_state]++;
            quiet_total++;
        }
    }
}

/* Once a second: the lines not shown, as counts per transition. */
static void log_summary(void)
{
    if (quiet_total || missed_total) {
        char buf[768];
        size_t n = (size_t)snprintf(buf, sizeof buf, "%" PRIu64 " more state changes:",
                                    quiet_total);
        for (int a = 1; a < SHMREG_STATE_COUNT; a++)
            for (int b = 1; b < SHMREG_STATE_COUNT; b++)
                if (quiet[a][b] && n < sizeof buf - 64)
                    n += (size_t)snprintf(buf + n, sizeof buf - n, " %s->%s %" PRIu64,
                                          shmreg_state_name(a), shmreg_state_name(b),
                                          quiet[a][b]);
        if (missed_total && n < sizeof buf - 64)
            snprintf(buf + n, sizeof buf - n, " (%" PRIu64 " events missed)", missed_total);
        sipd_log("%s", buf);
    }
    memset(quiet, 0, sizeof quiet);
    quiet_total = missed_total = 0;
    log_budget = conf.log_rate;
}

static void drain_events(void)
{
    shmreg_event ev[64];
    uint64_t missed = 0;
    int n;
    while ((n = shmreg_poll(sub, ev, 64, 0, &missed)) > 0 || missed) {
        log_events(ev, n > 0 ? n : 0, missed);
        missed = 0;
        if (n <= 0)
            break;
    }
}

/* ------------------------------------------------------------ stats */

static void print_stats(void)
{
    uint64_t tot[C_COUNT] = { 0 };
    for (unsigned i = 0; i < conf.workers; i++) {
        char buf[512];
        size_t n = (size_t)snprintf(buf, sizeof buf, "worker %u:", i);
        for (int c = 0; c < C_COUNT; c++) {
            uint64_t v = atomic_load(&slots[i].c[c]);
            tot[c] += v;
            if (c == C_REQUESTS || c == C_NEW_CALLS || c == C_IN_DIALOG || c == C_FOREIGN)
                n += (size_t)snprintf(buf + n, sizeof buf - n, " %s=%" PRIu64,
                                      sipd_counter_names[c], v);
        }
        sipd_log("%s", buf);
    }
    char buf[768];
    size_t n = (size_t)snprintf(buf, sizeof buf, "stats:");
    for (int c = 0; c < C_COUNT; c++)
        n += (size_t)snprintf(buf + n, sizeof buf - n, " %s=%" PRIu64, sipd_counter_names[c],
                              tot[c]);
    snprintf(buf + n, sizeof buf - n, " respawns=%u", respawns);
    sipd_log("%s", buf);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    conf.workers = 4;
    conf.linger_ms = 4000;
    conf.max_call_s = 3600;
    conf.log_rate = 10;
    conf.spread = 1;
    conf.t1_ms = 500;
    conf.t2_ms = 4000;
    const char *listen = "127.0.0.1:5060";
    int opt;
    shmreg_options o = { .flags = SHMREG_CREATE };
    while ((opt = getopt(argc, argv, "r:l:w:R:L:T:C:e:1:2:HN:h")) != -1) {
        switch (opt) {
        case 'r': conf.registry = optarg; break;
        case 'l': listen = optarg; break;
        case 'w': conf.workers = num_arg(optarg, SIPD_MAX_WORKERS); break;
        case 'R': conf.ring_ms = num_arg(optarg, 600000); break;
        case 'L': conf.linger_ms = num_arg(optarg, 3600000); break;
        case 'T': conf.max_call_s = num_arg(optarg, 86400 * 7); break;
        case 'C': conf.max_per_caller = num_arg(optarg, 1000000); break;
        case 'e': conf.log_rate = num_arg(optarg, 100000); break;
        case '1': conf.t1_ms = num_arg(optarg, 60000); break;
        case '2': conf.t2_ms = num_arg(optarg, 600000); break;
        case 'H': conf.spread = 0; break;
        case 'N': o.node_id = num_arg(optarg, SHMREG_NODE_MAX); break;
        default: usage();
        }
    }
    if (!conf.registry || optind != argc || conf.workers == 0 || conf.t1_ms == 0 ||
        conf.t2_ms < conf.t1_ms)
        usage();
    if (parse_listen(listen, &conf) != 0) {
        fprintf(stderr, "sipd: bad listen address '%s' (ADDR:PORT or [ADDR6]:PORT)\n", listen);
        return 2;
    }
    if (sodium_init() < 0 || probe_port(&conf) != 0)
        return 1;

    int created = 0;
    int rc = shmreg_open(conf.registry, NULL, &h);
    if (rc == SHMREG_ENOENT) {
        rc = shmreg_open(conf.registry, &o, &h);
        created = rc == 0;
    }
    if (rc != 0) {
        fprintf(stderr, "sipd: registry %s: %s (%s)\n", conf.registry, shmreg_strerror(rc),
                shmreg_errmsg());
        return 1;
    }
    if ((rc = ensure_media_config(h)) != 0 || (rc = tag_key(h, conf.tag_key)) != 0 ||
        (rc = call_limits(h, &conf)) != 0) {
        fprintf(stderr, "sipd: configs in %s: %s (%s)\n", conf.registry, shmreg_strerror(rc),
                shmreg_errmsg());
        shmreg_close(h);
        return 1;
    }
    /* LMDB's rule: no environment open across fork(). The configs are
     * done, so the master closes its handle (and with it its LMDB
     * environment and read transactions) and attaches again, config-free:
     * the workers inherit no LMDB state at all. */
    shmreg_close(h);
    h = NULL;
    if ((rc = shmreg_open(conf.registry, NULL, &h)) != 0) {
        fprintf(stderr, "sipd: registry %s: %s (%s)\n", conf.registry, shmreg_strerror(rc),
                shmreg_errmsg());
        return 1;
    }
    /* Subscribe before the first fork: no state change goes unseen. */
    if ((rc = shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED), NULL, &sub)) != 0) {
        fprintf(stderr, "sipd: subscribe: %s\n", shmreg_strerror(rc));
        shmreg_close(h);
        return 1;
    }
    slots = mmap(NULL, sizeof(sipd_slot) * conf.workers, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) {
        perror("sipd: mmap");
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;    /* no SA_RESTART: shmreg_poll() returns early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bye_fd = socket(conf.addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sipd_log("registry %s (%s); listening on %s%s%s:%u, %u workers, datagrams spread %s, "
             "ring %u ms, linger %u ms, T1 %u ms, T2 %u ms, max call %u s, calls per caller %u",
             conf.registry, created ? "created" : "attached",
             strchr(conf.host, ':') ? "[" : "", conf.host, strchr(conf.host, ':') ? "]" : "",
             conf.port, conf.workers, conf.spread ? "at random" : "by client hash",
             conf.ring_ms, conf.linger_ms, conf.t1_ms, conf.t2_ms, conf.max_call_s,
             conf.max_per_caller);
    log_budget = conf.log_rate;
    for (unsigned i = 0; i < conf.workers; i++)
        spawn(i);

    uint64_t next_sweep = 0, next_summary = mono_ms() + 1000;
    int exit_code = 0;
    while (!stop) {
        shmreg_event ev[64];
        uint64_t missed = 0;
        int n = shmreg_poll(sub, ev, 64, 100 * 1000000LL, &missed);
        if (n > 0 || missed)
            log_events(ev, n > 0 ? n : 0, missed);
        if (stop)
            break;
        if (child_exited) {
            child_exited = 0;
            reap_workers(1);
        }
        if (fast_failures >= 5 * conf.workers) {
            sipd_log("workers keep failing at start; giving up");
            exit_code = 1;
            break;
        }
        respawn_due();
        uint64_t now = mono_ms();
        if (now >= next_sweep) {
            sweep(0, NULL);
            next_sweep = now + 250;
        }
        if (now >= next_summary) {
            log_summary();
            next_summary = now + 1000;
        }
    }

    sipd_log("stopping");
    for (unsigned i = 0; i < conf.workers; i++)
        if (workers[i].pid > 0)
            kill(workers[i].pid, SIGTERM);
    uint64_t deadline = mono_ms() + 5000;
    for (;;) {
        if (reap_workers(0))
            exit_code = 1;
        unsigned left = 0;
        for (unsigned i = 0; i < conf.workers; i++)
            left += workers[i].pid > 0;
        if (!left)
            break;
        if (mono_ms() >= deadline) {
            sipd_log("%u worker%s did not stop in 5 s: SIGKILL", left, left == 1 ? "" : "s");
            for (unsigned i = 0; i < conf.workers; i++)
                if (workers[i].pid > 0)
                    kill(workers[i].pid, SIGKILL);
            deadline = UINT64_MAX;
            exit_code = 1;
        }
        struct timespec ts = { 0, 10 * 1000000L };
        nanosleep(&ts, NULL);
    }
    drain_events();
    uint64_t live;
    unsigned gone;
    do
        live = sweep(1, &gone);
    while (gone > 0);
    drain_events();
    log_summary();
    print_stats();
    if (live)
        sipd_log("%" PRIu64 " call%s still live left in the registry", live,
                 live == 1 ? "" : "s");
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    munmap(slots, sizeof(sipd_slot) * conf.workers);
    if (bye_fd >= 0)
        close(bye_fd);
    sipd_log("stopped");
    return exit_code;
}
