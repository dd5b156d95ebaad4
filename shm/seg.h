/*
 * seg.h — the segment: one shared file mapped by every process, and the
 * layout of what lives in it.
 *
 * Everything inside the segment refers to everything else by *offset* from
 * the segment base, never by pointer, because each process maps the file at
 * its own address. Offsets and lengths read back from the segment are not
 * trusted: shm_at() turns an offset into a pointer only after checking that
 * the whole object lies inside the mapping, so a corrupted segment yields
 * SHM_ECORRUPT instead of a wild read.
 *
 * The engine lays out its own pieces and then the consumer's regions:
 *
 *   [header 4 KiB][control: locks & free lists][handle table]
 *   [page descriptors][slot table][heap pages ...][ring]
 *   [consumer region 0][consumer region 1] ...
 *
 * A consumer (the registry is one; t/engine_counter.c is another) asks
 * for a number of fixed-size slots, a heap, a ring and up to
 * SHM_MAX_REGIONS named regions of zero-filled bytes, plus
 * SHM_USER_BYTES of constants to keep in the checksummed header. The
 * engine knows what a slot, a block, a lock and a ring are; it does not
 * know what the consumer keeps in them, and must not: that is what lets
 * one engine serve other tables, and keeps the consumer's vocabulary out
 * of the code that has to be crash-proof on its own terms.
 *
 * The layout is a pure function of the parameters; they are stored in
 * the header, and attach recomputes the offsets from them and refuses a
 * header whose offsets disagree. That one comparison validates every
 * region boundary at once.
 */
#ifndef SHM_SEG_H
#define SHM_SEG_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Engine error codes: the engine's own, translated by its consumer
 * (the registry maps each one explicitly, registry/handle.c). */
#define SHM_EINVAL   (-1)
#define SHM_ENOENT   (-2)
#define SHM_EFULL    (-3)
#define SHM_ECORRUPT (-4)
#define SHM_EVERSION (-5)
#define SHM_EBUSY    (-6)

#define SHM_MAGIC "shmreg\x1a\x01"
#define SHM_LAYOUT_VERSION 9u /* 2: engine locks, record sizes; 3: consumer regions;
                                * 4: 320-byte slots, 24 record kinds;
                                * 5: a session's fields and SDPs in one record;
                                * 6: owner node and version in the slot;
                                * 7: the registry's record hints region;
                                * 8: only sessions away from the slot their
                                *    ID names are in the ID index;
                                * 9: size classes step by an eighth; the
                                *    handle table's high-water mark */
#define SHM_HEADER_BYTES 4096u
#define SHM_PAGE_BYTES (256u * 1024u)   /* heap page: 3 of the largest class */
#define SHM_SLOT_BYTES 320u             /* a slot of the slot table, header included */
#define SHM_SHARDS 4u                   /* free lists per class: spreads lock traffic */
#define SHM_NCLASS 79u                  /* heap size classes (see alloc.c) */
#define SHM_SLOT_CLASS 0xffu            /* class id of slots */

/* Capacity ceilings that shm_layout() accepts; a consumer's error
 * message quotes the same names so the two cannot drift apart. */
#define SHM_MAX_SLOTS (1u << 26)
#define SHM_MAX_HANDLES 4096u
#define SHM_MAX_HEAP_SHIFT 40u          /* heap_bytes <= 2^40 */
#define SHM_MAX_HEAP_BYTES (1ull << SHM_MAX_HEAP_SHIFT)
#define SHM_MAX_REGIONS 12u
#define SHM_MAX_REGION_BYTES (1ull << 36)
#define SHM_USER_BYTES 32u

/* A lock in the segment, padded to a cache line so neighbouring locks do
 * not false-share. One 32-bit futex word that the engine itself defines
 * (shm/lock.c): 0 free, else who holds it. Not a pthread mutex: a
 * scribbled glibc mutex can make glibc assert or wait for ever, while
 * every value of this word means something the engine can judge. */
typedef struct shm_lock {
    _Atomic uint32_t word;
    char pad[60];
} shm_lock;

/* A free list of fixed-size blocks guarded by one lock. `pending`
 * names the block a push or pop is working on, so that whoever inherits the
 * lock from a dead owner can finish or undo that one step (alloc.c). */
typedef struct shm_freelist {
    shm_lock lock;
    uint64_t head;        /* block offset, 0 = empty */
    uint64_t pending;     /* block being pushed/popped, 0 = none */
    uint64_t nfree;       /* blocks on the list */
    uint32_t cur_page;    /* heap: page being carved (+1; 0 none); slots: unused */
    uint32_t carved;      /* slots: blocks carved from this shard's range */
    char pad[32];
} shm_freelist;

/* Per-process attachment record (epoch.c). */
typedef struct shm_handle {
    _Atomic uint64_t word;       /* kind | pid << 8 (see epoch.h) */
    _Atomic uint32_t incarnation;/* bumped at every claim: owner tags name it */
    uint32_t pad0;
    uint64_t start_time;         /* process start time, /proc/PID/stat field 22 */
    uint64_t attached_ns;
    _Atomic uint64_t epoch;      /* global epoch seen at read_begin; 0 = outside */
    _Atomic uint64_t read_since_ns;
    _Atomic uint64_t limbo_head; /* retired blocks waiting for readers */
    /* Blocks queued, for pacing only: a crash between a link and this
     * count leaves it off by one until the queue next empties (when it
     * is reset). Byte figures are derived by walking (shm_limbo_bytes). */
    _Atomic uint64_t limbo_count;
    /* The consumer's note of a change in progress (shm_note_set); the
     * engine only clears it and hands a dead process's to the consumer. */
    _Atomic uint64_t note;
    /* A block this handle is about to unlink and retire: if the process
     * dies in between, the sweep knows whose it was (see shm_intent). */
    _Atomic uint64_t intent_off, intent_state, intent_stamp, intent_ref;
    char pad[16];
} shm_handle;

typedef struct shm_page_desc {
    _Atomic uint32_t cls;        /* class + 1, shard << 8; 0 = unassigned */
    _Atomic uint32_t carved;     /* blocks carved so far */
} shm_page_desc;

/* A kind of record laid in the segment, by name and size. The header
 * stores the size of every record kind, the engine's and its consumer's,
 * and attach compares them, as LMDB's lock-file format word does: two
 * builds whose records differ (a changed struct, another ABI, another
 * libc's mutex) refuse each other by name instead of misreading bytes. */
typedef struct shm_record {
    const char *name;
    uint32_t bytes;
} shm_record;
#define SHM_ENGINE_RECORDS 7u
#define SHM_MAX_RECORDS 24u          /* engine's and consumer's together */

/* A consumer's region: `bytes` of zero-filled memory (rounded up to
 * 4 KiB), named for messages. Its meaning is the consumer's alone. */
typedef struct shm_region {
    const char *name;
    uint64_t bytes;
} shm_region;

/* The fixed part of the header: written once at create, checksummed. */
typedef struct shm_fixed {
    char magic[8];
    uint32_t layout_version;
    uint32_t header_bytes;
    uint64_t segment_bytes;
    uint32_t uid, gid;
    uint32_t slots, max_handles;
    uint32_t heap_pages;
    uint32_t page_bytes, slot_bytes;
    uint32_t ring_records;
    uint32_t nregions, pad0;
    uint64_t region_bytes[SHM_MAX_REGIONS];
    uint64_t off_control, off_handles, off_pages, off_slots, off_heap, off_ring;
    uint64_t off_region[SHM_MAX_REGIONS];
    uint64_t end;
    uint32_t nrecords;           /* entries used in record_bytes */
    uint32_t record_bytes[SHM_MAX_RECORDS]; /* engine's, then the consumer's */
    unsigned char user[SHM_USER_BYTES]; /* the consumer's constants */
    uint64_t created_ns;
    uint64_t checksum;           /* FNV-1a of everything above */
} shm_fixed;

typedef struct shm_header {
    shm_fixed f;
    char pad1[1024 - sizeof(shm_fixed)];
    _Atomic uint64_t epoch;      /* global reclamation epoch (epoch.c) */
    char pad2[56];
    _Atomic uint32_t pages_used; /* heap pages handed to classes */
    /* Handle slots [0, handles_hwm) have ever been claimed: the scan of
     * readers stops there (epoch.c, "Cost"). Only ever raised. */
    _Atomic uint32_t handles_hwm;
    char pad3[56];
} shm_header;

/* The control area: the engine's locks and free lists. */
typedef struct shm_control {
    shm_lock page_lock;          /* serialises handing out heap pages */
    shm_lock handle_lock;        /* serialises reaping dead handles */
    shm_freelist heap[SHM_NCLASS][SHM_SHARDS];
    shm_freelist slots[SHM_SHARDS];
} shm_control;

/* A process's view of a mapped segment. */
typedef struct shm_seg {
    unsigned char *base;
    uint64_t size;
    shm_header *hdr;
    shm_control *ctl;
    shm_handle *handles;
    shm_page_desc *pages;
    uint32_t slots, max_handles, heap_pages;
    uint64_t off_slots, off_heap, off_ring;
    uint32_t ring_records;
    uint32_t nregions;
    struct { unsigned char *base; uint64_t bytes; } region[SHM_MAX_REGIONS];
} shm_seg;

typedef struct shm_params {
    uint32_t slots, max_handles, ring_records;
    uint64_t heap_bytes;
    const shm_record *records;   /* the consumer's record kinds (static) */
    uint32_t nrecords;           /* at most SHM_MAX_RECORDS - SHM_ENGINE_RECORDS */
    const shm_region *regions;   /* the consumer's regions, in order */
    uint32_t nregions;           /* at most SHM_MAX_REGIONS */
    unsigned char user[SHM_USER_BYTES]; /* kept in the fixed header, checksummed */
} shm_params;

/* Compute the whole layout for `p` into `f` (magic, sizes, offsets). */
int shm_layout(const shm_params *p, shm_fixed *f);

/* FNV-1a over the fixed header minus its checksum field. */
uint64_t shm_fixed_checksum(const shm_fixed *f);

/* Initialise a freshly created, zero-filled mapping of f->segment_bytes. */
int shm_seg_format(void *base, const shm_fixed *f);

/* Validate a mapping of `size` bytes and fill `s`. `records` are the
 * consumer's record kinds, as given to shm_layout() at create: a segment
 * whose stored sizes differ is another build's (SHM_EVERSION, naming the
 * record). `nregions` is how many regions the consumer lays: another
 * count is another consumer's segment (SHM_EVERSION). The regions' sizes
 * are the consumer's to check (s->region[i].bytes). On failure writes a
 * human-readable reason into `why`. Returns 0, SHM_EVERSION, SHM_ECORRUPT. */
int shm_seg_bind(shm_seg *s, void *base, uint64_t size, const shm_record *records,
                 uint32_t nrecords, uint32_t nregions, char *why, size_t whylen);

/* A store to shared memory that other processes may load: release, so
 * it is seen after everything this thread wrote and read before it. What
 * it gives up against a seq_cst store is only store->load order (a later
 * load of ours overtaking it), which no caller of this needs: each such
 * store is followed by a lock release, by a compare-and-swap or
 * fetch-and-add (full barriers) or by nothing anybody else waits on. The
 * one place that does need it, a reader announcing its epoch, keeps its
 * fence (epoch.h). On x86 this is a plain MOV where atomic_store() is an
 * XCHG, which also waits for every store before it to reach the cache:
 * after a record copy into fresh lines that is hundreds of cycles.
 * A process killed at any instruction leaves its stores in program order,
 * whatever their memory order, so crash recovery is unaffected. */
#define shm_store(obj, val) atomic_store_explicit((obj), (val), memory_order_release)

/* Bounds-checked offset -> pointer: NULL unless [off, off+len) lies inside
 * the mapping past the header. */
static inline void *shm_at(const shm_seg *s, uint64_t off, uint64_t len)
{
    if (off < SHM_HEADER_BYTES || off > s->size || len > s->size - off)
        return NULL;
    return s->base + off;
}

static inline uint64_t shm_off(const shm_seg *s, const void *p)
{
    return (uint64_t)((const unsigned char *)p - s->base);
}

/* Start fetching every cache line of [p, p+len) for reading. A copy or
 * a walk that follows then finds its misses already overlapped instead of
 * stalling on each in turn (a memcpy stalls at the start of every source
 * it is given, before the hardware prefetcher has seen a stream). A
 * prefetch never faults, so the range needs no check: a stale or
 * scribbled one costs useless fetches and nothing else. */
static inline void shm_prefetch_range(const void *p, size_t len)
{
    const char *c = (const char *)((uintptr_t)p & ~(uintptr_t)63), *end = (const char *)p + len;
    for (; c < end; c += 64)
        __builtin_prefetch(c);
}

/* Bound on the steps of a walk along a list that lives in the segment
 * (free lists, limbo lists, index chains). Every entry is a block of at
 * least 64 bytes, so no honest list has more entries than the segment
 * has 64-byte blocks: a walk that goes further is following a cycle left
 * by corruption, and must stop rather than spin for ever. */
static inline uint64_t shm_walk_limit(const shm_seg *s)
{
    return s->size / 64;
}

uint64_t shm_now_ns(void);

#endif
