/*
 * ctl_node.c — shmregctl and many hosts: `create --node`, the "node"
 * object of stat (node ID, foreign copies, the mirror daemon's status and
 * its peers, as the daemon reported them), the mirror metrics, `show` of
 * a foreign copy, and `node adopt NODE` leaving its request for the
 * daemon; a registry without a node ID shows none of it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "shmreg.h"
#include "testutil.h"

static shmreg_str S(const char *s) { return (shmreg_str){s, strlen(s)}; }

int main(void)
{
    test_watchdog_install();
    alarm(60);
    const char *dir = test_dir("node"), *solo = test_dir("solo");
    ctl_res r;
    is(ctl(&r, "-r", dir, "create", "--sessions", "16", "--node", "0", NULL), 2, "--node 0: usage (2)");
    ok(strstr(r.err, "--node wants a node ID 1..65535") != NULL, "saying what it wants");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "create", "--sessions", "16", "--node", "65536", NULL), 2, "--node 65536: usage");
    ctl_res_free(&r);
    is(ctl(&r, "--json", "-r", dir, "create", "--sessions", "16", "--node", "7", NULL), 0, "create --node 7");
    is_str(jd(&r, "d['node_id']"), "7", "node_id 7 in its report");
    ctl_res_free(&r);
    is(ctl(&r, "-r", solo, "create", "--sessions", "16", NULL), 0, "create a single host");
    ctl_res_free(&r);
    is(ctl(&r, "--json", "-r", solo, "stat", NULL), 0, "stat of a single host");
    is_str(jd(&r, "'node' in d"), "false", "has no node object");
    ctl_res_free(&r);
    is(ctl(&r, "-r", solo, "node", "adopt", "3", NULL), 1, "node adopt on a single host: 1");
    ok(strstr(r.err, "no node ID") != NULL, "no node ID, it says");
    ctl_res_free(&r);

    shmreg *h = NULL;
    if (shmreg_open(dir, NULL, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    /* A copy of node 3's session, and a status as a daemon reports it. */
    shmreg_session s;
    memset(&s, 0, sizeof s);
    s.id.bytes[0] = 0x42;
    s.id.bytes[15] = 1;
    s.state = SHMREG_STATE_ACTIVE;
    s.str[SHMREG_FIELD_CALL_ID] = S("c@3");
    s.created_ns = s.updated_ns = test_now_ns();
    is(shmreg_session_import(h, 3, 41, &s, NULL, NULL, 0), 0, "import node 3's session");
    is(shmreg_sync_claim(h), 0, "claim (as the daemon)");
    shmreg_mirror_status m;
    memset(&m, 0, sizeof m);
    m.state = SHMREG_MIRROR_DOWN;
    m.pushed = 12;
    m.backlog = 5;
    m.errors = 2;
    snprintf(m.last_error, sizeof m.last_error, "Connection refused");
    m.npeers = 1;
    m.peer[0].node = 3;
    m.peer[0].state = SHMREG_PEER_UP;
    m.peer[0].copies = 1;
    m.peer[0].lag_ns = 2500000;
    m.reported_ns = test_now_ns();
    is(shmreg_mirror_report(h, &m), 0, "report a status");

    is(ctl(&r, "--json", "-r", dir, "stat", NULL), 0, "stat");
    is_str(jd(&r, "[d['node'][k] for k in ('id', 'foreign_sessions')]"), "[7, 1]", "node 7, 1 foreign copy");
    is_str(jd(&r, "[d['node']['mirror'][k] for k in ('state', 'backlog', 'pushed', 'errors', 'last_error')]"),
           "[\"down\", 5, 12, 2, \"Connection refused\"]", "the mirror as reported");
    is_str(jd(&r, "[[p['node'], p['state'], p['copies'], p['lag_ns']] for p in d['node']['mirror']['peers']]"),
           "[[3, \"up\", 1, 2500000]]", "its peer, with its lag");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "metrics", NULL), 0, "metrics");
    ok(strstr(r.out, "\nshmreg_node_id 7\n") && strstr(r.out, "\nshmreg_foreign_sessions 1\n") &&
           strstr(r.out, "\nshmreg_mirror_up 0\n") && strstr(r.out, "\nshmreg_mirror_backlog 5\n") &&
           strstr(r.out, "\nshmreg_mirror_peer_lag_seconds{node=\"3\",state=\"up\"} 0.0025\n"),
       "node and mirror samples");
    ctl_res_free(&r);
    char idtxt[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(&s.id, idtxt);
    is(ctl(&r, "--json", "-r", dir, "show", idtxt, NULL), 0, "show the copy");
    is_str(jd(&r, "[d[k] for k in ('owner_node', 'version', 'foreign', 'adopted')]"), "[3, 41, true, false]",
           "owner 3, version 41, foreign");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "node", "adopt", "7", NULL), 1, "adopting ourselves: 1");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "node", "adopt", "x", NULL), 2, "a NODE that is no number: usage");
    ctl_res_free(&r);
    is(ctl(&r, "--json", "-r", dir, "node", "adopt", "3", NULL), 0, "node adopt 3");
    is_str(jd(&r, "[d['requested'], d['by_node'], d['daemon_alive']]"), "[3, 7, true]",
           "requested, by node 7, the daemon (this process) alive");
    ctl_res_free(&r);
    uint32_t node = 0;
    is(shmreg_node_adopt_take(h, &node), 0, "the daemon takes the request");
    is(node, 3, "node 3");
    shmreg_close(h);
    alarm(0);
    return done_testing();
}
