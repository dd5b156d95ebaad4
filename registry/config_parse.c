/*
 * config_parse.c — the text form of configs, read: a strict parser of
 * whole documents and of single values (shmreg_config_set).
 *
 * The format is small on purpose (see README, "Config text format"):
 *
 *     # a comment line
 *     top_level = 1
 *
 *     [media]
 *     codecs = ["opus", "PCMU"]
 *     ptime = 20
 *     moh_path = "/var/lib/moh/hold.wav"
 *     dtmf = true
 *
 *     [sdp]
 *     fmtp = "101 0-16"
 *
 * Why strict. Configs are edited by people and replaced while workers run;
 * a typo must not become a running configuration. So there is exactly one
 * spelling of every value: strings are always double-quoted (with \" \\ \n
 * \t \r \xHH escapes, no raw control characters), integers have no sign
 * but '-', no leading zeros, booleans are `true`/`false`, lists hold
 * quoted strings on one line. Comments are whole lines. A section appears
 * once and is not empty, a key appears once (SDP attributes may repeat).
 * Anything else is SHMREG_EPARSE naming the line and the byte column, and
 * the caller gets no document — so loading text changes nothing unless
 * all of it is right.
 *
 * This file uses only documents (config_record.c), never a registry, so
 * the write path can parse a value without depending on the file that
 * loads whole texts into a registry (config_text.c). Every check on keys,
 * types and ranges happens in the document setters; the parser only adds
 * the line and column to their message. Cold path: it may allocate.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "shmreg.h"

/* ---------------------------------------------------------------- lexer */

struct lex {
    const char *p, *end;
    const char *line_start;
    unsigned line;         /* 0: a lone value (shmreg_config_set): no line */
    int nl;                /* `end` is a newline (else the end of the text) */
};

__attribute__((format(printf, 3, 4)))
static int perr(const struct lex *L, const char *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned col = (unsigned)(at - L->line_start) + 1;
    if (L->line)
        return shmreg__fail(SHMREG_EPARSE, "line %u, column %u: %s", L->line,
                            col, msg);
    return shmreg__fail(SHMREG_EPARSE, "column %u: %s", col, msg);
}

static void skip_ws(struct lex *L)
{
    while (L->p < L->end && (*L->p == ' ' || *L->p == '\t'))
        L->p++;
}

static int at_eol(const struct lex *L)
{
    return L->p == L->end || *L->p == '\n';
}

static int is_keych(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* What the character at L->p is, for "unexpected ..." messages. */
static const char *describe(const struct lex *L, char *buf, size_t cap)
{
    if (L->p == L->end)
        return L->nl ? "end of line" : "end of text";
    unsigned char c = (unsigned char)*L->p;
    if (c == '\n')
        return "end of line";
    if (c == '\r')
        return "a carriage return (lines end with LF only)";
    if (c < 0x20 || c >= 0x7f)
        snprintf(buf, cap, "byte 0x%02x", c);
    else
        snprintf(buf, cap, "'%c'", c);
    return buf;
}

/* ---------------------------------------------------------------- values */

struct pval {
    int type;
    char *s;             /* STR: decoded bytes (malloc) */
    size_t slen;
    int64_t num;
    shmreg_str *items;   /* LIST: into `buf` */
    uint32_t n, cap;
    char *buf;           /* LIST: decoded strings, one after another */
    size_t blen, bcap;
};

static void pval_free(struct pval *v)
{
    free(v->s);
    free(v->items);
    free(v->buf);
    memset(v, 0, sizeof *v);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode a quoted string at L->p into a new buffer (NUL-terminated). */
static int lex_string(struct lex *L, char **out, size_t *outlen)
{
    const char *open = L->p++;
    char *b = malloc((size_t)(L->end - L->p) + 1);
    size_t n = 0;
    char d[32];
    if (!b)
        return shmreg__fail(SHMREG_ENOMEM, "config text: out of memory");
    for (;;) {
        if (at_eol(L)) {
            free(b);
            return perr(L, open, "string not closed on this line");
        }
        unsigned char c = (unsigned char)*L->p;
        if (c == '"')
            break;
        if (c == '\\') {
            const char *esc = L->p++;
            char e = L->p < L->end ? *L->p : 0;
            int hi, lo;
            switch (e) {
            case '"': case '\\': c = (unsigned char)e; break;
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case 'r': c = '\r'; break;
            case 'x':
                if (L->end - L->p < 3 || (hi = hexval(L->p[1])) < 0 ||
                    (lo = hexval(L->p[2])) < 0) {
                    free(b);
                    return perr(L, esc, "\\x needs two hex digits");
                }
                c = (unsigned char)(hi << 4 | lo);
                if (c == 0) {
                    free(b);
                    return perr(L, esc, "NUL bytes are not allowed in strings");
                }
                L->p += 2;
                break;
            default:
                free(b);
                return perr(L, esc, "unknown escape: use \\\" \\\\ \\n \\t \\r "
                            "or \\xHH");
            }
        } else if (c < 0x20 || c == 0x7f) {
            free(b);
            return perr(L, L->p, "%s in a string: write it as an escape",
                        describe(L, d, sizeof d));
        }
        if (n >= SHMREG_CONFIG_MAX_VALUE) {
            free(b);
            return perr(L, open, "string longer than %u bytes",
                        SHMREG_CONFIG_MAX_VALUE);
        }
        b[n++] = (char)c;
        L->p++;
    }
    L->p++;   /* the closing quote */
    b[n] = 0;
    *out = b;
    *outlen = n;
    return 0;
}

static int lex_int(struct lex *L, int64_t *out)
{
    const char *start = L->p;
    int neg = 0;
    if (*L->p == '-') {
        neg = 1;
        L->p++;
    }
    const char *digits = L->p;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (L->p < L->end && *L->p >= '0' && *L->p <= '9') {
        unsigned dg = (unsigned)(*L->p - '0');
        if (v > (lim - dg) / 10)
            return perr(L, start, "integer out of range");
        v = v * 10 + dg;
        L->p++;
    }
    if (L->p == digits)
        return perr(L, start, "'-' must be followed by digits");
    if (*digits == '0' && L->p - digits > 1)
        return perr(L, start, "integers are written without leading zeros");
    if (neg && v == 0)
        return perr(L, start, "write 0, not -0");
    if (L->p < L->end && (is_keych((unsigned char)*L->p) || *L->p == '.'))
        return perr(L, L->p, "unexpected '%c' in an integer (strings must be "
                    "quoted)", *L->p);
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 0;
}

static int list_push(struct pval *v, const char *s, size_t len)
{
    if (v->n == v->cap) {
        uint32_t ncap = v->cap ? v->cap * 2 : 8;
        shmreg_str *ni = realloc(v->items, ncap * sizeof *ni);
        if (!ni)
            return shmreg__fail(SHMREG_ENOMEM, "config text: out of memory");
        v->items = ni;
        v->cap = ncap;
    }
    if (!v->buf || v->blen + len > v->bcap) {
        size_t ncap = v->bcap ? v->bcap * 2 : 256;
        while (ncap < v->blen + len)
            ncap *= 2;
        char *nb = realloc(v->buf, ncap);
        if (!nb)
            return shmreg__fail(SHMREG_ENOMEM, "config text: out of memory");
        v->buf = nb;
        v->bcap = ncap;
    }
    if (len)
        memcpy(v->buf + v->blen, s, len);
    /* offsets for now: buf may still move */
    v->items[v->n].ptr = (const char *)(uintptr_t)v->blen;
    v->items[v->n].len = len;
    v->blen += len;
    v->n++;
    return 0;
}

static int lex_list(struct lex *L, struct pval *v)
{
    const char *open = L->p++;
    char d[32];
    skip_ws(L);
    if (L->p < L->end && *L->p == ']') {
        L->p++;
        return 0;
    }
    for (;;) {
        skip_ws(L);
        if (L->p == L->end || *L->p != '"')
            return at_eol(L) ? perr(L, open, "list not closed on this line")
                             : perr(L, L->p, "expected a quoted string in the "
                                    "list, found %s", describe(L, d, sizeof d));
        if (v->n >= SHMREG_CONFIG_MAX_ITEMS)
            return perr(L, L->p, "more than %u items in a list",
                        SHMREG_CONFIG_MAX_ITEMS);
        char *s;
        size_t len;
        int rc = lex_string(L, &s, &len);
        if (rc)
            return rc;
        rc = list_push(v, s, len);
        free(s);
        if (rc)
            return rc;
        skip_ws(L);
        if (L->p < L->end && *L->p == ',') {
            L->p++;
            continue;
        }
        if (L->p < L->end && *L->p == ']') {
            L->p++;
            break;
        }
        return at_eol(L) ? perr(L, open, "list not closed on this line")
                         : perr(L, L->p, "expected ',' or ']' in the list, found %s",
                                describe(L, d, sizeof d));
    }
    for (uint32_t i = 0; i < v->n; i++)
        v->items[i].ptr = v->buf + (uintptr_t)v->items[i].ptr;
    return 0;
}

/* One value at L->p (which is not at end of line). */
static int lex_value(struct lex *L, struct pval *v)
{
    char d[32];
    memset(v, 0, sizeof *v);
    char c = *L->p;
    if (c == '"') {
        v->type = SHMREG_CONFIG_STR;
        return lex_string(L, &v->s, &v->slen);
    }
    if (c == '[') {
        v->type = SHMREG_CONFIG_LIST;
        return lex_list(L, v);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        v->type = SHMREG_CONFIG_INT;
        return lex_int(L, &v->num);
    }
    const char *w = L->p;
    while (L->p < L->end && (is_keych((unsigned char)*L->p) || *L->p == '.'))
        L->p++;
    size_t n = (size_t)(L->p - w);
    if (n == 4 && !memcmp(w, "true", 4)) {
        v->type = SHMREG_CONFIG_BOOL;
        v->num = 1;
        return 0;
    }
    if (n == 5 && !memcmp(w, "false", 5)) {
        v->type = SHMREG_CONFIG_BOOL;
        return 0;
    }
    if (n)
        return perr(L, w, "'%.*s' is not a value: strings must be quoted, "
                    "booleans are true or false", (int)(n > 40 ? 40 : n), w);
    L->p = w;
    return perr(L, w, "expected a value (\"string\", integer, true, false or "
                "[list]), found %s", describe(L, d, sizeof d));
}

/* Store a parsed value under `key`; a setter's complaint gets the value's
 * position. attr != 0: append an SDP attribute named `key`. */
static int apply(const struct lex *L, const char *at, shmreg_config_doc *doc,
                 const char *key, const struct pval *v, int attr)
{
    int rc;
    if (attr) {
        if (v->type != SHMREG_CONFIG_STR)
            return perr(L, at, "SDP attribute values are strings");
        rc = shmreg_config_doc_add_attr(doc, (shmreg_str){ key, strlen(key) },
                                        (shmreg_str){ v->s, v->slen });
    } else {
        switch (v->type) {
        case SHMREG_CONFIG_STR:
            rc = shmreg_config_doc_set_str(doc, key, (shmreg_str){ v->s, v->slen });
            break;
        case SHMREG_CONFIG_INT:
            rc = shmreg_config_doc_set_int(doc, key, v->num);
            break;
        case SHMREG_CONFIG_BOOL:
            rc = shmreg_config_doc_set_bool(doc, key, (int)v->num);
            break;
        default:
            rc = shmreg_config_doc_set_list(doc, key, v->items, v->n);
        }
    }
    if (rc == SHMREG_EINVAL && L->line) {   /* in a text: say where */
        char msg[512];
        snprintf(msg, sizeof msg, "%s", shmreg_errmsg());
        return perr(L, at, "%s", msg);
    }
    return rc;
}

int shmreg_config_doc_set_text(shmreg_config_doc *doc, const char *key,
                               const char *text, size_t len)
{
    if (!doc || !key || (!text && len))
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    struct lex L = { text, text + len, text, 0, 0 };
    struct pval v;
    char d[32];
    skip_ws(&L);
    if (at_eol(&L))
        return perr(&L, L.p, "expected a value, found %s",
                    describe(&L, d, sizeof d));
    const char *at = L.p;
    int rc = lex_value(&L, &v);
    if (rc == 0) {
        skip_ws(&L);
        if (L.p != L.end)
            rc = perr(&L, L.p, "unexpected %s after the value",
                      describe(&L, d, sizeof d));
    }
    if (rc == 0)
        rc = apply(&L, at, doc, key, &v, 0);
    pval_free(&v);
    return rc;
}

/* ---------------------------------------------------------------- parser */

struct psection {
    char name[SHMREG_CONFIG_MAX_KEY + 1];
    size_t len;
    const char *at;        /* header position, for "empty section" */
    unsigned line;
    const char *line_start;
    unsigned keys;
};

/* Does the document already have a key of section `s`? */
static int doc_has_section(const shmreg_config_doc *doc, const char *s, size_t n)
{
    uint32_t cur = 0;
    shmreg_str k;
    shmreg_config_value v;
    while (shmreg_config_doc_next(doc, &cur, &k, &v) == 0) {
        if (v.type == SHMREG_CONFIG_PAIRS) {
            if (n == 3 && !memcmp(s, "sdp", 3))
                return 1;
        } else if (k.len > n && k.ptr[n] == '.' && !memcmp(k.ptr, s, n)) {
            return 1;
        }
    }
    return 0;
}

static int section_end(const struct psection *sec)
{
    if (sec->len && sec->keys == 0) {
        struct lex at = { sec->at, sec->at, sec->line_start, sec->line, 0 };
        return perr(&at, sec->at, "section [%s] has no keys", sec->name);
    }
    return 0;
}

static int parse_line(struct lex *L, shmreg_config_doc *doc, struct psection *sec,
                      const char **rtp_at, unsigned *rtp_line,
                      const char **rtp_line_start)
{
    char d[32];
    skip_ws(L);
    if (at_eol(L))
        return 0;
    char c = *L->p;
    if (c == '#') {
        while (!at_eol(L)) {
            if (*L->p == '\r' || *L->p == 0)
                return perr(L, L->p, "%s in a comment", describe(L, d, sizeof d));
            L->p++;
        }
        return 0;
    }
    if (c == '[') {
        const char *at = L->p++;
        const char *name = L->p;
        while (L->p < L->end && is_keych((unsigned char)*L->p))
            L->p++;
        size_t n = (size_t)(L->p - name);
        if (n == 0)
            return perr(L, L->p, "expected a section name ([A-Za-z0-9_-]), "
                        "found %s", describe(L, d, sizeof d));
        if (L->p == L->end || *L->p != ']')
            return perr(L, L->p, "expected ']' after the section name, found %s",
                        describe(L, d, sizeof d));
        L->p++;
        skip_ws(L);
        if (!at_eol(L))
            return perr(L, L->p, "unexpected %s after the section header",
                        describe(L, d, sizeof d));
        if (n >= SHMREG_CONFIG_MAX_KEY - 1)
            return perr(L, name, "section name longer than %u bytes",
                        SHMREG_CONFIG_MAX_KEY - 2);
        int rc = section_end(sec);
        if (rc)
            return rc;
        if (doc_has_section(doc, name, n))
            return perr(L, at, "section [%.*s] appears twice", (int)n, name);
        memcpy(sec->name, name, n);
        sec->name[n] = 0;
        sec->len = n;
        sec->at = at;
        sec->line = L->line;
        sec->line_start = L->line_start;
        sec->keys = 0;
        return 0;
    }
    /* key = value */
    const char *kat = L->p;
    while (L->p < L->end && is_keych((unsigned char)*L->p))
        L->p++;
    size_t kn = (size_t)(L->p - kat);
    if (kn == 0)
        return perr(L, L->p, "expected a key ([A-Za-z0-9_-]), a [section] or "
                    "a # comment, found %s", describe(L, d, sizeof d));
    skip_ws(L);
    if (L->p == L->end || *L->p != '=')
        return perr(L, L->p, "expected '=' after the key, found %s",
                    describe(L, d, sizeof d));
    L->p++;
    skip_ws(L);
    if (at_eol(L))
        return perr(L, L->p, "expected a value after '=', found %s",
                    describe(L, d, sizeof d));
    char key[2 * SHMREG_CONFIG_MAX_KEY + 2];
    if (sec->len + 1 + kn > SHMREG_CONFIG_MAX_KEY)
        return perr(L, kat, "key longer than %u bytes (section and dot "
                    "included)", SHMREG_CONFIG_MAX_KEY);
    int attr = sec->len == 3 && !memcmp(sec->name, "sdp", 3);
    if (sec->len && !attr)
        snprintf(key, sizeof key, "%s.%.*s", sec->name, (int)kn, kat);
    else
        snprintf(key, sizeof key, "%.*s", (int)kn, kat);
    shmreg_config_value old;
    if (!attr && shmreg_config_doc_get(doc, key, &old) == 0)
        return perr(L, kat, "key %s appears twice", key);

    const char *vat = L->p;
    struct pval v;
    int rc = lex_value(L, &v);
    if (rc == 0) {
        skip_ws(L);
        if (!at_eol(L))
            rc = perr(L, L->p, "unexpected %s after the value (comments go on "
                      "their own line)", describe(L, d, sizeof d));
    }
    if (rc == 0)
        rc = apply(L, vat, doc, key, &v, attr);
    pval_free(&v);
    if (rc == 0) {
        sec->keys++;
        if (!strcmp(key, "media.rtp_port_min") || !strcmp(key, "media.rtp_port_max")) {
            *rtp_at = vat;
            *rtp_line = L->line;
            *rtp_line_start = L->line_start;
        }
    }
    return rc;
}

int shmreg_config_parse(const char *text, size_t len, shmreg_config_doc **out)
{
    if (!out || (!text && len))
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    shmreg_config_doc *doc;
    int rc = shmreg_config_doc_new(&doc);
    if (rc)
        return rc;
    struct lex L = { text, text + len, text, 1, 0 };
    struct psection sec = { .len = 0 };
    const char *rtp_at = NULL, *rtp_ls = NULL;
    unsigned rtp_line = 0;
    const char *nul = len ? memchr(text, 0, len) : NULL;
    while (rc == 0 && L.p < L.end) {
        const char *eol = memchr(L.p, '\n', (size_t)(L.end - L.p));
        if (nul && (!eol || nul < eol)) {
            L.p = nul;
            rc = perr(&L, nul, "NUL byte in config text");
            break;
        }
        struct lex line = L;
        line.end = eol ? eol : L.end;
        line.nl = eol != NULL;
        rc = parse_line(&line, doc, &sec, &rtp_at, &rtp_line, &rtp_ls);
        if (rc == 0 && line.p != line.end)   /* e.g. a stray '\r' before LF */
            rc = perr(&line, line.p, "unexpected %s", describe(&line, (char[32]){0}, 32));
        if (!eol)
            break;
        L.p = eol + 1;
        L.line_start = L.p;
        L.line++;
    }
    if (rc == 0)
        rc = section_end(&sec);
    if (rc == 0) {
        /* the range rule spans two keys: report it at the later one */
        shmreg_config_value v;
        int has = shmreg_config_doc_get(doc, "media.rtp_port_min", &v) == 0 ||
                  shmreg_config_doc_get(doc, "media.rtp_port_max", &v) == 0;
        int64_t lo = 10000, hi = 20000;
        if (shmreg_config_doc_get(doc, "media.rtp_port_min", &v) == 0)
            lo = v.num;
        if (shmreg_config_doc_get(doc, "media.rtp_port_max", &v) == 0)
            hi = v.num;
        if (has && lo > hi) {
            struct lex at = { rtp_at, rtp_at, rtp_ls, rtp_line, 0 };
            rc = perr(&at, rtp_at, "media.rtp_port_min %lld exceeds "
                      "media.rtp_port_max %lld", (long long)lo, (long long)hi);
        }
    }
    if (rc) {
        shmreg_config_doc_free(doc);
        return rc;
    }
    *out = doc;
    return 0;
}
