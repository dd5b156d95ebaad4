/*
 * lock.h — the segment's locks: a futex word whose every value the engine
 * understands, held by a handle (or, before a process has one, a thread),
 * recovered from a dead holder, and never waited on without a bound.
 *
 * Why not a robust pthread mutex (what shmreg used before): its words are
 * glibc's. A scribbled kind word made glibc assert inside
 * pthread_mutex_timedlock, and a scribbled owner word made
 * pthread_mutex_lock wait for ever on a thread that never existed. Here
 * the word names a handle slot and the low bits of its incarnation, so a
 * holder is judged alive exactly as the handle table judges processes
 * (pid, start time, and not a zombie), and garbage names nobody alive: it
 * is taken over like a dead holder's lock and the caller repairs what the
 * lock guards, as it would after a crash.
 */
#ifndef SHM_LOCK_H
#define SHM_LOCK_H

#include <sys/types.h>

#include "seg.h"

struct shm_ctx;

/* The longest any lock is waited for on a normal path: holders keep a
 * lock for microseconds, so a lock held this long is held by a stopped
 * process or by garbage that names a live one. The wait then ends with
 * SHM_EBUSY instead of lasting for ever. */
#define SHM_LOCK_WAIT_NS 2000000000ull

/* How long a taker waits before it first asks whether the holder lives:
 * a bound shorter than this can never take over a dead holder's lock. */
#define SHM_LOCK_JUDGE_NS 200000ull

/* Take `l` for `c`, waiting at most `ns`. Returns 0; 1 when the lock was
 * taken over from a holder that is dead (or a word that names nobody):
 * the caller must repair what it guards before relying on it;
 * SHM_EBUSY when a live holder kept it for `ns`; SHM_ECORRUPT when the
 * word names the caller itself (the engine never nests a lock, so that is
 * garbage; the lock is NOT held). */
int shm_lock_take_for(struct shm_ctx *c, shm_lock *l, uint64_t ns);

static inline int shm_lock_take(struct shm_ctx *c, shm_lock *l)
{
    return shm_lock_take_for(c, l, SHM_LOCK_WAIT_NS);
}

void shm_lock_drop(shm_lock *l);

/* 1 when the word of `l` is one the engine writes: free, or an id of a
 * handle slot that exists or of a possible thread. For the check: any
 * other value is corruption (takers treat it as a dead holder). */
int shm_lock_word_ok(const shm_seg *s, const shm_lock *l);

#endif
