/*
 * ctl_rooms.c — `shmregctl rooms` lists every room with its state and
 * participant count, and `shmregctl room ID` shows one room's roster with
 * each participant's status, for people and as JSON; an unknown room is
 * exit 1, a malformed ID exit 2.
 */
#include <stdio.h>
#include <string.h>

#include "ctl_run.h"
#include "shmreg.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})

int main(void)
{
    const char *dir = test_dir("ctl_rooms");
    shmreg *h;
    shmreg_options o = {.flags = SHMREG_CREATE, .max_sessions = 64};
    if (shmreg_open(dir, &o, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());

    shmreg_id big, small, a, b, c;
    shmreg_room_create(h, S("standup"), 8, &big);
    shmreg_room_create(h, S("1:1"), 2, &small);
    shmreg_room_transition(h, &big, SHMREG_ROOM_CREATING, SHMREG_ROOM_ACTIVE, NULL);
    shmreg_session_create(h, NULL, &a);
    shmreg_session_create(h, NULL, &b);
    shmreg_session_create(h, NULL, &c);
    shmreg_room_join(h, &big, &a, S("sip:alice@example.com"), S("Alice"), 40000);
    shmreg_room_join(h, &big, &b, S("sip:bob@example.com"), S("Bob"), 40002);
    shmreg_room_join(h, &small, &c, S("sip:carol@example.com"), S("Carol"), 40004);
    shmreg_participant_set_status(h, &big, &b, SHMREG_PART_ANY, SHMREG_PART_MUTED, NULL);
    shmreg_participant_set_audio(h, &big, &a, 1);
    char big_t[37], a_t[37], b_t[37];
    shmreg_id_format(&big, big_t);
    shmreg_id_format(&a, a_t);
    shmreg_id_format(&b, b_t);

    ctl_res r;
    is(ctl(&r, "-r", dir, "rooms", NULL), 0, "rooms exits 0");
    is(count_lines(r.out), 3, "a header and one line per room");
    ok(strstr(line_with(r.out, big_t), "Active") && strstr(line_with(r.out, big_t), "standup"),
       "the standup room shows as Active with its name");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "--json", "rooms", NULL), 0, "rooms --json exits 0");
    is_str(jd(&r, "sorted((x['name'], x['state'], x['participants'], x['max_participants']) "
                  "for x in d['rooms'])"),
           "[[\"1:1\", \"Creating\", 1, 2], [\"standup\", \"Active\", 2, 8]]",
           "the JSON lists both rooms with states, counts and capacities");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "room", big_t, NULL), 0, "room ID exits 0");
    ok(strstr(line_with(r.out, a_t), "Joining") && strstr(line_with(r.out, a_t), "Alice"),
       "Alice is listed as Joining");
    ok(strstr(line_with(r.out, b_t), "Muted") && strstr(line_with(r.out, b_t), "40002"),
       "Bob is listed as Muted on port 40002");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "--json", "room", big_t, NULL), 0, "room --json exits 0");
    is_str(jd(&r, "sorted((p['display_name'], p['status'], p['audio_active'], p['rtp_port'], p['uri']) "
                  "for p in d['roster'])"),
           "[[\"Alice\", \"Joining\", true, 40000, \"sip:alice@example.com\"], "
           "[\"Bob\", \"Muted\", false, 40002, \"sip:bob@example.com\"]]",
           "the JSON roster carries every participant's fields exactly");
    char want[128];
    snprintf(want, sizeof want, "[\"%s\", \"Active\", 2]", big_t);
    is_str(jd(&r, "(d['id'], d['state'], d['participants'])"), want, "with the room's ID, state and count");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "room", "00000000-0000-0000-0000-000000000000", NULL), 1,
       "an unknown room is exit 1");
    ok(strstr(r.err, "no room") != NULL, "and stderr says so");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "room", "not-an-id", NULL), 2, "a malformed ID is exit 2");
    ctl_res_free(&r);

    shmreg_session_delete(h, &a);
    is(ctl(&r, "-r", dir, "--json", "room", big_t, NULL), 0, "after Alice's session is deleted");
    is_str(jd(&r, "[p['display_name'] for p in d['roster']]"), "[\"Bob\"]", "only Bob is left in the roster");
    ctl_res_free(&r);

    shmreg_close(h);
    shmreg_destroy(dir, 1);
    return done_testing();
}
