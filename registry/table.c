/*
 * table.c — the session table as readers see it: finding a session by ID,
 * views of its fields, walking and counting the table, and linking a slot
 * into or out of the ID index. Everything above (session changes, dialogs,
 * rooms, check) builds on these; this file calls none of them.
 *
 * A lookup is lock-free: it goes to the slot the ID names, and only when
 * the session is not there to the index chain of the ID's bucket (which
 * holds just the sessions living away from their slot: reg.h), and
 * accepts a slot only from the one load of its state word that found it
 * live; every view is built from that same word (a delete may land
 * between two loads). Chains change only under their stripe lock and by
 * single stores, so a walker always sees a whole chain.
 */
#include <sodium.h>

#include "reg.h"

void reg_random_id(shmreg *h, unsigned char out[SHMREG_ID_BYTES])
{
    if (h->rnd_left < SHMREG_ID_BYTES) {
        randombytes_buf(h->rnd, sizeof h->rnd);
        h->rnd_left = sizeof h->rnd;
    }
    h->rnd_left -= SHMREG_ID_BYTES;
    memcpy(out, h->rnd + h->rnd_left, SHMREG_ID_BYTES);
    sodium_memzero(h->rnd + h->rnd_left, SHMREG_ID_BYTES); /* an ID handed out is not kept */
}

void reg_session_id(shmreg *h, uint32_t si, unsigned char out[SHMREG_ID_BYTES])
{
    reg_random_id(h, out);
    uint32_t w = si << REG_ID_SLOT_SHIFT | (out[3] & ((1u << REG_ID_SLOT_SHIFT) - 1));
    out[0] = (unsigned char)(w >> 24);
    out[1] = (unsigned char)(w >> 16);
    out[2] = (unsigned char)(w >> 8);
    out[3] = (unsigned char)w;
    out[6] = (unsigned char)(0x80 | (out[6] & 0x0f));
    out[8] = (unsigned char)(0x80 | (out[8] & 0x3f));
}

/* ------------------------------------------------------------ finding */

/* A live session in slot `i` with ID `id`: 1 and its state word in *st.
 *
 * The slot an ID names is read without having been reached through any
 * structure, so it may have been freed and refilled since the session
 * died, even while we are in a read section (epochs protect only what a
 * reader could still reach). Comparing the ID and then loading the state
 * could pair the dead session's ID with the state of the one refilling
 * the slot. So, as a seqlock reader: the state (live, acquire: the ID
 * published with it is visible), then the ID, then the state again; an
 * unchanged word says the ID read belongs to it. A word that moved (a
 * transition, or a delete) is looked at again. Once a live word is
 * confirmed inside our read section, the slot cannot be reused until the
 * section ends. */
static inline int slot_holds(shmreg *h, uint32_t i, const unsigned char id[SHMREG_ID_BYTES], uint64_t *st)
{
    reg_sess *x = reg_slot(h, i);
    uint64_t w = atomic_load_explicit(&x->state, memory_order_acquire);
    for (unsigned tries = 0; tries < 64; tries++) {
        if (!REG_LIVE(w) || memcmp(x->id, id, SHMREG_ID_BYTES) != 0)
            return 0;
        atomic_thread_fence(memory_order_acquire);
        uint64_t again = atomic_load_explicit(&x->state, memory_order_relaxed);
        if (again == w) {
            *st = w;
            return 1;
        }
        w = again;
    }
    return 0; /* a word that never holds still: not found, as for a delete */
}

int reg_lookup(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state)
{
    const shm_seg *s = &h->c.seg;
    uint64_t st;
    /* The slot the ID names: almost always where the session is. */
    uint32_t i = reg_id_slot(id);
    if (i < s->slots) {
        /* The record from its hint, and every line of the slot: a view
         * reads all five (counters, dialogs, profiles, timer, version), a
         * change stamps two, and asked for now they arrive with the state
         * word instead of one after another behind it. */
        reg_rec_hint_fetch(h, i);
        shm_prefetch_range(reg_slot(h, i), SHM_SLOT_BYTES);
        if (slot_holds(h, i, id, &st)) {
            *si = i;
            *state = st;
            return 0;
        }
    }
    /* Not there, or there but deleted: a copy restored elsewhere may be
     * live, so ask the index (a deleted entry is passed over too). */
    uint64_t off = atomic_load_explicit(shm_index_head(&h->sessions, reg_id_hash(id)),
                                        memory_order_acquire);
    for (uint32_t steps = 0; off; steps++) {
        i = shm_slot_index(s, off);
        if (i == UINT32_MAX || steps > s->slots)
            return shmreg__fail(SHMREG_ECORRUPT, "session index chain is broken");
        if (slot_holds(h, i, id, &st)) {
            *si = i;
            *state = st;
            return 0;
        }
        off = atomic_load_explicit(&reg_slot(h, i)->next, memory_order_acquire);
    }
    return SHMREG_ENOENT;
}

int reg_find(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state)
{
    int rc = reg_lookup(h, id, si, state);
    return rc == SHMREG_ENOENT ? shmreg__fail_lazy(rc, "no such session", id) : rc;
}

_Atomic uint64_t *reg_slot_link(const shm_seg *s, uint64_t off)
{
    return shm_slot_index(s, off) == UINT32_MAX ? NULL : &((reg_sess *)(s->base + off))->next;
}

int reg_index_unlink(shmreg *h, uint32_t si)
{
    if (!reg_index_needed(reg_slot(h, si)->id, si))
        return 0; /* never linked: a lookup goes to its slot first */
    /* A lock that cannot be taken leaves the slot linked: check reports
     * it and its repair unlinks it later. */
    return shm_index_unlink(&h->c, &h->sessions, reg_id_hash(reg_slot(h, si)->id),
                            shm_slot_off(&h->c.seg, si), reg_slot_link);
}

/* An SDP kept outside record `rec`, bounds-checked: its block must be
 * the same slot's (aux) and hold exactly the length the record says. */
static int outside_sdp(const shm_seg *s, const shm_blk *rec, uint64_t off, uint32_t len,
                       shmreg_str *out)
{
    shm_blk *b = shm_blk_at(s, off);
    if (b == NULL || b->aux != rec->aux)
        return shmreg__fail(SHMREG_ECORRUPT, "outside SDP offset %llu is not its record's block",
                            (unsigned long long)off);
    reg_sdp *d = reg_payload(b);
    if (d->len != len || sizeof(reg_sdp) + (uint64_t)len > shm_blk_capacity(b))
        return shmreg__fail(SHMREG_ECORRUPT, "outside SDP of %u bytes overruns its block", len);
    out->ptr = d->data;
    out->len = len;
    return 0;
}

/* The error of a record whose string fields overrun it, naming the first. */
static int fields_overrun(const reg_rec *r, uint64_t cap)
{
    uint64_t pos = sizeof(reg_rec);
    unsigned i = 0;
    for (; i < SHMREG_FIELD_STR_COUNT - 1; i++) {
        if (r->len[i] > SHMREG_MAX_STR || pos + r->len[i] > cap)
            break;
        pos += r->len[i];
    }
    return shmreg__fail(SHMREG_ECORRUPT, "session field %u overruns its record", i);
}

/* Every length is checked against the block before a pointer made from
 * it is handed out, so a scribbled record reads as SHMREG_ECORRUPT, never
 * past its block. */
int reg_rec_view(shmreg *h, uint64_t off, shmreg_str str[SHMREG_FIELD_STR_COUNT], uint16_t port[2],
                 shmreg_str sdp[2])
{
    const shm_seg *s = &h->c.seg;
    shm_blk *b = shm_blk_at(s, off);
    if (b == NULL)
        return shmreg__fail(SHMREG_ECORRUPT, "session record offset %llu is not a block",
                            (unsigned long long)off);
    reg_rec *r = reg_payload(b);
    uint64_t cap = shm_blk_capacity(b), pos = sizeof(reg_rec);
    if (cap < pos)
        return shmreg__fail(SHMREG_ECORRUPT, "session record block too small");
    /* One test after the nine fields instead of two per field: the
     * positions only grow, so every field ends within the block if the
     * last does, and no caller looks at str[] when this fails. */
    uint16_t longest = 0;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        uint16_t len = r->len[i];
        longest = len > longest ? len : longest;
        str[i].ptr = (const char *)r + pos;
        str[i].len = len;
        pos += len;
    }
    if (longest > SHMREG_MAX_STR || pos > cap)
        return fields_overrun(r, cap);
    port[0] = r->port[0];
    port[1] = r->port[1];
    for (unsigned k = 0; k < 2 && sdp; k++) {
        uint32_t len = r->sdp_len[k];
        if (len > SHMREG_MAX_SDP)
            return shmreg__fail(SHMREG_ECORRUPT, "SDP length %u over the limit", len);
        if (r->ext[k]) {
            int rc = outside_sdp(s, b, r->ext[k], len, &sdp[k]);
            if (rc)
                return rc;
            continue;
        }
        if (pos + len > cap)
            return shmreg__fail(SHMREG_ECORRUPT, "SDP length %u overruns its record", len);
        sdp[k].ptr = len ? (const char *)r + pos : "";
        sdp[k].len = len;
        pos += len;
    }
    return 0;
}

void reg_rec_outside(shmreg *h, uint64_t off, uint64_t ext[2])
{
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    reg_rec *r = b && shm_blk_capacity(b) >= sizeof(reg_rec) ? reg_payload(b) : NULL;
    ext[0] = r ? r->ext[0] : 0;
    ext[1] = r ? r->ext[1] : 0;
}

int reg_vars_view(shmreg *h, uint64_t off, uint32_t *n, shmreg_str *key, shmreg_str *val)
{
    *n = 0;
    if (off == 0)
        return 0;
    reg_vars *v = reg_heap_rec(&h->c.seg, off, sizeof(reg_vars));
    if (v == NULL || v->magic != REG_VARS_MAGIC || v->n > SHMREG_MAX_VARS)
        return shmreg__fail(SHMREG_ECORRUPT, "variables block at %llu is not one",
                            (unsigned long long)off);
    uint64_t cap = shm_blk_capacity(shm_blk_at(&h->c.seg, off)), pos = sizeof(reg_vars);
    for (uint32_t i = 0; i < v->n; i++) {
        if (v->klen[i] > SHMREG_MAX_VAR_KEY || v->vlen[i] > SHMREG_MAX_VAR_VALUE ||
            pos + v->klen[i] + v->vlen[i] > cap)
            return shmreg__fail(SHMREG_ECORRUPT, "variable %u overruns its block", i);
        if (key) {
            key[i] = (shmreg_str){(const char *)v + pos, v->klen[i]};
            val[i] = (shmreg_str){(const char *)v + pos + v->klen[i], v->vlen[i]};
        }
        pos += v->klen[i] + v->vlen[i];
    }
    *n = v->n;
    return 0;
}

/* The call-control part of a view: deadline, memberships, variables.
 * Only words that are set cost a look at their record. */
static int control_view(shmreg *h, reg_sess *x, shmreg_session *out)
{
    const shm_seg *s = &h->c.seg;
    reg_timer *t = reg_armed_timer(s, x);
    if (t) {
        out->deadline_ns = t->deadline_ns;
        out->timeout_flags = t->flags;
    }
    uint32_t n = 0;
    for (unsigned k = 0; k < SHMREG_MAX_PROFILES_PER_SESSION; k++)
        n += reg_session_pair(s, x, k) != NULL;
    out->nprofiles = n;
    return reg_vars_view(h, atomic_load_explicit(&x->vars, memory_order_acquire), &out->nvars,
                         NULL, NULL);
}

int shmreg_session_control_get(shmreg *h, const shmreg_id *id, shmreg_session_control *out)
{
    uint32_t si;
    uint64_t st;
    int rc = reg_find_in_read(h, id, out, &si, &st);
    if (rc)
        return rc;
    const shm_seg *s = &h->c.seg;
    reg_sess *x = reg_slot(h, si);
    memset(out, 0, sizeof *out);
    for (unsigned k = 0; k < SHMREG_MAX_PROFILES_PER_SESSION; k++) {
        reg_pair *p = reg_session_pair(s, x, k);
        if (p == NULL)
            continue;
        shmreg_profile_entry *e = &out->profile[out->nprofiles++];
        e->profile = (shmreg_str){p->key, p->plen};
        e->value = (shmreg_str){p->key + p->plen, p->vlen};
        e->count = atomic_load(&p->count);
    }
    reg_timer *t = reg_armed_timer(s, x);
    if (t) {
        out->deadline_ns = t->deadline_ns;
        out->timeout_flags = t->flags;
        out->grace_ns = t->grace_ns;
    }
    return reg_vars_view(h, atomic_load(&x->vars), &out->nvars, out->var_key, out->var_value);
}

/* ------------------------------------------------------------ reading */

/* Fill a view of slot si whose state word was `st`: the one load that
 * was checked live. The state is never loaded again here. */
int reg_session_view(shmreg *h, uint32_t si, uint64_t st, shmreg_session *out)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t rec = atomic_load_explicit(&x->rec, memory_order_acquire);
    memcpy(out->id.bytes, x->id, SHMREG_ID_BYTES);
    out->state = (int)REG_STATE(st);
    uint16_t port[2];
    int rc = reg_rec_view(h, rec, out->str, port, out->sdp);
    if (rc)
        return rc;
    out->local_rtp_port = port[0];
    out->remote_rtp_port = port[1];
    out->created_ns = x->created_ns;
    out->updated_ns = atomic_load_explicit(&x->updated_ns, memory_order_relaxed);
    out->owner_pid = x->owner_pid;
    out->config_gen = x->config_gen;
    uint32_t owner = atomic_load_explicit(&x->owner_node, memory_order_relaxed);
    out->owner_node = owner;
    out->version = atomic_load_explicit(&x->version, memory_order_acquire);
    out->flags = atomic_load_explicit(&x->flags, memory_order_relaxed) |
                 (reg_foreign_owner(h, owner) ? SHMREG_SESSION_FOREIGN : 0);
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        out->counter[i] = atomic_load_explicit(&x->counter[i], memory_order_relaxed);
    uint32_t ndialogs = 0; /* counted in a register, not through *out */
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        ndialogs += atomic_load_explicit(&x->dlg[i], memory_order_relaxed) != 0;
    out->ndialogs = ndialogs;
    out->deadline_ns = 0;
    out->timeout_flags = out->nprofiles = out->nvars = 0;
    if ((rc = control_view(h, x, out)) != 0)
        return rc;
    /* The ABI's spare capacity: written, as empty, like every other byte.
     * Copied from a constant rather than memset: GCC made that 112-byte
     * memset a `rep stos`, whose start-up was a fifth of an in-cache get. */
    static const shmreg_str spare[SHMREG_FIELD_STR_MAX - SHMREG_FIELD_STR_COUNT];
    memcpy(&out->str[SHMREG_FIELD_STR_COUNT], spare, sizeof spare);
    memset(&out->counter[SHMREG_CTR_COUNT], 0,
           sizeof out->counter - SHMREG_CTR_COUNT * sizeof out->counter[0]);
    memset(out->reserved, 0, sizeof out->reserved);
    return 0;
}

int reg_need_read(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc == 0 && h->c.read_depth == 0)
        rc = shmreg__fail(SHMREG_ENOREAD, "this call returns pointers: open a read section first");
    return rc;
}

int reg_find_in_read(shmreg *h, const shmreg_id *id, const void *out, uint32_t *si, uint64_t *st)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (id == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id/out");
    return reg_find(h, id->bytes, si, st);
}

int shmreg_session_get(shmreg *h, const shmreg_id *id, shmreg_session *out)
{
    uint32_t si;
    uint64_t st;
    int rc = reg_find_in_read(h, id, out, &si, &st);
    if (rc)
        return rc;
    /* Build the view from the word reg_find validated: loading it again
     * could see a delete that landed meanwhile (REG_DELETED, no state). */
    return reg_session_view(h, si, st, out);
}

/* Slots are carved shard by shard; the cursor walks shard ranges up to
 * each shard's carved count, so iteration costs O(slots ever used). */
uint64_t reg_next_carved_slot(const shm_seg *s, uint64_t i)
{
    uint32_t per = (s->slots + SHM_SHARDS - 1) / SHM_SHARDS;
    while (i < s->slots) {
        uint64_t shard = i / per;
        if (i - shard * per < s->ctl->slots[shard].carved)
            return i;
        i = (shard + 1) * per;
    }
    return s->slots;
}

int shmreg_session_next(shmreg *h, uint64_t *cursor, int state_filter, shmreg_session *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL || state_filter < 0 || state_filter >= SHMREG_STATE_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor/out or unknown state filter");
    const shm_seg *s = &h->c.seg;
    for (uint64_t i = reg_next_carved_slot(s, *cursor); i < s->slots;
         i = reg_next_carved_slot(s, i + 1)) {
        reg_sess *x = reg_slot(h, (uint32_t)i);
        uint64_t st = atomic_load_explicit(&x->state, memory_order_acquire);
        if (!REG_LIVE(st) || (state_filter && (int)REG_STATE(st) != state_filter))
            continue;
        *cursor = i + 1;
        return reg_session_view(h, (uint32_t)i, st, out);
    }
    *cursor = s->slots;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more sessions", NULL);
}

/* Counts are derived from the slots, never kept in counters: a process
 * killed between a change and a counter update would leave the counter
 * wrong for ever, while the slots are always right. */
void reg_count(shmreg *h, uint64_t counts[SHMREG_STATE_COUNT], uint64_t *dialogs, uint64_t *foreign)
{
    memset(counts, 0, sizeof(uint64_t) * SHMREG_STATE_COUNT);
    if (dialogs)
        *dialogs = 0;
    if (foreign)
        *foreign = 0;
    const shm_seg *s = &h->c.seg;
    for (uint64_t i = reg_next_carved_slot(s, 0); i < s->slots; i = reg_next_carved_slot(s, i + 1)) {
        reg_sess *x = reg_slot(h, (uint32_t)i);
        uint64_t st = atomic_load_explicit(&x->state, memory_order_relaxed);
        if (!REG_LIVE(st))
            continue;
        counts[REG_STATE(st)]++;
        counts[0]++;
        for (unsigned k = 0; dialogs && k < SHMREG_MAX_DIALOGS_PER_SESSION; k++)
            *dialogs += atomic_load_explicit(&x->dlg[k], memory_order_relaxed) != 0;
        if (foreign)
            *foreign += reg_foreign_owner(h, atomic_load_explicit(&x->owner_node, memory_order_relaxed));
    }
}

int shmreg_session_counts(shmreg *h, uint64_t *counts, size_t n)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (counts == NULL || n == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL counts or n 0");
    uint64_t all[SHMREG_STATE_COUNT];
    reg_count(h, all, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        counts[i] = i < SHMREG_STATE_COUNT ? all[i] : 0;
    return 0;
}

/* ------------------------------------------------------------ the state machine */

static int session_live(uint64_t w)
{
    return REG_LIVE(w);
}

const reg_machine reg_session_machine = {
    "session", "state", "", shmreg_state_allowed, shmreg_state_name, session_live,
};

/* ------------------------------------------------------------ ownership
 *
 * The gate of many hosts (mirror.c says why): every call that changes a
 * session finds it through reg_find_own, which refuses another node's
 * copy before anything is touched. Here, beside reg_find, so that the
 * files that change sessions need nothing above the table. */

int reg_own_slot(shmreg *h, uint32_t si)
{
    uint32_t owner = atomic_load_explicit(&reg_slot(h, si)->owner_node, memory_order_relaxed);
    if (reg_owner_impossible(h, owner)) /* not "foreign": a damaged slot (shmreg_check) */
        return shmreg__fail(SHMREG_ECORRUPT, "session slot %u names owner node %u, which %s", si, owner,
                            h->node_id ? "is over the largest node ID"
                                       : "a registry without node IDs cannot have");
    if (!h->as_owner && reg_foreign_owner(h, owner))
        return shmreg__fail(SHMREG_EFOREIGN, "session is owned by node %u (this is node %u): "
                            "only its owner changes it", owner, h->node_id);
    return 0;
}

int reg_find_own(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *st)
{
    int rc = reg_find(h, id, si, st);
    if (rc == 0 && (rc = reg_own_slot(h, *si)) == 0)
        shm_note_set(&h->c, (uint64_t)*si + 1); /* a change is coming: reg_dead_note */
    return rc;
}
