#!/bin/sh
# Start the MyST Studio web instance from the local image; on boot it upgrades the database.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "start.sh"
state=$(container_state)
case "$state" in
running)
    echo "MyST Studio is already running ($MYST_CONTAINER)"
    exit 0
    ;;
'') ;;
*) docker rm "$MYST_CONTAINER" >/dev/null || die "could not remove the stopped $MYST_CONTAINER" ;;
esac

docker image inspect "$MYST_LOCAL_IMAGE" >/dev/null 2>&1 ||
    die "there is no image $MYST_LOCAL_IMAGE: run pull.sh <VERSION> (or import.sh <tarball>) first"
mkdir -p "$MYST_HOME/data" "$MYST_HOME/faults"
# The container runs as the owner of the data directory, so the files it writes stay theirs.
owner=$(stat -c '%u:%g' "$MYST_HOME/data")

echo "Starting MyST Studio ($MYST_CONTAINER) from $MYST_LOCAL_IMAGE"
docker run --detach --name "$MYST_CONTAINER" --network host --user "$owner" \
    --env "MYST_CONSOLE_PORT=$MYST_CONSOLE_PORT" --env "MYST_STARTUP_DELAY=$MYST_STARTUP_DELAY" \
    --mount "type=bind,source=$MYST_HOME/data,target=/var/lib/myst-studio" \
    --mount "type=bind,source=$MYST_HOME/faults,target=/etc/myst-studio/faults,readonly" \
    --label "myst-studio.home=$MYST_HOME" \
    "$MYST_LOCAL_IMAGE" >/dev/null || die "could not start $MYST_CONTAINER from $MYST_LOCAL_IMAGE"
echo "MyST Studio is starting: follow it with output-logs.sh"
