/*
 * ctl_control.c — shmregctl's call-control commands on a registry this
 * test fills through the API: profiles and profile (values, counts,
 * members, --top), profile-join with a limit and profile-leave, show's
 * timeout, profiles and variables, timeouts (soonest first), timeout and
 * expire, var, list --user / --from-user / --to-user through the user
 * index, the metrics' bounded profile families and stat's control
 * figures, and the new event types in events; human output and JSON
 * (parsed), error exits. Times are only checked to be on the right side
 * of now: nothing here measures speed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "shmreg.h"
#include "testutil.h"

static const char *dir;
static shmreg *h;
static shmreg_id s1, s2, s3, s4;
static char t1[37], t2[37], t3[37], t4[37], gone[37];

/* An awkward value: a quote, a backslash, a newline, a byte that is not
 * UTF-8. */
static const char odd_value[] = "a\"b\\c\nd\xff";

static shmreg_id make(const char *from, const char *to, int state)
{
    shmreg_fields f = {0};
    shmreg_id id;
    f.str[SHMREG_FIELD_FROM_URI] = test_ss(from);
    f.str[SHMREG_FIELD_TO_URI] = test_ss(to);
    if (shmreg_session_create(h, &f, &id))
        bail_out("create: %s", shmreg_errmsg());
    if (state != SHMREG_STATE_INITIATING &&
        shmreg_session_transition(h, &id, SHMREG_STATE_ANY, state, NULL))
        bail_out("transition: %s", shmreg_errmsg());
    return id;
}

static void join(const shmreg_id *id, const char *p, const char *v)
{
    if (shmreg_profile_join(h, id, test_ss(p), test_ss(v), 0, NULL))
        bail_out("join %s=%s: %s", p, v, shmreg_errmsg());
}

static void populate(void)
{
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 100};
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("cannot create %s: %s", dir, shmreg_errmsg());
    s1 = make("sip:alice@Example.COM", "sip:bob@example.com", SHMREG_STATE_ACTIVE);
    s2 = make("Alice <sip:alice@example.com>;tag=9", "sip:carol@example.org", SHMREG_STATE_RINGING);
    s3 = make("sip:dave@example.net", "sip:alice@example.com", SHMREG_STATE_INITIATING);
    s4 = make("sip:erin@example.net", "sip:frank@example.net", SHMREG_STATE_ACTIVE);
    join(&s1, "trunk", "carrier-a");
    join(&s1, "customer", "acme");
    join(&s2, "trunk", "carrier-a");
    join(&s2, "inbound", "");
    join(&s3, "trunk", "carrier-b");
    if (shmreg_profile_join(h, &s2, test_ss("odd"), (shmreg_str){odd_value, sizeof odd_value - 1}, 0, NULL))
        bail_out("join odd: %s", shmreg_errmsg());
    if (shmreg_session_set_timeout(h, &s1, 3600000000000ull, SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE, 0) ||
        shmreg_session_set_timeout(h, &s2, 600000000000ull, SHMREG_TIMEOUT_NOTIFY | SHMREG_TIMEOUT_RELATIVE,
                                   5000000000ull) ||
        shmreg_session_set_timeout(h, &s3, test_now_ns() - 5000000000ull, SHMREG_TIMEOUT_FAIL, 0))
        bail_out("set_timeout: %s", shmreg_errmsg());
    if (shmreg_session_var_set(h, &s1, test_ss("caller_class"), test_ss("gold")) ||
        shmreg_session_var_set(h, &s1, test_ss("note"), test_ss("x y")))
        bail_out("var_set: %s", shmreg_errmsg());
    shmreg_id_format(&s1, t1);
    shmreg_id_format(&s2, t2);
    shmreg_id_format(&s3, t3);
    shmreg_id_format(&s4, t4);
    shmreg_id x = s1;
    x.bytes[0] ^= 0x55;
    shmreg_id_format(&x, gone);
}

static void test_help(void)
{
    static const char *cmds[] = {"profiles", "profile", "profile-join", "profile-leave", "timeouts",
                                 "timeout", "expire", "var"};
    ctl_res r;
    int all = 1;
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: shmregctl %s", cmds[i]);
        size_t n = strlen(want);
        int st = ctl(&r, cmds[i], "--help", NULL);
        if (st != 0 || strncmp(r.out, want, n) != 0 || (r.out[n] != ' ' && r.out[n] != '\n')) {
            diag("%s --help: status %d, output: %s", cmds[i], st, r.out);
            all = 0;
        }
        ctl_res_free(&r);
    }
    ok(all, "every call-control command has --help (exit 0, its usage on stdout)");
    is(ctl(&r, "--help", NULL), 0, "the command list");
    ok(strstr(r.out, "  profile-join ID PROFILE [VALUE] [--limit N]\n") &&
       strstr(r.out, "  timeouts [--limit N] [--state LIST]\n"), "names them");
    ctl_res_free(&r);
}

static void test_profiles(void)
{
    ctl_res r;
    char row[256];
    is(ctl(&r, "-r", dir, "profiles", NULL), 0, "profiles: exit 0");
    snprintf(row, sizeof row, "%-32s  %8s  %8s\n", "PROFILE", "VALUES", "MEMBERS");
    ok(strncmp(r.out, row, strlen(row)) == 0, "a header (%s)", r.out);
    is(count_lines(r.out), 5, "and four profiles");
    snprintf(row, sizeof row, "%-32s  %8d  %8d", "trunk", 2, 3);
    ok(has_line(r.out, row), "trunk: 2 values, 3 members");
    snprintf(row, sizeof row, "%-32s  %8d  %8d", "inbound", 1, 1);
    ok(has_line(r.out, row), "inbound: its empty value, 1 member");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profiles", "--json", NULL), 0, "profiles --json");
    is_str(jd(&r, "[[x['profile'], x['values'], x['members']] for x in d['profiles']]"),
           "[[\"customer\", 1, 1], [\"inbound\", 1, 1], [\"odd\", 1, 1], [\"trunk\", 2, 3]]",
           "every profile in name order, its values and members");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "profile", "trunk", "--json", NULL), 0, "profile trunk --json");
    is_str(jd(&r, "[d['profile'], sorted([x['value'], x['count']] for x in d['values']), d['value_count'], d['members']]"),
           "[\"trunk\", [[\"carrier-a\", 2], [\"carrier-b\", 1]], 2, 3]", "each value with its count, and the sums");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile", "trunk", "--top", "1", NULL), 0, "profile trunk --top 1");
    snprintf(row, sizeof row, "%8s  VALUE\n%8d  carrier-a\nvalue_count:           2\nmembers:               3\n",
             "COUNT", 2);
    ok(strstr(r.out, row) != NULL, "the largest value only, then the sums over all values (%s)", r.out);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile", "inbound", "--json", NULL), 0, "a profile used without values");
    is_str(jd(&r, "d['values']"), "[{\"count\": 1, \"value\": \"\"}]", "has the empty value");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "profile", "trunk", "carrier-a", "--json", NULL), 0, "profile trunk carrier-a");
    char expr[512];
    snprintf(expr, sizeof expr, "[d['count'], sorted([x['id'], x['state'], x['from_uri']] for x in d['members']) == "
             "sorted([['%s', 'Active', 'sip:alice@Example.COM'], ['%s', 'Ringing', 'Alice <sip:alice@example.com>;tag=9']])]",
             t1, t2);
    is_str(jd(&r, expr), "[2, true]", "its count and its members, with their state and From");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile", "trunk", "carrier-b", NULL), 0, "for people");
    snprintf(row, sizeof row, "%-36s  %-12s  ", t3, "Initiating");
    ok(has_line(r.out, "count:                 1") && strstr(r.out, row), "the count, a member row (%s)", r.out);
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "profile", "nosuch", "--json", NULL), 0, "a profile nobody is in: exit 0");
    is_str(jd(&r, "[d['values'], d['value_count'], d['members']]"), "[[], 0, 0]", "and empty");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile", "trunk", "nosuch", "--json", NULL), 0, "a value nobody is in: exit 0");
    is_str(jd(&r, "[d['count'], d['members']]"), "[0, []]", "count 0, no member");
    ctl_res_free(&r);
    char longname[80];
    memset(longname, 'p', 65);
    longname[65] = 0;
    is(ctl(&r, "-r", dir, "profile", longname, NULL), 2, "a profile name over 64 bytes: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile", "trunk", "carrier-a", "--top", "2", NULL), 2, "--top with a VALUE: exit 2");
    ctl_res_free(&r);
}

static void test_join_leave(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "profile-join", t4, "trunk", "carrier-a", "--limit", "2", NULL), 1,
       "profile-join at the limit: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: trunk=carrier-a is at its limit: 2 members, limit 2; not joined\n", dir);
    is_str(r.err, want, "says so, with the count that refused it");
    ctl_res_free(&r);
    uint64_t n = 0;
    shmreg_profile_count(h, test_ss("trunk"), test_ss("carrier-a"), &n);
    is(n, 2, "and nothing changed");
    is(ctl(&r, "-r", dir, "profile-join", t4, "trunk", "carrier-a", "--limit", "3", "--json", NULL), 0,
       "profile-join under the limit: exit 0");
    snprintf(want, sizeof want, "[\"%s\", \"trunk\", \"carrier-a\", 3, 3]", t4);
    is_str(jd(&r, "[d['id'], d['profile'], d['value'], d['count'], d['limit']]"), want, "the count after");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-join", t4, "trunk", "carrier-a", NULL), 1, "joining twice: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: session %s is in trunk=carrier-a already\n", dir, t4);
    is_str(r.err, want, "named");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-leave", t4, "trunk", "carrier-a", NULL), 0, "profile-leave: exit 0");
    ok(has_line(r.out, "count:                 2"), "the count after (%s)", r.out);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-leave", t4, "trunk", "carrier-a", NULL), 1, "leaving again: exit 1");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-join", gone, "trunk", NULL), 1, "joining a session that does not exist: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: no session %s\n", dir, gone);
    is_str(r.err, want, "named");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-join", t4, "", NULL), 2, "an empty profile name: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "profile-join", t4, "trunk", "--limit", "0", NULL), 2, "--limit 0: exit 2");
    ctl_res_free(&r);
}

static void test_show(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "show", t1, NULL), 0, "show: exit 0");
    ok(has_line(r.out, "timeout_action:        fail"), "the timeout's action");
    ok(strstr(r.out, "\ndue_in:                in ") != NULL, "due in the future (%s)", r.out);
    ok(has_line(r.out, "profiles:") && has_line(r.out, "  - profile:           trunk") &&
       has_line(r.out, "    value:             carrier-a") && has_line(r.out, "    count:             2") &&
       has_line(r.out, "  - profile:           customer"), "each membership as an item, with the count now");
    ok(has_line(r.out, "variables:") && has_line(r.out, "  - key:               caller_class") &&
       has_line(r.out, "    value:             gold"), "each variable as an item");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "show", t1, "--json", NULL), 0, "show --json");
    is_str(jd(&r, "[[p['profile'], p['value'], p['count']] for p in d['profiles']]"),
           "[[\"trunk\", \"carrier-a\", 2], [\"customer\", \"acme\", 1]]", "the memberships, in the order joined");
    is_str(jd(&r, "d['variables']"),
           "[{\"key\": \"caller_class\", \"value\": \"gold\"}, {\"key\": \"note\", \"value\": \"x y\"}]",
           "the variables in the order set");
    is_str(jd(&r, "[d['timeout_action'], 3500e9 < d['due_in_ns'] <= 3600e9, d['deadline_ns'] > d['created_ns']]"),
           "[\"fail\", true, true]", "the deadline, an hour from creation");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "show", t2, "--json", NULL), 0, "show of the notify session");
    is_str(jd(&r, "[d['timeout_action'], d['timeout_grace_ns'], d['profiles'][1]]"),
           "[\"notify\", 5000000000, {\"count\": 1, \"profile\": \"inbound\", \"value\": \"\"}]",
           "notify, its grace, a membership without value");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "show", t4, "--json", NULL), 0, "show of a session without timeout or variables");
    is_str(jd(&r, "[d['deadline_ns'], d['due_in_ns'], d['timeout_action'], d['variables']]"),
           "[null, null, null, []]", "null timeout, no variables");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "show", t4, NULL), 0, "and for people");
    ok(has_line(r.out, "deadline:              -") && has_line(r.out, "timeout_action:        -"),
       "'-' for no timeout");
    ctl_res_free(&r);
}

static void test_timeouts(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "timeouts", NULL), 0, "timeouts: exit 0");
    snprintf(want, sizeof want, "%-36s  %-12s  %-24s  %12s  %-6s  FROM\n", "ID", "STATE", "DEADLINE", "DUE", "ACTION");
    ok(strncmp(r.out, want, strlen(want)) == 0, "a header (%s)", r.out);
    is(count_lines(r.out), 4, "and the three sessions with a deadline");
    const char *row1 = strchr(r.out, '\n') + 1;
    snprintf(want, sizeof want, "%-36s  %-12s  ", t3, "Initiating");
    ok(strncmp(row1, want, strlen(want)) == 0, "the overdue one first");
    const char *nl = strchr(row1, '\n');
    char line[512];
    snprintf(line, sizeof line, "%.*s", (int)(nl - row1), row1);
    ok(strstr(line, "s ago  fail    sip:dave@example.net") != NULL, "how long overdue, its action, From (%s)", line);
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "timeouts", "--json", NULL), 0, "timeouts --json");
    snprintf(want, sizeof want, "[[\"%s\", \"fail\", true], [\"%s\", \"notify\", false], [\"%s\", \"fail\", false]]",
             t3, t2, t1);
    is_str(jl(&r, "[[x['id'], x['timeout_action'], x['due_in_ns'] < 0] for x in L]"), want,
           "soonest first: overdue (negative due_in_ns), ten minutes, an hour");
    is_str(jl(&r, "all(x['deadline_ns'] <= y['deadline_ns'] for x, y in zip(L, L[1:]))"), "true", "deadlines ascending");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeouts", "--limit", "1", "--json", NULL), 0, "timeouts --limit 1");
    snprintf(want, sizeof want, "[\"%s\"]", t3);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "only the soonest");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeouts", "--state", "Ringing", "--json", NULL), 0, "timeouts --state Ringing");
    snprintf(want, sizeof want, "[\"%s\"]", t2);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "only that state");
    ctl_res_free(&r);
}

static void test_timeout_expire(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "timeout", t4, "30", "--json", NULL), 0, "timeout ID 30: exit 0");
    is_str(jd(&r, "[d['state'], d['timeout_action'], 29e9 < d['due_in_ns'] <= 30e9]"), "[\"Active\", \"fail\", true]",
           "armed to fail in 30 s");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t4, "2m", "--notify", "--grace", "10s", "--json", NULL), 0, "--notify --grace");
    is_str(jd(&r, "[d['timeout_action'], d['grace_ns'], 119e9 < d['due_in_ns'] <= 120e9]"), "[\"notify\", 10000000000, true]",
           "replaced: notify in 2 minutes, its grace");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t4, "--off", "--json", NULL), 0, "timeout --off");
    is_str(jd(&r, "[d['deadline_ns'], d['timeout_action']]"), "[null, null]", "disarmed");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t4, "5", "--grace", "1", NULL), 2, "--grace without --notify: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t4, "soon", NULL), 2, "a malformed duration: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t4, NULL), 2, "no duration and no --off: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", gone, "5", NULL), 1, "a session that does not exist: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: no session %s\n", dir, gone);
    is_str(r.err, want, "named");
    ctl_res_free(&r);

    /* Due now (0 from now) and the overdue one fire; the others do not. */
    is(ctl(&r, "-r", dir, "timeout", t4, "0", NULL), 0, "timeout ID 0: due at once");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "expire", "--json", NULL), 0, "expire: exit 0");
    char expr[512];
    snprintf(expr, sizeof expr, "sorted([x['id'], x['old_state'], x['new_state'], x['action']] for x in d['fired']) == "
             "sorted([['%s', 'Initiating', 'Failed', 'fail'], ['%s', 'Active', 'Failed', 'fail']])", t3, t4);
    is_str(jd(&r, expr), "true", "the two due sessions fired: moved to Failed");
    is_str(jd(&r, "[d['fired_count'], d['more_due']]"), "[2, false]", "counted, none left");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "expire", NULL), 0, "a second sweep: exit 0");
    ok(has_line(r.out, "fired_count:           0"), "fires nothing (%s)", r.out);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeouts", "--json", NULL), 0, "timeouts after the sweep");
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t2, t1);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "only the ones not yet due");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "timeout", t3, "10", NULL), 1, "arming a session in a final state: exit 1");
    ok(strstr(r.err, "SHMREG_ESTATE") != NULL, "refused by the library (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "expire", "--max", "0", NULL), 2, "--max 0: exit 2");
    ctl_res_free(&r);
}

static void test_var(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "var", t1, "caller_class", NULL), 0, "var ID KEY: exit 0");
    is_str(r.out, "gold\n", "the value, raw");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "nope", NULL), 1, "a variable not set: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: session %s has no variable 'nope'\n", dir, t1);
    is_str(r.err, want, "named");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", gone, "caller_class", NULL), 1, "a session that does not exist: exit 1");
    snprintf(want, sizeof want, "shmregctl: %s: no session %s\n", dir, gone);
    is_str(r.err, want, "named");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "route", "gw-2", "--json", NULL), 0, "var ID KEY VALUE: set");
    is_str(jd(&r, "[d['key'], d['value']]"), "[\"route\", \"gw-2\"]", "what was set");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "route", "--json", NULL), 0, "read back");
    is_str(jd(&r, "d['value']"), "gw-2", "the new value");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "route", "--unset", NULL), 0, "var --unset: exit 0");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "route", NULL), 1, "then it is gone: exit 1");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "route", "--unset", NULL), 1, "unsetting it again: exit 1");
    ctl_res_free(&r);
    char longkey[40];
    memset(longkey, 'k', 33);
    longkey[33] = 0;
    is(ctl(&r, "-r", dir, "var", t1, longkey, "v", NULL), 2, "a key over 32 bytes: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "var", t1, "k", "v", "--unset", NULL), 2, "a value with --unset: exit 2");
    ctl_res_free(&r);
}

static void test_list_user(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "list", "--user", "alice@example.com", "--json", NULL), 0, "list --user: exit 0");
    snprintf(want, sizeof want, "[\"%s\", \"%s\", \"%s\"]", t1, t2, t3);
    is_str(jl(&r, "[x['id'] for x in L]"), want,
           "her calls by From (host in any case, a display name around the URI) and by To, in creation order");
    is_str(jl(&r, "[L[0]['profiles'], L[0]['variables'], L[0]['timeout_action']]"), "[2, 2, \"fail\"]",
           "rows carry the call-control counts and the timeout");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--from-user", "sip:alice@EXAMPLE.com", "--json", NULL), 0, "list --from-user");
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t1, t2);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "by From only (given as a URI)");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--to-user", "alice@example.com", NULL), 0, "list --to-user, for people");
    is(count_lines(r.out), 2, "a header and one row");
    snprintf(want, sizeof want, "%-36s  %-12s  ", t3, "Failed");
    ok(strstr(r.out, want) != NULL, "by To only");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--user", "Alice@example.com", "--json", NULL), 0, "another user part");
    is(r.out_len, 0, "matches nothing: the user part is case-sensitive");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--user", "alice@example.com", "--state", "Active", "--json", NULL), 0,
       "--user with --state");
    snprintf(want, sizeof want, "[\"%s\"]", t1);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "both filters");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--user", "", NULL), 2, "an empty user: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--from-user", "a@b", "--to-user", "c@d", NULL), 2, "two user options: exit 2");
    ctl_res_free(&r);
}

static void test_metrics_stat(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "metrics", NULL), 0, "metrics: exit 0");
    ok(has_line(r.out, "shmreg_timeouts_armed 2"), "timeouts armed");
    /* After test_timeout_expire: s3 and s4 failed, and a call that is
     * over counts in no profile (s3 was trunk=carrier-b's one member). */
    ok(has_line(r.out, "shmreg_profile_members{profile=\"trunk\",value=\"carrier-a\"} 2") &&
       !strstr(r.out, "value=\"carrier-b\"") &&
       has_line(r.out, "shmreg_profile_members{profile=\"inbound\",value=\"\"} 1"), "members per value");
    ok(has_line(r.out, "shmreg_profile_members_sum{profile=\"trunk\"} 2") &&
       has_line(r.out, "shmreg_profile_values{profile=\"trunk\"} 1"), "per profile: members, values");
    ok(has_line(r.out, "shmreg_profile_members{profile=\"odd\",value=\"a\\\"b\\\\c\\nd?\"} 1"),
       "a label value escaped as the format wants, a byte that is not UTF-8 as '?'");
    /* The new families are typed once each, and every labelled sample is
     * `name{label="escaped",...} count` (ctl_stat checks the rest). */
    static const char check_format[] =
        "lab = r'[a-z_]+=\"(?:[^\"\\\\]|\\\\.)*\"'\n"
        "L = T.splitlines()\n"
        "fams = ['shmreg_profile_members', 'shmreg_profile_members_sum', 'shmreg_profile_values',\n"
        "        'shmreg_timeouts_armed']\n"
        "typed = all(L.count('# TYPE %s gauge' % f) == 1 for f in fams)\n"
        "bad = [l for l in L if '{profile=' in l and not\n"
        "       re.fullmatch(r'shmreg_profile_[a-z_]+\\{%s(,%s)*\\} [0-9]+' % (lab, lab), l)]\n"
        "print('ok' if typed and not bad else 'bad: %r %r' % (typed, bad))\n";
    char *got = py(r.out, r.out_len, PY_TEXT, check_format);
    is_str(got, "ok", "the new families in valid Prometheus text exposition");
    free(got);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "metrics", "--profile-top", "1", NULL), 0, "metrics --profile-top 1");
    ok(has_line(r.out, "shmreg_profile_members{profile=\"trunk\",value=\"carrier-a\"} 2") &&
       !strstr(r.out, "value=\"customer\"") && has_line(r.out, "shmreg_profile_members_sum{profile=\"trunk\"} 2"),
       "the largest value of each profile only; the totals still count all");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "metrics", "--profile-top", "0", NULL), 0, "metrics --profile-top 0");
    ok(!strstr(r.out, "shmreg_profile_members{") && strstr(r.out, "shmreg_profile_values{profile=\"trunk\"} 1"),
       "no series per value");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "metrics", "--profile-top", "x", NULL), 2, "a bad --profile-top: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "stat", "--json", NULL), 0, "stat --json");
    is_str(jd(&r, "d['control']"),
           "{\"profile_members\": 5, \"profile_values\": 4, \"profiles\": 4, \"timeouts_armed\": 2}",
           "the call-control figures");
    ctl_res_free(&r);
}

/* events: act once the tool has subscribed, which it shows by flushing
 * the start of its document (or its header) as soon as it has. */
typedef struct acting {
    ctl_res *r;
    const char *subscribed;
    int acted;
} acting;

static shmreg_id ex;

static void act(pid_t pid, void *arg)
{
    acting *a = arg;
    (void)pid;
    if (a->acted || !strstr(a->r->out, a->subscribed))
        return;
    a->acted = 1;
    ex = make("sip:x@h", "sip:y@h", SHMREG_STATE_INITIATING);
    join(&ex, "trunk", "carrier-z");
    shmreg_session_var_set(h, &ex, test_ss("k"), test_ss("v"));
    shmreg_session_var_unset(h, &ex, test_ss("k"));
    shmreg_profile_leave(h, &ex, test_ss("trunk"), test_ss("carrier-z"));
    shmreg_session_set_timeout(h, &ex, test_now_ns() - 1000000000ull, SHMREG_TIMEOUT_FAIL, 0);
    shmreg_expired out[4];
    shmreg_expire(h, 0, out, 4);
    shmreg_session_delete(h, &ex);
}

static void test_events(void)
{
    static const char types[] = "profile_joined,profile_left,var_changed,timeout";
    ctl_res r;
    acting a = {.r = &r, .subscribed = "\"events\":["};
    char *argv[] = {(char *)ctl_bin(), "-r", (char *)dir, "events", "--timeout", "2", "--types", (char *)types,
                    "--json", NULL};
    ctl_spawn(&r, NULL, 0, argv, act, &a, 60);
    is(r.status, 0, "events --types with the call-control types: exit 0");
    ok(a.acted, "the test acted once the tool was subscribed");
    is_str(jd(&r, "[x['type'] for x in d['events']]"),
           "[\"profile_joined\", \"var_changed\", \"var_changed\", \"profile_left\", \"timeout\"]",
           "a join, a variable set and unset, a leave, a timeout, in order");
    is_str(jd(&r, "[[e['profile'], e['count']] for e in d['events'] if e['type'].startswith('profile')]"),
           "[[\"trunk\", 1], [\"trunk\", 0]]", "profile events: the name, the count after");
    is_str(jd(&r, "[[e['key'], e['set']] for e in d['events'] if e['type'] == 'var_changed']"),
           "[[\"k\", true], [\"k\", false]]", "variable events: the key, set or unset");
    is_str(jd(&r, "[[e['old_state'], e['new_state'], e['action']] for e in d['events'] if e['type'] == 'timeout']"),
           "[[\"Initiating\", \"Failed\", \"fail\"]]", "the timeout: the states, the action");
    ctl_res_free(&r);

    acting b = {.r = &r, .subscribed = "DETAIL"};
    char *argv2[] = {(char *)ctl_bin(), "-r", (char *)dir, "events", "--timeout", "2", "--types", (char *)types, NULL};
    ctl_spawn(&r, NULL, 0, argv2, act, &b, 60);
    is(r.status, 0, "the same for people");
    char want[256];
    char tx[37];
    shmreg_id_format(&ex, tx);
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  trunk, count 1\n", "profile_joined", (int)getpid(), tx);
    ok(strstr(r.out, want) != NULL, "a join: profile and count (%s)", r.out);
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  unset k\n", "var_changed", (int)getpid(), tx);
    ok(strstr(r.out, want) != NULL, "an unset: its key");
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  Initiating -> Failed, fail\n", "timeout", (int)getpid(), tx);
    ok(strstr(r.out, want) != NULL, "a timeout: states and action");
    ctl_res_free(&r);
}

int main(void)
{
    dir = strdup(test_dir("ctlcc"));
    populate();
    test_help();
    test_profiles();
    test_join_leave();
    test_show();
    test_timeouts();
    test_timeout_expire();
    test_var();
    test_list_user();
    test_metrics_stat();
    test_events();
    shmreg_close(h);
    free((void *)dir);
    return done_testing();
}
