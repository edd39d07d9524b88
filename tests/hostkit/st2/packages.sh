# shellcheck shell=sh
# Package data shared by the apt-get and yum shims and by `setup` (sourced after lib.sh).
# The host's fake repository is $STATE/repository, one line per package: "name version...".
# Versions there and in $STATE/installed are upstream versions (3.8.1); the package tools show
# them with their release (3.8.1-1 on Ubuntu, 3.8.1-1.el8 on RHEL).

repo_versions() {
    sed -n "s/^$1 //p" "$STATE/repository" | tr ' ' '\n' | sed '/^$/d' | sort -V
}

full_version() {
    if [ "$(setting PACKAGE_FORMAT)" = rpm ]; then
        echo "$1-1.$(setting RPM_DIST)"
    else
        echo "$1-1"
    fi
}

# The newest repository version matching a requested one: empty request means the newest of
# all; a request matches the upstream or full version, or as a shell pattern (3.8.*).
candidate() {
    _match=
    for _rv in $(repo_versions "$1"); do
        _full=$(full_version "$_rv")
        # shellcheck disable=SC2254 # the request is a pattern on purpose
        case "$_full" in
        "$2" | "$2-1" | $2) _match=$_rv ;;
        *) if [ -z "$2" ] || [ "$_rv" = "$2" ]; then _match=$_rv; fi ;;
        esac
    done
    printf '%s\n' "$_match"
}

# Size in kB of one package's download.
package_kb() {
    case "$1" in
    st2) echo 95334 ;;
    st2chatops) echo 39117 ;;
    st2mistral) echo 52531 ;;
    st2web) echo 5142 ;;
    *) echo 1024 ;;
    esac
}

# Lay out the files the installed packages ship: the st2 package of version V carries the
# migration scripts of every version up to V in /opt/stackstorm/st2/bin, and the services'
# executables; st2chatops and st2mistral bring theirs.
place_files() {
    _st2=$(installed_version st2)
    while read -r _since _script; do
        case "$_since" in '' | '#'*) continue ;; esac
        if [ -n "$_st2" ] && version_ge "$_st2" "$_since"; then
            ln -sfn "$HOSTKIT/migration" "$ST2_BIN/$_script"
        else
            rm -f "$ST2_BIN/$_script"
        fi
    done <"$HOSTKIT/migrations.list"
    _current=" $(st2_components) "
    for _name in st2actionrunner st2api st2stream st2auth st2garbagecollector st2notifier \
        st2resultstracker st2rulesengine st2sensorcontainer st2timersengine st2workflowengine \
        st2scheduler; do
        case "$_current" in
        *" $_name "*) ln -sfn "$HOSTKIT/service" "$ST2_BIN/$_name" ;;
        *) rm -f "$ST2_BIN/$_name" ;;
        esac
    done
    if is_installed st2chatops; then
        mkdir -p "$ST2_ROOT/opt/stackstorm/chatops/bin"
        ln -sfn "$HOSTKIT/service" "$ST2_ROOT/opt/stackstorm/chatops/bin/st2chatops"
    fi
    if is_installed st2mistral; then
        _mistral="$ST2_ROOT/opt/stackstorm/mistral/bin"
        mkdir -p "$_mistral"
        ln -sfn "$HOSTKIT/mistral-db-manage" "$_mistral/mistral-db-manage"
        ln -sfn "$HOSTKIT/service" "$_mistral/mistral-server"
        ln -sfn "$HOSTKIT/service" "$_mistral/mistral.api"
    fi
}

# Install one package version (upgrade, downgrade or new) and record it in the journal with the
# services that were running meanwhile: packages are swapped under running services if asked to.
apply_package() {
    _running=$(running_list)
    _from=$(installed_version "$1")
    set_installed "$1" "$2"
    place_files
    if [ -n "$_from" ]; then
        _what="$3 $1 $(full_version "$_from") -> $(full_version "$2")"
    else
        _what="$3 $1 $(full_version "$2")"
    fi
    journal "$PROG $_what${_running:+ (while running: $_running)}"
}

# What the st2 package's post-install script does on an upgrade.
st2_postinst() {
    echo "Registering st2 runners on upgrade."
    "$ST2_BIN/st2ctl" reload --register-runners --register-fail-on-failure
}
