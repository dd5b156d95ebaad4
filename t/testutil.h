/*
 * testutil.h — helpers the tests share: scratch paths, rm -rf, and forking
 * worker processes.
 *
 * Scratch space: `make test` exports SHMREG_TEST_DIR, a fresh directory
 * (under /dev/shm) that it removes after the run. A test run by hand gets
 * /dev/shm/shmreg-test-<pid> (or /tmp/... without /dev/shm), created on
 * first use and removed when the test process exits.
 */
#ifndef SHMREG_TESTUTIL_H
#define SHMREG_TESTUTIL_H

#include <sys/types.h>

/* A fresh path "<scratch>/<name>-<pid>-<n>" that does not exist yet (the
 * library creates it). The string lives in a ring of 64 buffers: valid
 * until 64 more calls; copy it if you need it longer. `name` should be a
 * plain word (no '/'). Bails out if the scratch dir cannot be made. */
const char *test_dir(const char *name);

/* Remove `path` and everything below it (not following symlinks). A path
 * that does not exist is fine. */
void test_rm_rf(const char *path);

/* Fork a child that runs fn(arg) and then _exit()s: with 0, or with 1 if a
 * tap.h check failed in the child (see tap.h on forked children). fn may
 * _exit() with its own code. stdio is flushed before the fork. Returns the
 * child's pid in the parent; bails out if fork fails. */
pid_t test_fork(void (*fn)(void *), void *arg);

/* Wait for child `pid`. Returns its exit status (0..255), 128 + signal
 * number if it was killed by a signal, or -1 if waitpid failed. */
int test_wait(pid_t pid);

/* `bytes` of zeroed memory shared with the children forked afterwards
 * (MAP_SHARED | MAP_ANONYMOUS), for their counters and hand-offs. Bails
 * out if it cannot be mapped. */
void *test_shared(size_t bytes);

/* A reader in another process that holds one read section open: what
 * pins retired memory. test_pin_start forks it (it opens `path`, enters a
 * section, says so) and returns once it is inside; bails out if it could
 * not get there. test_pin_release tells it to leave and close, and returns
 * its exit status (0: it did); test_pin_kill SIGKILLs it inside its
 * section and returns its status (128 + SIGKILL). */
typedef struct test_pin {
    pid_t pid;
    int to_child, from_child;
} test_pin;
void test_pin_start(test_pin *p, const char *path);
int test_pin_release(test_pin *p);
int test_pin_kill(test_pin *p);

/* Sleep `us` microseconds, resuming after signals. */
void test_sleep_us(unsigned us);

/* CLOCK_MONOTONIC in seconds, for deadlines and watchdogs. */
double test_mono_s(void);

#endif
