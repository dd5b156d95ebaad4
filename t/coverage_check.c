/*
 * coverage_check.c — shmreg_check on damage it must name and, where the
 * damage is to its own bookkeeping, repair: a free list whose link points
 * outside the heap (the check names it, its repair cuts the list there and
 * gives back the blocks that were beyond, and a second check is clean), a
 * free list whose head does (the allocator drops it), an orphan's limbo
 * list broken the same way (the reap cuts it), a room table entry that is
 * not a room, a session chained in the wrong bucket, a dialog reference
 * that is not a record.
 *
 * Why here and not in t/corrupt.c: these are the check's own lines that
 * `make coverage` showed unrun, each with the exact report it must give.
 * Uses the private headers to do the damage precisely.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reg.h"
#include "tap.h"
#include "testutil.h"

#define N 10
#define FAR (1ull << 40) /* an offset far outside any segment */

static shmreg *h;
static const char *path;

static void count_problem(void *arg, const char *what)
{
    (void)arg;
    note("check: %s", what);
}

static shmreg_check_report check(unsigned flags, int want_rc)
{
    shmreg_check_report r;
    int rc = shmreg_check(h, flags, &r, count_problem, NULL, NULL);
    if (rc != want_rc)
        diag("shmreg_check returned %d, wanted %d", rc, want_rc);
    return r;
}

/* The free list holding the blocks of the session's record class. */
static shm_freelist *info_list(uint64_t *first)
{
    shmreg_id id;
    uint32_t si;
    shmreg_session_create(h, NULL, &id);
    shmreg_read_begin(h);
    uint64_t word;
    reg_find(h, id.bytes, &si, &word);
    shmreg_read_end(h);
    *first = atomic_load(&reg_slot(h, si)->rec);
    shm_freelist *fl = shm_blk_list(&h->c.seg, *first);
    shmreg_session_delete(h, &id);
    return fl;
}

static void t_free_list(void)
{
    shmreg_id ids[N];
    uint64_t first;
    shm_freelist *fl = info_list(&first);
    for (int i = 0; i < N; i++)
        shmreg_session_create(h, NULL, &ids[i]);
    for (int i = 0; i < N; i++)
        shmreg_session_delete(h, &ids[i]);
    shmreg_check_report r = check(SHMREG_CHECK_REPAIR, 0); /* ends by reclaiming our limbo */
    is(fl->nfree, N + 1, "%d record blocks are on their free list", N + 1);
    uint64_t third = atomic_load(&((shm_blk *)(h->c.seg.base + fl->head))->link);
    third = atomic_load(&((shm_blk *)(h->c.seg.base + third))->link);
    shm_blk *b3 = (shm_blk *)(h->c.seg.base + third);
    atomic_store(&b3->link, FAR);

    r = check(0, SHMREG_ECORRUPT);
    is(r.problems, 2, "a link outside the heap: the entry and the count are named (2 problems)");
    is(r.leaked_blocks, N + 1 - 3, "the %d blocks beyond it are off every list", N + 1 - 3);
    uint32_t size = shm_class_size(((shm_blk *)(h->c.seg.base + first))->cls);
    is(size, 80, "an empty session's record block is 80 bytes (48 of record header, 32 of block)");
    is(r.leaked_bytes, (N + 1 - 3) * size, "of %u bytes each", size);
    r = check(SHMREG_CHECK_REPAIR, SHMREG_ECORRUPT);
    is(r.problems, 2, "a repairing check names the same 2 problems");
    is(r.reclaimed_blocks, N + 1 - 3, "it cuts the list at the bad link and gives back the %d beyond",
       N + 1 - 3);
    r = check(0, 0);
    ok(r.problems == 0 && r.leaked_blocks == 0, "a second check is clean (%llu problems, %llu leaked)",
       (unsigned long long)r.problems, (unsigned long long)r.leaked_blocks);
    is(fl->nfree, N + 1, "all %d blocks are on the list again", N + 1);
    int rc = 0;
    for (int i = 0; i < N; i++)
        rc |= shmreg_session_create(h, NULL, &ids[i]);
    for (int i = 0; i < N; i++)
        rc |= shmreg_session_delete(h, &ids[i]);
    is(rc, 0, "and they are handed out and given back again");
}

static void t_limbo(void)
{
    /* An orphaned handle (closed with retired blocks left) whose limbo
     * list points outside the heap. */
    const shm_seg *s = &h->c.seg;
    uint32_t i = s->max_handles - 1;
    shm_handles_raise(s, i + 1); /* an orphan is a slot once claimed */
    atomic_store(&s->handles[i].limbo_head, FAR);
    atomic_store(&s->handles[i].word, SHM_H_ORPHAN);
    shmreg_check_report r = check(0, SHMREG_ECORRUPT);
    is(r.problems, 1, "a limbo list pointing outside the heap is named");
    r = check(SHMREG_CHECK_REPAIR, 0);
    is(r.problems, 0, "a repairing check's reap cuts the list there first, so nothing is left to name");
    ok(atomic_load(&s->handles[i].limbo_head) == 0 && SHM_H_KIND(atomic_load(&s->handles[i].word)) == SHM_H_FREE,
       "the list is empty and the slot free again");
}

/* A handle in use above the handle table's high-water mark, which only a
 * scribble makes: reclamation scans up to the mark and would not see its
 * reader. The check names it; the repair raises the mark. */
static void t_handle_mark(void)
{
    const shm_seg *t = &h->c.seg;
    atomic_store(&t->hdr->handles_hwm, 1000);
    is(shm_handles_used(t), t->max_handles, "a mark scribbled to 1000 is clamped to the table's %u",
       t->max_handles);
    uint32_t i = t->max_handles - 2;
    atomic_store(&t->hdr->handles_hwm, 1);
    atomic_store(&t->handles[i].word, SHM_H_CLAIMING | ((uint64_t)getpid() << 8));
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, count_problem, NULL, NULL), SHMREG_ECORRUPT,
       "a mark scribbled down to 1, a handle in use in slot %u: the check says SHMREG_ECORRUPT", i);
    is(r.problems, 1, "with one problem");
    is(shm_handles_used(t), 1, "a check that does not repair leaves the mark as it is");
    is(shmreg_check(h, SHMREG_CHECK_REPAIR, &r, count_problem, NULL, NULL), SHMREG_ECORRUPT,
       "a repairing check names it too");
    is(shm_handles_used(t), i + 1, "and raises the mark over it (%u)", i + 1);
    is(shmreg_check(h, 0, &r, count_problem, NULL, NULL), 0, "after which the check is clean");
    atomic_store(&t->handles[i].word, SHM_H_FREE);
}

/* A free list whose head is not a block: the next allocation drops the
 * list rather than hand the block out, and the repair gives back what it
 * held. */
static void t_bad_head(void)
{
    uint64_t first;
    shm_freelist *fl = info_list(&first);
    check(SHMREG_CHECK_REPAIR, 0); /* the deleted session's blocks back on their lists */
    uint64_t held = fl->nfree;
    ok(held > 0, "the info list holds %llu blocks", (unsigned long long)held);
    fl->head = FAR;
    shmreg_id id;
    is(shmreg_session_create(h, NULL, &id), 0, "a create with a wild list head still succeeds");
    is(fl->nfree, 0, "the allocator dropped the list instead of following it");
    shmreg_check_report r = check(SHMREG_CHECK_REPAIR, 0);
    is(r.leaked_blocks, held, "the repair finds the %llu blocks the list held", (unsigned long long)held);
    is(r.reclaimed_blocks, held, "and gives them back");
    is(shmreg_session_delete(h, &id), 0, "the session deletes");
}

/* A room table entry that is not a room. */
static void t_room_table(void)
{
    uint32_t i = 0;
    while (i < h->room_slots && atomic_load(&h->rooms[i]) != 0)
        i++;
    atomic_store(&h->rooms[i], FAR);
    shmreg_check_report r = check(0, SHMREG_ECORRUPT);
    is(r.problems, 1, "a room table entry that is not a room is named");
    shmreg_id room;
    memset(&room, 0, sizeof room);
    room.bytes[0] = (unsigned char)i; /* hashes to that entry */
    shmreg_room rv;
    shmreg_read_begin(h);
    is(shmreg_room_get(h, &room, &rv), SHMREG_ECORRUPT, "a lookup that meets it: ECORRUPT, not a wild read");
    shmreg_read_end(h);
    atomic_store(&h->rooms[i], 0);
    is(check(0, 0).problems, 0, "restored, the check is clean");
}

static int progress_calls;
static void progress(void *arg, uint64_t done, uint64_t total)
{
    (void)arg;
    progress_calls += done <= total;
}

static void t_session_refs(void)
{
    /* A session away from the slot its ID names, so that it is in the ID
     * index: restored with an ID naming the slot `home` already holds. */
    shmreg_id home, id;
    uint32_t si;
    shmreg_session_create(h, NULL, &home);
    shmreg_session s;
    memset(&s, 0, sizeof s);
    s.id = home;
    s.id.bytes[12] ^= 0x5a;
    s.state = SHMREG_STATE_ACTIVE;
    is(shmreg_session_restore(h, &s, 0), 0, "restore a session whose ID names a taken slot");
    id = s.id;
    shmreg_dialog_bind(h, (shmreg_str){"c", 1}, (shmreg_str){"l", 1}, (shmreg_str){"r", 1}, &id);
    shmreg_read_begin(h);
    uint64_t word;
    reg_find(h, id.bytes, &si, &word);
    shmreg_read_end(h);
    reg_sess *x = reg_slot(h, si);

    uint64_t rec = atomic_load(&x->dlg[0]);
    atomic_store(&x->dlg[1], 4096 + 8);
    shmreg_check_report r = check(0, SHMREG_ECORRUPT);
    is(r.problems, 1, "a dialog reference that is not a record is named");
    atomic_store(&x->dlg[1], 0);

    /* The same ID bytes but one bit of the hash bytes (9-14), chosen so
     * that the bucket changes: chained in a bucket it does not hash to. */
    uint64_t mask = h->sessions.buckets - 1, b0 = reg_id_hash(x->id) & mask;
    unsigned bit = 0;
    for (; bit < 48; bit++) {
        x->id[9 + bit / 8] ^= (unsigned char)(1u << bit % 8);
        if ((reg_id_hash(x->id) & mask) != b0)
            break;
        x->id[9 + bit / 8] ^= (unsigned char)(1u << bit % 8);
    }
    r = check(0, SHMREG_ECORRUPT);
    is(r.problems, 3, "a session whose ID changed: chained in the wrong bucket, missing from its own, "
       "and its dialog names another session (3 problems)");
    x->id[9 + bit / 8] ^= (unsigned char)(1u << bit % 8);
    r = check(0, 0);
    is(r.problems, 0, "restored, the check is clean");
    is(shmreg_dialog_unbind(h, (shmreg_str){"c", 1}, (shmreg_str){"l", 1}, (shmreg_str){"r", 1}), 0,
       "the dialog unbinds");
    is(atomic_load(&x->dlg[0]), 0, "and its reference %llu is cleared", (unsigned long long)rec);
    is(shmreg_session_delete(h, &id), 0, "the session deletes");
    is(shmreg_session_delete(h, &home), 0, "and so does the one in the slot its ID named");
}

int main(void)
{
    path = test_dir("coverage-check");
    if (shmreg_open(path, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 64, .max_handles = 8}, &h))
        bail_out("open: %s", shmreg_errmsg());
    t_free_list();
    t_limbo();
    t_handle_mark();
    t_bad_head();
    t_room_table();
    t_session_refs();
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, progress), 0, "a check with a progress callback");
    ok(progress_calls >= 2, "calls it as it goes and at the end (%d)", progress_calls);
    r = check(SHMREG_CHECK_REPAIR, 0);
    ok(r.problems == 0 && r.leaked_blocks == 0, "the registry ends clean");
    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
