/*
 * ctl_gc.c — `shmregctl gc` deletes exactly the sessions idle for longer
 * than --idle, or final (Terminated, Cancelled, Failed) and unchanged for
 * longer than --final-older, prints one line per session removed and a
 * summary; --dry-run removes nothing. Times are real: sessions are made
 * old by sleeping 1.5 s, the rules say 1 s, and the sessions that must
 * stay are touched right before each run, so a slow (sanitizer, loaded)
 * machine has half a second of margin on either side.
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

#define OLD_US 1500000
#define RULE "1"

/* Bump updated_ns without changing anything that matters. */
static void touch(const shmreg_id *id)
{
    shmreg_fields f = {0};
    shmreg_session_update(h, id, &f, SHMREG_MASK(SHMREG_FIELD_CODEC));
}

static int exists(const shmreg_id *id)
{
    shmreg_session s;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, id, &s);
    shmreg_read_end(h);
    return rc == 0;
}

static const char *ids_json(const shmreg_id *a, int n)
{
    static char buf[1024];
    size_t k = 0;
    char t[37];
    k += (size_t)snprintf(buf + k, sizeof buf - k, "[");
    for (int i = 0; i < n; i++) {
        shmreg_id_format(&a[i], t);
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s\"%s\"", i ? ", " : "", t);
    }
    snprintf(buf + k, sizeof buf - k, "]");
    return buf;
}

/* old[] sorted by ID text, so the expected list compares with sorted(). */
static int by_text(const void *a, const void *b)
{
    char x[37], y[37];
    shmreg_id_format(a, x);
    shmreg_id_format(b, y);
    return strcmp(x, y);
}

static void test_idle(void)
{
    shmreg_id old[3], fresh[2];
    for (int i = 0; i < 3; i++)
        shmreg_session_create(h, NULL, &old[i]);
    shmreg_session_transition(h, &old[1], SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    usleep(OLD_US);
    shmreg_session_create(h, NULL, &fresh[0]);
    shmreg_session_create(h, NULL, &fresh[1]);
    shmreg_id active = old[1];
    qsort(old, 3, sizeof old[0], by_text);

    ctl_res r;
    is(ctl(&r, "-r", dir, "gc", "--idle", RULE, "--dry-run", "--json", NULL), 0, "gc --dry-run: exit 0");
    is_str(jd(&r, "sorted(x['id'] for x in d['removed'])"), ids_json(old, 3), "names the three idle sessions");
    is_str(jd(&r, "[d['removed_count'], d['dry_run']]"), "[3, true]", "a dry run");
    ctl_res_free(&r);
    ok(exists(&old[0]) && exists(&old[1]) && exists(&old[2]), "and removes nothing");

    touch(&fresh[0]);
    touch(&fresh[1]);
    is(ctl(&r, "-r", dir, "gc", "--idle", "1000ms", NULL), 0, "gc --idle 1000ms: exit 0");
    is(count_lines(r.out), 1 + 3 + 2, "a header, a line per session removed, the count, the dry-run flag");
    char row[128], t[37];
    int all = 1;
    for (int i = 0; i < 3; i++) {
        shmreg_id_format(&old[i], t);
        snprintf(row, sizeof row, "%-36s  %-12s  ", t,
                 memcmp(&old[i], &active, sizeof active) == 0 ? "Active" : "Initiating");
        all &= strstr(r.out, row) != NULL;
    }
    ok(all, "each with its ID and state in aligned columns");
    ok(has_line(r.out, "removed_count:         3"), "the count");
    ctl_res_free(&r);
    ok(!exists(&old[0]) && !exists(&old[1]) && !exists(&old[2]), "the idle sessions are gone");
    ok(exists(&fresh[0]) && exists(&fresh[1]), "the fresh ones are not");

    /* Touching a session makes it not idle. */
    usleep(OLD_US);
    shmreg_session_counter_add(h, &fresh[0], SHMREG_CTR_PACKETS_SENT, 1); /* counters do not count as a change */
    shmreg_session_transition(h, &fresh[1], SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    is(ctl(&r, "-r", dir, "gc", "--idle", RULE, "--json", NULL), 0, "gc after one session changed state");
    is_str(jd(&r, "[x['id'] for x in d['removed']]"), ids_json(&fresh[0], 1),
           "only the unchanged one is removed");
    ctl_res_free(&r);
    ok(exists(&fresh[1]), "the one that changed state stays");
    shmreg_session_delete(h, &fresh[1]);
}

static void test_final(void)
{
    shmreg_id done[2], live, recent;
    shmreg_session_create(h, NULL, &done[0]);
    shmreg_session_create(h, NULL, &done[1]);
    shmreg_session_create(h, NULL, &live);
    shmreg_session_transition(h, &done[0], SHMREG_STATE_ANY, SHMREG_STATE_FAILED, NULL);
    shmreg_session_transition(h, &done[1], SHMREG_STATE_ANY, SHMREG_STATE_CANCELLED, NULL);
    shmreg_session_transition(h, &live, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    usleep(OLD_US);
    shmreg_session_create(h, NULL, &recent);
    shmreg_session_transition(h, &recent, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_transition(h, &recent, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATING, NULL);
    shmreg_session_transition(h, &recent, SHMREG_STATE_ANY, SHMREG_STATE_TERMINATED, NULL);
    qsort(done, 2, sizeof done[0], by_text);

    ctl_res r;
    is(ctl(&r, "-r", dir, "gc", "--final-older", RULE, "--json", NULL), 0, "gc --final-older: exit 0");
    is_str(jd(&r, "sorted(x['id'] for x in d['removed'])"), ids_json(done, 2),
           "removes the sessions final for longer than that");
    is_str(jd(&r, "sorted(x['state'] for x in d['removed'])"), "[\"Cancelled\", \"Failed\"]", "with their states");
    is_str(jd(&r, "all(x['age_ns'] >= 1000000000 for x in d['removed'])"), "true", "and their ages");
    ctl_res_free(&r);
    ok(exists(&live), "an old session that is not final stays");
    ok(exists(&recent), "a session that became final recently stays");

    is(ctl(&r, "-r", dir, "gc", NULL), 2, "gc without a rule: exit 2");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "gc", "--idle", "soon", NULL), 2, "gc --idle with a bad duration: exit 2");
    ctl_res_free(&r);
}

int main(void)
{
    dir = strdup(test_dir("gc"));
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 64};
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("cannot create %s: %s", dir, shmreg_errmsg());
    test_idle();
    test_final();
    shmreg_close(h);
    free((void *)dir);
    return done_testing();
}
