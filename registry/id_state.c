/*
 * id_state.c — session IDs, call states and error names: the small pure
 * functions of the API, with no access to the segment.
 *
 * The transition table is data, not code, so that the header's table, the
 * check in shmreg_session_transition() and the tests can be compared line
 * by line.
 */
#include <strings.h>

#include "internal.h"

const char *shmreg_strerror(int err)
{
    switch (err) {
    case SHMREG_OK: return "SHMREG_OK: success";
    case SHMREG_EINVAL: return "SHMREG_EINVAL: invalid argument";
    case SHMREG_ENOENT: return "SHMREG_ENOENT: no such entry";
    case SHMREG_EEXIST: return "SHMREG_EEXIST: already exists";
    case SHMREG_EFULL: return "SHMREG_EFULL: no room left";
    case SHMREG_ESTATE: return "SHMREG_ESTATE: transition not allowed";
    case SHMREG_ECONFLICT: return "SHMREG_ECONFLICT: state is not the expected one";
    case SHMREG_ECORRUPT: return "SHMREG_ECORRUPT: registry segment is corrupt";
    case SHMREG_EFORK: return "SHMREG_EFORK: handle used after fork";
    case SHMREG_EVERSION: return "SHMREG_EVERSION: not a registry of this layout";
    case SHMREG_EPERM: return "SHMREG_EPERM: permission or ownership refused";
    case SHMREG_ESYS: return "SHMREG_ESYS: system call failed";
    case SHMREG_ENOREAD: return "SHMREG_ENOREAD: no read section open";
    case SHMREG_EBUSY: return "SHMREG_EBUSY: registry in use";
    case SHMREG_ETIMEDOUT: return "SHMREG_ETIMEDOUT: timed out";
    case SHMREG_EPARSE: return "SHMREG_EPARSE: malformed text";
    case SHMREG_ENOMEM: return "SHMREG_ENOMEM: out of memory";
    default: return "unknown shmreg error";
    }
}

static const char hexdigits[] = "0123456789abcdef";

void shmreg_id_format(const shmreg_id *id, char out[SHMREG_ID_TEXT_LEN + 1])
{
    char *p = out;
    for (int i = 0; i < SHMREG_ID_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hexdigits[id->bytes[i] >> 4];
        *p++ = hexdigits[id->bytes[i] & 15];
    }
    *p = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int shmreg_id_parse(const char *text, size_t len, shmreg_id *id)
{
    if (text == NULL || id == NULL || len != SHMREG_ID_TEXT_LEN)
        return shmreg__fail(SHMREG_EINVAL, "a session ID is 36 characters of UUID text");
    shmreg_id out;
    size_t j = 0;
    for (size_t i = 0; i < len; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return shmreg__fail(SHMREG_EINVAL, "expected '-' at position %zu", i);
            continue;
        }
        int hi = hexval(text[i]), lo = i + 1 < len ? hexval(text[i + 1]) : -1;
        if (hi < 0 || lo < 0)
            return shmreg__fail(SHMREG_EINVAL, "not a hex digit at position %zu", hi < 0 ? i : i + 1);
        out.bytes[j++] = (unsigned char)(hi << 4 | lo);
        i++;
    }
    *id = out;
    return 0;
}

static const char *const state_names[SHMREG_STATE_COUNT] = {
    "Any", "Initiating", "Ringing", "Active", "OnHold", "Transferring",
    "Terminating", "Terminated", "Cancelled", "Failed",
};

#define B(s) (1u << SHMREG_STATE_##s)
/* allowed[from] = set of `to` states; mirrors the table in shmreg.h. */
static const unsigned allowed[SHMREG_STATE_COUNT] = {
    [SHMREG_STATE_INITIATING] = B(RINGING) | B(ACTIVE) | B(TERMINATING) | B(CANCELLED) | B(FAILED),
    [SHMREG_STATE_RINGING] = B(ACTIVE) | B(TERMINATING) | B(CANCELLED) | B(FAILED),
    [SHMREG_STATE_ACTIVE] = B(ONHOLD) | B(TRANSFERRING) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_ONHOLD] = B(ACTIVE) | B(TRANSFERRING) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_TRANSFERRING] = B(ACTIVE) | B(ONHOLD) | B(TERMINATING) | B(FAILED),
    [SHMREG_STATE_TERMINATING] = B(TERMINATED) | B(FAILED),
};
#undef B

int shmreg_state_allowed(int from, int to)
{
    if (from < 1 || from >= SHMREG_STATE_COUNT || to < 1 || to >= SHMREG_STATE_COUNT)
        return 0;
    return (allowed[from] >> to) & 1u;
}

const char *shmreg_state_name(int state)
{
    return state >= 0 && state < SHMREG_STATE_COUNT ? state_names[state] : NULL;
}

int shmreg_state_parse(const char *name, int *state)
{
    for (int s = 0; name && state && s < SHMREG_STATE_COUNT; s++)
        if (strcasecmp(name, state_names[s]) == 0) {
            *state = s;
            return 0;
        }
    return shmreg__fail(SHMREG_EINVAL, "unknown call state '%s'", name ? name : "(null)");
}

int shmreg_state_is_final(int state)
{
    return state == SHMREG_STATE_TERMINATED || state == SHMREG_STATE_CANCELLED ||
           state == SHMREG_STATE_FAILED;
}
