/*
 * t/engine_counter.c — the engine (shm/) serving a consumer that is not
 * the registry: a table of named counters shared by forked processes.
 *
 * It proves that shm/ is an engine and not half of the registry: this
 * file includes only shm/ headers, lays its own regions (an index and a
 * word of its own) in a segment of its own, keeps its own records in the
 * engine's slots and finds them through the engine's index. Then the
 * engine's promises are checked for this consumer as for the registry:
 * racing creators make each name exactly once, counts are exact, a
 * process killed while holding an index lock stalls nobody, and a
 * segment of another consumer or of another record size is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "epoch.h"
#include "index.h"
#include "ring.h"
#include "seg.h"
#include "tap.h"

/* A counter: one slot of the slot table. */
typedef struct counter {
    shm_blk hdr;
    _Atomic uint64_t next;       /* index chain */
    _Atomic uint64_t live;       /* 0 until published */
    _Atomic uint64_t count;
    char name[32];
} counter;

typedef struct totals {
    _Atomic uint64_t adds;       /* every add, over all counters */
} totals;

#define NAMES 50
#define WORKERS 4
#define ADDS 2000

static const shm_record records[] = {{"counter", sizeof(counter)}};

static void regions(shm_region r[2])
{
    r[0] = (shm_region){"name index", shm_index_bytes(64)};
    r[1] = (shm_region){"totals", sizeof(totals)};
}

static uint64_t name_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull;     /* FNV-1a: names are ours, not an attacker's */
    for (; *name; name++)
        h = (h ^ (unsigned char)*name) * 1099511628211ull;
    return h;
}

static _Atomic uint64_t *counter_link(const shm_seg *s, uint64_t off)
{
    return shm_slot_index(s, off) == UINT32_MAX ? NULL : &((counter *)(s->base + off))->next;
}

typedef struct table {
    shm_ctx c;
    shm_index ix;
    totals *t;
} table;

static counter *find(table *tb, const char *name, uint64_t hash)
{
    const shm_seg *s = &tb->c.seg;
    uint64_t off = atomic_load_explicit(shm_index_head(&tb->ix, hash), memory_order_acquire);
    for (uint32_t steps = 0; off && steps <= s->slots; steps++) {
        if (shm_slot_index(s, off) == UINT32_MAX)
            return NULL;
        counter *x = (counter *)(s->base + off);
        if (atomic_load_explicit(&x->live, memory_order_acquire) && strcmp(x->name, name) == 0)
            return x;
        off = atomic_load_explicit(&x->next, memory_order_acquire);
    }
    return NULL;
}

/* Add `delta` to the counter `name`, making it if it is new: looking
 * again under the stripe lock makes each name exactly once. */
static int add(table *tb, const char *name, uint64_t delta)
{
    uint64_t hash = name_hash(name);
    counter *x = find(tb, name, hash);
    if (x == NULL) {
        shm_lock *l = shm_index_lock(&tb->ix, hash);
        int rc = shm_lock_take(&tb->c, l);
        if (rc < 0)
            return rc;
        if ((x = find(tb, name, hash)) == NULL) {
            uint64_t off = shm_slot_alloc(&tb->c, 0);
            if (off == 0) {
                shm_lock_drop(l);
                return SHM_EFULL;
            }
            x = (counter *)(tb->c.seg.base + off);
            snprintf(x->name, sizeof x->name, "%s", name);
            atomic_store(&x->count, 0);
            shm_index_push(&tb->ix, hash, off, &x->next);
            atomic_store_explicit(&x->live, 1, memory_order_release);
        }
        shm_lock_drop(l);
    }
    atomic_fetch_add(&x->count, delta);
    atomic_fetch_add(&tb->t->adds, delta);
    return 0;
}

static int unlink_counter(table *tb, const char *name)
{
    uint64_t hash = name_hash(name);
    counter *x = find(tb, name, hash);
    return x ? shm_index_unlink(&tb->c, &tb->ix, hash, shm_off(&tb->c.seg, x), counter_link) : 0;
}

static unsigned char *base;
static uint64_t size;

/* Bind this process's view and claim a handle, as a consumer's open does. */
static int attach(table *tb, const shm_record *rec, uint32_t nregions, char *why, size_t wl)
{
    memset(tb, 0, sizeof *tb);
    int rc = shm_seg_bind(&tb->c.seg, base, size, rec, 1, nregions, why, wl);
    if (rc)
        return rc;
    if (shm_index_bind(&tb->ix, tb->c.seg.region[0].base, tb->c.seg.region[0].bytes) != 0)
        return SHM_ECORRUPT;
    tb->t = (totals *)tb->c.seg.region[1].base;
    return shm_handle_claim(&tb->c);
}

static void create(void)
{
    shm_region r[2];
    regions(r);
    shm_params p = {.slots = 128, .max_handles = 16, .ring_records = SHM_RING_MIN_RECORDS,
                    .heap_bytes = SHM_PAGE_BYTES, .records = records, .nrecords = 1,
                    .regions = r, .nregions = 2};
    memcpy(p.user, "counter table v1", 16);
    shm_fixed f;
    if (shm_layout(&p, &f) != 0)
        bail_out("layout refused");
    size = f.segment_bytes;
    base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        bail_out("mmap %llu: %s", (unsigned long long)size, strerror(errno));
    if (shm_seg_format(base, &f) != 0)
        bail_out("format failed");
}

static void name_of(char *buf, size_t n, int i) { snprintf(buf, n, "counter-%02d", i); }

static int worker(int w)
{
    table tb;
    char why[256], name[32];
    if (attach(&tb, records, 2, why, sizeof why) != 0)
        return 10;
    for (int k = 0; k < ADDS; k++) {
        name_of(name, sizeof name, (k + w * 7) % NAMES);
        if (add(&tb, name, 1) != 0)
            return 11;
    }
    shm_handle_release(&tb.c);
    return 0;
}

int main(void)
{
    plan(27);
    create();
    char why[256], name[32];
    table tb;
    is(attach(&tb, records, 2, why, sizeof why), 0, "the consumer binds its own segment");
    is(tb.ix.buckets, 64, "its index has the 64 buckets it asked for");
    is_mem(tb.c.seg.hdr->f.user, 16, "counter table v1", 16, "its constants are in the header");

    pid_t pid[WORKERS];
    for (int w = 0; w < WORKERS; w++)
        if ((pid[w] = fork()) == 0)
            _exit(worker(w));
    int bad = 0;
    for (int w = 0; w < WORKERS; w++) {
        int st;
        waitpid(pid[w], &st, 0);
        bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    is(bad, 0, "%d forked workers added %d each", WORKERS, ADDS);
    is(atomic_load(&tb.t->adds), (long long)WORKERS * ADDS, "the total word counts every add");

    uint32_t made = 0;
    for (uint32_t sh = 0; sh < SHM_SHARDS; sh++)
        made += tb.c.seg.ctl->slots[sh].carved - (uint32_t)tb.c.seg.ctl->slots[sh].nfree;
    is(made, NAMES, "racing creators made each of the %d names exactly once", NAMES);
    uint64_t sum = 0;
    int found = 0, linked = 0;
    for (int i = 0; i < NAMES; i++) {
        name_of(name, sizeof name, i);
        counter *x = find(&tb, name, name_hash(name));
        found += x != NULL;
        if (x) {
            sum += atomic_load(&x->count);
            linked += shm_index_has(&tb.c.seg, &tb.ix, name_hash(name), shm_off(&tb.c.seg, x),
                                    counter_link) == 1;
        }
    }
    is(found, NAMES, "every name is found");
    is(linked, NAMES, "and is on the chain its hash names");
    is(sum, (long long)WORKERS * ADDS, "the counters add up to every add");
    name_of(name, sizeof name, 3);
    is(atomic_load(&find(&tb, name, name_hash(name))->count), (long long)WORKERS * ADDS / NAMES,
       "each counter holds exactly its share");

    /* A process killed holding a stripe lock: the next adder takes the
     * lock over (the chain needs no repair) instead of waiting for ever. */
    int fd[2];
    if (pipe(fd) != 0)
        bail_out("pipe");
    pid_t victim = fork();
    if (victim == 0) {
        table v;
        char w2[256];
        if (attach(&v, records, 2, w2, sizeof w2) != 0)
            _exit(1);
        shm_lock_take(&v.c, shm_index_lock(&v.ix, name_hash("fresh")));
        if (write(fd[1], "x", 1) != 1)
            _exit(2);
        pause();
        _exit(0);
    }
    char x;
    is(read(fd[0], &x, 1), 1, "a process holds the stripe lock of \"fresh\"");
    kill(victim, SIGKILL);
    waitpid(victim, NULL, 0);
    is(add(&tb, "fresh", 5), 0, "after it is killed, a new name on that stripe is added");
    is(atomic_load(&find(&tb, "fresh", name_hash("fresh"))->count), 5, "with exactly its count");
    is(unlink_counter(&tb, "fresh"), 1, "and the engine unlinks it from its chain");
    ok(find(&tb, "fresh", name_hash("fresh")) == NULL, "after which it is not found");
    close(fd[0]);
    close(fd[1]);

    /* The index's own refusals. */
    char region[SHM_STRIPES * sizeof(shm_lock) + 64 * 8] __attribute__((aligned(64)));
    shm_index ix2;
    ok(shm_index_bind(&ix2, region, SHM_STRIPES * sizeof(shm_lock)) == SHM_ECORRUPT &&
       shm_index_bind(&ix2, region, sizeof region - 4) == SHM_ECORRUPT &&
       shm_index_bind(&ix2, region, sizeof region - 8) == SHM_ECORRUPT &&
       shm_index_bind(&ix2, region, sizeof region) == 0 && ix2.buckets == 64,
       "an index region of no buckets, a ragged or a non-power-of-two size is refused");
    uint64_t h3 = name_hash("counter-03");
    counter *c3 = find(&tb, "counter-03", h3);
    shm_lock *l3 = shm_index_lock(&tb.ix, h3);
    /* The engine never nests a lock: a word that names the taker itself
     * is garbage, refused rather than waited on. */
    is(shm_lock_take(&tb.c, l3), 0, "the stripe lock of counter-03 is taken");
    is(shm_index_link(&tb.c, &tb.ix, h3, shm_off(&tb.c.seg, c3), &c3->next), SHM_ECORRUPT,
       "linking under a lock word that names the caller itself: SHM_ECORRUPT");
    is(shm_index_unlink(&tb.c, &tb.ix, h3, shm_off(&tb.c.seg, c3), counter_link), 0,
       "and unlinking there changes nothing (0)");
    shm_lock_drop(l3);
    ok(find(&tb, "counter-03", h3) == c3, "the chain is as it was");
    _Atomic uint64_t *head3 = shm_index_head(&tb.ix, h3);
    uint64_t keep_head = atomic_load(head3);
    atomic_store(head3, 4096 + 8); /* not a slot */
    is(shm_index_has(&tb.c.seg, &tb.ix, h3, shm_off(&tb.c.seg, c3), counter_link), -1,
       "a chain that breaks before the entry: has() says -1");
    is(shm_index_unlink(&tb.c, &tb.ix, h3, shm_off(&tb.c.seg, c3), counter_link), 0,
       "and unlink stops there, changing nothing");
    atomic_store(head3, keep_head);
    is(shm_index_has(&tb.c.seg, &tb.ix, h3, shm_off(&tb.c.seg, c3), counter_link), 1, "restored");

    /* Refusals: another consumer, another record size, a scribble. */
    table other;
    is(attach(&other, records, 3, why, sizeof why), SHM_EVERSION,
       "a consumer that lays 3 regions is refused: %s", why);
    shm_record bigger[] = {{"counter", sizeof(counter) + 8}};
    is(attach(&other, bigger, 2, why, sizeof why), SHM_EVERSION,
       "a build whose counter is 8 bytes bigger is refused: %s", why);
    tb.c.seg.hdr->f.region_bytes[1] += 4096;
    is(attach(&other, records, 2, why, sizeof why), SHM_ECORRUPT,
       "a scribbled region size fails the header checksum: %s", why);
    tb.c.seg.hdr->f.region_bytes[1] -= 4096;
    tb.c.seg.hdr->f.region_bytes[1] += 4096;
    tb.c.seg.hdr->f.checksum = shm_fixed_checksum(&tb.c.seg.hdr->f);
    is(attach(&other, records, 2, why, sizeof why), SHM_ECORRUPT,
       "a region size that disagrees with the offsets is refused: %s", why);
    return exit_status();
}
