#!/usr/bin/env bash
# scripts/lib.sh — helpers sourced by setup.sh, stop.sh and test.sh:
# locate PostgreSQL 15, build and install the extension, and run private
# PostgreSQL clusters (never the system's `main` cluster).
#
# A private cluster NAME lives in $(cluster_dir_for NAME):
#     data/      PGDATA
#     run/       unix socket directory (PGHOST)
#     logfile    server log
# When the scripts run as root, the server runs as the `postgres` OS user
# (initdb refuses root); clients (psql, pg_regress, pytest) run as the
# invoking user and reach the server over the unix socket.
#
# Sourcing this file sets REPO, PG_CONFIG, PGBIN and PGLIB; it needs
# postgresql-server-dev-15 (scripts/deps.sh) to be installed first.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

# Prefer PostgreSQL 15's own pg_config: /usr/bin/pg_config on Debian picks the
# newest server-dev package installed, which need not be 15.  Where 15 is
# absent (the Debian 13 and unstable roots of scripts/pgroot.sh), the one
# major installed, the newest if several.
if [ -z "${PG_CONFIG:-}" ]; then
    if [ -x /usr/lib/postgresql/15/bin/pg_config ]; then
        PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    else
        PG_CONFIG=$(ls -d /usr/lib/postgresql/*/bin/pg_config 2>/dev/null |
                        sort -t/ -k5,5n | tail -n 1)
        PG_CONFIG=${PG_CONFIG:-pg_config}
    fi
fi
PGBIN=$("$PG_CONFIG" --bindir)
PGLIB=$("$PG_CONFIG" --pkglibdir)
export PG_CONFIG PGBIN PGLIB

is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command with root rights: directly when root, else through sudo.
as_root() {
    if is_root; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "lib.sh: '$*' needs root and sudo is not available" >&2
        return 1
    fi
}

# Run a command as the OS user that owns private clusters: `postgres` when
# we are root, ourselves otherwise.  It runs in the current directory when
# postgres can enter it (else in /), with PATH, PG* and SETSTREAM_* kept.
as_pg_user() {
    if ! is_root; then
        "$@"
        return
    fi
    local -a keep=(PATH="$PGBIN:$PATH" LANG=C.UTF-8 LC_ALL=C.UTF-8)
    local var
    for var in $(compgen -e); do
        case "$var" in
            PG*|SETSTREAM_*|TESTDIR|PERL5LIB|PROVE_*) keep+=("$var=${!var}") ;;
        esac
    done
    # shellcheck disable=SC2016 # $1 and $@ belong to the inner sh
    runuser -u postgres -- env -i HOME=/tmp "${keep[@]}" \
        sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sh "$PWD" "$@"
}

# Owner (user) of cluster files: postgres when root, ourselves otherwise.
pg_owner() { if is_root; then echo postgres; else id -un; fi; }

# Directory for private cluster NAME: $REPO/.local/NAME, or, when postgres
# cannot reach into the checkout (root with a private home, say) or the
# socket path would be too long, /tmp/setstream-<uid>-<hash of REPO>/NAME.
cluster_dir_for() {
    local name=$1 base dir
    base="$REPO/.local"
    mkdir -p "$base"
    if is_root && ! runuser -u postgres -- test -x "$base"; then
        base=""
    fi
    # unix socket paths are limited to 107 bytes
    if [ -n "$base" ] && [ $(( ${#base} + ${#name} + 24 )) -gt 100 ]; then
        base=""
    fi
    if [ -z "$base" ]; then
        base="/tmp/setstream-$(id -u)-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
        mkdir -p "$base"
        chmod 755 "$base"
    fi
    dir="$base/$name"
    mkdir -p "$dir"
    if is_root; then
        chown postgres:postgres "$dir"
    fi
    chmod 700 "$dir"
    echo "$dir"
}

# Is TCP port $1 on 127.0.0.1 in use (listening)?
port_busy() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# First free TCP port at or after $1 (tries 200 ports).
free_port() {
    local port=${1:-54329} i
    for ((i = 0; i < 200; i++)); do
        if ! port_busy "$port"; then
            echo "$port"
            return 0
        fi
        port=$((port + 1))
    done
    echo "lib.sh: no free TCP port near $1" >&2
    return 1
}

# Is the private cluster in directory $1 running?
cluster_running() {
    local dir=$1
    [ -f "$dir/data/postmaster.pid" ] &&
        as_pg_user "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1
}

# Export the libpq variables that reach the cluster in directory $1.
cluster_export_env() {
    local dir=$1
    export PGHOST="$dir/run"
    # line 4 of postmaster.pid is the port
    PGPORT=$(sed -n 4p "$dir/data/postmaster.pid")
    export PGPORT
    export PGUSER=postgres
    export PGDATABASE=postgres
    export SETSTREAM_CLUSTER_DIR="$dir"
    export SETSTREAM_PGDATA="$dir/data"
    export SETSTREAM_LOGFILE="$dir/logfile"
}

# cluster_start NAME PORT [extra postgresql.conf lines...]
# Create (initdb) and start private cluster NAME, on PORT or the next free
# port.  An already running cluster is reused as it is.  Exports PGHOST,
# PGPORT, PGUSER, PGDATABASE (and SETSTREAM_PGDATA, SETSTREAM_LOGFILE).
cluster_start() {
    local name=$1 want_port=$2
    shift 2
    local dir port line
    # Callers may test cluster_start with `if`, where set -e is off: every
    # step that can fail returns explicitly.
    dir=$(cluster_dir_for "$name") || return 1

    if cluster_running "$dir"; then
        cluster_export_env "$dir"
        return 0
    fi

    if [ ! -f "$dir/data/PG_VERSION" ]; then
        rm -rf "$dir/data"
        as_pg_user "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres \
            --no-sync -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            return 1
        }
        echo "include = 'setstream-cluster.conf'" >>"$dir/data/postgresql.conf"
    fi
    as_pg_user mkdir -p "$dir/run" || return 1

    port=$(free_port "$want_port") || return 1
    {
        echo "# written by scripts/lib.sh cluster_start at every start"
        echo "port = $port"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$dir/run'"
        echo "shared_preload_libraries = 'setstream'"
        echo "max_worker_processes = 16"
        echo "fsync = on"
        echo "log_min_messages = warning"
        for line in "$@"; do
            echo "$line"
        done
    } >"$dir/setstream-cluster.conf.new" || return 1
    if is_root; then
        chown postgres:postgres "$dir/setstream-cluster.conf.new" || return 1
    fi
    mv "$dir/setstream-cluster.conf.new" "$dir/data/setstream-cluster.conf" ||
        return 1

    local -a senv=()
    if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
        as_pg_user mkdir -p "$dir/sanitizer" || return 1
        mapfile -t senv < <(sanitizer_env "$dir/sanitizer") || return 1
        [ ${#senv[@]} -gt 0 ] || return 1
    fi
    if ! as_pg_user env "${senv[@]}" "$PGBIN/pg_ctl" -D "$dir/data" \
            -l "$dir/logfile" -w -t 120 start >/dev/null 2>&1; then
        echo "lib.sh: cluster '$name' did not start; end of $dir/logfile:" >&2
        tail -n 30 "$dir/logfile" >&2 2>/dev/null || true
        return 1
    fi
    cluster_export_env "$dir"
}

# cluster_stop NAME — fast shutdown; nothing to do when it is not running.
cluster_stop() {
    local name=$1 dir
    dir=$(cluster_dir_for "$name")
    if cluster_running "$dir"; then
        as_pg_user "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop \
            >/dev/null 2>&1 || true
    fi
}

# cluster_destroy NAME — stop it and remove its directory.
cluster_destroy() {
    local name=$1 dir
    cluster_stop "$name"
    dir=$(cluster_dir_for "$name")
    rm -rf "$dir"
}

# sanitizer_env LOGDIR — with SETSTREAM_SANITIZE set, print (one a line)
# the environment under which processes that load the ASan/UBSan build of
# setstream.so must run: gcc's libasan preloaded (it must come first; the
# postgres executable is not instrumented), reports written to
# LOGDIR/asan.<pid> and LOGDIR/ubsan.<pid>, an abort on the first report.
# Leak detection is off: PostgreSQL frees nothing at exit by design (memory
# goes with memory contexts and the process); growth per request is what
# bench/scenarios/soak.py and test/protocol/test_memory_soak.py check.
#
# A preloaded libasan initialises lazily, at the first malloc.  In postgres
# that is inside libgpg-error's constructor (via libsystemd and libgcrypt),
# within bindtextdomain() holding glibc's _nl_state_lock for writing; ASan's
# init looks up swift_demangle with dlsym, and its dlerror() call wants the
# same lock to translate "undefined symbol": a deadlock before main().  A
# stub swift_demangle (LOGDIR/swift_demangle_stub.so, preloaded after
# libasan; it returns NULL, "not a Swift name") makes that lookup succeed.
sanitizer_env() {
    local dir=$1 cc asan stub
    cc=$("$PG_CONFIG" --cc)
    cc=${cc%% *}
    asan=$("$cc" -print-file-name=libasan.so)
    asan=$(readlink -f "$asan")
    if [ ! -f "$asan" ]; then
        echo "lib.sh: $cc has no libasan.so (SETSTREAM_SANITIZE needs gcc's libasan8)" >&2
        return 1
    fi
    stub="$dir/swift_demangle_stub.so"
    printf '%s\n' \
        'char *swift_demangle(const char *n, unsigned long l, char *o, unsigned long *ol, unsigned f);' \
        'char *swift_demangle(const char *n, unsigned long l, char *o, unsigned long *ol, unsigned f)' \
        '{ return 0; }' >"$dir/swift_demangle_stub.c" &&
        "$cc" -shared -fPIC -nostdlib -o "$stub" "$dir/swift_demangle_stub.c" &&
        chmod 755 "$stub" || return 1
    echo "LD_PRELOAD=$asan $stub"
    echo "ASAN_OPTIONS=log_path=$dir/asan:detect_leaks=0:abort_on_error=1:halt_on_error=1:disable_coredump=1:quarantine_size_mb=64:malloc_context_size=20:detect_stack_use_after_return=0"
    echo "UBSAN_OPTIONS=log_path=$dir/ubsan:halt_on_error=1:abort_on_error=1:print_stacktrace=1"
}

# sanitizer_reports DIR... — print the ASan/UBSan report files under DIR.
sanitizer_reports() {
    local d
    for d in "$@"; do
        [ -d "$d" ] || continue
        find "$d" -type f \( -name 'asan.*' -o -name 'ubsan.*' \) -size +0 2>/dev/null
    done | LC_ALL=C sort
}

# Build setstream.so from a clean tree (the Makefile has -Werror) and install
# it into PostgreSQL 15.  Output goes to stdout/stderr; returns make's status.
# With SETSTREAM_SANITIZE set it is the ASan/UBSan build (make SANITIZE=...).
# (Explicit && chain: callers test it with `if`, which switches off set -e.)
build_and_install() {
    local -a san=()
    if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
        san=(SANITIZE=address,undefined)
    fi
    (
        cd "$REPO" &&
            { make PG_CONFIG="$PG_CONFIG" clean >/dev/null 2>&1 || true; } &&
            make PG_CONFIG="$PG_CONFIG" "${san[@]}" -j"$(nproc 2>/dev/null || echo 2)" &&
            as_root make PG_CONFIG="$PG_CONFIG" "${san[@]}" install
    )
}
