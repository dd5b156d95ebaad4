/*
 * index.h — a hash index in the segment: buckets of chains of entries,
 * each entry a block (a slot or a heap block) with a link word.
 *
 * Readers walk a chain with no lock at all: a bucket holds the offset of
 * its first entry (0: empty), each entry's link word the next. Writers
 * take one of SHM_STRIPES stripe locks (by bucket) and change a chain only
 * by single stores: a push stores the new entry's link, then the bucket;
 * an unlink stores the predecessor's link. So a walker, or whoever takes
 * a lock over from a dead holder, always sees a whole chain, and a dead
 * holder leaves nothing to repair. Retiring an unlinked entry (epoch.h)
 * is the caller's business: a walker may still be standing on it.
 *
 * The index does not hash: the consumer gives it the hash of each key
 * (random IDs are their own hash; keys a network chooses need a keyed
 * one), and compares keys itself while walking, because only it knows
 * where an entry keeps its key.
 */
#ifndef SHM_INDEX_H
#define SHM_INDEX_H

#include "alloc.h"

#define SHM_STRIPES 256u                /* stripe locks per index */

typedef struct shm_index {
    shm_lock *stripe;                   /* SHM_STRIPES locks */
    _Atomic uint64_t *bucket;           /* entry offsets, 0 = empty */
    uint32_t buckets;                   /* a power of two */
} shm_index;

/* Bytes of a region that holds an index of `buckets` buckets. */
static inline uint64_t shm_index_bytes(uint32_t buckets)
{
    return (uint64_t)SHM_STRIPES * sizeof(shm_lock) + (uint64_t)buckets * sizeof(uint64_t);
}

/* Bind an index laid in a region of `bytes` bytes at `region`: 0, or
 * SHM_ECORRUPT when that size is not an index of a power of two (>= 1)
 * buckets. */
int shm_index_bind(shm_index *x, void *region, uint64_t bytes);

static inline _Atomic uint64_t *shm_index_head(const shm_index *x, uint64_t hash)
{
    return &x->bucket[hash & (x->buckets - 1)];
}

static inline shm_lock *shm_index_lock(const shm_index *x, uint64_t hash)
{
    return &x->stripe[(hash & (x->buckets - 1)) % SHM_STRIPES];
}

/* The link word of the entry at `off`, or NULL when `off` is not an
 * entry (a chain broken by corruption: the walk stops there). */
typedef _Atomic uint64_t *(*shm_link_fn)(const shm_seg *s, uint64_t off);

/* Is the entry at `off` on the chain for `hash`? 1 yes, 0 no, -1 the
 * chain breaks before reaching it. Lock-free: a snapshot, for checks. */
int shm_index_has(const shm_seg *s, const shm_index *x, uint64_t hash, uint64_t off,
                  shm_link_fn link_of);

/* With the stripe lock for `hash` held (shm_index_lock): push the entry
 * at `off`, whose link word is `link`, at the head of its chain. For a
 * caller that must look before it links (a key that must be unique). */
void shm_index_push(const shm_index *x, uint64_t hash, uint64_t off, _Atomic uint64_t *link);

/* With the stripe lock for `hash` held: unlink the entry at `off` if it
 * is on its chain. 1 if it was, 0 if not or if the chain is broken
 * before it (nothing is changed then: a check reports it). */
int shm_index_remove(const shm_seg *s, const shm_index *x, uint64_t hash, uint64_t off,
                     shm_link_fn link_of);

/* shm_index_push() under the stripe lock, taken here (waiting at most
 * SHM_LOCK_WAIT_NS). Publish the entry (say, its state word) after this
 * returns: a walker that finds it before then must see it as not yet
 * there. 0, or SHM_EBUSY / SHM_ECORRUPT for the lock, nothing changed. */
int shm_index_link(shm_ctx *c, const shm_index *x, uint64_t hash, uint64_t off,
                   _Atomic uint64_t *link);

/* shm_index_remove() under the stripe lock, taken here: 1 if the entry
 * was linked; 0 if not, or if the lock could not be taken. */
int shm_index_unlink(shm_ctx *c, const shm_index *x, uint64_t hash, uint64_t off,
                     shm_link_fn link_of);

#endif
