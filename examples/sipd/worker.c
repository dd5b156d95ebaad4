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
 * The tag stays unguessable (keyed), and the CSeq kept in the session's
 * app data tells a retransmission from a new INVITE that reuses the
 * Call-ID and From-tag after the first call ended.
 *
 * A worker that dies. Its socket leaves the group (datagrams queued on it
 * are lost; the client's retransmissions reach the others), its handle is
 * cleared by the master's shmreg_reap(), and its half-set-up calls are
 * either adopted (a retransmitted INVITE finds an early session whose
 * owner is dead, and this worker answers it) or failed by the master's
 * sweep. Nothing else depended on it.
 */
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

#include "sdp.h"
#include "shmreg.h"
#include "sipd.h"
#include "sipmsg.h"

#define ALLOW "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"
#define TAG_LEN 16   /* hex digits of the derived To-tag (64 bits) */

struct pending {     /* an INVITE to answer when its ring time is up */
    struct pending *next;
    uint64_t due_ms;
    shmreg_id sid;
    struct sockaddr_storage from;
    socklen_t fromlen;
    size_t len;
    char msg[];
};

typedef struct worker {
    const sipd_conf *conf;
    sipd_slot *slot;
    unsigned index;
    pid_t pid;
    shmreg *h;
    shmreg_config_view *media;        /* refreshed when a config write lands */
    int fd;
    char headers[256];                /* Contact + Server, for dialog-creating replies */
    struct pending *pend, *pend_tail;
    const struct sockaddr *from;      /* source of the request being handled */
    socklen_t fromlen;
    uint64_t log_next_ms;             /* rate limit of this worker's complaints */
    unsigned log_quiet;
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

/* ------------------------------------------------------------ replies */

static void send_reply(worker *w, const sip_msg *m, int status, const char *reason,
                       sip_str to_tag, const char *cseq_method, const char *headers,
                       sip_str sdp)
{
    sip_reply r = { status, reason, to_tag, cseq_method, headers,
                    sdp.n ? "application/sdp" : NULL, sdp };
    size_t n = sip_build_reply(w->out, sizeof w->out, m, &r);
    if (n)
        sendto(w->fd, w->out, n, MSG_DONTWAIT, w->from, w->fromlen);
}

static void reply(worker *w, const sip_msg *m, int status, const char *reason, sip_str tag)
{
    send_reply(w, m, status, reason, tag, NULL, status == 200 ? w->headers : NULL,
               (sip_str){ NULL, 0 });
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

/* What a worker needs to know about a session, read in place. */
typedef struct peek {
    int state;
    pid_t owner;
    uint32_t invite_cseq;
    unsigned local_port;
} peek;

static int peek_session(worker *w, const shmreg_id *sid, peek *p)
{
    shmreg_session s;
    shmreg_read_begin(w->h);
    int rc = shmreg_session_get(w->h, sid, &s);
    if (rc == 0) {
        p->state = s.state;
        p->owner = s.owner_pid;
        p->local_port = s.local_rtp_port;
        p->invite_cseq = 0;
        const shmreg_str *ad = &s.str[SHMREG_FIELD_APP_DATA];
        if (ad->len == 4) {
            const unsigned char *b = (const unsigned char *)ad->ptr;
            p->invite_cseq = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 |
                             (uint32_t)b[2] << 8 | b[3];
        }
    }
    shmreg_read_end(w->h);
    return rc;
}

static int owner_alive(pid_t pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* An in-dialog request: find its session and count who handles it. */
static int find_dialog(worker *w, const sip_msg *m, sip_str local_tag, shmreg_id *sid,
                       peek *p)
{
    int rc = shmreg_dialog_find(w->h, S(m->call_id), S(local_tag), S(m->from_tag), sid);
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

/* 200 OK to an INVITE, the SDP answer read in place from the registry
 * straight into the datagram. Sent whenever a session is (or just became)
 * Active/OnHold, also as the answer to a retransmitted INVITE. */
static void reply_200(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    shmreg_session s;
    shmreg_read_begin(w->h);
    if (shmreg_session_get(w->h, sid, &s) == 0) {
        sip_str sdp = { s.sdp[SHMREG_SDP_LOCAL].ptr, s.sdp[SHMREG_SDP_LOCAL].len };
        send_reply(w, m, 200, "OK", tag, NULL, w->headers, sdp);
    }
    shmreg_read_end(w->h);
}

/* Answer a ringing (or, when adopting, still initiating) call: the state
 * moves to Active unless a CANCEL got there first. */
static void answer(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    int old = 0;
    int rc = shmreg_session_transition(w->h, sid, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, &old);
    if (rc == 0 || (rc == SHMREG_ESTATE && (old == SHMREG_STATE_ACTIVE ||
                                            old == SHMREG_STATE_ONHOLD)))
        reply_200(w, m, sid, tag);
    else if (rc != SHMREG_ESTATE && rc != SHMREG_ENOENT)
        registry_error(w, "answer", rc);
}

static void schedule_answer(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag,
                            const char *msg, size_t len)
{
    struct pending *p = malloc(sizeof *p + len);
    if (!p) {
        answer(w, m, sid, tag);      /* no memory for the timer: answer now */
        return;
    }
    p->next = NULL;
    p->due_ms = mono_ms() + w->conf->ring_ms;
    p->sid = *sid;
    memcpy(&p->from, w->from, w->fromlen);
    p->fromlen = w->fromlen;
    p->len = len;
    memcpy(p->msg, msg, len);
    if (w->pend_tail)           /* one ring time for all: FIFO is due order */
        w->pend_tail->next = p;
    else
        w->pend = p;
    w->pend_tail = p;
}

static void run_timers(worker *w)
{
    uint64_t now = mono_ms();
    while (w->pend && w->pend->due_ms <= now) {
        struct pending *p = w->pend;
        w->pend = p->next;
        if (!w->pend)
            w->pend_tail = NULL;
        sip_msg m;
        char tag[TAG_LEN + 1];
        if (sip_parse(p->msg, p->len, &m, NULL) == SIP_OK) {
            w->from = (const struct sockaddr *)&p->from;
            w->fromlen = p->fromlen;
            answer(w, &m, &p->sid, derive_tag(w, &m, tag, NULL));
        }
        free(p);
    }
}

/* ------------------------------------------------------------ INVITE */

/* A new call: build the answer, create the session with both SDPs, then
 * bind the dialog — the bind is what makes the call findable, and it is
 * insert-if-absent. Returns SHMREG_EEXIST when another worker bound this
 * INVITE first (the caller then answers from that session). */
static int new_call(worker *w, const sip_msg *m, sip_str tag, uint64_t tag_raw,
                    const char *raw, size_t rawlen)
{
    if (m->body.n == 0 || !sip_str_ieq(m->content_type, "application/sdp")) {
        send_reply(w, m, 488, "Not Acceptable Here", tag, NULL,
                   "Warning: 399 sipd \"an SDP offer is required\"\r\n", (sip_str){ NULL, 0 });
        return 0;
    }
    sdp_offer offer;
    const char *why;
    if (sdp_parse(m->body.p, m->body.n, &offer, &why) != 0) {
        count(w, C_BAD_400);
        reply(w, m, 400, why, tag);
        return 0;
    }
    /* The media config: O(1) staleness check, a new view only after a write. */
    int rc = shmreg_config_refresh(w->h, "media", &w->media, NULL);
    if (rc < 0 && rc != SHMREG_ENOENT)
        registry_error(w, "media config", rc);
    const shmreg_config_view *media = rc < 0 ? NULL : w->media;
    shmreg_config_media mc = { .rtp_port_min = 10000, .rtp_port_max = 20000 };
    if (media)
        shmreg_config_media_get(media, &mc);
    /* sipd moves no media; the port is only what the SDP and the
     * registry say: an even one in the configured range. */
    unsigned span = (unsigned)(mc.rtp_port_max - mc.rtp_port_min) + 1;
    unsigned port = (mc.rtp_port_min + (unsigned)((tag_raw >> 20) % span)) & ~1u;
    if (port < mc.rtp_port_min)
        port = mc.rtp_port_min;

    sdp_local l = { w->conf->host, port, tag_raw >> 2, 1 };
    sip_str codec;
    size_t n = sdp_answer(w->sdp, sizeof w->sdp, &offer, media, &l, &codec, &why);
    if (n == 0) {
        send_reply(w, m, 488, "Not Acceptable Here", tag, NULL, NULL, (sip_str){ NULL, 0 });
        return 0;
    }

    unsigned char cseq[4] = { (unsigned char)(m->cseq >> 24), (unsigned char)(m->cseq >> 16),
                              (unsigned char)(m->cseq >> 8), (unsigned char)m->cseq };
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S(m->from_uri);
    f.str[SHMREG_FIELD_TO_URI] = S(m->to_uri);
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S(m->from_name);
    f.str[SHMREG_FIELD_CALL_ID] = S(m->call_id);
    f.str[SHMREG_FIELD_LOCAL_TAG] = S(tag);
    f.str[SHMREG_FIELD_REMOTE_TAG] = S(m->from_tag);
    f.str[SHMREG_FIELD_CODEC] = S(codec);
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ (const char *)cseq, 4 };
    f.local_rtp_port = (uint16_t)port;
    f.remote_rtp_port = (uint16_t)offer.port;

    shmreg_id sid;
    if ((rc = shmreg_session_create(w->h, &f, &sid)) != 0) {
        if (rc == SHMREG_EFULL)
            send_reply(w, m, 503, "Service Unavailable", tag, NULL, "Retry-After: 5\r\n",
                       (sip_str){ NULL, 0 });
        else
            reply(w, m, 500, "Server Internal Error", tag);
        registry_error(w, "session create", rc);
        return 0;
    }
    /* Complete before it is findable: a worker that finds it (a
     * retransmission) may answer from its local SDP at once. */
    if ((rc = shmreg_session_set_sdp(w->h, &sid, SHMREG_SDP_REMOTE, m->body.p, m->body.n)) ||
        (rc = shmreg_session_set_sdp(w->h, &sid, SHMREG_SDP_LOCAL, w->sdp, n)) ||
        (rc = shmreg_dialog_bind(w->h, S(m->call_id), S(tag), S(m->from_tag), &sid))) {
        shmreg_session_delete(w->h, &sid);
        if (rc == SHMREG_EEXIST)
            return rc;
        registry_error(w, "new call", rc);
        reply(w, m, rc == SHMREG_EFULL ? 503 : 500,
              rc == SHMREG_EFULL ? "Service Unavailable" : "Server Internal Error", tag);
        return 0;
    }
    count(w, C_NEW_CALLS);
    if (shmreg_session_transition(w->h, &sid, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING,
                                  NULL) == 0)
        send_reply(w, m, 180, "Ringing", tag, NULL, w->headers, (sip_str){ NULL, 0 });
    if (w->conf->ring_ms == 0)
        answer(w, m, &sid, tag);
    else
        schedule_answer(w, m, &sid, tag, raw, rawlen);
    return 0;
}

/* The INVITE's dialog exists: a retransmission (any worker may get it), or
 * a new INVITE reusing Call-ID and From-tag. Returns 1 when the old
 * session was finished and removed: start again as a new call. */
static int invite_again(worker *w, const sip_msg *m, const shmreg_id *sid, sip_str tag)
{
    peek p;
    if (peek_session(w, sid, &p) != 0)
        return 1;
    int final = shmreg_state_is_final(p.state);
    if (m->cseq != p.invite_cseq) {
        if (!final && p.state != SHMREG_STATE_TERMINATING) {
            send_reply(w, m, 500, "Server Internal Error", tag, NULL, "Retry-After: 1\r\n",
                       (sip_str){ NULL, 0 });
            return 0;
        }
        int rc = shmreg_session_delete(w->h, sid);
        return rc == 0 || rc == SHMREG_ENOENT;
    }
    count(w, C_INVITE_RETRANS);
    switch (p.state) {
    case SHMREG_STATE_INITIATING:
    case SHMREG_STATE_RINGING:
        if (!owner_alive(p.owner)) {
            /* Its worker died before answering: we answer instead. */
            count(w, C_ADOPTED);
            answer(w, m, sid, tag);
        } else {
            reply(w, m, p.state == SHMREG_STATE_RINGING ? 180 : 100,
                  p.state == SHMREG_STATE_RINGING ? "Ringing" : "Trying", tag);
        }
        break;
    case SHMREG_STATE_ACTIVE:
    case SHMREG_STATE_ONHOLD:
    case SHMREG_STATE_TRANSFERRING:
        reply_200(w, m, sid, tag);
        break;
    case SHMREG_STATE_CANCELLED:
        reply(w, m, 487, "Request Terminated", tag);
        break;
    case SHMREG_STATE_FAILED:
        reply(w, m, 500, "Server Internal Error", tag);
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
        reply(w, m, 400, "Missing From tag", (sip_str){ NULL, 0 });
        count(w, C_BAD_400);
        return;
    }
    sip_str tag = derive_tag(w, m, tagbuf, &tag_raw);
    reply(w, m, 100, "Trying", (sip_str){ NULL, 0 });
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
            reply(w, m, 500, "Server Internal Error", tag);
            return;
        }
    }
    reply(w, m, 500, "Server Internal Error", tag);
}

/* re-INVITE: a new offer in an established dialog. sendonly/inactive puts
 * the call on hold, sendrecv/recvonly takes it off. */
static void on_reinvite(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    if (find_dialog(w, m, m->to_tag, &sid, &p) != 0) {
        reply(w, m, 481, "Call/Transaction Does Not Exist", (sip_str){ NULL, 0 });
        return;
    }
    if (p.state != SHMREG_STATE_ACTIVE && p.state != SHMREG_STATE_ONHOLD) {
        if (shmreg_state_is_final(p.state) || p.state == SHMREG_STATE_TERMINATING)
            reply(w, m, 481, "Call/Transaction Does Not Exist", (sip_str){ NULL, 0 });
        else
            reply(w, m, 491, "Request Pending", (sip_str){ NULL, 0 });
        return;
    }
    if (m->body.n == 0) {          /* no offer: ours again, as the offer */
        reply_200(w, m, &sid, (sip_str){ NULL, 0 });
        return;
    }
    /* A retransmission carries the offer we already stored: same answer. */
    shmreg_session s;
    int same = 0;
    uint64_t version = 1;
    shmreg_read_begin(w->h);
    if (shmreg_session_get(w->h, &sid, &s) == 0) {
        const shmreg_str *r = &s.sdp[SHMREG_SDP_REMOTE], *l = &s.sdp[SHMREG_SDP_LOCAL];
        same = r->len == m->body.n && memcmp(r->ptr, m->body.p, r->len) == 0;
        version = sdp_version(l->ptr, l->len) + 1;
    }
    shmreg_read_end(w->h);
    if (same) {
        reply_200(w, m, &sid, (sip_str){ NULL, 0 });
        return;
    }
    sdp_offer offer;
    const char *why;
    if (sdp_parse(m->body.p, m->body.n, &offer, &why) != 0) {
        count(w, C_BAD_400);
        reply(w, m, 400, why, (sip_str){ NULL, 0 });
        return;
    }
    int rc = shmreg_config_refresh(w->h, "media", &w->media, NULL);
    char tagbuf[TAG_LEN + 1];
    uint64_t tag_raw;
    derive_tag(w, m, tagbuf, &tag_raw);
    sdp_local l = { w->conf->host, p.local_port, tag_raw >> 2, version };
    sip_str codec;
    size_t n = sdp_answer(w->sdp, sizeof w->sdp, &offer, rc < 0 ? NULL : w->media, &l,
                          &codec, &why);
    if (n == 0) {
        reply(w, m, 488, "Not Acceptable Here", (sip_str){ NULL, 0 });
        return;
    }
    int hold = offer.direction == SDP_SENDONLY || offer.direction == SDP_INACTIVE;
    int want = hold ? SHMREG_STATE_ONHOLD : SHMREG_STATE_ACTIVE;
    if (want != p.state &&
        (rc = shmreg_session_transition(w->h, &sid, p.state, want, NULL)) != 0) {
        reply(w, m, 491, "Request Pending", (sip_str){ NULL, 0 });
        return;
    }
    if ((rc = shmreg_session_set_sdp(w->h, &sid, SHMREG_SDP_REMOTE, m->body.p, m->body.n)) ||
        (rc = shmreg_session_set_sdp(w->h, &sid, SHMREG_SDP_LOCAL, w->sdp, n))) {
        registry_error(w, "re-INVITE", rc);
        reply(w, m, 500, "Server Internal Error", (sip_str){ NULL, 0 });
        return;
    }
    send_reply(w, m, 200, "OK", (sip_str){ NULL, 0 }, NULL, w->headers,
               (sip_str){ w->sdp, n });
}

/* ------------------------------------------------------------ the others */

static void on_ack(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    /* Nothing to do but to notice it: sipd does not retransmit the 2xx
     * it acknowledges (a simplification of this example: on loopback a
     * 200 is not lost; a real UAS resends it until this ACK arrives).
     * ACK is never answered. */
    find_dialog(w, m, m->to_tag, &sid, &p);
}

static void on_bye(worker *w, const sip_msg *m)
{
    shmreg_id sid;
    peek p;
    if (find_dialog(w, m, m->to_tag, &sid, &p) != 0) {
        reply(w, m, 481, "Call/Transaction Does Not Exist", (sip_str){ NULL, 0 });
        return;
    }
    /* Terminating then Terminated, each a compare-and-set: a retransmitted
     * BYE on another worker, or one after a worker died between the two
     * steps, finishes the job and gets its 200 too. */
    for (int tries = 0; tries < 4; tries++) {
        int st = p.state;
        if (st == SHMREG_STATE_CANCELLED || st == SHMREG_STATE_FAILED) {
            reply(w, m, 481, "Call/Transaction Does Not Exist", (sip_str){ NULL, 0 });
            return;
        }
        if (st == SHMREG_STATE_TERMINATED)
            break;
        int rc = 0;
        if (st != SHMREG_STATE_TERMINATING)
            rc = shmreg_session_transition(w->h, &sid, st, SHMREG_STATE_TERMINATING, &p.state);
        if (rc == 0)
            rc = shmreg_session_transition(w->h, &sid, SHMREG_STATE_TERMINATING,
                                           SHMREG_STATE_TERMINATED, &p.state);
        if (rc == 0)
            break;
        if (rc != SHMREG_ECONFLICT && rc != SHMREG_ESTATE) {
            registry_error(w, "BYE", rc);
            break;
        }
    }
    /* The session lingers, Terminated, for retransmissions; the master
     * deletes it (and so its dialog) after the linger time. */
    reply(w, m, 200, "OK", (sip_str){ NULL, 0 });
}

static void on_cancel(worker *w, const sip_msg *m)
{
    char tagbuf[TAG_LEN + 1];
    shmreg_id sid;
    peek p;
    if (m->from_tag.n == 0) {
        reply(w, m, 400, "Missing From tag", (sip_str){ NULL, 0 });
        return;
    }
    sip_str tag = derive_tag(w, m, tagbuf, NULL);
    if (find_dialog(w, m, tag, &sid, &p) != 0) {
        reply(w, m, 481, "Call/Transaction Does Not Exist", tag);
        return;
    }
    int old = p.state;
    if (old == SHMREG_STATE_INITIATING || old == SHMREG_STATE_RINGING)
        shmreg_session_transition(w->h, &sid, old, SHMREG_STATE_CANCELLED, &old);
    reply(w, m, 200, "OK", tag);
    /* The 487 belongs to the INVITE; everything it copies (Via, From, To,
     * Call-ID, CSeq number) is the same in the CANCEL (RFC 3261 9.1), so
     * whichever worker got the CANCEL can send it. */
    if (old == SHMREG_STATE_INITIATING || old == SHMREG_STATE_RINGING ||
        old == SHMREG_STATE_CANCELLED)
        send_reply(w, m, 487, "Request Terminated", tag, "INVITE", NULL, (sip_str){ NULL, 0 });
}

static void on_options(worker *w, const sip_msg *m)
{
    char tagbuf[TAG_LEN + 1];
    sip_str tag = { NULL, 0 };
    if (m->to_tag.n) {
        shmreg_id sid;
        peek p;
        if (find_dialog(w, m, m->to_tag, &sid, &p) != 0) {
            reply(w, m, 481, "Call/Transaction Does Not Exist", tag);
            return;
        }
    } else if (m->from_tag.n) {
        tag = derive_tag(w, m, tagbuf, NULL);
    }
    send_reply(w, m, 200, "OK", tag, NULL,
               ALLOW "Accept: application/sdp\r\nSupported: \r\n", (sip_str){ NULL, 0 });
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
            sip_str tag = { NULL, 0 };
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
        count(w, C_RESPONSES);
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
        send_reply(w, &m, 501, "Not Implemented", (sip_str){ NULL, 0 }, NULL, ALLOW,
                   (sip_str){ NULL, 0 });
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
        if (w.pend) {
            uint64_t now = mono_ms();
            timeout = w.pend->due_ms <= now ? 0 : (int)(w.pend->due_ms - now);
        }
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
            w.from = (const struct sockaddr *)&from;
            w.fromlen = fl;
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
     * sweep fails them once it sees this worker gone. */
    while (w.pend) {
        struct pending *p = w.pend;
        w.pend = p->next;
        free(p);
    }
    close(w.fd);
    shmreg_config_release(w.media);
    shmreg_close(w.h);
    exit(0);
}
