/*
 * coverage_config_env.c — where configs are stored is not trusted: a
 * config directory that is a symlink or a regular file, LMDB files that
 * are not regular files, a settings file that is garbage, out of range or
 * a symlink, and a map too small for what is written. Each is refused with
 * its documented code and nothing is written (the generation stays put);
 * a full map leaves the registry usable (what fits still goes in, a delete
 * makes room).
 *
 * Why: these are the refusals `make coverage` showed no test reaching; a
 * registry directory is shared with other processes and users of a group,
 * so each of them guards against a planted or damaged file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmreg.h"
#include "tap.h"
#include "testutil.h"

static char regdir[400], cfgdir[400];
static shmreg *h;

static void fresh(const char *name)
{
    snprintf(regdir, sizeof regdir, "%s", test_dir(name));
    if (shmreg_open(regdir, &(shmreg_options){.flags = SHMREG_CREATE, .max_sessions = 16}, &h))
        bail_out("open: %s", shmreg_errmsg());
    snprintf(cfgdir, sizeof cfgdir, "%s", test_dir("cfgdir"));
}

static void done(void)
{
    shmreg_close(h);
    shmreg_destroy(regdir, 1);
    test_rm_rf(cfgdir);
}

static int setup_dir(void)
{
    return shmreg_config_setup(h, &(shmreg_config_options){.dir = cfgdir});
}

static void write_file(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        bail_out("write %s", path);
    close(fd);
}

static void settings(const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/config.settings", regdir);
    write_file(p, text);
}

int main(void)
{
    char p[512], target[512];

    fresh("cfg-symlink");
    snprintf(target, sizeof target, "%s", test_dir("cfg-target"));
    if (mkdir(target, 0700) || symlink(target, cfgdir))
        bail_out("symlink");
    is(setup_dir(), SHMREG_EPERM, "a config directory that is a symlink: EPERM");
    is(shmreg_config_set(h, "a", "k", "1"), SHMREG_EPERM, "and every write after it: EPERM");
    unlink(cfgdir);
    test_rm_rf(target);
    done();

    fresh("cfg-file");
    write_file(cfgdir, "not a directory\n");
    is(setup_dir(), SHMREG_EPERM, "a config directory that is a regular file: EPERM");
    unlink(cfgdir);
    done();

    fresh("cfg-noparent");
    snprintf(cfgdir, sizeof cfgdir, "%s/missing/parent", test_dir("cfg-none"));
    is(setup_dir(), SHMREG_ESYS, "a config directory whose parent is missing: ESYS");
    done();

    fresh("cfg-datadir");
    if (mkdir(cfgdir, 0700))
        bail_out("mkdir");
    snprintf(p, sizeof p, "%s/data.mdb", cfgdir);
    if (mkdir(p, 0700))
        bail_out("mkdir");
    is(setup_dir(), SHMREG_EPERM, "data.mdb that is a directory: EPERM");
    rmdir(p);
    snprintf(p, sizeof p, "%s/lock.mdb", cfgdir);
    snprintf(target, sizeof target, "%s/elsewhere", cfgdir);
    write_file(target, "");
    if (symlink(target, p))
        bail_out("symlink");
    is(setup_dir(), SHMREG_EPERM, "lock.mdb that is a symlink: EPERM");
    done();

    /* The settings file records the first setup; a damaged one is
     * refused, not rewritten. */
    static const char *const bad[] = {
        "garbage\n",
        "shmreg-config-settings 1\nmap_bytes 0\n",
        "shmreg-config-settings 1\nmap_bytes 12\n",
        "shmreg-config-settings 1\nmap_bytes 1048576x\n",
        "shmreg-config-settings 1\nmap_bytes 1048576\ndir relative\n",
        "shmreg-config-settings 1\nmap_bytes 1048576\ndir /no/newline",
    };
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        fresh("cfg-settings");
        settings(bad[i]);
        is(shmreg_config_set(h, "a", "k", "1"), SHMREG_ECORRUPT, "a damaged settings file (%u): ECORRUPT", i);
        is(shmreg_config_gen(h), 0, "and nothing was written");
        done();
    }
    fresh("cfg-settings-link");
    snprintf(p, sizeof p, "%s/config.settings", regdir);
    snprintf(target, sizeof target, "%s/real", regdir);
    write_file(target, "shmreg-config-settings 1\nmap_bytes 1048576\n");
    if (symlink(target, p))
        bail_out("symlink");
    is(shmreg_config_set(h, "a", "k", "1"), SHMREG_EPERM, "a settings file that is a symlink: EPERM (O_NOFOLLOW)");
    done();

    fresh("cfg-slash");
    char slashed[512];
    snprintf(slashed, sizeof slashed, "%s/", cfgdir);
    is(shmreg_config_setup(h, &(shmreg_config_options){.dir = slashed}), 0, "a config dir with a trailing '/'");
    is(setup_dir(), 0, "is the same dir without it");
    snprintf(slashed, sizeof slashed, "%s-other", cfgdir);
    is(shmreg_config_setup(h, &(shmreg_config_options){.dir = slashed}), SHMREG_EEXIST,
       "another dir once set up: EEXIST");
    done();

    /* A full map: EFULL, nothing half written, and a delete makes room. */
    fresh("cfg-full");
    is(shmreg_config_setup(h, &(shmreg_config_options){.map_bytes = 1u << 20}), 0, "a 1 MiB config map");
    /* 60 strings of 4,000 bytes: about 240 KB a config. */
    static char val[SHMREG_CONFIG_MAX_VALUE];
    memset(val, 'v', 4000);
    shmreg_config_doc *d;
    shmreg_config_doc_new(&d);
    for (int k = 0; k < 60; k++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", k);
        shmreg_config_doc_set_str(d, key, (shmreg_str){val, 4000});
    }
    int n = 0, rc = 0;
    char name[32];
    while (n < 64) {
        snprintf(name, sizeof name, "c%d", n);
        if ((rc = shmreg_config_put(h, name, d)) != 0)
            break;
        n++;
    }
    is(rc, SHMREG_EFULL, "writing 240 KB configs ends in EFULL");
    is(n, 4, "after 4 of them (a 1 MiB map holds 4 of 240 KB)");
    uint64_t gen = shmreg_config_gen(h);
    is(shmreg_config_put(h, name, d), SHMREG_EFULL, "again: EFULL");
    is(shmreg_config_gen(h), gen, "a failed write changes no generation");
    shmreg_config_doc_free(d);
    is(shmreg_config_delete(h, "c0"), 0, "delete one");
    is(shmreg_config_set(h, "again", "k", "1"), 0, "a small write fits again");
    done();
    return done_testing();
}
