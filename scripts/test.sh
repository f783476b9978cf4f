#!/usr/bin/env bash
# scripts/test.sh — the project's one test command (README, .ci/run).
#
# Installs the Debian dependencies, builds and installs setstream (warnings
# are errors), starts a fresh private PostgreSQL 15 cluster named `test`
# with shared_preload_libraries = 'setstream', and runs every suite:
#   regress     pg_regress on sql/*.sql against expected/*.out
#   isolation   pg_isolation_regress on test/isolation/specs/*.spec
#   pgtap       pg_prove on test/pgtap/*.sql (database setstream_tap)
#   python      pytest on test/python and test/protocol (database setstream_py)
#   security    pytest on test/security: attacks by non-superuser roles
#   outbound    pytest on test/outbound: RFC 8935 push by the sender worker
#               to a scripted test receiver and to the listener itself
#   ssf         pytest on test/ssf: the SSF transmitter (receivers, their
#               tokens, discovery, the management API) over real sockets
#   perl        prove on test/t/*.pl (PostgreSQL::Test::Cluster TAP tests)
#   fuzz        the libFuzzer targets of test/fuzz over their corpora and
#               regression inputs, then SETSTREAM_FUZZ_SECONDS (default 5)
#               of fuzzing each; one result per target
# then prints a per-suite summary and the closing line
#   N passed, N failed[, N skipped]
# and exits non-zero when anything failed (a failed build counts as one).
#
# Environment knobs:
#   SETSTREAM_TEST_PORT     first port tried for the cluster (default 54329)
#   SETSTREAM_LISTENER_PORT first port tried for the listener (default 18417)
#   SETSTREAM_SUITE_TIMEOUT seconds each suite may take (default 480)
#   SETSTREAM_PERL_TIMEOUT  seconds the perl suite may take (default 1200:
#                           its fault-injection tests restart servers)
#   SETSTREAM_KEEP=1        keep the cluster running and the work directory
#   SETSTREAM_SUITES        space-separated subset of the suites above
#                           (an unknown name is an error: nothing runs)
#   SETSTREAM_FUZZ_SECONDS  seconds of fuzzing per target in suite fuzz
#   SETSTREAM_SANITIZE=1    sanitizer mode: setstream.so is built with
#                           -fsanitize=address,undefined, every server runs
#                           with gcc's libasan preloaded (lib.sh
#                           sanitizer_env), and after the suites each ASan or
#                           UBSan report counts as one failure of the
#                           `sanitizer` line.  Slower: suite timeouts double.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
SUMMARY=()
FINISHED=""
CLUSTER_UP=""
WORK=""
TMPFS_UP=""

# record SUITE PASSED FAILED SKIPPED [NOTE]
record() {
    local suite=$1 pass=$2 fail=$3 skip=$4 note=${5:-}
    TOTAL_PASS=$((TOTAL_PASS + pass))
    TOTAL_FAIL=$((TOTAL_FAIL + fail))
    TOTAL_SKIP=$((TOTAL_SKIP + skip))
    SUMMARY+=("$(printf '  %-12s %4d passed, %4d failed, %4d skipped%s' \
        "$suite" "$pass" "$fail" "$skip" "${note:+  ($note)}")")
}

print_summary() {
    local line
    echo
    echo "== summary"
    for line in "${SUMMARY[@]}"; do
        echo "$line"
    done
    if [ "$TOTAL_SKIP" -gt 0 ]; then
        echo "$TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
    else
        echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
    fi
}

on_exit() {
    local rc=$?
    set +e
    [ -n "$TMPFS_UP" ] && umount "$TMPFS_UP"
    if [ -n "$CLUSTER_UP" ] && [ -z "${SETSTREAM_KEEP:-}" ]; then
        cluster_stop test
    fi
    if [ -n "$WORK" ] && [ -z "${SETSTREAM_KEEP:-}" ]; then
        rm -rf "$WORK"
    fi
    if [ -z "$FINISHED" ]; then
        # test.sh itself broke (or was interrupted): still close with a count
        record test.sh 0 1 0 "aborted with status $rc"
        print_summary
        exit 1
    fi
}
trap on_exit EXIT

SUITES=(regress isolation pgtap python security outbound ssf perl fuzz)

# check_suites — every name in SETSTREAM_SUITES must be a suite: a typo
# would otherwise run nothing and report "0 passed, 0 failed".
check_suites() {
    local name s known bad=0
    for name in ${SETSTREAM_SUITES:-}; do
        known=""
        for s in "${SUITES[@]}"; do
            [ "$name" = "$s" ] && known=1
        done
        if [ -z "$known" ]; then
            echo "SETSTREAM_SUITES: unknown suite '$name' (suites: ${SUITES[*]})" >&2
            bad=$((bad + 1))
        fi
    done
    if [ "$bad" -gt 0 ]; then
        record SETSTREAM_SUITES 0 "$bad" 0 "unknown suite name(s); nothing ran"
        FINISHED=1
        print_summary
        exit 2
    fi
}

want_suite() {
    [ -z "${SETSTREAM_SUITES:-}" ] || [[ " $SETSTREAM_SUITES " == *" $1 "* ]]
}

# tap_count FILE RC — count top-level TAP results in one test file's output.
# Prints "passed failed skipped".  `ok # skip` and `not ok # TODO` count as
# skipped; tests planned but never run, or a non-zero exit with nothing
# failed (a crash, a timeout), count as failed.
tap_count() {
    awk -v rc="$2" '
        /^1\.\.[0-9]+/        { plan = substr($1, 4) + 0; next }
        /^(not )?ok [0-9]+/ {
            ran++
            directive = tolower($0)
            if (directive ~ /#[ \t]*skip/)           skip++
            else if (directive ~ /#[ \t]*todo/)      skip++
            else if ($1 == "ok")                     pass++
            else                                     fail++
        }
        END {
            if (plan > ran) fail += plan - ran
            if (rc != 0 && fail == 0) fail = 1
            printf "%d %d %d\n", pass, fail, skip
        }' "$1"
}

# regress_count FILE RC — count pg_regress / pg_isolation_regress results:
# "name ... ok" lines (15), or TAP lines "ok 1 - name  12 ms" (16 and later).
regress_count() {
    awk -v rc="$2" '
        /^(not )?ok +[0-9]+ +[-+] / {
            if (tolower($0) ~ /#[ \t]*(skip|todo)/)  skip++
            else if ($1 == "ok")                     pass++
            else                                     fail++
            next
        }
        / \.\.\. / {
            status = $0
            sub(/.* \.\.\. +/, "", status)
            if (status ~ /^ok/)                       pass++
            else if (status ~ /^(FAILED|failed)/) {
                if (status ~ /\(ignored\)/)           skip++
                else                                  fail++
            }
        }
        END {
            if (rc != 0 && fail == 0) fail = 1
            printf "%d %d %d\n", pass, fail, skip
        }' "$1"
}

# make_var NAME — a variable as the Makefile (with PGXS) defines it.
make_var() {
    make -s --no-print-directory -C "$REPO" PG_CONFIG="$PG_CONFIG" \
        -f Makefile -f - "print-$1" <<'EOF' 2>/dev/null || true
print-%:
	@echo '$($*)'
EOF
}

# psql_admin DB SQL... — run statements, stop at the first error.
psql_admin() {
    local db=$1
    shift
    local -a args=()
    local sql
    for sql in "$@"; do
        args+=(-c "$sql")
    done
    PGOPTIONS="-c client_min_messages=warning" \
        "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$db" "${args[@]}"
}

# fresh_db NAME [EXTENSION...] — drop, create, and create extensions in it.
fresh_db() {
    local db=$1 ext
    shift
    local -a stmts=()
    for ext in "$@"; do
        stmts+=("CREATE EXTENSION $ext")
    done
    psql_admin postgres "DROP DATABASE IF EXISTS $db" "CREATE DATABASE $db" &&
        if [ ${#stmts[@]} -gt 0 ]; then psql_admin "$db" "${stmts[@]}"; fi
}

# ---------------------------------------------------------------- suites

suite_regress() {
    local -a tests=() opts=()
    local f p x s rc=0 out="$WORK/regress"
    for f in "$REPO"/sql/*.sql; do
        [ -e "$f" ] && tests+=("$(basename "$f" .sql)")
    done
    if [ ${#tests[@]} -eq 0 ]; then
        record regress 0 0 0 "no sql/*.sql"
        return
    fi
    mapfile -t tests < <(printf '%s\n' "${tests[@]}" | LC_ALL=C sort)
    read -r -a opts <<<"$(make_var REGRESS_OPTS)"
    mkdir -p "$out"
    echo "== regress: ${tests[*]}"
    timeout -k 10 "$SUITE_TIMEOUT" \
        "$PGLIB/pgxs/src/test/regress/pg_regress" \
        --inputdir="$REPO" --outputdir="$out" --bindir="$PGBIN" \
        --host="$PGHOST" --port="$PGPORT" --user=postgres \
        --dbname=contrib_regression "${opts[@]}" "${tests[@]}" \
        >"$out/log" 2>&1 || rc=$?
    cat "$out/log"
    [ "$rc" -eq 124 ] && echo "regress: timed out after ${SUITE_TIMEOUT}s"
    if [ -s "$out/regression.diffs" ]; then
        echo "-- regression.diffs (first 200 lines)"
        head -n 200 "$out/regression.diffs"
    fi
    read -r p x s < <(regress_count "$out/log" "$rc")
    record regress "$p" "$x" "$s"
}

suite_isolation() {
    local -a tests=() opts=()
    local f p x s rc=0 out="$WORK/isolation"
    for f in "$REPO"/test/isolation/specs/*.spec; do
        [ -e "$f" ] && tests+=("$(basename "$f" .spec)")
    done
    if [ ${#tests[@]} -eq 0 ]; then
        record isolation 0 0 0 "no test/isolation/specs/*.spec"
        return
    fi
    mapfile -t tests < <(printf '%s\n' "${tests[@]}" | LC_ALL=C sort)
    read -r -a opts <<<"$(make_var ISOLATION_OPTS)"
    mkdir -p "$out"
    echo "== isolation: ${tests[*]}"
    timeout -k 10 "$SUITE_TIMEOUT" \
        "$PGLIB/pgxs/src/test/isolation/pg_isolation_regress" \
        --inputdir="$REPO/test/isolation" --outputdir="$out" \
        --bindir="$PGBIN" --host="$PGHOST" --port="$PGPORT" --user=postgres \
        --dbname=isolation_regression "${opts[@]}" "${tests[@]}" \
        >"$out/log" 2>&1 || rc=$?
    cat "$out/log"
    [ "$rc" -eq 124 ] && echo "isolation: timed out after ${SUITE_TIMEOUT}s"
    if [ -s "$out/regression.diffs" ]; then
        echo "-- regression.diffs (first 200 lines)"
        head -n 200 "$out/regression.diffs"
    fi
    read -r p x s < <(regress_count "$out/log" "$rc")
    record isolation "$p" "$x" "$s"
}

suite_pgtap() {
    local -a files=()
    local f rc pass=0 fail=0 skip=0 p x s out="$WORK/pgtap" deadline
    for f in "$REPO"/test/pgtap/*.sql; do
        [ -e "$f" ] && files+=("$f")
    done
    if [ ${#files[@]} -eq 0 ]; then
        record pgtap 0 0 0 "no test/pgtap/*.sql"
        return
    fi
    mkdir -p "$out"
    echo "== pgtap: ${#files[@]} file(s)"
    if ! fresh_db setstream_tap pgtap setstream; then
        record pgtap 0 1 0 "could not create database setstream_tap with pgtap and setstream"
        return
    fi
    deadline=$((SECONDS + SUITE_TIMEOUT))
    for f in "${files[@]}"; do
        rc=0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "pgtap: suite time limit reached; not running ${f#"$REPO"/}"
            fail=$((fail + 1))
            continue
        fi
        (cd "$REPO" && timeout -k 10 $((deadline - SECONDS)) \
            pg_prove --verbose -d setstream_tap \
            "${f#"$REPO"/}") >"$out/log" 2>&1 || rc=$?
        cat "$out/log"
        [ "$rc" -eq 124 ] && echo "${f#"$REPO"/}: timed out (suite limit ${SUITE_TIMEOUT}s)"
        read -r p x s < <(tap_count "$out/log" "$rc")
        pass=$((pass + p)) fail=$((fail + x)) skip=$((skip + s))
    done
    record pgtap "$pass" "$fail" "$skip"
}

# run_pytest SUITE DIR... — one pytest run per directory (each has a
# conftest.py of its own), recorded as SUITE.  A directory without tests is
# a failure: a suite that collects nothing has not run.
run_pytest() {
    local suite=$1 rc=0 out="$WORK/$1" line n word pass=0 fail=0 skip=0 setup_fail=0
    shift
    local -a dirs=()
    local d
    for d in "$@"; do
        if compgen -G "$REPO/$d/test_*.py" >/dev/null; then
            dirs+=("$d")
        else
            echo "$suite: no $d/test_*.py"
            setup_fail=$((setup_fail + 1))
        fi
    done
    mkdir -p "$out"
    echo "== $suite: pytest ${dirs[*]}"
    if ! fresh_db setstream_py setstream; then
        echo "$suite: could not create database setstream_py with setstream"
        setup_fail=$((setup_fail + 1))
    fi
    for d in "${dirs[@]}"; do
        local_rc=0
        (
            cd "$REPO"
            # test/protocol talks to the listener, which serves setstream.database
            export PGDATABASE=setstream_py SETSTREAM_REPO="$REPO"
            export SETSTREAM_DATABASE=postgres
            export NO_PROXY="127.0.0.1,localhost,::1${NO_PROXY:+,$NO_PROXY}"
            export no_proxy="$NO_PROXY" PYTHONDONTWRITEBYTECODE=1
            timeout -k 10 "$SUITE_TIMEOUT" /usr/bin/python3 -m pytest -q \
                -p no:cacheprovider "$d"
        ) >"$out/log" 2>&1 || local_rc=$?
        cat "$out/log"
        [ "$local_rc" -eq 124 ] && echo "$suite: $d timed out after ${SUITE_TIMEOUT}s"
        # pytest's closing line, e.g. "2 failed, 10 passed, 1 skipped in 3.1s"
        line=$(grep -E '^=*[^=]*\b(passed|failed|errors?|skipped|xfailed|xpassed|no tests ran)\b.* in [0-9.]+s' \
            "$out/log" | tail -n 1 || true)
        local dpass=0 dfail=0
        while read -r n word; do
            case "$word" in
                passed | xpassed) dpass=$((dpass + n)) ;;
                failed | error | errors) dfail=$((dfail + n)) ;;
                skipped | xfailed) skip=$((skip + n)) ;;
            esac
        done < <(grep -oE '[0-9]+ (passed|failed|errors?|skipped|xfailed|xpassed)' <<<"$line" || true)
        # 5 is "no tests collected": a suite that ran nothing failed
        [ "$local_rc" -ne 0 ] && [ "$dfail" -eq 0 ] && dfail=1
        pass=$((pass + dpass))
        fail=$((fail + dfail))
    done
    record "$suite" "$pass" "$((fail + setup_fail))" "$skip"
}

suite_python() {
    run_pytest python test/python test/protocol
}

# The security suite: each attack of the least-privilege review, made by
# non-superuser roles that the tests create, must fail.
suite_security() {
    run_pytest security test/security
}

# The outbound suite: the sender's pushes against a scripted receiver and
# against this cluster's own listener (issue 17).
suite_outbound() {
    run_pytest outbound test/outbound
}

# The ssf suite: the SSF transmitter (issue 13) against the real listener
suite_ssf() {
    run_pytest ssf test/ssf
}

suite_perl() {
    local -a files=()
    local f rc pass=0 fail=0 skip=0 p x s out="$WORK/perl" tree deadline
    for f in "$REPO"/test/t/*.pl; do
        [ -e "$f" ] && files+=("test/t/$(basename "$f")")
    done
    if [ ${#files[@]} -eq 0 ]; then
        record perl 0 0 0 "no test/t/*.pl"
        return
    fi
    mkdir -p "$out"
    tree=$REPO
    if is_root; then
        # initdb refuses root: run the tests as postgres, on a copy of the
        # tree that postgres can read and write.
        tree="$WORK/perl-tree"
        mkdir -p "$tree"
        tar -C "$REPO" --exclude=./.git --exclude=./.local -cf - . | tar -C "$tree" -xf -
        chown -R postgres:postgres "$tree" "$out"
        mount_perl_tmpfs
    fi
    # As root (and in CI) the disk-full test must run: its skip is a failure
    if is_root || [ "${CI:-}" = true ]; then
        export SETSTREAM_TMPFS_REQUIRED=1
    fi
    local -a senv=()
    if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
        as_pg_user mkdir -p "$out/sanitizer"
        mapfile -t senv < <(sanitizer_env "$out/sanitizer")
        SANITIZER_DIRS+=("$out/sanitizer")
    fi
    echo "== perl: ${#files[@]} file(s)"
    deadline=$((SECONDS + PERL_TIMEOUT))
    for f in "${files[@]}"; do
        rc=0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "perl: suite time limit reached; not running $f"
            fail=$((fail + 1))
            continue
        fi
        rm -rf "$out/tmp_check"
        (
            cd "$tree"
            export PG_REGRESS="$PGLIB/pgxs/src/test/regress/pg_regress"
            export PATH="$PGBIN:$PATH" TESTDIR="$out" SETSTREAM_REPO="$tree"
            # the nodes these tests start load setstream.so: in sanitizer
            # mode they need the runtime too (inherited from prove)
            as_pg_user env "${senv[@]}" timeout -k 10 $((deadline - SECONDS)) \
                prove --verbose -I "$PGLIB/pgxs/src/test/perl" "$f"
        ) >"$out/log" 2>&1 || rc=$?
        cat "$out/log"
        [ "$rc" -eq 124 ] && echo "$f: timed out (suite limit ${PERL_TIMEOUT}s)"
        if [ "$rc" -ne 0 ]; then
            # the servers' logs say why
            for s in "$out"/tmp_check/log/*.log; do
                [ -e "$s" ] || continue
                echo "-- $(basename "$s") (last 40 lines)"
                tail -n 40 "$s"
            done
        fi
        read -r p x s < <(tap_count "$out/log" "$rc")
        pass=$((pass + p)) fail=$((fail + x)) skip=$((skip + s))
        if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
            # keep the nodes' logs for check_sanitizer (tmp_check goes)
            for s in "$out"/tmp_check/log/*.log; do
                [ -e "$s" ] && cp "$s" "$out/sanitizer/$(basename "$f" .pl)-$(basename "$s")"
            done
        fi
    done
    if [ -n "$TMPFS_UP" ]; then
        umount "$TMPFS_UP" && TMPFS_UP=""
    fi
    record perl "$pass" "$fail" "$skip"
}

# A small tmpfs that the disk-full TAP test (test/t/009_disk_full.pl) may
# fill: the tests run as postgres, which cannot mount.  Without it (not
# root, no mount rights) that test skips and says why; as root, or with
# CI=true, it fails instead (SETSTREAM_TMPFS_REQUIRED).
mount_perl_tmpfs() {
    local dir="$WORK/tmpfs"
    mkdir -p "$dir"
    if mount -t tmpfs -o size=16m,mode=0700 setstream-test "$dir" 2>/dev/null; then
        chown postgres:postgres "$dir"
        TMPFS_UP=$dir
        export SETSTREAM_TMPFS=$dir
    else
        echo "perl: could not mount a tmpfs at $dir; the disk-full test will fail"
    fi
}

suite_fuzz() {
    local t line out="$WORK/fuzz"
    local -a targets=(fuzz_set fuzz_commobj fuzz_http fuzz_ws fuzz_client)
    mkdir -p "$out"
    echo "== fuzz: ${#targets[@]} target(s)"
    if ! make -C "$REPO/test/fuzz" PG_CONFIG="$PG_CONFIG" all >"$out/build.log" 2>&1; then
        grep -E 'error|undefined' "$out/build.log" | head -n 40
        record fuzz 0 1 0 "the fuzz targets did not build (clang-14)"
        return
    fi
    for t in "${targets[@]}"; do
        if line=$(nice -n 10 "$REPO/test/fuzz/run-target.sh" regress "$t" \
                      "${SETSTREAM_FUZZ_SECONDS:-5}" 2>&1); then
            echo "$line"
            record "$t" 1 0 0 "${line#*: }"
        else
            echo "$line"
            record "$t" 0 1 0 "see test/fuzz/build/$t.regress.log"
        fi
    done
}

# SANITIZER_REPORT_RE — the first line of an ASan or UBSan report.  Reports
# go to the log_path files, but a server may print them to its stderr, the
# server log, instead (seen with UBSan and ASan reporting the same fault).
# CRASH_RE — a crash in a server log: a PANIC, or the postmaster reporting
# a process that a signal ended.
CRASH_RE='PANIC:|terminated by signal'

SANITIZER_REPORT_RE='^==[0-9]+==ERROR: [A-Za-z]+Sanitizer|^[^ ]+:[0-9]+:[0-9]+: runtime error: '

# check_sanitizer — sanitizer mode: one failure per ASan/UBSan report that
# any server (the test cluster, the perl suite's nodes) wrote, in a report
# file (asan.<pid>, ubsan.<pid>) or in its server log.
check_sanitizer() {
    local -a reports=() logs=()
    local f n total=0
    mapfile -t reports < <(sanitizer_reports "${SANITIZER_DIRS[@]}")
    mapfile -t logs < <(find "${SANITIZER_DIRS[@]}" -type f -name '*.log' 2>/dev/null)
    [ -n "${SETSTREAM_LOGFILE:-}" ] && logs+=("$SETSTREAM_LOGFILE")
    echo
    echo "== sanitizer: report files and server logs in ${SANITIZER_DIRS[*]} ${SETSTREAM_LOGFILE:-}"
    # halt_on_error: a process stops at its first report, so one file
    # (asan.<pid> or ubsan.<pid>) is one report
    for f in "${reports[@]}"; do
        echo "-- $f (first 80 lines)"
        head -n 80 "$f"
        total=$((total + 1))
    done
    for f in "${logs[@]}"; do
        [ -f "$f" ] || continue
        n=$(grep -cE "$SANITIZER_REPORT_RE" "$f" || true)
        [ "$n" -gt 0 ] || continue
        echo "-- $f: $n report(s) (each with 20 lines)"
        grep -A 20 -E "$SANITIZER_REPORT_RE" "$f" | head -n 200
        total=$((total + n))
    done
    if [ "$total" -eq 0 ]; then
        record sanitizer 1 0 0 "no ASan/UBSan report"
    else
        record sanitizer 0 "$total" 0 "one per ASan/UBSan report, printed above"
    fi
}

# ------------------------------------------------------------------ main

check_suites

SUITE_TIMEOUT=${SETSTREAM_SUITE_TIMEOUT:-480}
PERL_TIMEOUT=${SETSTREAM_PERL_TIMEOUT:-1200}
SANITIZER_DIRS=()
if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
    SUITE_TIMEOUT=${SETSTREAM_SUITE_TIMEOUT:-960}
    PERL_TIMEOUT=${SETSTREAM_PERL_TIMEOUT:-2400}
fi

echo "== dependencies"
if ! "$SCRIPTS/deps.sh"; then
    record deps 0 1 0 "scripts/deps.sh failed"
fi

# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"
export PATH="$PGBIN:$PATH"
cd "$REPO"

WORK=$(mktemp -d /tmp/setstream-test.XXXXXX)
chmod 755 "$WORK"

echo "== build"
if ! build_and_install >"$WORK/build.log" 2>&1; then
    echo "build failed; compiler output:"
    cat "$WORK/build.log"
    record build 0 1 0 "make or make install failed"
    FINISHED=1
    print_summary
    exit 1
fi
grep -E ': (warning|error):' "$WORK/build.log" || true
echo "built and installed $(basename "$PGLIB")/setstream.so into $PGLIB"

echo "== cluster"
cluster_destroy test
listener_port=$(free_port "${SETSTREAM_LISTENER_PORT:-18417}")
CLUSTER_UP=1
# The protocol suite fails authentication from 127.0.0.1 dozens of times a
# minute on purpose; its rate-limit tests set setstream.auth_failure_limit
# themselves and fail from other loopback addresses.  Two-phase commit
# (test/protocol/test_two_phase.py) needs max_prepared_transactions; the
# IPv6 rate-limit test (test_ipv6_ratelimit.py) a listener on ::1.
if ! cluster_start test "${SETSTREAM_TEST_PORT:-54329}" \
        "setstream.port = $listener_port" \
        "setstream.auth_failure_limit = 1000" \
        "setstream.listen_addresses = '127.0.0.1,::1'" \
        "max_prepared_transactions = 10"; then
    record cluster 0 1 0 "the test cluster did not start"
    FINISHED=1
    print_summary
    exit 1
fi

if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
    SANITIZER_DIRS+=("$SETSTREAM_CLUSTER_DIR/sanitizer")
    echo "sanitizer mode: ASan/UBSan build; reports go to $SETSTREAM_CLUSTER_DIR/sanitizer"
fi
export SETSTREAM_PORT=$listener_port
# pids that tests kill on purpose (see the cluster-log check below)
export SETSTREAM_KILLED_PIDS="$WORK/killed-pids"
: >"$SETSTREAM_KILLED_PIDS"
export SETSTREAM_URL="http://127.0.0.1:$listener_port"
echo "cluster 'test' on port $PGPORT (socket $PGHOST), listener port $SETSTREAM_PORT"

for suite in "${SUITES[@]}"; do
    if want_suite "$suite"; then
        "suite_$suite"
    fi
done

# A crashed backend or worker (a PANIC, a process terminated by a signal)
# fails the run, one failure per line, whether or not a test noticed it.
# (The perl suite's nodes are killed on purpose; their tests check their
# own logs.)
# Tests that SIGKILL a process of the test cluster on purpose write its pid
# to $SETSTREAM_KILLED_PIDS; the postmaster's line for that pid is not a
# crash.
cluster_crashes() {
    local -a skip=()
    local pid
    while read -r pid; do
        [ -n "$pid" ] && skip+=(-e "(PID $pid) was terminated by signal 9")
    done <"$SETSTREAM_KILLED_PIDS"
    if [ ${#skip[@]} -gt 0 ]; then
        grep -E "$CRASH_RE" "$SETSTREAM_LOGFILE" 2>/dev/null | grep -vF "${skip[@]}" || true
    else
        grep -E "$CRASH_RE" "$SETSTREAM_LOGFILE" 2>/dev/null || true
    fi
}
crashes=$(cluster_crashes | grep -c . || true)
if [ "${crashes:-0}" -gt 0 ]; then
    echo
    echo "-- crashes in the test cluster's log ($SETSTREAM_LOGFILE)"
    cluster_crashes | head -n 20
    record cluster-log 0 "$crashes" 0 "PANIC or terminated by signal in $SETSTREAM_LOGFILE"
else
    record cluster-log 1 0 0 "no PANIC, no process terminated by signal"
fi

if [ -n "${SETSTREAM_SANITIZE:-}" ]; then
    check_sanitizer
fi

FINISHED=1
print_summary
[ "$TOTAL_FAIL" -eq 0 ]
