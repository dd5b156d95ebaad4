/*
 * ring.h — a lock-free broadcast ring of fixed-size records in shared memory.
 *
 * Many producers in many processes publish small records; any number of
 * subscribers, each in any process, read every record in order without
 * taking a lock and without telling anybody how far they got. The ring
 * lives in a caller-provided region of a MAP_SHARED mapping and holds no
 * pointers, so each process may map it at its own address. It knows
 * nothing of what the records mean: a record is a type (u32), a length and
 * up to SHM_RING_MAX_PAYLOAD bytes carried inline.
 *
 * The ring does not wait for slow subscribers: a subscriber that falls more
 * than one ring behind is told how many records it missed and jumps forward.
 * See ring.c for the slot layout, the commit protocol and why it is built
 * that way.
 *
 * Conventions. Functions return 0 (or a count) or a negative SHM_RING_E*
 * code; shm_ring_strerror() names it. The codes share their numbers with
 * SHM_E* / SHMREG_E* where the meaning is the same. Times are nanoseconds
 * of CLOCK_MONOTONIC. No function allocates memory or takes a lock; only
 * shm_ring_wait() and the rare stall paths described below make system
 * calls.
 *
 * Every process that touches one ring must see the others' pids (one pid
 * namespace): a pid is how a stalled writer is told from a dead one.
 */
#ifndef SHM_RING_H
#define SHM_RING_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/* ---------------------------------------------------------------- errors */

#define SHM_RING_EINVAL    (-1)  /* bad argument: NULL, misaligned, bad size, payload too long */
#define SHM_RING_ECORRUPT  (-7)  /* header or record failed a consistency check */
#define SHM_RING_EVERSION  (-9)  /* a ring, but of another layout version */
#define SHM_RING_ESYS      (-11) /* a system call failed unexpectedly (errno kept) */
#define SHM_RING_EBUSY     (-13) /* publish gave up: its slot is held by a live, stalled producer */
#define SHM_RING_ETIMEDOUT (-14) /* shm_ring_wait() ran out of time */
#define SHM_RING_EINTR     (-17) /* shm_ring_wait() was interrupted by a signal */

/* "SHM_RING_EINVAL: invalid argument", ... Static string; "unknown error"
 * for anything else. */
const char *shm_ring_strerror(int err);

/* ---------------------------------------------------------------- limits */

#define SHM_RING_RECORD_BYTES 64u   /* one slot, one cache line */
#define SHM_RING_MAX_PAYLOAD  48u   /* inline payload bytes per record */
#define SHM_RING_INTENTS      128u  /* producer threads whose claims subscribers can see */
#define SHM_RING_HEADER_BYTES (256u + SHM_RING_INTENTS * 64u) /* header + intents, before the slots */
#define SHM_RING_ALIGN        64u   /* the region must start on this boundary */
#define SHM_RING_MIN_RECORDS  2u
#define SHM_RING_MAX_RECORDS  (1u << 30)

/* How long a subscriber waits for a claimed record that is not committed
 * before it skips it (counting it in `skipped`):
 *
 *   SHM_RING_SKIP_NS  — when no live thread holds the claim: its producer
 *                       was killed between claiming the sequence number
 *                       and committing it. Default 1 ms.
 *   SHM_RING_LIVE_NS  — when a live thread holds it (descheduled, stopped,
 *                       or a zombie nobody has reaped yet). Default 100 ms.
 *
 * "Holds" is known from the slot's mark (the writer's pid) once the
 * producer has marked its slot, and before that from the producer thread's
 * claim intent (one of SHM_RING_INTENTS entries in the ring, taken by a
 * thread on its first publish; see ring.c). A producer thread that found
 * no free intent entry publishes without one: its claims, until marked,
 * get only skip_ns.
 *
 * Both bounds run from the moment the subscriber first finds the record
 * stuck with its slot as it is now (the clock restarts when the slot
 * changes). They are stored in the ring, so every process applies the
 * same policy; shm_ring_set_bounds() changes them. So for one stuck record
 * a subscriber waits at most skip_ns when its producer was SIGKILLed and
 * reaped (2 x skip_ns if it first saw the zombie), and live_ns when the
 * producer is alive but does not commit; a chain of stalled writers queued
 * on one slot can add up to a few live_ns. A producer that laps onto a
 * slot still held by a live, stalled producer waits at most live_ns too,
 * then gives up (SHM_RING_EBUSY).
 *
 * A live producer descheduled for longer than live_ns has its record
 * skipped. It is still committed later and never seen torn. */
#define SHM_RING_SKIP_NS  1000000ull
#define SHM_RING_LIVE_NS  100000000ull
/* Neither bound may exceed this: the bounds are read from shared memory
 * by every producer, so attach refuses a ring whose stored bounds are not
 * 1 <= skip_ns <= live_ns <= SHM_RING_MAX_BOUND_NS (a scribbled live_ns
 * would otherwise make a producer wait for ever), and set_bounds refuses
 * to store such values. */
#define SHM_RING_MAX_BOUND_NS 10000000000ull

/* ---------------------------------------------------------------- types */

/* The process-local view of a ring (filled by shm_ring_attach(); holds the
 * local address and the geometry read and checked once at attach, so a
 * header scribbled later cannot send an index out of bounds). Plain memory,
 * no resources: nothing to free. */
typedef struct shm_ring {
    struct shm_ring_hdr *hdr;
    struct shm_ring_slot *slots;
    uint64_t nrecords;
    uint64_t mask;
} shm_ring;

/* One record as delivered to a subscriber (a copy, owned by the caller).
 * payload[len..SHM_RING_MAX_PAYLOAD) is zero. */
typedef struct shm_ring_record {
    uint64_t seq;                 /* position in the ring's history, from 0 */
    uint32_t type;
    uint32_t len;                 /* 0..SHM_RING_MAX_PAYLOAD */
    unsigned char payload[SHM_RING_MAX_PAYLOAD];
} shm_ring_record;

/* A subscriber: private memory of the process that reads (never shared,
 * never written to the ring). The counters are cumulative since the last
 * subscribe and always satisfy
 *     next == start + received + missed
 * where `start` is the sequence the subscriber began at. */
typedef struct shm_ring_sub {
    uint64_t next;       /* sequence number of the next record to deliver */
    uint64_t received;   /* records delivered */
    uint64_t missed;     /* sequence numbers passed over without delivery:
                          * overwritten before being read (lapped), skipped,
                          * or corrupt */
    uint64_t skipped;    /* of `missed`: claimed but not committed in time */
    uint64_t corrupt;    /* of `missed`: committed records that failed checks */
    /* private: stall bookkeeping for the record at `next` */
    uint64_t stall_seq;  /* sequence + 1 we are stalled on; 0: none */
    uint64_t stall_word; /* its slot's word when the clock started */
    uint64_t stall_since;
    uint64_t stall_check;/* when to look at the writer's pid again */
} shm_ring_sub;

typedef struct shm_ring_stats {
    uint64_t published;  /* sequence numbers claimed so far (the tail) */
    uint64_t stolen;     /* slots taken back from dead producers */
    uint64_t dropped;    /* publishes that gave up with SHM_RING_EBUSY */
    uint32_t nrecords;
    uint32_t wait_pending; /* armings no producer has woken yet (see ring.c) */
    uint64_t skip_ns, live_ns;
} shm_ring_stats;

/* ---------------------------------------------------------------- setup */

/* Bytes a ring of `nrecords` needs (header + slots), or 0 when nrecords is
 * not a power of two in [SHM_RING_MIN_RECORDS, SHM_RING_MAX_RECORDS]. */
size_t shm_ring_bytes(uint32_t nrecords);

/* Format `region` (SHM_RING_ALIGN-aligned, at least shm_ring_bytes(nrecords)
 * bytes) as an empty ring with the default bounds. Writes every slot's
 * first word, so it touches every page of the ring. Not safe against
 * concurrent users of the same region: format before others attach.
 * Errors: SHM_RING_EINVAL (NULL, misaligned, bad nrecords, too small). */
int shm_ring_init(void *region, size_t bytes, uint32_t nrecords);

/* Validate the header of the ring at `region` (read only): magic, layout
 * version, record and header sizes, nrecords a power of two in range, the
 * stall bounds in range (see SHM_RING_MAX_BOUND_NS), and the ring fitting
 * in `bytes`. Errors: SHM_RING_EINVAL (NULL, misaligned,
 * bytes smaller than a header), SHM_RING_ECORRUPT (not a ring, or a
 * geometry that does not add up), SHM_RING_EVERSION (another layout). */
int shm_ring_check(const void *region, size_t bytes);

/* shm_ring_check(), then fill `ring` with this process's view of it. The
 * view stays valid while `region` stays mapped. Errors: as check. */
int shm_ring_attach(shm_ring *ring, void *region, size_t bytes);

/* Change the stall bounds for every process using the ring (0 keeps the
 * current value). Errors: SHM_RING_EINVAL (NULL ring, live_ns < skip_ns,
 * live_ns > SHM_RING_MAX_BOUND_NS). */
int shm_ring_set_bounds(shm_ring *ring, uint64_t skip_ns, uint64_t live_ns);

/* Counters, read without a lock (each exact, the set not one snapshot). */
void shm_ring_stats_get(const shm_ring *ring, shm_ring_stats *st);

/* ---------------------------------------------------------------- producers */

/* Append one record; `len` bytes from `payload` (NULL allowed when len is
 * 0). Lock-free: one fetch_add claims a sequence number, the record is
 * written into its slot and committed by one release store. When a
 * subscriber has gone to sleep in shm_ring_wait() since the last wake, the
 * commit also wakes it (one futex syscall); otherwise no system call is
 * made (but the first publish of each thread takes a claim-intent entry:
 * a scan of the table, and a tgkill() per entry it considers reusing).
 *
 * Returns 0 when the record was committed, or when it was overwritten by a
 * newer record before it could be written (the producer itself stalled for
 * a whole lap: subscribers count it as missed, as if it had been
 * overwritten after commit). Errors: SHM_RING_EINVAL (NULL ring, len >
 * SHM_RING_MAX_PAYLOAD, payload NULL with len > 0; nothing is claimed),
 * SHM_RING_EBUSY (the slot was held by a live producer stalled for
 * live_ns: the sequence number was claimed but nothing written, so
 * subscribers skip it; the caller may publish again). */
int shm_ring_publish(shm_ring *ring, uint32_t type, const void *payload,
                     uint32_t len);

/* One record of a batch (shm_ring_publish_n). */
typedef struct shm_ring_out {
    uint32_t type;
    uint32_t len;
    const void *payload;
} shm_ring_out;

#define SHM_RING_MAX_BATCH 64u  /* records one shm_ring_publish_n may claim */

/* Append n records with one claim: one fetch_add takes n consecutive
 * sequence numbers, so the records follow each other in the ring in array
 * order (a subscriber that gets two of them gets them in this order, with
 * none of another producer's in between), and the contended tail is
 * touched once for all of them. Each record is then marked, written and
 * committed as shm_ring_publish() does, and one wake check follows the
 * last commit. Every record is checked before anything is claimed.
 *
 * Returns 0 when every record was committed (or overwritten, as for
 * shm_ring_publish). Errors: SHM_RING_EINVAL (NULL ring or recs, n of 0,
 * over SHM_RING_MAX_BATCH or over the ring's record count, or a record
 * shm_ring_publish would refuse; nothing is claimed), SHM_RING_EBUSY (some
 * slots were held by a live stalled producer: those records were dropped,
 * the others committed; *dropped, if not NULL, says how many). */
int shm_ring_publish_n(shm_ring *ring, const shm_ring_out *recs, uint32_t n, uint32_t *dropped);

/* ---------------------------------------------------------------- subscribers */

/* Start `sub` at the current tail: it will see only records published from
 * now on. Counters are reset. */
void shm_ring_subscribe_tail(const shm_ring *ring, shm_ring_sub *sub);

/* Start `sub` at sequence `seq` (older records than one ring back count as
 * missed on the first poll). Counters are reset. */
void shm_ring_subscribe_at(shm_ring_sub *sub, uint64_t seq);

/* Copy up to `max` committed records, in sequence order, into out[0..]
 * and advance `sub`. Returns how many were copied (0: nothing ready now;
 * never blocks). *missed (may be NULL) is set to the sequence numbers
 * passed over during this call (see shm_ring_sub.missed): records
 * overwritten before they were read, records whose producer did not commit
 * within the stall bound (also counted in sub->skipped), corrupt records
 * (sub->corrupt). Every copied record is exactly as its producer committed
 * it; a record being overwritten while copied is detected and counted as
 * missed, never returned torn. A record that is claimed but not yet
 * committed stops the poll until it is committed or the bound runs out
 * (the bound runs from the first poll or wait that found it stuck).
 * Errors: SHM_RING_EINVAL (NULL ring/sub, NULL out with max > 0),
 * SHM_RING_ECORRUPT (the first record of this call failed its checks; it
 * has been passed over, so the next call goes on). */
int shm_ring_poll(shm_ring *ring, shm_ring_sub *sub, shm_ring_record *out,
                  uint32_t max, uint64_t *missed);

/* Sleep until shm_ring_poll() on `sub` has something to do: a committed
 * record, a lap to report, or a stall bound that ran out. timeout_ns < 0
 * waits forever, 0 only checks. Returns 0 (poll now), SHM_RING_ETIMEDOUT
 * (nothing by the deadline; at least timeout_ns has elapsed),
 * SHM_RING_EINTR (a signal handler ran), SHM_RING_EINVAL, SHM_RING_ESYS. */
int shm_ring_wait(shm_ring *ring, shm_ring_sub *sub, int64_t timeout_ns);

/* ---------------------------------------------------------------- inspection */

enum shm_ring_slot_state {
    SHM_RING_SLOT_COMMITTED = 0, /* the slot holds sequence `seq`, committed */
    SHM_RING_SLOT_WRITING   = 1, /* a producer (*pid) holds the slot; which
                                  * sequence it writes is not recorded */
    SHM_RING_SLOT_OTHER     = 2  /* the slot holds another sequence or is
                                  * empty: `seq` was never written there, or
                                  * has been overwritten */
};

/* What the slot of `seq` holds now (for admin tools and tests: lock-free,
 * read only). *pid (may be NULL) gets the writer for SLOT_WRITING, else 0.
 * Returns an enum shm_ring_slot_state, or SHM_RING_EINVAL. */
int shm_ring_slot_state(const shm_ring *ring, uint64_t seq, pid_t *pid);

/* ---------------------------------------------------------------- test hooks */

#ifdef SHMREG_TESTING /* built into the test library only (Makefile) */
/* For tests only: claim the next sequence number (*seq) as a producer does
 * and stop there, as if descheduled (or, in a child that then dies,
 * killed). mark = 0 stops right after the fetch_add, leaving this thread's
 * claim intent naming *seq (until the thread's next publish); mark = 1
 * also marks the slot as being written by this process. Returns 0,
 * SHM_RING_EINVAL, or (mark = 1) the publish errors. */
int shm_ring_claim_for_test(shm_ring *ring, int mark, uint64_t *seq);

/* For tests only: finish a claim made by shm_ring_claim_for_test() the way
 * a producer that was merely slow would: mark the slot if not yet marked,
 * write the record, commit. Returns as shm_ring_publish(). */
int shm_ring_commit_for_test(shm_ring *ring, uint64_t seq, uint32_t type,
                             const void *payload, uint32_t len);
#endif

#endif /* SHM_RING_H */
