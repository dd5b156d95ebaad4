/*
 * sipmsg.c — libFuzzer target: the SIP parser of examples/sipd (sipmsg.c)
 * and its SDP offer parser and answer writer (sdp.c), the code that reads
 * datagrams from anybody. Both are compiled into the target from their own
 * sources (FUZZ_SRC_sipmsg in the Makefile).
 *
 * Per input, exactly its bytes (libFuzzer hands a block of exactly `size`,
 * so ASan sees a read one past the datagram): sip_parse() must not crash,
 * every slice it returns must lie inside the datagram, an accepted
 * message must be self-consistent (the checks of t/sipd_parse.c's own
 * mutation test), and a reply to anything that can be answered must be
 * built and parse back with our status and tags. An application/sdp body
 * goes through sdp_parse() and, when it parses, sdp_answer() with the
 * default codecs; the answer must fit and parse again as an offer.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "sdp.h"
#include "sipmsg.h"

static const char *lo, *hi;

static int inside(sip_str s)
{
    return s.n == 0 || (s.p && s.p >= lo && s.p + s.n <= hi && s.p + s.n >= s.p);
}

static void all_inside(const sip_msg *m)
{
    const sip_str *f[] = { &m->method_name, &m->uri, &m->reason, &m->branch, &m->from,
                           &m->to, &m->from_uri, &m->from_name, &m->from_tag, &m->to_uri,
                           &m->to_tag, &m->call_id, &m->cseq_method, &m->contact,
                           &m->content_type, &m->body };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        REQUIRE(inside(*f[i]));
    REQUIRE(m->nvia <= SIPMSG_MAX_VIA);
    for (unsigned i = 0; i < m->nvia; i++)
        REQUIRE(inside(m->via[i]));
}

static void reply_parses_back(const sip_msg *m, int status, const char *reason)
{
    static char out[2 * SIPMSG_MAX_LEN], copy[2 * SIPMSG_MAX_LEN];
    /* with Record-Route copied and the top Via annotated, as sipd does */
    sip_reply r = { .status = status, .reason = reason, .to_tag = { "fz", 2 },
                    .record_route = 1, .src_ip = "192.0.2.1", .src_port = 5062 };
    size_t k = sip_build_reply(out, sizeof out, m, &r);
    if (k == 0)
        return; /* did not fit: allowed, the server then drops it */
    REQUIRE(k <= sizeof out);
    memcpy(copy, out, k);
    sip_msg back;
    const char *why = NULL;
    int rc = sip_parse(copy, k, &back, &why);
    if (rc == SIP_ELIMIT)
        return; /* echoing many long headers may pass a limit */
    if (rc != SIP_OK) {
        fprintf(stderr, "sipmsg: our own %d reply does not parse: %s\n%.*s\n", status,
                why ? why : "?", (int)k, out);
        abort();
    }
    REQUIRE(back.status == status && !back.is_request);
    REQUIRE(back.nvia == m->nvia);
    REQUIRE(back.call_id.n == m->call_id.n && !memcmp(back.call_id.p, m->call_id.p, m->call_id.n));
    if (m->to_tag.n == 0)
        REQUIRE(back.to_tag.n == 2 && !memcmp(back.to_tag.p, "fz", 2));
    else
        REQUIRE(back.to_tag.n == m->to_tag.n && !memcmp(back.to_tag.p, m->to_tag.p, m->to_tag.n));
}

static void sdp_round(sip_str body)
{
    sdp_offer o;
    const char *why = NULL;
    if (sdp_parse(body.p, body.n, &o, &why) != 0) {
        REQUIRE(why != NULL);
        return;
    }
    REQUIRE(o.nfmt <= SDP_MAX_FMT && inside(o.proto) && inside(o.addr));
    (void)sdp_version(body.p, body.n);
    static char ans[8192];
    sdp_local l = { "192.0.2.10", 20000, 42, 1 };
    sip_str codec = { NULL, 0 };
    size_t n = sdp_answer(ans, sizeof ans, &o, NULL, &l, &codec, &why);
    if (n == 0) {
        REQUIRE(why != NULL);
        return;
    }
    /* The codec is a slice of the body, or a static name for a static
     * payload type the offer did not map. */
    REQUIRE(n < sizeof ans && codec.n > 0 && codec.p != NULL);
    /* Our answer is an offer anybody could parse: so must we. */
    char *copy = malloc(n);
    REQUIRE(copy != NULL);
    memcpy(copy, ans, n);
    sdp_offer back;
    REQUIRE(sdp_parse(copy, n, &back, &why) == 0);
    REQUIRE(back.port == 20000 && back.nfmt >= 1);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    lo = buf;
    hi = buf + size;
    sip_msg m;
    const char *why = NULL;
    int rc = sip_parse(buf, size, &m, &why);
    REQUIRE(rc == SIP_OK || rc == SIP_EBAD || rc == SIP_ELIMIT);
    all_inside(&m);
    if (rc != SIP_OK) {
        REQUIRE(why != NULL);
        if (sip_can_reply(&m))
            reply_parses_back(&m, 400, why);
        return 0;
    }
    REQUIRE(m.nvia >= 1 || !m.is_request);
    REQUIRE(m.content_length < 0 || (size_t)m.content_length == m.body.n);
    /* the body runs to the end of the datagram, or to Content-Length's
     * end when the sender put bytes after it (RFC 3261 18.3: dropped) */
    REQUIRE(m.body.n == 0 || m.body.p + m.body.n == hi ||
            (m.content_length >= 0 && m.body.p + m.body.n < hi));
    sip_str sdp;
    if (sip_sdp_body(&m, &sdp) == 1)
        REQUIRE(inside(sdp));
    if (m.is_request) {
        REQUIRE(m.method_name.n > 0 && sip_method_name(m.method) != NULL);
        if (sip_can_reply(&m))
            reply_parses_back(&m, 200, "OK");
    } else {
        REQUIRE(m.status >= 100 && m.status <= 699);
    }
    if (m.body.n && sip_str_ieq(m.content_type, "application/sdp"))
        sdp_round(m.body);
    return 0;
}
