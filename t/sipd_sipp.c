/*
 * sipd_sipp.c — sipd under sipp scenarios written for issue 18
 * (examples/sipd/uac_*.xml), and under sipp's built-in client losing 10 %
 * of the packets. sipp is software nobody here wrote: what it accepts is
 * what a SIP stack accepts.
 *
 *   uac_noack       the ACK is never sent: sipp counts 11 copies of the 200
 *                   (T1 50 ms, T2 400 ms, 64*T1), then sipd's BYE arrives
 *   uac_415         text/plain offer, never ACKed: 11 copies of the 415
 *   uac_cancel_481  CANCEL with another branch: 481; the right one: 200, 487
 *   uac_lowcseq     BYE with a CSeq below the INVITE's: 500, then 200
 *   uac_lateoffer   no SDP in the INVITE: offer in the 200, answer in the ACK
 *   uac_av          audio + video offer: two m= lines back, video port 0
 *   uac_multipart   multipart/mixed body: its SDP part answered
 *   uac_require     Require: 100rel: 420 with Unsupported: 100rel
 *   uac_compact     compact headers; hold with a=inactive and back
 *   -sn uac -lost 10  400 calls: every call completes or fails in sipp,
 *                   and afterwards no session is left in a non-final state
 * After each: the exact number of sessions in each state; `shmregctl list`
 * shows none non-final and `shmregctl check` is clean.
 */
#include "sipd_util.h"

static char *const TIMERS[] = { "-1", "50", "-2", "400", NULL };

/* One scenario, one call; its sipp exit status and counts. */
static sipp_result scenario(const server *s, const char *name, const char *trace)
{
    char sf[700], port[16];
    snprintf(sf, sizeof sf, "%s/examples/sipd/%s.xml", root, name);
    snprintf(port, sizeof port, "%u", test_free_udp_port());
    char *args[16] = { "-sf", sf, "-m", "1", "-p", port, NULL };
    if (trace) {
        args[6] = "-trace_msg";
        args[7] = "-message_file";
        args[8] = (char *)trace;
        args[9] = NULL;
        unlink(trace);
    }
    return sipp_run(s, name, args, 60000);
}

static int one_ok(sipp_result r) { return r.rc == 0 && r.ok == 1 && r.failed == 0; }

static void test_scenarios(server *s, server *ring)
{
    char trace[600];
    snprintf(trace, sizeof trace, "%s.noack.msg", s->reg);
    sipp_result r = scenario(s, "uac_noack", trace);
    ok(one_ok(r), "uac_noack: sipp answers sipd's BYE (rc %d, %lld ok)", r.rc, r.ok);
    is(trace_count(trace, "SIP/2.0 200 OK", "CSeq: 1 INVITE"), 11,
       "uac_noack: sipp received the 200 11 times (T1 50 ms, T2 400 ms, 64*T1)");
    is(trace_count(trace, "BYE sip:", "CSeq: 1 BYE"), 1, "uac_noack: then one BYE from sipd");

    snprintf(trace, sizeof trace, "%s.415.msg", s->reg);
    r = scenario(s, "uac_415", trace);
    ok(one_ok(r), "uac_415: 415 with Accept: application/sdp (rc %d, %lld ok)", r.rc, r.ok);
    is(trace_count(trace, "SIP/2.0 415 Unsupported Media Type", "CSeq: 1 INVITE"), 11,
       "uac_415: never ACKed, the 415 came 11 times (Timer G until Timer H)");

    static const char *const plain[] = { "uac_lowcseq", "uac_lateoffer", "uac_av",
                                         "uac_multipart", "uac_require", "uac_compact" };
    static const char *const what[] = {
        "BYE with a lower CSeq: 500, the call stays; the next BYE: 200",
        "late offer: our offer in the 200 (0 8 101), the answer in the ACK",
        "audio + video: m=audio, m=video 0 in the answer",
        "multipart/mixed: the SDP part answered",
        "Require: 100rel: 420, Unsupported: 100rel, ACKed",
        "compact headers; a=inactive hold and back",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        r = scenario(s, plain[i], NULL);
        ok(one_ok(r), "%s: %s (rc %d, %lld ok, %lld failed)", plain[i], what[i], r.rc, r.ok,
           r.failed);
    }
    r = scenario(ring, "uac_cancel_481", NULL);
    ok(one_ok(r), "uac_cancel_481: CANCEL with another branch 481, the right one 200 + 487 "
                  "(rc %d, %lld ok)", r.rc, r.ok);

    /* Give the last timers (the 415's Timer H, the BYE's) time to end. */
    test_sleep_us(500 * 1000u);
    uint64_t want[SHMREG_STATE_COUNT] = { 0 }, want_ring[SHMREG_STATE_COUNT] = { 0 };
    want[SHMREG_STATE_FAILED] = 3;      /* noack, 415, require */
    want[SHMREG_STATE_TERMINATED] = 5;  /* lowcseq lateoffer av multipart compact */
    want_ring[SHMREG_STATE_CANCELLED] = 1;
    states_are(s->reg, "after the scenarios, sessions by state", want);
    states_are(ring->reg, "after uac_cancel_481, sessions by state", want_ring);
    registry_final(s->reg, "after the scenarios");
    registry_final(ring->reg, "after uac_cancel_481");
}

/* sipp's built-in client, 10 % of its packets lost. */
static void test_lost(server *s)
{
    enum { CALLS = 400 };
    char calls[16], port[16];
    snprintf(calls, sizeof calls, "%d", CALLS);
    snprintf(port, sizeof port, "%u", test_free_udp_port());
    char *args[] = { "-sn", "uac", "-m", calls, "-r", "50", "-lost", "10", "-p", port, NULL };
    sipp_result r = sipp_run(s, "lost", args, 120000);
    /* sipp's own UAS, at this loss, fails about 1 call in 100: 0, 1, 3
     * and 4 of 200 in four runs here (so 98% of 200, the first bar, was
     * missed by sipd once in a CI run at 5). 400 calls and 97%: at that
     * rate a pass fails by chance about once in 500 runs, while a server
     * that lost calls of its own would fall well below. */
    ok(r.ok + r.failed == CALLS && r.ok >= CALLS * 97 / 100,
       "sipp -lost 10: %lld of %d calls completed, %lld failed (each one either)", r.ok, CALLS,
       r.failed);
    /* A call sipp gave up on is one sipd ends itself within 64*T1 (3.2 s). */
    uint64_t end = now_ms() + 15000, live = 1;
    shmreg *h = reg_open(s->reg);
    while (now_ms() < end && live) {
        uint64_t c[SHMREG_STATE_COUNT] = { 0 };
        shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
        live = 0;
        for (int st = 1; st < SHMREG_STATE_COUNT; st++)
            live += shmreg_state_is_final(st) ? 0 : c[st];
        if (live)
            test_sleep_us(100 * 1000u);
    }
    shmreg_close(h);
    is(live, 0, "all sessions in a final state within 15 s");
    registry_final(s->reg, "after sipp -lost 10");
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    sipd_test_init();
    test_bail_on_alarm(ASAN_BUILD ? 300 : 200);

    server s, ring, lossy;
    if (sipd_start_with(&s, "sipp", 4, "0", "60000", TIMERS) != 0 ||
        sipd_start_with(&ring, "sippring", 2, "2000", "60000", TIMERS) != 0)
        bail_out("sipd did not start");
    test_scenarios(&s, &ring);
    is(sipd_stop(&s), 0, "sipd: SIGTERM, exit 0");
    is(sipd_stop(&ring), 0, "sipd -R 2000: SIGTERM, exit 0");
    char *log = slurp(s.log);
    is(stat_of(log, "ack_timeouts"), 1, "sipd failed one call for want of an ACK");
    is(stat_of(log, "registry_errors"), 0, "no registry call failed");
    free(log);

    if (sipd_start_with(&lossy, "lossy", 4, "0", "2000", TIMERS) != 0)
        bail_out("sipd did not start");
    test_lost(&lossy);
    is(sipd_stop(&lossy), 0, "sipd: SIGTERM, exit 0");
    log = slurp(lossy.log);
    note("under loss: %lld retransmissions, %lld calls failed for want of an ACK",
         stat_of(log, "retransmits"), stat_of(log, "ack_timeouts"));
    free(log);
    registry_settles(lossy.reg, 5000, "after sipd stopped");
    return done_testing();
}
