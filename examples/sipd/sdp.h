/*
 * sdp.h — just enough SDP (RFC 4566 / 3264) for sipd: read the first audio
 * stream of an offer, and write the answer from the shared media config,
 * one m= line for each of the offer's in the same order (RFC 3264 section
 * 6), the streams sipd does not take rejected with port 0; and write an
 * offer of its own for an INVITE that came without one (late offer).
 *
 * Like sipmsg.h, the offer is parsed in place (slices of the body, no
 * allocation) and bounded by the body's length; anything sipd does not
 * understand is ignored rather than interpreted.
 */
#ifndef SIPD_SDP_H
#define SIPD_SDP_H

#include <stddef.h>
#include <stdint.h>

#include "shmreg.h"
#include "sipmsg.h"

#define SDP_MAX_FMT    32u  /* payload types of the audio stream we look at */
#define SDP_MAX_LINES 256u
#define SDP_MAX_LINE 1024u
#define SDP_MAX_MEDIA   16u /* m= lines in an offer: each must be answered */

enum sdp_dir { SDP_SENDRECV = 0, SDP_SENDONLY, SDP_RECVONLY, SDP_INACTIVE };

typedef struct sdp_fmt {
    unsigned pt;        /* payload type */
    sip_str name;       /* from a=rtpmap, or the static table */
    unsigned rate, channels;
} sdp_fmt;

typedef struct sdp_media {  /* one m= line, as the answer mirrors it */
    sip_str type, proto, fmts;  /* "video", "RTP/AVP", "96 97" */
    unsigned port;
} sdp_media;

typedef struct sdp_offer {
    unsigned port;      /* of the first m=audio line; 0: stream rejected */
    sip_str proto;      /* RTP/AVP, ... */
    sip_str addr;       /* connection address (media level wins) */
    int direction;      /* enum sdp_dir, media level wins; c=0.0.0.0 is "sendonly" */
    unsigned nfmt;
    sdp_fmt fmt[SDP_MAX_FMT];
    unsigned nmedia;    /* every m= line, in order */
    sdp_media media[SDP_MAX_MEDIA];
    int audio;          /* index in media[] of the stream above; -1: none */
} sdp_offer;

/* Parse an SDP body. Returns 0, or -1 with *why set ("Bad SDP: ..."). An
 * offer without an audio stream parses with port 0. */
int sdp_parse(const char *body, size_t len, sdp_offer *o, const char **why);

/* The session version of the o= line of an SDP we wrote (0 if none). */
uint64_t sdp_version(const char *body, size_t len);

/* What the answer says about us. */
typedef struct sdp_local {
    const char *addr;   /* our media address (IPv4 or IPv6 text) */
    unsigned port;      /* our RTP port */
    uint64_t sess_id, version;
} sdp_local;

/* Write the answer to `o` into out[0..cap): the codecs of the media config
 * `media` (NULL: PCMU, PCMA, telephone-event) that the offer has, in the
 * config's order, its ptime and custom SDP attributes, and the direction
 * that mirrors the offer's. *codec receives the first real codec (not
 * telephone-event/CN) chosen, pointing into `o`'s body. Returns the length;
 * 0 with *why set when there is no common codec or no room. */
size_t sdp_answer(char *out, size_t cap, const sdp_offer *o,
                  const shmreg_config_view *media, const sdp_local *l,
                  sip_str *codec, const char **why);

/* An offer of our own (late offer, RFC 3261 13.2.1): one audio stream
 * with every codec of the media config, as sdp_answer writes it. Returns
 * the length; 0 with *why set when there is no room. */
size_t sdp_make_offer(char *out, size_t cap, const shmreg_config_view *media,
                      const sdp_local *l, sip_str *codec, const char **why);

/* "sendrecv", ... */
const char *sdp_dir_name(int dir);

#endif
