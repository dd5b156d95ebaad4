/*
 * config_record.c — the bytes of a config: the record format stored in
 * LMDB, and the in-memory document (shmreg_config_doc) that writes are
 * built from. It makes no LMDB call, so everything here is about layout
 * and validation; config_internal.h says how the module fits together.
 *
 * The record (all integers in host byte order, read with memcpy because
 * LMDB only guarantees 2-byte alignment of values):
 *
 *   header  40 bytes: u32 magic "SRC1", u16 version 1, u16 header size,
 *           u32 total size (== the LMDB value size), u32 entry count,
 *           u64 generation of the write, u64 write time (ns), u64 0
 *   entry   u8 type, u8 key length K, u16 0, u32 value length V,
 *           K key bytes, NUL, V value bytes           (8 + K + 1 + V)
 *   values  STR   the bytes, then NUL (V = len + 1)
 *           INT   int64;  BOOL  one byte, 0 or 1
 *           LIST  u32 count, u32 S, S bytes of strings (each followed by
 *                 NUL), then count x {u32 off, u32 len} into the strings
 *           PAIRS as LIST with count x {koff, klen, voff, vlen}
 *
 * Lists keep an offset table so that the i-th codec is O(1), and the NUL
 * after every string lets callers hand moh_path straight to open(2). The
 * same encoding is used for entries of an in-memory document
 * (shmreg_config_doc), so one set of accessors serves views and documents,
 * and storing a document is a concatenation written straight into the map
 * (MDB_RESERVE, config_write.c). Nothing read from a record is trusted:
 * opening a view walks the whole record once (config_view.c) with the
 * decoders below, which check every length, offset, type and terminating
 * NUL (a corrupt record is SHMREG_ECORRUPT, never a wild read); after that
 * the accessors index validated tables.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config_internal.h"

/* ---------------------------------------------------------------- record format */

#define REC_MAGIC 0x31435253u /* "SRC1" */
#define REC_VERSION 1u
#define ENT_HDR 8u

/* ld64() and st64() are in config_internal.h: other files need them too. */
static inline uint32_t ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline void st16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st32(void *p, uint32_t v) { memcpy(p, &v, 4); }

int reg_cfg_ent_read(const unsigned char *base, uint32_t len, uint32_t off,
                     struct ent *e)
{
    if (off > len || len - off < ENT_HDR)
        return shmreg__fail(SHMREG_ECORRUPT, "config entry at %u overruns the "
                            "record (%u bytes)", off, len);
    const unsigned char *p = base + off;
    uint32_t klen = p[1], vlen = ld32(p + 4);
    uint64_t need = (uint64_t)ENT_HDR + klen + 1 + vlen;
    if (klen == 0 || p[2] || p[3] || need > len - off)
        return shmreg__fail(SHMREG_ECORRUPT, "config entry at %u: bad key "
                            "length %u or value length %u", off, klen, vlen);
    if (p[ENT_HDR + klen] != 0)
        return shmreg__fail(SHMREG_ECORRUPT, "config entry at %u: key not "
                            "terminated", off);
    e->type = p[0];
    e->key = (const char *)p + ENT_HDR;
    e->klen = klen;
    e->val = p + ENT_HDR + klen + 1;
    e->vlen = vlen;
    e->next = off + (uint32_t)need;
    return 0;
}

int reg_cfg_val_decode(unsigned type, const unsigned char *p, uint32_t n,
                       shmreg_config_value *out)
{
    memset(out, 0, sizeof *out);
    out->type = (int)type;
    switch (type) {
    case SHMREG_CONFIG_STR:
        if (n < 1 || p[n - 1] != 0)
            break;
        out->str.ptr = (const char *)p;
        out->str.len = n - 1;
        return 0;
    case SHMREG_CONFIG_INT:
        if (n != 8)
            break;
        out->num = (int64_t)ld64(p);
        return 0;
    case SHMREG_CONFIG_BOOL:
        if (n != 1 || p[0] > 1)
            break;
        out->num = p[0];
        return 0;
    case SHMREG_CONFIG_LIST:
    case SHMREG_CONFIG_PAIRS: {
        if (n < 8)
            break;
        uint32_t count = ld32(p), s = ld32(p + 4);
        uint32_t w = type == SHMREG_CONFIG_LIST ? 8 : 16;
        if (count > SHMREG_CONFIG_MAX_ITEMS ||
            (uint64_t)8 + s + (uint64_t)count * w != n)
            break;
        const unsigned char *strs = p + 8, *tab = p + 8 + s;
        for (uint32_t i = 0; i < count * (w / 8); i++) {
            uint32_t off = ld32(tab + 8 * i), len = ld32(tab + 8 * i + 4);
            if ((uint64_t)off + len >= s || strs[off + len] != 0)
                return shmreg__fail(SHMREG_ECORRUPT, "config list item %u "
                                    "out of bounds", i);
        }
        out->count = count;
        out->priv_[0] = strs;
        out->priv_[1] = tab;
        return 0;
    }
    default:
        return shmreg__fail(SHMREG_ECORRUPT, "config value of unknown type %u",
                            type);
    }
    return shmreg__fail(SHMREG_ECORRUPT, "config value of type %u has a bad "
                        "length %u", type, n);
}

int shmreg_config_item(const shmreg_config_value *v, uint32_t i, shmreg_str *out)
{
    if (!v || !out || v->type != SHMREG_CONFIG_LIST)
        return shmreg__fail(SHMREG_EINVAL, "not a list value");
    if (i >= v->count)
        return shmreg__fail(SHMREG_ENOENT, "no item %u", i);
    const unsigned char *t = (const unsigned char *)v->priv_[1] + (size_t)i * 8;
    out->ptr = (const char *)v->priv_[0] + ld32(t);
    out->len = ld32(t + 4);
    return 0;
}

int shmreg_config_pair(const shmreg_config_value *v, uint32_t i,
                       shmreg_str *name, shmreg_str *value)
{
    if (!v || !name || !value || v->type != SHMREG_CONFIG_PAIRS)
        return shmreg__fail(SHMREG_EINVAL, "not a pairs value");
    if (i >= v->count)
        return shmreg__fail(SHMREG_ENOENT, "no pair %u", i);
    const unsigned char *t = (const unsigned char *)v->priv_[1] + (size_t)i * 16;
    const char *s = v->priv_[0];
    name->ptr = s + ld32(t);
    name->len = ld32(t + 4);
    value->ptr = s + ld32(t + 8);
    value->len = ld32(t + 12);
    return 0;
}

/* ---------------------------------------------------------------- keys and media */

static int is_keych(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Check a key; *dot gets the position of its '.' (or klen when none). */
static int key_check(const char *key, size_t *klen, size_t *dot)
{
    if (!key)
        return shmreg__fail(SHMREG_EINVAL, "key is NULL");
    size_t n = strnlen(key, SHMREG_CONFIG_MAX_KEY + 1);
    if (n == 0 || n > SHMREG_CONFIG_MAX_KEY)
        return shmreg__fail(SHMREG_EINVAL, "key must be 1..%u bytes",
                            SHMREG_CONFIG_MAX_KEY);
    size_t d = n;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)key[i];
        if (c == '.' && d == n && i > 0 && i + 1 < n)
            d = i;
        else if (!is_keych(c))
            return shmreg__fail(SHMREG_EINVAL, "bad key '%.*s': parts are "
                                "[A-Za-z0-9_-]+, at most one '.'", (int)n, key);
    }
    *klen = n;
    *dot = d;
    return 0;
}

int reg_cfg_name_check(const char *name, size_t *len)
{
    if (!name)
        return shmreg__fail(SHMREG_EINVAL, "config name is NULL");
    size_t n = strnlen(name, SHMREG_CONFIG_MAX_NAME + 1);
    if (n == 0 || n > SHMREG_CONFIG_MAX_NAME || name[0] == '.')
        return shmreg__fail(SHMREG_EINVAL, "config name must be 1..%u bytes, "
                            "not starting with '.'", SHMREG_CONFIG_MAX_NAME);
    for (size_t i = 0; i < n; i++)
        if (!is_keych((unsigned char)name[i]) && name[i] != '.')
            return shmreg__fail(SHMREG_EINVAL, "bad config name '%s': use "
                                "[A-Za-z0-9_.-]", name);
    *len = n;
    return 0;
}

static const struct media_key media_keys[] = {
    { "codecs", SHMREG_CONFIG_LIST, SHMREG_MEDIA_CODECS, 0, 0 },
    { "rtp_port_min", SHMREG_CONFIG_INT, SHMREG_MEDIA_RTP_PORT_MIN, 1, 65535 },
    { "rtp_port_max", SHMREG_CONFIG_INT, SHMREG_MEDIA_RTP_PORT_MAX, 1, 65535 },
    { "ptime", SHMREG_CONFIG_INT, SHMREG_MEDIA_PTIME, 1, 1000 },
    { "max_bandwidth", SHMREG_CONFIG_INT, SHMREG_MEDIA_MAX_BANDWIDTH, 0, 1000000000 },
    { "moh_path", SHMREG_CONFIG_STR, SHMREG_MEDIA_MOH_PATH, 0, 0 },
    { "dtmf", SHMREG_CONFIG_BOOL, SHMREG_MEDIA_DTMF, 0, 1 },
    { "echo_cancellation", SHMREG_CONFIG_BOOL, SHMREG_MEDIA_ECHO_CANCELLATION, 0, 1 },
    { "noise_suppression", SHMREG_CONFIG_BOOL, SHMREG_MEDIA_NOISE_SUPPRESSION, 0, 1 },
    { "agc", SHMREG_CONFIG_BOOL, SHMREG_MEDIA_AGC, 0, 1 },
    { "quality_monitoring", SHMREG_CONFIG_BOOL, SHMREG_MEDIA_QUALITY_MONITORING, 0, 1 },
};
#define NMEDIA (sizeof media_keys / sizeof media_keys[0])
#define MAX_CODEC 64u

const char *reg_cfg_type_name(unsigned t)
{
    static const char *const names[] = { "?", "string", "integer", "boolean",
                                         "list", "pairs" };
    return t < 6 ? names[t] : "?";
}

const struct media_key *reg_cfg_media_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NMEDIA; i++)
        if (strlen(media_keys[i].name) == len &&
            memcmp(media_keys[i].name, name, len) == 0)
            return &media_keys[i];
    return NULL;
}

/* ---------------------------------------------------------------- documents */

struct dent {
    unsigned char type;
    uint8_t klen;
    char *key;             /* NUL-terminated */
    unsigned char *val;    /* encoded as in a record */
    uint32_t vlen, vcap;
};

struct shmreg_config_doc {
    struct dent *e;
    uint32_t n, cap;
};

int shmreg_config_doc_new(shmreg_config_doc **out)
{
    if (!out)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    shmreg_config_doc *d = calloc(1, sizeof *d);
    if (!d)
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    *out = d;
    return 0;
}

void shmreg_config_doc_free(shmreg_config_doc *doc)
{
    if (!doc)
        return;
    for (uint32_t i = 0; i < doc->n; i++) {
        free(doc->e[i].key);
        free(doc->e[i].val);
    }
    free(doc->e);
    free(doc);
}

/* Section of an entry: "sdp" for the attribute list, else the key part
 * before the dot, "" for top-level keys. */
static void dent_section(const struct dent *e, const char **s, size_t *len)
{
    if (e->type == SHMREG_CONFIG_PAIRS) {
        *s = "sdp";
        *len = 3;
        return;
    }
    const char *dot = memchr(e->key, '.', e->klen);
    *s = e->key;
    *len = dot ? (size_t)(dot - e->key) : 0;
}

static int64_t doc_find(const shmreg_config_doc *doc, const char *key, size_t klen)
{
    for (uint32_t i = 0; i < doc->n; i++)
        if (doc->e[i].klen == klen && memcmp(doc->e[i].key, key, klen) == 0)
            return i;
    return -1;
}

/* Where a new entry of section (s, len) goes: after the last entry of its
 * section; a new section at the end; top-level keys before all sections.
 * This keeps every document dumpable as text with each section once. */
static uint32_t doc_insert_pos(const shmreg_config_doc *doc, const char *s,
                               size_t len)
{
    uint32_t pos = doc->n;
    int found = 0;
    for (uint32_t i = 0; i < doc->n; i++) {
        const char *es;
        size_t elen;
        dent_section(&doc->e[i], &es, &elen);
        if (elen == len && memcmp(es, s, len) == 0) {
            pos = i + 1;
            found = 1;
        } else if (!found && len == 0 && elen != 0 && pos == doc->n) {
            pos = i;   /* first sectioned entry: top-level keys go before */
        }
    }
    return pos;
}

/* Replace the value of `key` (type t, payload v/vlen, copied), or insert
 * it. The document is unchanged on failure. */
static int doc_put(shmreg_config_doc *doc, unsigned t, const char *key,
                   size_t klen, const void *v, uint32_t vlen)
{
    int64_t at = doc_find(doc, key, klen);
    unsigned char *copy = malloc(vlen ? vlen : 1);
    if (!copy)
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    memcpy(copy, v, vlen);
    if (at >= 0) {
        struct dent *e = &doc->e[at];
        free(e->val);
        e->type = (unsigned char)t;
        e->val = copy;
        e->vlen = e->vcap = vlen;
        return 0;
    }
    if (doc->n >= SHMREG_CONFIG_MAX_ENTRIES) {
        free(copy);
        return shmreg__fail(SHMREG_EINVAL, "config has %u entries already",
                            SHMREG_CONFIG_MAX_ENTRIES);
    }
    if (doc->n == doc->cap) {
        uint32_t ncap = doc->cap ? doc->cap * 2 : 16;
        struct dent *grown = realloc(doc->e, ncap * sizeof *grown);
        if (!grown) {
            free(copy);
            return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
        }
        doc->e = grown;
        doc->cap = ncap;
    }
    char *kcopy = malloc(klen + 1);
    if (!kcopy) {
        free(copy);
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    }
    memcpy(kcopy, key, klen);
    kcopy[klen] = 0;
    struct dent ne = { (unsigned char)t, (uint8_t)klen, kcopy, copy, vlen, vlen };
    const char *s = key;
    size_t slen;
    if (t == SHMREG_CONFIG_PAIRS) {
        s = "sdp";
        slen = 3;
    } else {
        const char *dot = memchr(key, '.', klen);
        slen = dot ? (size_t)(dot - key) : 0;
    }
    uint32_t pos = doc_insert_pos(doc, s, slen);
    memmove(&doc->e[pos + 1], &doc->e[pos], (doc->n - pos) * sizeof ne);
    doc->e[pos] = ne;
    doc->n++;
    return 0;
}

static void doc_remove(shmreg_config_doc *doc, uint32_t i)
{
    free(doc->e[i].key);
    free(doc->e[i].val);
    memmove(&doc->e[i], &doc->e[i + 1], (doc->n - i - 1) * sizeof doc->e[0]);
    doc->n--;
}

static int str_check(shmreg_str s, const char *what)
{
    if (s.len > SHMREG_CONFIG_MAX_VALUE)
        return shmreg__fail(SHMREG_EINVAL, "%s longer than %u bytes", what,
                            SHMREG_CONFIG_MAX_VALUE);
    if (s.len && !s.ptr)
        return shmreg__fail(SHMREG_EINVAL, "%s: NULL with length %zu", what,
                            s.len);
    if (s.len && memchr(s.ptr, 0, s.len))
        return shmreg__fail(SHMREG_EINVAL, "%s contains a NUL byte", what);
    return 0;
}

/* Validate a key for a value of type t. Sets *mk for media keys, *sdp_attr
 * (the part after "sdp.") for SDP attributes. */
static int key_for(const char *key, unsigned t, size_t *klen,
                   const struct media_key **mk, int *sdp_attr)
{
    size_t dot;
    int rc = key_check(key, klen, &dot);
    if (rc)
        return rc;
    *mk = NULL;
    *sdp_attr = 0;
    if (dot == *klen) {
        if ((*klen == 3 && !memcmp(key, "sdp", 3)) ||
            (*klen == 5 && !memcmp(key, "media", 5)))
            return shmreg__fail(SHMREG_EINVAL, "'%s' is a reserved section "
                                "name, not a key", key);
        return 0;
    }
    if (dot == 3 && !memcmp(key, "sdp", 3)) {
        if (t != SHMREG_CONFIG_STR)
            return shmreg__fail(SHMREG_EINVAL, "SDP attribute %s: values are "
                                "strings, not %s", key, reg_cfg_type_name(t));
        *sdp_attr = 1;
        return 0;
    }
    if (dot == 5 && !memcmp(key, "media", 5)) {
        *mk = reg_cfg_media_find(key + 6, *klen - 6);
        if (!*mk)
            return shmreg__fail(SHMREG_EINVAL, "unknown media key '%s' (known: "
                                "codecs, rtp_port_min, rtp_port_max, ptime, "
                                "max_bandwidth, moh_path, dtmf, "
                                "echo_cancellation, noise_suppression, agc, "
                                "quality_monitoring)", key);
        if ((*mk)->type != t)
            return shmreg__fail(SHMREG_EINVAL, "%s is a %s, not a %s", key,
                                reg_cfg_type_name((*mk)->type), reg_cfg_type_name(t));
    }
    return 0;
}

/* Encode a LIST (w = 1) or PAIRS (w = 2: items are name, value, ...)
 * payload of n strings into a new malloc'ed buffer. */
static int list_encode(const shmreg_str *items, uint32_t n, unsigned w,
                       unsigned char **out, uint32_t *outlen)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < n; i++)
        s += items[i].len + 1;
    uint64_t total = 8 + s + (uint64_t)n * 8;
    if (total > SHMREG_CONFIG_MAX_BYTES)
        return shmreg__fail(SHMREG_EINVAL, "list larger than %u bytes",
                            SHMREG_CONFIG_MAX_BYTES);
    unsigned char *b = malloc(total);
    if (!b)
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    st32(b, n / w);
    st32(b + 4, (uint32_t)s);
    unsigned char *strs = b + 8, *tab = b + 8 + s;
    uint32_t off = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (items[i].len)
            memcpy(strs + off, items[i].ptr, items[i].len);
        strs[off + items[i].len] = 0;
        st32(tab + 8 * i, off);
        st32(tab + 8 * i + 4, (uint32_t)items[i].len);
        off += (uint32_t)items[i].len + 1;
    }
    *out = b;
    *outlen = (uint32_t)total;
    return 0;
}

static int doc_put_owned(shmreg_config_doc *doc, unsigned t, const char *key,
                         size_t klen, unsigned char *buf, uint32_t len)
{
    int rc = doc_put(doc, t, key, klen, buf, len);
    free(buf);
    return rc;
}

/* The attribute list of a document as an array of (name, value) strings
 * pointing into the document (malloc'ed, with room for one more pair;
 * *n counts strings). */
static int attrs_get(const shmreg_config_doc *doc, shmreg_str **out, uint32_t *n)
{
    shmreg_config_value v = { .count = 0 };
    int64_t at = doc_find(doc, "sdp", 3);
    int rc;
    if (at >= 0 &&
        (rc = reg_cfg_val_decode(SHMREG_CONFIG_PAIRS, doc->e[at].val, doc->e[at].vlen, &v)))
        return rc;
    shmreg_str *a = malloc((2 * (size_t)v.count + 2) * sizeof *a);
    if (!a)
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    for (uint32_t i = 0; i < v.count; i++)
        shmreg_config_pair(&v, i, &a[2 * i], &a[2 * i + 1]);
    *out = a;
    *n = 2 * v.count;
    return 0;
}

static int attrs_put(shmreg_config_doc *doc, const shmreg_str *a, uint32_t n)
{
    if (n == 0) {
        int64_t at = doc_find(doc, "sdp", 3);
        if (at >= 0)
            doc_remove(doc, (uint32_t)at);
        return 0;
    }
    unsigned char *b;
    uint32_t len;
    int rc = list_encode(a, n, 2, &b, &len);
    if (rc)
        return rc;
    return doc_put_owned(doc, SHMREG_CONFIG_PAIRS, "sdp", 3, b, len);
}

static int attr_check(shmreg_str name, shmreg_str value)
{
    if (!name.ptr || name.len == 0 || name.len > SHMREG_CONFIG_MAX_KEY - 4)
        return shmreg__fail(SHMREG_EINVAL, "SDP attribute name must be 1..%u "
                            "bytes", SHMREG_CONFIG_MAX_KEY - 4);
    for (size_t i = 0; i < name.len; i++)
        if (!is_keych((unsigned char)name.ptr[i]))
            return shmreg__fail(SHMREG_EINVAL, "bad SDP attribute name '%.*s': "
                                "use [A-Za-z0-9_-]", (int)name.len, name.ptr);
    int rc = str_check(value, "SDP attribute value");
    if (rc)
        return rc;
    if (value.len && (memchr(value.ptr, '\r', value.len) ||
                      memchr(value.ptr, '\n', value.len)))
        return shmreg__fail(SHMREG_EINVAL, "SDP attribute %.*s: value contains "
                            "CR or LF", (int)name.len, name.ptr);
    return 0;
}

/* add != 0: append; else replace the only attribute `name`, or append. */
static int attr_set(shmreg_config_doc *doc, shmreg_str name, shmreg_str value,
                    int add)
{
    int rc = attr_check(name, value);
    if (rc)
        return rc;
    shmreg_str *a;
    uint32_t n;
    if ((rc = attrs_get(doc, &a, &n)))
        return rc;
    if (n / 2 >= SHMREG_CONFIG_MAX_ITEMS) {
        free(a);
        return shmreg__fail(SHMREG_EINVAL, "more than %u SDP attributes",
                            SHMREG_CONFIG_MAX_ITEMS);
    }
    uint32_t match = n, nmatch = 0;
    if (!add)
        for (uint32_t i = 0; i < n; i += 2)
            if (a[i].len == name.len && !memcmp(a[i].ptr, name.ptr, name.len)) {
                match = i;
                nmatch++;
            }
    if (nmatch > 1) {
        free(a);
        return shmreg__fail(SHMREG_EINVAL, "SDP attribute %.*s appears %u "
                            "times: replace the whole config instead",
                            (int)name.len, name.ptr, nmatch);
    }
    if (nmatch == 1) {
        a[match + 1] = value;
    } else {
        a[n++] = name;
        a[n++] = value;
    }
    rc = attrs_put(doc, a, n);
    free(a);
    return rc;
}

int shmreg_config_doc_add_attr(shmreg_config_doc *doc, shmreg_str name,
                               shmreg_str value)
{
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    return attr_set(doc, name, value, 1);
}

int shmreg_config_doc_set_str(shmreg_config_doc *doc, const char *key,
                              shmreg_str val)
{
    size_t klen;
    const struct media_key *mk;
    int sdp;
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    int rc = key_for(key, SHMREG_CONFIG_STR, &klen, &mk, &sdp);
    if (rc || (rc = str_check(val, key)))
        return rc;
    if (sdp)
        return attr_set(doc, (shmreg_str){ key + 4, klen - 4 }, val, 0);
    unsigned char *b = malloc(val.len + 1);
    if (!b)
        return shmreg__fail(SHMREG_ENOMEM, "config document: out of memory");
    if (val.len)
        memcpy(b, val.ptr, val.len);
    b[val.len] = 0;
    return doc_put_owned(doc, SHMREG_CONFIG_STR, key, klen, b,
                         (uint32_t)val.len + 1);
}

/* The other bound of the RTP range, if the document sets it. */
static int rtp_other(const shmreg_config_doc *doc, const struct media_key *mk,
                     int64_t *other)
{
    const char *k = mk->bit == SHMREG_MEDIA_RTP_PORT_MIN ? "media.rtp_port_max"
                                                          : "media.rtp_port_min";
    int64_t at = doc_find(doc, k, strlen(k));
    if (at < 0 || doc->e[at].vlen != 8)
        return 0;
    *other = (int64_t)ld64(doc->e[at].val);
    return 1;
}

int shmreg_config_doc_set_int(shmreg_config_doc *doc, const char *key, int64_t val)
{
    size_t klen;
    const struct media_key *mk;
    int sdp;
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    int rc = key_for(key, SHMREG_CONFIG_INT, &klen, &mk, &sdp);
    if (rc)
        return rc;
    if (mk) {
        if (val < mk->lo || val > mk->hi)
            return shmreg__fail(SHMREG_EINVAL, "%s must be %lld..%lld, not %lld",
                                key, (long long)mk->lo, (long long)mk->hi,
                                (long long)val);
        int64_t other;
        if ((mk->bit & (SHMREG_MEDIA_RTP_PORT_MIN | SHMREG_MEDIA_RTP_PORT_MAX)) &&
            rtp_other(doc, mk, &other) &&
            (mk->bit == SHMREG_MEDIA_RTP_PORT_MIN ? val > other : val < other))
            return shmreg__fail(SHMREG_EINVAL, "media.rtp_port_min must not "
                                "exceed media.rtp_port_max (%lld, %lld)",
                                (long long)(mk->bit == SHMREG_MEDIA_RTP_PORT_MIN ? val : other),
                                (long long)(mk->bit == SHMREG_MEDIA_RTP_PORT_MIN ? other : val));
    }
    unsigned char b[8];
    st64(b, (uint64_t)val);
    return doc_put(doc, SHMREG_CONFIG_INT, key, klen, b, 8);
}

int shmreg_config_doc_set_bool(shmreg_config_doc *doc, const char *key, int val)
{
    size_t klen;
    const struct media_key *mk;
    int sdp;
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    int rc = key_for(key, SHMREG_CONFIG_BOOL, &klen, &mk, &sdp);
    if (rc)
        return rc;
    unsigned char b = val ? 1 : 0;
    return doc_put(doc, SHMREG_CONFIG_BOOL, key, klen, &b, 1);
}

int shmreg_config_doc_set_list(shmreg_config_doc *doc, const char *key,
                               const shmreg_str *items, uint32_t n)
{
    size_t klen;
    const struct media_key *mk;
    int sdp;
    if (!doc || (n && !items))
        return shmreg__fail(SHMREG_EINVAL, "doc or items is NULL");
    int rc = key_for(key, SHMREG_CONFIG_LIST, &klen, &mk, &sdp);
    if (rc)
        return rc;
    if (n > SHMREG_CONFIG_MAX_ITEMS)
        return shmreg__fail(SHMREG_EINVAL, "%s: more than %u items", key,
                            SHMREG_CONFIG_MAX_ITEMS);
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = str_check(items[i], key)))
            return rc;
        if (mk) {   /* a codec: a token as written in SDP rtpmap/fmtp */
            int ok = items[i].len >= 1 && items[i].len <= MAX_CODEC;
            for (size_t j = 0; ok && j < items[i].len; j++)
                ok = items[i].ptr[j] > 0x20 && items[i].ptr[j] < 0x7f;
            if (!ok)
                return shmreg__fail(SHMREG_EINVAL, "codec %u: 1..%u printable "
                                    "ASCII bytes without spaces", i, MAX_CODEC);
        }
    }
    unsigned char *b;
    uint32_t len;
    if ((rc = list_encode(items, n, 1, &b, &len)))
        return rc;
    return doc_put_owned(doc, SHMREG_CONFIG_LIST, key, klen, b, len);
}

int shmreg_config_doc_unset(shmreg_config_doc *doc, const char *key)
{
    size_t klen, dot;
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    int rc = key_check(key, &klen, &dot);
    if (rc)
        return rc;
    if (dot == 3 && !memcmp(key, "sdp", 3)) {
        shmreg_str *a;
        uint32_t n, kept = 0;
        if ((rc = attrs_get(doc, &a, &n)))
            return rc;
        for (uint32_t i = 0; i < n; i += 2)
            if (!(a[i].len == klen - 4 && !memcmp(a[i].ptr, key + 4, klen - 4))) {
                a[kept++] = a[i];
                a[kept++] = a[i + 1];
            }
        rc = kept == n ? shmreg__fail(SHMREG_ENOENT, "no SDP attribute %s", key + 4)
                       : attrs_put(doc, a, kept);
        free(a);
        return rc;
    }
    int64_t at = doc_find(doc, key, klen);
    if (at < 0)
        return shmreg__fail(SHMREG_ENOENT, "no key %s", key);
    doc_remove(doc, (uint32_t)at);
    return 0;
}

int shmreg_config_doc_get(const shmreg_config_doc *doc, const char *key,
                          shmreg_config_value *out)
{
    if (!doc || !key || !out)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    size_t klen = strlen(key);
    int64_t at = doc_find(doc, key, klen);
    if (at < 0)
        return shmreg__fail_copy(SHMREG_ENOENT, "no key ", key, klen);
    return reg_cfg_val_decode(doc->e[at].type, doc->e[at].val, doc->e[at].vlen, out);
}

int shmreg_config_doc_next(const shmreg_config_doc *doc, uint32_t *cursor,
                           shmreg_str *key, shmreg_config_value *out)
{
    if (!doc || !cursor || !key || !out)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    if (*cursor >= doc->n)
        return shmreg__fail(SHMREG_ENOENT, "end of config");
    const struct dent *e = &doc->e[*cursor];
    int rc = reg_cfg_val_decode(e->type, e->val, e->vlen, out);
    if (rc)
        return rc;
    key->ptr = e->key;
    key->len = e->klen;
    (*cursor)++;
    return 0;
}

int reg_cfg_doc_check(const shmreg_config_doc *doc)
{
    int64_t lo = MEDIA_DEF_RTP_MIN, hi = MEDIA_DEF_RTP_MAX;
    int64_t a = doc_find(doc, "media.rtp_port_min", 18);
    int64_t b = doc_find(doc, "media.rtp_port_max", 18);
    if (a >= 0)
        lo = (int64_t)ld64(doc->e[a].val);
    if (b >= 0)
        hi = (int64_t)ld64(doc->e[b].val);
    if (lo > hi)
        return shmreg__fail(SHMREG_EINVAL, "media.rtp_port_min %lld%s exceeds "
                            "media.rtp_port_max %lld%s", (long long)lo,
                            a < 0 ? " (default)" : "", (long long)hi,
                            b < 0 ? " (default)" : "");
    return 0;
}

int reg_cfg_doc_from_record(const unsigned char *rec, uint32_t len,
                            shmreg_config_doc **out)
{
    shmreg_config_doc *doc = NULL;
    int rc = shmreg_config_doc_new(&doc);
    if (rc)
        return rc;
    for (uint32_t off = REC_HDR; off < len && !rc;) {
        struct ent e;
        shmreg_config_value v;
        if ((rc = reg_cfg_ent_read(rec, len, off, &e)) ||
            (rc = reg_cfg_val_decode(e.type, e.val, e.vlen, &v)))
            break;
        if (doc_find(doc, e.key, e.klen) >= 0) {
            rc = shmreg__fail(SHMREG_ECORRUPT, "config key %s stored twice", e.key);
            break;
        }
        rc = doc_put(doc, e.type, e.key, e.klen, e.val, e.vlen);
        off = e.next;
    }
    if (rc) {
        shmreg_config_doc_free(doc);
        return rc;
    }
    *out = doc;
    return 0;
}

uint64_t reg_cfg_doc_size(const shmreg_config_doc *doc)
{
    uint64_t n = REC_HDR;
    for (uint32_t i = 0; i < doc->n; i++)
        n += ENT_HDR + doc->e[i].klen + 1 + doc->e[i].vlen;
    return n;
}

void reg_cfg_doc_encode(const shmreg_config_doc *doc, unsigned char *p,
                        uint32_t total, uint64_t gen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    memset(p, 0, REC_HDR);
    st32(p, REC_MAGIC);
    st16(p + 4, REC_VERSION);
    st16(p + 6, REC_HDR);
    st32(p + 8, total);
    st32(p + 12, doc->n);
    st64(p + 16, gen);
    st64(p + 24, (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
    unsigned char *q = p + REC_HDR;
    for (uint32_t i = 0; i < doc->n; i++) {
        const struct dent *e = &doc->e[i];
        q[0] = e->type;
        q[1] = e->klen;
        q[2] = q[3] = 0;
        st32(q + 4, e->vlen);
        memcpy(q + ENT_HDR, e->key, e->klen + 1u);
        memcpy(q + ENT_HDR + e->klen + 1, e->val, e->vlen);
        q += ENT_HDR + e->klen + 1 + e->vlen;
    }
}

int reg_cfg_rec_header(const unsigned char *p, size_t len, uint64_t *gen,
                       uint32_t *n)
{
    if (len < REC_HDR || len > SHMREG_CONFIG_MAX_BYTES || ld32(p) != REC_MAGIC)
        return shmreg__fail(SHMREG_ECORRUPT, "config record: bad magic or "
                            "size %zu", len);
    if (ld32(p + 4) != (REC_VERSION | (REC_HDR << 16)))
        return shmreg__fail(SHMREG_EVERSION, "config record version %u, header "
                            "%u bytes (this library: %u, %u)", p[4] | p[5] << 8,
                            p[6] | p[7] << 8, REC_VERSION, REC_HDR);
    if (ld32(p + 8) != len || ld32(p + 12) > SHMREG_CONFIG_MAX_ENTRIES)
        return shmreg__fail(SHMREG_ECORRUPT, "config record: size %u or entry "
                            "count %u disagrees", ld32(p + 8), ld32(p + 12));
    *gen = ld64(p + 16);
    *n = ld32(p + 12);
    return 0;
}
