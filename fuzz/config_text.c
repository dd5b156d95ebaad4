/*
 * config_text.c — libFuzzer target: the config text parser, and the round
 * trip of what it accepts.
 *
 * Any bytes: shmreg_config_parse() either fails with SHMREG_EPARSE (an
 * errmsg naming "line L, column C", no document) or gives a document.
 * Accepted text must then survive every path the library moves a config
 * along, byte for byte: its canonical dump parses again and dumps to the
 * same bytes, and stored in LMDB (shmreg_config_put) and read back through
 * a view it dumps to those bytes too, so the record encoder and the
 * bounds-checked decoder agree with the document on everything the
 * parser can produce. One registry is made for the whole run (in
 * $SHMREG_TEST_DIR or /dev/shm) and removed at exit.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "shmreg.h"

struct buf {
    char *p;
    size_t n, cap;
};

static int put(void *arg, const char *s, size_t len)
{
    struct buf *b = arg;
    if (b->n + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + len)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            abort();
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    return 0;
}

static shmreg *reg;
static char reg_path[512];

static void cleanup(void)
{
    shmreg_close(reg);
    shmreg_destroy(reg_path, 1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = getenv("SHMREG_TEST_DIR");
    snprintf(reg_path, sizeof reg_path, "%s/fuzz-config-%d", base ? base : "/dev/shm",
             (int)getpid());
    shmreg_options o = { .flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 64 };
    if (shmreg_open(reg_path, &o, &reg) != 0) {
        fprintf(stderr, "config_text: cannot create %s: %s\n", reg_path, shmreg_errmsg());
        exit(1);
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    shmreg_config_doc *doc = NULL;
    int rc = shmreg_config_parse((const char *)data, size, &doc);
    if (rc != 0) {
        REQUIRE(rc == SHMREG_EPARSE && doc == NULL);
        REQUIRE(strncmp(shmreg_errmsg(), "line ", 5) == 0);
        return 0;
    }
    struct buf one = { 0 }, two = { 0 }, stored = { 0 };
    REQUIRE(shmreg_config_doc_dump(doc, put, &one) == 0);

    shmreg_config_doc *again = NULL;
    REQUIRE(shmreg_config_parse(one.p ? one.p : "", one.n, &again) == 0);
    REQUIRE(shmreg_config_doc_dump(again, put, &two) == 0);
    REQUIRE(one.n == two.n && (one.n == 0 || memcmp(one.p, two.p, one.n) == 0));

    /* Every entry the iterator gives is found by its key, same type. */
    uint32_t cur = 0;
    shmreg_str key;
    shmreg_config_value v, w;
    while (shmreg_config_doc_next(doc, &cur, &key, &v) == 0) {
        char k[256];
        REQUIRE(key.len < sizeof k);
        memcpy(k, key.ptr, key.len);
        k[key.len] = 0;
        /* sdp.NAME may repeat; doc_get then finds the first. */
        if (strncmp(k, "sdp.", 4) != 0) {
            REQUIRE(shmreg_config_doc_get(doc, k, &w) == 0);
            REQUIRE(w.type == v.type);
        }
        shmreg_str item, name;
        for (uint32_t i = 0; v.type == SHMREG_CONFIG_LIST && i < v.count; i++)
            REQUIRE(shmreg_config_item(&v, i, &item) == 0);
        for (uint32_t i = 0; v.type == SHMREG_CONFIG_PAIRS && i < v.count; i++)
            REQUIRE(shmreg_config_pair(&v, i, &name, &item) == 0);
        REQUIRE(shmreg_config_item(&v, v.count, &item) != 0);
    }

    /* "A document that was built without error can be stored." */
    REQUIRE(shmreg_config_put(reg, "fuzz", doc) == 0);
    REQUIRE(shmreg_config_dump(reg, "fuzz", put, &stored) == 0);
    REQUIRE(stored.n == one.n && (one.n == 0 || memcmp(stored.p, one.p, one.n) == 0));
    shmreg_config_doc_free(doc);
    shmreg_config_doc_free(again);
    free(one.p);
    free(two.p);
    free(stored.p);
    return 0;
}
