#!/bin/sh
# Load a backup into the MyST Studio database: stop the web instance, load, start it again.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 1 ] || usage "update-database.sh <backup>"
backup=$1
[ -f "$backup" ] && [ -r "$backup" ] || die "no readable backup at $backup"
grep -q '^schema_version=' "$backup" || die "$backup is not a MyST Studio database backup"

"$MYST_BIN/stop.sh"
mkdir -p "$MYST_HOME/data"
cp "$backup" "$MYST_DB.loading" && mv -f "$MYST_DB.loading" "$MYST_DB" ||
    die "could not load $backup into $MYST_DB"
echo "Loaded $backup into the database"
"$MYST_BIN/start.sh"
