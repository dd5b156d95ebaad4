/*
 * txn.c — see txn.h. The table is scanned linearly: it holds at most
 * TXN_MAX entries and is looked at once per wake-up of the worker, which
 * costs less than keeping it sorted and reads more simply.
 */
#include "txn.h"

#include <string.h>

txn *txn_add(txn_table *t, int kind, const shmreg_id *sid, uint32_t cseq,
             const struct sockaddr *to, socklen_t tolen, const char *msg, size_t len,
             uint64_t now)
{
    if (len > TXN_MSG_MAX || tolen > sizeof(struct sockaddr_storage))
        return NULL;
    for (unsigned i = 0; i < TXN_MAX; i++) {
        txn *e = &t->e[i];
        if (e->kind != TX_FREE)
            continue;
        e->kind = kind;
        e->sid = *sid;
        e->cseq = cseq;
        e->answer_ms = 0;
        memcpy(&e->to, to, tolen);
        e->tolen = tolen;
        if (i >= t->hi)
            t->hi = i + 1;
        txn_restart(t, e, kind, msg, len, now);
        return e;
    }
    return NULL;
}

int txn_restart(txn_table *t, txn *e, int kind, const char *msg, size_t len, uint64_t now)
{
    if (len > TXN_MSG_MAX) {
        txn_free(t, e);
        return -1;
    }
    if (msg != e->msg)
        memcpy(e->msg, msg, len);
    e->kind = kind;
    e->len = len;
    e->start_ms = now;
    e->interval_ms = t->t1;
    e->due_ms = now + t->t1;
    e->sent = 1;
    return 0;
}

int txn_expired(const txn_table *t, const txn *e)
{
    return e->due_ms >= e->start_ms + 64u * (uint64_t)t->t1;
}

void txn_sent(txn_table *t, txn *e)
{
    uint64_t limit = e->start_ms + 64u * (uint64_t)t->t1;
    e->sent++;
    e->interval_ms = e->interval_ms * 2 < t->t2 ? e->interval_ms * 2 : t->t2;
    e->due_ms += e->interval_ms;
    if (e->due_ms > limit)
        e->due_ms = limit;
}

void txn_free(txn_table *t, txn *e)
{
    e->kind = TX_FREE;
    while (t->hi > 0 && t->e[t->hi - 1].kind == TX_FREE)
        t->hi--;
}

uint64_t txn_next_due(const txn_table *t)
{
    uint64_t due = UINT64_MAX;
    for (unsigned i = 0; i < t->hi; i++)
        if (t->e[i].kind != TX_FREE && t->e[i].due_ms < due)
            due = t->e[i].due_ms;
    return due;
}

uint64_t txn_key(const sip_msg *m)
{
    if (m->branch.n < 7 || memcmp(m->branch.p, "z9hG4bK", 7) != 0)
        return 0;
    /* FNV-1a: a key to compare, not a defence (the dialog lookup that
     * comes first is keyed SipHash). */
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < m->branch.n; i++)
        h = (h ^ (unsigned char)m->branch.p[i]) * 0x100000001b3u;
    h = (h ^ 0xff) * 0x100000001b3u;
    for (size_t i = 0; i < m->sent_by.n; i++) {
        char c = m->sent_by.p[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);          /* host names compare case-insensitively */
        h = (h ^ (unsigned char)c) * 0x100000001b3u;
    }
    return h ? h : 1;
}
