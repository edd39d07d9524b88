#!/bin/sh
# Dump the MyST Studio database into <home>/backup/myst-studio-<epoch>.sql and say where.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "backup-database.sh"
[ -f "$MYST_DB" ] || die "no database at $MYST_DB: is MyST Studio installed in $MYST_HOME?"
mkdir -p "$MYST_HOME/backup"

tries=0
while :; do
    path="$MYST_HOME/backup/myst-studio-$(date +%s).sql"
    # noclobber: creating the file fails if a backup of this second exists; never overwrite one.
    if (set -C && cat "$MYST_DB" >"$path") 2>/dev/null; then
        break
    fi
    [ -e "$path" ] || die "could not write $path"
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || die "a backup named $path already exists"
    sleep 1 # backups are named by the second: wait for a fresh name
done
echo "Backed up to $path"
