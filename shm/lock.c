/*
 * lock.c — the segment's locks (see lock.h for why they are not pthread
 * mutexes).
 *
 * The word: 0 free; else an owner id, with WAITERS set once someone may
 * sleep on it (the holder then wakes one at drop). Owner ids:
 *   handle:  slot + 1 (13 bits) | incarnation & 0x1ffff << 13
 *   thread:  THREAD | tid       (a process that holds no handle yet)
 * Taking is one compare-and-swap when free. Otherwise the taker spins a
 * little, then sleeps on the futex in short slices, and between slices
 * asks whether the holder still lives; a dead holder's lock is taken
 * over with a compare-and-swap on the exact word seen, so two takers
 * never both win it. The question costs a read of /proc, which is why it
 * is asked only after a first slice, and then every CHECK_EVERY_NS.
 *
 * Unlike a robust futex, the kernel does not tell us at exit: a dead
 * holder is noticed within SHM_LOCK_JUDGE_NS (or once it is a zombie), which
 * is all crash recovery needs.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "epoch.h"
#include "proc.h"

#define WAITERS 0x80000000u
#define THREAD 0x40000000u
#define ID_MASK 0x3fffffffu
#define SLOT_BITS 13
#define INC_MASK 0x1ffffu
#define SPINS 128
#define CHECK_EVERY_NS 10000000ull

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Whose id is this? 1 when it names a live holder. Ids come from the
 * segment: anything out of range names nobody. */
static int owner_alive(const shm_seg *s, uint32_t id)
{
    if (id & THREAD)
        return (id & ~THREAD) < SHM_PID_LIMIT && shm_proc_alive((pid_t)(id & ~THREAD), 0);
    uint32_t slot = (id & ((1u << SLOT_BITS) - 1)) - 1;
    if (slot >= s->max_handles)
        return 0;
    shm_handle *h = &s->handles[slot];
    if ((atomic_load(&h->incarnation) & INC_MASK) != id >> SLOT_BITS)
        return 0;
    uint64_t w = atomic_load(&h->word);
    if (SHM_H_KIND(w) != SHM_H_ACTIVE)
        return 0;
    return shm_proc_alive(SHM_H_PID(w), h->start_time);
}

int shm_lock_word_ok(const shm_seg *s, const shm_lock *l)
{
    uint32_t id = atomic_load(&l->word) & ~WAITERS;
    if (id == 0)
        return 1;
    if (id & THREAD)
        return (id & ~THREAD) - 1 < SHM_PID_LIMIT;
    return (id & ((1u << SLOT_BITS) - 1)) - 1 < s->max_handles;
}

static uint32_t my_id(const shm_ctx *c)
{
    if (c->slot < c->seg.max_handles && c->slot < (1u << SLOT_BITS) - 1)
        return (c->slot + 1) | (c->incarnation & INC_MASK) << SLOT_BITS;
    return THREAD | ((uint32_t)syscall(SYS_gettid) & ID_MASK);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t val, uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT, val, &ts, NULL, 0);
}

static int take_slow(const shm_seg *s, shm_lock *l, uint32_t me, uint64_t ns)
{
    uint64_t start = 0, check_at = 0;
    /* Once we may have slept, others may sleep too: we take the lock
     * with WAITERS set, so our drop wakes the next one. */
    uint32_t take = me | WAITERS;
    for (int spins = 0;;) {
        uint32_t w = atomic_load_explicit(&l->word, memory_order_relaxed);
        uint32_t owner = w & ~WAITERS;
        if (owner == 0) {
            if (atomic_compare_exchange_weak_explicit(&l->word, &w, take, memory_order_acquire,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        if (owner == me)
            return SHM_ECORRUPT;
        if (spins < SPINS) {
            spins++;
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        uint64_t now = mono_ns();
        if (start == 0) {
            start = now;
            check_at = now + SHM_LOCK_JUDGE_NS;
        }
        if (now >= check_at) {
            if (!owner_alive(s, owner)) {
                if (atomic_compare_exchange_strong_explicit(&l->word, &w, take, memory_order_acquire,
                                                            memory_order_relaxed))
                    return 1;
                continue;
            }
            check_at = now + CHECK_EVERY_NS;
        }
        if (now - start >= ns)
            return SHM_EBUSY;
        if (!(w & WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&l->word, &w, w | WAITERS, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        uint64_t until = check_at < start + ns ? check_at : start + ns;
        futex_wait(&l->word, w | WAITERS, until > now ? until - now : 1);
    }
}

int shm_lock_take_for(shm_ctx *c, shm_lock *l, uint64_t ns)
{
    uint32_t me = my_id(c), w = 0;
    if (atomic_compare_exchange_strong_explicit(&l->word, &w, me, memory_order_acquire,
                                                memory_order_relaxed))
        return 0;
    return take_slow(&c->seg, l, me, ns);
}

void shm_lock_drop(shm_lock *l)
{
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) & WAITERS)
        syscall(SYS_futex, (uint32_t *)&l->word, FUTEX_WAKE, 1, NULL, NULL, 0);
}
