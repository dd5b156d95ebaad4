/*
 * shmreg_sync.h — persistence behind the registry and restore from it:
 * the record format, the sync directory, the daemon's status words, and
 * the calls that rebuild sessions, dialogs and rooms with their IDs.
 * Included by shmreg.h; do not include it alone.
 *
 * Why it looks like this. A registry lives in shared memory, so a reboot
 * loses it. shmreg-sync (tools/shmreg-sync, a daemon) follows the event
 * ring and writes the registry behind into an LMDB environment on disk, a
 * "sync directory"; a new registry is rebuilt from it with shmreg_restore().
 * Workers never wait for the daemon: it reads what they wrote in place,
 * after the fact, and the only thing it writes into the segment is its own
 * status (three words no worker reads on its hot path).
 *
 * The record format (shmreg_session_encode / shmreg_room_encode) is the
 * contract between whatever writes a sync copy (the LMDB sink today, other
 * sinks later) and restore: one self-contained, versioned, checksummed
 * byte string per session (with its dialogs) and per room (with its
 * roster), which decodes back into the very structs the read API fills.
 */
#ifndef SHMREG_SYNC_H
#define SHMREG_SYNC_H

#ifndef SHMREG_H
#error "include shmreg.h, not shmreg_sync.h"
#endif

/* ---------------------------------------------------------------- restored sessions */

/* shmreg_session.flags: the session was rebuilt by shmreg_session_restore()
 * (readable in place by every process; never set on a created session).
 * An application re-arms its timers, keepalives and accounting for it. */
#define SHMREG_SESSION_RESTORED 0x1u

/* Recreate session `s->id` with every field of `s`: state (1..9), the
 * string fields and ports, both SDPs, counters, created_ns, updated_ns,
 * owner_pid and config_gen, as a shmreg_session view or
 * shmreg_session_decode() gives them (s->ndialogs and s->flags are
 * ignored: bind its dialogs with shmreg_dialog_bind() afterwards). The
 * session gets SHMREG_SESSION_RESTORED and becomes visible in one atomic
 * step, complete; a SHMREG_EV_SESSION_RESTORED event (session, new_state)
 * is published. `flags` must be 0 (reserved). Derived counts (states,
 * dialogs) follow from the slot as for any session.
 * Errors: SHMREG_EINVAL (NULL, zero ID, state not 1..9, a string over its
 * limit, an SDP over SHMREG_MAX_SDP), SHMREG_EEXIST (a session with this ID
 * is live: nothing changed), SHMREG_EFULL (table or heap full: nothing is
 * left behind), SHMREG_EBUSY, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_restore(shmreg *h, const shmreg_session *s, unsigned flags);

/* Recreate room `room->id` (its name, max_participants, state 1..5,
 * created_ns, config_gen; room->participants is ignored) with the
 * participants parts[0..n-1] (session, URI, display name, status,
 * audio_active, rtp_port, joined_ns). A participant whose session is not
 * live in the registry, or is already in a room, is left out; *joined
 * (may be NULL) receives how many were put in the roster. The room
 * appears complete, roster included; a SHMREG_EV_ROOM_RESTORED event
 * (room, new_state) is published. Participant counts are the roster's.
 * Errors: SHMREG_EINVAL (NULL, bad state, status or capacity, n over
 * max_participants, a string over SHMREG_MAX_STR), SHMREG_EEXIST (a live
 * room has the ID), SHMREG_EFULL (room table or heap), SHMREG_EFORK. */
int shmreg_room_restore(shmreg *h, const shmreg_room *room, const shmreg_participant *parts,
                        uint32_t n, uint32_t *joined);

/* ---------------------------------------------------------------- records
 *
 * A session record holds every field of a shmreg_session (not ndialogs,
 * which follows from the dialogs, nor flags) and up to
 * SHMREG_MAX_DIALOGS_PER_SESSION dialog keys; a room record holds a
 * shmreg_room (not its derived participant count) and its roster. Both
 * start with a magic and a format version and end with a 64-bit checksum
 * over everything before it; numbers are little-endian. Decoding checks
 * every length against the buffer, the limits of the API and the
 * checksum, so a damaged record is refused (SHMREG_ECORRUPT), never
 * misread. */

/* The largest session record (every string, both SDPs, 8 dialogs, and
 * the call control part at their limits), for a static buffer. */
#define SHMREG_SESSION_RECORD_MAX \
    (256u + 8u * SHMREG_MAX_STR + SHMREG_MAX_APPDATA + 2u * SHMREG_MAX_SDP + \
     SHMREG_MAX_DIALOGS_PER_SESSION * (8u + 3u * SHMREG_MAX_STR) + 64u + \
     SHMREG_MAX_PROFILES_PER_SESSION * (8u + SHMREG_MAX_PROFILE_NAME + SHMREG_MAX_PROFILE_VALUE) + \
     SHMREG_MAX_VARS * (8u + SHMREG_MAX_VAR_KEY + SHMREG_MAX_VAR_VALUE))

/* Encode session `s` and its dialogs d[0..nd-1] (nd at most
 * SHMREG_MAX_DIALOGS_PER_SESSION) into buf[0..cap). *len receives the
 * record's size, also when it does not fit. Copies; allocates nothing.
 * Errors: SHMREG_EINVAL (NULL, nd too big, a length over the API's
 * limits), SHMREG_EFULL (cap < *len: nothing useful written). */
int shmreg_session_encode(const shmreg_session *s, const shmreg_dialog *d, unsigned nd,
                          void *buf, size_t cap, size_t *len);

/* Decode a session record. Fills *s (ndialogs = *nd, flags 0, reserved
 * and spare capacity zero) and d[0..*nd-1] (`d` has room for
 * SHMREG_MAX_DIALOGS_PER_SESSION); every shmreg_str points into `buf`
 * and is valid as long as `buf` is. Errors: SHMREG_EINVAL (NULL),
 * SHMREG_EVERSION (not a session record of this format),
 * SHMREG_ECORRUPT (truncated, a length past the buffer or a limit, bad
 * checksum). */
int shmreg_session_decode(const void *buf, size_t len, shmreg_session *s, shmreg_dialog *d,
                          unsigned *nd);

/* The same, carrying the session's call control `c` too (memberships,
 * variables, timeout; NULL: none): the record then has format 2, which
 * shmreg_session_decode_control() reads back. Errors as for encode, and
 * SHMREG_EINVAL for a control part over its limits. */
int shmreg_session_encode_control(const shmreg_session *s, const shmreg_session_control *c,
                                  const shmreg_dialog *d, unsigned nd, void *buf, size_t cap,
                                  size_t *len);

/* Decode a session record of either format; *c (may be NULL) receives its
 * call control part (all zero for a format-1 record), strings into `buf`.
 * Errors as for shmreg_session_decode. */
int shmreg_session_decode_control(const void *buf, size_t len, shmreg_session *s,
                                  shmreg_session_control *c, shmreg_dialog *d, unsigned *nd);

/* Encode room `r` with participants p[0..n-1] (n at most
 * r->max_participants) into buf[0..cap); *len as for sessions. A room's
 * record is at most 64 + name + n * (64 + URI + display name) bytes.
 * Errors: SHMREG_EINVAL, SHMREG_EFULL. */
int shmreg_room_encode(const shmreg_room *r, const shmreg_participant *p, uint32_t n,
                       void *buf, size_t cap, size_t *len);

/* Decode a room record: *r (participants = *n) and p[0..*n-1]. `p` has
 * room for `cap` participants; size it by SHMREG_MAX_ROOM_PARTICIPANTS
 * (a record holds at most r->max_participants). A record with more than
 * `cap` fails SHMREG_EFULL with their number in *n. Strings point into
 * `buf`. Errors: SHMREG_EINVAL, SHMREG_EVERSION, SHMREG_ECORRUPT,
 * SHMREG_EFULL. */
int shmreg_room_decode(const void *buf, size_t len, shmreg_room *r, shmreg_participant *p,
                       uint32_t cap, uint32_t *n);

/* ---------------------------------------------------------------- the sync directory
 *
 * A sync directory is an LMDB environment (data.mdb, lock.mdb) with three
 * named databases, plus the daemon's lock file:
 *   "meta"     "format"    -> SHMREG_SYNC_FORMAT (the marker: a directory
 *                             without it is not a sync directory)
 *              "ring_pos"  -> 8 bytes: every event of the registry's ring
 *                             with a lower sequence number is in this
 *                             state (stored in the same transaction)
 *              "commit_ns" -> 8 bytes: when that transaction was made
 *   "sessions" 16-byte session ID -> session record
 *   "rooms"    16-byte room ID    -> room record
 *   SHMREG_SYNC_LOCKFILE: flock()ed by the daemon that writes the
 *                             directory, and holding its pid as text.
 * Every LMDB transaction is one consistent state of the registry. */
#define SHMREG_SYNC_FORMAT "shmreg-sync 1"
#define SHMREG_SYNC_DB_META "meta"
#define SHMREG_SYNC_DB_SESSIONS "sessions"
#define SHMREG_SYNC_DB_ROOMS "rooms"
#define SHMREG_SYNC_LOCKFILE "shmreg-sync.lock"

typedef struct shmreg_sync_info {
    uint64_t ring_pos;        /* durable ring position stored with the data */
    uint64_t commit_ns;       /* time of the last commit (0: none yet) */
    uint64_t sessions, rooms; /* records stored */
    uint64_t map_bytes;       /* LMDB map size */
    uint64_t used_bytes;      /* pages in use * page size */
    int32_t daemon_pid;       /* pid in the lock file while a daemon holds it; 0 */
    uint32_t pad;
    uint64_t reserved[8];     /* reserved for later fields (see "growth") */
} shmreg_sync_info;

/* Read the state of sync directory `dir` without changing it (read-only
 * LMDB transaction; a running daemon goes on). Errors: SHMREG_EINVAL
 * (NULL), SHMREG_ENOENT (no such directory), SHMREG_EVERSION (not a sync
 * directory: no LMDB environment, no format marker, another format),
 * SHMREG_ECORRUPT (LMDB refuses the environment), SHMREG_EPERM, SHMREG_ESYS. */
int shmreg_sync_dir_info(const char *dir, shmreg_sync_info *info);

/* ---------------------------------------------------------------- restore */

/* What comes back. By default confirmed calls (Active, OnHold,
 * Transferring) and their dialogs; SHMREG_RESTORE_ALL adds early ones
 * (Initiating, Ringing), Terminating ones and finished ones, these in
 * their final state (a finished call is never restored as live). Rooms
 * come back with the participants whose session came back. */
#define SHMREG_RESTORE_ALL   0x1u
/* Restore into a registry that already has sessions (those keep theirs;
 * a stored session whose ID is live is counted in `existing`). */
#define SHMREG_RESTORE_FORCE 0x2u

/* 1 when a session in `state` comes back under `flags`, else 0. Cannot fail. */
int shmreg_restore_wanted(int state, unsigned flags);

typedef struct shmreg_restore_report {
    uint64_t sessions;        /* restored */
    uint64_t skipped;         /* stored, not restored by the policy */
    uint64_t existing;        /* stored, ID already live (with FORCE) */
    uint64_t dialogs;         /* dialogs bound */
    uint64_t dialogs_failed;  /* dialog keys already bound elsewhere */
    uint64_t rooms, participants;
    uint64_t ring_pos, commit_ns; /* of the sync directory's state */
    uint64_t expired;         /* stored with a deadline already past: back as
                               * Failed (so only with SHMREG_RESTORE_ALL) */
    uint64_t profiles;        /* memberships restored */
    uint64_t reserved[6];     /* reserved for later fields (see "growth") */
} shmreg_restore_report;

/* Rebuild the registry of `h` from sync directory `dir` (read-only: a
 * daemon may keep writing it). Every record is read and checked first,
 * in one LMDB read transaction; only if all are sound, and the registry
 * has room for every session the policy takes, are sessions restored
 * (shmreg_session_restore: IDs and every field unchanged, flag and
 * event), then their dialogs, then rooms and their rosters. `report` may
 * be NULL. Refused with SHMREG_EEXIST on a registry that has sessions,
 * unless SHMREG_RESTORE_FORCE. Errors: SHMREG_EINVAL, SHMREG_ENOENT,
 * SHMREG_EVERSION, SHMREG_ECORRUPT (a damaged record: nothing restored),
 * SHMREG_EEXIST, SHMREG_EFULL (the registry is too small: nothing
 * restored; or the heap filled up midway: what was restored stays and the
 * report says how much), SHMREG_EPERM, SHMREG_ESYS, SHMREG_ENOMEM,
 * SHMREG_EFORK. */
int shmreg_restore(shmreg *h, const char *dir, unsigned flags, shmreg_restore_report *report);

/* ---------------------------------------------------------------- daemon status
 *
 * Three words in the segment say which shmreg-sync follows this registry,
 * how far it has made the ring durable and when: shmreg_stat() shows them
 * to every process (sync_* fields). */

/* Claim the registry for this process's daemon: fails with SHMREG_EBUSY
 * (naming the pid) while another live process holds the claim; a dead
 * holder's claim is taken over. Errors: SHMREG_EBUSY, SHMREG_EFORK,
 * SHMREG_EINVAL. */
int shmreg_sync_claim(shmreg *h);

/* Report that every event with seq < `pos` is durable as of `commit_ns`.
 * Errors: SHMREG_EPERM (this process does not hold the claim: another
 * daemon took it over), SHMREG_EFORK, SHMREG_EINVAL. */
int shmreg_sync_report(shmreg *h, uint64_t pos, uint64_t commit_ns);

/* Give the claim up (a no-op when not held). Errors: SHMREG_EFORK, SHMREG_EINVAL. */
int shmreg_sync_release(shmreg *h);

/* ---------------------------------------------------------------- many hosts
 *
 * Registries on several hosts mirror each other through Redis
 * (shmreg-sync --redis, tools/shmreg-sync.1): each is created with its own
 * node ID (shmreg_options.node_id), and every session belongs to one
 * owner node. A session a worker creates is its registry's own; the
 * daemon writes its owner's sessions to Redis and brings the other
 * nodes' sessions in as foreign copies, which workers find and read in
 * place like any other, but cannot change: every call that changes a
 * session (update, SDP, transition, counters, delete, dialogs, profiles,
 * variables, timeouts, rooms) fails on a foreign copy with
 * SHMREG_EFOREIGN and changes nothing. Only the owner changes a session,
 * so a change has one writer, and its version (shmreg_session.version,
 * bumped after each change is made and before its event is published)
 * orders the copies: an import never replaces a newer version with an
 * older one.
 *
 * A foreign copy holds the owner's fields, SDPs, state, counters, times,
 * dialogs and variables. Memberships and timeouts act only where the call
 * is owned (a timer firing on two hosts ends a call twice): a copy has
 * none; they are given to it when it is adopted. When a node dies, one
 * surviving node adopts its sessions (shmreg_session_adopt): they become
 * its own, marked SHMREG_SESSION_ADOPTED and announced by an event, like
 * restored ones, so the application re-arms what it keeps per call. */

#define SHMREG_NODE_MAX 65535u      /* node IDs are 1..SHMREG_NODE_MAX */
/* shmreg_session.flags: owned by another node: a read-only copy (derived
 * from owner_node and this registry's node ID). */
#define SHMREG_SESSION_FOREIGN 0x2u
/* shmreg_session.flags: adopted from a dead node (shmreg_session_adopt). */
#define SHMREG_SESSION_ADOPTED 0x4u

/* Make or bring up to date the copy of session `s->id` that node `node`
 * owns, at its owner's `version`, with every field of `s` (as for
 * shmreg_session_restore; its state may be any of 1..9, and need not be
 * reachable from the copy's state), the variables of `c` (NULL: none; its
 * memberships and timeout are ignored) and exactly the dialogs d[0..nd-1]
 * (keys bound here to another session are left out). A new copy appears
 * complete in one step; an existing one has its record, state, counters,
 * dialogs and variables replaced, each part in one atomic step, then its
 * version. A copy another node owned (the session was adopted) passes to
 * `node`. One SHMREG_EV_SESSION_IMPORTED event (session, new_state) is
 * published. Call it from one thread per registry (the daemon does).
 * Errors: SHMREG_EINVAL (NULL, this registry has no node ID, `node` is 0,
 * over SHMREG_NODE_MAX or this node, a field as for restore),
 * SHMREG_EEXIST (the session is this node's own: nothing changed),
 * SHMREG_ECONFLICT (the copy here has a newer version: nothing changed),
 * SHMREG_EFULL (table or heap full: a new copy leaves nothing behind; an
 * existing one may be left with its old variables or dialogs), SHMREG_EBUSY,
 * SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_import(shmreg *h, uint32_t node, uint64_t version, const shmreg_session *s,
                          const shmreg_session_control *c, const shmreg_dialog *d, unsigned nd);

/* Delete the copy of session `id` that node `node` owns (its owner deleted
 * it), dialogs included; SHMREG_EV_SESSION_DELETED is published. Errors:
 * SHMREG_EINVAL, SHMREG_ENOENT (no such live session), SHMREG_ECONFLICT
 * (the session is owned by another node, this one included, e.g. since it
 * was adopted: nothing changed), SHMREG_EFORK. */
int shmreg_session_import_delete(shmreg *h, uint32_t node, const shmreg_id *id);

/* Make the foreign copy of session `id` this node's own: owner_node
 * becomes this registry's node ID, SHMREG_SESSION_ADOPTED is set, the
 * version moves on, the memberships of `c` are joined (no limit applies:
 * the calls exist) and its timeout armed unless the call is over (`c` may
 * be NULL: none), then one SHMREG_EV_SESSION_ADOPTED (session, new_state)
 * is published. Whoever adopts must have made sure no other node does
 * (shmreg-sync does it with an atomic step in Redis); the copy should be
 * brought up to date with shmreg_session_import first.
 * Errors: SHMREG_EINVAL, SHMREG_ENOENT, SHMREG_EEXIST (already this node's),
 * SHMREG_EFULL (a membership or the timer found no room: the session is
 * adopted, without it), SHMREG_EBUSY, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_adopt(shmreg *h, const shmreg_id *id, const shmreg_session_control *c);

/* The other side of an adoption: this node learns that node `to` adopted
 * its sessions (its lease ran out while it lived: a pause, a partition, a
 * Redis failover longer than the lease), so every session it owns becomes
 * a foreign copy owned by `to`: from then on its workers get
 * SHMREG_EFOREIGN instead of changing calls another node now owns. Their
 * timeouts are disarmed and memberships dropped (copies hold none); the
 * versions stay. *count (may be NULL) receives how many were handed over;
 * one SHMREG_EV_SESSION_IMPORTED (session, new_state) each. A change a
 * worker was making at that moment may still complete on the copy.
 * Errors: SHMREG_EINVAL (no node ID, `to` not another node), SHMREG_EFORK. */
int shmreg_node_cede(shmreg *h, uint32_t to, uint64_t *count);

/* Ask the mirror daemon to adopt node `node`'s sessions now, whether or
 * not its lease has run out (an operator who knows the host is dead:
 * `shmregctl node adopt`). 0 withdraws a request not yet taken. The
 * daemon still takes the node in one atomic step in Redis, so two hosts
 * asked at once cannot both win. Errors: SHMREG_EINVAL (this registry has
 * no node ID, `node` over SHMREG_NODE_MAX or this node), SHMREG_EFORK. */
int shmreg_node_adopt_request(shmreg *h, uint32_t node);

/* For the daemon that holds the sync claim: take the pending request (its
 * node in *node, cleared in the segment), or *node = 0 when none.
 * Errors: SHMREG_EINVAL, SHMREG_EPERM (no claim held), SHMREG_EFORK. */
int shmreg_node_adopt_take(shmreg *h, uint32_t *node);

/* What the mirror daemon says of itself and of each other node it
 * follows, shown by `shmregctl stat` and `metrics`. */
#define SHMREG_MIRROR_PEERS_MAX 16u
enum {
    SHMREG_MIRROR_OFF = 0,   /* no mirror daemon has reported */
    SHMREG_MIRROR_UP = 1,    /* Redis answers; pushes go through */
    SHMREG_MIRROR_DOWN = 2   /* Redis unreachable or failing: behind */
};
enum {
    SHMREG_PEER_SYNCING = 1, /* copying its records (start, gap, lap) */
    SHMREG_PEER_UP = 2,      /* following its change stream */
    SHMREG_PEER_DEAD = 3,    /* its lease ran out; not (yet) adopted */
    SHMREG_PEER_ADOPTED = 4  /* its sessions were adopted (by adopted_by) */
};
typedef struct shmreg_mirror_peer {
    uint32_t node, state;    /* SHMREG_PEER_* */
    uint32_t adopted_by;     /* node that adopted it (state ADOPTED) */
    uint32_t pad_;
    uint64_t copies;         /* its sessions held here as foreign copies */
    uint64_t lag_ns;         /* its last change applied here: change to import */
    uint64_t applied_ns;     /* when that was */
    uint64_t reserved[4];    /* reserved for later fields (see "growth") */
} shmreg_mirror_peer;
typedef struct shmreg_mirror_status {
    uint32_t state;          /* SHMREG_MIRROR_* */
    uint32_t npeers;
    uint64_t pushed_seq;     /* every change in an event with seq < it is in Redis */
    uint64_t push_ns;        /* time of the last successful push (0: none) */
    uint64_t backlog;        /* sessions waiting to be pushed */
    uint64_t pushed, imported, deleted, adopted, stale, errors; /* totals since start */
    uint64_t reported_ns;    /* when the daemon wrote this */
    char last_error[192];    /* NUL-terminated; "" none */
    shmreg_mirror_peer peer[SHMREG_MIRROR_PEERS_MAX];
    uint64_t reserved[8];    /* reserved for later fields (see "growth") */
} shmreg_mirror_status;

/* For the daemon that holds the sync claim: publish its status (copied).
 * Errors: SHMREG_EINVAL, SHMREG_EPERM (no claim held), SHMREG_EFORK. */
int shmreg_mirror_report(shmreg *h, const shmreg_mirror_status *st);

/* Read the mirror status as last reported (a consistent copy; all zero,
 * state SHMREG_MIRROR_OFF, when none was). `pushed_seq` is as reported;
 * the caller compares it with shmreg_stats.events_published for the lag.
 * Errors: SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_mirror_get(shmreg *h, shmreg_mirror_status *st);

#endif
