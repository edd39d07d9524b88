#!/bin/sh
# Offline path: load a MyST Studio image tarball and tag it as the local image.
# (Sandbox: the tarball is a tar of one image folder, see deploy/sandbox/README.md.)
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 1 ] || usage "import.sh <image tarball>"
tarball=$1
[ -f "$tarball" ] && [ -r "$tarball" ] || die "no readable image tarball at $tarball"

engine_check
load_image "$tarball" || die "could not load $tarball: is it a MyST Studio image archive?"
image_ref=$LOADED
case "$image_ref" in
sha256:*) image_id=$image_ref ;;
*) image_id=$(image_id "$image_ref") || die "$tarball held no image" ;;
esac
set_tag "$MYST_LOCAL_IMAGE" "$image_id" || die "could not tag $image_ref as $MYST_LOCAL_IMAGE"
echo "Tagged $image_ref as $MYST_LOCAL_IMAGE"
