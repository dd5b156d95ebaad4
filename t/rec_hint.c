/*
 * t/rec_hint.c — record hints (registry/reg.h, "Record hints"): every
 * slot's hint names the record its session has now, after a create and
 * after each change; and since a hint is only ever prefetched, a hint
 * region full of garbage (all ones, zeros, other sessions' records,
 * offsets past the segment, a slot's own old record) changes nothing a
 * reader sees or a writer does, and the check finds nothing wrong.
 */
#include <string.h>

#include "reg.h"
#include "tap.h"
#include "testutil.h"

#define N 64

static shmreg_id id[N];
static char body[N][2][900];

/* The hint of the session `k`, and what it should be: its record / 16. */
static uint32_t hint_of(shmreg *h, int k, uint32_t *want)
{
    uint32_t si = reg_id_slot(id[k].bytes);
    *want = (uint32_t)(atomic_load(&reg_slot(h, si)->rec) >> 4);
    return atomic_load(&h->rec_hint[si]);
}

static int hints_right(shmreg *h)
{
    int right = 0;
    for (int k = 0; k < N; k++) {
        uint32_t want, got = hint_of(h, k, &want);
        right += got == want && want != 0;
    }
    return right;
}

/* Sessions whose view is exactly what was written: state Active, both
 * SDPs byte for byte. */
static int reads_right(shmreg *h)
{
    int right = 0;
    shmreg_session v;
    shmreg_read_begin(h);
    for (int k = 0; k < N; k++)
        right += shmreg_session_get(h, &id[k], &v) == 0 && v.state == SHMREG_STATE_ACTIVE &&
                 v.sdp[0].len == strlen(body[k][0]) && memcmp(v.sdp[0].ptr, body[k][0], v.sdp[0].len) == 0 &&
                 v.sdp[1].len == strlen(body[k][1]) && memcmp(v.sdp[1].ptr, body[k][1], v.sdp[1].len) == 0;
    shmreg_read_end(h);
    return right;
}

static void fill(int k, int side, int round)
{
    snprintf(body[k][side], sizeof body[k][side], "v=0\r\no=- %d %d IN IP4 10.0.%d.%d\r\n%0*d\r\n", k, round,
             side, k, 300 + (k * 37 + round) % 500, round);
}

static uint64_t problems(shmreg *h)
{
    shmreg_check_report r;
    memset(&r, 0, sizeof r);
    return shmreg_check(h, 0, &r, NULL, NULL, NULL) == 0 ? r.problems : UINT64_MAX;
}

/* Every session's SDP replaced once more (round `round`): 0 failures. */
static int replace_all(shmreg *h, int round)
{
    int failed = 0;
    for (int k = 0; k < N; k++) {
        int side = (k + round) & 1;
        fill(k, side, round);
        failed += shmreg_session_set_sdp(h, &id[k], side, body[k][side], strlen(body[k][side])) != 0;
    }
    return failed;
}

int main(void)
{
    plan(22);
    shmreg *h = test_reg_new("rec-hint", N, 0, 1);
    const shm_seg *s = &h->c.seg;
    ok(h->rec_hint != NULL, "the record hints region is bound");
    is(s->region[8].bytes, (uint64_t)s->slots * 4, "four bytes a slot");

    int made = 0;
    for (int k = 0; k < N; k++) {
        id[k] = test_session_new(h);
        fill(k, 0, 0);
        fill(k, 1, 0);
        made += shmreg_session_set_sdp(h, &id[k], 0, body[k][0], strlen(body[k][0])) == 0 &&
                shmreg_session_set_sdp(h, &id[k], 1, body[k][1], strlen(body[k][1])) == 0 &&
                shmreg_session_transition(h, &id[k], 0, SHMREG_STATE_ACTIVE, NULL) == 0;
    }
    is(made, N, "%d sessions, each with two SDPs, Active", N);
    is(hints_right(h), N, "every hint names its session's record after create and SDPs");
    is(replace_all(h, 1), 0, "every SDP replaced once more");
    is(hints_right(h), N, "every hint follows its session's new record");
    is(reads_right(h), N, "every session reads back exactly");

    /* Garbage of every kind in the whole region, then the same reads,
     * writes and check as with true hints. */
    uint32_t old[N];
    for (int k = 0; k < N; k++)
        old[k] = hint_of(h, k, &old[k]);
    const char *what[] = {"all ones", "zeros", "other sessions' records", "offsets past the segment",
                          "the old records, since freed"};
    for (int g = 0; g < 5; g++) {
        for (uint32_t i = 0; i < s->slots; i++) {
            uint32_t v = g == 0 ? UINT32_MAX : g == 1 ? 0 : g == 2 ? old[(i * 7 + 3) % N] :
                         g == 3 ? (uint32_t)(s->size >> 4) + i : old[i % N];
            atomic_store(&h->rec_hint[i], v);
        }
        is(reads_right(h), N, "hints of %s: every session reads back exactly", what[g]);
        is(problems(h), 0, "hints of %s: the check finds no problem", what[g]);
        if (g == 4) {
            /* Replacing makes the old records' blocks free: hints now
             * name blocks that the next replaces reuse. */
            is(replace_all(h, 2 + g), 0, "hints of %s: every SDP replaced once more", what[g]);
            is(reads_right(h), N, "hints of %s: the new SDPs read back exactly", what[g]);
        }
    }
    is(hints_right(h), N, "after the last replace, every hint is true again");
    is(problems(h), 0, "the check finds no problem at the end");
    int del = 0;
    for (int k = 0; k < N; k++)
        del += shmreg_session_delete(h, &id[k]) == 0;
    is(del, N, "every session deleted");
    test_reg_destroy(h);
    return 0;
}
