#!/usr/bin/env bash
# Runs the whole-cluster simulation (crates/sim): each seed is one simulated cluster of
# engines, disks, network, broker and clients under faults, whose guarantees are checked as
# invariants. Prints each failing seed with what it broke and ends with one line
# `sim: N runs, V invariant violations`; exits non-zero when V > 0.
#
#   ./scripts/sim.sh --seeds 20000          # seeds 1..20000, on every core
#   ./scripts/sim.sh --seeds 500 --first 9000
#   ./scripts/sim.sh --seed 4088            # one seed again, with its whole story
#   options: --servers N (default 3), --jobs N (default: the cores)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo >/dev/null; then
    echo "cargo is needed: install Rust from rustup first" >&2
    exit 1
fi
cargo build --release --quiet -p palaver-sim
exec ./target/release/palaver-sim "$@"
