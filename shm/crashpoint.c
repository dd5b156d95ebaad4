/*
 * crashpoint.c — the test library's side of shm/crashpoint.h: one armed
 * name per process, compared by string at each point reached. In a shipped
 * build this file compiles to nothing.
 */
#include "crashpoint.h"

#ifdef SHMREG_TESTING
#include <string.h>
#include <unistd.h>

static const char *armed;

void shm_crash_arm(const char *name)
{
    armed = name;
}

void shm_crash_point(const char *name)
{
    if (armed && strcmp(armed, name) == 0)
        _exit(SHM_CRASH_EXIT);
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int shm_crashpoint_unused;
#endif
