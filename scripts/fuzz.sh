#!/usr/bin/env bash
# Fuzzes the wire-protocol decoders of palaver-proto and the IRC front door's protocol: builds
# the cargo-fuzz targets of fuzz/ and runs each one for SECONDS seconds (default 30), one
# after another, in one process each, starting from its seed corpus in fuzz/corpus/<target>/.
# Exits non-zero when any target panics, fails an assertion, runs out of memory or takes
# longer than 10 s on one input; the input that did it is left in fuzz/artifacts/<target>/ (replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>`).
#
# Inputs the fuzzer finds go to fuzz/target/corpus/<target>/, not into the committed seeds,
# which stay small; a later run starts from both.
#
# cargo-fuzz needs nightly compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain accept
# them, so no nightly is needed. cargo-fuzz itself is installed on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]   (seconds per target, default 30)" >&2
    exit 2
fi
if ! command -v cargo >/dev/null; then
    echo "cargo is needed: install Rust from rustup first" >&2
    exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --version '^0.13'
fi
export RUSTC_BOOTSTRAP=1

cargo fuzz build
targets="$(cargo fuzz list)"
failed=()
for target in $targets; do
    work="fuzz/target/corpus/$target"
    mkdir -p "$work"
    seeds=()
    if [[ -d "fuzz/corpus/$target" ]]; then
        seeds=("fuzz/corpus/$target")
    fi
    echo "== fuzzing $target for ${seconds}s" >&2
    # The first corpus directory is the one libFuzzer adds to. No -jobs or -fork: one process.
    if ! cargo fuzz run "$target" "$work" ${seeds[@]+"${seeds[@]}"} -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done
if ((${#failed[@]})); then
    echo "fuzzing failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzzing passed: every target ran ${seconds}s without a failure" >&2
