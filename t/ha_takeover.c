/*
 * ha_takeover.c — calls survive a dead host, end to end. Two "hosts" on
 * this machine, each a registry with its own node ID and its own
 * shmreg-sync mirroring through one real redis-server: host A (node 1)
 * runs sipd on the floating address 127.0.0.2; host B (node 2) only
 * mirrors. sipp (examples/sipd/uac_long.xml) sets up CALLS calls through
 * the floating address and holds them. Once B holds a copy of every call,
 * host A is killed whole: sipd, its workers and its daemon SIGKILLed, its
 * segment deleted. B's daemon sees A's lease run out, adopts A's calls
 * (they become B's own, flagged adopted, one event each), and B starts
 * sipd on the floating address, as a host taking over a virtual IP does.
 * Every BYE sipp then sends is answered 200: no 481, no call lost.
 *
 * Waits are "until X, at most N seconds", never timing assertions; the
 * takeover time (A killed to the last call adopted) is printed as a
 * diagnostic.
 */
#include <signal.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "redisutil.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#if defined(__SANITIZE_ADDRESS__)
#define CALLS 10
#else
#define CALLS 40
#endif
#define PAUSE_MS "9000"
#define FLOATING "127.0.0.2"

static const char *sipp = "/usr/bin/sipp";
static char sipd_bin[600], sync_bin[600], scenario[600], redis_url[64];
static unsigned port;

static shmreg *host_new(const char *reg, uint32_t node)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    o.max_sessions = 1024;
    o.node_id = node;
    shmreg *h = NULL;
    if (shmreg_open(reg, &o, &h) != 0)
        bail_out("create %s: %s", reg, shmreg_errmsg());
    return h;
}

static pid_t sipd_start(const char *reg)
{
    char listen[64], log[600];
    snprintf(listen, sizeof listen, FLOATING ":%u", port);
    snprintf(log, sizeof log, "%s.sipd.log", reg);
    char *argv[] = {sipd_bin, "-r", (char *)reg, "-l", listen, "-w", "2", "-e", "3", NULL};
    pid_t pid = test_spawn(argv, log);
    for (int i = 0; i < 300 && !test_sip_options_ok(FLOATING, port); i++)
        test_sleep_us(50000);
    return pid;
}

static pid_t mirror_start(const char *reg)
{
    char log[600];
    snprintf(log, sizeof log, "%s.sync.log", reg);
    char *argv[] = {sync_bin, "-r", (char *)reg, "--redis", redis_url, "--interval", "20",
                    "--lease-ms", "1000", NULL};
    return test_spawn(argv, log);
}

/* Live sessions of `h` in `state` owned by `node`. */
static unsigned owned(shmreg *h, uint32_t node, int state)
{
    unsigned n = 0;
    uint64_t cursor = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cursor, SHMREG_STATE_ANY, &v) == 0)
        n += v.owner_node == node && (state == 0 || v.state == state);
    shmreg_read_end(h);
    return n;
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    if (access("/usr/bin/redis-server", X_OK) != 0)
        skip_all("redis-server not installed");
    const char *b = test_build_dir();
    snprintf(sipd_bin, sizeof sipd_bin, "%s/examples/sipd", b);
    snprintf(sync_bin, sizeof sync_bin, "%s/tools/shmreg-sync", b);
    snprintf(scenario, sizeof scenario, "%s/../../examples/sipd/uac_long.xml", b);
    if (access(sipd_bin, X_OK) || access(sync_bin, X_OK))
        bail_out("build sipd and shmreg-sync first (make)");
    test_bail_on_alarm(120);

    redis_srv rs;
    const char *rdir = test_dir("redis");
    mkdir(rdir, 0700);
    if (redis_start(&rs, redis_free_port(21000 + (int)(getpid() % 4000)), rdir, NULL) != 0)
        bail_out("cannot start redis-server");
    snprintf(redis_url, sizeof redis_url, "redis://127.0.0.1:%d", rs.port);
    port = test_free_udp_port();

    char rega[512], regb[512];
    snprintf(rega, sizeof rega, "%s", test_dir("hostA"));
    snprintf(regb, sizeof regb, "%s", test_dir("hostB"));
    shmreg *a = host_new(rega, 1), *hb = host_new(regb, 2);
    shmreg_close(a);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(hb, SHMREG_EV_MASK(SHMREG_EV_SESSION_ADOPTED), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    pid_t mb = mirror_start(regb), ma = mirror_start(rega);
    pid_t sa = sipd_start(rega);
    ok(test_sip_options_ok(FLOATING, port), "host A's sipd answers on the floating address %s:%u",
       FLOATING, port);

    char target[64], screen[600], out[600], calls[16];
    snprintf(target, sizeof target, FLOATING ":%u", port);
    snprintf(screen, sizeof screen, "%s.screen", rega);
    snprintf(out, sizeof out, "%s.sipp.out", rega);
    snprintf(calls, sizeof calls, "%d", CALLS);
    char *sargv[] = {(char *)sipp, target, "-sf", scenario, "-i", "127.0.0.1", "-nostdin",
                     "-trace_screen", "-screen_file", screen, "-m", calls, "-l", calls, "-r", "50",
                     "-d", PAUSE_MS, "-recv_timeout", "30000", NULL};
    pid_t sp = test_spawn(sargv, out);

    if (shmreg_open(rega, NULL, &a) != 0)
        bail_out("open A: %s", shmreg_errmsg());
    while (owned(a, 1, SHMREG_STATE_ACTIVE) < CALLS)
        test_sleep_us(20000);
    is(owned(a, 1, SHMREG_STATE_ACTIVE), CALLS, "A holds %d Active calls", CALLS);
    shmreg_close(a);
    while (owned(hb, 1, SHMREG_STATE_ACTIVE) < CALLS)
        test_sleep_us(20000);
    is(owned(hb, 1, SHMREG_STATE_ACTIVE), CALLS, "B holds a copy of each, Active, owned by node 1");
    shmreg_stats st;
    shmreg_stat(hb, &st);
    is(st.foreign_sessions, CALLS, "B's stat: %d foreign sessions", CALLS);
    is(st.dialogs, CALLS, "and their %d dialogs", CALLS);

    /* Host A dies whole. */
    kill(-sa, SIGKILL);
    kill(-ma, SIGKILL);
    uint64_t t0 = test_now_ns();
    is(test_reap_group(sa), 128 + SIGKILL, "A's sipd and workers SIGKILLed");
    is(test_reap_group(ma), 128 + SIGKILL, "A's shmreg-sync SIGKILLed");
    is(shmreg_destroy(rega, 1), 0, "A's segment deleted");

    while (owned(hb, 2, SHMREG_STATE_ACTIVE) < CALLS)
        test_sleep_us(10000);
    uint64_t t1 = test_now_ns();
    is(owned(hb, 2, SHMREG_STATE_ACTIVE), CALLS, "B adopted all %d calls: owner node 2, Active", CALLS);
    diag("takeover: %.0f ms from A's death to the last call adopted (lease 1000 ms)",
         (double)(t1 - t0) / 1e6);
    shmreg_event ev[CALLS + 8];
    int ne = test_drain_events(sub, ev, CALLS + 8);
    is(ne, CALLS, "one session_adopted event per call");
    uint64_t cursor = 0;
    shmreg_session v;
    unsigned flagged = 0;
    shmreg_read_begin(hb);
    while (shmreg_session_next(hb, &cursor, SHMREG_STATE_ANY, &v) == 0)
        flagged += (v.flags & (SHMREG_SESSION_ADOPTED | SHMREG_SESSION_FOREIGN)) == SHMREG_SESSION_ADOPTED;
    shmreg_read_end(hb);
    is(flagged, CALLS, "each flagged adopted, none foreign");

    pid_t sb = sipd_start(regb);
    ok(test_sip_options_ok(FLOATING, port), "B's sipd took the floating address");
    int rc = test_reap_group(sp);
    long long okc = test_sipp_screen_value(screen, "Successful call"),
              failed = test_sipp_screen_value(screen, "Failed call");
    is(rc, 0, "sipp exits 0");
    is(okc, CALLS, "every BYE after the takeover answered 200: %lld successful calls", okc);
    is(failed, 0, "no call failed (no 481)");
    shmreg_check_report rep;
    is(shmreg_check(hb, 0, &rep, NULL, NULL, NULL), 0, "B's registry checks clean");

    kill(sb, SIGTERM);
    is(test_reap_group(sb), 0, "B's sipd stops on SIGTERM");
    kill(-mb, SIGTERM);
    is(test_reap_group(mb), 0, "B's shmreg-sync stops on SIGTERM");
    shmreg_unsubscribe(sub);
    shmreg_close(hb);
    redis_stop(&rs);
    alarm(0);
    return done_testing();
}
