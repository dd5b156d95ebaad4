/*
 * txn.h — sipd's server transactions: matching (RFC 3261 17.2.3) and the
 * one worker's retransmission timers (Timers G/H for non-2xx finals,
 * 13.3.1.4 for 2xx, Timer E/F for the BYE sipd sends).
 *
 * Who decides and who sends. A worker that sends a final response (or a
 * BYE) keeps a copy of the datagram in its own table and resends it on
 * the RFC's schedule: T1, 2*T1, ... capped at T2, for at most 64*T1.
 * Whether to go on is never decided from this table: before each copy the
 * worker asks the registry (the call record of dialog.h, the session's
 * state), because the ACK that stops it may have reached any other
 * worker. If the worker dies its copies die with it; the call itself is
 * still finished by the master (sipd.c, the sweep), from the registry.
 *
 * The table is a fixed array allocated once (no malloc on the hot path);
 * a full table, or a message too large for a slot, means the response is
 * sent once and not retransmitted, and is counted.
 */
#ifndef SIPD_TXN_H
#define SIPD_TXN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shmreg.h"
#include "sipmsg.h"

#define TXN_MAX 512u         /* timers of one worker */
#define TXN_MSG_MAX 8192u    /* bytes of one kept datagram */

enum txn_kind {
    TX_FREE = 0,
    TX_RING,    /* an INVITE to answer when its ring time is up (msg: the INVITE) */
    TX_2XX,     /* a 2xx to an INVITE, until its ACK (13.3.1.4) */
    TX_FINAL,   /* a 3xx-6xx to an INVITE, until its ACK (Timers G, H) */
    TX_BYE,     /* our BYE, until a final response (Timers E, F) */
};

typedef struct txn {
    int kind;
    shmreg_id sid;
    uint32_t cseq;           /* 2XX, FINAL: the INVITE's CSeq (an ACK of it stops them) */
    uint64_t start_ms;       /* first copy sent; the 64*T1 limit runs from here */
    uint64_t due_ms;         /* next time to look at it */
    uint64_t answer_ms;      /* RING: when to answer */
    uint32_t interval_ms;    /* current retransmission interval */
    unsigned sent;           /* copies sent */
    struct sockaddr_storage to;
    socklen_t tolen;
    size_t len;
    char msg[TXN_MSG_MAX];
} txn;

typedef struct txn_table {
    uint32_t t1, t2;         /* ms */
    unsigned hi;             /* entries [hi, TXN_MAX) are free */
    txn e[TXN_MAX];
} txn_table;

/* A new entry holding msg[0..len), to be sent to `to`; its first copy is
 * taken to be sent at `now`, so the first retransmission is due at
 * now + T1. NULL when the table is full or len > TXN_MSG_MAX. */
txn *txn_add(txn_table *t, int kind, const shmreg_id *sid, uint32_t cseq,
             const struct sockaddr *to, socklen_t tolen, const char *msg, size_t len,
             uint64_t now);

/* Replace the kept datagram (a ringing INVITE becomes its 487) and start
 * the retransmission schedule anew at `now`. 0, or -1 if it does not fit
 * (the entry is then freed). */
int txn_restart(txn_table *t, txn *e, int kind, const char *msg, size_t len, uint64_t now);

/* 1 when the 64*T1 limit (Timer B/F/H, and the 2xx give-up) is reached
 * at the entry's due time. */
int txn_expired(const txn_table *t, const txn *e);

/* Count one more copy sent and schedule the next: the interval doubles up
 * to T2, and the last look is at exactly start + 64*T1. Due times advance
 * from the previous due time, not from now, so a worker that was late
 * sends the same number of copies. */
void txn_sent(txn_table *t, txn *e);

void txn_free(txn_table *t, txn *e);

/* The earliest due time, UINT64_MAX when there is none. */
uint64_t txn_next_due(const txn_table *t);

/* The transaction key of a request (17.2.3): its top Via's branch and
 * sent-by. The method is not in it: a CANCEL or an ACK to a non-2xx has
 * the key of its INVITE. 0 for a branch without the z9hG4bK cookie
 * (RFC 2543 clients), which sipd does not match. */
uint64_t txn_key(const sip_msg *m);

#endif
