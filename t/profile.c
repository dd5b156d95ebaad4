/*
 * profile.c — profiles with limits (issue 17): a session joins named
 * (profile, value) pairs, a join can be refused at a member limit, and the
 * count of a pair is its membership.
 *
 * Single process: join, leave, count, the listings (pairs, members, a
 * session's memberships), every error path, the view's nprofiles, the
 * events, and a delete ending every membership of its session. Several
 * processes: 8 racing for 50 places among 200 sessions take exactly 50;
 * 8 racing for the last place, round after round, let exactly one in;
 * 4 joining, leaving and deleting on a few limited pairs end with counts
 * that are exactly the memberships listed, and a clean shmreg_check.
 * Crashes: t/profile_crash.c.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })
static const shmreg_str NOSTR = { NULL, 0 };

static shmreg *reg_new(const char *name, uint32_t max_sessions)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = max_sessions;
    o.max_handles = 64;
    o.event_records = 1024;
    o.heap_bytes = 16u << 20;
    return test_reg_new_opts(name, o);
}

static int join(shmreg *h, const shmreg_id *id, const char *p, const char *v, uint32_t limit,
                uint64_t *count)
{
    return shmreg_profile_join(h, id, test_ss(p), test_ss(v), limit, count);
}

static uint64_t count_of(shmreg *h, const char *p, const char *v)
{
    uint64_t c = 0xdeadbeef;
    int rc = shmreg_profile_count(h, test_ss(p), test_ss(v), &c);
    if (rc != 0)
        return 0xbad00000ull + (uint64_t)(-rc);
    return c;
}

/* The members of a pair, in one read section: how many (or an error
 * other than the ENOENT that ends the walk), into ids[0..cap). */
static int members(shmreg *h, const char *p, const char *v, shmreg_id *ids, int cap)
{
    uint64_t cur = 0;
    shmreg_id id;
    int n = 0, rc;
    shmreg_read_begin(h);
    while ((rc = shmreg_profile_member_next(h, test_ss(p), test_ss(v), &cur, &id)) == 0) {
        if (n < cap)
            ids[n] = id;
        n++;
        if (n > 100000)
            break;
    }
    shmreg_read_end(h);
    return rc == SHMREG_ENOENT ? n : (rc ? rc : -1000);
}

struct pair_seen {
    char p[SHMREG_MAX_PROFILE_NAME + 1], v[SHMREG_MAX_PROFILE_VALUE + 1];
    uint64_t count;
};

/* The pairs listed by shmreg_profile_next(profile) in one read section. */
static int pairs(shmreg *h, shmreg_str profile, struct pair_seen *out, int cap)
{
    uint64_t cur = 0;
    shmreg_profile_entry e;
    int n = 0, rc;
    shmreg_read_begin(h);
    while ((rc = shmreg_profile_next(h, profile, &cur, &e)) == 0) {
        if (n < cap && e.profile.len <= SHMREG_MAX_PROFILE_NAME &&
            e.value.len <= SHMREG_MAX_PROFILE_VALUE) {
            memcpy(out[n].p, e.profile.ptr, e.profile.len);
            out[n].p[e.profile.len] = 0;
            if (e.value.len)
                memcpy(out[n].v, e.value.ptr, e.value.len);
            out[n].v[e.value.len] = 0;
            out[n].count = e.count;
        }
        n++;
        if (n > 100000)
            break;
    }
    shmreg_read_end(h);
    return rc == SHMREG_ENOENT ? n : (rc ? rc : -1000);
}

/* The count listed for (p, v) among out[0..n), or -1 when not listed. */
static long long listed_count(const struct pair_seen *out, int n, const char *p, const char *v)
{
    long long c = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(out[i].p, p) && !strcmp(out[i].v, v))
            c = c < 0 ? (long long)out[i].count : -2; /* listed twice: -2 */
    return c;
}

static uint32_t nprofiles_of(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    uint32_t n = 0xffffffffu;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &v) == 0)
        n = v.nprofiles;
    shmreg_read_end(h);
    return n;
}

/* 1 when session `id` lists exactly the pairs p[i] = v[i] (any order) with
 * their current counts, and nothing at index n. */
static int session_lists(shmreg *h, const shmreg_id *id, int n, const char *const *p,
                         const char *const *v)
{
    int good = 1, seen[SHMREG_MAX_PROFILES_PER_SESSION + 1] = { 0 };
    shmreg_profile_entry e;
    shmreg_read_begin(h);
    for (int i = 0; i < n && good; i++) {
        if (shmreg_session_profile(h, id, (unsigned)i, &e) != 0) {
            good = 0;
            break;
        }
        int found = -1;
        for (int k = 0; k < n; k++)
            if (test_str_is(e.profile, p[k], strlen(p[k])) && test_str_is(e.value, v[k], strlen(v[k])))
                found = k;
        if (found < 0 || seen[found]++) {
            good = 0;
            break;
        }
        uint64_t c = 0;
        if (shmreg_profile_count(h, e.profile, e.value, &c) != 0 || c != e.count)
            good = 0;
    }
    if (good && shmreg_session_profile(h, id, (unsigned)n, &e) != SHMREG_ENOENT)
        good = 0;
    shmreg_read_end(h);
    return good;
}

/* ------------------------------------------------------------ basics */

static void test_basics(void)
{
    shmreg *h = reg_new("profile-basics", 64);
    shmreg_id s1 = test_session_new(h), s2 = test_session_new(h), s3 = test_session_new(h);
    uint64_t c = 99;

    is(count_of(h, "trunk", "carrier-a"), 0, "a pair nobody is in counts 0");
    is(count_of(h, "never-used", ""), 0, "so does a profile never used");
    is(join(h, &s1, "trunk", "carrier-a", 0, &c), 0, "join (trunk, carrier-a) without a limit");
    is(c, 1, "... *count is 1 after it");
    is(count_of(h, "trunk", "carrier-a"), 1, "profile_count says 1");
    c = 0;
    is(join(h, &s2, "trunk", "carrier-a", 0, &c), 0, "a second session joins the same pair");
    is(c, 2, "... *count is 2");
    is(join(h, &s3, "trunk", "carrier-b", 0, NULL), 0, "a third joins (trunk, carrier-b) with count NULL");
    is(count_of(h, "trunk", "carrier-a"), 2, "(trunk, carrier-a) counts 2");
    is(count_of(h, "trunk", "carrier-b"), 1, "(trunk, carrier-b) counts 1");
    is(count_of(h, "trunk", "carrier-c"), 0, "(trunk, carrier-c) counts 0");
    is(count_of(h, "Trunk", "carrier-a"), 0, "profile names are compared exactly: Trunk is another profile");
    is(count_of(h, "trunk", "Carrier-A"), 0, "values too: Carrier-A is another value");

    /* A profile without a value: the empty value, {NULL, 0} or {"", 0}. */
    is(shmreg_profile_join(h, &s1, S("inbound"), NOSTR, 0, &c), 0, "join (inbound) with value {NULL, 0}");
    is(c, 1, "... count 1");
    is(shmreg_profile_join(h, &s1, S("inbound"), S(""), 0, &c), SHMREG_EEXIST,
       "joining (inbound, \"\") again is SHMREG_EEXIST: the same pair");
    uint64_t c2 = 7;
    is(shmreg_profile_count(h, S("inbound"), NOSTR, &c2), 0, "count of (inbound) with {NULL, 0}");
    is(c2, 1, "... is 1");
    is(shmreg_profile_join(h, &s2, S("inbound"), S(""), 0, &c), 0, "s2 joins (inbound, \"\")");
    is(c, 2, "... count 2");
    is(shmreg_profile_join(h, &s2, S("customer"), S("acme"), 0, &c), 0, "s2 joins (customer, acme)");

    is(nprofiles_of(h, &s1), 2, "s1's view: nprofiles 2");
    is(nprofiles_of(h, &s2), 3, "s2's view: nprofiles 3");
    is(nprofiles_of(h, &s3), 1, "s3's view: nprofiles 1");
    shmreg_id s4 = test_session_new(h);
    is(nprofiles_of(h, &s4), 0, "a new session's view: nprofiles 0");

    /* session_profile */
    {
        const char *p1[] = { "trunk", "inbound" }, *v1[] = { "carrier-a", "" };
        const char *p2[] = { "trunk", "inbound", "customer" }, *v2[] = { "carrier-a", "", "acme" };
        ok(session_lists(h, &s1, 2, p1, v1), "session_profile of s1: (trunk, carrier-a), (inbound, \"\") with their counts");
        ok(session_lists(h, &s2, 3, p2, v2), "session_profile of s2: its three pairs with their counts");
        ok(session_lists(h, &s4, 0, NULL, NULL), "session_profile of a session in no pair: ENOENT at 0");
        shmreg_profile_entry e;
        is(shmreg_session_profile(h, &s1, 0, &e), SHMREG_ENOREAD, "session_profile outside a read section: SHMREG_ENOREAD");
        shmreg_id unknown;
        memset(&unknown, 0x3c, sizeof unknown);
        shmreg_read_begin(h);
        is(shmreg_session_profile(h, &unknown, 0, &e), SHMREG_ENOENT, "session_profile of an unknown session: SHMREG_ENOENT");
        is(shmreg_session_profile(h, &s1, 2, &e), SHMREG_ENOENT, "session_profile past the last membership: SHMREG_ENOENT");
        is(shmreg_session_profile(h, &s1, 1000, &e), SHMREG_ENOENT, "... also far past it (i 1000)");
        is(shmreg_session_profile(h, NULL, 0, &e), SHMREG_EINVAL, "session_profile with a NULL id: SHMREG_EINVAL");
        is(shmreg_session_profile(h, &s1, 0, NULL), SHMREG_EINVAL, "session_profile into NULL: SHMREG_EINVAL");
        shmreg_read_end(h);
    }

    /* member_next */
    {
        shmreg_id ids[8], want[3];
        want[0] = s1;
        want[1] = s2;
        int n = members(h, "trunk", "carrier-a", ids, 8);
        is(n, 2, "member_next lists 2 members of (trunk, carrier-a)");
        ok(test_ids_same_set(ids, n, want, 2), "... s1 and s2, each once");
        n = members(h, "trunk", "carrier-b", ids, 8);
        ok(n == 1 && test_id_eq(&ids[0], &s3), "(trunk, carrier-b): s3 alone");
        n = members(h, "inbound", "", ids, 8);
        ok(test_ids_same_set(ids, n, want, 2), "(inbound): s1 and s2");
        is(members(h, "trunk", "carrier-z", ids, 8), 0, "a pair nobody is in: ENOENT at once");
        is(members(h, "ghost", "", ids, 8), 0, "a profile never used: ENOENT at once");
        uint64_t cur = 0;
        shmreg_id id;
        is(shmreg_profile_member_next(h, S("trunk"), S("carrier-a"), &cur, &id), SHMREG_ENOREAD,
           "member_next outside a read section: SHMREG_ENOREAD");
        shmreg_read_begin(h);
        cur = 0;
        is(shmreg_profile_member_next(h, S(""), S("x"), &cur, &id), SHMREG_EINVAL,
           "member_next of an empty profile: SHMREG_EINVAL");
        cur = 0;
        is(shmreg_profile_member_next(h, S("trunk"), S("carrier-a"), NULL, &id), SHMREG_EINVAL,
           "member_next with a NULL cursor: SHMREG_EINVAL");
        is(shmreg_profile_member_next(h, S("trunk"), S("carrier-a"), &cur, NULL), SHMREG_EINVAL,
           "member_next into NULL: SHMREG_EINVAL");
        shmreg_read_end(h);
    }

    /* profile_next */
    {
        struct pair_seen ps[16];
        int n = pairs(h, NOSTR, ps, 16);
        is(n, 4, "profile_next over every profile lists 4 pairs");
        is(listed_count(ps, n, "trunk", "carrier-a"), 2, "... (trunk, carrier-a) with count 2");
        is(listed_count(ps, n, "trunk", "carrier-b"), 1, "... (trunk, carrier-b) with count 1");
        is(listed_count(ps, n, "inbound", ""), 2, "... (inbound, \"\") with count 2");
        is(listed_count(ps, n, "customer", "acme"), 1, "... (customer, acme) with count 1");
        n = pairs(h, S("trunk"), ps, 16);
        is(n, 2, "profile_next of profile trunk lists 2 pairs");
        ok(listed_count(ps, n, "trunk", "carrier-a") == 2 && listed_count(ps, n, "trunk", "carrier-b") == 1,
           "... carrier-a (2) and carrier-b (1)");
        is(pairs(h, S("ghost"), ps, 16), 0, "profile_next of a profile never used: ENOENT at once");
        uint64_t cur = 0;
        shmreg_profile_entry e;
        is(shmreg_profile_next(h, NOSTR, &cur, &e), SHMREG_ENOREAD, "profile_next outside a read section: SHMREG_ENOREAD");
        shmreg_read_begin(h);
        is(shmreg_profile_next(h, NOSTR, NULL, &e), SHMREG_EINVAL, "profile_next with a NULL cursor: SHMREG_EINVAL");
        is(shmreg_profile_next(h, NOSTR, &cur, NULL), SHMREG_EINVAL, "profile_next into NULL: SHMREG_EINVAL");
        is(shmreg_profile_next(h, (shmreg_str){ NULL, 3 }, &cur, &e), SHMREG_EINVAL,
           "profile_next with a NULL profile of length 3: SHMREG_EINVAL");
        shmreg_read_end(h);
    }

    /* leave */
    is(shmreg_profile_leave(h, &s1, S("trunk"), S("carrier-a")), 0, "s1 leaves (trunk, carrier-a)");
    is(count_of(h, "trunk", "carrier-a"), 1, "... count 1");
    is(nprofiles_of(h, &s1), 1, "... s1's nprofiles 1");
    is(shmreg_profile_leave(h, &s1, S("trunk"), S("carrier-a")), SHMREG_ENOENT,
       "leaving it again: SHMREG_ENOENT (not a member)");
    is(count_of(h, "trunk", "carrier-a"), 1, "... count still 1");
    is(shmreg_profile_leave(h, &s4, S("trunk"), S("carrier-a")), SHMREG_ENOENT,
       "a session that never joined leaves: SHMREG_ENOENT");
    is(shmreg_profile_leave(h, &s1, S("nobody"), S("")), SHMREG_ENOENT, "leaving a pair nobody is in: SHMREG_ENOENT");
    is(shmreg_profile_leave(h, &s3, S("trunk"), S("carrier-b")), 0, "s3 leaves (trunk, carrier-b), its last member");
    is(count_of(h, "trunk", "carrier-b"), 0, "... its count is 0");
    {
        struct pair_seen ps[16];
        shmreg_id ids[4];
        int n = pairs(h, NOSTR, ps, 16);
        is(n, 3, "profile_next no longer lists it: 3 pairs");
        is(listed_count(ps, n, "trunk", "carrier-b"), -1, "... (trunk, carrier-b) is not among them");
        is(members(h, "trunk", "carrier-b", ids, 4), 0, "member_next of it: ENOENT at once");
    }
    is(join(h, &s1, "trunk", "carrier-a", 2, &c), 0, "s1 joins (trunk, carrier-a) again, limit 2");
    is(c, 2, "... count 2");
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    is(r.problems, 0, "... 0 problems");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ errors */

static void test_errors(void)
{
    shmreg *h = reg_new("profile-errors", 64);
    shmreg_id s = test_session_new(h), t = test_session_new(h);
    shmreg_id unknown;
    memset(&unknown, 0x3c, sizeof unknown);
    char name[SHMREG_MAX_PROFILE_NAME + 2], value[SHMREG_MAX_PROFILE_VALUE + 2];
    memset(name, 'n', sizeof name);
    memset(value, 'v', sizeof value);
    shmreg_str name64 = { name, SHMREG_MAX_PROFILE_NAME }, name65 = { name, SHMREG_MAX_PROFILE_NAME + 1 };
    shmreg_str val256 = { value, SHMREG_MAX_PROFILE_VALUE }, val257 = { value, SHMREG_MAX_PROFILE_VALUE + 1 };
    uint64_t c = 0;

    is(shmreg_profile_join(h, NULL, S("p"), S("v"), 0, &c), SHMREG_EINVAL, "join with a NULL id: SHMREG_EINVAL");
    is(shmreg_profile_join(h, &s, S(""), S("v"), 0, &c), SHMREG_EINVAL, "join an empty profile: SHMREG_EINVAL");
    is(shmreg_profile_join(h, &s, NOSTR, S("v"), 0, &c), SHMREG_EINVAL, "join the profile {NULL, 0}: SHMREG_EINVAL");
    is(shmreg_profile_join(h, &s, (shmreg_str){ NULL, 4 }, S("v"), 0, &c), SHMREG_EINVAL,
       "join a profile {NULL, 4}: SHMREG_EINVAL");
    is(shmreg_profile_join(h, &s, S("p"), (shmreg_str){ NULL, 4 }, 0, &c), SHMREG_EINVAL,
       "join with a value {NULL, 4}: SHMREG_EINVAL");
    is(shmreg_profile_join(h, &s, name65, S("v"), 0, &c), SHMREG_EINVAL,
       "join a profile of %u bytes: SHMREG_EINVAL", SHMREG_MAX_PROFILE_NAME + 1);
    is(shmreg_profile_join(h, &s, S("p"), val257, 0, &c), SHMREG_EINVAL,
       "join with a value of %u bytes: SHMREG_EINVAL", SHMREG_MAX_PROFILE_VALUE + 1);
    is(shmreg_profile_join(h, &unknown, S("p"), S("v"), 0, &c), SHMREG_ENOENT,
       "join an unknown session: SHMREG_ENOENT");
    is(nprofiles_of(h, &s), 0, "after all these, s is in no pair");
    {
        struct pair_seen ps[4];
        is(pairs(h, NOSTR, ps, 4), 0, "and no pair is listed");
    }
    c = 0;
    is(shmreg_profile_join(h, &s, name64, val256, 0, &c), 0,
       "join a profile of %u bytes with a value of %u: fine", SHMREG_MAX_PROFILE_NAME, SHMREG_MAX_PROFILE_VALUE);
    is(c, 1, "... count 1");
    uint64_t c2 = 0;
    is(shmreg_profile_count(h, name64, val256, &c2), 0, "count of that pair");
    is(c2, 1, "... is 1");
    {
        struct pair_seen ps[4];
        int n = pairs(h, NOSTR, ps, 4);
        ok(n == 1 && strlen(ps[0].p) == SHMREG_MAX_PROFILE_NAME && strlen(ps[0].v) == SHMREG_MAX_PROFILE_VALUE &&
               ps[0].p[0] == 'n' && ps[0].p[63] == 'n' && ps[0].v[0] == 'v' && ps[0].v[255] == 'v' && ps[0].count == 1,
           "profile_next lists it with all %u + %u bytes", SHMREG_MAX_PROFILE_NAME, SHMREG_MAX_PROFILE_VALUE);
    }
    is(shmreg_profile_join(h, &s, name64, val256, 0, &c), SHMREG_EEXIST, "joining it again: SHMREG_EEXIST");
    is(shmreg_profile_join(h, &s, name64, val256, 5, &c), SHMREG_EEXIST, "... with a limit too: SHMREG_EEXIST");
    is(count_of(h, "trunk", "x"), 0, "a pair never joined still counts 0");
    c2 = 0;
    shmreg_profile_count(h, name64, val256, &c2);
    is(c2, 1, "... and the pair joined twice counts 1");
    is(nprofiles_of(h, &s), 1, "s's nprofiles is 1");

    /* count and leave argument errors */
    is(shmreg_profile_count(h, S(""), S("v"), &c), SHMREG_EINVAL, "count of an empty profile: SHMREG_EINVAL");
    is(shmreg_profile_count(h, name65, S("v"), &c), SHMREG_EINVAL, "count of a 65-byte profile: SHMREG_EINVAL");
    is(shmreg_profile_count(h, S("p"), val257, &c), SHMREG_EINVAL, "count with a 257-byte value: SHMREG_EINVAL");
    is(shmreg_profile_count(h, S("p"), (shmreg_str){ NULL, 1 }, &c), SHMREG_EINVAL, "count with a value {NULL, 1}: SHMREG_EINVAL");
    is(shmreg_profile_count(h, S("p"), S("v"), NULL), SHMREG_EINVAL, "count into NULL: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, NULL, S("p"), S("v")), SHMREG_EINVAL, "leave with a NULL id: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, &s, S(""), S("v")), SHMREG_EINVAL, "leave an empty profile: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, &s, name65, S("v")), SHMREG_EINVAL, "leave a 65-byte profile: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, &s, S("p"), val257), SHMREG_EINVAL, "leave with a 257-byte value: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, &s, S("p"), (shmreg_str){ NULL, 2 }), SHMREG_EINVAL, "leave with a value {NULL, 2}: SHMREG_EINVAL");
    is(shmreg_profile_leave(h, &unknown, name64, val256), SHMREG_ENOENT, "leave of an unknown session: SHMREG_ENOENT");
    is(shmreg_profile_leave(h, &t, name64, val256), SHMREG_ENOENT, "leave of a session not in the pair: SHMREG_ENOENT");
    is(shmreg_profile_leave(h, &s, name64, val256), 0, "s leaves the long pair");
    is(count_of(h, "p", "v"), 0, "nothing was ever joined by the failed calls: (p, v) counts 0");

    /* SHMREG_MAX_PROFILES_PER_SESSION */
    char pn[16];
    int rc = 0;
    for (unsigned i = 0; i < SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        snprintf(pn, sizeof pn, "prof%u", i);
        rc |= join(h, &s, pn, "x", 0, NULL);
    }
    is(rc, 0, "s joins %u pairs", SHMREG_MAX_PROFILES_PER_SESSION);
    is(nprofiles_of(h, &s), SHMREG_MAX_PROFILES_PER_SESSION, "... nprofiles %u", SHMREG_MAX_PROFILES_PER_SESSION);
    c = 77;
    is(join(h, &s, "one-more", "x", 0, &c), SHMREG_EFULL, "a %u-th pair: SHMREG_EFULL", SHMREG_MAX_PROFILES_PER_SESSION + 1);
    is(count_of(h, "one-more", "x"), 0, "... the pair stays empty");
    is(nprofiles_of(h, &s), SHMREG_MAX_PROFILES_PER_SESSION, "... nprofiles still %u", SHMREG_MAX_PROFILES_PER_SESSION);
    is(join(h, &s, "prof0", "y", 0, NULL), SHMREG_EFULL, "another value of a profile it is in counts as a pair: SHMREG_EFULL");
    is(join(h, &s, "prof0", "x", 0, NULL), SHMREG_EEXIST, "a pair it is in: SHMREG_EEXIST, not EFULL");
    is(join(h, &s, "prof0", "x", 1, NULL), SHMREG_EEXIST, "... with a limit it is at: SHMREG_EEXIST too");
    is(join(h, &t, "one-more", "x", 0, &c), 0, "another session joins that pair");
    is(c, 1, "... count 1");
    is(shmreg_profile_leave(h, &s, S("prof3"), S("x")), 0, "s leaves one pair");
    is(join(h, &s, "one-more", "x", 0, &c), 0, "... and can join the other now");
    is(c, 2, "... count 2");
    {
        const char *p[] = { "prof0", "prof1", "prof2", "prof4", "prof5", "one-more" };
        const char *v[] = { "x", "x", "x", "x", "x", "x" };
        ok(session_lists(h, &s, 6, p, v), "session_profile lists s's 6 pairs exactly");
    }

    /* Limits */
    shmreg_id m[6];
    for (int i = 0; i < 6; i++)
        m[i] = test_session_new(h);
    rc = 0;
    for (int i = 0; i < 3; i++) {
        c = 0;
        rc |= join(h, &m[i], "customer", "acme", 3, &c);
        rc |= c != (uint64_t)i + 1;
    }
    is(rc, 0, "3 sessions join (customer, acme) with limit 3, counts 1, 2, 3");
    c = 0;
    is(join(h, &m[3], "customer", "acme", 3, &c), SHMREG_ELIMIT, "a 4th with limit 3: SHMREG_ELIMIT");
    is(c, 3, "... *count is the count that refused it: 3");
    is(count_of(h, "customer", "acme"), 3, "... the count stays 3");
    is(nprofiles_of(h, &m[3]), 0, "... the refused session is in no pair");
    {
        shmreg_id ids[8];
        int n = members(h, "customer", "acme", ids, 8);
        ok(test_ids_same_set(ids, n, m, 3), "... and the members are the first 3, unchanged");
    }
    c = 0;
    is(join(h, &m[3], "customer", "acme", 2, &c), SHMREG_ELIMIT, "with a limit below the count (2): SHMREG_ELIMIT");
    is(c, 3, "... *count 3");
    c = 0;
    is(join(h, &m[3], "customer", "acme", 1, &c), SHMREG_ELIMIT, "with limit 1: SHMREG_ELIMIT, *count 3");
    is(c, 3, "... *count 3");
    is(join(h, &m[3], "customer", "acme", 3, NULL), SHMREG_ELIMIT, "with count NULL: SHMREG_ELIMIT all the same");
    c = 0;
    is(join(h, &m[3], "customer", "acme", 4, &c), 0, "with limit 4: joins");
    is(c, 4, "... count 4");
    is(join(h, &m[4], "customer", "acme", 0, &c), 0, "limit 0 is no limit: a 5th joins");
    is(c, 5, "... count 5");
    is(join(h, &m[5], "customer", "acme", 5, &c), SHMREG_ELIMIT, "limit 5 at count 5: SHMREG_ELIMIT");
    is(c, 5, "... *count 5");
    is(shmreg_profile_leave(h, &m[0], S("customer"), S("acme")), 0, "one member leaves");
    is(join(h, &m[5], "customer", "acme", 5, &c), 0, "limit 5 now admits");
    is(c, 5, "... count 5");
    is(join(h, &m[0], "customer", "acme", 5, &c), SHMREG_ELIMIT, "and the one that left cannot come back at limit 5");
    is(join(h, &m[1], "customer", "acme", 5, &c), SHMREG_EEXIST, "a member joining again at the limit: SHMREG_EEXIST, not ELIMIT");
    rc = 0;
    shmreg_id many[40];
    for (int i = 0; i < 40; i++) {
        many[i] = test_session_new(h);
        c = 0;
        rc |= join(h, &many[i], "unlimited", "", 0, &c);
        rc |= c != (uint64_t)i + 1;
    }
    is(rc, 0, "40 sessions join one pair with limit 0: every join passes, counts 1..40");
    is(count_of(h, "unlimited", ""), 40, "... count 40");
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ delete ends memberships */

static void test_delete(void)
{
    shmreg *h = reg_new("profile-delete", 64);
    shmreg_id a = test_session_new(h), b = test_session_new(h);
    join(h, &a, "trunk", "t1", 0, NULL);
    join(h, &a, "customer", "acme", 0, NULL);
    join(h, &a, "solo", "", 0, NULL);
    join(h, &b, "trunk", "t1", 0, NULL);
    join(h, &b, "customer", "acme", 0, NULL);
    is(count_of(h, "trunk", "t1"), 2, "two sessions in (trunk, t1)");
    is(count_of(h, "solo", ""), 1, "one in (solo)");
    is(shmreg_session_delete(h, &a), 0, "delete the session in three pairs");
    is(count_of(h, "trunk", "t1"), 1, "(trunk, t1) counts 1");
    is(count_of(h, "customer", "acme"), 1, "(customer, acme) counts 1");
    is(count_of(h, "solo", ""), 0, "(solo) counts 0");
    shmreg_id ids[4];
    int n = members(h, "trunk", "t1", ids, 4);
    ok(n == 1 && test_id_eq(&ids[0], &b), "member_next of (trunk, t1): only the other session");
    n = members(h, "customer", "acme", ids, 4);
    ok(n == 1 && test_id_eq(&ids[0], &b), "member_next of (customer, acme): only the other session");
    is(members(h, "solo", "", ids, 4), 0, "member_next of (solo): nobody");
    struct pair_seen ps[8];
    n = pairs(h, NOSTR, ps, 8);
    is(n, 2, "profile_next lists 2 pairs");
    is(listed_count(ps, n, "solo", ""), -1, "... (solo) has disappeared");
    is(shmreg_profile_leave(h, &a, S("trunk"), S("t1")), SHMREG_ENOENT, "the deleted session leaves: SHMREG_ENOENT");
    is(join(h, &a, "trunk", "t1", 0, NULL), SHMREG_ENOENT, "the deleted session joins: SHMREG_ENOENT");
    uint64_t c = 0;
    is(join(h, &b, "solo", "", 1, &c), 0, "(solo) with limit 1 admits another session");
    is(c, 1, "... count 1");
    shmreg_session_delete(h, &b);
    n = pairs(h, NOSTR, ps, 8);
    is(n, 0, "once both are deleted, no pair is listed");
    ok(count_of(h, "trunk", "t1") == 0 && count_of(h, "customer", "acme") == 0 && count_of(h, "solo", "") == 0,
       "and every count is 0");
    shmreg_check_report r;
    is(shmreg_check(h, 0, &r, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ events */

static const shmreg_id zero_id;

/* Bytes of the profile name a profile event carries. The header says "the
 * first bytes of the profile name"; the event record keeps the count
 * beside them in its 16 data bytes, which leaves 12. */
#define EV_NAME_BYTES (SHMREG_EVENT_DATA_MAX - 4)

static int event_is(const shmreg_event *e, uint32_t type, const shmreg_id *sid, uint32_t which,
                    const char *name)
{
    unsigned char data[SHMREG_EVENT_DATA_MAX] = { 0 };
    size_t len = strlen(name) < EV_NAME_BYTES ? strlen(name) : EV_NAME_BYTES;
    memcpy(data, name, len);
    int good = e->type == type && test_id_eq(&e->session, sid) && test_id_eq(&e->room, &zero_id) &&
               e->which == which && e->len == len && memcmp(e->data, data, sizeof data) == 0 &&
               e->old_state == 0 && e->new_state == 0 && e->config_gen == 0 && e->pid == getpid();
    if (!good)
        diag("event: type %u which %u len %u data '%.16s' old %d new %d pid %d", e->type, e->which, e->len,
             (const char *)e->data, e->old_state, e->new_state, (int)e->pid);
    return good;
}

static void test_events(void)
{
    shmreg *h = reg_new("profile-events", 64);
    shmreg_id a = test_session_new(h), b = test_session_new(h);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_PROFILE_JOINED) | SHMREG_EV_MASK(SHMREG_EV_PROFILE_LEFT),
                         NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    shmreg_event ev[16];
    const char *longname = "a-profile-name-of-30-bytes-xyz";

    join(h, &a, "trunk", "carrier-a", 0, NULL);
    int n = test_drain_events(sub, ev, 16);
    is(n, 1, "a join publishes one event");
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_JOINED, &a, 1, "trunk"),
       "... profile_joined: the session, which = count after (1), data/len = \"trunk\"");
    join(h, &b, "trunk", "carrier-a", 0, NULL);
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_JOINED, &b, 2, "trunk"),
       "the second join: profile_joined with which 2");
    join(h, &a, longname, "v", 0, NULL);
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_JOINED, &a, 1, longname),
       "a 30-byte profile name: data holds its first 12 bytes, len 12");

    uint64_t c;
    is(join(h, &a, "trunk", "carrier-a", 0, NULL), SHMREG_EEXIST, "a join refused with SHMREG_EEXIST ...");
    is(join(h, &b, "capped", "", 1, NULL), 0, "(a join that fills (capped) to its limit 1 ...)");
    is(join(h, &a, "capped", "", 1, &c), SHMREG_ELIMIT, "and one refused with SHMREG_ELIMIT ...");
    is(shmreg_profile_leave(h, &a, S("nope"), S("")), SHMREG_ENOENT, "and a leave refused with SHMREG_ENOENT ...");
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_JOINED, &b, 1, "capped"),
       "... publish nothing: only the successful join's event is there");

    shmreg_profile_leave(h, &a, S("trunk"), S("carrier-a"));
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_LEFT, &a, 1, "trunk"),
       "a leave publishes profile_left with which = count after (1)");
    shmreg_profile_leave(h, &b, S("trunk"), S("carrier-a"));
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_LEFT, &b, 0, "trunk"),
       "the last member's leave: which 0");
    shmreg_profile_leave(h, &a, test_ss(longname), S("v"));
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_LEFT, &a, 0, longname),
       "leaving the long-named pair: data holds its first 12 bytes");

    /* Filtering by session. */
    shmreg_sub *sa = NULL;
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_PROFILE_JOINED), &a, &sa);
    join(h, &b, "x", "", 0, NULL);
    join(h, &a, "x", "", 0, NULL);
    shmreg_profile_leave(h, &a, S("x"), S(""));
    n = test_drain_events(sa, ev, 16);
    ok(n == 1 && event_is(&ev[0], SHMREG_EV_PROFILE_JOINED, &a, 2, "x"),
       "a subscriber filtering on one session and on profile_joined gets exactly its join");
    shmreg_unsubscribe(sa);
    shmreg_unsubscribe(sub);

    ok(shmreg_event_name(SHMREG_EV_PROFILE_JOINED) != NULL && shmreg_event_name(SHMREG_EV_PROFILE_LEFT) != NULL,
       "both event types have a name");
    uint32_t t = 0;
    ok(shmreg_event_parse(shmreg_event_name(SHMREG_EV_PROFILE_JOINED), &t) == 0 && t == SHMREG_EV_PROFILE_JOINED,
       "... that parses back");
    ok(strstr(shmreg_strerror(SHMREG_ELIMIT), "ELIMIT") != NULL, "shmreg_strerror(SHMREG_ELIMIT) names it");
    test_reg_destroy(h);
}

/* Every end of a membership is announced after the event that ends it:
 * a final state, a timeout's FAIL; a delete announces them before
 * session_deleted; a membership left already is not announced again. */
static void test_end_events(void)
{
    shmreg *h = reg_new("profile-end-events", 64);
    shmreg_id a = test_session_new(h), b = test_session_new(h), c = test_session_new(h);
    join(h, &a, "trunk", "x", 0, NULL);
    join(h, &a, "customer", "acme", 0, NULL);
    join(h, &b, "trunk", "x", 0, NULL);
    join(h, &c, "trunk", "x", 0, NULL);
    join(h, &c, "inbound", "", 0, NULL);
    shmreg_sub *sub = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    shmreg_event ev[16];

    is(shmreg_session_transition(h, &a, 0, SHMREG_STATE_CANCELLED, NULL), 0, "a: Initiating -> Cancelled");
    int n = test_drain_events(sub, ev, 16);
    ok(n == 3 && ev[0].type == SHMREG_EV_STATE_CHANGED && event_is(&ev[1], SHMREG_EV_PROFILE_LEFT, &a, 2, "trunk") &&
       event_is(&ev[2], SHMREG_EV_PROFILE_LEFT, &a, 0, "customer"),
       "state_changed, then profile_left (trunk, count 2) and (customer, 0): %d events", n);
    is(count_of(h, "trunk", "x"), 2, "(trunk, x) counts 2");
    is(shmreg_session_delete(h, &a), 0, "a is deleted");
    n = test_drain_events(sub, ev, 16);
    ok(n == 1 && ev[0].type == SHMREG_EV_SESSION_DELETED, "only session_deleted: its pairs were left (%d events)", n);

    is(shmreg_session_set_timeout(h, &b, 1, SHMREG_TIMEOUT_FAIL, 0), 0, "b: a FAIL deadline long past");
    shmreg_expired out[4];
    is(shmreg_expire(h, 0, out, 4), 1, "a sweep fires it");
    n = test_drain_events(sub, ev, 16);
    ok(n == 2 && ev[0].type == SHMREG_EV_TIMEOUT && ev[0].new_state == SHMREG_STATE_FAILED &&
       event_is(&ev[1], SHMREG_EV_PROFILE_LEFT, &b, 1, "trunk"),
       "timeout (to Failed), then profile_left (trunk, count 1): %d events", n);

    is(shmreg_profile_leave(h, &c, S("inbound"), S("")), 0, "c leaves (inbound)");
    test_drain_events(sub, ev, 16);
    is(shmreg_session_delete(h, &c), 0, "c is deleted in (trunk, x)");
    n = test_drain_events(sub, ev, 16);
    ok(n == 2 && event_is(&ev[0], SHMREG_EV_PROFILE_LEFT, &c, 0, "trunk") && ev[1].type == SHMREG_EV_SESSION_DELETED,
       "profile_left (trunk, count 0), then session_deleted; none for the pair it had left: %d events", n);
    ok(count_of(h, "trunk", "x") == 0 && count_of(h, "customer", "acme") == 0 && count_of(h, "inbound", "") == 0,
       "every count is 0");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ admission race */

#define A_PROCS 8
#define A_SESSIONS 200
#define A_LIMIT 50
#define A_ROUNDS 20

struct adm_shared {
    atomic_int ready, go;
    shmreg_id sess[A_SESSIONS];
    atomic_int won[A_SESSIONS];
    atomic_long joined, refused, bad_count, other;
    /* last place */
    shmreg_id racer[A_PROCS];
    atomic_int round, done;
    int result[A_ROUNDS + 1][A_PROCS];
    uint64_t rcount[A_ROUNDS + 1][A_PROCS];
    char first[200];
};

static struct adm_shared *as;

static void adm_note(const char *what, int rc)
{
    if (atomic_fetch_add(&as->other, 1) == 0)
        snprintf(as->first, sizeof as->first, "%s: %s (%s)", what, shmreg_strerror(rc), shmreg_errmsg());
}

static void admission_child(void *arg)
{
    int k = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    atomic_fetch_add(&as->ready, 1);
    while (!atomic_load(&as->go))
        sched_yield();
    for (int j = k; j < A_SESSIONS; j += A_PROCS) {
        uint64_t c = 0;
        int rc = join(h, &as->sess[j], "customer", "acme", A_LIMIT, &c);
        if (rc == 0) {
            atomic_store(&as->won[j], 1);
            atomic_fetch_add(&as->joined, 1);
            if (c < 1 || c > A_LIMIT)
                atomic_fetch_add(&as->bad_count, 1);
        } else if (rc == SHMREG_ELIMIT) {
            atomic_fetch_add(&as->refused, 1);
            if (c != A_LIMIT)
                atomic_fetch_add(&as->bad_count, 1);
        } else
            adm_note("join", rc);
        uint64_t now = 0;
        if (shmreg_profile_count(h, S("customer"), S("acme"), &now) != 0 || now > A_LIMIT)
            atomic_fetch_add(&as->bad_count, 1);
    }
    shmreg_close(h);
}

static void leave_child(void *arg)
{
    int k = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    for (int j = k; j < A_SESSIONS; j += A_PROCS)
        if (atomic_load(&as->won[j])) {
            int rc = shmreg_profile_leave(h, &as->sess[j], S("customer"), S("acme"));
            if (rc != 0)
                adm_note("leave", rc);
        }
    shmreg_close(h);
}

static void last_place_child(void *arg)
{
    int k = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    for (int r = 1; r <= A_ROUNDS; r++) {
        double give_up = test_mono_s() + 20;
        while (atomic_load(&as->round) < r && test_mono_s() < give_up)
            sched_yield();
        if (atomic_load(&as->round) < r)
            break;
        uint64_t c = 0;
        as->result[r][k] = join(h, &as->racer[k], "trunk", "last", A_LIMIT / 5, &c);
        as->rcount[r][k] = c;
        atomic_fetch_add(&as->done, 1);
    }
    shmreg_close(h);
}

static void test_admission_race(void)
{
    shmreg *h = reg_new("profile-admission", 512);
    as = test_shared(sizeof *as);
    for (int i = 0; i < A_SESSIONS; i++)
        as->sess[i] = test_session_new(h);
    pid_t pid[A_PROCS];
    for (int k = 0; k < A_PROCS; k++)
        pid[k] = test_fork(admission_child, (void *)(intptr_t)k);
    double give_up = test_mono_s() + 20;
    while (atomic_load(&as->ready) < A_PROCS && test_mono_s() < give_up)
        sched_yield();
    atomic_store(&as->go, 1);
    int st = 0;
    for (int k = 0; k < A_PROCS; k++)
        st |= test_wait(pid[k]);
    is(st, 0, "%d processes tried to join %d sessions to (customer, acme) with limit %d", A_PROCS, A_SESSIONS,
       A_LIMIT);
    is(atomic_load(&as->other), 0, "... no call failed otherwise%s%s", as->first[0] ? ": " : "", as->first);
    is(atomic_load(&as->joined), A_LIMIT, "exactly %d joins succeeded", A_LIMIT);
    is(atomic_load(&as->refused), A_SESSIONS - A_LIMIT, "exactly %d were refused with SHMREG_ELIMIT",
       A_SESSIONS - A_LIMIT);
    is(atomic_load(&as->bad_count), 0, "every *count was in 1..%d on success and %d on refusal; no count read over %d",
       A_LIMIT, A_LIMIT, A_LIMIT);
    is(count_of(h, "customer", "acme"), A_LIMIT, "the count is %d", A_LIMIT);
    shmreg_id want[A_SESSIONS], ids[A_SESSIONS];
    int nw = 0;
    for (int j = 0; j < A_SESSIONS; j++)
        if (atomic_load(&as->won[j]))
            want[nw++] = as->sess[j];
    int n = members(h, "customer", "acme", ids, A_SESSIONS);
    is(n, A_LIMIT, "member_next lists %d members", A_LIMIT);
    ok(test_ids_same_set(ids, n, want, nw), "... exactly the sessions whose join succeeded, each once");
    int nprof_ok = 1;
    for (int j = 0; j < A_SESSIONS; j++)
        nprof_ok &= nprofiles_of(h, &as->sess[j]) == (uint32_t)atomic_load(&as->won[j]);
    ok(nprof_ok, "every session's nprofiles is 1 if its join succeeded, else 0");

    for (int k = 0; k < A_PROCS; k++)
        pid[k] = test_fork(leave_child, (void *)(intptr_t)k);
    st = 0;
    for (int k = 0; k < A_PROCS; k++)
        st |= test_wait(pid[k]);
    is(st, 0, "%d processes leave the members at once", A_PROCS);
    is(atomic_load(&as->other), 0, "... every leave succeeded");
    is(count_of(h, "customer", "acme"), 0, "the count is 0");
    is(members(h, "customer", "acme", ids, A_SESSIONS), 0, "member_next lists nobody");
    struct pair_seen ps[4];
    is(pairs(h, S("customer"), ps, 4), 0, "profile_next of customer lists no pair");

    /* The last place, round after round. */
    int lim = A_LIMIT / 5;
    for (int i = 0; i < lim - 1; i++)
        join(h, &as->sess[i], "trunk", "last", lim, NULL);
    for (int k = 0; k < A_PROCS; k++)
        as->racer[k] = test_session_new(h);
    for (int k = 0; k < A_PROCS; k++)
        pid[k] = test_fork(last_place_child, (void *)(intptr_t)k);
    int rounds_ok = 0, counts_ok = 1;
    for (int r = 1; r <= A_ROUNDS; r++) {
        atomic_store(&as->round, r);
        give_up = test_mono_s() + 20;
        while (atomic_load(&as->done) < r * A_PROCS && test_mono_s() < give_up)
            sched_yield();
        int wins = 0, refused = 0, winner = -1;
        for (int k = 0; k < A_PROCS; k++) {
            if (as->result[r][k] == 0) {
                wins++;
                winner = k;
                counts_ok &= as->rcount[r][k] == (uint64_t)lim;
            } else if (as->result[r][k] == SHMREG_ELIMIT) {
                refused++;
                counts_ok &= as->rcount[r][k] == (uint64_t)lim;
            }
        }
        if (wins == 1 && refused == A_PROCS - 1)
            rounds_ok++;
        else
            diag("round %d: %d wins, %d refused", r, wins, refused);
        counts_ok &= count_of(h, "trunk", "last") == (uint64_t)lim;
        if (winner >= 0)
            shmreg_profile_leave(h, &as->racer[winner], S("trunk"), S("last"));
    }
    st = 0;
    for (int k = 0; k < A_PROCS; k++)
        st |= test_wait(pid[k]);
    is(st, 0, "%d processes raced for the last place of (trunk, last), limit %d, %d times", A_PROCS, lim, A_ROUNDS);
    is(rounds_ok, A_ROUNDS, "every round exactly one won and %d got SHMREG_ELIMIT", A_PROCS - 1);
    ok(counts_ok, "the winner's and the refused *count were %d, and so was the count after each round", lim);
    is(count_of(h, "trunk", "last"), lim - 1, "after the last winner left: %d", lim - 1);

    shmreg_check_report rep;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "shmreg_check finds nothing wrong");
    munmap(as, sizeof *as);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ churn */

#define C_PROCS 4
#define C_SESS 12
#define C_ITERS 10000
#define C_PAIRS 4

static const struct {
    const char *p, *v;
    uint32_t limit;
} cpair[C_PAIRS] = {
    { "trunk", "carrier-a", 5 },
    { "trunk", "carrier-b", 9 },
    { "customer", "acme", 0 },
    { "inbound", "", 3 },
};

struct churn_report {
    shmreg_id sess[C_SESS];
    unsigned char in[C_SESS][C_PAIRS];
    long joins, leaves, refused, deletes, bad, errors;
    char first[200];
};

struct churn_shared {
    atomic_int ready, go;
    struct churn_report r[C_PROCS];
};

static struct churn_shared *cs;

static void churn_child(void *arg)
{
    int k = (int)(intptr_t)arg;
    struct churn_report *r = &cs->r[k];
    shmreg *h = test_reg_attach();
    unsigned seed = (unsigned)getpid() * 2654435761u;
    for (int i = 0; i < C_SESS; i++)
        r->sess[i] = test_session_new(h);
    atomic_fetch_add(&cs->ready, 1);
    while (!atomic_load(&cs->go))
        sched_yield();
#define C_ERR(what, rc) \
    do { \
        if (r->errors++ == 0) \
            snprintf(r->first, sizeof r->first, "%s: %s (%s)", what, shmreg_strerror(rc), shmreg_errmsg()); \
    } while (0)
    for (int it = 0; it < C_ITERS; it++) {
        int s = (int)(rand_r(&seed) % C_SESS), p = (int)(rand_r(&seed) % C_PAIRS);
        uint64_t c = 0;
        if (rand_r(&seed) % 64 == 0) {
            /* Half the calls end in a final state first (which leaves
             * their pairs), half are deleted while in them. */
            int rc = rand_r(&seed) % 2 ? shmreg_session_transition(h, &r->sess[s], 0, SHMREG_STATE_CANCELLED, NULL)
                                       : 0;
            if (rc != 0)
                C_ERR("cancel", rc);
            if ((rc = shmreg_session_delete(h, &r->sess[s])) != 0)
                C_ERR("delete", rc);
            memset(r->in[s], 0, sizeof r->in[s]);
            r->sess[s] = test_session_new(h);
            r->deletes++;
        } else if (r->in[s][p]) {
            int rc = shmreg_profile_leave(h, &r->sess[s], test_ss(cpair[p].p), test_ss(cpair[p].v));
            if (rc != 0)
                C_ERR("leave", rc);
            r->in[s][p] = 0;
            r->leaves++;
        } else {
            int rc = join(h, &r->sess[s], cpair[p].p, cpair[p].v, cpair[p].limit, &c);
            if (rc == 0) {
                r->in[s][p] = 1;
                r->joins++;
                if (c < 1 || (cpair[p].limit && c > cpair[p].limit))
                    r->bad++;
            } else if (rc == SHMREG_ELIMIT) {
                r->refused++;
                if (cpair[p].limit == 0 || c != cpair[p].limit)
                    r->bad++;
            } else
                C_ERR("join", rc);
        }
        if (it % 16 == 0 && cpair[p].limit) {
            int rc = shmreg_profile_count(h, test_ss(cpair[p].p), test_ss(cpair[p].v), &c);
            if (rc != 0)
                C_ERR("count", rc);
            else if (c > cpair[p].limit)
                r->bad++;
        }
    }
#undef C_ERR
    shmreg_close(h);
}

/* A follower that counts each profile's members from profile_joined and
 * profile_left alone (the events name the profile, not the value: it
 * sums the profile's pairs) agrees with the counts: every membership
 * that ended, by a leave, a final state or a delete, was announced once. */
static long followed[C_PAIRS];

static void follower_agrees(shmreg *h, shmreg_sub *sub, const char *when)
{
    shmreg_event ev[256];
    uint64_t missed = 0, lost = 0;
    long events = 0;
    int n, odd = 0;
    while ((n = shmreg_poll(sub, ev, 256, 0, &missed)) > 0) {
        lost += missed;
        events += n;
        for (int i = 0; i < n; i++) {
            int p = 0;
            while (p < C_PAIRS && !(ev[i].len == strlen(cpair[p].p) && memcmp(ev[i].data, cpair[p].p, ev[i].len) == 0))
                p++;
            if (p == C_PAIRS)
                odd++;
            else
                followed[p] += ev[i].type == SHMREG_EV_PROFILE_JOINED ? 1 : -1;
        }
    }
    int agree = n == 0 && lost == 0 && odd == 0;
    for (int p = 0; p < C_PAIRS; p++) {
        if (p > 0 && strcmp(cpair[p].p, cpair[p - 1].p) == 0)
            continue; /* the profile's first pair holds its sum */
        uint64_t want = 0;
        for (int q = p; q < C_PAIRS && strcmp(cpair[q].p, cpair[p].p) == 0; q++)
            want += count_of(h, cpair[q].p, cpair[q].v);
        if ((uint64_t)followed[p] != want) {
            diag("%s: profile %s: the events say %ld members, the counts %llu", when, cpair[p].p, followed[p],
                 (unsigned long long)want);
            agree = 0;
        }
    }
    ok(agree, "%s: a follower counting from %ld profile events (0 missed, none unknown) agrees with every "
       "profile's count", when, events);
}

static void test_churn(void)
{
    /* Room for what churning deleters have retired but readers still
     * pin (slots come back once no read section can see them). */
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 4096;
    o.max_handles = 64;
    o.event_records = 1u << 17; /* every event of the run: the follower reads them after */
    o.heap_bytes = 16u << 20;
    shmreg *h = test_reg_new_opts("profile-churn", o);
    cs = test_shared(sizeof *cs);
    shmreg_sub *follow = NULL;
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_PROFILE_JOINED) | SHMREG_EV_MASK(SHMREG_EV_PROFILE_LEFT), NULL,
                         &follow) != 0)
        bail_out("subscribe: %s", shmreg_errmsg());
    pid_t pid[C_PROCS];
    for (int k = 0; k < C_PROCS; k++)
        pid[k] = test_fork(churn_child, (void *)(intptr_t)k);
    double give_up = test_mono_s() + 20;
    while (atomic_load(&cs->ready) < C_PROCS && test_mono_s() < give_up)
        sched_yield();
    atomic_store(&cs->go, 1);
    int st = 0;
    for (int k = 0; k < C_PROCS; k++)
        st |= test_wait(pid[k]);
    long joins = 0, leaves = 0, refused = 0, deletes = 0, bad = 0, errors = 0;
    for (int k = 0; k < C_PROCS; k++) {
        joins += cs->r[k].joins;
        leaves += cs->r[k].leaves;
        refused += cs->r[k].refused;
        deletes += cs->r[k].deletes;
        bad += cs->r[k].bad;
        errors += cs->r[k].errors;
        if (cs->r[k].errors)
            diag("worker %d: %s", k, cs->r[k].first);
    }
    is(st, 0, "%d processes joined, left and deleted %d times each on %d pairs", C_PROCS, C_ITERS, C_PAIRS);
    note("%ld joins, %ld leaves, %ld refused at the limit, %ld deletes", joins, leaves, refused, deletes);
    is(errors, 0, "every join, leave and delete did what its process expected");
    is(bad, 0, "no *count or count read was ever over a limit, and every refusal reported the limit");
    ok(refused > 0, "some joins were refused at a limit (%ld)", refused);

    for (int p = 0; p < C_PAIRS; p++) {
        shmreg_id want[C_PROCS * C_SESS], ids[C_PROCS * C_SESS + 8];
        int nw = 0;
        for (int k = 0; k < C_PROCS; k++)
            for (int s = 0; s < C_SESS; s++)
                if (cs->r[k].in[s][p])
                    want[nw++] = cs->r[k].sess[s];
        uint64_t c = count_of(h, cpair[p].p, cpair[p].v);
        int n = members(h, cpair[p].p, cpair[p].v, ids, C_PROCS * C_SESS + 8);
        ok(c == (uint64_t)nw && n == nw && test_ids_same_set(ids, n, want, nw) &&
               (cpair[p].limit == 0 || c <= cpair[p].limit),
           "(%s, %s): count %llu = %d listed = %d the processes hold, the same sessions", cpair[p].p, cpair[p].v,
           (unsigned long long)c, n, nw);
    }
    int views_ok = 1;
    for (int k = 0; k < C_PROCS; k++)
        for (int s = 0; s < C_SESS; s++) {
            const char *pp[C_PAIRS], *vv[C_PAIRS];
            int m = 0;
            for (int p = 0; p < C_PAIRS; p++)
                if (cs->r[k].in[s][p]) {
                    pp[m] = cpair[p].p;
                    vv[m++] = cpair[p].v;
                }
            views_ok &= nprofiles_of(h, &cs->r[k].sess[s]) == (uint32_t)m &&
                        session_lists(h, &cs->r[k].sess[s], m, pp, vv);
        }
    ok(views_ok, "every session's nprofiles and session_profile list exactly its memberships");
    follower_agrees(h, follow, "after the churn");
    shmreg_check_report rep;
    int problems = 0;
    is(shmreg_check(h, 0, &rep, NULL, NULL, NULL), 0, "shmreg_check returns 0");
    problems = (int)rep.problems;
    is(problems, 0, "... 0 problems");
    is(rep.leaked_blocks, 0, "... 0 leaked blocks");

    int rc = 0;
    for (int k = 0; k < C_PROCS; k++)
        for (int s = 0; s < C_SESS; s++)
            rc |= shmreg_session_delete(h, &cs->r[k].sess[s]);
    is(rc, 0, "delete every session");
    int zero = 1;
    for (int p = 0; p < C_PAIRS; p++)
        zero &= count_of(h, cpair[p].p, cpair[p].v) == 0;
    ok(zero, "every count is 0");
    follower_agrees(h, follow, "after every session is deleted");
    shmreg_unsubscribe(follow);
    struct pair_seen ps[8];
    is(pairs(h, NOSTR, ps, 8), 0, "and no pair is listed");
    munmap(cs, sizeof *cs);
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_basics);
    TEST_RUN(test_errors);
    TEST_RUN(test_delete);
    TEST_RUN(test_events);
    TEST_RUN(test_end_events);
    TEST_RUN(test_admission_race);
    TEST_RUN(test_churn);
    alarm(0);
    return done_testing();
}
