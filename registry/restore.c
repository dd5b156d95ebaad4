/*
 * restore.c — rebuild a registry from what shmreg-sync stored: sessions
 * with their IDs and every field, their dialogs, rooms and rosters.
 *
 * A restored session is built by the very code that creates one
 * (reg_session_insert: a slot nobody can reach, filled completely,
 * linked into its index chain, then made live by one release store of
 * its state), except that its ID, times, owner, counters, SDPs and state
 * come from the record, and the index chain is searched under its stripe
 * lock first so an ID can never be live twice. Its slot is whichever is
 * free: where the slot its ID names is taken, lookups find it through
 * the ID index.
 * It carries SHMREG_SESSION_RESTORED and is announced by its own event,
 * the hook an application uses to re-arm timers and accounting.
 *
 * shmreg_restore() reads the sync directory in one LMDB read transaction
 * and decodes every record before it restores the first one: a damaged
 * directory restores nothing, and a registry too small for what the
 * policy takes is refused before anything is written. Derived figures
 * (state counts, participants) are never read from storage: they follow
 * from the records restored.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reg.h"

/* ------------------------------------------------------------ one session */

static int zero_id(const shmreg_id *id)
{
    static const unsigned char z[SHMREG_ID_BYTES];
    return memcmp(id->bytes, z, SHMREG_ID_BYTES) == 0;
}

int reg_fields_of(const shmreg_session *s, shmreg_fields *f)
{
    if (s == NULL || zero_id(&s->id) || s->state < SHMREG_STATE_INITIATING ||
        s->state > SHMREG_STATE_FAILED)
        return shmreg__fail(SHMREG_EINVAL, "NULL session, zero ID or state %d not 1..9",
                            s ? s->state : 0);
    for (unsigned k = 0; k < 2; k++)
        if (s->sdp[k].len > SHMREG_MAX_SDP || (s->sdp[k].len && s->sdp[k].ptr == NULL))
            return shmreg__fail(SHMREG_EINVAL, "SDP of %zu bytes (limit %u) or no bytes", s->sdp[k].len,
                                SHMREG_MAX_SDP);
    memset(f, 0, sizeof *f);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        f->str[i] = s->str[i];
    f->local_rtp_port = s->local_rtp_port;
    f->remote_rtp_port = s->remote_rtp_port;
    return reg_fields_check(f, SHMREG_MASK_ALL);
}

int shmreg_session_restore(shmreg *h, const shmreg_session *s, unsigned flags)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (flags)
        return shmreg__fail(SHMREG_EINVAL, "flags 0x%x: must be 0", flags);
    shmreg_fields f;
    if ((rc = reg_fields_of(s, &f)) != 0)
        return rc;
    uint64_t counter[SHMREG_CTR_COUNT];
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        counter[i] = s->counter[i];
    reg_new n = {
        .id = s->id.bytes,
        .f = &f,
        .sdp = {s->sdp[0], s->sdp[1]},
        .counter = counter,
        .created_ns = s->created_ns,
        .updated_ns = s->updated_ns,
        .config_gen = s->config_gen,
        .owner_pid = s->owner_pid,
        .flags = SHMREG_SESSION_RESTORED,
        .state = s->state,
        .event = SHMREG_EV_SESSION_RESTORED,
    };
    return reg_session_insert(h, &n, NULL);
}

int shmreg_room_restore(shmreg *h, const shmreg_room *room, const shmreg_participant *parts, uint32_t n,
                        uint32_t *joined)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room == NULL || (n && parts == NULL) || zero_id(&room->id))
        return shmreg__fail(SHMREG_EINVAL, "NULL room/participants or zero ID");
    uint32_t j = 0;
    rc = reg_room_restore(h, room, parts, n, &j);
    if (joined)
        *joined = j;
    return rc;
}

int shmreg_restore_wanted(int state, unsigned flags)
{
    if (state < SHMREG_STATE_INITIATING || state > SHMREG_STATE_FAILED)
        return 0;
    if (flags & SHMREG_RESTORE_ALL)
        return 1;
    return state == SHMREG_STATE_ACTIVE || state == SHMREG_STATE_ONHOLD ||
           state == SHMREG_STATE_TRANSFERRING;
}

/* ------------------------------------------------------------ the sync directory */

typedef struct syncdir {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, sess, rooms;
} syncdir;

static void sd_close(syncdir *d)
{
    if (d->txn)
        mdb_txn_abort(d->txn);
    if (d->env)
        mdb_env_close(d->env);
    memset(d, 0, sizeof *d);
}

static int sd_fail(int mrc, const char *dir, const char *what)
{
    if (mrc == MDB_INVALID || mrc == MDB_VERSION_MISMATCH || mrc == MDB_CORRUPTED ||
        mrc == MDB_PAGE_NOTFOUND || mrc == MDB_PANIC || mrc == MDB_INCOMPATIBLE)
        return shmreg__fail(SHMREG_ECORRUPT, "sync directory %s: %s: %s", dir, what, mdb_strerror(mrc));
    if (mrc == EACCES || mrc == EPERM || mrc == EROFS)
        return shmreg__fail(SHMREG_EPERM, "sync directory %s: %s: %s", dir, what, mdb_strerror(mrc));
    if (mrc == ENOMEM)
        return shmreg__fail(SHMREG_ENOMEM, "sync directory %s: %s: out of memory", dir, what);
    return shmreg__fail(SHMREG_ESYS, "sync directory %s: %s: %s", dir, what, mdb_strerror(mrc));
}

/* Open `dir` read-only and check its marker: the one place that decides
 * what is a sync directory, for restore and for status. */
static int sd_open(syncdir *d, const char *dir)
{
    memset(d, 0, sizeof *d);
    struct stat st;
    if (stat(dir, &st) != 0)
        return errno == ENOENT ? shmreg__fail(SHMREG_ENOENT, "no sync directory %s", dir)
                               : shmreg__fail(SHMREG_ESYS, "sync directory %s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return shmreg__fail(SHMREG_EVERSION, "%s is not a sync directory (not a directory)", dir);
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", dir) >= sizeof path)
        return shmreg__fail(SHMREG_EINVAL, "sync directory path too long");
    if (stat(path, &st) != 0)
        return shmreg__fail(SHMREG_EVERSION, "%s is not a sync directory (no data.mdb)", dir);
    int mrc = mdb_env_create(&d->env);
    if (!mrc)
        mrc = mdb_env_set_maxdbs(d->env, 4);
    if (!mrc)
        mrc = mdb_env_open(d->env, dir, MDB_RDONLY | MDB_NOTLS, 0600);
    if (mrc) {
        sd_close(d);
        return sd_fail(mrc, dir, "opening LMDB");
    }
    if ((mrc = mdb_txn_begin(d->env, NULL, MDB_RDONLY, &d->txn)) != 0) {
        sd_close(d);
        return sd_fail(mrc, dir, "read transaction");
    }
    mrc = mdb_dbi_open(d->txn, SHMREG_SYNC_DB_META, 0, &d->meta);
    MDB_val k = {6, "format"}, v;
    if (mrc == 0)
        mrc = mdb_get(d->txn, d->meta, &k, &v);
    if (mrc == MDB_NOTFOUND || (mrc == 0 && (v.mv_size != strlen(SHMREG_SYNC_FORMAT) ||
                                             memcmp(v.mv_data, SHMREG_SYNC_FORMAT, v.mv_size) != 0))) {
        sd_close(d);
        return shmreg__fail(SHMREG_EVERSION, "%s is not a sync directory of format '%s' (%s)", dir,
                            SHMREG_SYNC_FORMAT, mrc ? "no format marker" : "another format");
    }
    if (mrc == MDB_INCOMPATIBLE) {
        sd_close(d);
        return shmreg__fail(SHMREG_EVERSION, "%s is not a sync directory (foreign LMDB databases)", dir);
    }
    if (mrc == 0)
        mrc = mdb_dbi_open(d->txn, SHMREG_SYNC_DB_SESSIONS, 0, &d->sess);
    if (mrc == 0)
        mrc = mdb_dbi_open(d->txn, SHMREG_SYNC_DB_ROOMS, 0, &d->rooms);
    if (mrc) {
        sd_close(d);
        return mrc == MDB_NOTFOUND
                   ? shmreg__fail(SHMREG_ECORRUPT, "sync directory %s lacks its databases", dir)
                   : sd_fail(mrc, dir, "opening databases");
    }
    return 0;
}

static uint64_t meta_u64(syncdir *d, const char *key)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    uint64_t x = 0;
    if (mdb_get(d->txn, d->meta, &k, &v) == 0 && v.mv_size == 8)
        memcpy(&x, v.mv_data, 8);
    return x;
}

static int32_t lock_pid(const char *dir)
{
    char path[4096], buf[32] = {0};
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, SHMREG_SYNC_LOCKFILE) >= sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    /* Held? A free lock means no daemon, whatever pid the file names. */
    int held = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) != 0)
        held = 1;
    else
        flock(fd, LOCK_UN);
    ssize_t n = held ? read(fd, buf, sizeof buf - 1) : 0;
    close(fd);
    return n > 0 ? (int32_t)atol(buf) : 0;
}

int shmreg_sync_dir_info(const char *dir, shmreg_sync_info *info)
{
    if (dir == NULL || info == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL dir/info");
    syncdir d;
    int rc = sd_open(&d, dir);
    if (rc)
        return rc;
    memset(info, 0, sizeof *info);
    info->ring_pos = meta_u64(&d, "ring_pos");
    info->commit_ns = meta_u64(&d, "commit_ns");
    MDB_stat ms;
    if (mdb_stat(d.txn, d.sess, &ms) == 0)
        info->sessions = ms.ms_entries;
    if (mdb_stat(d.txn, d.rooms, &ms) == 0)
        info->rooms = ms.ms_entries;
    MDB_envinfo ei;
    if (mdb_env_info(d.env, &ei) == 0 && mdb_env_stat(d.env, &ms) == 0) {
        info->map_bytes = ei.me_mapsize;
        info->used_bytes = (uint64_t)(ei.me_last_pgno + 1) * ms.ms_psize;
    }
    sd_close(&d);
    info->daemon_pid = lock_pid(dir);
    return 0;
}

/* ------------------------------------------------------------ restore */

typedef struct pending {
    shmreg_session s;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    const void *raw;          /* the record, valid for the read transaction: */
    size_t rawlen;            /* its call control part is decoded again in pass 2 */
} pending;

/* Give restored session p its memberships, variables and timeout back. */
static int restore_control(shmreg *h, const pending *p, shmreg_restore_report *rep)
{
    shmreg_session s;
    shmreg_session_control c;
    shmreg_dialog d[SHMREG_MAX_DIALOGS_PER_SESSION];
    unsigned nd;
    int rc = shmreg_session_decode_control(p->raw, p->rawlen, &s, &c, d, &nd);
    for (uint32_t i = 0; rc == 0 && !shmreg_state_is_final(p->s.state) && i < c.nprofiles; i++) {
        rc = shmreg_profile_join(h, &s.id, c.profile[i].profile, c.profile[i].value, 0, NULL);
        rep->profiles += rc == 0;
    }
    for (uint32_t i = 0; rc == 0 && i < c.nvars; i++)
        rc = shmreg_session_var_set(h, &s.id, c.var_key[i], c.var_value[i]);
    if (rc == 0 && c.deadline_ns && !shmreg_state_is_final(p->s.state))
        rc = shmreg_session_set_timeout(h, &s.id, c.deadline_ns, c.timeout_flags, c.grace_ns);
    return rc;
}

int shmreg_restore(shmreg *h, const char *dir, unsigned flags, shmreg_restore_report *report)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (dir == NULL || (flags & ~(SHMREG_RESTORE_ALL | SHMREG_RESTORE_FORCE)))
        return shmreg__fail(SHMREG_EINVAL, "NULL dir or unknown flags 0x%x", flags);
    shmreg_restore_report rep;
    memset(&rep, 0, sizeof rep);
    uint64_t counts[SHMREG_STATE_COUNT];
    reg_count(h, counts, NULL, NULL);
    if (counts[0] && !(flags & SHMREG_RESTORE_FORCE))
        return shmreg__fail(SHMREG_EEXIST,
                            "registry %s already has %llu sessions: restore refused (force to merge)",
                            h->path, (unsigned long long)counts[0]);
    syncdir d;
    if ((rc = sd_open(&d, dir)) != 0)
        return rc;
    rep.ring_pos = meta_u64(&d, "ring_pos");
    rep.commit_ns = meta_u64(&d, "commit_ns");
    uint64_t now = shm_now_ns();
    /* Pass 1: decode every record (the values stay valid for the whole
     * read transaction), choose by policy, count. */
    MDB_stat ms;
    pending *pend = NULL;
    /* cur is NULL whenever no cursor is open: each is closed once. */
    size_t npend = 0, cap = 0;
    MDB_cursor *cur = NULL;
    int mrc = mdb_stat(d.txn, d.sess, &ms);
    if (mrc == 0) {
        cap = ms.ms_entries ? ms.ms_entries : 1;
        pend = malloc(cap * sizeof *pend);
        if (pend == NULL) {
            sd_close(&d);
            return shmreg__fail(SHMREG_ENOMEM, "out of memory for %zu records", cap);
        }
        mrc = mdb_cursor_open(d.txn, d.sess, &cur);
    }
    MDB_val k, v;
    for (int op = MDB_FIRST; mrc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        if (npend == cap) {
            mrc = MDB_CORRUPTED;
            break;
        }
        pending *p = &pend[npend];
        shmreg_session_control c;
        if ((rc = shmreg_session_decode_control(v.mv_data, v.mv_size, &p->s, &c, p->d, &p->nd)) != 0)
            break;
        p->raw = v.mv_data;
        p->rawlen = v.mv_size;
        /* Its deadline passed while it was down: the call is over, and
         * comes back (with RESTORE_ALL) as the sweep would have left it. */
        if (c.deadline_ns && c.deadline_ns <= now && !shmreg_state_is_final(p->s.state)) {
            p->s.state = SHMREG_STATE_FAILED;
            rep.expired++;
        }
        if (k.mv_size != SHMREG_ID_BYTES || memcmp(k.mv_data, p->s.id.bytes, SHMREG_ID_BYTES) != 0) {
            rc = shmreg__fail(SHMREG_ECORRUPT, "sync directory %s: a session is stored under another key", dir);
            break;
        }
        if (shmreg_restore_wanted(p->s.state, flags))
            npend++;
        else
            rep.skipped++;
    }
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    if (rc == 0 && mrc != MDB_NOTFOUND)
        rc = sd_fail(mrc, dir, "reading sessions");
    /* Rooms are checked in pass 1 too. */
    shmreg_participant *parts = NULL;
    if (rc == 0 && (parts = malloc(SHMREG_MAX_ROOM_PARTICIPANTS * sizeof *parts)) == NULL)
        rc = shmreg__fail(SHMREG_ENOMEM, "out of memory");
    mrc = rc ? 0 : mdb_cursor_open(d.txn, d.rooms, &cur);
    if (rc == 0 && mrc) {
        rc = sd_fail(mrc, dir, "reading rooms");
        cur = NULL;
    }
    if (rc)
        cur = NULL;
    uint64_t nrooms = 0;
    for (int op = MDB_FIRST; rc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, op)) == 0; op = MDB_NEXT) {
        shmreg_room rm;
        uint32_t np;
        rc = shmreg_room_decode(v.mv_data, v.mv_size, &rm, parts, SHMREG_MAX_ROOM_PARTICIPANTS, &np);
        if (rc == 0 && (k.mv_size != SHMREG_ID_BYTES || memcmp(k.mv_data, rm.id.bytes, SHMREG_ID_BYTES)))
            rc = shmreg__fail(SHMREG_ECORRUPT, "sync directory %s: a room is stored under another key", dir);
        nrooms++;
    }
    if (rc == 0 && cur && mrc != MDB_NOTFOUND)
        rc = sd_fail(mrc, dir, "reading rooms");
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    if (rc == 0) {
        shmreg_stats st;
        memset(&st, 0, sizeof st);
        st.max_sessions = h->c.seg.slots;
        if (npend > st.max_sessions - counts[0])
            rc = shmreg__fail(SHMREG_EFULL, "registry has room for %llu more sessions, restore needs %zu",
                              (unsigned long long)(st.max_sessions - counts[0]), npend);
        else if (nrooms > h->room_slots / 2)
            rc = shmreg__fail(SHMREG_EFULL, "registry has room for %u rooms, restore needs %llu",
                              h->room_slots / 2, (unsigned long long)nrooms);
    }
    /* Pass 2: sessions, then their dialogs (a dialog may name another
     * session's key only if storage is wrong: counted, not fatal). */
    for (size_t i = 0; rc == 0 && i < npend; i++) {
        int r = shmreg_session_restore(h, &pend[i].s, 0);
        if (r == SHMREG_EEXIST) {
            rep.existing++;
            pend[i].nd = 0;
            pend[i].raw = NULL;
            continue;
        }
        if (r) {
            rc = r;
            break;
        }
        rep.sessions++;
    }
    for (size_t i = 0; rc == 0 && i < npend; i++)
        if (pend[i].raw)
            rc = restore_control(h, &pend[i], &rep);
    for (size_t i = 0; rc == 0 && i < npend; i++)
        for (unsigned j = 0; j < pend[i].nd; j++) {
            const shmreg_dialog *dl = &pend[i].d[j];
            int r = shmreg_dialog_bind(h, dl->call_id, dl->local_tag, dl->remote_tag, &pend[i].s.id);
            if (r == 0)
                rep.dialogs++;
            else if (r == SHMREG_EEXIST)
                rep.dialogs_failed++;
            else {
                rc = r;
                break;
            }
        }
    cur = NULL;
    if (rc == 0 && (mrc = mdb_cursor_open(d.txn, d.rooms, &cur)) != 0)
        rc = sd_fail(mrc, dir, "reading rooms");
    for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(cur, &k, &v, op) == 0; op = MDB_NEXT) {
        shmreg_room rm;
        uint32_t np, joined = 0;
        if ((rc = shmreg_room_decode(v.mv_data, v.mv_size, &rm, parts, SHMREG_MAX_ROOM_PARTICIPANTS, &np)))
            break;
        int r = shmreg_room_restore(h, &rm, parts, np, &joined);
        if (r == SHMREG_EEXIST)
            continue;
        if (r) {
            rc = r;
            break;
        }
        rep.rooms++;
        rep.participants += joined;
    }
    if (cur)
        mdb_cursor_close(cur);
    cur = NULL;
    free(parts);
    free(pend);
    sd_close(&d);
    if (report)
        *report = rep;
    return rc;
}
