/*
 * index.c — linking and unlinking entries of a hash index (index.h).
 *
 * Both run under the bucket's stripe lock and change the chain with one
 * store each (see index.h for why that is the whole crash story). An
 * unlink walks at most shm_walk_limit() steps: a chain that corruption
 * closed into a cycle ends the walk, not the process.
 */
#include "index.h"

int shm_index_bind(shm_index *x, void *region, uint64_t bytes)
{
    uint64_t stripes = (uint64_t)SHM_STRIPES * sizeof(shm_lock);
    if (bytes <= stripes || (bytes - stripes) % sizeof(uint64_t))
        return SHM_ECORRUPT;
    uint64_t n = (bytes - stripes) / sizeof(uint64_t);
    if (n > UINT32_MAX || (n & (n - 1)))
        return SHM_ECORRUPT;
    x->stripe = region;
    x->bucket = (_Atomic uint64_t *)((unsigned char *)region + stripes);
    x->buckets = (uint32_t)n;
    return 0;
}

int shm_index_has(const shm_seg *s, const shm_index *x, uint64_t hash, uint64_t off,
                  shm_link_fn link_of)
{
    uint64_t limit = shm_walk_limit(s), cur = atomic_load(shm_index_head(x, hash));
    for (uint64_t steps = 0; cur; steps++) {
        if (cur == off)
            return 1;
        _Atomic uint64_t *next = link_of(s, cur);
        if (next == NULL || steps > limit)
            return -1;
        cur = atomic_load(next);
    }
    return 0;
}

void shm_index_push(const shm_index *x, uint64_t hash, uint64_t off, _Atomic uint64_t *link)
{
    _Atomic uint64_t *head = shm_index_head(x, hash);
    shm_store(link, atomic_load(head));
    shm_store(head, off);
}

int shm_index_remove(const shm_seg *s, const shm_index *x, uint64_t hash, uint64_t off,
                     shm_link_fn link_of)
{
    uint64_t limit = shm_walk_limit(s);
    _Atomic uint64_t *link = shm_index_head(x, hash);
    for (uint64_t steps = 0, cur = atomic_load(link); cur && steps <= limit; steps++) {
        _Atomic uint64_t *next = link_of(s, cur);
        if (next == NULL)
            return 0;
        if (cur == off) {
            shm_store(link, atomic_load(next));
            return 1;
        }
        link = next;
        cur = atomic_load(link);
    }
    return 0;
}

int shm_index_link(shm_ctx *c, const shm_index *x, uint64_t hash, uint64_t off,
                   _Atomic uint64_t *link)
{
    shm_lock *l = shm_index_lock(x, hash);
    int rc = shm_lock_take(c, l);  /* 1: taken over; chains need no repair */
    if (rc < 0)
        return rc;
    shm_index_push(x, hash, off, link);
    shm_lock_drop(l);
    return 0;
}

int shm_index_unlink(shm_ctx *c, const shm_index *x, uint64_t hash, uint64_t off,
                     shm_link_fn link_of)
{
    shm_lock *l = shm_index_lock(x, hash);
    if (shm_lock_take(c, l) < 0)
        return 0;
    int found = shm_index_remove(&c->seg, x, hash, off, link_of);
    shm_lock_drop(l);
    return found;
}
