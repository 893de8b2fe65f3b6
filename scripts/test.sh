#!/usr/bin/env bash
# Runs Palaver's whole test suite: unit tests, and integration tests that start real
# processes on free loopback ports. The interoperability tests install what they need under
# target/ on first use: a Python virtual environment (pyzmq, msgpack) and Node.js packages
# (zeromq, @msgpack/msgpack from npm); python3, node/npm, tmux (for the terminal client's
# end-to-end test), irssi and WeeChat (for the IRC gateway's) and Chromium (for the web
# client's) come from the system's packages,
# installed here when missing. It then runs 3,000 seeds of the whole-cluster simulation. In CI
# (CI=true) it then runs each fuzz target of
# fuzz/ for 20 s (scripts/fuzz.sh), keeping the whole CI run under 20 minutes.
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
# The full-screen client's end-to-end test drives it in a pseudo-terminal, and so does the
# test of real IRC clients, irssi and WeeChat.
need tmux tmux
need_lean irssi irssi
need_lean weechat weechat-curses
# The web client's end-to-end test runs Debian's Chromium, driven by Playwright: playwright-core
# from npm (pinned in crates/web/e2e/package-lock.json), which never downloads a browser.
need chromium chromium fonts-dejavu-core
(
    cd crates/web/e2e
    # Installed again only when the lock file changed.
    if ! cmp -s package-lock.json node_modules/.installed-lock 2>/dev/null; then
        npm ci --no-audit --no-fund --loglevel=error
        cp package-lock.json node_modules/.installed-lock
    fi
)
cargo test --workspace --all-targets --no-fail-fast "$@"
# The whole-cluster simulation (scripts/sim.sh runs more seeds, optimised): 3,000 seeds of the
# debug build the tests just made, about a minute and a half on two cores.
cargo run --quiet -p palaver-sim -- --seeds 3000
# The fuzz crate is a workspace of its own (it needs nightly flags to fuzz, not to build): it
# is checked here, its seed generator included, so that it cannot fall behind the protocol.
RUSTFLAGS="-D warnings" cargo check --manifest-path fuzz/Cargo.toml --bins --examples --quiet
if [[ "${CI:-}" == true ]]; then
    ./scripts/fuzz.sh 20
fi
