/*
 * session.c — changing call sessions: create, update, SDP replace, state
 * transitions, counters, delete. Finding and reading them is table.c's.
 *
 * Publication discipline. A new session is built completely in a slot that
 * nobody can reach, linked into its index chain, and only then given a
 * live state with a release store: a finder that sees the state sees every
 * field. The fields and both SDPs live in one record block (reg.h says
 * why); any change to them builds a whole new record from the current one
 * and swaps the slot's offset with one compare-and-swap, and a writer that
 * loses the race rebuilds on top of the winner's record, so concurrent
 * changes to different fields are all kept. The winner retires the old
 * record. Readers therefore see the old or the new record, never a mix,
 * and the old one stays intact until their read section ends. Copying the
 * whole record on an SDP replace (two or three KiB) costs less than the
 * extra cache miss that every read paid when each SDP had a block of its
 * own.
 *
 * Deletion starts by swapping the state word to REG_DELETED together with
 * the deleter's tag, which makes the session invisible at once and tells a
 * repair sweep who was responsible if the deleter dies half way. The rest
 * (retire blocks, unbind dialogs, unlink, retire the slot) is idempotent,
 * so a sweep can simply run it again.
 *
 * A replacer and a deleter can race on one slot. Both use sequentially
 * consistent operations on the two words involved (the field, the state)
 * in opposite orders, so at least one of them sees the other and the new
 * block is retired by somebody; the block's own state word (CAS from
 * USED) decides who.
 */
#include <sodium.h>
#include <stddef.h>
#include <unistd.h>

#include "reg.h"
#include "crashpoint.h"

#ifdef SHMREG_TESTING
void (*reg_test_after_swap)(shmreg *h, const unsigned char id[SHMREG_ID_BYTES]);
#endif

/* ------------------------------------------------------------ building blocks */

int reg_fields_check(const shmreg_fields *f, uint32_t mask)
{
    if (mask & ~(SHMREG_MASK_ALL | SHMREG_MASK_SDP_BOTH))
        return shmreg__fail(SHMREG_EINVAL, "field mask 0x%x has unknown bits", mask);
    if (f == NULL)
        return mask ? shmreg__fail(SHMREG_EINVAL, "NULL fields with a non-empty mask") : 0;
    if ((mask & SHMREG_MASK_SDP_BOTH) && f->sdp == NULL)
        return shmreg__fail(SHMREG_EINVAL, "SDP mask bits with a NULL fields.sdp");
    for (unsigned k = 0; k < 2; k++) {
        if (!(mask & SHMREG_MASK_SDP(k)))
            continue;
        if (f->sdp[k].len > SHMREG_MAX_SDP || (f->sdp[k].len && f->sdp[k].ptr == NULL))
            return shmreg__fail(SHMREG_EINVAL, "%s SDP of %zu bytes (limit %u) or with no bytes",
                                k ? "remote" : "local", f->sdp[k].len, SHMREG_MAX_SDP);
    }
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        if (!(mask & SHMREG_MASK(i)))
            continue;
        size_t max = i == SHMREG_FIELD_APP_DATA ? SHMREG_MAX_APPDATA : SHMREG_MAX_STR;
        if (f->str[i].len > max)
            return shmreg__fail(SHMREG_EINVAL, "field %u is %zu bytes, limit %zu", i, f->str[i].len, max);
        if (f->str[i].len && f->str[i].ptr == NULL)
            return shmreg__fail(SHMREG_EINVAL, "field %u has a length but no bytes", i);
    }
    return 0;
}

/* A record's payload may be no bigger than the largest heap block. */
#define REC_MAX_PAYLOAD ((uint64_t)shm_class_size(SHM_NCLASS - 1) - SHM_BLK_HDR)

static uint64_t sdp_build(shmreg *h, uint32_t si, shmreg_str sdp, int *err)
{
    uint64_t off = shm_alloc(&h->c, sizeof(reg_sdp) + sdp.len, si + 1);
    if (off == 0) {
        *err = shmreg__fail(SHMREG_EFULL, "registry heap full (SDP of %zu bytes)", sdp.len);
        return 0;
    }
    reg_sdp *d = reg_payload((shm_blk *)(h->c.seg.base + off));
    d->len = (uint32_t)sdp.len;
    memcpy(d->data, sdp.ptr, sdp.len);
    return off;
}

/* Free a record nobody was ever shown, with its outside SDPs. */
static void rec_free(shmreg *h, uint64_t off)
{
    uint64_t ext[2];
    reg_rec_outside(h, off, ext);
    for (unsigned k = 0; k < 2; k++)
        if (ext[k])
            shm_free(&h->c, ext[k]);
    shm_free(&h->c, off);
}

/* Every string field's bit in a change mask. A change with none of them
 * copies the old record's strings, back to back there, in one piece. */
#define REC_MASK_STRINGS ((1u << SHMREG_FIELD_STR_COUNT) - 1u)

/* What changes in a record: the fields selected by `mask` from `f`, the
 * SDPs selected by `sdp_mask` (bit k: side k) from `sdp`. */
typedef struct rec_change {
    const shmreg_fields *f;
    uint32_t mask;
    unsigned sdp_mask;
    const shmreg_str *sdp;
} rec_change;

/* Build a new record for slot `si`: change `arg` (a rec_change) applied to
 * a copy of the record at `old` (0: empty). The SDPs sit inline unless
 * the whole would outgrow the largest heap block; then the biggest go to
 * blocks of their own. 0 with *fresh, or SHMREG_EFULL, or SHMREG_ECORRUPT
 * from a bad `old` (reg_block_ops.build). */
static int rec_build(shmreg *h, uint32_t si, uint64_t old, const void *arg, uint64_t *fresh)
{
    const rec_change *c = arg;
    shmreg_str cur[SHMREG_FIELD_STR_COUNT] = {{0}}, body[2] = {{"", 0}, {"", 0}};
    uint16_t port[2] = {0, 0};
    int err = 0;
    *fresh = 0;
    if (old && (err = reg_rec_view(h, old, cur, port, body)) != 0)
        return err;
    if (old) { /* the copy below stalls on every cold line it starts from: ask for all now */
        shm_blk *ob = (shm_blk *)(h->c.seg.base + old); /* the view checked it is a block */
        shm_prefetch_range(reg_payload(ob), shm_blk_capacity(ob));
    }
    uint64_t strings = 0;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        if (c->mask & SHMREG_MASK(i))
            cur[i] = c->f->str[i];
        strings += cur[i].len;
    }
    if (c->mask & SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT))
        port[0] = c->f->local_rtp_port;
    if (c->mask & SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT))
        port[1] = c->f->remote_rtp_port;
    for (unsigned k = 0; k < 2; k++)
        if (c->sdp_mask & (1u << k))
            body[k] = c->sdp[k];
    /* Inline both if they fit; else put the bigger outside, then the other. */
    int inl[2] = {1, 1};
    uint64_t total = sizeof(reg_rec) + strings + body[0].len + body[1].len;
    while (total > REC_MAX_PAYLOAD) {
        unsigned k = inl[0] && (!inl[1] || body[0].len >= body[1].len) ? 0 : 1;
        inl[k] = 0;
        total -= body[k].len;
    }
    uint64_t ext[2] = {0, 0};
    for (unsigned k = 0; k < 2; k++)
        if (!inl[k] && (ext[k] = sdp_build(h, si, body[k], &err)) == 0)
            goto full;
    uint64_t off = shm_alloc(&h->c, total, si + 1);
    if (off == 0) {
        err = shmreg__fail(SHMREG_EFULL, "registry heap full (%llu bytes wanted)",
                           (unsigned long long)total);
        goto full;
    }
    reg_rec *r = reg_payload((shm_blk *)(h->c.seg.base + off));
    r->port[0] = port[0];
    r->port[1] = port[1];
    r->pad_ = 0;
    char *p = r->data;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        r->len[i] = (uint16_t)cur[i].len;
    if (old && !(c->mask & REC_MASK_STRINGS)) { /* the strings as they were: one copy */
        memcpy(p, cur[0].ptr, strings);
        p += strings;
    } else {
        for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
            if (cur[i].len)
                memcpy(p, cur[i].ptr, cur[i].len);
            p += cur[i].len;
        }
    }
    for (unsigned k = 0; k < 2; k++) {
        r->sdp_len[k] = (uint32_t)body[k].len;
        r->ext[k] = ext[k];
        if (inl[k] && body[k].len) {
            memcpy(p, body[k].ptr, body[k].len);
            p += body[k].len;
        }
    }
    *fresh = off;
    return 0;
full:
    for (unsigned k = 0; k < 2; k++)
        if (ext[k])
            shm_free(&h->c, ext[k]);
    return err;
}

/* USED and aux = si+1: still the slot's. */
void reg_retire_owned(shmreg *h, uint32_t si, uint64_t off)
{
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    if (b != NULL && b->aux == si + 1)
        reg_retire_used(h, off);
}

/* Retire record `off` of slot `si` and the SDP blocks it keeps outside. */
static void rec_retire(shmreg *h, uint32_t si, uint64_t off)
{
    uint64_t ext[2];
    reg_rec_outside(h, off, ext);
    for (unsigned k = 0; k < 2; k++)
        reg_retire_owned(h, si, ext[k]);
    reg_retire_owned(h, si, off);
}

/* Swap `field` from `expect` to `fresh` and let go of the old block.
 * Returns SHMREG_ECONFLICT when `expect` no longer matches (nothing
 * changed). *now receives the time stamped on the slot, for the caller's
 * event: it travels by value, so a change that fails after stamping
 * leaves nothing behind for the next event to pick up. */
static int swap_field(shmreg *h, uint32_t si, _Atomic uint64_t *field, const reg_block_ops *ops,
                      uint64_t expect, uint64_t fresh, uint64_t *now)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t old = expect;
    shm_blk *ob = old ? shm_blk_at(&h->c.seg, old) : NULL;
    uint64_t ost = ob ? atomic_load(&ob->state) : 0;
    if (ob)
        shm_intent_set(&h->c, old, ost, field); /* in case we die after the swap */
    if (!atomic_compare_exchange_strong(field, &old, fresh)) {
        shm_intent_clear(&h->c);
        return SHMREG_ECONFLICT;
    }
    SHM_CRASH_POINT("session_swap_swapped");
    if (field == &x->rec)
        reg_rec_hint_set(h, si, fresh);
    if (ob && SHM_KIND(ost) == SHM_BLK_USED && ob->aux == si + 1)
        ops->let_go(h, si, old);
    shm_intent_clear(&h->c);
    *now = shm_now_ns();
    shm_store(&x->updated_ns, *now);
#ifdef SHMREG_TESTING
    if (reg_test_after_swap)
        reg_test_after_swap(h, x->id);
#endif
    /* Deleted meanwhile? Then the deleter may have missed `fresh`. */
    if (!REG_LIVE(atomic_load(&x->state))) {
        ops->let_go(h, si, fresh);
        return shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
    }
    return 0;
}

int reg_change_field(shmreg *h, uint32_t si, _Atomic uint64_t *field, const reg_block_ops *ops,
                     const void *arg, uint64_t *now)
{
    for (;;) {
        uint64_t old = atomic_load(field), fresh;
        int rc = ops->build(h, si, old, arg, &fresh);
        if (rc == 0)
            rc = swap_field(h, si, field, ops, old, fresh, now);
        if (rc != SHMREG_ECONFLICT)
            return rc;
        if (fresh) /* never shown to anybody */
            ops->discard(h, fresh);
    }
}

static const reg_block_ops rec_ops = {rec_build, rec_free, rec_retire};

/* ------------------------------------------------------------ create */

/* Under the index stripe lock for `hash`: is a session with this ID, live
 * or still being published (state 0), in the slot the ID names or in the
 * chain? (`mine`, the slot being filled, is neither.) */
static int id_taken(shmreg *h, uint64_t hash, const unsigned char id[SHMREG_ID_BYTES], uint32_t mine)
{
    const shm_seg *s = &h->c.seg;
    uint32_t home = reg_id_slot(id);
    if (home < s->slots && home != mine) {
        reg_sess *y = reg_slot(h, home);
        uint64_t st = atomic_load(&y->state);
        if (memcmp(y->id, id, SHMREG_ID_BYTES) == 0 && (REG_LIVE(st) || st == 0))
            return 1;
    }
    uint64_t off = atomic_load(shm_index_head(&h->sessions, hash));
    for (uint32_t steps = 0; off && steps <= s->slots; steps++) {
        uint32_t i = shm_slot_index(s, off);
        if (i == UINT32_MAX)
            break;
        reg_sess *y = reg_slot(h, i);
        uint64_t st = atomic_load(&y->state);
        if (memcmp(y->id, id, SHMREG_ID_BYTES) == 0 && (REG_LIVE(st) || st == 0))
            return 1;
        off = atomic_load(&y->next);
    }
    return 0;
}

int reg_session_insert(shmreg *h, const reg_new *n, shmreg_id *id_out)
{
    int rc;
    uint64_t soff = shm_slot_alloc(&h->c, 0);
    if (soff == 0)
        return shmreg__fail(SHMREG_EFULL, "session table full (%u sessions)", h->c.seg.slots);
    uint32_t si = shm_slot_index(&h->c.seg, soff);
    reg_sess *x = reg_slot(h, si);
    x->hdr.aux = si + 1;
    SHM_CRASH_POINT("session_create_slot");
    rec_change c = {n->f, n->f ? SHMREG_MASK_ALL : 0, 3, n->sdp};
    uint64_t rec;
    if ((rc = rec_build(h, si, 0, &c, &rec)) != 0)
        goto undo;
    /* A recycled slot keeps REG_DELETED until the final store below, so
     * iterators skip it while we fill it. */
    SHM_CRASH_POINT("session_create_info");
    if (n->id)
        memcpy(x->id, n->id, SHMREG_ID_BYTES);
    else
        reg_session_id(h, si, x->id);
    shm_store(&x->rec, rec);
    reg_rec_hint_set(h, si, rec);
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        shm_store(&x->counter[i], n->counter ? n->counter[i] : 0);
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        shm_store(&x->dlg[i], 0);
    shm_store(&x->room, 0);
    for (unsigned i = 0; i < SHMREG_MAX_PROFILES_PER_SESSION; i++)
        shm_store(&x->prof[i], 0);
    shm_store(&x->timer, 0);
    shm_store(&x->vars, 0);
    shm_store(&x->ulink[0], 0);
    shm_store(&x->ulink[1], 0);
    shm_store(&x->uhash, 0);
    uint64_t now = shm_now_ns();
    x->created_ns = n->created_ns ? n->created_ns : now;
    shm_store(&x->updated_ns, n->updated_ns ? n->updated_ns : x->created_ns);
    x->config_gen = n->config_gen;
    x->owner_pid = n->owner_pid;
    shm_store(&x->flags, n->flags);
    shm_store(&x->owner_node, n->owner_node ? n->owner_node : h->node_id);
    uint64_t version = n->version ? n->version : 1;
    shm_store(&x->version, version);
    shm_store(&x->state, 0); /* unpublished */
    /* Found by user the moment it is live: its user records go in first
     * (a lookup passes over records of an unpublished slot). */
    if ((rc = reg_users_file_new(h, si, n->f)) != 0)
        goto undo;

    /* A fresh ID names this slot, so a lookup finds it without the index
     * (reg_index_needed), and is new by construction (96 random bits, and
     * its slot is ours): no lock, no link. A given one is looked for
     * under the stripe lock, so it can never be live twice, and linked
     * unless it happens to name this slot. */
    if (n->id) {
        uint64_t hash = reg_id_hash(x->id);
        shm_lock *l = shm_index_lock(&h->sessions, hash);
        if ((rc = reg_lock(h, l, "session index lock")) != 0)
            goto undo;
        if (id_taken(h, hash, x->id, si)) {
            shm_lock_drop(l);
            rc = shmreg__fail_lazy(SHMREG_EEXIST, "a live session has the ID", n->id);
            goto undo;
        }
        if (reg_index_needed(x->id, si))
            shm_index_push(&h->sessions, hash, soff, &x->next);
        shm_lock_drop(l);
    }
    SHM_CRASH_POINT("session_create_linked");
    unsigned char id[SHMREG_ID_BYTES];
    memcpy(id, x->id, SHMREG_ID_BYTES);
    /* Born bound: the key's stripe is held from the test that it is free
     * to the link, across the publication, so no other bind of the key
     * can come between (dialog.c, "binding"). */
    shm_lock *dl = NULL;
    uint64_t drec = 0;
    if (n->dkey) {
        dl = shm_index_lock(&h->dialogs, n->dkey->hash);
        if ((rc = reg_lock(h, dl, "dialog index lock")) != 0)
            goto undo;
        if ((rc = reg_dialog_absent(h, n->dkey, n->bound)) != 0 ||
            (drec = reg_dialog_make(h, si, id, n->dkey)) == 0) {
            shm_lock_drop(dl);
            rc = rc ? rc : SHMREG_EFULL;
            goto undo;
        }
        shm_store(&x->dlg[0], drec);
        SHM_CRASH_POINT("session_create_dialog");
    }
    /* The ID is copied out before publication (once live, the session may
     * be deleted and, we are in no read section, its slot reused), and
     * after the last refusal (a refused create leaves *id_out alone). */
    if (id_out)
        memcpy(id_out->bytes, id, SHMREG_ID_BYTES);
    shm_note_set(&h->c, (uint64_t)si + 1); /* live before its event: reg_dead_note */
    shm_store(&x->state, (uint64_t)n->state);
    SHM_CRASH_POINT("session_create_published");
    if (dl) {
        reg_dialog_link_new(h, n->dkey, drec);
        shm_lock_drop(dl);
    }
    if (n->event) /* 0: the caller announces it (an import, once complete) */
        reg_event(h, n->created_ns ? 0 : now, n->event, id, 0, n->state, 0, version);
    if (n->event == SHMREG_EV_SESSION_CREATED && /* a new call: its state's timeout */
        atomic_load_explicit(&h->shared->policy_after[n->state], memory_order_relaxed)) {
        shm_read_enter(&h->c);
        if (REG_LIVE(atomic_load(&x->state)) && memcmp(x->id, id, SHMREG_ID_BYTES) == 0)
            reg_timer_policy_apply(h, si, n->state, now);
        shm_read_leave(&h->c);
    }
    shm_note_end(&h->c); /* announced */
    return 0;
undo:
    /* Never published: nobody can have seen these blocks (the user
     * records, linked, are retired: a lookup may stand on one). */
    if (n->id)
        reg_index_unlink(h, si); /* if a given ID was linked before a later refusal */
    reg_users_forget(h, si);
    if (rec)
        rec_free(h, rec);
    shm_free(&h->c, soff);
    return rc;
}

/* A new call, bound to the dialog of `k` when it is not NULL. */
static int create_new(shmreg *h, const shmreg_fields *f, const reg_dkey *k, shmreg_id *id_out)
{
    int rc;
    if (id_out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id_out");
    if ((rc = reg_fields_check(f, f ? SHMREG_MASK_ALL | (f->sdp ? SHMREG_MASK_SDP_BOTH : 0) : 0)) != 0)
        return rc;
    shmreg_id bound;
    if (k) {
        /* Already bound (a retransmission, most often): say so before a
         * record is built. Lock-free, so only a first answer: the one
         * that counts is taken again under the stripe lock. */
        shm_read_enter(&h->c);
        rc = reg_dialog_absent(h, k, id_out);
        shm_read_leave(&h->c);
        if (rc)
            return rc;
    }
    reg_new n = {
        .f = f,
        .config_gen = atomic_load(&h->shared->config_gen),
        .owner_pid = (int32_t)h->pid,
        .state = SHMREG_STATE_INITIATING,
        .event = SHMREG_EV_SESSION_CREATED,
        .dkey = k,
        .bound = &bound,
    };
    if (f && f->sdp)
        for (unsigned i = 0; i < 2; i++)
            n.sdp[i] = f->sdp[i];
    rc = reg_session_insert(h, &n, id_out);
    if (rc == SHMREG_EEXIST && k)
        *id_out = bound;
    return rc;
}

int shmreg_session_create(shmreg *h, const shmreg_fields *f, shmreg_id *id_out)
{
    int rc = shmreg__usable(h);
    return rc ? rc : create_new(h, f, NULL, id_out);
}

int shmreg_session_create_bound(shmreg *h, const shmreg_fields *f, shmreg_str call_id,
                                shmreg_str local_tag, shmreg_str remote_tag, shmreg_id *id_out)
{
    reg_dkey k;
    int rc = shmreg__usable(h);
    if (rc == 0 && (rc = reg_dialog_key(h, call_id, local_tag, remote_tag, &k)) == 0)
        rc = create_new(h, f, &k, id_out);
    return rc;
}

/* ------------------------------------------------------------ update */

int shmreg_session_update(shmreg *h, const shmreg_id *id, const shmreg_fields *f, uint32_t mask)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL || f == NULL || mask == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL id/fields or empty mask");
    if ((rc = reg_fields_check(f, mask)) != 0)
        return rc;
    uint32_t si;
    uint64_t st, now;
    uint32_t fields = mask & SHMREG_MASK_ALL;
    unsigned sdps = (mask & SHMREG_MASK_SDP_BOTH) / SHMREG_MASK_SDP(0); /* bit k: SDP k */
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) == 0) {
        rec_change c = {f, fields, sdps, f->sdp};
        rc = reg_change_field(h, si, &reg_slot(h, si)->rec, &rec_ops, &c, &now);
        if (rc == 0 && (mask & (SHMREG_MASK(SHMREG_FIELD_FROM_URI) | SHMREG_MASK(SHMREG_FIELD_TO_URI))))
            reg_users_sync(h, si); /* a failure here leaves a lookup stale: check repairs */
        if (rc == 0) /* one change: its events share a version and one claim */
            reg_event_update(h, now, id->bytes, fields, sdps, reg_changed(h, si));
    }
    shm_read_leave(&h->c);
    return rc;
}

int reg_session_rewrite(shmreg *h, uint32_t si, const shmreg_fields *f, const shmreg_str sdp[2])
{
    uint64_t now;
    rec_change c = {f, SHMREG_MASK_ALL, 3u, sdp};
    int rc = reg_change_field(h, si, &reg_slot(h, si)->rec, &rec_ops, &c, &now);
    if (rc == 0)
        reg_users_sync(h, si); /* as for an update: check repairs a failure */
    return rc;
}

/* ------------------------------------------------------------ SDP */

int shmreg_session_set_sdp(shmreg *h, const shmreg_id *id, int which, const void *sdp, size_t len)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (sdp && len <= SHMREG_MAX_SDP) /* the caller's bytes arrive while the slot does */
        shm_prefetch_range(sdp, len);
    if (id == NULL || (which != SHMREG_SDP_LOCAL && which != SHMREG_SDP_REMOTE))
        return shmreg__fail(SHMREG_EINVAL, "NULL id or unknown SDP side %d", which);
    if (len > SHMREG_MAX_SDP || (len && sdp == NULL))
        return shmreg__fail(SHMREG_EINVAL, "SDP of %zu bytes (limit %u) or NULL body", len,
                            SHMREG_MAX_SDP);
    uint32_t si;
    uint64_t st, now;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) == 0) {
        shmreg_str body[2] = {{"", 0}, {"", 0}};
        body[which] = (shmreg_str){len ? sdp : "", len};
        rec_change c = {NULL, 0, 1u << which, body};
        rc = reg_change_field(h, si, &reg_slot(h, si)->rec, &rec_ops, &c, &now);
        if (rc == 0)
            reg_event(h, now, SHMREG_EV_SDP_UPDATED, id->bytes, 0, 0, (uint32_t)which, reg_changed(h, si));
    }
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ state, counters */


int shmreg_session_transition(shmreg *h, const shmreg_id *id, int expected, int to, int *old)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL || expected < 0 || expected >= SHMREG_STATE_COUNT || to < 1 ||
        to >= SHMREG_STATE_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "NULL id or unknown state (expected %d, to %d)", expected, to);
    uint32_t si;
    uint64_t cur; /* the word reg_find validated: the move starts from it */
    int from;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &cur)) == 0) {
        reg_sess *x = reg_slot(h, si);
        rc = reg_machine_move(&reg_session_machine, &x->state, cur, expected, to, old, &from);
        if (rc == 0) {
            uint64_t now = shm_now_ns();
            shm_store(&x->updated_ns, now);
            reg_event(h, now, SHMREG_EV_STATE_CHANGED, id->bytes, from, to, 0, reg_changed(h, si));
            reg_timer_policy_apply(h, si, to, now);
            if (shmreg_state_is_final(to)) { /* a call that is over counts in no profile */
                SHM_CRASH_POINT("session_transition_final");
                reg_profiles_forget(h, si);
            }
        }
    }
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_session_counter_add(shmreg *h, const shmreg_id *id, int counter, uint64_t delta)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL || counter < 0 || counter >= SHMREG_CTR_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "NULL id or unknown counter %d", counter);
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) == 0)
        atomic_fetch_add_explicit(&reg_slot(h, si)->counter[counter], delta, memory_order_relaxed);
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ a dead changer */

void reg_dead_note(shm_ctx *c, uint64_t note)
{
    shmreg *h = (shmreg *)((char *)c - offsetof(shmreg, c));
    if (note == 0 || note > h->c.seg.slots)
        return; /* names no slot (a scribbled note): nothing to announce */
    uint32_t si = (uint32_t)(note - 1);
    reg_sess *x = reg_slot(h, si);
    unsigned char id[SHMREG_ID_BYTES];
    memcpy(id, x->id, SHMREG_ID_BYTES);
    uint64_t st = atomic_load(&x->state);
    if (REG_LIVE(st)) {
        /* Another node's copy: its owner's version orders it, and the
         * importer that died resyncs when it starts again. */
        if (reg_foreign_owner(h, atomic_load(&x->owner_node)))
            return;
        reg_event(h, 0, SHMREG_EV_SESSION_UPDATED, id, 0, 0, SHMREG_MASK_ALL, reg_changed(h, si));
    } else if (REG_STATE(st) == REG_DELETED) {
        reg_event(h, 0, SHMREG_EV_SESSION_DELETED, id, 0, 0, 0, reg_changed(h, si));
    }
}

/* ------------------------------------------------------------ delete */

void reg_finish_delete(shmreg *h, uint32_t si)
{
    reg_sess *x = reg_slot(h, si);
    reg_room_forget_session(h, si);
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
        uint64_t r = atomic_load(&x->dlg[i]);
        shm_blk *b = r ? shm_blk_at(&h->c.seg, r) : NULL;
        if (b == NULL)
            continue;
        /* Unlink, then take the reference: whoever clears it retires the
         * record (an unbind may race us for it). */
        if (reg_dialog_at(h, r))
            reg_dialog_unlink(h, r);
        reg_drop_ref(h, &x->dlg[i], r);
    }
    SHM_CRASH_POINT("session_delete_dialogs");
    reg_profiles_forget(h, si);
    reg_timer_arm(h, si, 0, 0, 0);
    reg_users_forget(h, si);
    reg_retire_owned(h, si, atomic_load(&x->vars));
    rec_retire(h, si, atomic_load(&x->rec));
    SHM_CRASH_POINT("session_delete_blocks");
    reg_index_unlink(h, si);
    SHM_CRASH_POINT("session_delete_unlinked");
    uint64_t st = atomic_load(&x->hdr.state);
    if (SHM_KIND(st) == SHM_BLK_USED)
        shm_retire(&h->c, shm_slot_off(&h->c.seg, si), st);
}

int shmreg_session_delete(shmreg *h, const shmreg_id *id)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id");
    uint32_t si;
    uint64_t cur; /* validated by reg_find; the CAS refreshes it */
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &cur)) == 0) {
        reg_sess *x = reg_slot(h, si);
        for (;;) {
            if (!REG_LIVE(cur)) {
                rc = shmreg__fail(SHMREG_ENOENT, "session already deleted");
                break;
            }
            if (atomic_compare_exchange_strong(&x->state, &cur, h->c.tag | REG_DELETED)) {
                SHM_CRASH_POINT("session_delete_marked");
                uint64_t v = reg_changed(h, si); /* before the slot can be reused */
                reg_finish_delete(h, si);
                reg_event(h, 0, SHMREG_EV_SESSION_DELETED, id->bytes, (int)REG_STATE(cur), 0, 0, v);
                break;
            }
        }
    }
    shm_read_leave(&h->c);
    return rc;
}

