/*
 * shmreg-bench-util.c — the bench's plumbing: the deterministic data every
 * store is fed, the cycle clock, the latency histogram and scratch-directory
 * removal. (The malloc counter is the tests' t/alloc_count.c.)
 *
 * Data. Sessions must look like SIP calls (URIs, a Call-ID, tags, two SDP
 * bodies) and be identical for every store, yet generating them must cost
 * next to nothing inside a timed create loop. So the bulky parts come from
 * small pools built once from the seed (256 caller profiles, 256 SDP
 * bodies), and only what must be unique per session (Call-ID and tags) is
 * formatted per call, as hex of a hash of the session index. SDP lengths
 * vary around the requested size (by --sdp-spread) because real SDPs do,
 * and because a fixed size would land every body in the same allocator
 * size class: the best or the worst case of any size-class allocator,
 * never the average.
 */
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shmreg-bench.h"

/* ------------------------------------------------------------ data */

#define NPROF 256u
#define NSDP 256u

typedef struct profile {
    char from[48], to[48], disp[32], codec[16], host[24];
    unsigned char app[32];
    uint8_t lfrom, lto, ldisp, lcodec, lhost;
} profile;

static profile prof[NPROF];
static char *sdp_pool[NSDP];      /* each sdp_max bytes long */
static size_t sdp_min, sdp_span;  /* lengths are sdp_min + [0, sdp_span] */
static char hex2[256][2];

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static char *put_hex(char *p, uint64_t x, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++, x >>= 8)
        memcpy(p + 2 * i, hex2[x & 0xff], 2);
    return p + 2 * bytes;
}

/* A plausible audio SDP, padded with candidate lines to `len` bytes. */
static void make_sdp(char *out, size_t len, uint64_t r)
{
    unsigned a = (unsigned)(r >> 8 & 0xff), b = (unsigned)(r >> 16 & 0xff),
             c = (unsigned)(r >> 24 & 0xff), port = 10000 + (unsigned)(r >> 32) % 20000 * 2;
    char buf[8192];
    int n = snprintf(buf, sizeof buf,
                     "v=0\r\no=- %llu %llu IN IP4 10.%u.%u.%u\r\ns=-\r\n"
                     "c=IN IP4 10.%u.%u.%u\r\nt=0 0\r\nm=audio %u RTP/AVP 0 8 9 101\r\n"
                     "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\n"
                     "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
                     "a=ptime:20\r\na=sendrecv\r\n",
                     (unsigned long long)(r % 1000000007ull), (unsigned long long)(r % 97),
                     a, b, c, a, b, c, port);
    for (unsigned k = 1; (size_t)n < len && (size_t)n < sizeof buf - 128; k++)
        n += snprintf(buf + n, sizeof buf - (size_t)n,
                      "a=candidate:%u 1 udp %u 10.%u.%u.%u %u typ host\r\n", k,
                      2130706431u - k, a, b, (c + k) & 0xff, port + 2 * k);
    if ((size_t)n >= len) {
        memcpy(out, buf, len);
    } else { /* larger than one buffer: repeat it */
        for (size_t off = 0; off < len; off += (size_t)n)
            memcpy(out + off, buf, len - off < (size_t)n ? len - off : (size_t)n);
    }
}

void data_init(bench_data *d, uint64_t seed, size_t sdp_bytes, unsigned spread_pct)
{
    static const char *names[] = {"Alice", "Bob", "Carol", "Dave", "Erin", "Frank",
                                  "Grace", "Heidi", "Ivan", "Judy", "Mallory", "Oscar"};
    static const char *codecs[] = {"PCMU/8000", "PCMA/8000", "opus/48000/2", "G722/8000"};
    d->seed = seed;
    d->sdp_bytes = sdp_bytes;
    for (unsigned i = 0; i < 256; i++) {
        hex2[i][0] = "0123456789abcdef"[i >> 4];
        hex2[i][1] = "0123456789abcdef"[i & 15];
    }
    for (unsigned k = 0; k < NPROF; k++) {
        profile *p = &prof[k];
        uint64_t r = mix64(seed * 0x9e3779b97f4a7c15ull + k);
        /* Built apart: gcc -O0 takes p->host as overlapping p->from (-Wrestrict). */
        char host[sizeof p->host];
        p->lhost = (uint8_t)snprintf(host, sizeof host, "pbx%u.example.net", (unsigned)(r % 16));
        memcpy(p->host, host, sizeof host);
        p->lfrom = (uint8_t)snprintf(p->from, sizeof p->from, "sip:+1555%07u@%s",
                                     (unsigned)(r >> 8) % 10000000u, host);
        p->lto = (uint8_t)snprintf(p->to, sizeof p->to, "sip:+1555%07u@carrier.example.com",
                                   (unsigned)(r >> 32) % 10000000u);
        p->ldisp = (uint8_t)snprintf(p->disp, sizeof p->disp, "%s %04u",
                                     names[r % (sizeof names / sizeof *names)], (unsigned)(r >> 40) % 10000u);
        p->lcodec = (uint8_t)snprintf(p->codec, sizeof p->codec, "%s", codecs[(r >> 20) % 4]);
        for (unsigned j = 0; j < sizeof p->app; j++)
            p->app[j] = (unsigned char)(mix64(r + j) & 0xff);
    }
    sdp_span = sdp_bytes * spread_pct / 100 * 2;
    sdp_min = sdp_bytes - sdp_span / 2;
    for (unsigned k = 0; k < NSDP; k++) {
        free(sdp_pool[k]);
        sdp_pool[k] = malloc(sdp_min + sdp_span + 1);
        if (sdp_pool[k] == NULL) {
            fprintf(stderr, "shmreg-bench: out of memory\n");
            exit(1);
        }
        make_sdp(sdp_pool[k], sdp_min + sdp_span, mix64(seed ^ (0x5d9ull << 32) ^ k));
    }
    d->sdp_max = sdp_min + sdp_span;
}

/* Lengths uniform in [sdp_min, sdp_min + sdp_span]; a multiply, not a
 * division, because this runs inside timed loops. */
static size_t sdp_len_of(const bench_data *d, uint64_t i, int which)
{
    uint64_t h = mix64(d->seed ^ (i * 2 + (uint64_t)which) ^ 0x51d7ull);
    return sdp_min + (size_t)(((unsigned __int128)h * (sdp_span + 1)) >> 64);
}

/* Call-ID (24 hex digits @ host) and tags (10 hex digits each) of session
 * i, into r->keybuf: all that dialog_find needs, so it is all it pays. */
void data_keys(const bench_data *d, uint64_t i, bench_rec *r)
{
    const profile *p = &prof[i % NPROF];
    uint64_t h1 = mix64(d->seed ^ (i << 1)), h2 = mix64(h1 + i);
    char *k = r->keybuf, *q = put_hex(k, h1, 8);
    q = put_hex(q, h2, 4);
    *q++ = '@';
    memcpy(q, p->host, p->lhost);
    q += p->lhost;
    r->f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){k, (size_t)(q - k)};
    r->f.str[SHMREG_FIELD_LOCAL_TAG] = (shmreg_str){q, 10};
    q = put_hex(q, h2 >> 24, 5);
    r->f.str[SHMREG_FIELD_REMOTE_TAG] = (shmreg_str){q, 10};
    put_hex(q, h2 ^ (h1 >> 13), 5);
}

shmreg_str data_from(const bench_data *d, uint64_t i)
{
    (void)d;
    return (shmreg_str){prof[i % NPROF].from, prof[i % NPROF].lfrom};
}

void data_rec(const bench_data *d, uint64_t i, bench_rec *r)
{
    const profile *p = &prof[i % NPROF];
    data_keys(d, i, r);
    r->f.str[SHMREG_FIELD_FAILURE_REASON] = (shmreg_str){NULL, 0};
    r->f.str[SHMREG_FIELD_FROM_URI] = (shmreg_str){p->from, p->lfrom};
    r->f.str[SHMREG_FIELD_TO_URI] = (shmreg_str){p->to, p->lto};
    r->f.str[SHMREG_FIELD_DISPLAY_NAME] = (shmreg_str){p->disp, p->ldisp};
    r->f.str[SHMREG_FIELD_CODEC] = (shmreg_str){p->codec, p->lcodec};
    r->f.str[SHMREG_FIELD_APP_DATA] = (shmreg_str){(const char *)p->app, sizeof p->app};
    r->f.local_rtp_port = (uint16_t)(10000 + (i * 4) % 20000);
    r->f.remote_rtp_port = (uint16_t)(20000 + (i * 4) % 20000);
    for (int w = 0; w < 2; w++) {
        r->sdp[w] = sdp_pool[(i * 2 + (uint64_t)w) % NSDP];
        r->sdp_len[w] = sdp_len_of(d, i, w);
    }
}

size_t data_sdp_len(const bench_data *d, uint64_t i, int which)
{
    return sdp_len_of(d, i, which);
}

const char *data_sdp_variant(const bench_data *d, uint64_t i, int which, int variant)
{
    (void)d;
    return sdp_pool[(i * 2 + (uint64_t)which + 17 + (uint64_t)variant * 31) % NSDP];
}

uint64_t data_payload(const bench_data *d, uint64_t n)
{
    uint64_t total = 0;
    bench_rec r;
    for (uint64_t i = 0; i < n; i++) {
        data_rec(d, i, &r);
        for (unsigned f = 0; f < SHMREG_FIELD_STR_COUNT; f++)
            total += r.f.str[f].len;
        total += r.sdp_len[0] + r.sdp_len[1];
        /* the dialog key is stored again by the dialog index */
        total += r.f.str[SHMREG_FIELD_CALL_ID].len + r.f.str[SHMREG_FIELD_LOCAL_TAG].len +
                 r.f.str[SHMREG_FIELD_REMOTE_TAG].len;
    }
    return total;
}

void data_id(const bench_data *d, uint64_t i, shmreg_id *id)
{
    uint64_t a = mix64(d->seed ^ 0x1d1d1d1dull ^ (i << 1)), b = mix64(a ^ i);
    memcpy(id->bytes, &a, 8);
    memcpy(id->bytes + 8, &b, 8);
}

/* ------------------------------------------------------------ clock */

double tsc_per_ns = 1.0;
uint64_t tsc_overhead;

void bench_new_id(shmreg_id *id)
{
    static uint64_t ctr;
    uint64_t a = (++ctr + (uint64_t)getpid() * 0x632be59bd9b4e019ull) * 0x9e3779b97f4a7c15ull;
    a ^= a >> 29;
    memcpy(id->bytes, &a, 8);
    memcpy(id->bytes + 8, &ctr, 8);
}

uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void clock_calibrate(void)
{
    uint64_t n0 = mono_ns(), t0 = tsc_begin(), n1;
    while ((n1 = mono_ns()) - n0 < 50000000ull)
        ;
    uint64_t t1 = tsc_end();
    tsc_per_ns = (double)(t1 - t0) / (double)(n1 - n0);
    uint64_t best = UINT64_MAX;
    for (int i = 0; i < 10000; i++) {
        uint64_t a = tsc_begin(), b = tsc_end();
        if (b - a < best)
            best = b - a;
    }
    tsc_overhead = best;
}

/* ------------------------------------------------------------ histogram */

static unsigned hist_index(uint64_t v)
{
    if (v < 64)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
    unsigned idx = 64u + (e - 6u) * HIST_SUB + (unsigned)((v >> (e - 5u)) & (HIST_SUB - 1u));
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1u;
}

static uint64_t hist_value(unsigned idx)
{
    if (idx < 64)
        return idx;
    unsigned e = 6u + (idx - 64u) / HIST_SUB, sub = (idx - 64u) % HIST_SUB;
    uint64_t width = 1ull << (e - 5u);
    return (HIST_SUB + sub) * width + width / 2;
}

void hist_add(uint64_t *h, uint64_t ns)
{
    h[hist_index(ns)]++;
}

uint64_t hist_pct(const uint64_t *h, double p)
{
    uint64_t total = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += h[i];
    if (total == 0)
        return 0;
    uint64_t rank = (uint64_t)(p * (double)(total - 1)) + 1, seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        if ((seen += h[i]) >= rank)
            return hist_value(i);
    return hist_value(HIST_BUCKETS - 1);
}

/* ------------------------------------------------------------ machine load */

int machine_cpu(double *busy, double *steal)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    int n = f ? fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                       &v[5], &v[6], &v[7])
              : 0;
    if (f)
        fclose(f);
    if (n != 8)
        return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    /* user nice system idle iowait irq softirq steal */
    *busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
    *steal = (double)v[7] / hz;
    return 0;
}

double own_cpu(void)
{
    struct rusage a, b;
    getrusage(RUSAGE_SELF, &a);
    getrusage(RUSAGE_CHILDREN, &b);
    return (double)(a.ru_utime.tv_sec + a.ru_stime.tv_sec + b.ru_utime.tv_sec + b.ru_stime.tv_sec) +
           (double)(a.ru_utime.tv_usec + a.ru_stime.tv_usec + b.ru_utime.tv_usec + b.ru_stime.tv_usec) / 1e6;
}

/* CPU seconds process `pid` has used (user + system), from /proc. */
double proc_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2)
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    return 0;
}

/* The shmreg-sync next to this bench, in out[0..cap): 0, or 1 (said). */
int bench_sync_bin(char *out, size_t cap)
{
    char self[1024];
    ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
    if (l <= 0)
        return 1;
    self[l] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(out, cap, "%s/shmreg-sync", self);
    if (access(out, X_OK) != 0) {
        fprintf(stderr, "shmreg-bench: no shmreg-sync at %s (make tools)\n", out);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------ misc */

char bench_err[256];

int bench_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(bench_err, sizeof bench_err, fmt, ap);
    va_end(ap);
    return -1;
}

const char *bench_strerror(int impl, int rc)
{
    static char buf[320];
    if (impl == IMPL_SHMREG || impl == IMPL_COPY)
        snprintf(buf, sizeof buf, "%s (%s)", shmreg_strerror(rc), shmreg_errmsg());
    else
        snprintf(buf, sizeof buf, "%s", bench_err[0] ? bench_err : "failed");
    return buf;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        rmdir(path);
    else
        unlink(path);
    return 0;
}

void rm_tree(const char *path)
{
    if (path && path[0])
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
