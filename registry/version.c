/*
 * version.c — which shmreg this is. The header's macros say what a program
 * was compiled against; shmreg_version() says what it runs with, which is
 * what a bug report needs (LMDB's mdb_version() is the model).
 */
#include "shmreg.h"

const char *shmreg_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = SHMREG_VERSION_MAJOR;
    if (minor)
        *minor = SHMREG_VERSION_MINOR;
    if (patch)
        *patch = SHMREG_VERSION_PATCH;
    return SHMREG_VERSION_STRING;
}
