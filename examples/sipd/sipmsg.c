/*
 * sipmsg.c — see sipmsg.h. A one-pass, bounded scan over the datagram.
 *
 * How it stays safe. Every loop is bounded by the end of the datagram, and
 * every slice handed out lies inside it; nothing is NUL-terminated, nothing
 * is copied, nothing is allocated. Lines end in CRLF (a bare CR or LF is
 * refused), the header section may not contain control bytes, and each
 * header line, Via, token and the header count have a hard cap, so neither
 * junk nor a 64 KiB header can make the parser do more than one pass.
 *
 * Folded lines. A header line followed by lines that start with white
 * space is one header (7.3.1): its value slice then spans the CRLFs, and
 * the value scanners below treat CR and LF as white space. That is safe
 * because next_line() has already refused every CR or LF that is not part
 * of a CRLF, so inside a value they can only come from folding. Values
 * copied into replies keep their folds, which is still valid SIP.
 *
 * Errors and replies. The first problem decides the status phrase, but the
 * scan goes on through the remaining header lines as long as the line
 * structure itself is sound: a bad Content-Length near the top must not
 * hide the Via/From/To/Call-ID/CSeq below it, or the peer would get no 400
 * at all. Problems with the line structure (truncation, control bytes, a
 * line or header count over the limit) stop the scan at once.
 */
#include "sipmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------ characters */

/* Linear white space inside a value: SP, HT, and the CRLF of a fold. */
static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
static int is_blank(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }
static int is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static char lower(char c) { return (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c; }

/* RFC 3261 token characters. */
static int is_token(char c)
{
    return is_alpha(c) || is_digit(c) || (c && strchr("-.!%*_+`'~", c) != NULL);
}

int sip_str_eq(sip_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.n == n && memcmp(a.p, lit, n) == 0;
}

int sip_str_ieq(sip_str a, const char *lit)
{
    size_t n = strlen(lit);
    if (a.n != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (lower(a.p[i]) != lower(lit[i]))
            return 0;
    return 1;
}

static sip_str trim(const char *p, const char *e)
{
    while (p < e && is_ws(*p))
        p++;
    while (e > p && is_ws(e[-1]))
        e--;
    return (sip_str){ p, (size_t)(e - p) };
}

static const char *skip_ws(const char *p, const char *e)
{
    while (p < e && is_ws(*p))
        p++;
    return p;
}

const char *sip_method_name(int method)
{
    switch (method) {
    case SIP_INVITE: return "INVITE";
    case SIP_ACK: return "ACK";
    case SIP_BYE: return "BYE";
    case SIP_CANCEL: return "CANCEL";
    case SIP_OPTIONS: return "OPTIONS";
    default: return "?";
    }
}

static int method_of(sip_str s)
{
    for (int m = SIP_INVITE; m <= SIP_OPTIONS; m++)
        if (sip_str_eq(s, sip_method_name(m)))   /* methods are case-sensitive */
            return m;
    return SIP_OTHER;
}

/* ------------------------------------------------------------ pieces */

/* A URI as we accept it: scheme ":" then printable non-space bytes. */
static int valid_uri(sip_str u)
{
    if (u.n == 0 || u.n > SIPMSG_MAX_URI || !is_alpha(u.p[0]))
        return 0;
    size_t i = 1;
    while (i < u.n && (is_alpha(u.p[i]) || is_digit(u.p[i]) || u.p[i] == '+' ||
                       u.p[i] == '-' || u.p[i] == '.'))
        i++;
    if (i >= u.n || u.p[i] != ':' || i + 1 == u.n)
        return 0;
    for (; i < u.n; i++)
        if ((unsigned char)u.p[i] <= ' ' || u.p[i] == 0x7f || u.p[i] == '<' || u.p[i] == '>')
            return 0;
    return 1;
}

/* Scan a ";name[=value]" parameter list in [p, e) (leading whitespace
 * allowed), storing the value of parameter `want` in *out. Returns 0, or -1
 * on a syntax error or a repeated `want`. Values are tokens or quoted
 * strings; *out must be a token of 1..SIPMSG_MAX_TAG bytes. With
 * `flag` (may be NULL), parameter `flag_name` is looked for too: *flag
 * gets the end of its name when it has no value ("rport"), else NULL. */
static int scan_params(const char *p, const char *e, const char *want, sip_str *out,
                       const char *flag_name, const char **flag)
{
    if (flag)
        *flag = NULL;
    int seen = 0;
    out->p = NULL;
    out->n = 0;
    for (;;) {
        p = skip_ws(p, e);
        if (p == e)
            return 0;
        if (*p != ';')
            return -1;
        p = skip_ws(p + 1, e);
        const char *n0 = p;
        while (p < e && is_token(*p))
            p++;
        if (p == n0)
            return -1;
        sip_str name = { n0, (size_t)(p - n0) };
        sip_str val = { NULL, 0 };
        p = skip_ws(p, e);
        if (p < e && *p == '=') {
            p = skip_ws(p + 1, e);
            const char *v0 = p;
            if (p < e && *p == '"') {
                for (p++; p < e && *p != '"'; p++)
                    if (*p == '\\' && ++p == e)
                        return -1;
                if (p == e)
                    return -1;
                p++;
            } else {
                /* tokens, plus what host names and IPv6 references need */
                while (p < e && (is_token(*p) || *p == ':' || *p == '[' || *p == ']'))
                    p++;
            }
            if (p == v0)
                return -1;
            val = (sip_str){ v0, (size_t)(p - v0) };
        }
        if (flag && val.n == 0 && sip_str_ieq(name, flag_name))
            *flag = name.p + name.n;
        if (sip_str_ieq(name, want)) {
            if (seen++)
                return -1;
            if (val.n == 0 || val.n > SIPMSG_MAX_TAG)
                return -1;
            for (size_t i = 0; i < val.n; i++)
                if (!is_token(val.p[i]))
                    return -1;
            *out = val;
        }
    }
}

/* From/To: name-addr ("Name" <uri>;params, Name <uri>;params) or
 * addr-spec (uri;params, where the params belong to the header). */
static int parse_addr(sip_str v, sip_str *uri, sip_str *name, sip_str *tag)
{
    const char *p = v.p, *e = v.p + v.n;
    const char *params;
    name->p = v.p;
    name->n = 0;
    if (p < e && *p == '"') {
        const char *n0 = ++p;
        for (; p < e && *p != '"'; p++)
            if (*p == '\\' && ++p == e)
                return -1;
        if (p == e)
            return -1;
        *name = (sip_str){ n0, (size_t)(p - n0) };
        p = skip_ws(p + 1, e);
        if (p == e || *p != '<')
            return -1;
    }
    const char *lt = memchr(p, '<', (size_t)(e - p));
    if (lt) {
        if (name->n == 0) {
            *name = trim(p, lt);
            for (size_t i = 0; i < name->n; i++)  /* unquoted: tokens and spaces */
                if (!is_token(name->p[i]) && !is_ws(name->p[i]))
                    return -1;
        }
        const char *gt = memchr(lt + 1, '>', (size_t)(e - lt - 1));
        if (!gt)
            return -1;
        *uri = (sip_str){ lt + 1, (size_t)(gt - lt - 1) };
        params = gt + 1;
    } else {
        const char *sc = memchr(p, ';', (size_t)(e - p));
        params = sc ? sc : e;
        *uri = trim(p, params);
    }
    if (!valid_uri(*uri) || name->n > SIPMSG_MAX_NAME)
        return -1;
    return scan_params(params, e, "tag", tag, NULL, NULL);
}

/* The first via-parm of a Via value: "SIP/2.0/UDP host[:port];params".
 * Only the top Via's details are kept (`top`); the others are checked. */
static int parse_via(sip_str v, sip_msg *m, int top)
{
    const char *p = v.p, *e = v.p + v.n;
    if (v.n < 8 || !sip_str_ieq((sip_str){ p, 8 }, "SIP/2.0/"))
        return -1;
    const char *comma = memchr(p, ',', v.n);   /* several via-parms on one line */
    if (comma)
        e = comma;
    while (e > p && is_ws(e[-1]))
        e--;
    p += 8;
    while (p < e && is_token(*p))             /* transport */
        p++;
    const char *h = p = skip_ws(p, e);
    while (p < e && *p != ';' && !is_ws(*p))  /* sent-by */
        p++;
    if (p == h)
        return -1;
    sip_str sent_by = { h, (size_t)(p - h) }, host = sent_by;
    if (host.p[0] == '[') {                   /* [IPv6]:port */
        const char *rb = memchr(host.p, ']', host.n);
        if (!rb)
            return -1;
        host = (sip_str){ host.p + 1, (size_t)(rb - host.p - 1) };
    } else {
        const char *colon = memchr(host.p, ':', host.n);
        if (colon)
            host.n = (size_t)(colon - host.p);
    }
    sip_str branch;
    const char *rport;
    if (host.n == 0 || scan_params(p, e, "branch", &branch, "rport", &rport) != 0)
        return -1;
    if (top) {
        m->branch = branch;
        m->sent_by = sent_by;
        m->via_host = host;
        m->via_parm_end = e;
        m->via_rport = rport;
    }
    return 0;
}

/* ------------------------------------------------------------ lines */

/* The line starting at p: [p, *eol) excluding CRLF; returns the start of the
 * next line or NULL (*why set) when there is no sound line. */
static const char *next_line(const char *p, const char *end, const char **eol,
                             const char **why, int *code)
{
    const char *q = p;
    const char *lim = (size_t)(end - p) > SIPMSG_MAX_LINE + 2 ? p + SIPMSG_MAX_LINE + 2 : end;
    for (; q < lim; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '\r') {
            if (q + 1 >= end || q[1] != '\n') {
                *why = q + 1 >= end ? "Truncated message" : "Bare CR";
                *code = SIP_EBAD;
                return NULL;
            }
            if (q - p > (long)SIPMSG_MAX_LINE) {
                *why = "Line too long";
                *code = SIP_ELIMIT;
                return NULL;
            }
            *eol = q;
            return q + 2;
        }
        if (c == '\n') {
            *why = "Bare LF";
            *code = SIP_EBAD;
            return NULL;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            *why = "Control character in header";
            *code = SIP_EBAD;
            return NULL;
        }
    }
    if (lim == end) {
        *why = "Truncated message";
        *code = SIP_EBAD;
    } else {
        *why = "Line too long";
        *code = SIP_ELIMIT;
    }
    return NULL;
}

static int parse_first_line(const char *p, const char *e, sip_msg *m)
{
    if ((size_t)(e - p) >= 12 && memcmp(p, "SIP/2.0 ", 8) == 0) {
        if (!is_digit(p[8]) || !is_digit(p[9]) || !is_digit(p[10]) || p[11] != ' ')
            return -1;
        m->status = (p[8] - '0') * 100 + (p[9] - '0') * 10 + (p[10] - '0');
        if (m->status < 100 || m->status > 699)
            return -1;
        m->reason = (sip_str){ p + 12, (size_t)(e - p - 12) };
        return 0;
    }
    const char *q = p;
    while (q < e && is_token(*q) && q - p < 32)
        q++;
    if (q == p || q == e || *q != ' ')
        return -1;
    m->is_request = 1;
    m->method_name = (sip_str){ p, (size_t)(q - p) };
    m->method = method_of(m->method_name);
    const char *u = ++q;
    while (q < e && *q != ' ')
        q++;
    m->uri = (sip_str){ u, (size_t)(q - u) };
    if (q == e || !valid_uri(m->uri))
        return -1;
    q++;
    if (!sip_str_eq((sip_str){ q, (size_t)(e - q) }, "SIP/2.0"))
        return -1;
    return 0;
}

/* ------------------------------------------------------------ headers */

enum hdr { H_OTHER, H_VIA, H_FROM, H_TO, H_CALLID, H_CSEQ, H_CONTACT, H_CLEN, H_CTYPE,
           H_RR, H_REQUIRE };

static int header_kind(sip_str n)
{
    static const struct { const char *full, *compact; int kind; } tab[] = {
        { "via", "v", H_VIA },         { "from", "f", H_FROM },
        { "to", "t", H_TO },           { "call-id", "i", H_CALLID },
        { "cseq", NULL, H_CSEQ },      { "contact", "m", H_CONTACT },
        { "content-length", "l", H_CLEN }, { "content-type", "c", H_CTYPE },
        { "record-route", NULL, H_RR }, { "require", NULL, H_REQUIRE },
    };
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (sip_str_ieq(n, tab[i].full) || (tab[i].compact && sip_str_ieq(n, tab[i].compact)))
            return tab[i].kind;
    return H_OTHER;
}

/* One header; returns 0, or an error code with *why set. */
static int parse_header(sip_msg *m, int kind, sip_str v, unsigned *seen, const char **why)
{
    if (kind != H_VIA && kind != H_CONTACT && kind != H_OTHER && kind != H_RR &&
        kind != H_REQUIRE) {
        if (*seen & (1u << kind)) {
            *why = kind == H_FROM ? "Duplicate From" : kind == H_TO ? "Duplicate To"
                 : kind == H_CALLID ? "Duplicate Call-ID" : kind == H_CSEQ ? "Duplicate CSeq"
                 : kind == H_CLEN ? "Duplicate Content-Length" : "Duplicate Content-Type";
            return SIP_EBAD;
        }
        *seen |= 1u << kind;
    }
    switch (kind) {
    case H_VIA: {
        if (m->nvia == SIPMSG_MAX_VIA) {
            *why = "Too many Via headers";
            return SIP_ELIMIT;
        }
        if (parse_via(v, m, m->nvia == 0) != 0) {
            *why = "Bad Via";
            return SIP_EBAD;
        }
        m->via[m->nvia++] = v;
        return 0;
    }
    case H_RR:
        if (m->nrr == SIPMSG_MAX_RR) {
            *why = "Too many Record-Route headers";
            return SIP_ELIMIT;
        }
        m->rr[m->nrr++] = v;
        return 0;
    case H_REQUIRE:
        if (m->nrequire == SIPMSG_MAX_REQUIRE) {
            *why = "Too many Require headers";
            return SIP_ELIMIT;
        }
        m->require[m->nrequire++] = v;
        return 0;
    case H_FROM:
    case H_TO: {
        sip_str uri, name, tag;
        if (parse_addr(v, &uri, &name, &tag) != 0) {
            *why = kind == H_FROM ? "Bad From" : "Bad To";
            return SIP_EBAD;
        }
        if (kind == H_FROM) {
            m->from = v;
            m->from_uri = uri;
            m->from_name = name;
            m->from_tag = tag;
        } else {
            m->to = v;
            m->to_uri = uri;
            m->to_tag = tag;
        }
        return 0;
    }
    case H_CALLID:
        if (v.n == 0 || v.n > SIPMSG_MAX_CALLID) {
            *why = v.n ? "Call-ID too long" : "Empty Call-ID";
            return v.n ? SIP_ELIMIT : SIP_EBAD;
        }
        for (size_t i = 0; i < v.n; i++)
            if ((unsigned char)v.p[i] <= ' ' || (unsigned char)v.p[i] >= 0x7f) {
                *why = "Bad Call-ID";
                return SIP_EBAD;
            }
        m->call_id = v;
        return 0;
    case H_CSEQ: {
        const char *p = v.p, *e = v.p + v.n;
        uint64_t n = 0;
        const char *d = p;
        while (p < e && is_digit(*p) && p - d < 10)
            n = n * 10 + (uint64_t)(*p++ - '0');
        if (p == d || p == e || !is_ws(*p) || n > 0x7fffffffu) {
            *why = "Bad CSeq";
            return SIP_EBAD;
        }
        p = skip_ws(p, e);
        const char *mn = p;
        while (p < e && is_token(*p))
            p++;
        if (p == mn || p != e) {
            *why = "Bad CSeq";
            return SIP_EBAD;
        }
        m->cseq = (uint32_t)n;
        m->cseq_method = (sip_str){ mn, (size_t)(p - mn) };
        m->cseq_ok = 1;
        return 0;
    }
    case H_CONTACT:
        if (m->contact.p == NULL)
            m->contact = v;
        return 0;
    case H_CLEN: {
        long n = 0;
        if (v.n == 0 || v.n > 5) {
            *why = "Bad Content-Length";
            return v.n > 5 ? SIP_ELIMIT : SIP_EBAD;
        }
        for (size_t i = 0; i < v.n; i++) {
            if (!is_digit(v.p[i])) {
                *why = "Bad Content-Length";
                return SIP_EBAD;
            }
            n = n * 10 + (v.p[i] - '0');
        }
        if (n > (long)SIPMSG_MAX_LEN) {
            *why = "Bad Content-Length";
            return SIP_ELIMIT;
        }
        m->content_length = n;
        return 0;
    }
    case H_CTYPE:
        m->content_type = v;
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------ parse */

static int parse_msg(const char *buf, size_t len, sip_msg *m, const char **why)
{
    if (buf == NULL || len == 0) {
        *why = "Empty message";
        return SIP_EBAD;
    }
    if (len > SIPMSG_MAX_LEN) {
        *why = "Message too large";
        return SIP_ELIMIT;
    }
    const char *p = buf, *end = buf + len, *eol;
    int code = SIP_OK, rc = SIP_OK;
    const char *next = next_line(p, end, &eol, why, &code);
    if (!next)
        return code;
    if (parse_first_line(p, eol, m) != 0) {
        *why = "Bad request line";
        return SIP_EBAD;
    }
    unsigned seen = 0;
    for (p = next;; p = next) {
        const char *lwhy = NULL;
        if (!(next = next_line(p, end, &eol, &lwhy, &code))) {
            *why = rc ? *why : lwhy;
            return rc ? rc : code;
        }
        if (eol == p)
            break;                         /* the empty line: end of headers */
        if (++m->nheaders > SIPMSG_MAX_HEADERS) {
            *why = rc ? *why : "Too many headers";
            return rc ? rc : SIP_ELIMIT;
        }
        if (is_blank(*p)) {        /* a continuation with nothing to continue */
            if (!rc) {
                rc = SIP_EBAD;
                *why = "Folded first header";
            }
            continue;
        }
        /* Folded continuation lines join this header (see the top). */
        while (next < end && is_blank(*next)) {
            const char *ceol, *cnext = next_line(next, end, &ceol, &lwhy, &code);
            if (!cnext) {
                *why = rc ? *why : lwhy;
                return rc ? rc : code;
            }
            eol = ceol;
            next = cnext;
        }
        const char *q = p;
        while (q < eol && is_token(*q))
            q++;
        sip_str name = { p, (size_t)(q - p) };
        q = skip_ws(q, eol);
        if (name.n == 0 || q == eol || *q != ':') {
            if (!rc) {
                rc = SIP_EBAD;
                *why = "Malformed header";
            }
            continue;
        }
        int hrc = parse_header(m, header_kind(name), trim(q + 1, eol), &seen, &lwhy);
        if (hrc && !rc) {
            rc = hrc;
            *why = lwhy;
        }
    }
    m->body = (sip_str){ next, (size_t)(end - next) };
    if (rc)
        return rc;
    if (m->nvia == 0 || !m->from.p || !m->to.p || !m->call_id.p || !m->cseq_ok) {
        *why = m->nvia == 0 ? "Missing Via" : !m->from.p ? "Missing From"
             : !m->to.p ? "Missing To" : !m->call_id.p ? "Missing Call-ID" : "Missing CSeq";
        return SIP_EBAD;
    }
    if (m->is_request &&
        !(m->cseq_method.n == m->method_name.n &&
          memcmp(m->cseq_method.p, m->method_name.p, m->method_name.n) == 0)) {
        *why = "CSeq method mismatch";
        return SIP_EBAD;
    }
    if (m->content_length >= 0 && (size_t)m->content_length > m->body.n) {
        *why = "Content-Length mismatch";
        return SIP_EBAD;
    }
    if (m->content_length >= 0)          /* 18.3: bytes past the body are dropped */
        m->body.n = (size_t)m->content_length;
    return SIP_OK;
}

int sip_parse(const char *buf, size_t len, sip_msg *m, const char **why)
{
    const char *w = NULL;
    memset(m, 0, sizeof *m);
    m->content_length = -1;
    int rc = parse_msg(buf, len, m, &w);
    if (why)
        *why = rc ? (w ? w : "Bad Request") : NULL;
    return rc;
}

int sip_can_reply(const sip_msg *m)
{
    return m->is_request && m->method != SIP_ACK && m->nvia > 0 && m->from.p &&
           m->to.p && m->call_id.p && m->cseq_ok;
}

/* ------------------------------------------------------------ replies */

void sip_out_put(sip_out *o, const char *s, size_t n)
{
    if (n == 0)
        return;             /* s may be NULL then: memcpy must not see it */
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

void sip_out_puts(sip_out *o, const char *s) { sip_out_put(o, s, strlen(s)); }

static void putstr(sip_out *o, sip_str s) { sip_out_put(o, s.p, s.n); }

void sip_out_putu(sip_out *o, unsigned long v)
{
    char tmp[24];
    int i = (int)sizeof tmp;
    do
        tmp[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0);
    sip_out_put(o, tmp + i, sizeof tmp - (size_t)i);
}

void sip_out_printf(sip_out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp)
        o->full = 1;
    else
        sip_out_put(o, tmp, (size_t)n);
}

/* The top Via as the server hands it back (18.2.1, RFC 3581 section 4):
 * "rport" filled with the source port, and "received" with the source
 * address when the sent-by host is another one (a name, a NATed address)
 * or when rport was asked for. */
static void put_top_via(sip_out *o, const sip_msg *req, const sip_reply *r)
{
    sip_str v = req->via[0];
    const char *pe = req->via_parm_end, *end = v.p + v.n;
    const char *rp = req->via_rport;
    if (rp) {
        sip_out_put(o, v.p, (size_t)(rp - v.p));
        sip_out_puts(o, "=");
        sip_out_putu(o, r->src_port);
        sip_out_put(o, rp, (size_t)(pe - rp));
    } else {
        sip_out_put(o, v.p, (size_t)(pe - v.p));
    }
    if (rp || !sip_str_eq(req->via_host, r->src_ip)) {
        sip_out_puts(o, ";received=");
        sip_out_puts(o, r->src_ip);
    }
    sip_out_put(o, pe, (size_t)(end - pe));
}

size_t sip_build_reply(char *out, size_t cap, const sip_msg *req, const sip_reply *r)
{
    sip_out o = { out, cap, 0, 0 };
    sip_out_puts(&o, "SIP/2.0 ");
    sip_out_putu(&o, (unsigned long)r->status);
    sip_out_puts(&o, " ");
    sip_out_puts(&o, r->reason ? r->reason : "");
    sip_out_puts(&o, "\r\n");
    for (unsigned i = 0; i < req->nvia; i++) {
        sip_out_puts(&o, "Via: ");
        if (i == 0 && r->src_ip)
            put_top_via(&o, req, r);
        else
            putstr(&o, req->via[i]);
        sip_out_puts(&o, "\r\n");
    }
    for (unsigned i = 0; r->record_route && i < req->nrr; i++) {
        sip_out_puts(&o, "Record-Route: ");
        putstr(&o, req->rr[i]);
        sip_out_puts(&o, "\r\n");
    }
    sip_out_puts(&o, "From: ");
    putstr(&o, req->from);
    sip_out_puts(&o, "\r\nTo: ");
    putstr(&o, req->to);
    if (req->to_tag.n == 0 && r->to_tag.n) {
        sip_out_puts(&o, ";tag=");
        putstr(&o, r->to_tag);
    }
    sip_out_puts(&o, "\r\nCall-ID: ");
    putstr(&o, req->call_id);
    sip_out_puts(&o, "\r\nCSeq: ");
    sip_out_putu(&o, req->cseq);
    sip_out_puts(&o, " ");
    if (r->cseq_method)
        sip_out_puts(&o, r->cseq_method);
    else
        putstr(&o, req->cseq_method);
    sip_out_puts(&o, "\r\n");
    if (r->headers)
        sip_out_puts(&o, r->headers);
    if (r->body.n && r->content_type) {
        sip_out_puts(&o, "Content-Type: ");
        sip_out_puts(&o, r->content_type);
        sip_out_puts(&o, "\r\n");
    }
    sip_out_puts(&o, "Content-Length: ");
    sip_out_putu(&o, r->body.n);
    sip_out_puts(&o, "\r\n\r\n");
    sip_out_put(&o, r->body.p, r->body.n);
    return o.full ? 0 : o.len;
}

/* ------------------------------------------------------------ bodies, URIs */

/* The media type of a Content-Type value, parameters cut off. */
static sip_str media_type(sip_str ct, const char **params)
{
    if (ct.n == 0) {                  /* no Content-Type: no type at all */
        *params = ct.p;
        return ct;
    }
    const char *sc = memchr(ct.p, ';', ct.n);
    *params = sc ? sc : ct.p + ct.n;
    return trim(ct.p, *params);
}

/* One MIME part's headers [p, e): its Content-Type, or an empty slice. */
static sip_str part_type(const char *p, const char *e)
{
    while (p < e) {
        const char *eol = p;
        while (eol + 1 < e && !(eol[0] == '\r' && eol[1] == '\n'))
            eol++;
        if (eol + 1 >= e)
            eol = e;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (colon && (sip_str_ieq(trim(p, colon), "content-type") ||
                      sip_str_ieq(trim(p, colon), "c")))
            return trim(colon + 1, eol);
        p = eol + 2;
    }
    return (sip_str){ NULL, 0 };
}

/* The boundary parameter of a multipart Content-Type, quotes removed (a
 * quoted value is no token, so scan_params does not take it). */
static sip_str boundary(const char *p, const char *e)
{
    static const char key[] = "boundary=";
    for (; e - p > (long)sizeof key - 1; p++) {
        if (!sip_str_ieq((sip_str){ p, sizeof key - 1 }, key) || (p[-1] != ';' && !is_ws(p[-1])))
            continue;
        const char *v = p + sizeof key - 1, *ve = v;
        if (*v == '"') {
            v++;
            ve = memchr(v, '"', (size_t)(e - v));
            return ve ? (sip_str){ v, (size_t)(ve - v) } : (sip_str){ NULL, 0 };
        }
        while (ve < e && *ve != ';' && !is_ws(*ve))
            ve++;
        return (sip_str){ v, (size_t)(ve - v) };
    }
    return (sip_str){ NULL, 0 };
}

int sip_sdp_body(const sip_msg *m, sip_str *sdp)
{
    if (m->body.n == 0)
        return 0;
    const char *params;
    sip_str type = media_type(m->content_type, &params);
    if (sip_str_ieq(type, "application/sdp")) {
        *sdp = m->body;
        return 1;
    }
    if (!sip_str_ieq(type, "multipart/mixed"))
        return -1;
    /* RFC 2046 5.1: parts are separated by CRLF "--" boundary; the first
     * delimiter may start the body without its CRLF. */
    sip_str b = boundary(params, m->content_type.p + m->content_type.n);
    if (b.n == 0 || b.n > 70)
        return -1;
    char delim[76] = "\r\n--";
    memcpy(delim + 4, b.p, b.n);
    size_t dl = b.n + 4;
    const char *p = m->body.p, *end = m->body.p + m->body.n;
    if ((size_t)(end - p) >= dl - 2 && memcmp(p, delim + 2, dl - 2) == 0) {
        p += dl - 2;
    } else {                                  /* after a preamble */
        if (!(p = memmem(p, (size_t)(end - p), delim, dl)))
            return -1;
        p += dl;
    }
    for (;;) {                                /* p: just after a delimiter */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return -1;                        /* the closing delimiter: no SDP */
        const char *line = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!line)
            return -1;
        const char *hdrs = line + 2;
        const char *next = memmem(hdrs, (size_t)(end - hdrs), delim, dl);
        if (!next)
            return -1;
        const char *blank = hdrs[0] == '\r' && hdrs + 1 < next && hdrs[1] == '\n'
                                ? hdrs
                                : memmem(hdrs, (size_t)(next - hdrs), "\r\n\r\n", 4);
        if (blank) {
            const char *pb = blank == hdrs ? hdrs + 2 : blank + 4;
            const char *pp;
            sip_str pt = part_type(hdrs, blank == hdrs ? hdrs : blank + 2);
            if (sip_str_ieq(media_type(pt, &pp), "application/sdp")) {
                *sdp = (sip_str){ pb, (size_t)(next - pb) };
                return 1;
            }
        }
        p = next + dl;
    }
}

int sip_addr_uri(sip_str v, sip_str *uri)
{
    sip_str name, tag;
    const char *comma = NULL;
    /* a list ("<a>, <b>"): the first entry; a comma inside <> is the URI's */
    const char *lt = memchr(v.p, '<', v.n);
    if (lt) {
        const char *gt = memchr(lt, '>', v.n - (size_t)(lt - v.p));
        if (gt)
            comma = memchr(gt, ',', v.n - (size_t)(gt - v.p));
    } else {
        comma = memchr(v.p, ',', v.n);
    }
    if (comma)
        v.n = (size_t)(comma - v.p);
    return parse_addr(trim(v.p, v.p + v.n), uri, &name, &tag);
}

int sip_uri_hostport(sip_str uri, sip_str *host, unsigned *port)
{
    const char *p = uri.p, *e = uri.p + uri.n;
    if (uri.n < 5 || !(sip_str_ieq((sip_str){ p, 4 }, "sip:")))
        return -1;
    p += 4;
    const char *at = memchr(p, '@', (size_t)(e - p));
    if (at)
        p = at + 1;
    const char *h = p, *he;
    if (p < e && *p == '[') {
        h = ++p;
        while (p < e && *p != ']')
            p++;
        if (p == e)
            return -1;
        he = p++;
    } else {
        while (p < e && *p != ':' && *p != ';' && *p != '?')
            p++;
        he = p;
    }
    *port = 5060;
    if (p < e && *p == ':') {
        unsigned v = 0;
        const char *d = ++p;
        while (p < e && is_digit(*p) && p - d < 5)
            v = v * 10 + (unsigned)(*p++ - '0');
        if (p == d || v == 0 || v > 65535)
            return -1;
        *port = v;
    }
    if (he == h)
        return -1;
    *host = (sip_str){ h, (size_t)(he - h) };
    return 0;
}
