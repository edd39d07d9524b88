# shellcheck shell=sh disable=SC2034 # the scripts that source this use these
# Shared by the StackStorm test-host shims (sourced, POSIX sh). The caller found the host's fake
# root ($ST2_ROOT) by walking up from its own location and runs under `set -eu`. Everything the
# shims know lives in files below $ST2_ROOT, so a test can read what they did, and the next
# command (another SSH session, another shell) sees the same host.

HOSTKIT="$ST2_ROOT/usr/lib/st2-hostkit"
STATE="$ST2_ROOT/var/lib/st2-hostkit"
FAULTS="$STATE/faults"
JOURNAL="$STATE/journal"
RUN_DIR="$ST2_ROOT/var/run/st2"
LOG_DIR="$ST2_ROOT/var/log/st2"
ST2_BIN="$ST2_ROOT/opt/stackstorm/st2/bin"
ST2_CONF="$ST2_ROOT/etc/st2/st2.conf"
PROG=$(basename -- "$0")

# One KEY=value line of the host's settings (written when the host was laid out).
setting() {
    while IFS='=' read -r _key _value; do
        if [ "$_key" = "$1" ]; then
            printf '%s\n' "$_value"
            return 0
        fi
    done <"$STATE/settings"
}

# The first line of a fault switch file, or nothing when the switch is off.
fault() {
    if [ -f "$FAULTS/$1" ]; then head -n 1 "$FAULTS/$1"; fi
}

# One line in the journal: package operations, migrations, service and datastore actions.
journal() {
    printf '%s\n' "$*" >>"$JOURNAL"
}

log_time() {
    date -u '+%Y-%m-%d %H:%M:%S,%3N'
}

# Versions are compared as versions (3.10 > 3.9, 3.5 = 3.5.0), never as strings. Shell
# arithmetic only: the shims compare versions often, and forks are what makes them slow.
version_ge() {
    _va=$1. _vb=$2.
    for _ in 1 2 3; do
        _x=${_va%%.*} _y=${_vb%%.*}
        _va=${_va#*.} _vb=${_vb#*.}
        if [ "${_x:-0}" -gt "${_y:-0}" ]; then return 0; fi
        if [ "${_x:-0}" -lt "${_y:-0}" ]; then return 1; fi
    done
    return 0
}

version_lt() {
    ! version_ge "$1" "$2"
}

# The installed (upstream) version of a package, or nothing when it is not installed.
installed_version() {
    while read -r _package _version; do
        if [ "$_package" = "$1" ]; then
            printf '%s\n' "$_version"
            return 0
        fi
    done <"$STATE/installed"
}

is_installed() {
    [ -n "$(installed_version "$1")" ]
}

set_installed() {
    {
        grep -v "^$1 " "$STATE/installed" || :
        printf '%s %s\n' "$1" "$2"
    } >"$STATE/installed.new"
    mv "$STATE/installed.new" "$STATE/installed"
}

# Root, or run through the host's `sudo`; hosts laid out with REQUIRE_ROOT=0 skip the check.
privileged() {
    [ "$(id -u)" = 0 ] || [ -n "${SUDO_UID:-}" ] || [ "$(setting REQUIRE_ROOT)" = 0 ]
}

# The services st2ctl manages for the installed st2, in st2ctl's order.
st2_components() {
    _v=$(installed_version st2)
    _list="st2actionrunner st2api st2stream st2auth st2garbagecollector st2notifier"
    if version_lt "$_v" 3.3; then _list="$_list st2resultstracker"; fi
    _list="$_list st2rulesengine st2sensorcontainer st2chatops"
    if version_ge "$_v" 2.9; then _list="$_list st2timersengine"; fi
    if version_ge "$_v" 2.8; then _list="$_list st2workflowengine"; fi
    if version_ge "$_v" 2.10; then _list="$_list st2scheduler"; fi
    if version_lt "$_v" 3.3; then _list="$_list mistral"; fi
    printf '%s\n' "$_list"
}

# Mistral is one service for st2ctl and two processes in its status.
processes_of() {
    case "$1" in
    mistral) echo "mistral-server mistral.api" ;;
    *) echo "$1" ;;
    esac
}

package_of() {
    case "$1" in
    st2chatops) echo st2chatops ;;
    mistral | mistral-server | mistral.api) echo st2mistral ;;
    *) echo st2 ;;
    esac
}

process_exe() {
    case "$1" in
    st2chatops) echo "$ST2_ROOT/opt/stackstorm/chatops/bin/st2chatops" ;;
    mistral-server | mistral.api) echo "$ST2_ROOT/opt/stackstorm/mistral/bin/$1" ;;
    *) echo "$ST2_BIN/$1" ;;
    esac
}

# A process counts while it exists and is not a zombie (some inits here never reap orphans).
alive() {
    read -r _stat 2>/dev/null <"/proc/$1/stat" || return 1
    _stat=${_stat##*) }
    [ "${_stat%% *}" != Z ]
}

# The pid of a live service process of this host, from its pid file (checked against /proc).
pid_of() {
    _pidfile="$RUN_DIR/$1.pid"
    [ -s "$_pidfile" ] || return 1
    read -r _pid <"$_pidfile" || return 1
    alive "$_pid" || return 1
    # the NULs between the arguments drop out; the executable's path stays whole
    _cmdline=''
    read -r _cmdline 2>/dev/null <"/proc/$_pid/cmdline" || [ -n "$_cmdline" ] || return 1
    case "$_cmdline" in
    *"$(process_exe "$1")"*) printf '%s\n' "$_pid" ;;
    *) return 1 ;;
    esac
}

# The service processes running now, space-separated.
running_list() {
    _out=
    for _pidfile in "$RUN_DIR"/*.pid; do
        [ -e "$_pidfile" ] || continue
        _name=$(basename -- "$_pidfile" .pid)
        if pid_of "$_name" >/dev/null; then _out="$_out $_name"; fi
    done
    printf '%s\n' "${_out# }"
}
