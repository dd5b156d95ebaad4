/*
 * session.c — the life of one session, read in place: create, get, update,
 * SDPs, state transitions, counters, delete; limits and full tables; and
 * pointers that stay valid inside a read section while the value changes.
 */
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

static void close_destroy(shmreg *h)
{
    char path[512];
    snprintf(path, sizeof path, "%s", shmreg_path(h));
    shmreg_close(h);
    shmreg_destroy(path, 1);
}

/* A deep copy of a session view, for "nothing changed" comparisons. */
struct snap {
    int rc, state;
    char *str[SHMREG_FIELD_STR_COUNT];
    size_t len[SHMREG_FIELD_STR_COUNT];
    uint16_t lport, rport;
    char *sdp[2];
    size_t sdplen[2];
    uint64_t ctr[SHMREG_CTR_COUNT], created, updated;
    uint32_t ndialogs;
};

static char *dup_mem(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    if (n)
        memcpy(d, p, n);
    d[n] = 0;
    return d;
}

static void snap_take(shmreg *h, const shmreg_id *id, struct snap *s)
{
    shmreg_session v;
    memset(s, 0, sizeof *s);
    shmreg_read_begin(h);
    s->rc = shmreg_session_get(h, id, &v);
    if (s->rc == 0) {
        s->state = v.state;
        for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
            s->str[i] = dup_mem(v.str[i].ptr, v.str[i].len);
            s->len[i] = v.str[i].len;
        }
        for (int i = 0; i < 2; i++) {
            s->sdp[i] = dup_mem(v.sdp[i].ptr, v.sdp[i].len);
            s->sdplen[i] = v.sdp[i].len;
        }
        s->lport = v.local_rtp_port;
        s->rport = v.remote_rtp_port;
        memcpy(s->ctr, v.counter, sizeof s->ctr);
        s->created = v.created_ns;
        s->updated = v.updated_ns;
        s->ndialogs = v.ndialogs;
    }
    shmreg_read_end(h);
}

static void snap_free(struct snap *s)
{
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        free(s->str[i]);
    free(s->sdp[0]);
    free(s->sdp[1]);
}

static int snap_same(const struct snap *a, const struct snap *b)
{
    if (a->rc != b->rc || a->state != b->state || a->lport != b->lport ||
        a->rport != b->rport || a->created != b->created ||
        a->updated != b->updated || a->ndialogs != b->ndialogs ||
        memcmp(a->ctr, b->ctr, sizeof a->ctr) != 0)
        return 0;
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        if (a->len[i] != b->len[i] || memcmp(a->str[i], b->str[i], a->len[i]) != 0)
            return 0;
    for (int i = 0; i < 2; i++)
        if (a->sdplen[i] != b->sdplen[i] || memcmp(a->sdp[i], b->sdp[i], a->sdplen[i]) != 0)
            return 0;
    return 1;
}

/* Check that `op` (already run, result `rc`) failed with `want` and left the
 * session exactly as `before`. */
static void unchanged(shmreg *h, const shmreg_id *id, const struct snap *before,
                      int rc, int want, const char *what)
{
    struct snap after;
    is(rc, want, "%s gives %s", what, shmreg_strerror(want));
    snap_take(h, id, &after);
    ok(snap_same(before, &after), "%s changes nothing", what);
    snap_free(&after);
}

static const char APPDATA[] = { 0x00, 0x01, (char)0xff, 0x7f, 0x00, 'x' };

static shmreg_fields sample_fields(void)
{
    shmreg_fields f;
    memset(&f, 0, sizeof f);
    f.str[SHMREG_FIELD_FROM_URI] = S("sip:alice@atlanta.example.com");
    f.str[SHMREG_FIELD_TO_URI] = S("sip:bob@biloxi.example.com");
    f.str[SHMREG_FIELD_DISPLAY_NAME] = S("Alice \"A.\" Liddell");
    f.str[SHMREG_FIELD_CALL_ID] = S("a84b4c76e66710@pc33.atlanta.example.com");
    f.str[SHMREG_FIELD_LOCAL_TAG] = S("1928301774");
    f.str[SHMREG_FIELD_REMOTE_TAG] = S("a6c85cf");
    f.str[SHMREG_FIELD_CODEC] = S("PCMU/8000");
    f.str[SHMREG_FIELD_FAILURE_REASON] = S("");
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ APPDATA, sizeof APPDATA };
    f.local_rtp_port = 49170;
    f.remote_rtp_port = 3456;
    return f;
}

static const char *FIELD_NAME[SHMREG_FIELD_STR_COUNT] = {
    "from URI", "to URI", "display name", "Call-ID", "local tag",
    "remote tag", "codec", "failure reason", "app data",
};

static void test_create_get(shmreg *h)
{
    shmreg_fields f = sample_fields();
    shmreg_id id, zero;
    shmreg_session v;
    memset(&zero, 0, sizeof zero);
    memset(&id, 0, sizeof id);

    uint64_t t0 = test_now_ns();
    is(shmreg_session_create(h, &f, &id), 0, "create a session with every field set");
    uint64_t t1 = test_now_ns();
    ok(memcmp(&id, &zero, sizeof id) != 0, "it gets a non-zero ID");

    is(shmreg_session_get(h, &id, &v), SHMREG_ENOREAD,
       "get outside a read section gives SHMREG_ENOREAD");
    is(shmreg_read_begin(h), 0, "read_begin opens a section");
    memset(&v, 0xee, sizeof v);
    is(shmreg_session_get(h, &id, &v), 0, "get inside the section finds the session");
    ok(memcmp(&v.id, &id, sizeof id) == 0, "the view carries the session's ID");
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        ok(test_str_is(v.str[i], f.str[i].ptr, f.str[i].len),
           "the %s reads back byte-exact (%zu bytes)", FIELD_NAME[i], f.str[i].len);
    is(v.local_rtp_port, 49170, "the local RTP port reads back");
    is(v.remote_rtp_port, 3456, "the remote RTP port reads back");
    is(v.state, SHMREG_STATE_INITIATING, "a new session is Initiating");
    is(v.owner_pid, getpid(), "owner_pid is the creating process");
    ok(v.created_ns + 1000000000ull >= t0 && v.created_ns <= t1 + 1000000000ull,
       "created_ns is the time of creation");
    ok(v.created_ns <= v.updated_ns, "created_ns <= updated_ns");
    ok(v.updated_ns <= t1 + 1000000000ull, "updated_ns is not in the future");
    is(v.config_gen, shmreg_config_gen(h), "config_gen is the registry's generation");
    is(v.sdp[0].len, 0, "no local SDP yet");
    is(v.sdp[1].len, 0, "no remote SDP yet");
    int zc = 1;
    for (int i = 0; i < SHMREG_CTR_COUNT; i++)
        zc &= v.counter[i] == 0;
    ok(zc, "all counters start at 0");
    is(v.ndialogs, 0, "no dialogs bound");

    shmreg_id unknown;
    memset(&unknown, 0x42, sizeof unknown);
    is(shmreg_session_get(h, &unknown, &v), SHMREG_ENOENT, "get of an unknown ID gives SHMREG_ENOENT");
    is(shmreg_read_end(h), 0, "read_end leaves the section");
    is(shmreg_session_get(h, &id, &v), SHMREG_ENOREAD, "after read_end get is SHMREG_ENOREAD again");

    shmreg_id id2;
    is(shmreg_session_create(h, NULL, &id2), 0, "create with NULL fields");
    ok(memcmp(&id, &id2, sizeof id) != 0, "the second session has another ID");
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &id2, &v), 0, "get it");
    int empty = 1;
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        empty &= v.str[i].len == 0;
    ok(empty, "all its strings are empty");
    ok(v.local_rtp_port == 0 && v.remote_rtp_port == 0, "its ports are 0");
    shmreg_read_end(h);
    is(shmreg_session_delete(h, &id), 0, "delete the first");
    is(shmreg_session_delete(h, &id2), 0, "delete the second");
}

static void test_update(shmreg *h)
{
    shmreg_fields f = sample_fields(), g;
    shmreg_id id;
    struct snap a;
    shmreg_session v;

    shmreg_session_create(h, &f, &id);
    snap_take(h, &id, &a);

    memset(&g, 0, sizeof g);
    g.str[SHMREG_FIELD_TO_URI] = S("sip:carol@chicago.example.com");
    g.str[SHMREG_FIELD_FROM_URI] = S("sip:mallory@ignored.example");   /* not in mask */
    g.local_rtp_port = 50000;
    g.remote_rtp_port = 1;                                             /* not in mask */
    usleep(2000);
    is(shmreg_session_update(h, &id, &g,
                             SHMREG_MASK(SHMREG_FIELD_TO_URI) |
                             SHMREG_MASK(SHMREG_FIELD_LOCAL_RTP_PORT)), 0,
       "update the to URI and local port");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    ok(test_str_is(v.str[SHMREG_FIELD_TO_URI], "sip:carol@chicago.example.com", 29),
       "the masked to URI changed");
    is(v.local_rtp_port, 50000, "the masked local port changed");
    is(v.remote_rtp_port, 3456, "the unmasked remote port kept its value");
    int kept = 1;
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        if (i != SHMREG_FIELD_TO_URI)
            kept &= test_str_is(v.str[i], a.str[i], a.len[i]);
    ok(kept, "every unmasked string kept its value");
    is(v.state, a.state, "the state is unchanged");
    ok(v.updated_ns > a.updated, "update advances updated_ns");
    is(v.created_ns, a.created, "created_ns is unchanged");
    shmreg_read_end(h);
    snap_free(&a);

    /* App data is bytes, NULs included. */
    static const char blob[] = { 0, 0, 0, 1, 2, 3 };
    memset(&g, 0, sizeof g);
    g.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ blob, sizeof blob };
    g.str[SHMREG_FIELD_FAILURE_REASON] = S("486 Busy Here");
    is(shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_APP_DATA) |
                                         SHMREG_MASK(SHMREG_FIELD_FAILURE_REASON)), 0,
       "update app data and failure reason");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    ok(test_str_is(v.str[SHMREG_FIELD_APP_DATA], blob, sizeof blob), "app data with NULs reads back");
    ok(test_str_is(v.str[SHMREG_FIELD_FAILURE_REASON], "486 Busy Here", 13), "failure reason reads back");
    shmreg_read_end(h);

    memset(&g, 0, sizeof g);
    is(shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_CODEC)), 0,
       "update the codec to the empty string");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is(v.str[SHMREG_FIELD_CODEC].len, 0, "the codec is now empty");
    ok(test_str_is(v.str[SHMREG_FIELD_FROM_URI], "sip:alice@atlanta.example.com", 29),
       "and the from URI is still Alice");
    shmreg_read_end(h);

    /* Limits: over-long input changes nothing. */
    char *big = malloc(SHMREG_MAX_STR + 2);
    memset(big, 'x', SHMREG_MAX_STR + 1);
    snap_take(h, &id, &a);
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        if (i == SHMREG_FIELD_APP_DATA)
            continue;
        memset(&g, 0, sizeof g);
        g.str[i] = (shmreg_str){ big, SHMREG_MAX_STR + 1 };
        char what[128];
        snprintf(what, sizeof what, "update with a %s of SHMREG_MAX_STR+1 bytes", FIELD_NAME[i]);
        unchanged(h, &id, &a, shmreg_session_update(h, &id, &g, SHMREG_MASK_ALL), SHMREG_EINVAL, what);
    }
    memset(&g, 0, sizeof g);
    g.str[SHMREG_FIELD_TO_URI] = S("sip:not-applied@example.com");
    g.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ big, SHMREG_MAX_APPDATA + 1 };
    unchanged(h, &id, &a,
              shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_TO_URI) |
                                                SHMREG_MASK(SHMREG_FIELD_APP_DATA)),
              SHMREG_EINVAL, "update with app data of SHMREG_MAX_APPDATA+1 bytes and a valid to URI");
    unchanged(h, &id, &a, shmreg_session_update(h, &id, &g, SHMREG_MASK_ALL + 1u),
              SHMREG_EINVAL, "update with a mask bit beyond SHMREG_MASK_ALL");
    unchanged(h, &id, &a, shmreg_session_update(h, &id, &g, 1u << 31),
              SHMREG_EINVAL, "update with mask bit 31");

    uint64_t c0[SHMREG_STATE_COUNT], c1[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c0, SHMREG_STATE_COUNT);
    shmreg_id nid;
    f = sample_fields();
    f.str[SHMREG_FIELD_DISPLAY_NAME] = (shmreg_str){ big, SHMREG_MAX_STR + 1 };
    is(shmreg_session_create(h, &f, &nid), SHMREG_EINVAL,
       "create with a display name of SHMREG_MAX_STR+1 bytes gives SHMREG_EINVAL");
    f = sample_fields();
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ big, SHMREG_MAX_APPDATA + 1 };
    is(shmreg_session_create(h, &f, &nid), SHMREG_EINVAL,
       "create with app data of SHMREG_MAX_APPDATA+1 bytes gives SHMREG_EINVAL");
    shmreg_session_counts(h, c1, SHMREG_STATE_COUNT);
    is(c1[0], c0[0], "and neither failed create left a session behind");

    /* Exactly at the limits is fine. */
    for (size_t i = 0; i < SHMREG_MAX_STR; i++)
        big[i] = (char)('a' + i % 26);
    memset(&g, 0, sizeof g);
    g.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){ big, SHMREG_MAX_STR };
    g.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ big, SHMREG_MAX_APPDATA };
    is(shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_FROM_URI) |
                                         SHMREG_MASK(SHMREG_FIELD_APP_DATA)), 0,
       "update with a from URI of exactly SHMREG_MAX_STR and app data of exactly SHMREG_MAX_APPDATA");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is_mem(v.str[SHMREG_FIELD_FROM_URI].ptr, v.str[SHMREG_FIELD_FROM_URI].len, big,
           SHMREG_MAX_STR, "the SHMREG_MAX_STR-byte from URI reads back");
    is_mem(v.str[SHMREG_FIELD_APP_DATA].ptr, v.str[SHMREG_FIELD_APP_DATA].len, big,
           SHMREG_MAX_APPDATA, "the SHMREG_MAX_APPDATA-byte app data reads back");
    shmreg_read_end(h);
    f = sample_fields();
    for (int i = 0; i < SHMREG_FIELD_APP_DATA; i++)
        f.str[i] = (shmreg_str){ big, SHMREG_MAX_STR };
    f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){ big, SHMREG_MAX_APPDATA };
    is(shmreg_session_create(h, &f, &nid), 0, "create with every string at its limit");
    shmreg_read_begin(h);
    shmreg_session_get(h, &nid, &v);
    int all = 1;
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        all &= test_str_is(v.str[i], f.str[i].ptr, f.str[i].len);
    ok(all, "and every one reads back");
    shmreg_read_end(h);
    shmreg_session_delete(h, &nid);

    shmreg_id unknown;
    memset(&unknown, 0x17, sizeof unknown);
    is(shmreg_session_update(h, &unknown, &g, SHMREG_MASK(SHMREG_FIELD_CODEC)), SHMREG_ENOENT,
       "update of an unknown ID gives SHMREG_ENOENT");
    snap_free(&a);
    free(big);
    shmreg_session_delete(h, &id);
}

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (char)(seed >> 16);
    }
}

static void test_sdp(shmreg *h)
{
    static const char local[] =
        "v=0\r\no=alice 2890844526 2890844526 IN IP4 atlanta.example.com\r\n"
        "s=-\r\nc=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0\r\n"
        "a=rtpmap:0 PCMU/8000\r\n";
    static const char remote[] =
        "v=0\r\no=bob 2808844564 2808844564 IN IP4 biloxi.example.com\r\n"
        "s=-\r\nc=IN IP4 192.0.2.201\r\nt=0 0\r\nm=audio 3456 RTP/AVP 0\r\n";
    shmreg_id id;
    shmreg_session v;
    struct snap a;
    shmreg_session_create(h, NULL, &id);

    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, local, sizeof local - 1), 0, "set the local SDP");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, remote, sizeof remote - 1), 0, "set the remote SDP");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is_mem(v.sdp[SHMREG_SDP_LOCAL].ptr, v.sdp[SHMREG_SDP_LOCAL].len, local, sizeof local - 1,
           "the local SDP reads back byte-exact");
    is_mem(v.sdp[SHMREG_SDP_REMOTE].ptr, v.sdp[SHMREG_SDP_REMOTE].len, remote, sizeof remote - 1,
           "the remote SDP reads back byte-exact");
    shmreg_read_end(h);

    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, NULL, 0), 0, "set_sdp with length 0");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is(v.sdp[SHMREG_SDP_LOCAL].len, 0, "clears the local SDP");
    is_mem(v.sdp[SHMREG_SDP_REMOTE].ptr, v.sdp[SHMREG_SDP_REMOTE].len, remote, sizeof remote - 1,
           "and leaves the remote one alone");
    shmreg_read_end(h);

    char *max = malloc(SHMREG_MAX_SDP + 1);
    fill(max, SHMREG_MAX_SDP + 1, 7);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, max, SHMREG_MAX_SDP), 0,
       "an SDP of exactly SHMREG_MAX_SDP bytes is accepted");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is_mem(v.sdp[SHMREG_SDP_LOCAL].ptr, v.sdp[SHMREG_SDP_LOCAL].len, max, SHMREG_MAX_SDP,
           "and reads back byte-exact");
    shmreg_read_end(h);

    snap_take(h, &id, &a);
    unchanged(h, &id, &a, shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, max, SHMREG_MAX_SDP + 1),
              SHMREG_EINVAL, "an SDP of SHMREG_MAX_SDP+1 bytes");
    unchanged(h, &id, &a, shmreg_session_set_sdp(h, &id, 2, local, 10),
              SHMREG_EINVAL, "set_sdp with which = 2");
    unchanged(h, &id, &a, shmreg_session_set_sdp(h, &id, -1, local, 10),
              SHMREG_EINVAL, "set_sdp with which = -1");
    unchanged(h, &id, &a, shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, NULL, 5),
              SHMREG_EINVAL, "set_sdp with NULL bytes and length 5");
    snap_free(&a);

    shmreg_id unknown;
    memset(&unknown, 0x99, sizeof unknown);
    is(shmreg_session_set_sdp(h, &unknown, SHMREG_SDP_LOCAL, local, 10), SHMREG_ENOENT,
       "set_sdp on an unknown ID gives SHMREG_ENOENT");
    free(max);
    shmreg_session_delete(h, &id);
}

/* An SDP replace copies the other parts of the record as they were (the
 * strings in one piece when none of them changes): every field, an empty
 * one and one with NUL bytes among them, comes through byte-exact, and so
 * do the ports and the other SDP, change after change. */
static void test_sdp_keeps_fields(shmreg *h)
{
    shmreg_fields f = sample_fields();
    shmreg_str sdp[2] = {S("v=0\r\ns=first\r\n"), S("v=0\r\ns=other side\r\n")};
    f.sdp = sdp;
    shmreg_id id;
    is(shmreg_session_create(h, &f, &id), 0, "a session with every field and both SDPs");
    char body[700];
    int kept = 0;
    for (unsigned k = 0; k < 6; k++) {
        size_t len = 100 + 120 * k; /* the record grows through size classes */
        fill(body, len, k + 1);
        int which = (int)(k & 1);
        struct snap before, after;
        snap_take(h, &id, &before);
        int rc = shmreg_session_set_sdp(h, &id, which, body, len);
        snap_take(h, &id, &after);
        int same = rc == 0 && before.lport == after.lport && before.rport == after.rport &&
                   after.sdplen[which] == len && memcmp(after.sdp[which], body, len) == 0 &&
                   before.sdplen[!which] == after.sdplen[!which] &&
                   memcmp(before.sdp[!which], after.sdp[!which], after.sdplen[!which]) == 0;
        for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
            same = same && after.len[i] == f.str[i].len && memcmp(after.str[i], f.str[i].ptr, f.str[i].len) == 0;
        kept += same;
        snap_free(&before);
        snap_free(&after);
    }
    is(kept, 6, "6 SDP replaces, each kept all 9 string fields, both ports and the other SDP");
    shmreg_session_delete(h, &id);
}

/* Non-free heap blocks once this handle's retired ones are reclaimed
 * (a repairing check ends by reclaiming), and no problem or leak. */
static uint64_t blocks_used(shmreg *h)
{
    shmreg_check_report r;
    shmreg_check(h, SHMREG_CHECK_REPAIR, &r, NULL, NULL, NULL);
    if (shmreg_check(h, 0, &r, NULL, NULL, NULL) != 0 || r.problems || r.leaked_blocks)
        diag("check: %llu problems, %llu leaked", (unsigned long long)r.problems,
             (unsigned long long)r.leaked_blocks);
    return r.problems || r.leaked_blocks ? UINT64_MAX : r.heap_blocks_used;
}

/* A session's fields and SDPs share one record block; SDPs that would
 * make it bigger than the largest heap block live outside it, in blocks
 * the record owns. Every way in and out of that is read back byte-exact
 * and counted in blocks. */
static void test_big_sdps(shmreg *h)
{
    static char str[SHMREG_FIELD_STR_COUNT][SHMREG_MAX_STR];
    shmreg_fields f = {0};
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        size_t n = i == SHMREG_FIELD_APP_DATA ? SHMREG_MAX_APPDATA : SHMREG_MAX_STR;
        fill(str[i], n, 100 + i);
        f.str[i] = (shmreg_str){str[i], n};
    }
    f.local_rtp_port = 4000;
    char *a = malloc(SHMREG_MAX_SDP), *b = malloc(SHMREG_MAX_SDP);
    fill(a, SHMREG_MAX_SDP, 11);
    fill(b, SHMREG_MAX_SDP, 12);
    uint64_t base = blocks_used(h);
    shmreg_id id;
    shmreg_session v;
    is(shmreg_session_create(h, &f, &id), 0, "a session with every string field at its limit");
    is(blocks_used(h), base + 1, "is one record block");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, a, SHMREG_MAX_SDP), 0, "a 64 KiB local SDP");
    is(blocks_used(h), base + 1, "still one block: it fits inline");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, b, SHMREG_MAX_SDP), 0, "and a 64 KiB remote SDP");
    is(blocks_used(h), base + 2, "two blocks: one SDP had to go outside the record");
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &id, &v), 0, "the session reads");
    is_mem(v.sdp[0].ptr, v.sdp[0].len, a, SHMREG_MAX_SDP, "the local SDP byte-exact");
    is_mem(v.sdp[1].ptr, v.sdp[1].len, b, SHMREG_MAX_SDP, "the remote SDP byte-exact");
    int same = v.local_rtp_port == 4000;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        same &= v.str[i].len == f.str[i].len && memcmp(v.str[i].ptr, str[i], f.str[i].len) == 0;
    ok(same, "every field byte-exact beside them");
    shmreg_read_end(h);

    shmreg_fields g = {0};
    g.str[SHMREG_FIELD_CODEC] = S("opus");
    is(shmreg_session_update(h, &id, &g, SHMREG_MASK(SHMREG_FIELD_CODEC)), 0,
       "an update while an SDP is outside");
    is(blocks_used(h), base + 2, "copies the outside SDP with the record (the old pair let go)");
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "v=0\r\n", 5), 0, "a small local SDP");
    is(blocks_used(h), base + 1, "back to one block: both inline again");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is_mem(v.sdp[0].ptr, v.sdp[0].len, "v=0\r\n", 5, "the local SDP byte-exact");
    is_mem(v.sdp[1].ptr, v.sdp[1].len, b, SHMREG_MAX_SDP, "the remote one unchanged");
    is_mem(v.str[SHMREG_FIELD_CODEC].ptr, v.str[SHMREG_FIELD_CODEC].len, "opus", 4, "the codec updated");
    ok(v.str[SHMREG_FIELD_CALL_ID].len == SHMREG_MAX_STR &&
       memcmp(v.str[SHMREG_FIELD_CALL_ID].ptr, str[SHMREG_FIELD_CALL_ID], SHMREG_MAX_STR) == 0,
       "the other fields kept");
    shmreg_read_end(h);
    is(shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, a, SHMREG_MAX_SDP), 0, "64 KiB local again");
    is(blocks_used(h), base + 2, "one outside again");
    is(shmreg_session_delete(h, &id), 0, "delete it");
    is(blocks_used(h), base, "the record and its outside SDP are both let go of");
    free(a);
    free(b);
}

static void test_transitions(shmreg *h)
{
    shmreg_id id;
    struct snap a;
    int old;
    shmreg_session_create(h, NULL, &id);

    old = -1;
    is(shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, SHMREG_STATE_RINGING, &old), 0,
       "Initiating -> Ringing with expected Initiating succeeds");
    is(old, SHMREG_STATE_INITIATING, "and returns the old state Initiating");
    old = -1;
    is(shmreg_session_transition(h, &id, SHMREG_STATE_ANY, SHMREG_STATE_ACTIVE, &old), 0,
       "Ringing -> Active with expected ANY succeeds");
    is(old, SHMREG_STATE_RINGING, "and returns the old state Ringing");
    is(shmreg_session_transition(h, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_ONHOLD, NULL), 0,
       "a transition with old == NULL works");

    snap_take(h, &id, &a);
    is(a.state, SHMREG_STATE_ONHOLD, "the session is OnHold");
    old = -1;
    unchanged(h, &id, &a,
              shmreg_session_transition(h, &id, SHMREG_STATE_ACTIVE, SHMREG_STATE_TERMINATING, &old),
              SHMREG_ECONFLICT, "a transition expecting Active while OnHold");
    is(old, SHMREG_STATE_ONHOLD, "the conflict returns the current state OnHold");
    old = -1;
    unchanged(h, &id, &a,
              shmreg_session_transition(h, &id, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, &old),
              SHMREG_ESTATE, "OnHold -> Ringing (not in the table)");
    is(old, SHMREG_STATE_ONHOLD, "the refused transition returns the current state");
    old = -1;
    unchanged(h, &id, &a,
              shmreg_session_transition(h, &id, SHMREG_STATE_ONHOLD, SHMREG_STATE_TERMINATED, &old),
              SHMREG_ESTATE, "OnHold -> Terminated with the right expected state");
    is(old, SHMREG_STATE_ONHOLD, "returns OnHold");
    unchanged(h, &id, &a, shmreg_session_transition(h, &id, SHMREG_STATE_ANY, SHMREG_STATE_ANY, &old),
              SHMREG_EINVAL, "a transition to ANY");
    unchanged(h, &id, &a, shmreg_session_transition(h, &id, SHMREG_STATE_ANY, 10, &old),
              SHMREG_EINVAL, "a transition to state 10");
    unchanged(h, &id, &a, shmreg_session_transition(h, &id, SHMREG_STATE_ANY, -1, &old),
              SHMREG_EINVAL, "a transition to state -1");
    unchanged(h, &id, &a, shmreg_session_transition(h, &id, 10, SHMREG_STATE_ACTIVE, &old),
              SHMREG_EINVAL, "a transition expecting state 10");
    snap_free(&a);

    is(shmreg_session_transition(h, &id, SHMREG_STATE_ONHOLD, SHMREG_STATE_TERMINATING, NULL), 0,
       "OnHold -> Terminating");
    is(shmreg_session_transition(h, &id, SHMREG_STATE_TERMINATING, SHMREG_STATE_TERMINATED, NULL), 0,
       "Terminating -> Terminated");
    snap_take(h, &id, &a);
    int locked = 1, olds = 1;
    for (int to = 1; to < SHMREG_STATE_COUNT; to++) {
        old = -1;
        locked &= shmreg_session_transition(h, &id, SHMREG_STATE_ANY, to, &old) == SHMREG_ESTATE;
        olds &= old == SHMREG_STATE_TERMINATED;
    }
    ok(locked, "from Terminated every transition gives SHMREG_ESTATE");
    ok(olds, "each returning Terminated as the old state");
    struct snap b;
    snap_take(h, &id, &b);
    ok(snap_same(&a, &b), "and the Terminated session is unchanged");
    snap_free(&a);
    snap_free(&b);
    shmreg_session_delete(h, &id);

    static const int finals[2][3] = {
        { SHMREG_STATE_CANCELLED, 0, 0 }, { SHMREG_STATE_FAILED, 0, 0 } };
    for (int k = 0; k < 2; k++) {
        shmreg_session_create(h, NULL, &id);
        is(shmreg_session_transition(h, &id, SHMREG_STATE_INITIATING, finals[k][0], NULL), 0,
           "Initiating -> %s", shmreg_state_name(finals[k][0]));
        locked = 1;
        for (int to = 1; to < SHMREG_STATE_COUNT; to++)
            locked &= shmreg_session_transition(h, &id, SHMREG_STATE_ANY, to, NULL) == SHMREG_ESTATE;
        ok(locked, "%s is final: every transition out gives SHMREG_ESTATE",
           shmreg_state_name(finals[k][0]));
        snap_take(h, &id, &a);
        is(a.state, finals[k][0], "and the state stays %s", shmreg_state_name(finals[k][0]));
        snap_free(&a);
        shmreg_session_delete(h, &id);
    }

    /* Every legal path of the table works on a live session. */
    int bad = 0;
    for (int from = 1; from < SHMREG_STATE_COUNT; from++)
        for (int to = 1; to < SHMREG_STATE_COUNT; to++) {
            if (!shmreg_state_allowed(from, to))
                continue;
            /* Walk a fresh session to `from`. */
            static const int path[10][4] = {
                [1] = { 0 },
                [2] = { 2, 0 },
                [3] = { 3, 0 },
                [4] = { 3, 4, 0 },
                [5] = { 3, 5, 0 },
                [6] = { 6, 0 },
            };
            shmreg_session_create(h, NULL, &id);
            for (int i = 0; path[from][i]; i++)
                bad += shmreg_session_transition(h, &id, SHMREG_STATE_ANY, path[from][i], NULL) != 0;
            old = -1;
            if (shmreg_session_transition(h, &id, from, to, &old) != 0 || old != from) {
                bad++;
                diag("%d -> %d failed", from, to);
            }
            snap_take(h, &id, &a);
            bad += a.state != to;
            snap_free(&a);
            shmreg_session_delete(h, &id);
        }
    is(bad, 0, "each of the 23 allowed transitions works as a compare-and-set");

    shmreg_id unknown;
    memset(&unknown, 0x31, sizeof unknown);
    old = 77;
    is(shmreg_session_transition(h, &unknown, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, &old),
       SHMREG_ENOENT, "a transition of an unknown ID gives SHMREG_ENOENT");
}

static void test_counters(shmreg *h)
{
    shmreg_id id;
    shmreg_session v;
    shmreg_session_create(h, NULL, &id);
    int rc = 0;
    for (int c = 0; c < SHMREG_CTR_COUNT; c++) {
        rc |= shmreg_session_counter_add(h, &id, c, 1000u * (c + 1));
        rc |= shmreg_session_counter_add(h, &id, c, (uint64_t)c + 1);
    }
    is(rc, 0, "counter_add works for each of the 5 counters");
    rc = shmreg_session_counter_add(h, &id, SHMREG_CTR_BYTES_SENT, 1ull << 40);
    is(rc, 0, "counter_add takes 64-bit deltas");
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    for (int c = 0; c < SHMREG_CTR_COUNT; c++)
        is(v.counter[c], 1001u * (c + 1) + (c == SHMREG_CTR_BYTES_SENT ? 1ull << 40 : 0),
           "counter %d holds the sum of what was added", c);
    shmreg_read_end(h);
    struct snap a;
    snap_take(h, &id, &a);
    unchanged(h, &id, &a, shmreg_session_counter_add(h, &id, SHMREG_CTR_COUNT, 1),
              SHMREG_EINVAL, "counter_add of counter SHMREG_CTR_COUNT");
    unchanged(h, &id, &a, shmreg_session_counter_add(h, &id, -1, 1),
              SHMREG_EINVAL, "counter_add of counter -1");
    snap_free(&a);
    shmreg_id unknown;
    memset(&unknown, 0x55, sizeof unknown);
    is(shmreg_session_counter_add(h, &unknown, 0, 1), SHMREG_ENOENT,
       "counter_add on an unknown ID gives SHMREG_ENOENT");
    shmreg_session_delete(h, &id);
}

static void test_delete_and_counts(void)
{
    shmreg *h = test_reg_new("counts", 64, 0, 0);
    shmreg_id id[12];
    shmreg_session v;
    for (int i = 0; i < 12; i++)
        shmreg_session_create(h, NULL, &id[i]);
    /* 3 Initiating, 2 Ringing, 2 Active, 1 OnHold, 1 Terminated, 1 Failed,
     * 2 deleted. */
    static const int walk[12][4] = {
        { 0 }, { 0 }, { 0 },
        { 2, 0 }, { 2, 0 },
        { 3, 0 }, { 2, 3, 0 },
        { 3, 4, 0 },
        { 6, 7, 0 },
        { 2, 3, 9, 0 },
        { 0 }, { 0 },
    };
    int rc = 0;
    for (int i = 0; i < 12; i++)
        for (int k = 0; walk[i][k]; k++)
            rc |= shmreg_session_transition(h, &id[i], SHMREG_STATE_ANY, walk[i][k], NULL);
    is(rc, 0, "walk 12 sessions to their states");
    is(shmreg_session_delete(h, &id[10]), 0, "delete a session");
    shmreg_session_delete(h, &id[11]);
    shmreg_read_begin(h);
    is(shmreg_session_get(h, &id[10], &v), SHMREG_ENOENT, "a deleted session is gone (SHMREG_ENOENT)");
    shmreg_read_end(h);
    is(shmreg_session_delete(h, &id[10]), SHMREG_ENOENT, "deleting it again gives SHMREG_ENOENT");

    uint64_t c[SHMREG_STATE_COUNT];
    memset(c, 0xff, sizeof c);
    is(shmreg_session_counts(h, c, SHMREG_STATE_COUNT), 0, "session_counts works");
    static const uint64_t want[SHMREG_STATE_COUNT] = { 10, 3, 2, 2, 1, 0, 0, 1, 0, 1 };
    for (int s = 0; s < SHMREG_STATE_COUNT; s++)
        is(c[s], want[s], "counts[%d] (%s) is %llu", s, s ? shmreg_state_name(s) : "total",
           (unsigned long long)want[s]);
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.sessions, 10, "stat.sessions is 10");
    close_destroy(h);
}

static void test_table_full(void)
{
    shmreg *h = test_reg_new("full", 8, 0, 0);
    shmreg_id id[9], extra;
    int rc = 0;
    shmreg_fields f = sample_fields();
    for (int i = 0; i < 8; i++)
        rc |= shmreg_session_create(h, &f, &id[i]);
    is(rc, 0, "a table of 8 takes 8 sessions");
    is(shmreg_session_create(h, &f, &extra), SHMREG_EFULL, "the 9th create gives SHMREG_EFULL");
    is(shmreg_session_create(h, NULL, &extra), SHMREG_EFULL, "so does a 10th");
    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], 8, "the counts stay at 8");
    shmreg_stats st;
    shmreg_stat(h, &st);
    is(st.sessions, 8, "stat.sessions stays at 8");

    is(shmreg_session_delete(h, &id[3]), 0, "delete one (outside any read section)");
    is(shmreg_session_create(h, &f, &id[3]), 0, "then a create works again");
    is(shmreg_session_create(h, &f, &extra), SHMREG_EFULL, "and the next one is SHMREG_EFULL again");
    /* All 8 are intact. */
    shmreg_session v;
    int intact = 0;
    shmreg_read_begin(h);
    for (int i = 0; i < 8; i++)
        intact += shmreg_session_get(h, &id[i], &v) == 0 &&
                  test_str_is(v.str[SHMREG_FIELD_CALL_ID], f.str[SHMREG_FIELD_CALL_ID].ptr,
                         f.str[SHMREG_FIELD_CALL_ID].len);
    shmreg_read_end(h);
    is(intact, 8, "all 8 sessions read back intact");

    /* Deleting all and refilling works, over and over. */
    int cycles_ok = 1;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 8; i++)
            cycles_ok &= shmreg_session_delete(h, &id[i]) == 0;
        for (int i = 0; i < 8; i++)
            cycles_ok &= shmreg_session_create(h, &f, &id[i]) == 0;
        cycles_ok &= shmreg_session_create(h, &f, &extra) == SHMREG_EFULL;
    }
    ok(cycles_ok, "20 rounds of delete-all and refill keep exactly 8 places");
    close_destroy(h);
}

static void test_heap_full(void)
{
    enum { BIG = 32 * 1024, N = 64 };
    shmreg *h = test_reg_new("heapfull", N, 1u << 20, 0);
    shmreg_id id[N];
    char small[32];
    char *big = malloc(BIG);
    int rc = 0;
    for (int i = 0; i < N; i++) {
        rc |= shmreg_session_create(h, NULL, &id[i]);
        snprintf(small, sizeof small, "v=0 small %d", i);
        rc |= shmreg_session_set_sdp(h, &id[i], SHMREG_SDP_LOCAL, small, strlen(small));
    }
    is(rc, 0, "a 1 MiB heap takes %d sessions with small SDPs", N);

    int full_at = -1, full_which = -1, placed = 0;
    for (int i = 0; i < N && full_at < 0; i++)
        for (int w = 0; w < 2 && full_at < 0; w++) {
            fill(big, BIG, (unsigned)(i * 2 + w + 1));
            rc = shmreg_session_set_sdp(h, &id[i], w, big, BIG);
            if (rc == SHMREG_EFULL) {
                full_at = i;
                full_which = w;
            } else if (rc != 0) {
                diag("set_sdp %d/%d: %s", i, w, shmreg_strerror(rc));
                break;
            } else
                placed++;
        }
    ok(full_at >= 0, "filling it with 32 KiB SDPs ends in SHMREG_EFULL (after %d)", placed);
    ok(placed >= 8, "at least 8 big SDPs fit before that");
    if (full_at >= 0) {
        shmreg_session v;
        shmreg_read_begin(h);
        shmreg_session_get(h, &id[full_at], &v);
        if (full_which == SHMREG_SDP_LOCAL) {
            snprintf(small, sizeof small, "v=0 small %d", full_at);
            ok(test_str_is(v.sdp[0], small, strlen(small)), "the failed set_sdp left the previous SDP intact");
        } else {
            fill(big, BIG, (unsigned)(full_at * 2 + 1));
            ok(test_str_is(v.sdp[1], NULL, 0) && test_str_is(v.sdp[0], big, BIG),
               "the failed set_sdp left the previous SDPs intact");
        }
        shmreg_read_end(h);
        /* Every big SDP placed before reads back. */
        int good = 0, n = 0;
        shmreg_read_begin(h);
        for (int i = 0; i <= full_at; i++)
            for (int w = 0; w < 2; w++) {
                if (i == full_at && w >= full_which)
                    break;
                fill(big, BIG, (unsigned)(i * 2 + w + 1));
                n++;
                good += shmreg_session_get(h, &id[i], &v) == 0 && test_str_is(v.sdp[w], big, BIG);
            }
        shmreg_read_end(h);
        is(good, n, "all %d big SDPs placed before reading back intact", n);

        shmreg_stats st;
        shmreg_stat(h, &st);
        ok(st.heap_used_bytes <= st.heap_bytes, "heap_used_bytes (%llu) <= heap_bytes (%llu)",
           (unsigned long long)st.heap_used_bytes, (unsigned long long)st.heap_bytes);

        /* Free two big SDPs: with no read section open, the room is usable. */
        rc = shmreg_session_set_sdp(h, &id[0], SHMREG_SDP_LOCAL, NULL, 0);
        rc |= shmreg_session_set_sdp(h, &id[0], SHMREG_SDP_REMOTE, NULL, 0);
        is(rc, 0, "clear two big SDPs");
        fill(big, BIG, 999);
        is(shmreg_session_set_sdp(h, &id[full_at], full_which, big, BIG), 0,
           "then the SDP that did not fit fits");
    } else {
        skip(5, "the heap never filled");
    }
    free(big);
    close_destroy(h);
}

static void test_own_section(shmreg *h)
{
    shmreg_id id;
    shmreg_session v;
    char a[3000], b[1700], *old;
    fill(a, sizeof a, 1);
    fill(b, sizeof b, 2);
    shmreg_session_create(h, NULL, &id);
    shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, a, sizeof a);

    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    shmreg_str held = v.sdp[SHMREG_SDP_REMOTE];
    old = malloc(held.len);
    memcpy(old, held.ptr, held.len);
    int rc = 0;
    char c[3000];
    for (int i = 0; i < 1000; i++) {
        fill(c, sizeof c, (unsigned)(100 + i));
        rc |= shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, c, (size_t)(100 + i));
    }
    rc |= shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, b, sizeof b);
    is(rc, 0, "replace the SDP 1001 times inside our own read section");
    is_mem(held.ptr, held.len, a, sizeof a,
           "the SDP pointer we got before is still valid and unchanged");
    shmreg_session_get(h, &id, &v);
    is_mem(v.sdp[SHMREG_SDP_REMOTE].ptr, v.sdp[SHMREG_SDP_REMOTE].len, b, sizeof b,
           "a new get in the same section sees the new SDP");
    is(shmreg_session_delete(h, &id), 0, "delete the session inside the section");
    is_mem(held.ptr, held.len, a, sizeof a, "the old pointer still reads the old bytes");
    shmreg_session_create(h, NULL, &id);
    for (int i = 0; i < 200; i++) {
        fill(c, sizeof c, (unsigned)(5000 + i));
        shmreg_session_set_sdp(h, &id, SHMREG_SDP_REMOTE, c, sizeof c);
    }
    is_mem(held.ptr, held.len, old, held.len, "even after more SDPs of the same size are written");
    shmreg_read_end(h);
    shmreg_read_begin(h);
    shmreg_session_get(h, &id, &v);
    is_mem(v.sdp[SHMREG_SDP_REMOTE].ptr, v.sdp[SHMREG_SDP_REMOTE].len, c, sizeof c,
           "after read_end a new section sees the latest SDP");
    shmreg_read_end(h);
    shmreg_session_delete(h, &id);
    free(old);
}

static void test_nesting(shmreg *h)
{
    shmreg_id id;
    shmreg_session v;
    shmreg_session_create(h, NULL, &id);
    shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "first", 5);

    is(shmreg_read_end(h), SHMREG_EINVAL, "read_end without a section gives SHMREG_EINVAL");
    is(shmreg_read_begin(h), 0, "open a section");
    shmreg_session_get(h, &id, &v);
    shmreg_str held = v.sdp[SHMREG_SDP_LOCAL];
    is(shmreg_read_begin(h), 0, "open a nested section");
    is(shmreg_read_begin(h), 0, "and a third level");
    is(shmreg_read_end(h), 0, "leave the third");
    is(shmreg_read_end(h), 0, "leave the second");
    is(shmreg_session_get(h, &id, &v), 0, "still inside the outer section: get works");
    for (int i = 0; i < 100; i++)
        shmreg_session_set_sdp(h, &id, SHMREG_SDP_LOCAL, "second", 6);
    is_mem(held.ptr, held.len, "first", 5,
           "a pointer from the outer section survives the inner sections ending");
    is(shmreg_read_end(h), 0, "leave the outer section");
    is(shmreg_session_get(h, &id, &v), SHMREG_ENOREAD, "now outside: get gives SHMREG_ENOREAD");
    is(shmreg_read_end(h), SHMREG_EINVAL, "one read_end too many gives SHMREG_EINVAL");
    shmreg_session_delete(h, &id);
}

int main(void)
{
    shmreg *h = test_reg_new("session", 256, 32u << 20, 0);
    test_create_get(h);
    test_update(h);
    test_sdp(h);
    test_sdp_keeps_fields(h);
    test_big_sdps(h);
    test_transitions(h);
    test_counters(h);
    test_own_section(h);
    test_nesting(h);
    uint64_t c[SHMREG_STATE_COUNT];
    shmreg_session_counts(h, c, SHMREG_STATE_COUNT);
    is(c[0], 0, "every session of the main registry was deleted");
    close_destroy(h);

    test_delete_and_counts();
    test_table_full();
    test_heap_full();
    return done_testing();
}
