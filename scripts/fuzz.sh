#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input (fuzz/fuzz_targets) for a bounded
# time each, and fails if any target finds a crash or a broken property.
#
#   scripts/fuzz.sh [seconds-per-target] [target...]     (default: 60 s, all)
#
# Each run starts from the committed seeds (fuzz/corpus/<target>, read only)
# and what earlier runs learned (fuzz/runs/<target>, not committed). A
# failing input is written to fuzz/artifacts/<target>/; replay it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none <target> fuzz/artifacts/<target>/<file>
# (from fuzz/) and, once fixed, copy it into fuzz/corpus/<target>/ so that
# `cargo test -p sluice-ingest --test fuzz_corpus` keeps checking it.
#
# Needs only a stable toolchain: cargo-fuzz passes nightly-only flags to
# rustc, which RUSTC_BOOTSTRAP=1 lets stable accept. cargo-fuzz is
# installed from crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true
all=(event batch tracking body wire)
targets=("${@:-${all[@]}}")

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# The fuzz crate is its own workspace with its own build directory.
export CARGO_TARGET_DIR="${SLUICE_FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
cd fuzz

# No sanitizer: the targets' unsafe code is the libdeflate call, whose C
# side ASan would not instrument; panics (with debug assertions, the
# cargo-fuzz default) and aborts are what the properties raise.
flags=(--sanitizer none --release --debug-assertions)
cargo fuzz build "${flags[@]}"

failed=()
for t in "${targets[@]}"; do
  dict=dict/json.dict
  case "$t" in
    tracking) dict=dict/tracking.dict ;;
    body | wire) dict= ;;
  esac
  mkdir -p "runs/$t" "artifacts/$t"
  echo "== $t: ${secs}s"
  if ! cargo fuzz run "${flags[@]}" "$t" "runs/$t" "corpus/$t" -- \
    -max_total_time="$secs" -max_len=8192 -timeout=10 -rss_limit_mb=1024 \
    -artifact_prefix="artifacts/$t/" -print_final_stats=1 ${dict:+-dict=$dict}; then
    failed+=("$t")
  fi
done

if ((${#failed[@]})); then
  echo "fuzz: failures in ${failed[*]} (inputs under fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${targets[*]}: no failure in ${secs}s each"
