#!/bin/sh
# Pull MyST Studio <VERSION> from the registry and tag it as the local image the instance runs.
# (Sandbox: the registry is a folder, the pull a copy into the engine folder.)
set -eu
. "$(dirname -- "$0")/../lib/myst.sh"

[ "$#" -eq 1 ] || usage "pull.sh <VERSION>"
check_version "$1"
image="$MYST_REGISTRY_IMAGE:$1"

echo "Pulling $image"
engine_check
pull_image "$image" ||
    die "could not pull $image: check the version exists in the registry and the registry is reachable"
set_tag "$MYST_LOCAL_IMAGE" "$PULLED_ID" || die "could not tag $image as $MYST_LOCAL_IMAGE"
echo "Tagged $image as $MYST_LOCAL_IMAGE"
