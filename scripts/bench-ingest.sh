#!/usr/bin/env bash
# Rough ingest throughput on this machine: starts a release `sluice all`
# (no rate limit, its own Redis prefix) and drives it with wrk: single
# events, then gzip'd batches of 100. Prints wrk's reports.
# Usage: scripts/bench-ingest.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
secs=${1:-15}; conns=${2:-64}

bash scripts/services.sh
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin sluice -q

export SLUICE_ADDR=127.0.0.1:18181 SLUICE_INGEST_RATE_LIMIT=0 SLUICE_REDIS_PREFIX="bench-$$" SLUICE_DEFAULT_TENANT="bench-$$" RUST_LOG=warn
export SLUICE_BOOTSTRAP_API_KEY="sk_live_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$CARGO_TARGET_DIR/release/sluice" all & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; redis-cli --scan --pattern "bench-$$:*" | xargs -r redis-cli del >/dev/null' EXIT
for _ in $(seq 100); do curl -fsS "http://$SLUICE_ADDR/health" >/dev/null 2>&1 && break; sleep 0.2; done

export SLUICE_KEY=$SLUICE_BOOTSTRAP_API_KEY
tmp=$(mktemp -d)
python3 - "$tmp/batch.json" <<'PY'
import json, sys
events = [{"level": "error", "message": f"Timeout after {i} ms for order {i*7}",
           "stack_trace": "Error: timeout\n    at Database.connect (/srv/app/db.js:10:5)",
           "context": {"user_id": str(i), "password": "x"}, "source": "backend"} for i in range(100)]
open(sys.argv[1], "w").write(json.dumps(events))
PY
gzip -k "$tmp/batch.json"

echo "== single events: wrk -t2 -c$conns -d${secs}s -s scripts/wrk/single.lua"
wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/wrk/single.lua "http://$SLUICE_ADDR"
echo "== batches of 100, gzip: wrk -t2 -c$conns -d${secs}s -s scripts/wrk/batch.lua (BATCH_GZIP=1)"
BATCH_FILE="$tmp/batch.json.gz" BATCH_GZIP=1 wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/wrk/batch.lua "http://$SLUICE_ADDR"
echo "== batches of 100, plain JSON"
BATCH_FILE="$tmp/batch.json" wrk -t2 -c"$conns" -d"${secs}s" --latency -s scripts/wrk/batch.lua "http://$SLUICE_ADDR"
sleep 3
echo "== backlog left in Redis after the run: $(for k in $(redis-cli --scan --pattern "bench-$$:errors:*"); do redis-cli xlen "$k"; done | paste -sd+ | bc 2>/dev/null || echo '?')"
