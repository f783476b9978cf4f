#!/usr/bin/env bash
# scripts/stop.sh — stop the demo cluster that scripts/setup.sh started.
# Its data stays in place; scripts/setup.sh starts it again.
set -euo pipefail

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
# shellcheck source=scripts/lib.sh
. "$SCRIPTS/lib.sh"

dir=$(cluster_dir_for demo)
if cluster_running "$dir"; then
    cluster_stop demo
    echo "stopped the demo cluster ($dir)"
else
    echo "the demo cluster is not running"
fi
