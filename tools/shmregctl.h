/*
 * shmregctl.h — what the source files of shmregctl share: the command
 * context, exit codes, the output layer and the small parsers.
 *
 * The tool is split by topic (shmregctl.c: main and dispatch;
 * shmregctl_out.c: the one output layer for tables and JSON;
 * shmregctl_admin.c: create, destroy, stat, metrics, check, handles;
 * shmregctl_sess.c: list, show, sdp, dialogs, gc, timeouts;
 * shmregctl_control.c: profiles, variables, timeouts and their sweep;
 * shmregctl_config.c; shmregctl_events.c). It uses only the public API,
 * shmreg.h.
 *
 * Two rules every command follows, because the registry belongs to the
 * workers and the tool is a guest:
 *   - Nothing is written to stdout while a read section is open. Output
 *     is rendered into the out buffer and flushed between sections, so a
 *     slow reader of our stdout (a pager, a full pipe) can never hold a
 *     section open and delay the reuse of memory the workers retire.
 *   - Memory does not grow with the registry: walks go through cursors in
 *     short read sections, and buffers are bounded.
 */
#ifndef SHMREGCTL_H
#define SHMREGCTL_H

#include <getopt.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "shmreg.h"

/* Exit status, documented in shmregctl(1). */
enum {
    CTL_OK = 0,       /* done; or the check found nothing wrong */
    CTL_PROBLEM = 1,  /* a problem was found, a thing was not found, an operation failed */
    CTL_USAGE = 2,    /* bad command line */
    CTL_NOOPEN = 3,   /* the registry could not be opened (or created) */
    CTL_INTR = 130,   /* interrupted by SIGINT or SIGTERM */
};

/* ------------------------------------------------------------ output */

/* A column of a table, for people. JSON output ignores widths and titles
 * and carries every field, shown in the table or not. */
typedef struct out_col {
    const char *key;    /* the field that fills this column */
    const char *title;  /* header text */
    int width;          /* pad to this; 0: last column, free width */
    int trunc;          /* cut longer values to `width` (ending in "~") */
    int right;          /* right-align (numbers) */
} out_col;

#define OUT_MAX_DEPTH 16
#define OUT_MAX_COLS 10

typedef struct dbuf { char *p; size_t len, cap; } dbuf;

typedef struct out {
    int json;
    int broken;                   /* stdout is gone (EPIPE) or failed */
    int werr;                     /* errno of a failed write, 0 if none */
    dbuf main;                    /* rendered, not yet written */
    /* nesting: one entry per open object / array */
    int depth;
    char kind[OUT_MAX_DEPTH];     /* '{' or '[' */
    int count[OUT_MAX_DEPTH];     /* members written at this level */
    int ind[OUT_MAX_DEPTH];       /* people: indentation of the members */
    int dash;                     /* people: next line starts an array element */
    /* table state */
    const out_col *cols;
    int ncols;
    int lines;                    /* JSON Lines: each row its own document */
    int row_depth;                /* depth of the row's object; 0: not in a row */
    dbuf cell[OUT_MAX_COLS];      /* people: the row's cells, rendered */
} out;

void out_init(out *o, int json);
void out_free(out *o);

/* Write what is buffered to stdout. Returns 0, or -1 once the reader has
 * gone (EPIPE; later output is discarded). Never call it inside a read
 * section. */
int out_flush(out *o);
/* Bytes rendered and not yet flushed: loops end their read section when
 * this grows, to keep the buffer bounded. */
size_t out_pending(const out *o);

/* Objects and arrays. `key` names the member (NULL inside arrays and at
 * the top). People see nested objects as indented "key:" blocks and array
 * elements as "- " items. */
void out_obj_begin(out *o, const char *key);
void out_obj_end(out *o);
void out_arr_begin(out *o, const char *key);
void out_arr_end(out *o);
/* End of a top-level document: JSON gets its newline. */
void out_doc_end(out *o);

/* Scalars. Keys ending in "_ns" are times/durations in nanoseconds in
 * JSON; people see them without the suffix, formatted. */
void out_str(out *o, const char *key, const char *p, size_t len);
void out_cstr(out *o, const char *key, const char *s);
void out_u64(out *o, const char *key, uint64_t v);
void out_i64(out *o, const char *key, int64_t v);
void out_dbl(out *o, const char *key, double v);      /* 3 decimals */
void out_bool(out *o, const char *key, int v);
void out_null(out *o, const char *key);
void out_id(out *o, const char *key, const shmreg_id *id);
void out_time(out *o, const char *key, uint64_t realtime_ns); /* 0: null */
void out_dur(out *o, const char *key, uint64_t ns);
/* A time relative to now, signed (a deadline): JSON ns (negative: past);
 * people "in 12.5s", "3m07s ago". */
void out_rel(out *o, const char *key, int64_t ns);
void out_bytes(out *o, const char *key, uint64_t v);  /* people: with KiB/MiB */
void out_hex(out *o, const char *key, const void *p, size_t len);
/* A multi-line text (an SDP): JSON string; people see it indented, one
 * line per line, after its size. */
void out_block(out *o, const char *key, const char *p, size_t len);

/* Tables. For people: a header line, then one aligned line per row; a
 * field whose key is not a column is not shown, nor is anything nested in
 * a row. For JSON: every row is an object — each its own document
 * (lines = 1, JSON Lines; `key` unused), or an element of an array
 * (lines = 0) that out_table opens as member `key` (NULL at the top) and
 * out_table_end closes. */
void out_table(out *o, const char *key, const out_col *cols, int ncols, int lines);
void out_row_begin(out *o);
void out_row_end(out *o);
void out_table_end(out *o);

/* Raw bytes, as they are (an SDP for `sdp`, config text, metrics). */
void out_raw(out *o, const char *p, size_t len);

/* A Prometheus label value: valid UTF-8 as is, backslash, double quote
 * and newline escaped as the text format wants, any other control
 * character or invalid byte as '?'. */
void out_prom_label(out *o, const char *p, size_t len);

/* Human-escaped text of arbitrary bytes (for messages on stderr): valid
 * UTF-8 as is, anything else as \xNN. Writes at most cap-1 bytes + NUL. */
void out_escape_human(char *dst, size_t cap, const char *p, size_t len);

/* ------------------------------------------------------------ context */

typedef struct ctl {
    const char *prog;       /* "shmregctl" */
    const char *path;       /* the registry directory (-r / SHMREG_PATH) */
    int json;
    shmreg *h;              /* set by ctl_open() */
    out o;
    const struct ctl_cmd *cmd; /* the command running */
} ctl;

typedef int (*ctl_fn)(ctl *c, int argc, char **argv);

typedef struct ctl_cmd {
    const char *name;       /* "list", "config get", ... */
    ctl_fn fn;
    const char *synopsis;   /* after the name */
    const char *help;       /* the options, one per line */
} ctl_cmd;

/* Set by SIGINT / SIGTERM: loops stop at the next section boundary. */
extern volatile sig_atomic_t ctl_stop;
/* Set while a command is inside one long library call that cannot look
 * at ctl_stop (check): SIGINT/SIGTERM then end the tool at once, exit
 * CTL_INTR. Safe because the library survives a process killed at any
 * instruction; the next user takes over any lock the tool held. */
extern volatile sig_atomic_t ctl_exit_on_signal;

/* Parse a command's options: getopt_long with `longopts` (may be NULL)
 * plus the common ones (-r PATH, --json, -h/--help), which it handles
 * itself. --help prints the command's help and exits 0; an unknown option
 * prints a hint and exits 2. Returns the option character, or -1 at the
 * end (optind then indexes the first operand). */
int ctl_getopt(ctl *c, int argc, char **argv, const char *shortopts,
               const struct option *longopts);

/* Open the registry (attach only) into c->h. On failure prints the cause
 * and returns CTL_NOOPEN. */
int ctl_open(ctl *c);

/* Print "shmregctl: PATH: what: SHMREG_E...: detail" on stderr for the
 * library error `rc`; returns CTL_PROBLEM. */
int ctl_fail(ctl *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* A plain message with the same prefix; returns `code`. */
int ctl_err(ctl *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "shmregctl COMMAND: ...; try --help", returns CTL_USAGE. */
int ctl_usage(ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After ctl_getopt(): min..max operands left? 0, or a usage error
 * (printed) and CTL_USAGE. */
int ctl_operands(ctl *c, int argc, char **argv, int min, int max);
/* The opening of a command that takes no options: parse them (only
 * --help and the global ones), check min..max operands, open the
 * registry. 0, or what failed (printed). */
int ctl_simple(ctl *c, int argc, char **argv, int min, int max);

/* The options that size a new registry, shared by `create` and `restore`
 * (which creates the registry it restores into): put CTL_CREATE_OPTIONS
 * in the command's option table, and hand every option to
 * ctl_create_option(), which returns 1 for one of these (set in *opt),
 * 0 for another, or CTL_USAGE (printed) for a bad value. */
#define CTL_CREATE_OPTIONS                                   \
    {"sessions", required_argument, NULL, 's'},              \
    {"bytes", required_argument, NULL, 'b'},                 \
    {"handles", required_argument, NULL, 'H'},               \
    {"group", required_argument, NULL, 'g'},                 \
    {"node", required_argument, NULL, 'N'}
int ctl_create_option(ctl *c, int ch, shmreg_options *opt);

/* Parsers for option values. Return 0, or -1 (caller reports usage). */
int ctl_parse_u64(const char *s, uint64_t max, uint64_t *out);
int ctl_parse_size(const char *s, uint64_t *out);      /* 64M, 1G, 4096 */
int ctl_parse_dur(const char *s, uint64_t *ns);        /* 30, 1.5, 10m, 2h, 1d */
int ctl_parse_id(ctl *c, const char *s, shmreg_id *id); /* prints, returns CTL_USAGE */
int ctl_parse_states(const char *s, uint32_t *mask);   /* "Active,OnHold" */

/* Read sections of the tool: begin (0, or the error printed), and end,
 * which also writes what the section rendered; it returns 1 when the
 * command should stop (interrupted, or nobody reads our output). */
int ctl_section_begin(ctl *c);
int ctl_section_end(ctl *c);

/* Walk a whole table in read sections: each section reads at most
 * `per_section` entries with `next` (a public *_next call into `entry`,
 * advancing *cur) and, when max_bytes is not 0, stops once that much output
 * is pending; `each` renders one entry. Returns a section's begin error
 * (printed) or CTL_INTR, for the caller to return as is; otherwise 0 with
 * *walk_rc the last `next` result (SHMREG_ENOENT at the end, 0 when the
 * output went away, else an error for the caller to report). */
typedef int (*ctl_next_fn)(shmreg *h, uint64_t *cur, void *entry);
typedef void (*ctl_each_fn)(out *o, const void *entry, void *arg);
int ctl_walk(ctl *c, ctl_next_fn next, void *entry, unsigned per_section, size_t max_bytes,
             ctl_each_fn each, void *arg, int *walk_rc);

uint64_t ctl_now_ns(void);               /* CLOCK_REALTIME */
uint64_t ctl_mono_ns(void);              /* CLOCK_MONOTONIC */
int ctl_configs_exist(const ctl *c);     /* the LMDB environment was set up */

/* Commands. */
int cmd_create(ctl *, int, char **);
int cmd_destroy(ctl *, int, char **);
int cmd_stat(ctl *, int, char **);
int cmd_metrics(ctl *, int, char **);
int cmd_check(ctl *, int, char **);
int cmd_handles(ctl *, int, char **);
int cmd_list(ctl *, int, char **);
int cmd_show(ctl *, int, char **);
int cmd_sdp(ctl *, int, char **);
int cmd_dialogs(ctl *, int, char **);
int cmd_dialog_find(ctl *, int, char **);
int cmd_gc(ctl *, int, char **);
int cmd_config_list(ctl *, int, char **);
int cmd_config_get(ctl *, int, char **);
int cmd_config_set(ctl *, int, char **);
int cmd_config_load(ctl *, int, char **);
int cmd_config_dump(ctl *, int, char **);
int cmd_events(ctl *, int, char **);
int cmd_rooms(ctl *, int, char **);
int cmd_room(ctl *, int, char **);
int cmd_restore(ctl *, int, char **);
int cmd_sync_status(ctl *, int, char **);
int cmd_node_adopt(ctl *, int, char **);
/* Many hosts (shmregctl_node.c): stat's "node" object (nothing for a
 * registry without a node ID), and what metrics needs of the mirror. */
void ctl_node_fields(ctl *c, const shmreg_stats *st);
void ctl_mirror_get(ctl *c, shmreg_mirror_status *m); /* all zero (off) when unreadable */
uint64_t ctl_mirror_behind(const shmreg_stats *st, const shmreg_mirror_status *m);
const char *ctl_peer_state(uint32_t s);
int cmd_timeouts(ctl *, int, char **);
int cmd_profiles(ctl *, int, char **);
int cmd_profile(ctl *, int, char **);
int cmd_profile_join(ctl *, int, char **);
int cmd_profile_leave(ctl *, int, char **);
int cmd_timeout(ctl *, int, char **);
int cmd_expire(ctl *, int, char **);
int cmd_var(ctl *, int, char **);

/* The fields every session row carries (list, gc, timeouts, profile
 * members) and show begins with: id, state, times, age, idle time. */
void ctl_session_fields(out *o, const shmreg_session *s, uint64_t now);

/* Call control of one session, for show (shmregctl_control.c): its
 * profile memberships, its timeout and its variables, read in the
 * caller's read section. */
void ctl_show_control(ctl *c, const shmreg_session *s, uint64_t now);
/* The fields every session row and show carry about its timeout:
 * deadline_ns, due_in_ns, timeout_action (null when none is armed). */
void ctl_timeout_fields(out *o, const shmreg_session *s, uint64_t now);
/* "fail", "notify", or NULL for flags naming neither. */
const char *ctl_timeout_action(uint32_t flags);

/* Call-control figures for stat and metrics: profiles, their values and
 * members, and sessions with a timeout armed; with top > 0 also, per
 * profile, its `top` largest values (for the metrics' bounded label
 * set). Gathered by walking the profile index and the session table in
 * short read sections. */
typedef struct ctl_pvalue {
    uint64_t count;
    size_t len;
    char value[SHMREG_MAX_PROFILE_VALUE];
} ctl_pvalue;
typedef struct ctl_profile {
    char name[SHMREG_MAX_PROFILE_NAME];
    size_t len;
    uint64_t values, members;
    ctl_pvalue *top;      /* the largest values, count descending (ntop of them) */
    unsigned ntop;
} ctl_profile;
typedef struct ctl_control {
    ctl_profile *p;       /* by name */
    size_t n, cap;
    unsigned top;
    uint64_t timeouts_armed;
} ctl_control;
/* 0, or the error (printed). The profile walk is limited to `only` when
 * it is not NULL (one profile); timeouts: also count the sessions with a
 * deadline (a walk of the table). ctl_control_free() frees. */
int ctl_control_collect(ctl *c, ctl_control *cc, const shmreg_str *only, unsigned top,
                        int timeouts);
void ctl_control_free(ctl_control *cc);
/* stat's "sync" object: the daemon's status words (shmregctl_sync.c). */
void ctl_sync_fields(out *o, const shmreg_stats *st);

#endif
