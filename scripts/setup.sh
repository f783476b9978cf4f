#!/usr/bin/env bash
# scripts/setup.sh — the README quick start.
#
# Installs the Debian dependencies, builds and installs setstream, and
# starts a private PostgreSQL 15 cluster named `demo` (port 54320, or the
# next free one) that keeps running, with the extension created and a demo
# stream that has a signing key and a bearer token.  Prints how to connect
# and what to try.  Rerunning it reuses the running cluster (restarting it
# only when the installed setstream.so changed).  scripts/stop.sh stops it.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)

"$SCRIPTS/deps.sh"
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"
cd "$REPO"

echo "== building and installing setstream"
buildlog=$(mktemp /tmp/setstream-build.XXXXXX)
if ! build_and_install >"$buildlog" 2>&1; then
    cat "$buildlog"
    rm -f "$buildlog"
    echo "setup.sh: the build failed (output above)" >&2
    exit 1
fi
rm -f "$buildlog"

dir=$(cluster_dir_for demo)
so_sum=$(sha256sum "$PGLIB/setstream.so" | cut -d' ' -f1)
if cluster_running "$dir" &&
    [ "$(cat "$dir/setstream.so.sha256" 2>/dev/null)" != "$so_sum" ]; then
    echo "== restarting the demo cluster to load the new setstream.so"
    cluster_stop demo
fi
if cluster_running "$dir"; then
    echo "== reusing the running demo cluster"
    cluster_start demo 54320
else
    echo "== starting the demo cluster"
    cluster_start demo 54320 "setstream.port = $(free_port 8417)"
fi
echo "$so_sum" >"$dir/setstream.so.sha256"

sql() {
    "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d postgres \
        -c "SET client_min_messages = warning" -c "$1"
}

sql "CREATE EXTENSION IF NOT EXISTS setstream" >/dev/null
# a demo cluster made by an older setstream: its schema follows the build
sql "ALTER EXTENSION setstream UPDATE" >/dev/null

created=""
if [ "$(sql "SELECT count(*) FROM setstream.streams WHERE name = 'demo'")" = 0 ]; then
    sql "SELECT setstream.create_stream('demo', 'https://db.example.com',
            ARRAY['https://receiver.example.com'], 'https://idp.example.com')" >/dev/null
    created=1
    echo "created stream 'demo'"
fi

signing_keys=$(sql "SELECT count(*) FROM setstream.keys
                     WHERE stream = 'demo' AND purpose = 'sign' AND revoked_at IS NULL")
if [ "$signing_keys" = 0 ]; then
    jwk=$(sql "SELECT setstream.generate_key('demo', 'ES256')")
    echo "generated the stream's ES256 signing key; public JWK:"
    echo "  $jwk"
fi

tokenfile="$REPO/.local/demo-token"
if [ -n "$created" ] || [ ! -s "$tokenfile" ]; then
    token=$(sql "SELECT setstream.issue_token('demo')")
    (umask 077 && printf '%s\n' "$token" >"$tokenfile.new")
    mv "$tokenfile.new" "$tokenfile"
    token_note="new; saved in .local/demo-token (mode 600)"
else
    token=$(cat "$tokenfile")
    token_note="issued earlier; from .local/demo-token"
fi

listener_port=$(sql "SELECT current_setting('setstream.port', true)")

# The listener starts a moment after the extension exists: wait for it
if [ -n "$listener_port" ]; then
    for _ in $(seq 1 50); do
        curl -s -o /dev/null -m 1 "http://127.0.0.1:$listener_port/jwks.json" && break
        sleep 0.2
    done
fi

cat <<EOF

setstream demo cluster is running.

  connect:  psql -h $PGHOST -p $PGPORT -U postgres
  bearer token for stream 'demo' ($token_note):
            $token

Try, in psql:
  SELECT setstream.emit('demo', 'https://schemas.openid.net/secevent/caep/event-type/session-revoked', '{}', '{"format":"email","email":"user@example.com"}');
  SELECT setstream.poll('demo', '{"returnImmediately":true}');
EOF
if [ -n "$listener_port" ]; then
    cat <<EOF

Over HTTP (the listener, port $listener_port):
  curl -s http://127.0.0.1:$listener_port/jwks.json
  curl -s -X POST -H "Authorization: Bearer \$(cat .local/demo-token)" \\
       -H 'Content-Type: application/json' -d '{"returnImmediately":true}' \\
       http://127.0.0.1:$listener_port/streams/demo/poll
EOF
fi
cat <<EOF

Server log: $dir/logfile
Stop it:    scripts/stop.sh
EOF
