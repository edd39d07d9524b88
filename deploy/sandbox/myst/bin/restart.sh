#!/bin/sh
# Restart the MyST Studio web instance (a newer local image upgrades the database on boot).
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "restart.sh"
"$MYST_BIN/stop.sh"
"$MYST_BIN/start.sh"
