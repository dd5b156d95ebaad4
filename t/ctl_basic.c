/*
 * ctl_basic.c — shmregctl's command line, and the session commands on a
 * small registry this test populates: usage and exit codes, create and
 * destroy, list (filters, order, limit), show, sdp byte for byte,
 * dialogs and dialog find, handles; human output and JSON (parsed).
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
static shmreg_id s1, s2, s3;
static char t1[37], t2[37], t3[37];

static const char sdp_local[] = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                                "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
static const char sdp_remote[] = "v=0\r\n\0\xff\x01 binary tail"; /* NUL, bad UTF-8 */
#define SDP_REMOTE_LEN (sizeof sdp_remote - 1)

static shmreg_str S(const char *s) { return (shmreg_str){s, strlen(s)}; }

static void populate(void)
{
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 1000};
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("cannot create %s: %s", dir, shmreg_errmsg());
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:alice@example.com");
    f.str[SHMREG_FIELD_TO_URI] = S("sip:bob@example.com");
    f.str[SHMREG_FIELD_CALL_ID] = S("call-1@h");
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S("Alice \xc3\x89lise");
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){"\x01\x02\xfe", 3};
    f.local_rtp_port = 4000;
    shmreg_session_create(h, &f, &s1);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:carol@example.org");
    f.str[SHMREG_FIELD_TO_URI] = S("sip:dave@example.org");
    f.str[SHMREG_FIELD_CALL_ID] = S("call-2@h");
    shmreg_session_create(h, &f, &s2);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:\x1b[31mevil@example.net");
    f.str[SHMREG_FIELD_TO_URI] = S("sip:bob@example.net");
    f.str[SHMREG_FIELD_CALL_ID] = S("call-3@h");
    shmreg_session_create(h, &f, &s3);
    shmreg_session_transition(h, &s1, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_transition(h, &s2, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    shmreg_session_set_sdp(h, &s1, SHMREG_SDP_LOCAL, sdp_local, sizeof sdp_local - 1);
    shmreg_session_set_sdp(h, &s1, SHMREG_SDP_REMOTE, sdp_remote, SDP_REMOTE_LEN);
    shmreg_session_counter_add(h, &s1, SHMREG_CTR_PACKETS_SENT, 42);
    shmreg_session_counter_add(h, &s1, SHMREG_CTR_BYTES_SENT, 6720);
    if (shmreg_dialog_bind(h, S("call-1@h"), S("lt1"), S("rt1"), &s1) ||
        shmreg_dialog_bind(h, S("call-2@h"), S("lt2"), S(""), &s2))
        bail_out("dialog bind: %s", shmreg_errmsg());
    shmreg_id_format(&s1, t1);
    shmreg_id_format(&s2, t2);
    shmreg_id_format(&s3, t3);
}

static void test_usage(void)
{
    ctl_res r;
    is(ctl(&r, NULL), 2, "no command: exit 2");
    ok(strstr(r.err, "usage: shmregctl") != NULL, "and the usage on stderr");
    ctl_res_free(&r);
    is(ctl(&r, "--help", NULL), 0, "--help: exit 0");
    ok(strstr(r.out, "usage: shmregctl") && strstr(r.out, "Exit status"), "usage and exit codes on stdout");
    ctl_res_free(&r);
    is(ctl(&r, "--version", NULL), 0, "--version: exit 0");
    is_str(r.out, "shmregctl built with " SHMREG_VERSION_STRING "\nlibrary " SHMREG_VERSION_STRING "\n",
           "--version names the header and the library it runs with");
    ctl_res_free(&r);

    static const char *cmds[][2] = {
        {"create", NULL}, {"destroy", NULL}, {"stat", NULL}, {"list", NULL}, {"show", NULL},
        {"sdp", NULL}, {"dialogs", NULL}, {"dialog", "find"}, {"config", "list"},
        {"config", "get"}, {"config", "set"}, {"config", "load"}, {"config", "dump"},
        {"events", NULL}, {"check", NULL}, {"handles", NULL}, {"gc", NULL}, {"metrics", NULL},
    };
    int all = 1;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char want[64];
        snprintf(want, sizeof want, "usage: shmregctl %s%s%s", cmds[i][0], cmds[i][1] ? " " : "",
                 cmds[i][1] ? cmds[i][1] : "");
        int st = cmds[i][1] ? ctl(&r, cmds[i][0], cmds[i][1], "--help", NULL)
                            : ctl(&r, cmds[i][0], "--help", NULL);
        size_t n = strlen(want);
        if (st != 0 || strncmp(r.out, want, n) != 0 || (r.out[n] != ' ' && r.out[n] != '\n')) {
            diag("%s --help: status %d, output: %s", want, st, r.out);
            all = 0;
        }
        ctl_res_free(&r);
    }
    ok(all, "every command has --help (exit 0, its usage on stdout)");

    is(ctl(&r, "frobnicate", NULL), 2, "unknown command: exit 2");
    ok(strstr(r.err, "unknown command 'frobnicate'") != NULL, "named on stderr");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--bogus", NULL), 2, "unknown option: exit 2");
    ok(strstr(r.err, "unknown option '--bogus'") != NULL, "named on stderr (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", NULL), 2, "config without a subcommand: exit 2");
    ok(strstr(r.err, "shmregctl config get NAME [KEY]") != NULL, "the subcommands are listed");
    ctl_res_free(&r);
    is(ctl(&r, "stat", NULL), 2, "no registry given: exit 2");
    ok(strstr(r.err, "use -r PATH or set SHMREG_PATH") != NULL, "says how to give one");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "show", NULL), 2, "show without an ID: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "show", "not-an-id", NULL), 2, "show with a malformed ID: exit 2");
    ok(strstr(r.err, "not a session ID: 'not-an-id'") != NULL, "named on stderr");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--limit", "zero", NULL), 2, "a bad option value: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--state", "Dancing", NULL), 2, "an unknown state: exit 2");
    ctl_res_free(&r);
}

static void test_create_destroy(void)
{
    ctl_res r;
    const char *missing = test_dir("missing");
    is(ctl(&r, "-r", missing, "stat", NULL), 3, "stat of a registry that does not exist: exit 3");
    char want[512];
    snprintf(want, sizeof want, "shmregctl: %s: cannot open registry: SHMREG_ENOENT", missing);
    ok(strncmp(r.err, want, strlen(want)) == 0, "the error names the path and the cause (%s)", r.err);
    ctl_res_free(&r);

    char d[320];
    snprintf(d, sizeof d, "%s", test_dir("made"));
    is(ctl(&r, "-r", d, "create", "--sessions", "500", "--bytes", "4M", "--handles", "16", "--json", NULL),
       0, "create: exit 0");
    char want2[512];
    snprintf(want2, sizeof want2, "[\"%s\", 500, 4194304, 16, null]", d);
    is_str(jd(&r, "[d['created'], d['max_sessions'], d['heap_bytes'], d['max_handles'], d['group']]"),
           want2, "create --json: what was made");
    ctl_res_free(&r);
    is(ctl(&r, "-r", d, "stat", "--json", NULL), 0, "stat of the new registry");
    is_str(jd(&r, "[d['sessions']['max'], d['sessions']['count'], d['heap']['bytes'], d['handles']['max'], d['handles']['count']]"),
           "[500, 0, 4194304, 16, 0]", "it has the capacity asked for, and no handle but the tool's");
    ctl_res_free(&r);
    is(ctl(&r, "-r", d, "create", NULL), 1, "create over an existing registry: exit 1");
    ok(strstr(r.err, "SHMREG_EEXIST") != NULL, "refused with SHMREG_EEXIST (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", test_dir("badsize"), "create", "--bytes", "12Q", NULL), 2, "create --bytes 12Q: exit 2");
    ctl_res_free(&r);

    shmreg *other;
    shmreg_open(d, NULL, &other);
    is(ctl(&r, "-r", d, "destroy", NULL), 1, "destroy while a process is attached: exit 1");
    ok(strstr(r.err, "SHMREG_EBUSY") && strstr(r.err, "--force"), "says why and how (%s)", r.err);
    ctl_res_free(&r);
    ok(access(d, F_OK) == 0, "and the registry is still there");
    is(ctl(&r, "-r", d, "destroy", "--force", NULL), 0, "destroy --force: exit 0");
    ok(access(d, F_OK) != 0, "and the registry is gone");
    ctl_res_free(&r);
    shmreg_close(other);
    is(ctl(&r, "-r", d, "destroy", NULL), 3, "destroy of a registry that is not there: exit 3");
    ctl_res_free(&r);

    /* SHMREG_PATH selects the registry when -r is not given (ctl() never
     * passes it on: go through env(1)). */
    char assign[400];
    snprintf(assign, sizeof assign, "SHMREG_PATH=%s", d);
    char *envargv[] = {"env", assign, (char *)ctl_bin(), "create", "--sessions", "10", NULL};
    is(ctl_spawn(&r, NULL, 0, envargv, NULL, NULL, 30), 0, "create with SHMREG_PATH set");
    ok(access(d, F_OK) == 0, "made the registry SHMREG_PATH names");
    ctl_res_free(&r);
    is(ctl(&r, "-r", d, "destroy", NULL), 0, "destroy with no process attached: exit 0");
    ctl_res_free(&r);
}

static void test_list(void)
{
    ctl_res r;
    char row[256];
    is(ctl(&r, "-r", dir, "list", NULL), 0, "list: exit 0");
    is(count_lines(r.out), 4, "a header and three rows");
    snprintf(row, sizeof row, "%-36s  %-12s  %7s  %7s  %-30s  %-30s  CALL-ID\n", "ID", "STATE", "AGE",
             "IDLE", "FROM", "TO");
    ok(strncmp(r.out, row, strlen(row)) == 0, "the header names aligned columns (numbers right-aligned)");
    const char *ids[3] = {t1, t2, t3}, *states[3] = {"Active", "Ringing", "Initiating"};
    const char *p = strchr(r.out, '\n') + 1;
    int in_order = 1;
    for (int i = 0; i < 3; i++) {
        snprintf(row, sizeof row, "%-36s  %-12s  ", ids[i], states[i]);
        in_order &= strncmp(p, row, strlen(row)) == 0;
        p = strchr(p, '\n') + 1;
    }
    ok(in_order, "rows in creation order, ID and state in their columns");
    ok(strstr(r.out, "sip:alice@example.com") && strstr(r.out, "call-1@h"), "from and Call-ID shown");
    ok(memchr(r.out, 0x1b, r.out_len) == NULL && strstr(r.out, "sip:\\x1b[31mevil"),
       "a control character from the network is escaped, never sent to the terminal");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "list", "--json", NULL), 0, "list --json: exit 0");
    is(count_lines(r.out), 3, "JSON Lines: one object per session");
    char want[256];
    snprintf(want, sizeof want, "[\"%s\", \"%s\", \"%s\"]", t1, t2, t3);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "each parses, in creation order");
    is_str(jl(&r, "[L[0]['state'], L[0]['from_uri'], L[0]['display_name'], L[0]['local_rtp_port'], L[0]['dialogs'], L[0]['local_sdp_bytes']]"),
           "[\"Active\", \"sip:alice@example.com\", \"Alice \\u00c9lise\", 4000, 1, 87]",
           "fields exact (UTF-8 kept), the SDP only as its size");
    is_str(jl(&r, "L[2]['from_uri'] == 'sip:\\x1b[31mevil@example.net'"), "true",
           "the control character survives JSON escaping");
    is_str(jl(&r, "all(x['created_ns'] <= y['created_ns'] for x, y in zip(L, L[1:]))"), "true",
           "created_ns ascending");
    ctl_res_free(&r);

    ctl(&r, "-r", dir, "list", "--json", "--state", "Active", NULL);
    snprintf(want, sizeof want, "[\"%s\"]", t1);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--state Active");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--state", "initiating,RINGING", NULL);
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t2, t3);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--state with two names, any case");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--to", "bob@", NULL);
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t1, t3);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--to substring");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--from", "carol", NULL);
    snprintf(want, sizeof want, "[\"%s\"]", t2);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--from substring");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--limit", "2", NULL);
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t1, t2);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--limit 2: the two oldest");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--reverse", "--limit", "2", NULL);
    snprintf(want, sizeof want, "[\"%s\", \"%s\"]", t3, t2);
    is_str(jl(&r, "[x['id'] for x in L]"), want, "--reverse --limit 2: the two newest, newest first");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "list", "--min-age", "1h", NULL), 0, "--min-age 1h: exit 0");
    is(count_lines(r.out), 1, "only the header: nothing is an hour old");
    ctl_res_free(&r);
    ctl(&r, "-r", dir, "list", "--json", "--idle", "1d", NULL);
    is(r.out_len, 0, "--idle 1d --json: no line at all");
    ctl_res_free(&r);
}

static void test_show_sdp(void)
{
    ctl_res r;
    char line[256];
    is(ctl(&r, "-r", dir, "show", t1, NULL), 0, "show: exit 0");
    snprintf(line, sizeof line, "%-22s %s", "id:", t1);
    ok(has_line(r.out, line), "id line");
    ok(has_line(r.out, "state:                 Active"), "state line");
    ok(has_line(r.out, "from_uri:              sip:alice@example.com"), "from line");
    ok(has_line(r.out, "app_data:              0102fe"), "app data in hex");
    ok(has_line(r.out, "counters:") && has_line(r.out, "  packets_sent:        42"),
       "counters indented under their heading");
    ok(has_line(r.out, "  - call_id:           call-1@h") && has_line(r.out, "    remote_tag:        rt1"),
       "the dialog as an item");
    ok(has_line(r.out, "local_sdp:             87 bytes") &&
       has_line(r.out, "    o=- 1 1 IN IP4 192.0.2.1"), "the SDP shown line by line, indented");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "show", t1, "--json", NULL), 0, "show --json: exit 0");
    is_str(jd(&r, "[d['state'], d['counters']['packets_sent'], d['counters']['bytes_sent'], d['app_data'], d['owner_pid'] > 0]"),
           "[\"Active\", 42, 6720, \"0102fe\", true]", "fields and counters");
    is_str(jd(&r, "d['dialogs']"), "[{\"call_id\": \"call-1@h\", \"local_tag\": \"lt1\", \"remote_tag\": \"rt1\"}]",
           "dialog keys");
    is_str(jd(&r, "d['local_sdp'] == " "'v=0\\r\\no=- 1 1 IN IP4 192.0.2.1\\r\\ns=-\\r\\nc=IN IP4 192.0.2.1\\r\\nt=0 0\\r\\nm=audio 4000 RTP/AVP 0\\r\\n'"),
           "true", "the local SDP exact");
    is_str(jd(&r, "d['remote_sdp'] == 'v=0\\r\\n\\x00\\xff\\x01 binary tail'"), "true",
           "binary bytes in JSON: NUL escaped, a stray 0xff as \\u00ff, still valid JSON");
    ctl_res_free(&r);

    char gone[37];
    shmreg_id x = s1;
    x.bytes[0] ^= 0x55;
    shmreg_id_format(&x, gone);
    is(ctl(&r, "-r", dir, "show", gone, NULL), 1, "show of a session that does not exist: exit 1");
    snprintf(line, sizeof line, "shmregctl: %s: no session %s\n", dir, gone);
    is_str(r.err, line, "named on stderr");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "sdp", t1, "--local", NULL), 0, "sdp --local: exit 0");
    is_mem(r.out, r.out_len, sdp_local, sizeof sdp_local - 1, "the local SDP byte for byte");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "sdp", "--remote", t1, NULL), 0, "sdp --remote: exit 0");
    is_mem(r.out, r.out_len, sdp_remote, SDP_REMOTE_LEN, "the remote SDP byte for byte, NUL and 0xff included");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "sdp", t2, "--local", NULL), 0, "an empty SDP: exit 0");
    is(r.out_len, 0, "and no byte");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "sdp", t1, NULL), 2, "sdp without --local/--remote: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "sdp", gone, "--local", NULL), 1, "sdp of a missing session: exit 1");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "sdp", t1, "--local", "--json", NULL), 0, "sdp --json");
    is_str(jd(&r, "[d['which'], len(d['sdp'])]"), "[\"local\", 87]", "a document with the SDP");
    ctl_res_free(&r);
}

static void test_dialogs(void)
{
    ctl_res r;
    char want[512];
    is(ctl(&r, "-r", dir, "dialogs", NULL), 0, "dialogs: exit 0");
    is(count_lines(r.out), 3, "a header and two dialogs");
    snprintf(want, sizeof want, "%-36s  %-36s  %-16s  rt1", t1, "call-1@h", "lt1");
    ok(has_line(r.out, want), "a dialog row, aligned");
    snprintf(want, sizeof want, "%-36s  %-36s  %-16s  -", t2, "call-2@h", "lt2");
    ok(has_line(r.out, want), "an early dialog shows '-' for its empty remote tag");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "dialogs", "--json", NULL), 0, "dialogs --json");
    snprintf(want, sizeof want, "[[\"call-1@h\", \"lt1\", \"rt1\", \"%s\"], [\"call-2@h\", \"lt2\", \"\", \"%s\"]]", t1, t2);
    is_str(jd(&r, "sorted([x['call_id'], x['local_tag'], x['remote_tag'], x['session']] for x in d['dialogs'])"),
           want, "one document with every dialog");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "dialog", "find", "call-1@h", "lt1", "rt1", NULL), 0, "dialog find: exit 0");
    snprintf(want, sizeof want, "%-22s %s", "session:", t1);
    ok(has_line(r.out, want), "the session found");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "dialog", "find", "call-2@h", "lt2", "--json", NULL), 0, "early dialog lookup");
    snprintf(want, sizeof want, "[\"%s\", null]", t2);
    is_str(jd(&r, "[d['session'], d['remote_tag']]"), want, "found by Call-ID and local tag");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "dialog", "find", "call-1@h", "lt1", "other", NULL), 1, "wrong remote tag: exit 1");
    ok(strstr(r.err, "no dialog with Call-ID 'call-1@h', local tag 'lt1', remote tag 'other'") != NULL,
       "named on stderr (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "dialog", "find", "only-one", NULL), 2, "dialog find with one operand: exit 2");
    ctl_res_free(&r);
}

static void test_handles(void)
{
    ctl_res r;
    char want[128];
    is(ctl(&r, "-r", dir, "handles", "--json", NULL), 0, "handles --json: exit 0");
    char expr[256];
    snprintf(want, sizeof want, "[[%d, true, false, null, false]]", (int)getpid());
    snprintf(expr, sizeof expr, "[[x['pid'], x['alive'], x['in_read'], x['read_age_ns'], x['self']] "
             "for x in d['handles'] if x['pid'] == %d]", (int)getpid());
    is_str(jd(&r, expr), want, "the test's handle: alive, no read section");
    is_str(jd(&r, "len([x for x in d['handles'] if x['self']])"), "1", "the tool's own, marked self");
    ctl_res_free(&r);
    shmreg_read_begin(h);
    usleep(30000);
    is(ctl(&r, "-r", dir, "handles", "--json", NULL), 0, "handles while the test is in a read section");
    snprintf(expr, sizeof expr, "[x['in_read'] and x['read_age_ns'] >= 20000000 "
             "for x in d['handles'] if x['pid'] == %d]", (int)getpid());
    is_str(jd(&r, expr), "[true]", "shows the section open, and for how long");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "handles", NULL), 0, "handles for people");
    snprintf(want, sizeof want, "%8d  yes    ", (int)getpid());
    ok(strstr(r.out, want) != NULL, "pid and alive in their columns");
    ctl_res_free(&r);
    shmreg_read_end(h);
}

int main(void)
{
    dir = strdup(test_dir("ctl"));
    populate();
    test_usage();
    test_create_destroy();
    test_list();
    test_show_sdp();
    test_dialogs();
    test_handles();
    shmreg_close(h);
    free((void *)dir);
    return done_testing();
}
