#!/usr/bin/env bash
# scripts/test-package.sh — build the Debian package postgresql-15-setstream
# from debian/ and test it in a fresh Debian 12 root.
#
#   1. a minimal Debian 12 "bookworm" root, made once with
#      `debootstrap --variant=minbase` under .local/roots/bookworm-minbase
#      and never changed: the seed of the two roots below;
#   2. the build root (.local/roots/bookworm-debbuild, kept between runs):
#      the seed plus build-essential and the package's Build-Depends,
#      installed by name from Debian (`apt-get build-dep` on debian/control);
#      there `dpkg-buildpackage -us -uc -b` builds the committed tree (git
#      archive of HEAD, or the working tree with SETSTREAM_PACKAGE_WORKTREE=1);
#   3. the test root (.local/roots/bookworm-debtest), a fresh copy of the
#      seed every run: `apt-get install ./postgresql-15-setstream_*.deb`
#      (apt brings postgresql-15 and the libraries from Debian), a cluster
#      made with pg_createcluster with shared_preload_libraries = 'setstream',
#      CREATE EXTENSION setstream, a stream and its token, then curl pushes
#      a SET to the listener (202) and the SET is in setstream.events.
#
# Prints "N passed, N failed" at the end; exits non-zero when a step failed.
# Needs root (debootstrap, chroot).  The .deb is left in .local/package/.
#
# Environment: SETSTREAM_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# SETSTREAM_ROOTS (default .local/roots), SETSTREAM_TEST_PORT and
# SETSTREAM_LISTENER_PORT (first ports tried for the cluster and the
# listener; the roots share this machine's network).
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO=$(cd "$SCRIPTS/.." && pwd -P)
MIRROR=${SETSTREAM_DEBIAN_MIRROR:-http://deb.debian.org/debian}
ROOTS=${SETSTREAM_ROOTS:-$REPO/.local/roots}
SUITE=bookworm
MAJOR=15
SEED=$ROOTS/$SUITE-minbase
BUILD=$ROOTS/$SUITE-debbuild
TEST=$ROOTS/$SUITE-debtest
OUT=$REPO/.local/package

PASS=0
FAIL=0
START=$SECONDS

ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }

finish() {
    local rc=$?
    set +e
    [ -n "${CLUSTER_UP:-}" ] && chroot "$TEST" pg_ctlcluster "$MAJOR" main stop -m fast >/dev/null 2>&1
    root_umount_all
    if [ "$rc" -ne 0 ] && [ "$FAIL" -eq 0 ]; then
        FAIL=1
        echo "not ok - test-package.sh stopped (status $rc)"
    fi
    echo "test-package.sh: $((SECONDS - START)) s"
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
trap finish EXIT

if [ "$(id -u)" -ne 0 ]; then
    echo "test-package.sh: debootstrap and chroot need root" >&2
    exit 1
fi

# ------------------------------------------------------------ roots

# shellcheck source=scripts/roots.sh
. "$SCRIPTS/roots.sh"

make_seed() {
    if [ -x "$SEED/usr/bin/apt-get" ] && [ ! -e "$SEED/debootstrap" ]; then
        return 0
    fi
    command -v debootstrap >/dev/null || apt-get install -y debootstrap
    root_umount_stale "$SEED"
    rm -rf --one-file-system "$SEED" "$SEED.tmp"
    mkdir -p "$ROOTS"
    echo "== debootstrap --variant=minbase $SUITE ($MIRROR)"
    debootstrap --variant=minbase "$SUITE" "$SEED.tmp" "$MIRROR" >"$ROOTS/$SUITE-minbase.log" 2>&1 ||
        { tail -20 "$ROOTS/$SUITE-minbase.log"; return 1; }
    mv "$SEED.tmp" "$SEED"
}

# fresh_copy DIR — DIR becomes a copy of the seed
fresh_copy() {
    root_umount_stale "$1"
    rm -rf --one-file-system "$1"
    cp -a "$SEED" "$1"
    root_configure "$1" "$MIRROR" "$SUITE"
}

free_port() {
    local port=$1 i
    for ((i = 0; i < 200; i++)); do
        if [ -z "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]; then
            echo "$port"
            return 0
        fi
        port=$((port + 1))
    done
    return 1
}

# ------------------------------------------------------------ 1. the seed

if make_seed; then
    ok "Debian $SUITE minbase root ($SEED)"
else
    not_ok "debootstrap of Debian $SUITE"
    exit 1
fi

# ------------------------------------------------------------ 2. build

[ -x "$BUILD/usr/bin/apt-get" ] || fresh_copy "$BUILD"
root_configure "$BUILD" "$MIRROR" "$SUITE"
root_umount_stale "$BUILD"
root_mount_all "$BUILD"
rm -rf "$BUILD/build"
mkdir -p "$BUILD/build/setstream"
if [ -n "${SETSTREAM_PACKAGE_WORKTREE:-}" ]; then
    tar -C "$REPO" --exclude=./.git --exclude=./.local -cf - . | tar -C "$BUILD/build/setstream" -xf -
else
    git -C "$REPO" archive --format=tar HEAD | tar -C "$BUILD/build/setstream" -xf -
fi
echo "== build dependencies (apt-get build-dep, from debian/control)"
if root_run "$BUILD" bash -c 'apt-get update -qq && apt-get install -y -qq build-essential >/dev/null &&
        apt-get build-dep -y -qq /build/setstream >/dev/null' >"$ROOTS/debbuild-deps.log" 2>&1; then
    ok "build dependencies installed by name from Debian"
else
    tail -20 "$ROOTS/debbuild-deps.log"
    not_ok "build dependencies"
    exit 1
fi
echo "== dpkg-buildpackage -us -uc -b"
t0=$SECONDS
if root_run "$BUILD" bash -c 'cd /build/setstream && PG_UPDATECONTROL=yes dpkg-buildpackage -us -uc -b' \
        >"$ROOTS/debbuild.log" 2>&1; then
    ok "dpkg-buildpackage ($((SECONDS - t0)) s)"
else
    tail -40 "$ROOTS/debbuild.log"
    not_ok "dpkg-buildpackage"
    exit 1
fi
root_umount_all
mkdir -p "$OUT"
rm -f "$OUT"/*.deb
cp "$BUILD"/build/postgresql-"$MAJOR"-setstream_*.deb "$OUT"/
deb=$(basename "$(ls "$OUT"/postgresql-"$MAJOR"-setstream_*.deb)")
echo "built $deb"
contents=$(dpkg-deb -c "$OUT/$deb")
missing=""
for f in "usr/lib/postgresql/$MAJOR/lib/setstream.so" \
    "usr/share/postgresql/$MAJOR/extension/setstream.control" \
    $(cd "$REPO" && ls src/setstream--*.sql | sed "s|^src/|usr/share/postgresql/$MAJOR/extension/|"); do
    grep -qF "./$f" <<<"$contents" || missing="$missing $f"
done
if [ -z "$missing" ]; then
    ok "$deb holds setstream.so, setstream.control and every SQL script"
else
    echo "$contents"
    not_ok "$deb lacks$missing"
fi

# ------------------------------------------------------------ 3. install

echo "== fresh Debian $SUITE root: apt-get install ./$deb"
fresh_copy "$TEST"
root_mount_all "$TEST"
cp "$OUT/$deb" "$TEST/tmp/"
if root_run "$TEST" bash -c "apt-get update -qq && apt-get install -y -qq curl ./tmp/$deb >/dev/null" \
        >"$ROOTS/debtest-install.log" 2>&1; then
    ok "apt-get install of $deb brought its dependencies from Debian"
else
    tail -20 "$ROOTS/debtest-install.log"
    not_ok "apt-get install ./$deb"
    exit 1
fi
root_run "$TEST" dpkg -s "postgresql-$MAJOR" >/dev/null && ok "postgresql-$MAJOR came as a dependency" ||
    not_ok "postgresql-$MAJOR is not installed"

pg_port=$(free_port $((${SETSTREAM_TEST_PORT:-54329} + 10)))
http_port=$(free_port $((${SETSTREAM_LISTENER_PORT:-18417} + 10)))
root_run "$TEST" pg_createcluster "$MAJOR" main -p "$pg_port" >/dev/null
cat >>"$TEST/etc/postgresql/$MAJOR/main/postgresql.conf" <<EOF
shared_preload_libraries = 'setstream'
setstream.port = $http_port
setstream.listen_addresses = '127.0.0.1'
listen_addresses = ''
EOF
if root_run "$TEST" pg_ctlcluster "$MAJOR" main start; then
    CLUSTER_UP=1
    ok "cluster $MAJOR/main started with shared_preload_libraries = 'setstream'"
else
    tail -20 "$TEST/var/log/postgresql/postgresql-$MAJOR-main.log"
    not_ok "pg_ctlcluster start"
    exit 1
fi

psql_root() {
    root_run "$TEST" su postgres -c "psql -p $pg_port -X -q -At -v ON_ERROR_STOP=1 -c \"$1\""
}

if psql_root "CREATE EXTENSION setstream"; then
    ok "CREATE EXTENSION setstream ($(psql_root "SELECT extversion FROM pg_extension WHERE extname = 'setstream'"))"
else
    not_ok "CREATE EXTENSION setstream"
    exit 1
fi
psql_root "SELECT setstream.create_stream('pkg', 'https://db.example.com/pkg',
    ARRAY['https://receiver.example.com/pkg'], peer_issuer => 'https://idp.example.com/',
    allow_unsigned => true)" >/dev/null
token=$(psql_root "SELECT setstream.issue_token('pkg')")

# the listener starts once CREATE EXTENSION has made its role
for _ in $(seq 1 100); do
    root_run "$TEST" curl -s -o /dev/null "http://127.0.0.1:$http_port/jwks.json" && break
    sleep 0.2
done

b64u() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
jti="pkg-$(date +%s%N)"
claims=$(printf '{"iss":"https://idp.example.com/","aud":"https://db.example.com/pkg","iat":%d,"jti":"%s","sub_id":{"format":"opaque","id":"u1"},"events":{"https://schemas.openid.net/secevent/caep/event-type/session-revoked":{}}}' \
    "$(date +%s)" "$jti")
set_token="$(printf '{"alg":"none","typ":"secevent+jwt"}' | b64u).$(printf '%s' "$claims" | b64u)."
status=$(root_run "$TEST" curl -s -o /dev/null -w '%{http_code}' -X POST \
    -H "Authorization: Bearer $token" -H 'Content-Type: application/secevent+jwt' \
    --data-binary "$set_token" "http://127.0.0.1:$http_port/streams/pkg/events" || true)
if [ "$status" = 202 ]; then
    ok "curl in the root pushed a SET to the listener: 202"
else
    tail -20 "$TEST/var/log/postgresql/postgresql-$MAJOR-main.log"
    not_ok "push answered $status, not 202"
fi
stored=$(psql_root "SELECT count(*) FROM setstream.events WHERE stream = 'pkg' AND jti = '$jti'")
[ "$stored" = 1 ] && ok "the pushed SET is in setstream.events" || not_ok "the pushed SET was not stored ($stored)"
