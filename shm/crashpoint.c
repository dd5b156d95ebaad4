/*
 * crashpoint.c — the test library's side of shm/crashpoint.h: one armed
 * name per process, compared by string at each point reached. In a shipped
 * build this file compiles to nothing.
 */
#include "crashpoint.h"

#ifdef SHMREG_TESTING
#include <string.h>
#include <unistd.h>

#ifdef SHMREG_COVERAGE
/* The coverage build writes the counters out before stopping: the lines
 * that led up to the point count, and a crash changes nothing shared. */
extern void __gcov_dump(void);
#define CRASH_DUMP() __gcov_dump()
#else
#define CRASH_DUMP() ((void)0)
#endif

static const char *armed;

void shm_crash_arm(const char *name)
{
    armed = name;
}

void shm_crash_point(const char *name)
{
    if (armed && strcmp(armed, name) == 0) {
        CRASH_DUMP();
        _exit(SHM_CRASH_EXIT);
    }
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int shm_crashpoint_unused;
#endif
