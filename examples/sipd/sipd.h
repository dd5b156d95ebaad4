/*
 * sipd.h — what the master (sipd.c) and the workers (worker.c) of sipd
 * share: the settings, fixed before the first fork, and the per-worker
 * counters, kept in a small shared anonymous mapping so that the master
 * can print them after a worker died or stopped. Call state itself never
 * lives here: it lives in the registry.
 */
#ifndef SIPD_H
#define SIPD_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define SIPD_MAX_WORKERS 64
#define SIPD_TAG_KEY_BYTES 16   /* crypto_shorthash_KEYBYTES */

typedef struct sipd_conf {
    const char *registry;
    struct sockaddr_storage addr;    /* where the workers listen */
    socklen_t addrlen;
    char host[64];                   /* its text, for Contact and SDP */
    unsigned port;
    unsigned workers;
    unsigned ring_ms;                /* time between 180 and 200 */
    unsigned linger_ms;              /* finished calls kept for retransmissions */
    unsigned max_call_s;             /* answered calls are ended with a BYE after
                                      * this long (a registry timeout); 0: never */
    unsigned max_per_caller;         /* live calls one From user may have; 0: any */
    unsigned log_rate;               /* call-state lines per second, then summaries */
    unsigned t1_ms, t2_ms;           /* RFC 3261 timers T1 and T2 (500, 4000) */
    int spread;                      /* 1: each datagram to a random worker */
    unsigned char tag_key[SIPD_TAG_KEY_BYTES]; /* keys the To-tags we derive */
} sipd_conf;

enum sipd_counter {
    C_DATAGRAMS,        /* received */
    C_REQUESTS,         /* well-formed requests */
    C_RESPONSES,        /* responses received (ignored: sipd is a UAS only) */
    C_NEW_CALLS,        /* sessions created */
    C_INVITE_RETRANS,   /* INVITEs that found their session already there */
    C_IN_DIALOG,        /* ACK, BYE, CANCEL, re-INVITE, OPTIONS in a dialog */
    C_FOREIGN,          /* ... of which on a session another worker created */
    C_BAD_400,          /* malformed, answered 400 */
    C_DROPPED,          /* malformed or oversized, dropped */
    C_NO_DIALOG,        /* in-dialog requests for no known dialog (481) */
    C_ADOPTED,          /* calls answered for a worker that had died */
    C_REG_ERRORS,       /* registry calls that failed unexpectedly */
    C_RETRANSMITS,      /* final responses and BYEs sent again by a timer */
    C_NO_TIMER,         /* sent once only: the timer table was full */
    C_ACK_TIMEOUTS,     /* calls failed for want of an ACK (13.3.1.4) */
    C_BYES_SENT,        /* BYEs we sent to end such a call */
    C_CANCELS_481,      /* CANCELs matching no INVITE transaction */
    C_CALLER_LIMIT,     /* INVITEs refused 486: the caller had max_per_caller calls */
    C_COUNT
};

extern const char *const sipd_counter_names[C_COUNT];

typedef struct sipd_slot {
    _Atomic int32_t pid;               /* the worker in this slot, 0: none */
    _Atomic uint64_t c[C_COUNT];       /* summed over the slot's workers */
    char pad[64];
} sipd_slot;

/* The worker's life: open its own handle and socket, serve until SIGTERM,
 * close everything, exit. Never returns. */
void sipd_worker(const sipd_conf *conf, sipd_slot *slot, unsigned index)
    __attribute__((noreturn));

/* One line on stderr: "sipd[pid]: ...". Safe to call from any process. */
void sipd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
