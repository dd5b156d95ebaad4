/*
 * user.c — finding a user's calls: an index of sessions by the user@host
 * of their From and To URIs.
 *
 * "Which calls does alice have?" must not scan a million sessions. Every
 * session with a non-empty From or To user has a user record (reg_user)
 * for each, in a stripe-locked index keyed by the keyed hash of the
 * user@host (the network chooses URIs, so the hash is SipHash under the
 * registry's key, as for dialogs). The session's user[] words name its
 * current records; a lookup walks one chain and keeps the records that
 * are still their session's current ones, so a record left behind by a
 * change in flight, or by a process that died, is never an answer.
 *
 * The records follow the info block: reg_users_sync() reads the From and
 * To URIs of the session's current info and replaces a record whose key
 * differs, by compare-and-swap on the user[] word, then looks again, so
 * racing updaters leave the records of the last info whoever finishes
 * last. A create links them before the session is published (a new
 * session is found by user the moment it is live); a delete drops them.
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

/* ------------------------------------------------------------ records */

static reg_user *user_at(const shm_seg *s, uint64_t off)
{
    reg_user *u = reg_heap_rec(s, off, sizeof(reg_user));
    if (u == NULL || u->which > 1 || sizeof(reg_user) + (uint64_t)u->len > shm_blk_capacity(shm_blk_at(s, off)))
        return NULL;
    return u;
}

static _Atomic uint64_t *user_link(const shm_seg *s, uint64_t off)
{
    reg_user *u = user_at(s, off);
    return u ? &u->next : NULL;
}

static uint64_t user_hash(shmreg *h, const char *key, size_t len)
{
    return reg_key_hash(h, (shmreg_str){key, len}, (shmreg_str){NULL, 0});
}

static void unlink_retire(shmreg *h, uint64_t off)
{
    reg_user *u = user_at(&h->c.seg, off);
    if (u == NULL)
        return;
    if (shm_index_unlink(&h->c, &h->users, u->hash, off, user_link)) {
        shm_blk *b = shm_blk_at(&h->c.seg, off);
        uint64_t st = atomic_load(&b->state);
        if (SHM_KIND(st) == SHM_BLK_USED)
            shm_retire(&h->c, off, st);
    }
}

/* The key that side `w` (0 From, 1 To) of slot si's current info gives. */
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

int reg_users_sync(shmreg *h, uint32_t si)
{
    reg_sess *x = reg_slot(h, si);
    char key[SHMREG_MAX_STR];
    for (unsigned w = 0; w < 2; w++) {
        for (unsigned tries = 0;; tries++) {
            size_t len;
            int rc = current_key(h, x, w, key, &len);
            if (rc)
                return rc;
            uint64_t cur = atomic_load(&x->user[w]);
            reg_user *u = cur ? user_at(&h->c.seg, cur) : NULL;
            if ((u && u->len == len && memcmp(u->key, key, len) == 0) || (cur == 0 && len == 0))
                break;
            if (tries > 64)
                return shmreg__fail(SHMREG_EBUSY, "user index: the session's URIs keep changing");
            uint64_t fresh = 0;
            if (len) {
                fresh = shm_alloc(&h->c, sizeof(reg_user) + len, si + 1);
                if (fresh == 0)
                    return shmreg__fail(SHMREG_EFULL, "registry heap full (user record)");
                reg_user *n = reg_payload((shm_blk *)(h->c.seg.base + fresh));
                n->hash = user_hash(h, key, len);
                n->slot = si;
                n->which = (uint16_t)w;
                n->len = (uint16_t)len;
                memcpy(n->sid, x->id, SHMREG_ID_BYTES);
                memcpy(n->key, key, len);
                if ((rc = reg_engine_fail(shm_index_link(&h->c, &h->users, n->hash, fresh, &n->next),
                                          "user index lock")) != 0) {
                    shm_free(&h->c, fresh);
                    return rc;
                }
            }
            if (atomic_compare_exchange_strong(&x->user[w], &cur, fresh)) {
                if (cur)
                    unlink_retire(h, cur);
            } else if (fresh) {
                unlink_retire(h, fresh);
            }
        }
    }
    return 0;
}

void reg_users_forget(shmreg *h, uint32_t si)
{
    reg_sess *x = reg_slot(h, si);
    for (unsigned w = 0; w < 2; w++) {
        uint64_t cur = atomic_exchange(&x->user[w], 0);
        if (cur)
            unlink_retire(h, cur);
    }
}

/* ------------------------------------------------------------ lookup */

/* Is record `off` (side w, key) its live session's current one? */
static reg_sess *current_of(shmreg *h, const reg_user *u, uint64_t off, uint64_t *st)
{
    if (u->slot >= h->c.seg.slots)
        return NULL;
    reg_sess *x = reg_slot(h, u->slot);
    *st = atomic_load_explicit(&x->state, memory_order_acquire);
    if (!REG_LIVE(*st) || atomic_load(&x->user[u->which]) != off ||
        memcmp(x->id, u->sid, SHMREG_ID_BYTES) != 0)
        return NULL;
    return x;
}

int shmreg_session_by_user(shmreg *h, shmreg_str user, unsigned which, uint64_t *cursor,
                           shmreg_session *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL || which == 0 || (which & ~(SHMREG_USER_FROM | SHMREG_USER_TO)))
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor or out, or user sides 0x%x", which);
    char key[SHMREG_MAX_STR];
    size_t len;
    if ((rc = shmreg_user_key(user, key, sizeof key, &len)) != 0)
        return rc;
    if (len == 0)
        return shmreg__fail(SHMREG_EINVAL, "empty user");
    /* The cursor is the offset of the next record to look at (0: the
     * chain's head; 1: the end): each call goes on where the last one
     * stopped. In one read section that record is still on the chain (or
     * was, and its link still leads on); a cursor kept across sections
     * whose record has gone ends the walk. */
    uint64_t hash = user_hash(h, key, len), off;
    if (*cursor == 1)
        return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions of the user", NULL);
    if (*cursor == 0) {
        off = atomic_load(shm_index_head(&h->users, hash));
    } else {
        reg_user *c = user_at(&h->c.seg, *cursor);
        if (c == NULL || c->hash != hash)
            return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions of the user", NULL);
        off = *cursor;
    }
    for (uint64_t steps = 0; off; steps++) {
        reg_user *u = user_at(&h->c.seg, off);
        if (u == NULL || steps > shm_walk_limit(&h->c.seg))
            return shmreg__fail(SHMREG_ECORRUPT, "user index chain broken at %llu",
                                (unsigned long long)off);
        uint64_t st, next = atomic_load(&u->next);
        reg_sess *x;
        if (u->hash == hash && u->len == len && memcmp(u->key, key, len) == 0 &&
            (which & (1u << u->which)) && (x = current_of(h, u, off, &st)) != NULL) {
            /* Both sides asked and both name the user: the From record
             * answers, the To record is passed over. */
            reg_user *f = u->which == 1 && (which & SHMREG_USER_FROM)
                              ? user_at(&h->c.seg, atomic_load(&x->user[0])) : NULL;
            if (!(f && f->len == len && memcmp(f->key, key, len) == 0)) {
                *cursor = next ? next : 1;
                return reg_session_view(h, u->slot, st, out);
            }
        }
        off = next;
    }
    *cursor = 1;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions of the user", NULL);
}

/* ------------------------------------------------------------ check */

void reg_user_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void *arg)
{
    const shm_seg *s = &h->c.seg;
    for (uint32_t b = 0; b < h->users.buckets; b++) {
        uint64_t off = atomic_load(&h->users.bucket[b]);
        for (uint64_t steps = 0; off; steps++) {
            reg_user *u = user_at(s, off);
            if (u == NULL || steps > shm_walk_limit(s)) {
                char msg[96];
                snprintf(msg, sizeof msg, "user index bucket %u: chain broken at %llu", b,
                         (unsigned long long)off);
                bad(arg, msg);
                break;
            }
            uint64_t next = atomic_load(&u->next), st;
            /* A record nobody names whose maker is dead is a leftover
             * (a create or update that died): repair drops it. */
            shm_blk *blk = shm_blk_at(s, off);
            uint64_t bst = atomic_load(&blk->state);
            if (repair && current_of(h, u, off, &st) == NULL && !shm_tag_alive(s, bst & ~0xffull) &&
                (u->slot >= s->slots || atomic_load(&reg_slot(h, u->slot)->user[u->which]) != off))
                unlink_retire(h, off);
            else
                mark(arg, off);
            off = next;
        }
    }
}
