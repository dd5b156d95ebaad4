/*
 * shmreg-sync-lmdb.c — shmreg-sync's LMDB sink: the sync directory in the
 * format shmreg_sync.h documents, written one transaction per batch.
 *
 * Why LMDB: a transaction is atomic and crash-proof (copy-on-write pages,
 * a meta page flipped last), so a daemon SIGKILLed at any instruction
 * leaves the last committed state, and the ring position committed with
 * the data always describes exactly that state. With MDB_NOSYNC a commit
 * costs no fsync; sync() then flushes at the pace the daemon chooses.
 *
 * MDB_WRITEMAP: dirty pages are written in the map, not copied and then
 * pwrite()n at each commit; with the records of 100,000 calls changing
 * that halves the daemon's work (shmreg-bench --sync). It is as safe
 * against a killed process (a commit still flips the meta page last, and
 * pages of an unfinished transaction are free pages of the committed
 * state); the only reader of the directory, restore, is another process.
 *
 * One writer per directory: a lock file beside data.mdb is flock()ed for
 * the daemon's life (released by the kernel when it dies, SIGKILL too)
 * and holds its pid, so a second daemon is refused by name. A directory
 * that is not empty and holds no data.mdb, or whose LMDB has no format
 * marker, is someone else's and is refused untouched.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmreg-sync.h"

typedef struct lsink {
    sync_sink s;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, db[2];
    int lockfd;
    char dir[512];
} lsink;

static int lfail(lsink *l, int mrc, const char *what)
{
    snprintf(l->s.err, sizeof l->s.err, "%s: %s", what, mdb_strerror(mrc));
    if (mrc == MDB_MAP_FULL) {
        snprintf(l->s.err, sizeof l->s.err,
                 "sync directory %s is full (MDB_MAP_FULL while %s): raise --map-size", l->dir, what);
        return SINK_FULL;
    }
    return SINK_ERR;
}

static int l_begin(sync_sink *s)
{
    lsink *l = (lsink *)s;
    int mrc = mdb_txn_begin(l->env, NULL, 0, &l->txn);
    if (mrc) {
        l->txn = NULL;
        if (mrc == MDB_MAP_RESIZED && mdb_env_set_mapsize(l->env, 0) == 0 &&
            mdb_txn_begin(l->env, NULL, 0, &l->txn) == 0)
            return 0;
        return lfail(l, mrc, "beginning a transaction");
    }
    return 0;
}

static int l_put(sync_sink *s, int kind, const shmreg_id *id, const void *rec, size_t len,
                 const sync_meta *meta)
{
    (void)meta; /* the record says it all for restore */
    lsink *l = (lsink *)s;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes}, v = {len, (void *)rec};
    int mrc = mdb_put(l->txn, l->db[kind], &k, &v, 0);
    return mrc ? lfail(l, mrc, "storing a record") : 0;
}

static int l_del(sync_sink *s, int kind, const shmreg_id *id)
{
    lsink *l = (lsink *)s;
    MDB_val k = {SHMREG_ID_BYTES, (void *)id->bytes};
    int mrc = mdb_del(l->txn, l->db[kind], &k, NULL);
    return mrc && mrc != MDB_NOTFOUND ? lfail(l, mrc, "deleting a record") : 0;
}

static int l_prune(sync_sink *s, int kind, int (*keep)(void *, const shmreg_id *), void *arg,
                   uint64_t *removed)
{
    lsink *l = (lsink *)s;
    MDB_cursor *c;
    int mrc = mdb_cursor_open(l->txn, l->db[kind], &c);
    if (mrc)
        return lfail(l, mrc, "opening a cursor");
    MDB_val k, v;
    *removed = 0;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0; mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        shmreg_id id;
        if (k.mv_size == SHMREG_ID_BYTES) {
            memcpy(id.bytes, k.mv_data, SHMREG_ID_BYTES);
            if (keep(arg, &id))
                continue;
        }
        if ((mrc = mdb_cursor_del(c, 0)) != 0)
            break;
        (*removed)++;
    }
    mdb_cursor_close(c);
    return mrc && mrc != MDB_NOTFOUND ? lfail(l, mrc, "pruning records") : 0;
}

static int put_u64(lsink *l, const char *key, uint64_t x)
{
    MDB_val k = {strlen(key), (void *)key}, v = {8, &x};
    return mdb_put(l->txn, l->meta, &k, &v, 0);
}

static int l_commit(sync_sink *s, uint64_t pos, uint64_t now_ns)
{
    lsink *l = (lsink *)s;
    int mrc = put_u64(l, "ring_pos", pos);
    if (!mrc)
        mrc = put_u64(l, "commit_ns", now_ns);
    if (mrc) {
        mdb_txn_abort(l->txn);
        l->txn = NULL;
        return lfail(l, mrc, "storing the ring position");
    }
    mrc = mdb_txn_commit(l->txn);
    l->txn = NULL;
    return mrc ? lfail(l, mrc, "committing") : 0;
}

static void l_abort(sync_sink *s)
{
    lsink *l = (lsink *)s;
    if (l->txn)
        mdb_txn_abort(l->txn);
    l->txn = NULL;
}

static int l_sync(sync_sink *s)
{
    lsink *l = (lsink *)s;
    int mrc = mdb_env_sync(l->env, 1);
    return mrc ? lfail(l, mrc, "fsync") : 0;
}

static int l_stored(sync_sink *s, uint64_t *pos, uint64_t *commit_ns)
{
    lsink *l = (lsink *)s;
    MDB_txn *t;
    *pos = *commit_ns = 0;
    int mrc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &t);
    if (mrc)
        return lfail(l, mrc, "reading the position");
    MDB_val k = {8, "ring_pos"}, v;
    if (mdb_get(t, l->meta, &k, &v) == 0 && v.mv_size == 8)
        memcpy(pos, v.mv_data, 8);
    k = (MDB_val){9, "commit_ns"};
    if (mdb_get(t, l->meta, &k, &v) == 0 && v.mv_size == 8)
        memcpy(commit_ns, v.mv_data, 8);
    mdb_txn_abort(t);
    return 0;
}

static void l_close(sync_sink *s)
{
    lsink *l = (lsink *)s;
    l_abort(s);
    if (l->env)
        mdb_env_close(l->env);
    if (l->lockfd >= 0) {
        if (ftruncate(l->lockfd, 0) != 0) {
            /* the lock goes with the descriptor either way */
        }
        close(l->lockfd);
    }
    free(l);
}

/* Empty but for our lock file? (A fresh directory we may make ours.) */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    struct dirent *e;
    int empty = 1;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, SHMREG_SYNC_LOCKFILE))
            empty = 0;
    closedir(d);
    return empty;
}

sync_sink *sync_lmdb_open(const char *dir, uint64_t map_bytes, int fsync_mode, char *err, size_t errlen)
{
    lsink *l = calloc(1, sizeof *l);
    if (l == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    l->lockfd = -1;
    snprintf(l->dir, sizeof l->dir, "%s", dir);
    struct stat st;
    char path[4200];
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || mkdir(dir, 0700) != 0) {
            snprintf(err, errlen, "cannot create sync directory %s: %s", dir, strerror(errno));
            goto fail;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fresh = stat(path, &st) != 0;
    if (fresh && dir_empty(dir) != 1) {
        snprintf(err, errlen, "%s is not a sync directory: it holds other files and no data.mdb "
                 "(refused, nothing touched)", dir);
        goto fail;
    }
    snprintf(path, sizeof path, "%s/%s", dir, SHMREG_SYNC_LOCKFILE);
    l->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (l->lockfd < 0) {
        snprintf(err, errlen, "cannot open lock file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(l->lockfd, LOCK_EX | LOCK_NB) != 0) {
        char buf[32] = {0};
        ssize_t n = pread(l->lockfd, buf, sizeof buf - 1, 0);
        snprintf(err, errlen, "sync directory %s is in use by shmreg-sync pid %s (one daemon per directory)",
                 dir, n > 0 ? buf : "?");
        char *nl = strchr(err, '\n');
        if (nl)
            *nl = '\0';
        goto fail;
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(l->lockfd, 0) != 0 || pwrite(l->lockfd, pid, (size_t)n, 0) != n) {
        snprintf(err, errlen, "cannot write lock file %s: %s", path, strerror(errno));
        goto fail;
    }
    int mrc = mdb_env_create(&l->env);
    if (!mrc)
        mrc = mdb_env_set_maxdbs(l->env, 4);
    if (!mrc)
        mrc = mdb_env_set_mapsize(l->env, map_bytes);
    if (!mrc)
        mrc = mdb_env_open(l->env, dir, MDB_WRITEMAP | (fsync_mode == SINK_SYNC_EACH ? 0 : MDB_NOSYNC), 0600);
    if (mrc) {
        snprintf(err, errlen, "cannot open sync directory %s: %s%s", dir, mdb_strerror(mrc),
                 mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH ? " (not an LMDB environment, or damaged)" : "");
        goto fail;
    }
    MDB_txn *t;
    if ((mrc = mdb_txn_begin(l->env, NULL, 0, &t)) != 0) {
        snprintf(err, errlen, "cannot write sync directory %s: %s", dir, mdb_strerror(mrc));
        goto fail;
    }
    MDB_dbi main;
    MDB_stat ms;
    mrc = mdb_dbi_open(t, NULL, 0, &main);
    if (!mrc)
        mrc = mdb_stat(t, main, &ms);
    int empty = mrc == 0 && ms.ms_entries == 0;
    if (mrc == 0)
        mrc = mdb_dbi_open(t, SHMREG_SYNC_DB_META, empty ? MDB_CREATE : 0, &l->meta);
    MDB_val k = {6, "format"}, v;
    if (mrc == 0 && empty) {
        v = (MDB_val){strlen(SHMREG_SYNC_FORMAT), SHMREG_SYNC_FORMAT};
        mrc = mdb_put(t, l->meta, &k, &v, 0);
    }
    if (mrc == 0)
        mrc = mdb_get(t, l->meta, &k, &v);
    if (mrc == MDB_NOTFOUND || mrc == MDB_INCOMPATIBLE ||
        (mrc == 0 && (v.mv_size != strlen(SHMREG_SYNC_FORMAT) ||
                      memcmp(v.mv_data, SHMREG_SYNC_FORMAT, v.mv_size) != 0))) {
        mdb_txn_abort(t);
        snprintf(err, errlen, "%s is not a sync directory of format '%s' (%s): refused, nothing written",
                 dir, SHMREG_SYNC_FORMAT, mrc == 0 ? "another format" : "no format marker");
        goto fail;
    }
    if (mrc == 0)
        mrc = mdb_dbi_open(t, SHMREG_SYNC_DB_SESSIONS, MDB_CREATE, &l->db[SINK_SESSION]);
    if (mrc == 0)
        mrc = mdb_dbi_open(t, SHMREG_SYNC_DB_ROOMS, MDB_CREATE, &l->db[SINK_ROOM]);
    if (mrc == 0)
        mrc = mdb_txn_commit(t);
    else
        mdb_txn_abort(t);
    if (mrc) {
        snprintf(err, errlen, "cannot set up sync directory %s: %s", dir, mdb_strerror(mrc));
        goto fail;
    }
    if (fresh && fsync_mode != SINK_SYNC_NONE)
        mdb_env_sync(l->env, 1);
    l->s.name = "lmdb";
    l->s.begin = l_begin;
    l->s.put = l_put;
    l->s.del = l_del;
    l->s.prune = l_prune;
    l->s.commit = l_commit;
    l->s.abort = l_abort;
    l->s.sync = l_sync;
    l->s.stored = l_stored;
    l->s.close = l_close;
    return &l->s;
fail:
    if (l->env)
        mdb_env_close(l->env);
    if (l->lockfd >= 0)
        close(l->lockfd);
    free(l);
    return NULL;
}
