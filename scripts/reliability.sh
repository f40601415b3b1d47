#!/usr/bin/env bash
# Crash and outage drills under load, repeatable: a steady open-loop load of
# error events (single events and batches) runs while one thing fails —
# kill -9 of each tier (then restarted at once), each store stopped for 30 s
# (then started again) — and every scenario ends with the loss check of
# sluice-loadtest for its own tenant: events answered 2xx against the
# distinct events in ClickHouse and the group counts in PostgreSQL, events
# stored twice, events stored without an answer, and the time to drain.
#
# By default it runs everything it breaks itself, so the machine's shared
# services are never touched: its own redis-server (appendonly yes,
# appendfsync everysec), its own PostgreSQL cluster (initdb + pg_ctl) and its
# own ClickHouse server, on other ports, in a temporary directory, and a
# release build of Sluice's tiers as separate processes (`sluice ingest`,
# `sluice api`, `sluice worker`). All of it is stopped at the end. It then
# rewrites the generated part of BENCHMARKS.md's "Reliability" section.
#
# Usage: bash scripts/reliability.sh [scenario ...]
#   scenarios (default: all but redis-noaof, in this order):
#     baseline        no fault
#     kill-ingest     kill -9 `sluice ingest`, restart it
#     kill-worker     kill -9 `sluice worker`, restart it
#     kill-api        kill -9 `sluice api`, restart it
#     redis-down      kill -9 Redis (AOF on), start it again after the outage
#     postgres-down   stop PostgreSQL (immediate mode: a crash), start it after
#     clickhouse-down kill -9 ClickHouse, start it again after the outage
#     redis-noaof     AOF turned off, then as redis-down: what a Redis
#                     without persistence loses
#
# Settings (environment):
#   RELIABILITY_RATE=2000      events/s offered (80 % of requests single
#                              events, 20 % batches of RELIABILITY_BATCH=10)
#   RELIABILITY_BEFORE=10      seconds of load before the fault
#   RELIABILITY_OUTAGE=30      seconds a store stays down
#   RELIABILITY_AFTER=20       seconds of load after the recovery
#   RELIABILITY_DRAIN=120      longest wait for the stores after the load
#   RELIABILITY_OUT=dir        where the JSON reports go (default: a temp dir)
#   RELIABILITY_WRITE=1        rewrite BENCHMARKS.md (local target only)
#
# Your own deployment: RELIABILITY_TARGET=external, with INGEST_URL (and
# API_URL when the API is elsewhere), DATABASE_URL and CLICKHOUSE_URL
# (CLICKHOUSE_DATABASE, CLICKHOUSE_USER, CLICKHOUSE_PASSWORD) of that
# deployment, and for each scenario the commands that break and repair it:
# RELIABILITY_<SCENARIO>_DOWN and RELIABILITY_<SCENARIO>_UP, e.g.
#   RELIABILITY_KILL_INGEST_DOWN='docker compose kill -s KILL ingest'
#   RELIABILITY_KILL_INGEST_UP='docker compose start ingest'
# Scenarios without both commands are skipped; nothing is built or started,
# and BENCHMARKS.md is left alone. Each scenario creates a tenant
# `loadtest-…` with an API key in that deployment's PostgreSQL. Lift the
# API's per-key limits there (SLUICE_API_RATE_LIMIT=0) or the lag probes'
# polls are refused.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

RATE=${RELIABILITY_RATE:-2000}
BATCH=${RELIABILITY_BATCH:-10}
BEFORE=${RELIABILITY_BEFORE:-10}
OUTAGE=${RELIABILITY_OUTAGE:-30}
AFTER=${RELIABILITY_AFTER:-20}
DRAIN=${RELIABILITY_DRAIN:-120}
TARGET=${RELIABILITY_TARGET:-local}
OUT=${RELIABILITY_OUT:-$(mktemp -d /tmp/sluice-reliability-out.XXXXXX)}
mkdir -p "$OUT"
ALL=(baseline kill-ingest kill-worker kill-api redis-down postgres-down clickhouse-down)
if [ $# -gt 0 ]; then SCENARIOS=("$@"); else SCENARIOS=("${ALL[@]}"); fi
log() { printf '[reliability %s] %s\n' "$(date -u +%T)" "$*" >&2; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" "$1" "$(now)"; }

# The load: slots (requests) a second for RATE events a second, with 80 %
# single events and 20 % batches of BATCH events.
SLOTS=$(python3 -c "print(round($RATE / (0.8 + 0.2 * $BATCH), 1))")

pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then as_user postgres pg_ctl -D "$PGDATA_DIR" stop -m immediate >/dev/null 2>&1; fi
  wait 2>/dev/null
  if [ -n "${WORK:-}" ] && [ "${RELIABILITY_KEEP:-0}" != 1 ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # seconds, command...: polls every 0.2 s
  local tries=$(( $1 * 5 )); shift
  for _ in $(seq "$tries"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  return 1
}
http_ok() { curl -fsS -m 2 "$1" >/dev/null; }

if [ "$TARGET" = local ]; then
  # --- its own stores -----------------------------------------------------
  for c in redis-server redis-cli initdb pg_ctl clickhouse-server; do
    command -v "$c" >/dev/null || [ -x "$(ls /usr/lib/postgresql/*/bin/$c 2>/dev/null | sort -V | tail -n1)" ] \
      || { log "$c is missing: bash scripts/services.sh installs Redis, PostgreSQL and ClickHouse"; exit 1; }
  done
  PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n1)")
  [ -x "$PGBIN/initdb" ] || PGBIN=$(dirname "$(command -v initdb)")
  export PATH="$PGBIN:$PATH"
  INGEST_PORT=${RELIABILITY_INGEST_PORT:-18480}
  API_PORT=${RELIABILITY_API_PORT:-18481}
  REDIS_PORT=${RELIABILITY_REDIS_PORT:-16479}
  PG_PORT=${RELIABILITY_PG_PORT:-15532}
  CH_HTTP_PORT=${RELIABILITY_CH_HTTP_PORT:-18223}
  CH_TCP_PORT=${RELIABILITY_CH_TCP_PORT:-19100}
  for p in $INGEST_PORT $API_PORT $REDIS_PORT $PG_PORT $CH_HTTP_PORT $CH_TCP_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then log "port $p is taken (RELIABILITY_*_PORT to move)"; exit 1; fi
  done
  WORK=$(mktemp -d /tmp/sluice-reliability.XXXXXX)
  chmod 755 "$WORK"
  log "stores and logs in $WORK, reports in $OUT"

  # root runs PostgreSQL and ClickHouse as their own users (neither runs as
  # root); setpriv execs, so a background job's pid is the server's own
  as_prefix() { if [ "$(id -u)" -eq 0 ]; then echo setpriv --reuid="$1" --regid="$1" --init-groups --; fi; }
  as_user() { # user, command...
    local u=$1; shift
    $(as_prefix "$u") env PATH="$PATH" "$@"
  }
  own() { if [ "$(id -u)" -eq 0 ]; then chown -R "$1:$1" "$2"; fi; }

  REDIS_AOF=yes
  start_redis() {
    mkdir -p "$WORK/redis"
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" \
      --appendonly "$REDIS_AOF" --appendfsync everysec --logfile "$WORK/redis.log" --daemonize no &
    REDIS_PID=$!; pids+=("$REDIS_PID")
    wait_until 20 redis-cli -p "$REDIS_PORT" ping || { log "redis did not start"; exit 1; }
  }
  PGDATA_DIR="$WORK/pg"
  start_pg() {
    as_user postgres pg_ctl -D "$PGDATA_DIR" -l "$WORK/postgres.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $WORK/pgsock -c max_connections=200" start >/dev/null
  }
  start_ch() {
    env MALLOC_CONF="${SLUICE_CH_MALLOC_CONF-dirty_decay_ms:-1,muzzy_decay_ms:-1}" \
      $(as_prefix clickhouse) clickhouse-server --config-file="$WORK/ch/config.xml" >/dev/null 2>&1 &
    CH_PID=$!; pids+=("$CH_PID")
    wait_until 120 http_ok "http://127.0.0.1:$CH_HTTP_PORT/ping" || { log "clickhouse did not start"; exit 1; }
  }

  log "redis-server on $REDIS_PORT (appendonly $REDIS_AOF, appendfsync everysec)"
  start_redis
  log "PostgreSQL cluster on $PG_PORT"
  mkdir -p "$PGDATA_DIR" "$WORK/pgsock"; touch "$WORK/postgres.log"
  own postgres "$PGDATA_DIR"; own postgres "$WORK/pgsock"; own postgres "$WORK/postgres.log"
  as_user postgres initdb -D "$PGDATA_DIR" -U postgres -A trust >/dev/null
  start_pg
  log "ClickHouse on $CH_HTTP_PORT (tcp $CH_TCP_PORT)"
  mkdir -p "$WORK/ch/data" "$WORK/ch/tmp" "$WORK/ch/user_files" "$WORK/ch/format_schemas"
  cat > "$WORK/ch/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$WORK/ch/server.log</log>
        <errorlog>$WORK/ch/server.err.log</errorlog>
        <size>100M</size>
        <count>1</count>
    </logger>
    <http_port>$CH_HTTP_PORT</http_port>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>8589934592</uncompressed_cache_size>
    <mark_cache_size>1073741824</mark_cache_size>
    <path>$WORK/ch/data/</path>
    <tmp_path>$WORK/ch/tmp/</tmp_path>
    <user_files_path>$WORK/ch/user_files/</user_files_path>
    <format_schema_path>$WORK/ch/format_schemas/</format_schema_path>
    <users_config>/etc/clickhouse-server/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mlock_executable>false</mlock_executable>
</yandex>
EOF
  own clickhouse "$WORK/ch"
  start_ch

  export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/sluice"
  export REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  export CLICKHOUSE_URL="http://127.0.0.1:$CH_HTTP_PORT"
  export CLICKHOUSE_DATABASE=sluice
  unset CLICKHOUSE_USER CLICKHOUSE_PASSWORD

  # --- Sluice ---------------------------------------------------------------
  if [ "${RELIABILITY_NO_BUILD:-0}" != 1 ]; then
    log "cargo build --release -p sluice -p sluice-loadtest"
    cargo build --release -q -p sluice -p sluice-loadtest
  fi
  BIN=$CARGO_TARGET_DIR/release
  LT=$BIN/sluice-loadtest
  export SLUICE_DEV=true RUST_LOG=${RUST_LOG:-warn} SLUICE_INGEST_RATE_LIMIT=0 SLUICE_API_RATE_LIMIT=0 \
    SLUICE_ANALYTICS_RATE_LIMIT=0 SLUICE_TRACKING_RATE_LIMITS=false SLUICE_REDIS_PREFIX=reliability
  "$BIN/sluice" migrate >/dev/null
  start_tier() { # ingest|api|worker
    case $1 in
      ingest) SLUICE_ADDR=127.0.0.1:$INGEST_PORT "$BIN/sluice" ingest >>"$WORK/ingest.log" 2>&1 & INGEST_PID=$!; pids+=("$INGEST_PID") ;;
      api) SLUICE_ADDR=127.0.0.1:$API_PORT "$BIN/sluice" api >>"$WORK/api.log" 2>&1 & API_PID=$!; pids+=("$API_PID") ;;
      worker) "$BIN/sluice" worker >>"$WORK/worker.log" 2>&1 & WORKER_PID=$!; pids+=("$WORKER_PID") ;;
    esac
  }
  start_tier ingest; start_tier api; start_tier worker
  INGEST_URL="http://127.0.0.1:$INGEST_PORT"
  API_URL="http://127.0.0.1:$API_PORT"
  wait_until 30 http_ok "$INGEST_URL/health" && wait_until 30 http_ok "$API_URL/health" \
    || { log "Sluice did not start: see $WORK/*.log"; exit 1; }

  # A fault, then its repair. Kills are followed at once by a restart (as a
  # supervisor would); stores stay down RELIABILITY_OUTAGE seconds.
  kill9() { kill -9 "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
  fault_down() {
    case $1 in
      kill-ingest) kill9 "$INGEST_PID" ;;
      kill-worker) kill9 "$WORKER_PID" ;;
      kill-api) kill9 "$API_PID" ;;
      redis-down) kill9 "$REDIS_PID" ;;
      redis-noaof) redis-cli -p "$REDIS_PORT" config set appendonly no >/dev/null; REDIS_AOF=no; kill9 "$REDIS_PID" ;;
      postgres-down) as_user postgres pg_ctl -D "$PGDATA_DIR" stop -m immediate >/dev/null ;;
      clickhouse-down) kill9 "$CH_PID" ;;
    esac
  }
  fault_up() {
    case $1 in
      kill-ingest) start_tier ingest; wait_until 60 http_ok "$INGEST_URL/health" ;;
      kill-worker) start_tier worker ;;
      kill-api) start_tier api; wait_until 60 http_ok "$API_URL/health" ;;
      redis-down) start_redis ;;
      redis-noaof)
        start_redis
        # AOF back on for what follows (Redis rewrites it from memory)
        REDIS_AOF=yes; redis-cli -p "$REDIS_PORT" config set appendonly yes >/dev/null ;;
      postgres-down) start_pg ;;
      clickhouse-down) start_ch ;;
    esac
  }
  has_fault() { case $1 in baseline | kill-ingest | kill-worker | kill-api | redis-down | redis-noaof | postgres-down | clickhouse-down) return 0 ;; *) return 1 ;; esac; }
  backlog() {
    local n=0 v
    for s in 0 1 2 3; do v=$(redis-cli -p "$REDIS_PORT" get "reliability:backlog:{$s}" 2>/dev/null || true); n=$((n + ${v:-0})); done
    echo "$n"
  }
else
  # --- someone's deployment ---------------------------------------------------
  : "${INGEST_URL:?RELIABILITY_TARGET=external needs INGEST_URL (and DATABASE_URL, CLICKHOUSE_URL)}"
  API_URL=${API_URL:-$INGEST_URL}
  LT=${SLUICE_LOADTEST:-$CARGO_TARGET_DIR/release/sluice-loadtest}
  if [ ! -x "$LT" ]; then cargo build --release -q -p sluice-loadtest; fi
  var() { local v; v="RELIABILITY_$(echo "$1" | tr 'a-z-' 'A-Z_')_$2"; printf '%s' "${!v:-}"; }
  has_fault() { [ "$1" = baseline ] || { [ -n "$(var "$1" DOWN)" ] && [ -n "$(var "$1" UP)" ]; }; }
  fault_down() { bash -c "$(var "$1" DOWN)"; }
  fault_up() {
    bash -c "$(var "$1" UP)"
    wait_until 120 http_ok "$INGEST_URL/health" && wait_until 120 http_ok "$API_URL/health"
  }
  backlog() { echo 0; }
  WORK=""
fi

CH_ARGS=(--clickhouse-url "$CLICKHOUSE_URL" --clickhouse-database "${CLICKHOUSE_DATABASE:-sluice}")
[ -n "${CLICKHOUSE_USER:-}" ] && CH_ARGS+=(--clickhouse-user "$CLICKHOUSE_USER")
[ -n "${CLICKHOUSE_PASSWORD:-}" ] && CH_ARGS+=(--clickhouse-password "$CLICKHOUSE_PASSWORD")

printf 'scenario\tfault_at\tdown_secs\tback_secs\n' > "$OUT/faults.tsv"
# what the report says about the run: its command, start and commit
printf 'bash scripts/reliability.sh%s\n' "${*:+ $*}" > "$OUT/command.txt"
printf '%s %s\n' "$(date -u '+%Y-%m-%d %H:%M UTC')" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" > "$OUT/started.txt"
for name in "${SCENARIOS[@]}"; do
  if ! has_fault "$name"; then log "$name: skipped (unknown, or no commands for it)"; continue; fi
  case $name in
    baseline | kill-*) secs=$((BEFORE + AFTER)) ;;
    *) secs=$((BEFORE + OUTAGE + AFTER)) ;;
  esac
  log "$name: $RATE events/s ($SLOTS requests/s) for $secs s"
  "$LT" run --url "$INGEST_URL" --api-url "$API_URL" --database-url "$DATABASE_URL" "${CH_ARGS[@]}" \
    --scenario errors --batch-size "$BATCH" --mode rate --rate "$SLOTS" --duration-secs "$secs" \
    --connections 256 --timeout-secs 10 --lag-samples 20 --lag-timeout-secs 90 \
    --drain-timeout-secs "$DRAIN" --settle-secs 5 --json > "$OUT/$name.json" 2> "$OUT/$name.err" &
  LT_PID=$!
  # the load starts after the tenant's key propagation (3 s) and the warm-up (2 s)
  wait_until 60 grep -q "created tenant" "$OUT/$name.err" || { log "$name: the load generator did not start"; cat "$OUT/$name.err" >&2; exit 1; }
  sleep $((5 + BEFORE))
  if [ "$name" = baseline ]; then
    printf '%s\t\t\t\n' "$name" >> "$OUT/faults.tsv"
  else
    at=$(now)
    log "$name: down (backlog $(backlog) events)"
    fault_down "$name"
    case $name in kill-*) ;; *) sleep "$OUTAGE" ;; esac
    down=$(since "$at")
    up_at=$(now)
    fault_up "$name" || log "$name: did not come back"
    back=$(since "$up_at")
    log "$name: up again after $down s down; answering $back s after its start"
    printf '%s\t%s\t%s\t%s\n' "$name" "$BEFORE" "$down" "$back" >> "$OUT/faults.tsv"
  fi
  wait "$LT_PID" || { log "$name: the load generator failed"; cat "$OUT/$name.err" >&2; exit 1; }
  python3 - "$OUT/$name.json" <<'PY' >&2
import json, sys
d = json.load(open(sys.argv[1])); c = d.get("loss_check") or {}
print(f"  accepted {c.get('accepted')}  clickhouse {c.get('stored_clickhouse')} ({c.get('distinct_clickhouse')} distinct)"
      f"  postgres {c.get('stored_postgres')}  lost {c.get('lost')}  duplicated {c.get('duplicated')}"
      f"  unanswered {c.get('unanswered')} ({c.get('stored_unanswered')} stored)  drain {c.get('drain_secs', 0):.1f} s"
      f"  statuses {d.get('status_counts')}")
PY
done

python3 scripts/reliability_report.py "$OUT" "$RATE" "$BATCH" "$OUTAGE" "$TARGET" > "$OUT/section.md"
if [ "$TARGET" = local ] && [ "${RELIABILITY_WRITE:-1}" = 1 ]; then
  python3 - "$OUT/section.md" <<'PY'
import sys
new = open(sys.argv[1]).read()
doc = open("BENCHMARKS.md").read()
start, end = "<!-- reliability:start -->", "<!-- reliability:end -->"
if start in doc and end in doc:
    doc = doc[: doc.index(start) + len(start)] + "\n" + new + doc[doc.index(end):]
else:
    doc = doc.rstrip() + "\n\n" + start + "\n" + new + end + "\n"
open("BENCHMARKS.md", "w").write(doc)
PY
  log "updated the Reliability section of BENCHMARKS.md"
else
  cat "$OUT/section.md"
fi
log "reports in $OUT"
