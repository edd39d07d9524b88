#!/bin/sh
# Follow the MyST Studio start-up log. It does not end by itself: close it with Ctrl+C.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "output-logs.sh"
state=$(container_state)
[ -n "$state" ] || die "MyST Studio is not running ($MYST_CONTAINER): start it with start.sh"
exec docker logs --follow "$MYST_CONTAINER"
