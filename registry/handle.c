/*
 * handle.c — what every operation on a handle needs, below the modules
 * that use it: the fork check that opens each public function, taking an
 * engine lock with a registry error, and the accessors through which the
 * config module reaches the handle without seeing its layout.
 *
 * Fork detection costs no syscall: a pthread_atfork child handler bumps a
 * process-wide generation; a handle remembers the generation it was opened
 * in and refuses work (SHMREG_EFORK) when they differ.
 */
#include <pthread.h>

#include <sodium.h>

#include "reg.h"

int reg_engine_fail(int rc, const char *what)
{
    switch (rc) {
    case 0: return 0;
    case SHM_EINVAL: return shmreg__fail(SHMREG_EINVAL, "%s: invalid argument", what);
    case SHM_ENOENT: return shmreg__fail(SHMREG_ENOENT, "%s: not found", what);
    case SHM_EFULL: return shmreg__fail(SHMREG_EFULL, "%s is full", what);
    case SHM_EVERSION: return shmreg__fail(SHMREG_EVERSION, "%s: another layout", what);
    case SHM_EBUSY:
        return shmreg__fail(SHMREG_EBUSY, "%s held for over %llu s by a live process", what,
                            SHM_LOCK_WAIT_NS / 1000000000ull);
    case SHM_ECORRUPT: return shmreg__fail(SHMREG_ECORRUPT, "%s is corrupt", what);
    default: return shmreg__fail(SHMREG_ECORRUPT, "%s: engine error %d", what, rc);
    }
}

int reg_lock(shmreg *h, shm_lock *l, const char *what)
{
    int rc = shm_lock_take(&h->c, l);
    return rc > 0 ? 0 : reg_engine_fail(rc, what); /* 1: taken over from a dead holder */
}

/* ------------------------------------------------------------ letting go of blocks */

void reg_retire_used(shmreg *h, uint64_t off)
{
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    uint64_t st = b ? atomic_load(&b->state) : 0;
    if (b && SHM_KIND(st) == SHM_BLK_USED)
        shm_retire(&h->c, off, st);
}

void reg_drop_ref(shmreg *h, _Atomic uint64_t *ref, uint64_t off)
{
    shm_blk *b = shm_blk_at(&h->c.seg, off);
    if (b == NULL)
        return;
    uint64_t st = atomic_load(&b->state);
    shm_intent_set(&h->c, off, st, ref);
    if (atomic_compare_exchange_strong(ref, &off, 0) && SHM_KIND(st) == SHM_BLK_USED)
        shm_retire(&h->c, shm_off(&h->c.seg, b), st);
    shm_intent_clear(&h->c);
}

/* ------------------------------------------------------------ keyed hash */

uint64_t reg_key_hash(shmreg *h, shmreg_str a, shmreg_str b)
{
    /* Length-prefixed, so ("ab","c") and ("a","bc") hash apart. */
    unsigned char buf[2 * SHMREG_MAX_STR + 8], out[crypto_shorthash_BYTES];
    uint32_t l1 = (uint32_t)a.len, l2 = (uint32_t)b.len;
    memcpy(buf, &l1, 4);
    memcpy(buf + 4, a.ptr, l1);
    memcpy(buf + 4 + l1, &l2, 4);
    if (l2)
        memcpy(buf + 8 + l1, b.ptr, l2);
    crypto_shorthash(out, buf, 8ull + l1 + l2, h->key);
    uint64_t x;
    memcpy(&x, out, 8);
    return x;
}

/* ------------------------------------------------------------ open handles */

/* The handles this process has open, so that closing one twice is caught
 * (SHMREG_EINVAL) instead of freeing twice. Only open and close touch it:
 * other calls on a closed handle are undefined (shmreg.h), as checking
 * would cost every call a lookup. */
static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static shmreg *open_list;

void reg_open_add(shmreg *h)
{
    pthread_mutex_lock(&open_mu);
    h->next_open = open_list;
    open_list = h;
    pthread_mutex_unlock(&open_mu);
}

int reg_open_remove(shmreg *h)
{
    pthread_mutex_lock(&open_mu);
    shmreg **pp = &open_list;
    while (*pp && *pp != h)
        pp = &(*pp)->next_open;
    int found = *pp != NULL;
    if (found)
        *pp = h->next_open;
    pthread_mutex_unlock(&open_mu);
    return found;
}

/* ------------------------------------------------------------ fork */

static _Atomic unsigned fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void on_fork_child(void)
{
    atomic_fetch_add(&fork_generation, 1);
    /* Another thread may have held it at the fork: the child's copy of
     * the list is whole after every single store, its mutex may not be. */
    pthread_mutex_init(&open_mu, NULL);
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, on_fork_child);
}

void reg_fork_watch(shmreg *h)
{
    pthread_once(&atfork_once, install_atfork);
    h->fork_gen = atomic_load(&fork_generation);
}

int shmreg__forked(const shmreg *h)
{
    return h->fork_gen != atomic_load_explicit(&fork_generation, memory_order_relaxed);
}

int shmreg__usable(const shmreg *h)
{
    if (h == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL handle");
    if (shmreg__forked(h))
        return shmreg__fail(SHMREG_EFORK, "handle was opened by another process (fork): open a new one");
    return 0;
}

/* ------------------------------------------------------------ hooks */

_Atomic uint64_t *shmreg__config_gen_word(shmreg *h) { return &h->shared->config_gen; }
uint32_t shmreg__max_handles(const shmreg *h) { return h->c.seg.max_handles; }
mode_t shmreg__file_mode(const shmreg *h) { return h->file_mode; }
gid_t shmreg__file_gid(const shmreg *h) { return h->gid; }
void **shmreg__config_state(shmreg *h) { return &h->config_state; }
const char *shmreg_path(const shmreg *h) { return h ? h->path : NULL; }

void shmreg__config_on_close(shmreg *h, void (*fn)(shmreg *h)) { h->config_close = fn; }

uint64_t shmreg_config_gen(shmreg *h)
{
    return h ? atomic_load_explicit(&h->shared->config_gen, memory_order_acquire) : 0;
}

