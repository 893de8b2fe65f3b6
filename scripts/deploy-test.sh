#!/usr/bin/env bash
# Runs the deployment tests (README, "Tests"):
#   compose  docker-compose.yml on a real Docker engine, as the README says to run it, with
#            faults through the engine (crates/palaver/tests/compose.rs);
#   hosts    every role on a host of its own, in network namespaces, with a link cut and a
#            slow, lossy link (crates/palaver/tests/hosts.rs).
# Needs root, as CI runs. Installs what is missing from Debian's packages (docker.io,
# docker-compose, debootstrap, iproute2, iptables, tmux), starts a Docker engine of its own
# (its own data root and socket under a temporary directory, stopped and removed at the end),
# and builds the base image the Dockerfile names with debootstrap (cached in target/deploy/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
    echo "the deployment tests start a Docker engine and network namespaces: run them as root" >&2
    exit 1
fi
source scripts/need.sh
need dockerd docker.io
need docker-compose docker-compose
need debootstrap debootstrap
need iptables iptables
need ip iproute2
need tmux tmux

work=$(mktemp -d "${TMPDIR:-/tmp}/palaver-deploy.XXXXXX")
engine_pid=
stop_engine() {
    if [[ -n $engine_pid ]]; then
        kill "$engine_pid" 2>/dev/null || true
        wait "$engine_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap stop_engine EXIT

# No default bridge: compose makes a network of its own (and the engine opens the firewall's
# forwarding for it, whatever the host's policy is).
/usr/sbin/dockerd --data-root "$work/engine" --exec-root "$work/exec" \
    --pidfile "$work/dockerd.pid" -H "unix://$work/docker.sock" \
    --bridge=none >"$work/dockerd.log" 2>&1 &
engine_pid=$!
export DOCKER_HOST="unix://$work/docker.sock"

# The Debian client talks to the engine; `docker compose` goes to docker-compose where the
# client has no compose plugin.
mkdir -p "$work/bin"
cat >"$work/bin/docker" <<'SHIM'
#!/bin/sh
if [ "$1" = compose ] && ! /usr/bin/docker compose version >/dev/null 2>&1; then
    shift
    exec docker-compose "$@"
fi
exec /usr/bin/docker "$@"
SHIM
chmod +x "$work/bin/docker"
export PATH="$work/bin:$PATH"

for _ in $(seq 1 60); do
    docker version >/dev/null 2>&1 && break
    if ! kill -0 "$engine_pid" 2>/dev/null; then
        cat "$work/dockerd.log" >&2
        echo "the Docker engine did not start" >&2
        exit 1
    fi
    sleep 1
done
docker version --format 'Docker engine {{.Server.Version}}' || { cat "$work/dockerd.log" >&2; exit 1; }

# The Dockerfile's base image, made here: no image can be pulled.
base=target/deploy/bookworm-minbase.tar
if [[ ! -s $base ]]; then
    mkdir -p target/deploy
    echo "building the base image with debootstrap (once; kept in $base)" >&2
    debootstrap --variant=minbase bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
        || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
    tar -C "$work/rootfs" -cf "$base.part" . && mv "$base.part" "$base"
    rm -rf "$work/rootfs"
fi
docker import "$base" debian:bookworm-slim >/dev/null

# PALAVER_DEPLOY_TESTS picks some of them (say, `compose`).
args=()
for t in ${PALAVER_DEPLOY_TESTS:-compose hosts}; do args+=(--test "$t"); done
cargo test -p palaver --features deploy-tests "${args[@]}" -- --test-threads=1 --nocapture "$@"
