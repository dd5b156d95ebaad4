/*
 * selfcheck.h — values that carry their own checksum, for the tests that
 * hunt torn reads across processes (concurrency, crash, rooms).
 *
 * A self-checking SDP starts with the line "X-Len:%05u X-FNV:%08x\n"
 * giving the length and FNV-1a of the body that follows; a reader that
 * finds a value whose header disagrees with its body has seen a mix of two
 * writes, which the registry promises never to show.
 */
#ifndef SHMREG_SELFCHECK_H
#define SHMREG_SELFCHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmreg.h"

static inline uint32_t fnv1a(const char *p, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    return h;
}

#define SDP_HDR 27   /* "X-Len:%05u X-FNV:%08x\n" */

/* Write a header and `body` random printable bytes into buf; the length. */
static inline size_t make_sdp(char *buf, unsigned *seed, size_t body)
{
    char *b = buf + SDP_HDR;
    for (size_t i = 0; i < body; i++)
        b[i] = (char)('!' + rand_r(seed) % 90);
    char hdr[SDP_HDR + 1];
    snprintf(hdr, sizeof hdr, "X-Len:%05u X-FNV:%08x\n", (unsigned)body, fnv1a(b, body));
    memcpy(buf, hdr, SDP_HDR);
    return SDP_HDR + body;
}

/* 1 when an SDP read in place is whole (or empty). */
static inline int sdp_whole(shmreg_str s)
{
    if (s.len == 0)
        return 1;
    if (s.len < SDP_HDR || !s.ptr)
        return 0;
    char hdr[SDP_HDR + 1];
    unsigned len, sum;
    memcpy(hdr, s.ptr, SDP_HDR);
    hdr[SDP_HDR] = 0;
    if (sscanf(hdr, "X-Len:%5u X-FNV:%8x", &len, &sum) != 2 || hdr[SDP_HDR - 1] != '\n')
        return 0;
    return len == s.len - SDP_HDR && fnv1a(s.ptr + SDP_HDR, len) == sum;
}

/* Copy a string read in place into buf, NUL-terminated; 0 if it does not fit. */
static inline int copy(shmreg_str s, char *buf, size_t cap)
{
    if (s.len >= cap || (s.len && !s.ptr))
        return 0;
    memcpy(buf, s.ptr, s.len);
    buf[s.len] = 0;
    return 1;
}

#endif
