/*
 * segment.c — libFuzzer target: the input chooses scribbles on a
 * populated segment, then every kind of operation runs over the damage,
 * in-process (no fork, no shmregctl: libFuzzer needs each input to run in
 * this process, and catches signals, timeouts and sanitizer reports
 * itself).
 *
 * Each 24 bytes of input are three words that pick one scribble exactly
 * as fuzz/scribble.c's generator does (fz_scribble_one: region, offset,
 * kind and value), so a crash found here replays there and the other way
 * round; the population, operations and write guard are fuzz/harness.h's.
 * A guard failure aborts, so libFuzzer saves the input.
 *
 *   make (the fuzz rule) ...; build/.../fuzz/segment fuzz/corpus/segment -timeout=5
 */
#include <stdint.h>

#include "harness.h"

static fz_pop pop;
static fz_seg seg;
static unsigned char *pristine;
static fz_guard guard;
static fz_range ranges[64];
static unsigned nranges;
static fz_counts counts;

static void cleanup(void)
{
    char rm[512];
    snprintf(rm, sizeof rm, "rm -rf '%s'", pop.dir);
    (void)!system(rm);
}

static void setup(void)
{
    snprintf(pop.dir, sizeof pop.dir, "/dev/shm/shmreg-fuzz-segment-%d", (int)getpid());
    int rc = fz_populate(&pop);
    if (rc || fz_map(&seg, pop.dir) != 0) {
        fprintf(stderr, "segment: cannot populate %s: %s\n", pop.dir, shmreg_errmsg());
        cleanup();
        abort();
    }
    atexit(cleanup);
    pristine = malloc(seg.size);
    guard.before = malloc(seg.size);
    if (!pristine || !guard.before)
        abort();
    memcpy(pristine, seg.base, seg.size);
    nranges = fz_ranges(&seg, pristine, ranges, 64);
}

static uint64_t word(const uint8_t *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pristine == NULL)
        setup();
    memcpy(seg.base, pristine, seg.size);
    uint64_t rnd = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i + 24 <= size && i < 24 * 16; i += 24) {
        fz_scribble_one(&seg, ranges, nranges, word(data + i), word(data + i + 8), word(data + i + 16));
        rnd ^= word(data + i + 16) + (rnd << 6);
    }
    if (fz_ops(&pop, &seg, &guard, &counts, rnd) != 0) {
        fprintf(stderr, "segment: %s wrote outside any block at offset %llu (%s)\n", guard.bad_op,
                (unsigned long long)guard.bad_off, fz_region(&seg, guard.bad_off));
        abort();
    }
    return 0;
}
