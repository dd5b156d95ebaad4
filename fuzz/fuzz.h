/*
 * fuzz.h — what the libFuzzer targets in fuzz/ share: REQUIRE(), the check
 * that turns a broken property into a crash. libFuzzer only notices
 * crashes, so a target must never just print and go on; abort() makes
 * the input a finding that fuzz/run keeps and names.
 */
#ifndef SHMREG_FUZZ_H
#define SHMREG_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

#include "shmreg.h"

#define REQUIRE(c)                                                                   \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "%s:%d: REQUIRE(%s) failed (last shmreg error: %s)\n",    \
                    __FILE__, __LINE__, #c, shmreg_errmsg());                        \
            abort();                                                                 \
        }                                                                            \
    } while (0)

#endif
