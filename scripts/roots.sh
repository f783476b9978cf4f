#!/usr/bin/env bash
# scripts/roots.sh — Debian roots for the tests of other PostgreSQL majors
# (scripts/pgroot.sh) and of the Debian package (scripts/test-package.sh):
# the mounts a root needs, running a command inside it, and its apt, dpkg
# and service settings.  Sourced; needs root (mount, chroot).

ROOT_MOUNTS=()

# root_mount ROOT TARGET ARGS... — mount ARGS on ROOT/TARGET unless mounted
root_mount() {
    local target=$1$2
    shift 2
    mkdir -p "$target"
    if ! mountpoint -q "$target"; then
        mount "$@" "$target"
        ROOT_MOUNTS=("$target" "${ROOT_MOUNTS[@]}")
    fi
}

# root_mount_all ROOT — /proc, /sys, /dev, /dev/pts and /dev/shm (POSIX
# shared memory: PostgreSQL's dynamic shared memory)
root_mount_all() {
    root_mount "$1" /proc -t proc proc
    root_mount "$1" /sys -t sysfs sysfs
    root_mount "$1" /dev --bind /dev
    root_mount "$1" /dev/pts -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts
    root_mount "$1" /dev/shm -t tmpfs -o mode=1777,size=512m shm
}

# root_umount_all — what root_mount mounted, innermost first
root_umount_all() {
    local m
    for m in "${ROOT_MOUNTS[@]}"; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done
    ROOT_MOUNTS=()
}

# root_umount_stale ROOT — what an interrupted run left mounted in ROOT
root_umount_stale() {
    local m
    while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" || true
    done < <(awk -v root="$1/" 'index($2 "/", root) == 1 { print $2 }' /proc/mounts |
                 sort -r)
}

# root_run ROOT CMD... — CMD inside ROOT with a clean environment; the
# SETSTREAM_* and CI variables are kept.  apt reaches the mirror with the
# host's resolver.
root_run() {
    local root=$1
    shift
    local -a keep=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
        HOME=/root LANG=C.UTF-8 LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive)
    local var
    for var in $(compgen -e); do
        case "$var" in
            SETSTREAM_*|CI) keep+=("$var=${!var}") ;;
        esac
    done
    cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    chroot "$root" /usr/bin/env -i "${keep[@]}" "$@"
}

# root_configure ROOT MIRROR SUITE — apt sources, no services started,
# no `main` cluster (the tests make their own), no recommends, no
# documentation (rewritten every time)
root_configure() {
    local root=$1 mirror=$2 suite=$3
    echo "deb $mirror $suite main" >"$root/etc/apt/sources.list"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    mkdir -p "$root/etc/postgresql-common"
    echo 'create_main_cluster = false' >"$root/etc/postgresql-common/createcluster.conf"
    cat >"$root/etc/apt/apt.conf.d/90setstream" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Dpkg::Options { "--force-confold"; "--force-confdef"; };
EOF
    # The mirror's unstable may lag behind its Release file's Valid-Until
    # (seen: expired for a month).  The signatures are still checked.
    if [ "$suite" = sid ]; then
        echo 'Acquire::Check-Valid-Until "false";' \
            >"$root/etc/apt/apt.conf.d/91setstream-valid-until"
    fi
    cat >"$root/etc/dpkg/dpkg.cfg.d/90setstream-nodoc" <<'EOF'
path-exclude /usr/share/doc/*
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
EOF
}
