/*
 * ctl_run.h — what the shmregctl tests (t/ctl_*.c) share: run the real
 * binary and capture its stdout, stderr and exit status; parse its JSON
 * with python3; pick lines out of its output.
 *
 * Header-only (static inline) because every C file in t/ is built as a test
 * program of its own. The binary is found next to the test:
 * build/<variant>/t/NAME.t runs build/<variant>/tools/shmregctl, so a
 * release test runs the release tool and an asan test the asan one.
 *
 * Runs never inherit SHMREG_PATH (a test says which registry it means),
 * and a run that takes longer than its timeout is killed and reported
 * as 128 + 9, so a hung tool fails a test instead of hanging the suite.
 */
#ifndef SHMREG_CTL_RUN_H
#define SHMREG_CTL_RUN_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tap.h"
#include "testutil.h"

typedef struct ctl_res {
    int status;           /* exit status, 128 + signal, or -1 */
    char *out, *err;      /* NUL-terminated (may hold NULs before) */
    size_t out_len, err_len;
} ctl_res;

/* Called every ~10 ms while a spawned program runs. */
typedef void (*ctl_tick_fn)(pid_t pid, void *arg);

static inline const char *ctl_bin(void)
{
    static char path[PATH_MAX + 32];
    if (path[0])
        return path;
    snprintf(path, sizeof path, "%s/tools/shmregctl", test_build_dir());
    if (access(path, X_OK) != 0)
        bail_out("no shmregctl at %s (run make first)", path);
    return path;
}

static inline void ctl_res_free(ctl_res *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static inline void ctl__append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n + 1 > *cap) {
        while (*len + n + 1 > *cap)
            *cap = *cap ? *cap * 2 : 4096;
        *buf = realloc(*buf, *cap);
        if (!*buf)
            bail_out("out of memory");
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    (*buf)[*len] = 0;
}

static inline uint64_t ctl__ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Run argv (argv[0] is the program, found in PATH), feeding `in` (NULL:
 * nothing, stdin closed at once) on stdin. Returns r->status. */
static inline int ctl_spawn(ctl_res *r, const char *in, size_t in_len, char *const argv[],
                            ctl_tick_fn tick, void *arg, int timeout_s)
{
    int pin[2], pout[2], perr[2];
    memset(r, 0, sizeof *r);
    if (pipe(pin) || pipe(pout) || pipe(perr))
        bail_out("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pin[0], 0);
        dup2(pout[1], 1);
        dup2(perr[1], 2);
        for (int fd = 3; fd < 256; fd++)
            close(fd);
        unsetenv("SHMREG_PATH");
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
    signal(SIGPIPE, SIG_IGN);
    size_t in_off = 0, out_cap = 0, err_cap = 0;
    if (!in || in_len == 0) {
        close(pin[1]);
        pin[1] = -1;
    }
    ctl__append(&r->out, &r->out_len, &out_cap, "", 0);
    ctl__append(&r->err, &r->err_len, &err_cap, "", 0);
    uint64_t deadline = ctl__ms() + (uint64_t)timeout_s * 1000;
    int killed = 0;
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[3] = {{pout[0], POLLIN, 0}, {perr[0], POLLIN, 0}, {pin[1], POLLOUT, 0}};
        int n = poll(p, 3, 10);
        if (n < 0 && errno != EINTR)
            bail_out("poll: %s", strerror(errno));
        char buf[65536];
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t k = read(p[i].fd, buf, sizeof buf);
            if (k > 0) {
                if (i == 0)
                    ctl__append(&r->out, &r->out_len, &out_cap, buf, (size_t)k);
                else
                    ctl__append(&r->err, &r->err_len, &err_cap, buf, (size_t)k);
            } else if (k == 0 || errno != EINTR) {
                close(p[i].fd);
                if (i == 0)
                    pout[0] = -1;
                else
                    perr[0] = -1;
            }
        }
        if (pin[1] >= 0 && (p[2].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = write(pin[1], in + in_off, in_len - in_off);
            if (k > 0)
                in_off += (size_t)k;
            if (k < 0 && errno != EAGAIN && errno != EINTR)
                in_off = in_len;
            if (in_off == in_len) {
                close(pin[1]);
                pin[1] = -1;
            }
        }
        if (tick)
            tick(pid, arg);
        if (!killed && ctl__ms() > deadline) {
            diag("%s: still running after %d s: killed", argv[0], timeout_s);
            kill(pid, SIGKILL);
            killed = 1;
        }
    }
    if (pin[1] >= 0)
        close(pin[1]);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    return r->status;
}

/* Run shmregctl with the arguments given as a vector (NULL-terminated). */
static inline int ctl_runv(ctl_res *r, const char *in, char *const args[])
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)ctl_bin();
    while (args[n - 1] && n < 63) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    return ctl_spawn(r, in, in ? strlen(in) : 0, argv, NULL, NULL, 60);
}

/* ctl(&r, "-r", dir, "stat", NULL): run shmregctl, return its status. */
static inline int ctl(ctl_res *r, ...)
{
    char *args[64];
    int n = 0;
    va_list ap;
    va_start(ap, r);
    while (n < 63 && (args[n] = va_arg(ap, char *)) != NULL)
        n++;
    va_end(ap);
    args[n] = NULL;
    return ctl_runv(r, NULL, args);
}

/* Run python3 over `input` on stdin; its stdout (trailing newline
 * removed, malloc'ed), or NULL when python failed (the error is shown as
 * a diagnostic). PY_DOC: `code` is an expression over d, the parsed JSON
 * document; PY_LINES: over L, the list of parsed JSON Lines; its value is
 * printed (strings as they are, anything else as sorted-key JSON).
 * PY_TEXT: `code` is statements over T, the input as text, that print. */
enum { PY_DOC, PY_LINES, PY_TEXT };
static inline char *py(const char *input, size_t len, int mode, const char *code)
{
    char prog[8192];
    if (mode == PY_TEXT)
        snprintf(prog, sizeof prog, "import json, re, sys\nT = sys.stdin.read()\n%s\n", code);
    else
        snprintf(prog, sizeof prog,
                 "import json, sys\n"
                 "%s\n"
                 "r = (%s)\n"
                 "print(r if isinstance(r, str) else json.dumps(r, sort_keys=True))\n",
                 mode == PY_DOC
                     ? "d = json.loads(sys.stdin.buffer.read().decode('utf-8'))"
                     : "L = [json.loads(l) for l in sys.stdin.buffer.read().decode('utf-8').split('\\n') if l]",
                 code);
    /* The distribution's python3 (the one `make check-deps` installs)
     * when there is one: wrappers such as pyenv's shims cost 200 ms a run. */
    char *argv[] = {access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3", "-c",
                    prog, NULL};
    ctl_res r;
    ctl_spawn(&r, input, len, argv, NULL, NULL, 120);
    if (r.status != 0) {
        diag("python3 failed (%d) on: %s\n%s", r.status, code, r.err);
        ctl_res_free(&r);
        return NULL;
    }
    free(r.err);
    if (r.out_len && r.out[r.out_len - 1] == '\n')
        r.out[--r.out_len] = 0;
    return r.out;
}

/* The result of a python expression over a run's JSON document / lines,
 * in a static ring of buffers (valid for the next 8 calls): "" + diag on
 * failure, so is_str() shows the difference. */
static inline const char *ctl__keep(char *s)
{
    static char ring[8][4096];
    static unsigned next;
    char *out = ring[next++ % 8];
    snprintf(out, sizeof ring[0], "%s", s ? s : "<python failed>");
    free(s);
    return out;
}
static inline const char *jd(const ctl_res *r, const char *expr)
{
    return ctl__keep(py(r->out, r->out_len, PY_DOC, expr));
}
static inline const char *jl(const ctl_res *r, const char *expr)
{
    return ctl__keep(py(r->out, r->out_len, PY_LINES, expr));
}

/* Lines of text: how many, and whether one is exactly `line`. */
static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static inline int has_line(const char *s, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = s; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return 1;
        p = nl ? nl + 1 : NULL;
    }
    return 0;
}

/* The first line of `s` that starts with `prefix`, copied into a static
 * buffer ("" if none). */
static inline const char *line_with(const char *s, const char *prefix)
{
    static char buf[4096];
    size_t n = strlen(prefix);
    buf[0] = 0;
    for (const char *p = s; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len >= n && memcmp(p, prefix, n) == 0) {
            snprintf(buf, sizeof buf, "%.*s", (int)len, p);
            break;
        }
        p = nl ? nl + 1 : NULL;
    }
    return buf;
}

#endif
