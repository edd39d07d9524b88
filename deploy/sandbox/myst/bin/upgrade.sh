#!/bin/sh
# Upgrade MyST Studio in place: pull <VERSION>, back up the database, stop, start.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 1 ] || usage "upgrade.sh <VERSION>"
check_version "$1"
"$MYST_BIN/pull.sh" "$1"
"$MYST_BIN/backup-database.sh"
"$MYST_BIN/stop.sh"
"$MYST_BIN/start.sh"
