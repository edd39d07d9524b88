#!/bin/sh
# Stop the MyST Studio web instance (and remove its container, so the next start uses the image
# tagged as the local image then).
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "stop.sh"
state=$(container_state)
if [ -z "$state" ]; then
    echo "MyST Studio is not running ($MYST_CONTAINER)"
    exit 0
fi
echo "Stopping MyST Studio ($MYST_CONTAINER)"
docker stop "$MYST_CONTAINER" >/dev/null || die "could not stop $MYST_CONTAINER"
docker rm "$MYST_CONTAINER" >/dev/null || die "could not remove $MYST_CONTAINER"
echo "MyST Studio stopped"
