#!/bin/sh
# Stop the MyST Studio web instance (and remove its container, so the next start uses the image
# tagged as the local image then). The console stops answering with it.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "stop.sh"
state=$(container_state "$MYST_CONTAINER")
if [ -z "$state" ]; then
    echo "MyST Studio is not running ($MYST_CONTAINER)"
    exit 0
fi
echo "Stopping MyST Studio ($MYST_CONTAINER)"
rm -f "$MYST_CONSOLE_PAGE" || die "could not stop $MYST_CONTAINER: its console page stays"
container_remove "$MYST_CONTAINER" || die "could not remove $MYST_CONTAINER"
echo "MyST Studio stopped"
