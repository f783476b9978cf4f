#!/usr/bin/env bash
# scripts/test-majors.sh — run the full test command (scripts/test.sh) on
# every PostgreSQL major in SETSTREAM_PG_MAJORS (default "15 17") and close
# with one line summing them all:
#   N passed, N failed[, N skipped]
#
# The host's own major (15 on Debian 12) runs here, as scripts/test.sh
# alone would; every other major runs inside its minimal Debian root
# (scripts/pgroot.sh: 17 is Debian 13 "trixie", 18 is unstable "sid"),
# which is made first when missing.  The working tree (without .git and
# .local) is copied into the root as /setstream, and scripts/test.sh runs
# there unchanged, as the root's root user: it builds against that
# release's PostgreSQL, with its own compiler, and runs the private
# clusters as the root's `postgres` user.  The SETSTREAM_* knobs of
# scripts/test.sh (ports, timeouts, SETSTREAM_SUITES, ...) apply to every
# major.  Each major's output goes to stdout, and to
# .local/majors/<major>.log.
#
# Then, unless SETSTREAM_PACKAGE=0, scripts/test-package.sh builds the
# Debian package postgresql-15-setstream in a Debian 12 root and tests it
# in a fresh one (.local/majors/package.log); its count is in the sum.
#
# Exits non-zero when anything failed on any major or in the package test.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$SCRIPTS/.." && pwd -P)
MAJORS=${SETSTREAM_PG_MAJORS:-15 17}
LOGS=$REPO/.local/majors

"$SCRIPTS/deps.sh"
HOST_MAJOR=$("$SCRIPTS/deps.sh" --list | sed -n 's/^postgresql-server-dev-//p')
mkdir -p "$LOGS"

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
LINES=()

# tally MAJOR LOG SECONDS — add the closing line of one run of test.sh
tally() {
    local major=$1 log=$2 secs=$3 line p=0 x=0 s=0
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" |
               tail -n 1 || true)
    if [ -n "$line" ]; then
        read -r p x s < <(sed -E 's/^([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?$/\1 \2 \4/' <<<"$line")
        s=${s:-0}
    else
        # no closing line: the run (or making the root) broke
        x=1
        line="no closing line: counted as 1 failure"
    fi
    TOTAL_PASS=$((TOTAL_PASS + p))
    TOTAL_FAIL=$((TOTAL_FAIL + x))
    TOTAL_SKIP=$((TOTAL_SKIP + s))
    local label="PostgreSQL $major"
    [ "$major" = package ] && label="Debian package"
    LINES+=("$(printf '  %-14s %s  (%dm%02ds)' "$label" "$line" \
        $((secs / 60)) $((secs % 60)))")
}

# copy_tree ROOT — the working tree, fresh, as ROOT/setstream
copy_tree() {
    local dest=$1/setstream
    rm -rf --one-file-system "$dest"
    mkdir -p "$dest"
    tar -C "$REPO" --exclude=./.git --exclude=./.local --exclude='*.o' \
        --exclude='*.so' --exclude='*.bc' --exclude=./test/fuzz/build \
        --exclude=__pycache__ --exclude=./results --exclude=./tmp_check \
        -cf - . | tar -C "$dest" -xf -
}

for major in $MAJORS; do
    log=$LOGS/$major.log
    start=$SECONDS
    echo "=========== PostgreSQL $major"
    if [ "$major" = "$HOST_MAJOR" ]; then
        "$SCRIPTS/test.sh" 2>&1 | tee "$log" || true
    else
        {
            if "$SCRIPTS/pgroot.sh" "$major"; then
                root=$("$SCRIPTS/pgroot.sh" "$major" path)
                copy_tree "$root"
                "$SCRIPTS/pgroot.sh" "$major" run bash /setstream/scripts/test.sh || true
            else
                echo "test-majors.sh: could not make the root of PostgreSQL $major"
            fi
        } 2>&1 | tee "$log"
    fi
    tally "$major" "$log" $((SECONDS - start))
done

if [ "${SETSTREAM_PACKAGE:-1}" != 0 ]; then
    start=$SECONDS
    echo "=========== Debian package"
    "$SCRIPTS/test-package.sh" 2>&1 | tee "$LOGS/package.log" || true
    tally package "$LOGS/package.log" $((SECONDS - start))
fi

echo
echo "== majors"
for line in "${LINES[@]}"; do
    echo "$line"
done
if [ "$TOTAL_SKIP" -gt 0 ]; then
    echo "$TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
else
    echo "$TOTAL_PASS passed, $TOTAL_FAIL failed"
fi
[ "$TOTAL_FAIL" -eq 0 ]
