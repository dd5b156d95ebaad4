/*
 * sipd_util.h — what the tests of the sipd example share (t/sipd.c,
 * t/sipd_rfc3261.c, t/sipd_interop.c): sipd started on a free port and
 * waited for, stopped, its log and counters read; a raw UDP client; sipp
 * runs and their screens; the registry settling and checking clean.
 *
 * Header-only and static, as every test is one program: t/testutil.c is
 * linked into all tests, and these need the example's parser besides.
 * Call sipd_test_init() first.
 */
#ifndef SIPD_UTIL_H
#define SIPD_UTIL_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "../examples/sipd/sipmsg.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define SIPD_T static __attribute__((unused))

#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#else
#define ASAN_BUILD 0
#endif

SIPD_T char root[600], bindir[512], sipd_bin[600], ctl_bin[600], scratch[400];
SIPD_T const char *sipp = "/usr/bin/sipp";

/* ------------------------------------------------------------ processes */

SIPD_T uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}


/* Wait for pid at most ms; -1 on timeout (the group is then killed). */
SIPD_T int wait_for(pid_t pid, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) {
            test_untrack(pid);
            kill(-pid, SIGKILL);   /* stray members of its group, if any */
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (now_ms() >= end) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            test_untrack(pid);
            diag("pid %d did not finish in %u ms: killed", (int)pid, ms);
            return -1;
        }
        test_sleep_us(20 * 1000u);
    }
}

SIPD_T char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return calloc(1, 1);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        buf[0] = 0;
    fclose(f);
    return buf;
}

/* The value of "name=N" in the last "stats:" line of a sipd log. */
SIPD_T long long stat_of(const char *log, const char *name)
{
    const char *line = NULL, *p = log;
    while ((p = strstr(p, " stats: ")) != NULL)
        line = p++;
    if (!line)
        return -1;
    char key[64];
    snprintf(key, sizeof key, " %s=", name);
    const char *k = strstr(line, key);
    const char *eol = strchr(line, '\n');
    if (!k || (eol && k > eol))
        return -1;
    return strtoll(k + strlen(key), NULL, 10);
}

SIPD_T void show_log_tail(const char *path)
{
    char *log = slurp(path);
    size_t n = strlen(log);
    diag("last lines of %s:\n%s", path, n > 1500 ? log + n - 1500 : log);
    free(log);
}

SIPD_T int str_is_(sip_str s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

/* ------------------------------------------------------------ UDP */


typedef struct client {
    int fd;
    struct sockaddr_in to;
    unsigned lport;
} client;

SIPD_T void client_open(client *c, unsigned port)
{
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t l = sizeof a;
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(c->fd, (struct sockaddr *)&a, &l) != 0)
        bail_out("client socket: %s", strerror(errno));
    c->lport = ntohs(a.sin_port);
    c->to = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
}

SIPD_T void client_send(client *c, const char *msg, size_t len)
{
    if (sendto(c->fd, msg, len, 0, (struct sockaddr *)&c->to, sizeof c->to) != (ssize_t)len)
        diag("sendto: %s", strerror(errno));
}

/* Receive one datagram within ms into buf (NUL-terminated); its length or -1. */
SIPD_T int client_recv(client *c, char *buf, size_t cap, unsigned ms)
{
    struct pollfd p = { c->fd, POLLIN, 0 };
    if (poll(&p, 1, (int)ms) <= 0)
        return -1;
    ssize_t n = recv(c->fd, buf, cap - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = 0;
    return (int)n;
}

SIPD_T const char *OFFER = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                           "t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
                           "a=rtpmap:101 telephone-event/8000\r\n";

SIPD_T int request(char *out, size_t cap, const client *c, const char *method, const char *cid,
                   const char *totag, unsigned cseq, const char *body)
{
    return snprintf(out, cap,
                    "%s sip:svc@127.0.0.1:%u SIP/2.0\r\n"
                    "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-%s-%u\r\n"
                    "From: test <sip:test@127.0.0.1:%u>;tag=ft-%s\r\n"
                    "To: <sip:svc@127.0.0.1:%u>%s%s\r\n"
                    "Call-ID: %s\r\nCSeq: %u %s\r\nMax-Forwards: 70\r\n"
                    "%sContent-Length: %zu\r\n\r\n%s",
                    method, ntohs(c->to.sin_port), c->lport, cid, cseq, c->lport, cid,
                    ntohs(c->to.sin_port), totag ? ";tag=" : "", totag ? totag : "", cid, cseq,
                    method, body ? "Content-Type: application/sdp\r\n" : "",
                    body ? strlen(body) : 0, body ? body : "");
}

/* ------------------------------------------------------------ sipd */

typedef struct server {
    pid_t pid;
    unsigned port, workers;
    char reg[400], log[450];
} server;

SIPD_T shmreg *reg_open(const char *path)
{
    shmreg *h = NULL;
    int rc = shmreg_open(path, NULL, &h);
    if (rc != 0)
        diag("open %s: %s (%s)", path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

/* A handle on path kept open for the life of the test: for the checks
 * that look again and again (one open per look would make each of them
 * a chance to fail for reasons that are not the test's). Not to close. */
SIPD_T shmreg *reg_kept(const char *path)
{
    static struct { char path[450]; shmreg *h; } kept[8];
    for (int i = 0; i < 8; i++) {
        if (kept[i].h && strcmp(kept[i].path, path) == 0)
            return kept[i].h;
        if (!kept[i].h) {
            kept[i].h = reg_open(path);
            snprintf(kept[i].path, sizeof kept[i].path, "%s", path);
            return kept[i].h;
        }
    }
    bail_out("reg_kept: more than 8 registries");
}

/* pids of the live handles other than ours and the master's */
SIPD_T int worker_pids(shmreg *h, pid_t master, pid_t *out, int max)
{
    uint64_t cur = 0;
    shmreg_handle_info hi;
    int n = 0;
    while (shmreg_handle_next(h, &cur, &hi) == 0)
        if (hi.alive && !hi.self && hi.pid != master && n < max)
            out[n++] = hi.pid;
    return n;
}

/* An OPTIONS answered 200 from the server. */
SIPD_T int options_ok(unsigned port)
{
    client c;
    char msg[2048], resp[4096];
    client_open(&c, port);
    int n = request(msg, sizeof msg, &c, "OPTIONS", "ping", NULL, 1, NULL);
    client_send(&c, msg, (size_t)n);
    int got = client_recv(&c, resp, sizeof resp, 500);
    close(c.fd);
    return got > 0 && strncmp(resp, "SIP/2.0 200 ", 12) == 0;
}

/* sipd -w workers -R ring_ms -L linger_ms, and `extra` (NULL-terminated,
 * may be NULL) arguments, e.g. {"-1", "50", "-2", "400", NULL}. */
/* sipd_start_with() on a registry created first with `config`: pairs of
 * key and value text set in the "sipd" config before sipd starts (NULL:
 * none; sipd then creates the registry itself). */
SIPD_T int sipd_start_cfg(server *s, const char *name, unsigned workers, const char *ring_ms,
                          const char *linger_ms, char *const extra[], const char *const config[])
{
    snprintf(s->reg, sizeof s->reg, "%s", test_dir(name));
    if (config) {
        shmreg_options o = { .flags = SHMREG_CREATE };
        shmreg *h;
        if (shmreg_open(s->reg, &o, &h) != 0)
            return -1;
        int rc = 0;
        for (int i = 0; config[i] && config[i + 1] && rc == 0; i += 2)
            rc = shmreg_config_set(h, "sipd", config[i], config[i + 1]);
        shmreg_close(h);
        if (rc)
            return -1;
    }
    snprintf(s->log, sizeof s->log, "%s.log", s->reg);
    s->port = test_free_udp_port();
    s->workers = workers;
    char listen[64], w[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", s->port);
    snprintf(w, sizeof w, "%u", workers);
    char *argv[32] = { sipd_bin, "-r", s->reg, "-l", listen, "-w", w, "-R", (char *)ring_ms,
                       "-L", (char *)linger_ms, "-e", "3", NULL };
    for (int i = 0, n = 13; extra && extra[i] && n < 31; i++)
        argv[n++] = extra[i];
    s->pid = test_spawn(argv, s->log);
    /* Ready: every worker attached, and one of them answers. */
    uint64_t end = now_ms() + 15000;
    shmreg *h = NULL;
    while (now_ms() < end) {
        if (!h && shmreg_open(s->reg, NULL, &h) != 0)   /* may not exist yet */
            h = NULL;
        pid_t pids[64];
        if (h && worker_pids(h, s->pid, pids, 64) == (int)workers && options_ok(s->port)) {
            shmreg_close(h);
            return 0;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            test_untrack(s->pid);
            break;
        }
        test_sleep_us(50 * 1000u);
    }
    shmreg_close(h);
    show_log_tail(s->log);
    return -1;
}

SIPD_T int sipd_start_with(server *s, const char *name, unsigned workers, const char *ring_ms,
                           const char *linger_ms, char *const extra[])
{
    return sipd_start_cfg(s, name, workers, ring_ms, linger_ms, extra, NULL);
}

SIPD_T int sipd_start(server *s, const char *name, unsigned workers, const char *ring_ms,
                       const char *linger_ms)
{
    return sipd_start_with(s, name, workers, ring_ms, linger_ms, NULL);
}

SIPD_T int sipd_stop(server *s)
{
    kill(s->pid, SIGTERM);
    int rc = wait_for(s->pid, 20000);
    if (rc != 0)
        show_log_tail(s->log);
    return rc;
}

/* ------------------------------------------------------------ sipp */

typedef struct sipp_result {
    int rc;
    long long ok, failed;
} sipp_result;

SIPD_T long long screen_value(const char *screen, const char *label)
{
    const char *line = NULL, *p = screen;
    while ((p = strstr(p, label)) != NULL)
        line = p++;
    if (!line)
        return -1;
    const char *bar = strchr(line, '|');
    bar = bar ? strchr(bar + 1, '|') : NULL;     /* the cumulative column */
    return bar ? strtoll(bar + 1, NULL, 10) : -1;
}

/* Run sipp against s with `extra` arguments; wait at most ms. */
/* sipp against 127.0.0.1:port (sipd's, or a proxy's in front of it). */
SIPD_T pid_t sipp_start_to(const server *s, unsigned port, const char *tag, char *const extra[],
                           char *screen, size_t cap)
{
    char target[64], out[600];
    snprintf(target, sizeof target, "127.0.0.1:%u", port);
    snprintf(screen, cap, "%s.%s.screen", s->reg, tag);
    snprintf(out, sizeof out, "%s.%s.out", s->reg, tag);
    char *argv[40] = { (char *)sipp, target, "-i", "127.0.0.1", "-nostdin", "-trace_screen",
                       "-screen_file", screen, "-recv_timeout", "4000", "-max_recv_loops",
                       "10000" };
    int n = 12;
    for (int i = 0; extra[i] && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    unlink(screen);
    return test_spawn(argv, out);
}

SIPD_T pid_t sipp_start(const server *s, const char *tag, char *const extra[], char *screen,
                        size_t cap)
{
    return sipp_start_to(s, s->port, tag, extra, screen, cap);
}

SIPD_T sipp_result sipp_finish(pid_t pid, const char *screen, unsigned ms)
{
    sipp_result r;
    r.rc = wait_for(pid, ms);
    char *scr = slurp(screen);
    r.ok = screen_value(scr, "Successful call");
    r.failed = screen_value(scr, "Failed call");
    free(scr);
    return r;
}

/* Copies of a response received by sipp, from its message trace: blocks
 * "UDP message received" whose first line is `status_line` and whose
 * CSeq is `cseq`. */
SIPD_T int trace_count(const char *trace, const char *status_line, const char *cseq)
{
    char *t = slurp(trace);
    int n = 0;
    for (char *p = t; (p = strstr(p, "message received")) != NULL; p++) {
        char *next = strstr(p + 1, "message received");
        char *sl = strstr(p, status_line), *cs = strstr(p, cseq);
        if (sl && cs && (!next || (sl < next && cs < next)))
            n++;
    }
    free(t);
    return n;
}

SIPD_T sipp_result sipp_run(const server *s, const char *tag, char *const extra[], unsigned ms)
{
    char screen[600];
    pid_t pid = sipp_start(s, tag, extra, screen, sizeof screen);
    return sipp_finish(pid, screen, ms);
}

/* ------------------------------------------------------------ registry */

SIPD_T void print_problem(void *arg, const char *what)
{
    (void)arg;
    diag("check: %s", what);
}

/* Sessions and dialogs reach zero within ms; then the full check. */
SIPD_T void registry_settles(const char *path, unsigned ms, const char *what)
{
    shmreg *h = reg_open(path);
    shmreg_stats st = { 0 };
    uint64_t end = now_ms() + ms;
    while (h && shmreg_stat(h, &st) == 0 && (st.sessions || st.dialogs) && now_ms() < end)
        test_sleep_us(100 * 1000u);
    ok(h && st.sessions == 0 && st.dialogs == 0, "%s: registry back to 0 sessions, 0 dialogs", what);
    if (st.sessions || st.dialogs)
        diag("sessions %u dialogs %u", st.sessions, st.dialogs);
    shmreg_check_report rep;
    memset(&rep, 0, sizeof rep);
    int rc = h ? shmreg_check(h, 0, &rep, print_problem, NULL, NULL) : -1;
    ok(rc == 0 && rep.problems == 0, "%s: shmreg_check finds no problem", what);
    if (rep.leaked_blocks)
        note("%s: %llu leaked blocks (%llu bytes) of dead processes", what,
             (unsigned long long)rep.leaked_blocks, (unsigned long long)rep.leaked_bytes);
    shmreg_close(h);
    if (access(ctl_bin, X_OK) == 0) {
        char out[500];
        snprintf(out, sizeof out, "%s.check", path);
        char *argv[] = { ctl_bin, "-r", (char *)path, "check", NULL };
        is(wait_for(test_spawn(argv, out), 20000), 0, "%s: shmregctl check exits 0", what);
    } else {
        skip(1, "no shmregctl built");
    }
}

/* The To-tag sipd derives for (Call-ID, From-tag): SipHash under the key
 * it keeps in the registry's "sipd" config (see examples/sipd/worker.c). */
SIPD_T int derive_tag(shmreg *h, const char *cid, const char *ftag, char out[17])
{
    shmreg_config_view *v = NULL;
    shmreg_str hex;
    unsigned char key[crypto_shorthash_KEYBYTES], in[512], hash[crypto_shorthash_BYTES];
    int rc = shmreg_config_open_view(h, "sipd", &v);
    if (rc == 0)
        rc = shmreg_config_get_str(v, "tag_key", &hex);
    if (rc == 0 && sodium_hex2bin(key, sizeof key, hex.ptr, hex.len, NULL, NULL, NULL) != 0)
        rc = -1;
    shmreg_config_release(v);
    if (rc != 0)
        return rc;
    size_t n = strlen(cid);
    memcpy(in, cid, n + 1);
    memcpy(in + n + 1, ftag, strlen(ftag));
    crypto_shorthash(hash, in, n + 1 + strlen(ftag), key);
    for (int i = 0; i < 8; i++)
        sprintf(out + 2 * i, "%02x", hash[i]);
    return 0;
}

#define NONFINAL_STATES "Initiating,Ringing,Active,OnHold,Transferring,Terminating"

/* How many sessions `shmregctl list --state STATES` shows (lines after
 * its header), or -1 when it fails. */
SIPD_T int ctl_listed(const char *path, const char *states)
{
    char out[500];
    static unsigned n;
    snprintf(out, sizeof out, "%s.list.%u", path, n++);
    char *argv[] = { ctl_bin, "-r", (char *)path, "list", "--state", (char *)states, NULL };
    if (wait_for(test_spawn(argv, out), 20000) != 0)
        return -1;
    char *text = slurp(out);
    int lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    free(text);
    return lines > 0 ? lines - 1 : -1;
}

/* After an interop test: no session left in a non-final state (`shmregctl
 * list` shows none, and the library's counts agree), and `shmregctl check`
 * exits 0. */
SIPD_T void registry_final(const char *path, const char *what)
{
    shmreg *h = reg_kept(path);
    uint64_t counts[SHMREG_STATE_COUNT] = { 0 };
    if (h)
        shmreg_session_counts(h, counts, SHMREG_STATE_COUNT);
    uint64_t live = 0;
    for (int st = 1; st < SHMREG_STATE_COUNT; st++)
        if (!shmreg_state_is_final(st))
            live += counts[st];
    int listed = ctl_listed(path, NONFINAL_STATES);
    ok(h && live == 0 && listed == 0,
       "%s: no session left in a non-final state (library %llu, shmregctl list %d)", what,
       (unsigned long long)live, listed);
    char out[500];
    snprintf(out, sizeof out, "%s.check", path);
    char *argv[] = { ctl_bin, "-r", (char *)path, "check", NULL };
    is(wait_for(test_spawn(argv, out), 20000), 0, "%s: shmregctl check exits 0", what);
}

/* Exactly so many sessions in each state (want[state]; want[0] unused). */
SIPD_T void states_are(const char *path, const char *what, const uint64_t *want)
{
    uint64_t got[SHMREG_STATE_COUNT] = { 0 };
    shmreg_session_counts(reg_kept(path), got, SHMREG_STATE_COUNT);
    int same = 1;
    char line[256] = "";
    size_t n = 0;
    for (int st = 1; st < SHMREG_STATE_COUNT; st++) {
        same &= got[st] == want[st];
        if (got[st])
            n += (size_t)snprintf(line + n, sizeof line - n, " %s %llu", shmreg_state_name(st),
                                  (unsigned long long)got[st]);
    }
    ok(same, "%s:%s", what, line);
}

/* The paths of the build tree this test runs from; bails out when sipd is
 * not built. */
SIPD_T void sipd_test_init(void)
{
    snprintf(bindir, sizeof bindir, "%s", test_build_dir());
    snprintf(root, sizeof root, "%s/../..", bindir);
    snprintf(sipd_bin, sizeof sipd_bin, "%s/examples/sipd", bindir);
    snprintf(ctl_bin, sizeof ctl_bin, "%s/tools/shmregctl", bindir);
    if (access(sipd_bin, X_OK) != 0)
        bail_out("%s not built", sipd_bin);
    snprintf(scratch, sizeof scratch, "%s", test_dir("x"));
    signal(SIGPIPE, SIG_IGN);
}

#endif
