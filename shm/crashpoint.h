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
 *
 * The points, named file_function_step. Each is a moment where a crash
 * leaves work only a recovery path can finish; t/crashpoint.c stops a
 * process at every one of them and proves that path. The engine's points
 * are these; a consumer names its own the same way, in its own files
 * (the registry's are listed in registry/reg.h).
 *
 *   point                       left behind              finished by
 *   alloc_push_freeing          block FREEING, unlinked  list_recover (next locker)
 *   alloc_push_linked           block FREEING, at head   list_recover
 *   alloc_pop_stamped           block USED, still head   list_recover (undo)
 *   alloc_pop_unlinked          block USED, dead tag     check sweep / its owner
 *   alloc_page_assigned         page classed, uncounted  next take_page (reassigns)
 *   alloc_page_counted          page counted, no owner   shm_pages_repair (check)
 *   alloc_carve_stamped         block stamped, uncounted next carve (overwrites)
 *   alloc_slot_stamped          slot stamped, uncounted  next slot carve
 *   alloc_pages_repair_carved   repair died mid-page     next repair + sweep
 *   epoch_claim_claiming        handle CLAIMING, dead    shm_reap
 *   epoch_adopt_retagged        orphan half adopted      shm_reap, later adoption
 *   epoch_reclaim_unlinked      RETIRED, off its limbo   check sweep (slots too)
 *   epoch_retire_marked         RETIRED, not on limbo    check sweep
 *   epoch_retire_listed         on limbo, uncounted      shm_reap (counts reset)
 *   epoch_intent_resolved       reaper died mid-resolve  next reap (no double retire)
 *   epoch_reap_noted            note handed on, not cleared  next reap (hands it again)
 *   epoch_reap_orphaned         ORPHAN, old incarnation  next reap
 *   epoch_release_reclaimed     closing handle ACTIVE    shm_reap
 *   ring_publish_claimed        sequence claimed         subscribers skip it
 *   ring_publish_marked         slot marked by the dead  skip, then stolen on lap
 *   ring_commit_filled          data written, no commit  skip, then stolen on lap
 *   ring_batch_claimed          n sequences claimed      subscribers skip all n
 *   ring_batch_marked           n slots marked, unfilled skip, then stolen on lap
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
