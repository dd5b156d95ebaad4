/*
 * ring.c — a lock-free broadcast ring in shared memory.
 *
 * What it does
 * ------------
 * An array of 2^k fixed 64-byte slots and a 64-bit tail counter, in a
 * region many processes map. Producers append records; every subscriber
 * reads every record, in order, on its own schedule. The ring never waits
 * for a subscriber and keeps no per-subscriber state in shared memory: a
 * subscriber is the sequence number of the next record it wants, held in
 * its own private memory. Record number s lives in slot s & (N - 1) until
 * record s + N overwrites it; a subscriber that falls behind further than
 * that learns exactly how many records it missed and jumps forward.
 *
 * This is the shape of the LMAX disruptor and of Linux's perf ring, minus
 * the consumer gating: a broadcast bus for small notifications, where a
 * slow reader losing old events is better than a fast writer blocking.
 *
 * Layout
 * ------
 *   region + 0     header (struct shm_ring_hdr):
 *                    line 0  magic, version, geometry, stall bounds
 *                    line 1  tail: the next sequence number to hand out
 *                    line 2  arm and served counters (served is the futex)
 *                    line 3  statistics (stolen, dropped)
 *                    lines 4..131  claim intents, one line per producer
 *                            thread: owner (pid, tid) and what it claims
 *   region + 8448  slot[0] .. slot[N-1], 64 bytes each:
 *
 *     0        8               16                                  64
 *     +--------+-------+-------+-----------------------------------+
 *     |  word  | type  |  len  |  payload, up to 48 bytes inline   |
 *     +--------+-------+-------+-----------------------------------+
 *
 *   word, the slot's only control field, in one of three states:
 *     0                    empty: never written since the ring was made
 *     (s << 1) | 1         committed: holds record s, complete
 *     (pid << 1)           being written by process pid (pid > 0)
 *
 * Every field is an atomic, copied with relaxed loads and stores; word
 * alone orders them. The tail and the wake counters sit on lines of their
 * own, so that the hot tail does not make the words every producer reads
 * after a commit bounce between caches.
 * Nothing in the region is a pointer. Sequence numbers are 63 bits and do
 * not wrap (2^63 records at a billion a second is 292 years).
 *
 * Publishing
 * ----------
 *   1. claim:  announce "claiming" in our intent line, s = fetch_add(tail,
 *              1), then write s into the intent. One contended atomic, no
 *              retry loop, so producers never wait for each other to get a
 *              number; the intent stores hit a line only we write.
 *   2. mark:   CAS word from "committed t < s" or "empty" to
 *              "written by me", then clear the intent. A committed t > s
 *              means we stalled for a whole lap and a newer record owns
 *              the slot: drop ours; it reads to everyone as overwritten,
 *              which it was.
 *   3. fill:   release fence, then type, len and payload (relaxed stores).
 *   4. commit: ONE release store: word = (s << 1) | 1.
 *   5. wake:   seq_cst fence; if a subscriber armed since the last wake,
 *              advance `served` and FUTEX_WAKE everyone sleeping on it.
 *
 * Batches. shm_ring_publish_n() claims n numbers with one fetch_add of n,
 * marks the n slots in order, then fills and commits each, and does step
 * 5 once. Its intent says "at least s" (the first number) while it marks:
 * an intent names one number or a lower bound, and the bound covers the
 * whole range. The tail, the line every producer fights over, is taken
 * once for n records, and the records sit together in the ring.
 *
 * Why the mark. Reading is a seqlock (below), and a seqlock only works if
 * the writer announces itself before touching the data. It also needs one
 * writer per slot at a time: if a producer that stalled a lap ago could
 * still be storing into the slot while the current one commits, the two
 * payloads would interleave under a valid commit word, and no reader could
 * tell. So the mark is a CAS and it is exclusive. It is taken only from a
 * committed (or empty) slot, given up only by the commit, and taken over
 * ("stolen") only from a process that is provably dead, because a dead
 * process stores nothing more. That is why the mark is the writer's pid:
 * it is the one thing a stranger can check (kill(pid, 0)) to tell
 * "descheduled" from "gone". A producer that laps onto a slot marked by a
 * live but stalled process waits up to live_ns and then gives up with
 * SHM_RING_EBUSY, leaving its sequence number as a hole that subscribers
 * skip; it never writes beside another writer.
 *
 * Reading
 * -------
 * For record s: load word (acquire); if it is "committed s", copy the
 * other seven words (relaxed), acquire fence, load word again. Equal:
 * the copy is exactly what was committed, because any producer that
 * started overwriting the slot changed word first (its mark precedes its
 * data by a release fence, which pairs with our acquire fence). Different:
 * we were lapped mid-copy. If word says "committed t > s", or the tail is
 * more than N past s, record s is gone: jump to tail - N, the oldest
 * record that may still be there, and count the gap as missed.
 *
 * Records that never commit
 * -------------------------
 * A producer killed (or stalled) between claim and commit leaves a claimed
 * sequence number whose slot never says "committed s", while later ones
 * do. A subscriber that finds its next record in that state waits skip_ns
 * (SHM_RING_SKIP_NS, 1 ms), then asks whether a live thread still holds
 * the claim: the slot's mark names the writer's pid once it is marked;
 * before that, the claim intents say who is between fetch_add and mark. If
 * someone alive holds it, it waits on, up to live_ns (SHM_RING_LIVE_NS,
 * 100 ms), asking again every skip_ns; if nobody does, it skips the record
 * and counts it in `skipped` — its own count: each subscriber decides
 * alone, so a shared count would double. The clock runs from when the
 * subscriber first saw the slot as it is now, and restarts when it
 * changes: a producer queued behind an older writer gets a fresh bound
 * when that writer commits.
 *
 * Claim intents. Why they exist: between the fetch_add and the mark, a
 * live producer and a dead one look the same in the slot, and that window
 * is not small in time. The fetch_add on the contended tail is the slowest
 * instruction of a publish, and an interrupt that arrives while it runs is
 * taken right after it — inside the window — so a descheduled producer
 * usually stops exactly there. With a time bound alone, 7 processes on 2
 * cores lost a record in most runs of t/ring.c. So each producer thread
 * owns a line in the header (found or taken, free or from a dead thread,
 * on its first publish) and writes there "claiming, at least l" before the
 * fetch_add (l: one past its previous claim, so a subscriber can rule it
 * out for older numbers), "claimed s" after, and clears it once the mark
 * speaks for it. The fetch_add is a release, so a subscriber that sees the
 * tail also sees the announcement. Liveness is per thread (tgkill(pid,
 * tid, 0)). A thread that finds no free line (more than SHM_RING_INTENTS
 * live producer threads) publishes without one, and its unmarked claims
 * get only skip_ns.
 *
 * Nothing is torn by a skip that turns out wrong: a record committed after
 * some subscriber skipped it is complete when it appears, so it is either
 * delivered whole to a subscriber that has not passed it yet, or not at
 * all. A dead producer's mark is stolen by the next producer that laps
 * onto its slot, so the hole does not come back every lap.
 *
 * Blocking
 * --------
 * Two counters: `arm`, bumped by each subscriber about to sleep, and
 * `served`, the futex word, moved up to `arm` by the producer that wakes.
 * A subscriber takes a ticket (fetch_add on arm), reads `served`, checks
 * once more, and FUTEX_WAITs on `served` (a shared futex: no
 * FUTEX_PRIVATE_FLAG, the word is in a MAP_SHARED mapping). A producer,
 * after committing, fences and compares the two; only when they differ
 * does it CAS `served` up to `arm` and FUTEX_WAKE. So a publish makes a
 * system call once per subscriber sleep, not per record, and none at all
 * while nobody sleeps. The fences make a Dekker pair of it: either the
 * producer sees the ticket, or the subscriber's re-check sees the commit;
 * a subscriber cannot sleep on a `served` value that a producer has moved
 * since it read it (the kernel compares before sleeping); and a subscriber
 * that finds its own ticket already served (a wake meant for an earlier
 * sleeper took it) takes a new one before it sleeps, because a later
 * producer would see nothing to wake.
 *
 * Crashes. A subscriber killed asleep costs one spare FUTEX_WAKE: the next
 * producer serves its ticket and the counters agree again — where a count
 * of sleepers would stay up forever and make every later publish a system
 * call. A producer killed between moving `served` and its FUTEX_WAKE (a few
 * instructions) leaves the sleepers asleep with nobody to wake them, so no
 * sleep is longer than WAIT_SLICE_NS (1 s): that is the worst case, a one
 * second delay, once.
 *
 * Distrust
 * --------
 * Geometry is read from the header once, checked, and kept in the
 * process-local shm_ring, so a header scribbled later cannot move an index
 * out of bounds. A pid read from a slot is range-checked before kill()
 * sees it (kill(-1, 0) would address every process). A delivered record's
 * length is checked against SHM_RING_MAX_PAYLOAD.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "ring.h"
#include "crashpoint.h"

#define RING_MAGIC "shmring\x1a"
#define RING_VERSION 2u
#define PAYLOAD_WORDS (SHM_RING_MAX_PAYLOAD / 8)
#define SPIN_LIMIT 256              /* loads before a producer looks at the clock */
#define CHECK_NS 100000ull          /* a waiting producer re-checks the holder's pid */
#define YIELD_NS 1000000ull         /* then stops yielding and sleeps */
#define NAP_NS 50000ull
#define WAIT_SLICE_NS 1000000000ull /* longest single futex sleep */

/* The steps of a publish, inlined into both callers: with a second caller
 * (the batch) GCC stopped inlining them into shm_ring_publish, and four
 * calls made a single publish 8% slower. */
#define RING_HOT static inline __attribute__((always_inline))

/* What one producer thread is claiming (see "Claim intents"). */
struct shm_ring_intent {
    _Atomic uint64_t owner;         /* pid << 32 | tid; 0: free */
    _Atomic uint64_t claim;         /* 0 idle; INTENT_FROM(l); INTENT_AT(s) */
    char pad[48];
};

struct shm_ring_hdr {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint32_t record_bytes;
    uint32_t nrecords;
    uint64_t total_bytes;
    _Atomic uint64_t skip_ns;
    _Atomic uint64_t live_ns;
    alignas(64) _Atomic uint64_t tail;
    alignas(64) _Atomic uint32_t arm;      /* armings by subscribers about to sleep */
    _Atomic uint32_t served;               /* armings woken; the futex word */
    alignas(64) _Atomic uint64_t stolen;
    _Atomic uint64_t dropped;
    alignas(64) struct shm_ring_intent intents[SHM_RING_INTENTS];
};

struct shm_ring_slot {
    _Atomic uint64_t word;
    _Atomic uint64_t meta;          /* type | len << 32 */
    _Atomic uint64_t data[PAYLOAD_WORDS];
};

_Static_assert(sizeof(struct shm_ring_intent) == 64, "an intent is one line");
_Static_assert(sizeof(struct shm_ring_hdr) == SHM_RING_HEADER_BYTES, "header: 4 lines + intents");
_Static_assert(sizeof(struct shm_ring_slot) == SHM_RING_RECORD_BYTES, "slot is one line");
_Static_assert(sizeof(shm_ring_record) == SHM_RING_RECORD_BYTES, "record is one line");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_INT_LOCK_FREE == 2,
               "cross-process atomics must be lock-free");

#define COMMITTED(s) (((uint64_t)(s) << 1) | 1u)
#define IS_COMMITTED(w) (((w) & 1u) != 0)
#define IS_WRITING(w) ((w) != 0 && !IS_COMMITTED(w))
#define WORD_SEQ(w) ((w) >> 1)
#define WORD_PID(w) ((w) >> 1)
#define WRITING(pid) ((uint64_t)(pid) << 1)

/* Intent words: claiming a number >= l, not yet known; or claimed s. */
#define INTENT_FROM(l) (((uint64_t)(l) + 1) << 1)
#define INTENT_AT(s) (((uint64_t)(s) << 1) | 1u)
#define INTENT_KNOWN(c) (((c) & 1u) != 0)
#define INTENT_SEQ(c) ((c) >> 1)
#define INTENT_LOW(c) (((c) >> 1) - 1)
#define NO_INTENT UINT32_MAX

enum { STALL_WAIT = 0, STALL_SKIP = 1 };
enum { ACQ_OK = 0, ACQ_LAPPED = 1 };     /* or SHM_RING_EBUSY */

/* ---------------------------------------------------------------- helpers */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

static void nap(uint64_t ns)
{
    struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
    nanosleep(&ts, NULL);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* getpid() is a system call in current glibc; the mark needs it on every
 * publish, so cache it and forget it in a forked child. (A child made by
 * a raw clone() skips the atfork handler and marks with its parent's pid:
 * its slots then look alive while the parent is, which costs waits up to
 * live_ns, never a torn record.) */
static _Atomic int self_pid;
static pthread_once_t self_once = PTHREAD_ONCE_INIT;

static void self_forget(void) { atomic_store_explicit(&self_pid, 0, memory_order_relaxed); }
static void self_register(void) { pthread_atfork(NULL, NULL, self_forget); }

static inline uint64_t self_mark(void)
{
    int pid = atomic_load_explicit(&self_pid, memory_order_relaxed);
    if (__builtin_expect(pid == 0, 0)) {
        pthread_once(&self_once, self_register);
        pid = (int)getpid();
        atomic_store_explicit(&self_pid, pid, memory_order_relaxed);
    }
    return WRITING(pid);
}

/* 1 when `pid` (read from shared memory: not trusted) names a live
 * process: the engine's one rule (proc.h). */
static int pid_alive(uint64_t pid)
{
    return pid <= SHM_PID_LIMIT && shm_proc_alive((pid_t)pid, 0);
}

/* 1 when the thread named by an intent's owner word (untrusted) lives. */
static int thread_alive(uint64_t owner)
{
    uint64_t pid = owner >> 32, tid = owner & 0xffffffffu;
    if (pid == 0 || pid > SHM_PID_LIMIT || tid == 0 || tid > SHM_PID_LIMIT)
        return 0;
    int saved = errno;
    int alive = syscall(SYS_tgkill, (pid_t)pid, (pid_t)tid, 0) == 0 || errno == EPERM;
    errno = saved;
    return alive;
}

static long futex(_Atomic uint32_t *addr, int op, uint32_t val,
                  const struct timespec *ts)
{
    return syscall(SYS_futex, (uint32_t *)addr, op, val, ts, NULL, 0);
}

static inline struct shm_ring_slot *slot_of(const shm_ring *r, uint64_t s)
{
    return &r->slots[s & r->mask];
}

/* This thread's intent entry in the ring it last published to. Found (or
 * taken: free, or owned by a dead thread) on the first publish, then
 * cached; a forked child has a new pid and looks again. */
static __thread struct {
    int pid, tid;
    const struct shm_ring_hdr *hdr;
    uint32_t idx;                   /* NO_INTENT: the table was full */
    uint64_t next;                  /* our next claim is at least this */
} t_self;

RING_HOT struct shm_ring_intent *my_intent(shm_ring *r, int pid)
{
    struct shm_ring_hdr *h = r->hdr;
    if (t_self.pid != pid) {
        t_self.pid = pid;
        t_self.tid = (int)syscall(SYS_gettid);
        t_self.hdr = NULL;
    }
    if (t_self.hdr == h)
        return t_self.idx == NO_INTENT ? NULL : &h->intents[t_self.idx];
    uint64_t me = (uint64_t)pid << 32 | (uint32_t)t_self.tid;
    uint32_t idx = NO_INTENT;
    for (uint32_t i = 0; i < SHM_RING_INTENTS && idx == NO_INTENT; i++)
        if (atomic_load_explicit(&h->intents[i].owner, memory_order_relaxed) == me)
            idx = i;
    for (uint32_t i = 0; i < SHM_RING_INTENTS && idx == NO_INTENT; i++) {
        uint64_t o = atomic_load_explicit(&h->intents[i].owner, memory_order_relaxed);
        if ((o == 0 || !thread_alive(o)) &&
            atomic_compare_exchange_strong_explicit(&h->intents[i].owner, &o, me,
                memory_order_relaxed, memory_order_relaxed))
            idx = i;
    }
    if (idx != NO_INTENT)
        atomic_store_explicit(&h->intents[idx].claim, 0, memory_order_relaxed);
    t_self.hdr = h;
    t_self.idx = idx;
    t_self.next = 0;
    return idx == NO_INTENT ? NULL : &h->intents[idx];
}

/* Step 1 with its intent: announce, claim n numbers from s, say which
 * we got. The fetch_add is a release, so a subscriber that sees the tail
 * it made also sees the announcement. An intent names one number or a
 * lower bound: a batch's says "at least s", which covers its range (and,
 * until its marks are made, later numbers too: that only makes a
 * subscriber wait a little longer for someone else's record, never skip
 * ours). */
RING_HOT uint64_t claim(shm_ring *r, struct shm_ring_intent *in, uint32_t n)
{
    if (in)
        atomic_store_explicit(&in->claim, INTENT_FROM(t_self.next), memory_order_relaxed);
    uint64_t s = atomic_fetch_add_explicit(&r->hdr->tail, n, memory_order_release);
    if (in)
        atomic_store_explicit(&in->claim, n == 1 ? INTENT_AT(s) : INTENT_FROM(s), memory_order_relaxed);
    t_self.next = s + n;
    return s;
}

/* The slot is marked (or given up): the mark speaks for us now. Release,
 * so a subscriber that sees the intent cleared sees the mark. */
static void intent_done(struct shm_ring_intent *in)
{
    if (in)
        atomic_store_explicit(&in->claim, 0, memory_order_release);
}

/* 1 when a live thread may hold the claim of `s`: its intent names s, or
 * it is between announcing and learning its number with a lower bound not
 * above s. */
static int claimer_may_live(const shm_ring *r, uint64_t s)
{
    const struct shm_ring_hdr *h = r->hdr;
    for (uint32_t i = 0; i < SHM_RING_INTENTS; i++) {
        uint64_t c = atomic_load_explicit(&h->intents[i].claim, memory_order_acquire);
        if (c == 0 || (INTENT_KNOWN(c) ? INTENT_SEQ(c) != s : INTENT_LOW(c) > s))
            continue;
        if (thread_alive(atomic_load_explicit(&h->intents[i].owner, memory_order_relaxed)))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- errors */

const char *shm_ring_strerror(int err)
{
    switch (err) {
    case 0: return "success";
    case SHM_RING_EINVAL: return "SHM_RING_EINVAL: invalid argument";
    case SHM_RING_ECORRUPT: return "SHM_RING_ECORRUPT: ring failed a consistency check";
    case SHM_RING_EVERSION: return "SHM_RING_EVERSION: ring of another layout version";
    case SHM_RING_ESYS: return "SHM_RING_ESYS: system call failed";
    case SHM_RING_EBUSY: return "SHM_RING_EBUSY: slot held by a stalled producer, record dropped";
    case SHM_RING_ETIMEDOUT: return "SHM_RING_ETIMEDOUT: wait timed out";
    case SHM_RING_EINTR: return "SHM_RING_EINTR: wait interrupted by a signal";
    default: return "unknown error";
    }
}

/* ---------------------------------------------------------------- setup */

size_t shm_ring_bytes(uint32_t nrecords)
{
    if (nrecords < SHM_RING_MIN_RECORDS || nrecords > SHM_RING_MAX_RECORDS ||
        (nrecords & (nrecords - 1)) != 0)
        return 0;
    uint64_t b = SHM_RING_HEADER_BYTES + (uint64_t)nrecords * SHM_RING_RECORD_BYTES;
    return b > SIZE_MAX ? 0 : (size_t)b;
}

int shm_ring_init(void *region, size_t bytes, uint32_t nrecords)
{
    size_t need = shm_ring_bytes(nrecords);
    if (!region || need == 0 || bytes < need ||
        (uintptr_t)region % SHM_RING_ALIGN != 0)
        return SHM_RING_EINVAL;
    struct shm_ring_hdr *h = region;
    memset(region, 0, need);    /* every slot word: empty */
    h->version = RING_VERSION;
    h->header_bytes = SHM_RING_HEADER_BYTES;
    h->record_bytes = SHM_RING_RECORD_BYTES;
    h->nrecords = nrecords;
    h->total_bytes = need;
    atomic_store_explicit(&h->skip_ns, SHM_RING_SKIP_NS, memory_order_relaxed);
    atomic_store_explicit(&h->live_ns, SHM_RING_LIVE_NS, memory_order_relaxed);
    /* The magic goes last: a half-formatted region is not a ring. */
    atomic_thread_fence(memory_order_release);
    memcpy(h->magic, RING_MAGIC, sizeof h->magic);
    return 0;
}

int shm_ring_check(const void *region, size_t bytes)
{
    if (!region || (uintptr_t)region % SHM_RING_ALIGN != 0 ||
        bytes < SHM_RING_HEADER_BYTES)
        return SHM_RING_EINVAL;
    const struct shm_ring_hdr *h = region;
    if (memcmp(h->magic, RING_MAGIC, sizeof h->magic) != 0)
        return SHM_RING_ECORRUPT;
    if (h->version != RING_VERSION)
        return SHM_RING_EVERSION;
    size_t need = shm_ring_bytes(h->nrecords);
    if (h->header_bytes != SHM_RING_HEADER_BYTES ||
        h->record_bytes != SHM_RING_RECORD_BYTES || need == 0 ||
        h->total_bytes != need || need > bytes)
        return SHM_RING_ECORRUPT;
    uint64_t skip = atomic_load_explicit(&h->skip_ns, memory_order_relaxed);
    uint64_t live = atomic_load_explicit(&h->live_ns, memory_order_relaxed);
    if (skip == 0 || live < skip || live > SHM_RING_MAX_BOUND_NS)
        return SHM_RING_ECORRUPT;
    return 0;
}

int shm_ring_attach(shm_ring *ring, void *region, size_t bytes)
{
    if (!ring)
        return SHM_RING_EINVAL;
    int rc = shm_ring_check(region, bytes);
    if (rc)
        return rc;
    struct shm_ring_hdr *h = region;
    ring->hdr = h;
    ring->slots = (struct shm_ring_slot *)(void *)((char *)region + SHM_RING_HEADER_BYTES);
    ring->nrecords = h->nrecords;
    ring->mask = ring->nrecords - 1;
    return 0;
}

int shm_ring_set_bounds(shm_ring *ring, uint64_t skip_ns, uint64_t live_ns)
{
    if (!ring)
        return SHM_RING_EINVAL;
    struct shm_ring_hdr *h = ring->hdr;
    if (!skip_ns)
        skip_ns = atomic_load_explicit(&h->skip_ns, memory_order_relaxed);
    if (!live_ns)
        live_ns = atomic_load_explicit(&h->live_ns, memory_order_relaxed);
    if (live_ns < skip_ns || live_ns > SHM_RING_MAX_BOUND_NS)
        return SHM_RING_EINVAL;
    atomic_store_explicit(&h->skip_ns, skip_ns, memory_order_relaxed);
    atomic_store_explicit(&h->live_ns, live_ns, memory_order_relaxed);
    return 0;
}

void shm_ring_stats_get(const shm_ring *ring, shm_ring_stats *st)
{
    struct shm_ring_hdr *h = ring->hdr;
    st->published = atomic_load_explicit(&h->tail, memory_order_relaxed);
    st->stolen = atomic_load_explicit(&h->stolen, memory_order_relaxed);
    st->dropped = atomic_load_explicit(&h->dropped, memory_order_relaxed);
    st->nrecords = (uint32_t)ring->nrecords;
    st->wait_pending = atomic_load_explicit(&h->arm, memory_order_relaxed) -
                       atomic_load_explicit(&h->served, memory_order_relaxed);
    st->skip_ns = atomic_load_explicit(&h->skip_ns, memory_order_relaxed);
    st->live_ns = atomic_load_explicit(&h->live_ns, memory_order_relaxed);
}

/* ---------------------------------------------------------------- producers */

/* Step 2: make the slot of `s` ours. ACQ_OK: marked with `me`;
 * ACQ_LAPPED: a newer record owns it, write nothing; SHM_RING_EBUSY: a
 * live process has held it for live_ns. The common case is one CAS; the
 * rest is for slots still held by a writer from a lap ago. */
RING_HOT int slot_acquire(shm_ring *r, struct shm_ring_slot *sl, uint64_t s,
                          uint64_t me)
{
    struct shm_ring_hdr *h = r->hdr;
    /* First try with the value the slot holds unless something went wrong
     * a lap ago: the CAS then fetches the line and marks it in one
     * instruction, which keeps the unmarked window after the fetch_add
     * (the one a subscriber cannot tell from a death) a few instructions
     * long, with no cache miss in it.
     *
     * Every mark is acq_rel. Acquire: the previous writer's data stores
     * happen before ours, so ours are the ones that stay. Release: a
     * reader that sees our mark also sees the tail our fetch_add moved,
     * so it knows it was lapped rather than stalled. */
    uint64_t w = s >= r->nrecords ? COMMITTED(s - r->nrecords) : 0;
    if (atomic_compare_exchange_strong_explicit(&sl->word, &w, me,
            memory_order_acq_rel, memory_order_relaxed))
        return ACQ_OK;
    uint64_t since = 0, check_at = 0;
    int spins = 0;

    for (;;) {
        if (IS_COMMITTED(w) && WORD_SEQ(w) >= s)
            return ACQ_LAPPED;
        if (!IS_WRITING(w)) {
            if (atomic_compare_exchange_weak_explicit(&sl->word, &w, me,
                    memory_order_acq_rel, memory_order_relaxed))
                return ACQ_OK;
            continue;
        }
        /* Held by a writer: almost always one that is storing right now. */
        if (spins < SPIN_LIMIT) {
            spins++;
            cpu_relax();
            w = atomic_load_explicit(&sl->word, memory_order_relaxed);
            continue;
        }
        uint64_t now = now_ns();
        if (!since)
            since = now;
        if (now >= check_at) {
            if (!pid_alive(WORD_PID(w))) {
                if (atomic_compare_exchange_strong_explicit(&sl->word, &w, me,
                        memory_order_acq_rel, memory_order_relaxed)) {
                    atomic_fetch_add_explicit(&h->stolen, 1, memory_order_relaxed);
                    return ACQ_OK;
                }
                continue;       /* it moved: look again */
            }
            check_at = now + CHECK_NS;
        }
        if (now - since >= atomic_load_explicit(&h->live_ns, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&h->dropped, 1, memory_order_relaxed);
            return SHM_RING_EBUSY;
        }
        if (now - since < YIELD_NS)
            sched_yield();
        else
            nap(NAP_NS);
        w = atomic_load_explicit(&sl->word, memory_order_relaxed);
    }
}

/* Wake every subscriber that armed since the last wake (see Blocking). */
static void wake_armed(struct shm_ring_hdr *h)
{
    uint32_t armed = atomic_load_explicit(&h->arm, memory_order_relaxed);
    uint32_t done = atomic_load_explicit(&h->served, memory_order_relaxed);
    while ((int32_t)(armed - done) > 0) {
        /* Whoever moves `served` wakes; if someone else moved it to where
         * we would, the wake is theirs. */
        if (atomic_compare_exchange_weak_explicit(&h->served, &done, armed,
                memory_order_seq_cst, memory_order_relaxed)) {
            futex(&h->served, FUTEX_WAKE, INT_MAX, NULL);
            return;
        }
    }
}

/* Steps 3-4 on a slot we hold. */
RING_HOT void slot_fill_commit(struct shm_ring_slot *sl, uint64_t s, uint32_t type,
                               const void *payload, uint32_t len)
{
    uint64_t d[PAYLOAD_WORDS] = { 0 };
    if (len)
        memcpy(d, payload, len);

    /* Our mark must be visible before any of our data is: a reader that
     * sees a data word of ours then sees the mark when it re-checks. */
    atomic_thread_fence(memory_order_release);
    atomic_store_explicit(&sl->meta, (uint64_t)type | (uint64_t)len << 32,
                          memory_order_relaxed);
    for (unsigned i = 0; i < PAYLOAD_WORDS; i++)
        atomic_store_explicit(&sl->data[i], d[i], memory_order_relaxed);
    SHM_CRASH_POINT("ring_commit_filled");
    atomic_store_explicit(&sl->word, COMMITTED(s), memory_order_release);
}

/* Step 5, after our last commit. Dekker with shm_ring_wait(): our commit,
 * then their arm; their arm, then our commit. At least one side sees the
 * other's store. */
RING_HOT void wake_check(shm_ring *r)
{
    struct shm_ring_hdr *h = r->hdr;
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&h->arm, memory_order_relaxed) !=
        atomic_load_explicit(&h->served, memory_order_relaxed))
        wake_armed(h);
}

static int publish_args_ok(const shm_ring *ring, const void *payload, uint32_t len)
{
    return ring && len <= SHM_RING_MAX_PAYLOAD && (payload || len == 0);
}

int shm_ring_publish(shm_ring *ring, uint32_t type, const void *payload,
                     uint32_t len)
{
    if (!publish_args_ok(ring, payload, len))
        return SHM_RING_EINVAL;
    uint64_t me = self_mark();
    struct shm_ring_intent *in = my_intent(ring, (int)WORD_PID(me));
    uint64_t s = claim(ring, in, 1);
    SHM_CRASH_POINT("ring_publish_claimed");
    struct shm_ring_slot *sl = slot_of(ring, s);
    int rc = slot_acquire(ring, sl, s, me);
    intent_done(in);
    if (rc == ACQ_LAPPED)
        return 0;
    if (rc < 0)
        return rc;
    SHM_CRASH_POINT("ring_publish_marked");
    slot_fill_commit(sl, s, type, payload, len);
    wake_check(ring);
    return 0;
}

int shm_ring_publish_n(shm_ring *ring, const shm_ring_out *recs, uint32_t n, uint32_t *dropped)
{
    if (dropped)
        *dropped = 0;
    /* More than a lap would mark one slot twice and wait on ourselves. */
    if (!ring || !recs || n == 0 || n > SHM_RING_MAX_BATCH || n > ring->nrecords)
        return SHM_RING_EINVAL;
    for (uint32_t i = 0; i < n; i++)
        if (!publish_args_ok(ring, recs[i].payload, recs[i].len))
            return SHM_RING_EINVAL;
    uint64_t me = self_mark();
    struct shm_ring_intent *in = my_intent(ring, (int)WORD_PID(me));
    uint64_t s = claim(ring, in, n);
    SHM_CRASH_POINT("ring_batch_claimed");
    int acq[SHM_RING_MAX_BATCH];
    for (uint32_t i = 0; i < n; i++)
        acq[i] = slot_acquire(ring, slot_of(ring, s + i), s + i, me);
    intent_done(in);
    SHM_CRASH_POINT("ring_batch_marked");
    uint32_t lost = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (acq[i] == ACQ_OK)
            slot_fill_commit(slot_of(ring, s + i), s + i, recs[i].type, recs[i].payload, recs[i].len);
        else
            lost += acq[i] < 0;
    }
    wake_check(ring);
    if (dropped)
        *dropped = lost;
    return lost ? SHM_RING_EBUSY : 0;
}

#ifdef SHMREG_TESTING /* test hooks: never in a shipped library */
int shm_ring_claim_for_test(shm_ring *ring, int mark, uint64_t *seq)
{
    if (!ring || !seq)
        return SHM_RING_EINVAL;
    uint64_t me = self_mark();
    struct shm_ring_intent *in = my_intent(ring, (int)WORD_PID(me));
    *seq = claim(ring, in, 1);
    if (!mark)
        return 0;           /* the intent stays: a claimer stopped here */
    int rc = slot_acquire(ring, slot_of(ring, *seq), *seq, me);
    intent_done(in);
    return rc < 0 ? rc : 0;
}

int shm_ring_commit_for_test(shm_ring *ring, uint64_t seq, uint32_t type,
                             const void *payload, uint32_t len)
{
    if (!publish_args_ok(ring, payload, len) ||
        seq >= atomic_load_explicit(&ring->hdr->tail, memory_order_relaxed))
        return SHM_RING_EINVAL;
    uint64_t me = self_mark();
    struct shm_ring_intent *in = my_intent(ring, (int)WORD_PID(me));
    struct shm_ring_slot *sl = slot_of(ring, seq);
    if (atomic_load_explicit(&sl->word, memory_order_relaxed) != me) {
        int rc = slot_acquire(ring, sl, seq, me);
        if (in && atomic_load_explicit(&in->claim, memory_order_relaxed) == INTENT_AT(seq))
            intent_done(in);
        if (rc == ACQ_LAPPED)
            return 0;
        if (rc < 0)
            return rc;
    }
    slot_fill_commit(sl, seq, type, payload, len);
    wake_check(ring);
    return 0;
}
#endif

/* ---------------------------------------------------------------- subscribers */

static void sub_reset(shm_ring_sub *sub, uint64_t seq)
{
    memset(sub, 0, sizeof *sub);
    sub->next = seq;
}

void shm_ring_subscribe_tail(const shm_ring *ring, shm_ring_sub *sub)
{
    sub_reset(sub, atomic_load_explicit(&ring->hdr->tail, memory_order_acquire));
}

void shm_ring_subscribe_at(shm_ring_sub *sub, uint64_t seq)
{
    sub_reset(sub, seq);
}

/* The record at sub->next is claimed but not committed (slot word `w`).
 * Decide whether to skip it now; if not, *due is when to look again. */
static int stall_decide(const shm_ring *r, shm_ring_sub *sub, uint64_t w,
                        uint64_t now, uint64_t *due)
{
    struct shm_ring_hdr *h = r->hdr;
    uint64_t skip = atomic_load_explicit(&h->skip_ns, memory_order_relaxed);
    uint64_t live = atomic_load_explicit(&h->live_ns, memory_order_relaxed);
    uint64_t s = sub->next;

    /* The clock runs from when we first saw the slot as it is now. When
     * an older writer finally commits, the producer of our record has
     * been waiting for that very moment: it gets a fresh skip_ns to mark
     * the slot, instead of being judged on time it spent queued. */
    if (sub->stall_seq != s + 1 || sub->stall_word != w) {
        sub->stall_seq = s + 1;
        sub->stall_word = w;
        sub->stall_since = now;
        sub->stall_check = 0;
    }
    uint64_t since = sub->stall_since, elapsed = now - since;
    if (elapsed < skip) {
        *due = sat_add(since, skip);
        return STALL_WAIT;
    }
    if (elapsed >= live)
        return STALL_SKIP;
    if (now >= sub->stall_check) {
        /* Past skip_ns: wait on only for a claim a live thread holds. */
        int alive = IS_WRITING(w) ? pid_alive(WORD_PID(w)) : claimer_may_live(r, s);
        if (!alive) {
            /* An intent is cleared after the mark: if it went while we
             * looked, the slot has moved on. Look again at once. */
            if (!IS_WRITING(w) &&
                atomic_load_explicit(&slot_of(r, s)->word, memory_order_acquire) != w) {
                *due = now;
                return STALL_WAIT;
            }
            return STALL_SKIP;
        }
        sub->stall_check = sat_add(now, skip);
    }
    uint64_t give_up = sat_add(since, live);
    *due = give_up < sub->stall_check ? give_up : sub->stall_check;
    return STALL_WAIT;
}

static void sub_advance(shm_ring_sub *sub, uint64_t to)
{
    sub->missed += to - sub->next;
    sub->next = to;
    sub->stall_seq = 0;
}

/* Where a lapped subscriber goes on: the oldest record that may still be
 * in the ring. */
static uint64_t lap_target(const shm_ring *r, uint64_t s, uint64_t tail)
{
    uint64_t t = tail > r->nrecords ? tail - r->nrecords : 0;
    return t > s ? t : s + 1;
}

/* Copy record s out of its slot. 1: copied and verified; 0: the slot does
 * not hold committed s (any more); *w is the word last seen. */
static int slot_read(const shm_ring *r, uint64_t s, shm_ring_record *out, uint64_t *w)
{
    struct shm_ring_slot *sl = slot_of(r, s);
    uint64_t w1 = atomic_load_explicit(&sl->word, memory_order_acquire);
    *w = w1;
    if (w1 != COMMITTED(s))
        return 0;
    uint64_t meta = atomic_load_explicit(&sl->meta, memory_order_relaxed);
    uint64_t d[PAYLOAD_WORDS];
    for (unsigned i = 0; i < PAYLOAD_WORDS; i++)
        d[i] = atomic_load_explicit(&sl->data[i], memory_order_relaxed);
    atomic_thread_fence(memory_order_acquire);
    uint64_t w2 = atomic_load_explicit(&sl->word, memory_order_acquire);
    if (w2 != w1) {
        *w = w2;
        return 0;
    }
    out->seq = s;
    out->type = (uint32_t)meta;
    out->len = (uint32_t)(meta >> 32);
    memcpy(out->payload, d, sizeof d);
    return 1;
}

int shm_ring_poll(shm_ring *ring, shm_ring_sub *sub, shm_ring_record *out,
                  uint32_t max, uint64_t *missed)
{
    if (!ring || !sub || (!out && max))
        return SHM_RING_EINVAL;
    if (max > INT_MAX)
        max = INT_MAX;
    struct shm_ring_hdr *h = ring->hdr;
    uint64_t missed0 = sub->missed;
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    uint32_t n = 0;
    int rc = 0;

    while (n < max) {
        uint64_t s = sub->next, w;
        if (s >= tail) {
            tail = atomic_load_explicit(&h->tail, memory_order_acquire);
            if (s >= tail)
                break;
        }
        if (slot_read(ring, s, &out[n], &w)) {
            if (out[n].len > SHM_RING_MAX_PAYLOAD) {
                sub->corrupt++;
                sub_advance(sub, s + 1);
                if (n == 0)
                    rc = SHM_RING_ECORRUPT;
                break;
            }
            memset(out[n].payload + out[n].len, 0, SHM_RING_MAX_PAYLOAD - out[n].len);
            sub->next = s + 1;
            sub->received++;
            sub->stall_seq = 0;
            n++;
            continue;
        }
        tail = atomic_load_explicit(&h->tail, memory_order_acquire);
        if ((IS_COMMITTED(w) && WORD_SEQ(w) > s) || tail - s > ring->nrecords) {
            sub_advance(sub, lap_target(ring, s, tail));
            continue;
        }
        /* Claimed (s < tail), not committed, not lapped: stalled. */
        uint64_t due;
        if (stall_decide(ring, sub, w, now_ns(), &due) == STALL_WAIT)
            break;
        sub->skipped++;
        sub_advance(sub, s + 1);
    }
    if (missed)
        *missed = sub->missed - missed0;
    return rc ? rc : (int)n;
}

/* 1 when poll has something to do for `sub`; else 0 and *due is when a
 * stall decision falls due (UINT64_MAX: only a publish can change it). */
static int sub_ready(const shm_ring *r, shm_ring_sub *sub, uint64_t *due)
{
    struct shm_ring_hdr *h = r->hdr;
    uint64_t s = sub->next;
    *due = UINT64_MAX;
    uint64_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    if (s >= tail)
        return 0;
    uint64_t w = atomic_load_explicit(&slot_of(r, s)->word, memory_order_acquire);
    if (w == COMMITTED(s) || (IS_COMMITTED(w) && WORD_SEQ(w) > s) ||
        tail - s > r->nrecords)
        return 1;
    return stall_decide(r, sub, w, now_ns(), due) == STALL_SKIP;
}

int shm_ring_wait(shm_ring *ring, shm_ring_sub *sub, int64_t timeout_ns)
{
    if (!ring || !sub)
        return SHM_RING_EINVAL;
    struct shm_ring_hdr *h = ring->hdr;
    uint64_t due;
    if (sub_ready(ring, sub, &due))
        return 0;
    if (timeout_ns == 0)
        return SHM_RING_ETIMEDOUT;
    uint64_t start = now_ns();
    uint64_t deadline = timeout_ns < 0 ? UINT64_MAX : sat_add(start, (uint64_t)timeout_ns);

    for (;;) {
        /* Arm, then look: the other half of the Dekker pair in
         * slot_fill_commit(). The second fence keeps the look after the
         * read of `served`, so a wake we read implies its commit. */
        uint32_t ticket = atomic_fetch_add_explicit(&h->arm, 1, memory_order_seq_cst) + 1;
        atomic_thread_fence(memory_order_seq_cst);
        uint32_t seen = atomic_load_explicit(&h->served, memory_order_seq_cst);
        atomic_thread_fence(memory_order_seq_cst);
        if (sub_ready(ring, sub, &due))
            return 0;
        uint64_t now = now_ns();
        if (now >= deadline)
            return SHM_RING_ETIMEDOUT;
        /* Our arming was already served (a producer woke "us" before we
         * slept): a later commit would not wake us. Arm again. */
        if ((int32_t)(seen - ticket) >= 0)
            continue;
        uint64_t until = due < deadline ? due : deadline;
        uint64_t rel = until > now ? until - now : 0;
        if (rel > WAIT_SLICE_NS)
            rel = WAIT_SLICE_NS;
        struct timespec ts = { (time_t)(rel / 1000000000ull), (long)(rel % 1000000000ull) };
        if (futex(&h->served, FUTEX_WAIT, seen, &ts) != 0 &&
            errno != EAGAIN && errno != ETIMEDOUT)
            return errno == EINTR ? SHM_RING_EINTR : SHM_RING_ESYS;
    }
}

/* ---------------------------------------------------------------- inspection */

int shm_ring_slot_state(const shm_ring *ring, uint64_t seq, pid_t *pid)
{
    if (!ring)
        return SHM_RING_EINVAL;
    uint64_t w = atomic_load_explicit(&slot_of(ring, seq)->word, memory_order_acquire);
    if (pid)
        *pid = 0;
    if (w == COMMITTED(seq))
        return SHM_RING_SLOT_COMMITTED;
    if (IS_WRITING(w)) {
        if (pid)
            *pid = WORD_PID(w) <= SHM_PID_LIMIT ? (pid_t)WORD_PID(w) : -1;
        return SHM_RING_SLOT_WRITING;
    }
    return SHM_RING_SLOT_OTHER;
}
