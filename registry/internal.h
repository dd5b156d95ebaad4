/*
 * internal.h — what the registry's own source files share and users never
 * see: error reporting, handle checks, and the hooks by which optional
 * modules (configs in LMDB, the event bus) hang off a handle.
 *
 * Kept deliberately small: a module reaches the segment only through these
 * functions, so the handle's layout stays private to registry.c.
 */
#ifndef SHMREG_INTERNAL_H
#define SHMREG_INTERNAL_H

#include <stdarg.h>
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

#endif
