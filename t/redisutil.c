/*
 * redisutil.c — see redisutil.h. Real redis-server processes, forked and
 * exec'd by the test; PING through hiredis, everything else through
 * redis-cli, so a test reads like the commands an operator would type.
 */
#include "redisutil.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

/* Every server running, for the atexit sweep. */
static pid_t running[64];
static int nrunning;
static pid_t sweep_owner;

static void sweep(void)
{
    if (getpid() != sweep_owner)
        return;
    for (int i = 0; i < nrunning; i++) {
        kill(running[i], SIGKILL);
        waitpid(running[i], NULL, 0);
    }
    nrunning = 0;
}

static void track(pid_t pid)
{
    if (!sweep_owner) {
        sweep_owner = getpid();
        atexit(sweep);
    }
    if (nrunning < 64)
        running[nrunning++] = pid;
}

static void untrack(pid_t pid)
{
    for (int i = 0; i < nrunning; i++)
        if (running[i] == pid)
            running[i] = running[--nrunning];
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int ping(int port)
{
    struct timeval tv = {0, 300000};
    redisContext *x = redisConnectWithTimeout("127.0.0.1", port, tv);
    int ok = 0;
    if (x && !x->err && redisSetTimeout(x, tv) == REDIS_OK) {
        redisReply *r = redisCommand(x, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r)
            freeReplyObject(r);
    }
    if (x)
        redisFree(x);
    return ok;
}

/* mkdir -p: the test's scratch directory may not exist yet. */
static int mkdir_p(const char *dir)
{
    char p[512];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST)
                return -1;
            *s = '/';
        }
    return mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

/* Fork and exec argv with stdin /dev/null, stdout into the pipe `outfd`
 * (or /dev/null if < 0), dying with the test. */
static pid_t spawn(char *const argv[], int outfd)
{
    pid_t parent = getpid();
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(126);
        int nul = open("/dev/null", O_RDWR);
        if (nul < 0)
            _exit(126);
        dup2(nul, 0);
        dup2(outfd >= 0 ? outfd : nul, 1);
        if (outfd >= 0)
            close(outfd);
        execvp(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int redis_start_conf(redis_srv *s, const char *conf, int port, const char *dir,
                     const char *const *extra)
{
    char portbuf[16], logbuf[600];
    memset(s, 0, sizeof *s);
    s->port = port;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    if (mkdir_p(dir) != 0) {
        diag("redis_start: mkdir -p %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(portbuf, sizeof portbuf, "%d", port);
    snprintf(logbuf, sizeof logbuf, "%s/redis-%d.log", dir, port);
    const char *argv[64];
    int n = 0;
    argv[n++] = "redis-server";
    if (conf)
        argv[n++] = conf;
    const char *std[] = {"--port", portbuf, "--dir", dir, "--save", "", "--appendonly", "no",
                         "--daemonize", "no", "--logfile", logbuf, "--bind", "127.0.0.1",
                         /* a replica's first sync now, not after the 5 s a
                          * master waits by default for more replicas */
                         "--repl-diskless-sync-delay", "0"};
    for (size_t i = 0; i < sizeof std / sizeof std[0]; i++)
        argv[n++] = std[i];
    for (int i = 0; extra && extra[i] && n < 63; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t pid = spawn((char *const *)argv, -1);
    if (pid < 0) {
        diag("redis_start: fork: %s", strerror(errno));
        return -1;
    }
    track(pid);
    s->pid = pid;
    double until = mono() + 10;
    while (mono() < until) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            untrack(pid);
            s->pid = 0;
            diag("redis_start: redis-server on port %d exited (status 0x%x); see %s", port, st, logbuf);
            return -1;
        }
        if (ping(port))
            return 0;
        nap_ms(20);
    }
    diag("redis_start: redis-server on port %d did not answer PING in 10 s; see %s", port, logbuf);
    redis_kill(s);
    return -1;
}

int redis_start(redis_srv *s, int port, const char *dir, const char *const *extra)
{
    return redis_start_conf(s, NULL, port, dir, extra);
}

static void reap(redis_srv *s, int sig, double grace)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, sig);
    double until = mono() + grace;
    for (;;) {
        pid_t r = waitpid(s->pid, NULL, WNOHANG);
        if (r == s->pid || (r < 0 && errno == ECHILD))
            break;
        if (mono() > until) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            break;
        }
        nap_ms(10);
    }
    untrack(s->pid);
    s->pid = 0;
}

void redis_stop(redis_srv *s) { reap(s, SIGTERM, 5); }
void redis_kill(redis_srv *s) { reap(s, SIGKILL, 5); }

static int tcp_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Below the kernel's ephemeral ports (32768.. by default), bus ports too:
 * an outgoing connection of this or another test (redis-cli, a cluster
 * bus link) can take an ephemeral port between our probe and the
 * server's bind, and did. */
#define PORT_LO 20000
#define PORT_HI (32768 - 10000)

/* A port free now may be taken by another test before our server binds
 * it, or while a test has stopped its server to start it again on the
 * same port (an outage test): the daemons of one test then talk to
 * another test's Redis. So a port handed out is reserved for the life of
 * the process: a file named after it in RESERVE_DIR holding our pid,
 * created exclusively; a file whose pid is dead is stale and taken over. */
#define RESERVE_DIR "/tmp/shmreg-test-ports"

static int reserved[256], nreserved;
static pid_t reserved_owner;

/* Give `port` back: its file goes, and so does our note of it, so that
 * the exit handler cannot later unlink the file of a test that has
 * reserved the port since. */
static void unreserve(int port)
{
    char path[128];
    snprintf(path, sizeof path, RESERVE_DIR "/%d", port);
    unlink(path);
    for (int i = 0; i < nreserved; i++)
        if (reserved[i] == port) {
            reserved[i] = reserved[--nreserved];
            break;
        }
}

static void unreserve_all(void)
{
    if (getpid() != reserved_owner)
        return;
    while (nreserved > 0)
        unreserve(reserved[nreserved - 1]);
}

static void remember(int port)
{
    if (!reserved_owner) {
        reserved_owner = getpid();
        atexit(unreserve_all);
    }
    for (int i = 0; i < nreserved; i++)
        if (reserved[i] == port)
            return;
    if (nreserved < 256)
        reserved[nreserved++] = port;
}

static int reserve(int port)
{
    char path[128], buf[32];
    snprintf(path, sizeof path, RESERVE_DIR "/%d", port);
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            int len = snprintf(buf, sizeof buf, "%d\n", (int)getpid());
            int ok = write(fd, buf, (size_t)len) == len;
            close(fd);
            if (ok)
                remember(port);
            return ok;
        }
        if (errno != EEXIST)
            return 0;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t k = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (k <= 0) /* being written: someone is taking it now */
            return 0;
        buf[k] = 0;
        pid_t owner = (pid_t)atoi(buf);
        if (owner == getpid())
            return 1;
        if (owner > 0 && (kill(owner, 0) == 0 || errno == EPERM))
            return 0;
        unlink(path); /* stale: its test is gone */
    }
    return 0;
}

int redis_free_ports(int from, int n)
{
    mkdir(RESERVE_DIR, 01777);
    chmod(RESERVE_DIR, 01777); /* shared by every user's tests, as /tmp */
    if (from <= 0)
        from = PORT_LO + (int)(getpid() % ((PORT_HI - PORT_LO) / 30)) * 30;
    for (int pass = 0; pass < 2; pass++) {
        int lo = pass ? PORT_LO : from, hi = pass ? from : PORT_HI;
        if (from > PORT_HI - n) /* a caller's own range: search it as asked */
            lo = from, hi = 55000, pass = 1;
        for (int p = lo; p + n <= hi; p++) {
            int k = 0;
            while (k < n && tcp_free(p + k) && tcp_free(p + k + 10000) && reserve(p + k))
                k++;
            if (k == n)
                return p;
            for (int j = 0; j < k; j++)
                unreserve(p + j);
            p += k;
        }
    }
    return -1;
}

int redis_free_port(int from) { return redis_free_ports(from, 1); }

int redis_run(char *const argv[], char *out, size_t outlen, int timeout_s)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = spawn(argv, fds[1]);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return -1;
    }
    size_t got = 0;
    double until = mono() + timeout_s;
    int timed_out = 0;
    for (;;) {
        int left = (int)((until - mono()) * 1000);
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {fds[0], POLLIN, 0};
        if (poll(&p, 1, left) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        char buf[4096];
        ssize_t k = read(fds[0], buf, sizeof buf);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        if (out && outlen) {
            size_t take = (size_t)k < outlen - 1 - got ? (size_t)k : outlen - 1 - got;
            memcpy(out + got, buf, take);
            got += take;
        }
    }
    close(fds[0]);
    if (out && outlen) {
        while (got && (out[got - 1] == '\n' || out[got - 1] == '\r'))
            got--;
        out[got] = 0;
    }
    if (timed_out)
        kill(pid, SIGKILL);
    int st;
    if (waitpid(pid, &st, 0) != pid)
        return -1;
    if (timed_out) {
        diag("redis_run: %s timed out after %d s", argv[0], timeout_s);
        return -1;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int redis_cli(int port, char *out, size_t outlen, const char *fmt, ...)
{
    char args[2048], portbuf[16];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(portbuf, sizeof portbuf, "%d", port);
    char *argv[80];
    int n = 0;
    argv[n++] = "redis-cli";
    argv[n++] = "-h";
    argv[n++] = "127.0.0.1";
    argv[n++] = "-p";
    argv[n++] = portbuf;
    for (char *save = NULL, *w = strtok_r(args, " ", &save); w && n < 79; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n] = NULL;
    return redis_run(argv, out, outlen, 10);
}

/* Every node: cluster_state:ok, all n known, replicas linked. */
/* Replicas in node `port`'s view (CLUSTER NODES lines flagged slave): a
 * node learns the others' roles by gossip, after cluster_state:ok. */
static int replicas_seen(int port)
{
    static char out[16384];
    if (redis_cli(port, out, sizeof out, "CLUSTER NODES") != 0)
        return -1;
    int n = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char id[64], addr[128], flags[128];
        if (sscanf(line, "%63s %127s %127s", id, addr, flags) == 3 && strstr(flags, "slave"))
            n++;
    }
    return n;
}

static int cluster_ready(const redis_cluster *c, int replicas_total)
{
    char out[8192], want[64];
    snprintf(want, sizeof want, "cluster_known_nodes:%d", c->n);
    for (int i = 0; i < c->n; i++) {
        if (redis_cli(c->node[i].port, out, sizeof out, "CLUSTER INFO") != 0 ||
            !strstr(out, "cluster_state:ok") || !strstr(out, want))
            return 0;
        if (redis_cli(c->node[i].port, out, sizeof out, "INFO replication") != 0)
            return 0;
        if (strstr(out, "role:slave") && !strstr(out, "master_link_status:up"))
            return 0;
        if (replicas_seen(c->node[i].port) != replicas_total)
            return 0; /* a view that still takes a replica for a master */
    }
    return 1;
}

int redis_cluster_start(redis_cluster *c, int base_port, int masters, int replicas, const char *dir)
{
    memset(c, 0, sizeof *c);
    int n = masters * (1 + replicas);
    if (masters < 1 || replicas < 0 || n > 16) {
        diag("redis_cluster_start: %d masters with %d replicas each: 1..16 nodes", masters, replicas);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char conf[600];
        snprintf(conf, sizeof conf, "%s/nodes-%d.conf", dir, base_port + i);
        const char *extra[] = {"--cluster-enabled", "yes", "--cluster-config-file", conf,
                               "--cluster-node-timeout", "3000", NULL};
        if (redis_start(&c->node[i], base_port + i, dir, extra) != 0) {
            redis_cluster_stop(c);
            return -1;
        }
        c->n = i + 1;
    }
    char *argv[40], addr[16][32], reps[16];
    int k = 0;
    argv[k++] = "redis-cli";
    argv[k++] = "--cluster";
    argv[k++] = "create";
    for (int i = 0; i < n; i++) {
        snprintf(addr[i], sizeof addr[i], "127.0.0.1:%d", base_port + i);
        argv[k++] = addr[i];
    }
    snprintf(reps, sizeof reps, "%d", replicas);
    argv[k++] = "--cluster-replicas";
    argv[k++] = reps;
    argv[k++] = "--cluster-yes";
    argv[k] = NULL;
    static char out[16384];
    int rc = redis_run(argv, out, sizeof out, 30);
    if (rc != 0) {
        diag("redis_cluster_start: redis-cli --cluster create: status %d:\n%s", rc, out);
        redis_cluster_stop(c);
        return -1;
    }
    double until = mono() + 30;
    while (!cluster_ready(c, masters * replicas)) {
        if (mono() > until) {
            diag("redis_cluster_start: the cluster on %d.. was not ready in 30 s", base_port);
            redis_cluster_stop(c);
            return -1;
        }
        nap_ms(50);
    }
    return 0;
}

void redis_cluster_stop(redis_cluster *c)
{
    for (int i = 0; i < c->n; i++) /* all at once, then each reaped */
        if (c->node[i].pid > 0)
            kill(c->node[i].pid, SIGTERM);
    for (int i = 0; i < c->n; i++)
        redis_stop(&c->node[i]);
}
