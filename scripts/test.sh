#!/usr/bin/env bash
# Runs Palaver's whole test suite: unit tests, and integration tests that start real
# processes on free loopback ports. The Python interoperability test makes its own virtual
# environment (pyzmq, msgpack) under target/ on first use. In CI (CI=true) it then runs each
# fuzz target of fuzz/ for 30 s (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "cargo is needed: install Rust from rustup first" >&2
    exit 1
fi
cargo test --workspace --all-targets "$@"
if [[ "${CI:-}" == true ]]; then
    ./scripts/fuzz.sh 30
fi
