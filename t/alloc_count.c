/*
 * alloc_count.c — the malloc counter behind alloc_count.h; see there for
 * the why. Two implementations, chosen at compile time:
 *
 *  - normal build: malloc, calloc, realloc, reallocarray, free, memalign,
 *    posix_memalign, aligned_alloc, valloc, pvalloc are defined here and
 *    forward to glibc's exported __libc_* entry points, so the memory is
 *    glibc's own (malloc_usable_size etc. keep working) and no dlsym() is
 *    needed (dlsym itself may allocate);
 *  - Address or Thread Sanitizer build: the sanitizer replaces malloc,
 *    so defining it here would clash; instead a malloc hook is installed
 *    with __sanitizer_install_malloc_and_free_hooks(). The sanitizer calls
 *    it once per allocation, whatever the entry point. (The Makefile
 *    defines __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__ for clang too.)
 */
#include "alloc_count.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

static _Atomic int counting;
static _Atomic uint64_t allocs;

static inline void count_one(void)
{
    if (atomic_load_explicit(&counting, memory_order_relaxed))
        atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
}

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)

#if defined(__has_include)
#if __has_include(<sanitizer/allocator_interface.h>)
#include <sanitizer/allocator_interface.h>
#define HAVE_ALLOCATOR_INTERFACE_H 1
#endif
#endif
#ifndef HAVE_ALLOCATOR_INTERFACE_H
/* gcc 12 ships no allocator_interface.h, but libasan and libtsan export this. */
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *));
#endif

static void malloc_hook(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    count_one();
}

static void free_hook(const volatile void *p) { (void)p; }

__attribute__((constructor)) static void install_hooks(void)
{
    __sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
}

#else /* glibc interposition */

#include <stdlib.h>
#include <malloc.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);
extern void __libc_free(void *);

void *malloc(size_t n) { count_one(); return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { count_one(); return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { count_one(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t a, size_t n) { count_one(); return __libc_memalign(a, n); }
void *aligned_alloc(size_t a, size_t n) { count_one(); return __libc_memalign(a, n); }
void *valloc(size_t n) { count_one(); return __libc_valloc(n); }
void *pvalloc(size_t n) { count_one(); return __libc_pvalloc(n); }

void *reallocarray(void *p, size_t n, size_t m)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, m, &bytes)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc(p, bytes);
}

int posix_memalign(void **out, size_t a, size_t n)
{
    if (a < sizeof(void *) || (a & (a - 1)) != 0)
        return EINVAL;
    count_one();
    void *p = __libc_memalign(a, n);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

#endif

void alloc_count_start(void)
{
    atomic_store(&allocs, 0);
    atomic_store(&counting, 1);
}

uint64_t alloc_count_stop(void)
{
    atomic_store(&counting, 0);
    return atomic_load(&allocs);
}
