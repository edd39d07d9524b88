# Shared by the sandbox MyST Studio scripts (sourced, POSIX sh): settings, fault switches, helpers.
# The same as the test host's (tests/hostkit/myst/lib/myst.sh), with the sandbox engine
# (engine.sh, a folder) where that one has Docker. The caller has run `set -eu`.

MYST_SCRIPT=${0##*/}
case "$0" in */*) MYST_HOME=${0%/*}/.. ;; *) MYST_HOME=.. ;; esac
MYST_HOME=$(CDPATH='' cd -- "$MYST_HOME" && pwd)
MYST_BIN="$MYST_HOME/bin"
MYST_DB="$MYST_HOME/data/myst-studio.db"
MYST_CONSOLE_PAGE="$MYST_HOME/console/index.html"
MYST_ENV_FILE="$MYST_HOME/etc/myst.env"

# The vendor's defaults; <home>/etc/myst.env overrides them (KEY=value lines, no quoting).
# SANDBOX_ENGINE plays the part of DOCKER_HOST: the engine folder these scripts drive.
SANDBOX_ENGINE=
MYST_REGISTRY_IMAGE=067343992071.dkr.ecr.us-west-2.amazonaws.com/myst-studio
MYST_CONTAINER=myst-studio
MYST_LOCAL_IMAGE=myst-studio

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
        SANDBOX_ENGINE) SANDBOX_ENGINE="$value" ;;
        MYST_REGISTRY_IMAGE) MYST_REGISTRY_IMAGE="$value" ;;
        MYST_CONTAINER) MYST_CONTAINER="$value" ;;
        MYST_LOCAL_IMAGE) MYST_LOCAL_IMAGE="$value" ;;
        *) die "unknown setting '$key' in $MYST_ENV_FILE" ;;
        esac
    done <"$MYST_ENV_FILE"
fi
[ -n "$SANDBOX_ENGINE" ] || die "no SANDBOX_ENGINE in $MYST_ENV_FILE: name the engine folder there"

# Fault switch: <home>/faults/fail-<script name without .sh> makes that script fail at once,
# with the file's first line as its message.
fault="$MYST_HOME/faults/fail-${MYST_SCRIPT%.sh}"
if [ -f "$fault" ]; then
    message=$(head -n 1 "$fault")
    die "${message:-failed (fault switch $fault is on)}"
fi

# shellcheck source=engine.sh
. "$MYST_HOME/lib/engine.sh"

# The version of the image a container or tag runs (the image's `version` file).
image_version() {
    read -r _version <"$SANDBOX_ENGINE/images/${1#sha256:}/version" && printf '%s\n' "$_version"
}

check_version() {
    case "$1" in
    '' | [!A-Za-z0-9]* | *[!A-Za-z0-9._-]*)
        usage "$MYST_SCRIPT <VERSION> (e.g. 3.9.1); got '$1'"
        ;;
    esac
}
