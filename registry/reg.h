/*
 * reg.h — the registry's private structures: the handle, the session slot
 * and the blocks a session points to. Shared by the registry's .c files
 * only; users see none of it.
 *
 * A session is one fixed 256-byte slot plus immutable blocks:
 *   info   — all string fields and the two RTP ports, published together,
 *            so a reader always gets one consistent version of the group;
 *   sdp[2] — local and remote SDP, each its own block.
 * Changing any of them means building a new block and swapping the slot's
 * offset with one compare-and-swap; the old block is retired, not freed.
 * State, counters and timestamps are words in the slot changed atomically
 * in place.
 */
#ifndef SHMREG_REG_H
#define SHMREG_REG_H

#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "epoch.h"
#include "internal.h"
#include "shmreg.h"

struct shmreg {
    shm_ctx c;
    void *map;
    uint64_t map_size;
    unsigned fork_gen;
    char *path;
    mode_t file_mode;
    gid_t gid;
    pid_t pid;                        /* of the opening process */
    unsigned char rnd[512];           /* random bytes for IDs, drawn 32 IDs at a time */
    unsigned rnd_left;
    void *config_state;
    void (*config_close)(shmreg *h);  /* set with config_state (internal.h) */
    void *event_state;                /* this process's view of the ring */
    struct shmreg *next_open;         /* this process's open handles (registry.c) */
};

/* Session state word: low byte the call state (0 = not yet published),
 * REG_DELETED once deletion has begun; the rest names the deleter. */
#define REG_DELETED 0x80u
#define REG_STATE(w) ((unsigned)((w) & 0xffu))
#define REG_LIVE(w) (REG_STATE(w) >= SHMREG_STATE_INITIATING && REG_STATE(w) <= SHMREG_STATE_FAILED)

typedef struct reg_sess {
    shm_blk hdr;
    _Atomic uint64_t state;
    _Atomic uint32_t next;            /* session index chain: slot + 1 */
    uint32_t pad;
    unsigned char id[SHMREG_ID_BYTES];
    _Atomic uint64_t info;            /* block offsets */
    _Atomic uint64_t sdp[2];
    uint64_t created_ns;
    _Atomic uint64_t updated_ns;
    _Atomic uint64_t counter[SHMREG_CTR_COUNT];
    uint64_t config_gen;
    int32_t owner_pid;
    uint32_t flags;                   /* SHMREG_SESSION_RESTORED (restore.c) */
    _Atomic uint64_t dlg[SHMREG_MAX_DIALOGS_PER_SESSION];
    _Atomic uint64_t room;            /* room block offset, 0 = in no room */
} reg_sess;

_Static_assert(sizeof(reg_sess) <= SHM_SLOT_BYTES, "session slot too big");

/* Info block payload: ports, lengths, then the strings back to back. */
typedef struct reg_info {
    uint16_t port[2];
    uint16_t len[SHMREG_FIELD_STR_COUNT];
    char data[];
} reg_info;

/* SDP block payload. */
typedef struct reg_sdp {
    uint32_t len;
    char data[];
} reg_sdp;

/* Dialog record payload; `next` chains the dialog index bucket. */
typedef struct reg_dlg {
    _Atomic uint64_t next;
    uint64_t hash;
    unsigned char sid[SHMREG_ID_BYTES];
    uint32_t slot;
    uint16_t len[3];                  /* call-id, local tag, remote tag */
    uint16_t pad;
    char key[];
} reg_dlg;

static inline reg_sess *reg_slot(const shmreg *h, uint32_t i)
{
    return (reg_sess *)(h->c.seg.base + shm_slot_off(&h->c.seg, i));
}

/* A fresh random 128-bit ID. getrandom() costs a system call, so bytes
 * are drawn 512 at a time into the handle (a handle is one process's). */
void reg_random_id(shmreg *h, unsigned char out[SHMREG_ID_BYTES]);

static inline void *reg_payload(shm_blk *b)
{
    return (unsigned char *)b + SHM_BLK_HDR;
}

static inline uint32_t reg_id_bucket(const shmreg *h, const unsigned char id[SHMREG_ID_BYTES])
{
    uint64_t x;
    memcpy(&x, id, 8); /* IDs are random: their bits are the hash */
    return (uint32_t)(x & (h->c.seg.buckets - 1));
}

/* Find a live session's slot index by ID, lock-free. Must be called in a
 * read section. Returns 0, *si and *state: the state word as loaded and
 * found live. Build answers from *state, never from a second load: a
 * delete may land in between, and the word would then hold REG_DELETED.
 * Otherwise SHMREG_ENOENT (errmsg set, lazily) or SHMREG_ECORRUPT. */
int reg_find(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state);

/* reg_find() for callers to whom absence is an answer, not a failure:
 * leaves shmreg_errmsg() alone on SHMREG_ENOENT. */
int reg_lookup(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *state);

#ifdef SHMREG_TESTING
/* Called, when set, right after a field swap stamped the slot and before
 * it checks for a delete that raced it: a test deletes the session here
 * to take the "deleted meanwhile" way out for certain. */
extern void (*reg_test_after_swap)(shmreg *h, const unsigned char id[SHMREG_ID_BYTES]);
#endif

/* 0 when `h` is usable and inside a read section, else SHMREG_EFORK,
 * SHMREG_EINVAL or SHMREG_ENOREAD (for calls that hand out pointers). */
int reg_need_read(shmreg *h);

/* Live sessions by state (counts[0] total) and, if asked, their dialogs,
 * by walking the slots. */
void reg_count(shmreg *h, uint64_t counts[SHMREG_STATE_COUNT], uint64_t *dialogs);

/* First slot index >= i that was ever carved (max_sessions: none). */
uint64_t reg_next_carved_slot(const shm_seg *s, uint64_t i);

/* The fields of an info block / an SDP block, bounds-checked against the
 * block: 0 or SHMREG_ECORRUPT. Pointers are into the segment. */
int reg_info_view(shmreg *h, uint64_t off, shmreg_str str[SHMREG_FIELD_STR_COUNT],
                  uint16_t port[2]);
int reg_sdp_view(shmreg *h, uint64_t off, shmreg_str *out);

/* Take an index stripe lock (chains change by single stores, so one taken
 * over from a dead holder needs no repair): 0, or SHMREG_EBUSY / SHMREG_ECORRUPT
 * with a message naming `what` (the lock is then not held). */
int reg_lock(shmreg *h, shm_lock *l, const char *what);

/* Retire every block a deleted slot still owns, unbind its dialogs,
 * unlink it from the index and retire the slot (idempotent: the repair
 * sweep reruns it for deleters that died). */
void reg_finish_delete(shmreg *h, uint32_t si);

/* Unlink dialog record `rec` from its index chain if present; returns 1
 * if it was linked. Takes the bucket's stripe lock. */
int reg_dialog_unlink(shmreg *h, uint64_t rec);

/* Dialog record at block offset `off`, bounds-checked (NULL if bad). */
reg_dlg *reg_dialog_at(shmreg *h, uint64_t off);

/* Unlink slot `si` from the session index if present (stripe lock). */
int reg_index_unlink(shmreg *h, uint32_t si);

/* Take a deleted session out of its room, if it is in one (room.c). */
void reg_room_forget_session(shmreg *h, uint32_t si);

/* Mark every room and participant block (check.c); `bad` names problems,
 * `leak` counts a room whose deleter died; with `repair`, finish that delete. */
void reg_room_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void (*leak)(void *, uint64_t), void *arg);

/* Rooms in use, by walking the room table. */
uint32_t reg_room_count(shmreg *h);

/* The registry's record kinds and their sizes, stored in the segment
 * header at create and compared at attach (shm_record): a segment written
 * by a build whose records differ is refused by name. */
#define REG_NRECORDS 7u
void reg_records(shm_record out[REG_NRECORDS]);
/* Sizes of the records private to room.c and events.c, for that table. */
uint32_t reg_room_record_bytes(void);
uint32_t reg_part_record_bytes(void);
uint32_t reg_event_record_bytes(void);

/* Events (events.c): attach the ring at open, publish after each
 * committed change (never failing the change), fill ring statistics.
 * `time_ns` is the change's own time (the value it stamped on the slot,
 * so both agree), or 0 for "now". It is passed, never kept in the handle:
 * a change that stamps and then fails must not lend its time to the next
 * event. */
int reg_event_init(shmreg *h);
void reg_event_fini(shmreg *h);
void reg_event(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *session,
               int old_state, int new_state, uint32_t which);
void reg_event_room(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *room,
                    const unsigned char *session, int old_state, int new_state);
void reg_event_stats(shmreg *h, shmreg_stats *st);

/* shmreg-sync's status words into *st (sync.c). */
void reg_sync_stats(shmreg *h, shmreg_stats *st);

/* Recreate a room with its ID, name, capacity, times and state, and its
 * roster (restore.c calls it; room.c has the room's layout). Participants
 * whose session is not in the registry are skipped; *joined counts the
 * others. Errors: SHMREG_EEXIST (a live room has the ID), SHMREG_EFULL,
 * SHMREG_EINVAL. */
int reg_room_restore(shmreg *h, const shmreg_room *room, const shmreg_participant *parts,
                     uint32_t n, uint32_t *joined);

#endif
