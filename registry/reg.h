/*
 * reg.h — the registry's private structures: the handle, the session slot
 * and the blocks a session points to. Shared by the registry's files that
 * work on the segment (internal.h says which); users see none of it.
 *
 * Those files call each other in one direction only, bottom first
 * (tools/check-layers proves it from the objects on every `make test`):
 *   base, state     errors, ID text, the call state machine (no segment)
 *   handle          fork check, engine locks and errors, open handles
 *   table, events   finding and reading sessions; the event ring
 *   dialog, room,   dialogs and rooms, on top of the session table; call
 *   profile, timer, control: profiles, timeouts, the user index
 *   user
 *   session, vars,  changing sessions (which ends their dialogs, room
 *   layout          membership and call control); variables; the
 *                   regions the registry lays
 *   registry, check open/close/stat; the consistency check and repair
 * The config files sit beside them on base and handle (internal.h).
 *
 * A session is one fixed 320-byte slot plus one immutable record block:
 * all string fields, the two RTP ports and both SDPs, back to back, so a
 * reader that has the slot reaches everything else in one more touch (one
 * block, its bytes in address order: the hardware prefetcher streams them
 * as it streams a private table's record). Changing any of them means
 * building a new record and swapping the slot's offset with one
 * compare-and-swap; the old record is retired, not freed. An SDP too big
 * to sit inline beside the rest (the whole over the largest heap class,
 * 80 KiB) lives in a block of its own that the record owns and that goes
 * with it. State, counters and timestamps are words in the slot changed
 * atomically in place.
 *
 * The registry's crash points (shm/crashpoint.h), named file_function_step;
 * t/crashpoint.c stops a process at each and proves the recovery:
 *
 *   point                       left behind              finished by
 *   session_create_slot         slot, state 0            check: session repair
 *   session_create_info         + unreferenced record    check: repair + sweep
 *   session_create_linked       + (a given ID) in index, check: session repair
 *                               unpublished
 *   session_create_dialog       + (bound create) dialog  check: session repair
 *                               record named by the
 *                               unpublished slot
 *   session_create_published    live, not announced      reap: reg_dead_note
 *                               (bound create: + record  check: undone (half_bound)
 *                               named, not linked)
 *   session_swap_swapped        old block unlinked,      intent: reap (an outside
 *                               change unannounced        SDP of its: check sweep);
 *                                                         reap: reg_dead_note
 *   session_transition_final    final, in its profiles   join at the limit: recount
 *                                                         drops it; delete
 *   session_delete_marked       DELETED, nothing undone  check: reg_finish_delete
 *   session_delete_dialogs      dialogs gone, blocks not check: reg_finish_delete
 *   session_delete_blocks       blocks retired, indexed  check: reg_finish_delete
 *   session_delete_unlinked     slot not yet retired     check: reg_finish_delete
 *   dialog_bind_allocated       record unreferenced      check sweep
 *   dialog_bind_referenced      named by session only    check: undone (half_bound)
 *   dialog_unbind_unlinked      named by session only    check: completed (half_bound)
 *   dialog_unbind_claimed       record unreferenced      intent: reap / check
 *   room_create_allocated       room block unreferenced  check sweep
 *   room_delete_marked          room DELETED, roster     check: room repair
 *   room_delete_roster_cleared  room DELETED, in table   check: room repair
 *   room_remove_claimed         room word names remover  next leave / join
 *   room_remove_cleared         participant unreferenced intent: reap / check
 *   room_join_claimed           room word, no roster     next join (stale claim)
 *   room_join_allocated         participant unlisted     check sweep
 *   room_join_published         joined, no event         nothing (the commit)
 *   profile_join_listed         listed, not counted      next taker of the lock: recount
 *   profile_leave_unlisted      unlisted, word not clear delete (or check) clears it
 *   timer_arm_bucketed          timer nobody names       sweep: cancelled, retired
 *   timer_fire_acted            acted, still claimed     next sweep: takes it over, no 2nd fire
 */
#ifndef SHMREG_REG_H
#define SHMREG_REG_H

#include <stdatomic.h>
#include <string.h>

#include "alloc.h"
#include "epoch.h"
#include "index.h"
#include "internal.h"
#include "shmreg.h"

/* Registry-wide words in the segment, in a region of their own
 * (layout.c): each on its own cache line. */
typedef struct reg_shared {
    _Atomic uint64_t config_gen;      /* mirrored configuration generation */
    char pad[56];
    /* shmreg-sync's status (sync.c): its pid, the ring position it has
     * made durable, the time of that commit. Zero in a fresh segment. */
    _Atomic uint64_t sync_pid, sync_pos, sync_commit_ns;
    char pad2[40];
    /* Timeouts (timer.c): the first wheel tick not yet swept (0: the
     * wheel was never used), and the per-state policies. */
    _Atomic uint64_t swept_tick;
    char pad3[56];
    _Atomic uint64_t policy_after[SHMREG_STATE_COUNT];
    _Atomic uint64_t policy_flags[SHMREG_STATE_COUNT];
    _Atomic uint64_t policy_grace[SHMREG_STATE_COUNT];
    /* Many hosts (mirror.c): an operator's pending adoption request (a
     * node, 0: none), and the mirror daemon's status, a seqlock: `seq` is
     * odd while the words are being written. */
    _Atomic uint64_t adopt_request;
    _Atomic uint64_t mirror_seq;
    _Atomic uint64_t mirror[(sizeof(shmreg_mirror_status) + 7) / 8];
} reg_shared;

struct shmreg {
    shm_ctx c;
    /* The registry's regions of the segment, bound at open (layout.c). */
    shm_index sessions;               /* session ID -> slot (offset) */
    shm_index dialogs;                /* dialog key -> dialog record */
    shm_index pairs;                  /* (profile, value) -> pair record */
    shm_index users[2];               /* From / To user@host -> slots */
    shm_index wheel;                  /* timer wheel: tick -> timer records */
    _Atomic uint32_t *rec_hint;       /* slot -> record offset / 16: a prefetch hint */
    _Atomic uint64_t *rooms;          /* room table: block offsets */
    uint32_t room_slots;              /* its entries, a power of two */
    reg_shared *shared;
    const unsigned char *key;         /* SipHash key for network-chosen keys */
    void *map;
    uint64_t map_size;
    unsigned fork_gen;
    char *path;
    mode_t file_mode;
    gid_t gid;
    pid_t pid;                        /* of the opening process */
    unsigned char rnd[4096];          /* random bytes for IDs, drawn 256 IDs at a time */
    unsigned rnd_left;
    void *config_state;
    void (*config_close)(shmreg *h);  /* set with config_state (internal.h) */
    void *event_state;                /* this process's view of the ring */
    uint32_t node_id;                 /* from the header (mirror.c); 0: single host */
    int as_owner;                     /* import/adopt at work: writes pass (mirror.c) */
    struct shmreg *next_open;         /* this process's open handles (handle.c) */
};

/* Session state word: low byte the call state (0 = not yet published),
 * REG_DELETED once deletion has begun; the rest names the deleter. */
#define REG_DELETED 0x80u
#define REG_STATE(w) ((unsigned)((w) & 0xffu))
#define REG_LIVE(w) (REG_STATE(w) >= SHMREG_STATE_INITIATING && REG_STATE(w) <= SHMREG_STATE_FAILED)

typedef struct reg_sess {
    shm_blk hdr;
    _Atomic uint64_t state;
    _Atomic uint64_t next;            /* session index chain: next slot's offset */
    unsigned char id[SHMREG_ID_BYTES];
    _Atomic uint64_t rec;             /* the record block (reg_rec) */
    uint64_t created_ns;
    _Atomic uint64_t updated_ns;
    _Atomic uint64_t counter[SHMREG_CTR_COUNT];
    uint64_t config_gen;
    int32_t owner_pid;
    _Atomic uint32_t flags;           /* SHMREG_SESSION_RESTORED (reg_new.flags), _ADOPTED */
    _Atomic uint64_t dlg[SHMREG_MAX_DIALOGS_PER_SESSION];
    _Atomic uint64_t room;            /* room block offset, 0 = in no room */
    /* Call control (profile.c, timer.c, vars.c, user.c): */
    _Atomic uint64_t prof[SHMREG_MAX_PROFILES_PER_SESSION]; /* membership records */
    _Atomic uint64_t timer;           /* the armed timer record, 0: none */
    _Atomic uint64_t vars;            /* variables block, 0: none */
    /* The user indexes (user.c): links of the From and To chains (next
     * and previous slot numbers), and the 32-bit hashes whose buckets
     * this slot is filed in (From low, To high; 0: in none). */
    _Atomic uint64_t ulink[2];
    _Atomic uint64_t uhash;
    /* Many hosts (mirror.c): the change sequence, bumped after each
     * change and before its event, and the owner node (0: single host). */
    _Atomic uint64_t version;
    _Atomic uint32_t owner_node;
    uint32_t pad_;
} reg_sess;

_Static_assert(sizeof(reg_sess) <= SHM_SLOT_BYTES, "session slot too big");

/* Record block payload: ports and lengths, then the strings back to back,
 * then the SDPs held inline, local first. ext[k] names the block of an SDP
 * kept outside (0: inline); such a block belongs to this record alone
 * (a new record copies it), so it is let go of with the record. */
typedef struct reg_rec {
    uint16_t port[2];
    uint16_t len[SHMREG_FIELD_STR_COUNT];
    uint16_t pad_;
    uint32_t sdp_len[2];
    uint64_t ext[2];
    char data[];
} reg_rec;

/* The payload of an SDP block kept outside its record. */
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

/* Two strings hold the same bytes (an empty one may have a NULL ptr). */
static inline int reg_str_eq(shmreg_str a, shmreg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline reg_sess *reg_slot(const shmreg *h, uint32_t i)
{
    return (reg_sess *)(h->c.seg.base + shm_slot_off(&h->c.seg, i));
}

/* A fresh random 128-bit ID (rooms). getrandom() costs a system call, so
 * bytes are drawn 512 at a time into the handle (a handle is one
 * process's). */
void reg_random_id(shmreg *h, unsigned char out[SHMREG_ID_BYTES]);

/* A fresh session ID for slot `si` (see reg_id_slot). */
void reg_session_id(shmreg *h, uint32_t si, unsigned char out[SHMREG_ID_BYTES]);

static inline void *reg_payload(shm_blk *b)
{
    return (unsigned char *)b + SHM_BLK_HDR;
}

/* A session ID names its slot. It is a version-8 UUID (RFC 9562) whose
 * first 26 bits are the slot index, big-endian, and whose other bits,
 * but the 4 of the version and the 2 of the variant, are 96 random ones:
 *
 *   bytes 0-3   slot << 6 | 6 random bits
 *   byte 6      0x80 | 4 random bits          (version 8)
 *   byte 8      0x80 | 6 random bits          (variant 10)
 *   the rest    random
 *
 * So a lookup goes straight to the slot and compares the whole ID there
 * (a guessed slot gains nothing: 96 bits still have to match), without
 * first missing on an index bucket. Sessions that live in another slot
 * than their ID names (restored from disk, or imported from another host,
 * into a registry that put them elsewhere) are found through the ID
 * index, which holds those and only those (layout 8): a session created
 * here is never linked, so create and delete take no index lock and walk
 * no chain. Which sessions are linked follows from the slot and the ID
 * alone (reg_index_needed), so a delete, a reaper or the check can tell
 * without a flag that a death could leave half set. */
#define REG_ID_SLOT_SHIFT 6u

static inline uint32_t reg_id_slot(const unsigned char id[SHMREG_ID_BYTES])
{
    return ((uint32_t)id[0] << 24 | (uint32_t)id[1] << 16 | (uint32_t)id[2] << 8 | id[3]) >>
           REG_ID_SLOT_SHIFT;
}

/* 1 when the session with `id` in slot `si` belongs in the ID index: it
 * is not in the slot its ID names. */
static inline int reg_index_needed(const unsigned char id[SHMREG_ID_BYTES], uint32_t si)
{
    return reg_id_slot(id) != si;
}

/* Record hints. A read needs a slot (state, ID, counters) and the record
 * block the slot names, two misses in a row when the registry is larger
 * than the cache: the record's address is known only once the slot has
 * arrived. The hint region keeps, for each slot, where its record was
 * put last (offset / 16, four bytes a slot, so the region stays in
 * cache), and a lookup starts fetching the record from it at once,
 * beside the slot: one memory latency instead of two.
 *
 * A hint is only ever an address to prefetch, and a prefetch never
 * faults: it is never trusted, never checked and never needs to be
 * right. Written without order after the record is swapped in; a stale,
 * torn, zero or scribbled hint (a writer killed between the swap and the
 * hint, a deleted session) costs one useless fetch and nothing else. */
static inline void reg_rec_hint_set(shmreg *h, uint32_t si, uint64_t rec)
{
    atomic_store_explicit(&h->rec_hint[si], rec >> 4 <= UINT32_MAX ? (uint32_t)(rec >> 4) : 0,
                          memory_order_relaxed);
}

static inline void reg_rec_hint_fetch(shmreg *h, uint32_t si)
{
    uint64_t rec = (uint64_t)atomic_load_explicit(&h->rec_hint[si], memory_order_relaxed) << 4;
    if (rec < h->c.seg.size)
        __builtin_prefetch(h->c.seg.base + rec);
}

/* The ID index hash: the random bytes 8-15, mixed so that the variant
 * bits (fixed) do not decide the bucket. */
static inline uint64_t reg_id_hash(const unsigned char id[SHMREG_ID_BYTES])
{
    uint64_t x;
    memcpy(&x, id + 8, 8);
    return (x * 0x9e3779b97f4a7c15ull) >> 32;
}

/* The session index's link word of the slot at `off` (shm_link_fn):
 * NULL unless `off` is a slot. */
_Atomic uint64_t *reg_slot_link(const shm_seg *s, uint64_t off);

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

/* The opening of a call that hands out a view of session `id` into
 * `out`: reg_need_read, neither pointer NULL (SHMREG_EINVAL), reg_find. */
int reg_find_in_read(shmreg *h, const shmreg_id *id, const void *out, uint32_t *si, uint64_t *st);

/* Fill *out from slot si, whose state word a find loaded as `st`
 * (table.c): 0 or SHMREG_ECORRUPT. */
int reg_session_view(shmreg *h, uint32_t si, uint64_t st, shmreg_session *out);

/* Live sessions by state (counts[0] total) and, if asked, their dialogs
 * and how many of them are other nodes' copies,
 * by walking the slots. */
void reg_count(shmreg *h, uint64_t counts[SHMREG_STATE_COUNT], uint64_t *dialogs, uint64_t *foreign);

/* First slot index >= i that was ever carved (max_sessions: none). */
uint64_t reg_next_carved_slot(const shm_seg *s, uint64_t i);

/* The contents of a record block, bounds-checked against it (and an
 * outside SDP against its own block, which must be the same slot's):
 * 0 or SHMREG_ECORRUPT. Pointers are into the segment. `sdp` may be NULL. */
int reg_rec_view(shmreg *h, uint64_t off, shmreg_str str[SHMREG_FIELD_STR_COUNT], uint16_t port[2],
                 shmreg_str sdp[2]);

/* The outside SDP blocks of record `off` (0 each: none, or not a record);
 * for letting go of them and for the check's marks. */
void reg_rec_outside(shmreg *h, uint64_t off, uint64_t ext[2]);

/* Take an index stripe lock (chains change by single stores, so one taken
 * over from a dead holder needs no repair): 0, or SHMREG_EBUSY / SHMREG_ECORRUPT
 * with a message naming `what` (the lock is then not held). */
int reg_lock(shmreg *h, shm_lock *l, const char *what);

/* Remember the fork generation `h` is opened in (handle.c). */
void reg_fork_watch(shmreg *h);

/* This process's open handles, so that closing one twice is caught:
 * add at open; remove returns 0 when `h` was not open. */
void reg_open_add(shmreg *h);
int reg_open_remove(shmreg *h);

/* The fields of `f` selected by `mask` within their limits (strings
 * SHMREG_MAX_STR, app data SHMREG_MAX_APPDATA, bytes where a length is):
 * 0 or SHMREG_EINVAL naming the field. */
int reg_fields_check(const shmreg_fields *f, uint32_t mask);

/* A session as it is to begin: create fills it from the caller's fields;
 * a restore (of a session kept elsewhere) from its stored record. */
typedef struct reg_new {
    const unsigned char *id;          /* NULL: a fresh ID naming its slot */
    const shmreg_fields *f;           /* NULL: every field empty */
    shmreg_str sdp[2];
    const uint64_t *counter;          /* SHMREG_CTR_COUNT values; NULL: zeros */
    uint64_t created_ns, updated_ns;  /* 0: now (and the event is stamped now) */
    uint64_t config_gen;
    int32_t owner_pid;
    uint32_t flags;
    uint32_t owner_node;              /* 0: this registry's node */
    uint64_t version;                 /* 0: 1, a new session's */
    int state;                        /* the state it is published in */
    uint32_t event;                   /* and the event that announces it (0: none) */
    const struct reg_dkey *dkey;      /* a dialog it is born bound to (NULL: none) */
    shmreg_id *bound;                 /* SHMREG_EEXIST for dkey: the session it is bound to */
} reg_new;

/* Build a session in a free slot, link it into the ID index and publish
 * it in one release store of its state: nobody sees it half made. The
 * fields must have been checked (reg_fields_check). A given ID that a
 * live session already has: SHMREG_EEXIST. With n->dkey, its dialog is
 * bound under the key's stripe lock, held from before the publication to
 * the link: a key already bound is SHMREG_EEXIST (its session's ID in
 * *n->bound). Also SHMREG_EFULL, SHMREG_EBUSY, SHMREG_ECORRUPT; nothing is
 * left behind on failure. */
int reg_session_insert(shmreg *h, const reg_new *n, shmreg_id *id_out);

/* Retire every block a deleted slot still owns, unbind its dialogs,
 * unlink it from the index and retire the slot (idempotent: the repair
 * sweep reruns it for deleters that died). */
void reg_finish_delete(shmreg *h, uint32_t si);

/* A dialog key to bind: its parts (the remote tag may be empty, never
 * "any") and its keyed hash. The binding steps (dialog.c, "binding"), with
 * the key's stripe lock held (shm_index_lock(&h->dialogs, k->hash)):
 * reg_dialog_absent: 0 when the key is bound to nothing, else
 * SHMREG_EEXIST (the session's ID in *bound when not NULL) or
 * SHMREG_ECORRUPT; reg_dialog_make: a record of the key for slot si,
 * allocated and filled, neither referenced nor linked (0: SHMREG_EFULL,
 * errmsg set); reg_dialog_link_new: link it, the bind's commit. */
typedef struct reg_dkey {
    shmreg_str cid, lt, rt;
    uint64_t hash;
} reg_dkey;
int reg_dialog_key(shmreg *h, shmreg_str call_id, shmreg_str local_tag, shmreg_str remote_tag, reg_dkey *k);
int reg_dialog_absent(shmreg *h, const reg_dkey *k, shmreg_id *bound);
uint64_t reg_dialog_make(shmreg *h, uint32_t si, const unsigned char sid[SHMREG_ID_BYTES], const reg_dkey *k);
void reg_dialog_link_new(shmreg *h, const reg_dkey *k, uint64_t rec);

/* Unlink dialog record `rec` from its index chain if present; returns 1
 * if it was linked. Takes the bucket's stripe lock. */
int reg_dialog_unlink(shmreg *h, uint64_t rec);

/* Dialog record at block offset `off`, bounds-checked (NULL if bad). */
reg_dlg *reg_dialog_at(shmreg *h, uint64_t off);

/* The dialog index's link word of the record at `off` (shm_link_fn). */
_Atomic uint64_t *reg_dialog_link(const shm_seg *s, uint64_t off);

/* Unlink slot `si` from the session index if present (stripe lock);
 * nothing to do for a session in the slot its ID names. */
int reg_index_unlink(shmreg *h, uint32_t si);

/* An engine error (SHM_E*) as the registry's, with errmsg naming `what`:
 * the one place the two sets of codes meet. 0 stays 0. */
int reg_engine_fail(int rc, const char *what);

/* Take a deleted session out of its room, if it is in one (room.c). */
void reg_room_forget_session(shmreg *h, uint32_t si);

/* Mark every room and participant block (check.c); `bad` names problems,
 * `leak` counts a room whose deleter died; with `repair`, finish that delete. */
void reg_room_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void (*leak)(void *, uint64_t), void *arg);

/* Rooms in use, by walking the room table. */
uint32_t reg_room_count(shmreg *h);

/* ------------------------------------------------------------ call control
 *
 * Records of profile.c, timer.c, vars.c and user.c, all heap blocks owned
 * (aux) by their session's slot, like its record. */

/* A (profile, value) pair, in the profile index. Its member list and its
 * count change together, under the pair's stripe lock, so the count is
 * the list's length (a taker of a dead holder's lock recounts). */
typedef struct reg_pair {
    _Atomic uint64_t next;            /* index chain */
    uint64_t hash;
    _Atomic uint64_t members;         /* first membership record */
    _Atomic uint64_t count;
    uint16_t plen, vlen;
    uint32_t pad;
    char key[];                       /* profile, then value */
} reg_pair;

/* A membership: named by one of its session's prof[] words, listed in
 * its pair's member list while `pair` names the pair. */
typedef struct reg_member {
    _Atomic uint64_t next;            /* the pair's member list */
    _Atomic uint64_t pair;            /* 0: on no list (being joined, or left) */
    uint32_t slot, pad;
    unsigned char sid[SHMREG_ID_BYTES];
} reg_member;

/* A timer, in the wheel bucket of tick `tick`. Its state word:
 * ARMED, then CLAIMED | the claimer's tag, then FIRED; or CANCELLED. */
#define REG_WHEEL_BUCKETS 65536u      /* ticks in a lap: about 73 minutes */
#define REG_TIMER_ARMED 1u
#define REG_TIMER_CLAIMED 2u
#define REG_TIMER_FIRED 3u
#define REG_TIMER_CANCELLED 4u
typedef struct reg_timer {
    _Atomic uint64_t next;
    _Atomic uint64_t prev;            /* predecessor on the bucket list; 0: first */
    _Atomic uint64_t state;
    uint64_t deadline_ns, grace_ns, tick;
    uint32_t slot, flags;
    unsigned char sid[SHMREG_ID_BYTES];
} reg_timer;

/* A session's variables: n keys and values back to back. The magic lets
 * a cursor that kept an older block's offset tell it is still one. */
#define REG_VARS_MAGIC 0x53524156u /* "VARS" */
typedef struct reg_vars {
    uint32_t magic, n;
    uint16_t klen[SHMREG_MAX_VARS], vlen[SHMREG_MAX_VARS];
    char data[];
} reg_vars;

/* The payload of the heap block at `off` if it is one (not a slot) with
 * room for `min` bytes; NULL otherwise (0, garbage, a slot). */
static inline void *reg_heap_rec(const shm_seg *s, uint64_t off, uint64_t min)
{
    shm_blk *b = off ? shm_blk_at(s, off) : NULL;
    if (b == NULL || shm_slot_index(s, off) != UINT32_MAX || shm_blk_capacity(b) < min)
        return NULL;
    return reg_payload(b);
}

static inline reg_pair *reg_pair_at(const shm_seg *s, uint64_t off)
{
    reg_pair *p = (reg_pair *)reg_heap_rec(s, off, sizeof(reg_pair));
    if (p == NULL || sizeof(reg_pair) + (uint64_t)p->plen + p->vlen > shm_blk_capacity(shm_blk_at(s, off)))
        return NULL;
    return p;
}

static inline reg_member *reg_member_at(const shm_seg *s, uint64_t off)
{
    return (reg_member *)reg_heap_rec(s, off, sizeof(reg_member));
}

static inline reg_timer *reg_timer_at(const shm_seg *s, uint64_t off)
{
    return (reg_timer *)reg_heap_rec(s, off, sizeof(reg_timer));
}

/* The variables of the block at `off` (0: none), bounds-checked: their
 * count into *n and, when key/val are not NULL, the strings in place.
 * 0 or SHMREG_ECORRUPT (table.c). */
int reg_vars_view(shmreg *h, uint64_t off, uint32_t *n, shmreg_str *key, shmreg_str *val);

/* Retire the heap block at `off` if it is still in use (someone else may
 * have retired it first, which is fine); 0 or not a block: nothing. */
void reg_retire_used(shmreg *h, uint64_t off);

/* Clear the word `ref` if it still names the record at `off`, and retire
 * the record: whoever clears the word retires it (a delete may race an
 * unbind or a leave for it). The intent is announced first, so a death
 * between the two leaves the retire to whoever reaps us. */
void reg_drop_ref(shmreg *h, _Atomic uint64_t *ref, uint64_t off);

/* The pair the k-th membership word of session x names (its member's
 * mirror word), or NULL: no membership there, or one on no list. */
static inline reg_pair *reg_session_pair(const shm_seg *s, reg_sess *x, unsigned k)
{
    reg_member *m = reg_member_at(s, atomic_load(&x->prof[k]));
    return m ? reg_pair_at(s, atomic_load(&m->pair)) : NULL;
}

/* Session x's timer if it is armed (or claimed by a sweep in progress),
 * else NULL: what its views show as its timeout. */
static inline reg_timer *reg_armed_timer(const shm_seg *s, reg_sess *x)
{
    reg_timer *t = reg_timer_at(s, atomic_load_explicit(&x->timer, memory_order_acquire));
    uint64_t st = t ? atomic_load(&t->state) : 0;
    return st == REG_TIMER_ARMED || (st & 0xffu) == REG_TIMER_CLAIMED ? t : NULL;
}

/* The keyed hash (SipHash under the registry's key) of two strings, for
 * keys the network chooses: dialog keys, profile pairs, users. */
uint64_t reg_key_hash(shmreg *h, shmreg_str a, shmreg_str b);

/* The session state machine (table.c), for everybody who moves one. */
extern const reg_machine reg_session_machine;


/* profile.c: end every membership of slot `si` (delete, repair). */
void reg_profiles_forget(shmreg *h, uint32_t si);
/* For the check: is prof[i] of live session x a leftover of a dead joiner
 * or leaver (a mirror naming a pair that does not list it, or a word on
 * no list)? 1 if so, and with `repair` it is put right. */
int reg_profile_member_check(shmreg *h, reg_sess *x, unsigned i, int repair);
/* For the check: mark pairs and memberships, verify (and with repair,
 * rebuild) every count. */
void reg_profile_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                       void (*bad)(void *, const char *), void *arg);

/* timer.c: arm slot `si`'s timer (deadline 0: disarm) replacing whatever
 * it had; apply the policy of the state a session has just entered
 * (a final one disarms); check marking. */
int reg_timer_arm(shmreg *h, uint32_t si, uint64_t deadline_ns, unsigned flags, uint64_t grace_ns);
void reg_timer_policy_apply(shmreg *h, uint32_t si, int state, uint64_t now);
void reg_timer_check(shmreg *h, void (*mark)(void *, uint64_t), void (*bad)(void *, const char *),
                     void *arg);

/* A kind of immutable block a session slot names by one word (its
 * record, its variables), as reg_change_field needs to know it. */
typedef struct reg_block_ops {
    /* Build the new block from the one at `old` and the change `arg`:
     * 0 with *fresh (0: no block), or an error (nothing allocated). */
    int (*build)(shmreg *h, uint32_t si, uint64_t old, const void *arg, uint64_t *fresh);
    /* Free a block nobody was ever shown. */
    void (*discard)(shmreg *h, uint64_t off);
    /* Retire a block that was published, if it is still slot si's:
     * readers may hold it until their read sections end. */
    void (*let_go)(shmreg *h, uint32_t si, uint64_t off);
} reg_block_ops;

/* Change slot si's block word `field` (inside a read section): build a
 * new block from the current one, swap it in by compare-and-swap and let
 * go of the old one; when another writer swaps first, discard ours and
 * build again on top of theirs, so no concurrent change is lost (session.c).
 * 0 with *now, the time stamped on the slot for the caller's event; an
 * error of build; or SHMREG_ENOENT when the session was deleted just
 * after the swap (the new block, published, has been let go of). */
int reg_change_field(shmreg *h, uint32_t si, _Atomic uint64_t *field, const reg_block_ops *ops,
                     const void *arg, uint64_t *now);

/* Retire block `off` if it still belongs to slot `si` (someone else may
 * have taken it first, which is fine): the let_go of blocks that own no
 * others. */
void reg_retire_owned(shmreg *h, uint32_t si, uint64_t off);

/* user.c: link slot si into the user index chains its record's
 * From and To users hash to (update, rewrite); file a session being
 * created, not yet published, by the fields its record was built from
 * (`f` NULL: in no chain); take it out (delete); check the chains. */
int reg_users_sync(shmreg *h, uint32_t si);
int reg_users_file_new(shmreg *h, uint32_t si, const shmreg_fields *f);
void reg_users_forget(shmreg *h, uint32_t si);
void reg_user_check(shmreg *h, int repair, void (*mark)(void *, uint64_t),
                    void (*bad)(void *, const char *), void *arg);

/* The registry's layout in the segment (layout.c). The record kinds and
 * their sizes are stored in the segment header at create and compared at
 * attach (shm_record): a segment written by a build whose records differ
 * is refused by name. */
#define REG_NRECORDS 11u
/* The registry's regions, in segment order (layout.c says what each is). */
enum { REGION_SESSIONS, REGION_DIALOGS, REGION_ROOMS, REGION_SHARED, REGION_PAIRS, REGION_USERS,
       REGION_WHEEL, REGION_USERS_TO, REGION_REC_HINTS, REG_NREGIONS };
#define REG_KEY_BYTES 16u             /* dialog hash key, in the header's user bytes */
void reg_records(shm_record out[REG_NRECORDS]);

/* Everything a create needs: the engine's parameters and the arrays
 * they point into (so not to be copied). */
typedef struct reg_layout {
    shm_params p;
    shm_region regions[REG_NREGIONS];
    shm_record rec[REG_NRECORDS];
} reg_layout;

/* The layout `o` asks for, defaults filled in, checked: 0 or
 * SHMREG_EINVAL. Done before anything touches the file system, so a
 * refused create leaves nothing behind. */
int reg_layout_params(const shmreg_options *o, reg_layout *l);

/* Bind h->map (h->map_size bytes) as a registry segment: the engine's
 * checks, then the registry's regions. 0, SHMREG_EVERSION or
 * SHMREG_ECORRUPT with the reason in `why`. */
int reg_layout_bind(shmreg *h, char *why, size_t whylen);
/* Sizes of the records private to room.c and events.c, for that table. */
uint32_t reg_room_record_bytes(void);
uint32_t reg_part_record_bytes(void);
uint32_t reg_event_record_bytes(void);

/* Events (events.c): attach the ring at open, publish after each
 * committed change (never failing the change), fill ring statistics.
 * `time_ns` is the change's own time (the value it stamped on the slot,
 * so both agree), or 0 for "now". It is passed, never kept in the handle:
 * a change that stamps and then fails must not lend its time to the next
 * event. `version` is the session's version after the change
 * (reg_changed's), carried by the event so that a follower can order and
 * de-duplicate one session's events; 0 for events of no session. */
int reg_event_init(shmreg *h);
void reg_event_fini(shmreg *h);
void reg_event(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *session,
               int old_state, int new_state, uint32_t which, uint64_t version);
/* An update's session_updated (`fields`, when not 0) and sdp_updated
 * (bit k of `sdps`: side k), published together with one claim. */
void reg_event_update(shmreg *h, uint64_t time_ns, const unsigned char *session, uint32_t fields,
                      unsigned sdps, uint64_t version);
void reg_event_room(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *room,
                    const unsigned char *session, int old_state, int new_state);
void reg_event_stats(shmreg *h, shmreg_stats *st);
/* An event with a payload (profile, variable events): `which` and up to
 * SHMREG_EVENT_DATA_MAX bytes of `data`. */
void reg_event_data(shmreg *h, uint32_t type, const unsigned char *session, uint32_t which,
                    const void *data, size_t len);

/* shmreg-sync's status words into *st (sync.c). */
void reg_sync_stats(shmreg *h, shmreg_stats *st);

/* Recreate a room with its ID, name, capacity, times and state, and its
 * roster (restore.c calls it; room.c has the room's layout). Participants
 * whose session is not in the registry are skipped; *joined counts the
 * others. Errors: SHMREG_EEXIST (a live room has the ID), SHMREG_EFULL,
 * SHMREG_EINVAL. */
int reg_room_restore(shmreg *h, const shmreg_room *room, const shmreg_participant *parts,
                     uint32_t n, uint32_t *joined);

/* ------------------------------------------------------------ many hosts (mirror.c; the gate and the count in table.c) */

/* Where the node ID sits in the header's user bytes (after the key). */
#define REG_NODE_AT REG_KEY_BYTES

/* 1 when `owner` is another node than this registry's. */
static inline int reg_foreign_owner(const shmreg *h, uint32_t owner)
{
    return owner != 0 && owner != h->node_id;
}

/* An owner no session of this registry can have (a damaged slot): a node
 * ID over SHMREG_NODE_MAX, or any other node in a registry without node
 * IDs, which imports nothing. */
static inline int reg_owner_impossible(const shmreg *h, uint32_t owner)
{
    return owner > SHMREG_NODE_MAX || (h->node_id == 0 && owner != 0);
}

/* reg_find for a call that changes the session: SHMREG_EFOREIGN when it
 * is another node's copy (unless an import or adoption is at work). */
int reg_find_own(shmreg *h, const unsigned char id[SHMREG_ID_BYTES], uint32_t *si, uint64_t *st);
/* The same check for a slot already found: 0 or SHMREG_EFOREIGN. */
int reg_own_slot(shmreg *h, uint32_t si);

/* Changes a process was killed in. Every change passes reg_find_own (or,
 * for a create, reg_session_insert), which notes the slot in the handle
 * (shm_note_set) before anything is changed; the note ends with the read
 * section, after the change's version and event. A process killed in
 * between may have made its change visible without them, and then the
 * persistence and mirror daemons, which follow events, would never learn
 * of it. So whoever reaps the dead handle calls reg_dead_note with the
 * note: for a live session of this node, the version moves on and
 * session_updated (every field bit: what changed is not known) is
 * published; for a session left deleted, session_deleted. A change that
 * had not begun, or had been announced, is announced again: harmless to
 * a follower, which reads the session as it is. */
void reg_dead_note(shm_ctx *c, uint64_t note);

/* A change to slot si is made: move its version on, before the change's
 * event is published (a reader that sees the event sees the version).
 * Returns the new version, which the change's events carry. */
static inline uint64_t reg_changed(shmreg *h, uint32_t si)
{
    return atomic_fetch_add_explicit(&reg_slot(h, si)->version, 1, memory_order_release) + 1;
}

/* Replace slot si's whole record (every field, both SDPs), refiling its
 * users (session.c). 0 or the record's errors. */
int reg_session_rewrite(shmreg *h, uint32_t si, const shmreg_fields *f, const shmreg_str sdp[2]);

/* 0 when this process holds the registry's sync claim, else
 * SHMREG_EPERM (sync.c). */
int reg_claim_held(shmreg *h);

/* The fields of view `s`, checked as the API checks them (restore.c). */
int reg_fields_of(const shmreg_session *s, shmreg_fields *f);

#endif
