#!/usr/bin/env bash
# Runs every check and test of the project, installing what they need.
#
#   ./scripts/test.sh
#
# Formatting, clippy (warnings are errors), then all tests in release mode:
# unit and property tests, and end-to-end tests that start real chat-server
# processes on 127.0.0.1 with temporary data directories.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-always}

scripts/setup.sh test

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --release -- -D warnings
echo "==> building binaries (release)"
cargo build --workspace --release --bins
echo "==> tests"
cargo test --workspace --release
echo "==> all tests passed"
