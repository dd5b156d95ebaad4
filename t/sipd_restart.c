/*
 * sipd_restart.c — calls survive a "reboot", end to end: sipd and
 * shmreg-sync run; sipp holds CALLS calls established (a long pause
 * before each BYE, examples/sipd/uac_long.xml); once the daemon reports
 * every change durable, sipd, its workers and the daemon are SIGKILLed
 * and the registry's segment is deleted. `shmregctl restore` rebuilds the
 * registry from the sync directory, sipd is started again on it (same
 * port), and every BYE that sipp then sends is answered 200, not 481:
 * sipp counts every call successful, none failed.
 *
 * Processes get their own process groups, killed on the way out; waits
 * are "until X, at most N seconds", never timing assertions.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define CALLS 10
#else
#define CALLS 30
#endif
#define PAUSE_MS "9000"

static const char *sipp = "/usr/bin/sipp";

static int reap(pid_t pid)
{
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    kill(-pid, SIGKILL); /* the rest of its group (sipd's workers) */
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}


/* An OPTIONS answered 200 by sipd on `port`. */
static int options_ok(unsigned port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    unsigned lport = ntohs(a.sin_port);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char msg[1024], resp[2048];
    int n = snprintf(msg, sizeof msg,
                     "OPTIONS sip:svc@127.0.0.1:%u SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-ping\r\n"
                     "From: t <sip:t@127.0.0.1:%u>;tag=p\r\nTo: <sip:svc@127.0.0.1:%u>\r\n"
                     "Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                     port, lport, lport, port);
    sendto(fd, msg, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
    struct pollfd p = {fd, POLLIN, 0};
    int got = poll(&p, 1, 500) > 0 ? (int)recv(fd, resp, sizeof resp - 1, 0) : -1;
    close(fd);
    return got > 12 && strncmp(resp, "SIP/2.0 200 ", 12) == 0;
}

static long long screen_value(const char *path, const char *label)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    const char *line = NULL, *p = buf;
    while ((p = strstr(p, label)) != NULL)
        line = p++;
    if (!line)
        return -1;
    const char *bar = strchr(line, '|');
    bar = bar ? strchr(bar + 1, '|') : NULL;
    return bar ? strtoll(bar + 1, NULL, 10) : -1;
}

static char reg[512], sdir[512], sipd_bin[600], sync_bin[600], ctl_bin[600], scenario[600];
static unsigned port;

static pid_t sipd_start(void)
{
    char listen[64], log[600];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    snprintf(log, sizeof log, "%s.sipd.log", reg);
    char *argv[] = {sipd_bin, "-r", reg, "-l", listen, "-w", "2", "-e", "3", NULL};
    pid_t pid = test_spawn(argv, log);
    for (int i = 0; i < 300 && !options_ok(port); i++)
        test_sleep_us(50000);
    return pid;
}

static pid_t sync_start(void)
{
    char log[600];
    snprintf(log, sizeof log, "%s.sync.log", reg);
    char *argv[] = {sync_bin, "-r", reg, "--lmdb", sdir, "--interval", "50", NULL};
    return test_spawn(argv, log);
}

static uint64_t active(shmreg *h)
{
    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    return c[SHMREG_STATE_ACTIVE];
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    const char *b = test_build_dir();
    snprintf(sipd_bin, sizeof sipd_bin, "%s/examples/sipd", b);
    snprintf(sync_bin, sizeof sync_bin, "%s/tools/shmreg-sync", b);
    snprintf(ctl_bin, sizeof ctl_bin, "%s/tools/shmregctl", b);
    snprintf(scenario, sizeof scenario, "%s/../../examples/sipd/uac_long.xml", b);
    if (access(sipd_bin, X_OK) || access(sync_bin, X_OK) || access(ctl_bin, X_OK))
        bail_out("build sipd, shmreg-sync and shmregctl first (make)");
    snprintf(reg, sizeof reg, "%s", test_dir("reg"));
    snprintf(sdir, sizeof sdir, "%s", test_dir("sync"));
    port = test_free_udp_port();
    test_bail_on_alarm(90);

    pid_t sipd = sipd_start();
    ok(options_ok(port), "sipd answers on 127.0.0.1:%u", port);
    pid_t syncd = sync_start();

    char target[64], screen[600], out[600], calls[16];
    snprintf(target, sizeof target, "127.0.0.1:%u", port);
    snprintf(screen, sizeof screen, "%s.screen", reg);
    snprintf(out, sizeof out, "%s.sipp.out", reg);
    snprintf(calls, sizeof calls, "%d", CALLS);
    char *sargv[] = {(char *)sipp, target, "-sf", scenario, "-i", "127.0.0.1", "-nostdin",
                     "-trace_screen", "-screen_file", screen, "-m", calls, "-l", calls, "-r", "50",
                     "-d", PAUSE_MS, "-recv_timeout", "20000", NULL};
    pid_t sp = test_spawn(sargv, out);

    shmreg *h;
    if (shmreg_open(reg, NULL, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    while (active(h) < CALLS)
        test_sleep_us(20000);
    is(active(h), CALLS, "%d calls established and held", CALLS);
    /* Everything so far durable: the daemon's durable position covers
     * every event published until now (not "0 behind": sipd may go on
     * publishing, and the durable position moves once a second). */
    uint64_t upto = test_stats(h).events_published;
    for (;;) {
        shmreg_stats st = test_stats(h);
        if (st.sync_alive && st.sync_durable_seq >= upto)
            break;
        test_sleep_us(10000);
    }
    is(active(h), CALLS, "all %d still established when the daemon has them on disk", CALLS);
    shmreg_close(h);

    kill(-sipd, SIGKILL);
    kill(-syncd, SIGKILL);
    is(reap(sipd), 128 + SIGKILL, "sipd and its workers SIGKILLed");
    is(reap(syncd), 128 + SIGKILL, "shmreg-sync SIGKILLed");
    is(shmreg_destroy(reg, 1), 0, "the segment is deleted (the reboot)");

    char rlog[600];
    snprintf(rlog, sizeof rlog, "%s.restore.out", reg);
    char *rargv[] = {ctl_bin, "-r", reg, "--json", "restore", "--from", sdir, NULL};
    is(reap(test_spawn(rargv, rlog)), 0, "shmregctl restore --from the sync directory");
    if (shmreg_open(reg, NULL, &h) != 0)
        bail_out("reopen: %s", shmreg_errmsg());
    is(active(h), CALLS, "%d Active calls restored", CALLS);
    shmreg_stats st = test_stats(h);
    is(st.dialogs, CALLS, "with their %d dialogs", CALLS);
    shmreg_close(h);

    sipd = sipd_start();
    ok(options_ok(port), "sipd started again on the restored registry");
    uint64_t t2 = test_now_ns();
    syncd = sync_start();
    if (shmreg_open(reg, NULL, &h) != 0)
        bail_out("reopen: %s", shmreg_errmsg());
    for (;;) { /* up (its signal handlers set): it has committed its first resync */
        shmreg_stats st2 = test_stats(h);
        if (st2.sync_alive && st2.sync_commit_ns > t2)
            break;
        test_sleep_us(10000);
    }
    shmreg_close(h);

    int rc = reap(sp);
    long long okc = screen_value(screen, "Successful call"), failed = screen_value(screen, "Failed call");
    is(rc, 0, "sipp exits 0");
    is(okc, CALLS, "every BYE after the restore answered 200: %lld successful calls", okc);
    is(failed, 0, "no call failed (no 481)");

    kill(-syncd, SIGTERM);
    is(reap(syncd), 0, "shmreg-sync stops on SIGTERM");
    kill(sipd, SIGTERM);
    is(reap(sipd), 0, "sipd stops on SIGTERM");
    alarm(0);
    return done_testing();
}
