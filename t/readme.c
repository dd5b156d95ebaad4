/*
 * readme.c — the README's quick start is a program, so it is compiled and
 * run: the C block that begins with "quick.c" is cut out of README.md, its
 * registry path pointed into the test's scratch space, built against this
 * build's header and static library with the system compiler, and run. Its
 * output must be exactly the line the code promises.
 *
 * Why: a quick start is the first code a user copies. An API change that
 * breaks it would otherwise go unnoticed until a user reports it.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        bail_out("cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The fenced C block whose first line starts with `first`, or NULL. */
static char *code_block(const char *text, const char *first)
{
    const char *p = text;
    while ((p = strstr(p, "```c\n")) != NULL) {
        p += 5;
        const char *end = strstr(p, "\n```");
        if (end == NULL)
            return NULL;
        if (strncmp(p, first, strlen(first)) == 0)
            return strndup(p, (size_t)(end - p) + 1);
        p = end;
    }
    return NULL;
}

/* Replace the one occurrence of `from` in `s` by `to` (new string). */
static char *replace(const char *s, const char *from, const char *to)
{
    const char *at = strstr(s, from);
    if (at == NULL)
        return NULL;
    size_t n = strlen(s) - strlen(from) + strlen(to) + 1;
    char *out = malloc(n);
    snprintf(out, n, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

int main(void)
{
    const char *bdir = test_build_dir();
    char readme[PATH_MAX + 32];
    snprintf(readme, sizeof readme, "%s/../../README.md", bdir);
    size_t len;
    char *text = slurp(readme, &len);
    char *code = code_block(text, "/* quick.c");
    ok(code != NULL, "README.md has the quick start block");
    if (code == NULL)
        return done_testing();

    char reg[PATH_MAX];
    snprintf(reg, sizeof reg, "%s", test_dir("quick"));
    char *mine = replace(code, "\"/dev/shm/quick-registry\"", "QUICK_REGISTRY");
    ok(mine != NULL, "the quick start opens /dev/shm/quick-registry (pointed elsewhere here)");
    if (mine == NULL)
        return done_testing();

    char src[PATH_MAX + 16], exe[PATH_MAX + 16], cmd[8 * PATH_MAX];
    snprintf(src, sizeof src, "%s.c", reg);
    snprintf(exe, sizeof exe, "%s.bin", reg);
    FILE *f = fopen(src, "w");
    if (f == NULL)
        bail_out("cannot write %s: %s", src, strerror(errno));
    fputs(mine, f);
    fclose(f);

    /* The quick start links the shipped archive, as a user's program would
     * (not the test library). `make check` says which compiler and which
     * link flags this variant's archive needs (a sanitizer's runtime). */
    const char *cc = getenv("SHMREG_TEST_CC") ? getenv("SHMREG_TEST_CC") : "cc";
    const char *ldflags = getenv("SHMREG_TEST_LDFLAGS") ? getenv("SHMREG_TEST_LDFLAGS") : "";
    snprintf(cmd, sizeof cmd,
             "%s -std=c11 -Wall -Wextra -Werror -I%s/../../registry -DQUICK_REGISTRY='\"%s\"' "
             "%s -o '%s' '%s' '%s/libshmreg.a' -llmdb -lsodium -pthread 2>&1",
             cc, bdir, reg, ldflags, exe, src, bdir);
    FILE *p = popen(cmd, "r");
    char out[4096] = "";
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    is(st, 0, "the quick start compiles warning-free with -std=c11 -Wall -Wextra");
    if (st != 0)
        diag("%s\n%s", cmd, out);

    snprintf(cmd, sizeof cmd, "'%s'", exe);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    st = p ? pclose(p) : -1;
    is(st, 0, "it runs and exits 0");
    is_str(out, "Ringing, from sip:alice@example.com, 5 bytes of SDP read in place\n",
           "and prints the line it promises");

    unlink(src);
    unlink(exe);
    test_rm_rf(reg);
    free(mine);
    free(code);
    free(text);
    return done_testing();
}
