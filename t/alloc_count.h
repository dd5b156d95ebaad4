/*
 * alloc_count.h — count heap allocations, for the tests that hold the
 * library to "no heap allocation on hot paths".
 *
 *     alloc_count_start();
 *     rc = shmreg_session_get(h, &id, &view);    // the hot path
 *     is(alloc_count_stop(), 0, "get allocates nothing");
 *
 * alloc_count_stop() returns how many malloc, calloc, realloc,
 * posix_memalign, aligned_alloc, memalign (and valloc, pvalloc,
 * reallocarray in the normal build) calls this process made since
 * alloc_count_start(), in every thread and every library (libc-internal
 * ones such as strdup or fopen included). free() is not counted.
 *
 * How: in the normal build t/alloc_count.c defines malloc & co. itself,
 * forwarding to glibc's __libc_malloc etc.; a symbol defined in the
 * executable interposes libc's for every shared library too. Under
 * AddressSanitizer (which owns malloc) it installs a sanitizer malloc
 * hook instead. Every test program links it, and so does the bench
 * (tools/shmreg-bench), which counts its timed loops with it; counting
 * costs one relaxed atomic load per allocation while not started.
 *
 * Mind stdio: the first printf (or TAP line) of a process allocates its
 * buffer, so print something before the counted section, not inside it.
 */
#ifndef SHMREG_ALLOC_COUNT_H
#define SHMREG_ALLOC_COUNT_H

#include <stdint.h>

void alloc_count_start(void);
uint64_t alloc_count_stop(void);

#endif
