/*
 * proc.c — process liveness from /proc/PID/stat (see proc.h for the rule
 * and why there is one). Both questions read the same line: the command
 * name may hold spaces and ')', so fields are counted from the last ')';
 * the state is field 3, the start time field 22.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

/* Read /proc/PID/stat into buf and return a pointer to the space before
 * field 3, or NULL; *missing says the file does not exist (no such pid). */
static char *stat_fields(pid_t pid, char *buf, size_t cap, int *missing)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    *missing = fd < 0 && errno == ENOENT;
    if (fd < 0)
        return NULL;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n <= 0)
        return NULL;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] == ' ' ? p + 1 : NULL;
}

static uint64_t start_field(char *p)
{
    for (int field = 3; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

uint64_t shm_proc_start_time(pid_t pid)
{
    char buf[1024];
    int missing, saved = errno;
    char *p = pid > 0 ? stat_fields(pid, buf, sizeof buf, &missing) : NULL;
    errno = saved;
    return p ? start_field(p) : 0;
}

int shm_proc_alive(pid_t pid, uint64_t start_time)
{
    if (pid <= 0 || (uint32_t)pid > SHM_PID_LIMIT)
        return 0;
    char buf[1024];
    int missing, saved = errno, alive;
    char *p = stat_fields(pid, buf, sizeof buf, &missing);
    if (p == NULL) {
        /* Gone, or /proc not readable here: then the kernel's word. */
        alive = !missing && (kill(pid, 0) == 0 || errno == EPERM);
    } else if (p[1] == 'Z' || p[1] == 'X' || p[1] == 'x') {
        alive = 0;
    } else {
        alive = start_time == 0 || start_field(p) == 0 || start_field(p) == start_time;
    }
    errno = saved;
    return alive;
}
