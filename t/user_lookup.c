/*
 * user_lookup.c — finding a user's calls (issue 17).
 *
 * shmreg_user_key normalises a URI (or a name-addr, or plain user@host)
 * to the index key "user@host": scheme, angle brackets, display name,
 * parameters, headers and port dropped, host in lower case, user as it
 * is. shmreg_session_by_user walks the live sessions whose From and/or To
 * URI has that key: each once, user case-sensitive, host not; updates and
 * deletes keep the index right; 1,000 sessions of 10 users give each
 * user exactly its 100.
 */
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

static shmreg *reg_new(const char *name, uint32_t max_sessions)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = max_sessions;
    o.max_handles = 64;
    o.event_records = 1024;
    return test_reg_new_opts(name, o);
}

/* ------------------------------------------------------------ the key */

static void test_user_key(void)
{
    static const struct {
        const char *in, *out;
    } table[] = {
        { "sip:alice@example.com", "alice@example.com" },
        { "sip:alice@Example.COM:5060;transport=udp", "alice@example.com" },
        { "sips:alice@h", "alice@h" },
        { "<sips:alice@h>", "alice@h" },
        { "<sip:alice@example.com>", "alice@example.com" },
        { "Alice <sip:alice@h>;tag=x", "alice@h" },
        { "\"Alice Smith\" <sip:alice@example.com;transport=tcp>;tag=abc", "alice@example.com" },
        { "\"Bob\" <sips:BOB@Host.Example.ORG:5061>", "BOB@host.example.org" },
        /* A quoted display name may hold '<', '>', '@' and ';' (RFC 3261
         * quoted-string): the URI is the one in the brackets after it. */
        { "\"a<b@c>\" <sip:x@y>", "x@y" },
        { "\"<sip:bob@example.com>\" <sip:mallory@evil.example>;tag=1", "mallory@evil.example" },
        { "\"Smith; John \\\"JJ\\\" @home\" <sip:john@example.com>", "john@example.com" },
        { "sip:Alice@EXAMPLE.com", "Alice@example.com" },
        { "sip:alice@example.com;user=phone", "alice@example.com" },
        { "sip:alice@example.com?subject=project", "alice@example.com" },
        { "sip:alice@example.com:5070?subject=x&priority=urgent", "alice@example.com" },
        { "<sip:alice@example.com:5060;lr>;expires=60", "alice@example.com" },
        { "sip:+15551234567@gw.example.com;user=phone", "+15551234567@gw.example.com" },
        { "sip:alice@192.0.2.4:5060", "alice@192.0.2.4" },
        { "sip:alice@[2001:db8::1]:5060", "alice@[2001:db8::1]" },
        { "tel:+1555", "+1555" },
        { "tel:+1555;phone-context=example.com", "+1555" },
        { "alice@h", "alice@h" },
        { "alice@Example.COM", "alice@example.com" },
        { "ALICE@EXAMPLE.COM", "ALICE@example.com" },
        /* The scheme in any case; space (\t \n \v \f \r and ' ')
         * around the URI; only ASCII letters folded, whatever the locale
         * (bytes above 127 are kept as they are). */
        { "SIP:alice@H", "alice@h" },
        { "Sips:alice@h", "alice@h" },
        { "TEL:+1555", "+1555" },
        { " \t\v\f sip:alice@h \r\n", "alice@h" },
        { "sip:a@\xc3\x84X.example", "a@\xc3\x84x.example" },
        { "", "" },
    };
    const int n = (int)(sizeof table / sizeof table[0]);
    for (int i = 0; i < n; i++) {
        char out[SHMREG_MAX_STR];
        size_t len = 999;
        memset(out, '#', sizeof out);
        int rc = shmreg_user_key(test_ss(table[i].in), out, sizeof out, &len);
        is(rc, 0, "user_key of '%s': 0", table[i].in);
        is_mem(out, rc == 0 ? len : 0, table[i].out, strlen(table[i].out), "... gives '%s'", table[i].out);
    }
    char out[SHMREG_MAX_STR];
    size_t len = 999;
    is(shmreg_user_key((shmreg_str){ NULL, 0 }, out, sizeof out, &len), 0, "user_key of {NULL, 0}: 0");
    is(len, 0, "... an empty key");
    memset(out, '#', sizeof out);
    is(shmreg_user_key(S("sip:alice@h"), out, 7, &len), 0, "a 7-byte key into exactly 7 bytes: 0");
    is_mem(out, len, "alice@h", 7, "... alice@h");
    is(shmreg_user_key(S("sip:alice@h"), out, 6, &len), SHMREG_EINVAL, "into 6 bytes: SHMREG_EINVAL");
    is(shmreg_user_key(S("sip:alice@h"), out, 0, &len), SHMREG_EINVAL, "into 0 bytes: SHMREG_EINVAL");
    is(shmreg_user_key(S("sip:alice@h"), NULL, 64, &len), SHMREG_EINVAL, "into NULL: SHMREG_EINVAL");
    is(shmreg_user_key(S("sip:alice@h"), out, sizeof out, NULL), SHMREG_EINVAL, "with len NULL: SHMREG_EINVAL");
    char big[SHMREG_MAX_STR];
    memcpy(big, "sip:", 4);
    memset(big + 4, 'u', SHMREG_MAX_STR - 4 - 2);
    memcpy(big + SHMREG_MAX_STR - 2, "@h", 2);
    is(shmreg_user_key((shmreg_str){ big, SHMREG_MAX_STR }, out, SHMREG_MAX_STR, &len), 0,
       "a %u-byte URI into SHMREG_MAX_STR bytes: 0", SHMREG_MAX_STR);
    is(len, SHMREG_MAX_STR - 4, "... its key is %u bytes", SHMREG_MAX_STR - 4);
}

/* ------------------------------------------------------------ lookups */

static shmreg_id mk(shmreg *h, const char *from, const char *to)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = test_ss(from);
    f.str[SHMREG_FIELD_TO_URI] = test_ss(to);
    shmreg_id id;
    int rc = shmreg_session_create(h, &f, &id);
    if (rc != 0)
        bail_out("create: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

/* The sessions by_user lists, into ids[0..cap); returns how many, or an
 * error other than the ENOENT that ends the walk. `views_ok` is cleared
 * when a listed view's From/To does not name the user as asked. */
static int by_user(shmreg *h, const char *user, unsigned which, shmreg_id *ids, int cap)
{
    uint64_t cur = 0;
    shmreg_session v;
    int n = 0, rc;
    shmreg_read_begin(h);
    while ((rc = shmreg_session_by_user(h, test_ss(user), which, &cur, &v)) == 0) {
        if (n < cap)
            ids[n] = v.id;
        n++;
        if (n > 100000)
            break;
    }
    shmreg_read_end(h);
    return rc == SHMREG_ENOENT ? n : (rc ? rc : -1000);
}

#define F SHMREG_USER_FROM
#define T SHMREG_USER_TO

static void test_by_user(void)
{
    shmreg *h = reg_new("user-lookup", 64);
    shmreg_id s1 = mk(h, "sip:alice@example.com", "sip:bob@example.com");
    shmreg_id s2 = mk(h, "Bob <sip:bob@EXAMPLE.com>;tag=1", "<sip:alice@example.com:5060>");
    shmreg_id s3 = mk(h, "\"Alice\" <sips:alice@Example.Com>;tag=9", "sip:alice@example.com;transport=tcp");
    shmreg_id s4 = mk(h, "sip:Alice@example.com", "sip:carol@example.net");
    shmreg_id s5 = mk(h, "", "");
    (void)s5;
    shmreg_id s6 = mk(h, "\"<sip:bob@example.com>\" <sip:mallory@evil.example>;tag=7", "sip:erin@example.com");
    shmreg_id got[16];
    int n;

    n = by_user(h, "alice@example.com", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1, s3 }, 2), "alice@example.com as From: the 2 sessions from her (%d)", n);
    n = by_user(h, "alice@example.com", T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s2, s3 }, 2), "as To: the 2 sessions to her (%d)", n);
    n = by_user(h, "alice@example.com", F | T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1, s2, s3 }, 3), "as From or To: 3, the one from and to her once (%d)", n);
    n = by_user(h, "sip:alice@EXAMPLE.COM", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1, s3 }, 2), "the host is case-insensitive: sip:alice@EXAMPLE.COM finds the same");
    n = by_user(h, "\"A\" <sip:alice@example.com:5060;transport=udp>;tag=z", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1, s3 }, 2), "a full name-addr is normalised the same way");
    n = by_user(h, "Alice@example.com", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s4 }, 1), "the user is case-sensitive: Alice@example.com finds only Alice's");
    n = by_user(h, "ALICE@example.com", F | T, got, 16);
    is(n, 0, "ALICE@example.com finds nothing");
    n = by_user(h, "bob@example.com", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s2 }, 1), "bob as From: his one (not the one whose display name quotes his URI)");
    n = by_user(h, "mallory@evil.example", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s6 }, 1), "that one is found by the URI in its brackets");
    n = by_user(h, "bob@example.com", T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1 }, 1), "bob as To: his one");
    n = by_user(h, "carol@example.net", F, got, 16);
    is(n, 0, "carol as From: nothing (ENOENT at once)");
    n = by_user(h, "carol@example.net", T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s4 }, 1), "carol as To: hers");
    is(by_user(h, "dave@example.com", F | T, got, 16), 0, "a user nobody is: ENOENT at once");
    is(by_user(h, "alice@example.org", F | T, got, 16), 0, "alice at another host: nothing");

    /* The view handed out is the session's. */
    {
        uint64_t cur = 0;
        shmreg_session v;
        shmreg_read_begin(h);
        int rc = shmreg_session_by_user(h, S("bob@example.com"), F, &cur, &v);
        ok(rc == 0 && test_id_eq(&v.id, &s2) && v.state == SHMREG_STATE_INITIATING &&
               test_str_is(v.str[SHMREG_FIELD_FROM_URI], "Bob <sip:bob@EXAMPLE.com>;tag=1", 31),
           "the view given is the session's, its From URI as stored");
        shmreg_read_end(h);
    }

    /* Updates move a session in the index. */
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:carol@example.net");
    is(shmreg_session_update(h, &s1, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI)), 0, "update s1's From to carol");
    n = by_user(h, "alice@example.com", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s3 }, 1), "alice as From no longer finds it");
    n = by_user(h, "carol@example.net", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1 }, 1), "carol as From does");
    n = by_user(h, "bob@example.com", T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1 }, 1), "its To (bob), not updated, still finds it");
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S("Carol");
    is(shmreg_session_update(h, &s1, &f, SHMREG_MASK(SHMREG_FIELD_DISPLAY_NAME)), 0, "update another field");
    n = by_user(h, "carol@example.net", F, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s1 }, 1), "... carol still finds it, once");
    memset(&f, 0, sizeof f);
    is(shmreg_session_update(h, &s4, &f, SHMREG_MASK(SHMREG_FIELD_TO_URI)), 0, "clear s4's To");
    n = by_user(h, "carol@example.net", T, got, 16);
    is(n, 0, "carol as To: nothing now");

    /* Deletes leave the index. */
    is(shmreg_session_delete(h, &s3), 0, "delete the session from and to alice");
    n = by_user(h, "alice@example.com", F | T, got, 16);
    ok(test_ids_same_set(got, n, (shmreg_id[]){ s2 }, 1), "alice as From or To: only s2 is left");
    n = by_user(h, "alice@example.com", F, got, 16);
    is(n, 0, "alice as From: nothing");

    /* Errors. */
    uint64_t cur = 0;
    shmreg_session v;
    is(shmreg_session_by_user(h, S("bob@example.com"), F, &cur, &v), SHMREG_ENOREAD,
       "outside a read section: SHMREG_ENOREAD");
    shmreg_read_begin(h);
    cur = 0;
    is(shmreg_session_by_user(h, S(""), F, &cur, &v), SHMREG_EINVAL, "an empty user: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, (shmreg_str){ NULL, 0 }, F, &cur, &v), SHMREG_EINVAL, "a {NULL, 0} user: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, (shmreg_str){ NULL, 5 }, F, &cur, &v), SHMREG_EINVAL, "a {NULL, 5} user: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, S("bob@example.com"), 0, &cur, &v), SHMREG_EINVAL, "which 0: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, S("bob@example.com"), 4, &cur, &v), SHMREG_EINVAL, "which 4: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, S("bob@example.com"), F | 0x100, &cur, &v), SHMREG_EINVAL,
       "which FROM | 0x100: SHMREG_EINVAL");
    is(shmreg_session_by_user(h, S("bob@example.com"), F, NULL, &v), SHMREG_EINVAL, "a NULL cursor: SHMREG_EINVAL");
    cur = 0;
    is(shmreg_session_by_user(h, S("bob@example.com"), F, &cur, NULL), SHMREG_EINVAL, "into NULL: SHMREG_EINVAL");
    shmreg_read_end(h);
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 1000 sessions, 10 users */

#define M_SESS 1000
#define M_USERS 10

struct m_shared {
    shmreg_id ids[M_SESS];
};
static struct m_shared *msh;

/* Another process creates the sessions: the index is in the segment. */
static void creator(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    for (int i = 0; i < M_SESS; i++) {
        char from[64], to[64];
        snprintf(from, sizeof from, "<sip:u%d@Example.com>;tag=%d", i % M_USERS, i);
        snprintf(to, sizeof to, "sip:u%d@example.COM", (i + 1) % M_USERS);
        msh->ids[i] = mk(h, from, to);
    }
    shmreg_close(h);
}

static void test_many(void)
{
    shmreg *h = reg_new("user-many", 2048);
    msh = test_shared(sizeof *msh);
    is(test_wait(test_fork(creator, NULL)), 0, "another process creates %d sessions for %d users", M_SESS, M_USERS);
    static shmreg_id got[M_SESS + 8], want[M_SESS];
    int from_ok = 0, to_ok = 0, both_ok = 0;
    for (int u = 0; u < M_USERS; u++) {
        char user[32];
        snprintf(user, sizeof user, "u%d@example.com", u);
        int m = 0;
        for (int i = 0; i < M_SESS; i++)
            if (i % M_USERS == u)
                want[m++] = msh->ids[i];
        int n = by_user(h, user, F, got, M_SESS + 8);
        from_ok += n == M_SESS / M_USERS && test_ids_same_set(got, n, want, m);
        m = 0;
        for (int i = 0; i < M_SESS; i++)
            if ((i + 1) % M_USERS == u)
                want[m++] = msh->ids[i];
        n = by_user(h, user, T, got, M_SESS + 8);
        to_ok += n == M_SESS / M_USERS && test_ids_same_set(got, n, want, m);
        m = 0;
        for (int i = 0; i < M_SESS; i++)
            if (i % M_USERS == u || (i + 1) % M_USERS == u)
                want[m++] = msh->ids[i];
        n = by_user(h, user, F | T, got, M_SESS + 8);
        both_ok += n == 2 * M_SESS / M_USERS && test_ids_same_set(got, n, want, m);
    }
    is(from_ok, M_USERS, "each of the %d users as From finds exactly its %d sessions", M_USERS, M_SESS / M_USERS);
    is(to_ok, M_USERS, "as To, exactly its %d", M_SESS / M_USERS);
    is(both_ok, M_USERS, "as From or To, exactly its %d, each once", 2 * M_SESS / M_USERS);
    is(by_user(h, "u10@example.com", F | T, got, 8), 0, "an 11th user finds nothing");
    is(by_user(h, "U1@example.com", F | T, got, 8), 0, "U1 (upper case) finds nothing");

    /* Delete every other session of u3's: the rest are found. */
    int m = 0;
    for (int i = 0; i < M_SESS; i++)
        if (i % M_USERS == 3) {
            if ((i / M_USERS) % 2)
                shmreg_session_delete(h, &msh->ids[i]);
            else
                want[m++] = msh->ids[i];
        }
    int n = by_user(h, "u3@example.com", F, got, M_SESS + 8);
    ok(n == m && test_ids_same_set(got, n, want, m), "after deleting half of u3's sessions, the other %d are found (%d)", m, n);

    /* A cursor kept across read sections walks them all. */
    uint64_t cur = 0;
    shmreg_session v;
    int walked = 0, rc;
    for (;;) {
        shmreg_read_begin(h);
        rc = shmreg_session_by_user(h, S("u5@example.com"), F, &cur, &v);
        shmreg_read_end(h);
        if (rc != 0)
            break;
        walked++;
    }
    ok(rc == SHMREG_ENOENT && walked == M_SESS / M_USERS,
       "a cursor kept across read sections walks u5's %d (%d)", M_SESS / M_USERS, walked);
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    munmap(msh, sizeof *msh);
    test_reg_destroy(h);
}

/* Many users in few buckets: a 64-session registry has 64 buckets per
 * side, so 30 users share them (by the birthday bound, almost surely some
 * do), and a walk must go past other users' sessions on its chain. */
static void test_shared_buckets(void)
{
    shmreg *h = reg_new("user-buckets", 64);
    shmreg_id ids[30][2];
    char from[64];
    for (int k = 0; k < 2; k++)     /* interleaved: a user's two are not neighbours */
        for (int u = 0; u < 30; u++) {
            snprintf(from, sizeof from, "sip:user%d@example.com", u);
            ids[u][k] = mk(h, from, "sip:desk@example.com");
        }
    int all = 1, to_all = 0;
    for (int u = 0; u < 30; u++) {
        shmreg_id got[4];
        snprintf(from, sizeof from, "user%d@example.com", u);
        int n = by_user(h, from, F, got, 4);
        all &= test_ids_same_set(got, n, ids[u], 2);
    }
    ok(all, "each of 30 users sharing 64 buckets finds exactly its 2 sessions");
    shmreg_id many[64];
    to_all = by_user(h, "desk@example.com", T, many, 64);
    is(to_all, 60, "and the one To user all 60");
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_user_key);
    TEST_RUN(test_by_user);
    TEST_RUN(test_shared_buckets);
    TEST_RUN(test_many);
    alarm(0);
    return done_testing();
}
