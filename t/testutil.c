/*
 * testutil.c — see testutil.h. Plain POSIX; everything that can fail
 * bails out of the test (a test without its scratch dir cannot say
 * anything useful).
 */
#include "testutil.h"
#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stddef.h>
#include <ftw.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include "shmreg.h"

static char scratch[256];
static pid_t scratch_owner;   /* set when we made the dir and must remove it */

static void remove_own_scratch(void)
{
    if (scratch_owner == getpid())   /* not in forked children that exit() */
        test_rm_rf(scratch);
}

static const char *scratch_dir(void)
{
    if (scratch[0])
        return scratch;
    const char *env = getenv("SHMREG_TEST_DIR");
    if (env && *env) {
        if (snprintf(scratch, sizeof scratch, "%s", env) >= (int)sizeof scratch)
            bail_out("SHMREG_TEST_DIR too long: %s", env);
        if (mkdir(scratch, 0700) != 0 && errno != EEXIST)
            bail_out("mkdir %s: %s", scratch, strerror(errno));
        return scratch;
    }
    struct stat st;
    const char *base = (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
                           ? "/dev/shm" : "/tmp";
    snprintf(scratch, sizeof scratch, "%s/shmreg-test-%d", base, (int)getpid());
    if (mkdir(scratch, 0700) != 0 && errno != EEXIST)
        bail_out("mkdir %s: %s", scratch, strerror(errno));
    scratch_owner = getpid();
    atexit(remove_own_scratch);
    return scratch;
}

const char *test_dir(const char *name)
{
    static char ring[64][320];
    static unsigned next, seq;
    const char *dir = scratch_dir();
    char *out = ring[next++ % 64];
    for (;;) {
        snprintf(out, sizeof ring[0], "%s/%s-%d-%u", dir, name ? name : "t",
                 (int)getpid(), seq++);
        if (access(out, F_OK) != 0 && errno == ENOENT)
            return out;
    }
}

static int rm_one(const char *path, const struct stat *st, int type,
                  struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    int rc = (type == FTW_DP) ? rmdir(path) : unlink(path);
    if (rc != 0 && errno != ENOENT)
        diag("test_rm_rf: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void test_rm_rf(const char *path)
{
    if (path && *path)
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

#ifdef SHMREG_COVERAGE
/* _exit() skips writing the coverage counters out; a child writes them
 * first, so that `make coverage` counts what forked workers ran. */
extern void __gcov_dump(void);
#endif

pid_t test_fork(void (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        fn(arg);
#ifdef SHMREG_COVERAGE
        __gcov_dump();
#endif
        _exit(exit_status());
    }
    return pid;
}

int test_wait(pid_t pid)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

shmreg_stats test_stats(shmreg *h)
{
    shmreg_stats st;
    memset(&st, 0, sizeof st);
    int rc = shmreg_stat(h, &st);
    if (rc != 0)
        bail_out("shmreg_stat: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return st;
}

const char *test_build_dir(void)
{
    static char dir[4096];
    if (dir[0])
        return dir;
    ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
    if (n <= 0)
        bail_out("readlink /proc/self/exe: %s", strerror(errno));
    dir[n] = 0;
    for (int i = 0; i < 2; i++) {
        char *slash = strrchr(dir, '/');
        if (slash == NULL)
            bail_out("%s is not in a build tree", dir);
        *slash = 0;
    }
    return dir;
}

struct pin_arg {
    const char *path;
    int to_child[2], to_parent[2];
};

static void pin_child(void *arg)
{
    struct pin_arg *a = arg;
    shmreg *r = NULL;
    char ch = 'n';
    close(a->to_child[1]);
    close(a->to_parent[0]);
    if (shmreg_open(a->path, NULL, &r) == 0 && shmreg_read_begin(r) == 0)
        ch = 'y';
    if (write(a->to_parent[1], &ch, 1) != 1 || ch != 'y' || read(a->to_child[0], &ch, 1) != 1)
        _exit(3);
    shmreg_read_end(r);
    shmreg_close(r);
}

void test_pin_start(test_pin *p, const char *path)
{
    struct pin_arg a = {.path = path};
    char ch = 0;
    if (pipe(a.to_child) || pipe(a.to_parent))
        bail_out("pipe: %s", strerror(errno));
    p->pid = test_fork(pin_child, &a);
    close(a.to_child[0]);
    close(a.to_parent[1]);
    p->to_child = a.to_child[1];
    p->from_child = a.to_parent[0];
    if (read(p->from_child, &ch, 1) != 1 || ch != 'y')
        bail_out("the pinning reader could not enter a read section in %s", path);
}

static int pin_end(test_pin *p, int st)
{
    close(p->to_child);
    close(p->from_child);
    p->pid = 0;
    return st;
}

int test_pin_release(test_pin *p)
{
    char ch = 'L';
    if (write(p->to_child, &ch, 1) != 1)
        bail_out("cannot tell the pinning reader to leave: %s", strerror(errno));
    return pin_end(p, test_wait(p->pid));
}

int test_pin_kill(test_pin *p)
{
    kill(p->pid, SIGKILL);
    return pin_end(p, test_wait(p->pid));
}

void *test_shared(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        bail_out("mmap %zu bytes: %s", bytes, strerror(errno));
    memset(p, 0, bytes);
    return p;
}

void test_sleep_us(unsigned us)
{
    struct timespec ts = { us / 1000000u, (long)(us % 1000000u) * 1000 };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

double test_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ registries */

uint64_t test_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static char reg_path[400];    /* the registry of the current section */

shmreg *test_reg_new(const char *name, uint32_t max_sessions, uint64_t heap, uint32_t max_rooms)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = max_sessions;
    o.heap_bytes = heap;
    o.max_rooms = max_rooms;
    o.max_handles = 256;
    return test_reg_new_opts(name, o);
}

shmreg *test_reg_new_opts(const char *name, shmreg_options o)
{
    o.flags = SHMREG_CREATE | SHMREG_EXCL;
    snprintf(reg_path, sizeof reg_path, "%s", test_dir(name));
    shmreg *h = NULL;
    int rc = shmreg_open(reg_path, &o, &h);
    if (rc != 0)
        bail_out("cannot create %s: %s (%s)", reg_path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

shmreg *test_reg_small(const char *name, uint64_t heap)
{
    shmreg_options o;
    memset(&o, 0, sizeof o);
    o.max_sessions = 64;
    o.max_handles = 64;
    o.event_records = 1024;
    o.heap_bytes = heap;
    return test_reg_new_opts(name, o);
}

shmreg_sub *test_subscribe(shmreg *h, uint32_t mask, const shmreg_id *session)
{
    shmreg_sub *sub = NULL;
    int rc = shmreg_subscribe(h, mask, session, &sub);
    if (rc != 0)
        bail_out("subscribe: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return sub;
}

void test_fields_fill(test_fieldbuf *b, const char *tag, uint16_t port)
{
    static const char *const name[SHMREG_FIELD_STR_COUNT] = {
        "sip:alice@a.example", "sip:bob@b.example", "Alice", "call-id", "ltag",
        "rtag", "PCMU", "no reason", "app"};
    memset(b, 0, sizeof *b);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        int n = snprintf(b->s[i], sizeof b->s[i], "%s-%s", name[i], tag);
        if (i == SHMREG_FIELD_APP_DATA)
            b->s[i][3] = '\0'; /* opaque bytes: a NUL inside */
        b->f.str[i] = (shmreg_str){ b->s[i], (size_t)n };
    }
    b->f.local_rtp_port = port;
    b->f.remote_rtp_port = (uint16_t)(port + 1);
}

uint64_t test_session_version(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    uint64_t ver = 0;
    shmreg_read_begin(h);
    if (shmreg_session_get(h, id, &v) == 0)
        ver = v.version;
    shmreg_read_end(h);
    return ver;
}

shmreg *test_reg_attach(void)
{
    shmreg *h = NULL;
    int rc = shmreg_open(reg_path, NULL, &h);
    if (rc != 0)
        bail_out("attach %s: %s (%s)", reg_path, shmreg_strerror(rc), shmreg_errmsg());
    return h;
}

void test_reg_destroy(shmreg *h)
{
    shmreg_close(h);
    shmreg_destroy(reg_path, 1);
}

shmreg_id test_session_new(shmreg *h)
{
    shmreg_id id;
    int rc = shmreg_session_create(h, NULL, &id);
    if (rc != 0)
        bail_out("session_create: %s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

shmreg_id test_room_new(shmreg *h, const char *name, uint32_t max)
{
    shmreg_id id;
    int rc = shmreg_room_create(h, test_ss(name), max, &id);
    if (rc != 0)
        bail_out("room_create %s: %s (%s)", name, shmreg_strerror(rc), shmreg_errmsg());
    return id;
}

int test_id_eq(const shmreg_id *a, const shmreg_id *b)
{
    return memcmp(a->bytes, b->bytes, SHMREG_ID_BYTES) == 0;
}

int test_id_in(const shmreg_id *ids, int n, const shmreg_id *id)
{
    for (int i = 0; i < n; i++)
        if (test_id_eq(&ids[i], id))
            return 1;
    return 0;
}

int test_ids_same_set(const shmreg_id *ids, int n, const shmreg_id *want, int m)
{
    if (n != m)
        return 0;
    for (int i = 0; i < n; i++) {
        if (!test_id_in(want, m, &ids[i]))
            return 0;
        for (int j = 0; j < i; j++)
            if (test_id_eq(&ids[i], &ids[j]))
                return 0;
    }
    return 1;
}

int test_drain_events(shmreg_sub *sub, shmreg_event *ev, int cap)
{
    int n = 0;
    for (;;) {
        shmreg_event e[16];
        int got = shmreg_poll(sub, e, 16, 0, NULL);
        if (got <= 0)
            return got < 0 ? got : n;
        for (int i = 0; i < got; i++)
            if (n < cap)
                ev[n++] = e[i];
    }
}

int test_str_is(shmreg_str s, const void *p, size_t len)
{
    return s.len == len && (len == 0 || (s.ptr && memcmp(s.ptr, p, len) == 0));
}

int test_session_room_is(shmreg *h, const shmreg_id *sid, const shmreg_id *want)
{
    shmreg_id got;
    memset(&got, 0, sizeof got);
    int rc = shmreg_session_room(h, sid, &got);
    if (rc != 0)
        return rc;
    return want && test_id_eq(&got, want) ? 0 : 1;
}

void test_roster_take(shmreg *h, const shmreg_id *room, test_roster *r)
{
    memset(r, 0, offsetof(test_roster, m));
    shmreg_room v;
    shmreg_read_begin(h);
    r->rc = shmreg_room_get(h, room, &v);
    if (r->rc == 0) {
        r->state = v.state;
        r->max = v.max_participants;
        r->participants = v.participants;
        uint64_t cur = 0;
        shmreg_participant p;
        int rc;
        while ((rc = shmreg_participant_next(h, room, &cur, &p)) == 0) {
            if (r->n == TEST_SNAP_MAX)
                bail_out("roster longer than %d", TEST_SNAP_MAX);
            test_member *m = &r->m[r->n++];
            m->session = p.session;
            m->uri_len = p.uri.len < sizeof m->uri ? p.uri.len : sizeof m->uri;
            m->disp_len = p.display_name.len < sizeof m->disp ? p.display_name.len : sizeof m->disp;
            if (m->uri_len)
                memcpy(m->uri, p.uri.ptr, m->uri_len);
            if (m->disp_len)
                memcpy(m->disp, p.display_name.ptr, m->disp_len);
            m->status = p.status;
            m->audio = p.audio_active;
            m->port = p.rtp_port;
            m->joined_ns = p.joined_ns;
        }
        if (rc != SHMREG_ENOENT)
            r->rc = rc;
    }
    shmreg_read_end(h);
}

const test_member *test_roster_find(const test_roster *r, const shmreg_id *sid)
{
    for (uint32_t i = 0; i < r->n; i++)
        if (test_id_eq(&r->m[i].session, sid))
            return &r->m[i];
    return NULL;
}

/* ------------------------------------------------------------ watchdog */

const char *volatile test_section = "start";

static void watchdog(int sig)
{
    (void)sig;
    char buf[300];
    int n = snprintf(buf, sizeof buf, "not ok %d - watchdog: no progress for 30 s in %s (a deadlock?)\n",
                     tap__s.run + 1, test_section);
    if (write(STDOUT_FILENO, buf, (size_t)n) < 0 || write(STDERR_FILENO, buf, (size_t)n) < 0)
        _exit(1);
    _exit(1);
}

void test_watchdog_install(void)
{
    signal(SIGALRM, watchdog);
}

/* ------------------------------------------------------------ process groups */

static pid_t groups[16];   /* process groups to kill on the way out */
static int ngroups;

pid_t test_spawn(char *const argv[], const char *out)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        bail_out("fork: %s", strerror(errno));
    if (pid == 0) {
        setpgid(0, 0);
        int fd = open(out, O_WRONLY | O_CREAT | O_APPEND, 0600);
        int nul = open("/dev/null", O_RDONLY);
        if (fd < 0 || nul < 0)
            _exit(126);
        dup2(nul, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(argv[0], argv);
        _exit(127);
    }
    setpgid(pid, pid);     /* both sides: no race with kill(-pid) */
    if (ngroups < 16)
        groups[ngroups++] = pid;
    return pid;
}

void test_untrack(pid_t pgid)
{
    for (int i = 0; i < ngroups; i++)
        if (groups[i] == pgid)
            groups[i] = groups[--ngroups];
}

void test_kill_groups(void)
{
    for (int i = 0; i < ngroups; i++)
        kill(-groups[i], SIGKILL);
}

static void on_alarm(int sig)
{
    (void)sig;
    test_kill_groups();
    static const char msg[] = "Bail out!  watchdog: the test took too long\n";
    ssize_t w = write(1, msg, sizeof msg - 1);
    (void)w;
    _exit(255);
}

void test_bail_on_alarm(unsigned seconds)
{
    signal(SIGALRM, on_alarm);
    alarm(seconds);
    atexit(test_kill_groups);
}

unsigned test_free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &l) != 0)
        bail_out("free port: %s", strerror(errno));
    close(fd);
    return ntohs(a.sin_port);
}

int test_sip_options_ok(const char *ip, unsigned port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    unsigned lport = ntohs(a.sin_port);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &to.sin_addr);
    char msg[1024], resp[2048];
    int n = snprintf(msg, sizeof msg,
                     "OPTIONS sip:svc@%s:%u SIP/2.0\r\n"
                     "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=z9hG4bK-ping\r\n"
                     "From: t <sip:t@127.0.0.1:%u>;tag=p\r\nTo: <sip:svc@%s:%u>\r\n"
                     "Call-ID: ping\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                     ip, port, lport, lport, ip, port);
    sendto(fd, msg, (size_t)n, 0, (struct sockaddr *)&to, sizeof to);
    struct pollfd p = {fd, POLLIN, 0};
    int got = poll(&p, 1, 500) > 0 ? (int)recv(fd, resp, sizeof resp - 1, 0) : -1;
    close(fd);
    return got > 12 && strncmp(resp, "SIP/2.0 200 ", 12) == 0;
}

long long test_sipp_screen_value(const char *path, const char *label)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    const char *line = NULL, *p = buf;
    while ((p = strstr(p, label)) != NULL)
        line = p++;
    if (!line)
        return -1;
    const char *bar = strchr(line, '|');
    bar = bar ? strchr(bar + 1, '|') : NULL;
    return bar ? strtoll(bar + 1, NULL, 10) : -1;
}

int test_reap_group(pid_t pid)
{
    int st = test_wait(pid);
    kill(-pid, SIGKILL);
    test_untrack(pid);
    return st;
}
