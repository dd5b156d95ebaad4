/*
 * epoch.c — handle table, reader epochs and the reclamation of retired
 * blocks, across processes.
 *
 * The scheme is epoch-based reclamation (Fraser's, as Concurrency Kit's
 * ck_epoch implements it for threads) over a segment shared by processes
 * that may die at any instruction. What is shared lives in the segment:
 * one global epoch counter, and per handle slot an announced epoch and a
 * limbo queue. The protocol:
 *
 *   reader:  e = load(global); store(my.epoch, e); full fence; ...read...;
 *            store(my.epoch, 0)
 *   writer:  unlink block; s = fetch_add(global, 1) + 1; stamp block with
 *            s; append it to my limbo queue
 *   free:    a block stamped s, once every announced reader epoch is >= s
 *
 * Safety. A reader that announced e < s loaded the counter before the
 * bump that made s, so it may have entered before the unlink and still be
 * looking at the block. A reader announcing e >= s loaded the counter
 * after that bump, so after the unlink, and cannot reach the block. The
 * fence after the announcement and the atomic RMW of the bump (a full
 * barrier, sequenced after the unlink) are what make "the scan did not
 * see my announcement" imply "I see the unlink": a scan made at any time
 * after the bump covers every block stamped up to it. A reader that dies
 * inside its section keeps its announcement until it is reaped, so a
 * dead reader errs on the side of keeping memory, never of freeing it.
 *
 * The limbo queue is ordered. Stamps come from one counter and a handle
 * is used by one thread at a time, so the blocks a handle appends carry
 * increasing stamps: the queue is sorted, oldest at its head. (Each block
 * is its own batch of ck_epoch's sense, tagged with its own epoch; a
 * coarser batch would only save the stamp word the block header already
 * has.) If the head cannot be freed, nothing behind it can be, so a
 * reclamation attempt frees from the head while the head's stamp is <= the
 * oldest announced epoch and stops at the first block that is not: it
 * looks at every block it frees and at one it does not, never at the
 * rest. A queue taken over from an orphan keeps the order, since anything
 * appended later gets a later stamp. Safety does not rest on the order: a
 * block is freed only when its own stamp is due, so a queue out of order
 * (a segment written by an older version, whose lists were newest first)
 * only frees later, never too early.
 *
 * Cost. An attempt is one scan of the handle table (the oldest announced
 * epoch) plus one step per block freed, whatever the length of the queue:
 * a reader that stays in its section costs a writer nothing per block
 * (the queue only grows, linearly, and is given back whole once the
 * reader leaves or is reaped). Attempts come every RECLAIM_EVERY retires
 * or section exits; while the head stays pinned, every attempt that frees
 * nothing doubles that interval up to RECLAIM_EVERY_MAX, so a stuck reader
 * costs a scan per 1024 operations, not per operation. The interval and
 * the queue's tail are process-local (shm_ctx): recovery never needs them.
 *
 * The scan stops at the high-water mark of claimed handle slots
 * (handles_hwm): a table sized for 256 processes and used by four costs
 * four slots per scan, not 256. Claims take the lowest free slot, so the
 * mark is the most processes ever attached at once. Safety: before its
 * handle can announce an epoch, a claim loads the mark (seq_cst) and, if
 * it does not yet cover the slot, raises it (a seq_cst RMW); the
 * announcement is followed by the reader's full fence. A scan that loads
 * a mark not covering the slot therefore precedes that claim's load or
 * RMW in the single total order of seq_cst operations, hence
 * precedes the reader's fence, so the reader sees every unlink sequenced
 * before the scan's bump: exactly the case of a scan that reads an epoch
 * of 0 from a slot the reader has not announced in yet. Slots above the
 * mark hold no orphan either, as orphans are handles once claimed. A
 * scribbled mark is clamped to the table; the check restores one found
 * below a slot in use.
 *
 * Dead readers. Reaping (shm_reap: handle_lock, /proc reads for every
 * attached process) is never done on the strength of a long queue alone.
 * An attempt that finds the head pinned, after the queue has grown by
 * REAP_WHEN blocks since the last look, checks whether the one reader
 * holding the oldest epoch is alive (one kill() and one /proc read) and
 * reaps only if it is dead. An attempt reaps for orphans only when an
 * orphan's queue has a block due or an intent to settle. Either happens at
 * most once per REAP_GAP_NS per handle and once per attempt.
 *
 * Crash safety. Every queue step is a single store that keeps the queue
 * well formed for whoever walks it after our death: append writes the
 * stamp and a null link into the block before linking it from the tail
 * (or the head), and a pop moves the head past a block before freeing it.
 * A death in between leaves a RETIRED block of a dead tag on no queue,
 * which the sweep of shmreg_check() gives back through its own limbo (it
 * may still be seen). Queues belong to handle slots, not processes: a
 * closed or dead process's queue stays with its slot (ORPHAN), a reaper
 * frees from it what is due, and a claimant may inherit the rest.
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

#include "crashpoint.h"
#include "epoch.h"
#include "proc.h"

#define RECLAIM_EVERY 64u        /* retires + section exits between attempts */
#define RECLAIM_EVERY_MAX 1024u  /* ... at most, while a reader pins the queue */
#define REAP_WHEN 4096u          /* queue growth while pinned before we look at the reader */
#define REAP_GAP_NS 10000000ull  /* at most one reap or liveness check per handle per 10 ms */

#ifdef SHMREG_TESTING
shm_reclaim_counters shm_reclaim_counters_for_test;
#endif

uint32_t shm_handles_used(const shm_seg *s)
{
    uint32_t n = atomic_load(&s->hdr->handles_hwm);
    return n < s->max_handles ? n : s->max_handles;
}

void shm_handles_raise(const shm_seg *s, uint32_t n)
{
    uint32_t cur = atomic_load(&s->hdr->handles_hwm);
    while (cur < n && !atomic_compare_exchange_weak(&s->hdr->handles_hwm, &cur, n))
        ;
}

int shm_handle_alive(const shm_seg *s, uint32_t i)
{
    return shm_word_alive(&s->handles[i], atomic_load(&s->handles[i].word));
}

int shm_word_alive(const shm_handle *h, uint64_t w)
{
    unsigned k = SHM_H_KIND(w);
    if (k != SHM_H_ACTIVE && k != SHM_H_CLAIMING)
        return 0;
    /* A claim in progress has not written its start time yet. */
    return shm_proc_alive(SHM_H_PID(w), k == SHM_H_ACTIVE ? h->start_time : 0);
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
    atomic_store(&h->note, 0);
    atomic_store(&h->word, SHM_H_ACTIVE | ((uint64_t)getpid() << 8));
    c->slot = i;
    c->incarnation = inc;
    c->tag = shm_make_tag(i, inc);
    c->shard = i % SHM_SHARDS;
    c->read_depth = 0;
    c->limbo_tail = 0;
    c->reclaim_ops = 0;
    c->reclaim_every = RECLAIM_EVERY;
    c->reap_mark = atomic_load(&h->limbo_count) + REAP_WHEN;
    c->reap_after_ns = 0;
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
            if (k != SHM_H_FREE &&
                !(pass == 2 && k == SHM_H_ORPHAN && atomic_load(&s->handles[i].intent_off) == 0))
                continue;
            /* The mark covers the slot before its word says taken: a
             * reader's epoch, and a check that sees the slot in use, come
             * after (a failed claim leaves the mark one higher: harmless). */
            shm_handles_raise(s, i + 1);
            if (atomic_compare_exchange_strong(&s->handles[i].word, &w, me)) {
                if (k == SHM_H_FREE) {
                    atomic_store(&s->handles[i].limbo_head, 0);
                    atomic_store(&s->handles[i].limbo_count, 0);
                }
                SHM_CRASH_POINT("epoch_claim_claiming");
                take_slot(c, i, st);
                if (pass == 2) {
                    /* Inherited limbo blocks now belong to our tag: a
                     * retired block's tag always names the queue holding
                     * it. The walk also finds the tail we append at (a bad
                     * link ends the queue there: the next append cuts
                     * what lay beyond, and the sweep reclaims it). */
                    uint64_t steps = 0;
                    for (uint64_t o = atomic_load(&s->handles[i].limbo_head); o && steps++ < shm_walk_limit(s);) {
                        shm_blk *b = shm_blk_at(s, o);
                        if (b == NULL)
                            break;
                        atomic_store(&b->state, c->tag | SHM_BLK_RETIRED);
                        c->limbo_tail = o;
                        o = atomic_load(&b->link);
                        SHM_CRASH_POINT("epoch_adopt_retagged");
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
        if (atomic_load_explicit(&me->note, memory_order_relaxed))
            shm_store(&me->note, 0); /* the change is over, announced */
        shm_store(&me->epoch, 0);
        if (++c->reclaim_ops >= c->reclaim_every &&
            atomic_load_explicit(&me->limbo_head, memory_order_relaxed))
            shm_reclaim(c);
    }
}

/* One pass over the handle table: the oldest announced reader epoch, the
 * slot that announced it, and whether a reap would now settle something
 * for a closed or dead handle (an orphan with an intent, or whose oldest
 * limbo block is past its grace period). */
typedef struct reader_scan {
    uint64_t min;        /* UINT64_MAX: no reader */
    uint32_t pin;        /* slot holding min, UINT32_MAX if none */
    int orphan_due;
} reader_scan;

static reader_scan scan_readers(const shm_seg *s)
{
    reader_scan r = {UINT64_MAX, UINT32_MAX, 0};
    uint64_t orphan_oldest = UINT64_MAX;
    SHM_RECLAIM_COUNT(scans, 1);
    for (uint32_t i = 0, n = shm_handles_used(s); i < n; i++) {
        shm_handle *h = &s->handles[i];
        uint64_t e = atomic_load(&h->epoch);
        if (e && e < r.min) {
            r.min = e;
            r.pin = i;
        }
        if (SHM_H_KIND(atomic_load(&h->word)) != SHM_H_ORPHAN)
            continue;
        if (atomic_load(&h->intent_off)) {
            r.orphan_due = 1;
            continue;
        }
        /* Unlocked, so only a hint: a reaper may be freeing that block.
         * An empty orphan is due too: the reap frees its slot. */
        uint64_t o = atomic_load(&h->limbo_head);
        if (o == 0) {
            r.orphan_due = 1;
            continue;
        }
        shm_blk *b = shm_blk_at(s, o);
        uint64_t st = b ? atomic_load(&b->stamp) : 0; /* a bad link: the reap cuts it */
        orphan_oldest = st < orphan_oldest ? st : orphan_oldest;
    }
    if (orphan_oldest != UINT64_MAX && orphan_oldest <= r.min)
        r.orphan_due = 1;
    return r;
}

uint64_t shm_limbo_bytes(const shm_seg *s, uint32_t i)
{
    /* Only the owner pops, and only from the head, so a walk that ends
     * with the head it started from saw no block freed under it. A walk
     * that loses that race is retried; one that meets a bad link stops
     * (the check reports it). Kept counters would be simpler and cheaper,
     * but a process killed between a link and its count would leave them
     * wrong for good. */
    const shm_handle *h = &s->handles[i];
    uint64_t bytes = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        uint64_t head = atomic_load(&h->limbo_head), steps = 0;
        bytes = 0;
        for (uint64_t off = head; off && steps++ < shm_walk_limit(s);) {
            shm_blk *b = shm_blk_at(s, off);
            if (b == NULL || SHM_KIND(atomic_load(&b->state)) != SHM_BLK_RETIRED)
                break;
            if (b->cls < SHM_NCLASS) /* heap blocks only, not slots */
                bytes += shm_class_size(b->cls);
            off = atomic_load(&b->link);
        }
        if (atomic_load(&h->limbo_head) == head)
            break;
    }
    return bytes;
}

uint64_t shm_min_reader_epoch(const shm_seg *s)
{
    return scan_readers(s).min;
}

/* Free blocks from the old end of h's limbo queue while no reader can see
 * them (stamp <= min), stopping at the first one a reader may: the queue
 * is in stamp order, so nothing behind it could be freed either. Looks at
 * the blocks it frees and at one more. */
static uint64_t drain(shm_ctx *c, shm_handle *h, uint64_t min)
{
    const shm_seg *s = &c->seg;
    uint64_t freed = 0;
    for (uint64_t off; (off = atomic_load(&h->limbo_head)) != 0;) {
        shm_blk *b = shm_blk_at(s, off);
        SHM_RECLAIM_COUNT(examined, 1);
        if (b == NULL || SHM_KIND(atomic_load(&b->state)) != SHM_BLK_RETIRED) {
            /* Corrupt queue (a bad link, or one back into blocks already
             * freed): cut it. The sweep reclaims what lay beyond. */
            shm_store(&h->limbo_head, 0);
            shm_store(&h->limbo_count, 0);
            break;
        }
        if (atomic_load(&b->stamp) > min)
            break;
        shm_store(&h->limbo_head, atomic_load(&b->link));
        SHM_CRASH_POINT("epoch_reclaim_unlinked");
        atomic_fetch_sub(&h->limbo_count, 1);
        shm_free(c, off);
        freed++;
    }
    if (atomic_load(&h->limbo_head) == 0) {
        /* An empty queue has a known count: whatever a crash between a
         * link and its count left behind ends here. */
        shm_store(&h->limbo_count, 0);
        if (c->slot < s->max_handles && h == &s->handles[c->slot])
            c->limbo_tail = 0;
    }
    SHM_RECLAIM_COUNT(freed, freed);
    return freed;
}

uint64_t shm_reclaim(shm_ctx *c)
{
    const shm_seg *s = &c->seg;
    shm_handle *me = &s->handles[c->slot];
    SHM_RECLAIM_COUNT(attempts, 1);
    c->reclaim_ops = 0;
    reader_scan r = scan_readers(s);
    uint64_t freed = drain(c, me, r.min);
    int pinned = atomic_load(&me->limbo_head) != 0;
    uint64_t left = atomic_load(&me->limbo_count);
    if (freed || !pinned) {
        c->reclaim_every = RECLAIM_EVERY; /* moving again: look often */
        c->reap_mark = left + REAP_WHEN;
    } else if (c->reclaim_every < RECLAIM_EVERY_MAX) {
        c->reclaim_every *= 2; /* pinned: look less often */
    }

    /* Reaping, paced (see the top of this file). Not from inside a read
     * section: the caller may be in the middle of a change. */
    int suspect = pinned && left >= c->reap_mark;
    if (c->read_depth || (!r.orphan_due && !suspect))
        return freed;
    uint64_t now = shm_mono_ns();
    if (now < c->reap_after_ns)
        return freed;
    c->reap_after_ns = now + REAP_GAP_NS;
    c->reap_mark = left + REAP_WHEN;
    if (!r.orphan_due) {
        /* Pinned for long. Only the reader holding the oldest epoch
         * matters: while it lives, the head stays where it is. */
        SHM_RECLAIM_COUNT(alive_checks, 1);
        if (r.pin == UINT32_MAX || r.pin == c->slot || shm_handle_alive(s, r.pin))
            return freed;
    }
    if (shm_reap(c) > 0) /* a dead reader's epoch is gone: look again */
        freed += drain(c, me, shm_min_reader_epoch(s));
    return freed;
}

/* Retire without trying to reclaim: for callers that hold handle_lock
 * (reclaiming may reap, which takes it). */
static int retire_quiet(shm_ctx *c, uint64_t off, uint64_t expect);

int shm_retire(shm_ctx *c, uint64_t off, uint64_t expect)
{
    int rc = retire_quiet(c, off, expect);
    if (rc == 0 && ++c->reclaim_ops >= c->reclaim_every && c->read_depth == 0)
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
    SHM_CRASH_POINT("epoch_retire_marked");
    shm_handle *me = &c->seg.handles[c->slot];
    /* seq_cst RMW: a full barrier after our unlink (see the essay above). */
    uint64_t stamp = atomic_fetch_add(&c->seg.hdr->epoch, 1) + 1;
    shm_store(&b->stamp, stamp);
    shm_store(&b->link, 0);
    /* The block is complete before a link makes it part of the queue. */
    if (c->limbo_tail)
        shm_store(&((shm_blk *)(c->seg.base + c->limbo_tail))->link, off);
    else
        shm_store(&me->limbo_head, off);
    c->limbo_tail = off;
    SHM_CRASH_POINT("epoch_retire_listed");
    atomic_fetch_add(&me->limbo_count, 1);
    SHM_RECLAIM_COUNT(retires, 1);
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
    SHM_CRASH_POINT("epoch_intent_resolved");
    atomic_store(&h->intent_off, 0);
}

int shm_reap(shm_ctx *c)
{
    shm_seg *s = &c->seg;
    int reaped = 0;
    SHM_RECLAIM_COUNT(reaps, 1);
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
            SHM_CRASH_POINT("epoch_reap_orphaned");
            atomic_fetch_add(&h->incarnation, 1); /* its tags are dead now */
            atomic_store(&h->epoch, 0);           /* a dead reader holds nothing */
            reaped++;
            k = SHM_H_ORPHAN;
        }
        if (k == SHM_H_ORPHAN) {
            if (c->slot != UINT32_MAX) {
                uint64_t note = atomic_load(&h->note);
                if (note && c->on_dead_note)
                    c->on_dead_note(c, note);
                SHM_CRASH_POINT("epoch_reap_noted");
                atomic_store(&h->note, 0);
                resolve_intent(c, h);
                drain(c, h, shm_min_reader_epoch(s));
            }
            if (atomic_load(&h->limbo_head) == 0 && atomic_load(&h->intent_off) == 0) {
                /* An empty list counts nothing, whatever a step cut short
                 * by the owner's death left in the counters. */
                atomic_store(&h->limbo_count, 0);
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
    atomic_store(&me->note, 0); /* a clean close: nothing left to announce */
    c->read_depth = 0;
    shm_reclaim(c);
    SHM_CRASH_POINT("epoch_release_reclaimed");
    /* Blocks still in limbo stay with the slot; the next reaper or
     * claimant finishes them. */
    atomic_store(&me->word, atomic_load(&me->limbo_head) ? SHM_H_ORPHAN : SHM_H_FREE);
}
