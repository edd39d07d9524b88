#!/bin/sh
# MyST Studio web instance (simulated): migrate the database, serve the console, log the start-up.
# Runs as the host user's uid:gid, with <home>/data at /var/lib/myst-studio and <home>/faults at
# /etc/myst-studio/faults (read-only). Everything goes to stdout: that is what `docker logs` shows.
set -u

VERSION=$(cat /etc/myst-studio/version)
DATA=/var/lib/myst-studio
DB="$DATA/myst-studio.db"
FAULTS=/etc/myst-studio/faults
PORT="${MYST_CONSOLE_PORT:-8080}"
errors=0
httpd_pid=

log() {
    level=$1
    shift
    printf '%s %-5s %s\n' "$(date -u '+%Y-%m-%dT%H:%M:%SZ')" "$level" "$*"
}

fail() {
    log ERROR "$*"
    log ERROR "MyST Studio $VERSION failed to start"
    [ -z "$httpd_pid" ] || kill "$httpd_pid" 2>/dev/null
    exit 1
}

# Exit code 0 when version $1 is older than $2, compared as versions (3.10 > 3.9).
older() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, "."); m = split(b, y, ".")
        for (i = 1; i <= (n > m ? n : m); i++) {
            if (x[i] + 0 < y[i] + 0) exit 0
            if (x[i] + 0 > y[i] + 0) exit 1
        }
        exit 1
    }'
}

stop() {
    log INFO "Stopping MyST Studio $VERSION"
    [ -z "$httpd_pid" ] || kill "$httpd_pid" 2>/dev/null
    exit 0
}
trap stop TERM INT

migrate() {
    if [ ! -f "$DB" ]; then
        log INFO "Creating database schema $VERSION"
        printf 'schema_version=%s\n' "$VERSION" >"$DB.new" && mv -f "$DB.new" "$DB" ||
            fail "Could not create the database in $DATA"
        return
    fi
    schema=$(sed -n 's/^schema_version=//p' "$DB" | head -n 1)
    [ -n "$schema" ] || fail "The database $DB has no schema_version line: restore a backup"
    if [ "$schema" = "$VERSION" ]; then
        log INFO "Database schema is up to date ($VERSION)"
    elif older "$schema" "$VERSION"; then
        log INFO "Migrating database schema from $schema to $VERSION"
        { sed "s/^schema_version=.*/schema_version=$VERSION/" "$DB" &&
            printf 'migrated=%s->%s\n' "$schema" "$VERSION"; } >"$DB.new" &&
            mv -f "$DB.new" "$DB" || fail "Could not migrate the database in $DATA"
        log INFO "Database schema migrated to $VERSION"
    else
        fail "The database schema $schema is newer than MyST Studio $VERSION:" \
            "restore a backup taken before the upgrade, or start a newer image"
    fi
}

log INFO "Starting MyST Studio $VERSION"
log INFO "Console port $PORT, data in $DATA"
delay="${MYST_STARTUP_DELAY:-0}"
[ "$delay" = 0 ] || sleep "$delay"
migrate

if [ -f "$FAULTS/startup-error" ]; then
    # Fault switch: each line of the file becomes an ERROR line of the start-up.
    while IFS= read -r line || [ -n "$line" ]; do
        log ERROR "${line:-Could not load the pipeline catalogue}"
        errors=$((errors + 1))
    done <"$FAULTS/startup-error"
    if [ "$errors" -eq 0 ]; then
        log ERROR "Could not load the pipeline catalogue"
        errors=1
    fi
fi

httpd -f -p "127.0.0.1:$PORT" -h /opt/myst-studio/www &
httpd_pid=$!
tries=0
# (busybox wget -T crashes in this static build: bound it with timeout instead)
until timeout 2 wget -q -O /dev/null "http://127.0.0.1:$PORT/" 2>/dev/null; do
    kill -0 "$httpd_pid" 2>/dev/null || { httpd_pid=; fail "The console could not listen on port $PORT"; }
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || fail "The console did not answer on port $PORT"
    sleep 0.1
done
log INFO "Console listening on http://127.0.0.1:$PORT/"

if [ "$errors" -eq 0 ]; then
    log INFO "MyST Studio $VERSION started"
else
    log WARN "MyST Studio $VERSION started with $errors error(s)"
fi

# `wait` returns early when a trapped signal arrives, so `stop` runs at once.
wait "$httpd_pid"
log ERROR "The console stopped unexpectedly"
exit 1
