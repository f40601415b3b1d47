# Shared settings for the scripts: where cargo builds, and the services.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/sluice}"
# apalis-postgres checks its SQL at build time from its own offline data;
# never against the database DATABASE_URL names (it may not have the
# apalis schema yet on a new machine).
export SQLX_OFFLINE=true
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
export CLICKHOUSE_URL="${CLICKHOUSE_URL:-http://127.0.0.1:8123}"
# mimalloc (Sluice's allocator) commits its arenas on demand: a third less
# peak memory for the same CPU (BENCHMARKS.md).
export MIMALLOC_ARENA_EAGER_COMMIT="${MIMALLOC_ARENA_EAGER_COMMIT:-0}"
# A Python venv of Sluice's test tools (schemathesis, sentry-sdk).
export SLUICE_PY="${SLUICE_PY:-$HOME/.cache/sluice-py}"
