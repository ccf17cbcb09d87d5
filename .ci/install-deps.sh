#!/usr/bin/env bash
# Installs what mailgrant's tests need on a fresh Debian machine (run as root). Idempotent: does
# nothing when everything is already present.
#
#   dovecot-core dovecot-imapd dovecot-lmtpd   IMAP + LMTP + SASL, started per test run
#   postfix                                    SMTP submission, started per test run
#   openssl                                    the fixture's throwaway CA and certificate
#   chromium                                   headless browser set as $BROWSER
#   xvfb                                       screenshots of the real window
#   python3                                    the fake identity provider and the fixture
#   mingw-w64                                  the Windows cross-check (C parts of crates)
#
# It also adds the Rust target x86_64-pc-windows-gnu (rustup) for scripts/cross-check-windows.sh,
# and fails with a clear message when it cannot be downloaded.
#
# Nothing from /etc is used by the tests: they run their own Dovecot and Postfix instances from
# temporary directories on free 127.0.0.1 ports. The system services must not start; a
# policy-rc.d that forbids service starts is put in place for the install when missing (and
# removed again afterwards), and Postfix is preseeded to "No configuration".
set -euo pipefail

packages=(dovecot-core dovecot-imapd dovecot-lmtpd postfix openssl chromium xvfb python3
  ca-certificates coreutils mingw-w64)

windows_target=x86_64-pc-windows-gnu

# Each package's marker: a file it installs.
have() {
  case "$1" in
    dovecot-core) [ -x /usr/sbin/dovecot ] ;;
    dovecot-imapd) [ -x /usr/lib/dovecot/imap ] ;;
    dovecot-lmtpd) [ -x /usr/lib/dovecot/lmtp ] ;;
    postfix) [ -x /usr/sbin/postfix ] ;;
    openssl) command -v openssl >/dev/null 2>&1 ;;
    chromium) command -v chromium >/dev/null 2>&1 ;;
    xvfb) command -v Xvfb >/dev/null 2>&1 ;;
    python3) command -v python3 >/dev/null 2>&1 ;;
    ca-certificates) [ -d /etc/ssl/certs ] ;;
    coreutils) command -v timeout >/dev/null 2>&1 && command -v mktemp >/dev/null 2>&1 ;;
    mingw-w64) command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 ;;
    *) dpkg -s "$1" >/dev/null 2>&1 ;;
  esac
}

# The Rust target comes from rustup, not apt; it needs no root.
have_windows_target() {
  rustup target list --installed 2>/dev/null | grep -qx "$windows_target"
}
if ! have_windows_target; then
  if ! command -v rustup >/dev/null 2>&1; then
    echo "install-deps: no rustup to add the Rust target $windows_target; install it by hand" >&2
    exit 1
  fi
  echo "install-deps: adding the Rust target $windows_target"
  # Three tries: a dropped download should not fail the whole run.
  for attempt in 1 2 3; do
    rustup target add "$windows_target" && break
    echo "install-deps: rustup target add failed (try $attempt of 3)" >&2
    sleep $((attempt * 5))
  done
  if ! have_windows_target; then
    echo "install-deps: could not download the Rust target $windows_target (rustup target add" \
      "failed: no network to the Rust distribution server?). The Windows cross-check" \
      "(scripts/cross-check-windows.sh) needs it; add it by hand where the server is reachable" >&2
    exit 1
  fi
fi

missing=()
for p in "${packages[@]}"; do
  have "$p" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: everything the tests need is already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${missing[*]}; run this script as root" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: missing ${missing[*]} and no apt-get here; install them by hand" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive

created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# mailgrant install-deps: keep packages from starting services\nexit 101\n' \
    >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=yes
fi
cleanup() {
  if [ -n "$created_policy" ]; then
    rm -f /usr/sbin/policy-rc.d
  fi
}
trap cleanup EXIT

echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections

apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

# Belt and braces: where services were started anyway (no policy-rc.d honoured), stop them so
# they do not hold ports 143/993/25.
if [ -z "$created_policy" ] && command -v systemctl >/dev/null 2>&1; then
  systemctl stop dovecot postfix >/dev/null 2>&1 || true
fi

for p in "${packages[@]}"; do
  if ! have "$p"; then
    echo "install-deps: $p still missing after apt-get install" >&2
    exit 1
  fi
done
echo "install-deps: done"
