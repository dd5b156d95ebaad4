/*
 * config_text.c — the config text format: canonical dumps, exact round
 * trips (also of random documents), and strict parsing whose errors name
 * line and column and change nothing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

struct buf {
    char *p;
    size_t n, cap;
};

static int buf_write(void *arg, const char *s, size_t len)
{
    struct buf *b = arg;
    if (b->n + len + 1 > b->cap) {
        b->cap = (b->n + len + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            return -1;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = 0;
    return 0;
}

/* Canonical text of a document, malloc'ed (never NULL). */
static char *doc_text(const shmreg_config_doc *d)
{
    struct buf b = { calloc(1, 1), 0, 1 };
    if (shmreg_config_doc_dump(d, buf_write, &b))
        bail_out("doc dump: %s", shmreg_errmsg());
    return b.p;
}

static char *parse_dump(const char *text, int *rc)
{
    shmreg_config_doc *d = NULL;
    *rc = shmreg_config_parse(text, strlen(text), &d);
    if (*rc)
        return NULL;
    char *t = doc_text(d);
    shmreg_config_doc_free(d);
    return t;
}

static const char canonical[] =
    "site = \"lab-1\"\n"
    "workers = 8\n"
    "\n"
    "[media]\n"
    "codecs = [\"opus\", \"PCMU\", \"PCMA\", \"telephone-event/8000\"]\n"
    "rtp_port_min = 16384\n"
    "rtp_port_max = 32767\n"
    "ptime = 20\n"
    "max_bandwidth = 256\n"
    "moh_path = \"/var/lib/moh/hold.wav\"\n"
    "dtmf = true\n"
    "echo_cancellation = true\n"
    "noise_suppression = false\n"
    "agc = false\n"
    "quality_monitoring = true\n"
    "\n"
    "[sdp]\n"
    "rtcp-mux = \"\"\n"
    "fmtp = \"101 0-16\"\n"
    "fmtp = \"0 mode=30\"\n"
    "\n"
    "[app]\n"
    "greeting = \"say \\\"hi\\\"\\n\\tand\\\\bye\\x01\\x7f\"\n"
    "offset = -9223372036854775808\n"
    "max = 9223372036854775807\n"
    "trunks = []\n"
    "utf8 = \"caf\xc3\xa9\"\n";

static void test_canonical(void)
{
    int rc;
    char *t = parse_dump(canonical, &rc);
    is(rc, 0, "canonical text parses");
    is_str(t, canonical, "and dumps back byte for byte");
    free(t);

    shmreg_config_doc *d;
    shmreg_config_value v;
    shmreg_config_parse(canonical, strlen(canonical), &d);
    ok(shmreg_config_doc_get(d, "app.greeting", &v) == 0 &&
       v.str.len == strlen("say \"hi\"\n\tand\\bye\x01\x7f") &&
       !memcmp(v.str.ptr, "say \"hi\"\n\tand\\bye\x01\x7f", v.str.len),
       "escapes decode to the bytes");
    ok(shmreg_config_doc_get(d, "app.offset", &v) == 0 && v.num == INT64_MIN, "INT64_MIN");
    ok(shmreg_config_doc_get(d, "app.trunks", &v) == 0 && v.type == SHMREG_CONFIG_LIST &&
       v.count == 0, "empty list");
    shmreg_config_doc_free(d);

    const char loose[] =
        "# a comment\n"
        "\n"
        "   site\t=   \"lab-1\"   \n"
        "[app]\n"
        "  # indented comment\n"
        "list = [ \"a\" ,\"b\",  \"c\" ]\n"
        "[sdp]\n"
        "ice-lite=\"\"\n"
        "[media]\n"
        "ptime=20";
    const char loose_dump[] =
        "site = \"lab-1\"\n"
        "\n"
        "[app]\n"
        "list = [\"a\", \"b\", \"c\"]\n"
        "\n"
        "[sdp]\n"
        "ice-lite = \"\"\n"
        "\n"
        "[media]\n"
        "ptime = 20\n";
    t = parse_dump(loose, &rc);
    is(rc, 0, "loose but valid text parses");
    is_str(t, loose_dump, "its dump is canonical, order kept");
    char *t2 = parse_dump(t, &rc);
    is_str(t2, t, "and the dump round-trips");
    free(t);
    free(t2);

    t = parse_dump("", &rc);
    ok(rc == 0 && t && !strcmp(t, ""), "empty text: empty document, empty dump");
    free(t);
    t = parse_dump("# only\n\n   \n", &rc);
    ok(rc == 0 && t && !strcmp(t, ""), "comments only: empty");
    free(t);
}

/* ---------------------------------------------------------------- errors */

static const struct bad {
    const char *text;
    const char *err;   /* exact errmsg, or a prefix ending in '*' */
} bad[] = {
    { "a = 1\nb 2\n", "line 2, column 3: expected '=' after the key, found '2'" },
    { "= 1\n", "line 1, column 1: expected a key ([A-Za-z0-9_-]), a [section] or a # comment, found '='" },
    { "a =\n", "line 1, column 4: expected a value after '=', found end of line" },
    { "a = \"x\n", "line 1, column 5: string not closed on this line" },
    { "a = \"\\q\"\n", "line 1, column 6: unknown escape: use \\\" \\\\ \\n \\t \\r or \\xHH" },
    { "a = \"\\x4\"\n", "line 1, column 6: \\x needs two hex digits" },
    { "a = \"\\x00\"\n", "line 1, column 6: NUL bytes are not allowed in strings" },
    { "a = \"a\tb\"\n", "line 1, column 7: byte 0x09 in a string: write it as an escape" },
    { "a = 01\n", "line 1, column 5: integers are written without leading zeros" },
    { "a = -0\n", "line 1, column 5: write 0, not -0" },
    { "a = +1\n", "line 1, column 5: expected a value (\"string\", integer, true, false or [list]), found '+'" },
    { "a = 9223372036854775808\n", "line 1, column 5: integer out of range" },
    { "a = 20ms\n", "line 1, column 7: unexpected 'm' in an integer (strings must be quoted)" },
    { "a = yes\n", "line 1, column 5: 'yes' is not a value: strings must be quoted, booleans are true or false" },
    { "a = [\"x\",]\n", "line 1, column 10: expected a quoted string in the list, found ']'" },
    { "a = [\"x\"\n", "line 1, column 5: list not closed on this line" },
    { "a = [\"x\" \"y\"]\n", "line 1, column 10: expected ',' or ']' in the list, found '\"'" },
    { "a = [1]\n", "line 1, column 6: expected a quoted string in the list, found '1'" },
    { "a = 1 # no\n", "line 1, column 7: unexpected '#' after the value (comments go on their own line)" },
    { "a = 1\r\n", "line 1, column 6: unexpected a carriage return (lines end with LF only) after the value (comments go on their own line)" },
    { "a = 1\na = 2\n", "line 2, column 1: key a appears twice" },
    { "[media]\nptime = 20\n[media]\ndtmf = true\n", "line 3, column 1: section [media] appears twice" },
    { "[empty]\n[b]\nx = 1\n", "line 1, column 1: section [empty] has no keys" },
    { "x = 1\n[last]\n", "line 2, column 1: section [last] has no keys" },
    { "[a.b]\n", "line 1, column 3: expected ']' after the section name, found '.'" },
    { "[]\n", "line 1, column 2: expected a section name ([A-Za-z0-9_-]), found ']'" },
    { "[x] y\n", "line 1, column 5: unexpected 'y' after the section header" },
    { "[media]\nptime = 0\n", "line 2, column 9: media.ptime must be 1..1000, not 0" },
    { "[media]\nptime = \"20\"\n", "line 2, column 9: media.ptime is a integer, not a string" },
    { "[media]\nbogus = 1\n", "line 2, column 9: unknown media key 'media.bogus'*" },
    { "[media]\ncodecs = [\"a b\"]\n", "line 2, column 10: codec 0: 1..64 printable ASCII bytes without spaces" },
    { "[media]\nrtp_port_max = 5000\n", "line 2, column 16: media.rtp_port_min 10000 exceeds media.rtp_port_max 5000" },
    { "[media]\nrtp_port_max = 5000\nrtp_port_min = 6000\n", "line 3, column 16: media.rtp_port_min must not exceed media.rtp_port_max (6000, 5000)" },
    { "[sdp]\nfmtp = 5\n", "line 2, column 8: SDP attribute values are strings" },
    { "[sdp]\nx = \"a\\nb\"\n", "line 2, column 5: SDP attribute x: value contains CR or LF" },
    { "sdp = 1\n", "line 1, column 7: 'sdp' is a reserved section name, not a key" },
    { "ok = 1\n\xc3\xa9 = 1\n", "line 2, column 1: expected a key ([A-Za-z0-9_-]), a [section] or a # comment, found byte 0xc3" },
};

static void test_errors(void)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        shmreg_config_doc *d = (shmreg_config_doc *)&d;   /* must stay untouched */
        int rc = shmreg_config_parse(bad[i].text, strlen(bad[i].text), &d);
        const char *msg = shmreg_errmsg();
        size_t n = strlen(bad[i].err);
        int match = bad[i].err[n - 1] == '*' ? !strncmp(msg, bad[i].err, n - 1)
                                             : !strcmp(msg, bad[i].err);
        ok(rc == SHMREG_EPARSE && match && d == (shmreg_config_doc *)&d,
           "bad text %zu: %.40s", i, bad[i].err);
        if (!match)
            diag("got: %s\nexpected: %s", msg, bad[i].err);
    }
    shmreg_config_doc *d = NULL;
    static const char nul[] = "a = 1\n\0b = 2\n";
    is(shmreg_config_parse(nul, sizeof nul - 1, &d), SHMREG_EPARSE, "a NUL byte in the text");
    is_str(shmreg_errmsg(), "line 2, column 1: NUL byte in config text", "names where");
    is(shmreg_config_parse(NULL, 3, &d), SHMREG_EINVAL, "NULL text: EINVAL");
}

/* load_text with errors changes nothing */
static void test_load(void)
{
    char reg[512];
    snprintf(reg, sizeof reg, "%s", test_dir("config-text"));
    shmreg *h;
    if (shmreg_open(reg, &(shmreg_options){ .flags = SHMREG_CREATE }, &h))
        bail_out("open: %s", shmreg_errmsg());
    is(shmreg_config_load_text(h, "media", canonical, strlen(canonical)), 0, "load text");
    is(shmreg_config_gen(h), 1, "generation 1");
    struct buf b = { calloc(1, 1), 0, 1 };
    is(shmreg_config_dump(h, "media", buf_write, &b), 0, "dump the stored config in place");
    is_str(b.p, canonical, "stored and dumped: the same bytes");

    int same = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        same &= shmreg_config_load_text(h, "media", bad[i].text, strlen(bad[i].text)) ==
                SHMREG_EPARSE;
        same &= shmreg_config_load_text(h, "new", bad[i].text, strlen(bad[i].text)) ==
                SHMREG_EPARSE;
    }
    ok(same, "every bad text is refused by load_text");
    is(shmreg_config_gen(h), 1, "the generation did not move");
    b.n = 0;
    shmreg_config_dump(h, "media", buf_write, &b);
    is_str(b.p, canonical, "the stored config is unchanged");
    shmreg_config_view *v;
    is(shmreg_config_open_view(h, "new", &v), SHMREG_ENOENT, "and no config was created");

    /* single values */
    is(shmreg_config_set(h, "media", "app.greeting", "\"caf\\xc3\\xa9\""), 0, "set with an escape");
    is(shmreg_config_set(h, "media", "app.trunks", " [\"x\", \"y\"] "), 0, "set a list");
    is(shmreg_config_set(h, "media", "app.flag", "true"), 0, "set a boolean");
    is(shmreg_config_set(h, "media", "app.flag", "tru"), SHMREG_EPARSE, "set 'tru'");
    is_str(shmreg_errmsg(), "column 1: 'tru' is not a value: strings must be quoted, booleans are true or false",
           "column of the error");
    is(shmreg_config_set(h, "media", "app.x", ""), SHMREG_EPARSE, "set an empty value");
    is(shmreg_config_set(h, "media", "app.x", "1\n2"), SHMREG_EPARSE, "set a two-line value");
    is(shmreg_config_gen(h), 4, "3 good sets");
    b.n = 0;
    shmreg_config_dump(h, "media", buf_write, &b);
    const char *want_tail =
        "[app]\n"
        "greeting = \"caf\xc3\xa9\"\n"
        "offset = -9223372036854775808\n"
        "max = 9223372036854775807\n"
        "trunks = [\"x\", \"y\"]\n"
        "utf8 = \"caf\xc3\xa9\"\n"
        "flag = true\n";
    ok(b.n > strlen(want_tail) && !strcmp(b.p + b.n - strlen(want_tail), want_tail),
       "edits land in place, new keys at the end of their section");
    free(b.p);
    shmreg_close(h);
}

/* ---------------------------------------------------------------- random round trips */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static size_t rnd_bytes(char *out, size_t max)
{
    size_t n = rnd((uint32_t)max + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned c;
        do
            c = rnd(4) ? 0x20 + rnd(0x5f) : 1 + rnd(255);
        while (c == 0);
        out[i] = (char)c;
    }
    return n;
}

static void rnd_key(char *k, size_t cap)
{
    static const char *const secs[] = { "", "", "app", "x-1", "Z_z" };
    static const char ch[] = "abcXYZ019_-";
    char name[12];
    size_t n = 1 + rnd(10);
    for (size_t i = 0; i < n; i++)
        name[i] = ch[rnd(sizeof ch - 1)];
    name[n] = 0;
    const char *s = secs[rnd(5)];
    snprintf(k, cap, "%s%s%s", s, *s ? "." : "", name);
}

static void build_random(shmreg_config_doc *d)
{
    char key[64], s[64], items[8][16];
    shmreg_str it[8];
    int n = (int)rnd(30);
    for (int i = 0; i < n; i++) {
        rnd_key(key, sizeof key);
        switch (rnd(8)) {
        case 0:
            shmreg_config_doc_set_str(d, key, (shmreg_str){ s, rnd_bytes(s, sizeof s) });
            break;
        case 1:
            shmreg_config_doc_set_int(d, key, (int64_t)(((uint64_t)rnd(UINT32_MAX) << 32) |
                                                        rnd(UINT32_MAX)) >> rnd(64));
            break;
        case 2:
            shmreg_config_doc_set_bool(d, key, (int)rnd(2));
            break;
        case 3: {
            uint32_t m = rnd(8);
            for (uint32_t j = 0; j < m; j++)
                it[j] = (shmreg_str){ items[j], rnd_bytes(items[j], sizeof items[j]) };
            shmreg_config_doc_set_list(d, key, it, m);
            break;
        }
        case 4: {
            size_t l = 1 + rnd(8);
            for (size_t j = 0; j < l; j++)
                s[j] = (char)('a' + rnd(26));
            shmreg_config_doc_add_attr(d, (shmreg_str){ key, strcspn(key, ".") },
                                       (shmreg_str){ s, l });
            break;
        }
        case 5:
            shmreg_config_doc_set_int(d, "media.ptime", 1 + rnd(1000));
            break;
        case 6: {
            static const char *const codecs[] = { "opus", "PCMU", "G722", "speex/16000" };
            uint32_t m = rnd(4);
            for (uint32_t j = 0; j < m; j++)
                it[j] = (shmreg_str){ codecs[j], strlen(codecs[j]) };
            shmreg_config_doc_set_list(d, "media.codecs", it, m);
            break;
        }
        default:
            shmreg_config_doc_set_bool(d, "media.agc", (int)rnd(2));
        }
    }
}

/* Same entries, same order, same values? */
static int docs_equal(const shmreg_config_doc *a, const shmreg_config_doc *b)
{
    uint32_t ca = 0, cb = 0;
    shmreg_str ka, kb;
    shmreg_config_value va, vb;
    for (;;) {
        int ra = shmreg_config_doc_next(a, &ca, &ka, &va);
        int rb = shmreg_config_doc_next(b, &cb, &kb, &vb);
        if (ra || rb)
            return ra == rb;
        if (ka.len != kb.len || memcmp(ka.ptr, kb.ptr, ka.len) || va.type != vb.type ||
            va.num != vb.num || va.count != vb.count || va.str.len != vb.str.len ||
            (va.str.len && memcmp(va.str.ptr, vb.str.ptr, va.str.len)))
            return 0;
        for (uint32_t i = 0; i < va.count; i++) {
            shmreg_str x, y, x2 = { 0, 0 }, y2 = { 0, 0 };
            if (va.type == SHMREG_CONFIG_LIST) {
                shmreg_config_item(&va, i, &x);
                shmreg_config_item(&vb, i, &y);
            } else {
                shmreg_config_pair(&va, i, &x, &x2);
                shmreg_config_pair(&vb, i, &y, &y2);
            }
            if (x.len != y.len || memcmp(x.ptr, y.ptr, x.len) || x2.len != y2.len ||
                (x2.len && memcmp(x2.ptr, y2.ptr, x2.len)))
                return 0;
        }
    }
}

static void test_random(void)
{
    int good = 1, nonempty = 0;
    for (int round = 0; round < 500 && good; round++) {
        shmreg_config_doc *d, *d2 = NULL;
        shmreg_config_doc_new(&d);
        build_random(d);
        char *t = doc_text(d);
        nonempty += t[0] != 0;
        int rc = shmreg_config_parse(t, strlen(t), &d2);
        char *t2 = rc ? NULL : doc_text(d2);
        if (rc || strcmp(t, t2) || !docs_equal(d, d2)) {
            good = 0;
            diag("round %d: rc %d (%s)\n--- dump\n%s--- again\n%s", round, rc,
                 shmreg_errmsg(), t, t2 ? t2 : "(none)");
        }
        free(t);
        free(t2);
        shmreg_config_doc_free(d);
        shmreg_config_doc_free(d2);
    }
    ok(good, "500 random documents: dump -> parse -> dump is exact, values equal");
    ok(nonempty > 400, "and most were not empty (%d)", nonempty);
}

int main(void)
{
    test_canonical();
    test_errors();
    test_load();
    test_random();
    return done_testing();
}
