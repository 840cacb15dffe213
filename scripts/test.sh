#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite:
#   release  unit tests, property sweep, examples, compile-failure tests, consumer packaging tests
#   asan     the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan     the determinism and concurrent-caller tests under ThreadSanitizer
#   fuzz     a bounded libFuzzer session (clang, ASan + UBSan) from the seed corpus
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
jobs=$(nproc)
for preset in release asan tsan fuzz; do
  echo "== $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  run=()
  # GCC 12's ThreadSanitizer cannot map its shadow memory under the high address randomisation of
  # recent kernels; without randomisation it can, where the sandbox lets us turn it off.
  if [[ $preset == tsan ]] && setarch "$(uname -m)" -R true 2>/dev/null; then run=(setarch "$(uname -m)" -R); fi
  "${run[@]}" ctest --preset "$preset" -j "$jobs"
done
