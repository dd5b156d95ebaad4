/*
 * abi.c — the binary contract, checked against the built artefacts: the
 * shared library exports exactly the functions the headers declare (no
 * internal symbol, all under the version node SHMREG_1.0), its SONAME is
 * the header's MAJOR, shmreg_version() agrees with the macros, public
 * structs keep the sizes the 1.x ABI froze, and the library writes every
 * byte of the structs it fills (reserved tails and spare array capacity
 * included), so a later MINOR can give those bytes a meaning.
 *
 * Why against the real files: a visibility slip or a struct that grew by
 * accident compiles and links fine everywhere; only looking at the .so and
 * at sizeof catches it before a user's binary does.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

#define MAX_SYMS 512

typedef struct {
    char *name[MAX_SYMS];
    int n;
} symset;

static void add(symset *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return;
    if (s->n == MAX_SYMS)
        bail_out("more than %d symbols", MAX_SYMS);
    s->name[s->n++] = strdup(name);
}

static int has(const symset *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return 1;
    return 0;
}

/* Run `cmd` and hand each output line to fn. Returns the exit status. */
static int each_line(const char *cmd, void (*fn)(const char *line, void *arg), void *arg)
{
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        bail_out("popen %s: %s", cmd, strerror(errno));
    char line[1024];
    while (fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        fn(line, arg);
    }
    return pclose(p);
}

typedef struct {
    symset exported;
    int bad;          /* exported but not shmreg_<letter> nor the node */
    int unversioned;  /* exported shmreg_ symbols outside SHMREG_1.0 */
} exports;

/* nm -D line: "ADDR T name@@SHMREG_1.0" (or "ADDR A SHMREG_1.0"). */
static void nm_line(const char *line, void *arg)
{
    exports *e = arg;
    char addr[64], kind[8], sym[256];
    if (sscanf(line, "%63s %7s %255s", addr, kind, sym) != 3)
        return;
    char *at = strstr(sym, "@@");
    if (strcmp(sym, "SHMREG_1.0") == 0)
        return;
    if (at == NULL || strcmp(at + 2, "SHMREG_1.0") != 0)
        e->unversioned++;
    if (at)
        *at = 0;
    if (strncmp(sym, "shmreg_", 7) != 0 || sym[7] < 'a' || sym[7] > 'z') {
        diag("internal symbol exported: %s", sym);
        e->bad++;
    }
    add(&e->exported, sym);
}

/* Function declarations in the header: a line that starts with a type (not
 * a comment, macro or typedef) and names shmreg_xxx( . */
static void header_functions(const char *path, symset *out)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        bail_out("cannot open %s: %s", path, strerror(errno));
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (line[0] < 'a' || line[0] > 'z' || strncmp(line, "typedef", 7) == 0)
            continue;
        char *p = strstr(line, "shmreg_");
        if (p == NULL || (p > line && p[-1] != ' ' && p[-1] != '*'))
            continue;
        size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
        if (p[n] != '(')
            continue;
        p[n] = 0;
        add(out, p);
    }
    fclose(f);
}

static void soname_line(const char *line, void *arg)
{
    const char *s = strstr(line, "Library soname: [");
    if (s)
        snprintf(arg, 128, "%.*s", (int)strcspn(s + 17, "]"), s + 17);
}

static void test_exports(void)
{
    char so[PATH_MAX + 64], cmd[PATH_MAX + 128], hdr[PATH_MAX + 64];
    snprintf(so, sizeof so, "%s/libshmreg.so.%d", test_build_dir(), SHMREG_VERSION_MAJOR);
    if (access(so, R_OK) != 0)
        bail_out("no shared library at %s (run make first)", so);
    exports e = {0};
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
    is(each_line(cmd, nm_line, &e), 0, "nm -D runs on %s", so);
    is(e.bad, 0, "every exported symbol is shmreg_<letter>...: nothing internal");
    is(e.unversioned, 0, "every exported symbol belongs to the version node SHMREG_1.0");

    /* shmreg.h and the half of the API it includes: together they must
     * declare every export. */
    symset declared = {0};
    static const char *const headers[] = { "shmreg.h", "shmreg_config.h", "shmreg_sync.h" };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        int before = declared.n;
        snprintf(hdr, sizeof hdr, "%s/../../registry/%s", test_build_dir(), headers[i]);
        header_functions(hdr, &declared);
        ok(declared.n - before > (i == 2 ? 10 : 20), "%s declares %d functions", headers[i],
           declared.n - before);
    }
    int missing = 0, extra = 0;
    for (int i = 0; i < declared.n; i++)
        if (!has(&e.exported, declared.name[i]))
            diag("declared, not exported: %s", declared.name[i]), missing++;
    for (int i = 0; i < e.exported.n; i++)
        if (!has(&declared, e.exported.name[i]))
            diag("exported, not declared: %s", e.exported.name[i]), extra++;
    is(missing, 0, "every declared function is exported");
    is(extra, 0, "every exported function is declared in shmreg.h, shmreg_config.h or shmreg_sync.h");
    is(e.exported.n, declared.n, "exports and declarations match one to one (%d)", declared.n);

    char soname[128] = "", want[64];
    snprintf(cmd, sizeof cmd, "readelf -d '%s'", so);
    each_line(cmd, soname_line, soname);
    snprintf(want, sizeof want, "libshmreg.so.%d", SHMREG_VERSION_MAJOR);
    is_str(soname, want, "SONAME is libshmreg.so.MAJOR");
    for (int i = 0; i < declared.n; i++)
        free(declared.name[i]);
    for (int i = 0; i < e.exported.n; i++)
        free(e.exported.name[i]);
}

static void test_version(void)
{
    int a = -1, b = -1, c = -1;
    const char *v = shmreg_version(&a, &b, &c);
    is(a, SHMREG_VERSION_MAJOR, "shmreg_version: major");
    is(b, SHMREG_VERSION_MINOR, "shmreg_version: minor");
    is(c, SHMREG_VERSION_PATCH, "shmreg_version: patch");
    is_str(v, SHMREG_VERSION_STRING, "shmreg_version: the string");
    ok(shmreg_version(NULL, NULL, NULL) == v, "NULL outputs are allowed");
    is(SHMREG_VERSION, (1 << 24) | (0 << 16) | 0, "SHMREG_VERSION packs 1.0.0");
    char prefix[64];
    snprintf(prefix, sizeof prefix, "shmreg %d.%d.%d:", a, b, c);
    ok(strncmp(v, prefix, strlen(prefix)) == 0, "the string starts with '%s'", prefix);
}

/* The sizes the 1.x ABI froze (LP64). A change here breaks every program
 * built against 1.0: carve new fields from `reserved` instead. */
static void test_sizes(void)
{
    if (sizeof(void *) != 8) {
        skip(17, "sizes are frozen for LP64 only");
        return;
    }
    is(sizeof(shmreg_options), 104, "sizeof shmreg_options");
    is(sizeof(shmreg_fields), 296, "sizeof shmreg_fields");
    /* sdp was carved from the head of the reserved tail (264..295). */
    is(offsetof(shmreg_fields, sdp), 264, "shmreg_fields.sdp where reserved[0] was");
    is(offsetof(shmreg_fields, reserved), 272, "shmreg_fields.reserved after it");
    is(sizeof(shmreg_session), 488, "sizeof shmreg_session");
    is(sizeof(shmreg_dialog), 96, "sizeof shmreg_dialog");
    is(sizeof(shmreg_stats), 248, "sizeof shmreg_stats");
    is(sizeof(shmreg_handle_info), 72, "sizeof shmreg_handle_info");
    is(sizeof(shmreg_check_report), 144, "sizeof shmreg_check_report");
    is(sizeof(shmreg_room), 96, "sizeof shmreg_room");
    is(sizeof(shmreg_participant), 104, "sizeof shmreg_participant");
    is(sizeof(shmreg_event), 136, "sizeof shmreg_event");
    /* version was carved from the head of the reserved tail (104..135). */
    is(offsetof(shmreg_event, version), 104, "shmreg_event.version where reserved[0] was");
    is(offsetof(shmreg_event, reserved), 112, "shmreg_event.reserved after it");
    is(sizeof(shmreg_sub_stats), 72, "sizeof shmreg_sub_stats");
    is(sizeof(shmreg_config_value), 72, "sizeof shmreg_config_value");
    is(sizeof(shmreg_config_media), 80, "sizeof shmreg_config_media");
    is(sizeof(shmreg_config_options), 80, "sizeof shmreg_config_options");
    is(sizeof(shmreg_config_info), 64, "sizeof shmreg_config_info");
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i])
            return 0;
    return 1;
}

#define S(lit) ((shmreg_str){ (lit), sizeof(lit) - 1 })

/* Fill the output with 0xa5 first: whatever the library leaves unwritten
 * shows up as non-zero. */
static void test_tails_written(void)
{
    shmreg_options o = {.flags = SHMREG_CREATE | SHMREG_EXCL, .max_sessions = 64};
    shmreg *h = NULL;
    const char *path = test_dir("abi");
    int rc = shmreg_open(path, &o, &h);
    if (rc)
        bail_out("open %s: %s", shmreg_strerror(rc), shmreg_errmsg());
    shmreg_fields f = {.str[SHMREG_FIELD_FROM_URI] = S("sip:a@example.com")};
    /* Spare capacity on input is ignored, whatever it holds. */
    f.str[SHMREG_FIELD_STR_MAX - 1] = S("ignored");
    shmreg_id id;
    is(shmreg_session_create(h, &f, &id), 0, "create with a spare str[] entry set");
    is(shmreg_dialog_bind(h, S("cid"), S("lt"), S("rt"), &id), 0, "bind a dialog");
    shmreg_id room;
    is(shmreg_room_create(h, S("conf"), 4, &room), 0, "create a room");
    is(shmreg_room_join(h, &room, &id, S("sip:a@example.com"), S("A"), 4000), 0, "join it");

    is(shmreg_read_begin(h), 0, "read_begin");
    shmreg_session s;
    memset(&s, 0xa5, sizeof s);
    is(shmreg_session_get(h, &id, &s), 0, "session_get");
    ok(all_zero(&s.str[SHMREG_FIELD_STR_COUNT],
                sizeof s.str - SHMREG_FIELD_STR_COUNT * sizeof s.str[0]),
       "session: str[] past the field count is written empty");
    ok(all_zero(&s.counter[SHMREG_CTR_COUNT],
                sizeof s.counter - SHMREG_CTR_COUNT * sizeof s.counter[0]),
       "session: counter[] past the counter count is written 0");
    ok(all_zero(s.reserved, sizeof s.reserved), "session: reserved tail written 0");
    uint64_t cur = 0;
    memset(&s, 0xa5, sizeof s);
    is(shmreg_session_next(h, &cur, SHMREG_STATE_ANY, &s), 0, "session_next");
    ok(all_zero(s.reserved, sizeof s.reserved), "session_next: reserved tail written 0");

    shmreg_dialog d;
    memset(&d, 0xa5, sizeof d);
    is(shmreg_session_dialog(h, &id, 0, &d), 0, "session_dialog");
    ok(all_zero(d.reserved, sizeof d.reserved), "dialog: reserved tail written 0");
    shmreg_room r;
    memset(&r, 0xa5, sizeof r);
    is(shmreg_room_get(h, &room, &r), 0, "room_get");
    ok(all_zero(r.reserved, sizeof r.reserved), "room: reserved tail written 0");
    shmreg_participant pt;
    memset(&pt, 0xa5, sizeof pt);
    cur = 0;
    is(shmreg_participant_next(h, &room, &cur, &pt), 0, "participant_next");
    ok(all_zero(pt.reserved, sizeof pt.reserved), "participant: reserved tail written 0");
    is(shmreg_read_end(h), 0, "read_end");

    shmreg_stats st;
    memset(&st, 0xa5, sizeof st);
    is(shmreg_stat(h, &st), 0, "stat");
    ok(all_zero(st.reserved, sizeof st.reserved), "stats: reserved tail written 0");
    shmreg_handle_info hi;
    memset(&hi, 0xa5, sizeof hi);
    cur = 0;
    is(shmreg_handle_next(h, &cur, &hi), 0, "handle_next");
    ok(all_zero(hi.reserved, sizeof hi.reserved), "handle info: reserved tail written 0");
    shmreg_check_report cr;
    memset(&cr, 0xa5, sizeof cr);
    is(shmreg_check(h, 0, &cr, NULL, NULL, NULL), 0, "check");
    ok(all_zero(cr.reserved, sizeof cr.reserved), "check report: reserved tail written 0");

    shmreg_sub *sub = NULL;
    is(shmreg_subscribe(h, SHMREG_EV_ALL, NULL, &sub), 0, "subscribe");
    is(shmreg_publish(h, &id, "x", 1), 0, "publish");
    shmreg_event ev;
    memset(&ev, 0xa5, sizeof ev);
    is(shmreg_poll(sub, &ev, 1, 0, NULL), 1, "poll one event");
    ok(all_zero(ev.reserved, sizeof ev.reserved), "event: reserved tail written 0");
    shmreg_sub_stats ss;
    memset(&ss, 0xa5, sizeof ss);
    is(shmreg_sub_stats_get(sub, &ss), 0, "sub_stats_get");
    ok(all_zero(ss.reserved, sizeof ss.reserved), "sub stats: reserved tail written 0");
    shmreg_unsubscribe(sub);

    is(shmreg_config_load_text(h, "media", "[media]\nptime = 20\n", 19), 0, "load a config");
    shmreg_config_view *v = NULL;
    is(shmreg_config_open_view(h, "media", &v), 0, "open a view");
    shmreg_config_info ci;
    memset(&ci, 0xa5, sizeof ci);
    is(shmreg_config_view_info(v, &ci), 0, "view_info");
    ok(all_zero(ci.reserved, sizeof ci.reserved), "config info: reserved tail written 0");
    shmreg_config_media m;
    memset(&m, 0xa5, sizeof m);
    is(shmreg_config_media_get(v, &m), 0, "media_get");
    ok(all_zero(m.reserved, sizeof m.reserved), "config media: reserved tail written 0");
    shmreg_config_value cv;
    memset(&cv, 0xa5, sizeof cv);
    is(shmreg_config_get(v, "media.ptime", &cv), 0, "config_get");
    ok(all_zero(cv.reserved, sizeof cv.reserved), "config value: reserved tail written 0");
    is(shmreg_config_release(v), 0, "release the view");

    /* Counts take their length: shorter and longer arrays both work. */
    uint64_t few[2] = {99, 99}, many[SHMREG_STATE_COUNT + 3];
    memset(many, 0xa5, sizeof many);
    is(shmreg_session_counts(h, few, 2), 0, "counts into 2 entries");
    is(few[0], 1, "counts[0]: 1 session in all");
    is(few[1], 1, "counts[1]: 1 Initiating");
    is(shmreg_session_counts(h, many, SHMREG_STATE_COUNT + 3), 0, "counts into more entries");
    ok(all_zero(&many[SHMREG_STATE_COUNT], 3 * sizeof many[0]), "entries past the states are 0");
    is(shmreg_session_counts(h, few, 0), SHMREG_EINVAL, "counts with n 0: EINVAL");
    is(shmreg_session_counts(h, NULL, 2), SHMREG_EINVAL, "counts with NULL: EINVAL");

    is(shmreg_close(h), 0, "close");
    test_rm_rf(path);
}

int main(void)
{
    test_version();
    test_exports();
    test_sizes();
    test_tails_written();
    return done_testing();
}
