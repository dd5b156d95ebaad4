/*
 * config_text.c — the text form of configs, between text and a registry:
 * loading a whole text into a registry and the canonical dumper.
 *
 * Why canonical. The dumper writes the one spelling, one space around
 * '=', ", " in lists, a blank line before each section header, so that
 * dump -> parse -> dump is byte-identical and text already written that
 * way round-trips to itself; diffs between two dumps show real changes.
 * The format itself and why it is strict: config_parse.c.
 *
 * The dumper streams through a fixed buffer into the caller's write
 * function, so dumping a large config allocates nothing.
 *
 * This file sits above the config writes and views and uses only the
 * public API.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "shmreg.h"

int shmreg_config_load_text(shmreg *h, const char *name, const char *text, size_t len)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    shmreg_config_doc *doc;
    if ((rc = shmreg_config_parse(text, len, &doc)))
        return rc;
    rc = shmreg_config_put(h, name, doc);
    shmreg_config_doc_free(doc);
    return rc;
}

/* ---------------------------------------------------------------- dumper */

struct out {
    shmreg_config_write_fn fn;
    void *arg;
    int rc;
    size_t n;
    char buf[4096];
};

static void out_flush(struct out *o)
{
    if (o->rc == 0 && o->n)
        o->rc = o->fn(o->arg, o->buf, o->n);
    o->n = 0;
}

static void out_put(struct out *o, const char *s, size_t len)
{
    while (len && o->rc == 0) {
        size_t k = sizeof o->buf - o->n;
        if (k > len)
            k = len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        s += k;
        len -= k;
        if (o->n == sizeof o->buf)
            out_flush(o);
    }
}

static void out_cstr(struct out *o, const char *s) { out_put(o, s, strlen(s)); }

static void out_quoted(struct out *o, shmreg_str s)
{
    out_put(o, "\"", 1);
    const char *run = s.ptr;
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        const char *esc = NULL;
        char hex[5];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\t': esc = "\\t"; break;
        case '\r': esc = "\\r"; break;
        default:
            if (c < 0x20 || c == 0x7f) {
                snprintf(hex, sizeof hex, "\\x%02x", c);
                esc = hex;
            }
        }
        if (esc) {
            out_put(o, run, (size_t)(s.ptr + i - run));
            out_cstr(o, esc);
            run = s.ptr + i + 1;
        }
    }
    out_put(o, run, (size_t)(s.ptr + s.len - run));
    out_put(o, "\"", 1);
}

static void out_value(struct out *o, const shmreg_config_value *v)
{
    char num[32];
    shmreg_str s;
    switch (v->type) {
    case SHMREG_CONFIG_STR:
        out_quoted(o, v->str);
        break;
    case SHMREG_CONFIG_INT:
        snprintf(num, sizeof num, "%lld", (long long)v->num);
        out_cstr(o, num);
        break;
    case SHMREG_CONFIG_BOOL:
        out_cstr(o, v->num ? "true" : "false");
        break;
    case SHMREG_CONFIG_LIST:
        out_put(o, "[", 1);
        for (uint32_t i = 0; i < v->count; i++) {
            if (i)
                out_put(o, ", ", 2);
            shmreg_config_item(v, i, &s);
            out_quoted(o, s);
        }
        out_put(o, "]", 1);
        break;
    }
}

typedef int (*next_fn)(const void *src, uint32_t *cursor, shmreg_str *key,
                       shmreg_config_value *v);

static int view_next(const void *src, uint32_t *c, shmreg_str *k, shmreg_config_value *v)
{
    return shmreg_config_next(src, c, k, v);
}

static int doc_next(const void *src, uint32_t *c, shmreg_str *k, shmreg_config_value *v)
{
    return shmreg_config_doc_next(src, c, k, v);
}

static int dump(const void *src, next_fn next, shmreg_config_write_fn fn, void *arg)
{
    if (!src || !fn)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    struct out *o = malloc(sizeof *o);
    if (!o)
        return shmreg__fail(SHMREG_ENOMEM, "config dump: out of memory");
    o->fn = fn;
    o->arg = arg;
    o->rc = 0;
    o->n = 0;
    uint32_t cur = 0;
    shmreg_str key, sec = { "", 0 }, name, val;
    shmreg_config_value v;
    int rc = 0, first = 1;
    while (o->rc == 0 && (rc = next(src, &cur, &key, &v)) == 0) {
        shmreg_str s = { key.ptr, 0 };
        name = key;
        if (v.type == SHMREG_CONFIG_PAIRS) {
            s = (shmreg_str){ "sdp", 3 };
        } else {
            const char *dot = memchr(key.ptr, '.', key.len);
            if (dot) {
                s.len = (size_t)(dot - key.ptr);
                name = (shmreg_str){ dot + 1, key.len - s.len - 1 };
            }
        }
        if (s.len && (s.len != sec.len || memcmp(s.ptr, sec.ptr, s.len))) {
            if (!first)
                out_put(o, "\n", 1);
            out_put(o, "[", 1);
            out_put(o, s.ptr, s.len);
            out_put(o, "]\n", 2);
            sec = s;
        }
        first = 0;
        if (v.type == SHMREG_CONFIG_PAIRS) {
            for (uint32_t i = 0; i < v.count; i++) {
                shmreg_config_pair(&v, i, &name, &val);
                out_put(o, name.ptr, name.len);
                out_put(o, " = ", 3);
                out_quoted(o, val);
                out_put(o, "\n", 1);
            }
            continue;
        }
        out_put(o, name.ptr, name.len);
        out_put(o, " = ", 3);
        out_value(o, &v);
        out_put(o, "\n", 1);
    }
    out_flush(o);
    if (o->rc) /* the caller's value, as is; the message says whose it is */
        rc = shmreg__fail(o->rc, "the write callback stopped the dump (it returned %d)", o->rc);
    else if (rc == SHMREG_ENOENT)
        rc = 0;
    free(o);
    return rc;
}

int shmreg_config_view_dump(const shmreg_config_view *v, shmreg_config_write_fn fn,
                            void *arg)
{
    return dump(v, view_next, fn, arg);
}

int shmreg_config_doc_dump(const shmreg_config_doc *doc, shmreg_config_write_fn fn,
                           void *arg)
{
    return dump(doc, doc_next, fn, arg);
}

int shmreg_config_dump(shmreg *h, const char *name, shmreg_config_write_fn fn,
                       void *arg)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    shmreg_config_view *v;
    if (!fn)
        return shmreg__fail(SHMREG_EINVAL, "fn is NULL");
    if ((rc = shmreg_config_open_view(h, name, &v)))
        return rc;
    rc = shmreg_config_view_dump(v, fn, arg);
    shmreg_config_release(v);
    return rc;
}
