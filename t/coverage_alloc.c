/*
 * coverage_alloc.c — the allocator when the heap is full: a process whose
 * own shard has no page left carves from another shard's partly carved
 * page; a writer whose retired memory a live reader pins waits a moment
 * and reports full; once the reader leaves, or is killed and reaped by the
 * allocation itself, the same allocation succeeds.
 *
 * Why: these are the paths of a full heap, which no other test fills; a
 * registry that is full is exactly when they must be right. The heap is
 * made tiny (8 pages of 256 KiB) so that full is reached in a few calls
 * and every figure is exact: 60 KiB blocks (60,000-byte SDPs) come 4 to
 * a page.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define BIG 60000u   /* an SDP in the 60 KiB class */
#define SMALL 100u   /* an SDP in a small class */
#define NS 40

static const char *path;
static shmreg *h;
static shmreg_id s[NS];
static char big[BIG];

/* In another process (another shard): a record with a small SDP (a new
 * one of the same size) must find room in the page shard 0 is carving; a
 * big one finds none. */
static void other_shard(void *arg)
{
    (void)arg;
    shmreg *c;
    char sdp[SMALL];
    memset(sdp, 's', sizeof sdp);
    if (shmreg_open(path, NULL, &c) != 0)
        _exit(2);
    if (shmreg_session_set_sdp(c, &s[0], SHMREG_SDP_LOCAL, sdp, sizeof sdp) != 0)
        _exit(3);
    if (shmreg_session_set_sdp(c, &s[1], SHMREG_SDP_REMOTE, big, sizeof big) != SHMREG_EFULL)
        _exit(4);
    shmreg_close(c);
}

static int fill(int from)
{
    int n = from;
    while (n < NS && shmreg_session_set_sdp(h, &s[n], SHMREG_SDP_LOCAL, big, sizeof big) == 0)
        n++;
    return n - from;
}

/* Every write that needs a block of a class with no page left: EFULL, and
 * nothing changed (a refused create gives its session slot back). */
static void full_refusals(const shmreg_id *room)
{
    static char uri[500];
    memset(uri, 'u', sizeof uri);
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){uri, sizeof uri};
    shmreg_stats a, b;
    shmreg_stat(h, &a);
    shmreg_id id, r2;
    is(shmreg_session_create(h, &f, &id), SHMREG_EFULL, "full: a session with a 500-byte URI: EFULL");
    is(shmreg_session_update(h, &s[0], &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI)), SHMREG_EFULL,
       "full: an update to a 500-byte URI: EFULL");
    is(shmreg_dialog_bind(h, (shmreg_str){"c", 1}, (shmreg_str){"l", 1}, (shmreg_str){"r", 1}, &s[0]),
       SHMREG_EFULL, "full: a dialog: EFULL");
    is(shmreg_room_create(h, (shmreg_str){"r", 1}, 1, &r2), SHMREG_EFULL, "full: a one-seat room: EFULL");
    is(shmreg_room_join(h, room, &s[0], (shmreg_str){"u", 1}, (shmreg_str){"d", 1}, 1), SHMREG_EFULL,
       "full: a participant: EFULL");
    shmreg_id in;
    is(shmreg_session_room(h, &s[0], &in), SHMREG_ENOENT, "and the session is in no room");
    shmreg_stat(h, &b);
    ok(a.sessions == b.sessions && a.heap_used_bytes == b.heap_used_bytes && b.dialogs == 0,
       "none of them changed anything (%u sessions, %llu heap bytes)", b.sessions,
       (unsigned long long)b.heap_used_bytes);
    is(shmreg_session_create(h, NULL, &id), 0, "a session with no strings still fits (its slot came back)");
    is(shmreg_session_delete(h, &id), 0, "and deletes");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    path = test_dir("coverage-alloc");
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 64, .max_handles = 8,
                        .heap_bytes = 8u * 256u * 1024u};
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    memset(big, 'b', sizeof big);
    char sdp[SMALL];
    memset(sdp, 'p', sizeof sdp);
    int rc = 0;
    for (int i = 0; i < NS; i++)
        rc |= shmreg_session_create(h, NULL, &s[i]);
    rc |= shmreg_session_set_sdp(h, &s[0], SHMREG_SDP_LOCAL, sdp, sizeof sdp);
    is(rc, 0, "%d sessions, one with a small SDP (shard 0 carves a page of its class)", NS);

    shmreg_id room;
    is(shmreg_room_create(h, (shmreg_str){"r", 1}, 3, &room), 0, "a room of 3 seats");

    /* One page each for empty session records, records with a small SDP
     * and rooms, the rest for records with a big SDP. */
    shmreg_stats st;
    shmreg_stat(h, &st);
    int pages = (int)(st.heap_bytes / (256u * 1024u));
    int last = 1 + fill(1);
    is(last - 1, (pages - 3) * 4, "%d SDPs of 60 KiB fill the heap: %d pages of 4", (pages - 3) * 4, pages - 3);
    full_refusals(&room);
    is(shmreg_session_set_sdp(h, &s[last], SHMREG_SDP_LOCAL, big, sizeof big), SHMREG_EFULL,
       "one more: EFULL");
    is(test_wait(test_fork(other_shard, NULL)), 0,
       "another process carves a small SDP from shard 0's page, and gets EFULL for a big one");
    shmreg_session v;
    shmreg_read_begin(h);
    ok(shmreg_session_get(h, &s[0], &v) == 0 && v.sdp[SHMREG_SDP_LOCAL].len == SMALL &&
           v.sdp[SHMREG_SDP_LOCAL].ptr[0] == 's',
       "the small SDP it stored is there");
    shmreg_read_end(h);

    /* A live reader pins what the writer retires: full stays full. */
    test_pin p;
    test_pin_start(&p, path);
    rc = 0;
    for (int i = 1; i <= 3; i++)
        rc |= shmreg_session_delete(h, &s[i]);
    is(rc, 0, "with a reader inside, the writer deletes 3 sessions with big SDPs");
    is(shmreg_session_set_sdp(h, &s[last], SHMREG_SDP_LOCAL, big, sizeof big), SHMREG_EFULL,
       "a big SDP: still EFULL, the reader pins the retired ones");
    is(test_pin_release(&p), 0, "the reader leaves and closes");
    is(fill(last), 3, "now 3 big SDPs fit again: the retired ones were reclaimed");
    last += 3;

    /* A reader killed inside its section: the allocation reaps it. */
    test_pin_start(&p, path);
    rc = 0;
    for (int i = 4; i <= 6; i++)
        rc |= shmreg_session_delete(h, &s[i]);
    is(rc, 0, "with another reader inside, 3 more are deleted");
    is(test_pin_kill(&p), 128 + SIGKILL, "the reader is killed inside its section");
    is(fill(last), 3, "3 big SDPs fit: the allocation reaped the dead reader and reclaimed");

    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "the registry checks clean");
    ok(r.problems == 0 && r.leaked_blocks == 0 && r.stale_handles == 0, "no problem, no leak, no stale handle");
    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
