/*
 * config_noalloc.c — the hot read path of configs allocates nothing:
 * opening and releasing views, reading media fields, iterating codecs,
 * SDP attributes and entries, looking up keys, staleness checks and
 * refreshes (after each view slot has been used once).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shmreg.h"
#include "alloc_count.h"
#include "tap.h"
#include "testutil.h"

static const char text[] =
    "[media]\n"
    "codecs = [\"opus\", \"G722\", \"PCMU\", \"PCMA\", \"telephone-event\"]\n"
    "ptime = 20\n"
    "moh_path = \"/var/lib/moh/hold.wav\"\n"
    "dtmf = true\n"
    "agc = true\n"
    "\n"
    "[sdp]\n"
    "rtcp-mux = \"\"\n"
    "fmtp = \"101 0-16\"\n"
    "ptime = \"20\"\n"
    "\n"
    "[app]\n"
    "greeting = \"hello\"\n"
    "max_calls = 500\n"
    "debug = false\n"
    "trunks = [\"a\", \"b\", \"c\"]\n";

/* What a worker does with a view; returns a checksum so nothing is
 * optimised away, and -1 on any unexpected result. */
static long use_view(const shmreg_config_view *v)
{
    shmreg_config_media m;
    shmreg_config_value val;
    shmreg_str s, k;
    int64_t n;
    int b;
    long sum = 0;
    if (shmreg_config_media_get(v, &m) || m.ncodecs != 5 || m.nattrs != 3)
        return -1;
    for (uint32_t i = 0; i < m.ncodecs; i++) {
        if (shmreg_config_codec(v, i, &s))
            return -1;
        sum += (long)s.len;
    }
    for (uint32_t i = 0; i < m.nattrs; i++) {
        if (shmreg_config_attr(v, i, &k, &s))
            return -1;
        sum += (long)(k.len + s.len);
    }
    if (shmreg_config_get_int(v, "app.max_calls", &n) || n != 500 ||
        shmreg_config_get_bool(v, "app.debug", &b) || b != 0 ||
        shmreg_config_get_str(v, "app.greeting", &s) || s.len != 5 ||
        shmreg_config_get(v, "app.trunks", &val) || shmreg_config_item(&val, 2, &s) ||
        shmreg_config_get(v, "app.absent", &val) != SHMREG_ENOENT)
        return -1;
    uint32_t cur = 0;
    int rc;
    while ((rc = shmreg_config_next(v, &cur, &k, &val)) == 0)
        sum += (long)k.len;
    return rc == SHMREG_ENOENT ? sum + (long)m.moh_path.len : -1;
}

int main(void)
{
    char reg[512];
    snprintf(reg, sizeof reg, "%s", test_dir("config-noalloc"));
    shmreg *h;
    if (shmreg_open(reg, &(shmreg_options){ .flags = SHMREG_CREATE }, &h))
        bail_out("open: %s", shmreg_errmsg());
    is(shmreg_config_load_text(h, "media", text, strlen(text)), 0, "a config");

    /* warm up: use two view slots once (LMDB allocates their transactions) */
    shmreg_config_view *v = NULL, *w = NULL;
    is(shmreg_config_open_view(h, "media", &v), 0, "first view");
    is(shmreg_config_open_view(h, "media", &w), 0, "second view");
    long want = use_view(v);
    ok(want > 0, "the worker's reads work (checksum %ld)", want);
    shmreg_config_release(w);
    shmreg_config_release(v);
    v = NULL;
    note("warmed up");

    /* 1000 rounds of the read path, no change in between */
    long bad = 0;
    int stale = 0, refreshed = 0;
    alloc_count_start();
    for (int i = 0; i < 1000; i++) {
        if (shmreg_config_open_view(h, "media", &w))
            bad++;
        else if (use_view(w) != want)
            bad++;
        shmreg_config_release(w);
        int rf = 0, changed = 0;
        if (shmreg_config_refresh(h, "media", &v, &rf) != 0 ||
            shmreg_config_changed(h, shmreg_config_gen(h), &changed) != 0)
            bad++;
        refreshed += rf;
        stale += shmreg_config_stale(v);
        stale += changed;
        if (use_view(v) != want)
            bad++;
    }
    uint64_t allocs = alloc_count_stop();
    is(allocs, 0, "open, read, iterate, look up, release, refresh: no allocation");
    is(bad, 0, "every read was right");
    is(refreshed, 1, "refresh opened once, then found nothing newer");
    is(stale, 0, "nothing was stale");

    /* a write, then the reader's refresh swaps views without allocating */
    is(shmreg_config_set(h, "media", "app.max_calls", "500"), 0, "a write");
    alloc_count_start();
    int st = shmreg_config_stale(v);
    int rf = 0;
    int rrc = shmreg_config_refresh(h, "media", &v, &rf);
    long sum = use_view(v);
    allocs = alloc_count_stop();
    ok(st == 1 && rrc == 0 && rf == 1 && sum == want, "stale, refreshed, read");
    is(allocs, 0, "a refresh after a write allocates nothing either");
    shmreg_config_release(v);
    shmreg_close(h);
    return done_testing();
}
