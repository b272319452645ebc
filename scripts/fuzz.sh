#!/usr/bin/env bash
# Fuzz targets for every decoder of network input (cargo-fuzz on the nightly toolchain; the
# targets are in fuzz/fuzz_targets/). Seeds in fuzz/seeds/ (regenerate with the command in
# proto/examples/fuzz_seeds.rs), the corpus that fuzzing grew in fuzz/corpus/.
#
#   scripts/fuzz.sh                      each target for $PARLEY_FUZZ_SECONDS (default 30) s
#   scripts/fuzz.sh session -runs=10000000   one target, libFuzzer arguments after its name
#
# New interesting inputs go to target/fuzz-corpus/<target> (commit the ones worth keeping with
# `cargo fuzz cmin`); a crash stops the run with its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

die() { echo "scripts/fuzz.sh: $*" >&2; exit 1; }

rustup toolchain list | grep -q '^nightly' || die "needs the nightly toolchain (rustup toolchain install nightly)"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked --version 0.13.2 || die "could not install cargo-fuzz"
fi
cd fuzz
echo "== building the fuzz targets"
if ! cargo +nightly fuzz build --release 2>&1 | { grep -v '^\s*Compiling' || true; }; then
  die "fuzz build failed"
fi

run() {
  local t=$1; shift
  local out=$root/target/fuzz-corpus/$t
  mkdir -p "$out" "corpus/$t" "seeds/$t"
  echo "== fuzzing $t $*"
  # The first directory receives new inputs; the committed ones only seed.
  if ! cargo +nightly fuzz run --release "$t" "$out" "corpus/$t" "seeds/$t" -- \
    -rss_limit_mb=2048 -max_len=65536 -timeout=10 -print_final_stats=1 "$@" 2>&1 \
    | { grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done|==|SUMMARY|panicked)' || true; }; then
    die "fuzz target $t failed (input in fuzz/artifacts/$t/)"
  fi
}

if [ $# -gt 0 ]; then
  run "$@"
else
  for t in $(cargo +nightly fuzz list); do
    run "$t" "-max_total_time=${PARLEY_FUZZ_SECONDS:-30}"
  done
fi
