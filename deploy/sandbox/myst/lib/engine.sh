# The sandbox's stand-in for the Docker Engine: shell functions over one folder (sourced, POSIX sh).
# adapters/sandbox.py reads and writes the same files; deploy/sandbox/README.md describes them.
# The caller has run `set -eu`, defined die() and set SANDBOX_ENGINE to the engine folder.
# sh has no local variables: each function's own carry its prefix (_ii_, _st_, ...), so that no
# call clobbers its caller's.

ENGINE_TAGS="$SANDBOX_ENGINE/tags"

engine_check() {
    [ -d "$SANDBOX_ENGINE/images" ] && [ -f "$ENGINE_TAGS" ] ||
        die "cannot reach the sandbox engine: $SANDBOX_ENGINE is not an engine folder"
}

# Sets REF to `repository[:tag]` with its tag spelt out (`latest` when absent); a registry's port
# is no tag. (Functions here read files with builtins: every fork is time the bot waits for.)
normalise_ref() {
    case "${1##*/}" in
    *:*) REF=$1 ;;
    *) REF=$1:latest ;;
    esac
}

# The id of the image a tag points at; fails when no tag of that name exists.
image_id() {
    normalise_ref "$1"
    while read -r _ii_tag _ii_id; do
        if [ "$_ii_tag" = "$REF" ]; then
            printf '%s\n' "$_ii_id"
            return 0
        fi
    done <"$ENGINE_TAGS"
    return 1
}

# Point a tag at an image id (moving it off any other image). The file is replaced whole, so a
# reader never sees half of it.
set_tag() {
    normalise_ref "$1"
    {
        while read -r _st_tag _st_id; do
            [ "$_st_tag" = "$REF" ] || printf '%s %s\n' "$_st_tag" "$_st_id"
        done <"$ENGINE_TAGS"
        printf '%s %s\n' "$REF" "$2"
    } >"$ENGINE_TAGS.$$" && mv -f "$ENGINE_TAGS.$$" "$ENGINE_TAGS"
}

# Pull `host/path:tag` from the registry folder the engine reaches as registries/<host>: copy the
# image into the engine and tag it. Prints what `docker pull` prints and sets PULLED_ID; fails with
# the engine's reason on stderr.
pull_image() {
    normalise_ref "$1"
    _pi_ref=$REF
    _pi_repository=${_pi_ref%:*}
    _pi_tag=${_pi_ref##*:}
    _pi_host=${_pi_repository%%/*}
    _pi_path=${_pi_repository#*/}
    case "$_pi_host" in
    "$_pi_repository") _pi_host=docker.io _pi_path=$_pi_repository ;;
    *.* | *:* | localhost) ;;
    *) _pi_host=docker.io _pi_path=$_pi_repository ;;
    esac
    if [ ! -d "$SANDBOX_ENGINE/registries/$_pi_host" ]; then
        printf 'Error response from daemon: Get "https://%s/v2/": the registry does not answer\n' \
            "$_pi_host" >&2
        return 1
    fi
    _pi_source="$SANDBOX_ENGINE/registries/$_pi_host/$_pi_path/$_pi_tag"
    if [ ! -f "$_pi_source/id" ]; then
        printf 'Error response from daemon: manifest for %s not found: manifest unknown\n' \
            "$_pi_ref" >&2
        return 1
    fi
    read -r PULLED_ID <"$_pi_source/id" || return 1
    _pi_image="$SANDBOX_ENGINE/images/${PULLED_ID#sha256:}"
    printf '%s: Pulling from %s\n' "$_pi_tag" "$_pi_path"
    if [ -d "$_pi_image" ]; then
        _pi_status="Image is up to date for $_pi_ref"
    else
        cp -R "$_pi_source" "$_pi_image.$$" && mv "$_pi_image.$$" "$_pi_image" || return 1
        _pi_status="Downloaded newer image for $_pi_ref"
    fi
    set_tag "$_pi_ref" "$PULLED_ID" || return 1
    printf 'Digest: %s\nStatus: %s\n%s\n' "$PULLED_ID" "$_pi_status" "$_pi_ref"
}

# Load an image archive: a tar of one image folder (id, version, created) with, optionally, a
# `tags` file naming the tags it was saved with. Tags it so, prints what `docker load` prints and
# sets LOADED to the first tag (or the id when it carries none).
load_image() {
    _li_unpacked="$SANDBOX_ENGINE/images/.load.$$"
    rm -rf "$_li_unpacked"
    mkdir "$_li_unpacked" || return 1
    if ! tar -xf "$1" -C "$_li_unpacked" 2>/dev/null || [ ! -f "$_li_unpacked/id" ]; then
        rm -rf "$_li_unpacked"
        return 1
    fi
    _li_id=
    read -r _li_id <"$_li_unpacked/id" || :
    _li_hex=${_li_id#sha256:}
    case "$_li_id" in sha256:*) ;; *) _li_hex= ;; esac
    case "$_li_hex" in *[!0-9a-f]*) _li_hex= ;; esac
    if [ "${#_li_hex}" -ne 64 ]; then
        rm -rf "$_li_unpacked"
        return 1
    fi
    if [ -f "$_li_unpacked/tags" ]; then
        mv "$_li_unpacked/tags" "$_li_unpacked.tags" # tags are the engine's, not the image's
    fi
    if [ -d "$SANDBOX_ENGINE/images/$_li_hex" ]; then
        rm -rf "$_li_unpacked"
    else
        mv "$_li_unpacked" "$SANDBOX_ENGINE/images/$_li_hex" || return 1
    fi
    LOADED=
    if [ -f "$_li_unpacked.tags" ]; then
        while IFS= read -r _li_tag || [ -n "$_li_tag" ]; do
            case "$_li_tag" in '' | *[!A-Za-z0-9._:/-]*) continue ;; esac
            set_tag "$_li_tag" "$_li_id" || return 1
            echo "Loaded image: $_li_tag"
            LOADED=${LOADED:-$_li_tag}
        done <"$_li_unpacked.tags"
        rm -f "$_li_unpacked.tags"
    fi
    if [ -z "$LOADED" ]; then
        echo "Loaded image ID: $_li_id"
        LOADED=$_li_id
    fi
}

# The folder of a container: its image id, status, start time, id and log.
container_dir() {
    printf '%s/containers/%s\n' "$SANDBOX_ENGINE" "$1"
}

# A container's state (running, exited, ...), or nothing when there is no such container.
container_state() {
    engine_check
    _cs_dir=$(container_dir "$1")
    [ -d "$_cs_dir" ] || return 0
    _cs_status=created # until its record is whole
    [ ! -f "$_cs_dir/status" ] || read -r _cs_status <"$_cs_dir/status"
    printf '%s\n' "$_cs_status"
}

# A new container of an image, running, with an empty log. The status is written last: a reader
# sees a container as running only once its record is whole.
container_create() {
    _cc_dir=$(container_dir "$1")
    mkdir "$_cc_dir" || return 1
    _cc_started=$(date -u '+%Y-%m-%dT%H:%M:%SZ')
    printf '%s\n' "$2" >"$_cc_dir/image" &&
        printf '%s\n' "$_cc_started" >"$_cc_dir/started_at" &&
        printf '%s-%s\n' "$_cc_started" "$$" >"$_cc_dir/id" &&
        : >"$_cc_dir/log" &&
        echo running >"$_cc_dir/status"
}

container_exit() {
    echo exited >"$(container_dir "$1")/status"
}

container_remove() {
    rm -rf "$(container_dir "$1")"
}
