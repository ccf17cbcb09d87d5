#!/bin/sh
# Type-checks and lints the library for Windows (x86_64-pc-windows-gnu), including the
# secrets-at-rest code behind cfg(windows) (DACL, DPAPI, Credential Manager). Needs the Rust
# target and Debian's mingw-w64 (.ci/install-deps.sh adds both):
#   rustup target add x86_64-pc-windows-gnu
#   apt-get install mingw-w64
# `cargo check` does not link, so no Windows machine or Wine is needed; it proves the code
# compiles, not that it behaves (the ACL logic is unit-tested where it can run).
set -eu
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx x86_64-pc-windows-gnu; then
    echo "missing Rust target: rustup target add x86_64-pc-windows-gnu" >&2
    exit 2
fi
if ! command -v x86_64-w64-mingw32-gcc >/dev/null; then
    echo "missing mingw-w64 (C compiler for crates with C parts): apt-get install mingw-w64" >&2
    exit 2
fi

# A separate target folder keeps the Linux build's cache and lock out of the way.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/cross-windows}"
cargo check --target x86_64-pc-windows-gnu --lib --locked "$@"
# Clippy reuses the checked dependencies, so this adds seconds, not minutes.
cargo clippy --target x86_64-pc-windows-gnu --lib --locked "$@" -- -D warnings
