/*
 * shmregctl_config.c — config list | get | set | load | dump.
 *
 * Configs live in the registry's LMDB environment; the library opens it
 * lazily and, on first use, records its settings in the registry
 * directory (`config.settings`). The read commands here look for that
 * file first and, when there is none, report "no configs" without
 * creating anything: reading must not change the registry. set and load
 * create the environment as any writer would.
 *
 * Views are LMDB read transactions (MVCC): they never block the admin's
 * or anybody's writes, and everything printed from one view is one
 * version of the config. For people, `get NAME KEY` prints the value
 * raw (strings as they are, lists one item a line), which is what shell
 * scripts want; `dump` prints the canonical text that `load` reads back.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmregctl.h"

#define MAX_FILE_BYTES (4u * SHMREG_CONFIG_MAX_BYTES)

static const char *type_name(int type)
{
    switch (type) {
    case SHMREG_CONFIG_STR: return "string";
    case SHMREG_CONFIG_INT: return "int";
    case SHMREG_CONFIG_BOOL: return "bool";
    case SHMREG_CONFIG_LIST: return "list";
    case SHMREG_CONFIG_PAIRS: return "pairs";
    }
    return "unknown";
}

/* A value as JSON (and nested records for people): lists are arrays of
 * strings, the SDP attributes an array of {name, value}. */
static void out_value(out *o, const char *key, const shmreg_config_value *v)
{
    shmreg_str a, b;
    switch (v->type) {
    case SHMREG_CONFIG_STR:
        out_str(o, key, v->str.ptr, v->str.len);
        break;
    case SHMREG_CONFIG_INT:
        out_i64(o, key, v->num);
        break;
    case SHMREG_CONFIG_BOOL:
        out_bool(o, key, (int)v->num);
        break;
    case SHMREG_CONFIG_LIST:
        out_arr_begin(o, key);
        for (uint32_t i = 0; i < v->count && shmreg_config_item(v, i, &a) == 0; i++)
            out_str(o, NULL, a.ptr, a.len);
        out_arr_end(o);
        break;
    case SHMREG_CONFIG_PAIRS:
        out_arr_begin(o, key);
        for (uint32_t i = 0; i < v->count && shmreg_config_pair(v, i, &a, &b) == 0; i++) {
            out_obj_begin(o, NULL);
            out_str(o, "name", a.ptr, a.len);
            out_str(o, "value", b.ptr, b.len);
            out_obj_end(o);
        }
        out_arr_end(o);
        break;
    default:
        out_null(o, key);
    }
}

/* For people: the value raw, one line per item. */
static void out_value_raw(out *o, const shmreg_config_value *v)
{
    char num[32];
    shmreg_str a, b;
    switch (v->type) {
    case SHMREG_CONFIG_STR:
        out_raw(o, v->str.ptr, v->str.len);
        out_raw(o, "\n", 1);
        break;
    case SHMREG_CONFIG_INT:
        out_raw(o, num, (size_t)snprintf(num, sizeof num, "%lld\n", (long long)v->num));
        break;
    case SHMREG_CONFIG_BOOL:
        out_raw(o, v->num ? "true\n" : "false\n", v->num ? 5 : 6);
        break;
    case SHMREG_CONFIG_LIST:
        for (uint32_t i = 0; i < v->count && shmreg_config_item(v, i, &a) == 0; i++) {
            out_raw(o, a.ptr, a.len);
            out_raw(o, "\n", 1);
        }
        break;
    case SHMREG_CONFIG_PAIRS: /* as the SDP line would have it, without "a=" */
        for (uint32_t i = 0; i < v->count && shmreg_config_pair(v, i, &a, &b) == 0; i++) {
            out_raw(o, a.ptr, a.len);
            if (b.len) {
                out_raw(o, ":", 1);
                out_raw(o, b.ptr, b.len);
            }
            out_raw(o, "\n", 1);
        }
        break;
    }
}

/* Open a view of config `name` for a read command. */
static int open_view(ctl *c, const char *name, shmreg_config_view **v)
{
    int rc = ctl_configs_exist(c) ? shmreg_config_open_view(c->h, name, v) : SHMREG_ENOENT;
    if (rc == SHMREG_ENOENT)
        return ctl_err(c, CTL_PROBLEM, "no config '%s'", name);
    return rc ? ctl_fail(c, rc, "cannot read config '%s'", name) : 0;
}

/* ------------------------------------------------------------ list */

static const out_col config_cols[] = {
    {"name", "NAME", 24, 0, 0},
    {"gen", "GEN", 6, 0, 1},
    {"entries", "ENTRIES", 7, 0, 1},
    {"bytes", "BYTES", 8, 0, 1},
    {"written_ns", "WRITTEN", 0, 0, 0},
};

static int list_cb(void *arg, shmreg_str name, uint64_t gen)
{
    ctl *c = arg;
    char buf[SHMREG_CONFIG_MAX_NAME + 1];
    size_t n = name.len < SHMREG_CONFIG_MAX_NAME ? name.len : SHMREG_CONFIG_MAX_NAME;
    memcpy(buf, name.ptr, n);
    buf[n] = 0;
    out *o = &c->o;
    out_row_begin(o);
    out_str(o, "name", name.ptr, name.len);
    out_u64(o, "gen", gen);
    shmreg_config_view *v;
    shmreg_config_info info;
    /* Deleted since the listing's snapshot: listed without details. */
    if (shmreg_config_open_view(c->h, buf, &v) == 0) {
        if (shmreg_config_view_info(v, &info) == 0) {
            out_u64(o, "entries", info.entries);
            out_u64(o, "bytes", info.bytes);
            out_time(o, "written_ns", info.written_ns);
        }
        shmreg_config_release(v);
    }
    out_row_end(o);
    return 0;
}

int cmd_config_list(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 0, 0)))
        return rc;
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_u64(o, "gen", shmreg_config_gen(c->h));
    out_table(o, "configs", config_cols, 5, 0);
    rc = ctl_configs_exist(c) ? shmreg_config_list(c->h, list_cb, c) : 0;
    out_table_end(o);
    out_obj_end(o);
    out_doc_end(o);
    return rc ? ctl_fail(c, rc, "cannot list configs") : CTL_OK;
}

/* ------------------------------------------------------------ get, dump */

static int raw_writer(void *arg, const char *buf, size_t len)
{
    out_raw(arg, buf, len);
    return 0;
}

/* A whole config: canonical text for people, an object for JSON. */
static int whole(ctl *c, const char *name)
{
    shmreg_config_view *v;
    int rc = open_view(c, name, &v);
    if (rc)
        return rc;
    out *o = &c->o;
    if (!c->json) {
        rc = shmreg_config_view_dump(v, raw_writer, o);
    } else {
        shmreg_config_info info = {0};
        shmreg_config_view_info(v, &info);
        out_obj_begin(o, NULL);
        out_cstr(o, "config", name);
        out_u64(o, "gen", info.gen);
        out_time(o, "written_ns", info.written_ns);
        out_obj_begin(o, "entries");
        uint32_t cur = 0;
        shmreg_str key;
        shmreg_config_value val;
        char k[SHMREG_CONFIG_MAX_KEY + 1];
        while ((rc = shmreg_config_next(v, &cur, &key, &val)) == 0) {
            size_t n = key.len < SHMREG_CONFIG_MAX_KEY ? key.len : SHMREG_CONFIG_MAX_KEY;
            memcpy(k, key.ptr, n);
            k[n] = 0;
            out_value(o, k, &val);
        }
        out_obj_end(o);
        out_obj_end(o);
        out_doc_end(o);
        if (rc == SHMREG_ENOENT)
            rc = 0;
    }
    shmreg_config_release(v);
    return rc ? ctl_fail(c, rc, "cannot read config '%s'", name) : CTL_OK;
}

int cmd_config_dump(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 1, 1)))
        return rc;
    return whole(c, argv[optind]);
}

int cmd_config_get(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 1, 2)))
        return rc;
    const char *name = argv[optind];
    if (argc - optind == 1)
        return whole(c, name);
    const char *key = argv[optind + 1];
    shmreg_config_view *v;
    if ((rc = open_view(c, name, &v)))
        return rc;
    shmreg_config_value val;
    rc = shmreg_config_get(v, key, &val);
    if (rc == 0) {
        out *o = &c->o;
        if (c->json) {
            shmreg_config_info info = {0};
            shmreg_config_view_info(v, &info);
            out_obj_begin(o, NULL);
            out_cstr(o, "config", name);
            out_u64(o, "gen", info.gen);
            out_cstr(o, "key", key);
            out_cstr(o, "type", type_name(val.type));
            out_value(o, "value", &val);
            out_obj_end(o);
            out_doc_end(o);
        } else {
            out_value_raw(o, &val);
        }
    }
    shmreg_config_release(v);
    if (rc == SHMREG_ENOENT || rc == SHMREG_EINVAL)
        return ctl_err(c, CTL_PROBLEM, "config '%s' has no key '%s'", name, key);
    return rc ? ctl_fail(c, rc, "cannot read config '%s'", name) : CTL_OK;
}

/* ------------------------------------------------------------ set, load */

static void written(ctl *c, const char *name, const char *key)
{
    out *o = &c->o;
    out_obj_begin(o, NULL);
    out_cstr(o, "config", name);
    if (key)
        out_cstr(o, "key", key);
    out_u64(o, "gen", shmreg_config_gen(c->h));
    out_obj_end(o);
    out_doc_end(o);
}

int cmd_config_set(ctl *c, int argc, char **argv)
{
    int rc;
    if ((rc = ctl_simple(c, argc, argv, 3, 3)))
        return rc;
    const char *name = argv[optind], *key = argv[optind + 1], *value = argv[optind + 2];
    if ((rc = shmreg_config_set(c->h, name, key, value)))
        return ctl_fail(c, rc, "cannot set %s in config '%s'", key, name);
    written(c, name, key);
    return CTL_OK;
}

/* The whole of FILE (or stdin for "-"), bounded. */
static int read_file(ctl *c, const char *file, char **text, size_t *len)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (!f)
        return ctl_err(c, CTL_PROBLEM, "cannot read %s: %s", file, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    int rc = CTL_OK;
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_FILE_BYTES) {
                rc = ctl_err(c, CTL_PROBLEM, "%s: larger than %u bytes", file, MAX_FILE_BYTES);
                break;
            }
            char *p = realloc(buf, cap *= 2);
            if (!p)
                break;
            buf = p;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f))
                rc = ctl_err(c, CTL_PROBLEM, "cannot read %s: %s", file, strerror(errno));
            break;
        }
    }
    if (f != stdin)
        fclose(f);
    if (!buf && rc == CTL_OK)
        rc = ctl_err(c, CTL_PROBLEM, "out of memory");
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf;
    *len = n;
    return CTL_OK;
}

int cmd_config_load(ctl *c, int argc, char **argv)
{
    int rc;
    while (ctl_getopt(c, argc, argv, "", NULL) != -1)
        ;
    if ((rc = ctl_operands(c, argc, argv, 2, 2)))
        return rc;
    const char *name = argv[optind], *file = argv[optind + 1];
    char *text = NULL;
    size_t len = 0;
    if ((rc = read_file(c, file, &text, &len)))
        return rc;
    if ((rc = ctl_open(c))) {
        free(text);
        return rc;
    }
    rc = shmreg_config_load_text(c->h, name, text, len);
    free(text);
    if (rc == SHMREG_EPARSE)
        return ctl_err(c, CTL_PROBLEM, "%s: %s; config '%s' not changed", file, shmreg_errmsg(), name);
    if (rc)
        return ctl_fail(c, rc, "cannot load %s into config '%s'", file, name);
    written(c, name, NULL);
    return CTL_OK;
}
