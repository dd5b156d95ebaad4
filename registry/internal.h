/*
 * internal.h — what every registry source file may use and users never
 * see: error reporting, the handle check that opens each public function,
 * and the accessors through which the config module reaches a handle.
 *
 * Two circles of files. The files that work on the segment (handle,
 * layout, table, session, dialog, room, events, check, registry) include
 * reg.h, which adds the handle's layout and the slot's. The rest (base,
 * state, the config_* files) include only this header: they never see
 * the handle's fields or the engine, which is why the config module and
 * its LMDB can change without touching the segment code and the other
 * way round. The accessors below are that boundary.
 */
#ifndef SHMREG_INTERNAL_H
#define SHMREG_INTERNAL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>
#include "shmreg.h"

/* Record the detail for shmreg_errmsg() (printf-style) and return `code`,
 * so callers write `return shmreg__fail(SHMREG_EINVAL, "key too long");`. */
int shmreg__fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The same without formatting now: `text` (a string literal: it must
 * outlive the thread) and, if `id` is not NULL, the ID's UUID text after
 * it are what shmreg_errmsg() will show. A few stores: for failures that
 * are ordinary answers on hot paths (a lookup's ENOENT, an iteration's
 * end). */
int shmreg__fail_lazy(int code, const char *text, const unsigned char *id);

/* The detail is `text` followed by `len` bytes of `s` (cut to fit), copied
 * now (s need not outlive the call) but not formatted: a missing key in
 * a lookup costs two memcpy, no printf. */
int shmreg__fail_copy(int code, const char *text, const char *s, size_t len);

/* 0 when `h` may be used by this process now; SHMREG_EINVAL for NULL,
 * SHMREG_EFORK in a forked child. Cheap (no syscall): call it first in
 * every public function. */
int shmreg__usable(const shmreg *h);

/* The generation word mirrored in the segment header (config module bumps
 * it after each committed config write). Never NULL for a usable handle. */
_Atomic uint64_t *shmreg__config_gen_word(shmreg *h);

/* Capacity of the handle table: the config module sizes LMDB maxreaders
 * from it. */
uint32_t shmreg__max_handles(const shmreg *h);

/* File mode for new files in the registry directory (0600 or 0660) and
 * the group id to give them (-1: leave as is). */
mode_t shmreg__file_mode(const shmreg *h);
gid_t shmreg__file_gid(const shmreg *h);

/* A per-handle pointer the config module owns (its MDB_env and state),
 * NULL until the module sets it, and the function that frees it, which
 * the module registers with shmreg__config_on_close() when it sets the
 * state; shmreg_close() calls it. A hook, not a direct call (nor a weak
 * symbol): the core must link without the config module, and so without
 * LMDB, for a program that never touches a config. */
void **shmreg__config_state(shmreg *h);
void shmreg__config_on_close(shmreg *h, void (*fn)(shmreg *h));

/* Publish SHMREG_EV_CONFIG_CHANGED for generation `gen` (config module,
 * after each committed write). Never fails the caller. */
void shmreg__publish_config(shmreg *h, uint64_t gen);

/* True (1) when called in a process other than the one that opened `h`
 * (after fork). Modules use it to avoid touching inherited LMDB state. */
int shmreg__forked(const shmreg *h);

/* A state machine over one word in the segment: the low byte is the
 * state (0 means "any" as an expectation), the rest is the machine's.
 * `live` (may be NULL) says whether a word is still a live object's. For
 * messages: `what` names the object ("session"), `is` starts a conflict
 * ("state is Ringing, not Active"), `move` a refused move ("room "). */
typedef struct reg_machine {
    const char *what, *is, *move;
    int (*allowed)(int from, int to);
    const char *(*name)(int state);
    int (*live)(uint64_t word);
} reg_machine;

/* Move `*word`, last seen as `cur` (a load the caller validated), to
 * `to` if its state is `expected` (0: any) and the move is allowed, in one
 * compare-and-swap, retried while the word changes under it. The state
 * found goes to *old (if not NULL) whatever the outcome, and to
 * *from_out on success. 0, SHMREG_ENOENT (no longer live),
 * SHMREG_ECONFLICT (not `expected`) or SHMREG_ESTATE (move refused). */
int reg_machine_move(const reg_machine *m, _Atomic uint64_t *word, uint64_t cur, int expected,
                     int to, int *old, int *from_out);

#endif
