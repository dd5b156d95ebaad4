/*
 * noalloc.c — the hot paths make no heap allocation.
 *
 * Each hot operation runs once to warm up (lazy initialisation is allowed
 * on first use), then 1000 times between alloc_count_start() and
 * alloc_count_stop(); the count must be exactly 0. Every session byte lives
 * in the segment, so none of this needs malloc.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_count.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define N 1000

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

static shmreg_id fresh[N];

/* Read every byte a view points to, so the reads really happen. */
static unsigned touch(const shmreg_session *v)
{
    unsigned sum = (unsigned)v->state + v->local_rtp_port + v->remote_rtp_port;
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        for (size_t k = 0; k < v->str[i].len; k++)
            sum = sum * 31u + (unsigned char)v->str[i].ptr[k];
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; k < v->sdp[i].len; k++)
            sum = sum * 31u + (unsigned char)v->sdp[i].ptr[k];
    for (int i = 0; i < SHMREG_CTR_COUNT; i++)
        sum += (unsigned)v->counter[i];
    return sum;
}

int main(void)
{
    char sdp_a[1200], sdp_b[900];
    memset(sdp_a, 'a', sizeof sdp_a);
    memset(sdp_b, 'b', sizeof sdp_b);

    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 4096;
    const char *path = test_dir("noalloc");
    shmreg *h = NULL;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    note("registry at %s", path);   /* stdio buffers exist from here on */

    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = SS("sip:alice@atlanta.example.com");
    f.str[SHMREG_FIELD_TO_URI] = SS("sip:bob@biloxi.example.com");
    f.str[SHMREG_FIELD_CALL_ID] = SS("a84b4c76e66710@pc33.atlanta.example.com");
    f.str[SHMREG_FIELD_LOCAL_TAG] = SS("1928301774");
    f.str[SHMREG_FIELD_CODEC] = SS("PCMU/8000");
    f.local_rtp_port = 49170;

    shmreg_id id, got;
    shmreg_session v;
    int rc = shmreg_session_create(h, &f, &id);
    rc |= shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp_a, sizeof sdp_a);
    rc |= shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, sdp_b, sizeof sdp_b);
    rc |= shmreg_session_transition(h, &id, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, NULL);
    rc |= shmreg_dialog_bind(h, SS("a84b4c76e66710@pc33.atlanta.example.com"),
                             SS("1928301774"), SS("a6c85cf"), &id);
    is(rc, 0, "set up a session with fields, two SDPs and a dialog");

    /* Warm every path up once. */
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    shmreg_read_end(h);
    shmreg_session_transition(h, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL);
    shmreg_session_transition(h, &id, SHMREG_STATE_ONHOLD, SHMREG_STATE_ACTIVE, NULL);
    shmreg_session_counter_add(h, &id, SHMREG_CTR_PACKETS_SENT, 1);
    shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp_a, sizeof sdp_a);
    shmreg_session_create(h, &f, &fresh[0]);
    shmreg_session_delete(h, &fresh[0]);
    shmreg_dialog_find(h, SS("a84b4c76e66710@pc33.atlanta.example.com"), SS("1928301774"),
                       SS("a6c85cf"), &got);
    note("warmed up");

    volatile unsigned sink = 0;
    int errs = 0;
    uint64_t n;

    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_read_begin(h) != 0;
        errs += shmreg_read_end(h) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d read_begin/read_end pairs allocate nothing", N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_read_begin(h) != 0;
        errs += shmreg_session_get(h, &id, &v) != 0;
        sink += touch(&v);
        errs += shmreg_read_end(h) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d session_get calls, reading every field and both SDPs in place, allocate nothing", N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_session_transition(h, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL) != 0;
        errs += shmreg_session_transition(h, &id, SHMREG_STATE_ONHOLD, SHMREG_STATE_ACTIVE, NULL) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d state transitions allocate nothing", 2 * N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++)
        errs += shmreg_session_counter_add(h, &id, i % SHMREG_CTR_COUNT, (uint64_t)i) != 0;
    n = alloc_count_stop();
    is(n, 0, "%d counter_add calls allocate nothing", N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, (i & 1) ? sdp_a : sdp_b,
                                       (i & 1) ? sizeof sdp_a : sizeof sdp_b) != 0;
        errs += shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, (i & 1) ? sdp_b : sdp_a,
                                       (i & 1) ? sizeof sdp_b : sizeof sdp_a) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d SDP replacements allocate nothing", 2 * N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++)
        errs += shmreg_session_create(h, &f, &fresh[i]) != 0;
    n = alloc_count_stop();
    is(n, 0, "%d session_create calls (with room) allocate nothing", N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++)
        errs += shmreg_session_delete(h, &fresh[i]) != 0;
    n = alloc_count_stop();
    is(n, 0, "%d session_delete calls allocate nothing", N);
    is(errs, 0, "and all succeed");

    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_dialog_find(h, SS("a84b4c76e66710@pc33.atlanta.example.com"),
                                   SS("1928301774"), SS("a6c85cf"), &got) != 0;
        errs += shmreg_dialog_find(h, SS("a84b4c76e66710@pc33.atlanta.example.com"),
                                   SS("1928301774"), (shmreg_str){ NULL, 0 }, &got) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d dialog_find calls (full key and early) allocate nothing", 2 * N);
    is(errs, 0, "and all succeed");
    ok(!memcmp(&got, &id, sizeof id), "finding the right session");

    /* Create and delete interleaved, as a server does. */
    errs = 0;
    alloc_count_start();
    for (int i = 0; i < N; i++) {
        errs += shmreg_session_create(h, &f, &fresh[0]) != 0;
        errs += shmreg_session_delete(h, &fresh[0]) != 0;
    }
    n = alloc_count_stop();
    is(n, 0, "%d interleaved create/delete pairs allocate nothing", N);
    is(errs, 0, "and all succeed");
    (void)sink;

    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
