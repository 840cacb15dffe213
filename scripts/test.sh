#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite:
#   release  unit tests, property sweep, examples, compile-failure tests, consumer packaging tests
#   asan     the unit tests and examples under AddressSanitizer + UndefinedBehaviorSanitizer
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
  ctest --preset "$preset" -j "$jobs"
done
