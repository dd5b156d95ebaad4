/*
 * user.c — finding a user's calls: an index of sessions by the user@host
 * of their From and To URIs.
 *
 * "Which calls does alice have?" must not scan a million sessions. Two
 * stripe-locked indexes, one for From and one for To, chain session
 * slots themselves (two link words in the slot) by a keyed hash of the
 * user@host (the network chooses URIs, so SipHash under the registry's
 * key, as for dialogs). No record per user is allocated: the key is the
 * session's own URI, read from its info block, and the slot's uhash word
 * says which bucket each side is filed in. A lookup walks one chain and
 * keeps the live sessions whose URI really names the user, so a slot
 * filed under a stale hash by a change in flight is never an answer.
 *
 * The filing follows the info block: reg_users_sync() reads the From and
 * To URIs of the session's current info and refiles a side whose hash
 * changed, under the session's stripe of the session index (so two
 * updaters of one session refile one after the other, and the last one
 * files what the last info says). A create files the session before it
 * is published (it is found by user the moment it is live); a delete
 * takes it out of both chains before its slot can be reused.
 *
 * Keys compare as SIP compares URIs (RFC 3261 19.1.4): the user part
 * byte for byte, the host without regard to case; the scheme, port,
 * parameters and headers are not part of the key.
 */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "reg.h"

/* ------------------------------------------------------------ the key */

static int has_prefix(const char *p, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && strncasecmp(p, pre, k) == 0;
}

int shmreg_user_key(shmreg_str uri, char *out, size_t cap, size_t *len)
{
    if (out == NULL || len == NULL || (uri.len && uri.ptr == NULL))
        return shmreg__fail(SHMREG_EINVAL, "NULL out, len or URI bytes");
    const char *p = uri.ptr, *e = uri.ptr + uri.len;
    /* "Display <uri>;params": what is inside the angle brackets, the
     * first '<' outside a quoted display name ("a<b@c>" <sip:x@y>). */
    const char *lt = NULL;
    for (const char *q = p; q < e && !lt; q++) {
        if (*q == '"') {
            for (q++; q < e && *q != '"'; q++)
                if (*q == '\\' && q + 1 < e)
                    q++;
        } else if (*q == '<') {
            lt = q;
        }
    }
    if (lt) {
        const char *gt = memchr(lt, '>', (size_t)(e - lt));
        p = lt + 1;
        e = gt ? gt : e;
    }
    while (p < e && isspace((unsigned char)*p))
        p++;
    while (e > p && isspace((unsigned char)e[-1]))
        e--;
    int sip = 0;
    if (has_prefix(p, (size_t)(e - p), "sips:"))
        p += 5, sip = 1;
    else if (has_prefix(p, (size_t)(e - p), "sip:"))
        p += 4, sip = 1;
    else if (has_prefix(p, (size_t)(e - p), "tel:"))
        p += 4;
    /* The user part may hold ';' and '?' (RFC 3261 25.1): only after the
     * '@' do parameters begin. */
    const char *at = p < e ? memchr(p, '@', (size_t)(e - p)) : NULL;
    const char *host = at ? at + 1 : p, *h_end = host;
    if (host < e && *host == '[') { /* an IPv6 reference: up to its ']' */
        const char *rb = memchr(host, ']', (size_t)(e - host));
        h_end = rb ? rb + 1 : e;
    } else {
        while (h_end < e && *h_end != ';' && *h_end != '?' && (*h_end != ':' || (!at && !sip)))
            h_end++;
    }
    /* user@host; "sip:host" names a host; a tel: number or a bare word a user. */
    size_t ulen = at ? (size_t)(at - p) : 0, hlen = (size_t)(h_end - host);
    int fold = at || sip;
    size_t need = ulen + (at ? 1 : 0) + hlen;
    if (need > cap)
        return shmreg__fail(SHMREG_EINVAL, "user key of %zu bytes does not fit %zu", need, cap);
    if (ulen)
        memcpy(out, p, ulen);
    size_t n = ulen;
    if (at)
        out[n++] = '@';
    for (size_t i = 0; i < hlen; i++)
        out[n++] = fold ? (char)tolower((unsigned char)host[i]) : host[i];
    *len = n;
    return 0;
}

/* ------------------------------------------------------------ the chains */

/* The 32-bit hash a key is filed under (never 0: 0 means "in no chain"). */
static uint32_t user_hash(shmreg *h, const char *key, size_t len)
{
    uint64_t x = reg_key_hash(h, (shmreg_str){key, len}, (shmreg_str){NULL, 0});
    return (uint32_t)x | 1u;
}

static uint32_t hash_half(uint64_t both, unsigned w)
{
    return (uint32_t)(both >> (32 * w));
}

static _Atomic uint64_t *link_from(const shm_seg *s, uint64_t off)
{
    uint32_t i = shm_slot_index(s, off);
    return i == UINT32_MAX ? NULL : &((reg_sess *)(s->base + off))->unext[0];
}

static _Atomic uint64_t *link_to(const shm_seg *s, uint64_t off)
{
    uint32_t i = shm_slot_index(s, off);
    return i == UINT32_MAX ? NULL : &((reg_sess *)(s->base + off))->unext[1];
}

static const shm_link_fn link_of[2] = {link_from, link_to};

/* The key that side `w` (0 From, 1 To) of slot x's current info gives. */
static int current_key(shmreg *h, reg_sess *x, unsigned w, char *key, size_t *len)
{
    shmreg_str str[SHMREG_FIELD_STR_COUNT];
    uint16_t port[2];
    int rc = reg_info_view(h, atomic_load(&x->info), str, port);
    if (rc == 0)
        rc = shmreg_user_key(str[w ? SHMREG_FIELD_TO_URI : SHMREG_FIELD_FROM_URI], key,
                             SHMREG_MAX_STR, len);
    return rc;
}

/* Under the session's lock: file side w of slot si under hash `want`
 * (0: under none). The order keeps one rule whatever step a death
 * interrupts: a slot is filed in no chain but the one its hash names.
 * Out of the old chain; the new hash recorded; into the new chain unless
 * it is there already. (A death after recording and before the push
 * leaves a side filed nowhere: a lookup misses it until the check or the
 * session's next change files it; a delete unlinks what the hash names.) */
static int refile(shmreg *h, uint32_t si, unsigned w, uint32_t want)
{
    const shm_seg *s = &h->c.seg;
    reg_sess *x = reg_slot(h, si);
    uint64_t soff = shm_slot_off(s, si), both = atomic_load(&x->uhash);
    uint32_t cur = hash_half(both, w);
    const shm_index *ix = &h->users[w];
    shm_lock *l;
    int rc;
    if (cur && cur != want) {
        l = shm_index_lock(ix, cur);
        if ((rc = reg_lock(h, l, "user index lock")) != 0)
            return rc;
        shm_index_remove(s, ix, cur, soff, link_of[w]);
        shm_lock_drop(l);
    }
    both = (both & ~(0xffffffffull << (32 * w))) | (uint64_t)want << (32 * w);
    atomic_store(&x->uhash, both);
    if (want) {
        l = shm_index_lock(ix, want);
        if ((rc = reg_lock(h, l, "user index lock")) != 0)
            return rc;
        if (shm_index_has(s, ix, want, soff, link_of[w]) == 0)
            shm_index_push(ix, want, soff, &x->unext[w]);
        shm_lock_drop(l);
    }
    return 0;
}

/* The lock that serializes refiling a session's sides: its stripe of the
 * session index (held for microseconds; only refile nests a user index
 * lock inside it). */
static shm_lock *session_lock(shmreg *h, uint32_t si)
{
    return shm_index_lock(&h->sessions, reg_id_hash(reg_slot(h, si)->id));
}

/* Refile the sides of slot si whose hash differs from what its info says;
 * with `all`, also the sides whose hash is right (the check: a side that
 * a death left filed nowhere). */
static int sync_sides(shmreg *h, uint32_t si, int all)
{
    reg_sess *x = reg_slot(h, si);
    char key[SHMREG_MAX_STR];
    shm_lock *l = session_lock(h, si);
    int rc = reg_lock(h, l, "session index lock");
    if (rc)
        return rc;
    for (unsigned w = 0; w < 2 && rc == 0; w++) {
        size_t len;
        if ((rc = current_key(h, x, w, key, &len)) != 0)
            break;
        uint32_t want = len ? user_hash(h, key, len) : 0;
        if (all || hash_half(atomic_load(&x->uhash), w) != want)
            rc = refile(h, si, w, want);
    }
    shm_lock_drop(l);
    return rc;
}

int reg_users_sync(shmreg *h, uint32_t si)
{
    return sync_sides(h, si, 0);
}

void reg_users_forget(shmreg *h, uint32_t si)
{
    shm_lock *l = session_lock(h, si);
    if (reg_lock(h, l, "session index lock") != 0)
        return;
    for (unsigned w = 0; w < 2; w++)
        if (hash_half(atomic_load(&reg_slot(h, si)->uhash), w))
            refile(h, si, w, 0);
    shm_lock_drop(l);
}

/* ------------------------------------------------------------ lookup */

/* The cursor: bit 40 the side being walked, the rest the index + 1 of the
 * next slot to look at on it (0: the chain's head); END when done. */
#define CUR_SIDE (1ull << 40)
#define CUR_END UINT64_MAX

int shmreg_session_by_user(shmreg *h, shmreg_str user, unsigned which, uint64_t *cursor,
                           shmreg_session *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL || which == 0 || (which & ~(SHMREG_USER_FROM | SHMREG_USER_TO)))
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor or out, or user sides 0x%x", which);
    char key[SHMREG_MAX_STR], other[SHMREG_MAX_STR];
    size_t len, olen;
    if ((rc = shmreg_user_key(user, key, sizeof key, &len)) != 0)
        return rc;
    if (len == 0)
        return shmreg__fail(SHMREG_EINVAL, "empty user");
    const shm_seg *s = &h->c.seg;
    uint32_t hash = user_hash(h, key, len);
    for (uint64_t c = *cursor; c != CUR_END;) {
        unsigned w = c & CUR_SIDE ? 1 : (which & SHMREG_USER_FROM) ? 0 : 1;
        uint64_t off;
        if ((c & ~CUR_SIDE) == 0) {
            off = atomic_load(shm_index_head(&h->users[w], hash));
        } else {
            /* Resuming: the slot must still be filed here, else the walk
             * (kept across read sections) ends. */
            uint64_t i = (c & ~CUR_SIDE) - 1;
            off = i < s->slots && hash_half(atomic_load(&reg_slot(h, (uint32_t)i)->uhash), w) == hash
                      ? shm_slot_off(s, (uint32_t)i) : 0;
        }
        for (uint64_t steps = 0; off; steps++) {
            uint32_t si = shm_slot_index(s, off);
            if (si == UINT32_MAX || steps > s->slots)
                return shmreg__fail(SHMREG_ECORRUPT, "user index chain broken at %llu",
                                    (unsigned long long)off);
            reg_sess *x = reg_slot(h, si);
            uint64_t next = atomic_load(&x->unext[w]);
            uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
            /* Filed under this hash, live, and its URI really names the
             * user (hashes collide; keys do not). A session matching both
             * ways is answered on the From side only. */
            if (REG_LIVE(st) && hash_half(atomic_load(&x->uhash), w) == hash &&
                current_key(h, x, w, other, &olen) == 0 && olen == len &&
                memcmp(other, key, len) == 0 &&
                !(w == 1 && (which & SHMREG_USER_FROM) && current_key(h, x, 0, other, &olen) == 0 &&
                  olen == len && memcmp(other, key, len) == 0)) {
                uint32_t ni = next ? shm_slot_index(s, next) : UINT32_MAX;
                *cursor = ni != UINT32_MAX ? (c & CUR_SIDE) | (w ? CUR_SIDE : 0) | (ni + 1ull)
                          : (w == 0 && (which & SHMREG_USER_TO)) ? CUR_SIDE : CUR_END;
                return reg_session_view(h, si, st, out);
            }
            off = next;
        }
        c = (w == 0 && (which & SHMREG_USER_TO)) ? CUR_SIDE : CUR_END;
    }
    *cursor = CUR_END;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions of the user", NULL);
}

/* ------------------------------------------------------------ check */

void reg_user_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void *arg)
{
    (void)mark; /* the chains hold slots, which the session walk marks */
    const shm_seg *s = &h->c.seg;
    char msg[120];
    for (unsigned w = 0; w < 2; w++)
        for (uint32_t b = 0; b < h->users[w].buckets; b++) {
            uint64_t off = atomic_load(&h->users[w].bucket[b]);
            for (uint64_t steps = 0; off; steps++) {
                uint32_t si = shm_slot_index(s, off);
                if (si == UINT32_MAX || steps > s->slots) {
                    snprintf(msg, sizeof msg, "%s-user index bucket %u: chain broken at %llu",
                             w ? "To" : "From", b, (unsigned long long)off);
                    bad(arg, msg);
                    break;
                }
                off = atomic_load(&reg_slot(h, si)->unext[w]);
            }
        }
    /* Sides a death left filed nowhere: filed again. */
    if (repair)
        for (uint64_t i = reg_next_carved_slot(s, 0); i < s->slots; i = reg_next_carved_slot(s, i + 1))
            if (REG_LIVE(atomic_load(&reg_slot(h, (uint32_t)i)->state)))
                sync_sides(h, (uint32_t)i, 1);
}
