/*
 * layout.c — what the registry lays in the engine's segment, and binding
 * a handle to it.
 *
 * The engine (shm/) gives a segment of slots, a heap, a ring and named
 * regions of bytes; it does not know what a session is. This file is
 * where the registry says what it needs:
 *   slots      one per session (reg_sess, a 320-byte slot);
 *   region 0   the session index: session ID -> slot;
 *   region 1   the dialog index: (Call-ID, local tag) -> dialog record;
 *   region 2   the room table: open addressing over room block offsets;
 *   region 3   registry-wide words (reg_shared: the config generation,
 *              shmreg-sync's status, the timer wheel's cursor and the
 *              per-state timeout policies);
 *   region 4   the profile index: (profile, value) -> pair record;
 *   region 5   the From-user index: user@host -> session slots;
 *   region 6   the timer wheel: tick -> timer records (REG_WHEEL_BUCKETS);
 *   region 7   the To-user index: user@host -> session slots;
 *   region 8   record hints: slot -> where its record was put last, four
 *              bytes a slot (reg.h says why a read wants them);
 *   user bytes the key of the keyed hash for keys the network chooses.
 * and the record kinds whose sizes the header keeps, so that a segment
 * of another build is refused by name. Everything here runs once, at
 * create or open.
 */
#include <stdio.h>
#include <string.h>

#include "reg.h"

#define DEFAULT_SESSIONS 65536u
#define DEFAULT_HANDLES 256u
#define DEFAULT_HEAP_PER_SESSION 8192u
#define DEFAULT_HEAP_MIN (64ull << 20)
#define DEFAULT_RING_RECORDS 65536u
#define DEFAULT_ROOMS 1024u
_Static_assert(SHMREG_MAX_HANDLES == SHM_MAX_HANDLES, "the public handle ceiling is the engine's");
_Static_assert(SHMREG_MAX_SESSIONS == SHM_MAX_SLOTS, "a session is a slot");
_Static_assert(REG_KEY_BYTES + 4 <= SHM_USER_BYTES, "the key and the node ID fit the header's user bytes");

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t p = 64;
    while (p < n && p < (1u << 30))
        p <<= 1;
    return p;
}

void reg_records(shm_record out[REG_NRECORDS])
{
    const shm_record r[REG_NRECORDS] = {
        {"session slot", sizeof(reg_sess)},
        {"session record header", (uint32_t)offsetof(reg_rec, data)},
        {"outside SDP header", sizeof(reg_sdp)},
        {"dialog record", sizeof(reg_dlg)},
        {"room record", reg_room_record_bytes()},
        {"participant record", reg_part_record_bytes()},
        {"event record", reg_event_record_bytes()},
        {"profile pair", (uint32_t)offsetof(reg_pair, key)},
        {"profile membership", sizeof(reg_member)},
        {"timer record", sizeof(reg_timer)},
        {"variables block header", (uint32_t)offsetof(reg_vars, data)},
    };
    memcpy(out, r, sizeof r);
}

int reg_layout_params(const shmreg_options *o, reg_layout *l)
{
    uint32_t sessions = o->max_sessions ? o->max_sessions : DEFAULT_SESSIONS;
    uint32_t rooms = o->max_rooms ? o->max_rooms : DEFAULT_ROOMS;
    if (sessions < 1 || sessions > SHMREG_MAX_SESSIONS || rooms < 1 || rooms > SHMREG_MAX_ROOMS)
        return shmreg__fail(SHMREG_EINVAL, "capacity out of range (sessions 1..%u, rooms 1..%u)",
                            SHMREG_MAX_SESSIONS, SHMREG_MAX_ROOMS);
    /* Two buckets per session keeps chains short at full capacity; a
     * room table at most half full keeps probes short. */
    uint32_t buckets = pow2_at_least(2ull * sessions);
    l->regions[REGION_SESSIONS] = (shm_region){"session index", shm_index_bytes(buckets)};
    l->regions[REGION_DIALOGS] = (shm_region){"dialog index", shm_index_bytes(buckets)};
    l->regions[REGION_ROOMS] = (shm_region){"room table", (uint64_t)pow2_at_least(2ull * rooms) * 8};
    l->regions[REGION_SHARED] = (shm_region){"registry words", sizeof(reg_shared)};
    l->regions[REGION_PAIRS] = (shm_region){"profile index", shm_index_bytes(pow2_at_least(sessions))};
    l->regions[REGION_USERS] = (shm_region){"From-user index", shm_index_bytes(pow2_at_least(sessions))};
    l->regions[REGION_USERS_TO] = (shm_region){"To-user index", shm_index_bytes(pow2_at_least(sessions))};
    l->regions[REGION_WHEEL] = (shm_region){"timer wheel", shm_index_bytes(REG_WHEEL_BUCKETS)};
    l->regions[REGION_REC_HINTS] = (shm_region){"record hints", (uint64_t)sessions * 4};
    reg_records(l->rec);
    l->p = (shm_params){
        .slots = sessions,
        .max_handles = o->max_handles ? o->max_handles : DEFAULT_HANDLES,
        .ring_records = o->event_records ? o->event_records : DEFAULT_RING_RECORDS,
        .records = l->rec,
        .nrecords = REG_NRECORDS,
        .regions = l->regions,
        .nregions = REG_NREGIONS,
    };
    shm_params *p = &l->p;
    if (o->node_id > SHMREG_NODE_MAX)
        return shmreg__fail(SHMREG_EINVAL, "node_id %u over %u", o->node_id, SHMREG_NODE_MAX);
    for (unsigned k = 0; k < 4; k++) /* little-endian, after the key */
        p->user[REG_NODE_AT + k] = (unsigned char)(o->node_id >> 8 * k);
    if (p->ring_records < 64 || (p->ring_records & (p->ring_records - 1)))
        return shmreg__fail(SHMREG_EINVAL, "event_records %u is not a power of two >= 64",
                            p->ring_records);
    /* The heap is sparse: room costs nothing until used. Small
     * registries still get enough pages for every size class they
     * may meet (each class carves its own pages). */
    p->heap_bytes = o->heap_bytes ? o->heap_bytes : (uint64_t)sessions * DEFAULT_HEAP_PER_SESSION;
    if (o->heap_bytes == 0 && p->heap_bytes < DEFAULT_HEAP_MIN)
        p->heap_bytes = DEFAULT_HEAP_MIN;
    if (p->heap_bytes < (uint64_t)SHM_PAGE_BYTES * 8)
        p->heap_bytes = (uint64_t)SHM_PAGE_BYTES * 8;
    shm_fixed f;
    if (shm_layout(p, &f) != 0)
        return shmreg__fail(SHMREG_EINVAL, "capacity out of range (sessions 1..%u, handles 1..%u, "
                            "heap %u..2^%u bytes, rooms 1..%u)", SHMREG_MAX_SESSIONS, SHM_MAX_HANDLES,
                            SHM_PAGE_BYTES, SHM_MAX_HEAP_SHIFT, SHMREG_MAX_ROOMS);
    return 0;
}

#define WHY(...) ((void)snprintf(why, whylen, __VA_ARGS__))

int reg_layout_bind(shmreg *h, char *why, size_t whylen)
{
    shm_record rec[REG_NRECORDS];
    reg_records(rec);
    shm_seg *s = &h->c.seg;
    int rc = shm_seg_bind(s, h->map, h->map_size, rec, REG_NRECORDS, REG_NREGIONS, why, whylen);
    if (rc != 0)
        return rc == SHM_EVERSION ? SHMREG_EVERSION : SHMREG_ECORRUPT;
    /* The engine checked that the regions lie where their sizes put
     * them; what the sizes must be is ours to check. */
    if (shm_index_bind(&h->sessions, s->region[REGION_SESSIONS].base,
                       s->region[REGION_SESSIONS].bytes) != 0 ||
        shm_index_bind(&h->dialogs, s->region[REGION_DIALOGS].base,
                       s->region[REGION_DIALOGS].bytes) != 0 ||
        h->sessions.buckets != h->dialogs.buckets || h->sessions.buckets < 2ull * s->slots)
        return WHY("index regions of %llu and %llu bytes do not fit %u sessions",
                   (unsigned long long)s->region[REGION_SESSIONS].bytes,
                   (unsigned long long)s->region[REGION_DIALOGS].bytes, s->slots), SHMREG_ECORRUPT;
    uint64_t rb = s->region[REGION_ROOMS].bytes;
    if (rb < 64 * 8 || rb % 8 || ((rb / 8) & (rb / 8 - 1)) || rb / 8 > pow2_at_least(2ull * SHMREG_MAX_ROOMS))
        return WHY("room table region of %llu bytes is not a table", (unsigned long long)rb),
               SHMREG_ECORRUPT;
    if (s->region[REGION_SHARED].bytes != sizeof(reg_shared))
        return WHY("registry words region of %llu bytes, expected %zu",
                   (unsigned long long)s->region[REGION_SHARED].bytes, sizeof(reg_shared)),
               SHMREG_ECORRUPT;
    if (shm_index_bind(&h->pairs, s->region[REGION_PAIRS].base, s->region[REGION_PAIRS].bytes) != 0 ||
        shm_index_bind(&h->users[0], s->region[REGION_USERS].base, s->region[REGION_USERS].bytes) != 0 ||
        shm_index_bind(&h->users[1], s->region[REGION_USERS_TO].base,
                       s->region[REGION_USERS_TO].bytes) != 0 ||
        shm_index_bind(&h->wheel, s->region[REGION_WHEEL].base, s->region[REGION_WHEEL].bytes) != 0 ||
        h->wheel.buckets != REG_WHEEL_BUCKETS || h->users[0].buckets != h->users[1].buckets ||
        h->users[0].buckets > h->sessions.buckets ||
        h->pairs.buckets > h->sessions.buckets)
        return WHY("profile, user or timer index region does not fit %u sessions", s->slots),
               SHMREG_ECORRUPT;
    if (s->region[REGION_REC_HINTS].bytes != (uint64_t)s->slots * 4)
        return WHY("record hints region of %llu bytes does not fit %u sessions",
                   (unsigned long long)s->region[REGION_REC_HINTS].bytes, s->slots), SHMREG_ECORRUPT;
    h->rec_hint = (_Atomic uint32_t *)s->region[REGION_REC_HINTS].base;
    h->rooms = (_Atomic uint64_t *)s->region[REGION_ROOMS].base;
    h->room_slots = (uint32_t)(rb / 8);
    h->shared = (reg_shared *)s->region[REGION_SHARED].base;
    h->key = s->hdr->f.user;
    h->node_id = 0;
    for (unsigned k = 0; k < 4; k++)
        h->node_id |= (uint32_t)h->key[REG_NODE_AT + k] << 8 * k;
    return 0;
}
