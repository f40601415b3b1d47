#!/usr/bin/env bash
# Runs Sluice on this machine: sets up Redis, PostgreSQL and ClickHouse
# (installing them when missing), starts a Redis of its own with AOF on port
# 6380 (SLUICE_REDIS_PORT) unless REDIS_URL is given, builds, migrates, and
# starts `sluice all`.
set -euo pipefail
cd "$(dirname "$0")/.."
# A REDIS_URL given by the caller is used as it is; otherwise Sluice gets
# a Redis of its own (below), not the machine's shared one.
given_redis_url="${REDIS_URL:-}"
source scripts/env.sh

if [ "${SLUICE_USE_DOCKER:-auto}" != "0" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  # A Docker engine runs here: the compose file brings up every service.
  export SLUICE_BOOTSTRAP_API_KEY="${SLUICE_BOOTSTRAP_API_KEY:-sk_live_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  export SLUICE_SECRET_KEY="${SLUICE_SECRET_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
  echo "Dev API key (default tenant): $SLUICE_BOOTSTRAP_API_KEY; Sluice on http://localhost:8080"
  exec docker compose up --build
fi

bash scripts/services.sh
cargo build --release --bin sluice

mkdir -p .sluice
if [ -z "$given_redis_url" ]; then
  # Sluice's own Redis, with an append-only file fsynced every second:
  # events answered 201 survive a Redis restart (the machine's Redis may
  # run without AOF; see "Durability" in README.md). Data in .sluice/redis.
  port="${SLUICE_REDIS_PORT:-6380}"
  if ! redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; then
    mkdir -p .sluice/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" \
      --appendonly yes --appendfsync everysec --save "" \
      --dir "$PWD/.sluice/redis" --logfile "$PWD/.sluice/redis/redis.log" \
      --pidfile "$PWD/.sluice/redis/redis.pid"
    for _ in $(seq 40); do
      redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG && break
      sleep 0.25
    done
  fi
  if [ "$(redis-cli -h 127.0.0.1 -p "$port" config get appendonly 2>/dev/null | tail -n1)" != "yes" ]; then
    echo "warning: the Redis on port $port runs without appendonly; accepted events may be lost on its restart" >&2
  fi
  export REDIS_URL="redis://127.0.0.1:$port"
fi
if [ -z "${SLUICE_BOOTSTRAP_API_KEY:-}" ]; then
  if [ ! -s .sluice/dev-api-key ]; then
    echo "sk_live_$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > .sluice/dev-api-key
  fi
  SLUICE_BOOTSTRAP_API_KEY=$(cat .sluice/dev-api-key)
  export SLUICE_BOOTSTRAP_API_KEY
fi
export SLUICE_ADDR="${SLUICE_ADDR:-127.0.0.1:8080}"
# A local run is a dev run: without SLUICE_SECRET_KEY the built-in dev secret signs tokens.
export SLUICE_DEV="${SLUICE_DEV:-true}"

cat <<MSG

  Sluice is starting on http://$SLUICE_ADDR
  Dev API key (default tenant): $SLUICE_BOOTSTRAP_API_KEY
  Redis: $REDIS_URL (GET /health says what accepted events survive)

  Try:
    curl -X POST http://$SLUICE_ADDR/api/errors -H "X-API-Key: $SLUICE_BOOTSTRAP_API_KEY" \\
         -H 'Content-Type: application/json' -d '{"level":"error","message":"hello","source":"readme"}'
    curl http://$SLUICE_ADDR/api/errors -H "X-API-Key: $SLUICE_BOOTSTRAP_API_KEY"

MSG
exec "$CARGO_TARGET_DIR/release/sluice" all
