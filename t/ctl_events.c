/*
 * ctl_events.c — `shmregctl events` shows, as they happen, the events
 * another process produces: the test is the producer and runs the tool
 * as a child, acting from the tick of the runner while the tool runs.
 *
 * A subscription sees only events published after it starts, so the
 * test first publishes "ping" custom events until the tool prints one —
 * then the tool is surely subscribed — and then produces the events it
 * checks, exactly, and a "done" marker after which it stops the tool
 * with SIGTERM, the way an operator's Ctrl-C would.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "shmreg.h"
#include "testutil.h"

static const char *dir;
static shmreg *h;

static shmreg_str S(const char *s) { return (shmreg_str){s, strlen(s)}; }

typedef struct script {
    ctl_res *r;               /* the run being filled (its output so far) */
    const char *ping_seen;    /* text in the output that shows a ping arrived */
    const char *done_seen;    /* ... and the final marker */
    const shmreg_id *ping_session;
    void (*act)(void);        /* the events under test */
    int phase;
    unsigned ticks;
} script;

static void tick(pid_t pid, void *arg)
{
    script *s = arg;
    s->ticks++;
    switch (s->phase) {
    case 0: /* until the tool shows a ping, it may not be subscribed yet */
        if (strstr(s->r->out, s->ping_seen)) {
            s->phase = 1;
            s->act();
            shmreg_publish(h, s->ping_session, "done", 4);
            s->phase = 2;
        } else if (s->ticks % 5 == 1) {
            shmreg_publish(h, s->ping_session, "ping", 4);
        }
        break;
    case 2:
        if (strstr(s->r->out, s->done_seen)) {
            kill(pid, SIGTERM);
            s->phase = 3;
        }
        break;
    }
}

static shmreg_id y, x;
static char ty[37], tx[37];

static void lifecycle(void)
{
    shmreg_session_create(h, NULL, &y);
    shmreg_id_format(&y, ty);
    shmreg_session_transition(h, &y, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL);
    shmreg_session_set_sdp(h, &y, SHMREG_SDP_LOCAL, "v=0\r\n", 5);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:a@b");
    f.str[SHMREG_FIELD_CODEC] = S("opus");
    shmreg_session_update(h, &y, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI) | SHMREG_MASK(SHMREG_FIELD_CODEC));
    shmreg_dialog_bind(h, S("cid"), S("lt"), S("rt"), &y);
    shmreg_dialog_unbind(h, S("cid"), S("lt"), S("rt"));
    shmreg_session_delete(h, &y);
}

static void test_follow_json(void)
{
    ctl_res r;
    script s = {.r = &r, .ping_seen = "\"data_hex\":\"70696e67\"", .done_seen = "\"data_hex\":\"646f6e65\"",
                .act = lifecycle};
    char *argv[] = {(char *)ctl_bin(), "-r", (char *)dir, "events", "--follow", "--json", NULL};
    ctl_spawn(&r, NULL, 0, argv, tick, &s, 60);
    is(r.status, 0, "events --follow --json ends with exit 0 on SIGTERM");
    is(s.phase, 3, "it printed the pings and then the marker as they were published");
    /* The lines after the last ping. */
    const char *after = "L[max(i for i, x in enumerate(L) if x.get('data_hex') == '70696e67') + 1:]";
    char expr[1024], want[1024];
    snprintf(expr, sizeof expr, "[x['type'] for x in %s]", after);
    is_str(jl(&r, expr),
           "[\"session_created\", \"state_changed\", \"sdp_updated\", \"session_updated\", "
           "\"dialog_bound\", \"dialog_unbound\", \"session_deleted\", \"custom\"]",
           "every change of the session, in order, then the marker");
    snprintf(expr, sizeof expr, "sorted(set(x['session'] for x in %s[:-1]))", after);
    snprintf(want, sizeof want, "[\"%s\"]", ty);
    is_str(jl(&r, expr), want, "all about the session the other process made");
    snprintf(expr, sizeof expr, "sorted(set(x['pid'] for x in %s))", after);
    snprintf(want, sizeof want, "[%d]", (int)getpid());
    is_str(jl(&r, expr), want, "published by the producing process");
    snprintf(expr, sizeof expr,
             "[(a['old_state'], a['new_state'], b['which'], c['fields'], d['old_state']) for a, b, c, d in "
             "[(%s[1], %s[2], %s[3], %s[6])]]", after, after, after, after);
    is_str(jl(&r, expr), "[[\"Initiating\", \"Ringing\", \"local\", \"from_uri,codec\", \"Ringing\"]]",
           "the details of each: states, SDP side, fields changed, state when deleted");
    snprintf(expr, sizeof expr, "[x.get('version') for x in %s]", after);
    is_str(jl(&r, expr), "[1, 2, 3, 4, 5, 6, 7, null]",
           "each change's version, the session's after it; none on the custom event");
    is_str(jl(&r, "all(x['seq'] < y['seq'] for x, y in zip(L, L[1:]))"), "true", "sequence numbers ascending");
    is_str(jl(&r, "sum(x['type'] == 'missed' for x in L)"), "0", "nothing missed");
    ctl_res_free(&r);
}

static void states_of_x(void)
{
    shmreg_id other;
    shmreg_session_create(h, NULL, &other);
    shmreg_session_transition(h, &x, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    shmreg_session_transition(h, &other, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
    shmreg_session_set_sdp(h, &x, SHMREG_SDP_REMOTE, "v=0\r\n", 5);
    shmreg_session_transition(h, &x, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_delete(h, &other);
}

static void test_follow_filtered(void)
{
    ctl_res r;
    shmreg_session_create(h, NULL, &x);
    shmreg_id_format(&x, tx);
    script s = {.r = &r, .ping_seen = "  ping\n", .done_seen = "  done\n", .ping_session = &x,
                .act = states_of_x};
    char *argv[] = {(char *)ctl_bin(), "-r", (char *)dir, "events", "--follow", "--session", tx,
                    "--types", "state_changed,custom", NULL};
    ctl_spawn(&r, NULL, 0, argv, tick, &s, 60);
    is(r.status, 0, "events --follow --session --types: exit 0 on SIGTERM");
    char want[512];
    snprintf(want, sizeof want, "%-24s  %8s  %-18s  %7s  %-36s  DETAIL", "TIME", "SEQ", "TYPE", "PID", "SESSION");
    ok(strncmp(r.out, want, strlen(want)) == 0, "a header first");
    /* Rows after the last ping: the states of x, then done; not the other
     * session, not the SDP. */
    const char *last_ping = r.out, *p;
    while ((p = strstr(last_ping + 1, "  ping\n")))
        last_ping = p;
    const char *rest = strchr(last_ping + 1, '\n') + 1;
    is(count_lines(rest), 3, "three rows after the pings");
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  Initiating -> Ringing\n", "state_changed", (int)getpid(), tx);
    ok(strstr(rest, want) != NULL, "x rang");
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  Ringing -> Active\n", "state_changed", (int)getpid(), tx);
    ok(strstr(rest, want) != NULL, "x was answered");
    snprintf(want, sizeof want, "  %-18s  %7d  %-36s  done\n", "custom", (int)getpid(), tx);
    ok(strstr(rest, want) != NULL, "and the marker, its payload shown as text");
    ctl_res_free(&r);
}

static void test_bounded(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "events", "--timeout", "0.2", "--json", NULL), 0,
       "events without --follow listens for --timeout, exit 0");
    is_str(jd(&r, "d"), "{\"events\": [], \"missed\": 0}", "one JSON document: nothing happened");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "events", "--types", "state_changed,bogus", NULL), 2, "an unknown type: exit 2");
    ok(strstr(r.err, "'state_changed,bogus'") && strstr(r.err, "session_created"),
       "the valid names are listed (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "events", "--session", "nope", NULL), 2, "a malformed --session: exit 2");
    ctl_res_free(&r);
}

int main(void)
{
    dir = strdup(test_dir("ev"));
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 64};
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("cannot create %s: %s", dir, shmreg_errmsg());
    test_follow_json();
    test_follow_filtered();
    test_bounded();
    shmreg_close(h);
    free((void *)dir);
    return done_testing();
}
