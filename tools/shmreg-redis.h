/*
 * shmreg-redis.h — a small synchronous Redis client for shmreg-sync, on
 * top of hiredis: plain Redis, Redis Sentinel and Redis Cluster behind
 * one call (tools/shmreg-redis.c says how and why).
 *
 * One rds is used by one thread at a time; two rds in one process are
 * independent (no global state). The caller ignores SIGPIPE (shmreg-sync
 * does): a write to a server that went away must be an error, not the
 * end of the process.
 */
#ifndef SHMREG_REDIS_H
#define SHMREG_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

typedef struct rds rds;

/* urls: "redis://HOST:PORT", "unix:/PATH", "sentinel://HOST:PORT/MASTERNAME"
 * (several seeds allowed, e.g. the cluster's nodes or several sentinels;
 * sentinel seeds are not mixed with the others and name one master).
 * Returns NULL only for a malformed URL or no memory (reason in err). A
 * server that is not reachable is NOT a failure: the client starts "down"
 * and connects on the next command. timeout_ms bounds every connect and
 * every command (0: 1000). */
rds *rds_open(const char *const *urls, unsigned n, unsigned timeout_ms, char *err, size_t errlen);
void rds_close(rds *c);

/* One command, routed by `key` (NULL: any node; for cluster, by the key's
 * hash slot, honouring {hash tags}). Follows MOVED (updates the slot map,
 * refreshing it with CLUSTER SLOTS) and ASK (ASKING then the command on the
 * named node), retries TRYAGAIN/CLUSTERDOWN/LOADING/READONLY and
 * connection failures a bounded number of times, reconnecting and
 * re-learning the topology from the seeds (for sentinel: SENTINEL
 * get-master-addr-by-name). Returns the reply (caller frees with
 * freeReplyObject), including ordinary error replies (WRONGTYPE, a Lua
 * error); NULL when the command could not be carried out (rds_error says
 * why). */
redisReply *rds_command(rds *c, const char *key, size_t keylen, int argc, const char **argv,
                        const size_t *argvlen);

/* ncmd commands whose keys all hash to the slot of `key` (same hash tag),
 * pipelined on that slot's node in one round trip; when atomic != 0
 * wrapped in MULTI ... EXEC. out[i] receives command i's reply (for
 * atomic: the i-th element of EXEC's array, detached, so the caller frees
 * each with freeReplyObject). Redirects are followed (re-sent on the new
 * node: a transaction whole, since none of it ran; without atomic only the
 * commands that were redirected, the others already ran). Returns 0, or -1
 * (out[] all NULL) with rds_error: also when EXEC aborted (a command was
 * refused while queued). */
int rds_pipeline(rds *c, const char *key, size_t keylen, int ncmd, const int *argc,
                 const char *const *const *argv, const size_t *const *argvlen, int atomic,
                 redisReply **out);

const char *rds_error(const rds *c);   /* last failure, "" none */
int rds_is_cluster(const rds *c);      /* 1 once a cluster was detected */
/* CRC16-CCITT (XMODEM) mod 16384 with the hash tag rule, as the Redis
 * Cluster spec. */
unsigned rds_slot(const char *key, size_t len);
uint64_t rds_redirects(const rds *c);  /* MOVED + ASK followed so far */
uint64_t rds_reconnects(const rds *c); /* connections to data nodes (re)made so far */

#endif
