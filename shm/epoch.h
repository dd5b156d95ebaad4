/*
 * epoch.h — the handle table and epoch-based reclamation across processes.
 *
 * Each attached process holds one slot of the handle table (pid, process
 * start time, incarnation). A reader announces the global epoch it saw when
 * entering a read section; a writer that unlinks a block stamps it with a
 * fresh epoch and appends it to its own limbo queue, oldest first, until
 * every announced epoch has caught up. Dead processes are found by pid and
 * start time and their slots (and limbo queues) taken over by whoever reaps
 * them. epoch.c says why this is safe and what it costs.
 */
#ifndef SHM_EPOCH_H
#define SHM_EPOCH_H

#include <sys/types.h>
#include <time.h>

#include "alloc.h"

enum { SHM_H_FREE = 0, SHM_H_CLAIMING = 1, SHM_H_ACTIVE = 2, SHM_H_ORPHAN = 3 };
#define SHM_H_KIND(w) ((unsigned)((w) & 0xffu))
#define SHM_H_PID(w) ((pid_t)((w) >> 8))

/* Claim a handle slot for this process. SHM_EFULL when every slot is held
 * by a live process (dead ones are reaped first). */
int shm_handle_claim(shm_ctx *c);

/* Release the slot at close. Retired blocks that readers may still see are
 * left with the slot (marked ORPHAN) for the next reaper. */
void shm_handle_release(shm_ctx *c);

/* 1 when slot i belongs to a live process (or is being claimed by one). */
int shm_handle_alive(const shm_seg *s, uint32_t i);

/* The high-water mark of claimed handle slots, clamped to the table: no
 * slot at or above it was ever claimed (see epoch.c). shm_handles_raise
 * makes it at least n (claims; the check's repair). */
uint32_t shm_handles_used(const shm_seg *s);
void shm_handles_raise(const shm_seg *s, uint32_t n);

/* The same judgement on a word the caller already loaded from h->word, so
 * that what it reports (the pid, the kind) and "alive" come from one load:
 * a slot taken over in between cannot pair one process's pid with
 * another's liveness. */
int shm_word_alive(const shm_handle *h, uint64_t w);

/* 1 when blocks stamped with `tag` belong to a live handle. */
int shm_tag_alive(const shm_seg *s, uint64_t tag);

/* Reap dead or orphaned slots: adopt their limbo lists, free the slot.
 * Returns how many were reaped. Takes handle_lock and reads /proc for
 * every attached process: never on a hot path (shm_reclaim paces it). */
int shm_reap(shm_ctx *c);

/* CLOCK_MONOTONIC in nanoseconds: for bounds on elapsed time. */
static inline uint64_t shm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void shm_read_enter(shm_ctx *c)
{
    if (c->read_depth++ == 0) {
        shm_handle *me = &c->seg.handles[c->slot];
        uint64_t e = atomic_load_explicit(&c->seg.hdr->epoch, memory_order_acquire);
        atomic_store_explicit(&me->epoch, e, memory_order_relaxed);
        /* The store must be visible before we read any structure: pairs
         * with the full fence of the writer's epoch bump (epoch.c). */
        atomic_thread_fence(memory_order_seq_cst);
    }
}

void shm_read_leave(shm_ctx *c);

/* Note, for the consumer, what this handle is changing (any nonzero word
 * of its own meaning), before the change can be seen. The note lasts
 * until the outermost read section ends (shm_read_leave clears it) or the
 * next note; if the process dies first, whoever reaps its handle hands
 * the note to c->on_dead_note, so that what the change would have done
 * after it became visible (announce it, say) is done for it. */
static inline void shm_note_set(shm_ctx *c, uint64_t note)
{
    atomic_store_explicit(&c->seg.handles[c->slot].note, note, memory_order_relaxed);
}

/* The noted change is over, announced, for a change made outside a read
 * section; inside one, the section's end clears the note. */
static inline void shm_note_end(shm_ctx *c)
{
    if (c->read_depth == 0)
        shm_note_set(c, 0);
}

/* Move a block whose state word is `expect` (USED, or RETIRED by a dead
 * handle that never listed it) to the new end of our limbo queue; every
 * 64th to 1024th retire or section exit also tries shm_reclaim().
 * Returns 0, or SHM_ENOENT if someone else changed its state first (then
 * the block is theirs to deal with). */
int shm_retire(shm_ctx *c, uint64_t off, uint64_t expect);

/* Heap bytes waiting in handle i's limbo queue, derived by walking it
 * (O(queue length); for statistics, never on a hot path). */
uint64_t shm_limbo_bytes(const shm_seg *s, uint32_t i);

/* Free what at the old end of our limbo queue no reader can see any more;
 * may reap (paced: see epoch.c). Returns blocks freed. Costs one scan of
 * the handle table plus one step per block freed, whatever the queue's
 * length. */
uint64_t shm_reclaim(shm_ctx *c);

/* Oldest epoch announced by a reader (UINT64_MAX: none). A dead reader's
 * announcement counts until it is reaped. */
uint64_t shm_min_reader_epoch(const shm_seg *s);

#ifdef SHMREG_TESTING
/* What reclamation did in this process, for tests that bound its cost per
 * operation (t/pinned_reader.c). Reset by assigning zeroes. */
typedef struct shm_reclaim_counters {
    uint64_t retires;       /* blocks appended to a limbo queue */
    uint64_t attempts;      /* shm_reclaim() calls */
    uint64_t scans;         /* handle-table scans for the oldest reader */
    uint64_t examined;      /* limbo blocks looked at (freed or not) */
    uint64_t freed;         /* limbo blocks freed */
    uint64_t alive_checks;  /* liveness checks of the reader pinning us */
    uint64_t reaps;         /* shm_reap() calls */
} shm_reclaim_counters;
extern shm_reclaim_counters shm_reclaim_counters_for_test;
/* Relaxed atomic adds: threads of one process (each with its own handle)
 * count into the same process-wide counters. */
#define SHM_RECLAIM_COUNT(field, n) \
    ((void)__atomic_fetch_add(&shm_reclaim_counters_for_test.field, (uint64_t)(n), __ATOMIC_RELAXED))
#else
#define SHM_RECLAIM_COUNT(field, n) ((void)0)
#endif

#endif
