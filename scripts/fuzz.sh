#!/usr/bin/env bash
# Bounded fuzzing run: each cargo-fuzz target for SECONDS_PER_TARGET seconds (default 60).
# Usage: scripts/fuzz.sh [TARGET...]   (default: every target in fuzz/fuzz_targets)
# Exits non-zero on the first finding; the reproducer is in fuzz/artifacts/TARGET/.
# cargo-fuzz needs nightly features; RUSTC_BOOTSTRAP=1 lets a stable toolchain provide them.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz
fi

# Every target, with the fuzzing instrumentation (sanitizer, coverage), before running any:
# a target that no longer compiles fails here even when only another one was asked for.
RUSTC_BOOTSTRAP=1 cargo fuzz build

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for file in fuzz/fuzz_targets/*.rs; do
    targets+=("$(basename "$file" .rs)")
  done
fi

seconds="${SECONDS_PER_TARGET:-60}"
for target in "${targets[@]}"; do
  echo "fuzz.sh: $target for ${seconds}s" >&2
  mkdir -p "fuzz/corpus/$target"
  dict=()
  [ -f "fuzz/dict/$target.dict" ] && dict=(-dict="fuzz/dict/$target.dict")
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time="$seconds" "${dict[@]}"
done
echo "fuzz.sh: no findings in ${targets[*]}" >&2
