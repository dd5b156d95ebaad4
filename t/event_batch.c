/*
 * event_batch.c — shmreg_publish_batch(): n custom events with one claim
 * on the ring. They arrive in array order, with consecutive sequence
 * numbers and nothing of anybody else's between them, also while other
 * processes publish batches and single events at the same time; every
 * field is exact; a bad batch publishes nothing; publishing allocates
 * nothing. (Dying half way through a batch: t/crashpoint.c.)
 */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "alloc_count.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static shmreg *open_new(const char *name, uint32_t event_records)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 64;
    o.event_records = event_records;
    return test_reg_new_opts(name, o);
}

static uint64_t published(shmreg *h)
{
    shmreg_stats st;
    shmreg_stat(h, &st);
    return st.events_published;
}

static int drain(shmreg_sub *sub, shmreg_event *ev, int cap)
{
    int n = 0, got;
    while (n < cap && (got = shmreg_poll(sub, ev + n, cap - n, 0, NULL)) > 0)
        n += got;
    return n;
}

static void test_order_and_fields(void)
{
    shmreg *h = open_new("batch-basic", 0);
    shmreg_id s[2] = {test_session_new(h), test_session_new(h)};
    shmreg_sub *all, *one;
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &all);
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), &s[1], &one);

    enum { N = 16 };
    char text[N][8];
    const void *data[N];
    size_t len[N];
    shmreg_id who[N];
    for (int i = 0; i < N; i++) {
        len[i] = (size_t)snprintf(text[i], sizeof text[i], "ev-%02d", i);
        data[i] = text[i];
        who[i] = s[i % 2];
    }
    len[N - 1] = 0; /* an event may carry no data */
    uint64_t p0 = published(h), t0 = test_now_ns();
    is(shmreg_publish_batch(h, who, data, len, N), 0, "a batch of %d events", N);
    is(published(h) - p0, N, "events_published grew by exactly %d", N);

    shmreg_event ev[2 * N];
    int n = drain(all, ev, 2 * N);
    is(n, N, "a subscriber to all gets %d events", N);
    int in_order = n == N, fields = n == N;
    for (int i = 0; i < n; i++) {
        in_order &= ev[i].seq == ev[0].seq + (uint64_t)i && ev[i].len == len[i] &&
                    memcmp(ev[i].data, text[i], len[i]) == 0;
        fields &= ev[i].type == SHMREG_EV_CUSTOM && ev[i].pid == getpid() &&
                  test_id_eq(&ev[i].session, &who[i]) && ev[i].time_ns == ev[0].time_ns &&
                  ev[i].time_ns >= t0 && ev[i].old_state == 0 && ev[i].new_state == 0;
    }
    ok(in_order, "in array order, with consecutive sequence numbers and their own data");
    ok(fields, "each of its session, this pid, one time for all, no states");
    n = drain(one, ev, 2 * N);
    int only = n == N / 2;
    for (int i = 0; i < n; i++)
        only &= test_id_eq(&ev[i].session, &s[1]) && ev[i].len == len[2 * i + 1] &&
                memcmp(ev[i].data, text[2 * i + 1], len[2 * i + 1]) == 0;
    ok(only, "a subscriber to one session gets its %d, in order (%d)", N / 2, n);

    is(shmreg_publish_batch(h, NULL, data, len, 3), 0, "a batch with no sessions");
    n = drain(all, ev, 2 * N);
    ok(n == 3 && test_id_eq(&ev[0].session, &(shmreg_id){{0}}), "its events name no session");

    /* Refused whole: nothing is published. */
    p0 = published(h);
    const void *bad_data[3] = {"a", NULL, "c"};
    size_t long_len[3] = {1, SHMREG_EVENT_DATA_MAX + 1, 1}, ok_len[3] = {1, 1, 1};
    is(shmreg_publish_batch(h, NULL, data, len, 0), SHMREG_EINVAL, "n of 0: SHMREG_EINVAL");
    is(shmreg_publish_batch(h, NULL, data, len, SHMREG_PUBLISH_BATCH_MAX + 1), SHMREG_EINVAL,
       "n of %u: SHMREG_EINVAL", SHMREG_PUBLISH_BATCH_MAX + 1);
    is(shmreg_publish_batch(h, NULL, NULL, len, 3), SHMREG_EINVAL, "NULL data: SHMREG_EINVAL");
    is(shmreg_publish_batch(h, NULL, data, NULL, 3), SHMREG_EINVAL, "NULL lengths: SHMREG_EINVAL");
    is(shmreg_publish_batch(h, NULL, data, long_len, 3), SHMREG_EINVAL,
       "a middle event of %u bytes: SHMREG_EINVAL", SHMREG_EVENT_DATA_MAX + 1);
    is(shmreg_publish_batch(h, NULL, bad_data, ok_len, 3), SHMREG_EINVAL,
       "a middle event with a length and no bytes: SHMREG_EINVAL");
    is(published(h) - p0, 0, "none of them published anything");
    is(drain(all, ev, 2 * N), 0, "and no subscriber got anything");

    alloc_count_start();
    int fails = 0;
    for (int i = 0; i < 100; i++)
        fails += shmreg_publish_batch(h, who, data, len, N) != 0;
    uint64_t allocs = alloc_count_stop();
    is(allocs, 0, "100 batches allocate nothing");
    is(fails, 0, "and all succeed");
    shmreg_unsubscribe(all);
    shmreg_unsubscribe(one);
    test_reg_destroy(h);

    /* The smallest ring holds the biggest batch. */
    h = open_new("batch-small", 64);
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &all);
    const void *d64[SHMREG_PUBLISH_BATCH_MAX];
    size_t l64[SHMREG_PUBLISH_BATCH_MAX];
    for (unsigned i = 0; i < SHMREG_PUBLISH_BATCH_MAX; i++)
        d64[i] = &i, l64[i] = 0;
    is(shmreg_publish_batch(h, NULL, d64, l64, SHMREG_PUBLISH_BATCH_MAX), 0,
       "a batch of %u on a ring of 64 records", SHMREG_PUBLISH_BATCH_MAX);
    shmreg_event e64[SHMREG_PUBLISH_BATCH_MAX + 1];
    is(drain(all, e64, SHMREG_PUBLISH_BATCH_MAX + 1), SHMREG_PUBLISH_BATCH_MAX, "all %u delivered",
       SHMREG_PUBLISH_BATCH_MAX);
    shmreg_unsubscribe(all);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ many producers */

#define PRODUCERS 4
#define BATCHES 1500
#define PER 16

struct shared {
    atomic_int ready, go;
    atomic_long errors;
    long received, missed, torn_batches, out_of_order, singles;
    int finished;
};

static struct shared *sh;

/* Producer k publishes BATCHES batches of PER, and a single event after
 * each batch: an event is (k, batch, index), index PER for the single. */
static void producer(void *arg)
{
    uint32_t k = (uint32_t)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    uint32_t d[PER][3];
    const void *data[PER];
    size_t len[PER];
    atomic_fetch_add(&sh->ready, 1);
    while (!atomic_load(&sh->go))
        sched_yield();
    for (uint32_t b = 0; b < BATCHES; b++) {
        for (uint32_t i = 0; i < PER; i++) {
            d[i][0] = k, d[i][1] = b, d[i][2] = i;
            data[i] = d[i];
            len[i] = sizeof d[i];
        }
        int rc;
        while ((rc = shmreg_publish_batch(h, NULL, data, len, PER)) == SHMREG_EBUSY)
            ;
        uint32_t single[3] = {k, b, PER};
        if (rc != 0 || shmreg_publish(h, NULL, single, sizeof single) != 0)
            atomic_fetch_add(&sh->errors, 1);
    }
    shmreg_close(h);
}

static void subscriber(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    shmreg_sub *sub;
    shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CUSTOM), NULL, &sub);
    atomic_fetch_add(&sh->ready, 1);
    static shmreg_event e[512];
    long want = (long)PRODUCERS * BATCHES * (PER + 1);
    int64_t next[PRODUCERS] = {0}; /* each producer's next expected (batch * (PER+1) + index) */
    uint32_t cur_k = UINT32_MAX, cur_i = 0;
    double deadline = test_mono_s() + 30;
    while (sh->received + sh->missed < want && test_mono_s() < deadline) {
        uint64_t m = 0;
        int n = shmreg_poll(sub, e, 512, 50 * 1000000ll, &m);
        sh->missed += (long)m;
        for (int j = 0; j < n; j++) {
            uint32_t d[3];
            memcpy(d, e[j].data, sizeof d);
            if (d[0] >= PRODUCERS)
                continue;
            /* Inside a batch, the next event must be the same producer's
             * next index: nothing of another producer's in between. */
            if (cur_k != UINT32_MAX && cur_i < PER && (d[0] != cur_k || d[2] != cur_i))
                sh->torn_batches++;
            if ((int64_t)(d[1] * (PER + 1) + d[2]) != next[d[0]])
                sh->out_of_order++;
            next[d[0]] = d[1] * (PER + 1) + d[2] + 1;
            sh->singles += d[2] == PER;
            cur_k = d[0];
            cur_i = d[2] == PER ? PER : d[2] + 1;
            if (cur_i == PER)
                cur_k = UINT32_MAX; /* a batch (or a single) ended */
            sh->received++;
        }
    }
    sh->finished = 1;
    shmreg_unsubscribe(sub);
    shmreg_close(h);
}

static void test_many_producers(void)
{
    shmreg *h = open_new("batch-mp", 1u << 18);
    sh = test_shared(sizeof *sh);
    uint64_t p0 = published(h);
    pid_t sp = test_fork(subscriber, NULL), pp[PRODUCERS];
    for (int k = 0; k < PRODUCERS; k++)
        pp[k] = test_fork(producer, (void *)(intptr_t)k);
    while (atomic_load(&sh->ready) < PRODUCERS + 1)
        sched_yield();
    atomic_store(&sh->go, 1);
    int bad = 0;
    for (int k = 0; k < PRODUCERS; k++)
        bad += test_wait(pp[k]) != 0;
    bad += test_wait(sp) != 0;
    long want = (long)PRODUCERS * BATCHES * (PER + 1);
    is(bad, 0, "%d producers and a subscriber exited cleanly", PRODUCERS);
    is(atomic_load(&sh->errors), 0, "no publish failed");
    is(published(h) - p0, (uint64_t)want, "events_published grew by exactly %ld", want);
    ok(sh->finished, "the subscriber finished");
    is(sh->received, want, "it received all %ld events (%d x %d batches of %d, and a single after each)",
       want, PRODUCERS, BATCHES, PER);
    is(sh->missed, 0, "missed none");
    is(sh->torn_batches, 0, "every batch arrived whole: %d events of one producer in a row", PER);
    is(sh->out_of_order, 0, "each producer's events in its order, none twice");
    is(sh->singles, (long)PRODUCERS * BATCHES, "and every single event between its batches");
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    test_order_and_fields();
    test_many_producers();
    return done_testing();
}
