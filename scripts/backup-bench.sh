#!/usr/bin/env bash
# Backup and restore throughput of sluice-backup beside PostgreSQL's own
# tools on the same database, as ratios (DESIGN.md: figures are ratios
# against a reference measured in the same run), and the peak memory of
# the process doing Sluice's work.
#
#   bash scripts/backup-bench.sh [scale] [runs]   # pgbench -i -s <scale>, default 50; 2 runs
#
# Backup reference: `pg_dump -Fc | zstd > file`. Sluice: pg_dump custom
# format (uncompressed) → zstd → SHA-256 → the local object store, with and
# without AES-256-GCM encryption.
# Restore reference: `pg_restore -d <new database> file` (from an
# uncompressed custom-format file). Sluice: the stored object (zstd,
# encrypted) → checksum pass → decrypt → decompress → pg_restore into a
# scratch database → swapped in.
# Ratio = reference time / Sluice time (1 or more: Sluice is at least as
# fast). MB/s are of database size (pg_database_size). Peak RSS is GNU
# time's maximum resident set size of the Sluice process (the tools it
# runs are separate processes, as they are for the reference).
# Builds the `backup_once` example in release mode (slow the first time).
# Creates the databases sluice_backup_bench*, drops them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
scale=${1:-50}
runs=${2:-2}
db=sluice_backup_bench
work=$(mktemp -d)
PSQL=(psql -X -q -h 127.0.0.1 -U postgres)
drop() { "${PSQL[@]}" -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null; }
cleanup() { for d in "$db" "${db}_ref" "${db}_ours"; do drop "$d"; done; rm -rf "$work"; }
trap cleanup EXIT

cargo build -q --release -p sluice-backup --example backup_once
bin="$CARGO_TARGET_DIR/release/examples/backup_once"

drop "$db"
"${PSQL[@]}" -d postgres -c "CREATE DATABASE $db" >/dev/null
pgbench -q -i -s "$scale" -h 127.0.0.1 -U postgres "$db" >/dev/null 2>&1
size=$("${PSQL[@]}" -At -d "$db" -c "SELECT pg_database_size('$db')")
echo "database: pgbench scale $scale, $((size / 1048576)) MB"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { print b - a }'; }
rate() { awk -v b="$size" -v s="$1" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
ratio() { awk -v r="$1" -v o="$2" 'BEGIN { printf "%.2f", r / o }'; }
rss() { echo $(( $(tail -n1 "$work/rss") / 1024 )); }

pg_dump -Fc -Z0 -h 127.0.0.1 -U postgres -f "$work/ref.dump" "$db"
for run in $(seq 1 "$runs"); do
  t0=$(now)
  pg_dump -Fc -h 127.0.0.1 -U postgres "$db" | zstd -q -3 > "$work/ref.dump.zst"
  ref=$(since "$t0")
  rm -f "$work/ref.dump.zst"

  rm -rf "$work/store"
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$bin" backup "$db" "$work/store" zstd >/dev/null
  ours=$(since "$t0"); ours_rss=$(rss)

  rm -rf "$work/store"
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$bin" backup "$db" "$work/store" zstd encrypt > "$work/out"
  enc=$(since "$t0"); enc_rss=$(rss)
  checksum=$(sed -n 's/.*checksum=\([^ ]*\).*/\1/p' "$work/out")

  drop "${db}_ref"; "${PSQL[@]}" -d postgres -c "CREATE DATABASE ${db}_ref" >/dev/null
  t0=$(now)
  pg_restore --no-owner --no-privileges -h 127.0.0.1 -U postgres -d "${db}_ref" "$work/ref.dump"
  rref=$(since "$t0")

  drop "${db}_ours"
  t0=$(now)
  /usr/bin/time -f %M -o "$work/rss" "$bin" restore "${db}_ours" "$work/store" "$checksum" zstd encrypt >/dev/null
  rours=$(since "$t0"); rours_rss=$(rss)
  rows_ref=$("${PSQL[@]}" -At -d "${db}_ref" -c "SELECT count(*) FROM pgbench_accounts")
  rows_ours=$("${PSQL[@]}" -At -d "${db}_ours" -c "SELECT count(*) FROM pgbench_accounts")
  [ "$rows_ref" = "$rows_ours" ] || { echo "restored row counts differ: $rows_ref vs $rows_ours" >&2; exit 1; }

  echo "run $run backup:  pg_dump -Fc | zstd $(rate "$ref") MB/s; sluice zstd $(rate "$ours") MB/s (ratio $(ratio "$ref" "$ours"), peak RSS $ours_rss MB); sluice zstd+encrypt $(rate "$enc") MB/s (ratio $(ratio "$ref" "$enc"), peak RSS $enc_rss MB)"
  echo "run $run restore: pg_restore $(rate "$rref") MB/s; sluice zstd+encrypt $(rate "$rours") MB/s (ratio $(ratio "$rref" "$rours"), peak RSS $rours_rss MB)"
done
