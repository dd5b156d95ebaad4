/*
 * t/ring.c — the broadcast ring (shm/ring.c): every subscriber sees every
 * record once and in order while it keeps up; a subscriber that falls a lap
 * behind learns exactly how much it missed; nobody ever sees a torn record;
 * a producer killed mid-publish costs a bounded stall, not a wedge; a
 * blocked subscriber wakes when another process publishes.
 *
 * Multi-process parts map the ring MAP_SHARED|MAP_ANONYMOUS before fork.
 * Children report through a second shared mapping and exit 0; only the
 * parent makes TAP assertions, on exact counts.
 *
 * Every record's payload is six words: word 0 names the writer and its own
 * sequence number, words 1..5 are derived from word 0. A record stitched
 * from two writes cannot satisfy that, so "torn" is detected exactly, not
 * probabilistically.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ring.h"
#include "tap.h"

/* ---------------------------------------------------------------- helpers */

/* Monotonic, unlike test_now_ns() (event times are realtime). */
static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Kept here, not taken from testutil.h: an engine test sees no registry
 * header. The SIGALRM of the wait test never lands while it sleeps. */
static void sleep_us(unsigned us)
{
    struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };
    nanosleep(&ts, NULL);
}

static void *shared_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        bail_out("mmap %zu bytes: %s", bytes, strerror(errno));
    return p;
}

/* A fresh ring of `n` records in its own shared mapping. */
static void *new_ring(shm_ring *r, uint32_t n, size_t *bytes)
{
    *bytes = shm_ring_bytes(n);
    void *region = shared_map(*bytes);
    if (shm_ring_init(region, *bytes, n) != 0 || shm_ring_attach(r, region, *bytes) != 0)
        bail_out("cannot make a ring of %u records", n);
    return region;
}

static pid_t spawn(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    return pid;
}

static int reap(pid_t pid)
{
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27; x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

#define WORDS (SHM_RING_MAX_PAYLOAD / 8)

static void make_payload(uint64_t d[WORDS], uint32_t who, uint32_t pseq)
{
    d[0] = who | (uint64_t)pseq << 32;
    for (unsigned i = 1; i < WORDS; i++)
        d[i] = mix(d[0] * 0x9e3779b97f4a7c15ull + i);
}

/* 1 when `rec` is a whole record of the kind make_payload() builds. */
static int payload_ok(const shm_ring_record *rec, uint32_t type,
                      uint32_t *who, uint32_t *pseq)
{
    uint64_t d[WORDS], want[WORDS];
    if (rec->type != type || rec->len != SHM_RING_MAX_PAYLOAD)
        return 0;
    memcpy(d, rec->payload, sizeof d);
    *who = (uint32_t)d[0];
    *pseq = (uint32_t)(d[0] >> 32);
    make_payload(want, *who, *pseq);
    return memcmp(d, want, sizeof d) == 0;
}

static int publish_pseq(shm_ring *r, uint32_t type, uint32_t who, uint32_t pseq)
{
    uint64_t d[WORDS];
    make_payload(d, who, pseq);
    return shm_ring_publish(r, type, d, sizeof d);
}

/* What a subscriber process reports. */
#define MAXW 64
struct report {
    uint64_t received, missed, skipped, corrupt, next;
    uint64_t torn, order_errors, alien;
    uint64_t per_writer[MAXW];
    uint64_t max_stall_ns;
    int finished;
};

/* Account for one delivered record: whole, known writer, per-writer order. */
static void account(struct report *rep, const shm_ring_record *rec, uint32_t type,
                    uint32_t nwriters, int64_t last[MAXW], int dense)
{
    uint32_t who, pseq;
    if (!payload_ok(rec, type, &who, &pseq)) {
        rep->torn++;
        return;
    }
    if (who >= nwriters) {
        rep->alien++;
        return;
    }
    /* dense: every record of a writer must arrive (0, 1, 2, ...);
     * otherwise only increasing. */
    if (dense ? (int64_t)pseq != last[who] + 1 : (int64_t)pseq <= last[who])
        rep->order_errors++;
    last[who] = pseq;
    rep->per_writer[who]++;
}

static void copy_counts(struct report *rep, const shm_ring_sub *sub)
{
    rep->received = sub->received;
    rep->missed = sub->missed;
    rep->skipped = sub->skipped;
    rep->corrupt = sub->corrupt;
    rep->next = sub->next;
}

/* ---------------------------------------------------------------- basics */

static void test_basics(void)
{
    shm_ring r;
    size_t bytes;
    void *region = new_ring(&r, 16, &bytes);
    shm_ring_sub sub;
    shm_ring_record rec[64];
    uint64_t missed = 99;

    is(bytes, SHM_RING_HEADER_BYTES + 16 * 64, "a 16-record ring takes the header plus 16 lines");
    is(shm_ring_check(region, bytes), 0, "a fresh ring passes the check");

    shm_ring_subscribe_tail(&r, &sub);
    is(shm_ring_poll(&r, &sub, rec, 64, &missed), 0, "nothing to read in an empty ring");
    is(missed, 0, "and nothing missed");

    const char *msg[3] = { "INVITE", "", "BYE sip:alice@example.com" };
    for (int i = 0; i < 3; i++)
        is(shm_ring_publish(&r, 100 + i, msg[i], strlen(msg[i])), 0, "publish '%s'", msg[i]);
    memset(rec, 0xaa, sizeof rec);
    is(shm_ring_poll(&r, &sub, rec, 64, &missed), 3, "the three records come back");
    int exact = 1;
    for (int i = 0; i < 3; i++) {
        unsigned char want[SHM_RING_MAX_PAYLOAD] = { 0 };
        memcpy(want, msg[i], strlen(msg[i]));
        exact &= rec[i].seq == (uint64_t)i && rec[i].type == 100u + i &&
                 rec[i].len == strlen(msg[i]) &&
                 memcmp(rec[i].payload, want, sizeof want) == 0;
    }
    ok(exact, "in order, with exact seq, type, length and zero-padded bytes");
    is(sub.received, 3, "received counts them");

    shm_ring_sub late;
    shm_ring_subscribe_tail(&r, &late);
    is(late.next, 3, "a new subscriber starts at the tail");
    is(shm_ring_poll(&r, &late, rec, 64, &missed), 0, "and sees no old records");

    /* Lapping: the subscriber is 40 records behind a ring of 16. */
    shm_ring_sub slow;
    shm_ring_subscribe_tail(&r, &slow);
    for (uint32_t i = 0; i < 40; i++)
        publish_pseq(&r, 7, 0, i);
    int n = shm_ring_poll(&r, &slow, rec, 64, &missed);
    is(n, 16, "a lapped subscriber gets the last ring's worth");
    is(missed, 24, "and is told exactly how many it missed");
    uint32_t who, pseq;
    ok(n == 16 && payload_ok(&rec[0], 7, &who, &pseq) && pseq == 24 &&
       payload_ok(&rec[15], 7, &who, &pseq) && pseq == 39 && rec[0].seq == 27,
       "starting at the oldest record still in the ring");
    is(slow.received + slow.missed, 40, "received + missed == published");

    shm_ring_stats st;
    shm_ring_stats_get(&r, &st);
    is(st.published, 43, "stats: published is the tail");
    is(st.nrecords, 16, "stats: nrecords");
    is(st.skip_ns, SHM_RING_SKIP_NS, "default skip bound is SHM_RING_SKIP_NS");
    is(st.live_ns, SHM_RING_LIVE_NS, "default live bound is SHM_RING_LIVE_NS");
    munmap(region, bytes);
}

/* ---------------------------------------------------------------- bad input */

static void test_bad_input(void)
{
    shm_ring r;
    size_t bytes;
    void *region = new_ring(&r, 64, &bytes);
    unsigned char big[SHM_RING_MAX_PAYLOAD + 1] = { 0 };

    is(shm_ring_publish(&r, 1, big, SHM_RING_MAX_PAYLOAD + 1), SHM_RING_EINVAL,
       "a payload one byte over the limit is refused");
    is(shm_ring_publish(&r, 1, NULL, 4), SHM_RING_EINVAL, "a NULL payload with a length is refused");
    is(shm_ring_publish(NULL, 1, big, 4), SHM_RING_EINVAL, "a NULL ring is refused");
    shm_ring_stats st;
    shm_ring_stats_get(&r, &st);
    is(st.published, 0, "and nothing was claimed or published");
    is(shm_ring_publish(&r, 1, big, SHM_RING_MAX_PAYLOAD), 0, "exactly the limit is fine");
    is(shm_ring_publish(&r, 1, NULL, 0), 0, "an empty payload is fine");

    is(shm_ring_bytes(0), 0, "bytes(0) is 0");
    is(shm_ring_bytes(1), 0, "bytes(1) is 0: fewer than the minimum");
    is(shm_ring_bytes(1000), 0, "bytes(1000) is 0: not a power of two");
    is(shm_ring_bytes(1024), SHM_RING_HEADER_BYTES + 1024 * 64, "bytes(1024)");
    is(shm_ring_init(region, bytes, 1000), SHM_RING_EINVAL, "init refuses 1000 records");
    is(shm_ring_init(region, bytes - 1, 64), SHM_RING_EINVAL, "init refuses a region one byte short");
    is(shm_ring_init((char *)region + 8, bytes - 8, 16), SHM_RING_EINVAL, "init refuses a misaligned region");
    is(shm_ring_check(region, bytes - 1), SHM_RING_ECORRUPT, "check refuses a ring longer than its region");
    is(shm_ring_check(region, 100), SHM_RING_EINVAL, "check refuses a region smaller than a header");
    is(shm_ring_check((char *)region + 64, bytes - 64), SHM_RING_ECORRUPT, "check refuses what is not a ring");

    /* Any single corrupted byte of the header's fixed part is refused. */
    unsigned char *h = region;
    int refused = 0, versioned = 0;
    for (int i = 0; i < 32; i++) {
        h[i] ^= 0x5a;
        int rc = shm_ring_check(region, bytes);
        refused += rc == SHM_RING_ECORRUPT || rc == SHM_RING_EVERSION;
        versioned += rc == SHM_RING_EVERSION;
        h[i] ^= 0x5a;
    }
    is(refused, 32, "each of the 32 fixed header bytes, corrupted, fails the check");
    ok(versioned >= 1 && versioned <= 4, "a changed version is reported as EVERSION (%d bytes)", versioned);
    h[0] ^= 1;
    shm_ring r2;
    is(shm_ring_attach(&r2, region, bytes), SHM_RING_ECORRUPT, "attach refuses a corrupted magic");
    h[0] ^= 1;
    is(shm_ring_check(region, bytes), 0, "restored, it passes again");

    /* A committed record whose length word is corrupt is not delivered. */
    shm_ring_sub sub;
    shm_ring_subscribe_tail(&r, &sub);
    publish_pseq(&r, 3, 0, 0);
    publish_pseq(&r, 3, 0, 1);
    uint64_t *meta = (uint64_t *)(h + SHM_RING_HEADER_BYTES + (sub.next & 63) * 64 + 8);
    *meta = 3 | (uint64_t)200 << 32;
    shm_ring_record rec[4];
    uint64_t missed;
    is(shm_ring_poll(&r, &sub, rec, 4, &missed), SHM_RING_ECORRUPT, "a record claiming 200 bytes is ECORRUPT");
    is(sub.corrupt, 1, "counted as corrupt");
    uint32_t who, pseq;
    ok(shm_ring_poll(&r, &sub, rec, 4, &missed) == 1 && payload_ok(&rec[0], 3, &who, &pseq) && pseq == 1,
       "and the next poll goes on with the next record");
    is(shm_ring_poll(NULL, &sub, rec, 4, NULL), SHM_RING_EINVAL, "poll with a NULL ring");
    is(shm_ring_poll(&r, &sub, NULL, 4, NULL), SHM_RING_EINVAL, "poll with NULL out");
    is(shm_ring_set_bounds(&r, 10, 5), SHM_RING_EINVAL, "a live bound below the skip bound is refused");
    munmap(region, bytes);
}

/* ---------------------------------------------------------------- many producers, big ring */

#define P1_PRODUCERS 4
#define P1_EVENTS 100000u
#define P1_SUBS 3

struct mp_ctx {
    shm_ring *r;
    struct report *rep;     /* one per subscriber */
    volatile int *go;       /* producers start when set */
    volatile int *producers_done;
    uint64_t *ebusy;        /* one per producer */
    uint32_t id;
    uint32_t events;
    unsigned slow_us;       /* subscriber naps this long between polls */
    uint32_t batch;
    int exact;              /* big ring: every record must arrive */
    uint64_t deadline;
};

static void producer(void *arg)
{
    struct mp_ctx *c = arg;
    while (!*c->go)
        sched_yield();
    for (uint32_t i = 0; i < c->events; i++) {
        int rc;
        while ((rc = publish_pseq(c->r, 42, c->id, i)) == SHM_RING_EBUSY)
            c->ebusy[c->id]++;
        if (rc != 0)
            _exit(3);
    }
}

static void subscriber(void *arg)
{
    struct mp_ctx *c = arg;
    struct report *rep = &c->rep[c->id];
    shm_ring_sub sub;
    shm_ring_subscribe_at(&sub, 0);
    int64_t last[MAXW];
    for (int i = 0; i < MAXW; i++)
        last[i] = -1;
    shm_ring_record rec[256];
    uint32_t batch = c->batch ? c->batch : 256;
    uint64_t total = (uint64_t)P1_PRODUCERS * c->events;

    for (;;) {
        int n = shm_ring_poll(c->r, &sub, rec, batch, NULL);
        for (int i = 0; i < n; i++)
            account(rep, &rec[i], 42, P1_PRODUCERS, last, c->exact);
        if (c->exact && sub.next >= total)
            break;
        if (!c->exact && *c->producers_done) {
            shm_ring_stats st;
            shm_ring_stats_get(c->r, &st);
            if (sub.next >= st.published)
                break;
        }
        if (mono_ns() > c->deadline)
            break;
        if (c->slow_us)
            sleep_us(c->slow_us);
        else if (n <= 0)
            shm_ring_wait(c->r, &sub, 50 * 1000000ll);
    }
    copy_counts(rep, &sub);
    rep->finished = 1;
}

static void run_mp(const char *what, uint32_t nrecords, int exact, unsigned slow_us_base,
                   uint32_t batch)
{
    shm_ring r;
    size_t bytes;
    void *region = new_ring(&r, nrecords, &bytes);
    struct report *rep = shared_map(sizeof(struct report) * P1_SUBS + 4096);
    volatile int *go = (volatile int *)(rep + P1_SUBS);
    volatile int *done = go + 1;
    uint64_t *ebusy = (uint64_t *)(go + 16);
    /* Default bounds: 7 processes on a couple of cores get descheduled
     * between claim and commit all the time, and must not be taken for
     * dead (they hold claim intents, then marks). */

    struct mp_ctx pc[P1_PRODUCERS], sc[P1_SUBS];
    pid_t pp[P1_PRODUCERS], sp[P1_SUBS];
    uint64_t deadline = mono_ns() + 60ull * 1000000000ull;
    uint64_t t0 = mono_ns();
    for (uint32_t i = 0; i < P1_SUBS; i++) {
        sc[i] = (struct mp_ctx){ &r, rep, go, done, ebusy, i, P1_EVENTS,
                                 slow_us_base * i, batch, exact, deadline };
        sp[i] = spawn(subscriber, &sc[i]);
    }
    for (uint32_t i = 0; i < P1_PRODUCERS; i++) {
        pc[i] = (struct mp_ctx){ &r, rep, go, done, ebusy, i, P1_EVENTS, 0, 0, exact, deadline };
        pp[i] = spawn(producer, &pc[i]);
    }
    *go = 1;
    int bad = 0;
    for (int i = 0; i < P1_PRODUCERS; i++)
        bad += reap(pp[i]) != 0;
    *done = 1;
    for (int i = 0; i < P1_SUBS; i++)
        bad += reap(sp[i]) != 0;
    uint64_t t1 = mono_ns();
    is(bad, 0, "%s: every producer and subscriber exited cleanly", what);

    shm_ring_stats st;
    shm_ring_stats_get(&r, &st);
    uint64_t busy = 0;
    for (int i = 0; i < P1_PRODUCERS; i++)
        busy += ebusy[i];
    is(st.published, (uint64_t)P1_PRODUCERS * P1_EVENTS + busy,
       "%s: published == 4 x %u (+ %llu dropped and retried)", what, P1_EVENTS,
       (unsigned long long)busy);
    is(st.dropped, busy, "%s: the dropped count matches the EBUSY returns", what);
    diag("%s: %.0f ms; dropped %llu, stolen %llu", what, (t1 - t0) / 1e6,
         (unsigned long long)st.dropped, (unsigned long long)st.stolen);

    for (int i = 0; i < P1_SUBS; i++) {
        struct report *p = &rep[i];
        ok(p->finished, "%s: subscriber %d finished", what, i);
        is(p->torn, 0, "%s: subscriber %d saw no torn record", what, i);
        is(p->alien + p->corrupt, 0, "%s: subscriber %d saw nothing foreign or corrupt", what, i);
        is(p->order_errors, 0, "%s: subscriber %d saw each producer's records in order", what, i);
        if (exact) {
            is(p->received, (uint64_t)P1_PRODUCERS * P1_EVENTS, "%s: subscriber %d received all 400000", what, i);
            is(p->missed, 0, "%s: subscriber %d missed none", what, i);
            int all = 1;
            for (int w = 0; w < P1_PRODUCERS; w++)
                all &= p->per_writer[w] == P1_EVENTS;
            ok(all, "%s: subscriber %d got exactly 100000 from each producer", what, i);
        } else {
            is(p->received + p->missed, st.published,
               "%s: subscriber %d: received %llu + missed %llu == published", what, i,
               (unsigned long long)p->received, (unsigned long long)p->missed);
            ok(p->received > 0 && p->missed > 0, "%s: subscriber %d both received and missed", what, i);
            diag("%s: subscriber %d received %llu missed %llu skipped %llu", what, i,
                 (unsigned long long)p->received, (unsigned long long)p->missed,
                 (unsigned long long)p->skipped);
        }
    }
    munmap(rep, sizeof(struct report) * P1_SUBS + 4096);
    munmap(region, bytes);
}

/* ---------------------------------------------------------------- blocking */

struct wait_ctx {
    shm_ring *r;
    int ready_fd;
    volatile int64_t *rc, *elapsed_ns, *got;
};

static void blocked_subscriber(void *arg)
{
    struct wait_ctx *c = arg;
    shm_ring_sub sub;
    shm_ring_subscribe_tail(c->r, &sub);
    if (write(c->ready_fd, "r", 1) != 1)
        _exit(2);
    uint64_t t0 = mono_ns();
    *c->rc = shm_ring_wait(c->r, &sub, 10ll * 1000000000ll);
    *c->elapsed_ns = (int64_t)(mono_ns() - t0);
    shm_ring_record rec[4];
    uint32_t who, pseq;
    int n = shm_ring_poll(c->r, &sub, rec, 4, NULL);
    *c->got = n == 1 && payload_ok(&rec[0], 9, &who, &pseq) && who == 5 && pseq == 77;
}

static void on_alarm(int sig) { (void)sig; }

static void test_blocking(void)
{
    shm_ring r;
    size_t bytes;
    void *region = new_ring(&r, 64, &bytes);
    volatile int64_t *box = shared_map(4096);
    int fds[2];
    if (pipe(fds) != 0)
        bail_out("pipe");
    box[0] = box[1] = box[2] = -1;
    struct wait_ctx c = { &r, fds[1], &box[0], &box[1], &box[2] };
    pid_t pid = spawn(blocked_subscriber, &c);
    char ch;
    if (read(fds[0], &ch, 1) != 1)
        bail_out("child did not start");
    sleep_us(100000);   /* let it get to sleep */
    publish_pseq(&r, 9, 5, 77);
    is(reap(pid), 0, "blocked subscriber exited cleanly");
    is(box[0], 0, "a subscriber blocked in wait is woken by another process's publish");
    ok(box[1] < 10ll * 1000000000ll, "woken before its 10 s timeout (after %.1f ms)", box[1] / 1e6);
    is(box[2], 1, "and polls exactly the record published");
    close(fds[0]);
    close(fds[1]);

    shm_ring_sub sub;
    shm_ring_subscribe_tail(&r, &sub);
    is(shm_ring_wait(&r, &sub, 0), SHM_RING_ETIMEDOUT, "wait(0) on nothing: timed out at once");
    uint64_t t0 = mono_ns();
    int rc = shm_ring_wait(&r, &sub, 30 * 1000000ll);
    uint64_t el = mono_ns() - t0;
    is(rc, SHM_RING_ETIMEDOUT, "wait(30 ms) on nothing returns ETIMEDOUT");
    ok(el >= 30 * 1000000ull, "after at least 30 ms (%.1f ms)", el / 1e6);
    publish_pseq(&r, 9, 1, 1);
    is(shm_ring_wait(&r, &sub, 0), 0, "wait(0) with a record ready returns 0");
    is(shm_ring_wait(&r, &sub, -1), 0, "wait(forever) with a record ready returns at once");

    /* A signal handler that runs during the wait ends it with EINTR. */
    struct sigaction sa, old_sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;   /* no SA_RESTART */
    sigaction(SIGALRM, &sa, &old_sa);
    shm_ring_subscribe_tail(&r, &sub);
    struct itimerval it = { { 0, 0 }, { 0, 20000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    is(shm_ring_wait(&r, &sub, 5000000000ll), SHM_RING_EINTR, "a signal during wait returns EINTR");
    sigaction(SIGALRM, &old_sa, NULL);
    munmap((void *)box, 4096);
    munmap(region, bytes);
}

/* ---------------------------------------------------------------- stalled and dead producers */

/* Poll until a record arrives (waiting in between); returns the count. */
static int poll_until(shm_ring *r, shm_ring_sub *sub, shm_ring_record *rec, uint32_t max,
                      uint64_t timeout_ns)
{
    uint64_t end = mono_ns() + timeout_ns;
    for (;;) {
        int n = shm_ring_poll(r, sub, rec, max, NULL);
        if (n != 0 || mono_ns() > end)
            return n;
        shm_ring_wait(r, sub, (int64_t)(end - mono_ns()));
    }
}

struct claim_box {
    shm_ring *r;
    int mark;
    uint64_t seq;       /* in shared memory: the child's claim */
};

static void die_after_claim(void *arg)
{
    struct claim_box *b = arg;
    shm_ring_claim_for_test(b->r, b->mark, &b->seq);
    raise(SIGKILL);
}

static void publish_one(void *arg)
{
    struct claim_box *b = arg;
    publish_pseq(b->r, 1, 2, (uint32_t)b->seq);
}

static void test_stalls(void)
{
    shm_ring r;
    size_t bytes;
    const uint32_t N = 16;
    void *region = new_ring(&r, N, &bytes);
    shm_ring_sub sub;
    shm_ring_record rec[32];
    uint32_t who, pseq;
    uint64_t s, missed;
    shm_ring_stats st;
    shm_ring_subscribe_tail(&r, &sub);

    /* (a) killed right after the fetch_add: nothing marks the slot, and
     * the claim intent names a dead thread. */
    struct claim_box *box = shared_map(4096);
    box->r = &r;
    box->mark = 0;
    pid_t pid = spawn(die_after_claim, box);
    is(reap(pid), 128 + SIGKILL, "a producer dies right after its fetch_add");
    s = box->seq;
    publish_pseq(&r, 1, 0, 1);
    uint64_t t0 = mono_ns();
    is(shm_ring_poll(&r, &sub, rec, 32, &missed), 0, "unmarked claim: the poll stops at it");
    int n = poll_until(&r, &sub, rec, 32, 5000000000ull);
    uint64_t el = mono_ns() - t0;
    ok(n == 1 && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 1 && rec[0].seq == s + 1,
       "unmarked claim: skipped, then the next record arrives");
    ok(el >= SHM_RING_SKIP_NS, "unmarked claim: not before the skip bound (%.2f ms)", el / 1e6);
    is(sub.skipped, 1, "unmarked claim: counted as skipped");
    is(sub.missed, 1, "unmarked claim: and as missed");

    /* The claimer was only slow: it commits late. Nobody who passed it
     * sees it; a reader that had not yet passed it sees it whole. */
    uint64_t d[WORDS];
    make_payload(d, 0, 0);
    is(shm_ring_commit_for_test(&r, s, 1, d, sizeof d), 0, "late commit succeeds");
    is(shm_ring_poll(&r, &sub, rec, 32, NULL), 0, "a subscriber past it does not see it");
    shm_ring_sub behind;
    shm_ring_subscribe_at(&behind, s);
    ok(shm_ring_poll(&r, &behind, rec, 1, NULL) == 1 && payload_ok(&rec[0], 1, &who, &pseq) &&
       pseq == 0 && rec[0].seq == s, "a subscriber not yet past it gets it whole");

    /* A producer that stalls a whole lap between claim and mark finds a
     * newer record in its slot: it writes nothing, the newer one stays. */
    uint64_t lapped;
    shm_ring_claim_for_test(&r, 0, &lapped);
    for (uint32_t i = 0; i < N; i++)
        publish_pseq(&r, 1, 1, i);
    make_payload(d, 0, 7);
    is(shm_ring_commit_for_test(&r, lapped, 1, d, sizeof d), 0, "a lapped producer returns 0");
    is(shm_ring_slot_state(&r, lapped, NULL), SHM_RING_SLOT_OTHER, "without writing its record");
    shm_ring_subscribe_at(&behind, lapped + N);
    ok(shm_ring_poll(&r, &behind, rec, 1, NULL) == 1 && payload_ok(&rec[0], 1, &who, &pseq) &&
       who == 1 && pseq == N - 1, "the newer record in its slot is intact");
    n = poll_until(&r, &sub, rec, 32, 5000000000ull);
    ok(n == (int)N && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 0,
       "the subscriber passes the lapped claim and gets the %u records", N);
    is(sub.missed, 2, "the claim was overwritten before it was read: missed");
    is(sub.skipped, 1, "not skipped: it was lapped, not waited out");

    /* (b) killed after marking the slot: the mark names a dead pid. */
    box->mark = 1;
    pid = spawn(die_after_claim, box);
    is(reap(pid), 128 + SIGKILL, "a producer dies between mark and commit");
    s = box->seq;
    pid_t holder;
    is(shm_ring_slot_state(&r, s, &holder), SHM_RING_SLOT_WRITING, "its slot is left marked");
    is(holder, pid, "by the dead producer's pid");
    publish_pseq(&r, 1, 0, 2);
    n = poll_until(&r, &sub, rec, 32, 5000000000ull);
    ok(n == 1 && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 2,
       "dead marker: skipped, then the next record arrives");
    is(sub.skipped, 2, "dead marker: counted as skipped");
    for (uint32_t i = 0; i < N; i++)
        publish_pseq(&r, 1, 0, 3 + i);
    shm_ring_stats_get(&r, &st);
    is(st.stolen, 1, "the next producer to lap onto the dead slot takes it back");
    is(shm_ring_slot_state(&r, s + N, NULL), SHM_RING_SLOT_COMMITTED, "and commits its record there");
    n = shm_ring_poll(&r, &sub, rec, 32, &missed);
    ok(n == (int)N && missed == 0 && payload_ok(&rec[N - 1], 1, &who, &pseq) && pseq == 2 + N,
       "the subscriber gets all %u records after it", N);

    /* (b2) a live producer descheduled right after its fetch_add (no mark
     * yet) is not taken for dead: its claim intent names a live thread.
     * The later record comes from another process, as this thread's next
     * publish would replace its intent. */
    shm_ring_set_bounds(&r, SHM_RING_SKIP_NS, 5000000000ull);
    shm_ring_claim_for_test(&r, 0, &s);
    box->seq = 300;
    is(reap(spawn(publish_one, box)), 0, "another process publishes after the stalled claim");
    is(shm_ring_wait(&r, &sub, 20 * 1000000ll), SHM_RING_ETIMEDOUT,
       "live unmarked claim: wait(20 ms) times out: not skipped at the 1 ms bound");
    is(shm_ring_poll(&r, &sub, rec, 32, NULL), 0, "live unmarked claim: poll still waits for it");
    make_payload(d, 0, 299);
    is(shm_ring_commit_for_test(&r, s, 1, d, sizeof d), 0, "the stalled producer commits");
    n = shm_ring_poll(&r, &sub, rec, 32, NULL);
    ok(n == 2 && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 299 && who == 0 &&
       payload_ok(&rec[1], 1, &who, &pseq) && pseq == 300 && who == 2,
       "live unmarked claim: both records arrive, in order");
    is(sub.skipped, 2, "live unmarked claim: nothing skipped");
    munmap(box, 4096);

    /* (c) a live producer holding its slot is waited for past the skip
     * bound, and its record delivered in order when it commits. */
    shm_ring_set_bounds(&r, SHM_RING_SKIP_NS, 5000000000ull);
    shm_ring_claim_for_test(&r, 1, &s);
    publish_pseq(&r, 1, 0, 100);
    is(shm_ring_wait(&r, &sub, 20 * 1000000ll), SHM_RING_ETIMEDOUT,
       "live marker: wait(20 ms) times out: it is not skipped at the 1 ms bound");
    is(shm_ring_poll(&r, &sub, rec, 32, NULL), 0, "live marker: poll still waits for it");
    make_payload(d, 0, 99);
    shm_ring_commit_for_test(&r, s, 1, d, sizeof d);
    n = shm_ring_poll(&r, &sub, rec, 32, NULL);
    ok(n == 2 && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 99 &&
       payload_ok(&rec[1], 1, &who, &pseq) && pseq == 100,
       "live marker: when it commits, both records arrive in order");
    is(sub.skipped, 2, "live marker: nothing skipped");

    /* (d) a live producer stalled past the live bound: skipped; a producer
     * that laps onto its slot gives up rather than write beside it; the
     * late commit is still whole. */
    shm_ring_set_bounds(&r, SHM_RING_SKIP_NS, 30 * 1000000ull);
    shm_ring_claim_for_test(&r, 1, &s);
    publish_pseq(&r, 1, 0, 201);
    n = poll_until(&r, &sub, rec, 32, 5000000000ull);
    ok(n == 1 && payload_ok(&rec[0], 1, &who, &pseq) && pseq == 201,
       "stalled live marker: skipped after the live bound");
    is(sub.skipped, 3, "stalled live marker: counted as skipped");
    int busy = 0, okays = 0;
    for (uint32_t i = 0; i < N; i++) {
        int rc = publish_pseq(&r, 1, 0, 202 + i);
        busy += rc == SHM_RING_EBUSY;
        okays += rc == 0;
    }
    is(busy, 1, "the producer that laps onto the held slot gives up with EBUSY");
    is(okays, (int)N - 1, "the others publish");
    shm_ring_stats_get(&r, &st);
    is(st.dropped, 1, "stats count the drop");
    make_payload(d, 0, 200);
    is(shm_ring_commit_for_test(&r, s, 1, d, sizeof d), 0, "the stalled producer commits late");
    shm_ring_subscribe_at(&behind, s);
    ok(shm_ring_poll(&r, &behind, rec, 1, NULL) == 1 && payload_ok(&rec[0], 1, &who, &pseq) &&
       pseq == 200 && rec[0].seq == s, "its late record is whole");
    n = poll_until(&r, &sub, rec, 32, 5000000000ull);
    int more = poll_until(&r, &sub, rec + n, 32 - n, 200000000ull);
    n += more > 0 ? more : 0;
    int whole = 1;
    uint32_t prev = 201;
    for (int i = 0; i < n; i++) {
        whole &= payload_ok(&rec[i], 1, &who, &pseq) && pseq > prev;
        prev = pseq;
    }
    is(n, (int)N - 1, "the subscriber gets the %u published records", N - 1);
    ok(whole, "all whole and in order");
    is(sub.skipped, 4, "and skips the dropped one");
    is(sub.received + sub.missed, sub.next, "received + missed == every sequence passed");
    shm_ring_stats_get(&r, &st);
    is(sub.next, st.published, "the subscriber reached the tail");
    munmap(region, bytes);
}

/* ---------------------------------------------------------------- SIGKILL for real */

#define K_ROUNDS 50
#define K_PER_CHILD 16384u
#define K_TYPE 11
#define K_END 12

struct kill_ctx {
    shm_ring *r;
    uint32_t id;
    struct report *rep;
    volatile uint32_t *started;   /* producer k sets started[k] */
};

static void kill_producer(void *arg)
{
    struct kill_ctx *c = arg;
    for (uint32_t i = 0; i < K_PER_CHILD; i++) {
        publish_pseq(c->r, K_TYPE, c->id, i);
        if (i == 0)
            c->started[c->id] = 1;
    }
    for (;;)
        pause();
}

static void kill_subscriber(void *arg)
{
    struct kill_ctx *c = arg;
    struct report *rep = c->rep;
    shm_ring_sub sub;
    shm_ring_subscribe_at(&sub, 0);
    int64_t last[MAXW];
    for (int i = 0; i < MAXW; i++)
        last[i] = -1;
    shm_ring_record rec[256];
    uint64_t deadline = mono_ns() + 60ull * 1000000000ull;
    uint64_t stuck_since = 0;   /* first empty poll with records pending */
    for (;;) {
        int n = shm_ring_poll(c->r, &sub, rec, 256, NULL);
        uint64_t t = mono_ns();
        if (n > 0 && stuck_since) {
            if (t - stuck_since > rep->max_stall_ns)
                rep->max_stall_ns = t - stuck_since;
            stuck_since = 0;
        }
        for (int i = 0; i < n; i++) {
            if (rec[i].type == K_END) {
                copy_counts(rep, &sub);
                rep->finished = 1;
                return;
            }
            account(rep, &rec[i], K_TYPE, K_ROUNDS, last, 1);
        }
        if (n <= 0) {
            shm_ring_stats st;
            shm_ring_stats_get(c->r, &st);
            if (sub.next < st.published && !stuck_since)
                stuck_since = t;
            if (t > deadline)
                break;
            shm_ring_wait(c->r, &sub, 100 * 1000000ll);
        }
    }
    copy_counts(rep, &sub);
}

static void test_sigkill(void)
{
    shm_ring r;
    size_t bytes;
    /* Big enough that nothing is overwritten: every uncommitted claim is
     * still visible in its slot afterwards. */
    void *region = new_ring(&r, 1u << 20, &bytes);
    struct report *rep = shared_map(4096 * 2);
    volatile uint32_t *started = (volatile uint32_t *)((char *)rep + 4096);
    struct kill_ctx sc = { &r, 0, rep, started };
    pid_t sub = spawn(kill_subscriber, &sc);

    unsigned seed = (unsigned)mono_ns() ^ (unsigned)getpid();
    diag("sigkill: seed %u", seed);
    int bad = 0;
    for (uint32_t k = 0; k < K_ROUNDS; k++) {
        struct kill_ctx pc = { &r, k, rep, started };
        pid_t p = spawn(kill_producer, &pc);
        /* Kill it at a random moment of its publishing loop (or soon
         * after it: the loop is short on a fast machine). */
        uint64_t give_up = mono_ns() + 2000000000ull;
        while (!started[k] && mono_ns() < give_up)
            sched_yield();
        sleep_us((unsigned)(rand_r(&seed) % 700));
        kill(p, SIGKILL);
        bad += reap(p) != 128 + SIGKILL;
    }
    is(bad, 0, "50 producers were SIGKILLed while publishing");
    is(shm_ring_publish(&r, K_END, NULL, 0), 0, "the ring still takes a record");
    int st_sub = reap(sub);
    is(st_sub, 0, "the subscriber exited cleanly");
    ok(rep->finished, "the subscriber got past every hole to the last record");

    shm_ring_stats st;
    shm_ring_stats_get(&r, &st);
    uint64_t uncommitted = 0, marked = 0;
    for (uint64_t s = 0; s < st.published; s++) {
        int state = shm_ring_slot_state(&r, s, NULL);
        uncommitted += state != SHM_RING_SLOT_COMMITTED;
        marked += state == SHM_RING_SLOT_WRITING;
    }
    diag("sigkill: %llu published, %llu claimed but never committed (%llu marked, %llu not), "
         "longest subscriber stall %.2f ms",
         (unsigned long long)st.published, (unsigned long long)uncommitted,
         (unsigned long long)marked, (unsigned long long)(uncommitted - marked),
         rep->max_stall_ns / 1e6);
    ok(st.published > K_ROUNDS, "the producers published (%llu)", (unsigned long long)st.published);
    ok(st.published < (1u << 20), "without wrapping the ring");
    is(rep->skipped, uncommitted, "skipped == claimed-but-uncommitted records found by scanning");
    is(rep->missed, uncommitted, "and nothing else was missed");
    is(rep->received, st.published - uncommitted, "every committed record was received");
    is(rep->torn + rep->alien, 0, "none torn");
    is(rep->order_errors, 0, "each producer's records in order, none lost");
    ok(rep->max_stall_ns < SHM_RING_LIVE_NS + 2000000000ull,
       "no stall longer than the live bound plus 2 s of slack");
    munmap(rep, 4096 * 2);
    munmap(region, bytes);
}

int main(void)
{
    uint64_t t0 = mono_ns();
    test_basics();
    test_bad_input();
    test_blocking();
    test_stalls();
    run_mp("big ring", 1u << 19, 1, 0, 256);
    run_mp("small ring", 1024, 0, 40, 16);
    test_sigkill();
    diag("total %.2f s", (mono_ns() - t0) / 1e9);
    return done_testing();
}
