#!/usr/bin/env bash
# scripts/pgroot.sh — a minimal Debian root for testing setstream on another
# PostgreSQL major (scripts/test-majors.sh).
#
#   scripts/pgroot.sh MAJOR            make or refresh the root of MAJOR
#   scripts/pgroot.sh MAJOR run CMD... run CMD inside it, as root, with
#                                      /proc, /sys, /dev, /dev/pts and
#                                      /dev/shm mounted (and unmounted after)
#   scripts/pgroot.sh MAJOR path       print the root's directory
#
# MAJOR is the PostgreSQL major of a Debian release: 17 is Debian 13
# "trixie", 18 is unstable "sid" (15 is this machine's Debian 12 itself).
# The root is $SETSTREAM_ROOTS/<suite> (default .local/roots/<suite>, which
# git ignores), made with `debootstrap --variant=minbase` from
# $SETSTREAM_DEBIAN_MIRROR (default http://deb.debian.org/debian); inside
# it scripts/deps.sh installs the same packages as here, named for that
# release (postgresql-MAJOR, postgresql-server-dev-MAJOR,
# postgresql-MAJOR-pgtap, ...).  Services never start inside the root
# (policy-rc.d), and no `main` cluster is made: the tests run private
# clusters as the root's own `postgres` user.
#
# Idempotent and quick on an existing root: it only checks, with dpkg, that
# every package is installed (scripts/deps.sh does the check, and goes to
# the network only when something is missing).  A root whose debootstrap
# was interrupted is made anew.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$SCRIPTS/.." && pwd -P)
MIRROR=${SETSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTS=${SETSTREAM_ROOTS:-$REPO/.local/roots}

usage() {
    echo "usage: $0 MAJOR [path | run CMD...]   (MAJOR: 17 or 18)" >&2
    exit 2
}

[ $# -ge 1 ] || usage
MAJOR=$1
shift
case "$MAJOR" in
    17) SUITE=trixie ;;
    18) SUITE=sid ;;
    *)
        echo "pgroot.sh: no Debian release ships PostgreSQL $MAJOR as its own" \
            "(15 is Debian 12, this machine's; 17 is trixie, 18 is sid)" >&2
        exit 2
        ;;
esac
ROOT=$ROOTS/$SUITE

if [ "$(id -u)" -ne 0 ]; then
    echo "pgroot.sh: debootstrap and chroot need root" >&2
    exit 1
fi

# ------------------------------------------------------------ the root

# shellcheck source=scripts/roots.sh
. "$SCRIPTS/roots.sh"
trap root_umount_all EXIT

in_root() { root_run "$ROOT" "$@"; }

make_root() {
    local tmp=$ROOT.tmp
    if [ -x "$ROOT/usr/bin/apt-get" ] && [ ! -e "$ROOT/debootstrap" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null || "$SCRIPTS/deps.sh"
    mkdir -p "$ROOTS"
    # an interrupted run leaves mounts or a half-made tree: start over
    root_umount_stale "$ROOT"
    [ -d "$ROOT" ] && rm -rf --one-file-system "$ROOT"
    if [ -d "$tmp/debootstrap" ] || [ ! -x "$tmp/usr/bin/apt-get" ]; then
        rm -rf --one-file-system "$tmp"
        echo "pgroot.sh: debootstrap --variant=minbase $SUITE $ROOT ($MIRROR)" >&2
        debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >&2
    fi
    mv "$tmp" "$ROOT"
}

install_packages() {
    mkdir -p "$ROOT/tmp/setstream-deps"
    cp "$SCRIPTS/deps.sh" "$ROOT/tmp/setstream-deps/deps.sh"
    in_root env SETSTREAM_PG_MAJOR="$MAJOR" bash /tmp/setstream-deps/deps.sh
    if [ ! -x "$ROOT/usr/lib/postgresql/$MAJOR/bin/pg_config" ]; then
        echo "pgroot.sh: $ROOT has no /usr/lib/postgresql/$MAJOR/bin/pg_config" >&2
        return 1
    fi
}

ACTION=${1:-make}
case "$ACTION" in
    path)
        echo "$ROOT"
        ;;
    make)
        make_root
        root_configure "$ROOT" "$MIRROR" "$SUITE"
        root_mount_all "$ROOT"
        install_packages
        root_umount_all
        echo "pgroot.sh: $ROOT has PostgreSQL $MAJOR" \
            "($(chroot "$ROOT" "/usr/lib/postgresql/$MAJOR/bin/pg_config" --version))" >&2
        ;;
    run)
        shift
        [ $# -ge 1 ] || usage
        [ -x "$ROOT/usr/lib/postgresql/$MAJOR/bin/pg_config" ] || {
            echo "pgroot.sh: no root for PostgreSQL $MAJOR yet; run $0 $MAJOR" >&2
            exit 1
        }
        root_mount_all "$ROOT"
        rc=0
        in_root "$@" || rc=$?
        root_umount_all
        exit "$rc"
        ;;
    *)
        usage
        ;;
esac
