/*
 * sipd_parse.c — the SIP parser and the SDP offer/answer code of the sipd
 * example (examples/sipd/sipmsg.c, sdp.c), without a network.
 *
 * The parser meets datagrams from anybody, so most of this file is about
 * what it refuses: truncated and oversized messages, missing or repeated
 * headers, a Content-Length that disagrees with the body, binary junk, and
 * finally a bounded fuzz run of random mutations of good messages. Every
 * input is parsed from a heap block of exactly its size, so under ASan a
 * read one byte past the datagram is a crash, not a silent pass.
 *
 * Then what RFC 3261 asks a receiver to accept (issue 18): folded lines,
 * bytes after the body, 70 Vias; Record-Route, Require and the top Via's
 * details; received= and rport= in replies; multipart bodies; the call
 * record kept in the registry and the BYE built from it; the transaction
 * key; m= line mirroring and our own offer.
 *
 * The example's parser and SDP code come from build/VARIANT/examples/
 * libsipd.a, compiled once for the example and the tests (Makefile).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../examples/sipd/dialog.h"
#include "../examples/sipd/sdp.h"
#include "../examples/sipd/sipmsg.h"
#include "../examples/sipd/txn.h"
#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

/* The current input, in a block of exactly its size (kept until the next
 * parse, since the parsed slices point into it). */
static char *cur;

static int parse_n(const char *text, size_t len, sip_msg *m, const char **why)
{
    free(cur);
    cur = malloc(len ? len : 1);
    if (len)
        memcpy(cur, text, len);
    return sip_parse(cur, len, m, why);
}

static int parse(const char *text, sip_msg *m, const char **why)
{
    return parse_n(text, strlen(text), m, why);
}

static int in_buf(sip_str s, size_t len)
{
    return s.n == 0 || (s.p >= cur && s.p + s.n <= cur + len);
}

static int str_is(sip_str s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

#define SDP_OFFER                                                                    \
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n"               \
    "c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"                    \
    "a=rtpmap:0 PCMU/8000\r\n"

/* What sipp's built-in uac scenario sends, byte for byte in shape. */
#define INVITE_HEAD                                                                  \
    "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"                                 \
    "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0\r\n"                      \
    "From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n"                      \
    "To: service <sip:service@127.0.0.1:5060>\r\n"                                  \
    "Call-ID: 1-4242@127.0.0.1\r\n"                                                 \
    "CSeq: 1 INVITE\r\n"                                                            \
    "Contact: sip:sipp@127.0.0.1:5061\r\n"                                          \
    "Max-Forwards: 70\r\n"                                                          \
    "Subject: Performance Test\r\n"                                                 \
    "Content-Type: application/sdp\r\n"

static char invite[4096];

static void make_invite(void)
{
    snprintf(invite, sizeof invite, INVITE_HEAD "Content-Length: %zu\r\n\r\n%s",
             strlen(SDP_OFFER), SDP_OFFER);
}

/* The INVITE with header line `name` replaced by `line` ("" removes it). */
static const char *with_header(const char *name, const char *line)
{
    static char buf[8192];
    const char *p = strstr(invite, name);
    if (!p)
        return invite;
    const char *e = strstr(p, "\r\n") + 2;
    snprintf(buf, sizeof buf, "%.*s%s%s", (int)(p - invite), invite, line, e);
    return buf;
}

static void test_good_invite(void)
{
    sip_msg m;
    const char *why = "unset";
    is(parse(invite, &m, &why), SIP_OK, "sipp's INVITE parses");
    ok(why == NULL, "no reason on success");
    ok(m.is_request && m.method == SIP_INVITE, "a request, INVITE");
    ok(str_is(m.uri, "sip:service@127.0.0.1:5060"), "request URI");
    is(m.nvia, 1, "one Via");
    ok(str_is(m.via[0], "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0"), "Via value");
    ok(str_is(m.branch, "z9hG4bK-1-1-0"), "branch of the top Via");
    ok(str_is(m.from_tag, "1SIPpTag001") && str_is(m.from_name, "sipp") &&
           str_is(m.from_uri, "sip:sipp@127.0.0.1:5061"),
       "From: display name, URI, tag");
    ok(m.to_tag.n == 0 && str_is(m.to_uri, "sip:service@127.0.0.1:5060"), "To: URI, no tag");
    ok(str_is(m.call_id, "1-4242@127.0.0.1"), "Call-ID");
    ok(m.cseq == 1 && str_is(m.cseq_method, "INVITE"), "CSeq");
    ok(str_is(m.contact, "sip:sipp@127.0.0.1:5061"), "Contact");
    ok(str_is(m.content_type, "application/sdp"), "Content-Type");
    is(m.content_length, (long)strlen(SDP_OFFER), "Content-Length");
    is_mem(m.body.p, m.body.n, SDP_OFFER, strlen(SDP_OFFER), "body");
    is(m.nheaders, 10, "header count");
    ok(sip_can_reply(&m), "can be answered");
}

static void test_forms(void)
{
    sip_msg m;
    const char *why;
    const char *compact =
        "BYE sip:a@b SIP/2.0\r\n"
        "v: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n"
        "v: SIP/2.0/TCP h3;branch=z9hG4bK3\r\n"
        "f: \"A \\\"<b>\\\" C\" <sip:a@x;transport=udp>;tag=ft\r\n"
        "t: sip:b@y;tag=tt\r\n"
        "i: cid\r\n"
        "CSeq: 2 BYE\r\n"
        "l: 0\r\n\r\n";
    is(parse(compact, &m, &why), SIP_OK, "compact header names");
    is(m.nvia, 2, "two Via lines, kept as lines");
    ok(str_is(m.via[0], "SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2") &&
           str_is(m.via[1], "SIP/2.0/TCP h3;branch=z9hG4bK3"),
       "Vias in order, comma lists untouched");
    ok(str_is(m.branch, "z9hG4bK1"), "branch of the first via-parm");
    ok(str_is(m.from_name, "A \\\"<b>\\\" C") && str_is(m.from_uri, "sip:a@x;transport=udp") &&
           str_is(m.from_tag, "ft"),
       "quoted display name with quotes and <> inside; URI params stay in the URI");
    ok(str_is(m.to_uri, "sip:b@y") && str_is(m.to_tag, "tt"), "addr-spec To: params are header params");
    ok(m.method == SIP_BYE && m.body.n == 0 && m.content_length == 0, "BYE, empty body");

    const char *resp = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
                       "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: c\r\n"
                       "CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    is(parse(resp, &m, &why), SIP_OK, "a response parses");
    ok(!m.is_request && m.status == 180 && str_is(m.reason, "Ringing"), "status and reason");
    ok(!sip_can_reply(&m), "responses are never answered");

    const char *nolen = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n"
                        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c\r\n"
                        "CSeq: 7 OPTIONS\r\n\r\nrest";
    is(parse(nolen, &m, &why), SIP_OK, "no Content-Length: the body is the rest (UDP)");
    ok(m.content_length == -1 && str_is(m.body, "rest") && m.method == SIP_OPTIONS,
       "body without Content-Length");
    const char *other = "REGISTER sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: <sip:a@b>;tag=1\r\n"
                        "To: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n";
    is(parse(other, &m, &why), SIP_OK, "an unknown method parses");
    ok(m.method == SIP_OTHER && str_is(m.method_name, "REGISTER") && m.branch.n == 0,
       "method OTHER, no branch");
}

/* Each bad input: the code, the reason, and whether a 400 can be sent. */
static void bad(const char *text, size_t len, int code, const char *why_want, int can_reply,
                const char *name)
{
    sip_msg m;
    const char *why = NULL;
    int rc = parse_n(text, len, &m, &why);
    int pass = rc == code && why && strcmp(why, why_want) == 0 &&
               sip_can_reply(&m) == can_reply;
    ok(pass, "%s: %s", name, why_want);
    if (!pass)
        diag("got rc %d why '%s' can_reply %d", rc, why ? why : "(null)", sip_can_reply(&m));
}

#define BAD(text, code, why, can, name) bad(text, strlen(text), code, why, can, name)

static void test_refused(void)
{
    char buf[80000];
    BAD("", SIP_EBAD, "Empty message", 0, "empty datagram");
    BAD("\r\n\r\n", SIP_EBAD, "Bad request line", 0, "a keep-alive is not a request");
    BAD(with_header("Via:", ""), SIP_EBAD, "Missing Via", 0, "no Via");
    BAD(with_header("From:", ""), SIP_EBAD, "Missing From", 0, "no From");
    BAD(with_header("To:", ""), SIP_EBAD, "Missing To", 0, "no To");
    BAD(with_header("Call-ID:", ""), SIP_EBAD, "Missing Call-ID", 0, "no Call-ID");
    BAD(with_header("CSeq:", ""), SIP_EBAD, "Missing CSeq", 0, "no CSeq");
    BAD(with_header("Content-Length:", "Content-Length: 900\r\n"), SIP_EBAD,
        "Content-Length mismatch", 1, "Content-Length longer than the body");
    BAD(with_header("Content-Length:", "Content-Length: -1\r\n"), SIP_EBAD,
        "Bad Content-Length", 1, "negative Content-Length");
    BAD(with_header("Content-Length:", "Content-Length: 12x\r\n"), SIP_EBAD,
        "Bad Content-Length", 1, "Content-Length not a number");
    BAD(with_header("Content-Length:", "Content-Length: 99999999\r\n"), SIP_ELIMIT,
        "Bad Content-Length", 1, "huge Content-Length");
    BAD(with_header("Content-Length:", "Content-Length: 1\r\nl: 1\r\n"), SIP_EBAD,
        "Duplicate Content-Length", 1, "two Content-Lengths");
    BAD(with_header("Max-Forwards:", "Max-Forwards: 70\r\nFrom: <sip:x@y>;tag=2\r\n"), SIP_EBAD,
        "Duplicate From", 1, "two From headers (the first one answers)");
    BAD(with_header("CSeq:", "CSeq: 1 BYE\r\n"), SIP_EBAD, "CSeq method mismatch", 1,
        "CSeq method differs from the request's");
    BAD(with_header("CSeq:", "CSeq: 99999999999 INVITE\r\n"), SIP_EBAD, "Bad CSeq", 0,
        "CSeq number too big");
    BAD("OPTIONS sip:a@b SIP/2.0\r\n Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n", SIP_EBAD,
        "Folded first header", 0, "a continuation line with no header before it");
    BAD(with_header("Max-Forwards:", "Max-Forwards 70\r\n"), SIP_EBAD, "Malformed header", 1,
        "header without a colon");
    BAD(with_header("From:", "From: sipp <sip:sipp@h\r\n"), SIP_EBAD, "Bad From", 0,
        "unterminated <");
    BAD(with_header("To:", "To: \"unterminated <sip:a@b>\r\n"), SIP_EBAD, "Bad To", 0,
        "unterminated quoted display name");
    BAD(with_header("From:", "From: <sip:a@b>;tag=\r\n"), SIP_EBAD, "Bad From", 0, "empty tag");
    BAD(with_header("From:", "From: <sip:a@b>;tag=1;tag=2\r\n"), SIP_EBAD, "Bad From", 0,
        "two tags");
    BAD(with_header("From:", "From: <nouri>;tag=1\r\n"), SIP_EBAD, "Bad From", 0,
        "From URI without a scheme");
    BAD(with_header("Via:", "Via: HTTP/1.1 host\r\n"), SIP_EBAD, "Bad Via", 0, "not a SIP Via");
    BAD("INVITE sip:a@b SIP/3.0\r\n\r\n", SIP_EBAD, "Bad request line", 0, "SIP version");
    BAD("INVITE  sip:a@b SIP/2.0\r\n\r\n", SIP_EBAD, "Bad request line", 0, "double space");
    BAD("INVITE nouri SIP/2.0\r\n\r\n", SIP_EBAD, "Bad request line", 0, "no URI scheme");
    BAD("SIP/2.0 99 Low\r\n\r\n", SIP_EBAD, "Bad request line", 0, "status below 100");
    BAD("SIP/2.0 2000 OK\r\n\r\n", SIP_EBAD, "Bad request line", 0, "four-digit status");

    /* Line structure: the scan stops at once. Whatever was sound above
     * the broken line still allows a 400 (Subject comes after CSeq). */
    BAD(with_header("Subject:", "Subject: bare\nLF\r\n"), SIP_EBAD, "Bare LF", 1, "bare LF");
    BAD(with_header("Subject:", "Subject: bare\rCR\r\n"), SIP_EBAD, "Bare CR", 1, "bare CR");
    BAD(with_header("Via:", "Via: SIP/2.0/UDP h;branch=z9hG4bKx\nX: y\r\n"), SIP_EBAD,
        "Bare LF", 0, "bare LF in the Via line: no 400 possible");
    {
        const char *t = with_header("Subject:", "Subject: nul\x01here\r\n");
        BAD(t, SIP_EBAD, "Control character in header", 1, "control byte in a header");
        char nul[4096];
        size_t n = strlen(invite);
        memcpy(nul, invite, n);
        nul[50] = '\0';   /* inside the Via line */
        bad(nul, n, SIP_EBAD, "Control character in header", 0, "NUL byte in a header");
    }
    BAD("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h", SIP_EBAD, "Truncated message", 0,
        "cut inside a header line");
    BAD("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r", SIP_EBAD, "Truncated message", 0,
        "cut between CR and LF");
    BAD("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n", SIP_EBAD,
        "Truncated message", 0, "no empty line");

    /* Limits */
    {
        char line[3000];
        memset(line, 'x', sizeof line);
        snprintf(buf, sizeof buf, "%s", invite);
        char *sub = strstr(buf, "Performance Test");
        snprintf(sub, sizeof buf - (size_t)(sub - buf), "%.*s\r\n%s", (int)sizeof line, line,
                 strstr(invite, "Content-Type:"));
        BAD(buf, SIP_ELIMIT, "Line too long", 1, "a 3000-byte line");

        size_t n = (size_t)snprintf(buf, sizeof buf, "%s", INVITE_HEAD);
        for (int i = 0; i < 160; i++)
            n += (size_t)snprintf(buf + n, sizeof buf - n, "X-Pad-%d: %d\r\n", i, i);
        snprintf(buf + n, sizeof buf - n, "\r\n");
        BAD(buf, SIP_ELIMIT, "Too many headers", 1, "170 headers");

        /* 70 Vias, as many hops as Max-Forwards allows, are fine; 71 not. */
        for (int vias = 70; vias <= 71; vias++) {
            n = (size_t)snprintf(buf, sizeof buf, "OPTIONS sip:a@b SIP/2.0\r\n");
            for (int i = 0; i < vias; i++)
                n += (size_t)snprintf(buf + n, sizeof buf - n,
                                      "Via: SIP/2.0/UDP h%d;branch=z9hG4bK%d\r\n", i, i);
            snprintf(buf + n, sizeof buf - n, "From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
                                              "Call-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n");
            if (vias == 70) {
                sip_msg m;
                ok(parse(buf, &m, NULL) == SIP_OK && m.nvia == 70 &&
                       str_is(m.via[69], "SIP/2.0/UDP h69;branch=z9hG4bK69"),
                   "70 Vias: accepted, all 70 kept in order");
            } else {
                BAD(buf, SIP_ELIMIT, "Too many Via headers", 1, "71 Vias");
            }
        }

        char cid[400];
        memset(cid, 'c', 300);
        snprintf(cid + 300, sizeof cid - 300, "\r\n");
        char hdr[420];
        snprintf(hdr, sizeof hdr, "Call-ID: %s", cid);
        BAD(with_header("Call-ID:", hdr), SIP_ELIMIT, "Call-ID too long", 0, "300-byte Call-ID");
        char tag[300];
        memset(tag, 't', 200);
        tag[200] = 0;
        snprintf(hdr, sizeof hdr, "From: <sip:a@b>;tag=%s\r\n", tag);
        BAD(with_header("From:", hdr), SIP_EBAD, "Bad From", 0, "200-byte tag");
        char name[400];
        memset(name, 'n', 300);
        name[300] = 0;
        snprintf(line, sizeof line, "From: \"%s\" <sip:a@b>;tag=1\r\n", name);
        BAD(with_header("From:", line), SIP_EBAD, "Bad From", 0,
            "300-byte display name (the registry's strings stop at 1 KiB; we at 256)");

        memset(buf, 'A', 65536);
        bad(buf, 65536, SIP_ELIMIT, "Message too large", 0, "a 64 KiB datagram");
        /* The largest datagram allowed, valid: a body of ~64 KiB. */
        size_t hl = (size_t)snprintf(buf, sizeof buf, INVITE_HEAD "Content-Length: %u\r\n\r\n",
                                     0u);
        size_t body = SIPMSG_MAX_LEN - hl - 4;   /* "0" becomes 5 digits */
        hl = (size_t)snprintf(buf, sizeof buf, INVITE_HEAD "Content-Length: %zu\r\n\r\n", body);
        memset(buf + hl, 'b', body);
        sip_msg m;
        const char *why;
        is(parse_n(buf, hl + body, &m, &why), SIP_OK, "a %zu-byte datagram with a big body parses",
           hl + body);
    }

    /* Binary junk, the same bytes every run. */
    unsigned seed = 12345;
    int crashed_not = 1, accepted = 0;
    for (int i = 0; i < 2000; i++) {
        size_t n = 1 + (seed = seed * 1103515245u + 12345u) % 600;
        for (size_t k = 0; k < n; k++)
            buf[k] = (char)((seed = seed * 1103515245u + 12345u) >> 16);
        sip_msg m;
        accepted += parse_n(buf, n, &m, NULL) == SIP_OK;
    }
    ok(crashed_not && accepted == 0, "2000 blocks of random bytes: all refused, none crashed");
}

/* Every prefix of a good message is refused (its Content-Length says how
 * much must come), and none is read past. */
static void test_truncations(void)
{
    size_t n = strlen(invite);
    int refused = 0;
    for (size_t k = 0; k < n; k++) {
        sip_msg m;
        refused += parse_n(invite, k, &m, NULL) != SIP_OK;
    }
    is(refused, (long long)n, "all %zu proper prefixes of the INVITE are refused", n);
}

static void test_reply(void)
{
    sip_msg m;
    char out[2048];
    parse(invite, &m, NULL);
    sip_reply r = { .status = 200, .reason = "OK", .to_tag = { "abc123", 6 },
                    .headers = "Contact: <sip:sipd@127.0.0.1:5060>\r\n",
                    .content_type = "application/sdp", .body = { "v=0\r\n", 5 } };
    size_t n = sip_build_reply(out, sizeof out, &m, &r);
    const char *want = "SIP/2.0 200 OK\r\n"
                       "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0\r\n"
                       "From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\n"
                       "To: service <sip:service@127.0.0.1:5060>;tag=abc123\r\n"
                       "Call-ID: 1-4242@127.0.0.1\r\n"
                       "CSeq: 1 INVITE\r\n"
                       "Contact: <sip:sipd@127.0.0.1:5060>\r\n"
                       "Content-Type: application/sdp\r\n"
                       "Content-Length: 5\r\n\r\nv=0\r\n";
    is_mem(out, n, want, strlen(want), "200 OK: Via/From/To+tag/Call-ID/CSeq copied, body");
    is(sip_build_reply(out, n - 1, &m, &r), 0, "one byte short: 0, nothing half-written claimed");

    sip_reply c = { .status = 487, .reason = "Request Terminated", .to_tag = { "abc123", 6 },
                    .cseq_method = "INVITE" };
    n = sip_build_reply(out, sizeof out, &m, &c);
    sip_msg back;
    char copy[2048];
    memcpy(copy, out, n);
    ok(sip_parse(copy, n, &back, NULL) == SIP_OK && back.status == 487 &&
           str_is(back.to_tag, "abc123") && str_is(back.cseq_method, "INVITE") &&
           back.content_length == 0,
       "a 487 built by us parses back, with our To-tag");
}

/* Random mutations of good messages: no crash, no read outside the
 * datagram, and whatever is accepted is self-consistent. */
static void test_fuzz(void)
{
#if defined(__SANITIZE_ADDRESS__)
    const int rounds = 20000;
#else
    const int rounds = 100000;
#endif
    const char *seeds[3];
    static char reinvite[4096];
    snprintf(reinvite, sizeof reinvite, "%s", with_header("To:", "t: <sip:service@h>;tag=x1\r\n"));
    seeds[0] = invite;
    seeds[1] = reinvite;
    seeds[2] = "BYE sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2\r\n"
               "f: \"A\" <sip:a@x>;tag=ft\r\nt: sip:b@y;tag=tt\r\ni: cid\r\nCSeq: 2 BYE\r\n"
               "l: 0\r\n\r\n";
    uint64_t s = 0x9e3779b97f4a7c15ull;
    const char *env = getenv("SIPD_FUZZ_SEED");
    if (env)
        s = strtoull(env, NULL, 0);
    note("fuzz seed 0x%llx, %d rounds", (unsigned long long)s, rounds);
    static char buf[16384];
    int accepted = 0, consistent = 0;
    for (int r = 0; r < rounds; r++) {
#define RND() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, s)
        const char *src = seeds[RND() % 3];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + (int)(RND() % 4);
        for (int e = 0; e < edits && n > 1; e++) {
            size_t at = RND() % n;
            switch (RND() % 6) {
            case 0: buf[at] = (char)RND(); break;                       /* any byte */
            case 1: buf[at] = "\r\n:; <>\"=,\\\t0"[RND() % 13]; break;  /* a syntax byte */
            case 2: n = at; break;                                      /* truncate */
            case 3: {                                                   /* delete a run */
                size_t k = 1 + RND() % 16;
                if (at + k > n)
                    k = n - at;
                memmove(buf + at, buf + at + k, n - at - k);
                n -= k;
                break;
            }
            case 4: {                                                   /* duplicate a run */
                size_t k = 1 + RND() % 64;
                if (at + k > n)
                    k = n - at;
                if (n + k < sizeof buf) {
                    memmove(buf + at + k, buf + at, n - at);
                    n += k;
                }
                break;
            }
            default:                                                    /* flip a bit */
                buf[at] ^= (char)(1u << (RND() % 8));
                break;
            }
        }
        sip_msg m;
        if (parse_n(buf, n, &m, NULL) != SIP_OK)
            continue;
        accepted++;
        int good = m.nvia >= 1 && m.from.p && m.to.p && m.call_id.n && m.cseq_ok &&
                   in_buf(m.body, n) && m.body.p + m.body.n <= cur + n &&
                   (m.content_length < 0 || (size_t)m.content_length == m.body.n) &&
                   in_buf(m.uri, n) && in_buf(m.from_tag, n) && in_buf(m.to_tag, n) &&
                   in_buf(m.call_id, n) && in_buf(m.branch, n);
        for (unsigned i = 0; i < m.nvia; i++)
            good &= in_buf(m.via[i], n);
        if (good && m.is_request) {
            /* and what we would answer parses too */
            char out[20000], copy[20000];
            sip_reply rep = { .status = 400, .reason = "Bad Request", .to_tag = { "t", 1 },
                              .record_route = 1, .src_ip = "192.0.2.7", .src_port = 5999 };
            size_t k = sip_build_reply(out, sizeof out, &m, &rep);
            sip_msg back;
            memcpy(copy, out, k);
            good = k > 0 && sip_parse(copy, k, &back, NULL) == SIP_OK && back.status == 400;
        }
        consistent += good;
    }
    ok(accepted > 0 && consistent == accepted,
       "fuzz: %d mutations, %d accepted, all consistent and answerable", rounds, accepted);
    if (consistent != accepted)
        diag("%d accepted messages failed the consistency check", accepted - consistent);
}

/* ------------------------------------------------------------ SDP */

static int has(const char *hay, size_t n, const char *needle)
{
    return memmem(hay, n, needle, strlen(needle)) != NULL;
}

static void test_sdp(void)
{
    sdp_offer o;
    const char *why;
    char out[4096];
    sip_str codec;
    is(sdp_parse(SDP_OFFER, strlen(SDP_OFFER), &o, &why), 0, "sipp's offer parses");
    ok(o.port == 6000 && o.nfmt == 1 && o.fmt[0].pt == 0 && str_is(o.fmt[0].name, "PCMU") &&
           str_is(o.addr, "127.0.0.1") && o.direction == SDP_SENDRECV,
       "audio port, PCMU, address, sendrecv");
    sdp_local l = { "127.0.0.1", 10000, 42, 1 };
    size_t n = sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why);
    ok(n > 0 && str_is(codec, "PCMU"), "answer with the default codecs: PCMU");
    ok(has(out, n, "m=audio 10000 RTP/AVP 0\r\n") && has(out, n, "a=sendrecv\r\n") &&
           has(out, n, "o=sipd 42 1 IN IP4 127.0.0.1\r\n") && has(out, n, "a=ptime:20\r\n"),
       "answer lines");
    is(sdp_version(out, n), 1, "sdp_version reads the o= version back");

    const char *hold = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                       "m=audio 7000 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
                       "a=sendonly\r\n";
    ok(sdp_parse(hold, strlen(hold), &o, &why) == 0 && o.direction == SDP_SENDONLY &&
           o.nfmt == 3 && str_is(o.fmt[2].name, "telephone-event"),
       "a=sendonly offer with static and dynamic types");
    n = sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why);
    ok(n && has(out, n, "m=audio 10000 RTP/AVP 0 8 101\r\n") && has(out, n, "a=recvonly\r\n") &&
           has(out, n, "a=fmtp:101 0-16\r\n") && str_is(codec, "PCMU"),
       "answer: our order, telephone-event kept, recvonly mirrors sendonly");
    const char *old_hold = "v=0\nc=IN IP4 0.0.0.0\nm=audio 7000 RTP/AVP 0\n";
    ok(sdp_parse(old_hold, strlen(old_hold), &o, &why) == 0 && o.direction == SDP_SENDONLY,
       "c=0.0.0.0 (RFC 2543 hold) counts as sendonly; bare LF lines accepted in SDP");
    const char *g729 = "v=0\r\nm=audio 7000 RTP/AVP 18\r\n";
    ok(sdp_parse(g729, strlen(g729), &o, &why) == 0 &&
           sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why) == 0 &&
           strcmp(why, "No common codec") == 0,
       "no common codec: no answer");
    const char *video = "v=0\r\nm=video 9000 RTP/AVP 96\r\nm=audio 7002 RTP/AVP 8\r\n";
    ok(sdp_parse(video, strlen(video), &o, &why) == 0 && o.port == 7002 && o.nfmt == 1,
       "the first audio stream, after a video one");
    ok(sdp_parse("x=1\r\n", 5, &o, &why) != 0, "no v=0: refused");
    ok(sdp_parse("v=0\r\nm=audio x RTP/AVP 0\r\n", 26, &o, &why) != 0, "bad port: refused");
    ok(sdp_parse("v=0\r\nm=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", 43, &o, &why) != 0,
       "rtpmap without a rate: refused");

    /* The answer follows the registry's media config. */
    const char *path = test_dir("sdp");
    shmreg_options opt = { .flags = SHMREG_CREATE, .max_sessions = 64, .max_handles = 8,
                           .heap_bytes = 1 << 20, .event_records = 64 };
    shmreg *h = NULL;
    shmreg_config_view *v = NULL;
    int rc = shmreg_open(path, &opt, &h);
    static const char text[] = "[media]\ncodecs = [\"PCMA\", \"PCMU\"]\nptime = 30\n"
                               "[sdp]\nrtcp-mux = \"\"\nx-app = \"1\"\n";
    if (rc == 0)
        rc = shmreg_config_load_text(h, "media", text, strlen(text));
    if (rc == 0)
        rc = shmreg_config_open_view(h, "media", &v);
    is(rc, 0, "a registry with a media config (%s)", rc ? shmreg_errmsg() : "ok");
    const char *both = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=audio 7000 RTP/AVP 0 8\r\n";
    sdp_parse(both, strlen(both), &o, &why);
    n = v ? sdp_answer(out, sizeof out, &o, v, &l, &codec, &why) : 0;
    ok(n && str_is(codec, "PCMA") && has(out, n, "m=audio 10000 RTP/AVP 8 0\r\n") &&
           has(out, n, "a=ptime:30\r\n") && has(out, n, "a=rtcp-mux\r\n") &&
           has(out, n, "a=x-app:1\r\n"),
       "config order (PCMA first), ptime and custom attributes from the config");
    shmreg_config_release(v);
    shmreg_close(h);
    shmreg_destroy(path, 1);

    /* SDP junk: bounded, no crash. */
    uint64_t s = 7;
    char buf[600];
    for (int r = 0; r < 20000; r++) {
        size_t len = strlen(hold);
        memcpy(buf, hold, len);
        for (int e = 0; e < 3 && len > 0; e++) {
            size_t at = (size_t)((s = s * 6364136223846793005ull + 1) >> 33) % len;
            buf[at] = (char)(s >> 20);
            if ((s >> 40) % 5 == 0)
                len = at;
        }
        char *blk = malloc(len ? len : 1);
        memcpy(blk, buf, len);
        if (sdp_parse(blk, len, &o, &why) == 0)
            sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why);
        free(blk);
    }
    ok(1, "20000 mutated SDP offers parsed and answered without a crash");
}


/* ------------------------------------------------------------ RFC 3261 */

static void test_rfc3261(void)
{
    sip_msg m;
    const char *why;
    /* 7.3.1: a folded line is one header; its CRLF reads as white space. */
    const char *folded =
        "OPTIONS sip:a@b SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5070\r\n ;branch=z9hG4bKf1;rport\r\n"
        "From: <sip:a@b>\r\n\t;tag=ft\r\nTo: <sip:c@d>\r\nCall-ID: fold\r\n"
        "CSeq: 3\r\n  OPTIONS\r\nSubject: one\r\n two\r\n\r\n";
    is(parse(folded, &m, &why), SIP_OK, "folded Via, From, CSeq and Subject: accepted");
    ok(str_is(m.branch, "z9hG4bKf1") && str_is(m.from_tag, "ft") && m.cseq == 3 &&
           str_is(m.cseq_method, "OPTIONS") && str_is(m.sent_by, "10.0.0.1:5070") &&
           m.via_rport != NULL && m.nheaders == 6,
       "their values read across the fold: branch, tag, CSeq, sent-by, rport; 6 headers");

    /* 18.3: bytes after the Content-Length body of a datagram are dropped. */
    const char *extra = with_header("Content-Length:", "Content-Length: 5\r\n");
    is(parse(extra, &m, &why), SIP_OK, "Content-Length shorter than the datagram: accepted");
    ok(m.content_length == 5 && str_is(m.body, "v=0\r\n"), "the body is its first 5 bytes");

    /* Record-Route, Require, Via details. */
    static char buf[4096];
    snprintf(buf, sizeof buf,
             "INVITE sip:svc@127.0.0.1 SIP/2.0\r\n"
             "Via: SIP/2.0/UDP proxy.example.com:5070;branch=z9hG4bKp1;rport, "
             "SIP/2.0/UDP [::1]:5062;branch=z9hG4bKc1\r\n"
             "Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKc0;received=10.9.9.9\r\n"
             "Record-Route: <sip:127.0.0.1:5070;lr;ftag=a>\r\n"
             "Record-Route: <sip:10.0.0.9;lr>, <sip:10.0.0.8;lr>\r\n"
             "Require: 100rel\r\nRequire: timer, foo\r\n"
             "From: <sip:a@b>;tag=ft\r\nTo: <sip:svc@127.0.0.1>\r\nCall-ID: rr\r\n"
             "CSeq: 7 INVITE\r\nContact: \"A\" <sip:a@10.1.1.1:5062;transport=udp>;expires=60\r\n"
             "Content-Length: 0\r\n\r\n");
    is(parse(buf, &m, &why), SIP_OK, "an INVITE through two proxies parses");
    ok(m.nrr == 2 && str_is(m.rr[0], "<sip:127.0.0.1:5070;lr;ftag=a>") &&
           str_is(m.rr[1], "<sip:10.0.0.9;lr>, <sip:10.0.0.8;lr>"),
       "Record-Route lines kept in order");
    ok(m.nrequire == 2 && str_is(m.require[0], "100rel") && str_is(m.require[1], "timer, foo"),
       "Require lines kept");
    ok(str_is(m.sent_by, "proxy.example.com:5070") && str_is(m.via_host, "proxy.example.com") &&
           m.via_rport && str_is(m.branch, "z9hG4bKp1"),
       "top Via: sent-by, host, rport asked, branch of the first via-parm");

    /* 18.2.1 and RFC 3581: the reply's top Via. */
    char out[4096], copy[4096];
    sip_reply r = { .status = 180, .reason = "Ringing", .to_tag = { "tt", 2 },
                    .record_route = 1, .src_ip = "127.0.0.1", .src_port = 40000 };
    size_t n = sip_build_reply(out, sizeof out, &m, &r);
    ok(has(out, n, "Via: SIP/2.0/UDP proxy.example.com:5070;branch=z9hG4bKp1;rport=40000"
                   ";received=127.0.0.1, SIP/2.0/UDP [::1]:5062;branch=z9hG4bKc1\r\n"
                   "Via: SIP/2.0/UDP 10.1.1.1;branch=z9hG4bKc0;received=10.9.9.9\r\n"),
       "host name sent-by with rport: rport=40000;received=127.0.0.1 in the first via-parm "
       "only, the rest untouched");
    ok(has(out, n, "\r\nRecord-Route: <sip:127.0.0.1:5070;lr;ftag=a>\r\n"
                   "Record-Route: <sip:10.0.0.9;lr>, <sip:10.0.0.8;lr>\r\n"),
       "Record-Route copied into the 18x, in order (12.1.1)");
    memcpy(copy, out, n);
    sip_msg back;
    ok(sip_parse(copy, n, &back, NULL) == SIP_OK && back.nvia == 2 && back.nrr == 2,
       "and the reply parses back");
    r.status = 486;
    r.record_route = 0;
    n = sip_build_reply(out, sizeof out, &m, &r);
    ok(!has(out, n, "Record-Route"), "no Record-Route in a final error response");
    /* Contact and Route URIs. */
    sip_str uri, host;
    unsigned port;
    ok(sip_addr_uri(m.contact, &uri) == 0 && str_is(uri, "sip:a@10.1.1.1:5062;transport=udp"),
       "Contact URI out of a name-addr with parameters");
    ok(sip_addr_uri(m.rr[1], &uri) == 0 && str_is(uri, "sip:10.0.0.9;lr"),
       "the first entry of a Record-Route list");
    ok(sip_uri_hostport(uri, &host, &port) == 0 && str_is(host, "10.0.0.9") && port == 5060,
       "host and default port of a URI");
    ok(sip_uri_hostport((sip_str){ "sip:u@[::1]:5999;lr", 19 }, &host, &port) == 0 &&
           str_is(host, "::1") && port == 5999,
       "IPv6 host and port");

    sip_msg plain;
    parse(invite, &plain, NULL);
    r.src_ip = "127.0.0.1";
    n = sip_build_reply(out, sizeof out, &plain, &r);
    ok(has(out, n, "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0\r\n"),
       "sent-by is the source address, no rport: the Via goes back as it came");
    r.src_ip = "10.0.0.99";
    n = sip_build_reply(out, sizeof out, &plain, &r);
    ok(has(out, n, "Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0;received=10.0.0.99\r\n"),
       "sent-by differs from the source: received= added");

    /* The transaction key (17.2.3): branch and sent-by, not the method. */
    sip_msg c;
    char cbuf[4096];
    snprintf(cbuf, sizeof cbuf, "%s", buf);
    memcpy(strstr(cbuf, "INVITE sip"), "CANCEL", 6);
    memcpy(strstr(cbuf, "7 INVITE"), "7 CANCEL", 8);
    cbuf[strstr(cbuf, "CANCEL sip") - cbuf + 6] = ' ';
    parse(buf, &m, NULL);
    uint64_t k1 = txn_key(&m);
    ok(parse(cbuf, &c, NULL) == SIP_OK && txn_key(&c) == k1 && k1 != 0,
       "a CANCEL has its INVITE's transaction key");
    char *b = strstr(buf, "z9hG4bKp1");
    b[8] = '2';
    parse(buf, &m, NULL);
    ok(txn_key(&m) != k1, "another branch, another key");
    b[8] = '1';

    /* The call record (dialog.h): written, read back, with its route set. */
    parse(buf, &m, NULL);
    call_rec rec, got;
    char routebuf[CALL_REC_ROUTE_MAX];
    unsigned char ad[SHMREG_MAX_APPDATA];
    call_rec_init(&rec, &m, 0x0123456789abcdefull, routebuf);
    rec.acked_cseq = 6;
    rec.final_status = 487;
    size_t adn = call_rec_write(&rec, ad);
    ok(adn <= SHMREG_MAX_APPDATA && call_rec_read((shmreg_str){ (char *)ad, adn }, &got) == 0 &&
           got.invite_cseq == 7 && got.remote_cseq == 7 && got.acked_cseq == 6 &&
           got.final_status == 487 && got.invite_key == 0x0123456789abcdefull &&
           str_is(got.target, "sip:a@10.1.1.1:5062;transport=udp") &&
           str_is(got.route, "<sip:127.0.0.1:5070;lr;ftag=a>, <sip:10.0.0.9;lr>, "
                             "<sip:10.0.0.8;lr>") &&
           got.flags == 0,
       "call record round trip: CSeqs, status, key, target, route set joined in order");
    const unsigned char old[4] = { 0, 0, 0, 9 };
    ok(call_rec_read((shmreg_str){ (const char *)old, 4 }, &got) == 0 && got.invite_cseq == 9 &&
           got.acked_cseq == 0,
       "an older sipd's 4-byte record still reads");

    /* The BYE that ends it goes through the route set (loose routing). */
    shmreg_session sv;
    memset(&sv, 0, sizeof sv);
    sv.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){ "rr", 2 };
    sv.str[SHMREG_FIELD_LOCAL_TAG] = (shmreg_str){ "lt", 2 };
    sv.str[SHMREG_FIELD_REMOTE_TAG] = (shmreg_str){ "ft", 2 };
    sv.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){ "sip:a@b", 7 };
    sv.str[SHMREG_FIELD_TO_URI] = (shmreg_str){ "sip:svc@127.0.0.1", 17 };
    struct sockaddr_storage to;
    socklen_t tolen;
    call_rec_read((shmreg_str){ (char *)ad, adn }, &got);
    n = dialog_build_bye(out, sizeof out, &sv, &got, "127.0.0.1", 5060, 1, 0xab, &to, &tolen);
    const char *want_bye =
        "BYE sip:a@10.1.1.1:5062;transport=udp SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK00000000000000ab;rport\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:127.0.0.1:5070;lr;ftag=a>, <sip:10.0.0.9;lr>, <sip:10.0.0.8;lr>\r\n"
        "From: <sip:svc@127.0.0.1>;tag=lt\r\nTo: <sip:a@b>;tag=ft\r\nCall-ID: rr\r\n"
        "CSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    is_mem(out, n, want_bye, strlen(want_bye), "BYE: target as Request-URI, route set as Route");
    ok(to.ss_family == AF_INET && ntohs(((struct sockaddr_in *)&to)->sin_port) == 5070,
       "sent to the first route, 127.0.0.1:5070");

    /* multipart/mixed: the SDP part is the offer (RFC 5621). */
    static char mp[2048];
    const char *parts = "--XyZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
                        "--XyZ\r\nContent-Type: application/sdp\r\n\r\n" SDP_OFFER "\r\n--XyZ--\r\n";
    snprintf(mp, sizeof mp,
             "%.*sContent-Type: multipart/mixed;boundary=\"XyZ\"\r\nContent-Length: %zu\r\n\r\n%s",
             (int)(strstr(invite, "Content-Type:") - invite), invite, strlen(parts), parts);
    sip_str sdp;
    ok(parse(mp, &m, NULL) == SIP_OK && sip_sdp_body(&m, &sdp) == 1 && str_is(sdp, SDP_OFFER),
       "multipart/mixed: the application/sdp part, exactly");
    ok(parse(with_header("Content-Type:", "Content-Type: text/plain\r\n"), &m, NULL) == SIP_OK &&
           sip_sdp_body(&m, &sdp) == -1,
       "text/plain body: not taken (415)");
    ok(parse(with_header("Content-Type:", "Content-Type: application/SDP ; x=1\r\n"), &m, NULL) ==
               SIP_OK && sip_sdp_body(&m, &sdp) == 1,
       "media type compared case-insensitively, parameters ignored");

    /* RFC 3264 section 6: one m= line per offered one, same order. */
    sdp_offer o;
    sdp_local l = { "127.0.0.1", 10000, 42, 1 };
    const char *av = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
                     "m=video 9000 RTP/AVP 96 97\r\na=rtpmap:96 H264/90000\r\n"
                     "m=audio 7000 RTP/AVP 0 8\r\n"
                     "m=application 9 UDP/BFCP *\r\n";
    sip_str codec;
    ok(sdp_parse(av, strlen(av), &o, &why) == 0 && o.nmedia == 3 && o.audio == 1,
       "video + audio + application offer: 3 streams, audio the second");
    n = sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why);
    const char *m1 = memmem(out, n, "m=video 0 RTP/AVP 96 97\r\n", 25);
    const char *m2 = memmem(out, n, "m=audio 10000 RTP/AVP 0 8\r\n", 27);
    const char *m3 = memmem(out, n, "m=application 0 UDP/BFCP *\r\n", 28);
    int nm = 0;
    for (const char *q = out; (q = memmem(q, n - (size_t)(q - out), "m=", 2)) != NULL; q++)
        nm++;
    ok(m1 && m2 && m3 && m1 < m2 && m2 < m3 && nm == 3,
       "answer: 3 m= lines in the offer's order, video and application rejected (port 0)");
    ok(memmem(m2, n - (size_t)(m2 - out), "a=sendrecv", 10) &&
           !memmem(out, (size_t)(m2 - out), "a=rtpmap", 8),
       "our attributes only under our audio stream");
    const char *onlyvideo = "v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 9000 RTP/AVP 96\r\n";
    ok(sdp_parse(onlyvideo, strlen(onlyvideo), &o, &why) == 0 &&
           sdp_answer(out, sizeof out, &o, NULL, &l, &codec, &why) == 0,
       "no audio stream: no answer (488)");

    /* Late offer: an offer of our own, the default codecs. */
    n = sdp_make_offer(out, sizeof out, NULL, &l, &codec, &why);
    ok(n && has(out, n, "m=audio 10000 RTP/AVP 0 8 101\r\n") &&
           has(out, n, "a=rtpmap:101 telephone-event/8000\r\n") && has(out, n, "a=sendrecv\r\n") &&
           str_is(codec, "PCMU"),
       "our offer: PCMU, PCMA, telephone-event 101, sendrecv");
    ok(n && sdp_parse(out, n, &o, &why) == 0 && o.nfmt == 3, "and it parses as an offer");
}

int main(void)
{
    make_invite();
    test_good_invite();
    test_forms();
    test_refused();
    test_truncations();
    test_reply();
    test_fuzz();
    test_sdp();
    test_rfc3261();
    free(cur);
    return done_testing();
}
