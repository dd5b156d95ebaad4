/*
 * vars.c — session variables (issue 17): string keys with string values,
 * up to SHMREG_MAX_VARS per session, replaced as one block (a reader sees
 * the old set or the new one, never a mix) and read in place within a
 * read section.
 *
 * set / get / unset / next, the order of first setting, every limit and
 * error, the view's nvars, the var_changed events; a value read in place
 * stays whole while another process replaces it many times; and a reader
 * walking the set inside one read section, while another process sets two
 * variables in turn, only ever sees pairs that some version held.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })
static const shmreg_str NOSTR = { NULL, 0 };

static shmreg *reg_new(const char *name)
{
    return test_reg_small(name, 32u << 20);
}

static int set(shmreg *h, const shmreg_id *id, const char *k, const char *v)
{
    return shmreg_session_var_set(h, id, test_ss(k), test_ss(v));
}

/* Value of `k` copied into buf (NUL-terminated); returns the rc of get. */
static int get(shmreg *h, const shmreg_id *id, const char *k, char *buf, size_t cap)
{
    shmreg_str v = { NULL, 0 };
    shmreg_read_begin(h);
    int rc = shmreg_session_var_get(h, id, test_ss(k), &v);
    if (rc == 0) {
        size_t n = v.len < cap - 1 ? v.len : cap - 1;
        if (n)
            memcpy(buf, v.ptr, n);
        buf[n] = 0;
    }
    shmreg_read_end(h);
    return rc;
}

static int value_is(shmreg *h, const shmreg_id *id, const char *k, const char *want)
{
    char buf[SHMREG_MAX_VAR_VALUE + 8];
    int rc = get(h, id, k, buf, sizeof buf);
    if (rc != 0 || strcmp(buf, want) != 0) {
        diag("get %s: rc %d value '%s' (want '%s')", k, rc, rc ? "" : buf, want);
        return 0;
    }
    return 1;
}

/* The variables as "k=v,k=v" (one read section). Returns rc of the walk's end. */
static int listing(shmreg *h, const shmreg_id *id, char *out, size_t cap)
{
    uint64_t cur = 0;
    shmreg_str k, v;
    int rc;
    size_t o = 0;
    out[0] = 0;
    shmreg_read_begin(h);
    int n = 0;
    while ((rc = shmreg_session_var_next(h, id, &cur, &k, &v)) == 0 && n++ < 64)
        o += (size_t)snprintf(out + o, o < cap ? cap - o : 0, "%s%.*s=%.*s", o ? "," : "", (int)k.len, k.ptr,
                              (int)v.len, v.ptr);
    shmreg_read_end(h);
    return rc;
}

static int listed_as(shmreg *h, const shmreg_id *id, const char *want)
{
    char buf[8192];
    int rc = listing(h, id, buf, sizeof buf);
    if (rc != SHMREG_ENOENT || strcmp(buf, want) != 0) {
        diag("listing: end %d, '%s' (want '%s')", rc, buf, want);
        return 0;
    }
    return 1;
}

static uint32_t nvars_of(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    uint32_t n = 0xffffffffu;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &v) == 0)
        n = v.nvars;
    shmreg_read_end(h);
    return n;
}

/* ------------------------------------------------------------ basics */

static void test_basics(void)
{
    shmreg *h = reg_new("vars-basics");
    shmreg_id s = test_session_new(h);
    is(nvars_of(h, &s), 0, "a new session has nvars 0");
    ok(listed_as(h, &s, ""), "var_next of it: SHMREG_ENOENT at once");
    is(set(h, &s, "k1", "v1"), 0, "set k1 = v1");
    ok(value_is(h, &s, "k1", "v1"), "get k1: v1");
    is(nvars_of(h, &s), 1, "nvars 1");
    is(set(h, &s, "k2", "v2"), 0, "set k2 = v2");
    is(set(h, &s, "k3", "v3"), 0, "set k3 = v3");
    ok(listed_as(h, &s, "k1=v1,k2=v2,k3=v3"), "var_next: k1, k2, k3 in the order set");
    is(set(h, &s, "k2", "a longer value for k2"), 0, "replace k2");
    ok(value_is(h, &s, "k2", "a longer value for k2"), "get k2: the new value");
    ok(listed_as(h, &s, "k1=v1,k2=a longer value for k2,k3=v3"), "replacing keeps k2 in its place");
    is(nvars_of(h, &s), 3, "nvars 3");
    is(shmreg_session_var_unset(h, &s, S("k2")), 0, "unset k2");
    ok(listed_as(h, &s, "k1=v1,k3=v3"), "var_next: k1, k3");
    is(nvars_of(h, &s), 2, "nvars 2");
    char buf[64];
    is(get(h, &s, "k2", buf, sizeof buf), SHMREG_ENOENT, "get k2: SHMREG_ENOENT");
    is(shmreg_session_var_unset(h, &s, S("k2")), SHMREG_ENOENT, "unset k2 again: SHMREG_ENOENT");
    is(set(h, &s, "k2", "again"), 0, "set k2 again");
    ok(listed_as(h, &s, "k1=v1,k3=v3,k2=again"), "it is now set after k3");
    is(set(h, &s, "K1", "upper"), 0, "set K1 (keys are compared exactly)");
    ok(value_is(h, &s, "K1", "upper") && value_is(h, &s, "k1", "v1"), "K1 and k1 are two variables");
    is(nvars_of(h, &s), 4, "nvars 4");
    is(shmreg_session_var_set(h, &s, S("empty"), NOSTR), 0, "set a variable to the empty value ({NULL, 0})");
    ok(value_is(h, &s, "empty", ""), "get it: the empty string");
    is(shmreg_session_var_set(h, &s, S("empty2"), S("")), 0, "and another to \"\"");
    ok(listed_as(h, &s, "k1=v1,k3=v3,k2=again,K1=upper,empty=,empty2="), "var_next lists all 6");
    is(nvars_of(h, &s), 6, "nvars 6");

    /* In place, within a read section. */
    shmreg_str v1, v2;
    shmreg_read_begin(h);
    int rc1 = shmreg_session_var_get(h, &s, S("k1"), &v1);
    int rc2 = shmreg_session_var_get(h, &s, S("k1"), &v2);
    ok(rc1 == 0 && rc2 == 0 && v1.ptr == v2.ptr && test_str_is(v1, "v1", 2),
       "two gets in one section give the same bytes in place");
    shmreg_read_end(h);

    /* A second session's variables are its own. */
    shmreg_id t = test_session_new(h);
    is(set(h, &t, "k1", "t's"), 0, "another session sets its own k1");
    ok(value_is(h, &t, "k1", "t's") && value_is(h, &s, "k1", "v1"), "each session reads its own k1");
    is(nvars_of(h, &t), 1, "that session has nvars 1");

    /* Deleting a session ends its variables. */
    is(shmreg_session_delete(h, &s), 0, "delete the session with 6 variables");
    is(get(h, &s, "k1", buf, sizeof buf), SHMREG_ENOENT, "get from it: SHMREG_ENOENT");
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    is(r.problems, 0, "... 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ limits and errors */

static void test_errors(void)
{
    shmreg *h = reg_new("vars-errors");
    shmreg_id s = test_session_new(h);
    shmreg_id unknown;
    memset(&unknown, 0x3c, sizeof unknown);
    char key[SHMREG_MAX_VAR_KEY + 2], val[SHMREG_MAX_VAR_VALUE + 2];
    memset(key, 'k', sizeof key);
    memset(val, 'v', sizeof val);
    shmreg_str k32 = { key, SHMREG_MAX_VAR_KEY }, k33 = { key, SHMREG_MAX_VAR_KEY + 1 };
    shmreg_str v256 = { val, SHMREG_MAX_VAR_VALUE }, v257 = { val, SHMREG_MAX_VAR_VALUE + 1 };

    is(shmreg_session_var_set(h, &s, k32, v256), 0, "a %u-byte key with a %u-byte value: fine",
       SHMREG_MAX_VAR_KEY, SHMREG_MAX_VAR_VALUE);
    shmreg_str got = { NULL, 0 };
    shmreg_read_begin(h);
    int rc = shmreg_session_var_get(h, &s, k32, &got);
    ok(rc == 0 && test_str_is(got, val, SHMREG_MAX_VAR_VALUE), "... read back, all %u bytes", SHMREG_MAX_VAR_VALUE);
    shmreg_read_end(h);
    is(shmreg_session_var_set(h, &s, k33, S("x")), SHMREG_EINVAL, "a %u-byte key: SHMREG_EINVAL", SHMREG_MAX_VAR_KEY + 1);
    is(shmreg_session_var_set(h, &s, S("k"), v257), SHMREG_EINVAL, "a %u-byte value: SHMREG_EINVAL",
       SHMREG_MAX_VAR_VALUE + 1);
    is(shmreg_session_var_set(h, &s, S(""), S("x")), SHMREG_EINVAL, "an empty key: SHMREG_EINVAL");
    is(shmreg_session_var_set(h, &s, NOSTR, S("x")), SHMREG_EINVAL, "the key {NULL, 0}: SHMREG_EINVAL");
    is(shmreg_session_var_set(h, &s, (shmreg_str){ NULL, 3 }, S("x")), SHMREG_EINVAL, "a key {NULL, 3}: SHMREG_EINVAL");
    is(shmreg_session_var_set(h, &s, S("k"), (shmreg_str){ NULL, 3 }), SHMREG_EINVAL, "a value {NULL, 3}: SHMREG_EINVAL");
    is(shmreg_session_var_set(h, NULL, S("k"), S("x")), SHMREG_EINVAL, "a NULL id: SHMREG_EINVAL");
    is(shmreg_session_var_set(h, &unknown, S("k"), S("x")), SHMREG_ENOENT, "an unknown session: SHMREG_ENOENT");
    is(nvars_of(h, &s), 1, "none of them set anything: nvars 1");
    is(shmreg_session_var_set(h, &s, k32, v257), SHMREG_EINVAL, "replacing with a %u-byte value: SHMREG_EINVAL",
       SHMREG_MAX_VAR_VALUE + 1);
    shmreg_read_begin(h);
    rc = shmreg_session_var_get(h, &s, k32, &got);
    ok(rc == 0 && test_str_is(got, val, SHMREG_MAX_VAR_VALUE), "... the old value is still there");

    is(shmreg_session_var_get(h, &s, S("nope"), &got), SHMREG_ENOENT, "get a missing variable: SHMREG_ENOENT");
    is(shmreg_session_var_get(h, &unknown, S("k"), &got), SHMREG_ENOENT, "get from an unknown session: SHMREG_ENOENT");
    is(shmreg_session_var_get(h, &s, S(""), &got), SHMREG_EINVAL, "get an empty key: SHMREG_EINVAL");
    is(shmreg_session_var_get(h, &s, k33, &got), SHMREG_EINVAL, "get a 33-byte key: SHMREG_EINVAL");
    is(shmreg_session_var_get(h, &s, k32, NULL), SHMREG_EINVAL, "get into NULL: SHMREG_EINVAL");
    is(shmreg_session_var_get(h, NULL, k32, &got), SHMREG_EINVAL, "get with a NULL id: SHMREG_EINVAL");
    uint64_t cur = 0;
    shmreg_str k, v;
    is(shmreg_session_var_next(h, &unknown, &cur, &k, &v), SHMREG_ENOENT, "next of an unknown session: SHMREG_ENOENT");
    is(shmreg_session_var_next(h, &s, NULL, &k, &v), SHMREG_EINVAL, "next with a NULL cursor: SHMREG_EINVAL");
    is(shmreg_session_var_next(h, NULL, &cur, &k, &v), SHMREG_EINVAL, "next with a NULL id: SHMREG_EINVAL");
    shmreg_read_end(h);
    is(shmreg_session_var_get(h, &s, k32, &got), SHMREG_ENOREAD, "get outside a read section: SHMREG_ENOREAD");
    cur = 0;
    is(shmreg_session_var_next(h, &s, &cur, &k, &v), SHMREG_ENOREAD, "next outside a read section: SHMREG_ENOREAD");

    is(shmreg_session_var_unset(h, &s, S("nope")), SHMREG_ENOENT, "unset a missing variable: SHMREG_ENOENT");
    is(shmreg_session_var_unset(h, &unknown, S("k")), SHMREG_ENOENT, "unset on an unknown session: SHMREG_ENOENT");
    is(shmreg_session_var_unset(h, &s, S("")), SHMREG_EINVAL, "unset an empty key: SHMREG_EINVAL");
    is(shmreg_session_var_unset(h, &s, k33), SHMREG_EINVAL, "unset a 33-byte key: SHMREG_EINVAL");
    is(shmreg_session_var_unset(h, NULL, S("k")), SHMREG_EINVAL, "unset with a NULL id: SHMREG_EINVAL");
    is(shmreg_session_var_unset(h, &s, k32), 0, "unset the long one");
    is(nvars_of(h, &s), 0, "nvars 0");

    /* SHMREG_MAX_VARS */
    char kb[8], vb[16], want[1024];
    rc = 0;
    for (unsigned i = 0; i < SHMREG_MAX_VARS; i++) {
        snprintf(kb, sizeof kb, "v%02u", i);
        snprintf(vb, sizeof vb, "val%u", i);
        rc |= set(h, &s, kb, vb);
    }
    is(rc, 0, "set %u variables", SHMREG_MAX_VARS);
    is(nvars_of(h, &s), SHMREG_MAX_VARS, "nvars %u", SHMREG_MAX_VARS);
    is(set(h, &s, "one-more", "x"), SHMREG_EFULL, "a %u-th: SHMREG_EFULL", SHMREG_MAX_VARS + 1);
    is(nvars_of(h, &s), SHMREG_MAX_VARS, "nvars still %u", SHMREG_MAX_VARS);
    char buf[64];
    is(get(h, &s, "one-more", buf, sizeof buf), SHMREG_ENOENT, "... and it is not there");
    is(set(h, &s, "v07", "replaced"), 0, "replacing one of the %u: fine", SHMREG_MAX_VARS);
    ok(value_is(h, &s, "v07", "replaced"), "... it has the new value");
    is(shmreg_session_var_unset(h, &s, S("v03")), 0, "unset one");
    is(set(h, &s, "v16", "new"), 0, "now a new one fits");
    is(set(h, &s, "v17", "newer"), SHMREG_EFULL, "and the next is SHMREG_EFULL again");
    size_t o = 0;
    for (unsigned i = 0; i < SHMREG_MAX_VARS; i++) {
        if (i == 3)
            continue;
        if (i == 7)
            o += (size_t)snprintf(want + o, sizeof want - o, "%sv07=replaced", o ? "," : "");
        else
            o += (size_t)snprintf(want + o, sizeof want - o, "%sv%02u=val%u", o ? "," : "", i, i);
    }
    snprintf(want + o, sizeof want - o, ",v16=new");
    ok(listed_as(h, &s, want), "var_next: the %u in the order first set, v07 in its place", SHMREG_MAX_VARS);

    shmreg_id d = test_session_new(h);
    set(h, &d, "k", "v");
    shmreg_session_delete(h, &d);
    is(set(h, &d, "k", "v"), SHMREG_ENOENT, "set on a deleted session: SHMREG_ENOENT");
    is(shmreg_session_var_unset(h, &d, S("k")), SHMREG_ENOENT, "unset on it: SHMREG_ENOENT");
    is(get(h, &d, "k", buf, sizeof buf), SHMREG_ENOENT, "get from it: SHMREG_ENOENT");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ events */

static const shmreg_id zero_id;

static int var_event_is(const shmreg_event *e, const shmreg_id *id, const char *key, uint32_t which)
{
    unsigned char data[SHMREG_EVENT_DATA_MAX] = { 0 };
    size_t len = strlen(key) < SHMREG_EVENT_DATA_MAX ? strlen(key) : SHMREG_EVENT_DATA_MAX;
    memcpy(data, key, len);
    int good = e->type == SHMREG_EV_VAR_CHANGED && test_id_eq(&e->session, id) && test_id_eq(&e->room, &zero_id) &&
               e->which == which && e->len == len && memcmp(e->data, data, sizeof data) == 0 &&
               e->old_state == 0 && e->new_state == 0 && e->pid == getpid();
    if (!good)
        diag("event: type %u which %u len %u data '%.16s'", e->type, e->which, e->len, (const char *)e->data);
    return good;
}

static void test_events(void)
{
    shmreg *h = reg_new("vars-events");
    shmreg_id s = test_session_new(h), t = test_session_new(h);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_VAR_CHANGED), NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    shmreg_event ev[16];
    set(h, &s, "caller", "alice");
    int n = test_drain_events(sub, ev, 16);
    ok(n == 1 && var_event_is(&ev[0], &s, "caller", 1), "set publishes var_changed: the key, which 1");
    set(h, &s, "caller", "bob");
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && var_event_is(&ev[0], &s, "caller", 1), "replacing publishes var_changed, which 1");
    const char *lk = "a-key-of-exactly-thirty-two-byte";
    is(strlen(lk), 32, "(a 32-byte key)");
    set(h, &t, lk, "x");
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && var_event_is(&ev[0], &t, lk, 1), "a 32-byte key: data holds its first 16 bytes, len 16");
    shmreg_session_var_unset(h, &s, S("caller"));
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && var_event_is(&ev[0], &s, "caller", 0), "unset publishes var_changed, which 0");
    is(shmreg_session_var_unset(h, &s, S("caller")), SHMREG_ENOENT, "an unset refused ...");
    is(shmreg_session_var_set(h, &s, S(""), S("x")), SHMREG_EINVAL, "and a set refused ...");
    for (unsigned i = 0; i < SHMREG_MAX_VARS; i++) {
        char kb[8];
        snprintf(kb, sizeof kb, "k%u", i);
        set(h, &s, kb, "x");
    }
    test_drain_events(sub, ev, 16);
    is(set(h, &s, "full", "x"), SHMREG_EFULL, "and a set refused with SHMREG_EFULL ...");
    is(test_drain_events(sub, ev, 16), 0, "... publish nothing");
    ok(shmreg_event_name(SHMREG_EV_VAR_CHANGED) != NULL, "var_changed has a name: %s",
       shmreg_event_name(SHMREG_EV_VAR_CHANGED) ? shmreg_event_name(SHMREG_EV_VAR_CHANGED) : "(null)");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ across processes */

#define W_ROUNDS 300
#define M_ROUNDS 10000

struct w_shared {
    shmreg_id s;
    atomic_int done;
    atomic_long errors;
};
static struct w_shared *ws;

static void fill(char *buf, size_t len, unsigned i)
{
    for (size_t j = 0; j < len; j++)
        buf[j] = (char)('a' + (i + j) % 26);
}

/* Replace "a" W_ROUNDS times with 200-byte values, and churn others. */
static void replacer(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    char v[200];
    for (unsigned i = 1; i <= W_ROUNDS; i++) {
        fill(v, sizeof v, i);
        if (shmreg_session_var_set(h, &ws->s, S("a"), (shmreg_str){ v, sizeof v }) != 0 ||
            shmreg_session_var_set(h, &ws->s, S("b"), (shmreg_str){ v, i % 100 }) != 0)
            atomic_fetch_add(&ws->errors, 1);
        if (i % 2)
            shmreg_session_var_set(h, &ws->s, S("c"), S("toggle"));
        else
            shmreg_session_var_unset(h, &ws->s, S("c"));
    }
    shmreg_close(h);
}

/* Set x = i, then y = i, for i = 1..M_ROUNDS. */
static void pair_writer(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    char b[16];
    for (unsigned i = 1; i <= M_ROUNDS; i++) {
        int n = snprintf(b, sizeof b, "%u", i);
        if (shmreg_session_var_set(h, &ws->s, S("x"), (shmreg_str){ b, (size_t)n }) != 0 ||
            shmreg_session_var_set(h, &ws->s, S("y"), (shmreg_str){ b, (size_t)n }) != 0)
            atomic_fetch_add(&ws->errors, 1);
    }
    atomic_store(&ws->done, 1);
    shmreg_close(h);
}

static long num(shmreg_str v)
{
    char b[24];
    if (v.len == 0 || v.len >= sizeof b)
        return -1;
    memcpy(b, v.ptr, v.len);
    b[v.len] = 0;
    return strtol(b, NULL, 10);
}

static void test_processes(void)
{
    shmreg *h = reg_new("vars-procs");
    ws = test_shared(sizeof *ws);
    ws->s = test_session_new(h);
    char old[200];
    fill(old, sizeof old, 0);
    shmreg_session_var_set(h, &ws->s, S("a"), (shmreg_str){ old, sizeof old });

    shmreg_read_begin(h);
    shmreg_str a0 = { NULL, 0 };
    is(shmreg_session_var_get(h, &ws->s, S("a"), &a0), 0, "read a 200-byte variable in place, and keep the section open");
    pid_t pid = test_fork(replacer, NULL);
    is(test_wait(pid), 0, "another process replaced it %d times meanwhile", W_ROUNDS);
    is(atomic_load(&ws->errors), 0, "... every set succeeded");
    ok(test_str_is(a0, old, sizeof old), "the value read before is unchanged, at the same address");
    shmreg_read_end(h);
    char last[200];
    fill(last, sizeof last, W_ROUNDS);
    shmreg_str a1 = { NULL, 0 }, b1 = { NULL, 0 };
    shmreg_read_begin(h);
    int rc = shmreg_session_var_get(h, &ws->s, S("a"), &a1);
    int rcb = shmreg_session_var_get(h, &ws->s, S("b"), &b1);
    ok(rc == 0 && test_str_is(a1, last, sizeof last), "a new section reads the last value written");
    ok(rcb == 0 && test_str_is(b1, last, W_ROUNDS % 100), "... and b's");
    shmreg_read_end(h);
    is(nvars_of(h, &ws->s), 2, "nvars 2 (c was unset last)");

    /* Never a mix: x is set before y, so every version has x == y or x == y + 1. */
    pid = test_fork(pair_writer, NULL);
    long reads = 0, mixed = 0, partial = 0, lastx = 0;
    double give_up = test_mono_s() + 20;
    while (!atomic_load(&ws->done) && test_mono_s() < give_up) {
        long x = -1, y = -1;
        uint64_t cur = 0;
        shmreg_str k, v;
        shmreg_read_begin(h);
        while (shmreg_session_var_next(h, &ws->s, &cur, &k, &v) == 0) {
            if (test_str_is(k, "x", 1))
                x = num(v);
            else if (test_str_is(k, "y", 1))
                y = num(v);
        }
        shmreg_read_end(h);
        if (x < 0 && y < 0)
            continue;
        reads++;
        if (x < 0 || (y >= 0 && x != y && x != y + 1) || (y < 0 && x != 1)) {
            if (mixed++ < 5)
                diag("walk %ld saw x %ld, y %ld", reads, x, y);
        }
        if (x < lastx)
            partial++;
        lastx = x;
        sched_yield();
    }
    is(test_wait(pid), 0, "another process set x then y, %d times", M_ROUNDS);
    is(atomic_load(&ws->errors), 0, "... every set succeeded");
    ok(reads > 0, "this one walked the set %ld times meanwhile", reads);
    is(mixed, 0, "every walk saw a set some version held (x == y or x == y + 1): never a mix");
    is(partial, 0, "and x never went backwards");
    ok(value_is(h, &ws->s, "x", "10000") && value_is(h, &ws->s, "y", "10000"), "in the end x and y are %d", M_ROUNDS);
    is(nvars_of(h, &ws->s), 4, "nvars 4 (a, b, x, y)");
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    munmap(ws, sizeof *ws);
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_basics);
    TEST_RUN(test_errors);
    TEST_RUN(test_events);
    TEST_RUN(test_processes);
    alarm(0);
    return done_testing();
}
