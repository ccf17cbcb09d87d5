#!/usr/bin/env bash
# Screenshots of the real mailgrant window, for the README and for reviewing the UI.
#
# Runs the mailgrant binary under Xvfb against the local test servers only (the fake identity
# provider, Dovecot and Postfix of tests/fixtures/mailfixture.py, all on 127.0.0.1), drives it
# with xdotool and writes PNGs into docs/screenshots/. The sign-in is a real one through
# headless Chromium (tests/fixtures/headless-browser.sh), so the Verify and Status screens show
# real results. The forecast screens use a hand-written setup whose token URL names Microsoft's
# host so Microsoft's 90-day rule applies; nothing is ever sent there (no button that talks to
# the provider is pressed on those screens), and its token values are dummies.
#
# Usage: scripts/screenshots.sh            (builds target/debug/mailgrant when missing)
#        MAILGRANT_BIN=path scripts/screenshots.sh
# Needs: Xvfb, xdotool, ImageMagick (import), python3, chromium, dovecot, postfix, openssl.
# Click positions are window coordinates of the 1040x760 window (1040x1000 for the status
# view); they follow the layout in src/gui and must be updated when it moves.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/docs/screenshots"
bin="${MAILGRANT_BIN:-$root/target/debug/mailgrant}"

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need Xvfb xvfb
need xdotool xdotool
need import imagemagick
need python3 python3
need chromium chromium
need openssl openssl
[ -x /usr/sbin/dovecot ] || missing+=(dovecot-core dovecot-imapd dovecot-lmtpd)
[ -x /usr/sbin/postfix ] || missing+=(postfix)
if [ ${#missing[@]} -gt 0 ]; then
  echo "screenshots.sh: missing tools; install them with:" >&2
  echo "  apt-get install ${missing[*]}   (or run .ci/install-deps.sh as root)" >&2
  exit 2
fi
if [ ! -x "$bin" ]; then
  (cd "$root" && cargo build --bin mailgrant)
fi

work=$(mktemp -d /tmp/mailgrant-screenshots-XXXXXX)
# Postfix runs as its own user and must reach the fixture folder inside.
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  python3 "$root/tests/fixtures/mailfixture.py" stop --dir "$work/fixture" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# A free X display.
display=90
while [ -e "/tmp/.X11-unix/X$display" ] || [ -e "/tmp/.X$display-lock" ]; do
  display=$((display + 1))
done
Xvfb ":$display" -screen 0 1280x1100x24 -nolisten tcp >"$work/xvfb.log" 2>&1 &
pids+=($!)
export DISPLAY=":$display"
for _ in $(seq 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done

# The local servers; their values as JSON.
mkdir -p "$work/fixture" "$out"
fixture="$root/tests/fixtures/mailfixture.py"
if ! python3 "$fixture" start --dir "$work/fixture" >"$work/fixture.json"; then
  tail -n 20 "$work"/fixture/log/*.log "$work"/fixture/log/*.out >&2 || true
  exit 1
fi
value() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" \
  "$work/fixture.json" "$1"; }
idp=$(value idp_url)
smtp_port=$(value smtp_port)
imaps_port=$(value imaps_port)
ca_file=$(value ca_file)
client_id=$(value client_id)
mailbox=$(value mailbox)

# The system browser: headless Chromium, held back until $work/browser-go exists so the
# "waiting for the browser" screen can be captured.
cat >"$work/browser.sh" <<EOF
#!/bin/sh
while [ ! -e "$work/browser-go" ]; do sleep 0.2; done
exec "$root/tests/fixtures/headless-browser.sh" --dom-log "$work/browser-dom.log" "\$@"
EOF
chmod +x "$work/browser.sh"
export BROWSER="$work/browser.sh %s"
export RUST_LOG=mailgrant=debug

# write_config FILE TOKEN_URL_BASE SMTP_PORT: a custom-provider config for the fixture.
write_config() {
  mkdir -p "$(dirname "$1")"
  cat >"$1" <<EOF
schema_version = 1
mailbox = "$mailbox"
imap_user = "$mailbox"
smtp_user = "$mailbox"
from = "$mailbox"
test_recipient = "$mailbox"
timeout_secs = 20
extra_ca_file = "$ca_file"

[oauth]
provider = "custom"
client_id = "$client_id"
authorize_url = "$2/authorize"
token_url = "$2/token"
scopes = [
  "https://outlook.office.com/IMAP.AccessAsUser.All",
  "https://outlook.office.com/SMTP.Send",
  "offline_access", "openid", "profile", "email",
]

[smtp]
host = "127.0.0.1"
port = $3
security = "start_tls"

[imap]
host = "localhost"
port = $imaps_port
security = "tls"

[secrets]
store = "file"
EOF
}

app_pid=""
window=""
# launch CONFIG [HEIGHT]: starts the window on CONFIG and waits until it is drawn.
launch() {
  "$bin" --config "$1" >"$work/app.log" 2>&1 &
  app_pid=$!
  pids+=("$app_pid")
  window=$(xdotool search --sync --onlyvisible --name '^mailgrant$' | head -n1)
  xdotool windowmove "$window" 0 0
  xdotool windowsize "$window" 1040 "${2:-760}"
  sleep 2
}
quit() {
  kill "$app_pid" 2>/dev/null || true
  wait "$app_pid" 2>/dev/null || true
  sleep 0.5
}
click() { xdotool mousemove --window "$window" "$1" "$2" click 1; sleep 0.7; }
type_text() { xdotool type --delay 20 "$1"; sleep 0.5; }
shot() {
  sleep "${2:-1}"
  import -window "$window" "$out/$1.png"
  echo "wrote docs/screenshots/$1.png"
}
# Left step list, window coordinates.
nav() {
  case "$1" in
    registration) click 68 101 ;;
    mailbox) click 55 133 ;;
    sign-in) click 50 165 ;;
    verify) click 48 197 ;;
    save) click 42 229 ;;
    status) click 38 281 ;;
    log) click 30 313 ;;
  esac
}
# wait_for_log TEXT: the app's log says TEXT (the window has no other way to tell a script).
wait_for_log() {
  for _ in $(seq 600); do grep -q "$1" "$work/app.log" && return 0; sleep 0.1; done
  echo "screenshots.sh: gave up waiting for '$1' in the app log" >&2
  cat "$work/app.log" >&2
  exit 1
}

if [ "${1:-}" = "--calibrate" ]; then
  launch "$work/none/mailgrant.toml"
  shot calibrate
  exit 0
fi

# 1. A fresh start: the registration step, then a client ID that is an e-mail address.
launch "$work/fresh/mailgrant.toml"
shot registration
click 555 132
type_text "alarms@example.com"
click 600 650
shot registration-error
quit

# 2. The fixture setup, signed in for real with `mailgrant login` (headless Chromium).
site="$work/site/mailgrant.toml"
write_config "$site" "$idp/sandbox/oauth2/v2.0" "$smtp_port"
touch "$work/browser-go"
"$bin" login --config "$site" >/dev/null 2>"$work/login.log"
rm -f "$work/browser-go"

launch "$site"
nav mailbox
shot mailbox
nav sign-in
click 258 145 # Sign in again…
shot sign-in-waiting 2
touch "$work/browser-go"
wait_for_log "signed in"
rm -f "$work/browser-go"
click 1006 735 # Next
click 259 85 # Run the checks
wait_for_log "RoundTrip"
shot verify-passed 2
click 1006 735 # Next
shot save
quit

# 3. A failing check: the same setup with SMTP on a port nothing listens on.
broken="$work/broken/mailgrant.toml"
write_config "$broken" "$idp/sandbox/oauth2/v2.0" 9
cp "$work/site/mailgrant.secrets.toml" "$work/broken/"
chmod 600 "$work/broken/mailgrant.secrets.toml"
launch "$broken"
nav verify
click 259 85
wait_for_log "RoundTrip"
shot verify-failed 2
quit

# 4. The status view of the signed-in setup, taller so the forecast and checks show.
launch "$site" 1000
shot status
quit

# 5. Forecast warning: Microsoft's rule, a refresh token unused for 80 days (dummy values).
aging="$work/aging/mailgrant.toml"
write_config "$aging" "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0" 9
issued=$(date -u -d '80 days ago 1 hour ago' +%Y-%m-%dT%H:%M:%SZ)
expires=$(date -u -d '35 minutes' +%Y-%m-%dT%H:%M:%SZ)
cat >"$work/aging/mailgrant.secrets.toml" <<EOF
schema_version = 1
refresh_token = "dummy-refresh-token-for-screenshot-only"
refresh_token_issued_at = "$issued"
access_token = "dummy-access-token-for-screenshot-only"
access_expires_at = "$expires"
granted_scopes = [
  "https://outlook.office.com/IMAP.AccessAsUser.All",
  "https://outlook.office.com/SMTP.Send",
  "offline_access",
]
signed_in_account = "$mailbox"
EOF
chmod 600 "$work/aging/mailgrant.secrets.toml"
launch "$aging" 1000
shot status-forecast-warning
quit

echo "screenshots in $out"
