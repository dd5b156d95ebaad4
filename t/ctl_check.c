/*
 * ctl_check.c — `shmregctl check` and `handles`: a clean registry checks
 * clean; what dead processes leave (a handle, a block) is reported, and
 * --repair / --reap clear it; a corrupted slot or header is reported with
 * exit 1 and the problem named; random scribbling over the segment never
 * crashes check (nor list, show, dialogs); on a terminal check draws a
 * progress bar, elsewhere it keeps stderr quiet.
 *
 * Uses the private headers, as t/corrupt.c does, to do the damage
 * precisely (the tool itself sees only shmreg.h).
 */
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_run.h"
#include "reg.h"
#include "testutil.h"

static shmreg_str S(const char *s) { return (shmreg_str){s, strlen(s)}; }

static void populate(shmreg *h, int n, shmreg_id *first)
{
    char cid[64];
    for (int i = 0; i < n; i++) {
        shmreg_fields f = {0};
        snprintf(cid, sizeof cid, "call-%d@host", i);
        f.str[SHMREG_FIELD_CALL_ID] = S(cid);
        f.str[SHMREG_FIELD_FROM_URI] = S("sip:someone@example.com");
        shmreg_id id;
        if (shmreg_session_create(h, &f, &id) != 0)
            bail_out("create: %s", shmreg_errmsg());
        if (i == 0 && first)
            *first = id;
        shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0\r\ns=-\r\n", 10);
        if (i % 2 == 0)
            shmreg_dialog_bind(h, S(cid), S("lt"), S("rt"), &id);
    }
}

/* A child that attaches, allocates a block, and dies without a word. */
static void die_holding(void *arg)
{
    shmreg *c;
    if (shmreg_open(arg, NULL, &c) != 0)
        _exit(2);
    if (shm_alloc(&c->c, 100, 0) == 0)
        _exit(3);
    _exit(0);
}

static void die_attached(void *arg)
{
    shmreg *c;
    _exit(shmreg_open(arg, NULL, &c) != 0 ? 2 : 0);
}

static void test_clean_and_dead(void)
{
    const char *dir = strdup(test_dir("chk"));
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 64};
    shmreg *h;
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    shmreg_id victim;
    populate(h, 5, &victim);
    ctl_res r;
    is(ctl(&r, "-r", dir, "check", NULL), 0, "a clean registry: exit 0");
    ok(has_line(r.out, "problem_count:         0") && has_line(r.out, "sessions:              5") &&
       has_line(r.out, "dialogs:               3"), "no problem; sessions and dialogs counted");
    is(r.err_len, 0, "stderr is not a terminal: no progress bar");
    ctl_res_free(&r);
    shmreg_config_set(h, "media", "media.ptime", "20");
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 0, "check --json");
    is_str(jd(&r, "[d['problems'], d['problem_count'], d['sessions'], d['dialogs'], d['leaked_blocks'], "
                  "d['stale_handles'], d['configs_checked']]"),
           "[[], 0, 5, 3, 0, 0, 1]", "the report, the config checked too");
    ctl_res_free(&r);

    /* A process dies attached, holding a block it never published. */
    pid_t pid = test_fork(die_holding, (void *)dir);
    is(test_wait(pid), 0, "a child attached, allocated a block and died");
    char expr[256], want[128];
    is(ctl(&r, "-r", dir, "handles", "--json", NULL), 0, "handles: exit 0");
    snprintf(expr, sizeof expr, "[[x['alive'], x['in_read']] for x in d['handles'] if x['pid'] == %d]", (int)pid);
    is_str(jd(&r, expr), "[[false, false]]", "the dead child's handle, not alive");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 0, "check: leaks are not corruption, exit 0");
    is_str(jd(&r, "[d['problem_count'], d['leaked_blocks'], d['stale_handles'], d['reclaimed_blocks']]"),
           "[0, 1, 1, 0]", "the leaked block and the stale handle are reported");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "check", "--repair", "--json", NULL), 0, "check --repair: exit 0");
    is_str(jd(&r, "[d['repair'], d['reaped_handles'], d['reclaimed_blocks']]"), "[true, 1, 1]",
           "the handle cleared, the block reclaimed");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 0, "check again");
    is_str(jd(&r, "[d['problem_count'], d['leaked_blocks'], d['stale_handles']]"), "[0, 0, 0]", "all clean");
    ctl_res_free(&r);

    pid = test_fork(die_attached, (void *)dir);
    test_wait(pid);
    is(ctl(&r, "-r", dir, "handles", "--reap", "--json", NULL), 0, "handles --reap: exit 0");
    snprintf(expr, sizeof expr, "[d['reaped'], [x for x in d['handles'] if x['pid'] == %d]]", (int)pid);
    is_str(jd(&r, expr), "[1, []]", "one dead handle reaped, gone from the list");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "handles", NULL), 0, "handles for people");
    snprintf(want, sizeof want, " SLOT       PID  ALIVE  READ-OPEN  ATTACHED                  SELF");
    ok(has_line(r.out, want), "a header");
    ctl_res_free(&r);

    /* A session slot pointing outside the heap. */
    uint32_t si = 0;
    uint64_t word;
    shmreg_read_begin(h);
    reg_find(h, victim.bytes, &si, &word);
    shmreg_read_end(h);
    reg_sess *slot = reg_slot(h, si);
    uint64_t good = atomic_load(&slot->rec);
    atomic_store(&slot->rec, 1);
    is(ctl(&r, "-r", dir, "check", NULL), 1, "a corrupted slot: exit 1");
    snprintf(want, sizeof want, "  - session slot %u: bad record block", si);
    ok(strstr(r.out, want) != NULL, "the problem is named (%s)", line_with(r.out, "  - "));
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 1, "check --json: exit 1");
    snprintf(expr, sizeof expr, "[d['problem_count'] >= 1, d['problems'][0].startswith('session slot %u: ')]", si);
    is_str(jd(&r, expr), "[true, true]", "the JSON names it too");
    ctl_res_free(&r);
    char vid[37];
    shmreg_id_format(&victim, vid);
    is(ctl(&r, "-r", dir, "show", vid, NULL), 1, "show of the corrupted session: exit 1, no crash");
    ok(strstr(r.err, "SHMREG_ECORRUPT") != NULL, "names the corruption (%s)", r.err);
    ctl_res_free(&r);
    int st = ctl(&r, "-r", dir, "list", NULL);
    ok(st == 0 || st == 1, "list over it does not crash (exit %d)", st);
    ctl_res_free(&r);
    atomic_store(&slot->rec, good);
    is(ctl(&r, "-r", dir, "check", NULL), 0, "restored: exit 0");
    ctl_res_free(&r);

    /* A damaged config record in LMDB: every copy of its magic ("SRC1",
     * the record format's) is scribbled over, in the file, under LMDB. */
    char mdb[512];
    snprintf(mdb, sizeof mdb, "%s/config/data.mdb", dir);
    int mfd = open(mdb, O_RDWR);
    struct stat mst;
    fstat(mfd, &mst);
    unsigned char *map = mmap(NULL, (size_t)mst.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    int hits = 0;
    for (off_t i = 0; map != MAP_FAILED && i + 4 <= mst.st_size; i++)
        if (memcmp(map + i, "SRC1", 4) == 0) {
            map[i + 3] = 'X';
            hits++;
        }
    ok(hits > 0, "the config record found in the LMDB file (%d copies)", hits);
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 1, "a damaged config record: exit 1");
    /* shmreg_config_list() itself fails on the bad record (its message
     * does not say which config), so the check names the listing. */
    is_str(jd(&r, "[[p.startswith('configs: cannot list: SHMREG_ECORRUPT'), 'config record' in p] "
                  "for p in d['problems']]"),
           "[[true, true]]", "named as a problem, with the cause");
    ctl_res_free(&r);
    for (off_t i = 0; map != MAP_FAILED && i + 4 <= mst.st_size; i++)
        if (memcmp(map + i, "SRCX", 4) == 0)
            map[i + 3] = '1';
    munmap(map, (size_t)mst.st_size);
    close(mfd);
    is(ctl(&r, "-r", dir, "check", NULL), 0, "restored: exit 0");
    ctl_res_free(&r);

    /* A damaged header: the segment cannot even be attached. */
    char seg[512];
    snprintf(seg, sizeof seg, "%s/segment", dir);
    int fd = open(seg, O_RDWR);
    unsigned char m;
    off_t at = (off_t)offsetof(shm_header, f.magic);
    pread(fd, &m, 1, at);
    m ^= 0x20;
    pwrite(fd, &m, 1, at);
    is(ctl(&r, "-r", dir, "check", "--json", NULL), 1, "a damaged header: check exits 1");
    is_str(jd(&r, "[d['problem_count'], d['problems'][0][:50]]"),
           "[1, \"segment cannot be attached: SHMREG_EVERSION: not a\"]", "and says what it found");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "stat", NULL), 3, "other commands cannot open it: exit 3");
    snprintf(want, sizeof want, "shmregctl: %s: cannot open registry: SHMREG_EVERSION", dir);
    ok(strncmp(r.err, want, strlen(want)) == 0, "naming the path and the cause (%s)", r.err);
    ctl_res_free(&r);
    m ^= 0x20;
    pwrite(fd, &m, 1, at);
    close(fd);
    is(ctl(&r, "-r", dir, "check", NULL), 0, "restored: exit 0");
    ctl_res_free(&r);
    shmreg_close(h);
    free((void *)dir);
}

/* Random bytes over the session slots and the heap, many times: check,
 * list, dialogs and show must end with 0 or 1, never a signal. The
 * control area (the locks) is left alone: a lock word scribbled to name a
 * live process blocks shmreg_check() for good (reported to the library). */
static void test_scribble(void)
{
    const char *dir = strdup(test_dir("scribble"));
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 256};
    shmreg *h;
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    shmreg_id some;
    populate(h, 200, &some);
    /* Half the damage where the data is: the slots and the first heap
     * pages; half anywhere from the slots to the ring. */
    uint64_t from = h->c.seg.off_slots, span = h->c.seg.off_ring - from;
    uint64_t dense = (uint64_t)opt.max_sessions * SHM_SLOT_BYTES + (256u << 10);
    shmreg_close(h); /* nobody attached: the tool alone meets the damage */
    char seg[512], sid[37];
    snprintf(seg, sizeof seg, "%s/segment", dir);
    shmreg_id_format(&some, sid);
    int fd = open(seg, O_RDWR);
    unsigned seed = 4242;
    int rounds = 24, fine = 0, corrupt_found = 0;
    for (int round = 0; round < rounds; round++) {
        for (int k = 0; k < 64; k++) {
            unsigned char b = (unsigned char)rand_r(&seed);
            uint64_t where = (uint64_t)rand_r(&seed) % (k % 2 ? span : dense);
            pwrite(fd, &b, 1, (off_t)(from + where));
        }
        ctl_res r;
        char *check[] = {(char *)ctl_bin(), "-r", (char *)dir, "check", "--json", NULL};
        char *list[] = {(char *)ctl_bin(), "-r", (char *)dir, "list", "--json", NULL};
        char *dlg[] = {(char *)ctl_bin(), "-r", (char *)dir, "dialogs", NULL};
        char *show[] = {(char *)ctl_bin(), "-r", (char *)dir, "show", sid, NULL};
        char **cmds[] = {check, list, dlg, show};
        int ok_round = 1;
        for (int c = 0; c < (round % 3 == 0 ? 4 : 1); c++) {
            ctl_spawn(&r, NULL, 0, cmds[c], NULL, NULL, 30);
            if (r.status != 0 && r.status != 1) {
                diag("round %d: %s exited %d: %s", round, cmds[c][3], r.status, r.err);
                ok_round = 0;
            }
            if (c == 0 && r.status == 1)
                corrupt_found++;
            ctl_res_free(&r);
        }
        fine += ok_round;
    }
    close(fd);
    is(fine, rounds, "%d rounds of scribbling: check, list, dialogs, show end with 0 or 1, never crash",
       rounds);
    ok(corrupt_found > 0, "and check reports the damage (%d of %d rounds)", corrupt_found, rounds);
    free((void *)dir);
}

/* check with stderr on a pseudo-terminal: the progress bar. */
static void test_progress(void)
{
    const char *dir = strdup(test_dir("progress"));
    shmreg_options opt = {.flags = SHMREG_CREATE, .max_sessions = 4096};
    shmreg *h;
    if (shmreg_open(dir, &opt, &h) != 0)
        bail_out("open: %s", shmreg_errmsg());
    populate(h, 3000, NULL);
    shmreg_close(h);

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master))
        bail_out("no pseudo-terminal: %s", strerror(errno));
    char *slave = strdup(ptsname(master));
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        int s = open(slave, O_RDWR);
        int null = open("/dev/null", O_WRONLY);
        dup2(s, 2);
        dup2(null, 1);
        execl(ctl_bin(), ctl_bin(), "-r", dir, "check", (char *)NULL);
        _exit(127);
    }
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof buf - 1 && (n = read(master, buf + len, sizeof buf - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = 0;
    is(test_wait(pid), 0, "check on a terminal: exit 0");
    ok(strstr(buf, "\rchecking [") && strstr(buf, "] 100% 4096/4096 slots"),
       "draws a progress bar up to 100%% (%zu bytes)", len);
    ok(len > 0 && buf[len - 1] == '\r', "and clears it at the end");
    close(master);
    free(slave);
    free((void *)dir);
}

int main(void)
{
    test_clean_and_dead();
    test_scribble();
    test_progress();
    return done_testing();
}
