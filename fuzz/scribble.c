/*
 * scribble.c — the random-scribble campaign over a populated segment
 * (issue 12): damage must give clean errors, never a signal, a hang or a
 * write outside the block being written.
 *
 *   scribble [--rounds N] [--seed S] [--only R] [--seconds T]
 *            [--max-scribbles K] [--ctl PATH] [--ctl-every E] [--dir D]
 *
 * Once: build a registry with sessions, SDPs, dialogs, a room with
 * participants, events, a config, free and limbo lists and a dead
 * process's handle (fuzz/harness.h), and keep a copy of its segment.
 * Per round R: restore the copy, scribble 1..K words, bytes or bits chosen
 * by a generator seeded from (S, R) — so `--seed S --only R` replays the
 * round exactly — then run, each in a forked child under alarm(5):
 * `shmregctl list`, `show ID` and `check` (every E-th round), and the
 * library operations of fz_ops() with the write guard. A child killed by a
 * signal is a crash (SIGALRM: a hang, once the same round, rerun, runs
 * over 5 s again: a round starved by a loaded machine is counted apart);
 * exit 3 is a guard failure; a code no operation documents is counted as
 * unexpected. Built against the ASan/UBSan library (make scribble), so a
 * wild access is a SIGABRT here.
 *
 * Prints the figures (rounds, executions, codes by operation) and, for
 * each failing round, its seed and round number. Exit 0 when clean.
 */
#include <getopt.h>
#include <signal.h>
#include <time.h>

#include "harness.h"

#define ROUND_ALARM_S 5

typedef struct shared {
    fz_counts c;
    uint64_t guard_off;
    char guard_op[32];
} shared;

/* "ECORRUPT" from "SHMREG_ECORRUPT: ...". */
static const char *code_name(int i, char buf[24])
{
    if (i == 0)
        return "OK";
    const char *s = shmreg_strerror(-i);
    if (strncmp(s, "SHMREG_", 7) == 0)
        s += 7;
    size_t n = strcspn(s, ":");
    snprintf(buf, 24, "%.*s", (int)(n < 23 ? n : 23), s);
    return buf;
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What became of a child: 0 clean, else a static description. */
static const char *verdict(int st, int *hang)
{
    *hang = 0;
    if (WIFSIGNALED(st)) {
        *hang = WTERMSIG(st) == SIGALRM;
        return *hang ? "hang (over 5 s)" : strsignal(WTERMSIG(st));
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 3)
        return "guard: write outside the block being written";
    if (WIFEXITED(st) && WEXITSTATUS(st) == 4)
        return "unexpected error code";
    return NULL;
}

/* Run shmregctl with `args` in a child under alarm(5); its exit status in
 * *code (the tool's own codes: 0 ok, 1 problem found, ...). */
static int run_ctl(const char *ctl, const char *dir, const char *const *args, int *code)
{
    pid_t pid = fork();
    if (pid == 0) {
        alarm(ROUND_ALARM_S); /* survives exec */
        int nul = open("/dev/null", O_WRONLY);
        dup2(nul, 1);
        dup2(nul, 2);
        char *argv[8] = {(char *)ctl, "-r", (char *)dir};
        int n = 3;
        for (; args[n - 3] && n < 7; n++)
            argv[n] = (char *)args[n - 3];
        argv[n] = NULL;
        execv(ctl, argv);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    *code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return st;
}

/* The library operations over the damaged segment, in a child under
 * alarm(5); its wait status. */
static int run_ops(const fz_pop *p, const fz_seg *z, fz_guard *g, shared *sh, uint64_t rnd)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(ROUND_ALARM_S);
        uint64_t before = sh->c.unexpected;
        int bad = fz_ops(p, z, g, &sh->c, rnd);
        if (bad) {
            sh->guard_off = g->bad_off;
            snprintf(sh->guard_op, sizeof sh->guard_op, "%s", g->bad_op);
        }
        _exit(bad ? 3 : sh->c.unexpected != before ? 4 : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

int main(int argc, char **argv)
{
    uint64_t rounds = 2000, seed = 1, only = UINT64_MAX;
    double seconds = 0;
    unsigned max_scribbles = 8, ctl_every = 1;
    const char *ctl = "build/asan/tools/shmregctl", *base = NULL;
    static const struct option lo[] = {
        {"rounds", 1, 0, 'n'}, {"seed", 1, 0, 's'}, {"only", 1, 0, 'o'},
        {"seconds", 1, 0, 't'}, {"max-scribbles", 1, 0, 'k'}, {"ctl", 1, 0, 'c'},
        {"ctl-every", 1, 0, 'e'}, {"dir", 1, 0, 'd'}, {0},
    };
    for (int ch; (ch = getopt_long(argc, argv, "", lo, NULL)) != -1;) {
        switch (ch) {
        case 'n': rounds = strtoull(optarg, NULL, 0); break;
        case 's': seed = strtoull(optarg, NULL, 0); break;
        case 'o': only = strtoull(optarg, NULL, 0); break;
        case 't': seconds = atof(optarg); break;
        case 'k': max_scribbles = (unsigned)atoi(optarg); break;
        case 'c': ctl = optarg; break;
        case 'e': ctl_every = (unsigned)atoi(optarg); break;
        case 'd': base = optarg; break;
        default:
            fprintf(stderr, "usage: scribble [--rounds N] [--seed S] [--only R] [--seconds T]\n"
                            "  [--max-scribbles K] [--ctl PATH] [--ctl-every E] [--dir D]\n");
            return 2;
        }
    }
    if (max_scribbles == 0)
        max_scribbles = 1;
    if (access(ctl, X_OK) != 0) {
        fprintf(stderr, "scribble: no shmregctl at %s (--ctl PATH; --ctl-every 0 to skip)\n", ctl);
        if (ctl_every)
            return 2;
    }
    fz_pop p = {0};
    snprintf(p.dir, sizeof p.dir, "%s/shmreg-scribble-%d", base ? base : "/dev/shm", (int)getpid());
    char rm[512];
    snprintf(rm, sizeof rm, "rm -rf '%s'", p.dir);
    int rc = fz_populate(&p);
    fz_seg z = {0};
    if (rc || fz_map(&z, p.dir) != 0) {
        fprintf(stderr, "scribble: cannot populate %s: %s (%s)\n", p.dir, shmreg_strerror(rc),
                shmreg_errmsg());
        (void)!system(rm);
        return 2;
    }
    unsigned char *pristine = malloc(z.size), *scribbled = malloc(z.size);
    fz_guard g = {.before = malloc(z.size)};
    shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (!pristine || !scribbled || !g.before || sh == MAP_FAILED)
        return 2;
    memcpy(pristine, z.base, z.size);
    fz_range ranges[64];
    unsigned nr = fz_ranges(&z, pristine, ranges, 64);
    printf("scribble: segment of %zu bytes, %u of %u heap pages in use, %u scribble regions\n",
           z.size, ((shm_header *)pristine)->pages_used, z.f.heap_pages, nr);

    uint64_t done = 0, signals = 0, hangs = 0, guards = 0, unexpected = 0, ctl_runs = 0, slow = 0;
    uint64_t ctl_codes[8] = {0};
    double t0 = mono_s();
    uint64_t first = only == UINT64_MAX ? 0 : only, last = only == UINT64_MAX ? rounds : only + 1;
    for (uint64_t r = first; r < last; r++) {
        if (seconds > 0 && mono_s() - t0 > seconds)
            break;
        uint64_t rs = seed * 0x100000001b3ull ^ (r + 1) * 0x9e3779b97f4a7c15ull;
        memcpy(z.base, pristine, z.size);
        unsigned n = 1 + (unsigned)(fz_next(&rs) % max_scribbles);
        uint64_t offs[64];
        for (unsigned i = 0; i < n; i++) {
            uint64_t w1 = fz_next(&rs), w2 = fz_next(&rs), w3 = fz_next(&rs);
            offs[i % 64] = fz_scribble_one(&z, ranges, nr, w1, w2, w3);
        }
        const char *why = NULL;
        int hang = 0;
        if (ctl_every && r % ctl_every == 0) {
            const char *list[] = {"list", NULL}, *show[] = {"show", p.sess_text, NULL},
                       *check[] = {"check", NULL};
            const char *const *cmds[] = {list, show, check};
            for (unsigned i = 0; i < 3 && !why; i++) {
                int code;
                int st = run_ctl(ctl, p.dir, cmds[i], &code);
                if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
                    st = run_ctl(ctl, p.dir, cmds[i], &code); /* see "rerun" below */
                    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)) {
                        slow++;
                        printf("slow round %llu (seed %llu): shmregctl %s over 5 s once, not on "
                               "the rerun\n", (unsigned long long)r, (unsigned long long)seed,
                               cmds[i][0]);
                    }
                }
                /* The tool's exit codes are its own: only a signal fails. */
                why = WIFSIGNALED(st) ? verdict(st, &hang) : NULL;
                ctl_codes[code >= 0 && code < 7 ? code : 7]++;
                ctl_runs++;
                if (why)
                    snprintf(sh->guard_op, sizeof sh->guard_op, "shmregctl %s", cmds[i][0]);
            }
        }
        if (!why) {
            /* A hang is judged by the wall clock, and on a loaded machine
             * a round can be starved past it: rerun the same damage once
             * (the round is deterministic) and count a hang only if it
             * hangs again; a round that then completes is counted apart. */
            uint64_t ops_rnd = fz_next(&rs);
            memcpy(scribbled, z.base, z.size);
            fz_counts saved = sh->c;
            int st = run_ops(&p, &z, &g, sh, ops_rnd);
            if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
                memcpy(z.base, scribbled, z.size);
                sh->c = saved;
                st = run_ops(&p, &z, &g, sh, ops_rnd);
                if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM)) {
                    slow++;
                    printf("slow round %llu (seed %llu): over 5 s once, %s on the rerun\n",
                           (unsigned long long)r, (unsigned long long)seed,
                           st == 0 ? "clean" : "failed");
                }
            }
            why = verdict(st, &hang);
            if (why && !(WIFEXITED(st) && WEXITSTATUS(st) == 3))
                snprintf(sh->guard_op, sizeof sh->guard_op, "library operations");
        }
        done++;
        if (why) {
            if (strncmp(why, "guard", 5) == 0)
                guards++;
            else if (strncmp(why, "unexpected", 10) == 0)
                unexpected++;
            else if (hang)
                hangs++;
            else
                signals++;
            printf("FAIL round %llu (replay: --seed %llu --only %llu): %s in %s",
                   (unsigned long long)r, (unsigned long long)seed, (unsigned long long)r, why,
                   sh->guard_op);
            if (strncmp(why, "guard", 5) == 0)
                printf(" at segment offset %llu (%s)", (unsigned long long)sh->guard_off,
                       fz_region(&z, sh->guard_off));
            printf("; scribbled at");
            for (unsigned i = 0; i < n && i < 64; i++)
                printf(" %llu", (unsigned long long)offs[i]);
            printf("\n");
        }
    }
    double el = mono_s() - t0;
    printf("scribble: seed %llu, %llu rounds in %.1f s: %llu library executions, %llu shmregctl "
           "runs\n", (unsigned long long)seed, (unsigned long long)done, el,
           (unsigned long long)sh->c.execs, (unsigned long long)ctl_runs);
    printf("scribble: signals %llu, hangs %llu, guard failures %llu, rounds with undocumented "
           "codes %llu (calls %llu); %llu round(s) over 5 s once but not on the rerun\n",
           (unsigned long long)signals, (unsigned long long)hangs, (unsigned long long)guards,
           (unsigned long long)unexpected, (unsigned long long)sh->c.unexpected,
           (unsigned long long)slow);
    for (int op = 0; op < FZ_OP_COUNT; op++) {
        printf("  %-15s", fz_op_names[op]);
        for (int i = 0; i < FZ_NCODES; i++)
            if (sh->c.codes[op][i]) {
                char b[24];
                printf(" %s=%llu", code_name(i, b), (unsigned long long)sh->c.codes[op][i]);
            }
        printf("\n");
    }
    printf("  %-15s", "shmregctl exit");
    for (int i = 0; i < 8; i++)
        if (ctl_codes[i])
            printf(" %d%s=%llu", i, i == 7 ? "+" : "", (unsigned long long)ctl_codes[i]);
    printf("\n");
    (void)!system(rm);
    return signals || hangs || guards || unexpected ? 1 : 0;
}
