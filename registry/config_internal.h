/*
 * config_internal.h — what the files of the config module share, and
 * nothing that only one of them uses. Users never see it: their contract
 * is shmreg_config.h.
 *
 * What the module does. A registry keeps its configuration in an LMDB
 * environment (by default `config/` inside the registry directory). Each
 * config is ONE record of the LMDB database "configs", keyed by the
 * config's name; its value is a self-describing document laid out so that
 * a reader can point into it: a worker opens a *view* (one LMDB read
 * transaction), and every string the view hands out — codecs, the
 * music-on-hold path, SDP attributes, application values — is a {ptr, len}
 * into LMDB's read-only map. Nothing is copied; the pointers stay valid
 * until the view is released, because LMDB never touches the pages of a
 * snapshot that a read transaction still holds (MVCC). A writer replaces
 * the whole record in one write transaction, so a view is always entirely
 * one version.
 *
 * It is cut where its code has seams, each file with its own essay:
 *   config_record.c  the record format and the in-memory document: pure
 *                    bytes, no LMDB call
 *   config_env.c     LMDB environments (one per process), the settings
 *                    file, and each handle's config state and view slots
 *   config_view.c    views and the other reads (the worker's side)
 *   config_write.c   write transactions and the generation they publish
 *   config_text.c    the text parser and dumper, on the public API only
 * What crosses a file is declared below under the name reg_cfg_*.
 */
#ifndef SHMREG_CONFIG_INTERNAL_H
#define SHMREG_CONFIG_INTERNAL_H

#include <limits.h>
#include <lmdb.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "internal.h"
#include "shmreg.h"

/* ---------------------------------------------------------------- record format
 * (config_record.c; the layout is described there) */

#define REC_HDR 40u

/* LMDB only guarantees 2-byte alignment of values: every wider integer of
 * a record is read and written with memcpy. */
static inline uint64_t ld64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void st64(void *p, uint64_t v) { memcpy(p, &v, 8); }

/* One entry, located and bounds-checked by reg_cfg_ent_read(). */
struct ent {
    unsigned type;
    const char *key;
    uint32_t klen;
    const unsigned char *val;
    uint32_t vlen;
    uint32_t next;   /* offset just past the entry */
};

int reg_cfg_ent_read(const unsigned char *base, uint32_t len, uint32_t off,
                     struct ent *e);
/* Check a value's payload completely and describe it in *out. Everything an
 * accessor later dereferences is proven in bounds here. */
int reg_cfg_val_decode(unsigned type, const unsigned char *p, uint32_t n,
                       shmreg_config_value *out);
/* Check a record's header; *gen and *n get its generation and entry count. */
int reg_cfg_rec_header(const unsigned char *p, size_t len, uint64_t *gen,
                       uint32_t *n);
int reg_cfg_name_check(const char *name, size_t *len);
const char *reg_cfg_type_name(unsigned t);

/* The typed keys of the section "media": their type, their bit in
 * shmreg_config_media.set and the range of an integer. */
struct media_key {
    const char *name;
    unsigned type;
    uint32_t bit;
    int64_t lo, hi;
};
/* The defaults of an unset RTP bound: a view reports them, and a write
 * checks min <= max with them (the default ptime only a view needs). */
#define MEDIA_DEF_RTP_MIN 10000
#define MEDIA_DEF_RTP_MAX 20000

/* The media key `name` (the part after "media."), or NULL. */
const struct media_key *reg_cfg_media_find(const char *name, size_t len);

/* ---------------------------------------------------------------- documents
 * (config_record.c) */

/* Rules between fields, checked before any write: the RTP range with
 * defaults for an unset bound. */
int reg_cfg_doc_check(const shmreg_config_doc *doc);
/* Rebuild a document from a stored record (for read-modify-write). */
int reg_cfg_doc_from_record(const unsigned char *rec, uint32_t len,
                            shmreg_config_doc **out);
/* The size of the record that reg_cfg_doc_encode() writes. */
uint64_t reg_cfg_doc_size(const shmreg_config_doc *doc);
void reg_cfg_doc_encode(const shmreg_config_doc *doc, unsigned char *p,
                        uint32_t total, uint64_t gen);

/* ---------------------------------------------------------------- environments and state
 * (config_env.c) */

/* One open environment: an entry of the process-wide, refcounted table. */
struct env_entry {
    struct env_entry *next;
    pid_t pid;            /* the process that opened it: never used elsewhere */
    dev_t dev;
    ino_t ino;
    unsigned refs;
    MDB_env *env;
    MDB_dbi dbi_cfg, dbi_meta;
};

/* What config.settings records; part of the handle's state below. */
struct settings {
    uint64_t map_bytes;
    char dir[PATH_MAX];   /* "" : <registry>/config */
};

/* A view slot: its read transaction lives as long as the handle's state. */
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

/* A handle's config state: its environment, the generation word mirrored
 * in the segment, and its view slots. */
struct cfg_state {
    shmreg *h;
    pid_t pid;
    struct env_entry *ee;
    _Atomic uint64_t *word;
    struct settings set;
    shmreg_config_view slot[SHMREG_CONFIG_MAX_VIEWS];
    struct cfg_state *parked;   /* next inherited state (see config_close) */
};

/* An LMDB return code as a SHMREG_E* code, with errmsg "what: LMDB's text". */
int reg_cfg_mdb_err(int mrc, const char *what);
/* Raise the generation mirrored in the segment to g (atomic max, release). */
void reg_cfg_gen_mirror(_Atomic uint64_t *w, uint64_t g);
/* A free view slot of the handle, marked busy; NULL when all are in use. */
shmreg_config_view *reg_cfg_slot_take(struct cfg_state *st);
/* Start (renew) the slot's read transaction on a sane snapshot. */
int reg_cfg_slot_begin(shmreg_config_view *v);
/* Reset the slot's read transaction (keeping it and its reader slot) and
 * free the slot. */
void reg_cfg_slot_end(shmreg_config_view *v);
/* The registry generation at the snapshot of `txn`. */
int reg_cfg_meta_gen(struct cfg_state *st, MDB_txn *txn, uint64_t *gen);
/* The handle's config state, opening the environment on first use.
 * `want`: explicit settings from shmreg_config_setup(), or NULL. */
int reg_cfg_state_get(shmreg *h, const struct settings *want, struct cfg_state **out);

#endif /* SHMREG_CONFIG_INTERNAL_H */
