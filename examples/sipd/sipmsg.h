/*
 * sipmsg.h — a small, strict, allocation-free SIP message parser and
 * response writer for sipd.
 *
 * The parser never copies: every field is a {ptr, len} slice of the
 * datagram, which must outlive the sip_msg. It reads only bytes inside
 * [buf, buf + len) and enforces hard limits (datagram size, header count,
 * line length, token lengths), so a hostile datagram costs a bounded scan
 * and nothing else. It is strict on purpose: sipd is an example and a test
 * bed, so anything unusual (bare LF, duplicated From/To, a Content-Length
 * longer than the body) is refused rather than guessed at. What RFC 3261
 * says a receiver must accept is accepted: folded header lines (7.3.1,
 * their CRLF is read as white space), bytes after the Content-Length body
 * of a datagram (18.3: discarded), compact header names.
 */
#ifndef SIPD_SIPMSG_H
#define SIPD_SIPMSG_H

#include <stddef.h>
#include <stdint.h>

#define SIPMSG_MAX_LEN      65535u /* bytes in one datagram */
#define SIPMSG_MAX_HEADERS    160u /* header lines (folded continuations not counted) */
#define SIPMSG_MAX_VIA         70u /* Via header lines: as many hops as Max-Forwards allows */
#define SIPMSG_MAX_RR          16u /* Record-Route header lines */
#define SIPMSG_MAX_REQUIRE      8u /* Require header lines */
#define SIPMSG_MAX_LINE      2048u /* bytes in one line, CRLF excluded */
#define SIPMSG_MAX_URI       1024u /* bytes in a URI (the registry's string limit) */
#define SIPMSG_MAX_CALLID     256u
#define SIPMSG_MAX_TAG        128u /* From/To tag, Via branch */
#define SIPMSG_MAX_NAME       256u /* display name in From/To */

typedef struct { const char *p; size_t n; } sip_str;

enum sip_method {
    SIP_OTHER = 0, SIP_INVITE, SIP_ACK, SIP_BYE, SIP_CANCEL, SIP_OPTIONS
};

enum sip_parse_result {
    SIP_OK = 0,
    SIP_EBAD = -1,    /* malformed */
    SIP_ELIMIT = -2,  /* over one of the SIPMSG_MAX_* limits */
};

typedef struct sip_msg {
    int is_request;
    int method;                   /* enum sip_method, requests only */
    sip_str method_name, uri;     /* request line */
    int status;                   /* responses: 100..699 */
    sip_str reason;
    sip_str via[SIPMSG_MAX_VIA];  /* whole values, in order, for replies */
    unsigned nvia;
    sip_str branch;               /* branch parameter of the top Via */
    sip_str sent_by;              /* host[:port] of the top Via (17.2.3 matching) */
    sip_str via_host;             /* its host, IPv6 without brackets */
    const char *via_parm_end;     /* end of the top via-parm (before a comma) */
    const char *via_rport;        /* end of a value-less "rport" in it, else NULL */
    sip_str rr[SIPMSG_MAX_RR];    /* Record-Route lines, in order */
    unsigned nrr;
    sip_str require[SIPMSG_MAX_REQUIRE]; /* Require lines (option-tag lists) */
    unsigned nrequire;
    sip_str from, to;             /* whole values, for replies */
    sip_str from_uri, from_name, from_tag;
    sip_str to_uri, to_tag;
    sip_str call_id;
    uint32_t cseq;
    int cseq_ok;                  /* CSeq present and valid */
    sip_str cseq_method;
    sip_str contact, content_type;
    long content_length;          /* -1: no Content-Length header */
    sip_str body;
    unsigned nheaders;
} sip_msg;

/* Parse `len` bytes at `buf`. Returns SIP_OK, SIP_EBAD or SIP_ELIMIT;
 * *why (may be NULL) gets a short static reason phrase on failure, fit for
 * a "400 <why>" status line. On failure *m still holds whatever valid
 * headers were seen before the problem, so sip_can_reply() can tell
 * whether a 400 is possible. */
int sip_parse(const char *buf, size_t len, sip_msg *m, const char **why);

/* 1 when *m has what a response needs (a request other than ACK with a
 * Via, From, To, Call-ID and CSeq that parsed); 0 otherwise: drop it. */
int sip_can_reply(const sip_msg *m);

/* What to say in a response. Fields left zero/NULL are omitted. */
typedef struct sip_reply {
    int status;
    const char *reason;
    sip_str to_tag;            /* added to To when the request's To has none */
    const char *cseq_method;   /* NULL: the request's method (487 to a CANCEL: "INVITE") */
    const char *headers;       /* extra header lines, each ending in CRLF */
    const char *content_type;  /* with a body */
    sip_str body;
    int record_route;          /* copy the request's Record-Route lines (12.1.1) */
    const char *src_ip;        /* where the request came from: the top Via gets */
    unsigned src_port;         /* received= and rport= from these (18.2.1, RFC 3581) */
} sip_reply;

/* Write the response to request `req` into out[0..cap). Via, From, To,
 * Call-ID and CSeq are copied from the request, Vias in order; the top
 * Via gets "received=" when its host is not src_ip (or when it asks for
 * rport) and a value-less "rport" gets src_port. Returns the length, or 0
 * if it does not fit. */
size_t sip_build_reply(char *out, size_t cap, const sip_msg *req, const sip_reply *r);

/* A bounded appender for text built in a caller's buffer (replies here,
 * SDP answers in sdp.c): once something does not fit, `full` is set and
 * nothing more is written, so a builder appends without checking and
 * looks at `full` once at the end. */
typedef struct sip_out {
    char *p;
    size_t cap, len;
    int full;
} sip_out;

void sip_out_put(sip_out *o, const char *s, size_t n);
void sip_out_puts(sip_out *o, const char *s);
void sip_out_putu(sip_out *o, unsigned long v);
void sip_out_printf(sip_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The body's SDP: the body itself when Content-Type is application/sdp,
 * the first application/sdp part of a multipart/mixed body (RFC 5621).
 * Returns 1 with *sdp set, 0 when there is no body, -1 when the body is of
 * a type sipd does not take (the caller answers 415). */
int sip_sdp_body(const sip_msg *m, sip_str *sdp);

/* The URI of a name-addr or addr-spec value (Contact, Route): 0 or -1. */
int sip_addr_uri(sip_str v, sip_str *uri);

/* Host and port of a SIP URI ("sip:u@1.2.3.4:5062;lr" -> "1.2.3.4", 5062;
 * 5060 when absent; IPv6 without brackets). 0 or -1. */
int sip_uri_hostport(sip_str uri, sip_str *host, unsigned *port);

/* Small helpers the server shares with the parser. */
int sip_str_eq(sip_str a, const char *lit);       /* exact */
int sip_str_ieq(sip_str a, const char *lit);      /* ASCII case-insensitive */
const char *sip_method_name(int method);          /* "INVITE", ...; "?" */

#endif
