/*
 * config_view.c — the worker's side: views of a config and the other
 * reads (typed getters, iteration, listing the configs).
 *
 * A view is one of the handle's view slots (config_env.c) holding an LMDB
 * read transaction. Opening it walks the record once and checks all of it
 * (the decoders of config_record.c), caching the media fields; after that
 * every accessor indexes validated tables and hands out {ptr, len} into
 * LMDB's map, valid until the view is released (MVCC keeps the snapshot's
 * pages). Staleness is one atomic load of the generation mirrored in the
 * segment header; a view whose snapshot is newer than that mirror (its
 * writer died between commit and mirror store) catches the mirror up.
 * Listing borrows a view slot for its read transaction, so it counts
 * against SHMREG_CONFIG_MAX_VIEWS like a view.
 */
#include <stdatomic.h>
#include <string.h>

#include "config_internal.h"

#define MEDIA_DEF_PTIME 20   /* the other media defaults: config_internal.h */

/* ---------------------------------------------------------------- views */

/* Walk a record once: check everything, and cache the media fields. */
static int view_fill(shmreg_config_view *v, const unsigned char *rec, size_t len)
{
    uint64_t gen;
    uint32_t n;
    int rc = reg_cfg_rec_header(rec, len, &gen, &n);
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
        if ((rc = reg_cfg_ent_read(rec, (uint32_t)len, off, &e)) ||
            (rc = reg_cfg_val_decode(e.type, e.val, e.vlen, &val)))
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
        const struct media_key *mk = reg_cfg_media_find(e.key + 6, e.klen - 6);
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
    if ((rc = reg_cfg_name_check(name, &nlen)) || (rc = reg_cfg_state_get(h, NULL, &st)))
        return rc;
    shmreg_config_view *v = reg_cfg_slot_take(st);
    if (!v)
        return shmreg__fail(SHMREG_EFULL, "%u config views already open on this "
                            "handle", SHMREG_CONFIG_MAX_VIEWS);
    if ((rc = reg_cfg_slot_begin(v))) {
        v->busy = 0;
        return rc;
    }
    MDB_val k = { nlen, (void *)name }, d;
    if (!(rc = reg_cfg_meta_gen(st, v->txn, &v->snap_gen))) {
        int mrc = mdb_get(v->txn, st->ee->dbi_cfg, &k, &d);
        if (mrc == MDB_NOTFOUND)
            rc = shmreg__fail(SHMREG_ENOENT, "no config %s", name);
        else if (mrc)
            rc = reg_cfg_mdb_err(mrc, "LMDB get");
        else
            rc = view_fill(v, d.mv_data, d.mv_size);
    }
    if (rc) {
        reg_cfg_slot_end(v);
        return rc;
    }
    memcpy(v->name, name, nlen + 1);
    reg_cfg_gen_mirror(st->word, v->snap_gen);
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
        reg_cfg_slot_end(v);
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
    if ((rc = reg_cfg_ent_read(v->rec, v->len, off, &e)) ||
        (rc = reg_cfg_val_decode(e.type, e.val, e.vlen, out)))
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
        int rc = reg_cfg_ent_read(v->rec, v->len, off, &e);
        if (rc)
            return rc;
        if (e.klen == klen && memcmp(e.key, key, klen) == 0)
            return reg_cfg_val_decode(e.type, e.val, e.vlen, out);
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
                            reg_cfg_type_name((unsigned)val->type), reg_cfg_type_name((unsigned)type));
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

int shmreg_config_list(shmreg *h, int (*fn)(void *arg, shmreg_str name, uint64_t gen),
                       void *arg)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    struct cfg_state *st;
    if (!fn)
        return shmreg__fail(SHMREG_EINVAL, "fn is NULL");
    if ((rc = reg_cfg_state_get(h, NULL, &st)))
        return rc;
    shmreg_config_view *v = reg_cfg_slot_take(st);
    if (!v)
        return shmreg__fail(SHMREG_EFULL, "%u config views already open on this "
                            "handle", SHMREG_CONFIG_MAX_VIEWS);
    MDB_cursor *cur = NULL;
    int mrc;
    if ((rc = reg_cfg_slot_begin(v))) {
        v->busy = 0;
        return rc;
    }
    if ((mrc = mdb_cursor_open(v->txn, st->ee->dbi_cfg, &cur))) {
        rc = reg_cfg_mdb_err(mrc, "LMDB cursor");
        goto out;
    }
    MDB_val k, d;
    for (mrc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        uint64_t gen;
        uint32_t n;
        if ((rc = reg_cfg_rec_header(d.mv_data, d.mv_size, &gen, &n)))
            goto out;
        if ((rc = fn(arg, (shmreg_str){ k.mv_data, k.mv_size }, gen))) {
            rc = shmreg__fail(rc, "the list callback stopped the walk (it returned %d)", rc);
            goto out;
        }
    }
    if (mrc != MDB_NOTFOUND)
        rc = reg_cfg_mdb_err(mrc, "LMDB cursor");
out:
    if (cur)
        mdb_cursor_close(cur);
    reg_cfg_slot_end(v);
    return rc;
}
