/*
 * sdp.c — see sdp.h. The offer is read line by line within the body's
 * bounds; the answer is written with the bounded appender that sipmsg.c's
 * replies use (sip_out).
 *
 * Why the media config drives the answer: the codec preference lives in
 * the registry's "media" config (LMDB, read in place), so an admin who
 * changes it with shmregctl changes what every worker answers from the
 * next call on, without a restart — each worker only checks, in O(1),
 * whether its view went stale.
 */
#include "sdp.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int sdp_digit(char c) { return c >= '0' && c <= '9'; }

static const struct { unsigned pt; const char *name; unsigned rate, ch; } static_pt[] = {
    { 0, "PCMU", 8000, 1 },  { 3, "GSM", 8000, 1 },   { 4, "G723", 8000, 1 },
    { 8, "PCMA", 8000, 1 },  { 9, "G722", 8000, 1 },  { 13, "CN", 8000, 1 },
    { 15, "G728", 8000, 1 }, { 18, "G729", 8000, 1 },
};

const char *sdp_dir_name(int dir)
{
    static const char *n[] = { "sendrecv", "sendonly", "recvonly", "inactive" };
    return dir >= 0 && dir <= 3 ? n[dir] : "sendrecv";
}

/* Unsigned decimal in [p, e), at most `max`; returns the end or NULL. */
static const char *num(const char *p, const char *e, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    const char *d = p;
    while (p < e && sdp_digit(*p) && p - d < 20) {
        uint64_t nv = v * 10 + (uint64_t)(*p - '0');
        if (nv < v || nv > max)
            return NULL;
        v = nv;
        p++;
    }
    if (p == d)
        return NULL;
    *out = v;
    return p;
}

static const char *field(const char *p, const char *e, sip_str *out)
{
    while (p < e && *p == ' ')
        p++;
    const char *s = p;
    while (p < e && *p != ' ')
        p++;
    *out = (sip_str){ s, (size_t)(p - s) };
    return p;
}

static sdp_fmt *find_fmt(sdp_offer *o, unsigned pt)
{
    for (unsigned i = 0; i < o->nfmt; i++)
        if (o->fmt[i].pt == pt)
            return &o->fmt[i];
    return NULL;
}

int sdp_parse(const char *body, size_t len, sdp_offer *o, const char **why)
{
    const char *p = body, *end = body + len;
    /* level: 0 session, 1 our audio stream, 2 any other stream (ignored) */
    int level = 0, found = 0, sess_dir = -1, media_dir = -1;
    sip_str sess_addr = { NULL, 0 }, media_addr = { NULL, 0 };
    memset(o, 0, sizeof *o);
    o->audio = -1;
    for (unsigned n = 0; p < end; n++) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol ? eol + 1 : end;
        const char *e = eol ? eol : end;
        if (e > p && e[-1] == '\r')
            e--;
        if (n >= SDP_MAX_LINES || e - p > (long)SDP_MAX_LINE) {
            *why = "Bad SDP: too long";
            return -1;
        }
        if (n == 0 && !(e - p == 3 && memcmp(p, "v=0", 3) == 0)) {
            *why = "Bad SDP: no v=0";
            return -1;
        }
        if (e - p < 2 || p[1] != '=' || p[0] < 'a' || p[0] > 'z') {
            if (e == p && next == end)
                break;                 /* a final empty line */
            *why = "Bad SDP: line syntax";
            return -1;
        }
        for (const char *q = p; q < e; q++)
            if ((unsigned char)*q < 0x20 && *q != '\t') {
                *why = "Bad SDP: control character";
                return -1;
            }
        char type = p[0];
        const char *v = p + 2;
        if (type == 'm') {
            /* m=<media> <port>[/<n>] <proto> <fmt> ...: every line is kept,
             * for the answer must have as many (RFC 3264 section 6). */
            sip_str media, port, proto, fmts;
            uint64_t pv;
            const char *q = field(v, e, &media);
            q = field(q, e, &port);
            const char *pe = port.n ? num(port.p, port.p + port.n, 65535, &pv) : NULL;
            if (!pe || (pe != port.p + port.n && *pe != '/')) {
                *why = "Bad SDP: m= port";
                return -1;
            }
            q = field(q, e, &proto);
            fmts = (sip_str){ q, (size_t)(e - q) };
            while (fmts.n && fmts.p[0] == ' ')
                fmts.p++, fmts.n--;
            if (media.n == 0 || proto.n == 0 || fmts.n == 0) {
                *why = "Bad SDP: m= line";
                return -1;
            }
            if (o->nmedia == SDP_MAX_MEDIA) {
                *why = "Bad SDP: too many streams";
                return -1;
            }
            o->media[o->nmedia++] = (sdp_media){ media, proto, fmts, (unsigned)pv };
            if (!found && pv != 0 && sip_str_eq(media, "audio") && sip_str_eq(proto, "RTP/AVP")) {
                o->audio = (int)o->nmedia - 1;
                o->port = (unsigned)pv;
                o->proto = proto;
                for (;;) {
                    sip_str f;
                    uint64_t pt;
                    q = field(q, e, &f);
                    if (f.n == 0)
                        break;
                    if (num(f.p, f.p + f.n, 127, &pt) != f.p + f.n) {
                        *why = "Bad SDP: payload type";
                        return -1;
                    }
                    if (o->nfmt == SDP_MAX_FMT || find_fmt(o, (unsigned)pt))
                        continue;
                    sdp_fmt *fm = &o->fmt[o->nfmt++];
                    fm->pt = (unsigned)pt;
                    for (size_t i = 0; i < sizeof static_pt / sizeof static_pt[0]; i++)
                        if (static_pt[i].pt == pt) {
                            fm->name = (sip_str){ static_pt[i].name, strlen(static_pt[i].name) };
                            fm->rate = static_pt[i].rate;
                            fm->channels = static_pt[i].ch;
                        }
                }
                level = 1;
                found = 1;
            } else {
                level = 2;
            }
        } else if (level < 2 && type == 'c') {
            sip_str net, at, addr;
            const char *q = field(v, e, &net);
            q = field(q, e, &at);
            field(q, e, &addr);
            if (!sip_str_eq(net, "IN") || addr.n == 0) {
                *why = "Bad SDP: c= line";
                return -1;
            }
            *(level ? &media_addr : &sess_addr) = addr;
        } else if (level < 2 && type == 'a') {
            sip_str a = { v, (size_t)(e - v) };
            int dir = sip_str_eq(a, "sendrecv") ? SDP_SENDRECV
                    : sip_str_eq(a, "sendonly") ? SDP_SENDONLY
                    : sip_str_eq(a, "recvonly") ? SDP_RECVONLY
                    : sip_str_eq(a, "inactive") ? SDP_INACTIVE : -1;
            if (dir >= 0) {
                *(level ? &media_dir : &sess_dir) = dir;
            } else if (level == 1 && a.n > 7 && memcmp(a.p, "rtpmap:", 7) == 0) {
                /* a=rtpmap:<pt> <name>/<rate>[/<channels>] */
                uint64_t pt, rate, ch = 1;
                const char *q = num(a.p + 7, e, 127, &pt);
                sdp_fmt *fm = q ? find_fmt(o, (unsigned)pt) : NULL;
                if (!q || q == e || *q != ' ') {
                    *why = "Bad SDP: rtpmap";
                    return -1;
                }
                const char *ns = ++q;
                while (q < e && *q != '/')
                    q++;
                if (q == ns || q == e || !(q = num(q + 1, e, 1000000, &rate)) ||
                    (q < e && (*q != '/' || !(q = num(q + 1, e, 64, &ch)))) || q != e) {
                    *why = "Bad SDP: rtpmap";
                    return -1;
                }
                if (fm) {
                    fm->name = (sip_str){ ns, 0 };
                    while (ns + fm->name.n < e && ns[fm->name.n] != '/')
                        fm->name.n++;
                    fm->rate = (unsigned)rate;
                    fm->channels = (unsigned)ch;
                }
            }
        }
        p = next;
    }
    o->addr = media_addr.n ? media_addr : sess_addr;
    o->direction = media_dir >= 0 ? media_dir : sess_dir >= 0 ? sess_dir : SDP_SENDRECV;
    /* RFC 2543 hold: a zero connection address means "do not send to me" */
    if (sip_str_eq(o->addr, "0.0.0.0") && o->direction == SDP_SENDRECV)
        o->direction = SDP_SENDONLY;
    return 0;
}

uint64_t sdp_version(const char *body, size_t len)
{
    const char *p = body, *end = body + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *e = eol ? eol : end;
        if (e - p > 2 && p[0] == 'o' && p[1] == '=') {
            sip_str f;
            const char *q = field(p + 2, e, &f);   /* username */
            q = field(q, e, &f);                    /* sess-id */
            field(q, e, &f);                        /* sess-version */
            uint64_t v;
            return f.n && num(f.p, f.p + f.n, UINT64_MAX / 2, &v) == f.p + f.n ? v : 0;
        }
        p = eol ? eol + 1 : end;
    }
    return 0;
}

/* ------------------------------------------------------------ answer */

static int str_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char x = a[i], y = b[i];
        if (x >= 'A' && x <= 'Z') x = (char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (char)(y + 32);
        if (x != y)
            return 0;
    }
    return 1;
}

/* A stream we do not take, as the answer must still list it (RFC 3264
 * section 6): "m=video 0 RTP/AVP 96". */
static void reject_stream(sip_out *b, const sdp_media *m)
{
    sip_out_put(b, "m=", 2);
    sip_out_put(b, m->type.p, m->type.n);
    sip_out_put(b, " 0 ", 3);
    sip_out_put(b, m->proto.p, m->proto.n);
    sip_out_put(b, " ", 1);
    sip_out_put(b, m->fmts.p, m->fmts.n);
    sip_out_put(b, "\r\n", 2);
}

/* Without a media config (or one that names no codecs): the defaults
 * sipd writes at startup. */
static const shmreg_str default_codecs[] = {
    { "PCMU", 4 }, { "PCMA", 4 }, { "telephone-event", 15 },
};

static int is_event_codec(sip_str n)
{
    return sip_str_ieq(n, "telephone-event") || sip_str_ieq(n, "CN");
}

size_t sdp_answer(char *out, size_t cap, const sdp_offer *o,
                  const shmreg_config_view *media, const sdp_local *l,
                  sip_str *codec, const char **why)
{
    shmreg_config_media mc;
    memset(&mc, 0, sizeof mc);
    mc.ptime_ms = 20;
    if (media)
        shmreg_config_media_get(media, &mc);
    int from_config = media && (mc.set & SHMREG_MEDIA_CODECS);
    uint32_t npref = from_config ? mc.ncodecs : 3;

    /* The offer's formats, in our order of preference. */
    const sdp_fmt *pick[SDP_MAX_FMT];
    unsigned npick = 0;
    codec->p = NULL;
    codec->n = 0;
    for (uint32_t i = 0; i < npref && npick < SDP_MAX_FMT; i++) {
        shmreg_str c = default_codecs[i < 3 ? i : 0];
        if (from_config && shmreg_config_codec(media, i, &c) != 0)
            continue;
        for (unsigned k = 0; k < o->nfmt && npick < SDP_MAX_FMT; k++) {
            const sdp_fmt *f = &o->fmt[k];
            int dup = 0;
            for (unsigned j = 0; j < npick; j++)
                dup |= pick[j] == f;
            if (dup || f->name.n != c.len || f->name.n == 0 ||
                !str_ieq(f->name.p, c.ptr, c.len))
                continue;
            pick[npick++] = f;
            if (codec->n == 0 && !is_event_codec(f->name))
                *codec = f->name;
        }
    }
    if (o->port == 0 || codec->n == 0) {
        *why = o->port == 0 ? "No audio stream" : "No common codec";
        return 0;
    }

    int ip6 = strchr(l->addr, ':') != NULL;
    sip_out b = { out, cap, 0, 0 };
    sip_out_printf(&b, "v=0\r\no=sipd %" PRIu64 " %" PRIu64 " IN IP%c %s\r\ns=sipd\r\n"
             "c=IN IP%c %s\r\nt=0 0\r\n",
         l->sess_id, l->version, ip6 ? '6' : '4', l->addr, ip6 ? '6' : '4', l->addr);
    /* The streams before ours, rejected: port 0, their proto and formats. */
    for (int i = 0; i < o->audio; i++)
        reject_stream(&b, &o->media[i]);
    sip_out_printf(&b, "m=audio %u ", l->port);
    sip_out_put(&b, o->proto.p, o->proto.n);
    for (unsigned i = 0; i < npick; i++)
        sip_out_printf(&b, " %u", pick[i]->pt);
    sip_out_put(&b, "\r\n", 2);
    for (unsigned i = 0; i < npick; i++) {
        const sdp_fmt *f = pick[i];
        sip_out_printf(&b, "a=rtpmap:%u %.*s/%u", f->pt, (int)f->name.n, f->name.p, f->rate);
        if (f->channels > 1)
            sip_out_printf(&b, "/%u", f->channels);
        sip_out_put(&b, "\r\n", 2);
        if (sip_str_ieq(f->name, "telephone-event"))
            sip_out_printf(&b, "a=fmtp:%u 0-16\r\n", f->pt);
    }
    sip_out_printf(&b, "a=ptime:%u\r\n", mc.ptime_ms ? mc.ptime_ms : 20);
    /* mirror the offer: they send only -> we receive only, and so on */
    static const int mirror[] = { SDP_SENDRECV, SDP_RECVONLY, SDP_SENDONLY, SDP_INACTIVE };
    sip_out_printf(&b, "a=%s\r\n", sdp_dir_name(mirror[o->direction & 3]));
    for (uint32_t i = 0; media && i < mc.nattrs; i++) {
        shmreg_str n, v;
        if (shmreg_config_attr(media, i, &n, &v) != 0)
            continue;
        sip_out_put(&b, "a=", 2);
        sip_out_put(&b, n.ptr, n.len);
        if (v.len) {
            sip_out_put(&b, ":", 1);
            sip_out_put(&b, v.ptr, v.len);
        }
        sip_out_put(&b, "\r\n", 2);
    }
    for (unsigned i = (unsigned)o->audio + 1; i < o->nmedia; i++)
        reject_stream(&b, &o->media[i]);
    if (b.full) {
        *why = "Answer too large";
        return 0;
    }
    return b.len;
}

size_t sdp_make_offer(char *out, size_t cap, const shmreg_config_view *media,
                      const sdp_local *l, sip_str *codec, const char **why)
{
    /* Our offer is the answer to an imaginary offer of exactly the codecs
     * we prefer, so that both are written by one function. Static payload
     * types where RFC 3551 has one, 101 for telephone-event (what
     * everybody uses), else dynamic ones from 96. */
    sdp_offer all;
    memset(&all, 0, sizeof all);
    all.port = 9;                    /* any non-zero: the stream is wanted */
    all.proto = (sip_str){ "RTP/AVP", 7 };
    all.audio = 0;
    all.nmedia = 1;
    all.media[0] = (sdp_media){ { "audio", 5 }, all.proto, { "0", 1 }, all.port };
    shmreg_config_media mc;
    memset(&mc, 0, sizeof mc);
    if (media)
        shmreg_config_media_get(media, &mc);
    int from_config = media && (mc.set & SHMREG_MEDIA_CODECS);
    uint32_t n = from_config ? mc.ncodecs : 3;
    unsigned dyn = 96;
    for (uint32_t i = 0; i < n && all.nfmt < SDP_MAX_FMT; i++) {
        shmreg_str c = default_codecs[i < 3 ? i : 0];
        if (from_config && shmreg_config_codec(media, i, &c) != 0)
            continue;
        sdp_fmt *f = &all.fmt[all.nfmt];
        f->name = (sip_str){ c.ptr, c.len };
        f->rate = 8000;
        f->channels = 1;
        f->pt = 128;
        for (size_t k = 0; k < sizeof static_pt / sizeof static_pt[0]; k++)
            if (sip_str_ieq(f->name, static_pt[k].name))
                f->pt = static_pt[k].pt;
        if (f->pt == 128 && sip_str_ieq(f->name, "telephone-event"))
            f->pt = 101;
        if (f->pt == 128) {
            if (dyn == 101)
                dyn++;
            f->pt = dyn++;
        }
        if (f->pt < 128 && !find_fmt(&all, f->pt))
            all.nfmt++;
    }
    return sdp_answer(out, cap, &all, media, l, codec, why);
}
