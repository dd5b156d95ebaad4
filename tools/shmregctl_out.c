/*
 * shmregctl_out.c — the one output layer of shmregctl: every command
 * describes what it prints once (objects, arrays, tables of fields), and
 * this file renders it either for people or as JSON.
 *
 * For people: records are "label:  value" lines, nested objects are
 * indented blocks, array elements start with "- "; tables are aligned
 * columns with a header, cut to fixed widths so that a million rows can
 * stream without first measuring them all. For machines (--json): one
 * document, or JSON Lines (one object per line) for tables that stream.
 *
 * Strings come from the network (URIs, Call-IDs, display names) and may
 * hold any byte. JSON output is always valid: valid UTF-8 passes through,
 * control characters are escaped, and each byte of an invalid sequence
 * becomes \u00XX (its Latin-1 reading) — deterministic and lossless
 * enough for an operator. People get valid UTF-8 as is and \xNN for the
 * rest, so nothing a caller put in a header can drive the terminal.
 *
 * Everything is rendered into a buffer that only out_flush() writes: the
 * commands flush between read sections, never inside one (see
 * shmregctl.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmregctl.h"

#define LABEL_WIDTH 22

/* ------------------------------------------------------------ buffers */

static void db_need(dbuf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        fputs("shmregctl: out of memory\n", stderr);
        exit(CTL_PROBLEM);
    }
    b->p = p;
    b->cap = cap;
}

static void db_put(dbuf *b, const char *s, size_t n)
{
    if (n == 0)
        return;
    db_need(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void db_puts(dbuf *b, const char *s) { db_put(b, s, strlen(s)); }
static void db_putc(dbuf *b, char ch) { db_put(b, &ch, 1); }

__attribute__((format(printf, 2, 3)))
static void db_printf(dbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        db_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void db_pad(dbuf *b, int n)
{
    for (; n > 0; n--)
        db_putc(b, ' ');
}

/* ------------------------------------------------------------ escaping */

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if it is not one
 * (overlong forms, surrogates and code points past U+10FFFF are not). */
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static void json_escape(dbuf *b, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    db_need(b, n + 2);
    db_putc(b, '"');
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k > 1) {
            db_put(b, (const char *)p + i, k);
            i += k;
            continue;
        }
        unsigned char c = p[i++];
        switch (c) {
        case '"': db_puts(b, "\\\""); break;
        case '\\': db_puts(b, "\\\\"); break;
        case '\n': db_puts(b, "\\n"); break;
        case '\r': db_puts(b, "\\r"); break;
        case '\t': db_puts(b, "\\t"); break;
        case '\b': db_puts(b, "\\b"); break;
        case '\f': db_puts(b, "\\f"); break;
        default:
            if (c < 0x20 || c >= 0x7f)
                db_printf(b, "\\u%04x", c);
            else
                db_putc(b, (char)c);
        }
    }
    db_putc(b, '"');
}

/* Text for people (prom 0) or a Prometheus label value (prom 1): valid
 * UTF-8 passes (not C1 controls); a backslash is doubled; people get the
 * C escapes and \xNN for every other control or invalid byte, Prometheus
 * \" and \n, and '?' for the rest (its format has no other escape). */
static void text_escape(dbuf *b, const char *s, size_t n, int prom)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = utf8_seq(p + i, n - i, &cp);
        if (k > 1 && cp >= 0xa0) {   /* not a C1 control */
            db_put(b, (const char *)p + i, k);
            i += k;
            continue;
        }
        unsigned char c = p[i++];
        if (c == '\\')
            db_puts(b, "\\\\");
        else if (c == '\n')
            db_puts(b, "\\n");
        else if (prom && c == '"')
            db_puts(b, "\\\"");
        else if (prom)
            db_putc(b, c < 0x20 || c >= 0x7f ? '?' : (char)c);
        else if (c == '\r')
            db_puts(b, "\\r");
        else if (c == '\t')
            db_puts(b, "\\t");
        else if (c < 0x20 || c >= 0x7f)
            db_printf(b, "\\x%02x", c);
        else
            db_putc(b, (char)c);
    }
}

static void human_escape(dbuf *b, const char *s, size_t n) { text_escape(b, s, n, 0); }

void out_prom_label(out *o, const char *p, size_t len) { text_escape(&o->main, p, len, 1); }

void out_escape_human(char *dst, size_t cap, const char *p, size_t len)
{
    dbuf b = {0};
    human_escape(&b, p, len);
    size_t n = b.len < cap - 1 ? b.len : cap - 1;
    memcpy(dst, b.p ? b.p : "", n);
    dst[n] = 0;
    free(b.p);
}

/* Characters (code points) in escaped text, which is valid UTF-8. */
static size_t text_width(const char *s, size_t n)
{
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        w += ((unsigned char)s[i] & 0xc0) != 0x80;
    return w;
}

/* Byte length of the first `w` characters. */
static size_t text_prefix(const char *s, size_t n, size_t w)
{
    size_t i = 0;
    while (i < n && w) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xc0) == 0x80)
            i++;
        w--;
    }
    return i;
}

/* ------------------------------------------------------------ formats */

static void fmt_dur(char *buf, size_t cap, uint64_t ns)
{
    uint64_t s = ns / 1000000000u;
    if (ns < 1000000000u)
        snprintf(buf, cap, "%" PRIu64 "ms", ns / 1000000u);
    else if (s < 60)
        snprintf(buf, cap, "%.1fs", (double)ns / 1e9);
    else if (s < 3600)
        snprintf(buf, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s % 3600 / 60);
    else
        snprintf(buf, cap, "%" PRIu64 "d%02" PRIu64 "h", s / 86400, s % 86400 / 3600);
}

static void fmt_time(char *buf, size_t cap, uint64_t ns)
{
    time_t t = (time_t)(ns / 1000000000u);
    struct tm tm;
    gmtime_r(&t, &tm);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03uZ", date, (unsigned)(ns / 1000000u % 1000u));
}

/* ------------------------------------------------------------ structure */

void out_init(out *o, int json)
{
    memset(o, 0, sizeof *o);
    o->json = json;
}

void out_free(out *o)
{
    free(o->main.p);
    for (int i = 0; i < OUT_MAX_COLS; i++)
        free(o->cell[i].p);
    memset(o, 0, sizeof *o);
}

size_t out_pending(const out *o) { return o->main.len; }

int out_flush(out *o)
{
    size_t off = 0;
    while (!o->broken && off < o->main.len) {
        ssize_t n = write(1, o->main.p + off, o->main.len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            o->broken = 1;
            o->werr = n < 0 ? errno : EIO;
            break;
        }
        off += (size_t)n;
    }
    o->main.len = 0;
    return o->broken ? -1 : 0;
}

static int in_row(const out *o) { return o->row_depth && !o->json; }

/* JSON: the comma and the key before a member. */
static void json_member(out *o, const char *key)
{
    if (o->depth > 0) {
        if (o->count[o->depth - 1]++)
            db_putc(&o->main, ',');
        if (o->kind[o->depth - 1] == '{' && key) {
            json_escape(&o->main, key, strlen(key));
            db_putc(&o->main, ':');
        }
    }
}

static int in_array(const out *o) { return o->depth && o->kind[o->depth - 1] == '['; }

/* People: the start of a line at the current level, with its label. */
static void human_line(out *o, const char *label, size_t label_len)
{
    int ind = o->depth ? o->ind[o->depth - 1] : 0;
    if (o->dash) {
        /* The dash sits at the array's indentation: an object element's
         * fields are indented past it, a scalar element is the array's. */
        db_pad(&o->main, in_array(o) ? ind : ind - 2);
        db_puts(&o->main, "- ");
        o->dash = 0;
    } else {
        db_pad(&o->main, ind);
    }
    if (label) {
        db_put(&o->main, label, label_len);
        db_putc(&o->main, ':');
        db_pad(&o->main, LABEL_WIDTH - ind - (int)label_len - 1); /* values in one column */
        db_putc(&o->main, ' ');
    }
}

static void push(out *o, char kind, int ind)
{
    if (o->depth >= OUT_MAX_DEPTH)
        abort(); /* a programming error: nesting is static in the commands */
    o->kind[o->depth] = kind;
    o->count[o->depth] = 0;
    o->ind[o->depth] = ind;
    o->depth++;
}

static int cur_ind(const out *o) { return o->depth ? o->ind[o->depth - 1] : 0; }

/* Open an object ('{') or an array ('['), as a member `key` or an
 * element. Human output indents nested things by two; an object that is
 * an array element starts with a dash instead of a line of its own. */
static void nest_begin(out *o, const char *key, char kind)
{
    if (o->json) {
        json_member(o, key);
        db_putc(&o->main, kind);
        push(o, kind, 0);
        return;
    }
    if (in_row(o)) {
        push(o, kind, 0);
        return;
    }
    if (key) {
        human_line(o, NULL, 0);
        db_puts(&o->main, key);
        db_puts(&o->main, ":\n");
        push(o, kind, cur_ind(o) + 2);
    } else if (kind == '[') {
        push(o, kind, cur_ind(o) + 2);
    } else if (in_array(o)) {
        o->dash = 1;
        push(o, kind, cur_ind(o) + 2);
    } else {
        push(o, kind, cur_ind(o));
    }
}

void out_obj_begin(out *o, const char *key) { nest_begin(o, key, '{'); }

static void pop(out *o)
{
    if (o->depth > 0)
        o->depth--;
    o->dash = 0;
}

void out_obj_end(out *o)
{
    if (o->json)
        db_putc(&o->main, '}');
    pop(o);
}

void out_arr_begin(out *o, const char *key) { nest_begin(o, key, '['); }

void out_arr_end(out *o)
{
    if (o->json)
        db_putc(&o->main, ']');
    pop(o);
}

void out_doc_end(out *o)
{
    if (o->json && o->depth == 0)
        db_putc(&o->main, '\n');
}

/* Where the value of field `key` goes, after its key or label; NULL when
 * it is not shown (people, a field that is not a column). `strip` is the
 * suffix people do not see ("_ns"). */
static dbuf *value_begin(out *o, const char *key, const char *strip)
{
    if (o->json) {
        json_member(o, key);
        return &o->main;
    }
    if (in_row(o)) {
        if (o->depth != o->row_depth || !key)
            return NULL;
        for (int i = 0; i < o->ncols; i++)
            if (strcmp(o->cols[i].key, key) == 0) {
                o->cell[i].len = 0;
                return &o->cell[i];
            }
        return NULL;
    }
    size_t n = key ? strlen(key) : 0;
    if (!key && in_array(o))
        o->dash = 1; /* a scalar element: "- value" */
    if (key && strip) {
        size_t sl = strlen(strip);
        if (n > sl && strcmp(key + n - sl, strip) == 0)
            n -= sl;
    }
    human_line(o, key, n);
    return &o->main;
}

static void value_end(out *o, dbuf *b)
{
    if (o->json || b != &o->main)
        return;
    while (b->len && b->p[b->len - 1] == ' ') /* an empty value leaves no blanks */
        b->len--;
    db_putc(b, '\n');
}

void out_str(out *o, const char *key, const char *p, size_t len)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    if (o->json)
        json_escape(b, p ? p : "", p ? len : 0);
    else if (p)
        human_escape(b, p, len);
    value_end(o, b);
}

void out_cstr(out *o, const char *key, const char *s)
{
    if (!s)
        out_null(o, key);
    else
        out_str(o, key, s, strlen(s));
}

void out_u64(out *o, const char *key, uint64_t v)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    db_printf(b, "%" PRIu64, v);
    value_end(o, b);
}

void out_i64(out *o, const char *key, int64_t v)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    db_printf(b, "%" PRId64, v);
    value_end(o, b);
}

void out_dbl(out *o, const char *key, double v)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    if (isfinite(v))
        db_printf(b, "%.3f", v);
    else
        db_puts(b, o->json ? "null" : "-");
    value_end(o, b);
}

void out_bool(out *o, const char *key, int v)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    db_puts(b, o->json ? (v ? "true" : "false") : (v ? "yes" : "no"));
    value_end(o, b);
}

void out_null(out *o, const char *key)
{
    dbuf *b = value_begin(o, key, "_ns");
    if (!b)
        return;
    db_puts(b, o->json ? "null" : "-");
    value_end(o, b);
}

void out_id(out *o, const char *key, const shmreg_id *id)
{
    char text[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(id, text);
    out_str(o, key, text, SHMREG_ID_TEXT_LEN);
}

void out_time(out *o, const char *key, uint64_t ns)
{
    if (ns == 0) {
        out_null(o, key);
        return;
    }
    dbuf *b = value_begin(o, key, "_ns");
    if (!b)
        return;
    if (o->json) {
        db_printf(b, "%" PRIu64, ns);
    } else {
        char t[48];
        fmt_time(t, sizeof t, ns);
        db_puts(b, t);
    }
    value_end(o, b);
}

/* A duration of `mag` ns; sign 1: from now on, -1: before now, 0: neither. */
static void dur_value(out *o, const char *key, uint64_t mag, int sign)
{
    dbuf *b = value_begin(o, key, "_ns");
    if (!b)
        return;
    char t[48];
    if (o->json) {
        db_printf(b, "%s%" PRIu64, sign < 0 && mag ? "-" : "", mag);
    } else {
        fmt_dur(t, sizeof t, mag);
        db_printf(b, sign > 0 ? "in %s" : sign < 0 ? "%s ago" : "%s", t);
    }
    value_end(o, b);
}

void out_dur(out *o, const char *key, uint64_t ns) { dur_value(o, key, ns, 0); }

void out_rel(out *o, const char *key, int64_t ns)
{
    dur_value(o, key, ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns, ns < 0 ? -1 : 1);
}

void out_bytes(out *o, const char *key, uint64_t v)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    static const char *unit[] = {"KiB", "MiB", "GiB", "TiB"};
    db_printf(b, "%" PRIu64, v);
    if (!o->json && v >= 1024) {
        double x = (double)v / 1024;
        int u = 0;
        while (x >= 1024 && u < 3)
            x /= 1024, u++;
        db_printf(b, " (%.1f %s)", x, unit[u]);
    }
    value_end(o, b);
}

void out_hex(out *o, const char *key, const void *p, size_t len)
{
    dbuf *b = value_begin(o, key, NULL);
    if (!b)
        return;
    const unsigned char *s = p;
    if (o->json)
        db_putc(b, '"');
    for (size_t i = 0; i < len; i++)
        db_printf(b, "%02x", s[i]);
    if (o->json)
        db_putc(b, '"');
    value_end(o, b);
}

void out_block(out *o, const char *key, const char *p, size_t len)
{
    if (o->json || in_row(o)) {
        out_str(o, key, p, len);
        return;
    }
    dbuf *b = value_begin(o, key, NULL);
    db_printf(b, "%zu bytes\n", len);
    int ind = cur_ind(o) + 4;
    /* One output line per text line, CRLF or LF ending it. */
    for (size_t i = 0; i < len;) {
        const char *nl = memchr(p + i, '\n', len - i);
        size_t j = nl ? (size_t)(nl - p) : len;
        size_t end = nl && j > i && p[j - 1] == '\r' ? j - 1 : j;
        db_pad(b, ind);
        human_escape(b, p + i, end - i);
        db_putc(b, '\n');
        i = nl ? j + 1 : len;
    }
}

/* ------------------------------------------------------------ tables */

static void pad_cell(dbuf *line, const out_col *col, const char *s, size_t n, int last)
{
    size_t w = text_width(s, n);
    if (col->width > 0 && col->trunc && w > (size_t)col->width) {
        n = text_prefix(s, n, (size_t)col->width - 1);
        db_put(line, s, n);
        db_putc(line, '~');
        return;
    }
    int gap = col->width > 0 && w < (size_t)col->width ? col->width - (int)w : 0;
    if (col->right)
        db_pad(line, gap);
    db_put(line, s, n);
    if (!col->right && !last)
        db_pad(line, gap);
}

void out_table(out *o, const char *key, const out_col *cols, int ncols, int lines)
{
    o->cols = cols;
    o->ncols = ncols < OUT_MAX_COLS ? ncols : OUT_MAX_COLS;
    o->lines = lines;
    if (o->json) {
        if (!lines)
            out_arr_begin(o, key);
        return;
    }
    for (int i = 0; i < o->ncols; i++) {
        if (i)
            db_puts(&o->main, "  ");
        pad_cell(&o->main, &cols[i], cols[i].title, strlen(cols[i].title), i == o->ncols - 1);
    }
    db_putc(&o->main, '\n');
}

void out_row_begin(out *o)
{
    if (o->json) {
        out_obj_begin(o, NULL);
        o->row_depth = o->depth;
        return;
    }
    for (int i = 0; i < o->ncols; i++)
        o->cell[i].len = 0;
    push(o, '{', 0);
    o->row_depth = o->depth;
}

void out_row_end(out *o)
{
    o->row_depth = 0;
    if (o->json) {
        out_obj_end(o);
        if (o->lines)
            out_doc_end(o);
        return;
    }
    pop(o);
    for (int i = 0; i < o->ncols; i++) {
        if (i)
            db_puts(&o->main, "  ");
        dbuf *c = &o->cell[i];
        if (c->len == 0)
            pad_cell(&o->main, &o->cols[i], "-", 1, i == o->ncols - 1);
        else
            pad_cell(&o->main, &o->cols[i], c->p, c->len, i == o->ncols - 1);
    }
    /* No trailing blanks: a right-padded empty last column would leave them. */
    while (o->main.len && o->main.p[o->main.len - 1] == ' ')
        o->main.len--;
    db_putc(&o->main, '\n');
}

void out_table_end(out *o)
{
    if (o->json && !o->lines)
        out_arr_end(o);
    o->cols = NULL;
    o->ncols = 0;
    o->row_depth = 0;
}

void out_raw(out *o, const char *p, size_t len)
{
    db_put(&o->main, p, len);
}
