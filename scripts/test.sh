#!/usr/bin/env bash
# Runs the whole test suite against real Redis, PostgreSQL and ClickHouse
# (set up on this machine first, installing them when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

bash scripts/services.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets "$@"
