/*
 * shmreg-bench-mirror.c — `shmreg-bench --mirror`: what mirroring two
 * registries through Redis costs and how fast it is, with the real
 * shmreg-sync daemon (found next to the bench binary) in --redis mode and
 * a real redis-server the bench starts on a free port of 127.0.0.1 (in a
 * temporary directory, --save '' --appendonly no, killed at the end).
 * Two registries on this machine play two hosts: A (node 1) and B
 * (node 2), each with its own daemon (--interval 10 --lease-ms 2000):
 *
 *   lag       a writer process on A changes sessions (state flips and SDP
 *             replaces in turn, round robin over a pool) at an offered
 *             rate of 1k, 10k and 50k changes/s for a few seconds each;
 *             it notes the version each change produced and when
 *             (CLOCK_REALTIME). A reader on B takes every
 *             SHMREG_EV_SESSION_IMPORTED event and reads the version B now
 *             holds: for every change of that session up to that version
 *             not counted yet, the event's time_ns minus the change's time
 *             is one lag sample (same machine, same clock): each change
 *             is a sample, also one the push coalesced into a later
 *             version. (Were the session imported again between the event
 *             and the read, its newest changes would get the earlier
 *             event's time: the reader's own delay bounds that error.)
 *             Reported: achieved rate, the share of changes seen on B and
 *             of those seen as their own version, lag p50/p99/max, how
 *             long B took to catch up once the writer stopped, the CPU
 *             the daemons and Redis used.
 *   takeover  A holds N Active sessions with a dialog each, B a copy of
 *             each (waited for: every version equal); A's daemon is
 *             SIGKILLed; from the kill to the last
 *             SHMREG_EV_SESSION_ADOPTED on B, then checked: B owns all N
 *             (owner_node 2). Most of the first part is A's lease running
 *             out (2000 ms after its last renewal, renewed every 500 ms):
 *             its PTTL in Redis just before the kill is reported too.
 *             At 10k and 100k sessions.
 *   worker    the writer's own rate for transitions and SDP replaces on
 *             A, A's daemon off vs on (off/on interleaved, best of 3):
 *             the ratio is what running the mirror costs a worker. B's
 *             daemon does not run then: on real hosts it runs elsewhere.
 *
 * Figures are ratios, rates and times of one run on this machine; nothing
 * is asserted. Why separate from --sync: a second host and a network
 * store, not a disk next to the workers.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

#define POOL 20000u          /* sessions the lag writer changes in turn */
#define LAG_SECS 3.0         /* per offered rate */
#define COST_REPS 3
#define TAKEOVER_RING 262144u /* B's event ring: an adoption publishes 2 events a session */

/* What the forked writer and reader share with the parent. */
typedef struct mir_shared {
    _Atomic uint64_t ops;    /* changes made (writers) */
    _Atomic int stop;        /* writers */
    _Atomic int rstop;       /* the lag reader */
    _Atomic int ready;       /* the lag reader has subscribed */
    _Atomic uint64_t fails;  /* changes refused: printed */
    uint64_t rate;           /* the paced writer's changes/s */
    uint64_t k;              /* the paced writer's position, kept across rates */
    /* the lag reader's figures */
    uint64_t hist[HIST_BUCKETS];
    uint64_t matched, exact, missed, max_ns;
} mir_shared;

static char syncbin[1100], url[64], tmpdir[600];
static int rport;
static pid_t redis_pid, dpid[2];
static int keep_tmp;
/* The paced writer's recent changes per pool session, CHG_RING of them:
 * the version each made and when (realtime ns); chg_n: changes made.
 * Shared: written by the writer, read by the lag reader on B. */
#define CHG_RING 16u
typedef struct chg {
    _Atomic uint64_t ver, ns;
} chg;
static chg (*chg_log)[CHG_RING];
static _Atomic uint64_t *chg_n;

static uint64_t mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The clock of shmreg_event.time_ns. */
static uint64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void sleep_ms(unsigned ms) { sleep_ns((uint64_t)ms * 1000000ull); }

static const char SDP_X[] = "v=0\r\no=- 7 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
                            "m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
static const char SDP_Y[] = "v=0\r\no=- 7 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
                            "m=audio 30002 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=inactive\r\n";

/* ------------------------------------------------------------ redis-server */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &al) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* 1 when 127.0.0.1:port answers PING with +PONG. */
static int ping(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok = 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0)
        return 0;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16] = {0};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, "PING\r\n", 6) == 6 &&
        read(fd, buf, sizeof buf - 1) >= 5)
        ok = strncmp(buf, "+PONG", 5) == 0;
    close(fd);
    return ok;
}

/* An inline command with an integer reply (":N"); -1 on failure. */
static long long redis_int(const char *cmd)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)rport),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    long long v = -1;
    if (fd < 0)
        return -1;
    struct timeval tv = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[64] = {0};
    size_t len = strlen(cmd);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0 && write(fd, cmd, len) == (ssize_t)len &&
        write(fd, "\r\n", 2) == 2 && read(fd, buf, sizeof buf - 1) >= 3 && buf[0] == ':')
        v = strtoll(buf + 1, NULL, 10);
    close(fd);
    return v;
}

static void stop_pid(pid_t *pid, int sig)
{
    if (*pid <= 0)
        return;
    kill(*pid, sig);
    waitpid(*pid, NULL, 0);
    *pid = 0;
}

/* A fresh, empty redis-server: every part starts with one, so what one
 * left (adopted nodes, streams) never meets the next. 0 or -1. */
static int rs_start(void)
{
    for (int tries = 0; tries < 5; tries++) {
        rport = free_port();
        if (rport <= 0)
            return -1;
        char port[16], log[700];
        snprintf(port, sizeof port, "%d", rport);
        snprintf(log, sizeof log, "%s/redis-%d.log", tmpdir, rport);
        pid_t pid = fork();
        if (pid == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            int nul = open("/dev/null", O_RDWR);
            if (nul >= 0) {
                dup2(nul, 0);
                dup2(nul, 1);
            }
            execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--dir", tmpdir,
                   "--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", log, (char *)NULL);
            _exit(127);
        }
        if (pid < 0)
            return -1;
        redis_pid = pid;
        for (uint64_t t0 = mono(); mono() - t0 < 10000000000ull;) {
            if (waitpid(pid, NULL, WNOHANG) == pid) { /* port taken meanwhile, or no redis-server */
                redis_pid = 0;
                break;
            }
            if (ping(rport)) {
                snprintf(url, sizeof url, "redis://127.0.0.1:%d", rport);
                return 0;
            }
            sleep_ms(10);
        }
        stop_pid(&redis_pid, SIGKILL);
    }
    return -1;
}

/* ------------------------------------------------------------ daemons and registries */

static pid_t daemon_start(const char *reg, const char *log)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execl(syncbin, "shmreg-sync", "-r", reg, "--redis", url, "--interval", "10", "--lease-ms", "2000",
              (char *)NULL);
        _exit(127);
    }
    return pid;
}

static void stop_all(void)
{
    stop_pid(&dpid[0], SIGKILL);
    stop_pid(&dpid[1], SIGKILL);
    stop_pid(&redis_pid, SIGTERM);
}

static shmreg *make_reg(const char *path, uint32_t node, uint64_t n, uint32_t ring)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = (uint32_t)(n + 1024),
                        .heap_bytes = n * 4096 + (64ull << 20), .node_id = node, .event_records = ring};
    if (shmreg_open(path, &o, &h) != 0) {
        fprintf(stderr, "shmreg-bench: %s: %s\n", path, shmreg_errmsg());
        return NULL;
    }
    return h;
}

/* Sessions [0, n) on A: created, both SDPs, a dialog, Active. */
static int populate(shmreg *h, uint64_t n, shmreg_id *ids)
{
    for (uint64_t i = 0; i < n; i++) {
        shmreg_fields f = {0};
        char cid[48];
        int l = snprintf(cid, sizeof cid, "bench-mirror-%llu", (unsigned long long)i);
        f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){cid, (size_t)l};
        f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){"sip:alice@example.com", 21};
        f.str[SHMREG_FIELD_TO_URI] = (shmreg_str){"sip:bob@example.com", 19};
        if (shmreg_session_create(h, &f, &ids[i]) || shmreg_session_set_sdp(h, &ids[i], 0, SDP_X, sizeof SDP_X - 1) ||
            shmreg_session_set_sdp(h, &ids[i], 1, SDP_Y, sizeof SDP_Y - 1) ||
            shmreg_dialog_bind(h, (shmreg_str){cid, (size_t)l}, (shmreg_str){"lt", 2}, (shmreg_str){"rt", 2},
                               &ids[i]) ||
            shmreg_session_transition(h, &ids[i], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL)) {
            fprintf(stderr, "shmreg-bench: populating: %s\n", shmreg_errmsg());
            return -1;
        }
    }
    return 0;
}

/* Wait until B holds a copy of each of A's sessions ids[0..n) at A's
 * version. 0, or -1 after max_ms. */
static int wait_mirrored(shmreg *a, shmreg *b, const shmreg_id *ids, uint64_t n, unsigned max_ms)
{
    for (uint64_t t0 = mono(); mono() - t0 < (uint64_t)max_ms * 1000000ull; sleep_ms(50)) {
        shmreg_stats st;
        if (shmreg_stat(b, &st) != 0 || st.foreign_sessions < n)
            continue;
        uint64_t same = 0;
        shmreg_read_begin(a);
        shmreg_read_begin(b);
        for (uint64_t i = 0; i < n; i++) {
            shmreg_session sa, sb;
            if (shmreg_session_get(a, &ids[i], &sa) || shmreg_session_get(b, &ids[i], &sb) ||
                sa.version != sb.version)
                break;
            same++;
        }
        shmreg_read_end(b);
        shmreg_read_end(a);
        if (same == n)
            return 0;
    }
    return -1;
}

/* Wait until A's daemon (started at realtime `since`) has reported
 * pushing everything A published so far. */
static int wait_pushed(shmreg *a, uint64_t since, unsigned max_ms)
{
    shmreg_stats st;
    shmreg_stat(a, &st);
    for (uint64_t t0 = mono(); mono() - t0 < (uint64_t)max_ms * 1000000ull; sleep_ms(20)) {
        shmreg_mirror_status ms;
        if (shmreg_mirror_get(a, &ms) == 0 && ms.state == SHMREG_MIRROR_UP && ms.backlog == 0 &&
            ms.pushed_seq >= st.events_published && ms.reported_ns > since)
            return 0;
    }
    return -1;
}

/* ------------------------------------------------------------ writers and the lag reader */

/* Change k of the round robin over n sessions: per session, in turn,
 * Active -> OnHold, remote SDP Y -> X, OnHold -> Active, SDP X -> Y, so
 * every change changes something. */
static int change(shmreg *h, const shmreg_id *ids, uint64_t n, uint64_t k)
{
    const shmreg_id *id = &ids[k % n];
    switch ((k / n) % 4) {
    case 0: return shmreg_session_transition(h, id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL);
    case 1: return shmreg_session_set_sdp(h, id, 1, SDP_X, sizeof SDP_X - 1);
    case 2: return shmreg_session_transition(h, id, SHMREG_STATE_ONHOLD, SHMREG_STATE_ACTIVE, NULL);
    default: return shmreg_session_set_sdp(h, id, 1, SDP_Y, sizeof SDP_Y - 1);
    }
}

/* The lag writer: sh->rate changes a second, each noted (version, time). */
static __attribute__((noreturn)) void paced_writer(const char *path, const shmreg_id *ids, mir_shared *sh)
{
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    uint64_t k = sh->k, done = 0, fails = 0, t0 = mono();
    while (!atomic_load(&sh->stop)) {
        uint64_t due = (uint64_t)((double)sh->rate * (double)(mono() - t0) / 1e9);
        for (; done < due && !atomic_load(&sh->stop); done++, k++) {
            uint64_t i = k % POOL;
            if (change(h, ids, POOL, k) != 0) {
                fails++;
                continue;
            }
            uint64_t t = real_ns();
            shmreg_session s;
            shmreg_read_begin(h);
            int rc = shmreg_session_get(h, &ids[i], &s);
            shmreg_read_end(h);
            if (rc == 0) {
                chg *c = &chg_log[i][atomic_load_explicit(&chg_n[i], memory_order_relaxed) % CHG_RING];
                atomic_store_explicit(&c->ver, 0, memory_order_relaxed);
                atomic_thread_fence(memory_order_release);
                atomic_store_explicit(&c->ns, t, memory_order_relaxed);
                atomic_store_explicit(&c->ver, s.version, memory_order_release);
                atomic_fetch_add_explicit(&chg_n[i], 1, memory_order_release);
            }
            atomic_store_explicit(&sh->ops, done + 1, memory_order_relaxed);
        }
        sleep_ns(20000);
    }
    sh->k = k;
    atomic_fetch_add(&sh->fails, fails);
    shmreg_close(h);
    _exit(0);
}

/* Index of a pool session from its Call-ID "bench-mirror-N". */
static uint64_t index_of(shmreg_str cid)
{
    static const char pre[] = "bench-mirror-";
    if (cid.len <= sizeof pre - 1 || memcmp(cid.ptr, pre, sizeof pre - 1) != 0)
        return UINT64_MAX;
    uint64_t v = 0;
    for (size_t j = sizeof pre - 1; j < cid.len; j++) {
        if (cid.ptr[j] < '0' || cid.ptr[j] > '9')
            return UINT64_MAX;
        v = v * 10 + (uint64_t)(cid.ptr[j] - '0');
    }
    return v;
}

/* On B: an import of version v of a session makes every change of A's
 * writer to it with a version <= v, not yet seen, visible on B: one lag
 * sample each (the push coalesces, so one import may carry several).
 * exact: changes whose own version was the one imported. */
static __attribute__((noreturn)) void lag_reader(const char *path, mir_shared *sh)
{
    shmreg *h;
    shmreg_sub *sub;
    if (shmreg_open(path, NULL, &h) || shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_SESSION_IMPORTED), NULL, &sub))
        _exit(2);
    static uint64_t seen[POOL]; /* the highest version accounted for */
    atomic_store(&sh->ready, 1);
    shmreg_event ev[256];
    while (!atomic_load(&sh->rstop)) {
        uint64_t missed = 0;
        int n = shmreg_poll(sub, ev, 256, 1000000, &missed);
        sh->missed += missed;
        for (int e = 0; e < n; e++) {
            shmreg_session s;
            uint64_t i = UINT64_MAX, vb = 0;
            shmreg_read_begin(h);
            if (shmreg_session_get(h, &ev[e].session, &s) == 0) {
                i = index_of(s.str[SHMREG_FIELD_CALL_ID]);
                vb = s.version;
            }
            shmreg_read_end(h);
            if (i >= POOL || vb <= seen[i])
                continue;
            for (unsigned j = 0; j < CHG_RING; j++) {
                chg *c = &chg_log[i][j];
                uint64_t v1 = atomic_load_explicit(&c->ver, memory_order_acquire);
                uint64_t t = atomic_load_explicit(&c->ns, memory_order_relaxed);
                atomic_thread_fence(memory_order_acquire);
                uint64_t v2 = atomic_load_explicit(&c->ver, memory_order_relaxed);
                /* being rewritten, not yet imported, or accounted for */
                if (v1 == 0 || v1 != v2 || v1 > vb || v1 <= seen[i])
                    continue;
                uint64_t lag = ev[e].time_ns > t ? ev[e].time_ns - t : 0;
                hist_add(sh->hist, lag);
                sh->matched++;
                sh->exact += v1 == vb;
                if (lag > sh->max_ns)
                    sh->max_ns = lag;
            }
            seen[i] = vb;
        }
    }
    shmreg_unsubscribe(sub);
    shmreg_close(h);
    _exit(0);
}

/* Flat out: mode 0 transitions (Active <-> OnHold), 1 SDP replaces. */
static __attribute__((noreturn)) void flat_writer(const char *path, const shmreg_id *ids, uint64_t n, int mode,
                                                  mir_shared *sh)
{
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    uint64_t k = 0, fails = 0;
    while (!atomic_load(&sh->stop)) {
        for (int b = 0; b < 256; b++, k++) {
            const shmreg_id *id = &ids[k % n];
            int odd = (int)((k / n) & 1);
            int rc;
            if (mode == 0) {
                int old = 0;
                rc = shmreg_session_transition(h, id, SHMREG_STATE_ANY, odd ? SHMREG_STATE_ACTIVE : SHMREG_STATE_ONHOLD,
                                               &old);
                if (rc == SHMREG_ESTATE) { /* an earlier run left it the other way */
                    int to = old == SHMREG_STATE_ONHOLD ? SHMREG_STATE_ACTIVE : SHMREG_STATE_ONHOLD;
                    rc = shmreg_session_transition(h, id, old, to, NULL);
                }
            } else {
                rc = odd ? shmreg_session_set_sdp(h, id, 1, SDP_X, sizeof SDP_X - 1)
                         : shmreg_session_set_sdp(h, id, 1, SDP_Y, sizeof SDP_Y - 1);
            }
            fails += rc != 0;
        }
        atomic_fetch_add(&sh->ops, 256);
    }
    atomic_fetch_add(&sh->fails, fails);
    shmreg_close(h);
    _exit(0);
}

static double flat_rate(const char *path, const shmreg_id *ids, uint64_t n, int mode, mir_shared *sh)
{
    atomic_store(&sh->ops, 0);
    atomic_store(&sh->stop, 0);
    pid_t w = fork();
    if (w == 0)
        flat_writer(path, ids, n, mode, sh);
    while (atomic_load(&sh->ops) == 0)
        sleep_ms(1);
    uint64_t t0 = mono(), o0 = atomic_load(&sh->ops);
    sleep_ms(1000);
    uint64_t o1 = atomic_load(&sh->ops), t1 = mono();
    atomic_store(&sh->stop, 1);
    waitpid(w, NULL, 0);
    return (double)(o1 - o0) / ((double)(t1 - t0) / 1e9);
}

/* ------------------------------------------------------------ the three parts */

enum { NRATES = 3, NTAKE = 2 };
static const uint64_t RATES[NRATES] = {1000, 10000, 50000};
static const uint64_t TAKE_N[NTAKE] = {10000, 100000};

typedef struct lag_row {
    double achieved, seen, exact, daemon_cpus, redis_cpus, catchup_ms;
    uint64_t changes, matched, p50, p99, max, missed;
    int ok;
} lag_row;

typedef struct take_row {
    double copy_s, lease_ms, first_ms, last_ms, owned_ms;
    uint64_t adopted, owned, missed;
    int ok;
} take_row;

static int part_lag(const char *scratch, mir_shared *sh, lag_row *row)
{
    char ra[600], rb[600], la[700], lb[700];
    snprintf(ra, sizeof ra, "%s/mirror-lag-a", scratch);
    snprintf(rb, sizeof rb, "%s/mirror-lag-b", scratch);
    snprintf(la, sizeof la, "%s/lag-a.log", tmpdir);
    snprintf(lb, sizeof lb, "%s/lag-b.log", tmpdir);
    shmreg *a = make_reg(ra, 1, POOL, 0), *b = make_reg(rb, 2, POOL, 0);
    shmreg_id *ids = mmap(NULL, POOL * sizeof *ids, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!a || !b || ids == MAP_FAILED || populate(a, POOL, ids))
        return -1;
    dpid[0] = daemon_start(ra, la);
    dpid[1] = daemon_start(rb, lb);
    if (wait_mirrored(a, b, ids, POOL, 60000)) {
        fprintf(stderr, "shmreg-bench: mirror: B never held A's %u sessions (see %s, %s)\n", POOL, la, lb);
        return -1;
    }
    sh->k = 0;
    for (int r = 0; r < NRATES; r++) {
        fprintf(stderr, "shmreg-bench: mirror: lag at %llu changes/s\n", (unsigned long long)RATES[r]);
        memset(sh->hist, 0, sizeof sh->hist);
        sh->matched = sh->exact = sh->missed = sh->max_ns = 0;
        /* B holds every change made so far: none of them is this rate's */
        memset(chg_log, 0, POOL * sizeof *chg_log);
        atomic_store(&sh->ops, 0);
        atomic_store(&sh->stop, 0);
        atomic_store(&sh->rstop, 0);
        atomic_store(&sh->ready, 0);
        sh->rate = RATES[r];
        pid_t rd = fork();
        if (rd == 0)
            lag_reader(rb, sh);
        while (!atomic_load(&sh->ready))
            sleep_ms(1);
        double c0 = proc_cpu_seconds(dpid[0]) + proc_cpu_seconds(dpid[1]), r0 = proc_cpu_seconds(redis_pid);
        uint64_t t0 = mono();
        pid_t w = fork();
        if (w == 0)
            paced_writer(ra, ids, sh);
        sleep_ns((uint64_t)(LAG_SECS * 1e9));
        /* the writer stops: what it made in the window is the rate */
        uint64_t ops = atomic_load(&sh->ops), t1 = mono();
        double c1 = proc_cpu_seconds(dpid[0]) + proc_cpu_seconds(dpid[1]), r1 = proc_cpu_seconds(redis_pid);
        atomic_store(&sh->stop, 1);
        waitpid(w, NULL, 0);
        ops = atomic_load(&sh->ops) > ops ? atomic_load(&sh->ops) : ops;
        /* the reader keeps going until B holds every last version */
        uint64_t s0 = mono();
        int caught = wait_mirrored(a, b, ids, POOL, 30000) == 0;
        double catchup_ms = (double)(mono() - s0) / 1e6;
        sleep_ms(50);
        atomic_store(&sh->rstop, 1);
        waitpid(rd, NULL, 0);
        lag_row *L = &row[r];
        L->changes = ops;
        L->achieved = (double)ops / ((double)(t1 - t0) / 1e9);
        L->matched = sh->matched;
        L->seen = ops ? (double)sh->matched / (double)ops : 0;
        L->exact = ops ? (double)sh->exact / (double)ops : 0;
        L->catchup_ms = catchup_ms;
        L->redis_cpus = (r1 - r0) / ((double)(t1 - t0) / 1e9);
        L->p50 = hist_pct(sh->hist, 0.50);
        L->p99 = hist_pct(sh->hist, 0.99);
        L->max = sh->max_ns;
        L->missed = sh->missed;
        L->daemon_cpus = (c1 - c0) / ((double)(t1 - t0) / 1e9);
        L->ok = caught && sh->matched > 0;
    }
    stop_pid(&dpid[0], SIGTERM);
    stop_pid(&dpid[1], SIGTERM);
    shmreg_close(a);
    shmreg_close(b);
    shmreg_destroy(ra, 1);
    shmreg_destroy(rb, 1);
    munmap(ids, POOL * sizeof *ids);
    return 0;
}

static int part_takeover(const char *scratch, uint64_t n, take_row *T)
{
    char ra[600], rb[600], la[700], lb[700];
    snprintf(ra, sizeof ra, "%s/mirror-take-a-%llu", scratch, (unsigned long long)n);
    snprintf(rb, sizeof rb, "%s/mirror-take-b-%llu", scratch, (unsigned long long)n);
    snprintf(la, sizeof la, "%s/take-a-%llu.log", tmpdir, (unsigned long long)n);
    snprintf(lb, sizeof lb, "%s/take-b-%llu.log", tmpdir, (unsigned long long)n);
    shmreg *a = make_reg(ra, 1, n, 0), *b = make_reg(rb, 2, n, TAKEOVER_RING);
    shmreg_id *ids = malloc(n * sizeof *ids);
    if (!a || !b || !ids || populate(a, n, ids))
        return -1;
    uint64_t c0 = mono();
    dpid[0] = daemon_start(ra, la);
    dpid[1] = daemon_start(rb, lb);
    if (wait_mirrored(a, b, ids, n, 120000)) {
        fprintf(stderr, "shmreg-bench: mirror: B never held A's %llu sessions (see %s, %s)\n",
                (unsigned long long)n, la, lb);
        return -1;
    }
    T->copy_s = (double)(mono() - c0) / 1e9;
    shmreg_sub *sub;
    if (shmreg_subscribe(b, SHMREG_EV_MASK(SHMREG_EV_SESSION_ADOPTED), NULL, &sub))
        return -1;
    sleep_ms(300); /* not right after a renewal or a push */
    /* what is left of A's lease when its daemon dies: when it runs out */
    uint64_t q_ns = real_ns();
    long long pttl = redis_int("PTTL {shmreg.1}:lease");
    uint64_t kill_ns = real_ns(), kill_mono = mono(), first = 0, last = 0;
    stop_pid(&dpid[0], SIGKILL);
    T->lease_ms = pttl >= 0 ? (double)pttl - (double)(kill_ns - q_ns) / 1e6 : -1;
    shmreg_event ev[256];
    while (T->adopted < n && mono() - kill_mono < 90000000000ull) {
        uint64_t missed = 0;
        int got = shmreg_poll(sub, ev, 256, 10000000, &missed);
        T->missed += missed;
        for (int e = 0; e < got; e++) {
            if (!first)
                first = ev[e].time_ns;
            last = ev[e].time_ns;
            T->adopted++;
        }
    }
    /* the check: B owns every one of them */
    for (uint64_t t = mono(); mono() - t < 30000000000ull; sleep_ms(20)) {
        uint64_t owned = 0;
        shmreg_read_begin(b);
        for (uint64_t i = 0; i < n; i++) {
            shmreg_session s;
            owned += shmreg_session_get(b, &ids[i], &s) == 0 && s.owner_node == 2;
        }
        shmreg_read_end(b);
        T->owned = owned;
        if (owned == n)
            break;
    }
    T->owned_ms = (double)(real_ns() - kill_ns) / 1e6;
    T->first_ms = first ? (double)(first - kill_ns) / 1e6 : 0;
    T->last_ms = last ? (double)(last - kill_ns) / 1e6 : 0;
    T->ok = T->owned == n;
    shmreg_unsubscribe(sub);
    stop_pid(&dpid[1], SIGTERM);
    shmreg_close(a);
    shmreg_close(b);
    shmreg_destroy(ra, 1);
    shmreg_destroy(rb, 1);
    free(ids);
    return 0;
}

static int part_cost(const char *scratch, mir_shared *sh, double cost_tr[2], double cost_sdp[2], double *on_cpus)
{
    enum { N = 10000 };
    char ra[600], la[700];
    snprintf(ra, sizeof ra, "%s/mirror-cost-a", scratch);
    snprintf(la, sizeof la, "%s/cost-a.log", tmpdir);
    shmreg *a = make_reg(ra, 1, N, 0);
    shmreg_id *ids = malloc(N * sizeof *ids);
    if (!a || !ids || populate(a, N, ids))
        return -1;
    dpid[0] = daemon_start(ra, la);
    if (wait_pushed(a, real_ns(), 60000)) {
        fprintf(stderr, "shmreg-bench: mirror: A's daemon did not push (see %s)\n", la);
        return -1;
    }
    /* off and on interleaved, so a change in the machine's other load
     * hits both; the best of each. Off is a stopped daemon (SIGTERM),
     * not a SIGSTOPped one, which could hold a read section open. */
    for (int r = 0; r < COST_REPS; r++)
        for (int on = 0; on < 2; on++) {
            if (on) {
                uint64_t since = real_ns();
                dpid[0] = daemon_start(ra, la);
                wait_pushed(a, since, 60000);
            } else {
                stop_pid(&dpid[0], SIGTERM);
            }
            double c0 = on ? proc_cpu_seconds(dpid[0]) + proc_cpu_seconds(redis_pid) : 0;
            uint64_t t0 = mono();
            double t = flat_rate(ra, ids, N, 0, sh), s = flat_rate(ra, ids, N, 1, sh);
            if (on) { /* the daemon's and Redis's CPUs meanwhile: the most of the runs */
                double c = (proc_cpu_seconds(dpid[0]) + proc_cpu_seconds(redis_pid) - c0) / ((double)(mono() - t0) / 1e9);
                *on_cpus = c > *on_cpus ? c : *on_cpus;
            }
            cost_tr[on] = t > cost_tr[on] ? t : cost_tr[on];
            cost_sdp[on] = s > cost_sdp[on] ? s : cost_sdp[on];
        }
    stop_pid(&dpid[0], SIGTERM);
    shmreg_close(a);
    shmreg_destroy(ra, 1);
    free(ids);
    return 0;
}

typedef struct load_mark {
    double busy, steal, own;
    uint64_t t;
    int ok;
} load_mark;

static void mark(load_mark *m)
{
    m->ok = machine_cpu(&m->busy, &m->steal) == 0;
    m->own = own_cpu();
    m->t = mono();
}

/* CPUs (busy or stolen) the machine spent on other processes since *m;
 * -1 when /proc/stat cannot say. */
static double others_since(const load_mark *m)
{
    double busy, steal;
    if (!m->ok || machine_cpu(&busy, &steal) != 0)
        return -1;
    double secs = (double)(mono() - m->t) / 1e9, v = (busy - m->busy + steal - m->steal - (own_cpu() - m->own)) / secs;
    return v > 0 ? v : 0;
}

static void rm_tmpdir(void)
{
    if (!tmpdir[0] || keep_tmp)
        return;
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "shmreg-bench: could not remove %s\n", tmpdir);
}

static int fail(const char *what)
{
    fprintf(stderr, "shmreg-bench: mirror: %s failed; logs kept in %s\n", what, tmpdir);
    keep_tmp = 1;
    stop_all();
    return 1;
}

int bench_mirror(const char *scratch, int json)
{
    if (bench_sync_bin(syncbin, sizeof syncbin) != 0)
        return 1;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/shmreg-bench-mirror-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("shmreg-bench: mkdtemp");
        return 1;
    }
    mir_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    chg_log = mmap(NULL, POOL * sizeof *chg_log, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    chg_n = mmap(NULL, POOL * sizeof *chg_n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED || chg_log == MAP_FAILED || chg_n == MAP_FAILED) {
        perror("shmreg-bench: mmap");
        return 1;
    }
    lag_row lag[NRATES] = {{0}};
    take_row take[NTAKE] = {{0}};
    double cost_tr[2] = {0}, cost_sdp[2] = {0}, on_cpus = 0;
    uint64_t t_all = mono();
    /* CPUs other processes took during each part: all of its own
     * processes (writers, readers, daemons, Redis) are reaped by its end */
    load_mark mk;
    double others[3] = {0};

    mark(&mk);
    if (rs_start() != 0)
        return fail("starting redis-server (is it installed?)");
    if (part_lag(scratch, sh, lag) != 0)
        return fail("the lag part");
    stop_pid(&redis_pid, SIGTERM);
    others[0] = others_since(&mk);
    mark(&mk);
    for (int p = 0; p < NTAKE; p++) {
        fprintf(stderr, "shmreg-bench: mirror: takeover of %llu sessions\n", (unsigned long long)TAKE_N[p]);
        if (rs_start() != 0)
            return fail("restarting redis-server");
        if (part_takeover(scratch, TAKE_N[p], &take[p]) != 0)
            return fail("the takeover part");
        stop_pid(&redis_pid, SIGTERM);
    }
    others[1] = others_since(&mk);
    fprintf(stderr, "shmreg-bench: mirror: worker cost, daemon off/on\n");
    mark(&mk);
    if (rs_start() != 0)
        return fail("restarting redis-server");
    if (part_cost(scratch, sh, cost_tr, cost_sdp, &on_cpus) != 0)
        return fail("the worker cost part");
    stop_all();
    others[2] = others_since(&mk);
    rm_tmpdir();
    double total_s = (double)(mono() - t_all) / 1e9;

    if (json) {
        printf("{\"mirror\": {\"cpus\": %ld, \"others_cpus\": {\"lag\": %.2f, \"takeover\": %.2f, \"worker\": %.2f}, "
               "\"lag\": [", sysconf(_SC_NPROCESSORS_ONLN), others[0], others[1], others[2]);
        for (int r = 0; r < NRATES; r++)
            printf("%s{\"offered_per_s\": %llu, \"achieved_per_s\": %.0f, \"changes\": %llu, \"seen\": %.4f, "
                   "\"exact\": %.4f, \"lag_p50_ns\": %llu, \"lag_p99_ns\": %llu, \"lag_max_ns\": %llu, "
                   "\"catch_up_ms\": %.1f, \"missed\": %llu, \"daemon_cpus\": %.2f, \"redis_cpus\": %.2f, \"ok\": %d}",
                   r ? ", " : "", (unsigned long long)RATES[r], lag[r].achieved, (unsigned long long)lag[r].changes,
                   lag[r].seen, lag[r].exact, (unsigned long long)lag[r].p50, (unsigned long long)lag[r].p99,
                   (unsigned long long)lag[r].max, lag[r].catchup_ms, (unsigned long long)lag[r].missed,
                   lag[r].daemon_cpus, lag[r].redis_cpus, lag[r].ok);
        printf("], \"takeover\": [");
        for (int p = 0; p < NTAKE; p++)
            printf("%s{\"sessions\": %llu, \"copy_s\": %.3f, \"lease_ms\": 2000, \"lease_left_at_kill_ms\": %.1f, "
                   "\"first_adopted_ms\": %.1f, \"last_adopted_ms\": %.1f, \"all_owned_checked_ms\": %.1f, "
                   "\"adopted_events\": %llu, \"missed\": %llu, \"owned\": %llu, \"ok\": %d}",
                   p ? ", " : "", (unsigned long long)TAKE_N[p], take[p].copy_s, take[p].lease_ms, take[p].first_ms,
                   take[p].last_ms, take[p].owned_ms, (unsigned long long)take[p].adopted,
                   (unsigned long long)take[p].missed, (unsigned long long)take[p].owned, take[p].ok);
        printf("], \"worker\": {\"transition_off\": %.0f, \"transition_on\": %.0f, \"sdp_replace_off\": %.0f, "
               "\"sdp_replace_on\": %.0f, \"daemon_redis_cpus_on\": %.2f}, \"seconds\": %.1f}}\n",
               cost_tr[0], cost_tr[1], cost_sdp[0], cost_sdp[1], on_cpus, total_s);
        return 0;
    }
    printf("shmreg-sync --redis: registries A (node 1) and B (node 2) on this machine, one daemon each\n"
           "(--interval 10 --lease-ms 2000), one redis-server on 127.0.0.1 (a fresh one for each part),\n"
           "%ld CPUs for all of it (writer, reader, both daemons, Redis).\n\n",
           sysconf(_SC_NPROCESSORS_ONLN));
    printf("replication lag: one writer process on A, paced, %.0f s per rate, round robin over %u Active\n"
           "sessions (state flip, SDP replace, flip back, SDP replace: each a new version). lag: A's change\n"
           "returned -> B's IMPORTED event of that version or a later one (CLOCK_REALTIME both; every change\n"
           "is a sample). seen: changes that reached B; exact: of them, as their own version (the push\n"
           "coalesces what changed within an interval). catch-up: writer stopped -> B holds every last\n"
           "version. daemons, redis: CPUs they used while the writer ran (1.00c: a core).\n"
           "Other processes on this machine took %.2f CPUs meanwhile.\n\n",
           LAG_SECS, POOL, others[0]);
    printf("%9s %10s %8s %6s %6s %9s %9s %9s %9s %7s %6s\n", "offered/s", "achieved/s", "changes", "seen", "exact",
           "lag p50", "lag p99", "lag max", "catch-up", "daemons", "redis");
    for (int r = 0; r < NRATES; r++)
        printf("%9llu %10.0f %8llu %5.1f%% %5.1f%% %7.2fms %7.2fms %7.2fms %7.0fms %6.2fc %5.2fc%s\n",
               (unsigned long long)RATES[r], lag[r].achieved, (unsigned long long)lag[r].changes, lag[r].seen * 100,
               lag[r].exact * 100, lag[r].p50 / 1e6, lag[r].p99 / 1e6, lag[r].max / 1e6, lag[r].catchup_ms,
               lag[r].daemon_cpus, lag[r].redis_cpus, lag[r].ok ? "" : "  (B never caught up, or no sample)");
    for (int r = 0; r < NRATES; r++)
        if (lag[r].missed)
            printf("note: at %llu/s the reader on B was lapped: %llu events missed\n", (unsigned long long)RATES[r],
                   (unsigned long long)lag[r].missed);
    printf("\ntakeover: A holds N Active sessions (a dialog each), B a copy of each at A's version; then\n"
           "A's daemon is SIGKILLed. A's lease is 2000 ms, renewed every 500 ms, so it runs out 1500-2000 ms\n"
           "after the kill; that wait is inside every figure below (nothing subtracted). copy: daemons\n"
           "started -> B holds all N. lease left: A's lease's PTTL in Redis at the kill (when it ran out).\n"
           "first/last: kill -> B's first/last ADOPTED event. owned: kill -> a scan of B found all N with\n"
           "owner_node 2 (the end of the takeover). Other processes took %.2f CPUs meanwhile.\n\n", others[1]);
    printf("%9s %9s %11s %14s %13s %10s %8s\n", "sessions", "copy", "lease left", "first adopted", "last adopted",
           "owned", "owned/N");
    for (int p = 0; p < NTAKE; p++)
        printf("%9llu %8.2fs %9.0fms %12.0fms %11.0fms %8.0fms %8s\n", (unsigned long long)TAKE_N[p],
               take[p].copy_s, take[p].lease_ms, take[p].first_ms, take[p].last_ms, take[p].owned_ms,
               take[p].ok ? "all" : "NOT ALL");
    for (int p = 0; p < NTAKE; p++)
        if (take[p].missed || take[p].adopted != TAKE_N[p] || !take[p].ok)
            printf("note: %llu sessions: %llu ADOPTED events seen, %llu missed, %llu owned\n",
                   (unsigned long long)TAKE_N[p], (unsigned long long)take[p].adopted,
                   (unsigned long long)take[p].missed, (unsigned long long)take[p].owned);
    printf("\nworker cost, 10k sessions on A, one writer, best of %d x 1 s, off/on interleaved (ops/s);\n"
           "on: A's daemon pushing to Redis (B's daemon not running: on real hosts it is elsewhere);\n"
           "A's daemon and Redis used up to %.2f CPUs meanwhile, other processes %.2f:\n",
           COST_REPS, on_cpus, others[2]);
    printf("  %-12s daemon off %10.0f   on %10.0f   on/off %.3f\n", "transition", cost_tr[0], cost_tr[1],
           cost_tr[0] ? cost_tr[1] / cost_tr[0] : 0);
    printf("  %-12s daemon off %10.0f   on %10.0f   on/off %.3f\n", "sdp_replace", cost_sdp[0], cost_sdp[1],
           cost_sdp[0] ? cost_sdp[1] / cost_sdp[0] : 0);
    if (atomic_load(&sh->fails))
        printf("\nnote: %llu changes were refused (they are counted in the rates)\n",
               (unsigned long long)atomic_load(&sh->fails));
    printf("\n(%.0f s in all)\n", total_s);
    return 0;
}
