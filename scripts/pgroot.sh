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

# ------------------------------------------------------------ mounts

MOUNTED=()

# mount_in TARGET ARGS... — mount ARGS on $ROOT/TARGET unless mounted there
mount_in() {
    local target=$ROOT$1
    shift
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount "$@" "$target"
        MOUNTED=("$target" "${MOUNTED[@]}")
    fi
}

mount_all() {
    mount_in /proc -t proc proc
    mount_in /sys -t sysfs sysfs
    mount_in /dev --bind /dev
    mount_in /dev/pts -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts
    # POSIX shared memory (PostgreSQL's dynamic shared memory)
    mount_in /dev/shm -t tmpfs -o mode=1777,size=512m shm
}

umount_all() {
    local m
    for m in "${MOUNTED[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    MOUNTED=()
}
trap umount_all EXIT

# umount_stale — unmount what an interrupted run left mounted in the root
umount_stale() {
    local m
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(awk -v root="$ROOT/" 'index($2 "/", root) == 1 { print $2 }' /proc/mounts |
                 sort -r)
}

# in_root CMD... — run CMD inside the root with a clean environment; the
# SETSTREAM_* and CI variables are kept.
in_root() {
    local -a keep=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    local var
    for var in $(compgen -e); do
        case "$var" in
            SETSTREAM_*|CI) keep+=("$var=${!var}") ;;
        esac
    done
    # apt reaches the mirror with the host's resolver
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
    chroot "$ROOT" /usr/bin/env -i "${keep[@]}" "$@"
}

# ------------------------------------------------------------ making

make_root() {
    local tmp=$ROOT.tmp
    if [ -x "$ROOT/usr/bin/apt-get" ] && [ ! -e "$ROOT/debootstrap" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null || "$SCRIPTS/deps.sh"
    mkdir -p "$ROOTS"
    # an interrupted run leaves mounts or a half-made tree: start over
    umount_stale
    [ -d "$ROOT" ] && rm -rf --one-file-system "$ROOT"
    if [ -d "$tmp/debootstrap" ] || [ ! -x "$tmp/usr/bin/apt-get" ]; then
        rm -rf --one-file-system "$tmp"
        echo "pgroot.sh: debootstrap --variant=minbase $SUITE $ROOT ($MIRROR)" >&2
        debootstrap --variant=minbase "$SUITE" "$tmp" "$MIRROR" >&2
    fi
    mv "$tmp" "$ROOT"
}

# configure_root — apt, dpkg and service settings (rewritten every time)
configure_root() {
    cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
EOF
    # never start services inside the root
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod 755 "$ROOT/usr/sbin/policy-rc.d"
    # no `main` cluster: the tests make their own
    mkdir -p "$ROOT/etc/postgresql-common"
    echo 'create_main_cluster = false' >"$ROOT/etc/postgresql-common/createcluster.conf"
    # slim: no documentation, no recommends
    cat >"$ROOT/etc/apt/apt.conf.d/90setstream" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confold"; "--force-confdef"; };
EOF
    # The mirror's unstable may lag behind its Release file's Valid-Until
    # (seen: expired for a month).  The signatures are still checked.
    if [ "$SUITE" = sid ]; then
        echo 'Acquire::Check-Valid-Until "false";' \
            >"$ROOT/etc/apt/apt.conf.d/91setstream-valid-until"
    fi
    cat >"$ROOT/etc/dpkg/dpkg.cfg.d/90setstream-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
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
        configure_root
        mount_all
        install_packages
        umount_all
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
        mount_all
        rc=0
        in_root "$@" || rc=$?
        umount_all
        exit "$rc"
        ;;
    *)
        usage
        ;;
esac
