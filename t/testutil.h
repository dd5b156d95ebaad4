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

#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "shmreg.h"

/* A fresh path "<scratch>/<name>-<pid>-<n>" that does not exist yet (the
 * library creates it). The string lives in a ring of 64 buffers: valid
 * until 64 more calls; copy it if you need it longer. `name` should be a
 * plain word (no '/'). Bails out if the scratch dir cannot be made. */
const char *test_dir(const char *name);

/* The build tree of this test program: build/VARIANT for
 * build/VARIANT/t/NAME.t, where the variant's libraries, tools/ and
 * examples/ are. A static string; bails out if /proc/self/exe cannot be
 * read. */
const char *test_build_dir(void);

/* shmreg_stat() of `h`, bailing out if it fails: for tests that compare
 * heap and table figures before and after. */
shmreg_stats test_stats(shmreg *h);

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

/* ------------------------------------------------------------ registries
 * What the room tests (room.c, room_concurrent.c, room_crash_roster.c) share:
 * one registry per test section, opened by the parent and attached to by
 * its forked children, and a deep copy of a room's roster. */


/* CLOCK_REALTIME in nanoseconds, the clock of the registry's times. */
uint64_t test_now_ns(void);

/* Create a fresh registry at test_dir(name) (SHMREG_CREATE | SHMREG_EXCL,
 * 256 handles); its path is remembered for test_reg_attach and
 * test_reg_destroy until the next test_reg_new. Bails out on failure. */
shmreg *test_reg_new(const char *name, uint32_t max_sessions, uint64_t heap, uint32_t max_rooms);
/* The same with the caller's options (flags are set here: CREATE|EXCL). */
shmreg *test_reg_new_opts(const char *name, shmreg_options o);
/* A small one for one test section: 64 sessions, 64 handles, 1024 event
 * records, `heap` bytes of heap (0: the default). */
shmreg *test_reg_small(const char *name, uint64_t heap);
/* Open the registry of the last test_reg_new (in a forked child, its own
 * handle). Bails out on failure. */
shmreg *test_reg_attach(void);
/* Close `h` and destroy the registry of the last test_reg_new. */
void test_reg_destroy(shmreg *h);

/* A subscription (shmreg_subscribe); bails out on failure. */
shmreg_sub *test_subscribe(shmreg *h, uint32_t mask, const shmreg_id *session);

/* Fields that use every string slot (app data with a NUL in it) and both
 * ports, each value marked with `tag` so that two sets differ everywhere;
 * f.sdp is NULL. */
typedef struct test_fieldbuf {
    char s[SHMREG_FIELD_STR_COUNT][48];
    shmreg_fields f;
} test_fieldbuf;
void test_fields_fill(test_fieldbuf *b, const char *tag, uint16_t port);

/* The version of session `id` (shmreg_session.version), 0 if not found. */
uint64_t test_session_version(shmreg *h, const shmreg_id *id);

/* A new session / room; bail out on failure. */
shmreg_id test_session_new(shmreg *h);
shmreg_id test_room_new(shmreg *h, const char *name, uint32_t max);

static inline shmreg_str test_ss(const char *s) { return (shmreg_str){ s, strlen(s) }; }
int test_id_eq(const shmreg_id *a, const shmreg_id *b);
/* 1 when `id` is among ids[0..n). */
int test_id_in(const shmreg_id *ids, int n, const shmreg_id *id);
/* 1 when ids[0..n) are distinct and are exactly want[0..m) as a set. */
int test_ids_same_set(const shmreg_id *ids, int n, const shmreg_id *want, int m);
/* Poll `sub` without waiting until nothing is left; keep the first `cap`
 * events in ev[]. Returns how many arrived, or shmreg_poll's error. */
int test_drain_events(shmreg_sub *sub, shmreg_event *ev, int cap);
/* 1 when `s` holds exactly the `len` bytes at `p`. */
int test_str_is(shmreg_str s, const void *p, size_t len);

/* 0 when the session is in room `want` (want NULL: in no room gives the
 * error), 1 when it is in another room, else the error of session_room. */
int test_session_room_is(shmreg *h, const shmreg_id *sid, const shmreg_id *want);

#define TEST_SNAP_MAX 160

typedef struct test_member {
    shmreg_id session;
    char uri[SHMREG_MAX_STR], disp[SHMREG_MAX_STR];
    size_t uri_len, disp_len;
    int status, audio;
    uint16_t port;
    uint64_t joined_ns;
} test_member;

typedef struct test_roster {
    int rc;                       /* of room_get / participant_next */
    int state;
    uint32_t max, participants;   /* as room_get reports them */
    uint32_t n;                   /* entries listed */
    test_member m[TEST_SNAP_MAX];
} test_roster;

/* A deep copy of a room and its roster, taken in one read section; bails
 * out if the roster is longer than TEST_SNAP_MAX. */
void test_roster_take(shmreg *h, const shmreg_id *room, test_roster *r);
/* The entry of session `sid`, or NULL. */
const test_member *test_roster_find(const test_roster *r, const shmreg_id *sid);

/* A watchdog, not a speed assertion: TEST_RUN(fn) names the section and
 * (re)arms a 30 s alarm before running fn(); a deadlock in the library
 * then fails the test with a TAP line naming the section instead of
 * hanging the suite. Call test_watchdog_install() once first and alarm(0)
 * at the end. */
extern const char *volatile test_section;
void test_watchdog_install(void);
#define TEST_RUN(fn) (test_section = #fn, alarm(30), fn())

/* Programs under test run in process groups of their own, so that a whole
 * tree (a server and its workers) is killed at once. test_spawn starts
 * argv (argv[0] a path) in a new group, stdin /dev/null, stdout and
 * stderr appended to `out`, and remembers the group; test_untrack forgets
 * one (it was reaped); test_kill_groups SIGKILLs every group remembered
 * (for atexit); test_bail_on_alarm makes SIGALRM kill them and bail out. */
pid_t test_spawn(char *const argv[], const char *out);
void test_untrack(pid_t pgid);
void test_kill_groups(void);
void test_bail_on_alarm(unsigned seconds);
/* Wait for a spawned program, then SIGKILL what is left of its group (a
 * server's workers); its status as test_wait gives it. */
int test_reap_group(pid_t pid);

/* A UDP port on 127.0.0.1 that is free now (bound and released). */
unsigned test_free_udp_port(void);

/* An OPTIONS to a SIP server on ip:port answered 200 within 500 ms. */
int test_sip_options_ok(const char *ip, unsigned port);

/* The count of `label` ("Successful call", "Failed call") on the last
 * statistics screen sipp wrote to `path` (-trace_screen); -1: none. */
long long test_sipp_screen_value(const char *path, const char *label);

#endif
