#!/bin/sh
# Start the MyST Studio web instance from the local image; on boot it upgrades the database.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"
# shellcheck source=../lib/instance.sh
. "$MYST_HOME/lib/instance.sh"

[ "$#" -eq 0 ] || usage "start.sh"
state=$(container_state "$MYST_CONTAINER")
case "$state" in
running)
    echo "MyST Studio is already running ($MYST_CONTAINER)"
    exit 0
    ;;
'') ;;
*) container_remove "$MYST_CONTAINER" || die "could not remove the stopped $MYST_CONTAINER" ;;
esac

image=$(image_id "$MYST_LOCAL_IMAGE") ||
    die "there is no image $MYST_LOCAL_IMAGE: run pull.sh <VERSION> (or import.sh <tarball>) first"
version=$(image_version "$image") || die "the image $MYST_LOCAL_IMAGE ($image) has no version"
[ -d "$MYST_HOME/data" ] && [ -d "$MYST_HOME/faults" ] ||
    mkdir -p "$MYST_HOME/data" "$MYST_HOME/faults"
[ ! -e "$MYST_CONSOLE_PAGE" ] || rm -f "$MYST_CONSOLE_PAGE" # nothing answers until it is up

echo "Starting MyST Studio ($MYST_CONTAINER) from $MYST_LOCAL_IMAGE"
container_create "$MYST_CONTAINER" "$image" ||
    die "could not start $MYST_CONTAINER from $MYST_LOCAL_IMAGE"
# There is no daemon to run the start-up later, so it runs to its end here, into the container's
# log. As with `docker run --detach`, a failed start-up is not this script's failure: the
# container exits and its log says why.
dir=$(container_dir "$MYST_CONTAINER")
read -r started <"$dir/started_at"
if ! (instance_boot "$version" "$started") >>"$dir/log" 2>&1; then
    container_exit "$MYST_CONTAINER"
fi
echo "MyST Studio is starting: follow it with output-logs.sh"
