# Makefile — builds, tests and installs shmreg (GNU make).
#
#   make                     library, tools and examples, variant release
#   make VARIANT=asan        the same under -fsanitize=address,undefined
#   make test                install missing deps, then the TAP suite with
#                            prove in both variants; fails if either fails
#   make check [TESTS=...]   build and prove the suite of one VARIANT only
#   make install PREFIX=/usr/local DESTDIR=
#   make check-deps          the Debian packages in DEPS (installs them as root)
#   make clean
#
# Why it looks like this: every variant builds into its own tree,
# build/$(VARIANT)/, so a release and a sanitizer build coexist and never
# mix objects. Objects mirror the source paths under obj/ (shm/x.c ->
# build/release/obj/shm/x.o); programs land in build/$(VARIANT)/t/NAME.t,
# tools/shmregctl, tools/shmreg-bench and examples/NAME. Sources are found
# by wildcard, so a new file in shm/, registry/, t/, tools/ or
# examples/NAME/ needs no edit here. Header dependencies come from the
# compiler (-MMD). The release libraries are also
# symlinked to the top level (./libshmreg.a, ./libshmreg.so ->
# build/release/...) so `-L. -lshmreg` works from a checkout.

VERSION  := 0.1.0
SOMAJOR  := 0
VARIANT  ?= release
B        := build/$(VARIANT)
O        := $(B)/obj

CC       := gcc
CFLAGS_BASE := -std=gnu11 -O2 -g -Wall -Wextra -Werror -fPIC -pthread \
               -D_GNU_SOURCE -Iregistry -Ishm
ifeq ($(VARIANT),release)
SAN :=
else ifeq ($(VARIANT),asan)
SAN := -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
       -fno-sanitize-recover=undefined
else
$(error VARIANT must be release or asan, not '$(VARIANT)')
endif
# CFLAGS / LDFLAGS given on the command line are added, not substituted.
ALL_CFLAGS  = $(CFLAGS_BASE) $(SAN) $(XCFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(SAN) -pthread $(LDFLAGS)
LIBS        := -llmdb -lsodium -pthread
# hiredis: the bench's Redis baseline only; the library never links it.
BENCH_LIBS  := -lhiredis
TEST_LIBS   := -llmdb -lsodium -pthread -ldl

# Debian packages the build and the tests need: the ONE list. Add here
# (e.g. libhiredis-dev, redis-server, sip-tester) when a tool or test
# starts to need them; tools/install-deps checks and installs them.
DEPS := liblmdb-dev libsodium-dev perl python3 sip-tester redis-server libhiredis-dev gnuplot

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
TOOLS     := $(if $(CTL_SRC),$(B)/tools/shmregctl) \
             $(if $(BENCH_SRC),$(B)/tools/shmreg-bench)

EXAMPLES  := $(sort $(patsubst examples/%/,%,$(dir $(wildcard examples/*/*.c))))
EX_BINS   := $(EXAMPLES:%=$(B)/examples/%)

T_SUPPORT := $(wildcard t/alloc_count.c t/testutil.c)
T_SRC     := $(filter-out $(T_SUPPORT),$(wildcard t/*.c))
T_BINS    := $(T_SRC:t/%.c=$(B)/t/%.t)
TESTS     ?= $(T_BINS)

ALL_OBJ := $(LIB_OBJ) $(patsubst %.c,$(O)/%.o,$(CTL_SRC) $(BENCH_SRC) \
             $(T_SUPPORT) $(T_SRC) $(wildcard examples/*/*.c))

.PHONY: all lib tools examples tests check test check-deps install clean
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

$(LIBSO): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -Wl,-soname,libshmreg.so.$(SOMAJOR) -Wl,--no-undefined \
	    $(ALL_LDFLAGS) -o $(B)/$(SO_REAL) $^ $(LIBS)
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
$(B)/tools/shmreg-bench: $(BENCH_SRC:%.c=$(O)/%.o)
$(foreach e,$(EXAMPLES),$(eval \
  $(B)/examples/$(e): $(patsubst %.c,$(O)/%.o,$(wildcard examples/$(e)/*.c))))

$(B)/tools/shmregctl $(EX_BINS): $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS)

$(B)/tools/shmreg-bench: $(LIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LIBA) $(LIBS) $(BENCH_LIBS)

$(B)/t/%.t: $(O)/t/%.o $(T_SUPPORT:%.c=$(O)/%.o) $(TLIBA)
	@mkdir -p $(@D)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(TLIBA) $(TEST_LIBS)

# ------------------------------------------------------------ tests
# Tests are executables (prove --exec ''), run two at a time, each run in a
# fresh scratch directory ($SHMREG_TEST_DIR) removed afterwards.
PROVE ?= prove -j2
ifeq ($(VARIANT),asan)
TEST_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
endif

check: all $(TESTS)
	@d=$$(mktemp -d /dev/shm/shmreg-test.XXXXXX 2>/dev/null || mktemp -d); \
	echo "== $(VARIANT): $(PROVE) (SHMREG_TEST_DIR=$$d)"; \
	SHMREG_TEST_DIR=$$d $(TEST_ENV) $(PROVE) --exec '' $(TESTS); rc=$$?; \
	rm -rf "$$d"; exit $$rc

# Both variants always run (a release failure does not hide an asan one).
test: check-deps
	@rc=0; for v in release asan; do \
	    $(MAKE) --no-print-directory VARIANT=$$v check || rc=1; done; \
	[ $$rc = 0 ] || echo "make test: FAILED (see above)"; exit $$rc

check-deps:
	@bash tools/install-deps $(DEPS)

# One command: deps, build, sipd with 4 workers under sipp for ~10 s, watched
# by shmregctl, then everything stopped and removed (examples/demo.sh).
.PHONY: demo
demo:
	@bash examples/demo.sh

# shmreg against Redis, LMDB, a copying registry and a private hash table,
# side by side (tools/shmreg-bench.c): the quick profile, under a minute;
# FULL=1 runs everything (1k..1M sessions, 1..8 processes; minutes).
# More options through BENCH_ARGS, e.g. BENCH_ARGS='--json' or
# BENCH_ARGS='--plot bench.svg'.
.PHONY: bench
bench: $(B)/tools/shmreg-bench
	@$(B)/tools/shmreg-bench $(if $(filter-out 0,$(FULL)),--full) $(BENCH_ARGS)

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
