/*
 * mirror.c — many hosts: who owns a session, foreign copies of other
 * nodes' sessions, adoption of a dead node's, and the words the mirror
 * daemon (shmreg-sync --redis) shares with the workers.
 *
 * Why it is built this way. Replication goes wrong where two hosts may
 * change one record: last-write-wins needs clocks, merges need rules, and
 * the trackers of the SIP proxies are full of what slips between. Here a
 * session has exactly one writer, its owner node; every other host holds a
 * read-only copy that only the daemon's import changes. A worker that
 * tries gets SHMREG_EFOREIGN, before anything is touched (reg_find_own,
 * beside reg_find in table.c, is the one gate every changing call passes). The owner's slot carries a
 * version, moved on after each change is made and before its event is
 * published, so whoever is told of a change reads at least that version;
 * an import that brings an older version than the copy holds changes
 * nothing. Ties are applied: the daemon reads a session in place, so two
 * reads may see one version with more or less of a change still on its
 * way, and the later read (which comes later through the one ordered
 * stream) is never older.
 *
 * The import reuses what restore and the workers' calls do: a new copy is
 * inserted whole like a restored session (reg_session_insert); an
 * existing one gets its record rewritten by the same build-and-swap as an
 * update, its state word replaced by CAS (a copy follows its owner's
 * state wherever it went: two transitions read as one are one jump), and
 * its dialogs and variables brought to the given set by the public calls,
 * which h->as_owner lets through for the length of the import. A handle
 * is used by one thread at a time, so the flag is never seen by another
 * call. Copies hold no memberships and no timeout: a timer that fires on
 * two hosts ends a call twice (kamailio#3655), so those act only where
 * the call is owned, and are given to a session when it is adopted.
 *
 * The mirror status is a seqlock of plain words: the one daemon that
 * holds the sync claim writes it (odd sequence while it does), any
 * process copies it word by word and retries while the sequence moved.
 */
#include "reg.h"

/* ------------------------------------------------------------ import */

static int node_arg(shmreg *h, uint32_t node, int zero_ok)
{
    if (h->node_id == 0)
        return shmreg__fail(SHMREG_EINVAL, "this registry has no node ID (shmreg_options.node_id)");
    if ((node == 0 && !zero_ok) || node > SHMREG_NODE_MAX || node == h->node_id)
        return shmreg__fail(SHMREG_EINVAL, "node %u is not another node (1..%u, this is %u)", node,
                            SHMREG_NODE_MAX, h->node_id);
    return 0;
}

static int dialog_eq(const shmreg_dialog *a, const shmreg_dialog *b)
{
    return reg_str_eq(a->call_id, b->call_id) && reg_str_eq(a->local_tag, b->local_tag) &&
           reg_str_eq(a->remote_tag, b->remote_tag);
}

/* Bring session `id`'s dialogs to exactly d[0..nd-1]: unbind the others,
 * bind the missing (a key bound elsewhere here is left out). */
static int sync_dialogs(shmreg *h, const shmreg_id *id, const shmreg_dialog *d, unsigned nd)
{
    shmreg_dialog cur[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned n = 0;
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++)
        if (shmreg_session_dialog(h, id, i, &cur[n]) == 0)
            n++;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        unsigned j = 0;
        while (j < nd && !dialog_eq(&cur[i], &d[j]))
            j++;
        if (j == nd) {
            rc = shmreg_dialog_unbind(h, cur[i].call_id, cur[i].local_tag, cur[i].remote_tag);
            rc = rc == SHMREG_ENOENT ? 0 : rc;
        }
    }
    for (unsigned j = 0; j < nd && rc == 0; j++) {
        unsigned i = 0;
        while (i < n && !dialog_eq(&cur[i], &d[j]))
            i++;
        if (i == n) {
            rc = shmreg_dialog_bind(h, d[j].call_id, d[j].local_tag, d[j].remote_tag, id);
            rc = rc == SHMREG_EEXIST ? 0 : rc;
        }
    }
    return rc;
}

/* Bring session `id`'s variables to exactly those of `c` (NULL: none). */
static int sync_vars(shmreg *h, const shmreg_id *id, const shmreg_session_control *c)
{
    uint32_t nwant = c ? c->nvars : 0;
    shmreg_str key[SHMREG_MAX_VARS];
    unsigned n = 0;
    uint64_t cursor = 0;
    shmreg_str k, v;
    while (n < SHMREG_MAX_VARS && shmreg_session_var_next(h, id, &cursor, &k, &v) == 0)
        key[n++] = k;
    int rc = 0;
    for (unsigned i = 0; i < n && rc == 0; i++) {
        unsigned j = 0;
        while (j < nwant && !reg_str_eq(key[i], c->var_key[j]))
            j++;
        if (j == nwant)
            rc = shmreg_session_var_unset(h, id, key[i]);
    }
    for (unsigned j = 0; j < nwant && rc == 0; j++) {
        shmreg_str have;
        if (shmreg_session_var_get(h, id, c->var_key[j], &have) != 0 || !reg_str_eq(have, c->var_value[j]))
            rc = shmreg_session_var_set(h, id, c->var_key[j], c->var_value[j]);
    }
    return rc;
}

/* Replace live slot si's state word `cur` by `state`; 0, or SHMREG_ENOENT
 * when the copy was deleted meanwhile. */
static int set_state(shmreg *h, uint32_t si, uint64_t cur, int state)
{
    reg_sess *x = reg_slot(h, si);
    while (REG_STATE(cur) != (unsigned)state) {
        if (!REG_LIVE(cur))
            return shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
        if (atomic_compare_exchange_strong(&x->state, &cur, (uint64_t)state))
            break;
    }
    return 0;
}

static int import_new(shmreg *h, uint32_t node, uint64_t version, const shmreg_session *s,
                      const shmreg_fields *f)
{
    uint64_t counter[SHMREG_CTR_COUNT];
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        counter[i] = s->counter[i];
    reg_new n = {
        .id = s->id.bytes,
        .f = f,
        .sdp = {s->sdp[0], s->sdp[1]},
        .counter = counter,
        .created_ns = s->created_ns ? s->created_ns : 1,
        .updated_ns = s->updated_ns,
        .config_gen = s->config_gen,
        .owner_pid = s->owner_pid,
        .flags = (uint32_t)(s->flags & SHMREG_SESSION_ADOPTED),
        .owner_node = node,
        .version = version ? version : 1,
        .state = s->state,
        .event = 0, /* published once the dialogs and variables are in */
    };
    return reg_session_insert(h, &n, NULL);
}

static int import_over(shmreg *h, uint32_t si, uint64_t cur, uint32_t node, const shmreg_session *s,
                       const shmreg_fields *f)
{
    reg_sess *x = reg_slot(h, si);
    int rc = reg_session_rewrite(h, si, f, s->sdp);
    if (rc == 0)
        rc = set_state(h, si, cur, s->state);
    if (rc)
        return rc;
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        atomic_store_explicit(&x->counter[i], s->counter[i], memory_order_relaxed);
    atomic_fetch_or(&x->flags, (uint32_t)(s->flags & SHMREG_SESSION_ADOPTED));
    atomic_store(&x->owner_node, node);
    return 0; /* the version is stored last, by the caller */
}

int shmreg_session_import(shmreg *h, uint32_t node, uint64_t version, const shmreg_session *s,
                          const shmreg_session_control *c, const shmreg_dialog *d, unsigned nd)
{
    int rc = shmreg__usable(h);
    if (rc || (rc = node_arg(h, node, 0)) != 0)
        return rc;
    if (nd > SHMREG_MAX_DIALOGS_PER_SESSION || (nd && d == NULL) ||
        (c && c->nvars > SHMREG_MAX_VARS))
        return shmreg__fail(SHMREG_EINVAL, "%u dialogs (limit %u) or too many variables", nd,
                            SHMREG_MAX_DIALOGS_PER_SESSION);
    shmreg_fields f;
    if ((rc = reg_fields_of(s, &f)) != 0)
        return rc;
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    h->as_owner = 1;
    rc = reg_lookup(h, s->id.bytes, &si, &st);
    if (rc == SHMREG_ENOENT) {
        if ((rc = import_new(h, node, version, s, &f)) == 0 &&
            (rc = reg_lookup(h, s->id.bytes, &si, &st)) == SHMREG_ENOENT)
            rc = shmreg__fail(SHMREG_ENOENT, "imported session deleted meanwhile");
    } else if (rc == 0) {
        reg_sess *x = reg_slot(h, si);
        uint64_t have = atomic_load(&x->version);
        if (!reg_foreign_owner(h, atomic_load(&x->owner_node)))
            rc = shmreg__fail_lazy(SHMREG_EEXIST, "the session is this node's own", s->id.bytes);
        else if (version < have)
            rc = shmreg__fail(SHMREG_ECONFLICT, "version %llu is older than the copy's %llu",
                              (unsigned long long)version, (unsigned long long)have);
        else
            rc = import_over(h, si, st, node, s, &f);
    }
    if (rc == 0)
        rc = sync_dialogs(h, &s->id, d, nd);
    if (rc == 0)
        rc = sync_vars(h, &s->id, c);
    if (rc == 0) {
        /* Last, over what the dialog and variable calls stamped: */
        reg_sess *x = reg_slot(h, si);
        atomic_store(&x->updated_ns, s->updated_ns);
        uint64_t v = version ? version : 1;
        atomic_store_explicit(&x->version, v, memory_order_release);
        reg_event(h, 0, SHMREG_EV_SESSION_IMPORTED, s->id.bytes, 0, s->state, 0, v);
    }
    h->as_owner = 0;
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_session_import_delete(shmreg *h, uint32_t node, const shmreg_id *id)
{
    int rc = shmreg__usable(h);
    if (rc || (rc = node_arg(h, node, 0)) != 0)
        return rc;
    if (id == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL id");
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, id->bytes, &si, &st)) == 0) {
        uint32_t owner = atomic_load(&reg_slot(h, si)->owner_node);
        if (owner != node) {
            rc = shmreg__fail(SHMREG_ECONFLICT, "session is owned by node %u, not %u", owner, node);
        } else {
            h->as_owner = 1;
            rc = shmreg_session_delete(h, id);
            h->as_owner = 0;
        }
    }
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ adoption */

int shmreg_session_adopt(shmreg *h, const shmreg_id *id, const shmreg_session_control *c)
{
    int rc = shmreg__usable(h);
    if (rc || (rc = node_arg(h, 0, 1)) != 0)
        return rc;
    if (id == NULL || (c && c->nprofiles > SHMREG_MAX_PROFILES_PER_SESSION))
        return shmreg__fail(SHMREG_EINVAL, "NULL id or too many memberships");
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, id->bytes, &si, &st)) != 0)
        goto out;
    reg_sess *x = reg_slot(h, si);
    uint32_t owner = atomic_load(&x->owner_node);
    if (!reg_foreign_owner(h, owner)) {
        rc = shmreg__fail_lazy(SHMREG_EEXIST, "the session is this node's own already", id->bytes);
        goto out;
    }
    /* Ours from here on: what follows is the owner's to do. */
    atomic_store(&x->owner_node, h->node_id);
    atomic_fetch_or(&x->flags, SHMREG_SESSION_ADOPTED);
    int live = !shmreg_state_is_final((int)REG_STATE(st));
    for (uint32_t i = 0; c && live && i < c->nprofiles; i++) {
        int r = shmreg_profile_join(h, id, c->profile[i].profile, c->profile[i].value, 0, NULL);
        if (r && r != SHMREG_EEXIST && rc == 0)
            rc = r;
    }
    if (c && live && c->deadline_ns) {
        int r = shmreg_session_set_timeout(h, id, c->deadline_ns,
                                           c->timeout_flags & ~SHMREG_TIMEOUT_RELATIVE, c->grace_ns);
        if (r && rc == 0)
            rc = r;
    }
    reg_event(h, 0, SHMREG_EV_SESSION_ADOPTED, id->bytes, 0, (int)REG_STATE(st), 0, reg_changed(h, si));
out:
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_node_cede(shmreg *h, uint32_t to, uint64_t *count)
{
    int rc = shmreg__usable(h);
    if (rc || (rc = node_arg(h, to, 0)) != 0)
        return rc;
    const shm_seg *s = &h->c.seg;
    uint64_t n = 0;
    shm_read_enter(&h->c);
    for (uint64_t i = reg_next_carved_slot(s, 0); i < s->slots; i = reg_next_carved_slot(s, i + 1)) {
        reg_sess *x = reg_slot(h, (uint32_t)i);
        uint64_t st = atomic_load(&x->state);
        uint32_t own = h->node_id;
        if (!REG_LIVE(st) || !atomic_compare_exchange_strong(&x->owner_node, &own, to))
            continue;
        /* A copy from here on: what acts only where a call is owned goes. */
        reg_timer_arm(h, (uint32_t)i, 0, 0, 0);
        reg_profiles_forget(h, (uint32_t)i);
        unsigned char id[SHMREG_ID_BYTES];
        memcpy(id, x->id, SHMREG_ID_BYTES);
        reg_event(h, 0, SHMREG_EV_SESSION_IMPORTED, id, 0, (int)REG_STATE(st), 0, atomic_load(&x->version));
        n++;
    }
    shm_read_leave(&h->c);
    if (count)
        *count = n;
    return 0;
}

int shmreg_node_adopt_request(shmreg *h, uint32_t node)
{
    int rc = shmreg__usable(h);
    if (rc || (rc = node_arg(h, node, 1)) != 0)
        return rc;
    atomic_store(&h->shared->adopt_request, node);
    return 0;
}

int shmreg_node_adopt_take(shmreg *h, uint32_t *node)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (node == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL node");
    if ((rc = reg_claim_held(h)) != 0)
        return rc;
    *node = (uint32_t)atomic_exchange(&h->shared->adopt_request, 0);
    return 0;
}

/* ------------------------------------------------------------ status */

#define MIRROR_WORDS ((sizeof(shmreg_mirror_status) + 7) / 8)

int shmreg_mirror_report(shmreg *h, const shmreg_mirror_status *st)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (st == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL status");
    if ((rc = reg_claim_held(h)) != 0)
        return rc;
    uint64_t w[MIRROR_WORDS] = {0};
    memcpy(w, st, sizeof *st);
    reg_shared *hd = h->shared;
    uint64_t seq = atomic_load_explicit(&hd->mirror_seq, memory_order_relaxed);
    atomic_store_explicit(&hd->mirror_seq, seq + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    for (size_t i = 0; i < MIRROR_WORDS; i++)
        atomic_store_explicit(&hd->mirror[i], w[i], memory_order_relaxed);
    atomic_store_explicit(&hd->mirror_seq, seq + 2, memory_order_release);
    return 0;
}

int shmreg_mirror_get(shmreg *h, shmreg_mirror_status *st)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (st == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL status");
    reg_shared *hd = h->shared;
    uint64_t w[MIRROR_WORDS];
    for (unsigned tries = 0;; tries++) {
        uint64_t seq = atomic_load_explicit(&hd->mirror_seq, memory_order_acquire);
        for (size_t i = 0; i < MIRROR_WORDS; i++)
            w[i] = atomic_load_explicit(&hd->mirror[i], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (!(seq & 1) && atomic_load_explicit(&hd->mirror_seq, memory_order_relaxed) == seq)
            break;
        if (tries > 1000) /* a writer that died mid-way: its words as they are */
            break;
    }
    memcpy(st, w, sizeof *st);
    st->last_error[sizeof st->last_error - 1] = '\0';
    if (st->npeers > SHMREG_MIRROR_PEERS_MAX)
        st->npeers = SHMREG_MIRROR_PEERS_MAX;
    return 0;
}
