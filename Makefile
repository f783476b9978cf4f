# setstream — PGXS build.
#
#   make                 build setstream.so (warnings are errors)
#   make install         install into the PostgreSQL found by pg_config
#   make SANITIZE=address,undefined   the same, built with ASan and UBSan
#   scripts/test.sh      run every suite on a private cluster (see README)
#   make fuzz            run each libFuzzer target FUZZ_SECONDS (test/fuzz)
#   make fuzz-regress    replay the fuzz corpora and regressions, fuzz briefly
#   make fuzz-coverage   line coverage of src/ reached by the fuzz corpora
#   make dist            setstream-<version>.zip for PGXN (META.json)
#   make pgindent        lay out src/ as pgindent does (scripts/pgindent.sh)

EXTENSION  = setstream
MODULE_big = setstream
DATA       = src/setstream--0.1.0.sql src/setstream--0.1.0--0.2.0.sql \
             src/setstream--0.2.0--0.3.0.sql src/setstream--0.3.0--0.4.0.sql

# src/ is grouped by layer, one folder each (README, "Source layout"); a
# file includes another by its path under src/ ("store/store.h")
SRCS = $(wildcard src/*.c src/*/*.c src/*/*/*.c)
OBJS = $(SRCS:.c=.o)

REGRESS      = $(sort $(basename $(notdir $(wildcard sql/*.sql))))

# -Wall -Wextra -Werror on our code.  Three -Wextra checks are switched off
# because PostgreSQL's own headers and fmgr conventions trip them (unused
# fcinfo in V1 functions, signed/unsigned comparisons in inline helpers,
# partially initialised option structs); PostgreSQL builds itself the same way.
PG_CPPFLAGS = -Isrc
PG_CFLAGS  = -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
             -Wno-sign-compare -Wno-missing-field-initializers
SHLIB_LINK = -lcjose -ljansson -lhttp_parser -lwslay -lssl -lcrypto -lcurl

# SANITIZE=address,undefined (scripts/test.sh with SETSTREAM_SANITIZE=1)
# instruments setstream.so with gcc's AddressSanitizer and UBSan; the server
# must then run with libasan LD_PRELOADed (scripts/lib.sh sanitizer_env).
ifdef SANITIZE
PG_CFLAGS  += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer -g
SHLIB_LINK += -fsanitize=$(SANITIZE)
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The postgres executable exports a json_object() of its own (the SQL
# function), and the dynamic linker prefers it to jansson's.  Our code calls
# jansson's constructor through src/json.h; make sure no call by name slipped in.
all: check-symbols
check-symbols: $(shlib)
	@if nm -D --undefined-only $(shlib) | grep -qw json_object; then \
		echo "error: $(shlib) calls json_object() by name; include src/json.h and use json_object() from there" >&2; \
		exit 1; fi
.PHONY: check-symbols

# PGXN: make dist builds setstream-<version>.zip from the committed tree
# (git archive of HEAD); META.json's version must be the control file's.
EXTVERSION = $(shell sed -n "s/^default_version *= *'\(.*\)'/\1/p" setstream.control)
dist:
	@grep -q '"version": "$(EXTVERSION)"' META.json || \
		{ echo "META.json does not carry version $(EXTVERSION) (setstream.control)" >&2; exit 1; }
	git archive --format zip --prefix=setstream-$(EXTVERSION)/ -o setstream-$(EXTVERSION).zip HEAD
.PHONY: dist

# pgindent's layout (needs pg_bsd_indent; src/typedefs.list)
pgindent:
	PG_CONFIG=$(PG_CONFIG) scripts/pgindent.sh
.PHONY: pgindent

# libFuzzer targets (test/fuzz, clang-14); they need no cluster
FUZZ_SECONDS ?= 60
fuzz fuzz-regress:
	$(MAKE) -C test/fuzz PG_CONFIG=$(PG_CONFIG) FUZZ_SECONDS=$(FUZZ_SECONDS) $@
fuzz-coverage:
	$(MAKE) -C test/fuzz PG_CONFIG=$(PG_CONFIG) coverage
.PHONY: fuzz fuzz-regress fuzz-coverage
