/*
 * state.c — the state machines of calls, rooms and participants as data:
 * names and the tables of allowed transitions; and the one compare-and-swap step by which every
 * state machine of the registry (sessions, rooms, participants) moves a
 * word in the segment.
 *
 * The transition table is data, not code, so that the header's table, the
 * check in shmreg_session_transition() and the tests can be compared line
 * by line.
 */
#include <strings.h>

#include "internal.h"

static const char *const state_names[SHMREG_STATE_COUNT] = {
    "Any", "Initiating", "Ringing", "Active", "OnHold", "Transferring",
    "Terminating", "Terminated", "Cancelled", "Failed",
};

#define B(s) (1u << SHMREG_STATE_##s)
/* allowed[from] = set of `to` states; mirrors the table in shmreg.h. */
static const unsigned allowed[SHMREG_STATE_COUNT] = {
    [SHMREG_STATE_INITIATING] = B(RINGING) | B(ACTIVE) | B(TERMINATING) | B(CANCELLED) | B(FAILED),
    [SHMREG_STATE_RINGING] = B(ACTIVE) | B(TERMINATING) | B(CANCELLED) | B(FAILED),
    [SHMREG_STATE_ACTIVE] = B(ONHOLD) | B(TRANSFERRING) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_ONHOLD] = B(ACTIVE) | B(TRANSFERRING) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_TRANSFERRING] = B(ACTIVE) | B(ONHOLD) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_TERMINATING] = B(TERMINATED) | B(FAILED),
};
#undef B

int shmreg_state_allowed(int from, int to)
{
    if (from < 1 || from >= SHMREG_STATE_COUNT || to < 1 || to >= SHMREG_STATE_COUNT)
        return 0;
    return (allowed[from] >> to) & 1u;
}

const char *shmreg_state_name(int state)
{
    return state >= 0 && state < SHMREG_STATE_COUNT ? state_names[state] : NULL;
}

int shmreg_state_parse(const char *name, int *state)
{
    for (int s = 0; name && state && s < SHMREG_STATE_COUNT; s++)
        if (strcasecmp(name, state_names[s]) == 0) {
            *state = s;
            return 0;
        }
    return shmreg__fail(SHMREG_EINVAL, "unknown call state '%s'", name ? name : "(null)");
}

int shmreg_state_is_final(int state)
{
    return state == SHMREG_STATE_TERMINATED || state == SHMREG_STATE_CANCELLED ||
           state == SHMREG_STATE_FAILED;
}

/* ------------------------------------------------------------ rooms, participants */

static const char *const room_names[SHMREG_ROOM_STATE_COUNT] = {
    "Any", "Creating", "Active", "Locked", "Terminating", "Terminated"};
static const char *const part_names[SHMREG_PART_STATUS_COUNT] = {
    "Any", "Joining", "Active", "OnHold", "Muted", "Leaving", "Left"};

const char *shmreg_room_state_name(int s)
{
    return s >= 0 && s < SHMREG_ROOM_STATE_COUNT ? room_names[s] : NULL;
}

const char *shmreg_part_status_name(int s)
{
    return s >= 0 && s < SHMREG_PART_STATUS_COUNT ? part_names[s] : NULL;
}

int shmreg_room_state_allowed(int from, int to)
{
    switch (from) {
    case SHMREG_ROOM_CREATING: return to == SHMREG_ROOM_ACTIVE;
    case SHMREG_ROOM_ACTIVE: return to == SHMREG_ROOM_LOCKED || to == SHMREG_ROOM_TERMINATING;
    case SHMREG_ROOM_LOCKED: return to == SHMREG_ROOM_ACTIVE || to == SHMREG_ROOM_TERMINATING;
    case SHMREG_ROOM_TERMINATING: return to == SHMREG_ROOM_TERMINATED;
    default: return 0;
    }
}

int shmreg_part_status_allowed(int from, int to)
{
    return from >= SHMREG_PART_JOINING && from < SHMREG_PART_LEFT && to >= SHMREG_PART_JOINING &&
           to < SHMREG_PART_STATUS_COUNT && from != to;
}

/* ------------------------------------------------------------ moving */

int reg_machine_move(const reg_machine *m, _Atomic uint64_t *word, uint64_t cur, int expected,
                     int to, int *old, int *from_out)
{
    for (;;) {
        if (m->live && !m->live(cur))
            return shmreg__fail(SHMREG_ENOENT, "%s deleted", m->what);
        int from = (int)(cur & 0xffu);
        if (old)
            *old = from;
        if (expected != 0 && from != expected)
            return shmreg__fail(SHMREG_ECONFLICT, "%s is %s, not %s", m->is, m->name(from),
                                m->name(expected));
        if (!m->allowed(from, to))
            return shmreg__fail(SHMREG_ESTATE, "%s%s -> %s is not allowed", m->move, m->name(from),
                                m->name(to));
        /* A failed CAS reloads `cur`: judge the new word from the top. */
        if (atomic_compare_exchange_strong(word, &cur, (uint64_t)to)) {
            *from_out = from;
            return 0;
        }
    }
}
