#!/usr/bin/env bash
# Backup throughput of sluice-backup beside `pg_dump | zstd > file` on the
# same database, as a ratio (DESIGN.md: figures are ratios against a
# reference measured in the same run).
#
#   bash scripts/backup-bench.sh [scale]    # pgbench -i -s <scale>, default 20
#
# Ratio = reference time / sluice time (above 1: sluice is faster). MB/s are
# of database size (pg_database_size). Builds the `backup_once` example in
# release mode (slow the first time).
# Creates the database sluice_backup_bench and drops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scale=${1:-20}
db=sluice_backup_bench
work=$(mktemp -d)
PSQL=(psql -X -q -h 127.0.0.1 -U postgres)
cleanup() { "${PSQL[@]}" -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cargo build -q --release -p sluice-backup --example backup_once
bin="$CARGO_TARGET_DIR/release/examples/backup_once"

"${PSQL[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
pgbench -q -i -s "$scale" -h 127.0.0.1 -U postgres "$db" >/dev/null 2>&1
size=$("${PSQL[@]}" -At -d "$db" -c "SELECT pg_database_size('$db')")
echo "database: pgbench scale $scale, $((size / 1048576)) MB"

now() { date +%s.%N; }
rate() { awk -v b="$size" -v s="$1" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }

for run in 1 2; do
  t0=$(now)
  pg_dump --format=plain --no-owner --no-privileges -h 127.0.0.1 -U postgres "$db" | zstd -q -3 > "$work/ref.sql.zst"
  t1=$(now)
  ref=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  rm -f "$work/ref.sql.zst"

  t0=$(now)
  "$bin" "$db" "$work/store" zstd >/dev/null
  t1=$(now)
  ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  rm -rf "$work/store"

  t0=$(now)
  if [ -x /usr/bin/time ]; then
    # Peak resident memory of the backup process (GNU time's %M, in KB).
    /usr/bin/time -f %M -o "$work/rss" "$bin" "$db" "$work/store" zstd encrypt >/dev/null
  else
    "$bin" "$db" "$work/store" zstd encrypt >/dev/null
  fi
  t1=$(now)
  enc=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  rm -rf "$work/store"
  rss=""
  [ -s "$work/rss" ] && rss=$(( $(tail -n1 "$work/rss") / 1024 ))

  echo "run $run: pg_dump | zstd $(rate "$ref") MB/s; sluice zstd $(rate "$ours") MB/s (ratio $(awk -v r="$ref" -v o="$ours" 'BEGIN { printf "%.2f", r / o }')); sluice zstd+encrypt $(rate "$enc") MB/s (ratio $(awk -v r="$ref" -v o="$enc" 'BEGIN { printf "%.2f", r / o }'))${rss:+; its peak RSS $rss MB}"
done
