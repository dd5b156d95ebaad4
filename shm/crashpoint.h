/*
 * crashpoint.h — named crash points, compiled only into the test library.
 *
 * Random SIGKILLs prove that a crash at a likely moment is harmless; they
 * almost never land on the one instruction between "unlinked" and
 * "retired" that a rare recovery path exists for. A crash point makes that
 * moment certain: a test arms a name in a forked child, the child runs the
 * operation, and at `SHM_CRASH_POINT("name")` it leaves with _exit() exactly
 * there, as if killed, holding whatever it held. The parent then proves
 * recovery.
 *
 * Why a macro that vanishes: shipped builds must not carry a branch, a
 * string or a symbol for this. Without SHMREG_TESTING the macro expands to
 * nothing; the Makefile compiles the sources a second time with
 * SHMREG_TESTING into build/VARIANT/libshmreg-test.a, which only tests link.
 */
#ifndef SHM_CRASHPOINT_H
#define SHM_CRASHPOINT_H

#ifdef SHMREG_TESTING
/* Exit code of a process that stopped at its armed crash point. */
#define SHM_CRASH_EXIT 86

/* Arm the crash point `name` in this process (NULL disarms). The next time
 * execution reaches SHM_CRASH_POINT(name) the process calls
 * _exit(SHM_CRASH_EXIT). `name` must outlive the arming (a literal). */
void shm_crash_arm(const char *name);

/* Called by the macro; cheap when nothing is armed. */
void shm_crash_point(const char *name);

#define SHM_CRASH_POINT(name) shm_crash_point(name)
#else
#define SHM_CRASH_POINT(name) ((void)0)
#endif

#endif /* SHM_CRASHPOINT_H */
