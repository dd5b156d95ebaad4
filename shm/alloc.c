/*
 * alloc.c — a size-class allocator over the segment's heap, shared by
 * every attached process, with no global lock.
 *
 * Shape. The heap is cut into pages of SHM_PAGE_BYTES. A page is handed
 * once and for ever to one (size class, shard) pair and carved lazily into
 * blocks of that class, so a page costs RAM only as its blocks are used.
 * Each (class, shard) has its own free list under its own robust mutex; a
 * handle prefers the shard of its slot number and steals from the others
 * only when its own is empty, so four workers rarely meet on one lock.
 * Classes step by an eighth of a power of two from 128 on (64, 80, 96,
 * 112, 128, 144, 160, ... 256, 288, ...), bounding internal waste at 12.5%
 * and leaving about 6% on average (shm_class_shape in alloc.h).
 * Slots are a fixed table managed by the same free-list code.
 *
 * Crash-safety. Every free-list step is a short sequence of stores done
 * under the list's robust mutex, and it announces the block it works on in
 * `pending` first. If the owner dies, the next locker (EOWNERDEAD) looks at
 * `pending` and the block's state word and either completes the push or
 * leaves the pop as a USED block of a dead tag, which the sweep reclaims.
 * Taking a new page writes the page's class before bumping pages_used, so
 * a page is never counted without an owner; a page lost between the two
 * last steps is found and carved by shm_pages_repair().
 */
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "crashpoint.h"
#include "epoch.h"

/* The smallest class of at least `bytes`, SHM_NCLASS if none: the inverse
 * of shm_class_shape, computed rather than searched (create asks it for
 * every record). Above 128, with h the top bit of bytes - 1 and j = h - 3,
 * m = ((bytes - 1) >> j) + 1 is in 9..16; 16 is the next power's m = 8. */
static unsigned class_for(uint64_t bytes)
{
    if (bytes <= 128)
        return bytes <= 64 ? 0 : (unsigned)((bytes - 64 + 15) / 16);
    if (bytes > shm_class_size(SHM_NCLASS - 1))
        return SHM_NCLASS;
    unsigned j = 63 - (unsigned)__builtin_clzll(bytes - 1) - 3;
    unsigned m = (unsigned)((bytes - 1) >> j) + 1;
    if (m == 16) {
        m = 8;
        j++;
    }
    return 4 + (j - 4) * 8 + (m - 8);
}

static inline shm_blk *blk(const shm_seg *s, uint64_t off)
{
    return (shm_blk *)(s->base + off);
}

shm_freelist *shm_blk_list(const shm_seg *s, uint64_t off)
{
    uint32_t si = shm_slot_index(s, off);
    if (si != UINT32_MAX) {
        uint32_t per = (s->slots + SHM_SHARDS - 1) / SHM_SHARDS;
        return &s->ctl->slots[si / per];
    }
    unsigned cls, shard;
    if (shm_blk_at(s, off) == NULL ||
        shm_page_owner(s, (off - s->off_heap) / SHM_PAGE_BYTES, &cls, &shard) != 0)
        return NULL;
    return &s->ctl->heap[cls][shard];
}

shm_page_desc *shm_list_cursor(const shm_seg *s, const shm_freelist *fl)
{
    uint32_t p = fl->cur_page;
    unsigned cls, shard;
    if (p != 0 && p <= atomic_load(&s->hdr->pages_used) && shm_page_owner(s, p - 1, &cls, &shard) == 0 &&
        &s->ctl->heap[cls][shard] == fl)
        return &s->pages[p - 1];
    return NULL;
}

/* The page a heap list is carving; a cursor that names no page of this
 * very list (scribbled) is dropped, and the rest of its page, if it had
 * one, is left to shm_pages_repair(). */
static shm_page_desc *cur_page(const shm_seg *s, shm_freelist *fl)
{
    shm_page_desc *d = shm_list_cursor(s, fl);
    if (d == NULL)
        fl->cur_page = 0;
    return d;
}

/* --- free-list steps, each announced in fl->pending ---------------------- */

static void list_push_locked(const shm_seg *s, shm_freelist *fl, uint64_t off)
{
    shm_blk *b = blk(s, off);
    fl->pending = off;
    shm_store(&b->state, SHM_TAG(atomic_load(&b->state)) | SHM_BLK_FREEING);
    SHM_CRASH_POINT("alloc_push_freeing");
    shm_store(&b->link, fl->head);
    fl->head = off;
    fl->nfree++;
    SHM_CRASH_POINT("alloc_push_linked");
    shm_store(&b->state, SHM_BLK_FREE);
    fl->pending = 0;
}

static uint64_t list_pop_locked(const shm_seg *s, shm_freelist *fl, uint64_t tag, uint32_t aux,
                                uint64_t seq)
{
    uint64_t off = fl->head;
    if (off == 0)
        return 0;
    shm_blk *b = shm_blk_at(s, off);
    if (b == NULL || shm_blk_list(s, off) != fl || SHM_KIND(atomic_load(&b->state)) != SHM_BLK_FREE) {
        /* A corrupted list: drop it rather than hand out a bad block. The
         * check reports the blocks as leaked; repair puts them back. */
        fl->head = 0;
        fl->nfree = 0;
        return 0;
    }
    fl->pending = off;
    b->aux = aux;
    shm_store(&b->stamp, seq);
    shm_store(&b->state, tag | SHM_BLK_USED);
    SHM_CRASH_POINT("alloc_pop_stamped");
    fl->head = atomic_load(&b->link);
    /* The next pop's header, fetched while our caller fills this block:
     * a list's blocks were freed long ago as often as not, and the pop
     * that reads a cold header waits for it under the list's lock. A
     * prefetch never faults, so a scribbled link costs nothing. */
    if (fl->head < s->size)
        __builtin_prefetch(s->base + fl->head, 1);
    SHM_CRASH_POINT("alloc_pop_unlinked");
    fl->nfree--;
    fl->pending = 0;
    return off;
}

/* Finish the step a dead owner announced, then recount the list so the
 * statistics are exact again. */
void shm_list_repair(const shm_seg *s, shm_freelist *fl)
{
    uint64_t off = fl->pending;
    shm_blk *b = off && shm_blk_list(s, off) == fl ? shm_blk_at(s, off) : NULL;
    if (b) {
        unsigned kind = SHM_KIND(atomic_load(&b->state));
        if (kind == SHM_BLK_FREEING) {
            if (fl->head != off) {
                shm_store(&b->link, fl->head);
                fl->head = off;
            }
            shm_store(&b->state, SHM_BLK_FREE);
        } else if (kind == SHM_BLK_USED && fl->head == off) {
            /* The pop stamped the block but never unlinked it: undo. */
            shm_store(&b->state, SHM_BLK_FREE);
        }
    }
    fl->pending = 0;
    uint64_t n = 0, prev = 0;
    for (uint64_t o = fl->head; o; o = atomic_load(&blk(s, o)->link)) {
        shm_blk *x = shm_blk_at(s, o);
        if (x == NULL || shm_blk_list(s, o) != fl || SHM_KIND(atomic_load(&x->state)) != SHM_BLK_FREE ||
            n > shm_walk_limit(s)) {
            /* Cut at the first bad link; what lies beyond is reported as
             * leaked by the check and reclaimed by its repair. */
            if (prev)
                shm_store(&blk(s, prev)->link, 0);
            else
                fl->head = 0;
            break;
        }
        n++;
        prev = o;
    }
    fl->nfree = n;
}

int shm_list_lock_for(shm_ctx *c, shm_freelist *fl, uint64_t ns)
{
    int rc = shm_lock_take_for(c, &fl->lock, ns);
    if (rc == 1)
        shm_list_repair(&c->seg, fl);
    return rc < 0 ? rc : 0;
}

int shm_list_lock(shm_ctx *c, shm_freelist *fl)
{
    return shm_list_lock_for(c, fl, SHM_LOCK_WAIT_NS);
}

/* --- heap ---------------------------------------------------------------- */

static uint32_t take_page(shm_ctx *c, unsigned cls, unsigned shard)
{
    const shm_seg *s = &c->seg;
    if (shm_lock_take(c, &s->ctl->page_lock) < 0) /* pages_used is the commit: nothing to repair */
        return 0;
    uint32_t p = atomic_load(&s->hdr->pages_used);
    uint32_t got = 0;
    if (p < s->heap_pages) {
        shm_store(&s->pages[p].carved, 0);
        shm_store(&s->pages[p].cls, (cls + 1) | (shard << 8));
        SHM_CRASH_POINT("alloc_page_assigned");
        shm_store(&s->hdr->pages_used, p + 1);
        SHM_CRASH_POINT("alloc_page_counted");
        got = p + 1;
    }
    shm_lock_drop(&s->ctl->page_lock);
    return got;
}

static uint64_t carve_locked(shm_ctx *c, shm_freelist *fl, unsigned cls,
                             unsigned shard, uint64_t tag, uint32_t aux, uint64_t seq)
{
    const shm_seg *s = &c->seg;
    uint32_t size = shm_class_size(cls);
    uint32_t per_page = SHM_PAGE_BYTES / size;
    for (int tries = 0; tries < 2; tries++) {
        shm_page_desc *d = cur_page(s, fl);
        if (d) {
            uint32_t n = atomic_load(&d->carved);
            if (n < per_page) {
                uint64_t off = s->off_heap + (uint64_t)(fl->cur_page - 1) * SHM_PAGE_BYTES +
                               (uint64_t)n * size;
                shm_blk *b = blk(s, off);
                b->cls = cls;
                b->aux = aux;
                shm_store(&b->stamp, seq);
                shm_store(&b->link, 0);
                shm_store(&b->state, tag | SHM_BLK_USED);
                SHM_CRASH_POINT("alloc_carve_stamped");
                shm_store(&d->carved, n + 1); /* the commit */
                return off;
            }
        }
        uint32_t p = take_page(c, cls, shard);
        if (p == 0)
            return 0;
        fl->cur_page = p;
    }
    return 0;
}

static uint64_t alloc_once(shm_ctx *c, uint64_t payload, uint32_t aux)
{
    unsigned cls = class_for(payload + SHM_BLK_HDR);
    if (cls >= SHM_NCLASS)
        return 0;
    const shm_seg *s = &c->seg;
    for (unsigned i = 0; i < SHM_SHARDS; i++) {
        unsigned shard = (c->shard + i) % SHM_SHARDS;
        shm_freelist *fl = &s->ctl->heap[cls][shard];
        if (shm_list_lock(c, fl) < 0)
            continue;
        uint64_t off = list_pop_locked(s, fl, c->tag, aux, ++c->alloc_seq);
        if (off == 0 && i == 0)
            off = carve_locked(c, fl, cls, shard, c->tag, aux, c->alloc_seq);
        shm_lock_drop(&fl->lock);
        if (off)
            return off;
    }
    /* Other shards may still own partly carved pages. */
    for (unsigned i = 1; i < SHM_SHARDS; i++) {
        unsigned shard = (c->shard + i) % SHM_SHARDS;
        shm_freelist *fl = &s->ctl->heap[cls][shard];
        if (fl->cur_page == 0 || shm_list_lock(c, fl) < 0)
            continue;
        uint64_t off = fl->cur_page ? carve_locked(c, fl, cls, shard, c->tag, aux, c->alloc_seq) : 0;
        shm_lock_drop(&fl->lock);
        if (off)
            return off;
    }
    return 0;
}

/* When the heap or slot table looks full, our own limbo queue may hold
 * what we need, kept only by readers still in their sections: reclaim,
 * and while it still holds blocks give readers a moment to move on.
 * SHM_FULL_WAIT_NS bounds the whole of it in elapsed time, from the first
 * failed attempt: no sleep runs past the deadline, so the call returns
 * within the bound plus one wake-up's lateness. Full means full after
 * that. */
static uint64_t alloc_retry(shm_ctx *c, uint64_t (*once)(shm_ctx *, uint64_t, uint32_t),
                            uint64_t payload, uint32_t aux)
{
    uint64_t off = once(c, payload, aux);
    if (off)
        return off;
    uint64_t deadline = shm_mono_ns() + SHM_FULL_WAIT_NS;
    if (shm_reap(c) > 0) {
        /* A dead process may have pinned the epoch or held retired memory. */
        shm_reclaim(c);
        off = once(c, payload, aux);
    }
    shm_handle *me = &c->seg.handles[c->slot];
    while (off == 0 && atomic_load(&me->limbo_head) != 0) {
        if (shm_reclaim(c) > 0 && (off = once(c, payload, aux)) != 0)
            break;
        uint64_t now = shm_mono_ns();
        if (now >= deadline)
            break;
        struct timespec ts = {0, (long)(deadline - now < 50000 ? deadline - now : 50000)};
        nanosleep(&ts, NULL);
    }
    return off;
}

uint64_t shm_alloc(shm_ctx *c, uint64_t payload, uint32_t aux)
{
    return alloc_retry(c, alloc_once, payload, aux);
}

/* --- slots ------------------------------------------------------------ */

static uint64_t slot_alloc_once(shm_ctx *c, uint64_t unused, uint32_t aux)
{
    (void)unused;
    const shm_seg *s = &c->seg;
    uint32_t per = (s->slots + SHM_SHARDS - 1) / SHM_SHARDS;
    for (unsigned i = 0; i < SHM_SHARDS; i++) {
        unsigned shard = (c->shard + i) % SHM_SHARDS;
        uint32_t first = shard * per;
        uint32_t count = first >= s->slots ? 0
                         : (s->slots - first < per ? s->slots - first : per);
        shm_freelist *fl = &s->ctl->slots[shard];
        if (shm_list_lock(c, fl) < 0)
            continue;
        uint64_t off = list_pop_locked(s, fl, c->tag, aux, ++c->alloc_seq);
        if (off == 0 && fl->carved < count && first + fl->carved < s->slots) {
            off = shm_slot_off(s, first + fl->carved);
            shm_blk *b = blk(s, off);
            b->cls = SHM_SLOT_CLASS;
            b->aux = aux;
            shm_store(&b->stamp, c->alloc_seq);
            shm_store(&b->link, 0);
            shm_store(&b->state, c->tag | SHM_BLK_USED);
            SHM_CRASH_POINT("alloc_slot_stamped");
            fl->carved++; /* the commit */
        }
        shm_lock_drop(&fl->lock);
        if (off)
            return off;
    }
    return 0;
}

uint64_t shm_slot_alloc(shm_ctx *c, uint32_t aux)
{
    return alloc_retry(c, slot_alloc_once, 0, aux);
}

void shm_intent_set(shm_ctx *c, uint64_t off, uint64_t state, _Atomic uint64_t *ref)
{
    shm_handle *me = &c->seg.handles[c->slot];
    shm_blk *b = (shm_blk *)(c->seg.base + off);
    shm_store(&me->intent_off, 0); /* the fields below change together */
    shm_store(&me->intent_state, state);
    shm_store(&me->intent_stamp, atomic_load(&b->stamp));
    shm_store(&me->intent_ref, shm_off(&c->seg, (void *)ref));
    shm_store(&me->intent_off, off);
}

void shm_intent_clear(shm_ctx *c)
{
    shm_store(&c->seg.handles[c->slot].intent_off, 0);
}

void shm_free(shm_ctx *c, uint64_t off)
{
    const shm_seg *s = &c->seg;
    if (shm_blk_at(s, off) == NULL)
        return;
    /* A slot's first payload word is its owner's state: zero it while the
     * slot is still ours, so a slot popped later never carries the
     * previous life's state (the check would misread whose it is). */
    if (shm_slot_index(s, off) != UINT32_MAX)
        shm_store((_Atomic uint64_t *)(s->base + off + SHM_BLK_HDR), 0);
    shm_freelist *fl = shm_blk_list(s, off);
    if (shm_list_lock(c, fl) < 0)
        return; /* a garbage lock: the block stays out, the check reports it */
    list_push_locked(s, fl, off);
    shm_lock_drop(&fl->lock);
}

/* --- walking and accounting ---------------------------------------------- */

uint64_t shm_heap_used(const shm_seg *s)
{
    uint64_t used = 0;
    uint32_t np = atomic_load(&s->hdr->pages_used);
    for (uint32_t p = 0; p < np && p < s->heap_pages; p++) {
        unsigned cls, shard;
        if (shm_page_owner(s, p, &cls, &shard) == 0)
            used += (uint64_t)atomic_load(&s->pages[p].carved) * shm_class_size(cls);
    }
    for (unsigned k = 0; k < SHM_NCLASS; k++)
        for (unsigned sh = 0; sh < SHM_SHARDS; sh++)
            used -= s->ctl->heap[k][sh].nfree * shm_class_size(k);
    return used;
}

void shm_blocks_walk(const shm_seg *s, void (*fn)(void *, uint64_t, shm_blk *), void *arg)
{
    uint32_t per = (s->slots + SHM_SHARDS - 1) / SHM_SHARDS;
    for (unsigned sh = 0; sh < SHM_SHARDS; sh++) {
        uint32_t n = s->ctl->slots[sh].carved;
        for (uint32_t i = 0; i < n && sh * per + i < s->slots; i++) {
            uint64_t off = shm_slot_off(s, sh * per + i);
            fn(arg, off, blk(s, off));
        }
    }
    uint32_t np = atomic_load(&s->hdr->pages_used);
    for (uint32_t p = 0; p < np && p < s->heap_pages; p++) {
        unsigned cls, shard;
        if (shm_page_owner(s, p, &cls, &shard) != 0)
            continue;
        uint32_t size = shm_class_size(cls);
        uint32_t n = atomic_load(&s->pages[p].carved);
        for (uint32_t i = 0; i < n && i < SHM_PAGE_BYTES / size; i++) {
            uint64_t off = s->off_heap + (uint64_t)p * SHM_PAGE_BYTES + (uint64_t)i * size;
            fn(arg, off, blk(s, off));
        }
    }
}

uint64_t shm_pages_repair(shm_ctx *c)
{
    const shm_seg *s = &c->seg;
    uint64_t got = 0;
    uint32_t np = atomic_load(&s->hdr->pages_used);
    for (uint32_t p = 0; p < np && p < s->heap_pages; p++) {
        unsigned cls, shard;
        if (shm_page_owner(s, p, &cls, &shard) != 0)
            continue;
        uint32_t size = shm_class_size(cls), per_page = SHM_PAGE_BYTES / size;
        shm_freelist *fl = &s->ctl->heap[cls][shard];
        if (shm_list_lock(c, fl) < 0)
            continue;
        shm_page_desc *pd = &s->pages[p];
        if (fl->cur_page != p + 1) {
            for (uint32_t n = atomic_load(&pd->carved); n < per_page; n++) {
                uint64_t off = s->off_heap + (uint64_t)p * SHM_PAGE_BYTES + (uint64_t)n * size;
                shm_blk *b = blk(s, off);
                b->cls = cls;
                b->aux = 0;
                shm_store(&b->state, c->tag | SHM_BLK_USED);
                shm_store(&pd->carved, n + 1);
                SHM_CRASH_POINT("alloc_pages_repair_carved");
                list_push_locked(s, fl, off);
                got++;
            }
        }
        shm_lock_drop(&fl->lock);
    }
    return got;
}
