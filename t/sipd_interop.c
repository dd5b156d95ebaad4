/*
 * sipd_interop.c — sipd with SIP software nobody here wrote (issue 18),
 * all from Debian, each started and stopped by this test:
 *
 *   Kamailio 5.6  a stateful proxy (tm, rr, sl; examples/sipd/kamailio.cfg)
 *                 in front of two sipds; sipp through it: 20 calls with hold
 *                 and resume (uac_hold.xml), a CANCEL while ringing whose
 *                 relayed 487 must carry sipp's own Via (uac_cancel.xml), a
 *                 lost ACK whose BYE sipd sends through the route set
 *                 (uac_noack.xml). (sipp's built-in client cannot be used
 *                 here: it sends its BYE without the route set.) Kamailio's
 *                 two children can relay a 180 after its 200; sipp goes
 *                 on past it, and every message it got out of order must
 *                 be such a late 1xx.
 *   baresip 1.0   a real UA, headless, driven through its ctrl_tcp module
 *                 (netstring JSON) with a config dir made here: call, hold,
 *                 resume, hang up — directly and through Kamailio;
 *   tshark        captures every datagram to and from the sipds on lo and
 *                 decodes each one sipd sent: all SIP with Call-ID, CSeq and
 *                 a status or method, every SDP body dissected as SDP, no
 *                 malformed packet and no expert info of warning or worse.
 * Afterwards: exact session counts per state, none non-final, `shmregctl
 * list` and `shmregctl check` agree.
 *
 * It runs in the asan build only (`make test` step gcc-asan, where sipd
 * runs under ASan), or wherever SIPD_INTEROP=1: the other builds would run
 * the same foreign programs again for no new information. A program that
 * is not installed skips its part; tshark's part needs the right to
 * capture (root, as CI runs).
 */
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sys/stat.h>

#include "redisutil.h"
#include "sipd_util.h"

static const char *kamailio = "/usr/sbin/kamailio";
static const char *baresip = "/usr/bin/baresip";
static const char *tshark = "/usr/bin/tshark";
static char *const TIMERS[] = { "-1", "50", "-2", "400", NULL };

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* Until `needle` shows in the file at path, at most ms. */
static int wait_text(const char *path, const char *needle, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        char *t = slurp(path);
        int found = strstr(t, needle) != NULL;
        free(t);
        if (found)
            return 1;
        if (now_ms() >= end)
            return 0;
        test_sleep_us(50 * 1000u);
    }
}

/* ------------------------------------------------------------ Kamailio */

typedef struct proxy {
    pid_t pid;
    unsigned port;
    char dir[450], cfg[500], log[500];
} proxy;

static int kamailio_start(proxy *k, const server *s, const server *ring)
{
    snprintf(k->dir, sizeof k->dir, "%s", test_dir("kamailio"));
    mkdir(k->dir, 0700);
    snprintf(k->cfg, sizeof k->cfg, "%s/kamailio.cfg", k->dir);
    snprintf(k->log, sizeof k->log, "%s/kamailio.log", k->dir);
    k->port = test_free_udp_port();
    char src[700];
    snprintf(src, sizeof src, "%s/examples/sipd/kamailio.cfg", root);
    char *t = slurp(src), out[8192];
    size_t n = 0;
    /* the template with its three ports filled in */
    for (const char *p = t; *p && n < sizeof out - 16;) {
        const char *at = strchr(p, '@');
        if (!at) {
            n += (size_t)snprintf(out + n, sizeof out - n, "%s", p);
            break;
        }
        n += (size_t)snprintf(out + n, sizeof out - n, "%.*s", (int)(at - p), p);
        unsigned v = 0;
        size_t skip = 1;
        if (strncmp(at, "@LISTEN_PORT@", 13) == 0)
            v = k->port, skip = 13;
        else if (strncmp(at, "@SIPD_PORT@", 11) == 0)
            v = s->port, skip = 11;
        else if (strncmp(at, "@SIPD_RING_PORT@", 16) == 0)
            v = ring->port, skip = 16;
        if (v)
            n += (size_t)snprintf(out + n, sizeof out - n, "%u", v);
        else
            out[n++] = '@';
        p = at + skip;
    }
    out[n < sizeof out ? n : sizeof out - 1] = 0;
    free(t);
    if (write_file(k->cfg, out) != 0)
        return -1;
    char *argv[] = { (char *)kamailio, "-f", k->cfg, "-DD", "-E", "-m", "64", "-M", "8",
                     "-Y", k->dir, "-w", k->dir, NULL };
    k->pid = test_spawn(argv, k->log);
    /* ready once it relays: an OPTIONS through it reaches sipd */
    uint64_t end = now_ms() + 15000;
    while (now_ms() < end) {
        if (options_ok(k->port))
            return 0;
        int st;
        if (waitpid(k->pid, &st, WNOHANG) == k->pid) {
            test_untrack(k->pid);
            break;
        }
        test_sleep_us(100 * 1000u);
    }
    show_log_tail(k->log);
    return -1;
}

static int kamailio_stop(proxy *k)
{
    kill(k->pid, SIGTERM);
    int rc = wait_for(k->pid, 20000);
    if (rc != 0)
        show_log_tail(k->log);
    return rc;
}

/* sipp through the proxy: scenario `name`, calls, service (Request-URI
 * user), message trace file (may be NULL). */
static sipp_result via_proxy(const server *s, const proxy *k, const char *name, int calls,
                             const char *service, const char *trace)
{
    char sf[700], m[16], port[16];
    snprintf(sf, sizeof sf, "%s/examples/sipd/%s.xml", root, name);
    snprintf(m, sizeof m, "%d", calls);
    snprintf(port, sizeof port, "%u", test_free_udp_port());
    /* Kamailio's two children relay a call's 180 and its 200 in either
     * order (one datagram each, taken by whichever child is free), and
     * sipp aborts a call on any message its scenario does not expect
     * next, where RFC 3261 (17.1.1.2) has a UAC drop a provisional
     * response that comes after the final one. So sipp goes on past
     * strays (-abortunexp off), the caller checks from the trace that
     * every stray was provisional (strays_checked), and an expected
     * message that never comes still fails its call, after 10 s. */
    char *args[24] = { "-sf", sf, "-m", m, "-r", "20",
                       "-default_behaviors", "all,-abortunexp", "-recv_timeout", "10000",
                       "-p", port, "-s", (char *)service, NULL };
    int n = 14;
    if (trace) {
        args[n++] = "-trace_msg";
        args[n++] = "-message_file";
        args[n++] = (char *)trace;
        args[n] = NULL;
        unlink(trace);
    }
    char screen[600];
    pid_t pid = sipp_start_to(s, k->port, name, args, screen, sizeof screen);
    return sipp_finish(pid, screen, 90000);
}

/* The first received message in a sipp trace that starts with `first`:
 * copied into out (empty if none). */
static void trace_find(const char *trace, const char *first, char *out, size_t cap)
{
    char *t = slurp(trace);
    out[0] = 0;
    for (char *p = t; (p = strstr(p, "message received")) != NULL; p++) {
        char *msg = strstr(p, "\n\n");
        if (msg && strncmp(msg + 2, first, strlen(first)) == 0) {
            char *end = strstr(msg + 2, "\n\n");
            snprintf(out, cap, "%.*s", (int)(end ? end - msg - 2 : (long)strlen(msg + 2)),
                     msg + 2);
            break;
        }
    }
    free(t);
}

/* The messages sipp's trace shows it received out of its scenario's
 * order: all must be provisional responses (a 1xx relayed after the
 * final response), which are counted in *late; 0, or -1 with the first
 * other one shown. */
static int strays_checked(const char *trace, int *late)
{
    static const char mark[] = "message received:\n\n";
    char *t = slurp(trace);
    int rc = 0;
    *late = 0;
    for (char *p = t; (p = strstr(p, "Unexpected ")) != NULL; p++) {
        char *msg = strstr(p, mark);
        if (msg && strncmp(msg + sizeof mark - 1, "SIP/2.0 1", 9) == 0) {
            ++*late;
            continue;
        }
        diag("sipp received out of order:\n%.300s", msg ? msg + sizeof mark - 1 : p);
        rc = -1;
        break;
    }
    free(t);
    return rc;
}

static void test_kamailio(server *s, server *ring, proxy *k, int *calls_s, int *calls_ring)
{
    char trace[600], sport[16];
    int late = 0;
    snprintf(trace, sizeof trace, "%s/hold.msg", k->dir);
    sipp_result r = via_proxy(s, k, "uac_hold", 20, "service", trace);
    ok(r.rc == 0 && r.ok == 20 && r.failed == 0,
       "through Kamailio: 20 calls, hold (re-INVITE sendonly), in-dialog OPTIONS, resume, BYE "
       "(rc %d, %lld ok, %lld failed)", r.rc, r.ok, r.failed);
    *calls_s += 20;
    ok(strays_checked(trace, &late) == 0, "every message sipp got out of order was a late 1xx (%d)", late);

    snprintf(trace, sizeof trace, "%s/cancel.msg", k->dir);
    r = via_proxy(ring, k, "uac_cancel", 1, "ring", trace);
    ok(r.rc == 0 && r.ok == 1 && r.failed == 0,
       "through Kamailio: CANCEL while ringing, 200 and 487 (rc %d, %lld ok)", r.rc, r.ok);
    *calls_ring += 1;
    char msg[4096];
    trace_find(trace, "SIP/2.0 487", msg, sizeof msg);
    char *via = strstr(msg, "\nVia: SIP/2.0/UDP 127.0.0.1:");
    int vias = 0;
    for (char *p = msg; (p = strstr(p, "\nVia:")) != NULL; p++)
        vias++;
    snprintf(sport, sizeof sport, "%s", via ? via + 28 : "");
    ok(via && vias == 1 && strstr(msg, ";branch=z9hG4bK-"),
       "the 487 Kamailio relayed carries exactly the caller's (sipp's) Via");
    if (!via)
        diag("487 received by sipp:\n%s", msg);

    snprintf(trace, sizeof trace, "%s/noack.msg", k->dir);
    r = via_proxy(s, k, "uac_noack", 1, "service", trace);
    ok(r.rc == 0 && r.ok == 1, "through Kamailio: no ACK, sipd's BYE reaches sipp (rc %d)", r.rc);
    *calls_s += 1;
    trace_find(trace, "BYE sip:", msg, sizeof msg);
    char rr[80];
    snprintf(rr, sizeof rr, "Via: SIP/2.0/UDP 127.0.0.1:%u;branch=", k->port);
    ok(strstr(msg, rr) && strstr(msg, "\nCSeq: 1 BYE"),
       "that BYE came through Kamailio (its Via on top): sipd used the route set");
    ok(strays_checked(trace, &late) == 0, "and nothing but a late 1xx came out of order (%d)", late);

}

/* ------------------------------------------------------------ baresip */

typedef struct ua {
    pid_t pid;
    int fd;
    char dir[450], log[500], in[65536];
    size_t len;
} ua;

static int baresip_start(ua *u)
{
    snprintf(u->dir, sizeof u->dir, "%s", test_dir("baresip"));
    mkdir(u->dir, 0700);
    snprintf(u->log, sizeof u->log, "%s/baresip.log", u->dir);
    /* baresip 1.0 ignores sip_transports: it binds UDP and TCP on the
     * SIP port and TLS on the next, whatever the config says. A port
     * that is merely free now (an ephemeral one) was seen taken by a
     * concurrent test's connection before baresip bound it; these come
     * from below the ephemeral range and are reserved across test
     * processes (redisutil.c). */
    int first = redis_free_ports(0, 3);
    if (first < 0)
        bail_out("no three free ports for baresip");
    unsigned sip_port = (unsigned)first, ctrl = (unsigned)first + 2;
    char cfg[2048], path[600];
    /* Headless: no sound card (aubridge loops the audio back), no
     * registration, commands and events over ctrl_tcp. */
    snprintf(cfg, sizeof cfg,
             "poll_method\t\tepoll\n"
             "sip_listen\t\t127.0.0.1:%u\n"
             "sip_transports\t\tudp\n"
             "audio_player\t\taubridge,loop\n"
             "audio_source\t\taubridge,loop\n"
             "audio_alert\t\taubridge,alert\n"
             "rtp_ports\t\t30000-39998\n"
             "module_path\t\t/usr/lib/baresip/modules\n"
             "module\t\t\tg711.so\n"
             "module\t\t\taubridge.so\n"
             "module_app\t\taccount.so\n"
             "module_app\t\tmenu.so\n"
             "module_app\t\tctrl_tcp.so\n"
             "ctrl_tcp_listen\t\t127.0.0.1:%u\n",
             sip_port, ctrl);
    snprintf(path, sizeof path, "%s/config", u->dir);
    write_file(path, cfg);
    snprintf(path, sizeof path, "%s/accounts", u->dir);
    write_file(path, "<sip:alice@127.0.0.1>;regint=0\n");
    snprintf(path, sizeof path, "%s/contacts", u->dir);
    write_file(path, "");
    char *argv[] = { (char *)baresip, "-f", u->dir, NULL };
    u->pid = test_spawn(argv, u->log);
    u->len = 0;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)ctrl),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    uint64_t end = now_ms() + 15000;
    while (now_ms() < end) {
        u->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(u->fd, (struct sockaddr *)&a, sizeof a) == 0)
            return 0;
        close(u->fd);
        test_sleep_us(100 * 1000u);
    }
    show_log_tail(u->log);
    return -1;
}

/* A ctrl_tcp command: a netstring holding {"command", "params", "token"}. */
static void ua_command(ua *u, const char *cmd, const char *params)
{
    char json[512], ns[600];
    int n = snprintf(json, sizeof json, "{\"command\":\"%s\",\"params\":\"%s\",\"token\":\"%s\"}",
                     cmd, params ? params : "", cmd);
    int m = snprintf(ns, sizeof ns, "%d:%s,", n, json);
    if (write(u->fd, ns, (size_t)m) != m)
        diag("ctrl_tcp write: %s", strerror(errno));
}

/* Read netstrings until one contains `want`, at most ms: 1 if seen. */
static int ua_wait(ua *u, const char *want, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    for (;;) {
        /* complete netstrings in the buffer */
        size_t off = 0;
        int found = 0;
        while (off < u->len) {
            char *colon = memchr(u->in + off, ':', u->len - off);
            if (!colon)
                break;
            size_t n = strtoul(u->in + off, NULL, 10);
            size_t start = (size_t)(colon - u->in) + 1;
            if (start + n + 1 > u->len)
                break;
            if (memmem(u->in + start, n, want, strlen(want)))
                found = 1;
            off = start + n + 1;
            if (found)
                break;
        }
        memmove(u->in, u->in + off, u->len - off);
        u->len -= off;
        if (found)
            return 1;
        uint64_t now = now_ms();
        if (now >= end)
            return 0;
        struct pollfd p = { u->fd, POLLIN, 0 };
        if (poll(&p, 1, (int)(end - now)) <= 0)
            continue;
        ssize_t r = read(u->fd, u->in + u->len, sizeof u->in - u->len);
        if (r <= 0)
            return 0;
        u->len += (size_t)r;
    }
}

/* The state of the newest session of server s (0: none). */
static int newest_state(const char *path)
{
    shmreg *h = reg_kept(path);
    shmreg_session v;
    uint64_t cur = 0, newest = 0;
    int state = 0;
    shmreg_read_begin(h);
    while (shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &v) == 0)
        if (v.created_ns >= newest) {
            newest = v.created_ns;
            state = v.state;
        }
    shmreg_read_end(h);
    return state;
}

static int state_becomes(const char *path, int state, unsigned ms)
{
    uint64_t end = now_ms() + ms;
    while (newest_state(path) != state && now_ms() < end)
        test_sleep_us(50 * 1000u);
    return newest_state(path) == state;
}

/* call, hold, resume, hang up, as a user would */
static void ua_call(ua *u, const server *s, unsigned port, const char *how)
{
    char uri[128];
    snprintf(uri, sizeof uri, "sip:svc@127.0.0.1:%u", port);
    ua_command(u, "dial", uri);
    ok(ua_wait(u, "\"CALL_ESTABLISHED\"", 10000) && state_becomes(s->reg, SHMREG_STATE_ACTIVE, 5000),
       "baresip %s: dial, CALL_ESTABLISHED; the session is Active", how);
    ua_command(u, "hold", NULL);
    ok(ua_wait(u, "\"token\":\"hold\"", 5000) && state_becomes(s->reg, SHMREG_STATE_ONHOLD, 5000),
       "baresip %s: hold (re-INVITE); the session is OnHold", how);
    ua_command(u, "resume", NULL);
    ok(ua_wait(u, "\"token\":\"resume\"", 5000) &&
           state_becomes(s->reg, SHMREG_STATE_ACTIVE, 5000),
       "baresip %s: resume; the session is Active again", how);
    ua_command(u, "hangup", NULL);
    ok(ua_wait(u, "\"CALL_CLOSED\"", 5000) && state_becomes(s->reg, SHMREG_STATE_TERMINATED, 5000),
       "baresip %s: hang up (BYE), CALL_CLOSED; the session is Terminated", how);
}

static int baresip_stop(ua *u)
{
    close(u->fd);
    kill(u->pid, SIGTERM);
    return wait_for(u->pid, 10000);
}

/* ------------------------------------------------------------ tshark */

typedef struct capture {
    pid_t pid;
    char file[500], log[500];
} capture;

static int capture_start(capture *c, const server *a, const server *b)
{
    snprintf(c->file, sizeof c->file, "%s.pcap", a->reg);
    snprintf(c->log, sizeof c->log, "%s.tshark.log", a->reg);
    char filter[128];
    snprintf(filter, sizeof filter, "udp port %u or udp port %u", a->port, b->port);
    char *argv[] = { (char *)tshark, "-i", "lo", "-f", filter, "-w", c->file, "-q", NULL };
    c->pid = test_spawn(argv, c->log);
    return wait_text(c->log, "Capturing on", 15000) ? 0 : -1;
}

/* Frames of the capture matching `filter` (decoding udp.port p as SIP). */
static long count_frames(const capture *c, unsigned p1, unsigned p2, const char *filter)
{
    char out[600], decode1[64], decode2[64];
    static unsigned n;
    snprintf(out, sizeof out, "%s.q%u", c->file, n++);
    snprintf(decode1, sizeof decode1, "udp.port==%u,sip", p1);
    snprintf(decode2, sizeof decode2, "udp.port==%u,sip", p2);
    char *argv[] = { (char *)tshark, "-r", (char *)c->file, "-d", decode1, "-d", decode2,
                     "-Y", (char *)filter, "-T", "fields", "-e", "frame.number", NULL };
    if (wait_for(test_spawn(argv, out), 60000) != 0)
        return -1;
    char *t = slurp(out);
    long lines = 0;
    for (char *p = t; *p; p++)
        lines += *p == '\n';
    /* tshark also writes its warnings (running as root) to this file */
    for (char *p = t; (p = strstr(p, "Running as user")) != NULL; p++)
        lines--;
    free(t);
    return lines;
}

static void capture_check(capture *c, const server *a, const server *b)
{
    kill(c->pid, SIGINT);              /* tshark writes out what it has */
    is(wait_for(c->pid, 20000), 0, "tshark stopped, capture written");
    char from[128], f[512];
    snprintf(from, sizeof from, "(udp.srcport == %u || udp.srcport == %u)", a->port, b->port);
    long sent = count_frames(c, a->port, b->port, from);
    snprintf(f, sizeof f, "%s && sip.Call-ID && sip.CSeq.method && (sip.Status-Code || sip.Method)",
             from);
    long sip = count_frames(c, a->port, b->port, f);
    ok(sent > 100 && sip == sent,
       "tshark decodes every datagram sipd sent as SIP with Call-ID, CSeq and status or method "
       "(%ld of %ld)", sip, sent);
    snprintf(f, sizeof f, "%s && sip.Content-Type == \"application/sdp\" && !sdp", from);
    is(count_frames(c, a->port, b->port, f), 0, "every SDP body sipd sent dissects as SDP");
    snprintf(f, sizeof f, "%s && (_ws.malformed || _ws.expert.severity >= \"Warning\")", from);
    is(count_frames(c, a->port, b->port, f), 0,
       "no malformed packet, no expert info of warning or worse, in what sipd sent");
}

/* ------------------------------------------------------------ main */

int main(void)
{
    const char *env = getenv("SIPD_INTEROP");
    if (!ASAN_BUILD && !(env && strcmp(env, "1") == 0))
        skip_all("interop tests run in the asan build (or with SIPD_INTEROP=1)");
    if (access(sipp, X_OK) != 0)
        skip_all("sipp not installed (Debian package sip-tester)");
    sipd_test_init();
    test_bail_on_alarm(300);

    server s, ring;
    if (sipd_start_with(&s, "interop", 4, "0", "60000", TIMERS) != 0 ||
        sipd_start_with(&ring, "interopring", 2, "2000", "60000", TIMERS) != 0)
        bail_out("sipd did not start");
    capture cap = { 0 };
    int capturing = access(tshark, X_OK) == 0 && geteuid() == 0 &&
                    capture_start(&cap, &s, &ring) == 0;
    if (!capturing)
        note("no capture: tshark not installed, not root, or it did not start");

    int calls_s = 0, calls_ring = 0;
    proxy k = { 0 };
    int have_k = access(kamailio, X_OK) == 0;
    if (have_k) {
        ok(kamailio_start(&k, &s, &ring) == 0, "Kamailio started, relays an OPTIONS to sipd");
        test_kamailio(&s, &ring, &k, &calls_s, &calls_ring);
    } else {
        skip(5, "kamailio not installed");
    }

    if (access(baresip, X_OK) == 0) {
        ua u;
        ok(baresip_start(&u) == 0, "baresip started headless, ctrl_tcp answers");
        ua_call(&u, &s, s.port, "direct");
        calls_s++;
        if (have_k) {
            ua_call(&u, &s, k.port, "through Kamailio");
            calls_s++;
        }
        is(baresip_stop(&u), 0, "baresip: SIGTERM, exit 0");
    } else {
        skip(10, "baresip not installed");
    }
    if (have_k)
        is(kamailio_stop(&k), 0, "Kamailio stopped");

    /* the noack call failed; all the others ended by BYE, the cancelled one rang */
    test_sleep_us(500 * 1000u);
    uint64_t want[SHMREG_STATE_COUNT] = { 0 }, want_ring[SHMREG_STATE_COUNT] = { 0 };
    want[SHMREG_STATE_FAILED] = have_k ? 1 : 0;
    want[SHMREG_STATE_TERMINATED] = (uint64_t)calls_s - want[SHMREG_STATE_FAILED];
    want_ring[SHMREG_STATE_CANCELLED] = (uint64_t)calls_ring;
    states_are(s.reg, "sessions by state", want);
    states_are(ring.reg, "ringing sipd, sessions by state", want_ring);
    registry_final(s.reg, "after the interop tests");
    registry_final(ring.reg, "after the interop CANCEL");
    is(sipd_stop(&s), 0, "sipd: SIGTERM, exit 0");
    is(sipd_stop(&ring), 0, "sipd -R 2000: SIGTERM, exit 0");
    if (capturing)
        capture_check(&cap, &s, &ring);
    else
        skip(4, "no capture");
    return done_testing();
}
