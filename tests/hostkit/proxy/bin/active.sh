#!/bin/sh
# Print the color the proxy sends traffic to (`active: <color>`). Exit 1, saying why on stderr,
# when the proxy does not answer or answers from another color than the configured one; a warning
# on stderr when it answers from that color with an error (the instance behind it is down).
set -eu
# shellcheck source=../lib/proxy.sh
. "$(dirname -- "$0")/../lib/proxy.sh"

[ "$#" -eq 0 ] || usage "active.sh"
color=$(configured_color)
fetch "$PROXY_URL" || [ -n "$status" ] ||
    die "the proxy at $PROXY_URL $failure; it is configured for $color"
served=$(served_color)
case "$served" in
"$color" | unknown) ;;
*) die "the proxy is configured for $color but serves ${served:-no color}: run switch.sh $color" ;;
esac
echo "active: $color"
[ -z "$failure" ] || echo "$PROXY_SCRIPT: the proxy $failure for $color ($(backend "$color"))" >&2
