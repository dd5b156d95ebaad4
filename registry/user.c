/*
 * user.c — finding a user's calls: an index of sessions by the user@host
 * of their From and To URIs.
 *
 * "Which calls does alice have?" must not scan a million sessions. Two
 * stripe-locked indexes, one for From and one for To, chain session
 * slots themselves (a link word per side in the slot) by a keyed hash of the
 * user@host (the network chooses URIs, so SipHash under the registry's
 * key, as for dialogs). No record per user is allocated: the key is the
 * session's own URI, read from its record, and the slot's uhash word
 * says which bucket each side is filed in. A lookup walks one chain and
 * keeps the live sessions whose URI really names the user, so a slot
 * filed under a stale hash by a change in flight is never an answer.
 *
 * The filing follows the record: reg_users_sync() reads the From and
 * To URIs of the session's current record and refiles a side whose hash
 * changed, under the session's stripe of the session index (so two
 * updaters of one session refile one after the other, and the last one
 * files what the last record says). A create files the session before it
 * is published (it is found by user the moment it is live); a delete
 * takes it out of both chains before its slot can be reused.
 *
 * Keys compare as SIP compares URIs (RFC 3261 19.1.4): the user part
 * byte for byte, the host without regard to case; the scheme, port,
 * parameters and headers are not part of the key.
 */
#include <stdio.h>

#include "reg.h"

/* ------------------------------------------------------------ the key */

/* ASCII case and space, whatever the process's locale: every worker must
 * compute the same key from the same URI, and SIP's case-insensitive
 * parts (scheme, host) are ASCII. */
static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

static int ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

static int has_prefix(const char *p, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    if (n < k)
        return 0;
    for (size_t i = 0; i < k; i++)
        if (ascii_lower(p[i]) != pre[i])
            return 0;
    return 1;
}

int shmreg_user_key(shmreg_str uri, char *out, size_t cap, size_t *len)
{
    if (out == NULL || len == NULL || (uri.len && uri.ptr == NULL))
        return shmreg__fail(SHMREG_EINVAL, "NULL out, len or URI bytes");
    if (uri.len == 0) { /* {NULL, 0} is empty too: no pointer arithmetic on it */
        *len = 0;
        return 0;
    }
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
    while (p < e && ascii_space(*p))
        p++;
    while (e > p && ascii_space(e[-1]))
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
        out[n++] = fold ? ascii_lower(host[i]) : host[i];
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

/* The chains are doubly linked through the slots, so that a session
 * leaves one in O(1) however many calls its user has (a call centre's
 * number is the To of thousands). Each side's link word packs two slot
 * numbers (index + 1, 0: none): the next in its low half, which lock-free
 * walkers follow, the previous in its high half; a bucket holds the first
 * slot's number. Writers change them under the bucket's stripe lock, each
 * word by one store, in an order that keeps every `next` chain whole; a
 * holder that dies between two stores leaves a stale `prev`, which the
 * taker of its lock relinks for the buckets that lock guards. */
static uint32_t link_next(uint64_t l) { return (uint32_t)l; }
static uint32_t link_prev(uint64_t l) { return (uint32_t)(l >> 32); }
static uint64_t link_make(uint32_t next, uint32_t prev) { return next | (uint64_t)prev << 32; }

static _Atomic uint64_t *link_word(shmreg *h, uint32_t n, unsigned w)
{
    return n && n <= h->c.seg.slots ? &reg_slot(h, n - 1)->ulink[w] : NULL;
}

static void relink_stripe(shmreg *h, unsigned w, const shm_lock *l)
{
    const shm_index *ix = &h->users[w];
    for (uint32_t b = (uint32_t)(l - ix->stripe); b < ix->buckets; b += SHM_STRIPES) {
        uint32_t prev = 0, n = (uint32_t)atomic_load(&ix->bucket[b]);
        for (uint32_t steps = 0; n && steps <= h->c.seg.slots; steps++) {
            _Atomic uint64_t *lw = link_word(h, n, w);
            if (lw == NULL)
                break;
            uint64_t v = atomic_load(lw);
            shm_store(lw, link_make(link_next(v), prev));
            prev = n;
            n = link_next(v);
        }
    }
}

static int chain_lock(shmreg *h, unsigned w, uint32_t hash, shm_lock **l)
{
    *l = shm_index_lock(&h->users[w], hash);
    int rc = shm_lock_take(&h->c, *l);
    if (rc == 1)
        relink_stripe(h, w, *l);
    return rc < 0 ? reg_engine_fail(rc, "user index lock") : 0;
}

/* Under the lock: is slot number `me` on the chain of `hash`? In O(1):
 * its predecessor (or the bucket) names it. */
static int on_chain(shmreg *h, unsigned w, uint32_t hash, uint32_t me)
{
    _Atomic uint64_t *head = shm_index_head(&h->users[w], hash), *mine = link_word(h, me, w);
    uint32_t p = link_prev(atomic_load(mine));
    _Atomic uint64_t *pw = link_word(h, p, w);
    return p ? pw && link_next(atomic_load(pw)) == me : (uint32_t)atomic_load(head) == me;
}

static void chain_push(shmreg *h, unsigned w, uint32_t hash, uint32_t me)
{
    _Atomic uint64_t *head = shm_index_head(&h->users[w], hash);
    uint32_t first = (uint32_t)atomic_load(head);
    _Atomic uint64_t *fw = link_word(h, first, w);
    shm_store(link_word(h, me, w), link_make(fw ? first : 0, 0));
    if (fw)
        shm_store(fw, link_make(link_next(atomic_load(fw)), me));
    shm_store(head, me);
}

static void chain_remove(shmreg *h, unsigned w, uint32_t hash, uint32_t me)
{
    if (!on_chain(h, w, hash, me))
        return;
    uint64_t v = atomic_load(link_word(h, me, w));
    uint32_t p = link_prev(v), n = link_next(v);
    _Atomic uint64_t *pw = link_word(h, p, w), *nw = link_word(h, n, w);
    if (pw)
        shm_store(pw, link_make(n, link_prev(atomic_load(pw))));
    else
        shm_store(shm_index_head(&h->users[w], hash), n);
    if (nw)
        shm_store(nw, link_make(link_next(atomic_load(nw)), p));
}

/* The URI field of side `w` (0 From, 1 To). */
static unsigned side_field(unsigned w)
{
    return w ? SHMREG_FIELD_TO_URI : SHMREG_FIELD_FROM_URI;
}

/* The key that side `w` of slot x's current record gives. */
static int current_key(shmreg *h, reg_sess *x, unsigned w, char *key, size_t *len)
{
    shmreg_str str[SHMREG_FIELD_STR_COUNT];
    uint16_t port[2];
    int rc = reg_rec_view(h, atomic_load(&x->rec), str, port, NULL);
    if (rc == 0)
        rc = shmreg_user_key(str[side_field(w)], key, SHMREG_MAX_STR, len);
    return rc;
}

/* The hash a side whose key is `key` is filed under (0: none). */
static uint32_t side_hash(shmreg *h, const char *key, size_t len)
{
    return len ? user_hash(h, key, len) : 0;
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
    reg_sess *x = reg_slot(h, si);
    uint64_t both = atomic_load(&x->uhash);
    uint32_t cur = hash_half(both, w), me = si + 1;
    shm_lock *l;
    int rc;
    if (cur && cur != want) {
        if ((rc = chain_lock(h, w, cur, &l)) != 0)
            return rc;
        chain_remove(h, w, cur, me);
        shm_lock_drop(l);
    }
    both = (both & ~(0xffffffffull << (32 * w))) | (uint64_t)want << (32 * w);
    shm_store(&x->uhash, both);
    if (want) {
        if ((rc = chain_lock(h, w, want, &l)) != 0)
            return rc;
        if (!on_chain(h, w, want, me))
            chain_push(h, w, want, me);
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
        uint32_t want = side_hash(h, key, len);
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

/* A create's filing needs less than sync_sides: no session lock, as no one
 * else can reach a slot not yet published (the check's repair refiles
 * live sessions only), and no reading back of the record, which was just
 * built from these very fields. */
int reg_users_file_new(shmreg *h, uint32_t si, const shmreg_fields *f)
{
    char key[SHMREG_MAX_STR];
    int rc = 0;
    for (unsigned w = 0; w < 2 && f && rc == 0; w++) {
        size_t len;
        if ((rc = shmreg_user_key(f->str[side_field(w)], key, sizeof key, &len)) == 0 && len)
            rc = refile(h, si, w, side_hash(h, key, len));
    }
    return rc;
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
        uint32_t n;
        if ((c & ~CUR_SIDE) == 0) {
            n = (uint32_t)atomic_load(shm_index_head(&h->users[w], hash));
        } else {
            /* Resuming at the next slot on the chain: it must still be
             * filed in this bucket (under this key's hash or another that
             * shares the bucket), else the walk, kept across read
             * sections, ends. */
            uint64_t i = (c & ~CUR_SIDE) - 1;
            uint32_t fh = i < s->slots ? hash_half(atomic_load(&reg_slot(h, (uint32_t)i)->uhash), w) : 0;
            uint32_t mask = h->users[w].buckets - 1;
            n = fh && (fh & mask) == (hash & mask) ? (uint32_t)i + 1 : 0;
        }
        for (uint64_t steps = 0; n; steps++) {
            if (n > s->slots || steps > s->slots)
                return shmreg__fail(SHMREG_ECORRUPT, "user index chain broken at slot number %u", n);
            uint32_t si = n - 1;
            reg_sess *x = reg_slot(h, si);
            uint32_t next = link_next(atomic_load(&x->ulink[w]));
            uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
            /* Filed under this hash, live, and its URI really names the
             * user (hashes collide; keys do not). A session matching both
             * ways is answered on the From side only. */
            if (REG_LIVE(st) && hash_half(atomic_load(&x->uhash), w) == hash &&
                current_key(h, x, w, other, &olen) == 0 && olen == len &&
                memcmp(other, key, len) == 0 &&
                !(w == 1 && (which & SHMREG_USER_FROM) && current_key(h, x, 0, other, &olen) == 0 &&
                  olen == len && memcmp(other, key, len) == 0)) {
                *cursor = next ? (w ? CUR_SIDE : 0) | next
                          : (w == 0 && (which & SHMREG_USER_TO)) ? CUR_SIDE : CUR_END;
                return reg_session_view(h, si, st, out);
            }
            n = next;
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
            uint32_t n = (uint32_t)atomic_load(&h->users[w].bucket[b]);
            for (uint64_t steps = 0; n; steps++) {
                if (n > s->slots || steps > s->slots) {
                    snprintf(msg, sizeof msg, "%s-user index bucket %u: chain broken at slot number %u",
                             w ? "To" : "From", b, n);
                    bad(arg, msg);
                    break;
                }
                n = link_next(atomic_load(&reg_slot(h, n - 1)->ulink[w]));
            }
        }
    /* Sides a death left filed nowhere: filed again. */
    if (repair)
        for (uint64_t i = reg_next_carved_slot(s, 0); i < s->slots; i = reg_next_carved_slot(s, i + 1))
            if (REG_LIVE(atomic_load(&reg_slot(h, (uint32_t)i)->state)))
                sync_sides(h, (uint32_t)i, 1);
}
