/*
 * worker.c — one sipd worker: a UAS over UDP whose call state lives in the
 * registry, not in the worker.
 *
 * Every worker binds its own socket to the same address with SO_REUSEPORT.
 * By default a small classic-BPF program hands each datagram to a worker
 * at random, so the ACK, BYE or CANCEL of a call usually reaches a worker
 * other than the one that took its INVITE. That is the point: a worker
 * keeps nothing about a call that another worker would need. The session,
 * its dialog and both SDPs are in the registry; a worker looks the dialog
 * up (lock-free), reads the session in place and moves its state with a
 * compare-and-set, so two workers racing on one call cannot both win.
 *
 * Recognising a retransmitted INVITE. A retransmission carries no To-tag
 * (we have not chosen one yet as far as the network knows), and it may
 * reach another worker, possibly at the same moment as the original. So
 * the To-tag is not random: it is derived, tag = SipHash(key, Call-ID, 0,
 * From-tag), with a key the master keeps in the registry's "sipd" config.
 * The same request therefore always maps to the same full dialog key
 * (Call-ID, our tag, their tag), and shmreg_dialog_bind() is
 * insert-if-absent: of two workers creating a session for one INVITE, one
 * binds, the other gets SHMREG_EEXIST, deletes its own fresh session and
 * answers from the winner's. A CANCEL (which has no To-tag either) finds
 * its INVITE's session the same way. The alternative — binding a second,
 * tag-less "early" key per call — costs a second bind and unbind per call
 * and a second key to keep consistent; deriving the tag costs one hash.
 * The tag stays unguessable (keyed), and the call record kept in the
 * session's app data (dialog.h: the INVITE's CSeq and transaction key)
 * tells a retransmission from a new INVITE that reuses the Call-ID and
 * From-tag after the first call ended, and a CANCEL of this INVITE from
 * one of another transaction.
 *
 * Transactions (RFC 3261 17.2). The final response to an INVITE is sent
 * again until it is ACKed (txn.h: the worker that sent it keeps the copy
 * and the timer), and the ACK, which may reach any worker, is noted in the
 * call record; before each copy the timer looks there. Every INVITE that
 * passes the parser gets a session, a refused one too (state Failed):
 * that is where the ACK of the refusal is noted and where a retransmitted
 * INVITE finds the same answer. The 487 of a cancelled INVITE is sent by
 * the worker holding the INVITE (its Vias are not the CANCEL's behind a
 * proxy): it looks at the state of its ringing calls every RING_CHECK_MS.
 *
 * A worker that dies. Its socket leaves the group (datagrams queued on it
 * are lost; the client's retransmissions reach the others), its handle is
 * cleared by the master's shmreg_reap(), and its half-set-up calls are
 * either adopted (a retransmitted INVITE finds an early session whose
 * owner is dead, and this worker answers it) or failed by the master's
 * sweep, as are its answered calls nobody ACKed within 64*T1. Its
 * retransmission timers die with it. Nothing else depended on it.
 *
 * Split by concern: sipmsg.c parses and writes SIP, sdp.c the SDP,
 * txn.c keeps the timers, dialog.c the call record and the BYE, and this
 * file is the transport (socket, source address) and the call logic.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "dialog.h"
#include "sdp.h"
#include "shmreg.h"
#include "sipd.h"
#include "sipmsg.h"
#include "txn.h"

#define ALLOW "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"
#define ACCEPT "Accept: application/sdp, multipart/mixed\r\n"
#define TAG_LEN 16        /* hex digits of the derived To-tag (64 bits) */
/* How often the worker holding a ringing INVITE looks whether a CANCEL or
 * a BYE (which any worker may have taken) ended it: the 487 is then due
 * with the INVITE's own Vias, which only this worker has. */
#define RING_CHECK_MS 50u

static const sip_str NOTAG = { NULL, 0 };

typedef struct worker {
    const sipd_conf *conf;
    sipd_slot *slot;
    unsigned index;
    pid_t pid;
    shmreg *h;
    shmreg_config_view *media;        /* refreshed when a config write lands */
    int fd;
    char headers[256];                /* Contact + Server, for dialog-creating replies */
    const struct sockaddr *from;      /* source of the request being handled */
    socklen_t fromlen;
    char src_ip[64];                  /* ... as text, for received= and rport= */
    unsigned src_port;
    uint64_t log_next_ms;             /* rate limit of this worker's complaints */
    unsigned log_quiet;
    uint64_t branch_seq;              /* branches of the BYEs we send */
    txn_table tx;                     /* retransmission timers (txn.h) */
    char sdp[8192];
    char out[SIPMSG_MAX_LEN + 1];
    char in[SIPMSG_MAX_LEN + 1];
} worker;

static volatile sig_atomic_t stop;
static void on_stop(int sig) { (void)sig; stop = 1; }

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void count(worker *w, int c)
{
    atomic_fetch_add_explicit(&w->slot->c[c], 1, memory_order_relaxed);
}

static shmreg_str S(sip_str s) { return (shmreg_str){ s.p, s.n }; }

/* Complaints about peers or the registry: at most one line a second, so a
 * flood of junk cannot turn into a flood of log. */
__attribute__((format(printf, 2, 3)))
static void complain(worker *w, const char *fmt, ...)
{
    uint64_t now = mono_ms();
    if (now < w->log_next_ms) {
        w->log_quiet++;
        return;
    }
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (w->log_quiet)
        sipd_log("worker %u: %s (and %u more like it)", w->index, buf, w->log_quiet);
    else
        sipd_log("worker %u: %s", w->index, buf);
    w->log_quiet = 0;
    w->log_next_ms = now + 1000;
}

static void registry_error(worker *w, const char *what, int rc)
{
    count(w, C_REG_ERRORS);
    complain(w, "%s: %s (%s)", what, shmreg_strerror(rc), shmreg_errmsg());
}

/* ------------------------------------------------------------ transport */

/* The request being handled came from here: responses go back to it (for
 * UDP that is what RFC 3581 asks when rport is present, and what works
 * through NAT when it is not) and its top Via is annotated with it. */
static void set_source(worker *w, const struct sockaddr *from, socklen_t len)
{
    w->from = from;
    w->fromlen = len;
    const void *addr = from->sa_family == AF_INET
                           ? (const void *)&((const struct sockaddr_in *)from)->sin_addr
                           : (const void *)&((const struct sockaddr_in6 *)from)->sin6_addr;
    if (!inet_ntop(from->sa_family, addr, w->src_ip, sizeof w->src_ip))
        w->src_ip[0] = 0;
    w->src_port = ntohs(from->sa_family == AF_INET
                            ? ((const struct sockaddr_in *)from)->sin_port
                            : ((const struct sockaddr_in6 *)from)->sin6_port);
}

static void send_to(worker *w, const char *msg, size_t n, const struct sockaddr *to,
                    socklen_t tolen)
{
    if (n)
        sendto(w->fd, msg, n, MSG_DONTWAIT, to, tolen);
}

/* ------------------------------------------------------------ replies */

/* Build a response to m in w->out and send it; returns its length (0: it
 * did not fit), so that a caller may keep it for retransmission. */
static size_t send_reply(worker *w, const sip_msg *m, int status, const char *reason,
                         sip_str to_tag, const char *cseq_method, const char *headers,
                         sip_str sdp)
{
    sip_reply r = { status, reason, to_tag, cseq_method, headers,
                    sdp.n ? "application/sdp" : NULL, sdp,
                    status > 100 && status < 300, w->src_ip[0] ? w->src_ip : NULL,
                    w->src_port };
    size_t n = sip_build_reply(w->out, sizeof w->out, m, &r);
    send_to(w, w->out, n, w->from, w->fromlen);
    return n;
}

static void reply(worker *w, const sip_msg *m, int status, const char *reason, sip_str tag)
{
    send_reply(w, m, status, reason, tag, NULL, status == 200 ? w->headers : NULL, NOTAG);
}

/* A final response to an INVITE other than 2xx: the phrase and the header
 * lines its status calls for. `why` (may be NULL) overrides the phrase. */
static size_t send_final(worker *w, const sip_msg *m, int status, const char *why, sip_str tag)
{
    char hdr[512];
    const char *reason = "Server Internal Error", *headers = NULL;
    switch (status) {
    case 400: reason = "Bad Request"; break;
    case 415: reason = "Unsupported Media Type"; headers = ACCEPT; break;
    case 420: {
        /* 8.2.2.3: name every option we were required to support */
        sip_out o = { hdr, sizeof hdr, 0, 0 };
        sip_out_puts(&o, "Unsupported: ");
        for (unsigned i = 0; i < m->nrequire; i++) {
            if (i)
                sip_out_puts(&o, ", ");
            sip_out_put(&o, m->require[i].p, m->require[i].n);
        }
        sip_out_puts(&o, "\r\n");
        hdr[o.full ? 0 : o.len] = 0;
        reason = "Bad Extension";
        headers = hdr;
        break;
    }
    case 482: reason = "Loop Detected"; break;
    case 487: reason = "Request Terminated"; break;
    case 488: reason = "Not Acceptable Here"; headers = ACCEPT; break;
    case 500: headers = "Retry-After: 1\r\n"; break;
    case 503: reason = "Service Unavailable"; headers = "Retry-After: 5\r\n"; break;
    }
    return send_reply(w, m, status, why ? why : reason, tag, NULL, headers, NOTAG);
}

/* Keep the response in w->out for retransmission (see txn.h). */
static void keep(worker *w, int kind, const shmreg_id *sid, uint32_t cseq, size_t n)
{
    if (n && !txn_add(&w->tx, kind, sid, cseq, w->from, w->fromlen, w->out, n, mono_ms()))
        count(w, C_NO_TIMER);
}

/* The To-tag of the dialog an out-of-dialog request from this peer
 * creates: see the top of the file. 64 bits of keyed SipHash, in hex. */
static sip_str derive_tag(worker *w, const sip_msg *m, char out[TAG_LEN + 1], uint64_t *raw)
{
    unsigned char in[SIPMSG_MAX_CALLID + 1 + SIPMSG_MAX_TAG];
    unsigned char hash[crypto_shorthash_BYTES];
    size_t n = m->call_id.n;
    memcpy(in, m->call_id.p, n);
    in[n++] = 0;                    /* Call-IDs hold no NUL: unambiguous */
    memcpy(in + n, m->from_tag.p, m->from_tag.n);
    crypto_shorthash(hash, in, n + m->from_tag.n, w->conf->tag_key);
    static const char hex[] = "0123456789abcdef";
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[hash[i] >> 4];
        out[2 * i + 1] = hex[hash[i] & 15];
        v = v << 8 | hash[i];
    }
    out[TAG_LEN] = 0;
    if (raw)
        *raw = v;
    return (sip_str){ out, TAG_LEN };
}

/* ------------------------------------------------------------ the registry */

/* What a worker needs to know about a session: its state, owner and call
 * record (dialog.h), copied out of the registry. */
typedef struct peek {
    int state;
    int32_t owner;
    call_rec rec;
    unsigned char buf[SHMREG_MAX_APPDATA];   /* the record's strings */
} peek;

static int peek_session(worker *w, const shmreg_id *sid, peek *p)
{
    return call_rec_get(w->h, sid, &p->rec, p->buf, &p->state, &p->owner);
}

static int owner_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* An in-dialog request: find its session and count who handles it. */
static int find_dialog(worker *w, const sip_msg *m, sip_str local_tag, sip_str remote_tag,
                       shmreg_id *sid, peek *p)
{
    int rc = shmreg_dialog_find(w->h, S(m->call_id), S(local_tag), S(remote_tag), sid);
    if (rc == 0)
        rc = peek_session(w, sid, p);
    if (rc == 0) {
        count(w, C_IN_DIALOG);
        if (p->owner != w->pid)
            count(w, C_FOREIGN);
    } else if (rc == SHMREG_ENOENT) {
        count(w, C_NO_DIALOG);
    } else {
        registry_error(w, "dialog lookup", rc);
    }
    return rc;
}

/* A request of the peer in the dialog (12.2.2): 1 when its CSeq is lower
 * than one already seen (answer 500), else the record raised to it. A
 * request with CSeq n also tells that the peer is done with every INVITE
 * before it, so their 2xx need not be sent again. A CSeq no higher than
 * an ACKed INVITE's is out of order as well: that rule holds even when a
 * concurrent ACK wrote the record back from an older copy. */
static int cseq_too_low(worker *w, const sip_msg *m, const shmreg_id *sid, peek *p)
{
    if (m->cseq < p->rec.remote_cseq || m->cseq <= p->rec.acked_cseq)
        return 1;
    if (m->cseq > p->rec.remote_cseq) {
        p->rec.remote_cseq = m->cseq;
        if (p->rec.acked_cseq < m->cseq - 1)
            p->rec.acked_cseq = m->cseq - 1;
        call_rec_put(w->h, sid, &p->rec);
    }
    return 0;
}

/* The media config: O(1) staleness check, a new view only after a write. */
static const shmreg_config_view *media_config(worker *w)
{
    int rc = shmreg_config_refresh(w->h, "media", &w->media, NULL);
    if (rc < 0 && rc != SHMREG_ENOENT)
        registry_error(w, "media config", rc);
    return rc < 0 ? NULL : w->media;
}

/* ------------------------------------------------------------ answering */

/* 200 OK to an INVITE, the SDP read in place from the registry straight
 * into the datagram. Sent whenever a session is (or just became)
 * Active/OnHold, also as the answer to a retransmitted INVITE. Returns
 * its length (in w->out). */
static size_t reply_200(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    shmreg_session s;
    size_t n = 0;
    shmreg_read_begin(w->h);
    if (shmreg_session_get(w->h, sid, &s) == 0) {
        sip_str sdp = { s.sdp[SHMREG_SDP_LOCAL].ptr, s.sdp[SHMREG_SDP_LOCAL].len };
        n = send_reply(w, m, 200, "OK", tag, NULL, w->headers, sdp);
    }
    shmreg_read_end(w->h);
    return n;
}

/* Answer a ringing (or, when adopting, still initiating) call: the state
 * moves to Active unless a CANCEL or BYE got there first. Returns the
 * length of the 200 in w->out when this call answered it (the caller
 * keeps it for retransmission), else 0. */
static size_t answer(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    int old = 0;
    int rc = shmreg_session_transition(w->h, sid, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, &old);
    if (rc == 0) {
        /* Its maximum duration runs from the answer: a NOTIFY timeout,
         * which the master's sweep turns into our BYE; if the call is
         * still not over 64*T1 after that, the registry fails it. */
        if (w->conf->max_call_s &&
            (rc = shmreg_session_set_timeout(w->h, sid, w->conf->max_call_s * 1000000000ull,
                                             SHMREG_TIMEOUT_NOTIFY | SHMREG_TIMEOUT_RELATIVE,
                                             64ull * w->conf->t1_ms * 1000000ull)) != 0 &&
            rc != SHMREG_ENOENT && rc != SHMREG_ESTATE)
            registry_error(w, "max duration timeout", rc);
        return reply_200(w, m, sid, tag);
    }
    if (rc == SHMREG_ESTATE && (old == SHMREG_STATE_ACTIVE || old == SHMREG_STATE_ONHOLD))
        reply_200(w, m, sid, tag);        /* answered by another: send its 200 */
    else if (rc != SHMREG_ESTATE && rc != SHMREG_ENOENT)
        registry_error(w, "answer", rc);
    return 0;
}

/* Send the BYE that ends a call nobody ACKed, and keep it for Timer E. */
static void end_unacked(worker *w, const shmreg_id *sid, int state)
{
    struct sockaddr_storage to;
    socklen_t tolen = 0;
    int moved;
    uint64_t seed = (uint64_t)w->pid << 32 ^ ++w->branch_seq ^ mono_ms() << 16;
    size_t n = dialog_end(w->h, sid, state, SHMREG_STATE_FAILED, "no ACK for the 2xx within 64*T1",
                          w->conf->host, w->conf->port, seed, w->out, sizeof w->out, &to, &tolen,
                          &moved);
    if (moved)
        count(w, C_ACK_TIMEOUTS);
    if (n) {
        send_to(w, w->out, n, (struct sockaddr *)&to, tolen);
        count(w, C_BYES_SENT);
        if (!txn_add(&w->tx, TX_BYE, sid, 1, (struct sockaddr *)&to, tolen, w->out, n,
                     mono_ms()))
            count(w, C_NO_TIMER);
    }
}

/* A ringing INVITE whose time has come, or that a CANCEL or BYE ended:
 * look at the registry and answer it, send its 487, or go on ringing. */
static void ring_due(worker *w, txn *e, uint64_t now)
{
    peek p;
    sip_msg m;
    char tagbuf[TAG_LEN + 1];
    if (peek_session(w, &e->sid, &p) != 0 || sip_parse(e->msg, e->len, &m, NULL) != SIP_OK) {
        txn_free(&w->tx, e);
        return;
    }
    set_source(w, (const struct sockaddr *)&e->to, e->tolen);
    sip_str tag = derive_tag(w, &m, tagbuf, NULL);
    size_t n = 0;
    if (p.state == SHMREG_STATE_CANCELLED) {
        /* 9.2, 15.1.2: the INVITE gets its 487, with its own Vias. The
         * record first: the 487's ACK may reach another worker at once,
         * and its note (acked_cseq) must land on our write, not be
         * overwritten by our older copy after it (which kept the 487
         * going out until Timer H; make test saw 4 copies after the ACK). */
        p.rec.final_status = 487;
        call_rec_put(w->h, &e->sid, &p.rec);
        n = send_final(w, &m, 487, NULL, tag);
        if (!n || txn_restart(&w->tx, e, TX_FINAL, w->out, n, now) != 0)
            txn_free(&w->tx, e);
        return;
    }
    if (p.state != SHMREG_STATE_INITIATING && p.state != SHMREG_STATE_RINGING) {
        txn_free(&w->tx, e);              /* failed by the master meanwhile */
        return;
    }
    if (now < e->answer_ms) {
        e->due_ms = now + RING_CHECK_MS < e->answer_ms ? now + RING_CHECK_MS : e->answer_ms;
        return;
    }
    n = answer(w, &m, &e->sid, tag);
    if (!n || txn_restart(&w->tx, e, TX_2XX, w->out, n, now) != 0)
        txn_free(&w->tx, e);
}

/* One entry of the timer table is due: go on or stop, as the registry
 * says (txn.h). */
static void timer_due(worker *w, txn *e, uint64_t now)
{
    if (e->kind == TX_RING) {
        ring_due(w, e, now);
        return;
    }
    peek p;
    int live = peek_session(w, &e->sid, &p) == 0;
    int go_on = 0;
    switch (e->kind) {
    case TX_2XX:
        go_on = live && (p.state == SHMREG_STATE_ACTIVE || p.state == SHMREG_STATE_ONHOLD) &&
                p.rec.acked_cseq < e->cseq;
        if (go_on && txn_expired(&w->tx, e)) {
            txn_free(&w->tx, e);
            end_unacked(w, &e->sid, p.state);
            return;
        }
        break;
    case TX_FINAL:
        go_on = live && p.rec.acked_cseq < e->cseq && !txn_expired(&w->tx, e);
        break;
    case TX_BYE:
        go_on = live && !(p.rec.flags & REC_BYE_ANSWERED) && !txn_expired(&w->tx, e);
        break;
    }
    if (!go_on) {
        txn_free(&w->tx, e);
        return;
    }
    send_to(w, e->msg, e->len, (const struct sockaddr *)&e->to, e->tolen);
    count(w, C_RETRANSMITS);
    txn_sent(&w->tx, e);
}

static void run_timers(worker *w)
{
    uint64_t now = mono_ms();
    for (unsigned i = 0; i < w->tx.hi; i++) {
        txn *e = &w->tx.e[i];
        if (e->kind != TX_FREE && e->due_ms <= now)
            timer_due(w, e, now);
    }
}

/* ------------------------------------------------------------ INVITE */

/* What an INVITE asks that we cannot give (8.2.2.3, 8.2.3), or its offer
 * and our answer (or, without an offer, our offer: 13.2.1). Returns 0
 * with the local SDP in w->sdp (*n bytes) and the remote one in *remote
 * (empty for a late offer), or the final status to answer with, *why its
 * phrase when it is not the usual one. */
static int check_invite(worker *w, const sip_msg *m, const sdp_local *l, size_t *n,
                        sip_str *remote, sip_str *codec, unsigned *remote_port,
                        const char **why)
{
    sdp_offer offer;
    *why = NULL;
    *remote = NOTAG;
    *remote_port = 0;
    if (m->nrequire)
        return 420;         /* sipd supports no extension; 100rel included */
    switch (sip_sdp_body(m, remote)) {
    case -1:
        return 415;
    case 0:
        *n = sdp_make_offer(w->sdp, sizeof w->sdp, media_config(w), l, codec, why);
        return *n ? 0 : 500;
    }
    if (sdp_parse(remote->p, remote->n, &offer, why) != 0) {
        count(w, C_BAD_400);
        return 400;
    }
    *remote_port = offer.port;
    *n = sdp_answer(w->sdp, sizeof w->sdp, &offer, media_config(w), l, codec, why);
    if (*n == 0) {
        *why = NULL;
        return 488;
    }
    return 0;
}

/* Join the caller's profile ("caller" = the From URI's user@host) with
 * the per-caller limit: 0, or SHMREG_ELIMIT when the caller has that many
 * live calls already. Other failures admit the call (and are counted). */
static int caller_admit(worker *w, const shmreg_id *sid, const sip_msg *m)
{
    char user[SHMREG_MAX_STR];
    size_t len;
    if (shmreg_user_key(S(m->from_uri), user, sizeof user, &len) != 0 || len == 0)
        return 0;
    int rc = shmreg_profile_join(w->h, sid, (shmreg_str){ "caller", 6 },
                                 (shmreg_str){ user, len > SHMREG_MAX_PROFILE_VALUE
                                                         ? SHMREG_MAX_PROFILE_VALUE : len },
                                 w->conf->max_per_caller, NULL);
    if (rc != 0 && rc != SHMREG_ELIMIT)
        registry_error(w, "caller profile", rc);
    return rc;
}

/* sipd moves no media; the port is only what the SDP and the registry
 * say: an even one in the configured range, fixed per call. */
static unsigned media_port(worker *w, uint64_t tag_raw)
{
    const shmreg_config_view *media = media_config(w);
    shmreg_config_media mc = { .rtp_port_min = 10000, .rtp_port_max = 20000 };
    if (media)
        shmreg_config_media_get(media, &mc);
    unsigned span = (unsigned)(mc.rtp_port_max - mc.rtp_port_min) + 1;
    unsigned port = (mc.rtp_port_min + (unsigned)((tag_raw >> 20) % span)) & ~1u;
    return port < mc.rtp_port_min ? mc.rtp_port_min : port;
}

/* A new call: check it, create the session with both SDPs and its call
 * record, then bind the dialog — the bind is what makes the call
 * findable, and it is insert-if-absent. An INVITE we refuse gets a
 * session too, in state Failed: its record is where the ACK of our
 * refusal is noted (which stops the retransmissions), and a retransmitted
 * INVITE finds the same answer there. Returns SHMREG_EEXIST when another
 * worker bound this INVITE first (the caller then answers from that
 * session). */
static int new_call(worker *w, const sip_msg *m, sip_str tag, uint64_t tag_raw,
                    const char *raw, size_t rawlen)
{
    unsigned port = media_port(w, tag_raw);
    sdp_local l = { w->conf->host, port, tag_raw >> 2, 1 };
    size_t n = 0;
    sip_str remote, codec = NOTAG;
    unsigned remote_port;
    const char *why;
    int status = check_invite(w, m, &l, &n, &remote, &codec, &remote_port, &why);

    char routebuf[CALL_REC_ROUTE_MAX];
    unsigned char ad[SHMREG_MAX_APPDATA];
    call_rec rec;
    call_rec_init(&rec, m, txn_key(m), routebuf);
    rec.final_status = (uint16_t)status;
    if (status == 0 && remote.n == 0)
        rec.flags |= REC_LATE_OFFER;
    char reason[64];
    snprintf(reason, sizeof reason, "%d %s", status, why ? why : "refused");
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S(m->from_uri);
    f.str[SHMREG_FIELD_TO_URI] = S(m->to_uri);
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S(m->from_name);
    f.str[SHMREG_FIELD_CALL_ID] = S(m->call_id);
    f.str[SHMREG_FIELD_LOCAL_TAG] = S(tag);
    f.str[SHMREG_FIELD_REMOTE_TAG] = S(m->from_tag);
    f.str[SHMREG_FIELD_CODEC] = S(codec);
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ (const char *)ad, call_rec_write(&rec, ad) };
    if (status)
        f.str[SHMREG_FIELD_FAILURE_REASON] = (shmreg_str){ reason, strlen(reason) };
    f.local_rtp_port = (uint16_t)(status ? 0 : port);
    f.remote_rtp_port = (uint16_t)remote_port;
    /* Complete before it is findable, born with both SDPs: a worker that
     * finds it (a retransmission) may answer from its local SDP at once. */
    shmreg_str sdp[2] = { { w->sdp, n }, { remote.p, status ? 0 : remote.n } };
    f.sdp = sdp;

    shmreg_id sid;
    int rc;
    if ((rc = shmreg_session_create(w->h, &f, &sid)) != 0) {
        send_final(w, m, rc == SHMREG_EFULL ? 503 : 500, NULL, tag);
        registry_error(w, "session create", rc);
        return 0;
    }
    /* Admission: before the bind, so no other worker can find the call
     * while it may still turn into a refusal. Its membership ends with it
     * (a final state or its delete), so the count is the caller's live
     * calls, whatever crashed. */
    if (!status && w->conf->max_per_caller && caller_admit(w, &sid, m) == SHMREG_ELIMIT) {
        count(w, C_CALLER_LIMIT);
        status = 486;
        why = "Busy Here (too many calls from this caller)";
        n = 0;
        rec.final_status = (uint16_t)status;
        snprintf(reason, sizeof reason, "486 caller at its limit of %u calls",
                 w->conf->max_per_caller);
        f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ (const char *)ad, call_rec_write(&rec, ad) };
        f.str[SHMREG_FIELD_FAILURE_REASON] = (shmreg_str){ reason, strlen(reason) };
        f.local_rtp_port = 0;
        sdp[SHMREG_SDP_LOCAL] = (shmreg_str){ NULL, 0 };   /* no answer to a refusal */
        sdp[SHMREG_SDP_REMOTE] = (shmreg_str){ NULL, 0 };
        shmreg_session_update(w->h, &sid, &f,
                              SHMREG_MASK(SHMREG_FIELD_APP_DATA) |
                                  SHMREG_MASK(SHMREG_FIELD_FAILURE_REASON) |
                                  SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT) | SHMREG_MASK_SDP_BOTH);
    }
    if ((rc = shmreg_dialog_bind(w->h, S(m->call_id), S(tag), S(m->from_tag), &sid))) {
        shmreg_session_delete(w->h, &sid);
        if (rc == SHMREG_EEXIST)
            return rc;
        registry_error(w, "new call", rc);
        send_final(w, m, rc == SHMREG_EFULL ? 503 : 500, NULL, tag);
        return 0;
    }
    count(w, C_NEW_CALLS);
    if (status) {
        if (shmreg_session_transition(w->h, &sid, SHMREG_STATE_INITIATING, SHMREG_STATE_FAILED,
                                      NULL) == 0)
            keep(w, TX_FINAL, &sid, m->cseq, send_final(w, m, status, why, tag));
        return 0;
    }
    if (shmreg_session_transition(w->h, &sid, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING,
                                  NULL) == 0)
        send_reply(w, m, 180, "Ringing", tag, NULL, w->headers, NOTAG);
    txn *e = NULL;
    if (w->conf->ring_ms) {
        e = txn_add(&w->tx, TX_RING, &sid, m->cseq, w->from, w->fromlen, raw, rawlen,
                    mono_ms());
        if (e) {
            e->answer_ms = mono_ms() + w->conf->ring_ms;
            e->due_ms = mono_ms();          /* ring_due sets the next look */
            return 0;
        }
        count(w, C_NO_TIMER);               /* no timer: answer now */
    }
    keep(w, TX_2XX, &sid, m->cseq, answer(w, m, &sid, tag));
    return 0;
}

/* The INVITE's dialog exists: a retransmission (any worker may get it), or
 * a new INVITE reusing Call-ID and From-tag. Returns 1 when the old
 * session was removed and the INVITE should be taken as a new call. */
static int invite_again(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    peek p;
    if (peek_session(w, sid, &p) != 0)
        return 1;
    int final = shmreg_state_is_final(p.state);
    if (m->cseq != p.rec.invite_cseq) {
        if (!final && p.state != SHMREG_STATE_TERMINATING) {
            send_final(w, m, 500, NULL, tag);
            return 0;
        }
        int rc = shmreg_session_delete(w->h, sid);
        return rc == 0 || rc == SHMREG_ENOENT;
    }
    uint64_t key = txn_key(m);
    if (key && p.rec.invite_key && key != p.rec.invite_key) {
        /* Same request, another transaction: it was forked to us twice
         * (8.2.2.2, merged requests). */
        if (!final)
            send_final(w, m, 482, NULL, tag);
        return 0;
    }
    count(w, C_INVITE_RETRANS);
    switch (p.state) {
    case SHMREG_STATE_INITIATING:
    case SHMREG_STATE_RINGING:
        if (!owner_alive(p.owner)) {
            /* Its worker died before answering: we answer instead. */
            count(w, C_ADOPTED);
            keep(w, TX_2XX, sid, m->cseq, answer(w, m, sid, tag));
        } else {
            send_reply(w, m, p.state == SHMREG_STATE_RINGING ? 180 : 100,
                       p.state == SHMREG_STATE_RINGING ? "Ringing" : "Trying",
                       p.state == SHMREG_STATE_RINGING ? tag : NOTAG, NULL,
                       p.state == SHMREG_STATE_RINGING ? w->headers : NULL, NOTAG);
        }
        break;
    case SHMREG_STATE_ACTIVE:
    case SHMREG_STATE_ONHOLD:
    case SHMREG_STATE_TRANSFERRING:
        reply_200(w, m, sid, tag);
        break;
    case SHMREG_STATE_CANCELLED:
    case SHMREG_STATE_FAILED:
        /* the same final answer, whoever gives it (a cancelled call whose
         * ringing worker has not noted its 487 yet: 487 all the same) */
        send_final(w, m, p.rec.final_status ? p.rec.final_status
                         : p.state == SHMREG_STATE_CANCELLED ? 487 : 500, NULL, tag);
        break;
    default:    /* Terminating, Terminated: a late copy, nothing to say */
        break;
    }
    return 0;
}

static void on_invite(worker *w, const sip_msg *m, const char *raw, size_t rawlen)
{
    char tagbuf[TAG_LEN + 1];
    uint64_t tag_raw;
    if (m->from_tag.n == 0) {
        reply(w, m, 400, "Missing From tag", NOTAG);
        count(w, C_BAD_400);
        return;
    }
    sip_str tag = derive_tag(w, m, tagbuf, &tag_raw);
    reply(w, m, 100, "Trying", NOTAG);
    /* Bounded: each round either answers, or removes a finished session,
     * or lost a bind race whose winner the next find sees. */
    for (int round = 0; round < 4; round++) {
        shmreg_id sid;
        int rc = shmreg_dialog_find(w->h, S(m->call_id), S(tag), S(m->from_tag), &sid);
        if (rc == 0) {
            if (invite_again(w, m, &sid, tag) == 0)
                return;
        } else if (rc == SHMREG_ENOENT) {
            if (new_call(w, m, tag, tag_raw, raw, rawlen) == 0)
                return;
        } else {
            registry_error(w, "dialog lookup", rc);
            send_final(w, m, 500, NULL, tag);
            return;
        }
    }
    send_final(w, m, 500, NULL, tag);
}

/* re-INVITE: a new offer in an established dialog. sendonly/inactive puts
 * the call on hold, sendrecv/recvonly takes it off. Without an offer, ours
 * goes in the 200 and the ACK brings the answer. */
static void on_reinvite(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    if (find_dialog(w, m, m->to_tag, m->from_tag, &sid, &p) != 0) {
        reply(w, m, 481, "Call/Transaction Does Not Exist", NOTAG);
        return;
    }
    if (p.state != SHMREG_STATE_ACTIVE && p.state != SHMREG_STATE_ONHOLD) {
        if (shmreg_state_is_final(p.state) || p.state == SHMREG_STATE_TERMINATING)
            reply(w, m, 481, "Call/Transaction Does Not Exist", NOTAG);
        else
            reply(w, m, 491, "Request Pending", NOTAG);
        return;
    }
    if (cseq_too_low(w, m, &sid, &p)) {
        send_final(w, m, 500, "CSeq out of order", NOTAG);
        return;
    }
    sip_str body;
    int has = m->nrequire ? -2 : sip_sdp_body(m, &body);
    if (has < 0) {
        send_final(w, m, has == -2 ? 420 : 415, NULL, NOTAG);
        return;
    }
    if (has == 0) {                    /* no offer: ours again, as the offer */
        if (!(p.rec.flags & REC_LATE_OFFER)) {
            p.rec.flags |= REC_LATE_OFFER;
            call_rec_put(w->h, &sid, &p.rec);
        }
        keep(w, TX_2XX, &sid, m->cseq, reply_200(w, m, &sid, NOTAG));
        return;
    }
    /* A retransmission carries the offer we already stored: same answer. */
    shmreg_session s;
    int same = 0;
    uint64_t version = 1;
    unsigned local_port = 0;
    shmreg_read_begin(w->h);
    if (shmreg_session_get(w->h, &sid, &s) == 0) {
        const shmreg_str *r = &s.sdp[SHMREG_SDP_REMOTE], *l = &s.sdp[SHMREG_SDP_LOCAL];
        same = r->len == body.n && memcmp(r->ptr, body.p, r->len) == 0;
        version = sdp_version(l->ptr, l->len) + 1;
        local_port = s.local_rtp_port;
    }
    shmreg_read_end(w->h);
    if (same) {
        reply_200(w, m, &sid, NOTAG);
        return;
    }
    sdp_offer offer;
    const char *why;
    if (sdp_parse(body.p, body.n, &offer, &why) != 0) {
        count(w, C_BAD_400);
        reply(w, m, 400, why, NOTAG);
        return;
    }
    char tagbuf[TAG_LEN + 1];
    uint64_t tag_raw;
    derive_tag(w, m, tagbuf, &tag_raw);
    sdp_local l = { w->conf->host, local_port, tag_raw >> 2, version };
    sip_str codec;
    size_t n = sdp_answer(w->sdp, sizeof w->sdp, &offer, media_config(w), &l, &codec, &why);
    if (n == 0) {
        send_final(w, m, 488, NULL, NOTAG);
        return;
    }
    int hold = offer.direction == SDP_SENDONLY || offer.direction == SDP_INACTIVE;
    int want = hold ? SHMREG_STATE_ONHOLD : SHMREG_STATE_ACTIVE;
    int rc;
    if (want != p.state &&
        (rc = shmreg_session_transition(w->h, &sid, p.state, want, NULL)) != 0) {
        reply(w, m, 491, "Request Pending", NOTAG);
        return;
    }
    /* Offer and answer change together: nobody reads one without the other. */
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    shmreg_str sdp[2] = { { w->sdp, n }, { body.p, body.n } };
    f.sdp = sdp;
    if ((rc = shmreg_session_update(w->h, &sid, &f, SHMREG_MASK_SDP_BOTH)) != 0) {
        registry_error(w, "re-INVITE", rc);
        send_final(w, m, 500, NULL, NOTAG);
        return;
    }
    keep(w, TX_2XX, &sid, m->cseq,
         send_reply(w, m, 200, "OK", NOTAG, NULL, w->headers, (sip_str){ w->sdp, n }));
}

/* ------------------------------------------------------------ the others */

/* ACK: never answered. It notes in the record that the final response of
 * INVITE CSeq n arrived, which stops whoever retransmits it; after a late
 * offer (ours in the 2xx) it brings the answer. */
static void on_ack(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    if (find_dialog(w, m, m->to_tag, m->from_tag, &sid, &p) != 0)
        return;
    int dirty = 0;
    if (m->cseq > p.rec.acked_cseq) {
        p.rec.acked_cseq = m->cseq;
        dirty = 1;
    }
    sip_str answer;
    sdp_offer a;
    const char *why;
    if ((p.rec.flags & REC_LATE_OFFER) && sip_sdp_body(m, &answer) == 1 &&
        sdp_parse(answer.p, answer.n, &a, &why) == 0) {
        shmreg_fields f;
        memset(&f, 0, sizeof f);
        f.remote_rtp_port = (uint16_t)a.port;
        f.str[SHMREG_FIELD_CODEC] = a.nfmt ? S(a.fmt[0].name) : S(NOTAG);
        shmreg_str sdp[2] = { { NULL, 0 }, { answer.p, answer.n } };
        f.sdp = sdp;   /* the answer, its codec and its port: one change */
        shmreg_session_update(w->h, &sid, &f, SHMREG_MASK(SHMREG_FIELD_CODEC) |
                                                  SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT) |
                                                  SHMREG_MASK_SDP(SHMREG_SDP_REMOTE));
        p.rec.flags &= (uint8_t)~REC_LATE_OFFER;
        dirty = 1;
    }
    if (dirty)
        call_rec_put(w->h, &sid, &p.rec);
}

static void on_bye(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    if (find_dialog(w, m, m->to_tag, m->from_tag, &sid, &p) != 0) {
        reply(w, m, 481, "Call/Transaction Does Not Exist", NOTAG);
        return;
    }
    if (cseq_too_low(w, m, &sid, &p)) {
        send_final(w, m, 500, "CSeq out of order", NOTAG);
        return;
    }
    /* Terminating then Terminated, each a compare-and-set: a retransmitted
     * BYE on another worker, or one after a worker died between the two
     * steps, finishes the job and gets its 200 too. A BYE in the early
     * dialog (15.1.2) cancels the call; the worker ringing it sends the
     * INVITE its 487, so the BYE's 200 goes first. */
    int early = p.state == SHMREG_STATE_INITIATING || p.state == SHMREG_STATE_RINGING;
    if (early)
        reply(w, m, 200, "OK", NOTAG);
    for (int tries = 0; tries < 4; tries++) {
        int st = p.state;
        if (st == SHMREG_STATE_CANCELLED || st == SHMREG_STATE_FAILED) {
            if (!early)        /* (a CANCEL got there first: our 200 is out) */
                reply(w, m, 481, "Call/Transaction Does Not Exist", NOTAG);
            return;
        }
        if (st == SHMREG_STATE_TERMINATED)
            break;
        int rc;
        if (st == SHMREG_STATE_INITIATING || st == SHMREG_STATE_RINGING) {
            rc = shmreg_session_transition(w->h, &sid, st, SHMREG_STATE_CANCELLED, &p.state);
            if (rc == 0)
                break;
        } else {
            rc = 0;
            if (st != SHMREG_STATE_TERMINATING)
                rc = shmreg_session_transition(w->h, &sid, st, SHMREG_STATE_TERMINATING,
                                               &p.state);
            if (rc == 0)
                rc = shmreg_session_transition(w->h, &sid, SHMREG_STATE_TERMINATING,
                                               SHMREG_STATE_TERMINATED, &p.state);
            if (rc == 0)
                break;
        }
        if (rc == SHMREG_EFOREIGN) {
            /* Another host owns the call and is alive (else it would have
             * been adopted here): it was sent to the wrong host. */
            if (!early)
                send_final(w, m, 503, "Call owned by another host", NOTAG);
            return;
        }
        if (rc != SHMREG_ECONFLICT && rc != SHMREG_ESTATE) {
            registry_error(w, "BYE", rc);
            break;
        }
    }
    /* The session lingers, Terminated, for retransmissions; the master
     * deletes it (and so its dialog) after the linger time. */
    if (!early)
        reply(w, m, 200, "OK", NOTAG);
}

/* CANCEL (9.2): it must match the INVITE server transaction (17.2.3: the
 * branch and sent-by of its top Via, and its CSeq number), else 481. The
 * 487 is the INVITE's response and carries the INVITE's Vias, which
 * through a proxy are not the CANCEL's: the worker ringing the INVITE
 * sends it (ring_due) once it sees the state Cancelled. */
static void on_cancel(worker *w, const sip_msg *m)
{
    char tagbuf[TAG_LEN + 1];
    shmreg_id sid;
    peek p;
    if (m->from_tag.n == 0) {
        reply(w, m, 400, "Missing From tag", NOTAG);
        return;
    }
    sip_str tag = derive_tag(w, m, tagbuf, NULL);
    if (find_dialog(w, m, tag, m->from_tag, &sid, &p) != 0 || m->cseq != p.rec.invite_cseq ||
        txn_key(m) != p.rec.invite_key) {
        count(w, C_CANCELS_481);
        reply(w, m, 481, "Call/Transaction Does Not Exist", NOTAG);
        return;
    }
    /* The 200 first: the 487 that the state change triggers must not
     * overtake it. After a final response the CANCEL has no effect, but
     * its 200 is due all the same. */
    reply(w, m, 200, "OK", tag);
    if (p.state == SHMREG_STATE_INITIATING || p.state == SHMREG_STATE_RINGING)
        shmreg_session_transition(w->h, &sid, p.state, SHMREG_STATE_CANCELLED, NULL);
}

static void on_options(worker *w, const sip_msg *m)
{
    char tagbuf[TAG_LEN + 1];
    sip_str tag = NOTAG;
    if (m->to_tag.n) {
        shmreg_id sid;
        peek p;
        if (find_dialog(w, m, m->to_tag, m->from_tag, &sid, &p) != 0) {
            reply(w, m, 481, "Call/Transaction Does Not Exist", tag);
            return;
        }
    } else if (m->from_tag.n) {
        tag = derive_tag(w, m, tagbuf, NULL);
    }
    send_reply(w, m, 200, "OK", tag, NULL, ALLOW ACCEPT "Supported: \r\n", NOTAG);
}

/* A response: only those to the BYEs we send matter (dialog.h). From is
 * us in them, To the peer. */
static void on_response(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    count(w, C_RESPONSES);
    if (m->status < 200 || !sip_str_eq(m->cseq_method, "BYE"))
        return;
    if (shmreg_dialog_find(w->h, S(m->call_id), S(m->from_tag), S(m->to_tag), &sid) == 0 &&
        peek_session(w, &sid, &p) == 0 && !(p.rec.flags & REC_BYE_ANSWERED)) {
        p.rec.flags |= REC_BYE_ANSWERED;
        call_rec_put(w->h, &sid, &p.rec);
        /* Our BYE of a call we ended (its maximum duration) is answered:
         * the dialog is over (15.1.1). */
        if (p.state == SHMREG_STATE_TERMINATING)
            shmreg_session_transition(w->h, &sid, SHMREG_STATE_TERMINATING,
                                      SHMREG_STATE_TERMINATED, NULL);
    }
}

/* ------------------------------------------------------------ dispatch */

static void handle(worker *w, const char *buf, size_t len)
{
    sip_msg m;
    const char *why;
    count(w, C_DATAGRAMS);
    if (sip_parse(buf, len, &m, &why) != SIP_OK) {
        if (sip_can_reply(&m)) {
            char tagbuf[TAG_LEN + 1];
            sip_str tag = NOTAG;
            if (m.from_tag.n && !m.to_tag.n)
                tag = derive_tag(w, &m, tagbuf, NULL);
            reply(w, &m, 400, why, tag);
            count(w, C_BAD_400);
        } else {
            count(w, C_DROPPED);
        }
        complain(w, "malformed datagram (%zu bytes): %s", len, why);
        return;
    }
    if (!m.is_request) {
        on_response(w, &m);
        return;
    }
    count(w, C_REQUESTS);
    switch (m.method) {
    case SIP_INVITE:
        if (m.to_tag.n)
            on_reinvite(w, &m);
        else
            on_invite(w, &m, buf, len);
        break;
    case SIP_ACK: on_ack(w, &m); break;
    case SIP_BYE: on_bye(w, &m); break;
    case SIP_CANCEL: on_cancel(w, &m); break;
    case SIP_OPTIONS: on_options(w, &m); break;
    default:
        send_reply(w, &m, 501, "Not Implemented", NOTAG, NULL, ALLOW, NOTAG);
        break;
    }
}

/* ------------------------------------------------------------ socket */

static int open_socket(worker *w)
{
    const sipd_conf *c = w->conf;
    int fd = socket(c->addr.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1, rcvbuf = 4 << 20;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)&c->addr, c->addrlen) != 0) {
        sipd_log("worker %u: socket on %s:%u: %s", w->index, c->host, c->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* best effort */
    if (c->spread) {
        /* The kernel's default picks a socket by a hash of the 4-tuple, so
         * one client would always reach the same worker. Instead: a random
         * member of the group for every datagram ("A = random % workers";
         * an index past the group's current size, while a worker is being
         * respawned, falls back to the hash). Attaching replaces the
         * program of the whole group, so every worker may do it. */
        struct sock_filter code[] = {
            { BPF_LD | BPF_W | BPF_ABS, 0, 0, (uint32_t)(SKF_AD_OFF + SKF_AD_RANDOM) },
            { BPF_ALU | BPF_MOD | BPF_K, 0, 0, c->workers },
            { BPF_RET | BPF_A, 0, 0, 0 },
        };
        struct sock_fprog prog = { 3, code };
        if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0)
            sipd_log("worker %u: SO_ATTACH_REUSEPORT_CBPF: %s (kernel hash used)", w->index,
                     strerror(errno));
    }
    return fd;
}

/* ------------------------------------------------------------ life */

void sipd_worker(const sipd_conf *conf, sipd_slot *slot, unsigned index)
{
    static worker w;   /* large buffers: not on the stack */
    w.conf = conf;
    w.slot = slot;
    w.index = index;
    w.pid = getpid();
    w.fd = -1;
    w.tx.t1 = conf->t1_ms;
    w.tx.t2 = conf->t2_ms;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;         /* no SA_RESTART: poll() returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* If the master is killed outright, do not linger as orphans. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        exit(1);

    int rc = shmreg_open(conf->registry, NULL, &w.h);
    if (rc != 0) {
        sipd_log("worker %u: open %s: %s (%s)", index, conf->registry, shmreg_strerror(rc),
                 shmreg_errmsg());
        exit(1);
    }
    if ((w.fd = open_socket(&w)) < 0) {
        shmreg_close(w.h);
        exit(1);
    }
    const char *fmt = strchr(conf->host, ':') ? "Contact: <sip:sipd@[%s]:%u>\r\n"
                                              : "Contact: <sip:sipd@%s:%u>\r\n";
    snprintf(w.headers, sizeof w.headers, fmt, conf->host, conf->port);

    while (!stop) {
        int timeout = 1000;
        uint64_t due = txn_next_due(&w.tx), now = mono_ms();
        if (due != UINT64_MAX)
            timeout = due <= now ? 0 : due - now < 1000 ? (int)(due - now) : 1000;
        struct pollfd pfd = { w.fd, POLLIN, 0 };
        int n = poll(&pfd, 1, timeout);
        if (n < 0 && errno != EINTR) {
            sipd_log("worker %u: poll: %s", index, strerror(errno));
            break;
        }
        /* Drain what is queued, a bounded batch, then see to the timers. */
        for (int i = 0; n > 0 && i < 64 && !stop; i++) {
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            ssize_t len = recvfrom(w.fd, w.in, sizeof w.in, MSG_TRUNC,
                                   (struct sockaddr *)&from, &fl);
            if (len < 0)
                break;   /* EAGAIN: drained */
            set_source(&w, (const struct sockaddr *)&from, fl);
            if ((size_t)len > SIPMSG_MAX_LEN) {    /* MSG_TRUNC: the real size */
                count(&w, C_DATAGRAMS);
                count(&w, C_DROPPED);
                complain(&w, "oversized datagram (%zd bytes) dropped", len);
                continue;
            }
            handle(&w, w.in, (size_t)len);
        }
        run_timers(&w);
    }

    /* Calls still ringing here stay in the registry, Ringing; the master's
     * sweep fails them once it sees this worker gone, as it ends the
     * answered calls whose ACK never came. */
    close(w.fd);
    shmreg_config_release(w.media);
    shmreg_close(w.h);
    exit(0);
}
