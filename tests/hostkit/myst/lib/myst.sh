# Shared by the MyST Studio host scripts (sourced, POSIX sh): settings, fault switches, helpers.
# The caller has run `set -eu`.

MYST_SCRIPT=$(basename -- "$0")
MYST_HOME=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
MYST_BIN="$MYST_HOME/bin"
MYST_DB="$MYST_HOME/data/myst-studio.db"
MYST_ENV_FILE="$MYST_HOME/etc/myst.env"

# The vendor's defaults; <home>/etc/myst.env overrides them (KEY=value lines, no quoting).
MYST_REGISTRY_IMAGE=067343992071.dkr.ecr.us-west-2.amazonaws.com/myst-studio
MYST_CONTAINER=myst-studio
MYST_LOCAL_IMAGE=myst-studio
MYST_CONSOLE_PORT=8080
MYST_STARTUP_DELAY=0

die() {
    printf '%s: %s\n' "$MYST_SCRIPT" "$*" >&2
    exit 1
}

usage() {
    printf 'usage: %s\n' "$*" >&2
    exit 2
}

# Read the env file as data, never as code: only the known keys, each value taken literally.
if [ -f "$MYST_ENV_FILE" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in '' | '#'*) continue ;; esac
        key="${line%%=*}"
        value="${line#*=}"
        case "$key" in
        DOCKER_HOST) DOCKER_HOST="$value" && export DOCKER_HOST ;;
        MYST_REGISTRY_IMAGE) MYST_REGISTRY_IMAGE="$value" ;;
        MYST_CONTAINER) MYST_CONTAINER="$value" ;;
        MYST_LOCAL_IMAGE) MYST_LOCAL_IMAGE="$value" ;;
        MYST_CONSOLE_PORT) MYST_CONSOLE_PORT="$value" ;;
        MYST_STARTUP_DELAY) MYST_STARTUP_DELAY="$value" ;;
        *) die "unknown setting '$key' in $MYST_ENV_FILE" ;;
        esac
    done <"$MYST_ENV_FILE"
fi

# Fault switch: <home>/faults/fail-<script name without .sh> makes that script fail at once,
# with the file's first line as its message.
fault="$MYST_HOME/faults/fail-${MYST_SCRIPT%.sh}"
if [ -f "$fault" ]; then
    message=$(head -n 1 "$fault")
    die "${message:-failed (fault switch $fault is on)}"
fi

# The web container's state (running, exited, ...), or nothing when there is no such container.
container_state() {
    if state=$(docker container inspect --format '{{.State.Status}}' "$MYST_CONTAINER" 2>&1); then
        printf '%s\n' "$state"
        return 0
    fi
    case "$state" in
    *'No such container'* | *'no such container'*) return 0 ;;
    esac
    die "cannot ask Docker about $MYST_CONTAINER: $state"
}

check_version() {
    case "$1" in
    '' | *[!A-Za-z0-9._-]*) usage "$MYST_SCRIPT <VERSION> (e.g. 3.9.1); got '$1'" ;;
    esac
}
