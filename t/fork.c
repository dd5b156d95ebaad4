/*
 * fork.c — handles and fork().
 *
 * A handle belongs to the process that opened it. In a forked child every
 * call on the inherited handle returns SHMREG_EFORK and changes nothing;
 * closing it in the child only drops the child's copy. The child opens its
 * own handle and works normally. A child that dies without closing leaves
 * a dead handle slot that shmreg_reap clears.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

static char path[400];
static shmreg *h;             /* the parent's handle, inherited by children */
static shmreg_id sid;         /* a session the parent made */

/* Runs in a child: every call on the inherited handle is SHMREG_EFORK. */
static void misuse_inherited(void *arg)
{
    (void)arg;
    shmreg_session v;
    shmreg_dialog d;
    shmreg_stats st;
    shmreg_handle_info hi;
    shmreg_check_report rep;
    shmreg_id id;
    shmreg_fields f;
    uint64_t cur = 0, counts[SHMREG_STATE_COUNT];
    memset(&f, 0, sizeof f);

    is(shmreg_read_begin(h), SHMREG_EFORK, "read_begin on an inherited handle");
    is(shmreg_read_end(h), SHMREG_EFORK, "read_end on an inherited handle");
    is(shmreg_session_get(h, &sid, &v), SHMREG_EFORK, "session_get on an inherited handle");
    is(shmreg_session_create(h, &f, &id), SHMREG_EFORK, "session_create on an inherited handle");
    is(shmreg_session_update(h, &sid, &f, SHMREG_MASK(SHMREG_FIELD_CODEC)), SHMREG_EFORK,
       "session_update on an inherited handle");
    is(shmreg_session_set_sdp(h, &sid, SHMREG_SDP_LOCAL, "x", 1), SHMREG_EFORK,
       "set_sdp on an inherited handle");
    is(shmreg_session_transition(h, &sid, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL),
       SHMREG_EFORK, "transition on an inherited handle");
    is(shmreg_session_counter_add(h, &sid, SHMREG_CTR_PACKETS_SENT, 1), SHMREG_EFORK,
       "counter_add on an inherited handle");
    is(shmreg_session_delete(h, &sid), SHMREG_EFORK, "session_delete on an inherited handle");
    is(shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v), SHMREG_EFORK,
       "session_next on an inherited handle");
    is(shmreg_session_counts(h, counts, SHMREG_STATE_COUNT), SHMREG_EFORK, "session_counts on an inherited handle");
    is(shmreg_dialog_bind(h, SS("c2"), SS("l"), SS("r"), &sid), SHMREG_EFORK,
       "dialog_bind on an inherited handle");
    is(shmreg_dialog_find(h, SS("c"), SS("l"), SS("r"), &id), SHMREG_EFORK,
       "dialog_find on an inherited handle");
    is(shmreg_dialog_unbind(h, SS("c"), SS("l"), SS("r")), SHMREG_EFORK,
       "dialog_unbind on an inherited handle");
    cur = 0;
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_EFORK, "dialog_next on an inherited handle");
    is(shmreg_session_dialog(h, &sid, 0, &d), SHMREG_EFORK, "session_dialog on an inherited handle");
    is(shmreg_stat(h, &st), SHMREG_EFORK, "stat on an inherited handle");
    cur = 0;
    is(shmreg_handle_next(h, &cur, &hi), SHMREG_EFORK, "handle_next on an inherited handle");
    is(shmreg_reap(h), SHMREG_EFORK, "reap on an inherited handle");
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), SHMREG_EFORK, "check on an inherited handle");

    /* The child's own handle works. */
    shmreg *c = NULL;
    is(shmreg_open(path, NULL, &c), 0, "the child opens its own handle");
    is(shmreg_read_begin(c), 0, "and reads with it");
    is(shmreg_session_get(c, &sid, &v), 0, "it sees the parent's session");
    ok(v.str[SHMREG_FIELD_FROM_URI].len == 12 &&
       !memcmp(v.str[SHMREG_FIELD_FROM_URI].ptr, "sip:parent@x", 12), "with its fields");
    is(shmreg_read_end(c), 0, "read_end on its own handle");
    is(shmreg_session_transition(c, &sid, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL), 0,
       "the child moves the session to Ringing");
    is(shmreg_session_create(c, NULL, &id), 0, "the child creates a session");
    is(shmreg_close(c), 0, "the child closes its own handle");

    int rc = shmreg_close(h);
    ok(rc == 0 || rc == SHMREG_EFORK, "closing the inherited handle returns 0 or SHMREG_EFORK (%d)", rc);
}

static void close_inherited(void *arg)
{
    (void)arg;
    int rc = shmreg_close(h);
    ok(rc == 0 || rc == SHMREG_EFORK, "closing the inherited handle returns (%d)", rc);
}

struct pipes { int ready[2], release[2]; };

/* Opens its own handle, enters a read section, says so, waits, dies. */
static void attach_and_die(void *arg)
{
    struct pipes *p = arg;
    shmreg *c = NULL;
    char ch = 'n';
    close(p->ready[0]);
    close(p->release[1]);
    if (shmreg_open(path, NULL, &c) == 0 && shmreg_read_begin(c) == 0)
        ch = 'y';
    if (write(p->ready[1], &ch, 1) != 1)
        _exit(3);
    if (read(p->release[0], &ch, 1) < 0)
        _exit(4);
    _exit(0);   /* no read_end, no close */
}

struct handles { int n, self, others; shmreg_handle_info own, other; };

static struct handles list_handles(void)
{
    struct handles r;
    memset(&r, 0, sizeof r);
    uint64_t cur = 0;
    shmreg_handle_info hi;
    while (r.n < 100 && shmreg_handle_next(h, &cur, &hi) == 0) {
        r.n++;
        if (hi.self) { r.self++; r.own = hi; }
        else { r.others++; r.other = hi; }
    }
    return r;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof path, "%s", test_dir("fork"));
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 64;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:parent@x");
    is(shmreg_session_create(h, &f, &sid), 0, "the parent creates a session");
    shmreg_session_set_sdp(h, &sid, SHMREG_SDP_LOCAL, "parent-sdp", 10);
    is(shmreg_dialog_bind(h, SS("c"), SS("l"), SS("r"), &sid), 0, "and binds a dialog to it");

    pid_t pid = test_fork(misuse_inherited, NULL);
    is(test_wait(pid), 0,
       "in a child, every call on the inherited handle gives SHMREG_EFORK; its own handle works");

    /* Nothing the child tried on the inherited handle happened; what it did
     * with its own handle did. */
    shmreg_session v;
    is(shmreg_read_begin(h), 0, "the parent's handle still works after the child closed its copy");
    is(shmreg_session_get(h, &sid, &v), 0, "the parent's session is still there");
    is(v.state, SHMREG_STATE_RINGING, "in the state the child's own handle set");
    ok(v.sdp[0].len == 10 && !memcmp(v.sdp[0].ptr, "parent-sdp", 10), "with the parent's SDP");
    is(v.counter[SHMREG_CTR_PACKETS_SENT], 0, "no counter was added");
    is(v.ndialogs, 1, "one dialog, as before");
    shmreg_read_end(h);
    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], 2, "two sessions: the parent's and the one the child made with its own handle");
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.handles, 1, "the child's own handle is gone: one handle attached");
    struct handles hs = list_handles();
    is(hs.n, 1, "handle_next lists one handle");
    ok(hs.self == 1 && hs.own.pid == getpid() && hs.own.alive == 1,
       "the parent's own: self, our pid, alive");
    shmreg_id id;
    is(shmreg_session_create(h, NULL, &id), 0, "the parent creates another session");
    is(shmreg_session_transition(h, &id, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL), 0,
       "and transitions it");
    is(shmreg_session_delete(h, &id), 0, "and deletes it");

    /* A child closing its copy while the parent is inside a read section
     * does not end the parent's section. */
    is(shmreg_read_begin(h), 0, "the parent opens a read section");
    shmreg_session_get(h, &sid, &v);
    shmreg_str held = v.sdp[0];
    pid = test_fork(close_inherited, NULL);
    is(test_wait(pid), 0, "a child closes the inherited handle");
    is(shmreg_session_get(h, &sid, &v), 0, "the parent is still inside its read section");
    hs = list_handles();
    is(hs.own.in_read, 1, "handle_next shows the parent's section open");
    for (int i = 0; i < 50; i++)
        shmreg_session_set_sdp(h, &sid, SHMREG_SDP_LOCAL, "replaced!!", 10);
    ok(held.len == 10 && !memcmp(held.ptr, "parent-sdp", 10),
       "its SDP pointer still reads the old bytes");
    is(shmreg_read_end(h), 0, "and read_end closes the section");
    hs = list_handles();
    is(hs.own.in_read, 0, "handle_next shows no section open");

    /* A child that attaches and dies without closing. */
    struct pipes p;
    if (pipe(p.ready) || pipe(p.release))
        bail_out("pipe: %s", strerror(errno));
    uint64_t t0 = test_now_ns();
    pid = test_fork(attach_and_die, &p);
    close(p.ready[1]);
    close(p.release[0]);
    char ch = 0;
    ok(read(p.ready[0], &ch, 1) == 1 && ch == 'y', "a child opens its own handle and a read section");
    shmreg_stat(h, &st);
    is(st.handles, 2, "stat.handles is 2");
    ok(st.oldest_read_ns > 0, "stat.oldest_read_ns shows the child's open section");
    hs = list_handles();
    is(hs.n, 2, "handle_next lists two handles");
    ok(hs.self == 1 && hs.own.pid == getpid() && hs.own.alive == 1 && hs.own.in_read == 0,
       "ours: self, our pid, alive, not reading");
    ok(hs.others == 1 && hs.other.pid == pid && hs.other.alive == 1 && hs.other.self == 0,
       "the child's: its pid, alive, not self");
    is(hs.other.in_read, 1, "the child's shows its read section open");
    ok(hs.other.attached_ns + 1000000000ull >= t0 && hs.other.attached_ns <= test_now_ns(),
       "and when it attached");
    ok(hs.own.slot != hs.other.slot, "in different slots");
    is(shmreg_reap(h), 0, "reap clears nothing while the child lives");

    close(p.release[1]);
    is(test_wait(pid), 0, "the child exits without closing");
    hs = list_handles();
    ok(hs.others == 0 || (hs.other.pid == pid && hs.other.alive == 0),
       "handle_next shows the dead child's handle as not alive");
    is(shmreg_reap(h), 1, "reap clears the dead child's handle: returns 1");
    shmreg_stat(h, &st);
    is(st.handles, 1, "stat.handles drops to 1");
    is(st.oldest_read_ns, 0, "and no read section is open any more");
    hs = list_handles();
    ok(hs.n == 1 && hs.self == 1, "handle_next lists only our own handle");
    is(shmreg_reap(h), 0, "a second reap finds nothing");
    close(p.ready[0]);

    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
