/*
 * check.c — the full consistency check of a live registry, and the repair
 * sweep that reclaims what crashed processes left behind.
 *
 * The check runs beside working processes, so it must tell three things
 * apart: corruption (an offset out of bounds, a chain that loops, a live
 * session missing from the index), work in flight (a create or delete that
 * a live process is in the middle of), and leftovers of the dead (blocks
 * and half-done operations whose responsible handle is gone). Only the
 * first is a problem; the third is reported as leaked and, with
 * SHMREG_CHECK_REPAIR, reclaimed.
 *
 * "Whose responsibility" is read from the owner tag in each block's state
 * word, from a deleted session's state word (which carries the deleter's
 * tag), and from the intent a handle records before it unlinks a block.
 *
 * How: mark every block reachable from the live structure (sessions,
 * their blocks and dialogs), every block on a free list (walked under that
 * list's lock) and on a dead handle's limbo list (under the handle lock),
 * then look at every carved block that is not marked. Every repair is a
 * compare-and-swap on the exact state word observed, so a repair can never
 * take a block that changed hands since it was looked at.
 */
#include <stdio.h>
#include <stdlib.h>

#include "reg.h"

/* The check never waits for ever on a lock: one held this long (a stuck
 * or corrupt owner) is reported as a problem instead. */
#define CHECK_LOCK_WAIT_NS 2000000000ull

typedef struct check {
    shmreg *h;
    const shm_seg *s;
    int repair;
    shmreg_check_report *r;
    shmreg_problem_fn problem;
    void *arg;
    uint8_t *marks;          /* one bit per 16 bytes from off_slots */
    uint64_t nbits;
} check;

static void problem(check *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(check *k, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    k->r->problems++;
    if (k->problem)
        k->problem(k->arg, buf);
}

static uint64_t bit_of(check *k, uint64_t off)
{
    return (off - k->s->off_slots) / 16;
}

/* Mark a block; returns 0 if it was already marked (a second reference). */
static int mark(check *k, uint64_t off)
{
    uint64_t b = bit_of(k, off);
    if (b >= k->nbits)
        return 1;
    int was = (k->marks[b / 8] >> (b % 8)) & 1;
    k->marks[b / 8] |= (uint8_t)(1u << (b % 8));
    return !was;
}

static int marked(check *k, uint64_t off)
{
    uint64_t b = bit_of(k, off);
    return b < k->nbits && ((k->marks[b / 8] >> (b % 8)) & 1);
}

static void mark_cb(void *arg, uint64_t off)
{
    mark(arg, off);
}

static void bad_cb(void *arg, const char *what)
{
    problem(arg, "%s", what);
}

static void leak_cb(void *arg, uint64_t off)
{
    check *k = arg;
    k->r->leaked_blocks++;
    k->r->leaked_bytes += shm_class_size(((shm_blk *)(k->s->base + off))->cls);
    k->r->reclaimed_blocks += k->repair;
}

static int intent_live(check *k, uint64_t off)
{
    for (uint32_t i = 0; i < k->s->max_handles; i++)
        if (atomic_load(&k->s->handles[i].intent_off) == off && shm_handle_alive(k->s, i))
            return 1;
    return 0;
}

/* ------------------------------------------------------------ sessions */

static int in_index(check *k, uint32_t si)
{
    return shm_index_has(k->s, &k->h->sessions, reg_id_hash(reg_slot(k->h, si)->id),
                         shm_slot_off(k->s, si), reg_slot_link) == 1;
}

static void check_block_ref(check *k, uint32_t si, uint64_t off, const char *what)
{
    if (off == 0)
        return;
    shm_blk *b = shm_blk_at(k->s, off);
    if (b == NULL) {
        problem(k, "session slot %u: %s offset %llu is not a block", si, what, (unsigned long long)off);
        return;
    }
    if (b->aux != si + 1 || SHM_KIND(atomic_load(&b->state)) != SHM_BLK_USED) {
        /* A writer may have swapped the field and retired the block since
         * we read the field: only a problem if the field still holds it. */
        return;
    }
    if (!mark(k, off))
        problem(k, "session slot %u: %s block %llu referenced twice", si, what, (unsigned long long)off);
}

/* 1 when dialog record `rec` is in its index chain (or the chain is
 * broken before it: check_dlg_index names that, nothing is claimed). */
static int dialog_linked(check *k, uint64_t rec, const reg_dlg *d)
{
    return shm_index_has(k->s, &k->h->dialogs, d->hash, rec, reg_dialog_link) != 0;
}

/* A live session names a dialog record that its chain does not hold: a
 * bind that died between taking the session's reference and linking, or
 * an unbind that died between unlinking and clearing the reference. Both
 * hold the chain's stripe lock throughout, and a delete unlinks only after
 * marking the session deleted; so, under that lock, a record still
 * unlinked and still named by a still-live session is a dead process's
 * leftover. Repair completes it as an unbind: whoever clears the
 * reference retires the record (dialog.c). Returns 1 for a leftover. */
static int half_bound(check *k, reg_sess *x, unsigned i, uint64_t rec, const reg_dlg *d)
{
    if (memcmp(d->sid, x->id, SHMREG_ID_BYTES) != 0 || dialog_linked(k, rec, d))
        return 0; /* a record of another session is damage, named as such */
    shm_lock *l = shm_index_lock(&k->h->dialogs, d->hash);
    if (shm_lock_take_for(&k->h->c, l, CHECK_LOCK_WAIT_NS) < 0)
        return 0;
    int left = !dialog_linked(k, rec, d) && atomic_load(&x->dlg[i]) == rec &&
               REG_LIVE(atomic_load(&x->state));
    if (left) {
        shm_blk *b = shm_blk_at(k->s, rec);
        uint64_t st = atomic_load(&b->state), r = rec;
        k->r->leaked_blocks++;
        k->r->leaked_bytes += shm_class_size(b->cls);
        if (k->repair && atomic_compare_exchange_strong(&x->dlg[i], &r, 0) &&
            SHM_KIND(st) == SHM_BLK_USED && shm_retire(&k->h->c, rec, st) == 0)
            k->r->reclaimed_blocks++;
    }
    shm_lock_drop(l);
    return left;
}

static void check_call_control(check *k, uint32_t si, reg_sess *x);

static void check_session(check *k, uint32_t si)
{
    shmreg *h = k->h;
    reg_sess *x = reg_slot(h, si);
    uint64_t hst = atomic_load(&x->hdr.state);
    if (SHM_KIND(hst) != SHM_BLK_USED)
        return;
    uint64_t st = atomic_load(&x->state);
    mark(k, shm_slot_off(k->s, si));
    if (REG_LIVE(st)) {
        k->r->sessions++;
        uint32_t owner = atomic_load(&x->owner_node);
        if (reg_owner_impossible(h, owner)) {
            /* Without node IDs every session is this registry's own: the
             * repair can say so. Over the largest ID it cannot know whose. */
            int fix = k->repair && h->node_id == 0 && owner <= SHMREG_NODE_MAX &&
                      atomic_compare_exchange_strong(&x->owner_node, &owner, 0);
            problem(k, "session slot %u names owner node %u, impossible here%s", si, owner,
                    fix ? " (repaired: its own)" : "");
        }
        int want = reg_index_needed(x->id, si);
        if (in_index(k, si) != want && REG_LIVE(atomic_load(&x->state)))
            problem(k, want ? "session slot %u is live, away from the slot its ID names, "
                              "but missing from the index"
                            : "session slot %u is in the slot its ID names, yet linked in the index",
                    si);
        shmreg_str str[SHMREG_FIELD_STR_COUNT], sdp[2];
        uint16_t port[2];
        uint64_t rec = atomic_load(&x->rec), ext[2];
        if (reg_rec_view(h, rec, str, port, sdp) != 0)
            problem(k, "session slot %u: bad record block: %s", si, shmreg_errmsg());
        check_block_ref(k, si, rec, "record");
        reg_rec_outside(h, rec, ext);
        for (int i = 0; i < 2; i++)
            if (ext[i])
                check_block_ref(k, si, ext[i], i ? "remote SDP" : "local SDP");
        for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
            uint64_t r = atomic_load(&x->dlg[i]);
            if (r == 0)
                continue;
            reg_dlg *d = reg_dialog_at(h, r);
            if (d == NULL) {
                problem(k, "session slot %u: dialog reference %llu is not a record", si,
                        (unsigned long long)r);
                continue;
            }
            if (d->slot != si || memcmp(d->sid, x->id, SHMREG_ID_BYTES) != 0)
                problem(k, "session slot %u: dialog record %llu belongs elsewhere", si,
                        (unsigned long long)r);
            mark(k, r);
            if (!half_bound(k, x, i, r, d))
                k->r->dialogs++;
        }
        check_call_control(k, si, x);
        return;
    }
    /* Not live: a create or delete in progress, or abandoned by the dead. */
    unsigned s8 = REG_STATE(st);
    uint64_t who = s8 == REG_DELETED ? SHM_TAG(st) : SHM_TAG(hst);
    if (s8 != 0 && s8 != REG_DELETED) {
        problem(k, "session slot %u has unknown state 0x%x", si, s8);
        return;
    }
    if (shm_tag_alive(k->s, who))
        return; /* in flight */
    k->r->leaked_blocks++;
    k->r->leaked_bytes += SHM_SLOT_BYTES;
    if (k->repair && atomic_compare_exchange_strong(&x->state, &st, h->c.tag | REG_DELETED)) {
        reg_finish_delete(h, si);
        k->r->reclaimed_blocks++;
    }
}

/* The call-control blocks a live session names: memberships (listed
 * or not), its variables. Timers, pairs and user records are marked by
 * the walks of their indexes. */
static void check_call_control(check *k, uint32_t si, reg_sess *x)
{
    for (unsigned i = 0; i < SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        uint64_t m = atomic_load(&x->prof[i]);
        if (m && reg_member_at(k->s, m) == NULL) {
            problem(k, "session slot %u: membership %llu is not a record", si, (unsigned long long)m);
        } else if (m) {
            /* A dead joiner's or leaver's leftover: reclaimed by repair. */
            if (reg_profile_member_check(k->h, x, i, k->repair)) {
                k->r->leaked_blocks++;
                k->r->leaked_bytes += shm_class_size(shm_blk_at(k->s, m)->cls);
                k->r->reclaimed_blocks += k->repair && atomic_load(&x->prof[i]) != m;
            }
            if (atomic_load(&x->prof[i]) == m)
                mark(k, m);
        }
    }
    uint64_t v = atomic_load(&x->vars);
    uint32_t n;
    if (reg_vars_view(k->h, v, &n, NULL, NULL) != 0)
        problem(k, "session slot %u: bad variables block: %s", si, shmreg_errmsg());
    check_block_ref(k, si, v, "variables");
}

/* ------------------------------------------------------------ index chains */

static void check_sess_index(check *k)
{
    const shm_seg *s = k->s;
    const shm_index *ix = &k->h->sessions;
    for (uint32_t b = 0; b < ix->buckets; b++) {
        uint64_t n = atomic_load(&ix->bucket[b]);
        for (uint32_t steps = 0; n; steps++) {
            uint32_t si = shm_slot_index(s, n);
            if (si == UINT32_MAX || steps > s->slots) {
                problem(k, "session index bucket %u: chain broken or looping", b);
                break;
            }
            reg_sess *x = reg_slot(k->h, si);
            if ((reg_id_hash(x->id) & (ix->buckets - 1)) != b && REG_LIVE(atomic_load(&x->state)))
                problem(k, "session slot %u is chained in bucket %u, hashes elsewhere", si, b);
            n = atomic_load(&x->next);
        }
    }
}

static int referenced_by_session(check *k, uint64_t rec, reg_dlg *d)
{
    reg_sess *x = reg_slot(k->h, d->slot);
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        if (atomic_load(&x->dlg[i]) == rec)
            return 1;
    return 0;
}

static void check_dlg_index(check *k)
{
    const shm_seg *s = k->s;
    const shm_index *ix = &k->h->dialogs;
    for (uint32_t b = 0; b < ix->buckets; b++) {
        uint64_t off = atomic_load(&ix->bucket[b]);
        for (uint64_t steps = 0; off; steps++) {
            reg_dlg *d = reg_dialog_at(k->h, off);
            if (d == NULL || steps > shm_walk_limit(s)) {
                problem(k, "dialog index bucket %u: chain broken at %llu", b, (unsigned long long)off);
                break;
            }
            uint64_t next = atomic_load(&d->next);
            if ((d->hash & (ix->buckets - 1)) != b)
                problem(k, "dialog record %llu is chained in bucket %u, hashes elsewhere",
                        (unsigned long long)off, b);
            if (!referenced_by_session(k, off, d)) {
                /* Unbind or delete in flight, or abandoned by the dead. */
                reg_sess *x = reg_slot(k->h, d->slot);
                uint64_t st = atomic_load(&x->state);
                int flight = intent_live(k, off) ||
                             (REG_STATE(st) == REG_DELETED && shm_tag_alive(s, SHM_TAG(st)));
                shm_blk *blk = shm_blk_at(s, off);
                uint64_t bst = atomic_load(&blk->state);
                if (!flight && SHM_KIND(bst) == SHM_BLK_USED && !referenced_by_session(k, off, d)) {
                    k->r->leaked_blocks++;
                    k->r->leaked_bytes += shm_class_size(blk->cls);
                    if (k->repair && reg_dialog_unlink(k->h, off)) {
                        if (shm_retire(&k->h->c, off, bst) == 0)
                            k->r->reclaimed_blocks++;
                    }
                }
                mark(k, off);
            }
            off = next;
        }
    }
}

/* ------------------------------------------------------------ lists */

static void check_lock(check *k, const shm_lock *l, const char *what, unsigned i)
{
    if (!shm_lock_word_ok(k->s, l))
        problem(k, "%s %u: lock word 0x%x names no holder", what, i, (unsigned)atomic_load(&l->word));
}

/* The control area and page table, read without locks: every lock word
 * one the engine writes, every page handed to a real (class, shard) and
 * carved no further than it holds, every carving cursor on a page of its
 * own list. (Without this, a cursor past the heap was found by the next
 * allocation, which carved the event ring's header.) */
static void check_control(check *k)
{
    const shm_seg *s = k->s;
    const shm_control *c = s->ctl;
    check_lock(k, &c->page_lock, "page", 0);
    check_lock(k, &c->handle_lock, "handle table", 0);
    for (unsigned i = 0; i < SHM_STRIPES; i++) {
        check_lock(k, &k->h->sessions.stripe[i], "session index stripe", i);
        check_lock(k, &k->h->dialogs.stripe[i], "dialog index stripe", i);
    }
    uint32_t np = atomic_load(&s->hdr->pages_used);
    if (np > s->heap_pages)
        problem(k, "%u heap pages in use, of %u", np, s->heap_pages);
    for (uint32_t p = 0; p < np && p < s->heap_pages; p++) {
        unsigned cls, shard;
        if (shm_page_owner(s, p, &cls, &shard) != 0)
            problem(k, "heap page %u: descriptor 0x%x names no class and shard", p,
                    (unsigned)atomic_load(&s->pages[p].cls));
        else if (atomic_load(&s->pages[p].carved) > SHM_PAGE_BYTES / shm_class_size(cls))
            problem(k, "heap page %u: %u blocks carved, more than it holds", p,
                    (unsigned)atomic_load(&s->pages[p].carved));
    }
    uint32_t per = (s->slots + SHM_SHARDS - 1) / SHM_SHARDS;
    for (unsigned sh = 0; sh < SHM_SHARDS; sh++) {
        const shm_freelist *fl = &c->slots[sh];
        check_lock(k, &fl->lock, "slot list", sh);
        if (fl->carved > per)
            problem(k, "slot list %u: %u slots carved, more than its %u", sh, fl->carved, per);
        for (unsigned cl = 0; cl < SHM_NCLASS; cl++) {
            fl = &c->heap[cl][sh];
            check_lock(k, &fl->lock, "heap list", cl * SHM_SHARDS + sh);
            if (fl->cur_page && shm_list_cursor(s, fl) == NULL)
                problem(k, "free list %u/%u: carving cursor %u names no page of this list", cl, sh,
                        fl->cur_page);
        }
    }
}

static void check_free_lists(check *k)
{
    const shm_seg *s = k->s;
    for (unsigned c = 0; c <= SHM_NCLASS; c++) {
        for (unsigned sh = 0; sh < SHM_SHARDS; sh++) {
            shm_freelist *fl = c < SHM_NCLASS ? &s->ctl->heap[c][sh] : &s->ctl->slots[sh];
            int lrc = shm_list_lock_for(&k->h->c, fl, CHECK_LOCK_WAIT_NS);
            if (lrc < 0) {
                problem(k, "free list %u/%u: lock %s", c, sh,
                        lrc == SHM_EBUSY ? "held for over 2 s" : "is corrupt");
                continue;
            }
            /* A cursor naming no page of this list is dropped (reported
             * by check_control). */
            if (k->repair && c < SHM_NCLASS && fl->cur_page && shm_list_cursor(s, fl) == NULL)
                fl->cur_page = 0;
            uint64_t n = 0;
            int bad = 0;
            for (uint64_t off = fl->head; off; n++) {
                shm_blk *b = shm_blk_at(s, off);
                if (b == NULL || n > shm_walk_limit(s) || SHM_KIND(atomic_load(&b->state)) != SHM_BLK_FREE) {
                    problem(k, "free list %u/%u: bad entry %llu", c, sh, (unsigned long long)off);
                    bad = 1;
                    break;
                }
                mark(k, off);
                off = atomic_load(&b->link);
            }
            if (n != fl->nfree)
                problem(k, "free list %u/%u holds %llu blocks, counts %llu", c, sh,
                        (unsigned long long)n, (unsigned long long)fl->nfree);
            /* Reported above; now cut there: the sweep below gives back
             * what was beyond. */
            if (k->repair && (bad || n != fl->nfree))
                shm_list_repair(s, fl);
            if (c < SHM_NCLASS)
                k->r->heap_blocks_free += n;
            shm_lock_drop(&fl->lock);
        }
    }
}

/* Before anything is looked at: take each list's lock once, which
 * finishes (or undoes) a step its dead owner left half done, so that a
 * slot whose pop is undone there is not taken for a leaked session. A
 * lock held by someone alive is skipped after a moment long enough to
 * judge its holder: check_free_lists reports it. */
static void recover_free_lists(check *k)
{
    const shm_seg *s = k->s;
    for (unsigned c = 0; c <= SHM_NCLASS; c++)
        for (unsigned sh = 0; sh < SHM_SHARDS; sh++) {
            shm_freelist *fl = c < SHM_NCLASS ? &s->ctl->heap[c][sh] : &s->ctl->slots[sh];
            if (shm_list_lock_for(&k->h->c, fl, 2 * SHM_LOCK_JUDGE_NS) == 0)
                shm_lock_drop(&fl->lock);
        }
}

/* Limbo lists of handles that are not alive are quiet: walk them under
 * the handle lock (reapers take it too). Live handles' lists are their
 * own business: RETIRED blocks with a live tag are taken to be on them. */
static void check_limbo(check *k)
{
    const shm_seg *s = k->s;
    int lrc = shm_lock_take_for(&k->h->c, &s->ctl->handle_lock, CHECK_LOCK_WAIT_NS);
    if (lrc < 0) {
        problem(k, "handle table lock %s", lrc == SHM_EBUSY ? "held for over 2 s" : "is corrupt");
        return;
    }
    for (uint32_t i = 0; i < s->max_handles; i++) {
        if (shm_handle_alive(s, i))
            continue;
        uint64_t steps = 0;
        for (uint64_t off = atomic_load(&s->handles[i].limbo_head); off; steps++) {
            shm_blk *b = shm_blk_at(s, off);
            if (b == NULL || steps > shm_walk_limit(s)) {
                problem(k, "handle %u: limbo list broken at %llu", i, (unsigned long long)off);
                break;
            }
            mark(k, off);
            off = atomic_load(&b->link);
        }
    }
    shm_lock_drop(&s->ctl->handle_lock);
}

/* ------------------------------------------------------------ the rest */

static int dead_intent(check *k, uint64_t off, uint64_t st, shm_blk *b)
{
    for (uint32_t i = 0; i < k->s->max_handles; i++) {
        shm_handle *x = &k->s->handles[i];
        if (atomic_load(&x->intent_off) == off && atomic_load(&x->intent_state) == st &&
            atomic_load(&x->intent_stamp) == atomic_load(&b->stamp) && !shm_handle_alive(k->s, i))
            return 1;
    }
    return 0;
}

static void sweep_block(void *arg, uint64_t off, shm_blk *b)
{
    check *k = arg;
    uint64_t st = atomic_load(&b->state);
    unsigned kind = SHM_KIND(st);
    if (shm_slot_index(k->s, off) == UINT32_MAX && kind != SHM_BLK_FREE)
        k->r->heap_blocks_used++;
    /* Slots in use are check_session's; a retired or freeing slot that no
     * list holds (its dead owner stopped between two steps) is a leak. */
    if (marked(k, off) || (shm_slot_index(k->s, off) != UINT32_MAX && kind == SHM_BLK_USED))
        return;
    int leaked = 0;
    if (kind == SHM_BLK_USED)
        leaked = !shm_tag_alive(k->s, SHM_TAG(st)) || dead_intent(k, off, st, b);
    else if (kind == SHM_BLK_RETIRED)
        leaked = !shm_tag_alive(k->s, SHM_TAG(st));
    else if (kind == SHM_BLK_FREE || kind == SHM_BLK_FREEING)
        leaked = 1; /* off every list: a list was cut at a bad entry */
    if (!leaked)
        return;
    k->r->leaked_blocks++;
    k->r->leaked_bytes += shm_class_size(b->cls);
    if (!k->repair)
        return;
    if (kind == SHM_BLK_USED || kind == SHM_BLK_RETIRED) {
        /* Through limbo, not straight to a free list: a reader may still
         * be looking at a block its dead owner unlinked a moment ago. */
        if (shm_retire(&k->h->c, off, st) == 0)
            k->r->reclaimed_blocks++;
    } else {
        shm_freelist *fl = shm_blk_list(k->s, off);
        if (fl == NULL || shm_list_lock_for(&k->h->c, fl, CHECK_LOCK_WAIT_NS) < 0)
            return;
        /* The list was walked (and cut at its first bad entry) under this
         * lock a moment ago, but it may have changed since: walk it with
         * the same checks, never through a raw offset. */
        int listed = 0;
        shm_blk *x;
        for (uint64_t o = fl->head, n = 0; o && n <= fl->nfree && (x = shm_blk_at(k->s, o)) != NULL;
             o = atomic_load(&x->link), n++)
            listed |= o == off;
        if (!listed && atomic_load(&b->state) == st) {
            atomic_store(&b->state, k->h->c.tag | SHM_BLK_USED);
            shm_lock_drop(&fl->lock);
            shm_free(&k->h->c, off);
            k->r->reclaimed_blocks++;
        } else {
            shm_lock_drop(&fl->lock);
        }
    }
}

static void count_handles(check *k)
{
    uint32_t top = 0;
    for (uint32_t i = 0; i < k->s->max_handles; i++) {
        unsigned kind = SHM_H_KIND(atomic_load(&k->s->handles[i].word));
        top = kind != SHM_H_FREE ? i + 1 : top;
        /* An orphan is a closed handle still handing back memory, not a
         * dead process's. */
        if ((kind == SHM_H_ACTIVE || kind == SHM_H_CLAIMING) && !shm_handle_alive(k->s, i))
            k->r->stale_handles++;
    }
    /* Readers in slots above the mark would go unseen by reclamation.
     * Loaded after the slots: a claim raises the mark before taking its
     * slot, so a slot seen in use has its mark seen too. */
    uint32_t hwm = shm_handles_used(k->s);
    if (top > hwm) {
        problem(k, "handle slot %u is in use above the handle high-water mark %u", top - 1, hwm);
        if (k->repair)
            shm_handles_raise(k->s, top);
    }
}

int shmreg_check(shmreg *h, unsigned flags, shmreg_check_report *report, shmreg_problem_fn problem_fn,
                 void *arg, void (*progress)(void *arg, uint64_t done, uint64_t total))
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (flags & ~SHMREG_CHECK_REPAIR)
        return shmreg__fail(SHMREG_EINVAL, "unknown check flags 0x%x", flags);
    shmreg_check_report dummy;
    check k = {.h = h, .s = &h->c.seg, .repair = flags & SHMREG_CHECK_REPAIR,
               .r = report ? report : &dummy, .problem = problem_fn, .arg = arg};
    memset(k.r, 0, sizeof *k.r);

    /* Bind the header again, as a new handle would, so a header scribbled
     * since open is named here. */
    char why[256];
    shmreg again = {.map = h->map, .map_size = h->map_size};
    if (reg_layout_bind(&again, why, sizeof why) != 0) {
        problem(&k, "header: %s", why);
        return shmreg__fail(SHMREG_ECORRUPT, "header: %s", why);
    }
    count_handles(&k);
    check_control(&k);
    if (k.repair) {
        k.r->reaped_handles = (uint64_t)shm_reap(&h->c);
        shm_pages_repair(&h->c);
    }
    k.nbits = (k.s->size - k.s->off_slots) / 16 + 1;
    k.marks = calloc(k.nbits / 8 + 1, 1);
    if (k.marks == NULL)
        return shmreg__fail(SHMREG_ENOMEM, "no memory for the check's bitmap");

    recover_free_lists(&k);
    shm_read_enter(&h->c);
    uint64_t total = k.s->slots, step = total / 100 + 1;
    for (uint64_t i = reg_next_carved_slot(k.s, 0); i < k.s->slots;
         i = reg_next_carved_slot(k.s, i + 1)) {
        check_session(&k, (uint32_t)i);
        if (progress && i % step == 0)
            progress(arg, i, total);
    }
    if (progress)
        progress(arg, total, total);
    check_sess_index(&k);
    check_dlg_index(&k);
    reg_room_check(h, k.repair, mark_cb, bad_cb, leak_cb, &k);
    /* After the sessions: a delete that died has been finished above, so
     * its memberships no longer count. */
    reg_profile_check(h, k.repair, mark_cb, bad_cb, &k);
    reg_timer_check(h, mark_cb, bad_cb, &k);
    reg_user_check(h, k.repair, mark_cb, bad_cb, &k);
    check_free_lists(&k);
    check_limbo(&k);
    shm_blocks_walk(k.s, sweep_block, &k);
    shm_read_leave(&h->c);
    free(k.marks);

    if (k.repair)
        shm_reclaim(&h->c);
    return k.r->problems ? shmreg__fail(SHMREG_ECORRUPT, "%llu problem(s) found",
                                        (unsigned long long)k.r->problems)
                         : 0;
}
