/*
 * seg.c — layout, formatting and validation of a segment.
 *
 * Validation is the point of this file. A process attaching to a segment
 * trusts nothing in it: the magic and layout version say whether it is ours
 * at all; the checksum over the fixed header catches scribbles; and the
 * region offsets are recomputed from the capacities and compared, so a
 * header that passes has region boundaries that are all inside the file and
 * all where this library would have put them. The consumer's regions are
 * bound the same way: their sizes are stored, their offsets recomputed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "ring.h"
#include "seg.h"

#define ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))

/* The engine's own record kinds: what it lays in every segment. */
static const shm_record engine_records[SHM_ENGINE_RECORDS] = {
    {"segment header", sizeof(shm_header)},
    {"robust lock", sizeof(shm_lock)},
    {"free list", sizeof(shm_freelist)},
    {"handle", sizeof(shm_handle)},
    {"page descriptor", sizeof(shm_page_desc)},
    {"block header", sizeof(shm_blk)},
    {"ring record", sizeof(shm_ring_record)},
};

static const shm_record *record_kind(const shm_record *consumer, uint32_t i)
{
    return i < SHM_ENGINE_RECORDS ? &engine_records[i] : &consumer[i - SHM_ENGINE_RECORDS];
}

int shm_layout(const shm_params *p, shm_fixed *f)
{
    if (p->nrecords > SHM_MAX_RECORDS - SHM_ENGINE_RECORDS || (p->nrecords && !p->records) ||
        p->nregions > SHM_MAX_REGIONS || (p->nregions && !p->regions))
        return SHM_EINVAL;
    if (p->slots < 1 || p->slots > SHM_MAX_SLOTS ||
        p->max_handles < 1 || p->max_handles > SHM_MAX_HANDLES || p->heap_bytes < SHM_PAGE_BYTES ||
        shm_ring_bytes(p->ring_records) == 0 ||
        p->heap_bytes > SHM_MAX_HEAP_BYTES)
        return SHM_EINVAL;
    for (uint32_t i = 0; i < p->nregions; i++)
        if (p->regions[i].bytes > SHM_MAX_REGION_BYTES)
            return SHM_EINVAL;
    memset(f, 0, sizeof *f);
    memcpy(f->magic, SHM_MAGIC, 8);
    f->layout_version = SHM_LAYOUT_VERSION;
    f->header_bytes = SHM_HEADER_BYTES;
    f->slots = p->slots;
    f->max_handles = p->max_handles;
    f->heap_pages = (uint32_t)((p->heap_bytes + SHM_PAGE_BYTES - 1) / SHM_PAGE_BYTES);
    f->page_bytes = SHM_PAGE_BYTES;
    f->slot_bytes = SHM_SLOT_BYTES;
    f->ring_records = p->ring_records;
    f->nrecords = SHM_ENGINE_RECORDS + p->nrecords;
    for (uint32_t i = 0; i < f->nrecords; i++)
        f->record_bytes[i] = record_kind(p->records, i)->bytes;
    f->nregions = p->nregions;
    for (uint32_t i = 0; i < p->nregions; i++)
        f->region_bytes[i] = p->regions[i].bytes;
    memcpy(f->user, p->user, SHM_USER_BYTES);

    uint64_t o = SHM_HEADER_BYTES;
    f->off_control = o;
    o = ALIGN_UP(o + sizeof(shm_control), 4096);
    f->off_handles = o;
    o = ALIGN_UP(o + (uint64_t)p->max_handles * sizeof(shm_handle), 4096);
    f->off_pages = o;
    o = ALIGN_UP(o + (uint64_t)f->heap_pages * sizeof(shm_page_desc), 4096);
    f->off_slots = o;
    o = ALIGN_UP(o + (uint64_t)p->slots * SHM_SLOT_BYTES, 4096);
    f->off_heap = o;
    o += (uint64_t)f->heap_pages * SHM_PAGE_BYTES;
    f->off_ring = o;
    o = ALIGN_UP(o + shm_ring_bytes(p->ring_records), 4096);
    for (uint32_t i = 0; i < p->nregions; i++) {
        f->off_region[i] = o;
        o = ALIGN_UP(o + p->regions[i].bytes, 4096);
    }
    f->end = o;
    f->segment_bytes = o;
    return 0;
}

uint64_t shm_fixed_checksum(const shm_fixed *f)
{
    const unsigned char *b = (const unsigned char *)f;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < offsetof(shm_fixed, checksum); i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

int shm_seg_format(void *base, const shm_fixed *f)
{
    shm_header *h = base;
    h->f = *f;
    h->f.checksum = shm_fixed_checksum(&h->f);
    atomic_store(&h->epoch, 1);
    /* Locks are free when zero: the zero-filled file has them all. */
    return shm_ring_init((unsigned char *)base + f->off_ring, shm_ring_bytes(f->ring_records),
                         f->ring_records) ? SHM_EINVAL : 0;
}

#define WHY(...) ((void)snprintf(why, whylen, __VA_ARGS__))

int shm_seg_bind(shm_seg *s, void *base, uint64_t size, const shm_record *records,
                 uint32_t nrecords, uint32_t nregions, char *why, size_t whylen)
{
    memset(s, 0, sizeof *s);
    if (size < SHM_HEADER_BYTES)
        return WHY("segment is %llu bytes, smaller than a shmreg header (%u)",
                   (unsigned long long)size, SHM_HEADER_BYTES), SHM_EVERSION;
    shm_header *h = base;
    if (memcmp(h->f.magic, SHM_MAGIC, 8) != 0)
        return WHY("not a shmreg segment: magic bytes differ"), SHM_EVERSION;
    if (h->f.layout_version != SHM_LAYOUT_VERSION)
        return WHY("segment has layout version %u, this library uses %u",
                   h->f.layout_version, SHM_LAYOUT_VERSION), SHM_EVERSION;
    if (h->f.checksum != shm_fixed_checksum(&h->f))
        return WHY("header checksum mismatch: the fixed header was modified"), SHM_ECORRUPT;
    if (h->f.segment_bytes != size)
        return WHY("header says %llu bytes but the file has %llu",
                   (unsigned long long)h->f.segment_bytes, (unsigned long long)size),
               SHM_ECORRUPT;
    /* Record sizes before offsets: when both differ, the record names the
     * cause ("another build"), the offsets only the symptom. */
    if (h->f.nrecords != SHM_ENGINE_RECORDS + nrecords)
        return WHY("segment describes %u record kinds, this build %u: written by another "
                   "build", h->f.nrecords, SHM_ENGINE_RECORDS + nrecords), SHM_EVERSION;
    for (uint32_t i = 0; i < h->f.nrecords; i++) {
        const shm_record *k = record_kind(records, i);
        if (h->f.record_bytes[i] != k->bytes)
            return WHY("segment's %s is %u bytes, this build's is %u: written by another "
                       "build", k->name, h->f.record_bytes[i], k->bytes), SHM_EVERSION;
    }
    if (h->f.nregions != nregions)
        return WHY("segment has %u consumer regions, this build lays %u: written by another "
                   "program", h->f.nregions, nregions), SHM_EVERSION;
    shm_params p = {
        .slots = h->f.slots, .max_handles = h->f.max_handles, .ring_records = h->f.ring_records,
        .heap_bytes = (uint64_t)h->f.heap_pages * SHM_PAGE_BYTES,
        .records = records, .nrecords = nrecords, .nregions = 0,
    };
    shm_region regions[SHM_MAX_REGIONS];
    for (uint32_t i = 0; i < nregions && i < SHM_MAX_REGIONS; i++)
        regions[i] = (shm_region){ "", h->f.region_bytes[i] };
    p.regions = regions;
    p.nregions = nregions;
    memcpy(p.user, h->f.user, SHM_USER_BYTES);
    shm_fixed want;
    if (shm_layout(&p, &want) != 0)
        return WHY("header capacities out of range (slots %u, handles %u)",
                   h->f.slots, h->f.max_handles), SHM_ECORRUPT;
    if (h->f.header_bytes != want.header_bytes || h->f.page_bytes != want.page_bytes ||
        h->f.slot_bytes != want.slot_bytes ||
        memcmp(&h->f.off_control, &want.off_control,
               offsetof(shm_fixed, nrecords) - offsetof(shm_fixed, off_control)) != 0)
        return WHY("header region offsets disagree with its capacities "
                   "(built by another version?)"), SHM_ECORRUPT;

    s->base = base;
    s->size = size;
    s->hdr = h;
    s->ctl = (shm_control *)(s->base + h->f.off_control);
    s->handles = (shm_handle *)(s->base + h->f.off_handles);
    s->pages = (shm_page_desc *)(s->base + h->f.off_pages);
    s->slots = h->f.slots;
    s->max_handles = h->f.max_handles;
    s->heap_pages = h->f.heap_pages;
    s->off_slots = h->f.off_slots;
    s->off_heap = h->f.off_heap;
    s->off_ring = h->f.off_ring;
    s->ring_records = h->f.ring_records;
    s->nregions = nregions;
    for (uint32_t i = 0; i < nregions; i++) {
        s->region[i].base = s->base + h->f.off_region[i];
        s->region[i].bytes = h->f.region_bytes[i];
    }
    return 0;
}

uint64_t shm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
