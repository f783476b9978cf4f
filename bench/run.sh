#!/usr/bin/env bash
# bench/run.sh [scenario ...] — setstream's benchmark harness (bench/README.md).
#
# Installs the dependencies (scripts/deps.sh), builds and installs
# setstream, starts a fresh private cluster `bench` with the listener on
# 127.0.0.1, measures the limits (openssl speed), then runs every
# executable in bench/scenarios/ but the soak (or only the named ones: a name
# is the file name with or without its extension) BENCH_RUNS times, and writes
# bench/RESULTS.md.  Loopback only.  Not part of the test suite.
#
# Environment: BENCH_RUNS (3), BENCH_DURATION (10 s per measurement),
# BENCH_WORKERS (setstream.workers, 2: one listener per core; the workers
# scenario compares 1 and 2 itself),
# BENCH_PIPELINED_FLUSH (setstream.pipelined_flush, on), BENCH_COMMIT_DELAY
# (commit_delay in microseconds, 0: a slower disk's flush, simulated),
# BENCH_KEEP=1 keeps the cluster running afterwards, BENCH_OUT (the
# results file, bench/RESULTS.md), BENCH_SCENARIO_TIMEOUT (900 s a run).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=../scripts/lib.sh
. "$BENCH_DIR/../scripts/lib.sh"

BENCH_RUNS=${BENCH_RUNS:-3}
BENCH_DURATION=${BENCH_DURATION:-10}
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/RESULTS.md}
BENCH_SCENARIO_TIMEOUT=${BENCH_SCENARIO_TIMEOUT:-900}
BENCH_CACHE=$BENCH_DIR/.cache
PY=/usr/bin/python3
export BENCH_RUNS BENCH_DURATION BENCH_DIR BENCH_CACHE

say() { printf '[%s] run.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

say "dependencies"
"$REPO/scripts/deps.sh" --bench
command -v wrk >/dev/null || { echo "run.sh: wrk is missing" >&2; exit 1; }

say "building and installing setstream"
mkdir -p "$BENCH_CACHE"
if ! build_and_install >"$BENCH_CACHE/build.log" 2>&1; then
    tail -n 40 "$BENCH_CACHE/build.log" >&2
    echo "run.sh: the build failed (full log: $BENCH_CACHE/build.log)" >&2
    exit 1
fi

# Scenarios to run
scenarios=()
if [ $# -gt 0 ]; then
    for name in "$@"; do
        found=""
        for f in "$BENCH_DIR/scenarios/$name" "$BENCH_DIR"/scenarios/"$name".*; do
            if [ -f "$f" ] && [ -x "$f" ]; then found=$f; break; fi
        done
        [ -n "$found" ] || { echo "run.sh: no executable scenario '$name' in bench/scenarios" >&2; exit 2; }
        scenarios+=("$found")
    done
else
    for f in "$BENCH_DIR"/scenarios/*; do
        # the soak (10 minutes) runs only when named: bench/run.sh soak
        [ "$(basename "$f")" = soak.py ] && continue
        [ -f "$f" ] && [ -x "$f" ] && scenarios+=("$f")
    done
fi
[ ${#scenarios[@]} -gt 0 ] || { echo "run.sh: no scenarios" >&2; exit 2; }
BENCH_SCENARIOS=$(for f in "${scenarios[@]}"; do basename "$f"; done | paste -sd' ')
export BENCH_SCENARIOS

# A fresh private cluster
say "starting a fresh cluster 'bench'"
cluster_destroy bench
# BENCH_LISTENER_PORT: the first port tried (concurrent runs on one machine
# can keep out of each other's way).
SETSTREAM_PORT=$(free_port "${BENCH_LISTENER_PORT:-18417}")
cleanup() {
    if [ "${BENCH_KEEP:-0}" != 1 ]; then
        cluster_stop bench
    else
        say "cluster kept: PGHOST=$PGHOST PGPORT=$PGPORT, listener $SETSTREAM_URL"
    fi
}
trap cleanup EXIT
cluster_start bench "$(free_port 55440)" \
    "synchronous_commit = on" \
    "setstream.port = $SETSTREAM_PORT" \
    "setstream.listen_addresses = '127.0.0.1'" \
    "shared_buffers = '512MB'" \
    "max_connections = 200" \
    "setstream.max_connections = 4000" \
    "setstream.workers = ${BENCH_WORKERS:-2}" \
    "setstream.pipelined_flush = ${BENCH_PIPELINED_FLUSH:-on}" \
    "commit_delay = ${BENCH_COMMIT_DELAY:-0}" "commit_siblings = 0" \
    "max_wal_size = '8GB'" \
    "checkpoint_timeout = '30min'"
export SETSTREAM_PORT SETSTREAM_URL="http://127.0.0.1:$SETSTREAM_PORT"
export BENCH_PGDATA=$SETSTREAM_PGDATA BENCH_LOGFILE=$SETSTREAM_LOGFILE
export PGHOST PGPORT PGUSER=postgres PGDATABASE=postgres PGBIN
export BENCH_SESSION
BENCH_SESSION=$(date +%Y%m%d%H%M%S)-$$
"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION setstream" >&2

say "waiting for the listener on $SETSTREAM_URL"
for _ in $(seq 1 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$SETSTREAM_URL/jwks.json" || true)
    [ "$code" = 200 ] && break
    sleep 0.2
done
[ "$code" = 200 ] || { echo "run.sh: the listener did not answer /jwks.json (last: $code)" >&2; exit 1; }

results=$BENCH_CACHE/results-$BENCH_SESSION.jsonl
failures=$BENCH_CACHE/failures-$BENCH_SESSION.txt
: >"$results"
: >"$failures"

# Keep the JSON result lines of a scenario (adding run and script); pass
# anything else to stderr.
collect() {
    local run=$1 script=$2
    "$PY" -c '
import json, sys
run, script, out = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "a")
for line in sys.stdin:
    s = line.strip()
    try:
        obj = json.loads(s) if s.startswith("{") else None
    except ValueError:
        obj = None
    if isinstance(obj, dict) and "scenario" in obj:
        obj["run"], obj["script"] = run, script
        out.write(json.dumps(obj) + "\n"); out.flush()
        print("  -> %s: %s SETs/s" % (obj["scenario"], obj.get("sets_per_s")), file=sys.stderr)
    else:
        sys.stderr.write(line)
' "$run" "$script" "$results"
}

for run in $(seq 1 "$BENCH_RUNS"); do
    export BENCH_RUN=$run
    say "run $run/$BENCH_RUNS: limits (openssl speed)"
    if ! "$PY" "$BENCH_DIR/lib.py" limits | collect "$run" limits; then
        echo "run $run: limits failed" >>"$failures"
    fi
    for script in "${scenarios[@]}"; do
        name=$(basename "$script")
        say "run $run/$BENCH_RUNS: $name"
        set +e
        (cd "$BENCH_DIR" && timeout -k 10 "$BENCH_SCENARIO_TIMEOUT" "$script") | collect "$run" "$name"
        status=${PIPESTATUS[0]}
        set -e
        if [ "$status" -ne 0 ]; then
            say "run $run: $name FAILED (exit $status)"
            echo "run $run: $name exited with status $status (see the log above)" >>"$failures"
        fi
        # a scenario that died mid-way may have left the listener down
        if ! cluster_running "$(dirname "$BENCH_PGDATA")"; then
            say "the cluster is down after $name; starting it again"
            as_pg_user "$PGBIN/pg_ctl" -D "$BENCH_PGDATA" -l "$BENCH_LOGFILE" -w -t 60 start >/dev/null
        fi
    done
done

say "writing $BENCH_OUT"
"$PY" "$BENCH_DIR/lib.py" report "$BENCH_OUT" "$results" "$failures"
[ ! -s "$failures" ]
