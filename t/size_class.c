/*
 * t/size_class.c — the heap's size classes, through the engine alone.
 *
 * Why: what a session costs in shared memory is mostly its record block
 * rounded up to a class, so the classes are a promise about memory: a
 * block is never smaller than asked, and never more than an eighth
 * bigger than what it holds beyond the next class down (from 128 bytes
 * on, internal waste under 12.5%). The
 * allocator finds a class by arithmetic rather than by a search, and the
 * block check (shm_blk_at) divides by the class's shape: this test holds
 * both to the table, at every class boundary, on blocks really carved
 * from a segment's heap.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "alloc.h"
#include "epoch.h"
#include "ring.h"
#include "seg.h"
#include "tap.h"

static const shm_record records[] = {{"none", 64}};

/* A segment with one page per class and a few to spare, so that every
 * class below can carve a page of its own. */
static void open_engine(shm_ctx *c)
{
    shm_params p = {.slots = 16, .max_handles = 4, .ring_records = SHM_RING_MIN_RECORDS,
                    .heap_bytes = (uint64_t)(SHM_NCLASS + 4) * SHM_PAGE_BYTES, .records = records,
                    .nrecords = 1};
    memcpy(p.user, "size classes t  ", 16);
    shm_fixed f;
    if (shm_layout(&p, &f) != 0)
        bail_out("layout refused");
    void *base = mmap(NULL, f.segment_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        bail_out("mmap: %s", strerror(errno));
    if (shm_seg_format(base, &f) != 0)
        bail_out("format failed");
    char why[256];
    memset(c, 0, sizeof *c);
    if (shm_seg_bind(&c->seg, base, f.segment_bytes, records, 1, 0, why, sizeof why) != 0 ||
        shm_handle_claim(c) != 0)
        bail_out("bind: %s", why);
}

/* The class a block of `payload` bytes must get: the smallest whose
 * capacity holds it, found by the slow search the allocator avoids. */
static unsigned smallest_class(uint64_t payload)
{
    for (unsigned k = 0; k < SHM_NCLASS; k++)
        if (shm_class_size(k) >= payload + SHM_BLK_HDR)
            return k;
    return SHM_NCLASS;
}

int main(void)
{
    plan(15);
    int not16 = 0, not_rising = 0, coarse = 0;
    for (unsigned k = 0; k < SHM_NCLASS; k++) {
        not16 += shm_class_size(k) % 16 != 0;
        if (k > 0) {
            not_rising += shm_class_size(k) <= shm_class_size(k - 1);
            /* from 128 on, a block holding one byte more than the class
             * below leaves at most an eighth of itself unused */
            coarse += k >= 4 && 8 * (uint64_t)(shm_class_size(k) - shm_class_size(k - 1)) > shm_class_size(k);
        }
    }
    is(shm_class_size(0), 64, "the smallest class is 64 bytes");
    is(shm_class_size(3), 112, "the first four step by 16: the fourth is 112");
    is(shm_class_size(5), 144, "then by an eighth: 128, 144");
    is(shm_class_size(38), 2560, "a 2.5 KiB record has a class of its own (38)");
    is(shm_class_size(SHM_NCLASS - 1), 80 * 1024, "the largest class is 80 KiB (%u classes)", SHM_NCLASS);
    ok(3 * shm_class_size(SHM_NCLASS - 1) <= SHM_PAGE_BYTES, "three of the largest fit a page");
    is(not16 + not_rising, 0, "every size is a multiple of 16 (record hints store offset / 16) and rises");
    is(coarse, 0, "from 128 on, no block leaves more than an eighth of itself unused");

    shm_ctx c;
    open_engine(&c);
    /* Every boundary: a payload that fills a class exactly, and one byte
     * more, which must go to the next class. Each block is checked as a
     * reader would check it, then freed for the next. */
    int wrong_class = 0, unchecked = 0, failed = 0, inside_passed = 0;
    uint64_t tried = 0;
    for (unsigned k = 0; k < SHM_NCLASS; k++) {
        uint64_t cap = shm_class_size(k) - SHM_BLK_HDR;
        uint64_t sizes[] = {cap - 1, cap, cap + 1};
        for (unsigned i = 0; i < 3; i++) {
            unsigned want = smallest_class(sizes[i]);
            if (want >= SHM_NCLASS)
                continue;
            tried++;
            uint64_t off = shm_alloc(&c, sizes[i], 7);
            if (off == 0) {
                failed++;
                continue;
            }
            shm_blk *b = shm_blk_at(&c.seg, off);
            if (b == NULL)
                unchecked++;
            else
                wrong_class += b->cls != want || shm_blk_capacity(b) < sizes[i];
            /* inside a block, 16 bytes in: never a block start */
            inside_passed += shm_blk_at(&c.seg, off + 16) != NULL;
            shm_free(&c, off);
        }
    }
    is(tried, 3 * SHM_NCLASS - 1, "%llu payloads at every class boundary (the last one over the top)",
       (unsigned long long)tried);
    is(failed, 0, "every one allocated");
    is(unchecked + inside_passed, 0, "each block passes the block check; 16 bytes in, none does");
    is(wrong_class, 0, "each got the smallest class that holds it");
    is(shm_alloc(&c, shm_class_size(SHM_NCLASS - 1) - SHM_BLK_HDR + 1, 7), 0,
       "a payload over the largest class gets no block");

    /* The block check divides an offset within a page by the class's m
     * with a multiplication: exact, or a block would be refused or a
     * misaligned offset taken for one. A fresh segment, a page of each
     * class carved whole, and every 16-byte offset of it checked. */
    shm_ctx d;
    open_engine(&d);
    uint64_t offsets = 0, wrong = 0, pages_whole = 0;
    for (unsigned k = 0; k < SHM_NCLASS; k++) {
        uint32_t size = shm_class_size(k), per = SHM_PAGE_BYTES / size;
        uint64_t first = 0, last = 0;
        for (uint32_t i = 0; i < per; i++) {
            uint64_t off = shm_alloc(&d, size - SHM_BLK_HDR, 7);
            first = i == 0 ? off : first;
            last = off;
        }
        uint64_t page = d.seg.off_heap + (first - d.seg.off_heap) / SHM_PAGE_BYTES * SHM_PAGE_BYTES;
        pages_whole += first == page && last == page + (uint64_t)(per - 1) * size;
        for (uint64_t w = 0; w < SHM_PAGE_BYTES; w += 16, offsets++) {
            int start = w % size == 0 && w / size < per;
            wrong += (shm_blk_at(&d.seg, page + w) != NULL) != start;
        }
    }
    is(pages_whole, SHM_NCLASS, "a page of each class carved whole, block after block");
    is(wrong, 0, "of %llu offsets 16 bytes apart, exactly the block starts pass the block check",
       (unsigned long long)offsets);
    return exit_status();
}
