/*
 * shmregctl_node.c — many hosts as an operator sees them: the registry's
 * node ID and its foreign copies, the mirror daemon's status (pushed,
 * behind, the state of every other node it follows, the lag of each), for
 * `stat` and `metrics`, and `node adopt NODE`, which asks the mirror
 * daemon to adopt a dead node's calls now.
 *
 * The tool never talks to Redis: the request is a word in the segment
 * (shmreg_node_adopt_request) that the daemon takes and carries out with
 * the one atomic step in Redis that lets exactly one host win. Everything
 * here is printed only for a registry that has a node ID, so a single
 * host's output is what it always was.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmregctl.h"

static const char *mirror_state(uint32_t s)
{
    return s == SHMREG_MIRROR_UP ? "up" : s == SHMREG_MIRROR_DOWN ? "down" : "off";
}

const char *ctl_peer_state(uint32_t s)
{
    switch (s) {
    case SHMREG_PEER_SYNCING: return "syncing";
    case SHMREG_PEER_UP: return "up";
    case SHMREG_PEER_DEAD: return "dead";
    case SHMREG_PEER_ADOPTED: return "adopted";
    default: return "unknown";
    }
}

uint64_t ctl_mirror_behind(const shmreg_stats *st, const shmreg_mirror_status *m)
{
    return st->events_published > m->pushed_seq ? st->events_published - m->pushed_seq : 0;
}

void ctl_mirror_get(ctl *c, shmreg_mirror_status *m)
{
    if (shmreg_mirror_get(c->h, m) != 0)
        memset(m, 0, sizeof *m); /* none readable: shown as off */
}

void ctl_node_fields(ctl *c, const shmreg_stats *st)
{
    if (st->node_id == 0)
        return;
    out *o = &c->o;
    shmreg_mirror_status m;
    ctl_mirror_get(c, &m);
    uint64_t now = ctl_now_ns();
    out_obj_begin(o, "node");
    out_u64(o, "id", st->node_id);
    out_u64(o, "foreign_sessions", st->foreign_sessions);
    out_obj_begin(o, "mirror");
    out_cstr(o, "state", mirror_state(m.state));
    out_u64(o, "pushed_seq", m.pushed_seq);
    out_u64(o, "behind", m.state ? ctl_mirror_behind(st, &m) : st->events_published);
    out_time(o, "last_push_ns", m.push_ns);
    out_u64(o, "backlog", m.backlog);
    out_u64(o, "pushed", m.pushed);
    out_u64(o, "imported", m.imported);
    out_u64(o, "deleted", m.deleted);
    out_u64(o, "adopted", m.adopted);
    out_u64(o, "stale", m.stale);
    out_u64(o, "errors", m.errors);
    out_cstr(o, "last_error", m.last_error);
    if (m.reported_ns && now > m.reported_ns)
        out_dur(o, "report_age_ns", now - m.reported_ns);
    else
        out_null(o, "report_age_ns");
    out_arr_begin(o, "peers");
    for (uint32_t i = 0; i < m.npeers; i++) {
        const shmreg_mirror_peer *p = &m.peer[i];
        out_obj_begin(o, NULL);
        out_u64(o, "node", p->node);
        out_cstr(o, "state", ctl_peer_state(p->state));
        if (p->state == SHMREG_PEER_ADOPTED)
            out_u64(o, "adopted_by", p->adopted_by);
        out_u64(o, "copies", p->copies);
        out_dur(o, "lag_ns", p->lag_ns);
        out_time(o, "applied_ns", p->applied_ns);
        out_obj_end(o);
    }
    out_arr_end(o);
    out_obj_end(o);
    out_obj_end(o);
}

int cmd_node_adopt(ctl *c, int argc, char **argv)
{
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "", NULL)) != -1)
        ;
    if ((rc = ctl_operands(c, argc, argv, 1, 1)))
        return rc;
    uint64_t node;
    if (ctl_parse_u64(argv[optind], SHMREG_NODE_MAX, &node) || node == 0)
        return ctl_usage(c, "NODE is a node ID 1..%u, not '%s'", SHMREG_NODE_MAX, argv[optind]);
    if ((rc = ctl_open(c)))
        return rc;
    if ((rc = shmreg_node_adopt_request(c->h, (uint32_t)node)))
        return ctl_fail(c, rc, "cannot request adoption of node %" PRIu64, node);
    shmreg_stats st;
    if ((rc = shmreg_stat(c->h, &st)))
        return ctl_fail(c, rc, "stat");
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_u64(o, "requested", node);
    out_u64(o, "by_node", st.node_id);
    out_bool(o, "daemon_alive", st.sync_alive != 0);
    out_obj_end(o);
    out_doc_end(o);
    if (!st.sync_alive)
        fprintf(stderr, "shmregctl: warning: no live shmreg-sync follows this registry: the request "
                        "waits until one starts\n");
    return CTL_OK;
}
