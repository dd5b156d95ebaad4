/*
 * shmregctl_sess.c — the commands about sessions and dialogs: list, show,
 * sdp, dialogs, dialog find, gc, timeouts.
 *
 * Walking a live table. shmreg_session_next() keeps its cursor across
 * read sections, so every walk here opens a section, reads a bounded
 * number of entries — 4096 when it only collects keys or IDs, 256 (or
 * until the out buffer holds 256 KiB) when it renders rows — closes it,
 * flushes, and goes on: a section never lasts longer than a few thousand
 * lock-free reads, and stdout is never written inside one. Sessions live throughout a walk are
 * seen exactly once; those created or deleted meanwhile may or may not be.
 *
 * Sorting a million sessions in constant memory (list). Table order is
 * not creation order, and a full sort needs memory proportional to the
 * table. Instead list makes passes over the table: each pass keeps, in a
 * bounded max-heap of WINDOW keys (creation time, ID), the first WINDOW
 * matching sessions after the last one printed, then sorts and prints
 * them, fetching each by ID (one more short lookup) at print time. Memory
 * is fixed (WINDOW * 24 bytes, 1.5 MiB); time is one table walk per
 * WINDOW sessions printed, so 100k sessions take 2 walks and a million
 * 16. The key (creation time, ID) never changes and is unique, so passes
 * neither repeat nor skip a session. --limit N keeps at most N keys.
 * The SDP is never copied for listing.
 *
 * list --user walks the user index (shmreg_session_by_user) instead of
 * the table: the passes are the same, over that user's sessions only.
 * timeouts is the same machine keyed by deadline, over the sessions that
 * have one; a deadline changed between the pass and the print is shown
 * as it is then.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmregctl.h"

#define WINDOW 65536u            /* keys kept per list pass */
#define SECTION_READS 256u       /* rows rendered per read section */
#define SECTION_SCAN 4096u       /* entries looked at per section, rendering none */
#define SECTION_BYTES (256u << 10) /* out buffer bytes per read section */

static const char *const field_key[SHMREG_FIELD_STR_COUNT] = {
    "from_uri", "to_uri", "display_name", "call_id", "local_tag",
    "remote_tag", "codec", "failure_reason", "app_data",
};

static const char *const counter_key[SHMREG_CTR_COUNT] = {
    "packets_sent", "packets_received", "bytes_sent", "bytes_received", "packets_lost",
};

static uint64_t since(uint64_t now, uint64_t t) { return t && t < now ? now - t : 0; }

/* Begin / end one short read section; failures of begin are EFORK-class
 * and leave nothing to clean. */
int ctl_section_begin(ctl *c)
{
    int rc = shmreg_read_begin(c->h);
    return rc ? ctl_fail(c, rc, "cannot enter a read section") : 0;
}

int ctl_section_end(ctl *c)
{
    shmreg_read_end(c->h);
    out_flush(&c->o);
    return ctl_stop || c->o.broken;
}

int ctl_walk(ctl *c, ctl_next_fn next, void *entry, unsigned per_section, size_t max_bytes,
             ctl_each_fn each, void *arg, int *walk_rc)
{
    uint64_t cur = 0;
    int rc = 0, stop = 0;
    while (!stop && rc == 0) {
        int brc = ctl_section_begin(c);
        if (brc)
            return brc;
        for (unsigned n = 0; n < per_section && (max_bytes == 0 || out_pending(&c->o) < max_bytes); n++) {
            if ((rc = next(c->h, &cur, entry)) != 0)
                break;
            each(&c->o, entry, arg);
        }
        stop = ctl_section_end(c);
    }
    *walk_rc = rc;
    return ctl_stop ? CTL_INTR : 0;
}

/* The fields every session row carries (list, gc): the same keys as show. */
void ctl_session_fields(out *o, const shmreg_session *s, uint64_t now)
{
    out_id(o, "id", &s->id);
    out_cstr(o, "state", shmreg_state_name(s->state));
    out_time(o, "created_ns", s->created_ns);
    out_time(o, "updated_ns", s->updated_ns);
    out_dur(o, "age_ns", since(now, s->created_ns));
    out_dur(o, "idle_ns", since(now, s->updated_ns));
}

/* ------------------------------------------------------------ list */

typedef struct lkey {
    uint64_t created;
    shmreg_id id;
} lkey;

typedef struct filter {
    uint32_t states;          /* mask of 1 << state; 0: all */
    uint64_t min_age, idle;   /* ns */
    const char *from, *to;
    uint64_t now;
    unsigned user_which;      /* SHMREG_USER_FROM/_TO: walk that user's sessions */
    char user[SHMREG_MAX_STR]; /* ... its index key (shmreg_user_key) */
    size_t user_len;
    int by_deadline;          /* timeouts: key and filter are the deadline */
} filter;

static int str_has(shmreg_str s, const char *needle)
{
    return !needle || memmem(s.ptr, s.len, needle, strlen(needle)) != NULL;
}

/* Does the URI's index key equal the user's? */
static int user_is(const filter *f, shmreg_str uri)
{
    char k[SHMREG_MAX_STR];
    size_t n;
    return shmreg_user_key(uri, k, sizeof k, &n) == 0 && n == f->user_len &&
           memcmp(k, f->user, n) == 0;
}

static int matches(const filter *f, const shmreg_session *s)
{
    if (f->user_which && !((f->user_which & SHMREG_USER_FROM && user_is(f, s->str[SHMREG_FIELD_FROM_URI])) ||
                           (f->user_which & SHMREG_USER_TO && user_is(f, s->str[SHMREG_FIELD_TO_URI]))))
        return 0;
    if (f->by_deadline && s->deadline_ns == 0)
        return 0;
    return (!f->states || (f->states >> s->state & 1u)) &&
           since(f->now, s->created_ns) >= f->min_age &&
           since(f->now, s->updated_ns) >= f->idle &&
           str_has(s->str[SHMREG_FIELD_FROM_URI], f->from) &&
           str_has(s->str[SHMREG_FIELD_TO_URI], f->to);
}

static int key_cmp(const lkey *a, const lkey *b)
{
    if (a->created != b->created)
        return a->created < b->created ? -1 : 1;
    return memcmp(a->id.bytes, b->id.bytes, SHMREG_ID_BYTES);
}

/* Output order: by key, or reversed. */
static int before(const lkey *a, const lkey *b, int dir) { return dir * key_cmp(a, b) < 0; }

static int qsort_cmp(const void *a, const void *b, void *dir)
{
    return *(const int *)dir * key_cmp(a, b);
}

/* The bounded max-heap of a pass: top is the last in output order. */
typedef struct kheap {
    lkey *k;
    size_t n, cap;
    int dir;
} kheap;

static void heap_sift_down(kheap *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->n && before(&h->k[m], &h->k[l], h->dir))
            m = l;
        if (r < h->n && before(&h->k[m], &h->k[r], h->dir))
            m = r;
        if (m == i)
            return;
        lkey t = h->k[i];
        h->k[i] = h->k[m];
        h->k[m] = t;
        i = m;
    }
}

static void heap_offer(kheap *h, const lkey *key)
{
    if (h->n < h->cap) {
        size_t i = h->n++;
        h->k[i] = *key;
        while (i && before(&h->k[(i - 1) / 2], &h->k[i], h->dir)) {
            lkey t = h->k[i];
            h->k[i] = h->k[(i - 1) / 2];
            h->k[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
    } else if (before(key, &h->k[0], h->dir)) {
        h->k[0] = *key;
        heap_sift_down(h, 0);
    }
}

static const out_col list_cols[] = {
    {"id", "ID", 36, 0, 0},
    {"state", "STATE", 12, 0, 0},
    {"age_ns", "AGE", 7, 0, 1},
    {"idle_ns", "IDLE", 7, 0, 1},
    {"from_uri", "FROM", 30, 1, 0},
    {"to_uri", "TO", 30, 1, 0},
    {"call_id", "CALL-ID", 0, 0, 0},
};

static void list_row(out *o, const shmreg_session *s, uint64_t now)
{
    out_row_begin(o);
    ctl_session_fields(o, s, now);
    for (int i = 0; i < SHMREG_FIELD_APP_DATA; i++)
        out_str(o, field_key[i], s->str[i].ptr, s->str[i].len);
    out_u64(o, "local_rtp_port", s->local_rtp_port);
    out_u64(o, "remote_rtp_port", s->remote_rtp_port);
    out_i64(o, "owner_pid", s->owner_pid);
    out_u64(o, "dialogs", s->ndialogs);
    out_u64(o, "local_sdp_bytes", s->sdp[SHMREG_SDP_LOCAL].len);
    out_u64(o, "remote_sdp_bytes", s->sdp[SHMREG_SDP_REMOTE].len);
    ctl_timeout_fields(o, s, now);
    out_u64(o, "profiles", s->nprofiles);
    out_u64(o, "variables", s->nvars);
    out_row_end(o);
}

typedef void (*row_fn)(out *o, const shmreg_session *s, uint64_t now);

/* One pass: the first h->cap matching keys after *lb (all when !has_lb). */
static int list_pass(ctl *c, const filter *f, kheap *h, const lkey *lb, int has_lb)
{
    int state = f->states && !(f->states & (f->states - 1)) ? __builtin_ctz(f->states)
                                                            : SHMREG_STATE_ANY;
    shmreg_str user = {f->user, f->user_len};
    uint64_t cur = 0;
    shmreg_session s;
    int rc = 0;
    h->n = 0;
    while (rc == 0) {
        if ((rc = ctl_section_begin(c)))
            return rc;
        for (unsigned i = 0; i < SECTION_SCAN; i++) {
            rc = f->user_which ? shmreg_session_by_user(c->h, user, f->user_which, &cur, &s)
                               : shmreg_session_next(c->h, &cur, state, &s);
            if (rc != 0)
                break;
            lkey k = {f->by_deadline ? s.deadline_ns : s.created_ns, s.id};
            if ((!has_lb || before(lb, &k, h->dir)) && matches(f, &s))
                heap_offer(h, &k);
        }
        shmreg_read_end(c->h);
        if (ctl_stop)
            return CTL_INTR;
    }
    return rc == SHMREG_ENOENT ? 0 : ctl_fail(c, rc, "cannot walk the sessions");
}

/* The rows of list and timeouts: the first `limit` matching sessions in
 * key order (dir -1: reversed), in passes of at most WINDOW keys, each
 * read again by ID when printed, rendered by `row` under the table the
 * caller opened. 0, or the error (printed). */
static int list_sorted(ctl *c, const filter *f, uint64_t limit, int dir, row_fn row)
{
    kheap h = {.cap = limit < WINDOW ? (size_t)limit : WINDOW, .dir = dir};
    h.k = malloc(h.cap * sizeof *h.k);
    if (!h.k)
        return ctl_err(c, CTL_PROBLEM, "out of memory");
    out *o = &c->o;
    lkey lb = {0};
    uint64_t printed = 0;
    int has_lb = 0, stop = 0, rc = 0;
    while (!stop && printed < limit) {
        if ((rc = list_pass(c, f, &h, &lb, has_lb)))
            break;
        int full = h.n == h.cap;
        qsort_r(h.k, h.n, sizeof *h.k, qsort_cmp, &dir);
        shmreg_session s;
        for (size_t i = 0; i < h.n && !stop && printed < limit;) {
            if ((rc = ctl_section_begin(c)))
                break;
            for (unsigned n = 0; i < h.n && n < SECTION_READS && printed < limit &&
                                 out_pending(o) < SECTION_BYTES;
                 i++, n++) {
                /* Gone since the pass, or changed so it no longer matches:
                 * not listed. */
                if (shmreg_session_get(c->h, &h.k[i].id, &s) == 0 && matches(f, &s)) {
                    row(o, &s, f->now);
                    printed++;
                }
            }
            stop = ctl_section_end(c);
        }
        if (rc || !full || h.n == 0)
            break;
        lb = h.k[h.n - 1];
        has_lb = 1;
        if (limit - printed < h.cap)
            h.cap = (size_t)(limit - printed);
    }
    free(h.k);
    return rc;
}

/* --user, --from-user, --to-user: the user's index key into f. */
static int user_option(ctl *c, filter *f, int ch, const char *arg)
{
    unsigned which = ch == 'U' ? SHMREG_USER_FROM | SHMREG_USER_TO
                               : ch == 'f' ? SHMREG_USER_FROM : SHMREG_USER_TO;
    if (f->user_which && f->user_which != which)
        return ctl_usage(c, "give one of --user, --from-user and --to-user");
    if (shmreg_user_key((shmreg_str){arg, strlen(arg)}, f->user, sizeof f->user, &f->user_len) ||
        f->user_len == 0)
        return ctl_usage(c, "not a user: '%s' (give user@host or a SIP URI)", arg);
    f->user_which = which;
    return 0;
}

int cmd_list(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"state", required_argument, NULL, 's'},
        {"min-age", required_argument, NULL, 'a'},
        {"idle", required_argument, NULL, 'i'},
        {"from", required_argument, NULL, 'F'},
        {"to", required_argument, NULL, 'T'},
        {"user", required_argument, NULL, 'U'},
        {"from-user", required_argument, NULL, 'f'},
        {"to-user", required_argument, NULL, 't'},
        {"limit", required_argument, NULL, 'n'},
        {"reverse", no_argument, NULL, 'R'},
        {0},
    };
    filter f = {0};
    uint64_t limit = UINT64_MAX;
    int dir = 1, ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n:", lo)) != -1) {
        switch (ch) {
        case 's':
            if (ctl_parse_states(optarg, &f.states))
                return ctl_usage(c, "--state wants state names (e.g. Active,OnHold), not '%s'", optarg);
            break;
        case 'a':
        case 'i':
            if (ctl_parse_dur(optarg, ch == 'a' ? &f.min_age : &f.idle))
                return ctl_usage(c, "--%s wants a duration (30, 1.5s, 10m, 2h, 1d), not '%s'",
                                 ch == 'a' ? "min-age" : "idle", optarg);
            break;
        case 'F': f.from = optarg; break;
        case 'T': f.to = optarg; break;
        case 'U':
        case 'f':
        case 't':
            if ((rc = user_option(c, &f, ch, optarg)))
                return rc;
            break;
        case 'n':
            if (ctl_parse_u64(optarg, UINT64_MAX, &limit) || limit == 0)
                return ctl_usage(c, "--limit wants a positive number, not '%s'", optarg);
            break;
        case 'R': dir = -1; break;
        }
    }
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    f.now = ctl_now_ns();
    out_table(&c->o, NULL, list_cols, 7, 1);
    rc = list_sorted(c, &f, limit, dir, list_row);
    out_table_end(&c->o);
    return rc;
}

/* ------------------------------------------------------------ timeouts */

static const out_col timeout_cols[] = {
    {"id", "ID", 36, 0, 0},
    {"state", "STATE", 12, 0, 0},
    {"deadline_ns", "DEADLINE", 24, 0, 0},
    {"due_in_ns", "DUE", 12, 0, 1},
    {"timeout_action", "ACTION", 6, 0, 0},
    {"from_uri", "FROM", 0, 0, 0},
};

static void timeout_row(out *o, const shmreg_session *s, uint64_t now)
{
    out_row_begin(o);
    ctl_session_fields(o, s, now);
    ctl_timeout_fields(o, s, now);
    out_str(o, "from_uri", s->str[SHMREG_FIELD_FROM_URI].ptr, s->str[SHMREG_FIELD_FROM_URI].len);
    out_str(o, "to_uri", s->str[SHMREG_FIELD_TO_URI].ptr, s->str[SHMREG_FIELD_TO_URI].len);
    out_str(o, "call_id", s->str[SHMREG_FIELD_CALL_ID].ptr, s->str[SHMREG_FIELD_CALL_ID].len);
    out_row_end(o);
}

int cmd_timeouts(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"state", required_argument, NULL, 's'},
        {"limit", required_argument, NULL, 'n'},
        {0},
    };
    filter f = {.by_deadline = 1};
    uint64_t limit = 20;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n:", lo)) != -1) {
        if (ch == 's' && ctl_parse_states(optarg, &f.states))
            return ctl_usage(c, "--state wants state names (e.g. Active,OnHold), not '%s'", optarg);
        if (ch == 'n' && (ctl_parse_u64(optarg, UINT64_MAX, &limit) || limit == 0))
            return ctl_usage(c, "--limit wants a positive number, not '%s'", optarg);
    }
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    f.now = ctl_now_ns();
    out_table(&c->o, NULL, timeout_cols, 6, 1);
    rc = list_sorted(c, &f, limit, 1, timeout_row);
    out_table_end(&c->o);
    return rc;
}

/* ------------------------------------------------------------ show, sdp */

/* Fetch a session for show/sdp: not found is exit 1, named. */
static int get_session(ctl *c, const shmreg_id *id, const char *text, shmreg_session *s)
{
    int rc = shmreg_session_get(c->h, id, s);
    if (rc == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "no session %s", text);
    return rc ? ctl_fail(c, rc, "cannot read session %s", text) : 0;
}

int cmd_show(ctl *c, int argc, char **argv)
{
    int rc;
    shmreg_id id;
    while (ctl_getopt(c, argc, argv, "", NULL) != -1)
        ;
    if ((rc = ctl_operands(c, argc, argv, 1, 1)) || (rc = ctl_parse_id(c, argv[optind], &id)) ||
        (rc = ctl_open(c)) || (rc = ctl_section_begin(c)))
        return rc;
    shmreg_session s;
    uint64_t now = ctl_now_ns();
    if ((rc = get_session(c, &id, argv[optind], &s))) {
        shmreg_read_end(c->h);
        return rc;
    }
    out *o = &c->o;
    out_obj_begin(o, NULL);
    ctl_session_fields(o, &s, now);
    for (int i = 0; i < SHMREG_FIELD_STR_COUNT; i++) {
        if (i == SHMREG_FIELD_APP_DATA)
            out_hex(o, field_key[i], s.str[i].ptr, s.str[i].len);
        else
            out_str(o, field_key[i], s.str[i].ptr, s.str[i].len);
    }
    out_u64(o, "local_rtp_port", s.local_rtp_port);
    out_u64(o, "remote_rtp_port", s.remote_rtp_port);
    out_i64(o, "owner_pid", s.owner_pid);
    if (s.owner_node) { /* many hosts: whose it is, and how far its owner has changed it */
        out_u64(o, "owner_node", s.owner_node);
        out_u64(o, "version", s.version);
        out_bool(o, "foreign", (s.flags & SHMREG_SESSION_FOREIGN) != 0);
        out_bool(o, "adopted", (s.flags & SHMREG_SESSION_ADOPTED) != 0);
    }
    out_u64(o, "config_gen", s.config_gen);
    out_obj_begin(o, "counters");
    for (int i = 0; i < SHMREG_CTR_COUNT; i++)
        out_u64(o, counter_key[i], s.counter[i]);
    out_obj_end(o);
    out_arr_begin(o, "dialogs");
    for (unsigned i = 0; i < s.ndialogs; i++) {
        shmreg_dialog d;
        if (shmreg_session_dialog(c->h, &id, i, &d) != 0)
            break; /* unbound meanwhile */
        out_obj_begin(o, NULL);
        out_str(o, "call_id", d.call_id.ptr, d.call_id.len);
        out_str(o, "local_tag", d.local_tag.ptr, d.local_tag.len);
        out_str(o, "remote_tag", d.remote_tag.ptr, d.remote_tag.len);
        out_obj_end(o);
    }
    out_arr_end(o);
    ctl_show_control(c, &s, now);
    out_block(o, "local_sdp", s.sdp[SHMREG_SDP_LOCAL].ptr, s.sdp[SHMREG_SDP_LOCAL].len);
    out_block(o, "remote_sdp", s.sdp[SHMREG_SDP_REMOTE].ptr, s.sdp[SHMREG_SDP_REMOTE].len);
    out_obj_end(o);
    out_doc_end(o);
    ctl_section_end(c);
    return CTL_OK;
}

int cmd_sdp(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"local", no_argument, NULL, 'l'},
        {"remote", no_argument, NULL, 'R'},
        {0},
    };
    int which = -1, ch, rc;
    shmreg_id id;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1) {
        int w = ch == 'l' ? SHMREG_SDP_LOCAL : SHMREG_SDP_REMOTE;
        if (which >= 0 && which != w)
            return ctl_usage(c, "give one of --local and --remote");
        which = w;
    }
    if (which < 0)
        return ctl_usage(c, "which SDP? give --local or --remote");
    if ((rc = ctl_operands(c, argc, argv, 1, 1)) || (rc = ctl_parse_id(c, argv[optind], &id)) ||
        (rc = ctl_open(c)) || (rc = ctl_section_begin(c)))
        return rc;
    shmreg_session s;
    if ((rc = get_session(c, &id, argv[optind], &s))) {
        shmreg_read_end(c->h);
        return rc;
    }
    out *o = &c->o;
    const shmreg_str *sdp = &s.sdp[which];
    if (c->json) {
        out_obj_begin(o, NULL);
        out_id(o, "id", &id);
        out_cstr(o, "which", which == SHMREG_SDP_LOCAL ? "local" : "remote");
        out_str(o, "sdp", sdp->ptr, sdp->len);
        out_obj_end(o);
        out_doc_end(o);
    } else {
        out_raw(o, sdp->ptr, sdp->len); /* copied out before the section ends */
    }
    ctl_section_end(c);
    return CTL_OK;
}

/* ------------------------------------------------------------ dialogs */

static const out_col dialog_cols[] = {
    {"session", "SESSION", 36, 0, 0},
    {"call_id", "CALL-ID", 36, 1, 0},
    {"local_tag", "LOCAL-TAG", 16, 1, 0},
    {"remote_tag", "REMOTE-TAG", 0, 0, 0},
};

static int dialog_next(shmreg *h, uint64_t *cur, void *d) { return shmreg_dialog_next(h, cur, d); }

static void dialog_row(out *o, const void *entry, void *arg)
{
    const shmreg_dialog *d = entry;
    (void)arg;
    out_row_begin(o);
    out_id(o, "session", &d->session);
    out_str(o, "call_id", d->call_id.ptr, d->call_id.len);
    out_str(o, "local_tag", d->local_tag.ptr, d->local_tag.len);
    out_str(o, "remote_tag", d->remote_tag.ptr, d->remote_tag.len);
    out_row_end(o);
}

int cmd_dialogs(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 0, 0)))
        return rc;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_table(o, "dialogs", dialog_cols, 4, 0);
    shmreg_dialog d;
    int walk;
    if ((rc = ctl_walk(c, dialog_next, &d, SECTION_READS, SECTION_BYTES, dialog_row, NULL, &walk)))
        return rc;
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    return walk == SHMREG_ENOENT || walk == 0 ? CTL_OK : ctl_fail(c, walk, "cannot walk the dialogs");
}

int cmd_dialog_find(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 2, 3)))
        return rc;
    const char *cid = argv[optind], *ltag = argv[optind + 1];
    const char *rtag = argc - optind > 2 ? argv[optind + 2] : NULL;
    shmreg_str k[3] = {{cid, strlen(cid)}, {ltag, strlen(ltag)}, {rtag, rtag ? strlen(rtag) : 0}};
    shmreg_id id;
    rc = shmreg_dialog_find(c->h, k[0], k[1], k[2], &id);
    if (rc == SHMREG_ENOENT) {
        char e[3][256];
        for (int i = 0; i < 3; i++)
            out_escape_human(e[i], sizeof e[i], k[i].ptr ? k[i].ptr : "", k[i].len);
        return ctl_err(c, CTL_PROBLEM, "no dialog with Call-ID '%s', local tag '%s'%s%s%s", e[0],
                       e[1], rtag ? ", remote tag '" : " (any remote tag)", rtag ? e[2] : "",
                       rtag ? "'" : "");
    }
    if (rc)
        return ctl_fail(c, rc, "cannot look up the dialog");
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_id(o, "session", &id);
    out_str(o, "call_id", k[0].ptr, k[0].len);
    out_str(o, "local_tag", k[1].ptr, k[1].len);
    if (rtag)
        out_str(o, "remote_tag", k[2].ptr, k[2].len);
    else
        out_null(o, "remote_tag");
    out_obj_end(o);
    out_doc_end(o);
    return CTL_OK;
}

/* ------------------------------------------------------------ gc */

typedef struct gc_rule {
    uint64_t idle, final_older; /* ns; UINT64_MAX: rule not given */
    uint64_t now;
} gc_rule;

static int gc_due(const gc_rule *r, const shmreg_session *s)
{
    uint64_t idle = since(r->now, s->updated_ns);
    return (r->idle != UINT64_MAX && idle > r->idle) ||
           (r->final_older != UINT64_MAX && shmreg_state_is_final(s->state) &&
            idle > r->final_older);
}

static const out_col gc_cols[] = {
    {"id", "REMOVED", 36, 0, 0},
    {"state", "STATE", 12, 0, 0},
    {"age_ns", "AGE", 7, 0, 1},
    {"idle_ns", "IDLE", 7, 0, 1},
};

#define GC_BATCH 512u

int cmd_gc(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"idle", required_argument, NULL, 'i'},
        {"final-older", required_argument, NULL, 'f'},
        {"dry-run", no_argument, NULL, 'n'},
        {0},
    };
    gc_rule rule = {UINT64_MAX, UINT64_MAX, 0};
    int dry = 0, ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n", lo)) != -1) {
        if (ch == 'n') {
            dry = 1;
        } else if (ctl_parse_dur(optarg, ch == 'i' ? &rule.idle : &rule.final_older)) {
            return ctl_usage(c, "--%s wants a duration (30, 1.5s, 10m, 2h, 1d), not '%s'",
                             ch == 'i' ? "idle" : "final-older", optarg);
        }
    }
    if (rule.idle == UINT64_MAX && rule.final_older == UINT64_MAX)
        return ctl_usage(c, "give --idle SECONDS or --final-older SECONDS");
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    rule.now = ctl_now_ns();

    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_table(o, "removed", gc_cols, 4, 0);
    /* Collect a batch in a read section, then delete outside it: a delete
     * is a write and the walk must stay a short reader. Each candidate is
     * looked at again right before its delete. */
    shmreg_id batch[GC_BATCH];
    uint64_t cur = 0, removed = 0;
    shmreg_session s;
    int walk = 0;
    while (walk == 0 && !ctl_stop && !o->broken) {
        unsigned n = 0;
        if ((rc = ctl_section_begin(c)))
            return rc;
        for (unsigned reads = 0; n < GC_BATCH && reads < SECTION_SCAN; reads++) {
            if ((walk = shmreg_session_next(c->h, &cur, SHMREG_STATE_ANY, &s)) != 0)
                break;
            if (gc_due(&rule, &s))
                batch[n++] = s.id;
        }
        shmreg_read_end(c->h);
        for (unsigned i = 0; i < n; i++) {
            if ((rc = ctl_section_begin(c)))
                return rc;
            int due = shmreg_session_get(c->h, &batch[i], &s) == 0 && gc_due(&rule, &s);
            shmreg_read_end(c->h);
            if (!due)
                continue;
            int drc = dry ? 0 : shmreg_session_delete(c->h, &batch[i]);
            if (drc == SHMREG_ENOENT)
                continue; /* deleted by someone else meanwhile */
            if (drc) {
                char text[SHMREG_ID_TEXT_LEN + 1];
                shmreg_id_format(&batch[i], text);
                out_flush(o);
                return ctl_fail(c, drc, "cannot delete session %s", text);
            }
            removed++;
            out_row_begin(o);
            ctl_session_fields(o, &s, rule.now);
            out_row_end(o);
        }
        out_flush(o);
    }
    if (walk != SHMREG_ENOENT && walk != 0)
        return ctl_fail(c, walk, "cannot walk the sessions");
    if (ctl_stop)
        return CTL_INTR;
    out_table_end(o);
    out_u64(o, "removed_count", removed);
    out_bool(o, "dry_run", dry);
    out_obj_end(o);
    out_doc_end(o);
    return CTL_OK;
}
