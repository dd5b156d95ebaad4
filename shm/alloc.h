/*
 * alloc.h — blocks, and the allocator that hands them out to many
 * processes at once.
 *
 * Every block starts with a 32-byte header. Readers never look at it; it
 * belongs to the allocator and the reclaimer. Its state word says who is
 * responsible for the block right now:
 *
 *   FREE      on a free list
 *   USED      in use; the tag names the handle (slot + incarnation) that
 *             allocated it or last took responsibility for it
 *   RETIRED   unlinked from every structure, on the tag's limbo list,
 *             waiting for readers that might still see it (epoch.c)
 *   FREEING   being pushed onto a free list right now
 *
 * The tag is what makes crashes cheap: a block whose tag names a dead
 * handle and that no structure reaches is a leak of that dead process, and
 * the sweep in shmreg_check() can give it back without guessing.
 */
#ifndef SHM_ALLOC_H
#define SHM_ALLOC_H

#include "lock.h"
#include "seg.h"

typedef struct shm_blk {
    _Atomic uint64_t state;  /* kind | owner tag */
    _Atomic uint64_t link;   /* free-list / limbo link (block offset) */
    _Atomic uint64_t stamp;  /* epoch at retire */
    uint32_t cls;            /* size class, SHM_SLOT_CLASS for slots */
    uint32_t aux;            /* owning structure, for the registry's repair */
} shm_blk;

#define SHM_BLK_HDR ((uint64_t)sizeof(shm_blk))

enum { SHM_BLK_NONE = 0, SHM_BLK_FREE = 1, SHM_BLK_USED = 2, SHM_BLK_RETIRED = 3,
       SHM_BLK_FREEING = 4 };

#define SHM_KIND(state) ((unsigned)((state) & 0xffu))
#define SHM_TAG(state) ((state) & ~0xffull)
#define SHM_TAG_SLOT(tag) ((uint32_t)(((tag) >> 8) & 0xffffffu))
#define SHM_TAG_INC(tag) ((uint32_t)((tag) >> 32))

/* Who is calling: a process's handle, as the engine sees it. */
typedef struct shm_ctx {
    shm_seg seg;
    uint32_t slot;           /* handle slot index */
    uint32_t incarnation;
    uint64_t tag;            /* owner tag for blocks we hold */
    unsigned shard;          /* preferred free-list shard */
    unsigned read_depth;     /* nested read sections */
    uint64_t alloc_seq;      /* stamps USED blocks: tells reuses apart */
    /* Reclamation pacing (epoch.c). Process-local on purpose: nothing
     * here is needed to recover from our death, so none of it is shared. */
    uint64_t limbo_tail;     /* newest block of our limbo queue, 0: empty */
    unsigned reclaim_ops;    /* retires and section exits since the last attempt */
    unsigned reclaim_every;  /* ... that make the next attempt (64..1024) */
    uint64_t reap_mark;      /* limbo length that makes us look for a dead reader */
    uint64_t reap_after_ns;  /* no reap or liveness check before (CLOCK_MONOTONIC) */
    /* The consumer's: called by whoever reaps a dead process's handle with
     * the note it left (shm_note_set), under the handle-table lock; it
     * must take no lock of the handle table's and may run twice for one
     * note (a reaper that dies after it, before the note is cleared).
     * NULL: notes are dropped. */
    void (*on_dead_note)(struct shm_ctx *c, uint64_t note);
} shm_ctx;

static inline uint64_t shm_make_tag(uint32_t slot, uint32_t inc)
{
    return ((uint64_t)inc << 32) | ((uint64_t)slot << 8);
}

/* Announce that we are about to unlink the block at `off` (now in state
 * `state`) by changing the word `ref` (which holds `off`) and then retire
 * it; shm_intent_clear() once done. If we die in between, whoever reaps
 * our handle sees `ref` no longer holding the block and retires it. */
void shm_intent_set(shm_ctx *c, uint64_t off, uint64_t state, _Atomic uint64_t *ref);
void shm_intent_clear(shm_ctx *c);

/* How long an allocation that finds no space waits for readers to release
 * memory this handle retired, before it reports full: elapsed time
 * (CLOCK_MONOTONIC) from its first failed attempt, reaping and reclaiming
 * included, not a sum of sleeps. */
#define SHM_FULL_WAIT_NS 10000000ull

/* Class k's size is m << j: the first four classes (64, 80, 96, 112) step
 * by 16 bytes (m even in 8..14, j = 3); from 128 on, sizes step by an
 * eighth of a power of two, m in 8..15 and j from 4 (128, 144, ... 240,
 * 256, 288, ...), up to 80 KiB for whole SDPs. An eighth bounds a block's
 * unused tail at 12.5% of its size and leaves about 6% on average, half
 * what quarter steps left: the record block of a session with two 1 KiB
 * SDPs is most of what a session costs. Every size is a multiple of 16, so
 * offsets divided by 16 stay exact (the registry's record hints). */
static inline void shm_class_shape(unsigned cls, unsigned *m, unsigned *j)
{
    if (cls < 4) {
        *m = 8 + 2 * cls;
        *j = 3;
    } else {
        *m = 8 + (cls - 4) % 8;
        *j = 4 + (cls - 4) / 8;
    }
}

/* Size of class k's blocks, header included; 0 for an unknown class.
 * Inline, with the block checks below: they run on every read of a block,
 * and a call per check was a fifth of an in-cache lookup. */
static inline uint32_t shm_class_size(unsigned cls)
{
    if (cls == SHM_SLOT_CLASS)
        return SHM_SLOT_BYTES;
    if (cls >= SHM_NCLASS)
        return 0;
    unsigned m, j;
    shm_class_shape(cls, &m, &j);
    return m << j;
}

/* Allocate a block with space for `payload` bytes; stamps it USED(me) with
 * `aux`. Returns the block offset, or 0 when the heap is full (or payload
 * exceeds the largest class). */
uint64_t shm_alloc(shm_ctx *c, uint64_t payload, uint32_t aux);

/* Allocate a slot of the slot table (a block of SHM_SLOT_BYTES); 0 when
 * all are taken. */
uint64_t shm_slot_alloc(shm_ctx *c, uint32_t aux);

/* Return a block to its free list now. Only for blocks no reader can see
 * (never published, or past their grace period). */
void shm_free(shm_ctx *c, uint64_t off);

/* Index of the slot at block offset `off`, or UINT32_MAX if not a slot. */
static inline uint32_t shm_slot_index(const shm_seg *s, uint64_t off)
{
    if (off < s->off_slots || (off - s->off_slots) % SHM_SLOT_BYTES)
        return UINT32_MAX;
    uint64_t i = (off - s->off_slots) / SHM_SLOT_BYTES;
    return i < s->slots ? (uint32_t)i : UINT32_MAX;
}

/* The (class, shard) heap page `page` was handed to: 0, or -1 when the
 * page is outside the heap or its descriptor holds a value this engine
 * never writes. The one place a page descriptor is decoded: everything
 * that turns one into a free list, a block size or an address goes
 * through here, so a scribbled descriptor cannot index past a table. */
static inline int shm_page_owner(const shm_seg *s, uint64_t page, unsigned *cls, unsigned *shard)
{
    if (page >= s->heap_pages)
        return -1;
    uint32_t d = atomic_load_explicit(&s->pages[page].cls, memory_order_acquire);
    *cls = (d & 0xffu) - 1u; /* 0 (unassigned) wraps to a huge class */
    *shard = d >> 8;
    return *cls < SHM_NCLASS && *shard < SHM_SHARDS ? 0 : -1;
}

/* The block header at `off`, checked: NULL unless `off` is the start of a
 * slot, or of a heap block already carved from its page, whose header's
 * class agrees with where it lies (so capacities read from it are true). */
static inline shm_blk *shm_blk_at(const shm_seg *s, uint64_t off)
{
    if (shm_slot_index(s, off) != UINT32_MAX) {
        shm_blk *b = (shm_blk *)(s->base + off);
        return b->cls == SHM_SLOT_CLASS ? b : NULL;
    }
    if (off < s->off_heap)
        return NULL;
    uint64_t rel = off - s->off_heap;
    unsigned cls, shard;
    if (shm_page_owner(s, rel / SHM_PAGE_BYTES, &cls, &shard) != 0)
        return NULL;
    /* Is `within` a multiple of the class size, and a whole block below
     * the page end? Every size is m << j with m in 8..15: a mask, then a
     * division by m done as a multiplication by 2^32 / m rounded up,
     * exact for every q below 2^16 (a page holds 2^15 units of 8; checked
     * for each m by t/size_class.c): no divide, and no branch on the
     * class to mispredict. */
    static const uint32_t inv_m[8] = {0x20000000u, 0x1c71c71du, 0x1999999au, 0x1745d175u,
                                      0x15555556u, 0x13b13b14u, 0x12492493u, 0x11111112u};
    uint32_t within = (uint32_t)(rel % SHM_PAGE_BYTES);
    unsigned m, j;
    shm_class_shape(cls, &m, &j);
    if (within & ((1u << j) - 1))
        return NULL;
    uint32_t q = within >> j, idx = (uint32_t)(((uint64_t)q * inv_m[m - 8]) >> 32);
    q -= idx * m;
    if (q != 0 || (uint64_t)(idx + 1) * shm_class_size(cls) > SHM_PAGE_BYTES ||
        idx >= atomic_load_explicit(&s->pages[rel / SHM_PAGE_BYTES].carved, memory_order_acquire))
        return NULL;
    shm_blk *b = (shm_blk *)(s->base + off);
    return b->cls == cls ? b : NULL;
}

/* Payload capacity of a valid block (bytes after the header). */
static inline uint64_t shm_blk_capacity(const shm_blk *b)
{
    uint32_t size = shm_class_size(b->cls);
    return size > SHM_BLK_HDR ? size - SHM_BLK_HDR : 0;
}

/* Bytes handed out (carved minus free), for statistics. */
uint64_t shm_heap_used(const shm_seg *s);


static inline uint64_t shm_slot_off(const shm_seg *s, uint32_t i)
{
    return s->off_slots + (uint64_t)i * SHM_SLOT_BYTES;
}

/* The free list the block at `off` belongs to by its position (a slot's
 * shard, a heap page's class and shard); NULL when `off` is not a block
 * (see shm_blk_at). */
shm_freelist *shm_blk_list(const shm_seg *s, uint64_t off);

/* With the list's lock held: finish a step its last holder left half
 * done, cut the list at its first bad entry (what lay beyond is leaked;
 * the check's sweep gives it back) and recount it. */
void shm_list_repair(const shm_seg *s, shm_freelist *fl);

/* The page heap list `fl` is carving, if its cursor (cur_page) names a
 * page handed out and handed to this very list; else NULL. */
shm_page_desc *shm_list_cursor(const shm_seg *s, const shm_freelist *fl);

/* Take a free list's lock (waiting at most `ns`; shm_list_lock: at most
 * SHM_LOCK_WAIT_NS), repairing the step a dead holder left half done.
 * 0, SHM_EBUSY or SHM_ECORRUPT (not held: skip the list). */
int shm_list_lock(shm_ctx *c, shm_freelist *fl);
int shm_list_lock_for(shm_ctx *c, shm_freelist *fl, uint64_t ns);

/* Visit every carved block (heap and slots): fn(arg, offset, header).
 * Lock-free snapshot; used by the consistency check. */
void shm_blocks_walk(const shm_seg *s, void (*fn)(void *, uint64_t, shm_blk *), void *arg);

/* Pages assigned to a class but neither current nor fully carved (lost by
 * a process that died while taking a page): carve the rest onto the free
 * list. Returns the number of blocks recovered. */
uint64_t shm_pages_repair(shm_ctx *c);

#endif
