/*
 * coverage_config.c — every refusal of the configuration calls: NULL
 * arguments, bad names and keys, wrong types, released views, cursors and
 * indexes past the end. Each gets its documented error code and leaves the
 * stored configs as they were (same generation, same dump).
 *
 * Why a sweep of its own: t/config*.c prove what works; `make coverage`
 * showed that these refusals, most of the unrun lines of registry/config_*.c,
 * were run by no test.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){lit, sizeof lit - 1})

static shmreg *h;

static int sink(void *arg, const char *buf, size_t len)
{
    size_t *n = arg;
    (void)buf;
    *n += len;
    return 0;
}

static int count_cb(void *arg, shmreg_str name, uint64_t gen)
{
    (void)name;
    (void)gen;
    ++*(int *)arg;
    return 0;
}

static void t_doc(void)
{
    shmreg_config_doc *d;
    shmreg_config_value v;
    shmreg_str k;
    uint32_t cur = 0;
    is(shmreg_config_doc_new(NULL), SHMREG_EINVAL, "doc_new NULL: EINVAL");
    shmreg_config_doc_free(NULL);
    is(shmreg_config_doc_new(&d), 0, "doc_new");
    is(shmreg_config_doc_set_str(NULL, "a", S("x")), SHMREG_EINVAL, "set_str on NULL doc: EINVAL");
    is(shmreg_config_doc_set_int(NULL, "a", 1), SHMREG_EINVAL, "set_int on NULL doc: EINVAL");
    is(shmreg_config_doc_set_bool(NULL, "a", 1), SHMREG_EINVAL, "set_bool on NULL doc: EINVAL");
    is(shmreg_config_doc_set_list(NULL, "a", NULL, 0), SHMREG_EINVAL, "set_list on NULL doc: EINVAL");
    is(shmreg_config_doc_set_list(d, "a", NULL, 2), SHMREG_EINVAL, "set_list NULL items: EINVAL");
    shmreg_str items[2] = {S("x"), {NULL, 3}};
    is(shmreg_config_doc_set_list(d, "a", items, 2), SHMREG_EINVAL, "set_list with a NULL item: EINVAL");
    is(shmreg_config_doc_add_attr(NULL, S("n"), S("v")), SHMREG_EINVAL, "add_attr on NULL doc: EINVAL");
    is(shmreg_config_doc_add_attr(d, S(""), S("v")), SHMREG_EINVAL, "add_attr with an empty name: EINVAL");
    is(shmreg_config_doc_set_text(NULL, "a", "1", 1), SHMREG_EINVAL, "set_text on NULL doc: EINVAL");
    is(shmreg_config_doc_unset(NULL, "a"), SHMREG_EINVAL, "unset on NULL doc: EINVAL");
    is(shmreg_config_doc_unset(d, "absent"), SHMREG_ENOENT, "unset an absent key: ENOENT");
    is(shmreg_config_doc_get(NULL, "a", &v), SHMREG_EINVAL, "doc_get NULL doc: EINVAL");
    is(shmreg_config_doc_get(d, "absent", &v), SHMREG_ENOENT, "doc_get an absent key: ENOENT");
    is(shmreg_config_doc_next(NULL, &cur, &k, &v), SHMREG_EINVAL, "doc_next NULL doc: EINVAL");
    is(shmreg_config_doc_next(d, &cur, &k, &v), SHMREG_ENOENT, "doc_next of an empty doc: ENOENT");
    is(shmreg_config_doc_set_str(d, NULL, S("x")), SHMREG_EINVAL, "a NULL key: EINVAL");
    is(shmreg_config_doc_set_str(d, "bad key", S("x")), SHMREG_EINVAL, "a key with a space: EINVAL");
    is(shmreg_config_doc_set_str(d, "a.b.c", S("x")), SHMREG_EINVAL, "a key with two dots: EINVAL");
    is(shmreg_config_doc_set_str(d, "s", (shmreg_str){NULL, 2}), SHMREG_EINVAL, "a NULL string with a length: EINVAL");
    size_t n = 0;
    is(shmreg_config_doc_dump(NULL, sink, &n), SHMREG_EINVAL, "doc_dump NULL: EINVAL");
    is(shmreg_config_doc_dump(d, NULL, &n), SHMREG_EINVAL, "doc_dump NULL fn: EINVAL");
    is(shmreg_config_parse(NULL, 3, &d), SHMREG_EINVAL, "parse NULL text: EINVAL");
    is(shmreg_config_parse("a = 1", 5, NULL), SHMREG_EINVAL, "parse NULL out: EINVAL");

    /* Values and their accessors, by type. */
    is(shmreg_config_doc_set_int(d, "i", -5), 0, "set i = -5");
    is(shmreg_config_doc_set_bool(d, "b", 1), 0, "set b = true");
    shmreg_str codecs[2] = {S("PCMU/8000"), S("opus/48000/2")};
    is(shmreg_config_doc_set_list(d, "media.codecs", codecs, 2), 0, "set media.codecs");
    is(shmreg_config_doc_add_attr(d, S("ptime"), S("20")), 0, "add SDP attribute ptime:20");
    is(shmreg_config_doc_get(d, "i", &v), 0, "get i");
    shmreg_str s;
    is(shmreg_config_item(&v, 0, &s), SHMREG_EINVAL, "item of an int: EINVAL");
    is(shmreg_config_pair(&v, 0, &s, &s), SHMREG_EINVAL, "pair of an int: EINVAL");
    is(shmreg_config_item(NULL, 0, &s), SHMREG_EINVAL, "item of NULL: EINVAL");
    is(shmreg_config_doc_get(d, "media.codecs", &v), 0, "get media.codecs");
    is(shmreg_config_item(&v, 2, &s), SHMREG_ENOENT, "item 2 of 2: ENOENT");
    ok(shmreg_config_item(&v, 1, &s) == 0 && s.len == 12, "item 1 is opus/48000/2");
    is(shmreg_config_doc_get(d, "sdp", &v), 0, "get sdp");
    shmreg_str nm, val;
    is(shmreg_config_pair(&v, 1, &nm, &val), SHMREG_ENOENT, "pair 1 of 1: ENOENT");
    ok(shmreg_config_pair(&v, 0, &nm, &val) == 0 && nm.len == 5 && val.len == 2, "pair 0 is ptime 20");
    int keys = 0;
    for (cur = 0; shmreg_config_doc_next(d, &cur, &k, &v) == 0;)
        keys++;
    is(keys, 4, "doc_next lists 4 keys");
    is(shmreg_config_doc_unset(d, "b"), 0, "unset b");
    n = 0;
    is(shmreg_config_doc_dump(d, sink, &n), 0, "doc_dump");
    ok(n > 0, "writes %zu bytes", n);
    is(shmreg_config_put(h, "cov", d), 0, "put the doc as 'cov'");
    shmreg_config_doc_free(d);
}

/* Malformed text: each is EPARSE, and no document comes back. */
static void t_parse(void)
{
    static char longsec[200], longkey[200], manyitems[8200], bigitem[5000];
    snprintf(longsec, sizeof longsec, "[%0150d]\n", 0);
    snprintf(longkey, sizeof longkey, "k%0140d = 1\n", 0);
    int n = snprintf(manyitems, sizeof manyitems, "l = [");
    for (int i = 0; i < 1025; i++)
        n += snprintf(manyitems + n, sizeof manyitems - (size_t)n, "%s\"x\"", i ? "," : "");
    snprintf(manyitems + n, sizeof manyitems - (size_t)n, "]\n");
    n = snprintf(bigitem, sizeof bigitem, "s = \"");
    memset(bigitem + n, 'x', 4100);
    snprintf(bigitem + n + 4100, sizeof bigitem - (size_t)n - 4100, "\"\n");
    const char *bad[] = {
        "a = -x\n",                    /* '-' without digits */
        "l = [\"a\", \"b\"\n",           /* list not closed on its line */
        manyitems,                     /* over 1024 items */
        "# a comment with a \r inside\n",
        longsec,                       /* section name too long */
        longkey,                       /* key too long */
        "a = 1 2\n",                   /* unexpected token */
        "[sect\n",                     /* no ']' */
        "[]\n",                        /* no section name */
        "[s] x\n",                     /* text after the header */
        bigitem,                       /* a string over 4096 bytes */
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmreg_config_doc *d = (shmreg_config_doc *)1;
        is(shmreg_config_parse(bad[i], strlen(bad[i]), &d), SHMREG_EPARSE, "malformed text %u: EPARSE", i);
        ok(d == (shmreg_config_doc *)1, "and *out unchanged (%s)", shmreg_errmsg());
    }
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    static shmreg_str items[SHMREG_CONFIG_MAX_ITEMS + 1];
    for (unsigned i = 0; i <= SHMREG_CONFIG_MAX_ITEMS; i++)
        items[i] = (shmreg_str){"x", 1};
    is(shmreg_config_doc_set_list(d, "l", items, SHMREG_CONFIG_MAX_ITEMS + 1), SHMREG_EINVAL,
       "a list of %u items: EINVAL", SHMREG_CONFIG_MAX_ITEMS + 1);
    is(shmreg_config_doc_add_attr(d, (shmreg_str){"a", 1}, (shmreg_str){"1", 1}), 0, "an SDP attribute a:1");
    is(shmreg_config_doc_unset(d, "sdp.b"), SHMREG_ENOENT, "unset an absent SDP attribute: ENOENT");
    is(shmreg_config_doc_unset(d, "sdp.a"), 0, "unset sdp.a");
    shmreg_config_value v;
    is(shmreg_config_doc_get(d, "sdp", &v), SHMREG_ENOENT, "the last attribute gone, so is the sdp entry");
    shmreg_config_doc_free(d);
}

static void t_store(void)
{
    uint64_t gen0 = shmreg_config_gen(h);
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    is(shmreg_config_put(h, NULL, d), SHMREG_EINVAL, "put a NULL name: EINVAL");
    is(shmreg_config_put(h, ".hidden", d), SHMREG_EINVAL, "put a name starting with '.': EINVAL");
    is(shmreg_config_put(h, "bad/name", d), SHMREG_EINVAL, "put a name with '/': EINVAL");
    is(shmreg_config_put(h, "cov2", NULL), SHMREG_EINVAL, "put a NULL doc: EINVAL");
    shmreg_config_doc_free(d);
    is(shmreg_config_set(h, "cov", NULL, "1"), SHMREG_EINVAL, "set a NULL key: EINVAL");
    is(shmreg_config_set(h, "cov", "k", NULL), SHMREG_EINVAL, "set a NULL value: EINVAL");
    is(shmreg_config_set(h, "cov", "k", "\"unterminated"), SHMREG_EPARSE, "set an unparsable value: EPARSE");
    is(shmreg_config_unset(h, "cov", "absent"), SHMREG_ENOENT, "unset an absent key: ENOENT");
    is(shmreg_config_unset(h, "cov", NULL), SHMREG_EINVAL, "unset a NULL key: EINVAL");
    /* Over SHMREG_CONFIG_MAX_BYTES once encoded: 300 strings of 4,000. */
    static char val[4000];
    memset(val, 'x', sizeof val);
    shmreg_config_doc *huge;
    shmreg_config_doc_new(&huge);
    for (int i = 0; i < 300; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        shmreg_config_doc_set_str(huge, key, (shmreg_str){val, sizeof val});
    }
    is(shmreg_config_put(h, "huge", huge), SHMREG_EINVAL, "a config over 1 MiB encoded: EINVAL");
    shmreg_config_doc_free(huge);
    is(shmreg_config_unset(h, "nosuch", "k"), SHMREG_ENOENT, "unset in an absent config: ENOENT");
    is(shmreg_config_delete(h, "nosuch"), SHMREG_ENOENT, "delete an absent config: ENOENT");
    is(shmreg_config_delete(h, NULL), SHMREG_EINVAL, "delete a NULL name: EINVAL");
    is(shmreg_config_list(h, NULL, NULL), SHMREG_EINVAL, "list with a NULL callback: EINVAL");
    is(shmreg_config_load_text(h, "cov", NULL, 3), SHMREG_EINVAL, "load_text NULL text: EINVAL");
    is(shmreg_config_load_text(h, "cov", "= nothing", 9), SHMREG_EPARSE, "load_text of bad text: EPARSE");
    size_t n = 0;
    is(shmreg_config_dump(h, "nosuch", sink, &n), SHMREG_ENOENT, "dump an absent config: ENOENT");
    is(shmreg_config_dump(h, "cov", NULL, &n), SHMREG_EINVAL, "dump with a NULL fn: EINVAL");
    is(shmreg_config_gen(h), gen0, "none of these wrote: the generation is unchanged");
    int names = 0;
    is(shmreg_config_list(h, count_cb, &names), 0, "list");
    is(names, 1, "one config is stored");
    is(shmreg_config_setup(h, &(shmreg_config_options){.map_bytes = 1u << 30}), SHMREG_EEXIST,
       "setup with other options once open: EEXIST");
}

static void t_view(void)
{
    shmreg_config_view *v = NULL;
    shmreg_config_value val;
    shmreg_str s, k;
    int64_t i;
    int b;
    uint32_t cur = 0;
    is(shmreg_config_open_view(h, "cov", NULL), SHMREG_EINVAL, "open_view NULL out: EINVAL");
    is(shmreg_config_open_view(h, "nosuch", &v), SHMREG_ENOENT, "open_view of an absent config: ENOENT");
    int yes = -1;
    is(shmreg_config_refresh(h, "cov", NULL, &yes), SHMREG_EINVAL, "refresh NULL: EINVAL");
    is(yes, 0, "and says nothing was refreshed");
    ok(shmreg_config_refresh(h, "cov", &v, &yes) == 0 && yes == 1, "refresh opens a view");
    ok(shmreg_config_refresh(h, "cov", &v, &yes) == 0 && yes == 0,
       "a fresh view refreshes to itself");
    is(shmreg_config_get(v, NULL, &val), SHMREG_EINVAL, "get a NULL key: EINVAL");
    is(shmreg_config_get(v, "absent", &val), SHMREG_ENOENT, "get an absent key: ENOENT");
    is(shmreg_config_get_str(v, "i", &s), SHMREG_EINVAL, "an int as a string: EINVAL");
    is(shmreg_config_get_bool(v, "i", &b), SHMREG_EINVAL, "an int as a bool: EINVAL");
    is(shmreg_config_get_int(v, "i", NULL), SHMREG_EINVAL, "get_int NULL out: EINVAL");
    is(shmreg_config_get_str(v, "i", NULL), SHMREG_EINVAL, "get_str NULL out: EINVAL");
    is(shmreg_config_get_bool(v, "i", NULL), SHMREG_EINVAL, "get_bool NULL out: EINVAL");
    ok(shmreg_config_get_int(v, "i", &i) == 0 && i == -5, "i is -5");
    is(shmreg_config_view_info(v, NULL), SHMREG_EINVAL, "view_info NULL out: EINVAL");
    is(shmreg_config_media_get(v, NULL), SHMREG_EINVAL, "media_get NULL out: EINVAL");
    is(shmreg_config_codec(v, 0, NULL), SHMREG_EINVAL, "codec NULL out: EINVAL");
    is(shmreg_config_codec(v, 2, &s), SHMREG_ENOENT, "codec 2 of 2: ENOENT");
    is(shmreg_config_attr(v, 0, NULL, &s), SHMREG_EINVAL, "attr NULL name: EINVAL");
    is(shmreg_config_attr(v, 1, &k, &s), SHMREG_ENOENT, "attr 1 of 1: ENOENT");
    is(shmreg_config_next(v, NULL, &k, &val), SHMREG_EINVAL, "next NULL cursor: EINVAL");
    cur = 3;
    is(shmreg_config_next(v, &cur, &k, &val), SHMREG_ECORRUPT, "a cursor inside the header: ECORRUPT");
    cur = UINT32_MAX;
    is(shmreg_config_next(v, &cur, &k, &val), SHMREG_ENOENT, "a cursor past the end: ENOENT");
    size_t n = 0;
    is(shmreg_config_view_dump(v, NULL, &n), SHMREG_EINVAL, "view_dump NULL fn: EINVAL");
    is(shmreg_config_view_dump(NULL, sink, &n), SHMREG_EINVAL, "view_dump NULL view: EINVAL");
    is(shmreg_config_stale(v), 0, "the view is current");
    is(shmreg_config_set(h, "cov", "i", "7"), 0, "a writer changes i");
    is(shmreg_config_stale(v), 1, "the view is stale");
    ok(shmreg_config_changed(h, 0, &yes) == 0 && yes == 1, "changed since generation 0");
    ok(shmreg_config_refresh(h, "cov", &v, &yes) == 0 && yes == 1, "refresh swaps in a new view");
    ok(shmreg_config_get_int(v, "i", &i) == 0 && i == 7, "which says 7");
    shmreg_config_view *more[SHMREG_CONFIG_MAX_VIEWS];
    int opened = 0;
    while (opened < (int)SHMREG_CONFIG_MAX_VIEWS && shmreg_config_open_view(h, "cov", &more[opened]) == 0)
        opened++;
    is(opened, SHMREG_CONFIG_MAX_VIEWS - 1, "%u views at once per handle (one is open already)",
       SHMREG_CONFIG_MAX_VIEWS);
    shmreg_config_view *extra;
    is(shmreg_config_open_view(h, "cov", &extra), SHMREG_EFULL, "one more: EFULL");
    for (int k = 0; k < opened; k++)
        shmreg_config_release(more[k]);
    is(shmreg_config_release(v), 0, "release");
    is(shmreg_config_release(NULL), 0, "release NULL: 0");
    is(shmreg_config_stale(NULL), 1, "a NULL view is stale");
    is(shmreg_config_get_int(v, "i", &i), SHMREG_EINVAL, "a released view: EINVAL");
    is(shmreg_config_codec(NULL, 0, &s), SHMREG_EINVAL, "codec of NULL: EINVAL");
    is(shmreg_config_delete(h, "cov"), 0, "delete 'cov'");
    is(shmreg_config_open_view(h, "cov", &v), SHMREG_ENOENT, "it is gone");
}

int main(void)
{
    const char *p = test_dir("coverage-config");
    if (shmreg_open(p, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 16}, &h))
        bail_out("open: %s", shmreg_errmsg());
    is(shmreg_config_setup(NULL, NULL), SHMREG_EINVAL, "setup NULL handle: EINVAL");
    t_doc();
    t_parse();
    t_store();
    t_view();
    shmreg_close(h);
    shmreg_destroy(p, 1);
    return done_testing();
}
