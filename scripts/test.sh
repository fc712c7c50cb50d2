#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need.
#
#   ./scripts/test.sh
#
# Formatting, clippy (warnings are errors; the web app also for wasm32), the
# web app's release bundle (dist/), then all tests in release mode: unit and
# property tests, end-to-end tests that start real chat-server processes on
# 127.0.0.1 with temporary data directories, and browser tests that drive
# headless Chromium against replicas serving dist/ (screenshots in
# target/screenshots/).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-always}

scripts/setup.sh test
export PATH="${CHAT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-tools}/binaryen/node_modules/.bin:$HOME/.cargo/bin:$PATH"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "==> cargo clippy (web app, wasm32)"
cargo clippy -p chat-web --target wasm32-unknown-unknown -- -D warnings
echo "==> building the web app into dist/ (trunk, release)"
trunk build --release
echo "==> building binaries (release)"
cargo build --workspace --release --bins
echo "==> tests"
cargo test --workspace --release
echo "==> all tests passed"
