/*
 * dialog.h — what sipd keeps about a call's dialog and its INVITE
 * transaction in the registry, and the BYE it builds from that.
 *
 * Why in the registry: any worker may receive the ACK, the CANCEL, a
 * retransmission or the BYE of a call (worker.c spreads datagrams at
 * random), and the worker that took the INVITE may die. So every fact
 * that decides what happens next lives in the session's app data, a
 * small record any process reads in place and rewrites whole:
 *   - the initial INVITE's CSeq and its transaction key (branch and
 *     sent-by of its top Via, RFC 3261 17.2.3), which a retransmission
 *     or a CANCEL must match;
 *   - the highest CSeq the peer used in the dialog (12.2.2: a lower one
 *     gets 500) and the highest INVITE CSeq acknowledged: whoever
 *     retransmits a final response stops once that covers its CSeq;
 *   - the final status sent to the INVITE, so a retransmitted INVITE gets
 *     the same answer from any worker;
 *   - the remote target (Contact) and route set (Record-Route, 12.1.1) of
 *     the dialog, so that any process can send the BYE that ends it.
 * The registry has no compare-and-set for app data, so two workers
 * rewriting the record at the same moment can lose one's write. Every
 * field is therefore either written once or only ever raised (flags only
 * added, but REC_LATE_OFFER), call_rec_put() reads the record back and
 * merges what a concurrent write took away, and what is still lost in
 * the last window only costs a retransmission more or a 500 less; the
 * decisions that must not race (answer vs. CANCEL, ACK timeout vs. BYE)
 * are state transitions, which are compare-and-set.
 */
#ifndef SIPD_DIALOG_H
#define SIPD_DIALOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shmreg.h"
#include "sipmsg.h"

#define CALL_REC_ROUTE_MAX 200u   /* bytes of target + route set kept */

enum {
    REC_LATE_OFFER = 1,     /* our offer went in the 2xx; the ACK brings the answer */
    REC_BYE_ANSWERED = 2,   /* the BYE we sent got a final response */
    REC_NO_ROUTE = 4,       /* target and route set did not fit: no BYE possible */
};

typedef struct call_rec {
    uint32_t invite_cseq;   /* the INVITE that created the call */
    uint32_t remote_cseq;   /* highest CSeq of the peer's requests in the dialog */
    uint32_t acked_cseq;    /* every INVITE with a CSeq up to this one is ACKed (an
                             * ACK, or a later request of the peer, says so) */
    uint16_t final_status;  /* final response to the initial INVITE; 0: none yet */
    uint8_t flags;          /* REC_* */
    uint64_t invite_key;    /* txn_key() of the initial INVITE */
    sip_str target;         /* remote target URI (points into the record) */
    sip_str route;          /* route set, Record-Route values joined by ", " */
} call_rec;

/* The record of a new call, from its INVITE: its route set is joined into
 * routebuf, which r then points into. */
void call_rec_init(call_rec *r, const sip_msg *invite, uint64_t key,
                   char routebuf[CALL_REC_ROUTE_MAX]);

/* Read a record in place (r's strings point into `ad`): 0, or -1 when it
 * is not one of ours. A bare 4-byte CSeq (what older sipd wrote) reads as
 * a record with only invite_cseq and remote_cseq set. */
int call_rec_read(shmreg_str ad, call_rec *r);

/* Write r into buf (SHMREG_MAX_APPDATA bytes). Returns the length. A
 * target and route set longer than CALL_REC_ROUTE_MAX are left out and
 * REC_NO_ROUTE set. */
size_t call_rec_write(const call_rec *r, unsigned char *buf);

/* The record of session `sid`, read in a read section and copied to the
 * caller (strings into `buf`, SHMREG_MAX_APPDATA bytes); also its state
 * and owner. 0 or a registry error. */
int call_rec_get(shmreg *h, const shmreg_id *sid, call_rec *r, unsigned char *buf, int *state,
                 int32_t *owner);

/* Rewrite the record of `sid`, read it back, and merge and write again
 * when a concurrent write took something away (see the top). */
int call_rec_put(shmreg *h, const shmreg_id *sid, const call_rec *r);

/* The BYE that ends the dialog of session `s` (a view read in place) whose
 * record is `r`, from us at host:port: Request-URI the remote target,
 * Route the route set (loose routing), CSeq `cseq`, a fresh branch made
 * from `branch_seed`. *to receives where to send it: the first route, or
 * the target. Returns the length, or 0 when it cannot be built (no
 * target, a host that is not an IP address, no room). */
size_t dialog_build_bye(char *out, size_t cap, const shmreg_session *s, const call_rec *r,
                        const char *host, unsigned port, uint32_t cseq, uint64_t branch_seed,
                        struct sockaddr_storage *to, socklen_t *tolen);

/* We end the call of `sid`: state `from` (SHMREG_STATE_ANY: any) -> `to`
 * (Failed for a 2xx never ACKed within 64*T1, 13.3.1.4; Terminating for a
 * call past its maximum duration), with `reason`, and the BYE that tells
 * the peer is built into out as dialog_build_bye does (CSeq 1: it is the
 * first request we send in the dialog). *moved is 1 when this call made
 * the transition (0: an ACK or a BYE got there first, and nothing is
 * built). Returns the BYE's length, 0 if none. */
size_t dialog_end(shmreg *h, const shmreg_id *sid, int from, int to, const char *reason,
                  const char *host, unsigned port, uint64_t branch_seed, char *out, size_t cap,
                  struct sockaddr_storage *dst, socklen_t *dstlen, int *moved);

#endif
