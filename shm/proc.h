/*
 * proc.h — is a process still alive? One rule for the whole engine.
 *
 * Handles, lock holders and ring producers are all named in the segment by
 * a pid (a thread id for some), and each needs the same answer: may this
 * process still act? Three separate checks had grown three different rules
 * (one counted a zombie as alive, one ignored pid reuse); a wrong answer
 * either steals a live process's lock or waits for ever on a dead one.
 * The rule, from /proc/PID/stat:
 *   - no such pid (or an impossible one): dead;
 *   - a zombie, or a task that is exiting: dead (it will never act again);
 *   - a start time is known and differs: dead (the pid was reused);
 *   - otherwise alive. Where /proc cannot be read, kill(pid, 0) decides.
 */
#ifndef SHM_PROC_H
#define SHM_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* Pids (and thread ids) above this are impossible (PID_MAX_LIMIT on
 * 64-bit Linux): values read from the segment beyond it name nobody. */
#define SHM_PID_LIMIT 4194304u

/* Start time of `pid` (field 22 of /proc/PID/stat, clock ticks since
 * boot), 0 if unknown. */
uint64_t shm_proc_start_time(pid_t pid);

/* 1 when `pid` names a live process or thread by the rule above;
 * start_time 0 skips the reuse test. Never changes errno. */
int shm_proc_alive(pid_t pid, uint64_t start_time);

#endif
