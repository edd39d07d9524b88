#!/bin/sh
# Send the proxy's traffic to the blue or the green MyST Studio instance, without dropping a
# request: the target must answer first; the upstream file is replaced atomically and checked with
# `nginx -t` (the old one comes back if the check fails); a graceful reload starts new workers and
# lets the old ones finish what they serve. nginx keeps both generations accepting for ~100 ms, so
# during the reload a client can get either color; once this script has printed its line, the old
# workers take no new connection and every new request goes to the new color.
set -eu
# shellcheck source=../lib/proxy.sh
. "$(dirname -- "$0")/../lib/proxy.sh"

[ "$#" -eq 1 ] || usage "switch.sh <blue|green>"
color=$1
target=$(backend "$color")
[ -n "$target" ] || die "no address for $color in $PROXY_ENV_FILE"

# One switch at a time, in turn: a switch waits for the one running (say, one whose SSH session
# dropped and which goes on regardless) to finish. The kernel releases the lock when its holder
# ends, however it ends, so no killed switch leaves it behind.
exec 9>>"$PROXY_LOCK"
flock -w "$LOCK_WAIT" 9 ||
    die "another switch has held $PROXY_LOCK for ${LOCK_WAIT}s; traffic stays on" \
        "$(configured_color)"
current=$(configured_color)
trap 'rm -f "$PROXY_UPSTREAM.new" "$PROXY_UPSTREAM.previous"' EXIT
trap 'exit 130' INT TERM HUP

master=$(cat "$PROXY_PID" 2>/dev/null) || master=
if [ -z "$master" ] || ! kill -0 "$master" 2>/dev/null; then
    die "nginx is not running (see $PROXY_PID and $PROXY_HOME/logs/error.log)"
fi
fetch "http://$target/" ||
    die "refusing to switch to $color: its console at http://$target/ $failure;" \
        "traffic stays on $current"

sed -e "s/@COLOR@/$color/g" -e "s/@BACKEND@/$target/g" "$PROXY_TEMPLATE" >"$PROXY_UPSTREAM.new"
cp -p "$PROXY_UPSTREAM" "$PROXY_UPSTREAM.previous"
mv -f "$PROXY_UPSTREAM.new" "$PROXY_UPSTREAM"
if ! check=$("$NGINX" -t -q -c "$PROXY_CONF" 2>&1); then
    mv -f "$PROXY_UPSTREAM.previous" "$PROXY_UPSTREAM"
    die "nginx refused the configuration for $color, so it was put back; traffic stays on" \
        "$current: $check"
fi
old=$(workers "$master")
reload=$("$NGINX" -s reload -c "$PROXY_CONF" 2>&1) ||
    die "could not reload nginx ($reload); the configuration says $color, traffic is on $current"

# Done when no old worker takes new connections any more.
tries=$((RELOAD_TIMEOUT * 100))
for pid in $old; do
    while accepting "$pid"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] ||
            die "nginx did not finish reloading within ${RELOAD_TIMEOUT}s: see" \
                "$PROXY_HOME/logs/error.log; the configuration says $color"
        sleep 0.01
    done
done
fetch "$PROXY_URL" || [ -n "$status" ] || die "after the reload the proxy at $PROXY_URL $failure"
served=$(served_color)
[ "$served" = "$color" ] || [ "$served" = unknown ] ||
    die "after the reload the proxy serves ${served:-no color}, not $color: see $PROXY_HOME/logs"
echo "Traffic now goes to $color ($target)"
