/*
 * shmregctl_control.c — call control: profiles and their members,
 * timeouts and the sweep, session variables; and what show, stat and
 * metrics say about them.
 *
 * Read commands (profiles, profile) walk the profile index with
 * shmreg_profile_next() in short read sections, as every walk of the
 * tool does (ctl_walk). A count is the library's, derived from
 * membership: the tool never adds counts of its own up, except the sums
 * over a profile's values. Aggregates (profiles, the top values of
 * metrics) are kept per profile name, and per profile at most `top`
 * values: memory grows with the number of profile names, never with the
 * number of values or members.
 *
 * Write commands (profile-join, profile-leave, timeout, expire, var) are
 * for operators and scripts: each is one library call, its outcome
 * printed; they do what a worker would, with the same atomicity.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmregctl.h"

#define PAIRS_PER_SECTION 256u
#define SESSIONS_PER_SECTION 4096u
#define MEMBERS_PER_SECTION 256u
#define EXPIRE_DEFAULT 1000u
#define EXPIRE_MAX 100000u

/* ------------------------------------------------------------ shared fields */

const char *ctl_timeout_action(uint32_t flags)
{
    return flags & SHMREG_TIMEOUT_NOTIFY ? "notify" : flags & SHMREG_TIMEOUT_FAIL ? "fail" : NULL;
}

void ctl_timeout_fields(out *o, const shmreg_session *s, uint64_t now)
{
    if (s->deadline_ns == 0) {
        out_null(o, "deadline_ns");
        out_null(o, "due_in_ns");
        out_null(o, "timeout_action");
        return;
    }
    out_time(o, "deadline_ns", s->deadline_ns);
    out_rel(o, "due_in_ns", (int64_t)(s->deadline_ns - now));
    out_cstr(o, "timeout_action", ctl_timeout_action(s->timeout_flags));
}

void ctl_show_control(ctl *c, const shmreg_session *s, uint64_t now)
{
    out *o = &c->o;
    shmreg_session_control sc;
    /* One consistent read of all of it; the session may be gone since. */
    int rc = shmreg_session_control_get(c->h, &s->id, &sc);
    if (rc)
        memset(&sc, 0, sizeof sc);
    ctl_timeout_fields(o, s, now);
    if (s->deadline_ns && sc.grace_ns)
        out_dur(o, "timeout_grace_ns", sc.grace_ns);
    out_arr_begin(o, "profiles");
    for (unsigned i = 0; i < sc.nprofiles && i < SHMREG_MAX_PROFILES_PER_SESSION; i++) {
        const shmreg_profile_entry *e = &sc.profile[i];
        out_obj_begin(o, NULL);
        out_str(o, "profile", e->profile.ptr, e->profile.len);
        out_str(o, "value", e->value.ptr, e->value.len);
        out_u64(o, "count", e->count);
        out_obj_end(o);
    }
    out_arr_end(o);
    out_arr_begin(o, "variables");
    for (unsigned i = 0; i < sc.nvars && i < SHMREG_MAX_VARS; i++) {
        out_obj_begin(o, NULL);
        out_str(o, "key", sc.var_key[i].ptr, sc.var_key[i].len);
        out_str(o, "value", sc.var_value[i].ptr, sc.var_value[i].len);
        out_obj_end(o);
    }
    out_arr_end(o);
}

/* ------------------------------------------------------------ operands */

/* A profile name, value or variable from the command line, checked
 * against the library's bounds (a usage error, exit 2). */
static int str_operand(ctl *c, const char *what, const char *s, size_t min, size_t max,
                       shmreg_str *out)
{
    size_t n = strlen(s);
    if (n < min || n > max)
        return ctl_usage(c, "%s of %zu bytes: %zu..%zu allowed", what, n, min, max);
    *out = (shmreg_str){s, n};
    return 0;
}

/* The profile and optional value operands at argv[i], argv[i + 1]. */
static int pair_operands(ctl *c, int argc, char **argv, int i, shmreg_str *p, shmreg_str *v)
{
    int rc = str_operand(c, "a profile name", argv[i], 1, SHMREG_MAX_PROFILE_NAME, p);
    *v = (shmreg_str){"", 0};
    if (rc == 0 && i + 1 < argc)
        rc = str_operand(c, "a profile value", argv[i + 1], 0, SHMREG_MAX_PROFILE_VALUE, v);
    return rc;
}

/* "trunk=carrier-a" (or "inbound" for the empty value), escaped for a
 * message on stderr. */
static const char *pair_text(shmreg_str p, shmreg_str v, char *buf, size_t cap)
{
    char a[4 * SHMREG_MAX_PROFILE_NAME + 1], b[4 * SHMREG_MAX_PROFILE_VALUE + 1];
    out_escape_human(a, sizeof a, p.ptr, p.len);
    out_escape_human(b, sizeof b, v.ptr, v.len);
    snprintf(buf, cap, "%s%s%s", a, v.len ? "=" : "", b);
    return buf;
}

/* ------------------------------------------------------------ collecting */

typedef struct pair_it {
    shmreg_str only;                /* ptr NULL: every profile */
    shmreg_profile_entry e;
} pair_it;

static int pair_next(shmreg *h, uint64_t *cur, void *p)
{
    pair_it *it = p;
    return shmreg_profile_next(h, it->only, cur, &it->e);
}

/* Is a worse than b for the top values: fewer members, or as many and
 * later in byte order (so the top is the same set on every run). */
static int pv_worse(const ctl_pvalue *a, const ctl_pvalue *b)
{
    if (a->count != b->count)
        return a->count < b->count;
    size_t n = a->len < b->len ? a->len : b->len;
    int d = memcmp(a->value, b->value, n);
    return d ? d > 0 : a->len > b->len;
}

static void pv_swap(ctl_pvalue *a, ctl_pvalue *b)
{
    ctl_pvalue t = *a;
    *a = *b;
    *b = t;
}

/* Offer a value to a profile's top: a min-heap (worst at the root) of at
 * most top entries. */
static void top_offer(ctl_profile *p, unsigned top, const ctl_pvalue *v)
{
    size_t i;
    if (p->ntop < top) {
        i = p->ntop++;
        p->top[i] = *v;
        while (i && pv_worse(&p->top[i], &p->top[(i - 1) / 2])) {
            pv_swap(&p->top[i], &p->top[(i - 1) / 2]);
            i = (i - 1) / 2;
        }
        return;
    }
    if (!pv_worse(&p->top[0], v))
        return;
    p->top[0] = *v;
    for (i = 0;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < p->ntop && pv_worse(&p->top[l], &p->top[m]))
            m = l;
        if (r < p->ntop && pv_worse(&p->top[r], &p->top[m]))
            m = r;
        if (m == i)
            break;
        pv_swap(&p->top[i], &p->top[m]);
        i = m;
    }
}

typedef struct collector {
    ctl_control *cc;
    size_t last;                    /* the profile the previous pair had */
    int oom;
} collector;

static ctl_profile *profile_slot(collector *k, shmreg_str name)
{
    ctl_control *cc = k->cc;
    if (k->last < cc->n && cc->p[k->last].len == name.len &&
        memcmp(cc->p[k->last].name, name.ptr, name.len) == 0)
        return &cc->p[k->last];
    for (size_t i = 0; i < cc->n; i++)
        if (cc->p[i].len == name.len && memcmp(cc->p[i].name, name.ptr, name.len) == 0)
            return &cc->p[k->last = i];
    if (cc->n == cc->cap) {
        size_t cap = cc->cap ? 2 * cc->cap : 16;
        ctl_profile *np = realloc(cc->p, cap * sizeof *np);
        if (!np)
            return NULL;
        cc->p = np;
        cc->cap = cap;
    }
    ctl_profile *p = &cc->p[cc->n];
    memset(p, 0, sizeof *p);
    if (cc->top && !(p->top = malloc(cc->top * sizeof *p->top)))
        return NULL;
    p->len = name.len < sizeof p->name ? name.len : sizeof p->name;
    memcpy(p->name, name.ptr, p->len);
    k->last = cc->n++;
    return p;
}

static void collect_pair(out *o, const void *entry, void *arg)
{
    const shmreg_profile_entry *e = &((const pair_it *)entry)->e;
    collector *k = arg;
    (void)o;
    ctl_profile *p = k->oom ? NULL : profile_slot(k, e->profile);
    if (!p) {
        k->oom = 1;
        return;
    }
    p->values++;
    p->members += e->count;
    if (k->cc->top) {
        ctl_pvalue v = {.count = e->count};
        v.len = e->value.len < sizeof v.value ? e->value.len : sizeof v.value;
        memcpy(v.value, e->value.ptr, v.len);
        top_offer(p, k->cc->top, &v);
    }
}

static int profile_cmp(const void *a, const void *b)
{
    const ctl_profile *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int d = memcmp(x->name, y->name, n);
    return d ? d : (x->len > y->len) - (x->len < y->len);
}

static int pv_cmp(const void *a, const void *b)
{
    return pv_worse(a, b) - pv_worse(b, a); /* best first */
}

static int count_armed(ctl *c, uint64_t *armed)
{
    uint64_t cur = 0;
    shmreg_session s;
    int rc = 0;
    while (rc == 0) {
        if ((rc = ctl_section_begin(c)))
            return rc;
        for (unsigned i = 0; i < SESSIONS_PER_SECTION; i++) {
            if ((rc = shmreg_session_next(c->h, &cur, SHMREG_STATE_ANY, &s)) != 0)
                break;
            *armed += s.deadline_ns != 0;
        }
        shmreg_read_end(c->h);
        if (ctl_stop)
            return CTL_INTR;
    }
    return rc == SHMREG_ENOENT ? 0 : ctl_fail(c, rc, "cannot walk the sessions");
}

int ctl_control_collect(ctl *c, ctl_control *cc, const shmreg_str *only, unsigned top,
                        int timeouts)
{
    memset(cc, 0, sizeof *cc);
    cc->top = top;
    collector k = {.cc = cc};
    pair_it it = {.only = only ? *only : (shmreg_str){NULL, 0}};
    int walk, rc = ctl_walk(c, pair_next, &it, PAIRS_PER_SECTION, 0, collect_pair, &k, &walk);
    if (rc)
        return rc;
    if (k.oom)
        return ctl_err(c, CTL_PROBLEM, "out of memory");
    if (walk != SHMREG_ENOENT && walk != 0)
        return ctl_fail(c, walk, "cannot walk the profiles");
    if (cc->n) /* qsort wants a pointer even for nothing */
        qsort(cc->p, cc->n, sizeof *cc->p, profile_cmp);
    for (size_t i = 0; i < cc->n && cc->top; i++)
        qsort(cc->p[i].top, cc->p[i].ntop, sizeof *cc->p[i].top, pv_cmp);
    return timeouts ? count_armed(c, &cc->timeouts_armed) : 0;
}

void ctl_control_free(ctl_control *cc)
{
    for (size_t i = 0; i < cc->n; i++)
        free(cc->p[i].top);
    free(cc->p);
    memset(cc, 0, sizeof *cc);
}

/* ------------------------------------------------------------ profiles, profile */

static const out_col profile_cols[] = {
    {"profile", "PROFILE", 32, 1, 0},
    {"values", "VALUES", 8, 0, 1},
    {"members", "MEMBERS", 8, 0, 1},
};

int cmd_profiles(ctl *c, int argc, char **argv)
{
    int rc;
    ctl_control cc;
    if ((rc = ctl_simple(c, argc, argv, 0, 0)) || (rc = ctl_control_collect(c, &cc, NULL, 0, 0)))
        return rc;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_table(o, "profiles", profile_cols, 3, 0);
    for (size_t i = 0; i < cc.n; i++) {
        out_row_begin(o);
        out_str(o, "profile", cc.p[i].name, cc.p[i].len);
        out_u64(o, "values", cc.p[i].values);
        out_u64(o, "members", cc.p[i].members);
        out_row_end(o);
    }
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    ctl_control_free(&cc);
    return CTL_OK;
}

static const out_col value_cols[] = {
    {"count", "COUNT", 8, 0, 1},
    {"value", "VALUE", 0, 0, 0},
};

static void value_row(out *o, const shmreg_str *value, uint64_t count)
{
    out_row_begin(o);
    out_str(o, "value", value->ptr, value->len);
    out_u64(o, "count", count);
    out_row_end(o);
}

typedef struct value_sums {
    uint64_t values, members;
} value_sums;

static void value_each(out *o, const void *entry, void *arg)
{
    const shmreg_profile_entry *e = &((const pair_it *)entry)->e;
    value_sums *t = arg;
    t->values++;
    t->members += e->count;
    value_row(o, &e->value, e->count);
}

static const out_col member_cols[] = {
    {"id", "ID", 36, 0, 0},
    {"state", "STATE", 12, 0, 0},
    {"age_ns", "AGE", 7, 0, 1},
    {"from_uri", "FROM", 30, 1, 0},
    {"to_uri", "TO", 0, 0, 0},
};

typedef struct member_it {
    shmreg_str profile, value;
    shmreg_id id;
    int have;                       /* s is the member's session (not gone meanwhile) */
    shmreg_session s;
    uint64_t now;
} member_it;

static int member_next(shmreg *h, uint64_t *cur, void *p)
{
    member_it *m = p;
    int rc = shmreg_profile_member_next(h, m->profile, m->value, cur, &m->id);
    if (rc == 0)
        m->have = shmreg_session_get(h, &m->id, &m->s) == 0;
    return rc;
}

static void member_row(out *o, const void *entry, void *arg)
{
    const member_it *m = entry;
    (void)arg;
    out_row_begin(o);
    if (m->have) {
        ctl_session_fields(o, &m->s, m->now);
        out_str(o, "from_uri", m->s.str[SHMREG_FIELD_FROM_URI].ptr, m->s.str[SHMREG_FIELD_FROM_URI].len);
        out_str(o, "to_uri", m->s.str[SHMREG_FIELD_TO_URI].ptr, m->s.str[SHMREG_FIELD_TO_URI].len);
    } else { /* deleted between the member walk and the lookup: its ID only */
        out_id(o, "id", &m->id);
        out_null(o, "state");
    }
    out_row_end(o);
}

/* profile NAME VALUE: the count, then every member. */
static int profile_members(ctl *c, shmreg_str p, shmreg_str v)
{
    out *o = &c->o;
    uint64_t count = 0;
    int walk, rc = shmreg_profile_count(c->h, p, v, &count);
    if (rc)
        return ctl_fail(c, rc, "cannot count the members");
    out_obj_begin(o, NULL);
    out_str(o, "profile", p.ptr, p.len);
    out_str(o, "value", v.ptr, v.len);
    out_u64(o, "count", count);
    out_table(o, "members", member_cols, 5, 0);
    member_it m = {.profile = p, .value = v, .now = ctl_now_ns()};
    if ((rc = ctl_walk(c, member_next, &m, MEMBERS_PER_SECTION, 0, member_row, NULL, &walk)))
        return rc;
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    return walk == SHMREG_ENOENT || walk == 0 ? CTL_OK : ctl_fail(c, walk, "cannot walk the members");
}

int cmd_profile(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"top", required_argument, NULL, 'n'}, {0}};
    uint64_t top = 0;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n:", lo)) != -1)
        if (ctl_parse_u64(optarg, 1u << 20, &top) || top == 0)
            return ctl_usage(c, "--top wants a number 1..%u, not '%s'", 1u << 20, optarg);
    shmreg_str p, v;
    if ((rc = ctl_operands(c, argc, argv, 1, 2)) ||
        (rc = pair_operands(c, argc, argv, optind, &p, &v)))
        return rc;
    if (top && argc - optind == 2)
        return ctl_usage(c, "--top lists the values of a profile: give no VALUE");
    if ((rc = ctl_open(c)))
        return rc;
    if (argc - optind == 2)
        return profile_members(c, p, v);

    out *o = &c->o;
    value_sums t = {0};
    ctl_control cc = {0};
    /* --top: the largest values, sorted (bounded memory); otherwise every
     * value, streamed in index order. */
    if (top && (rc = ctl_control_collect(c, &cc, &p, (unsigned)top, 0)))
        return rc;
    out_obj_begin(o, NULL);
    out_str(o, "profile", p.ptr, p.len);
    out_table(o, "values", value_cols, 2, 0);
    if (top) {
        for (unsigned i = 0; cc.n && i < cc.p[0].ntop; i++)
            value_row(o, &(shmreg_str){cc.p[0].top[i].value, cc.p[0].top[i].len}, cc.p[0].top[i].count);
        t.values = cc.n ? cc.p[0].values : 0;
        t.members = cc.n ? cc.p[0].members : 0;
        ctl_control_free(&cc);
    } else {
        pair_it it = {.only = p};
        int walk;
        if ((rc = ctl_walk(c, pair_next, &it, PAIRS_PER_SECTION, 0, value_each, &t, &walk)))
            return rc;
        if (walk != SHMREG_ENOENT && walk != 0)
            return ctl_fail(c, walk, "cannot walk the values");
    }
    out_table_end(o);
    out_u64(o, "value_count", t.values);
    out_u64(o, "members", t.members);
    out_obj_end(o);
    out_doc_end(o);
    return CTL_OK;
}

/* ------------------------------------------------------------ profile-join, -leave */

/* The ID operand, then the pair. */
static int id_pair(ctl *c, int argc, char **argv, shmreg_id *id, shmreg_str *p, shmreg_str *v)
{
    int rc;
    if ((rc = ctl_operands(c, argc, argv, 2, 3)) || (rc = ctl_parse_id(c, argv[optind], id)) ||
        (rc = pair_operands(c, argc, argv, optind + 1, p, v)))
        return rc;
    return ctl_open(c);
}

static void pair_result(ctl *c, const shmreg_id *id, shmreg_str p, shmreg_str v, uint64_t count,
                        uint32_t limit)
{
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_id(o, "id", id);
    out_str(o, "profile", p.ptr, p.len);
    out_str(o, "value", v.ptr, v.len);
    out_u64(o, "count", count);
    if (limit)
        out_u64(o, "limit", limit);
    else
        out_null(o, "limit");
    out_obj_end(o);
    out_doc_end(o);
}

int cmd_profile_join(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"limit", required_argument, NULL, 'n'}, {0}};
    uint64_t limit = 0, count = 0;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n:", lo)) != -1)
        if (ctl_parse_u64(optarg, UINT32_MAX, &limit) || limit == 0)
            return ctl_usage(c, "--limit wants a number 1..%u, not '%s'", UINT32_MAX, optarg);
    shmreg_id id;
    shmreg_str p, v;
    if ((rc = id_pair(c, argc, argv, &id, &p, &v)))
        return rc;
    char pt[4 * (SHMREG_MAX_PROFILE_NAME + SHMREG_MAX_PROFILE_VALUE) + 2];
    rc = shmreg_profile_join(c->h, &id, p, v, (uint32_t)limit, &count);
    if (rc == SHMREG_ELIMIT)
        return ctl_err(c, CTL_PROBLEM, "%s is at its limit: %" PRIu64 " members, limit %" PRIu64
                       "; not joined", pair_text(p, v, pt, sizeof pt), count, limit);
    if (rc == SHMREG_EEXIST)
        return ctl_err(c, CTL_PROBLEM, "session %s is in %s already", argv[optind],
                       pair_text(p, v, pt, sizeof pt));
    if (rc == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "no session %s", argv[optind]);
    if (rc)
        return ctl_fail(c, rc, "cannot join %s", pair_text(p, v, pt, sizeof pt));
    pair_result(c, &id, p, v, count, (uint32_t)limit);
    return CTL_OK;
}

int cmd_profile_leave(ctl *c, int argc, char **argv)
{
    shmreg_id id;
    shmreg_str p, v;
    uint64_t count = 0;
    int rc;
    while (ctl_getopt(c, argc, argv, "", NULL) != -1)
        ;
    if ((rc = id_pair(c, argc, argv, &id, &p, &v)))
        return rc;
    char pt[4 * (SHMREG_MAX_PROFILE_NAME + SHMREG_MAX_PROFILE_VALUE) + 2];
    if ((rc = shmreg_profile_leave(c->h, &id, p, v)))
        return ctl_fail(c, rc, "session %s cannot leave %s", argv[optind], pair_text(p, v, pt, sizeof pt));
    if ((rc = shmreg_profile_count(c->h, p, v, &count)))
        return ctl_fail(c, rc, "cannot count the members");
    pair_result(c, &id, p, v, count, 0);
    return CTL_OK;
}

/* ------------------------------------------------------------ timeout, expire */

int cmd_timeout(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {
        {"notify", no_argument, NULL, 'N'},
        {"grace", required_argument, NULL, 'g'},
        {"off", no_argument, NULL, 'o'},
        {0},
    };
    unsigned action = SHMREG_TIMEOUT_FAIL;
    uint64_t after = 0, grace = 0;
    int off = 0, has_grace = 0, ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "", lo)) != -1) {
        switch (ch) {
        case 'N': action = SHMREG_TIMEOUT_NOTIFY; break;
        case 'o': off = 1; break;
        case 'g':
            if (ctl_parse_dur(optarg, &grace))
                return ctl_usage(c, "--grace wants a duration (30, 1.5s, 10m), not '%s'", optarg);
            has_grace = 1;
            break;
        }
    }
    if ((rc = ctl_operands(c, argc, argv, off ? 1 : 2, off ? 1 : 2)))
        return rc;
    if (off && (action != SHMREG_TIMEOUT_FAIL || has_grace))
        return ctl_usage(c, "--off disarms: it takes no --notify or --grace");
    if (has_grace && action != SHMREG_TIMEOUT_NOTIFY)
        return ctl_usage(c, "--grace is for --notify (re-armed as fail that much later)");
    shmreg_id id;
    if ((rc = ctl_parse_id(c, argv[optind], &id)))
        return rc;
    if (!off && ctl_parse_dur(argv[optind + 1], &after))
        return ctl_usage(c, "a timeout is a duration (30, 1.5s, 10m, 2h), not '%s'", argv[optind + 1]);
    if ((rc = ctl_open(c)))
        return rc;
    rc = off ? shmreg_session_set_timeout(c->h, &id, 0, SHMREG_TIMEOUT_FAIL, 0)
             : shmreg_session_set_timeout(c->h, &id, after, action | SHMREG_TIMEOUT_RELATIVE, grace);
    if (rc == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "no session %s", argv[optind]);
    if (rc)
        return ctl_fail(c, rc, "cannot %s the timeout of %s", off ? "disarm" : "arm", argv[optind]);
    if ((rc = ctl_section_begin(c)))
        return rc;
    shmreg_session s;
    uint64_t now = ctl_now_ns();
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_id(o, "id", &id);
    if ((rc = shmreg_session_get(c->h, &id, &s)) == 0) { /* as it is now: a sweep may have fired it */
        out_cstr(o, "state", shmreg_state_name(s.state));
        ctl_timeout_fields(o, &s, now);
    }
    if (has_grace)
        out_dur(o, "grace_ns", grace);
    out_obj_end(o);
    out_doc_end(o);
    ctl_section_end(c);
    return CTL_OK;
}

static const out_col expired_cols[] = {
    {"id", "ID", 36, 0, 0},
    {"old_state", "WAS", 12, 0, 0},
    {"new_state", "NOW", 12, 0, 0},
    {"action", "ACTION", 6, 0, 0},
    {"deadline_ns", "DEADLINE", 0, 0, 0},
};

int cmd_expire(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"max", required_argument, NULL, 'n'}, {0}};
    uint64_t max = EXPIRE_DEFAULT;
    int ch, rc;
    while ((ch = ctl_getopt(c, argc, argv, "n:", lo)) != -1)
        if (ctl_parse_u64(optarg, EXPIRE_MAX, &max) || max == 0)
            return ctl_usage(c, "--max wants a number 1..%u, not '%s'", EXPIRE_MAX, optarg);
    if ((rc = ctl_operands(c, argc, argv, 0, 0)) || (rc = ctl_open(c)))
        return rc;
    shmreg_expired *x = malloc(max * sizeof *x);
    if (!x)
        return ctl_err(c, CTL_PROBLEM, "out of memory");
    int n = shmreg_expire(c->h, 0, x, (unsigned)max);
    if (n < 0) {
        free(x);
        return ctl_fail(c, n, "cannot sweep");
    }
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_table(o, "fired", expired_cols, 5, 0);
    for (int i = 0; i < n; i++) {
        out_row_begin(o);
        out_id(o, "id", &x[i].id);
        out_cstr(o, "old_state", shmreg_state_name(x[i].old_state));
        out_cstr(o, "new_state", shmreg_state_name(x[i].new_state));
        out_cstr(o, "action", ctl_timeout_action(x[i].action));
        out_time(o, "deadline_ns", x[i].deadline_ns);
        out_row_end(o);
    }
    out_table_end(o);
    out_u64(o, "fired_count", (uint64_t)n);
    out_bool(o, "more_due", (uint64_t)n == max);
    out_obj_end(o);
    out_doc_end(o);
    free(x);
    return CTL_OK;
}

/* ------------------------------------------------------------ var */

static void var_result(ctl *c, const shmreg_id *id, shmreg_str k, const shmreg_str *v)
{
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_id(o, "id", id);
    out_str(o, "key", k.ptr, k.len);
    if (v)
        out_str(o, "value", v->ptr, v->len);
    else
        out_null(o, "value");
    out_obj_end(o);
    out_doc_end(o);
}

/* var ID KEY: the value, raw for people (as config get). */
static int var_get(ctl *c, const shmreg_id *id, const char *idtext, shmreg_str k)
{
    int rc;
    if ((rc = ctl_section_begin(c)))
        return rc;
    shmreg_session s;
    shmreg_str v;
    int have = shmreg_session_get(c->h, id, &s);
    int got = have ? have : shmreg_session_var_get(c->h, id, k, &v);
    if (got == 0) {
        if (c->json) {
            var_result(c, id, k, &v);
        } else {
            out_raw(&c->o, v.ptr, v.len);
            out_raw(&c->o, "\n", 1);
        }
    }
    ctl_section_end(c);
    if (got == 0)
        return CTL_OK;
    char kt[4 * SHMREG_MAX_VAR_KEY + 1];
    out_escape_human(kt, sizeof kt, k.ptr, k.len);
    if (have == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "no session %s", idtext);
    if (got == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "session %s has no variable '%s'", idtext, kt);
    return ctl_fail(c, got, "cannot read variable '%s' of %s", kt, idtext);
}

int cmd_var(ctl *c, int argc, char **argv)
{
    static const struct option lo[] = {{"unset", no_argument, NULL, 'u'}, {0}};
    int unset = 0, rc;
    while (ctl_getopt(c, argc, argv, "", lo) != -1)
        unset = 1;
    shmreg_id id;
    shmreg_str k, v = {"", 0};
    if ((rc = ctl_operands(c, argc, argv, 2, unset ? 2 : 3)) ||
        (rc = ctl_parse_id(c, argv[optind], &id)) ||
        (rc = str_operand(c, "a variable name", argv[optind + 1], 1, SHMREG_MAX_VAR_KEY, &k)) ||
        (argc - optind == 3 &&
         (rc = str_operand(c, "a variable value", argv[optind + 2], 0, SHMREG_MAX_VAR_VALUE, &v))) ||
        (rc = ctl_open(c)))
        return rc;
    const char *idtext = argv[optind];
    char kt[4 * SHMREG_MAX_VAR_KEY + 1];
    out_escape_human(kt, sizeof kt, k.ptr, k.len);
    if (!unset && argc - optind == 2)
        return var_get(c, &id, idtext, k);
    rc = unset ? shmreg_session_var_unset(c->h, &id, k) : shmreg_session_var_set(c->h, &id, k, v);
    if (rc == SHMREG_ENOENT && !unset)
        return ctl_err(c, CTL_PROBLEM, "no session %s", idtext);
    if (rc)
        return ctl_fail(c, rc, "cannot %s variable '%s' of %s", unset ? "unset" : "set", kt, idtext);
    var_result(c, &id, k, unset ? NULL : &v);
    return CTL_OK;
}
