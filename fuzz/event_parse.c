/*
 * event_parse.c — libFuzzer target: the small text <-> value functions
 * that take names and IDs from users and the network (shmregctl
 * arguments, sipd headers): shmreg_event_parse/_name,
 * shmreg_state_parse/_name and shmreg_id_parse/_format.
 *
 * The input is used twice: as text (NUL-terminated copy for the name
 * parsers, exact bytes for the ID parser) and as raw values (the first
 * bytes as an event type, a state, a 16-byte ID). Whatever parses must
 * name back to itself and parse back to the same value; whatever does not
 * must fail with SHMREG_EINVAL and leave the output untouched.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "shmreg.h"

static void event_text(const char *s)
{
    uint32_t t = 0xdeadbeef;
    int rc = shmreg_event_parse(s, &t);
    if (rc != 0) {
        REQUIRE(rc == SHMREG_EINVAL && t == 0xdeadbeef);
        return;
    }
    const char *name = shmreg_event_name(t);
    REQUIRE(name != NULL && strcmp(name, s) == 0); /* event names are exact */
}

static void event_value(uint32_t t)
{
    const char *name = shmreg_event_name(t);
    if (name == NULL) {
        REQUIRE(t == 0 || t >= SHMREG_EV_TYPE_COUNT);
        return;
    }
    uint32_t back = 0;
    REQUIRE(shmreg_event_parse(name, &back) == 0 && back == t);
}

static void state_text(const char *s)
{
    int st = -12345;
    int rc = shmreg_state_parse(s, &st);
    if (rc != 0) {
        REQUIRE(rc == SHMREG_EINVAL && st == -12345);
        return;
    }
    const char *name = shmreg_state_name(st);
    REQUIRE(name != NULL && strcasecmp(name, s) == 0); /* state names: any case */
}

static void state_value(int st)
{
    const char *name = shmreg_state_name(st);
    if (name == NULL) {
        REQUIRE(st < 0 || st >= SHMREG_STATE_COUNT);
        return;
    }
    int back = -1;
    REQUIRE(shmreg_state_parse(name, &back) == 0 && back == st);
    REQUIRE(shmreg_state_is_final(st) == (st == SHMREG_STATE_TERMINATED ||
                                          st == SHMREG_STATE_CANCELLED ||
                                          st == SHMREG_STATE_FAILED));
    for (int to = -1; to <= SHMREG_STATE_COUNT; to++)
        REQUIRE(!shmreg_state_allowed(st, to) || !shmreg_state_is_final(st));
}

static void id_text(const uint8_t *data, size_t size)
{
    shmreg_id id, untouched;
    memset(&id, 0xa5, sizeof id);
    untouched = id;
    int rc = shmreg_id_parse((const char *)data, size, &id);
    if (rc != 0) {
        REQUIRE(rc == SHMREG_EINVAL && memcmp(&id, &untouched, sizeof id) == 0);
        return;
    }
    char text[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(&id, text);
    /* Canonical is lower case: the input, lowered, is the format. */
    REQUIRE(size == SHMREG_ID_TEXT_LEN && strlen(text) == SHMREG_ID_TEXT_LEN);
    for (size_t i = 0; i < size; i++) {
        char c = (char)data[i];
        REQUIRE(text[i] == (c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c));
    }
}

static void id_value(const uint8_t *bytes)
{
    shmreg_id id, back;
    memcpy(id.bytes, bytes, sizeof id.bytes);
    char text[SHMREG_ID_TEXT_LEN + 1];
    shmreg_id_format(&id, text);
    REQUIRE(strlen(text) == SHMREG_ID_TEXT_LEN);
    REQUIRE(shmreg_id_parse(text, SHMREG_ID_TEXT_LEN, &back) == 0);
    REQUIRE(memcmp(&id, &back, sizeof id) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    event_text(s);
    state_text(s);
    free(s);
    id_text(data, size);

    uint8_t raw[16] = { 0 };
    memcpy(raw, data, size < sizeof raw ? size : sizeof raw);
    uint32_t v;
    memcpy(&v, raw, sizeof v);
    event_value(v);
    state_value((int)v);
    id_value(raw);
    return 0;
}
