#!/usr/bin/env bash
# What each Redis durability level costs ingest. Starts a Redis of its own
# per level (never the shared one on 6379) and a release `sluice ingest`
# on it, offers the same fixed loads to each, and reports throughput,
# latency and CPU per event as ratios against the no-AOF run of the same
# session (this machine is shared and noisy: only same-session ratios mean
# anything). Levels:
#   none      appendonly no, no snapshots
#   everysec  appendonly yes, appendfsync everysec
#   always    appendonly yes, appendfsync always
#   replica   no AOF; one replica attached, SLUICE_REDIS_MIN_REPLICAS=1 (WAIT)
# Workers are not running: the events stay in the level's Redis, which is
# deleted afterwards (as bench.sh measures the ingest tier alone).
#
# Usage: bash scripts/bench-durability.sh [seconds=20] [--write]
#   --write replaces the "Durability levels" section of BENCHMARKS.md.
#   SINGLE_RATE (4000 req/s, one event each) and BATCH_RATE (500 req/s of
#   100 gzip'd events) set the loads; SLUICE_BENCH_REDIS_PORT (16390) the
#   first port used.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
SECS=20; WRITE=0
for a in "$@"; do
  case "$a" in
    --write) WRITE=1 ;;
    *) SECS=$a ;;
  esac
done
SINGLE_RATE=${SINGLE_RATE:-4000}
BATCH_RATE=${BATCH_RATE:-500}
PORT=${SLUICE_BENCH_REDIS_PORT:-16390}
ADDR=127.0.0.1:18290
bash scripts/services.sh >/dev/null
cargo build --release -q -p sluice -p sluice-loadtest
BIN=$CARGO_TARGET_DIR/release
OUT=$(mktemp -d)
export SLUICE_DEV=true RUST_LOG=warn SLUICE_INGEST_RATE_LIMIT=0 SLUICE_MAX_BACKLOG=50000000
KEY=$("$BIN/sluice" create-key --tenant bench-durability --name bench-durability --permissions read,write)

redis_pids=()
sluice_pid=""
cleanup() {
  [ -n "$sluice_pid" ] && kill "$sluice_pid" 2>/dev/null || true
  for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$OUT"/redis-*
}
trap cleanup EXIT

ping_ok() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }
start_redis() { # port, redis-server arguments...
  local port=$1; shift
  mkdir -p "$OUT/redis-$port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --dir "$OUT/redis-$port" "$@" \
    >"$OUT/redis-$port/log" 2>&1 &
  redis_pids+=($!)
  for _ in $(seq 40); do ping_ok "$port" && return 0; sleep 0.25; done
  echo "redis on $port did not start" >&2; exit 1
}
stop_all() {
  kill "$sluice_pid" 2>/dev/null || true; wait "$sluice_pid" 2>/dev/null || true; sluice_pid=""
  for p in "${redis_pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  redis_pids=()
  rm -rf "$OUT"/redis-*
}
ticks() { # CPU clock ticks used so far by the given processes
  local t=0
  for p in "$@"; do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$t"
}

run_level() { # name, min replicas
  local name=$1 replicas=$2
  SLUICE_ADDR=$ADDR REDIS_URL="redis://127.0.0.1:$PORT" SLUICE_REDIS_MIN_REPLICAS=$replicas \
    "$BIN/sluice" ingest >"$OUT/$name.log" 2>&1 &
  sluice_pid=$!
  for _ in $(seq 150); do curl -fsS "http://$ADDR/health" >/dev/null 2>&1 && break; sleep 0.2; done
  curl -fsS "http://$ADDR/health" >"$OUT/$name.health.json"
  for scenario in single batch; do
    local rate=$SINGLE_RATE
    [ "$scenario" = batch ] && rate=$BATCH_RATE
    local before; before=$(ticks "$sluice_pid" "${redis_pids[@]}")
    "$BIN/sluice-loadtest" run --url "http://$ADDR" --api-key "$KEY" --scenario "$scenario" \
      --batch-size 100 --compression gzip --mode rate --rate "$rate" --duration-secs "$SECS" \
      --connections 256 --lag-samples 0 --json >"$OUT/$name.$scenario.json"
    local after; after=$(ticks "$sluice_pid" "${redis_pids[@]}")
    echo "$((after - before))" >"$OUT/$name.$scenario.ticks"
    echo "[durability] $name $scenario done" >&2
  done
  stop_all
}

start_redis "$PORT" --appendonly no
run_level none 0
start_redis "$PORT" --appendonly yes --appendfsync everysec
run_level everysec 0
start_redis "$PORT" --appendonly yes --appendfsync always
run_level always 0
start_redis "$PORT" --appendonly no
start_redis $((PORT + 1)) --appendonly no --replicaof 127.0.0.1 "$PORT"
for _ in $(seq 40); do
  redis-cli -p $((PORT + 1)) info replication | grep -q master_link_status:up && break; sleep 0.25
done
run_level replica 1

args=("$OUT" "$SECS" "$SINGLE_RATE" "$BATCH_RATE" "$(getconf CLK_TCK)")
if [ "$WRITE" = 1 ]; then
  python3 scripts/durability_report.py "${args[@]}" --write BENCHMARKS.md
else
  python3 scripts/durability_report.py "${args[@]}"
fi
