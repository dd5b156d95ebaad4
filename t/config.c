/*
 * config.c — configs in LMDB: documents, views read in place, generations,
 * single-key edits, limits, setup, files, a full map, corrupt records and
 * fork rules, events.
 */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static shmreg *open_reg(const char *path)
{
    shmreg *h = NULL;
    int rc = shmreg_open(path, &(shmreg_options){ .flags = SHMREG_CREATE }, &h);
    if (rc)
        bail_out("shmreg_open %s: %s (%s)", path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

static int str_is(shmreg_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0 &&
           s.ptr[s.len] == 0;
}

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

/* The media config most tests use. */
static shmreg_config_doc *media_doc(void)
{
    shmreg_config_doc *d;
    shmreg_str codecs[] = { S("opus"), S("PCMU"), S("PCMA"), S("telephone-event/8000") };
    shmreg_str trunks[] = { S("a"), S("b") };
    if (shmreg_config_doc_new(&d) ||
        shmreg_config_doc_set_list(d, "media.codecs", codecs, 4) ||
        shmreg_config_doc_set_int(d, "media.rtp_port_min", 16384) ||
        shmreg_config_doc_set_int(d, "media.rtp_port_max", 32767) ||
        shmreg_config_doc_set_int(d, "media.ptime", 30) ||
        shmreg_config_doc_set_int(d, "media.max_bandwidth", 256) ||
        shmreg_config_doc_set_str(d, "media.moh_path", S("/var/lib/moh/hold.wav")) ||
        shmreg_config_doc_set_bool(d, "media.dtmf", 1) ||
        shmreg_config_doc_set_bool(d, "media.echo_cancellation", 0) ||
        shmreg_config_doc_set_bool(d, "media.noise_suppression", 1) ||
        shmreg_config_doc_set_bool(d, "media.quality_monitoring", 1) ||
        shmreg_config_doc_add_attr(d, S("rtcp-mux"), S("")) ||
        shmreg_config_doc_add_attr(d, S("fmtp"), S("101 0-16")) ||
        shmreg_config_doc_add_attr(d, S("fmtp"), S("0 mode=30")) ||
        shmreg_config_doc_set_str(d, "app.greeting", S("hello")) ||
        shmreg_config_doc_set_int(d, "app.max_calls", -500) ||
        shmreg_config_doc_set_bool(d, "app.debug", 0) ||
        shmreg_config_doc_set_list(d, "app.trunks", trunks, 2) ||
        shmreg_config_doc_set_str(d, "site", S("lab-1")))
        bail_out("building the media doc: %s", shmreg_errmsg());
    return d;
}

static int list_fn(void *arg, shmreg_str name, uint64_t gen)
{
    char *o = arg;
    snprintf(o + strlen(o), 256 - strlen(o), "%.*s:%llu ", (int)name.len, name.ptr,
             (unsigned long long)gen);
    return 0;
}

static void test_views(shmreg *h)
{
    shmreg_config_view *v = NULL;
    is(shmreg_config_gen(h), 0, "a new registry is at config generation 0");
    is(shmreg_config_open_view(h, "media", &v), SHMREG_ENOENT, "no config yet: ENOENT");
    ok(v == NULL, "a failed open leaves *out alone");

    shmreg_config_doc *d = media_doc();
    is(shmreg_config_put(h, "media", d), 0, "put the media config");
    shmreg_config_doc_free(d);
    is(shmreg_config_gen(h), 1, "the put bumped the generation to 1");
    int changed = -1, rf = -1;
    ok(shmreg_config_changed(h, 0, &changed) == 0 && changed == 1, "changed since 0");
    ok(shmreg_config_changed(h, 1, &changed) == 0 && changed == 0, "not changed since 1");
    is(shmreg_config_changed(h, 0, NULL), SHMREG_EINVAL, "changed: NULL answer is EINVAL");

    is(shmreg_config_open_view(h, "media", &v), 0, "open a view");
    shmreg_config_media m;
    is(shmreg_config_media_get(v, &m), 0, "media fields");
    is(m.set, SHMREG_MEDIA_CODECS | SHMREG_MEDIA_RTP_PORT_MIN | SHMREG_MEDIA_RTP_PORT_MAX |
              SHMREG_MEDIA_PTIME | SHMREG_MEDIA_MAX_BANDWIDTH | SHMREG_MEDIA_MOH_PATH |
              SHMREG_MEDIA_DTMF | SHMREG_MEDIA_ECHO_CANCELLATION |
              SHMREG_MEDIA_NOISE_SUPPRESSION | SHMREG_MEDIA_QUALITY_MONITORING |
              SHMREG_MEDIA_SDP_ATTRS, "set: every field but agc");
    is(m.flags, SHMREG_MEDIA_DTMF | SHMREG_MEDIA_NOISE_SUPPRESSION |
                SHMREG_MEDIA_QUALITY_MONITORING, "flags: dtmf, noise, quality");
    is(m.rtp_port_min, 16384, "rtp_port_min");
    is(m.rtp_port_max, 32767, "rtp_port_max");
    is(m.ptime_ms, 30, "ptime");
    is(m.max_bandwidth_kbps, 256, "max_bandwidth");
    ok(str_is(m.moh_path, "/var/lib/moh/hold.wav"), "moh_path, NUL-terminated in place");
    is(m.ncodecs, 4, "4 codecs");
    is(m.nattrs, 3, "3 SDP attributes");
    const char *want_codecs[] = { "opus", "PCMU", "PCMA", "telephone-event/8000" };
    shmreg_str s, k;
    int good = 1;
    for (uint32_t i = 0; i < 4; i++)
        good &= shmreg_config_codec(v, i, &s) == 0 && str_is(s, want_codecs[i]);
    ok(good, "codecs in order");
    is(shmreg_config_codec(v, 4, &s), SHMREG_ENOENT, "codec 4: ENOENT");
    ok(shmreg_config_attr(v, 0, &k, &s) == 0 && str_is(k, "rtcp-mux") && str_is(s, ""),
       "attr 0: rtcp-mux, property");
    ok(shmreg_config_attr(v, 1, &k, &s) == 0 && str_is(k, "fmtp") && str_is(s, "101 0-16"),
       "attr 1: fmtp 101");
    ok(shmreg_config_attr(v, 2, &k, &s) == 0 && str_is(k, "fmtp") && str_is(s, "0 mode=30"),
       "attr 2: fmtp 0, repeated name kept in order");
    is(shmreg_config_attr(v, 3, &k, &s), SHMREG_ENOENT, "attr 3: ENOENT");

    int64_t n;
    int b;
    shmreg_config_value val;
    ok(shmreg_config_get_str(v, "app.greeting", &s) == 0 && str_is(s, "hello"), "app string");
    ok(shmreg_config_get_int(v, "app.max_calls", &n) == 0 && n == -500, "app integer");
    ok(shmreg_config_get_bool(v, "app.debug", &b) == 0 && b == 0, "app boolean");
    ok(shmreg_config_get_str(v, "site", &s) == 0 && str_is(s, "lab-1"), "top-level key");
    ok(shmreg_config_get(v, "app.trunks", &val) == 0 && val.type == SHMREG_CONFIG_LIST &&
       val.count == 2 && shmreg_config_item(&val, 1, &s) == 0 && str_is(s, "b"),
       "app list");
    ok(shmreg_config_get_int(v, "media.ptime", &n) == 0 && n == 30, "media keys by name too");
    is(shmreg_config_get_int(v, "app.greeting", &n), SHMREG_EINVAL, "wrong type: EINVAL");
    is(shmreg_config_get(v, "app.nope", &val), SHMREG_ENOENT, "absent key: ENOENT");
    is(shmreg_config_get_bool(v, "media.agc", &b), SHMREG_ENOENT, "unset media key: ENOENT");

    /* entry order: top-level first, then sections in order of appearance */
    const char *order[] = { "site", "media.codecs", "media.rtp_port_min",
                            "media.rtp_port_max", "media.ptime", "media.max_bandwidth",
                            "media.moh_path", "media.dtmf", "media.echo_cancellation",
                            "media.noise_suppression", "media.quality_monitoring",
                            "sdp", "app.greeting", "app.max_calls", "app.debug",
                            "app.trunks" };
    uint32_t cur = 0, count = 0;
    good = 1;
    while (shmreg_config_next(v, &cur, &k, &val) == 0) {
        good &= count < 16 && str_is(k, order[count]);
        count++;
    }
    ok(good && count == 16, "next: 16 entries in order (%u)", count);
    cur = 7;
    is(shmreg_config_next(v, &cur, &k, &val), SHMREG_ECORRUPT, "a forged cursor is caught");

    shmreg_config_info info;
    is(shmreg_config_view_info(v, &info), 0, "view info");
    is(info.gen, 1, "config generation 1");
    is(info.snapshot_gen, 1, "snapshot generation 1");
    is(info.entries, 16, "16 entries");
    is(shmreg_config_stale(v), 0, "fresh view is not stale");

    /* another config's write: v keeps its snapshot but is stale */
    const char *codec0 = NULL;
    shmreg_config_codec(v, 0, &s);
    codec0 = s.ptr;
    shmreg_config_doc *d2;
    shmreg_config_doc_new(&d2);
    shmreg_config_doc_set_int(d2, "x", 7);
    is(shmreg_config_put(h, "other", d2), 0, "put another config");
    shmreg_config_doc_free(d2);
    is(shmreg_config_gen(h), 2, "generation 2");
    is(shmreg_config_stale(v), 1, "the view is stale now");
    ok(str_is((shmreg_str){ codec0, 4 }, "opus"), "its pointers still hold the old bytes");
    shmreg_config_view *old = v;
    ok(shmreg_config_refresh(h, "media", &v, &rf) == 0 && rf == 1, "refresh: 0, new view");
    ok(v != old, "refresh swapped the view");
    shmreg_config_view_info(v, &info);
    ok(info.gen == 1 && info.snapshot_gen == 2, "config gen 1, snapshot 2");
    ok(shmreg_config_refresh(h, "media", &v, &rf) == 0 && rf == 0, "refresh again: nothing to do");

    /* single-key edits */
    is(shmreg_config_set(h, "media", "media.ptime", "40"), 0, "set media.ptime 40");
    is(shmreg_config_gen(h), 3, "generation 3");
    ok(shmreg_config_refresh(h, "media", &v, &rf) == 0 && rf == 1, "refresh");
    shmreg_config_media_get(v, &m);
    ok(m.ptime_ms == 40 && m.ncodecs == 4 && m.nattrs == 3 && m.rtp_port_min == 16384,
       "ptime 40, the rest unchanged");
    shmreg_config_view_info(v, &info);
    is(info.gen, 3, "the config's generation is the write's");
    is(shmreg_config_set(h, "media", "media.ptime", "\"x\""), SHMREG_EINVAL,
       "a string for ptime: EINVAL");
    is(shmreg_config_set(h, "media", "media.ptime", "4 0"), SHMREG_EPARSE, "bad text: EPARSE");
    is_str(shmreg_errmsg(), "column 3: unexpected '0' after the value", "errmsg names the column");
    is(shmreg_config_set(h, "media", "media.ptime", "1001"), SHMREG_EINVAL, "ptime 1001: EINVAL");
    is(shmreg_config_set(h, "media", "sdp.fmtp", "\"x\""), SHMREG_EINVAL,
       "set of a repeated SDP attribute: EINVAL");
    is(shmreg_config_gen(h), 3, "failed edits changed nothing");
    is(shmreg_config_set(h, "media", "sdp.rtcp-mux", "\"x\""), 0, "set a single SDP attribute");
    is(shmreg_config_set(h, "media", "sdp.ice-lite", "\"\""), 0, "set a new SDP attribute");
    is(shmreg_config_unset(h, "media", "sdp.fmtp"), 0, "unset both fmtp");
    is(shmreg_config_set(h, "media", "app.trunks", "[\"c\"]"), 0, "set a list");
    is(shmreg_config_unset(h, "media", "app.debug"), 0, "unset app.debug");
    is(shmreg_config_unset(h, "media", "app.debug"), SHMREG_ENOENT, "unset again: ENOENT");
    is(shmreg_config_unset(h, "nosuch", "a"), SHMREG_ENOENT, "unset in no config: ENOENT");
    is(shmreg_config_gen(h), 8, "5 edits: generation 8");
    ok(shmreg_config_refresh(h, "media", &v, &rf) == 0 && rf == 1, "refresh");
    shmreg_config_media_get(v, &m);
    ok(m.nattrs == 2 && shmreg_config_attr(v, 0, &k, &s) == 0 && str_is(k, "rtcp-mux") &&
       str_is(s, "x") && shmreg_config_attr(v, 1, &k, &s) == 0 && str_is(k, "ice-lite"),
       "attributes: rtcp-mux=x, ice-lite");
    ok(shmreg_config_get(v, "app.trunks", &val) == 0 && val.count == 1, "list replaced");
    is(shmreg_config_get_bool(v, "app.debug", &b), SHMREG_ENOENT, "app.debug gone");
    is(shmreg_config_set(h, "fresh", "app.port", "5060"), 0, "set creates a config");

    /* list */
    char names[256] = "";
    is(shmreg_config_list(h, list_fn, names), 0, "list");
    is_str(names, "fresh:9 media:8 other:2 ", "names in order with their generations");

    /* delete */
    is(shmreg_config_delete(h, "other"), 0, "delete");
    is(shmreg_config_gen(h), 10, "generation 10");
    is(shmreg_config_delete(h, "other"), SHMREG_ENOENT, "delete again: ENOENT");
    is(shmreg_config_gen(h), 10, "no bump for nothing");
    shmreg_config_view *dv;
    is(shmreg_config_open_view(h, "fresh", &dv), 0, "view of fresh");
    is(shmreg_config_delete(h, "fresh"), 0, "delete fresh while viewed");
    ok(shmreg_config_get_int(dv, "app.port", &n) == 0 && n == 5060,
       "the view keeps its snapshot");
    rf = -1;
    is(shmreg_config_refresh(h, "fresh", &dv, &rf), SHMREG_ENOENT, "refresh: ENOENT");
    is(rf, 0, "a failed refresh says it did not refresh");
    ok(shmreg_config_get_int(dv, "app.port", &n) == 0 && n == 5060,
       "a failed refresh leaves the old view valid");
    shmreg_config_release(dv);
    shmreg_config_release(v);

    /* view slots */
    shmreg_config_view *vs[SHMREG_CONFIG_MAX_VIEWS + 1];
    good = 1;
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        good &= shmreg_config_open_view(h, "media", &vs[i]) == 0;
    ok(good, "%u views at once", SHMREG_CONFIG_MAX_VIEWS);
    is(shmreg_config_open_view(h, "media", &vs[8]), SHMREG_EFULL, "one more: EFULL");
    shmreg_config_release(vs[3]);
    is(shmreg_config_open_view(h, "media", &vs[3]), 0, "after a release: fine");
    for (unsigned i = 0; i < SHMREG_CONFIG_MAX_VIEWS; i++)
        shmreg_config_release(vs[i]);
}

static void test_invalid(shmreg *h)
{
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    shmreg_str big_codec[] = { S("has space") };
    char long_key[200];
    memset(long_key, 'k', sizeof long_key);
    long_key[129] = 0;
    char *big = malloc(SHMREG_CONFIG_MAX_VALUE + 1);
    memset(big, 'x', SHMREG_CONFIG_MAX_VALUE + 1);
    is(shmreg_config_doc_set_int(d, "a..b", 1), SHMREG_EINVAL, "key a..b");
    is(shmreg_config_doc_set_int(d, "a.b.c", 1), SHMREG_EINVAL, "key a.b.c");
    is(shmreg_config_doc_set_int(d, ".a", 1), SHMREG_EINVAL, "key .a");
    is(shmreg_config_doc_set_int(d, "a b", 1), SHMREG_EINVAL, "key with a space");
    is(shmreg_config_doc_set_int(d, long_key, 1), SHMREG_EINVAL, "129-byte key");
    is(shmreg_config_doc_set_int(d, "sdp", 1), SHMREG_EINVAL, "reserved: sdp");
    is(shmreg_config_doc_set_int(d, "media", 1), SHMREG_EINVAL, "reserved: media");
    is(shmreg_config_doc_set_int(d, "media.nope", 1), SHMREG_EINVAL, "unknown media key");
    is(shmreg_config_doc_set_str(d, "media.ptime", S("20")), SHMREG_EINVAL, "media type");
    is(shmreg_config_doc_set_int(d, "media.ptime", 0), SHMREG_EINVAL, "ptime 0");
    is(shmreg_config_doc_set_int(d, "media.rtp_port_max", 65536), SHMREG_EINVAL, "port 65536");
    is(shmreg_config_doc_set_int(d, "sdp.x", 1), SHMREG_EINVAL, "an integer SDP attribute");
    is(shmreg_config_doc_set_list(d, "media.codecs", big_codec, 1), SHMREG_EINVAL,
       "codec with a space");
    is(shmreg_config_doc_set_str(d, "a", (shmreg_str){ "a\0b", 3 }), SHMREG_EINVAL,
       "string with NUL");
    is(shmreg_config_doc_set_str(d, "a", (shmreg_str){ big, SHMREG_CONFIG_MAX_VALUE + 1 }),
       SHMREG_EINVAL, "string over the limit");
    is(shmreg_config_doc_set_str(d, "a", (shmreg_str){ big, SHMREG_CONFIG_MAX_VALUE }), 0,
       "string at the limit");
    is(shmreg_config_doc_add_attr(d, S("x"), S("a\r\nb")), SHMREG_EINVAL,
       "SDP value with CRLF");
    is(shmreg_config_doc_add_attr(d, S("a:b"), S("")), SHMREG_EINVAL, "SDP name with ':'");
    is(shmreg_config_doc_set_int(d, "media.rtp_port_max", 5000), 0, "rtp max 5000");
    is(shmreg_config_doc_set_int(d, "media.rtp_port_min", 6000), SHMREG_EINVAL,
       "rtp min above the max: EINVAL");
    uint64_t g = shmreg_config_gen(h);
    is(shmreg_config_put(h, "bad", d), SHMREG_EINVAL,
       "put with max 5000 under the default min 10000: EINVAL");
    is_str(shmreg_errmsg(), "media.rtp_port_min 10000 (default) exceeds media.rtp_port_max 5000",
           "errmsg says why");
    is(shmreg_config_gen(h), g, "nothing changed");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "bad", &v), SHMREG_ENOENT, "no config stored");
    shmreg_config_doc_unset(d, "media.rtp_port_max");
    is(shmreg_config_put(h, "", d), SHMREG_EINVAL, "empty name");
    is(shmreg_config_put(h, ".hidden", d), SHMREG_EINVAL, "name starting with '.'");
    is(shmreg_config_put(h, "a/b", d), SHMREG_EINVAL, "name with '/'");
    char long_name[80];
    memset(long_name, 'n', sizeof long_name);
    long_name[65] = 0;
    is(shmreg_config_put(h, long_name, d), SHMREG_EINVAL, "65-byte name");
    long_name[64] = 0;
    is(shmreg_config_put(h, long_name, d), 0, "64-byte name");
    is(shmreg_config_put(h, "x", NULL), SHMREG_EINVAL, "NULL doc");
    is(shmreg_config_open_view(h, "x", NULL), SHMREG_EINVAL, "NULL out");
    shmreg_config_doc_free(d);
    free(big);
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void test_files_and_setup(void)
{
    const char *reg = test_dir("config-setup");
    char reg_copy[512], p[600];
    snprintf(reg_copy, sizeof reg_copy, "%s", reg);
    shmreg *h = open_reg(reg_copy);
    is(shmreg_config_setup(h, &(shmreg_config_options){ .map_bytes = 100 }),
       SHMREG_EINVAL, "map below the minimum: EINVAL");
    is(shmreg_config_setup(h, &(shmreg_config_options){ .dir = "rel/dir" }),
       SHMREG_EINVAL, "relative dir: EINVAL");
    is(shmreg_config_setup(h, &(shmreg_config_options){ .map_bytes = 8u << 20 }), 0,
       "setup with an 8 MiB map");
    is(shmreg_config_setup(h, &(shmreg_config_options){ .map_bytes = 8u << 20 }), 0,
       "the same again: 0");
    is(shmreg_config_setup(h, NULL), SHMREG_EEXIST, "other options: EEXIST");
    is_str(shmreg_errmsg(), "configs already set up with map_bytes 8388608 (asked 67108864)",
           "errmsg says what differs");

    struct stat st;
    snprintf(p, sizeof p, "%s/config", reg_copy);
    ok(stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 07777) == 0700,
       "config/ is a 0700 directory");
    snprintf(p, sizeof p, "%s/config/data.mdb", reg_copy);
    ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600, "data.mdb is 0600");
    snprintf(p, sizeof p, "%s/config/lock.mdb", reg_copy);
    ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600, "lock.mdb is 0600");
    snprintf(p, sizeof p, "%s/config.settings", reg_copy);
    ok(stat(p, &st) == 0 && (st.st_mode & 07777) == 0600, "config.settings is 0600");
    char text[256] = "";
    FILE *f = fopen(p, "r");
    if (f) {
        text[fread(text, 1, sizeof text - 1, f)] = 0;
        fclose(f);
    }
    is_str(text, "shmreg-config-settings 1\nmap_bytes 8388608\n", "the settings record");

    /* another process sees the recorded settings */
    shmreg *h2 = open_reg(reg_copy);
    is(shmreg_config_setup(h2, &(shmreg_config_options){ .map_bytes = 16u << 20 }),
       SHMREG_EEXIST, "a second handle sees the record");
    shmreg_close(h2);
    shmreg_close(h);

    /* a registry whose settings file was tampered with */
    const char *reg2 = test_dir("config-badsettings");
    snprintf(reg_copy, sizeof reg_copy, "%s", reg2);
    h = open_reg(reg_copy);
    snprintf(p, sizeof p, "%s/config.settings", reg_copy);
    write_file(p, "shmreg-config-settings 1\nmap_bytes 12\n");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "x", &v), SHMREG_ECORRUPT, "a bad settings file: ECORRUPT");
    unlink(p);
    char other[600];
    snprintf(other, sizeof other, "%s/elsewhere", reg_copy);
    mkdir(other, 0700);
    if (symlink(other, p) == 0)
        is(shmreg_config_open_view(h, "x", &v), SHMREG_EPERM, "a symlinked settings file: EPERM");
    else
        skip(1, "symlink failed");
    shmreg_close(h);
}

/* Configs in a directory outside the (tmpfs) registry survive the registry. */
static void test_persistent_dir(void)
{
    char dir[128], reg[512];
    snprintf(dir, sizeof dir, "/tmp/shmreg-config-test-%d", (int)getpid());
    test_rm_rf(dir);
    snprintf(reg, sizeof reg, "%s", test_dir("config-disk"));
    shmreg *h = open_reg(reg);
    shmreg_config_options o = { .dir = dir };
    is(shmreg_config_setup(h, &o), 0, "setup in %s", dir);
    is(shmreg_config_set(h, "keep", "app.v", "\"kept\""), 0, "write a config there");
    is(shmreg_config_set(h, "keep", "app.w", "2"), 0, "and again");
    is(shmreg_config_gen(h), 2, "generation 2");
    shmreg_close(h);
    test_rm_rf(reg);   /* "reboot": the tmpfs registry is gone */

    snprintf(reg, sizeof reg, "%s", test_dir("config-disk2"));
    h = open_reg(reg);
    is(shmreg_config_gen(h), 0, "the new registry starts at generation 0");
    is(shmreg_config_setup(h, &o), 0, "setup with the same dir");
    is(shmreg_config_gen(h), 2, "the generation is caught up from LMDB");
    shmreg_config_view *v;
    shmreg_str s;
    ok(shmreg_config_open_view(h, "keep", &v) == 0 &&
       shmreg_config_get_str(v, "app.v", &s) == 0 && str_is(s, "kept"),
       "the config survived");
    shmreg_config_release(v);
    shmreg_close(h);
    test_rm_rf(dir);
}

/* A map that fills up: EFULL with nothing half-written. */
static void test_map_full(void)
{
    char reg[512];
    snprintf(reg, sizeof reg, "%s", test_dir("config-full"));
    shmreg *h = open_reg(reg);
    is(shmreg_config_setup(h, &(shmreg_config_options){ .map_bytes = SHMREG_CONFIG_MAP_MIN }),
       0, "setup with a 1 MiB map");
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    char *blob = malloc(4000);
    memset(blob, 'z', 4000);
    char key[32];
    for (int i = 0; i < 75; i++) {   /* ~300 KiB */
        snprintf(key, sizeof key, "big.k%d", i);
        shmreg_config_doc_set_str(d, key, (shmreg_str){ blob, 4000 });
    }
    int stored = 0, rc = 0;
    char name[16];
    for (int i = 0; i < 10 && rc == 0; i++) {
        snprintf(name, sizeof name, "c%d", i);
        if ((rc = shmreg_config_put(h, name, d)) == 0)
            stored++;
    }
    is(rc, SHMREG_EFULL, "the map fills up: EFULL");
    ok(stored >= 1 && stored <= 3, "%d configs fit first", stored);
    is(shmreg_config_gen(h), (uint64_t)stored, "one generation per stored config");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, name, &v), SHMREG_ENOENT, "the failed one is absent");
    int good = 1;
    for (int i = 0; i < stored; i++) {
        snprintf(name, sizeof name, "c%d", i);
        shmreg_str s;
        good &= shmreg_config_open_view(h, name, &v) == 0 &&
                shmreg_config_get_str(v, "big.k74", &s) == 0 && s.len == 4000;
        shmreg_config_release(v);
    }
    ok(good, "the stored ones are intact");
    /* LMDB reuses a page two commits after it was freed (it keeps the
     * previous version too), so free all of them first. */
    good = 1;
    for (int i = 0; i < stored; i++) {
        snprintf(name, sizeof name, "c%d", i);
        good &= shmreg_config_delete(h, name) == 0;
    }
    ok(good, "delete them");
    is(shmreg_config_put(h, "again", d), 0, "their room is reused");
    shmreg_config_doc_free(d);
    free(blob);
    shmreg_close(h);
}

/* Records written behind the library's back: every check must hold. */
struct corrupt_arg {
    const char *dir;
};

static void put_raw(MDB_txn *txn, MDB_dbi dbi, const char *name, const void *p, size_t n)
{
    MDB_val k = { strlen(name), (void *)name }, d = { n, (void *)p };
    if (mdb_put(txn, dbi, &k, &d, 0))
        _exit(3);
}

static void corrupt_writer(void *argp)
{
    const struct corrupt_arg *a = argp;
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    if (mdb_env_create(&env) || mdb_env_set_maxdbs(env, 2) ||
        mdb_env_set_mapsize(env, SHMREG_CONFIG_MAP_DEFAULT) ||
        mdb_env_set_maxreaders(env, 1000) || mdb_env_open(env, a->dir, MDB_NOTLS, 0600) ||
        mdb_txn_begin(env, NULL, 0, &txn) || mdb_dbi_open(txn, "configs", 0, &dbi))
        _exit(2);
    unsigned char rec[128];
    memset(rec, 0, sizeof rec);
    uint32_t magic = 0x31435253u, total, cnt;
    uint16_t ver = 1, hdr = 40;
    uint32_t vlen;
    /* a good header + one INT entry "k" = 5, then variants of it */
#define HDR(tot, n) (total = (tot), cnt = (n), memcpy(rec, &magic, 4), memcpy(rec + 4, &ver, 2), \
                     memcpy(rec + 6, &hdr, 2), memcpy(rec + 8, &total, 4), memcpy(rec + 12, &cnt, 4))
    HDR(40 + 8 + 2 + 8, 1);
    rec[40] = 2;   /* INT */
    rec[41] = 1;
    vlen = 8;
    memcpy(rec + 44, &vlen, 4);
    rec[48] = 'k';
    rec[49] = 0;
    rec[50] = 5;
    put_raw(txn, dbi, "good", rec, 58);
    put_raw(txn, dbi, "short", rec, 20);
    rec[0] ^= 1;
    put_raw(txn, dbi, "magic", rec, 58);
    rec[0] ^= 1;
    ver = 2;
    HDR(58, 1);
    put_raw(txn, dbi, "version", rec, 58);
    ver = 1;
    HDR(58, 2);
    put_raw(txn, dbi, "count", rec, 58);
    HDR(59, 1);
    put_raw(txn, dbi, "total", rec, 58);
    HDR(58, 1);
    vlen = 9;
    memcpy(rec + 44, &vlen, 4);
    put_raw(txn, dbi, "overrun", rec, 58);
    vlen = 8;
    memcpy(rec + 44, &vlen, 4);
    rec[49] = 'x';
    put_raw(txn, dbi, "keynul", rec, 58);
    rec[49] = 0;
    rec[40] = 9;
    put_raw(txn, dbi, "type", rec, 58);
    /* a LIST "media.codecs" whose item points outside its strings */
    memset(rec, 0, sizeof rec);
    HDR(40 + 8 + 13 + 8 + 4 + 8, 1);
    rec[40] = 4;
    rec[41] = 12;
    vlen = 8 + 4 + 8;
    memcpy(rec + 44, &vlen, 4);
    memcpy(rec + 48, "media.codecs", 13);
    uint32_t one = 1, s = 4, off = 2, len = 5;
    memcpy(rec + 61, &one, 4);
    memcpy(rec + 65, &s, 4);
    memcpy(rec + 69, "abc", 4);
    memcpy(rec + 73, &off, 4);
    memcpy(rec + 77, &len, 4);
    put_raw(txn, dbi, "listoob", rec, 81);
    off = 0;
    len = 2;   /* "ab", but no NUL after it */
    memcpy(rec + 73, &off, 4);
    memcpy(rec + 77, &len, 4);
    put_raw(txn, dbi, "listnul", rec, 81);
    off = 0;
    len = 3;
    memcpy(rec + 73, &off, 4);
    memcpy(rec + 77, &len, 4);
    put_raw(txn, dbi, "listok", rec, 81);
    /* the same list under media.ptime: wrong type for a media key */
    memcpy(rec + 48, "media.ptime\0", 12);
    rec[41] = 11;
    memmove(rec + 60, rec + 61, 20);
    HDR(80, 1);
    put_raw(txn, dbi, "mediatype", rec, 80);
    if (mdb_txn_commit(txn))
        _exit(4);
    mdb_env_close(env);
}

static void test_corrupt_records(void)
{
    char reg[512], dir[600];
    snprintf(reg, sizeof reg, "%s", test_dir("config-corrupt"));
    shmreg *h = open_reg(reg);
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "good", &v), SHMREG_ENOENT, "env opened, empty");
    snprintf(dir, sizeof dir, "%s/config", reg);
    struct corrupt_arg a = { dir };
    is(test_wait(test_fork(corrupt_writer, &a)), 0, "a raw LMDB writer stored test records");
    int64_t n = 0;
    ok(shmreg_config_open_view(h, "good", &v) == 0 && shmreg_config_get_int(v, "k", &n) == 0 &&
       n == 5, "the well-formed record reads back");
    shmreg_config_release(v);
    shmreg_str s;
    ok(shmreg_config_open_view(h, "listok", &v) == 0 && shmreg_config_codec(v, 0, &s) == 0 &&
       str_is(s, "abc"), "the well-formed list reads back");
    shmreg_config_release(v);
    const char *bad[] = { "short", "magic", "count", "total", "overrun", "keynul",
                          "type", "listoob", "listnul", "mediatype" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = NULL;
        is(shmreg_config_open_view(h, bad[i], &v), SHMREG_ECORRUPT, "record '%s': ECORRUPT",
           bad[i]);
    }
    is(shmreg_config_open_view(h, "version", &v), SHMREG_EVERSION, "another version: EVERSION");
    is(shmreg_config_set(h, "overrun", "a", "1"), SHMREG_ECORRUPT,
       "an edit of a corrupt record: ECORRUPT");
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    is(shmreg_config_put(h, "overrun", d), 0, "a whole put replaces it");
    shmreg_config_doc_free(d);
    shmreg_close(h);
}

struct fork_arg {
    shmreg *h;
    shmreg_config_view *v;
    const char *reg;
};

static void child_uses_parent(void *argp)
{
    struct fork_arg *a = argp;
    shmreg_config_view *v;
    ok(shmreg_config_open_view(a->h, "media", &v) == SHMREG_EFORK, "child: parent's handle");
    ok(shmreg_config_release(a->v) == SHMREG_EFORK, "child: parent's view");
    ok(shmreg_config_set(a->h, "media", "x", "1") == SHMREG_EFORK, "child: write");
    shmreg *own = NULL;
    ok(shmreg_open(a->reg, NULL, &own) == 0, "child: own handle");
    shmreg_config_media m;
    ok(own && shmreg_config_open_view(own, "media", &v) == 0 &&
       shmreg_config_media_get(v, &m) == 0 && m.ptime_ms == 40, "child: reads in place");
    ok(own && shmreg_config_set(own, "child", "app.pid", "1") == 0, "child: writes");
    shmreg_close(own);
    shmreg_close(a->h);   /* the inherited handle: must not touch LMDB */
}

static void test_fork_rules(shmreg *h, const char *reg)
{
    struct fork_arg a = { h, NULL, reg };
    is(shmreg_config_open_view(h, "media", &a.v), 0, "parent holds a view");
    uint64_t g = shmreg_config_gen(h);
    is(test_wait(test_fork(child_uses_parent, &a)), 0, "child: EFORK on inherited, own works");
    is(shmreg_config_gen(h), g + 1, "the child's write bumped the shared generation");
    shmreg_config_media m;
    ok(shmreg_config_media_get(a.v, &m) == 0 && m.ptime_ms == 40 &&
       shmreg_config_stale(a.v) == 1, "the parent's view survived the child");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "child", &v), 0, "the parent sees the child's config");
    shmreg_config_release(v);
    is(shmreg_config_release(a.v), 0, "release");
}

/* Every committed write is announced on the event ring. */
static void test_events(void)
{
    char reg[512];
    snprintf(reg, sizeof reg, "%s", test_dir("config-events"));
    shmreg *h = open_reg(reg);
    shmreg_sub *sub;
    shmreg_event ev[8];
    if (shmreg_subscribe(h, SHMREG_EV_MASK(SHMREG_EV_CONFIG_CHANGED), NULL, &sub))
        bail_out("subscribe: %s", shmreg_errmsg());
    is(shmreg_config_set(h, "a", "x", "1"), 0, "write 1");
    is(shmreg_config_set(h, "a", "x", "bad"), SHMREG_EPARSE, "a failed write");
    is(shmreg_config_delete(h, "a"), 0, "write 2");
    is(shmreg_config_delete(h, "a"), SHMREG_ENOENT, "a delete of nothing");
    int n = shmreg_poll(sub, ev, 8, 0, NULL);
    is(n, 2, "two events: one per committed write");
    ok(n == 2 && ev[0].type == SHMREG_EV_CONFIG_CHANGED && ev[0].config_gen == 1 &&
       ev[1].config_gen == 2, "CONFIG_CHANGED with generations 1 and 2");
    shmreg_unsubscribe(sub);
    shmreg_close(h);
}

int main(void)
{
    char reg[512];
    snprintf(reg, sizeof reg, "%s", test_dir("config"));
    shmreg *h = open_reg(reg);
    test_views(h);
    test_invalid(h);
    test_fork_rules(h, reg);
    shmreg_close(h);
    test_files_and_setup();
    test_persistent_dir();
    test_map_full();
    test_corrupt_records();
    test_events();
    return done_testing();
}
