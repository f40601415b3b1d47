#!/usr/bin/env bash
# Runs Sluice on this machine: sets up Redis, PostgreSQL and ClickHouse
# (installing them when missing), builds, migrates, and starts `sluice all`.
set -euo pipefail
cd "$(dirname "$0")/.."
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

  Try:
    curl -X POST http://$SLUICE_ADDR/api/errors -H "X-API-Key: $SLUICE_BOOTSTRAP_API_KEY" \\
         -H 'Content-Type: application/json' -d '{"level":"error","message":"hello","source":"readme"}'
    curl http://$SLUICE_ADDR/api/errors -H "X-API-Key: $SLUICE_BOOTSTRAP_API_KEY"

MSG
exec "$CARGO_TARGET_DIR/release/sluice" all
