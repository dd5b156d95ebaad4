/*
 * tap.h — a small header-only TAP producer for the tests in t/.
 *
 * Each test is one program that prints TAP on stdout and is run by prove:
 *
 *     #include "tap.h"
 *     int main(void) {
 *         plan(2);                       // or no plan and done_testing()
 *         ok(1 + 1 == 2, "addition");
 *         is(shmreg_foo(), SHMREG_ENOENT, "foo on an empty registry");
 *         return exit_status();
 *     }
 *
 * Assertions: ok(cond, fmt, ...), is(got, expected, fmt, ...) for integers
 * (compared as long long), is_str(), is_mem(); each returns 1 when it passed
 * and prints "got/expected" diagnostics on stderr when it failed, with the
 * file and line. Also plan(n), done_testing(), skip(n, fmt, ...),
 * skip_all(fmt, ...), diag(fmt, ...), note(fmt, ...), bail_out(fmt, ...) and
 * exit_status().
 *
 * Forked children: only the parent (the process that started main) prints
 * TAP, so the test numbers stay right. A check made in a forked child prints
 * no TAP line: it only prints its diagnostic on failure (marked with the
 * child's pid) and counts as a child failure, so exit_status() in the child
 * is 1 — test_fork() (testutil.h) exits the child with it. Children report
 * to the parent through exit codes (and pipes for anything richer); the
 * parent turns them into TAP, e.g. is(test_wait(pid), 0, "worker ok").
 *
 * Every line is flushed at once, so nothing buffered is printed twice
 * after a fork. State is one weak global, so several translation units
 * of one test program may include this header and share the counters.
 */
#ifndef SHMREG_TAP_H
#define SHMREG_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct tap__state {
    pid_t owner;          /* the process that prints TAP */
    int planned;          /* -1: no plan yet */
    int run, failed;
    int child_failed;     /* checks failed in this (forked child) process */
};
__attribute__((weak)) struct tap__state tap__s = { 0, -1, 0, 0, 0 };

__attribute__((constructor)) static void tap__init(void)
{
    if (tap__s.owner == 0)
        tap__s.owner = getpid();
}

static inline int tap__in_child(void) { return getpid() != tap__s.owner; }

/* Print `fmt` as comment lines ("# ...") on `f`, one "# " per line. */
static inline void tap__vcomment(FILE *f, const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof buf, fmt, ap);
    const char *p = buf;
    do {
        const char *nl = strchr(p, '\n');
        int n = nl ? (int)(nl - p) : (int)strlen(p);
        if (tap__in_child())
            fprintf(f, "# [child %d] %.*s\n", (int)getpid(), n, p);
        else
            fprintf(f, "# %.*s\n", n, p);
        p = nl ? nl + 1 : NULL;
    } while (p && *p);
    fflush(f);
}

/* diag: a comment on stderr (shown by prove). note: on stdout (prove -v). */
__attribute__((format(printf, 1, 2)))
static inline void diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap__vcomment(stderr, fmt, ap);
    va_end(ap);
}

__attribute__((format(printf, 1, 2)))
static inline void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tap__vcomment(stdout, fmt, ap);
    va_end(ap);
}

static inline void plan(int n)
{
    tap__s.planned = n;
    printf("1..%d\n", n);
    fflush(stdout);
}

/* Stop the whole run (prove stops too). Use when going on makes no sense. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void bail_out(const char *fmt, ...)
{
    va_list ap;
    char buf[1024];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (tap__in_child()) {
        fprintf(stderr, "# [child %d] Bail out! %s\n", (int)getpid(), buf);
        _exit(255);
    }
    printf("Bail out!  %s\n", buf);
    fflush(stdout);
    exit(255);
}

/* Skip the whole file; call before any test. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void skip_all(const char *fmt, ...)
{
    va_list ap;
    char buf[1024];
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    printf("1..0 # SKIP %s\n", buf);
    fflush(stdout);
    exit(0);
}

/* Record one result. Returns `pass`. */
static inline int tap__result(int pass, const char *file, int line,
                              const char *fmt, va_list ap)
{
    char name[1024] = "";
    if (fmt)
        vsnprintf(name, sizeof name, fmt, ap);
    for (char *c = name; *c; c++)   /* '#' would start a TAP directive */
        if (*c == '#' || *c == '\n')
            *c = (*c == '#') ? '_' : ' ';
    if (tap__in_child()) {
        if (!pass) {
            tap__s.child_failed++;
            diag("Failed check '%s'\n  at %s line %d.", name, file, line);
        }
        return pass;
    }
    tap__s.run++;
    if (!pass)
        tap__s.failed++;
    printf("%sok %d%s%s\n", pass ? "" : "not ", tap__s.run,
           name[0] ? " - " : "", name);
    fflush(stdout);
    if (!pass)
        diag("  Failed test '%s'\n  at %s line %d.", name, file, line);
    return pass;
}

__attribute__((format(printf, 4, 5)))
static inline int tap__ok(int pass, const char *file, int line,
                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pass = tap__result(pass, file, line, fmt, ap);
    va_end(ap);
    return pass;
}

__attribute__((format(printf, 5, 6)))
static inline int tap__is(long long got, long long want, const char *file,
                          int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int pass = tap__result(got == want, file, line, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("         got: %lld\n    expected: %lld", got, want);
    return pass;
}

__attribute__((format(printf, 5, 6)))
static inline int tap__is_str(const char *got, const char *want,
                              const char *file, int line, const char *fmt, ...)
{
    int same = (got && want) ? strcmp(got, want) == 0 : got == want;
    va_list ap;
    va_start(ap, fmt);
    int pass = tap__result(same, file, line, fmt, ap);
    va_end(ap);
    if (!pass)
        diag("         got: %s%s%s\n    expected: %s%s%s",
             got ? "'" : "", got ? got : "NULL", got ? "'" : "",
             want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    return pass;
}

/* Up to 32 bytes from `off`, printable ASCII as is, others as \xNN. */
static inline void tap__dump(char *out, size_t cap, const unsigned char *p,
                             size_t len, size_t off)
{
    size_t o = 0;
    for (size_t i = off; i < len && i < off + 32 && o + 8 < cap; i++)
        o += (size_t)snprintf(out + o, cap - o,
                              (p[i] >= 32 && p[i] < 127 && p[i] != '\\')
                                  ? "%c" : "\\x%02x", p[i]);
    if (off + 32 < len && o + 4 < cap)
        snprintf(out + o, cap - o, "...");
}

__attribute__((format(printf, 7, 8)))
static inline int tap__is_mem(const void *got, size_t glen, const void *want,
                              size_t wlen, const char *file, int line,
                              const char *fmt, ...)
{
    const unsigned char *g = got, *w = want;
    size_t n = glen < wlen ? glen : wlen, at = 0;
    if (g && w)
        while (at < n && g[at] == w[at])
            at++;
    int same = glen == wlen && (n == 0 || (g && w && at == n));
    va_list ap;
    va_start(ap, fmt);
    int pass = tap__result(same, file, line, fmt, ap);
    va_end(ap);
    if (!pass) {
        char gs[160] = "", ws[160] = "";
        size_t from = at > 8 ? at - 8 : 0;
        if (g) tap__dump(gs, sizeof gs, g, glen, from);
        if (w) tap__dump(ws, sizeof ws, w, wlen, from);
        diag("    lengths: got %zu, expected %zu; first difference at "
             "byte %zu\n    got      [%zu..]: %s\n    expected [%zu..]: %s",
             glen, wlen, at, from, g ? gs : "NULL", from, w ? ws : "NULL");
    }
    return pass;
}

#define ok(cond, ...) tap__ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is(got, expected, ...) \
    tap__is((long long)(got), (long long)(expected), __FILE__, __LINE__, \
            __VA_ARGS__)
#define is_str(got, expected, ...) \
    tap__is_str((got), (expected), __FILE__, __LINE__, __VA_ARGS__)
#define is_mem(got, glen, expected, wlen, ...) \
    tap__is_mem((got), (glen), (expected), (wlen), __FILE__, __LINE__, \
                __VA_ARGS__)

/* Report `n` tests as skipped (they count as passed). */
__attribute__((format(printf, 2, 3)))
static inline void skip(int n, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (tap__in_child())
        return;
    for (int i = 0; i < n; i++)
        printf("ok %d # skip %s\n", ++tap__s.run, buf);
    fflush(stdout);
}

/* 0 when all passed and the plan (if any) was met; else the number failed
 * (at most 254), or 255 for a plan mismatch. In a forked child: 1 if a
 * check failed in that child, else 0. */
static inline int exit_status(void)
{
    if (tap__in_child())
        return tap__s.child_failed ? 1 : 0;
    if (tap__s.failed)
        return tap__s.failed < 254 ? tap__s.failed : 254;
    if (tap__s.planned >= 0 && tap__s.planned != tap__s.run) {
        diag("Looks like you planned %d tests but ran %d.", tap__s.planned,
             tap__s.run);
        return 255;
    }
    return 0;
}

/* End of a test without a plan: prints "1..N". Returns exit_status(), so
 * `return done_testing();` ends main. */
static inline int done_testing(void)
{
    if (!tap__in_child() && tap__s.planned < 0)
        plan(tap__s.run);
    return exit_status();
}

#endif /* SHMREG_TAP_H */
