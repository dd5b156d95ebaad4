/*
 * id_state.c — session IDs as text, the call-state table, and error names.
 *
 * Everything here is pure: no registry is opened. The transition table is
 * written out again below, exactly as shmreg.h documents it, and every one
 * of the 10 x 10 pairs is checked against the library.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"
#include "tap.h"

static const unsigned char SAMPLE[SHMREG_ID_BYTES] = {
    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
    0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};
#define SAMPLE_TEXT "00112233-4455-6677-8899-aabbccddeeff"

/* 1 when `s` is 36 chars of lower-case hex with dashes at 8, 13, 18, 23. */
static int canonical(const char *s)
{
    if (strlen(s) != SHMREG_ID_TEXT_LEN)
        return 0;
    for (int i = 0; i < SHMREG_ID_TEXT_LEN; i++) {
        int dash = (i == 8 || i == 13 || i == 18 || i == 23);
        if (dash ? s[i] != '-'
                 : !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* Parse `text` (length `len`) into an id prefilled with 0xA5 and check
 * that parsing fails with SHMREG_EINVAL and leaves the id as it was. */
static void rejects(const char *text, size_t len, const char *why)
{
    shmreg_id id, before;
    memset(&id, 0xa5, sizeof id);
    before = id;
    is(shmreg_id_parse(text, len, &id), SHMREG_EINVAL,
       "id_parse rejects %s", why);
    ok(memcmp(&id, &before, sizeof id) == 0,
       "id_parse leaves the id unchanged when it rejects %s", why);
}

static void test_id_text(void)
{
    shmreg_id id, back;
    char text[SHMREG_ID_TEXT_LEN + 1];

    memcpy(id.bytes, SAMPLE, SHMREG_ID_BYTES);
    memset(text, 'X', sizeof text);
    shmreg_id_format(&id, text);
    is_str(text, SAMPLE_TEXT,
           "id_format writes lower-case 8-4-4-4-12 hex, NUL-terminated");

    memset(&back, 0, sizeof back);
    is(shmreg_id_parse(SAMPLE_TEXT, 36, &back), 0, "id_parse accepts canonical text");
    is_mem(back.bytes, SHMREG_ID_BYTES, SAMPLE, SHMREG_ID_BYTES, "id_parse gives back the formatted bytes");

    memset(&back, 0, sizeof back);
    is(shmreg_id_parse("00112233-4455-6677-8899-AABBCCDDEEFF", 36, &back), 0,
       "id_parse accepts upper-case hex");
    is_mem(back.bytes, SHMREG_ID_BYTES, SAMPLE, SHMREG_ID_BYTES, "upper-case text parses to the same bytes");

    memset(&back, 0, sizeof back);
    is(shmreg_id_parse("00112233-4455-6677-8899-AaBbCcDdEeFf", 36, &back), 0,
       "id_parse accepts mixed-case hex");
    is_mem(back.bytes, SHMREG_ID_BYTES, SAMPLE, SHMREG_ID_BYTES, "mixed-case text parses to the same bytes");

    /* A trailing byte beyond `len` is not looked at. */
    memset(&back, 0, sizeof back);
    is(shmreg_id_parse(SAMPLE_TEXT "trailing", 36, &back), 0,
       "id_parse reads exactly len bytes, ignoring what follows");
    is_mem(back.bytes, SHMREG_ID_BYTES, SAMPLE, SHMREG_ID_BYTES, "and parses them right");

    /* Round trips of many IDs, including all-zero and all-one bytes. */
    int bad_format = 0, bad_parse = 0, bad_bytes = 0;
    srand(12345);
    for (int n = 0; n < 2000; n++) {
        for (int i = 0; i < SHMREG_ID_BYTES; i++)
            id.bytes[i] = n == 0 ? 0x00 : n == 1 ? 0xff : (unsigned char)rand();
        shmreg_id_format(&id, text);
        if (!canonical(text))
            bad_format++;
        memset(&back, 0x5a, sizeof back);
        if (shmreg_id_parse(text, strlen(text), &back) != 0)
            bad_parse++;
        else if (memcmp(&back, &id, sizeof id) != 0)
            bad_bytes++;
    }
    is(bad_format, 0, "2000 formatted IDs are all canonical lower-case text");
    is(bad_parse, 0, "2000 formatted IDs all parse back");
    is(bad_bytes, 0, "2000 IDs survive format -> parse byte for byte");

    rejects(SAMPLE_TEXT, 35, "35 characters");
    rejects(SAMPLE_TEXT "0", 37, "37 characters");
    rejects("", 0, "the empty string");
    rejects("00112233445566778899aabbccddeeff", 32, "32 hex digits without dashes");
    rejects("001122334-455-6677-8899-aabbccddeeff", 36, "a dash moved right");
    rejects("0011223-34455-6677-8899-aabbccddeeff", 36, "a dash moved left");
    rejects("00112233-4455-6677-8899aaabbccddeeff", 36, "a dash replaced by hex");
    rejects("00112233-4455-6677-8899-aabbccddee-f", 36, "a dash in place of hex");
    rejects("00112233-4455-6677-8899-aabbccddeefg", 36, "a non-hex letter 'g'");
    rejects("00112233-4455-6677-8899-aabbccddee f", 36, "a space");
    rejects("0x112233-4455-6677-8899-aabbccddeeff", 36, "a 0x prefix");
    rejects("{00112233-4455-6677-8899-aabbccddeeff}", 38, "braces around the text");
    rejects("{0112233-4455-6677-8899-aabbccddeef}", 36, "braces in place of hex");
    rejects("00112233-4455-6677-8899-aabbccddee\0f", 36, "an embedded NUL");
    rejects("+0112233-4455-6677-8899-aabbccddeeff", 36, "a sign");

    shmreg_id keep;
    memset(&keep, 0xa5, sizeof keep);
    is(shmreg_id_parse(NULL, 36, &keep), SHMREG_EINVAL, "id_parse rejects NULL text");
}

/* The table of shmreg.h, written out again. */
static int documented(int from, int to)
{
    enum { I = SHMREG_STATE_INITIATING, R = SHMREG_STATE_RINGING,
           A = SHMREG_STATE_ACTIVE, H = SHMREG_STATE_ONHOLD,
           X = SHMREG_STATE_TRANSFERRING, T = SHMREG_STATE_TERMINATING,
           D = SHMREG_STATE_TERMINATED, C = SHMREG_STATE_CANCELLED,
           F = SHMREG_STATE_FAILED };
    static const int allowed[][6] = {
        [I] = { R, A, T, C, F, 0 },
        [R] = { A, T, C, F, 0 },
        [A] = { H, X, T, F, 0 },
        [H] = { A, X, T, F, 0 },
        [X] = { A, H, T, F, 0 },
        [T] = { D, F, 0 },
        [D] = { 0 }, [C] = { 0 }, [F] = { 0 },
    };
    if (from < 1 || from > 9 || to < 1 || to > 9)
        return 0;
    for (int i = 0; allowed[from][i]; i++)
        if (allowed[from][i] == to)
            return 1;
    return 0;
}

static void test_states(void)
{
    int wrong = 0, nallowed = 0;
    for (int from = 0; from < SHMREG_STATE_COUNT; from++)
        for (int to = 0; to < SHMREG_STATE_COUNT; to++) {
            int got = shmreg_state_allowed(from, to);
            nallowed += got == 1;
            if (got != documented(from, to)) {
                wrong++;
                diag("state_allowed(%d, %d) = %d, table says %d",
                     from, to, got, documented(from, to));
            }
        }
    is(wrong, 0, "all 100 (from, to) pairs match the documented table");
    is(nallowed, 23, "the table allows exactly 23 transitions");
    is(shmreg_state_allowed(SHMREG_STATE_ACTIVE, SHMREG_STATE_ACTIVE), 0,
       "a state does not transition to itself");
    is(shmreg_state_allowed(-1, SHMREG_STATE_RINGING), 0, "from -1 is not allowed");
    is(shmreg_state_allowed(SHMREG_STATE_INITIATING, 10), 0, "to 10 is not allowed");
    is(shmreg_state_allowed(SHMREG_STATE_INITIATING, -5), 0, "to -5 is not allowed");
    is(shmreg_state_allowed(1000, 1), 0, "from 1000 is not allowed");

    static const char *names[SHMREG_STATE_COUNT] = {
        "Any", "Initiating", "Ringing", "Active", "OnHold", "Transferring",
        "Terminating", "Terminated", "Cancelled", "Failed",
    };
    for (int s = 0; s < SHMREG_STATE_COUNT; s++)
        is_str(shmreg_state_name(s), names[s], "state %d is named %s", s, names[s]);
    ok(shmreg_state_name(10) == NULL, "state 10 has no name (NULL)");
    ok(shmreg_state_name(-1) == NULL, "state -1 has no name (NULL)");

    for (int s = 0; s < SHMREG_STATE_COUNT; s++) {
        int st = -1;
        is(shmreg_state_parse(names[s], &st), 0, "state_parse accepts \"%s\"", names[s]);
        is(st, s, "state_parse(\"%s\") gives %d", names[s], s);
    }
    int st = -1;
    is(shmreg_state_parse("ONHOLD", &st), 0, "state_parse is case-insensitive (ONHOLD)");
    is(st, SHMREG_STATE_ONHOLD, "ONHOLD parses to OnHold");
    st = -1;
    is(shmreg_state_parse("terminated", &st), 0, "state_parse accepts lower case");
    is(st, SHMREG_STATE_TERMINATED, "terminated parses to Terminated");
    st = -1;
    is(shmreg_state_parse("aCtIvE", &st), 0, "state_parse accepts mixed case");
    is(st, SHMREG_STATE_ACTIVE, "aCtIvE parses to Active");
    is(shmreg_state_parse("Bogus", &st), SHMREG_EINVAL, "state_parse rejects an unknown name");
    is(shmreg_state_parse("", &st), SHMREG_EINVAL, "state_parse rejects the empty name");
    is(shmreg_state_parse("Active ", &st), SHMREG_EINVAL,
       "state_parse rejects a name with a trailing space");
    is(shmreg_state_parse("Activ", &st), SHMREG_EINVAL, "state_parse rejects a prefix");

    for (int s = 0; s < SHMREG_STATE_COUNT; s++) {
        int final = s == SHMREG_STATE_TERMINATED || s == SHMREG_STATE_CANCELLED ||
                    s == SHMREG_STATE_FAILED;
        is(shmreg_state_is_final(s), final, "%s is %sfinal", names[s], final ? "" : "not ");
    }
    is(shmreg_state_is_final(10), 0, "state 10 is not final");
    is(shmreg_state_is_final(-1), 0, "state -1 is not final");

    /* Final states have no way out at all. */
    int exits = 0;
    for (int from = 1; from < SHMREG_STATE_COUNT; from++)
        if (shmreg_state_is_final(from))
            for (int to = 0; to < SHMREG_STATE_COUNT; to++)
                exits += shmreg_state_allowed(from, to);
    is(exits, 0, "no transition leaves a final state");
}

static void test_strerror(void)
{
    static const struct { int code; const char *name; } codes[] = {
        { SHMREG_OK, "SHMREG_OK" },
        { SHMREG_EINVAL, "SHMREG_EINVAL" },       { SHMREG_ENOENT, "SHMREG_ENOENT" },
        { SHMREG_EEXIST, "SHMREG_EEXIST" },       { SHMREG_EFULL, "SHMREG_EFULL" },
        { SHMREG_ESTATE, "SHMREG_ESTATE" },       { SHMREG_ECONFLICT, "SHMREG_ECONFLICT" },
        { SHMREG_ECORRUPT, "SHMREG_ECORRUPT" },   { SHMREG_EFORK, "SHMREG_EFORK" },
        { SHMREG_EVERSION, "SHMREG_EVERSION" },   { SHMREG_EPERM, "SHMREG_EPERM" },
        { SHMREG_ESYS, "SHMREG_ESYS" },           { SHMREG_ENOREAD, "SHMREG_ENOREAD" },
        { SHMREG_EBUSY, "SHMREG_EBUSY" },         { SHMREG_ETIMEDOUT, "SHMREG_ETIMEDOUT" },
        { SHMREG_EPARSE, "SHMREG_EPARSE" },       { SHMREG_ENOMEM, "SHMREG_ENOMEM" },
    };
    enum { N = sizeof codes / sizeof codes[0] };
    is(N, 17, "there are 17 codes, 0 to -16");
    int nulls = 0, empty = 0, dups = 0, unnamed = 0;
    for (int i = 0; i < N; i++) {
        const char *s = shmreg_strerror(codes[i].code);
        if (!s) { nulls++; continue; }
        if (!*s) empty++;
        /* Named like "SHMREG_ENOENT: no such entry". */
        size_t nl = strlen(codes[i].name);
        if (strncmp(s, codes[i].name, nl) != 0 || (s[nl] != '\0' && s[nl] != ':')) {
            unnamed++;
            diag("strerror(%d) = \"%s\" does not start with %s",
                 codes[i].code, s, codes[i].name);
        }
        for (int j = 0; j < i; j++) {
            const char *t = shmreg_strerror(codes[j].code);
            if (t && strcmp(s, t) == 0) {
                dups++;
                diag("strerror(%d) and strerror(%d) are both \"%s\"",
                     codes[i].code, codes[j].code, s);
            }
        }
    }
    is(nulls, 0, "strerror is non-NULL for every code");
    is(empty, 0, "strerror is non-empty for every code");
    is(dups, 0, "strerror gives 17 distinct strings");
    is(unnamed, 0, "each string starts with the code's name");
    ok(shmreg_strerror(-17) != NULL, "strerror of unknown code -17 is non-NULL");
    ok(shmreg_strerror(1) != NULL, "strerror of unknown code 1 is non-NULL");
    ok(shmreg_strerror(-100000) != NULL, "strerror of unknown code -100000 is non-NULL");
    ok(shmreg_errmsg() != NULL, "errmsg is never NULL");
    shmreg_id id;
    shmreg_id_parse("nope", 4, &id);
    ok(shmreg_errmsg() != NULL, "errmsg is non-NULL after a failed call");
}

int main(void)
{
    test_id_text();
    test_states();
    test_strerror();
    return done_testing();
}
