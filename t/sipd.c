/*
 * sipd.c — the prefork SIP server example (examples/sipd) under a real SIP
 * client, sipp, and under a raw UDP socket.
 *
 * What it shows:
 *   - sipp's built-in uac scenario against sipd with 4 workers: >= 1000
 *     calls at >= 200 calls/s (fewer and slower under ASan), no failed call,
 *     the registry back to zero sessions and dialogs afterwards, the
 *     consistency check clean (library and `shmregctl check`), and in-dialog
 *     requests handled by workers other than the session's creator;
 *   - hold and resume by re-INVITE, an in-dialog OPTIONS, and CANCEL (200 +
 *     487), each checked by sipp and by the call-state events;
 *   - retransmitted INVITEs, even sent back to back so that two workers race
 *     on them, create exactly one session;
 *   - malformed and oversized datagrams are answered 400 or dropped, and
 *     counted; no worker dies and the registry stays consistent;
 *   - a worker killed with SIGKILL in the middle of the load is respawned,
 *     the calls that failed are few (only those it held), the rest
 *     complete, and the registry ends consistent and empty;
 *   - sipd exits 0 on SIGTERM with its workers gone and its handles closed.
 *
 * Every process started here gets its own process group; a watchdog and an
 * exit handler kill those groups, so a failing run leaves nothing behind.
 * Timing is never asserted: waits are "until X, at most N seconds".
 */
#include <fcntl.h>
#include <sys/stat.h>

#include "sipd_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASAN 1
#else
#define ASAN 0
#endif

/* The load: the release build does what the issue asks for. */
static const int LOAD_CALLS = ASAN ? 400 : 1000;
static const int LOAD_RATE = ASAN ? 100 : 200;


/* Call-state events seen by a subscriber of our own. */
typedef struct evcount {
    unsigned created, to_onhold, onhold_to_active, cancelled, terminated;
} evcount;

static void drain(shmreg_sub *sub, evcount *c)
{
    shmreg_event ev[64];
    int n;
    memset(c, 0, sizeof *c);
    while ((n = shmreg_poll(sub, ev, 64, 200 * 1000000LL, NULL)) > 0)
        for (int i = 0; i < n; i++) {
            int o = ev[i].old_state, t = ev[i].new_state;
            if (ev[i].type == SHMREG_EV_SESSION_CREATED)
                c->created++;
            else if (t == SHMREG_STATE_ONHOLD)
                c->to_onhold++;
            else if (o == SHMREG_STATE_ONHOLD && t == SHMREG_STATE_ACTIVE)
                c->onhold_to_active++;
            else if (t == SHMREG_STATE_CANCELLED)
                c->cancelled++;
            else if (t == SHMREG_STATE_TERMINATED)
                c->terminated++;
        }
}

/* ------------------------------------------------------------ the tests */

/* Raw datagrams: retransmissions, races, junk. */
static void test_raw(server *s)
{
    client c;
    char msg[70000], resp[70000];
    client_open(&c, s->port);

    /* One INVITE sent five times: one session, the same To-tag in every answer. */
    int n = request(msg, sizeof msg, &c, "INVITE", "retrans-1", NULL, 1, OFFER);
    for (int i = 0; i < 5; i++)
        client_send(&c, msg, (size_t)n);
    char tag[64] = "";
    int oks = 0, same_tag = 1, with_sdp = 1, r;
    while ((r = client_recv(&c, resp, sizeof resp, 700)) > 0) {
        sip_msg m;
        if (sip_parse(resp, (size_t)r, &m, NULL) != SIP_OK)
            continue;
        if (m.status == 200) {
            oks++;
            if (!tag[0])
                snprintf(tag, sizeof tag, "%.*s", (int)m.to_tag.n, m.to_tag.p);
            same_tag &= m.to_tag.n == strlen(tag) && memcmp(m.to_tag.p, tag, m.to_tag.n) == 0;
            with_sdp &= memmem(m.body.p, m.body.n, "m=audio 1", 9) != NULL;
        }
    }
    ok(oks >= 1 && same_tag && with_sdp && tag[0],
       "5 copies of an INVITE: %d 200 OKs, all with To-tag %s and the SDP answer", oks, tag);
    shmreg *h = reg_open(s->reg);
    shmreg_session v;
    uint64_t cur = 0;
    int found = 0, sdps = 0, state = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        if (v.str[SHMREG_FIELD_CALL_ID].len == 9 &&
            memcmp(v.str[SHMREG_FIELD_CALL_ID].ptr, "retrans-1", 9) == 0) {
            found++;
            state = v.state;
            sdps = v.sdp[SHMREG_SDP_REMOTE].len == strlen(OFFER) &&
                   memcmp(v.sdp[SHMREG_SDP_REMOTE].ptr, OFFER, strlen(OFFER)) == 0 &&
                   memmem(v.sdp[SHMREG_SDP_LOCAL].ptr, v.sdp[SHMREG_SDP_LOCAL].len,
                          "a=rtpmap:101 telephone-event/8000", 33) != NULL;
        }
    shmreg_read_end(h);
    is(found, 1, "exactly one session for the retransmitted INVITE");
    ok(state == SHMREG_STATE_ACTIVE && sdps,
       "it is Active; the offer and our answer are its remote and local SDP");

    /* ACK and BYE with that tag end it. */
    n = request(msg, sizeof msg, &c, "ACK", "retrans-1", tag, 1, NULL);
    client_send(&c, msg, (size_t)n);
    n = request(msg, sizeof msg, &c, "BYE", "retrans-1", tag, 2, NULL);
    client_send(&c, msg, (size_t)n);
    int bye_ok = 0;
    while ((r = client_recv(&c, resp, sizeof resp, 500)) > 0)
        bye_ok |= strncmp(resp, "SIP/2.0 200 OK", 14) == 0 && strstr(resp, "CSeq: 2 BYE");
    ok(bye_ok, "BYE with the derived To-tag: 200 OK");

    /* Back-to-back duplicates of 30 INVITEs: workers race to create each
     * one; the dialog bind lets exactly one of them win. */
    for (int i = 0; i < 30; i++) {
        char cid[32];
        snprintf(cid, sizeof cid, "race-%d", i);
        n = request(msg, sizeof msg, &c, "INVITE", cid, NULL, 1, OFFER);
        client_send(&c, msg, (size_t)n);
        client_send(&c, msg, (size_t)n);
        client_send(&c, msg, (size_t)n);
    }
    while (client_recv(&c, resp, sizeof resp, 500) > 0)
        ;
    int races = 0, dup = 0;
    char seen[30] = { 0 };
    cur = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0) {
        const shmreg_str *cid = &v.str[SHMREG_FIELD_CALL_ID];
        if (cid->len > 5 && cid->len < 8 && memcmp(cid->ptr, "race-", 5) == 0) {
            char num[4] = "";   /* strings in place are not NUL-terminated */
            memcpy(num, cid->ptr + 5, cid->len - 5);
            int i = atoi(num);
            races++;
            if (i >= 0 && i < 30 && seen[i]++)
                dup++;
        }
    }
    shmreg_read_end(h);
    ok(races == 30 && dup == 0, "30 INVITEs sent 3 times back to back: %d sessions, %d duplicates",
       races, dup);
    /* End them (their To-tags come from the 200s we drained: ask again). */
    for (int i = 0; i < 30; i++) {
        char cid[32], t[64] = "";
        snprintf(cid, sizeof cid, "race-%d", i);
        n = request(msg, sizeof msg, &c, "INVITE", cid, NULL, 1, OFFER);
        client_send(&c, msg, (size_t)n);
        uint64_t end = now_ms() + 1000;
        while (!t[0] && now_ms() < end && (r = client_recv(&c, resp, sizeof resp, 300)) > 0) {
            sip_msg m;
            if (sip_parse(resp, (size_t)r, &m, NULL) == SIP_OK && m.status == 200 &&
                m.call_id.n == strlen(cid) && memcmp(m.call_id.p, cid, m.call_id.n) == 0)
                snprintf(t, sizeof t, "%.*s", (int)m.to_tag.n, m.to_tag.p);
        }
        n = request(msg, sizeof msg, &c, "BYE", cid, t, 2, NULL);
        client_send(&c, msg, (size_t)n);
    }
    while (client_recv(&c, resp, sizeof resp, 300) > 0)
        ;

    /* Junk. Each: what comes back (a 400, or nothing). */
    pid_t before[64], after[64];
    int nb = worker_pids(h, s->pid, before, 64);
    struct { const char *name; int want400; } junk[8];
    int nj = 0;
    char *bufs[8];
    size_t lens[8];
    /* a Content-Length that lies */
    bufs[nj] = malloc(4096);
    lens[nj] = (size_t)request(bufs[nj], 4096, &c, "INVITE", "junk-1", NULL, 1, OFFER);
    memcpy(strstr(bufs[nj], "Content-Length: ") + 16, "999", 3);
    junk[nj++] = (typeof(junk[0])){ "Content-Length mismatch", 1 };
    /* missing Call-ID: cannot be answered */
    bufs[nj] = malloc(4096);
    lens[nj] = (size_t)snprintf(bufs[nj], 4096,
                                "INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bKj2\r\n"
                                "From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCSeq: 1 INVITE\r\n"
                                "Content-Length: 0\r\n\r\n", c.lport);
    junk[nj++] = (typeof(junk[0])){ "no Call-ID", 0 };
    /* binary junk */
    bufs[nj] = malloc(1500);
    for (int i = 0; i < 1500; i++)
        bufs[nj][i] = (char)(i * 131 + 7);
    lens[nj] = 1500;
    junk[nj++] = (typeof(junk[0])){ "binary junk", 0 };
    /* truncated INVITE */
    bufs[nj] = malloc(4096);
    lens[nj] = (size_t)request(bufs[nj], 4096, &c, "INVITE", "junk-4", NULL, 1, OFFER) / 3;
    junk[nj++] = (typeof(junk[0])){ "truncated INVITE", 0 };
    /* oversized: a 65000-byte header line */
    bufs[nj] = malloc(65100);
    int hl = request(bufs[nj], 65100, &c, "OPTIONS", "junk-5", NULL, 1, NULL);
    char *end_of_cseq = strstr(bufs[nj], "Max-Forwards");
    memmove(end_of_cseq + 65000 - hl, end_of_cseq, (size_t)(bufs[nj] + hl - end_of_cseq));
    memset(end_of_cseq, 'x', (size_t)(65000 - hl));
    memcpy(end_of_cseq, "X-Big: ", 7);
    end_of_cseq[65000 - hl - 2] = '\r';
    end_of_cseq[65000 - hl - 1] = '\n';
    lens[nj] = 65000;
    junk[nj++] = (typeof(junk[0])){ "65000-byte datagram, one huge line", 1 };
    /* an INVITE whose SDP is junk */
    bufs[nj] = malloc(4096);
    lens[nj] = (size_t)request(bufs[nj], 4096, &c, "INVITE", "junk-6", NULL, 1, "hello\r\n");
    junk[nj++] = (typeof(junk[0])){ "INVITE with a junk SDP", 1 };
    for (int i = 0; i < nj; i++) {
        client_send(&c, bufs[i], lens[i]);
        int got400 = 0;
        while ((r = client_recv(&c, resp, sizeof resp, 400)) > 0)
            got400 |= strncmp(resp, "SIP/2.0 400 ", 12) == 0;
        ok(got400 == junk[i].want400, "%s: %s", junk[i].name,
           junk[i].want400 ? "400 Bad Request" : "dropped");
        free(bufs[i]);
    }
    /* and 500 more mutated INVITEs, fast. A mutation may leave one valid:
     * such a call is never ended by us, so it is removed afterwards. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_REALTIME, &t0);
    unsigned seed = 99;
    for (int i = 0; i < 500; i++) {
        int len = 1 + (int)((seed = seed * 1103515245u + 12345u) >> 16) % 2000;
        n = request(msg, sizeof msg, &c, "INVITE", "fuzz", NULL, 1, OFFER);
        for (int k = 0; k < 8; k++) {
            seed = seed * 1103515245u + 12345u;
            msg[seed % (unsigned)n] = (char)(seed >> 8);
        }
        client_send(&c, msg, (size_t)(len < n ? len : n));
    }
    while (client_recv(&c, resp, sizeof resp, 500) > 0)
        ;
    test_sleep_us(300 * 1000u);
    clock_gettime(CLOCK_REALTIME, &t1);
    uint64_t from = (uint64_t)t0.tv_sec * 1000000000u + (uint64_t)t0.tv_nsec;
    uint64_t to = (uint64_t)t1.tv_sec * 1000000000u + (uint64_t)t1.tv_nsec;
    shmreg_id left[64];
    int nleft = 0;
    cur = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        if (v.created_ns >= from && v.created_ns <= to && nleft < 64)
            left[nleft++] = v.id;
    shmreg_read_end(h);
    for (int i = 0; i < nleft; i++)
        shmreg_session_delete(h, &left[i]);
    note("%d mutated INVITEs were still valid calls (removed)", nleft);
    int na = worker_pids(h, s->pid, after, 64);
    int same = na == nb;
    for (int i = 0; same && i < nb; i++) {
        int f = 0;
        for (int k = 0; k < na; k++)
            f |= before[i] == after[k];
        same &= f;
    }
    ok(same && na == (int)s->workers, "after the junk: the same %d workers, none died", na);
    ok(options_ok(s->port), "and they still answer");
    shmreg_close(h);
    close(c.fd);
}

/* ------------------------------------------------------------ orphans */


struct orphan {
    const char *reg, *cid, *tag, *ftag;
};

/* In a child that then exits: a ringing call as a worker would leave it
 * if it died between its 180 and its 200. */
static void make_orphan(void *arg)
{
    const struct orphan *o = arg;
    shmreg *h = NULL;
    shmreg_id id;
    static const char answer[] = "v=0\r\no=sipd 1 1 IN IP4 127.0.0.1\r\ns=sipd\r\n"
                                 "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 12000 RTP/AVP 0\r\n";
    unsigned char cseq[4] = { 0, 0, 0, 1 };
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){ o->cid, strlen(o->cid) };
    f.str[SHMREG_FIELD_LOCAL_TAG] = (shmreg_str){ o->tag, strlen(o->tag) };
    f.str[SHMREG_FIELD_REMOTE_TAG] = (shmreg_str){ o->ftag, strlen(o->ftag) };
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ (const char *)cseq, 4 };
    ok(shmreg_open(o->reg, NULL, &h) == 0 && shmreg_session_create(h, &f, &id) == 0 &&
           shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, OFFER, strlen(OFFER)) == 0 &&
           shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, answer, sizeof answer - 1) == 0 &&
           shmreg_dialog_bind(h, f.str[SHMREG_FIELD_CALL_ID], f.str[SHMREG_FIELD_LOCAL_TAG],
                              f.str[SHMREG_FIELD_REMOTE_TAG], &id) == 0 &&
           shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING,
                                     NULL) == 0,
       "orphan %s set up", o->cid);
    shmreg_close(h);
}

/* Calls left ringing by a worker that died: a retransmitted INVITE gets
 * its 200 from whichever worker it reaches (with the SDP answer the dead
 * one stored), and a call nobody asks about again is failed by the master
 * and removed. */
static void test_orphans(server *s)
{
    shmreg *h = reg_open(s->reg);
    char tag_a[17], tag_b[17];
    if (derive_tag(h, "orphan-a", "ft-orphan-a", tag_a) != 0 ||
        derive_tag(h, "orphan-b", "ft-orphan-b", tag_b) != 0) {
        ok(0, "the sipd config holds the tag key");
        shmreg_close(h);
        return;
    }
    shmreg_sub *sub = NULL;
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED) |
                            SHMREG_EV_MASK(SHMREG_EV_SESSION_DELETED), NULL, &sub);
    struct orphan a = { s->reg, "orphan-a", tag_a, "ft-orphan-a" };
    struct orphan b = { s->reg, "orphan-b", tag_b, "ft-orphan-b" };
    is(test_wait(test_fork(make_orphan, &a)), 0, "a child left call orphan-a ringing and died");
    is(test_wait(test_fork(make_orphan, &b)), 0, "a child left call orphan-b ringing and died");

    client c;
    char msg[4096], resp[4096];
    client_open(&c, s->port);
    int n = request(msg, sizeof msg, &c, "INVITE", "orphan-a", NULL, 1, OFFER);
    client_send(&c, msg, (size_t)n);
    int got200 = 0, r;
    while ((r = client_recv(&c, resp, sizeof resp, 500)) > 0) {
        sip_msg m;
        if (sip_parse(resp, (size_t)r, &m, NULL) == SIP_OK && m.status == 200)
            got200 = str_is_(m.to_tag, tag_a) &&
                     memmem(m.body.p, m.body.n, "m=audio 12000", 13) != NULL;
    }
    ok(got200, "retransmitted INVITE of an orphan: adopted, 200 with its stored answer");
    n = request(msg, sizeof msg, &c, "BYE", "orphan-a", tag_a, 2, NULL);
    client_send(&c, msg, (size_t)n);
    while (client_recv(&c, resp, sizeof resp, 300) > 0)
        ;
    close(c.fd);

    /* orphan-b: Failed after ~2 s, deleted after the linger time. */
    int failed = 0, deleted = 0;
    uint64_t end = now_ms() + 8000;
    while (now_ms() < end && !deleted) {
        shmreg_event ev[16];
        int k = shmreg_poll(sub, ev, 16, 200 * 1000000LL, NULL);
        for (int i = 0; i < k; i++) {
            if (ev[i].type == SHMREG_EV_STATE_CHANGED && ev[i].new_state == SHMREG_STATE_FAILED &&
                ev[i].old_state == SHMREG_STATE_RINGING)
                failed++;
            if (ev[i].type == SHMREG_EV_SESSION_DELETED && ev[i].old_state == SHMREG_STATE_FAILED)
                deleted++;
        }
    }
    ok(failed == 1 && deleted == 1,
       "the other orphan: Ringing -> Failed by the master's sweep, then deleted (%d, %d)", failed,
       deleted);
    shmreg_unsubscribe(sub);
    shmreg_close(h);
}

static void test_scenarios(server *s, server *ringing)
{
    char hold[700], cancel[700];
    snprintf(hold, sizeof hold, "%s/examples/sipd/uac_hold.xml", root);
    snprintf(cancel, sizeof cancel, "%s/examples/sipd/uac_cancel.xml", root);

    shmreg *h = reg_open(s->reg);
    shmreg_sub *sub = NULL;
    evcount ec;
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED) |
                            SHMREG_EV_MASK(SHMREG_EV_SESSION_CREATED), NULL, &sub);
    char *hold_args[] = { "-sf", hold, "-m", "10", "-r", "10", NULL };
    sipp_result r = sipp_run(s, "hold", hold_args, 30000);
    ok(r.rc == 0 && r.ok == 10 && r.failed == 0,
       "sipp hold scenario: 10 calls put on hold and resumed (rc %d, %lld ok, %lld failed)",
       r.rc, r.ok, r.failed);
    drain(sub, &ec);
    ok(ec.created == 10 && ec.to_onhold == 10 && ec.onhold_to_active == 10 && ec.terminated == 10,
       "events: 10 created, 10 Active->OnHold, 10 OnHold->Active, 10 Terminated "
       "(%u %u %u %u)", ec.created, ec.to_onhold, ec.onhold_to_active, ec.terminated);
    shmreg_unsubscribe(sub);
    shmreg_close(h);

    h = reg_open(ringing->reg);
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_STATE_CHANGED) |
                            SHMREG_EV_MASK(SHMREG_EV_SESSION_CREATED), NULL, &sub);
    char *cancel_args[] = { "-sf", cancel, "-m", "10", "-r", "10", NULL };
    r = sipp_run(ringing, "cancel", cancel_args, 30000);
    ok(r.rc == 0 && r.ok == 10 && r.failed == 0,
       "sipp cancel scenario: 10 ringing calls cancelled, 200 + 487 (rc %d, %lld ok, %lld failed)",
       r.rc, r.ok, r.failed);
    drain(sub, &ec);
    ok(ec.created == 10 && ec.cancelled == 10, "events: 10 created, 10 Ringing->Cancelled (%u %u)",
       ec.created, ec.cancelled);
    shmreg_unsubscribe(sub);
    shmreg_close(h);
}

static void test_load(server *s)
{
    char calls[16], rate[16];
    snprintf(calls, sizeof calls, "%d", LOAD_CALLS);
    snprintf(rate, sizeof rate, "%d", LOAD_RATE);
    char *args[] = { "-sn", "uac", "-r", rate, "-m", calls, "-l", "400", NULL };
    uint64_t t0 = now_ms();
    sipp_result r = sipp_run(s, "load", args, 60000);
    uint64_t ms = now_ms() - t0;
    ok(r.rc == 0 && r.ok == LOAD_CALLS && r.failed == 0,
       "sipp uac: %d calls at %d calls/s against 4 workers: %lld successful, %lld failed (rc %d)",
       LOAD_CALLS, LOAD_RATE, r.ok, r.failed, r.rc);
    note("the run took %llu ms", (unsigned long long)ms);
}

static void test_kill(server *s)
{
    char calls[16], rate[16], screen[600];
    snprintf(calls, sizeof calls, "%d", LOAD_CALLS);
    snprintf(rate, sizeof rate, "%d", LOAD_RATE);
    char *args[] = { "-sn", "uac", "-r", rate, "-m", calls, "-l", "400", NULL };
    shmreg *h = reg_open(s->reg);
    pid_t before[64], after[64];
    int nb = worker_pids(h, s->pid, before, 64);
    pid_t sp = sipp_start(s, "kill", args, screen, sizeof screen);
    /* mid-load: a quarter of the calls made */
    test_sleep_us((unsigned)(LOAD_CALLS * 1000 / LOAD_RATE / 4) * 1000u);
    pid_t victim = nb > 1 ? before[1] : 0;
    ok(victim > 0 && kill(victim, SIGKILL) == 0, "SIGKILL worker pid %d mid-load", (int)victim);
    sipp_result r = sipp_finish(sp, screen, 60000);
    /* A call fails only if the dead worker held it at a point where the
     * client does not retransmit (after its 100 Trying, before its 200). */
    ok(r.ok >= LOAD_CALLS - 10 && r.ok + r.failed == LOAD_CALLS,
       "%lld of %d calls completed, %lld failed (at most 10 may)", r.ok, LOAD_CALLS, r.failed);
    int na = 0, replaced = 0;
    uint64_t end = now_ms() + 10000;
    while (now_ms() < end) {
        na = worker_pids(h, s->pid, after, 64);
        int gone = 1, fresh = 0;
        for (int i = 0; i < na; i++) {
            gone &= after[i] != victim;
            int old = 0;
            for (int k = 0; k < nb; k++)
                old |= after[i] == before[k];
            fresh += !old;
        }
        replaced = gone && fresh == 1 && na == (int)s->workers;
        if (replaced)
            break;
        test_sleep_us(100 * 1000u);
    }
    ok(replaced, "the master respawned it: %d workers, one new pid, the killed one gone", na);
    shmreg_close(h);
    char *log = slurp(s->log);
    ok(strstr(log, "killed by signal 9") && strstr(log, "respawned as pid"),
       "sipd's log tells the death and the respawn");
    free(log);
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    sipd_test_init();
    test_bail_on_alarm(ASAN ? 240 : 150);

    server main_s, ring_s, kill_s;
    if (sipd_start(&main_s, "sipd", 4, "0", "300") != 0)
        bail_out("sipd did not start");
    ok(1, "sipd -w 4 started: 4 workers attached, OPTIONS answered");

    test_raw(&main_s);
    test_orphans(&main_s);
    if (sipd_start(&ring_s, "ring", 2, "2000", "300") != 0)
        bail_out("sipd -R 2000 did not start");
    test_scenarios(&main_s, &ring_s);
    is(sipd_stop(&ring_s), 0, "sipd -R 2000: SIGTERM, exit 0");
    registry_settles(ring_s.reg, 5000, "after the cancels");

    test_load(&main_s);
    registry_settles(main_s.reg, 10000, "after the load");
    is(sipd_stop(&main_s), 0, "SIGTERM: sipd stops its workers and exits 0");
    char *log = slurp(main_s.log);
    long long foreign = stat_of(log, "foreign_in_dialog");
    long long in_dialog = stat_of(log, "in_dialog");
    ok(foreign > 0, "in-dialog requests handled by a worker other than the session's creator: "
                    "%lld of %lld", foreign, in_dialog);
    ok(stat_of(log, "new_calls") >= LOAD_CALLS + 10 + 31,
       "sessions created: %lld (load + scenarios + raw)", stat_of(log, "new_calls"));
    ok(stat_of(log, "invite_retransmits") > 0, "retransmitted INVITEs recognised: %lld",
       stat_of(log, "invite_retransmits"));
    ok(stat_of(log, "replied_400") >= 3 && stat_of(log, "dropped") >= 3,
       "malformed datagrams counted: %lld answered 400, %lld dropped",
       stat_of(log, "replied_400"), stat_of(log, "dropped"));
    is(stat_of(log, "registry_errors"), 0, "no registry call failed");
    is(stat_of(log, "adopted"), 1, "one orphaned call adopted");
    ok(strstr(log, " -> ") && strstr(log, "more state changes:"),
       "the master logged call states, then summaries under load");
    ok(!strstr(log, "respawning"), "no worker died during all that");
    free(log);
    shmreg *h = reg_open(main_s.reg);
    shmreg_stats st = { 0 };
    shmreg_stat(h, &st);
    is(st.handles, 1, "after exit only this test's handle is attached");
    shmreg_close(h);

    /* The kill run, on a fresh server. */
    if (sipd_start(&kill_s, "kill", 4, "0", "300") != 0)
        bail_out("sipd for the kill run did not start");
    test_kill(&kill_s);
    registry_settles(kill_s.reg, 20000, "after the kill run");
    is(sipd_stop(&kill_s), 0, "the kill run's sipd exits 0 on SIGTERM");
    return done_testing();
}
