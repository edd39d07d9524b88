# The MyST Studio web instance's start-up (sourced by start.sh, POSIX sh): migrate the database,
# publish the console page, log every step. The same lines and checks as the test host's image
# entrypoint (tests/hostkit/myst/image/entrypoint.sh). Nothing keeps running afterwards: in the
# sandbox a running instance is its container record in the engine and its console page.
# `set -e` does not hold inside (start.sh runs this in an `if`): each failure is handled.

# The start-up takes milliseconds here, so the time it began (BOOT_TIME) stamps every line: a fork
# per line would be most of its time.
instance_log() {
    _level=$1
    shift
    printf '%s %-5s %s\n' "$BOOT_TIME" "$_level" "$*"
}

instance_fail() {
    instance_log ERROR "$*"
    instance_log ERROR "MyST Studio $VERSION failed to start"
    exit 1
}

# Exit code 0 when version $1 is older than $2, compared as versions (3.10 > 3.9).
instance_older() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, "."); m = split(b, y, ".")
        for (i = 1; i <= (n > m ? n : m); i++) {
            if (x[i] + 0 < y[i] + 0) exit 0
            if (x[i] + 0 > y[i] + 0) exit 1
        }
        exit 1
    }'
}

instance_migrate() {
    if [ ! -f "$MYST_DB" ]; then
        instance_log INFO "Creating database schema $VERSION"
        printf 'schema_version=%s\n' "$VERSION" >"$MYST_DB.new" && mv -f "$MYST_DB.new" "$MYST_DB" ||
            instance_fail "Could not create the database in $MYST_HOME/data"
        return
    fi
    schema=
    while IFS= read -r row; do
        case "$row" in schema_version=*) schema=${row#schema_version=} && break ;; esac
    done <"$MYST_DB"
    [ -n "$schema" ] || instance_fail "The database $MYST_DB has no schema_version line: restore a backup"
    if [ "$schema" = "$VERSION" ]; then
        instance_log INFO "Database schema is up to date ($VERSION)"
    elif instance_older "$schema" "$VERSION"; then
        instance_log INFO "Migrating database schema from $schema to $VERSION"
        { sed "s/^schema_version=.*/schema_version=$VERSION/" "$MYST_DB" &&
            printf 'migrated=%s->%s\n' "$schema" "$VERSION"; } >"$MYST_DB.new" &&
            mv -f "$MYST_DB.new" "$MYST_DB" || instance_fail "Could not migrate the database in $MYST_HOME/data"
        instance_log INFO "Database schema migrated to $VERSION"
    else
        instance_fail "The database schema $schema is newer than MyST Studio $VERSION:" \
            "restore a backup taken before the upgrade, or start a newer image"
    fi
}

# The console's sign-in page, version bottom right (or what the console-version switch says).
instance_console() {
    shown=$VERSION
    [ ! -f "$MYST_HOME/faults/console-version" ] || read -r shown <"$MYST_HOME/faults/console-version"
    [ -d "${MYST_CONSOLE_PAGE%/*}" ] || mkdir -p "${MYST_CONSOLE_PAGE%/*}" || return 1
    cat >"$MYST_CONSOLE_PAGE.new" <<PAGE || return 1
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>MyST Studio</title>
<style>footer { position: fixed; right: 1em; bottom: 1em; }</style></head>
<body>
<header><h1>MyST Studio</h1></header>
<main><form method="post" action="/login"><p>Sign in to MyST Studio</p></form></main>
<footer class="version">Version $shown</footer>
</body>
</html>
PAGE
    mv -f "$MYST_CONSOLE_PAGE.new" "$MYST_CONSOLE_PAGE"
}

# Start MyST Studio $1 at time $2 on this home's data; every line goes to stdout (the container's
# log). Exits non-zero when the start-up failed, with nothing answering on the console.
instance_boot() {
    VERSION=$1
    BOOT_TIME=$2
    errors=0
    instance_log INFO "Starting MyST Studio $VERSION"
    instance_log INFO "Console page $MYST_CONSOLE_PAGE, data in $MYST_HOME/data"
    instance_migrate
    if [ -f "$MYST_HOME/faults/startup-error" ]; then
        # Fault switch: each line of the file becomes an ERROR line of the start-up.
        while IFS= read -r line || [ -n "$line" ]; do
            instance_log ERROR "${line:-Could not load the pipeline catalogue}"
            errors=$((errors + 1))
        done <"$MYST_HOME/faults/startup-error"
        if [ "$errors" -eq 0 ]; then
            instance_log ERROR "Could not load the pipeline catalogue"
            errors=1
        fi
    fi
    instance_console || instance_fail "The console could not write $MYST_CONSOLE_PAGE"
    instance_log INFO "Console listening on file://$MYST_CONSOLE_PAGE"
    if [ "$errors" -eq 0 ]; then
        instance_log INFO "MyST Studio $VERSION started"
    else
        instance_log WARN "MyST Studio $VERSION started with $errors error(s)"
    fi
}
