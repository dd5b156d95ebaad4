/*
 * session.c — call sessions: create, find, read in place, update, state
 * transitions, counters, delete, iterate.
 *
 * Publication discipline. A new session is built completely in a slot that
 * nobody can reach, linked into its index chain, and only then given a
 * live state with a release store: a finder that sees the state sees every
 * field. A field group (the info block, an SDP) is replaced by building a
 * new block and swapping the slot's offset with one compare-and-swap; the
 * winner retires the old block. Readers therefore see the old or the new
 * block, never a mix, and the old one stays intact until their read
 * section ends.
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
#include <unistd.h>

#include "reg.h"
#include "crashpoint.h"

void reg_random_id(shmreg *h, unsigned char out[SHMREG_ID_BYTES])
{
    if (h->rnd_left < SHMREG_ID_BYTES) {
        randombytes_buf(h->rnd, sizeof h->rnd);
        h->rnd_left = sizeof h->rnd;
    }
    h->rnd_left -= SHMREG_ID_BYTES;
    memcpy(out, h->rnd + h->rnd_left, SHMREG_ID_BYTES);
    sodium_memzero(h->rnd + h->rnd_left, SHMREG_ID_BYTES); /* an ID handed out is not kept */
}

/* ------------------------------------------------------------ finding */

#ifdef SHMREG_TESTING
void (*reg_test_after_swap)(shmreg *h, const unsigned char id[SHMREG_ID_BYTES]);
#endif

int reg_lookup(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state)
{
    const shm_seg *s = &h->c.seg;
    uint32_t n = atomic_load_explicit(&s->sess_index[reg_id_bucket(h, id)], memory_order_acquire);
    for (uint32_t steps = 0; n; steps++) {
        if (n > s->max_sessions || steps > s->max_sessions)
            return shmreg__fail(SHMREG_ECORRUPT, "session index chain is broken");
        reg_sess *x = reg_slot(h, n - 1);
        if (memcmp(x->id, id, SHMREG_ID_BYTES) == 0) {
            uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
            if (!REG_LIVE(st))
                break;
            *si = n - 1;
            *state = st;
            return 0;
        }
        n = atomic_load_explicit(&x->next, memory_order_acquire);
    }
    return SHMREG_ENOENT;
}

int reg_find(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state)
{
    int rc = reg_lookup(h, id, si, state);
    return rc == SHMREG_ENOENT ? shmreg__fail_lazy(rc, "no such session", id) : rc;
}

int reg_index_unlink(shmreg *h, uint32_t si)
{
    const shm_seg *s = &h->c.seg;
    reg_sess *x = reg_slot(h, si);
    uint32_t b = reg_id_bucket(h, x->id);
    shm_lock *l = &s->ctl->sess_stripe[b % SHM_STRIPES];
    int found = 0;
    if (shm_lock_take(&h->c, l) < 0) /* chains change by single stores: always consistent */
        return 0;
    _Atomic uint32_t *link = &s->sess_index[b];
    for (uint32_t steps = 0, n = atomic_load(link); n && n <= s->max_sessions &&
                                                    steps <= s->max_sessions; steps++) {
        reg_sess *y = reg_slot(h, n - 1);
        if (n - 1 == si) {
            atomic_store(link, atomic_load(&y->next));
            found = 1;
            break;
        }
        link = &y->next;
        n = atomic_load(link);
    }
    shm_lock_drop(l);
    return found;
}

/* ------------------------------------------------------------ building blocks */

static int check_fields(const shmreg_fields *f, uint32_t mask)
{
    if (mask & ~SHMREG_MASK_ALL)
        return shmreg__fail(SHMREG_EINVAL, "field mask 0x%x has unknown bits", mask);
    if (f == NULL)
        return mask ? shmreg__fail(SHMREG_EINVAL, "NULL fields with a non-empty mask") : 0;
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

/* The string fields of an info block, bounds-checked against its block.
 * Returns 0 or SHMREG_ECORRUPT. */
int reg_info_view(shmreg *h, uint64_t off, shmreg_str str[SHMREG_FIELD_STR_COUNT],
                     uint16_t port[2])
{
    shm_blk *b = shm_blk_at(&h->c.seg, off);
    if (b == NULL)
        return shmreg__fail(SHMREG_ECORRUPT, "session info offset %llu is not a block",
                            (unsigned long long)off);
    reg_info *in = reg_payload(b);
    uint64_t cap = shm_blk_capacity(b), pos = sizeof(reg_info);
    if (cap < pos)
        return shmreg__fail(SHMREG_ECORRUPT, "session info block too small");
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        uint16_t len = in->len[i];
        if (len > SHMREG_MAX_STR || pos + len > cap)
            return shmreg__fail(SHMREG_ECORRUPT, "session info field %u overruns its block", i);
        str[i].ptr = (const char *)in + pos;
        str[i].len = len;
        pos += len;
    }
    port[0] = in->port[0];
    port[1] = in->port[1];
    return 0;
}

/* Build a new info block for slot `si`: fields selected by `mask` from
 * `f`, the rest from the block at `old` (0: empty). 0 when the heap is full. */
static uint64_t info_build(shmreg *h, uint32_t si, const shmreg_fields *f, uint32_t mask,
                           uint64_t old, int *err)
{
    shmreg_str cur[SHMREG_FIELD_STR_COUNT] = {{0}};
    uint16_t port[2] = {0, 0};
    *err = 0;
    if (old && (*err = reg_info_view(h, old, cur, port)) != 0)
        return 0;
    uint64_t total = sizeof(reg_info);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        if (mask & SHMREG_MASK(i))
            cur[i] = f->str[i];
        total += cur[i].len;
    }
    if (mask & SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT))
        port[0] = f->local_rtp_port;
    if (mask & SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT))
        port[1] = f->remote_rtp_port;
    uint64_t off = shm_alloc(&h->c, total, si + 1);
    if (off == 0) {
        *err = shmreg__fail(SHMREG_EFULL, "registry heap full (%llu bytes wanted)",
                            (unsigned long long)total);
        return 0;
    }
    reg_info *in = reg_payload((shm_blk *)(h->c.seg.base + off));
    in->port[0] = port[0];
    in->port[1] = port[1];
    char *p = in->data;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        in->len[i] = (uint16_t)cur[i].len;
        if (cur[i].len)
            memcpy(p, cur[i].ptr, cur[i].len);
        p += cur[i].len;
    }
    return off;
}

static uint64_t sdp_build(shmreg *h, uint32_t si, const void *sdp, size_t len, int *err)
{
    uint64_t off = shm_alloc(&h->c, sizeof(reg_sdp) + len, si + 1);
    if (off == 0) {
        *err = shmreg__fail(SHMREG_EFULL, "registry heap full (SDP of %zu bytes)", len);
        return 0;
    }
    reg_sdp *d = reg_payload((shm_blk *)(h->c.seg.base + off));
    d->len = (uint32_t)len;
    memcpy(d->data, sdp, len);
    return off;
}

/* Retire block `off` if it still belongs to slot `si` (USED, aux = si+1);
 * someone else may have taken it first, which is fine. */
static void retire_owned(shmreg *h, uint32_t si, uint64_t off)
{
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    if (b == NULL || b->aux != si + 1)
        return;
    uint64_t st = atomic_load(&b->state);
    if (SHM_KIND(st) == SHM_BLK_USED)
        shm_retire(&h->c, off, st);
}

#define ANY_OLD UINT64_MAX

/* Swap a slot field from `expect` (ANY_OLD: whatever it holds) to `fresh`
 * and retire the old block. Caller is inside a read section. Returns
 * SHMREG_ECONFLICT when `expect` no longer matches (nothing changed).
 * *now receives the time stamped on the slot, for the caller's event: it
 * travels by value, so a change that fails after stamping leaves nothing
 * behind for the next event to pick up. */
static int swap_field(shmreg *h, uint32_t si, _Atomic uint64_t *field, uint64_t expect,
                      uint64_t fresh, uint64_t *now)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t old = expect == ANY_OLD ? atomic_load(field) : expect;
    for (;;) {
        shm_blk *ob = old ? shm_blk_at(&h->c.seg, old) : NULL;
        uint64_t ost = ob ? atomic_load(&ob->state) : 0;
        if (ob)
            shm_intent_set(&h->c, old, ost, field); /* in case we die after the swap */
        if (atomic_compare_exchange_strong(field, &old, fresh)) {
            SHM_CRASH_POINT("session_swap_swapped");
            if (ob && SHM_KIND(ost) == SHM_BLK_USED && ob->aux == si + 1)
                shm_retire(&h->c, shm_off(&h->c.seg, ob), ost);
            shm_intent_clear(&h->c);
            break;
        }
        shm_intent_clear(&h->c);
        if (expect != ANY_OLD)
            return SHMREG_ECONFLICT;
    }
    *now = shm_now_ns();
    atomic_store(&x->updated_ns, *now);
#ifdef SHMREG_TESTING
    if (reg_test_after_swap)
        reg_test_after_swap(h, x->id);
#endif
    /* Deleted meanwhile? Then the deleter may have missed `fresh`. */
    if (!REG_LIVE(atomic_load(&x->state))) {
        retire_owned(h, si, fresh);
        return shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
    }
    return 0;
}

/* ------------------------------------------------------------ create */

int shmreg_session_create(shmreg *h, const shmreg_fields *f, shmreg_id *id_out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id_out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id_out");
    if ((rc = check_fields(f, f ? SHMREG_MASK_ALL : 0)) != 0)
        return rc;
    uint64_t soff = shm_slot_alloc(&h->c, 0);
    if (soff == 0)
        return shmreg__fail(SHMREG_EFULL, "session table full (%u sessions)", h->c.seg.max_sessions);
    uint32_t si = shm_slot_index(&h->c.seg, soff);
    reg_sess *x = reg_slot(h, si);
    x->hdr.aux = si + 1;
    SHM_CRASH_POINT("session_create_slot");
    uint64_t info = info_build(h, si, f, f ? SHMREG_MASK_ALL : 0, 0, &rc);
    if (info == 0) {
        shm_free(&h->c, soff); /* never published: nobody can see it */
        return rc;
    }
    /* A recycled slot keeps REG_DELETED until the final store below, so
     * iterators skip it while we fill it. */
    SHM_CRASH_POINT("session_create_info");
    reg_random_id(h, x->id);
    atomic_store(&x->info, info);
    atomic_store(&x->sdp[0], 0);
    atomic_store(&x->sdp[1], 0);
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        atomic_store(&x->counter[i], 0);
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        atomic_store(&x->dlg[i], 0);
    atomic_store(&x->room, 0);
    uint64_t now = shm_now_ns();
    x->created_ns = now;
    atomic_store(&x->updated_ns, x->created_ns);
    x->config_gen = atomic_load(&h->c.seg.hdr->config_gen);
    x->owner_pid = (int32_t)h->pid;
    x->flags = 0; /* a recycled slot may have been a restored session's */
    atomic_store(&x->state, 0); /* unpublished */

    const shm_seg *s = &h->c.seg;
    uint32_t b = reg_id_bucket(h, x->id);
    shm_lock *l = &s->ctl->sess_stripe[b % SHM_STRIPES];
    rc = reg_lock(h, l, "session index lock");
    if (rc) {
        shm_free(&h->c, info);
        shm_free(&h->c, soff);
        return rc;
    }
    atomic_store(&x->next, atomic_load(&s->sess_index[b]));
    atomic_store_explicit(&s->sess_index[b], si + 1, memory_order_release);
    shm_lock_drop(l);
    SHM_CRASH_POINT("session_create_linked");
    /* The ID is copied out before publication: once live, the session may
     * be deleted and (we are in no read section) its slot reused. */
    memcpy(id_out->bytes, x->id, SHMREG_ID_BYTES);
    atomic_store_explicit(&x->state, SHMREG_STATE_INITIATING, memory_order_release);
    reg_event(h, now, SHMREG_EV_SESSION_CREATED, id_out->bytes, 0, SHMREG_STATE_INITIATING, 0);
    return 0;
}

/* ------------------------------------------------------------ update */

int shmreg_session_update(shmreg *h, const shmreg_id *id, const shmreg_fields *f, uint32_t mask)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL || f == NULL || mask == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL id/fields or empty mask");
    if ((rc = check_fields(f, mask)) != 0)
        return rc;
    uint32_t si;
    uint64_t st, now;
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, id->bytes, &si, &st)) == 0) {
        reg_sess *x = reg_slot(h, si);
        /* Build from the current version; if another writer swaps it
         * first, rebuild on top of theirs so no update is lost. */
        for (;;) {
            uint64_t old = atomic_load(&x->info);
            uint64_t fresh = info_build(h, si, f, mask, old, &rc);
            if (fresh == 0)
                break;
            rc = swap_field(h, si, &x->info, old, fresh, &now);
            if (rc == 0)
                reg_event(h, now, SHMREG_EV_SESSION_UPDATED, id->bytes, 0, 0, mask);
            if (rc != SHMREG_ECONFLICT)
                break;
            shm_free(&h->c, fresh);
        }
    }
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ SDP */

int shmreg_session_set_sdp(shmreg *h, const shmreg_id *id, int which, const void *sdp, size_t len)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL || (which != SHMREG_SDP_LOCAL && which != SHMREG_SDP_REMOTE))
        return shmreg__fail(SHMREG_EINVAL, "NULL id or unknown SDP side %d", which);
    if (len > SHMREG_MAX_SDP || (len && sdp == NULL))
        return shmreg__fail(SHMREG_EINVAL, "SDP of %zu bytes (limit %u) or NULL body", len,
                            SHMREG_MAX_SDP);
    uint32_t si;
    uint64_t st, now;
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, id->bytes, &si, &st)) == 0) {
        uint64_t fresh = len ? sdp_build(h, si, sdp, len, &rc) : 0;
        if (rc == 0)
            rc = swap_field(h, si, &reg_slot(h, si)->sdp[which], ANY_OLD, fresh, &now);
        if (rc == 0)
            reg_event(h, now, SHMREG_EV_SDP_UPDATED, id->bytes, 0, 0, (uint32_t)which);
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
    uint64_t cur; /* the word reg_find validated; the CAS below refreshes it */
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, id->bytes, &si, &cur)) == 0) {
        reg_sess *x = reg_slot(h, si);
        for (;;) {
            if (!REG_LIVE(cur)) {
                rc = shmreg__fail(SHMREG_ENOENT, "session deleted");
                break;
            }
            int from = (int)REG_STATE(cur);
            if (old)
                *old = from;
            if (expected != SHMREG_STATE_ANY && from != expected) {
                rc = shmreg__fail(SHMREG_ECONFLICT, "state is %s, not %s", shmreg_state_name(from),
                                  shmreg_state_name(expected));
                break;
            }
            if (!shmreg_state_allowed(from, to)) {
                rc = shmreg__fail(SHMREG_ESTATE, "%s -> %s is not allowed", shmreg_state_name(from),
                                  shmreg_state_name(to));
                break;
            }
            if (atomic_compare_exchange_strong(&x->state, &cur, (uint64_t)to)) {
                uint64_t now = shm_now_ns();
                atomic_store(&x->updated_ns, now);
                reg_event(h, now, SHMREG_EV_STATE_CHANGED, id->bytes, from, to, 0);
                break;
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
    if ((rc = reg_find(h, id->bytes, &si, &st)) == 0)
        atomic_fetch_add_explicit(&reg_slot(h, si)->counter[counter], delta, memory_order_relaxed);
    shm_read_leave(&h->c);
    return rc;
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
        uint64_t st = atomic_load(&b->state);
        if (reg_dialog_at(h, r))
            reg_dialog_unlink(h, r);
        shm_intent_set(&h->c, r, st, &x->dlg[i]);
        if (atomic_compare_exchange_strong(&x->dlg[i], &r, 0) && SHM_KIND(st) == SHM_BLK_USED)
            shm_retire(&h->c, shm_off(&h->c.seg, b), st);
        shm_intent_clear(&h->c);
    }
    SHM_CRASH_POINT("session_delete_dialogs");
    retire_owned(h, si, atomic_load(&x->info));
    retire_owned(h, si, atomic_load(&x->sdp[0]));
    retire_owned(h, si, atomic_load(&x->sdp[1]));
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
    if ((rc = reg_find(h, id->bytes, &si, &cur)) == 0) {
        reg_sess *x = reg_slot(h, si);
        for (;;) {
            if (!REG_LIVE(cur)) {
                rc = shmreg__fail(SHMREG_ENOENT, "session already deleted");
                break;
            }
            if (atomic_compare_exchange_strong(&x->state, &cur, h->c.tag | REG_DELETED)) {
                SHM_CRASH_POINT("session_delete_marked");
                reg_finish_delete(h, si);
                reg_event(h, 0, SHMREG_EV_SESSION_DELETED, id->bytes, (int)REG_STATE(cur), 0, 0);
                break;
            }
        }
    }
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ reading */

int reg_sdp_view(shmreg *h, uint64_t off, shmreg_str *out)
{
    out->ptr = "";
    out->len = 0;
    if (off == 0)
        return 0;
    shm_blk *b = shm_blk_at(&h->c.seg, off);
    if (b == NULL)
        return shmreg__fail(SHMREG_ECORRUPT, "SDP offset %llu is not a block", (unsigned long long)off);
    reg_sdp *d = reg_payload(b);
    if (d->len > SHMREG_MAX_SDP || sizeof(reg_sdp) + (uint64_t)d->len > shm_blk_capacity(b))
        return shmreg__fail(SHMREG_ECORRUPT, "SDP length %u overruns its block", d->len);
    out->ptr = d->data;
    out->len = d->len;
    return 0;
}

/* Fill a view of slot si whose state word was `st`: the one load that
 * was checked live. The state is never loaded again here. */
static int session_view(shmreg *h, uint32_t si, uint64_t st, shmreg_session *out)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t info = atomic_load_explicit(&x->info, memory_order_acquire);
    uint64_t sdp0 = atomic_load_explicit(&x->sdp[0], memory_order_acquire);
    uint64_t sdp1 = atomic_load_explicit(&x->sdp[1], memory_order_acquire);
    /* The three blocks are independent cache misses: start them together
     * rather than one after the other (a prefetch never faults; the
     * checks below still validate every offset before use). */
    const shm_seg *s = &h->c.seg;
    if (info < s->size)
        __builtin_prefetch(s->base + info);
    if (sdp0 < s->size)
        __builtin_prefetch(s->base + sdp0);
    if (sdp1 < s->size)
        __builtin_prefetch(s->base + sdp1);
    memcpy(out->id.bytes, x->id, SHMREG_ID_BYTES);
    out->state = (int)REG_STATE(st);
    uint16_t port[2];
    int rc = reg_info_view(h, info, out->str, port);
    if (rc == 0)
        rc = reg_sdp_view(h, sdp0, &out->sdp[0]);
    if (rc == 0)
        rc = reg_sdp_view(h, sdp1, &out->sdp[1]);
    if (rc)
        return rc;
    out->local_rtp_port = port[0];
    out->remote_rtp_port = port[1];
    out->created_ns = x->created_ns;
    out->updated_ns = atomic_load_explicit(&x->updated_ns, memory_order_relaxed);
    out->owner_pid = x->owner_pid;
    out->config_gen = x->config_gen;
    out->flags = x->flags;
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        out->counter[i] = atomic_load_explicit(&x->counter[i], memory_order_relaxed);
    out->ndialogs = 0;
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        out->ndialogs += atomic_load_explicit(&x->dlg[i], memory_order_relaxed) != 0;
    /* The ABI's spare capacity: written, as empty, like every other byte. */
    memset(&out->str[SHMREG_FIELD_STR_COUNT], 0,
           sizeof out->str - SHMREG_FIELD_STR_COUNT * sizeof out->str[0]);
    memset(&out->counter[SHMREG_CTR_COUNT], 0,
           sizeof out->counter - SHMREG_CTR_COUNT * sizeof out->counter[0]);
    memset(out->reserved, 0, sizeof out->reserved);
    return 0;
}

int reg_need_read(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc == 0 && h->c.read_depth == 0)
        rc = shmreg__fail(SHMREG_ENOREAD, "this call returns pointers: open a read section first");
    return rc;
}

int shmreg_session_get(shmreg *h, const shmreg_id *id, shmreg_session *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (id == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id/out");
    uint32_t si;
    uint64_t st;
    if ((rc = reg_find(h, id->bytes, &si, &st)) != 0)
        return rc;
    /* Build the view from the word reg_find validated: loading it again
     * could see a delete that landed meanwhile (REG_DELETED, no state). */
    return session_view(h, si, st, out);
}

/* Slots are carved shard by shard; the cursor walks shard ranges up to
 * each shard's carved count, so iteration costs O(slots ever used). */
uint64_t reg_next_carved_slot(const shm_seg *s, uint64_t i)
{
    uint32_t per = (s->max_sessions + SHM_SHARDS - 1) / SHM_SHARDS;
    while (i < s->max_sessions) {
        uint64_t shard = i / per;
        if (i - shard * per < s->ctl->slots[shard].carved)
            return i;
        i = (shard + 1) * per;
    }
    return s->max_sessions;
}

int shmreg_session_next(shmreg *h, uint64_t *cursor, int state_filter, shmreg_session *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL || state_filter < 0 || state_filter >= SHMREG_STATE_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor/out or unknown state filter");
    const shm_seg *s = &h->c.seg;
    for (uint64_t i = reg_next_carved_slot(s, *cursor); i < s->max_sessions;
         i = reg_next_carved_slot(s, i + 1)) {
        reg_sess *x = reg_slot(h, (uint32_t)i);
        uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
        if (!REG_LIVE(st) || (state_filter && (int)REG_STATE(st) != state_filter))
            continue;
        *cursor = i + 1;
        return session_view(h, (uint32_t)i, st, out);
    }
    *cursor = s->max_sessions;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions", NULL);
}

/* Counts are derived from the slots, never kept in counters: a process
 * killed between a change and a counter update would leave the counter
 * wrong for ever, while the slots are always right. */
void reg_count(shmreg *h, uint64_t counts[SHMREG_STATE_COUNT], uint64_t *dialogs)
{
    memset(counts, 0, sizeof(uint64_t) * SHMREG_STATE_COUNT);
    if (dialogs)
        *dialogs = 0;
    const shm_seg *s = &h->c.seg;
    for (uint64_t i = reg_next_carved_slot(s, 0); i < s->max_sessions; i = reg_next_carved_slot(s, i + 1)) {
        reg_sess *x = reg_slot(h, (uint32_t)i);
        uint64_t st = atomic_load_explicit(&x->state, memory_order_relaxed);
        if (!REG_LIVE(st))
            continue;
        counts[REG_STATE(st)]++;
        counts[0]++;
        for (unsigned k = 0; dialogs && k < SHMREG_MAX_DIALOGS_PER_SESSION; k++)
            *dialogs += atomic_load_explicit(&x->dlg[k], memory_order_relaxed) != 0;
    }
}

int shmreg_session_counts(shmreg *h, uint64_t *counts, size_t n)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (counts == NULL || n == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL counts or n 0");
    uint64_t all[SHMREG_STATE_COUNT];
    reg_count(h, all, NULL);
    for (size_t i = 0; i < n; i++)
        counts[i] = i < SHMREG_STATE_COUNT ? all[i] : 0;
    return 0;
}
