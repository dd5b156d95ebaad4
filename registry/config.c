/*
 * config.c — named, versioned configs in LMDB, read in place by workers.
 *
 * What it does. A registry keeps its configuration in an LMDB environment
 * (by default `config/` inside the registry directory). Each config is ONE
 * record of the LMDB database "configs", keyed by the config's name; its
 * value is a self-describing document laid out so that a reader can point
 * into it: a worker opens a *view* (one LMDB read transaction), and every
 * string the view hands out — codecs, the music-on-hold path, SDP
 * attributes, application values — is a {ptr, len} into LMDB's read-only
 * map. Nothing is copied; the pointers stay valid until the view is
 * released, because LMDB never touches the pages of a snapshot that a read
 * transaction still holds (MVCC). A writer replaces the whole record in
 * one write transaction, so a view is always entirely one version.
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
 * (MDB_RESERVE). Nothing read from a record is trusted: opening a view
 * walks the whole record once and checks every length, offset, type and
 * terminating NUL (a corrupt record is SHMREG_ECORRUPT, never a wild
 * read); after that the accessors index validated tables.
 *
 * Generations. The database "meta" holds one u64, the registry's config
 * generation, bumped in the same write transaction as every change, and
 * each record carries the generation of the write that stored it. After
 * commit the writer stores the new generation into the word mirrored in
 * the segment header (atomic max, release), so "changed since G?" is one
 * atomic load, without an LMDB transaction. A writer killed between its
 * commit and that store leaves the mirror behind; it is caught up (max
 * again) whenever any process opens the environment, writes, or opens a
 * view whose snapshot is newer than the mirror. Each committed write also
 * publishes SHMREG_EV_CONFIG_CHANGED with its generation on the event
 * ring, for workers that would rather wait than check.
 *
 * LMDB across processes, and the choices made:
 *  - One MDB_env per process (per environment), opened lazily by the first
 *    config call of a handle, shared by all handles of the process through
 *    a refcounted table. LMDB forbids opening an environment twice in one
 *    process: its reader-liveness locks are POSIX fcntl locks, which the
 *    close() of any descriptor of the lock file would drop, after which
 *    other processes' mdb_reader_check() would take our live readers for
 *    dead. For the same reason this file never opens and closes an LMDB
 *    file while the process has the environment open.
 *  - After fork, a child never touches the parent's MDB_env (LMDB's rule):
 *    table entries are tagged with the pid that opened them, and
 *    shmreg__config_close() in a child only frees memory.
 *  - MDB_NOTLS: read transactions belong to views, not threads. A handle
 *    may move between threads and hold several views, and several handles
 *    of one process share the env; without NOTLS a thread could have only
 *    one read transaction per env. Each handle has SHMREG_CONFIG_MAX_VIEWS
 *    view slots; a slot's transaction is created once and then only
 *    mdb_txn_reset()/mdb_txn_renew()ed, which allocates nothing and keeps
 *    the reader slot. Hence maxreaders = max_handles * MAX_VIEWS + 8.
 *  - Map size: explicit, identical in every process. It is chosen once
 *    (shmreg_config_setup(), or the default at the first config call) and
 *    recorded with the environment's directory in `config.settings` in the
 *    registry directory; every process reads it from there. LMDB's own copy
 *    in the meta page is not used because a process that opens the env
 *    before the first commit, or one that sets a different size, would
 *    disagree with it silently. A full map is SHMREG_EFULL, nothing written.
 *  - Durability: statfs() on the environment's directory. On tmpfs/ramfs
 *    (the default, under /dev/shm) MDB_NOSYNC|MDB_NOMETASYNC: fsync is
 *    meaningless there, and a killed process cannot lose a committed write
 *    anyway (LMDB writes data pages before the meta page, and the page cache
 *    outlives the process); what they would protect against, an OS crash,
 *    wipes tmpfs entirely. On any other filesystem (a directory on disk
 *    given to shmreg_config_setup(), for configs that survive reboot)
 *    LMDB's full durability: sync at every commit.
 *  - Crashed readers leave their reader slots behind: mdb_reader_check() at
 *    every env open, and again when a begin fails with MDB_READERS_FULL.
 *    A writer killed mid-transaction leaves LMDB's robust writer mutex,
 *    which the next writer recovers; its uncommitted pages are never seen.
 *  - No MDB_WRITEMAP: readers' pages are then never written in place, and
 *    a stray write in the process cannot scribble on the database.
 *
 * Files are created by this file before LMDB opens them, so they get the
 * registry's mode and group exactly and are checked to be ours and not
 * symlinks (LMDB opens without O_NOFOLLOW). The parser and the dumper live
 * in config_text.c and use only the public API below.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "shmreg.h"

/* ---------------------------------------------------------------- record format */

#define REC_MAGIC 0x31435253u /* "SRC1" */
#define REC_VERSION 1u
#define REC_HDR 40u
#define ENT_HDR 8u
#define SETTINGS_FILE "config.settings"
#define SETTINGS_MAGIC "shmreg-config-settings 1\n"
#define MAXREADERS_MARGIN 8u

static inline uint32_t ld32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t ld64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void st16(void *p, uint16_t v) { memcpy(p, &v, 2); }
static inline void st32(void *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st64(void *p, uint64_t v) { memcpy(p, &v, 8); }

/* One entry, located and bounds-checked by ent_read(). */
struct ent {
    unsigned type;
    const char *key;
    uint32_t klen;
    const unsigned char *val;
    uint32_t vlen;
    uint32_t next;   /* offset just past the entry */
};

static int ent_read(const unsigned char *base, uint32_t len, uint32_t off,
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

/* Check a value's payload completely and describe it in *out. Everything an
 * accessor later dereferences is proven in bounds here. */
static int val_decode(unsigned type, const unsigned char *p, uint32_t n,
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

static int name_check(const char *name, size_t *len)
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

static const struct media_key {
    const char *name;
    unsigned type;
    uint32_t bit;
    int64_t lo, hi;
} media_keys[] = {
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
#define MEDIA_DEF_RTP_MIN 10000
#define MEDIA_DEF_RTP_MAX 20000
#define MEDIA_DEF_PTIME 20
#define MAX_CODEC 64u

static const char *type_name(unsigned t)
{
    static const char *const names[] = { "?", "string", "integer", "boolean",
                                         "list", "pairs" };
    return t < 6 ? names[t] : "?";
}

/* The media key `name` (the part after "media."), or NULL. */
static const struct media_key *media_find(const char *name, size_t len)
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
                                "strings, not %s", key, type_name(t));
        *sdp_attr = 1;
        return 0;
    }
    if (dot == 5 && !memcmp(key, "media", 5)) {
        *mk = media_find(key + 6, *klen - 6);
        if (!*mk)
            return shmreg__fail(SHMREG_EINVAL, "unknown media key '%s' (known: "
                                "codecs, rtp_port_min, rtp_port_max, ptime, "
                                "max_bandwidth, moh_path, dtmf, "
                                "echo_cancellation, noise_suppression, agc, "
                                "quality_monitoring)", key);
        if ((*mk)->type != t)
            return shmreg__fail(SHMREG_EINVAL, "%s is a %s, not a %s", key,
                                type_name((*mk)->type), type_name(t));
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
        (rc = val_decode(SHMREG_CONFIG_PAIRS, doc->e[at].val, doc->e[at].vlen, &v)))
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
    return val_decode(doc->e[at].type, doc->e[at].val, doc->e[at].vlen, out);
}

int shmreg_config_doc_next(const shmreg_config_doc *doc, uint32_t *cursor,
                           shmreg_str *key, shmreg_config_value *out)
{
    if (!doc || !cursor || !key || !out)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    if (*cursor >= doc->n)
        return shmreg__fail(SHMREG_ENOENT, "end of config");
    const struct dent *e = &doc->e[*cursor];
    int rc = val_decode(e->type, e->val, e->vlen, out);
    if (rc)
        return rc;
    key->ptr = e->key;
    key->len = e->klen;
    (*cursor)++;
    return 0;
}

/* Rules between fields, checked before any write: the RTP range with
 * defaults for an unset bound. */
static int doc_check(const shmreg_config_doc *doc)
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

/* Rebuild a document from a stored record (for read-modify-write). */
static int doc_from_record(const unsigned char *rec, uint32_t len,
                           shmreg_config_doc **out)
{
    shmreg_config_doc *doc = NULL;
    int rc = shmreg_config_doc_new(&doc);
    if (rc)
        return rc;
    for (uint32_t off = REC_HDR; off < len && !rc;) {
        struct ent e;
        shmreg_config_value v;
        if ((rc = ent_read(rec, len, off, &e)) ||
            (rc = val_decode(e.type, e.val, e.vlen, &v)))
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

static uint64_t doc_size(const shmreg_config_doc *doc)
{
    uint64_t n = REC_HDR;
    for (uint32_t i = 0; i < doc->n; i++)
        n += ENT_HDR + doc->e[i].klen + 1 + doc->e[i].vlen;
    return n;
}

static void doc_encode(const shmreg_config_doc *doc, unsigned char *p,
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

/* Check a record's header; *gen and *n get its generation and entry count. */
static int rec_header(const unsigned char *p, size_t len, uint64_t *gen,
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

/* ---------------------------------------------------------------- process-wide envs */

struct env_entry {
    struct env_entry *next;
    pid_t pid;            /* the process that opened it: never used elsewhere */
    dev_t dev;
    ino_t ino;
    unsigned refs;
    MDB_env *env;
    MDB_dbi dbi_cfg, dbi_meta;
};

static pthread_mutex_t env_mu = PTHREAD_MUTEX_INITIALIZER;
static struct env_entry *env_list;

static int mdb_err(int mrc, const char *what)
{
    int code;
    switch (mrc) {
    case MDB_MAP_FULL: case MDB_TXN_FULL: case MDB_READERS_FULL:
    case MDB_DBS_FULL: case MDB_CURSOR_FULL: case MDB_PAGE_FULL:
        code = SHMREG_EFULL;
        break;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
    case MDB_PANIC: case MDB_INCOMPATIBLE: case MDB_BAD_DBI:
        code = SHMREG_ECORRUPT;
        break;
    case MDB_VERSION_MISMATCH:
        code = SHMREG_EVERSION;
        break;
    case ENOMEM:
        code = SHMREG_ENOMEM;
        break;
    case EACCES: case EPERM:
        code = SHMREG_EPERM;
        break;
    default:
        code = SHMREG_ESYS;
    }
    return shmreg__fail(code, "%s: %s", what, mdb_strerror(mrc));
}

static int sys_err(const char *what, const char *path)
{
    int e = errno;
    int code = (e == ELOOP || e == EACCES || e == EPERM) ? SHMREG_EPERM
             : e == ENOMEM ? SHMREG_ENOMEM : SHMREG_ESYS;
    return shmreg__fail(code, "%s %s: %s", what, path, strerror(e));
}

static mode_t dir_mode(mode_t fmode)
{
    return fmode | ((fmode & 0444) >> 2);   /* 0600 -> 0700, 0660 -> 0770 */
}

static int check_owned(const char *path, const struct stat *st, int want_dir)
{
    if (S_ISLNK(st->st_mode))
        return shmreg__fail(SHMREG_EPERM, "%s is a symlink", path);
    if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        return shmreg__fail(SHMREG_EPERM, "%s is not a %s", path,
                            want_dir ? "directory" : "regular file");
    if (st->st_uid != geteuid())
        return shmreg__fail(SHMREG_EPERM, "%s is owned by uid %u, not %u", path,
                            (unsigned)st->st_uid, (unsigned)geteuid());
    return 0;
}

static int ensure_dir(const char *path, mode_t fmode, gid_t gid)
{
    struct stat st;
    if (mkdir(path, dir_mode(fmode)) == 0) {
        if (chmod(path, dir_mode(fmode)) != 0 ||
            (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0))
            return sys_err("chmod/chown", path);
    } else if (errno != EEXIST) {
        return sys_err("mkdir", path);
    }
    if (lstat(path, &st) != 0)
        return sys_err("lstat", path);
    return check_owned(path, &st, 1);
}

/* Create an LMDB file ourselves (exact mode and group, O_NOFOLLOW) or
 * check the existing one. Only called while this process does not have
 * the environment open (closing a descriptor of lock.mdb would drop
 * LMDB's fcntl locks). LMDB takes an empty data.mdb for a new database. */
static int ensure_file(const char *dir, const char *name, mode_t fmode, gid_t gid)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return shmreg__fail(SHMREG_EINVAL, "path too long: %s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fmode);
    if (fd >= 0) {
        int bad = fchmod(fd, fmode) != 0 ||
                  (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0);
        close(fd);
        return bad ? sys_err("chmod/chown", path) : 0;
    }
    if (errno != EEXIST)
        return sys_err("create", path);
    if (lstat(path, &st) != 0)
        return sys_err("lstat", path);
    return check_owned(path, &st, 0);
}

/* Open the named databases; create them only when absent, so that workers
 * opening the env do not take LMDB's writer lock. */
static int env_open_dbis(struct env_entry *ee)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(ee->env, NULL, MDB_RDONLY, &txn);
    if (mrc == MDB_READERS_FULL) {
        int dead;
        mdb_reader_check(ee->env, &dead);
        mrc = mdb_txn_begin(ee->env, NULL, MDB_RDONLY, &txn);
    }
    if (mrc)
        return mdb_err(mrc, "LMDB read transaction");
    if (!(mrc = mdb_dbi_open(txn, "configs", 0, &ee->dbi_cfg)) &&
        !(mrc = mdb_dbi_open(txn, "meta", 0, &ee->dbi_meta)))
        return (mrc = mdb_txn_commit(txn)) ? mdb_err(mrc, "LMDB open databases") : 0;
    mdb_txn_abort(txn);
    if (mrc != MDB_NOTFOUND)
        return mdb_err(mrc, "LMDB open databases");
    if ((mrc = mdb_txn_begin(ee->env, NULL, 0, &txn)))
        return mdb_err(mrc, "LMDB write transaction");
    if ((mrc = mdb_dbi_open(txn, "configs", MDB_CREATE, &ee->dbi_cfg)) ||
        (mrc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ee->dbi_meta))) {
        mdb_txn_abort(txn);
        return mdb_err(mrc, "LMDB create databases");
    }
    return (mrc = mdb_txn_commit(txn)) ? mdb_err(mrc, "LMDB create databases") : 0;
}

/* Find or open the process's environment in `dir`. */
static int env_acquire(shmreg *h, const char *dir, uint64_t map_bytes,
                       struct env_entry **out)
{
    struct stat st;
    mode_t fmode = shmreg__file_mode(h);
    gid_t gid = shmreg__file_gid(h);
    int rc = ensure_dir(dir, fmode, gid);
    if (rc)
        return rc;
    if (stat(dir, &st) != 0)
        return sys_err("stat", dir);

    pthread_mutex_lock(&env_mu);
    pid_t me = getpid();
    for (struct env_entry *e = env_list; e; e = e->next)
        if (e->pid == me && e->dev == st.st_dev && e->ino == st.st_ino && e->refs) {
            e->refs++;
            pthread_mutex_unlock(&env_mu);
            *out = e;
            return 0;
        }

    struct env_entry *ee = calloc(1, sizeof *ee);
    struct statfs sf;
    int mrc = 0;
    if (!ee) {
        rc = shmreg__fail(SHMREG_ENOMEM, "config: out of memory");
        goto out;
    }
    if ((rc = ensure_file(dir, "data.mdb", fmode, gid)) ||
        (rc = ensure_file(dir, "lock.mdb", fmode, gid)))
        goto out;
    if (statfs(dir, &sf) != 0) {
        rc = sys_err("statfs", dir);
        goto out;
    }
    int volatile_fs = sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
    unsigned flags = MDB_NOTLS | (volatile_fs ? MDB_NOSYNC | MDB_NOMETASYNC : 0);
    unsigned readers = shmreg__max_handles(h) * SHMREG_CONFIG_MAX_VIEWS +
                       MAXREADERS_MARGIN;
    if ((mrc = mdb_env_create(&ee->env)) ||
        (mrc = mdb_env_set_maxreaders(ee->env, readers)) ||
        (mrc = mdb_env_set_maxdbs(ee->env, 2)) ||
        (mrc = mdb_env_set_mapsize(ee->env, (size_t)map_bytes)) ||
        (mrc = mdb_env_open(ee->env, dir, flags, fmode))) {
        rc = mdb_err(mrc, "LMDB open");
        goto out;
    }
    int dead = 0;
    mdb_reader_check(ee->env, &dead);   /* slots of crashed processes */
    if ((rc = env_open_dbis(ee)))
        goto out;
    ee->pid = me;
    ee->dev = st.st_dev;
    ee->ino = st.st_ino;
    ee->refs = 1;
    ee->next = env_list;
    env_list = ee;
out:
    if (rc && ee) {
        if (ee->env)
            mdb_env_close(ee->env);
        free(ee);
        ee = NULL;
    }
    pthread_mutex_unlock(&env_mu);
    *out = ee;
    return rc;
}

static void env_release(struct env_entry *ee)
{
    pthread_mutex_lock(&env_mu);
    if (ee->pid == getpid() && ee->refs && --ee->refs == 0) {
        for (struct env_entry **pp = &env_list; *pp; pp = &(*pp)->next)
            if (*pp == ee) {
                *pp = ee->next;
                break;
            }
        mdb_env_close(ee->env);
        free(ee);
    }
    pthread_mutex_unlock(&env_mu);
}

/* ---------------------------------------------------------------- settings file */

struct settings {
    uint64_t map_bytes;
    char dir[PATH_MAX];   /* "" : <registry>/config */
};

static int settings_parse(const char *path, const char *t, size_t n,
                          struct settings *s)
{
    size_t m = strlen(SETTINGS_MAGIC);
    const char *p = t + m, *end = t + n;
    char *e;
    if (n < m || memcmp(t, SETTINGS_MAGIC, m) || end - p < 11 ||
        memcmp(p, "map_bytes ", 10) || p[10] < '1' || p[10] > '9')
        goto bad;
    errno = 0;
    unsigned long long v = strtoull(p + 10, &e, 10);
    if (errno || e >= end || *e != '\n')
        goto bad;
    s->map_bytes = v;
    s->dir[0] = 0;
    p = e + 1;
    if (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t dl = nl ? (size_t)(nl - p) - 4 : 0;
        if (!nl || nl + 1 != end || (size_t)(nl - p) < 5 || memcmp(p, "dir /", 5) ||
            dl >= sizeof s->dir || memchr(p, 0, (size_t)(nl - p)))
            goto bad;
        memcpy(s->dir, p + 4, dl);
        s->dir[dl] = 0;
    }
    if (s->map_bytes < SHMREG_CONFIG_MAP_MIN || s->map_bytes > SHMREG_CONFIG_MAP_MAX)
        goto bad;
    return 0;
bad:
    return shmreg__fail(SHMREG_ECORRUPT, "%s is not a shmreg config settings "
                        "file", path);
}

static int settings_read(const char *path, struct settings *s)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SHMREG_ENOENT : sys_err("open", path);
    char buf[PATH_MAX + 128];
    struct stat st;
    ssize_t n = -1;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = sys_err("fstat", path);
    else if (!(rc = check_owned(path, &st, 0)))
        n = read(fd, buf, sizeof buf);
    close(fd);
    if (rc)
        return rc;
    if (n < 0)
        return sys_err("read", path);
    return settings_parse(path, buf, (size_t)n, s);
}

/* Read the recorded settings or record `want`. link() makes recording
 * atomic and first-wins: a racing process reads the winner's file. */
static int settings_get(shmreg *h, const struct settings *want, struct settings *out)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    const char *reg = shmreg_path(h);
    static _Atomic unsigned seq;
    if (snprintf(path, sizeof path, "%s/" SETTINGS_FILE, reg) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/" SETTINGS_FILE ".%d.%u", reg, (int)getpid(),
                 atomic_fetch_add(&seq, 1)) >= (int)sizeof tmp)
        return shmreg__fail(SHMREG_EINVAL, "registry path too long");
    for (int tries = 0; tries < 5; tries++) {
        int rc = settings_read(path, out);
        if (rc != SHMREG_ENOENT)
            return rc;
        char text[PATH_MAX + 128];
        int len = snprintf(text, sizeof text, SETTINGS_MAGIC "map_bytes %llu\n",
                           (unsigned long long)want->map_bytes);
        if (want->dir[0])
            len += snprintf(text + len, sizeof text - (size_t)len, "dir %s\n",
                            want->dir);
        mode_t fmode = shmreg__file_mode(h);
        gid_t gid = shmreg__file_gid(h);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      fmode);
        if (fd < 0)
            return sys_err("create", tmp);
        int bad = fchmod(fd, fmode) != 0 ||
                  (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0) ||
                  write(fd, text, (size_t)len) != len || fsync(fd) != 0;
        close(fd);
        if (bad) {
            rc = sys_err("write", tmp);
            unlink(tmp);
            return rc;
        }
        int linked = link(tmp, path);
        int e = errno;
        unlink(tmp);
        if (linked == 0) {
            *out = *want;
            return 0;
        }
        if (e != EEXIST) {
            errno = e;
            return sys_err("link", path);
        }
    }
    return shmreg__fail(SHMREG_ESYS, "%s keeps appearing and vanishing", path);
}

/* ---------------------------------------------------------------- per-handle state */

struct shmreg_config_view {
    struct cfg_state *st;
    MDB_txn *txn;            /* NULL until first use; reset while idle */
    int busy;
    const unsigned char *rec;
    uint32_t len, nentries;
    uint64_t gen, snap_gen, written_ns;
    shmreg_config_media media;
    shmreg_config_value codecs, attrs;   /* type 0 when absent */
    char name[SHMREG_CONFIG_MAX_NAME + 1];
};

struct cfg_state {
    shmreg *h;
    pid_t pid;
    struct env_entry *ee;
    _Atomic uint64_t *word;
    struct settings set;
    shmreg_config_view slot[SHMREG_CONFIG_MAX_VIEWS];
    struct cfg_state *parked;   /* next inherited state (see shmreg__config_close) */
};

/* States a forked child inherited and closed: the parent's LMDB
 * transactions hang off them and must not be touched here, so they are
 * kept (reachable, not leaked) for the life of the child. */
static struct cfg_state *parked_states;

static void gen_mirror(_Atomic uint64_t *w, uint64_t g)
{
    uint64_t cur = atomic_load_explicit(w, memory_order_acquire);
    while (cur < g && !atomic_compare_exchange_weak_explicit(
                          w, &cur, g, memory_order_release, memory_order_acquire))
        ;
}

/* LMDB 0.9 copies the meta page of its snapshot after publishing its
 * reader slot; a writer two commits ahead may be rewriting that very
 * meta page at the same moment, and the reader then starts from a newer
 * (or mixed) root than its transaction ID says (libmdbx re-checks for this
 * race, ITS#7970; LMDB 0.9 does not). Every config write stores its own
 * transaction ID, so a snapshot showing an ID beyond its own is such a
 * copy: reset and take the snapshot again. Seen in the 4-reader test as a
 * view older than the previous one. */
static int snapshot_sane(shmreg_config_view *v)
{
    MDB_val k = { 3, "txn" }, d;
    if (mdb_get(v->txn, v->st->ee->dbi_meta, &k, &d) != 0 || d.mv_size != 8)
        return 1; /* no write yet (or an older environment): nothing to compare */
    return ld64(d.mv_data) <= (uint64_t)mdb_txn_id(v->txn);
}

static int slot_begin_once(shmreg_config_view *v);

static int slot_begin(shmreg_config_view *v)
{
    for (int tries = 0;; tries++) {
        int rc = slot_begin_once(v);
        if (rc || snapshot_sane(v) || tries == 100)
            return rc;
        mdb_txn_reset(v->txn);
    }
}

static int slot_begin_once(shmreg_config_view *v)
{
    MDB_env *env = v->st->ee->env;
    if (v->txn) {
        if (mdb_txn_renew(v->txn) == 0)
            return 0;
        /* e.g. MDB_BAD_RSLOT: our reader slot was taken from us */
        mdb_txn_abort(v->txn);
        v->txn = NULL;
    }
    for (int tries = 0;; tries++) {
        int mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &v->txn);
        if (mrc == 0)
            return 0;
        v->txn = NULL;
        if (mrc != MDB_READERS_FULL || tries > 0)
            return mdb_err(mrc, "LMDB read transaction");
        int dead = 0;
        mdb_reader_check(env, &dead);
    }
}

static void slot_end(shmreg_config_view *v)
{
    mdb_txn_reset(v->txn);
    v->busy = 0;
}

static shmreg_config_view *slot_take(struct cfg_state *st)
{
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        if (!st->slot[i].busy) {
            st->slot[i].busy = 1;
            return &st->slot[i];
        }
    return NULL;
}

/* The registry generation at the snapshot of `txn`. */
static int meta_gen(struct cfg_state *st, MDB_txn *txn, uint64_t *gen)
{
    MDB_val k = { 3, "gen" }, d;
    int mrc = mdb_get(txn, st->ee->dbi_meta, &k, &d);
    if (mrc == MDB_NOTFOUND) {
        *gen = 0;
        return 0;
    }
    if (mrc)
        return mdb_err(mrc, "LMDB read generation");
    if (d.mv_size != 8)
        return shmreg__fail(SHMREG_ECORRUPT, "config generation record has %zu "
                            "bytes", d.mv_size);
    *gen = ld64(d.mv_data);
    return 0;
}

static int settings_from(const shmreg_config_options *opt, struct settings *s)
{
    uint64_t m = opt && opt->map_bytes ? opt->map_bytes : SHMREG_CONFIG_MAP_DEFAULT;
    if (m < SHMREG_CONFIG_MAP_MIN || m > SHMREG_CONFIG_MAP_MAX)
        return shmreg__fail(SHMREG_EINVAL, "map_bytes must be %llu..%llu",
                            (unsigned long long)SHMREG_CONFIG_MAP_MIN,
                            (unsigned long long)SHMREG_CONFIG_MAP_MAX);
    s->map_bytes = (m + 4095) & ~(uint64_t)4095;
    s->dir[0] = 0;
    if (opt && opt->dir) {
        size_t n = strlen(opt->dir);
        if (opt->dir[0] != '/' || n >= sizeof s->dir - 16 || strchr(opt->dir, '\n'))
            return shmreg__fail(SHMREG_EINVAL, "config dir must be an absolute "
                                "path shorter than %zu bytes", sizeof s->dir - 16);
        memcpy(s->dir, opt->dir, n + 1);
        while (n > 1 && s->dir[n - 1] == '/')   /* one spelling per directory */
            s->dir[--n] = 0;
    }
    return 0;
}

static int settings_same(const struct settings *a, const struct settings *b)
{
    if (a->map_bytes != b->map_bytes)
        return shmreg__fail(SHMREG_EEXIST, "configs already set up with "
                            "map_bytes %llu (asked %llu)",
                            (unsigned long long)a->map_bytes,
                            (unsigned long long)b->map_bytes);
    if (strcmp(a->dir, b->dir))
        return shmreg__fail(SHMREG_EEXIST, "configs already set up in %s "
                            "(asked %s)", a->dir[0] ? a->dir : "the registry",
                            b->dir[0] ? b->dir : "the registry");
    return 0;
}

/* The handle's config state, opening the environment on first use.
 * `want`: explicit settings from shmreg_config_setup(), or NULL. */
static int cfg_get(shmreg *h, const struct settings *want, struct cfg_state **out)
{
    void **sp = shmreg__config_state(h);
    struct cfg_state *st = *sp;
    if (st) {
        *out = st;
        return want ? settings_same(&st->set, want) : 0;
    }
    struct settings def;
    int rc;
    if (!want) {
        if ((rc = settings_from(NULL, &def)))
            return rc;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return shmreg__fail(SHMREG_ENOMEM, "config: out of memory");
    if ((rc = settings_get(h, want ? want : &def, &st->set)) ||
        (want && (rc = settings_same(&st->set, want)))) {
        free(st);
        return rc;
    }
    char dir[PATH_MAX];
    if (st->set.dir[0])
        snprintf(dir, sizeof dir, "%s", st->set.dir);
    else if (snprintf(dir, sizeof dir, "%s/config", shmreg_path(h)) >= (int)sizeof dir) {
        free(st);
        return shmreg__fail(SHMREG_EINVAL, "registry path too long");
    }
    if ((rc = env_acquire(h, dir, st->set.map_bytes, &st->ee))) {
        free(st);
        return rc;
    }
    st->h = h;
    st->pid = getpid();
    st->word = shmreg__config_gen_word(h);
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        st->slot[i].st = st;
    *sp = st;

    /* Catch the mirror up with LMDB: a writer may have died between its
     * commit and its mirror store, or the registry may be new while the
     * configs (on disk) are not. */
    shmreg_config_view *v = slot_take(st);
    uint64_t g = 0;
    if (!(rc = slot_begin(v))) {
        rc = meta_gen(st, v->txn, &g);
        slot_end(v);
    }
    v->busy = 0;
    if (rc == 0)
        gen_mirror(st->word, g);
    *out = st;
    return rc;
}

void shmreg__config_close(shmreg *h)
{
    void **sp = shmreg__config_state(h);
    struct cfg_state *st = *sp;
    if (!st)
        return;
    *sp = NULL;
    /* In a forked child the transactions and the env are the parent's:
     * LMDB must not be called on them here, nor their memory freed
     * piecemeal; the state is parked instead. */
    if (shmreg__forked(h) || st->pid != getpid()) {
        st->parked = parked_states;
        parked_states = st;
        return;
    }
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        if (st->slot[i].txn)
            mdb_txn_abort(st->slot[i].txn);   /* frees the reader slot */
    env_release(st->ee);
    free(st);
}

int shmreg_config_setup(shmreg *h, const shmreg_config_options *opt)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    struct settings want;
    struct cfg_state *st;
    if ((rc = settings_from(opt, &want)))
        return rc;
    return cfg_get(h, &want, &st);
}

int shmreg_config_changed(shmreg *h, uint64_t since, int *changed)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!changed)
        return shmreg__fail(SHMREG_EINVAL, "changed is NULL");
    *changed = atomic_load_explicit(shmreg__config_gen_word(h), memory_order_acquire) > since;
    return 0;
}

/* ---------------------------------------------------------------- views */

/* Walk a record once: check everything, and cache the media fields. */
static int view_fill(shmreg_config_view *v, const unsigned char *rec, size_t len)
{
    uint64_t gen;
    uint32_t n;
    int rc = rec_header(rec, len, &gen, &n);
    if (rc)
        return rc;
    shmreg_config_media *m = &v->media;
    memset(m, 0, sizeof *m);
    m->rtp_port_min = MEDIA_DEF_RTP_MIN;
    m->rtp_port_max = MEDIA_DEF_RTP_MAX;
    m->ptime_ms = MEDIA_DEF_PTIME;
    m->moh_path.ptr = "";
    memset(&v->codecs, 0, sizeof v->codecs);
    memset(&v->attrs, 0, sizeof v->attrs);
    uint32_t count = 0, off = REC_HDR;
    while (off < len) {
        struct ent e;
        shmreg_config_value val;
        if ((rc = ent_read(rec, (uint32_t)len, off, &e)) ||
            (rc = val_decode(e.type, e.val, e.vlen, &val)))
            return rc;
        off = e.next;
        count++;
        if (e.type == SHMREG_CONFIG_PAIRS) {
            if (e.klen != 3 || memcmp(e.key, "sdp", 3))
                return shmreg__fail(SHMREG_ECORRUPT, "pairs stored under %s",
                                    e.key);
            v->attrs = val;
            m->nattrs = val.count;
            m->set |= SHMREG_MEDIA_SDP_ATTRS;
            continue;
        }
        if (e.klen < 7 || memcmp(e.key, "media.", 6))
            continue;
        const struct media_key *mk = media_find(e.key + 6, e.klen - 6);
        if (!mk || mk->type != e.type ||
            (e.type == SHMREG_CONFIG_INT && (val.num < mk->lo || val.num > mk->hi)))
            return shmreg__fail(SHMREG_ECORRUPT, "config key %s: unknown, wrong "
                                "type or out of range", e.key);
        m->set |= mk->bit;
        switch (mk->bit) {
        case SHMREG_MEDIA_CODECS:
            v->codecs = val;
            m->ncodecs = val.count;
            break;
        case SHMREG_MEDIA_RTP_PORT_MIN: m->rtp_port_min = (uint16_t)val.num; break;
        case SHMREG_MEDIA_RTP_PORT_MAX: m->rtp_port_max = (uint16_t)val.num; break;
        case SHMREG_MEDIA_PTIME: m->ptime_ms = (uint32_t)val.num; break;
        case SHMREG_MEDIA_MAX_BANDWIDTH: m->max_bandwidth_kbps = (uint32_t)val.num; break;
        case SHMREG_MEDIA_MOH_PATH: m->moh_path = val.str; break;
        default:
            if (val.num)
                m->flags |= mk->bit;
        }
    }
    if (count != n)
        return shmreg__fail(SHMREG_ECORRUPT, "config record: %u entries, header "
                            "says %u", count, n);
    v->rec = rec;
    v->len = (uint32_t)len;
    v->nentries = n;
    v->gen = gen;
    v->written_ns = ld64(rec + 24);
    return 0;
}

int shmreg_config_open_view(shmreg *h, const char *name, shmreg_config_view **out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    size_t nlen;
    struct cfg_state *st;
    if (!out)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if ((rc = name_check(name, &nlen)) || (rc = cfg_get(h, NULL, &st)))
        return rc;
    shmreg_config_view *v = slot_take(st);
    if (!v)
        return shmreg__fail(SHMREG_EFULL, "%u config views already open on this "
                            "handle", SHMREG_CONFIG_MAX_VIEWS);
    if ((rc = slot_begin(v))) {
        v->busy = 0;
        return rc;
    }
    MDB_val k = { nlen, (void *)name }, d;
    if (!(rc = meta_gen(st, v->txn, &v->snap_gen))) {
        int mrc = mdb_get(v->txn, st->ee->dbi_cfg, &k, &d);
        if (mrc == MDB_NOTFOUND)
            rc = shmreg__fail(SHMREG_ENOENT, "no config %s", name);
        else if (mrc)
            rc = mdb_err(mrc, "LMDB get");
        else
            rc = view_fill(v, d.mv_data, d.mv_size);
    }
    if (rc) {
        slot_end(v);
        return rc;
    }
    memcpy(v->name, name, nlen + 1);
    gen_mirror(st->word, v->snap_gen);
    *out = v;
    return 0;
}

int shmreg_config_release(shmreg_config_view *v)
{
    if (!v)
        return 0;
    int rc = shmreg__usable(v->st->h);
    if (rc)
        return rc;
    if (v->busy)
        slot_end(v);
    return 0;
}

int shmreg_config_stale(const shmreg_config_view *v)
{
    if (!v || !v->busy)
        return 1;
    return atomic_load_explicit(v->st->word, memory_order_acquire) > v->snap_gen;
}

int shmreg_config_refresh(shmreg *h, const char *name, shmreg_config_view **v,
                          int *refreshed)
{
    if (refreshed)
        *refreshed = 0;
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!v)
        return shmreg__fail(SHMREG_EINVAL, "v is NULL");
    shmreg_config_view *old = *v, *nv;
    if (old && name && old->busy && old->st->h == h && !strcmp(old->name, name) &&
        !shmreg_config_stale(old))
        return 0;
    if ((rc = shmreg_config_open_view(h, name, &nv)))
        return rc;
    if (old)
        shmreg_config_release(old);
    *v = nv;
    if (refreshed)
        *refreshed = 1;
    return 0;
}

#define VIEW_CHECK(v)                                                      \
    do {                                                                   \
        if (!(v) || !(v)->busy)                                            \
            return shmreg__fail(SHMREG_EINVAL, "view is NULL or released"); \
    } while (0)

int shmreg_config_view_info(const shmreg_config_view *v, shmreg_config_info *out)
{
    VIEW_CHECK(v);
    if (!out)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    memset(out, 0, sizeof *out);
    out->gen = v->gen;
    out->snapshot_gen = v->snap_gen;
    out->written_ns = v->written_ns;
    out->entries = v->nentries;
    out->bytes = v->len;
    return 0;
}

int shmreg_config_media_get(const shmreg_config_view *v, shmreg_config_media *out)
{
    VIEW_CHECK(v);
    if (!out)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    *out = v->media;
    return 0;
}

int shmreg_config_codec(const shmreg_config_view *v, uint32_t i, shmreg_str *out)
{
    VIEW_CHECK(v);
    if (!out)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if (i >= v->media.ncodecs)
        return shmreg__fail(SHMREG_ENOENT, "no codec %u", i);
    return shmreg_config_item(&v->codecs, i, out);
}

int shmreg_config_attr(const shmreg_config_view *v, uint32_t i, shmreg_str *name,
                       shmreg_str *value)
{
    VIEW_CHECK(v);
    if (!name || !value)
        return shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if (i >= v->media.nattrs)
        return shmreg__fail(SHMREG_ENOENT, "no SDP attribute %u", i);
    return shmreg_config_pair(&v->attrs, i, name, value);
}

int shmreg_config_next(const shmreg_config_view *v, uint32_t *cursor,
                       shmreg_str *key, shmreg_config_value *out)
{
    VIEW_CHECK(v);
    if (!cursor || !key || !out)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    uint32_t off = *cursor ? *cursor : REC_HDR;
    if (off >= v->len)
        return shmreg__fail(SHMREG_ENOENT, "end of config");
    struct ent e;
    int rc;
    if (off < REC_HDR)
        return shmreg__fail(SHMREG_ECORRUPT, "bad cursor %u", off);
    if ((rc = ent_read(v->rec, v->len, off, &e)) ||
        (rc = val_decode(e.type, e.val, e.vlen, out)))
        return rc;
    key->ptr = e.key;
    key->len = e.klen;
    *cursor = e.next;
    return 0;
}

int shmreg_config_get(const shmreg_config_view *v, const char *key,
                      shmreg_config_value *out)
{
    VIEW_CHECK(v);
    if (!key || !out)
        return shmreg__fail(SHMREG_EINVAL, "NULL argument");
    size_t klen = strlen(key);
    for (uint32_t off = REC_HDR; off < v->len;) {
        struct ent e;
        int rc = ent_read(v->rec, v->len, off, &e);
        if (rc)
            return rc;
        if (e.klen == klen && memcmp(e.key, key, klen) == 0)
            return val_decode(e.type, e.val, e.vlen, out);
        off = e.next;
    }
    return shmreg__fail_copy(SHMREG_ENOENT, "no key ", key, klen);
}

static int get_typed(const shmreg_config_view *v, const char *key, int type,
                     shmreg_config_value *val)
{
    int rc = shmreg_config_get(v, key, val);
    if (rc == 0 && val->type != type)
        return shmreg__fail(SHMREG_EINVAL, "%s is a %s, not a %s", key,
                            type_name((unsigned)val->type), type_name((unsigned)type));
    return rc;
}

int shmreg_config_get_str(const shmreg_config_view *v, const char *key, shmreg_str *out)
{
    shmreg_config_value val;
    int rc = out ? get_typed(v, key, SHMREG_CONFIG_STR, &val)
                 : shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if (rc == 0)
        *out = val.str;
    return rc;
}

int shmreg_config_get_int(const shmreg_config_view *v, const char *key, int64_t *out)
{
    shmreg_config_value val;
    int rc = out ? get_typed(v, key, SHMREG_CONFIG_INT, &val)
                 : shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if (rc == 0)
        *out = val.num;
    return rc;
}

int shmreg_config_get_bool(const shmreg_config_view *v, const char *key, int *out)
{
    shmreg_config_value val;
    int rc = out ? get_typed(v, key, SHMREG_CONFIG_BOOL, &val)
                 : shmreg__fail(SHMREG_EINVAL, "out is NULL");
    if (rc == 0)
        *out = (int)val.num;
    return rc;
}

/* ---------------------------------------------------------------- writes */

/* What a write does inside its transaction, given the current record
 * (NULL if none). Returns 0 with the document to store in *doc_out (freed
 * afterwards when *owned), 1 for "delete the record", or an error (the
 * transaction is aborted). */
typedef int (*write_fn)(void *arg, const unsigned char *rec, size_t len,
                        const shmreg_config_doc **doc_out, int *owned);

static int write_txn(shmreg *h, const char *name, write_fn fn, void *arg)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    size_t nlen;
    struct cfg_state *st;
    if ((rc = name_check(name, &nlen)) || (rc = cfg_get(h, NULL, &st)))
        return rc;
    MDB_txn *txn;
    int mrc = mdb_txn_begin(st->ee->env, NULL, 0, &txn);
    if (mrc)
        return mdb_err(mrc, "LMDB write transaction");
    uint64_t gen;
    MDB_val k = { nlen, (void *)name }, d;
    const shmreg_config_doc *doc = NULL;
    int owned = 0;
    if ((rc = meta_gen(st, txn, &gen)))
        goto abort;
    gen++;
    mrc = mdb_get(txn, st->ee->dbi_cfg, &k, &d);
    if (mrc && mrc != MDB_NOTFOUND) {
        rc = mdb_err(mrc, "LMDB get");
        goto abort;
    }
    rc = fn(arg, mrc ? NULL : d.mv_data, mrc ? 0 : d.mv_size, &doc, &owned);
    if (rc < 0)
        goto abort;
    if (rc == 1) {
        if ((mrc = mdb_del(txn, st->ee->dbi_cfg, &k, NULL))) {
            rc = mrc == MDB_NOTFOUND ? shmreg__fail(SHMREG_ENOENT, "no config %s", name)
                                     : mdb_err(mrc, "LMDB delete");
            goto abort;
        }
    } else {
        uint64_t size = doc_size(doc);
        if ((rc = doc_check(doc)))
            goto abort;
        if (size > SHMREG_CONFIG_MAX_BYTES) {
            rc = shmreg__fail(SHMREG_EINVAL, "config %s would be %llu bytes "
                              "(limit %u)", name, (unsigned long long)size,
                              SHMREG_CONFIG_MAX_BYTES);
            goto abort;
        }
        d.mv_size = size;
        d.mv_data = NULL;
        if ((mrc = mdb_put(txn, st->ee->dbi_cfg, &k, &d, MDB_RESERVE))) {
            rc = mdb_err(mrc, "LMDB put");
            goto abort;
        }
        doc_encode(doc, d.mv_data, (uint32_t)size, gen);
    }
    unsigned char g8[8];
    st64(g8, gen);
    MDB_val gk = { 3, "gen" }, gd = { 8, g8 };
    unsigned char t8[8];
    st64(t8, (uint64_t)mdb_txn_id(txn));
    MDB_val tk = { 3, "txn" }, td = { 8, t8 };
    if ((mrc = mdb_put(txn, st->ee->dbi_meta, &gk, &gd, 0)) ||
        (mrc = mdb_put(txn, st->ee->dbi_meta, &tk, &td, 0))) {
        rc = mdb_err(mrc, "LMDB put generation");
        goto abort;
    }
    mrc = mdb_txn_commit(txn);   /* frees txn, even when it fails */
    if (owned)
        shmreg_config_doc_free((shmreg_config_doc *)doc);
    if (mrc)
        return mdb_err(mrc, "LMDB commit");
    gen_mirror(st->word, gen);
    shmreg__publish_config(h, gen);   /* after the mirror: a subscriber that
                                       * refreshes on the event sees gen */
    return 0;
abort:
    mdb_txn_abort(txn);
    if (owned)
        shmreg_config_doc_free((shmreg_config_doc *)doc);
    return rc;
}

static int put_fn(void *arg, const unsigned char *rec, size_t len,
                  const shmreg_config_doc **doc, int *owned)
{
    (void)rec;
    (void)len;
    *doc = arg;   /* the caller's: stored as is, not freed */
    *owned = 0;
    return 0;
}

int shmreg_config_put(shmreg *h, const char *name, const shmreg_config_doc *doc)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!doc)
        return shmreg__fail(SHMREG_EINVAL, "doc is NULL");
    return write_txn(h, name, put_fn, (void *)(uintptr_t)doc);
}

struct edit {
    const char *key, *text;   /* text NULL: unset */
};

static int edit_fn(void *arg, const unsigned char *rec, size_t len,
                   const shmreg_config_doc **out, int *owned)
{
    const struct edit *ed = arg;
    shmreg_config_doc *doc = NULL;
    int rc;
    uint64_t gen;
    uint32_t n;
    if (!rec && !ed->text)
        return shmreg__fail(SHMREG_ENOENT, "no such config");
    if (rec) {
        if ((rc = rec_header(rec, len, &gen, &n)) ||
            (rc = doc_from_record(rec, (uint32_t)len, &doc)))
            return rc;
    } else if ((rc = shmreg_config_doc_new(&doc))) {
        return rc;
    }
    rc = ed->text ? shmreg_config_doc_set_text(doc, ed->key, ed->text, strlen(ed->text))
                  : shmreg_config_doc_unset(doc, ed->key);
    if (rc) {
        shmreg_config_doc_free(doc);
        return rc;
    }
    *out = doc;
    *owned = 1;
    return 0;
}

int shmreg_config_set(shmreg *h, const char *name, const char *key,
                      const char *value_text)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!key || !value_text)
        return shmreg__fail(SHMREG_EINVAL, "key or value is NULL");
    struct edit ed = { key, value_text };
    return write_txn(h, name, edit_fn, &ed);
}

int shmreg_config_unset(shmreg *h, const char *name, const char *key)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!key)
        return shmreg__fail(SHMREG_EINVAL, "key is NULL");
    struct edit ed = { key, NULL };
    return write_txn(h, name, edit_fn, &ed);
}

static int delete_fn(void *arg, const unsigned char *rec, size_t len,
                     const shmreg_config_doc **doc, int *owned)
{
    (void)arg;
    (void)len;
    (void)doc;
    (void)owned;
    return rec ? 1 : shmreg__fail(SHMREG_ENOENT, "no such config");
}

int shmreg_config_delete(shmreg *h, const char *name)
{
    return write_txn(h, name, delete_fn, NULL);
}

int shmreg_config_list(shmreg *h, int (*fn)(void *arg, shmreg_str name, uint64_t gen),
                       void *arg)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    struct cfg_state *st;
    if (!fn)
        return shmreg__fail(SHMREG_EINVAL, "fn is NULL");
    if ((rc = cfg_get(h, NULL, &st)))
        return rc;
    shmreg_config_view *v = slot_take(st);
    if (!v)
        return shmreg__fail(SHMREG_EFULL, "%u config views already open on this "
                            "handle", SHMREG_CONFIG_MAX_VIEWS);
    MDB_cursor *cur = NULL;
    int mrc;
    if ((rc = slot_begin(v))) {
        v->busy = 0;
        return rc;
    }
    if ((mrc = mdb_cursor_open(v->txn, st->ee->dbi_cfg, &cur))) {
        rc = mdb_err(mrc, "LMDB cursor");
        goto out;
    }
    MDB_val k, d;
    for (mrc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        uint64_t gen;
        uint32_t n;
        if ((rc = rec_header(d.mv_data, d.mv_size, &gen, &n)))
            goto out;
        if ((rc = fn(arg, (shmreg_str){ k.mv_data, k.mv_size }, gen))) {
            rc = shmreg__fail(rc, "the list callback stopped the walk (it returned %d)", rc);
            goto out;
        }
    }
    if (mrc != MDB_NOTFOUND)
        rc = mdb_err(mrc, "LMDB cursor");
out:
    if (cur)
        mdb_cursor_close(cur);
    slot_end(v);
    return rc;
}
