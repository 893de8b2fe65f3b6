#!/usr/bin/env bash
# Runs Palaver's whole test suite: unit tests, and integration tests that start real
# processes on free loopback ports. The interoperability tests install what they need under
# target/ on first use: a Python virtual environment (pyzmq, msgpack) and Node.js packages
# (zeromq, @msgpack/msgpack from npm); python3, node/npm and tmux (for the terminal client's
# end-to-end test) come from the system's packages, installed here when missing. In CI (CI=true) it then runs each fuzz target of
# fuzz/ for 30 s (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "cargo is needed: install Rust from rustup first" >&2
    exit 1
fi
source scripts/need.sh
need python3 python3 python3-venv
need node nodejs
need npm npm
# The full-screen client's end-to-end test drives it in a pseudo-terminal.
need tmux tmux
cargo test --workspace --all-targets "$@"
if [[ "${CI:-}" == true ]]; then
    ./scripts/fuzz.sh 30
fi
