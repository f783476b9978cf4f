#!/usr/bin/env bash
# bench/callgrind.sh — instructions the listener spends per SET (callgrind).
#
# Builds and installs setstream, starts a private cluster `callgrind` with
# one listener (setstream.workers = 1), makes sure pre-signed RS256 SETs are
# cached (bench/gen_sets.py) and creates two receiving streams, all without
# valgrind; then restarts the postmaster under
#     valgrind --tool=callgrind --trace-children=yes --dump-before=store_jwks
# Every process of the cluster runs under callgrind, and one dumps its
# counts (and starts again from zero) whenever it calls store_jwks(): only
# the listener does, for GET /jwks.json, which bench/callgrind.py sends as
# a marker between phases.  It warms the listener up, then sends CG_PUSH
# RFC 8935 pushes (one SET each) between two markers, and
# CG_PUSHPULL_OBJECTS pushpull Communication Objects of 100 SETs between
# two more, and CG_POLLS RFC 8936 polls of maxEvents 1000, each acking the
# SETs of the one before (the drain of scenario poll_drain), between two
# more, one request at a time on one keep-alive connection, and prints
# per SET: the listener's total Ir, and the Ir of setstream.so's own code
# (self cost).  (vgdb's monitor commands, instrumentation on/off, left the
# listener stopped here: hence the markers.)
#
# Environment: CG_PUSH (300), CG_PUSHPULL_OBJECTS (5), CG_POLLS (3),
# CG_ALG (RS256), CG_OUT (bench/.cache/callgrind: the dumps and the result
# JSON),
# CG_KEEP=1 leaves the cluster running.  Counts are deterministic to well
# under 1% between runs of one build; compare builds with the same settings.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../scripts/lib.sh
. "$BENCH_DIR/../scripts/lib.sh"

CG_OUT=${CG_OUT:-$BENCH_DIR/.cache/callgrind}
export BENCH_DIR BENCH_CACHE=$BENCH_DIR/.cache
export CG_PUSH=${CG_PUSH:-300} CG_PUSHPULL_OBJECTS=${CG_PUSHPULL_OBJECTS:-5} CG_POLLS=${CG_POLLS:-3}
export CG_ALG=${CG_ALG:-RS256}
PY=/usr/bin/python3

say() { printf '[%s] callgrind.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is missing" >&2; exit 1; }
mkdir -p "$BENCH_CACHE" "$CG_OUT"
say "building and installing setstream"
if ! build_and_install >"$BENCH_CACHE/callgrind-build.log" 2>&1; then
    tail -n 40 "$BENCH_CACHE/callgrind-build.log" >&2
    exit 1
fi

say "starting a fresh cluster 'callgrind'"
cluster_destroy callgrind
SETSTREAM_PORT=$(free_port "${CG_LISTENER_PORT:-18517}")
settings=("synchronous_commit = on" "setstream.port = $SETSTREAM_PORT"
          "setstream.listen_addresses = '127.0.0.1'" "setstream.workers = 1"
          "jit = off" "autovacuum = off" "huge_pages = off")
cluster_start callgrind "$(free_port 55540)" "${settings[@]}"
export SETSTREAM_URL="http://127.0.0.1:$SETSTREAM_PORT" PGBIN
cleanup() {
    if [ "${CG_KEEP:-0}" != 1 ]; then
        as_pg_user "$PGBIN/pg_ctl" -D "$SETSTREAM_PGDATA" -m fast -w -t 120 stop \
            >/dev/null 2>&1 || true
        # children under valgrind may outlive the postmaster a little (and
        # hold its sockets): the next run must not find them
        for _ in $(seq 1 120); do
            pgrep -f "callgrind-out-file=$CG_OUT/" >/dev/null || break
            sleep 0.5
        done
    else
        say "cluster kept: PGHOST=$PGHOST PGPORT=$PGPORT"
    fi
}
trap cleanup EXIT
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION setstream" >&2
say "SETs and streams"
"$PY" "$BENCH_DIR/callgrind.py" prepare "$CG_OUT/state.json"

say "restarting the postmaster under callgrind"
as_pg_user "$PGBIN/pg_ctl" -D "$SETSTREAM_PGDATA" -m fast -w -t 60 stop >/dev/null
rm -f "$CG_OUT"/callgrind.out.*
chmod 777 "$CG_OUT"
wrapper=$SETSTREAM_CLUSTER_DIR/postgres-callgrind
cat >"$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=callgrind --trace-children=yes --dump-before=store_jwks \\
    --callgrind-out-file=$CG_OUT/callgrind.out.%p "$PGBIN/postgres" "\$@"
EOF
chmod 755 "$wrapper"
as_pg_user "$PGBIN/pg_ctl" -D "$SETSTREAM_PGDATA" -l "$SETSTREAM_LOGFILE" -p "$wrapper" \
    -w -t 600 start >/dev/null
cluster_export_env "$SETSTREAM_CLUSTER_DIR"

say "measuring"
"$PY" "$BENCH_DIR/callgrind.py" measure "$CG_OUT/state.json" "$CG_OUT"
