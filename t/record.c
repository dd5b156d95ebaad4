/*
 * record.c — a session's fields and both SDPs share one record block, and
 * every change rebuilds the whole record (registry/session.c). This proves
 * what that must not cost: changes to different parts of one session made
 * at the same time by different processes are all kept (a writer that
 * loses the swap rebuilds on the winner's record), and readers never see
 * a record torn between two versions, also while SDPs move between inline
 * and a block of their own (an SDP of 45,000 bytes beside another does not
 * fit the largest heap block).
 *
 * Three writers on one session, a fixed number of changes each: the local
 * SDP (A), the To URI and display name together (B), the remote SDP (C).
 * Two readers read it meanwhile. Afterwards the session holds exactly each
 * writer's last value.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "selfcheck.h"
#include "tap.h"
#include "testutil.h"

#define CHANGES 1500
#define READERS 2
#define BIG 45000   /* two of these do not fit one 80 KiB block */

struct shared {
    shmreg_id id;
    atomic_int go, writers_done;
    long errors[3], reads[READERS], torn[READERS], outside_seen[READERS];
    char last[3][64];   /* each writer's last committed value, for the parent */
};

static struct shared *sh;

/* Writer w's SDP number i: self-checking, its body starting with a tag
 * the parent can compare ("A-1499 "), every 3rd one big. */
static size_t writer_sdp(char *buf, int w, int i)
{
    unsigned seed = (unsigned)(w * 100000 + i);
    size_t body = i % 3 == 2 ? BIG : 200 + (size_t)(i % 7) * 100;
    size_t len = make_sdp(buf, &seed, body);
    char tag[32];
    int n = snprintf(tag, sizeof tag, "%c-%d ", 'A' + w, i);
    memcpy(buf + SDP_HDR, tag, (size_t)n);
    /* The checksum covers the tag: rewrite the header. */
    char hdr[SDP_HDR + 1];
    snprintf(hdr, sizeof hdr, "X-Len:%05u X-FNV:%08x\n", (unsigned)body, fnv1a(buf + SDP_HDR, body));
    memcpy(buf, hdr, SDP_HDR);
    return len;
}

static void writer(void *arg)
{
    int w = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    char *sdp = malloc(SDP_HDR + BIG);
    while (!atomic_load(&sh->go))
        usleep(50);
    for (int i = 0; i < CHANGES; i++) {
        int rc;
        if (w == 1) {
            char to[64], disp[32];
            snprintf(to, sizeof to, "sip:b-%d@test", i);
            snprintf(disp, sizeof disp, "B-%d", i);
            shmreg_fields f = {0};
            f.str[SHMREG_FIELD_TO_URI] = test_ss(to);
            f.str[SHMREG_FIELD_DISPLAY_NAME] = test_ss(disp);
            rc = shmreg_session_update(h, &sh->id, &f, SHMREG_MASK(SHMREG_FIELD_TO_URI) |
                                                           SHMREG_MASK(SHMREG_FIELD_DISPLAY_NAME));
            if (rc == 0)
                snprintf(sh->last[w], sizeof sh->last[w], "%s", disp);
        } else {
            size_t len = writer_sdp(sdp, w, i);
            rc = shmreg_session_set_sdp(h, &sh->id, w == 0 ? SHMREG_SDP_LOCAL : SHMREG_SDP_REMOTE, sdp, len);
            if (rc == 0)
                snprintf(sh->last[w], sizeof sh->last[w], "%c-%d ", 'A' + w, i);
        }
        if (rc != 0 && sh->errors[w]++ < 3)
            diag("writer %c: change %d: %s", 'A' + w, i, shmreg_strerror(rc));
    }
    atomic_fetch_add(&sh->writers_done, 1);
    free(sdp);
    shmreg_close(h);
}

/* A whole read: both SDPs self-consistent and tagged by their writer, the
 * To URI and display name of one update. */
static int whole(const shmreg_session *v)
{
    char to[64], disp[32], want[64];
    int n;
    if (!sdp_whole(v->sdp[0]) || !sdp_whole(v->sdp[1]))
        return 0;
    if (v->sdp[0].len && (v->sdp[0].len < SDP_HDR + 2 || memcmp(v->sdp[0].ptr + SDP_HDR, "A-", 2)))
        return 0;
    if (v->sdp[1].len && (v->sdp[1].len < SDP_HDR + 2 || memcmp(v->sdp[1].ptr + SDP_HDR, "C-", 2)))
        return 0;
    if (!copy(v->str[SHMREG_FIELD_TO_URI], to, sizeof to) ||
        !copy(v->str[SHMREG_FIELD_DISPLAY_NAME], disp, sizeof disp))
        return 0;
    if (disp[0] == 0)
        return to[0] == 0;
    if (sscanf(disp, "B-%d", &n) != 1)
        return 0;
    snprintf(want, sizeof want, "sip:b-%d@test", n);
    return strcmp(to, want) == 0;
}

static void reader(void *arg)
{
    int r = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    while (!atomic_load(&sh->go))
        usleep(50);
    while (atomic_load(&sh->writers_done) < 3) {
        shmreg_session v;
        shmreg_read_begin(h);
        int rc = shmreg_session_get(h, &sh->id, &v);
        if (rc != 0 || !whole(&v)) {
            if (sh->torn[r]++ < 3)
                diag("reader %d: %s", r, rc ? shmreg_strerror(rc) : "a torn record");
        }
        sh->outside_seen[r] += v.sdp[0].len > BIG && v.sdp[1].len > BIG;
        shmreg_read_end(h);
        sh->reads[r]++;
    }
    shmreg_close(h);
}

static uint64_t used_blocks(shmreg *h, uint64_t *problems)
{
    shmreg_check_report r;
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    shmreg_check(h, 0, &r, NULL, NULL, NULL);
    *problems = r.problems + r.leaked_blocks;
    return r.heap_blocks_used;
}

int main(void)
{
    test_watchdog_install();
    shmreg *h = test_reg_new("record", 64, 64u << 20, 0);
    sh = test_shared(sizeof *sh);
    uint64_t problems, base = used_blocks(h, &problems);
    is(shmreg_session_create(h, NULL, &sh->id), 0, "one session");

    pid_t pid[3 + READERS];
    for (int w = 0; w < 3; w++)
        pid[w] = test_fork(writer, (void *)(intptr_t)w);
    for (int r = 0; r < READERS; r++)
        pid[3 + r] = test_fork(reader, (void *)(intptr_t)r);
    atomic_store(&sh->go, 1);
    int exits = 0;
    for (int i = 0; i < 3 + READERS; i++)
        exits |= test_wait(pid[i]);
    is(exits, 0, "three writers and %d readers exited cleanly", READERS);
    is(sh->errors[0] + sh->errors[1] + sh->errors[2], 0,
       "every one of the 3 x %d changes succeeded (a loser of the swap rebuilds and retries)", CHANGES);

    long reads = 0, torn = 0, both_big = 0;
    for (int r = 0; r < READERS; r++) {
        reads += sh->reads[r];
        torn += sh->torn[r];
        both_big += sh->outside_seen[r];
    }
    is(torn, 0, "%ld reads meanwhile, none torn (%ld of them saw both SDPs big, one outside)", reads,
       both_big);
    ok(reads > 0, "the readers read while the writers wrote");

    shmreg_session v;
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &sh->id, &v), 0, "the session reads");
    ok(whole(&v), "whole");
    char want[64];
    snprintf(want, sizeof want, "A-%d ", CHANGES - 1);
    ok(strcmp(sh->last[0], want) == 0 && v.sdp[0].len >= strlen(want) + SDP_HDR &&
           memcmp(v.sdp[0].ptr + SDP_HDR, want, strlen(want)) == 0,
       "the local SDP is writer A's last (%s)", want);
    snprintf(want, sizeof want, "C-%d ", CHANGES - 1);
    ok(strcmp(sh->last[2], want) == 0 && v.sdp[1].len >= strlen(want) + SDP_HDR &&
           memcmp(v.sdp[1].ptr + SDP_HDR, want, strlen(want)) == 0,
       "the remote SDP is writer C's last (%s)", want);
    char want_to[64];
    snprintf(want, sizeof want, "B-%d", CHANGES - 1);
    snprintf(want_to, sizeof want_to, "sip:b-%d@test", CHANGES - 1);
    ok(strcmp(sh->last[1], want) == 0 &&
           test_str_is(v.str[SHMREG_FIELD_DISPLAY_NAME], want, strlen(want)) &&
           test_str_is(v.str[SHMREG_FIELD_TO_URI], want_to, strlen(want_to)),
       "the To URI and display name are writer B's last (%s, %s)", want, want_to);
    is(v.sdp[0].len, SDP_HDR + BIG, "writer A's last SDP was a big one: %d bytes", SDP_HDR + BIG);
    is(v.sdp[1].len, SDP_HDR + BIG, "and so was C's: both big, so one lives outside the record");
    shmreg_read_end(h);

    is(used_blocks(h, &problems), base + 2, "two heap blocks: the record and one outside SDP");
    is(problems, 0, "the check finds no problem and no leak");
    is(shmreg_session_delete(h, &sh->id), 0, "delete the session");
    is(used_blocks(h, &problems), base, "every block is back: %llu in use as before",
       (unsigned long long)base);
    is(problems, 0, "and the check is clean");
    test_reg_destroy(h);
    return done_testing();
}
