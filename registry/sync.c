/*
 * sync.c — what persistence needs from the registry besides restore:
 * the record format of a stored session or room (encode / decode), and
 * the status words by which shmreg-sync tells every process how far it
 * has got.
 *
 * Records are flat little-endian byte strings with a magic, a version and
 * a trailing FNV-1a checksum: a sink stores them as opaque values, and
 * restore trusts nothing in them (every length is checked against the
 * buffer and the API's limits before it is used), so a torn or foreign
 * value is refused by name instead of restored wrong.
 *
 * The status lives in three words of the segment header (pid, durable
 * ring position, commit time), written only by the daemon; a worker never
 * reads or waits on them. The claim is a compare-and-swap on the pid
 * word, taken over from a dead holder, so two daemons never report for
 * one registry at once.
 */
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "reg.h"

/* ------------------------------------------------------------ status words */

static int pid_alive(uint64_t pid)
{
    return pid && pid <= INT32_MAX && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

void reg_sync_stats(shmreg *h, shmreg_stats *st)
{
    reg_shared *hd = h->shared;
    uint64_t pid = atomic_load(&hd->sync_pid);
    st->sync_durable_seq = atomic_load(&hd->sync_pos);
    st->sync_commit_ns = atomic_load(&hd->sync_commit_ns);
    st->sync_pid = (int32_t)pid;
    st->sync_alive = (uint32_t)pid_alive(pid);
    st->sync_behind = st->events_published > st->sync_durable_seq
                          ? st->events_published - st->sync_durable_seq : 0;
}

int shmreg_sync_claim(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    _Atomic uint64_t *w = &h->shared->sync_pid;
    uint64_t mine = (uint64_t)h->pid, cur = atomic_load(w);
    for (;;) {
        if (cur == mine)
            return 0;
        if (pid_alive(cur))
            return shmreg__fail(SHMREG_EBUSY, "registry %s is already followed by shmreg-sync pid %llu",
                                h->path, (unsigned long long)cur);
        if (atomic_compare_exchange_strong(w, &cur, mine))
            return 0;
    }
}

int reg_claim_held(shmreg *h)
{
    if (atomic_load(&h->shared->sync_pid) != (uint64_t)h->pid)
        return shmreg__fail(SHMREG_EPERM, "this process does not hold the registry's sync claim");
    return 0;
}

int shmreg_sync_report(shmreg *h, uint64_t pos, uint64_t commit_ns)
{
    int rc = shmreg__usable(h);
    if (rc == 0)
        rc = reg_claim_held(h);
    if (rc)
        return rc;
    reg_shared *hd = h->shared;
    atomic_store(&hd->sync_commit_ns, commit_ns);
    atomic_store(&hd->sync_pos, pos);
    return 0;
}

int shmreg_sync_release(shmreg *h)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    uint64_t mine = (uint64_t)h->pid;
    atomic_compare_exchange_strong(&h->shared->sync_pid, &mine, 0);
    return 0;
}

/* ------------------------------------------------------------ records */

#define REC_SESSION 0x31535253u /* "SRS1" */
#define REC_SESSION2 0x32535253u /* "SRS2": with the call control part */
#define REC_ROOM    0x31525253u /* "SRR1" */

typedef struct wbuf {
    unsigned char *p;
    size_t cap, len;
} wbuf;

static void put(wbuf *w, const void *src, size_t n)
{
    if (w->len + n <= w->cap && n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}
static void put64(wbuf *w, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 8);
}
static void put32(wbuf *w, uint32_t v)
{
    unsigned char b[4];
    for (int i = 0; i < 4; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put(w, b, 4);
}
static void putstr(wbuf *w, shmreg_str s)
{
    put32(w, (uint32_t)s.len);
    put(w, s.ptr, s.len);
}

/* The records' checksum: FNV-1a's constants over 8-byte words (then the
 * tail bytes), so a 1 KiB SDP costs 128 steps, not 1024. It finds torn
 * and damaged values; it is no defence against forgery (nor need be:
 * the sync directory is the daemon's, mode 0700). */
static uint64_t fnv(const unsigned char *p, size_t n)
{
    uint64_t x = 0xcbf29ce484222325ull;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = 0;
        for (int k = 0; k < 8; k++) /* little-endian whatever the host: one load on x86 */
            w |= (uint64_t)p[i + k] << (8 * k);
        x = (x ^ w) * 0x100000001b3ull;
        x ^= x >> 29;
    }
    for (; i < n; i++)
        x = (x ^ p[i]) * 0x100000001b3ull;
    return x;
}

static int finish(wbuf *w, size_t *len)
{
    if (w->len + 8 <= w->cap)
        put64(w, fnv(w->p, w->len));
    else
        w->len += 8;
    *len = w->len;
    return w->len <= w->cap ? 0
                            : shmreg__fail(SHMREG_EFULL, "record of %zu bytes, buffer of %zu", w->len, w->cap);
}

typedef struct rbuf {
    const unsigned char *p;
    size_t len, pos;
    int bad;
} rbuf;

static const unsigned char *get(rbuf *r, size_t n)
{
    if (r->bad || n > r->len - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const unsigned char *q = r->p + r->pos;
    r->pos += n;
    return q;
}
static uint64_t get64(rbuf *r)
{
    const unsigned char *b = get(r, 8);
    uint64_t v = 0;
    for (int i = 0; b && i < 8; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}
static uint32_t get32(rbuf *r)
{
    const unsigned char *b = get(r, 4);
    uint32_t v = 0;
    for (int i = 0; b && i < 4; i++)
        v |= (uint32_t)b[i] << (8 * i);
    return v;
}
static shmreg_str getstr(rbuf *r, size_t max)
{
    uint32_t n = get32(r);
    if (n > max) {
        r->bad = 1;
        return (shmreg_str){"", 0};
    }
    const unsigned char *q = get(r, n);
    return q ? (shmreg_str){(const char *)q, n} : (shmreg_str){"", 0};
}

/* Checks magic and checksum; leaves r positioned after the magic. */
static int open_record(rbuf *r, const void *buf, size_t len, uint32_t magic, const char *what)
{
    r->p = buf;
    r->len = len;
    r->pos = 0;
    r->bad = 0;
    if (len < 12)
        return shmreg__fail(SHMREG_ECORRUPT, "%s record of %zu bytes is truncated", what, len);
    uint32_t m = get32(r);
    if (m != magic)
        return shmreg__fail(SHMREG_EVERSION, "not a %s record of this format (magic 0x%08x)", what, m);
    rbuf t = {r->p + len - 8, 8, 0, 0};
    if (get64(&t) != fnv(r->p, len - 8))
        return shmreg__fail(SHMREG_ECORRUPT, "%s record fails its checksum", what);
    r->len = len - 8;
    return 0;
}

static size_t field_max(unsigned i)
{
    return i == SHMREG_FIELD_APP_DATA ? SHMREG_MAX_APPDATA : SHMREG_MAX_STR;
}

static int control_ok(const shmreg_session_control *c)
{
    if (c->nprofiles > SHMREG_MAX_PROFILES_PER_SESSION || c->nvars > SHMREG_MAX_VARS)
        return 0;
    for (unsigned i = 0; i < c->nprofiles; i++)
        if (c->profile[i].profile.len == 0 || c->profile[i].profile.len > SHMREG_MAX_PROFILE_NAME ||
            c->profile[i].value.len > SHMREG_MAX_PROFILE_VALUE)
            return 0;
    for (unsigned i = 0; i < c->nvars; i++)
        if (c->var_key[i].len == 0 || c->var_key[i].len > SHMREG_MAX_VAR_KEY ||
            c->var_value[i].len > SHMREG_MAX_VAR_VALUE)
            return 0;
    return 1;
}

int shmreg_session_encode(const shmreg_session *s, const shmreg_dialog *d, unsigned nd, void *buf,
                          size_t cap, size_t *len)
{
    return shmreg_session_encode_control(s, NULL, d, nd, buf, cap, len);
}

int shmreg_session_encode_control(const shmreg_session *s, const shmreg_session_control *c,
                                  const shmreg_dialog *d, unsigned nd, void *buf, size_t cap,
                                  size_t *len)
{
    if (s == NULL || len == NULL || (buf == NULL && cap) || (nd && d == NULL) ||
        nd > SHMREG_MAX_DIALOGS_PER_SESSION)
        return shmreg__fail(SHMREG_EINVAL, "NULL session/len/buffer or %u dialogs", nd);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        if (s->str[i].len > field_max(i))
            return shmreg__fail(SHMREG_EINVAL, "field %u is %zu bytes", i, s->str[i].len);
    if (s->sdp[0].len > SHMREG_MAX_SDP || s->sdp[1].len > SHMREG_MAX_SDP)
        return shmreg__fail(SHMREG_EINVAL, "SDP over %u bytes", SHMREG_MAX_SDP);
    for (unsigned k = 0; k < nd; k++)
        if (d[k].call_id.len > SHMREG_MAX_STR || d[k].local_tag.len > SHMREG_MAX_STR ||
            d[k].remote_tag.len > SHMREG_MAX_STR)
            return shmreg__fail(SHMREG_EINVAL, "dialog %u has a part over %u bytes", k, SHMREG_MAX_STR);
    if (c && !control_ok(c))
        return shmreg__fail(SHMREG_EINVAL, "call control part over its limits");
    wbuf w = {buf, cap, 0};
    put32(&w, c ? REC_SESSION2 : REC_SESSION);
    put(&w, s->id.bytes, SHMREG_ID_BYTES);
    put32(&w, (uint32_t)s->state);
    put32(&w, (uint32_t)s->local_rtp_port | (uint32_t)s->remote_rtp_port << 16);
    put64(&w, s->created_ns);
    put64(&w, s->updated_ns);
    put64(&w, s->config_gen);
    put32(&w, (uint32_t)s->owner_pid);
    put32(&w, SHMREG_CTR_COUNT);
    for (unsigned i = 0; i < SHMREG_CTR_COUNT; i++)
        put64(&w, s->counter[i]);
    put32(&w, SHMREG_FIELD_STR_COUNT);
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT; i++)
        putstr(&w, s->str[i]);
    putstr(&w, s->sdp[0]);
    putstr(&w, s->sdp[1]);
    put32(&w, nd);
    for (unsigned k = 0; k < nd; k++) {
        putstr(&w, d[k].call_id);
        putstr(&w, d[k].local_tag);
        putstr(&w, d[k].remote_tag);
    }
    if (c) {
        put64(&w, c->deadline_ns);
        put64(&w, c->grace_ns);
        put32(&w, c->timeout_flags);
        put32(&w, c->nprofiles);
        for (unsigned i = 0; i < c->nprofiles; i++) {
            putstr(&w, c->profile[i].profile);
            putstr(&w, c->profile[i].value);
        }
        put32(&w, c->nvars);
        for (unsigned i = 0; i < c->nvars; i++) {
            putstr(&w, c->var_key[i]);
            putstr(&w, c->var_value[i]);
        }
    }
    return finish(&w, len);
}

int shmreg_session_decode(const void *buf, size_t len, shmreg_session *s, shmreg_dialog *d, unsigned *nd)
{
    return shmreg_session_decode_control(buf, len, s, NULL, d, nd);
}

int shmreg_session_decode_control(const void *buf, size_t len, shmreg_session *s,
                                  shmreg_session_control *c, shmreg_dialog *d, unsigned *nd)
{
    if (buf == NULL || s == NULL || d == NULL || nd == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL buffer/session/dialogs/count");
    rbuf r;
    rbuf peek = {buf, len, 0, 0};
    uint32_t magic = len >= 12 ? get32(&peek) : 0; /* which format */
    int rc = open_record(&r, buf, len, magic == REC_SESSION2 ? REC_SESSION2 : REC_SESSION, "session");
    if (rc)
        return rc;
    shmreg_session_control cc;
    memset(&cc, 0, sizeof cc);
    memset(s, 0, sizeof *s);
    const unsigned char *id = get(&r, SHMREG_ID_BYTES);
    if (id)
        memcpy(s->id.bytes, id, SHMREG_ID_BYTES);
    s->state = (int)get32(&r);
    uint32_t ports = get32(&r);
    s->local_rtp_port = (uint16_t)ports;
    s->remote_rtp_port = (uint16_t)(ports >> 16);
    s->created_ns = get64(&r);
    s->updated_ns = get64(&r);
    s->config_gen = get64(&r);
    s->owner_pid = (int32_t)get32(&r);
    uint32_t nc = get32(&r);
    if (nc > SHMREG_CTR_MAX)
        r.bad = 1;
    for (uint32_t i = 0; i < nc && !r.bad; i++) {
        uint64_t v = get64(&r);
        if (i < SHMREG_CTR_COUNT)
            s->counter[i] = v;
    }
    uint32_t ns = get32(&r);
    if (ns != SHMREG_FIELD_STR_COUNT)
        r.bad = 1;
    for (unsigned i = 0; i < SHMREG_FIELD_STR_COUNT && !r.bad; i++)
        s->str[i] = getstr(&r, field_max(i));
    for (unsigned i = SHMREG_FIELD_STR_COUNT; i < SHMREG_FIELD_STR_MAX; i++)
        s->str[i] = (shmreg_str){"", 0};
    s->sdp[0] = getstr(&r, SHMREG_MAX_SDP);
    s->sdp[1] = getstr(&r, SHMREG_MAX_SDP);
    uint32_t n = get32(&r);
    if (n > SHMREG_MAX_DIALOGS_PER_SESSION)
        r.bad = 1;
    for (uint32_t k = 0; k < n && !r.bad; k++) {
        memset(&d[k], 0, sizeof d[k]);
        d[k].call_id = getstr(&r, SHMREG_MAX_STR);
        d[k].local_tag = getstr(&r, SHMREG_MAX_STR);
        d[k].remote_tag = getstr(&r, SHMREG_MAX_STR);
        d[k].session = s->id;
    }
    if (magic == REC_SESSION2 && !r.bad) {
        cc.deadline_ns = get64(&r);
        cc.grace_ns = get64(&r);
        cc.timeout_flags = get32(&r);
        cc.nprofiles = get32(&r);
        if (cc.nprofiles > SHMREG_MAX_PROFILES_PER_SESSION)
            r.bad = 1;
        for (uint32_t i = 0; i < cc.nprofiles && !r.bad; i++) {
            cc.profile[i].profile = getstr(&r, SHMREG_MAX_PROFILE_NAME);
            cc.profile[i].value = getstr(&r, SHMREG_MAX_PROFILE_VALUE);
        }
        cc.nvars = r.bad ? 0 : get32(&r);
        if (cc.nvars > SHMREG_MAX_VARS)
            r.bad = 1;
        for (uint32_t i = 0; i < cc.nvars && !r.bad; i++) {
            cc.var_key[i] = getstr(&r, SHMREG_MAX_VAR_KEY);
            cc.var_value[i] = getstr(&r, SHMREG_MAX_VAR_VALUE);
        }
        if (!r.bad && !control_ok(&cc))
            r.bad = 1;
    }
    if (r.bad || r.pos != r.len || s->state < SHMREG_STATE_INITIATING || s->state > SHMREG_STATE_FAILED)
        return shmreg__fail(SHMREG_ECORRUPT, "session record is malformed (at byte %zu of %zu)", r.pos,
                            r.len);
    s->ndialogs = n;
    *nd = n;
    if (c)
        *c = cc;
    return 0;
}

int shmreg_room_encode(const shmreg_room *rm, const shmreg_participant *p, uint32_t n, void *buf,
                       size_t cap, size_t *len)
{
    if (rm == NULL || len == NULL || (buf == NULL && cap) || (n && p == NULL) ||
        n > rm->max_participants || rm->max_participants > SHMREG_MAX_ROOM_PARTICIPANTS ||
        rm->name.len > SHMREG_MAX_STR)
        return shmreg__fail(SHMREG_EINVAL, "NULL room/len/buffer, bad capacity or %u participants", n);
    for (uint32_t k = 0; k < n; k++)
        if (p[k].uri.len > SHMREG_MAX_STR || p[k].display_name.len > SHMREG_MAX_STR)
            return shmreg__fail(SHMREG_EINVAL, "participant %u has a string over %u bytes", k,
                                SHMREG_MAX_STR);
    wbuf w = {buf, cap, 0};
    put32(&w, REC_ROOM);
    put(&w, rm->id.bytes, SHMREG_ID_BYTES);
    put32(&w, (uint32_t)rm->state);
    put32(&w, rm->max_participants);
    put64(&w, rm->created_ns);
    put64(&w, rm->config_gen);
    putstr(&w, rm->name);
    put32(&w, n);
    for (uint32_t k = 0; k < n; k++) {
        put(&w, p[k].session.bytes, SHMREG_ID_BYTES);
        put32(&w, (uint32_t)p[k].status | (uint32_t)(p[k].audio_active != 0) << 8 |
                      (uint32_t)p[k].rtp_port << 16);
        put64(&w, p[k].joined_ns);
        putstr(&w, p[k].uri);
        putstr(&w, p[k].display_name);
    }
    return finish(&w, len);
}

int shmreg_room_decode(const void *buf, size_t len, shmreg_room *rm, shmreg_participant *p, uint32_t cap,
                       uint32_t *n)
{
    if (buf == NULL || rm == NULL || n == NULL || (cap && p == NULL))
        return shmreg__fail(SHMREG_EINVAL, "NULL buffer/room/participants/count");
    rbuf r;
    int rc = open_record(&r, buf, len, REC_ROOM, "room");
    if (rc)
        return rc;
    memset(rm, 0, sizeof *rm);
    const unsigned char *id = get(&r, SHMREG_ID_BYTES);
    if (id)
        memcpy(rm->id.bytes, id, SHMREG_ID_BYTES);
    rm->state = (int)get32(&r);
    rm->max_participants = get32(&r);
    rm->created_ns = get64(&r);
    rm->config_gen = get64(&r);
    rm->name = getstr(&r, SHMREG_MAX_STR);
    uint32_t k, np = get32(&r);
    if (np > rm->max_participants || rm->max_participants > SHMREG_MAX_ROOM_PARTICIPANTS ||
        rm->max_participants == 0)
        r.bad = 1;
    if (!r.bad && np > cap) {
        *n = np;
        return shmreg__fail(SHMREG_EFULL, "room record has %u participants, room for %u", np, cap);
    }
    for (k = 0; k < np && !r.bad; k++) {
        shmreg_participant *q = &p[k];
        memset(q, 0, sizeof *q);
        id = get(&r, SHMREG_ID_BYTES);
        if (id)
            memcpy(q->session.bytes, id, SHMREG_ID_BYTES);
        uint32_t x = get32(&r);
        q->status = (int)(x & 0xff);
        q->audio_active = (int)((x >> 8) & 1);
        q->rtp_port = (uint16_t)(x >> 16);
        q->joined_ns = get64(&r);
        q->uri = getstr(&r, SHMREG_MAX_STR);
        q->display_name = getstr(&r, SHMREG_MAX_STR);
        if (q->status < SHMREG_PART_JOINING || q->status > SHMREG_PART_LEFT)
            r.bad = 1;
    }
    if (r.bad || r.pos != r.len || rm->state < SHMREG_ROOM_CREATING || rm->state > SHMREG_ROOM_TERMINATED)
        return shmreg__fail(SHMREG_ECORRUPT, "room record is malformed (at byte %zu of %zu)", r.pos, r.len);
    rm->participants = np;
    *n = np;
    return 0;
}
