/*
 * config_env.c — where the configs live: one LMDB environment per process
 * and directory, the settings file that makes every process open it alike,
 * and each handle's config state (its view slots and read transactions).
 * Views (config_view.c) and writes (config_write.c) reach LMDB only through
 * the state this file hands out (reg_cfg_state_get).
 *
 * LMDB across processes, and the choices made:
 *  - One MDB_env per process (per environment), opened lazily by the first
 *    config call of a handle, shared by all handles of the process through
 *    a refcounted table. LMDB forbids opening an environment twice in one
 *    process: its reader-liveness locks are POSIX fcntl locks, which the
 *    close() of any descriptor of the lock file would drop, after which
 *    other processes' mdb_reader_check() would take our live readers for
 *    dead. For the same reason this module never opens and closes an LMDB
 *    file while the process has the environment open.
 *  - After fork, a child never touches the parent's MDB_env (LMDB's rule):
 *    table entries are tagged with the pid that opened them, and
 *    config_close() in a child only frees memory.
 *  - MDB_NOTLS: read transactions belong to views, not threads. A handle
 *    may move between threads and hold several views, and several handles
 *    of one process share the env; without NOTLS a thread could have only
 *    one read transaction per env. Each handle has SHMREG_CONFIG_MAX_VIEWS
 *    view slots; a slot's transaction is created once and then only
 *    mdb_txn_reset()/mdb_txn_renew()ed, which allocates nothing and keeps
 *    the reader slot. Hence maxreaders = max_handles * MAX_VIEWS + 8.
 *  - Map size: explicit, identical in every process. It is chosen once
 *    (shmreg_config_setup(), or the default at the first config call) and
 *    recorded with the environment's directory in `config.settings` in the
 *    registry directory; every process reads it from there. LMDB's own copy
 *    in the meta page is not used because a process that opens the env
 *    before the first commit, or one that sets a different size, would
 *    disagree with it silently. A full map is SHMREG_EFULL, nothing written.
 *  - Durability: statfs() on the environment's directory. On tmpfs/ramfs
 *    (the default, under /dev/shm) MDB_NOSYNC|MDB_NOMETASYNC: fsync is
 *    meaningless there, and a killed process cannot lose a committed write
 *    anyway (LMDB writes data pages before the meta page, and the page cache
 *    outlives the process); what they would protect against, an OS crash,
 *    wipes tmpfs entirely. On any other filesystem (a directory on disk
 *    given to shmreg_config_setup(), for configs that survive reboot)
 *    LMDB's full durability: sync at every commit.
 *  - Crashed readers leave their reader slots behind: mdb_reader_check() at
 *    every env open, and again when a begin fails with MDB_READERS_FULL.
 *    A writer killed mid-transaction leaves LMDB's robust writer mutex,
 *    which the next writer recovers; its uncommitted pages are never seen.
 *  - No MDB_WRITEMAP: readers' pages are then never written in place, and
 *    a stray write in the process cannot scribble on the database.
 *
 * Files are created by this file before LMDB opens them, so they get the
 * registry's mode and group exactly and are checked to be ours and not
 * symlinks (LMDB opens without O_NOFOLLOW).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "config_internal.h"

#define SETTINGS_FILE "config.settings"
#define SETTINGS_MAGIC "shmreg-config-settings 1\n"
#define MAXREADERS_MARGIN 8u

/* ---------------------------------------------------------------- process-wide envs */

static pthread_mutex_t env_mu = PTHREAD_MUTEX_INITIALIZER;
static struct env_entry *env_list;

int reg_cfg_mdb_err(int mrc, const char *what)
{
    int code;
    switch (mrc) {
    case MDB_MAP_FULL: case MDB_TXN_FULL: case MDB_READERS_FULL:
    case MDB_DBS_FULL: case MDB_CURSOR_FULL: case MDB_PAGE_FULL:
        code = SHMREG_EFULL;
        break;
    case MDB_CORRUPTED: case MDB_PAGE_NOTFOUND: case MDB_INVALID:
    case MDB_PANIC: case MDB_INCOMPATIBLE: case MDB_BAD_DBI:
        code = SHMREG_ECORRUPT;
        break;
    case MDB_VERSION_MISMATCH:
        code = SHMREG_EVERSION;
        break;
    case ENOMEM:
        code = SHMREG_ENOMEM;
        break;
    case EACCES: case EPERM:
        code = SHMREG_EPERM;
        break;
    default:
        code = SHMREG_ESYS;
    }
    return shmreg__fail(code, "%s: %s", what, mdb_strerror(mrc));
}

static int sys_err(const char *what, const char *path)
{
    int e = errno;
    int code = (e == ELOOP || e == EACCES || e == EPERM) ? SHMREG_EPERM
             : e == ENOMEM ? SHMREG_ENOMEM : SHMREG_ESYS;
    return shmreg__fail(code, "%s %s: %s", what, path, strerror(e));
}

static mode_t dir_mode(mode_t fmode)
{
    return fmode | ((fmode & 0444) >> 2);   /* 0600 -> 0700, 0660 -> 0770 */
}

static int check_owned(const char *path, const struct stat *st, int want_dir)
{
    if (S_ISLNK(st->st_mode))
        return shmreg__fail(SHMREG_EPERM, "%s is a symlink", path);
    if (want_dir ? !S_ISDIR(st->st_mode) : !S_ISREG(st->st_mode))
        return shmreg__fail(SHMREG_EPERM, "%s is not a %s", path,
                            want_dir ? "directory" : "regular file");
    if (st->st_uid != geteuid())
        return shmreg__fail(SHMREG_EPERM, "%s is owned by uid %u, not %u", path,
                            (unsigned)st->st_uid, (unsigned)geteuid());
    return 0;
}

static int ensure_dir(const char *path, mode_t fmode, gid_t gid)
{
    struct stat st;
    if (mkdir(path, dir_mode(fmode)) == 0) {
        if (chmod(path, dir_mode(fmode)) != 0 ||
            (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0))
            return sys_err("chmod/chown", path);
    } else if (errno != EEXIST) {
        return sys_err("mkdir", path);
    }
    if (lstat(path, &st) != 0)
        return sys_err("lstat", path);
    return check_owned(path, &st, 1);
}

/* Create an LMDB file ourselves (exact mode and group, O_NOFOLLOW) or
 * check the existing one. Only called while this process does not have
 * the environment open (closing a descriptor of lock.mdb would drop
 * LMDB's fcntl locks). LMDB takes an empty data.mdb for a new database. */
static int ensure_file(const char *dir, const char *name, mode_t fmode, gid_t gid)
{
    char path[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return shmreg__fail(SHMREG_EINVAL, "path too long: %s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, fmode);
    if (fd >= 0) {
        int bad = fchmod(fd, fmode) != 0 ||
                  (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0);
        close(fd);
        return bad ? sys_err("chmod/chown", path) : 0;
    }
    if (errno != EEXIST)
        return sys_err("create", path);
    if (lstat(path, &st) != 0)
        return sys_err("lstat", path);
    return check_owned(path, &st, 0);
}

/* Open the named databases; create them only when absent, so that workers
 * opening the env do not take LMDB's writer lock. */
static int env_open_dbis(struct env_entry *ee)
{
    MDB_txn *txn;
    int mrc = mdb_txn_begin(ee->env, NULL, MDB_RDONLY, &txn);
    if (mrc == MDB_READERS_FULL) {
        int dead;
        mdb_reader_check(ee->env, &dead);
        mrc = mdb_txn_begin(ee->env, NULL, MDB_RDONLY, &txn);
    }
    if (mrc)
        return reg_cfg_mdb_err(mrc, "LMDB read transaction");
    if (!(mrc = mdb_dbi_open(txn, "configs", 0, &ee->dbi_cfg)) &&
        !(mrc = mdb_dbi_open(txn, "meta", 0, &ee->dbi_meta)))
        return (mrc = mdb_txn_commit(txn)) ? reg_cfg_mdb_err(mrc, "LMDB open databases") : 0;
    mdb_txn_abort(txn);
    if (mrc != MDB_NOTFOUND)
        return reg_cfg_mdb_err(mrc, "LMDB open databases");
    if ((mrc = mdb_txn_begin(ee->env, NULL, 0, &txn)))
        return reg_cfg_mdb_err(mrc, "LMDB write transaction");
    if ((mrc = mdb_dbi_open(txn, "configs", MDB_CREATE, &ee->dbi_cfg)) ||
        (mrc = mdb_dbi_open(txn, "meta", MDB_CREATE, &ee->dbi_meta))) {
        mdb_txn_abort(txn);
        return reg_cfg_mdb_err(mrc, "LMDB create databases");
    }
    return (mrc = mdb_txn_commit(txn)) ? reg_cfg_mdb_err(mrc, "LMDB create databases") : 0;
}

/* Find or open the process's environment in `dir`. */
static int env_acquire(shmreg *h, const char *dir, uint64_t map_bytes,
                       struct env_entry **out)
{
    struct stat st;
    mode_t fmode = shmreg__file_mode(h);
    gid_t gid = shmreg__file_gid(h);
    int rc = ensure_dir(dir, fmode, gid);
    if (rc)
        return rc;
    if (stat(dir, &st) != 0)
        return sys_err("stat", dir);

    pthread_mutex_lock(&env_mu);
    pid_t me = getpid();
    for (struct env_entry *e = env_list; e; e = e->next)
        if (e->pid == me && e->dev == st.st_dev && e->ino == st.st_ino && e->refs) {
            e->refs++;
            pthread_mutex_unlock(&env_mu);
            *out = e;
            return 0;
        }

    struct env_entry *ee = calloc(1, sizeof *ee);
    struct statfs sf;
    int mrc = 0;
    if (!ee) {
        rc = shmreg__fail(SHMREG_ENOMEM, "config: out of memory");
        goto out;
    }
    if ((rc = ensure_file(dir, "data.mdb", fmode, gid)) ||
        (rc = ensure_file(dir, "lock.mdb", fmode, gid)))
        goto out;
    if (statfs(dir, &sf) != 0) {
        rc = sys_err("statfs", dir);
        goto out;
    }
    int volatile_fs = sf.f_type == TMPFS_MAGIC || sf.f_type == RAMFS_MAGIC;
    unsigned flags = MDB_NOTLS | (volatile_fs ? MDB_NOSYNC | MDB_NOMETASYNC : 0);
    unsigned readers = shmreg__max_handles(h) * SHMREG_CONFIG_MAX_VIEWS +
                       MAXREADERS_MARGIN;
    if ((mrc = mdb_env_create(&ee->env)) ||
        (mrc = mdb_env_set_maxreaders(ee->env, readers)) ||
        (mrc = mdb_env_set_maxdbs(ee->env, 2)) ||
        (mrc = mdb_env_set_mapsize(ee->env, (size_t)map_bytes)) ||
        (mrc = mdb_env_open(ee->env, dir, flags, fmode))) {
        rc = reg_cfg_mdb_err(mrc, "LMDB open");
        goto out;
    }
    int dead = 0;
    mdb_reader_check(ee->env, &dead);   /* slots of crashed processes */
    if ((rc = env_open_dbis(ee)))
        goto out;
    ee->pid = me;
    ee->dev = st.st_dev;
    ee->ino = st.st_ino;
    ee->refs = 1;
    ee->next = env_list;
    env_list = ee;
out:
    if (rc && ee) {
        if (ee->env)
            mdb_env_close(ee->env);
        free(ee);
        ee = NULL;
    }
    pthread_mutex_unlock(&env_mu);
    *out = ee;
    return rc;
}

static void env_release(struct env_entry *ee)
{
    pthread_mutex_lock(&env_mu);
    if (ee->pid == getpid() && ee->refs && --ee->refs == 0) {
        for (struct env_entry **pp = &env_list; *pp; pp = &(*pp)->next)
            if (*pp == ee) {
                *pp = ee->next;
                break;
            }
        mdb_env_close(ee->env);
        free(ee);
    }
    pthread_mutex_unlock(&env_mu);
}

/* ---------------------------------------------------------------- settings file */

static int settings_parse(const char *path, const char *t, size_t n,
                          struct settings *s)
{
    size_t m = strlen(SETTINGS_MAGIC);
    const char *p = t + m, *end = t + n;
    char *e;
    if (n < m || memcmp(t, SETTINGS_MAGIC, m) || end - p < 11 ||
        memcmp(p, "map_bytes ", 10) || p[10] < '1' || p[10] > '9')
        goto bad;
    errno = 0;
    unsigned long long v = strtoull(p + 10, &e, 10);
    if (errno || e >= end || *e != '\n')
        goto bad;
    s->map_bytes = v;
    s->dir[0] = 0;
    p = e + 1;
    if (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t dl = nl ? (size_t)(nl - p) - 4 : 0;
        if (!nl || nl + 1 != end || (size_t)(nl - p) < 5 || memcmp(p, "dir /", 5) ||
            dl >= sizeof s->dir || memchr(p, 0, (size_t)(nl - p)))
            goto bad;
        memcpy(s->dir, p + 4, dl);
        s->dir[dl] = 0;
    }
    if (s->map_bytes < SHMREG_CONFIG_MAP_MIN || s->map_bytes > SHMREG_CONFIG_MAP_MAX)
        goto bad;
    return 0;
bad:
    return shmreg__fail(SHMREG_ECORRUPT, "%s is not a shmreg config settings "
                        "file", path);
}

static int settings_read(const char *path, struct settings *s)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? SHMREG_ENOENT : sys_err("open", path);
    char buf[PATH_MAX + 128];
    struct stat st;
    ssize_t n = -1;
    int rc = 0;
    if (fstat(fd, &st) != 0)
        rc = sys_err("fstat", path);
    else if (!(rc = check_owned(path, &st, 0)))
        n = read(fd, buf, sizeof buf);
    close(fd);
    if (rc)
        return rc;
    if (n < 0)
        return sys_err("read", path);
    return settings_parse(path, buf, (size_t)n, s);
}

/* Read the recorded settings or record `want`. link() makes recording
 * atomic and first-wins: a racing process reads the winner's file. */
static int settings_get(shmreg *h, const struct settings *want, struct settings *out)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    const char *reg = shmreg_path(h);
    static _Atomic unsigned seq;
    if (snprintf(path, sizeof path, "%s/" SETTINGS_FILE, reg) >= (int)sizeof path ||
        snprintf(tmp, sizeof tmp, "%s/" SETTINGS_FILE ".%d.%u", reg, (int)getpid(),
                 atomic_fetch_add(&seq, 1)) >= (int)sizeof tmp)
        return shmreg__fail(SHMREG_EINVAL, "registry path too long");
    for (int tries = 0; tries < 5; tries++) {
        int rc = settings_read(path, out);
        if (rc != SHMREG_ENOENT)
            return rc;
        char text[PATH_MAX + 128];
        int len = snprintf(text, sizeof text, SETTINGS_MAGIC "map_bytes %llu\n",
                           (unsigned long long)want->map_bytes);
        if (want->dir[0])
            len += snprintf(text + len, sizeof text - (size_t)len, "dir %s\n",
                            want->dir);
        mode_t fmode = shmreg__file_mode(h);
        gid_t gid = shmreg__file_gid(h);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      fmode);
        if (fd < 0)
            return sys_err("create", tmp);
        int bad = fchmod(fd, fmode) != 0 ||
                  (gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0) ||
                  write(fd, text, (size_t)len) != len || fsync(fd) != 0;
        close(fd);
        if (bad) {
            rc = sys_err("write", tmp);
            unlink(tmp);
            return rc;
        }
        int linked = link(tmp, path);
        int e = errno;
        unlink(tmp);
        if (linked == 0) {
            *out = *want;
            return 0;
        }
        if (e != EEXIST) {
            errno = e;
            return sys_err("link", path);
        }
    }
    return shmreg__fail(SHMREG_ESYS, "%s keeps appearing and vanishing", path);
}

/* ---------------------------------------------------------------- per-handle state */

/* States a forked child inherited and closed: the parent's LMDB
 * transactions hang off them and must not be touched here, so they are
 * kept (reachable, not leaked) for the life of the child. */
static struct cfg_state *parked_states;

void reg_cfg_gen_mirror(_Atomic uint64_t *w, uint64_t g)
{
    uint64_t cur = atomic_load_explicit(w, memory_order_acquire);
    while (cur < g && !atomic_compare_exchange_weak_explicit(
                          w, &cur, g, memory_order_release, memory_order_acquire))
        ;
}

/* LMDB 0.9 copies the meta page of its snapshot after publishing its
 * reader slot; a writer two commits ahead may be rewriting that very
 * meta page at the same moment, and the reader then starts from a newer
 * (or mixed) root than its transaction ID says (libmdbx re-checks for this
 * race, ITS#7970; LMDB 0.9 does not). Every config write stores its own
 * transaction ID, so a snapshot showing an ID beyond its own is such a
 * copy: reset and take the snapshot again. Seen in the 4-reader test as a
 * view older than the previous one. */
static int snapshot_sane(shmreg_config_view *v)
{
    MDB_val k = { 3, "txn" }, d;
    if (mdb_get(v->txn, v->st->ee->dbi_meta, &k, &d) != 0 || d.mv_size != 8)
        return 1; /* no write yet (or an older environment): nothing to compare */
    return ld64(d.mv_data) <= (uint64_t)mdb_txn_id(v->txn);
}

static int slot_begin_once(shmreg_config_view *v);

int reg_cfg_slot_begin(shmreg_config_view *v)
{
    for (int tries = 0;; tries++) {
        int rc = slot_begin_once(v);
        if (rc || snapshot_sane(v) || tries == 100)
            return rc;
        mdb_txn_reset(v->txn);
    }
}

static int slot_begin_once(shmreg_config_view *v)
{
    MDB_env *env = v->st->ee->env;
    if (v->txn) {
        if (mdb_txn_renew(v->txn) == 0)
            return 0;
        /* e.g. MDB_BAD_RSLOT: our reader slot was taken from us */
        mdb_txn_abort(v->txn);
        v->txn = NULL;
    }
    for (int tries = 0;; tries++) {
        int mrc = mdb_txn_begin(env, NULL, MDB_RDONLY, &v->txn);
        if (mrc == 0)
            return 0;
        v->txn = NULL;
        if (mrc != MDB_READERS_FULL || tries > 0)
            return reg_cfg_mdb_err(mrc, "LMDB read transaction");
        int dead = 0;
        mdb_reader_check(env, &dead);
    }
}

void reg_cfg_slot_end(shmreg_config_view *v)
{
    mdb_txn_reset(v->txn);
    v->busy = 0;
}

shmreg_config_view *reg_cfg_slot_take(struct cfg_state *st)
{
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        if (!st->slot[i].busy) {
            st->slot[i].busy = 1;
            return &st->slot[i];
        }
    return NULL;
}

int reg_cfg_meta_gen(struct cfg_state *st, MDB_txn *txn, uint64_t *gen)
{
    MDB_val k = { 3, "gen" }, d;
    int mrc = mdb_get(txn, st->ee->dbi_meta, &k, &d);
    if (mrc == MDB_NOTFOUND) {
        *gen = 0;
        return 0;
    }
    if (mrc)
        return reg_cfg_mdb_err(mrc, "LMDB read generation");
    if (d.mv_size != 8)
        return shmreg__fail(SHMREG_ECORRUPT, "config generation record has %zu "
                            "bytes", d.mv_size);
    *gen = ld64(d.mv_data);
    return 0;
}

static int settings_from(const shmreg_config_options *opt, struct settings *s)
{
    uint64_t m = opt && opt->map_bytes ? opt->map_bytes : SHMREG_CONFIG_MAP_DEFAULT;
    if (m < SHMREG_CONFIG_MAP_MIN || m > SHMREG_CONFIG_MAP_MAX)
        return shmreg__fail(SHMREG_EINVAL, "map_bytes must be %llu..%llu",
                            (unsigned long long)SHMREG_CONFIG_MAP_MIN,
                            (unsigned long long)SHMREG_CONFIG_MAP_MAX);
    s->map_bytes = (m + 4095) & ~(uint64_t)4095;
    s->dir[0] = 0;
    if (opt && opt->dir) {
        size_t n = strlen(opt->dir);
        if (opt->dir[0] != '/' || n >= sizeof s->dir - 16 || strchr(opt->dir, '\n'))
            return shmreg__fail(SHMREG_EINVAL, "config dir must be an absolute "
                                "path shorter than %zu bytes", sizeof s->dir - 16);
        memcpy(s->dir, opt->dir, n + 1);
        while (n > 1 && s->dir[n - 1] == '/')   /* one spelling per directory */
            s->dir[--n] = 0;
    }
    return 0;
}

static int settings_same(const struct settings *a, const struct settings *b)
{
    if (a->map_bytes != b->map_bytes)
        return shmreg__fail(SHMREG_EEXIST, "configs already set up with "
                            "map_bytes %llu (asked %llu)",
                            (unsigned long long)a->map_bytes,
                            (unsigned long long)b->map_bytes);
    if (strcmp(a->dir, b->dir))
        return shmreg__fail(SHMREG_EEXIST, "configs already set up in %s "
                            "(asked %s)", a->dir[0] ? a->dir : "the registry",
                            b->dir[0] ? b->dir : "the registry");
    return 0;
}

static void config_close(shmreg *h);

int reg_cfg_state_get(shmreg *h, const struct settings *want, struct cfg_state **out)
{
    void **sp = shmreg__config_state(h);
    struct cfg_state *st = *sp;
    if (st) {
        *out = st;
        return want ? settings_same(&st->set, want) : 0;
    }
    struct settings def;
    int rc;
    if (!want) {
        if ((rc = settings_from(NULL, &def)))
            return rc;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return shmreg__fail(SHMREG_ENOMEM, "config: out of memory");
    if ((rc = settings_get(h, want ? want : &def, &st->set)) ||
        (want && (rc = settings_same(&st->set, want)))) {
        free(st);
        return rc;
    }
    char dir[PATH_MAX];
    if (st->set.dir[0])
        snprintf(dir, sizeof dir, "%s", st->set.dir);
    else if (snprintf(dir, sizeof dir, "%s/config", shmreg_path(h)) >= (int)sizeof dir) {
        free(st);
        return shmreg__fail(SHMREG_EINVAL, "registry path too long");
    }
    if ((rc = env_acquire(h, dir, st->set.map_bytes, &st->ee))) {
        free(st);
        return rc;
    }
    st->h = h;
    st->pid = getpid();
    st->word = shmreg__config_gen_word(h);
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        st->slot[i].st = st;
    *sp = st;
    shmreg__config_on_close(h, config_close);

    /* Catch the mirror up with LMDB: a writer may have died between its
     * commit and its mirror store, or the registry may be new while the
     * configs (on disk) are not. */
    shmreg_config_view *v = reg_cfg_slot_take(st);
    uint64_t g = 0;
    if (!(rc = reg_cfg_slot_begin(v))) {
        rc = reg_cfg_meta_gen(st, v->txn, &g);
        reg_cfg_slot_end(v);
    }
    v->busy = 0;
    if (rc == 0)
        reg_cfg_gen_mirror(st->word, g);
    *out = st;
    return rc;
}

static void config_close(shmreg *h)
{
    void **sp = shmreg__config_state(h);
    struct cfg_state *st = *sp;
    if (!st)
        return;
    *sp = NULL;
    /* In a forked child the transactions and the env are the parent's:
     * LMDB must not be called on them here, nor their memory freed
     * piecemeal; the state is parked instead. */
    if (shmreg__forked(h) || st->pid != getpid()) {
        st->parked = parked_states;
        parked_states = st;
        return;
    }
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        if (st->slot[i].txn)
            mdb_txn_abort(st->slot[i].txn);   /* frees the reader slot */
    env_release(st->ee);
    free(st);
}

int shmreg_config_setup(shmreg *h, const shmreg_config_options *opt)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    struct settings want;
    struct cfg_state *st;
    if ((rc = settings_from(opt, &want)))
        return rc;
    return reg_cfg_state_get(h, &want, &st);
}

int shmreg_config_changed(shmreg *h, uint64_t since, int *changed)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (!changed)
        return shmreg__fail(SHMREG_EINVAL, "changed is NULL");
    *changed = atomic_load_explicit(shmreg__config_gen_word(h), memory_order_acquire) > since;
    return 0;
}
