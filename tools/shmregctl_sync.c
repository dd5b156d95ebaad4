/*
 * shmregctl_sync.c — the commands of persistence: `restore` rebuilds a
 * registry from a sync directory that shmreg-sync wrote, `sync status`
 * says how far the daemon is behind, for a person (or --json).
 *
 * Both are thin: the library does the restore (shmreg_restore: records
 * checked first, IDs unchanged, policy, refusal on a populated registry)
 * and keeps the daemon's status words (shmreg_stat's sync_* fields); the
 * tool parses options, creates the registry when it is missing, and
 * prints.
 */
#include <stdio.h>
#include <string.h>

#include "shmregctl.h"

int cmd_restore(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"from", required_argument, NULL, 'f'},
        {"all", no_argument, NULL, 'a'},
        {"force", no_argument, NULL, 'F'},
        {"if-created", no_argument, NULL, 'C'},
        CTL_CREATE_OPTIONS,
        {0},
    };
    shmreg_options opt = {.flags = SHMREG_CREATE};
    int if_created = 0;
    const char *from = NULL;
    unsigned flags = 0;
    int ch;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1) {
        switch (ch) {
        case 'f': from = optarg; break;
        case 'a': flags |= SHMREG_RESTORE_ALL; break;
        case 'F': flags |= SHMREG_RESTORE_FORCE; break;
        case 'C': if_created = 1; break;
        default:
            if (ctl_create_option(c, ch, &opt) == CTL_USAGE)
                return CTL_USAGE;
        }
    }
    int rc = ctl_operands(c, argc, argv, 0, 0);
    if (rc)
        return rc;
    if (!from || !*from)
        return ctl_usage(c, "restore needs --from DIR (a sync directory written by shmreg-sync)");
    if (!c->path || !*c->path)
        return ctl_usage(c, "no registry given: use -r PATH or set SHMREG_PATH");
    /* Attach, or create with the options given: restore is for a new
     * registry (after a reboot), and refuses one with sessions anyway. */
    if (if_created) /* warm restart: a registry that survived is left alone */
        opt.flags |= SHMREG_EXCL;
    if ((rc = shmreg_open(c->path, &opt, &c->h)) == SHMREG_EEXIST && if_created) {
        c->h = NULL;
        out *o = &c->o;
        out_obj_begin(o, NULL);
        out_cstr(o, "restored_from", NULL);
        out_cstr(o, "skipped", "the registry exists (a warm restart): nothing restored");
        out_obj_end(o);
        out_doc_end(o);
        return CTL_OK;
    }
    if (rc != 0) {
        c->h = NULL;
        ctl_fail(c, rc, "cannot open or create registry");
        return rc == SHMREG_EINVAL ? CTL_USAGE : CTL_NOOPEN;
    }
    shmreg_restore_report rep;
    uint64_t t0 = ctl_mono_ns();
    rc = shmreg_restore(c->h, from, flags, &rep);
    uint64_t took = ctl_mono_ns() - t0;
    if (rc)
        return ctl_fail(c, rc, "restore from %s", from);
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_cstr(o, "restored_from", from);
    out_u64(o, "sessions", rep.sessions);
    out_u64(o, "skipped", rep.skipped);
    out_u64(o, "existing", rep.existing);
    out_u64(o, "dialogs", rep.dialogs);
    out_u64(o, "dialogs_failed", rep.dialogs_failed);
    out_u64(o, "rooms", rep.rooms);
    out_u64(o, "participants", rep.participants);
    out_u64(o, "ring_pos", rep.ring_pos);
    out_time(o, "stored_ns", rep.commit_ns);
    out_dur(o, "took_ns", took);
    out_cstr(o, "policy", flags & SHMREG_RESTORE_ALL ? "all" : "confirmed (Active, OnHold, Transferring)");
    out_obj_end(o);
    out_doc_end(o);
    return CTL_OK;
}

/* The registry's view of its daemon, as an object named "sync" (stat's
 * report shares it). */
void ctl_sync_fields(out *o, const shmreg_stats *st)
{
    out_obj_begin(o, "sync");
    if (st->sync_pid)
        out_i64(o, "daemon_pid", st->sync_pid);
    else
        out_null(o, "daemon_pid");
    out_bool(o, "daemon_alive", st->sync_alive != 0);
    out_u64(o, "durable_seq", st->sync_durable_seq);
    out_u64(o, "behind", st->sync_commit_ns ? st->sync_behind : st->events_published);
    out_time(o, "last_commit_ns", st->sync_commit_ns);
    uint64_t now = ctl_now_ns();
    if (st->sync_commit_ns && now > st->sync_commit_ns)
        out_dur(o, "last_commit_age_ns", now - st->sync_commit_ns);
    else
        out_null(o, "last_commit_age_ns");
    out_obj_end(o);
}

int cmd_sync_status(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"lmdb", required_argument, NULL, 'l'}, {0}};
    const char *dir = NULL;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1)
        if (ch == 'l')
            dir = optarg;
    if ((rc = ctl_operands(c, argc, argv, 0, 0)))
        return rc;
    if ((!c->path || !*c->path) && !dir)
        return ctl_usage(c, "give the registry (-r PATH), the sync directory (--lmdb DIR), or both");
    shmreg_stats st;
    shmreg_sync_info info;
    int have_reg = 0, have_dir = 0;
    if (c->path && *c->path) {
        if ((rc = ctl_open(c)))
            return rc;
        if ((rc = shmreg_stat(c->h, &st)))
            return ctl_fail(c, rc, "stat");
        have_reg = 1;
    }
    if (dir) {
        if ((rc = shmreg_sync_dir_info(dir, &info)))
            return ctl_fail(c, rc, "sync directory %s", dir);
        have_dir = 1;
    }
    out *o = &c->o;
    out_obj_begin(o, NULL);
    if (have_reg) {
        out_cstr(o, "registry", c->path);
        out_u64(o, "events_published", st.events_published);
        ctl_sync_fields(o, &st);
    }
    if (have_dir) {
        out_obj_begin(o, "directory");
        out_cstr(o, "path", dir);
        if (info.daemon_pid)
            out_i64(o, "daemon_pid", info.daemon_pid);
        else
            out_null(o, "daemon_pid");
        out_u64(o, "ring_pos", info.ring_pos);
        out_time(o, "commit_ns", info.commit_ns);
        out_u64(o, "sessions", info.sessions);
        out_u64(o, "rooms", info.rooms);
        out_bytes(o, "used_bytes", info.used_bytes);
        out_bytes(o, "map_bytes", info.map_bytes);
        out_obj_end(o);
    }
    out_obj_end(o);
    out_doc_end(o);
    if (have_reg && !st.sync_alive)
        return ctl_err(c, CTL_PROBLEM, "no shmreg-sync daemon is following this registry");
    return CTL_OK;
}
