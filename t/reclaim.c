/*
 * reclaim.c — retired memory is reused only when no reader can see it, and
 * then it is reused.
 *
 * A reader in another process holds a read section open with pointers to an
 * SDP and to the fields of a session that then gets deleted; while it is
 * inside, the writer replaces that SDP 5,000 times and the reader's bytes
 * never change, and the heap grows because nothing can be reused. Once the
 * reader leaves (still attached), 50,000 more replacements run in bounded
 * memory. A reader killed inside its section must not pin memory forever:
 * after shmreg_reap, and also without it, memory is reused again.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define SDPLEN 1000u
/* Memory that may stay in use after reuse resumes: the live SDP plus a
 * couple of hundred blocks waiting in limbo, rounded generously. */
#define SLACK (256u * (SDPLEN + 256u))

static char path[400];
static shmreg *h;
static shmreg_id sid, doomed;

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)('A' + (seed >> 16) % 26);
    }
}

static int replace(unsigned count, unsigned first_seed)
{
    char buf[SDPLEN];
    int errs = 0;
    for (unsigned i = 0; i < count; i++) {
        fill(buf, sizeof buf, first_seed + i);
        errs += shmreg_session_set_sdp(h, &sid, SHMREG_SDP_REMOTE, buf, sizeof buf) != 0;
    }
    return errs;
}

struct chan { int to_child[2], to_parent[2]; };

/* Holds a section with pointers into the SDP and the doomed session's
 * fields, checks them until told 'L'eave, then stays attached until EOF. */
static void holding_reader(void *arg)
{
    struct chan *c = arg;
    close(c->to_child[1]);
    close(c->to_parent[0]);
    shmreg *r = NULL;
    shmreg_session v;
    char ch = 'n';
    if (shmreg_open(path, NULL, &r) != 0)
        _exit(2);
    shmreg_read_begin(r);
    if (shmreg_session_get(r, &sid, &v) != 0)
        _exit(3);
    shmreg_str sdp = v.sdp[SHMREG_SDP_REMOTE];
    char *sdp_copy = malloc(sdp.len + 1);
    memcpy(sdp_copy, sdp.ptr, sdp.len);
    if (shmreg_session_get(r, &doomed, &v) != 0)
        _exit(4);
    shmreg_str from = v.str[SHMREG_FIELD_FROM_URI];
    char from_copy[64];
    if (from.len >= sizeof from_copy)
        _exit(5);
    memcpy(from_copy, from.ptr, from.len);
    ch = 'y';
    if (write(c->to_parent[1], &ch, 1) != 1)
        _exit(6);

    fcntl(c->to_child[0], F_SETFL, O_NONBLOCK);
    long checks = 0, changed = 0;
    for (;;) {
        changed += memcmp(sdp.ptr, sdp_copy, sdp.len) != 0;
        changed += memcmp(from.ptr, from_copy, from.len) != 0;
        checks++;
        ssize_t n = read(c->to_child[0], &ch, 1);
        if (n == 1 && ch == 'L')
            break;
        if (n == 0)
            _exit(7);
        if (checks % 64 == 0)
            usleep(100);
    }
    ok(changed == 0, "the held SDP and from URI never changed (%ld checks)", checks);
    ok(checks > 1, "the reader checked them repeatedly while the writer worked (%ld)", checks);
    shmreg_read_end(r);
    free(sdp_copy);
    ch = changed ? 'X' : 'l';
    if (write(c->to_parent[1], &ch, 1) != 1)
        _exit(8);
    fcntl(c->to_child[0], F_SETFL, 0);
    while (read(c->to_child[0], &ch, 1) > 0)   /* attached, idle, until EOF */
        ;
    shmreg_close(r);
}

/* Opens a section and waits to be killed. */
static void doomed_reader(void *arg)
{
    struct chan *c = arg;
    close(c->to_child[1]);
    close(c->to_parent[0]);
    shmreg *r = NULL;
    shmreg_session v;
    char ch = 'n';
    if (shmreg_open(path, NULL, &r) == 0 && shmreg_read_begin(r) == 0 &&
        shmreg_session_get(r, &sid, &v) == 0)
        ch = 'y';
    if (write(c->to_parent[1], &ch, 1) != 1)
        _exit(6);
    for (;;)
        pause();
}

static pid_t start(void (*fn)(void *), struct chan *c)
{
    if (pipe(c->to_child) || pipe(c->to_parent))
        bail_out("pipe: %s", strerror(errno));
    pid_t pid = test_fork(fn, c);
    close(c->to_child[0]);
    close(c->to_parent[1]);
    return pid;
}

static int handle_of(pid_t pid, shmreg_handle_info *out)
{
    uint64_t cur = 0;
    while (shmreg_handle_next(h, &cur, out) == 0)
        if (out->pid == pid)
            return 1;
    return 0;
}

static void test_held_reader(void)
{
    struct chan c;
    char ch = 0;
    shmreg_handle_info hi;
    pid_t pid = start(holding_reader, &c);
    ok(read(c.to_parent[0], &ch, 1) == 1 && ch == 'y',
       "a reader in another process holds a section with an SDP and a from URI");

    shmreg_stats st0 = test_stats(h);
    is(replace(5000, 1000), 0, "the writer replaces that SDP 5,000 times");
    is(shmreg_session_delete(h, &doomed), 0, "and deletes the session whose from URI the reader holds");
    int rc = 0;
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:overwrite-attempt@nowhere.example");
    for (int i = 0; i < 100; i++) {
        shmreg_id id;
        rc |= shmreg_session_create(h, &f, &id);
        rc |= shmreg_session_delete(h, &id);
    }
    is(rc, 0, "then creates and deletes 100 sessions");
    shmreg_stats st1 = test_stats(h);
    diag("heap while the reader is inside: used %llu -> %llu, retired %llu",
         (unsigned long long)st0.heap_used_bytes, (unsigned long long)st1.heap_used_bytes,
         (unsigned long long)st1.heap_retired_bytes);
    ok(st1.heap_used_bytes >= st0.heap_used_bytes + 5000ull * SDPLEN,
       "nothing was reused while the reader was inside: the heap grew by 5,000 SDPs or more");
    ok(st1.heap_retired_bytes >= 5000ull * SDPLEN, "and at least that much is retired");
    ok(st1.oldest_read_ns > 0, "stat shows an open read section");
    ok(handle_of(pid, &hi) && hi.in_read == 1 && hi.alive == 1,
       "handle_next shows the reader alive and inside its section");

    ch = 'L';
    ok(write(c.to_child[1], &ch, 1) == 1 && read(c.to_parent[0], &ch, 1) == 1 && ch == 'l',
       "the reader found its bytes unchanged and left its section");
    ok(handle_of(pid, &hi) && hi.in_read == 0 && hi.alive == 1,
       "it is still attached, outside any section");

    is(replace(50000, 100000), 0, "the writer replaces the SDP 50,000 more times");
    shmreg_stats st2 = test_stats(h);
    diag("heap after: used %llu, retired %llu", (unsigned long long)st2.heap_used_bytes,
         (unsigned long long)st2.heap_retired_bytes);
    ok(st2.heap_used_bytes <= st0.heap_used_bytes + SLACK,
       "memory is reused: heap_used_bytes stays within %u bytes of the start", SLACK);
    ok(st2.heap_used_bytes < st1.heap_used_bytes, "the 5,000 retired SDPs were given back");
    ok(st2.heap_retired_bytes <= SLACK, "little is left waiting in limbo");
    is(st2.oldest_read_ns, 0, "no read section is open");

    close(c.to_child[1]);
    is(test_wait(pid), 0, "the reader closes and exits cleanly");
    close(c.to_parent[0]);
}

static void test_killed_reader(int explicit_reap)
{
    struct chan c;
    char ch = 0;
    shmreg_handle_info hi;
    pid_t pid = start(doomed_reader, &c);
    const char *how = explicit_reap ? "after shmreg_reap" : "without an explicit reap";
    ok(read(c.to_parent[0], &ch, 1) == 1 && ch == 'y', "a reader enters a section (%s case)", how);
    shmreg_stats st0 = test_stats(h);
    is(replace(1000, 7), 0, "the writer replaces the SDP 1,000 times");
    shmreg_stats st1 = test_stats(h);
    ok(st1.heap_retired_bytes >= 1000ull * SDPLEN, "the reader pins the 1,000 old SDPs");
    kill(pid, SIGKILL);
    is(test_wait(pid), 128 + SIGKILL, "the reader is killed with SIGKILL inside its section");
    close(c.to_child[1]);
    close(c.to_parent[0]);

    if (explicit_reap) {
        int listed = handle_of(pid, &hi);
        ok(!listed || hi.alive == 0, "handle_next shows the dead reader as not alive");
        is(shmreg_reap(h), listed, "shmreg_reap clears its handle (%d)", listed);
        ok(!handle_of(pid, &hi), "and handle_next no longer lists it");
        is(test_stats(h).oldest_read_ns, 0, "no read section is open any more");
    }
    is(replace(50000, 5000000), 0, "the writer replaces the SDP 50,000 times");
    shmreg_stats st2 = test_stats(h);
    diag("heap: start %llu, pinned %llu, after %llu (retired %llu)",
         (unsigned long long)st0.heap_used_bytes, (unsigned long long)st1.heap_used_bytes,
         (unsigned long long)st2.heap_used_bytes, (unsigned long long)st2.heap_retired_bytes);
    if (explicit_reap)
        ok(st2.heap_used_bytes <= st0.heap_used_bytes + SLACK,
           "%s memory is reused: the heap stays within %u bytes of the start", how, SLACK);
    else
        ok(st2.heap_used_bytes <= st0.heap_used_bytes + 10000ull * (SDPLEN + 256u),
           "%s memory is reused: the heap grows by far less than 50,000 SDPs", how);
    ok(!handle_of(pid, &hi) || hi.alive == 0, "the dead reader holds nothing");
    shmreg_reap(h);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(path, sizeof path, "%s", test_dir("reclaim"));
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 256;   /* room for the 100 sessions made while slots are pinned */
    o.heap_bytes = 128u << 20;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:doomed@example.org");
    if (shmreg_session_create(h, NULL, &sid) || shmreg_session_create(h, &f, &doomed) ||
        replace(1, 1))
        bail_out("setup failed: %s", shmreg_errmsg());

    test_held_reader();
    test_killed_reader(1);
    test_killed_reader(0);

    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
