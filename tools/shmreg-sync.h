/*
 * shmreg-sync.h — the seam between shmreg-sync's source (the registry:
 * its event ring and in-place reads, tools/shmreg-sync.c) and its sinks
 * (where records go: LMDB today, tools/shmreg-sync-lmdb.c; Redis for the
 * multi-host mirror later).
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

typedef struct sync_sink sync_sink;
struct sync_sink {
    const char *name;
    int (*begin)(sync_sink *s);
    int (*put)(sync_sink *s, int kind, const shmreg_id *id, const void *rec, size_t len);
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
    char err[1024];  /* what the last failure was */
};

/* fsync policy of a sink: every commit, or only when sync() is called. */
enum { SINK_SYNC_NONE = 0, SINK_SYNC_INTERVAL = 1, SINK_SYNC_EACH = 2 };

/* Open (creating if need be) the LMDB sync directory `dir` and take its
 * lock. NULL on failure with the reason in err[]. */
sync_sink *sync_lmdb_open(const char *dir, uint64_t map_bytes, int fsync_mode, char *err,
                          size_t errlen);

#endif
