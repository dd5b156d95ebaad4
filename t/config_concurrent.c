/*
 * config_concurrent.c — 4 reader processes read views continuously while a
 * writer flips one config between two versions 10,000 times. Every view
 * must be entirely one version: all its fields carry the same serial, the
 * serial matches the version's shape and the record's generation, serials
 * never go back, and a view kept open across later writes still reads the
 * same bytes.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define READERS 4
#define FLIPS 10000
#define NCODECS 8
#define NATTRS 4

static char reg[512];
static int ready_pipe[2], stats_pipe[2], go_pipe[2];

struct stats {
    uint64_t views, versions, bad;
    uint64_t last_serial;
};

/* Version `serial`: even ones are "A" (ptime 20, dtmf on), odd ones "B"
 * (ptime 30, dtmf off); every string names the serial. */
static shmreg_config_doc *version(uint64_t serial)
{
    char tag[32], codecs[NCODECS][48], moh[64], an[NATTRS][16];
    shmreg_str c[NCODECS];
    char L = serial % 2 ? 'B' : 'A';
    shmreg_config_doc *d;
    snprintf(tag, sizeof tag, "%c-%llu", L, (unsigned long long)serial);
    snprintf(moh, sizeof moh, "/moh/%s.wav", tag);
    shmreg_config_doc_new(&d);
    for (int i = 0; i < NCODECS; i++) {
        snprintf(codecs[i], sizeof codecs[i], "%s-%d", tag, i);
        c[i] = (shmreg_str){ codecs[i], strlen(codecs[i]) };
    }
    int rc = shmreg_config_doc_set_list(d, "media.codecs", c, NCODECS) ||
             shmreg_config_doc_set_int(d, "media.ptime", L == 'A' ? 20 : 30) ||
             shmreg_config_doc_set_bool(d, "media.dtmf", L == 'A') ||
             shmreg_config_doc_set_str(d, "media.moh_path", (shmreg_str){ moh, strlen(moh) });
    for (int i = 0; i < NATTRS && !rc; i++) {
        snprintf(an[i], sizeof an[i], "x%d", i);
        rc = shmreg_config_doc_add_attr(d, (shmreg_str){ an[i], strlen(an[i]) },
                                        (shmreg_str){ tag, strlen(tag) });
    }
    rc = rc || shmreg_config_doc_set_int(d, "app.serial", (int64_t)serial) ||
         shmreg_config_doc_set_str(d, "app.tag", (shmreg_str){ tag, strlen(tag) });
    if (rc)
        bail_out("version %llu: %s", (unsigned long long)serial, shmreg_errmsg());
    return d;
}

static int str_eq(shmreg_str s, const char *want)
{
    return s.len == strlen(want) && !memcmp(s.ptr, want, s.len);
}

/* Is view v entirely version `serial` (read from the view itself)? */
static int check_view(const shmreg_config_view *v, uint64_t *serial_out)
{
    int64_t serial;
    if (shmreg_config_get_int(v, "app.serial", &serial) || serial < 0)
        return 0;
    char L = serial % 2 ? 'B' : 'A', tag[32], buf[64];
    snprintf(tag, sizeof tag, "%c-%lld", L, (long long)serial);
    shmreg_config_media m;
    shmreg_config_info info;
    shmreg_str s, k;
    if (shmreg_config_media_get(v, &m) || shmreg_config_view_info(v, &info))
        return 0;
    int good = m.ptime_ms == (L == 'A' ? 20u : 30u) &&
               (m.flags == (L == 'A' ? SHMREG_MEDIA_DTMF : 0u)) &&
               m.ncodecs == NCODECS && m.nattrs == NATTRS &&
               info.gen == (uint64_t)serial + 1 && info.snapshot_gen >= info.gen;
    snprintf(buf, sizeof buf, "/moh/%s.wav", tag);
    good &= str_eq(m.moh_path, buf);
    for (uint32_t i = 0; good && i < NCODECS; i++) {
        snprintf(buf, sizeof buf, "%s-%u", tag, i);
        good &= shmreg_config_codec(v, i, &s) == 0 && str_eq(s, buf);
    }
    for (uint32_t i = 0; good && i < NATTRS; i++) {
        snprintf(buf, sizeof buf, "x%u", i);
        good &= shmreg_config_attr(v, i, &k, &s) == 0 && str_eq(k, buf) && str_eq(s, tag);
    }
    good &= shmreg_config_get_str(v, "app.tag", &s) == 0 && str_eq(s, tag);
    *serial_out = (uint64_t)serial;
    return good;
}

static void reader(void *arg)
{
    int id = (int)(intptr_t)arg;
    struct stats st = { 0, 0, 0, 0 };
    shmreg *h;
    if (shmreg_open(reg, NULL, &h))
        _exit(10);
    shmreg_config_view *v = NULL, *held = NULL;
    uint64_t held_serial = 0, prev = 0;
    char c = 1;
    if (write(ready_pipe[1], &c, 1) != 1)
        _exit(11);
    time_t deadline = time(NULL) + 60;
    while (st.last_serial < FLIPS && time(NULL) < deadline) {
        uint64_t serial;
        int rc;
        /* half the time the worker idiom (refresh when stale), half a
         * fresh open; keep the previous view open one round longer */
        if ((st.views + (uint64_t)id) % 2) {
            rc = shmreg_config_refresh(h, "flip", &v, NULL);
            if (rc < 0) {
                st.bad++;
                break;
            }
        } else {
            if (v)
                shmreg_config_release(v);
            if (shmreg_config_open_view(h, "flip", &v)) {
                st.bad++;
                break;
            }
        }
        if (!check_view(v, &serial) || serial < prev) {
            if (st.bad++ < 3)
                diag("reader %d: view %llu is not one version (serial %llu, prev %llu)",
                     id, (unsigned long long)st.views, (unsigned long long)serial,
                     (unsigned long long)prev);
        }
        if (held) {
            uint64_t again;
            if (!check_view(held, &again) || again != held_serial)
                st.bad++;
            shmreg_config_release(held);
            held = NULL;
        }
        if (serial != prev || st.views == 0)
            st.versions++;
        prev = serial;
        st.views++;
        st.last_serial = serial;
        if (st.views % 16 == 0) {   /* hold a second view across writes */
            if (shmreg_config_open_view(h, "flip", &held) || !check_view(held, &held_serial))
                st.bad++;
        }
    }
    if (held)
        shmreg_config_release(held);
    shmreg_config_release(v);
    shmreg_close(h);
    if (write(stats_pipe[1], &st, sizeof st) != sizeof st)
        _exit(12);
}

static void writer(void *arg)
{
    (void)arg;
    shmreg *h;
    char c;
    if (shmreg_open(reg, NULL, &h))
        _exit(20);
    if (read(go_pipe[0], &c, 1) != 1)
        _exit(21);
    for (uint64_t serial = 1; serial <= FLIPS; serial++) {
        shmreg_config_doc *d = version(serial);
        int rc = shmreg_config_put(h, "flip", d);
        shmreg_config_doc_free(d);
        if (rc) {
            diag("writer: put %llu: %s", (unsigned long long)serial, shmreg_errmsg());
            _exit(22);
        }
    }
    shmreg_close(h);
}

int main(void)
{
    snprintf(reg, sizeof reg, "%s", test_dir("config-conc"));
    shmreg *h;
    if (shmreg_open(reg, &(shmreg_options){ .flags = SHMREG_CREATE }, &h))
        bail_out("open: %s", shmreg_errmsg());
    if (pipe(ready_pipe) || pipe(stats_pipe) || pipe(go_pipe))
        bail_out("pipe: %s", strerror(errno));
    shmreg_config_doc *d = version(0);
    is(shmreg_config_put(h, "flip", d), 0, "version 0 stored");
    shmreg_config_doc_free(d);

    pid_t pids[READERS], wpid;
    for (int i = 0; i < READERS; i++)
        pids[i] = test_fork(reader, (void *)(intptr_t)i);
    wpid = test_fork(writer, NULL);
    char c;
    for (int i = 0; i < READERS; i++)
        if (read(ready_pipe[0], &c, 1) != 1)
            bail_out("reader did not start");
    if (write(go_pipe[1], &c, 1) != 1)
        bail_out("go: %s", strerror(errno));
    is(test_wait(wpid), 0, "the writer flipped the config %d times", FLIPS);

    uint64_t total = 0;
    for (int i = 0; i < READERS; i++) {
        is(test_wait(pids[i]), 0, "reader %d exited cleanly", i);
        struct stats st;
        if (read(stats_pipe[0], &st, sizeof st) != sizeof st)
            bail_out("reader stats");
        note("a reader: %llu views, %llu versions", (unsigned long long)st.views,
             (unsigned long long)st.versions);
        is(st.bad, 0, "a reader: every one of its %llu views was one whole version",
           (unsigned long long)st.views);
        ok(st.versions >= 2, "it saw the config change (%llu versions)",
           (unsigned long long)st.versions);
        is(st.last_serial, FLIPS, "it reached the last version");
        total += st.views;
    }
    ok(total >= 1000, "%llu views checked in all", (unsigned long long)total);
    is(shmreg_config_gen(h), FLIPS + 1, "generation %d", FLIPS + 1);
    shmreg_config_view *v;
    uint64_t serial = 0;
    ok(shmreg_config_open_view(h, "flip", &v) == 0 && check_view(v, &serial) &&
       serial == FLIPS, "the final version is the last one written");
    shmreg_config_release(v);
    shmreg_close(h);
    return done_testing();
}
