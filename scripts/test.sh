#!/usr/bin/env bash
# Runs every check and test mailgrant has, installing what the tests need when it is missing.
#
# The end-to-end tests start real Dovecot, Postfix and a local identity provider on free
# loopback ports and drive headless Chromium; they need root (Postfix) and the Debian packages
# that .ci/install-deps.sh installs, which also adds mingw-w64 and the Rust target
# x86_64-pc-windows-gnu for the Windows cross-check. Nothing here contacts any host but
# 127.0.0.1 / ::1.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in dovecot postfix chromium openssl python3 Xvfb x86_64-w64-mingw32-gcc; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
rustup target list --installed 2>/dev/null | grep -qx x86_64-pc-windows-gnu \
  || missing+=("rust-target-x86_64-pc-windows-gnu")
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${missing[*]}; run as root, or: sudo bash .ci/install-deps.sh" >&2
    exit 1
  fi
  echo "installing test dependencies (missing: ${missing[*]})"
  bash .ci/install-deps.sh
fi

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "Windows cross-check (cargo check and clippy --lib for x86_64-pc-windows-gnu)"
./scripts/cross-check-windows.sh

step "cargo test (unit, GUI and end-to-end on real servers)"
cargo test --all-targets --locked -- --test-threads 2

# The lifecycle proofs once more with their output shown, so the run's log carries the figures
# (processes x rounds, failures, lost tokens; SIGKILL rounds and torn files).
step "token lifecycle figures (contention and kill-during-save)"
cargo test --locked --test token_contention --test kill_during_save -- --nocapture \
  --test-threads 1 2>&1 | grep -E 'contention \(|kill during save:|retry:|test result'

