/*
 * iterate.c — walking the live sessions with shmreg_session_next.
 *
 * A quiet registry: the walk sees exactly the live sessions, filtered by
 * state, also when the cursor is carried across read sections. A busy one:
 * a forked writer creates and deletes sessions without pause while we walk;
 * every session we get must be whole (a valid state, fields of one version
 * that match the writer's pattern), and every session that stayed live the
 * whole time must be seen exactly once per walk.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define NSTABLE 60

static const char *path;
static shmreg_id stable[NSTABLE];
static int stable_live[NSTABLE], stable_state[NSTABLE];

static shmreg_str SS(const char *s) { return (shmreg_str){ s, strlen(s) }; }

static int stable_index(const shmreg_id *id)
{
    for (int i = 0; i < NSTABLE; i++)
        if (!memcmp(&stable[i], id, sizeof *id))
            return i;
    return -1;
}

/* Copy a string read in place into a NUL-terminated buffer; 0 if too long. */
static int text(shmreg_str s, char *buf, size_t cap)
{
    if (s.len >= cap || (s.len && !s.ptr))
        return 0;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return 1;
}

/* 1 when the view is one whole version of a session some writer made:
 * "sip:<kind>-<n>@<host>" with to "sip:to-<kind>-<n>@x" and, if set, local
 * SDP "sdp-for-<kind>-<n>". *kind_out: 0 stable, 1 churn. */
static int whole(const shmreg_session *v, int *kind_out, unsigned *n_out)
{
    char from[128], to[128], sdp[128], want[128];
    unsigned n;
    int end = 0;
    if (v->state < SHMREG_STATE_INITIATING || v->state > SHMREG_STATE_FAILED)
        return 0;
    if (!text(v->str[SHMREG_FIELD_FROM_URI], from, sizeof from) ||
        !text(v->str[SHMREG_FIELD_TO_URI], to, sizeof to) ||
        !text(v->sdp[SHMREG_SDP_LOCAL], sdp, sizeof sdp))
        return 0;
    const char *kind;
    int end2 = 0;
    if (sscanf(from, "sip:stable-%u@parent%n", &n, &end) == 1 && end == (int)strlen(from)) {
        kind = "stable";
        *kind_out = 0;
    } else if (sscanf(from, "sip:churn-%u@writer%n", &n, &end2) == 1 &&
               end2 == (int)strlen(from)) {
        kind = "churn";
        *kind_out = 1;
    } else
        return 0;
    snprintf(want, sizeof want, "sip:to-%s-%u@x", kind, n);
    if (strcmp(to, want) != 0)
        return 0;
    snprintf(want, sizeof want, "sdp-for-%s-%u", kind, n);
    if (sdp[0] && strcmp(sdp, want) != 0)
        return 0;
    *n_out = n;
    return 1;
}

static shmreg_fields fields_for(const char *kind, const char *host, unsigned n,
                                char *from, char *to)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    sprintf(from, "sip:%s-%u@%s", kind, n, host);
    sprintf(to, "sip:to-%s-%u@x", kind, n);
    f.str[SHMREG_FIELD_FROM_URI] = SS(from);
    f.str[SHMREG_FIELD_TO_URI] = SS(to);
    return f;
}

static void test_quiet(shmreg *h)
{
    char from[64], to[64], sdp[64];
    int rc = 0;
    for (int i = 0; i < NSTABLE; i++) {
        shmreg_fields f = fields_for("stable", "parent", (unsigned)i, from, to);
        rc |= shmreg_session_create(h, &f, &stable[i]);
        sprintf(sdp, "sdp-for-stable-%d", i);
        rc |= shmreg_session_set_sdp(h, &stable[i], SHMREG_SDP_LOCAL, sdp, strlen(sdp));
        stable_live[i] = 1;
        stable_state[i] = SHMREG_STATE_INITIATING;
        if (i % 3) {
            stable_state[i] = i % 3 == 1 ? SHMREG_STATE_RINGING : SHMREG_STATE_ACTIVE;
            rc |= shmreg_session_transition(h, &stable[i], SHMREG_STATE_ANY, stable_state[i], NULL);
        }
    }
    for (int i = 5; i < NSTABLE; i += 6) {
        rc |= shmreg_session_delete(h, &stable[i]);
        stable_live[i] = 0;
    }
    is(rc, 0, "create 60 sessions in three states and delete 10 of them");

    uint64_t cur = 0;
    shmreg_session v;
    is(shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v), SHMREG_ENOREAD,
       "session_next outside a read section gives SHMREG_ENOREAD");

    static const int filters[] = { SHMREG_STATE_ANY, SHMREG_STATE_INITIATING,
                                   SHMREG_STATE_RINGING, SHMREG_STATE_ACTIVE,
                                   SHMREG_STATE_ONHOLD };
    for (unsigned fi = 0; fi < sizeof filters / sizeof filters[0]; fi++) {
        int filter = filters[fi], seen[NSTABLE] = { 0 }, stray = 0, wrong_state = 0, n = 0;
        cur = 0;
        shmreg_read_begin(h);
        while ((rc = shmreg_session_next(h, &cur, filter, &v)) == 0 && n < 1000) {
            n++;
            int k = stable_index(&v.id);
            if (k < 0 || !stable_live[k])
                stray++;
            else
                seen[k]++;
            if (filter && v.state != filter)
                wrong_state++;
            if (k >= 0 && v.state != stable_state[k])
                wrong_state++;
        }
        shmreg_read_end(h);
        int want = 0, exact = 1;
        for (int i = 0; i < NSTABLE; i++) {
            int expect = stable_live[i] && (!filter || stable_state[i] == filter);
            want += expect;
            exact &= seen[i] == expect;
        }
        const char *name = shmreg_state_name(filter);
        is(rc, SHMREG_ENOENT, "the walk for %s ends with SHMREG_ENOENT", name);
        is(n, want, "the walk for %s returns %d sessions", name, want);
        ok(exact && !stray, "exactly the live sessions in %s, each once", name);
        is(wrong_state, 0, "each with the state it has (%s)", name);
    }

    cur = 0;
    shmreg_read_begin(h);
    is(shmreg_session_next(h, &cur, 10, &v), SHMREG_EINVAL, "a state filter of 10 gives SHMREG_EINVAL");
    is(shmreg_session_next(h, &cur, -1, &v), SHMREG_EINVAL, "a state filter of -1 gives SHMREG_EINVAL");
    shmreg_read_end(h);

    /* The cursor is kept across read sections, seven sessions per section. */
    int seen[NSTABLE] = { 0 }, stray = 0, n = 0, sections = 0;
    cur = 0;
    for (;;) {
        shmreg_read_begin(h);
        sections++;
        int k = 0;
        while (k < 7 && (rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v)) == 0) {
            int s = stable_index(&v.id);
            if (s < 0 || !stable_live[s]) stray++; else seen[s]++;
            k++;
            n++;
        }
        shmreg_read_end(h);
        if (rc != 0 || sections > 100)
            break;
    }
    int exact = 1;
    for (int i = 0; i < NSTABLE; i++)
        exact &= seen[i] == stable_live[i];
    is(rc, SHMREG_ENOENT, "a walk spread over %d read sections ends with SHMREG_ENOENT", sections);
    ok(exact && !stray && n == 50, "and sees the 50 live sessions exactly once (%d)", n);
    shmreg_read_begin(h);
    is(shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v), SHMREG_ENOENT,
       "a cursor at the end stays at the end");
    shmreg_read_end(h);
}

/* ------------------------------------------------------------------ busy */

struct shared {
    atomic_int stop;
    atomic_long created, deleted, errors, transitions, full;
    char first_error[200];
};

/* Count an error; remember the first one for the parent to print. */
static void writer_error(struct shared *sh, const char *op, int rc)
{
    /* The table may look full while our walks pin retired slots. */
    if (rc == SHMREG_EFULL && !strcmp(op, "create")) {
        atomic_fetch_add(&sh->full, 1);
        return;
    }
    if (atomic_fetch_add(&sh->errors, 1) == 0)
        snprintf(sh->first_error, sizeof sh->first_error, "%s: %s (%s)", op,
                 shmreg_strerror(rc), shmreg_errmsg());
}

static void writer(void *arg)
{
    struct shared *sh = arg;
    shmreg *h = NULL;
    if (shmreg_open(path, NULL, &h) != 0) {
        atomic_fetch_add(&sh->errors, 1);
        _exit(2);
    }
    enum { WINDOW = 20 };
    shmreg_id ring[WINDOW];
    int used = 0, head = 0;
    unsigned n = 0;
    char from[64], to[64], sdp[64];
    while (!atomic_load(&sh->stop)) {
        if (used == WINDOW) {
            int rc = shmreg_session_delete(h, &ring[head]);
            if (rc != 0)
                writer_error(sh, "delete", rc);
            else
                atomic_fetch_add(&sh->deleted, 1);
            head = (head + 1) % WINDOW;
            used--;
        }
        shmreg_fields f = fields_for("churn", "writer", n, from, to);
        shmreg_id id;
        int rc = shmreg_session_create(h, &f, &id);
        if (rc != 0) {
            writer_error(sh, "create", rc);
            continue;
        }
        atomic_fetch_add(&sh->created, 1);
        sprintf(sdp, "sdp-for-churn-%u", n);
        if ((rc = shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, sdp, strlen(sdp))) != 0)
            writer_error(sh, "set_sdp", rc);
        if (n % 2) {
            if ((rc = shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING,
                                                SHMREG_STATE_RINGING, NULL)) != 0)
                writer_error(sh, "transition", rc);
            else
                atomic_fetch_add(&sh->transitions, 1);
        }
        /* Update the fields to a new whole version now and then. */
        if (n % 5 == 0) {
            shmreg_fields g = fields_for("churn", "writer", n, from, to);
            if ((rc = shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_FROM_URI) |
                                                        SHMREG_MASK(SHMREG_FIELD_TO_URI))) != 0)
                writer_error(sh, "update", rc);
        }
        ring[(head + used) % WINDOW] = id;
        used++;
        n++;
    }
    shmreg_close(h);
}

static void test_busy(shmreg *h)
{
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE,
                             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED)
        bail_out("mmap failed");
    memset(sh, 0, sizeof *sh);
    pid_t pid = test_fork(writer, sh);

    /* Wait until the writer is running. */
    double t0 = test_mono_s();
    while (atomic_load(&sh->created) < 50 && test_mono_s() - t0 < 10)
        usleep(1000);

    long walks = 0, garbage = 0, bad_walks = 0, churn_seen = 0, items = 0, errors = 0;
    shmreg_session v;
    t0 = test_mono_s();
    while (test_mono_s() - t0 < 2.0) {
        int seen[NSTABLE] = { 0 }, rc, per_section = (walks % 2) ? 7 : 1 << 30, k = 0;
        uint64_t cur = 0;
        shmreg_read_begin(h);
        while ((rc = shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v)) == 0) {
            int kind;
            unsigned n;
            items++;
            if (!whole(&v, &kind, &n)) {
                garbage++;
                if (garbage < 5)
                    diag("garbage: state %d, from %.*s", v.state,
                         (int)(v.str[0].len < 80 ? v.str[0].len : 80), v.str[0].ptr);
            } else if (kind == 0) {
                int s = stable_index(&v.id);
                if (s < 0 || !stable_live[s] || (int)n != s)
                    garbage++;
                else
                    seen[s]++;
            } else
                churn_seen++;
            if (++k % per_section == 0) {
                shmreg_read_end(h);
                shmreg_read_begin(h);
            }
        }
        shmreg_read_end(h);
        if (rc != SHMREG_ENOENT)
            errors++;
        int exact = 1;
        for (int i = 0; i < NSTABLE; i++)
            exact &= seen[i] == stable_live[i];
        bad_walks += !exact;
        walks++;
    }
    atomic_store(&sh->stop, 1);
    is(test_wait(pid), 0, "the writer exits cleanly");
    diag("%ld walks, %ld sessions returned, %ld of them the writer's; writer created %ld, "
         "deleted %ld, found the table full %ld times", walks, items, churn_seen,
         atomic_load(&sh->created), atomic_load(&sh->deleted), atomic_load(&sh->full));
    ok(walks >= 10, "we walked the table at least 10 times while the writer ran (%ld)", walks);
    ok(atomic_load(&sh->created) > 200, "the writer created sessions all the while (%ld)",
       atomic_load(&sh->created));
    if (!is(atomic_load(&sh->errors), 0, "the writer met no error"))
        diag("first error: %s", sh->first_error);
    is(errors, 0, "every walk ended with SHMREG_ENOENT");
    is(garbage, 0, "no walk returned garbage: every session whole, valid state, known pattern");
    is(bad_walks, 0, "every walk saw each of the 50 sessions live throughout exactly once");
    ok(churn_seen > 0, "the walks saw the writer's sessions too (%ld)", churn_seen);

    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    long left = atomic_load(&sh->created) - atomic_load(&sh->deleted);
    is(c[0], 50 + left, "afterwards the registry holds the 50 plus the writer's last %ld", left);
    long n = 0;
    uint64_t cur = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        n++;
    shmreg_read_end(h);
    is(n, 50 + left, "and a walk counts as many");
    munmap(sh, sizeof *sh);
}

int main(void)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.flags = SHMREG_CREATE;
    o.max_sessions = 4096;
    static char p[400];
    snprintf(p, sizeof p, "%s", test_dir("iterate"));
    path = p;
    shmreg *h = NULL;
    if (shmreg_open(path, &o, &h) != 0)
        bail_out("cannot create a registry: %s", shmreg_errmsg());
    test_quiet(h);
    test_busy(h);
    shmreg_close(h);
    shmreg_destroy(path, 1);
    return done_testing();
}
