#!/usr/bin/env bash
# Runs the same scenarios against the reference gateway (npm clawdbot 2026.1.24-3, protocol
# v3) and Switchboard (release build), one after the other on this machine, and prints
# both figures and their ratios. Loopback only; every scenario is bounded in count and time.
#
# Usage: bench/compare.sh            (QUICK=1 for a short run; SOAK=0 skips the 10-minute
#                                    churn soak; RESULTS=FILE keeps the raw results)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$(cd "$root/../shared" && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
quick=${QUICK:-0}
token="bench-$$-$(date +%s)"
work=$(mktemp -d)
pids=()
cleanup() {
  # The reference's launcher re-spawns the gateway as a child: stop the listener too.
  [ -n "${ref_pid:-}" ] && kill "$ref_pid" 2>/dev/null
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Only what the runs start: the gateway, its agent worker and the load generator.
(cd "$root" && cargo build --release -p switchboard -p worker-agent -p switchboard-bench --quiet)
bench="$target/release/switchboard-bench"
sb="$target/release/switchboard"

wait_port() { # port, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    if "$bench" --url "ws://127.0.0.1:$1" --token "$token" --scenario handshake --count 1 --concurrency 1 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "gateway on port $1 did not come up" >&2; return 1
}

ref_port=19881; sb_port=19882
echo "== starting the reference gateway (clawdbot, Node) on $ref_port"
"$shared/reference/run.sh" "$ref_port" "$token" "$work/ref-home" >"$work/ref.log" 2>&1 &
ref_pid=$!; pids+=("$ref_pid")
echo "== starting Switchboard (release) on $sb_port"
# Throughput scenarios drive one connection far past the per-connection request budget
# (README: Request rate); the reference has no such limit, so it is off for the comparison.
SWITCHBOARD_REQUESTS_PER_SECOND=0 "$sb" gateway run --port "$sb_port" --token "$token" --state-dir "$work/sb-state" >"$work/sb.log" 2>&1 &
sb_pid=$!; pids+=("$sb_pid")
wait_port "$sb_port" 30
wait_port "$ref_port" 120
# The reference finishes start-up work (and may reload) after it first answers.
sleep 10
wait_port "$ref_port" 60
# The reference's launcher re-spawns the gateway as a child: measure the listener's pid.
ref_pid=$(ss -ltnp "sport = :$ref_port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)
[ -n "$ref_pid" ] || { echo "cannot find the reference gateway's pid" >&2; exit 1; }

if [ "$quick" = 1 ]; then n=300; hs=300; idle=200; fan=10; storm=200; settle=3; soak=60; else n=20000; hs=2000; idle=1000; fan=50; storm=1000; settle=30; soak=600; fi
# RESULTS=FILE keeps the raw results (one JSON line per run) after the run.
results=${RESULTS:-$work/results.txt}
: >"$results"
run() { # label port pid args...
  local label=$1 port=$2 pid=$3; shift 3
  "$bench" --label "$label" --url "ws://127.0.0.1:$port" --token "$token" --max-seconds "${max:-120}" "$@" --pid "$pid" | grep '^RESULT ' | sed 's/^RESULT //' >>"$results"
}
for g in "reference $ref_port $ref_pid" "switchboard $sb_port $sb_pid"; do
  set -- $g
  echo "== $1"
  # First, on a fresh process: presence-tracked clients (apps, nodes, UIs) joining at
  # once, held while they read their sockets, then leaving; then the same untracked.
  run "$1" "$2" "$3" --tracked --scenario join-storm --count "$storm" --concurrency 16 --settle-seconds "$settle"
  run "$1" "$2" "$3" --scenario join-storm --count "$storm" --concurrency 16 --settle-seconds "$settle"
  run "$1" "$2" "$3" --tracked --scenario handshake --count "$hs" --concurrency 10
  run "$1" "$2" "$3" --scenario handshake --count "$hs" --concurrency 10
  for c in 1 10 100; do run "$1" "$2" "$3" --scenario health --count "$n" --concurrency "$c"; done
  run "$1" "$2" "$3" --scenario pipelined --count "$n" --concurrency 10 --depth 16
  # Latency at a load both can sustain (open loop, 100 connections, 1000 requests/s).
  run "$1" "$2" "$3" --scenario health --count "$(( n / 4 ))" --concurrency 100 --rate 1000
  run "$1" "$2" "$3" --scenario fanout --count "$fan" --concurrency 100
  run "$1" "$2" "$3" --scenario idle --count "$idle"
done
echo "== switchboard only"
# p99 at 100 connections under a load well below saturation (10 000 requests/s).
run switchboard "$sb_port" "$sb_pid" --scenario health --count "$n" --concurrency 100 --rate 10000
run switchboard "$sb_port" "$sb_pid" --scenario recovery --count 5
# Churn soak: 200 tracked clients held, 50 joins (and leaves) a second, RSS every 10 s.
if [ "${SOAK:-1}" != 0 ]; then
  max=$soak run switchboard "$sb_port" "$sb_pid" --tracked --scenario soak --concurrency 200 --rate 50 --count 1000000 --sample-seconds 10
fi
kill "$sb_pid"; wait "$sb_pid" 2>/dev/null || true
"$bench" --label switchboard --url "ws://127.0.0.1:$sb_port" --token "$token" --scenario coldstart --count 20 \
  --spawn "exec env SWITCHBOARD_REQUESTS_PER_SECOND=0 $sb gateway run --port $sb_port --token $token --state-dir $work/cold-\$\$" | grep '^RESULT ' | sed 's/^RESULT //' >>"$results"

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def key(r):
    extra = str(r.get("connections") or r.get("subscribers") or r.get("concurrency") or "")
    if "rate" in r:
        extra += f" @{r['rate']}/s"
    if r.get("tracked"):
        extra += " tracked"
    return (r["scenario"], extra)
by = {}
for r in rows:
    by.setdefault(key(r), {})[r["gateway"]] = r
print()
print(f"{'scenario':<28}{'metric':<20}{'reference':>14}{'switchboard':>14}{'ratio':>10}")
for k, g in sorted(by.items()):
    name = f"{k[0]} ({k[1]})" if k[1] else k[0]
    for metric in ["per_second", "p50_us", "p99_us", "p999_us", "open_ms", "rss_before_kib", "rss_with_kib", "kib_per_connection", "rss_settled_kib", "settled_over_before_pct", "slow_consumer_cuts", "errors", "rss_first_half_max_kib", "rss_second_half_max_kib", "first_kill_us", "server_cpu_us_per_op", "client_cpu_us_per_op"]:
        ref = g.get("reference", {}).get(metric); sb = g.get("switchboard", {}).get(metric)
        if ref is None and sb is None: continue
        ratio = ""
        if ref and sb and metric not in ("errors", "slow_consumer_cuts", "settled_over_before_pct", "rss_before_kib"):
            ratio = f"{(sb/ref if metric=='per_second' else ref/sb):.1f}x"
        print(f"{name:<28}{metric:<20}{str(ref if ref is not None else '-'):>14}{str(sb if sb is not None else '-'):>14}{ratio:>10}")
print("\n(ratio: how many times better Switchboard is; higher is better)")
PY
echo
echo "raw results: one JSON line per run"
cat "$results"
