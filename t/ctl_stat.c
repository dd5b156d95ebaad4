/*
 * ctl_stat.c — `shmregctl stat` and `metrics` report exactly what is in
 * the registry: capacity and use, counts by call state, dialogs, attached
 * handles (the tool's own not counted), the oldest open read section,
 * the event ring and the config generations; stat warns on stderr above
 * 90 % of a capacity; metrics is valid Prometheus text with the same
 * figures.
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
static shmreg_id ids[10];

static shmreg_str S(const char *s) { return (shmreg_str){s, strlen(s)}; }

static void populate(void)
{
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 10, .max_handles = 8,
                          .heap_bytes = 4u << 20};
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("cannot create %s: %s", dir, shmreg_errmsg());
    for (int i = 0; i < 9; i++)
        shmreg_session_create(h, NULL, &ids[i]);
    shmreg_session_transition(h, &ids[0], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_transition(h, &ids[1], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_transition(h, &ids[2], SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    shmreg_session_transition(h, &ids[3], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_transition(h, &ids[3], SHMREG_STATE_ANY, SHMREG_STATE_ONHOLD, NULL);
    shmreg_session_transition(h, &ids[4], SHMREG_STATE_ANY, SHMREG_STATE_FAILED, NULL);
    shmreg_dialog_bind(h, S("a@h"), S("1"), S("2"), &ids[0]);
    shmreg_dialog_bind(h, S("b@h"), S("1"), S(""), &ids[1]);
}

/* "label:" at indentation `ind`, its value in the column of stat's output. */
static const char *rec(int ind, const char *label, const char *value)
{
    static char buf[8][256];
    static unsigned n;
    char *b = buf[n++ % 8], l[64];
    snprintf(l, sizeof l, "%s:", label);
    snprintf(b, sizeof buf[0], "%*s%-*s %s", ind, "", 22 - ind, l, value);
    return b;
}

static void test_stat(void)
{
    ctl_res r;
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(ctl(&r, "-r", dir, "stat", "--json", NULL), 0, "stat --json: exit 0");
    is(r.err_len, 0, "no warning at 9 of 10 sessions (90 %% is not above 90 %%)");
    is_str(jd(&r, "[d['sessions']['count'], d['sessions']['max'], d['sessions']['use_pct']]"), "[9, 10, 90.0]",
           "sessions: count, capacity, use");
    is_str(jd(&r, "d['sessions']['by_state']"),
           "{\"Active\": 2, \"Cancelled\": 0, \"Failed\": 1, \"Initiating\": 4, \"OnHold\": 1, "
           "\"Ringing\": 1, \"Terminated\": 0, \"Terminating\": 0, \"Transferring\": 0}",
           "counts by call state");
    char want[256];
    snprintf(want, sizeof want, "[%llu, %llu, 2, %u]", (unsigned long long)st.heap_bytes,
             (unsigned long long)st.segment_bytes, st.index_buckets);
    is_str(jd(&r, "[d['heap']['bytes'], d['segment_bytes'], d['index']['dialogs'], d['index']['buckets']]"), want,
           "heap, segment, dialogs and index size");
    snprintf(want, sizeof want, "%.3f", 9.0 / st.index_buckets);
    is_str(jd(&r, "'%.3f' % d['index']['load']"), want, "index load: sessions per bucket");
    is_str(jd(&r, "[d['handles']['count'], d['handles']['max'], d['handles']['oldest_read_ns']]"), "[1, 8, null]",
           "handles: the test's one (not the tool's), no read section open");
    snprintf(want, sizeof want, "[%llu, %u, 0, 0]", (unsigned long long)st.events_published,
             st.event_ring_records);
    is_str(jd(&r, "[d['events'][k] for k in ('published', 'ring_records', 'dropped', 'stolen')]"), want,
           "event ring position and losses");
    is_str(jd(&r, "d['config']"), "{\"configs\": [], \"gen\": 0}", "no config yet");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "stat", NULL), 0, "stat for people: exit 0");
    ok(has_line(r.out, "sessions:") && has_line(r.out, rec(2, "count", "9")) &&
       has_line(r.out, rec(2, "max", "10")) && has_line(r.out, rec(4, "OnHold", "1")),
       "nested, aligned records");
    ok(has_line(r.out, rec(2, "oldest_read", "-")), "no read section: '-'");
    ctl_res_free(&r);

    /* A read section held open shows its age. */
    shmreg_read_begin(h);
    usleep(60000);
    is(ctl(&r, "-r", dir, "stat", "--json", NULL), 0, "stat while a read section is open");
    is_str(jd(&r, "d['handles']['oldest_read_ns'] >= 50000000"), "true", "its age is reported");
    ctl_res_free(&r);
    shmreg_read_end(h);

    /* Configs: their generations. */
    if (shmreg_config_set(h, "media", "media.ptime", "30") || shmreg_config_set(h, "app", "app.x", "1") ||
        shmreg_config_set(h, "media", "media.dtmf", "true"))
        bail_out("config_set: %s", shmreg_errmsg());
    is(ctl(&r, "-r", dir, "stat", "--json", NULL), 0, "stat with configs");
    is_str(jd(&r, "d['config']"),
           "{\"configs\": [{\"gen\": 2, \"name\": \"app\"}, {\"gen\": 3, \"name\": \"media\"}], \"gen\": 3}",
           "the registry's generation and each config's");
    ctl_res_free(&r);

    /* The tenth session fills the table: a warning, still exit 0. */
    shmreg_session_create(h, NULL, &ids[9]);
    is(ctl(&r, "-r", dir, "stat", NULL), 0, "stat of a full table: exit 0");
    snprintf(want, sizeof want, "shmregctl: %s: warning: sessions at 100.0 %% of capacity (10 of 10)\n", dir);
    is_str(r.err, want, "and one warning on stderr, naming the registry");
    ctl_res_free(&r);
}

static void test_metrics(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "metrics", NULL), 0, "metrics: exit 0");
    ok(has_line(r.out, "shmreg_sessions 10") && has_line(r.out, "shmreg_sessions_max 10") &&
       has_line(r.out, "shmreg_dialogs 2") && has_line(r.out, "shmreg_handles 1") &&
       has_line(r.out, "shmreg_handles_max 8") && has_line(r.out, "shmreg_config_generation 3"),
       "the stat figures");
    ok(has_line(r.out, "shmreg_sessions_by_state{state=\"Initiating\"} 5") &&
       has_line(r.out, "shmreg_sessions_by_state{state=\"Active\"} 2") &&
       has_line(r.out, "shmreg_sessions_by_state{state=\"Failed\"} 1"),
       "counts by state as a labelled family");
    ok(has_line(r.out, "# TYPE shmreg_events_published_total counter") &&
       has_line(r.out, "# TYPE shmreg_sessions gauge"), "counters and gauges typed");
    /* The format: every family has HELP then TYPE, then its samples,
     * `name{labels} number`; names are shmreg_*, each family once. */
    static const char check_format[] =
        "fams, cur, bad = [], None, []\n"
        "lines = T.splitlines()\n"
        "for i, l in enumerate(lines):\n"
        "    if l.startswith('# HELP '):\n"
        "        cur = l.split()[2]; fams.append(cur)\n"
        "        t = lines[i + 1].split() if i + 1 < len(lines) else []\n"
        "        if t[:3] != ['#', 'TYPE', cur] or t[3:] not in (['gauge'], ['counter']): bad.append(l)\n"
        "    elif l.startswith('# TYPE '): pass\n"
        "    elif not re.fullmatch(r'(shmreg_[a-z_]+)(\\{state=\"[A-Za-z]+\"\\})? -?[0-9.e+-]+', l) \\\n"
        "            or l.split('{')[0].split()[0] != cur: bad.append(l)\n"
        "print('ok' if not bad and len(fams) == len(set(fams)) and all(f.startswith('shmreg_') for f in fams)\n"
        "      else 'bad: %r' % bad)\n";
    char *got = py(r.out, r.out_len, PY_TEXT, check_format);
    is_str(got, "ok", "valid Prometheus text exposition");
    free(got);
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "metrics", "--json", NULL), 0, "metrics --json: exit 0");
    is_str(jd(&r, "[d['sessions']['count'], d['index']['dialogs']]"), "[10, 2]", "the stat document");
    ctl_res_free(&r);
}

int main(void)
{
    dir = strdup(test_dir("stat"));
    populate();
    test_stat();
    test_metrics();
    shmreg_close(h);
    free((void *)dir);
    return done_testing();
}
