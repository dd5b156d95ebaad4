/*
 * shmregctl_events.c — events [--follow]: print registry events as they
 * are published, like tail -f.
 *
 * A subscription reads the broadcast ring without taking a lock and
 * without producers knowing about it: the tool costs the workers nothing
 * and cannot slow them down. It starts at the ring's current end (there is
 * no history to replay), so `events` without --follow listens for a while
 * (--timeout, default 1 s) and prints what came in as one document;
 * --follow goes on until SIGINT/SIGTERM or --count events, one line (or
 * one JSON object per line) per event, flushed as it arrives.
 *
 * If the tool falls more than a ring behind (its stdout blocked, say),
 * the ring laps it; shmreg_poll says how many events it missed, and that
 * is printed in the stream as a "missed" row, so gaps are never silent.
 * Polls block on the ring's futex with a short timeout, so a signal or
 * the deadline is noticed within 200 ms.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmregctl.h"

#define POLL_MAX 64u
#define TICK_NS 200000000ll

static const out_col event_cols[] = {
    {"time_ns", "TIME", 24, 0, 0},
    {"seq", "SEQ", 8, 0, 1},
    {"type", "TYPE", 18, 0, 0},
    {"pid", "PID", 7, 0, 1},
    {"session", "SESSION", 36, 0, 0},
    {"detail", "DETAIL", 0, 0, 0},
};

static const char *const field_name[SHMREG_FIELD_COUNT] = {
    "from_uri", "to_uri", "display_name", "call_id", "local_tag", "remote_tag",
    "codec", "failure_reason", "app_data", "local_rtp_port", "remote_rtp_port",
};

static int id_zero(const shmreg_id *id)
{
    static const shmreg_id zero;
    return memcmp(id, &zero, sizeof zero) == 0;
}

static const char *name_or(const char *name, char *buf, size_t cap, int v)
{
    if (name)
        return name;
    snprintf(buf, cap, "%d", v);
    return buf;
}

/* State names by event type: call states, room states, participant statuses. */
static void states(const shmreg_event *e, const char **old, const char **new_, char *b1,
                   char *b2)
{
    const char *(*fn)(int) = shmreg_state_name;
    if (e->type == SHMREG_EV_ROOM_STATE)
        fn = shmreg_room_state_name;
    else if (e->type == SHMREG_EV_PARTICIPANT_STATUS)
        fn = shmreg_part_status_name;
    *old = name_or(fn(e->old_state), b1, 16, e->old_state);
    *new_ = name_or(fn(e->new_state), b2, 16, e->new_state);
}

/* The first bytes of a name an event carries (a profile, a variable):
 * JSON gets them as a string, people escaped. */
static void name_prefix(out *o, const char *key, const shmreg_event *e, char *detail, size_t cap)
{
    uint32_t len = e->len < SHMREG_EVENT_DATA_MAX ? e->len : SHMREG_EVENT_DATA_MAX;
    out_str(o, key, (const char *)e->data, len);
    out_escape_human(detail, cap, (const char *)e->data, len);
}

static void event_row(ctl *c, const shmreg_event *e)
{
    out *o = &c->o;
    char detail[512] = "", b1[16], b2[16], tname[16];
    const char *old, *new_;
    out_row_begin(o);
    out_u64(o, "seq", e->seq);
    out_time(o, "time_ns", e->time_ns);
    out_cstr(o, "type", name_or(shmreg_event_name(e->type), tname, sizeof tname, (int)e->type));
    out_i64(o, "pid", e->pid);
    if (id_zero(&e->session))
        out_null(o, "session");
    else
        out_id(o, "session", &e->session);
    switch (e->type) {
    case SHMREG_EV_STATE_CHANGED:
    case SHMREG_EV_ROOM_STATE:
    case SHMREG_EV_PARTICIPANT_STATUS:
        states(e, &old, &new_, b1, b2);
        out_cstr(o, "old_state", old);
        out_cstr(o, "new_state", new_);
        snprintf(detail, sizeof detail, "%s -> %s", old, new_);
        break;
    case SHMREG_EV_SESSION_DELETED:
        states(e, &old, &new_, b1, b2);
        out_cstr(o, "old_state", old);
        snprintf(detail, sizeof detail, "was %s", old);
        break;
    case SHMREG_EV_SDP_UPDATED:
        out_cstr(o, "which", e->which == SHMREG_SDP_LOCAL ? "local" : "remote");
        snprintf(detail, sizeof detail, "%s", e->which == SHMREG_SDP_LOCAL ? "local" : "remote");
        break;
    case SHMREG_EV_SESSION_UPDATED: {
        size_t n = 0;
        for (int f = 0; f < SHMREG_FIELD_COUNT; f++)
            if (e->which & SHMREG_MASK(f))
                n += (size_t)snprintf(detail + n, sizeof detail - n, "%s%s", n ? "," : "",
                                      field_name[f]);
        out_cstr(o, "fields", detail);
        break;
    }
    case SHMREG_EV_CONFIG_CHANGED:
        out_u64(o, "config_gen", e->config_gen);
        snprintf(detail, sizeof detail, "gen %" PRIu64, e->config_gen);
        break;
    case SHMREG_EV_CUSTOM: {
        uint32_t len = e->len < SHMREG_EVENT_DATA_MAX ? e->len : SHMREG_EVENT_DATA_MAX;
        out_hex(o, "data_hex", e->data, len);
        out_escape_human(detail, sizeof detail, (const char *)e->data, len);
        break;
    }
    case SHMREG_EV_TIMEOUT: {
        const char *action = ctl_timeout_action(e->which);
        states(e, &old, &new_, b1, b2);
        out_cstr(o, "old_state", old);
        out_cstr(o, "new_state", new_);
        out_cstr(o, "action", action);
        snprintf(detail, sizeof detail, "%s -> %s, %s", old, new_, action ? action : "?");
        break;
    }
    case SHMREG_EV_PROFILE_JOINED:
    case SHMREG_EV_PROFILE_LEFT: {
        char name[128];
        name_prefix(o, "profile", e, name, sizeof name);
        out_u64(o, "count", e->which);
        snprintf(detail, sizeof detail, "%s, count %u", name, e->which);
        break;
    }
    case SHMREG_EV_VAR_CHANGED: {
        char name[128];
        name_prefix(o, "key", e, name, sizeof name);
        out_bool(o, "set", e->which != 0);
        snprintf(detail, sizeof detail, "%s %s", e->which ? "set" : "unset", name);
        break;
    }
    }
    if ((e->type >= SHMREG_EV_ROOM_CREATED && e->type <= SHMREG_EV_PARTICIPANT_LEFT) || e->type == SHMREG_EV_ROOM_RESTORED) {
        out_id(o, "room", &e->room);
        char rid[SHMREG_ID_TEXT_LEN + 1];
        shmreg_id_format(&e->room, rid);
        size_t n = strlen(detail);
        snprintf(detail + n, sizeof detail - n, "%sroom %s", n ? ", " : "", rid);
    }
    if (c->json && e->version) /* the session's version after the change */
        out_u64(o, "version", e->version);
    if (!c->json) /* JSON carries the structured fields above */
        out_cstr(o, "detail", detail);
    out_row_end(o);
}

static void missed_row(ctl *c, uint64_t missed)
{
    out *o = &c->o;
    char detail[64];
    out_row_begin(o);
    out_cstr(o, "type", "missed");
    out_u64(o, "count", missed);
    snprintf(detail, sizeof detail, "%" PRIu64 " event(s) lost (lapped or dead producer)", missed);
    if (!c->json)
        out_cstr(o, "detail", detail);
    out_row_end(o);
}

static int parse_types(const char *s, uint32_t *mask)
{
    char buf[512];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return -1;
    uint32_t m = 0, t;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (shmreg_event_parse(tok, &t) != 0)
            return -1;
        m |= SHMREG_EV_MASK(t);
    }
    if (!m)
        return -1;
    *mask = m;
    return 0;
}

static int types_usage(ctl *c, const char *arg)
{
    char names[512] = "";
    size_t n = 0;
    for (uint32_t t = 1; t < SHMREG_EV_TYPE_COUNT; t++)
        if (shmreg_event_name(t))
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? "," : "",
                                  shmreg_event_name(t));
    return ctl_usage(c, "--types wants a comma-separated list of %s; not '%s'", names, arg);
}

int cmd_events(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"follow", no_argument, NULL, 'f'},
        {"types", required_argument, NULL, 't'},
        {"session", required_argument, NULL, 's'},
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 'T'},
        {0},
    };
    int follow = 0, ch, rc;
    uint32_t mask = SHMREG_EV_ALL;
    shmreg_id sid;
    const shmreg_id *session = NULL;
    uint64_t count = UINT64_MAX, timeout = 1000000000u;
    while ((ch = ctl_getopt(c, argc, argv, "f", lo)) != -1) {
        switch (ch) {
        case 'f': follow = 1; break;
        case 't':
            if (parse_types(optarg, &mask))
                return types_usage(c, optarg);
            break;
        case 's':
            if ((rc = ctl_parse_id(c, optarg, &sid)))
                return rc;
            session = &sid;
            break;
        case 'n':
            if (ctl_parse_u64(optarg, UINT64_MAX, &count) || count == 0)
                return ctl_usage(c, "--count wants a positive number, not '%s'", optarg);
            break;
        case 'T':
            if (ctl_parse_dur(optarg, &timeout))
                return ctl_usage(c, "--timeout wants a duration (30, 1.5s, 10m), not '%s'", optarg);
            break;
        }
    }
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    shmreg_sub *sub;
    if ((rc = shmreg_subscribe(c->h, mask, session, &sub)))
        return ctl_fail(c, rc, "cannot subscribe to events");

    out *o = &c->o;
    if (!follow)
        out_obj_begin(o, NULL);
    out_table(o, "events", event_cols, 6, follow);
    out_flush(o); /* people see the header as soon as the subscription is live */
    uint64_t deadline = ctl_mono_ns() + timeout, printed = 0, missed_all = 0;
    shmreg_event ev[POLL_MAX];
    rc = CTL_OK;
    while (!ctl_stop && !o->broken && printed < count) {
        int64_t wait = TICK_NS;
        if (!follow) {
            uint64_t now = ctl_mono_ns();
            if (now >= deadline)
                break;
            if (deadline - now < (uint64_t)wait)
                wait = (int64_t)(deadline - now);
        }
        uint64_t missed = 0;
        unsigned max = count - printed < POLL_MAX ? (unsigned)(count - printed) : POLL_MAX;
        int n = shmreg_poll(sub, ev, max, wait, &missed);
        if (n < 0) {
            rc = ctl_fail(c, n, "cannot read events");
            break;
        }
        if (missed) {
            missed_all += missed;
            missed_row(c, missed);
        }
        for (int i = 0; i < n; i++)
            event_row(c, &ev[i]);
        printed += (uint64_t)n;
        if (follow)
            out_flush(o);
    }
    shmreg_unsubscribe(sub);
    out_table_end(o);
    if (!follow) {
        out_u64(o, "missed", missed_all);
        out_obj_end(o);
        out_doc_end(o);
    }
    return rc;
}
