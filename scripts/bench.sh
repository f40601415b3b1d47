#!/usr/bin/env bash
# The whole performance picture in one run: starts the services and a
# release Sluice, measures the ceilings (a bare hyper server answering the
# same requests; redis-benchmark XADD, pipelined), runs the load-test
# scenarios against Sluice, and writes BENCHMARKS.md with every figure
# beside its ceiling as a ratio.
#
# Usage: bash scripts/bench.sh [seconds per scenario, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SECS=${1:-20}
PORT=18180
REF_PORT=18999
OUT=$(mktemp -d)
echo "[bench] results in $OUT"

bash scripts/services.sh
cargo build --release -p sluice -p sluice-loadtest -q
BIN=$CARGO_TARGET_DIR/release
LT=$BIN/sluice-loadtest

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_http() { for _ in $(seq 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "[bench] $1 did not answer" >&2; return 1; }

# --- Ceiling 1: bare hyper, same requests ------------------------------------
"$LT" reference --addr 127.0.0.1:$REF_PORT & pids+=($!)
wait_http http://127.0.0.1:$REF_PORT/
echo "[bench] reference: single events, find the maximum"
"$LT" run --url http://127.0.0.1:$REF_PORT --api-key x --tenant-id 00000000-0000-0000-0000-000000000000 \
  --scenario single --mode max --rate 5000 --step-secs 4 --duration-secs 90 --json > "$OUT/ref_single_max.json"
kill "${pids[-1]}"; unset 'pids[-1]'

# --- Ceiling 2: redis-benchmark XADD, pipelined --------------------------------
echo "[bench] redis-benchmark XADD -P 64"
payload=$(python3 -c 'import json;print(json.dumps({"tenant_id":"00000000-0000-0000-0000-000000000000","message":"x"*300}))')
redis-benchmark -q -n 1000000 -P 64 XADD "bench:xadd:$$" '*' e "$payload" > "$OUT/xadd.txt" 2>&1 || true
redis-cli del "bench:xadd:$$" >/dev/null

# --- Sluice -------------------------------------------------------------------
export SLUICE_ADDR=127.0.0.1:$PORT SLUICE_DEV=true RUST_LOG=warn
export SLUICE_INGEST_RATE_LIMIT=0 SLUICE_API_RATE_LIMIT=0 SLUICE_ANALYTICS_RATE_LIMIT=0 SLUICE_TRACKING_RATE_LIMITS=false
# Analytics uncached: every dashboard request reaches ClickHouse.
export SLUICE_ANALYTICS_CACHE_SECS=0
export SLUICE_REDIS_PREFIX="bench-$$"
"$BIN/sluice" all & SLUICE_PID=$!; pids+=($SLUICE_PID)
wait_http "http://$SLUICE_ADDR/health"
rss() { awk '/VmHWM/ {print $2}' "/proc/$SLUICE_PID/status"; }
COMMON=(--url "http://$SLUICE_ADDR" --database-url "$DATABASE_URL" --clickhouse-url "$CLICKHOUSE_URL" --clickhouse-database sluice)

echo "[bench] sluice: single events, find the maximum"
"$LT" run "${COMMON[@]}" --scenario single --mode max --rate 2000 --step-secs 4 --duration-secs 90 --json > "$OUT/single_max.json"
max=$(python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(int((d.get("max_search") or {}).get("best_rate") or 1000))' "$OUT/single_max.json")
half=$(( max / 2 ))
echo "[bench] sluice: single events at half the maximum ($half/s)"
"$LT" run "${COMMON[@]}" --scenario single --mode rate --rate "$half" --duration-secs "$SECS" --json > "$OUT/single_half.json"
echo "[bench] sluice: batches of 100, gzip, find the maximum"
"$LT" run "${COMMON[@]}" --scenario batch --batch-size 100 --compression gzip --mode max --rate 100 --step-secs 4 --duration-secs 90 --json > "$OUT/batch_max.json"
echo "[bench] sluice: sustained end to end, batches at 1,000 req/s (100,000 events/s) for 60 s, with loss check"
"$LT" run "${COMMON[@]}" --scenario batch --batch-size 100 --compression gzip --mode rate --rate 1000 --duration-secs 60 \
  --lag-samples 20 --drain-timeout-secs 300 --json > "$OUT/sustained.json"
rss_max=$(rss)
echo "[bench] sluice: overload (batches far past the maximum)"
"$LT" run "${COMMON[@]}" --scenario batch --batch-size 100 --mode rate --rate 20000 --duration-secs 15 --json > "$OUT/overload.json" || true
rss_over=$(rss)

echo "[bench] dashboards over 10 million stored events"
tenant_json=$("$BIN/sluice" create-key --tenant "bench-dash-$$" --permissions read,write)
KEY=$tenant_json
TID=$(psql "$DATABASE_URL" -Atc "SELECT id FROM tenants WHERE slug = 'bench-dash-$$'")
curl -fsS "$CLICKHOUSE_URL/?database=sluice" --data-binary "INSERT INTO error_events (tenant_id, group_id, event_id, timestamp, ts_ms, level, fingerprint, message, stack_trace, context, source, environment, url, user_agent, ip_address) SELECT toUUID('$TID'), toUUID(concat('00000000-0000-0000-0000-', substring(toString(1000000000000 + number % 1000), 2, 12))), concat('seed/', toString(number)), toDateTime(now() - number % 2592000), (toUInt64(now()) - number % 2592000) * 1000, arrayElement(['debug','info','warning','error','critical'], number % 5 + 1), toString(number % 1000), 'seeded error', '', '', 'seed', '', '', '', '' FROM system.numbers LIMIT 10000000"
sleep 3
"$LT" run --url "http://$SLUICE_ADDR" --api-key "$KEY" --tenant-id "$TID" --scenario dashboard --mode rate --rate 100 --duration-secs "$SECS" --json > "$OUT/dashboard.json"
for t in error_events error_rollup_1h error_rollup_5m; do
  curl -fsS "$CLICKHOUSE_URL/?database=sluice" --data-binary "ALTER TABLE $t DELETE WHERE tenant_id = toUUID('$TID')" || true
done

python3 scripts/bench_report.py "$OUT" "$rss_max" "$rss_over" "$SECS" > "$OUT/section.md"
# Replace the generated section of BENCHMARKS.md; the hand-written history stays.
python3 - "$OUT/section.md" <<'PY'
import sys
new = open(sys.argv[1]).read()
doc = open("BENCHMARKS.md").read()
start, end = "<!-- bench:start -->", "<!-- bench:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + new + doc[doc.index(end):]
else:
    doc = doc.rstrip() + "\n\n" + start + "\n" + new + end + "\n"
open("BENCHMARKS.md", "w").write(doc)
PY
echo "[bench] updated BENCHMARKS.md"
