/*
 * sipd_control.c — sipd's call control (issue 17) under sipp: what the
 * registry's profiles and timeouts give a SIP server, proved with
 * software nobody here wrote.
 *
 *   uac_limit   the "sipd" config says max_calls_per_caller 2: three
 *               calls at once from one caller get 200, 200 and 486 Busy
 *               Here (the 486 ACKed: sent once); after they end, the
 *               caller's profile counts 0 and a new call gets in
 *   uac_maxdur  the config says max_call_s 1: sipd ends the answered
 *               call with one BYE when the registry's timeout fires, the
 *               call ends Terminated
 * The no-ACK timeout (64*T1) is t/sipd_sipp.c's uac_noack. After each:
 * the exact number of sessions in each state, `shmregctl list` shows none
 * non-final and `shmregctl check` is clean.
 */
#include "sipd_util.h"

static char *const TIMERS[] = { "-1", "50", "-2", "400", NULL };

static sipp_result run(const server *s, const char *name, const char *calls, const char *hold_ms,
                       const char *trace)
{
    char sf[700], port[16];
    snprintf(sf, sizeof sf, "%s/examples/sipd/%s.xml", root, name);
    snprintf(port, sizeof port, "%u", test_free_udp_port());
    char *args[] = { "-sf", sf, "-m", (char *)calls, "-l", (char *)calls, "-d", (char *)hold_ms,
                     "-p", port, "-trace_msg", "-message_file", (char *)trace, NULL };
    unlink(trace);
    return sipp_run(s, name, args, 60000);
}

static uint64_t caller_count(const server *s)
{
    shmreg *h = reg_open(s->reg);
    uint64_t n = 99;
    if (shmreg_profile_count(h, (shmreg_str){ "caller", 6 }, (shmreg_str){ "sipp@127.0.0.1", 14 },
                             &n) != 0)
        n = 98;
    shmreg_close(h);
    return n;
}

static void test_limit(void)
{
    server s;
    static const char *const cfg[] = { "max_calls_per_caller", "2", NULL };
    if (sipd_start_cfg(&s, "limit", 2, "0", "60000", TIMERS, cfg) != 0)
        bail_out("sipd did not start");
    char trace[600];
    snprintf(trace, sizeof trace, "%s.limit.msg", s.reg);
    sipp_result r = run(&s, "uac_limit", "3", "1500", trace);
    ok(r.rc == 0 && r.ok == 3 && r.failed == 0,
       "uac_limit, 3 calls at once from one caller: each ends as the scenario allows (rc %d, "
       "%lld ok, %lld failed)", r.rc, r.ok, r.failed);
    is(trace_count(trace, "SIP/2.0 200 OK", "CSeq: 1 INVITE"), 2, "two were answered 200");
    is(trace_count(trace, "SIP/2.0 486 Busy Here", "CSeq: 1 INVITE"), 1,
       "the third got 486 Busy Here, once (its ACK matched)");
    is(caller_count(&s), 0, "the calls over, the caller's profile counts 0");

    r = run(&s, "uac_limit", "1", "100", trace);
    ok(r.rc == 0 && r.ok == 1, "a new call from the caller (rc %d, %lld ok)", r.rc, r.ok);
    is(trace_count(trace, "SIP/2.0 200 OK", "CSeq: 1 INVITE"), 1, "gets in: 200");
    is(caller_count(&s), 0, "and leaves the profile when it ends");

    uint64_t want[SHMREG_STATE_COUNT] = { 0 };
    want[SHMREG_STATE_TERMINATED] = 3;
    want[SHMREG_STATE_FAILED] = 1;
    states_are(s.reg, "after uac_limit, sessions by state", want);
    registry_final(s.reg, "after uac_limit");
    is(sipd_stop(&s), 0, "sipd: SIGTERM, exit 0");
    char *log = slurp(s.log);
    is(stat_of(log, "caller_limit"), 1, "sipd counted one call refused at the limit");
    is(stat_of(log, "registry_errors"), 0, "no registry call failed");
    ok(strstr(log, "calls per caller 2") != NULL, "the limit came from the config");
    free(log);
}

static void test_max_duration(void)
{
    server s;
    static const char *const cfg[] = { "max_call_s", "1", NULL };
    if (sipd_start_cfg(&s, "maxdur", 2, "0", "60000", TIMERS, cfg) != 0)
        bail_out("sipd did not start");
    char trace[600];
    snprintf(trace, sizeof trace, "%s.maxdur.msg", s.reg);
    uint64_t t0 = now_ms();
    sipp_result r = run(&s, "uac_maxdur", "1", "0", trace);
    uint64_t took = now_ms() - t0;
    ok(r.rc == 0 && r.ok == 1, "uac_maxdur: sipp answered sipd's BYE (rc %d, %lld ok)", r.rc, r.ok);
    is(trace_count(trace, "BYE sip:", "CSeq: 1 BYE"), 1, "one BYE from sipd");
    ok(took >= 1000, "not before the maximum duration (%llu ms)", (unsigned long long)took);
    /* Its 200 ends the dialog: Terminating -> Terminated. */
    uint64_t want[SHMREG_STATE_COUNT] = { 0 }, c[SHMREG_STATE_COUNT] = { 0 };
    want[SHMREG_STATE_TERMINATED] = 1;
    shmreg *h = reg_open(s.reg);
    for (uint64_t end = now_ms() + 5000; now_ms() < end; test_sleep_us(50 * 1000u))
        if (shmreg_session_counts(h, c, SHMREG_STATE_COUNT) == 0 && c[SHMREG_STATE_TERMINATED] == 1)
            break;
    shmreg_close(h);
    states_are(s.reg, "after uac_maxdur, sessions by state", want);
    registry_final(s.reg, "after uac_maxdur");
    is(sipd_stop(&s), 0, "sipd: SIGTERM, exit 0");
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    sipd_test_init();
    test_bail_on_alarm(ASAN_BUILD ? 200 : 120);
    test_limit();
    test_max_duration();
    return done_testing();
}
