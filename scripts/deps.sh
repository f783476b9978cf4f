#!/usr/bin/env bash
# scripts/deps.sh — install every Debian package that setstream's build and
# test suites need (see shared DESIGN.md, "Dependencies").
#
# Idempotent: when dpkg already reports every package installed it does
# nothing (no apt-get update, no network).  Otherwise it runs
# `apt-get update` once and installs the missing ones, with sudo when not
# root.  The list is the single source of truth for the project's packages.
#
# The same list serves every Debian release the project is tested on: the
# PostgreSQL major and the clang/LLVM version in the names follow the
# release (Debian 12 "bookworm": 15 and 14; Debian 13 "trixie": 17 and 19;
# unstable "sid": 18 and 19), so that scripts/pgroot.sh installs the very
# same packages inside its debootstrap roots.  SETSTREAM_PG_MAJOR and
# SETSTREAM_LLVM_MAJOR override the two numbers.
#
#   scripts/deps.sh          install what is missing
#   scripts/deps.sh --list   print the package names, one a line
set -euo pipefail

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
# postgresql-contrib: a package of its own in bookworm; from trixie on only
# a name that postgresql provides (the modules are in postgresql-MAJOR)
contrib=
case "$codename" in
    bookworm) pg=15 llvm=14 contrib=postgresql-contrib ;;
    trixie) pg=17 llvm=19 ;;
    *) pg=18 llvm=19 ;; # unstable (sid), testing
esac
pg=${SETSTREAM_PG_MAJOR:-$pg}
llvm=${SETSTREAM_LLVM_MAJOR:-$llvm}

PACKAGES=(
    # server, PGXS, compiler
    "postgresql-$pg" "postgresql-server-dev-$pg" ${contrib:+"$contrib"}
    build-essential gcc make
    # sanitizer mode (SETSTREAM_SANITIZE=1): gcc's ASan and UBSan runtimes
    # (gcc 12 to 15 all ship libasan8)
    libasan8 libubsan1
    # libraries linked into setstream.so
    libjansson-dev libcjose-dev libssl-dev libhttp-parser-dev libwslay-dev
    libcurl4-openssl-dev
    # SQL tests: pgTAP, pg_prove, PostgreSQL's Perl TAP framework
    "postgresql-$pg-pgtap" libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
    # protocol / interop tests
    python3 python3-pytest python3-jwcrypto python3-websockets python3-cryptography
    python3-requests python3-psycopg2 python3-psycopg python3-h2
    python3-prometheus-client
    # tools used by tests, the demo and the benchmarks (iproute2: `ip`, for
    # test_ipv6_ratelimit.py; util-linux: prlimit, for t/013; procps: ps)
    openssl curl wrk iproute2 util-linux procps
    # fuzzing (test/fuzz): clang with libFuzzer and the sanitizers, llvm-cov
    "clang-$llvm" "libclang-rt-$llvm-dev" "llvm-$llvm"
)
# the host makes the roots of the other majors (scripts/pgroot.sh)
if [ "$codename" = bookworm ]; then
    PACKAGES+=(debootstrap)
fi

# --bench: also what bench/run.sh needs beyond the tests (scenario
# push_send: a fast local receiver, nginx, and h2load for its HTTP/2
# limit).  Installing nginx-light on a machine that runs systemd enables
# its default site on port 80; the benchmark does not use it (it runs its
# own nginx on loopback ports), and `systemctl disable --now nginx` turns
# it off.
if [ "${1:-}" = --bench ]; then
    PACKAGES+=(nginx-light nghttp2-client)
    shift
fi

if [ "${1:-}" = --list ]; then
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
fi

# One dpkg-query for the whole list; a package it does not know is missing.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${PACKAGES[@]}" \
                2>/dev/null | awk '$2 == "installed" { print $1 }' || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
    grep -qxF -- "$pkg" <<<"$installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "deps.sh: missing packages: ${missing[*]}" >&2
    echo "deps.sh: not root and sudo is not available; install them as root with:" >&2
    echo "    apt-get install --no-install-recommends ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
