#!/usr/bin/env bash
# Builds the fuzz targets on stable Rust (libFuzzer with the same coverage flags
# cargo-fuzz uses with `--sanitizer none`) and runs each for a bounded time.
#   bash fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 20 s, all four)
# Corpora grow in $FUZZ_CORPUS (default: beside the build, outside the clone); seeds in
# fuzz/seeds/ are read, never written. A crash, a panic, an input slower than 10 s or a
# run over 2 GiB fails the run; the input is kept in $FUZZ_ARTIFACTS and its path
# printed. Prints one line per target: executions, coverage, corpus size.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(frame handshake config http_head)
base=${CARGO_TARGET_DIR:-$here/../target}
export CARGO_TARGET_DIR="$base/fuzz"
corpus_root=${FUZZ_CORPUS:-$base/fuzz-corpus}
artifacts=${FUZZ_ARTIFACTS:-$base/fuzz-artifacts}
mkdir -p "$corpus_root" "$artifacts"

# What `cargo fuzz build --sanitizer none` passes to rustc, minus nothing: all stable.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing"
# With an explicit --target the flags reach only the target's crates, not build scripts
# and proc macros (which would not link without libFuzzer), as cargo-fuzz does it.
host=$(rustc -vV | sed -n 's/^host: //p')
(cd "$here" && cargo build --release --locked --bins --target "$host")

max_len() {
  case $1 in
    frame | handshake) echo 65536 ;; # big frames: validation must stay linear
    http_head) echo 20000 ;;         # past the 16 KiB head limit
    *) echo 8192 ;;
  esac
}
dict() {
  case $1 in
    frame | handshake) echo "$here/dict/json.dict" ;;
    http_head) echo "$here/dict/http.dict" ;;
    config) echo "$here/dict/config.dict" ;;
  esac
}

failed=0
printf '%-10s %12s %8s %8s %8s  %s\n' target executions cov ft corpus result
for t in "${targets[@]}"; do
  bin="$CARGO_TARGET_DIR/$host/release/$t"
  [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
  mkdir -p "$corpus_root/$t" "$artifacts/$t"
  log="$artifacts/$t/last-run.log"
  set +e
  "$bin" "$corpus_root/$t" "$here/seeds/$t" \
    -max_total_time="$seconds" -max_len="$(max_len "$t")" -dict="$(dict "$t")" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$t/" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo "?")
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo "?")
  corp=$(grep -o 'corp: [0-9]*' <<<"$last" | grep -o '[0-9]*' || echo "?")
  if [ $rc -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc)"
    failed=1
  fi
  printf '%-10s %12s %8s %8s %8s  %s\n' "$t" "$execs" "$cov" "$ft" "$corp" "$result"
  if [ $rc -ne 0 ]; then
    grep -E 'panicked|ERROR|SUMMARY|Test unit written|timeout' "$log" | head -20 >&2
    echo "fuzz: full log: $log" >&2
  fi
done
exit $failed
