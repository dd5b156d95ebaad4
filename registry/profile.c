/*
 * profile.c — profiles: named (profile, value) pairs that sessions join,
 * with an optional member limit checked at admission.
 *
 * What a dialog module's profiles are for is a limit ("at most 30 calls
 * for this trunk"), and what breaks them in other servers is a count kept
 * apart from the membership it counts: a worker killed between the two
 * updates, a restart, a missed leave, and the count drifts for good. Here
 * the count cannot drift, because it is never changed without the list:
 *
 *   - A pair (reg_pair) is a record in the profile index, found by the
 *     keyed hash of its profile and value. It holds its member list (a
 *     chain of reg_member records) and the list's length.
 *   - The list and the length change together, under the stripe lock of
 *     the pair's hash, by single stores. A process killed while holding
 *     the lock leaves a whole list and maybe a count off by one; the next
 *     taker learns from the lock that its holder died and recounts every
 *     pair the lock guards (recount_stripe) before it relies on one.
 *   - Admission is a comparison with that count, under the same lock:
 *     racing joiners are serialized, and exactly as many get in as the
 *     limit allows. A join refused at the limit first recounts the pair,
 *     dropping members whose session a process that died half way has
 *     deleted or moved to a final state: the limit counts live calls only.
 *   - Every membership that ends is announced (profile_left), by whoever
 *     takes it off its list: a leave, reg_profiles_forget, that recount.
 *   - A membership is named by one of its session's prof[] words (claimed
 *     by compare-and-swap before the lock is taken, so a session never
 *     has more than SHMREG_MAX_PROFILES_PER_SESSION). Being on the pair's
 *     list is what makes it a membership; its `pair` word mirrors that for
 *     readers who start from the session: set just before listing and
 *     cleared just after unlisting, both under the lock, so a listed
 *     member's word always names its pair, and a death in between leaves
 *     a word naming a pair that does not list it, which the check clears. A word whose record is on no list (a join that
 *     died before listing, a leave that died before clearing the word) is
 *     not a membership; delete, or the check once its maker is dead,
 *     clears it.
 *   - Deleting a session leaves every pair (reg_profiles_forget, run again
 *     by the repair of a delete that died); the last member out takes the
 *     pair out of the index.
 *
 * Only one stripe lock is ever held at a time here.
 */
#include <stdio.h>

#include "reg.h"
#include "crashpoint.h"

/* ------------------------------------------------------------ records */

static reg_pair *pair_at(shmreg *h, uint64_t off)
{
    return reg_pair_at(&h->c.seg, off);
}

static reg_member *member_at(shmreg *h, uint64_t off)
{
    return reg_member_at(&h->c.seg, off);
}

static _Atomic uint64_t *pair_link(const shm_seg *s, uint64_t off)
{
    reg_pair *p = reg_pair_at(s, off);
    return p ? &p->next : NULL;
}

static int pair_is(const reg_pair *p, uint64_t hash, shmreg_str prof, shmreg_str val)
{
    return p->hash == hash && p->plen == prof.len && p->vlen == val.len &&
           memcmp(p->key, prof.ptr, prof.len) == 0 &&
           (val.len == 0 || memcmp(p->key + prof.len, val.ptr, val.len) == 0);
}

/* The pair (profile, value) on its chain, lock-free (callers are in a
 * read section): its offset, or 0. */
static uint64_t pair_find(shmreg *h, uint64_t hash, shmreg_str prof, shmreg_str val)
{
    uint64_t off = atomic_load(shm_index_head(&h->pairs, hash));
    for (uint64_t steps = 0; off && steps < shm_walk_limit(&h->c.seg); steps++) {
        reg_pair *p = pair_at(h, off);
        if (p == NULL)
            return 0;
        if (pair_is(p, hash, prof, val))
            return off;
        off = atomic_load(&p->next);
    }
    return 0;
}

static int check_args(shmreg_str prof, shmreg_str val)
{
    if (prof.len == 0 || prof.ptr == NULL)
        return shmreg__fail(SHMREG_EINVAL, "empty profile name");
    if (prof.len > SHMREG_MAX_PROFILE_NAME || val.len > SHMREG_MAX_PROFILE_VALUE)
        return shmreg__fail(SHMREG_EINVAL, "profile name of %zu bytes (limit %u) or value of %zu "
                            "(limit %u)", prof.len, SHMREG_MAX_PROFILE_NAME, val.len,
                            SHMREG_MAX_PROFILE_VALUE);
    if (val.len && val.ptr == NULL)
        return shmreg__fail(SHMREG_EINVAL, "profile value with a length but no bytes");
    return 0;
}

/* ------------------------------------------------------------ counting */

static void profile_event(shmreg *h, uint32_t type, const unsigned char *sid, shmreg_str prof,
                          uint64_t count)
{
    reg_event_data(h, type, sid, (uint32_t)(count > UINT32_MAX ? UINT32_MAX : count), prof.ptr,
                   prof.len);
}

/* Is member `m` a call still? (The recount at the limit: a session whose
 * deleter died, or that reached a final state and whose mover died
 * before leaving its pairs, counts no more.) */
static int member_live(shmreg *h, const reg_member *m)
{
    if (m->slot >= h->c.seg.slots)
        return 0;
    reg_sess *x = reg_slot(h, m->slot);
    uint64_t st = atomic_load(&x->state);
    return REG_LIVE(st) && !shmreg_state_is_final((int)REG_STATE(st)) &&
           memcmp(x->id, m->sid, SHMREG_ID_BYTES) == 0;
}

/* At most this many members a recount takes off a pair at once (the
 * rest count until the next recount): it announces them after its walk,
 * with the count it ends with, so it must hold them. */
#define REG_RECOUNT_DROPS 64

/* Under the pair's lock: make its count the length of its list, and
 * every listed member's `pair` word name the pair (a join that died
 * between listing and that store). With `drop_dead`, first take members
 * that are calls no more off the list (their session's delete, or its
 * repair, retires the records) and announce each as profile_left with
 * the count after: whoever takes a member off a list announces it, as
 * reg_profiles_forget does. Published under the lock: this is the rare
 * path of a join at the limit, and the records stay readable (the
 * caller's read section). */
static uint64_t recount(shmreg *h, reg_pair *p, uint64_t poff, int drop_dead)
{
    uint64_t n = 0, steps = 0, cap = shm_walk_limit(&h->c.seg), dropped[REG_RECOUNT_DROPS];
    unsigned ndrop = 0;
    _Atomic uint64_t *prev = &p->members;
    uint64_t off = atomic_load(prev);
    while (off && steps++ < cap) {
        reg_member *m = member_at(h, off);
        if (m == NULL) {
            atomic_store(prev, 0); /* a broken list ends here; the check reports it */
            break;
        }
        uint64_t next = atomic_load(&m->next);
        if (drop_dead && ndrop < REG_RECOUNT_DROPS && !member_live(h, m)) {
            atomic_store(prev, next);
            atomic_store(&m->pair, 0);
            dropped[ndrop++] = off;
        } else {
            if (atomic_load(&m->pair) != poff)
                atomic_store(&m->pair, poff);
            n++;
            prev = &m->next;
        }
        off = next;
    }
    atomic_store(&p->count, n);
    for (unsigned i = 0; i < ndrop; i++)
        profile_event(h, SHMREG_EV_PROFILE_LEFT, member_at(h, dropped[i])->sid,
                      (shmreg_str){p->key, p->plen}, n);
    return n;
}

/* Recount every pair in the buckets that stripe lock `l` guards. */
static void recount_stripe(shmreg *h, const shm_lock *l)
{
    uint32_t stripe = (uint32_t)(l - h->pairs.stripe);
    for (uint32_t b = stripe; b < h->pairs.buckets; b += SHM_STRIPES) {
        uint64_t off = atomic_load(&h->pairs.bucket[b]);
        for (uint64_t steps = 0; off && steps < shm_walk_limit(&h->c.seg); steps++) {
            reg_pair *p = pair_at(h, off);
            if (p == NULL)
                break;
            recount(h, p, off, 0);
            off = atomic_load(&p->next);
        }
    }
}

/* Take the stripe lock of `hash`; after a dead holder, recount first. */
static int pair_lock(shmreg *h, uint64_t hash, shm_lock **out)
{
    shm_lock *l = shm_index_lock(&h->pairs, hash);
    int rc = shm_lock_take(&h->c, l);
    if (rc < 0)
        return reg_engine_fail(rc, "profile index lock");
    if (rc == 1)
        recount_stripe(h, l);
    *out = l;
    return 0;
}

/* Under the lock: take member `moff` off pair `poff`'s list; the pair
 * leaves the index (and is retired) when its last member goes. Returns
 * the pair's count after. */
static uint64_t unlist(shmreg *h, uint64_t poff, uint64_t moff)
{
    reg_pair *p = pair_at(h, poff);
    if (p == NULL)
        return 0;
    uint64_t steps = 0, cap = shm_walk_limit(&h->c.seg);
    _Atomic uint64_t *prev = &p->members;
    for (uint64_t off = atomic_load(prev); off && steps++ < cap;) {
        reg_member *m = member_at(h, off);
        if (m == NULL)
            break;
        if (off == moff) {
            /* Off the list, then the mirror: a death in between leaves a
             * word naming a pair that does not list it, which the check
             * clears. (Never the other way: a listed member whose word
             * says "nowhere" would be retired by the check.) */
            atomic_store(prev, atomic_load(&m->next));
            atomic_store(&m->pair, 0);
            uint64_t c = atomic_load(&p->count);
            atomic_store(&p->count, c ? c - 1 : 0);
            break;
        }
        prev = &m->next;
        off = atomic_load(prev);
    }
    uint64_t n = atomic_load(&p->count);
    if (n == 0 && atomic_load(&p->members) == 0 &&
        shm_index_remove(&h->c.seg, &h->pairs, p->hash, poff, pair_link))
        reg_retire_used(h, poff);
    return n;
}

/* Clear prof[i] if it still names `moff`, and retire the record. */
static void drop_word(shmreg *h, reg_sess *x, unsigned i, uint64_t moff)
{
    reg_drop_ref(h, &x->prof[i], moff);
}

/* ------------------------------------------------------------ join, leave */

/* The opening of a call on a pair (join, leave, count): a usable handle,
 * the pointer argument `need` (named `what` when it is NULL), a pair
 * within limits, and the pair's hash. */
static int pair_args(shmreg *h, const void *need, const char *what, shmreg_str prof, shmreg_str val,
                     uint64_t *hash)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (need == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL %s", what);
    if ((rc = check_args(prof, val)) != 0)
        return rc;
    *hash = reg_key_hash(h, prof, val);
    return 0;
}

/* Does a membership of session x other than prof[skip] list pair `poff`? */
static int in_pair(shmreg *h, reg_sess *x, uint64_t poff, unsigned skip)
{
    for (unsigned i = 0; poff && i < SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        reg_member *o = i == skip ? NULL : member_at(h, atomic_load(&x->prof[i]));
        if (o && atomic_load(&o->pair) == poff)
            return 1;
    }
    return 0;
}

int shmreg_profile_join(shmreg *h, const shmreg_id *id, shmreg_str prof, shmreg_str val,
                        uint32_t limit, uint64_t *count)
{
    uint64_t hash, after = 0;
    int rc = pair_args(h, id, "session id", prof, val, &hash);
    if (rc)
        return rc;
    uint32_t si;
    uint64_t st;
    unsigned w = SHMREG_MAX_PROFILES_PER_SESSION;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) != 0)
        goto out;
    reg_sess *x = reg_slot(h, si);
    if (shmreg_state_is_final((int)REG_STATE(st))) {
        rc = shmreg__fail(SHMREG_ESTATE, "session is %s: a call that is over joins no profile",
                          shmreg_state_name((int)REG_STATE(st)));
        goto out;
    }
    /* A member already? Said first, so that a session in as many pairs
     * as it may be hears EEXIST for one of them, not EFULL (the lock
     * below decides races). */
    if (in_pair(h, x, pair_find(h, hash, prof, val), SHMREG_MAX_PROFILES_PER_SESSION)) {
        rc = shmreg__fail_copy(SHMREG_EEXIST, "session is in the pair already: ", prof.ptr, prof.len);
        goto out;
    }
    uint64_t moff = shm_alloc(&h->c, sizeof(reg_member), si + 1);
    if (moff == 0) {
        rc = shmreg__fail(SHMREG_EFULL, "registry heap full (profile membership)");
        goto out;
    }
    reg_member *m = reg_payload((shm_blk *)(h->c.seg.base + moff));
    memset(m, 0, sizeof *m);
    m->slot = si;
    memcpy(m->sid, id->bytes, SHMREG_ID_BYTES);
    for (unsigned i = 0; i < SHMREG_MAX_PROFILES_PER_SESSION && w == SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        uint64_t cur = 0;
        if (atomic_compare_exchange_strong(&x->prof[i], &cur, moff))
            w = i;
    }
    if (w == SHMREG_MAX_PROFILES_PER_SESSION) {
        shm_free(&h->c, moff);
        rc = shmreg__fail(SHMREG_EFULL, "session is in %u profiles already",
                          SHMREG_MAX_PROFILES_PER_SESSION);
        goto out;
    }
    shm_lock *l;
    if ((rc = pair_lock(h, hash, &l)) != 0)
        goto undo;
    uint64_t poff = pair_find(h, hash, prof, val);
    if (in_pair(h, x, poff, w)) {
        shm_lock_drop(l);
        rc = shmreg__fail_copy(SHMREG_EEXIST, "session is in the pair already: ", prof.ptr, prof.len);
        goto undo;
    }
    /* Live still, and not over? A delete or a final state reached
     * meanwhile has forgotten its words: ours would stay listed for ever.
     * (One from now on waits for this lock to leave the pair.) */
    uint64_t now_st = atomic_load(&x->state);
    if (!REG_LIVE(now_st) || shmreg_state_is_final((int)REG_STATE(now_st))) {
        shm_lock_drop(l);
        rc = shmreg__fail_lazy(SHMREG_ENOENT, "session deleted meanwhile", id->bytes);
        goto undo;
    }
    reg_pair *p = poff ? pair_at(h, poff) : NULL;
    if (p && limit) {
        after = atomic_load(&p->count);
        if (after >= limit && (after = recount(h, p, poff, 1)) >= limit) {
            shm_lock_drop(l);
            if (count)
                *count = after;
            rc = shmreg__fail(SHMREG_ELIMIT, "profile %.*s is at its limit of %u", (int)prof.len,
                              prof.ptr, limit);
            goto undo;
        }
    }
    if (p == NULL) {
        poff = shm_alloc(&h->c, sizeof(reg_pair) + prof.len + val.len, 0);
        if (poff == 0) {
            shm_lock_drop(l);
            rc = shmreg__fail(SHMREG_EFULL, "registry heap full (profile pair)");
            goto undo;
        }
        /* aux 0: a pair is no session's, so no delete retires it with
         * the session's own blocks; its last member out does. */
        p = reg_payload((shm_blk *)(h->c.seg.base + poff));
        p->hash = hash;
        p->plen = (uint16_t)prof.len;
        p->vlen = (uint16_t)val.len;
        p->pad = 0;
        memcpy(p->key, prof.ptr, prof.len);
        if (val.len)
            memcpy(p->key + prof.len, val.ptr, val.len);
        atomic_store(&p->members, 0);
        atomic_store(&p->count, 0);
        shm_index_push(&h->pairs, hash, poff, &p->next);
    }
    /* The member's word, then the list (the commit), then the count. A
     * death after the list leaves it whole for the next taker of the lock
     * to recount; a death before it leaves a word naming a pair that does
     * not list it, which the check undoes (reg_profile_member_check). */
    atomic_store(&m->pair, poff);
    atomic_store(&m->next, atomic_load(&p->members));
    atomic_store(&p->members, moff);
    SHM_CRASH_POINT("profile_join_listed");
    after = atomic_load(&p->count) + 1;
    atomic_store(&p->count, after);
    shm_lock_drop(l);
    if (count)
        *count = after;
    reg_changed(h, si);
    profile_event(h, SHMREG_EV_PROFILE_JOINED, id->bytes, prof, after);
    goto out;
undo:
    drop_word(h, x, w, moff);
out:
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_profile_leave(shmreg *h, const shmreg_id *id, shmreg_str prof, shmreg_str val)
{
    uint64_t hash, after = 0;
    int rc = pair_args(h, id, "session id", prof, val, &hash);
    if (rc)
        return rc;
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) != 0)
        goto out;
    reg_sess *x = reg_slot(h, si);
    shm_lock *l;
    if ((rc = pair_lock(h, hash, &l)) != 0)
        goto out;
    uint64_t poff = pair_find(h, hash, prof, val), moff = 0;
    unsigned w = 0;
    for (unsigned i = 0; poff && i < SHMREG_MAX_PROFILES_PER_SESSION && !moff; i++) {
        uint64_t off = atomic_load(&x->prof[i]);
        reg_member *m = member_at(h, off);
        if (m && atomic_load(&m->pair) == poff) {
            moff = off;
            w = i;
        }
    }
    if (moff == 0) {
        shm_lock_drop(l);
        rc = shmreg__fail_copy(SHMREG_ENOENT, "session is not in the pair: ", prof.ptr, prof.len);
        goto out;
    }
    after = unlist(h, poff, moff);
    SHM_CRASH_POINT("profile_leave_unlisted");
    shm_lock_drop(l);
    drop_word(h, x, w, moff);
    reg_changed(h, si);
    profile_event(h, SHMREG_EV_PROFILE_LEFT, id->bytes, prof, after);
out:
    shm_read_leave(&h->c);
    return rc;
}

/* Every membership that ends is announced, whatever ends it (a leave, a
 * final state, a timeout, a delete, its repair, a cede), so a follower
 * that counts a pair's members from profile_joined and profile_left keeps
 * the count the segment has. Only the one who takes the member off the
 * list announces it: a repair run again finds it gone and stays silent.
 * The name is copied under the lock: the last member out retires the
 * pair. */
void reg_profiles_forget(shmreg *h, uint32_t si)
{
    reg_sess *x = reg_slot(h, si);
    unsigned char sid[SHMREG_ID_BYTES];
    memcpy(sid, x->id, SHMREG_ID_BYTES);
    for (unsigned i = 0; i < SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        uint64_t moff = atomic_load(&x->prof[i]);
        reg_member *m = member_at(h, moff);
        if (m == NULL)
            continue;
        uint64_t poff = atomic_load(&m->pair), after = 0;
        reg_pair *p = pair_at(h, poff);
        char name[SHMREG_MAX_PROFILE_NAME];
        size_t nlen = 0;
        shm_lock *l;
        if (p && pair_lock(h, p->hash, &l) == 0) {
            if (atomic_load(&m->pair) == poff) {
                nlen = p->plen < sizeof name ? p->plen : sizeof name;
                memcpy(name, p->key, nlen);
                after = unlist(h, poff, moff);
            }
            shm_lock_drop(l);
        }
        drop_word(h, x, i, moff);
        if (nlen)
            profile_event(h, SHMREG_EV_PROFILE_LEFT, sid, (shmreg_str){name, nlen}, after);
    }
}

/* ------------------------------------------------------------ reading */

int shmreg_profile_count(shmreg *h, shmreg_str prof, shmreg_str val, uint64_t *count)
{
    uint64_t hash;
    int rc = pair_args(h, count, "count", prof, val, &hash);
    if (rc)
        return rc;
    shm_read_enter(&h->c);
    reg_pair *p = pair_at(h, pair_find(h, hash, prof, val));
    *count = p ? atomic_load(&p->count) : 0;
    shm_read_leave(&h->c);
    return 0;
}

static void entry_of(const reg_pair *p, shmreg_profile_entry *out)
{
    memset(out, 0, sizeof *out);
    out->profile = (shmreg_str){p->key, p->plen};
    out->value = (shmreg_str){p->key + p->plen, p->vlen};
    out->count = atomic_load(&p->count);
}

/* The cursor is (bucket << 24 | position in its chain + 1). */
int shmreg_profile_next(shmreg *h, shmreg_str prof, uint64_t *cursor, shmreg_profile_entry *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL || (prof.len && prof.ptr == NULL) ||
        prof.len > SHMREG_MAX_PROFILE_NAME)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor or out, or a bad profile name");
    for (uint64_t b = *cursor >> 24, pos = *cursor & 0xffffffu; b < h->pairs.buckets; b++, pos = 0) {
        uint64_t off = atomic_load(&h->pairs.bucket[b]);
        for (uint64_t i = 0; off && i < 0xffffffu; i++) {
            reg_pair *p = pair_at(h, off);
            if (p == NULL)
                return shmreg__fail(SHMREG_ECORRUPT, "profile index bucket %llu is broken",
                                    (unsigned long long)b);
            if (i >= pos && atomic_load(&p->count) &&
                (prof.ptr == NULL || (p->plen == prof.len && memcmp(p->key, prof.ptr, prof.len) == 0))) {
                entry_of(p, out);
                *cursor = b << 24 | (i + 1);
                return 0;
            }
            off = atomic_load(&p->next);
        }
    }
    *cursor = (uint64_t)h->pairs.buckets << 24;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more profile values", NULL);
}

int shmreg_profile_member_next(shmreg *h, shmreg_str prof, shmreg_str val, uint64_t *cursor,
                               shmreg_id *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor or out");
    if ((rc = check_args(prof, val)) != 0)
        return rc;
    reg_pair *p = pair_at(h, pair_find(h, reg_key_hash(h, prof, val), prof, val));
    uint64_t i = 0, cap = shm_walk_limit(&h->c.seg);
    for (uint64_t off = p ? atomic_load(&p->members) : 0; off && i < cap; i++) {
        reg_member *m = member_at(h, off);
        if (m == NULL)
            return shmreg__fail(SHMREG_ECORRUPT, "member list of profile %.*s is broken",
                                (int)prof.len, prof.ptr);
        if (i == *cursor) {
            memcpy(out->bytes, m->sid, SHMREG_ID_BYTES);
            *cursor = i + 1;
            return 0;
        }
        off = atomic_load(&m->next);
    }
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more members", NULL);
}

int shmreg_session_profile(shmreg *h, const shmreg_id *id, unsigned i, shmreg_profile_entry *out)
{
    uint32_t si;
    uint64_t st;
    int rc = reg_find_in_read(h, id, out, &si, &st);
    if (rc)
        return rc;
    reg_sess *x = reg_slot(h, si);
    unsigned seen = 0;
    for (unsigned k = 0; k < SHMREG_MAX_PROFILES_PER_SESSION; k++) {
        reg_pair *p = reg_session_pair(&h->c.seg, x, k);
        if (p && seen++ == i) {
            entry_of(p, out);
            return 0;
        }
    }
    return shmreg__fail(SHMREG_ENOENT, "session has no profile membership %u", i);
}

/* ------------------------------------------------------------ check */

int reg_profile_member_check(shmreg *h, reg_sess *x, unsigned i, int repair)
{
    uint64_t moff = atomic_load(&x->prof[i]);
    reg_member *m = member_at(h, moff);
    if (m == NULL)
        return 0;
    shm_blk *b = shm_blk_at(&h->c.seg, moff);
    uint64_t poff = atomic_load(&m->pair), bst = atomic_load(&b->state);
    reg_pair *p = pair_at(h, poff);
    int fixed = 0;
    if (p) {
        /* Under the pair's lock no join or leave is half way: a mirror
         * naming a pair whose list lacks the member is a dead joiner's. */
        shm_lock *l;
        if (pair_lock(h, p->hash, &l) != 0)
            return 0;
        int listed = 0;
        uint64_t steps = 0, cap = shm_walk_limit(&h->c.seg);
        for (uint64_t o = atomic_load(&p->members); o && !listed && steps++ < cap;) {
            reg_member *r = member_at(h, o);
            if (r == NULL)
                break;
            listed = o == moff;
            o = atomic_load(&r->next);
        }
        if (!listed && atomic_load(&m->pair) == poff) {
            fixed = 1;
            if (repair)
                atomic_store(&m->pair, 0);
        }
        shm_lock_drop(l);
        if (listed)
            return 0;
    }
    /* On no list: a word a dead joiner or leaver left. A live maker may be
     * joining right now, so only a dead one's is cleared. */
    if (!shm_tag_alive(&h->c.seg, bst & ~0xffull) && atomic_load(&m->pair) == 0) {
        fixed = 1;
        if (repair)
            drop_word(h, x, i, moff);
    }
    return fixed;
}

void reg_profile_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                       void (*bad)(void *, const char *), void *arg)
{
    char msg[200];
    uint64_t cap = shm_walk_limit(&h->c.seg);
    for (uint32_t b = 0; b < h->pairs.buckets; b++) {
        uint64_t off = atomic_load(&h->pairs.bucket[b]);
        for (uint64_t steps = 0; off; steps++) {
            reg_pair *p = pair_at(h, off);
            if (p == NULL || steps > cap) {
                snprintf(msg, sizeof msg, "profile index bucket %u: chain broken at %llu", b,
                         (unsigned long long)off);
                bad(arg, msg);
                break;
            }
            mark(arg, off);
            /* Counted under the lock, so that joins in flight are whole. */
            shm_lock *l;
            if (pair_lock(h, p->hash, &l) == 0) {
                uint64_t n = 0;
                for (uint64_t m = atomic_load(&p->members); m && n <= cap; n++) {
                    reg_member *r = member_at(h, m);
                    if (r == NULL) {
                        bad(arg, "profile member list broken");
                        break;
                    }
                    mark(arg, m);
                    m = atomic_load(&r->next);
                }
                uint64_t c = atomic_load(&p->count);
                if (c != n) {
                    snprintf(msg, sizeof msg, "profile %.*s=%.*s: count %llu but %llu members%s",
                             (int)p->plen, p->key, (int)p->vlen, p->key + p->plen,
                             (unsigned long long)c, (unsigned long long)n,
                             repair ? " (recounted)" : "");
                    bad(arg, msg);
                    if (repair)
                        recount(h, p, off, 0);
                }
                shm_lock_drop(l);
            }
            off = atomic_load(&p->next);
        }
    }
}
