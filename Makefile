# Makefile — builds, tests and installs shmreg (GNU make).
#
#   make                     library, tools and examples, variant release
#   make VARIANT=asan        the same under -fsanitize=address,undefined
#   make VARIANT=debug       the same at -O0 -g3 (what a debugger wants)
#   make VARIANT=tsan        the same under -fsanitize=thread
#   make CC=clang [VARIANT=] the same built by clang, in build/VARIANT-clang
#   make test                install missing deps, then every step of
#                            TEST_STEPS (gcc release and asan, clang, tsan,
#                            debug, 20 s of each fuzz target, a short
#                            scribble campaign); fails if any failed.
#                            `make test-STEP` runs one step.
#   make check [TESTS=...]   build and prove the suite of one VARIANT only
#   make fuzz [FUZZ_SECONDS=60] [FUZZ_TARGETS=...]
#                            build the libFuzzer targets of fuzz/ (clang)
#                            and run each for that long (fuzz/README)
#   make scribble [SCRIBBLE_ARGS=...]
#                            the random-scribble campaign (fuzz/scribble.c)
#   make install PREFIX=/usr/local DESTDIR=
#   make layers              check the architecture (tools/check-layers)
#   make check-deps          the Debian packages in DEPS (installs them as root)
#   make coverage            the suite in VARIANT=coverage, then line coverage
#                            of shm/ and registry/ (gcovr, installed on demand)
#   make clean
#
# Why it looks like this: every variant builds into its own tree,
# build/$(VARIANT)/ (build/$(VARIANT)-clang for clang), so a release and a
# sanitizer build, or a gcc and a clang one, coexist and never mix
# objects. Objects mirror the source paths under obj/ (shm/x.c ->
# build/release/obj/shm/x.o); programs land in build/$(VARIANT)/t/NAME.t,
# tools/shmregctl, tools/shmreg-bench and examples/NAME. Sources are found
# by wildcard, so a new file in shm/, registry/, t/, tools/ or
# examples/NAME/ needs no edit here, nor does a new fuzz target (see the
# fuzz section). Header dependencies come from the
# compiler (-MMD). The release libraries are also
# symlinked to the top level (./libshmreg.a, ./libshmreg.so ->
# build/release/...) so `-L. -lshmreg` works from a checkout.

# The version lives in one place, registry/shmreg.h; the SONAME is its MAJOR.
ver_part = $(shell sed -n 's/^\#define SHMREG_VERSION_$(1) \([0-9]*\)$$/\1/p' registry/shmreg.h)
SOMAJOR  := $(call ver_part,MAJOR)
VERSION  := $(SOMAJOR).$(call ver_part,MINOR).$(call ver_part,PATCH)
VARIANT  ?= release
CC       := gcc
# gcc builds into build/VARIANT, any other compiler into build/VARIANT-CC
# (build/release-clang): the two toolchains never share objects.
CC_NAME  := $(notdir $(firstword $(CC)))
B        := build/$(VARIANT)$(if $(filter gcc,$(CC_NAME)),,-$(CC_NAME))
O        := $(B)/obj

CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -fPIC -pthread \
               -D_GNU_SOURCE -Iregistry -Ishm
ifeq ($(VARIANT),release)
SAN :=
else ifeq ($(VARIANT),asan)
SAN := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
       -fno-sanitize-recover=undefined
else ifeq ($(VARIANT),coverage)
# -O1: lines still map to code, and the suite's timing-bound tests (list
# under churn, ring skip bounds) keep their pace, which at -O0 they do not.
# Atomic counters, because tests update them from several threads at once.
SAN := -O1 --coverage -fprofile-update=atomic -DSHMREG_COVERAGE
else ifeq ($(VARIANT),debug)
# -O0 after -O2 wins: what a debugger sees, and code paths the optimizer
# would fold away (unused loads, different inlining) really run.
SAN := -O0 -g3
else ifeq ($(VARIANT),tsan)
# ThreadSanitizer cannot be combined with ASan; -O1 keeps it fast enough.
# TSan does not model standalone fences (gcc says so with -Wtsan; clang
# says nothing): the fences in shm/ only order atomics, and atomics never
# race, so what TSan checks (plain memory) loses nothing by it.
SAN := -O1 -fsanitize=thread -fno-omit-frame-pointer \
       $(if $(filter gcc,$(CC_NAME)),-Wno-tsan)
else
$(error VARIANT must be release, asan, debug, tsan or coverage, not '$(VARIANT)')
endif
# Sources ask gcc's __SANITIZE_ADDRESS__ / __SANITIZE_THREAD__ whether a
# sanitizer is in (to size their work, to hook malloc); clang 14 defines
# neither, so it is told here.
ifneq ($(filter clang%,$(CC_NAME)),)
SAN += $(if $(filter asan,$(VARIANT)),-D__SANITIZE_ADDRESS__=1) \
       $(if $(filter tsan,$(VARIANT)),-D__SANITIZE_THREAD__=1)
endif
# clang links no sanitizer runtime into a shared library (the program
# brings it), so the .so can be held to -Wl,--no-undefined only without one.
SO_NOUNDEF := $(if $(and $(filter clang%,$(CC_NAME)),$(filter asan tsan,$(VARIANT))),,-Wl,--no-undefined)
# CFLAGS / LDFLAGS given on the command line are added, not substituted.
ALL_CFLAGS  = $(CFLAGS_BASE) $(SAN) $(XCFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN) -pthread $(LDFLAGS)
LIBS        := -llmdb -lsodium -pthread
# hiredis: the bench's Redis baseline, shmreg-sync's Redis sink
# (tools/shmreg-redis.c) and the tests of it; the library never links it.
BENCH_LIBS  := -lhiredis
SYNC_LIBS   := -lhiredis
TEST_LIBS   := -llmdb -lsodium -pthread -ldl -lhiredis

# Debian packages the build and the tests need: the ONE list. Add here
# (e.g. libhiredis-dev, redis-server, sip-tester) when a tool or test
# starts to need them; tools/install-deps checks and installs them.
# clang: the clang build and the fuzz targets; libclang-rt-dev: libFuzzer
# and clang's sanitizer runtimes; llvm: llvm-symbolizer, for readable
# sanitizer stacks.
# Not gnuplot: only the bench's --plot draws with it, so `make bench`
# installs it on demand when BENCH_ARGS asks for a plot.
# kamailio, baresip-core (baresip without its GUI modules), tshark: the
# sipd interop test (t/sipd_interop.c) runs sipd behind Kamailio (its
# base package has tm, rr, sl, textops, siputils), calls it from baresip
# and decodes the traffic with tshark.
DEPS := liblmdb-dev libsodium-dev perl python3 sip-tester redis-server libhiredis-dev \
        clang libclang-rt-dev llvm kamailio baresip-core tshark

# ------------------------------------------------------------ sources
LIB_SRC   := $(wildcard shm/*.c registry/*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(O)/%.o)
# The test library: the same sources compiled again with SHMREG_TESTING,
# which adds what must never ship: test hooks (shm_ring_*_for_test) and the
# named crash points (shm/crashpoint.h). Tests link it; the installed
# libshmreg.a / libshmreg.so never contain either.
TLIB_OBJ  := $(LIB_SRC:%.c=$(O)/testlib/%.o)
TLIBA     := $(B)/libshmreg-test.a
SO_REAL   := libshmreg.so.$(VERSION)
LIBA      := $(B)/libshmreg.a
LIBSO     := $(B)/libshmreg.so

CTL_SRC   := $(wildcard tools/shmregctl*.c)
BENCH_SRC := $(wildcard tools/shmreg-bench*.c)
# The Redis client (tools/shmreg-redis.c) is shmreg-sync's, named here:
# the wildcard does not match it, and the bench must not take it in.
SYNC_SRC  := $(wildcard tools/shmreg-sync*.c) $(wildcard tools/shmreg-redis.c)
TOOLS     := $(if $(CTL_SRC),$(B)/tools/shmregctl) \
             $(if $(BENCH_SRC),$(B)/tools/shmreg-bench) \
             $(if $(SYNC_SRC),$(B)/tools/shmreg-sync)

EXAMPLES  := $(sort $(patsubst examples/%/,%,$(dir $(wildcard examples/*/*.c))))
EX_BINS   := $(EXAMPLES:%=$(B)/examples/%)

T_SUPPORT := $(wildcard t/alloc_count.c t/testutil.c t/redisutil.c)
T_SRC     := $(filter-out $(T_SUPPORT),$(wildcard t/*.c))
T_BINS    := $(T_SRC:t/%.c=$(B)/t/%.t)
TESTS     ?= $(T_BINS)

ALL_OBJ := $(LIB_OBJ) $(patsubst %.c,$(O)/%.o,$(CTL_SRC) $(BENCH_SRC) $(SYNC_SRC) \
             $(T_SUPPORT) $(T_SRC) $(wildcard examples/*/*.c))

.PHONY: all lib tools examples tests check test check-deps install clean layers
all: lib tools examples
lib: $(LIBA) $(LIBSO)
tools: $(TOOLS)
examples: $(EX_BINS)
tests: $(T_BINS)

# ------------------------------------------------------------ compile
$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

# Tests may include their helpers (t/tap.h, t/testutil.h) and see the
# test-only declarations of the engine.
$(O)/t/%.o: XCFLAGS := -It -DSHMREG_TESTING

$(O)/testlib/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -DSHMREG_TESTING -MMD -MP -c -o $@ $<

-include $(ALL_OBJ:.o=.d) $(TLIB_OBJ:.o=.d)
# Keep test objects (make would delete them as intermediates); never
# leave a half-written target behind after a failed command.
.SECONDARY: $(ALL_OBJ) $(TLIB_OBJ)
.DELETE_ON_ERROR:

# ------------------------------------------------------------ library
# A fresh archive each time: `ar r` into an old one would keep members of
# deleted sources.
$(LIBA): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(TLIBA): $(TLIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(LIBSO): $(LIB_OBJ) registry/shmreg.map
	@mkdir -p $(@D)
	@# Only this version's files: a library of an older SONAME left in the
	@# tree would still be found by whatever links or inspects it there.
	rm -f $(filter-out $(B)/$(SO_REAL),$(wildcard $(B)/libshmreg.so.*))
	$(CC) -shared -Wl,-soname,libshmreg.so.$(SOMAJOR) $(SO_NOUNDEF) \
	    -Wl,--version-script=registry/shmreg.map \
	    $(ALL_LDFLAGS) -o $(B)/$(SO_REAL) $(filter %.o,$^) $(LIBS)
	ln -sf $(SO_REAL) $(B)/libshmreg.so.$(SOMAJOR)
	ln -sf libshmreg.so.$(SOMAJOR) $@

ifeq ($(VARIANT),release)
lib: libshmreg.a libshmreg.so
libshmreg.a libshmreg.so: %: $(B)/%
	ln -sf $< $@
endif

# ------------------------------------------------------------ programs
# Each program's objects are added as prerequisites, one line per program;
# the link recipes below take them from $^.
$(B)/tools/shmregctl: $(CTL_SRC:%.c=$(O)/%.o)
# shmreg-sync: the daemon of issue 15 (tools/shmreg-sync*.c: source, sinks).
$(B)/tools/shmreg-sync: $(SYNC_SRC:%.c=$(O)/%.o)
# The bench counts allocations with the tests' malloc interposer: one
# copy of that logic (t/alloc_count.c), linked into both.
$(B)/tools/shmreg-bench: $(BENCH_SRC:%.c=$(O)/%.o) $(O)/t/alloc_count.o
$(foreach e,$(EXAMPLES),$(eval \
  $(B)/examples/$(e): $(patsubst %.c,$(O)/%.o,$(wildcard examples/$(e)/*.c))))

$(B)/tools/shmregctl $(EX_BINS): $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS)

$(B)/tools/shmreg-sync: $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS) $(SYNC_LIBS)

$(B)/tools/shmreg-bench: $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS) $(BENCH_LIBS)

# Tests of an example: t/NAME.c and t/NAME_*.c test examples/NAME/ and
# link build/VARIANT/examples/libNAME.a, the objects the example is built
# from less examples/NAME/NAME.c (the one with main), so what they test
# is compiled once, by the rule that builds the example, and they include
# only its headers. An archive, so each test pulls only what it calls.
EX_LIB = $(B)/examples/lib$(1).a
EX_LIB_OBJ = $(patsubst %.c,$(O)/%.o,$(filter-out examples/$(1)/$(1).c,$(wildcard examples/$(1)/*.c)))
$(foreach e,$(EXAMPLES),$(if $(call EX_LIB_OBJ,$(e)),$(eval \
  $(call EX_LIB,$(e)): $(call EX_LIB_OBJ,$(e))) $(eval \
  $(filter $(B)/t/$(e).t $(B)/t/$(e)_%.t,$(T_BINS)): $(call EX_LIB,$(e)))))
$(B)/examples/lib%.a:
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

# Tests of the Redis client and of shmreg-sync over Redis (t/redis*.c,
# t/mirror*.c) link the client's object, compiled once by the tools' rule;
# tools/ is on their include path for its header.
REDIS_T := $(filter $(B)/t/redis%.t $(B)/t/mirror%.t,$(T_BINS))
ifneq ($(REDIS_T),)
$(REDIS_T): $(O)/tools/shmreg-redis.o
$(REDIS_T:$(B)/t/%.t=$(O)/t/%.o): XCFLAGS := -It -Itools -DSHMREG_TESTING
endif

$(B)/t/%.t: $(O)/t/%.o $(T_SUPPORT:%.c=$(O)/%.o) $(TLIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(filter-out $(TLIBA),$(filter %.a,$^)) \
	    $(TLIBA) $(TEST_LIBS)

# ------------------------------------------------------------ tests
# Tests are executables (prove --exec ''), run two at a time, each run in a
# fresh scratch directory ($SHMREG_TEST_DIR) removed afterwards.
PROVE ?= prove -j2
ifeq ($(VARIANT),asan)
TEST_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif
ifeq ($(VARIANT),tsan)
# A report fails the test (exit 66 at exit) without stopping it.
TEST_ENV := TSAN_OPTIONS=exitcode=66:second_deadlock_stack=1
endif

check: all $(TESTS)
	@d=$$(mktemp -d /dev/shm/shmreg-test.XXXXXX 2>/dev/null || mktemp -d); \
	echo "== $(VARIANT): $(PROVE) (SHMREG_TEST_DIR=$$d)"; \
	SHMREG_TEST_DIR=$$d SHMREG_TEST_CC='$(CC)' SHMREG_TEST_LDFLAGS='$(ALL_LDFLAGS)' \
	    $(TEST_ENV) $(PROVE) --exec '' $(TESTS); rc=$$?; \
	rm -rf "$$d"; exit $$rc

# `make test`: check-deps, then every step of TEST_STEPS in turn, each
# also runnable alone as `make test-STEP`. Every step runs whatever failed
# before it (a release failure does not hide an asan one); the summary
# names the failures and the exit status is 1 if any. Without -j the
# steps build with one job per CPU. 10 min 35 s from a fresh clone on the
# 2-CPU project machine (many hosts' Redis tests included).
#   gcc-release, gcc-asan  the whole suite, -O2 and ASan/UBSan (t/sipd_interop,
#                          Kamailio + baresip + tshark, runs in gcc-asan only:
#                          there sipd runs under ASan, and the other builds
#                          would start the same foreign programs again for
#                          no new information; SIPD_INTEROP=1 runs it anywhere)
#   layers                 tools/check-layers: shm/ compiles alone and names
#                          no consumer, registry/ calls form no cycle,
#                          tools/ and examples/ use public headers only
#   clang-release          the whole suite built by clang
#   tsan                   TSAN_TESTS under ThreadSanitizer: t/threads.c
#                          (threads, one handle each) and the tests that
#                          are clean and quick under it. Not the rest:
#                          alloc_count_selftest (TSan's memalign skips the
#                          malloc hook), ctl_list_big (time and memory
#                          bounds sized for release/asan),
#                          room_crash_roster (its SIGKILL test outran its
#                          30 s watchdog under TSan), and the slow
#                          multi-process ones (room_concurrent...), which
#                          TSan cannot see across processes anyway.
#   debug                  everything built at -O0, DEBUG_TESTS run (the
#                          whole suite passes at -O0, in about 80 s more)
#   fuzz                   each fuzz target for TEST_FUZZ_SECONDS
#   scribble               the random-scribble campaign over a populated
#                          segment (fuzz/scribble.c), TEST_SCRIBBLE_ARGS
TEST_STEPS        ?= gcc-release layers gcc-asan clang-release tsan debug fuzz scribble
TEST_SCRIBBLE_ARGS ?= --rounds 2000 --seconds 45
TEST_FUZZ_SECONDS ?= 20
TSAN_TESTS  ?= threads concurrency config config_text config_noalloc dialog events fork \
               id_state iterate noalloc open room_crash session ctl_events ctl_stat ctl_rooms \
               profile vars user_lookup timeout
DEBUG_TESTS ?= threads concurrency config config_text config_noalloc corrupt crash dialog \
               events fork id_state iterate noalloc open ring room_crash session \
               sipd_parse ctl_basic ctl_check ctl_config ctl_events ctl_stat ctl_rooms \
               profile vars user_lookup timeout record

.PHONY: $(TEST_STEPS:%=test-%)
test: check-deps
	@case " $$MAKEFLAGS " in *" -j"*|*jobserver*) j= ;; *) j=-j$$(nproc) ;; esac; \
	failed=; n=0; t0=$$(date +%s); \
	for s in $(TEST_STEPS); do n=$$((n + 1)); s0=$$(date +%s); \
	    echo; echo "==== make test [$$n/$(words $(TEST_STEPS))] $$s"; \
	    if $(MAKE) --no-print-directory $$j test-$$s; then r=ok; else r=FAILED; failed="$$failed $$s"; fi; \
	    echo "==== $$s: $$r ($$(($$(date +%s) - s0)) s)"; done; \
	echo; echo "==== make test: $$(($$(date +%s) - t0)) s in all"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all $(words $(TEST_STEPS)) steps passed"

test-gcc-release:
	@$(MAKE) --no-print-directory CC=gcc VARIANT=release check
test-layers layers:
	@$(MAKE) --no-print-directory CC=gcc VARIANT=release all
	@bash tools/check-layers --selftest gcc
	@bash tools/check-layers build/release/obj gcc
test-gcc-asan:
	@$(MAKE) --no-print-directory CC=gcc VARIANT=asan check
test-clang-release:
	@$(MAKE) --no-print-directory CC=clang VARIANT=release check
test-tsan:
	@$(MAKE) --no-print-directory CC=gcc VARIANT=tsan check TESTS="$(TSAN_TESTS:%=build/tsan/t/%.t)"
test-debug:
	@$(MAKE) --no-print-directory CC=gcc VARIANT=debug check TESTS="$(DEBUG_TESTS:%=build/debug/t/%.t)"
test-fuzz:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS) FUZZ_TARGETS="$(FUZZ_ALL)"
test-scribble:
	@$(MAKE) --no-print-directory scribble SCRIBBLE_ARGS="$(TEST_SCRIBBLE_ARGS)"

check-deps:
	@bash tools/install-deps $(DEPS)

# One command: deps, build, sipd with 4 workers under sipp for ~10 s, watched
# by shmregctl, then everything stopped and removed (examples/demo.sh).
.PHONY: demo
demo:
	@bash examples/demo.sh

# Calls survive a reboot (issue 15): sipd + shmreg-sync under sipp, all
# SIGKILLed and the segment deleted, `shmregctl restore`, sipd again:
# every BYE answered 200 (examples/demo-restart.sh).
.PHONY: demo-restart
demo-restart:
	@bash examples/demo-restart.sh

# Two hosts mirrored through Redis; host A dies whole, host B adopts its
# calls and takes the floating address: every BYE answered 200
# (examples/demo-ha.sh).
.PHONY: demo-ha
demo-ha:
	@bash examples/demo-ha.sh

# shmreg against Redis, LMDB, a copying registry and a private hash table,
# side by side (tools/shmreg-bench.c): the quick profile, under a minute;
# FULL=1 runs everything (1k..1M sessions, 1..8 processes; minutes).
# More options through BENCH_ARGS, e.g. BENCH_ARGS='--json' or
# BENCH_ARGS='--plot bench.svg'. A --plot installs gnuplot first (not in
# DEPS: nothing else needs it); run by hand without it, the bench says
# "plot: skipped (gnuplot not installed)".
.PHONY: bench
bench: $(B)/tools/shmreg-bench $(B)/tools/shmreg-sync
	$(if $(findstring --plot,$(BENCH_ARGS)),@bash tools/install-deps gnuplot)
	@$(B)/tools/shmreg-bench $(if $(filter-out 0,$(FULL)),--full) $(BENCH_ARGS)

# Line coverage of the engine and the registry: the whole suite in the
# coverage variant, then one figure for shm/ + registry/, a figure per
# file, and the hit count of every recovery path; fails if the suite fails
# or a recovery path never ran (tools/coverage-report). gcovr is installed
# here, not in DEPS: `make test` does not need it.
.PHONY: coverage
coverage:
	@bash tools/install-deps gcovr
	@find build/coverage -name '*.gcda' -delete 2>/dev/null; true
	@$(MAKE) --no-print-directory VARIANT=coverage check; rc=$$?; \
	python3 tools/coverage-report build/coverage || rc=1; exit $$rc

# ------------------------------------------------------------ fuzz
# libFuzzer targets (fuzz/README). The convention, so that a new target
# needs no edit here: every fuzz/NAME.c that defines LLVMFuzzerTestOneInput
# (a line starting "int LLVMFuzzerTestOneInput") is built by clang with -fsanitize=fuzzer,address,undefined into
# build/fuzz/NAME, from fuzz/NAME.c, the sources listed in FUZZ_SRC_NAME
# below if it needs any (their directories join the include path), and
# build/fuzz/libshmreg-fuzz.a: the library compiled again with
# SHMREG_TESTING and the same sanitizers plus coverage, so the fuzzer
# steers by the library's branches too. Its seed corpus is
# fuzz/corpus/NAME/; fuzz/NAME.options, if present, holds more libFuzzer
# flags on one line (-max_len=..., -dict=...). Other fuzz/*.c files (plain
# programs, which have their own rules) are not targets. The build is one
# tree whatever VARIANT is.
FUZZ_CC      ?= clang
FB           := build/fuzz
FUZZ_ALL     := $(sort $(patsubst fuzz/%.c,%,$(shell grep -lE '^int[[:space:]]+LLVMFuzzerTestOneInput' fuzz/*.c 2>/dev/null)))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -Wall -Wextra -Werror -pthread -D_GNU_SOURCE \
                -fno-omit-frame-pointer -D__SANITIZE_ADDRESS__=1 -DSHMREG_TESTING \
                -Iregistry -Ishm -Ifuzz $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_SRC_sipmsg := examples/sipd/sipmsg.c examples/sipd/sdp.c
FLIB_OBJ     := $(LIB_SRC:%.c=$(FB)/obj/%.o)
FLIBA        := $(FB)/libshmreg-fuzz.a
fuzz_objs     = $(FB)/obj/fuzz/$(1).o $(FUZZ_SRC_$(1):%.c=$(FB)/obj/%.o)

$(FB)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_XCFLAGS) -MMD -MP -c -o $@ $<

$(FLIBA): $(FLIB_OBJ)
	rm -f $@ && $(AR) rcs $@ $^

$(foreach t,$(FUZZ_ALL),$(eval $(FB)/$(t): $(call fuzz_objs,$(t)) $(FLIBA)) \
  $(eval $(call fuzz_objs,$(t)): FUZZ_XCFLAGS := $(patsubst %/,-I%,$(sort $(dir $(FUZZ_SRC_$(t)))))))

$(FUZZ_ALL:%=$(FB)/%):
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -pthread -o $@ $(filter %.o,$^) $(FLIBA) $(LIBS)

FUZZ_OBJ := $(sort $(foreach t,$(FUZZ_ALL),$(call fuzz_objs,$(t))))
-include $(FLIB_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
.SECONDARY: $(FLIB_OBJ) $(FUZZ_OBJ)

# Each target runs FUZZ_SECONDS on a copy of its corpus (fuzz/run): one
# line per target with executions and findings; fails if any crashed,
# leaving the input in build/fuzz/crash/.
.PHONY: fuzz fuzz-build
fuzz-build: $(FUZZ_TARGETS:%=$(FB)/%)
fuzz: fuzz-build
	@bash fuzz/run $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# ------------------------------------------------------------ install
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man

# Always regenerated: PREFIX may differ from the last install. Dirs under
# PREFIX are written as ${prefix}/..., so pkg-config --define-prefix works.
under_prefix = $(patsubst $(PREFIX)/%,$${prefix}/%,$(1))
.PHONY: $(B)/shmreg.pc
$(B)/shmreg.pc: shmreg.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@LIBDIR@|$(call under_prefix,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call under_prefix,$(INCLUDEDIR))|g' $< > $@

install: all $(B)/shmreg.pc
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)
	install -m 0644 $(LIBA) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(B)/$(SO_REAL) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SO_REAL) $(DESTDIR)$(LIBDIR)/libshmreg.so.$(SOMAJOR)
	ln -sf libshmreg.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libshmreg.so
	install -m 0644 registry/shmreg.h $(wildcard registry/shmreg_*.h) \
	    $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(B)/shmreg.pc $(DESTDIR)$(LIBDIR)/pkgconfig/
	@# A real install (no DESTDIR) must be found by the loader right away.
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null; then ldconfig; fi
ifneq ($(CTL_SRC),)
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(B)/tools/shmregctl $(DESTDIR)$(BINDIR)/
endif
ifneq ($(SYNC_SRC),)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 $(B)/tools/shmreg-sync $(DESTDIR)$(BINDIR)/
	install -m 0644 tools/shmreg-sync.1 $(DESTDIR)$(MANDIR)/man1/
endif
ifneq ($(wildcard tools/shmregctl.1),)
	install -d $(DESTDIR)$(MANDIR)/man1
	install -m 0644 tools/shmregctl.1 $(DESTDIR)$(MANDIR)/man1/
endif

clean:
	rm -rf build libshmreg.a libshmreg.so

# ------------------------------------------------------------ scribble
# The random-scribble campaign of issue 12 (fuzz/scribble.c): a populated
# segment, damaged anew each round, under ASan/UBSan, with shmregctl run
# over the damage too. `make scribble` is the short run (2,000 rounds or
# 60 s, whichever comes first); longer: SCRIBBLE_ARGS='--rounds 100000
# --seed 7'. Always the asan variant: a wild access must be a crash.
SCRIBBLE_ARGS ?= --rounds 2000 --seconds 60
SCRIBBLE_ENV  := ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
                 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
$(O)/fuzz/%.o: XCFLAGS := -Ifuzz
$(B)/fuzz/scribble: $(O)/fuzz/scribble.o $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $< $(LIBA) $(LIBS)
-include $(O)/fuzz/scribble.d
.PHONY: scribble
scribble:
	@$(MAKE) --no-print-directory VARIANT=asan build/asan/fuzz/scribble build/asan/tools/shmregctl
	$(SCRIBBLE_ENV) build/asan/fuzz/scribble --ctl build/asan/tools/shmregctl $(SCRIBBLE_ARGS)
