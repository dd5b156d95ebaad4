/*
 * harness.h — what the two segment fuzzers share: build a populated
 * registry, scribble on a copy of its segment, run every kind of
 * operation over the damage, and the write guard.
 *
 * fuzz/scribble.c (a plain program: forked rounds, shmregctl, counts) and
 * fuzz/segment.c (a libFuzzer target: in-process, input bytes choose the
 * scribbles) must damage and exercise the segment the same way, so the
 * logic lives here once. Header-only (static functions) because the
 * libFuzzer rule builds each fuzz/ program on its own, with no support files.
 *
 * The guard. Every operation that writes runs between two copies of the
 * segment; each byte that changed must lie in a place some operation may
 * legitimately write: a lock or free-list word, the handle table, the
 * indexes, page descriptors, session slots, a carved heap block, the
 * ring's moving parts, the room table. A change anywhere else (the fixed
 * header, padding, the ring's geometry, heap bytes no block covers) is a
 * write outside the block being written, and fails the round.
 */
#ifndef FUZZ_HARNESS_H
#define FUZZ_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "reg.h"
#include "ring.h"
#include "shmreg.h"

/* ------------------------------------------------------------ rng */

static inline uint64_t fz_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ------------------------------------------------------------ population */

#define FZ_SESSIONS 24
#define FZ_DIALOGS 12
#define FZ_PARTS 4

typedef struct fz_pop {
    char dir[256];
    shmreg_id sess[FZ_SESSIONS + 1];
    shmreg_id room;
    char sess_text[SHMREG_ID_TEXT_LEN + 1]; /* a live session, for `shmregctl show` */
} fz_pop;

static inline shmreg_str fz_s(const char *p)
{
    return (shmreg_str){p, strlen(p)};
}

static void fz_dialog_key(unsigned i, char cid[32], char lt[16], char rt[16])
{
    snprintf(cid, 32, "call-%u@fuzz.example", i);
    snprintf(lt, 16, "lt%u", i);
    if (i % 4 == 3)
        rt[0] = 0; /* an early dialog: no remote tag */
    else
        snprintf(rt, 16, "rt%u", i);
}

static void fz_sdp(char *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (i * 7 + seed) % 26);
}

/* The options every fuzzed registry is created with: small, so a round
 * copies little, but with every region present and several heap pages. */
static const shmreg_options fz_opts = {
    .flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 64, .max_handles = 8,
    .heap_bytes = 14ull * SHM_PAGE_BYTES, .event_records = 64, .max_rooms = 32,
};

/* Create and populate the registry at p->dir: sessions with fields and
 * SDPs of many sizes, dialogs, a room with participants, a config, events,
 * deleted and replaced data (free lists and limbo lists), and a handle
 * left by a process that died without closing. 0 or an error code. */
static int fz_populate(fz_pop *p)
{
    shmreg *h;
    int rc = shmreg_open(p->dir, &fz_opts, &h);
    if (rc)
        return rc;
    char big[20000];
    for (unsigned i = 0; i < FZ_SESSIONS && rc == 0; i++) {
        char from[64], cid[32], lt[16], rt[16];
        snprintf(from, sizeof from, "sip:user%u@fuzz.example", i);
        fz_dialog_key(i, cid, lt, rt);
        shmreg_fields f = {0};
        f.str[SHMREG_FIELD_FROM_URI] = fz_s(from);
        f.str[SHMREG_FIELD_TO_URI] = fz_s("sip:conf@fuzz.example");
        f.str[SHMREG_FIELD_CALL_ID] = fz_s(cid);
        f.str[SHMREG_FIELD_DISPLAY_NAME] = fz_s(i % 2 ? "Alice Example" : "");
        f.local_rtp_port = (uint16_t)(10000 + i);
        if ((rc = shmreg_session_create(h, &f, &p->sess[i])) != 0)
            break;
        static const size_t sizes[] = {200, 900, 3000, 200, 900};
        size_t len = i == 5 ? sizeof big : sizes[i % 5];
        fz_sdp(big, len, i);
        rc = shmreg_session_set_sdp(h, &p->sess[i], SHMREG_SDP_LOCAL, big, len);
        if (rc == 0 && i % 3 == 0)
            rc = shmreg_session_set_sdp(h, &p->sess[i], SHMREG_SDP_REMOTE, big, len / 2 + 1);
        if (rc == 0 && i % 2)
            rc = shmreg_session_transition(h, &p->sess[i], SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL);
        if (rc == 0)
            rc = shmreg_session_counter_add(h, &p->sess[i], SHMREG_CTR_PACKETS_SENT, i);
        if (rc == 0 && i < FZ_DIALOGS)
            rc = shmreg_dialog_bind(h, fz_s(cid), fz_s(lt), fz_s(rt), &p->sess[i]);
        /* Call control: memberships, variables, timeouts (some due). */
        if (rc == 0 && i % 2 == 0)
            rc = shmreg_profile_join(h, &p->sess[i], fz_s("trunk"), fz_s(i % 4 ? "a" : "b"), 0, NULL);
        if (rc == 0 && i % 3 == 0)
            rc = shmreg_profile_join(h, &p->sess[i], fz_s("inbound"), fz_s(""), 0, NULL);
        if (rc == 0 && i % 4 == 1)
            rc = shmreg_session_var_set(h, &p->sess[i], fz_s("account"), fz_s(from));
        if (rc == 0 && i % 2 == 1)
            rc = shmreg_session_set_timeout(h, &p->sess[i], i % 4 == 1 ? 1 : 3600000000000ull,
                                            SHMREG_TIMEOUT_FAIL | SHMREG_TIMEOUT_RELATIVE * (i % 4 != 1), 0);
    }
    if (rc == 0)
        rc = shmreg_room_create(h, fz_s("fuzz-room"), 8, &p->room);
    for (unsigned i = 0; i < FZ_PARTS && rc == 0; i++)
        rc = shmreg_room_join(h, &p->room, &p->sess[i], fz_s("sip:part@fuzz.example"),
                              fz_s("Part"), (uint16_t)(20000 + i));
    if (rc == 0)
        rc = shmreg_participant_set_status(h, &p->room, &p->sess[0], SHMREG_PART_ANY,
                                           SHMREG_PART_ACTIVE, NULL);
    /* Replaced and deleted data: blocks on limbo and free lists. */
    for (unsigned i = FZ_SESSIONS - 4; i < FZ_SESSIONS && rc == 0; i++)
        rc = shmreg_session_delete(h, &p->sess[i]);
    for (unsigned i = 6; i < 10 && rc == 0; i++) {
        shmreg_fields f = {0};
        f.str[SHMREG_FIELD_CODEC] = fz_s("PCMU/8000");
        rc = shmreg_session_update(h, &p->sess[i], &f, SHMREG_MASK(SHMREG_FIELD_CODEC));
    }
    if (rc == 0)
        rc = shmreg_config_set(h, "media", "media.ptime", "20");
    shmreg_id_format(&p->sess[1], p->sess_text);
    int crc = shmreg_close(h);
    if (rc == 0)
        rc = crc;
    if (rc)
        return rc;
    /* A process that dies attached, holding an SDP it was writing. */
    pid_t pid = fork();
    if (pid == 0) {
        shmreg *d;
        if (shmreg_open(p->dir, NULL, &d) == 0) {
            shmreg_id id;
            if (shmreg_session_create(d, NULL, &id) == 0) {
                fz_sdp(big, 3000, 99);
                shmreg_session_set_sdp(d, &id, SHMREG_SDP_LOCAL, big, 3000);
            }
        }
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return 0;
}

/* ------------------------------------------------------------ segment map */

typedef struct fz_seg {
    unsigned char *base;
    size_t size;
    shm_fixed f;                 /* the pristine fixed header */
    unsigned char *writable;     /* 1 per byte some operation may write */
} fz_seg;

static void fz_allow(fz_seg *z, uint64_t off, uint64_t len)
{
    if (off < z->size)
        memset(z->writable + off, 1, len > z->size - off ? z->size - off : len);
}

/* Map the segment file read-write and work out where writes may land
 * (everything but heap blocks, which depend on the moment). */
static int fz_map(fz_seg *z, const char *dir)
{
    char path[300];
    snprintf(path, sizeof path, "%s/segment", dir);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        return -1;
    z->size = (size_t)st.st_size;
    z->base = mmap(NULL, z->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (z->base == MAP_FAILED)
        return -1;
    z->f = ((shm_header *)z->base)->f;
    z->writable = calloc(z->size, 1);
    if (z->writable == NULL)
        return -1;
    const shm_fixed *f = &z->f;
    fz_allow(z, offsetof(shm_header, epoch), 8);
    fz_allow(z, offsetof(shm_header, pages_used), 4);
    fz_allow(z, offsetof(shm_header, handles_hwm), 4);
    /* Control: lock words and free-list words, not their padding. */
    shm_control *c = (shm_control *)(z->base + f->off_control);
    const unsigned char *cb = (const unsigned char *)c;
#define FZ_LOCK(l) fz_allow(z, f->off_control + (uint64_t)((const unsigned char *)&(l) - cb), \
                            sizeof(l) - sizeof((l).pad))
#define FZ_LIST(fl) do { FZ_LOCK((fl).lock); \
        fz_allow(z, f->off_control + (uint64_t)((const unsigned char *)&(fl).head - cb), \
                 offsetof(shm_freelist, pad) - offsetof(shm_freelist, head)); } while (0)
    FZ_LOCK(c->page_lock);
    FZ_LOCK(c->handle_lock);
    for (unsigned k = 0; k < SHM_NCLASS; k++)
        for (unsigned s = 0; s < SHM_SHARDS; s++)
            FZ_LIST(c->heap[k][s]);
    for (unsigned s = 0; s < SHM_SHARDS; s++)
        FZ_LIST(c->slots[s]);
#undef FZ_LOCK
#undef FZ_LIST
    fz_allow(z, f->off_handles, (uint64_t)f->max_handles * sizeof(shm_handle));
    fz_allow(z, f->off_pages, (uint64_t)f->heap_pages * sizeof(shm_page_desc));
    fz_allow(z, f->off_slots, (uint64_t)f->slots * SHM_SLOT_BYTES);
    /* The ring: all but its geometry (magic .. total_bytes). */
    fz_allow(z, f->off_ring + 32, shm_ring_bytes(f->ring_records) - 32);
    /* The registry's regions (registry/layout.c): the room table, the
     * registry words and the record hints whole; the six indexes
     * (sessions, dialogs, profile pairs, From and To users, the timer
     * wheel) their stripe lock words, then buckets. */
    for (unsigned r = 0; r < f->nregions; r++) {
        if (r == REGION_ROOMS || r == REGION_SHARED || r == REGION_REC_HINTS) {
            fz_allow(z, f->off_region[r], f->region_bytes[r]);
            continue;
        }
        for (unsigned i = 0; i < SHM_STRIPES; i++)
            fz_allow(z, f->off_region[r] + (uint64_t)i * sizeof(shm_lock), sizeof(uint32_t));
        uint64_t locks = (uint64_t)SHM_STRIPES * sizeof(shm_lock);
        fz_allow(z, f->off_region[r] + locks, f->region_bytes[r] - locks);
    }
    return 0;
}

/* Is the heap byte at `off` inside a block carved per the page table at
 * `base` (read defensively: the table may be garbage)? */
static int fz_heap_ok(const fz_seg *z, const unsigned char *base, uint64_t off)
{
    const shm_fixed *f = &z->f;
    if (off < f->off_heap || off >= f->off_ring)
        return 0;
    uint64_t page = (off - f->off_heap) / SHM_PAGE_BYTES;
    const shm_page_desc *pd = (const shm_page_desc *)(base + f->off_pages) + page;
    uint32_t d = pd->cls, carved = pd->carved;
    unsigned cls = (d & 0xff) - 1, shard = d >> 8;
    if (d == 0 || cls >= SHM_NCLASS || shard >= SHM_SHARDS)
        return 0;
    uint64_t size = shm_class_size(cls);
    if (carved > SHM_PAGE_BYTES / size) /* a scribbled count: blocks stop at the page end */
        carved = SHM_PAGE_BYTES / size;
    return (off - f->off_heap) % SHM_PAGE_BYTES < carved * size;
}

/* Which region `off` lies in, for failure reports. The registry's
 * regions are named by registry/layout.c itself (the names do not depend
 * on the capacities). */
static const char *fz_region(const fz_seg *z, uint64_t off)
{
    static reg_layout names;
    if (names.regions[0].name == NULL && reg_layout_params(&(shmreg_options){0}, &names) != 0)
        return "a consumer region";
    const shm_fixed *f = &z->f;
    if (off < f->off_control)
        return "header";
    if (off < f->off_handles)
        return "control";
    if (off < f->off_pages)
        return "handles";
    if (off < f->off_slots)
        return "page descriptors";
    if (off < f->off_heap)
        return "session slots";
    if (off < f->off_ring)
        return "heap";
    if (f->nregions == 0 || off < f->off_region[0])
        return off < f->end ? "ring" : "past the end";
    for (unsigned i = f->nregions; i-- > 0;)
        if (i < SHM_MAX_REGIONS && off >= f->off_region[i])
            return off >= f->end     ? "past the end"
                   : i < REG_NREGIONS ? names.regions[i].name
                                      : "a consumer region";
    return "past the end";
}

typedef struct fz_guard {
    unsigned char *before;
    uint64_t bad_off;            /* first byte written outside, when failed */
    const char *bad_op;
} fz_guard;

static void fz_guard_begin(fz_guard *g, const fz_seg *z)
{
    memcpy(g->before, z->base, z->size);
}

/* 0, or -1 (and g->bad_*) when `op` wrote where nothing may write. */
static int fz_guard_end(fz_guard *g, const fz_seg *z, const char *op)
{
    for (size_t at = 0; at < z->size; at += 4096) {
        size_t n = z->size - at < 4096 ? z->size - at : 4096;
        if (memcmp(g->before + at, z->base + at, n) == 0)
            continue;
        for (size_t i = at; i < at + n; i++) {
            if (g->before[i] == z->base[i] || z->writable[i])
                continue;
            /* Heap: inside a block by the page table before or after. */
            if (fz_heap_ok(z, g->before, i) || fz_heap_ok(z, z->base, i))
                continue;
            g->bad_off = i;
            g->bad_op = op;
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ scribbles */

typedef struct fz_range {
    uint64_t off, len;
} fz_range;

/* Where scribbles land: the regions by turns, then a byte inside; the
 * heap only where blocks were carved, the fixed header (checksummed:
 * always refused) rarely. */
static unsigned fz_ranges(const fz_seg *z, const unsigned char *pristine, fz_range *r, unsigned max)
{
    const shm_fixed *f = &z->f;
    unsigned n = 0;
    r[n++] = (fz_range){offsetof(shm_header, epoch), SHM_HEADER_BYTES - offsetof(shm_header, epoch)};
    r[n++] = (fz_range){f->off_control, sizeof(shm_control)};
    r[n++] = (fz_range){f->off_control, sizeof(shm_control)};
    r[n++] = (fz_range){f->off_handles, (uint64_t)f->max_handles * sizeof(shm_handle)};
    r[n++] = (fz_range){f->off_pages, (uint64_t)f->heap_pages * sizeof(shm_page_desc)};
    r[n++] = (fz_range){f->off_slots, 32ull * SHM_SLOT_BYTES};
    r[n++] = (fz_range){f->off_slots, 32ull * SHM_SLOT_BYTES};
    r[n++] = (fz_range){f->off_ring, SHM_RING_HEADER_BYTES + 64ull * 64};
    for (unsigned i = 0; i < f->nregions && i < SHM_MAX_REGIONS && n + 1 < max; i++)
        r[n++] = (fz_range){f->off_region[i], f->region_bytes[i]};
    const shm_header *hd = (const shm_header *)pristine;
    const shm_page_desc *pd = (const shm_page_desc *)(pristine + f->off_pages);
    for (uint32_t p = 0; p < hd->pages_used && p < f->heap_pages && n + 1 < max; p++) {
        unsigned cls = (pd[p].cls & 0xff) - 1;
        if (cls < SHM_NCLASS && pd[p].carved) {
            uint64_t len = (uint64_t)pd[p].carved * shm_class_size(cls);
            r[n++] = (fz_range){f->off_heap + (uint64_t)p * SHM_PAGE_BYTES,
                                len > SHM_PAGE_BYTES ? SHM_PAGE_BYTES : len};
        }
    }
    if (n < max)
        r[n++] = (fz_range){0, sizeof(shm_fixed)};
    return n;
}

/* One scribble chosen by three random words (from an rng, or from the
 * fuzzer's input): where, what kind, which value. Returns the offset. */
static uint64_t fz_scribble_one(const fz_seg *z, const fz_range *r, unsigned nr, uint64_t w1,
                                uint64_t w2, uint64_t w3)
{
    const fz_range *g = &r[w1 % nr];
    if (g->off == 0 && (w1 >> 32) % 16) /* the fixed header: one time in 16 */
        g = &r[1];
    uint64_t off = g->off + (w2 % g->len);
    const shm_fixed *f = &z->f;
    uint64_t v;
    switch ((w2 >> 40) % 8) {
    case 0: v = w3; break;                                   /* any word */
    case 1: v = 0; break;
    case 2: v = ~0ull; break;
    case 3: { static const uint64_t small[] = {1, 2, 3, 4, 0x7fffffff, 0x80000000, 255, 256};
              v = small[w3 % 8]; break; }
    case 4: v = f->heap_pages + (w3 % 3); break;             /* just past the heap */
    case 5: v = f->off_heap + (w3 % (f->end - f->off_heap)) / 16 * 16; break; /* an offset */
    case 6: v = r[w3 % nr].off; break;                       /* another region's start */
    default: /* one byte or one bit */
        if (off < z->size) {
            if (w3 & 1)
                z->base[off] ^= (unsigned char)(1u << ((w3 >> 1) % 8));
            else
                z->base[off] = (unsigned char)(w3 >> 8);
        }
        return off;
    }
    unsigned width = (w3 >> 60) % 2 ? 4 : 8;
    off &= ~(uint64_t)(width - 1);
    if (off + width <= z->size)
        memcpy(z->base + off, &v, width);
    return off;
}

/* ------------------------------------------------------------ operations */

/* Error codes by operation, for the campaign's figures: a bucket for
 * each code, the last for any code beyond them (named as the last). */
#define FZ_NCODES (1 - SHMREG_EFOREIGN + 1)
enum { FZ_OP_OPEN, FZ_OP_ITER, FZ_OP_GET, FZ_OP_DLG, FZ_OP_ROOM, FZ_OP_CREATE, FZ_OP_REPLACE,
       FZ_OP_DELETE, FZ_OP_BIND, FZ_OP_JOIN, FZ_OP_CHECK, FZ_OP_REPAIR, FZ_OP_STAT, FZ_OP_COUNT };
static const char *const fz_op_names[FZ_OP_COUNT] = {
    "open", "iterate", "get", "dialog find", "room walk", "create", "replace", "delete",
    "dialog bind", "room join", "check", "check --repair", "stat",
};

typedef struct fz_counts {
    uint64_t codes[FZ_OP_COUNT][FZ_NCODES]; /* index -rc */
    uint64_t execs;
    uint64_t unexpected;                    /* a code not documented for the op */
} fz_counts;

static void fz_count(fz_counts *c, int op, int rc)
{
    c->execs++;
    if (rc > 0)
        rc = 0; /* shmreg_reap and the like return counts */
    unsigned i = (unsigned)-rc;
    c->codes[op][i < FZ_NCODES ? i : FZ_NCODES - 1]++;
    /* Over a damaged segment, the one new failure allowed is a clean
     * ECORRUPT (or EBUSY: a lock a garbage owner seems to hold). */
    static const int ok[] = {0, SHMREG_ENOENT, SHMREG_EEXIST, SHMREG_EFULL, SHMREG_ESTATE,
                             SHMREG_ECONFLICT, SHMREG_ECORRUPT, SHMREG_EVERSION, SHMREG_EBUSY,
                             SHMREG_ELIMIT};
    for (unsigned k = 0; k < sizeof ok / sizeof ok[0]; k++)
        if (rc == ok[k])
            return;
    c->unexpected++;
}

static void fz_problem(void *arg, const char *what)
{
    (void)arg;
    (void)what;
}

/* Run the operations over the (damaged) registry at `dir`, guarding every
 * write. Returns 0, or -1 on a guard failure (g->bad_*). */
static int fz_ops(const fz_pop *p, const fz_seg *z, fz_guard *g, fz_counts *c, uint64_t rnd)
{
    shmreg *h;
    int rc = shmreg_open(p->dir, NULL, &h);
    fz_count(c, FZ_OP_OPEN, rc);
    if (rc)
        return 0;
    int bad = 0;
#define GUARDED(op, expr) do { fz_guard_begin(g, z); rc = (expr); fz_count(c, op, rc); \
        if (fz_guard_end(g, z, fz_op_names[op])) { bad = -1; goto out; } } while (0)

    shmreg_session v;
    shmreg_dialog dv;
    shmreg_room rv;
    shmreg_participant pv;
    if (shmreg_read_begin(h) == 0) {
        uint64_t cur = 0;
        for (unsigned n = 0; n < 200 && (rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ITER, rc == SHMREG_ENOENT ? 0 : rc);
        cur = 0;
        for (unsigned n = 0; n < 200 && (rc = shmreg_dialog_next(h, &cur, &dv)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ITER, rc == SHMREG_ENOENT ? 0 : rc);
        for (unsigned i = 0; i <= FZ_SESSIONS; i++) {
            fz_count(c, FZ_OP_GET, shmreg_session_get(h, &p->sess[i], &v));
            fz_count(c, FZ_OP_GET, shmreg_session_dialog(h, &p->sess[i], 0, &dv));
        }
        for (unsigned i = 0; i < FZ_DIALOGS; i++) {
            char cid[32], lt[16], rt[16];
            fz_dialog_key(i, cid, lt, rt);
            shmreg_id sid;
            fz_count(c, FZ_OP_DLG, shmreg_dialog_find(h, fz_s(cid), fz_s(lt), fz_s(rt), &sid));
            fz_count(c, FZ_OP_DLG, shmreg_dialog_find(h, fz_s(cid), fz_s(lt),
                                                      (shmreg_str){NULL, 0}, &sid));
        }
        cur = 0;
        for (unsigned n = 0; n < 64 && (rc = shmreg_room_next(h, &cur, &rv)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ROOM, rc == SHMREG_ENOENT ? 0 : rc);
        fz_count(c, FZ_OP_ROOM, shmreg_room_get(h, &p->room, &rv));
        cur = 0;
        for (unsigned n = 0; n < 64 && (rc = shmreg_participant_next(h, &p->room, &cur, &pv)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ROOM, rc == SHMREG_ENOENT ? 0 : rc);
        shmreg_profile_entry pe;
        shmreg_id mid;
        cur = 0;
        for (unsigned n = 0; n < 64 && (rc = shmreg_profile_next(h, (shmreg_str){NULL, 0}, &cur, &pe)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ITER, rc == SHMREG_ENOENT ? 0 : rc);
        cur = 0;
        for (unsigned n = 0; n < 64 && (rc = shmreg_profile_member_next(h, fz_s("trunk"), fz_s("a"), &cur, &mid)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ITER, rc == SHMREG_ENOENT ? 0 : rc);
        cur = 0;
        for (unsigned n = 0; n < 64 && (rc = shmreg_session_by_user(h, fz_s("conf@fuzz.example"),
                                                                     SHMREG_USER_TO, &cur, &v)) == 0; n++)
            ;
        fz_count(c, FZ_OP_ITER, rc == SHMREG_ENOENT ? 0 : rc);
        shmreg_session_control sc;
        for (unsigned i = 0; i < FZ_SESSIONS; i++)
            fz_count(c, FZ_OP_GET, shmreg_session_control_get(h, &p->sess[i], &sc));
        shmreg_read_end(h);
    }
    shmreg_stats st;
    fz_count(c, FZ_OP_STAT, shmreg_stat(h, &st));

    char sdp[6000];
    fz_sdp(sdp, sizeof sdp, (unsigned)rnd);
    shmreg_id nid;
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_FROM_URI] = fz_s("sip:new@fuzz.example");
    f.str[SHMREG_FIELD_CALL_ID] = fz_s("new-call@fuzz.example");
    GUARDED(FZ_OP_CREATE, shmreg_session_create(h, &f, &nid));
    if (rc == 0) {
        GUARDED(FZ_OP_REPLACE, shmreg_session_set_sdp(h, &nid, SHMREG_SDP_LOCAL, sdp, 100 + rnd % 5000));
        GUARDED(FZ_OP_BIND, shmreg_dialog_bind(h, fz_s("new-call@fuzz.example"), fz_s("nl"), fz_s("nr"), &nid));
        GUARDED(FZ_OP_JOIN, shmreg_room_join(h, &p->room, &nid, fz_s("sip:new@x"), fz_s("New"), 4000));
    }
    const shmreg_id *old = &p->sess[(rnd >> 8) % FZ_SESSIONS];
    GUARDED(FZ_OP_REPLACE, shmreg_session_set_sdp(h, old, SHMREG_SDP_REMOTE, sdp, 64 + (rnd >> 16) % 3000));
    GUARDED(FZ_OP_REPLACE, shmreg_session_update(h, old, &f, SHMREG_MASK(SHMREG_FIELD_FROM_URI)));
    GUARDED(FZ_OP_DELETE, shmreg_session_delete(h, &p->sess[(rnd >> 24) % FZ_SESSIONS]));
    if (rc == 0 || rc == SHMREG_ENOENT) {
        char cid[32], lt[16], rt[16];
        fz_dialog_key((unsigned)(rnd >> 32) % FZ_DIALOGS, cid, lt, rt);
        GUARDED(FZ_OP_DELETE, shmreg_dialog_unbind(h, fz_s(cid), fz_s(lt), fz_s(rt)));
    }
    GUARDED(FZ_OP_JOIN, shmreg_profile_join(h, old, fz_s("trunk"), fz_s("c"), 3, NULL));
    GUARDED(FZ_OP_JOIN, shmreg_profile_leave(h, old, fz_s("trunk"), fz_s("a")));
    GUARDED(FZ_OP_REPLACE, shmreg_session_var_set(h, old, fz_s("k"), fz_s("v")));
    GUARDED(FZ_OP_REPLACE, shmreg_session_set_timeout(h, old, 5000000000ull,
                                                       SHMREG_TIMEOUT_NOTIFY | SHMREG_TIMEOUT_RELATIVE, 1));
    shmreg_expired ex[8];
    GUARDED(FZ_OP_REPLACE, shmreg_expire(h, 0, ex, 8));
    if (rc >= 0)
        rc = 0;
    if (rc == 0 || rc == SHMREG_ENOENT)
        GUARDED(FZ_OP_DELETE, shmreg_session_delete(h, &nid));
    shmreg_check_report r;
    GUARDED(FZ_OP_CHECK, shmreg_check(h, 0, &r, fz_problem, NULL, NULL));
    GUARDED(FZ_OP_REPAIR, shmreg_check(h, SHMREG_CHECK_REPAIR, &r, fz_problem, NULL, NULL));
    GUARDED(FZ_OP_CHECK, shmreg_check(h, 0, &r, fz_problem, NULL, NULL));
#undef GUARDED
out:
    shmreg_close(h);
    return bad;
}

#endif
