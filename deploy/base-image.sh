#!/bin/sh
# Build a local stand-in for python:3.11-slim-bookworm, for machines that cannot pull images
# (CI here): a Debian 12 rootfs from Debian's mirror (debootstrap --variant=minbase) with Debian's
# Python 3.11, imported into the Docker Engine as TAG. deploy/Dockerfile builds on it with
# --build-arg BASE_IMAGE=TAG.
#
#   deploy/base-image.sh TAG
#
# Runs as root (debootstrap chroots). If TAG already exists nothing is done: remove the image
# (docker rmi TAG) to rebuild. The engine is $DOCKER_HOST; when that is unset and the test engine
# of this checkout is up (`python -m tests.hostkit up`), that one.
# DEBIAN_MIRROR picks the mirror, e.g. a snapshot for a reproducible base:
#   DEBIAN_MIRROR=http://snapshot.debian.org/archive/debian/20250520T000000Z
set -eu

usage="usage: $0 TAG"
tag=${1:?$usage}
repo=$(cd "$(dirname "$0")/.." && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
suite=bookworm
# What python:3.11-slim-bookworm carries besides Python: CA certificates (TLS to Slack and
# registries), tzdata (zoneinfo) and netbase (/etc/services, /etc/protocols).
packages=python3,python3-venv,ca-certificates,tzdata,netbase

fail() {
    echo "base-image: $*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "run as root: debootstrap needs it."
command -v debootstrap >/dev/null || fail "debootstrap is not installed: run \`make setup\`."
command -v docker >/dev/null || fail "the docker CLI is not installed: run \`make setup\`."

if [ -z "${DOCKER_HOST:-}" ] && [ -S "$repo/var/services/docker/docker.sock" ]; then
    DOCKER_HOST="unix://$repo/var/services/docker/docker.sock"
    export DOCKER_HOST
fi

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base-image: $tag is already there (docker rmi $tag to rebuild)."
    exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/upgrade-bot-base.XXXXXX")
rootfs="$work/rootfs"

cleanup() {
    # debootstrap mounts proc, sys and maybe dev inside the rootfs; a failed run can leave them
    # mounted, and rm must never walk into the host's /dev or /sys.
    if [ -d "$rootfs" ]; then
        awk -v root="$rootfs" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r mount; do umount -l "$mount" || true; done
    fi
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "base-image: debootstrap $suite ($packages) from $mirror"
started=$(date +%s)
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -n 40 "$work/debootstrap.log" >&2
    fail "debootstrap failed (log tail above)."
}

# Slim it as the official slim images are: no package lists, caches, docs, man pages or logs.
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/tmp/* "$rootfs"/root/.cache
# The image's /dev, /proc and /sys are the engine's: leave them empty (once nothing is mounted).
if awk -v root="$rootfs/" 'index($2, root) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    fail "debootstrap left file systems mounted under $rootfs."
fi
for dir in dev proc sys; do
    find "$rootfs/$dir" -mindepth 1 -xdev -delete
done

tar --numeric-owner -C "$rootfs" -c . |
    docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --message "Debian $suite minbase + $packages from $mirror (deploy/base-image.sh)" \
        - "$tag" >/dev/null

size=$(docker image inspect --format '{{.Size}}' "$tag")
echo "base-image: built $tag in $(($(date +%s) - started))s, $((size / 1000000)) MB."
