/*
 * base.c — the bottom of the registry, below everything else: reporting
 * errors (shmreg_errmsg, shmreg_strerror) and the text form of a session
 * ID, which error messages quote. No access to a segment or a handle, so
 * every other file may call it and it calls none of them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ------------------------------------------------------------ errors */

/* One thread-local record, so that a failure costs one TLS address
 * computation. A lookup's ENOENT is an ordinary answer on hot paths (a
 * dialog not bound yet, the end of an iteration), so shmreg__fail_lazy()
 * stores a static text and an ID and shmreg_errmsg() formats them only if
 * somebody asks; shmreg__fail() formats at once (cold paths). */
static __thread struct {
    const char *lazy;          /* pending static text; NULL: buf is current */
    int has_id;
    shmreg_id id;
    char buf[512];
} err;

int shmreg__fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.buf, sizeof err.buf, fmt, ap);
    va_end(ap);
    err.lazy = NULL;
    return code;
}

int shmreg__fail_lazy(int code, const char *text, const unsigned char *id)
{
    err.lazy = text;
    err.has_id = id != NULL;
    if (id)
        memcpy(err.id.bytes, id, SHMREG_ID_BYTES);
    return code;
}

int shmreg__fail_copy(int code, const char *text, const char *s, size_t len)
{
    size_t tl = strlen(text), cap = sizeof err.buf - 1;
    if (tl > cap)
        tl = cap;
    if (len > cap - tl)
        len = cap - tl;
    memcpy(err.buf, text, tl);
    memcpy(err.buf + tl, s, len);
    err.buf[tl + len] = 0;
    err.lazy = NULL;
    return code;
}

const char *shmreg_errmsg(void)
{
    if (err.lazy) {
        char idtext[SHMREG_ID_TEXT_LEN + 1] = "";
        if (err.has_id)
            shmreg_id_format(&err.id, idtext);
        snprintf(err.buf, sizeof err.buf, "%s%s%s", err.lazy, err.has_id ? " " : "", idtext);
        err.lazy = NULL;
    }
    return err.buf;
}

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
    case SHMREG_ELIMIT: return "SHMREG_ELIMIT: profile at its member limit";
    case SHMREG_EFOREIGN: return "SHMREG_EFOREIGN: session owned by another node";
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
