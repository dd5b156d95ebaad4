/*
 * shmregctl_rooms.c — `rooms` and `room ID`: conference rooms and their
 * rosters, read in place.
 *
 * Like every read command, these render inside short read sections and
 * write between them, so a slow terminal never holds a section open; a
 * roster is at most SHMREG_MAX_ROOM_PARTICIPANTS entries, so one room
 * fits in one section.
 */
#include <string.h>

#include "shmregctl.h"

#define ROOMS_PER_SECTION 256u

static const out_col room_cols[] = {
    {"id", "ROOM", 36, 0, 0},
    {"state", "STATE", 11, 0, 0},
    {"participants", "IN", 5, 0, 1},
    {"max_participants", "MAX", 5, 0, 1},
    {"age_ns", "AGE", 8, 0, 1},
    {"name", "NAME", 0, 0, 0},
};

static const out_col part_cols[] = {
    {"session", "SESSION", 36, 0, 0},
    {"status", "STATUS", 8, 0, 0},
    {"audio_active", "AUDIO", 5, 0, 0},
    {"rtp_port", "PORT", 5, 0, 1},
    {"uri", "URI", 32, 1, 0},
    {"display_name", "NAME", 0, 0, 0},
};

static void room_fields(out *o, const shmreg_room *r, uint64_t now)
{
    out_id(o, "id", &r->id);
    out_cstr(o, "state", shmreg_room_state_name(r->state));
    out_u64(o, "participants", r->participants);
    out_u64(o, "max_participants", r->max_participants);
    out_time(o, "created_ns", r->created_ns);
    out_dur(o, "age_ns", now > r->created_ns ? now - r->created_ns : 0);
    out_u64(o, "config_gen", r->config_gen);
    out_str(o, "name", r->name.ptr, r->name.len);
}

static int room_next(shmreg *h, uint64_t *cur, void *r) { return shmreg_room_next(h, cur, r); }

static void room_row(out *o, const void *entry, void *now)
{
    out_row_begin(o);
    room_fields(o, entry, *(const uint64_t *)now);
    out_row_end(o);
}

int cmd_rooms(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 0, 0)))
        return rc;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_table(o, "rooms", room_cols, 6, 0);
    uint64_t now = ctl_now_ns();
    shmreg_room r;
    int walk;
    if ((rc = ctl_walk(c, room_next, &r, ROOMS_PER_SECTION, 0, room_row, &now, &walk)))
        return rc;
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    return walk == SHMREG_ENOENT || walk == 0 ? CTL_OK : ctl_fail(c, walk, "cannot walk the rooms");
}

int cmd_room(ctl *c, int argc, char **argv)
{
    int rc;
    shmreg_id id;
    while (ctl_getopt(c, argc, argv, "", NULL) != -1)
        ;
    if ((rc = ctl_operands(c, argc, argv, 1, 1)) || (rc = ctl_parse_id(c, argv[optind], &id)) ||
        (rc = ctl_open(c)) || (rc = ctl_section_begin(c)))
        return rc;
    out *o = &c->o;
    shmreg_room r;
    int found = (rc = shmreg_room_get(c->h, &id, &r)) == 0;
    if (found) {
        uint64_t now = ctl_now_ns(), cur = 0;
        out_obj_begin(o, NULL);
        room_fields(o, &r, now);
        out_table(o, "roster", part_cols, 6, 0);
        shmreg_participant p;
        while ((rc = shmreg_participant_next(c->h, &id, &cur, &p)) == 0) {
            out_row_begin(o);
            out_id(o, "session", &p.session);
            out_cstr(o, "status", shmreg_part_status_name(p.status));
            out_bool(o, "audio_active", p.audio_active);
            out_u64(o, "rtp_port", p.rtp_port);
            out_time(o, "joined_ns", p.joined_ns);
            out_str(o, "uri", p.uri.ptr, p.uri.len);
            out_str(o, "display_name", p.display_name.ptr, p.display_name.len);
            out_row_end(o);
        }
        out_table_end(o);
        out_obj_end(o);
        out_doc_end(o);
    }
    ctl_section_end(c);
    if (!found)
        return ctl_fail(c, rc, "no room %s", argv[optind]);
    return rc == SHMREG_ENOENT ? CTL_OK : ctl_fail(c, rc, "cannot read the roster of %s", argv[optind]);
}
