/*
 * config_write.c — every change to the configs (put, set, unset, delete)
 * as one LMDB write transaction that replaces or deletes a whole record,
 * so a view is always entirely one version. The new record is encoded
 * straight into the map (MDB_RESERVE); set and unset are read-modify-write
 * of the stored record through a document (config_record.c).
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
 * ring, for workers that would rather wait than check. The same write
 * stores its LMDB transaction ID under "txn" in "meta", which lets a
 * reader detect a torn snapshot (config_env.c, snapshot_sane).
 */
#include <string.h>

#include "config_internal.h"

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
    if ((rc = reg_cfg_name_check(name, &nlen)) || (rc = reg_cfg_state_get(h, NULL, &st)))
        return rc;
    MDB_txn *txn;
    int mrc = mdb_txn_begin(st->ee->env, NULL, 0, &txn);
    if (mrc)
        return reg_cfg_mdb_err(mrc, "LMDB write transaction");
    uint64_t gen;
    MDB_val k = { nlen, (void *)name }, d;
    const shmreg_config_doc *doc = NULL;
    int owned = 0;
    if ((rc = reg_cfg_meta_gen(st, txn, &gen)))
        goto abort;
    gen++;
    mrc = mdb_get(txn, st->ee->dbi_cfg, &k, &d);
    if (mrc && mrc != MDB_NOTFOUND) {
        rc = reg_cfg_mdb_err(mrc, "LMDB get");
        goto abort;
    }
    rc = fn(arg, mrc ? NULL : d.mv_data, mrc ? 0 : d.mv_size, &doc, &owned);
    if (rc < 0)
        goto abort;
    if (rc == 1) {
        if ((mrc = mdb_del(txn, st->ee->dbi_cfg, &k, NULL))) {
            rc = mrc == MDB_NOTFOUND ? shmreg__fail(SHMREG_ENOENT, "no config %s", name)
                                     : reg_cfg_mdb_err(mrc, "LMDB delete");
            goto abort;
        }
    } else {
        uint64_t size = reg_cfg_doc_size(doc);
        if ((rc = reg_cfg_doc_check(doc)))
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
            rc = reg_cfg_mdb_err(mrc, "LMDB put");
            goto abort;
        }
        reg_cfg_doc_encode(doc, d.mv_data, (uint32_t)size, gen);
    }
    unsigned char g8[8];
    st64(g8, gen);
    MDB_val gk = { 3, "gen" }, gd = { 8, g8 };
    unsigned char t8[8];
    st64(t8, (uint64_t)mdb_txn_id(txn));
    MDB_val tk = { 3, "txn" }, td = { 8, t8 };
    if ((mrc = mdb_put(txn, st->ee->dbi_meta, &gk, &gd, 0)) ||
        (mrc = mdb_put(txn, st->ee->dbi_meta, &tk, &td, 0))) {
        rc = reg_cfg_mdb_err(mrc, "LMDB put generation");
        goto abort;
    }
    mrc = mdb_txn_commit(txn);   /* frees txn, even when it fails */
    if (owned)
        shmreg_config_doc_free((shmreg_config_doc *)doc);
    if (mrc)
        return reg_cfg_mdb_err(mrc, "LMDB commit");
    reg_cfg_gen_mirror(st->word, gen);
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
        if ((rc = reg_cfg_rec_header(rec, len, &gen, &n)) ||
            (rc = reg_cfg_doc_from_record(rec, (uint32_t)len, &doc)))
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
