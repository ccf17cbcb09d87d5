#!/usr/bin/env bash
# Prints mailgrant's speed and memory figures against the local test servers (the same fixture
# the tests use: fake identity provider, Dovecot, Postfix, all on 127.0.0.1):
#   - release binary size;
#   - `login` (headless Chromium as the browser) and `check` wall time, and `check`'s peak RSS;
#   - `token` with a cached access token and with a forced refresh;
#   - the window's idle CPU and memory: the status view under Xvfb, left alone.
#
# A benchmark, not a test: it prints figures and exits 0 unless something could not run.
# Needs what .ci/install-deps.sh installs, root (Postfix), and GNU time (/usr/bin/time, package
# `time`). Usage: scripts/measure.sh [CHECK_RUNS] [IDLE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."

check_runs="${1:-5}"
idle_secs="${2:-30}"

for tool in python3 Xvfb /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "measure: missing $tool (apt-get install python3 xvfb time)" >&2
    exit 1
  }
done

cargo build --release --locked --quiet
bin="$PWD/target/release/mailgrant"

work="$(mktemp -d /tmp/mailgrant-measure-XXXXXX)"
# Postfix and Dovecot run as their own users and must reach the fixture folder inside.
chmod 755 "$work"
fixture="$work/fixture"
xvfb_pid=""
gui_pid=""
cleanup() {
  [ -n "$gui_pid" ] && kill "$gui_pid" 2>/dev/null || true
  [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
  python3 tests/fixtures/mailfixture.py stop --dir "$fixture" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

info="$(python3 tests/fixtures/mailfixture.py start --dir "$fixture")"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$info" "$1"; }
idp="$(field idp_url)"
mailbox="$(field mailbox)"
config="$work/site/mailgrant.toml"
mkdir -p "$work/site"
cat >"$config" <<EOF
schema_version = 1
mailbox = "$mailbox"
imap_user = "$mailbox"
smtp_user = "$mailbox"
from = "$mailbox"
test_recipient = "$mailbox"
timeout_secs = 20
extra_ca_file = "$(field ca_file)"

[oauth]
provider = "custom"
client_id = "$(field client_id)"
authorize_url = "$idp/organizations/oauth2/v2.0/authorize"
token_url = "$idp/organizations/oauth2/v2.0/token"
scopes = ["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send", "offline_access", "openid", "profile", "email"]

[smtp]
host = "127.0.0.1"
port = $(field smtp_port)
security = "start_tls"

[imap]
host = "localhost"
port = $(field imaps_port)
security = "tls"

[secrets]
store = "file"
EOF

export BROWSER="$PWD/tests/fixtures/headless-browser.sh --dom-log $fixture/log/browser-dom.log %s"

# Wall time of a command in milliseconds; its output goes to $work/last.out.
millis() {
  local start end
  start=$(date +%s%N)
  "$@" >"$work/last.out" 2>&1
  end=$(date +%s%N)
  echo $(((end - start) / 1000000))
}

printf 'release binary: %s bytes (%.1f MiB)\n' "$(stat -c %s "$bin")" \
  "$(echo "$(stat -c %s "$bin") / 1048576" | bc -l)"

ms=$(millis "$bin" login --config "$config") || { cat "$work/last.out"; exit 1; }
echo "login (browser sign-in through headless Chromium, code exchange, save): ${ms} ms"

times=()
for _ in $(seq "$check_runs"); do
  ms=$(millis "$bin" check --config "$config") || { cat "$work/last.out"; exit 1; }
  times+=("$ms")
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n | tr '\n' ' ')
echo "check (8 checks: pre-flight, token, scopes, account, refresh, SMTP send, IMAP, round trip)"
echo "  ${check_runs} runs, ms sorted: ${sorted}"
/usr/bin/time -f '%M' -o "$work/rss" "$bin" check --config "$config" >/dev/null 2>&1
echo "  peak RSS of one check: $(cat "$work/rss") KiB"

ms=$(millis "$bin" token --config "$config")
echo "token, cached access token: ${ms} ms"
python3 - "$config" <<'EOF'
import pathlib, re, sys
p = pathlib.Path(sys.argv[1]).with_name("mailgrant.secrets.toml")
text = p.read_text()
text = re.sub(r'(?m)^access_expires_at = .*$', 'access_expires_at = "2000-01-01T00:00:00Z"', text)
p.write_text(text)
EOF
ms=$(millis "$bin" token --config "$config")
echo "token, expired access token (refresh + rotated save under the lock): ${ms} ms"

# The window, left alone: on the wizard (nothing saved yet) and on the status view (its
# access-token countdown repaints once a second at most).
display=":$((90 + RANDOM % 100))"
Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
xvfb_pid=$!
sleep 1
hz=$(getconf CLK_TCK)
idle_window() {
  local what="$1" config_path="$2" before after rss cpu
  DISPLAY="$display" "$bin" --config "$config_path" >"$work/gui.log" 2>&1 &
  gui_pid=$!
  sleep 8
  kill -0 "$gui_pid" 2>/dev/null || { cat "$work/gui.log"; echo "the window did not stay up"; exit 1; }
  before=$(awk '{print $14 + $15}' "/proc/$gui_pid/stat")
  sleep "$idle_secs"
  after=$(awk '{print $14 + $15}' "/proc/$gui_pid/stat")
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$gui_pid/status")
  cpu=$(echo "scale=2; ($after - $before) * 100 / $hz / $idle_secs" | bc -l)
  echo "window idle on the $what for ${idle_secs} s: CPU ${cpu} % of one core" \
    "($((after - before)) ticks of 1/${hz} s); RSS ${rss} KiB"
  kill "$gui_pid"
  wait "$gui_pid" 2>/dev/null || true
  gui_pid=""
}
idle_window "setup wizard" "$work/new-site/mailgrant.toml"
idle_window "status view" "$config"
