/*
 * sipd_rfc3261.c — sipd as a conforming UAS (issue 18), datagram by
 * datagram: a raw UDP client plays the UAC (and, by its Vias and
 * Record-Routes, the proxies in front of it) and checks every answer.
 *
 *   - lost ACK: the 2xx is sent exactly 11 times (T1 = 50 ms, T2 = 400 ms:
 *     at 0, 50, 150, 350, 750, 1150, ... 3150 ms, 13.3.1.4), then the call
 *     fails and sipd sends a BYE through the route set (Record-Route was in
 *     the 18x and the 2xx); a late ACK stops the copies;
 *   - a non-2xx final (415) is resent by Timer G until Timer H: 11 copies;
 *   - CANCEL with another branch or CSeq: 481; the right one: 200, and the
 *     487 carries the INVITE's two Vias, not the CANCEL's one; ACKed, it
 *     stops; BYE while ringing: 200 to the BYE, 487 to the INVITE;
 *   - CSeq lower than the dialog's last: 500;
 *   - late offer (our offer in the 200, the answer from the ACK), an
 *     audio+video offer (two m= lines back, video port 0), multipart/mixed,
 *     text/plain (415 + Accept), Require: 100rel (420 + Unsupported);
 *   - folded headers, bytes after the body, 20 Vias, a host-name sent-by
 *     with rport (received= and rport= filled in, the answer to the port it
 *     came from);
 *   - a call answered by a worker that then died, never ACKed: the master
 *     fails it after 64*T1 and sends its BYE, built from the registry;
 *   - afterwards exactly so many sessions in each state, none non-final,
 *     `shmregctl list` and `shmregctl check` agree.
 *
 * sipd runs with -1 50 -2 400 so that 64*T1 is 3.2 s. Counts of copies are
 * exact where sipd alone decides them (it schedules from due times, not
 * from when it woke up); where another worker must first note an ACK in
 * the registry, one copy in flight is allowed.
 */
#include "../examples/sipd/dialog.h"
#include "sipd_util.h"

#define TAG_HEX 16u    /* sipd's To-tags: 64 bits in hex */
#define T1 "50"
#define T2 "400"

static char *const TIMERS[] = { "-1", T1, "-2", T2, NULL };

/* ------------------------------------------------------------ messages */

/* A request from client c: Via (or `vias`, whole lines, when given),
 * From/To/Call-ID/CSeq/Contact, `extra` header lines, the body with
 * Content-Type `ctype`. */
static int build(char *out, size_t cap, const client *c, const char *method, const char *cid,
                 const char *totag, unsigned cseq, const char *branch, const char *vias,
                 const char *extra, const char *ctype, const char *body)
{
    char via[256];
    if (!vias) {
        snprintf(via, sizeof via, "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-%s\r\n", c->lport,
                 branch);
        vias = via;
    }
    body = body ? body : "";
    return snprintf(out, cap,
                    "%s sip:svc@127.0.0.1:%u SIP/2.0\r\n%s"
                    "From: test <sip:test@127.0.0.1:%u>;tag=ft-%s\r\n"
                    "To: <sip:svc@127.0.0.1:%u>%s%s\r\n"
                    "Call-ID: %s\r\nCSeq: %u %s\r\nMax-Forwards: 70\r\n"
                    "Contact: <sip:test@127.0.0.1:%u>\r\n%s%s%s%s"
                    "Content-Length: %zu\r\n\r\n%s",
                    method, ntohs(c->to.sin_port), vias, c->lport, cid, ntohs(c->to.sin_port),
                    totag ? ";tag=" : "", totag ? totag : "", cid, cseq, method, c->lport,
                    extra ? extra : "", ctype ? "Content-Type: " : "", ctype ? ctype : "",
                    ctype ? "\r\n" : "", strlen(body), body);
}

static void send_req(client *c, const char *method, const char *cid, const char *totag,
                     unsigned cseq, const char *branch, const char *vias, const char *extra,
                     const char *ctype, const char *body)
{
    char buf[8192];
    int n = build(buf, sizeof buf, c, method, cid, totag, cseq, branch, vias, extra, ctype, body);
    client_send(c, buf, (size_t)n);
}

/* One datagram received and parsed (slices point into buf). */
typedef struct got {
    char buf[16384];
    sip_msg m;
} got;

/* The next message within ms for Call-ID cid: 1, or 0 on timeout. */
static int next_msg(client *c, got *g, const char *cid, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= end)
            return 0;
        int n = client_recv(c, g->buf, sizeof g->buf, (unsigned)(end - now));
        if (n <= 0)
            return 0;
        if (sip_parse(g->buf, (size_t)n, &g->m, NULL) == SIP_OK && str_is_(g->m.call_id, cid))
            return 1;
    }
}

/* Wait for a response with `status` (other messages are counted into
 * seen[] by status when seen is not NULL, requests under 0). */
static int wait_status(client *c, got *g, const char *cid, int status, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        if (next_msg(c, g, cid, (unsigned)(end - now_ms())) && !g->m.is_request &&
            g->m.status == status)
            return 1;
    return 0;
}

/* Count responses of `status` for cid arriving within ms (all copies). */
static int count_status(client *c, const char *cid, int status, unsigned ms)
{
    got g;
    int n = 0;
    uint64_t end = now_ms() + ms;
    while (now_ms() < end)
        if (next_msg(c, &g, cid, (unsigned)(end - now_ms())) && !g.m.is_request &&
            g.m.status == status)
            n++;
    return n;
}

static int has(const got *g, const char *text)
{
    return memmem(g->buf, strlen(g->buf), text, strlen(text)) != NULL;
}

static void copy_tag(const got *g, char *out, size_t cap)
{
    snprintf(out, cap, "%.*s", (int)g->m.to_tag.n, g->m.to_tag.p);
}

/* The one session of Call-ID cid: its state, failure reason and codec. */
typedef struct sess_info {
    int found, state;
    char reason[128], codec[32], remote_sdp[512];
    unsigned remote_port;
} sess_info;

static sess_info session_of(const char *path, const char *cid)
{
    sess_info r;
    memset(&r, 0, sizeof r);
    shmreg *h = reg_kept(path);
    shmreg_session v;
    uint64_t cur = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0) {
        const shmreg_str *c = &v.str[SHMREG_FIELD_CALL_ID];
        if (c->len != strlen(cid) || memcmp(c->ptr, cid, c->len) != 0)
            continue;
        r.found++;
        r.state = v.state;
        const shmreg_str *f = &v.str[SHMREG_FIELD_FAILURE_REASON];
        snprintf(r.reason, sizeof r.reason, "%.*s", (int)f->len, f->ptr);
        f = &v.str[SHMREG_FIELD_CODEC];
        snprintf(r.codec, sizeof r.codec, "%.*s", (int)f->len, f->ptr);
        f = &v.sdp[SHMREG_SDP_REMOTE];
        snprintf(r.remote_sdp, sizeof r.remote_sdp, "%.*s", (int)f->len, f->ptr);
        r.remote_port = v.remote_rtp_port;
    }
    shmreg_read_end(h);
    return r;
}

/* Wait until the session of cid is in `state` (at most ms). */
static sess_info wait_state(const char *path, const char *cid, int state, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    sess_info s = session_of(path, cid);
    while (!(s.found == 1 && s.state == state) && now_ms() < end) {
        test_sleep_us(20 * 1000u);
        s = session_of(path, cid);
    }
    return s;
}

/* A call set up and ACKed: its To-tag into tag. */
static int call_up(client *c, const char *cid, unsigned cseq, char *tag, size_t cap)
{
    got g;
    send_req(c, "INVITE", cid, NULL, cseq, cid, NULL, NULL, "application/sdp", OFFER);
    if (!wait_status(c, &g, cid, 200, 3000))
        return 0;
    copy_tag(&g, tag, cap);
    send_req(c, "ACK", cid, tag, cseq, "ack", NULL, NULL, NULL, NULL);
    return 1;
}

static int hang_up(client *c, const char *cid, const char *tag, unsigned cseq)
{
    got g;
    send_req(c, "BYE", cid, tag, cseq, "bye", NULL, NULL, NULL, NULL);
    return wait_status(c, &g, cid, 200, 3000);
}

/* ------------------------------------------------------------ the tests */

/* In a child that then exits: an answered call, as a worker that died
 * right after its 200 would leave it, with the call record pointing its
 * BYE at the test's socket. */
struct dead_answer {
    const char *reg;
    unsigned port;
};

static void make_dead_answer(void *arg)
{
    const struct dead_answer *d = arg;
    char target[64];
    snprintf(target, sizeof target, "sip:test@127.0.0.1:%u", d->port);
    call_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.invite_cseq = rec.remote_cseq = 1;
    rec.target = (sip_str){ target, strlen(target) };
    unsigned char ad[SHMREG_MAX_APPDATA];
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_CALL_ID] = test_ss("deadowner");
    f.str[SHMREG_FIELD_LOCAL_TAG] = test_ss("lt-dead");
    f.str[SHMREG_FIELD_REMOTE_TAG] = test_ss("ft-dead");
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){ target, strlen(target) };
    f.str[SHMREG_FIELD_TO_URI] = test_ss("sip:svc@127.0.0.1");
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ (const char *)ad, call_rec_write(&rec, ad) };
    shmreg *h = NULL;
    shmreg_id id;
    ok(shmreg_open(d->reg, NULL, &h) == 0 && shmreg_session_create(h, &f, &id) == 0 &&
           shmreg_dialog_bind(h, f.str[SHMREG_FIELD_CALL_ID], f.str[SHMREG_FIELD_LOCAL_TAG],
                              f.str[SHMREG_FIELD_REMOTE_TAG], &id) == 0 &&
           shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_ACTIVE,
                                     NULL) == 0,
       "a child answered call 'deadowner' and died before any ACK");
    shmreg_close(h);
}

/* The master finishes the unACKed calls of dead workers (sipd.c, sweep). */
static void test_dead_owner(server *s)
{
    client c;
    client_open(&c, s->port);
    struct dead_answer d = { s->reg, c.lport };
    is(test_wait(test_fork(make_dead_answer, &d)), 0, "the child exited");
    got g;
    int bye = 0;
    uint64_t end = now_ms() + 10000;
    while (!bye && now_ms() < end)
        if (next_msg(&c, &g, "deadowner", 1000))
            bye = g.m.is_request && g.m.method == SIP_BYE;
    char want[128];
    snprintf(want, sizeof want, "BYE sip:test@127.0.0.1:%u SIP/2.0\r\n", c.lport);
    ok(bye && strncmp(g.buf, want, strlen(want)) == 0 && str_is_(g.m.from_tag, "lt-dead") &&
           str_is_(g.m.to_tag, "ft-dead") && g.m.cseq == 1,
       "after 64*T1 the master sends its BYE, built from the registry (target, tags, CSeq 1)");
    if (bye) {
        char resp[4096];
        sip_reply r = { .status = 200, .reason = "OK" };
        client_send(&c, resp, sip_build_reply(resp, sizeof resp, &g.m, &r));
    }
    sess_info si = wait_state(s->reg, "deadowner", SHMREG_STATE_FAILED, 3000);
    ok(si.state == SHMREG_STATE_FAILED &&
           strcmp(si.reason, "no ACK for the 2xx within 64*T1 (its worker died)") == 0,
       "the call is Failed: '%s'", si.reason);
    close(c.fd);
}

/* 13.3.1.4: no ACK, so the 2xx again and again, then a BYE. */
static void test_lost_ack(server *s)
{
    client c;
    client_open(&c, s->port);
    char rr[256];
    snprintf(rr, sizeof rr,
             "Record-Route: <sip:127.0.0.1:%u;lr;x=1>\r\nRecord-Route: <sip:127.0.0.1:%u;lr;x=2>\r\n",
             c.lport, c.lport);
    send_req(&c, "INVITE", "noack", NULL, 1, "noack", NULL, rr, "application/sdp", OFFER);
    got g;
    int n180 = 0, n200 = 0, rr180 = 0, rr200 = 0, bye = 0;
    char tag[64] = "", want_rr[300];
    snprintf(want_rr, sizeof want_rr,
             "\r\nRecord-Route: <sip:127.0.0.1:%u;lr;x=1>\r\nRecord-Route: <sip:127.0.0.1:%u;lr;x=2>\r\n",
             c.lport, c.lport);
    uint64_t end = now_ms() + 10000;
    while (!bye && now_ms() < end) {
        if (!next_msg(&c, &g, "noack", 1000))
            continue;
        if (g.m.is_request) {
            bye = g.m.method == SIP_BYE;
            break;
        }
        if (g.m.status == 180) {
            n180++;
            rr180 += has(&g, want_rr);
        } else if (g.m.status == 200) {
            n200++;
            rr200 += has(&g, want_rr);
            copy_tag(&g, tag, sizeof tag);
        }
    }
    is(n200, 11, "no ACK: the 200 sent 11 times within 64*T1 (T1 %s ms, T2 %s ms)", T1, T2);
    ok(n180 == 1 && rr180 == 1 && rr200 == n200,
       "the 180 and every 200 carry both Record-Route lines, in order (%d/%d, %d/%d)", rr180,
       n180, rr200, n200);
    ok(bye, "then sipd sends a BYE");
    char want[600];
    snprintf(want, sizeof want,
             "BYE sip:test@127.0.0.1:%u SIP/2.0\r\n", c.lport);
    ok(bye && strncmp(g.buf, want, strlen(want)) == 0, "BYE Request-URI: the INVITE's Contact");
    snprintf(want, sizeof want,
             "\r\nRoute: <sip:127.0.0.1:%u;lr;x=1>, <sip:127.0.0.1:%u;lr;x=2>\r\n", c.lport,
             c.lport);
    ok(bye && has(&g, want), "BYE Route: the route set, in Record-Route order (sent to its first)");
    ok(bye && str_is_(g.m.from_tag, tag) && str_is_(g.m.to_tag, "ft-noack") && g.m.cseq == 1 &&
           str_is_(g.m.cseq_method, "BYE"),
       "BYE From-tag ours (%s), To-tag theirs, CSeq 1 BYE", tag);
    if (bye) {
        char resp[4096];
        sip_reply r = { .status = 200, .reason = "OK" };
        size_t n = sip_build_reply(resp, sizeof resp, &g.m, &r);
        /* to where the Via says, sipd's listening port */
        client_send(&c, resp, n);
    }
    sess_info si = wait_state(s->reg, "noack", SHMREG_STATE_FAILED, 3000);
    ok(si.found == 1 && si.state == SHMREG_STATE_FAILED &&
           strcmp(si.reason, "no ACK for the 2xx within 64*T1") == 0,
       "the session is Failed: '%s'", si.reason);
    /* Our 200 reached some worker, which noted it: the BYE stops. */
    int byes = 1;
    end = now_ms() + 1500;
    while (now_ms() < end && next_msg(&c, &g, "noack", (unsigned)(end - now_ms())))
        byes += g.m.is_request && g.m.method == SIP_BYE;
    ok(byes <= 2, "answered, the BYE is not sent again (%d cop%s; Timer F would allow 11)", byes,
       byes == 1 ? "y" : "ies");
    close(c.fd);
}

/* A late ACK stops the copies; the call goes on. */
static void test_late_ack(server *s)
{
    client c;
    client_open(&c, s->port);
    send_req(&c, "INVITE", "lateack", NULL, 1, "lateack", NULL, NULL, "application/sdp", OFFER);
    got g;
    int n200 = 0;
    char tag[64] = "";
    while (n200 < 3 && next_msg(&c, &g, "lateack", 3000))
        if (!g.m.is_request && g.m.status == 200) {
            n200++;
            copy_tag(&g, tag, sizeof tag);
        }
    is(n200, 3, "the 200 came three times (two retransmissions)");
    send_req(&c, "ACK", "lateack", tag, 1, "ack1", NULL, NULL, NULL, NULL);
    int more = count_status(&c, "lateack", 200, 1500);
    ok(more <= 1, "ACKed to another worker: at most the copy in flight follows (%d)", more);
    sess_info si = session_of(s->reg, "lateack");
    ok(si.found == 1 && si.state == SHMREG_STATE_ACTIVE, "the call is Active");
    ok(hang_up(&c, "lateack", tag, 2), "BYE: 200");
    close(c.fd);
}

/* Timers G and H: a 415 nobody ACKs is sent 11 times; ACKed, it stops. */
static void test_non2xx(server *s)
{
    client c;
    client_open(&c, s->port);
    send_req(&c, "INVITE", "g415", NULL, 1, "g415", NULL, NULL, "text/plain", "hello\r\n");
    got g;
    ok(wait_status(&c, &g, "g415", 415, 3000) &&
           has(&g, "\r\nAccept: application/sdp, multipart/mixed\r\n") &&
           g.m.to_tag.n == TAG_HEX,
       "text/plain offer: 415 Unsupported Media Type with Accept, and our To-tag");
    /* Timer H ends them 3.2 s after the first; the window leaves room
     * for a loaded machine. */
    int copies = 1 + count_status(&c, "g415", 415, 6500);
    is(copies, 11, "not ACKed: the 415 sent 11 times by Timer G until Timer H (64*T1)");
    sess_info si = session_of(s->reg, "g415");
    ok(si.found == 1 && si.state == SHMREG_STATE_FAILED && strcmp(si.reason, "415 refused") == 0,
       "the session is Failed: '%s'", si.reason);
    /* its retransmitted INVITE gets the same answer, from whichever worker */
    send_req(&c, "INVITE", "g415", NULL, 1, "g415", NULL, NULL, "text/plain", "hello\r\n");
    ok(wait_status(&c, &g, "g415", 415, 2000), "the INVITE again: 415 again");

    send_req(&c, "INVITE", "r420", NULL, 1, "r420", NULL, "Require: 100rel, foo\r\n",
             "application/sdp", OFFER);
    char tag[64] = "";
    ok(wait_status(&c, &g, "r420", 420, 3000) && has(&g, "\r\nUnsupported: 100rel, foo\r\n"),
       "Require: 100rel, foo: 420 Bad Extension, Unsupported: 100rel, foo");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "r420", tag, 1, "r420", NULL, NULL, NULL, NULL);
    int more = count_status(&c, "r420", 420, 1000);
    ok(more <= 1, "ACKed (same branch, our To-tag): at most the copy in flight follows (%d)",
       more);
    close(c.fd);
}

/* CANCEL matching and the 487 (9.2, 17.2.3), as a proxy would send them. */
static void test_cancel(server *ring)
{
    client c;
    client_open(&c, ring->port);
    char vias[300], top[200];
    snprintf(top, sizeof top, "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-px-1\r\n", c.lport);
    snprintf(vias, sizeof vias, "%sVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-uac-1;"
                                "received=10.0.0.2\r\n", top);
    send_req(&c, "INVITE", "cancel", NULL, 1, NULL, vias, NULL, "application/sdp", OFFER);
    got g;
    char tag[64] = "";
    ok(wait_status(&c, &g, "cancel", 180, 3000), "INVITE through a 'proxy': 180");
    copy_tag(&g, tag, sizeof tag);

    char wrong[200];
    snprintf(wrong, sizeof wrong, "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-px-2\r\n", c.lport);
    send_req(&c, "CANCEL", "cancel", NULL, 1, NULL, wrong, NULL, NULL, NULL);
    ok(wait_status(&c, &g, "cancel", 481, 2000) && g.m.cseq == 1 &&
           str_is_(g.m.cseq_method, "CANCEL"),
       "CANCEL with another branch: 481 Call/Transaction Does Not Exist");
    send_req(&c, "CANCEL", "cancel", NULL, 2, NULL, top, NULL, NULL, NULL);
    ok(wait_status(&c, &g, "cancel", 481, 2000), "CANCEL with another CSeq: 481");
    sess_info si = session_of(ring->reg, "cancel");
    ok(si.state == SHMREG_STATE_RINGING, "and the call still rings");

    send_req(&c, "CANCEL", "cancel", NULL, 1, NULL, top, NULL, NULL, NULL);
    int got200 = 0, got487 = 0, vias_ok = 0;
    uint64_t end = now_ms() + 3000;
    while ((!got200 || !got487) && now_ms() < end &&
           next_msg(&c, &g, "cancel", (unsigned)(end - now_ms()))) {
        if (g.m.status == 200 && str_is_(g.m.cseq_method, "CANCEL"))
            got200 = 1;
        if (g.m.status == 487 && !got487++) {
            vias_ok = g.m.nvia == 2 && g.m.cseq == 1 && str_is_(g.m.cseq_method, "INVITE") &&
                      str_is_(g.m.to_tag, tag);
        }
    }
    ok(got200, "the right CANCEL: 200 OK (CSeq 1 CANCEL)");
    char want[400];
    snprintf(want, sizeof want, "SIP/2.0 487 Request Terminated\r\n%s", vias);
    ok(got487 && vias_ok && strncmp(g.buf, want, strlen(want)) == 0,
       "the 487 carries the INVITE's two Vias (not the CANCEL's one), its CSeq and our tag");
    send_req(&c, "ACK", "cancel", tag, 1, NULL, top, NULL, NULL, NULL);
    int more = count_status(&c, "cancel", 487, 1000);
    ok(more <= 1, "the ACK of the 487 stops its copies (%d more)", more);
    si = session_of(ring->reg, "cancel");
    ok(si.found == 1 && si.state == SHMREG_STATE_CANCELLED, "the session is Cancelled");

    /* 15.1.2: BYE in the early dialog. */
    send_req(&c, "INVITE", "earlybye", NULL, 1, "earlybye", NULL, NULL, "application/sdp", OFFER);
    ok(wait_status(&c, &g, "earlybye", 180, 3000), "another ringing call");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "BYE", "earlybye", tag, 2, "eb", NULL, NULL, NULL, NULL);
    int bye200 = 0, inv487 = 0;
    end = now_ms() + 3000;
    while ((!bye200 || !inv487) && now_ms() < end &&
           next_msg(&c, &g, "earlybye", (unsigned)(end - now_ms()))) {
        bye200 |= g.m.status == 200 && str_is_(g.m.cseq_method, "BYE") && g.m.cseq == 2;
        inv487 |= g.m.status == 487 && str_is_(g.m.cseq_method, "INVITE") && g.m.cseq == 1;
    }
    ok(bye200 && inv487, "BYE while ringing: 200 to the BYE, 487 to the INVITE");
    send_req(&c, "ACK", "earlybye", tag, 1, "earlybye", NULL, NULL, NULL, NULL);
    si = session_of(ring->reg, "earlybye");
    ok(si.found == 1 && si.state == SHMREG_STATE_CANCELLED, "the session is Cancelled");
    close(c.fd);
}

/* 12.2.2: a CSeq lower than the dialog's last gets 500. */
static void test_cseq(server *s)
{
    client c;
    client_open(&c, s->port);
    char tag[64];
    got g;
    ok(call_up(&c, "cseq", 10, tag, sizeof tag), "a call, INVITE CSeq 10, ACKed");
    const char *hold = "v=0\r\no=t 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                       "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=sendonly\r\n";
    send_req(&c, "INVITE", "cseq", tag, 11, "re11", NULL, NULL, "application/sdp", hold);
    ok(wait_status(&c, &g, "cseq", 200, 3000) && has(&g, "a=recvonly"),
       "re-INVITE CSeq 11 (hold): 200, recvonly");
    send_req(&c, "ACK", "cseq", tag, 11, "ack11", NULL, NULL, NULL, NULL);
    send_req(&c, "INVITE", "cseq", tag, 10, "re10", NULL, NULL, "application/sdp", OFFER);
    ok(wait_status(&c, &g, "cseq", 500, 3000) && g.m.cseq == 10 &&
           strstr(g.buf, "SIP/2.0 500 CSeq out of order\r\n") == g.buf,
       "re-INVITE CSeq 10 after 11: 500 CSeq out of order");
    send_req(&c, "BYE", "cseq", tag, 9, "bye9", NULL, NULL, NULL, NULL);
    ok(wait_status(&c, &g, "cseq", 500, 3000) && g.m.cseq == 9, "BYE CSeq 9: 500");
    sess_info si = session_of(s->reg, "cseq");
    ok(si.state == SHMREG_STATE_ONHOLD, "the call is still up (OnHold): %s %s",
       shmreg_state_name(si.state), si.reason);
    ok(hang_up(&c, "cseq", tag, 12), "BYE CSeq 12: 200");
    si = session_of(s->reg, "cseq");
    ok(si.state == SHMREG_STATE_TERMINATED, "Terminated");
    close(c.fd);
}

/* Offers sipd did not expect. */
static void test_offers(server *s)
{
    client c;
    client_open(&c, s->port);
    got g;
    char tag[64];

    /* 13.2.1: no offer in the INVITE: ours in the 200, the answer in the ACK. */
    send_req(&c, "INVITE", "late", NULL, 1, "late", NULL, NULL, NULL, NULL);
    ok(wait_status(&c, &g, "late", 200, 3000) && has(&g, "Content-Type: application/sdp\r\n") &&
           has(&g, " RTP/AVP 0 8 101\r\n") && has(&g, "a=rtpmap:101 telephone-event/8000\r\n"),
       "INVITE without SDP: 200 with our offer (PCMU, PCMA, telephone-event)");
    copy_tag(&g, tag, sizeof tag);
    const char *answer = "v=0\r\no=t 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                         "t=0 0\r\nm=audio 7100 RTP/AVP 8\r\n";
    send_req(&c, "ACK", "late", tag, 1, "lateack", NULL, NULL, "application/sdp", answer);
    test_sleep_us(300 * 1000u);
    sess_info si = session_of(s->reg, "late");
    ok(si.state == SHMREG_STATE_ACTIVE && strcmp(si.remote_sdp, answer) == 0 &&
           strcmp(si.codec, "PCMA") == 0 && si.remote_port == 7100,
       "the ACK's answer is the remote SDP; codec PCMA, remote port 7100 (%s, %u)", si.codec,
       si.remote_port);
    ok(hang_up(&c, "late", tag, 2), "BYE: 200");

    /* RFC 3264 section 6: audio + video, answered line for line. */
    const char *av = "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                     "m=audio 6000 RTP/AVP 0\r\nm=video 6002 RTP/AVP 96\r\n"
                     "a=rtpmap:96 H264/90000\r\n";
    send_req(&c, "INVITE", "av", NULL, 1, "av", NULL, NULL, "application/sdp", av);
    ok(wait_status(&c, &g, "av", 200, 3000), "audio + video offer: 200");
    const char *ma = memmem(g.m.body.p, g.m.body.n, "\r\nm=audio ", 10);
    const char *mv = memmem(g.m.body.p, g.m.body.n, "\r\nm=video 0 RTP/AVP 96\r\n", 24);
    ok(ma && mv && ma < mv, "the answer: m=audio, then m=video 0 (rejected), the offer's order");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "av", tag, 1, "avack", NULL, NULL, NULL, NULL);
    ok(hang_up(&c, "av", tag, 2), "BYE: 200");

    /* RFC 5621: the SDP part of a multipart/mixed body. */
    static char mp[2048];
    snprintf(mp, sizeof mp, "--b1\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                            "--b1\r\nContent-Type: application/sdp\r\n\r\n%s\r\n--b1--\r\n", OFFER);
    send_req(&c, "INVITE", "multi", NULL, 1, "multi", NULL, NULL, "multipart/mixed;boundary=b1",
             mp);
    ok(wait_status(&c, &g, "multi", 200, 3000) && has(&g, "a=rtpmap:0 PCMU/8000"),
       "multipart/mixed with an SDP part: 200 with the answer");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "multi", tag, 1, "mack", NULL, NULL, NULL, NULL);
    si = session_of(s->reg, "multi");
    ok(strcmp(si.remote_sdp, OFFER) == 0, "the SDP part, exactly, is the remote SDP");
    ok(hang_up(&c, "multi", tag, 2), "BYE: 200");
    close(c.fd);
}

/* The transport and the parser: rport, received, folds, 20 Vias. */
static void test_transport(server *s)
{
    client c;
    client_open(&c, s->port);
    got g;
    char tag[64];
    char via[200];
    snprintf(via, sizeof via, "Via: SIP/2.0/UDP client.invalid:9;branch=z9hG4bK-rp;rport\r\n");
    send_req(&c, "INVITE", "rport", NULL, 1, NULL, via, NULL, "application/sdp", OFFER);
    char want[200];
    snprintf(want, sizeof want,
             "\r\nVia: SIP/2.0/UDP client.invalid:9;branch=z9hG4bK-rp;rport=%u;received=127.0.0.1\r\n",
             c.lport);
    ok(wait_status(&c, &g, "rport", 200, 3000) && has(&g, want),
       "sent-by a host name with rport: the 200 comes to the source port, "
       "rport=%u;received=127.0.0.1", c.lport);
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "rport", tag, 1, "x", NULL, NULL, NULL, NULL);
    ok(hang_up(&c, "rport", tag, 2), "BYE: 200");

    char vias[4096] = "";
    size_t n = 0;
    for (int i = 0; i < 19; i++)
        n += (size_t)snprintf(vias + n, sizeof vias - n,
                              "Via: SIP/2.0/UDP 10.0.%d.1:5060;branch=z9hG4bK-hop%d\r\n", i, i);
    char all[4400];
    snprintf(all, sizeof all, "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-v20\r\n%s", c.lport,
             vias);
    send_req(&c, "INVITE", "vias", NULL, 1, NULL, all, NULL, "application/sdp", OFFER);
    ok(wait_status(&c, &g, "vias", 200, 3000) && g.m.nvia == 20 &&
           has(&g, "Via: SIP/2.0/UDP 10.0.18.1:5060;branch=z9hG4bK-hop18\r\n"),
       "20 Vias (sipd refused more than 16): 200 with all 20");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "vias", tag, 1, "x", NULL, NULL, NULL, NULL);
    ok(hang_up(&c, "vias", tag, 2), "BYE: 200");

    /* Folded lines and bytes after the body, in one INVITE. */
    char msg[4096];
    int len = build(msg, sizeof msg, &c, "INVITE", "fold", NULL, 1, "fold", NULL,
                    "Subject: a folded\r\n  subject line\r\n", "application/sdp", OFFER);
    char *from = strstr(msg, "From: ");
    memmove(from + 6 + 6, from + 6, (size_t)(msg + len - from - 6) + 1);
    memcpy(from + 6, "\r\n    ", 6);       /* "From:\r\n    test <...>" */
    len += 6;
    memcpy(msg + len, "JUNK AFTER THE BODY", 19);
    len += 19;
    client_send(&c, msg, (size_t)len);
    ok(wait_status(&c, &g, "fold", 200, 3000) && has(&g, "a=rtpmap:0 PCMU/8000"),
       "folded From and Subject, 19 bytes after the body: 200 with the answer");
    copy_tag(&g, tag, sizeof tag);
    send_req(&c, "ACK", "fold", tag, 1, "x", NULL, NULL, NULL, NULL);
    ok(hang_up(&c, "fold", tag, 2), "BYE: 200");
    close(c.fd);
}

int main(void)
{
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    sipd_test_init();
    test_bail_on_alarm(ASAN_BUILD ? 240 : 150);

    server fast, ring;
    /* Finished calls linger 60 s: the states are counted at the end. */
    if (sipd_start_with(&fast, "rfc", 4, "0", "60000", TIMERS) != 0)
        bail_out("sipd did not start");
    if (sipd_start_with(&ring, "rfcring", 2, "5000", "60000", TIMERS) != 0)
        bail_out("sipd -R 5000 did not start");

    test_lost_ack(&fast);
    test_late_ack(&fast);
    test_non2xx(&fast);
    test_cseq(&fast);
    test_offers(&fast);
    test_transport(&fast);
    test_cancel(&ring);
    test_dead_owner(&fast);

    uint64_t want_fast[SHMREG_STATE_COUNT] = { 0 }, want_ring[SHMREG_STATE_COUNT] = { 0 };
    want_fast[SHMREG_STATE_FAILED] = 4;       /* noack, g415, r420, deadowner */
    want_fast[SHMREG_STATE_TERMINATED] = 8;   /* lateack cseq late av multi rport vias fold */
    want_ring[SHMREG_STATE_CANCELLED] = 2;    /* cancel earlybye */
    states_are(fast.reg, "sessions by state", want_fast);
    states_are(ring.reg, "ringing server, sessions by state", want_ring);
    registry_final(fast.reg, "after the RFC 3261 tests");
    registry_final(ring.reg, "after the CANCEL tests");

    is(sipd_stop(&fast), 0, "sipd: SIGTERM, exit 0");
    is(sipd_stop(&ring), 0, "sipd -R 5000: SIGTERM, exit 0");
    char *log = slurp(fast.log);
    is(stat_of(log, "ack_timeouts"), 1, "one call failed for want of an ACK");
    is(stat_of(log, "byes_sent"), 1, "one BYE sent");
    is(stat_of(log, "no_timer"), 0, "every final response had a timer");
    is(stat_of(log, "registry_errors"), 0, "no registry call failed");
    free(log);
    log = slurp(ring.log);
    is(stat_of(log, "cancels_481"), 2, "two CANCELs matched no transaction");
    free(log);
    registry_settles(fast.reg, 5000, "after sipd stopped");
    return done_testing();
}
