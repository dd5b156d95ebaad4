/*
 * room.c — conference rooms and their participants.
 *
 * A room is one heap block: ID, state word, capacities, name, and a roster
 * of exactly max_participants offsets. A participant is a block of its
 * own, written once at join (session ID, URI, display name, port, joined
 * time) and published by one compare-and-swap into a free roster entry.
 * Its status and audio flag are words inside that block, changed in place
 * with atomics: a status flip touches one word, never the roster or the
 * room. The participant count is the number of non-empty roster entries,
 * counted when asked: a process killed between two steps can never leave
 * a count that disagrees with the roster, and a full roster is the only
 * way to be full, so concurrent joins cannot exceed the maximum.
 *
 * Rooms are found through a small open-addressed table in the segment
 * (entries: 0 empty, 1 tombstone, else the room block's offset), probed
 * lock-free; insert and delete are single compare-and-swaps.
 *
 * A session records the room it is in as one word that also names the
 * joining handle (room table index, handle slot, incarnation): the
 * compare-and-swap on that word is what makes "at most one room per
 * session" exact, and the tag lets a later join tell a stale claim of a
 * dead joiner from a join in flight.
 *
 * Removal races (leave, session delete, room delete) are settled like
 * dialogs: whoever clears the roster entry with a CAS retires the block.
 */
#include <sodium.h>

#include "reg.h"
#include "crashpoint.h"

typedef struct reg_room {
    unsigned char id[SHMREG_ID_BYTES];
    _Atomic uint64_t state;          /* room state, or REG_DELETED | deleter tag */
    uint64_t created_ns, config_gen;
    uint32_t max, name_len;
    _Atomic uint64_t roster[];       /* then the name */
} reg_room;

typedef struct reg_part {
    unsigned char sid[SHMREG_ID_BYTES];
    _Atomic uint64_t status;          /* a reg_machine word (state.c) */
    _Atomic uint32_t audio;
    uint32_t pad0;
    uint64_t joined_ns;
    uint16_t rtp_port, uri_len, disp_len, pad;
    char data[];
} reg_part;

#define TOMB 1u
#define ROOM_LIVE(w) (REG_STATE(w) >= SHMREG_ROOM_CREATING && REG_STATE(w) <= SHMREG_ROOM_TERMINATED)

/* ------------------------------------------------------------ finding */

static reg_room *room_at(shmreg *h, uint64_t off)
{
    shm_blk *b = off > TOMB ? shm_blk_at(&h->c.seg, off) : NULL;
    if (b == NULL || shm_slot_index(&h->c.seg, off) != UINT32_MAX)
        return NULL;
    reg_room *r = reg_payload(b);
    uint64_t need = sizeof *r + (uint64_t)r->max * 8 + r->name_len;
    if (r->max == 0 || r->max > SHMREG_MAX_ROOM_PARTICIPANTS || r->name_len > SHMREG_MAX_STR ||
        need > shm_blk_capacity(b))
        return NULL;
    return r;
}

static reg_part *part_at(shmreg *h, uint64_t off)
{
    shm_blk *b = off ? shm_blk_at(&h->c.seg, off) : NULL;
    if (b == NULL || shm_slot_index(&h->c.seg, off) != UINT32_MAX)
        return NULL;
    reg_part *p = reg_payload(b);
    if (sizeof *p + (uint64_t)p->uri_len + p->disp_len > shm_blk_capacity(b))
        return NULL;
    return p;
}

static uint32_t room_hash(const shmreg *h, const unsigned char id[SHMREG_ID_BYTES])
{
    uint64_t x;
    memcpy(&x, id, 8); /* random IDs: their bits are the hash */
    return (uint32_t)(x & (h->room_slots - 1));
}

/* Find a live room by ID: table index in *idx, and in *state the state
 * word as loaded and found live (answers are built from it, never from a
 * second load that a delete may have overtaken). In a read section. */
static int room_find(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *idx, reg_room **out,
                     uint64_t *state)
{
    uint32_t start = room_hash(h, id);
    for (uint32_t k = 0; k < h->room_slots; k++) {
        uint32_t i = (start + k) & (h->room_slots - 1);
        uint64_t off = atomic_load_explicit(&h->rooms[i], memory_order_acquire);
        if (off == 0)
            break;
        if (off == TOMB)
            continue;
        reg_room *r = room_at(h, off);
        if (r == NULL)
            return shmreg__fail(SHMREG_ECORRUPT, "room table entry %u is not a room", i);
        if (memcmp(r->id, id, SHMREG_ID_BYTES) == 0) {
            uint64_t st = atomic_load(&r->state);
            if (!ROOM_LIVE(st))
                break;
            *idx = i;
            *out = r;
            *state = st;
            return 0;
        }
    }
    return shmreg__fail_lazy(SHMREG_ENOENT, "no such room", id);
}

/* The roster entry holding `session`, or -1; *off (may be NULL) receives
 * the entry's value as it was matched. A remover must pass on that value,
 * not load the entry again: the participant may have left and another
 * taken the entry meanwhile. */
static int roster_find(shmreg *h, reg_room *r, const unsigned char sid[SHMREG_ID_BYTES], reg_part **p,
                       uint64_t *off)
{
    for (uint32_t i = 0; i < r->max; i++) {
        uint64_t o = atomic_load_explicit(&r->roster[i], memory_order_acquire);
        reg_part *x = o ? part_at(h, o) : NULL;
        if (x && memcmp(x->sid, sid, SHMREG_ID_BYTES) == 0) {
            *p = x;
            if (off)
                *off = o;
            return (int)i;
        }
    }
    return -1;
}

/* A session's room word: room table index + 1, and the joiner's tag. */
static uint64_t room_ref(const shmreg *h, uint32_t idx)
{
    return (uint64_t)h->c.incarnation << 32 | (uint64_t)h->c.slot << 20 | (idx + 1);
}
#define REF_IDX(w) ((uint32_t)((w) & 0xfffffu) - 1)
/* The table has at most 2 * SHMREG_MAX_ROOMS entries (a power of two): the
 * largest index + 1 must fit the word's 20 bits, or it would run into the
 * joiner's slot bits. */
_Static_assert(2ull * SHMREG_MAX_ROOMS <= 0xfffffu, "room index + 1 must fit 20 bits");
#define REF_TAG(w) (((w) >> 32) << 32 | (((w) >> 20) & 0xfffu) << 8)

/* ------------------------------------------------------------ removing */

/* Clear roster entry i if it still holds `off`; the winner retires it and
 * frees its session's room word. */
static int roster_remove(shmreg *h, reg_room *r, uint32_t idx, uint32_t i, uint64_t off)
{
    reg_part *p = part_at(h, off);
    shm_blk *b = shm_blk_at(&h->c.seg, off);
    if (p == NULL || b == NULL)
        return 0;
    uint64_t st = atomic_load(&b->state);
    /* Put our tag on the session's room word first: if we die between
     * clearing the roster entry and clearing the word, the word names a
     * dead remover and the next join takes it as the stale claim it is. */
    uint32_t si;
    uint64_t sst;
    reg_sess *x = reg_lookup(h, p->sid, &si, &sst) == 0 ? reg_slot(h, si) : NULL;
    uint64_t w = x ? atomic_load(&x->room) : 0;
    if (w && REF_IDX(w) == idx)
        atomic_compare_exchange_strong(&x->room, &w, room_ref(h, idx));
    SHM_CRASH_POINT("room_remove_claimed");
    shm_intent_set(&h->c, off, st, &r->roster[i]);
    if (!atomic_compare_exchange_strong(&r->roster[i], &off, 0)) {
        shm_intent_clear(&h->c);
        return 0; /* another remover won: it clears the word */
    }
    SHM_CRASH_POINT("room_remove_cleared");
    w = x ? atomic_load(&x->room) : 0;
    if (w && REF_IDX(w) == idx)
        atomic_compare_exchange_strong(&x->room, &w, 0);
    shm_retire(&h->c, shm_off(&h->c.seg, b), st);
    shm_intent_clear(&h->c);
    reg_event_room(h, 0, SHMREG_EV_PARTICIPANT_LEFT, r->id, p->sid, 0, SHMREG_PART_LEFT);
    return 1;
}

void reg_room_forget_session(shmreg *h, uint32_t si)
{
    reg_sess *x = reg_slot(h, si);
    uint64_t w = atomic_load(&x->room);
    if (w == 0 || REF_IDX(w) >= h->room_slots)
        return;
    reg_room *r = room_at(h, atomic_load(&h->rooms[REF_IDX(w)]));
    reg_part *p;
    uint64_t off;
    int i = r ? roster_find(h, r, x->id, &p, &off) : -1;
    if (i >= 0)
        roster_remove(h, r, REF_IDX(w), (uint32_t)i, off);
    atomic_compare_exchange_strong(&x->room, &w, 0);
}

uint32_t reg_room_count(shmreg *h)
{
    uint32_t n = 0;
    /* A read section: a room block seen in the table is not reused while
     * we look at it (callers need not be in one). */
    shm_read_enter(&h->c);
    for (uint32_t i = 0; i < h->room_slots; i++) {
        reg_room *r = room_at(h, atomic_load(&h->rooms[i]));
        n += r && ROOM_LIVE(atomic_load(&r->state));
    }
    shm_read_leave(&h->c);
    return n;
}

/* ------------------------------------------------------------ rooms */

/* A room block, filled and not yet in the table: with `id`, or a fresh
 * one when NULL. 0 when the heap is full. */
static uint64_t room_block(shmreg *h, const unsigned char *id, int state, uint64_t created_ns,
                           uint64_t config_gen, uint32_t max, shmreg_str name)
{
    uint64_t off = shm_alloc(&h->c, sizeof(reg_room) + (uint64_t)max * 8 + name.len, 0);
    if (off == 0)
        return 0;
    reg_room *r = reg_payload((shm_blk *)(h->c.seg.base + off));
    if (id)
        memcpy(r->id, id, SHMREG_ID_BYTES);
    else
        reg_random_id(h, r->id);
    atomic_store(&r->state, (uint64_t)state);
    r->created_ns = created_ns;
    r->config_gen = config_gen;
    r->max = max;
    r->name_len = (uint32_t)name.len;
    for (uint32_t i = 0; i < max; i++)
        atomic_store(&r->roster[i], 0);
    if (name.len)
        memcpy((char *)&r->roster[max], name.ptr, name.len);
    return off;
}

/* Publish the room block at `off` in a free (or tombstoned) entry of the
 * table, probing from its ID's hash: 0 and the entry in *idx, or -1 when
 * the table is full. */
static int room_table_put(shmreg *h, uint64_t off, const unsigned char id[SHMREG_ID_BYTES], uint32_t *idx)
{
    uint32_t start = room_hash(h, id);
    for (uint32_t k = 0; k < h->room_slots; k++) {
        uint32_t i = (start + k) & (h->room_slots - 1);
        uint64_t cur = atomic_load(&h->rooms[i]);
        if ((cur == 0 || cur == TOMB) && atomic_compare_exchange_strong(&h->rooms[i], &cur, off)) {
            *idx = i;
            return 0;
        }
    }
    return -1;
}

int shmreg_room_create(shmreg *h, shmreg_str name, uint32_t max_participants, shmreg_id *room_out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room_out == NULL || max_participants < 1 || max_participants > SHMREG_MAX_ROOM_PARTICIPANTS ||
        name.len > SHMREG_MAX_STR || (name.len && name.ptr == NULL))
        return shmreg__fail(SHMREG_EINVAL, "bad room: max_participants 1..%u, name <= %u bytes",
                            SHMREG_MAX_ROOM_PARTICIPANTS, SHMREG_MAX_STR);
    if (reg_room_count(h) >= h->room_slots / 2)
        return shmreg__fail(SHMREG_EFULL, "room table full (%u rooms)", h->room_slots / 2);
    uint64_t now = shm_now_ns();
    uint64_t off = room_block(h, NULL, SHMREG_ROOM_CREATING, now, atomic_load(&h->shared->config_gen),
                              max_participants, name);
    if (off == 0)
        return shmreg__fail(SHMREG_EFULL, "registry heap full (room)");
    SHM_CRASH_POINT("room_create_allocated");
    /* The ID is kept apart before publication: once in the table the room
     * may be deleted and (no read section here) its block reused. */
    shmreg_id id;
    memcpy(id.bytes, ((reg_room *)reg_payload((shm_blk *)(h->c.seg.base + off)))->id, SHMREG_ID_BYTES);
    uint32_t idx;
    if (room_table_put(h, off, id.bytes, &idx) != 0) {
        shm_free(&h->c, off);
        return shmreg__fail(SHMREG_EFULL, "room table full");
    }
    *room_out = id;
    reg_event_room(h, now, SHMREG_EV_ROOM_CREATED, id.bytes, NULL, 0, SHMREG_ROOM_CREATING);
    return 0;
}

static void all_left(shmreg *h, reg_room *r)
{
    for (uint32_t i = 0; i < r->max; i++) {
        reg_part *p = part_at(h, atomic_load(&r->roster[i]));
        if (p == NULL)
            continue;
        uint32_t old = atomic_exchange(&p->status, SHMREG_PART_LEFT);
        if (old != SHMREG_PART_LEFT)
            reg_event_room(h, 0, SHMREG_EV_PARTICIPANT_STATUS, r->id, p->sid, (int)old,
                           SHMREG_PART_LEFT);
    }
}

static int room_live(uint64_t w) { return ROOM_LIVE(w); }

static const reg_machine room_machine = {
    "room", "room", "room ", shmreg_room_state_allowed, shmreg_room_state_name, room_live,
};

/* A participant's status has no "deleted": the roster says who is in. */
static const reg_machine part_machine = {
    "participant", "participant", "participant ", shmreg_part_status_allowed,
    shmreg_part_status_name, NULL,
};

int shmreg_room_transition(shmreg *h, const shmreg_id *room, int expected, int to, int *old)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room == NULL || expected < 0 || expected >= SHMREG_ROOM_STATE_COUNT || to < 1 ||
        to >= SHMREG_ROOM_STATE_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "NULL room or unknown room state");
    uint32_t idx;
    reg_room *r;
    uint64_t cur; /* validated by room_find: the move starts from it */
    int from;
    shm_read_enter(&h->c);
    if ((rc = room_find(h, room->bytes, &idx, &r, &cur)) == 0 &&
        (rc = reg_machine_move(&room_machine, &r->state, cur, expected, to, old, &from)) == 0) {
        reg_event_room(h, 0, SHMREG_EV_ROOM_STATE, r->id, NULL, from, to);
        if (to >= SHMREG_ROOM_TERMINATING)
            all_left(h, r);
    }
    shm_read_leave(&h->c);
    return rc;
}

/* The rest of a delete once the state word says REG_DELETED: every step
 * is idempotent, so the check's repair reruns it for a deleter that died.
 * Whoever swings the table entry to a tombstone retires the room. */
static void room_finish_delete(shmreg *h, uint32_t idx, reg_room *r)
{
    SHM_CRASH_POINT("room_delete_marked");
    for (uint32_t i = 0; i < r->max; i++) {
        uint64_t off = atomic_load(&r->roster[i]);
        if (off)
            roster_remove(h, r, idx, i, off);
    }
    SHM_CRASH_POINT("room_delete_roster_cleared");
    uint64_t off = shm_off(&h->c.seg, (char *)r - SHM_BLK_HDR), e = off;
    shm_blk *b = shm_blk_at(&h->c.seg, off);
    uint64_t st = atomic_load(&b->state);
    shm_intent_set(&h->c, off, st, &h->rooms[idx]);
    if (atomic_compare_exchange_strong(&h->rooms[idx], &e, TOMB))
        shm_retire(&h->c, off, st);
    shm_intent_clear(&h->c);
}

int shmreg_room_delete(shmreg *h, const shmreg_id *room)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL room");
    uint32_t idx;
    reg_room *r;
    uint64_t cur; /* validated by room_find; the CAS refreshes it */
    shm_read_enter(&h->c);
    if ((rc = room_find(h, room->bytes, &idx, &r, &cur)) == 0) {
        while (ROOM_LIVE(cur) && !atomic_compare_exchange_strong(&r->state, &cur, h->c.tag | REG_DELETED))
            ;
        if (!ROOM_LIVE(cur))
            rc = shmreg__fail(SHMREG_ENOENT, "room deleted");
        else
            room_finish_delete(h, idx, r);
    }
    shm_read_leave(&h->c);
    return rc;
}

/* A view of room r whose state word, checked live, was `st`. */
static void room_view(shmreg *h, reg_room *r, uint64_t st, shmreg_room *out)
{
    (void)h;
    memcpy(out->id.bytes, r->id, SHMREG_ID_BYTES);
    out->state = (int)REG_STATE(st);
    out->name.ptr = (const char *)&r->roster[r->max];
    out->name.len = r->name_len;
    out->max_participants = r->max;
    out->participants = 0;
    for (uint32_t i = 0; i < r->max; i++)
        out->participants += atomic_load_explicit(&r->roster[i], memory_order_relaxed) != 0;
    out->created_ns = r->created_ns;
    out->config_gen = r->config_gen;
    memset(out->reserved, 0, sizeof out->reserved);
}

int shmreg_room_get(shmreg *h, const shmreg_id *room, shmreg_room *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (room == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL room/out");
    uint32_t idx;
    reg_room *r;
    uint64_t st;
    if ((rc = room_find(h, room->bytes, &idx, &r, &st)) == 0)
        room_view(h, r, st, out);
    return rc;
}

int shmreg_room_next(shmreg *h, uint64_t *cursor, shmreg_room *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (cursor == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL cursor/out");
    for (uint64_t i = *cursor; i < h->room_slots; i++) {
        reg_room *r = room_at(h, atomic_load(&h->rooms[i]));
        uint64_t st = r ? atomic_load(&r->state) : 0;
        if (r && ROOM_LIVE(st)) {
            room_view(h, r, st, out);
            *cursor = i + 1;
            return 0;
        }
    }
    *cursor = h->room_slots;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more rooms", NULL);
}

/* ------------------------------------------------------------ participants */

static int joinable(uint64_t st)
{
    unsigned s = REG_STATE(st);
    return s == SHMREG_ROOM_CREATING || s == SHMREG_ROOM_ACTIVE;
}

/* Is a session's room word a claim that nobody will complete? */
static int stale_claim(shmreg *h, uint64_t w, const unsigned char sid[SHMREG_ID_BYTES])
{
    if (REF_IDX(w) >= h->room_slots)
        return 1;
    reg_room *r = room_at(h, atomic_load(&h->rooms[REF_IDX(w)]));
    reg_part *p;
    if (r && ROOM_LIVE(atomic_load(&r->state)) && roster_find(h, r, sid, &p, NULL) >= 0)
        return 0;
    return !shm_tag_alive(&h->c.seg, REF_TAG(w));
}

/* A participant block for session `sid`, filled from `q` (uri, display
 * name, status, audio, joined time, RTP port); 0 when the heap is full. */
static uint64_t part_block(shmreg *h, const unsigned char sid[SHMREG_ID_BYTES], const shmreg_participant *q)
{
    uint64_t off = shm_alloc(&h->c, sizeof(reg_part) + q->uri.len + q->display_name.len, 0);
    if (off == 0)
        return 0;
    reg_part *p = reg_payload((shm_blk *)(h->c.seg.base + off));
    memcpy(p->sid, sid, SHMREG_ID_BYTES);
    atomic_store(&p->status, (uint64_t)q->status);
    atomic_store(&p->audio, q->audio_active ? 1u : 0u);
    p->joined_ns = q->joined_ns;
    p->rtp_port = q->rtp_port;
    p->uri_len = (uint16_t)q->uri.len;
    p->disp_len = (uint16_t)q->display_name.len;
    if (q->uri.len)
        memcpy(p->data, q->uri.ptr, q->uri.len);
    if (q->display_name.len)
        memcpy(p->data + q->uri.len, q->display_name.ptr, q->display_name.len);
    return off;
}

int shmreg_room_join(shmreg *h, const shmreg_id *room, const shmreg_id *session, shmreg_str uri,
                     shmreg_str display_name, uint16_t rtp_port)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room == NULL || session == NULL || uri.len > SHMREG_MAX_STR || display_name.len > SHMREG_MAX_STR ||
        (uri.len && !uri.ptr) || (display_name.len && !display_name.ptr))
        return shmreg__fail(SHMREG_EINVAL, "NULL room/session or a string over %u bytes", SHMREG_MAX_STR);
    uint32_t idx, si;
    reg_room *r;
    uint64_t rst, sst;
    shm_read_enter(&h->c);
    if ((rc = room_find(h, room->bytes, &idx, &r, &rst)) != 0 ||
        (rc = reg_find_own(h, session->bytes, &si, &sst)) != 0)
        goto out;
    if (!joinable(rst)) { /* live (room_find checked), so a name exists */
        rc = shmreg__fail(SHMREG_ESTATE, "room is %s: no joins", shmreg_room_state_name((int)REG_STATE(rst)));
        goto out;
    }
    reg_sess *x = reg_slot(h, si);
    uint64_t w = atomic_load(&x->room), mine = room_ref(h, idx);
    if (w && stale_claim(h, w, x->id))
        atomic_compare_exchange_strong(&x->room, &w, 0); /* a dead joiner's claim */
    w = 0;
    if (!atomic_compare_exchange_strong(&x->room, &w, mine)) {
        rc = shmreg__fail(SHMREG_EEXIST, "session is already in a room");
        goto out;
    }
    if (!REG_LIVE(atomic_load(&x->state))) { /* deleted meanwhile: its deleter may have looked */
        atomic_compare_exchange_strong(&x->room, &mine, 0);
        rc = shmreg__fail(SHMREG_ENOENT, "session deleted meanwhile");
        goto out;
    }
    SHM_CRASH_POINT("room_join_claimed");
    shmreg_participant q = {.uri = uri, .display_name = display_name, .status = SHMREG_PART_JOINING,
                            .joined_ns = shm_now_ns(), .rtp_port = rtp_port};
    uint64_t off = part_block(h, session->bytes, &q);
    if (off == 0) {
        atomic_compare_exchange_strong(&x->room, &mine, 0);
        rc = shmreg__fail(SHMREG_EFULL, "registry heap full (participant)");
        goto out;
    }
    SHM_CRASH_POINT("room_join_allocated");
    reg_part *p = reg_payload((shm_blk *)(h->c.seg.base + off));
    uint32_t i;
    for (i = 0; i < r->max; i++) {
        uint64_t zero = 0;
        if (atomic_compare_exchange_strong(&r->roster[i], &zero, off))
            break;
    }
    if (i == r->max) {
        shm_free(&h->c, off);
        atomic_compare_exchange_strong(&x->room, &mine, 0);
        rc = shmreg__fail(SHMREG_EFULL, "room is full (%u participants)", r->max);
        goto out;
    }
    SHM_CRASH_POINT("room_join_published");
    /* Locked, terminated or deleted meanwhile: back out as a leave would.
     * Each word is loaded once: the error names what was seen. */
    uint64_t st = atomic_load(&r->state);
    sst = atomic_load(&x->state);
    if (!joinable(st) || !REG_LIVE(sst)) {
        roster_remove(h, r, idx, i, off);
        atomic_compare_exchange_strong(&x->room, &mine, 0);
        rc = ROOM_LIVE(st) && REG_LIVE(sst)
                 ? shmreg__fail(SHMREG_ESTATE, "room is %s: no joins", shmreg_room_state_name((int)REG_STATE(st)))
                 : shmreg__fail(SHMREG_ENOENT, "room or session deleted meanwhile");
        goto out;
    }
    reg_event_room(h, p->joined_ns, SHMREG_EV_PARTICIPANT_JOINED, r->id, session->bytes, 0,
                   SHMREG_PART_JOINING);
out:
    shm_read_leave(&h->c);
    return rc;
}

/* One participant, as the calls below find it: the room's table index,
 * the room, the participant, its roster entry's index and value. */
typedef struct part_ref {
    uint32_t idx;
    reg_room *r;
    reg_part *p;
    int i;
    uint64_t off;
} part_ref;

/* The opening of a call on one participant: a usable handle, both IDs,
 * then, in a read section that the caller leaves on success, the room
 * and the participant. On failure nothing is left open. */
static int part_enter(shmreg *h, const shmreg_id *room, const shmreg_id *session, part_ref *a)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (room == NULL || session == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL room/session");
    uint64_t st;
    shm_read_enter(&h->c);
    rc = room_find(h, room->bytes, &a->idx, &a->r, &st);
    if (rc == 0 && (a->i = roster_find(h, a->r, session->bytes, &a->p, &a->off)) < 0)
        rc = shmreg__fail_lazy(SHMREG_ENOENT, "not in this room: session", session->bytes);
    if (rc)
        shm_read_leave(&h->c);
    return rc;
}

int shmreg_room_leave(shmreg *h, const shmreg_id *room, const shmreg_id *session)
{
    part_ref a;
    int rc = part_enter(h, room, session, &a);
    if (rc)
        return rc;
    /* Remove the entry as found: loading it again could pick up another
     * participant that took the entry after ours left. */
    if (!roster_remove(h, a.r, a.idx, (uint32_t)a.i, a.off))
        rc = shmreg__fail(SHMREG_ENOENT, "session left meanwhile");
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_participant_set_status(shmreg *h, const shmreg_id *room, const shmreg_id *session,
                                  int expected, int to, int *old)
{
    int rc = shmreg__usable(h); /* EFORK before EINVAL, as every call */
    if (rc)
        return rc;
    if (expected < 0 || expected >= SHMREG_PART_STATUS_COUNT || to < 1 || to >= SHMREG_PART_STATUS_COUNT)
        return shmreg__fail(SHMREG_EINVAL, "unknown participant status (expected %d, to %d)",
                            expected, to);
    part_ref a;
    int from;
    if ((rc = part_enter(h, room, session, &a)) != 0)
        return rc;
    rc = reg_machine_move(&part_machine, &a.p->status, atomic_load(&a.p->status), expected, to,
                          old, &from);
    if (rc == 0)
        reg_event_room(h, 0, SHMREG_EV_PARTICIPANT_STATUS, a.r->id, a.p->sid, from, to);
    shm_read_leave(&h->c);
    return rc;
}

int shmreg_participant_set_audio(shmreg *h, const shmreg_id *room, const shmreg_id *session, int active)
{
    part_ref a;
    int rc = part_enter(h, room, session, &a);
    if (rc)
        return rc;
    atomic_store(&a.p->audio, active ? 1u : 0u);
    shm_read_leave(&h->c);
    return 0;
}

int shmreg_participant_next(shmreg *h, const shmreg_id *room, uint64_t *cursor, shmreg_participant *out)
{
    int rc = reg_need_read(h);
    if (rc)
        return rc;
    if (room == NULL || cursor == NULL || out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL room/cursor/out");
    uint32_t idx;
    reg_room *r;
    uint64_t st;
    if ((rc = room_find(h, room->bytes, &idx, &r, &st)) != 0)
        return rc;
    for (uint64_t i = *cursor; i < r->max; i++) {
        uint64_t off = atomic_load_explicit(&r->roster[i], memory_order_acquire);
        reg_part *p = off ? part_at(h, off) : NULL;
        if (off && p == NULL)
            return shmreg__fail(SHMREG_ECORRUPT, "roster entry %llu is not a participant", (unsigned long long)i);
        if (p == NULL)
            continue;
        memcpy(out->session.bytes, p->sid, SHMREG_ID_BYTES);
        out->uri.ptr = p->data;
        out->uri.len = p->uri_len;
        out->display_name.ptr = p->data + p->uri_len;
        out->display_name.len = p->disp_len;
        out->status = (int)atomic_load(&p->status);
        out->audio_active = (int)atomic_load(&p->audio);
        out->rtp_port = p->rtp_port;
        out->joined_ns = p->joined_ns;
        memset(out->reserved, 0, sizeof out->reserved);
        *cursor = i + 1;
        return 0;
    }
    *cursor = r->max;
    return shmreg__fail_lazy(SHMREG_ENOENT, "no more participants", NULL);
}

int shmreg_session_room(shmreg *h, const shmreg_id *session, shmreg_id *room_out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (session == NULL || room_out == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL session/room_out");
    uint32_t si;
    uint64_t st;
    shm_read_enter(&h->c);
    if ((rc = reg_find(h, session->bytes, &si, &st)) == 0) {
        reg_sess *x = reg_slot(h, si);
        uint64_t w = atomic_load(&x->room);
        reg_room *r = w && REF_IDX(w) < h->room_slots
                          ? room_at(h, atomic_load(&h->rooms[REF_IDX(w)])) : NULL;
        reg_part *p;
        if (r && roster_find(h, r, x->id, &p, NULL) >= 0)
            memcpy(room_out->bytes, r->id, SHMREG_ID_BYTES);
        else
            rc = shmreg__fail(SHMREG_ENOENT, "session is in no room");
    }
    shm_read_leave(&h->c);
    return rc;
}

/* ------------------------------------------------------------ check */

void reg_room_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void (*leak)(void *, uint64_t), void *arg)
{
    const shm_seg *s = &h->c.seg;
    for (uint32_t i = 0; i < h->room_slots; i++) {
        uint64_t off = atomic_load(&h->rooms[i]);
        if (off <= TOMB)
            continue;
        reg_room *r = room_at(h, off);
        if (r == NULL) {
            bad(arg, "room table entry is not a room");
            continue;
        }
        /* A delete whose deleter died half way: finish it. */
        uint64_t st = atomic_load(&r->state);
        if (REG_STATE(st) == REG_DELETED && !shm_tag_alive(s, SHM_TAG(st))) {
            leak(arg, off);
            if (repair && atomic_compare_exchange_strong(&r->state, &st, h->c.tag | REG_DELETED)) {
                room_finish_delete(h, i, r);
                continue;
            }
        }
        mark(arg, off);
        for (uint32_t k = 0; k < r->max; k++) {
            uint64_t p = atomic_load(&r->roster[k]);
            if (p && part_at(h, p) == NULL)
                bad(arg, "room roster entry is not a participant");
            else if (p)
                mark(arg, p);
        }
    }
}

uint32_t reg_room_record_bytes(void)
{
    return (uint32_t)sizeof(reg_room);
}

uint32_t reg_part_record_bytes(void)
{
    return (uint32_t)sizeof(reg_part);
}

/* ------------------------------------------------------------ restore */

/* A room as shmreg-sync stored it, rebuilt with its ID (restore.c). The
 * room block is built complete, roster included, before it is published
 * in the table, so no reader sees it half made; then each participant's
 * session is given its room word. Restore is a cold, one-off step on a
 * fresh registry: a restorer killed half way leaves a room whose
 * sessions may not know it, and the cure is to restore again. */
int reg_room_restore(shmreg *h, const shmreg_room *in, const shmreg_participant *parts, uint32_t n,
                     uint32_t *joined)
{
    *joined = 0;
    if (in->max_participants < 1 || in->max_participants > SHMREG_MAX_ROOM_PARTICIPANTS ||
        in->name.len > SHMREG_MAX_STR || (in->name.len && in->name.ptr == NULL) ||
        in->state < SHMREG_ROOM_CREATING || in->state > SHMREG_ROOM_TERMINATED ||
        n > in->max_participants)
        return shmreg__fail(SHMREG_EINVAL, "bad room to restore (state %d, %u of %u participants)",
                            in->state, n, in->max_participants);
    for (uint32_t k = 0; k < n; k++)
        if (parts[k].uri.len > SHMREG_MAX_STR || parts[k].display_name.len > SHMREG_MAX_STR ||
            parts[k].status < SHMREG_PART_JOINING || parts[k].status > SHMREG_PART_LEFT)
            return shmreg__fail(SHMREG_EINVAL, "bad participant %u to restore", k);
    if (reg_room_count(h) >= h->room_slots / 2)
        return shmreg__fail(SHMREG_EFULL, "room table full (%u rooms)", h->room_slots / 2);
    int rc = 0;
    uint32_t idx;
    reg_room *r;
    uint64_t st;
    shm_read_enter(&h->c);
    if (room_find(h, in->id.bytes, &idx, &r, &st) == 0) {
        rc = shmreg__fail(SHMREG_EEXIST, "a room with this ID exists already");
        goto out;
    }
    uint64_t off = room_block(h, in->id.bytes, in->state, in->created_ns, in->config_gen,
                              in->max_participants, in->name);
    if (off == 0) {
        rc = shmreg__fail(SHMREG_EFULL, "registry heap full (room)");
        goto out;
    }
    r = reg_payload((shm_blk *)(h->c.seg.base + off));
    uint32_t used = 0;
    for (uint32_t k = 0; k < n; k++) {
        const shmreg_participant *q = &parts[k];
        uint32_t si;
        uint64_t sst;
        if (reg_lookup(h, q->session.bytes, &si, &sst) != 0)
            continue; /* its session was not restored */
        uint64_t po = part_block(h, q->session.bytes, q);
        if (po == 0) {
            rc = shmreg__fail(SHMREG_EFULL, "registry heap full (participant)");
            break;
        }
        atomic_store(&r->roster[used++], po);
    }
    if (rc) {
        for (uint32_t i = 0; i < used; i++)
            shm_free(&h->c, atomic_load(&r->roster[i]));
        shm_free(&h->c, off);
        goto out;
    }
    if (room_table_put(h, off, in->id.bytes, &idx) != 0) {
        for (uint32_t i = 0; i < used; i++)
            shm_free(&h->c, atomic_load(&r->roster[i]));
        shm_free(&h->c, off);
        rc = shmreg__fail(SHMREG_EFULL, "room table full");
        goto out;
    }
    /* Published: now each session learns its room. One already in a
     * room (a forced restore over live sessions) leaves this roster. */
    uint64_t mine = room_ref(h, idx);
    for (uint32_t i = 0; i < used; i++) {
        uint64_t po = atomic_load(&r->roster[i]);
        reg_part *p = part_at(h, po);
        uint32_t si;
        uint64_t sst, zero = 0;
        if (p && reg_lookup(h, p->sid, &si, &sst) == 0 &&
            atomic_compare_exchange_strong(&reg_slot(h, si)->room, &zero, mine))
            (*joined)++;
        else if (p)
            roster_remove(h, r, idx, i, po);
    }
    reg_event_room(h, 0, SHMREG_EV_ROOM_RESTORED, in->id.bytes, NULL, 0, in->state);
out:
    shm_read_leave(&h->c);
    return rc;
}
