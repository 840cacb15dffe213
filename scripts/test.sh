#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The whole test suite: a Release build (unit tests, examples, compile-failure tests, the consumer
# packaging tests), then the unit tests and examples again under AddressSanitizer +
# UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
jobs=$(nproc)
for preset in release asan; do
  echo "== $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  ctest --preset "$preset" -j "$jobs"
done
