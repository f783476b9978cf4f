#!/usr/bin/env bash
# scripts/pgindent.sh [FILE...] — lay out setstream's C code the way
# PostgreSQL's pgindent does (default: every .c and .h under src/ and
# test/fuzz/).  `make pgindent` runs it.
#
# It needs pg_bsd_indent (Debian: apt-get install pg-bsd-indent; or
# PG_BSD_INDENT=/path/to/pg_bsd_indent).  PostgreSQL's pgindent (a Perl
# script of its source tree) is not packaged: this runs pg_bsd_indent with
# pgindent's options, and the typedef list that pgindent would take:
# src/typedefs.list (setstream's own, kept with `scripts/typedefs.py src >
# src/typedefs.list`) together with the typedefs of PostgreSQL's server
# headers and of the libraries' headers, read at run time.  Without
# pg_bsd_indent it says so and exits 2.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
PG_CONFIG=${PG_CONFIG:-pg_config}
INDENT=${PG_BSD_INDENT:-$(command -v pg_bsd_indent || true)}
if [ -z "$INDENT" ] || [ ! -x "$INDENT" ]; then
    echo "pgindent.sh: pg_bsd_indent not found (apt-get install pg-bsd-indent, or set PG_BSD_INDENT)" >&2
    exit 2
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
    cat "$REPO/src/typedefs.list"
    "$REPO/scripts/typedefs.py" "$("$PG_CONFIG" --includedir-server)" \
        /usr/include/jansson.h /usr/include/cjose /usr/include/wslay \
        /usr/include/http_parser.h /usr/include/openssl /usr/include/curl \
        /usr/include/*/curl 2>/dev/null
    # the C library's, which PostgreSQL's list carries too
    printf '%s\n' FILE size_t ssize_t off_t pid_t socklen_t time_t va_list \
        int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t \
        intptr_t uintptr_t sigjmp_buf sig_atomic_t
} | LC_ALL=C sort -u >"$work/typedefs"

if [ $# -eq 0 ]; then
    mapfile -t files < <(cd "$REPO" && git ls-files 'src/*.c' 'src/*.h' 'test/fuzz/*.c' 'test/fuzz/*.h')
else
    files=("$@")
fi

# pgindent's options for pg_bsd_indent (src/tools/pgindent/pgindent)
opts=(-bad -bap -bbb -bc -bl -cli1 -cp33 -cdb -nce -d0 -di12 -nfc1 -i4 -l79
      -lp -lpl -nip -npro -sac -tpg -ts4 "-U$work/typedefs")
status=0
for f in "${files[@]}"; do
    (cd "$REPO" && "$INDENT" "${opts[@]}" "$f" "$work/raw") || { status=1; continue; }
    # pgindent's own touch-ups after pg_bsd_indent: one space before the
    # '*' of a function's return type; a tab between run-together comments
    sed -E -e 's!^([A-Za-z_][^[:space:]]*)[[:space:]]+\*$!\1 *!' \
        -e 's!\*/(/\*.*\*/)$!*/\t\1!' "$work/raw" >"$work/out"
    if ! cmp -s "$work/out" "$REPO/$f"; then
        cp "$work/out" "$REPO/$f"
        echo "indented $f"
    fi
done
exit $status
