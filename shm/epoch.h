/*
 * epoch.h — the handle table and epoch-based reclamation across processes.
 *
 * Each attached process holds one slot of the handle table (pid, process
 * start time, incarnation). A reader announces the global epoch it saw when
 * entering a read section; a writer that unlinks a block stamps it with a
 * fresh epoch and keeps it on its own limbo list until every announced
 * epoch has caught up. Dead processes are found by pid and start time and
 * their slots (and limbo lists) taken over by whoever reaps them.
 */
#ifndef SHM_EPOCH_H
#define SHM_EPOCH_H

#include <sys/types.h>

#include "alloc.h"

enum { SHM_H_FREE = 0, SHM_H_CLAIMING = 1, SHM_H_ACTIVE = 2, SHM_H_ORPHAN = 3 };
#define SHM_H_KIND(w) ((unsigned)((w) & 0xffu))
#define SHM_H_PID(w) ((pid_t)((w) >> 8))

/* Start time of `pid` (field 22 of /proc/PID/stat), 0 if unknown. */
uint64_t shm_proc_start_time(pid_t pid);

/* Claim a handle slot for this process. SHM_EFULL when every slot is held
 * by a live process (dead ones are reaped first). */
int shm_handle_claim(shm_ctx *c);

/* Release the slot at close. Retired blocks that readers may still see are
 * left with the slot (marked ORPHAN) for the next reaper. */
void shm_handle_release(shm_ctx *c);

/* 1 when slot i belongs to a live process (or is being claimed by one). */
int shm_handle_alive(const shm_seg *s, uint32_t i);

/* 1 when blocks stamped with `tag` belong to a live handle. */
int shm_tag_alive(const shm_seg *s, uint64_t tag);

/* Reap dead or orphaned slots: adopt their limbo lists, free the slot.
 * Returns how many were reaped. */
int shm_reap(shm_ctx *c);

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

/* Move a block whose state word is `expect` (USED, or RETIRED by a dead
 * handle that never listed it) to our limbo list.
 * Returns 0, or SHM_ENOENT if someone else changed its state first (then
 * the block is theirs to deal with). */
int shm_retire(shm_ctx *c, uint64_t off, uint64_t expect);

/* Free what in our limbo no reader can see any more. Returns blocks freed. */
uint64_t shm_reclaim(shm_ctx *c);

/* Oldest epoch announced by a live reader (UINT64_MAX: none); dead readers
 * found on the way are not counted. */
uint64_t shm_min_reader_epoch(const shm_seg *s);

#endif
