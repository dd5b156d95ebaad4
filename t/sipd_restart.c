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


static char reg[512], sdir[512], sipd_bin[600], sync_bin[600], ctl_bin[600], scenario[600];
static unsigned port;

static pid_t sipd_start(void)
{
    char listen[64], log[600];
    snprintf(listen, sizeof listen, "127.0.0.1:%u", port);
    snprintf(log, sizeof log, "%s.sipd.log", reg);
    char *argv[] = {sipd_bin, "-r", reg, "-l", listen, "-w", "2", "-e", "3", NULL};
    pid_t pid = test_spawn(argv, log);
    for (int i = 0; i < 300 && !test_sip_options_ok("127.0.0.1", port); i++)
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
    ok(test_sip_options_ok("127.0.0.1", port), "sipd answers on 127.0.0.1:%u", port);
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
    is(test_reap_group(sipd), 128 + SIGKILL, "sipd and its workers SIGKILLed");
    is(test_reap_group(syncd), 128 + SIGKILL, "shmreg-sync SIGKILLed");
    is(shmreg_destroy(reg, 1), 0, "the segment is deleted (the reboot)");

    char rlog[600];
    snprintf(rlog, sizeof rlog, "%s.restore.out", reg);
    char *rargv[] = {ctl_bin, "-r", reg, "--json", "restore", "--from", sdir, NULL};
    is(test_reap_group(test_spawn(rargv, rlog)), 0, "shmregctl restore --from the sync directory");
    if (shmreg_open(reg, NULL, &h) != 0)
        bail_out("reopen: %s", shmreg_errmsg());
    is(active(h), CALLS, "%d Active calls restored", CALLS);
    shmreg_stats st = test_stats(h);
    is(st.dialogs, CALLS, "with their %d dialogs", CALLS);
    shmreg_close(h);

    sipd = sipd_start();
    ok(test_sip_options_ok("127.0.0.1", port), "sipd started again on the restored registry");
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

    int rc = test_reap_group(sp);
    long long okc = test_sipp_screen_value(screen, "Successful call"), failed = test_sipp_screen_value(screen, "Failed call");
    is(rc, 0, "sipp exits 0");
    is(okc, CALLS, "every BYE after the restore answered 200: %lld successful calls", okc);
    is(failed, 0, "no call failed (no 481)");

    kill(-syncd, SIGTERM);
    is(test_reap_group(syncd), 0, "shmreg-sync stops on SIGTERM");
    kill(sipd, SIGTERM);
    is(test_reap_group(sipd), 0, "sipd stops on SIGTERM");
    alarm(0);
    return done_testing();
}
