# Sourced by the test scripts: `need CMD PACKAGE…` installs Debian packages when a command is
# missing (as root, where apt-get exists), or says what to install and stops; `need_lean`
# does the same without the packages they merely recommend. The package lists are fetched
# once per run.
need() { install_for "" "$@"; }
need_lean() { install_for --no-install-recommends "$@"; }

install_for() {
    local lean=$1 cmd=$2; shift 2
    command -v "$cmd" >/dev/null && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        echo "installing $* (for $cmd)" >&2
        if [[ -z "${NEED_UPDATED:-}" ]]; then
            apt-get update -qq
            NEED_UPDATED=1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $lean "$@" >/dev/null
    else
        echo "$cmd is needed: install $* first" >&2
        exit 1
    fi
}
