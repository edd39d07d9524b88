#!/bin/sh
# Offline path: load a MyST Studio image tarball and tag it as the local image.
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 1 ] || usage "import.sh <image tarball>"
tarball=$1
[ -f "$tarball" ] && [ -r "$tarball" ] || die "no readable image tarball at $tarball"

loaded=$(docker load -i "$tarball") || die "could not load $tarball: is it a docker image archive?"
printf '%s\n' "$loaded"
image=$(printf '%s\n' "$loaded" | sed -n 's/^Loaded image: //p; s/^Loaded image ID: //p' | head -n 1)
[ -n "$image" ] || die "$tarball held no image"
docker tag "$image" "$MYST_LOCAL_IMAGE" || die "could not tag $image as $MYST_LOCAL_IMAGE"
echo "Tagged $image as $MYST_LOCAL_IMAGE"
