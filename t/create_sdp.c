/*
 * create_sdp.c — SDPs given at create and replaced by update, together
 * with the fields, in one record.
 *
 * shmreg_fields.sdp (carved from the reserved tail) lets a session be born
 * with both SDPs, and lets shmreg_session_update replace the SDPs that its
 * SHMREG_MASK_SDP bits select in the same atomic record swap as the
 * fields. Why it matters: a re-INVITE changes codec, port and SDP at once,
 * and a reader must never see the new codec with the old SDP; a new call
 * must never be found without its offer. So this test holds the library
 * to the contract in shmreg.h, with exact values:
 *  - create with both, one, or no SDP (f->sdp NULL: as before), up to
 *    SHMREG_MAX_SDP each (then they live outside the record); one
 *    session_created event, no sdp_updated; version 1; the caller's
 *    buffers are not kept;
 *  - update of fields + SDPs: what is selected changes, the rest is
 *    untouched byte for byte, version moves on by exactly 1, and the
 *    events come in the documented order (session_updated with the field
 *    mask only when a field was selected, then sdp_updated local, remote)
 *    with consecutive sequence numbers; SHMREG_MASK_ALL never touches an
 *    SDP;
 *  - every refusal (SDP bits with f->sdp NULL, unknown bits, an oversize
 *    or bodiless selected SDP, at create or update) is SHMREG_EINVAL and
 *    changes nothing: same version and bytes, same session count and heap
 *    use, no event; an SDP the mask does not select is not even looked at;
 *  - atomicity across processes: a forked writer changes codec and remote
 *    SDP 3000 times while two forked readers check that every view shows
 *    the codec and SDP of one and the same change (and never goes back);
 *  - crash safety: a writer SIGKILLed in the middle of such updates, 20
 *    times, leaves a session that reads as one complete version, and
 *    after shmreg_reap a check finds no problem and the version is not
 *    behind the changes made (the reap announces a change the kill cut
 *    short; with that switched off this fails in most runs).
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })
static const shmreg_str NOSTR = { NULL, 0 };

#define M_CODEC SHMREG_MASK(SHMREG_FIELD_CODEC)
#define M_SDP_L SHMREG_MASK_SDP(SHMREG_SDP_LOCAL)
#define M_SDP_R SHMREG_MASK_SDP(SHMREG_SDP_REMOTE)

static shmreg *reg_new(const char *name)
{
    return test_reg_small(name, 0); /* heap: the default, 64 MiB */
}

/* ------------------------------------------------------------ reading back */

/* 1 when `got` is exactly the `want` bytes; else a diagnostic naming it. */
static int same_str(const char *what, shmreg_str got, shmreg_str want)
{
    if (got.len == want.len && (want.len == 0 || (got.ptr && memcmp(got.ptr, want.ptr, want.len) == 0)))
        return 1;
    diag("%s: %zu bytes '%.*s%s', want %zu bytes '%.*s%s'", what, got.len,
         (int)(got.len < 40 ? got.len : 40), got.ptr ? got.ptr : "", got.len > 40 ? "..." : "",
         want.len, (int)(want.len < 40 ? want.len : 40), want.ptr ? want.ptr : "",
         want.len > 40 ? "..." : "");
    return 0;
}

/* 1 when session `id` reads back (in one read section) with exactly the
 * fields of `f` (NULL: all empty), the SDPs `loc` and `rem`, `version`
 * and `state`; diagnostics for every difference otherwise. */
static int view_is(shmreg *h, const shmreg_id *id, const shmreg_fields *f, shmreg_str loc,
                   shmreg_str rem, uint64_t version, int state)
{
    shmreg_session v;
    int good = 1;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, id, &v);
    if (rc != 0) {
        diag("session_get: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
        good = 0;
    } else {
        char what[32];
        for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
            snprintf(what, sizeof what, "field %u", i);
            good &= same_str(what, v.str[i], f ? f->str[i] : NOSTR);
        }
        if (v.local_rtp_port != (f ? f->local_rtp_port : 0) ||
            v.remote_rtp_port != (f ? f->remote_rtp_port : 0)) {
            diag("ports %u/%u, want %u/%u", v.local_rtp_port, v.remote_rtp_port,
                 f ? f->local_rtp_port : 0, f ? f->remote_rtp_port : 0);
            good = 0;
        }
        good &= same_str("local SDP", v.sdp[SHMREG_SDP_LOCAL], loc);
        good &= same_str("remote SDP", v.sdp[SHMREG_SDP_REMOTE], rem);
        if (v.version != version) {
            diag("version %llu, want %llu", (unsigned long long)v.version,
                 (unsigned long long)version);
            good = 0;
        }
        if (v.state != state) {
            diag("state %d, want %d", v.state, state);
            good = 0;
        }
        if (!test_id_eq(&v.id, id)) {
            diag("the view is of another session");
            good = 0;
        }
    }
    shmreg_read_end(h);
    return good;
}

/* Everything a view shows that a change could touch, copied out. */
typedef struct snap {
    int rc;
    uint64_t version;
    size_t n;
    unsigned char *buf;
} snap;

static void put(snap *s, const void *p, size_t len)
{
    if (len)
        memcpy(s->buf + s->n, p, len);
    s->n += len;
}

static snap snap_take(shmreg *h, const shmreg_id *id)
{
    snap s = { 0, 0, 0, malloc(SHMREG_FIELD_STR_COUNT * (SHMREG_MAX_STR + 8) + 2 * (SHMREG_MAX_SDP + 8) + 64) };
    if (s.buf == NULL)
        bail_out("out of memory");
    shmreg_session v;
    shmreg_read_begin(h);
    s.rc = shmreg_session_get(h, id, &v);
    if (s.rc == 0) {
        s.version = v.version;
        put(&s, &v.state, sizeof v.state);
        for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
            put(&s, &v.str[i].len, sizeof v.str[i].len);
            put(&s, v.str[i].ptr, v.str[i].len);
        }
        put(&s, &v.local_rtp_port, sizeof v.local_rtp_port);
        put(&s, &v.remote_rtp_port, sizeof v.remote_rtp_port);
        for (unsigned k = 0; k < 2; k++) {
            put(&s, &v.sdp[k].len, sizeof v.sdp[k].len);
            put(&s, v.sdp[k].ptr, v.sdp[k].len);
        }
    }
    shmreg_read_end(h);
    return s;
}

static int snap_same(const snap *a, const snap *b)
{
    return a->rc == b->rc && a->version == b->version && a->n == b->n &&
           memcmp(a->buf, b->buf, a->n) == 0;
}

static void snap_free(snap *s)
{
    free(s->buf);
    s->buf = NULL;
}

/* ------------------------------------------------------------ events */

typedef struct want_ev {
    uint32_t type, which;
} want_ev;

/* 1 when exactly the n events `w` (type, which) are waiting on `sub`, all
 * about session `id`, with consecutive sequence numbers. */
static int events_are(shmreg_sub *sub, const shmreg_id *id, const want_ev *w, int n)
{
    shmreg_event ev[16];
    int got = test_drain_events(sub, ev, 16);
    int good = got == n;
    if (!good)
        diag("%d events, want %d", got, n);
    for (int i = 0; i < got && i < 16; i++) {
        int match = i < n && ev[i].type == w[i].type && ev[i].which == w[i].which &&
                    test_id_eq(&ev[i].session, id) && (i == 0 || ev[i].seq == ev[i - 1].seq + 1);
        if (!match) {
            diag("event %d: %s which %u seq %llu%s", i, shmreg_event_name(ev[i].type) ? shmreg_event_name(ev[i].type) : "?",
                 ev[i].which, (unsigned long long)ev[i].seq,
                 test_id_eq(&ev[i].session, id) ? "" : " (another session)");
            if (i < n)
                diag("  want %s which %u", shmreg_event_name(w[i].type), w[i].which);
            good = 0;
        }
    }
    return good;
}

static int check_clean(shmreg *h, shmreg_check_report *r)
{
    memset(r, 0xff, sizeof *r);
    int rc = shmreg_check(h, 0, r, NULL, NULL, NULL);
    if (rc != 0 || r->problems != 0)
        diag("check: %s, %llu problems", shmreg_strerror(rc), (unsigned long long)r->problems);
    return rc == 0 && r->problems == 0;
}

/* ------------------------------------------------------------ 1-3: create */

static const char SDP_L[] = "v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                            "t=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
static const char SDP_R[] = "v=0\r\no=bob 7 7 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\n"
                            "t=0 0\r\nm=audio 5004 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n";

static void test_create_both(void)
{
    shmreg *h = reg_new("csdp-create");
    test_fieldbuf fb;
    test_fields_fill(&fb, "one", 4000);
    /* The caller's SDPs in buffers of its own, scribbled after the call:
     * the library must have copied them, not kept the pointers. */
    char loc[sizeof SDP_L], rem[sizeof SDP_R];
    memcpy(loc, SDP_L, sizeof loc);
    memcpy(rem, SDP_R, sizeof rem);
    shmreg_str sdp[2] = { { loc, sizeof loc - 1 }, { rem, sizeof rem - 1 } };
    fb.f.sdp = sdp;
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_id id;
    is(shmreg_session_create(h, &fb.f, &id), 0, "create with fields and both SDPs");
    memset(loc, 'X', sizeof loc);
    memset(rem, 'Y', sizeof rem);
    ok(view_is(h, &id, &fb.f, S(SDP_L), S(SDP_R), 1, SHMREG_STATE_INITIATING),
       "it reads back with every field, both SDPs byte for byte, version 1, Initiating");
    shmreg_event ev[8];
    int n = test_drain_events(sub, ev, 8);
    is(n, 1, "exactly one event");
    is(n >= 1 ? ev[0].type : 0, SHMREG_EV_SESSION_CREATED, "and it is session_created (no sdp_updated)");
    ok(n >= 1 && test_id_eq(&ev[0].session, &id) && ev[0].new_state == SHMREG_STATE_INITIATING &&
           ev[0].which == 0,
       "about the new session, new_state Initiating, which 0");
    is(test_stats(h).sessions, 1, "one session in the table");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

static void test_create_some(void)
{
    shmreg *h = reg_new("csdp-some");
    test_fieldbuf fb;
    test_fields_fill(&fb, "two", 6000);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);

    shmreg_str only_remote[2] = { NOSTR, S(SDP_R) };
    fb.f.sdp = only_remote;
    shmreg_id a;
    is(shmreg_session_create(h, &fb.f, &a), 0, "create with only the remote SDP ({NULL, 0} local)");
    ok(view_is(h, &a, &fb.f, NOSTR, S(SDP_R), 1, SHMREG_STATE_INITIATING),
       "local SDP empty, remote exact");
    want_ev created = { SHMREG_EV_SESSION_CREATED, 0 };
    ok(events_are(sub, &a, &created, 1), "one session_created event");

    shmreg_str only_local[2] = { S(SDP_L), { "", 0 } };
    fb.f.sdp = only_local;
    shmreg_id b;
    is(shmreg_session_create(h, &fb.f, &b), 0, "create with only the local SDP ({\"\", 0} remote)");
    ok(view_is(h, &b, &fb.f, S(SDP_L), NOSTR, 1, SHMREG_STATE_INITIATING),
       "local SDP exact, remote empty");
    ok(events_are(sub, &b, &created, 1), "one session_created event");

    fb.f.sdp = NULL;
    shmreg_id c;
    is(shmreg_session_create(h, &fb.f, &c), 0, "create with f->sdp NULL");
    ok(view_is(h, &c, &fb.f, NOSTR, NOSTR, 1, SHMREG_STATE_INITIATING),
       "as before: fields set, both SDPs empty, version 1");
    ok(events_are(sub, &c, &created, 1), "one session_created event");

    shmreg_id d;
    is(shmreg_session_create(h, NULL, &d), 0, "create with f NULL");
    ok(view_is(h, &d, NULL, NOSTR, NOSTR, 1, SHMREG_STATE_INITIATING), "all empty, version 1");
    ok(events_are(sub, &d, &created, 1), "one session_created event");
    is(test_stats(h).sessions, 4, "four sessions");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 4: the limit */

static void fill_pattern(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('!' + (i * 7 + seed * 13 + i / 251) % 94);
}

static void test_create_max(void)
{
    shmreg *h = reg_new("csdp-max");
    char *big[2];
    for (unsigned k = 0; k < 2; k++) {
        if ((big[k] = malloc(SHMREG_MAX_SDP)) == NULL)
            bail_out("out of memory");
        fill_pattern(big[k], SHMREG_MAX_SDP, k + 1);
    }
    test_fieldbuf fb;
    test_fields_fill(&fb, "max", 8000);
    shmreg_str sdp[2] = { { big[0], SHMREG_MAX_SDP }, { big[1], SHMREG_MAX_SDP } };
    fb.f.sdp = sdp;
    uint64_t used0 = test_stats(h).heap_used_bytes;
    shmreg_id id;
    is(shmreg_session_create(h, &fb.f, &id), 0, "create with both SDPs of SHMREG_MAX_SDP (%u) bytes",
       SHMREG_MAX_SDP);
    ok(view_is(h, &id, &fb.f, sdp[0], sdp[1], 1, SHMREG_STATE_INITIATING),
       "both read back exactly, with the fields");
    ok(test_stats(h).heap_used_bytes - used0 >= 2ull * SHMREG_MAX_SDP,
       "the heap holds both (%llu bytes more in use)",
       (unsigned long long)(test_stats(h).heap_used_bytes - used0));
    /* Replace one big SDP by another: the outside block is replaced too. */
    fill_pattern(big[1], SHMREG_MAX_SDP, 9);
    is(shmreg_session_update(h, &id, &fb.f, M_SDP_R), 0, "update the remote one with another %u bytes",
       SHMREG_MAX_SDP);
    ok(view_is(h, &id, &fb.f, sdp[0], sdp[1], 2, SHMREG_STATE_INITIATING),
       "both read back exactly (the local one untouched), version 2");
    shmreg_check_report r;
    ok(check_clean(h, &r), "shmreg_check: 0 problems with the session live");
    is(r.sessions, 1, "it counts one session");
    is(shmreg_session_delete(h, &id), 0, "delete it");
    shmreg_session v;
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &id, &v), SHMREG_ENOENT, "it is gone");
    shmreg_read_end(h);
    ok(check_clean(h, &r), "shmreg_check after the delete: 0 problems");
    is(r.sessions, 0, "and no session");
    is(r.leaked_blocks, 0, "and no leaked block");
    free(big[0]);
    free(big[1]);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 5: create refusals */

static void test_create_refused(void)
{
    shmreg *h = reg_new("csdp-create-no");
    shmreg_id keep = test_session_new(h);
    char *over = malloc(SHMREG_MAX_SDP + 1);
    if (over == NULL)
        bail_out("out of memory");
    fill_pattern(over, SHMREG_MAX_SDP + 1, 3);
    test_fieldbuf fb;
    test_fields_fill(&fb, "no", 1000);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);
    shmreg_stats st0 = test_stats(h);

    struct {
        const char *what;
        shmreg_str sdp[2];
    } bad[] = {
        { "a local SDP of SHMREG_MAX_SDP + 1 bytes", { { over, SHMREG_MAX_SDP + 1 }, S(SDP_R) } },
        { "a remote SDP of SHMREG_MAX_SDP + 1 bytes", { S(SDP_L), { over, SHMREG_MAX_SDP + 1 } } },
        { "a remote SDP {NULL, 5}", { S(SDP_L), { NULL, 5 } } },
        { "a local SDP {NULL, 1}", { { NULL, 1 }, NOSTR } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fb.f.sdp = bad[i].sdp;
        shmreg_id id;
        is(shmreg_session_create(h, &fb.f, &id), SHMREG_EINVAL, "create with %s: SHMREG_EINVAL", bad[i].what);
        shmreg_stats st = test_stats(h);
        ok(st.sessions == st0.sessions && st.heap_used_bytes == st0.heap_used_bytes,
           "  nothing made: %u sessions (was %u), heap used %llu (was %llu)", st.sessions, st0.sessions,
           (unsigned long long)st.heap_used_bytes, (unsigned long long)st0.heap_used_bytes);
        ok(events_are(sub, &keep, NULL, 0), "  and no event");
    }
    /* An empty SDP with a pointer, and one of exactly the limit, are fine. */
    char *max = malloc(SHMREG_MAX_SDP);
    if (max == NULL)
        bail_out("out of memory");
    memcpy(max, over, SHMREG_MAX_SDP);
    shmreg_str edge[2] = { { over, 0 }, { max, SHMREG_MAX_SDP } };
    fb.f.sdp = edge;
    shmreg_id id;
    is(shmreg_session_create(h, &fb.f, &id), 0, "create with {ptr, 0} local and a remote of exactly the limit");
    ok(view_is(h, &id, &fb.f, NOSTR, edge[1], 1, SHMREG_STATE_INITIATING), "it reads back exactly");
    is(test_stats(h).sessions, st0.sessions + 1, "one session more");
    free(max);
    free(over);
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 6-9: update */

static const char SDP_R2[] = "v=0\r\no=bob 7 8 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\n"
                             "t=0 0\r\nm=audio 5006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
static const char SDP_L3[] = "v=0\r\no=alice 1 3 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n"
                             "t=0 0\r\nm=audio 4002 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
                             "a=sendrecv\r\n";
static const char SDP_R3[] = "v=0\r\no=bob 7 9 IN IP4 198.51.100.9\r\ns=-\r\nc=IN IP4 198.51.100.9\r\n"
                             "t=0 0\r\nm=audio 5008 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n"
                             "a=recvonly\r\n";

/* A session with the fields test_fields_fill(fb, tag, port) gives and the SDPs
 * SDP_L and SDP_R; fb->f.sdp is NULL again on return. */
static shmreg_id made_whole(shmreg *h, test_fieldbuf *fb, const char *tag, uint16_t port)
{
    test_fields_fill(fb, tag, port);
    shmreg_str both[2] = { S(SDP_L), S(SDP_R) };
    fb->f.sdp = both;
    shmreg_id id;
    if (shmreg_session_create(h, &fb->f, &id) != 0)
        bail_out("create: %s", shmreg_errmsg());
    fb->f.sdp = NULL;
    return id;
}

static void test_update(void)
{
    shmreg *h = reg_new("csdp-update");
    test_fieldbuf cur;
    shmreg_id id = made_whole(h, &cur, "orig", 4000);
    shmreg_str sdp0[2] = { S(SDP_L), S(SDP_R) };
    shmreg_str loc = S(SDP_L), rem = S(SDP_R);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);

    /* 6: codec and the remote SDP together. The local SDP in f->sdp is
     * not selected and must not be used. */
    test_fieldbuf nf;
    test_fields_fill(&nf, "new", 9000);
    nf.f.str[SHMREG_FIELD_CODEC] = S("opus");
    shmreg_str sdp1[2] = { S("local SDP that must not be used"), S(SDP_R2) };
    nf.f.sdp = sdp1;
    is(shmreg_session_update(h, &id, &nf.f, M_CODEC | M_SDP_R), 0, "update codec + remote SDP");
    cur.f.str[SHMREG_FIELD_CODEC] = S("opus");
    rem = S(SDP_R2);
    ok(view_is(h, &id, &cur.f, loc, rem, 2, SHMREG_STATE_INITIATING),
       "codec and remote SDP are the new ones; other fields and the local SDP untouched; version 2");
    want_ev w6[] = { { SHMREG_EV_SESSION_UPDATED, M_CODEC }, { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_REMOTE } };
    ok(events_are(sub, &id, w6, 2),
       "events: session_updated (which = the codec bit alone), then sdp_updated (which 1), consecutive");

    /* 7: both SDPs, no field: the fields in f (all "new") are ignored. */
    shmreg_str sdp2[2] = { S(SDP_L3), S(SDP_R3) };
    nf.f.sdp = sdp2;
    is(shmreg_session_update(h, &id, &nf.f, SHMREG_MASK_SDP_BOTH), 0, "update with SHMREG_MASK_SDP_BOTH only");
    loc = S(SDP_L3);
    rem = S(SDP_R3);
    ok(view_is(h, &id, &cur.f, loc, rem, 3, SHMREG_STATE_INITIATING),
       "both SDPs new, every field untouched, version 3");
    want_ev w7[] = { { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_LOCAL }, { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_REMOTE } };
    ok(events_are(sub, &id, w7, 2), "events: sdp_updated which 0, then which 1; no session_updated");

    /* 8: clearing one SDP. */
    shmreg_str clear_l[2] = { NOSTR, S("remote that must not be used") };
    nf.f.sdp = clear_l;
    is(shmreg_session_update(h, &id, &nf.f, M_SDP_L), 0, "update the local SDP to {NULL, 0}");
    loc = NOSTR;
    ok(view_is(h, &id, &cur.f, loc, rem, 4, SHMREG_STATE_INITIATING),
       "local SDP cleared (len 0), remote untouched, version 4");
    want_ev w8[] = { { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_LOCAL } };
    ok(events_are(sub, &id, w8, 1), "one event: sdp_updated which 0");
    shmreg_str clear_r[2] = { S("local that must not be used"), { SDP_R, 0 } };
    nf.f.sdp = clear_r;
    is(shmreg_session_update(h, &id, &nf.f, M_SDP_R | SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT)), 0,
       "update the remote port and the remote SDP to {ptr, 0}");
    rem = NOSTR;
    cur.f.remote_rtp_port = nf.f.remote_rtp_port;
    ok(view_is(h, &id, &cur.f, loc, rem, 5, SHMREG_STATE_INITIATING),
       "both SDPs now empty, the remote port new, version 5");
    want_ev w8b[] = { { SHMREG_EV_SESSION_UPDATED, SHMREG_MASK(SHMREG_FIELD_REMOTE_RTP_PORT) },
                      { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_REMOTE } };
    ok(events_are(sub, &id, w8b, 2), "events: session_updated (the port bit), sdp_updated which 1");
    /* Set them again for what follows. */
    nf.f.sdp = sdp2;
    is(shmreg_session_update(h, &id, &nf.f, SHMREG_MASK_SDP_BOTH), 0, "both SDPs set again");
    loc = S(SDP_L3);
    rem = S(SDP_R3);
    ok(events_are(sub, &id, w7, 2), "events: sdp_updated 0, 1");

    /* 9: SHMREG_MASK_ALL never touches an SDP, though f->sdp is set. */
    test_fieldbuf all;
    test_fields_fill(&all, "all", 12000);
    shmreg_str sdp9[2] = { S("local never stored"), S("remote never stored") };
    all.f.sdp = sdp9;
    is(shmreg_session_update(h, &id, &all.f, SHMREG_MASK_ALL), 0, "update with SHMREG_MASK_ALL and f->sdp set");
    ok(view_is(h, &id, &all.f, loc, rem, 7, SHMREG_STATE_INITIATING),
       "every field replaced, both SDPs untouched, version 7");
    want_ev w9[] = { { SHMREG_EV_SESSION_UPDATED, SHMREG_MASK_ALL } };
    ok(events_are(sub, &id, w9, 1), "one event: session_updated with which = SHMREG_MASK_ALL; no sdp_updated");

    /* Fields and both SDPs at once: three events. */
    test_fields_fill(&nf, "three", 20000);
    nf.f.sdp = sdp0;
    uint32_t m = SHMREG_MASK(SHMREG_FIELD_FROM_URI) | SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT) |
                 SHMREG_MASK_SDP_BOTH;
    is(shmreg_session_update(h, &id, &nf.f, m), 0, "update from URI, local port and both SDPs");
    all.f.str[SHMREG_FIELD_FROM_URI] = nf.f.str[SHMREG_FIELD_FROM_URI];
    all.f.local_rtp_port = nf.f.local_rtp_port;
    loc = S(SDP_L);
    rem = S(SDP_R);
    ok(view_is(h, &id, &all.f, loc, rem, 8, SHMREG_STATE_INITIATING), "all four changed, version 8");
    want_ev w10[] = { { SHMREG_EV_SESSION_UPDATED,
                        SHMREG_MASK(SHMREG_FIELD_FROM_URI) | SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT) },
                      { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_LOCAL },
                      { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_REMOTE } };
    ok(events_are(sub, &id, w10, 3), "events: session_updated (the two field bits), sdp_updated 0, 1");

    /* The SDP must still be the one set at create time when only the
     * state moves: a transition is no record change. */
    is(shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, NULL), 0,
       "transition to Ringing");
    ok(view_is(h, &id, &all.f, loc, rem, 9, SHMREG_STATE_RINGING), "fields and SDPs kept, version 9");
    want_ev wt[] = { { SHMREG_EV_STATE_CHANGED, 0 } };
    ok(events_are(sub, &id, wt, 1), "one state_changed event");
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 10: update refusals */

static void test_update_refused(void)
{
    shmreg *h = reg_new("csdp-update-no");
    test_fieldbuf fb;
    shmreg_id id = made_whole(h, &fb, "keep", 3000);
    char *over = malloc(SHMREG_MAX_SDP + 1);
    if (over == NULL)
        bail_out("out of memory");
    fill_pattern(over, SHMREG_MAX_SDP + 1, 5);
    shmreg_sub *sub = test_subscribe(h, SHMREG_EV_ALL, NULL);

    test_fieldbuf nf;
    test_fields_fill(&nf, "refused", 7000);
    shmreg_str good[2] = { S(SDP_L3), S(SDP_R3) };
    shmreg_str big_l[2] = { { over, SHMREG_MAX_SDP + 1 }, S(SDP_R3) };
    shmreg_str big_r[2] = { S(SDP_L3), { over, SHMREG_MAX_SDP + 1 } };
    shmreg_str null_l[2] = { { NULL, 3 }, S(SDP_R3) };
    shmreg_str null_r[2] = { S(SDP_L3), { NULL, 5 } };
    struct {
        const char *what;
        const shmreg_str *sdp;
        uint32_t mask;
    } bad[] = {
        { "the remote SDP bit with f->sdp NULL", NULL, M_SDP_R },
        { "codec + the local SDP bit with f->sdp NULL", NULL, M_CODEC | M_SDP_L },
        { "SHMREG_MASK_SDP_BOTH with f->sdp NULL", NULL, SHMREG_MASK_SDP_BOTH },
        { "mask 1u << 26", good, 1u << 26 },
        { "codec | 1u << 26", good, M_CODEC | (1u << 26) },
        { "both SDP bits | 1u << 27", good, SHMREG_MASK_SDP_BOTH | (1u << 27) },
        { "mask 1u << 31", good, 1u << 31 },
        { "mask 0", good, 0 },
        { "an oversize local SDP, selected (with the codec)", big_l, M_CODEC | M_SDP_L },
        { "an oversize remote SDP, selected with both", big_r, SHMREG_MASK_SDP_BOTH },
        { "a local SDP {NULL, 3}, selected", null_l, M_SDP_L },
        { "a remote SDP {NULL, 5}, selected (with the codec)", null_r, M_CODEC | M_SDP_R },
    };
    snap before = snap_take(h, &id);
    is(before.rc, 0, "a snapshot of the session");
    is(before.version, 1, "at version 1");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t used0 = test_stats(h).heap_used_bytes;
        nf.f.sdp = bad[i].sdp;
        is(shmreg_session_update(h, &id, &nf.f, bad[i].mask), SHMREG_EINVAL, "update with %s: SHMREG_EINVAL",
           bad[i].what);
        snap after = snap_take(h, &id);
        uint64_t used = test_stats(h).heap_used_bytes;
        int quiet = events_are(sub, &id, NULL, 0);
        ok(snap_same(&before, &after) && used == used0 && quiet,
           "  nothing changed: version %llu, fields and SDP bytes the same, heap used %llu (was %llu), no event",
           (unsigned long long)after.version, (unsigned long long)used, (unsigned long long)used0);
        snap_free(&after);
    }
    snap_free(&before);
    ok(view_is(h, &id, &fb.f, S(SDP_L), S(SDP_R), 1, SHMREG_STATE_INITIATING),
       "after all the refusals the session is as created");

    /* What the mask does not select is not looked at. */
    nf.f.sdp = big_l;
    is(shmreg_session_update(h, &id, &nf.f, M_CODEC | M_SDP_R), 0,
       "an oversize local SDP that the mask does not select is ignored: update succeeds");
    fb.f.str[SHMREG_FIELD_CODEC] = nf.f.str[SHMREG_FIELD_CODEC];
    ok(view_is(h, &id, &fb.f, S(SDP_L), S(SDP_R3), 2, SHMREG_STATE_INITIATING),
       "codec and remote SDP changed, local untouched, version 2");
    want_ev w[] = { { SHMREG_EV_SESSION_UPDATED, M_CODEC }, { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_REMOTE } };
    ok(events_are(sub, &id, w, 2), "events: session_updated, sdp_updated which 1");
    nf.f.sdp = null_r;
    is(shmreg_session_update(h, &id, &nf.f, M_SDP_L), 0, "a remote {NULL, 5} not selected is ignored too");
    ok(view_is(h, &id, &fb.f, S(SDP_L3), S(SDP_R3), 3, SHMREG_STATE_INITIATING),
       "local SDP changed, version 3");
    want_ev w2[] = { { SHMREG_EV_SDP_UPDATED, SHMREG_SDP_LOCAL } };
    ok(events_are(sub, &id, w2, 1), "one event: sdp_updated which 0");

    /* A session that is gone. */
    is(shmreg_session_delete(h, &id), 0, "delete the session");
    test_drain_events(sub, NULL, 0);
    nf.f.sdp = good;
    is(shmreg_session_update(h, &id, &nf.f, M_CODEC | SHMREG_MASK_SDP_BOTH), SHMREG_ENOENT,
       "update with SDPs of a deleted session: SHMREG_ENOENT");
    ok(events_are(sub, &id, NULL, 0), "and no event");
    free(over);
    shmreg_unsubscribe(sub);
    test_reg_destroy(h);
}

/* ------------------------------------------------------------ 11, 12: processes */

/* Version n of the racing session: codec "v<n>", remote SDP "v<n>\n" and
 * then 100 + (n * 37) % 3000 bytes of a pattern of n. */
#define RACE_SDP_MAX (16 + 100 + 3000)

static size_t race_sdp(unsigned n, char *out)
{
    size_t len = (size_t)snprintf(out, 16, "v%u\n", n);
    size_t tail = 100 + (n * 37u) % 3000;
    for (size_t i = 0; i < tail; i++)
        out[len + i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(n * 7u + i) % 36];
    return len + tail;
}

/* The version number `s` (a codec "v<n>") names, or -1. */
static long codec_version(shmreg_str s)
{
    if (s.len < 2 || s.len > 11 || s.ptr[0] != 'v')
        return -1;
    long n = 0;
    for (size_t i = 1; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9')
            return -1;
        n = n * 10 + (s.ptr[i] - '0');
    }
    return n;
}

/* Session view `v` shows one whole version: the codec's number n, the
 * remote SDP exactly race_sdp(n), the other fields and the local SDP as
 * created. Returns n, or -1 with the reason in why[]. */
static long race_consistent(const shmreg_session *v, char *why, size_t cap)
{
    long n = codec_version(v->str[SHMREG_FIELD_CODEC]);
    if (n < 0) {
        snprintf(why, cap, "codec '%.*s' is no version", (int)v->str[SHMREG_FIELD_CODEC].len,
                 v->str[SHMREG_FIELD_CODEC].ptr);
        return -1;
    }
    char want[RACE_SDP_MAX];
    size_t len = race_sdp((unsigned)n, want);
    shmreg_str r = v->sdp[SHMREG_SDP_REMOTE];
    size_t pl = (size_t)snprintf(NULL, 0, "v%ld\n", n);
    if (r.len < pl || memcmp(r.ptr, want, pl) != 0) {
        snprintf(why, cap, "codec v%ld with a remote SDP starting '%.*s'", n, (int)(r.len < 12 ? r.len : 12),
                 r.ptr ? r.ptr : "");
        return -1;
    }
    if (r.len != len) {
        snprintf(why, cap, "codec v%ld with a remote SDP of %zu bytes, want %zu", n, r.len, len);
        return -1;
    }
    if (memcmp(r.ptr, want, len) != 0) {
        snprintf(why, cap, "codec v%ld: remote SDP bytes differ from the pattern", n);
        return -1;
    }
    if (!test_str_is(v->sdp[SHMREG_SDP_LOCAL], SDP_L, sizeof SDP_L - 1) ||
        !test_str_is(v->str[SHMREG_FIELD_FROM_URI], "sip:race@x", 10)) {
        snprintf(why, cap, "codec v%ld: the local SDP or the from URI changed", n);
        return -1;
    }
    return n;
}

static shmreg_id race_create(shmreg *h)
{
    char sdp[RACE_SDP_MAX];
    shmreg_str two[2] = { S(SDP_L), { sdp, race_sdp(0, sdp) } };
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:race@x");
    f.str[SHMREG_FIELD_CODEC] = S("v0");
    f.sdp = two;
    shmreg_id id;
    int rc = shmreg_session_create(h, &f, &id);
    if (rc != 0)
        bail_out("create: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

/* Make version n of the session. */
static int race_update(shmreg *h, const shmreg_id *id, unsigned n)
{
    char codec[16], sdp[RACE_SDP_MAX];
    shmreg_str two[2] = { S("not selected"), { sdp, race_sdp(n, sdp) } };
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_CODEC] = (shmreg_str){ codec, (size_t)snprintf(codec, sizeof codec, "v%u", n) };
    f.sdp = two;
    return shmreg_session_update(h, id, &f, M_CODEC | M_SDP_R);
}

#define NREADERS 2
#define RACE_N 3000u
#define RACE_STEP 500u /* writer checkpoints */

struct race {
    shmreg_id id;
    _Atomic int ready, done;
    _Atomic uint64_t writer_errors;
    struct {
        _Atomic uint64_t reads, mismatches, distinct, backwards, version_below, version_lag;
        _Atomic long last; /* the newest version this reader has seen */
        char first[200];
    } r[NREADERS];
};
static struct race *race;

static void race_writer(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    double t0 = test_mono_s();
    while (atomic_load(&race->ready) < NREADERS && test_mono_s() - t0 < 10)
        test_sleep_us(100);
    for (unsigned n = 1; n <= RACE_N; n++) {
        int rc = race_update(h, &race->id, n);
        if (rc != 0) {
            atomic_fetch_add(&race->writer_errors, 1);
            diag("update %u: %s (%s)", n, shmreg_strerror(rc), shmreg_errmsg());
        }
        if (n % 100 == 0)
            test_sleep_us(50); /* let both readers in, even on one CPU */
        /* At each checkpoint wait until both readers have seen it: each
         * then sees at least the versions 0, 500, ..., 2500 and 3000, so
         * the readers provably ran while the record was being swapped. */
        double tw = test_mono_s();
        if (n % RACE_STEP == 0 && n < RACE_N)
            for (int i = 0; i < NREADERS; i++)
                while (atomic_load(&race->r[i].last) < (long)n && test_mono_s() - tw < 5)
                    test_sleep_us(20);
    }
    atomic_store(&race->done, 1);
    shmreg_close(h);
}

static void race_reader(void *arg)
{
    int me = (int)(intptr_t)arg;
    shmreg *h = test_reg_attach();
    uint64_t reads = 0, bad = 0, distinct = 0, back = 0, below = 0, lag = 0;
    long last = -1;
    double t0 = test_mono_s();
    for (;;) {
        int done = atomic_load(&race->done);
        shmreg_session v;
        char why[160];
        shmreg_read_begin(h);
        int rc = shmreg_session_get(h, &race->id, &v);
        long n = -1;
        if (rc != 0)
            snprintf(why, sizeof why, "session_get: %s", shmreg_strerror(rc));
        else
            n = race_consistent(&v, why, sizeof why);
        if (n >= 0 && n < last) {
            snprintf(why, sizeof why, "v%ld read after v%ld", n, last);
            back++;
        }
        if (n >= 0 && v.version < (uint64_t)n)
            below++; /* the version may lag the record it shows by 1 at most */
        if (n >= 0 && v.version != (uint64_t)n + 1)
            lag++;
        shmreg_read_end(h);
        reads++;
        if (n < 0 || (n >= 0 && n < last)) {
            if (bad++ == 0)
                snprintf(race->r[me].first, sizeof race->r[me].first, "%s", why);
        } else if (n != last) {
            distinct++;
            last = n;
            atomic_store(&race->r[me].last, n);
        }
        if (reads == 1)
            atomic_fetch_add(&race->ready, 1);
        if (done || test_mono_s() - t0 > 30)
            break;
    }
    atomic_store(&race->r[me].reads, reads);
    atomic_store(&race->r[me].mismatches, bad);
    atomic_store(&race->r[me].distinct, distinct);
    atomic_store(&race->r[me].backwards, back);
    atomic_store(&race->r[me].version_below, below);
    atomic_store(&race->r[me].version_lag, lag);
    shmreg_close(h);
}

static void test_race(void)
{
    shmreg *h = reg_new("csdp-race");
    race = test_shared(sizeof *race);
    race->id = race_create(h);
    for (int i = 0; i < NREADERS; i++)
        atomic_store(&race->r[i].last, -1);
    double t0 = test_mono_s();
    pid_t rd[NREADERS];
    for (int i = 0; i < NREADERS; i++)
        rd[i] = test_fork(race_reader, (void *)(intptr_t)i);
    pid_t wr = test_fork(race_writer, NULL);
    is(test_wait(wr), 0, "the writer made its %u updates (codec + remote SDP) without error", RACE_N);
    atomic_store(&race->done, 1); /* also if it died */
    for (int i = 0; i < NREADERS; i++)
        is(test_wait(rd[i]), 0, "reader %d exits cleanly", i);
    is(atomic_load(&race->writer_errors), 0, "no update failed");
    for (int i = 0; i < NREADERS; i++) {
        uint64_t reads = atomic_load(&race->r[i].reads), bad = atomic_load(&race->r[i].mismatches);
        diag("reader %d: %llu reads, %llu versions seen, %llu mismatches, %llu views whose version "
             "lagged the record by one", i, (unsigned long long)reads,
             (unsigned long long)atomic_load(&race->r[i].distinct), (unsigned long long)bad,
             (unsigned long long)atomic_load(&race->r[i].version_lag));
        if (!is(bad, 0, "reader %d: every view is one whole version (codec, SDP prefix, length, bytes)", i))
            diag("first: %s", race->r[i].first);
        is(atomic_load(&race->r[i].backwards), 0, "reader %d: never a version older than one seen before", i);
        is(atomic_load(&race->r[i].version_below), 0,
           "reader %d: never a view whose version is below the change it shows", i);
        ok(reads > 0, "reader %d made reads", i);
        ok(atomic_load(&race->r[i].distinct) >= 2 + RACE_N / RACE_STEP - 1,
           "reader %d saw more than one version: at least v0, every checkpoint and v%u", i, RACE_N);
    }
    char sdp[RACE_SDP_MAX];
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:race@x");
    char codec[16];
    f.str[SHMREG_FIELD_CODEC] = (shmreg_str){ codec, (size_t)snprintf(codec, sizeof codec, "v%u", RACE_N) };
    ok(view_is(h, &race->id, &f, S(SDP_L), (shmreg_str){ sdp, race_sdp(RACE_N, sdp) }, 1 + RACE_N,
               SHMREG_STATE_INITIATING),
       "the final content is version %u's, session version %u", RACE_N, 1 + RACE_N);
    shmreg_check_report r;
    ok(check_clean(h, &r), "shmreg_check: 0 problems");
    diag("race took %.2f s", test_mono_s() - t0);
    test_reg_destroy(h);
}

#define KILL_ROUNDS 20

struct victim {
    shmreg_id id;
    _Atomic unsigned start, done;
    _Atomic int attached;
};
static struct victim *vic;

static void victim(void *arg)
{
    (void)arg;
    shmreg *h = test_reg_attach();
    unsigned n = atomic_load(&vic->start);
    atomic_store(&vic->attached, 1);
    for (;;) {
        int rc = race_update(h, &vic->id, ++n);
        if (rc != 0) {
            diag("update %u: %s (%s)", n, shmreg_strerror(rc), shmreg_errmsg());
            _exit(3);
        }
        atomic_store(&vic->done, n);
    }
}

static void test_sigkill(void)
{
    shmreg *h = reg_new("csdp-kill");
    vic = test_shared(sizeof *vic);
    vic->id = race_create(h);
    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    note("seed %u", seed);
    srand(seed);
    int killed = 0, whole = 0, in_step = 0, reaped = 0, clean = 0, behind = 0;
    long ahead = 0;
    unsigned n = 0;
    for (int round = 0; round < KILL_ROUNDS; round++) {
        atomic_store(&vic->start, n);
        atomic_store(&vic->done, n);
        atomic_store(&vic->attached, 0);
        pid_t pid = test_fork(victim, NULL);
        double t0 = test_mono_s();
        while (!atomic_load(&vic->attached) && test_mono_s() - t0 < 10)
            test_sleep_us(100);
        test_sleep_us(500 + (unsigned)(rand() % 4000));
        kill(pid, SIGKILL);
        killed += test_wait(pid) == 128 + SIGKILL;
        unsigned done = atomic_load(&vic->done);

        shmreg_session v;
        char why[160] = "";
        long got = -1;
        uint64_t version = 0;
        shmreg_read_begin(h);
        int rc = shmreg_session_get(h, &vic->id, &v);
        if (rc == 0) {
            got = race_consistent(&v, why, sizeof why);
            version = v.version;
        } else {
            snprintf(why, sizeof why, "session_get: %s", shmreg_strerror(rc));
        }
        shmreg_read_end(h);
        if (got >= 0)
            whole++;
        else
            diag("round %d: %s", round, why);
        /* The last update that returned, or the one in flight. */
        if (got >= 0 && ((unsigned)got == done || (unsigned)got == done + 1))
            in_step++;
        else if (got >= 0)
            diag("round %d: shows v%ld, the victim had finished v%u", round, got, done);
        if (got >= 0 && (uint64_t)got + 1 > version)
            note("round %d: the kill landed between a record swap and its version step", round);
        int nr = shmreg_reap(h);
        if (nr == 1)
            reaped++;
        else
            diag("round %d: reap cleared %d handles", round, nr);
        /* The reap announces a change the kill cut short: the version is
         * never behind the changes made (it may be ahead: a note is
         * announced whether or not its change was made). */
        uint64_t after = test_session_version(h, &vic->id);
        if (got >= 0) {
            behind += after < (uint64_t)got + 1;
            ahead = (long)after - (long)got - 1;
        }
        shmreg_check_report r;
        clean += check_clean(h, &r);
        n = got >= 0 ? (unsigned)got : done + 1;
    }
    is(killed, KILL_ROUNDS, "%d writers killed with SIGKILL in the middle of updates", KILL_ROUNDS);
    is(whole, KILL_ROUNDS, "after each kill the session reads as one whole version (codec and SDP agree)");
    is(in_step, KILL_ROUNDS, "each time the version shown is the victim's last finished update or the one in flight");
    is(reaped, KILL_ROUNDS, "shmreg_reap cleared the victim's handle each time");
    is(clean, KILL_ROUNDS, "and shmreg_check then reported 0 problems each time");
    is(behind, 0, "after each reap the version is not behind the changes made");
    note("%u updates in all; the session's version ends %ld ahead of its change count", n, ahead);
    shmreg_check_report r;
    memset(&r, 0, sizeof r);
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    diag("repair reclaimed %llu leaked blocks", (unsigned long long)r.reclaimed_blocks);
    ok(check_clean(h, &r) && r.leaked_blocks == 0, "after a repair, a check finds no problem and no leak");
    test_reg_destroy(h);
}

int main(void)
{
    test_watchdog_install();
    TEST_RUN(test_create_both);
    TEST_RUN(test_create_some);
    TEST_RUN(test_create_max);
    TEST_RUN(test_create_refused);
    TEST_RUN(test_update);
    TEST_RUN(test_update_refused);
    TEST_RUN(test_race);
    TEST_RUN(test_sigkill);
    alarm(0);
    return done_testing();
}
