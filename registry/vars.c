/*
 * vars.c — session variables: a few string keys and values kept with a
 * call ($dlg_var in Kamailio and OpenSIPS).
 *
 * They are one immutable block per session (reg_vars), replaced whole by
 * compare-and-swap exactly as the session's record is (reg_change_field): a
 * reader sees the old set or the new one, in place, and the old one stays
 * intact until its read section ends. A set of at most SHMREG_MAX_VARS
 * short strings is cheap to copy, and copying it is what makes "old or
 * new, never a mix" free for readers. Keys keep the order in which they
 * were first set.
 */
#include "reg.h"

static int check_key(shmreg_str key)
{
    if (key.len == 0 || key.ptr == NULL || key.len > SHMREG_MAX_VAR_KEY)
        return shmreg__fail(SHMREG_EINVAL, "variable name of %zu bytes (1..%u)", key.len,
                            SHMREG_MAX_VAR_KEY);
    return 0;
}

/* A change to a set: `key` set to `*val`, or removed (val NULL). */
typedef struct vars_change_arg {
    shmreg_str key;
    const shmreg_str *val;
} vars_change_arg;

/* Build the set of block `old` with the change `arg` (a vars_change_arg)
 * made: 0 with *fresh (0 when the set becomes empty), or an error
 * (reg_block_ops.build). */
static int vars_build(shmreg *h, uint32_t si, uint64_t old, const void *arg, uint64_t *fresh)
{
    shmreg_str key = ((const vars_change_arg *)arg)->key;
    const shmreg_str *val = ((const vars_change_arg *)arg)->val;
    shmreg_str k[SHMREG_MAX_VARS + 1], v[SHMREG_MAX_VARS + 1];
    uint32_t n;
    int rc = reg_vars_view(h, old, &n, k, v), found = -1;
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n && found < 0; i++)
        if (k[i].len == key.len && memcmp(k[i].ptr, key.ptr, key.len) == 0)
            found = (int)i;
    if (val == NULL) {
        if (found < 0)
            return shmreg__fail_copy(SHMREG_ENOENT, "no such variable: ", key.ptr, key.len);
        memmove(&k[found], &k[found + 1], (n - (uint32_t)found - 1) * sizeof k[0]);
        memmove(&v[found], &v[found + 1], (n - (uint32_t)found - 1) * sizeof v[0]);
        n--;
    } else if (found >= 0) {
        v[found] = *val;
    } else {
        if (n == SHMREG_MAX_VARS)
            return shmreg__fail(SHMREG_EFULL, "session has %u variables already", SHMREG_MAX_VARS);
        k[n] = key;
        v[n++] = *val;
    }
    *fresh = 0;
    if (n == 0)
        return 0;
    uint64_t total = sizeof(reg_vars);
    for (uint32_t i = 0; i < n; i++)
        total += k[i].len + v[i].len;
    uint64_t off = shm_alloc(&h->c, total, si + 1);
    if (off == 0)
        return shmreg__fail(SHMREG_EFULL, "registry heap full (%llu bytes of variables)",
                            (unsigned long long)total);
    reg_vars *b = reg_payload((shm_blk *)(h->c.seg.base + off));
    memset(b, 0, sizeof *b);
    b->magic = REG_VARS_MAGIC;
    b->n = n;
    char *p = b->data;
    for (uint32_t i = 0; i < n; i++) {
        b->klen[i] = (uint16_t)k[i].len;
        b->vlen[i] = (uint16_t)v[i].len;
        memcpy(p, k[i].ptr, k[i].len);
        p += k[i].len;
        if (v[i].len)
            memcpy(p, v[i].ptr, v[i].len);
        p += v[i].len;
    }
    *fresh = off;
    return 0;
}

static void vars_discard(shmreg *h, uint64_t off)
{
    shm_free(&h->c, off);
}

static const reg_block_ops vars_ops = {vars_build, vars_discard, reg_retire_owned};

/* Set (val) or unset (NULL) `key`: the arguments checked, then the set
 * rebuilt on the current version and swapped in, again on a lost race. */
static int vars_change(shmreg *h, const shmreg_id *id, shmreg_str key, const shmreg_str *val)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (id == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL session id");
    if ((rc = check_key(key)) != 0)
        return rc;
    if (val && (val->len > SHMREG_MAX_VAR_VALUE || (val->len && val->ptr == NULL)))
        return shmreg__fail(SHMREG_EINVAL, "variable value of %zu bytes (limit %u) or NULL bytes",
                            val->len, SHMREG_MAX_VAR_VALUE);
    uint32_t si;
    uint64_t st, now;
    shm_read_enter(&h->c);
    if ((rc = reg_find_own(h, id->bytes, &si, &st)) == 0) {
        vars_change_arg c = {key, val};
        rc = reg_change_field(h, si, &reg_slot(h, si)->vars, &vars_ops, &c, &now);
        if (rc == 0)
            reg_changed(h, si);
        if (rc == 0)
            reg_event_data(h, SHMREG_EV_VAR_CHANGED, id->bytes, val != NULL, key.ptr, key.len);
    }
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_session_var_set(shmreg *h, const shmreg_id *id, shmreg_str key, shmreg_str value)
{
    return vars_change(h, id, key, &value);
}

int shmreg_session_var_unset(shmreg *h, const shmreg_id *id, shmreg_str key)
{
    return vars_change(h, id, key, NULL);
}

int shmreg_session_var_get(shmreg *h, const shmreg_id *id, shmreg_str key, shmreg_str *value)
{
    uint32_t si, n;
    uint64_t st;
    int rc = reg_find_in_read(h, id, value, &si, &st);
    if (rc == 0)
        rc = check_key(key);
    shmreg_str k[SHMREG_MAX_VARS], v[SHMREG_MAX_VARS];
    if (rc == 0)
        rc = reg_vars_view(h, atomic_load(&reg_slot(h, si)->vars), &n, k, v);
    if (rc)
        return rc;
    for (uint32_t i = 0; i < n; i++)
        if (k[i].len == key.len && memcmp(k[i].ptr, key.ptr, key.len) == 0) {
            *value = v[i];
            return 0;
        }
    return shmreg__fail_copy(SHMREG_ENOENT, "no such variable: ", key.ptr, key.len);
}

int shmreg_session_var_next(shmreg *h, const shmreg_id *id, uint64_t *cursor, shmreg_str *key,
                            shmreg_str *value)
{
    uint32_t si, n;
    uint64_t st;
    int rc = reg_find_in_read(h, id, key, &si, &st);
    if (rc == 0 && (cursor == NULL || value == NULL))
        rc = shmreg__fail(SHMREG_EINVAL, "NULL cursor or value");
    if (rc)
        return rc;
    /* The cursor keeps the block it started on (offset << 5 | next index):
     * in one read section that block stays intact, so a walk sees one
     * version of the set even while a writer replaces it. */
    uint64_t off = *cursor ? *cursor >> 5 : atomic_load(&reg_slot(h, si)->vars);
    uint32_t i = (uint32_t)(*cursor & 31u);
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    if (*cursor && (b == NULL || b->aux != si + 1))
        return shmreg__fail_lazy(SHMREG_ENOENT, "no more variables", NULL);
    shmreg_str k[SHMREG_MAX_VARS], v[SHMREG_MAX_VARS];
    if ((rc = reg_vars_view(h, off, &n, k, v)) != 0)
        return rc;
    if (i >= n)
        return shmreg__fail_lazy(SHMREG_ENOENT, "no more variables", NULL);
    *key = k[i];
    *value = v[i];
    *cursor = off << 5 | (i + 1);
    return 0;
}
