# Sourced by the test scripts: `need CMD PACKAGE…` installs Debian packages when a command is
# missing (as root, where apt-get exists), or says what to install and stops.
need() {
    local cmd=$1; shift
    command -v "$cmd" >/dev/null && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing $* (for $cmd)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    else
        echo "$cmd is needed: install $* first" >&2
        exit 1
    fi
}
