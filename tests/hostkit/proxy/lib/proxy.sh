# Shared by the proxy host scripts (sourced, POSIX sh): settings, helpers. The caller has run
# `set -eu`. The proxy is an nginx that the host account runs itself; `conf/upstream.conf` is the
# one place that says which color gets the traffic.

PROXY_SCRIPT=$(basename -- "$0")
PROXY_HOME=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
PROXY_ENV_FILE="$PROXY_HOME/etc/proxy.env"
PROXY_CONF="$PROXY_HOME/conf/nginx.conf"
PROXY_UPSTREAM="$PROXY_HOME/conf/upstream.conf"
PROXY_TEMPLATE="$PROXY_HOME/conf/upstream.template"
PROXY_LOCK="$PROXY_HOME/run/switch.lock"
PROXY_PID="$PROXY_HOME/run/nginx.pid" # as conf/nginx.conf says

# Defaults; <home>/etc/proxy.env sets them (KEY=value lines, no quoting). nginx lives in /usr/sbin,
# which is not on the PATH of an SSH login of an unprivileged account: hence a setting.
NGINX=/usr/sbin/nginx
PROXY_URL=
BLUE=
GREEN=
PROBE_TIMEOUT=2   # seconds one check of a console or of the proxy may take
RELOAD_TIMEOUT=10 # seconds a reload may take until no old worker takes new connections
LOCK_WAIT=30      # seconds a switch waits for the one running to finish

die() {
    printf '%s: %s\n' "$PROXY_SCRIPT" "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s\n' "$*" >&2
    exit 2
}

# Read the env file as data, never as code: only the known keys, each value taken literally.
[ -f "$PROXY_ENV_FILE" ] || die "$PROXY_ENV_FILE is missing: this proxy is not set up"
while IFS= read -r line || [ -n "$line" ]; do
    case "$line" in '' | '#'*) continue ;; esac
    key="${line%%=*}"
    value="${line#*=}"
    case "$key" in
    NGINX) NGINX="$value" ;;
    PROXY_URL) PROXY_URL="$value" ;;
    BLUE) BLUE="$value" ;;
    GREEN) GREEN="$value" ;;
    PROBE_TIMEOUT) PROBE_TIMEOUT="$value" ;;
    RELOAD_TIMEOUT) RELOAD_TIMEOUT="$value" ;;
    LOCK_WAIT) LOCK_WAIT="$value" ;;
    *) die "unknown setting '$key' in $PROXY_ENV_FILE" ;;
    esac
done <"$PROXY_ENV_FILE"

# The host:port of a color's console.
backend() {
    case "$1" in
    blue) printf '%s\n' "$BLUE" ;;
    green) printf '%s\n' "$GREEN" ;;
    *) usage "$PROXY_SCRIPT <blue|green>; got '$1'" ;;
    esac
}

# The color the configuration sends traffic to (the first line of upstream.conf says it).
configured_color() {
    [ -f "$PROXY_UPSTREAM" ] || die "$PROXY_UPSTREAM is missing: this proxy is not set up"
    color=$(sed -n '1s/^# active: \([a-z]*\) .*/\1/p' "$PROXY_UPSTREAM")
    [ -n "$color" ] || die "$PROXY_UPSTREAM does not say which color is active (first line)"
    printf '%s\n' "$color"
}

# GET "$1". Sets `status` (the HTTP status, empty when there was no answer), `headers` (status line
# first, one header a line) and `failure`, what went wrong as a predicate ("does not answer (...)",
# "answers HTTP 502"). Returns 0 for a 2xx answer. curl when the host has it, busybox's wget
# otherwise (its -T crashes in the static build, so `timeout` bounds it).
fetch() {
    status=
    headers=
    failure=
    if command -v curl >/dev/null 2>&1; then
        if ! answer=$(curl -sS --max-time "$PROBE_TIMEOUT" -o /dev/null -D - -- "$1" 2>&1); then
            failure="does not answer ($(printf '%s\n' "$answer" | tail -n 1))"
            return 1
        fi
    else
        answer=$(timeout "$PROBE_TIMEOUT" busybox wget -q -S -O /dev/null "$1" 2>&1) || true
    fi
    headers=$(printf '%s\n' "$answer" | sed -n 's/^ *//; s/\r$//; /^HTTP\//,/^$/p')
    status=$(printf '%s\n' "$headers" | sed -n '1s/^HTTP\/[0-9.]* \([0-9]*\).*/\1/p')
    case "$status" in
    2??) return 0 ;;
    '')
        reason=$(printf '%s\n' "$answer" | tail -n 1)
        failure="does not answer (${reason:-nothing within ${PROBE_TIMEOUT}s})"
        ;;
    *) failure="answers HTTP $status" ;;
    esac
    return 1
}

# The value of header "$1" in `headers` (set by fetch), case-insensitive, or nothing.
header() {
    printf '%s\n' "$headers" | awk -v name="$1" -F': *' \
        'tolower($1) == tolower(name) { sub(/^[^:]*: */, ""); print; exit }'
}

# The color the proxy's answer to the last fetch names; "unknown" for an error answer seen through
# busybox's wget, which shows no headers of those.
served_color() {
    served=$(header X-Proxy-Color)
    if [ -z "$served" ] && [ -n "$status" ] && ! command -v curl >/dev/null 2>&1; then
        served=unknown
    fi
    printf '%s\n' "$served"
}

# The pids of the worker processes of nginx master "$1", read from /proc.
workers() {
    parent=$1
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$stat" || continue # gone while we looked
        # The command name may hold spaces: the fields we need follow the last ')'.
        # shellcheck disable=SC2086 # split on purpose: state, ppid, ...
        set -- ${line##*) }
        if [ "$2" = "$parent" ]; then
            pid=${stat#/proc/}
            printf '%s\n' "${pid%/stat}"
        fi
    done
}

# Exit code 0 while worker "$1" takes new connections: it lives and has not been told to shut down
# (nginx retitles a worker just before it closes its listening sockets).
accepting() {
    title=$(tr '\0' ' ' 2>/dev/null <"/proc/$1/cmdline") || return 1
    case "$title" in
    *'shutting down'*) return 1 ;;
    *'worker process'*) return 0 ;;
    *) return 1 ;; # gone, and the pid taken by something else
    esac
}
