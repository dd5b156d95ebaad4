/*
 * redisutil.h — real Redis servers for the tests: one redis-server, a
 * sentinel, or a whole Redis Cluster, on 127.0.0.1, each in a scratch
 * directory, started and stopped by the test.
 *
 * Servers run in the foreground (--daemonize no) as children of the test
 * with PR_SET_PDEATHSIG: a test that dies, even by SIGKILL, takes its
 * servers with it; an exit() of the test stops them too (atexit). Tests
 * run two at a time and other suites may use Redis, so ports are never
 * fixed: redis_free_ports() finds a run of ports that are free now (and
 * their cluster bus ports, port + 10000), starting from a place that
 * depends on the pid so that two tests rarely probe the same ones.
 * Logs: DIR/redis-PORT.log.
 */
#ifndef SHMREG_REDISUTIL_H
#define SHMREG_REDISUTIL_H

#include <stddef.h>
#include <sys/types.h>

typedef struct redis_srv {
    pid_t pid;     /* 0: not running */
    int port;
    char dir[512];
} redis_srv;

/* Start redis-server on 127.0.0.1:port in dir (created if needed) with
 * --port P --dir D --save '' --appendonly no --daemonize no --logfile
 * D/redis-P.log --bind 127.0.0.1 --repl-diskless-sync-delay 0 (replicas
 * sync at once) and then the NULL-terminated `extra` (may be NULL), and
 * wait (10 s at most) until it answers PING. 0 ok; -1 (diag says why,
 * nothing left running) if it exited or did not answer. */
int redis_start(redis_srv *s, int port, const char *dir, const char *const *extra);
/* The same with a configuration file first on the command line, e.g. a
 * sentinel: redis_start_conf(s, "D/sentinel.conf", p, d, (const char *[]){"--sentinel", NULL}). */
int redis_start_conf(redis_srv *s, const char *conf, int port, const char *dir, const char *const *extra);
/* SIGTERM, then SIGKILL after 5 s; reaped. Safe on a stopped server. */
void redis_stop(redis_srv *s);
/* SIGKILL now; reaped. */
void redis_kill(redis_srv *s);

/* A port p with p and p + 10000 (the cluster bus) free on 127.0.0.1 now.
 * from <= 0: anywhere in 20000..22767, searched from a pid-dependent
 * start (so bus ports stay below the ephemeral range, 32768..); else
 * p >= from, below 22768 when from is, wrapping round once. -1: none. */
int redis_free_port(int from);
/* The first of n consecutive such ports. */
int redis_free_ports(int from, int n);

typedef struct redis_cluster {
    int n;               /* nodes: masters * (1 + replicas) */
    redis_srv node[16];
} redis_cluster;

/* Start masters * (1 + replicas) nodes on base_port, base_port + 1, ...
 * with --cluster-enabled yes --cluster-config-file D/nodes-P.conf
 * --cluster-node-timeout 3000 (a failover within seconds, yet no master
 * failed over by itself while a busy 2-CPU machine runs tests beside it:
 * at 1000 and 2000 that happened), join them with redis-cli --cluster create
 * ... --cluster-replicas R --cluster-yes, and wait (30 s at most) until
 * every node says cluster_state:ok, knows every other and knows which are
 * replicas, and every replica's link to its master is up. 0 ok; -1 (all stopped). */
int redis_cluster_start(redis_cluster *c, int base_port, int masters, int replicas, const char *dir);
void redis_cluster_stop(redis_cluster *c);

/* Run redis-cli -h 127.0.0.1 -p port ARGS (ARGS: the formatted string,
 * split at spaces; no quoting) with 10 s at most; its stdout, without the
 * trailing newline, into out. Returns redis-cli's exit status, -1 if it
 * could not be run or timed out. */
int redis_cli(int port, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Run argv (argv[0] looked up in PATH) with `timeout_s` at most, stdout
 * into out (may be NULL), stderr to the test's. Exit status, or -1. */
int redis_run(char *const argv[], char *out, size_t outlen, int timeout_s);

#endif
