/*
 * timer.c — session timeouts: a timer wheel in the segment, and the sweep
 * that fires what is due in exactly one process.
 *
 * Why a wheel. The sweep must cost what is due, not the table: a SIP
 * server sweeps every few hundred milliseconds over maybe a million
 * calls. A wheel of REG_WHEEL_BUCKETS buckets of SHMREG_TIMER_TICK_NS
 * each (a lap is about 73 minutes) puts a timer in the bucket of its
 * deadline's tick; a sweep visits the buckets of the ticks that passed
 * since the last one and looks only at the timers there. A timer due a
 * lap or more ahead shares a bucket and is passed over once per lap.
 * The buckets are the chains of a stripe-locked index (shm/index.h), so
 * arming takes one stripe lock for a moment and the wheel has no global
 * lock.
 *
 * The cursor. reg_shared.swept_tick is the first tick whose bucket may
 * still hold due timers: every bucket of a tick before it has been swept
 * of everything due. A timer is put in the bucket of max(its tick, the
 * cursor), and the cursor passes a bucket only under that bucket's lock,
 * after sweeping it; an arm re-reads the cursor under the lock and tries
 * again if it moved past. So no timer lands behind the cursor unseen.
 * The cursor never passes the tick of the sweep's own "now" (its bucket
 * can still get timers due later in the same tick), nor a bucket that
 * still holds a claimed timer: if the claimer dies, the next sweep finds
 * its claim there and takes it over.
 *
 * Claims. A timer record's state goes ARMED -> CLAIMED|tag -> FIRED by
 * compare-and-swap, or ARMED -> CANCELLED when the session's timer is
 * replaced or disarmed (the session's `timer` word names the armed one).
 * A sweep claims a due timer, takes its action, then moves CLAIMED ->
 * FIRED and only then publishes the timeout event: the one CAS to FIRED
 * can succeed once, so a timer fires at most once; a claimer that dies
 * before it is replaced by the next sweep (its tag names a dead handle),
 * so a due timer is never lost. The action is safe to redo: FAIL is a
 * state move to Failed from whatever live state the session is in.
 *
 * Lifetimes. Records are heap blocks owned by their session's slot. The
 * one who takes a record off its bucket chain, under the lock, retires
 * it: a sweep for FIRED and CANCELLED records, a canceller for its own.
 */
#include <stdio.h>

#include <stdio.h>

#include "reg.h"
#include "crashpoint.h"
#include "crashpoint.h"

#define TICK_SHIFT 26u
_Static_assert(SHMREG_TIMER_TICK_NS == 1ull << TICK_SHIFT, "tick width");
#define SWEEP_BATCH 64u

static reg_timer *timer_at(shmreg *h, uint64_t off)
{
    return reg_timer_at(&h->c.seg, off);
}

static uint64_t tick_of(uint64_t ns)
{
    return ns >> TICK_SHIFT;
}

/* The cursor, set on first use to the tick of `now`. */
static uint64_t cursor(shmreg *h, uint64_t now)
{
    uint64_t c = atomic_load(&h->shared->swept_tick);
    if (c == 0) {
        uint64_t want = tick_of(now);
        if (!atomic_compare_exchange_strong(&h->shared->swept_tick, &c, want))
            return c;
        return want;
    }
    return c;
}

/* The bucket lists. Walkers follow `next` with no lock, as on any index
 * chain; writers, under the bucket's stripe lock, also keep `prev`, so
 * that a timer replaced or disarmed leaves its bucket in O(1) however
 * many timers share the tick (a burst of calls under one policy). Every
 * store keeps the `next` chain whole; a holder that dies between the two
 * leaves a stale `prev`, so the taker of its lock relinks the `prev`
 * words of the buckets that lock guards. */
static void relink_stripe(shmreg *h, const shm_lock *l)
{
    uint32_t stripe = (uint32_t)(l - h->wheel.stripe);
    for (uint32_t b = stripe; b < h->wheel.buckets; b += SHM_STRIPES) {
        uint64_t prev = 0, off = atomic_load(&h->wheel.bucket[b]);
        for (uint64_t steps = 0; off && steps < shm_walk_limit(&h->c.seg); steps++) {
            reg_timer *t = timer_at(h, off);
            if (t == NULL)
                break;
            atomic_store(&t->prev, prev);
            prev = off;
            off = atomic_load(&t->next);
        }
    }
}

static int wheel_lock(shmreg *h, uint64_t tick, shm_lock **l)
{
    *l = shm_index_lock(&h->wheel, tick);
    int rc = shm_lock_take(&h->c, *l);
    if (rc == 1)
        relink_stripe(h, *l);
    return rc < 0 ? reg_engine_fail(rc, "timer wheel lock") : 0;
}

/* Under the lock: put `off` first on its bucket. */
static void bucket_push(shmreg *h, uint64_t off, reg_timer *t)
{
    _Atomic uint64_t *head = shm_index_head(&h->wheel, t->tick);
    uint64_t first = atomic_load(head);
    reg_timer *f = timer_at(h, first);
    atomic_store(&t->next, first);
    atomic_store(&t->prev, 0);
    if (f)
        atomic_store(&f->prev, off);
    atomic_store_explicit(head, off, memory_order_release);
}

/* Under the lock: take `off` off its bucket if it is on it (1), in O(1). */
static int bucket_remove(shmreg *h, uint64_t off, reg_timer *t)
{
    _Atomic uint64_t *head = shm_index_head(&h->wheel, t->tick);
    uint64_t p = atomic_load(&t->prev), n = atomic_load(&t->next);
    reg_timer *pt = p ? timer_at(h, p) : NULL;
    _Atomic uint64_t *link = p ? (pt ? &pt->next : NULL) : head;
    if (link == NULL || atomic_load(link) != off)
        return 0; /* not on it (never pushed, or taken off already) */
    atomic_store(link, n);
    reg_timer *nt = timer_at(h, n);
    if (nt)
        atomic_store(&nt->prev, p);
    return 1;
}

/* Take `off` off its bucket and retire it, if it is still on it. */
static void unbucket(shmreg *h, uint64_t off)
{
    reg_timer *t = timer_at(h, off);
    shm_lock *l;
    if (t == NULL || wheel_lock(h, t->tick, &l) != 0)
        return;
    int was = bucket_remove(h, off, t);
    shm_lock_drop(l);
    if (was)
        reg_retire_used(h, off);
}

/* Cancel the record `off` that the session no longer names: if it was
 * armed, nobody fires it; take it off its bucket. A claimed one is left
 * to its claimer, who finds it no longer the session's. */
static void cancel(shmreg *h, uint64_t off)
{
    reg_timer *t = timer_at(h, off);
    if (t == NULL)
        return;
    uint64_t st = REG_TIMER_ARMED;
    if (atomic_compare_exchange_strong(&t->state, &st, REG_TIMER_CANCELLED) ||
        st == REG_TIMER_CANCELLED)
        unbucket(h, off);
}

int reg_timer_arm(shmreg *h, uint32_t si, uint64_t deadline_ns, unsigned flags, uint64_t grace_ns)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t fresh = 0;
    if (deadline_ns) {
        fresh = shm_alloc(&h->c, sizeof(reg_timer), si + 1);
        if (fresh == 0)
            return shmreg__fail(SHMREG_EFULL, "registry heap full (timer)");
        reg_timer *t = reg_payload((shm_blk *)(h->c.seg.base + fresh));
        memset(t, 0, sizeof *t);
        atomic_store(&t->state, REG_TIMER_ARMED);
        t->deadline_ns = deadline_ns;
        t->grace_ns = grace_ns;
        t->flags = flags & (SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_NOTIFY);
        t->slot = si;
        memcpy(t->sid, x->id, SHMREG_ID_BYTES);
        for (;;) {
            uint64_t c = cursor(h, shm_now_ns());
            t->tick = tick_of(deadline_ns) > c ? tick_of(deadline_ns) : c;
            shm_lock *l;
            int rc = wheel_lock(h, t->tick, &l);
            if (rc) {
                shm_free(&h->c, fresh);
                return rc;
            }
            if (atomic_load(&h->shared->swept_tick) <= t->tick) {
                bucket_push(h, fresh, t);
                shm_lock_drop(l);
                break;
            }
            shm_lock_drop(l); /* the cursor passed: the bucket after it */
        }
    }
    SHM_CRASH_POINT("timer_arm_bucketed");
    uint64_t old = atomic_exchange(&x->timer, fresh);
    if (old)
        cancel(h, old);
    /* Deleted meanwhile? The deleter may have missed `fresh`. */
    if (fresh && !REG_LIVE(atomic_load(&x->state))) {
        uint64_t f = fresh;
        if (atomic_compare_exchange_strong(&x->timer, &f, 0))
            cancel(h, fresh);
        return shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
    }
    return 0;
}

static int flags_ok(unsigned flags)
{
    unsigned action = flags & (SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_NOTIFY);
    return !(flags & ~(SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_NOTIFY | SHMREG_TIMEOUT_RELATIVE)) &&
           (action == SHMREG_TIMEOUT_FAIL || action == SHMREG_TIMEOUT_NOTIFY);
}

int shmreg_session_set_timeout(shmreg *h, const shmreg_id *id, uint64_t when, unsigned flags,
                               uint64_t grace_ns)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    int disarm = when == 0 && !(flags & SHMREG_TIMEOUT_RELATIVE);
    if (id == NULL || (!disarm && !flags_ok(flags)))
        return shmreg__fail(SHMREG_EINVAL, "NULL id, or timeout flags 0x%x name no action, both, "
                            "or unknown bits", flags);
    uint64_t now = shm_now_ns();
    uint64_t deadline = disarm ? 0 : (flags & SHMREG_TIMEOUT_RELATIVE) ? now + when : when;
    if (!disarm && deadline == 0)
        deadline = 1;
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) == 0) {
        if (deadline && shmreg_state_is_final((int)REG_STATE(st)))
            rc = shmreg__fail(SHMREG_ESTATE, "session is %s: a final state has no timeout",
                              shmreg_state_name((int)REG_STATE(st)));
        else
            rc = reg_timer_arm(h, si, deadline, flags, grace_ns);
        if (rc == 0)
            reg_changed(h, si);
    }
    shm_read_leave(&h->c);
    return rc;
}

void reg_timer_policy_apply(shmreg *h, uint32_t si, int state, uint64_t now)
{
    if (shmreg_state_is_final(state)) {
        if (atomic_load(&reg_slot(h, si)->timer))
            reg_timer_arm(h, si, 0, 0, 0);
        return;
    }
    uint64_t after = atomic_load(&h->shared->policy_after[state]);
    if (after)
        reg_timer_arm(h, si, now + after, (unsigned)atomic_load(&h->shared->policy_flags[state]),
                      atomic_load(&h->shared->policy_grace[state]));
}

int shmreg_timeout_policy_set(shmreg *h, int state, uint64_t after_ns, unsigned flags,
                              uint64_t grace_ns)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (state < SHMREG_STATE_INITIATING || state >= SHMREG_STATE_COUNT ||
        shmreg_state_is_final(state) || (after_ns && (!flags_ok(flags) || (flags & SHMREG_TIMEOUT_RELATIVE))))
        return shmreg__fail(SHMREG_EINVAL, "no timeout policy for state %d with flags 0x%x", state,
                            flags);
    /* Three words, not one: a process entering the state meanwhile may
     * take the old `after` with the new action; either is a policy the
     * caller set. The after word goes last, so a policy appears whole. */
    atomic_store(&h->shared->policy_after[state], 0);
    atomic_store(&h->shared->policy_flags[state], after_ns ? flags : 0);
    atomic_store(&h->shared->policy_grace[state], after_ns ? grace_ns : 0);
    atomic_store(&h->shared->policy_after[state], after_ns);
    return 0;
}

int shmreg_timeout_policy_get(shmreg *h, int state, uint64_t *after_ns, unsigned *flags,
                              uint64_t *grace_ns)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (state < SHMREG_STATE_INITIATING || state >= SHMREG_STATE_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "unknown state %d", state);
    if (after_ns)
        *after_ns = atomic_load(&h->shared->policy_after[state]);
    if (flags)
        *flags = (unsigned)atomic_load(&h->shared->policy_flags[state]);
    if (grace_ns)
        *grace_ns = atomic_load(&h->shared->policy_grace[state]);
    return 0;
}

/* ------------------------------------------------------------ the sweep */

/* Take the action of the timer at `off`, claimed by us: 1 if it fired
 * (out filled), 0 if it turned out stale (replaced, session gone or
 * already final: nothing to do). */
static int fire(shmreg *h, uint64_t off, uint64_t now, shmreg_expired *out)
{
    reg_timer *t = timer_at(h, off);
    reg_sess *x = t && t->slot < h->c.seg.slots ? reg_slot(h, t->slot) : NULL;
    uint64_t claim = h->c.tag | REG_TIMER_CLAIMED, cur = x ? atomic_load(&x->state) : 0;
    int stale = x == NULL || atomic_load(&x->timer) != off || !REG_LIVE(cur) ||
                memcmp(x->id, t->sid, SHMREG_ID_BYTES) != 0 ||
                shmreg_state_is_final((int)REG_STATE(cur)) ||
                reg_foreign_owner(h, atomic_load(&x->owner_node)); /* fires only where owned */
    int old = (int)REG_STATE(cur), to = old;
    if (!stale && (t->flags & SHMREG_TIMEOUT_FAIL)) {
        int from;
        if (reg_machine_move(&reg_session_machine, &x->state, cur, SHMREG_STATE_ANY,
                             SHMREG_STATE_FAILED, &old, &from) != 0)
            stale = 1; /* deleted or final meanwhile: somebody ended it */
        else
            to = SHMREG_STATE_FAILED, atomic_store(&x->updated_ns, now);
    }
    if (!stale && (t->flags & SHMREG_TIMEOUT_NOTIFY) && t->grace_ns)
        reg_timer_arm(h, t->slot, now + t->grace_ns, SHMREG_TIMEOUT_FAIL, 0);
    SHM_CRASH_POINT("timer_fire_acted");
    if (!atomic_compare_exchange_strong(&t->state, &claim, stale ? REG_TIMER_CANCELLED : REG_TIMER_FIRED))
        return 0;
    if (x) {
        uint64_t mine = off;
        atomic_compare_exchange_strong(&x->timer, &mine, 0);
    }
    if (stale)
        return 0;
    memset(out, 0, sizeof *out);
    memcpy(out->id.bytes, t->sid, SHMREG_ID_BYTES);
    out->deadline_ns = t->deadline_ns;
    out->action = t->flags;
    out->old_state = old;
    out->new_state = to;
    reg_event(h, now, SHMREG_EV_TIMEOUT, t->sid, old, to, t->flags, reg_changed(h, t->slot));
    if (to == SHMREG_STATE_FAILED) /* over: in no profile any more (announced after the cause) */
        reg_profiles_forget(h, t->slot);
    return 1;
}

/* One pass over the bucket of tick `tick` under its lock: drop finished
 * records, claim due ones (at most `room`) into claimed[]. Returns how
 * many were claimed; *pending says whether claimed records (ours or a
 * live sweeper's) remain in the bucket, which holds the cursor back. */
static unsigned sweep_bucket(shmreg *h, uint64_t tick, uint64_t now, uint64_t *claimed,
                             unsigned room, int *pending)
{
    uint64_t off = atomic_load(shm_index_head(&h->wheel, tick)), cap = shm_walk_limit(&h->c.seg);
    unsigned n = 0;
    *pending = 0;
    for (uint64_t steps = 0; off && steps < cap; steps++) {
        reg_timer *t = timer_at(h, off);
        if (t == NULL)
            break; /* a broken chain: the check reports it */
        uint64_t next = atomic_load(&t->next), st = atomic_load(&t->state);
        if (st == REG_TIMER_FIRED || st == REG_TIMER_CANCELLED) {
            if (bucket_remove(h, off, t))
                reg_retire_used(h, off);
        } else if (t->deadline_ns <= now) {
            if (n == room) {
                *pending = 1; /* more due than the caller takes: later */
                break;
            }
            int ours = 0;
            if (st == REG_TIMER_ARMED ||
                ((st & 0xffu) == REG_TIMER_CLAIMED && !shm_tag_alive(&h->c.seg, st & ~0xffull)))
                ours = atomic_compare_exchange_strong(&t->state, &st, h->c.tag | REG_TIMER_CLAIMED);
            if (ours)
                claimed[n++] = off;
            if (ours || (st & 0xffu) == REG_TIMER_CLAIMED || st == REG_TIMER_ARMED)
                *pending = 1;
        }
        off = next;
    }
    return n;
}

/* Is cursor c more than a lap from tick n, behind it or ahead? */
static int off_lap(uint64_t c, uint64_t n)
{
    return n > c ? n - c >= REG_WHEEL_BUCKETS : c - n >= REG_WHEEL_BUCKETS;
}

int shmreg_expire(shmreg *h, uint64_t now, shmreg_expired *out, unsigned max)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (out == NULL && max > 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL out with max %u", max);
    if (now == 0)
        now = shm_now_ns();
    unsigned fired = 0;
    uint64_t claimed[SWEEP_BATCH];
    shm_read_enter(&h->c);
    uint64_t n = tick_of(now), c = cursor(h, now);
    /* Asleep for more than a lap: every bucket is visited once below, so
     * the cursor may jump to a lap before now. It moves under every
     * stripe lock, so no arm is between its check and its push. A cursor
     * more than a lap ahead of now was set by no sweeper's clock (a
     * scribble, or a caller's `now` far in the future): it goes back to
     * a lap before now the same way, rather than leave every timer
     * unswept, or a loop up to a cursor near the top of the range that
     * never ends. */
    if (off_lap(c, n)) {
        shm_lock *held[SHM_STRIPES];
        unsigned k = 0;
        for (; k < SHM_STRIPES; k++)
            if ((rc = wheel_lock(h, k, &held[k])) != 0)
                break;
        /* Again under the locks: another sweeper may have moved it. */
        if (rc == 0 && off_lap(atomic_load(&h->shared->swept_tick), n))
            atomic_store(&h->shared->swept_tick, /* 0: cursor() sets it anew */
                         n >= REG_WHEEL_BUCKETS ? n - REG_WHEEL_BUCKETS + 1 : 0);
        while (k)
            shm_lock_drop(held[--k]);
        if (rc)
            goto out;
        c = atomic_load(&h->shared->swept_tick);
    }
    for (uint64_t t = c; t <= (n > c ? n : c) && fired < max;) {
        shm_lock *l;
        if ((rc = wheel_lock(h, t, &l)) != 0)
            break;
        int pending;
        unsigned room = max - fired < SWEEP_BATCH ? max - fired : SWEEP_BATCH;
        unsigned got = sweep_bucket(h, t, now, claimed, room, &pending);
        uint64_t exp = t;
        if (!pending && t < n)
            atomic_compare_exchange_strong(&h->shared->swept_tick, &exp, t + 1);
        shm_lock_drop(l);
        for (unsigned i = 0; i < got; i++)
            fired += (unsigned)fire(h, claimed[i], now, &out[fired]);
        if (got == 0) /* done here (claims of a live sweeper are its own to finish) */
            t++;
    }
out:
    shm_read_leave(&h->c);
    return rc ? rc : (int)fired;
}

/* ------------------------------------------------------------ check */

void reg_timer_check(shmreg *h, void (*mark)(void *, uint64_t), void (*bad)(void *, const char *),
                     void *arg)
{
    uint64_t cap = shm_walk_limit(&h->c.seg);
    for (uint32_t b = 0; b < h->wheel.buckets; b++) {
        uint64_t off = atomic_load(&h->wheel.bucket[b]);
        for (uint64_t steps = 0; off; steps++) {
            reg_timer *t = timer_at(h, off);
            if (t == NULL || steps > cap) {
                char msg[96];
                snprintf(msg, sizeof msg, "timer wheel bucket %u: chain broken at %llu", b,
                         (unsigned long long)off);
                bad(arg, msg);
                break;
            }
            mark(arg, off);
            off = atomic_load(&t->next);
        }
    }
}
