/*
 * corrupt_directed.c — the single-word corruptions of issue 12, each
 * reproduced exactly: every one must give a clean error code (or be
 * survived), be found by a plain check, never raise a signal, never hang
 * (alarm() fails the run) and never write outside the block written.
 *
 * Beside t/corrupt.c (headers, offsets): this one damages the allocator's
 * and the ring's shared words through the private headers.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl_run.h"
#include "reg.h"
#include "ring.h"
#include "tap.h"
#include "testutil.h"

static const shmreg_options opts = {.flags = SHMREG_CREATE, .max_sessions = 64, .max_handles = 8,
                                    .heap_bytes = 16ull * SHM_PAGE_BYTES, .event_records = 64};

static char sdp[3000];

static shmreg *make(const char *name, shmreg_id *id)
{
    shmreg *h = NULL;
    if (shmreg_open(test_dir(name), &opts, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    memset(sdp, 'x', sizeof sdp);
    if (shmreg_session_create(h, NULL, id) != 0 ||
        shmreg_session_set_sdp(h, id, SHMREG_SDP_LOCAL, sdp, 1000) != 0)
        bail_out("populate: %s", shmreg_errmsg());
    return h;
}

static void show(void *arg, const char *what)
{
    (void)arg;
    diag("check: %s", what);
}

static int plain_check(shmreg *h, uint64_t *problems)
{
    shmreg_check_report r;
    int rc = shmreg_check(h, 0, &r, show, NULL, NULL);
    *problems = r.problems;
    return rc;
}

/* The heap list whose cursor names a page: the one the SDP was carved from. */
static shm_freelist *carving_list(shmreg *h)
{
    for (unsigned k = 0; k < SHM_NCLASS; k++)
        for (unsigned s = 0; s < SHM_SHARDS; s++)
            if (h->c.seg.ctl->heap[k][s].cur_page && shm_class_size(k) >= 1000)
                return &h->c.seg.ctl->heap[k][s];
    bail_out("no carving list");
    return NULL;
}

/* 1. A cursor past the heap: the next allocation used to carve the ring's
 * header (heap_pages + 1) or fault (0x7fffffff). */
static void test_cursor(uint32_t value, const char *what)
{
    shmreg_id id;
    shmreg *h = make("cursor", &id);
    const shm_seg *s = &h->c.seg;
    unsigned char ring_before[SHM_RING_HEADER_BYTES];
    memcpy(ring_before, s->base + s->off_ring, 32);
    carving_list(h)->cur_page = value == 0 ? s->heap_pages + 1 : value;
    uint64_t problems;
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "%s cursor: plain check says ECORRUPT", what);
    is(problems, 1, "%s cursor: one problem", what);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 1000), 0,
       "%s cursor: the next allocation drops the cursor and takes a fresh page", what);
    is_mem(s->base + s->off_ring, 32, ring_before, 32, "%s cursor: the ring's header is untouched", what);
    const char *dir = shmreg_path(h);
    char path[512];
    snprintf(path, sizeof path, "%s", dir);
    shmreg_close(h);
    is(shmreg_open(path, NULL, &h), 0, "%s cursor: the registry opens again", what);
    is(plain_check(h, &problems), 0, "%s cursor: and checks clean", what);
    shmreg_close(h);
}

/* 2. A page descriptor's shard byte of 255: freeing a block of that page
 * pushed it onto a phantom list over the dialog stripe locks. */
static void test_shard(void)
{
    shmreg_id id;
    shmreg *h = make("shard", &id);
    const shm_seg *s = &h->c.seg;
    uint32_t p = carving_list(h)->cur_page - 1;
    atomic_fetch_or(&s->pages[p].cls, 0xffu << 8);
    uint64_t problems;
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "shard 255: plain check says ECORRUPT");
    ok(problems >= 1, "shard 255: the descriptor is a problem (%llu)", (unsigned long long)problems);
    /* The session's record lies on that page: a replace, which copies
     * the record, cannot read it, and says so without changing a thing. */
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 10), SHMREG_ECORRUPT,
       "shard 255: replacing the SDP of the record on that page: SHMREG_ECORRUPT");
    is(shmreg_session_delete(h, &id), 0, "shard 255: deleting the session works");
    shmreg_close(h);
}

/* And the phantom list: no dialog stripe lock is written, a bind works. */
static void test_shard_stripes(void)
{
    shmreg_id id;
    shmreg *h = make("shard2", &id);
    const shm_seg *s = &h->c.seg;
    uint32_t p = carving_list(h)->cur_page - 1;
    atomic_fetch_or(&s->pages[p].cls, 0xffu << 8);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 10), SHMREG_ECORRUPT,
       "shard 255 again: replace says SHMREG_ECORRUPT");
    is(shmreg_session_delete(h, &id), 0, "shard 255: the delete lets go of what it can read");
    shmreg_reap(h);
    uint32_t stripes = 0;
    for (unsigned i = 0; i < SHM_STRIPES; i++)
        stripes |= atomic_load(&h->dialogs.stripe[i].word);
    is(stripes, 0, "shard 255: no dialog stripe lock word was written by the free");
    shmreg_id sid;
    is(shmreg_session_create(h, NULL, &sid), 0, "shard 255: a create works");
    is(shmreg_dialog_bind(h, (shmreg_str){"c@h", 3}, (shmreg_str){"l", 1}, (shmreg_str){"r", 1}, &sid), 0,
       "shard 255: a dialog bind does not block");
    shmreg_close(h);
}

/* 3. A free-list link into the middle of a block, with a free block cut
 * off behind it: check --repair walked the list through raw offsets. */
static void test_free_link_open(void)
{
    shmreg_id id[3];
    shmreg *h = make("link2", &id[0]);
    for (int i = 1; i < 3; i++) {
        shmreg_session_create(h, NULL, &id[i]);
        shmreg_session_set_sdp(h, &id[i], SHMREG_SDP_LOCAL, sdp, 1000);
    }
    for (int i = 0; i < 3; i++)
        shmreg_session_delete(h, &id[i]);
    while (shm_reclaim(&h->c) > 0)
        ;
    const shm_seg *s = &h->c.seg;
    shm_freelist *fl = NULL;
    for (unsigned k = 0; k < SHM_NCLASS && !fl; k++)
        for (unsigned sh = 0; sh < SHM_SHARDS && !fl; sh++)
            if (s->ctl->heap[k][sh].nfree >= 2 && shm_class_size(k) >= 1000)
                fl = &s->ctl->heap[k][sh];
    if (!ok(fl != NULL, "a free list holds the deleted SDPs")) {
        shmreg_close(h);
        return;
    }
    shm_blk *a = (shm_blk *)(s->base + fl->head);
    atomic_store(&a->link, fl->head + 3); /* misaligned, inside a block */
    uint64_t problems;
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "bad link: plain check says ECORRUPT");
    shmreg_check_report r;
    int rc = shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    ok(rc == 0 || rc == SHMREG_ECORRUPT, "bad link: check --repair returns (%d), no signal", rc);
    ok(r.reclaimed_blocks >= 1, "bad link: repair gives back the block cut off (%llu)",
       (unsigned long long)r.reclaimed_blocks);
    is(plain_check(h, &problems), 0, "bad link: after repair, check is clean");
    shmreg_close(h);
}

/* 4-5. Lock words: garbage (every bit set; a number naming no handle) is
 * taken over like a dead holder's lock; a lock held by a live process
 * that never lets go costs a bounded wait and an error, not a hang. */
static void test_locks(void)
{
    shmreg_id id;
    shmreg *h = make("locks", &id);
    shm_freelist *fl = carving_list(h);
    memset(&fl->lock, 0xff, sizeof fl->lock);
    atomic_store(&h->sessions.stripe[7].word, 0x12345678u);
    uint64_t problems;
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "garbage lock words: plain check says ECORRUPT");
    ok(problems >= 1, "garbage lock words: named as problems (%llu)", (unsigned long long)problems);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 1000), 0,
       "an all-ones lock word is taken over: the allocation works");
    is(shm_lock_take(&h->c, &h->sessions.stripe[7]), 1,
       "a stripe word naming no handle is taken over as from a dead holder");
    shm_lock_drop(&h->sessions.stripe[7]);
    is(atomic_load(&h->sessions.stripe[7].word), 0, "and is free after the drop");

    /* A live holder that never lets go: a child sleeping, named as the
     * holder of the page lock and of one free list. */
    pid_t kid = fork();
    if (kid == 0) {
        pause();
        _exit(0);
    }
    atomic_store(&fl->lock.word, 0x40000000u | (uint32_t)kid);
    double t0 = test_mono_s();
    shmreg_check_report r;
    int rc = shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    double el = test_mono_s() - t0;
    is(rc, SHMREG_ECORRUPT, "a lock held by a live stuck process: check --repair says ECORRUPT");
    ok(el < 10.0, "within a bounded wait (%.1f s)", el);
    kill(kid, SIGKILL);
    test_wait(kid);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 1000), 0,
       "once that holder is dead, its lock is taken over");
    shmreg_close(h);
}

/* 4. shmregctl check over locks a live process holds for ever: each wait
 * is bounded, but there are hundreds; SIGINT must end it at once. */
static double sigint_at;
static int sigint_sent;

static void send_sigint(pid_t pid, void *arg)
{
    (void)arg;
    if (!sigint_sent && test_mono_s() >= sigint_at) {
        kill(pid, SIGINT);
        sigint_sent = 1;
    }
}

static void test_ctl_sigint(void)
{
    shmreg_id id;
    shmreg *h = make("sigint", &id);
    char path[512];
    snprintf(path, sizeof path, "%s", shmreg_path(h));
    pid_t kid = fork();
    if (kid == 0) {
        pause();
        _exit(0);
    }
    shm_control *c = h->c.seg.ctl;
    for (unsigned k = 0; k < SHM_NCLASS; k++)
        for (unsigned sh = 0; sh < SHM_SHARDS; sh++)
            atomic_store(&c->heap[k][sh].lock.word, 0x40000000u | (uint32_t)kid);
    ctl_res r;
    char *argv[] = {(char *)ctl_bin(), "-r", path, "check", NULL};
    sigint_at = test_mono_s() + 0.5;
    sigint_sent = 0;
    double t0 = test_mono_s();
    ctl_spawn(&r, NULL, 0, argv, send_sigint, NULL, 60);
    double el = test_mono_s() - t0;
    is(r.status, 130, "shmregctl check stuck on held locks: SIGINT ends it with 130");
    ok(el < 10.0, "at once (%.1f s; the locks alone would take minutes)", el);
    ok(strstr(r.err, "interrupted") != NULL, "and it says so (%s)", r.err);
    ctl_res_free(&r);
    kill(kid, SIGKILL);
    test_wait(kid);
    shmreg_close(h);
}

/* 6. The ring's stall bounds are read by every producer: attach refuses
 * garbage instead of letting a create wait for ever. */
static void test_live_ns(uint64_t value, const char *what)
{
    shmreg_id id;
    shmreg *h = make("livens", &id);
    char path[512];
    snprintf(path, sizeof path, "%s", shmreg_path(h));
    _Atomic uint64_t *live = (_Atomic uint64_t *)(h->c.seg.base + h->c.seg.off_ring + 40);
    atomic_store(live, value);
    shmreg *h2 = NULL;
    is(shmreg_open(path, NULL, &h2), SHMREG_ECORRUPT, "ring live_ns %s: open says ECORRUPT", what);
    ok(strstr(shmreg_errmsg(), "ring") != NULL, "and names the ring (%s)", shmreg_errmsg());
    atomic_store(live, SHM_RING_LIVE_NS);
    is(shmreg_open(path, NULL, &h2), 0, "restored: open works");
    shmreg_close(h2);
    shmreg_close(h);
}

/* 7. A session's owner word: a node no session here can have makes the
 * changes refuse with ECORRUPT (not EFOREIGN, which would send an
 * operator looking for a node that is not there), the check names it, and
 * in a registry without node IDs its repair makes the session its own. */
static _Atomic uint32_t *owner_word(shmreg *h, const shmreg_id *id)
{
    uint32_t si;
    uint64_t st;
    if (reg_find(h, id->bytes, &si, &st) != 0)
        bail_out("find: %s", shmreg_errmsg());
    return &reg_slot(h, si)->owner_node;
}

static void test_owner(void)
{
    shmreg_id id;
    shmreg *h = make("owner", &id);
    _Atomic uint32_t *owner = owner_word(h, &id);
    atomic_store(owner, 7);
    is(shmreg_session_delete(h, &id), SHMREG_ECORRUPT, "owner 7, no node IDs: delete says ECORRUPT");
    ok(strstr(shmreg_errmsg(), "owner node 7") != NULL, "and names the owner (%s)", shmreg_errmsg());
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 10), SHMREG_ECORRUPT, "an SDP replace too");
    shmreg_session v;
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &id, &v), 0, "the session is still read");
    shmreg_read_end(h);
    uint64_t problems;
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "owner 7: plain check says ECORRUPT");
    is(problems, 1, "owner 7: one problem");
    shmreg_check_report r;
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, show, NULL, NULL);
    is(atomic_load(owner), 0, "the repair makes the session its own (owner 0)");
    is(plain_check(h, &problems), 0, "a check after it is clean");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, 10), 0, "the SDP replace works");
    is(shmreg_session_delete(h, &id), 0, "so does the delete");
    shmreg_close(h);

    shmreg_options o = opts;
    o.node_id = 1;
    if (shmreg_open(test_dir("owner-node"), &o, &h) != 0 || shmreg_session_create(h, NULL, &id) != 0)
        bail_out("node registry: %s", shmreg_errmsg());
    owner = owner_word(h, &id);
    atomic_store(owner, SHMREG_NODE_MAX + 1);
    is(shmreg_session_delete(h, &id), SHMREG_ECORRUPT, "node 1, owner over SHMREG_NODE_MAX: ECORRUPT");
    is(plain_check(h, &problems), SHMREG_ECORRUPT, "the check says ECORRUPT");
    is(problems, 1, "one problem");
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, show, NULL, NULL);
    is(atomic_load(owner), SHMREG_NODE_MAX + 1, "the repair cannot know whose it is: left as it is");
    atomic_store(owner, 2);
    is(shmreg_session_delete(h, &id), SHMREG_EFOREIGN, "owner 2 (a node that may exist): EFOREIGN");
    is(plain_check(h, &problems), 0, "and the check finds nothing wrong");
    atomic_store(owner, 1);
    is(shmreg_session_delete(h, &id), 0, "its own again: delete works");
    shmreg_close(h);
}

int main(void)
{
    alarm(120); /* a hang anywhere fails the run */
    test_cursor(0x7fffffffu, "0x7fffffff");
    test_cursor(0, "heap_pages + 1");
    test_shard();
    test_shard_stripes();
    test_free_link_open();
    test_locks();
    test_ctl_sigint();
    test_live_ns(~0ull, "all ones");
    test_live_ns(0, "zero");
    test_owner();
    return done_testing();
}
