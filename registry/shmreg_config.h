/*
 * shmreg_config.h — the config half of the shmreg API: named, versioned
 * configs kept in an LMDB environment of the registry, which workers read
 * in place through views; the documents that writes are built from; and
 * their text format. It is the part of the library that is built on LMDB
 * (registry/config_*.c); this header itself needs nothing of LMDB, and a
 * program that uses configs includes no lmdb.h.
 *
 * How to include it. shmreg.h stays the one header users include: it
 * includes this one where its configs section always was, so every
 * program written against shmreg.h compiles unchanged. Including this
 * header on its own is also safe (it is standalone-safe): it includes
 * shmreg.h first, for the handle, shmreg_str and the error codes, and the
 * include guards make either order give the same declarations. The
 * conventions of shmreg.h (return codes, errmsg detail, threads, the
 * lifetime of returned pointers) hold here unchanged.
 */
#ifndef SHMREG_CONFIG_H
#define SHMREG_CONFIG_H

#include "shmreg.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- configs
 *
 * A config is a named document stored in an LMDB environment that belongs
 * to the registry (by default the subdirectory `config/` of the registry
 * directory). Workers open a *view* of a config: the strings a view hands
 * out point straight into LMDB's read-only map, valid and unchanged until
 * the view is released, even while an admin replaces the config. A write
 * replaces a whole config in one LMDB transaction, so a view is always
 * entirely one version.
 *
 * Every committed write (put, set, unset, delete) bumps the registry's
 * config generation; it is mirrored in the segment header so that
 * `shmreg_config_gen()` and `shmreg_config_changed()` answer in O(1) without
 * an LMDB transaction. The worker idiom:
 *
 *     shmreg_config_view *v = NULL;
 *     ...
 *     if (!v || shmreg_config_stale(v))   // O(1): one atomic load
 *         (void)shmreg_config_refresh(h, "media", &v, NULL);
 *     shmreg_config_media m;
 *     (void)shmreg_config_media_get(v, &m);     // fields in place, no copy
 *
 * Documents. A config holds entries: a key and a typed value. Keys are
 * `name` or `section.name`, each part 1+ of [A-Za-z0-9_-], at most
 * SHMREG_CONFIG_MAX_KEY bytes in all. Values are a string, a 64-bit
 * integer, a boolean or a list of strings. Entries keep the order in which
 * they were added, grouped by section (a new key goes after the last key
 * of its section; top-level keys come before every section).
 *
 * Two sections are typed and checked on every write:
 *
 *   media.codecs             list    preferred codecs, in order; items are
 *                                    1..64 printable non-space ASCII bytes
 *   media.rtp_port_min       int     1..65535 (default 10000)
 *   media.rtp_port_max       int     1..65535 (default 20000), >= min
 *   media.ptime              int     1..1000 ms (default 20)
 *   media.max_bandwidth      int     0..1000000000 kbit/s (default 0: none)
 *   media.moh_path           string  music-on-hold file (default "")
 *   media.dtmf, media.echo_cancellation, media.noise_suppression,
 *   media.agc, media.quality_monitoring
 *                            bool    (default false)
 *
 *   sdp                      the custom SDP attributes: an ordered list of
 *                            (name, value) pairs; names may repeat; a value
 *                            holds no CR or LF; "" means a property
 *                            attribute (a=rtcp-mux).
 *
 * Any other section (and top-level keys, except the reserved names `media`
 * and `sdp`) holds application keys of any type.
 *
 * Strings. Every string handed out ({ptr, len}) is followed in memory by a
 * NUL byte, so ptr may be passed to open(2) and friends; len is
 * authoritative. Strings never contain a NUL byte (writes refuse them).
 *
 * Processes. The LMDB environment is opened lazily by the first config
 * call of each handle, in the process that owns the handle; all handles of
 * one process share one MDB_env (LMDB forbids opening an environment twice
 * in a process). A forked child must open its own handle; the parent's
 * views are not usable there (SHMREG_EFORK).
 */

/* Limits. Over-long input is SHMREG_EINVAL (SHMREG_EPARSE from text) with
 * nothing changed. */
#define SHMREG_CONFIG_MAX_NAME        64u   /* bytes in a config name */
#define SHMREG_CONFIG_MAX_KEY        128u   /* bytes in a key, dot included */
#define SHMREG_CONFIG_MAX_VALUE     4096u   /* bytes in a string or list item */
#define SHMREG_CONFIG_MAX_ITEMS     1024u   /* items in a list, SDP attributes */
#define SHMREG_CONFIG_MAX_ENTRIES   1024u   /* entries in one config */
#define SHMREG_CONFIG_MAX_BYTES  (1u << 20) /* one config, encoded */
#define SHMREG_CONFIG_MAX_VIEWS        8u   /* views open at once per handle */
#define SHMREG_CONFIG_MAP_DEFAULT (64ull << 20) /* LMDB map size */
#define SHMREG_CONFIG_MAP_MIN      (1ull << 20)
#define SHMREG_CONFIG_MAP_MAX     (64ull << 30)

/* Value types. */
enum shmreg_config_type {
    SHMREG_CONFIG_STR = 1,
    SHMREG_CONFIG_INT = 2,
    SHMREG_CONFIG_BOOL = 3,
    SHMREG_CONFIG_LIST = 4,   /* list of strings */
    SHMREG_CONFIG_PAIRS = 5,  /* (name, value) strings: only the `sdp` entry */
};

/* A value, in place. Filled by shmreg_config_get(), _next() and the doc
 * equivalents; its strings live as long as what it was read from (the
 * view until released, the doc until changed or freed). */
typedef struct shmreg_config_value {
    int type;               /* enum shmreg_config_type */
    shmreg_str str;         /* STR */
    int64_t num;            /* INT; BOOL: 0 or 1 */
    uint32_t count;         /* LIST: items; PAIRS: pairs */
    const void *priv_[2];   /* LIST, PAIRS: private to the library */
    uint64_t reserved[2];        /* reserved for later fields (see "growth") */
} shmreg_config_value;

/* Field bits of the media config: `set` of shmreg_config_media says which
 * fields the config sets (the others hold their defaults), and `flags`
 * says which of the boolean fields are on. */
#define SHMREG_MEDIA_CODECS             (1u << 0)
#define SHMREG_MEDIA_RTP_PORT_MIN       (1u << 1)
#define SHMREG_MEDIA_RTP_PORT_MAX       (1u << 2)
#define SHMREG_MEDIA_PTIME              (1u << 3)
#define SHMREG_MEDIA_MAX_BANDWIDTH      (1u << 4)
#define SHMREG_MEDIA_MOH_PATH           (1u << 5)
#define SHMREG_MEDIA_DTMF               (1u << 6)
#define SHMREG_MEDIA_ECHO_CANCELLATION  (1u << 7)
#define SHMREG_MEDIA_NOISE_SUPPRESSION  (1u << 8)
#define SHMREG_MEDIA_AGC                (1u << 9)
#define SHMREG_MEDIA_QUALITY_MONITORING (1u << 10)
#define SHMREG_MEDIA_SDP_ATTRS          (1u << 11)

typedef struct shmreg_config_media {
    uint32_t set;                 /* SHMREG_MEDIA_* of the fields present */
    uint32_t flags;               /* SHMREG_MEDIA_DTMF ... QUALITY_MONITORING: on */
    uint16_t rtp_port_min, rtp_port_max;
    uint32_t ptime_ms;
    uint32_t max_bandwidth_kbps;  /* 0: no limit */
    shmreg_str moh_path;          /* in place; "" when unset */
    uint32_t ncodecs;             /* see shmreg_config_codec() */
    uint32_t nattrs;              /* see shmreg_config_attr() */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_config_media;

typedef struct shmreg_config_view shmreg_config_view; /* opaque, handle-owned */
typedef struct shmreg_config_doc shmreg_config_doc;   /* opaque, malloc'ed */

/* Receives text from the dump functions, in pieces. Return 0 to go on;
 * anything else stops the dump, which then returns that value. */
typedef int (*shmreg_config_write_fn)(void *arg, const char *buf, size_t len);

/* ---------------------------------------------------------------- setup */

typedef struct shmreg_config_options {
    uint64_t map_bytes; /* LMDB map size; 0: SHMREG_CONFIG_MAP_DEFAULT.
                         * Rounded up to a multiple of 4096. */
    const char *dir;    /* NULL: `config/` in the registry directory (tmpfs
                         * under /dev/shm: configs live as long as the
                         * registry). An absolute path of a directory on
                         * disk: configs survive reboot (created 0700/0770
                         * if missing; its parent must exist). */
    uint64_t reserved[8];        /* reserved for later fields (see "growth") */
} shmreg_config_options;

/* Choose where and how big the registry's LMDB environment is. Optional:
 * without it the first config call of any process records the defaults.
 * The choice is recorded in the registry directory (file `config.settings`)
 * so that every process opens the environment with the same map size and
 * directory; call it in the master right after creating the registry,
 * before workers start. Calling it again with the same options is a no-op
 * (returns 0). Opens the environment in this process.
 * Errors: SHMREG_EINVAL (map_bytes out of SHMREG_CONFIG_MAP_MIN..MAX, dir
 * not absolute or too long), SHMREG_EEXIST (recorded with other options;
 * `shmreg_errmsg()` says which differ), SHMREG_EPERM (a file or directory is
 * a symlink or owned by another user), SHMREG_ECORRUPT (the record is not
 * readable), SHMREG_ESYS, SHMREG_ENOMEM, SHMREG_EFORK. */
int shmreg_config_setup(shmreg *h, const shmreg_config_options *opt);

/* ---------------------------------------------------------------- generation */

/* *changed = 1 when a config write has committed since generation `since`
 * (compare with `shmreg_config_gen()` or a view's snapshot generation), 0
 * when not; returns 0. The answer and an error never share the return
 * value, so `if (shmreg_config_changed(...))` cannot mistake one for the
 * other. O(1): one atomic load of the word mirrored in the segment, no
 * LMDB transaction, no system call. Errors: SHMREG_EINVAL (NULL changed),
 * SHMREG_EFORK; *changed is then unchanged. */
int shmreg_config_changed(shmreg *h, uint64_t since, int *changed);

/* ---------------------------------------------------------------- views */

/* Open a read-only view of config `name` (NUL-terminated). The view is one
 * LMDB read transaction: everything read through it is one committed
 * version of the config, in place, valid until shmreg_config_release().
 * At most SHMREG_CONFIG_MAX_VIEWS views per handle may be open. Views are
 * independent of `shmreg_read_begin()` sections.
 * No heap allocation, except the first time a handle uses each of its view
 * slots (LMDB allocates the transaction then, and it is reused after).
 * Errors: SHMREG_EINVAL (NULL, bad name), SHMREG_ENOENT (no such config),
 * SHMREG_EFULL (all views of this handle open, or LMDB's reader table full
 * even after clearing the slots of dead processes), SHMREG_ECORRUPT (the
 * record failed a bounds or type check), SHMREG_EFORK, and on first use of
 * the handle every error of `shmreg_config_setup()`. On error *out is
 * unchanged. */
int shmreg_config_open_view(shmreg *h, const char *name, shmreg_config_view **out);

/* Release a view: its pointers become invalid. NULL is a no-op. Returns 0,
 * or SHMREG_EFORK in a forked child (where nothing is touched). */
int shmreg_config_release(shmreg_config_view *v);

/* 1 when a config write has committed after the snapshot `v` sees (so a
 * refresh may give newer data), 0 when not. O(1) as shmreg_config_changed().
 * Any config's write counts, not only v's. A predicate that cannot fail:
 * it never returns an error code (NULL or a released view: 1, stale). */
int shmreg_config_stale(const shmreg_config_view *v);

/* Make *v a view of the current version of `name`. With *v NULL, opens one.
 * Otherwise, if *v is not stale, does nothing; if it is, opens a new view
 * first, and only on success releases the old one and stores the new in
 * *v. Returns 0 or an error; *refreshed (may be NULL) receives 1 when *v
 * was replaced (or opened), 0 otherwise, errors included. On error *v is
 * left as it was (still valid). Needs one free view slot while swapping.
 * Errors: SHMREG_EINVAL (NULL v), and those of
 * `shmreg_config_open_view()`. */
int shmreg_config_refresh(shmreg *h, const char *name, shmreg_config_view **v,
                          int *refreshed);

typedef struct shmreg_config_info {
    uint64_t gen;           /* generation of the write that stored this version */
    uint64_t snapshot_gen;  /* registry generation of the view's snapshot (>= gen) */
    uint64_t written_ns;    /* when it was written (CLOCK_REALTIME) */
    uint32_t entries;       /* entries in the config */
    uint32_t bytes;         /* encoded size */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_config_info;

/* Describe a view. Errors: SHMREG_EINVAL (NULL). */
int shmreg_config_view_info(const shmreg_config_view *v, shmreg_config_info *out);

/* The media fields of a view (defaults for the fields it does not set),
 * strings in place. O(1), no allocation. Errors: SHMREG_EINVAL (NULL). */
int shmreg_config_media_get(const shmreg_config_view *v, shmreg_config_media *out);

/* The i-th preferred codec, in place. O(1), no allocation.
 * Errors: SHMREG_EINVAL (NULL), SHMREG_ENOENT (i >= ncodecs). */
int shmreg_config_codec(const shmreg_config_view *v, uint32_t i, shmreg_str *out);

/* The i-th custom SDP attribute, in place. O(1), no allocation.
 * Errors: SHMREG_EINVAL (NULL), SHMREG_ENOENT (i >= nattrs). */
int shmreg_config_attr(const shmreg_config_view *v, uint32_t i,
                       shmreg_str *name, shmreg_str *value);

/* The value of `key` (e.g. "app.greeting", "media.ptime"), in place.
 * Linear in the number of entries; no allocation.
 * Errors: SHMREG_EINVAL (NULL), SHMREG_ENOENT (no such key). */
int shmreg_config_get(const shmreg_config_view *v, const char *key,
                      shmreg_config_value *out);

/* Typed shortcuts of shmreg_config_get(). Errors as there, and
 * SHMREG_EINVAL when the key holds another type (*out unchanged). */
int shmreg_config_get_str(const shmreg_config_view *v, const char *key, shmreg_str *out);
int shmreg_config_get_int(const shmreg_config_view *v, const char *key, int64_t *out);
/* The boolean shortcut: *out is 0 or 1. */
int shmreg_config_get_bool(const shmreg_config_view *v, const char *key, int *out);

/* Iterate the entries of a view in order: start with *cursor = 0; each call
 * fills *key and *out (in place) and advances *cursor. SHMREG_ENOENT at
 * the end. A cursor not obtained from this view is bounds-checked
 * (SHMREG_ECORRUPT at worst, never a wild read). No allocation. */
int shmreg_config_next(const shmreg_config_view *v, uint32_t *cursor,
                       shmreg_str *key, shmreg_config_value *out);

/* The i-th item of a LIST value / pair of a PAIRS value, in place.
 * Errors: SHMREG_EINVAL (NULL, wrong type), SHMREG_ENOENT (i >= count). */
int shmreg_config_item(const shmreg_config_value *list, uint32_t i, shmreg_str *out);
int shmreg_config_pair(const shmreg_config_value *pairs, uint32_t i,
                       shmreg_str *name, shmreg_str *value);

/* ---------------------------------------------------------------- writing */

/* Store `doc` as config `name`, replacing the whole config in one LMDB
 * transaction (readers see the old or the new config, never a mix), and
 * bump the generation. `doc` is not changed. Allocates (cold path).
 * Errors: SHMREG_EINVAL (NULL, bad name, doc over SHMREG_CONFIG_MAX_BYTES,
 * rtp_port_min > rtp_port_max), SHMREG_EFULL (LMDB map full: nothing
 * changed), SHMREG_ECORRUPT, SHMREG_ESYS, SHMREG_EFORK, and those of
 * `shmreg_config_setup()` on first use. */
int shmreg_config_put(shmreg *h, const char *name, const shmreg_config_doc *doc);

/* Set one key of config `name` (created if missing) from value text as in
 * the config text format: `"a string"`, `42`, `true`, `["a", "b"]`. For
 * `sdp.NAME` the value is a string: the attribute NAME is replaced if the
 * config has exactly one, appended if it has none (SHMREG_EINVAL if
 * several: use a whole document). Read-modify-write in one transaction.
 * Errors: SHMREG_EPARSE (value text; errmsg names the column),
 * SHMREG_EINVAL (bad key, wrong type for a media key, out of range), and
 * those of `shmreg_config_put()`. */
int shmreg_config_set(shmreg *h, const char *name, const char *key,
                      const char *value_text);

/* Remove one key (`sdp.NAME`: every attribute NAME; `sdp`: all attributes)
 * from config `name`, in one transaction. Errors: SHMREG_ENOENT (no such
 * config or key: nothing changed), and those of shmreg_config_put(). */
int shmreg_config_unset(shmreg *h, const char *name, const char *key);

/* Delete config `name`. Views open on it keep their snapshot.
 * Errors: SHMREG_ENOENT (nothing changed, no generation bump), and those
 * of `shmreg_config_put()`. */
int shmreg_config_delete(shmreg *h, const char *name);

/* Call fn(arg, name, gen) for every config, in name order, inside one read
 * transaction; `name` is in place, valid during the call. A non-zero
 * return stops the walk and is returned. Errors: SHMREG_EFULL (no free
 * view slot), SHMREG_ECORRUPT, SHMREG_EFORK, and those of
 * `shmreg_config_setup()` on first use. */
int shmreg_config_list(shmreg *h,
                       int (*fn)(void *arg, shmreg_str name, uint64_t gen),
                       void *arg);

/* ---------------------------------------------------------------- documents
 *
 * A document is a config being built in private memory (malloc: cold
 * path). Setters validate as shmreg_config_put() would, so a document that
 * was built without error can be stored. Keys are NUL-terminated C strings.
 * A setter that fails leaves the document unchanged.
 */

/* New empty document. Errors: SHMREG_EINVAL (NULL), SHMREG_ENOMEM. */
int shmreg_config_doc_new(shmreg_config_doc **out);

/* Free a document; NULL is a no-op. */
void shmreg_config_doc_free(shmreg_config_doc *doc);

/* Set `key` (replacing its value and keeping its place if present).
 * Errors: SHMREG_EINVAL (bad key, reserved key, wrong type or range for a
 * media key, NUL byte or over-long string, too many entries/items),
 * SHMREG_ENOMEM. */
int shmreg_config_doc_set_str(shmreg_config_doc *doc, const char *key, shmreg_str val);
int shmreg_config_doc_set_int(shmreg_config_doc *doc, const char *key, int64_t val);
/* val: 0 is false, anything else true. */
int shmreg_config_doc_set_bool(shmreg_config_doc *doc, const char *key, int val);
/* `n` strings (list keys such as media.codecs); items are copied. */
int shmreg_config_doc_set_list(shmreg_config_doc *doc, const char *key,
                               const shmreg_str *items, uint32_t n);

/* Append a custom SDP attribute (`name` as a key part; `value` without CR,
 * LF or NUL, "" for a property attribute). Errors: SHMREG_EINVAL,
 * SHMREG_ENOMEM. */
int shmreg_config_doc_add_attr(shmreg_config_doc *doc, shmreg_str name, shmreg_str value);

/* Set `key` from value text, as shmreg_config_set() does. Errors:
 * SHMREG_EPARSE ("column C: ..."), and those of the setters. */
int shmreg_config_doc_set_text(shmreg_config_doc *doc, const char *key,
                               const char *text, size_t len);

/* Remove `key` (see shmreg_config_unset for `sdp`). SHMREG_ENOENT if absent. */
int shmreg_config_doc_unset(shmreg_config_doc *doc, const char *key);

/* Read a document like a view (pointers valid until the document changes
 * or is freed). Errors as for views. */
int shmreg_config_doc_get(const shmreg_config_doc *doc, const char *key,
                          shmreg_config_value *out);
/* Entries of a document in order, as shmreg_config_next() for views. */
int shmreg_config_doc_next(const shmreg_config_doc *doc, uint32_t *cursor,
                           shmreg_str *key, shmreg_config_value *out);

/* ---------------------------------------------------------------- text
 *
 * The text format (see README): `key = value` lines, `[section]` headers,
 * `#` comment lines; values are "strings" with \" \\ \n \t \r \xHH
 * escapes, integers, true/false, and lists ["a", "b"]. Dumps are
 * canonical, so dump -> parse -> dump gives the same bytes, and text
 * already in canonical form parses and dumps back to itself.
 */

/* Parse `len` bytes of config text into a new document (*out; free it with
 * shmreg_config_doc_free). Strict: any error is SHMREG_EPARSE, errmsg
 * "line L, column C: what" (both 1-based, columns in bytes), and *out is
 * unchanged. Errors: SHMREG_EINVAL (NULL), SHMREG_EPARSE, SHMREG_ENOMEM. */
int shmreg_config_parse(const char *text, size_t len, shmreg_config_doc **out);

/* Parse text and store it as config `name` in one transaction: on any
 * error nothing is changed. Errors: those of shmreg_config_parse() and
 * `shmreg_config_put()`. */
int shmreg_config_load_text(shmreg *h, const char *name, const char *text, size_t len);

/* Write the canonical text of a config, of a view, of a document.
 * Errors: those of shmreg_config_open_view() (for the first), or a non-zero
 * return of fn. */
int shmreg_config_dump(shmreg *h, const char *name, shmreg_config_write_fn fn, void *arg);
int shmreg_config_view_dump(const shmreg_config_view *v, shmreg_config_write_fn fn, void *arg);
/* The same for a document not stored anywhere (what load would store). */
int shmreg_config_doc_dump(const shmreg_config_doc *doc, shmreg_config_write_fn fn, void *arg);

/* ---------------------------------------------------------------- config generation */

/* The registry's configuration generation, mirrored in the segment header:
 * an O(1) read with no lock and no LMDB transaction. */
uint64_t shmreg_config_gen(shmreg *h);

#ifdef __cplusplus
}
#endif

#endif /* SHMREG_CONFIG_H */
