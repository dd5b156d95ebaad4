/*
 * dialog.c — SIP dialogs: (Call-ID, local tag, remote tag) -> session.
 *
 * Bind is insert-if-absent; find takes the full key, or Call-ID + local tag
 * alone for early dialogs; unbind removes one key; deleting a session
 * unbinds all its dialogs. The test keeps its own list of what should be
 * bound and compares the registry's iteration with it.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }
static const shmreg_str NOTAG = { NULL, 0 };   /* find: early-dialog lookup */
static const shmreg_str EMPTY = { "", 0 };     /* the empty remote tag */

/* What the test believes is bound. */
#define MAXD 512
static struct known {
    char c[64], l[64], r[64];
    shmreg_id s;
    int live;
} known[MAXD];
static int nknown;

static void remember(const char *c, const char *l, const char *r, const shmreg_id *s)
{
    struct known *k = &known[nknown++];
    snprintf(k->c, sizeof k->c, "%s", c);
    snprintf(k->l, sizeof k->l, "%s", l);
    snprintf(k->r, sizeof k->r, "%s", r);
    k->s = *s;
    k->live = 1;
}

static void forget_key(const char *c, const char *l, const char *r)
{
    for (int i = 0; i < nknown; i++)
        if (known[i].live && !strcmp(known[i].c, c) && !strcmp(known[i].l, l) &&
            !strcmp(known[i].r, r))
            known[i].live = 0;
}

static void forget_session(const shmreg_id *s)
{
    for (int i = 0; i < nknown; i++)
        if (known[i].live && !memcmp(&known[i].s, s, sizeof *s))
            known[i].live = 0;
}

static int nlive(void)
{
    int n = 0;
    for (int i = 0; i < nknown; i++)
        n += known[i].live;
    return n;
}

static int bind3(shmreg *h, const char *c, const char *l, const char *r, const shmreg_id *s)
{
    int rc = shmreg_dialog_bind(h, SS(c), SS(l), SS(r), s);
    if (rc == 0)
        remember(c, l, r, s);
    return rc;
}

static int found_as(shmreg *h, shmreg_str c, shmreg_str l, shmreg_str r, const shmreg_id *want)
{
    shmreg_id got;
    memset(&got, 0, sizeof got);
    return shmreg_dialog_find(h, c, l, r, &got) == 0 && test_id_eq(&got, want);
}

static uint32_t stat_dialogs(shmreg *h)
{
    shmreg_stats st;
    shmreg_stat(h, &st);
    return st.dialogs;
}

static uint32_t ndialogs_of(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    uint32_t n = 0xffffffffu;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &v) == 0)
        n = v.ndialogs;
    shmreg_read_end(h);
    return n;
}

static int str_eq(shmreg_str a, const char *s)
{
    size_t n = strlen(s);
    return a.len == n && (n == 0 || (a.ptr && !memcmp(a.ptr, s, n)));
}

static void test_basics(shmreg *h, shmreg_id *s1, shmreg_id *s2)
{
    shmreg_id unknown;
    memset(&unknown, 0x3c, sizeof unknown);

    is(bind3(h, "call-1@host", "ltag-1", "rtag-1", s1), 0, "bind a dialog to a session");
    is(stat_dialogs(h), 1, "stat.dialogs is 1");
    is(ndialogs_of(h, s1), 1, "the session's view has ndialogs 1");
    ok(found_as(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1"), s1),
       "find by the full key gives the session");
    ok(found_as(h, SS("call-1@host"), SS("ltag-1"), NOTAG, s1),
       "find by Call-ID and local tag alone (remote_tag.ptr NULL) gives the session");
    shmreg_id got;
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-X"), &got), SHMREG_ENOENT,
       "find with another remote tag gives SHMREG_ENOENT");
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-X"), SS("rtag-1"), &got), SHMREG_ENOENT,
       "find with another local tag gives SHMREG_ENOENT");
    is(shmreg_dialog_find(h, SS("call-1@hosT"), SS("ltag-1"), SS("rtag-1"), &got), SHMREG_ENOENT,
       "find with another Call-ID gives SHMREG_ENOENT");
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-1"), EMPTY, &got), SHMREG_ENOENT,
       "find with the empty remote tag (not NULL) does not match a tagged dialog");
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-X"), NOTAG, &got), SHMREG_ENOENT,
       "an early find with another local tag gives SHMREG_ENOENT");

    is(shmreg_dialog_bind(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1"), s1), SHMREG_EEXIST,
       "binding the same key again to the same session gives SHMREG_EEXIST");
    is(shmreg_dialog_bind(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1"), s2), SHMREG_EEXIST,
       "binding the same key to another session gives SHMREG_EEXIST");
    ok(found_as(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1"), s1),
       "the key still finds the first session");
    is(ndialogs_of(h, s1), 1, "the first session still has 1 dialog");
    is(ndialogs_of(h, s2), 0, "the other session has none");
    is(stat_dialogs(h), 1, "stat.dialogs is still 1");

    is(shmreg_dialog_bind(h, SS("call-2@host"), SS("a"), SS("b"), &unknown), SHMREG_ENOENT,
       "binding to an unknown session gives SHMREG_ENOENT");
    is(shmreg_dialog_find(h, SS("call-2@host"), SS("a"), SS("b"), &got), SHMREG_ENOENT,
       "and binds nothing");

    is(shmreg_dialog_bind(h, NOTAG, SS("a"), SS("b"), s1), SHMREG_EINVAL,
       "a NULL Call-ID gives SHMREG_EINVAL");
    is(shmreg_dialog_bind(h, EMPTY, SS("a"), SS("b"), s1), SHMREG_EINVAL,
       "an empty Call-ID gives SHMREG_EINVAL");
    is(shmreg_dialog_find(h, EMPTY, SS("a"), SS("b"), &got), SHMREG_EINVAL,
       "find with an empty Call-ID gives SHMREG_EINVAL");
    is(shmreg_dialog_unbind(h, EMPTY, SS("a"), SS("b")), SHMREG_EINVAL,
       "unbind with an empty Call-ID gives SHMREG_EINVAL");

    char *big = malloc(SHMREG_MAX_STR + 1);
    memset(big, 'k', SHMREG_MAX_STR + 1);
    shmreg_str over = { big, SHMREG_MAX_STR + 1 }, max = { big, SHMREG_MAX_STR };
    is(shmreg_dialog_bind(h, over, SS("a"), SS("b"), s1), SHMREG_EINVAL,
       "a Call-ID of SHMREG_MAX_STR+1 bytes gives SHMREG_EINVAL");
    is(shmreg_dialog_bind(h, SS("c"), over, SS("b"), s1), SHMREG_EINVAL,
       "a local tag of SHMREG_MAX_STR+1 bytes gives SHMREG_EINVAL");
    is(shmreg_dialog_bind(h, SS("c"), SS("a"), over, s1), SHMREG_EINVAL,
       "a remote tag of SHMREG_MAX_STR+1 bytes gives SHMREG_EINVAL");
    is(stat_dialogs(h), 1, "none of the refused binds counted");
    is(ndialogs_of(h, s1), 1, "nor changed the session");

    is(shmreg_dialog_bind(h, max, max, max, s2), 0, "every part of exactly SHMREG_MAX_STR bytes is fine");
    ok(found_as(h, max, max, max, s2), "and the long key is found");
    ok(found_as(h, max, max, NOTAG, s2), "also as an early dialog");
    is(shmreg_dialog_unbind(h, max, max, max), 0, "unbind the long key");
    free(big);

    shmreg_dialog d;
    is(shmreg_session_dialog(h, s1, 0, &d), SHMREG_ENOREAD,
       "session_dialog outside a read section gives SHMREG_ENOREAD");
    shmreg_read_begin(h);
    is(shmreg_session_dialog(h, s1, 0, &d), 0, "session_dialog(0) lists the bound dialog");
    ok(str_eq(d.call_id, "call-1@host") && str_eq(d.local_tag, "ltag-1") &&
       str_eq(d.remote_tag, "rtag-1"), "with its key in place");
    ok(test_id_eq(&d.session, s1), "and its session");
    is(shmreg_session_dialog(h, s1, 1, &d), SHMREG_ENOENT, "session_dialog(1) gives SHMREG_ENOENT");
    is(shmreg_session_dialog(h, &unknown, 0, &d), SHMREG_ENOENT,
       "session_dialog of an unknown session gives SHMREG_ENOENT");
    shmreg_read_end(h);
}

static void test_empty_remote_tag(shmreg *h, shmreg_id *s2, shmreg_id *s3)
{
    is(shmreg_dialog_bind(h, SS("call-2@host"), SS("ltag-2"), EMPTY, s2), 0,
       "bind an early dialog with an empty remote tag");
    remember("call-2@host", "ltag-2", "", s2);
    is(bind3(h, "call-2@host", "ltag-2", "rtag-2", s3), 0,
       "the same Call-ID and local tag with a remote tag is another key");
    ok(found_as(h, SS("call-2@host"), SS("ltag-2"), EMPTY, s2),
       "the empty remote tag finds its own session");
    ok(found_as(h, SS("call-2@host"), SS("ltag-2"), SS("rtag-2"), s3),
       "the tagged key finds the other session");
    shmreg_id got;
    memset(&got, 0, sizeof got);
    is(shmreg_dialog_find(h, SS("call-2@host"), SS("ltag-2"), NOTAG, &got), 0,
       "an early find matches one of them");
    ok(test_id_eq(&got, s2) || test_id_eq(&got, s3), "either of the two sessions");
    is(shmreg_dialog_bind(h, SS("call-2@host"), SS("ltag-2"), EMPTY, s3), SHMREG_EEXIST,
       "binding the empty-tag key again gives SHMREG_EEXIST");

    is(shmreg_dialog_unbind(h, SS("call-2@host"), SS("ltag-2"), EMPTY), 0,
       "unbind the empty-tag key");
    forget_key("call-2@host", "ltag-2", "");
    is(shmreg_dialog_find(h, SS("call-2@host"), SS("ltag-2"), EMPTY, &got), SHMREG_ENOENT,
       "the empty-tag key is gone");
    ok(found_as(h, SS("call-2@host"), SS("ltag-2"), SS("rtag-2"), s3),
       "the tagged key remains");
    ok(found_as(h, SS("call-2@host"), SS("ltag-2"), NOTAG, s3),
       "and now the early find gives its session");
}

static void test_unbind(shmreg *h, shmreg_id *s1)
{
    uint32_t before = stat_dialogs(h);
    shmreg_id got;
    is(shmreg_dialog_unbind(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-X")), SHMREG_ENOENT,
       "unbind with a wrong remote tag gives SHMREG_ENOENT");
    is(shmreg_dialog_unbind(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1")), 0,
       "unbind by the exact key");
    forget_key("call-1@host", "ltag-1", "rtag-1");
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1"), &got), SHMREG_ENOENT,
       "the key is not found any more");
    is(shmreg_dialog_find(h, SS("call-1@host"), SS("ltag-1"), NOTAG, &got), SHMREG_ENOENT,
       "not even as an early dialog");
    is(shmreg_dialog_unbind(h, SS("call-1@host"), SS("ltag-1"), SS("rtag-1")), SHMREG_ENOENT,
       "unbinding it again gives SHMREG_ENOENT");
    is(ndialogs_of(h, s1), 0, "the session has no dialog left");
    is(stat_dialogs(h), before - 1, "stat.dialogs dropped by one");
    is(bind3(h, "call-1@host", "ltag-1", "rtag-1", s1), 0, "the key can be bound again");
}

static void test_delete_unbinds(shmreg *h, shmreg_id *s1)
{
    shmreg_id s4, got;
    shmreg_session_create(h, NULL, &s4);
    uint32_t before = stat_dialogs(h);
    int rc = bind3(h, "call-4@host", "l4", "r4a", &s4);
    rc |= bind3(h, "call-4@host", "l4", "r4b", &s4);
    rc |= bind3(h, "call-4b@host", "l4", "r4c", &s4);
    is(rc, 0, "bind three dialogs to a session");
    is(stat_dialogs(h), before + 3, "stat.dialogs grew by 3");
    is(shmreg_session_delete(h, &s4), 0, "delete the session");
    forget_session(&s4);
    int gone = 0;
    gone += shmreg_dialog_find(h, SS("call-4@host"), SS("l4"), SS("r4a"), &got) == SHMREG_ENOENT;
    gone += shmreg_dialog_find(h, SS("call-4@host"), SS("l4"), SS("r4b"), &got) == SHMREG_ENOENT;
    gone += shmreg_dialog_find(h, SS("call-4b@host"), SS("l4"), SS("r4c"), &got) == SHMREG_ENOENT;
    gone += shmreg_dialog_find(h, SS("call-4@host"), SS("l4"), NOTAG, &got) == SHMREG_ENOENT;
    is(gone, 4, "its dialogs are unbound: every find gives SHMREG_ENOENT");
    is(stat_dialogs(h), before, "stat.dialogs is back where it was");
    is(bind3(h, "call-4@host", "l4", "r4a", s1), 0, "a key of the deleted session can be bound anew");
    is(shmreg_dialog_bind(h, SS("call-4@host"), SS("l4"), SS("r4a"), &s4), SHMREG_ENOENT,
       "binding to the deleted session gives SHMREG_ENOENT");
}

static void test_per_session_limit(shmreg *h)
{
    shmreg_id s5, got;
    shmreg_dialog d;
    char r[32];
    shmreg_session_create(h, NULL, &s5);
    uint32_t before = stat_dialogs(h);
    int rc = 0;
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
        snprintf(r, sizeof r, "fork-%u", i);
        rc |= bind3(h, "call-5@host", "l5", r, &s5);
    }
    is(rc, 0, "bind SHMREG_MAX_DIALOGS_PER_SESSION (%u) dialogs to one session",
       SHMREG_MAX_DIALOGS_PER_SESSION);
    is(shmreg_dialog_bind(h, SS("call-5@host"), SS("l5"), SS("fork-extra"), &s5), SHMREG_EFULL,
       "one more gives SHMREG_EFULL");
    is(shmreg_dialog_find(h, SS("call-5@host"), SS("l5"), SS("fork-extra"), &got), SHMREG_ENOENT,
       "and is not bound");
    is(ndialogs_of(h, &s5), SHMREG_MAX_DIALOGS_PER_SESSION, "ndialogs is %u", SHMREG_MAX_DIALOGS_PER_SESSION);
    is(stat_dialogs(h), before + SHMREG_MAX_DIALOGS_PER_SESSION, "stat.dialogs counts them");

    int seen[SHMREG_MAX_DIALOGS_PER_SESSION] = { 0 }, odd = 0;
    shmreg_read_begin(h);
    for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++) {
        unsigned k = 0;
        char tag[32] = "";
        int rc = shmreg_session_dialog(h, &s5, i, &d);
        if (rc == 0 && d.remote_tag.len < sizeof tag)
            memcpy(tag, d.remote_tag.ptr, d.remote_tag.len), tag[d.remote_tag.len] = 0;
        if (rc != 0 || !str_eq(d.call_id, "call-5@host") || !str_eq(d.local_tag, "l5") ||
            !test_id_eq(&d.session, &s5) || sscanf(tag, "fork-%u", &k) != 1 ||
            k >= SHMREG_MAX_DIALOGS_PER_SESSION) {
            odd++;
            continue;
        }
        seen[k]++;
    }
    int once = 1;
    for (unsigned k = 0; k < SHMREG_MAX_DIALOGS_PER_SESSION; k++)
        once &= seen[k] == 1;
    is(odd, 0, "session_dialog(0..%u) gives well-formed dialogs of the session",
       SHMREG_MAX_DIALOGS_PER_SESSION - 1);
    ok(once, "listing each bound dialog exactly once");
    is(shmreg_session_dialog(h, &s5, SHMREG_MAX_DIALOGS_PER_SESSION, &d), SHMREG_ENOENT,
       "session_dialog(%u) gives SHMREG_ENOENT", SHMREG_MAX_DIALOGS_PER_SESSION);
    shmreg_read_end(h);

    is(shmreg_dialog_unbind(h, SS("call-5@host"), SS("l5"), SS("fork-3")), 0, "unbind one of them");
    forget_key("call-5@host", "l5", "fork-3");
    is(ndialogs_of(h, &s5), SHMREG_MAX_DIALOGS_PER_SESSION - 1, "ndialogs dropped by one");
    is(bind3(h, "call-5@host", "l5", "fork-extra", &s5), 0, "now the extra dialog can be bound");
}

static void test_shared_call_id(shmreg *h, shmreg_id *many, int nmany)
{
    int rc = 0, n = 0;
    char l[32], r[32];
    for (int s = 0; s < nmany; s++)
        for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++, n++) {
            snprintf(l, sizeof l, "lt-%d", n % 5);
            snprintf(r, sizeof r, "rt-%d", n);
            rc |= bind3(h, "shared-call-id@host", l, r, &many[s]);
        }
    is(rc, 0, "bind %d dialogs sharing one Call-ID, 5 local tags, distinct remote tags", n);
    int found = 0;
    n = 0;
    for (int s = 0; s < nmany; s++)
        for (unsigned i = 0; i < SHMREG_MAX_DIALOGS_PER_SESSION; i++, n++) {
            snprintf(l, sizeof l, "lt-%d", n % 5);
            snprintf(r, sizeof r, "rt-%d", n);
            found += found_as(h, SS("shared-call-id@host"), SS(l), SS(r), &many[s]);
        }
    is(found, n, "every one of them finds its own session");
    int early = 0;
    for (int t = 0; t < 5; t++) {
        shmreg_id got;
        snprintf(l, sizeof l, "lt-%d", t);
        if (shmreg_dialog_find(h, SS("shared-call-id@host"), SS(l), NOTAG, &got) != 0)
            continue;
        /* The session found must own a dialog with this local tag. */
        int owner = 0;
        for (int i = 0; i < nknown; i++)
            owner |= known[i].live && !strcmp(known[i].l, l) &&
                     !strcmp(known[i].c, "shared-call-id@host") && test_id_eq(&known[i].s, &got);
        early += owner;
    }
    is(early, 5, "an early find by each local tag gives a session bound with that tag");
}

static void test_iteration(shmreg *h)
{
    uint64_t cur = 0;
    shmreg_dialog d;
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOREAD,
       "dialog_next outside a read section gives SHMREG_ENOREAD");
    int *seen = calloc(nknown, sizeof *seen);
    int stray = 0, total = 0, rc;
    cur = 0;
    shmreg_read_begin(h);
    while ((rc = shmreg_dialog_next(h, &cur, &d)) == 0) {
        total++;
        int match = -1;
        for (int i = 0; i < nknown; i++)
            if (known[i].live && str_eq(d.call_id, known[i].c) && str_eq(d.local_tag, known[i].l) &&
                str_eq(d.remote_tag, known[i].r) && test_id_eq(&d.session, &known[i].s)) {
                match = i;
                break;
            }
        if (match < 0)
            stray++;
        else
            seen[match]++;
        if (total > 10 * MAXD)
            break;
    }
    is(rc, SHMREG_ENOENT, "dialog_next ends with SHMREG_ENOENT");
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOENT, "and stays at the end");
    shmreg_read_end(h);
    int once = 0, missed = 0, twice = 0;
    for (int i = 0; i < nknown; i++) {
        if (!known[i].live)
            continue;
        once += seen[i] == 1;
        missed += seen[i] == 0;
        twice += seen[i] > 1;
    }
    is(stray, 0, "dialog_next gives no dialog that should not be bound");
    is(missed, 0, "it misses none");
    is(twice, 0, "and gives none twice");
    is(once, nlive(), "so each of the %d live dialogs comes exactly once", nlive());
    is(total, nlive(), "%d dialogs in all", nlive());
    is(stat_dialogs(h), nlive(), "stat.dialogs agrees");
    free(seen);
}

int main(void)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 64;
    const char *path = test_dir("dialog");
    shmreg *h = NULL;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());

    shmreg_id s1, s2, s3, many[25];
    shmreg_session_create(h, NULL, &s1);
    shmreg_session_create(h, NULL, &s2);
    shmreg_session_create(h, NULL, &s3);
    for (int i = 0; i < 25; i++)
        shmreg_session_create(h, NULL, &many[i]);

    test_basics(h, &s1, &s2);
    test_empty_remote_tag(h, &s2, &s3);
    test_unbind(h, &s1);
    test_delete_unbinds(h, &s1);
    test_per_session_limit(h);
    test_shared_call_id(h, many, 25);
    test_iteration(h);

    /* Deleting every session leaves no dialog. */
    uint64_t cur = 0;
    shmreg_session v;
    shmreg_id ids[64];
    int n = 0;
    shmreg_read_begin(h);
    while (n < 64 && shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        ids[n++] = v.id;
    shmreg_read_end(h);
    int rc = 0;
    for (int i = 0; i < n; i++)
        rc |= shmreg_session_delete(h, &ids[i]);
    is(rc, 0, "delete all %d sessions", n);
    is(stat_dialogs(h), 0, "stat.dialogs is 0");
    shmreg_dialog d;
    cur = 0;
    shmreg_read_begin(h);
    is(shmreg_dialog_next(h, &cur, &d), SHMREG_ENOENT, "and dialog_next finds nothing");
    shmreg_read_end(h);
    shmreg_id got;
    is(shmreg_dialog_find(h, SS("shared-call-id@host"), SS("lt-0"), NOTAG, &got), SHMREG_ENOENT,
       "nor does an early find");

    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
