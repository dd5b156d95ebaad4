/*
 * alloc_count_selftest — the allocation counter counts what it claims to,
 * in the normal build (glibc interposition) and under ASan (malloc hook):
 * nothing for no allocation, exactly one per call, calls made inside other
 * libraries too, and free() not at all.
 */
#include "alloc_count.h"
#include "tap.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

/* Stores through a volatile pointer, so the compiler cannot elide the
 * malloc/free pairs below. */
static void *volatile sink;

int main(void)
{
    plan(9);
    note("counting allocations under %s",
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
         "a sanitizer (malloc hook)"
#else
         "glibc (interposed malloc)"
#endif
    );

    alloc_count_start();
    is(alloc_count_stop(), 0, "no allocation: count 0");

    alloc_count_start();
    sink = malloc(100);
    uint64_t n = alloc_count_stop();
    is(n, 1, "one malloc: count 1");
    free(sink);

    alloc_count_start();
    sink = malloc(1);
    free(sink);
    sink = calloc(4, 8);
    sink = realloc(sink, 4096);
    n = alloc_count_stop();
    free(sink);
    is(n, 3, "malloc + calloc + realloc: count 3");

    void *p = NULL;
    alloc_count_start();
    int rc = posix_memalign(&p, 64, 128);
    sink = aligned_alloc(64, 128);
    n = alloc_count_stop();
    is(rc, 0, "posix_memalign succeeded");
    is(n, 2, "posix_memalign + aligned_alloc: count 2");
    free(p);
    free(sink);

    sink = malloc(10);
    alloc_count_start();
    free(sink);
    is(alloc_count_stop(), 0, "free is not counted");

    alloc_count_start();
    sink = strdup("libc-internal allocation");
    n = alloc_count_stop();
    free(sink);
    is(n, 1, "strdup (malloc called inside libc): count 1");

    MDB_env *env = NULL;
    alloc_count_start();
    rc = mdb_env_create(&env);
    n = alloc_count_stop();
    ok(rc == 0 && n >= 1, "mdb_env_create (another library) is counted: %llu",
       (unsigned long long)n);
    mdb_env_close(env);

    alloc_count_start();
    alloc_count_stop();
    sink = malloc(1);
    free(sink);
    is(alloc_count_stop(), 0, "stopped: nothing counted after stop");

    return exit_status();
}
