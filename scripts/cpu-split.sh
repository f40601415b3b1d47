#!/usr/bin/env bash
# Where the CPU goes under one fixed load: starts Sluice's tiers as separate
# release processes, offers a constant rate of one scenario, and prints the
# CPU each process used in the middle of the run (Sluice by tier, Redis,
# PostgreSQL, ClickHouse, the load generator, the kernel's threads), the
# ingest tier's peak memory, and the load generator's summary with its loss
# check. Before/after comparisons in BENCHMARKS.md were made with it.
#
# Usage: bash scripts/cpu-split.sh [scenario=batch] [rate=400] [seconds=20]
#   (batch: 100 gzip'd events a request; single: one event a request)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SCENARIO=${1:-batch}; RATE=${2:-400}; SECS=${3:-20}
[ "$SECS" -ge 15 ] || { echo "at least 15 seconds" >&2; exit 2; }
bash scripts/services.sh >/dev/null
cargo build --release -q -p sluice -p sluice-loadtest
BIN=$CARGO_TARGET_DIR/release
OUT=$(mktemp -d)
export SLUICE_DEV=true RUST_LOG=warn SLUICE_INGEST_RATE_LIMIT=0 SLUICE_API_RATE_LIMIT=0 \
  SLUICE_ANALYTICS_RATE_LIMIT=0 SLUICE_TRACKING_RATE_LIMITS=false SLUICE_REDIS_PREFIX="cpu-$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  redis-cli --scan --pattern "cpu-$$:*" | xargs -r redis-cli del >/dev/null
}
trap cleanup EXIT
SLUICE_ADDR=127.0.0.1:18280 "$BIN/sluice" ingest & INGEST_PID=$!; pids+=($INGEST_PID)
SLUICE_ADDR=127.0.0.1:18281 "$BIN/sluice" api & pids+=($!)
"$BIN/sluice" worker & pids+=($!)
for port in 18280 18281; do
  for _ in $(seq 150); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.2; done
done
# The window leaves out the first 5 s (warm-up, tenant provisioning) and the end.
( sleep 5; python3 scripts/cpu_split.py $((SECS - 10)) > "$OUT/cpu.txt" ) & SAMPLER=$!
"$BIN/sluice-loadtest" run --url http://127.0.0.1:18280 --api-url http://127.0.0.1:18281 \
  --database-url "$DATABASE_URL" --clickhouse-url "$CLICKHOUSE_URL" --clickhouse-database sluice \
  --scenario "$SCENARIO" --batch-size 100 --compression gzip --mode rate --rate "$RATE" \
  --duration-secs "$SECS" --connections 256 --json > "$OUT/report.json"
wait $SAMPLER
cat "$OUT/cpu.txt"
echo "ingest peak resident memory: $(awk '/VmHWM/ {print $2}' "/proc/$INGEST_PID/status") kB"
python3 - "$OUT/report.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
lat = {k: round(v, 1) for k, v in d["latency_ms"].items()}
print(f"events/s {d['events_per_sec']:,.0f}; latency ms {lat}")
lag = d.get("lag") or {}
print(f"visibility lag p50 {lag.get('p50_ms')} ms, p99 {lag.get('p99_ms')} ms")
lc = d.get("loss_check") or {}
print("loss check:", {k: lc.get(k) for k in ("accepted", "stored_clickhouse", "stored_postgres", "lost", "duplicated")})
PY
