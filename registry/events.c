/*
 * events.c — the registry's event bus: what the registry publishes on the
 * broadcast ring (shm/ring.c) and how subscribers filter what they read.
 *
 * The ring is domain-free: it moves 64-byte records with a type and up to
 * 48 bytes of payload. This file decides the payload: a fixed little
 * struct (time, pid, states, session ID, and 16 bytes that are a room ID,
 * a config generation, a field mask or custom data). Everything fits
 * inline, so an event is never more than one cache line and no subscriber
 * ever follows an offset out of an event; bulk data such as an SDP stays
 * in the registry, where the subscriber reads it in place.
 *
 * Publishing is called at the end of every committed change; it never
 * fails the change it reports (a dropped event is counted by the ring).
 * Filtering happens on the subscriber's side, after the copy out of the
 * ring, so a subscriber with a narrow filter costs producers nothing.
 */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "reg.h"
#include "ring.h"

typedef struct ev_wire {
    uint64_t time_ns;
    int32_t pid;
    uint8_t old_state, new_state, which, len;
    unsigned char session[SHMREG_ID_BYTES];
    union {
        unsigned char room[SHMREG_ID_BYTES];
        uint64_t config_gen;
        struct {                     /* the other session events */
            uint32_t mask;           /* SESSION_UPDATED: the fields */
            uint32_t pad;
            uint64_t version;        /* the session's, after the change */
        } s;
        unsigned char data[SHMREG_EVENT_DATA_MAX];
        struct {                     /* profile events */
            uint32_t count;          /* the pair's member count after */
            unsigned char name[SHMREG_EVENT_DATA_MAX - 4];
        } prof;
    } u;
} ev_wire;

_Static_assert(sizeof(ev_wire) <= SHM_RING_MAX_PAYLOAD, "event payload too big");

#define POLL_BATCH 32u

struct shmreg_sub {
    shmreg *h;
    shm_ring ring;
    shm_ring_sub rs;
    uint32_t mask;
    int one_session;
    shmreg_id session;
    shmreg_sub_stats st;
    shm_ring_record buf[POLL_BATCH];
    uint32_t nbuf, pos;   /* records fetched and not yet looked at */
};

static const char *const names[SHMREG_EV_TYPE_COUNT] = {
    [SHMREG_EV_SESSION_CREATED] = "session_created",
    [SHMREG_EV_STATE_CHANGED] = "state_changed",
    [SHMREG_EV_SDP_UPDATED] = "sdp_updated",
    [SHMREG_EV_SESSION_UPDATED] = "session_updated",
    [SHMREG_EV_SESSION_DELETED] = "session_deleted",
    [SHMREG_EV_DIALOG_BOUND] = "dialog_bound",
    [SHMREG_EV_DIALOG_UNBOUND] = "dialog_unbound",
    [SHMREG_EV_CONFIG_CHANGED] = "config_changed",
    [SHMREG_EV_CUSTOM] = "custom",
    [SHMREG_EV_ROOM_CREATED] = "room_created",
    [SHMREG_EV_ROOM_STATE] = "room_state",
    [SHMREG_EV_PARTICIPANT_JOINED] = "participant_joined",
    [SHMREG_EV_PARTICIPANT_STATUS] = "participant_status",
    [SHMREG_EV_PARTICIPANT_LEFT] = "participant_left",
    [SHMREG_EV_SESSION_RESTORED] = "session_restored",
    [SHMREG_EV_ROOM_RESTORED] = "room_restored",
    [SHMREG_EV_TIMEOUT] = "timeout",
    [SHMREG_EV_PROFILE_JOINED] = "profile_joined",
    [SHMREG_EV_PROFILE_LEFT] = "profile_left",
    [SHMREG_EV_VAR_CHANGED] = "var_changed",
    [SHMREG_EV_SESSION_IMPORTED] = "session_imported",
    [SHMREG_EV_SESSION_ADOPTED] = "session_adopted",
};

const char *shmreg_event_name(uint32_t type)
{
    return type < SHMREG_EV_TYPE_COUNT ? names[type] : NULL;
}

int shmreg_event_parse(const char *name, uint32_t *type)
{
    for (uint32_t t = 1; name && type && t < SHMREG_EV_TYPE_COUNT; t++)
        if (names[t] && strcmp(names[t], name) == 0) {
            *type = t;
            return 0;
        }
    return shmreg__fail(SHMREG_EINVAL, "unknown event type '%s'", name ? name : "(null)");
}

/* The ring of this handle's segment, attached (and so validated) on demand. */
static int ring_of(shmreg *h, shm_ring *r)
{
    const shm_seg *s = &h->c.seg;
    size_t bytes = shm_ring_bytes(s->ring_records);
    int rc = shm_ring_attach(r, s->base + s->off_ring, bytes);
    return rc ? shmreg__fail(SHMREG_ECORRUPT, "event ring: %s", shm_ring_strerror(rc)) : 0;
}

int reg_event_init(shmreg *h)
{
    shm_ring *r = malloc(sizeof *r);
    if (r == NULL)
        return shmreg__fail(SHMREG_ENOMEM, "out of memory");
    int rc = ring_of(h, r);
    if (rc) {
        free(r);
        return rc;
    }
    h->event_state = r;
    return 0;
}

void reg_event_fini(shmreg *h)
{
    free(h->event_state);
    h->event_state = NULL;
}

/* What every event says of its publishing: when (0: now) and who. */
static void stamp(shmreg *h, ev_wire *w, uint64_t time_ns)
{
    w->time_ns = time_ns ? time_ns : shm_now_ns();
    w->pid = h->pid;
}

static int publish(shmreg *h, uint64_t time_ns, uint32_t type, ev_wire *w)
{
    stamp(h, w, time_ns);
    int rc = shm_ring_publish(h->event_state, type, w, sizeof *w);
    if (rc == SHM_RING_EBUSY)
        return shmreg__fail(SHMREG_EBUSY, "event ring slot held by a stalled producer");
    /* The ring's other refusals (EINVAL) cannot happen for our fixed-size
     * record; should one come, it leaves as a SHMREG code with a message,
     * never as a raw ring code. */
    return rc < 0 ? shmreg__fail(SHMREG_ECORRUPT, "event ring: %s", shm_ring_strerror(rc)) : 0;
}

static void session_wire(ev_wire *w, uint32_t type, const unsigned char *session, int old_state,
                         int new_state, uint32_t which, uint64_t version)
{
    memset(w, 0, sizeof *w);
    if (session)
        memcpy(w->session, session, SHMREG_ID_BYTES);
    w->old_state = (uint8_t)old_state;
    w->new_state = (uint8_t)new_state;
    w->u.s.version = version;
    if (type == SHMREG_EV_SESSION_UPDATED)
        w->u.s.mask = which;
    else
        w->which = (uint8_t)which;
}

void reg_event(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *session,
               int old_state, int new_state, uint32_t which, uint64_t version)
{
    ev_wire w;
    session_wire(&w, type, session, old_state, new_state, which, version);
    publish(h, time_ns, type, &w);
}

/* The events of one update, session_updated for `fields` and
 * sdp_updated for each side in `sdps`, with one claim on the ring: they
 * follow each other with nothing of anybody else's between them. */
void reg_event_update(shmreg *h, uint64_t time_ns, const unsigned char *session, uint32_t fields,
                      unsigned sdps, uint64_t version)
{
    ev_wire w[3];
    shm_ring_out out[3];
    uint32_t n = 0;
    for (unsigned e = 0; e < 3; e++) {
        if (e == 0 ? fields == 0 : !(sdps & (1u << (e - 1))))
            continue;
        uint32_t type = e == 0 ? SHMREG_EV_SESSION_UPDATED : SHMREG_EV_SDP_UPDATED;
        session_wire(&w[n], type, session, 0, 0, e == 0 ? fields : e - 1, version);
        stamp(h, &w[n], time_ns);
        out[n] = (shm_ring_out){type, sizeof w[n], &w[n]};
        n++;
    }
    if (n) /* as publish(): a refusal never fails the change */
        shm_ring_publish_n(h->event_state, out, n, NULL);
}

void reg_event_room(shmreg *h, uint64_t time_ns, uint32_t type, const unsigned char *room,
                    const unsigned char *session, int old_state, int new_state)
{
    ev_wire w = {0};
    memcpy(w.u.room, room, SHMREG_ID_BYTES);
    if (session)
        memcpy(w.session, session, SHMREG_ID_BYTES);
    w.old_state = (uint8_t)old_state;
    w.new_state = (uint8_t)new_state;
    publish(h, time_ns, type, &w);
}

void reg_event_data(shmreg *h, uint32_t type, const unsigned char *session, uint32_t which,
                    const void *data, size_t len)
{
    ev_wire w = {0};
    memcpy(w.session, session, SHMREG_ID_BYTES);
    if (type == SHMREG_EV_VAR_CHANGED) {
        w.which = (uint8_t)which;
        w.len = (uint8_t)(len < sizeof w.u.data ? len : sizeof w.u.data);
        memcpy(w.u.data, data, w.len);
    } else {
        w.u.prof.count = which;
        w.len = (uint8_t)(len < sizeof w.u.prof.name ? len : sizeof w.u.prof.name);
        memcpy(w.u.prof.name, data, w.len);
    }
    publish(h, 0, type, &w);
}

void shmreg__publish_config(shmreg *h, uint64_t gen)
{
    ev_wire w = {0};
    w.u.config_gen = gen;
    publish(h, 0, SHMREG_EV_CONFIG_CHANGED, &w);
}

/* A custom event's wire form: 0, or SHMREG_EINVAL for data it cannot carry. */
static int custom_wire(ev_wire *w, const shmreg_id *session, const void *data, size_t len)
{
    if (len > SHMREG_EVENT_DATA_MAX || (len && data == NULL))
        return shmreg__fail(SHMREG_EINVAL, "custom event data of %zu bytes (limit %u)", len,
                            SHMREG_EVENT_DATA_MAX);
    memset(w, 0, sizeof *w);
    if (session)
        memcpy(w->session, session->bytes, SHMREG_ID_BYTES);
    w->len = (uint8_t)len;
    if (len)
        memcpy(w->u.data, data, len);
    return 0;
}

int shmreg_publish(shmreg *h, const shmreg_id *session, const void *data, size_t len)
{
    int rc = shmreg__usable(h);
    ev_wire w;
    if (rc == 0 && (rc = custom_wire(&w, session, data, len)) == 0)
        rc = publish(h, 0, SHMREG_EV_CUSTOM, &w);
    return rc;
}

int shmreg_publish_batch(shmreg *h, const shmreg_id *sessions, const void *const *data,
                         const size_t *len, size_t n)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    /* A ring holds at least SHMREG_PUBLISH_BATCH_MAX records (the
     * smallest allowed is 64), so no batch laps itself. */
    if (data == NULL || len == NULL || n == 0 || n > SHMREG_PUBLISH_BATCH_MAX)
        return shmreg__fail(SHMREG_EINVAL, "a batch of %zu events (1 to %u, NULL arrays refused)", n,
                            SHMREG_PUBLISH_BATCH_MAX);
    ev_wire w[SHMREG_PUBLISH_BATCH_MAX];
    shm_ring_out out[SHMREG_PUBLISH_BATCH_MAX];
    uint64_t now = shm_now_ns(); /* one clock read: they are published together */
    for (size_t i = 0; i < n; i++) {
        if ((rc = custom_wire(&w[i], sessions ? &sessions[i] : NULL, data[i], len[i])) != 0)
            return rc;
        stamp(h, &w[i], now);
        out[i] = (shm_ring_out){SHMREG_EV_CUSTOM, sizeof w[i], &w[i]};
    }
    uint32_t dropped;
    rc = shm_ring_publish_n(h->event_state, out, (uint32_t)n, &dropped);
    if (rc == SHM_RING_EBUSY)
        return shmreg__fail(SHMREG_EBUSY, "%u of %zu events dropped: ring slots held by a stalled producer",
                            dropped, n);
    return rc < 0 ? shmreg__fail(SHMREG_ECORRUPT, "event ring: %s", shm_ring_strerror(rc)) : 0;
}

/* ------------------------------------------------------------ subscribers */

int shmreg_subscribe(shmreg *h, uint32_t type_mask, const shmreg_id *session, shmreg_sub **out)
{
    int rc = shmreg__usable(h);
    if (rc)
        return rc;
    if (out == NULL || type_mask == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL out or empty type mask");
    shmreg_sub *sub = calloc(1, sizeof *sub);
    if (sub == NULL)
        return shmreg__fail(SHMREG_ENOMEM, "out of memory");
    if ((rc = ring_of(h, &sub->ring)) != 0) {
        free(sub);
        return rc;
    }
    sub->h = h;
    sub->mask = type_mask;
    if (session) {
        sub->one_session = 1;
        sub->session = *session;
    }
    shm_ring_subscribe_tail(&sub->ring, &sub->rs);
    sub->st.next_seq = sub->rs.next;
    *out = sub;
    return 0;
}

void shmreg_unsubscribe(shmreg_sub *sub)
{
    free(sub);
}

static int decode(shmreg_sub *sub, const shm_ring_record *r, shmreg_event *e)
{
    if (r->type == 0 || r->type >= SHMREG_EV_TYPE_COUNT || r->len != sizeof(ev_wire) ||
        !(sub->mask & SHMREG_EV_MASK(r->type)))
        return 0;
    ev_wire w;
    memcpy(&w, r->payload, sizeof w);
    if (sub->one_session && memcmp(w.session, sub->session.bytes, SHMREG_ID_BYTES) != 0)
        return 0;
    memset(e, 0, sizeof *e);
    e->seq = r->seq;
    e->time_ns = w.time_ns;
    e->type = r->type;
    e->pid = w.pid;
    memcpy(e->session.bytes, w.session, SHMREG_ID_BYTES);
    e->old_state = w.old_state;
    e->new_state = w.new_state;
    switch (r->type) {
    case SHMREG_EV_SESSION_UPDATED:
        e->which = w.u.s.mask;
        e->version = w.u.s.version;
        break;
    case SHMREG_EV_CONFIG_CHANGED: e->config_gen = w.u.config_gen; break;
    case SHMREG_EV_PROFILE_JOINED:
    case SHMREG_EV_PROFILE_LEFT:
        e->which = w.u.prof.count;
        e->len = w.len <= sizeof w.u.prof.name ? w.len : sizeof w.u.prof.name;
        memcpy(e->data, w.u.prof.name, e->len);
        break;
    case SHMREG_EV_VAR_CHANGED:
        e->which = w.which;
        /* fall through */
    case SHMREG_EV_CUSTOM:
        e->len = w.len <= SHMREG_EVENT_DATA_MAX ? w.len : SHMREG_EVENT_DATA_MAX;
        memcpy(e->data, w.u.data, e->len);
        break;
    default:
        e->which = w.which;
        if (r->type >= SHMREG_EV_ROOM_CREATED && r->type <= SHMREG_EV_ROOM_RESTORED)
            memcpy(e->room.bytes, w.u.room, SHMREG_ID_BYTES);
        else
            e->version = w.u.s.version;
    }
    return 1;
}

int shmreg_poll(shmreg_sub *sub, shmreg_event *out, unsigned max, int64_t timeout_ns, uint64_t *missed)
{
    if (sub == NULL || out == NULL || max == 0)
        return shmreg__fail(SHMREG_EINVAL, "NULL subscription/out or max 0");
    int rc = shmreg__usable(sub->h);
    if (rc)
        return rc;
    uint64_t lost = 0;
    unsigned n = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        while (n < max) {
            if (sub->pos == sub->nbuf) {
                uint64_t m = 0;
                int got = shm_ring_poll(&sub->ring, &sub->rs, sub->buf, POLL_BATCH, &m);
                lost += m;
                if (got <= 0)
                    break; /* nothing ready (or a corrupt record, counted in m) */
                sub->nbuf = (uint32_t)got;
                sub->pos = 0;
            }
            const shm_ring_record *r = &sub->buf[sub->pos++];
            if (decode(sub, r, &out[n]))
                n++;
            else
                sub->st.filtered++;
        }
        if (n > 0 || timeout_ns == 0)
            break;
        int64_t left = -1;
        if (timeout_ns > 0) {
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            int64_t spent = (t1.tv_sec - t0.tv_sec) * 1000000000ll + (t1.tv_nsec - t0.tv_nsec);
            if (spent >= timeout_ns)
                break;
            left = timeout_ns - spent;
        }
        int w = shm_ring_wait(&sub->ring, &sub->rs, left);
        if (w == SHM_RING_ETIMEDOUT || w == SHM_RING_EINTR)
            break;
        if (w < 0) {
            rc = shmreg__fail(SHMREG_ESYS, "waiting for events: %s", shm_ring_strerror(w));
            break;
        }
    }
    sub->st.delivered += n;
    sub->st.missed += lost;
    sub->st.skipped = sub->rs.skipped;
    sub->st.next_seq = sub->rs.next - (sub->nbuf - sub->pos);
    if (missed)
        *missed = lost;
    return rc ? rc : (int)n;
}

int shmreg_sub_stats_get(const shmreg_sub *sub, shmreg_sub_stats *st)
{
    if (sub == NULL || st == NULL)
        return shmreg__fail(SHMREG_EINVAL, "NULL subscription/stats");
    *st = sub->st;
    return 0;
}

void reg_event_stats(shmreg *h, shmreg_stats *st)
{
    shm_ring_stats rs;
    shm_ring_stats_get(h->event_state, &rs);
    st->events_published = rs.published;
    st->event_ring_records = rs.nrecords;
    st->events_dropped = rs.dropped;
    st->events_stolen = rs.stolen;
}

uint32_t reg_event_record_bytes(void)
{
    return (uint32_t)sizeof(ev_wire);
}
