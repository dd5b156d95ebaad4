/*
 * shmregctl.c — the admin CLI's front door: global options, the command
 * table, option parsing shared by every command, error reporting and exit
 * codes, and the parsers of option values.
 *
 * Each command is one function (in the topical files) that parses its own
 * options with ctl_getopt(), which adds the options every command takes
 * (-r PATH, --json, --help), so `shmregctl list -r /x --json` and
 * `shmregctl -r /x --json list` mean the same. Two-word commands
 * ("config get", "dialog find") are entries of the same table.
 *
 * Exit codes are decided in one place per kind of failure: ctl_open()
 * (3: the registry cannot be opened), ctl_usage() (2), ctl_fail() (1),
 * so that scripts can rely on them (see shmregctl(1)).
 *
 * SIGINT and SIGTERM set ctl_stop instead of killing the tool: a tool
 * killed inside a read section leaves a dead handle behind that pins
 * retired memory until someone reaps it. Loops check the flag between
 * read sections and the handle is closed on the way out. SIGPIPE is
 * ignored for the same reason; a closed stdout ends the command quietly.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "shmregctl.h"

volatile sig_atomic_t ctl_stop;
volatile sig_atomic_t ctl_exit_on_signal;

static const ctl_cmd commands[] = {
    {"create", cmd_create, "[--sessions N] [--bytes SIZE] [--handles N] [--group NAME] [--node N]",
     "Create a registry (as a master process does) and detach.\n"
     "  --sessions N     session table size (default 65536)\n"
     "  --bytes SIZE     heap for strings, SDPs and dialogs; K, M, G suffixes\n"
     "                   (default 8 KiB per session)\n"
     "  --handles N      processes attached at once (default 256)\n"
     "  --group NAME     share with group NAME: directory 0770, files 0660\n"
     "  --node N         its node ID (1..65535) among hosts that mirror each other\n"
     "                   through shmreg-sync --redis (default: none, a single host)\n"},
    {"destroy", cmd_destroy, "[--force]",
     "Remove a registry. Refused while live processes are attached.\n"
     "  --force          remove it anyway\n"},
    {"stat", cmd_stat, "",
     "Capacity and use, counts by call state, handles, oldest read section,\n"
     "event ring, config generations. Warns on stderr above 90 % of a capacity.\n"},
    {"list", cmd_list,
     "[--state LIST] [--min-age DUR] [--idle DUR] [--from TEXT] [--to TEXT]\n"
     "                 [--user USER | --from-user USER | --to-user USER] [--limit N] [--reverse]",
     "Sessions sorted by creation time (oldest first), in constant memory.\n"
     "  --state LIST     only these states (comma-separated names)\n"
     "  --min-age DUR    created at least DUR ago (30, 1.5s, 10m, 2h, 1d)\n"
     "  --idle DUR       not updated for at least DUR\n"
     "  --from TEXT      From URI contains TEXT\n"
     "  --to TEXT        To URI contains TEXT\n"
     "  --user USER      the calls of USER (user@host or a SIP URI) by From or To,\n"
     "                   found through the user index, not a scan\n"
     "  --from-user USER the same, by From only\n"
     "  --to-user USER   the same, by To only\n"
     "  --limit N        at most N sessions\n"
     "  --reverse        newest first\n"},
    {"show", cmd_show, "ID",
     "Every field of one session, its counters, its dialogs, its timeout,\n"
     "its profiles and its variables.\n"},
    {"timeouts", cmd_timeouts, "[--limit N] [--state LIST]",
     "Sessions with a timeout armed, the soonest due first: deadline, how far\n"
     "away (or how long overdue), action.\n"
     "  --limit N        at most N sessions (default 20)\n"
     "  --state LIST     only these states (comma-separated names)\n"},
    {"timeout", cmd_timeout, "ID DUR [--notify [--grace DUR]] | ID --off",
     "Arm (replace) the timeout of a session, DUR from now: the next sweep moves it\n"
     "to Failed, or with --notify hands it to the sweeping process.\n"
     "  --notify         hand it over instead (a SIP server then sends BYE)\n"
     "  --grace DUR      with --notify: re-armed to fail DUR after the hand-over\n"
     "  --off            disarm\n"},
    {"expire", cmd_expire, "[--max N]",
     "Run one sweep now: fire up to N due timeouts (default 1000) and print them.\n"
     "Sessions with the notify action are handed to this command, which can only\n"
     "print them: their timeout events are what the application sees.\n"
     "  --max N          at most N sessions (1..100000)\n"},
    {"profiles", cmd_profiles, "",
     "Every profile in use: how many values it has, how many members in all.\n"},
    {"profile", cmd_profile, "NAME [VALUE] [--top N]",
     "The values of profile NAME with their member counts; with VALUE, its count\n"
     "and its members. A profile or value nobody is in lists empty (exit 0).\n"
     "  --top N          the N values with most members, largest first\n"},
    {"profile-join", cmd_profile_join, "ID PROFILE [VALUE] [--limit N]",
     "Make a session a member of PROFILE (= VALUE): with --limit, only if the\n"
     "members then are at most N (else exit 1, nothing changed). Prints the count.\n"
     "  --limit N        admission limit\n"},
    {"profile-leave", cmd_profile_leave, "ID PROFILE [VALUE]",
     "End the membership of a session in PROFILE (= VALUE). Prints the count.\n"},
    {"var", cmd_var, "ID KEY [VALUE] | ID KEY --unset",
     "A session variable: without VALUE its value (raw; exit 1 if unset), with\n"
     "VALUE set it.\n"
     "  --unset          remove it\n"},
    {"sdp", cmd_sdp, "ID --local|--remote",
     "The raw SDP of a session to stdout, byte for byte.\n"
     "  --local          the local SDP\n"
     "  --remote         the remote SDP\n"},
    {"dialogs", cmd_dialogs, "", "Every dialog: its key and its session.\n"},
    {"dialog find", cmd_dialog_find, "CALLID LOCALTAG [REMOTETAG]",
     "The session of a dialog; without REMOTETAG, an early-dialog lookup.\n"},
    {"config list", cmd_config_list, "", "Configs with their generation and size.\n"},
    {"config get", cmd_config_get, "NAME [KEY]",
     "One value of a config (strings raw, lists one item a line), or without\n"
     "KEY the whole config (as dump).\n"},
    {"config set", cmd_config_set, "NAME KEY VALUE",
     "Set one key; VALUE in the config text syntax: \"text\", 42, true, [\"a\", \"b\"].\n"},
    {"config load", cmd_config_load, "NAME FILE",
     "Replace config NAME by the text in FILE (- for stdin), atomically.\n"},
    {"config dump", cmd_config_dump, "NAME", "The canonical text of a config.\n"},
    {"events", cmd_events, "[--follow] [--types LIST] [--session ID] [--count N] [--timeout DUR]",
     "Events as they are published.\n"
     "  --follow         go on until interrupted (like tail -f)\n"
     "  --types LIST     only these types (comma-separated, e.g. state_changed)\n"
     "  --session ID     only events of this session\n"
     "  --count N        stop after N events\n"
     "  --timeout DUR    without --follow: how long to listen (default 1s)\n"},
    {"check", cmd_check, "[--repair]",
     "Full consistency check of the segment and the configs. Exit 1 on a problem.\n"
     "  --repair         reclaim leaked blocks, clear handles of dead processes\n"},
    {"handles", cmd_handles, "[--reap]",
     "Attached processes and their read sections.\n"
     "  --reap           first clear the handles of dead processes\n"},
    {"gc", cmd_gc, "--idle DUR | --final-older DUR [--dry-run]",
     "Delete sessions idle for longer than DUR, or in a final state\n"
     "(Terminated, Cancelled, Failed) for longer than DUR.\n"
     "  --idle DUR         not updated for longer than DUR\n"
     "  --final-older DUR  final and not updated for longer than DUR\n"
     "  --dry-run          print what would be removed, remove nothing\n"},
    {"metrics", cmd_metrics, "[--profile-top N]",
     "The stat figures in Prometheus text format, and profile members per\n"
     "profile and per value (of each profile only its N largest values).\n"
     "  --profile-top N  values shown per profile (default 10; 0: totals only)\n"},
    {"rooms", cmd_rooms, "", "Conference rooms: state, participants, name.\n"},
    {"room", cmd_room, "ID", "One room and its roster, with each participant's status.\n"},
    {"restore", cmd_restore, "--from DIR [--all] [--force] [--if-created] [--sessions N] [--bytes SIZE] [--handles N]",
     "Rebuild the registry from a sync directory written by shmreg-sync (creating\n"
     "the registry, with the create options given, if it does not exist). Sessions\n"
     "keep their IDs and every field; they are flagged restored.\n"
     "  --from DIR       the sync directory\n"
     "  --all            also early (Initiating, Ringing), Terminating and finished\n"
     "                   calls; default: Active, OnHold, Transferring only\n"
     "  --force          restore into a registry that already has sessions\n"
     "  --if-created     only when this command creates the registry: one that\n"
     "                   survived (a warm restart) is left alone, exit 0\n"},
    {"sync status", cmd_sync_status, "[--lmdb DIR]",
     "The shmreg-sync daemon following the registry: its pid, the ring position it\n"
     "has made durable, how many events it is behind, its last commit; with --lmdb,\n"
     "what the sync directory holds. Exit 1 when no daemon follows the registry.\n"
     "  --lmdb DIR       also read the sync directory DIR\n"},
    {"node adopt", cmd_node_adopt, "NODE",
     "Ask this host's shmreg-sync to adopt dead node NODE's calls now, without\n"
     "waiting for its lease to run out. The daemon takes the node in one atomic\n"
     "step in Redis: of hosts asked at once, exactly one wins; the others keep\n"
     "copies owned by the winner.\n"},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: shmregctl [-r PATH] [--json] COMMAND [ARGS]\n"
               "       shmregctl --version\n\n"
               "The registry is -r PATH, or $SHMREG_PATH.\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *nl = strchr(commands[i].synopsis, '\n');
        int n = nl ? (int)(nl - commands[i].synopsis) : (int)strlen(commands[i].synopsis);
        fprintf(f, "  %s%s%.*s%s\n", commands[i].name, n ? " " : "", n, commands[i].synopsis,
                nl ? " ..." : "");
    }
    fprintf(f, "\n`shmregctl COMMAND --help` describes a command; see shmregctl(1).\n"
               "Exit status: 0 ok, 1 problem found or not found, 2 usage, "
               "3 cannot open the registry.\n");
}

static void cmd_help(const ctl_cmd *cmd)
{
    printf("usage: shmregctl %s%s%s\n\n%s", cmd->name, *cmd->synopsis ? " " : "", cmd->synopsis,
           cmd->help);
    printf("\nCommon options: -r PATH (or $SHMREG_PATH), --json, --help.\n");
}

/* ------------------------------------------------------------ errors */

int ctl_err(ctl *c, int code, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", c->prog);
    if (c->path)
        fprintf(stderr, "%s: ", c->path);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return code;
}

int ctl_fail(ctl *c, int rc, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *detail = shmreg_errmsg();
    if (detail && *detail)
        ctl_err(c, 0, "%s: %s (%s)", what, shmreg_strerror(rc), detail);
    else
        ctl_err(c, 0, "%s: %s", what, shmreg_strerror(rc));
    return CTL_PROBLEM;
}

int ctl_usage(ctl *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s%s%s: ", c->prog, c->cmd ? " " : "", c->cmd ? c->cmd->name : "");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'shmregctl %s%s--help'.\n", c->cmd ? c->cmd->name : "",
            c->cmd ? " " : "");
    return CTL_USAGE;
}

int ctl_operands(ctl *c, int argc, char **argv, int min, int max)
{
    int n = argc - optind;
    if (n < min)
        return ctl_usage(c, "missing operand (usage: shmregctl %s %s)", c->cmd->name,
                         c->cmd->synopsis);
    if (n > max)
        return ctl_usage(c, "unexpected operand '%s'", argv[optind + max]);
    return 0;
}

int ctl_simple(ctl *c, int argc, char **argv, int min, int max)
{
    while (ctl_getopt(c, argc, argv, "", NULL) != -1)
        ;
    int rc = ctl_operands(c, argc, argv, min, max);
    return rc ? rc : ctl_open(c);
}

int ctl_create_option(ctl *c, int ch, shmreg_options *opt)
{
    uint64_t v;
    switch (ch) {
    case 's':
        if (ctl_parse_u64(optarg, UINT32_MAX, &v) || v == 0)
            return ctl_usage(c, "--sessions wants a positive number, not '%s'", optarg);
        opt->max_sessions = (uint32_t)v;
        return 1;
    case 'b':
        if (ctl_parse_size(optarg, &v) || v == 0)
            return ctl_usage(c, "--bytes wants a size such as 4096, 64M or 2G, not '%s'", optarg);
        opt->heap_bytes = v;
        return 1;
    case 'H':
        if (ctl_parse_u64(optarg, SHMREG_MAX_HANDLES, &v) || v == 0)
            return ctl_usage(c, "--handles wants 1..%u, not '%s'", SHMREG_MAX_HANDLES, optarg);
        opt->max_handles = (uint32_t)v;
        return 1;
    case 'g':
        opt->group = optarg;
        return 1;
    case 'N':
        if (ctl_parse_u64(optarg, SHMREG_NODE_MAX, &v) || v == 0)
            return ctl_usage(c, "--node wants a node ID 1..%u, not '%s'", SHMREG_NODE_MAX, optarg);
        opt->node_id = (uint32_t)v;
        return 1;
    default:
        return 0;
    }
}

int ctl_open(ctl *c)
{
    if (!c->path || !*c->path)
        return ctl_usage(c, "no registry given: use -r PATH or set SHMREG_PATH");
    int rc = shmreg_open(c->path, NULL, &c->h);
    if (rc == 0)
        return CTL_OK;
    c->h = NULL;
    ctl_fail(c, rc, "cannot open registry");
    return CTL_NOOPEN;
}

/* ------------------------------------------------------------ options */

int ctl_getopt(ctl *c, int argc, char **argv, const char *shortopts, const struct option *own)
{
    static struct option all[48];
    static char shorts[64];
    size_t n = 0;
    for (; own && own[n].name && n < 40; n++)
        all[n] = own[n];
    all[n++] = (struct option){"json", no_argument, NULL, 'J'};
    all[n++] = (struct option){"help", no_argument, NULL, 'h'};
    all[n++] = (struct option){"registry", required_argument, NULL, 'r'};
    all[n] = (struct option){0};
    snprintf(shorts, sizeof shorts, ":hr:%s", shortopts ? shortopts : "");

    for (;;) {
        int prev = optind ? optind : 1;
        int ch = getopt_long(argc, argv, shorts, all, NULL);
        switch (ch) {
        case 'J':
            c->json = 1;
            c->o.json = 1;
            continue;
        case 'r':
            c->path = optarg;
            continue;
        case 'h':
            cmd_help(c->cmd);
            exit(CTL_OK);
        case ':':
            exit(ctl_usage(c, "option '%s' needs a value", argv[prev < argc ? prev : argc - 1]));
        case '?':
            if (optopt)
                exit(ctl_usage(c, "unknown option '-%c'", optopt));
            exit(ctl_usage(c, "unknown option '%s'", argv[optind - 1]));
        default:
            return ch;
        }
    }
}

/* ------------------------------------------------------------ value parsers */

int ctl_parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int ctl_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    else if (!shift && strcmp(end, "B") == 0)
        end++;
    if (*end || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

int ctl_parse_dur(const char *s, uint64_t *ns)
{
    char *end;
    if (!s || !((*s >= '0' && *s <= '9') || *s == '.'))
        return -1;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return -1;
    double unit = 1e9;
    if (strcmp(end, "ms") == 0)
        unit = 1e6;
    else if (strcmp(end, "s") == 0 || *end == 0)
        unit = 1e9;
    else if (strcmp(end, "m") == 0)
        unit = 60e9;
    else if (strcmp(end, "h") == 0)
        unit = 3600e9;
    else if (strcmp(end, "d") == 0)
        unit = 86400e9;
    else
        return -1;
    double x = v * unit;
    if (!(x < 1.8e19))
        return -1;
    *ns = (uint64_t)x;
    return 0;
}

int ctl_parse_id(ctl *c, const char *s, shmreg_id *id)
{
    if (shmreg_id_parse(s, strlen(s), id) != 0)
        return ctl_usage(c, "not a session ID: '%s' (expected 8-4-4-4-12 hex digits)", s);
    return 0;
}

int ctl_parse_states(const char *s, uint32_t *mask)
{
    char buf[256];
    if (snprintf(buf, sizeof buf, "%s", s) >= (int)sizeof buf)
        return -1;
    uint32_t m = 0;
    char *save = NULL;
    for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int st;
        if (shmreg_state_parse(t, &st) != 0 || st == SHMREG_STATE_ANY)
            return -1;
        m |= 1u << st;
    }
    if (!m)
        return -1;
    *mask = m;
    return 0;
}

uint64_t ctl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t ctl_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int ctl_configs_exist(const ctl *c)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s/config.settings", c->path) >= (int)sizeof p)
        return 0;
    return access(p, F_OK) == 0;
}

/* ------------------------------------------------------------ main */

static void on_signal(int sig)
{
    (void)sig;
    ctl_stop = 1;
    if (ctl_exit_on_signal) {
        static const char msg[] = "shmregctl: interrupted; the registry is as a crash would "
                                  "leave it (run check again)\n";
        ssize_t n = write(2, msg, sizeof msg - 1);
        (void)n;
        _exit(CTL_INTR);
    }
}

static const ctl_cmd *find_command(int argc, char **argv, int *words)
{
    if (argc < 1)
        return NULL;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        const char *name = commands[i].name, *sp = strchr(name, ' ');
        if (!sp && strcmp(name, argv[0]) == 0) {
            *words = 1;
            return &commands[i];
        }
        if (sp && argc >= 2 && strncmp(name, argv[0], (size_t)(sp - name)) == 0 &&
            argv[0][sp - name] == 0 && strcmp(sp + 1, argv[1]) == 0) {
            *words = 2;
            return &commands[i];
        }
    }
    return NULL;
}

/* "config" or "dialog" without a valid subcommand: list the valid ones. */
static int group_usage(ctl *c, const char *group, const char *sub)
{
    size_t gl = strlen(group);
    fprintf(stderr, "%s: %s%s%s: ", c->prog, group, sub ? " " : "", sub ? sub : "");
    fprintf(stderr, "%s; one of:\n", sub ? "unknown subcommand" : "missing subcommand");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strncmp(commands[i].name, group, gl) == 0 && commands[i].name[gl] == ' ')
            fprintf(stderr, "  shmregctl %s %s\n", commands[i].name, commands[i].synopsis);
    return CTL_USAGE;
}

int main(int argc, char **argv)
{
    ctl c = {.prog = "shmregctl", .path = getenv("SHMREG_PATH")};
    out_init(&c.o, 0);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    static const struct option global[] = {
        {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'},
        {"registry", required_argument, NULL, 'r'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "+:hr:", global, NULL)) != -1) {
        switch (ch) {
        case 'J': c.json = 1; c.o.json = 1; break;
        case 'r': c.path = optarg; break;
        case 'h': usage(stdout); return CTL_OK;
        case 'V':
            /* The library that runs may be newer than the header we were
             * built with: a bug report wants both. */
            printf("shmregctl built with %s\nlibrary %s\n", SHMREG_VERSION_STRING,
                   shmreg_version(NULL, NULL, NULL));
            return CTL_OK;
        case ':':
            fprintf(stderr, "shmregctl: option '%s' needs a value\n", argv[optind - 1]);
            usage(stderr);
            return CTL_USAGE;
        default:
            fprintf(stderr, "shmregctl: unknown option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return CTL_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return CTL_USAGE;
    }
    int words = 0;
    char **cargv = argv + optind;
    int cargc = argc - optind;
    const ctl_cmd *cmd = find_command(cargc, cargv, &words);
    if (!cmd) {
        if (strcmp(cargv[0], "config") == 0 || strcmp(cargv[0], "dialog") == 0)
            return group_usage(&c, cargv[0], cargc > 1 ? cargv[1] : NULL);
        if (strcmp(cargv[0], "help") == 0) {
            usage(stdout);
            return CTL_OK;
        }
        fprintf(stderr, "shmregctl: unknown command '%s'\n", cargv[0]);
        usage(stderr);
        return CTL_USAGE;
    }
    c.cmd = cmd;
    /* The command sees its name as argv[0] and its arguments after it. */
    cargv += words - 1;
    cargc -= words - 1;
    optind = 0; /* GNU getopt: reinitialize for the command's own parse */
    opterr = 0;

    int rc = cmd->fn(&c, cargc, cargv);

    out_flush(&c.o);
    if (c.h)
        shmreg_close(c.h);
    if (c.o.werr && c.o.werr != EPIPE) {
        ctl_err(&c, 0, "cannot write output: %s", strerror(c.o.werr));
        if (rc == CTL_OK)
            rc = CTL_PROBLEM;
    }
    out_free(&c.o);
    if (ctl_stop && rc == CTL_OK && strcmp(cmd->name, "events") != 0)
        rc = CTL_INTR;
    return rc;
}
