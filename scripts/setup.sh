#!/usr/bin/env bash
# Installs what the run and test commands need, skipping what is present.
#   scripts/setup.sh run|test
#
# Both modes: the wasm32 target, trunk, the wasm-bindgen CLI (exactly the
# version web/Cargo.toml pins) and wasm-opt, to build the web app.
# Test mode also: rustfmt, clippy, and Chromium with chromedriver (Debian
# packages) for the browser tests. Never prompts (CI runs it as root).
#
# wasm-opt lands in $CHAT_TOOLS/binaryen/node_modules/.bin, which
# scripts/run.sh and scripts/test.sh put on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-test}

TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
# Tools that are not cargo binaries live here, outside the work tree, so a
# fresh clone on the same machine reuses them.
CHAT_TOOLS=${CHAT_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/chat-tools}

say() { echo "==> $*"; }

apt_install() {
  local sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

if ! command -v cargo >/dev/null; then
  echo "cargo not found: install Rust from https://rustup.rs first" >&2
  exit 1
fi
export PATH="$HOME/.cargo/bin:$PATH"

if command -v rustup >/dev/null; then
  if [ "$mode" = test ]; then
    for c in rustfmt clippy; do
      rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
  fi
  if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    say "adding the wasm32-unknown-unknown target"
    rustup target add wasm32-unknown-unknown
  fi
fi

# The wasm-bindgen CLI must equal the wasm-bindgen crate version exactly.
pinned=$(sed -n 's/^wasm-bindgen = "=\([0-9.]*\)".*/\1/p' web/Cargo.toml)
if [ -n "$pinned" ] && [ "$pinned" != "$WASM_BINDGEN_VERSION" ]; then
  echo "web/Cargo.toml pins wasm-bindgen $pinned but setup.sh installs $WASM_BINDGEN_VERSION" >&2
  exit 1
fi

if [ "$(trunk --version 2>/dev/null)" != "trunk $TRUNK_VERSION" ]; then
  say "installing trunk $TRUNK_VERSION (one-time, several minutes)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

if [ "$(wasm-bindgen --version 2>/dev/null)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (one-time, a few minutes)"
  # Not --locked: its lock file pins crates that no longer build.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi

# wasm-opt shrinks the bundle by a third. Binaryen's npm package ships it.
if ! "$CHAT_TOOLS/binaryen/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version ${BINARYEN_VERSION%%.*}"; then
  if ! command -v npm >/dev/null; then
    say "installing Node.js and npm (for wasm-opt)"
    apt_install nodejs npm
  fi
  say "installing wasm-opt (binaryen $BINARYEN_VERSION, npm)"
  mkdir -p "$CHAT_TOOLS/binaryen"
  npm install --prefix "$CHAT_TOOLS/binaryen" --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION"
fi

if [ "$mode" = test ]; then
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    say "installing chromium and chromedriver (Debian packages)"
    apt_install chromium chromium-driver
  fi
fi
