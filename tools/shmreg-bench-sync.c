/*
 * shmreg-bench-sync.c — `shmreg-bench --sync`: what persistence costs and
 * how fast it is, with the real shmreg-sync daemon (found next to the
 * bench binary) writing into a real LMDB directory on disk:
 *
 *   keep-up   a writer process changes sessions (state flips and SDP
 *             replaces, round robin over N live sessions) as fast as it
 *             can for a few seconds while the daemon follows with
 *             --fsync interval; reported: changes/s offered, their worth
 *             in calls/s (a SIP call makes ~8 changes), the most events
 *             the daemon was behind, laps (resyncs forced by falling a
 *             whole ring behind) and how long it took to catch up after
 *             the writer stopped. At 10k and 100k sessions.
 *   worker    the writer's own rate for transitions and SDP replaces,
 *             daemon off vs on, best of 3: the ratio is what running the
 *             daemon costs a worker.
 *   restore   shmreg_restore() of the 100k-session directory into a new
 *             registry.
 *
 * Figures are ratios and rates of one run on this machine; nothing is
 * asserted. Why separate from the store comparison: it measures a daemon
 * next to the workers, not a store in their place.
 */
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

typedef struct sync_shared {
    _Atomic uint64_t ops;
    _Atomic int stop;
    _Atomic uint64_t fails;  /* changes refused (a bench bug or a full heap): printed */
    uint64_t pace;       /* calls a second the call writer keeps to; 0: flat out */
} sync_shared;

static char syncbin[1100];
static char interval_arg[24] = "100";

static uint64_t now_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static const char SDP_A[] = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                            "m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n";
static const char SDP_B[] = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                            "m=audio 4002 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
                            "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendonly\r\n";

static shmreg *populate(const char *path, uint64_t n, shmreg_id **ids)
{
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = (uint32_t)(n + 1024),
                        .heap_bytes = n * 4096 + (64ull << 20)};
    if (shmreg_open(path, &o, &h) != 0) {
        fprintf(stderr, "shmreg-bench: %s: %s\n", path, shmreg_errmsg());
        return NULL;
    }
    /* Shared with the writer processes: the call writer replaces IDs,
     * and the next workload must see the IDs it left. */
    *ids = mmap(NULL, n * sizeof **ids, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    for (uint64_t i = 0; i < n; i++) {
        shmreg_fields f = {0};
        char cid[48];
        snprintf(cid, sizeof cid, "bench-sync-%llu", (unsigned long long)i);
        f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){cid, strlen(cid)};
        f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){"sip:alice@example.com", 21};
        f.str[SHMREG_FIELD_TO_URI] = (shmreg_str){"sip:bob@example.com", 19};
        shmreg_session_create(h, &f, &(*ids)[i]);
        shmreg_session_set_sdp(h, &(*ids)[i], 0, SDP_A, sizeof SDP_A - 1);
        shmreg_session_set_sdp(h, &(*ids)[i], 1, SDP_B, sizeof SDP_B - 1);
        shmreg_dialog_bind(h, (shmreg_str){cid, strlen(cid)}, (shmreg_str){"lt", 2}, (shmreg_str){"rt", 2},
                           &(*ids)[i]);
        shmreg_session_transition(h, &(*ids)[i], 0, SHMREG_STATE_ACTIVE, NULL);
    }
    return h;
}

/* Calls as SIP makes them, 8 changes each: set-up (create, local SDP,
 * Ringing, remote SDP, Active) at once, tear-down (Terminating,
 * Terminated, delete) of the oldest call, so n calls stay live and each
 * lasts n calls' time. Counts changes. */
static void call_writer(shmreg *h, shmreg_id *ids, uint64_t n, sync_shared *sh)
{
    uint64_t k = 0, t0 = now_mono();
    while (!atomic_load(&sh->stop)) {
        if (sh->pace && k * 1000000000ull > (now_mono() - t0) * sh->pace) {
            nap_ms(1);
            continue;
        }
        uint64_t f = 0;
        for (int b = 0; b < 32; b++, k++) {
            shmreg_id *id = &ids[k % n];
            f += shmreg_session_transition(h, id, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATING, NULL) != 0;
            f += shmreg_session_transition(h, id, SHMREG_STATE_TERMINATING, SHMREG_STATE_TERMINATED, NULL) != 0;
            f += shmreg_session_delete(h, id) != 0;
            shmreg_fields fl = {0};
            fl.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){"sip:alice@example.com", 21};
            fl.str[SHMREG_FIELD_TO_URI] = (shmreg_str){"sip:bob@example.com", 19};
            f += shmreg_session_create(h, &fl, id) != 0;
            f += shmreg_session_set_sdp(h, id, 0, SDP_A, sizeof SDP_A - 1) != 0;
            f += shmreg_session_transition(h, id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL) != 0;
            f += shmreg_session_set_sdp(h, id, 1, SDP_B, sizeof SDP_B - 1) != 0;
            f += shmreg_session_transition(h, id, SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE, NULL) != 0;
        }
        atomic_fetch_add(&sh->fails, f);
        atomic_fetch_add(&sh->ops, 32 * 8);
    }
}

/* mode 0: transitions, 1: SDP replaces, 2: both alternately (round robin
 * over all n sessions: the worst case for coalescing), 3: calls. */
static void writer(const char *path, shmreg_id *ids, uint64_t n, int mode, sync_shared *sh)
{
    shmreg *h;
    if (shmreg_open(path, NULL, &h) != 0)
        _exit(2);
    if (mode == 3) {
        call_writer(h, ids, n, sh);
        shmreg_close(h);
        _exit(0);
    }
    uint64_t k = 0, fails = 0;
    while (!atomic_load(&sh->stop)) {
        for (int b = 0; b < 256; b++, k++) {
            const shmreg_id *id = &ids[k % n];
            uint64_t lap = k / n; /* every change must change something: alternate per lap */
            int m = mode == 2 ? (int)(lap % 2) : mode;
            if (mode == 2)
                lap /= 2;
            if (m == 0) {
                /* Flip Active <-> OnHold, whatever an earlier run left. */
                int on = (int)lap & 1, old = 0;
                int rc = shmreg_session_transition(h, id, SHMREG_STATE_ANY,
                                                   on ? SHMREG_STATE_ACTIVE : SHMREG_STATE_ONHOLD, &old);
                if (rc == SHMREG_ESTATE)
                    rc = shmreg_session_transition(h, id, old, old == SHMREG_STATE_ONHOLD ? SHMREG_STATE_ACTIVE
                                                                                            : SHMREG_STATE_ONHOLD, NULL);
                fails += rc != 0;
            } else {
                const char *s = lap & 1 ? SDP_A : SDP_B;
                fails += shmreg_session_set_sdp(h, id, 1, s, lap & 1 ? sizeof SDP_A - 1 : sizeof SDP_B - 1) != 0;
            }
        }
        atomic_fetch_add(&sh->ops, 256);
        atomic_fetch_add(&sh->fails, fails);
        fails = 0;
    }
    shmreg_close(h);
    _exit(0);
}

/* A bare subscriber draining the ring as the daemon's poller does (256
 * at a time, a 5 ms nap when drained), writing nothing: what reading
 * every event costs a worker, apart from writing them to disk. */
static void bare_subscriber(const char *path)
{
    shmreg *h;
    shmreg_sub *sub;
    if (shmreg_open(path, NULL, &h) || shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub))
        _exit(2);
    shmreg_event ev[256];
    for (;;) {
        uint64_t missed;
        if (shmreg_poll(sub, ev, 256, 0, &missed) < 256)
            nap_ms(5);
    }
}

static pid_t daemon_start(const char *reg, const char *dir, const char *log, int once)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(syncbin, "shmreg-sync", "-r", reg, "--lmdb", dir, "--fsync", "interval", "--interval", interval_arg,
              once ? "--once" : NULL, (char *)NULL);
        _exit(127);
    }
    return pid;
}

static int wait_durable(shmreg *h, unsigned max_ms)
{
    for (unsigned t = 0; t < max_ms; t += 20) {
        shmreg_stats st;
        shmreg_stat(h, &st);
        if (st.sync_alive && st.sync_commit_ns && st.sync_behind == 0)
            return 0;
        nap_ms(20);
    }
    return -1;
}

static int count_in(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Rate of `mode` changes by one writer for `secs`. */
static double writer_rate(const char *path, shmreg_id *ids, uint64_t n, int mode, double secs,
                          sync_shared *sh)
{
    atomic_store(&sh->ops, 0);
    atomic_store(&sh->stop, 0);
    pid_t w = fork();
    if (w == 0)
        writer(path, ids, n, mode, sh);
    uint64_t t0 = now_mono(), o0 = atomic_load(&sh->ops);
    nap_ms((unsigned)(secs * 1000));
    uint64_t o1 = atomic_load(&sh->ops), t1 = now_mono();
    atomic_store(&sh->stop, 1);
    waitpid(w, NULL, 0);
    return (double)(o1 - o0) / ((double)(t1 - t0) / 1e9);
}

int bench_sync(const char *scratch, int json, unsigned interval_ms)
{
    snprintf(interval_arg, sizeof interval_arg, "%u", interval_ms ? interval_ms : 100);
    if (bench_sync_bin(syncbin, sizeof syncbin) != 0)
        return 1;
    char disk[] = "/var/tmp/shmreg-bench-sync-XXXXXX";
    if (mkdtemp(disk) == NULL) {
        perror("shmreg-bench: mkdtemp");
        return 1;
    }
    sync_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    static const uint64_t points[] = {10000, 100000};
    /* [point][0: calls flat out, 1: calls at 50,000/s, 2: round robin] */
    enum { NW = 3 };
    double rate[2][NW] = {{0}}, catchup_ms[2][NW] = {{0}}, secs = 4.0;
    uint64_t maxbehind[2][NW] = {{0}}, laps[2][NW] = {{0}}, live[2] = {0};
    double dcpu[2][NW] = {{0}}; /* the daemon's CPU, in cores, while the writer ran */
    double cost_tr[3] = {0}, cost_sdp[3] = {0}, restore_s = 0; /* off, on, bare subscriber */
    uint64_t restored = 0;
    char reg[600], dir[600], log[600];
    for (int p = 0; p < 2; p++) {
        uint64_t n = points[p];
        snprintf(reg, sizeof reg, "%s/sync-reg-%llu", scratch, (unsigned long long)n);
        snprintf(dir, sizeof dir, "%s/sync-%llu", disk, (unsigned long long)n);
        snprintf(log, sizeof log, "%s/sync-%llu.log", disk, (unsigned long long)n);
        fprintf(stderr, "shmreg-bench: sync: %llu sessions\n", (unsigned long long)n);
        shmreg_id *ids;
        shmreg *h = populate(reg, n, &ids);
        if (!h)
            return 1;
        pid_t d = daemon_start(reg, dir, log, 0);
        if (wait_durable(h, 120000) != 0) {
            fprintf(stderr, "shmreg-bench: the daemon did not start (see %s)\n", log);
            kill(d, SIGKILL);
            return 1;
        }
        /* Worker cost: off (no daemon) and on, interleaved so that a
         * change in the machine's other load hits both; the best of 5
         * each. Not SIGSTOP for "off": a daemon stopped inside a read
         * section would pin the memory the writer retires. */
        for (int r = 0; p == 0 && r < 5; r++)
            for (int on = 0; on < 2; on++) {
                if (on) {
                    d = daemon_start(reg, dir, log, 0);
                    wait_durable(h, 60000);
                } else {
                    kill(d, SIGTERM);
                    waitpid(d, NULL, 0);
                }
                double a = writer_rate(reg, ids, n, 0, 1.0, sh), b = writer_rate(reg, ids, n, 1, 1.0, sh);
                cost_tr[on] = a > cost_tr[on] ? a : cost_tr[on];
                cost_sdp[on] = b > cost_sdp[on] ? b : cost_sdp[on];
            }
        if (p == 0) {
            kill(d, SIGTERM); /* the bare subscriber alone, no daemon */
            waitpid(d, NULL, 0);
            for (int r = 0; r < 3; r++) {
                pid_t b = fork();
                if (b == 0)
                    bare_subscriber(reg);
                nap_ms(50);
                double a = writer_rate(reg, ids, n, 0, 1.0, sh), c = writer_rate(reg, ids, n, 1, 1.0, sh);
                kill(b, SIGKILL);
                waitpid(b, NULL, 0);
                cost_tr[2] = a > cost_tr[2] ? a : cost_tr[2];
                cost_sdp[2] = c > cost_sdp[2] ? c : cost_sdp[2];
            }
            d = daemon_start(reg, dir, log, 0);
            wait_durable(h, 60000);
        }
        /* keep-up: calls, then the round robin */
        for (int m = 0; m < NW; m++) {
            int laps0 = count_in(log, "lapped");
            atomic_store(&sh->ops, 0);
            atomic_store(&sh->stop, 0);
            sh->pace = m == 1 ? 50000 : 0;
            pid_t w = fork();
            if (w == 0)
                writer(reg, ids, n, m < 2 ? 3 : 2, sh);
            while (atomic_load(&sh->ops) == 0) /* the window opens when the writer writes */
                nap_ms(1);
            uint64_t t0 = now_mono(), o0 = atomic_load(&sh->ops);
            double cpu0 = proc_cpu_seconds(d);
            while (now_mono() - t0 < (uint64_t)(secs * 1e9)) {
                shmreg_stats st;
                shmreg_stat(h, &st);
                if (st.sync_behind > maxbehind[p][m])
                    maxbehind[p][m] = st.sync_behind;
                nap_ms(100); /* shmreg_stat walks the table: sample gently */
            }
            uint64_t ops = atomic_load(&sh->ops) - o0, t1 = now_mono();
            dcpu[p][m] = (proc_cpu_seconds(d) - cpu0) / ((double)(t1 - t0) / 1e9);
            atomic_store(&sh->stop, 1);
            waitpid(w, NULL, 0);
            rate[p][m] = (double)ops / ((double)(t1 - t0) / 1e9);
            uint64_t c0 = now_mono();
            wait_durable(h, 120000);
            catchup_ms[p][m] = (double)(now_mono() - c0) / 1e6;
            laps[p][m] = (uint64_t)(count_in(log, "lapped") - laps0);
            if (m == 1) { /* the calls replaced the sessions: the round robin needs their IDs */
                uint64_t cur = 0, i = 0;
                shmreg_session v;
                shmreg_read_begin(h);
                while (i < n && shmreg_session_next(h, &cur, SHMREG_STATE_ACTIVE, &v) == 0)
                    ids[i++] = v.id;
                shmreg_read_end(h);
            }
        }
        shmreg_stats st;
        shmreg_stat(h, &st);
        live[p] = st.sessions;
        kill(d, SIGTERM);
        waitpid(d, NULL, 0);
        shmreg_close(h);
        shmreg_destroy(reg, 1);
        munmap(ids, n * sizeof *ids);
        if (p == 1) { /* restore the 100k directory */
            snprintf(reg, sizeof reg, "%s/sync-restored", scratch);
            shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = (uint32_t)(n + 1024),
                                .heap_bytes = n * 4096 + (64ull << 20)};
            if (shmreg_open(reg, &o, &h) == 0) {
                shmreg_restore_report rep;
                uint64_t r0 = now_mono();
                if (shmreg_restore(h, dir, SHMREG_RESTORE_ALL, &rep) == 0)
                    restored = rep.sessions;
                restore_s = (double)(now_mono() - r0) / 1e9;
                shmreg_close(h);
                shmreg_destroy(reg, 1);
            }
        }
    }
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", disk);
    if (system(cmd) != 0)
        fprintf(stderr, "shmreg-bench: could not remove %s\n", disk);
    static const char *const wl[NW] = {"calls", "calls@50k/s", "round_robin"};
    if (json) {
        printf("{\"sync\": {\"keep_up\": [");
        for (int p = 0; p < 2; p++)
            for (int m = 0; m < NW; m++)
                printf("%s{\"sessions\": %llu, \"workload\": \"%s\", \"changes_per_s\": %.0f, "
                       "\"calls_per_s\": %.0f, \"max_behind_events\": %llu, \"max_lag_s\": %.3f, "
                       "\"laps\": %llu, \"catch_up_ms\": %.1f, \"daemon_cpus\": %.2f}",
                       p || m ? ", " : "", (unsigned long long)points[p], wl[m], rate[p][m], rate[p][m] / 8,
                       (unsigned long long)maxbehind[p][m], rate[p][m] ? maxbehind[p][m] / rate[p][m] : 0,
                       (unsigned long long)laps[p][m], catchup_ms[p][m], dcpu[p][m]);
        printf("], \"worker\": {\"transition_off\": %.0f, \"transition_on\": %.0f, \"sdp_replace_off\": %.0f, "
               "\"sdp_replace_on\": %.0f, \"transition_bare_subscriber\": %.0f, \"sdp_replace_bare_subscriber\": %.0f}, \"restore\": {\"sessions\": %llu, \"seconds\": %.3f}}}\n",
               cost_tr[0], cost_tr[1], cost_sdp[0], cost_sdp[1], cost_tr[2], cost_sdp[2], (unsigned long long)restored,
               restore_s);
        (void)live;
        return 0;
    }
    printf("shmreg-sync (--fsync interval: one fsync a second; --interval %s ms), one writer process,\n"
           "%.0f s per row. calls: 8 changes per call (set-up at once, tear-down of the oldest call),\n"
           "flat out or paced at 50,000 calls/s;\n"
           "round_robin: one change per session in turn (no coalescing possible). max behind: events\n"
           "not yet durable (fsync'd), max lag: that in seconds of writing. daemon: CPUs it used\n"
           "meanwhile (1.00c: one core).\n\n", interval_arg, secs);
    printf("%9s %-12s %11s %9s %11s %8s %5s %11s %7s\n", "sessions", "workload", "changes/s", "calls/s",
           "max behind", "max lag", "laps", "catch-up ms", "daemon");
    for (int p = 0; p < 2; p++)
        for (int m = 0; m < NW; m++)
            printf("%9llu %-12s %11.0f %9.0f %11llu %7.2fs %5llu %11.1f %6.2fc\n", (unsigned long long)points[p],
                   wl[m], rate[p][m], rate[p][m] / 8, (unsigned long long)maxbehind[p][m],
                   rate[p][m] ? maxbehind[p][m] / rate[p][m] : 0, (unsigned long long)laps[p][m],
                   catchup_ms[p][m], dcpu[p][m]);
    printf("\nworker cost, 10k sessions, one writer, best of 5 x 1 s, off/on interleaved (ops/s):\n");
    printf("  %-12s daemon off %10.0f   on %10.0f   on/off %.3f   bare subscriber/off %.3f\n", "transition",
           cost_tr[0], cost_tr[1], cost_tr[0] ? cost_tr[1] / cost_tr[0] : 0, cost_tr[0] ? cost_tr[2] / cost_tr[0] : 0);
    printf("  %-12s daemon off %10.0f   on %10.0f   on/off %.3f   bare subscriber/off %.3f\n", "sdp_replace",
           cost_sdp[0], cost_sdp[1], cost_sdp[0] ? cost_sdp[1] / cost_sdp[0] : 0,
           cost_sdp[0] ? cost_sdp[2] / cost_sdp[0] : 0);
    if (atomic_load(&sh->fails))
        printf("\nnote: %llu changes were refused (they are counted in the rates)\n",
               (unsigned long long)atomic_load(&sh->fails));
    printf("\nrestore: %llu sessions (of %llu live when the daemon stopped) in %.3f s\n",
           (unsigned long long)restored, (unsigned long long)live[1], restore_s);
    return 0;
}
