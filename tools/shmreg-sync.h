/*
 * shmreg-sync.h — the seam between shmreg-sync's source (the registry:
 * its event ring and in-place reads, tools/shmreg-sync.c) and its sinks
 * (where records go: LMDB, tools/shmreg-sync-lmdb.c, the node's own copy
 * on disk; Redis, tools/shmreg-sync-redis.c, the mirror between hosts).
 *
 * A sink stores opaque records (shmreg_session_encode / shmreg_room_encode)
 * under 16-byte IDs, in batches: begin, put/del/prune, commit with the
 * ring position the batch brings the copy up to. A commit must store the
 * position atomically with the data; `sync` makes what was committed
 * durable (fsync) and says up to which position. Nothing here knows SIP
 * or the segment: a sink sees IDs, bytes and positions.
 */
#ifndef SHMREG_SYNC_TOOL_H
#define SHMREG_SYNC_TOOL_H

#include <stddef.h>
#include <stdint.h>

#include "shmreg.h"

enum { SINK_SESSION = 0, SINK_ROOM = 1 };

/* How a sink failed: a full store (MDB_MAP_FULL) is told apart so the
 * daemon can say what to do about it. */
enum { SINK_ERR = -1, SINK_FULL = -2 };

/* What a sink may want besides the bytes of a session record: its owner
 * node, its version and when the daemon read the change (Redis keeps
 * them beside the record, so importers can order copies without decoding
 * them). NULL for rooms. */
typedef struct sync_meta {
    uint32_t owner;
    uint64_t version;
    uint64_t t_ns;
} sync_meta;

typedef struct sync_sink sync_sink;
struct sync_sink {
    const char *name;
    int (*begin)(sync_sink *s);
    int (*put)(sync_sink *s, int kind, const shmreg_id *id, const void *rec, size_t len,
               const sync_meta *meta);
    int (*del)(sync_sink *s, int kind, const shmreg_id *id);
    /* Delete every stored record of `kind` whose ID keep() refuses;
     * *removed counts them. Inside a batch. */
    int (*prune)(sync_sink *s, int kind, int (*keep)(void *arg, const shmreg_id *id), void *arg,
                 uint64_t *removed);
    /* Commit the batch together with `pos` and `now_ns`. */
    int (*commit)(sync_sink *s, uint64_t pos, uint64_t now_ns);
    void (*abort)(sync_sink *s);
    /* Make every commit so far durable; 0 or an error. */
    int (*sync)(sync_sink *s);
    /* The position and time stored by the last commit (at open: what the
     * store holds). */
    int (*stored)(sync_sink *s, uint64_t *pos, uint64_t *commit_ns);
    void (*close)(sync_sink *s);
    /* NULL for a sink whose failure ends the daemon (LMDB). Set for one
     * that may be unreachable for a while (Redis): a failure only takes
     * it out of the batches until probe() answers 0 again, and then it
     * gets a full resync. */
    int (*probe)(sync_sink *s);
    char err[1024];  /* what the last failure was */
};

/* fsync policy of a sink: every commit, or only when sync() is called. */
enum { SINK_SYNC_NONE = 0, SINK_SYNC_INTERVAL = 1, SINK_SYNC_EACH = 2 };

/* Open (creating if need be) the LMDB sync directory `dir` and take its
 * lock. NULL on failure with the reason in err[]. */
sync_sink *sync_lmdb_open(const char *dir, uint64_t map_bytes, int fsync_mode, char *err,
                          size_t errlen);

/* ---------------------------------------------------------------- the mirror
 *
 * tools/shmreg-sync-redis.c: the Redis sink (pushes this node's own
 * sessions) and the threads that follow the other nodes (imports), hold
 * this node's lease and adopt dead nodes' calls. */
typedef struct mirror mirror;
typedef struct mirror_opts {
    const char *const *urls;
    unsigned nurls;
    const char *registry;   /* path: the mirror's threads open their own handles */
    uint32_t node;          /* this registry's node ID (non-zero) */
    uint64_t lease_ms;      /* lease TTL; renewed every lease_ms / 3 */
    uint64_t stream_max;    /* approximate MAXLEN of the node's change stream */
    unsigned timeout_ms;    /* bound of every Redis call */
    int no_adopt;           /* adopt only on an operator's request */
} mirror_opts;

/* Connect, take the node's lease (a clash: exit status 3), deal with an
 * adoption marker of a previous incarnation, and start the threads.
 * `h` is the daemon's handle (it holds the sync claim). Returns 0, or the
 * exit status to end with (message in err). */
int mirror_start(const mirror_opts *o, shmreg *h, mirror **out, char *err, size_t errlen);
/* The push sink: what the daemon writes own sessions through. */
sync_sink *mirror_sink(mirror *m);
/* The pushing side's state for the status report: up (1) or down (0),
 * the sessions waiting to be pushed, the error that took it down. */
void mirror_push_state(mirror *m, int up, uint64_t backlog, const char *err);
/* Non-zero once a thread found something that must end the daemon (the
 * lease taken by another daemon, or this node adopted by another): the
 * exit status; message in err. When the node was adopted, its sessions
 * in `h` are first handed to the adopter (shmreg_node_cede), so its
 * workers stop changing calls that are no longer theirs. */
int mirror_fatal(mirror *m, shmreg *h, char *err, size_t errlen);
/* Stop the threads, close everything. The lease is left to expire. */
void mirror_stop(mirror *m);

/* A line on stderr, "shmreg-sync[PID]: " first, written at once (any thread). */
void sync_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
