/*
 * shmreg.h — the one header users of shmreg include. It is the contract.
 *
 * shmreg keeps one registry of call sessions and SIP dialogs in a shared
 * memory segment that every worker process of a prefork server maps. Workers
 * read session fields and SDP bodies *in place*: the strings this API hands
 * out point straight into the shared mapping. Nothing is copied on the read
 * path, and no lock is taken by a reader.
 *
 * How pointers stay valid. A reader brackets its reads with
 * `shmreg_read_begin()` / `shmreg_read_end()`. Every pointer returned inside that
 * section (shmreg_str.ptr of a session view, an SDP, a dialog key) stays valid
 * and its bytes stay unchanged until `shmreg_read_end()`, even while other
 * processes replace or delete what it points to: writers never modify
 * published bytes, they build a new copy and publish its offset with one
 * atomic store; the old copy is reused only after every read section that
 * could have seen it has ended (epoch-based reclamation across processes).
 * Calls that return pointers fail with SHMREG_ENOREAD outside a section.
 * Keep sections short: a section held open delays reuse of retired memory,
 * which grows by what writers replace meanwhile and is reused again once
 * the section ends or its process dies. It does not slow writers down:
 * reclamation costs the same per operation however much is waiting. Only
 * an allocation that finds the heap full waits for readers, at most 10 ms
 * (see shmreg_session_create).
 *
 * Crash safety. A process may be killed at any instruction. Locks are words
 * in the segment naming their holder's handle: a dead holder's lock is taken
 * over by the next taker, which repairs what it guards (so is a lock word
 * scribbled into naming nobody), and no lock is waited for longer than 2 s
 * (then SHMREG_EBUSY). Every structure is published by single atomic
 * stores, and the handles of dead processes are detected (pid gone, or
 * reused: process start time differs) and cleared.
 * At worst a crash leaks the blocks the dead process was building;
 * `shmreg_check()` with SHMREG_CHECK_REPAIR reclaims them.
 *
 * Conventions. Functions return 0 or a negative SHMREG_E* code;
 * `shmreg_strerror()` names it and `shmreg_errmsg()` gives the detail of the
 * calling thread's last failure. Every non-zero return that is not a count
 * sets that detail, SHMREG_ENOENT from a lookup or at the end of an
 * iteration included; so does a dump or list call that returns the
 * non-zero value of the caller's callback (as is). No function returns a
 * yes/no answer and an error code in one int: answers go to out-parameters,
 * and the predicates that return 1/0 (state_allowed, config_stale, ...)
 * cannot fail. Positive returns are counts (shmreg_poll, shmreg_reap). A
 * handle used in a child after fork() returns SHMREG_EFORK: children open
 * their own. A damaged segment gives SHMREG_ECORRUPT (never a crash, a
 * hang or a write outside the block being written: fuzz/scribble.c holds
 * the library to it); a call that needs a lock some live process has held
 * for over 2 s fails with SHMREG_EBUSY instead of waiting on. Strings are
 * {ptr, len}, not NUL-terminated. Times are CLOCK_REALTIME nanoseconds.
 *
 * Threads. A handle belongs to one process and is used by one thread at a
 * time; so are what belongs to it: its read section, its subscriptions
 * (shmreg_sub) and its config views. Threads that work at once open one
 * handle each: any number of handles of one process may then run any calls
 * concurrently, on the same sessions, dialogs, rooms and configs, as
 * separate processes may (what they share in the process, the mapping and
 * the LMDB environment of the configs, is synchronized inside). The error
 * detail (`shmreg_errmsg()`) is per thread. Calls that take no handle
 * (strerror, names and parsers of states, events and IDs, config text
 * parsing, documents) touch no shared state and may run in any thread; a
 * document, like a handle, is used by one thread at a time. t/threads.c
 * holds the library to this, under ThreadSanitizer too (make VARIANT=tsan).
 */
#ifndef SHMREG_H
#define SHMREG_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version
 *
 * Semantic versioning of the binary interface (see README "ABI policy"):
 * PATCH fixes bugs and changes no declaration; MINOR adds functions,
 * constants or fields carved from a struct's reserved tail, and every
 * program built against an older MINOR of the same MAJOR keeps working;
 * MAJOR (the SONAME, libshmreg.so.MAJOR) changes only when an existing
 * declaration, struct size or behaviour has to break. The segment format
 * is versioned separately (SHMREG_EVERSION names the difference). */
#define SHMREG_VERSION_MAJOR 1
#define SHMREG_VERSION_MINOR 0
#define SHMREG_VERSION_PATCH 0
#define SHMREG_VERSION_NUM(a, b, c) (((a) << 24) | ((b) << 16) | (c))
#define SHMREG_VERSION \
    SHMREG_VERSION_NUM(SHMREG_VERSION_MAJOR, SHMREG_VERSION_MINOR, SHMREG_VERSION_PATCH)
#define SHMREG_VERSION_STRING "shmreg 1.0.0: (November 27, 2026)"

/* The version of the library actually linked, which may be newer than the
 * header a program was built with. Each of major, minor, patch may be NULL.
 * Returns SHMREG_VERSION_STRING of the library: a static string. Never
 * fails. */
const char *shmreg_version(int *major, int *minor, int *patch);

/* ---------------------------------------------------------------- growth
 *
 * How public structs grow without breaking the ABI. Every struct that a
 * caller fills in or receives ends in a reserved tail (`_reserved`) that
 * later MINOR versions carve new fields from; its size never changes
 * within a MAJOR version. Arrays in structs have fixed capacities
 * (SHMREG_FIELD_STR_MAX, SHMREG_CTR_MAX) larger than today's enum counts,
 * and functions that fill caller arrays take their length.
 *  - Structs you fill in (shmreg_options, shmreg_fields,
 *    shmreg_config_options): zero the whole struct first (`= {0}` or a
 *    designated initializer). A field added later reads zero from old
 *    programs, and zero always means "as before".
 *  - Structs you receive (views, stats, events, reports): the library
 *    writes every byte, the reserved tail as zero. Do not rely on it staying
 *    zero: a later MINOR may fill it. */

/* ---------------------------------------------------------------- errors */

#define SHMREG_OK         0
#define SHMREG_EINVAL   (-1)  /* bad argument: NULL, unknown enum, over-long string */
#define SHMREG_ENOENT   (-2)  /* no such session, dialog, registry or key */
#define SHMREG_EEXIST   (-3)  /* already exists (dialog bound, registry present with SHMREG_EXCL) */
#define SHMREG_EFULL    (-4)  /* no room: session table, heap, dialog slots, map */
#define SHMREG_ESTATE   (-5)  /* transition not allowed by the state table */
#define SHMREG_ECONFLICT (-6) /* compare-and-set lost: current state is not the expected one */
#define SHMREG_ECORRUPT (-7)  /* the segment failed a bounds or consistency check */
#define SHMREG_EFORK    (-8)  /* handle used in a process it was not opened in */
#define SHMREG_EVERSION (-9)  /* segment is not a shmreg registry of this layout */
#define SHMREG_EPERM    (-10) /* registry owned by another user, or bad permissions */
#define SHMREG_ESYS     (-11) /* a system call failed; shmreg_errmsg() has errno text */
#define SHMREG_ENOREAD  (-12) /* call returns pointers but no read section is open */
#define SHMREG_EBUSY    (-13) /* live handles still attached; a lock held over 2 s */
#define SHMREG_ETIMEDOUT (-14) /* a blocking wait ran out */
#define SHMREG_EPARSE   (-15) /* malformed text (config); shmreg_errmsg() names line:column */
#define SHMREG_ENOMEM   (-16) /* malloc failed (cold paths only) */
#define SHMREG_ELIMIT   (-17) /* a profile is at its member limit: nothing changed */
#define SHMREG_EFOREIGN (-18) /* the session is a foreign copy: only its owner node changes it
                               * (shmreg_sync.h) */

/* Name of an error code ("SHMREG_ENOENT: no such entry"). Static string. */
const char *shmreg_strerror(int err);

/* Detail of the calling thread's last failed call (what differed, which
 * syscall failed, which limit, which ID was not found). Every negative
 * return sets it, including lookups' ENOENT (see Conventions); a successful
 * call may also change it, so read it right after the failure. Thread-local
 * buffer: valid until the next shmreg call in this thread. Never NULL. */
const char *shmreg_errmsg(void);

/* ---------------------------------------------------------------- limits */

#define SHMREG_MAX_SDP            65536u  /* bytes in one SDP body */
#define SHMREG_MAX_STR             1024u  /* bytes in one string field or dialog key part */
#define SHMREG_MAX_APPDATA          256u  /* bytes in the opaque app-data blob */
#define SHMREG_MAX_DIALOGS_PER_SESSION 8u /* dialogs bound to one session (forking) */
#define SHMREG_MAX_HANDLES         4096u  /* ceiling on options.max_handles */
#define SHMREG_MAX_SESSIONS   (1u << 26)  /* ceiling on options.max_sessions */
#define SHMREG_MAX_ROOMS      (1u << 18)  /* ceiling on options.max_rooms */

/* ---------------------------------------------------------------- types */

typedef struct shmreg shmreg;                        /* a process's handle */
typedef struct { const char *ptr; size_t len; } shmreg_str;
#define SHMREG_ID_BYTES 16 /* bytes of a shmreg_id (session and room IDs) */
typedef struct { unsigned char bytes[SHMREG_ID_BYTES]; } shmreg_id; /* 128-bit session ID */

#define SHMREG_ID_TEXT_LEN 36 /* canonical UUID text, without NUL */

/* ---------------------------------------------------------------- open */

#define SHMREG_CREATE  0x1u /* create the registry if it does not exist */
#define SHMREG_EXCL    0x2u /* with CREATE: fail with SHMREG_EEXIST if it exists */

typedef struct shmreg_options {
    uint32_t flags;          /* SHMREG_CREATE, SHMREG_EXCL */
    /* Used only when creating; ignored when attaching (the segment's
     * values win). Zero means the default. */
    uint32_t max_sessions;   /* session table size; default 65536 */
    uint32_t max_handles;    /* attached handles at once; default 256 */
    uint64_t heap_bytes;     /* bytes for strings, SDPs, dialogs; default 8 KiB per
                              * session, at least 64 MiB (sparse: unused room costs
                              * no RAM) */
    const char *group;       /* group name: dir 0770, files 0660; NULL: 0700/0600 */
    uint32_t event_records;  /* event ring size, a power of two >= 64; default 65536 */
    uint32_t max_rooms;      /* conference rooms at once, 1..262144 (rounded up to
                              * a power of two, at least 32); default 1024 */
    uint32_t node_id;        /* this registry's node in a group of hosts that mirror
                              * each other (shmreg_sync.h, "many hosts"),
                              * 1..SHMREG_NODE_MAX; 0: a single host */
    uint64_t reserved[7];        /* reserved for later fields (see "growth") */
} shmreg_options;

/* Open (attach to) the registry in directory `path`, creating it when
 * opt->flags has SHMREG_CREATE. `opt` may be NULL (attach only).
 *
 * The registry is a directory (mode 0700, or 0770 with opt->group) holding
 * the segment file `segment` (0600/0660, sparse: capacity costs no RAM until
 * used). Both must belong to the caller's effective uid and give others no
 * access at all (no o+rwx, setuid or setgid bit): a wider mode is refused
 * with SHMREG_EPERM. The path is walked one component at a time with
 * O_NOFOLLOW: a symlink in a parent is followed only if it belongs to root
 * or to the caller (one planted by another user is refused, SHMREG_EPERM);
 * the registry directory and the segment themselves must not be symlinks.
 * With SHMREG_CREATE every option is checked before anything is created,
 * so a refused create (SHMREG_EINVAL) leaves nothing behind. The header is
 * checked on attach: magic, layout version, sizes and owner; a mismatch is
 * refused and `shmreg_errmsg()` says what differs.
 *
 * On success *out is a new handle: one of opt/segment max_handles slots is
 * claimed (pid + process start time). Errors: SHMREG_EINVAL (NULL path/out,
 * path too long, bad option), SHMREG_ENOENT (no registry and no CREATE),
 * SHMREG_EEXIST (CREATE|EXCL and it exists), SHMREG_EVERSION (not a shmreg
 * segment, or another layout), SHMREG_ECORRUPT (header inconsistent),
 * SHMREG_EPERM (owned by another user, a mode open to others, unknown group,
 * symlink), SHMREG_EFULL
 * (every handle slot is held by a live process), SHMREG_ESYS, SHMREG_ENOMEM. */
int shmreg_open(const char *path, const shmreg_options *opt, shmreg **out);

/* Detach: ends an open read section, hands retired memory to the registry,
 * frees the handle slot, unmaps. `h` is invalid afterwards; pointers obtained
 * through it are invalid too. NULL is a no-op. In a forked child (where the
 * handle is not its own) it only unmaps the child's copy and touches nothing
 * shared. Returns 0 or SHMREG_EFORK (in which case memory is freed), or
 * SHMREG_EINVAL when `h` is not an open handle of this process (closed
 * already: nothing is freed twice). Using a handle after close in any other
 * call is undefined behaviour (as for a freed pointer: checking would cost
 * every call a lookup). */
int shmreg_close(shmreg *h);

/* Remove the registry directory `path` and its files. Refused with
 * SHMREG_EBUSY while a live process has a handle attached, unless `force`.
 * Errors: SHMREG_ENOENT, SHMREG_EBUSY, SHMREG_EPERM, SHMREG_EVERSION, SHMREG_ESYS. */
int shmreg_destroy(const char *path, int force);

/* The directory this handle was opened on. Valid while the handle is open. */
const char *shmreg_path(const shmreg *h);

/* ---------------------------------------------------------------- read sections */

/* Enter a read section. Lock-free, allocation-free. Sections nest: only the
 * outermost end leaves. Errors: SHMREG_EINVAL (NULL), SHMREG_EFORK. */
int shmreg_read_begin(shmreg *h);

/* Leave the read section. Every pointer obtained inside it becomes invalid.
 * Errors: SHMREG_EINVAL (no section open), SHMREG_EFORK. */
int shmreg_read_end(shmreg *h);

/* ---------------------------------------------------------------- session IDs */

/* Write the canonical UUID text of `id` (36 chars, lower-case hex, 8-4-4-4-12)
 * followed by a NUL into `out`. Never fails for non-NULL arguments. */
void shmreg_id_format(const shmreg_id *id, char out[SHMREG_ID_TEXT_LEN + 1]);

/* Parse canonical UUID text (exactly 36 chars, hex either case, dashes at
 * 8, 13, 18, 23). Anything else: SHMREG_EINVAL, *id unchanged. */
int shmreg_id_parse(const char *text, size_t len, shmreg_id *id);

/* ---------------------------------------------------------------- call states */

typedef enum shmreg_state {
    SHMREG_STATE_ANY = 0,        /* as `expected` in transition: any state */
    SHMREG_STATE_INITIATING = 1,
    SHMREG_STATE_RINGING,
    SHMREG_STATE_ACTIVE,
    SHMREG_STATE_ONHOLD,
    SHMREG_STATE_TRANSFERRING,
    SHMREG_STATE_TERMINATING,
    SHMREG_STATE_TERMINATED,
    SHMREG_STATE_CANCELLED,
    SHMREG_STATE_FAILED,
} shmreg_state;
#define SHMREG_STATE_COUNT 10 /* array size for counts indexed by state (0 unused) */

/* The transition table (from -> allowed to):
 *   Initiating   -> Ringing, Active, Terminating, Cancelled, Failed
 *   Ringing      -> Active, Terminating, Cancelled, Failed
 *   Active       -> OnHold, Transferring, Terminating, Failed
 *   OnHold       -> Active, Transferring, Terminating, Failed
 *   Transferring -> Active, OnHold, Terminating, Failed
 *   Terminating  -> Terminated, Failed
 *   Terminated, Cancelled, Failed: final, no way out.
 * Returns 1 when from -> to is allowed, 0 otherwise (also for bad values).
 * A predicate that cannot fail: it never returns an error code. */
int shmreg_state_allowed(int from, int to);

/* "Initiating", "Ringing", ... ; "Any" for 0; NULL for an unknown value. */
const char *shmreg_state_name(int state);

/* Case-insensitive name -> state; SHMREG_EINVAL if unknown. */
int shmreg_state_parse(const char *name, int *state);

/* 1 for Terminated, Cancelled, Failed; 0 otherwise (also for bad values).
 * Cannot fail: never an error code. */
int shmreg_state_is_final(int state);

/* ---------------------------------------------------------------- sessions */

/* String fields of a session, and the mask bits that select them. */
enum shmreg_field {
    SHMREG_FIELD_FROM_URI = 0,
    SHMREG_FIELD_TO_URI,
    SHMREG_FIELD_DISPLAY_NAME,
    SHMREG_FIELD_CALL_ID,
    SHMREG_FIELD_LOCAL_TAG,
    SHMREG_FIELD_REMOTE_TAG,
    SHMREG_FIELD_CODEC,
    SHMREG_FIELD_FAILURE_REASON,
    SHMREG_FIELD_APP_DATA,        /* opaque bytes, at most SHMREG_MAX_APPDATA */
    SHMREG_FIELD_STR_COUNT,
    SHMREG_FIELD_LOCAL_RTP_PORT = SHMREG_FIELD_STR_COUNT,
    SHMREG_FIELD_REMOTE_RTP_PORT,
    SHMREG_FIELD_COUNT
};
/* Capacity of the str[] arrays of shmreg_fields and shmreg_session: fixed
 * for the ABI, larger than SHMREG_FIELD_STR_COUNT (the fields that exist);
 * entries past the count are ignored on input and empty on output. */
#define SHMREG_FIELD_STR_MAX 16
#define SHMREG_MASK(field) (1u << (field))
#define SHMREG_MASK_ALL ((1u << SHMREG_FIELD_COUNT) - 1u)
/* Update mask bits that replace an SDP (which: SHMREG_SDP_LOCAL or
 * _REMOTE) from shmreg_fields.sdp, in the same atomic step as the fields.
 * Not part of SHMREG_MASK_ALL: "all fields" never touches an SDP. */
#define SHMREG_MASK_SDP(which) (1u << (24 + (which)))
#define SHMREG_MASK_SDP_BOTH (SHMREG_MASK_SDP(0) | SHMREG_MASK_SDP(1))

/* Input for create and update. str[i] with ptr == NULL and len == 0 is the
 * empty string. `sdp`, when not NULL, points to the caller's two SDPs,
 * [SHMREG_SDP_LOCAL] and [SHMREG_SDP_REMOTE] (each at most SHMREG_MAX_SDP
 * bytes; {NULL, 0} is none): create stores both with the session, update
 * those its mask selects with SHMREG_MASK_SDP. The library reads them only
 * during the call. */
typedef struct shmreg_fields {
    shmreg_str str[SHMREG_FIELD_STR_MAX];
    uint16_t local_rtp_port, remote_rtp_port;
    const shmreg_str *sdp;       /* NULL: no SDP (added in 1.0: was reserved) */
    uint64_t reserved[3];        /* reserved for later fields (see "growth") */
} shmreg_fields;

/* RTP counters, updated in place with atomic adds. */
enum shmreg_counter {
    SHMREG_CTR_PACKETS_SENT = 0,
    SHMREG_CTR_PACKETS_RECEIVED,
    SHMREG_CTR_BYTES_SENT,
    SHMREG_CTR_BYTES_RECEIVED,
    SHMREG_CTR_PACKETS_LOST,
    SHMREG_CTR_COUNT
};
#define SHMREG_CTR_MAX 8 /* capacity of shmreg_session.counter[] (fixed for the ABI) */

enum shmreg_sdp { SHMREG_SDP_LOCAL = 0, SHMREG_SDP_REMOTE = 1 };

/* A session read in place. Filled by shmreg_session_get()/_next(); every
 * shmreg_str points into the shared mapping and is valid until the caller's
 * `shmreg_read_end()`. The string fields and ports are one consistent version
 * (they are published together); each SDP is a complete version of itself.
 * Counters are a snapshot taken field by field. */
typedef struct shmreg_session {
    shmreg_id id;
    int state;                          /* shmreg_state, always 1..9: the state
                                         * the lookup found live (a delete
                                         * racing the read never shows here) */
    shmreg_str str[SHMREG_FIELD_STR_MAX];
    uint16_t local_rtp_port, remote_rtp_port;
    shmreg_str sdp[2];                  /* [SHMREG_SDP_LOCAL], [SHMREG_SDP_REMOTE] */
    uint64_t created_ns, updated_ns;
    int32_t owner_pid;                  /* pid of the creating process */
    uint64_t config_gen;                /* config generation at create */
    uint64_t counter[SHMREG_CTR_MAX];   /* [SHMREG_CTR_COUNT..] are 0 */
    uint32_t ndialogs;                  /* dialogs bound to it */
    uint64_t flags;                     /* SHMREG_SESSION_RESTORED (shmreg_sync.h) */
    uint64_t deadline_ns;               /* armed timeout (0: none); see call control */
    uint32_t timeout_flags;             /* its action: SHMREG_TIMEOUT_FAIL or _NOTIFY */
    uint32_t nprofiles;                 /* profile memberships (shmreg_session_profile) */
    uint32_t nvars;                     /* variables (shmreg_session_var_next) */
    uint32_t owner_node;                /* the node that owns it (0: single host);
                                         * SHMREG_SESSION_FOREIGN when not this one */
    uint64_t version;                   /* its change sequence: grows with every
                                         * change its owner makes (shmreg_sync.h) */
    uint64_t reserved[3];        /* reserved for later fields (see "growth") */
} shmreg_session;

/* Room for a new block or slot: an allocation that finds the heap or the
 * session table full first reclaims memory this handle retired; while
 * readers still hold such memory it waits for them, at most 10 ms of
 * elapsed time in all (plus one scheduler wake-up), before it reports
 * SHMREG_EFULL. Memory retired by other processes is reclaimed by them
 * (or, once they are dead, by shmreg_reap()).
 *
 * Create a session with a fresh ID, state Initiating,
 * owner_pid = getpid(), config_gen = the registry's current config
 * generation. The ID is a version-8 UUID (RFC 9562): 96 random bits
 * (libsodium), so it is safe to show to clients, and 26 bits that name
 * the session's slot, which lets a lookup skip the index; treat it as
 * opaque. `f` may be NULL (all empty); with f->sdp set, the session is
 * born with both SDPs (one record, one event: session_created, no
 * sdp_updated), which is cheaper than setting them after and leaves no
 * moment in which another process finds it without them. The session
 * becomes visible to other processes in one atomic step, complete. No
 * heap allocation.
 * Errors: SHMREG_EINVAL (a string over SHMREG_MAX_STR, app data over
 * SHMREG_MAX_APPDATA, an SDP over SHMREG_MAX_SDP or with a length but no
 * bytes), SHMREG_EFULL (session table or heap full; nothing is left
 * behind), SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_create(shmreg *h, const shmreg_fields *f, shmreg_id *id_out);

/* Create a session bound to a dialog, in one step: what a create and then
 * a bind of (call_id, local_tag, remote_tag) do, except that no other bind
 * of the key can come between. Of several workers creating a
 * call for the same dialog at once (a retransmitted INVITE that reached
 * another worker), exactly one creates it; each other gets SHMREG_EEXIST
 * with *id_out set to the session the key is bound to (the ID may be of a
 * session being deleted), and nothing is created. The session is
 * published with its dialog and announced by one event, session_created
 * (no dialog_bound). No heap allocation.
 * Errors: SHMREG_EINVAL (as create, an empty Call-ID or a key part over
 * SHMREG_MAX_STR), SHMREG_EEXIST (see above), SHMREG_EFULL, SHMREG_EBUSY
 * (the key's stripe lock held over 2 s), SHMREG_ECORRUPT, SHMREG_EFORK;
 * on every error but EEXIST *id_out is unchanged. */
int shmreg_session_create_bound(shmreg *h, const shmreg_fields *f, shmreg_str call_id,
                                shmreg_str local_tag, shmreg_str remote_tag, shmreg_id *id_out);

/* Replace the fields selected by `mask` (SHMREG_MASK bits; others keep their
 * values), and the SDPs it selects with SHMREG_MASK_SDP (from f->sdp), in
 * one atomic step: readers see all old or all new values, so a re-INVITE's
 * new codec, port and SDP are never seen half applied. A reader's old
 * values stay valid until its read section ends. Events, in this order:
 * session_updated (its mask: the fields, without SDP bits) if any field
 * was selected, then sdp_updated for each SDP selected, local first.
 * Errors: SHMREG_EINVAL (bad mask, over-long value, SDP bits with f->sdp
 * NULL), SHMREG_ENOENT, SHMREG_EFULL (heap full: nothing changed),
 * SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_update(shmreg *h, const shmreg_id *id, const shmreg_fields *f,
                          uint32_t mask);

/* Replace the local or remote SDP with `len` bytes at `sdp` (len 0 clears
 * it). Atomic for readers as in update. No heap allocation.
 * Errors: SHMREG_EINVAL (which, len > SHMREG_MAX_SDP, NULL with len > 0),
 * SHMREG_ENOENT, SHMREG_EFULL, SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_set_sdp(shmreg *h, const shmreg_id *id, int which,
                           const void *sdp, size_t len);

/* Compare-and-set state transition: if the current state is `expected` (or
 * expected is SHMREG_STATE_ANY) and current -> `to` is in the table, the
 * state becomes `to`. *old (may be NULL) receives the state found, in every
 * outcome but ENOENT/EINVAL. Errors: SHMREG_EINVAL (unknown state),
 * SHMREG_ENOENT, SHMREG_ECONFLICT (current != expected; nothing changed),
 * SHMREG_ESTATE (not allowed by the table; nothing changed),
 * SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. Lock-free, allocation-free. */
int shmreg_session_transition(shmreg *h, const shmreg_id *id, int expected,
                              int to, int *old);

/* Atomically add `delta` to one RTP counter, in place. Lock-free.
 * Errors: SHMREG_EINVAL (counter), SHMREG_ENOENT, SHMREG_ECORRUPT,
 * SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_counter_add(shmreg *h, const shmreg_id *id, int counter,
                               uint64_t delta);

/* Delete a session and unbind its dialogs. Its memory is reused once no read
 * section can still see it. Errors: SHMREG_ENOENT, SHMREG_ECORRUPT,
 * SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_delete(shmreg *h, const shmreg_id *id);

/* Read a session in place into *out (see shmreg_session). Requires an open
 * read section. Lock-free, allocation-free, copies no string.
 * Errors: SHMREG_ENOREAD, SHMREG_ENOENT, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_get(shmreg *h, const shmreg_id *id, shmreg_session *out);

/* Iterate live sessions (state_filter SHMREG_STATE_ANY for all) in table
 * order without blocking writers. Start with *cursor = 0; each call fills
 * *out with the next match and advances *cursor. Returns SHMREG_ENOENT at
 * the end. Requires an open read section; the cursor may be kept across
 * sections (a session created or deleted meanwhile may or may not be seen;
 * every session live throughout the walk is seen exactly once).
 * Errors: SHMREG_ENOREAD, SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_next(shmreg *h, uint64_t *cursor, int state_filter,
                        shmreg_session *out);

/* Count live sessions by state into counts[0..n-1]: counts[s] for each
 * state s < n, counts[0] = total. Pass n = SHMREG_STATE_COUNT (states a
 * later version adds are counted in counts[0] but not given an entry when
 * n is smaller; entries past the last state are 0). Walks the table
 * (O(sessions in use)); takes no lock.
 * Errors: SHMREG_EINVAL (NULL counts, n 0), SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_counts(shmreg *h, uint64_t *counts, size_t n);

/* ---------------------------------------------------------------- dialogs */

/* A dialog read in place: valid until the caller's shmreg_read_end(). */
typedef struct shmreg_dialog {
    shmreg_str call_id, local_tag, remote_tag;
    shmreg_id session;
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_dialog;

/* Bind (call_id, local_tag, remote_tag) -> session, insert-if-absent.
 * Keys come from the network: they are hashed with keyed SipHash under the
 * registry's random key. remote_tag may be empty (early dialog).
 * Errors: SHMREG_EINVAL (empty call_id, a part over SHMREG_MAX_STR),
 * SHMREG_ENOENT (no such session), SHMREG_EEXIST (key already bound, to this
 * or another session: nothing changed), SHMREG_EFULL (heap full, or the session
 * has SHMREG_MAX_DIALOGS_PER_SESSION dialogs), SHMREG_ECORRUPT,
 * SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_dialog_bind(shmreg *h, shmreg_str call_id, shmreg_str local_tag,
                       shmreg_str remote_tag, const shmreg_id *session);

/* Find the session of a dialog. With remote_tag.ptr == NULL, the early-dialog
 * lookup: the first dialog with this Call-ID and local tag, whatever its
 * remote tag. Lock-free. Errors: SHMREG_EINVAL, SHMREG_ENOENT,
 * SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_dialog_find(shmreg *h, shmreg_str call_id, shmreg_str local_tag,
                       shmreg_str remote_tag, shmreg_id *session_out);

/* Remove one binding (exact key). Errors: SHMREG_EINVAL, SHMREG_ENOENT,
 * SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_dialog_unbind(shmreg *h, shmreg_str call_id, shmreg_str local_tag,
                         shmreg_str remote_tag);

/* Iterate all dialogs (cursor as for shmreg_session_next). Requires a read
 * section. Returns SHMREG_ENOENT at the end. */
int shmreg_dialog_next(shmreg *h, uint64_t *cursor, shmreg_dialog *out);

/* The i-th dialog bound to a session (0 <= i < ndialogs of its view), in
 * place. Requires a read section. Errors: SHMREG_ENOREAD, SHMREG_ENOENT (no
 * session, or no i-th dialog), SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_dialog(shmreg *h, const shmreg_id *id, unsigned i,
                          shmreg_dialog *out);

/* ---------------------------------------------------------------- call control
 *
 * What a SIP server's dialog module is used for beyond tracking calls:
 * profiles with limits (at most N concurrent calls per customer or
 * trunk), timeouts that end calls which outlive their time, variables
 * kept with a call, and finding a user's calls. Every piece lives in the
 * segment with the session and ends with it.
 *
 * Profiles. A session is a member of up to SHMREG_MAX_PROFILES_PER_SESSION
 * (profile, value) pairs: "trunk" = "carrier-a", "inbound" = "" (a profile
 * without value uses the empty value). The member count of a pair is kept
 * beside its member list and changed only together with it, under the
 * pair's lock: admission against a limit is one atomic step across
 * processes (N processes racing for the last place: exactly one wins).
 * The count is derived from membership, never kept apart from it: a
 * process killed while holding the lock leaves the list whole (single
 * stores), and the next taker recounts the lists that lock guards; a
 * join refused at the limit first recounts, dropping members whose
 * session is gone or over (its process killed half way through ending
 * it); shmreg_check() verifies every count and REPAIR rebuilds it. A
 * session's memberships end with its call: when it reaches a final
 * state (Terminated, Cancelled, Failed; a timeout's FAIL too) or is
 * deleted, whoever does it, repair included. Each one that ends, by
 * whatever path, publishes one SHMREG_EV_PROFILE_LEFT, so a follower
 * that counts members from the events agrees with shmreg_profile_count
 * (but for the events a killed process had not published yet).
 *
 * Timeouts. A session may carry one deadline with an action. A deadline
 * is kept in a timer wheel in the segment (buckets of SHMREG_TIMER_TICK_NS,
 * stripe-locked), so a sweep costs what is due plus what shares its
 * buckets, not the table. Any process may sweep: shmreg_expire() claims
 * each due session by compare-and-swap on its timer, so exactly one
 * process fires it; a sweeper killed after claiming is replaced by the
 * next sweep (its claim names a dead handle), and the claim is turned
 * into "fired" by one CAS that only one process can win, so nothing
 * fires twice and nothing due is lost. Then the action:
 *   SHMREG_TIMEOUT_FAIL    the session moves to Failed (if not already
 *                          final) and one SHMREG_EV_TIMEOUT is published;
 *   SHMREG_TIMEOUT_NOTIFY  the session is handed to the sweep's caller
 *                          (and one SHMREG_EV_TIMEOUT published) to end
 *                          it its own way (a SIP server sends BYE); if
 *                          the timeout gave a grace period, it is re-armed
 *                          as FAIL that long after the sweep's `now`, so a
 *                          session whose handler died still ends. A
 *                          sweeper killed after that re-arm and before the
 *                          hand-off loses the NOTIFY, not the call: the
 *                          FAIL still fires.
 * A process killed between "fired" and the publish loses that one event
 * (as for every change, the commit comes first). Per-state timeouts
 * (shmreg_timeout_policy_set) arm a session's deadline when it enters a
 * state, as a dialog module's early and confirmed timeouts do; reaching
 * a final state disarms it.
 *
 * Variables. Up to SHMREG_MAX_VARS string keys with string values per
 * session, kept in one immutable block replaced like the info fields:
 * a reader sees the old or the new set, never a mix, valid until its
 * read section ends.
 *
 * Users. Every session is indexed by the user@host of its From and To
 * URIs (keyed hash, maintained with the fields), so a user's calls are
 * found without a scan. SIP compares URIs with the user part
 * case-sensitive and the host case-insensitive; so does the index
 * (shmreg_user_key gives the exact key).
 */

#define SHMREG_MAX_PROFILE_NAME          64u /* bytes of a profile name */
#define SHMREG_MAX_PROFILE_VALUE        256u /* bytes of a profile value */
#define SHMREG_MAX_PROFILES_PER_SESSION   6u /* memberships of one session */

/* Make session `id` a member of (profile, value). With limit > 0 the
 * join succeeds only if the pair then has at most `limit` members; limit
 * 0 means no limit. *count (may be NULL) receives the pair's member count
 * after the join, or the count that refused it. Lock: the pair's stripe
 * lock, for microseconds; no heap allocation but the membership record.
 * Errors: SHMREG_EINVAL (NULL id, empty profile, profile over
 * SHMREG_MAX_PROFILE_NAME, value over SHMREG_MAX_PROFILE_VALUE, NULL with
 * a length), SHMREG_ENOENT (no such live session), SHMREG_EEXIST (already a
 * member of the pair), SHMREG_ELIMIT (the pair has `limit` members:
 * nothing changed), SHMREG_EFULL (the session is in
 * SHMREG_MAX_PROFILES_PER_SESSION pairs, or the heap is full),
 * SHMREG_ESTATE (the session is in a final state: its call is over),
 * SHMREG_EBUSY, SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_profile_join(shmreg *h, const shmreg_id *id, shmreg_str profile, shmreg_str value,
                        uint32_t limit, uint64_t *count);

/* End the membership of `id` in (profile, value). Errors: SHMREG_EINVAL,
 * SHMREG_ENOENT (no such session, or not a member), SHMREG_EBUSY,
 * SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_profile_leave(shmreg *h, const shmreg_id *id, shmreg_str profile, shmreg_str value);

/* Member count of (profile, value) into *count (0 for a pair nobody is
 * in). O(1): one index lookup, lock-free, no read section needed.
 * Errors: SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_profile_count(shmreg *h, shmreg_str profile, shmreg_str value, uint64_t *count);

/* A (profile, value) pair read in place: valid until shmreg_read_end(). */
typedef struct shmreg_profile_entry {
    shmreg_str profile, value;
    uint64_t count;              /* members now */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_profile_entry;

/* Iterate the pairs in use (count > 0), of every profile (profile.ptr
 * NULL) or of one, with their counts, without blocking writers. Cursor
 * as for shmreg_session_next; SHMREG_ENOENT at the end. Walks the profile
 * index (O(its buckets + pairs)). Requires a read section.
 * Errors: SHMREG_ENOREAD, SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_profile_next(shmreg *h, shmreg_str profile, uint64_t *cursor,
                        shmreg_profile_entry *out);

/* Iterate the members of one pair: each call gives the next member's
 * session ID. Cursor from 0; SHMREG_ENOENT at the end (or when nobody is
 * in the pair). A cursor kept across read sections sees every member
 * that stays throughout; one that joins or leaves meanwhile may shift
 * the walk by one. Requires a read section. Errors: SHMREG_ENOREAD,
 * SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_profile_member_next(shmreg *h, shmreg_str profile, shmreg_str value,
                               uint64_t *cursor, shmreg_id *out);

/* The i-th membership of a session (0 <= i < nprofiles of its view), in
 * place. Requires a read section. Errors: SHMREG_ENOREAD, SHMREG_ENOENT
 * (no session, or no i-th membership), SHMREG_EINVAL, SHMREG_ECORRUPT,
 * SHMREG_EFORK. */
int shmreg_session_profile(shmreg *h, const shmreg_id *id, unsigned i,
                           shmreg_profile_entry *out);

#define SHMREG_TIMEOUT_FAIL     0x1u  /* the sweeper moves the session to Failed */
#define SHMREG_TIMEOUT_NOTIFY   0x2u  /* the sweeper hands it to its caller */
#define SHMREG_TIMEOUT_RELATIVE 0x10u /* `when` is nanoseconds from now */
#define SHMREG_TIMER_TICK_NS (1ull << 26) /* wheel bucket width, ~67 ms */

/* Arm (replace) the timeout of session `id`: at `when` (CLOCK_REALTIME
 * ns, or from now with SHMREG_TIMEOUT_RELATIVE) the action in `flags`
 * (FAIL or NOTIFY) is taken by the next shmreg_expire(). `grace_ns` is
 * for NOTIFY: re-arm as FAIL that long after the hand-off (0: not).
 * when 0 without SHMREG_TIMEOUT_RELATIVE disarms (flags may then be 0).
 * Replacing or disarming costs O(1): the bucket lists are doubly linked. A deadline already past fires at the next
 * sweep. No effect on a session in a final state but disarming: arming
 * one is SHMREG_ESTATE. Errors: SHMREG_EINVAL (NULL id, flags with no or
 * both actions, or unknown bits), SHMREG_ENOENT, SHMREG_ESTATE, SHMREG_EFULL
 * (heap full), SHMREG_EBUSY, SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_set_timeout(shmreg *h, const shmreg_id *id, uint64_t when, unsigned flags,
                               uint64_t grace_ns);

/* The per-state timeout: a session entering `state` (by create for
 * Initiating, by transition for the others) gets a timeout `after_ns`
 * from then with action `flags` (and `grace_ns`), replacing the one it
 * had; after_ns 0 removes the policy (entering that state then keeps
 * whatever timeout the session had). Registry-wide, shared by every
 * process. Final states cannot have one (SHMREG_EINVAL): reaching them
 * disarms. Errors: SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_timeout_policy_set(shmreg *h, int state, uint64_t after_ns, unsigned flags,
                              uint64_t grace_ns);

/* Read the policy of `state` (after_ns 0: none). Any pointer may be NULL.
 * Errors: SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_timeout_policy_get(shmreg *h, int state, uint64_t *after_ns, unsigned *flags,
                              uint64_t *grace_ns);

/* A session a sweep fired. */
typedef struct shmreg_expired {
    shmreg_id id;
    uint64_t deadline_ns;        /* the deadline that fired */
    uint32_t action;             /* SHMREG_TIMEOUT_FAIL or _NOTIFY */
    int old_state, new_state;    /* the state before, and after (FAIL: Failed) */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_expired;

/* Sweep: fire up to `max` sessions whose deadline is <= now_ns (0: the
 * clock), filling out[0..]; returns how many (fewer than max: none due
 * is left for this sweep). Claims are atomic across processes: run it in
 * as many processes as you like; each due session fires in exactly one.
 * Cost: the wheel buckets passed since the last sweep (at most all of
 * them once) and the timers in them. No allocation but NOTIFY's re-arm.
 * Errors: SHMREG_EINVAL (out NULL with max > 0), SHMREG_EBUSY, SHMREG_ECORRUPT,
 * SHMREG_EFORK. */
int shmreg_expire(shmreg *h, uint64_t now_ns, shmreg_expired *out, unsigned max);

#define SHMREG_MAX_VARS       16u  /* variables of one session */
#define SHMREG_MAX_VAR_KEY    32u  /* bytes of a variable's name (at least 1) */
#define SHMREG_MAX_VAR_VALUE 256u  /* bytes of its value */

/* Set variable `key` of session `id` to `value` (replacing it; remove one
 * with shmreg_session_var_unset). The session's variables are replaced as
 * one block: readers see all old or all new. Errors: SHMREG_EINVAL (NULL id, empty or over-long key,
 * over-long value, NULL with a length), SHMREG_ENOENT, SHMREG_EFULL (the
 * session has SHMREG_MAX_VARS variables and this is a new one; heap
 * full), SHMREG_ECORRUPT, SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_var_set(shmreg *h, const shmreg_id *id, shmreg_str key, shmreg_str value);

/* Remove variable `key`. Errors: SHMREG_EINVAL, SHMREG_ENOENT (no such
 * session or variable), SHMREG_EFULL (heap), SHMREG_ECORRUPT,
 * SHMREG_EFOREIGN, SHMREG_EFORK. */
int shmreg_session_var_unset(shmreg *h, const shmreg_id *id, shmreg_str key);

/* Value of variable `key`, in place: valid until shmreg_read_end().
 * Errors: SHMREG_ENOREAD, SHMREG_EINVAL, SHMREG_ENOENT (no such session or
 * variable), SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_var_get(shmreg *h, const shmreg_id *id, shmreg_str key, shmreg_str *value);

/* Iterate a session's variables in the order they were first set; cursor
 * from 0, SHMREG_ENOENT at the end. Key and value in place, valid until
 * shmreg_read_end(). The cursor holds on to the version of the set the
 * walk began with: a walk within one read section sees that one version
 * whole, however often a writer replaces it meanwhile; one continued in
 * a later section may end early (SHMREG_ENOENT) if that version is gone.
 * Errors: SHMREG_ENOREAD, SHMREG_EINVAL, SHMREG_ENOENT, SHMREG_ECORRUPT,
 * SHMREG_EFORK. */
int shmreg_session_var_next(shmreg *h, const shmreg_id *id, uint64_t *cursor, shmreg_str *key,
                            shmreg_str *value);

/* Everything call control keeps for one session, read in place: for
 * copying a session elsewhere (shmreg-sync stores it with the session,
 * shmreg_restore puts it back) and for tools. Strings are valid until
 * shmreg_read_end(). */
typedef struct shmreg_session_control {
    uint32_t nprofiles;                 /* memberships in profile[] */
    shmreg_profile_entry profile[SHMREG_MAX_PROFILES_PER_SESSION];
    uint32_t nvars;                     /* variables in var_key[], var_value[] */
    shmreg_str var_key[SHMREG_MAX_VARS], var_value[SHMREG_MAX_VARS];
    uint64_t deadline_ns;               /* armed timeout (0: none) */
    uint32_t timeout_flags;             /* its action */
    uint64_t grace_ns;                  /* its grace (NOTIFY) */
    uint64_t reserved[8];        /* reserved for later fields (see "growth") */
} shmreg_session_control;

/* Fill *out with session `id`'s memberships, variables and timeout.
 * Requires a read section. Errors: SHMREG_ENOREAD, SHMREG_EINVAL,
 * SHMREG_ENOENT, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_control_get(shmreg *h, const shmreg_id *id, shmreg_session_control *out);

#define SHMREG_USER_FROM 0x1u  /* match the From URI's user@host */
#define SHMREG_USER_TO   0x2u  /* match the To URI's user@host */

/* The index key of a URI or a user: "user@host" with the host in lower
 * case, from "sip:alice@Example.COM:5060;transport=udp", "<sips:alice@h>",
 * "Alice <sip:alice@h>;tag=x", "tel:+1555" or plain "alice@h". Writes
 * *len bytes (no NUL) into out[0..cap). Returns 0, or SHMREG_EINVAL (NULL
 * out/len, or the key would not fit: cap of SHMREG_MAX_STR always does).
 * An empty URI gives an empty key. Touches no shared state. */
int shmreg_user_key(shmreg_str uri, char *out, size_t cap, size_t *len);

/* Iterate the live sessions whose From (SHMREG_USER_FROM) and/or To
 * (SHMREG_USER_TO) URI names `user` (a URI or user@host, normalised by
 * shmreg_user_key), through a keyed index: no scan, each call O(1) plus
 * the records of other keys that share the bucket. Cursor from 0;
 * SHMREG_ENOENT at the end. A session matching both ways is given once.
 * The cursor names the next index record: a walk within one read section
 * sees every session that is the user's throughout; one continued in a
 * later section may end early if that record has gone meanwhile.
 * Requires a read section. Errors: SHMREG_ENOREAD, SHMREG_EINVAL (empty
 * key, no or unknown `which` bits), SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_session_by_user(shmreg *h, shmreg_str user, unsigned which, uint64_t *cursor,
                           shmreg_session *out);

/* ---------------------------------------------------------------- inspection */

typedef struct shmreg_stats {
    uint64_t segment_bytes;      /* size of the segment file */
    uint64_t heap_bytes;         /* capacity for variable data */
    uint64_t heap_used_bytes;    /* bytes in blocks handed out or awaiting reuse */
    uint64_t heap_retired_bytes; /* of which retired, waiting for readers to leave */
    uint32_t max_sessions, sessions;
    uint32_t index_buckets;      /* session index buckets (dialog index has as many) */
    uint32_t dialogs;
    uint32_t max_handles, handles;  /* handle slots in use by live processes */
    uint64_t oldest_read_ns;     /* age of the oldest open read section; 0: none */
    uint64_t config_gen;         /* registry config generation */
    uint64_t created_ns;         /* when the registry was created */
    uint64_t events_published;   /* event ring position (sequence numbers used) */
    uint32_t event_ring_records; /* event ring capacity */
    uint64_t events_dropped;     /* publishes abandoned (slot held by a stalled producer) */
    uint64_t events_stolen;      /* ring slots taken back from dead producers */
    uint32_t max_rooms, rooms;   /* conference rooms: capacity, in use */
    /* shmreg-sync (shmreg_sync.h): the ring position it has made durable
     * (every event with seq < it is on disk), how many events it is
     * behind (events_published - sync_durable_seq), the time of its last
     * durable commit (0: never), its pid (0: none claimed) and whether
     * that process is alive. */
    uint64_t sync_durable_seq, sync_behind, sync_commit_ns;
    int32_t sync_pid;
    uint32_t sync_alive;
    uint64_t session_slot_bytes; /* bytes of one session's fixed slot (the rest
                                  * of a session is heap: heap_used_bytes) */
    uint32_t node_id;            /* set at create (shmreg_options.node_id); 0: none */
    uint32_t foreign_sessions;   /* live sessions other nodes own (copies) */
    uint64_t reserved[10];        /* reserved for later fields (see "growth") */
} shmreg_stats;

/* Fill *st. Takes no lock; figures are a moment's snapshot.
 * Errors: SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_stat(shmreg *h, shmreg_stats *st);

typedef struct shmreg_handle_info {
    uint32_t slot;
    int32_t pid;
    int alive;                   /* 1 live process, 0 dead or pid reused */
    int in_read;                 /* 1 when a read section is open */
    uint64_t read_age_ns;        /* how long that section has been open */
    uint64_t attached_ns;        /* when the handle was opened */
    int self;                    /* 1 for the calling handle */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_handle_info;

/* Iterate the handle table's used slots (cursor from 0; SHMREG_ENOENT at
 * the end): attached handles, handles of dead processes not yet reaped
 * (alive 0), and closed or reaped handles still handing back retired
 * memory (pid 0, alive 0).
 * Errors: SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_handle_next(shmreg *h, uint64_t *cursor, shmreg_handle_info *out);

/* Clear the handle slots of dead processes (pid gone or reused), adopting
 * their retired memory. A process killed after a change of its became
 * visible but before it was announced (its version and event) has it
 * announced here: the session's version moves on and session_updated
 * (which = SHMREG_MASK_ALL: what changed is not known) or, for one it was
 * deleting, session_deleted is published, stamped with the caller's pid;
 * a change already announced may be announced a second time. Followers of
 * events (shmreg-sync) thus never miss a change a crash cut short.
 * Returns the number cleared (>= 0) or SHMREG_EFORK. */
int shmreg_reap(shmreg *h);

#define SHMREG_CHECK_REPAIR 0x1u

typedef struct shmreg_check_report {
    uint64_t problems;        /* structural problems (corruption) found */
    uint64_t leaked_blocks;   /* blocks owned by dead processes, unreachable */
    uint64_t leaked_bytes;
    uint64_t reclaimed_blocks;/* with REPAIR: blocks returned to the heap */
    uint64_t stale_handles;   /* handles of dead processes */
    uint64_t reaped_handles;  /* with REPAIR: of those, cleared */
    uint64_t sessions, dialogs, heap_blocks_used, heap_blocks_free;
    uint64_t reserved[8];        /* reserved for later fields (see "growth") */
} shmreg_check_report;

/* Called once per problem with a one-line description. */
typedef void (*shmreg_problem_fn)(void *arg, const char *what);

/* Full consistency check of the segment: header, every offset and length,
 * session table vs index, dialogs vs sessions, allocator accounting. Runs
 * concurrently with workers (it takes no lock a reader needs; with REPAIR
 * it takes allocator and index locks briefly). Work attributable to live
 * processes (a create in flight) is not a problem. With SHMREG_CHECK_REPAIR
 * it clears dead handles and reclaims leaked blocks, half-deleted sessions
 * and rooms, and dialogs half bound or half unbound by dead processes (the
 * bind undone, the unbind completed); a free list damaged past its first
 * bad entry is cut there and what was beyond given back (still reported as
 * a problem). `problem` may be NULL; `progress` may be NULL
 * and is called with (done, total) now and then.
 * Besides the structures it checks every lock word (one naming no possible
 * holder is a problem), every heap page descriptor and carved count, and
 * every free list's carving cursor; a lock held by a live process for over
 * 2 s is reported as a problem rather than waited on. REPAIR also cuts a
 * free list at its first bad entry and drops a bad cursor (the blocks cut
 * off are given back as leaked), so a second check can come back clean.
 * Returns 0 if no problem was found (leaks alone are not problems; see
 * report), SHMREG_ECORRUPT if structural problems were found (with REPAIR:
 * found before repair), SHMREG_EFORK. */
int shmreg_check(shmreg *h, unsigned flags, shmreg_check_report *report,
                 shmreg_problem_fn problem, void *arg,
                 void (*progress)(void *arg, uint64_t done, uint64_t total));

/* ---------------------------------------------------------------- rooms
 *
 * A conference room has a roster of participants, each a session handled
 * by any worker. The roster is read in place; a participant's shared parts
 * (URI, display name, joined time) are written once at join, and its
 * status and audio-active flag change in place with atomic operations,
 * without a lock and without touching the roster or the room. The number
 * of participants is always the number of roster entries (it is derived,
 * never kept apart), and the roster has exactly max_participants entries,
 * so concurrent joins can never exceed it. A session is in at most one
 * room at a time.
 */

#define SHMREG_MAX_ROOM_PARTICIPANTS 4096u

typedef enum shmreg_room_state {
    SHMREG_ROOM_ANY = 0,          /* as `expected`: any state */
    SHMREG_ROOM_CREATING = 1,
    SHMREG_ROOM_ACTIVE,
    SHMREG_ROOM_LOCKED,
    SHMREG_ROOM_TERMINATING,
    SHMREG_ROOM_TERMINATED,
} shmreg_room_state;
#define SHMREG_ROOM_STATE_COUNT 6

typedef enum shmreg_part_status {
    SHMREG_PART_ANY = 0,          /* as `expected`: any status */
    SHMREG_PART_JOINING = 1,
    SHMREG_PART_ACTIVE,
    SHMREG_PART_ONHOLD,
    SHMREG_PART_MUTED,
    SHMREG_PART_LEAVING,
    SHMREG_PART_LEFT,             /* final */
} shmreg_part_status;
#define SHMREG_PART_STATUS_COUNT 7

/* Room transitions: Creating -> Active; Active <-> Locked;
 * Active, Locked -> Terminating; Terminating -> Terminated.
 * Participant statuses move freely among Joining, Active, OnHold, Muted,
 * Leaving and to Left; Left is final. 1 when allowed, else 0 (also for
 * bad values). Predicates that cannot fail: never an error code. */
int shmreg_room_state_allowed(int from, int to);
int shmreg_part_status_allowed(int from, int to);

/* "Creating", ...; "Joining", ...; NULL for unknown values. */
const char *shmreg_room_state_name(int state);
const char *shmreg_part_status_name(int status);

/* A room read in place: name valid until the caller's read_end. */
typedef struct shmreg_room {
    shmreg_id id;
    int state;                      /* shmreg_room_state, always 1..5: the
                                     * state the lookup found live */
    shmreg_str name;
    uint32_t max_participants, participants;
    uint64_t created_ns;
    uint64_t config_gen;            /* config generation at create */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_room;

/* A participant read in place: uri and display_name valid until the
 * caller's read_end. Status and audio_active are the values of the moment. */
typedef struct shmreg_participant {
    shmreg_id session;
    shmreg_str uri, display_name;
    int status;                     /* shmreg_part_status */
    int audio_active;               /* 0 or 1 */
    uint16_t rtp_port;
    uint64_t joined_ns;
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_participant;

/* Create a room (state Creating) with a fresh random ID. max_participants
 * 1..SHMREG_MAX_ROOM_PARTICIPANTS; name at most SHMREG_MAX_STR bytes.
 * Errors: SHMREG_EINVAL, SHMREG_EFULL (room table or heap full),
 * SHMREG_EFORK. */
int shmreg_room_create(shmreg *h, shmreg_str name, uint32_t max_participants,
                       shmreg_id *room_out);

/* Compare-and-set room state, as shmreg_session_transition. Moving to
 * Terminating or Terminated sets every participant's status to Left.
 * Errors: SHMREG_EINVAL, SHMREG_ENOENT, SHMREG_ECONFLICT, SHMREG_ESTATE,
 * SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_room_transition(shmreg *h, const shmreg_id *room, int expected, int to, int *old);

/* Delete a room: every participant is removed (its session leaves the
 * room), then the room. Errors: SHMREG_ENOENT, SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_room_delete(shmreg *h, const shmreg_id *room);

/* Read a room in place. Requires a read section. Errors: SHMREG_ENOREAD,
 * SHMREG_EINVAL, SHMREG_ENOENT, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_room_get(shmreg *h, const shmreg_id *room, shmreg_room *out);

/* Iterate rooms (cursor from 0; SHMREG_ENOENT at the end). Requires a read
 * section. */
int shmreg_room_next(shmreg *h, uint64_t *cursor, shmreg_room *out);

/* Join `session` to a room with its URI (<= SHMREG_MAX_STR), display name
 * (<= SHMREG_MAX_STR) and RTP port; status Joining, audio inactive.
 * Errors: SHMREG_EINVAL; SHMREG_ENOENT (no such room or session);
 * SHMREG_ESTATE (room is Locked, Terminating or Terminated);
 * SHMREG_EFULL (room full, or heap full); SHMREG_EEXIST (the session is
 * already in a room, this one or another); SHMREG_ECORRUPT;
 * SHMREG_EFOREIGN; SHMREG_EFORK. Nothing is changed on error. A room in
 * state Creating accepts joins. */
int shmreg_room_join(shmreg *h, const shmreg_id *room, const shmreg_id *session,
                     shmreg_str uri, shmreg_str display_name, uint16_t rtp_port);

/* Remove a session from a room (its entry leaves the roster). Errors:
 * SHMREG_ENOENT (no such room, or session not in it), SHMREG_EINVAL,
 * SHMREG_EFORK. Deleting a session does this too. */
int shmreg_room_leave(shmreg *h, const shmreg_id *room, const shmreg_id *session);

/* Compare-and-set a participant's status in place (expected may be
 * SHMREG_PART_ANY); *old receives the status found. Errors: SHMREG_EINVAL,
 * SHMREG_ENOENT, SHMREG_ECONFLICT, SHMREG_ESTATE (from Left), SHMREG_EFORK. */
int shmreg_participant_set_status(shmreg *h, const shmreg_id *room, const shmreg_id *session,
                                  int expected, int to, int *old);

/* Set a participant's audio-active flag in place. Errors: SHMREG_EINVAL,
 * SHMREG_ENOENT, SHMREG_EFORK. */
int shmreg_participant_set_audio(shmreg *h, const shmreg_id *room, const shmreg_id *session,
                                 int active);

/* Iterate a room's roster in place (cursor from 0; SHMREG_ENOENT at the
 * end). Requires a read section. Lock-free: joins and leaves in other
 * processes go on. Errors: SHMREG_ENOREAD, SHMREG_ENOENT (no such room),
 * SHMREG_EINVAL, SHMREG_ECORRUPT, SHMREG_EFORK. */
int shmreg_participant_next(shmreg *h, const shmreg_id *room, uint64_t *cursor,
                            shmreg_participant *out);

/* The room a session is in. Errors: SHMREG_ENOENT (no such session, or in
 * no room), SHMREG_EINVAL, SHMREG_EFORK. */
int shmreg_session_room(shmreg *h, const shmreg_id *session, shmreg_id *room_out);

/* ---------------------------------------------------------------- events
 *
 * Every committed change in the registry is published as an event on a
 * broadcast ring in the segment; any number of subscribers in any
 * processes read it. Publishing takes no lock and allocates nothing; a
 * subscriber never slows a producer. Events carry IDs and small fields
 * inline; bulk data (an SDP) is never copied into an event: read it in
 * place with `shmreg_session_get()`.
 *
 * A subscriber that falls more than a ring behind is lapped: poll tells it
 * exactly how many events it missed. A record claimed by a producer that
 * died before committing it is skipped after a bounded wait
 * (SHMREG_EVENT_SKIP_NS when its writer is dead) and counted as missed.
 */

enum shmreg_event_type {
    SHMREG_EV_SESSION_CREATED = 1,  /* session, new_state (Initiating) */
    SHMREG_EV_STATE_CHANGED = 2,    /* session, old_state, new_state */
    SHMREG_EV_SDP_UPDATED = 3,      /* session, which (SHMREG_SDP_*) */
    SHMREG_EV_SESSION_UPDATED = 4,  /* session, mask of the fields changed
                                     * (SHMREG_MASK_ALL from shmreg_reap) */
    SHMREG_EV_SESSION_DELETED = 5,  /* session, old_state */
    SHMREG_EV_DIALOG_BOUND = 6,     /* session */
    SHMREG_EV_DIALOG_UNBOUND = 7,   /* session */
    SHMREG_EV_CONFIG_CHANGED = 8,   /* config_gen */
    SHMREG_EV_CUSTOM = 9,           /* session (may be zero), data[len] */
    SHMREG_EV_ROOM_CREATED = 10,    /* room, new_state (Creating) */
    SHMREG_EV_ROOM_STATE = 11,      /* room, old_state, new_state */
    SHMREG_EV_PARTICIPANT_JOINED = 12, /* room, session, new_state (Joining) */
    SHMREG_EV_PARTICIPANT_STATUS = 13, /* room, session, old_state, new_state */
    SHMREG_EV_PARTICIPANT_LEFT = 14,   /* room, session, new_state (Left) */
    SHMREG_EV_SESSION_RESTORED = 15,   /* session, new_state: restored (shmreg_sync.h) */
    SHMREG_EV_ROOM_RESTORED = 16,      /* room, new_state: restored (shmreg_sync.h) */
    SHMREG_EV_TIMEOUT = 17,            /* session, old_state, new_state, which (action) */
    SHMREG_EV_PROFILE_JOINED = 18,     /* session, which (the pair's count after), data
                                        * (the profile name's first 12 bytes), len */
    SHMREG_EV_PROFILE_LEFT = 19,       /* as PROFILE_JOINED; for every membership
                                        * that ends: a leave, and each one a final
                                        * state, a timeout's FAIL, a delete or a
                                        * cede ends (after their own event; a
                                        * delete's before session_deleted) */
    SHMREG_EV_VAR_CHANGED = 20,        /* session, data (the key's first 16 bytes: the
                                        * profile events keep 4 for the count), len,
                                        * which (1 set, 0 unset) */
    SHMREG_EV_SESSION_IMPORTED = 21,   /* session, new_state: a foreign copy was made
                                        * or brought up to date (shmreg_sync.h) */
    SHMREG_EV_SESSION_ADOPTED = 22,    /* session, new_state: a dead node's session is
                                        * now this node's own (shmreg_sync.h) */
    SHMREG_EV_TYPE_COUNT
};
#define SHMREG_EV_MASK(type) (1u << (type))
#define SHMREG_EV_ALL (~0u)
#define SHMREG_EVENT_DATA_MAX 16u       /* bytes of a custom event's payload */
#define SHMREG_EVENT_SKIP_NS 1000000ull /* wait for a dead producer's record */

/* One event, delivered by value (it is small). Fields not used by the
 * type are zero.
 *
 * `version` is the session's version (shmreg_session.version) after the
 * change the event reports, on every session event but the profile,
 * variable and custom ones (whose payload fills the record: 0 there) and
 * the participant events (0): a follower orders one session's events by
 * it and drops one whose version it has seen, whatever order or number
 * it receives them in. The events of one change (an update's
 * session_updated and sdp_updated) share it, and are published with one
 * claim on the ring: they arrive one after the other, with no other
 * process's event between them; session_created carries 1,
 * a restore or import the version it brings, session_deleted one more
 * than the last change's, and an announcement of a killed process's
 * change (shmreg_reap) a version of its own. */
typedef struct shmreg_event {
    uint64_t seq;            /* position in the ring's history */
    uint64_t time_ns;        /* when it was published */
    uint32_t type;           /* enum shmreg_event_type */
    int32_t pid;             /* publishing process */
    shmreg_id session;       /* the session, or the participant's session */
    shmreg_id room;          /* room events */
    int old_state, new_state;/* call/room/participant states */
    uint32_t which;          /* SDP side; SESSION_UPDATED: field mask */
    uint64_t config_gen;     /* CONFIG_CHANGED */
    uint32_t len;            /* bytes in data: CUSTOM, PROFILE_*, VAR_CHANGED */
    unsigned char data[SHMREG_EVENT_DATA_MAX];
    uint64_t version;            /* the session's version after the change, or 0 */
    uint64_t reserved[3];        /* reserved for later fields (see "growth") */
} shmreg_event;

typedef struct shmreg_sub shmreg_sub; /* a subscription: one process, one thread */

/* Subscribe to events whose type is in `type_mask` (SHMREG_EV_MASK bits,
 * SHMREG_EV_ALL for all) and, when `session` is not NULL, that concern
 * that session (events with no session, such as CONFIG_CHANGED, are then
 * not delivered). The subscription starts at the current end of the ring:
 * it sees events published from now on. Allocates the subscription (cold
 * path); it must be freed with shmreg_unsubscribe() before the handle is
 * closed. Errors: SHMREG_EINVAL, SHMREG_ENOMEM, SHMREG_EFORK, SHMREG_ECORRUPT
 * (the ring's header fails its check). */
int shmreg_subscribe(shmreg *h, uint32_t type_mask, const shmreg_id *session,
                     shmreg_sub **out);

/* Deliver up to `max` matching events into out[0..]. timeout_ns 0: return
 * at once; > 0: block (futex on a shared word: no polling) until at least
 * one matching event arrives or the time runs out; < 0: block until one
 * arrives. Returns the number delivered (0 on timeout), or an error.
 * *missed (may be NULL) receives how many events were passed over in this
 * call because the subscriber was lapped or their producer died before
 * committing (not counting events filtered out). No allocation.
 * Errors: SHMREG_EINVAL (NULL sub/out, max 0), SHMREG_EFORK. A signal
 * arriving while blocked returns what was delivered so far (maybe 0). */
int shmreg_poll(shmreg_sub *sub, shmreg_event *out, unsigned max, int64_t timeout_ns,
                uint64_t *missed);

typedef struct shmreg_sub_stats {
    uint64_t delivered;     /* events handed out */
    uint64_t filtered;      /* events read and not matching the filter */
    uint64_t missed;        /* lapped or skipped, in all */
    uint64_t skipped;       /* of missed: dead producers' records */
    uint64_t next_seq;      /* where the subscriber stands in the ring */
    uint64_t reserved[4];        /* reserved for later fields (see "growth") */
} shmreg_sub_stats;

/* Counters of a subscription since it was made. Errors: SHMREG_EINVAL. */
int shmreg_sub_stats_get(const shmreg_sub *sub, shmreg_sub_stats *st);

/* Free a subscription. NULL is a no-op. */
void shmreg_unsubscribe(shmreg_sub *sub);

/* Publish an application event: SHMREG_EV_CUSTOM with `len` bytes of
 * `data` (at most SHMREG_EVENT_DATA_MAX) and an optional session ID (NULL
 * for none). Lock-free, allocation-free. Errors: SHMREG_EINVAL (too long,
 * NULL with len), SHMREG_EBUSY (the ring slot is held by a stalled live
 * producer; nothing published), SHMREG_EFORK. */
int shmreg_publish(shmreg *h, const shmreg_id *session, const void *data, size_t len);

#define SHMREG_PUBLISH_BATCH_MAX 64u /* events one shmreg_publish_batch() takes */

/* Publish n application events (1..SHMREG_PUBLISH_BATCH_MAX) with one
 * claim on the ring: event i is SHMREG_EV_CUSTOM with len[i] bytes of
 * data[i] and the session sessions[i] (`sessions` NULL: none for all).
 * They get consecutive sequence numbers in array order, so a subscriber
 * that receives two of them receives them in this order with no other
 * event between, and the ring's one contended word is touched once for
 * all n: the cheaper way to publish several. Every event is checked
 * before any is published. Lock-free, allocation-free; the arrays are
 * only read during the call.
 * Errors: SHMREG_EINVAL (NULL data or len, n 0 or over the maximum, an
 * event shmreg_publish would refuse: nothing
 * published), SHMREG_EBUSY (some ring slots were held by a stalled live
 * producer: those events were dropped, counted in events_dropped, and the
 * others published), SHMREG_EFORK. */
int shmreg_publish_batch(shmreg *h, const shmreg_id *sessions, const void *const *data,
                         const size_t *len, size_t n);

/* "session_created", "state_changed", ... for a type; NULL if unknown. */
const char *shmreg_event_name(uint32_t type);

/* Name -> type (as returned by shmreg_event_name); SHMREG_EINVAL if unknown. */
int shmreg_event_parse(const char *name, uint32_t *type);


/* ---------------------------------------------------------------- configs
 *
 * Named, versioned configs in LMDB, read in place through views, with
 * their documents and text format: the config half of the API, declared
 * and documented in shmreg_config.h. */
#include "shmreg_config.h"

/* ---------------------------------------------------------------- sync, restore
 *
 * Persistence behind the registry (shmreg-sync, a daemon) and restore of
 * a new registry from what it wrote: declared and documented in
 * shmreg_sync.h. */
#include "shmreg_sync.h"

#ifdef __cplusplus
}
#endif

#endif /* SHMREG_H */
