/*
 * epoch.c — handle table, reader epochs and the reclamation of retired
 * blocks, across processes.
 *
 * The scheme is epoch-based reclamation with a global counter, in the
 * spirit of LMDB's reader table:
 *
 *   reader:  e = load(global); store(my.epoch, e); full fence; ...read...;
 *            store(my.epoch, 0)
 *   writer:  unlink block; s = fetch_add(global, 1) + 1; stamp block with s;
 *            keep it on my limbo list
 *   free:    when every announced reader epoch is >= s
 *
 * A reader that announced e < s may have entered before the unlink and can
 * still be looking at the block; a reader announcing e >= s loaded the
 * counter after the writer bumped it, so after the unlink, and cannot reach
 * the block. The fence after the announcement and the atomic RMW of the
 * bump are what make "the writer did not see my announcement" imply "I see
 * the unlink".
 *
 * Limbo lists live in shared memory and belong to handle slots, not to
 * processes, so that when a process dies its retired blocks are still
 * found: the reaper frees what is past its grace period and leaves the
 * rest on the orphaned slot until it is.
 *
 * A process is recognised as dead when kill(pid, 0) says ESRCH, or when
 * the pid now belongs to a process with another start time (pid reuse).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "epoch.h"

#define RECLAIM_EVERY 64u   /* retires between reclaim attempts */
#define REAP_WHEN 4096u     /* limbo length that makes us look for dead readers */

uint64_t shm_proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    /* The command name may contain spaces and parentheses: skip to the
     * last ')' and count fields from there (field 3 follows it). */
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return 0;
    p++;
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int pid_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0)
        return 0;
    if (kill(pid, 0) == -1 && errno == ESRCH)
        return 0;
    uint64_t st = shm_proc_start_time(pid);
    if (st && start_time && st != start_time)
        return 0; /* the pid was reused by another process */
    return 1;
}

int shm_handle_alive(const shm_seg *s, uint32_t i)
{
    shm_handle *h = &s->handles[i];
    uint64_t w = atomic_load(&h->word);
    unsigned k = SHM_H_KIND(w);
    if (k != SHM_H_ACTIVE && k != SHM_H_CLAIMING)
        return 0;
    /* A claim in progress has not written its start time yet. */
    return pid_alive(SHM_H_PID(w), k == SHM_H_ACTIVE ? h->start_time : 0);
}

int shm_tag_alive(const shm_seg *s, uint64_t tag)
{
    uint32_t i = SHM_TAG_SLOT(tag);
    if (i >= s->max_handles)
        return 0;
    if (atomic_load(&s->handles[i].incarnation) != SHM_TAG_INC(tag))
        return 0;
    return shm_handle_alive(s, i);
}

static void take_slot(shm_ctx *c, uint32_t i, uint64_t start_time)
{
    shm_handle *h = &c->seg.handles[i];
    uint32_t inc = atomic_fetch_add(&h->incarnation, 1) + 1;
    h->start_time = start_time;
    h->attached_ns = shm_now_ns();
    atomic_store(&h->epoch, 0);
    atomic_store(&h->read_since_ns, 0);
    atomic_store(&h->intent_off, 0);
    atomic_store(&h->word, SHM_H_ACTIVE | ((uint64_t)getpid() << 8));
    c->slot = i;
    c->incarnation = inc;
    c->tag = shm_make_tag(i, inc);
    c->shard = i % SHM_SHARDS;
    c->read_depth = 0;
}

int shm_handle_claim(shm_ctx *c)
{
    shm_seg *s = &c->seg;
    uint64_t me = SHM_H_CLAIMING | ((uint64_t)getpid() << 8);
    uint64_t st = shm_proc_start_time(getpid());
    for (int pass = 0; pass < 3; pass++) {
        /* Orphans are reclaimed by reapers under handle_lock: inherit one
         * only while holding it, so nobody else walks its limbo list. */
        if (pass == 2 && shm_lock_take(c, &s->ctl->handle_lock) < 0)
            break;
        for (uint32_t i = 0; i < s->max_handles; i++) {
            uint64_t w = atomic_load(&s->handles[i].word);
            unsigned k = SHM_H_KIND(w);
            /* Pass 2 takes an orphan, inheriting its limbo list (not one
             * with an unresolved intent: a reaper must settle that). */
            if ((k == SHM_H_FREE ||
                 (pass == 2 && k == SHM_H_ORPHAN && atomic_load(&s->handles[i].intent_off) == 0)) &&
                atomic_compare_exchange_strong(&s->handles[i].word, &w, me)) {
                if (k == SHM_H_FREE) {
                    atomic_store(&s->handles[i].limbo_head, 0);
                    atomic_store(&s->handles[i].limbo_count, 0);
                    atomic_store(&s->handles[i].limbo_bytes, 0);
                }
                take_slot(c, i, st);
                if (pass == 2) {
                    /* Inherited limbo blocks now belong to our tag: a
                     * retired block's tag always names the list holding it. */
                    uint64_t steps = 0;
                    for (uint64_t o = atomic_load(&s->handles[i].limbo_head); o && steps++ < s->size / 64;) {
                        shm_blk *b = shm_blk_at(s, o);
                        if (b == NULL)
                            break;
                        atomic_store(&b->state, c->tag | SHM_BLK_RETIRED);
                        o = atomic_load(&b->link);
                    }
                    shm_lock_drop(&s->ctl->handle_lock);
                }
                return 0;
            }
        }
        if (pass == 2)
            shm_lock_drop(&s->ctl->handle_lock);
        if (pass == 0) {
            /* Turn dead processes' slots into orphans (or free ones). */
            c->slot = UINT32_MAX;
            shm_reap(c);
        }
    }
    return SHM_EFULL;
}

void shm_read_leave(shm_ctx *c)
{
    if (--c->read_depth == 0) {
        shm_handle *me = &c->seg.handles[c->slot];
        atomic_store_explicit(&me->epoch, 0, memory_order_release);
        if (atomic_load_explicit(&me->limbo_count, memory_order_relaxed) >= RECLAIM_EVERY / 2)
            shm_reclaim(c);
    }
}

/* One pass over the handle table: the oldest reader epoch, and whether
 * any closed handle still holds retired blocks (an orphan to finish). */
static uint64_t scan_handles(const shm_seg *s, int *orphans)
{
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < s->max_handles; i++) {
        uint64_t e = atomic_load(&s->handles[i].epoch);
        if (e && e < min)
            min = e;
        if (orphans && SHM_H_KIND(atomic_load(&s->handles[i].word)) == SHM_H_ORPHAN)
            *orphans = 1;
    }
    return min;
}

uint64_t shm_min_reader_epoch(const shm_seg *s)
{
    return scan_handles(s, NULL);
}

/* Unlink and free every block of a limbo list that no reader can see. */
static uint64_t reclaim_list(shm_ctx *c, shm_handle *h, uint64_t min)
{
    const shm_seg *s = &c->seg;
    uint64_t freed = 0, prev = 0, steps = 0;
    uint64_t off = atomic_load(&h->limbo_head);
    while (off) {
        shm_blk *b = shm_blk_at(s, off);
        if (b == NULL || ++steps > s->size / 64) {
            /* Corrupt list: cut it. The sweep reclaims what was beyond. */
            if (prev)
                atomic_store(&((shm_blk *)(s->base + prev))->link, 0);
            else
                atomic_store(&h->limbo_head, 0);
            break;
        }
        uint64_t next = atomic_load(&b->link);
        if (atomic_load(&b->stamp) <= min) {
            if (prev)
                atomic_store(&((shm_blk *)(s->base + prev))->link, next);
            else
                atomic_store(&h->limbo_head, next);
            atomic_fetch_sub(&h->limbo_count, 1);
            if (b->cls != SHM_SLOT_CLASS)
                atomic_fetch_sub(&h->limbo_bytes, shm_class_size(b->cls));
            shm_free(c, off);
            freed++;
        } else {
            prev = off;
        }
        off = next;
    }
    return freed;
}

uint64_t shm_reclaim(shm_ctx *c)
{
    shm_handle *me = &c->seg.handles[c->slot];
    int orphans = 0;
    uint64_t freed = reclaim_list(c, me, scan_handles(&c->seg, &orphans));
    if (orphans && c->read_depth == 0) {
        /* Closed handles left retired blocks behind: free what is due. */
        shm_reap(c);
    } else if (atomic_load(&me->limbo_count) >= REAP_WHEN) {
        /* Something holds the epoch back for long: maybe a dead reader. */
        if (shm_reap(c) > 0)
            freed += reclaim_list(c, me, shm_min_reader_epoch(&c->seg));
    }
    return freed;
}

/* Retire without trying to reclaim: for callers that hold handle_lock
 * (reclaiming may reap, which takes it). */
static int retire_quiet(shm_ctx *c, uint64_t off, uint64_t expect);

int shm_retire(shm_ctx *c, uint64_t off, uint64_t expect)
{
    int rc = retire_quiet(c, off, expect);
    shm_handle *me = &c->seg.handles[c->slot];
    if (rc == 0 && atomic_load(&me->limbo_count) >= RECLAIM_EVERY && c->read_depth == 0)
        shm_reclaim(c);
    return rc;
}

static int retire_quiet(shm_ctx *c, uint64_t off, uint64_t expect)
{
    shm_blk *b = shm_blk_at(&c->seg, off);
    if (b == NULL)
        return SHM_ENOENT;
    if (!atomic_compare_exchange_strong(&b->state, &expect, c->tag | SHM_BLK_RETIRED))
        return SHM_ENOENT;
    shm_handle *me = &c->seg.handles[c->slot];
    /* seq_cst RMW: a full barrier after our unlink (see the essay above). */
    uint64_t stamp = atomic_fetch_add(&c->seg.hdr->epoch, 1) + 1;
    atomic_store(&b->stamp, stamp);
    atomic_store(&b->link, atomic_load(&me->limbo_head));
    atomic_store(&me->limbo_head, off);
    if (b->cls != SHM_SLOT_CLASS) /* statistics count heap bytes only */
        atomic_fetch_add(&me->limbo_bytes, shm_class_size(b->cls));
    atomic_fetch_add(&me->limbo_count, 1);
    return 0;
}

/* A dead handle announced it would unlink and retire a block: if the
 * unlink happened (the reference no longer holds the block) and the block
 * is still the same allocation in the same state, finish the retire. */
static void resolve_intent(shm_ctx *c, shm_handle *h)
{
    const shm_seg *s = &c->seg;
    uint64_t off = atomic_load(&h->intent_off);
    if (off == 0)
        return;
    shm_blk *b = shm_blk_at(s, off);
    uint64_t ref = atomic_load(&h->intent_ref);
    _Atomic uint64_t *rp = ref % 8 == 0 ? shm_at(s, ref, 8) : NULL;
    uint64_t st = atomic_load(&h->intent_state);
    if (b && rp && atomic_load(&b->state) == st && atomic_load(&b->stamp) == atomic_load(&h->intent_stamp) &&
        atomic_load(rp) != off)
        retire_quiet(c, off, st); /* we hold handle_lock */
    atomic_store(&h->intent_off, 0);
}

int shm_reap(shm_ctx *c)
{
    shm_seg *s = &c->seg;
    int reaped = 0;
    if (shm_lock_take(c, &s->ctl->handle_lock) < 0) /* every step below is a single store */
        return 0;
    for (uint32_t i = 0; i < s->max_handles; i++) {
        if (i == c->slot)
            continue;
        shm_handle *h = &s->handles[i];
        uint64_t w = atomic_load(&h->word);
        unsigned k = SHM_H_KIND(w);
        if ((k == SHM_H_ACTIVE || k == SHM_H_CLAIMING) && !shm_handle_alive(s, i)) {
            if (!atomic_compare_exchange_strong(&h->word, &w, SHM_H_ORPHAN))
                continue;
            atomic_fetch_add(&h->incarnation, 1); /* its tags are dead now */
            atomic_store(&h->epoch, 0);           /* a dead reader holds nothing */
            reaped++;
            k = SHM_H_ORPHAN;
        }
        if (k == SHM_H_ORPHAN) {
            if (c->slot != UINT32_MAX) {
                resolve_intent(c, h);
                reclaim_list(c, h, shm_min_reader_epoch(s));
            }
            if (atomic_load(&h->limbo_head) == 0 && atomic_load(&h->intent_off) == 0) {
                uint64_t o = SHM_H_ORPHAN;
                atomic_compare_exchange_strong(&h->word, &o, SHM_H_FREE);
            }
        }
    }
    shm_lock_drop(&s->ctl->handle_lock);
    return reaped;
}

void shm_handle_release(shm_ctx *c)
{
    shm_handle *me = &c->seg.handles[c->slot];
    atomic_store(&me->epoch, 0);
    c->read_depth = 0;
    shm_reclaim(c);
    /* Blocks still in limbo stay with the slot; the next reaper or
     * claimant finishes them. */
    atomic_store(&me->word, atomic_load(&me->limbo_head) ? SHM_H_ORPHAN : SHM_H_FREE);
}
