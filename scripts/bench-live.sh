#!/usr/bin/env bash
# Issue 12's and 13's ingest-side benchmarks in one run (BENCHMARKS.md,
# "Sentry envelopes beside POST /api/errors" and "WebSocket fan-out"):
# a release Sluice as separate tiers on its own ports, Redis prefix and
# ClickHouse database, then
#   1. workers paused: POST /api/errors (single events) and
#      POST /api/1/envelope/ (one event an envelope) at the same fixed rate
#      ($FIXED_RATE/s for $FIXED_SECS s), with the ingest process's CPU time
#      per event; with MAX_SEARCH=1 first the same max search for the bare
#      hyper reference and each of the two;
#   2. /ws fan-out, workers running: `sluice-loadtest fanout` with
#      $CLIENTS clients at each rate of $FANOUT_RATES new errors/s.
# Raw JSON reports stay in the printed directory; nothing is rewritten.
#
# Usage: bash scripts/bench-live.sh [binaries dir, default $CARGO_TARGET_DIR/release]
#   (the directory must hold `sluice` and `sluice-loadtest`)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
BIN=${1:-$CARGO_TARGET_DIR/release}
LT=$BIN/sluice-loadtest
INGEST_PORT=${INGEST_PORT:-18731}
API_PORT=${API_PORT:-18732}
REF_PORT=${REF_PORT:-18733}
CLIENTS=${CLIENTS:-1000}
FANOUT_RATES=${FANOUT_RATES:-"20 100"}
FANOUT_SECS=${FANOUT_SECS:-15}
FIXED_RATE=${FIXED_RATE:-2000}
FIXED_SECS=${FIXED_SECS:-15}
MAX_SEARCH=${MAX_SEARCH:-0}
PGDB=${PGDB:-postgres://postgres@127.0.0.1:5432/sluice_benchlive}
OUT=$(mktemp -d)
log() { printf '[bench-live] %s\n' "$*" >&2; }
log "results in $OUT"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  curl -fsS "$CLICKHOUSE_URL/" --data-binary "DROP DATABASE IF EXISTS sluice_benchlive_$$" >/dev/null || true
  redis-cli --scan --pattern "benchlive-$$:*" | xargs -r redis-cli del >/dev/null || true
}
trap cleanup EXIT
wait_http() { for _ in $(seq 150); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done; log "$1 did not answer"; return 1; }

MAX=(--mode max --step-secs 4 --slo-p99-ms 50 --refine-steps 2 --connections 256 --duration-secs 60 --lag-samples 0)

log "machine: $(nproc) CPUs; $(uptime)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
if [ "$MAX_SEARCH" = 1 ]; then
"$LT" reference --addr 127.0.0.1:$REF_PORT 2>/dev/null & REF_PID=$!; pids+=($REF_PID)
wait_http http://127.0.0.1:$REF_PORT/
log "reference (bare hyper): single events, max search"
"$LT" run --url http://127.0.0.1:$REF_PORT --api-key x --scenario single --rate 5000 "${MAX[@]}" --json > "$OUT/ref_single_max.json"
kill $REF_PID; wait $REF_PID 2>/dev/null || true
fi

export SLUICE_DEV=true RUST_LOG=warn DATABASE_URL=$PGDB CLICKHOUSE_DATABASE=sluice_benchlive_$$
export SLUICE_INGEST_RATE_LIMIT=0 SLUICE_API_RATE_LIMIT=0 SLUICE_ANALYTICS_RATE_LIMIT=0 SLUICE_TRACKING_RATE_LIMITS=false
export SLUICE_REDIS_PREFIX="benchlive-$$" SLUICE_WS_MAX_PER_TENANT=$((CLIENTS + 100))
# the fan-out's clients all come from one address
export SLUICE_MAX_CONNECTIONS_PER_CLIENT=$((CLIENTS + 600))
"$BIN/sluice" migrate >/dev/null
SLUICE_ADDR=127.0.0.1:$API_PORT "$BIN/sluice" api & API_PID=$!; pids+=($API_PID)
SLUICE_ADDR=127.0.0.1:$INGEST_PORT "$BIN/sluice" ingest & INGEST_PID=$!; pids+=($INGEST_PID)
"$BIN/sluice" worker & WORKER_PID=$!; pids+=($WORKER_PID)
wait_http "http://127.0.0.1:$INGEST_PORT/health"
wait_http "http://127.0.0.1:$API_PORT/health"
COMMON=(--url "http://127.0.0.1:$INGEST_PORT" --api-url "http://127.0.0.1:$API_PORT" --database-url "$PGDB")

kill -STOP $WORKER_PID
if [ "$MAX_SEARCH" = 1 ]; then
  log "ingest alone: POST /api/errors, single events, max search"
  "$LT" run "${COMMON[@]}" --scenario single --rate 5000 "${MAX[@]}" --json > "$OUT/single_max.json"
  log "ingest alone: POST /api/1/envelope/, one event an envelope, max search"
  "$LT" run "${COMMON[@]}" --scenario envelope --rate 5000 "${MAX[@]}" --json > "$OUT/envelope_max.json"
fi
for sc in single envelope single envelope; do
  log "ingest alone: $sc at $FIXED_RATE/s for $FIXED_SECS s"
  c0=$(cpu_ticks $INGEST_PID)
  "$LT" run "${COMMON[@]}" --scenario $sc --mode rate --rate "$FIXED_RATE" --duration-secs "$FIXED_SECS" \
    --warmup-secs 0 --connections 256 --lag-samples 0 --json > "$OUT/fixed_$sc.$c0.json"
  echo "{\"ticks\": $(( $(cpu_ticks $INGEST_PID) - c0 )), \"hz\": $(getconf CLK_TCK)}" > "$OUT/cpu_$sc.$c0.json"
done
kill -CONT $WORKER_PID

for r in $FANOUT_RATES; do
  log "every tier: /ws fan-out to $CLIENTS clients, $r new errors/s for $FANOUT_SECS s"
  "$LT" fanout --url "http://127.0.0.1:$INGEST_PORT" --api-url "http://127.0.0.1:$API_PORT" --database-url "$PGDB" \
    --clients "$CLIENTS" --rate "$r" --duration-secs "$FANOUT_SECS" --json > "$OUT/fanout_$r.json"
done
log "machine after: $(uptime)"
python3 - "$OUT" <<'PY'
import json, os, sys
d = sys.argv[1]
def j(n):
    p = os.path.join(d, n)
    return json.load(open(p)) if os.path.exists(p) else {}
for f in sorted(os.listdir(d)):
    if f.startswith("fixed_"):
        r = j(f); c = j("cpu_" + f[len("fixed_"):])
        ev = r.get("accepted_errors") or 0
        print(f, "req/s", round(r.get("requests_per_sec", 0)), "accepted", ev, "latency", r.get("latency_ms"),
              "statuses", (r.get("status_counts") or {}).get("by_code"),
              "ingest CPU us/event", round(c["ticks"] / c["hz"] * 1e6 / max(ev, 1), 1), "bytes", (r.get("payloads") or {}).get("single_bytes"))
for n in ("ref_single_max", "single_max", "envelope_max"):
    r = j(n + ".json")
    print(n, "best", (r.get("max_search") or {}).get("best_rate"), "p99 all steps", (r.get("latency_ms") or {}).get("p99"),
          "statuses", r.get("status_counts"))
for f in sorted(os.listdir(d)):
    if f.startswith("fanout_"):
        print(f, json.dumps(j(f)))
PY
