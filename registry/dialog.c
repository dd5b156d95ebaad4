/*
 * dialog.c — SIP dialogs: (Call-ID, local tag, remote tag) -> session.
 *
 * The keys come from the network, so the bucket is chosen by keyed SipHash
 * (libsodium crypto_shorthash) under the registry's random key: a peer who
 * cannot learn the key cannot aim many Call-IDs at one chain. The hash
 * covers only Call-ID and local tag, so an early dialog (remote tag not yet
 * known) and its confirmed dialogs live in the same chain and the early
 * lookup is one chain walk.
 *
 * Lookups walk chains with no lock. Writers to a chain (bind, unbind)
 * serialise on one of SHM_STRIPES robust stripe locks, which makes
 * insert-if-absent exact; every chain change is one store, so a writer
 * killed inside the lock leaves a consistent chain.
 *
 * Each session keeps the offsets of its dialog records (at most
 * SHMREG_MAX_DIALOGS_PER_SESSION), so deleting a session unbinds its
 * dialogs without searching. A record's reference in its session is the
 * token of ownership: whoever clears it (with a CAS) unlinks and retires
 * the record, so a racing unbind and delete never retire it twice.
 */
#include <sodium.h>

#include "reg.h"
#include "crashpoint.h"

static int check_key(shmreg_str call_id, shmreg_str ltag, shmreg_str rtag, int rtag_optional)
{
    if (call_id.ptr == NULL || call_id.len == 0)
        return shmreg__fail(SHMREG_EINVAL, "empty Call-ID");
    if (call_id.len > SHMREG_MAX_STR || ltag.len > SHMREG_MAX_STR || rtag.len > SHMREG_MAX_STR)
        return shmreg__fail(SHMREG_EINVAL, "dialog key part over %u bytes", SHMREG_MAX_STR);
    if ((ltag.len && ltag.ptr == NULL) || (!rtag_optional && rtag.len && rtag.ptr == NULL))
        return shmreg__fail(SHMREG_EINVAL, "dialog key part with a length but no bytes");
    return 0;
}

static reg_dlg *dialog_at(const shm_seg *s, uint64_t off)
{
    shm_blk *b = shm_blk_at(s, off);
    if (b == NULL || shm_slot_index(s, off) != UINT32_MAX)
        return NULL;
    reg_dlg *d = reg_payload(b);
    uint64_t need = sizeof(reg_dlg) + (uint64_t)d->len[0] + d->len[1] + d->len[2];
    if (need > shm_blk_capacity(b) || d->slot >= s->slots)
        return NULL;
    return d;
}

reg_dlg *reg_dialog_at(shmreg *h, uint64_t off)
{
    return dialog_at(&h->c.seg, off);
}

_Atomic uint64_t *reg_dialog_link(const shm_seg *s, uint64_t off)
{
    reg_dlg *d = dialog_at(s, off);
    return d ? &d->next : NULL;
}

static void dialog_strs(reg_dlg *d, shmreg_str *c, shmreg_str *l, shmreg_str *r)
{
    c->ptr = d->key;
    c->len = d->len[0];
    l->ptr = d->key + d->len[0];
    l->len = d->len[1];
    r->ptr = d->key + d->len[0] + d->len[1];
    r->len = d->len[2];
}

/* Walk a chain for a key; rtag.ptr == NULL matches any remote tag. Returns
 * the record offset, 0 if absent, or sets *err to SHMREG_ECORRUPT. */
static uint64_t chain_find(shmreg *h, uint64_t hash, shmreg_str cid, shmreg_str lt, shmreg_str rt,
                           int *err)
{
    const shm_seg *s = &h->c.seg;
    uint64_t off = atomic_load_explicit(shm_index_head(&h->dialogs, hash), memory_order_acquire);
    for (uint64_t steps = 0; off; steps++) {
        reg_dlg *d = reg_dialog_at(h, off);
        if (d == NULL || steps > shm_walk_limit(s)) {
            *err = shmreg__fail(SHMREG_ECORRUPT, "dialog chain is broken at offset %llu",
                                (unsigned long long)off);
            return 0;
        }
        if (d->hash == hash) {
            shmreg_str c, l, r;
            dialog_strs(d, &c, &l, &r);
            if (reg_str_eq(c, cid) && reg_str_eq(l, lt) && (rt.ptr == NULL || reg_str_eq(r, rt)))
                return off;
        }
        off = atomic_load_explicit(&d->next, memory_order_acquire);
    }
    return 0;
}

int reg_dialog_unlink(shmreg *h, uint64_t rec)
{
    reg_dlg *d = reg_dialog_at(h, rec);
    return d ? shm_index_unlink(&h->c, &h->dialogs, d->hash, rec, reg_dialog_link) : 0;
}

/* ------------------------------------------------------------ binding
 *
 * A bind is done under the key's stripe lock, in steps that a create
 * bound to its dialog (session.c) shares: the key must be free
 * (reg_dialog_absent), a record is made (reg_dialog_make), the session's
 * slot references it, and linking it into the chain (reg_dialog_link_new)
 * commits. Holding the stripe from the test to the link is what makes the
 * insert-if-absent exact, and what makes a delete racing the bind (its
 * unlink takes the same stripe) find the record linked or not yet made. */

int reg_dialog_key(shmreg *h, shmreg_str call_id, shmreg_str local_tag, shmreg_str remote_tag, reg_dkey *k)
{
    int rc = check_key(call_id, local_tag, remote_tag, 0);
    if (rc)
        return rc;
    k->cid = call_id;
    k->lt = local_tag;
    k->rt = remote_tag;
    if (k->rt.ptr == NULL)
        k->rt.ptr = ""; /* NULL means "any" only for lookups */
    k->hash = reg_key_hash(h, call_id, local_tag);
    return 0;
}

int reg_dialog_absent(shmreg *h, const reg_dkey *k, shmreg_id *bound)
{
    int rc = 0;
    uint64_t rec = chain_find(h, k->hash, k->cid, k->lt, k->rt, &rc);
    if (rc || rec == 0)
        return rc;
    if (bound)
        memcpy(bound->bytes, reg_dialog_at(h, rec)->sid, SHMREG_ID_BYTES);
    return shmreg__fail(SHMREG_EEXIST, "dialog already bound");
}

uint64_t reg_dialog_make(shmreg *h, uint32_t si, const unsigned char sid[SHMREG_ID_BYTES], const reg_dkey *k)
{
    uint64_t len = sizeof(reg_dlg) + k->cid.len + k->lt.len + k->rt.len;
    uint64_t rec = shm_alloc(&h->c, len, si + 1);
    if (rec == 0) {
        shmreg__fail(SHMREG_EFULL, "registry heap full (dialog record)");
        return 0;
    }
    SHM_CRASH_POINT("dialog_bind_allocated");
    reg_dlg *d = reg_payload((shm_blk *)(h->c.seg.base + rec));
    shm_store(&d->next, 0);
    d->hash = k->hash;
    memcpy(d->sid, sid, SHMREG_ID_BYTES);
    d->slot = si;
    d->len[0] = (uint16_t)k->cid.len;
    d->len[1] = (uint16_t)k->lt.len;
    d->len[2] = (uint16_t)k->rt.len;
    memcpy(d->key, k->cid.ptr, k->cid.len);
    if (k->lt.len)
        memcpy(d->key + k->cid.len, k->lt.ptr, k->lt.len);
    if (k->rt.len)
        memcpy(d->key + k->cid.len + k->lt.len, k->rt.ptr, k->rt.len);
    return rec;
}

void reg_dialog_link_new(shmreg *h, const reg_dkey *k, uint64_t rec)
{
    reg_dlg *d = reg_payload((shm_blk *)(h->c.seg.base + rec));
    shm_index_push(&h->dialogs, k->hash, rec, &d->next);
}

int shmreg_dialog_bind(shmreg *h, shmreg_str call_id, shmreg_str local_tag, shmreg_str remote_tag,
                       const shmreg_id *session)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (session == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL session");
    reg_dkey k;
    if ((rc = reg_dialog_key(h, call_id, local_tag, remote_tag, &k)) != 0)
        return rc;
    shm_lock *l = shm_index_lock(&h->dialogs, k.hash);
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, session->bytes, &si, &st)) != 0)
        goto out;
    if ((rc = reg_lock(h, l, "dialog index lock")) != 0)
        goto out;
    if ((rc = reg_dialog_absent(h, &k, NULL)) != 0)
        goto unlock;
    uint64_t rec = reg_dialog_make(h, si, session->bytes, &k);
    if (rec == 0) {
        rc = SHMREG_EFULL;
        goto unlock;
    }
    reg_sess *x = reg_slot(h, si);
    unsigned i;
    for (i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&x->dlg[i], &zero, rec))
            break;
    }
    if (i == SHMREG_MAX_DIALOGS_PER_SESSION) {
        shm_free(&h->c, rec);
        rc = shmreg__fail(SHMREG_EFULL, "session has %u dialogs already", SHMREG_MAX_DIALOGS_PER_SESSION);
        goto unlock;
    }
    SHM_CRASH_POINT("dialog_bind_referenced");
    /* Deleted meanwhile? The deleter scans dlg[] after marking the state;
     * we check the state after filling dlg[]: one of us sees the other. */
    if (!REG_LIVE(atomic_load(&x->state))) {
        uint64_t mine = rec;
        if (atomic_compare_exchange_strong(&x->dlg[i], &mine, 0))
            shm_free(&h->c, rec); /* never linked: nobody saw it */
        rc = shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
        goto unlock;
    }
    reg_dialog_link_new(h, &k, rec);
    reg_event(h, 0, SHMREG_EV_DIALOG_BOUND, session->bytes, 0, 0, 0, reg_changed(h, si));
unlock:
    shm_lock_drop(l);
out:
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_dialog_find(shmreg *h, shmreg_str call_id, shmreg_str local_tag, shmreg_str remote_tag,
                       shmreg_id *session_out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (session_out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL session_out");
    if ((rc = check_key(call_id, local_tag, remote_tag, 1)) != 0)
        return rc;
    uint64_t hash = reg_key_hash(h, call_id, local_tag);
    shm_read_enter(&h->c);
    uint64_t rec = chain_find(h, hash, call_id, local_tag, remote_tag, &rc);
    if (rec)
        memcpy(session_out->bytes, reg_dialog_at(h, rec)->sid, SHMREG_ID_BYTES);
    else if (rc == 0)
        rc = shmreg__fail_lazy(SHMREG_ENOENT, "no such dialog", NULL);
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_dialog_unbind(shmreg *h, shmreg_str call_id, shmreg_str local_tag, shmreg_str remote_tag)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if ((rc = check_key(call_id, local_tag, remote_tag, 0)) != 0)
        return rc;
    if (remote_tag.ptr == NULL)
        remote_tag.ptr = "";
    const shm_seg *s = &h->c.seg;
    uint64_t hash = reg_key_hash(h, call_id, local_tag);
    shm_lock *l = shm_index_lock(&h->dialogs, hash);
    shm_read_enter(&h->c);
    if ((rc = reg_lock(h, l, "dialog index lock")) != 0)
        goto out;
    uint64_t rec = chain_find(h, hash, call_id, local_tag, remote_tag, &rc);
    if (rec == 0) {
        rc = rc ? rc : shmreg__fail(SHMREG_ENOENT, "no such dialog");
        shm_lock_drop(l);
        goto out;
    }
    reg_dlg *d = reg_dialog_at(h, rec);
    if ((rc = reg_own_slot(h, d->slot)) != 0) {
        shm_lock_drop(l);
        goto out;
    }
    reg_sess *x = reg_slot(h, d->slot);
    shm_blk *b = shm_blk_at(s, rec);
    uint64_t st = atomic_load(&b->state);
    /* Unlink first (we hold the stripe), then take the session's reference:
     * whoever clears the reference retires the record. Dying between the
     * two leaves a record its session still names, which its delete
     * retires; dying after leaves an intent the reaper resolves. */
    shm_index_remove(s, &h->dialogs, hash, rec, reg_dialog_link); /* chain_find saw it there */
    int owner = 0;
    SHM_CRASH_POINT("dialog_unbind_unlinked");
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION && !owner; i++) {
        uint64_t r = rec;
        shm_intent_set(&h->c, rec, st, &x->dlg[i]);
        owner = atomic_compare_exchange_strong(&x->dlg[i], &r, 0);
    }
    shm_lock_drop(l);
    SHM_CRASH_POINT("dialog_unbind_claimed");
    if (owner)
        shm_retire(&h->c, rec, st); /* else the session's deleter retires it */
    shm_intent_clear(&h->c);
    reg_event(h, 0, SHMREG_EV_DIALOG_UNBOUND, d->sid, 0, 0, 0, reg_changed(h, d->slot));
out:
    shm_read_leave(&h->c);
    return rc;
}

static int dialog_view(shmreg *h, uint64_t rec, shmreg_dialog *out)
{
    reg_dlg *d = reg_dialog_at(h, rec);
    if (d == NULL)
        return shmreg__fail(SHMREG_ECORRUPT, "dialog offset %llu is not a record", (unsigned long long)rec);
    dialog_strs(d, &out->call_id, &out->local_tag, &out->remote_tag);
    memcpy(out->session.bytes, d->sid, SHMREG_ID_BYTES);
    memset(out->reserved, 0, sizeof out->reserved);
    return 0;
}

int shmreg_session_dialog(shmreg *h, const shmreg_id *id, unsigned i, shmreg_dialog *out)
{
    uint32_t si;
    uint64_t st;
    int rc = reg_find_in_read(h, id, out, &si, &st);
    if (rc)
        return rc;
    reg_sess *x = reg_slot(h, si);
    for (unsigned k = 0, seen = 0; k < SHMREG_MAX_DIALOGS_PER_SESSION; k++) {
        uint64_t r = atomic_load(&x->dlg[k]);
        if (r && seen++ == i)
            return dialog_view(h, r, out);
    }
    return shmreg__fail_lazy(SHMREG_ENOENT, "no such dialog index in session", id->bytes);
}

int shmreg_dialog_next(shmreg *h, uint64_t *cursor, shmreg_dialog *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor/out");
    /* Walk sessions' dialog references: positions are stable, unlike
     * positions in chains that grow at the head. */
    const shm_seg *s = &h->c.seg;
    const uint64_t per = SHMREG_MAX_DIALOGS_PER_SESSION;
    for (uint64_t c = *cursor; c / per < s->slots; c++) {
        uint64_t si = reg_next_carved_slot(s, c / per);
        if (si != c / per)
            c = si * per;
        if (si >= s->slots)
            break;
        reg_sess *x = reg_slot(h, (uint32_t)si);
        if (!REG_LIVE(atomic_load(&x->state))) {
            c = c / per * per + per - 1;
            continue;
        }
        uint64_t r = atomic_load(&x->dlg[c % per]);
        if (r) {
            *cursor = c + 1;
            return dialog_view(h, r, out);
        }
    }
    *cursor = (uint64_t)s->slots * per;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more dialogs", NULL);
}
