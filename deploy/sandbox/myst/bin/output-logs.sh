#!/bin/sh
# Follow the MyST Studio start-up log. It does not end by itself: close it with Ctrl+C.
# Like `docker logs --follow`, it ends when the container it follows stops; a stopped
# container's log is printed whole.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 0 ] || usage "output-logs.sh"
state=$(container_state "$MYST_CONTAINER")
[ -n "$state" ] || die "MyST Studio is not running ($MYST_CONTAINER): start it with start.sh"
dir=$(container_dir "$MYST_CONTAINER")
if [ "$state" != running ]; then
    cat "$dir/log"
    exit 0
fi

read -r following <"$dir/id"
# Still the container whose log we follow, and running?
running() {
    id='' status=''
    { read -r id <"$dir/id" && read -r status <"$dir/status"; } 2>/dev/null || :
    [ "$id" = "$following" ] && [ "$status" = running ]
}

tail -f -n +1 "$dir/log" &
follower=$!
# The watcher ends the follower once the container goes (stop.sh) or is replaced (restart.sh).
# It starts before the traps below: a trap in the forking shell could swallow a signal meant
# for the `sleep` it is about to start, which would then outlive us by its whole second.
(
    while running; do sleep 1; done
    kill "$follower" 2>/dev/null || :
) >/dev/null 2>&1 &
watcher=$!
# Background jobs ignore Ctrl+C in a script: end them ourselves, whatever ends us.
trap 'kill "$follower" "$watcher" 2>/dev/null; exit 130' INT
trap 'kill "$follower" "$watcher" 2>/dev/null; exit 143' TERM HUP
wait "$follower" || : # a trapped signal ends this wait at once
kill "$watcher" 2>/dev/null || :
