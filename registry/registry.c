/*
 * registry.c — opening, creating, closing and destroying a registry, read
 * sections, statistics and the handle table as users see it.
 *
 * Creating is made atomic with a rename-like link: the segment is built
 * and formatted under a private temporary name, then linked to `segment`.
 * A process racing us either wins the link (and we attach to its segment)
 * or loses it; nobody ever attaches to a half-formatted segment.
 *
 * Files are opened relative to a directory descriptor reached by walking
 * the path with openat(O_NOFOLLOW) (a parent symlink is followed only if
 * root or we own it), and the directory and segment must belong to the
 * caller's effective uid and give others no access: a registry planted or
 * opened up by another user, or a symlink swapped in, is refused rather
 * than trusted.
 *
 * This is the top of the registry: it calls the modules (events, rooms,
 * the session table) to open a handle and to fill statistics, and none
 * of them calls it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "reg.h"

#define SEGMENT_NAME "segment"

static int sys_fail(const char *what, const char *path)
{
    int e = errno;
    return shmreg__fail(SHMREG_ESYS, "%s %s: %s", what, path, strerror(e));
}

/* ------------------------------------------------------------ open */

/* Modes a registry's directory and segment may have: nothing for others,
 * ever (a world-writable registry is anyone's to scribble on). */
static int mode_ok(const struct stat *st, const char *what, const char *path)
{
    if ((st->st_mode & (S_IRWXO | S_ISUID | S_ISGID)) == 0)
        return 0;
    return shmreg__fail(SHMREG_EPERM, "%s %s has mode 0%o, wider than the owner and group "
                        "allow (no access for others): refused", what, path,
                        (unsigned)(st->st_mode & 07777));
}

/* Open the directory holding `path`'s last component, walking every
 * component with O_NOFOLLOW, and point *last at that component. A symlink
 * on the way is followed only if root or we own it (as the kernel's
 * protected_symlinks does in sticky directories): one planted by another
 * user is refused, not trusted. Returns the directory's fd or an error. */
static int open_parent(const char *path, char *buf, size_t len, const char **last)
{
    if (snprintf(buf, len, "%s", path) >= (int)len)
        return shmreg__fail(SHMREG_EINVAL, "path too long");
    size_t n = strlen(buf);
    while (n > 1 && buf[n - 1] == '/')
        buf[--n] = 0;
    char *slash = strrchr(buf, '/');
    *last = slash ? slash + 1 : buf;
    int dfd = open(buf[0] == '/' ? "/" : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || slash == NULL)
        return dfd < 0 ? sys_fail("cannot open", buf[0] == '/' ? "/" : ".") : dfd;
    *slash = 0;
    char *save = NULL;
    for (char *comp = strtok_r(buf, "/", &save); comp; comp = strtok_r(NULL, "/", &save)) {
        int fd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        struct stat ls;
        if (fd < 0 && (errno == ELOOP || errno == ENOTDIR) &&
            fstatat(dfd, comp, &ls, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(ls.st_mode)) {
            if (ls.st_uid != 0 && ls.st_uid != geteuid()) {
                close(dfd);
                return shmreg__fail(SHMREG_EPERM, "%s: path component '%s' is a symlink owned by "
                                    "uid %u: refused", path, comp, (unsigned)ls.st_uid);
            }
            fd = openat(dfd, comp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        int e = errno;
        close(dfd);
        if (fd < 0) {
            errno = e;
            return e == ENOENT ? shmreg__fail(SHMREG_ENOENT, "parent of %s does not exist", path)
                               : sys_fail("cannot open a parent of", path);
        }
        dfd = fd;
    }
    *slash = '/';
    return dfd;
}

static int open_dir(const char *path, int create, mode_t dir_mode, gid_t gid)
{
    char buf[PATH_MAX];
    const char *last = path;
    int pfd = open_parent(path, buf, sizeof buf, &last);
    if (pfd < 0)
        return pfd;
    if (create) {
        if (mkdirat(pfd, last, dir_mode) == 0) {
            /* umask may have narrowed the mode; the group needs its bits. */
            if ((gid != (gid_t)-1 && fchownat(pfd, last, (uid_t)-1, gid, AT_SYMLINK_NOFOLLOW) != 0) ||
                fchmodat(pfd, last, dir_mode, 0) != 0) {
                close(pfd);
                return sys_fail("cannot set owner/mode of", path);
            }
        } else if (errno != EEXIST) {
            int e = errno;
            close(pfd);
            errno = e;
            return e == ENOENT ? shmreg__fail(SHMREG_ENOENT, "parent of %s does not exist", path)
                               : sys_fail("cannot create directory", path);
        }
    }
    int dfd = openat(pfd, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(pfd);
    errno = e;
    if (dfd < 0) {
        if (errno == ENOENT)
            return shmreg__fail(SHMREG_ENOENT, "no registry at %s", path);
        if (errno == ELOOP || errno == ENOTDIR)
            return shmreg__fail(SHMREG_EPERM, "%s is a symlink or not a directory: refused", path);
        return sys_fail("cannot open", path);
    }
    struct stat st;
    if (fstat(dfd, &st) != 0) {
        close(dfd);
        return sys_fail("cannot stat", path);
    }
    if (st.st_uid != geteuid()) {
        close(dfd);
        return shmreg__fail(SHMREG_EPERM, "%s is owned by uid %u, not by us (uid %u): refused",
                            path, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    int rc = mode_ok(&st, "directory", path);
    if (rc) {
        close(dfd);
        return rc;
    }
    return dfd;
}

static int create_segment(shmreg *h, int dfd, const shm_params *p)
{
    shm_fixed f;
    if (shm_layout(p, &f) != 0)
        return shmreg__fail(SHMREG_EINVAL, "capacity out of range");
    f.uid = (uint32_t)geteuid();
    f.gid = (uint32_t)(h->gid == (gid_t)-1 ? getegid() : h->gid);
    f.created_ns = shm_now_ns();
    randombytes_buf(f.user, REG_KEY_BYTES); /* the dialog hash key (layout.c) */

    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s.new.%d", SEGMENT_NAME, (int)getpid());
    unlinkat(dfd, tmp, 0);
    int fd = openat(dfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, h->file_mode);
    if (fd < 0)
        return sys_fail("cannot create segment in", h->path);
    int rc = 0;
    void *m = MAP_FAILED;
    if ((h->gid != (gid_t)-1 && fchown(fd, (uid_t)-1, h->gid) != 0) || fchmod(fd, h->file_mode) != 0 ||
        ftruncate(fd, (off_t)f.segment_bytes) != 0) {
        rc = sys_fail("cannot size segment in", h->path);
    } else if ((m = mmap(NULL, f.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        rc = sys_fail("cannot map new segment in", h->path);
    } else if (shm_seg_format(m, &f) != 0) {
        rc = shmreg__fail(SHMREG_ESYS, "cannot initialise the segment's locks");
    }
    if (m != MAP_FAILED)
        munmap(m, f.segment_bytes);
    close(fd);
    if (rc == 0 && linkat(dfd, tmp, dfd, SEGMENT_NAME, 0) != 0) {
        /* EEXIST: another process created it first; we attach to theirs. */
        if (errno != EEXIST)
            rc = sys_fail("cannot publish segment in", h->path);
    }
    unlinkat(dfd, tmp, 0);
    return rc;
}

static int map_segment(shmreg *h, int dfd)
{
    int fd = openat(dfd, SEGMENT_NAME, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return shmreg__fail(SHMREG_ENOENT, "no registry segment in %s", h->path);
        if (errno == ELOOP)
            return shmreg__fail(SHMREG_EPERM, "%s/%s is a symlink: refused", h->path, SEGMENT_NAME);
        return sys_fail("cannot open segment in", h->path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return sys_fail("cannot stat segment in", h->path);
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return shmreg__fail(SHMREG_EPERM, "segment in %s is owned by uid %u, not by us (uid %u)",
                            h->path, (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (!S_ISREG(st.st_mode) || st.st_size < (off_t)SHM_HEADER_BYTES) {
        close(fd);
        return shmreg__fail(SHMREG_EVERSION, "%s/%s is not a shmreg segment (%lld bytes)",
                            h->path, SEGMENT_NAME, (long long)st.st_size);
    }
    int mrc = mode_ok(&st, "segment in", h->path);
    if (mrc) {
        close(fd);
        return mrc;
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return sys_fail("cannot map segment in", h->path);
    h->map = m;
    h->map_size = (uint64_t)st.st_size;
    char why[256];
    int rc = reg_layout_bind(h, why, sizeof why);
    if (rc != 0)
        return shmreg__fail(rc, "%s: %s", h->path, why);
    if (h->c.seg.hdr->f.uid != (uint32_t)geteuid())
        return shmreg__fail(SHMREG_EPERM, "%s was created by uid %u, we are uid %u", h->path,
                            h->c.seg.hdr->f.uid, (unsigned)geteuid());
    return 0;
}

static int resolve_group(const char *group, gid_t *gid)
{
    *gid = (gid_t)-1;
    if (group == NULL)
        return 0;
    struct group gr, *res = NULL;
    char buf[4096];
    if (getgrnam_r(group, &gr, buf, sizeof buf, &res) != 0 || res == NULL)
        return shmreg__fail(SHMREG_EPERM, "unknown group '%s'", group);
    *gid = gr.gr_gid;
    return 0;
}

static int sodium_ready(void)
{
    return sodium_init() >= 0 ? 0 : shmreg__fail(SHMREG_ESYS, "libsodium failed to initialise");
}

int shmreg_open(const char *path, const shmreg_options *opt, shmreg **out)
{
    if (out)
        *out = NULL;
    if (path == NULL || out == NULL || *path == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL or empty path/out");
    if (strlen(path) > PATH_MAX - 64)
        return shmreg__fail(SHMREG_EINVAL, "path too long");
    shmreg_options o = opt ? *opt : (shmreg_options){0};
    if (o.flags & ~(SHMREG_CREATE | SHMREG_EXCL))
        return shmreg__fail(SHMREG_EINVAL, "unknown flags 0x%x", o.flags);
    if (o.max_handles > SHMREG_MAX_HANDLES)
        return shmreg__fail(SHMREG_EINVAL, "max_handles %u over %u", o.max_handles, SHMREG_MAX_HANDLES);
    reg_layout lay;
    int rc = (o.flags & SHMREG_CREATE) ? reg_layout_params(&o, &lay) : 0;
    if (rc)
        return rc;
    if ((rc = sodium_ready()) != 0)
        return rc;

    shmreg *h = calloc(1, sizeof *h);
    if (h == NULL || (h->path = strdup(path)) == NULL) {
        free(h);
        return shmreg__fail(SHMREG_ENOMEM, "out of memory");
    }
    reg_fork_watch(h);
    h->pid = getpid();
    rc = resolve_group(o.group, &h->gid);
    h->file_mode = o.group ? 0660 : 0600;
    int dfd = rc ? rc : open_dir(path, o.flags & SHMREG_CREATE, o.group ? 0770 : 0700, h->gid);
    if (dfd < 0) {
        rc = dfd;
        goto fail;
    }
    int exists = faccessat(dfd, SEGMENT_NAME, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
    if (exists && (o.flags & SHMREG_CREATE) && (o.flags & SHMREG_EXCL)) {
        rc = shmreg__fail(SHMREG_EEXIST, "a registry already exists at %s", path);
    } else if (!exists && (o.flags & SHMREG_CREATE)) {
        rc = create_segment(h, dfd, &lay.p);
    }
    if (rc == 0)
        rc = map_segment(h, dfd);
    close(dfd);
    if (rc == 0)
        rc = reg_event_init(h);
    h->c.on_dead_note = reg_dead_note; /* a claim may reap: set first */
    if (rc == 0 && shm_handle_claim(&h->c) != 0)
        rc = shmreg__fail(SHMREG_EFULL, "all %u handle slots of %s are held by live processes",
                          h->c.seg.max_handles, path);
    if (rc == 0) {
        reg_open_add(h);
        *out = h;
        return 0;
    }
fail:
    reg_event_fini(h);
    if (h->map)
        munmap(h->map, h->map_size);
    free(h->path);
    free(h);
    return rc;
}

int shmreg_close(shmreg *h)
{
    if (h == NULL)
        return 0;
    if (!reg_open_remove(h))
        return shmreg__fail(SHMREG_EINVAL, "handle is not open (closed already?)");
    int rc = 0;
    if (h->config_close)
        h->config_close(h); /* in a child it only frees memory */
    if (shmreg__forked(h))
        rc = shmreg__fail(SHMREG_EFORK, "handle was opened by another process (fork): "
                          "only its memory was freed"); /* not ours: touch nothing shared */
    else
        shm_handle_release(&h->c);
    reg_event_fini(h);
    munmap(h->map, h->map_size);
    free(h->path);
    free(h);
    return rc;
}

/* ------------------------------------------------------------ destroy */

static int remove_tree_at(int dfd)
{
    DIR *d = fdopendir(dup(dfd));
    if (d == NULL)
        return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(dfd, e->d_name, 0) == 0)
            continue;
        int sub = openat(dfd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0 || remove_tree_at(sub) != 0 || unlinkat(dfd, e->d_name, AT_REMOVEDIR) != 0)
            rc = -1;
        if (sub >= 0)
            close(sub);
    }
    closedir(d);
    return rc;
}

int shmreg_destroy(const char *path, int force)
{
    if (path == NULL || *path == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL or empty path");
    shmreg tmp = {.path = (char *)path};
    int dfd = open_dir(path, 0, 0, (gid_t)-1);
    if (dfd < 0)
        return dfd;
    int rc = map_segment(&tmp, dfd);
    if (rc == 0) {
        pid_t me = getpid();
        uint32_t live = 0;
        for (uint32_t i = 0; i < tmp.c.seg.max_handles; i++) {
            uint64_t w = atomic_load(&tmp.c.seg.handles[i].word);
            if (shm_word_alive(&tmp.c.seg.handles[i], w) && SHM_H_PID(w) != me)
                live++;
        }
        if (live && !force)
            rc = shmreg__fail(SHMREG_EBUSY, "%u live process(es) still attached to %s", live, path);
    }
    if (tmp.map)
        munmap(tmp.map, tmp.map_size);
    if (rc == 0 || (force && rc == SHMREG_ECORRUPT)) {
        rc = 0;
        if (remove_tree_at(dfd) != 0 || rmdir(path) != 0)
            rc = sys_fail("cannot remove", path);
    }
    close(dfd);
    return rc;
}

/* ------------------------------------------------------------ read sections */

int shmreg_read_begin(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (h->c.read_depth == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME_COARSE, &ts);
        atomic_store_explicit(&h->c.seg.handles[h->c.slot].read_since_ns,
                              (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec,
                              memory_order_relaxed);
    }
    shm_read_enter(&h->c);
    return 0;
}

int shmreg_read_end(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (h->c.read_depth == 0)
        return shmreg__fail(SHMREG_EINVAL, "read_end without read_begin");
    shm_read_leave(&h->c);
    return 0;
}

/* ------------------------------------------------------------ inspection */

int shmreg_stat(shmreg *h, shmreg_stats *st)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (st == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL stats");
    const shm_seg *s = &h->c.seg;
    memset(st, 0, sizeof *st);
    st->segment_bytes = s->size;
    st->heap_bytes = (uint64_t)s->heap_pages * SHM_PAGE_BYTES;
    st->heap_used_bytes = shm_heap_used(s);
    st->max_sessions = s->slots;
    st->session_slot_bytes = SHM_SLOT_BYTES;
    st->index_buckets = h->sessions.buckets;
    st->max_handles = s->max_handles;
    st->config_gen = atomic_load(&h->shared->config_gen);
    st->created_ns = s->hdr->f.created_ns;
    uint64_t now = shm_now_ns();
    for (uint32_t i = 0; i < s->max_handles; i++) {
        shm_handle *x = &s->handles[i];
        st->heap_retired_bytes += shm_limbo_bytes(s, i);
        if (!shm_word_alive(x, atomic_load(&x->word)))
            continue;
        st->handles++;
        uint64_t since = atomic_load(&x->read_since_ns);
        if (atomic_load(&x->epoch) && since && now > since && now - since > st->oldest_read_ns)
            st->oldest_read_ns = now - since;
    }
    reg_event_stats(h, st);
    st->max_rooms = h->room_slots / 2;
    st->rooms = reg_room_count(h);
    uint64_t counts[SHMREG_STATE_COUNT], dialogs, foreign;
    reg_count(h, counts, &dialogs, &foreign);
    st->sessions = (uint32_t)counts[0];
    st->dialogs = (uint32_t)dialogs;
    reg_sync_stats(h, st); /* shmreg-sync's status words (sync.c) */
    st->node_id = h->node_id;
    st->foreign_sessions = (uint32_t)foreign;
    return 0;
}

int shmreg_handle_next(shmreg *h, uint64_t *cursor, shmreg_handle_info *out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor/out");
    const shm_seg *s = &h->c.seg;
    uint64_t now = shm_now_ns();
    for (uint64_t i = *cursor; i < s->max_handles; i++) {
        shm_handle *x = &s->handles[i];
        uint64_t w = atomic_load(&x->word);
        unsigned k = SHM_H_KIND(w);
        if (k == SHM_H_FREE)
            continue;
        memset(out, 0, sizeof *out);
        out->slot = (uint32_t)i;
        out->pid = k == SHM_H_ORPHAN ? 0 : SHM_H_PID(w);
        out->alive = shm_word_alive(x, w);
        out->in_read = atomic_load(&x->epoch) != 0;
        uint64_t since = atomic_load(&x->read_since_ns);
        out->read_age_ns = out->in_read && since && now > since ? now - since : 0;
        out->attached_ns = x->attached_ns;
        out->self = i == h->c.slot;
        *cursor = i + 1;
        return 0;
    }
    *cursor = s->max_handles;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more handles", NULL);
}

int shmreg_reap(shmreg *h)
{
    int rc = shmreg__usable(h);
    return rc ? rc : shm_reap(&h->c);
}
