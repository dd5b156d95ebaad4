/*
 * ctl_config.c — `shmregctl config list | get | set | load | dump`:
 * values set from the command line read back exactly (raw for people,
 * typed in JSON), dump is the canonical text that load reads back,
 * bad input changes nothing and names the line and column, and reading
 * a registry that has no configs creates nothing.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl_run.h"
#include "shmreg.h"
#include "testutil.h"

static const char *dir;

static void test_empty(void)
{
    ctl_res r;
    char settings[512];
    snprintf(settings, sizeof settings, "%s/config.settings", dir);
    is(ctl(&r, "-r", dir, "config", "list", "--json", NULL), 0, "config list of a registry without configs");
    is_str(jd(&r, "d"), "{\"configs\": [], \"gen\": 0}", "nothing, generation 0");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", NULL), 1, "config get of a missing config: exit 1");
    char want[512];
    snprintf(want, sizeof want, "shmregctl: %s: no config 'media'\n", dir);
    is_str(r.err, want, "named on stderr");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "dump", "media", NULL), 1, "config dump of a missing config: exit 1");
    ctl_res_free(&r);
    ok(access(settings, F_OK) != 0, "reading created no LMDB environment");
}

static void test_set_get(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "config", "set", "media", "media.ptime", "30", "--json", NULL), 0, "set an int: exit 0");
    is_str(jd(&r, "d"), "{\"config\": \"media\", \"gen\": 1, \"key\": \"media.ptime\"}", "the new generation");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "set", "media", "media.codecs", "[\"opus\", \"PCMU\"]", NULL), 0, "set a list");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "set", "app", "app.greeting", "\"hello \\\"you\\\"\\n\"", NULL), 0,
       "set a string with escapes");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "set", "media", "media.dtmf", "true", NULL), 0, "set a bool");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "config", "set", "media", "media.ptime", "\"x\"", NULL), 1,
       "a string for an int key: exit 1");
    ok(strstr(r.err, "SHMREG_EINVAL") != NULL, "refused with the cause (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "set", "media", "media.ptime", "3x", NULL), 1, "malformed value text: exit 1");
    ok(strstr(r.err, "SHMREG_EPARSE") && strstr(r.err, "column"), "the column is named (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "set", "media", "media.ptime", NULL), 2, "set without a value: exit 2");
    ctl_res_free(&r);

    is(ctl(&r, "-r", dir, "config", "get", "media", "media.ptime", NULL), 0, "get an int");
    is_str(r.out, "30\n", "printed as is");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", "media.codecs", NULL), 0, "get a list");
    is_str(r.out, "opus\nPCMU\n", "one item a line");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "app", "app.greeting", NULL), 0, "get a string");
    is_str(r.out, "hello \"you\"\n\n", "raw, unquoted, newline kept");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", "media.dtmf", NULL), 0, "get a bool");
    is_str(r.out, "true\n", "true");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", "media.codecs", "--json", NULL), 0, "get --json");
    is_str(jd(&r, "d"),
           "{\"config\": \"media\", \"gen\": 4, \"key\": \"media.codecs\", \"type\": \"list\", "
           "\"value\": [\"opus\", \"PCMU\"]}", "typed value, and the generation of the config's version");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", "media.agc", NULL), 1, "a key the config lacks: exit 1");
    char want[512];
    snprintf(want, sizeof want, "shmregctl: %s: config 'media' has no key 'media.agc'\n", dir);
    is_str(r.err, want, "named on stderr");
    ctl_res_free(&r);
}

static void test_dump_load(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "config", "dump", "media", NULL), 0, "dump: exit 0");
    is_str(r.out, "[media]\nptime = 30\ncodecs = [\"opus\", \"PCMU\"]\ndtmf = true\n", "the canonical text");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "media", NULL), 0, "get without a key is the dump");
    is_str(r.out, "[media]\nptime = 30\ncodecs = [\"opus\", \"PCMU\"]\ndtmf = true\n", "the same text");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "dump", "media", "--json", NULL), 0, "dump --json");
    is_str(jd(&r, "[d['config'], d['gen'], d['entries'], d['written_ns'] > 0]"),
           "[\"media\", 4, {\"media.codecs\": [\"opus\", \"PCMU\"], \"media.dtmf\": true, \"media.ptime\": 30}, true]",
           "every entry, typed");
    ctl_res_free(&r);

    static const char text[] = "top = 1\n\n[media]\nptime = 20\nmoh_path = \"/var/moh.wav\"\n\n"
                               "[sdp]\nrtcp-mux = \"\"\nfmtp = \"101 0-16\"\n";
    char file[512];
    snprintf(file, sizeof file, "%s.conf", test_dir("file"));
    FILE *f = fopen(file, "w");
    fputs(text, f);
    fclose(f);
    is(ctl(&r, "-r", dir, "config", "load", "call", file, NULL), 0, "load a file: exit 0");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "dump", "call", NULL), 0, "dump it back");
    is_str(r.out, text, "byte for byte the canonical text loaded");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "call", "sdp", NULL), 0, "get the SDP attributes");
    is_str(r.out, "rtcp-mux\nfmtp:101 0-16\n", "as the a= lines would carry them");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "call", "sdp", "--json", NULL), 0, "get them as JSON");
    is_str(jd(&r, "d['value']"),
           "[{\"name\": \"rtcp-mux\", \"value\": \"\"}, {\"name\": \"fmtp\", \"value\": \"101 0-16\"}]",
           "ordered name/value pairs");
    ctl_res_free(&r);

    char *in[] = {"-r", (char *)dir, "config", "load", "call", "-", NULL};
    is(ctl_runv(&r, "[media]\nptime = 40\nbogus line\n", in), 1, "load of bad text from stdin: exit 1");
    ok(strstr(r.err, "-: line 3, column") && strstr(r.err, "config 'call' not changed"),
       "the line and column are named (%s)", r.err);
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "get", "call", "media.ptime", NULL), 0, "the config is intact");
    is_str(r.out, "20\n", "old value");
    ctl_res_free(&r);
    is(ctl_runv(&r, "[media]\nptime = 40\n", in), 0, "load from stdin");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "dump", "call", NULL), 0, "and dump");
    is_str(r.out, "[media]\nptime = 40\n", "replaced as a whole");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "load", "call", "/nonexistent/file", NULL), 1, "a file that is not there: exit 1");
    ok(strstr(r.err, "cannot read /nonexistent/file: No such file") != NULL, "named (%s)", r.err);
    ctl_res_free(&r);
}

static void test_list(void)
{
    ctl_res r;
    is(ctl(&r, "-r", dir, "config", "list", "--json", NULL), 0, "config list --json");
    is_str(jd(&r, "[d['gen']] + [[c['name'], c['gen'], c['entries']] for c in d['configs']]"),
           "[6, [\"app\", 3, 1], [\"call\", 6, 1], [\"media\", 4, 3]]",
           "each config in name order, its generation and size");
    ctl_res_free(&r);
    is(ctl(&r, "-r", dir, "config", "list", NULL), 0, "config list for people");
    char want[128];
    snprintf(want, sizeof want, "%-24s  %6d  %7d  ", "media", 4, 3);
    ok(strncmp(line_with(r.out, "media "), want, strlen(want)) == 0, "aligned columns (%s)",
       line_with(r.out, "media "));
    ctl_res_free(&r);
}

int main(void)
{
    dir = strdup(test_dir("cfg"));
    ctl_res r;
    if (ctl(&r, "-r", dir, "create", "--sessions", "16", NULL) != 0)
        bail_out("create: %s", r.err);
    ctl_res_free(&r);
    test_empty();
    test_set_get();
    test_dump_load();
    test_list();
    free((void *)dir);
    return done_testing();
}
