#!/usr/bin/env bash
# The whole performance picture in one run, on this machine: starts the
# services and a release Sluice as separate tiers (ingest, api, worker, as
# docker-compose deploys them), measures the ceilings (a bare hyper server
# answering the same requests; redis-benchmark XADD, pipelined), runs the
# load-test scenarios, checks that every accepted event was stored, and
# rewrites the generated section of BENCHMARKS.md with each figure beside
# its ceiling.
#
# Usage: bash scripts/bench.sh [seconds per fixed-rate scenario, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SECS=${1:-20}
INGEST_PORT=18180
API_PORT=18181
REF_PORT=18999
OUT=$(mktemp -d)
log() { printf '[bench] %s\n' "$*" >&2; }
log "results in $OUT"

bash scripts/services.sh
cargo build --release -p sluice -p sluice-loadtest -q
BIN=$CARGO_TARGET_DIR/release
LT=$BIN/sluice-loadtest

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_http() { for _ in $(seq 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; log "$1 did not answer"; return 1; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
best_rate() { python3 -c 'import json,sys;d=json.load(open(sys.argv[1]));print(int((d.get("max_search") or {}).get("best_rate") or 0))' "$1"; }

# The same search for every max: x1.5 steps of 4 s from a start rate, then
# three bisections; a step fails when p99 passes 50 ms, more than 1 % of
# answers are not 2xx, or less than 90 % of the rate could be sent. 256
# connections, as many clients would open.
MAX=(--mode max --step-secs 4 --slo-p99-ms 50 --refine-steps 3 --connections 256 --duration-secs 150 --lag-samples 0)

# --- Ceiling 1: bare hyper, same requests -------------------------------------
"$LT" reference --addr 127.0.0.1:$REF_PORT 2>/dev/null & REF_PID=$!; pids+=($REF_PID)
wait_http http://127.0.0.1:$REF_PORT/
log "reference (bare hyper): single events, find the maximum"
"$LT" run --url http://127.0.0.1:$REF_PORT --api-key x --scenario single --rate 20000 "${MAX[@]}" --json \
  > "$OUT/ref_single_max.json"
kill $REF_PID; wait $REF_PID 2>/dev/null || true

# --- Ceiling 2: redis-benchmark XADD, pipelined ----------------------------------
log "redis-benchmark XADD -P 64, 2 KB entries (a single event's size)"
payload=$(python3 -c 'print("x" * 2048)')
redis-benchmark -q -n 500000 -P 64 XADD "bench:xadd:$$" '*' b "$payload" > "$OUT/xadd.txt" 2>&1 || true
redis-cli del "bench:xadd:$$" >/dev/null

# --- Sluice, tier by tier ----------------------------------------------------------
export SLUICE_DEV=true RUST_LOG=warn
export SLUICE_INGEST_RATE_LIMIT=0 SLUICE_API_RATE_LIMIT=0 SLUICE_ANALYTICS_RATE_LIMIT=0 SLUICE_TRACKING_RATE_LIMITS=false
export SLUICE_ANALYTICS_CACHE_SECS=0   # every dashboard request reaches ClickHouse
export SLUICE_REDIS_PREFIX="bench-$$"
SLUICE_ADDR=127.0.0.1:$INGEST_PORT "$BIN/sluice" ingest & INGEST_PID=$!; pids+=($INGEST_PID)
SLUICE_ADDR=127.0.0.1:$API_PORT "$BIN/sluice" api & API_PID=$!; pids+=($API_PID)
"$BIN/sluice" worker & WORKER_PID=$!; pids+=($WORKER_PID)
wait_http "http://127.0.0.1:$INGEST_PORT/health"
wait_http "http://127.0.0.1:$API_PORT/health"
COMMON=(--url "http://127.0.0.1:$INGEST_PORT" --api-url "http://127.0.0.1:$API_PORT" --database-url "$DATABASE_URL")
CHECKED=(--clickhouse-url "$CLICKHOUSE_URL" --clickhouse-database sluice)

backlog() {
  local n=0 v
  for s in 0 1 2 3; do v=$(redis-cli get "bench-$$:backlog:{$s}"); n=$((n + ${v:-0})); done
  echo $n
}
# Workers paused: the ingest tier is measured alone (in production it has
# machines of its own); then the workers drain what it accepted, timed.
pause_workers() { kill -STOP $WORKER_PID; }
drain() { # name
  local n start end
  n=$(backlog); start=$(date +%s.%N)
  kill -CONT $WORKER_PID
  while [ "$(backlog)" -gt 0 ]; do sleep 0.2; done
  end=$(date +%s.%N)
  python3 -c 'import json,sys;print(json.dumps({"events":int(sys.argv[1]),"secs":float(sys.argv[3])-float(sys.argv[2])}))' "$n" "$start" "$end" > "$OUT/drain_$1.json"
  log "workers drained $n events in $(python3 -c "print(round($end-$start,1))") s"
}

pause_workers
log "ingest alone: single events, find the maximum"
"$LT" run "${COMMON[@]}" --scenario single --rate 20000 "${MAX[@]}" --json > "$OUT/single_max.json"
drain single_max
half=$(( $(best_rate "$OUT/single_max.json") / 2 ))
[ "$half" -gt 0 ] || half=1000
pause_workers
log "ingest alone: single events at half that rate ($half/s) for $SECS s"
"$LT" run "${COMMON[@]}" --scenario single --mode rate --rate "$half" --duration-secs "$SECS" --connections 256 --lag-samples 0 --json > "$OUT/single_half.json"
drain single_half
pause_workers
log "ingest alone: batches of 100, gzip, find the maximum"
"$LT" run "${COMMON[@]}" --scenario batch --batch-size 100 --compression gzip --rate 600 "${MAX[@]}" --json > "$OUT/batch_max.json"
drain batch_max
INGEST_HWM_MAX=$(hwm_kb $INGEST_PID)
over=$(( $(best_rate "$OUT/batch_max.json") * 3 ))
[ "$over" -gt 0 ] || over=3000
pause_workers
log "ingest alone: overload, batches at $over/s (3x the maximum) for 15 s"
"$LT" run "${COMMON[@]}" --scenario batch --batch-size 100 --compression gzip --mode rate --rate "$over" --duration-secs 15 --connections 256 --lag-samples 0 --timeout-secs 10 --json > "$OUT/overload.json" || true
INGEST_HWM_OVER=$(hwm_kb $INGEST_PID)
INGEST_RSS_AFTER=$(rss_kb $INGEST_PID)
drain overload

log "every tier running: single events, find the maximum"
"$LT" run "${COMMON[@]}" "${CHECKED[@]}" --scenario single --rate 10000 "${MAX[@]}" --drain-timeout-secs 300 --json > "$OUT/single_max_all.json"
log "every tier running: batches of 100 gzip at 1,000 req/s (100,000 events/s) for 60 s, lag probes, loss check"
"$LT" run "${COMMON[@]}" "${CHECKED[@]}" --scenario batch --batch-size 100 --compression gzip --mode rate --rate 1000 --duration-secs 60 \
  --lag-samples 30 --drain-timeout-secs 300 --json > "$OUT/sustained.json"
WORKER_HWM=$(hwm_kb $WORKER_PID)

# Every run's tenant: what it was told was accepted against what is stored.
log "loss check of the runs measured with the workers paused"
for f in single_max single_half batch_max overload; do
  python3 - "$OUT/$f.json" "$DATABASE_URL" "$CLICKHOUSE_URL" > "$OUT/loss_$f.json" <<'PY'
import json, subprocess, sys, urllib.parse, urllib.request
d = json.load(open(sys.argv[1]))
t = (d.get("tenant") or {}).get("id")
pg = subprocess.run(["psql", sys.argv[2], "-Atc",
    f"SELECT coalesce(sum(count),0) FROM error_groups WHERE tenant_id = '{t}'"], capture_output=True, text=True).stdout.strip()
q = f"SELECT count() FROM sluice.error_events WHERE tenant_id = toUUID('{t}')"
ch = urllib.request.urlopen(sys.argv[3] + "/?query=" + urllib.parse.quote(q)).read().decode().strip()
print(json.dumps({"tenant": t, "accepted": d.get("accepted_errors"), "unanswered": d.get("unanswered_errors"),
                  "postgres": int(pg or 0), "clickhouse": int(ch or 0)}))
PY
done

# --- Dashboards over 10 million stored events ---------------------------------
log "dashboards over 10 million stored events"
TENANT="bench-dash-$$"
KEY=$("$BIN/sluice" create-key --tenant "$TENANT" --permissions read,write)
TID=$(psql "$DATABASE_URL" -Atc "SELECT id FROM tenants WHERE slug = '$TENANT'")
curl -fsS "$CLICKHOUSE_URL/?database=sluice" --data-binary "INSERT INTO error_events (tenant_id, group_id, event_id, timestamp, ts_ms, level, fingerprint, message, stack_trace, context, source, environment, url, user_agent, ip_address) SELECT toUUID('$TID'), toUUID(concat('00000000-0000-0000-0000-', substring(toString(1000000000000 + number % 1000), 2, 12))), concat('seed/', toString(number)), toDateTime(now() - number % 2592000), (toUInt64(now()) - number % 2592000) * 1000, arrayElement(['debug','info','warning','error','critical'], number % 5 + 1), toString(number % 1000), 'seeded error', '', '', 'seed', '', '', '', '' FROM system.numbers LIMIT 10000000"
sleep 3
"$LT" run --url "http://127.0.0.1:$API_PORT" --api-key "$KEY" --tenant-id "$TID" --scenario dashboard --mode rate --rate 100 --duration-secs "$SECS" --lag-samples 0 --json > "$OUT/dashboard.json"
for t in error_events error_rollup_1h error_rollup_5m; do
  curl -fsS "$CLICKHOUSE_URL/?database=sluice" --data-binary "ALTER TABLE $t DELETE WHERE tenant_id = toUUID('$TID')" || true
done

cat > "$OUT/memory.json" <<EOF
{"ingest_hwm_kb_at_max": ${INGEST_HWM_MAX:-0}, "ingest_hwm_kb_after_overload": ${INGEST_HWM_OVER:-0},
 "ingest_rss_kb_after_overload": ${INGEST_RSS_AFTER:-0}, "worker_hwm_kb": ${WORKER_HWM:-0}}
EOF
python3 scripts/bench_report.py "$OUT" "$SECS" > "$OUT/section.md"
# Replace the generated section of BENCHMARKS.md; the hand-written part stays.
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
log "updated BENCHMARKS.md"
