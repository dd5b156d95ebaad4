/*
 * dialog.c — see dialog.h: the call record sipd keeps in a session's app
 * data, and the BYE built from it.
 *
 * The record is a fixed binary layout (big-endian numbers, then two
 * length-prefixed strings) rather than text: it is read on every
 * in-dialog request, by any worker, and must fit SHMREG_MAX_APPDATA. Its
 * first four bytes are the INVITE's CSeq, as the record of older sipd
 * versions was nothing else, so that calls they left in a registry still
 * read.
 */
#include "dialog.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <string.h>

#define REC_MAGIC 0x53       /* 'S': byte 4 of a full record */
#define REC_HEAD 26u

static void put32(unsigned char *b, uint32_t v)
{
    b[0] = (unsigned char)(v >> 24);
    b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8);
    b[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

void call_rec_init(call_rec *r, const sip_msg *m, uint64_t key,
                   char routebuf[CALL_REC_ROUTE_MAX])
{
    memset(r, 0, sizeof *r);
    r->invite_cseq = r->remote_cseq = m->cseq;
    r->invite_key = key;
    if (m->contact.p && sip_addr_uri(m->contact, &r->target) != 0)
        r->target = (sip_str){ NULL, 0 };
    if (r->target.n > CALL_REC_ROUTE_MAX) {
        r->flags |= REC_NO_ROUTE;
        r->target = (sip_str){ NULL, 0 };
    }
    /* UAS route set: the Record-Route values in order (12.1.1). */
    size_t n = 0;
    for (unsigned i = 0; i < m->nrr; i++) {
        if (n + m->rr[i].n + 2 > CALL_REC_ROUTE_MAX - r->target.n) {
            r->flags |= REC_NO_ROUTE;
            n = 0;
            break;
        }
        if (i) {
            memcpy(routebuf + n, ", ", 2);
            n += 2;
        }
        memcpy(routebuf + n, m->rr[i].p, m->rr[i].n);
        n += m->rr[i].n;
    }
    r->route = (sip_str){ routebuf, n };
}

int call_rec_read(shmreg_str ad, call_rec *r)
{
    const unsigned char *b = (const unsigned char *)ad.ptr;
    memset(r, 0, sizeof *r);
    if (ad.len == 4) {                      /* an older sipd's record */
        r->invite_cseq = r->remote_cseq = get32(b);
        return 0;
    }
    if (ad.len < REC_HEAD || b[4] != REC_MAGIC || REC_HEAD + b[24] + b[25] > ad.len)
        return -1;
    r->invite_cseq = get32(b);
    r->flags = b[5];
    r->final_status = (uint16_t)(b[6] << 8 | b[7]);
    r->remote_cseq = get32(b + 8);
    r->acked_cseq = get32(b + 12);
    r->invite_key = (uint64_t)get32(b + 16) << 32 | get32(b + 20);
    r->target = (sip_str){ (const char *)b + REC_HEAD, b[24] };
    r->route = (sip_str){ (const char *)b + REC_HEAD + b[24], b[25] };
    return 0;
}

size_t call_rec_write(const call_rec *r, unsigned char *b)
{
    sip_str t = r->target, rt = r->route;
    unsigned flags = r->flags;
    if (t.n + rt.n > CALL_REC_ROUTE_MAX || t.n > 255 || rt.n > 255) {
        t = rt = (sip_str){ NULL, 0 };
        flags |= REC_NO_ROUTE;
    }
    put32(b, r->invite_cseq);
    b[4] = REC_MAGIC;
    b[5] = (unsigned char)flags;
    b[6] = (unsigned char)(r->final_status >> 8);
    b[7] = (unsigned char)r->final_status;
    put32(b + 8, r->remote_cseq);
    put32(b + 12, r->acked_cseq);
    put32(b + 16, (uint32_t)(r->invite_key >> 32));
    put32(b + 20, (uint32_t)r->invite_key);
    b[24] = (unsigned char)t.n;
    b[25] = (unsigned char)rt.n;
    if (t.n)
        memmove(b + REC_HEAD, t.p, t.n);
    if (rt.n)
        memmove(b + REC_HEAD + t.n, rt.p, rt.n);
    return REC_HEAD + t.n + rt.n;
}

int call_rec_get(shmreg *h, const shmreg_id *sid, call_rec *r, unsigned char *buf, int *state,
                 int32_t *owner)
{
    shmreg_session s;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, sid, &s);
    if (rc == 0) {
        shmreg_str ad = s.str[SHMREG_FIELD_APP_DATA];
        if (ad.len > SHMREG_MAX_APPDATA)
            ad.len = 0;
        memcpy(buf, ad.ptr, ad.len);        /* ours after read_end */
        ad.ptr = (const char *)buf;
        if (call_rec_read(ad, r) != 0)
            memset(r, 0, sizeof *r);
        if (state)
            *state = s.state;
        if (owner)
            *owner = s.owner_pid;
    }
    shmreg_read_end(h);
    return rc;
}

/* 1 when `cur` lacks something `want` has (a lower CSeq, a flag, the
 * final status): another process wrote the record from an older copy. */
static int behind(const call_rec *cur, const call_rec *want)
{
    return cur->remote_cseq < want->remote_cseq || cur->acked_cseq < want->acked_cseq ||
           (want->flags & ~cur->flags & (REC_BYE_ANSWERED | REC_NO_ROUTE)) ||
           (want->final_status && !cur->final_status);
}

int call_rec_put(shmreg *h, const shmreg_id *sid, const call_rec *r)
{
    /* Without a compare-and-set for app data, two processes that rewrite
     * the record at once can lose one's change (see dialog.h). So the
     * record is read back after the write and, when another write took
     * ours away, merged (CSeqs raised, flags added) and written again. A
     * change is still lost if the other's stale write lands after our
     * read-back; the callers are built so that such a loss is harmless
     * (cseq_too_low in worker.c also trusts acked_cseq). */
    call_rec want = *r, cur;
    unsigned char buf[SHMREG_MAX_APPDATA], back[SHMREG_MAX_APPDATA];
    char target[CALL_REC_ROUTE_MAX], route[CALL_REC_ROUTE_MAX];
    int rc = 0;
    for (int tries = 0; tries < 3; tries++) {
        shmreg_fields f;
        memset(&f, 0, sizeof f);
        f.str[SHMREG_FIELD_APP_DATA] =
            (shmreg_str){ (const char *)buf, call_rec_write(&want, buf) };
        if ((rc = shmreg_session_update(h, sid, &f, SHMREG_MASK(SHMREG_FIELD_APP_DATA))) != 0 ||
            call_rec_get(h, sid, &cur, back, NULL, NULL) != 0 || !behind(&cur, &want))
            break;
        /* strings: ours, kept out of buf, which the next write reuses */
        memcpy(target, want.target.p, want.target.n);
        memcpy(route, want.route.p, want.route.n);
        want.target.p = target;
        want.route.p = route;
        want.remote_cseq = want.remote_cseq > cur.remote_cseq ? want.remote_cseq
                                                              : cur.remote_cseq;
        want.acked_cseq = want.acked_cseq > cur.acked_cseq ? want.acked_cseq : cur.acked_cseq;
        want.flags |= cur.flags & (REC_BYE_ANSWERED | REC_NO_ROUTE);
        if (!want.final_status)
            want.final_status = cur.final_status;
    }
    return rc;
}

/* ------------------------------------------------------------ the BYE */

static int resolve(sip_str uri, struct sockaddr_storage *to, socklen_t *tolen)
{
    sip_str host;
    unsigned port;
    char text[64];
    if (sip_uri_hostport(uri, &host, &port) != 0 || host.n >= sizeof text)
        return -1;
    memcpy(text, host.p, host.n);
    text[host.n] = 0;
    memset(to, 0, sizeof *to);
    struct sockaddr_in *a4 = (struct sockaddr_in *)to;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)to;
    /* An IP address only: a worker must not block on DNS. */
    if (inet_pton(AF_INET, text, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *tolen = sizeof *a4;
    } else if (inet_pton(AF_INET6, text, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *tolen = sizeof *a6;
    } else {
        return -1;
    }
    return 0;
}

size_t dialog_build_bye(char *out, size_t cap, const shmreg_session *s, const call_rec *r,
                        const char *host, unsigned port, uint32_t cseq, uint64_t branch_seed,
                        struct sockaddr_storage *to, socklen_t *tolen)
{
    if (r->target.n == 0 || (r->flags & REC_NO_ROUTE))
        return 0;
    /* Loose routing (16.12): the request goes to the first route, with
     * the remote target as its Request-URI. */
    sip_str first;
    if (r->route.n ? sip_addr_uri(r->route, &first) != 0 || resolve(first, to, tolen) != 0
                   : resolve(r->target, to, tolen) != 0)
        return 0;
    const shmreg_str *f = s->str;
    int ip6 = strchr(host, ':') != NULL;
    sip_out o = { out, cap, 0, 0 };
    sip_out_puts(&o, "BYE ");
    sip_out_put(&o, r->target.p, r->target.n);
    sip_out_printf(&o, " SIP/2.0\r\nVia: SIP/2.0/UDP %s%s%s:%u;branch=z9hG4bK%016" PRIx64
                       ";rport\r\nMax-Forwards: 70\r\n",
                   ip6 ? "[" : "", host, ip6 ? "]" : "", port, branch_seed);
    if (r->route.n) {
        sip_out_puts(&o, "Route: ");
        sip_out_put(&o, r->route.p, r->route.n);
        sip_out_puts(&o, "\r\n");
    }
    /* We are the To of their INVITE, they its From. */
    sip_out_puts(&o, "From: <");
    sip_out_put(&o, f[SHMREG_FIELD_TO_URI].ptr, f[SHMREG_FIELD_TO_URI].len);
    sip_out_puts(&o, ">;tag=");
    sip_out_put(&o, f[SHMREG_FIELD_LOCAL_TAG].ptr, f[SHMREG_FIELD_LOCAL_TAG].len);
    sip_out_puts(&o, "\r\nTo: <");
    sip_out_put(&o, f[SHMREG_FIELD_FROM_URI].ptr, f[SHMREG_FIELD_FROM_URI].len);
    sip_out_puts(&o, ">;tag=");
    sip_out_put(&o, f[SHMREG_FIELD_REMOTE_TAG].ptr, f[SHMREG_FIELD_REMOTE_TAG].len);
    sip_out_puts(&o, "\r\nCall-ID: ");
    sip_out_put(&o, f[SHMREG_FIELD_CALL_ID].ptr, f[SHMREG_FIELD_CALL_ID].len);
    sip_out_puts(&o, "\r\nCSeq: ");
    sip_out_putu(&o, cseq);
    sip_out_puts(&o, " BYE\r\nContent-Length: 0\r\n\r\n");
    return o.full ? 0 : o.len;
}

size_t dialog_end(shmreg *h, const shmreg_id *sid, int from, int to, const char *reason,
                  const char *host, unsigned port, uint64_t branch_seed, char *out, size_t cap,
                  struct sockaddr_storage *dst, socklen_t *dstlen, int *moved)
{
    *moved = shmreg_session_transition(h, sid, from, to, NULL) == 0;
    if (!*moved)
        return 0;
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FAILURE_REASON] = (shmreg_str){ reason, strlen(reason) };
    shmreg_session_update(h, sid, &f, SHMREG_MASK(SHMREG_FIELD_FAILURE_REASON));
    size_t n = 0;
    shmreg_session s;
    call_rec r;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, sid, &s) == 0 &&
        call_rec_read(s.str[SHMREG_FIELD_APP_DATA], &r) == 0)
        n = dialog_build_bye(out, cap, &s, &r, host, port, 1, branch_seed, dst, dstlen);
    shmreg_read_end(h);
    return n;
}
